-- Regression (issue 9, class 6): a task spawned with berth.spawn that waits
-- on a berth.connect socket survived berth.shutdown(0): its <close>
-- variables never ran and stats() still showed its socket and task after
-- run() returned (sock_closeall existed but was never called). Class: every
-- kind of wait ends at shutdown -- shutdown.c closes every server and
-- socket, closes the other anchored objects, lets the woken tasks run once,
-- then ends the tasks still alive.
local helpers = require "support"

describe("regress: shutdown ends every wait", function()
  it("closes connected sockets and ends tasks that keep waiting", function()
    local out, code, err = helpers.run_fixture("regress_shutdown_every_wait")
    assert.equal(0, code, err)
    assert.equal("client read: closed\nclosed: client cond\nsockets 0 servers 0 tasks 0\n", out)
  end)
end)

-- Regression (STYLE T6, mandatory from day one): GC of an unreferenced idle
-- socket. A socket Lua no longer references, with no waiter and no active
-- watcher, is collected and closed like a Lua file; one with a waiting task
-- is anchored and must not be collected under it.
local support = require "support"
local berth = support.berth
local run = support.run

describe("regress: GC of an unreferenced idle socket", function()
  before_each(support.before)
  after_each(support.after)

  it("collects and closes it; the peer sees EOF", function()
    run(function()
      local server <close> = support.listen()
      local function connect_and_forget()
        local client = support.connect(server)
        assert(client:write("bye\n"))
      end
      connect_and_forget()
      local peer <close> = assert(server:accept(2))
      local before = berth.stats().sockets
      collectgarbage()
      collectgarbage()
      assert.equal(before - 1, berth.stats().sockets)
      assert.equal("bye", peer:read("l", 2))
      support.assert_fail("closed", "", peer:read("l", 2))
    end)
  end)

  it("does not collect a socket a task is waiting on", function()
    run(function()
      local server <close> = support.listen()
      local before = berth.stats().sockets
      local got
      berth.spawn(function(sock) got = sock:read("l", 3) end, support.connect(server))
      local peer <close> = assert(server:accept(2))
      berth.sleep(0) -- the reader parks: its socket is anchored
      collectgarbage()
      collectgarbage()
      assert.equal(before + 2, berth.stats().sockets)
      assert(peer:write("still alive\n"))
      support.wait_until(function() return got end)
      assert.equal("still alive", got)
    end)
  end)
end)

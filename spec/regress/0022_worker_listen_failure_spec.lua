-- Regression (issue 9, class 17): under --workers, a script whose
-- berth.listen failed inside pcall (a bad host) killed the master's task for
-- that worker; the workers then blocked forever in recvmsg and ignored
-- SIGTERM. Class: every master/worker exchange has a timeout and an error
-- path (lua/berth/channel.lua, master.lua, worker.lua, proc.c's poll with a
-- timeout that SIGTERM ends): a worker that cannot get its listener gets
-- the same error as a single process, and goes on.
local support = require "support"
local run = support.run

describe("regress: a failing listen under --workers", function()
  before_each(support.before)
  after_each(support.after)

  it("is an error in the worker, the next listen works, SIGTERM ends all", function()
    local proc, port = support.start_host("spec/fixtures/regress_worker_bad_listen.lua",
      { "--workers", "2" })
    run(function()
      for _ = 1, 4 do
        local c <close> = support.connect(port)
        assert.equal('false listen: host must be an IP address, "*" or a host name '
          .. '(got "bad host")', c:read("l", 5))
      end
    end, 10)
    local code, seconds = proc:stop("TERM")
    assert.equal(0, code, proc:stderr())
    assert.is_true(seconds < 5, ("stopped %.1f s after SIGTERM"):format(seconds))
  end)
end)

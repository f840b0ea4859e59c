-- Regression (issue 9, class 13): a condition variable whose broadcast and
-- a waiter's timeout landed in the same loop iteration woke the waiter
-- twice: its next sleep returned at once and its body ran twice (the
-- master's worker loop uses this pattern). Class: a task is woken at most
-- once per wait -- core.wake refuses a task that is no longer suspended,
-- and a queued task is never queued again.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

describe("regress: cond broadcast and timeout together", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("wake a waiter once", function()
    run(function()
      for round = 1, 20 do
        local cond = berth.cond()
        local after, woken = nil, 0
        local waiter = berth.spawn(function()
          cond:wait(0.02)
          woken = woken + 1
          local t0 = berth.now()
          berth.sleep(0.05) -- a second wake would end this at once
          after = berth.now() - t0
        end)
        local _timer <close> = berth.timer(0.02, 0, function() cond:broadcast("now") end)
        helpers.wait_until(function() return after end, 2, "round " .. round)
        assert.equal(1, woken)
        assert.is_true(after >= 0.04, ("round %d: sleep returned after %.3f s"):format(round, after))
        assert.equal("dead", coroutine.status(waiter))
      end
    end, 10)
  end)

  it("a signal skips waiters that timed out", function()
    run(function()
      local cond = berth.cond()
      local got = {}
      local function waiter(name, timeout)
        local r = { name, cond:wait(timeout) }
        got[#got + 1] = r
      end
      berth.spawn(waiter, "a", 0.01)
      berth.spawn(waiter, "b")
      berth.sleep(0.05)
      assert.is_true(cond:signal("x"))
      helpers.wait_until(function() return #got == 2 end)
      assert.same({ { "a", nil, "timeout" }, { "b", "x" } }, got)
      assert.is_false(cond:signal("y"))
    end)
  end)
end)

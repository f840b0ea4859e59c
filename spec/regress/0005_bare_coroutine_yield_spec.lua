-- Regression (STYLE T6, mandatory from day one): a handler that calls bare
-- coroutine.yield(). The scheduler must not mistake the yield for one of its
-- own waits (R3): the handler ends with an error routed to onerror, its
-- socket closes, and no task is left suspended. Nested coroutines inside a
-- task still work.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect

describe("regress: bare coroutine.yield in a task", function()
  before_each(support.before)
  after_each(support.after)

  it("ends a handler with an error routed to onerror", function()
    run(function()
      local server <close> = assert(berth.serve {
        host = "127.0.0.1", port = 0,
        handler = function() coroutine.yield("not a berth wait") end,
        onerror = expect(function(err) assert.is_not_nil(err) end, 1),
      })
      local client <close> = support.connect(server)
      support.assert_fail("closed", "", client:read("l", 2))
    end)
  end)

  it("ends a spawned task with an error routed to berth.onerror", function()
    run(function()
      local after_yield = false
      berth.spawn(function()
        coroutine.yield(1, 2, 3)
        after_yield = true
      end)
      local errs = support.wait_errors(1)
      assert.is_nil(errs[1].sock)
      berth.sleep(0.02) -- a quiet period: the task must not be resumed again
      assert.is_false(after_yield)
    end)
  end)

  it("leaves nested coroutines inside a task alone", function()
    run(function()
      local gen = coroutine.wrap(function()
        for i = 1, 3 do coroutine.yield(i) end
      end)
      assert.same({ 1, 2, 3 }, { gen(), gen(), gen() })
      assert.is_true(berth.sleep(0.01))
    end)
  end)
end)

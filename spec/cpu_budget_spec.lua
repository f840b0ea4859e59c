-- The CPU budget's watchdog (src/watchdog.c, sched.c "the hook"): a task
-- that overruns is ended wherever it spins -- in coroutines it resumed,
-- however deep, and in coroutine.wrap generators -- while tasks within
-- budget, and the coroutine library's results and errors, are untouched.
local support = require "support"
local berth = support.berth
local run = support.run

local BUDGET = 0.1

describe("cpu_budget (watchdog)", function()
  before_each(function()
    support.before()
    berth.limits { cpu_budget = BUDGET }
  end)
  after_each(function()
    berth.limits { cpu_budget = false }
    support.after()
  end)

  local function ended(body)
    local after = false
    berth.spawn(function()
      body()
      after = true
    end)
    local errs = support.wait_errors(1, 10)
    assert.matches("cpu budget exceeded: the task ran %d+ ms without yielding", errs[1].err)
    assert.is_false(after, "the task went on after its budget")
  end

  it("ends a task spinning two coroutines deep (coroutine.resume)", function()
    run(function()
      local reached = {}
      ended(function()
        local outer = coroutine.create(function()
          local inner = coroutine.create(function() while true do end end)
          coroutine.resume(inner)
          reached.outer = true
          while true do end
        end)
        coroutine.resume(outer)
        reached.task = true
      end)
      assert.is_nil(reached.outer)
      assert.is_nil(reached.task)
      assert.equal(1, berth.stats().tasks) -- this test's own task
    end, 20)
  end)

  it("ends a task spinning in a coroutine.wrap generator, inside pcall", function()
    run(function()
      ended(function()
        pcall(function()
          for _ in coroutine.wrap(function()
            coroutine.yield(1)
            while true do end
          end) do
          end
        end)
      end)
    end, 20)
  end)

  it("lets a coroutine hooked in an overrun run freely in a task within budget", function()
    run(function()
      local shared = coroutine.wrap(function()
        local n = 0
        while true do
          n = n + 1
          coroutine.yield(n)
        end
      end)
      ended(function()
        while true do shared() end
      end)
      local got, done
      berth.spawn(function()
        for _ = 1, 20 do -- yielding between slices: within budget even under ASan
          for _ = 1, 500 do got = shared() end
          berth.sleep(0.001)
        end
        done = true
      end)
      support.wait_until(function() return done end, 10, "the second task")
      assert.is_true(got > 10000, tostring(got))
      assert.same({}, support.take_errors())
    end, 20)
  end)

  it("keeps coroutine.resume and coroutine.wrap's results and errors", function()
    run(function()
      local co = coroutine.create(function(a, b)
        local c = coroutine.yield(a + b)
        return c * 2
      end)
      assert.same({ true, 3 }, { coroutine.resume(co, 1, 2) })
      assert.same({ true, 10 }, { coroutine.resume(co, 5) })
      assert.same({ false, "cannot resume dead coroutine" }, { coroutine.resume(co) })
      local ok, err = coroutine.resume(coroutine.create(function() error("inside") end))
      assert.is_false(ok)
      assert.matches("^spec/cpu_budget_spec.lua:%d+: inside$", err)
      -- wrap: the error gets the caller's position on top, as in stock Lua
      ok, err = pcall(function() coroutine.wrap(function() error("x") end)() end)
      assert.is_false(ok)
      assert.matches("^spec/cpu_budget_spec.lua:%d+: spec/cpu_budget_spec.lua:%d+: x$", err)
      local obj = {}
      ok, err = pcall(coroutine.wrap(function() error(obj) end))
      assert.is_false(ok)
      assert.equal(obj, err)
      assert.has_error(function() coroutine.resume(1) end,
        "bad argument #1 to 'resume' (thread expected, got number)")
      assert.has_error(function() coroutine.wrap(1) end,
        "bad argument #1 to 'wrap' (function expected, got number)")
      local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
      assert.same({ 1, 2, 3 }, { gen(), gen(), gen() })
    end)
  end)
end)

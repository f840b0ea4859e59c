-- Regression (issue 9, class 16): the CPU budget could be bypassed by a
-- task that loops over pcall of a C function calling back into a runaway
-- Lua function: the hook could not yield inside string.gsub, raised, and
-- the pcall swallowed the error each time. Class: once over budget, the
-- hook checks at every instruction, so the error is raised again at once
-- and the first instruction where a yield is possible ends the task.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

describe("regress: the CPU budget and pcall", function()
  before_each(helpers.before)
  after_each(function()
    berth.limits { cpu_budget = false }
    helpers.after()
  end)

  for name, body in pairs {
    gsub = function()
      while true do pcall(string.gsub, "a", "a", function() while true do end end) end
    end,
    sort = function()
      while true do pcall(table.sort, { 3, 2, 1 }, function() while true do end end) end
    end,
    nested = function()
      while true do
        pcall(string.gsub, "a", "a", function()
          while true do pcall(function() while true do end end) end
        end)
      end
    end,
  } do
    it("ends a runaway task caught in pcall(" .. name .. ")", function()
      run(function()
        berth.limits { cpu_budget = 0.1 }
        local t0 = helpers.clock()
        berth.spawn(body)
        local errs = helpers.wait_errors(1, 5)
        assert.matches("cpu budget exceeded", errs[1].err)
        assert.is_true(helpers.clock() - t0 < 3, "the task ran on past its budget")
        assert.equal(1, berth.stats().tasks) -- only this test's own task
      end, 10)
    end)
  end
end)

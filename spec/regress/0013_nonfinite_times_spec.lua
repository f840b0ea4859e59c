-- Regression (issue 9, class 5): non-finite numbers as times. NaN froze
-- libev's timer heap (berth.sleep(0/0) stopped every timer of the loop),
-- made server:accept(0/0) spin, berth.step(0/0) block ~60 s, and
-- berth.shutdown(0/0) never finish. Class: every time argument goes
-- through one validator (util_checktime): NaN raises; +inf means "never" /
-- "no deadline" and never reaches libev.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

local NAN = 0 / 0

describe("regress: NaN and infinite times", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("NaN is an error for every time argument, and timers keep firing", function()
    run(function()
      local server <close> = helpers.listen()
      local p <close> = helpers.pair()
      local a, b = p.client, p.peer
      local calls = {
        sleep = function() return berth.sleep(NAN) end,
        timer_after = function() return berth.timer(NAN, 0, function() end) end,
        timer_repeat = function() return berth.timer(1, NAN, function() end) end,
        accept = function() return server:accept(NAN) end,
        read = function() return a:read("l", NAN) end,
        readsome = function() return a:readsome(10, NAN) end,
        flush = function() return a:flush(NAN) end,
        settimeout = function() return a:settimeout(NAN) end,
        connect = function() return berth.connect("127.0.0.1", server:port(), { timeout = NAN }) end,
        shutdown = function() return berth.shutdown(NAN) end,
        limits = function() return berth.limits { cpu_budget = NAN } end,
      }
      for name, fn in pairs(calls) do
        local ok, err = pcall(fn)
        assert(not ok, name .. " accepted NaN")
        assert(tostring(err):find("NaN", 1, true), name .. ": " .. tostring(err))
      end
      assert.is_false(berth.draining())
      -- The timer heap still works.
      local fired = 0
      local _t <close> = berth.timer(0.01, 0, function() fired = fired + 1 end)
      helpers.wait_until(function() return fired == 1 end, 1, "a timer after the NaNs")
      assert.is_true(berth.sleep(0.01))
      b:write("x\n")
      assert.equal("x", a:read("l", math.huge)) -- +inf: no deadline
    end)
  end)

  it("step(NaN) raises at once", function()
    local ok, err = pcall(berth.step, NAN)
    assert.is_false(ok)
    assert.matches("NaN", err)
  end)

  it("+inf waits for as long as it takes, and shutdown still ends it", function()
    local out, code, err = helpers.run_fixture("regress_infinite_times")
    assert.equal(0, code, err)
    assert.equal("worker done\nfirst shutdown finished: soon\nsleeper ended: true, tasks 0\n", out)
  end)
end)

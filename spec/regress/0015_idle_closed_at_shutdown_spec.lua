-- Regression (issue 9, class 7): at SIGTERM every connection held the
-- shutdown for the whole --grace period, even idle keep-alive ones, and a
-- script with its own step() loop ignored SIGTERM until a second one.
-- Class: at shutdown start, served connections that wait for their next
-- message with nothing buffered are closed (as Go's Shutdown and nginx
-- close idle keep-alive connections); only a message in progress gets the
-- grace period; berth.draining() says so; step() returns false once the
-- shutdown is done.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run
local P = require "support.proc"

local function start(fixture, grace)
  local proc = helpers.start({ helpers.host_binary(), "--grace", tostring(grace),
    "spec/fixtures/" .. fixture .. ".lua" })
  local line = proc:readline()
  local port = line and tonumber(line:match(":(%d+)$"))
  assert(port, "no listening line\n" .. proc:describe())
  return proc, math.tointeger(port)
end

describe("regress: idle connections at shutdown", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("100 idle keep-alive clients do not hold SIGTERM for the grace period", function()
    local proc, port = start("regress_idle_shutdown", 30)
    local took
    run(function()
      local idle = {}
      for i = 1, 100 do
        idle[i] = helpers.connect(port)
        assert.equal("hi" .. i, helpers.roundtrip(idle[i], "hi" .. i))
      end
      local slow = helpers.connect(port)
      assert(slow:write("slow\n"))
      berth.sleep(0.1) -- the slow request is in progress
      local t0 = helpers.clock()
      proc:kill("TERM")
      for i = 1, 100 do
        helpers.assert_fail("closed", "", idle[i]:read("l", 5))
        idle[i]:close()
      end
      assert.equal("done draining=true", slow:read("l", 5))
      helpers.assert_fail("closed", "", slow:read("l", 5))
      slow:close()
      helpers.wait_until(function() return not P.alive(proc.pid) end, 10, "the host to exit")
      took = helpers.clock() - t0
    end, 20)
    local _, how, code = proc:wait()
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    print(("\n[idle shutdown] 100 idle + 1 slow client: exited %.2f s after SIGTERM (grace 30 s)")
      :format(took))
    assert.is_true(took < 10, "the shutdown waited for idle clients")
  end)

  it("a script's own step() loop sees the shutdown and ends", function()
    local proc, port = start("regress_step_loop_shutdown", 30)
    run(function()
      local c = helpers.connect(port)
      assert.equal("x", helpers.roundtrip(c, "x"))
      proc:kill("TERM")
      helpers.assert_fail("closed", "", c:read("l", 5))
      c:close()
    end, 10)
    local out, how, code = proc:wait()
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    assert.equal("step loop ended, saw draining: true\n", out)
  end)
end)

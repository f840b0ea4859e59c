-- Isolation between tests (spec/support/loop.lua): whatever a test leaves
-- alive on the loop is named, fails that test unless it declared it, and
-- is closed before the next test, which starts from zero. The tests here
-- run in order: each "leaves" test is followed by the one that checks that
-- its leftovers cannot reach it.
local support = require "support"
local berth = support.berth
local run = support.run

local ZERO = { sockets = 0, servers = 0, tasks = 0, anchors = 0 }
local ECONNREFUSED = 111

-- What the leftovers of one test would do to a later one, if they ran.
local late = {}

-- Whether one of `lines` starts with `prefix` (plain).
local function has_line(lines, prefix)
  for _, line in ipairs(lines) do
    if line:sub(1, #prefix) == prefix then return true end
  end
  return false, table.concat(lines, "\n")
end

describe("isolation", function()
  before_each(support.before)
  after_each(support.after)

  it("a test can leave a server, suspended tasks and an armed timer behind on purpose", function()
    support.expect_leak { server = 1, task = 2, timer = 1 }
    local server = support.serve(support.echo)
    late.port = server:port()
    local line = debug.getinfo(1, "l").currentline + 2
    berth.spawn(function()
      berth.sleep(0.3) -- it would end during the next test...
      late.task_ran = true
      berth.stop() -- ...and make that test's run() return early
    end)
    local cond = berth.cond()
    berth.spawn(function()
      cond:wait()
      late.cond_woken = true
    end)
    berth.timer(0.3, 0, function()
      late.timer_fired = true
      berth.stop()
    end)
    berth.step(0) -- both tasks start and park

    local lines, kinds = support.leftovers()
    assert.same({ server = 1, task = 2, timer = 1 }, kinds)
    assert(has_line(lines, "server on 127.0.0.1:" .. late.port))
    assert(has_line(lines, "task parked in berth.sleep at spec/isolation_spec.lua:" .. line))
    assert(has_line(lines, "task parked in a berth.cond wait at spec/isolation_spec.lua:"))
    assert(has_line(lines, "timer (armed)"))
  end)

  it("the next test starts from zero and none of those leftovers reaches it", function()
    assert.same(ZERO, support.counts())
    local t0 = support.clock()
    run(function()
      support.assert_fail("refused", ECONNREFUSED,
        berth.connect("127.0.0.1", late.port, { timeout = 1 }))
      berth.sleep(0.5) -- past the time the leftover task and timer were due
    end, 2)
    assert.is_nil(late.task_ran, "a leftover task ran")
    assert.is_nil(late.timer_fired, "a leftover timer fired")
    assert.is_nil(late.cond_woken, "a leftover task ran after its wait")
    local took = support.clock() - t0
    assert.is_true(took < 1, ("took %.2f s"):format(took))
  end)

  it("a test whose run() hit its wall-clock guard leaves its task behind", function()
    support.expect_leak { task = 2 }
    local ok, err = pcall(run, function()
      berth.spawn(function()
        berth.sleep(0.3)
        late.stopped = true
        berth.stop()
      end)
      berth.sleep(10) -- far beyond the guard
      late.body_resumed = true
    end, 0.1)
    assert.is_false(ok)
    assert.matches("wall-clock guard", err, 1, true)
  end)

  it("the next test runs to its end: the slow test's tasks are gone", function()
    assert.same(ZERO, support.counts())
    local t0 = support.clock()
    run(function() berth.sleep(0.5) end, 2)
    assert.is_nil(late.stopped, "the slow test's task ran")
    assert.is_nil(late.body_resumed, "the slow test's body ran on")
    assert.is_true(support.clock() - t0 < 1)
  end)

  it("fails a test that leaks, naming what it left, and closes it", function()
    local held = { server = support.listen() } -- dropped below, to be collected
    local server = held.server
    local port = server:port()
    server:on("connection", function() end)
    berth.spawn(function() berth.sleep(10) end)
    berth.step(0)
    local ok, err = pcall(support.after) -- what after_each does at the end of a test
    assert.is_false(ok)
    assert.matches("^leak: the test left these alive %(closed now%):", err)
    assert.matches("server on 127.0.0.1:" .. port, err, 1, true)
    assert.matches("task parked in berth.sleep at spec/isolation_spec.lua:", err, 1, true)
    assert.equal(-1, server:fd(), "the server was not closed")
    held, server = nil, nil -- luacheck: ignore 311 (the last references: dropped)
    collectgarbage()
    assert.same(ZERO, support.counts())
    support.before()
  end)
end)

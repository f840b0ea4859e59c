--- Running berth's loop in the specs, and the per-test leak check.
--
--   support.run(function()          -- the body runs as a berth task
--     local p <close> = support.pair()
--     ...
--   end)
--
-- `run` drives the default loop under a hard wall-clock guard, re-raises
-- errors from the task, checks `expect` counters and fails on task errors
-- nobody took. `loop.before`/`loop.after` (through support.before/after in
-- each file's before_each/after_each) make every test start from zero: after
-- each test, whatever it left alive (sockets, servers, timers, signals,
-- tasks) is named -- a leak fails that test, and only that one -- and then
-- closed (spec/support/leaks.lua). A test that leaves things behind on
-- purpose says so with loop.expect_leak().
local assert = require "luassert"
local berth = require "berth"
local leaks = require "support.leaks"
local wait = require "support.wait"

local loop = { berth = berth }

local DEFAULT_LIMIT = 5 -- seconds a test body may take
local SETTLE_LIMIT = 2  -- seconds left for other tasks after the body ends

-- Errors that reached berth.onerror during the current test.
local task_errors = {}
-- expect() counters of the current test.
local expectations = {}
-- What the current test declared it leaves behind (expect_leak), or nil.
local leak_expected
-- Servers and sockets an earlier test still references from Lua, which the
-- loop no longer drives (see loop.after): they only keep a count alive.
local inert = { sockets = 0, servers = 0 }

-- What berth's library state was before the first test: restored after
-- each one, so that a test's limits or log level do not reach the next.
local initial_limits = berth.limits()
local initial_log_level = berth.log.level()

local function on_task_error(err, traceback, sock)
  task_errors[#task_errors + 1] = { err = err, traceback = traceback, sock = sock }
end

--- berth.stats() counters of live objects: sockets, servers, tasks, anchors.
function loop.counts()
  local s = berth.stats()
  return { sockets = s.sockets, servers = s.servers, tasks = s.tasks, anchors = s.anchors }
end

-- Whether the loop holds nothing but the inert objects of earlier tests.
local function at_zero(c)
  return c.tasks == 0 and c.anchors == 0 and c.sockets <= inert.sockets
    and c.servers <= inert.servers
end

local function counts_text(c)
  return ("sockets=%d servers=%d tasks=%d anchors=%d")
    :format(c.sockets, c.servers, c.tasks, c.anchors)
end

---------------------------------------------------------------------------
-- Per-test hooks
---------------------------------------------------------------------------

function loop.before()
  task_errors, expectations, leak_expected = {}, {}, nil
  berth.onerror(on_task_error)
  collectgarbage()
  collectgarbage()
  local c = loop.counts()
  if not at_zero(c) then -- only if an earlier after() could not close it all
    c = leaks.close_all()
  end
  assert(at_zero(c), "the loop does not start from zero (" .. counts_text(c) .. ")")
end

--- What the loop holds right now: a sorted list of lines naming each
-- object and task ("server on 127.0.0.1:4242", "task parked in berth.sleep
-- at spec/x_spec.lua:12", "timer (armed)", ...), and the count of each
-- kind. The leak check reports the same.
function loop.leftovers()
  return leaks.describe()
end

--- Declares that the current test leaves things alive on purpose, so the
-- leak check expects them instead of failing. `kinds` (optional) gives
-- the exact number of each kind that must be left: { server = 1, task = 1,
-- timer = 1 } (kinds: task, server, socket, timer, signal, watch).
function loop.expect_leak(kinds)
  leak_expected = kinds or true
end

-- The leak check's verdict on `lines`/`kinds` (from leaks.describe), or nil.
local function leak_failure(lines, kinds)
  local listing = "\n  " .. table.concat(lines, "\n  ")
  if leak_expected == nil then
    if #lines == 0 then return nil end
    return "leak: the test left these alive (closed now):" .. listing
  end
  if #lines == 0 then return "expect_leak: the test left nothing alive" end
  if leak_expected == true then return nil end
  for kind, n in pairs(leak_expected) do
    if (kinds[kind] or 0) ~= n then
      return ("expect_leak: wanted %d %s(s), the test left %d:%s")
        :format(n, kind, kinds[kind] or 0, listing)
    end
  end
  for kind, n in pairs(kinds) do
    if not leak_expected[kind] then
      return ("expect_leak: the test also left %d %s(s):%s"):format(n, kind, listing)
    end
  end
end

--- After each test: names what the test left alive on the loop (a leak
-- fails the test, unless expect_leak() declared it), then closes it all
-- and restores berth's limits and log level.
function loop.after()
  task_errors = {}
  collectgarbage()
  collectgarbage()
  local lines, kinds = {}, {}
  if not at_zero(loop.counts()) then lines, kinds = leaks.describe() end
  -- Servers and sockets an earlier test keeps referenced are not this one's.
  local filtered = {}
  local skip = { server = inert.servers, socket = inert.sockets }
  for _, line in ipairs(lines) do
    local kind = line:match("^(%a+) not held by the loop")
    if kind and skip[kind] and skip[kind] > 0 then
      skip[kind] = skip[kind] - 1
      kinds[kind] = kinds[kind] - 1
      if kinds[kind] == 0 then kinds[kind] = nil end
    else
      filtered[#filtered + 1] = line
    end
  end
  local failure = leak_failure(filtered, kinds)
  leak_expected = nil
  local left = leaks.close_all()
  berth.limits(initial_limits)
  berth.log.level(initial_log_level)
  if left.tasks > 0 or left.anchors > 0 then
    failure = (failure and failure .. "\n" or "")
      .. "could not close what the test left (" .. counts_text(left) .. ")"
  end
  -- What is left now is a server or socket the loop no longer drives,
  -- kept alive only by a Lua reference (a spec's upvalue, say): nothing can
  -- close it from here, but it cannot act either, so later tests are not
  -- failed for it. This test was, above.
  inert.sockets, inert.servers = left.sockets, left.servers
  if failure then error(failure, 0) end
end

---------------------------------------------------------------------------
-- Running the loop
---------------------------------------------------------------------------

--- Wraps `fn` so that each call is counted; `run` then asserts that it was
-- called exactly `n` times (default 1). The GC runs after every call to
-- shake out objects that are only kept alive by accident.
function loop.expect(fn, n, label)
  local info = debug.getinfo(2, "Sl")
  local e = {
    want = n or 1, got = 0,
    where = label or (info.short_src .. ":" .. info.currentline),
  }
  expectations[#expectations + 1] = e
  return function(...)
    e.got = e.got + 1
    local results = fn and table.pack(fn(...)) or { n = 0 }
    collectgarbage()
    return table.unpack(results, 1, results.n)
  end
end

local function check_expectations()
  local list = expectations
  expectations = {}
  for _, e in ipairs(list) do
    if e.got ~= e.want then
      return ("expect at %s: wanted %d call(s), got %d"):format(e.where, e.want, e.got)
    end
  end
end

local function take_unhandled()
  if #task_errors == 0 then return nil end
  local e = task_errors[1]
  task_errors = {}
  return "error in a berth task nobody expected: " .. tostring(e.err)
    .. "\n" .. tostring(e.traceback)
end

-- After the body has finished, let the other tasks (handlers, clients) end.
-- Bounded: what is still there after that is reported by the leak check.
local function settle()
  if leak_expected then return end
  local deadline = wait.clock() + SETTLE_LIMIT
  repeat
    collectgarbage()
    local c = berth.stats()
    if c.tasks == 0 and c.anchors == 0 then return end
    berth.step(0.01)
  until wait.clock() > deadline
end

--- Runs `fn` as a berth task and drives the loop with berth.run() until it
-- ends, under a wall-clock guard of `limit` seconds (default 5). Raises the
-- task's error, a guard timeout, an unexpected error reported to
-- berth.onerror, or a failed `expect` count. Whatever the body leaves
-- running when it fails is closed after the test, so it cannot reach the
-- next one.
--
-- Specs block outside the loop (child processes, fixtures), which leaves the
-- loop's cached time behind; one non-blocking step first brings it up to
-- date, so that only sched_spec's dedicated test (opts.keep_stale_time)
-- fails if deadlines are computed from a stale berth.now().
function loop.run(fn, limit, opts)
  limit = limit or DEFAULT_LIMIT
  if not (opts and opts.keep_stale_time) then berth.step(0) end
  local failure, finished
  local guard = berth.timer(limit, 0, function()
    failure = failure or ("wall-clock guard: the test did not finish within %g s"):format(limit)
    berth.stop()
  end)
  berth.spawn(function()
    local ok, err = xpcall(fn, debug.traceback)
    finished = true
    if not ok then failure = failure or err end
    guard:cancel()
    berth.stop()
  end)
  berth.run()
  guard:cancel()
  if not finished and not failure then
    failure = "berth.run() returned while the test task was still suspended"
  end
  if not failure then settle() end
  failure = failure or take_unhandled() or check_expectations()
  if failure then error(failure, 0) end
end

--- Errors reported to berth.onerror so far (and forget them): a list of
-- { err =, traceback =, sock = }.
function loop.take_errors()
  local list = task_errors
  task_errors = {}
  return list
end

--- Task only: waits for `n` errors to reach berth.onerror and takes them.
function loop.wait_errors(n, timeout)
  wait.wait_until(function() return #task_errors >= n end, timeout,
    n .. " error(s) reported to berth.onerror")
  return loop.take_errors()
end

return loop

--- Waiting in the specs: a monotonic clock, a pause that works inside a
-- berth task and outside the loop, and bounded polls.
--
-- Use `wait_until` where the kernel or a child process must catch up, and
-- berth.sleep(0) where another task only needs to run (or park) first. A
-- fixed sleep belongs in a spec only where the time itself is under test
-- (a timeout that must fire, a slow peer, a quiet period), with a comment.
local berth = require "berth"

local wait = {}

local system_ok, system = pcall(require, "system")

--- Monotonic wall clock in seconds, independent of the berth loop (whose
-- cached time stands still while a spec blocks outside it).
function wait.clock()
  if system_ok and system.monotime then return system.monotime() end
  return os.time()
end

--- Whether the caller runs in a coroutine (in the specs: a berth task)
-- rather than on the main thread, outside the loop.
local function in_task()
  local _, main = coroutine.running()
  return not main
end

--- Lets `seconds` pass: berth.sleep inside a task (the loop goes on),
-- a blocking sleep outside the loop.
function wait.pause(seconds)
  if in_task() then return berth.sleep(seconds) end
  if system_ok and system.sleep then
    system.sleep(seconds)
  else
    os.execute(("sleep %.3f"):format(seconds))
  end
  return true
end

--- Polls `pred()` every `interval` seconds (default a few milliseconds)
-- until it returns a true value, which is returned. Raises "timed out
-- waiting for <what>" after `timeout` seconds (default 2). Works inside a
-- task and outside the loop.
function wait.wait_until(pred, timeout, what, interval)
  local deadline = wait.clock() + (timeout or 2)
  interval = interval or (in_task() and 0.005 or 0.01)
  while true do
    local v = pred()
    if v then return v end
    if wait.clock() > deadline then
      error(("timed out after %g s waiting for %s"):format(timeout or 2, what or "a condition"), 2)
    end
    wait.pause(interval)
  end
end

return wait

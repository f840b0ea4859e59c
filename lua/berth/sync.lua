--- Task synchronisation: condition variables.
-- Built on the core's suspend/wake, which park a task and queue it again.
-- A waiter is woken exactly once, by a signal or by its timeout: the core
-- refuses a second wake of a task that is no longer suspended, so a
-- broadcast and a timeout landing in the same iteration cannot both wake
-- it (9.13); the waiter list only says who is still waiting.
-- @module berth.sync
local core = require "berth.core"

local sync = {}

local Cond = {}
Cond.__index = Cond

--- A new condition variable of the loop of core table `c` (default: the
-- default loop's).
function sync.cond(c)
  return setmetatable({ core = c or core, waiters = {} }, Cond)
end

local function remove(list, co)
  for i = 1, #list do
    if list[i] == co then
      table.remove(list, i)
      return true
    end
  end
  return false
end

-- What wait() returns once woken: the values, after the timer is gone.
local function woken(timer, ...)
  if timer then timer:cancel() end
  return ...
end

--- Wait for a signal. Task only.
-- @tparam[opt] number timeout seconds
-- @return[1] the values passed to `signal`/`broadcast` (or `true`)
-- @return[2] nil, "timeout"
function Cond:wait(timeout)
  local c = self.core
  c.checkwait("cond:wait") -- before it is listed: a wait that cannot
  local task = c.current() -- happen must leave nothing behind (9.2)
  local waiters = self.waiters
  waiters[#waiters + 1] = task
  local timer
  if timeout then
    timer = c.timer(timeout, 0, function()
      remove(self.waiters, task)
      c.wake(task, nil, "timeout")
    end)
  end
  return woken(timer, c.suspend())
end

local function wake(c, task, ...)
  if select("#", ...) == 0 then return c.wake(task, true) end
  return c.wake(task, ...)
end

--- Wake the longest-waiting task with `...`; returns whether one waited.
function Cond:signal(...)
  while #self.waiters > 0 do
    if wake(self.core, table.remove(self.waiters, 1), ...) then return true end
  end
  return false
end

--- Wake every waiting task with `...`; returns how many there were.
function Cond:broadcast(...)
  local waiters = self.waiters
  self.waiters = {}
  local n = 0
  for i = 1, #waiters do
    if wake(self.core, waiters[i], ...) then n = n + 1 end
  end
  return n
end

return sync

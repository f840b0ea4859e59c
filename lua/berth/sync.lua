--- Task synchronisation: condition variables.
-- Built on the core's suspend/wake, which park a task and queue it again;
-- a waiter is woken exactly once, by a signal or by its timeout, and the
-- waiter list says which: whoever removes the task from it wakes it.
-- @module berth.sync
local core = require "berth.core"

local sync = {}

local Cond = {}
Cond.__index = Cond

--- A new condition variable.
function sync.cond()
  return setmetatable({ waiters = {} }, Cond)
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
  local co = coroutine.running()
  local waiters = self.waiters
  waiters[#waiters + 1] = co
  local timer
  if timeout then
    timer = core.timer(timeout, 0, function()
      if remove(waiters, co) then core.wake(co, nil, "timeout") end
    end)
  end
  return woken(timer, core.suspend())
end

local function wake(co, ...)
  if select("#", ...) == 0 then core.wake(co, true) else core.wake(co, ...) end
end

--- Wake the longest-waiting task with `...`; returns whether one waited.
function Cond:signal(...)
  local co = table.remove(self.waiters, 1)
  if co then wake(co, ...) end
  return co ~= nil
end

--- Wake every waiting task with `...`; returns how many there were.
function Cond:broadcast(...)
  local waiters = self.waiters
  self.waiters = {}
  for i = 1, #waiters do wake(waiters[i], ...) end
  return #waiters
end

return sync

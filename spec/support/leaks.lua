--- What a test left alive on berth's default loop, named, and closed.
--
-- Every spec runs on the default loop (the one `require "berth"` drives).
-- Isolation comes from closing whatever a test leaves behind, so that the
-- next test starts from zero:
--
--   1. every task still alive gets a debug hook that raises at its next
--      instruction, so none of its code runs again;
--   2. berth.shutdown(0), and the loop is driven until it returns: it closes
--      every server, socket and object the loop holds and ends every task
--      still alive (its <close> variables run).
--
-- Step 1 and the leak report need to see the loop's tasks and objects,
-- which the public API does not list: they are read from the loop's anchor
-- table (the loop userdata's user value 1; a task is a berth.Task whose user
-- value 2 is its thread). That is the core's private layout (src/loop.c,
-- src/sched.c): it is confined to this file, and only used after a test,
-- when something was left behind.
local berth = require "berth"
local core = require "berth.core"
local clock = require("support.wait").clock

local leaks = {}

-- The default loop: every function of the default API has it as upvalue 1.
local function default_loop()
  local _, lp = debug.getupvalue(berth.sleep, 1)
  return lp
end

-- "Socket", "ServerSocket", "Timer", "Signal", "FileWatch" for a berth
-- object, nil for anything else.
local function class(v)
  if type(v) ~= "userdata" then return nil end
  local mt = debug.getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name:match("^berth%.(%w+)$") or nil
end

-- The function a suspended coroutine is parked in (its innermost frame).
local function parked_in(co)
  local info = debug.getinfo(co, 0, "f")
  return info and info.func
end

-- The anchor table of loop `lp`: its user value 1.
local function anchor_table(lp)
  if berth.stats().anchors == 0 then return nil end
  return (debug.getuservalue(lp, 1))
end

--- Everything the default loop holds: `tasks` (coroutines) and `objects`
-- (berth objects), from its anchor table.
function leaks.scan()
  local found = { tasks = {}, objects = {} }
  local t = anchor_table(default_loop())
  if not t then return found end
  for _, v in pairs(t) do
    if class(v) == "Task" then
      local co = debug.getuservalue(v, 2)
      if type(co) == "thread" and coroutine.status(co) ~= "dead" then
        found.tasks[#found.tasks + 1] = co
      end
    elseif class(v) then
      found.objects[#found.objects + 1] = v
    end
  end
  return found
end

---------------------------------------------------------------------------
-- Naming what was left
---------------------------------------------------------------------------

local waits -- function -> what a task parked in it waits for (built lazily)
local function wait_name(fn)
  if not waits then
    local S, SS = core.Socket, core.ServerSocket
    waits = {
      [berth.sleep] = "berth.sleep", [core.suspend] = "a berth.cond wait",
      [S.read] = "sock:read", [S.readsome] = "sock:readsome",
      [S.readuntil] = "sock:readuntil", [S.write] = "sock:write",
      [S.flush] = "sock:flush", [SS.accept] = "server:accept",
      [core.connect] = "berth.connect", [core.resolve] = "name resolution",
    }
  end
  return waits[fn]
end

-- The spec line a task is at: its innermost frame in a spec file (not in
-- spec/support, not in berth's Lua library), else its innermost Lua frame.
local function where(co)
  local first
  for level = 0, 100 do
    local info = debug.getinfo(co, level, "Sl")
    if not info then break end
    if info.what ~= "C" and info.currentline > 0 then
      local src = info.short_src
      local at = src .. ":" .. info.currentline
      if src:find("spec/", 1, true) and not src:find("spec/support/", 1, true) then
        return at
      end
      first = first or at
    end
  end
  return first
end

local function describe_task(co)
  local fn = parked_in(co)
  if not fn then return "task not started yet" end
  local what = wait_name(fn) or "a call"
  local at = where(co)
  return ("task parked in %s%s"):format(what, at and (" at " .. at) or "")
end

-- "host:port" (or a unix path) from a method returning host, port.
local function address(obj, method)
  local ok, host, port = pcall(obj[method], obj)
  if not ok or not host then return "?" end
  return port == 0 and tostring(host) or ("%s:%s"):format(host, port)
end

local function server_address(v)
  local ok, host, port = pcall(function() return v:address(), v:port() end)
  if not ok or not host then return "?" end
  return port == 0 and tostring(host) or ("%s:%s"):format(host, port)
end

local KINDS = { Socket = "socket", ServerSocket = "server", Timer = "timer",
  Signal = "signal", FileWatch = "watch" }

local function describe_object(v)
  local c = class(v)
  if c == "ServerSocket" then return "server on " .. server_address(v) end
  if c == "Socket" then
    return ("socket %s -> %s"):format(address(v, "localaddr"), address(v, "peer"))
  end
  if c == "Timer" then return "timer (" .. (tostring(v):match("%((%a+)%)") or "?") .. ")" end
  if c == "Signal" then return "signal watcher" end
  return KINDS[c] or tostring(v)
end

--- What the default loop holds now: a list of lines naming each leftover,
-- and the number of each kind ("task", "server", "socket", "timer",
-- "signal", "watch"). Servers and sockets that the loop does not hold but
-- Lua still references are counted from berth.stats().
function leaks.describe()
  local stats = berth.stats()
  local found = leaks.scan()
  local lines, kinds = {}, {}
  local function add(kind, line)
    kinds[kind] = (kinds[kind] or 0) + 1
    lines[#lines + 1] = line
  end
  for _, co in ipairs(found.tasks) do add("task", describe_task(co)) end
  for _, v in ipairs(found.objects) do add(KINDS[class(v)] or "object", describe_object(v)) end
  for kind, stat in pairs { server = "servers", socket = "sockets" } do
    for _ = (kinds[kind] or 0) + 1, stats[stat] do
      add(kind, kind .. " not held by the loop, still referenced from Lua")
    end
  end
  local unnamed = stats.tasks - (kinds.task or 0)
  for _ = 1, unnamed do add("task", "task (not found in the anchor table)") end
  table.sort(lines)
  return lines, kinds
end

---------------------------------------------------------------------------
-- Closing what was left
---------------------------------------------------------------------------

-- The error a leftover task is ended with (swallowed while cleaning up).
local ENDED = setmetatable({}, { __tostring = function()
  return "task ended by spec/support: the test that started it is over"
end })

local function end_at_next_instruction(co)
  debug.sethook(co, function() error(ENDED, 0) end, "", 1)
end

local function busy()
  local s = berth.stats()
  return s.tasks + s.anchors
end

--- Closes everything the default loop holds and ends every task, so that
-- the next test starts from zero. Returns berth.stats() after a full GC.
function leaks.close_all()
  local previous = berth.onerror(function() end) -- the ended tasks' errors
  local deadline = clock() + 3
  for _, co in ipairs(leaks.scan().tasks) do end_at_next_instruction(co) end
  berth.shutdown(0)
  berth.run()
  -- Ended tasks are let go at the next iteration; a task waiting on
  -- something outside the loop (the resolver thread) when it answers.
  repeat
    berth.step(0.01)
    collectgarbage()
    collectgarbage()
  until busy() == 0 or clock() > deadline
  berth.onerror(previous)
  return berth.stats()
end

return leaks

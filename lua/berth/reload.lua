--- Reloadable handler modules.
-- A handler given by module name (`berth.serve{handler = "app.echo"}`) is
-- loaded from its file through `package.path` and can be replaced while
-- the server runs: on `reload.all()` (SIGHUP in the host), or when its
-- file changes once `reload.watch()` (`berth --watch`) is on.
--
-- A module returns either `function(sock, state)` or a table:
--
--     return {
--       handle = function(sock, state) ... end,   -- required
--       init   = function(state) ... end,         -- first load only
--       reload = function(state) ... end,         -- each successful reload
--     }
--
-- `state` is one table per module that berth keeps across reloads. A
-- `reload` hook runs on the live table before the new version is
-- committed: it should raise before it changes anything, or the old
-- version keeps serving a half-migrated state.
-- A new version is compiled and run in a scratch environment (its globals
-- do not touch `_G`) and validated before it replaces the old one; if
-- anything fails the old version keeps serving and the error is logged and
-- counted. New connections get the new version; connections already
-- running keep the code they started with.
-- @module berth.reload
local core = require "berth.core"
local log = require "berth.log"

local reload = {}

local modules = {}        -- name -> record
local order = {}          -- names, in load order
local counters = { reloads = 0, reload_failures = 0 }
local watching = false
local SETTLE = 0.1        -- seconds of quiet after a file event before reloading

local function clock()
  return os.clock() -- CPU time is fine for "how long did loading take"
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local src = f:read("a")
  f:close()
  return src
end

-- Compile and run the source in a scratch environment; validate what it
-- returns. Returns the module (as a table with handle) or nil, message.
local function build(name, path, src)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = load(src, "@" .. path, "t", env)
  if not chunk then return nil, err end
  local ok, mod = xpcall(chunk, debug.traceback, name, path)
  if not ok then return nil, mod end
  if type(mod) == "function" then mod = { handle = mod } end
  if type(mod) ~= "table" or type(mod.handle) ~= "function" then
    return nil, ("%s: module %s must return a function or a table with handle(sock) (got %s)")
      :format(path, name, type(mod))
  end
  return mod
end

-- Run a hook of the new version; a failing hook fails the load.
local function run_hook(mod, hook, state)
  if type(mod[hook]) ~= "function" then return true end
  return xpcall(mod[hook], debug.traceback, state)
end

local function failed(rec, err)
  counters.reload_failures = counters.reload_failures + 1
  counters.last_reload_error = err
  counters.last_reload_failed = rec.name
  log.error("reload of %s failed, the previous version keeps serving: %s", rec.name, err)
  return nil, err
end

--- The handler for module `name`: loads it on first use (raising on any
-- error) and returns a function that runs the current version.
-- @tparam string name a module name, as for require
-- @treturn function handler(sock)
function reload.handler(name)
  local rec = modules[name]
  if not rec then
    local path, err = package.searchpath(name, package.path)
    if not path then error(("handler module %s not found:%s"):format(name, err), 2) end
    local src = assert(read_file(path))
    local mod, berr = build(name, path, src)
    if not mod then error(berr, 2) end
    rec = { name = name, path = path, source = src, current = mod, state = {}, version = 1 }
    local ok, herr = run_hook(mod, "init", rec.state)
    if not ok then error(herr, 2) end
    modules[name] = rec
    order[#order + 1] = name
    if watching then reload.watchmodule(rec) end
  end
  return function(sock) return rec.current.handle(sock, rec.state) end
end

--- Reload module `name` from its file.
-- @treturn[1] boolean true, or false when the source is unchanged
-- @treturn[2] nil
-- @treturn[2] string the error (the old version stays)
function reload.reload(name)
  local rec = modules[name]
  if not rec then return nil, "not a reloadable module: " .. tostring(name) end
  local started = clock()
  local src, err = read_file(rec.path)
  if not src then return failed(rec, err) end
  if src == rec.source then return false end
  local mod, berr = build(name, rec.path, src)
  if not mod then return failed(rec, berr) end
  local ok, herr = run_hook(mod, "reload", rec.state)
  if not ok then return failed(rec, herr) end
  rec.current, rec.source, rec.version = mod, src, rec.version + 1
  counters.reloads = counters.reloads + 1
  counters.last_reload = name
  if counters.last_reload_failed == name then
    counters.last_reload_error, counters.last_reload_failed = nil, nil
  end
  log.info("reloaded %s (%d ms)", name, math.floor((clock() - started) * 1000 + 0.5))
  return true
end

--- Reload every reloadable module (what SIGHUP does in the host).
-- @treturn integer how many were replaced
function reload.all()
  local n = 0
  for _, name in ipairs(order) do
    if reload.reload(name) then n = n + 1 end
  end
  return n
end

-- Editors save in place, through a temporary file renamed over the
-- original, or by deleting and re-creating it; core.watch reports each
-- complete save once. Reload once things have been quiet for SETTLE
-- seconds (an editor may write a backup first), if the file is there and
-- its source changed.
function reload.watchmodule(rec)
  if rec.watch then return end
  local pending
  rec.watch = assert(core.watch(rec.path, function()
    if pending then pending:cancel() end
    pending = core.timer(SETTLE, 0, function()
      pending = nil
      if read_file(rec.path) then reload.reload(rec.name) end
    end)
  end))
end

--- Watch the files of all reloadable modules (now and later ones).
function reload.watch()
  watching = true
  for _, name in ipairs(order) do reload.watchmodule(modules[name]) end
end

local root
function reload.root(dir) root = dir or root; return root end

--- Reload counters for berth.stats(): reloads, reload_failures,
-- last_reload, last_reload_error (nil once a later reload succeeded).
function reload.stats()
  return counters
end

--- The names of the reloadable modules, in load order.
function reload.names()
  return { table.unpack(order) }
end

return reload

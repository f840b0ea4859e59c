--- Reloadable handler modules, with the application modules they require.
-- A handler given by module name (`berth.serve{handler = "app.echo"}`) is
-- loaded from its file through `package.path` and can be replaced while
-- the server runs: on `reload.all()` (SIGHUP in the host), or when one of
-- its files changes once `reload.watch()` (`berth --watch`) is on.
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
--
-- **The module tree.** What a handler module `require`s while it loads,
-- and what those modules require in turn, is the handler's tree. A module
-- of the tree whose file is under an application root -- the directory of
-- the script the `berth` host runs, and the directory each handler module
-- was found from (for `app.echo` at `/srv/app/echo.lua`, `/srv`) -- is an
-- application module: it is reloaded with the handler. Anything else
-- (berth itself, system rocks, C modules, a module the script required
-- before the handler did) is a library and stays as it is.
--
-- **A reload** compiles and runs the new versions in scratch environments
-- (their globals do not touch `_G`), dependencies before the modules that
-- require them, and validates the handlers -- all of it before anything
-- is swapped. If any step fails, nothing changes: the old versions keep
-- serving, and the error is logged and counted. New connections get the
-- new versions; connections already running keep the code they started
-- with. When a file changes, its module is reloaded with every module and
-- handler that requires it (directly or not); SIGHUP and `reload.all()`
-- reload every handler and every application module, changed or not.
-- An application module is run again from scratch on each reload, so
-- module-level state there starts over: keep state in the handler's
-- `state` table (or in a library module).
-- @module berth.reload
local core = require "berth.core"
local log = require "berth.log"

local reload = {}

local handlers = {}       -- name -> handler record (see build_one)
local order = {}          -- handler names, in load order
local modules = {}        -- name -> application module record
local roots = {}          -- application roots (realpath), in order
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

-- An error of our own (a message that needs no traceback), raised inside
-- a build; the build's message handler unwraps it.
local Plain = {}
local function plain(msg) error(setmetatable({ msg }, Plain), 0) end
local function msgh(err)
  if getmetatable(err) == Plain then return err[1] end
  return debug.traceback(tostring(err), 2)
end

-- -------------------------------------------------------------------------
-- Application roots
-- -------------------------------------------------------------------------

--- Add `dir` to the application roots (the host adds the script's
-- directory). Returns the roots.
-- @tparam[opt] string dir
-- @treturn table the roots (canonical paths)
function reload.root(dir)
  local real = dir and core.realpath(dir)
  if real then
    local seen = false
    for _, r in ipairs(roots) do seen = seen or r == real end
    if not seen then roots[#roots + 1] = real end
  end
  return { table.unpack(roots) }
end

-- The root a module was found from: "/srv/app/echo.lua" for "app.echo"
-- gives "/srv"; the file's directory if the path does not end that way.
local function root_of(name, path)
  local rel = name:gsub("%.", "/")
  for _, tail in ipairs { "/" .. rel .. ".lua", "/" .. rel .. "/init.lua" } do
    if path:sub(-#tail) == tail then return path:sub(1, -#tail - 1) end
  end
  return path:match("^(.*)/[^/]*$") or "."
end

local function in_tree(path)
  local real = core.realpath(path)
  if not real then return false end
  for _, r in ipairs(roots) do
    if real:sub(1, #r + 1) == r .. "/" then return true end
  end
  return false
end

-- The file of module `name`, or raise naming it and the paths tried.
local function search(name, what)
  local path, err = package.searchpath(name, package.path)
  if not path then
    plain(("%s %s not found; tried:\n\t%s"):format(what, name, err))
  end
  return path
end

-- -------------------------------------------------------------------------
-- Generations: new versions built side by side with the live ones
-- -------------------------------------------------------------------------

-- A generation builds the new versions of the handlers it is asked for.
-- `fresh` names the application modules (and handlers) that are run
-- again; any other application module a new version requires is shared
-- as it is. Nothing live changes until commit.
local function generation(fresh)
  return { fresh = fresh or {}, built = {}, handlers = {}, loading = {}, done = false }
end

local build_module

-- `require` inside a module of generation `gen`, for record `rec`: notes
-- the dependency and picks the version this generation gives the name.
local function gen_require(gen, rec, name)
  if type(name) ~= "string" then return require(name) end -- require's own error
  if gen.done then -- a require at run time, after the load
    local m = modules[name]
    if m then return m.value end
    return require(name)
  end
  if not rec.seen[name] then
    rec.seen[name] = true
    rec.deps[#rec.deps + 1] = name
  end
  if gen.built[name] then return gen.built[name].value end
  local live = modules[name]
  if live and not gen.fresh[name] then return live.value end
  if not live and (package.loaded[name] ~= nil or name == "berth" or name:find("^berth%.")) then
    return require(name)
  end
  local path = live and live.path or package.searchpath(name, package.path)
  if not path or not in_tree(path) then return require(name) end
  return build_module(gen, name, path).value
end

-- Compile and run module `name` from `path` in a scratch environment whose
-- `require` is the generation's; raise on any error. A handler's record
-- goes to gen.handlers, an application module's to gen.built.
function build_module(gen, name, path, handler)
  if gen.loading[name] then
    plain(("%s: a require loop through %s"):format(path, name))
  end
  gen.loading[name] = true
  local src, rerr = read_file(path)
  if not src then plain(("%s: %s"):format(name, rerr)) end
  local rec = { name = name, path = path, source = src, deps = {}, seen = {} }
  local env = setmetatable({}, { __index = _G })
  env.require = function(n) return gen_require(gen, rec, n) end
  local chunk, lerr = load(src, "@" .. path, "t", env)
  if not chunk then plain(lerr) end
  local value = chunk(name, path)
  if value == nil then value = true end -- as require does
  rec.value = value
  rec.seen = nil
  if handler then gen.handlers[name] = rec else gen.built[name] = rec end
  gen.loading[name] = nil
  return rec
end

-- Build handler `name` in `gen`: its module, validated.
local function build_handler(gen, name)
  local live = handlers[name]
  local path = live and live.path or search(name, "handler module")
  local rec = build_module(gen, name, path, true)
  local mod = rec.value
  if type(mod) == "function" then mod = { handle = mod } end
  if type(mod) ~= "table" or type(mod.handle) ~= "function" then
    plain(("%s: module %s must return a function or a table with handle(sock) (got %s)")
      :format(path, name, type(rec.value)))
  end
  rec.mod = mod
  return rec
end

-- Build the handlers `names` in one generation; nil, err on any failure.
local function build(names, fresh)
  local gen = generation(fresh)
  local ok, err = xpcall(function()
    for _, name in ipairs(names) do build_handler(gen, name) end
  end, msgh)
  gen.done = true
  if not ok then return nil, err end
  return gen
end

-- Run a hook of a new version; a failing hook fails the load.
local function run_hook(mod, hook, state)
  if type(mod[hook]) ~= "function" then return true end
  return xpcall(mod[hook], debug.traceback, state)
end

local watch_record

-- Whether `name` is reachable from a handler's tree.
local function reachable()
  local seen = {}
  local function visit(rec)
    for _, dep in ipairs(rec.deps) do
      local m = modules[dep]
      if m and not seen[dep] then
        seen[dep] = true
        visit(m)
      end
    end
  end
  for _, name in ipairs(order) do visit(handlers[name]) end
  return seen
end

-- Make `gen`'s versions live: the handlers `names` and the application
-- modules it built; drop application modules no handler requires now.
local function commit(gen, names)
  for _, name in ipairs(names) do
    local new, live = gen.handlers[name], handlers[name]
    if new and live then
      live.current, live.source, live.deps = new.mod, new.source, new.deps
      live.version = live.version + 1
    end
  end
  for name, rec in pairs(gen.built) do
    local old = modules[name]
    rec.watch = old and old.watch
    modules[name] = rec
    package.loaded[name] = rec.value
  end
  local keep = reachable()
  for name, rec in pairs(modules) do
    if not keep[name] then
      if rec.watch then rec.watch:cancel() end
      modules[name] = nil
    end
  end
  if watching then
    for _, name in ipairs(names) do watch_record(handlers[name]) end
    for _, rec in pairs(modules) do watch_record(rec) end
  end
end

-- -------------------------------------------------------------------------
-- Loading and reloading
-- -------------------------------------------------------------------------

-- The live record of handler module `name`, loaded (with its tree) on
-- first use; raises on any error, a "not found" at `level` of our
-- caller's caller.
local function load_handler(name, level)
  local rec = handlers[name]
  if not rec then
    local path, err = package.searchpath(name, package.path)
    if not path then
      error(("handler module %s not found; tried:\n\t%s"):format(name, err), (level or 1) + 2)
    end
    reload.root(root_of(name, path))
    local gen, berr = build({ name })
    if not gen then error(berr, 0) end
    local new = gen.handlers[name]
    rec = { name = name, path = path, source = new.source, current = new.mod, deps = new.deps,
      state = {}, version = 1 }
    local ok, herr = run_hook(rec.current, "init", rec.state)
    if not ok then error(herr, 0) end
    handlers[name] = rec
    order[#order + 1] = name
    gen.handlers[name] = nil -- its live record is the one just made
    commit(gen, { name })
  end
  return rec
end

--- The handler for module `name`: loads it (and its tree) on first use,
-- raising on any error, and returns a function that runs the current
-- version.
-- @tparam string name a module name, as for require
-- @tparam[opt=1] integer level where a "not found" error points, as for
-- `error` (2: the caller of the function calling this)
-- @tparam[opt=1] integer nargs the handler's arguments before `state`: 1
-- (`handle(sock, state)`) or 2 (berth.http: `handle(req, res, state)`)
-- @treturn function handler(sock) (or handler(req, res))
function reload.handler(name, level, nargs)
  local rec = load_handler(name, level)
  if nargs == 2 then
    return function(a, b) return rec.current.handle(a, b, rec.state) end
  end
  return function(sock) return rec.current.handle(sock, rec.state) end
end

--- The same for a datagram handler: the module's
-- `handle(data, host, port, dgram, state)` (its result is the reply).
-- @tparam string name a module name, as for require
-- @tparam[opt=1] integer level as for `handler`
-- @treturn function handler(data, host, port, dgram)
function reload.packet_handler(name, level)
  local rec = load_handler(name, level)
  return function(data, host, port, d) return rec.current.handle(data, host, port, d, rec.state) end
end

local function failed(names, err)
  counters.reload_failures = counters.reload_failures + 1
  counters.last_reload_error = err
  counters.last_reload_failed = names
  log.error("reload of %s failed, the previous version keeps serving: %s",
    table.concat(names, ", "), err)
  return nil, err
end

-- Reload the handlers `names`, running again the modules in `fresh`.
local function reload_handlers(names, fresh)
  if #names == 0 then return 0 end
  local started = clock()
  local gen, err = build(names, fresh)
  if not gen then return failed(names, err) end
  for _, name in ipairs(names) do
    local ok, herr = run_hook(gen.handlers[name].mod, "reload", handlers[name].state)
    if not ok then return failed(names, herr) end
  end
  commit(gen, names)
  local with = {}
  for dep in pairs(gen.built) do with[#with + 1] = dep end
  table.sort(with)
  local ms = math.floor((clock() - started) * 1000 + 0.5)
  for _, name in ipairs(names) do
    log.info("reloaded %s (%d ms%s)", name, ms,
      #with > 0 and "; with " .. table.concat(with, ", ") or "")
  end
  counters.reloads = counters.reloads + #names
  counters.last_reload = core.now()
  counters.last_reload_modules = table.concat(names, " ")
  local cleared = counters.last_reload_failed
  if cleared then
    local all = true
    for _, n in ipairs(cleared) do all = all and gen.handlers[n] ~= nil end
    if all then counters.last_reload_error, counters.last_reload_failed = nil, nil end
  end
  return #names
end

-- Every application module and handler, as a `fresh` set.
local function everything()
  local fresh = {}
  for name in pairs(modules) do fresh[name] = true end
  for _, name in ipairs(order) do fresh[name] = true end
  return fresh
end

--- Reload handler module `name` and its application modules from their
-- files, changed or not.
-- @tparam string name a handler module's name
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string the error (the old versions stay)
function reload.reload(name)
  if not handlers[name] then return nil, "not a reloadable module: " .. tostring(name) end
  local fresh = { [name] = true }
  for _, dep in ipairs(reload.modules(name)) do fresh[dep] = true end
  local ok, err = reload_handlers({ name }, fresh)
  if not ok then return nil, err end
  return true
end

--- Reload every handler module and every application module, changed or
-- not, in one step (what SIGHUP does in the host): if any of them fails,
-- none is replaced.
-- @treturn[1] integer how many handlers were replaced
-- @treturn[2] nil
-- @treturn[2] string the error (the old versions stay)
function reload.all()
  return reload_handlers({ table.unpack(order) }, everything())
end

--- Reload what the modules `names` (handler or application modules whose
-- files changed) affect: them, and every module and handler that
-- requires them, directly or not. Modules whose source is unchanged are
-- skipped.
-- @tparam table names module names
-- @treturn[1] integer how many handlers were replaced (0: nothing changed)
-- @treturn[2] nil
-- @treturn[2] string the error
function reload.changed(names)
  local fresh, any = {}, false
  for _, name in ipairs(names) do
    local rec = handlers[name] or modules[name]
    if rec and read_file(rec.path) ~= rec.source then fresh[name], any = true, true end
  end
  if not any then return 0 end
  repeat -- add what depends on what is fresh, up to the handlers
    local grew = false
    local function consider(name, rec)
      if fresh[name] then return end
      for _, dep in ipairs(rec.deps) do
        if fresh[dep] then
          fresh[name], grew = true, true
          return
        end
      end
    end
    for name, rec in pairs(modules) do consider(name, rec) end
    for _, name in ipairs(order) do consider(name, handlers[name]) end
  until not grew
  local list = {}
  for _, name in ipairs(order) do
    if fresh[name] then list[#list + 1] = name end
  end
  return reload_handlers(list, fresh)
end

-- -------------------------------------------------------------------------
-- Watching
-- -------------------------------------------------------------------------

-- Editors save in place, through a temporary file renamed over the
-- original, or by deleting and re-creating it; core.watch reports each
-- complete save once. Changes are gathered until things have been quiet
-- for SETTLE seconds (an editor may write a backup first; a checkout
-- writes many files), then reloaded together.
local pending, pending_timer = {}, nil

local function settle()
  pending_timer = nil
  local names = {}
  for name in pairs(pending) do
    local rec = handlers[name] or modules[name]
    if rec and read_file(rec.path) then names[#names + 1] = name end
  end
  pending = {}
  table.sort(names)
  reload.changed(names)
end

function watch_record(rec)
  if not rec or rec.watch then return end
  local name = rec.name
  rec.watch = assert(core.watch(rec.path, function()
    pending[name] = true
    if pending_timer then pending_timer:cancel() end
    pending_timer = core.timer(SETTLE, 0, settle)
  end))
end

--- Watch the files of all handler and application modules (now and later
-- ones).
function reload.watch()
  watching = true
  for _, name in ipairs(order) do watch_record(handlers[name]) end
  for _, rec in pairs(modules) do watch_record(rec) end
end

-- -------------------------------------------------------------------------
-- Introspection
-- -------------------------------------------------------------------------

--- Reload counters for berth.stats(): `reloads` (handler modules
-- replaced), `reload_failures`, `last_reload` (the loop time of the last
-- successful reload, seconds since the epoch), `last_reload_modules` (the
-- handler modules it replaced, separated by spaces), `last_reload_error`
-- (nil once a later reload of the same modules succeeded).
-- @treturn table
function reload.stats()
  return {
    reloads = counters.reloads, reload_failures = counters.reload_failures,
    last_reload = counters.last_reload, last_reload_modules = counters.last_reload_modules,
    last_reload_error = counters.last_reload_error,
  }
end

--- The names of the reloadable handler modules, in load order.
-- @treturn table
function reload.names()
  return { table.unpack(order) }
end

--- The application modules of handler `name`'s tree (or of every
-- handler's), sorted; each is reloaded with the handlers that require it.
-- @tparam[opt] string name a handler module
-- @treturn table module names
function reload.modules(name)
  local list, seen = {}, {}
  local function visit(rec)
    for _, dep in ipairs(rec.deps) do
      local m = modules[dep]
      if m and not seen[dep] then
        seen[dep] = true
        list[#list + 1] = dep
        visit(m)
      end
    end
  end
  for _, h in ipairs(order) do
    if name == nil or h == name then visit(handlers[h]) end
  end
  table.sort(list)
  return list
end

return reload

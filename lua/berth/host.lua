--- The `berth` executable's Lua side: what runs before the script.
-- host.c parses the command line, opens berth and calls
-- `host.start(berth, opts)`; then it runs the `-e` chunks and the script
-- (but for the master, which runs none), then the loop.
--
-- The stop-signal policy is written here once, for the single-process
-- host and for the master (berth.master): the first SIGINT, SIGTERM or
-- SIGQUIT starts a graceful stop (SIGQUIT without the drain delay), a
-- second one exits at once. SIGUSR2 is the binary upgrade (berth.upgrade;
-- a master's is in berth.master).
--
-- Nothing here has effects until called: the functions take the berth
-- table (or what they need of it) as arguments, so they can be tested alone.
-- @module berth.host
local host = {}

--- The stop-signal policy: a handler for SIGINT and SIGTERM.
-- The first signal calls `opts.graceful(name)`. A second one calls
-- `opts.hurry(name)` (if given), logs "PREFIXsecond SIGNAME: exiting now"
-- at warn and calls `opts.exit(1)`.
-- @tparam table opts `graceful`, `hurry`, `log` (berth.log), `prefix`
-- (default ""), `exit` (default os.exit)
-- @treturn function handler(name), name as berth.signal gives it ("TERM")
function host.stop_policy(opts)
  local log, prefix, exit = opts.log, opts.prefix or "", opts.exit or os.exit
  local stopping = false
  return function(name)
    if stopping then
      if opts.hurry then opts.hurry(name) end
      log.warn("%ssecond SIG%s: exiting now", prefix, name)
      return exit(1)
    end
    stopping = true
    return opts.graceful(name)
  end
end

--- Install `host.stop_policy(opts)` on SIGINT, SIGTERM and SIGQUIT (the
-- same stop without the drain delay: `graceful` gets the name and
-- decides).
-- @tparam table berth the berth API (its `signal`)
-- @tparam table opts as for stop_policy
-- @treturn function the handler
function host.on_stop_signals(berth, opts)
  local handler = host.stop_policy(opts)
  berth.signal("INT", handler)
  berth.signal("TERM", handler)
  berth.signal("QUIT", handler)
  return handler
end

--- A single process's binary upgrade: on SIGUSR2 start the executable on
-- disk with the listeners of `registry` (berth.inherit.wrap), and once it
-- is ready, drain (without the drain delay: the new process accepts on
-- the same sockets already). If it fails, keep serving.
-- @tparam table berth the API table
-- @tparam table opts the host's options (`exe`, `command`, `grace`)
-- @tparam table registry from berth.inherit.wrap
function host.on_upgrade_signal(berth, opts, registry)
  local upgrade = require "berth.upgrade"
  local busy = false
  berth.signal("USR2", function()
    if busy or berth.draining() then
      berth.log.warn("SIGUSR2: %s; ignored", busy and "an upgrade is under way" or "shutting down")
      return
    end
    busy = true
    berth.log.info("SIGUSR2: starting %s", opts.exe or "?")
    local pid, err = upgrade.start(berth, opts, registry.handed())
    if not pid then
      busy = false
      berth.log.error("SIGUSR2: upgrade failed (%s); still serving", err)
      return
    end
    berth.log.info("SIGUSR2: process %d is ready and serving; draining (grace %gs)", pid, opts.grace)
    berth.shutdown(opts.grace, 0)
  end)
end

--- `listen` for `--check`: binds nothing real. A TCP listener goes to an
-- ephemeral port on 127.0.0.1, a unix one to a fresh temporary path, and
-- `fd` is ignored; every other option is kept, so it is still checked.
-- @tparam function listen the real listen
-- @tparam[opt] function tmpname a fresh path (default os.tmpname)
-- @treturn function listen(opts)
function host.check_listen(listen, tmpname)
  tmpname = tmpname or os.tmpname
  return function(opts)
    if type(opts) ~= "table" then return listen(opts) end
    local t = {}
    for k, v in pairs(opts) do t[k] = v end
    t.fd = nil
    if t.path then
      t.path = tmpname()
      os.remove(t.path)
    else
      t.host, t.port = "127.0.0.1", 0
    end
    return listen(t)
  end
end

--- `udp` for `--check`, the same way: a UDP server socket (a host, port
-- or path) goes to an ephemeral port on 127.0.0.1 or a fresh temporary
-- path; `fd` is ignored and no multicast group is joined (membership is
-- the network's business, not the script's); a client socket stays one.
-- @tparam function udp the real udp
-- @tparam[opt] function tmpname a fresh path (default os.tmpname)
-- @treturn function udp(opts)
function host.check_udp(udp, tmpname)
  tmpname = tmpname or os.tmpname
  return function(opts)
    if opts ~= nil and type(opts) ~= "table" then return udp(opts) end
    local t = {}
    for k, v in pairs(opts or {}) do t[k] = v end
    t.fd, t.multicast = nil, nil
    if t.path then
      t.path = tmpname()
      os.remove(t.path)
    elseif t.host ~= nil or t.port ~= nil then
      t.host, t.port = "127.0.0.1", 0
    end
    return udp(t)
  end
end

local failed = false -- --strict saw an unhandled task error

--- `--strict`: an error in a task that reaches the default handler (no
-- server's on("error"), no berth.onerror of the script's) is logged as
-- usual, then starts a graceful shutdown, and the process exits 1.
-- @tparam table berth the berth module
-- @tparam number grace seconds for the shutdown
function host.strict(berth, grace)
  local default
  default = berth.onerror(function(err, traceback, sock)
    default(err, traceback, sock)
    if failed then return end
    failed = true
    berth.log.error("--strict: a task failed and nothing handled the error: shutting down")
    berth.shutdown(grace)
  end)
end

--- The exit status the host asks for: 1 once `--strict` saw an unhandled
-- task error, else 0.
-- @treturn integer
function host.status()
  return failed and 1 or 0
end

--- The script's directory, first on the module path: `berth /abs/app.lua`
-- finds `app`'s modules (its handler modules too) from any directory.
-- It is also the root of the application's module tree that hot reload
-- reloads with a handler (berth.reload).
-- @tparam table berth the berth module
-- @tparam string script the script's path
-- @treturn string the directory
function host.script_dir(berth, script)
  local dir = script:match("^(.*)/[^/]*$") or "."
  if dir == "" then dir = "/" end
  package.path = ("%s/?.lua;%s/?/init.lua;%s"):format(dir, dir, package.path)
  berth.reload.root(dir)
  return dir
end

--- Prepare the process for its mode before the script runs.
-- @tparam table berth the berth module
-- @tparam table opts from the command line: `mode` ("single", "worker",
-- "check" or "master"), `level` (log level), `limits` (for berth.limits),
-- `grace` (seconds), `watch` (boolean), `strict` (boolean), `script` (its
-- path, or nil for -e or stdin), `drop` (a function dropping privileges,
-- or nil), and for the master `workers` and `argv` (a worker's command
-- line)
function host.start(berth, opts)
  berth.log.level(opts.level)
  berth.limits(opts.limits)
  local pool -- sockets handed over: socket activation, or an upgrade
  if opts.mode == "single" or opts.mode == "master" then
    pool = require("berth.inherit").load()
  end
  if opts.mode == "master" then
    return require("berth.master").run(berth, opts, pool) -- it runs no script
  end
  if opts.script then host.script_dir(berth, opts.script) end
  if opts.strict then host.strict(berth, opts.grace) end
  if opts.proxy then berth.proxy.defaults(opts.proxy) end
  if opts.drop then berth.spawn(opts.drop) end -- the first thing the loop runs
  if opts.mode == "check" then
    berth.listen = host.check_listen(berth.listen)
    berth.udp = host.check_udp(berth.udp)
    return
  end
  if opts.watch then berth.reload.watch() end
  if opts.mode == "worker" then
    local channel = require("berth.core").proc.channel()
    if not channel then error("--worker: no channel from a master", 0) end
    require("berth.worker").start(berth, channel)
    -- The master's signal: a worker has nothing to hand over.
    berth.signal("USR2", function() berth.log.debug("worker: SIGUSR2 ignored") end)
  else
    local registry = require("berth.inherit").wrap(berth, pool)
    -- At the loop's first iteration, after the script's main chunk.
    berth.spawn(function() pool:ready(berth.log) end)
    host.on_upgrade_signal(berth, opts, registry)
  end
  berth.signal("HUP", function()
    berth.reload.all()
    berth.tls.reload() -- new certificates for new handshakes
  end)
  host.on_stop_signals(berth, {
    log = berth.log,
    graceful = function(name)
      local delay = name ~= "QUIT" and berth.limits().drain_delay or false
      if delay then
        berth.log.info("SIG%s: draining for %gs, then shutting down (grace %gs)", name, delay,
          opts.grace)
      else
        berth.log.info("SIG%s: shutting down (grace %gs)", name, opts.grace)
      end
      berth.shutdown(opts.grace, delay or 0)
    end,
  })
end

return host

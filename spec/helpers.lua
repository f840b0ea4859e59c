--- Shared helpers for berth's busted specs.
--
-- Every spec drives the real loop in-process over real loopback sockets:
--
--   helpers.run(function()          -- the body runs as a berth task
--     local p <close> = helpers.pair()
--     ...
--   end)
--
-- `run` guards the loop with a hard wall-clock timer, re-raises errors from
-- the task, checks `expect` counters and fails on task errors nobody took.
-- `helpers.before`/`helpers.after` go into each file's before_each/after_each;
-- `after` is the leak check (no socket, server, task or anchor left).
local assert = require "luassert"
local berth = require "berth"

local helpers = { berth = berth }

local DEFAULT_LIMIT = 5 -- seconds a test body may take
local SETTLE_LIMIT = 2  -- seconds left for other tasks after the body ends

-- Errors that reached berth.onerror during the current test.
local task_errors = {}
-- expect() counters of the current test.
local expectations = {}
-- Child processes and temporary paths of the current test.
local processes, tmpdirs = {}, {}

local function on_task_error(err, traceback, sock)
  task_errors[#task_errors + 1] = { err = err, traceback = traceback, sock = sock }
end

---------------------------------------------------------------------------
-- Per-test setup and leak check
---------------------------------------------------------------------------

local function counts()
  local s = berth.stats()
  return { sockets = s.sockets, servers = s.servers, tasks = s.tasks, anchors = s.anchors }
end
helpers.counts = counts

function helpers.before()
  task_errors, expectations = {}, {}
  berth.onerror(on_task_error)
end

-- What a clean test leaves behind: nothing. After a test leaked, its
-- leftovers become the baseline, so that one leak fails one test and not
-- every test after it.
local baseline = { sockets = 0, servers = 0, tasks = 0, anchors = 0 }

function helpers.after()
  for _, proc in ipairs(processes) do proc:close() end
  processes = {}
  for _, dir in ipairs(tmpdirs) do os.execute("rm -rf " .. helpers.shquote(dir)) end
  tmpdirs = {}
  task_errors = {}
  collectgarbage()
  collectgarbage()
  local now, want = counts(), baseline
  baseline = now
  for k, v in pairs(now) do
    if v > want[k] then
      local note = ""
      if want.sockets + want.servers + want.tasks + want.anchors > 0 then
        note = " (expected counts are what earlier tests leaked)"
      end
      assert.same(want, now, "leak: objects left alive after the test" .. note)
    end
  end
end

---------------------------------------------------------------------------
-- Running the loop
---------------------------------------------------------------------------

--- Wraps `fn` so that each call is counted; `helpers.run` then asserts that
-- it was called exactly `n` times (default 1). The GC runs after every call
-- to shake out objects that are only kept alive by accident.
function helpers.expect(fn, n, label)
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
-- Bounded: a test that leaves work behind is reported by the leak check.
local function settle()
  local deadline = berth.now() + SETTLE_LIMIT
  repeat
    collectgarbage()
    local c = counts()
    if c.tasks <= baseline.tasks and c.anchors <= baseline.anchors then return end
    berth.step(0.01)
  until berth.now() > deadline
end

--- Runs `fn` as a berth task and drives the loop with `berth.run()` until it
-- ends, under a wall-clock guard of `limit` seconds (default 5). Raises the
-- task's error, a guard timeout, an unexpected error reported to
-- berth.onerror, or a failed `expect` count.
--
-- Specs block outside the loop (child processes, fixtures), which leaves the
-- loop's cached time behind; one non-blocking step first brings it up to
-- date, so that only sched_spec's dedicated test (opts.keep_stale_time)
-- fails if deadlines are computed from a stale berth.now().
function helpers.run(fn, limit, opts)
  limit = limit or DEFAULT_LIMIT
  if not (opts and opts.keep_stale_time) then berth.step(0) end
  local failure, finished
  local guard = berth.timer(limit, 0, function()
    failure = failure or ("wall-clock guard: the test did not finish within %g s"):format(limit)
    berth.shutdown(0)
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
  settle()
  failure = failure or take_unhandled() or check_expectations()
  if failure then error(failure, 0) end
end

--- Task only: waits until `pred()` is true, polling every few milliseconds.
-- Raises if it is still false after `timeout` seconds (default 2).
function helpers.wait_until(pred, timeout, what)
  local deadline = berth.now() + (timeout or 2)
  while not pred() do
    if berth.now() > deadline then
      error("timed out waiting for " .. (what or "a condition"), 2)
    end
    berth.sleep(0.005)
  end
  return true
end

--- Errors reported to berth.onerror so far (and forget them): a list of
-- { err =, traceback =, sock = }.
function helpers.take_errors()
  local list = task_errors
  task_errors = {}
  return list
end

--- Task only: waits for `n` errors to reach berth.onerror and takes them.
function helpers.wait_errors(n, timeout)
  helpers.wait_until(function() return #task_errors >= n end, timeout,
    n .. " error(s) reported to berth.onerror")
  return helpers.take_errors()
end

---------------------------------------------------------------------------
-- Servers and sockets
---------------------------------------------------------------------------

local function with_defaults(opts)
  local t = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do t[k] = v end
  if t.path then t.host, t.port = nil, nil end
  return t
end

--- berth.listen on 127.0.0.1, port 0 unless `opts` says otherwise; asserts.
function helpers.listen(opts)
  local server, code, errno = berth.listen(with_defaults(opts))
  assert(server, ("listen failed: %s %s"):format(tostring(code), tostring(errno)))
  return server
end

--- berth.serve{handler = handler, ...opts} on 127.0.0.1:0; asserts.
function helpers.serve(handler, opts)
  local t = with_defaults(opts)
  t.handler = handler
  local server, code, errno = berth.serve(t)
  assert(server, ("serve failed: %s %s"):format(tostring(code), tostring(errno)))
  return server
end

--- Task only: connects to a ServerSocket (or a port on `host`); asserts.
function helpers.connect(target, host)
  local sock, code, extra
  if type(target) == "number" then
    sock, code, extra = berth.connect(host or "127.0.0.1", target, { timeout = 2 })
  elseif target:port() == 0 then
    sock, code, extra = berth.connect { path = target:address(), timeout = 2 }
  else
    sock, code, extra = berth.connect(target:address(), target:port(), { timeout = 2 })
  end
  assert(sock, ("connect failed: %s %s"):format(tostring(code), tostring(extra)))
  return sock
end

local Pair = {}
Pair.__index = Pair
function Pair:close()
  self.client:close()
  self.peer:close()
  self.server:close()
end
Pair.__close = Pair.close

--- Task only: a connected pair over a fresh listener. Returns a table with
-- `client` (from berth.connect), `peer` (from server:accept) and `server`;
-- closing it (or `<close>`) closes all three.
function helpers.pair(opts)
  local server = helpers.listen(opts)
  local client = helpers.connect(server)
  local peer = assert(server:accept(2))
  return setmetatable({ server = server, client = client, peer = peer }, Pair)
end

--- A connection handler that echoes every byte until EOF.
function helpers.echo(sock)
  while true do
    local data = sock:readsome()
    if not data or not sock:write(data) then return end
  end
end

--- Task only: writes `line` .. "\n" and returns the line read back.
function helpers.roundtrip(sock, line, timeout)
  assert(sock:write(line, "\n"))
  return sock:read("l", timeout or 2)
end

--- Checks a `nil, code, extra` failure. `extra` is only compared when given.
function helpers.assert_fail(code, extra, ...)
  local n = select("#", ...)
  local ok, got_code, got_extra = ...
  assert(n >= 2, ("expected nil, %q but got %d value(s): %s"):format(code, n, tostring(ok)))
  assert.is_nil(ok, "expected a failure, got a success")
  assert.equal(code, got_code)
  if extra ~= nil then assert.equal(extra, got_extra) end
end

--- Calls fn(...) and asserts that it raises an error matching `pattern`
-- (a plain substring).
function helpers.assert_raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error containing " .. pattern)
  assert(tostring(err):find(pattern, 1, true),
    ("error %q does not contain %q"):format(tostring(err), pattern))
end

--- Compares two (large) byte strings and reports the first difference.
function helpers.assert_bytes(expected, got)
  if expected == got then return end
  if type(got) ~= "string" then
    error(("expected %d bytes, got %s"):format(#expected, tostring(got)), 2)
  end
  local i = 1
  while i <= #expected and expected:byte(i) == got:byte(i) do i = i + 1 end
  error(("byte strings differ: expected %d bytes, got %d; first difference at byte %d")
    :format(#expected, #got, i), 2)
end

--- `n` pseudo-random bytes from a fixed seed (reproducible).
function helpers.random_bytes(n, seed)
  math.randomseed(seed or 20240601)
  local parts = {}
  for i = 1, n // 4 do parts[i] = string.pack("<I4", math.random(0, 0xffffffff)) end
  for _ = 1, n % 4 do parts[#parts + 1] = string.char(math.random(0, 255)) end
  return table.concat(parts)
end

---------------------------------------------------------------------------
-- Processes, files, clocks
---------------------------------------------------------------------------

function helpers.shquote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- This process's PID (first field of /proc/self/stat).
function helpers.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

--- Sends signal `sig` ("TERM", "USR1", ...) to `pid`.
function helpers.kill(pid, sig)
  assert(os.execute(("kill -%s %d"):format(sig, pid)))
end

local system_ok, system = pcall(require, "system")
--- Monotonic wall clock in seconds (independent of the berth loop).
function helpers.clock()
  if system_ok and system.monotime then return system.monotime() end
  return os.time()
end

--- A fresh temporary directory, removed after the test.
function helpers.tmpdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  assert(dir and #dir > 0, "mktemp -d failed")
  tmpdirs[#tmpdirs + 1] = dir
  return dir
end

function helpers.is_socket_file(path)
  return os.execute("test -S " .. helpers.shquote(path)) == true
end

function helpers.exists(path)
  return os.execute("test -e " .. helpers.shquote(path)) == true
end

function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

function helpers.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

--- The host executable: $BERTH_HOST, else build/berth.
function helpers.host_binary()
  return os.getenv("BERTH_HOST") or "build/berth"
end

local Process = {}
Process.__index = Process

-- PIDs whose parent is `pid` (from /proc/*/stat; no procps needed).
local function children(pid)
  local list = {}
  local ls = io.popen("ls /proc")
  for name in ls:lines() do
    local f = name:match("^%d+$") and io.open("/proc/" .. name .. "/stat")
    if f then
      local stat = f:read("a") or ""
      f:close()
      -- pid (comm) state ppid ...: comm may hold spaces and parentheses.
      local ppid = stat:match(".*%) %S+ (%d+)")
      if tonumber(ppid) == pid then list[#list + 1] = tonumber(name) end
    end
  end
  ls:close()
  return list
end

--- Starts `argv` (a list of words) as a child process whose PID is known:
-- the shell prints its own PID and then execs the command, so signals go
-- straight to it. A watchdog subshell kills it after `opts.limit` seconds
-- (default 30), so that no blocking read of its output can hang the suite;
-- `wait`/`close` end the watchdog. `opts.env` adds environment variables.
function helpers.start(argv, opts)
  opts = opts or {}
  local words = {}
  for k, v in pairs(opts.env or {}) do words[#words + 1] = helpers.shquote(k .. "=" .. v) end
  for _, w in ipairs(argv) do words[#words + 1] = helpers.shquote(w) end
  local stderr = os.tmpname()
  -- In the ( ) subshell $$ is still the outer shell's PID, which the exec
  -- hands on to the command; $! is the watchdog's PID.
  local script = ("(sleep %d; kill -KILL $$) </dev/null >/dev/null 2>&1 & echo $$ $!; exec \"$@\"")
    :format(opts.limit or 30)
  local cmd = ("sh -c %s sh env %s </dev/null 2>%s")
    :format(helpers.shquote(script), table.concat(words, " "), helpers.shquote(stderr))
  local handle = assert(io.popen(cmd, "r"))
  local first = handle:read("l") or ""
  local pid, watchdog = first:match("^(%d+) (%d+)$")
  assert(pid, "could not read the child's PID")
  local proc = setmetatable({ pid = math.tointeger(tonumber(pid)),
    watchdog = math.tointeger(tonumber(watchdog)), handle = handle,
    stderr_path = stderr, argv = argv }, Process)
  processes[#processes + 1] = proc
  return proc
end

--- Blocking: the next line of the child's stdout (nil at EOF).
function Process:readline()
  return self.handle:read("l")
end

function Process:kill(sig)
  helpers.kill(self.pid, sig or "TERM")
end

-- Ends the watchdog and its sleep (they hold no pipe, but must not fire
-- at a PID that may have been reused by then).
function Process:end_watchdog()
  for _, child in ipairs(children(self.watchdog)) do
    os.execute(("kill -KILL %d 2>/dev/null"):format(child))
  end
  os.execute(("kill -KILL %d 2>/dev/null"):format(self.watchdog))
end

--- Blocking (bounded by the watchdog): reads the rest of stdout and waits
-- for the exit. Returns rest, how ("exit"/"signal"), code; a command killed
-- by signal N shows as "exit", 128+N (the shell's report).
function Process:wait()
  if self.result then return table.unpack(self.result) end
  local rest = self.handle:read("a")
  local _, how, code = self.handle:close()
  self:end_watchdog()
  self.result = { rest, how, code }
  return rest, how, code
end

function Process:stderr()
  return helpers.read_file(self.stderr_path) or ""
end

--- Kills the command if it is still running, and reaps it.
function Process:close()
  if not self.result then
    os.execute(("kill -KILL %d 2>/dev/null"):format(self.pid))
    self:wait()
  end
  os.remove(self.stderr_path)
end

--- Describes the child for failure messages.
function Process:describe()
  return table.concat(self.argv, " ") .. "\n--- stderr:\n" .. self:stderr()
end

--- Runs the host executable with `args` to completion. Returns stdout,
-- exit code (or 128+signal) and stderr.
function helpers.run_host(args, opts)
  local argv = { helpers.host_binary() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local proc = helpers.start(argv, opts)
  local out, how, code = proc:wait()
  if how == "signal" then code = 128 + code end
  return out, code, proc:stderr()
end

local LUA = os.getenv("LUA") or "lua5.4"
--- Environment that lets a child `lua5.4` require the build tree.
function helpers.lua_env()
  return {
    LUA_PATH = "lua/?.lua;lua/?/init.lua;spec/?.lua;;",
    LUA_CPATH = "build/lib/?.so;build/?.so;;",
  }
end

--- Runs spec/fixtures/<name>.lua under a stock lua5.4 with the build tree on
-- its path, to completion. `opts.shell_prefix` (e.g. "ulimit -n 64") runs
-- first in the child's shell. Returns stdout, exit code, stderr.
function helpers.run_fixture(name, args, opts)
  opts = opts or {}
  local argv = { "sh", "-c", (opts.shell_prefix or ":") .. '; exec "$@"', "sh",
    LUA, "spec/fixtures/" .. name .. ".lua" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local proc = helpers.start(argv, { env = helpers.lua_env(), limit = opts.limit or 20 })
  local out, how, code = proc:wait()
  if how == "signal" then code = 128 + code end
  return out, code, proc:stderr()
end

--- Starts examples/<name>.lua in the host with PORT=0 (and `env`), reads
-- its one "listening on HOST:PORT" line. Returns proc, host, port.
function helpers.start_example(name, env)
  local e = { PORT = "0" }
  for k, v in pairs(env or {}) do e[k] = v end
  local proc = helpers.start({ helpers.host_binary(), "examples/" .. name .. ".lua" }, { env = e })
  local line = proc:readline()
  assert(line, "the example printed no listening line\n" .. proc:describe())
  local host, port = line:match("^listening on (.+):(%d+)$")
  assert(host, ("unexpected first line %q\n%s"):format(line, proc:describe()))
  return proc, host, math.tointeger(tonumber(port))
end

--- A host name (other than "localhost") that resolves to 127.0.0.1 through
-- /etc/hosts, preferring this machine's own name; nil if there is none.
function helpers.loopback_name()
  local names = {}
  for line in io.lines("/etc/hosts") do
    local addr, rest = line:match("^%s*([%d%.]+)%s+([^#]+)")
    if addr == "127.0.0.1" then
      for name in rest:gmatch("%S+") do
        if name ~= "localhost" then names[name] = true end
      end
    end
  end
  local h = io.popen("hostname")
  local own = h and h:read("l")
  if h then h:close() end
  if own and names[own] then return own end
  return next(names)
end

return helpers

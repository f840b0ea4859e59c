--- Processes in the specs: starting the host, a fixture or any command as
-- a child whose PID is known, reading its "listening on HOST:PORT" line,
-- signalling and reaping it; reading a process through /proc (children,
-- RSS, CPU time, descriptors); and making sure every process a test
-- started is stopped by its PID when the test ends (proc.after).
--
-- Sizes are in bytes, times in seconds.
local assert = require "luassert"
local files = require "support.files"
local wait = require "support.wait"

local proc = {}

-- Processes started by the current test, and other PIDs it asked to be
-- tracked (a master's workers), pid -> command line when first seen.
local started, tracked = {}, {}

---------------------------------------------------------------------------
-- /proc
---------------------------------------------------------------------------

-- The fields of /proc/PID/stat after "pid (comm)": state is [1], ppid [2],
-- utime [12], stime [13]. nil if there is no such process.
local function stat(pid)
  local text = files.read_file("/proc/" .. pid .. "/stat")
  -- comm may hold spaces and parentheses: the last ") " ends it.
  local rest = text and text:match(".*%) (.*)")
  if not rest then return nil end
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return fields
end

--- This process's PID.
function proc.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

--- Sends signal `sig` ("TERM", "KILL", "USR1", ...) to `pid`; asserts.
function proc.kill(pid, sig)
  assert(os.execute(("kill -%s %d"):format(sig, pid)))
end

--- Whether `pid` is a running process (a zombie is not).
function proc.alive(pid)
  local fields = stat(pid)
  return fields ~= nil and fields[1] ~= "Z" and fields[1] ~= "X"
end

--- The command line of `pid` (arguments joined by NUL), or nil.
function proc.cmdline(pid)
  return files.read_file("/proc/" .. pid .. "/cmdline")
end

--- The PIDs of `pid`'s running children but `except`, sorted. Read from
-- /proc/PID/task/PID/children (no procps: under scripts/sanitize every
-- child inherits the ASan preload, and pgrep hangs in its start-up); this
-- lists what the main thread forked, which is every child of a berth
-- master or of a shell.
function proc.children(pid, except)
  local list = {}
  local text = files.read_file(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
  for word in text:gmatch("%d+") do
    local child = math.tointeger(tonumber(word))
    if child ~= except and proc.alive(child) then list[#list + 1] = child end
  end
  table.sort(list)
  return list
end

-- A field of /proc/PID/status given in kB ("VmRSS", "VmHWM"), in bytes.
local function status_bytes(pid, field)
  local text = files.read_file("/proc/" .. pid .. "/status")
  assert(text, "no process " .. pid)
  local kb = text:match("\n" .. field .. ":%s*(%d+) kB")
  assert(kb, ("no %s in /proc/%d/status"):format(field, pid))
  return tonumber(kb) * 1024
end

--- Resident set size of `pid` in bytes.
function proc.rss(pid) return status_bytes(pid, "VmRSS") end

--- Peak resident set size of `pid` in bytes.
function proc.hwm(pid) return status_bytes(pid, "VmHWM") end

--- Resets the peak RSS (VmHWM) to the current RSS, so that a later hwm()
-- measures only what happened since (Linux: clear_refs 5).
function proc.reset_hwm(pid)
  local f = assert(io.open("/proc/" .. pid .. "/clear_refs", "w"))
  f:write("5")
  f:close()
end

local ticks
--- User + system CPU time of `pid` in seconds.
function proc.cpu(pid)
  if not ticks then
    local h = io.popen("getconf CLK_TCK")
    ticks = h and tonumber(h:read("l")) or 100
    if h then h:close() end
  end
  local fields = assert(stat(pid), "no process " .. pid)
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

--- Number of open descriptors of `pid`.
function proc.fds(pid)
  local h = assert(io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null"))
  local n = 0
  for _ in h:lines() do n = n + 1 end
  h:close()
  return n
end

--- Open socket descriptors of process `pid`: the connections it holds,
-- without the pipes a relay keeps as spares.
function proc.sockets(pid)
  local h = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
  local n = 0
  for line in h:lines() do
    if line:find("-> socket:", 1, true) then n = n + 1 end
  end
  h:close()
  return n
end

--- Polls until `pid` is no longer running; returns the seconds it took,
-- or nil after `timeout` seconds. In a task or outside the loop.
function proc.wait_exit(pid, timeout)
  local t0 = wait.clock()
  local ok = pcall(wait.wait_until, function() return not proc.alive(pid) end, timeout)
  return ok and wait.clock() - t0 or nil
end

--- Remembers `pid` (a grandchild, such as a master's worker) so that
-- proc.after kills it if the test leaves it running.
function proc.track(pid)
  if not tracked[pid] then tracked[pid] = proc.cmdline(pid) or "" end
end

---------------------------------------------------------------------------
-- Starting processes
---------------------------------------------------------------------------

local Process = {}
Process.__index = Process

--- Starts `argv` (a list of words) as a child process whose PID is known:
-- the shell prints its own PID and then execs the command, so signals go
-- straight to it. A watchdog subshell kills it after `opts.limit` seconds
-- (default 30), so that no blocking read of its output can hang the suite;
-- `wait`/`close` end the watchdog. `opts.env` adds environment variables.
-- Stdout is a pipe (`readline`, `wait`), stderr a file (`stderr`).
function proc.start(argv, opts)
  opts = opts or {}
  local words = {}
  for k, v in pairs(opts.env or {}) do words[#words + 1] = files.shquote(k .. "=" .. v) end
  for _, w in ipairs(argv) do words[#words + 1] = files.shquote(w) end
  local stderr = os.tmpname()
  -- In the ( ) subshell $$ is still the outer shell's PID, which the exec
  -- hands on to the command; $! is the watchdog's PID.
  local script = ("(sleep %d; kill -KILL $$) </dev/null >/dev/null 2>&1 & echo $$ $!; exec \"$@\"")
    :format(opts.limit or 30)
  local cmd = ("sh -c %s sh env %s </dev/null 2>%s")
    :format(files.shquote(script), table.concat(words, " "), files.shquote(stderr))
  local handle = assert(io.popen(cmd, "r"))
  local first = handle:read("l") or ""
  local pid, watchdog = first:match("^(%d+) (%d+)$")
  assert(pid, "could not read the child's PID")
  local p = setmetatable({ pid = math.tointeger(tonumber(pid)),
    watchdog = math.tointeger(tonumber(watchdog)), handle = handle,
    stderr_path = stderr, argv = argv }, Process)
  started[#started + 1] = p
  return p
end

--- Blocking: the next line of the child's stdout (nil at EOF).
function Process:readline()
  return self.handle:read("l")
end

function Process:kill(sig)
  proc.kill(self.pid, sig or "TERM")
end

-- Ends the watchdog and its sleep (they hold no pipe, but must not fire
-- at a PID that may have been reused by then).
function Process:end_watchdog()
  for _, child in ipairs(proc.children(self.watchdog)) do
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

--- Sends `sig` (default "TERM") and waits for the exit. Returns the exit
-- code (128+N for signal N) and the seconds it took.
function Process:stop(sig)
  local t0 = wait.clock()
  self:kill(sig or "TERM")
  local _, how, code = self:wait()
  if how == "signal" then code = 128 + code end
  return code, wait.clock() - t0
end

--- Everything the child wrote to stderr so far.
function Process:stderr()
  return files.read_file(self.stderr_path) or ""
end

--- How many times `text` (plain) occurs in the child's stderr.
function Process:count(text)
  local err, n, i = self:stderr(), 0, 1
  while true do
    local s, e = err:find(text, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

--- Polls until `text` occurs `n` times (default 1) in the child's stderr;
-- returns the seconds it took. Raises after `timeout` (default 2) seconds,
-- with the stderr. In a task or outside the loop.
function Process:wait_log(text, n, timeout)
  n, timeout = n or 1, timeout or 2
  local t0 = wait.clock()
  while self:count(text) < n do
    if wait.clock() - t0 > timeout then
      error(("timed out after %.1f s waiting for %d x %q in the log (have %d)\n%s")
        :format(timeout, n, text, self:count(text), self:stderr()), 2)
    end
    wait.pause(0.005)
  end
  return wait.clock() - t0
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

--- The host executable: $BERTH_HOST, else build/berth.
function proc.host_binary()
  return os.getenv("BERTH_HOST") or "build/berth"
end

local LUA = os.getenv("LUA") or "lua5.4"
--- The Lua interpreter for fixtures: $LUA, else lua5.4.
function proc.lua_binary() return LUA end

--- Environment that lets a child `lua5.4` require the build tree.
function proc.lua_env()
  return {
    LUA_PATH = "lua/?.lua;lua/?/init.lua;spec/?.lua;;",
    LUA_CPATH = "build/lib/?.so;build/?.so;;",
  }
end

--- Runs the host executable with `args` to completion. Returns stdout,
-- exit code (or 128+signal) and stderr.
function proc.run_host(args, opts)
  local argv = { proc.host_binary() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.start(argv, opts)
  local out, how, code = p:wait()
  if how == "signal" then code = 128 + code end
  return out, code, p:stderr()
end

--- Runs spec/fixtures/<name>.lua under a stock lua5.4 with the build tree on
-- its path, to completion. `opts.shell_prefix` (e.g. "ulimit -n 64") runs
-- first in the child's shell. Returns stdout, exit code, stderr.
function proc.run_fixture(name, args, opts)
  opts = opts or {}
  local argv = { "sh", "-c", (opts.shell_prefix or ":") .. '; exec "$@"', "sh",
    LUA, "spec/fixtures/" .. name .. ".lua" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = proc.start(argv, { env = proc.lua_env(), limit = opts.limit or 20 })
  local out, how, code = p:wait()
  if how == "signal" then code = 128 + code end
  return out, code, p:stderr()
end

--- Starts `berth [args...] script` as a child with PORT=0 (plus
-- `opts.env`), under `ulimit -n opts.nofile` if given, watchdog after
-- `opts.limit` seconds (default 60), and reads its first line, which must
-- be "listening on HOST:PORT" with HOST `opts.host`, else $HOST of
-- `opts.env`, else 127.0.0.1. Returns proc, port, host.
function proc.start_host(script, args, opts)
  opts = opts or {}
  local argv = { proc.host_binary() }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = script
  if opts.nofile then
    argv = { "sh", "-c", ("ulimit -n %d && exec \"$@\""):format(opts.nofile), "sh",
      table.unpack(argv) }
  end
  local env = { PORT = "0" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local p = proc.start(argv, { env = env, limit = opts.limit or 60 })
  local line = p:readline()
  local host, port = (line or ""):match("^listening on (.+):(%d+)$")
  port = math.tointeger(tonumber(port))
  assert(port and port > 0 and port < 65536,
    ("no listening line (got %q)\n%s"):format(tostring(line), p:describe()))
  local want = opts.host or env.HOST or "127.0.0.1"
  assert(host == want, ("listening on %s, not %s\n%s"):format(host, want, p:describe()))
  return p, port, host
end

--- Starts examples/<name>.lua in the host (PORT=0, plus `env`) and reads
-- its listening line. Returns proc, host, port.
function proc.start_example(name, env)
  local p, port, host = proc.start_host("examples/" .. name .. ".lua", nil, { env = env })
  return p, host, port
end

--- Starts examples/<name>.lua (PORT=0, plus `env`), calls `fn(port, proc,
-- host)` (outside any task: `fn` calls support.run itself), then stops the
-- child by PID with SIGTERM and asserts that it exited 0. Returns its
-- stderr and what it printed after the listening line.
function proc.with_example(name, env, fn)
  local p, port, host = proc.start_host("examples/" .. name .. ".lua", nil, { env = env })
  local ok, err = pcall(fn, port, p, host)
  p:kill("TERM")
  local rest, how, code = p:wait()
  local stderr = p:stderr()
  if not ok then error(err, 0) end
  assert.same({ "exit", 0 }, { how, code },
    "examples/" .. name .. ".lua did not exit 0 after SIGTERM; stderr:\n" .. stderr)
  return stderr, rest
end

--- Stops `p` with SIGTERM and asserts that it exited 0.
function proc.stop_clean(p)
  p:kill("TERM")
  local _, how, code = p:wait()
  assert(how == "exit" and code == 0,
    ("the server did not exit 0 after SIGTERM (%s %s)\n%s"):format(
      tostring(how), tostring(code), p:describe()))
end

---------------------------------------------------------------------------
-- After each test
---------------------------------------------------------------------------

--- Stops (SIGKILL, by PID) and reaps every process the test started and
-- left running, and kills the tracked PIDs that still run the same command.
-- Returns the list of those tracked PIDs: a test that tracks processes
-- (a master's workers) must stop them itself.
function proc.after()
  local list, pids = started, tracked
  started, tracked = {}, {}
  -- Tracked PIDs first: once the test's own children are killed, what they
  -- leave behind is no longer the test's doing.
  local left = {}
  for pid, cmdline in pairs(pids) do
    if proc.alive(pid) and proc.cmdline(pid) == cmdline then
      left[#left + 1] = pid
      os.execute(("kill -KILL %d 2>/dev/null"):format(pid))
    end
  end
  table.sort(left)
  for _, p in ipairs(list) do p:close() end
  return left
end

return proc

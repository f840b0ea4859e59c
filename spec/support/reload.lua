--- Hot reload and workers in the specs (spec/reload_spec.lua,
-- spec/workers_spec.lua): temp dirs with the spec/fixtures/reload_* files,
-- saving a handler module the ways editors do, starting the host on them,
-- a master's workers, and a bounded request/reply load generator that
-- checks every reply byte for byte.
local berth = require "berth"
local files = require "support.files"
local proc = require "support.proc"
local wait = require "support.wait"

local lib = {}

local FIXTURES = "spec/fixtures/"

---------------------------------------------------------------------------
-- Files
---------------------------------------------------------------------------

--- The handler template (reload_handler.lua) for version `version`.
function lib.handler_source(version)
  local src = assert(files.read_file(FIXTURES .. "reload_handler.lua"))
  return (src:gsub("@VERSION@", version))
end

--- A fixture file's text.
function lib.fixture(name)
  return (assert(files.read_file(FIXTURES .. name .. ".lua"), "no fixture " .. name))
end

-- Every saved source gets a trailing comment one byte longer than the
-- last one, so that no two saves have the same size. (libev's ev_stat,
-- which --watch uses, compares sizes and whole-second times; see the
-- spec that saves same-size files within one second.)
local pad = 0
function lib.padded(src)
  pad = pad + 1
  return src .. "\n-- " .. ("."):rep(pad) .. "\n"
end

local write = files.write_file

--- Saves `src` (padded) at `path` the way an editor does:
--   "inplace"  truncate and write the file itself
--   "rename"   write a temporary file in the same directory, rename it over
--   "recreate" delete the file, then create and write a new one
--   "backup"   rename the file to path~, write a new one, delete path~
-- `opts.gap` (seconds, task only) splits the write in two halves with a
-- pause between them, and for "recreate" pauses between delete and create:
-- a slow save, on purpose.
-- `opts.exact` saves `src` as it is (no padding).
function lib.save(path, src, style, opts)
  opts = opts or {}
  if not opts.exact then src = lib.padded(src) end
  local gap = opts.gap
  local function write_slowly(p)
    if not gap then return write(p, src) end
    local f = assert(io.open(p, "wb"))
    local half = #src // 2
    assert(f:write(src:sub(1, half)))
    assert(f:flush())
    berth.sleep(gap)
    assert(f:write(src:sub(half + 1)))
    assert(f:close())
  end
  style = style or "inplace"
  if style == "inplace" then
    write_slowly(path)
  elseif style == "rename" then
    local tmp = path:gsub("([^/]+)$", ".%1.swp")
    write_slowly(tmp)
    assert(os.rename(tmp, path))
  elseif style == "recreate" then
    assert(os.remove(path))
    if gap then berth.sleep(gap) end
    write(path, src)
  elseif style == "backup" then
    assert(os.rename(path, path .. "~"))
    write_slowly(path)
    assert(os.remove(path .. "~"))
  else
    error("unknown save style " .. tostring(style))
  end
  return src
end

--- A temp dir with server.lua (reload_server.lua) and app/h.lua (the
-- handler template at `version`, default "v1", or the fixture `module`).
-- Returns dir, the module's path.
function lib.setup(version, module)
  local dir = files.tmpdir()
  assert(os.execute("mkdir " .. files.shquote(dir .. "/app")))
  write(dir .. "/server.lua", lib.fixture("reload_server"))
  local h = dir .. "/app/h.lua"
  write(h, lib.padded(module and lib.fixture(module) or lib.handler_source(version or "v1")))
  return dir, h
end

--- Copies fixture `name` into `dir` as `as`; returns its path.
function lib.copy(name, dir, as)
  local path = dir .. "/" .. as
  write(path, lib.fixture(name))
  return path
end

---------------------------------------------------------------------------
-- Processes
---------------------------------------------------------------------------

--- Starts `berth args... script` with LUA_PATH on `dir` (script default
-- dir/server.lua) and reads the listening line. Returns proc, port.
function lib.start(dir, args, script, env)
  local e = { LUA_PATH = dir .. "/?.lua;;" }
  for k, v in pairs(env or {}) do e[k] = v end
  local p, port = proc.start_host(script or (dir .. "/server.lua"), args,
    { env = e, limit = 120 })
  return p, port
end

--- The live workers of master `p` (its children but the watchdog); they
-- are tracked, so that a test that leaves them running fails and they are
-- killed (support.after).
function lib.workers(p)
  local list = proc.children(p.pid, p.watchdog)
  for _, pid in ipairs(list) do proc.track(pid) end
  return list
end

--- Whether `pid` is a live berth worker (its command line has --worker).
function lib.is_worker(pid)
  if not proc.alive(pid) then return false end
  local cmdline = proc.cmdline(pid) or ""
  return cmdline:find("\0--worker\0", 1, true) ~= nil
end

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

--- Task only: one line request on a new connection; returns the reply
-- line (or nil, code).
function lib.request(port, line, timeout)
  local sock, code = berth.connect("127.0.0.1", port, { timeout = timeout or 2 })
  if not sock then return nil, code end
  local ok, werr = sock:write(line, "\n")
  if not ok then
    sock:close()
    return nil, werr
  end
  local reply, rerr = sock:read("l", timeout or 2)
  sock:close()
  return reply, rerr
end

--- Task only: the "stats" reply as a table (plus .version).
function lib.stats(port)
  local reply = assert(lib.request(port, "stats"))
  local version = reply:match("^stats (%S+)")
  assert(version, "bad stats reply " .. reply)
  local t = { version = version }
  for k, v in reply:gmatch("([%w_]+)=(%d+)") do t[k] = math.tointeger(tonumber(v)) end
  return t
end

--- The reply the handler template gives to `line` (`flag` "ok"/"bye").
function lib.reply(flag, version, line)
  return ("%s %s %d %s"):format(flag, version, #line, line:reverse())
end

---------------------------------------------------------------------------
-- Load
---------------------------------------------------------------------------

-- A request line for connection `id`, request `seq`: 12 to 200 bytes,
-- varied and printable, never a command of the handler.
local CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+"
local function request_line(id, seq)
  local n = 1 + (seq * 7919 + #id * 131) % 188
  local parts = { ("%s#%d:"):format(id, seq) }
  for i = 1, n do
    local c = (seq + i * 31) % #CHARS + 1
    parts[#parts + 1] = CHARS:sub(c, c)
  end
  return table.concat(parts)
end

local Load = {}
Load.__index = Load

--- A request/reply load against the handler template on `port`:
--   keepalive     connections that each send `recycle` requests one after
--                 the other (then reconnect), `rate` requests/s each
--   oneshot       tasks that each open a new connection per request,
--                 `oneshot_rate` connections/s each
-- Every reply must be byte-exact: "ok|bye VERSION #LINE reverse(LINE)".
-- A keep-alive connection must get the same VERSION on every reply (it
-- keeps the code it started with); the first reply on a connection must
-- have a version number between `load.min` at connect time and `load.max`
-- (the spec raises them as it saves and reloads versions "v<number>").
-- After "bye" the client closes and reconnects.
function lib.load(port, opts)
  local self = setmetatable({
    port = port, min = opts.min or 1, max = opts.max or 1,
    keepalive = opts.keepalive or 10, rate = opts.rate or 180,
    recycle = opts.recycle or 300,
    oneshot = opts.oneshot or 4, oneshot_rate = opts.oneshot_rate or 50,
    sent = 0, ok = 0, failed = 0, resets = 0, connects = 0, connect_failures = 0,
    byes = 0, retries = 0, versions = {}, problems = {}, running = 0, stopping = false,
  }, Load)
  return self
end

function Load:problem(what)
  self.failed = self.failed + 1
  if #self.problems < 10 then self.problems[#self.problems + 1] = what end
end

function Load:note_code(code)
  if code == "reset" then self.resets = self.resets + 1 end
end

-- Paces a task at `rate`/s: sleeps until its next slot; never bursts more
-- than 0.2 s worth of requests after falling behind.
local function pacer(rate)
  local interval, next_at = 1 / rate, berth.now()
  return function()
    next_at = next_at + interval
    local now = berth.now()
    if next_at > now then
      berth.sleep(next_at - now)
    elseif now - next_at > 0.2 then
      next_at = now - 0.2
    end
  end
end

-- One request on `sock`; returns the version, the flag (or nil, and a
-- problem is recorded).
-- A keep-alive connection a draining server closed while idle: the request
-- crossed the close and was never read (the server closes only connections
-- with nothing buffered), so it is sent again on a new connection, as HTTP
-- clients do (RFC 9112 9.3.1). Only on a reused connection, and only when
-- not one byte of the reply came back.
function Load:retryable(reused, code, rest)
  if reused and (code == "closed" or code == "reset") and (rest or "") == "" then
    self.sent = self.sent - 1
    self.retries = self.retries + 1
    return true
  end
end

function Load:roundtrip(sock, id, seq, want_version, min)
  local line = request_line(id, seq)
  self.sent = self.sent + 1
  local ok, code = sock:write(line, "\n")
  if not ok then
    if self:retryable(want_version, code) then return nil, "retry" end
    self:note_code(code)
    self:problem(("%s: write failed: %s"):format(id, tostring(code)))
    return nil
  end
  local reply, rcode, rest = sock:read("l", 3)
  if not reply then
    if self:retryable(want_version, rcode, rest) then return nil, "retry" end
    self:note_code(rcode)
    self:problem(("%s: no reply to request %d: %s"):format(id, seq, tostring(rcode)))
    return nil
  end
  local flag, version = reply:match("^(%a+) (%S+) ")
  if not flag or (flag ~= "ok" and flag ~= "bye")
    or reply ~= lib.reply(flag, version, line) then
    self:problem(("%s: reply %q is not byte-exact for %q"):format(id, reply:sub(1, 80),
      line:sub(1, 40)))
    return nil
  end
  local number = tonumber(version:match("^v(%d+)$"))
  if want_version and version ~= want_version then
    self:problem(("%s: keep-alive connection started on %s, now got %s")
      :format(id, want_version, version))
    return nil
  end
  if not want_version and (not number or number < min or number > self.max) then
    self:problem(("%s: new connection got %s, expected v%d..v%d")
      :format(id, version, min, self.max))
    return nil
  end
  self.ok = self.ok + 1
  self.versions[version] = (self.versions[version] or 0) + 1
  if flag == "bye" then self.byes = self.byes + 1 end
  return version, flag
end

function Load:connect(id)
  local min = self.min
  local sock, code, extra = berth.connect("127.0.0.1", self.port, { timeout = 3 })
  self.connects = self.connects + 1
  if not sock then
    self:note_code(code)
    self.connect_failures = self.connect_failures + 1
    self:problem(("%s: connect failed: %s %s"):format(id, tostring(code), tostring(extra)))
  end
  return sock, min
end

function Load:keepalive_task(n)
  local pace, seq, round = pacer(self.rate), 0, 0
  while not self.stopping do
    round = round + 1
    local id = ("k%d.%d"):format(n, round)
    local sock, min = self:connect(id)
    if not sock then
      berth.sleep(0.05) -- back off before reconnecting (the failure is recorded)
    else
      local version
      for _ = 1, self.recycle do
        if self.stopping then break end
        pace()
        seq = seq + 1
        local got, flag = self:roundtrip(sock, id, seq, version, min)
        if flag == "retry" then seq = seq - 1 end -- the same request, anew
        if not got or flag == "bye" then break end
        version = got
      end
      sock:close()
    end
  end
end

function Load:oneshot_task(n)
  local pace, seq = pacer(self.oneshot_rate), 0
  while not self.stopping do
    pace()
    seq = seq + 1
    local id = ("n%d.%d"):format(n, seq)
    local sock, min = self:connect(id)
    if sock then
      self:roundtrip(sock, id, seq, nil, min)
      sock:close()
    end
  end
end

--- Starts the client tasks.
function Load:start()
  self.started = berth.now()
  local function spawn(fn, ...)
    self.running = self.running + 1
    berth.spawn(function(...)
      local ok, err = pcall(fn, ...)
      if not ok then self:problem("client task raised: " .. tostring(err)) end
      self.running = self.running - 1
    end, ...)
  end
  for i = 1, self.keepalive do spawn(self.keepalive_task, self, i) end
  for i = 1, self.oneshot do spawn(self.oneshot_task, self, i) end
  return self
end

--- Task only: stops the clients and waits for them to finish.
function Load:stop()
  self.stopping = true
  wait.wait_until(function() return self.running == 0 end, 5, "the load clients to stop")
  self.elapsed = berth.now() - self.started
end

function Load:summary()
  local versions = {}
  for v in pairs(self.versions) do versions[#versions + 1] = v end
  table.sort(versions, function(a, b)
    return (tonumber(a:match("%d+")) or 0) < (tonumber(b:match("%d+")) or 0)
  end)
  return ("%d requests sent, %d ok, %d failed, %d resets, %d connections (%d failed), "
    .. "%d bye, %d retried after an idle close, %.0f req/s over %.1f s, versions seen %s..%s")
    :format(self.sent, self.ok, self.failed, self.resets, self.connects,
      self.connect_failures, self.byes, self.retries, self.sent / self.elapsed, self.elapsed,
      versions[1] or "-", versions[#versions] or "-")
end

--- Asserts: no failed request or connection, no reset, every reply exact.
function Load:assert_clean()
  assert(self.failed == 0 and self.resets == 0 and self.connect_failures == 0
    and self.ok == self.sent,
    self:summary() .. "\nfirst problems:\n  " .. table.concat(self.problems, "\n  "))
end

--- Task only: connects every 2 ms from `t0` until refused; the seconds it
-- took, or nil if still accepting after `limit` seconds. Also counts the
-- connections the kernel accepted after the signal.
function lib.refused_after(port, t0, limit)
  local accepted = 0
  while wait.clock() - t0 < limit do
    local sock, code = berth.connect("127.0.0.1", port, { timeout = 1 })
    if sock then
      accepted = accepted + 1
      sock:close()
    elseif code == "refused" or code == "reset" then
      -- A handshake in flight when the last listening descriptor closes
      -- is reset rather than refused: the port is closed either way.
      return wait.clock() - t0, accepted
    else
      error("connect: " .. tostring(code))
    end
    berth.sleep(0.002) -- the poll's interval
  end
  return nil, accepted
end

return lib

--- Sockets in the specs: listeners and servers on 127.0.0.1 port 0, clients,
-- connected pairs, an echo handler, round trips, failure and byte-string
-- assertions, and what the kernel says about a TCP connection.
local assert = require "luassert"
local berth = require "berth"
local wait = require "support.wait"

local net = {}

local function with_defaults(opts)
  local t = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(opts or {}) do t[k] = v end
  if t.path then t.host, t.port = nil, nil end
  return t
end

--- berth.listen on 127.0.0.1, port 0 unless `opts` says otherwise; asserts.
function net.listen(opts)
  local server, code, errno = berth.listen(with_defaults(opts))
  assert(server, ("listen failed: %s %s"):format(tostring(code), tostring(errno)))
  return server
end

--- berth.serve{handler = handler, ...opts} on 127.0.0.1:0; asserts.
function net.serve(handler, opts)
  local t = with_defaults(opts)
  t.handler = handler
  local server, code, errno = berth.serve(t)
  assert(server, ("serve failed: %s %s"):format(tostring(code), tostring(errno)))
  return server
end

--- Task only: connects to a ServerSocket (or a port on `host`, default
-- 127.0.0.1) with a 2 s timeout; asserts.
function net.connect(target, host)
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
function net.pair(opts)
  local server = net.listen(opts)
  local client = net.connect(server)
  local peer = assert(server:accept(2))
  return setmetatable({ server = server, client = client, peer = peer }, Pair)
end

--- A connection handler that echoes every byte until EOF.
function net.echo(sock)
  while true do
    local data = sock:readsome()
    if not data or not sock:write(data) then return end
  end
end

--- Task only: writes `line` .. "\n" and returns the line read back.
function net.roundtrip(sock, line, timeout)
  assert(sock:write(line, "\n"))
  return sock:read("l", timeout or 2)
end

--- Task only: reads until EOF, a reset or `timeout` seconds (default 2) in
-- total. Returns everything read, how it ended ("closed", "reset",
-- "timeout") and the seconds it took.
function net.read_to_end(sock, timeout)
  local started, parts = wait.clock(), {}
  local deadline = started + (timeout or 2)
  while true do
    local left = deadline - wait.clock()
    if left <= 0 then return table.concat(parts), "timeout", wait.clock() - started end
    local data, code, extra = sock:readsome(65536, math.max(0.001, left))
    if not data then
      if type(extra) == "string" then parts[#parts + 1] = extra end
      return table.concat(parts), code, wait.clock() - started
    end
    parts[#parts + 1] = data
  end
end

--- Checks a `nil, code, extra` failure. `extra` is only compared when given.
function net.assert_fail(code, extra, ...)
  local n = select("#", ...)
  local ok, got_code, got_extra = ...
  assert(n >= 2, ("expected nil, %q but got %d value(s): %s"):format(code, n, tostring(ok)))
  assert.is_nil(ok, "expected a failure, got a success")
  assert.equal(code, got_code)
  if extra ~= nil then assert.equal(extra, got_extra) end
end

--- Calls fn(...) and asserts that it raises an error containing `pattern`
-- (a plain substring).
function net.assert_raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error containing " .. pattern)
  assert(tostring(err):find(pattern, 1, true),
    ("error %q does not contain %q"):format(tostring(err), pattern))
end

--- Compares two (large) byte strings and reports the first difference.
function net.assert_bytes(expected, got)
  if expected == got then return end
  if type(got) ~= "string" then
    error(("expected %d bytes, got %s"):format(#expected, tostring(got)), 2)
  end
  local i = 1
  while i <= #expected and expected:byte(i) == got:byte(i) do i = i + 1 end
  error(("byte strings differ: expected %d bytes, got %d; first difference at byte %d")
    :format(#expected, #got, i), 2)
end

--- `n` pseudo-random bytes from a fixed seed (reproducible). Past 64 KiB
-- the data is 64 KiB blocks of one random block, each starting with its
-- own number: building many MiB stays fast (byte by byte it took seconds,
-- and a test that does it inside its loop sees a stale clock), and a block
-- delivered out of place still shows.
local BLOCK = 64 * 1024
function net.random_bytes(n, seed)
  math.randomseed(seed or 20240601)
  local parts = {}
  for i = 1, math.min(n, BLOCK) // 8 do parts[i] = string.pack("<i8", math.random(0)) end
  for _ = 1, math.min(n, BLOCK) % 8 do parts[#parts + 1] = string.char(math.random(0, 255)) end
  local block = table.concat(parts)
  if n <= BLOCK then return block end
  local blocks, tail = {}, block:sub(9)
  for i = 1, n // BLOCK do blocks[i] = string.pack("<I8", i) .. tail end
  blocks[#blocks + 1] = block:sub(1, n % BLOCK)
  return table.concat(blocks)
end

-- /proc/net/tcp parsed: local port * 65536 + remote port -> receive queue.
-- After thousands of connections it holds thousands of TIME_WAIT entries,
-- so one parse serves every poll within SNAPSHOT_AGE seconds (many tasks
-- polling at once would otherwise starve the loop). An earlier connection
-- with the same two ports may linger in TIME_WAIT: the largest queue of
-- the matching entries is the live one's.
local SNAPSHOT_AGE = 0.01
local snapshot, taken = nil, -math.huge
local function rx_queues()
  if wait.clock() - taken < SNAPSHOT_AGE then return snapshot end
  local t = {}
  for line in io.lines("/proc/net/tcp") do
    local lport, rport, rx = line:match("^%s*%d+: %x+:(%x+) %x+:(%x+) %x+ %x+:(%x+)")
    if lport then
      local key = tonumber(lport, 16) * 65536 + tonumber(rport, 16)
      t[key] = math.max(t[key] or 0, tonumber(rx, 16))
    end
  end
  snapshot, taken = t, wait.clock()
  return t
end

--- Receive-queue length (bytes the kernel holds and the application has not
-- read) of the IPv4 TCP socket with this local and remote port, from
-- /proc/net/tcp (as of at most 10 ms ago: poll it); nil if there is no
-- such socket.
function net.tcp_rx_queue(local_port, remote_port)
  return rx_queues()[local_port * 65536 + remote_port]
end

--- Task only: waits until the kernel holds unread bytes for `sock` (data
-- its peer sent that nobody has read yet), e.g. so that closing it sends
-- a reset. Raises after `timeout` seconds (default 2).
function net.wait_unread(sock, timeout)
  local _, lport = sock:localaddr()
  local _, rport = sock:peer()
  wait.wait_until(function() return (net.tcp_rx_queue(lport, rport) or 0) > 0 end,
    timeout, "unread bytes in the kernel's receive queue", SNAPSHOT_AGE)
end

--- A host name (other than "localhost") that resolves to 127.0.0.1 through
-- /etc/hosts, preferring this machine's own name; nil if there is none.
function net.loopback_name()
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

--- Task only: a port on 127.0.0.1 that nothing listens on (bound once,
-- then closed), for refused connects or for a fixed port a test hands on.
function net.free_port()
  local probe = net.listen()
  local port = probe:port()
  probe:close()
  return port
end

--- A to-be-closed value that closes every object given:
-- `local _ <close> = support.closing(a, b)`.
function net.closing(...)
  local objs = { ... }
  return setmetatable({}, { __close = function()
    for _, o in ipairs(objs) do o:close() end
  end })
end

return net

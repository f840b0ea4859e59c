-- A Redis-protocol (RESP2) in-memory key-value server, enough for
-- redis-cli and redis-benchmark: PING ECHO SET(EX/PX/NX/XX) GET DEL EXISTS
-- INCR DECR INCRBY MGET MSET EXPIRE TTL DBSIZE FLUSHALL, plus COMMAND,
-- CONFIG GET and HELLO. Binary safe, pipelined, inline commands too.
-- PORT (default 6379, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
--
-- Commands are read by berth.resp, in C (Redis's strict length syntax): one
-- command, and one value in it, may be as long as the server's max_input
-- (8 MiB by default; Redis allows 512 MiB). A longer one is answered with
-- Redis's "-ERR Protocol error: invalid bulk length" (a value) or "-ERR
-- Protocol error: command too large" (the whole command) as soon as its
-- header arrives, and the connection closes, as for every protocol error.
-- The replies to a pipelined batch leave together (resp.send queues them).
local berth = require "berth"
local resp = require "berth.resp"

local data, expires = {}, {}       -- key -> value; key -> absolute expiry (s)

-- Replies -------------------------------------------------------------------
local OK, NIL, PONG = resp.OK, resp.NIL, resp.PONG
local int, bulk, err, array = resp.int, resp.bulk, resp.error, resp.array
local NOT_INT = err("value is not an integer or out of range")
local SYNTAX = err("syntax error")

-- The keyspace, with lazy expiry ---------------------------------------------
local function get(key)
  local at = expires[key]
  if at and at <= berth.now() then
    data[key], expires[key] = nil, nil
  end
  return data[key]
end

local function set(key, value, ttl)
  data[key] = value
  expires[key] = ttl and berth.now() + ttl or nil
end

-- A strict integer, as Redis accepts in commands ("5" but not "05", "+5").
local function toint(s)
  local n = s:match("^-?%d+$") and math.tointeger(tonumber(s))
  if n and tostring(n) == s then return n end
end

-- Whether an expiry of n units (1 s, or 1 ms with ms set) from now stays in
-- Redis's range: its absolute time in milliseconds must fit in a long long.
local function expire_ok(n, ms)
  local now_ms = math.floor(berth.now() * 1000)
  if not ms then
    if n > math.maxinteger // 1000 or n < math.mininteger // 1000 then return false end
    n = n * 1000
  end
  return n <= math.maxinteger - now_ms
end

-- Commands: name -> { arity, fn(args) -> reply } (arity as Redis: -N = at least N)
local commands = {}

local function incrby(key, by)
  local cur = get(key)
  local n = cur == nil and 0 or toint(cur)
  if not n then return NOT_INT end
  local r = n + by
  if (by > 0 and r < n) or (by < 0 and r > n) then
    return err("increment or decrement would overflow")
  end
  data[key] = tostring(r)
  return int(r)
end

commands.ping = { -1, function(a)
  if #a > 2 then return err("wrong number of arguments for 'ping' command") end
  return a[2] and bulk(a[2]) or PONG
end }
commands.echo = { 2, function(a) return bulk(a[2]) end }
commands.get = { 2, function(a)
  local v = get(a[2])
  if not v then return NIL end
  return "$" .. #v .. "\r\n", v, "\r\n" -- the value is not copied into a reply string
end }
commands.incr = { 2, function(a) return incrby(a[2], 1) end }
commands.decr = { 2, function(a) return incrby(a[2], -1) end }
commands.incrby = { 3, function(a)
  local by = toint(a[3])
  if not by then return NOT_INT end
  return incrby(a[2], by)
end }
commands.dbsize = { 1, function()
  local n = 0
  for k in pairs(data) do if get(k) then n = n + 1 end end
  return int(n)
end }
commands.flushall = { -1, function() data, expires = {}, {}; return OK end }
commands.del = { -2, function(a)
  local n = 0
  for i = 2, #a do if get(a[i]) then data[a[i]], expires[a[i]] = nil, nil; n = n + 1 end end
  return int(n)
end }
commands.exists = { -2, function(a)
  local n = 0
  for i = 2, #a do if get(a[i]) then n = n + 1 end end
  return int(n)
end }
commands.mget = { -2, function(a)
  local out = {}
  for i = 2, #a do out[i - 1] = get(a[i]) or false end
  return array(out)
end }
commands.mset = { -3, function(a)
  if #a % 2 == 0 then return err("wrong number of arguments for 'mset' command") end
  for i = 2, #a, 2 do set(a[i], a[i + 1]) end
  return OK
end }
commands.expire = { 3, function(a)
  local secs = toint(a[3])
  if not secs then return NOT_INT end
  if not expire_ok(secs) then return err("invalid expire time in 'expire' command") end
  if not get(a[2]) then return int(0) end
  if secs <= 0 then data[a[2]], expires[a[2]] = nil, nil
  else expires[a[2]] = berth.now() + secs end
  return int(1)
end }
commands.ttl = { 2, function(a)
  if not get(a[2]) then return int(-2) end
  local at = expires[a[2]]
  if not at then return int(-1) end
  return int(math.tointeger(math.floor(at - berth.now() + 0.5)) or -1)
end }
commands.set = { -3, function(a)
  local key, value, ttl, nx, xx = a[2], a[3], nil, false, false
  if a[4] == nil then -- the common case: no options
    data[key], expires[key] = value, nil
    return OK
  end
  local i = 4
  while i <= #a do
    local opt = a[i]:upper()
    if (opt == "EX" or opt == "PX") and a[i + 1] and not ttl then
      local n = toint(a[i + 1])
      if not n then return NOT_INT end
      if n <= 0 or not expire_ok(n, opt == "PX") then
        return err("invalid expire time in 'set' command")
      end
      ttl = opt == "EX" and n or n / 1000
      i = i + 2
    elseif opt == "NX" and not xx then nx = true; i = i + 1
    elseif opt == "XX" and not nx then xx = true; i = i + 1
    else return SYNTAX end
  end
  local exists = get(key) ~= nil
  if (nx and exists) or (xx and not exists) then return NIL end
  set(key, value, ttl)
  return OK
end }
-- Connection-time commands redis-cli and redis-benchmark send.
commands.command = { -1, function() return "*0\r\n" end }
commands.config = { -2, function(a)
  if a[2]:lower() ~= "get" or not a[3] then return err("CONFIG subcommand not supported") end
  local known = { save = "", appendonly = "no", databases = "1" }
  local v = known[a[3]:lower()]
  return v and array({ a[3]:lower(), v }) or "*0\r\n"
end }
commands.hello = { -1, function(a)
  if a[2] and a[2] ~= "2" then return "-NOPROTO unsupported protocol version\r\n" end
  return "*6\r\n$6\r\nserver\r\n$5\r\nberth\r\n$7\r\nversion\r\n" ..
    bulk(berth.version) .. "$5\r\nproto\r\n:2\r\n"
end }

-- Clients send names in either case; both are registered up front.
for name, cmd in pairs(commands) do commands[name:upper()] = cmd end

local function execute(args)
  local cmd = commands[args[1]] or commands[args[1]:lower()]
  if not cmd then -- Redis quotes the arguments until 128 characters are shown
    local shown = ""
    for i = 2, #args do
      if #shown >= 128 then break end
      shown = shown .. "'" .. args[i]:sub(1, 128 - #shown) .. "' "
    end
    return err(("unknown command '%s', with args beginning with: %s"):format(args[1]:sub(1, 128), shown))
  end
  local arity = cmd[1]
  if (arity > 0 and #args ~= arity) or (arity < 0 and #args < -arity) then
    return err(("wrong number of arguments for '%s' command"):format(args[1]:lower()))
  end
  return cmd[2](args)
end

-- The protocol: berth.resp reads each command in C -----------------------------
local read, send = resp.read, resp.send

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 6379),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  tls = berth.tls.fromenv(), -- TLS_CERT, TLS_KEY: serve TLS
  handler = function(sock)
    while true do
      local args, code, text = read(sock)
      if not args then
        if code == "protocol" then send(sock, "-ERR " .. text .. "\r\n") end
        return -- the queued replies are flushed before the close
      end
      if args[1] and not send(sock, execute(args)) then return end
    end
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

-- berth.resp under interleaving: a randomized property test of who owns the
-- partial parse in src/resp_lua.c. There is one struct respstate per loop;
-- a command that stopped half-way is resumed only by the socket it belongs
-- to (while that socket's rscan still holds the byte count the parse
-- stopped at), and any other socket parses afresh. Three clients of one
-- server send random RESP commands (multibulk with binary arguments that
-- hold "\r\n", "*", "$" and digits; inline lines; empty commands) cut into
-- random pieces of 1 to 40 bytes, the pieces of the three interleaved in
-- random order with a yield between writes, so each handler's read parks
-- mid-command while the others parse. Each handler must get exactly its own
-- commands, in order, byte for byte, and at EOF nil, "closed" and the
-- unread bytes (all of them when a client closes mid-command).
--
-- The cases come from fixed seeds and a PRNG written here (xorshift64), so
-- a failure names its seed and replays the same way on every Lua.
-- BERTH_RESP_SEEDS=N runs seeds 1..N instead of the fixed list (a soak).
local support = require "support"
local resp = require "berth.resp"
local berth = support.berth
local run = support.run

local CONNECTIONS = 3
local MAX_PIECE = 40
local SEEDS, CUT_SEEDS = {}, {}
local soak = tonumber(os.getenv("BERTH_RESP_SEEDS") or "")
for i = 1, soak or 20 do SEEDS[#SEEDS + 1] = i end
for i = 1, soak or 6 do CUT_SEEDS[#CUT_SEEDS + 1] = 1000 + i end

-- rnd(lo, hi): an integer in [lo, hi], from xorshift64 seeded by `seed`.
local function prng(seed)
  local x = seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D
  if x == 0 then x = 1 end
  return function(lo, hi)
    x = x ~ (x << 13)
    x = x ~ (x >> 7)
    x = x ~ (x << 17)
    return lo + (x >> 1) % (hi - lo + 1)
  end
end

-- Bytes a parser that confuses two commands trips on.
local TRICKY = { "\r\n", "\r", "\n", "*", "$", "0", "1", "9", "-", "*3\r\n", "$5\r\n", "\0" }

local function random_len(rnd, short, long)
  local r = rnd(1, 10)
  if r <= 6 then return rnd(0, short) end
  if r <= 9 then return rnd(short + 1, long // 3) end
  return rnd(long // 3 + 1, long)
end

local function random_bulk(rnd)
  local len, t = random_len(rnd, 20, 300), {}
  local n = 0
  while n < len do
    local s = rnd(1, 4) == 1 and TRICKY[rnd(1, #TRICKY)] or string.char(rnd(0, 255))
    t[#t + 1] = s
    n = n + #s
  end
  return table.concat(t):sub(1, len)
end

local BLANKS = { " ", "\t", "\v", "\f", "\r" } -- resp.c's is_blank
local function is_blank_or_nl(b) return b == 32 or (b >= 9 and b <= 13) end

local function random_word(rnd)
  local t = {}
  for i = 1, rnd(1, 12) do
    local b
    repeat b = rnd(0, 255) until not is_blank_or_nl(b)
    t[i] = string.char(b)
  end
  return table.concat(t)
end

local function blanks(rnd, min)
  local t = {}
  for i = 1, rnd(min, 3) do t[i] = BLANKS[rnd(1, #BLANKS)] end
  return table.concat(t)
end

-- An inline command: its bytes and its words.
local function random_inline(rnd)
  local words = {}
  for i = 1, rnd(0, 5) do words[i] = random_word(rnd) end
  local parts = { blanks(rnd, 0) }
  for i, w in ipairs(words) do
    if i > 1 then parts[#parts + 1] = blanks(rnd, 1) end
    parts[#parts + 1] = w
  end
  parts[#parts + 1] = blanks(rnd, 0)
  parts[#parts + 1] = rnd(0, 1) == 1 and "\r\n" or "\n"
  local line = table.concat(parts)
  if line:byte(1) == 42 then line = " " .. line end -- a '*' would make it multibulk
  return line, words
end

-- A multibulk command of 0 to 8 arguments: its bytes and its arguments.
local function random_multibulk(rnd)
  local args, out = {}, {}
  for i = 1, rnd(0, 8) do args[i] = random_bulk(rnd) end
  out[1] = ("*%d\r\n"):format(#args)
  for _, a in ipairs(args) do out[#out + 1] = ("$%d\r\n%s\r\n"):format(#a, a) end
  return table.concat(out), args
end

local function random_command(rnd)
  if rnd(1, 5) == 1 then return random_inline(rnd) end
  return random_multibulk(rnd)
end

-- One connection's traffic: the byte stream, the commands the server must
-- read from it, and what must be left unread at EOF. With `cut`, the
-- stream stops inside its last command.
local function random_stream(rnd, cut)
  local bytes, cmds = {}, {}
  for i = 1, rnd(1, 10) do
    local b, args = random_command(rnd)
    bytes[i], cmds[i] = b, args
  end
  local unread = ""
  if cut then
    local b
    repeat b = random_command(rnd) until #b >= 2
    unread = b:sub(1, rnd(1, #b - 1))
    bytes[#bytes + 1] = unread
  end
  return { bytes = table.concat(bytes), cmds = cmds, unread = unread }
end

local function pieces_of(rnd, s)
  local list, i = {}, 1
  while i <= #s do
    local n = rnd(1, MAX_PIECE)
    list[#list + 1] = s:sub(i, i + n - 1)
    i = i + n
  end
  return list
end

-- What a handler read: its commands, then how its last read failed.
local function reader(results)
  return function(sock)
    local _, port = sock:peer()
    local cmds = {}
    while true do
      local args, code, extra = resp.read(sock, 2)
      if not args then
        results[port] = { cmds = cmds, code = code, extra = extra }
        return
      end
      cmds[#cmds + 1] = args
    end
  end
end

-- A command or bytes, printable: escaped and cut short.
local ESCAPES = { ["\r"] = "\\r", ["\n"] = "\\n", ["\t"] = "\\t", ["\\"] = "\\\\", ['"'] = '\\"' }
local function show(v)
  if type(v) == "table" then
    local t = {}
    for i, a in ipairs(v) do t[i] = show(a) end
    return "{" .. table.concat(t, ", ") .. "}"
  end
  if type(v) ~= "string" then return tostring(v) end
  local s = v:sub(1, 40):gsub(".", function(c)
    local b = c:byte()
    if ESCAPES[c] then return ESCAPES[c] end
    if b < 32 or b > 126 then return ("\\x%02x"):format(b) end
  end)
  return '"' .. s .. (#v > 40 and ('"...(%d bytes)'):format(#v) or '"')
end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function check(seed, i, stream, got)
  local function fail(what, want, have)
    error(("seed %d, connection %d: %s\n  sent %s\n  read %s\n  (%d command(s) read, then %s, %s)")
      :format(seed, i, what, want, have, #got.cmds, tostring(got.code), show(got.extra)), 0)
  end
  for k, want in ipairs(stream.cmds) do
    local cmd = got.cmds[k]
    if not (cmd and same(want, cmd)) then
      fail(("command %d of %d differs"):format(k, #stream.cmds), show(want), cmd and show(cmd) or "nothing")
    end
  end
  if #got.cmds > #stream.cmds then
    fail("more commands read than sent", "nothing", show(got.cmds[#stream.cmds + 1]))
  end
  if got.code ~= "closed" or got.extra ~= stream.unread then
    fail("the last read is not EOF with the unread bytes", 'nil, "closed", ' .. show(stream.unread),
      ("nil, %s, %s"):format(show(got.code), show(got.extra)))
  end
end

-- Sends each stream over its own connection, pieces interleaved at random;
-- a connection closes once its stream is sent. Returns what each handler read.
local function exchange(rnd, seed, streams)
  local results = {}
  local server <close> = support.serve(reader(results))
  local clients = setmetatable({}, { __close = function(t)
    for _, c in ipairs(t) do c:close() end
  end })
  local _clients <close> = clients
  local queues, ports = {}, {}
  for i, stream in ipairs(streams) do
    clients[i] = support.connect(server)
    ports[i] = select(2, clients[i]:localaddr())
    queues[i] = pieces_of(rnd, stream.bytes)
  end
  local active, next_piece = {}, {}
  for i = 1, #streams do active[i], next_piece[i] = i, 1 end
  while #active > 0 do
    local a = rnd(1, #active)
    local i = active[a]
    local q = queues[i]
    -- A write fails only when the handler hung up (a protocol error): what
    -- it read says more than the write error, so stop sending there.
    local sent = clients[i]:write(q[next_piece[i]])
    next_piece[i] = next_piece[i] + 1
    if not sent or next_piece[i] > #q then
      clients[i]:close()
      table.remove(active, a)
    end
    if rnd(1, 8) > 1 then berth.sleep(0) end -- now and then two pieces at once
  end
  support.wait_until(function()
    for _, port in ipairs(ports) do
      if not results[port] then return false end
    end
    return true
  end, 3, ("seed %d: every handler's EOF"):format(seed))
  local got = {}
  for i, port in ipairs(ports) do got[i] = results[port] end
  return got
end

describe("berth.resp: commands of three connections in interleaved pieces", function()
  before_each(support.before)
  after_each(support.after)

  for _, seed in ipairs(SEEDS) do
    it(("seed %d: each handler reads exactly its own commands"):format(seed), function()
      run(function()
        local rnd = prng(seed)
        local streams = {}
        for i = 1, CONNECTIONS do streams[i] = random_stream(rnd, false) end
        local got = exchange(rnd, seed, streams)
        for i, stream in ipairs(streams) do check(seed, i, stream, got[i]) end
      end)
    end)
  end

  for _, seed in ipairs(CUT_SEEDS) do
    it(("seed %d: a client closing mid-command leaves its part unread, the others intact")
      :format(seed), function()
      run(function()
        local rnd = prng(seed)
        local cut = rnd(1, CONNECTIONS)
        local streams = {}
        for i = 1, CONNECTIONS do streams[i] = random_stream(rnd, i == cut) end
        local got = exchange(rnd, seed, streams)
        for i, stream in ipairs(streams) do check(seed, i, stream, got[i]) end
      end)
    end)
  end
end)

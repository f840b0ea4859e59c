-- A small authoritative DNS server over UDP (RFC 1035, with EDNS0 from
-- RFC 6891). It answers A, AAAA and TXT queries (and ANY) for the names
-- of a zone table:
--   * a name it has: NOERROR, authoritative (AA), its records of that type
--     (none is NOERROR too: the name exists, the type does not);
--   * any other name: NXDOMAIN;
--   * a malformed query: FORMERR (a datagram too short to hold a header
--     is dropped: there is no ID to answer);
--   * an opcode other than QUERY: NOTIMP; a class other than IN: REFUSED;
--   * a response longer than the client takes (512 bytes, or the payload
--     size its EDNS record offers) is cut to the header and the question
--     with the TC bit set, telling the client to ask again over TCP.
-- PORT (default 5353, 0 for any free port) and HOST (default 127.0.0.1);
-- ZONE=file.lua loads the zone from a file that returns such a table.
--
--   dig @127.0.0.1 -p 5353 example.test A
local berth = require "berth"

local TTL = 300
local EDNS_SIZE = 1232 -- the payload we offer (the DNS flag day 2020 value)

local zone = {
  ["example.test"] = {
    A = { "192.0.2.1", "192.0.2.2" },
    AAAA = { "2001:db8::1" },
    TXT = { "v=berth example zone" },
  },
  ["www.example.test"] = { A = { "192.0.2.10" } },
  ["ipv6.example.test"] = { AAAA = { "2001:db8::10", "2001:db8:0:1::11" } },
  -- About 800 bytes of TXT: whole with EDNS, truncated without it.
  ["big.example.test"] = { TXT = (function()
    local t = {}
    for i = 1, 12 do t[i] = ("%02d:"):format(i) .. ("x"):rep(60) end
    return t
  end)() },
  -- Labels of the maximum length, 63 bytes.
  [("a"):rep(63) .. "." .. ("b"):rep(63) .. ".example.test"] = { A = { "192.0.2.63" } },
}
if os.getenv("ZONE") then zone = assert(dofile(os.getenv("ZONE"))) end

local TYPES = { A = 1, TXT = 16, AAAA = 28 }
local ANY, OPT, IN = 255, 41, 1
local NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5

-- ------------------------------------------------------------ the zone

local function ipv4(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  assert(a, "not an IPv4 address: " .. text)
  return string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
end

local function ipv6(text)
  local head, tail = text:match("^(.-)::(.*)$")
  local function groups(s)
    local g = {}
    for h in s:gmatch("[^:]+") do g[#g + 1] = assert(tonumber(h, 16), text) end
    return g
  end
  local left, right = groups(head or text), groups(tail or "")
  assert(#left + #right <= 8 and (head or #left == 8), "not an IPv6 address: " .. text)
  local all = {}
  for _, v in ipairs(left) do all[#all + 1] = v end
  for _ = 1, 8 - #left - #right do all[#all + 1] = 0 end
  for _, v in ipairs(right) do all[#all + 1] = v end
  return string.pack(">I2I2I2I2I2I2I2I2", table.unpack(all))
end

-- TXT: one string as character-strings of at most 255 bytes each.
local function txt(text)
  local parts = {}
  for i = 1, math.max(#text, 1), 255 do
    local piece = text:sub(i, i + 254)
    parts[#parts + 1] = string.char(#piece) .. piece
  end
  return table.concat(parts)
end

local ENCODE = { A = ipv4, AAAA = ipv6, TXT = txt }

-- name (lower case) -> { [type] = { rdata, ... } }, and every ancestor of
-- a name (an "empty non-terminal": it exists, with no records).
local records, exists = {}, {}
for name, rrsets in pairs(zone) do
  name = name:lower()
  local byte = {}
  for kind, list in pairs(rrsets) do
    local t = assert(TYPES[kind], "unsupported record type " .. kind)
    byte[t] = {}
    for i, value in ipairs(list) do byte[t][i] = ENCODE[kind](value) end
  end
  records[name] = byte
  local parent = name
  while true do
    parent = parent:match("^[^.]*%.(.+)$")
    if not parent then break end
    exists[parent] = true
  end
end

-- ----------------------------------------------------------- the wire

-- The question's name: its text in lower case and the position after it,
-- or nil (malformed: a label over 63 bytes, a compression pointer, a
-- name over 255 bytes, or the end of the datagram).
local function read_name(msg, pos)
  local labels, length = {}, 1
  while true do
    local n = msg:byte(pos)
    if not n or n > 63 then return nil end
    if n == 0 then return table.concat(labels, "."):lower(), pos + 1 end
    length = length + n + 1
    if length > 255 or pos + n > #msg then return nil end
    labels[#labels + 1] = msg:sub(pos + 1, pos + n)
    pos = pos + n + 1
  end
end

-- Skip a name in a resource record (compression allowed there).
local function skip_name(msg, pos)
  for _ = 1, 128 do
    local n = msg:byte(pos)
    if not n then return nil end
    if n == 0 then return pos + 1 end
    if n >= 0xC0 then return msg:byte(pos + 1) and pos + 2 end
    if n > 63 then return nil end
    pos = pos + n + 1
  end
end

-- The additional records of a query: the EDNS payload size offered (nil:
-- no OPT record), or false when a record is malformed.
local function read_edns(msg, pos, count)
  local size
  for _ = 1, count do
    pos = skip_name(msg, pos)
    if not pos or pos + 9 > #msg then return false end
    local kind, class, _, rdlen = string.unpack(">I2I2I4I2", msg, pos)
    pos = pos + 10 + rdlen
    if pos > #msg + 1 then return false end
    if kind == OPT then size = math.max(512, class) end
  end
  return size
end

local function header(id, flags, rcode, qd, an, ar)
  return string.pack(">I2I2I2I2I2I2", id, flags | rcode, qd, an, 0, ar)
end

local function opt_record()
  return string.pack(">I1I2I2I4I2", 0, OPT, EDNS_SIZE, 0, 0)
end

-- Answer records for the question (its name is at offset 12: 0xC00C).
local function answers(rrsets, qtype)
  local out = {}
  for t, list in pairs(rrsets) do
    if qtype == t or qtype == ANY then
      for _, rdata in ipairs(list) do
        out[#out + 1] = string.pack(">I2I2I2I4s2", 0xC00C, t, IN, TTL, rdata)
      end
    end
  end
  return out
end

--- The response to one query, or nil to send nothing.
local function respond(query)
  if #query < 12 then return nil end
  local id, flags, qd, an, ns, ar = string.unpack(">I2I2I2I2I2I2", query)
  if flags & 0x8000 ~= 0 then return nil end -- a response: never answer one
  local opcode = (flags >> 11) & 0xF
  local base = 0x8000 | (flags & 0x7900) -- QR, the opcode and RD echoed
  if opcode ~= 0 then return header(id, base, NOTIMP, 0, 0, 0) end
  local name, pos = nil, 13
  if qd == 1 then name, pos = read_name(query, pos) end
  if not name or pos + 3 > #query then return header(id, base, FORMERR, 0, 0, 0) end
  local question = query:sub(13, pos + 3)
  local qtype, qclass = string.unpack(">I2I2", query, pos)
  local edns = read_edns(query, pos + 4, an + ns + ar)
  if edns == false then return header(id, base, FORMERR, 0, 0, 0) end
  local opt = edns and opt_record() or ""
  local nopt = edns and 1 or 0
  base = base | 0x0400 -- authoritative
  if qclass ~= IN and qclass ~= ANY then
    return header(id, base, REFUSED, 1, 0, nopt) .. question .. opt
  end
  local rrsets = records[name]
  if not rrsets then
    local rcode = exists[name] and NOERROR or NXDOMAIN
    return header(id, base, rcode, 1, 0, nopt) .. question .. opt
  end
  local list = answers(rrsets, qtype)
  local body = table.concat(list)
  local limit = edns or 512
  if 12 + #question + #body + #opt > limit then
    return header(id, base | 0x0200, NOERROR, 1, 0, nopt) .. question .. opt
  end
  return header(id, base, NOERROR, 1, #list, nopt) .. question .. body .. opt
end

local server = assert(berth.serve_udp{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 5353),
  -- A task per query: a zone that asked a database could wait here.
  handler = function(query) return respond(query) end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

--- The master/worker protocol of `berth --workers`: every message on a
-- worker's channel is encoded and decoded here, and nowhere else.
--
-- The channel is a SOCK_SEQPACKET socketpair (fd 3 in the worker). A
-- message is a frame, a 4-byte big-endian length and a body: its kind,
-- the request id, then fields (key, tagged value)*. Kinds:
--
--   worker -> master  "attach"  send the shared region (first, at start)
--                     "ready"   the script has run
--                     "listen"  bind a listener: the BIND keys of
--                               core.options.listen, nothing else
--                     "udp"     bind a UDP server socket: the BIND keys of
--                               core.options.udp, multicast groups as one
--                               string "group|interface,..."
--                     "tickets" the TLS session ticket keys, please
--   master -> worker  "ok"      to "listen"/"udp": the descriptor is
--                               attached; to "attach": the region's
--                               descriptor is, with slot (the member slot
--                               claimed for the worker) and worker (its
--                               number)
--                     "fail"    listen (udp) returned nil: code, errno; or
--                               the master has no region: code
--                     "error"   listen (udp) raised: message
--                     "tickets" keys: the ticket keys (berth.tls)
--
-- A reply carries its request's id, so a reply that comes after its
-- request timed out is recognised and dropped (its descriptor closed).
-- @module berth.channel
local core = require "berth.core"
local proc = core.proc

local channel = {}

--- Seconds a worker waits for its master's reply.
channel.TIMEOUT = 10

local MAX_BODY = 4000 -- proc.recv reads at most 4096 bytes a message

--- The listen{} keys the master binds with (core.options.listen entries
-- with `bind`), sorted: a worker sends these and applies the rest itself.
channel.BIND_KEYS = {}
for key, o in pairs(core.options.listen) do
  if o.bind then channel.BIND_KEYS[#channel.BIND_KEYS + 1] = key end
end
table.sort(channel.BIND_KEYS)

local function encode_value(v)
  local t = math.type(v) or type(v)
  if t == "integer" then return "i" .. string.pack(">j", v) end
  if t == "float" then return "n" .. string.pack(">n", v) end
  if t == "string" then return "s" .. string.pack(">s4", v) end
  if t == "boolean" then return v and "T" or "F" end
  error("berth.channel: cannot send a " .. t, 3)
end

local function decode_value(body, pos)
  local tag = body:sub(pos, pos)
  pos = pos + 1
  if tag == "i" then return string.unpack(">j", body, pos) end
  if tag == "n" then return string.unpack(">n", body, pos) end
  if tag == "s" then return string.unpack(">s4", body, pos) end
  if tag == "T" then return true, pos end
  if tag == "F" then return false, pos end
  error("unknown value tag " .. ("%q"):format(tag), 0)
end

--- A message: `kind`, request `id`, and `fields`, a flat table of
-- strings, numbers and booleans (keys in sorted order: the same message
-- always has the same bytes).
-- @treturn string the frame
function channel.encode(kind, id, fields)
  local keys = {}
  for k in pairs(fields or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { string.pack(">s1j", kind, id) }
  for _, k in ipairs(keys) do
    parts[#parts + 1] = string.pack(">s1", k) .. encode_value(fields[k])
  end
  local body = table.concat(parts)
  if #body > MAX_BODY then error("berth.channel: message too long", 2) end
  return string.pack(">s4", body)
end

local function decode(frame)
  local body, after = string.unpack(">s4", frame)
  if after ~= #frame + 1 then error("trailing bytes", 0) end
  local kind, id, pos = string.unpack(">s1j", body)
  local fields = {}
  while pos <= #body do
    local key, value
    key, pos = string.unpack(">s1", body, pos)
    value, pos = decode_value(body, pos)
    fields[key] = value
  end
  return kind, id, fields
end

--- Decode a frame.
-- @treturn[1] string kind
-- @treturn[1] integer id
-- @treturn[1] table fields
-- @treturn[2] nil
-- @treturn[2] string "malformed message: ..."
function channel.decode(frame)
  local ok, kind, id, fields = pcall(decode, frame)
  if not ok then return nil, "malformed message: " .. tostring(kind) end
  return kind, id, fields
end

--- The udp{} keys the master binds with (core.options.udp entries with
-- `bind`), sorted.
channel.UDP_BIND_KEYS = {}
for key, o in pairs(core.options.udp) do
  if o.bind then channel.UDP_BIND_KEYS[#channel.UDP_BIND_KEYS + 1] = key end
end
table.sort(channel.UDP_BIND_KEYS)

-- Multicast groups, {group=, interface=} or a list of them, as one string
-- (a message holds flat values): "group|interface,...". An address or an
-- interface name has no "|" or ",".
local function encode_groups(groups)
  if groups.group ~= nil then groups = { groups } end
  local list = {}
  for _, g in ipairs(groups) do
    local text = tostring(g.group) .. "|" .. tostring(g.interface or "")
    if text:find(",", 1, true) or select(2, text:gsub("|", "")) ~= 1 then
      error("berth.udp: a malformed multicast group", 4)
    end
    list[#list + 1] = text
  end
  return table.concat(list, ",")
end

--- The "udp" request for `udp(opts)`: only the BIND keys.
function channel.udp_request(id, opts)
  local fields = {}
  for _, k in ipairs(channel.UDP_BIND_KEYS) do fields[k] = opts[k] end
  if type(opts.multicast) == "table" then fields.multicast = encode_groups(opts.multicast) end
  return channel.encode("udp", id, fields)
end

--- Master side: the udp{} options of a "udp" request's fields.
function channel.udp_options(fields)
  local o = {}
  for k, v in pairs(fields) do o[k] = v end
  if type(o.multicast) == "string" then
    local groups = {}
    for g, i in o.multicast:gmatch("([^|,]*)|([^,]*)") do
      groups[#groups + 1] = { group = g, interface = i ~= "" and i or nil }
    end
    o.multicast = groups
  end
  return o
end

-- `opts` without the keys `bound` lists, and with `fd`: what a worker
-- gives listen or udp for the descriptor the master bound for it.
local function adopted(opts, fd, bound)
  local t = {}
  for k, v in pairs(opts) do t[k] = v end
  for _, k in ipairs(bound) do t[k] = nil end
  t.fd = fd
  return t
end

--- What a worker gives udp for the descriptor the master sent: its own
-- options but the BIND keys, and `fd`.
function channel.adopted_udp_options(opts, fd)
  return adopted(opts, fd, channel.UDP_BIND_KEYS)
end

--- The "attach" request: the shared region, please.
function channel.attach_request(id)
  return channel.encode("attach", id)
end

--- The "listen" request for `listen(opts)`: only the BIND keys.
function channel.listen_request(id, opts)
  local fields = {}
  for _, k in ipairs(channel.BIND_KEYS) do fields[k] = opts[k] end
  return channel.encode("listen", id, fields)
end

--- What a worker gives listen for the descriptor the master sent: its
-- own options but the BIND keys, and `fd`.
function channel.adopted_options(opts, fd)
  return adopted(opts, fd, channel.BIND_KEYS)
end

--- Master side: the next message from a worker's channel (a Socket).
-- Waits as long as it takes for a message to start, then at most
-- TIMEOUT for the rest of it.
-- @treturn[1] string kind
-- @treturn[1] integer id
-- @treturn[1] table fields
-- @treturn[2] nil
-- @treturn[2] string "closed", "reset", "timeout" or "malformed message..."
function channel.read(sock)
  local head, err = sock:read(4)
  if not head then return nil, err end
  local n = string.unpack(">I4", head)
  if n > MAX_BODY then return nil, "malformed message: too long" end
  local body, berr = sock:read(n, channel.TIMEOUT)
  if not body then return nil, berr end
  return channel.decode(head .. body)
end

--- Worker side: send request `id` and wait for its reply, blocking (the
-- script's main chunk has no loop to wait in), at most `timeout` seconds
-- for each step.
-- @treturn[1] string the reply's kind
-- @treturn[1] table its fields
-- @treturn[1] integer|nil the descriptor attached
-- @treturn[2] nil
-- @treturn[2] string "timeout", "canceled" (SIGTERM/SIGINT came), or
-- "closed" (the channel is broken)
function channel.exchange(fd, id, msg, timeout)
  local sent, err = proc.send(fd, msg, nil, timeout)
  if not sent then
    return nil, (err == "timeout" or err == "canceled") and err or "closed"
  end
  while true do
    local reply, passed = proc.recv(fd, timeout)
    if reply == nil then
      return nil, (passed == "timeout" or passed == "canceled") and passed or "closed"
    end
    if reply == "" then return nil, "closed" end
    local kind, rid, fields = channel.decode(reply)
    if kind and rid == id then return kind, fields, passed end
    -- A late reply to a request that timed out (or garbage): drop it.
    if passed then proc.close(passed) end
  end
end

return channel

--- berth.websocket: WebSocket (RFC 6455) servers and clients, with
-- permessage-deflate (RFC 7692) and broadcast groups.
--
--     local http, websocket = require "berth.http", require "berth.websocket"
--     http.serve{port = 8080, handler = function(req, res)
--       local ws = websocket.upgrade(req, res)
--       if not ws then return end -- not a valid WebSocket handshake: 400/426 sent
--       for msg, kind in ws:messages() do ws:send(msg, kind) end
--     end}
--
-- Frames are read, unmasked, reassembled, validated and (de)compressed in C
-- (berth.core.ws: src/ws.c on src/ws_frame.c and src/ws_deflate.c). Pings
-- are answered and the closing handshake is made automatically; a protocol
-- violation closes the connection with its code (1002, 1007, 1009).
-- When the server shuts down (or a rolling reload retires a worker), every
-- server-side WebSocket is sent close 1001 "going away".
-- @module berth.websocket
local core = require "berth.core"
local berth = require "berth"

local W = core.ws
local WebSocket = W.WebSocket

local websocket = {}

local open = setmetatable({}, { __mode = "k" }) -- server side, for going away
local hooked = false
local DEFAULT_LAG = 256 * 1024

-- ------------------------------------------------------------------------
-- The WebSocket methods written in Lua
-- ------------------------------------------------------------------------

--- WebSocket (the C methods: `receive([timeout])` -> message, "text" |
-- "binary", or nil, "closed", code, reason, or nil, "timeout";
-- `send(data [, "binary"])`; `ping([data])`; `isopen()`; `closeinfo()`;
-- `lag()`; `socket()`).
-- @type WebSocket

--- Close: send a close frame (`code` 1000, `reason` ""), wait up to
-- `timeout` seconds (5; 0: not at all) for the peer's, then close the
-- connection. Messages that arrive meanwhile are dropped.
-- @function WebSocket:close
-- @tparam[opt=1000] integer code
-- @tparam[opt] string reason
-- @tparam[opt=5] number timeout
-- @treturn boolean true
function WebSocket:close(code, reason, timeout)
  timeout = timeout or 5
  if self:_closeframe(code, reason) and timeout > 0 then
    local deadline = berth.now() + timeout
    repeat
      local left = deadline - berth.now()
      local msg = left > 0 and self:receive(left)
    until not msg
  end
  self:_abort()
  open[self] = nil
  return true
end

--- Iterate over the messages until the connection ends:
-- `for msg, kind in ws:messages() do … end`.
-- @function WebSocket:messages
-- @tparam[opt] number timeout per message (the loop ends at a timeout)
function WebSocket:messages(timeout)
  return function() return self:receive(timeout) end
end

-- ------------------------------------------------------------------------
-- Handshakes
-- ------------------------------------------------------------------------

-- Does the comma-separated header value list `token` (case-insensitive)?
local function has_token(value, token)
  for item in (value or ""):gmatch("[^,]+") do
    if item:match("^%s*(.-)%s*$"):lower() == token then return true end
  end
  return false
end

-- Sec-WebSocket-Extensions: a list of { name =, params = {}, bad = }.
local function parse_extensions(value)
  local list = {}
  for ext in (value or ""):gmatch("[^,]+") do
    local offer = { params = {} }
    for part in ext:gmatch("[^;]+") do
      part = part:match("^%s*(.-)%s*$")
      if not offer.name then
        offer.name = part:lower()
      else
        local k, eq, v = part:match("^([^=%s]+)%s*(=?)%s*(.-)$")
        if not k then offer.bad = true else
          k = k:lower()
          if offer.params[k] ~= nil then offer.bad = true end -- twice (§7)
          offer.params[k] = eq == "=" and v:gsub('^"(.*)"$', "%1") or true
        end
      end
    end
    list[#list + 1] = offer
  end
  return list
end

local PARAMS = { server_no_context_takeover = true, client_no_context_takeover = true,
  server_max_window_bits = true, client_max_window_bits = true }

local function bits_of(v)
  local n = math.tointeger(tonumber(v))
  return n and n >= 8 and n <= 15 and n or nil
end

-- One permessage-deflate offer judged by a server wanting `want`: the
-- settings for core.ws.new and the response's extension line, or nil.
local function accept_offer(p, want)
  for k in pairs(p) do if not PARAMS[k] then return nil end end
  local cfg = { deflate = true, level = want.level, mem_level = want.mem_level,
    min_deflate = want.min_deflate, window_bits = want.window_bits or 15 }
  local line = { "permessage-deflate" }
  if p.server_max_window_bits ~= nil then
    local n = bits_of(p.server_max_window_bits)
    -- zlib makes no raw deflate stream with an 8-bit window: decline that.
    if not n or n == 8 then return nil end
    cfg.window_bits = math.min(cfg.window_bits, n)
  end
  if cfg.window_bits < 15 then line[#line + 1] = "server_max_window_bits=" .. cfg.window_bits end
  if p.client_max_window_bits ~= nil and p.client_max_window_bits ~= true
    and not bits_of(p.client_max_window_bits) then return nil end
  if p.server_no_context_takeover ~= nil or want.server_no_context_takeover then
    if p.server_no_context_takeover ~= nil and p.server_no_context_takeover ~= true then return nil end
    cfg.deflate_no_takeover = true
    line[#line + 1] = "server_no_context_takeover"
  end
  if p.client_no_context_takeover ~= nil or want.client_no_context_takeover then
    if p.client_no_context_takeover ~= nil and p.client_no_context_takeover ~= true then return nil end
    cfg.inflate_no_takeover = true
    line[#line + 1] = "client_no_context_takeover"
  end
  return cfg, table.concat(line, "; ")
end

local function negotiate(value, want)
  for _, offer in ipairs(parse_extensions(value)) do
    if offer.name == "permessage-deflate" and not offer.bad then
      local cfg, line = accept_offer(offer.params, want)
      if cfg then return cfg, line end
    end
  end
end

-- The subprotocol: the server's first choice that the client offered.
local function choose_protocol(offered, supported)
  if not offered or not supported then return nil end
  for _, p in ipairs(supported) do
    if has_token(offered, p:lower()) then return p end
  end
end

local function going_away()
  hooked = false -- berth runs each hook once per shutdown
  for ws in pairs(open) do
    if ws:isopen() then ws:_closeframe(1001, "going away") end
  end
end

local function bad_handshake(res, status, text)
  if status == 426 then res:header("Sec-WebSocket-Version", "13") end
  res:status(status):header("Content-Type", "text/plain"):send(text .. "\n")
  return nil, "badrequest"
end

local function settings(opts, cfg)
  local t = { client = opts.client, max_message = opts.max_message }
  for k, v in pairs(cfg or {}) do t[k] = v end
  return t
end

--- Functions
-- @section Functions

--- Answer a WebSocket opening handshake from an HTTP handler (berth.http)
-- with 101 and return the WebSocket; the handler then talks over it until
-- it returns. A request that is not a valid handshake gets 400 (426 for a
-- version other than 13) and nil, "badrequest".
-- @function upgrade
-- @tparam Request req
-- @tparam Response res
-- @tparam[opt] table opts `protocols` (subprotocols the server speaks, in
-- its order of preference), `max_message` (bytes, 1 MiB: a bigger message
-- closes with 1009, compressed or not), `deflate` (true, or a table
-- `level`, `mem_level`, `window_bits`, `min_deflate`,
-- `server_no_context_takeover`, `client_no_context_takeover`: offer
-- permessage-deflate when the client asks), `idle_timeout` (seconds
-- without traffic before the connection closes; default none)
-- @treturn[1] WebSocket
-- @treturn[1] string|nil the chosen subprotocol
-- @treturn[2] nil
-- @treturn[2] string "badrequest", or a write failure
function websocket.upgrade(req, res, opts)
  opts = opts or {}
  if res:started() then error("websocket.upgrade: the response has started", 2) end
  local h = req.headers
  local accept = W.accept(h["sec-websocket-key"] or "")
  if req.method ~= "GET" or req.version ~= "1.1" or not has_token(h.upgrade, "websocket")
    or not has_token(h.connection, "upgrade") or not accept then
    return bad_handshake(res, 400, "Bad Request")
  end
  if h["sec-websocket-version"] ~= "13" then
    return bad_handshake(res, 426, "Upgrade Required")
  end
  res:status(101):header("Upgrade", "websocket"):header("Connection", "Upgrade")
    :header("Sec-WebSocket-Accept", accept)
  local protocol = choose_protocol(h["sec-websocket-protocol"], opts.protocols)
  if protocol then res:header("Sec-WebSocket-Protocol", protocol) end
  local cfg, line
  if opts.deflate then
    cfg, line = negotiate(h["sec-websocket-extensions"],
      type(opts.deflate) == "table" and opts.deflate or {})
    if line then res:header("Sec-WebSocket-Extensions", line) end
  end
  local ok, err, extra = res:send()
  if not ok then return nil, err, extra end
  local sock = req.socket
  sock:setoption("idle_timeout", opts.idle_timeout or false)
  local ws = W.new(sock, settings(opts, cfg))
  open[ws] = true
  if not hooked then
    hooked = true
    berth.on_shutdown(going_away)
  end
  return ws, protocol
end

local function parse_url(url)
  local scheme, authority, path = url:match("^(wss?)://([^/?#]+)([^#]*)")
  if not scheme then return nil end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then return nil end
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  return scheme, host, tonumber(port) or (scheme == "wss" and 443 or 80), path, authority
end

-- The server's answer to our permessage-deflate offer: settings, or nil
-- and whether the answer is unacceptable.
local function client_deflate(value, want)
  local list = parse_extensions(value)
  if #list == 0 then return nil end
  local p = list[1].params
  if #list > 1 or list[1].name ~= "permessage-deflate" or list[1].bad then return nil, true end
  for k in pairs(p) do if not PARAMS[k] then return nil, true end end
  local cfg = { deflate = true, level = want.level, mem_level = want.mem_level,
    min_deflate = want.min_deflate, window_bits = 15 }
  if p.client_max_window_bits ~= nil then
    local n = bits_of(p.client_max_window_bits)
    if not n or n == 8 then return nil, true end
    cfg.window_bits = n
  end
  if p.server_max_window_bits ~= nil and not bits_of(p.server_max_window_bits) then return nil, true end
  cfg.deflate_no_takeover = p.client_no_context_takeover ~= nil
  cfg.inflate_no_takeover = p.server_no_context_takeover ~= nil
  return cfg
end

local function read_response(sock, timeout)
  local head, err, extra = sock:readuntil("\r\n\r\n", timeout)
  if not head then return nil, err, extra end
  local status = head:match("^HTTP/1%.1 (%d%d%d)")
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]-)[ \t]*%f[\r\0]") do
    name = name:lower()
    headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
  end
  return tonumber(status), headers
end

--- Open a WebSocket to `url` ("ws://host[:port]/path"; wss:// needs
-- berth's TLS). Task only.
-- @function connect
-- @tparam string url
-- @tparam[opt] table opts `protocols` (a list to offer), `headers` (extra
-- request headers), `deflate` (true or a table as for upgrade: offer
-- permessage-deflate), `max_message` (1 MiB), `timeout` (seconds for the
-- connect and the handshake), `tls`
-- @treturn[1] WebSocket
-- @treturn[1] string|nil the subprotocol the server chose
-- @treturn[2] nil
-- @treturn[2] string "badurl", "unsupported", "handshake", or a socket code
function websocket.connect(url, opts)
  opts = opts or {}
  local scheme, host, port, path, authority = parse_url(url or "")
  if not scheme then return nil, "badurl" end
  if scheme == "wss" and not core.tls then return nil, "unsupported" end
  local sock, err, extra = berth.connect(host, port,
    { timeout = opts.timeout, tls = scheme == "wss" and (opts.tls or true) or nil })
  if not sock then return nil, err, extra end
  local key = W.newkey()
  local lines = { ("GET %s HTTP/1.1"):format(path), "Host: " .. authority,
    "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. key,
    "Sec-WebSocket-Version: 13" }
  if opts.protocols then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(opts.protocols, ", ")
  end
  if opts.deflate then
    lines[#lines + 1] = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
  end
  for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local ok
  ok, err, extra = sock:write(table.concat(lines, "\r\n"), "\r\n\r\n")
  if not ok then sock:close() return nil, err, extra end
  local status, h = read_response(sock, opts.timeout)
  if not status then sock:close() return nil, h, err end
  if status ~= 101 or not has_token(h.upgrade, "websocket") or not has_token(h.connection, "upgrade")
    or h["sec-websocket-accept"] ~= W.accept(key) then
    sock:close()
    return nil, "handshake", status
  end
  local cfg, bad
  if h["sec-websocket-extensions"] then
    if not opts.deflate then sock:close() return nil, "handshake", status end
    cfg, bad = client_deflate(h["sec-websocket-extensions"],
      type(opts.deflate) == "table" and opts.deflate or {})
    if bad then sock:close() return nil, "handshake", status end
  end
  local protocol = h["sec-websocket-protocol"]
  if protocol and not (opts.protocols and has_token(table.concat(opts.protocols, ","), protocol:lower())) then
    sock:close()
    return nil, "handshake", status
  end
  local t = settings(opts, cfg)
  t.client = true
  return W.new(sock, t), protocol
end

-- ------------------------------------------------------------------------
-- Groups
-- ------------------------------------------------------------------------

--- Group: a named set of WebSockets to broadcast to.
-- @type Group
local Group = {}
Group.__index = Group
local groups = {}

--- The group called `name` (made on first use; the same table after).
-- @function group
-- @within Functions
-- @tparam string name
-- @tparam[opt] table opts `max_lag`: bytes a member may have unsent
-- before a broadcast drops it (256 KiB; keep it under the server's
-- `max_output`)
-- @treturn Group
function websocket.group(name, opts)
  local g = groups[name]
  if not g then
    g = setmetatable({ name = name, members = setmetatable({}, { __mode = "k" }),
      max_lag = DEFAULT_LAG }, Group)
    groups[name] = g
  end
  if opts and opts.max_lag then g.max_lag = opts.max_lag end
  return g
end

--- Add a member. A member leaves when its connection ends, or by remove.
-- @function Group:add
function Group:add(ws)
  self.members[ws] = true
  return self
end

--- @function Group:remove
function Group:remove(ws)
  self.members[ws] = nil
  return self
end

--- Send `data` to every member but `except`, never waiting: a member
-- whose unsent output would pass the group's `max_lag` is dropped -- it
-- leaves the group, gets close 1008 "too slow" after what it had queued,
-- and its connection closes once that is taken (or the send timeout of
-- the server passes) -- so a slow client never stalls the others nor
-- grows memory past max_lag.
-- @function Group:send
-- @tparam string data
-- @tparam[opt="text"] string kind
-- @tparam[opt] WebSocket except
-- @treturn integer how many members it was sent to
function Group:send(data, kind, except)
  local n, members = 0, self.members
  kind = kind or "text"
  for ws in pairs(members) do
    if ws ~= except then
      local ok, why = ws:trysend(data, kind, self.max_lag)
      if ok then
        n = n + 1
      else
        members[ws] = nil
        if why == "slow" then
          ws:_closeframe(1008, "too slow")
          ws:socket():shutdown("w")
        end
      end
    end
  end
  return n
end

--- How many members are connected.
-- @function Group:count
function Group:count()
  local n = 0
  for ws in pairs(self.members) do
    if ws:isopen() then n = n + 1 else self.members[ws] = nil end
  end
  return n
end

return websocket

--- TLS for berth: `berth.tls`. Contexts, the client side of
-- `berth.connect{tls=}`, certificate reload, session ticket keys, and the
-- examples' set-up from the environment. The C core (src/tls.c,
-- src/socket_tls.c) does the work; README "TLS" has every option.
-- @module berth.tls
local core = require "berth.core"
local log = require "berth.log"

local ServerSocket = core.ServerSocket

local tls = {}

-- Every server given TLS options (weak: a closed, dropped server goes).
local servers = setmetatable({}, { __mode = "k" })

local c_settls = ServerSocket.settls

-- Call the C function fn(...) as if the caller had called it directly:
-- its error (which, raised under pcall, names no position) is raised again
-- at the caller's level, so a wrapper adds no frame of its own to it.
local function transparent(ok, ...)
  if not ok then error((...), 3) end
  return ...
end

--- Replace a server's TLS context: a table of options, a TLSContext, or
-- nil to re-read the files of the options it has. New handshakes use the
-- new certificates; established connections keep theirs. On failure
-- (a missing or broken file) nothing changes.
-- @function ServerSocket:settls
-- @treturn[1] ServerSocket
-- @treturn[2] nil
-- @treturn[2] string "tls"
-- @treturn[2] string what is wrong (which file, and why)
function ServerSocket:settls(opts)
  local server, err, msg = transparent(pcall(c_settls, self, opts))
  if server then servers[self] = true end
  return server, err, msg
end

-- A canonical text of a value, for the client context cache: the same
-- options give the same key whatever order their table was built in.
local function canon(v)
  if type(v) ~= "table" then return type(v) .. ":" .. tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = canon(k) .. "=" .. canon(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local CACHE_MAX = 64 -- client contexts kept (loading the CA store is slow)

local function is_context(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return type(mt) == "table" and mt.__name == "berth.TLSContext"
end

--- The `berth.tls` table of the API over one core table.
-- @local
function tls.bind(c, api)
  local t = {}
  local cache, cached = {}, 0

  --- A context from options (README "TLS"), reusable by any number of
  -- servers (`listen{tls = ctx}`) or connections (`starttls(ctx)`).
  -- @tparam table opts
  -- @tparam[opt=false] boolean server a server context (else a client one)
  -- @treturn[1] TLSContext
  -- @treturn[2] nil
  -- @treturn[2] string "tls"
  -- @treturn[2] string what is wrong
  function t.context(opts, server)
    return c.tls.context(opts, server)
  end

  -- The client context for `opts` (true: the defaults), cached by value.
  local function client_context(opts)
    if is_context(opts) then return opts end
    if opts == true then opts = {} end
    local key = canon(opts)
    local ctx = cache[key]
    if ctx then return ctx end
    local err, msg
    ctx, err, msg = c.tls.context(opts, false)
    if not ctx then return nil, err, msg end
    if cached >= CACHE_MAX then cache, cached = {}, 0 end
    cache[key], cached = ctx, cached + 1
    return ctx
  end

  --- The TLS step of `berth.connect`: handshake on a connected socket, with
  -- SNI and certificate checks for `host` (or `opts.servername`). On
  -- failure the socket is closed.
  -- @local
  function t.client(sock, opts, host, timeout)
    local ctx, err, msg = client_context(opts)
    if not ctx then
      sock:close()
      return nil, err, msg
    end
    local name = type(opts) == "table" and opts.servername or host
    return sock:starttls(ctx, name, timeout)
  end

  --- Re-read the certificate and key files of every TLS server and rotate
  -- the session ticket keys (a new key encrypts, the previous one still
  -- decrypts). A server whose new files are broken keeps its old ones, and
  -- the error is logged. The host runs this on SIGHUP.
  -- @treturn boolean whether every server reloaded
  function t.reload()
    c.tls.rotate()
    local ok = true
    for server in pairs(servers) do
      if server:fd() >= 0 then
        local host, port = server:address()
        local done, _, msg = c_settls(server)
        if done then
          log.info("tls: %s:%s: certificates reloaded", host, port)
        else
          ok = false
          log.error("tls: %s:%s: reload failed, the old certificates stay: %s",
            host, port, msg)
        end
      end
    end
    return ok
  end

  --- Set the session ticket keys (1 to 8 keys of 80 bytes, the first
  -- encrypts) of server contexts made from now on; keys set here are not
  -- rotated by `reload` (their owner rotates them: the master does so for
  -- its workers). Without an argument, returns the keys in force.
  -- @function ticketkeys
  t.ticketkeys = c.tls.ticketkeys

  --- `n` (default 1) new random ticket keys as one string.
  -- @function newkeys
  t.newkeys = c.tls.newkeys

  -- listen{tls=} servers are reloaded by reload().
  local listen = api.listen
  function api.listen(opts)
    local server, err, extra = transparent(pcall(listen, opts))
    if server and type(opts) == "table" and opts.tls then servers[server] = true end
    return server, err, extra
  end

  return t
end

--- TLS options for the examples from the environment: `TLS_CERT` and
-- `TLS_KEY` (PEM files; the key may be in the certificate file), plus
-- optional `TLS_CA` and `TLS_VERIFY` ("optional" or "required": client
-- certificates) and `TLS_TICKET_KEYS` (a ticket key file). nil when
-- `TLS_CERT` is not set: the example serves plain TCP.
-- @tparam[opt] {string,...} alpn the protocols the example speaks
-- @treturn table|nil
function tls.fromenv(alpn)
  local cert = os.getenv("TLS_CERT")
  if not cert or cert == "" then return nil end
  local function env(name)
    local v = os.getenv(name)
    return v ~= "" and v or nil
  end
  return {
    cert = cert, key = env("TLS_KEY"), ca = env("TLS_CA"), verify = env("TLS_VERIFY"),
    ticket_keys = env("TLS_TICKET_KEYS"), alpn = alpn,
  }
end

tls.is_context = is_context

-- Reference of the TLS methods the C core provides (for LDoc).

--- Switch to TLS now (STARTTLS): server side on an accepted socket, client
-- side on a connected one. Bytes read but not consumed yet are the start
-- of the TLS stream. Task only; on failure the socket is closed.
-- @function Socket:starttls
-- @param opts a table of TLS options (may hold `server`, `servername`,
-- `timeout`) or a TLSContext
-- @tparam[opt] string servername the name to verify (clients)
-- @tparam[opt] number timeout seconds (default: handshake_timeout)
-- @treturn[1] Socket
-- @treturn[2] nil
-- @treturn[2] string "tls", "timeout", "closed", "reset"...
-- @treturn[2] string why

--- Complete the handshake of a socket from a TLS server's `accept()`.
-- @function Socket:handshake
-- @tparam[opt] number timeout
-- @treturn[1] Socket
-- @treturn[2] nil
-- @treturn[2] string code
-- @treturn[2] string why

--- What the TLS connection negotiated: `version`, `cipher`, `alpn`, `sni`,
-- `resumed`, `verified`, `peer` (certificate subject, when verified).
-- @function Socket:tlsinfo
-- @treturn table|nil nil for a plain or closed socket

return tls

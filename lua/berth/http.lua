--- berth.http: an HTTP/1.1 server (and a small client) on berth's sockets.
--
--     local http = require "berth.http"
--     http.serve{port = 8080, handler = function(req, res)
--       res:header("Content-Type", "text/plain"):send("Hello, World!")
--     end}
--
-- The request head is parsed in C from the socket's buffer (berth.core.http,
-- src/http.c over src/http_parse.c); `req.method`, `req.headers` and the
-- other fields become Lua values only when the handler reads them. Each
-- connection runs in its own task: keep-alive, pipelining (responses in
-- order), HEAD, `Expect: 100-continue`, chunked request bodies and
-- HTTP/1.0 are handled here; a malformed or ambiguous head (two differing
-- Content-Lengths, Content-Length with Transfer-Encoding, whitespace before
-- a colon, obs-fold...) is answered 400 and the connection closed.
-- @module berth.http
local core = require "berth.core"
local berth = require "berth"
local reload = require "berth.reload"

local C = core.http
local readrequest, readbody = C.readrequest, C.readbody
local PARK_AFTER = 0.5 -- seconds a kept-alive connection keeps its task while quiet
local Request, Response = C.Request, C.Response

local http = {}

-- http.serve's options are declared once, in src/options.h (core.options
-- "http.serve"): berth.serve's and berth.http's own.
local SERVE_KEYS = core.options.serve

local PIECE = 64 * 1024 -- bytes per piece of a streamed body

--- Request
-- @type Request

--- The whole body, at most `max_body` bytes (1 MiB by default). Reads it
-- once; later calls return "". Sends `100 Continue` first when the client
-- waits for it.
-- @function Request:body
-- @tparam[opt] number timeout seconds per read
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] string "toolarge" (the default answer is then 413),
-- "badrequest" (broken chunked framing: 400), "timeout", "closed", …
function Request:body(timeout)
  local sock, max = self.socket, self.max_body
  if not self.chunked then
    if (self.length or 0) > max then
      self:_fail(413)
      return nil, "toolarge"
    end
    local data, err, extra = readbody(sock, self, timeout)
    if data == false then return "" end
    if not data and err == "timeout" then self:_fail(408) end
    return data, err, extra
  end
  local parts, n = {}, 0
  while true do
    local piece, err, extra = readbody(sock, self, timeout, PIECE)
    if piece == false then return table.concat(parts) end
    if not piece then
      if err == "badrequest" or err == "timeout" then
        self:_fail(err == "timeout" and 408 or extra)
      end
      return nil, err, extra
    end
    n = n + #piece
    if n > max then
      self:_fail(413)
      return nil, "toolarge"
    end
    parts[#parts + 1] = piece
  end
end

--- An iterator over the body in pieces of at most `size` bytes (64 KiB),
-- for uploads of any size: `for piece in req:reader() do … end`. Not bound
-- by `max_body`. After a failure the iterator returns nil, code, extra.
-- @function Request:reader
-- @tparam[opt] integer size
-- @tparam[opt] number timeout seconds per read
-- @treturn function
function Request:reader(size, timeout)
  local sock = self.socket
  size = size or PIECE
  return function()
    local piece, err, extra = readbody(sock, self, timeout, size)
    if piece then return piece end
    if piece == nil then
      if err == "badrequest" or err == "timeout" then
        self:_fail(err == "timeout" and 408 or extra)
      end
      return nil, err, extra
    end
    return nil
  end
end

--- Response
-- @type Response

--- Send the file at `path` as the body (Content-Length from its size),
-- read and written in 64 KiB pieces so a large file never sits in memory.
-- The sendfile(2) system call is not used: the bytes go through the
-- socket's own buffer (and so its limits, backpressure and, with TLS, its
-- encryption).
-- @function Response:sendfile
-- @tparam string|file path a path, or an open file (closed here)
-- @treturn[1] Response
-- @treturn[2] nil
-- @treturn[2] string "notfound" or a write failure
function Response:sendfile(path)
  local f, err = path, nil
  if type(path) == "string" then f, err = io.open(path, "rb") end
  if not f then return nil, "notfound", err end
  local size = f:seek("end")
  f:seek("set")
  if size <= PIECE then
    local data = f:read("a") or ""
    f:close()
    return self:send(data)
  end
  self:header("Content-Length", size)
  while true do
    local data = f:read(PIECE)
    if not data then break end
    local ok, werr, extra = self:write(data)
    if not ok then
      f:close()
      return nil, werr, extra
    end
  end
  f:close()
  return self
end

-- The to-be-closed guard of a connection's task. When the handler raises,
-- or its task is ended, the Response it was answering still answers: its
-- __close sends 500 if nothing was sent yet, and the connection closes.
-- One guard per task, not a <close> per request: a request then costs a
-- field store instead of a metamethod call.
local Guard = {
  __close = function(guard)
    local res = guard.res
    if res then getmetatable(res).__close(res) end
  end,
}

-- Skip what the handler left of a (small) request body, so the connection
-- can carry the next request.
local function discard(sock, req)
  local piece
  repeat piece = readbody(sock, req, nil, PIECE) until not piece
  return piece == false
end

--- Functions
-- @section Functions

--- Serve HTTP/1.1: `berth.serve` with a connection handler that reads
-- requests and calls `handler(req, res)` for each.
-- @function serve
-- @tparam table opts `handler` (a function, or a module name for hot
-- reload: the module's `handle(req, res, state)`), berth.http's limits
-- `max_line` (8192: the request line; 414 past it), `max_head` (65536: the
-- request line and header lines; 431), `max_headers` (100 lines; 431),
-- `max_header_line` (8192: one header line; 431), `max_body` (1 MiB:
-- `req:body()`; 413), `date` (true: send a Date header), `require_host`
-- (true: an HTTP/1.1 request without Host is 400), `park_after` (0.5:
-- seconds a quiet kept-alive connection keeps its task; 0: none; false:
-- always keeps it); and every option of
-- `berth.serve` (`host`, `port`, `tls`, limits such as `idle_timeout`…).
-- @treturn[1] ServerSocket
-- @treturn[2] nil
-- @treturn[2] string error code
-- @treturn[2] integer errno
function http.serve(opts)
  core.options.check("http.serve", opts, 2)
  local kind = type(opts.handler)
  if kind ~= "function" and kind ~= "string" then
    error("http.serve: handler must be a function or a handler module's name (got nil)", 2)
  end
  local conf = C.config(opts)
  local handler = opts.handler
  if kind == "string" then handler = reload.handler(handler, 2, 2) end
  -- One function per server, not a closure per connection: a kept-alive
  -- connection that stays quiet for park_after seconds gives its task back
  -- (sock:onreadable) and holds nothing but its socket; the next request's
  -- bytes start this function again as a new task. A busy connection keeps
  -- its task (a task per request would cost a fifth of the throughput), and
  -- pipelined requests (already buffered) are served in the same task.
  local park_after = opts.park_after
  if park_after == nil then park_after = PARK_AFTER end
  if park_after == math.huge then park_after = false end
  local connection
  function connection(sock)
    local wait -- the wait for the next request: nil is the socket's own
    local guard <close> = setmetatable({ res = false }, Guard)
    while true do
      local req, res = readrequest(sock, conf, wait)
      if not req then
        -- quiet for park_after: park; bytes of a request on the way: wait on
        if res ~= "timeout" or not wait then return end -- closed, timed out, 4xx/5xx
        local _, buffered = sock:pending()
        if buffered == 0 then return sock:onreadable(connection) end
        wait = nil
      else
        guard.res = res
        handler(req, res)
        local more, complete, buffered = res:finish()
        guard.res = false -- not nil: the field keeps its slot, a cheap store
        if not more then return end
        if not complete then
          if not discard(sock, req) then return end
          buffered = select(2, sock:pending())
        end
        if buffered > 0 then
          wait = nil
        elseif park_after == 0 then
          return sock:onreadable(connection)
        else
          wait = park_after or nil
        end
      end
    end
  end
  local t = {}
  for k, v in pairs(opts) do
    if SERVE_KEYS[k] then t[k] = v end
  end
  t.handler = connection
  return berth.serve(t)
end

--- A handler serving the files under `dir`: GET and HEAD (405 otherwise),
-- `index.html` for a directory, 404 when missing. The path is
-- percent-decoded and refused (400) if it holds a NUL or a ".." segment,
-- so nothing outside `dir` is reachable through the URL (symbolic links
-- inside `dir` are followed).
-- @function static
-- @tparam string dir
-- @treturn function handler(req, res)
local TYPES = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  txt = "text/plain; charset=utf-8", css = "text/css", js = "text/javascript",
  json = "application/json", svg = "image/svg+xml", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", ico = "image/x-icon",
  wasm = "application/wasm", pdf = "application/pdf", xml = "application/xml",
}

local function plain(res, status, text)
  return res:status(status):header("Content-Type", "text/plain"):send(text .. "\n")
end

function http.static(dir)
  if type(dir) ~= "string" then error("berth.http.static: a directory expected", 2) end
  dir = dir:gsub("/+$", "")
  return function(req, res)
    local method = req.method
    if method ~= "GET" and method ~= "HEAD" then
      res:header("Allow", "GET, HEAD")
      return plain(res, 405, "Method Not Allowed")
    end
    local path = C.decode(req.path)
    if not path or path:sub(1, 1) ~= "/" or path:find("\0", 1, true) then
      return plain(res, 400, "Bad Request")
    end
    for seg in path:gmatch("[^/]+") do
      if seg == ".." then return plain(res, 400, "Bad Request") end
    end
    if path:sub(-1) == "/" then path = path .. "index.html" end
    local f = io.open(dir .. path, "rb")
    if not f then return plain(res, 404, "Not Found") end
    local ok, _, code = f:read(0)
    if ok == nil and code == 21 then -- EISDIR: a directory without its slash
      f:close()
      res:header("Location", req.path .. "/")
      return plain(res, 301, "Moved Permanently")
    end
    local ext = path:match("%.([%w]+)$")
    res:header("Content-Type", TYPES[ext and ext:lower()] or "application/octet-stream")
    return res:sendfile(f)
  end
end

-- ------------------------------------------------------------------------
-- The client
-- ------------------------------------------------------------------------

local pool = {}       -- "host:port" -> list of idle sockets
local POOL_MAX = 8    -- idle connections kept per host

local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  return scheme, host, port, path, authority
end

local function take_idle(key)
  local list = pool[key]
  local sock = list and table.remove(list)
  return sock
end

local function give_back(key, sock)
  local list = pool[key] or {}
  pool[key] = list
  if #list >= POOL_MAX then return sock:close() end
  list[#list + 1] = sock
end

-- The response head: status, reason, version, headers (lower-case names,
-- repeated values joined with ", ").
local function read_head(sock, timeout)
  while true do
    local head, err, extra = sock:readuntil("\r\n\r\n", timeout)
    if not head then return nil, err, extra end
    local minor, status, reason = head:match("^HTTP/1%.([01]) (%d%d%d) ?([^\r\n]*)")
    if not minor then return nil, "badresponse" end
    status = tonumber(status)
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]-)[ \t]*%f[\r\0]") do
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
    if status >= 200 or status == 101 then
      return { status = status, reason = reason, headers = headers,
               version = "1." .. minor }
    end -- 1xx: an interim response, the real one follows
  end
end

local function read_body(sock, res, method, timeout)
  local h = res.headers
  if method == "HEAD" or res.status == 204 or res.status == 304 or res.status == 101 then
    return ""
  end
  if h["transfer-encoding"] then
    if not h["transfer-encoding"]:lower():find("chunked%s*$") then return nil, "badresponse" end
    local dec, parts = C.body(nil, true), {}
    while true do
      local piece, err, extra = readbody(sock, dec, timeout, PIECE)
      if piece == false then return table.concat(parts) end
      if not piece then return nil, err, extra end
      parts[#parts + 1] = piece
    end
  end
  local len = h["content-length"]
  if len then
    len = math.tointeger(tonumber(len))
    if not len or len < 0 then return nil, "badresponse" end
    return sock:read(len, timeout)
  end
  res.close = true
  return sock:read("a", timeout) -- to the end of the connection
end

local function exchange(sock, req, timeout)
  local ok, err, extra = sock:write(req.head, req.body)
  if not ok then return nil, err, extra end
  local res
  res, err, extra = read_head(sock, timeout)
  if not res then return nil, err, extra end
  local body
  body, err, extra = read_body(sock, res, req.method, timeout)
  if not body then return nil, err, extra end
  res.body = body
  local conn = (res.headers.connection or ""):lower()
  res.close = res.close or conn:find("close", 1, true) ~= nil or
    (res.version == "1.0" and not conn:find("keep-alive", 1, true))
  return res
end

--- Close the client's idle kept-alive connections (all hosts).
-- @function closeidle
function http.closeidle()
  for key, list in pairs(pool) do
    for _, sock in ipairs(list) do sock:close() end
    pool[key] = nil
  end
end

--- An HTTP/1.1 request (task only). Connections are kept alive and reused,
-- at most 8 idle ones per host; a request on a reused connection that the
-- server had closed meanwhile is sent again on a new one.
-- @function request
-- @tparam table opts `url` ("http://host[:port]/path?query"), `method`
-- ("GET", or "POST" with a body), `headers` (a table name -> value),
-- `body` (a string), `timeout` (seconds per step), `tls` (options for an
-- https:// URL, when berth has TLS)
-- @treturn[1] table `status`, `reason`, `headers` (lower-case names),
-- `body`, `version`
-- @treturn[2] nil
-- @treturn[2] string "badurl", "unsupported", "badresponse", or a socket
-- error code
function http.request(opts)
  if type(opts) == "string" then opts = { url = opts } end
  local scheme, host, port, path, authority = parse_url(opts.url or "")
  if not scheme then return nil, "badurl" end
  if scheme ~= "http" and not (scheme == "https" and core.tls) then
    return nil, "unsupported"
  end
  local body = opts.body
  local method = (opts.method or (body and "POST" or "GET")):upper()
  local lines = { ("%s %s HTTP/1.1\r\n"):format(method, path) }
  local has = {}
  for k, v in pairs(opts.headers or {}) do
    has[k:lower()] = true
    lines[#lines + 1] = ("%s: %s\r\n"):format(k, v)
  end
  if not has.host then lines[#lines + 1] = "Host: " .. authority .. "\r\n" end
  if body and not has["content-length"] then
    lines[#lines + 1] = ("Content-Length: %d\r\n"):format(#body)
  end
  lines[#lines + 1] = "\r\n"
  local req = { head = table.concat(lines), body = body or "", method = method }
  local key = scheme .. "://" .. host .. ":" .. port
  local timeout = opts.timeout
  local sock = take_idle(key)
  while sock do -- a pooled connection the server may have closed since
    local res, err, extra = exchange(sock, req, timeout)
    if res then
      if res.close then sock:close() else give_back(key, sock) end
      return res
    end
    sock:close()
    if err ~= "closed" and err ~= "reset" then return nil, err, extra end
    sock = take_idle(key)
  end
  local err, extra
  sock, err, extra = berth.connect(host, port,
    { timeout = timeout, tls = scheme == "https" and (opts.tls or true) or nil })
  if not sock then return nil, err, extra end
  local res
  res, err, extra = exchange(sock, req, timeout)
  if not res or res.close then sock:close() else give_back(key, sock) end
  return res, err, extra
end

return http

-- HTTP/1.1 server: keep-alive, pipelining (answers in request order), HEAD,
-- request bodies by Content-Length, and the limits a public server needs.
--   GET /        -> 200 "Hello, World!" (text/plain)
--   POST /echo   -> 200 with the request body
--   anything else-> 404
-- PORT (default 8080, 0 for any free port) and HOST (default 127.0.0.1).
local berth = require "berth"

local MAX_HEADER_LINE = 8 * 1024    -- one header line; longer -> 431
local MAX_HEADERS = 64 * 1024       -- the whole header block; larger -> 431
local MAX_BODY = 1024 * 1024        -- request body; larger -> 413
local IDLE_TIMEOUT = 60             -- seconds a kept-alive connection may idle

local REASONS = {
  [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
  [405] = "Method Not Allowed", [413] = "Content Too Large",
  [431] = "Request Header Fields Too Large", [501] = "Not Implemented",
}

local function respond(sock, status, body, opts)
  opts = opts or {}
  local close = opts.close
  return sock:write("HTTP/1.1 ", status, " ", REASONS[status], "\r\n",
    "Content-Type: ", opts.type or "text/plain", "\r\n",
    "Content-Length: ", #body, "\r\n",
    close and "Connection: close\r\n" or "",
    "\r\n", opts.head and "" or body)
end

-- Parse a header block (request line + headers, without the final blank
-- line). Returns the request, or nil and the status to answer with.
local function parse(block)
  local method, target, minor, rest = block:match("^(%u+) (%S+) HTTP/1%.([01])(.*)$")
  if not method then return nil, 400 end
  local headers = {}
  for line in rest:gmatch("\r\n([^\r\n]*)") do
    if #line > MAX_HEADER_LINE then return nil, 431 end
    local name, value = line:match("^([%w!#$%%&'*+.^_`|~-]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, 400 end
    headers[name:lower()] = value
  end
  return { method = method, target = target, minor = minor, headers = headers }
end

local function wants_close(req)
  local conn = req.headers.connection
  conn = conn and conn:lower()
  if req.minor == "0" then return conn ~= "keep-alive" end
  return conn == "close"
end

local function handle(sock, req)
  if req.target == "/" and (req.method == "GET" or req.method == "HEAD") then
    return 200, "Hello, World!"
  elseif req.target == "/echo" and req.method == "POST" then
    return 200, req.body
  end
  return 404, "Not Found"
end

local function serve_connection(sock)
  sock:setoption("maxline", MAX_HEADERS)
  sock:settimeout(IDLE_TIMEOUT)
  while true do
    local block, err = sock:readuntil("\r\n\r\n")
    if not block then
      if err == "toolarge" then respond(sock, 431, "header block too large\n", { close = true }) end
      return -- closed, reset or timeout: nothing to answer
    end
    local req, status = parse(block)
    if not req then
      return respond(sock, status, REASONS[status] .. "\n", { close = true })
    end
    if req.headers["transfer-encoding"] then
      return respond(sock, 501, "chunked request bodies are not supported\n", { close = true })
    end
    local length = req.headers["content-length"]
    if length then
      length = length:match("^%d+$") and tonumber(length)
      if not length then return respond(sock, 400, "bad Content-Length\n", { close = true }) end
      if length > MAX_BODY then return respond(sock, 413, "body too large\n", { close = true }) end
      req.body = sock:read(length)
      if not req.body then return end
    end
    local close = wants_close(req)
    local code, body = handle(sock, req)
    if not respond(sock, code, body, { close = close, head = req.method == "HEAD" }) or close then
      return sock:flush()
    end
  end
end

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 8080),
  handler = serve_connection,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

-- HTTP/1.1 server: keep-alive, pipelining (answers in request order), HEAD,
-- request bodies by Content-Length, and the limits a public server needs.
--   GET /        -> 200 "Hello, World!" (text/plain)
--   POST /echo   -> 200 with the request body
--   anything else-> 404
-- PORT (default 8080, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
local berth = require "berth"

local MAX_HEADER_LINE = 8 * 1024    -- one header line; longer -> 431
local MAX_HEADERS = 64 * 1024       -- the whole header block; larger -> 431
local MAX_BODY = 1024 * 1024        -- request body; larger -> 413
local IDLE_TIMEOUT = 60             -- seconds a kept-alive connection may idle

local REASONS = {
  [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
  [413] = "Content Too Large", [431] = "Request Header Fields Too Large",
  [501] = "Not Implemented",
}

-- A whole response as one string, for a connection kept alive or not, to
-- a HEAD request (no body) or not.
local function response(status, body, close, head)
  return ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s")
    :format(status, REASONS[status], #body,
      close and "Connection: close\r\n" or "", head and "" or body)
end

-- Fixed responses are built once, in all four variants: per request only
-- the choice is made.
local function fixed(status, body)
  return { [false] = { [false] = response(status, body, false, false),
                       [true] = response(status, body, false, true) },
           [true] = { [false] = response(status, body, true, false),
                      [true] = response(status, body, true, true) } }
end
local HELLO = fixed(200, "Hello, World!")
local NOT_FOUND = fixed(404, "Not Found\n")

-- One header's value from a header block, by its lower-case name. Header
-- names are case-insensitive, so the block is searched lower-cased.
local function header(lower_block, block, name)
  local at = lower_block:find("\r\n" .. name .. ":", 1, true)
  if not at then return nil end
  local from = at + #name + 3
  local to = (block:find("\r\n", from, true) or #block + 1) - 1
  return block:sub(from, to):match("^[ \t]*(.-)[ \t]*$")
end

-- Parse a header block (request line + headers, without the blank line).
-- Returns method, target, keep_alive, content_length; or nil and a status.
local function parse(block)
  local method, target, minor = block:match("^(%u+) (%S+) HTTP/1%.([01])")
  if not method then return nil, 400 end
  if #block > MAX_HEADER_LINE then -- only then can one line be too long
    for line in block:gmatch("[^\r\n]+") do
      if #line > MAX_HEADER_LINE then return nil, 431 end
    end
  end
  if not block:find("\r\n", 1, true) then
    return method, target, minor == "1", nil -- no headers at all
  end
  local lower = block:lower()
  if header(lower, block, "transfer-encoding") then return nil, 501 end
  local conn = header(lower, lower, "connection")
  local keep = (minor == "1" and conn ~= "close") or conn == "keep-alive"
  local length = header(lower, block, "content-length")
  if length then
    length = length:match("^%d+$") and tonumber(length)
    if not length then return nil, 400 end
    if length > MAX_BODY then return nil, 413 end
  end
  return method, target, keep, length
end

local function serve_connection(sock)
  sock:setoption("maxline", MAX_HEADERS)
  sock:settimeout(IDLE_TIMEOUT)
  while true do
    local block, err = sock:readuntil("\r\n\r\n")
    if not block then
      if err == "toolarge" then sock:write(response(431, "header block too large\n", true)) end
      return sock:flush() -- closed, reset or timeout: nothing more to answer
    end
    local method, target, keep, length = parse(block)
    if not method then
      sock:write(response(target, REASONS[target] .. "\n", true))
      return sock:flush()
    end
    local body = length and sock:read(length)
    if length and not body then return end
    local close, head = not keep, method == "HEAD"
    local ok
    if target == "/" and (method == "GET" or head) then
      ok = sock:write(HELLO[close][head])
    elseif target == "/echo" and method == "POST" then
      ok = sock:write(response(200, body or "", close, false))
    else
      ok = sock:write(NOT_FOUND[close][head])
    end
    if not ok or not keep then return sock:flush() end
  end
end

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 8080),
  tls = berth.tls.fromenv({ "http/1.1" }), -- TLS_CERT, TLS_KEY: serve TLS
  handler = serve_connection,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

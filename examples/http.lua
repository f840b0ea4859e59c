-- HTTP/1.1 server on berth.http: keep-alive, pipelining (answers in request
-- order), HEAD, request bodies by Content-Length or chunked, Expect:
-- 100-continue, and the limits a public server needs (400, 413, 414, 431,
-- 501, 505 are answered by berth.http itself).
--   GET /        -> 200 "Hello, World!" (text/plain)
--   POST /echo   -> 200 with the request body (at most 1 MiB, else 413)
--   GET /chunked -> 200 "Hello, World!" in chunks (Transfer-Encoding: chunked)
--   GET /ip      -> 200 "ADDRESS:PORT" of the client (the original one
--                   behind a balancer that sends the PROXY protocol)
--   GET /health  -> 200 "serving", or 503 "draining" once a graceful stop
--                   or rolling reload starts (berth.health, --drain-delay)
--   anything else-> 404
-- PORT (default 8080, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv);
-- with PROXY_PROTOCOL=1 it reads a PROXY protocol header (v1 or v2) first.
local berth = require "berth"
local http = require "berth.http"

local function text(res, status, body)
  return res:status(status):header("Content-Type", "text/plain"):send(body)
end

local function handler(req, res)
  local method, path = req.method, req.path
  if path == "/" and (method == "GET" or method == "HEAD") then
    return text(res, 200, "Hello, World!")
  elseif path == "/echo" and method == "POST" then
    local body = req:body()
    if not body then return end -- too large (413) or broken: berth.http answers
    return text(res, 200, body)
  elseif path == "/ip" and (method == "GET" or method == "HEAD") then
    local host, port = req.socket:peer()
    if not port then return text(res, 200, tostring(host)) end -- a unix socket
    return text(res, 200, (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port))
  elseif path == "/health" then
    return berth.health.handler(req, res)
  elseif path == "/chunked" and (method == "GET" or method == "HEAD") then
    res:header("Content-Type", "text/plain")
    for _, piece in ipairs { "Hello", ", ", "World!" } do res:write(piece) end
    return
  end
  return text(res, 404, "Not Found\n")
end

local server = assert(http.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 8080),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  tls = berth.tls.fromenv({ "http/1.1" }), -- TLS_CERT, TLS_KEY: serve TLS
  handler = handler,
  -- The responses stay byte for byte those of the hand-written server this
  -- example replaced (spec/http_spec.lua compares them): no Date header,
  -- and HTTP/1.1 requests without Host are served. berth.http's defaults
  -- send Date and answer a missing Host with 400 (RFC 9110 §6.6.1, RFC
  -- 9112 §3.2).
  date = false,
  require_host = false,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

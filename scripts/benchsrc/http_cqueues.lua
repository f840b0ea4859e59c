-- http_cqueues.lua - lua-cqueues HTTP/1.1 hello server for the berth
-- benchmarks: the "Lua coroutines on an event loop" point of comparison for
-- the HTTP workloads.
--
-- Run with lua5.4. Listens on 127.0.0.1:$PORT ($PORT unset or 0 =
-- ephemeral), prints "listening on 127.0.0.1:PORT" when ready, and answers
-- every request (anything up to "\r\n\r\n"; pipelined requests and requests
-- split across reads included) with 200, Content-Type: text/plain,
-- Content-Length: 13, "Hello, World!" on a keep-alive connection.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
                 "Content-Length: 13\r\n\r\nHello, World!"
local CHUNK = 64 * 1024

-- count "\r\n\r\n" in tail..data; returns the count and the new tail (the
-- bytes after the last match that could begin the next one)
local function count_requests(tail, data)
  local s = tail .. data
  local n, from = 0, 1
  while true do
    local _, e = s:find("\r\n\r\n", from, true)
    if not e then break end
    n, from = n + 1, e + 1
  end
  return n, s:sub(math.max(from, #s - 2))
end

local function serve(con)
  con:setmode("bn", "bn")
  con:onerror(function(_, _, why) return why end) -- return errors, don't throw
  local tail = ""
  while true do
    local data = con:xread(-CHUNK)
    if not data then break end
    local n
    n, tail = count_requests(tail, data)
    if n > 0 and not con:xwrite(n == 1 and RESPONSE or RESPONSE:rep(n), "n") then break end
  end
  con:close()
end

local server = socket.listen{host = "127.0.0.1", port = tonumber(os.getenv("PORT") or "0") or 0,
                             reuseaddr = true, nodelay = true, backlog = 4096}
assert(server:listen())
local _, _, port = server:localname()
print(("listening on 127.0.0.1:%d"):format(port))
io.stdout:flush()

-- accept errors (say EMFILE) are returned, not thrown, and retried shortly
server:onerror(function(_, _, why) return why end)
local loop = cqueues.new()
loop:wrap(function()
  while true do
    local con = server:accept{nodelay = true}
    if con then loop:wrap(serve, con) else cqueues.sleep(0.01) end
  end
end)
assert(loop:loop())

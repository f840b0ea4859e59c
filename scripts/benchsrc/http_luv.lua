-- http_luv.lua - lua-luv (libuv) HTTP/1.1 hello server for the berth
-- benchmarks: the "Lua on libuv with callbacks" point of comparison.
--
-- Run with lua5.4. Listens on 127.0.0.1:$PORT ($PORT unset or 0 =
-- ephemeral), prints "listening on 127.0.0.1:PORT" when ready, and answers
-- every request (anything up to "\r\n\r\n"; pipelined requests and requests
-- split across reads included) with 200, Content-Type: text/plain,
-- Content-Length: 13, "Hello, World!" on a keep-alive connection.
local uv = require "luv"

local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
                 "Content-Length: 13\r\n\r\nHello, World!"
local HIGH_WATER = 1024 * 1024

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

local function close(client)
  if not client:is_closing() then client:close() end
end

local function on_client(client)
  local tail, resume = ""
  local function on_data(err, data)
    if err or not data then return close(client) end
    local n
    n, tail = count_requests(tail, data)
    if n == 0 then return end
    local out = n == 1 and RESPONSE or RESPONSE:rep(n)
    if client:get_write_queue_size() + #out <= HIGH_WATER then
      client:write(out)
    else
      client:read_stop()
      client:write(out, resume)
    end
  end
  resume = function(err)
    if err then return close(client) end
    if not client:is_closing() then client:read_start(on_data) end
  end
  client:nodelay(true)
  client:read_start(on_data)
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(os.getenv("PORT") or "0") or 0))
assert(server:listen(4096, function(err)
  if err then return end
  local client = uv.new_tcp()
  if server:accept(client) then on_client(client) else close(client) end
end))
print(("listening on 127.0.0.1:%d"):format(server:getsockname().port))
io.stdout:flush()
uv.run()

-- echo_luv.lua - lua-luv (libuv) echo server for the berth benchmarks: the
-- "Lua on libuv with callbacks" point of comparison for the echo workloads.
--
-- Run with lua5.4. Listens on 127.0.0.1:$PORT ($PORT unset or 0 =
-- ephemeral), prints "listening on 127.0.0.1:PORT" when ready and echoes
-- every byte back. Reading pauses while more than HIGH_WATER bytes wait to
-- be written and resumes when that write has completed.
local uv = require "luv"

local HIGH_WATER = 1024 * 1024

local function close(client)
  if not client:is_closing() then client:close() end
end

local function on_client(client)
  local resume
  local function on_data(err, data)
    if err or not data then return close(client) end
    if client:get_write_queue_size() + #data <= HIGH_WATER then
      client:write(data)
    else
      client:read_stop()
      client:write(data, resume)
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

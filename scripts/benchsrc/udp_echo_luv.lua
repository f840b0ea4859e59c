-- udp_echo_luv.lua - lua-luv (libuv) UDP echo server for the berth
-- benchmarks: the "Lua on libuv with callbacks" point of comparison for the
-- UDP workloads.
--
-- Run with lua5.4. Binds 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral),
-- prints "listening on 127.0.0.1:PORT" when ready and sends every datagram
-- back to its sender with try_send: a send that cannot go out at once (full
-- buffer) loses that echo only, as a C server's sendto would.
local uv = require "luv"

local udp = uv.new_udp()
assert(udp:bind("127.0.0.1", tonumber(os.getenv("PORT") or "0") or 0))
assert(udp:recv_start(function(err, data, addr)
  if err or not data or not addr then return end
  udp:try_send(data, addr.ip, addr.port)
end))
print(("listening on 127.0.0.1:%d"):format(udp:getsockname().port))
io.stdout:flush()
uv.run()

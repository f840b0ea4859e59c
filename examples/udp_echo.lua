-- UDP echo server: every datagram goes back to its sender.
-- PORT (default 7000, 0 for any free port) and HOST (default 127.0.0.1).
local berth = require "berth"

local udp = assert(berth.udp{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7000),
})

-- A plain callback per datagram, no task: what it returns is the reply.
-- Datagrams arrive in recvmmsg batches, and the replies to a batch leave
-- together in one sendmmsg.
udp:on("packet", function(data) return data end)

print(("listening on %s:%d"):format(udp:address(), udp:port()))
io.stdout:flush()

-- Line-based chat: each line a client sends goes to every other client.
-- PORT (default 7001, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
--
-- A slow reader must neither stall the others nor grow memory without
-- bound. A line is handed to a client only while its write buffer stays
-- within the high watermark, so write() never has to wait for it; a client
-- that falls further behind than that is disconnected.
local berth = require "berth"

local BACKLOG = 64 * 1024 -- bytes one client may lag behind (the default high watermark)
local clients = {}

local function broadcast(from, line)
  for sock in pairs(clients) do
    if sock ~= from then
      if sock:pending() + #line > BACKLOG then
        berth.log.warn("disconnecting a client that does not read")
        clients[sock] = nil
        sock:close()
      else
        sock:write(line)
      end
    end
  end
end

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7001),
  tls = berth.tls.fromenv(), -- TLS_CERT, TLS_KEY: serve TLS
  handler = function(sock)
    clients[sock] = true
    sock:write("welcome\n")
    for line in sock:lines("L") do broadcast(sock, line) end
    clients[sock] = nil
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

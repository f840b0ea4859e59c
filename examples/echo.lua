-- Echo server: every byte a client sends comes back.
-- PORT (default 7000, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
local berth = require "berth"

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7000),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  tls = berth.tls.fromenv(), -- TLS_CERT, TLS_KEY: serve TLS
  handler = function(sock)
    while true do
      local data = sock:readsome()
      if not data or not sock:write(data) then return end
    end
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

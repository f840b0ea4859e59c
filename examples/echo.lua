-- Echo server: every byte a client sends comes back.
-- PORT (default 7000, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
-- The bytes never become Lua strings: sock:readinto receives into a Buffer
-- held in C and sock:write(buf) sends from it (and empties it).
local berth = require "berth"

local function echo(sock)
  local buf <close> = berth.buffer() -- its memory goes with the handler
  while sock:readinto(buf) do
    if not sock:write(buf) then return end
  end
end

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7000),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  tls = berth.tls.fromenv(), -- TLS_CERT, TLS_KEY: serve TLS
  -- Until its first bytes a connection holds no task (sock:onreadable):
  -- a client that connects and stays silent costs only its socket.
  handler = function(sock) sock:onreadable(echo) end,
})
print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

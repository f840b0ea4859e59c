-- TCP proxy: every connection is relayed to UPSTREAM=host:port.
-- Full duplex (one task per direction), backpressure both ways (a write
-- waits while the slow side's buffer is full, so the other side is no
-- longer read), half-close passed through, and an upstream that refuses or
-- resets ends the client's connection at once.
-- PORT (default 7002, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
local berth = require "berth"

local upstream_host, upstream_port = (os.getenv("UPSTREAM") or ""):match("^%[?(.-)%]?:(%d+)$")
if not upstream_host then
  io.stderr:write("proxy.lua: set UPSTREAM=host:port\n")
  os.exit(2)
end
upstream_port = tonumber(upstream_port)
-- UPSTREAM_TLS=1: to the upstream over TLS, verified against UPSTREAM_CA
-- (a PEM file) or the system's CAs, for the name in UPSTREAM.
local upstream_tls = os.getenv("UPSTREAM_TLS") == "1" and { ca = os.getenv("UPSTREAM_CA") } or nil
-- UPSTREAM_PROXY_PROTOCOL=1|2: a PROXY protocol header first, passing the
-- client's address on (the original one when PROXY_PROTOCOL=1 here too).
local upstream_pp = tonumber(os.getenv("UPSTREAM_PROXY_PROTOCOL") or "")

-- Copy from -> to until EOF, then pass the EOF on (half-close). A reset
-- or any other failure on either side ends both connections.
local function pump(from, to)
  while true do
    local data, err = from:readsome()
    if not data then
      if err == "closed" then return to:shutdown("w") end
      break
    end
    if not to:write(data) then break end
  end
  from:close()
  to:close()
end

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7002),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  tls = berth.tls.fromenv(), -- TLS_CERT, TLS_KEY: serve TLS
  handler = function(client)
    local upstream <close>, err = berth.connect(upstream_host, upstream_port,
      { timeout = 5, tls = upstream_tls, proxy_protocol = upstream_pp, source = client })
    if not upstream then
      berth.log.warn("upstream %s:%d: %s", upstream_host, upstream_port, err)
      return -- the client is closed as the handler ends
    end
    local done = berth.cond()
    local back_done = false
    berth.spawn(function()
      pump(upstream, client)
      back_done = true
      done:signal()
    end)
    pump(client, upstream)
    while not back_done do done:wait() end
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

-- TCP proxy: every connection is relayed to UPSTREAM=host:port.
-- Full duplex (one relay task per direction), backpressure both ways (a write
-- waits while the slow side's buffer is full, so the other side is no
-- longer read), half-close passed through, and an upstream that refuses or
-- resets ends the client's connection at once. The upstream connection
-- has the host's idle and send timeouts, as the client's has: a side gone
-- quiet for --idle-timeout (a client that half-closed and vanished, an
-- upstream that never answers) is closed, and either side gone ends both.
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

-- Every byte from -> to until EOF, then pass the EOF on (half-close). A
-- reset, a timeout or any other failure on either side ends both
-- connections. relay() moves the bytes in C: between plain sockets with
-- splice(2), so they never become Lua strings (or even enter the process).
local function pump(from, to)
  if from:relay(to) then return to:shutdown("w") end
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
      { timeout = 5, tls = upstream_tls, idle_timeout = true, send_timeout = true,
        proxy_protocol = upstream_pp, source = client })
    if not upstream then
      berth.log.warn("upstream %s:%d: %s", upstream_host, upstream_port, err)
      return -- the client is closed as the handler ends
    end
    -- Either side gone ends both, also once a direction is done and no
    -- task reads that side any more (its timeout closed it): closing the
    -- other side wakes the task parked on it.
    client:on("close", function() upstream:close() end)
    upstream:on("close", function() client:close() end)
    local done = berth.cond()
    local back_done = false
    berth.spawn(function()
      pump(upstream, client)
      back_done = true
      done:signal()
    end)
    pump(client, upstream)
    while not back_done do done:wait() end
    -- Both directions ended: the client's reply is flushed as the
    -- handler returns, so neither close may cut it short.
    client:on("close", nil)
    upstream:on("close", nil)
    upstream:close()
    berth.log.debug("proxy: %s:%s done", client:peer())
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

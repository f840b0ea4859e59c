-- Callback mode on served connections: every byte a client sends comes back
-- in upper case, with no task per connection once it is set up.
-- PORT (default 7005, 0 for any free port) and HOST (default 127.0.0.1).
--
-- The recipe: the connection handler registers on("data") and on("close")
-- and returns. A socket with data or close callbacks stays open after its
-- handler returns, until it is closed or the peer ends it. Callbacks are
-- plain protected calls on the loop: they cannot wait, so write() buffers,
-- and backpressure is by hand: stop reading (on("data", nil)) when the
-- write buffer is too full, start again on("drain"). An error in a
-- callback ends that connection, as an error in a handler does.
local berth = require "berth"

local PAUSE_AT = 256 * 1024 -- bytes queued for a client that reads slowly

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7005),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  handler = function(sock)
    local host, port = sock:peer()
    local function ondata(chunk)
      sock:write(chunk:upper())
      if sock:pending() > PAUSE_AT then sock:on("data", nil) end
    end
    sock:on("data", ondata)
    sock:on("drain", function() sock:on("data", ondata) end)
    sock:on("close", function(code)
      -- peer() still answers here: the address was kept at accept
      berth.log.info("%s:%d left (%s)", host, port, code)
    end)
    -- returning leaves the connection to its callbacks
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

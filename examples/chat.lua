-- Line chat: each line a client sends goes to every other client, on
-- every worker of `berth --workers N` (or in a single process).
-- PORT (default 7001, 0 for any free port) and HOST (default 127.0.0.1).
-- With TLS_CERT and TLS_KEY (PEM files) it serves TLS instead (berth.tls.fromenv).
--
--   /who            "you are <id> on worker <n>": the connection's id
--   /msg ID text    a private line to connection ID, on whichever worker
--   /list           the ids of everyone connected, on every worker
--
-- Across workers: a line is published on the bus (berth.bus); every
-- worker, the sender's own included, hands it to its own clients. A
-- private line goes to one connection by its id (berth.bus.send_to) and
-- arrives through that socket's inbox (on("message")). Who is connected
-- is kept in a shared dictionary (berth.shared), with a TTL that each
-- client's handler renews, so a worker that crashed does not leave its
-- clients listed for long.
--
-- A slow reader must neither stall the others nor grow memory without
-- bound, and a client that reads normally must never be dropped. Bytes
-- queued for a client include what the kernel has simply not taken yet
-- (its socket buffers grow and shrink with autotuning), so the bound is
-- large: a client is dropped only when more than BEHIND bytes wait for it,
-- or when what waits for it has made no progress for STALLED seconds (the
-- server's send_timeout, enforced by berth). write() from the bus callback
-- never waits: it queues, and the bound keeps the queue finite.
local berth = require "berth"

local BEHIND = 4 * 1024 * 1024 -- bytes queued for one client before it is dropped
local STALLED = 10              -- seconds of output without progress (send_timeout)
local LISTED = 60         -- seconds a client stays listed without a renewal
local clients = {}        -- this worker's connections
local users = berth.shared("chat.users", { size = 1 << 20 })
-- Room for bursts in this worker's bus mailbox: a handler publishes every
-- line a client pipelined in one go (the default 1 MiB holds only 64 lines
-- of 16 KiB; past it lines would be dropped for this worker).
berth.bus.configure { queue = 8 * 1024 * 1024 }
local worker = berth.worker()

-- Give `line` to `sock` unless it lags too far behind.
local function give(sock, line)
  if sock:pending() + #line > BEHIND then
    berth.log.warn("disconnecting a client that does not read")
    clients[sock] = nil
    sock:close()
  else
    sock:write(line)
  end
end

-- A line published by connection `from`: to our clients but the sender.
berth.bus.subscribe("chat", function(msg)
  local from, line = msg:match("^(%d+) (.*)$")
  from = math.tointeger(tonumber(from))
  for sock in pairs(clients) do
    if sock:id() ~= from then give(sock, line) end
  end
end)

local function command(sock, id, cmd, rest)
  if cmd == "who" then
    sock:write(("you are %d on worker %d\n"):format(id, worker))
  elseif cmd == "msg" then
    local to, text = rest:match("^(%d+)%s+(.*)$")
    local ok, err = berth.bus.send_to(math.tointeger(tonumber(to or "")) or 0,
      "[private] " .. (text or "") .. "\n")
    if not ok then sock:write("no such user (", err, ")\n") end
  elseif cmd == "list" then
    local ids = users:keys(100)
    table.sort(ids)
    sock:write(table.concat(ids, " "), "\n")
  else
    sock:write("commands: /who, /msg ID text, /list\n")
  end
end

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7001),
  proxy_protocol = berth.proxy.fromenv(), -- PROXY_PROTOCOL=1: behind a balancer
  tls = berth.tls.fromenv(), -- TLS_CERT, TLS_KEY: serve TLS
  max_output = BEHIND + 64 * 1024, send_timeout = STALLED,
  handler = function(sock)
    local id = sock:id()
    clients[sock] = true
    users:set(tostring(id), worker, LISTED)
    sock:on("message", function(line) give(sock, line) end) -- /msg to us
    sock:write("welcome\n")
    for line in sock:lines("L") do
      users:set(tostring(id), worker, LISTED)
      local cmd, rest = line:match("^/(%a+)%s*(.-)%s*$")
      if cmd then
        command(sock, id, cmd, rest)
      else
        berth.bus.publish("chat", id .. " " .. line)
      end
    end
    clients[sock] = nil
    users:delete(tostring(id))
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

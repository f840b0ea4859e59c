--- The worker side of `berth --workers N`.
-- A worker runs the script like a single process, except that listening
-- sockets come from the master: `listen` asks over the channel (fd 3) and
-- adopts the descriptor the master sends. All workers, and the workers
-- that replace them on a rolling reload, then share one accept queue, so
-- no connection waiting in it is lost when a worker goes away.
-- Once the script has run, the worker tells the master it is ready.
-- TLS session ticket keys come from the master too, so that every worker
-- resumes the sessions of every other.
-- @module berth.worker
local proc = require("berth.core").proc

local worker = {}

local OPTIONS = { "host", "port", "path", "backlog", "reuseaddr", "reuseport" }

-- "listen\nhost=...\nport=..." (values without newlines)
local function request(opts)
  local lines = { "listen" }
  for _, k in ipairs(OPTIONS) do
    local v = opts[k]
    if v ~= nil then
      v = tostring(v)
      if v:find("\n", 1, true) then error("berth.listen: " .. k .. " contains a newline", 3) end
      lines[#lines + 1] = k .. "=" .. v
    end
  end
  return table.concat(lines, "\n")
end

--- Route `berth.listen` of the API table through the master on `channel`.
function worker.start(berth, channel)
  assert(proc.send(channel, "tickets"))
  local keys = proc.recv(channel)
  if type(keys) == "string" and keys:sub(1, 8) == "tickets\n" then
    berth.tls.ticketkeys(keys:sub(9))
  end
  local listen = berth.listen
  function berth.listen(opts)
    if type(opts) ~= "table" then error("berth.listen: expects a table", 2) end
    if opts.fd then return listen(opts) end
    assert(proc.send(channel, request(opts)))
    local reply, fd = proc.recv(channel)
    if reply ~= "ok" or not fd then
      local code, errno = tostring(reply):match("^err\n(%S+)\n?(%d*)")
      return nil, code or "error", tonumber(errno)
    end
    local adopted = {}
    for k, v in pairs(opts) do adopted[k] = v end
    adopted.host, adopted.port, adopted.path, adopted.fd = nil, nil, nil, fd
    return listen(adopted)
  end
  -- Runs at the loop's first iteration: after the script's main chunk.
  berth.spawn(function() proc.send(channel, "ready") end)
end

return worker

--- The worker side of `berth --workers N`.
-- A worker runs the script like a single process, except that listening
-- sockets (and UDP server sockets) come from the master: `listen` asks over the channel (fd 3) and
-- adopts the descriptor the master sends. All workers, and the workers
-- that replace them on a rolling reload, then share one accept queue, so
-- no connection waiting in it is lost when a worker goes away.
-- Once the script has run, the worker tells the master it is ready.
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

-- UDP sockets too: the options the master applies when it binds, and
-- multicast groups as "group|interface,..." (no newline, "|" or "," in
-- an address or an interface name).
local UDP_OPTIONS = { "host", "port", "path", "reuseaddr", "reuseport", "broadcast",
  "recvbuf", "sendbuf" }

local UDP_KNOWN = { multicast = true, max_datagram = true, max_queue = true }
for _, k in ipairs(UDP_OPTIONS) do UDP_KNOWN[k] = true end

local function udp_request(opts)
  local lines = { "udp" }
  for _, k in ipairs(UDP_OPTIONS) do
    local v = opts[k]
    if v ~= nil then
      v = tostring(v)
      if v:find("\n", 1, true) then error("berth.udp: " .. k .. " contains a newline", 3) end
      lines[#lines + 1] = k .. "=" .. v
    end
  end
  local groups = opts.multicast
  if type(groups) == "table" then
    if groups.group then groups = { groups } end
    local list = {}
    for _, g in ipairs(groups) do
      list[#list + 1] = tostring(g.group) .. "|" .. tostring(g.interface or "")
      if list[#list]:find("[\n,]") then error("berth.udp: a bad multicast group", 3) end
    end
    lines[#lines + 1] = "multicast=" .. table.concat(list, ",")
  end
  return table.concat(lines, "\n")
end

-- Send a request, adopt the descriptor of the reply with `adopt`.
local function ask(channel, msg, adopt)
  assert(proc.send(channel, msg))
  local reply, fd = proc.recv(channel)
  if reply ~= "ok" or not fd then
    local code, errno = tostring(reply):match("^err\n(%S+)\n?(%d*)")
    return nil, code or "error", tonumber(errno)
  end
  return adopt(fd)
end

--- Route `berth.listen` of the API table through the master on `channel`.
function worker.start(berth, channel)
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
  -- A UDP server socket is the master's too, one per address: every
  -- worker reads from the same kernel queue, so a datagram waiting there
  -- while a worker is replaced is read by another, not lost. A client
  -- socket (no host, port or path) is the worker's own.
  local udp = berth.udp
  function berth.udp(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("berth.udp: expects a table", 2) end
    if opts.fd or (opts.host == nil and opts.port == nil and opts.path == nil) then
      return udp(opts)
    end
    for k in pairs(opts) do -- raise as a single process does
      if not UDP_KNOWN[k] then error(("udp: unknown option %s"):format(tostring(k)), 2) end
    end
    return ask(channel, udp_request(opts), function(fd)
      return udp { fd = fd, max_datagram = opts.max_datagram, max_queue = opts.max_queue }
    end)
  end
  -- Runs at the loop's first iteration: after the script's main chunk.
  berth.spawn(function() proc.send(channel, "ready") end)
end

return worker

--- Listening sockets a process is handed when it starts: by systemd's
-- socket activation (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), or by the
-- berth process it replaces in a binary upgrade (SIGUSR2, berth.upgrade),
-- which passes them the same way.
--
-- A pool holds what was handed over. A listen (or a UDP server socket)
-- takes from it before binding anything:
--
--   1. `listen{name = "web"}` takes the socket named "web" (systemd's
--      FileDescriptorName=); with no such socket it binds host/port/path
--      if it has them, else fails with nil, "notfound", name;
--   2. otherwise the socket the replaced process bound for the same
--      request: its n-th listen of an address (host:port, or path) is
--      the new process's n-th, so port 0 keeps its port across upgrades;
--   3. otherwise a socket already bound to exactly that address (a
--      systemd ListenStream= without a name): same port (not 0), same
--      host ("*", "0.0.0.0" and "::" are one wildcard; "localhost" is
--      127.0.0.1), or the same unix path.
--
-- What no listen took is closed once the process is ready (after the
-- script in a single process; when every worker reported ready in a
-- master), with a warning. The process then reports "ready" to the one
-- it replaces, if any.
-- @module berth.inherit
local core = require "berth.core"
local channel = require "berth.channel"
local proc = core.proc

local inherit = {}

local WILD = { ["*"] = true, ["0.0.0.0"] = true, ["::"] = true }

--- The address part of a listen request's key: "udp " for UDP, then the
-- unix path or host:port.
function inherit.address(kind, o)
  local addr = o.path or ("%s:%s"):format(o.host or "127.0.0.1", o.port or 0)
  return (kind == "udp" and "udp " or "") .. addr
end

--- The name a socket is handed over under: its listen's `name` if it had
-- one, else "berth." and its key (host:port#n, escaped: a name holds no
-- ':' or control characters).
function inherit.fdname(key, o)
  if o.name then return o.name end
  return "berth." .. key:gsub("[^%w%.%-_#/]", function(c)
    return ("%%%02X"):format(c:byte())
  end)
end

-- Is the inherited socket `info` (proc.sockinfo) bound where `o` asks?
local function same_address(info, o)
  if o.path then return info.host == o.path end
  local port = o.port or 0
  if port == 0 or info.port ~= port then return false end
  local host = o.host or "127.0.0.1"
  if host == "localhost" then host = "127.0.0.1" end
  if WILD[host] then return WILD[info.host] == true end
  return info.host == host
end

local Pool = {}
Pool.__index = Pool

--- The pool of this process: what it was handed at start (read once, then
-- the environment no longer says it, so children inherit nothing).
-- @treturn Pool
function inherit.load()
  local got = proc.inherited()
  local pool = setmetatable({ entries = {}, notify = got.notify }, Pool)
  for _, e in ipairs(got.fds) do
    e.info = proc.sockinfo(e.fd)
    -- Not a socket: the launcher did not pass what LISTEN_FDS says (the
    -- descriptor may be one of ours by now); leave it alone.
    if e.info then pool.entries[#pool.entries + 1] = e end
  end
  return pool
end

--- A pool with nothing in it.
function inherit.empty()
  return setmetatable({ entries = {} }, Pool)
end

--- Whether anything was handed over.
function Pool:empty()
  return #self.entries == 0 and not self.notify
end

-- Entries that can serve a request of `kind` ("tcp" or "udp").
local function usable(e, kind)
  if e.taken or not e.info then return false end
  if kind == "udp" then return e.info.type == "dgram" end
  return e.info.type == "stream" and e.info.listening
end

--- Take the socket for listen (kind "tcp") or udp (kind "udp") options `o`
-- whose request key is `key` (address#n).
-- @treturn[1] integer the descriptor, now the caller's
-- @treturn[2] nil
function Pool:take(kind, o, key)
  local want = inherit.fdname(key, o)
  for _, e in ipairs(self.entries) do
    if usable(e, kind) and e.name == want then
      e.taken = true
      return e.fd
    end
  end
  if o.name then return nil end
  for _, e in ipairs(self.entries) do
    if usable(e, kind) and same_address(e.info, o) then
      e.taken = true
      return e.fd
    end
  end
  return nil
end

--- Close what no listen took (with a warning each), then tell the process
-- this one replaces that it is ready. Safe to call more than once.
-- @tparam table log berth.log
function Pool:ready(log)
  for _, e in ipairs(self.entries) do
    if not e.taken then
      e.taken = true
      local where = e.info and e.info.host and (" (%s:%s)"):format(e.info.host, e.info.port) or ""
      log.warn("inherited socket %q%s: no listen took it; closing it", e.name, where)
      proc.close(e.fd)
    end
  end
  if self.notify then
    local fd = self.notify
    self.notify = nil
    local ok, err = proc.send(fd, "ready", nil, 5)
    if not ok then log.warn("upgrade: cannot report ready: %s", err) end
    proc.close(fd)
  end
end

--- Route `berth.listen` and `berth.udp` of a single process through the
-- pool, and keep every listener made, for a later upgrade.
-- @tparam table berth the API table
-- @tparam Pool pool
-- @treturn table registry with `handed()`: {fd =, name =} of each open
-- listener
function inherit.wrap(berth, pool)
  local listen, udp = berth.listen, berth.udp
  local counts, made = {}, {}
  local function key_for(kind, o)
    local addr = o.name and ("name " .. o.name) or inherit.address(kind, o)
    counts[addr] = (counts[addr] or 0) + 1
    return addr .. "#" .. counts[addr]
  end
  -- listen's own errors carry no position of ours (a C function called
  -- through pcall) and are raised again at the script's call: level 4 is
  -- call <- open <- berth.listen <- the script.
  local function call(real, o)
    local ok, sock, code, extra = pcall(real, o)
    if not ok then error(sock, 4) end
    return sock, code, extra
  end
  local function open(kind, o, real, adopted)
    local key = key_for(kind, o)
    local fd = pool:take(kind, o, key)
    local sock, code, extra
    if fd then
      sock, code, extra = call(real, adopted(o, fd))
      if not sock then proc.close(fd) end
    elseif o.name and o.host == nil and o.port == nil and o.path == nil then
      return nil, "notfound", o.name
    else
      sock, code, extra = call(real, o)
    end
    if sock then made[#made + 1] = { sock = sock, name = inherit.fdname(key, o) } end
    return sock, code, extra
  end
  function berth.listen(opts)
    if type(opts) ~= "table" or opts.fd then return listen(opts) end
    core.options.check("listen", opts, 2) -- raise at the caller, as listen does
    return open("tcp", opts, listen, channel.adopted_options)
  end
  function berth.udp(opts)
    if opts == nil or type(opts) ~= "table" or opts.fd
      or (opts.host == nil and opts.port == nil and opts.path == nil and opts.name == nil) then
      return udp(opts)
    end
    core.options.check("udp", opts, 2)
    return open("udp", opts, udp, channel.adopted_udp_options)
  end
  return {
    handed = function()
      local list = {}
      for _, m in ipairs(made) do
        local fd = m.sock:fd()
        if fd and fd >= 0 then list[#list + 1] = { fd = fd, name = m.name } end
      end
      return list
    end,
  }
end

return inherit

--- berth: a Lua 5.4 scriptable socket server host.
-- The C core (`berth.core`) owns the loop, sockets and I/O; this module is
-- the public API on top of it. See README.md for every function, its
-- results and its error codes.
-- @module berth
local core = require "berth.core"
local log = require "berth.log"
local sync = require "berth.sync"

local berth = {
  version = core.version,
  log = log,
  listen = core.listen,
  spawn = core.spawn,
  sleep = core.sleep,
  now = core.now,
  timer = core.timer,
  signal = core.signal,
  run = core.run,
  step = core.step,
  stop = core.stop,
  shutdown = core.shutdown,
  stats = core.stats,
  onerror = core.onerror,
  cond = sync.cond,
  limits = core.limits,
}

core.setlogger(log.write)

-- The default handler for errors raised in tasks (E6).
core.onerror(function(err, traceback, sock)
  local where = ""
  if sock then
    local host, port = sock:peer()
    if host then where = (" (peer %s:%s)"):format(host, port) end
  end
  log.write("error", "handler error" .. where .. ": " .. tostring(traceback or err))
end)

--- Listen and run `opts.handler(sock)` in a new task per connection.
-- @tparam table opts `berth.listen` options plus `handler` and `onerror`
-- @treturn[1] ServerSocket
-- @treturn[2] nil
-- @treturn[2] string error code
-- @treturn[2] integer errno
function berth.serve(opts)
  if type(opts) ~= "table" or type(opts.handler) ~= "function" then
    error("berth.serve: expects a table with a handler function", 2)
  end
  local server, err, errno = core.listen(opts)
  if not server then return nil, err, errno end
  if opts.onerror then server:on("error", opts.onerror) end
  return server:on("connection", opts.handler)
end

--- Connect to `host`:`port` (or a unix `path`), resolving names off-loop.
-- `berth.connect(host, port [, opts])` or `berth.connect{host=, port=,
-- path=, timeout=}`. Must run in a task.
-- @treturn[1] Socket
-- @treturn[2] nil
-- @treturn[2] string error code
-- @treturn[2] any errno or message
function berth.connect(host, port, opts)
  if type(host) == "table" then
    opts = host
    host, port = opts.host, opts.port
  end
  opts = opts or {}
  local timeout = opts.timeout
  if opts.path then return core.connect(opts.path, nil, timeout) end
  if type(host) ~= "string" then error("berth.connect: host expected", 2) end
  port = math.tointeger(port)
  if not port then error("berth.connect: port expected", 2) end
  local deadline = timeout and core.now() + timeout
  local addrs, err, extra = core.resolve(host)
  if not addrs then return nil, err, extra end
  for _, addr in ipairs(addrs) do
    local left = deadline and math.max(0, deadline - core.now())
    local sock
    sock, err, extra = core.connect(addr, port, left)
    if sock or err == "timeout" then return sock, err, extra end
  end
  return nil, err, extra
end

local Socket, ServerSocket = core.Socket, core.ServerSocket

--- Iterate over lines (`fmt` "l" or "L") until EOF or an error.
function Socket:lines(fmt)
  fmt = fmt or "l"
  return function() return (self:read(fmt)) end
end

--- Iterate over accepted connections until a timeout or close.
function ServerSocket:connections(timeout)
  return function() return (self:accept(timeout)) end
end

return berth

--- berth: a Lua 5.4 scriptable socket server host.
-- The C core (`berth.core`) owns the loop, sockets and I/O; this module is
-- the public API on top of it. See README.md for every function, its
-- results and its error codes.
-- @module berth
local core = require "berth.core"
local log = require "berth.log"
local sync = require "berth.sync"

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

-- The default handler for errors raised in tasks (E6).
local function log_task_error(err, traceback, sock)
  local where = ""
  if sock then
    local host, port = sock:peer()
    if host then where = (" (peer %s:%s)"):format(host, port) end
  end
  log.write("error", "handler error" .. where .. ": " .. tostring(traceback or err))
end

-- The public API over one core table, i.e. one loop.
local function bind(c)
  local api = {
    version = c.version, log = log, cond = sync.cond,
    listen = c.listen, spawn = c.spawn, sleep = c.sleep, now = c.now,
    timer = c.timer, signal = c.signal, run = c.run, step = c.step,
    stop = c.stop, shutdown = c.shutdown, stats = c.stats,
    onerror = c.onerror, limits = c.limits, fd = c.fd,
  }
  c.setlogger(log.write)
  c.onerror(log_task_error)

  --- Listen and run `opts.handler(sock)` in a new task per connection.
  -- @tparam table opts `berth.listen` options plus `handler` and `onerror`
  -- @treturn[1] ServerSocket
  -- @treturn[2] nil
  -- @treturn[2] string error code
  -- @treturn[2] integer errno
  function api.serve(opts)
    if type(opts) ~= "table" or type(opts.handler) ~= "function" then
      error("berth.serve: expects a table with a handler function", 2)
    end
    local server, err, errno = c.listen(opts)
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
  function api.connect(host, port, opts)
    if type(host) == "table" then
      opts = host
      host, port = opts.host, opts.port
    end
    opts = opts or {}
    local timeout = opts.timeout
    if opts.path then return c.connect(opts.path, nil, timeout) end
    if type(host) ~= "string" then error("berth.connect: host expected", 2) end
    port = math.tointeger(port)
    if not port then error("berth.connect: port expected", 2) end
    local deadline = timeout and c.now() + timeout
    local addrs, err, extra = c.resolve(host)
    if not addrs then return nil, err, extra end
    for _, addr in ipairs(addrs) do
      local left = deadline and math.max(0, deadline - c.now())
      local sock
      sock, err, extra = c.connect(addr, port, left)
      if sock or err == "timeout" then return sock, err, extra end
    end
    return nil, err, extra
  end

  --- A new, independent loop with this same API (`berth.loop().serve{…}`,
  -- `:run()`…). The default loop is the one `berth` itself drives.
  function api.loop()
    return bind(c.newloop())
  end

  return api
end

return bind(core)

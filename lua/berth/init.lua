--- berth: a Lua 5.4 scriptable socket server host.
-- The C core (`berth.core`) owns the loop, sockets and I/O; this module is
-- the public API on top of it. See README.md for every function, its
-- results and its error codes.
-- @module berth
local core = require "berth.core"
local log = require "berth.log"
local sync = require "berth.sync"
local reload = require "berth.reload"
local tls = require "berth.tls"
local bus = require "berth.bus"
local metrics = require "berth.metrics"
local proxy = require "berth.proxy"
local health = require "berth.health"

local Socket, ServerSocket, Datagram = core.Socket, core.ServerSocket, core.Datagram
local check = core.check


-- Socket:lines and ServerSocket:connections are documented with their
-- classes below.
function Socket:lines(fmt)
  fmt = fmt or "l"
  return function() return (self:read(fmt)) end
end

function ServerSocket:connections(timeout)
  return function() return (self:accept(timeout)) end
end

-- Datagram:packets, documented with its class below: datagrams cut by
-- max_datagram are skipped (they are counted and reported).
function Datagram:packets(timeout)
  return function()
    while true do
      local data, host, port = self:recvfrom(timeout)
      if data then return data, host, port end
      if host ~= "toolarge" then return nil end
    end
  end
end

-- The default handler for errors raised in tasks (E6). The record names
-- the connection (its peer) when there is one.
local function log_task_error(err, traceback, sock)
  log.write("error", "handler error: " .. tostring(traceback or err), sock or false)
end

-- The public API over one core table, i.e. one loop.
local function bind(c)
  local api = {
    version = c.version, log = log,
    cond = function() return sync.cond(c) end,
    udp = c.udp, spawn = c.spawn, sleep = c.sleep, now = c.now,
    timer = c.timer, signal = c.signal, run = c.run, step = c.step,
    stop = c.stop, shutdown = c.shutdown, stats = c.stats, draining = c.draining,
    onerror = c.onerror, limits = c.limits, fd = c.fd, reload = reload,
    buffer = c.buffer,
  }
  api.proxy = proxy.bind(c)
  local shutdown_hooks = {}
  c.setlogger(log.write)
  c.onerror(log_task_error)

  -- A host that can be neither an address nor a name raises, at `level`
  -- of our caller (2: its caller).
  local function check_host(host, level)
    if type(host) == "string" and not host:match("^[%w%.%-_:%[%]%*]+$") then
      error(('listen: host must be an IP address, "*" or a host name (got %q)'):format(host),
        level + 1)
    end
  end

  --- Listen on a TCP or unix socket.
  -- A `host` that is a name is resolved once, here, and its first address
  -- bound: in a task the task waits for the lookup, which runs off the
  -- loop; in the main chunk (the loop is not running yet) the lookup is
  -- made at once; in a callback it raises.
  -- @function listen
  -- @tparam table opts `host` ("127.0.0.1"; "0.0.0.0", "::", "*" for all),
  -- `port` (0: ephemeral), `backlog` (511), `reuseaddr` (true), `reuseport`,
  -- `path` (unix socket), `fd` (adopt a listening descriptor), `tls` (TLS
  -- options or a TLSContext: README "TLS"), and any limit of `berth.limits`
  -- but `cpu_budget`. An unknown key or a bad value raises,
  -- naming it: "listen: port must be an integer 0..65535 (got 70000)",
  -- "listen: unknown option "prot" (valid: host, port, ...)" (core.options).
  -- @treturn[1] ServerSocket
  -- @treturn[2] nil
  -- @treturn[2] string "addrinuse", "addrnotavail", "permission", "notfound", …
  -- @treturn[2] any errno, or the resolver's message
  function api.listen(opts)
    c.options.check("listen", opts, 2) -- raised at the caller's line
    local host = opts.host
    check_host(host, 2)
    if type(host) == "string" and opts.path == nil and opts.fd == nil then
      local ok, addrs, code, msg = pcall(c.resolve, host, "listen") -- a number: at once
      if not ok then error(addrs, 2) end -- a lookup where nothing may wait
      if not addrs then return nil, code, msg end
      if addrs[1] ~= host then
        local t = {}
        for k, v in pairs(opts) do t[k] = v end
        t.host = addrs[1]
        opts = t
      end
    end
    return c.listen(opts) -- options checked: it raises no more
  end

  -- berth.tls wraps api.listen (listen{tls=} servers are reloaded with it).
  api.tls = tls.bind(c, api)
  api.tls.fromenv = tls.fromenv

  --- Listen and run `opts.handler(sock)` in a new task per connection.
  -- @function serve
  -- @tparam table opts `berth.listen` options plus `handler` and `onerror`
  -- @treturn[1] ServerSocket
  -- @treturn[2] nil
  -- @treturn[2] string error code
  -- @treturn[2] integer errno
  function api.serve(opts)
    c.options.check("serve", opts, 2)
    check_host(opts.host, 2)
    local handler = opts.handler
    if handler == nil then
      error("serve: handler must be a function or a handler module's name (got nil)", 2)
    end
    -- A handler module is loaded before anything is bound: a missing or
    -- broken module fails the call, naming itself and the caller's line.
    if type(handler) == "string" then handler = reload.handler(handler, 2) end
    local t = {} -- listen's own keys: all but handler and onerror
    for k, v in pairs(opts) do
      if c.options.listen[k] then t[k] = v end
    end
    -- api.listen as the table has it now: a worker's goes through its
    -- master, --check's to a loopback port.
    local server, err, errno = api.listen(t)
    if not server then return nil, err, errno end
    if opts.onerror then server:on("error", opts.onerror) end
    return server:on("connection", handler)
  end

  --- A Datagram socket that runs `opts.handler(data, host, port, dgram)`
  -- in a new task per datagram; a string the handler returns is sent back
  -- to the sender.
  -- @function serve_udp
  -- @tparam table opts `berth.udp` options plus `handler` (a function or a
  -- module name) and `onerror`
  -- @treturn[1] Datagram
  -- @treturn[2] nil
  -- @treturn[2] string error code
  -- @treturn[2] integer errno
  function api.serve_udp(opts)
    c.options.check("serve_udp", opts, 2)
    if opts.handler == nil then
      error("serve_udp: handler must be a function or a handler module's name (got nil)", 2)
    end
    local t = {} -- udp's own keys: all but handler and onerror
    for k, v in pairs(opts) do
      if c.options.udp[k] then t[k] = v end
    end
    local handler = opts.handler
    if type(handler) == "string" then handler = reload.packet_handler(handler, 2) end
    local d, err, errno = api.udp(t)
    if not d then return nil, err, errno end
    if opts.onerror then d:on("error", opts.onerror) end
    return d:serve(handler)
  end

  -- The TCP connection of api.connect: every address `host` resolves to
  -- in turn, within the timeout.
  local function connect(host, port, timeout)
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

  --- Connect to `host`:`port` (or a unix `path`), resolving names off-loop.
  -- `berth.connect(host, port [, opts])` or `berth.connect{host=, port=,
  -- path=, timeout=, tls=, idle_timeout=, send_timeout=, proxy_protocol=,
  -- source=}`. Must run in a task. `idle_timeout` and `send_timeout`
  -- (seconds, true for the loop's value as `berth.limits` says, false:
  -- none, the default) give the socket those limits of a served
  -- connection (sock:setoption). With `proxy_protocol` (1 or 2) a PROXY
  -- protocol header goes first, announcing the client of Socket `source`
  -- (a v2 LOCAL or v1 UNKNOWN header without one): a berth proxy passes
  -- its client's address on. A port is an integer
  -- 0..65535; it, an unknown key or a bad timeout raises (core.options
  -- "connect"). With `tls` (true, a table of options or a TLSContext) the
  -- TLS handshake follows, verifying the server's certificate for `host`
  -- (or `tls.servername`) against the system CA store (or `tls.ca`) unless
  -- `tls.verify` is false; `timeout` covers both.
  -- @function connect
  -- @treturn[1] Socket
  -- @treturn[2] nil
  -- @treturn[2] string error code ("tls" for a failed handshake)
  -- @treturn[2] any errno or message
  function api.connect(host, port, opts)
    if type(host) == "table" then
      opts = host
      host, port = opts.host, opts.port
    end
    opts = opts or {}
    c.options.check("connect", opts, 2)
    -- Before a lookup: nothing happens outside a task.
    local intask, why = pcall(c.checkwait, "connect")
    if not intask then error(why, 2) end
    local timeout = opts.timeout
    if timeout == math.huge or timeout == false then timeout = nil end
    local started = c.now()
    local sock, err, extra
    if opts.path then
      sock, err, extra = c.connect(opts.path, nil, timeout)
    else
      if host == nil then error("connect: host must be a string (got nil)", 2) end
      check.string(host, "connect: host", 2)
      if port == nil then error("connect: port must be an integer 0..65535 (got nil)", 2) end
      port = check.port(port, "connect: port", 2)
      sock, err, extra = connect(host, port, timeout)
    end
    if not sock then return nil, err, extra end
    -- Limits a served connection has, opt-in (a client's connection may
    -- rightly stay quiet: a pool, a subscriber); true: the loop's value.
    if opts.idle_timeout ~= nil then sock:setoption("idle_timeout", opts.idle_timeout) end
    if opts.send_timeout ~= nil then sock:setoption("send_timeout", opts.send_timeout) end
    if opts.proxy_protocol then -- before any byte of the client's, TLS included
      local header, herr, herrno = c.proxy.header(opts.proxy_protocol, opts.source)
      if not header then
        sock:close()
        return nil, herr, herrno
      end
      local ok, werr, wextra = sock:write(header)
      if not ok then
        sock:close()
        return nil, werr, wextra
      end
    end
    if not opts.tls then return sock end
    local left = timeout and math.max(0, timeout - (c.now() - started))
    return api.tls.client(sock, opts.tls, host, left)
  end

  --- Counters: active, total, bytes_in, bytes_out, tasks, sockets,
  -- servers, datagrams, anchors, plus reloads, reload_failures,
  -- last_reload (a time), last_reload_modules and last_reload_error.
  -- @function stats
  function api.stats()
    local s = c.stats()
    for k, v in pairs(reload.stats()) do s[k] = v end
    return s
  end

  --- Run `fn()` in a task when a graceful shutdown starts (SIGTERM/SIGINT
  -- in the host, or berth.shutdown); it has the grace period to finish.
  -- @function on_shutdown
  function api.on_shutdown(fn)
    shutdown_hooks[#shutdown_hooks + 1] = fn
  end

  --- Graceful stop: the on_shutdown hooks start and `draining()` is true;
  -- after `delay` seconds (default: the drain_delay limit, off unless
  -- set) listeners close, then tasks get `grace` seconds (default 10),
  -- then every socket is closed.
  -- @function shutdown
  -- @tparam[opt] number grace
  -- @tparam[opt] number delay
  function api.shutdown(grace, delay)
    local hooks = shutdown_hooks
    shutdown_hooks = {}
    for _, fn in ipairs(hooks) do c.spawn(fn) end
    return c.shutdown(grace, delay)
  end

  --- A dictionary shared by every worker of the master (and by the whole
  -- of a single process): strings, numbers and booleans, TTLs, LRU
  -- eviction within `opts.size` bytes (default 4 MiB; the first process
  -- to ask makes it, later ones get it as it was made). See README
  -- "Shared dictionary".
  -- @function shared
  -- @tparam string name 1 to 58 bytes
  -- @tparam[opt] table opts `size`
  -- @return SharedDict: get, set, add, replace, incr, delete, ttl, keys,
  -- flush_all, flush_expired, stats
  function api.shared(name, opts)
    if opts ~= nil then
      if type(opts) ~= "table" then error("shared: opts must be a table (got " .. type(opts) .. ")", 2) end
      for k in pairs(opts) do
        if k ~= "size" then error(("shared: unknown option %q (valid: size)"):format(tostring(k)), 2) end
      end
    end
    return c.shared.dict(name, opts and opts.size)
  end

  --- This process's worker number: 1..N under `--workers N`, 0 in a
  -- single process.
  -- @function worker
  function api.worker()
    return c.shared.worker()
  end

  api.bus = bus.bind(c)
  api.metrics = metrics.bind(c, api)

  --- Health checks for load balancers (berth.health): `status()`,
  -- `draining()`, `handler` (for berth.http).
  api.health = health.bind(c, api)

  --- A listener answering health checks: 200 while serving, 503 once
  -- draining (berth.health). `opts` as berth.http.serve's, but `handler`.
  -- @function serve_health
  api.serve_health = api.health.serve

  --- A new, independent loop with this same API (`berth.loop().serve{…}`,
  -- `:run()`…). The default loop is the one `berth` itself drives.
  -- @function loop
  function api.loop()
    return bind(c.newloop())
  end

  return api
end

-- Reference of the functions the C core provides (for LDoc).

--- A datagram socket (UDP over IPv4 or IPv6, or a unix datagram socket).
-- @function udp
-- @tparam[opt] table opts `host`, `port` (a server: host defaults to
-- "127.0.0.1"; neither: a client bound to the wildcard on an ephemeral
-- port), `path` (unix), `fd` (adopt), `reuseaddr`, `reuseport`,
-- `broadcast`, `multicast` ({group=, interface=} or a list), `recvbuf`,
-- `sendbuf`, `max_datagram`, `max_queue`. An unknown key raises.
-- @treturn[1] Datagram
-- @treturn[2] nil
-- @treturn[2] string "addrinuse", "permission", "invalid", …
-- @treturn[2] integer errno

--- Run `fn(...)` as a new task on the next loop iteration.
-- @function spawn
-- @tparam function fn
-- @return the task's coroutine

--- Suspend the calling task for `seconds` (0: let every ready task run).
-- @function sleep
-- @tparam number seconds
-- @treturn boolean true

--- The loop's cached time in seconds.
-- @function now
-- @treturn number

--- Call `fn(timer)` in a new task after `after` seconds, then every `rep`.
-- @function timer
-- @tparam number after
-- @tparam[opt] number rep
-- @tparam function fn
-- @treturn Timer with `cancel()`

--- Call `fn(name)` in a new task on each delivery of SIG`name`.
-- @function signal
-- @tparam string name "INT", "TERM", "HUP", "USR1", …
-- @tparam function fn
-- @treturn Signal with `cancel()`

--- Run the loop until nothing is left or `stop()`.
-- @function run
-- @treturn boolean true

--- Run one loop iteration, blocking at most `timeout` seconds.
-- @function step
-- @tparam[opt=0] number timeout
-- @treturn boolean whether the loop still has work

--- Make a running `run()` return.
-- @function stop

--- Whether a graceful shutdown is under way.
-- @function draining
-- @treturn boolean

--- Set the process-wide handler of task errors: `fn(err, traceback, sock)`.
-- @function onerror
-- @tparam function fn
-- @return the previous handler

--- Set and get the default limits of new servers and the CPU budget.
-- @function limits
-- @tparam[opt] table t max_connections, maxline, max_input, max_output,
-- idle_timeout, message_timeout, send_timeout, cpu_budget (false: off;
-- sizes are positive integers; times are seconds >= 0, 0 and math.huge
-- also off; anything else, or an unknown key, raises)
-- @treturn table the limits in force

--- The loop's epoll descriptor, for embedding in a foreign loop.
-- @function fd
-- @treturn[1] integer
-- @treturn[2] nil
-- @treturn[2] string "unsupported"

--- A condition variable: `wait([timeout])`, `signal(...)`, `broadcast(...)`.
-- @function cond
-- @see berth.sync

--- Socket: a connection. Methods yield only the calling task.
-- @type Socket

--- Iterate over lines (`fmt` "l" or "L") until EOF or an error:
-- `for line in sock:lines() do ... end`.
-- @function Socket:lines
-- @tparam[opt="l"] string fmt
-- @treturn function the iterator

--- Read `fmt`: an integer n, "l", "L" or "a".
-- @function Socket:read
-- @param fmt
-- @tparam[opt] number timeout
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] string "closed", "reset", "timeout", "toolarge"
-- @treturn[2] string the unread buffered bytes (at "closed"/"reset")

--- Read whatever is available, 1 to `max` bytes.
-- @function Socket:readsome
-- @tparam[opt=65536] integer max
-- @tparam[opt] number timeout
-- @treturn string or nil, code, extra

--- Read up to `delim` (consumed, not returned).
-- @function Socket:readuntil
-- @tparam string delim
-- @tparam[opt] number timeout
-- @treturn string or nil, code, extra

--- Write strings and numbers; waits above the high watermark.
-- @function Socket:write
-- @param ...
-- @treturn[1] Socket
-- @treturn[2] nil
-- @treturn[2] string "closed", "reset", "timeout", "toolarge"

--- Wait until everything written is handed to the kernel.
-- @function Socket:flush
-- @tparam[opt] number timeout
-- @treturn Socket or nil, code

--- Default timeout of reads and/or writes (nil or negative: none).
-- @function Socket:settimeout
-- @tparam number seconds
-- @tparam[opt="both"] string which "read", "write"

--- Set "nodelay", "keepalive", "maxline", "highwater" or "lowwater".
-- @function Socket:setoption
-- @tparam string name
-- @param value

--- Half-close: "w" (after buffered data), "r" or "rw".
-- @function Socket:shutdown
-- @tparam[opt="w"] string how

--- Close (idempotent); waiting tasks get nil, "closed".
-- @function Socket:close

--- The remote address: host, port (or path, 0); also after close.
-- @function Socket:peer

--- The local address: host, port (or path, 0). `localaddr` is the same.
-- @function Socket:address

--- Bytes buffered for writing and read but unconsumed.
-- @function Socket:pending
-- @treturn integer wbytes
-- @treturn integer rbytes

--- bytes_in, bytes_out, created.
-- @function Socket:stats

--- Callback mode: "data" fn(chunk), "close" fn(code), "drain" fn().
-- @function Socket:on
-- @tparam string event
-- @tparam function fn

--- The descriptor (-1 once closed).
-- @function Socket:fd

--- ServerSocket: a listener.
-- @type ServerSocket

--- Iterate over accepted connections until a timeout or close:
-- `for client in server:connections() do ... end` (task only).
-- @function ServerSocket:connections
-- @tparam[opt] number timeout
-- @treturn function the iterator

--- Accept one connection (task only).
-- @function ServerSocket:accept
-- @tparam[opt] number timeout
-- @treturn[1] Socket
-- @treturn[2] nil
-- @treturn[2] string "timeout" or "closed"

--- Run `fn(sock)` in a new task per connection ("connection"), or handle
-- handler errors ("error": fn(err, traceback, sock)).
-- @function ServerSocket:on
-- @tparam string event
-- @tparam function fn

--- Stop / restart accepting.
-- @function ServerSocket:pause

--- @function ServerSocket:resume

--- Close (idempotent), waking a pending accept with nil, "closed".
-- @function ServerSocket:close

--- The bound port.
-- @function ServerSocket:port

--- The bound address (or unix path).
-- @function ServerSocket:address

--- accepted, active, rejected.
-- @function ServerSocket:stats

--- The limits its connections get.
-- @function ServerSocket:limits

--- The listening descriptor (-1 once closed).
-- @function ServerSocket:fd

--- Datagram: a UDP or unix datagram socket (berth.udp).
-- @type Datagram

--- Iterate over received datagrams: `data, host, port` until a timeout or
-- close (`for data, host, port in d:packets() do ... end`, task only).
-- Datagrams cut by max_datagram are skipped (they are counted and
-- reported: on("truncated") or the log).
-- @function Datagram:packets
-- @tparam[opt] number timeout
-- @treturn function the iterator

--- Receive one datagram (task only).
-- @function Datagram:recvfrom
-- @tparam[opt] number timeout
-- @treturn[1] string data
-- @treturn[1] string host (or the unix path)
-- @treturn[1] integer port
-- @treturn[2] nil
-- @treturn[2] string "timeout", "closed", "refused", or "toolarge" (then
-- the real size, host and port follow)

--- Receive one datagram's data (task only; for a connected socket).
-- @function Datagram:recv
-- @tparam[opt] number timeout

--- Send one datagram; queued when the kernel is full. A task waits when
-- the queue is full too; a callback gets nil, "wouldblock".
-- @function Datagram:sendto
-- @tparam string data
-- @tparam string host a numeric address (or a unix path)
-- @tparam integer port
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string "wouldblock", "toolarge", "refused", "closed", …

--- Send to the connected peer.
-- @function Datagram:send
-- @tparam string data

--- Take datagrams from one peer only; send/recv need no address.
-- @function Datagram:connect
-- @tparam string host
-- @tparam integer port

--- Callbacks: "packet" fn(data, host, port, dgram) (a returned string is
-- the reply), "truncated" fn(size, host, port), "error" fn(err, traceback, dgram).
-- @function Datagram:on

--- A handler task per datagram: fn(data, host, port, dgram).
-- @function Datagram:serve


return bind(core)

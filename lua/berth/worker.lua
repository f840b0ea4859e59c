--- The worker side of `berth --workers N`.
-- A worker runs the script like a single process, except that listening
-- sockets (and UDP server sockets: udp{} with a host, port or path) come
-- from the master: `listen` checks its options as a single
-- process would, asks the master over the channel (fd 3) to bind (the
-- request and reply are berth.channel's) and adopts the descriptor it
-- sends. All workers, and the workers that replace them on a rolling
-- reload, then share one accept queue, so no connection waiting in it is
-- lost when a worker goes away. Once the script has run, the worker tells
-- the master it is ready. TLS session ticket keys come from the master
-- too, so that every worker resumes the sessions of every other.
--
-- Before the script runs, the worker attaches the group's shared region
-- (berth.shared, berth.bus, berth.metrics, sock:id()) from the descriptor
-- the master sends, in the member slot the master claimed for it. A
-- worker that gets none refuses shared memory rather than making a
-- private region only it would see.
--
-- Every exchange is bounded: with no reply within channel.TIMEOUT,
-- `listen` returns nil, "timeout"; a SIGTERM or SIGINT during the wait
-- makes it return nil, "canceled" (and the signal then stops the worker
-- as usual); a broken channel (the master is gone) ends the worker.
-- @module berth.worker
local core = require "berth.core"
local channel = require "berth.channel"
local proc = core.proc

local worker = {}

-- The master is gone: nothing can be listened to or reported any more.
local function lost(berth, what)
  berth.log.error("worker: the channel to the master is closed (%s); exiting", what)
  os.exit(1)
end

-- The TLS session ticket keys all workers share, from the master (request
-- `id`).
local function fetch_tickets(berth, fd, id)
  local kind, fields = channel.exchange(fd, id, channel.encode("tickets", id), channel.TIMEOUT)
  if kind == "tickets" then
    berth.tls.ticketkeys(fields.keys)
  elseif fields == "closed" then
    lost(berth, "tickets")
  end
end

-- Ask the master for the shared region and attach it (request `id`).
local function attach(berth, fd, id)
  local kind, fields, passed = channel.exchange(fd, id, channel.attach_request(id),
    channel.TIMEOUT)
  if kind == "ok" and passed then
    local ok, err = core.shared.attach(passed, fields.slot)
    if ok then return end
    core.shared.disable("cannot map the master's shared region: " .. tostring(err))
    berth.log.error("worker: cannot map the master's shared region: %s", err)
    return
  end
  if passed then proc.close(passed) end
  if fields == "closed" then lost(berth, "attach") end
  local why = kind == "fail" and fields.code or tostring(kind or fields)
  core.shared.disable("the master has none (" .. why .. ")")
  berth.log.warn("worker: no shared region from the master (%s)", why)
end

--- Route `berth.listen` of the API table through the master on `fd`.
function worker.start(berth, fd)
  local listen = berth.listen
  local last_id = 1
  attach(berth, fd, last_id)
  last_id = last_id + 1
  fetch_tickets(berth, fd, last_id)
  function berth.listen(opts)
    core.options.check("listen", opts, 2) -- raise as a single process does
    if opts.fd then return listen(opts) end
    last_id = last_id + 1
    local kind, fields, passed = channel.exchange(fd, last_id,
      channel.listen_request(last_id, opts), channel.TIMEOUT)
    if kind == "ok" and passed then
      local server, code, errno = listen(channel.adopted_options(opts, passed))
      if not server then proc.close(passed) end
      return server, code, errno
    end
    if passed then proc.close(passed) end
    if kind == "fail" then return nil, fields.code, fields.errno end
    if kind == "error" then error(fields.message, 2) end
    if fields == "closed" then lost(berth, "listen") end
    if kind == nil then
      berth.log.warn("worker: listen: no reply from the master (%s)", fields)
      return nil, fields
    end
    return nil, "error", ("unexpected reply %q"):format(kind)
  end
  -- A UDP server socket is the master's too, one per address: every
  -- worker reads from the same kernel queue, so a datagram waiting there
  -- while a worker is replaced is read by another, not lost. A client
  -- socket (no host, port or path) is the worker's own.
  local udp = berth.udp
  function berth.udp(opts)
    if opts == nil then opts = {} end
    core.options.check("udp", opts, 2) -- raise as a single process does
    if opts.fd or (opts.host == nil and opts.port == nil and opts.path == nil) then
      return udp(opts)
    end
    last_id = last_id + 1
    local kind, fields, passed = channel.exchange(fd, last_id,
      channel.udp_request(last_id, opts), channel.TIMEOUT)
    if kind == "ok" and passed then
      local d, code, errno = udp(channel.adopted_udp_options(opts, passed))
      if not d then proc.close(passed) end
      return d, code, errno
    end
    if passed then proc.close(passed) end
    if kind == "fail" then return nil, fields.code, fields.errno end
    if kind == "error" then error(fields.message, 2) end
    if fields == "closed" then lost(berth, "udp") end
    if kind == nil then
      berth.log.warn("worker: udp: no reply from the master (%s)", fields)
      return nil, fields
    end
    return nil, "error", ("unexpected reply %q"):format(kind)
  end
  -- Runs at the loop's first iteration: after the script's main chunk.
  berth.spawn(function()
    local ok, err = proc.send(fd, channel.encode("ready", 0), nil, channel.TIMEOUT)
    if not ok and err ~= "canceled" then lost(berth, "ready: " .. tostring(err)) end
  end)
end

return worker

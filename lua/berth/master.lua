--- The master of `berth --workers N app.lua`.
-- It runs no script. It starts N workers (the berth executable again, with
-- --worker and the same options), binds the listening sockets they ask for
-- (once per address; every worker gets the same socket, so they share one
-- accept queue), restarts a worker that dies (after 0.1 s, backing off to
-- 10 s while it keeps crashing), forwards SIGTERM/SIGINT for a graceful
-- shutdown, and on SIGHUP replaces the workers one at a time: a new worker
-- starts and reports ready before the old one is told to drain. It also
-- makes the TLS session ticket keys every worker uses (so a ticket from
-- one worker resumes on any other), and rotates them on SIGHUP: the new
-- workers encrypt with a new key and still accept the previous one.
-- @module berth.master
local core = require "berth.core"
local proc = core.proc

local master = {}

local READY_TIMEOUT = 30   -- seconds a new worker has to report ready
local STABLE = 10          -- a worker that ran this long was not crash-looping

--- Run the master on the `berth` API table until shutdown.
-- @tparam table berth the berth module
-- @tparam table opts workers (count), argv (a worker's command line), grace
function master.run(berth, opts)
  local log = berth.log
  local slots = {}        -- slot -> the worker serving it
  local workers = {}      -- pid -> worker
  local failures = {}     -- slot -> consecutive quick deaths
  local listeners = {}    -- address key -> ServerSocket (never accepted on)
  local changed = berth.cond() -- any worker became ready or exited
  local stopping, reloading, first = false, false, true
  local ticket_keys = berth.tls.newkeys(1) -- the first encrypts

  -- A listen request from a worker: bind once per address, send the fd.
  local function handle_listen(w, msg)
    local o = {}
    for k, v in msg:gmatch("\n([%w_]+)=([^\n]*)") do
      if v == "true" then v = true elseif v == "false" then v = false end
      o[k] = tonumber(v) or v
    end
    local key = o.path or ("%s:%s"):format(o.host or "127.0.0.1", o.port or 0)
    local server = listeners[key]
    if not server then
      local err, errno
      server, err, errno = berth.listen(o)
      if not server then
        return proc.send(w.channel:fd(), ("err\n%s\n%s"):format(err, errno or ""))
      end
      listeners[key] = server
      log.info("master: listening on %s:%s for the workers", server:address(), server:port())
    end
    proc.send(w.channel:fd(), "ok", server:fd())
  end

  -- Messages from one worker until its channel closes (it exited).
  local function serve_worker(w)
    while true do
      local msg = w.channel:readsome(4096)
      if not msg then break end
      if msg == "ready" then
        w.ready = true
        changed:broadcast()
      elseif msg:sub(1, 7) == "listen\n" then
        handle_listen(w, msg)
      elseif msg == "tickets" then
        proc.send(w.channel:fd(), "tickets\n" .. ticket_keys)
      end
    end
  end

  local function start(slot)
    local mine, theirs = proc.socketpair()
    local pid, err = proc.spawn(opts.argv, theirs, not first) -- one "listening on" line
    proc.close(theirs)
    if not pid then
      proc.close(mine)
      log.error("master: cannot start a worker: %s", err)
      return nil
    end
    first = false
    local w = { pid = pid, slot = slot, started = berth.now(), channel = core.adopt(mine) }
    workers[pid] = w
    berth.spawn(serve_worker, w)
    log.info("master: worker %d started (slot %d)", pid, slot)
    return w
  end

  local function restart_later(w, how, code)
    local quick = berth.now() - w.started < STABLE
    failures[w.slot] = quick and (failures[w.slot] or 0) + 1 or 0
    local delay = math.min(10, 0.1 * 2 ^ math.max(0, failures[w.slot] - 1))
    local level = failures[w.slot] > 1 and "warn" or "info"
    log[level]("master: worker %d died (%s %d); restarting in %.1f s%s", w.pid, how, code,
      delay, failures[w.slot] > 1 and " (it keeps crashing)" or "")
    core.timer(delay, 0, function()
      if not stopping and slots[w.slot] == w then slots[w.slot] = start(w.slot) end
    end)
  end

  local function reap()
    while true do
      local pid, how, code = proc.reap()
      if not pid then return end
      local w = workers[pid]
      if w then
        workers[pid] = nil
        w.channel:close()
        if not stopping and not w.retiring and slots[w.slot] == w then
          restart_later(w, how, code)
        else
          log.info("master: worker %d exited (%s %d)", pid, how, code)
        end
        changed:broadcast()
      end
    end
  end

  -- Wait until pred() or the deadline; false at the deadline.
  local function wait_for(pred, seconds)
    local deadline = berth.now() + seconds
    while not pred() do
      local left = deadline - berth.now()
      if left <= 0 then return false end
      changed:wait(left)
    end
    return true
  end

  -- SIGHUP: one slot at a time, the new worker must be ready before the
  -- old one drains, so the service never has fewer workers than before.
  local function rolling_reload()
    if reloading or stopping then return end
    reloading = true
    ticket_keys = berth.tls.newkeys(1) .. ticket_keys:sub(1, 80)
    log.info("master: rolling reload of %d workers", #slots)
    for slot = 1, #slots do
      local old, new = slots[slot], start(slot)
      local ok = new and wait_for(function() return new.ready or not workers[new.pid] end,
        READY_TIMEOUT) and new.ready
      if not ok then
        log.error("master: the new worker did not get ready; keeping the old ones")
        if new and workers[new.pid] then new.retiring = true; proc.kill(new.pid, "KILL") end
        break
      end
      slots[slot] = new
      if old and workers[old.pid] then
        old.retiring = true
        proc.kill(old.pid, "TERM")
      end
    end
    reloading = false
    log.info("master: rolling reload done")
  end

  local function shutdown(name)
    if stopping then -- a second signal: pass it on and go
      for pid in pairs(workers) do proc.kill(pid, "INT") end
      log.warn("master: second SIG%s: exiting now", name)
      os.exit(1)
    end
    stopping = true
    log.info("master: SIG%s: stopping %d workers", name, #slots)
    -- The master holds the listening sockets too: close them first, so the
    -- port refuses new connections as soon as the workers close theirs.
    for _, server in pairs(listeners) do server:close() end
    for pid in pairs(workers) do proc.kill(pid, "TERM") end
    if not wait_for(function() return next(workers) == nil end, opts.grace + 5) then
      for pid in pairs(workers) do proc.kill(pid, "KILL") end
      wait_for(function() return next(workers) == nil end, 2)
    end
    berth.stop()
  end

  berth.signal("CHLD", reap)
  berth.signal("HUP", rolling_reload)
  berth.signal("TERM", shutdown)
  berth.signal("INT", shutdown)
  -- The workers' channels (and restart timers) keep the loop running.
  for slot = 1, opts.workers do slots[slot] = start(slot) end
end

return master

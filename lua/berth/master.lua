--- The master of `berth --workers N app.lua`.
-- It runs no script. Its steps, in the order of a worker's life:
--
-- 0. shared: create the group's shared region before any worker (the
--    dictionaries, the bus mailboxes and the metrics live there), so it
--    outlives every worker and every rolling reload; claim a member slot
--    for each worker it starts and send it the region on request;
-- 1. spawn: start a worker (the berth executable again, with --worker and
--    its slot number, and the same options) with a channel to it;
-- 2. channel: answer the worker's requests (berth.channel): bind each
--    listener it asks for once per address, so that every worker gets the
--    same socket and they share one accept queue; every request gets an
--    answer, the error of a failed or raising listen included;
-- 3. supervise: reap a worker that exited (folding its counters into the
--    retired totals and freeing its slot) and restart it after 0.1 s,
--    backing off to 10 s while it keeps crashing;
-- 4. rolling replace (SIGHUP): one slot at a time, a new worker starts and
--    reports ready before the old one is told to drain (its member slot
--    RETIRED: it still owns its connections and gets their messages);
-- 5. stop (SIGTERM/SIGINT/SIGQUIT, with the policy of berth.host): close
--    the listeners, pass the signal on (each worker says "draining" to
--    health checks for the drain delay, then closes its listeners; with
--    SIGQUIT at once), wait for the workers, then end the loop; a second
--    signal makes them all exit at once;
-- 6. upgrade (SIGUSR2): start the executable on disk as a new master with
--    the listening sockets (berth.upgrade); once its workers all report
--    ready, retire: close the listeners, SIGQUIT the workers, wait for
--    them and exit. If the new master fails, keep serving.
--
-- Listening sockets handed to the master when it started (systemd's
-- socket activation, or the master it replaces) are given to the workers
-- instead of binding new ones (berth.inherit); what no worker asked for
-- is closed once they are all ready, and then the replaced master is
-- told. During a rolling reload the group's health checks say "draining"
-- (berth.health): the master sets it, waits the drain delay, replaces the
-- workers, then clears it. Retired workers get SIGQUIT: they stop
-- accepting at once (the new ones accept on the same sockets).
--
-- It also makes the TLS session ticket keys every worker uses, so that a
-- ticket from one worker resumes on any other, and rotates them on SIGHUP:
-- the new workers encrypt with a new key and still accept the previous.
-- @module berth.master
local core = require "berth.core"
local channel = require "berth.channel"
local host = require "berth.host"
local inherit = require "berth.inherit"
local metrics = require "berth.metrics"
local upgrade = require "berth.upgrade"
local proc = core.proc
local shared = core.shared

local master = {}

local READY_TIMEOUT = 30   -- seconds a new worker has to report ready
local STABLE = 10          -- a worker that ran this long was not crash-looping
local RESTART_FIRST, RESTART_MAX = 0.1, 10 -- seconds before a restart
local KILL_AFTER = 5       -- seconds past the grace before SIGKILL

local Master = {}
Master.__index = Master

--- A master for `opts.workers` workers (not started yet).
-- @tparam table berth the berth module
-- @tparam table opts workers (count), argv (a worker's command line), grace
function Master.new(berth, opts)
  return setmetatable({
    berth = berth, log = berth.log, opts = opts,
    slots = {},         -- slot -> the worker serving it
    workers = {},       -- pid -> worker
    failures = {},      -- slot -> consecutive quick deaths
    listeners = {},     -- "address#n" -> ServerSocket or Datagram
    fdnames = {},       -- "address#n" -> its name in an upgrade's handover
    pool = inherit.empty(), -- sockets handed to this master (set by run)
    changed = berth.cond(), -- a worker became ready or exited
    stopping = false, reloading = false, started_one = false,
    ticket_keys = berth.tls.newkeys(1), -- the first encrypts
    shared = false,     -- the region exists
  }, Master)
end

---------------------------------------------------------------------------
-- 0. the shared region
---------------------------------------------------------------------------

--- Create the region before any worker; without one, workers run with
-- shared memory off (they refuse to make private ones).
function Master:setup_shared()
  local fd, code = shared.create()
  if not fd then
    shared.disable("the master could not create it: " .. tostring(code))
    self.log.error("master: no shared region (%s): berth.shared, berth.bus and "
      .. "berth.metrics are off in the workers", code)
    return
  end
  self.shared = true
  self.health = self.berth.health
  if not self.health.set_group(false) then
    self.log.warn("master: no health dictionary: health checks do not say draining during "
      .. "a rolling reload")
  end
  local family = function(kind, name, help)
    return metrics.family(core, kind, name, help or metrics.HELP[name])
  end
  self.counters = {
    reloads = family("counter", "berth_reloads_total"),
    reload_failures = family("counter", "berth_reload_failures_total"),
    restarts = family("counter", "berth_worker_restarts_total", "Workers restarted after they died."),
    workers = family("gauge", "berth_workers", "Workers the master runs (draining ones included)."),
  }
end

--- Count `name` (a counter of setup_shared), if there is a region.
function Master:count(name)
  if self.counters then self.counters[name]:inc() end
end

function Master:count_workers()
  if not self.counters then return end
  local n = 0
  for _ in pairs(self.workers) do n = n + 1 end
  self.counters.workers:set(n)
end

--- The member slot for a new worker of `slot`, or nil (no region, or
-- all 128 slots taken: the worker then runs without shared memory).
function Master:claim(slot)
  if not self.shared then return nil end
  local member, code = shared.claim(slot)
  if not member then
    self.log.error("master: no shared-memory slot for a new worker (%s)", code)
  end
  return member
end

---------------------------------------------------------------------------
-- 1. spawn
---------------------------------------------------------------------------

--- Start a worker for `slot`; nil if it could not be started.
function Master:spawn(slot)
  local mine, theirs = proc.socketpair()
  local member = self:claim(slot)
  -- "berth --worker SLOT ...": the slot is its number in its log records.
  local argv = { table.unpack(self.opts.argv) }
  table.insert(argv, 3, tostring(slot))
  -- Only the first worker keeps its stdout: one "listening on" line.
  local pid, err = proc.spawn(argv, theirs, self.started_one)
  proc.close(theirs)
  if not pid then
    proc.close(mine)
    if member then shared.release(member) end
    self.log.error("master: cannot start a worker: %s", err)
    return nil
  end
  if member then shared.setpid(member, pid) end
  self.started_one = true
  local w = { pid = pid, slot = slot, started = self.berth.now(),
    channel = core.adopt(mine), binds = {}, member = member }
  self.workers[pid] = w
  self:count_workers()
  self.berth.spawn(self.serve_channel, self, w)
  self.log.info("master: worker %d started (slot %d)", pid, slot)
  return w
end

---------------------------------------------------------------------------
-- 2. the channel
---------------------------------------------------------------------------

--- Messages from worker `w` until its channel closes (it exited).
function Master:serve_channel(w)
  while true do
    local kind, id, fields = channel.read(w.channel)
    if not kind then
      if id ~= "closed" and id ~= "reset" then
        -- Out of step with the worker: it will find the channel broken.
        self.log.error("master: worker %d: %s; closing its channel", w.pid, id)
        w.channel:close()
      end
      return
    end
    if kind == "ready" then
      w.ready = true
      self:check_ready()
      self.changed:broadcast()
    elseif kind == "listen" then
      self:answer_listen(w, id, fields)
    elseif kind == "udp" then
      self:answer_udp(w, id, channel.udp_options(fields))
    elseif kind == "tickets" then
      self:reply(w, channel.encode("tickets", id, { keys = self.ticket_keys }))
    elseif kind == "attach" then
      self:answer_attach(w, id)
    else
      self:reply(w, channel.encode("error", id,
        { message = "master: unknown request " .. ("%q"):format(kind) }))
    end
  end
end

--- Every initial worker is ready: close the handed-over sockets no
-- worker asked for, and tell the master this one replaces (once).
function Master:check_ready()
  if self.announced then return end
  for slot = 1, self.opts.workers do
    local w = self.slots[slot]
    if not (w and w.ready) then return end
  end
  self.announced = true
  self.pool:ready(self.log)
end

--- The socket for request `o` of `kind` ("tcp" or "udp") of worker `w`,
-- made once per key: a worker's n-th request for an address gets the
-- n-th socket made there, so all workers get the same sockets, and one
-- worker's two ephemeral listeners two sockets. A socket handed to the
-- master is taken before anything is bound.
-- @treturn[1] ServerSocket or Datagram
-- @treturn[2] nil
-- @return[2] code, errno as listen gives them; or false, message if
-- listen raised
function Master:socket_for(w, kind, o)
  local addr = o.name and (kind .. " name " .. o.name) or inherit.address(kind, o)
  w.binds[addr] = (w.binds[addr] or 0) + 1
  local key = addr .. "#" .. w.binds[addr]
  if self.listeners[key] then return self.listeners[key] end
  local make = kind == "udp" and self.berth.udp or self.berth.listen
  local fd = self.pool:take(kind, o, key)
  local t = o
  if fd then
    t = kind == "udp" and channel.adopted_udp_options(o, fd) or channel.adopted_options(o, fd)
  elseif o.name and o.host == nil and o.port == nil and o.path == nil then
    return nil, "notfound", o.name
  end
  -- Called through pcall, listen's messages carry no position of ours.
  local ok, sock, code, errno = pcall(make, t)
  if not ok or not sock then
    if fd then proc.close(fd) end
    if not ok then return false, sock end
    return nil, code, errno
  end
  self.listeners[key] = sock
  self.fdnames[key] = inherit.fdname(key, o)
  self.log.info("master: %s on %s:%s for the workers%s", kind == "udp" and "UDP" or "listening",
    sock:address(), sock:port(), fd and " (inherited)" or "")
  return sock
end

--- The listener for `o` (Master:socket_for).
function Master:listener(w, o)
  return self:socket_for(w, "tcp", o)
end

--- Answer a "listen" request, whatever happens.
function Master:answer_listen(w, id, o)
  local server, code, errno = self:listener(w, o)
  if server then
    self:reply(w, channel.encode("ok", id), server:fd())
  elseif server == false then
    self:reply(w, channel.encode("error", id, { message = code }))
  else
    self:reply(w, channel.encode("fail", id, { code = code, errno = errno }))
  end
end

--- The UDP socket for `o`, made once per address like a listener: all
-- workers read from the one socket (and so from one kernel queue).
function Master:udp_socket(w, o)
  return self:socket_for(w, "udp", o)
end

--- Answer a "udp" request, whatever happens.
function Master:answer_udp(w, id, o)
  local d, code, errno = self:udp_socket(w, o)
  if d then
    self:reply(w, channel.encode("ok", id), d:fd())
  elseif d == false then
    self:reply(w, channel.encode("error", id, { message = code }))
  else
    self:reply(w, channel.encode("fail", id, { code = code, errno = errno }))
  end
end

--- Answer an "attach" request: the region's descriptor and the
-- worker's member slot, or why there is none.
function Master:answer_attach(w, id)
  if w.member then
    self:reply(w, channel.encode("ok", id, { slot = w.member, worker = w.slot }), shared.fd())
  else
    self:reply(w, channel.encode("fail", id,
      { code = self.shared and "noslot" or "nosharedmemory" }))
  end
end

--- Send without waiting: a worker that does not read its replies times
-- out on its side.
function Master:reply(w, msg, fd)
  local ok, err = proc.send(w.channel:fd(), msg, fd, 0)
  if not ok then self.log.warn("master: cannot answer worker %d: %s", w.pid, err) end
end

---------------------------------------------------------------------------
-- 3. supervise
---------------------------------------------------------------------------

--- SIGCHLD: reap every worker that exited; restart those still needed.
function Master:reap()
  while true do
    local pid, how, code = proc.reap()
    if not pid then return end
    local w = self.workers[pid]
    if pid == self.upgrade_pid then
      self.log.info("master: the new master %d exited (%s %d)", pid, how, code)
    elseif w then
      self.workers[pid] = nil
      w.channel:close()
      -- Its counters join the retired totals before its slot is free.
      if w.member then shared.release(w.member) end
      self:count_workers()
      if self.pool.notify and not self.announced and not self.stopping and not self.giving_up then
        self.giving_up = true
        -- Started by an upgrade and not ready yet: give up at once, so
        -- the master it was to replace keeps serving (and says why).
        self.log.error("master: worker %d died (%s %d) before the upgrade was ready; exiting",
          pid, how, code)
        self.berth.spawn(function() self:stop("QUIT") end)
      elseif not self.stopping and not self.giving_up and not w.retiring
        and self.slots[w.slot] == w then
        self:restart_later(w, how, code)
      else
        self.log.info("master: worker %d exited (%s %d)", pid, how, code)
      end
      self.changed:broadcast()
    end
  end
end

--- Restart `w`'s slot after a delay that doubles while it keeps dying
-- within STABLE seconds of its start.
function Master:restart_later(w, how, code)
  local quick = self.berth.now() - w.started < STABLE
  local failures = quick and (self.failures[w.slot] or 0) + 1 or 0
  self.failures[w.slot] = failures
  local delay = math.min(RESTART_MAX, RESTART_FIRST * 2 ^ math.max(0, failures - 1))
  local level = failures > 1 and "warn" or "info"
  self.log[level]("master: worker %d died (%s %d); restarting in %.1f s%s", w.pid, how, code,
    delay, failures > 1 and " (it keeps crashing)" or "")
  self:count("restarts")
  core.timer(delay, 0, function()
    if not self.stopping and self.slots[w.slot] == w then
      self.slots[w.slot] = self:spawn(w.slot)
    end
  end)
end

--- Task only: wait until pred() or `seconds`; false at the deadline.
function Master:wait_for(pred, seconds)
  local deadline = self.berth.now() + seconds
  while not pred() do
    local left = deadline - self.berth.now()
    if left <= 0 then return false end
    self.changed:wait(left)
  end
  return true
end

---------------------------------------------------------------------------
-- 4. rolling replace
---------------------------------------------------------------------------

--- Replace the worker of `slot` by a new one, once the new one is ready;
-- false (and the old one keeps serving) if it does not get ready.
function Master:replace(slot)
  local old, new = self.slots[slot], self:spawn(slot)
  local ready = new and self:wait_for(function()
    return new.ready or not self.workers[new.pid]
  end, READY_TIMEOUT) and new.ready
  if not ready then
    if new and self.workers[new.pid] then
      new.retiring = true
      proc.kill(new.pid, "KILL")
    end
    return false
  end
  self.slots[slot] = new
  if old and self.workers[old.pid] then
    old.retiring = true
    if old.member then shared.retire(old.member) end
    proc.kill(old.pid, "QUIT") -- no drain delay: the new one accepts already
  end
  return true
end

--- The drain delay (berth.limits), in seconds; 0 for none.
function Master:drain_delay()
  return self.berth.limits().drain_delay or 0
end

--- SIGHUP: replace the workers one slot at a time, so the service never
-- has fewer workers than before. Health checks say "draining" meanwhile,
-- from the drain delay before the first replacement to the end.
function Master:rolling_reload()
  if self.reloading or self.stopping or self.upgrading then return end
  self.reloading = true
  self.ticket_keys = self.berth.tls.newkeys(1) .. self.ticket_keys:sub(1, 80)
  if self.health and self.health.set_group(true) and self:drain_delay() > 0 then
    self.log.info("master: rolling reload: draining for %gs first", self:drain_delay())
    self.berth.sleep(self:drain_delay())
  end
  self.log.info("master: rolling reload of %d workers", #self.slots)
  local ok = true
  for slot = 1, #self.slots do
    if not self:replace(slot) then
      self.log.error("master: the new worker did not get ready; keeping the old ones")
      ok = false
      break
    end
  end
  self:count(ok and "reloads" or "reload_failures")
  if self.health then self.health.set_group(false) end
  self.reloading = false
  self.log.info("master: rolling reload done")
end

---------------------------------------------------------------------------
-- 5. stop
---------------------------------------------------------------------------

local function all_gone(self)
  return function() return next(self.workers) == nil end
end

--- The first SIGTERM/SIGINT/SIGQUIT: stop the workers gracefully (passing
-- the signal on: SIGQUIT skips the drain delay), then the loop.
function Master:stop(name)
  self.stopping = true
  self.log.info("master: SIG%s: stopping %d workers", name, #self.slots)
  -- The master holds the listening sockets too: close them first, so the
  -- port refuses new connections as soon as the workers close theirs.
  for _, server in pairs(self.listeners) do server:close() end
  local sig = name == "QUIT" and "QUIT" or "TERM"
  for pid in pairs(self.workers) do proc.kill(pid, sig) end
  local delay = sig == "QUIT" and 0 or self:drain_delay()
  if not self:wait_for(all_gone(self), delay + self.opts.grace + KILL_AFTER) then
    for pid in pairs(self.workers) do proc.kill(pid, "KILL") end
    self:wait_for(all_gone(self), 2)
  end
  self.berth.stop()
end

---------------------------------------------------------------------------
-- 6. upgrade
---------------------------------------------------------------------------

--- {fd =, name =} of every socket the workers were given.
function Master:handed()
  local list = {}
  for key, sock in pairs(self.listeners) do
    local fd = sock:fd()
    if fd and fd >= 0 then list[#list + 1] = { fd = fd, name = self.fdnames[key] } end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

--- SIGUSR2: start a new master from the executable on disk; once it is
-- ready, retire (the new one serves on the same sockets).
function Master:upgrade()
  if self.upgrading or self.stopping or self.reloading then
    self.log.warn("master: SIGUSR2 ignored: %s", self.stopping and "stopping"
      or self.reloading and "a rolling reload is under way" or "an upgrade is under way")
    return
  end
  self.upgrading = true
  self.log.info("master: SIGUSR2: starting a new master from %s", self.opts.exe or "?")
  local pid, err = upgrade.start(self.berth, self.opts, self:handed(), true)
  if not pid then
    self.upgrading = false
    self.log.error("master: upgrade failed (%s); still serving", err)
    return
  end
  self.upgrade_pid = pid
  self.log.info("master: the new master %d is ready; retiring", pid)
  self:stop("QUIT")
end

--- A second signal: the workers get it too (their own second signal),
-- then the master exits (berth.host's policy).
function Master:hurry()
  for pid in pairs(self.workers) do proc.kill(pid, "INT") end
end

function Master:install_signals()
  local berth = self.berth
  berth.signal("CHLD", function() self:reap() end)
  berth.signal("HUP", function() self:rolling_reload() end)
  berth.signal("USR2", function() self:upgrade() end)
  host.on_stop_signals(berth, {
    log = self.log, prefix = "master: ",
    graceful = function(name) self:stop(name) end,
    hurry = function(name) self:hurry(name) end,
  })
end

--- Run the master on the `berth` API table: the workers' channels (and
-- restart timers) keep the loop running until the stop.
-- @tparam table berth the berth module
-- @tparam table opts workers (count), argv (a worker's command line), grace
-- @return the master object
function master.run(berth, opts, pool)
  local m = Master.new(berth, opts)
  if pool then m.pool = pool end
  m:setup_shared()
  m:install_signals()
  for slot = 1, opts.workers do m.slots[slot] = m:spawn(slot) end
  return m
end

master.Master = Master

return master

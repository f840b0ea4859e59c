--- The binary upgrade (SIGUSR2, nginx's convention): start the executable
-- on disk again, with the same command line and the listening sockets
-- handed over the way systemd's socket activation hands them
-- (berth.inherit), and wait until it reports ready: a single process once
-- its script has run, a master once each of its workers has. Then the
-- caller retires: it stops accepting (the sockets stay open in the new
-- process, so no connection is refused or lost from the accept queues)
-- and drains. If the new process exits, or is not ready within
-- `upgrade.TIMEOUT`, it is killed and the old one keeps serving.
-- @module berth.upgrade
local core = require "berth.core"
local proc = core.proc

local upgrade = {}

--- Seconds the new process has to report ready.
upgrade.TIMEOUT = 30

-- The child's exit is collected by a master's SIGCHLD handler; a single
-- process (which has none: a handler reaping every child would take the
-- exit status of io.popen's) reaps this one child by its pid.
local function reap_later(berth, pid)
  local tries = 0
  berth.timer(0.1, 0.1, function(t)
    tries = tries + 1
    if proc.reap(pid) or tries > 600 then t:cancel() end
  end)
end

--- Task only: start the new process and wait for its "ready".
-- @tparam table berth the API table
-- @tparam table opts the host's options: `exe` (the path on disk),
-- `command` (this process's argv)
-- @tparam table handed {fd =, name =} of each listening socket
-- @tparam[opt] boolean reaped a SIGCHLD handler reaps children already
-- @treturn[1] integer the new process's pid, ready
-- @treturn[2] nil
-- @treturn[2] string why it is not
function upgrade.start(berth, opts, handed, reaped)
  if not opts.exe or not opts.command then return nil, "no executable path" end
  local mine, theirs = proc.socketpair()
  if not mine then return nil, "socketpair: " .. tostring(theirs) end
  local fds, names = {}, {}
  for i, h in ipairs(handed) do fds[i], names[i] = h.fd, h.name end
  local pid, err = proc.handover(opts.exe, opts.command, fds, names, theirs)
  proc.close(theirs)
  if not pid then
    proc.close(mine)
    return nil, "cannot start " .. opts.exe .. ": " .. tostring(err)
  end
  local sock <close> = core.adopt(mine)
  local msg, why = sock:read(5, upgrade.TIMEOUT)
  if msg == "ready" then return pid end
  why = why == "timeout" and ("not ready within %g s"):format(upgrade.TIMEOUT)
    or "it exited before it was ready"
  proc.kill(pid, "KILL")
  if not reaped then reap_later(berth, pid) end
  return nil, ("new process %d: %s"):format(pid, why)
end

return upgrade

--- Measuring a child process through /proc, for the specs: resident and
-- peak memory, CPU time, open descriptors, liveness. Sizes in bytes.
local proc = {}

-- A field of /proc/PID/status in bytes ("VmRSS", "VmHWM").
local function status_kb(pid, field)
  local f = assert(io.open("/proc/" .. pid .. "/status"), "no process " .. pid)
  local text = f:read("a")
  f:close()
  local kb = text:match("\n" .. field .. ":%s*(%d+) kB")
  assert(kb, ("no %s in /proc/%d/status"):format(field, pid))
  return tonumber(kb) * 1024
end

--- Resident set size of `pid` in bytes.
function proc.rss(pid) return status_kb(pid, "VmRSS") end

--- Peak resident set size of `pid` in bytes.
function proc.hwm(pid) return status_kb(pid, "VmHWM") end

--- Reset the peak RSS (VmHWM) to the current RSS, so that a later hwm()
-- measures only what happened since (Linux: clear_refs 5).
function proc.reset_hwm(pid)
  local f = assert(io.open("/proc/" .. pid .. "/clear_refs", "w"))
  f:write("5")
  f:close()
end

local ticks
--- User + system CPU time of `pid` in seconds (/proc/PID/stat).
function proc.cpu(pid)
  if not ticks then
    local h = io.popen("getconf CLK_TCK")
    ticks = h and tonumber(h:read("l")) or 100
    if h then h:close() end
  end
  local f = assert(io.open("/proc/" .. pid .. "/stat"), "no process " .. pid)
  local stat = f:read("a")
  f:close()
  -- pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
  -- majflt cmajflt utime stime ...: fields 14 and 15.
  local rest = stat:match(".*%) (.*)")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

--- Number of open descriptors of `pid`.
function proc.fds(pid)
  local h = assert(io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null"))
  local n = 0
  for _ in h:lines() do n = n + 1 end
  h:close()
  return n
end

--- Whether `pid` is still running (and not a zombie).
function proc.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a") or ""
  f:close()
  local state = stat:match(".*%) (%S)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

return proc

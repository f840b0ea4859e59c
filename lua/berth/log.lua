--- Levelled logging to stderr.
-- Silent but for errors when berth is used as a library; the `berth` host
-- raises the level to "info".
-- @module berth.log
local log = {}

local LEVELS = { off = 0, error = 1, warn = 2, info = 3, debug = 4 }
local current = LEVELS.error
local current_name = "error"

--- Get or set the level.
-- @tparam[opt] string name "off", "error", "warn", "info" or "debug"
-- @treturn string the level in force (after the change)
function log.level(name)
  if name ~= nil then
    local n = LEVELS[name]
    if not n then error("berth.log.level: unknown level '" .. tostring(name) .. "'", 2) end
    current, current_name = n, name
  end
  return current_name
end

--- Whether messages of `name` are shown.
function log.enabled(name)
  return (LEVELS[name] or 0) <= current
end

--- Write `message` at `name` (no formatting).
function log.write(name, message)
  if (LEVELS[name] or 0) > current then return end
  local t = os.time()
  io.stderr:write(os.date("!%Y-%m-%dT%H:%M:%SZ", t), " [", name, "] ",
    tostring(message), "\n")
end

for name in pairs(LEVELS) do
  if name ~= "off" then
    log[name] = function(fmt, ...)
      if LEVELS[name] > current then return end
      log.write(name, select("#", ...) > 0 and string.format(fmt, ...) or fmt)
    end
  end
end

return log

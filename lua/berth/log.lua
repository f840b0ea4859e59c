--- Levelled logging to stderr.
-- Silent but for errors when berth is used as a library; the `berth` host
-- raises the level to "info".
--
-- Every record is formatted whole and written with one `write(2)`, so
-- records from several processes sharing a stderr (`--workers`) never mix
-- inside a line. A record is one line (a message of several lines goes on
-- with lines that start with a tab):
--
--     2026-11-21T07:10:00.123Z 4242 [info] listening on 127.0.0.1:7000
--     2026-11-21T07:10:01.008Z 4243/w2 [error] 127.0.0.1:51234: handler error: ...
--
-- (UTC time with milliseconds; the process id, with `/wN` in worker N and
-- `/master` in the master; the level; the peer of the connection being
-- handled, when the record is written from its handler or callbacks).
-- With `log.format("json")` (`berth --log-format json`) each record is one
-- JSON object per line: `time`, `level`, `pid`, `worker` (in a worker),
-- `master` (true, in the master), `peer` (from a handler), `message`.
-- The C core writes its own records (accept warnings, internal errors)
-- through the same formatter.
-- @module berth.log
local core = require "berth.core"

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

--- Get or set the record format (process-wide, like stderr).
-- @tparam[opt] string name "text" (the default) or "json"
-- @treturn string the format in force (after the change)
function log.format(name)
  if name ~= nil and name ~= "text" and name ~= "json" then
    error(("berth.log.format: format must be \"text\" or \"json\" (got %s)")
      :format(type(name) == "string" and ("%q"):format(name) or tostring(name)), 2)
  end
  return core.logformat(name)
end

--- Whether messages of `name` are shown.
-- @tparam string name a level
-- @treturn boolean
function log.enabled(name)
  return (LEVELS[name] or 0) <= current
end

--- Write `message` at level `name` (no formatting), if the level shows it.
-- @tparam string name a level
-- @param message any value (converted with tostring)
-- @param[opt] peer the connection it is about: a Socket, a "host:port"
-- string, or false for none; by default the connection whose handler or
-- callback is running, if any
function log.write(name, message, peer)
  if (LEVELS[name] or 0) > current then return end
  core.log(name, message, peer)
end

--- `log.error(fmt, ...)`, `log.warn`, `log.info`, `log.debug`: write a
-- `string.format`-style message at that level.
-- @function error
-- @tparam string fmt
-- @param ...
for name in pairs(LEVELS) do
  if name ~= "off" then
    log[name] = function(fmt, ...)
      if LEVELS[name] > current then return end
      core.log(name, select("#", ...) > 0 and string.format(fmt, ...) or fmt)
    end
  end
end

return log

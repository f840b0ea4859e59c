-- echo_cqueues.lua - lua-cqueues echo server for the berth benchmarks: the
-- "Lua coroutines on an event loop" point of comparison for the echo
-- workloads (the same programming model berth offers).
--
-- Run with lua5.4. Listens on 127.0.0.1:$PORT ($PORT unset or 0 =
-- ephemeral), prints "listening on 127.0.0.1:PORT" when ready and echoes
-- every byte back; one coroutine per connection, binary unbuffered mode.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local CHUNK = 64 * 1024

local function serve(con)
  con:setmode("bn", "bn")
  con:onerror(function(_, _, why) return why end) -- return errors, don't throw
  while true do
    local data = con:xread(-CHUNK)
    if not data or not con:xwrite(data, "n") then break end
  end
  con:close()
end

local server = socket.listen{host = "127.0.0.1", port = tonumber(os.getenv("PORT") or "0") or 0,
                             reuseaddr = true, nodelay = true, backlog = 4096}
assert(server:listen())
local _, _, port = server:localname()
print(("listening on 127.0.0.1:%d"):format(port))
io.stdout:flush()

-- accept errors (say EMFILE) are returned, not thrown, and retried shortly
server:onerror(function(_, _, why) return why end)
local loop = cqueues.new()
loop:wrap(function()
  while true do
    local con = server:accept{nodelay = true}
    if con then loop:wrap(serve, con) else cqueues.sleep(0.01) end
  end
end)
assert(loop:loop())

-- Echo server: every byte a client sends comes back.
-- PORT (default 7000, 0 for any free port) and HOST (default 127.0.0.1).
local berth = require "berth"

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7000),
  handler = function(sock)
    while true do
      local data = sock:readsome()
      if not data or not sock:write(data) then return end
    end
  end,
})

print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

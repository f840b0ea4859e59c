-- A "game loop" that owns its main loop and serves the network on the side:
-- each frame it updates its world, then gives berth the rest of the frame
-- with berth.step(timeout). Clients on PORT (default 7003) can ask for the
-- frame counter ("frame\n") or stop the game ("quit\n").
-- Run it with the stock interpreter from the repository root:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lib/?.so;;" \
--     lua5.4 examples/embed/game_loop.lua
local berth = require "berth"

local FRAME = 1 / 60      -- seconds per frame
local world = { frame = 0, running = true }

local server = assert(berth.serve{
  host = os.getenv("HOST") or "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 7003),
  handler = function(sock)
    for line in sock:lines() do
      if line == "frame" then sock:write(world.frame, "\n")
      elseif line == "quit" then world.running = false; sock:write("bye\n"); return
      else sock:write("unknown command\n") end
    end
  end,
})
print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

local clock = berth.now
while world.running do
  local start = clock()
  world.frame = world.frame + 1          -- the game's own work goes here
  repeat                                 -- network until the frame is over
    berth.step(math.max(0, FRAME - (clock() - start)))
  until clock() - start >= FRAME or not world.running
end
server:close()
berth.step(0)
print(("stopped after %d frames"):format(world.frame))

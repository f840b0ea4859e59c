-- Regression (issue 9, class 15): a berth.loop() dropped while it had a
-- serve{} server was never collected: its listener stayed bound with
-- nothing serving it, because the anchor table was a strong registry
-- reference (registry -> anchors -> server -> loop). Class: what a loop
-- anchors is reachable only through the loop (its user value), so a
-- dropped loop releases everything.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

describe("regress: a dropped loop", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("is collected with its listeners, timers and signals", function()
    local port
    do
      local other = berth.loop()
      local server = assert(other.serve { host = "127.0.0.1", port = 0,
        handler = function(sock) sock:write("x") end })
      port = server:port()
      other.timer(60, 1, function() end)
      other.signal("USR2", function() end)
    end
    collectgarbage()
    collectgarbage()
    run(function()
      helpers.assert_fail("refused", nil, berth.connect("127.0.0.1", port, { timeout = 1 }))
      -- The signal went with it: this loop may watch USR2 now.
      local _sig <close> = berth.signal("USR2", function() end)
    end)
  end)
end)

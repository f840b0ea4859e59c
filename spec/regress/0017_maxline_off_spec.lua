-- Regression (issue 9, class 12): maxline = false ("no limit") is stored as
-- SIZE_MAX, and "maxline + 1" (a pending \r) and "maxline + #delim"
-- overflowed to tiny numbers: every line or delimited read that arrived in
-- pieces failed with "toolarge". Class: limit arithmetic never wraps (one
-- helper, over(n, limit, extra)).
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

describe("regress: maxline = false", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("lets lines and delimited reads arrive in pieces, however long", function()
    run(function()
      local p <close> = helpers.pair { maxline = false }
      berth.spawn(function()
        for _ = 1, 50 do
          p.client:write(string.rep("a", 4000))
          berth.sleep(0)
        end
        p.client:write("\r\n", string.rep("b", 3000))
        berth.sleep(0.01)
        p.client:write("--END--")
      end)
      local line = assert(p.peer:read("l", 5))
      assert.equal(200000, #line)
      local block = assert(p.peer:readuntil("--END--", 5))
      assert.equal(string.rep("b", 3000), block)
    end)
  end)
end)

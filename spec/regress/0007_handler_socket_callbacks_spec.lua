-- Regression: a berth.serve handler that put its own socket into
-- on("data") mode crashed (segfault) or lost every chunk. A handler's
-- socket is anchored under its task, not under its own key, and the data
-- callback looked it up by its own key and got nil. Callbacks now anchor
-- the socket under its own key as well.
local support = require "support"
local berth = support.berth
local run = support.run

describe("regress: on(\"data\") on a handler's own socket", function()
  before_each(support.before)
  after_each(support.after)

  it("delivers every chunk and the close", function()
    run(function()
      local got, closed = 0, berth.cond()
      local server <close> = support.serve(function(sock)
        local done = berth.cond()
        sock:on("data", function(chunk) got = got + #chunk end)
        sock:on("close", function(code) done:signal(code) end)
        closed:signal(done:wait(5))
      end)
      local c <close> = support.connect(server)
      local chunk = ("x"):rep(65536)
      for _ = 1, 64 do assert(c:write(chunk)) end
      assert(c:flush(5))
      c:close()
      assert.equal("closed", closed:wait(5))
      assert.equal(64 * 65536, got)
    end, 10)
  end)
end)

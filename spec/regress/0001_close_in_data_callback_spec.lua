-- Regression (STYLE T6, mandatory from day one): closing a socket from
-- inside its own on("data") callback. The C dispatcher that called the
-- callback must not touch the freed socket or its watchers afterwards (L4),
-- and no further callback may run for the closed socket.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect

describe("regress: close inside the data callback", function()
  before_each(support.before)
  after_each(support.after)

  it("closes the socket, stops callbacks and reports the close once", function()
    run(function()
      local p <close> = support.pair()
      local got, closed_with
      p.client:on("close", expect(function(code) closed_with = code end, 1))
      p.client:on("data", expect(function(chunk)
        got = chunk
        assert.is_true(p.client:close())
        collectgarbage()
      end, 1))
      assert(p.peer:write("first"))
      support.wait_until(function() return closed_with end)
      assert.equal("first", got)
      assert.equal("closed", closed_with)
      assert.equal(-1, p.client:fd())
      -- The peer sees the close, and writing more triggers no callback.
      assert.equal("", p.peer:read("a", 2))
      p.peer:write("second")
      berth.sleep(0.05) -- a quiet period: a callback on the closed socket would show
    end)
  end)

  it("survives the socket being unreferenced and collected after the close", function()
    run(function()
      local server <close> = support.listen()
      local before = berth.stats().sockets
      local peer_closed = false
      do
        local client = support.connect(server)
        local peer = assert(server:accept(2))
        client:on("data", expect(function() client:close() end, 1))
        berth.spawn(function()
          assert(peer:write("x"))
          peer_closed = peer:read("a", 2) == ""
          peer:close()
        end)
      end
      support.wait_until(function() return peer_closed end)
      collectgarbage()
      collectgarbage()
      assert.equal(before, berth.stats().sockets)
    end)
  end)
end)

-- Regression (STYLE T6, mandatory from day one): closing a socket while
-- another task waits on it. Every wait must end (R6): the waiting reader or
-- writer is woken with nil, "closed" instead of staying suspended forever on
-- a dead socket, and its task finishes.
local support = require "support"
local berth = support.berth
local run = support.run

describe("regress: close while another task waits", function()
  before_each(support.before)
  after_each(support.after)

  it("wakes a waiting reader with nil, 'closed'", function()
    run(function()
      local p <close> = support.pair()
      local result
      berth.spawn(function() result = table.pack(p.client:read("l")) end)
      berth.sleep(0) -- the reader parks
      assert.is_nil(result)
      p.client:close()
      support.wait_until(function() return result end, 2, "the reader to wake")
      support.assert_fail("closed", nil, table.unpack(result, 1, result.n))
    end)
  end)

  it("wakes a waiting writer with nil, 'closed'", function()
    run(function()
      local p <close> = support.pair()
      p.client:setoption("highwater", 4096)
      local result
      berth.spawn(function()
        result = table.pack(p.client:write(("w"):rep(32 * 1024 * 1024)))
      end)
      berth.sleep(0) -- the writer parks on backpressure
      assert.is_nil(result, "the write should be parked on backpressure")
      p.client:close()
      support.wait_until(function() return result end, 2, "the writer to wake")
      support.assert_fail("closed", nil, table.unpack(result, 1, result.n))
    end, 10)
  end)

  it("wakes a handler blocked in read when the socket is closed from elsewhere", function()
    run(function()
      local handler_result
      local server_sock
      local server <close> = support.serve(function(sock)
        server_sock = sock
        handler_result = table.pack(sock:read("l"))
      end)
      local client <close> = support.connect(server)
      support.wait_until(function() return server_sock end)
      berth.sleep(0) -- the handler parks in its read
      server_sock:close()
      support.wait_until(function() return handler_result end)
      support.assert_fail("closed", nil, table.unpack(handler_result, 1, handler_result.n))
      server_sock = nil
      support.assert_fail("closed", "", client:read("l", 2))
    end)
  end)
end)

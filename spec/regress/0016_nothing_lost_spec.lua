-- Regression (issue 9, classes 8-11: nothing lost, every code right).
--  8. A handler that wrote and returned had its socket closed with data
--     still buffered: a 4 MiB write to a client that starts reading later
--     arrived short by up to 64 KiB. A handler task now flushes what it
--     wrote (bounded by send_timeout and max_output) before its socket
--     closes.
--  9. After read("l"), switching to on("data") never delivered the bytes
--     already buffered: they now go to the callback first.
-- 10. write(...) with a bad argument past the 64th sent the first batches,
--     then raised: every argument is checked before any byte is sent.
-- 11. write after shutdown("w") returned nil, nil (now nil, "closed"), and a
--     read after a local close() said "reset" if the peer had reset earlier
--     (a local close now says "closed").
local helpers = require "support"
local berth = helpers.berth
local run, expect = helpers.run, helpers.expect

describe("regress: nothing lost", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("a handler's last write reaches a client that reads late", function()
    run(function()
      local blob = helpers.random_bytes(4 * 1024 * 1024, 9)
      local server <close> = assert(berth.serve {
        host = "127.0.0.1", port = 0, max_output = 16 * 1024 * 1024,
        handler = function(sock) assert(sock:write(blob)) end,
      })
      local client <close> = helpers.connect(server)
      berth.sleep(0.3) -- the handler is waiting on a full buffer meanwhile
      local got, code, rest = client:read("a", 5)
      helpers.assert_bytes(blob, got or rest)
      assert.is_nil(code)
    end, 10)
  end)

  it("bytes a read left buffered go to on(\"data\") first", function()
    run(function()
      local p <close> = helpers.pair()
      assert(p.peer:write("line\nrest of it"))
      assert.equal("line", p.client:read("l", 2))
      local chunks = {}
      p.client:on("data", expect(function(chunk) chunks[#chunks + 1] = chunk end, 2))
      helpers.wait_until(function() return #chunks == 1 end, 2, "the buffered bytes")
      assert.equal("rest of it", chunks[1])
      assert(p.peer:write("more"))
      helpers.wait_until(function() return #chunks == 2 end, 2, "the next chunk")
      assert.equal("more", chunks[2])
      p.client:on("data", nil)
    end)
  end)

  it("write checks every argument before it sends a byte", function()
    run(function()
      local p <close> = helpers.pair()
      local args = {}
      for i = 1, 70 do args[i] = "x" end
      args[66] = {}
      helpers.assert_raises("bad argument #67", p.client.write, p.client, table.unpack(args, 1, 70))
      helpers.assert_fail("timeout", nil, p.peer:readsome(100, 0.1))
      assert(p.client:write("ok\n"))
      assert.equal("ok", p.peer:read("l", 2))
    end)
  end)

  it("write after shutdown(\"w\") and read after a local close say closed", function()
    run(function()
      local p <close> = helpers.pair()
      assert(p.client:shutdown("w"))
      helpers.assert_fail("closed", nil, p.client:write("late"))
      -- The peer resets the connection; the reader sees "reset" once...
      local q <close> = helpers.pair()
      assert(q.peer:write("x")) -- unread data makes close() send a RST
      berth.sleep(0.05)
      q.client:close()
      berth.sleep(0.05)
      local _, code = q.peer:read("a", 1)
      assert.equal("reset", code)
      -- ...and after a local close it is "closed".
      q.peer:close()
      helpers.assert_fail("closed", nil, q.peer:read("l", 1))
      helpers.assert_fail("closed", nil, q.peer:write("z"))
    end)
  end)
end)

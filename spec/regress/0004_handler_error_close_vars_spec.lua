-- Regression (STYLE T6, mandatory from day one): an error inside a handler.
-- It ends that handler only: its `<close>` variables run, its socket is
-- closed, the error reaches the server's onerror (or berth.onerror) with
-- (err, traceback, sock), and other connections keep being served.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect

local function closer(log, name)
  return setmetatable({}, { __close = function() log[#log + 1] = name end })
end

describe("regress: error inside a handler", function()
  before_each(support.before)
  after_each(support.after)

  it("runs <close> variables, calls onerror and keeps serving others", function()
    run(function()
      local closed = {}
      local server <close> = assert(berth.serve {
        host = "127.0.0.1", port = 0,
        handler = function(sock)
          local line = sock:read("l")
          if line == "boom" then
            local _guard <close> = closer(closed, "guard")
            error("kaboom in handler")
          end
          sock:write("ok:", line, "\n")
          sock:read("l")
        end,
        onerror = expect(function(err, traceback, sock)
          assert.matches("kaboom in handler", tostring(err))
          assert.matches("stack traceback", traceback)
          assert.is_not_nil(sock)
          assert.equal("function", type(sock.read))
        end, 1),
      })
      local good <close> = support.connect(server)
      local bad <close> = support.connect(server)
      assert(bad:write("boom\n"))
      support.assert_fail("closed", "", bad:read("l", 2))
      assert.same({ "guard" }, closed)
      assert.equal("ok:fine", support.roundtrip(good, "fine"))
      assert.equal(0, #support.take_errors(), "the server's onerror takes the error")
    end)
  end)

  it("falls back to berth.onerror with the socket when the server has none", function()
    run(function()
      local server <close> = support.serve(function(sock)
        local _guard <close> = closer({}, "unused")
        sock:read("l")
        error({ code = 42 })
      end)
      local client <close> = support.connect(server)
      assert(client:write("go\n"))
      local errs = support.wait_errors(1)
      assert.same({ code = 42 }, errs[1].err)
      assert.equal("string", type(errs[1].traceback))
      assert.is_not_nil(errs[1].sock)
      support.assert_fail("closed", "", client:read("l", 2))
    end)
  end)

  it("berth.onerror returns the previous handler", function()
    local mine = function() end
    local previous = berth.onerror(mine)
    assert.equal("function", type(previous))
    assert.equal(mine, berth.onerror(previous))
  end)
end)

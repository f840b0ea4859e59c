-- Regression (STYLE T6, mandatory from day one): an error inside a handler.
-- It ends that handler only: its `<close>` variables run, its socket is
-- closed, the error reaches the server's onerror (or berth.onerror) with
-- (err, traceback, sock), and other connections keep being served.
local helpers = require "helpers"
local berth = helpers.berth
local run, expect = helpers.run, helpers.expect

local function closer(log, name)
  return setmetatable({}, { __close = function() log[#log + 1] = name end })
end

describe("regress: error inside a handler", function()
  before_each(helpers.before)
  after_each(helpers.after)

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
      local good <close> = helpers.connect(server)
      local bad <close> = helpers.connect(server)
      assert(bad:write("boom\n"))
      helpers.assert_fail("closed", "", bad:read("l", 2))
      assert.same({ "guard" }, closed)
      assert.equal("ok:fine", helpers.roundtrip(good, "fine"))
      assert.equal(0, #helpers.take_errors(), "the server's onerror takes the error")
    end)
  end)

  it("falls back to berth.onerror with the socket when the server has none", function()
    run(function()
      local server <close> = helpers.serve(function(sock)
        local _guard <close> = closer({}, "unused")
        sock:read("l")
        error({ code = 42 })
      end)
      local client <close> = helpers.connect(server)
      assert(client:write("go\n"))
      local errs = helpers.wait_errors(1)
      assert.same({ code = 42 }, errs[1].err)
      assert.equal("string", type(errs[1].traceback))
      assert.is_not_nil(errs[1].sock)
      helpers.assert_fail("closed", "", client:read("l", 2))
    end)
  end)

  it("berth.onerror returns the previous handler", function()
    local mine = function() end
    local previous = berth.onerror(mine)
    assert.equal("function", type(previous))
    assert.equal(mine, berth.onerror(previous))
  end)
end)

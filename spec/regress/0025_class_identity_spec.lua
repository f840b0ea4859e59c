-- Guard (issue 17): the hot methods check their objects' classes by
-- comparing metatable addresses held as the methods' upvalues, instead of
-- looking the class up in the registry on every call. Class: a method
-- given an object of another class -- self, or an argument that must be a
-- Buffer -- raises the usual "X expected" error, whichever table the
-- function was taken from, and never treats one class's memory as
-- another's.
local support = require "support"
local berth = support.berth
local run = support.run
local assert_raises = support.assert_raises
local http = require "berth.http"

describe("regress: methods refuse objects of another class", function()
  before_each(support.before)
  after_each(support.after)

  it("Socket I/O methods refuse a Buffer, a ServerSocket or a string as self", function()
    run(function()
      local p <close> = support.pair()
      local buf = berth.buffer("x")
      for _, name in ipairs { "read", "readsome", "readinto", "write", "flush", "pending", "close" } do
        local method = p.client[name]
        assert_raises("berth.Socket expected", method, buf, buf)
        assert_raises("berth.Socket expected", method, p.server, buf)
        assert_raises("berth.Socket expected", method, "socket", buf)
      end
      assert.equal("x", buf:peek()) -- nothing consumed
    end)
  end)

  it("readinto and write refuse a Socket or a ServerSocket where a Buffer goes", function()
    run(function()
      local p <close> = support.pair()
      assert_raises("berth.Buffer expected", p.client.readinto, p.client, p.peer)
      assert_raises("berth.Buffer expected", p.client.readinto, p.client, p.server)
      assert_raises("string expected", p.client.write, p.client, p.peer)
      assert_raises("string expected", p.client.write, p.client, "ok", p.server)
      -- and a real Buffer still goes through, both ways
      assert(p.client:write(berth.buffer("ping")))
      local into = berth.buffer()
      assert.equal(4, p.peer:readinto(into, 4, 2))
      assert.equal("ping", into:take())
    end)
  end)

  it("Buffer methods refuse a Socket as self", function()
    run(function()
      local p <close> = support.pair()
      local buf = berth.buffer()
      for _, name in ipairs { "take", "peek", "skip", "append", "find", "clear" } do
        assert_raises("berth.Buffer expected", buf[name], p.client, "x")
      end
      assert.is_true(p.client:write("still open") ~= nil)
    end)
  end)

  it("Request and Response methods refuse each other", function()
    run(function()
      local seen = {}
      local server <close> = assert(http.serve {
        host = "127.0.0.1", port = 0,
        handler = function(req, res)
          seen.res_as_req = { pcall(req.header, res, "Host") }
          seen.req_as_res = { pcall(res.status, req, 200) }
          seen.sock_as_res = { pcall(res.send, req.socket, "x") }
          res:send("ok")
        end,
      })
      local sock <close> = support.connect(server:port())
      assert(sock:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.equal("HTTP/1.1 200 OK", sock:read("l", 2))
      assert.is_false(seen.res_as_req[1])
      assert.truthy(tostring(seen.res_as_req[2]):find("berth.http.Request expected", 1, true))
      assert.is_false(seen.req_as_res[1])
      assert.truthy(tostring(seen.req_as_res[2]):find("berth.http.Response expected", 1, true))
      assert.is_false(seen.sock_as_res[1])
      assert.truthy(tostring(seen.sock_as_res[2]):find("berth.http.Response expected", 1, true))
    end)
  end)

  it("res:finish() says whether the body was read and what input is buffered", function()
    run(function()
      local results = {}
      local server <close> = assert(http.serve {
        host = "127.0.0.1", port = 0,
        handler = function(req, res)
          if req.path == "/read" then req:body() end
          res:send("ok")
          results[#results + 1] = { req.path, res:finish() }
        end,
      })
      local sock <close> = support.connect(server:port())
      -- three pipelined requests in one write: a body left unread, a body
      -- read, and a last one with nothing behind it
      assert(sock:write("POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "GET /last HTTP/1.1\r\nHost: x\r\n\r\n"))
      for _ = 1, 3 do
        assert.equal("HTTP/1.1 200 OK", sock:read("l", 2))
        assert(sock:readuntil("ok", 2))
      end
      assert.equal(3, #results)
      assert.same({ "/skip", true, false }, { table.unpack(results[1], 1, 3) })
      assert.same({ "/read", true, true }, { table.unpack(results[2], 1, 3) })
      assert.is_true(results[2][4] > 0) -- the third request was buffered behind it
      assert.same({ "/last", true, true, 0 }, results[3])
    end)
  end)
end)

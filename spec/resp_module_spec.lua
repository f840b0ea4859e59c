-- berth.resp: RESP commands read in C from a socket's buffer (src/resp_lua.c
-- on src/resp.c), replies queued until the next read waits.
local support = require "support"
local berth = support.berth
local resp = require "berth.resp"
local run = support.run
local assert_fail = support.assert_fail

local function C(...)
  local out = { ("*%d\r\n"):format(select("#", ...)) }
  for _, a in ipairs { ... } do out[#out + 1] = ("$%d\r\n%s\r\n"):format(#a, a) end
  return table.concat(out)
end

describe("berth.resp", function()
  before_each(support.before)
  after_each(support.after)

  it("reads multibulk, inline and empty commands; a pipeline in one write", function()
    run(function()
      local p <close> = support.pair()
      assert(p.client:write(C("SET", "k", "a\r\nb\0") .. "PING  x\ty\r\n" .. "*0\r\n" .. C("GET", "k")))
      assert.same({ "SET", "k", "a\r\nb\0" }, resp.read(p.peer, 2))
      assert.same({ "PING", "x", "y" }, resp.read(p.peer, 2))
      assert.same({}, resp.read(p.peer, 2))
      assert.same({ "GET", "k" }, resp.read(p.peer, 2))
      assert_fail("timeout", nil, resp.read(p.peer, 0.05))
    end)
  end)

  it("resumes commands arriving in pieces, two sockets interleaved", function()
    run(function()
      local a <close> = support.pair()
      local b <close> = support.pair()
      local args = {}
      for i = 1, 300 do args[i] = ("v%d"):rep(i % 7) .. i end
      local wa, wb = C(table.unpack(args)), C("MSET", ("x"):rep(40000), "y")
      local got = {}
      berth.spawn(function() got.a = resp.read(a.peer, 5) end)
      berth.spawn(function() got.b = resp.read(b.peer, 5) end)
      local i, j = 1, 1
      while i <= #wa or j <= #wb do -- pieces of 1 to 97 bytes, in turn
        local n = (i * 7) % 97 + 1
        if i <= #wa then assert(a.client:write(wa:sub(i, i + n - 1))); i = i + n end
        if j <= #wb then assert(b.client:write(wb:sub(j, j + 4095))); j = j + 4096 end
        berth.sleep(0)
      end
      berth.sleep(0.05)
      assert.same(args, got.a)
      assert.same({ "MSET", ("x"):rep(40000), "y" }, got.b)
    end)
  end)

  it("returns Redis's error texts, and the socket's max_input bounds a command", function()
    run(function()
      local p <close> = support.pair()
      assert(p.client:write("*1\r\n$x\r\n"))
      assert_fail("protocol", "Protocol error: invalid bulk length", resp.read(p.peer, 2))
      local q <close> = support.pair()
      assert(q.client:write("*2\r\n$1\r\nx\r\n$1\r\nyz\r\n"))
      assert_fail("protocol", "Protocol error: expected '\\r\\n' after bulk data", resp.read(q.peer, 2))
      local lim = support.pair({ max_input = 100 })
      assert(lim.client:write("*2\r\n$3\r\nGET\r\n$101\r\n"))
      assert_fail("protocol", "Protocol error: invalid bulk length", resp.read(lim.peer, 2))
      local lim2 = support.pair({ max_input = 100 })
      assert(lim2.client:write("*2\r\n$3\r\nGET\r\n$90\r\n"))
      assert_fail("protocol", "Protocol error: command too large", resp.read(lim2.peer, 2))
    end)
  end)

  it("a command a timed-out read left unfinished is parsed afresh once another read took bytes", function()
    run(function()
      local p <close> = support.pair()
      -- "*1", then an argument of 100 bytes whose first 18 are a command
      assert(p.client:write("*1\r\n$100\r\n" .. C("z", "y")))
      assert_fail("timeout", nil, resp.read(p.peer, 0.05)) -- stopped in argument 1
      assert.equal("*1\r\n$100\r\n", p.peer:read(10, 2))
      -- what is left starts a command of its own: the progress above (one
      -- argument due, after 4 bytes) must not be resumed on it
      assert.same({ "z", "y" }, resp.read(p.peer, 2))
      assert_fail("timeout", nil, resp.read(p.peer, 0.05))
    end)
  end)

  it("EOF: closed, with the unread part of a command", function()
    run(function()
      local p <close> = support.pair()
      assert(p.client:write(C("PING") .. "*2\r\n$3\r\nGET"))
      p.client:shutdown("w")
      assert.same({ "PING" }, resp.read(p.peer, 2))
      assert_fail("closed", "*2\r\n$3\r\nGET", resp.read(p.peer, 2))
    end)
  end)

  it("send queues replies: a batch leaves in one write when the next read waits", function()
    run(function()
      local p <close> = support.pair()
      assert(p.client:write(C("A") .. C("B") .. C("C")))
      berth.spawn(function()
        while true do
          local args = resp.read(p.peer, 2)
          if not args then return end
          assert(resp.send(p.peer, "+", args[1], "\r\n"))
        end
      end)
      assert.equal("+A\r\n+B\r\n+C\r\n", p.client:readsome(100, 2))
      assert.has_error(function() resp.send(p.peer, {}) end)
    end)
  end)
end)

-- Bytes that pass through a server without becoming Lua strings:
-- berth.buffer(), sock:readinto(buf), sock:write(buf), length-prefixed
-- frames (sock:read(">s4")) and from:relay(to) (splice(2) between plain
-- sockets, a copy through C with TLS).
local support = require "support"
local berth = support.berth
local run = support.run
local assert_fail, assert_raises = support.assert_fail, support.assert_raises

local KiB, MiB = 1024, 1024 * 1024

describe("berth.buffer", function()
  before_each(support.before)
  after_each(support.after)

  it("holds bytes: append, #, peek, take, skip, find, clear", function()
    local b = berth.buffer("ab", "c", 12)
    assert.equal(5, #b)
    assert.equal("abc12", b:peek())
    assert.equal("ab", b:peek(2))
    assert.equal(b, b:append("\0\r\n", "xyz"))
    assert.equal(11, #b)
    assert.equal(6, b:find("\0\r\n"))
    assert.equal(9, b:find("x", 7))
    assert.is_nil(b:find("q"))
    assert.equal("abc", b:take(3))
    assert.equal(b, b:skip(2))
    assert.equal("\0\r\nxyz", b:take())
    assert.equal(0, #b)
    assert.equal("", b:take(10))
    b:append(("z"):rep(100000))
    assert.equal(100000, #b)
    assert.equal(0, #b:clear())
    assert.equal("Buffer (0 bytes)", tostring(b))
  end)

  it("raises for misuse", function()
    local b = berth.buffer()
    assert_raises("negative count", b.take, b, -1)
    assert_raises("negative count", b.skip, b, -1)
    assert_raises("empty string", b.find, b, "")
    assert_raises("string expected", b.append, b, {})
    assert_raises("Buffer expected", b.take, {})
  end)
end)

describe("sock:readinto and sock:write(buf)", function()
  before_each(support.before)
  after_each(support.after)

  it("reads into a Buffer and writes it out, which empties it", function()
    run(function()
      local p <close> = support.pair()
      local buf = berth.buffer()
      assert(p.client:write("hello"))
      assert.equal(5, p.peer:readinto(buf))
      assert(p.client:write(" world"))
      assert.equal(6, p.peer:readinto(buf))
      assert.equal("hello world", buf:peek())
      assert.equal(p.peer, p.peer:write("<", buf, ">"))
      assert.equal(0, #buf)
      assert.equal("<hello world>", p.client:read(13, 2))
    end)
  end)

  it("honours max, and what a read left buffered comes first", function()
    run(function()
      local p <close> = support.pair()
      assert(p.client:write("line one\nrest of it"))
      assert.equal("line one", p.peer:read("l", 2))
      local buf = berth.buffer()
      assert.equal(4, p.peer:readinto(buf, 4))
      assert.equal("rest", buf:take())
      assert.equal(6, p.peer:readinto(buf, 100))
      assert.equal(" of it", buf:take())
    end)
  end)

  it("echoes 4 MiB byte-exact through one reused Buffer", function()
    run(function()
      local server = support.serve(function(sock)
        local buf = berth.buffer()
        while sock:readinto(buf) do
          if not sock:write(buf) then return end
        end
      end)
      local client <close> = support.connect(server)
      local blob = support.random_bytes(4 * MiB, 31)
      berth.spawn(function() assert(client:write(blob)) end)
      support.assert_bytes(blob, client:read(#blob, 10))
      server:close()
    end, 20)
  end)

  it("times out consuming nothing, and reports EOF as read does", function()
    run(function()
      local p <close> = support.pair()
      local buf = berth.buffer("kept")
      assert_fail("timeout", nil, p.peer:readinto(buf, nil, 0.05))
      assert.equal("kept", buf:peek())
      p.client:shutdown("w")
      assert_fail("closed", "", p.peer:readinto(buf))
      assert.equal("kept", buf:peek())
    end)
  end)

  it("an idle reader keeps no memory in its Buffer", function()
    run(function()
      local p <close> = support.pair()
      local buf = berth.buffer()
      berth.spawn(function() p.peer:readinto(buf, 65536, 0.2) end)
      berth.sleep(0.05)
      -- A parked readinto with an empty Buffer has released its memory:
      -- the Buffer still works when the bytes come.
      assert(p.client:write("x"))
      berth.sleep(0.05)
      assert.equal("x", buf:take())
    end)
  end)

  it("raises for misuse", function()
    run(function()
      local p <close> = support.pair()
      assert_raises("Buffer expected", p.peer.readinto, p.peer, "not a buffer")
      assert_raises("must be positive", p.peer.readinto, p.peer, berth.buffer(), 0)
      assert_raises("string expected", p.peer.write, p.peer, {})
    end)
  end)
end)

describe('sock:read(">s4") and the other length prefixes', function()
  before_each(support.before)
  after_each(support.after)

  it("reads frames in both byte orders and every prefix size", function()
    run(function()
      local p <close> = support.pair()
      local formats = { ">s4", "<s4", ">s2", "<s2", ">s1", "s8", ">s8", "=s3", "s" }
      local payloads = { "", "a", "hello", ("\0\r\n"):rep(100) }
      local out = {}
      for _, f in ipairs(formats) do
        for _, pl in ipairs(payloads) do
          if f ~= ">s1" or #pl < 256 then out[#out + 1] = string.pack(f, pl) end
        end
      end
      assert(p.client:write(table.concat(out)))
      for _, f in ipairs(formats) do
        for _, pl in ipairs(payloads) do
          if f ~= ">s1" or #pl < 256 then
            assert.equal(pl, p.peer:read(f, 2), f)
          end
        end
      end
    end)
  end)

  it("assembles a frame that arrives a byte at a time", function()
    run(function()
      local p <close> = support.pair()
      local wire = string.pack(">s4", "split") .. string.pack(">s4", "next")
      berth.spawn(function()
        for i = 1, #wire do
          assert(p.client:write(wire:sub(i, i)))
          berth.sleep(0.002)
        end
      end)
      assert.equal("split", p.peer:read(">s4", 2))
      assert.equal("next", p.peer:read(">s4", 2))
    end)
  end)

  it("refuses a frame over max_input from its prefix, consuming nothing", function()
    run(function()
      local server = support.listen { max_input = 1000 }
      local client <close> = support.connect(server)
      local peer <close> = assert(server:accept(2))
      server:close()
      assert(client:write(string.pack(">I4", 1001), "x"))
      assert_fail("toolarge", nil, peer:read(">s4", 2))
      -- Nothing was consumed: the bytes are still there to read.
      assert.equal(string.pack(">I4", 1001) .. "x", peer:read(5, 2))
      assert(client:write(string.pack(">s4", ("y"):rep(1000))))
      assert.equal(("y"):rep(1000), peer:read(">s4", 2))
    end)
  end)

  it("a frame cut by EOF gives nil, closed and the bytes", function()
    run(function()
      local p <close> = support.pair()
      assert(p.client:write(string.pack(">I4", 10), "abc"))
      p.client:shutdown("w")
      assert_fail("closed", string.pack(">I4", 10) .. "abc", p.peer:read(">s4", 2))
    end)
  end)

  it("an unknown format still raises", function()
    run(function()
      local p <close> = support.pair()
      for _, f in ipairs { ">s9", ">s0", "s44", ">I4", "x", "<" } do
        assert_raises("invalid format", p.peer.read, p.peer, f)
      end
    end)
  end)
end)

describe("sock:relay", function()
  before_each(support.before)
  after_each(support.after)

  -- Task only: a -> (relay) -> b, i.e. two pairs with a relay task from
  -- the first pair's peer to the second pair's client. Returns the pairs
  -- and a table the relay's results land in.
  local function relayed(timeout)
    local one, two = support.pair(), support.pair()
    local res = {}
    berth.spawn(function()
      res.r = table.pack(one.peer:relay(two.client, timeout))
      res.done = true
    end)
    return one, two, res
  end

  it("moves 6 MiB byte-exact and returns the count at EOF", function()
    run(function()
      local one, two, res = relayed()
      local _ <close> = support.closing(one, two)
      local blob = support.random_bytes(6 * MiB, 41)
      berth.spawn(function()
        assert(one.client:write(blob))
        one.client:shutdown("w")
      end)
      support.assert_bytes(blob, two.peer:read(#blob, 10))
      support.wait_until(function() return res.done end, 2, "the relay to end")
      assert.same({ #blob, n = 1 }, res.r)
      -- The destination is not shut down: the caller decides.
      assert_fail("timeout", nil, two.peer:readsome(10, 0.05))
    end, 20)
  end)

  it("sends what a read left buffered first", function()
    run(function()
      local one, two = support.pair(), support.pair()
      local _ <close> = support.closing(one, two)
      assert(one.client:write("head\nbody"))
      assert.equal("head", one.peer:read("l", 2))
      local res
      berth.spawn(function() res = table.pack(one.peer:relay(two.client)) end)
      assert.equal("body", two.peer:read(4, 2))
      assert(one.client:write(" and more"))
      assert.equal(" and more", two.peer:read(9, 2))
      one.client:close()
      support.wait_until(function() return res end, 2, "the relay to end")
      assert.equal(13, res[1])
    end)
  end)

  it("backpressure: stops reading while the destination does not take", function()
    run(function()
      local one, two, res = relayed()
      local _ <close> = support.closing(one, two)
      local chunk = support.random_bytes(256 * KiB, 42)
      local sent, stop = 0, false
      berth.spawn(function()
        while not stop and one.client:write(chunk) do sent = sent + #chunk end
      end)
      -- Nobody reads two.peer: the writer must stall, with the relay and
      -- the kernel's buffers holding a bounded amount.
      local last, still = -1, 0
      while still < 3 do
        berth.sleep(0.1)
        if sent == last then still = still + 1 else still, last = 0, sent end
      end
      assert.is_true(sent < 64 * MiB, ("%d MiB went in while nobody read"):format(sent // MiB))
      stop = true
      local got = 0
      while got < sent do
        local piece = assert(two.peer:readsome(1 << 20, 5))
        got = got + #piece
      end
      assert.is_nil(res.done)
    end, 30)
  end)

  it("closing the source ends the relay with its code", function()
    run(function()
      local one, two, res = relayed()
      local _ <close> = support.closing(one, two)
      assert(one.client:write("x"))
      assert.equal("x", two.peer:read(1, 2))
      one.peer:close()
      support.wait_until(function() return res.done end, 2, "the relay to end")
      assert.same({ nil, "closed", 1, n = 3 }, res.r)
    end)
  end)

  it("a reset destination ends the relay with reset", function()
    run(function()
      local one, two, res = relayed()
      local _ <close> = support.closing(one, two)
      assert(one.client:write("x"))
      assert.equal("x", two.peer:read(1, 2))
      -- Unread bytes make close() send a RST.
      assert(one.client:write("unread"))
      support.wait_unread(two.peer, 2)
      two.peer:close()
      berth.sleep(0.05)
      local big = ("y"):rep(64 * KiB)
      for _ = 1, 10 do
        if res.done then break end
        one.client:write(big)
        berth.sleep(0.02)
      end
      support.wait_until(function() return res.done end, 2, "the relay to end")
      assert.is_nil(res.r[1])
      assert.is_true(res.r[2] == "reset" or res.r[2] == "closed", tostring(res.r[2]))
    end)
  end)

  it("times out after `timeout` seconds without a byte", function()
    run(function()
      local one, two, res = relayed(0.1)
      local _ <close> = support.closing(one, two)
      assert(one.client:write("abc"))
      assert.equal("abc", two.peer:read(3, 2))
      support.wait_until(function() return res.done end, 2, "the relay to time out")
      assert.same({ nil, "timeout", 3, n = 3 }, res.r)
    end)
  end)

  it("idle timeouts of either socket end it", function()
    run(function()
      local one, two = support.pair(), support.pair()
      local _ <close> = support.closing(one, two)
      two.client:setoption("idle_timeout", 0.1)
      local res
      berth.spawn(function() res = table.pack(one.peer:relay(two.client)) end)
      support.wait_until(function() return res end, 2, "the relay to end")
      assert.same({ nil, "timeout", 0, n = 3 }, res)
    end)
  end)

  it("raises for misuse", function()
    run(function()
      local p <close> = support.pair()
      assert_raises("cannot relay to itself", p.peer.relay, p.peer, p.peer)
      assert_raises("Socket expected", p.peer.relay, p.peer, "x")
      berth.spawn(function() p.peer:read(1, 0.2) end)
      berth.sleep(0.01)
      assert_raises("pending read", p.peer.relay, p.peer, p.client)
    end)
  end)

  it("an idle relayed connection holds no pipe", function()
    run(function()
      local one, two = support.pair(), support.pair()
      local _ <close> = support.closing(one, two)
      local done = 0
      -- Warm up: the loop keeps a few spare pipes after the first relays.
      berth.spawn(function() one.peer:relay(two.client); done = done + 1 end)
      berth.spawn(function() two.client:relay(one.peer); done = done + 1 end)
      assert(one.client:write("ping"))
      assert.equal("ping", two.peer:read(4, 2))
      assert(two.peer:write("pong"))
      assert.equal("pong", one.client:read(4, 2))
      local fds = support.fds(support.pid())
      -- Many round trips later, with both relays idle again: no more.
      for i = 1, 50 do
        assert(one.client:write("m" .. i))
        assert.equal("m" .. i, two.peer:read(#("m" .. i), 2))
      end
      assert.equal(fds, support.fds(support.pid()))
      one.client:close()
      two.peer:close()
      support.wait_until(function() return done == 2 end, 2, "both relays to end")
    end)
  end)
end)

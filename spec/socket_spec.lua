-- Socket: reads, writes, timeouts, errors, callbacks and flow control
-- (README "API reference" > Socket). Close-in-callback, close-while-waiting,
-- GC of idle sockets, handler errors and bare yields live in spec/regress/.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect
local assert_fail, assert_raises = support.assert_fail, support.assert_raises

local KiB, MiB = 1024, 1024 * 1024

-- Task only: writes each piece as its own TCP segment (nodelay, and a pause
-- between pieces so they cannot coalesce).
local function write_in_segments(sock, pieces)
  sock:setoption("nodelay", true)
  for i, piece in ipairs(pieces) do
    if i > 1 then berth.sleep(0.02) end -- on purpose: separate segments
    assert(sock:write(piece))
  end
end

-- Task only: calls `read` until it fails; returns the list of results.
local function collect(read)
  local got = {}
  while true do
    local v = read()
    if not v then return got end
    got[#got + 1] = v
  end
end

describe("Socket", function()
  before_each(support.before)
  after_each(support.after)

  describe("read formats", function()
    it("read('l') returns lines without \\n or \\r\\n", function()
      run(function()
        local p <close> = support.pair()
        assert(p.peer:write("one\r\ntwo\nthree\r\n"))
        assert.equal("one", p.client:read("l", 2))
        assert.equal("two", p.client:read("l", 2))
        assert.equal("three", p.client:read("l", 2))
      end)
    end)

    it("read('L') keeps the end of line", function()
      run(function()
        local p <close> = support.pair()
        assert(p.peer:write("one\r\ntwo\n"))
        assert.equal("one\r\n", p.client:read("L", 2))
        assert.equal("two\n", p.client:read("L", 2))
      end)
    end)

    it("assembles a line split over several TCP segments", function()
      run(function()
        local p <close> = support.pair()
        berth.spawn(write_in_segments, p.peer, { "par", "tial li", "ne\r", "\nnext", "\n" })
        assert.equal("partial line", p.client:read("l", 2))
        assert.equal("next", p.client:read("l", 2))
      end)
    end)

    it("read(n) returns exactly n bytes across segments", function()
      run(function()
        local p <close> = support.pair()
        berth.spawn(write_in_segments, p.peer, { "0123", "456789ab" })
        assert.equal("012345", p.client:read(6, 2))
        assert.equal("6789ab", p.client:read(6, 2))
      end)
    end)

    it("read('a') returns everything up to EOF", function()
      run(function()
        local p <close> = support.pair()
        berth.spawn(function()
          write_in_segments(p.peer, { "all of it\n", "and more" })
          assert(p.peer:flush(2))
          p.peer:close()
        end)
        assert.equal("all of it\nand more", p.client:read("a", 2))
      end)
    end)

    it("read('a') returns '' when the peer closes without sending", function()
      run(function()
        local p <close> = support.pair()
        p.peer:close()
        assert.equal("", p.client:read("a", 2))
      end)
    end)

    it("readsome returns what is available, at most max bytes", function()
      run(function()
        local p <close> = support.pair()
        assert(p.peer:write("abcdef"))
        assert.equal("abcd", p.client:readsome(4, 2))
        assert.equal("ef", p.client:readsome(nil, 2))
        p.peer:close()
        assert_fail("closed", "", p.client:readsome(10, 2))
      end)
    end)

    it("readuntil returns the data before the delimiter and consumes it", function()
      run(function()
        local p <close> = support.pair()
        berth.spawn(write_in_segments, p.peer,
          { "key=value;HEAD\r\nX: y\r\n\r", "\nbody" })
        assert.equal("key", p.client:readuntil("=", 2))
        assert.equal("value", p.client:readuntil(";", 2))
        assert.equal("HEAD\r\nX: y", p.client:readuntil("\r\n\r\n", 2))
        assert.equal("body", p.client:read(4, 2))
      end)
    end)

    it("lines() iterates until EOF, with 'l' or 'L'", function()
      run(function()
        local p <close> = support.pair()
        local q <close> = support.pair()
        for _, pair in ipairs { p, q } do
          assert(pair.peer:write("a\nb\r\nc\n"))
          assert(pair.peer:flush(2))
          pair.peer:close()
        end
        assert.same({ "a", "b", "c" }, collect(p.client:lines()))
        assert.same({ "a\n", "b\r\n", "c\n" }, collect(q.client:lines("L")))
      end)
    end)

    it("echoes 1 MiB of random bytes exactly", function()
      run(function()
        local data = support.random_bytes(MiB)
        local server <close> = support.serve(support.echo)
        local client <close> = support.connect(server)
        berth.spawn(function()
          assert(client:write(data))
          assert(client:shutdown("w"))
        end)
        support.assert_bytes(data, client:read("a", 10))
      end, 15)
    end)
  end)

  describe("limits and timeouts", function()
    it("a line over maxline gives 'toolarge' and consumes nothing", function()
      run(function()
        local p <close> = support.pair()
        assert.equal(p.client, p.client:setoption("maxline", 16))
        local long = ("x"):rep(40) .. "\n"
        assert(p.peer:write(long))
        assert_fail("toolarge", nil, p.client:read("l", 2))
        assert.equal(long, p.client:read(#long, 2))
      end)
    end)

    it("a delimited read over maxline gives 'toolarge' and consumes nothing", function()
      run(function()
        local p <close> = support.pair()
        p.client:setoption("maxline", 8)
        assert(p.peer:write("abcdefghijkl;"))
        assert_fail("toolarge", nil, p.client:readuntil(";", 2))
        assert.equal("abcdefghijkl;", p.client:read(13, 2))
      end)
    end)

    it("listen{maxline=} sets the limit of accepted sockets", function()
      run(function()
        local p <close> = support.pair { maxline = 8 }
        assert(p.client:write("0123456789\n"))
        assert_fail("toolarge", nil, p.peer:read("l", 2))
        assert.equal("0123456789\n", p.peer:read(11, 2))
      end)
    end)

    it("a per-call read timeout gives 'timeout' and consumes nothing", function()
      run(function()
        local p <close> = support.pair()
        assert(p.peer:write("partial"))
        assert_fail("timeout", nil, p.client:read("l", 0.05))
        assert_fail("timeout", nil, p.client:read(10, 0.05))
        assert_fail("timeout", nil, p.client:readuntil(";", 0.05))
        local _, rbytes = p.client:pending()
        assert.equal(7, rbytes)
        assert(p.peer:write(" line;\n"))
        assert.equal("partial line", p.client:readuntil(";", 2))
        assert.equal("", p.client:read("l", 2))
      end)
    end)

    it("readsome times out when nothing arrives", function()
      run(function()
        local p <close> = support.pair()
        assert_fail("timeout", nil, p.client:readsome(10, 0.05))
        assert(p.peer:write("late"))
        assert.equal("late", p.client:readsome(10, 2))
      end)
    end)

    it("settimeout sets the default read timeout and a per-call timeout wins", function()
      run(function()
        local p <close> = support.pair()
        assert.equal(p.client, p.client:settimeout(0.05))
        assert_fail("timeout", nil, p.client:read("l"))
        p.client:settimeout(30)
        assert_fail("timeout", nil, p.client:read("l", 0.05)) -- well before 30 s
        p.client:settimeout(nil)
        berth.spawn(function()
          berth.sleep(0.2) -- a slow peer: the read must wait with no timeout
          p.peer:write("slow\n")
        end)
        assert.equal("slow", p.client:read("l")) -- no timeout any more
      end)
    end)

    it("a write timeout ends a write the peer never drains", function()
      run(function()
        local p <close> = support.pair()
        p.client:settimeout(0.1, "write")
        local chunk = ("w"):rep(64 * KiB)
        local result
        for _ = 1, 4096 do -- at most 256 MiB, far beyond any socket buffer
          result = table.pack(p.client:write(chunk))
          if not result[1] then break end
        end
        assert_fail("timeout", nil, table.unpack(result, 1, result.n))
        assert_fail("timeout", nil, p.client:flush(0.05))
      end, 10)
    end)
  end)

  describe("peer errors", function()
    it("gives 'closed' with the unread data as extra at EOF", function()
      run(function()
        local p <close> = support.pair()
        assert(p.peer:write("no newline"))
        assert(p.peer:flush(2))
        p.peer:close()
        assert_fail("closed", "no newline", p.client:read("l", 2))
      end)
    end)

    it("gives 'reset' with the unread data when the peer resets", function()
      run(function()
        local p <close> = support.pair()
        -- Data the peer never reads: closing it then sends RST, not FIN.
        assert(p.client:write("never read by the peer"))
        local result
        berth.spawn(function() result = table.pack(p.client:read("l", 3)) end)
        berth.sleep(0) -- the read parks
        assert(p.peer:write("partial"))
        support.wait_until(function() return select(2, p.client:pending()) == 7 end, 2,
          "the waiting read to buffer \"partial\"")
        p.peer:close()
        support.wait_until(function() return result end, 3, "the read to end")
        assert_fail("reset", "partial", table.unpack(result, 1, result.n))
      end)
    end)

    it("gives 'reset' to a write after the peer has gone", function()
      run(function()
        local p <close> = support.pair()
        p.client:close()
        local result
        pcall(support.wait_until, function() -- until the kernel has the reset
          result = table.pack(p.peer:write("x"))
          return not result[1]
        end, 2)
        assert_fail("reset", nil, table.unpack(result, 1, result.n))
      end)
    end)

    it("half-closes with shutdown('w'): the peer reads EOF and can still answer", function()
      run(function()
        local p <close> = support.pair()
        assert(p.client:write("ping\n"))
        assert.equal(p.client, p.client:shutdown("w"))
        assert.equal("ping", p.peer:read("l", 2))
        assert_fail("closed", "", p.peer:read("l", 2))
        assert(p.peer:write("pong\n"))
        assert(p.peer:flush(2))
        p.peer:close()
        assert.equal("pong", p.client:read("l", 2))
        assert_fail("closed", "", p.client:read("l", 2))
      end)
    end)
  end)

  describe("close", function()
    it("is idempotent, sets fd() to -1 and the peer sees EOF", function()
      run(function()
        local p <close> = support.pair()
        assert.is_true(p.client:fd() >= 0)
        assert.is_true(p.client:close())
        assert.is_true(p.client:close())
        assert.equal(-1, p.client:fd())
        assert.equal("", p.peer:read("a", 2))
      end)
    end)

    it("keeps written data when flushed before close", function()
      run(function()
        local p <close> = support.pair()
        local data = support.random_bytes(256 * KiB, 7)
        berth.spawn(function()
          assert(p.client:write(data))
          assert(p.client:flush(5))
          p.client:close()
        end)
        support.assert_bytes(data, p.peer:read("a", 5))
      end, 10)
    end)
  end)

  describe("concurrency", function()
    it("raises when a second task reads while a read is pending", function()
      run(function()
        local p <close> = support.pair()
        local first
        berth.spawn(function() first = p.client:read("l", 3) end)
        berth.sleep(0) -- the first read parks
        assert_raises("socket already has a pending read", p.client.read, p.client, "l", 1)
        assert(p.peer:write("for the first reader\n"))
        support.wait_until(function() return first end)
        assert.equal("for the first reader", first)
      end)
    end)

    it("lets one task read while another writes (full duplex)", function()
      run(function()
        local p <close> = support.pair()
        local got
        berth.spawn(function() got = p.client:read("l", 3) end)
        berth.sleep(0) -- the read parks
        assert(p.client:write("ping\n")) -- while the read above is pending
        assert.equal("ping", p.peer:read("l", 2))
        assert(p.peer:write("pong\n"))
        support.wait_until(function() return got end)
        assert.equal("pong", got)
      end)
    end)

    it("raises when a second task writes while a write is pending", function()
      run(function()
        local p <close> = support.pair()
        p.client:setoption("highwater", 4 * KiB)
        p.client:setoption("lowwater", 1 * KiB)
        local big = ("b"):rep(32 * MiB) -- more than the kernel buffers take
        local wrote
        berth.spawn(function() wrote = table.pack(p.client:write(big)) end)
        berth.sleep(0) -- the writer parks above the high watermark
        assert.is_nil(wrote, "the big write should still be pending")
        assert_raises("socket already has a pending write", p.client.write, p.client, "x")
        p.client:close() -- wakes the pending writer
        support.wait_until(function() return wrote end)
        assert_fail("closed", nil, table.unpack(wrote, 1, wrote.n))
      end, 10)
    end)
  end)

  describe("flow control", function()
    it("a writer to a client that never reads yields near the high watermark while others are served",
      function()
        run(function()
          local flood = { max_pending = 0, peak = 0, written = 0 }
          local server <close> = support.serve(function(sock)
            if sock:read("l") ~= "flood" then return support.echo(sock) end
            local chunk = ("f"):rep(16 * KiB)
            while true do
              local ok, code = sock:write(chunk)
              if not ok then flood.ended = code return end
              flood.written = flood.written + #chunk
              local wbytes = sock:pending()
              flood.max_pending = math.max(flood.max_pending, wbytes)
            end
          end)
          local slow <close> = support.connect(server)
          assert(slow:write("flood\n"))
          -- Let the kernel buffers fill up and the writer park.
          local last = -1
          support.wait_until(function()
            local stalled = flood.written == last and flood.written > 0
            last = flood.written
            berth.sleep(0.05) -- a stall is no progress over this window
            return stalled
          end, 5, "the flood writer to stall")

          local fast <close> = support.connect(server)
          assert(fast:write("x\n"))
          for i = 1, 20 do
            assert.equal("line " .. i, support.roundtrip(fast, "line " .. i))
          end
          assert.is_nil(flood.ended, "the flood writer should still be parked")
          assert.is_true(flood.max_pending <= 64 * KiB,
            "write buffer grew to " .. flood.max_pending .. " bytes")

          slow:close() -- with unread data: the writer gets a reset
          support.wait_until(function() return flood.ended end, 3, "the flood writer to end")
          assert.equal("reset", flood.ended)
        end, 10)
      end)

    it("honours the highwater option and resumes after the peer drains", function()
      run(function()
        local p <close> = support.pair()
        p.client:setoption("highwater", 8 * KiB)
        p.client:setoption("lowwater", 2 * KiB)
        local data = support.random_bytes(8 * MiB, 3)
        local max_pending, done = 0, false
        berth.spawn(function()
          local chunk = 4 * KiB
          for i = 1, #data, chunk do
            assert(p.client:write(data:sub(i, i + chunk - 1)))
            max_pending = math.max(max_pending, (p.client:pending()))
          end
          assert(p.client:flush(5))
          done = true
        end)
        support.assert_bytes(data, p.peer:read(#data, 10))
        support.wait_until(function() return done end)
        assert.is_true(max_pending <= 8 * KiB, "write buffer grew to " .. max_pending)
      end, 15)
    end)
  end)

  describe("callbacks", function()
    it("on('data') delivers chunks without a task and returns the socket", function()
      run(function()
        local p <close> = support.pair()
        local got = {}
        assert.equal(p.client, p.client:on("data", expect(function(chunk)
          got[#got + 1] = chunk
        end, 1)))
        assert(p.peer:write("hello"))
        support.wait_until(function() return #got == 1 end)
        assert.same({ "hello" }, got)
        p.client:on("data", nil)
      end)
    end)

    it("on('close') is called once with 'closed' on a local close", function()
      run(function()
        local p <close> = support.pair()
        p.client:on("close", expect(function(code) assert.equal("closed", code) end, 1))
        p.client:close()
        p.client:close()
        berth.sleep(0.02) -- a quiet period: a second call would show
      end)
    end)

    it("on('close') is called once with 'closed' on peer EOF in callback mode", function()
      run(function()
        local p <close> = support.pair()
        local code
        p.client:on("data", expect(nil, 0))
        p.client:on("close", expect(function(c) code = c end, 1))
        p.peer:close()
        support.wait_until(function() return code end)
        assert.equal("closed", code)
      end)
    end)

    it("on('drain') fires once a callback's buffered write has emptied, not for writes the kernel took",
      function()
        -- More than the kernel can take at once (loopback socket buffers
        -- autotune to several MiB each way), so part of it must buffer.
        local big = support.random_bytes(16 * MiB, 11)
        run(function()
          local p <close> = support.pair { max_input = false }
          local drained, buffered = false, nil
          p.client:on("drain", expect(function() drained = true end, 1))
          p.client:on("data", expect(function(chunk)
            -- A callback cannot wait: write buffers what the kernel refuses.
            assert(p.client:write(chunk == "small?" and "small" or big))
            if chunk ~= "small?" then buffered = p.client:pending() end
          end, 2))
          assert(p.peer:write("small?"))
          assert.equal("small", p.peer:read(5, 2))
          berth.sleep(0.02) -- a quiet period: a wrong "drain" would show
          assert.is_false(drained)

          assert(p.peer:write("big?"))
          support.assert_bytes(big, p.peer:read(#big, 20))
          assert.is_true(buffered > 0, "the kernel took all 16 MiB at once")
          support.wait_until(function() return drained end, 2, "on('drain')")
          assert.equal(0, (p.client:pending()))
          p.client:on("data", nil)
        end, 15)
      end)

    it("on('drain') fires once a task's write that had to buffer has emptied", function()
      run(function()
        local p <close> = support.pair()
        local drained = false
        p.client:on("drain", expect(function() drained = true end, 1))
        local big = support.random_bytes(4 * MiB, 11)
        berth.spawn(function() assert(p.client:write(big)) end)
        support.assert_bytes(big, p.peer:read(#big, 10))
        support.wait_until(function() return drained end, 2, "on('drain')")
      end, 15)
    end)
  end)

  describe("addresses, options and stats", function()
    it("setoption returns the socket for each documented option", function()
      run(function()
        local p <close> = support.pair()
        for _, opt in ipairs {
          { "nodelay", true }, { "keepalive", true }, { "maxline", 1024 },
          { "highwater", 128 * KiB }, { "lowwater", 32 * KiB },
        } do
          assert.equal(p.client, p.client:setoption(opt[1], opt[2]))
        end
      end)
    end)

    it("sock:stats() counts bytes each way", function()
      run(function()
        local p <close> = support.pair()
        assert(p.client:write("12345"))
        assert.equal("12345", p.peer:read(5, 2))
        assert(p.peer:write("abc"))
        assert.equal("abc", p.client:read(3, 2))
        assert.same({ 5, 3 }, { p.client:stats().bytes_out, p.client:stats().bytes_in })
        assert.same({ 3, 5 }, { p.peer:stats().bytes_out, p.peer:stats().bytes_in })
        local created = p.client:stats().created
        assert.equal("number", type(created))
        assert.is_true(created <= berth.now())
      end)
    end)
  end)
end)

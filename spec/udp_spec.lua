-- Datagram (berth.udp, berth.serve_udp): the three receive styles, sends
-- and backpressure, truncation, connected sockets and "refused", unix
-- datagram sockets, multicast and broadcast on the loopback, lifetime and
-- shutdown, hot reload of a packet handler under a stream of datagrams
-- (README "API reference" > Datagram). Real sockets on 127.0.0.1, ::1 and
-- temporary unix paths only.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect
local assert_fail, assert_raises = support.assert_fail, support.assert_raises

-- A server socket on host (default 127.0.0.1), port 0; asserts.
local function udp(opts)
  opts = opts or {}
  if not opts.path and not opts.fd then
    opts.host = opts.host or "127.0.0.1"
    opts.port = opts.port or 0
  end
  return assert(berth.udp(opts))
end

-- Task only: sends `data` to `to` from `from` and returns what `to` got.
local function roundtrip(from, to, data)
  local host = to:address()
  assert(from:sendto(data, host, to:port()))
  return to:recvfrom(2)
end

-- Task only: sends `data` from client `c` to a serving socket and returns
-- the reply `c` gets.
local function ask(c, server, data)
  assert(c:sendto(data, server:address(), server:port()))
  return c:recvfrom(2)
end

local function after()
  support.after()
  collectgarbage()
  collectgarbage()
  assert.equal(0, berth.stats().datagrams, "leak: Datagram sockets left open")
end

describe("Datagram", function()
  before_each(support.before)
  after_each(after)

  describe("berth.udp", function()
    it("binds 127.0.0.1 and ::1 on port 0 and reads the address back", function()
      for _, host in ipairs { "127.0.0.1", "::1" } do
        local d <close> = udp { host = host }
        local h, p = d:address()
        assert.equal(host, h)
        assert.is_true(p > 0 and p < 65536)
        assert.equal(p, d:port())
        assert.matches("^Datagram %(0x", tostring(d))
      end
    end)

    it("makes a client, with no host and port, that reaches IPv4 and IPv6 servers", function()
      run(function()
        local v4 <close> = udp { host = "127.0.0.1" }
        local v6 <close> = udp { host = "::1" }
        local c <close> = assert(berth.udp())
        local _, cport = c:address()
        for _, server in ipairs { v4, v6 } do
          local data, host, port = roundtrip(c, server, "hello " .. server:address())
          assert.equal("hello " .. server:address(), data)
          assert.equal(cport, port)
          -- an IPv4 peer of the dual-stack client shows as IPv4
          assert.equal(server:address(), host)
          assert(server:sendto("back", host, port))
          local back, from, fromport = c:recvfrom(2)
          assert.equal("back", back)
          assert.equal(server:address(), from)
          assert.equal(server:port(), fromport)
        end
      end)
    end)

    it("fails at bind with addrinuse; unknown options and bad values raise", function()
      local a <close> = udp()
      assert_fail("addrinuse", nil, berth.udp { host = "127.0.0.1", port = a:port() })
      assert_raises("unknown option", berth.udp, { host = "127.0.0.1", prot = 1 })
      assert_raises("port must be an integer", berth.udp, { port = 70000 })
      assert_raises("numeric address", berth.udp, { host = "example.com", port = 0 })
      assert_raises("max_datagram", berth.udp, { port = 0, max_datagram = 0 })
      assert_raises("multicast", berth.udp, { port = 0, multicast = "239.1.1.1" })
    end)

    it("adopts a datagram descriptor (fd =) and refuses a stream one", function()
      run(function()
        local server <close> = support.listen()
        assert_fail("error", nil, berth.udp { fd = server:fd() })
        local a = udp()
        local b = assert(berth.udp { fd = a:fd() })
        assert.equal(a:port(), b:port())
        local c <close> = assert(berth.udp())
        assert.equal("via fd", (roundtrip(c, b, "via fd")))
        -- both own the one descriptor: close them back to back, so that no
        -- other descriptor can take its number in between
        b:close()
        a:close()
      end)
    end)
  end)

  describe("task style", function()
    it("carries datagrams of 0 B to 65,507 B byte-exact over 127.0.0.1 and ::1", function()
      run(function()
        local sizes = { 0, 1, 2, 511, 512, 513, 1472, 1473, 8192, 65000, 65507 }
        math.randomseed(13)
        for _ = 1, 8 do sizes[#sizes + 1] = math.random(0, 65507) end
        for _, host in ipairs { "127.0.0.1", "::1" } do
          local r <close> = udp { host = host }
          local s <close> = udp { host = host }
          for i, n in ipairs(sizes) do
            local blob = support.random_bytes(n, i)
            local data, from, port = roundtrip(s, r, blob)
            support.assert_bytes(blob, data)
            assert.equal(host, from)
            assert.equal(s:port(), port)
          end
          assert.equal(#sizes, r:stats().received)
          assert.equal(0, r:stats().truncated)
        end
      end, 20)
    end)

    it("recvfrom times out with nil, 'timeout' and the socket stays usable", function()
      run(function()
        local r <close> = udp()
        local s <close> = udp()
        local t0 = support.clock()
        assert_fail("timeout", nil, r:recvfrom(0.05))
        assert.is_true(support.clock() - t0 < 2)
        r:settimeout(0.05)
        assert_fail("timeout", nil, r:recv())
        assert.equal("later", (roundtrip(s, r, "later")))
      end)
    end)

    it("packets() iterates until the timeout", function()
      run(function()
        local r <close> = udp()
        local s <close> = udp()
        for i = 1, 5 do assert(s:sendto("p" .. i, "127.0.0.1", r:port())) end
        local got = {}
        for data, host, port in r:packets(0.2) do
          assert.equal("127.0.0.1", host)
          assert.equal(s:port(), port)
          got[#got + 1] = data
        end
        assert.same({ "p1", "p2", "p3", "p4", "p5" }, got)
      end)
    end)

    it("reads a burst with few recvmmsg calls", function()
      run(function()
        local r <close> = udp()
        local s <close> = udp()
        for i = 1, 64 do assert(s:sendto(("%03d"):format(i), "127.0.0.1", r:port())) end
        for i = 1, 64 do assert.equal(("%03d"):format(i), (r:recvfrom(2))) end
        local st = r:stats()
        assert.equal(64, st.received)
        assert.is_true(st.recv_calls <= 4, "recv_calls " .. st.recv_calls)
        -- max_queue = 1: nothing is read ahead, one call per datagram
        local one <close> = udp { max_queue = 1 }
        for i = 1, 10 do assert(s:sendto(tostring(i), "127.0.0.1", one:port())) end
        for i = 1, 10 do assert.equal(tostring(i), (one:recvfrom(2))) end
        assert.equal(10, one:stats().recv_calls)
        assert.equal(0, one:stats().queued)
      end)
    end)

    it("reports a truncated datagram instead of cutting it", function()
      run(function()
        local r <close> = udp { max_datagram = 100 }
        local s <close> = udp()
        local seen = {}
        r:on("truncated", expect(function(size, host, port)
          seen[#seen + 1] = { size, host, port }
        end, 2))
        assert(s:sendto(("x"):rep(100), "127.0.0.1", r:port())) -- fits exactly
        assert(s:sendto(("y"):rep(300), "127.0.0.1", r:port()))
        assert(s:sendto("after", "127.0.0.1", r:port()))
        assert.equal(("x"):rep(100), (r:recvfrom(2)))
        local ok, code, size, host, port = r:recvfrom(2)
        assert.is_nil(ok)
        assert.same({ "toolarge", 300, "127.0.0.1", s:port() }, { code, size, host, port })
        assert.same({ { 300, "127.0.0.1", s:port() } }, seen)
        assert.equal("after", (r:recvfrom(2)))
        -- packets() skips one (it is reported all the same)
        assert(s:sendto(("z"):rep(101), "127.0.0.1", r:port()))
        assert(s:sendto("next", "127.0.0.1", r:port()))
        local it = r:packets(2)
        assert.equal("next", (it()))
        assert.equal(2, r:stats().truncated)
        assert.equal(5, r:stats().received)
      end)
    end)

    it("raises on misuse: outside a task, a second receiver, a non-numeric host", function()
      local r <close> = udp()
      assert_raises("must be called from a berth task", r.recvfrom, r)
      run(function()
        local waiting = berth.spawn(function() r:recvfrom(0.5) end)
        berth.sleep(0.01)
        assert_raises("already has a pending receive", r.recvfrom, r, 0.1)
        assert_raises("numeric address", r.sendto, r, "x", "localhost.example", 1)
        assert_raises("port out of range", r.sendto, r, "x", "127.0.0.1", 65536)
        assert_raises("not connected", r.send, r, "x")
        r:close()
        support.wait_until(function() return coroutine.status(waiting) == "dead" end)
      end)
    end)
  end)

  describe("callback style", function()
    it("calls on('packet') with data, host, port, dgram; a returned string is the reply", function()
      run(function()
        local server <close> = udp()
        local c <close> = udp()
        server:on("packet", expect(function(data, host, port, d)
          assert.equal(server, d)
          assert.equal("127.0.0.1", host)
          assert.equal(c:port(), port)
          assert.is_false(coroutine.isyieldable(), "a plain call, not a task")
          return "re:" .. data
        end, 3))
        for i = 1, 3 do
          assert.equal("re:" .. i, (ask(c, server, tostring(i))))
        end
      end)
    end)

    it("keeps serving when a callback raises (garbage never stops the server)", function()
      run(function()
        local server <close> = udp()
        local c <close> = udp()
        local errors = {}
        server:on("error", function(err, _, d)
          assert.equal(server, d)
          errors[#errors + 1] = err
        end)
        server:on("packet", function(data)
          if data ~= "good" then error("bad datagram: " .. #data .. " bytes") end
          return "ok"
        end)
        for i = 1, 50 do
          assert(c:sendto(support.random_bytes(i, i), "127.0.0.1", server:port()))
        end
        assert.equal("ok", (ask(c, server, "good")))
        support.wait_until(function() return #errors == 50 end)
        assert.matches("bad datagram: 1 bytes", errors[1])
      end)
    end)

    it("sends the replies to a burst with few sendmmsg calls", function()
      run(function()
        local server <close> = udp()
        server:on("packet", function(data) return data end)
        local c <close> = udp()
        for i = 1, 64 do assert(c:sendto(tostring(i), "127.0.0.1", server:port())) end
        local got = {}
        for _ = 1, 64 do got[#got + 1] = assert(c:recvfrom(2)) end
        assert.equal(64, #got)
        local st = server:stats()
        assert.equal(64, st.sent)
        assert.is_true(st.send_calls <= 8, "send_calls " .. st.send_calls)
      end)
    end)

    it("switches back to task style; pause and resume hold the datagrams", function()
      run(function()
        local server <close> = udp()
        local c <close> = udp()
        server:on("packet", function(data) return "cb:" .. data end)
        assert_raises("served by on(\"packet\")", server.recvfrom, server, 0.1)
        assert.equal("cb:1", (ask(c, server, "1")))
        server:pause()
        assert(c:sendto("2", "127.0.0.1", server:port()))
        assert_fail("timeout", nil, c:recvfrom(0.1))
        server:resume()
        assert.equal("cb:2", (c:recvfrom(2)))
        server:on("packet", nil)
        assert.equal("3", (roundtrip(c, server, "3")))
      end)
    end)
  end)

  describe("handler style", function()
    it("runs serve_udp's handler in a task per datagram; it may wait, and its result is the reply", function()
      run(function()
        local server <close> = assert(berth.serve_udp {
          host = "127.0.0.1", port = 0,
          handler = function(data, host, port, d)
            assert.is_true(coroutine.isyieldable())
            assert.equal("127.0.0.1", host)
            assert(d and port)
            berth.sleep(0.01 * tonumber(data))
            return "slept " .. data
          end,
        })
        local c <close> = udp()
        for _, n in ipairs { 5, 1, 3 } do assert(c:sendto(tostring(n), "127.0.0.1", server:port())) end
        -- Each waits in its own task: the shortest sleep answers first.
        assert.equal("slept 1", (c:recvfrom(2)))
        assert.equal("slept 3", (c:recvfrom(2)))
        assert.equal("slept 5", (c:recvfrom(2)))
      end)
    end)

    it("reports handler errors to onerror and goes on", function()
      run(function()
        local errs = {}
        local server <close> = assert(berth.serve_udp {
          host = "127.0.0.1", port = 0,
          handler = function(data) if data == "boom" then error("boom!") end return data end,
          onerror = function(err) errs[#errs + 1] = err end,
        })
        local c <close> = udp()
        assert(c:sendto("boom", "127.0.0.1", server:port()))
        assert.equal("fine", (ask(c, server, "fine")))
        support.wait_until(function() return #errs == 1 end)
        assert.matches("boom!", errs[1])
      end)
    end)

    it("max_queue bounds the running handlers; the rest wait in the kernel", function()
      run(function()
        local running, most = 0, 0
        local server <close> = assert(berth.serve_udp {
          host = "127.0.0.1", port = 0, max_queue = 3,
          handler = function(data)
            running = running + 1
            most = math.max(most, running)
            berth.sleep(0.02)
            running = running - 1
            return data
          end,
        })
        local c <close> = udp()
        for i = 1, 20 do assert(c:sendto(tostring(i), "127.0.0.1", server:port())) end
        local got = {}
        for _ = 1, 20 do got[#got + 1] = tonumber((assert(c:recvfrom(3)))) end
        table.sort(got)
        for i = 1, 20 do assert.equal(i, got[i]) end
        assert.equal(3, most)
      end)
    end)
  end)

  -- 10 senders, 1,000 datagrams each, at most 16 in flight per sender so
  -- loopback never drops; every reply must come back to its own sender.
  local function ten_senders(server_port, tag)
    local senders, done = 10, 0
    for s = 1, senders do
      berth.spawn(function()
        local c <close> = assert(berth.udp())
        local next_seq, acked = 1, 0
        local function send_one()
          assert(c:sendto(("%d:%d"):format(s, next_seq), "127.0.0.1", server_port))
          next_seq = next_seq + 1
        end
        for _ = 1, 16 do send_one() end
        while acked < 1000 do
          local data = assert(c:recvfrom(5))
          local who, seq = data:match("^" .. tag .. "(%d+):(%d+)$")
          assert(who, "unexpected reply " .. data)
          assert.equal(s, tonumber(who), "a reply went to the wrong sender")
          acked = acked + 1
          assert(tonumber(seq) <= next_seq)
          if next_seq <= 1000 then send_one() end
        end
        done = done + 1
      end)
    end
    support.wait_until(function() return done == senders end, 30, "10 senders")
  end

  describe("10,000 datagrams from 10 senders", function()
    it("are each answered to the right sender (callback style)", function()
      run(function()
        local server <close> = udp()
        server:on("packet", function(data) return "cb" .. data end)
        ten_senders(server:port(), "cb")
        assert.equal(10000, server:stats().received)
        assert.equal(10000, server:stats().sent)
      end, 40)
    end)

    it("are each answered to the right sender (handler style, IPv6)", function()
      run(function()
        local server <close> = assert(berth.serve_udp {
          host = "::1", port = 0, handler = function(data) return "h" .. data end,
        })
        local senders, done = 10, 0
        for s = 1, senders do
          berth.spawn(function()
            local c <close> = assert(berth.udp { host = "::1" })
            local sent = 0
            for _ = 1, 16 do sent = sent + 1; assert(c:sendto(s .. ":" .. sent, "::1", server:port())) end
            for _ = 1, 1000 do
              local data = assert(c:recvfrom(5))
              assert.equal(tostring(s), data:match("^h(%d+):"))
              if sent < 1000 then sent = sent + 1; assert(c:sendto(s .. ":" .. sent, "::1", server:port())) end
            end
            done = done + 1
          end)
        end
        support.wait_until(function() return done == senders end, 30, "10 senders")
        assert.equal(10000, server:stats().received)
      end, 40)
    end)
  end)

  describe("connected sockets", function()
    it("send and recv talk to one peer; peer() names it", function()
      run(function()
        local server <close> = udp()
        server:on("packet", function(data) return data:upper() end)
        local c <close> = udp()
        assert_fail("notconnected", nil, c:peer())
        assert.equal(c, c:connect("127.0.0.1", server:port()))
        assert.same({ "127.0.0.1", server:port() }, { c:peer() })
        assert(c:send("shout"))
        assert.equal("SHOUT", c:recv(2))
      end)
    end)

    it("surfaces an ICMP port unreachable as 'refused'", function()
      run(function()
        local gone = udp()
        local port = gone:port()
        gone:close()
        local c <close> = udp()
        assert(c:connect("127.0.0.1", port))
        assert(c:send("anyone?"))
        assert_fail("refused", nil, c:recv(2))
        -- the error was reported once; the socket is still usable
        assert_fail("timeout", nil, c:recv(0.05))
      end)
    end)

    it("keeps what it had read ahead before connecting", function()
      run(function()
        local r <close> = udp()
        local other <close> = udp()
        local peer <close> = udp()
        for i = 1, 3 do assert(other:sendto("early" .. i, "127.0.0.1", r:port())) end
        berth.sleep(0.01) -- all three in r's kernel buffer
        assert.equal("early1", (r:recvfrom(2)))
        assert.equal(2, r:stats().queued)
        assert(r:connect("127.0.0.1", peer:port()))
        assert.equal("early2", r:recv(2))
        assert.equal("early3", r:recv(2))
      end)
    end)

    it("ignores datagrams from anyone but its peer", function()
      run(function()
        local peer <close> = udp()
        local other <close> = udp()
        local c <close> = udp()
        assert(c:connect("127.0.0.1", peer:port()))
        assert(other:sendto("stranger", "127.0.0.1", c:port()))
        assert(peer:sendto("friend", "127.0.0.1", c:port()))
        assert.equal("friend", c:recv(2))
      end)
    end)
  end)

  describe("sending", function()
    it("says toolarge for a datagram over the UDP maximum and invalid for a wrong family", function()
      run(function()
        local s <close> = udp()
        assert_fail("toolarge", nil, s:sendto(("x"):rep(65508), "127.0.0.1", 9))
        assert_fail("invalid", nil, s:sendto("x", "::1", 9))
        local s6 <close> = udp { host = "::1" }
        assert_fail("toolarge", nil, s6:sendto(("x"):rep(65528), "::1", 9))
      end)
    end)

    it("sends a task's burst with one sendmmsg, in order, before the loop waits", function()
      run(function()
        local r <close> = udp()
        local s <close> = udp()
        for i = 1, 50 do assert(s:sendto(("b%02d"):format(i), "127.0.0.1", r:port())) end
        -- the first went at once; the other 49 wait for the end of this round
        assert.equal(49, s:stats().sending)
        for i = 1, 50 do assert.equal(("b%02d"):format(i), (r:recvfrom(2))) end
        local st = s:stats()
        assert.same({ 50, 0, 2 }, { st.sent, st.sending, st.send_calls })
        -- one send per round of callbacks goes at once every time
        for i = 1, 3 do
          assert(s:sendto("lone", "127.0.0.1", r:port()))
          assert.equal(0, s:stats().sending)
          assert.equal(2 + i, s:stats().send_calls)
          berth.sleep(0)
        end
      end)
    end)

    it("reports a lone send's error at once, and counts a queued one's", function()
      run(function()
        local r <close> = assert(berth.udp { host = "*", port = 0 })
        local s <close> = assert(berth.udp { host = "*", port = 0 })
        assert_fail("permission", nil, s:sendto("1", "127.255.255.255", r:port()))
        assert.is_true(s:sendto("2", "127.255.255.255", r:port())) -- queued
        berth.sleep(0)
        assert.equal(1, s:stats().dropped)
        assert.equal("permission", s:stats().last_error)
      end)
    end)

    -- A unix datagram socket whose reader does not read makes the sender's
    -- kernel buffer fill (EAGAIN); over UDP the loopback would just drop.
    it("queues when the kernel is full: a callback gets 'wouldblock', a task waits", function()
      run(function()
        local dir = support.tmpdir()
        local reader <close> = assert(berth.udp { path = dir .. "/r", recvbuf = 4096 })
        local sender <close> = assert(berth.udp { path = dir .. "/s" })
        local trigger <close> = assert(berth.udp { path = dir .. "/t" })
        local results = {}
        -- from a callback: it never waits
        sender:on("packet", function()
          for i = 1, 500 do
            local ok, err = sender:sendto(("%04d"):format(i) .. ("."):rep(200), dir .. "/r")
            if not ok then results[#results + 1] = err; return end
          end
        end)
        assert(trigger:sendto("go", dir .. "/s"))
        support.wait_until(function() return #results == 1 end)
        assert.equal("wouldblock", results[1])
        local queued = sender:stats().sending
        assert.is_true(queued > 0, "the kernel was full: some are queued")
        sender:on("packet", nil)
        -- from a task: waits for room, and everything arrives in order
        local sent = 0
        berth.spawn(function()
          for i = 1, 200 do
            assert(sender:sendto(("t%03d"):format(i), dir .. "/r"))
            sent = i
          end
        end)
        berth.sleep(0.05)
        assert.is_true(sent < 200, "the task waits while the reader does not read")
        local last_cb, t_next = 0, 1
        while t_next <= 200 do
          local data = assert(reader:recvfrom(2))
          local n = data:match("^(%d%d%d%d)%.")
          if n then
            assert.equal(last_cb + 1, tonumber(n))
            last_cb = tonumber(n)
          else
            assert.equal(("t%03d"):format(t_next), data)
            t_next = t_next + 1
          end
        end
        assert.equal(200, sent)
      end, 10)
    end)

    it("bounds a task's wait for room by settimeout", function()
      run(function()
        local dir = support.tmpdir()
        local reader <close> = assert(berth.udp { path = dir .. "/r", recvbuf = 4096 })
        local sender <close> = assert(berth.udp { path = dir .. "/s" })
        sender:settimeout(0.05)
        local ok, err
        for _ = 1, 1000 do
          ok, err = sender:sendto(("z"):rep(200), dir .. "/r")
          if not ok then break end
        end
        assert.is_nil(ok)
        assert.equal("timeout", err)
        -- the reader catches up: the queue drains and sending works again
        berth.spawn(function() while reader:recvfrom(0.2) do end end)
        support.wait_until(function() return sender:stats().sending == 0 end)
        assert(sender:sendto("again", dir .. "/r"))
      end)
    end)
  end)

  describe("unix datagram sockets", function()
    it("bind a path, reply to the sender's path, and remove the file on close", function()
      run(function()
        local dir = support.tmpdir()
        local server = assert(berth.udp { path = dir .. "/server" })
        server:on("packet", function(data, path, port)
          assert.equal(dir .. "/client", path)
          assert.equal(0, port)
          return "unix:" .. data
        end)
        assert.is_true(support.is_socket_file(dir .. "/server"))
        assert.same({ dir .. "/server", 0 }, { server:address() })
        local c <close> = assert(berth.udp { path = dir .. "/client" })
        assert(c:sendto("hi", dir .. "/server"))
        assert.same({ "unix:hi", dir .. "/server", 0 }, { c:recvfrom(2) })
        server:close()
        assert.is_false(support.exists(dir .. "/server"))
        -- a stale file is replaced; a live one is not taken
        support.write_file(dir .. "/plain", "")
        assert_fail("addrinuse", nil, berth.udp { path = dir .. "/plain" })
        assert_fail("addrinuse", nil, berth.udp { path = dir .. "/client" })
      end)
    end)
  end)

  describe("multicast and broadcast (loopback only)", function()
    it("joins a group on 127.0.0.1 and receives what is sent to it", function()
      run(function()
        local r <close> = assert(berth.udp {
          host = "*", port = 0, reuseaddr = true,
          multicast = { group = "239.255.77.1", interface = "127.0.0.1" },
        })
        local s <close> = assert(berth.udp { host = "127.0.0.1", port = 0 })
        assert(s:join("239.255.77.2", "127.0.0.1")) -- sets the sending interface
        assert(s:sendto("to the group", "239.255.77.1", r:port()))
        assert.equal("to the group", (r:recvfrom(2)))
        assert(r:leave("239.255.77.1", "127.0.0.1"))
        assert_fail("addrnotavail", nil, r:leave("239.255.77.1", "127.0.0.1"))
        assert_fail("error", nil, r:join("239.255.77.3", "no-such-if0"))
      end)
    end)

    it("needs broadcast = true to send to the loopback broadcast address", function()
      run(function()
        local r <close> = assert(berth.udp { host = "*", port = 0 })
        local plain <close> = assert(berth.udp { host = "*", port = 0 })
        assert_fail("permission", nil, plain:sendto("b", "127.255.255.255", r:port()))
        local bc <close> = assert(berth.udp { host = "*", port = 0, broadcast = true })
        assert(bc:sendto("b", "127.255.255.255", r:port()))
        assert.equal("b", (r:recvfrom(2)))
        assert(plain:setoption("broadcast", true))
        assert(plain:sendto("c", "127.255.255.255", r:port()))
        assert.equal("c", (r:recvfrom(2)))
      end)
    end)

    it("sets the buffer sizes it is asked for", function()
      local d <close> = udp { recvbuf = 65536, sendbuf = 32768 }
      -- Linux doubles what it is given (bookkeeping overhead)
      assert.equal(131072, d:stats().recvbuf)
      assert.equal(65536, d:stats().sendbuf)
      assert(d:setoption("recvbuf", 8192))
      assert.equal(16384, d:stats().recvbuf)
    end)
  end)

  describe("lifetime", function()
    it("close wakes a waiting receive and sender with 'closed'; later calls say closed", function()
      run(function()
        local r = udp()
        local result
        berth.spawn(function() result = { r:recvfrom() } end)
        berth.sleep(0.01)
        assert.is_true(r:close())
        assert.is_true(r:close())
        support.wait_until(function() return result ~= nil end)
        assert.same({ nil, "closed" }, result)
        assert_fail("closed", nil, r:recvfrom(0.1))
        assert_fail("closed", nil, r:sendto("x", "127.0.0.1", 9))
        assert_fail("closed", nil, r:address())
        assert.equal(-1, r:fd())
        assert.equal("Datagram (closed)", tostring(r))
      end)
    end)

    it("collects an unreferenced idle Datagram, but keeps a serving one", function()
      (function() udp() end)() -- not a local of this frame: the GC would see it
      collectgarbage()
      collectgarbage()
      assert.equal(0, berth.stats().datagrams)
      run(function()
        local port
        do
          local server = udp()
          port = server:port()
          server:on("packet", function(data, _, _, d)
            if data == "close" then d:close() end
            return "alive"
          end)
        end
        collectgarbage()
        collectgarbage()
        local c <close> = udp()
        assert(c:sendto("x", "127.0.0.1", port))
        assert.equal("alive", (c:recvfrom(2)))
        -- closed from inside its own callback: the reply it returns has
        -- nowhere to go, and nothing is left behind
        assert(c:sendto("close", "127.0.0.1", port))
        assert_fail("timeout", nil, c:recvfrom(0.1))
        assert.equal(1, berth.stats().datagrams)
      end)
    end)

    it("shutdown stops unconnected receivers at once; connected ones keep receiving", function()
      local l = berth.loop()
      local server = assert(l.udp { host = "127.0.0.1", port = 0 })
      local peer = assert(l.udp { host = "127.0.0.1", port = 0 })
      local client = assert(l.udp { host = "127.0.0.1", port = 0 })
      assert(client:connect("127.0.0.1", peer:port()))
      local served, got = nil, nil
      l.spawn(function() served = { server:recvfrom() } end)
      l.spawn(function() got = { client:recv(2) } end)
      l.spawn(function()
        l.shutdown(5)
        l.sleep(0.05)
        assert(peer:sendto("late reply", "127.0.0.1", client:port()))
      end)
      l.run()
      assert.same({ nil, "closed" }, served)
      assert.same({ "late reply" }, got)
      assert.equal(0, l.stats().datagrams)
    end)
  end)

  describe("option and limit tables", function()
    local core = require "berth.core"

    it("core.options describes udp{} and serve_udp{}: bind keys and the datagram limits", function()
      local bind = {}
      for key, o in pairs(core.options.udp) do
        if o.bind then bind[#bind + 1] = key end
      end
      table.sort(bind)
      assert.same({ "broadcast", "host", "multicast", "name", "path", "port", "recvbuf", "reuseaddr",
        "reuseport", "sendbuf" }, bind)
      assert.equal("datagram", core.options.udp.max_datagram.scope)
      assert.equal("datagram", core.options.limits.max_queue.scope)
      assert.equal(65536, core.options.limits.max_datagram.default)
      assert.is_nil(core.options.listen.max_datagram) -- not a stream limit
      assert.equal("handler", core.options.serve_udp.handler.kind)
      assert_raises('serve_udp: unknown option "prot"', berth.serve_udp,
        { port = 0, prot = 1, handler = function() end })
      assert_raises("serve_udp: handler must be", berth.serve_udp, { port = 0 })
      assert_raises("listen: unknown option", berth.listen, { port = 0, max_queue = 1 })
    end)

    it("berth.limits{} sets the defaults of Datagrams made afterwards", function()
      local saved = berth.limits()
      berth.limits { max_datagram = 1000, max_queue = 7 }
      local ok, err = pcall(function()
        local d <close> = udp()
        assert.same({ 1000, 7 }, { d:stats().max_datagram, d:stats().max_queue })
        local e <close> = udp { max_datagram = false, max_queue = false }
        assert.same({ 65536, -1 }, { e:stats().max_datagram, e:stats().max_queue })
      end)
      berth.limits { max_datagram = saved.max_datagram, max_queue = saved.max_queue }
      assert(ok, err)
    end)

    it("the master's udp request carries the bind keys and multicast groups", function()
      local channel = require "berth.channel"
      local opts = { host = "0.0.0.0", port = 53, reuseport = true, recvbuf = 65536,
        multicast = { { group = "239.1.2.3", interface = "lo" }, { group = "ff02::1" } },
        max_queue = 9, fd = 3 }
      local kind, id, fields = channel.decode(channel.udp_request(7, opts))
      assert.same({ "udp", 7 }, { kind, id })
      assert.same({ host = "0.0.0.0", port = 53, reuseport = true, recvbuf = 65536,
        multicast = { { group = "239.1.2.3", interface = "lo" }, { group = "ff02::1" } } },
        channel.udp_options(fields))
      local one = channel.udp_options(select(3, channel.decode(channel.udp_request(1,
        { port = 1, multicast = { group = "239.9.9.9" } }))))
      assert.same({ { group = "239.9.9.9" } }, one.multicast)
      assert.same({ max_queue = 9, fd = 11 }, channel.adopted_udp_options(opts, 11))
    end)

    it("--check moves a UDP server socket to loopback, keeps a client a client", function()
      local host = require "berth.host"
      local seen = {}
      local udp_check = host.check_udp(function(t) seen[#seen + 1] = t; return true end,
        function() return "/tmp/x" end)
      udp_check { host = "0.0.0.0", port = 53, fd = 4, multicast = { group = "239.1.1.1" },
        max_queue = 3 }
      udp_check { path = "/run/app.sock" }
      udp_check()
      assert.same({ host = "127.0.0.1", port = 0, max_queue = 3 }, seen[1])
      assert.same({ path = "/tmp/x" }, seen[2])
      assert.same({}, seen[3])
    end)
  end)

  describe("hot reload", function()
    it("loses no received datagram while the handler module is reloaded", function()
      run(function()
        local dir = support.tmpdir()
        local file = dir .. "/udpmod.lua"
        support.write_file(file, "return function(data) return 'v1 ' .. data end")
        local saved = package.path
        package.path = dir .. "/?.lua;" .. saved
        local ok, err = pcall(function()
          local server <close> = assert(berth.serve_udp { host = "127.0.0.1", port = 0, handler = "udpmod" })
          local c <close> = udp()
          local n, replies, versions = 2000, {}, {}
          local sent = 0
          local function send() sent = sent + 1; assert(c:sendto(tostring(sent), "127.0.0.1", server:port())) end
          for _ = 1, 16 do send() end
          while #replies < n do
            local data = assert(c:recvfrom(5))
            local v, k = data:match("^(v%d) (%d+)$")
            replies[#replies + 1] = tonumber(k)
            versions[v] = (versions[v] or 0) + 1
            if #replies == n // 2 then
              support.write_file(file, "return { handle = function(data) return 'v2 ' .. data end }")
              assert.is_true(berth.reload.reload("udpmod"))
            end
            if sent < n then send() end
          end
          table.sort(replies)
          for i = 1, n do assert.equal(i, replies[i]) end
          assert.is_true(versions.v1 >= n // 2 and versions.v2 > 0)
          assert.equal(n, server:stats().received)
          assert.equal(n, server:stats().sent)
        end)
        package.path = saved
        assert(ok, err)
      end, 20)
    end)
  end)
end)

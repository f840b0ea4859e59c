-- ServerSocket: berth.listen / berth.serve and the server methods
-- (README "API reference" > Module berth, ServerSocket).
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect
local assert_fail, assert_raises = support.assert_fail, support.assert_raises

local EADDRINUSE = 98

-- The three counters README documents for server:stats().
local function stats(server)
  local s = server:stats()
  return { accepted = s.accepted, active = s.active, rejected = s.rejected }
end

-- A handler that answers every line with "<tag>:<line>" until EOF.
local function tagged_echo(tag)
  return function(sock)
    for line in sock:lines() do sock:write(tag, ":", line, "\n") end
  end
end

describe("ServerSocket", function()
  before_each(support.before)
  after_each(support.after)

  describe("listen", function()
    it("binds an ephemeral port on 127.0.0.1 and reads the real port back", function()
      run(function()
        local server <close> = support.listen()
        local port = server:port()
        assert.equal("integer", math.type(port))
        assert.is_true(port > 0 and port < 65536)
        assert.equal("127.0.0.1", server:address())

        local client <close> = support.connect(port)
        local peer <close> = assert(server:accept(2))
        assert.same({ "127.0.0.1", port }, { peer:localaddr() })
        assert.same({ "127.0.0.1", port }, { client:peer() })
        assert.same({ client:localaddr() }, { peer:peer() })
      end)
    end)

    it("fails with nil, 'addrinuse', errno when the port is taken", function()
      local first <close> = support.listen()
      assert_fail("addrinuse", EADDRINUSE,
        berth.listen { host = "127.0.0.1", port = first:port() })
      assert_fail("addrinuse", EADDRINUSE,
        berth.serve { host = "127.0.0.1", port = first:port(), handler = function() end })
    end)

    it("lets two reuseport listeners share one port", function()
      local a <close> = support.listen { reuseport = true }
      local b <close> = support.listen { reuseport = true, port = a:port() }
      assert.equal(a:port(), b:port())
    end)

    it("returns the port to the system on close, so it can be bound again", function()
      local port
      do
        local server <close> = support.listen()
        port = server:port()
      end
      local again <close> = support.listen { port = port }
      assert.equal(port, again:port())
    end)

    it("is closed by the GC when unreferenced", function()
      local function listen_and_forget()
        return support.listen():port()
      end
      local before = berth.stats().servers
      local port = listen_and_forget()
      collectgarbage()
      collectgarbage()
      assert.equal(before, berth.stats().servers)
      local again <close> = support.listen { port = port }
      assert.equal(port, again:port())
    end)

    it("adopts an already-listening descriptor with listen{fd=}", function()
      -- berth offers no dup(), so the descriptor comes from another server.
      -- Both objects then own the same fd: `adopted` is closed first and
      -- `original` right after, with no descriptor opened in between, so the
      -- second close() can only hit a free fd number (EBADF), never a live one.
      run(function()
        local original = support.listen()
        original:pause()
        local adopted = assert(berth.listen { fd = original:fd() })
        assert.equal(original:port(), adopted:port())
        assert.equal("127.0.0.1", adopted:address())
        assert.equal(original:fd(), adopted:fd())

        local client = support.connect(original:port())
        local peer = assert(adopted:accept(2))
        assert(client:write("ping\n"))
        assert.equal("ping", peer:read("l", 2))
        client:close()
        peer:close()
        adopted:close()
        original:close()
      end)
    end)
  end)

  describe("close", function()
    it("is idempotent and sets fd() to -1", function()
      local server = support.listen()
      assert.is_true(server:fd() >= 0)
      assert.is_true(server:close())
      assert.is_true(server:close())
      assert.equal(-1, server:fd())
    end)

    it("wakes a pending accept with nil, 'closed'", function()
      run(function()
        local server <close> = support.listen()
        berth.spawn(function()
          berth.sleep(0) -- the accept below parks first
          server:close()
        end)
        assert_fail("closed", nil, server:accept(10))
      end)
    end)

    it("leaves connections that were already accepted open", function()
      run(function()
        local p <close> = support.pair()
        p.server:close()
        assert(p.peer:write("still here\n"))
        assert.equal("still here", p.client:read("l", 2))
      end)
    end)
  end)

  describe("accept", function()
    it("returns nil, 'timeout' when nobody connects in time, and stays usable", function()
      run(function()
        local server <close> = support.listen()
        assert_fail("timeout", nil, server:accept(0.05))
        local client <close> = support.connect(server)
        local peer <close> = assert(server:accept(2))
        assert.same({ client:localaddr() }, { peer:peer() })
      end)
    end)

    it("raises when a second task accepts on the same server", function()
      run(function()
        local server <close> = support.listen()
        local first
        berth.spawn(function() first = table.pack(server:accept(5)) end)
        berth.sleep(0) -- the first accept parks
        local ok = pcall(server.accept, server, 0.01)
        assert.is_false(ok)
        server:close()
        support.wait_until(function() return first end)
        assert_fail("closed", nil, table.unpack(first, 1, first.n))
      end)
    end)

    it("raises once on('connection') is set", function()
      run(function()
        local server <close> = support.listen()
        server:on("connection", function() end)
        assert.is_false((pcall(server.accept, server, 0.01)))
      end)
    end)

    it("raises outside a berth task", function()
      local server <close> = support.listen()
      assert_raises("must be called from a berth task", server.accept, server, 0)
    end)
  end)

  describe("connections()", function()
    it("yields each accepted socket and ends at its timeout", function()
      run(function()
        local server <close> = support.listen()
        local clients = {}
        for i = 1, 3 do clients[i] = support.connect(server) end
        local seen = {}
        for sock in server:connections(0.2) do
          local _, port = sock:peer()
          seen[#seen + 1] = port
          sock:close()
        end
        local want = {}
        for i, c in ipairs(clients) do
          local _, port = c:localaddr()
          want[i] = port
          c:close()
        end
        table.sort(seen)
        table.sort(want)
        assert.same(want, seen)
      end)
    end)

    it("ends when the server is closed", function()
      run(function()
        local server <close> = support.listen()
        berth.spawn(function()
          berth.sleep(0) -- the accept below parks first
          server:close()
        end)
        local n = 0
        for sock in server:connections() do
          n = n + 1
          sock:close()
        end
        assert.equal(0, n)
      end)
    end)
  end)

  describe("on('connection')", function()
    it("returns the server and runs each connection in its own task", function()
      run(function()
        local server <close> = support.listen()
        assert.equal(server, server:on("connection", expect(tagged_echo("h"), 2)))
        -- The first client stays silent: its handler blocks in a read, and
        -- the second connection must be served meanwhile.
        local quiet <close> = support.connect(server)
        local chatty <close> = support.connect(server)
        assert.equal("h:two", support.roundtrip(chatty, "two"))
        assert.equal("h:one", support.roundtrip(quiet, "one"))
      end)
    end)

    it("on('error') returns the server and receives its handlers' errors", function()
      run(function()
        local server <close> = support.listen()
        server:on("connection", function(sock)
          sock:read("l")
          error("connection-failed")
        end)
        local seen
        assert.equal(server, server:on("error", expect(function(err, traceback, sock)
          seen = { tostring(err):match("connection%-failed"), type(traceback), sock ~= nil }
        end, 1)))
        local client <close> = support.connect(server)
        assert(client:write("go\n"))
        assert_fail("closed", "", client:read("l", 2))
        assert.same({ "connection-failed", "string", true }, seen)
      end)
    end)

    it("closes the socket when the handler returns", function()
      run(function()
        local server <close> = support.listen()
        server:on("connection", expect(function(sock) sock:write("bye\n") end, 1))
        local client <close> = support.connect(server)
        assert.equal("bye\n", client:read("a", 2))
      end)
    end)
  end)

  describe("serve", function()
    it("runs handler(sock) per connection and closes the socket when it returns", function()
      run(function()
        local server <close> = support.serve(expect(function(sock)
          local line = sock:read("l")
          sock:write("echo:", line, "\n")
        end, 1))
        local client <close> = support.connect(server)
        assert(client:write("abc\n"))
        assert.equal("echo:abc\n", client:read("a", 2))
      end)
    end)

    it("sends handler errors to onerror with (err, traceback, sock)", function()
      run(function()
        local server <close> = assert(berth.serve {
          host = "127.0.0.1", port = 0,
          handler = function() error("handler-failed") end,
          onerror = expect(function(err, traceback, sock)
            assert.matches("handler%-failed", tostring(err))
            assert.equal("string", type(traceback))
            assert.is_not_nil(sock)
          end, 1),
        })
        local client <close> = support.connect(server)
        assert_fail("closed", "", client:read("l", 2))
      end)
    end)
  end)

  describe("pause and resume", function()
    it("accepts a connection made while paused only after resume", function()
      run(function()
        local paused = true
        local server <close> = support.serve(expect(function(sock)
          sock:write(paused and "served while paused\n" or "served after resume\n")
        end, 1))
        assert.equal(server, server:pause())
        local client <close> = support.connect(server) -- queued by the kernel
        berth.sleep(0.1) -- a quiet period: a paused server must not accept it
        assert.equal(0, server:stats().accepted)
        paused = false
        assert.equal(server, server:resume())
        assert.equal("served after resume", client:read("l", 2))
        assert.equal(1, server:stats().accepted)
      end)
    end)
  end)

  describe("max_connections", function()
    it("closes excess connections at once and counts them as rejected", function()
      run(function()
        local server <close> = support.serve(function(sock)
          sock:read("l")
          sock:write("bye\n")
        end, { max_connections = 2 })
        local function active(n)
          return function() return server:stats().active == n end
        end
        local c1 <close> = support.connect(server)
        support.wait_until(active(1), 2, "first connection")
        local c2 <close> = support.connect(server)
        support.wait_until(active(2), 2, "second connection")

        local c3 <close> = support.connect(server)
        assert_fail("closed", "", c3:read("l", 2))
        assert.same({ accepted = 2, active = 2, rejected = 1 }, stats(server))

        -- A slot frees up when a handler ends; the next client is served.
        assert.equal("bye", support.roundtrip(c1, "done"))
        support.wait_until(active(1), 2, "first handler to end")
        local c4 <close> = support.connect(server)
        assert.equal("bye", support.roundtrip(c4, "hello"))
        assert.equal("bye", support.roundtrip(c2, "done"))
        support.wait_until(active(0), 2, "all handlers to end")
        assert.same({ accepted = 3, active = 0, rejected = 1 }, stats(server))
      end)
    end)
  end)

  describe("stats", function()
    it("counts accepted and active connections", function()
      run(function()
        local server <close> = support.serve(function(sock) sock:read("a") end)
        assert.same({ accepted = 0, active = 0, rejected = 0 }, stats(server))
        local c1 = support.connect(server)
        local c2 = support.connect(server)
        support.wait_until(function() return server:stats().active == 2 end)
        assert.same({ accepted = 2, active = 2, rejected = 0 }, stats(server))
        c1:close()
        support.wait_until(function() return server:stats().active == 1 end)
        c2:close()
        support.wait_until(function() return server:stats().active == 0 end)
        assert.same({ accepted = 2, active = 0, rejected = 0 }, stats(server))
      end)
    end)
  end)

  describe("IPv6 and unix sockets", function()
    it("listens on ::1", function()
      run(function()
        local server <close> = support.serve(tagged_echo("v6"), { host = "::1" })
        assert.equal("::1", server:address())
        assert.is_true(server:port() > 0)
        local client <close> = support.connect(server)
        assert.same({ "::1", server:port() }, { client:peer() })
        assert.equal("v6:hi", support.roundtrip(client, "hi"))
      end)
    end)

    it("listens on a unix socket path and removes the file on close", function()
      run(function()
        local path = support.tmpdir() .. "/berth.sock"
        local server = support.serve(tagged_echo("unix"), { path = path })
        assert.equal(0, server:port())
        assert.equal(path, server:address())
        assert.is_true(support.is_socket_file(path))
        local client <close> = assert(berth.connect { path = path, timeout = 2 })
        assert.equal(path, (client:peer()))
        assert.equal("unix:hi", support.roundtrip(client, "hi"))
        server:close()
        assert.is_false(support.exists(path))
      end)
    end)

    it("replaces a stale socket file that nothing answers on", function()
      local path = support.tmpdir() .. "/stale.sock"
      -- A child lua5.4 listens on the path and exits without closing.
      local out, code, err = support.run_fixture("stale_unix_socket", { path })
      assert.equal(0, code, err)
      assert.equal("listening\n", out)
      assert.is_true(support.is_socket_file(path))
      run(function()
        local _server <close> = support.serve(tagged_echo("fresh"), { path = path })
        local client <close> = assert(berth.connect { path = path, timeout = 2 })
        assert.equal("fresh:hi", support.roundtrip(client, "hi"))
      end)
    end)

    it("refuses with 'addrinuse' a socket file that a live server answers on", function()
      run(function()
        local path = support.tmpdir() .. "/live.sock"
        local _live <close> = support.serve(tagged_echo("live"), { path = path })
        assert_fail("addrinuse", nil, berth.listen { path = path })
        local client <close> = assert(berth.connect { path = path, timeout = 2 })
        assert.equal("live:hi", support.roundtrip(client, "hi"))
      end)
    end)
  end)
end)

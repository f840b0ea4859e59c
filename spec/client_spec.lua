-- berth.connect: numeric addresses, "localhost", names through the resolver
-- thread, unix paths, and its failures (README "API reference" > berth.connect).
local support = require "support"
local berth = support.berth
local run = support.run
local assert_fail = support.assert_fail

local ECONNREFUSED, ENOENT = 111, 2

-- A server answering each line with "<line>!" until EOF.
local function bang_server(opts)
  return support.serve(function(sock)
    for line in sock:lines() do sock:write(line, "!\n") end
  end, opts)
end

describe("berth.connect", function()
  before_each(support.before)
  after_each(support.after)

  it("connects to a numeric IPv4 address, positional form", function()
    run(function()
      local server <close> = bang_server()
      local sock <close> = assert(berth.connect("127.0.0.1", server:port()))
      assert.same({ "127.0.0.1", server:port() }, { sock:peer() })
      assert.equal("a!", support.roundtrip(sock, "a"))
    end)
  end)

  it("connects with the table form and a timeout", function()
    run(function()
      local server <close> = bang_server()
      local sock <close> = assert(berth.connect {
        host = "127.0.0.1", port = server:port(), timeout = 2,
      })
      assert.equal("b!", support.roundtrip(sock, "b"))
    end)
  end)

  it("connects to ::1", function()
    run(function()
      local server <close> = bang_server { host = "::1" }
      local sock <close> = assert(berth.connect("::1", server:port()))
      assert.same({ "::1", server:port() }, { sock:peer() })
      assert.equal("v6!", support.roundtrip(sock, "v6"))
    end)
  end)

  it("connects to 'localhost'", function()
    run(function()
      local server <close> = bang_server()
      local sock <close> = assert(berth.connect("localhost", server:port(), { timeout = 2 }))
      assert.equal("local!", support.roundtrip(sock, "local"))
    end)
  end)

  it("resolves a host name without blocking other connections", function()
    local name = support.loopback_name()
    if not name then
      pending("no name other than localhost maps to 127.0.0.1 in /etc/hosts")
      return
    end
    run(function()
      local server <close> = bang_server()
      -- A busy client keeps being served while the name resolves.
      local busy <close> = support.connect(server)
      local rounds, resolved = 0, nil
      berth.spawn(function()
        resolved = table.pack(berth.connect(name, server:port(), { timeout = 3 }))
      end)
      repeat
        rounds = rounds + 1
        assert.equal("r" .. rounds .. "!", support.roundtrip(busy, "r" .. rounds))
      until resolved or rounds > 10000
      local sock <close> = assert(resolved[1], tostring(resolved[2]))
      assert.same({ "127.0.0.1", server:port() }, { sock:peer() })
      assert.equal(name .. "!", support.roundtrip(sock, name))
    end)
  end)

  it("connects to a unix socket path", function()
    run(function()
      local path = support.tmpdir() .. "/c.sock"
      local _server <close> = bang_server { path = path }
      local sock <close> = assert(berth.connect { path = path, timeout = 2 })
      assert.equal(path, (sock:peer()))
      assert.equal("u!", support.roundtrip(sock, "u"))
    end)
  end)

  it("gives nil, 'refused', errno for a closed port", function()
    run(function()
      assert_fail("refused", ECONNREFUSED, berth.connect("127.0.0.1", support.free_port()))
    end)
  end)

  it("gives 'refused' for a stale unix socket file and 'notfound', ENOENT for a missing one",
    function()
    local path = support.tmpdir() .. "/stale.sock"
    local _, code, err = support.run_fixture("stale_unix_socket", { path })
    assert.equal(0, code, err)
    run(function()
      assert_fail("refused", ECONNREFUSED, berth.connect { path = path, timeout = 2 })
      assert_fail("notfound", ENOENT, berth.connect { path = path .. ".missing", timeout = 2 })
    end)
  end)

  it("gives nil, 'notfound' for a name that does not resolve", function()
    run(function()
      assert_fail("notfound", nil,
        berth.connect("no-such-host.invalid", 80, { timeout = 4 }))
    end)
  end)

  it("gives nil, 'timeout' when the connect does not complete in time", function()
    run(function()
      -- A paused listener with backlog 1 whose queue is full: the kernel
      -- drops further SYNs, so the next connect hangs until its timeout.
      local server <close> = support.listen { backlog = 1 }
      server:pause()
      local queued, result = {}, nil
      for _ = 1, 8 do
        result = table.pack(berth.connect("127.0.0.1", server:port(), { timeout = 0.2 }))
        if not result[1] then break end
        queued[#queued + 1] = result[1]
      end
      for _, sock in ipairs(queued) do sock:close() end
      assert.is_true(#queued >= 1, "the backlog should hold at least one connection")
      assert_fail("timeout", nil, table.unpack(result, 1, result.n))
    end)
  end)
end)

-- Issue 11: a connected socket gets a served connection's idle and send
-- timeouts when it asks for them (README "berth.connect"); by default it
-- has none.
describe("berth.connect idle_timeout and send_timeout", function()
  before_each(support.before)
  after_each(support.after)

  -- Task only: a listener and a connection to it made with `opts`; returns
  -- the client socket, the accepted peer (which never answers unless told)
  -- and the listener.
  local function connected(opts, listen_opts)
    local server = support.listen(listen_opts)
    local sock = assert(berth.connect(opts.path or "127.0.0.1", server:port(), opts))
    local peer = assert(server:accept(2))
    return sock, peer, server
  end

  it("idle_timeout: a connection with no traffic is closed; a waiting read gets nil, 'timeout'", function()
    run(function()
      local sock, peer, server = connected { idle_timeout = 0.3 }
      local _ <close> = support.closing(sock, peer, server)
      local t0 = berth.now()
      assert_fail("timeout", nil, sock:read("l"))
      local took = berth.now() - t0
      assert.is_true(took >= 0.25 and took < 1, ("closed after %.2f s"):format(took))
      assert.equal(-1, sock:fd(), "the socket is closed")
      assert_fail("timeout", nil, sock:read("l"))
      local got, code = support.read_to_end(peer, 1)
      assert.equal("", got)
      assert.equal("closed", code, "the peer did not see the connection end")
    end)
  end)

  it("idle_timeout: traffic either way keeps the connection open", function()
    run(function()
      local sock, peer, server = connected { idle_timeout = 0.3 }
      local _ <close> = support.closing(sock, peer, server)
      for i = 1, 4 do -- 0.8 s in all, never 0.3 s without a byte
        berth.sleep(0.2)
        if i % 2 == 1 then
          assert(sock:write("out" .. i .. "\n"))
          assert.equal("out" .. i, peer:read("l", 1))
        else
          assert(peer:write("in" .. i .. "\n"))
          assert.equal("in" .. i, sock:read("l", 1))
        end
      end
      assert.is_true(sock:fd() >= 0)
      assert_fail("timeout", nil, sock:read("l")) -- now quiet: closed
    end)
  end)

  it("without idle_timeout (or with false) a quiet connection stays open", function()
    run(function()
      for _, opts in ipairs { {}, { idle_timeout = false }, { idle_timeout = 0 } } do
        local sock, peer, server = connected(opts)
        local _ <close> = support.closing(sock, peer, server)
        assert_fail("timeout", nil, sock:read("l", 0.5)) -- the read's own timeout
        assert.is_true(sock:fd() >= 0, "the socket was closed")
        assert(peer:write("still here\n"))
        assert.equal("still here", sock:read("l", 1))
      end
    end)
  end)

  it("idle_timeout = true is the loop's idle_timeout (berth.limits)", function()
    run(function()
      berth.limits { idle_timeout = 0.2 }
      -- (The accepted side has none: only the client's timer may act.)
      local sock, peer, server = connected({ idle_timeout = true }, { idle_timeout = false })
      local _ <close> = support.closing(sock, peer, server)
      local t0 = berth.now()
      assert_fail("timeout", nil, sock:read("l"))
      assert.is_true(berth.now() - t0 < 1)
      berth.limits { idle_timeout = false } -- the loop has none: true is none
      local s2 <close> = assert(berth.connect("127.0.0.1", server:port(), { idle_timeout = true }))
      local p2 <close> = assert(server:accept(2))
      assert_fail("timeout", nil, s2:read("l", 0.4))
      assert.is_true(s2:fd() >= 0)
      assert(p2:write("open\n"))
      assert.equal("open", s2:read("l", 1))
    end)
  end)

  it("idle_timeout on a unix socket connection", function()
    run(function()
      local path = support.tmpdir() .. "/s"
      local server <close> = support.listen { path = path }
      local sock <close> = assert(berth.connect { path = path, idle_timeout = 0.2 })
      local peer <close> = assert(server:accept(2))
      assert_fail("timeout", nil, sock:read("l", 2))
      assert.equal("", (support.read_to_end(peer, 1)))
    end)
  end)

  it("send_timeout: output a peer does not read closes the connection; write gets nil, 'timeout'", function()
    run(function()
      local sock, peer, server = connected { send_timeout = 0.3 }
      local _ <close> = support.closing(sock, peer, server)
      local chunk = ("x"):rep(64 * 1024)
      local t0, result = berth.now(), nil
      for _ = 1, 1024 do -- 64 MiB at most; the peer never reads
        result = table.pack(sock:write(chunk))
        if not result[1] then break end
      end
      assert_fail("timeout", nil, table.unpack(result, 1, result.n))
      assert.is_true(berth.now() - t0 < 5)
      assert.equal(-1, sock:fd())
    end)
  end)

  it("checks its values: a time, false or true; anything else raises", function()
    run(function()
      local server <close> = support.listen()
      for _, key in ipairs { "idle_timeout", "send_timeout" } do
        for _, bad in ipairs { -1, "1", 0 / 0, -math.huge, {} } do
          support.assert_raises("connect: " .. key .. " must be a number of seconds >= 0, false or true",
            berth.connect, "127.0.0.1", server:port(), { [key] = bad })
        end
      end
      assert.equal("limit", require("berth.core").options.connect.idle_timeout.kind)
    end)
  end)
end)

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

-- Task only: a port nothing listens on (bound once, then closed).
local function closed_port()
  local server = support.listen()
  local port = server:port()
  server:close()
  return port
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
      assert_fail("refused", ECONNREFUSED, berth.connect("127.0.0.1", closed_port()))
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

-- Regression (issue 11): examples/proxy.lua, with an upstream that never
-- answers and a client that half-closed and then vanished, kept the
-- upstream socket and both relay tasks forever, even under --idle-timeout
-- 1: a socket berth made for the client side (berth.connect over TCP, a
-- unix path or TLS) got none of the limits a served connection has, and a
-- relay could not tell that the side no task was reading had gone. Class:
-- every client-side socket can have a served connection's idle and send
-- timeouts -- connect{idle_timeout=, send_timeout=}, setoption for any
-- socket (true: the loop's value) -- and covers the TLS handshake with
-- them; on("close", fn) ties two sockets together, and on("close", nil)
-- lets go again, so a handler's socket still closes (flushed) as it ends.
local support = require "support"
local berth = support.berth
local run = support.run
local assert_fail = support.assert_fail

local certs -- throwaway certificates from scripts/mkcerts

describe("regress: client-side sockets have the limits of served ones", function()
  setup(function()
    certs = support.tmpdir()
    assert(os.execute("scripts/mkcerts " .. certs .. " >/dev/null"), "scripts/mkcerts failed")
  end)
  before_each(support.before)
  after_each(support.after)

  it("a TLS client's quiet connection is closed by its idle_timeout", function()
    run(function()
      local server <close> = support.serve(function(sock)
        sock:read("l", 5) -- handshakes, then never answers
      end, { tls = { cert = certs .. "/server.crt", key = certs .. "/server.key" } })
      local sock <close> = assert(berth.connect("localhost", server:port(),
        { tls = { ca = certs .. "/ca.crt" }, timeout = 5, idle_timeout = 0.3 }))
      assert.truthy(sock:tlsinfo(), "the handshake completed")
      local t0 = berth.now()
      assert_fail("timeout", nil, sock:read("l"))
      assert.is_true(berth.now() - t0 < 1.5)
    end)
  end)

  it("a TLS handshake with a peer that never speaks ends at the idle_timeout", function()
    run(function()
      local server <close> = support.listen()
      local t0 = berth.now()
      local sock, code = berth.connect("localhost", server:port(),
        { tls = { ca = certs .. "/ca.crt" }, idle_timeout = 0.3 })
      local peer <close> = assert(server:accept(1))
      assert.is_nil(sock)
      assert.equal("timeout", code)
      local took = berth.now() - t0
      assert.is_true(took >= 0.25 and took < 1.5, ("%.2f s: not the idle timeout"):format(took))
      local _, end_code = support.read_to_end(peer, 1) -- a ClientHello, then the end
      assert.equal("closed", end_code)
    end)
  end)

  it("setoption gives any socket the loop's idle and send timeouts with true", function()
    run(function()
      berth.limits { idle_timeout = 0.2, send_timeout = 0.2 }
      local server <close> = support.listen { idle_timeout = false, send_timeout = false }
      local sock <close> = assert(berth.connect("127.0.0.1", server:port()))
      local peer <close> = assert(server:accept(1))
      assert_fail("timeout", nil, sock:read("l", 0.4)) -- none yet: still open
      assert.is_true(sock:fd() >= 0)
      assert.equal(sock, sock:setoption("send_timeout", true))
      assert.equal(sock, sock:setoption("idle_timeout", true))
      local t0 = berth.now()
      assert_fail("timeout", nil, sock:read("l"))
      assert.is_true(berth.now() - t0 < 1)
      local got, code = support.read_to_end(peer, 1)
      assert.same({ "", "closed" }, { got, code })
      support.assert_raises("setoption: send_timeout must be a number of seconds >= 0, or false",
        function() local s <close> = assert(berth.connect("127.0.0.1", server:port()))
          s:setoption("send_timeout", -1) end)
    end)
  end)

  it("on(\"close\", nil) unregisters: the handler's socket closes, flushed, as it ends", function()
    run(function()
      local reply = ("r"):rep(256 * 1024) .. "\n" -- more than one send takes
      local fired = 0
      local server <close> = support.serve(function(sock)
        sock:on("close", function() fired = fired + 1 end)
        assert(sock:read("l", 2))
        sock:on("close", nil)
        assert(sock:write(reply))
      end)
      local client <close> = support.connect(server:port())
      assert(client:write("go\n"))
      local got, code = support.read_to_end(client, 5)
      assert.equal("closed", code, "the handler's socket stayed open")
      assert.equal(#reply, #got)
      assert.equal(reply, got)
      assert.equal(0, fired)
      -- Unregistering on a closed socket does nothing and does not raise.
      assert.equal(client, client:on("close", nil))
      client:close()
      assert.equal(client, client:on("close", nil))
      support.assert_raises("invalid option 'clsoe'",
        client.on, client, "clsoe", nil)
      support.assert_raises("attempt to use a closed socket",
        client.on, client, "close", function() end)
    end)
  end)
end)

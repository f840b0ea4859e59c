-- TLS on berth's sockets, in-process: berth servers and berth clients over
-- real loopback connections, with throwaway certificates from
-- scripts/mkcerts. A TLS socket is a Socket: read formats, pending(),
-- full duplex, limits and the error triple behave as on plain TCP; plus
-- SNI, ALPN, client certificates, STARTTLS (with bytes already buffered),
-- the handshake timeout, garbage instead of a ClientHello, close_notify
-- versus truncation, and certificate replacement.
local helpers = require "support"
local berth = helpers.berth
local run, expect = helpers.run, helpers.expect

local certs -- directory made once for the file

local function C(name) return certs .. "/" .. name end

local function server_tls(extra)
  local t = { cert = C("server.crt"), key = C("server.key") }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function client_tls(extra)
  local t = { ca = C("ca.crt") }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- Task only: a TLS connection to `server`, asserted.
local function connect(server, tls, host)
  local sock, err, msg = berth.connect(host or "localhost", server:port(),
    { tls = tls or client_tls(), timeout = 5 })
  assert(sock, ("TLS connect failed: %s %s"):format(tostring(err), tostring(msg)))
  return sock
end

describe("TLS", function()
  setup(function()
    certs = os.tmpname()
    os.remove(certs)
    assert(os.execute("scripts/mkcerts " .. certs .. " >/dev/null"), "scripts/mkcerts failed")
    helpers.write_file(C("garbage.pem"), "this is not a certificate\n")
  end)
  teardown(function() os.execute("rm -rf " .. helpers.shquote(certs)) end)
  before_each(helpers.before)
  after_each(helpers.after)

  it("echoes lines and 1 MiB byte-exact, every read format working", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls() })
      local sock <close> = connect(server)
      assert.equal("hello", helpers.roundtrip(sock, "hello"))
      assert(sock:write("abc", "def", "\r\n"))
      assert.equal("abcdef\r\n", sock:read("L", 2))
      assert(sock:write("x;y;"))
      assert.equal("x", sock:readuntil(";", 2))
      assert.equal("y;", sock:read(2, 2))
      local blob = helpers.random_bytes(1024 * 1024, 7)
      berth.spawn(function() assert(sock:write(blob)) end)
      helpers.assert_bytes(blob, sock:read(#blob, 10))
      assert(sock:write("z"))
      assert.equal("z", sock:readsome(10, 2))
      local stats = sock:stats()
      assert.is_true(stats.bytes_in > #blob and stats.bytes_out > #blob) -- on the wire
      sock:close()
      server:close()
    end, 20)
  end)

  it("reports what was negotiated in tlsinfo(), on both sides", function()
    run(function()
      local seen
      local server = helpers.serve(function(sock)
        seen = sock:tlsinfo()
        helpers.echo(sock)
      end, { tls = server_tls({ alpn = { "h2", "http/1.1" } }) })
      local sock <close> = connect(server, client_tls({ alpn = "http/1.1" }))
      assert.equal("ping", helpers.roundtrip(sock, "ping"))
      local mine = sock:tlsinfo()
      assert.equal("TLSv1.3", mine.version)
      assert.equal("http/1.1", mine.alpn)
      assert.is_true(mine.verified)
      assert.equal("CN=localhost", mine.peer)
      assert.equal("TLSv1.3", seen.version)
      assert.equal("http/1.1", seen.alpn)
      assert.equal("localhost", seen.sni)
      assert.is_false(seen.verified)
      assert.is_nil(seen.peer)
      assert.is_string(seen.cipher)
      local plain = helpers.pair()
      assert.is_nil(plain.client:tlsinfo())
      plain:close()
      sock:close()
      assert.is_nil(sock:tlsinfo())
      local stats = server:stats()
      assert.equal(1, stats.tls_handshakes)
      assert.equal(0, stats.tls_failed)
      server:close()
    end)
  end)

  it("chooses the certificate by SNI: exact names, wildcards, a default", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls({ sni = {
        ["sni.test"] = { cert = C("sni.crt"), key = C("sni.key") },
        ["*.example.test"] = { cert = C("wildcard.crt"), key = C("wildcard.key") },
      } }) })
      local function subject(name)
        local sock <close> = connect(server, client_tls({ servername = name }), "127.0.0.1")
        return sock:tlsinfo().peer
      end
      assert.equal("CN=sni.test", subject("sni.test"))
      assert.equal("CN=*.example.test", subject("a.example.test"))
      assert.equal("CN=localhost", subject("localhost"))
      -- a name nothing matches gets the default, which does not verify for it
      helpers.assert_fail("tls", nil, berth.connect("127.0.0.1", server:port(),
        { tls = client_tls({ servername = "b.a.example.test" }), timeout = 5 }))
      server:close()
    end)
  end)

  it("verifies the server: hostname, CA, expiry; verify = false skips it", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls() })
      local sock, code, why = berth.connect("127.0.0.1", server:port(),
        { tls = client_tls({ servername = "wrong.test" }), timeout = 5 })
      assert.is_nil(sock)
      assert.equal("tls", code)
      assert.matches("hostname mismatch", why)
      -- the system store does not know the test CA
      local _, code2, why2 = berth.connect("localhost", server:port(), { tls = true, timeout = 5 })
      assert.equal("tls", code2)
      assert.matches("certificate verify failed", why2)
      local lax <close> = assert(berth.connect("localhost", server:port(),
        { tls = { verify = false }, timeout = 5 }))
      assert.equal("ok", helpers.roundtrip(lax, "ok"))
      assert.is_false(lax:tlsinfo().verified)
      server:close()
      local expired = helpers.serve(helpers.echo, { tls = server_tls({
        cert = C("expired.crt"), key = C("expired.key") }) })
      local _, code3, why3 = berth.connect("localhost", expired:port(),
        { tls = client_tls(), timeout = 5 })
      assert.equal("tls", code3)
      assert.matches("expired", why3)
      expired:close()
    end)
  end)

  it("requires client certificates when told to, and names the peer", function()
    run(function()
      local peer
      local server = helpers.serve(function(sock)
        peer = sock:tlsinfo().peer
        helpers.echo(sock)
      end, { tls = server_tls({ ca = C("ca.crt"), verify = "required" }) })
      -- TLS 1.3: the client finishes first and learns of the refusal on
      -- its first read
      local sock = berth.connect("localhost", server:port(), { tls = client_tls(), timeout = 5 })
      if sock then
        assert(sock:write("x\n"))
        local line, code = sock:read("l", 2)
        assert.is_nil(line)
        assert.equal("tls", code)
        sock:close()
      end
      local ok <close> = connect(server, client_tls({ cert = C("client.crt"), key = C("client.key") }))
      assert.equal("hi", helpers.roundtrip(ok, "hi"))
      assert.equal("CN=berth-test-client", peer)
      helpers.wait_until(function() return server:stats().tls_failed == 1 end)
      assert.equal(1, server:stats().tls_handshakes)
      server:close()
    end)
  end)

  it("refuses a client with no ALPN protocol in common", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls({ alpn = "h2" }) })
      helpers.assert_fail("tls", nil, berth.connect("localhost", server:port(),
        { tls = client_tls({ alpn = { "spdy/3" } }), timeout = 5 }))
      server:close()
    end)
  end)

  it("closes a handshake that stalls at the handshake timeout, counted, not an error", function()
    run(function()
      local handler = expect(nil, 0)
      local server = helpers.serve(handler, { tls = server_tls(), handshake_timeout = 0.3 })
      local raw <close> = helpers.connect(server) -- plain TCP: never says hello
      local started = berth.now()
      assert.equal("", raw:read("a", 3)) -- EOF, and not a byte sent
      local took = berth.now() - started
      assert.is_true(took > 0.2 and took < 2, "closed after " .. took .. " s")
      assert.equal(1, server:stats().tls_failed)
      server:close()
    end)
  end)

  it("closes a connection that sends garbage instead of a ClientHello; the server goes on", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls() })
      local raw <close> = helpers.connect(server)
      assert(raw:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      local data = raw:read("a", 3) -- an alert, then EOF
      assert.is_string(data)
      helpers.wait_until(function() return server:stats().tls_failed == 1 end)
      local sock <close> = connect(server)
      assert.equal("still here", helpers.roundtrip(sock, "still here"))
      server:close()
    end)
  end)

  it("tells close_notify (closed) from a clean plain close before it", function()
    run(function()
      local got
      local done = berth.cond()
      local server = helpers.serve(function(sock)
        got = table.pack(sock:read("a", 3))
        done:signal()
      end, { tls = server_tls() })
      local sock = connect(server)
      assert(sock:write("all of it"))
      sock:close() -- sends close_notify
      done:wait(3)
      assert.same({ "all of it", n = 1 }, got)
      server:close()
    end)
  end)

  it("reports a stream cut without close_notify as \"truncated\", data kept", function()
    run(function()
      local got
      local done = berth.cond()
      local server = helpers.serve(function(sock)
        got = table.pack(sock:read("a", 5))
        done:signal()
      end, { tls = server_tls() })
      local py = helpers.start({ "python3", "spec/tls_client.py", "truncate",
        tostring(server:port()), C("ca.crt") })
      done:wait(8)
      assert.same({ nil, "truncated", "partial", n = 3 }, got)
      server:close()
      py:close()
    end, 10)
  end)

  it("half-closes: shutdown(\"w\") sends close_notify, the other way stays open", function()
    run(function()
      local server = helpers.serve(function(sock)
        local all = assert(sock:read("a", 3)) -- ends at the close_notify
        assert(sock:write("got " .. #all))
      end, { tls = server_tls() })
      local sock <close> = connect(server)
      assert(sock:write(string.rep("x", 5000)))
      assert(sock:shutdown("w"))
      helpers.assert_fail("closed", nil, sock:write("more"))
      assert.equal("got 5000", sock:read("a", 3))
      server:close()
    end)
  end)

  it("STARTTLS: upgrades a plain connection, with the ClientHello already buffered", function()
    run(function()
      local ctx = assert(berth.tls.context(server_tls(), true))
      local server = helpers.serve(function(sock)
        assert.equal("STARTTLS", sock:read("l", 2))
        -- the client did not wait: its ClientHello came with the command
        local _, pending = sock:pending()
        assert.is_true(pending > 0)
        assert(sock:starttls(ctx))
        helpers.echo(sock)
      end)
      local sock <close> = helpers.connect(server)
      assert(sock:write("STARTTLS\r\n"))
      assert(sock:starttls(client_tls(), "localhost"))
      assert.equal("over TLS", helpers.roundtrip(sock, "over TLS"))
      assert.equal("TLSv1.3", sock:tlsinfo().version)
      server:close()
    end)
  end)

  it("STARTTLS with a reply first, client side from options, server side from a table", function()
    run(function()
      local server = helpers.serve(function(sock)
        assert.equal("STARTTLS", sock:read("l", 2))
        assert(sock:write("220 go ahead\r\n"))
        assert(sock:starttls(server_tls())) -- accepted socket: server side
        helpers.echo(sock)
      end)
      local sock <close> = helpers.connect(server)
      assert(sock:write("STARTTLS\r\n"))
      assert.equal("220 go ahead", sock:read("l", 2))
      assert(sock:starttls(client_tls({ servername = "localhost" })))
      assert.equal("secret", helpers.roundtrip(sock, "secret"))
      helpers.assert_raises("already has TLS", sock.starttls, sock, client_tls())
      helpers.assert_raises("servername needed", function()
        local plain = helpers.pair()
        local _ <close> = plain
        plain.client:starttls(assert(berth.tls.context(client_tls())))
      end)
      server:close()
    end)
  end)

  it("settls: new handshakes get the new certificate, open connections keep working", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls() })
      local old <close> = connect(server)
      assert.equal("CN=localhost", old:tlsinfo().peer)
      assert(server:settls({ cert = C("sni.crt"), key = C("sni.key") }))
      local new <close> = connect(server, client_tls({ servername = "sni.test" }), "127.0.0.1")
      assert.equal("CN=sni.test", new:tlsinfo().peer)
      assert.equal("old one", helpers.roundtrip(old, "old one"))
      -- a broken certificate is refused and the current one stays
      local ok, code, why = server:settls({ cert = C("garbage.pem"), key = C("sni.key") })
      assert.is_nil(ok)
      assert.equal("tls", code)
      assert.matches("garbage.pem", why)
      local again <close> = connect(server, client_tls({ servername = "sni.test" }), "127.0.0.1")
      assert.equal("CN=sni.test", again:tlsinfo().peer)
      server:close()
    end)
  end)

  it("berth.tls.reload() re-reads the files; a broken file keeps the old certificate", function()
    run(function()
      local dir = helpers.tmpdir()
      local crt, key = dir .. "/live.crt", dir .. "/live.key"
      helpers.write_file(crt, helpers.read_file(C("server.crt")))
      helpers.write_file(key, helpers.read_file(C("server.key")))
      local server = helpers.serve(helpers.echo, { tls = { cert = crt, key = key } })
      local open <close> = connect(server)
      helpers.write_file(crt, helpers.read_file(C("sni.crt")))
      helpers.write_file(key, helpers.read_file(C("sni.key")))
      assert.is_true(berth.tls.reload())
      local new <close> = connect(server, client_tls({ servername = "sni.test" }), "127.0.0.1")
      assert.equal("CN=sni.test", new:tlsinfo().peer)
      assert.equal("still", helpers.roundtrip(open, "still"))
      helpers.write_file(crt, "broken\n")
      local level = berth.log.level("off")
      assert.is_false(berth.tls.reload())
      berth.log.level(level)
      local after <close> = connect(server, client_tls({ servername = "sni.test" }), "127.0.0.1")
      assert.equal("CN=sni.test", after:tlsinfo().peer)
      server:close()
    end)
  end)

  it("rejects broken files at listen with nil, \"tls\", why; bad options raise", function()
    run(function()
      local server, code, why = berth.listen({ host = "127.0.0.1", port = 0,
        tls = { cert = C("garbage.pem"), key = C("server.key") } })
      assert.is_nil(server)
      assert.equal("tls", code)
      assert.matches("cannot load cert", why)
      local _, code2, why2 = berth.listen({ host = "127.0.0.1", port = 0,
        tls = { cert = C("server.crt"), key = C("sni.key") } })
      assert.equal("tls", code2)
      assert.matches("mismatch", why2)
      helpers.assert_raises("unknown option 'certfile'", berth.listen,
        { host = "127.0.0.1", port = 0, tls = { certfile = "x" } })
      helpers.assert_raises("min_version", berth.listen,
        { host = "127.0.0.1", port = 0, tls = server_tls({ min_version = "2.0" }) })
      helpers.assert_raises("verify", berth.tls.context, { verify = "optional" })
    end)
  end)

  it("keeps min_version: a TLS 1.3-only server refuses TLS 1.2", function()
    run(function()
      local server = helpers.serve(helpers.echo, { tls = server_tls({ min_version = "1.3" }) })
      local ok <close> = connect(server)
      assert.equal("TLSv1.3", ok:tlsinfo().version)
      server:close()
    end)
  end)

  it("on(\"data\") works over TLS, delivering records OpenSSL already holds", function()
    run(function()
      local server = helpers.serve(function(sock)
        local got = {}
        sock:on("data", function(chunk)
          got[#got + 1] = chunk
          if table.concat(got):find("END") then sock:write(table.concat(got)) end
        end)
      end, { tls = server_tls() })
      local sock <close> = connect(server)
      local blob = helpers.random_bytes(100000, 3):gsub("END", "end") .. "END"
      assert(sock:write(blob))
      helpers.assert_bytes(blob, sock:read(#blob, 5))
      server:close()
    end)
  end)

  it("write before the handshake raises; server:accept() sockets handshake on demand", function()
    run(function()
      local server = helpers.listen({ tls = server_tls() })
      berth.spawn(function()
        local c <close> = connect(server)
        helpers.roundtrip(c, "x")
      end)
      local sock <close> = assert(server:accept(2))
      helpers.assert_raises("handshake is not done", sock.write, sock, "too early")
      assert.equal(sock, sock:handshake(2))
      assert.equal("x", sock:read("l", 2))
      assert(sock:write("x\n"))
      sock:flush()
      server:close()
    end)
  end)
end)

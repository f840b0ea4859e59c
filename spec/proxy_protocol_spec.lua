-- The PROXY protocol (issue 15): listeners that read a balancer's header
-- (v1 and v2, TLVs, trusted ranges, the timeout, "optional", TLS after the
-- header) and connections that send one (berth.connect{proxy_protocol=,
-- source=}), over real loopback connections.
local support = require "support"
local berth = support.berth
local run = support.run

local SIG2 = "\r\n\r\n\0\r\nQUIT\n"

-- A v2 PROXY TCP4 header from 1.2.3.4:1111 to 5.6.7.8:80 with `tlvs`
-- ({type, value} each).
local function v2_header(tlvs)
  local body = string.pack(">BBBBBBBBI2I2", 1, 2, 3, 4, 5, 6, 7, 8, 1111, 80)
  for _, t in ipairs(tlvs or {}) do
    body = body .. string.pack(">BI2", t[1], #t[2]) .. t[2]
  end
  return SIG2 .. string.pack(">BBI2", 0x21, 0x11, #body) .. body
end

-- A handler that answers its first line with what it knows of the
-- connection: "peer-host:peer-port proxied-host version" and the line.
local function reporter(sock)
  local line = sock:read("l", 5)
  local h, p = sock:peer()
  local lb, _, info = sock:proxied()
  sock:write(("%s:%s %s %s %s\n"):format(h, p, tostring(lb),
    info and info.version or "-", tostring(line)))
end

-- Task only: send `bytes` to `server`, return what comes back (to EOF).
local function exchange(server, bytes)
  local c <close> = support.connect(server)
  assert(c:write(bytes))
  return (support.read_to_end(c, 5))
end

describe("PROXY protocol inbound", function()
  before_each(support.before)
  after_each(support.after)

  it("reads a v1 header: peer() is the client, proxied() the balancer", function()
    run(function()
      local server <close> = support.serve(reporter, { proxy_protocol = true })
      local got = exchange(server, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\nhello\n")
      assert.equal("1.2.3.4:1111 127.0.0.1 1 hello\n", got)
      got = exchange(server, "PROXY TCP6 2001:db8::1 ::1 4242 443\r\nsix\n")
      assert.equal("2001:db8::1:4242 127.0.0.1 1 six\n", got)
      local st = server:stats()
      assert.equal(2, st.proxy_ok)
      assert.equal(0, st.proxy_failed)
    end)
  end)

  it("reads a v2 header with TLVs, bytes after it in the same packet kept", function()
    run(function()
      local info
      local server <close> = support.serve(function(sock)
        local line = sock:read("l", 5)
        local lb, lbport
        lb, lbport, info = sock:proxied()
        assert.equal("127.0.0.1", lb)
        assert.is_number(lbport)
        sock:write(("%s:%s %s\n"):format(select(1, sock:peer()), select(2, sock:peer()), line))
      end, { proxy_protocol = true })
      local hdr = v2_header { { 0x01, "h2" }, { 0x02, "example.test" }, { 0xE0, "x" } }
      assert.equal("1.2.3.4:1111 after\n", exchange(server, hdr .. "after\n"))
      assert.equal(2, info.version)
      assert.equal("proxy", info.command)
      assert.equal("5.6.7.8", info.dst_host)
      assert.equal(80, info.dst_port)
      assert.equal("h2", info.alpn)
      assert.equal("example.test", info.authority)
      assert.equal(3, #info.tlvs)
      assert.equal(0xE0, info.tlvs[3].type)
      assert.equal("x", info.tlvs[3].value)
    end)
  end)

  it("reads a header that arrives a few bytes at a time", function()
    run(function()
      local server <close> = support.serve(reporter, { proxy_protocol = true })
      local c <close> = support.connect(server)
      local bytes = v2_header() .. "slow\n"
      for i = 1, #bytes, 5 do
        assert(c:write(bytes:sub(i, i + 4)))
        berth.sleep(0.005)
      end
      assert.equal("1.2.3.4:1111 127.0.0.1 2 slow\n", (support.read_to_end(c, 5)))
    end)
  end)

  it("closes and counts a malformed, missing or late header; the handler never runs", function()
    run(function()
      local ran = 0
      local server <close> = support.serve(function(sock) ran = ran + 1; sock:write("ran\n") end,
        { proxy_protocol = true, proxy_timeout = 0.3 })
      assert.equal("", exchange(server, "PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n"))
      assert.equal("", exchange(server, "GET / HTTP/1.1\r\n\r\n"))
      local c <close> = support.connect(server)
      assert(c:write("PROXY TCP4 1.2"))        -- and nothing more
      local t0 = berth.now()
      assert.equal("", (support.read_to_end(c, 5)))
      local waited = berth.now() - t0
      assert.is_true(waited > 0.2 and waited < 2, "closed after " .. waited)
      local st = server:stats()
      assert.equal(3, st.proxy_failed)
      assert.equal(0, st.proxy_ok)
      assert.equal(0, ran)
    end)
  end)

  it("honours headers only from proxy_trusted ranges", function()
    run(function()
      local ran = 0
      local count = function(sock) ran = ran + 1; reporter(sock) end
      local refusing <close> = support.serve(count,
        { proxy_protocol = true, proxy_trusted = { "10.0.0.0/8", "fd00::/8" } })
      assert.equal("", exchange(refusing, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\nx\n"))
      assert.equal(1, refusing:stats().proxy_refused)
      local trusting <close> = support.serve(count,
        { proxy_protocol = true, proxy_trusted = { "10.0.0.0/8", "127.0.0.0/8" } })
      assert.equal("1.2.3.4:1111 127.0.0.1 1 x\n",
        exchange(trusting, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\nx\n"))
      assert.equal(1, ran)
      -- "optional": an untrusted peer is a direct client, unless it sends a header.
      local optional <close> = support.serve(count,
        { proxy_protocol = "optional", proxy_trusted = { "10.0.0.0/8" } })
      assert.matches("^127%.0%.0%.1:%d+ nil %- direct\n$", exchange(optional, "direct\n"))
      assert.equal("", exchange(optional, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\nx\n"))
      assert.equal(1, optional:stats().proxy_refused)
      assert.equal(2, ran)
    end)
  end)

  it("optional: serves direct clients, even silent ones, after the timeout", function()
    run(function()
      local server <close> = support.serve(function(sock)
        sock:write(("%s hi\n"):format(tostring(sock:proxied())))
        sock:read("l", 5)
      end, { proxy_protocol = "optional", proxy_timeout = 0.2 })
      local c <close> = support.connect(server)
      assert.equal("nil hi\n", c:read("L", 3)) -- a server-speaks-first client
      local other <close> = support.serve(reporter, { proxy_protocol = "optional" })
      assert.equal("1.2.3.4:1111 127.0.0.1 1 y\n",
        exchange(other, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\ny\n"))
    end)
  end)

  it("rejects bad options", function()
    support.assert_raises("proxy_trusted", berth.listen,
      { host = "127.0.0.1", port = 0, proxy_protocol = true, proxy_trusted = { "10.0.0.0/33" } })
    support.assert_raises("proxy_protocol", berth.listen,
      { host = "127.0.0.1", port = 0, proxy_protocol = "sometimes" })
    support.assert_raises("needs proxy_protocol", berth.listen,
      { host = "127.0.0.1", port = 0, proxy_trusted = { "10.0.0.0/8" } })
    support.assert_raises("proxy_protocol", berth.connect, "127.0.0.1", 1, { proxy_protocol = 3 })
  end)

  it("berth.proxy.fromenv reads PROXY_PROTOCOL", function()
    assert.is_nil(berth.proxy.fromenv("BERTH_SPEC_UNSET_VARIABLE"))
    assert.has_error(function() berth.proxy.fromenv("HOME") end) -- neither 0, 1 nor optional
  end)
end)

describe("PROXY protocol outbound", function()
  before_each(support.before)
  after_each(support.after)

  it("connect{proxy_protocol=1|2, source=} passes the client on", function()
    run(function()
      local last
      local back <close> = support.serve(function(sock)
        local h, p = sock:peer()
        local _, _, info = sock:proxied()
        last = { host = h, port = p, version = info.version, dst = info.dst_host }
        sock:write("ok\n")
      end, { proxy_protocol = true })
      for _, version in ipairs { 1, 2 } do
        -- a relay that is itself behind a balancer: the original client goes on
        local relay <close> = support.serve(function(sock)
          local up = assert(berth.connect("127.0.0.1", back:port(),
            { proxy_protocol = version, source = sock, timeout = 2 }))
          sock:write(up:read("L", 5))
          up:close()
        end, { proxy_protocol = true })
        assert.equal("ok\n", exchange(relay, "PROXY TCP4 9.8.7.6 5.6.7.8 4321 80\r\n"))
        assert.same({ host = "9.8.7.6", port = 4321, version = version, dst = "5.6.7.8" }, last)
      end
      -- a direct client's own address, and no source: a LOCAL/UNKNOWN header
      local relay <close> = support.serve(function(sock)
        local up = assert(berth.connect("127.0.0.1", back:port(),
          { proxy_protocol = 2, source = sock, timeout = 2 }))
        sock:write(up:read("L", 5))
        up:close()
      end)
      local c <close> = support.connect(relay)
      local _, myport = c:localaddr()
      assert.equal("ok\n", c:read("L", 5))
      assert.same({ host = "127.0.0.1", port = myport, version = 2, dst = "127.0.0.1" }, last)
      local up <close> = assert(berth.connect("127.0.0.1", back:port(),
        { proxy_protocol = 1, timeout = 2 }))
      assert.equal("ok\n", up:read("L", 5))
      assert.equal("127.0.0.1", last.host) -- UNKNOWN: the real peer stays
    end)
  end)
end)

describe("PROXY protocol on a TLS listener", function()
  local certs
  setup(function()
    certs = os.tmpname()
    os.remove(certs)
    assert(os.execute("scripts/mkcerts " .. certs .. " >/dev/null"), "scripts/mkcerts failed")
  end)
  teardown(function() os.execute("rm -rf " .. support.shquote(certs)) end)
  before_each(support.before)
  after_each(support.after)

  it("reads the header before the handshake", function()
    run(function()
      local server <close> = support.serve(reporter, { proxy_protocol = true,
        tls = { cert = certs .. "/server.crt", key = certs .. "/server.key" } })
      local plain = support.connect(server)
      -- the header and the ClientHello may share a packet: nothing is lost
      assert(plain:write("PROXY TCP4 1.2.3.4 5.6.7.8 1111 443\r\n"))
      local c <close> = assert(berth.tls.client(plain, { ca = certs .. "/ca.crt" }, "localhost", 5))
      assert(c:write("secure\n"))
      assert.equal("1.2.3.4:1111 127.0.0.1 1 secure\n", c:read("L", 5))
      -- berth.connect sends the header first, then the handshake
      local c2 <close> = assert(berth.connect("localhost", server:port(),
        { proxy_protocol = 2, tls = { ca = certs .. "/ca.crt" }, timeout = 5 }))
      assert(c2:write("two\n"))
      assert.matches("^127%.0%.0%.1:%d+ 127%.0%.0%.1 2 two\n$", c2:read("L", 5))
      assert.equal(2, server:stats().proxy_ok)
    end)
  end)
end)

describe("PROXY protocol in the examples and the host", function()
  before_each(support.before)
  after_each(support.after)

  -- Task only: GET /ip through `bytes` (a header, or "") on port.
  local function get_ip(port, header)
    local c <close> = support.connect(port)
    assert(c:write(header .. "GET /ip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local reply = support.read_to_end(c, 5)
    return reply:match("^HTTP/1%.1 200 .-\r\n\r\n(.*)$"), reply
  end

  it("examples/http.lua with PROXY_PROTOCOL=1 answers /ip with the original client", function()
    support.with_example("http", { PROXY_PROTOCOL = "1" }, function(port)
      run(function()
        assert.equal("1.2.3.4:1111", get_ip(port, v2_header()))
        assert.equal("[2001:db8::7]:99",
          get_ip(port, "PROXY TCP6 2001:db8::7 ::1 99 80\r\n"))
        local _, reply = get_ip(port, "") -- no header: closed unanswered
        assert.equal("", reply)
      end)
    end)
  end)

  it("examples/proxy.lua with UPSTREAM_PROXY_PROTOCOL passes the client on", function()
    run(function()
      local seen = {}
      local upstream <close> = support.serve(function(sock)
        seen[#seen + 1] = table.concat({ sock:peer() }, ":")
        sock:write("hi\n")
      end, { proxy_protocol = true })
      for _, v in ipairs { "1", "2" } do
        local p, _, port = support.start_example("proxy", { PROXY_PROTOCOL = "1",
          UPSTREAM = "127.0.0.1:" .. upstream:port(), UPSTREAM_PROXY_PROTOCOL = v })
        local c <close> = support.connect(port)
        assert(c:write("PROXY TCP4 9.9.9." .. v .. " 5.6.7.8 4000 80\r\n"))
        assert.equal("hi\n", c:read("L", 5))
        support.stop_clean(p)
      end
      assert.same({ "9.9.9.1:4000", "9.9.9.2:4000" }, seen)
    end)
  end)

  it("the host's --proxy-protocol and --proxy-trusted set every listener's default", function()
    local p, port = support.start_host("examples/echo.lua",
      { "--proxy-protocol", "on", "--proxy-trusted", "10.0.0.0/8,127.0.0.1" })
    run(function()
      local c <close> = support.connect(port)
      assert(c:write("PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\necho\n"))
      assert.equal("echo\n", c:read("L", 5))
      local d <close> = support.connect(port)
      assert(d:write("no header\n"))
      assert.equal("", (support.read_to_end(d, 5)))
    end)
    support.stop_clean(p)
    local _, code, err = support.run_host({ "--proxy-protocol", "maybe", "-e", "" })
    assert.equal(2, code)
    assert.matches("%-%-proxy%-protocol", err)
    _, code, err = support.run_host({ "--proxy-trusted", "10.0.0.0/99", "-e", "" })
    assert.equal(2, code)
    assert.matches("10%.0%.0%.0/99", err)
  end)
end)

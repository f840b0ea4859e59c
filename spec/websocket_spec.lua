-- berth.websocket: the opening handshake, messages, the closing handshake,
-- and the protocol violations of RFC 6455 (each case written from the RFC:
-- the section is named), permessage-deflate (RFC 7692) with its bomb
-- limit, groups, and the client. The server runs in this process; raw
-- frames are written and read over berth sockets so every byte is seen.
local support = require "support"
local wire = require "support.wire"
local berth = support.berth
local http = require "berth.http"
local websocket = require "berth.websocket"
local run = support.run

local KEY, ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" -- RFC 6455 §1.3

-- A server whose /ws handler runs `fn(ws, req)` (default: echo) after
-- upgrade(req, res, opts); other paths 404.
local function serve(fn, opts, serve_opts)
  local t = { host = "127.0.0.1", port = 0, date = false }
  for k, v in pairs(serve_opts or {}) do t[k] = v end
  t.handler = function(req, res)
    if req.path ~= "/ws" then return res:status(404):send("no\n") end
    local ws = websocket.upgrade(req, res, opts)
    if not ws then return end
    if fn then return fn(ws, req) end
    for msg, kind in ws:messages() do ws:send(msg, kind) end
  end
  return assert(http.serve(t))
end

-- A client frame: masked unless opts.unmasked.
local function frame(op, payload, opts)
  opts = opts or {}
  local fin = opts.fin == false and 0 or 0x80
  local b1 = fin | ((opts.rsv or 0) << 4) | op
  local n = #payload
  local m = opts.unmasked and 0 or 0x80
  local hdr
  if n < 126 then
    hdr = string.char(b1, m | n)
  elseif n < 65536 then
    hdr = string.char(b1, m | 126) .. string.pack(">I2", n)
  else
    hdr = string.char(b1, m | 127) .. string.pack(">I8", n)
  end
  if opts.unmasked then return hdr .. payload end
  local key = { 0x37, 0xfa, 0x21, 0x3d }
  local out = {}
  for i = 1, n do out[i] = string.char(payload:byte(i) ~ key[(i - 1) % 4 + 1]) end
  return hdr .. string.char(table.unpack(key)) .. table.concat(out)
end

local function close_payload(code, reason)
  return string.pack(">I2", code) .. (reason or "")
end

-- Read one server frame: fin, opcode, payload (nil, code at the end).
local function read_frame(sock, timeout)
  local h, err = sock:read(2, timeout or 2)
  if not h then return nil, err end
  local b1, b2 = h:byte(1, 2)
  assert(b2 & 0x80 == 0, "a server frame must not be masked")
  local n = b2 & 0x7f
  if n == 126 then n = string.unpack(">I2", sock:read(2, 2))
  elseif n == 127 then n = string.unpack(">I8", sock:read(8, 2)) end
  local payload = n > 0 and assert(sock:read(n, timeout or 2)) or ""
  return b1 & 0x80 ~= 0, b1 & 0x0f, payload
end

-- Expect a close frame with `code`, then the end of the connection.
local function expect_close(sock, code, what)
  local fin, op, payload = read_frame(sock)
  assert(fin and op == 8, ("%s: expected a close frame, got op %s"):format(what, tostring(op)))
  assert.equal(code, string.unpack(">I2", payload), what)
  local rest, how = support.read_to_end(sock, 2)
  assert.equal("", rest, what)
  assert(how == "closed" or how == "reset", what)
end

-- A raw client after a successful handshake.
local function handshake(port, extra)
  local sock = support.connect(port)
  assert(sock:write("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 13\r\n" .. (extra or "") .. "\r\n"))
  local head = assert(sock:readuntil("\r\n\r\n", 2))
  assert(head:find("^HTTP/1.1 101 Switching Protocols\r\n"), head)
  assert(head:find("\r\nSec%-WebSocket%-Accept: " .. ACCEPT:gsub("%p", "%%%0")), head)
  return sock, head
end

describe("berth.websocket", function()
  before_each(support.before)
  after_each(support.after)

  describe("opening handshake (RFC 6455 §4.2)", function()
    it("answers 101 with the accept key of the RFC's example, and nothing else", function()
      run(function()
        local server <close> = serve()
        local sock <close>, head = handshake(server:port())
        assert.equal("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade"
          .. "\r\nSec-WebSocket-Accept: " .. ACCEPT, head)
        wire.expect_quiet(sock, 0.05)
      end)
    end)

    it("refuses a request that is no WebSocket handshake: 400, or 426 for another version", function()
      run(function()
        local server <close> = serve()
        local base = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        for _, case in ipairs {
          { base .. "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", "400" },
          { base .. "Sec-WebSocket-Version: 13\r\n\r\n", "400" },
          { "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " .. KEY
            .. "\r\nSec-WebSocket-Version: 13\r\n\r\n", "400" },
          { "POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            .. "Sec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", "400" },
          { base .. "Sec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 8\r\n\r\n", "426" },
        } do
          local sock <close> = support.connect(server:port())
          assert(sock:write(case[1]))
          local head = assert(sock:readuntil("\r\n\r\n", 2))
          assert.equal("HTTP/1.1 " .. case[2], head:sub(1, 12), case[1])
          if case[2] == "426" then assert(head:find("\r\nSec%-WebSocket%-Version: 13")) end
        end
      end)
    end)

    it("chooses the server's preferred subprotocol among the client's", function()
      run(function()
        local server <close> = serve(function(ws) ws:close() end, { protocols = { "v2.chat", "v1.chat" } })
        local _sock <close>, head = handshake(server:port(), "Sec-WebSocket-Protocol: v1.chat, v2.chat\r\n")
        assert(head:find("\r\nSec%-WebSocket%-Protocol: v2%.chat"), head)
        local client, proto = websocket.connect("ws://127.0.0.1:" .. server:port() .. "/ws",
          { protocols = { "v1.chat" } })
        assert(client, proto)
        assert.equal("v1.chat", proto)
        client:close()
      end)
    end)
  end)

  describe("messages", function()
    it("echoes text and binary, and reassembles fragments with a ping between them", function()
      run(function()
        local server <close> = serve()
        local sock <close> = handshake(server:port())
        assert(sock:write(frame(1, "hello")))
        assert.same({ true, 1, "hello" }, { read_frame(sock) })
        assert(sock:write(frame(2, "\0\1\2\255")))
        assert.same({ true, 2, "\0\1\2\255" }, { read_frame(sock) })
        -- §5.4: fragments, with a control frame in the middle (§5.5).
        assert(sock:write(frame(1, "frag", { fin = false }), frame(9, "are you there"),
          frame(0, "men", { fin = false }), frame(0, "ted")))
        assert.same({ true, 10, "are you there" }, { read_frame(sock) }) -- the pong first
        assert.same({ true, 1, "fragmented" }, { read_frame(sock) })
        -- 70000 bytes: a 64-bit length, arriving in pieces.
        local big = support.random_bytes(70000, 3)
        local f = frame(2, big)
        assert(sock:write(f:sub(1, 1000)))
        berth.sleep(0.02)
        assert(sock:write(f:sub(1001)))
        local fin, op, payload = read_frame(sock)
        assert(fin and op == 2)
        support.assert_bytes(big, payload)
      end)
    end)

    it("validates UTF-8 across fragments: a character split between two is fine", function()
      run(function()
        local server <close> = serve()
        local sock <close> = handshake(server:port())
        assert(sock:write(frame(1, "\xe2\x82", { fin = false }), frame(0, "\xac!")))
        assert.same({ true, 1, "\xe2\x82\xac!" }, { read_frame(sock) })
      end)
    end)

    it("receive times out without losing the connection", function()
      run(function()
        local got = {}
        local server <close> = serve(function(ws)
          got[#got + 1] = { ws:receive(0.05) }
          got[#got + 1] = { ws:receive(2) }
          ws:close()
        end)
        local sock <close> = handshake(server:port())
        berth.sleep(0.15)
        assert(sock:write(frame(1, "late")))
        local fin, op = read_frame(sock)
        assert(fin and op == 8)
        assert.same({ nil, "timeout" }, got[1])
        assert.same({ "late", "text" }, got[2])
      end)
    end)
  end)

  describe("protocol violations fail the connection with a close code (§7.1.7)", function()
    local function violation(bytes, code, what, opts)
      run(function()
        local result
        local server <close> = serve(function(ws)
          result = { ws:receive(2) }
        end, opts)
        local sock <close> = handshake(server:port())
        assert(sock:write(bytes))
        expect_close(sock, code, what)
        support.wait_until(function() return result end)
        assert.same({ nil, "closed", code }, { result[1], result[2], result[3] }, what)
      end)
    end

    it("an unmasked client frame: 1002 (§5.1)", function()
      violation(frame(1, "hello", { unmasked = true }), 1002, "unmasked")
    end)
    it("reserved bits without an extension: 1002 (§5.2)", function()
      violation(frame(1, "x", { rsv = 4 }), 1002, "RSV1")
      violation(frame(1, "x", { rsv = 2 }), 1002, "RSV2")
      violation(frame(1, "x", { rsv = 1 }), 1002, "RSV3")
    end)
    it("a reserved opcode: 1002 (§5.2)", function()
      violation(frame(3, "x"), 1002, "opcode 3")
      violation(frame(0xB, "x"), 1002, "opcode 0xB")
    end)
    it("a control frame over 125 bytes: 1002 (§5.5)", function()
      violation(frame(9, ("p"):rep(126)), 1002, "ping of 126")
    end)
    it("a fragmented control frame: 1002 (§5.5)", function()
      violation(frame(9, "p", { fin = false }), 1002, "ping without FIN")
    end)
    it("a continuation with no message, a new message inside one: 1002 (§5.4)", function()
      violation(frame(0, "x"), 1002, "lone continuation")
      violation(frame(1, "a", { fin = false }) .. frame(1, "b"), 1002, "text inside text")
    end)
    it("invalid close codes and a 1-byte close: 1002 (§7.4)", function()
      for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000 } do
        violation(frame(8, close_payload(code)), 1002, "close code " .. code)
      end
      violation(frame(8, "\3"), 1002, "close payload of 1 byte")
    end)
    it("invalid UTF-8 in text: 1007 (§8.1), also when split across fragments", function()
      violation(frame(1, "caf\xc3"), 1007, "truncated sequence")
      violation(frame(1, "\xed\xa0\x80"), 1007, "a surrogate")
      violation(frame(1, "\xc0\xaf"), 1007, "an overlong encoding")
      violation(frame(1, "ok \xe2\x82", { fin = false }) .. frame(0, "\x28"), 1007,
        "a sequence broken across fragments")
      violation(frame(1, "\xe2\x82", { fin = false }) .. frame(0, ""), 1007,
        "a message ending inside a sequence")
      violation(frame(8, close_payload(1000, "\xff")), 1007, "a close reason that is not UTF-8")
    end)
    it("a message over max_message: 1009 (§7.4.1), whole or in fragments", function()
      violation(frame(2, ("x"):rep(1025)), 1009, "one frame", { max_message = 1024 })
      violation(frame(2, ("x"):rep(600), { fin = false }) .. frame(0, ("x"):rep(600)), 1009,
        "fragments", { max_message = 1024 })
    end)
  end)

  describe("closing handshake (§5.5.1, §7)", function()
    it("answers the client's close with the same code, then closes", function()
      run(function()
        local result
        local server <close> = serve(function(ws) result = { ws:receive(2) } end)
        local sock <close> = handshake(server:port())
        assert(sock:write(frame(8, close_payload(3000, "bye"))))
        expect_close(sock, 3000, "echoed close")
        support.wait_until(function() return result end)
        assert.same({ nil, "closed", 3000, "bye" }, result)
      end)
    end)

    it("an empty close is answered with an empty close; the handler sees 1005", function()
      run(function()
        local result
        local server <close> = serve(function(ws) result = { ws:receive(2) } end)
        local sock <close> = handshake(server:port())
        assert(sock:write(frame(8, "")))
        assert.same({ true, 8, "" }, { read_frame(sock) })
        support.wait_until(function() return result end)
        assert.same({ nil, "closed", 1005, "" }, result)
      end)
    end)

    it("ws:close(code, reason) sends its close, waits for the peer's, then closes", function()
      run(function()
        local closed
        local server <close> = serve(function(ws)
          closed = ws:close(4000, "done")
        end)
        local sock <close> = handshake(server:port())
        assert.same({ true, 8, close_payload(4000, "done") }, { read_frame(sock) })
        assert(sock:write(frame(1, "ignored"), frame(8, close_payload(4000))))
        local rest, how = support.read_to_end(sock)
        assert.equal("", rest)
        assert.equal("closed", how)
        support.wait_until(function() return closed end)
      end)
    end)

    it("a connection that ends without a close frame reads as 1006", function()
      run(function()
        local result
        local server <close> = serve(function(ws) result = { ws:receive(2) } end)
        local sock = handshake(server:port())
        sock:close()
        support.wait_until(function() return result end)
        assert.same({ nil, "closed", 1006, "" }, result)
      end)
    end)
  end)

  describe("permessage-deflate (RFC 7692)", function()
    it("is negotiated, compresses both ways, and keeps the context across messages", function()
      run(function()
        local server <close> = serve(nil, { deflate = true })
        local sock <close>, head = handshake(server:port(),
          "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
        assert(head:find("\r\nSec%-WebSocket%-Extensions: permessage%-deflate\r?\n?"), head)
        local client = assert(websocket.connect("ws://127.0.0.1:" .. server:port() .. "/ws",
          { deflate = true }))
        local text = ("berth compresses this line. "):rep(200)
        for i = 1, 3 do
          assert(client:send(text .. i))
          assert.same({ text .. i, "text" }, { client:receive(2) })
        end
        local bin = support.random_bytes(100000, 9)
        assert(client:send(bin, "binary"))
        local got, kind = client:receive(2)
        assert.equal("binary", kind)
        support.assert_bytes(bin, got)
        client:close()
        -- A compressed message from the server has RSV1 set (raw client).
        sock:close()
      end)
    end)

    it("honours no_context_takeover and declines what zlib cannot do (8-bit windows)", function()
      run(function()
        local server <close> = serve(nil, { deflate = { server_no_context_takeover = true } })
        local _s1 <close>, h1 = handshake(server:port(),
          "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, "
          .. "permessage-deflate; client_no_context_takeover\r\n")
        assert(h1:find("Sec%-WebSocket%-Extensions: permessage%-deflate; "
          .. "server_no_context_takeover; client_no_context_takeover\r?\n?"), h1)
        local _s2 <close>, h2 = handshake(server:port(),
          "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n")
        assert.is_nil(h2:find("Extensions"), h2)
        local _s3 <close>, h3 = handshake(server:port(),
          "Sec-WebSocket-Extensions: permessage-deflate; unknown_param\r\n")
        assert.is_nil(h3:find("Extensions"), h3)
      end)
    end)

    it("a compressed message that inflates past max_message fails with 1009 (a bomb)", function()
      run(function()
        local result
        local server <close> = serve(function(ws) result = { ws:receive(2) } end,
          { deflate = true, max_message = 64 * 1024 })
        local client = assert(websocket.connect("ws://127.0.0.1:" .. server:port() .. "/ws",
          { deflate = true, max_message = 64 * 1024 }))
        -- 8 MiB of zeros compresses to a few KiB: small on the wire.
        assert(client:send(("\0"):rep(8 * 1024 * 1024), "binary"))
        assert.equal(client:socket():stats().bytes_out < 64 * 1024, true)
        local msg, code, close = client:receive(2)
        assert.same({ nil, "closed", 1009 }, { msg, code, close })
        support.wait_until(function() return result end)
        assert.same({ nil, "closed", 1009 }, { result[1], result[2], result[3] })
      end)
    end)

    it("a compressed frame without deflate negotiated is RSV1: 1002", function()
      run(function()
        local server <close> = serve()
        local sock <close> = handshake(server:port())
        assert(sock:write(frame(1, "x", { rsv = 4 })))
        expect_close(sock, 1002, "RSV1 without negotiation")
      end)
    end)
  end)

  describe("groups", function()
    it("broadcast reaches every member but the sender; membership ends with the connection",
      function()
        run(function()
          local group = websocket.group("spec-room")
          local server <close> = serve(function(ws)
            group:add(ws)
            for msg in ws:messages() do group:send(msg, "text", ws) end
          end)
          local url = "ws://127.0.0.1:" .. server:port() .. "/ws"
          local a = assert(websocket.connect(url))
          local b = assert(websocket.connect(url))
          local c = assert(websocket.connect(url))
          support.wait_until(function() return group:count() == 3 end)
          assert(a:send("from a"))
          assert.same({ "from a", "text" }, { b:receive(2) })
          assert.same({ "from a", "text" }, { c:receive(2) })
          assert.same({ nil, "timeout" }, { a:receive(0.05) })
          c:close()
          support.wait_until(function() return group:count() == 2 end)
          a:close()
          b:close()
          support.wait_until(function() return group:count() == 0 end)
        end)
      end)

    it("drops a member that does not read (close 1008) and never stalls the others", function()
      run(function()
        local group = websocket.group("spec-slow", { max_lag = 64 * 1024 })
        local sent = 0
        local server <close> = serve(function(ws, req)
          group:add(ws)
          if req.headers["x-role"] == "sender" then
            local chunk = ("m"):rep(16 * 1024)
            for _ = 1, 1000 do
              sent = sent + group:send(chunk, "binary", ws)
              berth.sleep(0) -- the readers' turn: a sender that never yields outruns anyone
            end
            ws:close()
          else
            for _ in ws:messages() do end
          end
        end)
        local url = "ws://127.0.0.1:" .. server:port() .. "/ws"
        local fast = assert(websocket.connect(url, { max_message = 1 << 20 }))
        local slow = assert(websocket.connect(url))
        support.wait_until(function() return group:count() == 2 end)
        local got = 0
        local reader = berth.spawn(function()
          while true do
            local m = fast:receive(5)
            if not m then return end
            got = got + 1
          end
        end)
        local sender = assert(websocket.connect(url, { headers = { ["X-Role"] = "sender" } }))
        support.wait_until(function() return got == 1000 end, 10, "the fast member's 1000 messages")
        assert(reader)
        -- The slow member was dropped: after what it had buffered, a close 1008.
        local last
        repeat last = { slow:receive(5) } until last[1] == nil
        assert.same({ nil, "closed", 1008 }, { last[1], last[2], last[3] })
        assert(sent < 2000, "the slow member did not get every message")
        sender:close()
        fast:close()
      end, 15)
    end)
  end)

  describe("shutdown", function()
    it("sends 1001 going away to every client (examples/websocket.lua, SIGTERM)", function()
      local proc, _, port = support.start_example("websocket")
      run(function()
        local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/echo"))
        assert(ws:send("hi"))
        assert.same({ "hi", "text" }, { ws:receive(2) })
        proc:kill("TERM")
        local msg, code, close, reason = ws:receive(5)
        assert.same({ nil, "closed", 1001, "going away" }, { msg, code, close, reason })
      end)
      local _, how, code = proc:wait()
      assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    end)

    it("sends 1001 going away when a rolling reload (SIGHUP, --workers 2) retires a worker",
      function()
        local proc, port = support.start_host("examples/websocket.lua", { "--workers", "2" })
        run(function()
          local ws = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/echo"))
          assert(ws:send("hi"))
          assert.same({ "hi", "text" }, { ws:receive(2) })
          proc:kill("HUP")
          local msg, code, close, reason = ws:receive(8)
          assert.same({ nil, "closed", 1001, "going away" }, { msg, code, close, reason })
          -- The new workers serve.
          local again = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/echo"))
          assert(again:send("again"))
          assert.same({ "again", "text" }, { again:receive(2) })
          again:close()
        end, 15)
        support.stop_clean(proc)
      end)
  end)
end)

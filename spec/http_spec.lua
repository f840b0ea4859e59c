-- examples/http.lua, run by the host as a child process (PORT=0) and driven
-- over raw berth sockets: every response is compared byte for byte.
--
-- The example is built on berth.http (issue 14), which changed what the
-- hand-written server it replaced did in a few places, each asked for by
-- the issue or by RFC 9112: chunked request bodies are served (they were
-- 501), a request line over 8 KiB is 414 (was 431), a Content-Length no
-- 64-bit integer holds is 400 (was 413), a lower-case method is a method
-- like any other (was 400), an unknown HTTP version is 505 (was 400), an
-- HTTP/1.0 keep-alive response says "Connection: keep-alive", and every
-- 431 has the same body.
local support = require "support"
local wire = require "support.wire"
local berth = support.berth
local run = support.run
local expect_bytes, expect_quiet, expect_close = wire.expect_bytes, wire.expect_quiet, wire.expect_close

local MiB = 1024 * 1024

-- The exact responses of examples/http.lua.
local function response(status, reason, body, close, head)
  return ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s")
    :format(status, reason, #body, close and "Connection: close\r\n" or "", head and "" or body)
end
local HELLO = response(200, "OK", "Hello, World!")
local HELLO_CLOSE = response(200, "OK", "Hello, World!", true)
local HELLO_HEAD = response(200, "OK", "Hello, World!", false, true)
local HELLO_HEAD_CLOSE = response(200, "OK", "Hello, World!", true, true)
local NOT_FOUND = response(404, "Not Found", "Not Found\n")
local NOT_FOUND_HEAD = response(404, "Not Found", "Not Found\n", false, true)
local NOT_FOUND_HEAD_CLOSE = response(404, "Not Found", "Not Found\n", true, true)
local BAD_REQUEST = response(400, "Bad Request", "Bad Request\n", true)
local TOO_LARGE = response(413, "Content Too Large", "Content Too Large\n", true)
local LINE_TOO_LONG = response(431, "Request Header Fields Too Large",
  "Request Header Fields Too Large\n", true)
local BLOCK_TOO_LARGE = LINE_TOO_LONG
local URI_TOO_LONG = response(414, "URI Too Long", "URI Too Long\n", true)
local NOT_IMPLEMENTED = response(501, "Not Implemented", "Not Implemented\n", true)
local VERSION = response(505, "HTTP Version Not Supported", "HTTP Version Not Supported\n", true)
-- HTTP/1.0 with keep-alive: the response says it persists.
local HELLO_KA10 = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
  .. "Connection: keep-alive\r\n\r\nHello, World!"
local function echoed(body, close) return response(200, "OK", body, close) end

local GET = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
local function post(body, extra)
  return ("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %d\r\n\r\n%s")
    :format(extra or "", #body, body)
end

-- A request header block (request line + headers, no blank line) of exactly
-- `n` bytes, every line at most 8003 bytes.
local function block_of(n)
  local b = "GET / HTTP/1.1\r\nHost: 127.0.0.1"
  while #b + 8003 <= n do b = b .. "\r\nX: " .. ("x"):rep(7998) end
  b = b .. "\r\nY: " .. ("y"):rep(n - #b - 5)
  assert(#b == n)
  return b
end

-- Runs examples/http.lua for the test; `fn(port)` runs as a berth task.
local function with_http(fn, limit)
  support.with_example("http", nil, function(port)
    run(function() fn(port) end, limit or 10)
  end)
end

describe("examples/http.lua", function()
  before_each(support.before)
  after_each(support.after)

  it("GET / answers 200 \"Hello, World!\" (13 bytes, text/plain, Content-Length)", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write(GET))
      expect_bytes(sock, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
        .. "\r\nHello, World!")
      expect_quiet(sock, 0.1, "an HTTP/1.1 connection stays open")
    end)
  end)

  it("keeps an HTTP/1.1 connection alive across sequential requests", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      for i = 1, 5 do
        assert(sock:write(GET))
        expect_bytes(sock, HELLO, 2, "request " .. i)
        expect_quiet(sock, 0.02, "after request " .. i)
      end
      assert(sock:write(post("last")))
      expect_bytes(sock, echoed("last"))
      expect_quiet(sock)
    end)
  end)

  it("answers pipelined requests in order, in one write", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write(GET, "GET /missing HTTP/1.1\r\n\r\n", post("one\r\n\r\ntwo"),
        "HEAD / HTTP/1.1\r\n\r\n", post(""), GET))
      expect_bytes(sock, HELLO .. NOT_FOUND .. echoed("one\r\n\r\ntwo") .. HELLO_HEAD
        .. echoed("") .. HELLO)
      expect_quiet(sock)
    end)
  end)

  it("answers 200 pipelined requests in order", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local reqs, want = {}, {}
      for i = 1, 200 do
        if i % 3 == 0 then
          reqs[i], want[i] = post("body " .. i), echoed("body " .. i)
        elseif i % 3 == 1 then
          reqs[i], want[i] = GET, HELLO
        else
          reqs[i], want[i] = ("GET /n%d HTTP/1.1\r\n\r\n"):format(i), NOT_FOUND
        end
      end
      assert(sock:write(table.concat(reqs)))
      expect_bytes(sock, table.concat(want), 5)
      expect_quiet(sock)
    end)
  end)

  it("answers 404 for unknown paths and methods, keeping the connection", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      for _, req in ipairs {
        "GET /missing HTTP/1.1\r\n\r\n",
        "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /echo HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        "DELETE / HTTP/1.1\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
      } do
        assert(sock:write(req))
        expect_bytes(sock, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
          .. "Content-Length: 10\r\n\r\nNot Found\n", 2, req)
        expect_quiet(sock, 0.02, req)
      end
      assert(sock:write(GET))
      expect_bytes(sock, HELLO)
    end)
  end)

  it("HEAD sends GET's headers and no body", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write("HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
      expect_bytes(sock, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n")
      expect_quiet(sock, 0.1, "no body after a HEAD response")
      assert(sock:write("HEAD /missing HTTP/1.1\r\n\r\n"))
      expect_bytes(sock, NOT_FOUND_HEAD)
      expect_quiet(sock, 0.1, "no body after a HEAD 404")
      -- The next response starts right after the headers: no stray body.
      assert(sock:write(GET))
      expect_bytes(sock, HELLO)
      expect_quiet(sock)
    end)
  end)

  it("HEAD sends no body when the connection closes either (Connection: close, HTTP/1.0)",
    function()
      with_http(function(port)
        local failures = {}
        for _, case in ipairs {
          { "HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n", HELLO_HEAD_CLOSE },
          { "HEAD / HTTP/1.0\r\n\r\n", HELLO_HEAD_CLOSE },
          { "HEAD /missing HTTP/1.0\r\n\r\n", NOT_FOUND_HEAD_CLOSE },
        } do
          local sock <close> = support.connect(port)
          assert(sock:write(case[1]))
          local ok, err = pcall(expect_close, sock, case[2], 2, wire.show(case[1]))
          if not ok then failures[#failures + 1] = err end
        end
        assert(#failures == 0, table.concat(failures, "\n"))
      end)
    end)

  it("POST /echo echoes a Content-Length body, binary safe", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local binary = "\0\1\2\r\n\r\nGET / HTTP/1.1\r\n\r\n\255"
      assert(sock:write(post(binary)))
      expect_bytes(sock, echoed(binary))
      -- Header names are case-insensitive; an empty body; no Content-Length.
      assert(sock:write("POST /echo HTTP/1.1\r\ncontent-LENGTH:   5  \r\n\r\nhello"))
      expect_bytes(sock, echoed("hello"))
      assert(sock:write(post("")))
      expect_bytes(sock, echoed(""))
      assert(sock:write("POST /echo HTTP/1.1\r\nHost: x\r\n\r\n"))
      expect_bytes(sock, echoed(""))
      -- A body sent in pieces after the headers.
      assert(sock:write("POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhel"))
      berth.sleep(0.05) -- a slow client on purpose: the rest comes later
      assert(sock:write("lo world"))
      expect_bytes(sock, echoed("hello world"))
      expect_quiet(sock)
    end)
  end)

  it("POST /echo takes a body of exactly 1 MiB", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local body = support.random_bytes(MiB, 11)
      berth.spawn(function() assert(sock:write(post(body))) end)
      local want = echoed(body)
      local got = sock:read(#want, 10)
      support.assert_bytes(want, got)
      expect_quiet(sock)
    end, 20)
  end)

  it("POST /echo with a body over 1 MiB answers 413 and closes", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"))
      expect_close(sock, "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\n"
        .. "Content-Length: 18\r\nConnection: close\r\n\r\nContent Too Large\n")
      local sock2 <close> = support.connect(port)
      assert(sock2:write("POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"))
      expect_close(sock2, BAD_REQUEST)
    end)
  end)

  it("honours Connection: close: answers with Connection: close, then closes", function()
    with_http(function(port)
      for _, value in ipairs { "close", "Close", "CLOSE" } do
        local sock <close> = support.connect(port)
        assert(sock:write(("GET / HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n\r\n"):format(value)))
        expect_close(sock, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
          .. "Connection: close\r\n\r\nHello, World!", 2, value)
      end
      -- Pipelined: the requests after the closing one are not answered.
      local sock <close> = support.connect(port)
      assert(sock:write(GET, post("x", "Connection: close\r\n"), GET, GET))
      expect_close(sock, HELLO .. echoed("x", true))
      -- 404 with Connection: close.
      local sock3 <close> = support.connect(port)
      assert(sock3:write("GET /nope HTTP/1.1\r\nconnection: close\r\n\r\n"))
      expect_close(sock3, response(404, "Not Found", "Not Found\n", true))
    end)
  end)

  it("closes an HTTP/1.0 connection unless it asks for keep-alive", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write("GET / HTTP/1.0\r\n\r\n"))
      expect_close(sock, HELLO_CLOSE, 2, "HTTP/1.0 without headers")
      local sock2 <close> = support.connect(port)
      assert(sock2:write("GET / HTTP/1.0\r\nHost: x\r\n\r\n"))
      expect_close(sock2, HELLO_CLOSE, 2, "HTTP/1.0 with a header")
      local ka <close> = support.connect(port)
      for i = 1, 3 do
        assert(ka:write("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        expect_bytes(ka, HELLO_KA10, 2, "HTTP/1.0 keep-alive request " .. i)
        expect_quiet(ka, 0.05, "HTTP/1.0 keep-alive request " .. i)
      end
      assert(ka:write("GET / HTTP/1.0\r\n\r\n"))
      expect_close(ka, HELLO_CLOSE, 2, "HTTP/1.0 request without keep-alive after keep-alive")
    end)
  end)

  it("answers a malformed request line with 400 and closes", function()
    with_http(function(port)
      for _, req in ipairs {
        "GARBAGE\r\n\r\n",
        "GET /\r\nHost: x\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "\0\1\2\3\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      } do
        local sock <close> = support.connect(port)
        assert(sock:write(req))
        expect_close(sock, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
          .. "Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n", 2, wire.show(req))
      end
      local v2 <close> = support.connect(port)
      assert(v2:write("GET / HTTP/2.0\r\n\r\n"))
      expect_close(v2, VERSION, 2, "HTTP/2.0")
      -- In a pipeline: the good request before it is answered, nothing after.
      local sock <close> = support.connect(port)
      assert(sock:write(GET, "BAD\r\n\r\n", GET))
      expect_close(sock, HELLO .. BAD_REQUEST, 2, "pipelined", { closed = true, reset = true })
    end)
  end)

  it("answers a header line over 8 KiB with 431 and closes", function()
    with_http(function(port)
      -- "X: " + 8189 bytes = 8192: the limit itself is fine.
      local sock <close> = support.connect(port)
      assert(sock:write("GET / HTTP/1.1\r\nX: " .. ("x"):rep(8189) .. "\r\n\r\n"))
      expect_bytes(sock, HELLO, 2, "a header line of exactly 8 KiB")
      expect_quiet(sock)
      -- One byte more.
      local sock2 <close> = support.connect(port)
      assert(sock2:write("GET / HTTP/1.1\r\nX: " .. ("x"):rep(8190) .. "\r\n\r\n"))
      expect_close(sock2, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: "
        .. "text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\n"
        .. "Request Header Fields Too Large\n", 2, "a header line of 8 KiB + 1")
      -- A request line over 8 KiB too.
      local sock3 <close> = support.connect(port)
      assert(sock3:write("GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\n\r\n"))
      expect_close(sock3, URI_TOO_LONG, 2, "a request line over 8 KiB")
    end)
  end)

  it("answers a header block over 64 KiB with 431 and closes", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write(block_of(64 * 1024), "\r\n\r\n"))
      expect_bytes(sock, HELLO, 2, "a header block of exactly 64 KiB")
      expect_quiet(sock)
      local sock2 <close> = support.connect(port)
      assert(sock2:write(block_of(64 * 1024 + 1), "\r\n\r\n"))
      expect_close(sock2, BLOCK_TOO_LARGE, 2, "a header block of 64 KiB + 1")
      -- A header block that never ends: answered once it passes 64 KiB.
      local sock3 <close> = support.connect(port)
      assert(sock3:write(block_of(70000), "\r\n"))
      expect_close(sock3, BLOCK_TOO_LARGE, 2, "an endless header block")
    end)
  end)

  it("answers a transfer coding other than chunked with 501 and closes", function()
    with_http(function(port)
      for _, req in ipairs {
        "POST /echo HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: deflate,chunked\r\n\r\n",
      } do
        local sock <close> = support.connect(port)
        assert(sock:write(req))
        expect_close(sock, "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n"
          .. "Content-Length: 16\r\nConnection: close\r\n\r\nNot Implemented\n", 2, wire.show(req))
      end
      local sock <close> = support.connect(port)
      assert(sock:write(GET, "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"))
      expect_close(sock, HELLO .. NOT_IMPLEMENTED)
    end)
  end)

  it("echoes a chunked request body, keeping the connection", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      assert(sock:write(chunked, "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"))
      expect_bytes(sock, echoed("hello, world"))
      -- Upper-case hex, a trailer field, and the body in pieces.
      assert(sock:write(chunked, "A\r\n0123"))
      berth.sleep(0.05)
      assert(sock:write("456789\r\n0\r\nX-Trailer: t\r\n\r\n"))
      expect_bytes(sock, echoed("0123456789"))
      -- An empty chunked body, then a pipelined request after it.
      assert(sock:write(chunked, "0\r\n\r\n", GET))
      expect_bytes(sock, echoed("") .. HELLO)
      expect_quiet(sock)
    end)
  end)

  it("answers broken chunked framing with 400 and closes", function()
    with_http(function(port)
      local chunked = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      for _, body in ipairs {
        "x\r\nhello\r\n0\r\n\r\n",          -- not a hex size
        "5\r\nhelloXX0\r\n\r\n",              -- no CRLF after the data
        "5\nhello\r\n0\r\n\r\n",             -- a bare LF in framing
        "fffffffffffffffffff\r\n",             -- a size past 64 bits
      } do
        local sock <close> = support.connect(port)
        assert(sock:write(chunked, body))
        expect_close(sock, BAD_REQUEST, 2, wire.show(body))
      end
    end)
  end)

  it("answers a chunked body over 1 MiB with 413 and closes", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local piece = ("%x\r\n%s\r\n"):format(256 * 1024, ("z"):rep(256 * 1024))
      berth.spawn(function()
        sock:write("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ = 1, 5 do if not sock:write(piece) then return end end
      end)
      expect_close(sock, TOO_LARGE, 5, nil, { closed = true, reset = true })
    end, 10)
  end)

  it("request smuggling: differing Content-Lengths, Content-Length with chunked, "
    .. "space before the colon, obs-fold are 400 and close", function()
    with_http(function(port)
      for _, req in ipairs {
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /echo HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. "0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
        "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
      } do
        local sock <close> = support.connect(port)
        assert(sock:write(req))
        expect_close(sock, BAD_REQUEST, 2, wire.show(req))
      end
      -- Equal duplicates are one Content-Length (RFC 9110 §8.6).
      local sock <close> = support.connect(port)
      assert(sock:write("POST /echo HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi"))
      expect_bytes(sock, echoed("hi"))
    end)
  end)

  it("sends 100 Continue before reading a body the client holds back", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write("POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
      expect_bytes(sock, "HTTP/1.1 100 Continue\r\n\r\n")
      expect_quiet(sock, 0.05, "after 100 Continue")
      assert(sock:write("hello"))
      expect_bytes(sock, echoed("hello"))
      -- A request whose body is never read gets its answer without 100,
      -- and the connection closes (the client may still send the body).
      assert(sock:write("POST /nope HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
      expect_close(sock, response(404, "Not Found", "Not Found\n", true))
    end)
  end)

  it("streams a chunked response (and only its head for HEAD)", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
      assert(sock:write("GET /chunked HTTP/1.1\r\n\r\n"))
      expect_bytes(sock, head .. "5\r\nHello\r\n2\r\n, \r\n6\r\nWorld!\r\n0\r\n\r\n")
      assert(sock:write("HEAD /chunked HTTP/1.1\r\n\r\n", GET))
      expect_bytes(sock, head .. HELLO)
      expect_quiet(sock)
      -- HTTP/1.0 has no chunked coding: the body ends with the connection.
      local old <close> = support.connect(port)
      assert(old:write("GET /chunked HTTP/1.0\r\n\r\n"))
      expect_close(old, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        .. "Hello, World!")
    end)
  end)

  it("answers a request dribbled one byte per TCP segment", function()
    with_http(function(port)
      local sock <close> = support.connect(port)
      local req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: dribble\r\n\r\n"
      wire.dribble(sock, req:sub(1, -2))
      expect_quiet(sock, 0.1, "nothing before the last byte of the request")
      wire.dribble(sock, req:sub(-1))
      expect_bytes(sock, HELLO)
      local body = "a\r\n\r\nb"
      wire.dribble(sock, post(body))
      expect_bytes(sock, echoed(body))
      wire.dribble(sock, "HEAD / HTTP/1.1\r\n\r\n")
      expect_bytes(sock, HELLO_HEAD)
      wire.dribble(sock, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
      expect_close(sock, HELLO_CLOSE)
    end)
  end)

  it("serves 50 concurrent keep-alive clients", function()
    with_http(function(port)
      local n, finished = 50, 0
      for i = 1, n do
        berth.spawn(function()
          local sock <close> = support.connect(port)
          for j = 1, 10 do
            local body = ("client %d request %d"):format(i, j)
            assert(sock:write(GET, post(body)))
            expect_bytes(sock, HELLO .. echoed(body), 5)
          end
          finished = finished + 1
        end)
      end
      support.wait_until(function() return finished == n end, 10, "all clients")
    end, 20)
  end)
end)

-- berth.http as a library: its defaults (Date, Host required), the request
-- and response objects, streaming both ways, handler errors, hot reload of
-- a handler module, berth.http.static and the client. The server runs in
-- this process; requests go over raw berth sockets.
local support = require "support"
local wire = require "support.wire"
local berth = support.berth
local http = require "berth.http"
local run = support.run

local function serve(handler, opts)
  local t = { host = "127.0.0.1", port = 0, handler = handler }
  for k, v in pairs(opts or {}) do t[k] = v end
  return assert(http.serve(t))
end

-- Send `req` and read one response: status, headers (lower-case), body.
local function exchange(sock, req)
  assert(sock:write(req))
  local head = assert(sock:readuntil("\r\n\r\n", 2))
  local status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:]+): ([^\r\n]*)") do headers[k:lower()] = v end
  local body = ""
  if headers["content-length"] then
    body = assert(sock:read(tonumber(headers["content-length"]), 2))
  end
  return status, headers, body, head
end

describe("berth.http", function()
  before_each(support.before)
  after_each(support.after)

  it("sends a Date header (IMF-fixdate, cached per second) by default", function()
    run(function()
      local server <close> = serve(function(_, res) res:send("x") end)
      local sock <close> = support.connect(server:port())
      local _, h1 = exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      local _, h2 = exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      assert.truthy(h1.date:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"), h1.date)
      local now = os.time()
      local ok = false
      for dt = -2, 2 do ok = ok or h1.date == os.date("!%a, %d %b %Y %H:%M:%S GMT", now + dt) end
      assert(ok, "Date is not now: " .. h1.date)
      assert(h2.date >= h1.date or h2.date:sub(1, 5) ~= h1.date:sub(1, 5))
    end)
  end)

  it("answers HTTP/1.1 without Host with 400 by default (RFC 9112 §3.2)", function()
    run(function()
      local server <close> = serve(function(_, res) res:send("x") end, { date = false })
      local sock <close> = support.connect(server:port())
      assert(sock:write("GET / HTTP/1.1\r\n\r\n"))
      wire.expect_close(sock, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
        .. "Content-Length: 12\r\nConnection: close\r\n\r\nBad Request\n")
    end)
  end)

  it("gives the handler the request's fields, headers and arguments", function()
    run(function()
      local seen
      local server <close> = serve(function(req, res)
        seen = {
          method = req.method, path = req.path, query = req.query, target = req.target,
          version = req.version, host = req.host, peer = req.peer,
          ua = req.headers["User-Agent"], accept = req.headers.accept,
          cookie = req.headers.cookie, x = { req:header("x-multi") },
          a = req.args.a, b = req.args.b, sp = req.args.sp, empty = req.args.empty,
          none = req.headers["no-such"], length = req.length, chunked = req.chunked,
        }
        res:send("ok")
      end)
      local sock <close> = support.connect(server:port())
      local status = exchange(sock, "GET /p%20q?a=1&b=x&b=y&sp=a+b%21&empty HTTP/1.1\r\n"
        .. "Host: example.com:8080\r\nUser-Agent: spec\r\nAccept: a\r\naccept: b\r\n"
        .. "Cookie: c=1\r\nCookie: d=2\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n")
      assert.equal(200, status)
      assert.same({
        method = "GET", path = "/p%20q", query = "a=1&b=x&b=y&sp=a+b%21&empty",
        target = "/p%20q?a=1&b=x&b=y&sp=a+b%21&empty", version = "1.1",
        host = "example.com:8080", peer = "127.0.0.1", ua = "spec", accept = "a, b",
        cookie = "c=1; d=2", x = { "1", "2" }, a = "1", b = { "x", "y" }, sp = "a b!",
        empty = "", chunked = false,
      }, seen)
    end)
  end)

  it("streams a request body of any size through req:reader(), chunked or not", function()
    run(function()
      local counts = {}
      local server <close> = serve(function(req, res)
        local n, pieces = 0, 0
        for piece in req:reader() do n, pieces = n + #piece, pieces + 1 end
        counts[#counts + 1] = n
        res:send(tostring(n))
      end)
      local sock <close> = support.connect(server:port())
      local total = 4 * 1024 * 1024 -- more than max_body: reader() is not bound by it
      berth.spawn(function()
        sock:write(("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"):format(total))
        local block = ("u"):rep(64 * 1024)
        for _ = 1, total // #block do sock:write(block) end
        sock:write("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ = 1, 40 do sock:write(("%x\r\n%s\r\n"):format(#block, block)) end
        sock:write("0\r\n\r\n")
      end)
      local function body_of()
        local head = assert(sock:readuntil("\r\n\r\n", 10))
        return sock:read(tonumber(head:match("Content%-Length: (%d+)")), 2)
      end
      assert.equal(tostring(total), body_of())
      assert.equal(tostring(40 * 64 * 1024), body_of())
    end, 20)
  end)

  it("streams a response with res:write: chunked, or raw with a Content-Length", function()
    run(function()
      local server <close> = serve(function(req, res)
        if req.path == "/len" then res:header("Content-Length", 6) end
        res:write("abc")
        res:write("")
        res:write("def")
      end, { date = false })
      local sock <close> = support.connect(server:port())
      assert(sock:write("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /len HTTP/1.1\r\nHost: a\r\n\r\n"))
      wire.expect_bytes(sock, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabcdef")
      wire.expect_quiet(sock)
    end)
  end)

  it("answers an empty 200 when the handler sends nothing; 204 has no length", function()
    run(function()
      local server <close> = serve(function(req, res)
        if req.path == "/204" then res:status(204) end
      end, { date = false })
      local sock <close> = support.connect(server:port())
      assert(sock:write("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n"))
      wire.expect_bytes(sock, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        .. "HTTP/1.1 204 No Content\r\n\r\n")
      wire.expect_quiet(sock)
    end)
  end)

  it("a handler that raises: 500 and close, and the error goes to onerror", function()
    run(function()
      local errors = {}
      local server <close> = serve(function(req, res)
        if req.path == "/late" then res:write("partial") end
        error("handler broke")
      end, { date = false, onerror = function(err) errors[#errors + 1] = tostring(err) end })
      local sock <close> = support.connect(server:port())
      assert(sock:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
      wire.expect_close(sock, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
        .. "Content-Length: 22\r\nConnection: close\r\n\r\nInternal Server Error\n")
      -- Once the head is out, the connection just ends.
      local late <close> = support.connect(server:port())
      assert(late:write("GET /late HTTP/1.1\r\nHost: a\r\n\r\n"))
      local got = support.read_to_end(late)
      assert.equal("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n", got)
      support.wait_until(function() return #errors == 2 end)
      assert.truthy(errors[1]:find("handler broke", 1, true))
    end)
  end)

  it("a handler ended from outside (CPU budget) on the second request of a kept-alive "
    .. "connection still answers 500, after the first was answered", function()
    berth.limits { cpu_budget = 0.1 }
    local ok, err = pcall(run, function()
      local server <close> = serve(function(req, res)
        if req.path == "/spin" then while true do end end
        res:send("first")
      end, { date = false, onerror = function() end })
      local sock <close> = support.connect(server:port())
      local status, _, body = exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      assert.equal(200, status)
      assert.equal("first", body)
      assert(sock:write("GET /spin HTTP/1.1\r\nHost: a\r\n\r\n"))
      wire.expect_close(sock, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
        .. "Content-Length: 22\r\nConnection: close\r\n\r\nInternal Server Error\n")
    end)
    berth.limits { cpu_budget = false }
    assert(ok, err)
  end)

  it("refuses header names and values that would inject lines", function()
    run(function()
      local errs = {}
      local server <close> = serve(function(_, res)
        for _, pair in ipairs { { "X", "a\r\nInjected: 1" }, { "Bad Name", "v" }, { "X", " lead" },
          { "Transfer-Encoding", "chunked" } } do
          local ok, err = pcall(res.header, res, pair[1], pair[2])
          errs[#errs + 1] = not ok and err
        end
        res:send("fine")
      end, { date = false })
      local sock <close> = support.connect(server:port())
      local status, _, body = exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
      assert.equal(200, status)
      assert.equal("fine", body)
      for i = 1, 4 do assert.truthy(errs[i], "case " .. i .. " was accepted") end
    end)
  end)

  it("closes keep-alive connections that go idle (the server's idle_timeout)",
    function()
      run(function()
        local server <close> = serve(function(_, res) res:send("x") end,
          { date = false, idle_timeout = 0.2 })
        local sock <close> = support.connect(server:port())
        assert.equal(200, (exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")))
        local rest, how = support.read_to_end(sock, 2)
        assert.equal("", rest)
        assert.equal("closed", how)
      end)
    end)

  it("closes idle keep-alive connections at once on SIGTERM, not after the grace period",
    function()
      local proc, _, port = support.start_example("http")
      local started = support.clock()
      run(function()
        local sock <close> = support.connect(port)
        assert(sock:write("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        assert(sock:readuntil("Hello, World!", 2))
        berth.sleep(1.1) -- no longer a brand-new connection (spared for a second)
        started = support.clock()
        proc:kill("TERM")
        local rest, how = support.read_to_end(sock, 5)
        assert.same({ "", "closed" }, { rest, how })
      end)
      local _, how, code = proc:wait()
      assert.same({ "exit", 0 }, { how, code }, proc:stderr())
      assert(support.clock() - started < 3, "the shutdown waited for the idle client")
    end)

  it("serves a handler module by name, and a reload swaps it without a restart", function()
    local dir = support.tmpdir()
    -- A fresh name each run: berth.reload keeps a module for the process.
    local name = ("spec_http_mod_%d"):format(math.random(1, 1 << 30))
    local path = dir .. "/" .. name .. ".lua"
    support.write_file(path, 'return { handle = function(req, res, state) '
      .. 'state.n = (state.n or 0) + 1; res:send("v1 " .. state.n) end }')
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local ok, err = pcall(run, function()
      local server <close> = serve(name, { date = false })
      local sock <close> = support.connect(server:port())
      assert.equal("v1 1", select(3, exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")))
      support.write_file(path, 'return { handle = function(req, res, state) '
        .. 'state.n = state.n + 1; res:send("v2 " .. state.n) end }')
      assert(berth.reload.reload(name))
      assert.equal("v2 2", select(3, exchange(sock, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")))
    end)
    package.path = saved
    assert(ok, err)
  end)

  describe("static", function()
    local dir
    before_each(function()
      dir = support.tmpdir()
      os.execute("mkdir -p " .. support.shquote(dir .. "/sub"))
      support.write_file(dir .. "/index.html", "<h1>home</h1>")
      support.write_file(dir .. "/sub/a b.txt", "spaced")
      support.write_file(dir .. "/big.bin", support.random_bytes(300000, 4))
      support.write_file(dir .. "/../secret.txt", "secret")
    end)

    it("serves files, index.html, HEAD; 404, 405, 301 for a directory; refuses ..", function()
      run(function()
        local server <close> = serve(http.static(dir), { date = false })
        local sock <close> = support.connect(server:port())
        local function get(target, method)
          return exchange(sock, ("%s %s HTTP/1.1\r\nHost: a\r\n\r\n"):format(method or "GET", target))
        end
        local st, h, body = get("/")
        assert.same({ 200, "text/html; charset=utf-8", "<h1>home</h1>" }, { st, h["content-type"], body })
        st, h, body = get("/sub/a%20b.txt")
        assert.same({ 200, "text/plain; charset=utf-8", "spaced" }, { st, h["content-type"], body })
        local big_status, _, big = get("/big.bin")
        assert.equal(200, big_status)
        support.assert_bytes(support.read_file(dir .. "/big.bin"), big)
        assert(sock:write("HEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n"))
        local head = assert(sock:readuntil("\r\n\r\n", 2))
        assert.truthy(head:find("Content-Length: 13", 1, true))
        assert.equal(404, (get("/nope.txt")))
        st, h = get("/sub")
        assert.same({ 301, "/sub/" }, { st, h.location })
        assert.equal(405, (get("/", "DELETE")))
        for _, bad in ipairs { "/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
          "/sub/%2E%2E/%2e%2e/secret.txt", "/a%00b" } do
          local s, _, b = get(bad)
          assert.equal(400, s, bad)
          assert.is_nil(b:find("secret"), bad)
        end
      end)
    end)
  end)

  describe("client", function()
    it("GETs and POSTs, reuses a kept-alive connection, decodes chunked bodies", function()
      run(function()
        local peers = {}
        local server <close> = serve(function(req, res)
          local _, port = req.socket:peer()
          peers[#peers + 1] = port
          if req.path == "/chunked" then
            res:write("a")
            res:write("bc")
            return
          end
          res:header("X-Method", req.method):send(req.method == "POST" and req:body() or "got " .. req.path)
        end)
        local base = "http://127.0.0.1:" .. server:port()
        local r = assert(http.request(base .. "/x?y=1"))
        assert.same({ 200, "got /x", "GET" }, { r.status, r.body, r.headers["x-method"] })
        r = assert(http.request { url = base .. "/echo", method = "POST", body = "payload" })
        assert.same({ 200, "payload" }, { r.status, r.body })
        r = assert(http.request(base .. "/chunked"))
        assert.same({ 200, "abc" }, { r.status, r.body })
        r = assert(http.request { url = base .. "/", method = "HEAD" })
        assert.same({ 200, "" }, { r.status, r.body })
        assert.equal(peers[1], peers[2])
        assert.equal(peers[1], peers[4])
        assert.same({ nil, "badurl" }, { http.request("not a url") })
        assert.same({ nil, "unsupported" }, { http.request("ftp://x/") })
        http.closeidle()
      end)
    end)

    it("sends again on a new connection when the server closed a pooled one", function()
      run(function()
        local server <close> = serve(function(_, res) res:send("ok") end, { idle_timeout = 0.1 })
        local base = "http://127.0.0.1:" .. server:port() .. "/"
        assert.equal("ok", assert(http.request(base)).body)
        berth.sleep(0.3) -- the server closes the idle connection
        assert.equal("ok", assert(http.request(base)).body)
        http.closeidle()
      end)
    end)
  end)
end)

-- sock:onreadable(fn): a connection that waits for its next bytes with no
-- task. Over real loopback sockets: the handler gives its task back and
-- the socket stays open; bytes (or the EOF) start fn(sock) as a new handler
-- task, at once when bytes are already buffered; the idle timeout, the
-- graceful shutdown's idle sweep, a close from elsewhere and the GC treat
-- a parked connection right; an error in fn ends the connection like a
-- handler's; TLS connections work. And berth.http: idle kept-alive
-- connections hold no task, yet answer their next request.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect

-- A handler that answers one line ("echo: LINE"), then parks with `after`
-- (default: itself, so every line is answered by a new task).
local function liner(after)
  local function handler(sock)
    local line = sock:read("l")
    if not line then return end
    assert(sock:write("echo: ", line, "\n"))
    sock:onreadable(after or handler)
  end
  return handler
end

-- Waits (task) until no task but the test's own and `extra` is alive.
local function wait_tasks(base, extra)
  support.wait_until(function() return berth.stats().tasks == base + (extra or 0) end,
    2, "tasks back to the baseline")
end

describe("sock:onreadable", function()
  before_each(support.before)
  after_each(support.after)

  it("gives the handler's task back; the next bytes start fn(sock) as a new task", function()
    run(function()
      local base = berth.stats().tasks
      local seen = {}
      local function second(sock)
        seen.sock = sock
        seen.task = coroutine.isyieldable()
        berth.sleep(0) -- a task: it may wait
        local line = sock:read("l")
        assert(sock:write("second: ", line, "\n"))
      end
      local server <close> = support.serve(liner(expect(second)))
      local client <close> = support.connect(server)
      assert.equal("echo: one", support.roundtrip(client, "one"))
      wait_tasks(base) -- the handler returned; nothing runs for the connection
      assert.equal(1, server:stats().active) -- yet it is open
      assert.equal("second: two", support.roundtrip(client, "two"))
      assert.is_true(seen.task)
      assert.equal("userdata", type(seen.sock))
      -- second returned without parking: the connection closes as usual
      local data, code = client:read("l", 2)
      assert.same({ nil, "closed" }, { data, code })
    end)
  end)

  it("serves one line per task, each a new task, as long as the peer talks", function()
    run(function()
      local base = berth.stats().tasks
      local server <close> = support.serve(liner())
      local client <close> = support.connect(server)
      for i = 1, 5 do
        assert.equal("echo: " .. i, support.roundtrip(client, tostring(i)))
        wait_tasks(base)
      end
    end)
  end)

  it("runs fn at once when bytes are already buffered", function()
    run(function()
      local server <close> = support.serve(liner())
      local client <close> = support.connect(server)
      assert(client:write("a\nb\nc\n")) -- one segment: the handler reads only "a"
      assert.equal("echo: a", client:read("l", 2))
      assert.equal("echo: b", client:read("l", 2))
      assert.equal("echo: c", client:read("l", 2))
    end)
  end)

  it("keeps the idle timeout: a parked connection that stays silent is closed", function()
    run(function()
      local base = berth.stats()
      local server <close> = support.serve(liner(expect(nil, 0)), { idle_timeout = 0.2 })
      local client <close> = support.connect(server)
      assert.equal("echo: x", support.roundtrip(client, "x"))
      local data, code = client:read("l", 3)
      assert.same({ nil, "closed" }, { data, code })
      support.wait_until(function() return server:stats().active == 0 end, 2, "server side closed")
      assert.equal(base.tasks, berth.stats().tasks)
    end)
  end)

  it("runs fn at the peer's EOF: its read says closed, and the socket is freed", function()
    run(function()
      local base = berth.stats()
      local got = {}
      local server <close> = support.serve(liner(expect(function(sock)
        got = { sock:read("l") }
      end)))
      local client = support.connect(server)
      assert.equal("echo: x", support.roundtrip(client, "x"))
      wait_tasks(base.tasks)
      client:close()
      support.wait_until(function() return got[2] ~= nil end, 2, "fn to see the EOF")
      assert.same({ nil, "closed", "" }, got)
      support.wait_until(function() return server:stats().active == 0 end, 2, "server side closed")
      assert.equal(base.sockets, berth.stats().sockets)
    end)
  end)

  it("ends the connection on an error in fn, reported like a handler error", function()
    run(function()
      local errors = {}
      local server <close> = support.serve(liner(function(sock)
        sock:read("l")
        error("boom in fn")
      end), { onerror = function(err, _, sock) errors[#errors + 1] = { err, sock } end })
      local client <close> = support.connect(server)
      assert.equal("echo: x", support.roundtrip(client, "x"))
      assert(client:write("y\n"))
      local data, code = client:read("l", 2)
      assert.same({ nil, "closed" }, { data, code })
      support.wait_until(function() return #errors == 1 end, 2, "the error")
      assert.matches("boom in fn", tostring(errors[1][1]))
      assert.equal("userdata", type(errors[1][2]))
      assert.equal(0, server:stats().active)
    end)
  end)

  it("drops the registration when the socket is closed from elsewhere", function()
    run(function()
      local base = berth.stats()
      local parked
      local server <close> = support.serve(function(sock)
        assert(sock:read("l"))
        parked = sock
        sock:onreadable(expect(nil, 0))
      end)
      local client <close> = support.connect(server)
      assert(client:write("x\n"))
      support.wait_until(function() return parked and berth.stats().tasks == base.tasks end,
        2, "the handler to park")
      assert.equal(base.anchors + 2, berth.stats().anchors) -- the server and the socket
      parked:close()
      assert.equal(base.anchors + 1, berth.stats().anchors)
      assert(client:write("late\n")) -- starts nothing: the socket is gone
      local data, code = client:read("l", 2)
      assert.same({ nil, "closed" }, { data, code })
      parked = nil
    end)
  end)

  it("keeps a parked socket nobody references from the GC, and lets go once cancelled", function()
    run(function()
      local base = berth.stats()
      local server <close> = support.listen()
      local got
      -- In a function of its own, so no register of this one holds it.
      local function park()
        local client = support.connect(server)
        client:onreadable(expect(function(sock) got = sock:read("l") end))
      end
      park() -- only the registration holds the client now
      local peer <close> = assert(server:accept(2))
      for _ = 1, 3 do collectgarbage() end
      assert.equal(base.sockets + 2, berth.stats().sockets)
      assert(peer:write("hello\n"))
      support.wait_until(function() return got end, 2, "fn to run")
      assert.equal("hello", got)
      -- fn returned: the connection closed, as a handler's does
      local data, code = peer:read("l", 2)
      assert.same({ nil, "closed" }, { data, code })

      local function cancel()
        local other = support.connect(server)
        other:onreadable(expect(nil, 0))
        other:onreadable(nil)
      end
      cancel()
      local peer2 <close> = assert(server:accept(2))
      support.wait_until(function()
        collectgarbage()
        return berth.stats().sockets == base.sockets + 2 -- peer, peer2
      end, 2, "the cancelled socket to be collected")
      assert.same({ nil, "closed", "" }, { peer2:read("l", 2) })
    end)
  end)

  it("refuses what cannot mix with it", function()
    run(function()
      local p <close> = support.pair()
      p.client:on("data", function() end)
      assert.has_error(function() p.client:onreadable(function() end) end,
        'onreadable: the socket is in on("data") mode')
      p.client:on("data", nil)
      p.client:onreadable(function() end)
      assert.has_error(function() p.client:on("data", function() end) end,
        "on: the socket waits in onreadable")
      p.client:onreadable(nil)
      local read_done = false
      berth.spawn(function() p.peer:read("l", 5); read_done = true end)
      berth.sleep(0)
      assert.has_error(function() p.peer:onreadable(function() end) end,
        "onreadable: socket has a pending read")
      assert.has_error(function() p.peer:onreadable(42) end)
      p.client:write("x\n")
      support.wait_until(function() return read_done end, 2, "the read")
      p.client:close()
      assert.same({ nil, "closed" }, { p.client:onreadable(function() end) })
    end)
  end)

  it("closes parked connections in the graceful shutdown's idle sweep", function()
    -- In a child: shutdown stops the loop for good in that process.
    local out, code, err = support.run_fixture("idle_onreadable_shutdown")
    assert.equal(0, code, err)
    assert.equal(table.concat({
      "parked: tasks 1",
      "client read: nil closed",
      "fn ran: 0",
      "before the grace: true",
      "run returned",
    }, "\n") .. "\n", out)
  end)

  describe("over TLS", function()
    local certs
    setup(function()
      certs = os.tmpname()
      os.remove(certs)
      assert(os.execute("scripts/mkcerts " .. certs .. " >/dev/null"), "scripts/mkcerts failed")
    end)
    teardown(function() os.execute("rm -rf " .. support.shquote(certs)) end)

    it("parks and resumes, records already decrypted or still in the kernel alike", function()
      run(function()
        local base = berth.stats().tasks
        local server <close> = support.serve(liner(),
          { tls = { cert = certs .. "/server.crt", key = certs .. "/server.key" } })
        local client <close> = assert(berth.connect("localhost", server:port(),
          { tls = { ca = certs .. "/ca.crt" }, timeout = 5 }))
        assert.equal("echo: one", support.roundtrip(client, "one", 5))
        wait_tasks(base)
        assert.equal("echo: two", support.roundtrip(client, "two", 5))
        wait_tasks(base)
        -- Two records back to back, then three lines in one record.
        assert(client:write("a\n"))
        assert(client:write("b\n"))
        assert(client:write("c\nd\ne\n"))
        for _, l in ipairs { "a", "b", "c", "d", "e" } do
          assert.equal("echo: " .. l, client:read("l", 5))
        end
        wait_tasks(base)
      end, 10)
    end)
  end)
end)

describe("berth.http between requests", function()
  local http = require "berth.http"
  before_each(support.before)
  after_each(support.after)

  local function get(sock, path)
    assert(sock:write("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n"))
    local head = assert(sock:readuntil("\r\n\r\n", 5))
    local len = assert(tonumber(head:match("\r\nContent%-Length: (%d+)")), head)
    return head:match("^HTTP/1%.1 (%d+)"), assert(sock:read(len, 5))
  end

  it("1,000 idle kept-alive connections hold no task, and all answer a second request", function()
    run(function()
      local N = 1000
      local base = berth.stats().tasks
      local server <close> = http.serve { host = "127.0.0.1", port = 0,
        handler = function(req, res) res:send("hello " .. req.path) end }
      local socks = {}
      local pending = N
      for i = 1, N do
        berth.spawn(function()
          local sock = support.connect(server)
          assert.same({ "200", "hello /a" .. i }, { get(sock, "/a" .. i) })
          socks[i] = sock
          pending = pending - 1
        end)
      end
      support.wait_until(function() return pending == 0 end, 20, "the first requests")
      wait_tasks(base)
      assert.equal(N, server:stats().active)
      pending = N
      for i = 1, N do
        berth.spawn(function()
          assert.same({ "200", "hello /b" .. i }, { get(socks[i], "/b" .. i) })
          pending = pending - 1
        end)
      end
      support.wait_until(function() return pending == 0 end, 20, "the second requests")
      wait_tasks(base)
      for i = 1, N do socks[i]:close() end
    end, 40)
  end)

  it("answers pipelined requests in order, parking once they are all served", function()
    run(function()
      local base = berth.stats().tasks
      local server <close> = http.serve { host = "127.0.0.1", port = 0,
        handler = function(req, res) res:send(req.path) end }
      local sock <close> = support.connect(server)
      assert(sock:write("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"))
      for _, want in ipairs { "/1", "/2" } do
        local head = assert(sock:readuntil("\r\n\r\n", 5))
        assert.equal(want, sock:read(tonumber(head:match("Content%-Length: (%d+)")), 5))
      end
      wait_tasks(base)
      assert.same({ "200", "/3" }, { get(sock, "/3") })
    end)
  end)

  -- A connection that keeps talking keeps its task (a task per request
  -- would cost throughput); one quiet for park_after gives it back.
  it("keeps a busy connection's task, parks one quiet for park_after, never with false", function()
    run(function()
      local base = berth.stats().tasks
      local served = {}
      local function serve(park_after)
        return http.serve { host = "127.0.0.1", port = 0, park_after = park_after,
          handler = function(req, res)
            served[#served + 1] = coroutine.running()
            res:send("ok " .. req.path)
          end }
      end
      local server <close> = serve(0.3)
      local sock <close> = support.connect(server)
      for i = 1, 5 do -- well inside 0.3 s of each other: one task serves all
        assert.same({ "200", "ok /" .. i }, { get(sock, "/" .. i) })
      end
      for i = 2, 5 do assert.equal(served[1], served[i], "request " .. i .. " had a task of its own") end
      assert.equal(base + 1, berth.stats().tasks, "the busy connection's task")
      wait_tasks(base) -- quiet now: parked after 0.3 s
      assert.same({ "200", "ok /6" }, { get(sock, "/6") })
      assert.are_not.equal(served[1], served[6], "a parked connection's next request runs in a new task")

      local never <close> = serve(false)
      local other <close> = support.connect(never)
      assert.same({ "200", "ok /x" }, { get(other, "/x") })
      berth.sleep(0.8) -- past the default park_after: false keeps the task
      assert.equal(base + 1, berth.stats().tasks, "park_after = false gave the task back")
      other:close() -- its task sees the EOF and ends
      wait_tasks(base)
      assert.has_error(function() serve(-1) end)
    end, 20)
  end)
end)

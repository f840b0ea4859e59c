-- examples/proxy.lua, run by the host as a child process (PORT=0) with
-- UPSTREAM pointing at a listener in this process: the spec holds both ends
-- (the client and the upstream's accepted socket) and checks the bytes that
-- cross, half-close, backpressure (the proxy's RSS) and upstream failures.
local support = require "support"
local wire = require "support.wire"
local berth = support.berth
local run = support.run

local KiB, MiB = 1024, 1024 * 1024

-- Starts a listener here and the proxy in front of it; `fn(port, upstream,
-- proc)` runs as a berth task, with `upstream` the in-process listener
-- (accept from it, or set on("connection")). Returns the proxy's stderr.
local function with_proxy(fn, limit)
  local upstream = support.listen()
  local ok, stderr = pcall(support.with_example, "proxy",
    { UPSTREAM = "127.0.0.1:" .. upstream:port() }, function(port, proc)
      run(function() fn(port, upstream, proc) end, limit or 10)
    end)
  upstream:close()
  if not ok then error(stderr, 0) end
  return stderr
end

-- As with_proxy, with the proxy started by the host with `args` (its
-- options); `fn(port, upstream, proc)` runs as a berth task. The proxy is
-- stopped with SIGTERM and must exit 0. Returns its stderr.
local function with_proxy_args(args, fn, limit)
  local upstream = support.listen()
  local p, port = support.start_host("examples/proxy.lua", args,
    { env = { UPSTREAM = "127.0.0.1:" .. upstream:port() } })
  local ok, err = pcall(run, function() fn(port, upstream, p) end, limit or 10)
  upstream:close()
  p:kill("TERM")
  local _, how, code = p:wait()
  local stderr = p:stderr()
  if not ok then error(tostring(err) .. "\nproxy stderr:\n" .. stderr, 0) end
  assert.same({ "exit", 0 }, { how, code }, "the proxy did not exit 0 after SIGTERM:\n" .. stderr)
  return stderr
end

-- Task only: a client connected through the proxy and the upstream side of
-- the same connection, checked with a round trip each way.
local function through(port, upstream)
  local client = support.connect(port)
  local up = assert(upstream:accept(2), "the proxy did not connect to the upstream")
  assert(client:write("ping"))
  wire.expect_bytes(up, "ping")
  assert(up:write("pong"))
  wire.expect_bytes(client, "pong")
  return client, up
end

describe("examples/proxy.lua", function()
  before_each(support.before)
  after_each(support.after)

  it("refuses to start without UPSTREAM", function()
    local out, code, stderr = support.run_host({ "examples/proxy.lua" }, { env = { PORT = "0" } })
    assert.equal("", out)
    assert.equal(2, code)
    assert.truthy(stderr:find("set UPSTREAM=host:port", 1, true), stderr)
  end)

  it("relays 1 MiB of random bytes byte-exact through an echo upstream", function()
    with_proxy(function(port, upstream)
      upstream:on("connection", support.echo)
      local client <close> = support.connect(port)
      local blob = support.random_bytes(MiB, 21)
      local wrote = false
      berth.spawn(function() assert(client:write(blob)); wrote = true end)
      support.assert_bytes(blob, client:read(#blob, 10))
      assert.is_true(wrote)
      wire.expect_quiet(client)
    end, 20)
  end)

  it("is full duplex: 1 MiB each way at the same time, byte-exact", function()
    with_proxy(function(port, upstream)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      local a = support.random_bytes(MiB, 22)
      local b = support.random_bytes(MiB, 23)
      local done = 0
      berth.spawn(function() assert(client:write(a)); done = done + 1 end)
      berth.spawn(function() assert(up:write(b)); done = done + 1 end)
      local got_up
      berth.spawn(function() got_up = up:read(#a, 10); done = done + 1 end)
      support.assert_bytes(b, client:read(#b, 10))
      support.wait_until(function() return done == 3 end, 10, "both writers and the reader")
      support.assert_bytes(a, got_up)
      wire.expect_quiet(client, 0.05)
      wire.expect_quiet(up, 0.05)
    end, 20)
  end)

  it("passes a client's half-close on: the upstream sees EOF and can still reply", function()
    with_proxy(function(port, upstream)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      assert(client:write("request body"))
      assert(client:shutdown("w"))
      local got, code = support.read_to_end(up, 2)
      assert.equal("request body", got)
      assert.equal("closed", code, "the upstream did not see EOF after the client's shutdown")
      assert(up:write("the reply"))
      assert(up:write(", after EOF"))
      wire.expect_bytes(client, "the reply, after EOF")
      wire.expect_quiet(client, 0.05, "the reply direction stays open until the upstream ends it")
      up:close()
      wire.expect_close(client, "")
    end)
  end)

  it("passes an upstream's half-close on: the client sees EOF and can still send", function()
    with_proxy(function(port, upstream)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      assert(up:write("greeting"))
      assert(up:shutdown("w"))
      local got, code = support.read_to_end(client, 2)
      assert.equal("greeting", got)
      assert.equal("closed", code, "the client did not see EOF after the upstream's shutdown")
      local blob = support.random_bytes(256 * KiB, 24)
      berth.spawn(function() assert(client:write(blob)); client:shutdown("w") end)
      local rest, end_code = support.read_to_end(up, 5)
      support.assert_bytes(blob, rest)
      assert.equal("closed", end_code)
    end)
  end)

  -- Task only: pushes 64 MiB from `writer` to `reader` through the proxy
  -- while `reader` does not read; checks that the writer stalls and that the
  -- proxy's RSS stays under +16 MiB; then reads and checks all of it.
  local function slow_reader(pid, writer, reader)
    local chunk = support.random_bytes(64 * KiB, 25)
    local chunks = 64 * MiB // #chunk
    local limit = 16 * MiB
    local base = support.rss(pid)
    local peak = base
    local function sample() peak = math.max(peak, support.rss(pid)) end
    local sent = 0
    local writer_done = false
    berth.spawn(function()
      for i = 1, chunks do
        if not writer:write(chunk) then break end
        sent = i
      end
      writer_done = true
    end)
    -- Wait until the writer stalls: no progress for 0.3 s (at most 5 s).
    -- The 0.1 s samples are the measurement: a stall is progress absent.
    local last, still, deadline = -1, 0, berth.now() + 5
    while berth.now() < deadline and still < 3 do
      berth.sleep(0.1)
      sample()
      if sent == last then still = still + 1 else still, last = 0, sent end
    end
    assert.is_true(peak - base < limit, ("the proxy's RSS grew by %.1f MiB (limit 16) with "
      .. "%.1f MiB pushed while nobody read"):format((peak - base) / MiB, sent * #chunk / MiB))
    assert.is_true(sent < chunks, ("the writer pushed all %d MiB while nobody read: "
      .. "the proxy kept reading its side"):format(sent * #chunk // MiB))
    -- Now read everything: every byte arrives, in order; RSS stays bounded.
    for i = 1, chunks do
      local got, code = reader:read(#chunk, 10)
      if got ~= chunk then
        error(("chunk %d of %d: %s"):format(i, chunks,
          got and "bytes differ" or ("read failed: " .. tostring(code))))
      end
      if i % 64 == 0 then sample() end
    end
    support.wait_until(function() return writer_done end, 5, "the writer to finish")
    assert.equal(chunks, sent)
    sample()
    assert.is_true(peak - base < limit, ("the proxy's RSS grew by %.1f MiB (limit 16) "
      .. "while 64 MiB went through"):format((peak - base) / MiB))
  end

  it("backpressure: a client that does not read stops the upstream (bounded RSS)", function()
    with_proxy(function(port, upstream, proc)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      slow_reader(proc.pid, up, client)
    end, 60)
  end)

  it("backpressure: an upstream that does not read stops the client (bounded RSS)", function()
    with_proxy(function(port, upstream, proc)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      slow_reader(proc.pid, client, up)
    end, 60)
  end)

  it("serves 20 concurrent clients, each relayed to its own upstream connection", function()
    with_proxy(function(port, upstream)
      upstream:on("connection", support.echo)
      local n, finished = 20, 0
      for i = 1, n do
        berth.spawn(function()
          local sock <close> = support.connect(port)
          local blob = support.random_bytes(64 * KiB + i, 100 + i)
          berth.spawn(function() assert(sock:write(blob)) end)
          support.assert_bytes(blob, sock:read(#blob, 10))
          finished = finished + 1
        end)
      end
      support.wait_until(function() return finished == n end, 15, "all clients")
    end, 20)
  end)

  it("closes the client within 1 s when the upstream refuses, and stays up", function()
    local port_down = support.free_port()
    local stderr = support.with_example("proxy", { UPSTREAM = "127.0.0.1:" .. port_down }, function(port)
      run(function()
        for i = 1, 3 do
          local client <close> = support.connect(port)
          local t0 = berth.now()
          local got, code = support.read_to_end(client, 1)
          assert.equal("", got)
          assert.is_true(code == "closed" or code == "reset",
            ("attempt %d: the client was not closed within 1 s (%s)"):format(i, code))
          assert.is_true(berth.now() - t0 < 1)
        end
        -- The upstream comes up: the same proxy now relays.
        local upstream <close> = support.listen { port = port_down }
        upstream:on("connection", support.echo)
        local client <close> = support.connect(port)
        assert.equal("back up", support.roundtrip(client, "back up"))
      end, 10)
    end)
    assert.truthy(stderr:find("upstream 127.0.0.1:" .. port_down .. ": refused", 1, true),
      "the proxy did not log the refused upstream:\n" .. stderr)
  end)

  it("when the upstream resets, the client gets EOF at once", function()
    with_proxy(function(port, upstream)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      -- Unread bytes in the upstream socket make close() send a RST.
      assert(client:write("unread"))
      support.wait_unread(up, 2)
      up:close()
      local t0 = berth.now()
      local got, code = support.read_to_end(client, 1)
      assert.equal("", got)
      assert.is_true(code == "closed" or code == "reset",
        "the client saw neither EOF nor a reset within 1 s: " .. code)
      assert.is_true(berth.now() - t0 < 1)
      -- The proxy still works.
      local c2, u2 = through(port, upstream)
      c2:close()
      u2:close()
    end)
  end)

  it("when the upstream resets, the proxy closes the client's connection", function()
    with_proxy(function(port, upstream, proc)
      local idle = support.sockets(proc.pid)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      assert.equal(idle + 2, support.sockets(proc.pid), "a proxied connection holds two sockets")
      assert(client:write("unread"))
      support.wait_unread(up, 2)
      up:close()
      local got, code = support.read_to_end(client, 1)
      assert.equal("", got)
      assert.is_true(code == "closed" or code == "reset", code)
      -- The client stays connected and idle, as a client waiting for the
      -- server to speak would: the proxy must still let go of it.
      pcall(support.wait_until, function() return support.sockets(proc.pid) <= idle end, 1)
      assert.equal(idle, support.sockets(proc.pid),
        "1 s after the upstream's reset the proxy still holds the connection open")
    end)
  end)

  -- Issue 11: the upstream accepts and never answers; the client sends a
  -- request, half-closes and then disconnects (which the proxy cannot see:
  -- nobody reads the client's side after its EOF). Before, the client's
  -- idle timeout closed its side only, and the upstream socket, its task
  -- and the handler's task waited forever.
  it("--idle-timeout 1: a client that half-closes and vanishes before a silent upstream "
    .. "leaves nothing behind", function()
    local stderr = with_proxy_args({ "--idle-timeout", "1", "--log-level", "debug" },
      function(port, upstream, proc)
        local idle = support.sockets(proc.pid)
        local client = support.connect(port)
        local up <close> = assert(upstream:accept(2), "the proxy did not connect to the upstream")
        assert(client:write("GET / HTTP/1.0\r\n\r\n"))
        assert(client:shutdown("w"))
        local got, code = support.read_to_end(up, 2)
        assert.equal("GET / HTTP/1.0\r\n\r\n", got)
        assert.equal("closed", code, "the upstream did not see the client's EOF")
        assert.equal(idle + 2, support.sockets(proc.pid), "a proxied connection holds two sockets")
        client:close() -- gone; the upstream stays connected and silent
        local t0 = berth.now()
        pcall(support.wait_until, function() return support.sockets(proc.pid) <= idle end, 3)
        local took = berth.now() - t0
        assert.equal(idle, support.sockets(proc.pid),
          "3 s after the client vanished the proxy still holds a socket of the connection")
        assert.is_true(took > 0.5, ("ended after %.2f s: before the idle timeout"):format(took))
        -- The handler logs "done" once both relay tasks have ended (and
        -- both sockets are closed): no task is left either.
        proc:wait_log("proxy: 127.0.0.1:", 1, 1)
        -- The upstream side sees its connection gone: what it sends now is
        -- refused by the proxy's host (a reset), relayed to no one.
        up:write("late")
        local late, late_code = support.read_to_end(up, 2)
        assert.equal("", late)
        assert.is_true(late_code == "reset" or late_code == "closed", late_code)
      end)
    assert.equal(1, select(2, stderr:gsub("proxy: 127%.0%.0%.1:%d+ done", "")), stderr)
  end)

  -- The upstream keeps talking but stops reading: the client's request
  -- backs up in the proxy's buffer for the upstream. Before, only the
  -- client's side had a send timeout, and nothing was stuck there.
  it("--send-timeout 1: an upstream that stops reading ends both sides", function()
    with_proxy_args({ "--send-timeout", "1" }, function(port, upstream, proc)
      local idle = support.sockets(proc.pid)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      local chunk = support.random_bytes(64 * KiB, 26)
      local wrote, stopped = 0, nil
      berth.spawn(function()
        for _ = 1, 1024 do -- 64 MiB at most: far more than the buffers on the way
          local ok, err = client:write(chunk)
          if not ok then stopped = err; return end
          wrote = wrote + 1
        end
      end)
      local ticks = 0
      berth.spawn(function() -- the upstream is not idle: it talks, never reads
        while up:write("tick") do ticks = ticks + 1; berth.sleep(0.2) end
      end)
      local t0 = berth.now()
      local got, code = support.read_to_end(client, 8)
      local took = berth.now() - t0
      assert.is_true(code == "closed" or code == "reset", code)
      assert.equal(("tick"):rep(#got // 4), got, "the upstream's bytes arrived intact")
      assert.is_true(ticks >= 5, ("the upstream talked %d times only"):format(ticks))
      assert.is_true(wrote < 1024, "the client wrote all 64 MiB: the upstream read it")
      assert.is_true(took < 6, ("ended after %.2f s"):format(took))
      pcall(support.wait_until, function() return support.sockets(proc.pid) <= idle end, 1)
      assert.equal(idle, support.sockets(proc.pid))
      support.wait_until(function() return stopped ~= nil end, 2, "the client's writer to fail")
    end, 20)
  end)

  it("when the client resets, the upstream connection is closed", function()
    with_proxy(function(port, upstream, proc)
      local idle = support.sockets(proc.pid)
      local client, up = through(port, upstream)
      local _ <close> = support.closing(client, up)
      -- Unread bytes in the client socket make close() send a RST.
      assert(up:write("unread"))
      support.wait_unread(client, 2)
      client:close()
      local got, code = support.read_to_end(up, 1)
      assert.equal("", got)
      assert.is_true(code == "closed" or code == "reset",
        "the upstream saw neither EOF nor a reset within 1 s: " .. code)
      pcall(support.wait_until, function() return support.sockets(proc.pid) <= idle end, 1)
      assert.equal(idle, support.sockets(proc.pid),
        "1 s after the client's reset the proxy still holds the connection open")
    end)
  end)
end)

-- The master/worker channel: berth.channel's messages (one encoder and
-- decoder for both sides; the listen request derived from core.options)
-- and the bounds of core.proc.send/recv under it (a timeout, and SIGTERM
-- ending a wait), over a real socketpair in this process.
local helpers = require "support"
local core = require "berth.core"
local channel = require "berth.channel"
local berth = helpers.berth
local proc = core.proc

-- A socketpair closed after the test.
local pairs_open = {}
local function socketpair()
  local a, b = assert(proc.socketpair())
  pairs_open[#pairs_open + 1] = a
  pairs_open[#pairs_open + 1] = b
  return a, b
end

-- Close one end now (never twice: the number may be reused at once).
local function close(fd)
  for i, open in ipairs(pairs_open) do
    if open == fd then table.remove(pairs_open, i) end
  end
  proc.close(fd)
end

local function close_all()
  for _, fd in ipairs(pairs_open) do proc.close(fd) end
  pairs_open = {}
end

local function open_fds()
  local h = assert(io.popen("ls /proc/" .. helpers.pid() .. "/fd"))
  local n = 0
  for _ in h:lines() do n = n + 1 end
  h:close()
  return n
end

describe("channel", function()
  before_each(helpers.before)
  after_each(function()
    close_all()
    helpers.after()
  end)

  describe("messages", function()
    it("decode(encode(...)) gives back kind, id and typed fields", function()
      local fields = { s = "a\nb\0c", i = 42, n = 1.5, t = true, f = false, neg = -7 }
      local kind, id, got = channel.decode(channel.encode("listen", 9, fields))
      assert.equal("listen", kind)
      assert.equal(9, id)
      assert.same(fields, got)
      assert.equal("integer", math.type(got.i))
      assert.equal("float", math.type(got.n))
    end)

    it("the same message always has the same bytes", function()
      local a = channel.encode("fail", 3, { code = "addrinuse", errno = 98 })
      local b = channel.encode("fail", 3, { errno = 98, code = "addrinuse" })
      assert.equal(a, b)
    end)

    it("refuses what it cannot carry, and what does not decode", function()
      assert.has_error(function() channel.encode("x", 1, { f = print }) end)
      assert.has_error(function() channel.encode("x", 1, { s = ("x"):rep(5000) }) end)
      local frame = channel.encode("ok", 1, { a = 1 })
      for _, bad in ipairs { "", "abc", frame:sub(1, -2), frame .. "x",
        string.pack(">s4", string.pack(">s1j", "ok", 1) .. string.pack(">s1", "k") .. "?") } do
        local kind, err = channel.decode(bad)
        assert.is_nil(kind)
        assert.truthy(err:find("^malformed message"), err)
      end
    end)

    it("a listen request has exactly the keys core.options marks bind", function()
      local opts = { host = "127.0.0.1", port = 0, path = nil, backlog = 5, reuseaddr = false,
        reuseport = true, maxline = 100, idle_timeout = 3, fd = nil }
      local kind, id, fields = channel.decode(channel.listen_request(4, opts))
      assert.same({ "listen", 4 }, { kind, id })
      assert.same({ host = "127.0.0.1", port = 0, backlog = 5, reuseaddr = false,
        reuseport = true }, fields)
      local bind = {}
      for key, o in pairs(core.options.listen) do
        if o.bind then bind[#bind + 1] = key end
      end
      table.sort(bind)
      assert.same(bind, channel.BIND_KEYS)
    end)

    it("the worker applies the rest to the adopted descriptor", function()
      local opts = { host = "127.0.0.1", port = 80, backlog = 5, maxline = 100,
        idle_timeout = 3 }
      assert.same({ maxline = 100, idle_timeout = 3, fd = 7 },
        channel.adopted_options(opts, 7))
      assert.equal(80, opts.port, "the caller's table is not changed")
    end)
  end)

  describe("proc.send and proc.recv", function()
    it("recv waits at most its timeout: nil, \"timeout\"", function()
      local a = socketpair()
      local t0 = helpers.clock()
      assert.same({ nil, "timeout" }, { proc.recv(a, 0.2) })
      local took = helpers.clock() - t0
      assert.is_true(took >= 0.19 and took < 2, ("took %.3f s"):format(took))
      t0 = helpers.clock()
      assert.same({ nil, "timeout" }, { proc.recv(a, 0) })
      -- no wait at all: a bound far from any timeout (not a timing test)
      assert.is_true(helpers.clock() - t0 < 1)
    end)

    it("passes messages and a descriptor; \"\" at EOF", function()
      local a, b = socketpair()
      local x, y = socketpair()
      assert.is_true(proc.send(b, "hello", x, 1))
      local msg, passed = proc.recv(a, 1)
      assert.equal("hello", msg)
      assert.is_true(math.type(passed) == "integer" and passed ~= x)
      assert.is_true(proc.send(y, "through the copy"))
      assert.equal("through the copy", proc.recv(passed, 1))
      proc.close(passed)
      close(b)
      assert.equal("", proc.recv(a, 1))
    end)

    it("send waits at most its timeout for room", function()
      local a = socketpair()
      local chunk = ("x"):rep(4000)
      local sent = 0
      while proc.send(a, chunk, nil, 0) do
        sent = sent + 1
        assert(sent < 100000, "the channel never filled")
      end
      local t0 = helpers.clock()
      assert.same({ nil, "timeout" }, { proc.send(a, chunk, nil, 0.2) })
      local took = helpers.clock() - t0
      assert.is_true(took >= 0.19 and took < 2, ("took %.3f s"):format(took))
    end)

    it("rejects a NaN or negative timeout", function()
      local a = socketpair()
      assert.has_error(function() proc.recv(a, 0 / 0) end,
        "proc.recv: timeout must be a number of seconds >= 0, or false (got NaN)")
      assert.has_error(function() proc.send(a, "x", nil, -1) end,
        "proc.send: timeout must be a number of seconds >= 0, or false (got -1)")
    end)

    it("SIGTERM during a wait ends it (\"canceled\") and still reaches its handler", function()
      local a = socketpair()
      local got = {}
      local sig = berth.signal("TERM", function(name) got[#got + 1] = name end)
      -- A helper shell sends the signal while this process waits in recv.
      assert(os.execute(("(sleep 0.2; kill -TERM %d) >/dev/null 2>&1 &"):format(helpers.pid())))
      local t0 = helpers.clock()
      local msg, code = proc.recv(a, 10)
      local took = helpers.clock() - t0
      helpers.run(function()
        helpers.wait_until(function() return #got > 0 end, 2, "the TERM handler")
      end)
      sig:cancel()
      assert.same({ nil, "canceled" }, { msg, code })
      assert.is_true(took < 5, ("the wait went on %.1f s after SIGTERM"):format(took))
      assert.same({ "TERM" }, got)
    end)
  end)

  describe("exchange", function()
    it("drops a late reply to an earlier request, closing its descriptor", function()
      local worker, master = socketpair()
      local x = socketpair()
      assert(proc.send(master, channel.encode("ok", 1), x)) -- request 1 timed out
      assert(proc.send(master, channel.encode("fail", 2, { code = "addrinuse", errno = 98 })))
      local before = open_fds()
      local kind, fields, passed = channel.exchange(worker, 2, channel.encode("listen", 2), 2)
      assert.equal("fail", kind)
      assert.same({ code = "addrinuse", errno = 98 }, fields)
      assert.is_nil(passed)
      assert.equal(before, open_fds(), "the late reply's descriptor was kept")
      local req = proc.recv(master, 1)
      assert.equal("listen", (channel.decode(req)))
    end)

    it("gives nil, \"timeout\" without a reply and nil, \"closed\" without a master", function()
      local worker, master = socketpair()
      assert.same({ nil, "timeout" }, { channel.exchange(worker, 1, channel.encode("listen", 1), 0.2) })
      close(master)
      assert.same({ nil, "closed" }, { channel.exchange(worker, 2, channel.encode("listen", 2), 1) })
    end)
  end)
end)

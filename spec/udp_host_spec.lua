-- UDP in the berth host: examples/udp_echo.lua, examples/dns.lua queried
-- by `dig` (bind9-dnsutils) as the real client, `--check` of a UDP script,
-- and a reloadable UDP handler module under a stream of datagrams, in one
-- process (SIGHUP) and with `--workers 2` (a rolling reload): no datagram
-- the server received goes unanswered. Every process is stopped by PID.
local support = require "support"
local reload = require "support.reload"
local berth = support.berth
local run = support.run

local function handler_source(version)
  local src = assert(support.read_file("spec/fixtures/udp_handler.lua"))
  return (src:gsub("@VERSION@", version))
end

-- A temp dir with server.lua (udp_server.lua) and app/udp.lua at `version`.
local function make_dir(version)
  local dir = support.tmpdir()
  assert(os.execute("mkdir " .. support.shquote(dir .. "/app")))
  reload.copy("udp_server", dir, "server.lua")
  support.write_file(dir .. "/app/udp.lua", handler_source(version))
  return dir
end

local stop = support.stop_clean -- SIGTERM, and it must exit 0

-- Task only: a stream of datagrams to `port`, one about every millisecond,
-- while `during()` runs (in its own task) and 0.2 s after it returns; then
-- waits for the replies. Returns the replies by sequence number (each must
-- come exactly once), and how many were sent.
local function stream(port, during)
  local c <close> = assert(berth.udp())
  local replies, sent, stop_at = {}, 0, nil
  local receiving = true
  berth.spawn(function()
    while receiving do
      local data = c:recvfrom(0.1)
      if data then
        local seq = assert(math.tointeger(tonumber(data:match("(%d+)$"))), data)
        assert.is_nil(replies[seq], "a second reply to " .. seq)
        replies[seq] = data
      end
    end
  end)
  berth.spawn(function()
    during()
    stop_at = berth.now() + 0.2
  end)
  while not stop_at or berth.now() < stop_at do
    sent = sent + 1
    assert(c:sendto(tostring(sent), "127.0.0.1", port))
    berth.sleep(0.001)
  end
  support.wait_until(function()
    for i = 1, sent do if not replies[i] then return false end end
    return true
  end, 5, "a reply to each of the " .. sent .. " datagrams")
  receiving = false
  berth.sleep(0.15)
  return replies, sent
end

local function versions(replies, sent)
  local seen = {}
  for i = 1, sent do
    local v, pid = replies[i]:match("^(%S+) (%d+) ")
    seen[v] = seen[v] or {}
    seen[v][pid] = true
  end
  return seen
end

local function count(set)
  local n = 0
  for _ in pairs(set or {}) do n = n + 1 end
  return n
end

describe("UDP in the host", function()
  before_each(support.before)
  after_each(support.after) -- workers left running fail the test too

  describe("examples/udp_echo.lua", function()
    for _, host in ipairs { "127.0.0.1", "::1" } do
      it("echoes every datagram to its sender on " .. host, function()
        local proc, h, port = support.start_example("udp_echo", { HOST = host })
        assert.equal(host, h)
        run(function()
          local a <close> = assert(berth.udp { host = host })
          local b <close> = assert(berth.udp { host = host })
          for i = 1, 20 do
            local blob = support.random_bytes(i * 97, i)
            assert(a:sendto("a" .. blob, host, port))
            assert(b:sendto("b" .. blob, host, port))
            local got, code = a:recvfrom(2)
            assert.equal("a" .. blob, got, ("datagram %d: %s"):format(i, tostring(code)))
            assert.equal("b" .. blob, (b:recvfrom(2)))
          end
          local big = support.random_bytes(host == "::1" and 65527 or 65507, 7)
          assert(a:sendto(big, host, port))
          support.assert_bytes(big, (a:recvfrom(2)))
        end)
        stop(proc)
      end)
    end
  end)

  describe("examples/dns.lua with dig", function()
    local proc, port

    -- dig's output for `args` (a string); bounded: one try of 2 s.
    local function dig(args, server)
      local h = assert(io.popen(("dig @%s -p %d +time=2 +tries=1 %s 2>&1")
        :format(server or "127.0.0.1", port, args)))
      local out = h:read("a")
      h:close()
      return out
    end

    local function answers(out)
      local list = {}
      local section = out:match(";; ANSWER SECTION:\n(.-)\n\n") or ""
      for line in section:gmatch("[^\n]+") do list[#list + 1] = line end
      return list
    end

    -- Task only: a raw query from a berth client; the reply or nil.
    local function raw(bytes, timeout)
      local c <close> = assert(berth.udp())
      assert(c:sendto(bytes, "127.0.0.1", port))
      return (c:recvfrom(timeout or 1))
    end

    local function question(name, qtype)
      local parts = {}
      for label in name:gmatch("[^.]+") do parts[#parts + 1] = string.char(#label) .. label end
      return table.concat(parts) .. "\0" .. string.pack(">I2I2", qtype, 1)
    end

    -- Each test starts its own server (support.after stops every process
    -- a test started) and checks that it exits 0 on SIGTERM.
    before_each(function()
      local p, _, n = support.start_example("dns")
      proc, port = p, n
    end)
    after_each(function() stop(proc) end)

    it("answers A, AAAA and TXT queries authoritatively", function()
      local out = dig("example.test A")
      assert.matches("status: NOERROR", out)
      assert.matches("flags: qr aa rd;", out)
      local a = answers(out)
      assert.equal(2, #a)
      assert.matches("^example%.test%.%s+300%s+IN%s+A%s+192%.0%.2%.1$", a[1])
      assert.matches("192%.0%.2%.2$", a[2])
      assert.equal("2001:db8::10\n2001:db8:0:1::11\n", dig("ipv6.example.test AAAA +short"))
      assert.equal('"v=berth example zone"\n', dig("example.test TXT +short"))
      -- case does not matter, and the question comes back as it was asked
      local mixed = dig("WwW.ExAmPlE.tEsT A")
      assert.matches("WwW%.ExAmPlE%.tEsT%.%s+300%s+IN%s+A%s+192%.0%.2%.10", mixed)
    end)

    it("says NXDOMAIN for a name it does not have, NOERROR with no answer for a missing type", function()
      local out = dig("nope.example.test A")
      assert.matches("status: NXDOMAIN", out)
      assert.matches("flags: qr aa rd;", out)
      assert.same({}, answers(out))
      out = dig("www.example.test AAAA")
      assert.matches("status: NOERROR", out)
      assert.matches("ANSWER: 0,", out)
      -- an ancestor of its names exists, with no records
      assert.matches("status: NOERROR", dig("test A"))
    end)

    it("answers a name of two 63-byte labels", function()
      local name = ("a"):rep(63) .. "." .. ("b"):rep(63) .. ".example.test"
      assert.equal("192.0.2.63\n", dig(name .. " A +short"))
    end)

    it("sets TC past 512 bytes without EDNS, and answers whole within the EDNS size", function()
      local out = dig("big.example.test TXT +noedns +ignore")
      assert.matches("flags: qr aa tc rd;", out)
      assert.matches("ANSWER: 0,", out)
      out = dig("big.example.test TXT")
      assert.matches("flags: qr aa rd;", out)
      assert.equal(12, #answers(out))
      assert.matches("udp: 1232", out)
    end)

    it("answers a malformed query with FORMERR and drops what it cannot answer", function()
      run(function()
        local function rcode(reply)
          assert(reply, "no reply")
          local id, flags = string.unpack(">I2I2", reply)
          return id, flags & 0xF, flags & 0x8000 ~= 0
        end
        local head = string.pack(">I2I2I2I2I2I2", 0x1234, 0x0100, 1, 0, 0, 0)
        -- the question's name runs past the end
        local id, code, qr = rcode(raw(head .. "\7exam"))
        assert.same({ 0x1234, 1, true }, { id, code, qr })
        -- a 64-byte label
        assert.equal(1, select(2, rcode(raw(head .. question(("x"):rep(64) .. ".test", 1)))))
        -- two questions
        local two = string.pack(">I2I2I2I2I2I2", 7, 0x0100, 2, 0, 0, 0)
        assert.equal(1, select(2, rcode(raw(two .. question("example.test", 1) .. question("x.test", 1)))))
        -- a compression pointer in the question
        assert.equal(1, select(2, rcode(raw(head .. "\192\12" .. string.pack(">I2I2", 1, 1)))))
        -- an opcode other than QUERY: NOTIMP
        local status = string.pack(">I2I2I2I2I2I2", 9, 2 << 11, 0, 0, 0, 0)
        assert.equal(4, select(2, rcode(raw(status))))
        -- too short for a header, or a response: dropped
        assert.is_nil(raw("\1\2\3", 0.2))
        assert.is_nil(raw(string.pack(">I2I2I2I2I2I2", 1, 0x8000, 0, 0, 0, 0), 0.2))
        -- and a good query still gets its answer, from the same client port
        local ok = raw(head .. question("example.test", 1))
        local _, good = rcode(ok)
        assert.equal(0, good)
        assert.equal(2, string.unpack(">I2", ok, 7))
      end)
    end)

    it("keeps answering after a burst of garbage datagrams", function()
      run(function()
        local c <close> = assert(berth.udp())
        for i = 1, 300 do
          assert(c:sendto(support.random_bytes(i % 97, i), "127.0.0.1", port))
        end
        berth.sleep(0.2)
      end)
      assert.equal("192.0.2.10\n", dig("www.example.test A +short"))
      assert.is_nil(proc:stderr():find("error", 1, true), proc:stderr())
    end)
  end)

  describe("--check", function()
    it("moves UDP sockets to ephemeral loopback ports and loads the handler module", function()
      local dir = make_dir("v1")
      run(function()
        local held <close> = assert(berth.udp { host = "127.0.0.1", port = 0 })
        local held2 <close> = assert(berth.udp { host = "127.0.0.1", port = 0 })
        local out, code, err = support.run_host({ "--check", dir .. "/server.lua" },
          { env = { LUA_PATH = dir .. "/?.lua;;", PORT = tostring(held:port()),
                    UDP_PORT2 = tostring(held2:port()) } })
        assert.equal(0, code, err)
        assert.matches("^listening on 127%.0%.0%.1:%d+\n$", out)
        assert.is_truthy(err:find("berth --check: " .. dir .. "/server.lua: ok", 1, true), err)
      end)
    end)

    it("fails on a broken UDP handler module", function()
      local dir = make_dir("v1")
      support.write_file(dir .. "/app/udp.lua", "return function(data)\n  return data +\nend\n")
      local _, code, err = support.run_host({ "--check", dir .. "/server.lua" },
        { env = { LUA_PATH = dir .. "/?.lua;;" } })
      assert.equal(1, code)
      assert.matches("app/udp%.lua:3:", err)
    end)
  end)

  describe("hot reload under a stream of datagrams", function()
    it("SIGHUP reloads the handler module; every datagram gets one reply", function()
      local dir = make_dir("v1")
      local proc, port = reload.start(dir)
      local replies, sent
      run(function()
        replies, sent = stream(port, function()
          berth.sleep(0.3)
          support.write_file(dir .. "/app/udp.lua", handler_source("v2"))
          proc:kill("HUP")
          proc:wait_log("reloaded app.udp", 1, 5)
          berth.sleep(0.2)
        end)
      end, 20)
      local seen = versions(replies, sent)
      assert.equal(1, count(seen.v1))
      assert.same(seen.v1, seen.v2, "one process served both versions")
      assert.is_true(sent > 300, "the stream ran across the reload: " .. sent)
      print(("\n[udp reload] %d datagrams, each answered once, v1 then v2"):format(sent))
      stop(proc)
    end)

    it("--workers 2: both share one socket, and a rolling reload loses nothing", function()
      local dir = make_dir("v1")
      local proc, port = reload.start(dir, { "--workers", "2" })
      local deadline = support.clock() + 3
      while #reload.workers(proc) < 2 and support.clock() < deadline do os.execute("sleep 0.01") end
      local old = reload.workers(proc)
      assert.equal(2, #old, proc:describe())
      local replies, sent
      run(function()
        replies, sent = stream(port, function()
          berth.sleep(0.3)
          support.write_file(dir .. "/app/udp.lua", handler_source("v2"))
          proc:kill("HUP")
          proc:wait_log("rolling reload done", 1, 15)
          berth.sleep(0.2)
        end)
      end, 40)
      local seen = versions(replies, sent)
      assert.is_true(count(seen.v1) >= 1 and count(seen.v2) >= 1, "both versions answered")
      for pid in pairs(seen.v2) do
        for _, o in ipairs(old) do assert.not_equal(tostring(o), pid, "v2 from an old worker") end
      end
      print(("\n[udp workers] %d datagrams across a rolling reload, each answered once; "
        .. "v1 from %d worker(s), v2 from %d"):format(sent, count(seen.v1), count(seen.v2)))
      local workers = reload.workers(proc)
      stop(proc)
      for _, pid in ipairs(workers) do assert.is_false(reload.is_worker(pid)) end
    end)
  end)
end)

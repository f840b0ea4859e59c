-- Workers that cooperate (issue 16), under `berth --workers N`: the shared
-- dictionary seen by every worker (100,000 concurrent incrs end exact; it
-- survives a rolling reload), the bus across 4 workers (100,000 messages,
-- none lost or reordered under the queue bound; a lagging worker drops,
-- counted, the others do not), the chat example across workers, and one
-- metrics scrape covering every worker, with counters that never go down
-- across a rolling reload or a worker killed with SIGKILL. Each test runs
-- spec/fixtures/workers_shared.lua (or examples/chat.lua), stops the
-- master by its PID and checks that no worker is left.
local support = require "support"
local lib = require "support.reload"
local prom = require "support.prom"
local berth = support.berth
local run = support.run

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Starts `berth --workers n` on the fixture (or `script`); returns proc,
-- port and the worker PIDs.
local function start(n, script)
  local dir = support.tmpdir()
  local path = script or lib.copy("workers_shared", dir, "shared.lua")
  local proc, port = lib.start(dir, { "--workers", tostring(n) }, path)
  local workers
  support.wait_until(function()
    workers = lib.workers(proc)
    return #workers >= n
  end, 5, n .. " workers")
  return proc, port, workers
end

-- After a graceful stop: exit 0 and no worker of `workers` left.
local function stop(proc, workers)
  proc:kill("TERM")
  local _, how, code = proc:wait()
  assert.same({ "exit", 0 }, { how, code }, proc:stderr())
  for _, pid in ipairs(workers) do
    assert.is_false(lib.is_worker(pid), "worker " .. pid .. " still runs")
  end
end

-- Task only: a connection to each of the `n` workers, found by asking
-- "who" on new connections: { [worker number] = sock }, and the PIDs.
local function per_worker(port, n, ask)
  ask = ask or function(sock)
    local w, pid = support.roundtrip(sock, "who"):match("^(%d+) (%d+)")
    return tonumber(w), tonumber(pid)
  end
  local socks, pids, spare = {}, {}, {}
  support.wait_until(function()
    local sock = support.connect(port)
    local w, pid = ask(sock)
    if socks[w] then spare[#spare + 1] = sock else socks[w], pids[w] = sock, pid end
    return count(socks) == n
  end, 10, "a connection to each of " .. n .. " workers")
  for _, sock in ipairs(spare) do sock:close() end
  return socks, pids
end

local function close_all(socks)
  for _, sock in pairs(socks) do sock:close() end
end

-- Task only: GET /metrics on `port`; the body.
local function scrape(port)
  local sock = support.connect(port)
  assert(sock:write("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
  local status = sock:read("l", 5)
  assert.equal("HTTP/1.1 200 OK", status)
  local length
  repeat
    local h = assert(sock:read("l", 5))
    length = length or tonumber(h:match("^Content%-Length: (%d+)$"))
  until h == ""
  local body = assert(sock:read(length, 5))
  sock:close()
  return body
end

describe("--workers with shared memory", function()
  before_each(support.before)
  after_each(support.after)

  it("a set in one worker is seen by a get in the other; 100,000 concurrent incrs from both "
    .. "end exact; the dictionary survives a rolling reload", function()
    local proc, port, workers = start(2)
    local took, after_reload
    run(function()
      local s = per_worker(port, 2)
      assert.equal("ok", support.roundtrip(s[1], "set greeting from-1"))
      assert.equal("from-1", support.roundtrip(s[2], "get greeting"))
      assert.equal("ok", support.roundtrip(s[2], "set other from-2"))
      assert.equal("from-2", support.roundtrip(s[1], "get other"))
      local done = 0
      local t0 = support.clock()
      for w = 1, 2 do
        berth.spawn(function()
          local reply = support.roundtrip(s[w], "incr hits 50000", 20)
          assert(reply:match("^done %d+$"), reply)
          done = done + 1
        end)
      end
      support.wait_until(function() return done == 2 end, 25, "both incr loops")
      took = support.clock() - t0
      assert.equal("100000", support.roundtrip(s[1], "get hits"))
      close_all(s)
      -- A rolling reload replaces both workers; the region is the master's.
      proc:kill("HUP")
      proc:wait_log("master: rolling reload done", 1, 20)
      support.wait_until(function()
        return not support.alive(workers[1]) and not support.alive(workers[2])
      end, 10, "the old workers to exit")
      local fresh, pids = per_worker(port, 2)
      for w = 1, 2 do
        assert.is_falsy(pids[w] == workers[1] or pids[w] == workers[2], "an old worker answered")
        assert.equal("100000", support.roundtrip(fresh[w], "get hits"))
        assert.equal("from-1", support.roundtrip(fresh[w], "get greeting"))
      end
      after_reload = true
      close_all(fresh)
    end, 60)
    print(("\n[shared dict, --workers 2] 100,000 incr of one key from 2 workers in %.2f s "
      .. "(%.0f incr/s, through the test's line protocol); intact after a rolling reload")
      :format(took, 100000 / took))
    assert.is_true(after_reload)
    stop(proc, lib.workers(proc))
  end)

  it("bus: 100,000 messages across 4 workers, none lost or reordered per publisher under "
    .. "the queue bound", function()
    local proc, port = start(4)
    local took, reports = nil, {}
    run(function()
      local s = per_worker(port, 4)
      for w = 1, 4 do assert.equal("subscribed", support.roundtrip(s[w], "sub mesh")) end
      local done = 0
      local t0 = support.clock()
      for w = 1, 4 do
        berth.spawn(function()
          assert.equal("published", support.roundtrip(s[w], "pub mesh 25000 1000 1,2,3,4", 30))
          done = done + 1
        end)
      end
      support.wait_until(function() return done == 4 end, 35, "4 publishers")
      support.wait_until(function()
        for w = 1, 4 do
          reports[w] = support.roundtrip(s[w], "report mesh")
          if not reports[w]:match("^100000 ") then return false end
        end
        return true
      end, 10, "every worker to receive 100,000")
      took = support.clock() - t0
      close_all(s)
    end, 60)
    print(("\n[bus, --workers 4] 4 x 25,000 messages, each delivered to 4 workers (400,000 "
      .. "deliveries) in %.2f s: %.0f deliveries/s, flow control 1,000 per publisher")
      :format(took, 400000 / took))
    for w = 1, 4 do
      -- received, out of order, lost (gaps), dropped (mailbox full)
      assert.equal("100000 0 0 0", reports[w], "worker " .. w)
    end
    stop(proc, lib.workers(proc))
  end)

  it("bus: a lagging worker drops the newest messages, counted and seen as a gap; the "
    .. "others lose nothing", function()
    local proc, port = start(2)
    local fast, slow, queued
    run(function()
      local s = per_worker(port, 2)
      for w = 1, 2 do assert.equal("subscribed", support.roundtrip(s[w], "sub lag")) end
      local unblocked
      berth.spawn(function() unblocked = support.roundtrip(s[2], "block 1.5", 10) end)
      berth.sleep(0.3) -- worker 2 is now busy for 1.5 s (the time under test)
      queued = tonumber(support.roundtrip(s[1], "burst lag 30000", 10):match("^burst (%d+)$"))
      support.wait_until(function() return unblocked end, 10, "worker 2 to come back")
      assert.equal("unblocked", unblocked)
      -- One more message: the lagging worker learns of its gap with it.
      assert.equal("burst 2", support.roundtrip(s[1], "burst lag 1"))
      support.wait_until(function()
        fast = support.roundtrip(s[1], "report lag")
        slow = support.roundtrip(s[2], "report lag")
        return fast:match("^30001 ") and tonumber(slow:match("^(%d+)")) > 0
          and support.roundtrip(s[2], "report lag") == slow
      end, 10, "the deliveries to settle")
      close_all(s)
    end, 30)
    local got, bad, lost, dropped = slow:match("^(%d+) (%d+) (%d+) (%d+)$")
    got, bad, lost, dropped = tonumber(got), tonumber(bad), tonumber(lost), tonumber(dropped)
    print(("\n[bus, lagging worker] 30,001 published while worker 2 was busy 1.5 s: it got %d "
      .. "(mailbox of 1 MiB), dropped %d (counted), saw a gap of %d; worker 1 got all")
      :format(got, dropped, lost))
    assert.equal("30001 0 0 0", fast)
    assert.equal(0, bad, "out of order on the lagging worker")
    assert.is_true(dropped > 0 and got + dropped == 30001, slow)
    assert.equal(dropped, lost)
    assert.equal(2 * 30000 - dropped, queued)
    stop(proc, lib.workers(proc))
  end)

  it("examples/chat.lua: clients on different workers exchange lines, and a private "
    .. "message reaches one connection by its id", function()
    local proc, port = start(2, "examples/chat.lua")
    local lines = {}
    run(function()
      local ids = {}
      local s = per_worker(port, 2, function(sock)
        assert.equal("welcome", sock:read("l", 2))
        local id, w = support.roundtrip(sock, "/who"):match("^you are (%d+) on worker (%d+)$")
        w = tonumber(w)
        ids[sock] = math.tointeger(tonumber(id))
        return w
      end)
      assert(s[1]:write("hello from worker 1\n"))
      lines[1] = s[2]:read("l", 2)
      assert(s[2]:write("hello from worker 2\n"))
      lines[2] = s[1]:read("l", 2)
      assert(s[1]:write("/msg ", ids[s[2]], " psst\n"))
      lines[3] = s[2]:read("l", 2)
      close_all(s)
    end, 20)
    assert.same({ "hello from worker 1", "hello from worker 2", "[private] psst" }, lines)
    stop(proc, lib.workers(proc))
  end)

  it("metrics: one scrape covers every worker; it parses; counters never go down across a "
    .. "rolling reload or a worker killed with SIGKILL", function()
    local proc, port, first = start(2)
    local texts = {}
    run(function()
      local s = per_worker(port, 2)
      local mport = tonumber(support.roundtrip(s[1], "mport"))
      assert.equal(tostring(mport), support.roundtrip(s[2], "mport")) -- one listener
      for _ = 1, 3 do support.roundtrip(s[1], "get x") end
      for _ = 1, 5 do support.roundtrip(s[2], "get x") end
      berth.sleep(0.25) -- the built-in metrics are sampled every 0.1 s
      texts[1] = scrape(mport)
      close_all(s)
      proc:kill("HUP")
      proc:wait_log("master: rolling reload done", 1, 20)
      support.wait_until(function()
        return not support.alive(first[1]) and not support.alive(first[2])
      end, 10, "the old workers to exit")
      texts[2] = scrape(mport)
      -- A worker killed: what it counted stays (its cells are shared).
      local s2 = per_worker(port, 2)
      for _ = 1, 4 do support.roundtrip(s2[1], "get x") end
      local victim = lib.workers(proc)[1]
      close_all(s2)
      support.kill(victim, "KILL")
      proc:wait_log("master: worker " .. victim .. " died", 1, 5)
      support.wait_until(function() return #lib.workers(proc) == 2 end, 5, "the restart")
      texts[3] = scrape(mport)
    end, 60)
    local fams = {}
    for i, text in ipairs(texts) do
      local ok, err = pcall(prom.parse, text)
      assert(ok, "scrape " .. i .. ": " .. tostring(err))
      fams[i] = err
      local good, complaint = prom.promtool(text)
      if good ~= nil then assert(good, "promtool check metrics: " .. tostring(complaint)) end
    end
    local get = 'fixture_commands_total{cmd="get"}'
    -- 8 gets on 2 workers, counted in one scrape; 4 more by then, one
    -- worker killed after them.
    assert.equal(8, prom.value(fams[1], get))
    assert.equal(8, prom.value(fams[2], get))
    assert.equal(12, prom.value(fams[3], get))
    for i = 2, 3 do
      for key, v in pairs(prom.counters(fams[i - 1])) do
        local now = prom.value(fams[i], key)
        assert(now and now >= v, ("%s went from %s to %s (scrape %d)"):format(key, v, tostring(now), i))
      end
    end
    assert.equal(1, prom.value(fams[2], "berth_reloads_total{}"))
    assert.equal(1, prom.value(fams[3], "berth_worker_restarts_total{}"))
    assert.is_true(prom.value(fams[1], "berth_connections_total{}") >= 2)
    assert.is_true(prom.sum(fams[1], "berth_event_loop_lag_seconds") > 0)
    local samples = 0
    for _, f in pairs(fams[3]) do samples = samples + #f.samples end
    print(("\n[metrics, --workers 2] 3 scrapes of %d samples; fixture_commands_total{get} 8 -> 8 "
      .. "-> 12 across a rolling reload and a SIGKILL; promtool %s")
      :format(samples, prom.promtool(texts[3]) == nil and "not installed" or "accepts them"))
    stop(proc, lib.workers(proc))
  end)
end)

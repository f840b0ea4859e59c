-- `berth --workers N`: a master and N workers sharing the listeners; rolling
-- reload on SIGHUP (under load), restart of a killed worker, graceful
-- shutdown (SIGTERM, a second SIGTERM, berth.on_shutdown hooks). Each test
-- runs the host on the spec/fixtures/reload_* files copied into a temp dir,
-- stops the master by its PID and checks that no worker is left.
local support = require "support"
local lib = require "support.reload"
local berth = support.berth
local run = support.run

local MiB = 1024 * 1024
local SLEEPING = "sleep: started" -- logged by the handler's "sleep" request

local function v(k) return lib.handler_source("v" .. k) end

-- Starts `berth --workers 2 [args] server.lua`; waits until both workers
-- run. Returns proc, port, the worker PIDs.
local function start_workers(dir, args, script)
  local argv = { "--workers", "2" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local proc, port = lib.start(dir, argv, script)
  local workers = lib.workers(proc)
  pcall(support.wait_until, function()
    workers = lib.workers(proc)
    return #workers >= 2
  end, 3)
  assert.equal(2, #workers, "workers of the master\n" .. proc:describe())
  return proc, port, workers
end

-- Task only: new connections asking "pid" until every PID of `want` has
-- answered (a few at a time, so that both workers take some); returns
-- the set of PIDs that answered, failures, requests.
local function pids_answering(port, want, timeout)
  local seen, failures, requests = {}, 0, 0
  local deadline = berth.now() + (timeout or 3)
  local function all()
    for _, pid in ipairs(want) do if not seen[pid] then return false end end
    return true
  end
  while not all() and berth.now() < deadline do
    local pending = 0
    for _ = 1, 8 do
      pending = pending + 1
      berth.spawn(function()
        requests = requests + 1
        local reply = lib.request(port, "pid")
        local pid = reply and math.tointeger(tonumber(reply:match("^pid (%d+)$")))
        if pid then seen[pid] = true else failures = failures + 1 end
        pending = pending - 1
      end)
    end
    support.wait_until(function() return pending == 0 end, 5)
  end
  return seen, failures, requests
end

-- After the master exited: none of `workers` may still run, and the
-- master has no child any more. (Read from /proc, not pgrep: under
-- scripts/sanitize every child inherits the ASan preload, and pgrep hangs
-- in its start-up.)
local function assert_no_worker_left(proc, workers)
  for _, pid in ipairs(workers) do
    assert.is_false(lib.is_worker(pid), ("worker %d still runs after the master exited\n%s")
      :format(pid, proc:stderr()))
  end
  assert.same({}, support.children(proc.pid))
end

describe("--workers", function()
  before_each(support.before)
  after_each(support.after) -- also fails a test that leaves workers running

  it("runs a master and 2 workers on one port, with one listening line", function()
    local dir = lib.setup("v1")
    local proc, port, workers = start_workers(dir)
    local seen, failures, requests
    run(function()
      seen, failures, requests = pids_answering(port, workers, 3)
    end, 10)
    print(("\n[workers] master %d, workers %d and %d; both answered within %d requests")
      :format(proc.pid, workers[1], workers[2], requests))
    assert.equal(0, failures)
    assert.same({ [workers[1]] = true, [workers[2]] = true }, seen)
    proc:kill("TERM")
    local rest, how, code = proc:wait()
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    assert.equal("", rest, "more than one listening line")
    assert_no_worker_left(proc, workers)
  end)

  it("3 rolling reloads (SIGHUP) under ~2000 requests/s: nothing fails, never fewer than "
    .. "2 workers, RSS stable", function()
    local RELOADS, WARMUP, SPACING = 3, 2, 3.5
    local dir, h = lib.setup("v1")
    local proc, port, first = start_workers(dir)
    local all = {}
    for _, pid in ipairs(first) do all[pid] = true end
    local load, stats, fewest = nil, nil, math.huge
    local rss, times = {}, {}
    local sampling = true
    local function worker_rss()
      local sum = 0
      for _, pid in ipairs(lib.workers(proc)) do
        local ok, bytes = pcall(support.rss, pid) -- it may exit meanwhile
        sum = sum + (ok and bytes or 0)
      end
      return sum
    end
    run(function()
      load = lib.load(port, { keepalive = 10, rate = 180, recycle = 300,
        oneshot = 4, oneshot_rate = 50 }):start()
      berth.spawn(function() -- the number of live workers, every 5 ms
        while sampling do
          local n = #lib.workers(proc)
          if n < fewest then fewest = n end
          for _, pid in ipairs(lib.workers(proc)) do all[pid] = true end
          berth.sleep(0.005) -- the sampler's interval
        end
      end)
      local t0 = berth.now()
      berth.sleep(WARMUP) -- the load runs a while before RSS is taken
      rss.master_warm, rss.workers_warm = support.rss(proc.pid), worker_rss()
      for r = 1, RELOADS do
        local k = r + 1
        local before = lib.workers(proc)
        load.max = k
        lib.save(h, v(k))
        local t = support.clock()
        proc:kill("HUP")
        proc:wait_log("master: rolling reload done", r, 10)
        local done = support.clock() - t
        support.wait_until(function()
          for _, pid in ipairs(before) do if support.alive(pid) then return false end end
          return true
        end, 5, "the old workers to exit")
        times[r] = { done, support.clock() - t }
        load.min = k -- only new workers accept from now on
        local at = t0 + WARMUP + r * SPACING
        if at > berth.now() then berth.sleep(at - berth.now()) end
      end
      rss.master_end, rss.workers_end = support.rss(proc.pid), worker_rss()
      load:stop()
      sampling = false
      stats = lib.stats(port)
    end, 60)
    local lines = {}
    for r, t in ipairs(times) do
      lines[r] = ("reload %d: done %.0f ms after SIGHUP, old workers gone after %.0f ms")
        :format(r, t[1] * 1000, t[2] * 1000)
    end
    print(("\n[load, --workers 2] %s\n[load] %s\n[load] fewest live workers during the run: %d"
      .. "\n[load] master RSS %.1f -> %.1f MiB; workers' RSS %.1f -> %.1f MiB")
      :format(load:summary(), table.concat(lines, "; "), fewest,
        rss.master_warm / MiB, rss.master_end / MiB,
        rss.workers_warm / MiB, rss.workers_end / MiB))
    load:assert_clean()
    assert.is_true(load.sent >= 0.9 * 2000 * load.elapsed,
      ("only %d requests in %.1f s"):format(load.sent, load.elapsed))
    assert.equal(RELOADS, proc:count("master: rolling reload done"))
    assert.equal("v" .. (RELOADS + 1), stats.version)
    assert.is_true(fewest >= 2, "the service had fewer than 2 workers during a reload")
    assert.is_true(rss.master_end - rss.master_warm < 4 * MiB, "master RSS grew")
    assert.is_true(rss.workers_end - rss.workers_warm < 4 * MiB, "workers' RSS grew")
    proc:kill("TERM")
    local _, how, code = proc:wait()
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    local workers = {}
    for pid in pairs(all) do workers[#workers + 1] = pid end
    assert.equal(2 + 2 * RELOADS, #workers, "workers started in all")
    assert_no_worker_left(proc, workers)
  end)

  it("restarts a worker killed with SIGKILL within 1 s; the service keeps answering", function()
    local dir = lib.setup("v1")
    local proc, port, workers = start_workers(dir)
    local victim, survivor = workers[1], workers[2]
    local restarted, replacement, failures = nil, nil, {}
    local seen
    run(function()
      local killed_at
      -- One request every 10 ms on a new connection, before and after the
      -- kill (never one in flight when it lands).
      for i = 1, 150 do
        local reply, code = lib.request(port, "pid")
        if not (reply and reply:match("^pid %d+$")) then
          failures[#failures + 1] = ("probe %d: %s"):format(i, tostring(reply or code))
        end
        if i == 20 then
          support.kill(victim, "KILL")
          killed_at = support.clock()
        end
        if killed_at and not replacement then
          for _, pid in ipairs(lib.workers(proc)) do
            if pid ~= victim and pid ~= survivor then
              replacement, restarted = pid, support.clock() - killed_at
            end
          end
        end
        berth.sleep(0.01) -- the probes' pace
      end
      if replacement then seen = pids_answering(port, { replacement, survivor }, 3) end
    end, 15)
    print(("\n[kill -9] worker %d killed; worker %s started %.0f ms later")
      :format(victim, tostring(replacement), (restarted or -1) * 1000))
    assert.same({}, failures)
    assert.is_truthy(replacement, "no new worker\n" .. proc:stderr())
    assert.is_true(restarted < 1, ("restarted after %.2f s"):format(restarted))
    assert.is_false(support.alive(victim))
    assert.same({ [replacement] = true, [survivor] = true }, seen)
    assert.is_truthy(proc:stderr():find(("master: worker %d died (signal 9); restarting in 0.1 s")
      :format(victim), 1, true), proc:stderr())
    proc:kill("TERM")
    local _, how, code = proc:wait()
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    assert_no_worker_left(proc, { victim, survivor, replacement })
  end)

  it("SIGTERM: the in-flight request completes, the listener is closed within 100 ms, exit 0",
    function()
      local dir = lib.setup("v1")
      local proc, port, workers = start_workers(dir)
      local refused, accepted, reply, after, replied, exited
      local late = {}
      run(function()
        local busy = support.connect(port)
        local t_req = support.clock()
        assert(busy:write("sleep\n"))
        proc:wait_log(SLEEPING) -- the handler is in its 1 s sleep
        local t0 = support.clock()
        proc:kill("TERM")
        berth.spawn(function() -- a client arriving 150 ms after the signal
          berth.sleep(0.15) -- the time under test
          local sock, code = berth.connect("127.0.0.1", port, { timeout = 1 })
          late.connect = sock and "connected" or code
          if sock then
            local t = support.clock()
            assert(sock:write("late\n"))
            local r, rcode = sock:read("l", 3)
            late.read = r and ("reply %q"):format(r) or rcode
            late.after = support.clock() - t
            sock:close()
          end
        end)
        refused, accepted = lib.refused_after(port, t0, 2)
        reply = busy:read("l", 3)
        replied = support.clock() - t_req
        after = { busy:read("l", 1) }
        busy:close()
        exited = support.wait_exit(proc.pid, 3)
      end, 10)
      local _, how, code = proc:wait()
      print(("\n[SIGTERM, --workers 2] refused %s after the signal (%d connections accepted "
        .. "by the kernel before); 1 s request answered after %.2f s; master exited %s later")
        :format(refused and ("%.0f ms"):format(refused * 1000) or "never within 2 s", accepted,
          replied, exited and ("%.0f ms"):format(exited * 1000) or "not"))
      assert.equal("slept v1", reply)
      assert.same({ nil, "closed", "" }, after)
      assert.same({ "exit", 0 }, { how, code }, proc:stderr())
      assert_no_worker_left(proc, workers)
      if late.read then
        print(("[SIGTERM, --workers 2] a client 150 ms after the signal: connected, sent a line, "
          .. "got %s %.0f ms later"):format(late.read, late.after * 1000))
      end
      assert.equal("refused", late.connect, "a client connecting 150 ms after SIGTERM")
      assert.is_truthy(refused, "new connections still accepted (never refused) 2 s after SIGTERM")
      -- at once, not after the grace period (10 s)
      assert.is_true(refused < 2, ("listener closed after %.0f ms"):format(refused * 1000))
    end)

  it("a second SIGTERM exits at once, workers included", function()
    local dir = lib.setup("v1")
    local proc, port, workers = start_workers(dir)
    local got, exited, gone
    run(function()
      local busy = support.connect(port)
      assert(busy:write("sleep\n"))
      proc:wait_log(SLEEPING)
      proc:kill("TERM")
      proc:wait_log("master: SIGTERM: stopping") -- two pending signals would merge
      local t0 = support.clock()
      proc:kill("TERM")
      exited = support.wait_exit(proc.pid, 2)
      support.wait_until(function()
        return not lib.is_worker(workers[1]) and not lib.is_worker(workers[2])
      end, 2, "the workers to exit")
      gone = support.clock() - t0
      got = { busy:read("l", 2) }
      busy:close()
    end)
    local _, how, code = proc:wait()
    print(("\n[2nd SIGTERM, --workers 2] master exited %.0f ms after it, workers gone after "
      .. "%.0f ms"):format((exited or -1) * 1000, gone * 1000))
    -- at once, not after the grace period (10 s)
    assert.is_truthy(exited and exited < 3, "master still running 3 s after the second SIGTERM")
    assert.is_true(gone < 3, "workers still running 3 s after the second SIGTERM")
    assert.same({ nil, "closed", "" }, got, "the in-flight request must not be answered")
    assert.same({ "exit", 1 }, { how, code }, proc:stderr())
    assert_no_worker_left(proc, workers)
  end)

  it("a listen that raises in the master is an error in the worker; the next listen works; "
    .. "SIGTERM stops everything", function()
    -- Once, the master's per-worker task died on the raise, and the worker
    -- waited for its reply forever (ignoring SIGTERM).
    local dir = support.tmpdir()
    local script = lib.copy("workers_bad_listen", dir, "bad.lua")
    local proc, port, workers = start_workers(dir, nil, script)
    local replies = {}
    run(function()
      support.wait_until(function()
        local pending = 8
        for _ = 1, 8 do
          berth.spawn(function()
            local reply = lib.request(port, "")
            local pid = reply and math.tointeger(tonumber(reply:match("^pid (%d+)|")))
            if pid then replies[pid] = reply end
            pending = pending - 1
          end)
        end
        support.wait_until(function() return pending == 0 end, 3)
        return replies[workers[1]] and replies[workers[2]]
      end, 5, "replies from both workers")
    end, 10)
    for _, pid in ipairs(workers) do
      local _, ok1, err1, ok2, err2 = replies[pid]:match("^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
      assert.equal("false", ok1)
      assert.equal('listen: host must be an IP address, "*" or a host name (got "bad host")', err1)
      assert.equal("false", ok2)
      assert.truthy(err2:find('^listen: unknown option "prot" %(valid: host, port, '), err2)
    end
    local t0 = support.clock()
    proc:kill("TERM")
    local _, how, code = proc:wait()
    local took = support.clock() - t0
    print(("\n[bad listen, --workers 2] both workers got the error; exit %.0f ms after SIGTERM")
      :format(took * 1000))
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    assert.is_true(took < 3, ("took %.1f s to stop"):format(took))
    assert_no_worker_left(proc, workers)
  end)

  it("berth.on_shutdown hooks run in every worker at SIGTERM", function()
    local dir = support.tmpdir()
    local script = lib.copy("reload_goodbye", dir, "goodbye.lua")
    local proc, port, workers = start_workers(dir, nil, script)
    local from, took = {}, nil
    local has = {}
    run(function()
      -- Clients in concurrent batches of 8 until both workers have some.
      local clients = {}
      support.wait_until(function()
        local pending = 8
        for _ = 1, 8 do
          berth.spawn(function()
            local sock = support.connect(port)
            clients[#clients + 1] = sock
            local pid = tonumber(support.roundtrip(sock, "pid"):match("^pid (%d+)$"))
            has[pid] = (has[pid] or 0) + 1
            pending = pending - 1
          end)
        end
        support.wait_until(function() return pending == 0 end, 2)
        return has[workers[1]] and has[workers[2]]
      end, 5, "clients on both workers")
      for i = 1, #clients do
        assert.equal("echo hi" .. i, support.roundtrip(clients[i], "hi" .. i))
      end
      local t0 = support.clock()
      proc:kill("TERM")
      for i = 1, #clients do
        local line = clients[i]:read("l", 2)
        local pid = line and math.tointeger(tonumber(line:match("^goodbye (%d+)$")))
        assert(pid, "client " .. i .. " got " .. tostring(line))
        from[pid] = (from[pid] or 0) + 1
        assert.same({ nil, "closed", "" }, { clients[i]:read("l", 2) })
        clients[i]:close()
      end
      assert.is_truthy(support.wait_exit(proc.pid, 3), "no exit after the hooks closed every client")
      took = support.clock() - t0
    end)
    local _, how, code = proc:wait()
    print(("\n[on_shutdown, --workers 2] goodbyes from worker %d: %d, from %d: %d; exit %.0f ms "
      .. "after SIGTERM"):format(workers[1], from[workers[1]] or 0, workers[2],
        from[workers[2]] or 0, took * 1000))
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
    assert.same(has, from, "goodbyes per worker = clients per worker")
    assert.is_true(took < 1, "waited for the grace period instead of the hooks")
    assert_no_worker_left(proc, workers)
  end)
end)

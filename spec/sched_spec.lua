-- Tasks and the loop: spawn, sleep, now, timer, signal, run/step/stop,
-- stats, errors in tasks and the "must be called from a berth task" rule
-- (README "API reference" > Module berth).
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect
local assert_raises = support.assert_raises

local TASK_ONLY = "must be called from a berth task"

describe("scheduler", function()
  before_each(support.before)
  after_each(support.after)

  describe("spawn", function()
    it("returns the task's coroutine and never runs it inline", function()
      run(function()
        local ran = false
        local co = berth.spawn(function() ran = true end)
        assert.equal("thread", type(co))
        assert.is_false(ran)
        berth.sleep(0)
        assert.is_true(ran)
      end)
    end)

    it("passes its arguments to the function", function()
      run(function()
        local got
        berth.spawn(function(...) got = table.pack(...) end, 1, "two", nil, 4)
        support.wait_until(function() return got end)
        assert.same(table.pack(1, "two", nil, 4), got)
      end)
    end)

    it("starts tasks spawned together in spawn order", function()
      run(function()
        local order = {}
        for i = 1, 5 do berth.spawn(function() order[#order + 1] = i end) end
        support.wait_until(function() return #order == 5 end)
        assert.same({ 1, 2, 3, 4, 5 }, order)
      end)
    end)

    it("runs a spawned task on the next berth.step()", function()
      local ran = false
      berth.spawn(function() ran = true end)
      assert.is_false(ran)
      for _ = 1, 10 do
        if ran then break end
        berth.step()
      end
      assert.is_true(ran)
    end)
  end)

  describe("sleep and now", function()
    it("sleep returns true and only suspends the calling task", function()
      run(function()
        local order = {}
        berth.spawn(function()
          assert.is_true(berth.sleep(0.1))
          order[#order + 1] = "long"
        end)
        berth.spawn(function()
          assert.is_true(berth.sleep(0.01))
          order[#order + 1] = "short"
        end)
        support.wait_until(function() return #order == 2 end)
        assert.same({ "short", "long" }, order)
      end)
    end)

    it("now() is a number that does not go backwards across a sleep", function()
      run(function()
        local t0 = berth.now()
        assert.equal("number", type(t0))
        berth.sleep(0.02)
        assert.is_true(berth.now() >= t0)
      end)
    end)
  end)

  describe("timer", function()
    it("fires a one-shot timer once, in a task, with the timer as argument", function()
      run(function()
        local timer
        local done = false
        timer = berth.timer(0.01, 0, expect(function(t)
          assert.equal(timer, t)
          assert.is_true(berth.sleep(0.01)) -- a task: blocking calls work
          done = true
        end, 1))
        support.wait_until(function() return done end)
        berth.sleep(0.05) -- a quiet period: a second firing would show
      end)
    end)

    it("repeats until cancelled, and cancel is idempotent", function()
      run(function()
        local n = 0
        local timer = berth.timer(0.01, 0.01, expect(function(t)
          n = n + 1
          if n == 3 then t:cancel() end
        end, 3))
        support.wait_until(function() return n == 3 end)
        berth.sleep(0.05) -- a quiet period: a firing after cancel would show
        timer:cancel()
      end)
    end)

    it("never fires when cancelled before it is due", function()
      run(function()
        local timer = berth.timer(0.05, 0, expect(nil, 0))
        timer:cancel()
        berth.sleep(0.1) -- past the time it was due: the wait is the test
      end)
    end)

    it("routes an error in its callback to berth.onerror", function()
      run(function()
        berth.timer(0, 0, function() error("timer-failure") end)
        local errs = support.wait_errors(1)
        assert.matches("timer%-failure", tostring(errs[1].err))
        assert.is_nil(errs[1].sock)
      end)
    end)
  end)

  describe("signal", function()
    it("calls fn(name) in a task for each delivery of SIGUSR1", function()
      run(function()
        local got = {}
        local sig = berth.signal("USR1", expect(function(name)
          got[#got + 1] = name
          assert.is_true(berth.sleep(0)) -- a task: blocking calls work
        end, 2))
        local pid = support.pid()
        support.kill(pid, "USR1")
        support.wait_until(function() return #got == 1 end, 2, "the first SIGUSR1")
        support.kill(pid, "USR1")
        support.wait_until(function() return #got == 2 end, 2, "the second SIGUSR1")
        assert.same({ "USR1", "USR1" }, got)
        sig:cancel()
        sig:cancel()
      end)
    end)

    it("does not keep run() alive", function()
      local out, code, err = support.run_fixture("signal_does_not_keep_alive")
      assert.equal(0, code, err)
      assert.equal("run returned true\n", out)
    end)
  end)

  describe("run, step, stop, shutdown", function()
    it("stop() makes run() return while work remains", function()
      local timer = berth.timer(30, 0, function() end)
      local stopped_by_guard = false
      local guard = berth.timer(5, 0, function()
        stopped_by_guard = true
        berth.stop()
      end)
      berth.spawn(function()
        berth.sleep(0) -- stop from a later iteration of the running loop
        berth.stop()
      end)
      assert.is_true(berth.run())
      assert.is_false(stopped_by_guard, "stop() from a task did not stop run()")
      guard:cancel()
      timer:cancel()
      for _ = 1, 10 do berth.step() end -- let the stopping task end
    end)

    it("step() returns true and never blocks; step(timeout) blocks at most about timeout",
      function()
        local distant = berth.timer(30, 0, function() end)
        local t0 = support.clock()
        assert.is_true(berth.step())
        assert.is_true(berth.step(0.05))
        assert.is_true(support.clock() - t0 < 2, "step waited for the 30 s timer")
        distant:cancel()
      end)

    it("step(timeout) runs work that falls due", function()
      local fired = false
      local timer = berth.timer(0.02, 0, function() fired = true end)
      local deadline = support.clock() + 5
      while not fired and support.clock() < deadline do berth.step(0.01) end
      assert.is_true(fired)
      timer:cancel()
      for _ = 1, 10 do berth.step() end -- let the timer task end
    end)

    it("shutdown(grace) closes listeners and idle connections, lets busy tasks finish", function()
      -- In a child: shutdown stops the loop for good in that process.
      local out, code, err = support.run_fixture("shutdown_grace")
      assert.equal(0, code, err)
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      local sorted = { table.unpack(lines) }
      table.sort(sorted)
      assert.same({
        "connect after shutdown: refused",
        "in-flight handler finished: done",
        "late handler woken: closed",
        "listener closed: true",
        "run returned",
      }, sorted)
      local at = {}
      for i, line in ipairs(lines) do at[line:match("^%S+ %S+")] = i end
      -- The idle handler is woken as the shutdown starts, before the busy
      -- one finishes (which takes 0.2 s of its 0.6 s grace).
      assert.is_true(at["late handler"] < at["in-flight handler"], out)
      assert.equal(#lines, at["run returned"], out)
    end)
  end)

  describe("deadlines", function()
    it("start at the call, even after the process blocked outside the loop", function()
      os.execute("sleep 1.5") -- the loop's cached time is now 1.5 s old
      run(function()
        local server <close> = support.listen()
        local client <close> = assert(berth.connect("127.0.0.1", server:port(), { timeout = 1 }))
        local peer <close> = assert(server:accept(1))
        berth.spawn(function()
          berth.sleep(0.2) -- a slow peer: the read's 1 s deadline must hold
          peer:write("late\n")
        end)
        assert.equal("late", client:read("l", 1))
      end, 5, { keep_stale_time = true })
    end)
  end)

  describe("stats", function()
    it("counts live tasks, sockets, servers and bytes", function()
      run(function()
        -- Relative counts: an earlier test's leak must not fail this one.
        local base = berth.stats()
        local release = berth.cond()
        for _ = 1, 3 do berth.spawn(function() release:wait(5) end) end
        berth.sleep(0) -- they start and park
        assert.equal(base.tasks + 3, berth.stats().tasks)

        local p <close> = support.pair()
        local s = berth.stats()
        assert.same({ base.sockets + 2, base.servers + 1 }, { s.sockets, s.servers })
        assert(p.client:write("hello"))
        assert.equal("hello", p.peer:read(5, 2))
        assert(p.peer:write("hi"))
        assert.equal("hi", p.client:read(2, 2))
        local after = berth.stats()
        -- Both ends are in this process: each byte is counted out and in.
        assert.same({ 7, 7 },
          { after.bytes_in - s.bytes_in, after.bytes_out - s.bytes_out })
        assert.is_true(after.total >= base.total + 1)
        assert.is_true(after.active >= 1)
        release:broadcast()
        support.wait_until(function() return berth.stats().tasks == base.tasks end)
      end)
    end)
  end)

  describe("blocking calls outside a task", function()
    it("raise 'must be called from a berth task' from the main thread", function()
      assert_raises(TASK_ONLY, berth.sleep, 0.01)
      assert_raises(TASK_ONLY, berth.connect, "127.0.0.1", 9)
      local server <close> = support.listen()
      assert_raises(TASK_ONLY, server.accept, server, 0)
    end)

    it("raise from a plain coroutine that is not a berth task", function()
      local co = coroutine.create(function() return berth.sleep(0.01) end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches(TASK_ONLY, tostring(err), 1, true)
    end)

    it("raise for socket reads outside a task", function()
      local p
      run(function() p = support.pair() end)
      assert_raises(TASK_ONLY, p.client.read, p.client, "l", 0)
      assert_raises(TASK_ONLY, p.client.readsome, p.client, 1, 0)
      assert_raises(TASK_ONLY, p.client.readuntil, p.client, ";", 0)
      p:close()
    end)

    it("raise for flush outside a task, even with nothing buffered", function()
      -- README lists flush among the task-only calls without exception.
      local p
      run(function() p = support.pair() end)
      assert_raises(TASK_ONLY, p.client.flush, p.client, 0)
      p:close()
    end)

    it("raise inside an on('data') callback, which is not a task", function()
      run(function()
        local p <close> = support.pair()
        p.client:on("data", function() berth.sleep(0.01) end)
        assert(p.peer:write("x"))
        local errs = support.wait_errors(1)
        assert.matches(TASK_ONLY, tostring(errs[1].err), 1, true)
      end)
    end)
  end)

  describe("errors in tasks", function()
    it("go to berth.onerror with (err, traceback, nil) and do not stop the loop", function()
      run(function()
        berth.spawn(function() error("spawned-failure") end)
        local errs = support.wait_errors(1)
        assert.matches("spawned%-failure", tostring(errs[1].err))
        assert.matches("stack traceback", errs[1].traceback)
        assert.is_nil(errs[1].sock)
        assert.is_true(berth.sleep(0.01)) -- the loop goes on
      end)
    end)

    it("pass a non-string error value through unchanged", function()
      run(function()
        local value = { reason = "table error" }
        berth.spawn(function() error(value) end)
        local errs = support.wait_errors(1)
        assert.equal(value, errs[1].err)
      end)
    end)
  end)
end)

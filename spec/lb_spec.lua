-- Behind a load balancer (issue 15), the host's side: health checks that
-- say "draining" before the listeners close (--drain-delay, a rolling
-- reload), systemd socket activation (a launcher written here passes
-- LISTEN_FDS), and the SIGUSR2 binary upgrade, single process and
-- master, with a steady stream of connections that must all be served.
-- Every process started is stopped by its PID (a new process started by
-- an upgrade is tracked and stopped too).
local support = require "support"
local berth = support.berth
local run = support.run

local FIXTURE = "spec/fixtures/lb_server.lua"

-- Task only: one request on a fresh connection; the "pid N" answer as a
-- number, or nil and why.
local function ask(port)
  local c, err = berth.connect("127.0.0.1", port, { timeout = 2 })
  if not c then return nil, err end
  local line, why = nil, nil
  if c:write("x\n") then line, why = c:read("l", 3) end
  c:close()
  local pid = line and math.tointeger(tonumber(line:match("^pid (%d+)$")))
  return pid, pid == nil and (why or line) or nil
end

-- Task only: an HTTP GET of `path` on a fresh connection: status, body.
local function get(port, path)
  local c = berth.connect("127.0.0.1", port, { timeout = 2 })
  if not c then return nil end
  c:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  local reply = support.read_to_end(c, 3)
  c:close()
  local status, body = reply:match("^HTTP/1%.1 (%d+) .-\r\n\r\n(.*)$")
  return tonumber(status), body
end

-- A load: connections one after another until stop() (each asked once);
-- counts answers per pid and failures.
local function load(port)
  local st = { pids = {}, failures = 0, requests = 0, stop = false, errors = {} }
  local done = berth.cond()
  berth.spawn(function()
    while not st.stop do
      local pid, why = ask(port)
      st.requests = st.requests + 1
      if pid then
        st.pids[pid] = (st.pids[pid] or 0) + 1
      else
        st.failures = st.failures + 1
        st.errors[#st.errors + 1] = tostring(why)
      end
      berth.sleep(0.005)
    end
    st.finished = true
    done:signal()
  end)
  function st.finish()
    st.stop = true
    while not st.finished do done:wait() end
    return st
  end
  return st
end

describe("health checks and the drain delay", function()
  before_each(support.before)
  after_each(support.after)

  it("say 503 from SIGTERM while the listener still serves, for --drain-delay", function()
    local p, port = support.start_host("examples/http.lua", { "--drain-delay", "0.8" })
    run(function()
      assert.same({ 200, "serving\n" }, { get(port, "/health") })
      p:kill("TERM")
      support.wait_until(function() return get(port, "/health") == 503 end, 2, "503")
      assert.equal(200, (get(port, "/"))) -- still accepting
      local t0 = berth.now()
      support.wait_until(function()
        return berth.connect("127.0.0.1", port, { timeout = 1 }) == nil
      end, 3, "the listener to close")
      assert.is_true(berth.now() - t0 > 0.3, "closed before the drain delay")
    end, 15)
    local _, how, code = p:wait()
    assert.same({ "exit", 0 }, { how, code })
    assert.matches("draining for 0.8s", p:stderr())
  end)

  it("during the drain delay, serve a connection that has sent only its PROXY header", function()
    local p, port = support.start_host("examples/echo.lua", { "--drain-delay", "1" },
      { env = { PROXY_PROTOCOL = "1" } })
    run(function()
      p:kill("TERM")
      berth.sleep(0.2) -- draining, still accepting
      local c <close> = support.connect(port)
      assert(c:write("PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n"))
      berth.sleep(0.2) -- the header alone does not make it an idle client
      assert(c:write("late\n"))
      assert.equal("late\n", c:read("L", 3))
    end, 10)
    local _, how, code = p:wait()
    assert.same({ "exit", 0 }, { how, code })
  end)

  it("berth.serve_health on its own port; SIGQUIT skips the delay", function()
    local p, port = support.start_host("spec/fixtures/lb_health.lua", { "--drain-delay", "5" })
    local hport = math.tointeger(tonumber(p:readline():match("^health (%d+)$")))
    run(function()
      assert.same({ 200, "serving\n" }, { get(hport, "/anything") })
      assert.is_number(ask(port))
    end)
    p:kill("QUIT")
    local t0 = support.clock()
    local _, how, code = p:wait()
    assert.same({ "exit", 0 }, { how, code })
    assert.is_true(support.clock() - t0 < 3, "SIGQUIT waited for the drain delay")
  end)

  it("say 503 during a rolling reload of the workers", function()
    local p, port = support.start_host("examples/http.lua",
      { "--workers", "2", "--drain-delay", "0.5" })
    run(function()
      support.wait_until(function() return get(port, "/health") == 200 end, 3, "200")
      p:kill("HUP")
      support.wait_until(function() return get(port, "/health") == 503 end, 3, "503")
      support.wait_until(function() return get(port, "/health") == 200 end, 10, "200 again")
      assert.equal(200, (get(port, "/")))
    end, 20)
    support.stop_clean(p)
    assert.matches("rolling reload done", p:stderr())
  end)
end)

describe("socket activation", function()
  before_each(support.before)
  after_each(support.after)

  -- A launcher like systemd's: binds 127.0.0.1:0 twice, passes the two
  -- sockets as fds 3 and 4 with LISTEN_FDS, LISTEN_PID (its own pid,
  -- which exec keeps) and LISTEN_FDNAMES, and execs the host.
  local LAUNCHER = [[
import os, socket, sys
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    socks.append(s)
print("ports %d %d" % (socks[0].getsockname()[1], socks[1].getsockname()[1]), flush=True)
high = [os.dup(s.fileno()) for s in socks]  # out of the way of 3 and 4
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)  # an inheritable copy
    os.close(fd)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = "other:web"
os.execv(sys.argv[1], sys.argv[1:])
]]

  for _, workers in ipairs { false, true } do
    it("adopts LISTEN_FDS; listen{name=} picks one" .. (workers and " (--workers 2)" or ""),
      function()
        local argv = { "python3", "-c", LAUNCHER, support.host_binary() }
        if workers then
          argv[#argv + 1] = "--workers"
          argv[#argv + 1] = "2"
        end
        argv[#argv + 1] = FIXTURE
        local p = support.start(argv, { env = { LB_NAME = "web", PORT = "" }, limit = 30 })
        local other, web = p:readline():match("^ports (%d+) (%d+)$")
        web, other = math.tointeger(tonumber(web)), math.tointeger(tonumber(other))
        assert.equal(("listening on 127.0.0.1:%d"):format(web), p:readline())
        run(function()
          assert.is_number(ask(web))
          -- nobody took "other": it is closed
          support.wait_until(function()
            return berth.connect("127.0.0.1", other, { timeout = 1 }) == nil
          end, 3, "the unused socket to close")
        end)
        support.stop_clean(p)
        assert.matches('inherited socket "other"', p:stderr())
      end)
  end

  it("listen{name=} without that socket fails with notfound", function()
    local out = support.run_host({ "-e", [[
      local s, code, name = require("berth").listen{name = "nope"}
      print(s, code, name)]] })
    assert.equal("nil\tnotfound\tnope\n", out)
  end)
end)

describe("binary upgrade (SIGUSR2)", function()
  before_each(support.before)
  after_each(support.after)

  for _, workers in ipairs { false, true } do
    it("hands the listener over with no failed connection"
       .. (workers and " (--workers 2)" or " (single process)"), function()
      local dir = support.tmpdir()
      local failfile = dir .. "/fail"
      local args = workers and { "--workers", "2" } or {}
      local p, port = support.start_host(FIXTURE, args, { env = { LB_FAIL = failfile } })
      local newpid
      run(function()
        local old = assert(ask(port))
        local st = load(port)
        berth.sleep(0.2)
        p:kill("USR2")
        support.wait_until(function()
          -- Tracked at once (the new process, or master, is the old one's
          -- child until that exits): a failing test still stops it.
          for _, pid in ipairs(support.children(p.pid)) do support.track(pid) end
          for pid in pairs(st.pids) do if pid ~= old then return true end end
        end, 20, "the new process to serve")
        berth.sleep(0.3)
        st.finish()
        assert.equal(0, st.failures, table.concat(st.errors, ", "))
        assert.is_true(st.requests > 10)
        for pid in pairs(st.pids) do if pid ~= old then newpid = pid end end
        support.track(newpid)
      end, 30)
      -- The old one retires by itself. (Not p:wait(): the new process
      -- holds the same stdout, so its end comes only after the new one's.)
      assert(support.wait_exit(p.pid, 15), "the old process did not retire\n" .. p:stderr())
      -- the new master (or process) that started the new worker
      local top = newpid
      if workers then
        top = math.tointeger(tonumber(support.read_file("/proc/" .. newpid .. "/stat")
          :match("^%d+ %b() %a (%d+)")))
        support.track(top)
      end
      -- a broken executable or script: the one serving keeps serving
      support.write_file(failfile, "")
      local serving = {} -- the processes serving now
      for _, pid in ipairs(workers and support.children(top) or { top }) do serving[pid] = true end
      run(function()
        support.kill(top, "USR2")
        berth.sleep(1.5)
        local st = load(port)
        berth.sleep(0.3)
        st.finish()
        assert.equal(0, st.failures, table.concat(st.errors, ", "))
        for pid in pairs(st.pids) do assert.is_true(serving[pid], "served by " .. pid) end
      end, 30)
      assert.matches("upgrade failed", p:stderr())
      support.kill(top, "TERM")
      assert(support.wait_exit(top, 15), "the new process did not stop")
      if workers then assert(support.wait_exit(newpid, 5), "a worker was left") end
      local _, how, code = p:wait()
      assert.same({ "exit", 0 }, { how, code }, p:stderr())
    end)
  end
end)

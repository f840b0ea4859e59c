-- The real load balancer test (issue 15; scripts/test --lb, not in the
-- default tier): Debian's haproxy on 127.0.0.1 in front of two berth hosts
-- running examples/http.lua with PROXY_PROTOCOL=1 (send-proxy-v2, health
-- checks on GET /health with check-send-proxy). During a steady stream of
-- GET /ip requests (bounded: at most MAX_REQUESTS, the whole test under
-- LIMIT seconds): a rolling reload of host 1 (--workers 2), a SIGUSR2
-- binary upgrade of host 2, and a graceful stop and restart of host 1.
-- Every request must succeed, and /ip must show the client's own address
-- (this test's side of the connection to haproxy), not haproxy's. Every
-- process is stopped by its PID (the upgraded host 2 by the PID it logs).
local support = require "support"
local berth = support.berth
local run = support.run

local MAX_REQUESTS = 4000
local LIMIT = 90      -- seconds for the whole test (each process's watchdog)
local CLIENTS = 4     -- concurrent request loops
local DRAIN = "1"     -- --drain-delay: > haproxy's inter * fall

local function haproxy_config(front, p1, p2)
  return ([[
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server send-proxy-v2 check-send-proxy check inter 100ms fall 1 rise 2
    server h1 127.0.0.1:%d
    server h2 127.0.0.1:%d
]]):format(front, p1, p2)
end

-- Starts examples/http.lua on `port` with PROXY_PROTOCOL=1.
local function start_host(port, args)
  local argv = { "--drain-delay", DRAIN }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = support.start_host("examples/http.lua", argv,
    { env = { PORT = tostring(port), PROXY_PROTOCOL = "1" }, limit = LIMIT })
  return p
end

-- Task only: GET /ip through haproxy; true, or false and what went wrong.
local function request(front)
  local c, err = berth.connect("127.0.0.1", front, { timeout = 3 })
  if not c then return false, "connect: " .. tostring(err) end
  local _, myport = c:localaddr()
  c:write("GET /ip HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
  local reply = support.read_to_end(c, 5)
  c:close()
  local status, body = reply:match("^HTTP/1%.1 (%d+) .-\r\n\r\n(.*)$")
  if status ~= "200" then return false, "reply: " .. reply:sub(1, 60) end
  if body ~= "127.0.0.1:" .. myport then
    return false, ("/ip said %s, the client is 127.0.0.1:%d"):format(body, myport)
  end
  return true
end

-- CLIENTS loops of requests until stop() or MAX_REQUESTS.
local function load(front)
  local st = { ok = 0, failed = 0, errors = {}, running = CLIENTS, stopping = false,
    t0 = berth.now() }
  local done = berth.cond()
  for _ = 1, CLIENTS do
    berth.spawn(function()
      while not st.stopping and st.ok + st.failed < MAX_REQUESTS do
        local ok, why = request(front)
        if ok then
          st.ok = st.ok + 1
        else
          st.failed = st.failed + 1
          if #st.errors < 10 then
            st.errors[#st.errors + 1] = ("%.3f s %s"):format(berth.now() - st.t0, why)
          end
        end
        berth.sleep(0.01)
      end
      st.running = st.running - 1
      done:signal()
    end)
  end
  function st.stop()
    st.stopping = true
    while st.running > 0 do done:wait() end
    return st
  end
  return st
end

-- Task only: waits (a bounded time) for `text` in the stderr of `p`.
local function wait_log(p, text, timeout)
  support.wait_until(function() return p:stderr():find(text, 1, true) end, timeout, text)
end

describe("behind HAProxy", function()
  before_each(support.before)
  after_each(support.after)

  it("reload, upgrade, stop and restart under a steady stream: 0 failed requests", function()
    local front, p1, p2 = support.free_port(), support.free_port(), support.free_port()
    local dir = support.tmpdir()
    local cfg = dir .. "/haproxy.cfg"
    support.write_file(cfg, haproxy_config(front, p1, p2))
    local h1 = start_host(p1, { "--workers", "2" })
    local h2 = start_host(p2)
    local hap = support.start({ "haproxy", "-db", "-f", cfg }, { limit = LIMIT })
    local h2new
    local phases = {}
    local st
    run(function()
      support.wait_until(function() return request(front) end, 10, "haproxy to serve")
      berth.sleep(0.5) -- both servers up (rise 2 x 100 ms)
      st = load(front)
      local function phase(name)
        phases[#phases + 1] = ("%s: %d ok, %d failed"):format(name, st.ok, st.failed)
      end
      local function mark(name) -- when each step starts, to place a failure
        phases[#phases + 1] = ("%s at %.3f s"):format(name, berth.now() - st.t0)
      end
      berth.sleep(1)
      phase("steady")
      -- 1. rolling reload of host 1
      mark("SIGHUP to host 1")
      h1:kill("HUP")
      wait_log(h1, "rolling reload done", 20)
      berth.sleep(1)
      phase("after the rolling reload of host 1")
      -- 2. binary upgrade of host 2
      mark("SIGUSR2 to host 2")
      h2:kill("USR2")
      support.wait_until(function()
        -- its child until it retires: tracked at once, so a failure still stops it
        for _, pid in ipairs(support.children(h2.pid)) do support.track(pid) end
        return h2:stderr():find("is ready and serving", 1, true)
      end, 20, "host 2's new process")
      h2new = math.tointeger(tonumber(h2:stderr():match("SIGUSR2: process (%d+) is ready")))
      support.track(h2new)
      assert(support.wait_exit(h2.pid, 20), "host 2's old process did not retire")
      berth.sleep(1)
      phase("after the binary upgrade of host 2")
      -- 3. graceful stop and restart of host 1
      mark("SIGTERM to host 1")
      h1:kill("TERM")
      assert(support.wait_exit(h1.pid, 20), "host 1 did not stop")
      mark("host 1 stopped")
      h1 = start_host(p1, { "--workers", "2" })
      mark("host 1 restarted")
      berth.sleep(1.5) -- haproxy sees it up again (rise 2)
      phase("after the stop and restart of host 1")
      st.stop()
    end, LIMIT)
    print(("\n[lb] haproxy 2.6 + 2 berth hosts: %d requests, %d failed (%s)"):format(
      st.ok + st.failed, st.failed, table.concat(phases, "; ")))
    -- Stop everything by PID before asserting.
    support.kill(h2new, "TERM")
    support.stop_clean(h1)
    hap:kill("TERM")
    hap:wait()
    assert(support.wait_exit(h2new, 15), "host 2's new process did not stop")
    h2:wait()
    assert.equal(0, st.failed, table.concat(st.errors, "\n"))
    assert.is_true(st.ok > 200, "too few requests: " .. st.ok)
  end)
end)

-- scripts/bench-workers' driver (lua5.4 with the build tree on its path):
-- measures issue 16's figures and prints them as markdown tables.
--   1. shared-dictionary incr/s from 1 and from 2 workers
--      (workers_server.lua under `berth --workers 2`), against Redis INCR
--      (redis-benchmark, 2 clients, unpipelined and -P 16);
--   2. bus messages/s from one worker to another, flow-controlled so that
--      nothing is dropped, against Redis pub/sub (redis_pubsub.c);
--   3. the event loop while /metrics of 10,000 series is scraped
--      continuously (spec/fixtures/metrics_10k.lua): iterations over 1 ms
--      and the longest, by the loop thread's CPU and by the wall clock.
-- Every process it starts is stopped by its PID.
--   lua5.4 workers_bench.lua [--quick] BUILD_DIR
local berth = require "berth"

local quick = arg[1] == "--quick"
local build = arg[quick and 2 or 1] or "build"
local N_INCR = quick and 200000 or 1000000
local N_BUS = quick and 50000 or 300000
-- Messages in flight, publisher to subscriber: within half the default
-- 1 MiB mailbox (a record is the message, its topic, 48 bytes of headers;
-- the server's flow control adds up to 200).
local function window(size) return math.min(5000, (1 << 20) // (size + 56) // 2) end

local function log(fmt, ...)
  io.stderr:write("bench-workers: ", fmt:format(...), "\n")
end

local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Start `cmd` (shell words) with PORT=0; its PID and (unless no_line)
-- the first line of its stdout.
local function start(cmd, no_line)
  local errf = os.tmpname()
  local h = assert(io.popen(("PORT=0 sh -c 'echo $$; exec \"$@\"' sh %s 2>%s")
    :format(cmd, shquote(errf))))
  local pid = tonumber(h:read("l"))
  local line = not no_line and h:read("l") or nil
  return { pid = pid, handle = h, line = line, err = errf }
end

local function stop(p)
  os.execute(("kill -TERM %d 2>/dev/null"):format(p.pid))
  p.handle:read("a")
  p.handle:close()
  os.remove(p.err)
end

local function port_of(line)
  return tonumber((line or ""):match(":(%d+)$"))
end

-- Task only: a line round trip.
local function ask(sock, line, timeout)
  assert(sock:write(line, "\n"))
  return assert(sock:read("l", timeout or 120))
end

local function clock()
  berth.sleep(0) -- a fresh loop time
  return berth.now()
end

-- Task only: a connection to each worker (1 and 2), by asking "who".
local function per_worker(port)
  local socks = {}
  for _ = 1, 200 do
    local sock = assert(berth.connect("127.0.0.1", port, { timeout = 2 }))
    local w = tonumber(ask(sock, "who"))
    if socks[w] then sock:close() else socks[w] = sock end
    if socks[1] and socks[2] then return socks end
  end
  error("could not reach both workers")
end

local results = {}

-- 1 and 2: the dictionary and the bus.
local function bench_berth()
  local p = start(("%s/berth --workers 2 scripts/benchsrc/workers_server.lua"):format(build))
  local port = assert(port_of(p.line), "no listening line from berth --workers 2")
  berth.spawn(function()
    local s = per_worker(port)
    local t0 = clock()
    ask(s[1], "incr one " .. N_INCR)
    results.incr1 = N_INCR / (clock() - t0)
    local done = 0
    t0 = clock()
    for w = 1, 2 do
      berth.spawn(function()
        ask(s[w], "incr two " .. N_INCR)
        done = done + 1
      end)
    end
    while done < 2 do berth.sleep(0.001) end
    results.incr2 = 2 * N_INCR / (clock() - t0)
    for _, size in ipairs { 64, 1024 } do
      local topic = "t" .. size
      ask(s[2], "sub " .. topic)
      t0 = clock()
      ask(s[1], ("pub %s %d %d %d"):format(topic, N_BUS, window(size), size))
      while tonumber(ask(s[2], "count " .. topic)) < N_BUS do berth.sleep(0.002) end
      results["bus" .. size] = N_BUS / (clock() - t0)
    end
    s[1]:close()
    s[2]:close()
  end)
  berth.run()
  stop(p)
end

-- A free TCP port on 127.0.0.1 (bound and released).
local function free_port()
  local server = assert(berth.listen { host = "127.0.0.1", port = 0 })
  local port = server:port()
  server:close()
  return port
end

local function run_capture(cmd)
  local h = assert(io.popen(cmd .. " 2>&1"))
  local out = h:read("a")
  h:close()
  return out
end

-- 1 and 2 for Redis.
local function bench_redis()
  local port = free_port()
  local p = start(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
    .. "--dir /tmp --loglevel warning"):format(port), true)
  berth.spawn(function() -- until it answers
    for _ = 1, 100 do
      local sock = berth.connect("127.0.0.1", port, { timeout = 1 })
      if sock then sock:close() return end
      berth.sleep(0.05)
    end
    error("redis-server did not start")
  end)
  berth.run()
  for _, depth in ipairs { 1, 16 } do
    local out = run_capture(("redis-benchmark -h 127.0.0.1 -p %d -t incr -c 2 -n %d -P %d -q")
      :format(port, N_INCR, depth))
    results["redis_incr_p" .. depth] = tonumber(out:match("INCR: ([%d%.]+) requests per second"))
  end
  for _, size in ipairs { 64, 1024 } do
    local out = run_capture(("%s/bench/redis_pubsub %d %d %d %d")
      :format(build, port, N_BUS, size, window(size)))
    results["redis_pubsub" .. size] = tonumber(out:match(": ([%d%.]+) msg/s"))
  end
  -- One PUBLISH per round trip: what a handler that publishes and waits
  -- for the reply gets.
  local out = run_capture(("%s/bench/redis_pubsub %d %d 64 1"):format(build, port, N_BUS // 10))
  results.redis_pubsub_rt = tonumber(out:match(": ([%d%.]+) msg/s"))
  stop(p)
end

-- 3: the loop while scraping.
local function bench_scrape()
  local p = start(("%s/berth spec/fixtures/metrics_10k.lua"):format(build))
  local port = assert(port_of(p.line), "no listening line from metrics_10k.lua")
  berth.spawn(function()
    local ctl = assert(berth.connect("127.0.0.1", port))
    local mport = tonumber(ask(ctl, "mport"))
    local inplace, size = ask(ctl, "inplace"):match("^(%S+) (%d+)$")
    results.inplace, results.text = tonumber(inplace), tonumber(size)
    results.idle = ask(ctl, "probe 2")
    local stopping, scrapes = false, 0
    berth.spawn(function()
      local sock = assert(berth.connect("127.0.0.1", mport))
      while not stopping do
        assert(sock:write("GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n"))
        assert(sock:read("l", 10))
        local length
        repeat
          local h = assert(sock:read("l", 10))
          length = length or tonumber(h:match("^Content%-Length: (%d+)$"))
        until h == ""
        assert(sock:read(length, 10))
        scrapes = scrapes + 1
      end
      sock:close()
    end)
    local t0 = clock()
    results.during = ask(ctl, "probe 3")
    results.scrapes = scrapes / (clock() - t0)
    stopping = true
    berth.sleep(0.5)
    ctl:close()
  end)
  berth.run()
  stop(p)
end

log("shared dictionary and bus, berth --workers 2")
bench_berth()
log("Redis: INCR and pub/sub")
bench_redis()
log("the event loop while /metrics of 10,000 series is scraped")
bench_scrape()

local function k(v) return v and ("%.0f"):format(v) or "n/a" end
local function ratio(a, b) return (a and b) and ("%.2f"):format(a / b) or "n/a" end
local function probe(line)
  local t = {}
  for w in (line or ""):gmatch("%S+") do t[#t + 1] = tonumber(w) end
  return t
end

print("#### Workers that cooperate (issue 16), berth --workers 2")
print()
print(("%d CPUs, load average %s at start%s."):format(
  tonumber(run_capture("nproc")), run_capture("cut -d' ' -f1-3 /proc/loadavg"):gsub("\n", ""),
  quick and "; --quick (small counts)" or ""))
print()
print("| measure | berth | Redis (redis-server, a C client) | berth / Redis |")
print("| --- | --- | --- | --- |")
print(("| shared dict `incr`/s, 1 worker | %s | | |"):format(k(results.incr1)))
print(("| shared dict `incr`/s, 2 workers at once (Redis: INCR, 2 clients) | %s | %s | %s |")
  :format(k(results.incr2), k(results.redis_incr_p1), ratio(results.incr2, results.redis_incr_p1)))
print(("| (Redis INCR, 2 clients, pipelined -P 16) | | %s | %s |")
  :format(k(results.redis_incr_p16), ratio(results.incr2, results.redis_incr_p16)))
for _, size in ipairs { 64, 1024 } do
  print(("| bus messages/s, worker 1 to worker 2, %d B, none dropped (Redis pub/sub, "
    .. "pipelined, %d in flight) | %s | %s | %s |")
    :format(size, window(size), k(results["bus" .. size]), k(results["redis_pubsub" .. size]),
      ratio(results["bus" .. size], results["redis_pubsub" .. size])))
end
print(("| (Redis pub/sub, 64 B, one PUBLISH per round trip: a handler that waits for the "
  .. "reply; berth's publish never waits) | %s | %s | %s |")
  :format(k(results.bus64), k(results.redis_pubsub_rt), ratio(results.bus64, results.redis_pubsub_rt)))
print()
local i, d = probe(results.idle), probe(results.during)
print("| event loop, 10,000 series | idle | scraped continuously |")
print("| --- | --- | --- |")
print(("| scrapes/s (%d KB of text each; formatted on the loop it would block %.1f ms) | 0 | %.1f |")
  :format((results.text or 0) // 1000, (results.inplace or 0) * 1000, results.scrapes or 0))
print(("| loop iterations measured | %s | %s |"):format(i[1] or "?", d[1] or "?"))
print(("| iterations over 1 ms of loop CPU | %s | %s |"):format(i[6] or "?", d[6] or "?"))
print(("| longest iteration, loop CPU | %.2f ms | %.2f ms |")
  :format((i[5] or 0) / 1000, (d[5] or 0) / 1000))
print(("| iterations over 1 ms by the wall clock (preemption included) | %s | %s |")
  :format(i[3] or "?", d[3] or "?"))
print(("| longest iteration, wall clock | %.2f ms | %.2f ms |")
  :format((i[2] or 0) / 1000, (d[2] or 0) / 1000))

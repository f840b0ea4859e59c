-- berth.metrics in one process (across workers: spec/workers_shared_spec):
-- counters, gauges and histograms with labels, their exposition (parsed
-- by a strict parser written for the specs, and by promtool when it is
-- installed), the built-in metrics, GET /metrics over HTTP/1.1 (keep-alive,
-- HEAD, 404, 405, 400), misuse; and a scrape of 10,000 series that keeps
-- the loop's iterations short (the text is made on a thread and sent a
-- slice per loop turn).
local support = require "support"
local prom = require "support.prom"
local berth = support.berth
local run = support.run

-- Task only: send `request` on `sock`, read one response: status line,
-- headers (lower-case names), body.
local function http(sock, request)
  assert(sock:write(request))
  local status = sock:read("l", 5)
  if not status then return nil end
  local headers = {}
  while true do
    local h = assert(sock:read("l", 5))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  local n = tonumber(headers["content-length"])
  local body = ""
  if n and n > 0 and not request:match("^HEAD") then body = assert(sock:read(n, 5)) end
  return status, headers, body
end

local GET = "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"

describe("berth.metrics", function()
  before_each(support.before)
  after_each(support.after)

  it("counters, gauges and histograms, with labels, in the exposition format", function()
    local text
    run(function()
      local c = berth.metrics.counter("spec_requests_total", "Requests.", { "method", "code" })
      c:inc(1, { "GET", 200 })
      c:inc(2, { "GET", "200" }) -- the same series: values are strings
      c:labels("POST", "500"):inc()
      local g = berth.metrics.gauge("spec_depth", 'A gauge with "quotes" and \\ in its help.')
      g:set(7)
      g:dec(2)
      g:inc()
      local h = berth.metrics.histogram("spec_seconds", "Latency.", nil, { 0.1, 1 })
      for _, v in ipairs { 0.05, 0.1, 0.5, 2 } do h:observe(v) end
      local odd = berth.metrics.counter("spec_odd_total", "Label values to escape.", { "v" })
      odd:inc(1, { 'a "b" \\ c\nd}' })
      text = berth.metrics.text()
    end)
    local fams = prom.parse(text)
    assert.equal(3, prom.value(fams, 'spec_requests_total{code="200",method="GET"}'))
    assert.equal(1, prom.value(fams, 'spec_requests_total{code="500",method="POST"}'))
    assert.equal("counter", fams.spec_requests_total.type)
    assert.equal(6, prom.value(fams, "spec_depth{}"))
    assert.equal("gauge", fams.spec_depth.type)
    assert.equal(2, prom.value(fams, 'spec_seconds_bucket{le="0.1"}'))
    assert.equal(3, prom.value(fams, 'spec_seconds_bucket{le="1"}'))
    assert.equal(4, prom.value(fams, 'spec_seconds_bucket{le="+Inf"}'))
    assert.equal(4, prom.value(fams, "spec_seconds_count{}"))
    assert.near(2.65, prom.value(fams, "spec_seconds_sum{}"), 1e-9)
    assert.equal(1, prom.value(fams, ("spec_odd_total{v=%q}"):format('a "b" \\ c\nd}')))
    local good, complaint = prom.promtool(text)
    if good ~= nil then assert(good, complaint) end
  end)

  it("the built-in metrics follow the process", function()
    local before, after
    run(function()
      berth.metrics.counter("spec_builtin_total", "Starts the built-in metrics.")
      berth.sleep(0.15) -- one sample (every 0.1 s)
      before = prom.parse((berth.metrics.text()))
      local server = support.serve(function(sock) sock:write(sock:read("l"), "\n") end)
      for _ = 1, 3 do
        local sock = support.connect(server)
        assert.equal("ping", support.roundtrip(sock, "ping"))
        sock:close()
      end
      server:close()
      berth.sleep(0.25) -- the next samples: the time under test
      after = prom.parse((berth.metrics.text()))
    end)
    local function grew(name, by)
      local a, b = prom.value(before, name .. "{}"), prom.value(after, name .. "{}")
      assert(a and b and b - a >= by, ("%s: %s -> %s"):format(name, tostring(a), tostring(b)))
    end
    grew("berth_connections_total", 3)
    grew("berth_bytes_received_total", 15)
    grew("berth_bytes_sent_total", 15)
    assert.is_true(prom.sum(after, "berth_event_loop_lag_seconds") >= 2)
    assert.is_true(prom.value(after, "berth_lua_memory_bytes{}") > 100000)
    for _, name in ipairs { "berth_connections_active", "berth_tasks",
      "berth_connections_rejected_total", "berth_handler_errors_total", "berth_reloads_total",
      "berth_reload_failures_total", "berth_bus_messages_dropped_total" } do
      assert(prom.value(after, name .. "{}"), name)
    end
  end)

  it("serve: GET /metrics with keep-alive, HEAD, 404, 405, 400", function()
    run(function()
      local server = assert(berth.metrics.serve { host = "127.0.0.1", port = 0 })
      local sock = support.connect(server)
      local status, headers, body = http(sock, GET)
      assert.equal("HTTP/1.1 200 OK", status)
      assert.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
      assert.is_nil(headers.connection)
      assert.truthy(body:find("# TYPE berth_connections_total counter", 1, true))
      prom.parse(body)
      status, headers, body = http(sock, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
      assert.equal("HTTP/1.1 200 OK", status)
      assert.is_true(tonumber(headers["content-length"]) > 0)
      assert.equal("", body)
      status = http(sock, "GET /other?x=1 HTTP/1.1\r\nHost: t\r\n\r\n")
      assert.equal("HTTP/1.1 404 Not Found", status)
      status = http(sock, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
      assert.equal("HTTP/1.1 405 Method Not Allowed", status)
      status, headers = http(sock, "GET /metrics?name=x HTTP/1.0\r\n\r\n")
      assert.equal("HTTP/1.1 200 OK", status)
      assert.equal("close", headers.connection)
      support.assert_fail("closed", nil, sock:read("l", 2))
      sock:close()
      local bad = support.connect(server)
      assert.equal("HTTP/1.1 400 Bad Request", (http(bad, "hello\r\n\r\n")))
      support.assert_fail("closed", nil, bad:read("l", 2))
      bad:close()
      server:close()
    end)
  end)

  it("raises for misuse", function()
    local c = berth.metrics.counter("spec_misuse_total", "x", { "a" })
    support.assert_raises("only goes up", c.inc, c, -1, { "x" })
    support.assert_raises("2 label value(s) for 1 label", function() c:inc(1, { "x", "y" }) end)
    support.assert_raises("is already a counter", berth.metrics.gauge, "spec_misuse_total", "x")
    support.assert_raises("invalid name", berth.metrics.counter, "bad name", "x")
    support.assert_raises("uri must be a path", berth.metrics.serve, { port = 0, uri = "metrics" })
    support.assert_raises('unknown option "prot"', berth.metrics.serve, { prot = 0 })
    local g = berth.metrics.gauge("spec_misuse_g", "x")
    support.assert_raises("observe: not a histogram", function()
      require("berth.core").metrics.observe(g:series(nil, 1), 1)
    end)
  end)

  it("a scrape of 10,000 series keeps the loop's iterations short: formatted on a thread, "
    .. "sent a slice per loop turn", function()
    local proc, port = support.start_host("spec/fixtures/metrics_10k.lua")
    local idle, during, inplace, scrapes, size
    run(function()
      local ctl = support.connect(port)
      local mport = tonumber(support.roundtrip(ctl, "mport"))
      inplace = tonumber(support.roundtrip(ctl, "inplace", 5):match("^(%S+)"))
      idle = support.roundtrip(ctl, "probe 1", 5)
      local stop = false
      scrapes = 0
      berth.spawn(function()
        local sock = support.connect(mport)
        while not stop do
          local status, _, body = http(sock, GET)
          assert.equal("HTTP/1.1 200 OK", status)
          scrapes, size = scrapes + 1, #body
        end
        sock:close()
      end)
      during = support.roundtrip(ctl, "probe 2", 10)
      stop = true
      support.wait_until(function() return size end, 5, "a scrape")
      ctl:close()
    end, 20)
    support.stop_clean(proc)
    local function fields(line)
      local t = {}
      for w in line:gmatch("%S+") do t[#t + 1] = tonumber(w) end
      return t
    end
    local i, d = fields(idle), fields(during)
    -- n, longest wall, wall > 1 ms, wall > 250 us, longest cpu, cpu > 1 ms, cpu > 250 us
    print(("\n[metrics, 10,000 series] one scrape formatted on the loop would block it %.1f ms "
      .. "(%d KB of text); during %d scrapes in 2 s the loop ran %d iterations: %d took over "
      .. "1 ms of its CPU (longest %.2f ms; idle: %d over 1 ms, longest %.2f ms); by the wall "
      .. "clock, preemption included, %d over 1 ms (longest %.1f ms)")
      :format(inplace * 1000, size // 1000, scrapes, d[1], d[6], d[5] / 1000, i[6], i[5] / 1000,
        d[3], d[2] / 1000))
    assert.is_true(scrapes >= 5, "scrapes")
    assert.is_true(inplace > 0.002, "formatting 10,000 series is not cheap enough to do inline")
    -- Made on the loop, each scrape would cost one iteration as long as
    -- the formatting; made on a thread and sent in slices, no iteration
    -- comes near that, and most scrapes cost none over 1 ms (the few that
    -- do are the noise of a shared machine: idle has some too).
    assert.is_true(d[5] < inplace * 1e6 / 2,
      ("the longest iteration took %.2f ms of loop CPU"):format(d[5] / 1000))
    -- (Under scripts/sanitize every copy is instrumented: the count is
    -- only reported there.)
    if not (os.getenv("LD_PRELOAD") or ""):find("asan") then
      assert.is_true(d[6] < scrapes, ("%d iterations over 1 ms for %d scrapes"):format(d[6], scrapes))
    end
  end)
end)

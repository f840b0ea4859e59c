-- Stress tier (scripts/test --stress, which sets BERTH_STRESS=1): 10,000
-- idle connections to examples/echo.lua. Measures the server's RSS per
-- connection (target: at most 4 KiB) and a probe connection's round trips
-- while they are all open (target: p99 under 10 ms).
--
-- The server runs in the host and the 10,000 clients in a second child
-- (spec/fixtures/hardening_idle_clients.lua), each under a raised
-- `ulimit -n`; only the probe runs in this process.
if os.getenv("BERTH_STRESS") ~= "1" then return end

local support = require "support"
local measure = require "support.measure"
local run, clock, report = support.run, support.clock, measure.report
local KiB, MiB = measure.KiB, measure.MiB

local N = 10000
local NOFILE = N + 1000

-- Polls (outside the loop, every 0.1 s: listing 10,000 descriptors is not
-- free) until pred() or `timeout` seconds; whether pred() came true.
local function poll(pred, timeout)
  return (pcall(support.wait_until, pred, timeout, nil, 0.1))
end

describe("stress: 10,000 idle connections", function()
  before_each(support.before)
  after_each(support.after)

  it("cost at most 4 KiB of server RSS each and keep a probe's p99 under 10 ms", function()
    local proc, port = support.start_host("examples/echo.lua", { "--idle-timeout", "0" },
      { nofile = NOFILE, limit = 180 })
    local idle_fds = support.fds(proc.pid)
    -- Warm up: whatever the server allocates once is allocated now.
    run(function()
      for i = 1, 100 do
        local sock <close> = support.connect(port)
        assert.equal("warm " .. i, support.roundtrip(sock, "warm " .. i))
      end
    end, 10)
    support.wait_until(function() return support.fds(proc.pid) <= idle_fds end, 2,
      "the server to close the warm-up connections")
    local base_rss, base_fds = support.rss(proc.pid), support.fds(proc.pid)

    local started = clock()
    local clients = support.start({ "sh", "-c", ("ulimit -n %d && exec \"$@\""):format(NOFILE), "sh",
      support.lua_binary(), "spec/fixtures/hardening_idle_clients.lua",
      tostring(port), tostring(N) }, { env = support.lua_env(), limit = 150 })
    local line = clients:readline() -- bounded by the child's watchdog
    local opened = clock() - started
    assert.equal("open " .. N, line, "the client process failed: " .. clients:stderr())
    local fds
    assert.is_true(poll(function()
      fds = support.fds(proc.pid)
      return fds >= base_fds + N
    end, 10), ("the server holds %d descriptors, %d before"):format(fds, base_fds))
    local rss = support.rss(proc.pid)
    local per = (rss - base_rss) / N

    local samples = {}
    run(function()
      local probe <close> = support.connect(port)
      for i = 1, 2000 do
        local t0 = clock()
        assert.equal("probe " .. i, support.roundtrip(probe, "probe " .. i))
        samples[i] = clock() - t0
      end
    end, 30)
    local p50, p99 = measure.percentile(samples, 0.5), measure.percentile(samples, 0.99)
    report("10k idle: opened in %.2f s; server RSS %.1f MiB -> %.1f MiB, %.2f KiB per connection "
      .. "(target 4); server fds %d -> %d", opened, base_rss / MiB, rss / MiB, per / KiB,
      base_fds, fds)
    report("10k idle: probe %d round trips, p50 %.3f ms, p99 %.3f ms, max %.3f ms (target p99 < 10)",
      #samples, p50 * 1000, p99 * 1000, measure.percentile(samples, 1) * 1000)

    -- Closing all of them gives every descriptor back.
    clients:close()
    local ok = poll(function()
      fds = support.fds(proc.pid)
      return fds <= base_fds
    end, 20)
    report("10k idle: after the clients went away the server holds %d descriptors (%d before)",
      fds, base_fds)
    assert.is_true(support.alive(proc.pid), proc:describe())
    support.stop_clean(proc)

    assert.is_true(per <= 4 * KiB, ("%.2f KiB of RSS per idle connection"):format(per / KiB))
    assert.is_true(p99 < 0.010, ("probe p99 %.3f ms"):format(p99 * 1000))
    assert.is_true(ok, ("descriptor leak: %d open, %d before"):format(fds, base_fds))
  end)
end)

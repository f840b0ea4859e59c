--- Metrics a monitoring system can scrape: `berth.metrics`.
--
--     local reqs = berth.metrics.counter("app_requests_total", "Requests.", {"code"})
--     reqs:inc(1, {"200"})                 -- or reqs:labels("200"):inc()
--     local depth = berth.metrics.gauge("app_queue_depth", "Jobs waiting.")
--     depth:set(#queue)
--     local t = berth.metrics.histogram("app_seconds", "Latency.", nil, {0.01, 0.1, 1})
--     t:observe(elapsed)
--     berth.metrics.serve{port = 9100}     -- GET /metrics
--
-- Each worker counts in its own cells of the shared region, without a
-- lock; a scrape sums the cells of every worker (and of the workers that
-- are gone: a counter never goes down across a rolling reload or a
-- crash), so one scrape of any worker covers them all. Gauges are per
-- worker, and scraped as their sum over the live ones. The text is made
-- on a thread while the scraping task waits: the loop is never blocked by
-- it (see src/metrics.c).
--
-- Built in, once berth.metrics is used: berth_connections_active,
-- berth_connections_total, berth_connections_rejected_total,
-- berth_bytes_received_total, berth_bytes_sent_total, berth_tasks,
-- berth_handler_errors_total, berth_reloads_total,
-- berth_reload_failures_total, berth_event_loop_lag_seconds (histogram),
-- berth_lua_memory_bytes, berth_bus_messages_{sent,received,dropped}_total
-- and berth_tls_handshakes_total (when berth has TLS); sampled every 0.1 s.
-- @module berth.metrics
local metrics = {}

local INTERVAL = 0.1 -- seconds between samples of the built-in metrics
local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local LAG_BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }
local MAX_HEADERS = 100
local SLICE = 64 * 1024    -- bytes of a scrape's text sent per loop turn
local REQUEST_TIMEOUT = 10 -- seconds for a request's head
local IDLE_TIMEOUT = 60    -- seconds a kept-alive scraper may idle

---------------------------------------------------------------------------
-- Families and series
---------------------------------------------------------------------------

local Family = {}
Family.__index = Family

local Counter = setmetatable({}, { __index = Family })
Counter.__index = Counter
local Gauge = setmetatable({}, { __index = Family })
Gauge.__index = Gauge
local Histogram = setmetatable({}, { __index = Family })
Histogram.__index = Histogram
local classes = { counter = Counter, gauge = Gauge, histogram = Histogram }

-- The series index for label `values` (nil: the family has no labels).
function Family:series(values, level)
  if values == nil then
    if self.s0 then return self.s0 end
    values = {}
  end
  if type(values) ~= "table" then
    error(("%s: label values must be a list (got %s)"):format(self.name, type(values)), level + 1)
  end
  local key = table.concat(values, "\0")
  local s = self.cache[key]
  if s then return s end
  if #values ~= #self.names then
    error(("%s: %d label value(s) for %d label(s)"):format(self.name, #values, #self.names),
      level + 1)
  end
  local strs = {}
  for i, v in ipairs(values) do strs[i] = tostring(v) end
  s = self.cm.register(self.type, self.name, self.help, self.names, strs, self.buckets)
  self.cache[key] = s
  if #values == 0 then self.s0 = s end
  return s
end

--- A child bound to one set of label values: the same methods, no
-- `values` argument, no lookup.
function Family:labels(...)
  local values = { ... }
  local child = { family = self, s = self:series(values, 2) }
  return setmetatable(child, self.child)
end

--- Counter: add `n` (default 1, never negative).
function Counter:inc(n, values)
  self.cm.add(self:series(values, 2), n or 1)
end

--- Gauge: set to `v`.
function Gauge:set(v, values)
  self.cm.set(self:series(values, 2), v)
end

--- Gauge: add `n` (default 1).
function Gauge:inc(n, values)
  self.cm.add(self:series(values, 2), n or 1)
end

--- Gauge: subtract `n` (default 1).
function Gauge:dec(n, values)
  self.cm.add(self:series(values, 2), -(n or 1))
end

--- Histogram: count `v` in its bucket.
function Histogram:observe(v, values)
  self.cm.observe(self:series(values, 2), v)
end

local function child_class()
  local c = {}
  c.__index = c
  return c
end
Counter.child = child_class()
function Counter.child:inc(n) self.family.cm.add(self.s, n or 1) end
Gauge.child = child_class()
function Gauge.child:set(v) self.family.cm.set(self.s, v) end
function Gauge.child:inc(n) self.family.cm.add(self.s, n or 1) end
function Gauge.child:dec(n) self.family.cm.add(self.s, -(n or 1)) end
Histogram.child = child_class()
function Histogram.child:observe(v) self.family.cm.observe(self.s, v) end

-- name -> family, per core metrics table: asking twice gives the same.
local families = setmetatable({}, { __mode = "k" })

--- A family of core table `c` (no built-ins started): what the master
-- uses for its own counters.
function metrics.family(c, kind, name, help, labels, buckets, level)
  level = (level or 1) + 1
  local known = families[c.metrics] or {}
  families[c.metrics] = known
  local f = known[name]
  if f then
    if f.type ~= kind then
      error(("metrics: %s is already a %s"):format(name, f.type), level)
    end
    return f
  end
  if type(name) ~= "string" then error("metrics: name must be a string", level) end
  if help ~= nil and type(help) ~= "string" then error("metrics: help must be a string", level) end
  if labels ~= nil and type(labels) ~= "table" then
    error("metrics: labels must be a list of label names", level)
  end
  if kind == "histogram" then buckets = buckets or DEFAULT_BUCKETS else buckets = nil end
  f = setmetatable({ cm = c.metrics, type = kind, name = name, help = help or "",
    names = labels or {}, buckets = buckets, cache = {} }, classes[kind])
  if #f.names == 0 then f:series(nil, level) end -- shown as 0 from the start
  known[name] = f
  return f
end

---------------------------------------------------------------------------
-- The built-in metrics
---------------------------------------------------------------------------

local BUILTIN_COUNTERS = {
  -- family, help, berth.stats() field
  { "berth_connections_total", "Connections accepted.", "accepted" },
  { "berth_connections_rejected_total", "Connections refused over max_connections.", "rejected" },
  { "berth_bytes_received_total", "Bytes read from sockets.", "bytes_in" },
  { "berth_bytes_sent_total", "Bytes written to sockets.", "bytes_out" },
  { "berth_handler_errors_total", "Errors raised in handlers, tasks and callbacks.", "errors" },
  { "berth_reloads_total", "Code reloads (modules, or rolling reloads of the workers).", "reloads" },
  { "berth_reload_failures_total", "Reloads that failed (the old code kept serving).",
    "reload_failures" },
  { "berth_tls_handshakes_total", "TLS handshakes completed.", "tls_handshakes" },
}
local BUS_COUNTERS = {
  { "berth_bus_messages_sent_total", "Bus messages queued for a worker.", "sent" },
  { "berth_bus_messages_received_total", "Bus messages taken from this worker's mailbox.",
    "received" },
  { "berth_bus_messages_dropped_total", "Bus messages for this worker dropped: its mailbox was full.",
    "dropped" },
}

--- Help lines of the built-in families, by name (the master registers
-- some of them too, with the same help).
metrics.HELP = {}
for _, d in ipairs(BUILTIN_COUNTERS) do metrics.HELP[d[1]] = d[2] end

-- Add to counter f what stats[field] grew by since last time.
local function advance(f, last, stats, field)
  local v = stats and stats[field]
  if type(v) ~= "number" then return end
  local d = v - (last[field] or 0)
  if d > 0 then
    f:inc(d)
    last[field] = v
  end
end

-- Start sampling for binding `api` of core table `c` (once; again after
-- stop(), counting on from where it was).
local function start_builtins(c, api, state)
  if state.started then return end
  state.started = true
  local fam = function(kind, name, help, buckets)
    return metrics.family(c, kind, name, help, nil, buckets)
  end
  local active = fam("gauge", "berth_connections_active", "Connections open now.")
  local tasks = fam("gauge", "berth_tasks", "Tasks alive now.")
  local memory = fam("gauge", "berth_lua_memory_bytes", "Memory of the Lua state.")
  local lag = fam("histogram", "berth_event_loop_lag_seconds",
    "How late the event loop ran a timer: the time it was busy.", LAG_BUCKETS)
  local counters, bus_counters = {}, {}
  state.last, state.bus_last = state.last or {}, state.bus_last or {}
  local last, bus_last = state.last, state.bus_last
  for i, d in ipairs(BUILTIN_COUNTERS) do counters[i] = fam("counter", d[1], d[2]) end
  for i, d in ipairs(BUS_COUNTERS) do bus_counters[i] = fam("counter", d[1], d[2]) end
  c.metrics.start(INTERVAL, lag:series(nil, 1), function()
    local s = api.stats()
    active:set(s.connections or 0)
    tasks:set(s.tasks or 0)
    memory:set(collectgarbage("count") * 1024)
    for i, d in ipairs(BUILTIN_COUNTERS) do advance(counters[i], last, s, d[3]) end
    local b = c.bus.stats()
    for i, d in ipairs(BUS_COUNTERS) do advance(bus_counters[i], bus_last, b, d[3]) end
  end)
end

---------------------------------------------------------------------------
-- GET /metrics
---------------------------------------------------------------------------

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
  [405] = "Method Not Allowed", [500] = "Internal Server Error" }

local function head(status, length, close, ctype)
  return ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n")
    :format(status, REASONS[status], ctype or "text/plain; charset=utf-8", length,
      close and "Connection: close\r\n" or "")
end

local function respond(sock, status, body, close, head_only)
  return sock:write(head(status, #body, close), head_only and "" or body)
end

-- Send a scrape's text (a MetricsText) one slice per loop turn, so that
-- no iteration copies more than SLICE bytes of it.
local function send_text(c, sock, text, close, head_only)
  local n = #text
  local ok, err = sock:write(head(200, n, close, "text/plain; version=0.0.4; charset=utf-8"))
  for i = 1, head_only and 0 or n, SLICE do
    if not ok then break end
    c.sleep(0)
    ok, err = sock:write(text:sub(i, i + SLICE - 1))
  end
  text:free()
  return ok, err
end

-- The head of one request: method, target, version, close, body length;
-- or nil (the connection ends: closed, timeout, or a bad request, which
-- was answered).
local function read_head(sock, timeout)
  local line = sock:read("l", timeout)
  if not line then return nil end
  local method, target, major, minor = line:match("^(%u+) (%S+) HTTP/(%d)%.(%d)$")
  if not method then
    respond(sock, 400, "bad request line\n", true)
    return nil
  end
  local close = major == "1" and minor == "0"
  local length = 0
  for _ = 1, MAX_HEADERS + 1 do
    local h = sock:read("l", REQUEST_TIMEOUT)
    if not h then return nil end
    if h == "" then return method, target, close, length end
    local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then break end
    name, value = name:lower(), value:lower()
    if name == "connection" then
      close = value == "close" or (close and value ~= "keep-alive")
    elseif name == "content-length" then
      length = math.tointeger(tonumber(value))
      if not length or length < 0 or length > 65536 then break end
    elseif name == "transfer-encoding" then
      break -- a scrape has no body; a chunked one is not worth reading
    end
  end
  respond(sock, 400, "bad request header\n", true)
  return nil
end

-- Serve scrapes on one connection (kept alive as the scraper asks).
local function scrape_handler(c, uri)
  return function(sock)
    local timeout = IDLE_TIMEOUT
    while true do
      local method, target, close, length = read_head(sock, timeout)
      if not method then return end
      timeout = IDLE_TIMEOUT
      if length > 0 and not sock:read(length, REQUEST_TIMEOUT) then return end
      local path = target:match("^[^?]*")
      local head_only = method == "HEAD"
      if method ~= "GET" and not head_only then
        respond(sock, 405, "only GET\n", close)
      elseif path ~= uri then
        respond(sock, 404, "not found; metrics are at " .. uri .. "\n", close, head_only)
      else
        local text = c.metrics.format()
        if not text then
          respond(sock, 500, "out of memory\n", true)
          return
        end
        if not send_text(c, sock, text, close, head_only) then return end
      end
      if close then return end
    end
  end
end

---------------------------------------------------------------------------
-- The API
---------------------------------------------------------------------------

--- The metrics API over core table `c`; `api` is berth's (listen, stats).
function metrics.bind(c, api)
  local m, state = {}, {}

  local function ctor(kind)
    return function(name, help, labels, buckets)
      start_builtins(c, api, state)
      return metrics.family(c, kind, name, help, labels, buckets, 2)
    end
  end

  --- A counter family: `name`, `help`, optional label names. Methods:
  -- inc([n [, values]]), labels(...) -> child with inc([n]).
  -- @function counter
  m.counter = ctor("counter")
  --- A gauge family: set(v [, values]), inc, dec, labels(...).
  -- @function gauge
  m.gauge = ctor("gauge")
  --- A histogram family with `buckets` (upper bounds, increasing; default
  -- 5 ms to 10 s): observe(v [, values]), labels(...).
  -- @function histogram
  m.histogram = ctor("histogram")

  --- The Prometheus text of every series of the group now. In a task the
  -- text is made on a thread while the task waits.
  -- @treturn[1] string
  -- @treturn[1] number seconds the formatting took
  function m.text()
    start_builtins(c, api, state)
    local text, secs = c.metrics.format()
    if not text then return nil, secs end
    local s = text:text()
    text:free()
    return s, secs
  end

  --- Serve GET `uri` (default "/metrics") on a listener: `opts` are
  -- berth.listen's (host, port, ...) plus `uri`. Under --workers every
  -- worker shares the listener, and whichever answers reports them all.
  -- @treturn[1] ServerSocket
  -- @treturn[2] nil, code, errno as listen gives them
  function m.serve(opts)
    if type(opts) ~= "table" then error("metrics.serve: expected a table of options", 2) end
    local uri = opts.uri or "/metrics"
    if type(uri) ~= "string" or uri:sub(1, 1) ~= "/" then
      error("metrics.serve: uri must be a path starting with / (got " .. tostring(uri) .. ")", 2)
    end
    local t = {}
    for k, v in pairs(opts) do
      if k ~= "uri" then t[k] = v end
    end
    c.options.check("listen", t, 2)
    start_builtins(c, api, state)
    local server, code, errno = api.listen(t)
    if not server then return nil, code, errno end
    return server:on("connection", scrape_handler(c, uri))
  end

  --- Stop the built-in sampler (it starts again on the next use).
  function m.stop()
    state.started = false
    c.metrics.stop()
  end

  --- The event-loop lag measured last, in seconds.
  function m.lag()
    return c.metrics.lag()
  end

  return m
end

return metrics

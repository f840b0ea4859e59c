--- Messages between the workers of one master (and within a single
-- process): `berth.bus`.
--
--     berth.bus.publish("chat", line)              -- to every worker
--     local sub <close> = berth.bus.subscribe("chat", function(msg, from)
--       ...                                         -- a callback, or
--     end)
--     for msg, from in berth.bus.subscribe("jobs") do ... end -- a task
--     berth.bus.send_to(sock_id, text)              -- to one connection
--
-- Delivery: a published message reaches every worker that has the bus
-- open (a subscription opens it) -- the publisher's own subscribers
-- included, the same way and in the same order as everyone else's. What
-- one publisher sends arrives in the order it was sent. Each worker has a
-- mailbox of bounded size in the shared region (berth.bus.configure);
-- when a worker does not keep up and its mailbox is full, the newest
-- messages are dropped for that worker only, and counted (stats().dropped
-- on the lagging worker; `lost` tells the gap). A subscription that reads
-- with a task has a queue of its own (`max`, default 1024 messages);
-- past it the newest are dropped and counted (sub.dropped).
--
-- Callbacks run from the loop, like on("data"): they must not wait (a
-- write buffers); an error goes to berth.onerror and does not stop the
-- other subscribers. Messages are strings (numbers are converted); a
-- topic is 1 to 255 bytes; a message at most ~64 KiB.
-- @module berth.bus
local sync = require "berth.sync"

local bus = {}

local DEFAULT_MAX = 1024

local Sub = {}
Sub.__index = Sub

-- topic -> list of subscriptions; a list is never changed in place (a
-- callback may cancel or subscribe while the list is being walked).
local subs = {}

local function without(list, sub)
  local t = {}
  for _, s in ipairs(list) do
    if s ~= sub then t[#t + 1] = s end
  end
  return t
end

--- Stop receiving; a task waiting in read() gets nil, "closed".
-- Idempotent; also the subscription's `__close`.
function Sub:cancel()
  if self.cancelled then return end
  self.cancelled = true
  local list = without(subs[self.topic] or {}, self)
  subs[self.topic] = #list > 0 and list or nil
  if self.cond then self.cond:broadcast() end
end
Sub.__close = Sub.cancel

-- Queue a message for the reading task; the newest is dropped when full.
function Sub:push(msg, from)
  if self.n >= self.max then
    self.dropped = self.dropped + 1
    return
  end
  local i = self.head + self.n
  self.msgs[i], self.froms[i] = msg, from
  self.n = self.n + 1
  self.cond:signal()
end

--- The next message: msg, from (the publisher's worker number), topic.
-- Task only when it must wait.
-- @tparam[opt] number timeout seconds
-- @treturn[1] string msg
-- @treturn[1] integer from
-- @treturn[1] string topic
-- @treturn[2] nil
-- @treturn[2] string "timeout", or "closed" once cancelled (and drained)
function Sub:read(timeout)
  local deadline = timeout and self.core.now() + timeout
  while self.n == 0 do
    if self.cancelled then return nil, "closed" end
    local left = deadline and math.max(0, deadline - self.core.now())
    local ok, err = self.cond:wait(left)
    if not ok and err == "timeout" and self.n == 0 then return nil, "timeout" end
  end
  local i = self.head
  local msg, from = self.msgs[i], self.froms[i]
  self.msgs[i], self.froms[i] = nil, nil
  self.n = self.n - 1
  self.head = self.n == 0 and 1 or i + 1
  return msg, from, self.topic
end

--- `for msg, from in sub do ... end`: read until cancelled.
function Sub:__call()
  local msg, from, topic = self:read()
  if msg == nil then return nil end
  return msg, from, topic
end

function Sub:__tostring()
  return ("Subscription (%s%s)"):format(self.topic, self.cancelled and ", cancelled" or "")
end

-- The dispatcher the core calls for each topic message.
local call
local function dispatch(topic, msg, from)
  local list = subs[topic]
  if not list then return end
  for i = 1, #list do
    local s = list[i]
    if s.fn then call(s.fn, msg, from, topic) else s:push(msg, from) end
  end
end

--- The bus API over core table `c` (one loop).
function bus.bind(c)
  local cb = c.bus
  local api = {}

  --- Publish `msg` on `topic` to every worker.
  -- @treturn[1] integer how many workers queued it (dropped ones not counted)
  -- @treturn[2] nil
  -- @treturn[2] string "toolarge"
  function api.publish(topic, msg)
    return cb.publish(topic, msg)
  end

  --- Send `msg` to connection `id` (sock:id()), on whichever worker has
  -- it: it goes to that socket's inbox (sock:inbox(), on("message")).
  -- @treturn[1] true queued for the worker owning it
  -- @treturn[2] nil
  -- @treturn[2] string "notfound" (no live worker made that id), "full"
  -- (its mailbox is full: dropped), "toolarge"
  function api.send_to(id, msg)
    return cb.send_to(id, msg)
  end

  --- Receive the messages published on `topic`: with `fn`, each is
  -- passed to fn(msg, from, topic) from the loop; without, they queue for
  -- read() (and the `for` iteration).
  -- @tparam string topic
  -- @tparam[opt] function fn
  -- @tparam[opt] table opts `max`: messages queued for read() (1024)
  -- @return a subscription: cancel(), read([timeout]), dropped, `<close>`
  function api.subscribe(topic, fn, opts)
    if type(fn) == "table" and opts == nil then fn, opts = nil, fn end
    if type(topic) ~= "string" or #topic == 0 or #topic > 255 then
      error("subscribe: topic must be a string of 1 to 255 bytes (got " .. tostring(topic) .. ")", 2)
    end
    if fn ~= nil and type(fn) ~= "function" then
      error("subscribe: fn must be a function (got " .. type(fn) .. ")", 2)
    end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "max" then error(("subscribe: unknown option %q (valid: max)"):format(tostring(k)), 2) end
    end
    local max = opts.max ~= nil and c.check.size(opts.max, "subscribe: max", 2) or DEFAULT_MAX
    cb.open() -- raises if another loop of this process has the bus
    cb.ondeliver(dispatch)
    call = cb.call -- set here, not at bind: a loop never used stays collectable
    local sub = setmetatable({ topic = topic, fn = fn, core = c, max = max, dropped = 0,
      msgs = {}, froms = {}, head = 1, n = 0 }, Sub)
    if not fn then sub.cond = sync.cond(c) end
    local list = { table.unpack(subs[topic] or {}) }
    list[#list + 1] = sub
    subs[topic] = list
    return sub
  end

  --- This worker's bus counters: sent, received, dropped (messages to
  -- this worker its full mailbox refused), lost (gaps seen), rejected,
  -- undeliverable (direct messages to no open connection), queued and
  -- capacity (bytes of its mailbox), peak, members (workers receiving);
  -- nil until the bus is open here.
  function api.stats()
    return cb.stats()
  end

  --- The worker number that owns connection `id`, or nil.
  function api.owner(id)
    return cb.owner(id)
  end

  --- Set this worker's mailbox size (bytes, at least 256 KiB; default 1
  -- MiB) before the bus is first used.
  function api.configure(opts)
    if type(opts) ~= "table" then error("bus.configure: expected a table of options", 2) end
    c.check.size(opts.queue, "bus.configure: queue", 2)
    for k in pairs(opts) do
      if k ~= "queue" then error(("bus.configure: unknown option %q (valid: queue)"):format(tostring(k)), 2) end
    end
    cb.configure(opts.queue)
  end

  return api
end

return bus

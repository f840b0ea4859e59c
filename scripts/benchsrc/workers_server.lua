-- scripts/bench-workers' server, run as `berth --workers 2`: a line
-- protocol over which the driver (workers_bench.lua) makes each worker
-- work on the shared dictionary and the bus. One reply line per command:
--   who              this worker's number
--   incr K N         N increments of key K; "done <last value>"
--   sub T            count the messages published on T; "ok"
--   count T          how many arrived so far
--   pub T N W SIZE   publish N messages of SIZE bytes on T, never more
--                    than W (+ 200) ahead of what the subscribers reported
--                    (they report every 100 in the dictionary); "done"
local berth = require "berth"

local dict = berth.shared("bench")
local counts = {}

local handlers = {}

function handlers.who()
  return tostring(berth.worker())
end

function handlers.incr(k, n)
  local v
  for i = 1, tonumber(n) do
    v = dict:incr(k, 1, 0)
    if i % 10000 == 0 then berth.sleep(0) end -- let the loop breathe
  end
  return "done " .. v
end

function handlers.sub(topic)
  if not counts[topic] then
    counts[topic] = 0
    local key = "rcv." .. topic
    berth.bus.subscribe(topic, function()
      local n = counts[topic] + 1
      counts[topic] = n
      if n % 100 == 0 then dict:set(key, n) end
    end)
  end
  return "ok"
end

function handlers.count(topic)
  return tostring(counts[topic] or 0)
end

function handlers.pub(topic, n, window, size)
  local payload, key = ("x"):rep(tonumber(size)), "rcv." .. topic
  window = tonumber(window)
  for i = 1, tonumber(n) do
    if i % 100 == 1 then
      -- One loop turn per 100: our own copy of each message is delivered
      -- to us too (and dropped if we never let the loop run).
      berth.sleep(0)
      while (dict:get(key) or 0) < i - window do berth.sleep(0.0002) end
    end
    berth.bus.publish(topic, payload)
  end
  return "done"
end

local server = assert(berth.serve {
  host = "127.0.0.1",
  port = tonumber(os.getenv("PORT") or 0),
  handler = function(sock)
    for line in sock:lines() do
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      local h = handlers[table.remove(words, 1) or ""]
      sock:write(h and h(table.unpack(words)) or "?", "\n")
    end
  end,
})
print(("listening on %s:%d"):format(server:address(), server:port()))
io.stdout:flush()

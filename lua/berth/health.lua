--- berth.health: what a load balancer's health check asks, answered
-- "serving" (HTTP 200) or "draining" (503).
--
-- A process says "draining" from the moment its graceful stop starts
-- (SIGTERM/SIGINT, berth.shutdown): for the drain delay (`--drain-delay`,
-- `berth.limits{drain_delay=}`) its listeners still accept while the
-- balancer, seeing 503, stops sending; then they close. Under `--workers`
-- the master also says "draining" for every worker while a rolling reload
-- (SIGHUP) runs, through the group's shared dictionary "berth.health".
--
--     berth.serve_health{port = 9000}                 -- its own listener
--     http.serve{..., handler = function(req, res)    -- or a route
--       if req.path == "/health" then return berth.health.handler(req, res) end
--       ...
--
-- A binary upgrade (SIGUSR2) does not say "draining": the new process
-- takes the same listeners, the health listener included, and the old one
-- stops accepting at once.
-- @module berth.health
local health = {}

--- The shared dictionary the master sets "draining" in.
health.DICT = "berth.health"
--- Its size (the master makes it; a worker only opens it).
health.DICT_SIZE = 1 << 20

--- The health API for the loop of core table `c` and API table `api`.
function health.bind(c, api)
  local h = {}
  local dict -- the group's dictionary: opened on first use, false if none

  local function group_draining()
    if c.shared.worker() == 0 then return false end -- not under a master
    if dict == nil then
      local ok, d = pcall(api.shared, health.DICT)
      dict = ok and d or false
    end
    return dict and dict:get("draining") == true
  end

  --- Whether this process (or, under a master, its group) is draining.
  -- @function draining
  function h.draining()
    return c.draining() or group_draining()
  end

  --- "serving" or "draining".
  -- @function status
  function h.status()
    return h.draining() and "draining" or "serving"
  end

  --- A berth.http handler: 200 "serving" or 503 "draining" (text/plain),
  -- whatever the path and method (HEAD gets no body).
  -- @function handler
  function h.handler(_, res)
    local draining = h.draining()
    return res:status(draining and 503 or 200):header("Content-Type", "text/plain")
      :send(draining and "draining\n" or "serving\n")
  end

  --- Master side: set the group's flag (a rolling reload runs).
  -- @function set_group
  function h.set_group(draining)
    if dict == nil then
      local ok, d = pcall(api.shared, health.DICT, { size = health.DICT_SIZE })
      dict = ok and d or false
    end
    if dict then dict:set("draining", draining and true or false) end
    return dict ~= false
  end

  --- Serve the health check on its own listener (berth.http): `opts` are
  -- http.serve's but `handler`. PROXY protocol headers are optional there
  -- unless `proxy_protocol` says otherwise: balancers do not send them on
  -- checks to another port.
  -- @function serve
  -- @treturn[1] ServerSocket
  -- @treturn[2] nil
  -- @treturn[2] string code
  -- @treturn[2] integer errno
  function h.serve(opts)
    if type(opts) ~= "table" then
      error("serve_health: opts must be a table (got " .. type(opts) .. ")", 2)
    end
    if opts.handler ~= nil then error("serve_health: handler is not an option here", 2) end
    local t = {}
    for k, v in pairs(opts) do t[k] = v end
    t.handler = h.handler
    if t.proxy_protocol == nil and c.proxy.defaults().protocol then
      t.proxy_protocol = "optional"
    end
    return require("berth.http").serve(t)
  end

  return h
end

return health

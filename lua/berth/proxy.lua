--- berth.proxy: the PROXY protocol (HAProxy's, versions 1 and 2), as
-- listeners read it and connections send it.
--
-- Inbound, a listener reads the header a balancer puts in front of each
-- connection before the handler runs: `listen{proxy_protocol = true |
-- "optional", proxy_trusted = {"10.0.0.0/8", ...}}` (or for every
-- listener, `berth.proxy.defaults{protocol =, trusted =}`, the host's
-- `--proxy-protocol` and `--proxy-trusted`). Then `sock:peer()` is the
-- client and `sock:proxied()` the balancer (host, port, and a table of
-- what the header said: version, command, dst_host, dst_port, alpn,
-- authority, unique_id, netns, ssl, tlvs). Outbound,
-- `berth.connect(host, port, {proxy_protocol = 1 | 2, source = sock})`
-- passes `sock`'s client on.
-- @module berth.proxy
local proxy = {}

--- The `proxy_protocol` value for a listener from the environment
-- variable `name` (default PROXY_PROTOCOL): "1", "2", "on" or "true" give
-- true (v1 and v2 are both read: the header says which), "optional" gives
-- "optional", unset, "", "0", "off" or "false" give nil. Anything else
-- raises.
function proxy.fromenv(name)
  name = name or "PROXY_PROTOCOL"
  local v = os.getenv(name)
  if v == nil or v == "" or v == "0" or v == "off" or v == "false" then return nil end
  if v == "1" or v == "2" or v == "on" or v == "true" then return true end
  if v == "optional" then return "optional" end
  error(("%s must be 1, optional or 0 (got %q)"):format(name, v), 2)
end

--- The API for core table `c`: fromenv, defaults (core.proxy.defaults)
-- and header (core.proxy.header).
function proxy.bind(c)
  return { fromenv = proxy.fromenv, defaults = c.proxy.defaults, header = c.proxy.header }
end

--- Reference of the functions the C core provides (for LDoc).

--- The defaults of listeners made from now on that do not say: `protocol`
-- (true, "optional" or false) and `trusted` (a list of ranges). With no
-- argument, the defaults in force.
-- @function defaults
-- @tparam[opt] table t
-- @treturn table {protocol =, trusted =}

--- The header (version 1 or 2) announcing the client of Socket `source`
-- (its peer, and the address it reached); without `source`, a v2 LOCAL
-- or v1 UNKNOWN header.
-- @function header
-- @tparam integer version
-- @tparam[opt] Socket source
-- @treturn[1] string
-- @treturn[2] nil
-- @treturn[2] string code

--- The balancer that sent this connection's PROXY header: its host and
-- port, and what the header said; nil for a connection that had none.
-- @function Socket:proxied
-- @treturn[1] string host
-- @treturn[1] integer port
-- @treturn[1] table version, command ("proxy" or "local"), dst_host,
-- dst_port, alpn, authority, unique_id, netns, ssl ({tls, cert,
-- verified, version, cn, cipher, sig_alg, key_alg}), tlvs ({type =,
-- value =} each)
-- @treturn[2] nil

return proxy

--- Byte-exact protocol assertions for the specs that drive the protocol
-- examples (http_spec, resp_spec, proxy_spec) over raw berth sockets, so
-- that every byte on the wire is seen. Task only.
local berth = require "berth"
local net = require "support.net"

local wire = {}

--- `s` quoted for a failure message (long strings shortened).
function wire.show(s)
  if #s > 600 then
    return ("%d bytes: %q ... %q"):format(#s, s:sub(1, 300), s:sub(-200))
  end
  return (("%q"):format(s):gsub("\\\n", "\\n"))
end
local show = wire.show

--- Asserts that two byte strings are equal, showing both (quoted) if not.
function wire.assert_wire(expected, got, what)
  if expected == got then return end
  local prefix = what and (what .. ": ") or ""
  if type(got) ~= "string" then
    error(("%sexpected %s\n got %s"):format(prefix, show(expected), tostring(got)), 2)
  end
  local i = 1
  while i <= #expected and expected:byte(i) == got:byte(i) do i = i + 1 end
  error(("%sbytes on the wire differ at byte %d\nexpected %s\n     got %s")
    :format(prefix, i, show(expected), show(got)), 2)
end

--- Reads exactly #expected bytes and compares them. On EOF/reset/timeout
-- the failure shows what did arrive.
function wire.expect_bytes(sock, expected, timeout, what)
  local got, code, extra = sock:read(#expected, timeout or 2)
  if not got then
    local partial = type(extra) == "string" and extra or ""
    if code == "timeout" then -- nothing was consumed: show what did arrive
      partial = sock:readsome(65536, 0.01) or ""
    end
    error(("%sexpected %s\n but the read ended (%s) after %s")
      :format(what and (what .. ": ") or "", show(expected), tostring(code), show(partial)), 2)
  end
  wire.assert_wire(expected, got, what)
end

--- Asserts that nothing arrives for `quiet` seconds (default 0.1) and that
-- the connection is still open. (The wait is the check: a quiet period.)
function wire.expect_quiet(sock, quiet, what)
  local data, code, extra = sock:readsome(65536, quiet or 0.1)
  if data then
    error(("%sunexpected extra bytes: %s"):format(what and (what .. ": ") or "", show(data)), 2)
  end
  if code ~= "timeout" then
    error(("%sthe connection ended (%s%s) where it should stay open")
      :format(what and (what .. ": ") or "", tostring(code),
        type(extra) == "string" and #extra > 0 and (", with " .. show(extra)) or ""), 2)
  end
end

--- Asserts that the rest of the stream is exactly `expected` followed by an
-- orderly EOF within `timeout` seconds (default 2). `ends` lists the
-- acceptable ends (default { closed = true }).
function wire.expect_close(sock, expected, timeout, what, ends)
  local got, code = net.read_to_end(sock, timeout)
  wire.assert_wire(expected, got, what)
  ends = ends or { closed = true }
  if not ends[code] then
    error(("%sexpected the connection to be closed after the response, got %q")
      :format(what and (what .. ": ") or "", code), 2)
  end
end

--- Writes `data` one byte per write (one TCP segment each: nodelay is on),
-- pausing `pause` seconds (default 0.001) between bytes: a slow client,
-- on purpose.
function wire.dribble(sock, data, pause)
  for i = 1, #data do
    assert(sock:write(data:sub(i, i)))
    berth.sleep(pause or 0.001)
  end
end

return wire

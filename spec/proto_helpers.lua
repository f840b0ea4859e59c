--- Helpers for the protocol specs (http_spec, resp_spec, proxy_spec).
--
-- The example servers run as child processes of the host (`build/berth
-- examples/X.lua`, PORT=0); the specs talk to them over raw berth sockets so
-- that every byte on the wire is seen. Builds on spec/helpers.lua (read only).
local assert = require "luassert"
local helpers = require "helpers"
local berth = helpers.berth

local P = {}

---------------------------------------------------------------------------
-- Example processes
---------------------------------------------------------------------------

--- Starts examples/<name>.lua (PORT=0, plus `env`), calls `fn(port, proc)`
-- (outside any task: `fn` calls helpers.run itself), then stops the child by
-- PID with SIGTERM and checks that it exited 0. Returns its stderr.
function P.with_example(name, env, fn)
  local proc, host, port = helpers.start_example(name, env)
  assert.equal("127.0.0.1", host)
  local ok, err = pcall(fn, port, proc)
  proc:kill("TERM")
  local _, how, code = proc:wait()
  local stderr = proc:stderr()
  if not ok then error(err, 0) end
  assert.same({ "exit", 0 }, { how, code },
    "examples/" .. name .. ".lua did not exit 0 after SIGTERM; stderr:\n" .. stderr)
  return stderr
end

-- /proc measurements live in spec/proc.lua.
local proc = require "proc"
P.rss, P.fd_count = proc.rss, proc.fds

--- Receive-queue length (bytes the kernel holds and the application has not
-- read) of the IPv4 TCP socket with this local and remote port, from
-- /proc/net/tcp; nil if there is no such socket.
function P.tcp_rx_queue(local_port, remote_port)
  for line in io.lines("/proc/net/tcp") do
    local lport, rport, rx = line:match("^%s*%d+: %x+:(%x+) %x+:(%x+) %x+ %x+:(%x+)")
    if lport and tonumber(lport, 16) == local_port and tonumber(rport, 16) == remote_port then
      return tonumber(rx, 16)
    end
  end
end

---------------------------------------------------------------------------
-- Wire assertions (task only)
---------------------------------------------------------------------------

local function show(s)
  if #s > 600 then
    return ("%d bytes: %q ... %q"):format(#s, s:sub(1, 300), s:sub(-200))
  end
  return (("%q"):format(s):gsub("\\\n", "\\n"))
end
P.show = show

--- Asserts that two byte strings are equal, showing both (quoted) if not.
function P.assert_wire(expected, got, what)
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

--- Reads until EOF, a reset or `timeout` seconds (default 2) in total.
-- Returns everything read and how it ended: "closed", "reset" or "timeout".
function P.read_to_end(sock, timeout)
  local deadline = berth.now() + (timeout or 2)
  local parts = {}
  while true do
    local left = deadline - berth.now()
    if left <= 0 then return table.concat(parts), "timeout" end
    local data, code, extra = sock:readsome(65536, left)
    if data then
      parts[#parts + 1] = data
    else
      if type(extra) == "string" then parts[#parts + 1] = extra end
      return table.concat(parts), code
    end
  end
end

--- Reads exactly #expected bytes and compares them. On EOF/reset/timeout
-- the failure shows what did arrive.
function P.expect_bytes(sock, expected, timeout, what)
  local got, code, extra = sock:read(#expected, timeout or 2)
  if not got then
    local partial = type(extra) == "string" and extra or ""
    if code == "timeout" then -- nothing was consumed: show what did arrive
      partial = sock:readsome(65536, 0.01) or ""
    end
    error(("%sexpected %s\n but the read ended (%s) after %s")
      :format(what and (what .. ": ") or "", show(expected), tostring(code), show(partial)), 2)
  end
  P.assert_wire(expected, got, what)
end

--- Asserts that nothing arrives for `wait` seconds (default 0.1) and that
-- the connection is still open.
function P.expect_quiet(sock, wait, what)
  local data, code, extra = sock:readsome(65536, wait or 0.1)
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
function P.expect_close(sock, expected, timeout, what, ends)
  local got, code = P.read_to_end(sock, timeout)
  P.assert_wire(expected, got, what)
  ends = ends or { closed = true }
  if not ends[code] then
    error(("%sexpected the connection to be closed after the response, got %q")
      :format(what and (what .. ": ") or "", code), 2)
  end
end

--- Writes `data` one byte per write (one TCP segment each: nodelay is on),
-- pausing `pause` seconds (default 0.001) between bytes.
function P.dribble(sock, data, pause)
  for i = 1, #data do
    assert(sock:write(data:sub(i, i)))
    berth.sleep(pause or 0.001)
  end
end

return P

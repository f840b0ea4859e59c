--- spec/support: everything the busted specs share, as one table. (This
-- file is spec/support.lua, not spec/support/init.lua: the search paths of
-- .busted and scripts/test have spec/?.lua but not spec/?/init.lua.)
--
--   local support = require "support"
--   local berth = support.berth
--
--   describe("thing", function()
--     before_each(support.before)
--     after_each(support.after)
--     it("works", function()
--       support.run(function()            -- the body runs as a berth task
--         local p <close> = support.pair()
--         ...
--       end)
--     end)
--   end)
--
-- Its functions come from focused modules, also reachable on their own:
--   support.loop   run, expect, expect_leak, leftovers, take_errors,
--                  wait_errors, counts and the per-test leak check (what a
--                  test leaves is named and closed by support/leaks.lua)
--   support.wait   clock, pause, wait_until
--   support.net    listen, serve, connect, pair, echo, roundtrip,
--                  read_to_end, assert_fail, assert_raises, assert_bytes,
--                  random_bytes, tcp_rx_queue, wait_unread, loopback_name
--   support.proc   start, start_host, start_example, with_example, run_host,
--                  run_fixture, stop_clean, lua_env, host_binary, lua_binary,
--                  pid, kill, alive, children, cmdline, rss, hwm, reset_hwm,
--                  cpu, fds, sockets, wait_exit, track; a started Process has
--                  readline, kill, stop, wait, stderr, count, wait_log,
--                  close, describe
--   support.files  tmpdir, read_file, write_file, exists, is_socket_file,
--                  shquote
-- and, not merged into this table (require them by name):
--   support.wire     byte-exact protocol assertions (http, resp, proxy)
--   support.reload   reload fixtures, editor saves, workers, load generator
--   support.measure  KiB, MiB, percentile, report
local support = {}

local modules = {
  loop = require "support.loop",
  wait = require "support.wait",
  net = require "support.net",
  proc = require "support.proc",
  files = require "support.files",
}

for _, name in ipairs { "loop", "wait", "net", "proc", "files" } do
  local m = modules[name]
  support[name] = m
  for k, v in pairs(m) do
    if type(v) == "function" and k ~= "before" and k ~= "after" then
      assert(support[k] == nil, "spec/support: two modules define " .. k)
      support[k] = v
    end
  end
end
support.berth = modules.loop.berth

--- For each spec file's before_each.
function support.before()
  modules.loop.before()
end

--- For each spec file's after_each: stops the test's processes and removes
-- its temporary directories, then checks the loop for leaks and closes
-- whatever the test left there. Fails the test for a leak, or for tracked
-- processes (a master's workers) it left running.
function support.after()
  local left = modules.proc.after()
  modules.files.after()
  local ok, err = pcall(modules.loop.after)
  if #left > 0 then
    local msg = "processes left running by the test (killed now): " .. table.concat(left, ", ")
    err = ok and msg or (tostring(err) .. "\n" .. msg)
    ok = false
  end
  if not ok then error(err, 0) end
end

return support

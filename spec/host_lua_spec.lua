-- lua/berth/host.lua alone, with stand-ins for what it is given: the
-- stop-signal policy shared by the host and the master, --check's listen,
-- the script's directory on the module path and --strict. (The host
-- running it is spec/host_spec.lua.)
local host = require "berth.host"

-- A log that keeps its warn lines.
local function fake_log()
  local log = { lines = {} }
  function log.warn(fmt, ...) log.lines[#log.lines + 1] = fmt:format(...) end
  return log
end

describe("berth.host", function()
  describe("stop_policy", function()
    it("the first signal is graceful, a second hurries, logs and exits 1", function()
      local calls, log = {}, fake_log()
      local handler = host.stop_policy {
        log = log, prefix = "master: ",
        graceful = function(name) calls[#calls + 1] = "graceful " .. name end,
        hurry = function(name) calls[#calls + 1] = "hurry " .. name end,
        exit = function(code) calls[#calls + 1] = "exit " .. code end,
      }
      handler("TERM")
      assert.same({ "graceful TERM" }, calls)
      assert.same({}, log.lines)
      handler("INT")
      assert.same({ "graceful TERM", "hurry INT", "exit 1" }, calls)
      assert.same({ "master: second SIGINT: exiting now" }, log.lines)
    end)

    it("works without a hurry step and without a prefix", function()
      local calls, log = {}, fake_log()
      local handler = host.stop_policy {
        log = log,
        graceful = function() calls[#calls + 1] = "graceful" end,
        exit = function(code) calls[#calls + 1] = code end,
      }
      handler("INT")
      handler("TERM")
      assert.same({ "graceful", 1 }, calls)
      assert.same({ "second SIGTERM: exiting now" }, log.lines)
    end)

    it("on_stop_signals installs one handler on INT and TERM", function()
      local installed = {}
      local berth = { signal = function(name, fn) installed[name] = fn end }
      local handler = host.on_stop_signals(berth, { log = fake_log(), graceful = function() end })
      assert.equal(handler, installed.INT)
      assert.equal(handler, installed.TERM)
    end)
  end)

  describe("check_listen", function()
    local seen
    local function listen(t) seen = t return "server" end

    it("moves a TCP listener to an ephemeral loopback port, keeping the rest", function()
      local opts = { host = "0.0.0.0", port = 80, fd = 3, maxline = 10, backlog = 5 }
      assert.equal("server", host.check_listen(listen)(opts))
      assert.same({ host = "127.0.0.1", port = 0, maxline = 10, backlog = 5 }, seen)
      assert.equal(80, opts.port, "the caller's table is not changed")
    end)

    it("moves a unix listener to a fresh path", function()
      host.check_listen(listen, function() return "/tmp/fresh" end) { path = "/srv/app.sock" }
      assert.same({ path = "/tmp/fresh" }, seen)
    end)

    it("hands anything but a table to listen as it is, for its error", function()
      seen = nil
      host.check_listen(function(t) seen = t end)("nope")
      assert.equal("nope", seen)
    end)
  end)

  describe("script_dir", function()
    it("puts the script's directory first on package.path and makes it an application root",
      function()
        local saved, roots = package.path, {}
        local berth = { reload = { root = function(dir) roots[#roots + 1] = dir end } }
        local ok, err = pcall(function()
          assert.equal("/srv/app", host.script_dir(berth, "/srv/app/main.lua"))
          assert.equal("/srv/app/?.lua;/srv/app/?/init.lua;" .. saved, package.path)
          package.path = saved
          assert.equal(".", host.script_dir(berth, "main.lua"))
          assert.equal("./?.lua;./?/init.lua;" .. saved, package.path)
          package.path = saved
          assert.equal("/", host.script_dir(berth, "/main.lua"))
          assert.same({ "/srv/app", ".", "/" }, roots)
        end)
        package.path = saved
        assert(ok, err)
      end)
  end)

  describe("strict", function()
    it("the default report runs, then one graceful shutdown; the status becomes 1", function()
      local calls = {}
      local handler
      local berth = {
        log = { error = function(fmt) calls[#calls + 1] = "log " .. fmt:match("^%S+") end },
        shutdown = function(grace) calls[#calls + 1] = "shutdown " .. grace end,
        onerror = function(fn)
          handler = fn
          return function(err) calls[#calls + 1] = "report " .. err end
        end,
      }
      host.strict(berth, 3)
      assert.same({}, calls)
      handler("e1", "tb", nil)
      handler("e2", "tb", nil)
      assert.same({ "report e1", "log --strict:", "shutdown 3", "report e2" }, calls)
      assert.equal(1, host.status())
    end)
  end)
end)

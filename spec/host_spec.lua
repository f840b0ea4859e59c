-- The `berth` host executable: options, the `arg` table, exit codes,
-- graceful stop on SIGTERM/SIGINT, logging (README "Using berth" > Host).
local support = require "support"
local berth = support.berth
local run = support.run

local ARGS = "spec/fixtures/host_args.lua"
local SERVER = "spec/fixtures/host_server.lua"

-- Runs `lua5.4 args...` (the reference for the `arg` table).
local function run_lua(args)
  local argv = { "lua5.4" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local proc = support.start(argv)
  local out, _, code = proc:wait()
  return out, code
end

-- Splits host_args.lua output into (everything but the interpreter line,
-- the interpreter).
local function split_interpreter(out)
  local interpreter = out:match("interpreter ([^\n]*)\n")
  return out:gsub("interpreter [^\n]*\n", ""), interpreter
end

-- Starts the host on host_server.lua and reads its listening line.
local function start_server(args, env)
  return support.start_host(SERVER, args, { env = env, limit = 30 })
end

describe("berth host", function()
  before_each(support.before)
  after_each(support.after)

  describe("options", function()
    it("-v and --version print the version and exit 0", function()
      for _, flag in ipairs { "-v", "--version" } do
        local out, code, err = support.run_host { flag }
        assert.equal(0, code, err)
        assert.is_truthy(out:find(berth.version, 1, true),
          ("%s printed %q, not the version %q"):format(flag, out, berth.version))
      end
    end)

    it("-h and --help print every option and exit 0", function()
      for _, flag in ipairs { "-h", "--help" } do
        local out, code, err = support.run_host { flag }
        assert.equal(0, code, err)
        for _, option in ipairs { "-e", "-v", "--version", "-h", "--help", "--grace",
          "--log-level", "--" } do
          assert.is_truthy(out:find(option, 1, true), flag .. " does not mention " .. option)
        end
      end
    end)

    it("-e runs code and exits 0 when there is no script", function()
      local out, code, err = support.run_host { "-e", "print(1 + 1)" }
      assert.equal(0, code, err)
      assert.equal("2\n", out)
    end)

    it("runs repeated -e in order, before the script", function()
      local out, code, err = support.run_host {
        "-e", "print('e1')", "-e", "print('e2') X = 'from -e'", ARGS,
      }
      assert.equal(0, code, err)
      local want = "e1\ne2\nX from -e\n"
      assert.equal(want, out:sub(1, #want))
    end)

    it("rejects an unknown option with a non-zero exit", function()
      local _, code = support.run_host { "--no-such-option" }
      assert.is_true(code ~= 0)
    end)

    it("--log-level sets the level; the host default is 'info'", function()
      local probe = "print(require('berth').log.level())"
      local out, code, err = support.run_host { "-e", probe }
      assert.equal(0, code, err)
      assert.equal("info\n", out)
      out, code, err = support.run_host { "--log-level", "debug", "-e", probe }
      assert.equal(0, code, err)
      assert.equal("debug\n", out)
    end)
  end)

  describe("option values", function()
    -- berth.limits() as the script sees it under `args`.
    local function limits_with(args)
      local argv = {}
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      argv[#argv + 1] = "-e"
      argv[#argv + 1] = "for k, v in pairs(require('berth').limits()) do "
        .. "print(k, math.type(v) or tostring(v), tostring(v)) end"
      local out, code, err = support.run_host(argv)
      assert.equal(0, code, err)
      local t = {}
      for k, kind, v in out:gmatch("(%S+)\t(%S+)\t(%S+)\n") do
        if kind == "false" then
          t[k] = false
        else
          t[k] = kind == "integer" and math.tointeger(v) or tonumber(v)
        end
      end
      return t
    end

    it("times take ms, s, m and h: --idle-timeout 1m is 60 s", function()
      local t = limits_with { "--idle-timeout", "1m", "--message-timeout", "500ms",
        "--send-timeout", "2h", "--cpu-budget", "1.5" }
      assert.equal(60, t.idle_timeout)
      assert.equal(0.5, t.message_timeout)
      assert.equal(7200, t.send_timeout)
      assert.equal(1.5, t.cpu_budget)
    end)

    it("sizes take k, M and G; counts are plain; 0 turns a limit off", function()
      local t = limits_with { "--max-line", "1.5k", "--max-input", "2M", "--max-output", "1G",
        "--max-connections", "100" }
      assert.same({ 1536, 2 * 1024 * 1024, 1024 * 1024 * 1024, 100 },
        { t.maxline, t.max_input, t.max_output, t.max_connections })
      t = limits_with { "--max-output", "0", "--idle-timeout", "0", "--cpu-budget", "0",
        "--max-connections", "0" }
      assert.same({ false, false, false, false },
        { t.max_output, t.idle_timeout, t.cpu_budget, t.max_connections })
    end)

    it("the host's defaults are the library's, but a 5 s cpu budget", function()
      local t = limits_with {}
      assert.equal(5, t.cpu_budget)
      for key, o in pairs(require("berth.core").options.limits) do
        if key ~= "cpu_budget" then assert.equal(o.default, t[key], key) end
      end
    end)

    it("rejects malformed values at start-up, naming the option", function()
      for _, case in ipairs {
        { "--idle-timeout", "abc" }, { "--send-timeout", "off" }, { "--cpu-budget", "x" },
        { "--grace", "soon" }, { "--idle-timeout", "-1" }, { "--message-timeout", "1d" },
        { "--max-line", "64kb" }, { "--max-input", "0.1k" }, { "--max-memory", "lots" },
        { "--max-connections", "1k" }, { "--workers", "2x" }, { "--workers", "0" },
        { "--workers", "-1" }, { "--grace", "1e3" },
      } do
        local out, code, err = support.run_host { case[1], case[2], "-e", "print('ran')" }
        assert.equal(2, code, table.concat(case, " ") .. " was accepted")
        assert.equal("", out, "the script ran despite " .. table.concat(case, " "))
        assert.truthy(err:find("berth: " .. case[1] .. ": ", 1, true), err)
        assert.truthy(err:find(case[2], 1, true), err)
      end
    end)

    it("accepts the same syntax for --grace and --max-memory", function()
      local out, code, err = support.run_host { "--grace", "1m", "--max-memory", "64M",
        "--workers", "1", "-e", "print('ran')" }
      assert.equal(0, code, err)
      assert.equal("ran\n", out)
    end)

    it("--help lists every limit of the table with its default", function()
      local out, code, err = support.run_host { "--help" }
      assert.equal(0, code, err)
      local n = 0
      for key, o in pairs(require("berth.core").options.limits) do
        n = n + 1
        local at = out:find(o.option .. " ", 1, true)
        assert.truthy(at, ("--help does not list %s (%s)"):format(o.option, key))
        local line = out:sub(at):match("^[^\n]*\n[^\n]*")
        assert.truthy(line:find(o.help, 1, true), "no help for " .. o.option .. ":\n" .. line)
        assert.truthy(line:find("(default ", 1, true), "no default for " .. o.option)
      end
      assert.is_true(n >= 8, "limits in core.options: " .. n)
      assert.truthy(out:find("%-%-max%-line N%s+longest line or delimited read %(default 64k%)"), out)
      assert.truthy(out:find("(default 5s)", 1, true), out)
    end)

    it("the version is CMake's project(VERSION), everywhere", function()
      -- The build's cache has project(VERSION) as CMake read it (a
      -- scripts/sanitize tree has no CMakeLists.txt, but its own build).
      local cache = assert(support.read_file("build/CMakeCache.txt"), "no build/CMakeCache.txt")
      local version = cache:match("\nCMAKE_PROJECT_VERSION:STATIC=([%d.]+)\n")
      assert.truthy(version, "no CMAKE_PROJECT_VERSION in the cache")
      assert.equal(version, berth.version)
      local out, code = support.run_host { "--version" }
      assert.equal(0, code)
      assert.equal("berth " .. version .. " ", out:sub(1, #version + 7))
    end)
  end)

  describe("arg table", function()
    it("matches stock lua5.4 for -e, script and arguments", function()
      local args = { "-e", "X = 1", ARGS, "a", "b c", "", "-v" }
      local want, want_code = run_lua(args)
      assert.equal(0, want_code)
      local out, code, err = support.run_host(args)
      assert.equal(0, code, err)
      local got, interpreter = split_interpreter(out)
      assert.equal((split_interpreter(want)), got)
      assert.equal(support.host_binary(), interpreter)
    end)

    it("matches stock lua5.4 after '--'", function()
      local args = { "--", ARGS, "--help" }
      local want = run_lua(args)
      local out, code, err = support.run_host(args)
      assert.equal(0, code, err)
      assert.equal((split_interpreter(want)), (split_interpreter(out)))
    end)

    it("gives host-only options negative indices too", function()
      local out, code, err = support.run_host { "--grace", "3", "-e", "X = 2", ARGS, "z" }
      assert.equal(0, code, err)
      assert.equal(table.concat({
        "X 2",
        "varargs 1: z",
        "arg[0] " .. ARGS,
        "arg[1] z",
        "arg[-4] --grace",
        "arg[-3] 3",
        "arg[-2] -e",
        "arg[-1] X = 2",
        "interpreter " .. support.host_binary(),
      }, "\n") .. "\n", out)
    end)
  end)

  describe("exit status", function()
    it("exits 0 when the script leaves nothing to do", function()
      local out, code, err = support.run_host { "-e", "print('done')" }
      assert.equal(0, code, err)
      assert.equal("done\n", out)
    end)

    it("exits non-zero with the message on stderr when the script raises", function()
      local out, code, err = support.run_host { "spec/fixtures/host_error.lua" }
      assert.is_true(code ~= 0, "exit code " .. tostring(code))
      assert.equal("before the error\n", out)
      assert.is_truthy(err:find("boom-from-script", 1, true), err)
    end)

    it("exits non-zero on a syntax error and on a missing script", function()
      local _, code = support.run_host { "-e", "this is not lua" }
      assert.is_true(code ~= 0)
      _, code = support.run_host { "spec/fixtures/no-such-script.lua" }
      assert.is_true(code ~= 0)
    end)
  end)

  describe("SIGTERM and SIGINT", function()
    it("exits 0 promptly on SIGTERM when nothing is in flight", function()
      local proc = start_server()
      local code, took = proc:stop("TERM")
      assert.equal(0, code, proc:stderr())
      assert.is_true(took < 5, ("took %.1f s with the default 10 s grace"):format(took))
    end)

    it("exits 0 on SIGINT", function()
      local proc = start_server()
      local code = proc:stop("INT")
      assert.equal(0, code, proc:stderr())
    end)

    it("stops accepting at once and ends in-flight work after --grace", function()
      local proc, port = start_server({ "--grace", "2" }, { INFLIGHT = "1" })
      run(function()
        local sock <close> = support.connect(port)
        assert.equal("hi", sock:read("l", 2))
      end)
      local t0 = support.clock()
      proc:kill("TERM")
      run(function()
        local refused
        support.wait_until(function()
          local sock, code = berth.connect("127.0.0.1", port, { timeout = 1 })
          if sock then sock:close() end
          refused = code == "refused"
          return refused
        end, 1.5, "the listener to close after SIGTERM")
        assert.is_true(refused)
      end)
      local _, how, code = proc:wait()
      local took = support.clock() - t0
      assert.equal("exit", how)
      assert.equal(0, code, proc:stderr())
      -- The busy task would run for 60 s; only the 2 s grace can end it.
      assert.is_true(took < 8, ("took %.1f s with --grace 2"):format(took))
    end)
  end)

  describe("logging", function()
    it("writes 'TIMESTAMP [level] message' lines to stderr", function()
      local _, code, err = support.run_host {
        "--log-level", "warn", "-e", "require('berth').log.warn('x=%d %s', 5, 'five')",
      }
      assert.equal(0, code, err)
      assert.matches("^%S.*%S %[warn%] x=5 five\n$", err)
    end)

    it("drops messages below the level", function()
      local _, code, err = support.run_host {
        "--log-level", "error", "-e",
        "local log = require('berth').log log.warn('hidden') log.info('hidden') log.error('shown')",
      }
      assert.equal(0, code, err)
      assert.matches("^%S.*%S %[error%] shown\n$", err)
    end)

    it("defaults to 'error' as a library and log.level(name) sets it", function()
      assert.equal("error", berth.log.level())
      berth.log.level("debug")
      assert.equal("debug", berth.log.level())
      berth.log.level("error")
      assert.equal("error", berth.log.level())
    end)
  end)

  it("runs as a library from stock lua5.4 with berth.run()", function()
    -- Not the host, but the README's other way in: same core, same API.
    local out, code, err = support.run_fixture("library_roundtrip")
    assert.equal(0, code, err)
    assert.equal("library: pong\n", out)
  end)
end)

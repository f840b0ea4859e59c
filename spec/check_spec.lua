-- The validators (src/check.c, core.check) and the option tables
-- (src/options.c, core.options) as every API uses them: listen{},
-- serve{}, connect{} and limits{} reject a bad port, an unknown key, a NaN
-- or negative time, with one message shape naming the key.
local helpers = require "support"
local core = require "berth.core"
local berth = helpers.berth
local run = helpers.run

-- Calls fn(...) and returns its error message (fails if it did not raise).
local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- Asserts the unknown-key message for table `api`: the key, then the
-- valid keys, `first` in this order, then every other key of
-- core.options[api] (limits added later included), each once.
local function assert_unknown(msg, api, key, first)
  local head = ('%s: unknown option "%s" (valid: %s'):format(api, key, first)
  assert.equal(head, msg:sub(1, #head))
  local listed = {}
  for k in msg:sub(#head - #first + 1):gmatch("[%w_]+") do
    assert.is_nil(listed[k], k .. " listed twice")
    listed[k] = true
  end
  for k in pairs(core.options[api]) do assert.truthy(listed[k], k .. " not listed") end
  for k in pairs(listed) do assert.truthy(core.options[api][k], k .. " is not valid") end
  assert.equal(")", msg:sub(-1))
end
local LISTEN_FIRST = "host, port, path, backlog, reuseaddr, reuseport, fd"

local function noop() end

describe("validators", function()
  before_each(helpers.before)
  after_each(helpers.after)

  describe("ports", function()
    it("listen rejects 70000, 2^32, \"abc\" and -1, naming the key", function()
      for _, case in ipairs {
        { 70000, "70000" }, { 2 ^ 32, "4294967296.0" }, { "abc", '"abc"' }, { -1, "-1" },
        { 80.5, "80.5" }, { true, "true" },
      } do
        assert.equal(("listen: port must be an integer 0..65535 (got %s)"):format(case[2]),
          err_of(berth.listen, { host = "127.0.0.1", port = case[1] }))
      end
      assert.equal(0, berth.stats().servers, "a bad port bound something")
    end)

    it("accepts 0..65535 and floats with an integer value", function()
      local server = assert(berth.listen { host = "127.0.0.1", port = 0.0 })
      assert.is_true(server:port() > 0)
      server:close()
    end)

    it("serve checks them like listen, prefixed serve:", function()
      assert.equal("serve: port must be an integer 0..65535 (got 70000)",
        err_of(berth.serve, { port = 70000, handler = noop }))
    end)

    it("connect(host, P + 2^32) is an error, not port P", function()
      run(function()
        local server <close> = helpers.listen()
        local p = server:port()
        local msg = err_of(berth.connect, "127.0.0.1", p + 2 ^ 32)
        assert.truthy(msg:find("connect: port must be an integer 0..65535 (got "
          .. ("%.1f"):format(p + 2 ^ 32) .. ")", 1, true), msg)
        assert.truthy(err_of(berth.connect, { host = "127.0.0.1", port = 65536 })
          :find("connect: port must be an integer 0..65535 (got 65536)", 1, true))
        assert.truthy(err_of(berth.connect, "127.0.0.1", "80")
          :find('connect: port must be an integer 0..65535 (got "80")', 1, true))
        local sock <close> = assert(berth.connect("127.0.0.1", p, { timeout = 2 }))
        assert.equal(p, select(2, sock:peer()))
      end)
    end)
  end)

  describe("unknown keys", function()
    it("listen{prot = 1} names the key and lists the valid ones", function()
      assert_unknown(err_of(berth.listen, { host = "127.0.0.1", prot = 1 }), "listen", "prot",
        LISTEN_FIRST)
      assert.equal(0, berth.stats().servers, "the typo bound an ephemeral port")
    end)

    it("serve{} takes listen's keys plus handler and onerror", function()
      assert_unknown(err_of(berth.serve, { prot = 1, handler = noop }), "serve", "prot",
        LISTEN_FIRST)
    end)

    it("connect{} lists host, port, path and timeout", function()
      run(function()
        assert_unknown(err_of(berth.connect, { host = "127.0.0.1", prot = 1 }), "connect", "prot",
          "host, port, path, timeout")
        assert_unknown(err_of(berth.connect, "127.0.0.1", 1, { tiemout = 1 }), "connect",
          "tiemout", "host, port, path, timeout")
      end)
    end)

    it("limits{} lists every limit, cpu_budget included", function()
      local msg = err_of(berth.limits, { prot = 1 })
      assert_unknown(msg, "limits", "prot", "max_connections, maxline")
      assert.truthy(msg:find("cpu_budget", 1, true), msg)
    end)

    it("a loop-wide limit is not a listen option", function()
      assert.truthy(err_of(berth.listen, { cpu_budget = 1 })
        :find('listen: unknown option "cpu_budget"', 1, true))
    end)

    it("positional values are unknown keys too", function()
      assert.truthy(err_of(berth.listen, { "127.0.0.1", 0 })
        :find("listen: unknown option [1] (valid: ", 1, true))
    end)

    it("berth.serve reports the caller's line, not its own", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local msg = err_of(function() berth.serve { prot = 1, handler = noop } end)
      assert.equal(("spec/check_spec.lua:%d: serve: unknown option"):format(line),
        msg:sub(1, #("spec/check_spec.lua:%d: serve: unknown option"):format(line)))
    end)
  end)

  describe("times", function()
    it("NaN is rejected everywhere a time goes", function()
      assert.equal("listen: idle_timeout must be a number of seconds >= 0, or false (got NaN)",
        err_of(berth.listen, { idle_timeout = 0 / 0 }))
      assert.equal("limits: message_timeout must be a number of seconds >= 0, or false (got NaN)",
        err_of(berth.limits, { message_timeout = 0 / 0 }))
      assert.equal("limits: cpu_budget must be a number of seconds >= 0, or false (got NaN)",
        err_of(berth.limits, { cpu_budget = 0 / 0 }))
      run(function()
        assert.truthy(err_of(berth.connect, "127.0.0.1", 1, { timeout = 0 / 0 })
          :find("connect: timeout must be a number of seconds >= 0, or false (got NaN)", 1, true))
      end)
    end)

    it("negative times and strings are rejected (they used to turn a limit off)", function()
      assert.equal("limits: idle_timeout must be a number of seconds >= 0, or false (got -1)",
        err_of(berth.limits, { idle_timeout = -1 }))
      assert.equal('limits: send_timeout must be a number of seconds >= 0, or false (got "off")',
        err_of(berth.limits, { send_timeout = "off" }))
      assert.equal("limits: idle_timeout must be a number of seconds >= 0, or false (got -inf)",
        err_of(berth.limits, { idle_timeout = -math.huge }))
    end)

    it("0, false and math.huge turn a time limit off", function()
      local saved = berth.limits()
      for _, off in ipairs { 0, false, math.huge } do
        berth.limits { idle_timeout = 5 }
        assert.equal(5, berth.limits().idle_timeout)
        assert.is_false(berth.limits({ idle_timeout = off }).idle_timeout)
      end
      berth.limits(saved)
      assert.same(saved, berth.limits())
    end)

    it("connect's timeout = false means no timeout", function()
      run(function()
        local server <close> = helpers.listen()
        local sock <close> = assert(berth.connect("127.0.0.1", server:port(), { timeout = false }))
        assert.truthy(sock:peer())
      end)
    end)
  end)

  describe("sizes and other values", function()
    it("a size is a positive integer or false", function()
      assert.equal("listen: maxline must be a positive integer, or false for no limit (got 0)",
        err_of(berth.listen, { maxline = 0 }))
      assert.equal("listen: max_input must be a positive integer, or false for no limit (got 1.5)",
        err_of(berth.listen, { max_input = 1.5 }))
      local server = assert(berth.listen { host = "127.0.0.1", maxline = 100, max_output = false })
      local lim = server:limits()
      server:close()
      assert.equal(100, lim.maxline)
      assert.is_false(lim.max_output)
      assert.is_nil(lim.cpu_budget, "a server's limits have no loop-wide ones")
    end)

    it("booleans are booleans, strings are strings", function()
      assert.equal("listen: reuseaddr must be a boolean (got 1)",
        err_of(berth.listen, { reuseaddr = 1 }))
      assert.equal("listen: host must be a string (got 127)", err_of(berth.listen, { host = 127 }))
      assert.equal('listen: path must be a string without zero bytes (got "/tmp/a\\0b")',
        err_of(berth.listen, { path = "/tmp/a\0b" }))
      assert.equal("listen: backlog must be an integer 0..2147483647 (got -1)",
        err_of(berth.listen, { backlog = -1 }))
      assert.equal("serve: handler must be a function or a handler module's name (got 42)",
        err_of(berth.serve, { handler = 42 }))
      assert.equal("serve: onerror must be a function (got \"x\")",
        err_of(berth.serve, { handler = noop, onerror = "x" }))
    end)

    it("a non-table is named as such", function()
      assert.equal("listen must be a table of options (got nil)", err_of(berth.listen))
      assert.equal("serve must be a table of options (got \"x\")", err_of(berth.serve, "x"))
    end)
  end)

  describe("core.check", function()
    local check = core.check

    it("returns the checked value; nil stays nil", function()
      assert.equal(8080, check.port(8080.0, "p"))
      assert.equal("integer", math.type(check.port(8080.0, "p")))
      assert.is_nil(check.port(nil, "p"))
      assert.equal(1.5, check.time(1.5, "t"))
      assert.equal(math.huge, check.time(math.huge, "t"))
      assert.equal(math.huge, check.time(false, "t"))
      assert.equal(64, check.size(64, "s"))
      assert.is_false(check.size(false, "s"))
      assert.equal(3, check.integer(3, "i", 1, 5))
      assert.is_true(check.boolean(true, "b"))
      assert.equal("x", check.string("x", "s"))
      assert.equal("b", check.enum("b", "e", { "a", "b" }))
      assert.equal(noop, check["function"](noop, "f"))
    end)

    it("raises one message shape per kind", function()
      assert.equal("x: port must be an integer 0..65535 (got 70000)", err_of(check.port, 70000, "x: port"))
      assert.equal("t must be a number of seconds >= 0, or false (got NaN)", err_of(check.time, 0 / 0, "t"))
      assert.equal("t must be a number of seconds >= 0, or false (got true)", err_of(check.time, true, "t"))
      assert.equal("s must be a positive integer, or false for no limit (got -5)", err_of(check.size, -5, "s"))
      assert.equal("i must be an integer 1..5 (got 6)", err_of(check.integer, 6, "i", 1, 5))
      assert.equal("i must be an integer >= 1 (got 0)", err_of(check.integer, 0, "i", 1))
      assert.equal('e must be one of "a", "b" or "c" (got "d")', err_of(check.enum, "d", "e", { "a", "b", "c" }))
      assert.equal('e must be one of "a" or "b" (got 1)', err_of(check.enum, 1, "e", { "a", "b" }))
      assert.is_nil(check.enum(nil, "e", { "a", "b" }))
      assert.equal("f must be a function (got table)", err_of(check["function"], {}, "f"))
      local long = ("x"):rep(100)
      assert.equal(('s must be a boolean (got "%s...")'):format(("x"):rep(40)), err_of(check.boolean, long, "s"))
    end)

    it("raises at the caller's level, like error()", function()
      local function api(v) return check.port(v, "api: port", 2) end
      local line = debug.getinfo(1, "l").currentline + 1
      local msg = err_of(function() api(-3) end)
      assert.equal(("spec/check_spec.lua:%d: api: port must be an integer 0..65535 (got -3)")
        :format(line), msg)
    end)
  end)

  describe("core.options", function()
    it("describes listen: its bind keys and every server limit", function()
      local bind, limits = {}, {}
      for key, o in pairs(core.options.listen) do
        if o.bind then bind[#bind + 1] = key end
        if o.scope then limits[#limits + 1] = key end
      end
      table.sort(bind)
      assert.same({ "backlog", "host", "name", "path", "port", "reuseaddr", "reuseport" }, bind)
      assert.equal("port", core.options.listen.port.kind)
      for key, o in pairs(core.options.limits) do
        if o.scope == "server" then
          assert.same(o, core.options.listen[key], key)
        else
          assert.is_nil(core.options.listen[key], key)
        end
      end
      assert.is_true(#limits >= 7)
    end)

    it("describes every limit with its host option", function()
      local n = 0
      for key, o in pairs(core.options.limits) do
        n = n + 1
        assert.truthy(o.option:match("^%-%-[a-z-]+$"), key)
        assert.truthy(#o.help > 10, key)
        assert.truthy(({ size = true, count = true, time = true })[o.kind], key)
      end
      assert.is_true(n >= 8)
      assert.equal("loop", core.options.limits.cpu_budget.scope)
      assert.equal(65536, core.options.limits.maxline.default)
      assert.is_false(core.options.limits.max_connections.default)
    end)

    it("check(name, t) validates a table against one of them", function()
      local t = { host = "127.0.0.1", port = 1, timeout = 2 }
      assert.equal(t, core.options.check("connect", t))
      assert.truthy(err_of(core.options.check, "nosuch", {}):find("invalid option 'nosuch'", 1, true))
    end)
  end)
end)

-- Hot reload of a handler's module tree (lua/berth/reload.lua): the
-- application modules a handler requires from the script's directory are
-- reloaded with it, dependencies first, all built before any is swapped;
-- a library outside that directory is not; the script's directory is on
-- the module path, so the host runs a script by any path from anywhere;
-- a missing handler module is reported with its name and the paths tried.
local support = require "support"
local lib = require "support.reload"
local berth = support.berth
local run = support.run

local RELOADED = "reloaded app.h"
-- The host by its absolute path: these tests run it from another directory.
local HOST = require("berth.core").realpath(support.host_binary())
local FAILED = "reload of app.h failed, the previous version keeps serving: "

local function fixture(name, version)
  return (lib.fixture(name):gsub("@VERSION@", version))
end

-- A temp dir with server.lua, app/h.lua, app/util.lua and app/deep.lua,
-- and a second one, outside it, with ext/counter.lua. Returns the dirs and
-- a table of the module paths.
local function setup()
  local dir, h = lib.setup(nil, "reload_tree_handler")
  lib.save(h, fixture("reload_tree_handler", "h1"))
  local ext = support.tmpdir()
  assert(os.execute("mkdir " .. support.shquote(ext .. "/ext")))
  local paths = { h = h, util = dir .. "/app/util.lua", deep = dir .. "/app/deep.lua",
    ext = ext .. "/ext/counter.lua" }
  lib.save(paths.util, fixture("reload_tree_util", "u1"))
  lib.save(paths.deep, fixture("reload_tree_deep", "d1"))
  lib.save(paths.ext, fixture("reload_tree_ext", "e1"))
  return dir, ext, paths
end

local function start(dir, ext, args)
  return lib.start(dir, args, nil, { LUA_PATH = dir .. "/?.lua;" .. ext .. "/?.lua;;" })
end

-- Task only: the reply a new connection gets.
local function probe(port)
  return assert(lib.request(port, "probe"))
end

describe("hot reload of the module tree", function()
  before_each(support.before)
  after_each(support.after)

  it("--watch: an edit of a module the handler requires reloads the handler with every module "
    .. "between them; open connections keep the old tree; a library outside is never reloaded",
    function()
      local dir, ext, paths = setup()
      local proc, port = start(dir, ext, { "--watch" })
      local stats, t_reload
      run(function()
        assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", probe(port))
        local old = support.connect(port)
        assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", support.roundtrip(old, "x"))

        lib.save(paths.deep, fixture("reload_tree_deep", "d2")) -- two levels down
        proc:wait_log(RELOADED, 1, 2)
        t_reload = os.time()
        -- app.util ran again after app.deep, so it was built with d2.
        assert.equal("h=h1 util=u1+d2 ext=e1 loads=1", probe(port))
        assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", support.roundtrip(old, "x"))

        lib.save(paths.util, fixture("reload_tree_util", "u2"))
        proc:wait_log(RELOADED, 2, 2)
        assert.equal("h=h1 util=u2+d2 ext=e1 loads=1", probe(port))

        -- The library: edited, and even SIGHUP, which reloads everything of
        -- the application's, leaves it as it was loaded.
        lib.save(paths.ext, fixture("reload_tree_ext", "e2"))
        berth.sleep(0.3) -- a watch on it would have fired by now
        assert.equal(2, proc:count(RELOADED), proc:stderr())
        proc:kill("HUP")
        proc:wait_log(RELOADED, 3, 2)
        assert.equal("h=h1 util=u2+d2 ext=e1 loads=1", probe(port))
        assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", support.roundtrip(old, "x"))
        old:close()
        stats = assert(lib.request(port, "stats"))
      end, 10)
      support.stop_clean(proc)
      local err = proc:stderr()
      assert.is_truthy(err:find(RELOADED .. " %(%d+ ms; with app.deep, app.util%)\n"), err)
      assert.is_truthy(err:find(RELOADED .. " %(%d+ ms; with app.util%)\n"), err)
      assert.equal(0, proc:count(FAILED), err)
      -- last_reload is a time, and the module has its own field.
      local n, modules, last = stats:match("^reloads=(%d+) modules=(%S+) last=([%d.]+)$")
      assert.same({ "3", "app.h" }, { n, modules }, stats)
      assert.is_true(math.abs(tonumber(last) - t_reload) < 5, stats)
    end)

  it("a broken edit anywhere in the tree changes nothing, not even the good edits saved with it; "
    .. "fixed, the whole tree loads", function()
    local dir, ext, paths = setup()
    local proc, port = start(dir, ext) -- SIGHUP only: both saves are in before it
    run(function()
      assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", probe(port))
      lib.save(paths.h, fixture("reload_tree_handler", "h2"))
      lib.save(paths.util, fixture("reload_tree_util", "u2"))
      lib.save(paths.deep, "return { VERSION = ", "inplace", { exact = true })
      proc:kill("HUP")
      proc:wait_log(FAILED, 1, 2)
      assert.is_truthy(proc:stderr():find(FAILED .. paths.deep .. ":1: ", 1, true), proc:stderr())
      assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", probe(port))
      -- A module that raises while loading: the same.
      lib.save(paths.deep, "error('deep refuses')", "inplace", { exact = true })
      proc:kill("HUP")
      proc:wait_log(FAILED, 2, 2)
      assert.is_truthy(proc:stderr():find(FAILED .. paths.deep .. ":1: deep refuses", 1, true),
        proc:stderr())
      assert.equal("h=h1 util=u1+d1 ext=e1 loads=1", probe(port))
      lib.save(paths.deep, fixture("reload_tree_deep", "d3"))
      proc:kill("HUP")
      proc:wait_log(RELOADED, 1, 2)
      assert.equal("h=h2 util=u2+d3 ext=e1 loads=1", probe(port))
    end, 10)
    support.stop_clean(proc)
  end)

  it("berth /abs/path/server.lua from another directory finds the script's modules", function()
    local dir = lib.setup("v1")
    -- From /, with no LUA_PATH: only the script's own directory can help.
    local p = support.start({ "sh", "-c", 'cd / && exec "$@"', "sh", HOST,
      dir .. "/server.lua" }, { env = { LUA_PATH = ";;", PORT = "0" } })
    local line = p:readline()
    local port = math.tointeger(tonumber((line or ""):match("^listening on 127%.0%.0%.1:(%d+)$")))
    assert(port, ("no listening line (%s)\n%s"):format(tostring(line), p:describe()))
    run(function()
      assert.equal(lib.reply("ok", "v1", "hello"), lib.request(port, "hello"))
    end)
    support.stop_clean(p)
  end)

  it("a missing handler module: its name, the paths tried, and the script's line", function()
    local dir = lib.setup("v1")
    local p = support.start({ "sh", "-c", 'cd / && exec "$@"', "sh", HOST,
      dir .. "/server.lua" }, { env = { LUA_PATH = ";;", HANDLER = "app.missing" } })
    local out, how, code = p:wait()
    local err = p:stderr()
    assert.equal("", out)
    assert.same({ "exit", 1 }, { how, code })
    -- server.lua calls berth.serve on its line 6: the error points there.
    assert.is_truthy(err:find("[error] " .. dir .. "/server.lua:6: handler module app.missing not found; tried:\n"
      .. "\t\tno file '" .. dir .. "/app/missing.lua'\n"
      .. "\t\tno file '" .. dir .. "/app/missing/init.lua'\n", 1, true), err)
    assert.is_falsy(err:find("not found:no", 1, true), err)
  end)

  it("on(\"connection\"|\"packet\", \"module\"), serve(\"module\"), serve{handler = \"module\"} "
    .. "and http.serve{handler = \"module\"}: errors point at the caller",
    function()
      local dir = support.tmpdir()
      support.write_file(dir .. "/bad.lua", "return 42\n")
      local saved = package.path
      package.path = dir .. "/?.lua;" .. package.path
      local server <close> = assert(berth.listen { port = 0 })
      local ok, err = pcall(function() server:on("connection", "nomod") end)
      assert.is_false(ok)
      assert.matches("^spec/reload_tree_spec%.lua:%d+: handler module nomod not found; tried:\n\t", err)
      ok, err = pcall(function()
        local _server = berth.serve { port = 0, handler = "nomod" } -- not a tail call
      end)
      assert.is_false(ok)
      assert.matches("^spec/reload_tree_spec%.lua:%d+: handler module nomod not found", err)
      ok, err = pcall(function()
        local _server = require("berth.http").serve { port = 0, handler = "nomod" }
      end)
      assert.is_false(ok)
      assert.matches("^spec/reload_tree_spec%.lua:%d+: handler module nomod not found; tried:\n\t", err)
      local d <close> = assert(berth.udp { port = 0 })
      ok, err = pcall(function() d:on("packet", "nomod") end)
      assert.is_false(ok)
      assert.matches("^spec/reload_tree_spec%.lua:%d+: handler module nomod not found; tried:\n\t", err)
      ok, err = pcall(function() d:serve("nomod") end)
      assert.is_false(ok)
      assert.matches("^spec/reload_tree_spec%.lua:%d+: handler module nomod not found", err)
      ok, err = pcall(function() d:on(5, print) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'on' %(invalid option '5'%)$", err)
      ok, err = pcall(berth.serve, { port = 0, handler = "bad" })
      assert.is_false(ok)
      assert.equal(dir .. "/bad.lua: module bad must return a function or a table with "
        .. "handle(sock) (got number)", err)
      assert.equal(1, berth.stats().servers, "serve bound a port for a handler it cannot load")
      package.path = saved
    end)
end)

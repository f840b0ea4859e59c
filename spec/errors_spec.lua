-- Errors as a new user meets them (issue 11): the README's table of codes
-- against every code the sources can return; codes for a missing unix
-- path, an address not on this host, a descriptor that is not a socket;
-- listen with a host name; argument errors that name the method; error
-- objects with __tostring; a missing script reported without a traceback;
-- --strict and the berth.onerror recipe.
local support = require "support"
local berth = support.berth
local run = support.run

local ENOENT, EADDRNOTAVAIL, ENOTSOCK = 2, 99, 88

-- The repository: spec/ may be a symbolic link into it (scripts/sanitize
-- runs the suite from a tree of links that has no README.md or src/).
local ROOT = require("berth.core").realpath("spec"):match("^(.*)/spec$")

local function read(path) return assert(support.read_file(ROOT .. "/" .. path), path) end

local function ls(pattern)
  local list = {}
  local h = assert(io.popen("cd " .. support.shquote(ROOT) .. " && ls " .. pattern))
  for line in h:lines() do list[#list + 1] = line end
  h:close()
  return list
end

-- Every error code the sources can return, code -> the first file seen:
-- the mappings of every *_errcode function (net_errcode's of errnos,
-- shdict_errcode's, tls_errcode's), and the literal codes of util_fail,
-- sock_destroy, a socket's `why`, a nil then a literal, and Lua's
-- `return nil, "code"`.
local function source_codes()
  local codes = {}
  local function add(code, file) codes[code] = codes[code] or file end
  local mappings = 0
  for _, f in ipairs(ls("src/*.c")) do
    local text = read(f)
    for c in text:gmatch('util_fail%(L, "(%w+)"%)') do add(c, f) end
    for c in text:gmatch('sock_destroy%([^;]-"(%w+)"') do add(c, f) end
    for c in text:gmatch('why = "(%w+)"') do add(c, f) end
    for c in text:gmatch('lua_pushnil%(L%);%s*lua_push%a+%(L, "(%w+)"%)') do add(c, f) end
    for body in text:gmatch("\nconst char %*[%w_]+_errcode%([^)]*%) {(.-)\n}") do
      mappings = mappings + 1
      for c in body:gmatch('return "(%w+)";') do
        if c ~= "ok" then add(c, f) end
      end
    end
  end
  assert(mappings >= 2, "the *_errcode functions were not found in src/")
  for _, f in ipairs(ls("lua/berth/*.lua")) do
    for c in read(f):gmatch('return nil, "(%w+)"') do add(c, f) end
  end
  return codes
end

-- The codes of the README's table under "**Errors.**".
local function readme_codes()
  local text = read("README.md")
  local at = assert(text:find("| code | meaning |", 1, true), "no table of codes in README.md")
  local codes = {}
  for line in text:sub(at):gmatch("([^\n]*)\n") do
    if line == "" then break end
    local code = line:match('^| `"(%w+)"` |')
    if code then codes[code] = true end
  end
  return codes
end

describe("error codes", function()
  before_each(support.before)
  after_each(support.after)

  it("README's table lists every code the sources can return, and no other", function()
    local src, doc = source_codes(), readme_codes()
    for _, known in ipairs { "closed", "reset", "timeout", "toolarge", "refused", "notfound",
      "canceled", "addrnotavail", "nofile", "exists", "error" } do
      assert.is_truthy(src[known], "the scan of the sources missed " .. known)
    end
    for code, file in pairs(src) do
      assert.is_true(doc[code], ('"%s" (returned in %s) is not in README\'s table'):format(code, file))
    end
    for code in pairs(doc) do
      assert.is_truthy(src[code], ('README\'s table has "%s", which nothing returns'):format(code))
    end
  end)

  it("a missing unix socket path is 'notfound' with its errno, for connect and listen", function()
    local dir = support.tmpdir()
    run(function()
      support.assert_fail("notfound", ENOENT, berth.connect { path = dir .. "/none.sock", timeout = 2 })
    end)
    support.assert_fail("notfound", ENOENT, berth.listen { path = dir .. "/no/such/dir.sock" })
  end)

  it("an address that is not this host's is 'addrnotavail'", function()
    support.assert_fail("addrnotavail", EADDRNOTAVAIL, berth.listen { host = "192.0.2.1" })
  end)

  it("adopting a descriptor that is not a socket is 'invalid'", function()
    local other = berth.loop() -- its epoll descriptor: surely not a socket
    local _, code, errno = berth.listen { fd = other.fd() }
    assert.same({ "invalid", ENOTSOCK }, { code, errno })
    assert.is_false(other.step(0), "the descriptor was taken from its loop")
  end)
end)

describe("listen with a host name", function()
  before_each(support.before)
  after_each(support.after)

  local name = support.loopback_name()

  it("resolves it once, in the main chunk (the loop is not running yet)", function()
    if not name then return pending("no name but localhost for 127.0.0.1 in /etc/hosts") end
    local server <close> = assert(berth.listen { host = name, port = 0 })
    assert.same({ "127.0.0.1", server:port() }, { server:address() })
  end)

  it("resolves it in a task, off the loop, and says 'notfound' for a name that does not resolve",
    function()
      run(function()
        if name then
          local server <close> = assert(berth.listen { host = name, port = 0 })
          assert.equal("127.0.0.1", (server:address()))
        end
        local server, code = berth.listen { host = "no-such-host.invalid", port = 0 }
        assert.same({ nil, "notfound" }, { server, code })
      end, 10)
    end)

  it("raises at the caller's line for a host that cannot be a name", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() local _s = berth.listen { host = "bad host" } end)
    assert.is_false(ok)
    assert.equal(('spec/errors_spec.lua:%d: listen: host must be an IP address, "*" or a host '
      .. 'name (got "bad host")'):format(line), err)
  end)

  it("raises in a callback, where a lookup cannot wait, saying what to do instead", function()
    local err
    run(function()
      local p <close> = support.pair()
      p.peer:on("data", function()
        local ok, e = pcall(berth.listen, { host = "no-such-host.invalid", port = 0 })
        err = ok and "no error" or e
      end)
      assert(p.client:write("x"))
      support.wait_until(function() return err end)
    end)
    assert.matches('listen: the name "no-such-host.invalid" needs a lookup, which cannot wait '
      .. "here", err, 1, true)
    assert.matches("give a numeric address, or call listen from a task or the main chunk", err, 1,
      true)
  end)
end)

describe("messages", function()
  before_each(support.before)
  after_each(support.after)

  it("an argument error names the method, however the method was called", function()
    run(function()
      local p <close> = support.pair()
      local sock = p.client
      local function raised(...)
        local ok, err = pcall(...)
        assert.is_false(ok)
        return err
      end
      assert.equal("bad argument #2 to 'berth.Socket.read' (string expected, got table)",
        raised(sock.read, sock, {}))
      assert.matches("bad argument #1 to 'read' %(string expected, got table%)$",
        raised(function() return sock:read({}) end))
      local t = berth.timer(100, 0, function() end)
      assert.equal("bad argument #1 to 'berth.Timer.cancel' (berth.Timer expected, got number)",
        raised(t.cancel, 5))
      t:cancel()
      local server <close> = support.listen()
      assert.matches("bad argument #1 to 'on' %(invalid option '5'%)$",
        raised(function() server:on(5, print) end))
    end)
  end)

  it("every C method of every class is named by its class (package.loaded)", function()
    require "berth.http"
    require "berth.websocket"
    run(function() end) -- (a Task)
    -- Every class with a method table: its metatable's __index, or its
    -- "methods" where __index is a function (berth.http.Request).
    local classes = {}
    for key, mt in pairs(debug.getregistry()) do
      if type(key) == "string" and key:match("^berth%.[%w.]+$") and type(mt) == "table" then
        local methods = type(mt.__index) == "table" and mt.__index or mt.methods
        if type(methods) == "table" then classes[key] = methods end
      end
    end
    for _, class in ipairs { "berth.Socket", "berth.ServerSocket", "berth.Datagram", "berth.Timer",
      "berth.Signal", "berth.FileWatch", "berth.Task", "berth.WebSocket", "berth.http.Request",
      "berth.http.Response" } do
      assert.is_truthy(classes[class], class .. " was not found in the registry")
    end
    local n = 0
    for class, methods in pairs(classes) do
      assert.equal(methods, package.loaded[class], class)
      for name, fn in pairs(methods) do
        if debug.getinfo(fn, "S").what == "C" then
          local ok, err = pcall(fn, 42)
          assert.is_false(ok, class .. "." .. name)
          -- (an alias, such as localaddr for address, may be found first)
          local named = err:match("^bad argument #1 to '" .. class:gsub("%.", "%%.") .. "%.([%w_]+)'")
          assert.is_truthy(named, err)
          assert.equal(fn, methods[named], err)
          n = n + 1
        end
      end
    end
    assert.is_true(n >= 40, "methods checked: " .. n)
  end)

  it("the host prints an error object through its __tostring", function()
    local _, code, err = support.run_host { "-e",
      "error(setmetatable({}, {__tostring = function() return 'custom error object' end}))" }
    assert.equal(1, code)
    assert.matches(" %[error%] custom error object\n\tstack traceback:\n", err)
    assert.is_falsy(err:find("error object is a table value", 1, true), err)
  end)

  it("a task's error object goes through __tostring too", function()
    local _, code, err = support.run_host { "-e", [[
      local berth = require "berth"
      berth.spawn(function()
        error(setmetatable({}, {__tostring = function() return "from a task" end}))
      end)]] }
    assert.equal(0, code, err)
    assert.matches(" %[error%] handler error: from a task\n", err)
  end)

  it("a missing script or a syntax error: one line, no traceback", function()
    local out, code, err = support.run_host { "spec/fixtures/no-such-script.lua" }
    assert.same({ "", 1 }, { out, code })
    assert.matches("^%S+ %d+ %[error%] cannot open spec/fixtures/no%-such%-script%.lua[^\n]*\n$",
      err)
    out, code, err = support.run_host { "-e", "this is not lua" }
    assert.same({ "", 1 }, { out, code })
    assert.matches("^%S+ %d+ %[error%] %(command line%):1: syntax error near 'is'\n$", err)
  end)
end)

describe("task errors and the exit status", function()
  before_each(support.before)
  after_each(support.after)

  local FAILING = [[
    local berth = require "berth"
    berth.spawn(function() assert(false, "a task failed") end)
    berth.timer(0.5, 0, function() print("not stopped") end) -- a shutdown cancels it
  ]]

  it("a failed task does not change the exit status by default", function()
    local out, code, err = support.run_host { "-e", FAILING }
    assert.equal(0, code, err)
    assert.equal("not stopped\n", out)
    assert.matches("a task failed", err)
  end)

  it("--strict: an unhandled task error shuts down and exits 1", function()
    local t0 = support.clock()
    local out, code, err = support.run_host { "--strict", "-e", FAILING }
    assert.equal(1, code, err)
    assert.equal("", out)
    assert.is_true(support.clock() - t0 < 5)
    assert.matches("%[error%] handler error: %(command line%):2: a task failed\n", err)
    assert.matches("%[error%] %-%-strict: a task failed and nothing handled the error", err)
  end)

  it("--strict: an error a handler of the script takes is handled", function()
    local out, code, err = support.run_host { "--strict", "-e", [[
      local berth = require "berth"
      berth.onerror(function(e) print("handled: " .. tostring(e):match("a task failed")) end)
      berth.spawn(function() assert(false, "a task failed") end)]] }
    assert.equal(0, code, err)
    assert.equal("handled: a task failed\n", out)
  end)

  it("the README's berth.onerror recipe exits non-zero from a library program", function()
    local text = read("README.md")
    local recipe = text:match("```lua\n(%-%- exit non%-zero when a task fails.-\n)```")
    assert(recipe, "no recipe in README.md")
    local dir = support.tmpdir()
    support.write_file(dir .. "/app.lua", "local berth = require 'berth'\n"
      .. "berth.spawn(function() assert(false, 'a task failed') end)\n" .. recipe)
    local p = support.start({ support.lua_binary(), dir .. "/app.lua" }, { env = support.lua_env() })
    local out, how, code = p:wait()
    assert.same({ "exit", 1 }, { how, code }, p:stderr())
    assert.equal("", out)
    assert.matches("a task failed", p:stderr())
  end)
end)

-- The documentation matches what runs: README's usage block is `berth
-- --help`; README's LUA_PATH works from any directory; scripts/docs builds
-- the reference of the public API only, each method under its class.
local support = require "support"

-- The repository: spec/ may be a symbolic link into it (scripts/sanitize
-- runs the suite from a tree of links that has no README.md or scripts/).
local REPO = require("berth.core").realpath("spec"):match("^(.*)/spec$")
-- Where the suite runs: its lua/ and build/ are the ones to require.
local HERE = require("berth.core").realpath(".")

local function sh(cmd)
  local h = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = h:read("a")
  h:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return body, tonumber(rc)
end

local function readme() return assert(support.read_file(REPO .. "/README.md")) end

describe("documentation", function()
  before_each(support.before)
  after_each(support.after)

  it("README's host options are `berth --help`, word for word", function()
    local usage = readme():match("### Host options\n\n```\n(.-)```\n")
    assert(usage, "no usage block in README.md")
    local out, code = support.run_host { "--help" }
    assert.equal(0, code)
    assert.equal(out, usage)
  end)

  it("README's LUA_PATH and LUA_CPATH make `require \"berth\"` work from any directory",
    function()
      local line = readme():match("\n  (export LUA_PATH=[^\n]+)\n")
      assert(line, "no export line in README.md")
      local out, rc = sh(("cd %s && %s && cd / && %s -e 'print(require(\"berth\").version)'")
        :format(support.shquote(HERE), line, support.lua_binary()))
      assert.equal(0, rc, out)
      assert.equal(support.berth.version .. "\n", out)
    end)

  it("scripts/docs documents the public modules only, each method under its class", function()
    -- Debian's ldoc runs under lua5.1 or lua5.2; scripts/test installs them.
    if not (sh("command -v ldoc")):find("ldoc")
      or not (sh("command -v lua5.1 || command -v lua5.2")):find("lua") then
      return pending("lua-ldoc (with lua5.1) is not installed: scripts/docs installs it")
    end
    local out, rc = sh(support.shquote(REPO .. "/scripts/docs"))
    assert.equal(0, rc, out)
    assert.is_falsy(out:find("lua/berth/[%w_]+%.lua:%d+:"), "LDoc warnings:\n" .. out)
    local ls = sh("ls " .. support.shquote(REPO .. "/build/docs/modules"))
    assert.equal("berth.html\nberth.http.html\nberth.log.html\nberth.reload.html\n"
      .. "berth.sync.html\nberth.websocket.html\n", ls)
    local html = assert(support.read_file(REPO .. "/build/docs/modules/berth.html"))
    local functions = html:match('<a name="Functions"></a>(.-)<a name="Class_Socket"></a>')
    local socket = html:match('<a name="Class_Socket"></a>(.-)<a name="Class_ServerSocket"></a>')
    local server = html:match('<a name="Class_ServerSocket"></a>(.*)$')
    assert(functions and socket and server, "sections Functions, Socket, ServerSocket")
    assert.is_falsy(functions:find('name = "[%w]*:'), "a method among the functions")
    for _, name in ipairs { "listen", "serve", "connect", "spawn", "run", "step", "shutdown" } do
      assert.is_truthy(functions:find('name = "' .. name .. '"', 1, true), name)
    end
    for _, m in ipairs { "lines", "read", "write", "close", "peer", "on" } do
      assert.is_truthy(socket:find('name = "Socket:' .. m .. '"', 1, true), "Socket:" .. m)
    end
    for _, m in ipairs { "connections", "accept", "on", "close", "port" } do
      assert.is_truthy(server:find('name = "ServerSocket:' .. m .. '"', 1, true),
        "ServerSocket:" .. m)
    end
    -- berth.http and berth.websocket: classes first, then the module's
    -- functions in a section of their own (none of them under a class).
    local function sections(module, names)
      local text = assert(support.read_file(REPO .. "/build/docs/modules/" .. module .. ".html"))
      local found = {}
      for i, name in ipairs(names) do
        local next_name = names[i + 1]
        found[name] = text:match('<a name="' .. name .. '"></a>(.-)'
          .. (next_name and '<a name="' .. next_name .. '"></a>' or "$"))
        assert(found[name], module .. ": no section " .. name)
      end
      return found
    end
    local h = sections("berth.http", { "Class_Request", "Class_Response", "Functions" })
    assert.is_truthy(h.Class_Request:find('name = "Request:body"', 1, true))
    assert.is_truthy(h.Class_Response:find('name = "Response:sendfile"', 1, true))
    assert.is_falsy(h.Class_Response:find('name = "serve"', 1, true), "serve under Response")
    for _, name in ipairs { "serve", "static", "request", "closeidle" } do
      assert.is_truthy(h.Functions:find('name = "' .. name .. '"', 1, true), "http." .. name)
    end
    local w = sections("berth.websocket", { "Functions", "Class_WebSocket", "Class_Group" })
    for _, name in ipairs { "upgrade", "connect", "group" } do
      assert.is_truthy(w.Functions:find('name = "' .. name .. '"', 1, true), "websocket." .. name)
    end
    assert.is_truthy(w.Class_WebSocket:find('name = "WebSocket:close"', 1, true))
    for _, m in ipairs { "add", "remove", "send", "count" } do
      assert.is_truthy(w.Class_Group:find('name = "Group:' .. m .. '"', 1, true), "Group:" .. m)
    end
    assert.is_falsy(w.Class_Group:find('name = "Group:group"', 1, true), "group under Group")
  end)
end)

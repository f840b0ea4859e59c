-- Embedding (README "Embedding"): berth as a library under the stock
-- interpreter, driven by step() from the application's own loop; the C API
-- example; an install into a prefix that alone makes `require "berth"`
-- work; libberth found through pkg-config, shared (with the rpath README
-- gives) and static.
local support = require "support"
local berth = support.berth

local function sh(cmd)
  local h = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = h:read("a")
  h:close()
  local body, rc = out:match("^(.-)rc=(%d+)%s*$")
  return body, tonumber(rc)
end

describe("embedding", function()
  before_each(support.before)
  after_each(support.after)

  it("serves and connects from a plain while loop with step(), on the default loop and on berth.loop()", function()
    local out, code, err = support.run_fixture("embed_step_loop")
    assert.equal(0, code, err)
    assert.equal("default:ping\tother:ping\t0\t0\ttrue\n", out)
  end)

  it("berth.fd() is the loop's epoll descriptor, and berth.loop() has its own", function()
    local fd, other = berth.fd(), berth.loop().fd()
    assert.is_true(math.type(fd) == "integer" and fd >= 0)
    assert.are_not.equal(fd, other)
    local target = sh("readlink /proc/" .. support.pid() .. "/fd/" .. fd)
    assert.equal("anon_inode:[eventpoll]\n", target)
  end)

  it("step() returns false once nothing is left, and does not block with timeout 0", function()
    local l = berth.loop()
    assert.is_false(l.step(0))
    local t0 = support.clock()
    l.step(0)
    assert.is_true(support.clock() - t0 < 2) -- it returned: no blocking wait
  end)

  it("runs the C embedding example: a C function called from a Lua handler over a real connection", function()
    local out, rc = sh("build/examples/embed_host")
    assert.equal(0, rc, out)
    assert.is_truthy(out:match("^reply: htreb ,olleh %(after %d+ turns%)\n$"), out)
  end)

  it("installs into a prefix from which stock lua5.4 requires berth, and libberth builds a C "
    .. "program via pkg-config", function()
    local prefix = support.tmpdir()
    local out, rc = sh("cmake --install build --prefix " .. support.shquote(prefix))
    assert.equal(0, rc, out)
    local env = ("LUA_PATH=%q LUA_CPATH=%q "):format(
      prefix .. "/share/lua/5.4/?.lua;" .. prefix .. "/share/lua/5.4/?/init.lua",
      prefix .. "/lib/lua/5.4/?.so")
    out, rc = sh(env .. [[lua5.4 -e 'local b = require "berth"; ]]
      .. [[print(b.version, package.searchpath("berth.core", package.cpath))']])
    assert.equal(0, rc, out)
    assert.equal(("%s\t%s/lib/lua/5.4/berth/core.so\n"):format(berth.version, prefix), out)

    local exe = prefix .. "/embed_host"
    out, rc = sh(("PKG_CONFIG_PATH=%s/lib/pkgconfig cc -o %s examples/embed/host.c "
      .. "$(PKG_CONFIG_PATH=%s/lib/pkgconfig pkg-config --cflags --libs berth)")
      :format(prefix, exe, prefix))
    assert.equal(0, rc, out)
    out, rc = sh(("LD_LIBRARY_PATH=%s/lib %s"):format(prefix, exe))
    assert.equal(0, rc, out)
    assert.is_truthy(out:match("^reply: htreb ,olleh"), out)
    -- Without it the loader cannot find libberth, as README says.
    out, rc = sh("env -u LD_LIBRARY_PATH " .. exe)
    assert.are_not.equal(0, rc)
    assert.is_truthy(out:find("libberth.so.0: cannot open shared object file", 1, true), out)
  end)

  it("README's two ways to link libberth from a prefix start without LD_LIBRARY_PATH: the "
    .. "rpath line and berth-static", function()
    local prefix = support.tmpdir()
    local out, rc = sh("cmake --install build --prefix " .. support.shquote(prefix))
    assert.equal(0, rc, out)
    -- The repository's README (spec/ may be a link into it: scripts/sanitize).
    local repo = require("berth.core").realpath("spec"):match("^(.*)/spec$")
    local readme = assert(support.read_file(repo .. "/README.md"))
    local block = readme:match("```sh\n(export PKG_CONFIG_PATH=[^`]-)```")
    assert(block, "no link commands in README.md")
    local lines = {}
    for cc in block:gmatch("\n(cc [^\n]+)") do lines[#lines + 1] = cc end
    assert.equal(2, #lines, block)
    -- A sanitizer build's libberth.a needs the sanitizer runtimes linked in
    -- (its libberth.so brings them itself).
    local cache = support.read_file("build/CMakeCache.txt") or ""
    local sanitized = cache:find("\nBERTH_SANITIZE:BOOL=ON\n", 1, true) ~= nil
    for i, cc in ipairs(lines) do
      local exe = ("%s/app%d"):format(prefix, i)
      cc = cc:gsub(" app%.c ", " examples/embed/host.c "):gsub("%-o app ", "-o " .. exe .. " ")
      if sanitized then cc = cc .. " -fsanitize=address,undefined" end
      out, rc = sh(("P=%s; %s && %s"):format(support.shquote(prefix),
        block:match("^(export PKG_CONFIG_PATH=[^\n]+)"), cc))
      assert.equal(0, rc, cc .. "\n" .. out)
      out, rc = sh("env -u LD_LIBRARY_PATH " .. exe)
      assert.equal(0, rc, cc .. "\n" .. out)
      assert.is_truthy(out:match("^reply: htreb ,olleh"), out)
      local ldd = sh("ldd " .. exe)
      if cc:find("berth-static", 1, true) then
        assert.is_falsy(ldd:find("libberth", 1, true), ldd)
      else
        assert.is_truthy(ldd:find(prefix .. "/lib/pkgconfig/../../lib/libberth.so.0", 1, true), ldd)
      end
    end
  end)
end)

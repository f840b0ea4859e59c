-- Embedding (README "Embedding"): berth as a library under the stock
-- interpreter, driven by step() from the application's own loop; the C API
-- example; an install into a prefix that alone makes `require "berth"`
-- work; libberth found through pkg-config.
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
  end)
end)

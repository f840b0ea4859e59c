-- Regression (issue 9, class 14): descriptors were opened before the
-- userdata that owns them. With --max-memory and a full heap, every
-- accepted client leaked its descriptor forever (CLOSE_WAIT), listen could
-- leave its port bound and its unix socket file behind, and a one-shot
-- timer whose task could not be created was lost. Class: the object exists
-- before its descriptor everywhere one is opened (accept keeps a spare
-- Socket made ahead; listen, connect and adopt make theirs first); an
-- accept that cannot allocate backs off like EMFILE; a timer whose task
-- cannot be made is retried.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

local function fds(pid)
  local n = 0
  local ls = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null")
  for _ in ls:lines() do n = n + 1 end
  ls:close()
  return n
end

describe("regress: the userdata before the descriptor", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("a full heap leaks no descriptor and loses no timer", function()
    local dir = helpers.tmpdir()
    local path = dir .. "/oom.sock"
    local proc = helpers.start({ helpers.host_binary(), "--max-memory", "24M",
      "spec/fixtures/regress_oom_descriptors.lua", path })
    local line = proc:readline()
    local port = line and math.tointeger(tonumber(line:match(":(%d+)$")))
    assert(port, "no listening line\n" .. proc:describe())
    assert.equal("heap full", proc:readline(), proc:describe())
    local before = fds(proc.pid)
    local clients = {}
    run(function()
      for i = 1, 20 do clients[i] = helpers.connect(port) end
      berth.sleep(0.5) -- the server tries to accept meanwhile
      local during = fds(proc.pid)
      assert.is_true(during <= before + 2,
        ("descriptors went from %d to %d while the heap was full"):format(before, during))
      for i = 1, 20 do
        assert.equal("hi", clients[i]:read("l", 5), "client " .. i)
        clients[i]:close()
      end
    end, 15)
    assert.equal("listen failed", proc:readline(), proc:describe())
    assert.equal("no file", proc:readline(), proc:describe())
    assert.equal("heap freed", proc:readline(), proc:describe())
    assert.equal("timer fired: true", proc:readline(), proc:describe())
    proc:kill("TERM")
    proc:wait()
  end)
end)

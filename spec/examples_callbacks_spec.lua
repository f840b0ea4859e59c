-- examples/upper_callbacks.lua (callback mode on served connections), run
-- by the host as a child process (PORT=0) and driven over real sockets.
local helpers = require "support"
local berth = helpers.berth
local run = helpers.run

describe("examples: upper_callbacks.lua", function()
  before_each(helpers.before)
  after_each(helpers.after)

  it("keeps a connection whose handler returned, and upper-cases what it gets", function()
    local proc, _, port = helpers.start_example("upper_callbacks")
    local ok, err = pcall(run, function()
      local a <close> = helpers.connect(port)
      local b <close> = helpers.connect(port)
      assert.equal("HELLO", helpers.roundtrip(a, "hello"))
      assert.equal("WORLD", helpers.roundtrip(b, "world"))
      berth.sleep(0.2) -- long after the handlers returned: still open
      assert.equal("AGAIN", helpers.roundtrip(a, "again"))
      -- 2 MiB that the client reads only after writing it all: the server
      -- pauses reading while the buffer is full and resumes on drain.
      local blob = helpers.random_bytes(2 * 1024 * 1024, 3)
      berth.spawn(function() assert(b:write(blob)) end)
      berth.sleep(0.3)
      helpers.assert_bytes(blob:upper(), b:read(#blob, 10))
      local host, lport = a:address()
      a:close()
      helpers.wait_until(function()
        return proc:stderr():find(("%s:%d left (closed)"):format(host, lport), 1, true)
      end, 2, "the close callback's log line with the peer address")
    end, 20)
    proc:kill("TERM")
    local rest, how, code = proc:wait()
    if not ok then error(err, 0) end
    assert.equal("", rest)
    assert.same({ "exit", 0 }, { how, code }, proc:stderr())
  end)
end)

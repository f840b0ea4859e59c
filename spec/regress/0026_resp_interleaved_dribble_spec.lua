-- Regression: a CPU amplification in berth.resp. src/resp_lua.c kept where
-- an unfinished command stopped in ONE state per loop, owned by one socket
-- at a time; a piece arriving on any other socket parsed that socket's
-- command again from its first byte. Two connections sending big commands
-- in small pieces, interleaved, thus cost O(buffered bytes) per piece: a
-- few clients dribbling "*1000000\r\n" and "$0\r\n\r\n" arguments could pin
-- a core for the whole message_timeout. Class: every socket's unfinished
-- command resumes where it stopped, whatever the other sockets do (its
-- progress is kept with the socket while it is unfinished), so the bytes
-- the parser goes through stay a small multiple of the bytes received.
-- The work is counted (core.resp.stats().parsed), not timed.
local support = require "support"
local core = require "berth.core"
local resp = require "berth.resp"
local berth = support.berth
local run = support.run

local ARGS = 33333 -- "$0\r\n\r\n" each: a command of 200 KB
local PIECE = 100

describe("regress: RESP commands dribbling in on two sockets, interleaved", function()
  before_each(support.before)
  after_each(support.after)

  it("are parsed in time linear in their bytes", function()
    run(function()
      local cmd = ("*%d\r\n"):format(ARGS) .. ("$0\r\n\r\n"):rep(ARGS)
      local a <close> = support.pair()
      local b <close> = support.pair()
      local got = {}
      local parsed0 = core.resp.stats().parsed
      berth.spawn(function() got.a = { resp.read(a.peer, 20) } end)
      berth.spawn(function() got.b = { resp.read(b.peer, 20) } end)
      for i = 1, #cmd, PIECE do -- a piece on each, then both are read
        assert(a.client:write(cmd:sub(i, i + PIECE - 1)))
        assert(b.client:write(cmd:sub(i, i + PIECE - 1)))
        berth.sleep(0)
      end
      support.wait_until(function() return got.a and got.b end, 20, "both commands")
      local parsed = core.resp.stats().parsed - parsed0
      for name, r in pairs(got) do
        assert(r[1], ("%s: %s %s"):format(name, tostring(r[2]), tostring(r[3])))
        assert.equal(ARGS, #r[1])
        assert.equal("", r[1][1])
      end
      local ratio = parsed / (2 * #cmd)
      assert.is_true(ratio <= 4,
        ("the parser went through %d bytes for %d received (%.1fx)"):format(parsed, 2 * #cmd, ratio))
    end)
  end)
end)

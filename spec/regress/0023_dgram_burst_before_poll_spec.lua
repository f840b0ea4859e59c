-- Regression (issue 13): a burst of sends could stay queued while the loop
-- blocked. The second send on a Datagram in one round of callbacks is
-- queued for the flusher, a prepare and a check watcher of the lowest
-- priority. The loop's first Datagram starts them; when a task the
-- scheduler resumed in the prepare phase made it, the prepare watcher
-- missed that phase, the poll blocked -- nothing else could wake it, the
-- reply awaited was to the queued datagram -- and the check watcher would
-- only have run after the poll: the task timed out. Found under clang's
-- ASan, whose slowness let a reply arrive before the next send. Class:
-- while anything is queued for the flusher an idle watcher keeps the poll
-- from blocking, so a flush always comes before the loop waits.
local support = require "support"

describe("regress: a burst queued for the flusher", function()
  before_each(support.before)
  after_each(support.after)

  it("is sent before the loop waits, even in the round that made the first Datagram", function()
    local l = support.berth.loop() -- a fresh loop: no Datagram state yet
    local got, code
    l.spawn(function() -- resumed by the scheduler's prepare watcher
      local a <close> = assert(l.udp { host = "127.0.0.1", port = 0 })
      local b <close> = assert(l.udp { host = "127.0.0.1", port = 0 })
      assert(a:sendto("one", "127.0.0.1", b:port())) -- goes at once
      assert.equal("one", (b:recvfrom(1)))           -- loopback: already there
      assert(a:sendto("two", "127.0.0.1", b:port())) -- the same round: queued
      assert.equal(1, a:stats().sending)
      got, code = b:recvfrom(1)
    end)
    local t0 = support.clock()
    l.run()
    assert.equal("two", got, "recvfrom said " .. tostring(code))
    assert.is_true(support.clock() - t0 < 1)
  end)
end)

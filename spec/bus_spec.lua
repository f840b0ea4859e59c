-- berth.bus in one process (across workers: spec/workers_shared_spec.lua):
-- publish/subscribe with callbacks and with tasks, the publisher's own
-- subscribers included, order, per-subscription bounds, errors isolated;
-- connection ids and inboxes (send_to, sock:inbox(), on("message")),
-- closed inboxes, limits and counters.
local support = require "support"
local berth = support.berth
local run = support.run
local expect = support.expect

describe("berth.bus", function()
  before_each(support.before)
  after_each(support.after)

  it("delivers to the publisher's own subscribers, in order, with callbacks and tasks", function()
    run(function()
      local got, read = {}, {}
      local _cb <close> = berth.bus.subscribe("news", expect(function(msg, from, topic)
        got[#got + 1] = { msg, from, topic }
      end, 3))
      local sub <close> = berth.bus.subscribe("news")
      local _other <close> = berth.bus.subscribe("other", expect(nil, 0))
      assert.equal(1, berth.bus.publish("news", "one")) -- one member: this process
      assert.equal(1, berth.bus.publish("news", "two"))
      assert.equal(1, berth.bus.publish("news", 3)) -- a number goes as a string
      for i = 1, 3 do read[i] = { sub:read(1) } end
      assert.same({ { "one", 0, "news" }, { "two", 0, "news" }, { "3", 0, "news" } }, got)
      assert.same(got, read)
      support.assert_fail("timeout", nil, sub:read(0.01))
    end)
  end)

  it("a subscription read by a task: `for` until cancelled, a bounded queue", function()
    run(function()
      local sub = berth.bus.subscribe("queue", { max = 3 })
      for i = 1, 5 do berth.bus.publish("queue", "m" .. i) end
      berth.spawn(function()
        berth.sleep(0.05) -- the messages are queued by then: the time under test
        sub:cancel()
      end)
      local seen = {}
      for msg in sub do seen[#seen + 1] = msg end
      assert.same({ "m1", "m2", "m3" }, seen) -- the newest were dropped
      assert.equal(2, sub.dropped)
      support.assert_fail("closed", nil, sub:read())
      assert.equal("Subscription (queue, cancelled)", tostring(sub))
    end)
  end)

  it("an error in one callback goes to berth.onerror; the other subscribers still get it",
    function()
      run(function()
        local _a <close> = berth.bus.subscribe("err", function() error("boom") end)
        local _b <close> = berth.bus.subscribe("err", expect(function(msg)
          assert.equal("x", msg)
        end))
        berth.bus.publish("err", "x")
        local errors = support.wait_errors(1)
        assert.truthy(tostring(errors[1].err):find("boom", 1, true))
      end)
    end)

  it("delivers a burst larger than one wake-up's budget, all of it, in order", function()
    run(function()
      local n, last, bad = 0, 0, 0
      local _sub <close> = berth.bus.subscribe("burst", function(msg)
        local k = tonumber(msg)
        if k ~= last + 1 then bad = bad + 1 end
        last, n = k, n + 1
      end)
      for i = 1, 5000 do berth.bus.publish("burst", tostring(i)) end
      support.wait_until(function() return n == 5000 end, 3, "5000 deliveries")
      assert.equal(0, bad)
      local s = berth.bus.stats()
      assert.equal(0, s.dropped)
      assert.equal(0, s.queued)
      assert.equal(1, s.members)
    end)
  end)

  it("send_to reaches a connection's inbox by its id: read by its task, or on(\"message\")",
    function()
      run(function()
        local server = support.serve(function(sock)
          sock:write(sock:id(), "\n")
          local inbox = sock:inbox()
          assert.equal(sock:id(), inbox:id())
          local msg, from = inbox:read(2)
          sock:write(msg, " from ", from, "\n")
          sock:on("message", function(m) sock:write("cb ", m, "\n") end)
          sock:read("l") -- until the client closes
        end)
        local client = support.connect(server)
        local id = math.tointeger(tonumber(client:read("l", 2)))
        assert.is_true(id > 0)
        assert.equal(0, berth.bus.owner(id))
        assert.is_true(berth.bus.send_to(id, "hello"))
        assert.equal("hello from 0", client:read("l", 2))
        assert.is_true(berth.bus.send_to(id, "again"))
        assert.equal("cb again", client:read("l", 2))
        client:close()
        server:close()
      end)
    end)

  it("an inbox: queued messages first, then nil, \"closed\" when its socket closes; a "
    .. "timeout consumes nothing", function()
      run(function()
        local p <close> = support.pair()
        local id = p.peer:id()
        assert.equal(id, p.peer:id()) -- stable
        assert.is_true(id ~= p.client:id()) -- unique
        local inbox = p.peer:inbox()
        support.assert_fail("timeout", nil, inbox:read(0.01))
        berth.bus.send_to(id, "a")
        berth.bus.send_to(id, "b")
        local results = {}
        berth.spawn(function()
          for msg in inbox do results[#results + 1] = msg end
          results[#results + 1] = "end"
        end)
        support.wait_until(function() return #results == 2 end, 2, "two messages")
        p.peer:close()
        support.wait_until(function() return #results == 3 end, 2, "the end of the inbox")
        assert.same({ "a", "b", "end" }, results)
        support.assert_fail("closed", nil, inbox:read())
        assert.is_true(berth.bus.send_to(id, "late")) -- queued; nobody will read it
        support.wait_until(function() return berth.bus.stats().undeliverable >= 1 end, 2,
          "the late message to be counted")
        assert.same({ pending = 0, received = 2, dropped = 0, closed = true }, inbox:stats())
      end)
    end)

  it("ids of closed sockets, unknown ids, limits", function()
    run(function()
      local p <close> = support.pair()
      p.client:close()
      support.assert_fail("closed", nil, p.client:id())
      support.assert_fail("notfound", nil, berth.bus.send_to(12345, "x"))
      support.assert_fail("notfound", nil, berth.bus.send_to(-1, "x"))
      support.assert_fail("toolarge", nil, berth.bus.publish("t", ("x"):rep(70000)))
      support.assert_fail("toolarge", nil, berth.bus.send_to(p.peer:id(), ("x"):rep(70000)))
      support.assert_raises("topic is 1 to 255 bytes", berth.bus.publish, "", "x")
      support.assert_raises("subscribe: topic must be", berth.bus.subscribe, 5)
      support.assert_raises('unknown option "size"', berth.bus.subscribe, "t", { size = 1 })
      support.assert_raises("the bus is open already", berth.bus.configure, { queue = 1 << 20 })
      support.assert_raises("another loop of this process has the bus",
        berth.loop().bus.publish, "t", "x")
    end)
  end)
end)

-- berth.shared in one process (the workers' view is spec/workers_shared_spec):
-- values keep their type, add/replace/incr/delete/ttl/keys/flush behave as
-- documented, TTLs expire, memory is bounded and a full dictionary evicts
-- its least recently used entries (and says so), misuse raises. Every
-- test uses dictionaries of its own: the region lives as long as the
-- process.
local support = require "support"
local berth = support.berth
local run = support.run

local SMALL = { size = 64 * 1024 } -- 15 pages of 4 KiB: fills up quickly

describe("berth.shared", function()
  before_each(support.before)
  after_each(support.after)

  it("keeps strings (any bytes), integers, floats and booleans, with their types", function()
    local d = berth.shared("types", SMALL)
    local values = { s = "a\0b\255", e = "", i = 42, neg = math.mininteger, f = 1.5,
      whole = 3.0, t = true, no = false }
    for k, v in pairs(values) do assert.same({ true, nil, false }, { d:set(k, v) }) end
    for k, v in pairs(values) do
      local got = d:get(k)
      assert.equal(v, got, k)
      assert.equal(math.type(v), math.type(got), k)
    end
    assert.is_nil(d:get("absent"))
    assert.is_true(d:set("s", nil)) -- set to nil deletes
    assert.is_nil(d:get("s"))
    local big = ("x"):rep(3000)
    assert.is_true(d:set("big", big))
    assert.equal(big, d:get("big"))
    assert.is_true(d:set(42, "number key"))
    assert.equal("number key", d:get("42")) -- keys are strings
  end)

  it("add, replace, incr and delete", function()
    local d = berth.shared("ops", SMALL)
    assert.is_true(d:add("k", 1))
    support.assert_fail("exists", nil, d:add("k", 2))
    assert.equal(1, d:get("k"))
    assert.is_true(d:replace("k", "one"))
    support.assert_fail("notfound", nil, d:replace("nothing", 1))
    assert.is_nil(d:get("nothing"))
    support.assert_fail("notanumber", nil, d:incr("k", 1))
    support.assert_fail("notfound", nil, d:incr("n", 1))
    assert.equal(11, d:incr("n", 1, 10))
    assert.equal(8, d:incr("n", -3))
    assert.equal(9.5, d:incr("n", 1.5))
    assert.equal("float", math.type(d:get("n")))
    assert.is_true(d:set("max", math.maxinteger))
    support.assert_fail("overflow", nil, d:incr("max", 1))
    assert.is_true(d:delete("k"))
    assert.is_false(d:delete("k"))
    assert.is_nil(d:get("k"))
    support.assert_raises("incr: n must be a number", d.incr, d, "n", "1")
  end)

  it("expires entries after their TTL; incr keeps the expiry; flush_expired reclaims",
    function()
      run(function()
        local d = berth.shared("ttl", SMALL)
        assert.is_true(d:set("short", "v", 0.5))
        assert.is_true(d:set("long", "v", 60))
        assert.is_true(d:set("never", "v"))
        assert.equal(1, d:incr("counter", 1, 0, 0.5))
        assert.equal(2, d:incr("counter", 1)) -- keeps its 0.5 s
        local left = d:ttl("short")
        assert.is_true(left > 0 and left <= 0.5, tostring(left))
        assert.equal(math.huge, d:ttl("never"))
        assert.is_nil(d:ttl("absent"))
        berth.sleep(0.6) -- past the 0.5 s TTLs: the time under test
        assert.is_nil(d:get("short"))
        assert.is_nil(d:get("counter"))
        assert.equal("v", d:get("long"))
        assert.is_true(d:add("short", "again")) -- expired counts as absent
        assert.is_true(d:set("gone", 1, 0.01))
        berth.sleep(0.02) -- past its TTL
        assert.equal(1, d:flush_expired())
        assert.equal(0, d:flush_expired())
        assert.same({ "long", "never", "short" }, (function()
          local keys = d:keys(0)
          table.sort(keys)
          return keys
        end)())
      end)
    end)

  it("is bounded: a full dictionary evicts the least recently used entries, and set says so",
    function()
      local d = berth.shared("full", SMALL)
      local value = ("v"):rep(40)
      local i, evicted = 0, false
      while not evicted do
        i = i + 1
        local ok, err, forcible = d:set("key" .. i, value)
        assert(ok, err)
        assert.is_true(d:get("key1") == value) -- read: the most recent
        evicted = forcible
      end
      local st = d:stats()
      assert.is_true(st.evictions >= 1 and st.entries == i - st.evictions, "stats")
      assert.is_true(st.used <= st.capacity and st.capacity <= SMALL.size)
      assert.equal(value, d:get("key1"), "the entry read all along survived")
      assert.is_nil(d:get("key2"), "the least recently used went first")
      assert.equal(value, d:get("key" .. i))
      -- An entry larger than a page is refused, not stored in pieces.
      support.assert_fail("toolarge", nil, d:set("huge", ("x"):rep(st.page_size)))
      print(("\n[shared] a %d KiB dictionary held %d entries of %d bytes before evicting")
        :format(SMALL.size // 1024, i - 1, #value + 5))
    end)

  it("keys(max), flush_all, stats", function()
    local d = berth.shared("keys", SMALL)
    for i = 1, 300 do d:set("k" .. i, i) end
    assert.equal(300, #d:keys(0))
    assert.equal(1024 >= 300 and 300, #d:keys())
    assert.equal(10, #d:keys(10))
    assert.equal(300, d:stats().entries)
    assert.is_true(d:flush_all())
    assert.same({}, d:keys(0))
    assert.is_nil(d:get("k1"))
  end)

  it("one name is one dictionary: the same handle, in every loop of the process", function()
    local a = berth.shared("same", SMALL)
    assert.equal(a, berth.shared("same"))
    assert.equal(a, berth.shared("same", { size = 1 << 20 })) -- made already: as made
    local other = berth.loop()
    local b = other.shared("same")
    b:set("x", "from the other loop")
    assert.equal("from the other loop", a:get("x"))
    assert.equal("SharedDict (same)", tostring(a))
    assert.equal(0, berth.worker()) -- a single process
  end)

  it("raises for misuse", function()
    support.assert_raises("name is 1 to 58 bytes", berth.shared, "")
    support.assert_raises("name is 1 to 58 bytes", berth.shared, ("n"):rep(59))
    support.assert_raises("size must be at least", berth.shared, "x1", { size = 1000 })
    support.assert_raises('unknown option "sise"', berth.shared, "x2", { sise = 1 })
    local d = berth.shared("misuse", SMALL)
    support.assert_raises("set: value must be a string, number or boolean", d.set, d, "k", {})
    support.assert_raises("key is 1 to 65535 bytes", d.get, d, "")
    support.assert_raises("must be", d.set, d, "k", 1, -1) -- a negative TTL
  end)
end)

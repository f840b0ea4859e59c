-- examples/echo.lua and examples/chat.lua, run by the host as child
-- processes (PORT=0) and driven over real sockets from this process.
local support = require "support"
local berth = support.berth
local run, expect = support.run, support.expect

-- Starts an example (its listening line checked), stops it after
-- `fn(port)` and checks that it exited 0 after SIGTERM and printed nothing
-- else. Returns what it wrote to stderr.
local function with_example(name, env, fn)
  local stderr, rest = support.with_example(name, env, fn)
  assert.equal("", rest, "the example printed more than its listening line")
  return stderr
end

describe("examples", function()
  before_each(support.before)
  after_each(support.after)

  describe("echo.lua", function()
    it("echoes lines and 1 MiB of random bytes back exactly", function()
      with_example("echo", nil, function(port)
        run(function()
          local sock <close> = support.connect(port)
          assert.equal("hello", support.roundtrip(sock, "hello"))
          assert(sock:write("crlf\r\n"))
          assert.equal("crlf\r\n", sock:read("L", 2))
          -- Far more than one read: echo.lua relays bytes, not lines.
          local blob = support.random_bytes(1024 * 1024, 5)
          berth.spawn(function() assert(sock:write(blob)) end)
          support.assert_bytes(blob, sock:read(#blob, 10))
        end)
      end)
    end)

    it("serves 200 concurrent clients", function()
      with_example("echo", nil, function(port)
        run(function()
          local n, finished = 200, 0
          local done = expect(function() finished = finished + 1 end, n)
          for i = 1, n do
            berth.spawn(function()
              local sock <close> = support.connect(port)
              for j = 1, 3 do
                local line = ("client %d line %d"):format(i, j)
                assert.equal(line, support.roundtrip(sock, line, 10))
              end
              done()
            end)
          end
          support.wait_until(function() return finished == n end, 20, "all clients")
        end, 30)
      end)
    end)

    it("listens on HOST=::1", function()
      with_example("echo", { HOST = "::1" }, function(port)
        run(function()
          local sock <close> = assert(berth.connect("::1", port, { timeout = 2 }))
          assert.equal("over v6", support.roundtrip(sock, "over v6"))
        end)
      end)
    end)
  end)

  describe("chat.lua", function()
    -- Task only: connects a chat client and takes its welcome line.
    local function join(port)
      local sock = support.connect(port)
      assert.equal("welcome", sock:read("l", 2))
      return sock
    end

    it("relays each line to every other client, not back to the sender", function()
      with_example("chat", nil, function(port)
        run(function()
          local alice <close> = join(port)
          local bob <close> = join(port)
          local carol <close> = join(port)
          assert(alice:write("hello from alice\r\n"))
          assert.equal("hello from alice\r\n", bob:read("L", 2))
          assert.equal("hello from alice\r\n", carol:read("L", 2))
          assert(bob:write("hi alice\n"))
          assert.equal("hi alice", alice:read("l", 2))
          assert.equal("hi alice", carol:read("l", 2))
          support.assert_fail("timeout", nil, alice:read("l", 0.2))
          support.assert_fail("timeout", nil, bob:read("l", 0.01))
        end)
      end)
    end)

    it("keeps a client with 512 KiB in flight, disconnects one that never reads", function()
      local stderr = with_example("chat", nil, function(port)
        run(function()
          local alice <close> = join(port)
          local bob <close> = join(port)
          local mallory <close> = join(port) -- never reads again
          -- 24 MiB in lines of 16 KiB: more than the kernel's socket
          -- buffers (several MiB each way on loopback) plus the 4 MiB bound.
          local n, got, size = 1536, 0, 16 * 1024
          local function line(i) return ("%04d"):format(i) .. ("x"):rep(size - 5) .. "\n" end
          berth.spawn(function()
            for i = 1, n do
              assert.equal(line(i), bob:read("L", 10))
              got = i
            end
          end)
          -- Alice lets bob fall 512 KiB behind (32 lines) before she waits
          -- for him: a reader that keeps that much in flight reads normally
          -- and must not be dropped; mallory's backlog grows past the bound.
          for i = 1, n do
            assert(alice:write(line(i)))
            if i % 32 == 0 then
              support.wait_until(function() return got >= i - 32 end, 5,
                "bob to read line " .. (i - 32))
            end
          end
          support.wait_until(function() return got == n end, 5, "bob to receive every line")
          local all, _, rest = mallory:read("a", 10)
          rest = all or rest or ""
          assert.is_true(#rest < n * size,
            "mallory received all " .. #rest .. " bytes: it was never disconnected")
        end, 30)
      end)
      assert.is_truthy(stderr:find("disconnecting a client that does not read", 1, true),
        "chat.lua did not log the disconnect:\n" .. stderr)
    end)
  end)
end)

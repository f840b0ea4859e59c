-- examples/resp.lua, run by the host as a child process (PORT=0) and driven
-- over raw berth sockets. The expected replies are the bytes Redis 7.0.15
-- sends for the same requests (checked against a real redis-server).
local support = require "support"
local wire = require "support.wire"
local berth = support.berth
local run = support.run
local expect_bytes, expect_quiet, expect_close = wire.expect_bytes, wire.expect_quiet, wire.expect_close

-- A RESP2 command: an array of bulk strings.
local function C(...)
  local out = { ("*%d\r\n"):format(select("#", ...)) }
  for _, a in ipairs { ... } do out[#out + 1] = ("$%d\r\n%s\r\n"):format(#a, a) end
  return table.concat(out)
end

local OK, NIL, PONG = "+OK\r\n", "$-1\r\n", "+PONG\r\n"
local function int(n) return (":%d\r\n"):format(n) end
local function bulk(s) return ("$%d\r\n%s\r\n"):format(#s, s) end
local function err(msg) return "-ERR " .. msg .. "\r\n" end
local NOT_INT = err("value is not an integer or out of range")
local SYNTAX = err("syntax error")
local function arity(name) return err(("wrong number of arguments for '%s' command"):format(name)) end

-- Runs examples/resp.lua for the test; `fn(port)` runs as a berth task.
local function with_resp(fn, limit)
  support.with_example("resp", nil, function(port)
    run(function() fn(port) end, limit or 10)
  end)
end

-- Task only: sends one command (a list of arguments) and checks the reply.
local function cmd(sock, want, ...)
  assert(sock:write(C(...)))
  expect_bytes(sock, want, 2, wire.show(table.concat({ ... }, " ")))
end

-- Task only: sends each { reply, arg1, arg2, ... } and checks every reply;
-- reports every mismatch at once.
local function cmds(sock, list)
  local failures = {}
  for _, c in ipairs(list) do
    local ok, e = pcall(cmd, sock, table.unpack(c))
    if not ok then
      failures[#failures + 1] = tostring(e)
      -- Resynchronise: drop whatever else arrived for this command.
      sock:readsome(65536, 0.05)
    end
  end
  assert(#failures == 0, table.concat(failures, "\n"))
end

describe("examples/resp.lua", function()
  before_each(support.before)
  after_each(support.after)

  it("PING and ECHO", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { "+PONG\r\n", "PING" },
        { "+PONG\r\n", "ping" },
        { "$5\r\nhello\r\n", "PING", "hello" },
        { "$3\r\nx\0y\r\n", "ECHO", "x\0y" },
        { "$0\r\n\r\n", "ECHO", "" },
        { "$4\r\n\r\n\r\n\r\n", "ECHO", "\r\n\r\n" },
      })
      expect_quiet(sock)
    end)
  end)

  it("SET and GET; a missing key is the nil bulk $-1", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { "$-1\r\n", "GET", "k" },
        { "+OK\r\n", "SET", "k", "v" },
        { "$1\r\nv\r\n", "GET", "k" },
        { OK, "SET", "k", "a longer value" },
        { bulk("a longer value"), "GET", "k" },
        { OK, "SET", "empty", "" },
        { "$0\r\n\r\n", "GET", "empty" },
        { NIL, "GET", "K" },
      })
    end)
  end)

  it("SET NX and XX", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { NIL, "SET", "k", "x", "XX" },
        { NIL, "GET", "k" },
        { OK, "SET", "k", "1", "NX" },
        { NIL, "SET", "k", "2", "NX" },
        { bulk("1"), "GET", "k" },
        { OK, "SET", "k", "3", "XX" },
        { bulk("3"), "GET", "k" },
        { OK, "SET", "k", "4", "xx" },
        { NIL, "SET", "k", "5", "nx" },
        { SYNTAX, "SET", "k", "6", "NX", "XX" },
        { bulk("4"), "GET", "k" },
      })
    end)
  end)

  it("SET EX and PX set a TTL; the key expires", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { OK, "SET", "e", "v", "EX", "100" },
        { int(100), "TTL", "e" },
        { OK, "SET", "p", "v", "PX", "100000" },
        { int(100), "TTL", "p" },
        { OK, "SET", "l", "v", "ex", "50", "nx" },
        { int(50), "TTL", "l" },
        { OK, "SET", "short", "v", "PX", "100" },
        { bulk("v"), "GET", "short" },
        -- A plain SET clears the TTL.
        { OK, "SET", "e", "w" },
        { int(-1), "TTL", "e" },
      })
      berth.sleep(0.3) -- the time under test: the 100 ms TTL runs out
      cmds(sock, {
        { NIL, "GET", "short" },
        { int(-2), "TTL", "short" },
        { int(0), "EXISTS", "short" },
      })
    end)
  end)

  it("SET option errors are Redis's", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { err("invalid expire time in 'set' command"), "SET", "k", "v", "EX", "0" },
        { err("invalid expire time in 'set' command"), "SET", "k", "v", "PX", "-1" },
        { NOT_INT, "SET", "k", "v", "EX", "abc" },
        { NOT_INT, "SET", "k", "v", "PX", "1.5" },
        { SYNTAX, "SET", "k", "v", "EX" },
        { SYNTAX, "SET", "k", "v", "EX", "10", "PX", "100" },
        { SYNTAX, "SET", "k", "v", "foo" },
        { arity("set"), "SET", "k" },
        { NIL, "GET", "k" },
      })
    end)
  end)

  it("DEL and EXISTS count keys (EXISTS counts repeats)", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { OK, "SET", "a", "1" },
        { OK, "SET", "b", "2" },
        { int(2), "EXISTS", "a", "b" },
        { int(3), "EXISTS", "a", "a", "b", "zz" },
        { int(0), "EXISTS", "zz" },
        { int(1), "DEL", "a", "a", "zz" },
        { int(0), "EXISTS", "a" },
        { int(1), "DEL", "b" },
        { int(0), "DEL", "b" },
        { arity("del"), "DEL" },
        { arity("exists"), "EXISTS" },
      })
    end)
  end)

  it("INCR, DECR and INCRBY, with Redis's errors", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { int(1), "INCR", "c" },
        { int(2), "INCR", "c" },
        { int(1), "DECR", "c" },
        { int(11), "INCRBY", "c", "10" },
        { int(-9), "INCRBY", "c", "-20" },
        { bulk("-9"), "GET", "c" },
        { int(-1), "DECR", "d" },
        { NOT_INT, "INCRBY", "c", "x" },
        { NOT_INT, "INCRBY", "c", "1.5" },
        { NOT_INT, "INCRBY", "c", "9223372036854775808" },
        { OK, "SET", "s", "abc" },
        { NOT_INT, "INCR", "s" },
        { OK, "SET", "s", "01" },
        { NOT_INT, "INCR", "s" },
        { OK, "SET", "s", " 1" },
        { NOT_INT, "DECR", "s" },
        { OK, "SET", "s", "9223372036854775807" },
        { err("increment or decrement would overflow"), "INCR", "s" },
        { OK, "SET", "s", "-9223372036854775808" },
        { err("increment or decrement would overflow"), "DECR", "s" },
        { bulk("-9223372036854775808"), "GET", "s" },
        -- INCR keeps the key's TTL.
        { OK, "SET", "t", "5", "EX", "100" },
        { int(6), "INCR", "t" },
        { int(100), "TTL", "t" },
        { arity("incr"), "INCR" },
        { arity("incrby"), "INCRBY", "c" },
      })
    end)
  end)

  it("MSET and MGET", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { OK, "MSET", "a", "1", "b", "2" },
        { "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n", "MGET", "a", "nope", "b" },
        { "*1\r\n$-1\r\n", "MGET", "nope" },
        { arity("mset"), "MSET", "a" },
        { arity("mset"), "MSET", "a", "1", "b" },
        { arity("mget"), "MGET" },
        { OK, "MSET", "a", "x\r\ny", "a", "last" },
        { "*2\r\n$4\r\nlast\r\n$4\r\nlast\r\n", "MGET", "a", "a" },
      })
    end)
  end)

  it("EXPIRE and TTL", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { int(-2), "TTL", "k" },
        { int(0), "EXPIRE", "k", "50" },
        { OK, "SET", "k", "v" },
        { int(-1), "TTL", "k" },
        { int(1), "EXPIRE", "k", "50" },
        { int(50), "TTL", "k" },
        { NOT_INT, "EXPIRE", "k", "abc" },
        { int(50), "TTL", "k" },
        { int(1), "EXPIRE", "k", "0" },
        { int(0), "EXISTS", "k" },
        { int(-2), "TTL", "k" },
        { arity("expire"), "EXPIRE", "k" },
        { arity("ttl"), "TTL" },
      })
    end)
  end)

  it("DBSIZE and FLUSHALL", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { int(0), "DBSIZE" },
        { OK, "MSET", "a", "1", "b", "2", "c", "3" },
        { int(3), "DBSIZE" },
        { OK, "SET", "gone", "v", "PX", "50" },
        { int(4), "DBSIZE" },
      })
      berth.sleep(0.2) -- the time under test: the 50 ms TTL runs out
      cmds(sock, {
        { int(3), "DBSIZE" },
        { OK, "FLUSHALL" },
        { int(0), "DBSIZE" },
        { NIL, "GET", "a" },
        { OK, "FLUSHALL", "ASYNC" },
      })
    end)
  end)

  it("COMMAND, CONFIG GET and HELLO, as redis-cli and redis-benchmark send them", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { "*0\r\n", "COMMAND" },
        { "*0\r\n", "COMMAND", "DOCS" },
        { "*2\r\n$4\r\nsave\r\n$0\r\n\r\n", "CONFIG", "GET", "save" },
        { "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n", "CONFIG", "GET", "appendonly" },
        { "*0\r\n", "CONFIG", "GET", "no-such-parameter" },
      })
      local hello = "*6\r\n$6\r\nserver\r\n$5\r\nberth\r\n$7\r\nversion\r\n"
        .. bulk(berth.version) .. "$5\r\nproto\r\n:2\r\n"
      cmds(sock, {
        { hello, "HELLO" },
        { hello, "HELLO", "2" },
        { "-NOPROTO unsupported protocol version\r\n", "HELLO", "4" },
      })
      expect_quiet(sock)
    end)
  end)

  it("wrong number of arguments: Redis's error, with the command in lower case", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { "-ERR wrong number of arguments for 'get' command\r\n", "GET" },
        { "-ERR wrong number of arguments for 'get' command\r\n", "GET", "a", "b" },
        { "-ERR wrong number of arguments for 'get' command\r\n", "GeT" },
        { arity("echo"), "ECHO" },
        { arity("echo"), "ECHO", "a", "b" },
        { arity("decr"), "DECR", "a", "b" },
        { arity("dbsize"), "DBSIZE", "x" },
      })
      expect_quiet(sock)
    end)
  end)

  it("PING with two arguments is a wrong-number-of-arguments error", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, { { arity("ping"), "PING", "a", "b" } })
    end)
  end)

  it("an unknown command gets Redis's error text", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { "-ERR unknown command 'FOO', with args beginning with: \r\n", "FOO" },
        { "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n", "foo", "a", "b" },
        { "-ERR unknown command 'x', with args beginning with: '' \r\n", "x", "" },
      })
      assert(sock:write("BOGUS 1 2\r\n"))
      expect_bytes(sock, "-ERR unknown command 'BOGUS', with args beginning with: '1' '2' \r\n")
      -- The connection goes on.
      cmds(sock, { { PONG, "PING" } })
    end)
  end)

  it("an unknown command's error lists its arguments up to 128 characters, like Redis",
    function()
      with_resp(function(port)
        local sock <close> = support.connect(port)
        cmds(sock, {
          { "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' 'c' 'd' 'e' \r\n",
            "FOO", "a", "b", "c", "d", "e" },
          { "-ERR unknown command 'FOO', with args beginning with: '" .. ("x"):rep(128) .. "' \r\n",
            "FOO", ("x"):rep(200) },
          -- The 128 counts what is shown so far, quotes and spaces included.
          { "-ERR unknown command 'FOO', with args beginning with: '" .. ("a"):rep(60) .. "' '"
            .. ("b"):rep(60) .. "' 'cc' \r\n", "FOO", ("a"):rep(60), ("b"):rep(60), ("c"):rep(60), "d" },
          { "-ERR unknown command 'FOO', with args beginning with: '" .. ("a"):rep(125) .. "' \r\n",
            "FOO", ("a"):rep(125), "bcd", "e" },
        })
      end)
    end)

  it("an unknown command's name is cut at 128 characters, like Redis", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { "-ERR unknown command '" .. ("Y"):rep(128) .. "', with args beginning with: 'arg' \r\n",
          ("Y"):rep(130), "arg" },
      })
    end)
  end)

  it("an unknown command's error cannot be split by \\r\\n in an argument", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      -- Redis maps \r and \n to spaces: an error reply is a single line.
      cmds(sock, {
        { "-ERR unknown command 'foo', with args beginning with: 'a  b' \r\n", "foo", "a\r\nb" },
        { "-ERR unknown command 'foo', with args beginning with: '  +OK' \r\n", "foo", "\r\n+OK" },
        { "-ERR unknown command 'FOO', with args beginning with: 'a b c' \r\n", "FOO", "a\rb\nc" },
      })
      cmds(sock, { { PONG, "PING" } })
      expect_quiet(sock)
    end)
  end)

  it("keys and values are binary safe (\\0, \\r\\n, RESP syntax inside)", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      local key = "k\0\r\nk"
      local value = "\0\r\n$-1\r\n*2\r\n\r\n:1\r\n\0"
      local big = support.random_bytes(200 * 1024, 3)
      cmds(sock, {
        { OK, "SET", key, value },
        { bulk(value), "GET", key },
        { NIL, "GET", "k" },
        { int(1), "EXISTS", key },
        { OK, "SET", "\r\n", "\r\n" },
        { "*3\r\n" .. bulk(value) .. bulk("\r\n") .. NIL, "MGET", key, "\r\n", "k\0" },
        { OK, "SET", "big", big },
        { bulk(big), "GET", "big" },
        { int(2), "DEL", key, "\r\n" },
        { int(1), "DBSIZE" },
      })
    end)
  end)

  it("inline commands", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write("PING\r\n"))
      expect_bytes(sock, PONG)
      assert(sock:write("SET il v\r\nGET il\r\n"))
      expect_bytes(sock, OK .. bulk("v"))
      assert(sock:write("PING\nPING\n"))
      expect_bytes(sock, PONG .. PONG)
      assert(sock:write("  set   spaced \t value  \r\nget spaced\r\n"))
      expect_bytes(sock, OK .. bulk("value"))
      -- An empty line gets no reply.
      assert(sock:write("\r\n"))
      expect_quiet(sock, 0.1, "an empty inline line")
      assert(sock:write("incr n\r\nGET\r\n"))
      expect_bytes(sock, int(1) .. arity("get"))
      -- Inline and RESP mixed in one write.
      assert(sock:write("ECHO a\r\n" .. C("ECHO", "b c") .. "ECHO d\n"))
      expect_bytes(sock, bulk("a") .. bulk("b c") .. bulk("d"))
      expect_quiet(sock)
    end)
  end)

  it("empty multibulk requests get no reply", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      assert(sock:write("*0\r\n*-1\r\n"))
      expect_quiet(sock, 0.1)
      cmds(sock, { { PONG, "PING" } })
    end)
  end)

  it("a pipeline of 1000 commands in one write is answered in order", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      local reqs, want = {}, {}
      for i = 1, 1000 do
        local r = i % 4
        if r == 0 then
          reqs[i], want[i] = C("SET", "key" .. i, "value" .. i), OK
        elseif r == 1 then
          reqs[i], want[i] = C("GET", "key" .. (i - 1)), i > 1 and bulk("value" .. (i - 1)) or NIL
        elseif r == 2 then
          reqs[i], want[i] = C("INCR", "counter"), int(i // 4 + 1)
        else
          reqs[i], want[i] = "PING\r\n", PONG
        end
      end
      assert(sock:write(table.concat(reqs)))
      expect_bytes(sock, table.concat(want), 5)
      expect_quiet(sock)
    end)
  end)

  it("handles commands split into single bytes (one TCP segment each)", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      local req = C("SET", "fr\r\nag", "va\0l\r\nue") .. C("GET", "fr\r\nag") .. "PING\r\n"
        .. C("MGET", "fr\r\nag", "x") .. C("INCRBY", "n", "42")
      local want = OK .. bulk("va\0l\r\nue") .. PONG .. "*2\r\n" .. bulk("va\0l\r\nue") .. NIL
        .. int(42)
      wire.dribble(sock, req)
      expect_bytes(sock, want, 5)
      -- Nothing is answered before the command's last byte.
      wire.dribble(sock, C("ECHO", "late"):sub(1, -2))
      expect_quiet(sock, 0.1, "nothing before the last byte")
      wire.dribble(sock, "\n")
      expect_bytes(sock, bulk("late"))
      expect_quiet(sock)
    end)
  end)

  it("clients share one keyspace", function()
    with_resp(function(port)
      local a <close> = support.connect(port)
      local b <close> = support.connect(port)
      cmds(a, { { OK, "SET", "shared", "from a" } })
      cmds(b, { { bulk("from a"), "GET", "shared" }, { int(1), "DEL", "shared" } })
      cmds(a, { { NIL, "GET", "shared" } })
    end)
  end)

  -- Issue 11: the example's own limits, stated once (the server's max_input,
  -- 8 MiB by default), answered with Redis's errors instead of a silent close.
  it("a value over max_input gets Redis's invalid bulk length error, then the close", function()
    with_resp(function(port)
      local a <close> = support.connect(port)
      assert(a:write(C("PING") .. "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9000000\r\n"))
      expect_close(a, PONG .. "-ERR Protocol error: invalid bulk length\r\n")
      -- exactly max_input still fits in a bulk, not with the rest of the command
      local b <close> = support.connect(port)
      assert(b:write("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388608\r\n"))
      expect_close(b, "-ERR Protocol error: command too large\r\n")
      -- a command's total size is capped too: two values of 5 MiB
      local c <close> = support.connect(port)
      assert(c:write("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$5242880\r\n"))
      assert(c:write(("x"):rep(5242880) .. "\r\n$1\r\nb\r\n$5242880\r\n"))
      expect_close(c, "-ERR Protocol error: command too large\r\n", 5)
    end)
  end)

  it("a value of 1 MiB is stored and read back byte-exact", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      local v = ("0123456789abcdef"):rep(65536)
      cmds(sock, { { OK, "SET", "big", v }, { bulk(v), "GET", "big" } })
    end)
  end)

  it("lengths take Redis's strict syntax: *0x1, *1e0, * 1, *+1, *01 are refused", function()
    with_resp(function(port)
      for _, bad in ipairs { "*0x1", "*1e0", "* 1", "*+1", "*01", "*1 " } do
        local s <close> = support.connect(port)
        assert(s:write(bad .. "\r\n$4\r\nPING\r\n"))
        expect_close(s, "-ERR Protocol error: invalid multibulk length\r\n", 2, bad)
      end
      for _, bad in ipairs { "$0x4", "$4e0", "$ 4", "$+4", "$04" } do
        local s <close> = support.connect(port)
        assert(s:write("*1\r\n" .. bad .. "\r\nPING\r\n"))
        expect_close(s, "-ERR Protocol error: invalid bulk length\r\n", 2, bad)
      end
    end)
  end)

  it("EXPIRE and SET EX past Redis's range are errors, and TTL still answers", function()
    with_resp(function(port)
      local sock <close> = support.connect(port)
      cmds(sock, {
        { OK, "SET", "k", "v" },
        { err("invalid expire time in 'expire' command"), "EXPIRE", "k", "9223372036854775807" },
        { int(-1), "TTL", "k" },
        { err("invalid expire time in 'expire' command"), "EXPIRE", "nokey", "9223372036854775807" },
        { err("invalid expire time in 'expire' command"), "EXPIRE", "k", "-9223372036854775808" },
        { int(1), "EXPIRE", "k", "9223372036854" },
        { int(9223372036854), "TTL", "k" },
        { err("invalid expire time in 'set' command"), "SET", "k", "v", "EX", "9223372036854775807" },
        { err("invalid expire time in 'set' command"), "SET", "k", "v", "PX", "9223372036854775807" },
        { OK, "SET", "k", "v", "EX", "100" },
        { int(100), "TTL", "k" },
      })
    end)
  end)

  it("answers Redis's protocol errors and closes", function()
    with_resp(function(port)
      local a <close> = support.connect(port)
      assert(a:write("*abc\r\n"))
      expect_close(a, "-ERR Protocol error: invalid multibulk length\r\n")
      local b <close> = support.connect(port)
      assert(b:write("*1\r\n$abc\r\n"))
      expect_close(b, "-ERR Protocol error: invalid bulk length\r\n")
      local c <close> = support.connect(port)
      assert(c:write(C("PING") .. "*1\r\n$-5\r\n"))
      expect_close(c, PONG .. "-ERR Protocol error: invalid bulk length\r\n")
    end)
  end)
end)

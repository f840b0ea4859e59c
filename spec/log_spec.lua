-- Log records (lua/berth/log.lua, src/logfmt.c): one write(2) per record,
-- so that several processes sharing one stderr pipe never garble a line;
-- the text and JSON (--log-format json) formats; the process id and worker
-- number; the peer of the connection a record is written from.
local support = require "support"
local run = support.run

local body = assert(loadfile("spec/fixtures/log_burst.lua"))("--body")

local TIME = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ"

---------------------------------------------------------------------------
-- A strict JSON reader (objects, arrays, strings, numbers, literals), for
-- checking the records. Raises on anything that is not exactly one JSON
-- value.
---------------------------------------------------------------------------

local decode
do
  local ESC = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
    r = "\r", t = "\t" }
  local value

  local function fail(s, i, what) error(("bad JSON at %d (%s): %q"):format(i, what, s), 0) end

  local function skip(s, i) return s:match("^[ \t\r\n]*()", i) end

  local function str(s, i)
    local out = {}
    i = i + 1
    while true do
      local run_end = s:match('^[^"\\%z\1-\31]*()', i)
      out[#out + 1] = s:sub(i, run_end - 1)
      i = run_end
      local c = s:sub(i, i)
      if c == '"' then return table.concat(out), i + 1 end
      if c ~= "\\" then fail(s, i, "control byte or end in a string") end
      local e = s:sub(i + 1, i + 1)
      if ESC[e] then
        out[#out + 1], i = ESC[e], i + 2
      elseif e == "u" then
        local hex = s:match("^%x%x%x%x", i + 2) or fail(s, i, "\\u")
        local cp = tonumber(hex, 16)
        i = i + 6
        if cp >= 0xd800 and cp <= 0xdbff then
          local lo = s:match("^\\u(%x%x%x%x)", i) or fail(s, i, "lone high surrogate")
          cp = 0x10000 + (cp - 0xd800) * 0x400 + (tonumber(lo, 16) - 0xdc00)
          i = i + 6
        elseif cp >= 0xdc00 and cp <= 0xdfff then
          fail(s, i, "lone low surrogate")
        end
        out[#out + 1] = utf8.char(cp)
      else
        fail(s, i, "escape")
      end
    end
  end

  local function list(s, i, close, item)
    i = skip(s, i + 1)
    if s:sub(i, i) == close then return i + 1 end
    while true do
      i = skip(s, item(s, i))
      local c = s:sub(i, i)
      if c == close then return i + 1 end
      if c ~= "," then fail(s, i, "separator") end
      i = skip(s, i + 1)
    end
  end

  function value(s, i)
    i = skip(s, i)
    local c = s:sub(i, i)
    if c == '"' then return str(s, i) end
    if c == "{" then
      local t = {}
      local j = list(s, i, "}", function(_, k)
        if s:sub(k, k) ~= '"' then fail(s, k, "key") end
        local key, n = str(s, k)
        n = skip(s, n)
        if s:sub(n, n) ~= ":" then fail(s, n, "colon") end
        local v
        v, n = value(s, n + 1)
        if t[key] ~= nil then fail(s, k, "duplicate key " .. key) end
        t[key] = v
        return n
      end)
      return t, j
    end
    if c == "[" then
      local t = {}
      local j = list(s, i, "]", function(_, k)
        local v, n = value(s, k)
        t[#t + 1] = v
        return n
      end)
      return t, j
    end
    for lit, v in pairs { ["true"] = true, ["false"] = false, null = "null" } do
      if s:sub(i, i + #lit - 1) == lit then return v, i + #lit end
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if num and tonumber(num) then return tonumber(num), i + #num end
    fail(s, i, "value")
  end

  function decode(s)
    assert(utf8.len(s), "not valid UTF-8: " .. s)
    local v, i = value(s, 1)
    if skip(s, i) <= #s then fail(s, i, "trailing bytes") end
    return v
  end
end

---------------------------------------------------------------------------
-- Records
---------------------------------------------------------------------------

-- The records of text-format output: each line is a record's first line
-- ("TIME PID[/wN|/master] [LEVEL] message") or goes on the one before
-- (a tab, then the next line of its message). Raises on any other line.
local function text_records(out)
  local records = {}
  for line in out:gmatch("([^\n]*)\n") do
    local time, pid, tag, level, msg = line:match("^(" .. TIME .. ") (%d+)(/?%w*) %[(%a+)%] (.*)$")
    if time then
      records[#records + 1] = { time = time, pid = math.tointeger(tonumber(pid)), tag = tag,
        level = level, message = msg }
    else
      assert(line:sub(1, 1) == "\t" and #records > 0, "a line that is not a record's: " .. line)
      local r = records[#records]
      r.message = r.message .. "\n" .. line:sub(2)
    end
  end
  assert(out == "" or out:sub(-1) == "\n", "output does not end a line")
  return records
end

-- The records of JSON output: one object per line, every field checked.
local function json_records(out)
  local records = {}
  for line in out:gmatch("([^\n]*)\n") do
    local r = decode(line)
    assert(type(r) == "table", line)
    assert(type(r.time) == "string" and r.time:match("^" .. TIME .. "$"), line)
    assert(type(r.level) == "string" and type(r.message) == "string", line)
    assert(math.type(r.pid) == "integer", line)
    for k in pairs(r) do
      assert(({ time = 1, level = 1, pid = 1, worker = 1, master = 1, peer = 1, message = 1 })[k],
        "unexpected field " .. k)
    end
    records[#records + 1] = r
  end
  return records
end

-- What a JSON record's message must be: bytes that are not UTF-8 become
-- U+FFFD.
local function as_json_text(s)
  return (s:gsub("[\128-\255]+", function(bytes) -- ASCII is always kept
    local out, i = {}, 1
    while i <= #bytes do
      local n = bytes:byte(i) >= 0xc0 and utf8.offset(bytes, 2, i) -- not at a continuation
      if n and utf8.len(bytes:sub(i, n - 1)) then
        out[#out + 1] = bytes:sub(i, n - 1)
        i = n
      else
        out[#out + 1] = "\239\191\189"
        i = i + 1
      end
    end
    return table.concat(out)
  end))
end

-- Checks that the burst records of writer `id` are all there, each once
-- and whole, from one process; returns that pid.
local function check_burst(records, id, lines, json)
  local seen, pid = {}, nil
  for _, r in ipairs(records) do
    local who, i, rest = r.message:match("^(%S+) #(%d+) (.*)$")
    if who == id then
      i = math.tointeger(tonumber(i))
      assert(not seen[i], ("%s #%d logged twice"):format(id, i))
      seen[i] = true
      local want = body(id, i)
      if json then want = as_json_text(want) end
      assert(rest == want, ("%s #%d garbled:\n%q\nwant\n%q"):format(id, i, rest, want))
      assert(r.level == "info")
      pid = pid or r.pid
      assert(r.pid == pid, id .. " logged from two processes")
    end
  end
  for i = 1, lines do assert(seen[i], ("%s #%d is missing"):format(id, i)) end
  return pid
end

describe("log records", function()
  before_each(support.before)
  after_each(support.after)

  for _, format in ipairs { "text", "json" } do
    it(format .. ": 4 processes x 3000 records (20 B to 3.5 KiB) into one pipe: every line "
      .. "parses, every record is whole", function()
      local host = support.host_binary()
      local jobs = {}
      for id = 1, 4 do
        jobs[#jobs + 1] = ("%s --log-format %s spec/fixtures/log_burst.lua p%d &")
          :format(support.shquote(host), format, id)
      end
      -- Every writer's stderr is the same pipe; their stdout is dropped.
      local script = "{ " .. table.concat(jobs, " ") .. " wait; } 2>&1 >/dev/null"
      local p = support.start({ "sh", "-c", script }, { limit = 60 })
      local out, how, code = p:wait()
      assert.same({ "exit", 0 }, { how, code })
      local records = format == "json" and json_records(out) or text_records(out)
      assert.equal(4 * 3000, #records)
      local pids = {}
      for id = 1, 4 do
        local pid = check_burst(records, "p" .. id, 3000, format == "json")
        assert.is_nil(pids[pid], "two writers with one pid")
        pids[pid] = true
      end
      if format == "text" then
        for _, r in ipairs(records) do assert.equal("", r.tag) end -- no worker, no master
      end
    end)
  end

  it("--workers 2 --log-format json: the master's and each worker's records, each whole, "
    .. "name their process", function()
    local LINES = 500
    local argv = { "sh", "-c", 'exec "$@" 2>&1 >/dev/null', "sh", support.host_binary(),
      "--workers", "2", "--log-format", "json", "spec/fixtures/log_burst.lua" }
    local p = support.start(argv, { env = { LINES = tostring(LINES), LISTEN = "1" }, limit = 60 })
    local lines, burst = {}, 0
    while burst < 2 * LINES do -- bounded by the watchdog
      local line = p:readline()
      assert(line, "the output ended early:\n" .. table.concat(lines, "\n"))
      lines[#lines + 1] = line
      if line:find('"message":"w #', 1, true) then burst = burst + 1 end
    end
    p:kill("TERM")
    local rest, how, code = p:wait()
    assert.same({ "exit", 0 }, { how, code })
    local records = json_records(table.concat(lines, "\n") .. "\n" .. rest)
    local workers, master = {}, 0
    for _, r in ipairs(records) do
      if r.master then
        assert.is_nil(r.worker)
        assert.equal(p.pid, r.pid)
        master = master + 1
      elseif r.message:match("^w #") then
        assert.is_true(r.worker == 1 or r.worker == 2, "a worker's record without its number")
        local w = workers[r.worker] or { pid = r.pid, n = 0 }
        assert.equal(w.pid, r.pid, "worker " .. r.worker .. " has two pids")
        w.n = w.n + 1
        workers[r.worker] = w
      end
    end
    assert.is_true(master >= 3, "master records: " .. master) -- 2 started, stopping
    assert.equal(LINES, workers[1].n)
    assert.equal(LINES, workers[2].n)
    assert.are_not.equal(workers[1].pid, workers[2].pid)
    assert.are_not.equal(p.pid, workers[1].pid)
  end)

  -- The client sockets' local addresses are the server's peers.
  local function exercise(port)
    local peers = {}
    run(function()
      local a = support.connect(port)
      local b = support.connect(port)
      local c = support.connect(port)
      for name, s in pairs { a = a, b = b, c = c } do
        local host, p = s:address()
        peers[name] = ("%s:%d"):format(host, p)
      end
      assert.equal("ok", support.roundtrip(a, "hello"))
      assert.equal("ok", support.roundtrip(b, "cb"))
      assert(b:write("xyz"))
      assert.equal("ok", b:read("l", 2))
      assert(c:write("boom\n"))
      assert.equal("closed", select(2, c:read("l", 2)))
      a:close()
      b:close()
      c:close()
    end)
    return peers
  end

  it("json: a record written from a handler or a callback carries the connection's peer",
    function()
      local proc, port = support.start_host("spec/fixtures/log_server.lua",
        { "--log-format", "json" })
      local peers = exercise(port)
      proc:wait_log("boom from the handler")
      support.stop_clean(proc)
      local found = {}
      for _, r in ipairs(json_records(proc:stderr())) do
        if r.message == "got hello" then
          found.a = true
          assert.equal(peers.a, r.peer)
        elseif r.message == "cb xyz" then
          found.b = true
          assert.equal(peers.b, r.peer)
        elseif r.message:find("boom from the handler", 1, true) then
          found.c = true
          assert.equal(peers.c, r.peer)
          assert.equal("error", r.level)
          assert.matches("^handler error: .*log_server%.lua:%d+: boom from the handler\n"
            .. "stack traceback:\n", r.message)
        elseif r.message == "serving" then
          found.serving = true
          assert.is_nil(r.peer, "a record from the main chunk has no peer")
        end
      end
      assert.same({ a = true, b = true, c = true, serving = true }, found)
    end)

  it("text: the peer comes after the level", function()
    local proc, port = support.start_host("spec/fixtures/log_server.lua")
    local peers = exercise(port)
    proc:wait_log("boom from the handler")
    support.stop_clean(proc)
    local err = proc:stderr()
    assert.is_truthy(err:find(" [info] " .. peers.a .. ": got hello\n", 1, true), err)
    assert.is_truthy(err:find(" [info] " .. peers.b .. ": cb xyz\n", 1, true), err)
    assert.is_truthy(err:find(" [error] " .. peers.c .. ": handler error: ", 1, true), err)
    assert.is_truthy(err:find(" [info] serving\n", 1, true), err)
    text_records(err) -- and every line parses
  end)

  it("log.format() switches the library's records to JSON; a bad name raises", function()
    local out, code, err = support.run_host { "-e", [[
      local log = require("berth").log
      print(log.format())
      print(log.format("json"))
      log.warn("x=%d", 5)
      print(pcall(log.format, "xml"))]] }
    assert.equal(0, code, err)
    assert.equal('text\njson\nfalse\tberth.log.format: format must be "text" or "json" (got "xml")\n',
      out:gsub("\t[^\n]*:%d+: ", "\t"))
    local r = json_records(err)
    assert.equal(1, #r)
    assert.same({ "warn", "x=5" }, { r[1].level, r[1].message })
  end)

  it("--log-format takes only text or json", function()
    local out, code, err = support.run_host { "--log-format", "xml", "-e", "print(1)" }
    assert.equal(2, code)
    assert.equal("", out)
    assert.is_truthy(err:find([[berth: --log-format: expected "text" or "json" (got 'xml')]], 1, true),
      err)
  end)
end)

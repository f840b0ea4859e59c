-- TLS against real clients: `openssl s_client` and Python's ssl module
-- (spec/tls_client.py) talk to berth hosts started as child processes
-- (spec/fixtures/tls_echo.lua, examples/echo.lua with TLS_CERT/TLS_KEY,
-- and `--workers 2`), on 127.0.0.1 with port 0. Certificates come from
-- scripts/mkcerts. Covers: handshake, SNI choice, ALPN, resumption with
-- -sess_out/-sess_in (also across workers, and across two processes
-- sharing a ticket key file), renegotiation refused, a byte-exact 1 MiB
-- echo, a handshake that stalls half way (closed at the timeout),
-- garbage instead of a ClientHello, a required client certificate that is
-- missing, and certificates swapped by SIGHUP (an open connection keeps
-- working; a broken new certificate leaves the old one serving).
local helpers = require "support"

local certs
local function C(name) return certs .. "/" .. name end
local sh = helpers.shquote

local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end

-- Runs a shell command line; returns its output (stdout and stderr).
local function capture(cmdline)
  local h = assert(io.popen(cmdline .. " 2>&1"))
  local out = h:read("a")
  h:close()
  return out
end

-- openssl s_client to PORT with ARGS; stdin sends INPUT after a pause (so
-- that session tickets arrive before it quits).
local function s_client(port, args, input)
  return capture(("(sleep 0.3; printf %s; sleep 0.5) | timeout 10 openssl s_client "
    .. "-connect 127.0.0.1:%d %s"):format(sh(input or ""), port, args))
end

local function python(mode, port, extra)
  return capture(("timeout 40 python3 spec/tls_client.py %s %d %s %s")
    :format(mode, port, sh(C("ca.crt")), extra and sh(extra) or ""))
end

-- Starts a host script with env; returns proc, port.
local function start(argv, env)
  local proc = helpers.start(argv, { env = env, limit = 60 })
  local line = proc:readline()
  assert(line, "no listening line\n" .. proc:describe())
  local port = line:match("^listening on 127%.0%.0%.1:(%d+)$")
  assert(port, ("unexpected line %q\n%s"):format(line, proc:describe()))
  return proc, math.tointeger(tonumber(port))
end

local function fixture(env)
  local e = { CERTS = certs, TLS_CERT = C("server.crt"), TLS_KEY = C("server.key") }
  for k, v in pairs(env or {}) do e[k] = v end
  return start({ helpers.host_binary(), "--log-level", "debug", "spec/fixtures/tls_echo.lua" }, e)
end

local function stop(proc)
  proc:kill("TERM")
  local _, how, code = proc:wait()
  assert.same({ "exit", 0 }, { how, code }, proc:stderr())
end

describe("TLS with real clients", function()
  setup(function()
    assert(have("openssl") and have("python3"), "openssl and python3 are needed")
    certs = os.tmpname()
    os.remove(certs)
    assert(os.execute("scripts/mkcerts " .. certs .. " >/dev/null"), "scripts/mkcerts failed")
  end)
  teardown(function() os.execute("rm -rf " .. sh(certs)) end)
  before_each(helpers.before)
  after_each(helpers.after)

  it("openssl s_client: handshake, verification, SNI choice and ALPN", function()
    local proc, port = fixture()
    local out = s_client(port, ("-CAfile %s -servername localhost -alpn http/1.1")
      :format(sh(C("ca.crt"))), "hello\n")
    assert.matches("Verify return code: 0 %(ok%)", out)
    assert.matches("subject=CN = localhost", out)
    assert.matches("ALPN protocol: http/1.1", out)
    assert.matches("\nhello\n", out) -- echoed
    out = s_client(port, ("-CAfile %s -servername sni.test"):format(sh(C("ca.crt"))))
    assert.matches("subject=CN = sni.test", out)
    assert.matches("Verify return code: 0 %(ok%)", out)
    stop(proc)
  end)

  it("openssl s_client: sessions resume with -sess_out/-sess_in, TLS 1.3 and 1.2", function()
    local proc, port = fixture()
    for _, version in ipairs({ "-tls1_3", "-tls1_2" }) do
      local dir = helpers.tmpdir()
      local out = s_client(port, version .. " -sess_out " .. sh(dir .. "/s0"), "x\n")
      assert.matches("\nNew, TLSv1", out)
      for i = 1, 3 do -- each resumption yields a session that resumes again
        out = s_client(port, ("%s -sess_in %s -sess_out %s")
          :format(version, sh(dir .. "/s" .. (i - 1)), sh(dir .. "/s" .. i)), "x\n")
        assert.matches("\nReused, TLSv1", out, version .. " resumption " .. i)
        if not helpers.exists(dir .. "/s" .. i) then
          os.execute(("cp %s %s"):format(sh(dir .. "/s" .. (i - 1)), sh(dir .. "/s" .. i)))
        end
      end
    end
    stop(proc)
  end)

  it("openssl s_client: renegotiation is refused and the server goes on", function()
    local proc, port = fixture()
    local out = s_client(port, "-tls1_2", "R\n")
    assert.matches("RENEGOTIATING", out)
    assert.matches("no renegotiation", out)
    assert.matches("ok 1048576", python("echo1m", port))
    stop(proc)
  end)

  it("Python ssl: 1 MiB echoed byte-exact", function()
    local proc, port = fixture()
    assert.equal("ok 1048576\n", python("echo1m", port))
    stop(proc)
  end)

  it("Python: a handshake that stalls half way is closed at the timeout", function()
    local proc, port = fixture({ HANDSHAKE_TIMEOUT = "1" })
    local secs = tonumber(python("stall", port):match("^closed ([%d.]+)"))
    assert(secs, "not closed")
    assert.is_true(secs > 0.7 and secs < 5, "closed after " .. secs .. " s")
    stop(proc)
    -- (the record names the connection it is about: "127.0.0.1:PORT: ")
    assert.matches("%[debug%] 127%.0%.0%.1:%d+: tls: handshake with 127%.0%.0%.1:%d+ failed: "
      .. "handshake timeout", proc:stderr())
    assert.not_matches("%[error%]", proc:stderr())
  end)

  it("Python: garbage instead of a ClientHello is closed, the server stays up", function()
    local proc, port = fixture()
    assert.matches("^closed %d+", python("garbage", port))
    assert.equal("ok 1048576\n", python("echo1m", port))
    stop(proc)
    assert.matches("failed: http request", proc:stderr())
    assert.not_matches("%[error%]", proc:stderr())
  end)

  it("Python: a required client certificate that is missing is refused", function()
    local proc, port = fixture({ TLS_CA = C("ca.crt"), TLS_VERIFY = "required" })
    assert.equal("refused\n", python("nocert", port))
    local out = s_client(port, ("-CAfile %s -cert %s -key %s")
      :format(sh(C("ca.crt")), sh(C("client.crt")), sh(C("client.key"))), "with cert\n")
    assert.matches("with cert\n", out) -- (s_client may print it after the session)
    stop(proc)
  end)

  it("SIGHUP swaps the certificate: an open connection keeps working, new ones see the new one", function()
    local dir = helpers.tmpdir()
    local crt, key = dir .. "/live.crt", dir .. "/live.key"
    helpers.write_file(crt, helpers.read_file(C("server.crt")))
    helpers.write_file(key, helpers.read_file(C("server.key")))
    local proc, port = start({ helpers.host_binary(), "examples/echo.lua" },
      { PORT = "0", TLS_CERT = crt, TLS_KEY = key })
    local flag = dir .. "/go"
    local holder = helpers.start({ "python3", "spec/tls_client.py", "hold", tostring(port),
      C("ca.crt"), flag }, { limit = 40 })
    assert.equal("ready commonName=localhost", holder:readline())
    -- a new certificate (for sni.test), then SIGHUP
    helpers.write_file(crt, helpers.read_file(C("sni.crt")))
    helpers.write_file(key, helpers.read_file(C("sni.key")))
    proc:kill("HUP")
    local out
    for _ = 1, 50 do
      out = s_client(port, "-servername sni.test")
      if out:find("subject=CN = sni.test", 1, true) then break end
      os.execute("sleep 0.1")
    end
    assert.matches("subject=CN = sni.test", out)
    helpers.write_file(flag, "")
    assert.equal("again commonName=localhost", holder:readline()) -- the old one, still working
    holder:wait()
    -- a broken certificate: logged, and the current one keeps serving
    helpers.write_file(crt, "not a certificate\n")
    proc:kill("HUP")
    os.execute("sleep 0.5")
    out = s_client(port, "-servername sni.test")
    assert.matches("subject=CN = sni.test", out)
    stop(proc)
    assert.matches("%[error%] tls: 127%.0%.0%.1:%d+: reload failed, the old certificates stay: "
      .. "cannot load cert", proc:stderr())
  end)

  it("--workers 2: every worker resumes every session (keys from the master)", function()
    local proc, port = start({ helpers.host_binary(), "--workers", "2", "examples/echo.lua" },
      { PORT = "0", TLS_CERT = C("server.crt"), TLS_KEY = C("server.key") })
    local dir = helpers.tmpdir()
    local out = s_client(port, "-tls1_2 -sess_out " .. sh(dir .. "/s"), "x\n")
    assert.matches("\nNew, TLSv1", out)
    local reused = 0
    for _ = 1, 8 do -- accepts are spread over both workers
      out = s_client(port, "-tls1_2 -sess_in " .. sh(dir .. "/s"), "x\n")
      if out:find("\nReused, TLSv1", 1, true) then reused = reused + 1 end
    end
    assert.equal(8, reused)
    stop(proc)
  end)

  it("every TCP example serves TLS with TLS_CERT/TLS_KEY (same listening line)", function()
    local env = { PORT = "0", TLS_CERT = C("server.crt"), TLS_KEY = C("server.key") }
    local upstream, up_port = start({ helpers.host_binary(), "examples/echo.lua" }, env)
    local exchanges = {
      echo = { "hello\n", "hello" },
      chat = { nil, "welcome" },
      http = { "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP/1.1 200 OK" },
      resp = { "PING\r\n", "+PONG" },
      proxy = { "through\n", "through" }, -- to the TLS echo, over TLS
    }
    for name, x in pairs(exchanges) do
      local e = { UPSTREAM = "localhost:" .. up_port, UPSTREAM_TLS = "1", UPSTREAM_CA = C("ca.crt") }
      for k, v in pairs(env) do e[k] = v end
      local proc, port = start({ helpers.host_binary(), "examples/" .. name .. ".lua" }, e)
      helpers.run(function()
        local sock <close> = assert(helpers.berth.connect("localhost", port,
          { tls = { ca = C("ca.crt") }, timeout = 5 }))
        if x[1] then assert(sock:write(x[1])) end
        assert.equal(x[2], sock:read("l", 5), name)
      end)
      stop(proc)
    end
    stop(upstream)
  end)

  it("two processes sharing a ticket key file resume each other's sessions", function()
    local keys = helpers.tmpdir() .. "/ticket.key"
    assert(os.execute("openssl rand 80 > " .. sh(keys)))
    local env = { PORT = "0", TLS_CERT = C("server.crt"), TLS_KEY = C("server.key"),
      TLS_TICKET_KEYS = keys }
    local a, port_a = start({ helpers.host_binary(), "examples/echo.lua" }, env)
    local b, port_b = start({ helpers.host_binary(), "examples/echo.lua" }, env)
    local dir = helpers.tmpdir()
    assert.matches("\nNew, TLSv1%.3", s_client(port_a, "-sess_out " .. sh(dir .. "/s"), "x\n"))
    assert.matches("\nReused, TLSv1%.3", s_client(port_b, "-sess_in " .. sh(dir .. "/s"), "x\n"))
    stop(a)
    stop(b)
  end)
end)

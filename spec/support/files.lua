--- Files for the specs: temporary directories (removed after each test),
-- reading and writing whole files, shell quoting, file tests.
local files = {}

-- Directories made by files.tmpdir() during the current test.
local made = {}

--- `s` quoted for a POSIX shell command line.
function files.shquote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- A fresh temporary directory, removed after the test.
function files.tmpdir()
  local h = assert(io.popen("mktemp -d"))
  local dir = h:read("l")
  h:close()
  assert(dir and #dir > 0, "mktemp -d failed")
  made[#made + 1] = dir
  return dir
end

--- The whole content of `path`, or nil if it cannot be read.
function files.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

--- Writes `data` to `path` (replacing it); returns `path`.
function files.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
  return path
end

function files.exists(path)
  return os.execute("test -e " .. files.shquote(path)) == true
end

function files.is_socket_file(path)
  return os.execute("test -S " .. files.shquote(path)) == true
end

--- After each test: removes the test's temporary directories.
function files.after()
  local list = made
  made = {}
  for _, dir in ipairs(list) do os.execute("rm -rf " .. files.shquote(dir)) end
end

return files

-- scripts/layers.lua [SRC_DIR] -- check that src/ calls only downward.
--
-- The layers (the same list as the top of src/core.h), lowest first; a
-- file may call functions defined in its own layer or below, never above.
-- A file not listed is an error, so a new file must be placed here (the
-- pure C layer is "every file that does not include lua.h").
--
-- It reads each .c file, collects the non-static functions it defines
-- (name at the start of a line, followed by "("), then every identifier
-- followed by "(" in the other files, and reports each call from a lower
-- layer to a higher one. Prints the graph of file-to-file calls with
-- --graph. Exits 1 on a violation.
local dir = arg[1] and arg[1] ~= "--graph" and arg[1] or "src"
local want_graph = arg[1] == "--graph" or arg[2] == "--graph"

local LAYERS = {
  { name = "pure", files = {} }, -- filled in: files without lua.h
  { name = "loop", files = { "loop.c", "util.c", "check.c", "options.c", "limits.c" } },
  { name = "sched", files = { "sched.c" } },
  { name = "objects", files = { "socket.c", "socket_io.c", "socket_tls.c", "server.c",
    "timer.c", "signal.c", "fwatch.c", "proc.c", "resolve.c", "tls.c", "dgram.c",
    "dgram_io.c", "http.c", "ws.c", "resp_lua.c", "socket_proxy.c", "shared.c", "bus_lua.c",
    "metrics.c", "buffer_lua.c", "relay.c" } },
  { name = "shutdown", files = { "shutdown.c" } },
  { name = "module", files = { "module.c" } },
  { name = "api", files = { "api.c" } },
  { name = "host", files = { "host.c" } },
}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local files = {}
local ls = io.popen("ls " .. dir .. "/*.c")
for path in ls:lines() do files[#files + 1] = path:match("[^/]+$") end
ls:close()

local layer_of = {}
for i, l in ipairs(LAYERS) do
  for _, f in ipairs(l.files) do layer_of[f] = i end
end

local source, defines = {}, {}
local bad = false
for _, f in ipairs(files) do
  local s = read(dir .. "/" .. f)
  -- strip comments and strings, so only code is searched
  s = s:gsub("/%*.-%*/", " "):gsub("//[^\n]*", " "):gsub('"[^"\n]*"', '""')
  source[f] = s
  if not layer_of[f] then
    if not read(dir .. "/" .. f):find("#include <lua.h>", 1, true)
      and not read(dir .. "/" .. f):find('#include "core.h"', 1, true) then
      layer_of[f] = 1
    else
      io.stderr:write(("layers: %s is in no layer (add it to scripts/layers.lua)\n"):format(f))
      bad = true
    end
  end
  for line in s:gmatch("[^\n]+") do
    if not line:match("^static") and not line:match("^%s") then
      local name = line:match("^[%w_][%w_%s%*]-[%s%*]([%a_][%w_]*)%s*%(")
      if name then defines[name] = f end
    end
  end
end

local graph = {}
for _, f in ipairs(files) do
  local seen = {}
  for name in source[f]:gmatch("([%a_][%w_]*)%s*%(") do
    local to = defines[name]
    if to and to ~= f and not seen[name] then
      seen[name] = true
      graph[f] = graph[f] or {}
      graph[f][to] = true
      if layer_of[to] > layer_of[f] then
        bad = true
        print(("layers: %s (%s) calls %s in %s (%s): a call upward")
          :format(f, LAYERS[layer_of[f]].name, name, to, LAYERS[layer_of[to]].name))
      end
    end
  end
end

if want_graph then
  for i = #LAYERS, 1, -1 do
    local names = {}
    for _, f in ipairs(files) do
      if layer_of[f] == i then
        local to = {}
        for t in pairs(graph[f] or {}) do to[#to + 1] = t end
        table.sort(to)
        names[#names + 1] = ("  %s -> %s"):format(f, #to > 0 and table.concat(to, " ") or "-")
      end
    end
    if #names > 0 then print(LAYERS[i].name .. ":\n" .. table.concat(names, "\n")) end
  end
end
if not bad then print("layers: every call goes downward") end
os.exit(bad and 1 or 0)

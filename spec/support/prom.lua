--- A strict parser of the Prometheus text exposition format (0.0.4), for
-- the metrics specs: every line must be a HELP or TYPE comment, a sample,
-- or blank; names and label names must be valid; label values must be
-- properly quoted and escaped; values must be numbers (NaN, +Inf, -Inf
-- included); a family's TYPE comes before its samples and at most once;
-- histograms must have cumulative buckets ending in le="+Inf" equal to
-- their _count, and a _sum.
--
--   local fams = prom.parse(text)          -- raises on the first error
--   prom.value(fams, 'name{label="v"}')    -- a sample's value, or nil
--   prom.sum(fams, "name")                 -- the sum of a family's samples
local prom = {}

local NAME = "^[%a_:][%w_:]*$"
local LABEL = "^[%a_][%w_]*$"

local function number(s)
  if s == "NaN" then return 0 / 0 end
  if s == "+Inf" or s == "Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  return tonumber(s)
end

-- Labels of `s` (the text between the braces): a sorted canonical string
-- `k="v",...` and a table. Raises on a syntax error.
local function labels(s, where)
  local t, keys, pos = {}, {}, 1
  while pos <= #s do
    local k, after = s:match("^%s*([^=%s]+)%s*=%s*\"()", pos)
    if not k or not k:match(LABEL) then error(where .. ": bad label name at " .. s:sub(pos), 0) end
    local buf, i = {}, after
    while true do
      local c = s:sub(i, i)
      if c == "" then error(where .. ": unterminated label value", 0) end
      if c == '"' then break end
      if c == "\\" then
        local e = s:sub(i + 1, i + 1)
        if e == "n" then buf[#buf + 1] = "\n"
        elseif e == "\\" or e == '"' then buf[#buf + 1] = e
        else error(where .. ": bad escape \\" .. e, 0) end
        i = i + 2
      else
        buf[#buf + 1] = c
        i = i + 1
      end
    end
    if t[k] then error(where .. ": label " .. k .. " twice", 0) end
    t[k] = table.concat(buf)
    keys[#keys + 1] = k
    pos = i + 1
    local comma = s:match("^%s*,()", pos)
    if comma then pos = comma elseif s:match("^%s*$", pos) then break
    else error(where .. ": expected , after a label", 0) end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%s=%q"):format(k, t[k]) end
  return table.concat(parts, ","), t
end

-- The text inside the braces at the start of `s` ("{...}"), and the
-- position after the closing brace; quoted values may hold any byte.
local function braces(s, where)
  if s:sub(1, 1) ~= "{" then return nil end
  local quoted, i = false, 2
  while i <= #s do
    local c = s:sub(i, i)
    if quoted and c == "\\" then
      i = i + 1
    elseif c == '"' then
      quoted = not quoted
    elseif c == "}" and not quoted then
      return s:sub(2, i - 1), i + 1
    end
    i = i + 1
  end
  error(where .. ": no closing brace", 0)
end

-- The family a sample name belongs to, given the declared types.
local function family_of(fams, name)
  if fams[name] then return fams[name] end
  for _, suffix in ipairs { "_bucket", "_sum", "_count" } do
    local base = name:sub(1, -#suffix - 1)
    if name:sub(-#suffix) == suffix and fams[base] and fams[base].type == "histogram" then
      return fams[base]
    end
  end
end

local function check_histogram(f)
  local series = {}
  for _, s in ipairs(f.samples) do
    local le = s.labels.le
    local rest = {}
    for k, v in pairs(s.labels) do if k ~= "le" then rest[#rest + 1] = k .. "=" .. v end end
    table.sort(rest)
    local key = table.concat(rest, ",")
    local h = series[key] or { buckets = {} }
    series[key] = h
    if s.name == f.name .. "_bucket" then
      if not le then error(f.name .. ": a bucket without le", 0) end
      h.buckets[#h.buckets + 1] = { le = number(le), v = s.value }
    elseif s.name == f.name .. "_sum" then
      h.sum = s.value
    elseif s.name == f.name .. "_count" then
      h.count = s.value
    end
  end
  for key, h in pairs(series) do
    local last, prev = h.buckets[#h.buckets], -math.huge
    if not last or last.le ~= math.huge then error(f.name .. "{" .. key .. "}: no +Inf bucket", 0) end
    for _, b in ipairs(h.buckets) do
      if b.v < prev then error(f.name .. "{" .. key .. "}: buckets not cumulative", 0) end
      prev = b.v
    end
    if h.count ~= last.v then error(f.name .. "{" .. key .. "}: _count is not the +Inf bucket", 0) end
    if h.sum == nil then error(f.name .. "{" .. key .. "}: no _sum", 0) end
  end
end

--- Parses `text`; returns families by name: { type=, help=, samples =
-- { {name=, labels=, key=, value=}... }, by = { [sample key] = value } }
-- where a sample key is `name{k="v",...}` with the labels sorted.
function prom.parse(text)
  local fams, n = {}, 0
  if text:sub(-1) ~= "\n" then error("the text does not end with a newline", 0) end
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local where = "line " .. n
    if line:match("^#") then
      local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
      if kind == "HELP" or kind == "TYPE" then
        if not name:match(NAME) then error(where .. ": bad name " .. name, 0) end
        local f = fams[name] or { name = name, samples = {}, by = {} }
        fams[name] = f
        if kind == "TYPE" then
          if f.type then error(where .. ": second TYPE for " .. name, 0) end
          if #f.samples > 0 then error(where .. ": TYPE after samples of " .. name, 0) end
          if not ({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[rest] then
            error(where .. ": bad type " .. rest, 0)
          end
          f.type = rest
        else
          f.help = rest
        end
      end
    elseif line:match("%S") then
      local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      if not name then error(where .. ": not a sample: " .. line, 0) end
      local lab = ""
      local inner, after = braces(rest, where)
      local t = {}
      if inner then
        lab, t = labels(inner, where)
        rest = rest:sub(after)
      end
      local value = rest:match("^ (%S+)")
      local v = value and number(value)
      if not v then error(where .. ": bad value in " .. line, 0) end
      local f = family_of(fams, name)
      if not f then
        f = { name = name, samples = {}, by = {}, type = "untyped" }
        fams[name] = f
      end
      local key = name .. "{" .. lab .. "}"
      if f.by[key] then error(where .. ": sample " .. key .. " twice", 0) end
      f.samples[#f.samples + 1] = { name = name, labels = t, key = key, value = v }
      f.by[key] = v
    end
  end
  for _, f in pairs(fams) do
    if f.type == "histogram" then check_histogram(f) end
  end
  return fams
end

--- The value of sample `key` ('name{a="x"}' with labels sorted; 'name{}'
-- for none), or nil.
function prom.value(fams, key)
  local name = key:match("^[^{]+")
  local f = family_of(fams, name)
  return f and f.by[key]
end

--- The sum of every sample of family `name` (for a histogram, of its
-- _count samples).
function prom.sum(fams, name)
  local f = fams[name]
  if not f then return nil end
  local total = 0
  for _, s in ipairs(f.samples) do
    if f.type ~= "histogram" or s.name == name .. "_count" then total = total + s.value end
  end
  return total
end

--- Every counter sample of `fams` as key -> value (for monotonicity).
function prom.counters(fams)
  local t = {}
  for _, f in pairs(fams) do
    if f.type == "counter" or f.type == "histogram" then
      for _, s in ipairs(f.samples) do
        if f.type == "counter" or s.name ~= f.name .. "_sum" then t[s.key] = s.value end
      end
    end
  end
  return t
end

--- `promtool check metrics` on `text` if promtool is installed: true, or
-- false and its complaint; nil when there is no promtool.
function prom.promtool(text)
  local ok = os.execute("command -v promtool >/dev/null 2>&1")
  if not ok then return nil end
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local h = assert(io.popen("promtool check metrics < " .. path .. " 2>&1"))
  local out = h:read("a")
  local good = h:close()
  os.remove(path)
  return good and true or false, out
end

return prom

-- luacheck configuration; scripts/lint runs
--   luacheck lua spec examples scripts
std = "lua54"
max_line_length = 120

-- A `<close>` variable is used by going out of scope: name it with a
-- leading underscore (`local _server <close> = ...`) and it is not
-- reported as unused.
ignore = { "211/_.*" }

files["spec/"] = { std = "+busted" }

-- Run by host_spec under both lua5.4 and berth: X comes from `-e X = 1`.
files["spec/fixtures/host_args.lua"] = { read_globals = { "X" } }

exclude_files = {
  -- Broken on purpose: reload_spec checks that berth survives them.
  "spec/fixtures/reload_bad_syntax.lua",
  "spec/fixtures/reload_bad_script.lua",
}

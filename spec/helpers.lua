--- Old name of spec/support (kept so that specs written against it, on
-- branches not merged yet, still run). New specs: `require "support"`.
return require "support"

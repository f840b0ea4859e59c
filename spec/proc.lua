--- Old name of spec/support/proc.lua (rss, hwm, reset_hwm, cpu, fds, alive:
-- same names, sizes in bytes). New specs: `require "support"`.
return require "support.proc"

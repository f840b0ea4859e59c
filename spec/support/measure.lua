--- Figures in the specs that measure (hardening, stress): units, the
-- percentile of a list of samples, and printing a measured figure.
local measure = { KiB = 1024, MiB = 1024 * 1024 }

--- The p-th percentile (0 < p <= 1) of a list of numbers.
function measure.percentile(list, p)
  local sorted = {}
  for i, v in ipairs(list) do sorted[i] = v end
  table.sort(sorted)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

--- Prints a measured figure so that it shows in the test output.
function measure.report(fmt, ...)
  print(("[hardening] " .. fmt):format(...))
  io.stdout:flush()
end

return measure

-- Regression (issue 9, class 4): watching the same signal from two loops
-- (berth.signal("USR1") and berth.loop().signal("USR1")) aborted the
-- process inside libev. Class: process-wide signal ownership; the second
-- loop gets a Lua error naming the signal, and may take it once the first
-- loop let it go. Run in a child: the bug aborts the process.
local helpers = require "support"

describe("regress: one signal, two loops", function()
  it("is a Lua error, not an abort", function()
    local out, code, err = helpers.run_fixture("regress_signal_two_loops")
    assert.equal(0, code, err)
    assert.equal("second loop: false SIGUSR1 is already watched\nafter cancel: true\nok\n", out)
  end)
end)

-- Regression (issue 9, class 1): berth.step(t) and berth.run() called from
-- a non-task callback (on("data"), on("close"), an error handler), even in
-- pcall, armed an ev_timer on the C stack and raised past it: libev later
-- aborted, or ASan reported a SEGV in ev_feed_event. Class: no watcher may
-- live on a stack frame a Lua error can leave. The bounding timer of step()
-- now lives in struct loop, and "already running" is checked before
-- anything is armed. Run in a child: the bug kills the process.
local helpers = require "support"

describe("regress: run/step from inside the running loop", function()
  it("raise cleanly from callbacks and error handlers, and the loop goes on", function()
    local out, code, err = helpers.run_fixture("regress_step_in_callback")
    assert.equal(0, code, err)
    assert.equal("ok\n", out)
  end)
end)

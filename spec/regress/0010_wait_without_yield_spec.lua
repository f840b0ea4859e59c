-- Regression (issue 9, class 2): a blocking call (read, sleep, accept,
-- flush, cond:wait, connect) where its task cannot yield -- a table.sort
-- comparator, a string.gsub callback, a __tostring or C-called __index
-- metamethod -- raised "attempt to yield across a C-call boundary" but left
-- the task registered as a waiter: later a finished thread was resumed
-- (use-after-free under ASan, task bodies ran twice, stats().tasks went
-- negative). Class: every wait checks that it can yield before it
-- registers anything (sched_checkwait); a write above the watermark that
-- cannot wait buffers instead; the fairness yield checks too. Run in a
-- child: the bug corrupts the process.
local helpers = require "support"

describe("regress: waiting where the task cannot yield", function()
  it("raises a clear error and leaves nothing registered", function()
    local out, code, err = helpers.run_fixture("regress_wait_without_yield")
    assert.equal(0, code, err)
    assert.equal(table.concat({
      "accept raised", "connect raised", "flush raised", "read raised",
      "sleep raised", "wait raised", "write in gsub: true", "tasks 0",
    }, "\n") .. "\n", out)
    assert.equal("", err)
  end)
end)

-- Regression: server:accept(timeout) that ran into the EMFILE back-off
-- never timed out. The server's one timer serves both the back-off and the
-- accept deadline, and when the back-off ended nothing armed the deadline
-- again. Runs in a child lua5.4 under a low descriptor limit.
local support = require "support"

describe("regress: accept timeout during the EMFILE back-off", function()
  before_each(support.before)
  after_each(support.after)

  it("still times out", function()
    local out, code, err = support.run_fixture("accept_timeout_backoff", {},
      { shell_prefix = "ulimit -n 64" })
    assert.equal(0, code, err)
    assert.equal("nil\ttimeout\tin time\n", out)
  end)
end)

-- Regression (STYLE T6, mandatory from day one): EMFILE on accept. When the
-- process runs out of descriptors, accept4 fails with a connection still
-- queued; a level-triggered listener would then spin at 100% CPU. The server
-- must back off (R9), keep serving existing connections, and accept the
-- queued connection once descriptors are free. Runs in a child lua5.4 so the
-- descriptor limit does not touch the test process.
local support = require "support"

describe("regress: EMFILE on accept", function()
  before_each(support.before)
  after_each(support.after)

  it("backs off, keeps serving, and accepts once descriptors are free", function()
    local out, code, err = support.run_fixture("emfile_on_accept", {},
      { shell_prefix = "ulimit -n 64" })
    assert.equal(0, code, err)
    assert.equal("ok\n", out)
  end)
end)

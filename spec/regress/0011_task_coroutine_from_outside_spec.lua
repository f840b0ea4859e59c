-- Regression (issue 9, class 3): coroutine.resume() or coroutine.close() on
-- a task's coroutine (the one berth.spawn returns) while it was parked: a
-- dead thread was resumed later, and resume handed the caller the
-- scheduler's private sentinel. Class: a task cannot be driven from
-- outside. A parked task's continuation checks that the scheduler resumed
-- it; a new task's stack starts with a guard that raises; the Task is a
-- to-be-closed value under the task's function, so coroutine.close ends it
-- at once (waits unlinked, <close> variables run, counts right).
local helpers = require "support"

describe("regress: a task's coroutine driven from outside", function()
  it("is refused with an error or ended cleanly", function()
    local out, code, err = helpers.run_fixture("regress_task_from_outside")
    assert.equal(0, code, err)
    assert.equal(table.concat({
      "resume parked: false cannot be resumed from outside",
      "close parked: true",
      "tasks after close: 0",
      "resume fresh: false cannot be started from outside",
      "broadcast after close: 0",
      "closed vars: 2",
      "errors: 0",
      "tasks: 0",
    }, "\n") .. "\n", out)
  end)
end)

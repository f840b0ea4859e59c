--- Old name of the protocol helpers, now in spec/support (kept so that
-- specs written against it, on branches not merged yet, still run). New
-- specs: `require "support"` and `require "support.wire"`.
local support = require "support"
local wire = require "support.wire"

return {
  with_example = support.with_example,
  rss = support.rss,
  fd_count = support.fds,
  tcp_rx_queue = support.tcp_rx_queue,
  read_to_end = support.read_to_end,
  show = wire.show,
  assert_wire = wire.assert_wire,
  expect_bytes = wire.expect_bytes,
  expect_quiet = wire.expect_quiet,
  expect_close = wire.expect_close,
  dribble = wire.dribble,
}

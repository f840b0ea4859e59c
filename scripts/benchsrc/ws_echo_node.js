// ws_echo_node.js - Node.js WebSocket echo server (npm package `ws`) for the
// berth benchmarks: the JavaScript/libuv point of comparison for the
// WebSocket workloads.
//
//   node scripts/benchsrc/ws_echo_node.js [WS_MODULE_DIR]
//
// WS_MODULE_DIR is where `ws` is installed (default build/bench/node_modules/ws
// under the repository; scripts/bench installs it there with
// `npm install --prefix build/bench ws`, never into the repository).
// Listens on 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral) on any path,
// prints "listening on 127.0.0.1:PORT" when ready, and echoes every message
// with its type (text or binary); `ws` answers pings and close frames
// itself. No compression (perMessageDeflate off), no payload limit below
// 16 MiB, TCP_NODELAY on (ws sets it).
'use strict';
const path = require('path');

const wsDir = path.resolve(process.argv[2] ||
  path.join(__dirname, '..', '..', 'build', 'bench', 'node_modules', 'ws'));
const { WebSocketServer } = require(wsDir);

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.env.PORT || 0),
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('error', () => ws.terminate());
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

wss.on('listening', () => {
  process.stdout.write(`listening on 127.0.0.1:${wss.address().port}\n`);
});

// echo_node.js - Node.js `net` echo server for the berth benchmarks: the
// JavaScript/libuv point of comparison for the echo workloads.
//
// Listens on 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
// "listening on 127.0.0.1:PORT" when ready and echoes every byte back.
// socket.pipe(socket) gives backpressure: reading pauses while writes queue.
'use strict';
const net = require('net');

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});

server.listen(Number(process.env.PORT || 0), '127.0.0.1', 4096, () => {
  process.stdout.write(`listening on 127.0.0.1:${server.address().port}\n`);
});

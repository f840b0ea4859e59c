// udp_echo_node.js - Node.js `dgram` UDP echo server for the berth
// benchmarks: the JavaScript/libuv point of comparison for the UDP workloads.
//
// Binds 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
// "listening on 127.0.0.1:PORT" when ready and sends every datagram back to
// its sender. Send errors (a full buffer) lose that echo only.
'use strict';
const dgram = require('dgram');

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  sock.send(msg, rinfo.port, rinfo.address);
});
sock.on('error', (err) => {
  process.stderr.write(`udp_echo_node: ${err.message}\n`);
});

sock.bind(Number(process.env.PORT || 0), '127.0.0.1', () => {
  process.stdout.write(`listening on 127.0.0.1:${sock.address().port}\n`);
});

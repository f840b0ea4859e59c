// http_node.js - Node.js `http` hello server for the berth benchmarks: the
// JavaScript/libuv point of comparison for the HTTP workloads.
//
// Listens on 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
// "listening on 127.0.0.1:PORT" when ready, and answers every request with
// 200, Content-Type: text/plain, Content-Length: 13, "Hello, World!" on a
// keep-alive connection (node adds its usual Date/Connection headers) --
// except, as examples/http.lua does, POST /echo (the request body echoed)
// and GET /chunked ("Hello, World!" in three chunks).
'use strict';
const http = require('http');

const BODY = 'Hello, World!';
const HEADERS = { 'Content-Type': 'text/plain', 'Content-Length': BODY.length };

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/echo') {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
      res.end(body);
    });
    return;
  }
  if (req.url === '/chunked') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.write('Hello');
    res.write(', ');
    res.end('World!');
    return;
  }
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
server.keepAliveTimeout = 0; // no idle timeout: the load generator decides

server.listen(Number(process.env.PORT || 0), '127.0.0.1', 4096, () => {
  process.stdout.write(`listening on 127.0.0.1:${server.address().port}\n`);
});

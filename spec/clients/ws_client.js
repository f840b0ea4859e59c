// spec/clients/ws_client.js WS_MODULE_DIR PORT -- drives
// examples/websocket.lua with node's `ws` package (npm, installed by
// spec/realclients.sh into build/), for spec/realclients.sh. Prints one
// line per check, "ok NAME" or "not ok NAME: why"; every wait is bounded.
'use strict';
const WebSocket = require(require('path').resolve(process.argv[2]));
const url = `ws://127.0.0.1:${process.argv[3]}`;
const T = 10000;

function report(name, ok, why) {
  console.log((ok ? 'ok ' : 'not ok ') + name + (ok ? '' : ': ' + why));
}

function open(path, opts) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url + path, opts);
    const timer = setTimeout(() => reject(new Error('open timed out')), T);
    ws.once('open', () => { clearTimeout(timer); resolve(ws); });
    ws.once('error', reject);
  });
}

function next(ws) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message')), T);
    ws.once('message', (data, isBinary) => { clearTimeout(timer); resolve({ data, isBinary }); });
    ws.once('close', (code) => reject(new Error('closed ' + code)));
  });
}

function closed(ws) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once('close', (code) => resolve(code));
  });
}

async function check(name, fn) {
  try {
    const why = await fn();
    report(name, !why, why);
  } catch (e) {
    report(name, false, String(e));
  }
}

async function echo(deflate) {
  const ws = await open('/echo', { perMessageDeflate: deflate });
  if (deflate && !ws.extensions.includes('permessage-deflate')) return 'deflate not negotiated';
  ws.send('hello, berth');
  let m = await next(ws);
  if (m.isBinary || m.data.toString() !== 'hello, berth') return 'text';
  const bin = Buffer.alloc(300000);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7) & 255;
  ws.send(bin);
  m = await next(ws);
  if (!m.isBinary || !bin.equals(m.data)) return 'binary';
  ws.send('frag', { fin: false });
  ws.send('mented', { fin: true });
  m = await next(ws);
  if (m.data.toString() !== 'fragmented') return 'fragmented';
  ws.close(1000);
  const code = await closed(ws);
  if (code !== 1000) return 'close code ' + code;
}

async function chat() {
  const a = await open('/chat'), b = await open('/chat');
  await new Promise((r) => setTimeout(r, 200));
  a.send('hi from node a');
  const m = await next(b);
  a.close(); b.close();
  if (m.data.toString() !== 'hi from node a') return 'got ' + m.data;
}

(async () => {
  await check('node ws: echo text, binary, fragmented, close 1000', () => echo(false));
  await check('node ws: echo with permessage-deflate', () => echo(true));
  await check('node ws: /chat between two clients', chat);
  process.exit(0);
})();

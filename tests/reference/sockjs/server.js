// The reference SockJS server of tests/sockjs_node_diff.rs: sockjs-node
// 0.3.24 (what videre-server ran) mounting the four endpoints of sigway's
// protocol test server (src/sockjs/echo.rs, examples/sockjs_test_server.rs)
// with the same options: /echo, /close, /disabled_websocket_echo and
// /cookie_needed_echo, a 4096-byte response limit on all four, sockjs-node's
// default heartbeat (25 s), disconnect delay (5 s) and client URL.
//
// Usage: node server.js PORT [HEARTBEAT_MS DISCONNECT_DELAY_MS]
// (the optional timings let the test check heartbeats and expiry quickly;
// it then gives sigway the same ones). Listens on 127.0.0.1 only.
'use strict';

const http = require('http');
const sockjs = require('sockjs');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.js PORT [HEARTBEAT_MS DISCONNECT_DELAY_MS]');
  process.exit(2);
}
const timings = {};
if (process.argv[3]) timings.heartbeat_delay = Number(process.argv[3]);
if (process.argv[4]) timings.disconnect_delay = Number(process.argv[4]);

const options = Object.assign(
  {
    response_limit: 4096,
    sockjs_url: 'https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js',
    log: () => {},
  },
  timings,
);

// The apps of sockjs-node's own test server (examples/test_server).
const echo = sockjs.createServer(options);
echo.on('connection', (conn) => {
  conn.on('data', (m) => conn.write(m));
});
const close = sockjs.createServer(options);
close.on('connection', (conn) => {
  conn.close(3000, 'Go away!');
});

const server = http.createServer((req, res) => {
  // Only paths outside every prefix get here.
  res.writeHead(404);
  res.end();
});
echo.installHandlers(server, { prefix: '/echo' });
close.installHandlers(server, { prefix: '/close' });
echo.installHandlers(server, { prefix: '/disabled_websocket_echo', websocket: false });
echo.installHandlers(server, { prefix: '/cookie_needed_echo', jsessionid: true });

server.listen(port, '127.0.0.1', () => {
  console.log('listening on 127.0.0.1:' + port);
});

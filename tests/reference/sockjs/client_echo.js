// Echo round trip through sockjs-client 1.6.1 running in Node, for
// tests/sockjs_client_node.rs: reads {"url", "transport", "messages"} as
// JSON on stdin, opens `new SockJS(url, null, {transports: [transport]})`,
// sends every message once the session is open, and prints one JSON line:
// {"transport": <what sockjs-client used>, "received": [...], "error": ...}
// once every echo came back, the session closed, or 10 s passed.
'use strict';

const SockJS = require('sockjs-client');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { url, transport, messages } = JSON.parse(input);
  const received = [];
  let finished = false;
  let sock;
  const finish = (error) => {
    if (finished) return;
    finished = true;
    const used = sock && sock.transport ? sock.transport : null;
    process.stdout.write(JSON.stringify({ transport: used, received, error: error || null }) + '\n');
    try { sock.close(); } catch (e) { /* already closed */ }
    // sockjs-client keeps timers (heartbeat, info) alive: leave now.
    setTimeout(() => process.exit(0), 50);
  };
  const timer = setTimeout(() => finish('timeout after 10 s'), 10000);
  try {
    sock = new SockJS(url, null, { transports: [transport] });
  } catch (e) {
    finish('constructor: ' + e.message);
    return;
  }
  sock.onopen = () => {
    for (const message of messages) sock.send(message);
  };
  sock.onmessage = (e) => {
    received.push(e.data);
    if (received.length === messages.length) {
      clearTimeout(timer);
      finish(null);
    }
  };
  sock.onclose = (e) => {
    clearTimeout(timer);
    finish('closed ' + e.code + ' ' + e.reason);
  };
});
process.on('uncaughtException', (e) => {
  process.stdout.write(JSON.stringify({ transport: null, received: [], error: 'uncaught: ' + (e && e.message) }) + '\n');
  process.exit(0);
});

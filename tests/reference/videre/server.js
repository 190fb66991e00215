// A stand-in for videre-server (there is no release of it on npm): the Node
// reference that benches/compare.sh measures sigway's videre path against.
// It runs on sockjs-node 0.3.24, as videre-server did, and behaves as
// ../../../../shared/spec/videre.md says videre-server does:
//
// - SockJS under the prefix /echo (every transport sockjs-node offers, the
//   raw /echo/websocket included);
// - reads conf.json from its working directory ({"Port", "TLS", "Cert",
//   "Key"}) and serves HTTPS when "TLS" is true;
// - connect: leave every room (each is told `disconnect`), join RoomId, send
//   the packet to the whole room with Payload "true" for the room's first
//   user, "false" otherwise;
// - broadcast: the packet to every member of RoomId, the sender included;
// - ping: the sender gets the packet with Payload = JSON of the room's user
//   ids in join order;
// - disconnect: does nothing (videre-server's bug, kept so that the figures
//   are those of the real server);
// - closing the session leaves every room, each told `disconnect`; an
//   empty room disappears.
//
// Two deliberate differences, both so that only the protocol work is
// measured on a shared machine: it listens on 127.0.0.1 (videre-server
// listened on 0.0.0.0) and it does not log every packet to
// log/debug.log (sigway is measured with its log file off too). Bad input
// that made videre-server throw (a packet without Header, an unknown room)
// is dropped instead, so one bad packet cannot end a benchmark run.
//
// Usage (from a directory holding conf.json): node server.js
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const sockjs = require('sockjs');

const conf = JSON.parse(fs.readFileSync('conf.json', 'utf8'));
const port = Number(conf.Port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('conf.json: Port must be a TCP port');
  process.exit(2);
}

// RoomId → members in join order: {userId, session}.
const rooms = new Map();

function sendToRoom(roomId, packet) {
  const room = rooms.get(roomId);
  if (!room) return;
  const text = JSON.stringify(packet);
  for (const member of room) member.session.write(text);
}

// Removes the session from every room it is in and tells each room.
function leaveAll(session) {
  const left = [];
  for (const [roomId, room] of rooms) {
    const index = room.findIndex((member) => member.session === session);
    if (index === -1) continue;
    const [member] = room.splice(index, 1);
    left.push([roomId, member.userId]);
  }
  for (const [roomId, userId] of left) {
    sendToRoom(roomId, {
      Header: { Event: 'disconnect', UserId: userId, RoomId: roomId },
      Payload: '',
    });
  }
  for (const [roomId, room] of rooms) {
    if (room.length === 0) rooms.delete(roomId);
  }
}

function connect(packet, session) {
  leaveAll(session);
  const roomId = packet.Header.RoomId;
  let room = rooms.get(roomId);
  const initiator = !room;
  if (!room) {
    room = [];
    rooms.set(roomId, room);
  }
  room.push({ userId: packet.Header.UserId, session });
  packet.Payload = JSON.stringify(initiator);
  sendToRoom(roomId, packet);
}

function ping(packet, session) {
  const room = rooms.get(packet.Header.RoomId);
  if (!room) return;
  packet.Payload = JSON.stringify(room.map((member) => member.userId));
  session.write(JSON.stringify(packet));
}

const echo = sockjs.createServer({
  sockjs_url: 'https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js',
  log: () => {},
});
echo.on('connection', (session) => {
  session.on('data', (text) => {
    let packet;
    try {
      packet = JSON.parse(text);
    } catch (err) {
      return;
    }
    const header = packet && packet.Header;
    if (!header || typeof header !== 'object') return;
    switch (header.Event) {
      case 'connect':
        connect(packet, session);
        break;
      case 'broadcast':
        sendToRoom(header.RoomId, packet);
        break;
      case 'ping':
        ping(packet, session);
        break;
      default:
        // 'disconnect' included: videre-server ignores it (see above).
        break;
    }
  });
  session.on('close', () => leaveAll(session));
});

const server = conf.TLS
  ? https.createServer({ cert: fs.readFileSync(conf.Cert), key: fs.readFileSync(conf.Key) })
  : http.createServer();
echo.installHandlers(server, { prefix: '/echo' });
server.listen(port, '127.0.0.1', () => {
  console.log('videre reference listening on 127.0.0.1:' + port);
});

// Checks a running sigway the way real clients use it, with no dependency
// beyond Node 20 (`node --experimental-websocket`): a sigver (Netflux)
// join of two peers with a relayed offer and answer, and a videre call of
// two users over the SockJS WebSocket transport with one broadcast. Used by
// tests/docker/run.sh against the container; every wait is bounded.
//
// Usage: node --experimental-websocket check.mjs http://127.0.0.1:PORT

const base = (process.argv[2] || '').replace(/\/$/, '');
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(base)) {
  console.error('check: the URL must be http://127.0.0.1:PORT (loopback only), got %j', base);
  process.exit(2);
}
const wsBase = base.replace(/^http/, 'ws');
const WAIT_MS = 5000;

// ------------------------------------------------------------ protobuf, by hand
// sigver's Message: oneof { bool heartbeat = 1; Content content = 2;
// GroupData connect = 3; bool connected = 4 }; Content { uint32 senderId = 1;
// uint32 recipientId = 2; bool lastData = 3; bytes data = 4 };
// GroupData { uint32 id = 1; repeated uint32 members = 2 }.

function varint(n) {
  const out = [];
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7; }
  out.push(n);
  return out;
}
const field = (number, wire) => varint((number << 3) | wire);
const lengthDelimited = (number, bytes) => [...field(number, 2), ...varint(bytes.length), ...bytes];
const uint = (number, value) => (value ? [...field(number, 0), ...varint(value)] : []);

function encodeConnect(id, members) {
  const packed = members.flatMap(varint);
  const group = [...uint(1, id), ...(packed.length ? lengthDelimited(2, packed) : [])];
  return Uint8Array.from(lengthDelimited(3, group));
}
function encodeContent(senderId, recipientId, text) {
  const content = [...uint(1, senderId), ...uint(2, recipientId), ...lengthDelimited(4, [...Buffer.from(text)])];
  return Uint8Array.from(lengthDelimited(2, content));
}
const encodeHeartbeat = () => Uint8Array.from([...field(1, 0), 1]);

function readVarint(bytes, at) {
  let value = 0, shift = 0;
  for (;;) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
    shift += 7;
  }
}
function fields(bytes) {
  const out = {};
  let at = 0;
  while (at < bytes.length) {
    let key;
    [key, at] = readVarint(bytes, at);
    const [number, wire] = [key >>> 3, key & 7];
    if (wire === 0) { let v; [v, at] = readVarint(bytes, at); out[number] = v; }
    else if (wire === 2) { let len; [len, at] = readVarint(bytes, at); out[number] = bytes.subarray(at, at + len); at += len; }
    else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}
function decodeMessage(bytes) {
  const top = fields(bytes);
  if (1 in top) return { heartbeat: true };
  if (4 in top) return { connected: top[4] === 1 };
  if (2 in top) {
    const c = fields(top[2]);
    return { content: { senderId: c[1] || 0, recipientId: c[2] || 0, data: Buffer.from(c[4] || []).toString() } };
  }
  return { unknown: true };
}

// ------------------------------------------------------------ sockets

/** A WebSocket whose next messages are awaited one by one, with a deadline. */
function open(url, binary) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    if (binary) ws.binaryType = 'arraybuffer';
    const queue = [], waiters = [];
    ws.onmessage = (event) => {
      const data = binary ? new Uint8Array(event.data) : event.data;
      const waiter = waiters.shift();
      waiter ? waiter(data) : queue.push(data);
    };
    const timer = setTimeout(() => reject(new Error(`no WebSocket to ${url} within ${WAIT_MS} ms`)), WAIT_MS);
    ws.onerror = () => { clearTimeout(timer); reject(new Error(`WebSocket to ${url} failed`)); };
    ws.onopen = () => {
      clearTimeout(timer);
      ws.next = (what) => queue.length ? Promise.resolve(queue.shift()) : new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error(`nothing received within ${WAIT_MS} ms (waiting for ${what})`)), WAIT_MS);
        waiters.push((data) => { clearTimeout(t); res(data); });
      });
      resolve(ws);
    };
  });
}

/** The next sigver message that is not a heartbeat (heartbeats answered). */
async function nextSigver(ws, what) {
  for (let i = 0; i < 20; i++) {
    const message = decodeMessage(await ws.next(what));
    if (message.heartbeat) { ws.send(encodeHeartbeat()); continue; }
    return message;
  }
  throw new Error(`only heartbeats while waiting for ${what}`);
}

async function sigverJoin() {
  const key = `/docker-check-${process.pid}`;
  const member = await open(wsBase + key, true);
  member.send(encodeConnect(1, []));
  const founded = await nextSigver(member, 'connected (member)');
  if (founded.connected !== true) throw new Error(`the first peer did not found the group: ${JSON.stringify(founded)}`);
  const joiner = await open(wsBase + key, true);
  joiner.send(encodeConnect(2, []));
  const bound = await nextSigver(joiner, 'connected (joiner)');
  if (bound.connected !== false) throw new Error(`the joiner was not bound first: ${JSON.stringify(bound)}`);
  joiner.send(encodeContent(0, 0, 'offer'));
  const offer = await nextSigver(member, 'the relayed offer');
  if (offer.content?.data !== 'offer' || !offer.content.senderId) throw new Error(`offer not relayed: ${JSON.stringify(offer)}`);
  member.send(encodeContent(0, offer.content.senderId, 'answer'));
  const answer = await nextSigver(joiner, 'the relayed answer');
  if (answer.content?.data !== 'answer') throw new Error(`answer not relayed: ${JSON.stringify(answer)}`);
  joiner.send(encodeConnect(2, [1]));
  const joined = await nextSigver(joiner, 'connected (joined)');
  if (joined.connected !== true) throw new Error(`the joiner did not join: ${JSON.stringify(joined)}`);
  member.close(); joiner.close();
  console.log('check: sigver: two peers joined one group, offer and answer relayed');
}

// SockJS frames: "o" open, "h" heartbeat, "a[...]" messages, "c[...]" close.
async function sockjsUser(session) {
  const ws = await open(`${wsBase}/echo/000/${session}/websocket`, false);
  const first = await ws.next('the SockJS open frame');
  if (first !== 'o') throw new Error(`expected the SockJS open frame, got ${first}`);
  ws.packets = [];
  ws.packet = async (what, test) => {
    for (let i = 0; i < 20; i++) {
      while (ws.packets.length) {
        const packet = ws.packets.shift();
        if (test(packet)) return packet;
      }
      const frame = await ws.next(what);
      if (frame.startsWith('a')) ws.packets.push(...JSON.parse(frame.slice(1)).map((text) => JSON.parse(text)));
      else if (frame.startsWith('c')) throw new Error(`session closed: ${frame}`);
    }
    throw new Error(`no ${what}`);
  };
  ws.sendPacket = (packet) => ws.send(JSON.stringify([JSON.stringify(packet)]));
  return ws;
}

async function videreCall() {
  const room = `docker-check-${process.pid}`;
  const header = (Event, UserId) => ({ Event, UserId, RoomId: room });
  const alice = await sockjsUser(`alice${process.pid}`);
  alice.sendPacket({ Header: header('connect', 'alice'), Payload: '{}' });
  const initiator = await alice.packet('alice\'s connect', (p) => p.Header?.Event === 'connect' && p.Header.UserId === 'alice');
  if (initiator.Payload !== 'true') throw new Error(`alice is not the initiator: ${JSON.stringify(initiator)}`);
  const bob = await sockjsUser(`bob${process.pid}`);
  bob.sendPacket({ Header: header('connect', 'bob'), Payload: '{}' });
  await alice.packet('bob\'s connect at alice', (p) => p.Header?.Event === 'connect' && p.Header.UserId === 'bob');
  const offer = { Type: 'Ice Offer', IcePacket: { type: 'offer', sdp: 'v=0 (docker check)' } };
  alice.sendPacket({ Header: header('broadcast', 'alice'), Payload: offer });
  const got = await bob.packet('alice\'s broadcast at bob', (p) => p.Header?.Event === 'broadcast' && p.Header.UserId === 'alice');
  if (JSON.stringify(got.Payload) !== JSON.stringify(offer)) throw new Error(`broadcast changed: ${JSON.stringify(got)}`);
  alice.close(); bob.close();
  console.log('check: videre: two users in one room over the SockJS WebSocket, a broadcast delivered');
}

try {
  await sigverJoin();
  await videreCall();
  process.exit(0);
} catch (error) {
  console.error(`check: FAIL: ${error.message}`);
  process.exit(1);
}

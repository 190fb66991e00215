// End-to-end scenarios: real client code (Netflux 4.3.1, sockjs-client
// 1.6.1 with a videre-client stand-in, sigway's own /demo page) in headless
// Chromium against a running sigway.
//
// run.sh starts this inside a network namespace that has only `lo`, with
// SIGWAY_URL pointing at sigway on 127.0.0.1. This file serves the test pages
// and the client libraries from node_modules on 127.0.0.1, drives the pages
// with playwright-core, checks what each scenario promises (membership,
// messages over the peer-to-peer channel, connected calls with live video,
// the selected ICE pair being 127.0.0.1 on both ends), prints each join's
// duration, saves a screenshot of every page and exits non-zero on any
// failure.
//
// Usage: node e2e.mjs [name-filter ...]   (a scenario runs when its name
// contains one of the filters; no filter runs all)
// Environment: SIGWAY_URL (required), SIGWAY_TLS_URL (the TLS sigway, for
// the tls-* scenarios), E2E_STATIC_PORT (page server port, default any),
// E2E_SCREENSHOTS (folder, default ./screenshots), E2E_CHROMIUM (default
// /usr/bin/chromium), E2E_BUDGET (seconds for all scenarios, default 420),
// E2E_CHROMIUM_ARGS (extra flags).

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const sigwayUrl = (process.env.SIGWAY_URL || '').replace(/\/$/, '');
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(sigwayUrl)) {
  console.error('e2e: SIGWAY_URL must be http://127.0.0.1:PORT (got %j)', sigwayUrl);
  process.exit(2);
}
// The same gateway with TLS (https/wss, self-signed certificate for
// 127.0.0.1 that Node trusts through NODE_EXTRA_CA_CERTS and the browser
// contexts of tls-* scenarios ignore).
const sigwayTlsUrl = (process.env.SIGWAY_TLS_URL || '').replace(/\/$/, '');
const endpoints = (http) => ({ http, ws: http.replace(/^http/, 'ws') });
const SIGWAY = endpoints(sigwayUrl);
const SIGWAY_TLS = sigwayTlsUrl ? endpoints(sigwayTlsUrl) : null;
const screenshotDir = path.resolve(process.env.E2E_SCREENSHOTS || path.join(here, 'screenshots'));
const chromiumPath = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const filters = process.argv.slice(2);
const budgetSeconds = Number(process.env.E2E_BUDGET || 420);
const runStarted = Date.now();

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  // WebRTC on loopback only: gather 127.0.0.1 candidates, and show real
  // addresses instead of mDNS names (which need a resolver we do not have).
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // videre: a fake camera and microphone, permission granted without a prompt.
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
];

// Extra flags for experiments, e.g. E2E_CHROMIUM_ARGS=--disable-http2
if (process.env.E2E_CHROMIUM_ARGS) CHROMIUM_ARGS.push(...process.env.E2E_CHROMIUM_ARGS.split(/\s+/).filter(Boolean));

const commonScript = fs.readFileSync(path.join(here, 'pages', 'e2e-common.js'), 'utf8');
const timings = [];
const results = [];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const shortId = () => Math.random().toString(36).slice(2, 8);

// ---------------------------------------------------------------- static files

const LIBRARIES = {
  '/lib/netflux.js': 'node_modules/netflux/dist/netflux.browser.es5.umd.js',
  '/lib/sockjs.js': 'node_modules/sockjs-client/dist/sockjs.js',
  // Unpacked by run.sh from `npm pack netflux@3.0.0` (see there why).
  '/lib/netflux-legacy.js': 'node_modules/.netflux-legacy/netflux.umd.js',
};
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

function startStaticServer() {
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    let file = LIBRARIES[pathname] && path.join(here, LIBRARIES[pathname]);
    const page = /^\/pages\/([\w.-]+)$/.exec(pathname);
    if (!file && page) file = path.join(here, 'pages', page[1]);
    if (!file || !fs.existsSync(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
      'cache-control': 'no-store',
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(process.env.E2E_STATIC_PORT || 0), '127.0.0.1', () => resolve(server));
  });
}

// ---------------------------------------------------------------- harness

class Failure extends Error {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}


// Polls `probe` until `ok` accepts its value; fails with the last value seen.
async function waitUntil(what, timeoutMs, probe, ok) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (ok(last)) return last;
    if (Date.now() > deadline) {
      throw new Failure(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last).slice(0, 2000)}`);
    }
    await sleep(100);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`${what}: gave up after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function recordTiming(scenario, label, what, ms) {
  timings.push({ scenario, label, what, ms: ms == null ? null : Math.round(ms) });
}

// One scenario's browser context and pages. Every page gets the shared
// helper script, and any request that leaves loopback fails the scenario.
class Scenario {
  constructor(name, browser, staticUrl, sigway) {
    this.name = name;
    this.browser = browser;
    this.staticUrl = staticUrl;
    this.sigway = sigway;
    this.tls = sigway.http.startsWith('https:');
    this.pages = new Map();
    this.problems = [];
    this.contexts = [];
  }

  // Each page is its own browser context: separate people, not tabs of one.
  async open(label, url) {
    const context = await this.browser.newContext({ viewport: { width: 900, height: 640 }, ignoreHTTPSErrors: this.tls });
    this.contexts.push(context);
    await context.grantPermissions(['camera', 'microphone']);
    await context.addInitScript({ content: commonScript });
    await context.route('**/*', async (route) => {
      const target = new URL(route.request().url());
      // Test pages opened on sigway's own origin (same-origin SockJS
      // transports): their /pages/ and /lib/ come from the page server.
      if (target.origin === this.sigway.http && /^\/(pages|lib)\//.test(target.pathname)) {
        return route.fulfill({ response: await route.fetch({ url: `${this.staticUrl}${target.pathname}` }) });
      }
      if (target.hostname === '127.0.0.1') return route.continue();
      this.problems.push(`${label}: request off loopback blocked: ${target.href}`);
      return route.abort();
    });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const consoleLines = [];
    page.on('console', (msg) => consoleLines.push(`[${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => this.problems.push(`${label}: uncaught page error: ${err.message}`));
    page.on('websocket', (ws) => {
      if (!/^wss?:\/\/127\.0\.0\.1:/.test(ws.url())) this.problems.push(`${label}: WebSocket off loopback: ${ws.url()}`);
    });
    this.pages.set(label, { page, context, consoleLines });
    await page.goto(url, { waitUntil: 'load' });
    return page;
  }

  page(label) {
    return this.pages.get(label).page;
  }

  async screenshot(label, suffix = '') {
    const entry = this.pages.get(label);
    if (!entry || entry.page.isClosed()) return;
    const file = path.join(screenshotDir, `${this.name}--${label}${suffix}.png`);
    await entry.page.screenshot({ path: file, timeout: 10000 }).catch((err) => {
      this.problems.push(`${label}: screenshot failed: ${err.message}`);
    });
  }

  async close(label) {
    const entry = this.pages.get(label);
    await entry.page.close();
    await entry.context.close();
  }

  // The selected ICE pair of every connected peer connection of the page:
  // at least `minimum` of them, each with iceServers [] and 127.0.0.1 at both ends.
  // Waits (up to 10 s) for two passing states: a remote candidate that ICE
  // met before signaling delivered it is peer-reflexive, and Chromium hides
  // its address until the signaled candidate replaces it; and the selected
  // pair shows "in-progress" while a consent check on it is under way.
  async assertLoopbackIce(label, minimum) {
    const settled = ({ pair }) => !pair || (pair.state === 'succeeded' && pair.local.address && pair.remote.address);
    const report = await waitUntil(
      `${label}'s selected ICE pairs to settle (succeeded, both addresses shown)`,
      10000,
      () => this.page(label).evaluate(() => window.e2e.iceReport()),
      (r) => r.every(settled),
    ).catch((err) => {
      if (err instanceof Failure) throw new Failure(`${label}: ${err.message}`);
      throw err;
    });
    check(report.length >= minimum, `${label}: ${report.length} connected peer connection(s), expected at least ${minimum}`);
    for (const { iceServers, pair } of report) {
      check(Array.isArray(iceServers) && iceServers.length === 0, `${label}: peer connection configured with iceServers ${JSON.stringify(iceServers)}`);
      check(pair, `${label}: connected peer connection without a selected candidate pair`);
      check(pair.state === 'succeeded', `${label}: selected pair state ${pair.state}`);
      check(
        pair.local.address === '127.0.0.1' && pair.remote.address === '127.0.0.1',
        `${label}: selected ICE pair is not loopback: ${JSON.stringify(pair)}`,
      );
    }
    return report.map(({ pair }) => `${pair.local.protocol} ${pair.local.address}:${pair.local.port} <-> ${pair.remote.address}:${pair.remote.port}`);
  }

  async finish(failed) {
    if (failed) {
      for (const [label, entry] of this.pages) {
        if (entry.page.isClosed()) continue;
        await this.screenshot(label, '--FAILED');
        // Test pages and the demo both keep their log in #log.
        const lines = await entry.page
          .evaluate(() => (document.getElementById('log') || { textContent: '' }).textContent.split('\n'))
          .catch(() => []);
        console.log(`  page ${label} log:\n    ${lines.slice(-25).join('\n    ')}`);
        console.log(`  page ${label} console:\n    ${entry.consoleLines.slice(-25).join('\n    ')}`);
      }
    }
    for (const context of this.contexts) await context.close().catch(() => {});
  }
}

// ---------------------------------------------------------------- scenarios

async function scenarioSmoke(s) {
  await s.open('page', `${s.staticUrl}/pages/smoke.html`);
  const text = await s.page('page').evaluate(() => window.loopbackCall());
  check(text === 'hello over loopback', `data channel delivered ${JSON.stringify(text)}`);
  const pairs = await s.assertLoopbackIce('page', 2);
  console.log(`  in-page call over ${pairs[0]}`);
  await s.screenshot('page');
}

async function scenarioLanding(s) {
  await s.open('landing', `${s.sigway.http}/`);
  const page = s.page('landing');
  const hrefs = await page.$$eval('a[href]', (links) => links.map((a) => a.getAttribute('href')));
  for (const wanted of ['/demo', '/metrics', '/stats', '/healthz']) {
    check(hrefs.includes(wanted), `landing page has no link to ${wanted} (links: ${hrefs.join(' ')})`);
  }
  const statuses = await page.evaluate(async () => {
    const out = {};
    for (const p of ['/healthz', '/metrics', '/stats', '/demo']) out[p] = (await fetch(p)).status;
    return out;
  });
  for (const [p, status] of Object.entries(statuses)) check(status === 200, `GET ${p} answered ${status}`);
  await s.screenshot('landing');
}

// --- Netflux

const netfluxSnapshot = (s, label) => s.page(label).evaluate(() => window.peer.snapshot());

async function netfluxJoin(s, key, label, lib = 'netflux') {
  await s.open(label, `${s.staticUrl}/pages/netflux.html?lib=${lib}`);
  await s.page(label).evaluate(([url, k, l]) => window.peer.join(url, k, l), [s.sigway.ws, key, label]);
  const snap = await waitUntil(`${label} to join ${key}`, 30000, () => netfluxSnapshot(s, label), (v) => v.state === 'JOINED');
  recordTiming(s.name, label, 'netflux join', snap.joinMs);
  console.log(`  ${label}: joined ${key} as ${snap.myId} in ${Math.round(snap.joinMs)} ms (members ${snap.members.join(',')})`);
  return snap.myId;
}

const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

async function netfluxWaitMembers(s, labels, ids) {
  const expected = labels.map((l) => ids[l]);
  for (const label of labels) {
    await waitUntil(`${label} to see members ${expected.join(',')}`, 30000, () => netfluxSnapshot(s, label), (v) => v.state === 'JOINED' && sameSet(v.members, expected));
  }
}

// Every sender in `from` broadcasts a greeting; every page in `to` must get
// one from each sender but itself, naming its own key (no cross-talk).
async function netfluxExchange(s, key, ids, from, to, round) {
  for (const label of from) {
    await s.page(label).evaluate((text) => window.peer.sendToAll(text), `${round} from ${label} key=${key}`);
  }
  for (const label of to) {
    const senders = from.filter((l) => l !== label);
    const snap = await waitUntil(
      `${label} to receive "${round}" from ${senders.join(',')}`,
      20000,
      () => netfluxSnapshot(s, label),
      (v) => senders.every((l) => v.received.some((m) => m.from === ids[l] && m.data === `${round} from ${l} key=${key}`)),
    );
    for (const m of snap.received) check(m.data.endsWith(`key=${key}`), `${label} in ${key} received a message of another group: ${m.data}`);
  }
}

async function netfluxGroup(s, key, tag, lib = 'netflux') {
  const ids = {};
  const [a, b, c, d] = ['A', 'B', 'C', 'D'].map((x) => `${tag}${x}`);
  for (const label of [a, b, c]) ids[label] = await netfluxJoin(s, key, label, lib);
  await netfluxWaitMembers(s, [a, b, c], ids);
  await netfluxExchange(s, key, ids, [a, b, c], [a, b, c], 'hello');
  for (const label of [a, b, c]) {
    const pairs = await s.assertLoopbackIce(label, 2);
    console.log(`  ${label}: data channels over ${pairs.join(' ; ')}`);
    await s.screenshot(label, '-1-three-members');
  }

  // C leaves: A and B see it go and stay together.
  await s.page(c).evaluate(() => window.peer.leave());
  for (const label of [a, b]) {
    await waitUntil(`${label} to see ${c} (${ids[c]}) leave`, 20000, () => netfluxSnapshot(s, label), (v) => v.left.includes(ids[c]) && sameSet(v.members, [ids[a], ids[b]]));
  }
  await s.screenshot(c, '-2-left');
  await s.close(c);

  // D joins the remaining two and reaches each of them.
  ids[d] = await netfluxJoin(s, key, d, lib);
  await netfluxWaitMembers(s, [a, b, d], ids);
  await netfluxExchange(s, key, ids, [a, b, d], [a, b, d], 'welcome');
  const pairs = await s.assertLoopbackIce(d, 2);
  console.log(`  ${d}: data channels over ${pairs.join(' ; ')}`);
  // Netflux keeps its signaling socket open while in the group.
  for (const label of [a, b, d]) {
    const sockets = await s.page(label).evaluate(() => window.e2e.webSockets);
    check(sockets.length >= 1 && sockets.every((w) => w.url.startsWith(`${s.sigway.ws}/${key}`)), `${label} opened ${JSON.stringify(sockets)}`);
    check(sockets.some((w) => w.opened && !w.closed), `${label}: no open signaling WebSocket: ${JSON.stringify(sockets)}`);
  }
  for (const label of [a, b, d]) await s.screenshot(label, '-3-after-rejoin');
  return Object.values(ids);
}

async function scenarioNetflux(s) {
  const keys = [`e2e-nf-${shortId()}`, `e2e-nf-${shortId()}`];
  const [one, two] = await Promise.all([netfluxGroup(s, keys[0], 'k1'), netfluxGroup(s, keys[1], 'k2')]);
  check(!one.some((id) => two.includes(id)), `the two groups share member ids: ${one} / ${two}`);
}

// Netflux and sigway both send a heartbeat every 5 s and each closes the
// other after 3 missed ones (the server with 4742): a group that stays
// quiet for 17 s must keep its signaling sockets and its members.
async function scenarioNetfluxIdle(s) {
  const key = `e2e-nf-idle-${shortId()}`;
  const ids = {};
  for (const label of ['idleA', 'idleB']) ids[label] = await netfluxJoin(s, key, label);
  await netfluxWaitMembers(s, ['idleA', 'idleB'], ids);
  await sleep(17000);
  for (const label of ['idleA', 'idleB']) {
    const sockets = await s.page(label).evaluate(() => window.e2e.webSockets);
    check(sockets.length === 1 && sockets[0].opened && !sockets[0].closed, `${label}'s signaling socket after 17 s: ${JSON.stringify(sockets)}`);
    const v = await netfluxSnapshot(s, label);
    check(v.state === 'JOINED' && sameSet(v.members, Object.values(ids)) && v.left.length === 0, `${label} after 17 s: ${JSON.stringify(v)}`);
  }
  await netfluxExchange(s, key, ids, ['idleA', 'idleB'], ['idleA', 'idleB'], 'still here');
  await s.screenshot('idleA');
}

// Netflux 3.0.0 (early 2018) speaks the legacy sigver dialect
// (isFirst/stable/tryAnother). It appends the key to the URL as 4.x does,
// so a key ending in "?protocol=legacy" selects that dialect per connection.
async function scenarioNetfluxLegacy(s) {
  await netfluxGroup(s, `e2e-nf-legacy-${shortId()}?protocol=legacy`, 'old', 'netflux-legacy');
}

// --- videre

const videreSnapshot = (s, label) => s.page(label).evaluate(() => window.videre.snapshot());

async function videreStart(s, label, room, transports, sameOrigin) {
  await s.open(label, `${sameOrigin ? s.sigway.http : s.staticUrl}/pages/videre.html`);
  await s.page(label).evaluate(([url, r, u, t]) => window.videre.start(url, r, u, t), [`${s.sigway.http}/echo`, room, label, transports]);
}

function callIsUp(v) {
  return (
    v.pcState === 'connected' &&
    v.remoteTrack && v.remoteTrack.readyState === 'live' &&
    v.remoteVideo.width > 0 && v.remoteVideo.currentTime > 0
  );
}

// `transport`: the only SockJS transport allowed (null: SockJS chooses);
// `expected`: the one it must end up using; `sameOrigin`: the page comes
// from sigway's origin (else from the page server, as a cross-origin client).
async function scenarioVidere(s, transport, expected, sameOrigin = false) {
  const room = `e2e-videre-${expected}-${shortId()}`;
  const transports = transport ? [transport] : null;
  const [alice, bob] = ['alice', 'bob'].map((x) => `${x}-${expected}`);

  await videreStart(s, alice, room, transports, sameOrigin);
  await waitUntil(`${alice} to be confirmed as initiator`, 20000, () => videreSnapshot(s, alice), (v) => v.observed.connectEchoes.includes('true'));
  await videreStart(s, bob, room, transports, sameOrigin);
  await waitUntil(`${bob} to be confirmed as second user`, 20000, () => videreSnapshot(s, bob), (v) => v.observed.connectEchoes.includes('false'));

  const snaps = {};
  for (const label of [alice, bob]) {
    snaps[label] = await waitUntil(`${label}'s call to connect with remote video`, 45000, () => videreSnapshot(s, label), callIsUp);
    recordTiming(s.name, label, 'videre connected', snaps[label].connectMs);
  }
  for (const label of [alice, bob]) {
    const v = snaps[label];
    check(v.observed.errors.length === 0, `${label}: client errors ${JSON.stringify(v.observed.errors)}`);
    check(v.transport === expected, `${label}: SockJS used ${v.transport}, expected ${expected}`);
    const pairs = await s.assertLoopbackIce(label, 1);
    console.log(`  ${label}: ${v.transport}, connected in ${Math.round(v.connectMs)} ms, remote video ${v.remoteVideo.width}x${v.remoteVideo.height}, over ${pairs[0]}`);
  }
  check(snaps[alice].isInitiator === true && snaps[bob].isInitiator === false, 'initiator flags wrong');
  const sentA = snaps[alice].observed.broadcastTypesSent;
  const sentB = snaps[bob].observed.broadcastTypesSent;
  check(sentA.includes('Ice Offer') && sentA.includes('Ice Candidate') && !sentA.includes('Ice Answer'), `${alice} sent ${sentA}`);
  check(sentB.includes('Ice Answer') && sentB.includes('Ice Candidate') && !sentB.includes('Ice Offer'), `${bob} sent ${sentB}`);
  check(snaps[bob].observed.otherConnects.length === 0, `${bob} saw connects of others: ${JSON.stringify(snaps[bob].observed.otherConnects)}`);
  check(snaps[alice].observed.otherConnects.some((c) => c.userId === bob && c.payload === 'false'), `${alice} did not see ${bob}'s connect with "false"`);
  // Pings (every 2 s) are answered with the room's users in join order.
  await waitUntil(`${alice} to get a ping reply listing both users`, 10000, () => videreSnapshot(s, alice), (v) => v.observed.pingReplies.some((l) => JSON.stringify(l) === JSON.stringify([alice, bob])));
  for (const label of [alice, bob]) await s.screenshot(label, '-1-call');

  // Bob goes away; Alice is told with a disconnect packet naming him.
  const closedAt = Date.now();
  await s.close(bob);
  const gone = await waitUntil(`${alice} to receive ${bob}'s disconnect`, 40000, () => videreSnapshot(s, alice), (v) => v.observed.disconnects.some((d) => d.userId === bob));
  const notice = gone.observed.disconnects.find((d) => d.userId === bob);
  check(notice.roomId === room && notice.payload === '', `disconnect packet ${JSON.stringify(notice)}: expected RoomId ${room} and Payload ""`);
  const noticeMs = Date.now() - closedAt;
  recordTiming(s.name, alice, 'disconnect seen after close', noticeMs);
  // sockjs-node notices a closed request at once; at the latest a session
  // left without a receiver ends after the 5 s disconnect delay. (Over TLS
  // this needs HTTP/1.1: an HTTP/2 stream reset went unnoticed until the
  // next 25 s heartbeat write, so sigway offers http/1.1 only.)
  check(noticeMs < 10000, `${alice} learnt of ${bob}'s closed tab after ${noticeMs} ms (expected < 10 s)`);
  await s.screenshot(alice, '-2-peer-gone');
}

// --- the /demo page served by sigway

const demoSnapshot = (s, label) => s.page(label).evaluate(() => window.demo.snapshot());

async function scenarioDemo(s) {
  const room = `e2e-demo-${shortId()}`;
  const labels = ['first', 'second'];
  for (const label of labels) {
    await s.open(label, `${s.sigway.http}/demo#${room}`);
    await waitUntil(`${label} to join ${room}`, 20000, () => demoSnapshot(s, label), (v) => v.joined);
  }
  for (const label of labels) {
    const v = await waitUntil(`${label}'s demo call to connect with remote video`, 45000, () => demoSnapshot(s, label), callIsUp);
    recordTiming(s.name, label, 'demo connected', v.connectMs);
    const pairs = await s.assertLoopbackIce(label, 1);
    console.log(`  ${label}: demo call connected in ${Math.round(v.connectMs)} ms, remote video ${v.remoteVideo.width}x${v.remoteVideo.height}, over ${pairs[0]}`);
    await s.screenshot(label, '-1-call');
  }
  await s.close('second');
  await waitUntil('first to see second leave', 15000, () => demoSnapshot(s, 'first'), (v) => v.peerLeft === 1 && v.joined);
  await s.screenshot('first', '-2-peer-gone');

  // The page stays in the room: a newcomer gets a call with it, and the
  // Leave button (an explicit videre `disconnect`) ends that call.
  await s.open('third', `${s.sigway.http}/demo#${room}`);
  for (const label of ['first', 'third']) {
    await waitUntil(`${label}'s call (first with third) to connect`, 45000, () => demoSnapshot(s, label), callIsUp);
  }
  await s.screenshot('third', '-3-call');
  await s.page('third').click('#leave');
  await waitUntil('first to see third leave', 15000, () => demoSnapshot(s, 'first'), (v) => v.peerLeft === 2 && v.pcState === 'none');
  const third = await demoSnapshot(s, 'third');
  check(!third.joined && third.pcState === 'none', `third after Leave: ${JSON.stringify(third)}`);
  await s.screenshot('first', '-4-alone-again');
}

// --- Dashboard (/dashboard): served by sigway, it must load nothing from
// any other origin; its numbers must move under load (sigver peers relaying
// from another browser context); screenshots on a desktop and a phone
// viewport (dashboard-desktop.png, dashboard-phone.png).

// sigver frames, hand-encoded (proto/sigver.proto): connect {id}, content {data}.
function sigverLoadScript() {
  window.sigverLoad = (url, seconds) => new Promise((resolve, reject) => {
    const connect = (id) => new Uint8Array([0x1a, 0x02, 0x08, id]);
    const content = (text) => {
      const data = new TextEncoder().encode(text);
      const inner = [0x22, data.length, ...data];
      return new Uint8Array([0x12, inner.length, ...inner]);
    };
    const open = () => new Promise((ok, fail) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      // Answer heartbeats (`heartbeat: true` is 08 01) so the peers stay.
      ws.onmessage = (e) => { if (new Uint8Array(e.data)[0] === 0x08) ws.send(new Uint8Array([0x08, 0x01])); };
      ws.onopen = () => ok(ws);
      ws.onerror = () => fail(new Error(`WebSocket to ${url} failed`));
    });
    (async () => {
      const founder = await open();
      founder.send(connect(1));
      await new Promise((r) => setTimeout(r, 200));
      const joiner = await open();
      joiner.send(connect(2));
      let sent = 0;
      const until = Date.now() + seconds * 1000;
      while (Date.now() < until) {
        // Bound to the founder: each content goes up to it.
        for (let i = 0; i < 20; i++) joiner.send(content(`candidate-${sent++}`));
        await new Promise((r) => setTimeout(r, 50));
      }
      joiner.close(1000);
      founder.close(1000);
      resolve(sent);
    })().catch(reject);
  });
}

async function scenarioDashboard(s) {
  for (const name of ['dashboard-desktop.png', 'dashboard-phone.png']) fs.rmSync(path.join(screenshotDir, name), { force: true });
  const origin = s.sigway.http;
  const context = await s.browser.newContext({ viewport: { width: 1280, height: 900 } });
  s.contexts.push(context);
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const requests = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('pageerror', (err) => s.problems.push(`dashboard: uncaught page error: ${err.message}`));
  s.pages.set('dashboard', { page, context, consoleLines: [] });
  await page.goto(`${origin}/`, { waitUntil: 'load' });
  await page.click('a[href="/dashboard"]');
  await page.waitForURL(`${origin}/dashboard`);
  await waitUntil('the dashboard feed to go live', 10000, () => page.textContent('#status'), (t) => t === 'live');
  const before = await page.evaluate(() => ({
    connections: document.getElementById('connections').textContent,
    messages: document.getElementById('messages-rate').textContent,
  }));

  // Load from another browser context (another person), on sigway's origin.
  const loader = await s.open('load', `${origin}/healthz`);
  await loader.evaluate(sigverLoadScript);
  const key = `e2e-dash-${shortId()}`;
  const load = loader.evaluate(({ url, seconds }) => window.sigverLoad(url, seconds), { url: `${s.sigway.ws}/${key}`, seconds: 6 });
  const during = await waitUntil(
    'the dashboard to show the load (2 connections, messages per second above 0)',
    10000,
    () => page.evaluate(() => ({
      connections: document.getElementById('connections').textContent,
      messages: document.getElementById('messages-rate').textContent,
      rooms: document.getElementById('rooms').textContent,
      sessions: document.getElementById('sessions').textContent,
    })),
    (v) => v.connections === '2' && Number.parseFloat(v.messages) > 0,
  );
  check(during.messages !== before.messages, `messages/s did not move: ${before.messages} -> ${during.messages}`);
  check(during.rooms === '1', `rooms shows ${during.rooms}`);
  check(/sigver\s*2/.test(during.sessions), `sessions by protocol shows ${JSON.stringify(during.sessions)}`);
  // Relay latency percentiles appear once sampled relays happened.
  await waitUntil('relay latency percentiles', 8000, () => page.textContent('#latency'), (t) => t.includes('relay (sigver)'));
  console.log(`  dashboard under load: ${JSON.stringify(during)}`);
  await page.screenshot({ path: path.join(screenshotDir, 'dashboard-desktop.png'), timeout: 10000 });
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `on a 390 px wide phone the page scrolls sideways by ${overflow} px`);
  await page.screenshot({ path: path.join(screenshotDir, 'dashboard-phone.png'), fullPage: true, timeout: 10000 });
  const sent = await withTimeout(load, 20000, 'the load to end');
  console.log(`  load: ${sent} relayed contents; dashboard page made ${requests.length} request(s)`);
  const foreign = requests.filter((url) => new URL(url).origin !== origin);
  check(foreign.length === 0, `the dashboard requested other origins: ${foreign.join(' ')}`);
  check(requests.some((url) => url.startsWith(`${origin}/dashboard/feed`)), 'the dashboard never opened its feed');
  await s.close('load');
}

// Runs last: once every page is closed, sigway holds no connection and no
// room, and real clients never caused a protocol error or a refusal.
async function scenarioNoLeftovers(s) {
  let connections = 0;
  for (const sigway of [SIGWAY, SIGWAY_TLS].filter(Boolean)) connections += await checkNoLeftovers(s, sigway);
  check(connections > 0, 'sigway saw no connection at all');
}

async function checkNoLeftovers(s, sigway) {
  const stats = await waitUntil(
    `${sigway.http} to drop every connection and room (the SockJS disconnect delay is 5 s)`,
    20000,
    async () => (await fetch(`${sigway.http}/stats`)).json(),
    (v) => v.connections_open === 0 && Object.values(v.rooms).every((n) => n === 0),
  );
  console.log(`  ${sigway.http}/stats: ${JSON.stringify(stats)}`);
  for (const counter of ['refusals', 'slow_consumers']) {
    check(stats[counter] === 0, `sigway counted ${stats[counter]} ${counter} from real clients`);
  }
  // A WebSocket that ends without a close frame (Chromium closing a tab)
  // is a dropped connection, not a protocol error.
  check(stats.protocol_errors === 0, `${sigway.http} counted ${stats.protocol_errors} protocol_errors from real clients`);
  return stats.connections_total;
}

// --- TURN credentials from /turn (issue 13 item 4): run.sh starts two
// coturns on loopback, one sharing sigway's turn.secret (E2E_TURN_URL,
// which sigway's turn.uris names) and one with another secret
// (E2E_TURN_WRONG_URL).

const TURN_URL = process.env.E2E_TURN_URL || '';
const TURN_WRONG_URL = process.env.E2E_TURN_WRONG_URL || '';

async function scenarioTurnRelay(s) {
  check(TURN_URL, 'E2E_TURN_URL is not set (run.sh starts coturn)');
  await s.open('page', `${s.staticUrl}/pages/turn.html`);
  const call = await s.page('page').evaluate(([gateway]) => window.turnCall(gateway, null, 20000), [s.sigway.http]);
  check(call.connected && call.text === 'hello through the TURN relay', `no relayed call: ${JSON.stringify(call)}`);
  check(/^\d+:e2e-page$/.test(call.username), `username ${call.username} is not <expiry>:e2e-page`);
  const settled = ({ pair }) => !pair || (pair.state === 'succeeded' && pair.local.address && pair.remote.address);
  const report = await waitUntil('the relayed pairs to settle', 10000, () => s.page('page').evaluate(() => window.e2e.iceReport()), (r) => r.length >= 2 && r.every(settled));
  for (const { iceServers, pair } of report) {
    check(iceServers.length === 1 && iceServers[0].urls.includes(TURN_URL), `peer connection used iceServers ${JSON.stringify(iceServers)}`);
    check(pair && pair.state === 'succeeded', `no succeeded selected pair: ${JSON.stringify(pair)}`);
    for (const end of [pair.local, pair.remote]) {
      check(end.candidateType === 'relay' && end.address === '127.0.0.1', `selected pair is not relay on 127.0.0.1: ${JSON.stringify(pair)}`);
    }
  }
  const pair = report[0].pair;
  console.log(`  relayed call: ${pair.local.candidateType} ${pair.local.protocol} ${pair.local.address}:${pair.local.port} <-> ${pair.remote.candidateType} ${pair.remote.address}:${pair.remote.port} via ${TURN_URL}`);
  await s.screenshot('page');
}

async function scenarioTurnWrongSecret(s) {
  check(TURN_WRONG_URL, 'E2E_TURN_WRONG_URL is not set (run.sh starts coturn)');
  await s.open('page', `${s.staticUrl}/pages/turn.html`);
  const started = Date.now();
  const call = await s.page('page').evaluate(([gateway, url]) => window.turnCall(gateway, [url], 15000), [s.sigway.http, TURN_WRONG_URL]);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  check(!call.connected, `a call connected through a TURN server with another secret: ${JSON.stringify(call)}`);
  const refused = call.candidateErrors.filter((e) => e.errorCode === 401);
  check(refused.length > 0, `coturn did not refuse the credentials (401): ${JSON.stringify(call)}`);
  console.log(`  no call after ${seconds} s (ICE: ${call.states.join(' ') || 'never left new'}; ${refused.length} allocation(s) refused 401: ${refused[0].errorText})`);
  await s.screenshot('page');
}

const SCENARIOS = [
  ['browser-smoke', 30000, scenarioSmoke],
  ['landing-page', 30000, scenarioLanding],
  ['netflux-two-keys', 120000, scenarioNetflux],
  ['netflux-idle-heartbeats', 60000, scenarioNetfluxIdle],
  ['netflux-legacy-3.0.0', 60000, scenarioNetfluxLegacy],
  // SockJS free to choose: it must pick websocket, which sigway offers.
  ['videre-sockjs-websocket', 75000, (s) => scenarioVidere(s, null, 'websocket')],
  ['videre-sockjs-xhr-streaming', 75000, (s) => scenarioVidere(s, 'xhr-streaming', 'xhr-streaming')],
  ['videre-sockjs-xhr-polling', 75000, (s) => scenarioVidere(s, 'xhr-polling', 'xhr-polling')],
  // The transports browsers fall back to when the ones above are
  // unavailable. Cross-origin: jsonp-polling, and the iframe ones, which
  // load sigway's /echo/iframe.html, which loads the SockJS client from the
  // page server (sockjs.client_url). eventsource and htmlfile are
  // same-origin transports (sockjs-client skips htmlfile cross-origin, and
  // sockjs-node sends no CORS headers on either): their page is served on
  // sigway's origin.
  ...['jsonp-polling', 'iframe-eventsource', 'iframe-htmlfile', 'iframe-xhr-polling'].map((t) => [
    `videre-sockjs-${t}`,
    75000,
    (s) => scenarioVidere(s, t, t),
  ]),
  ...['eventsource', 'htmlfile'].map((t) => [`videre-sockjs-${t}-same-origin`, 75000, (s) => scenarioVidere(s, t, t, true)]),
  ['demo-page', 75000, scenarioDemo],
  // Over TLS (sigway -k/-c): wss for Netflux, https SockJS, the demo on https.
  ['tls-netflux', 60000, (s) => netfluxGroup(s, `e2e-nf-tls-${shortId()}`, 'tls'), { tls: true }],
  ['tls-videre-sockjs-websocket', 75000, (s) => scenarioVidere(s, null, 'websocket'), { tls: true }],
  ['tls-videre-sockjs-xhr-streaming', 75000, (s) => scenarioVidere(s, 'xhr-streaming', 'xhr-streaming'), { tls: true }],
  ['tls-videre-sockjs-xhr-polling', 75000, (s) => scenarioVidere(s, 'xhr-polling', 'xhr-polling'), { tls: true }],
  ['tls-demo-page', 75000, scenarioDemo, { tls: true }],
  ['turn-relay', 45000, scenarioTurnRelay],
  ['turn-wrong-secret', 45000, scenarioTurnWrongSecret],
  ['dashboard', 60000, scenarioDashboard],
  ['no-leftovers', 45000, scenarioNoLeftovers],
];

// ---------------------------------------------------------------- main

async function waitForSigway(base) {
  const deadline = Date.now() + 30000;
  let lastError = null;
  for (;;) {
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) return;
      lastError = `status ${res.status}`;
    } catch (err) {
      lastError = err.cause ? err.cause.message : err.message; // not listening yet?
    }
    if (Date.now() > deadline) throw new Error(`sigway did not answer ${base}/healthz within 30 s (${lastError})`);
    await sleep(200);
  }
}

async function main() {
  fs.mkdirSync(screenshotDir, { recursive: true });
  // Screenshots of an earlier run would mislead: remove ours (and only ours).
  const ours = new RegExp(`^(${SCENARIOS.map(([name]) => name).join('|')})--.*\\.png$`);
  for (const file of fs.readdirSync(screenshotDir)) if (ours.test(file)) fs.rmSync(path.join(screenshotDir, file));
  for (const sigway of [SIGWAY, SIGWAY_TLS].filter(Boolean)) await waitForSigway(sigway.http);
  const staticServer = await startStaticServer();
  const staticUrl = `http://127.0.0.1:${staticServer.address().port}`;
  console.log(`e2e: sigway ${sigwayUrl}${SIGWAY_TLS ? ` and ${sigwayTlsUrl}` : ''}, pages ${staticUrl}, screenshots ${screenshotDir}`);

  // playwright-core makes a fresh, empty user-data-dir for each launch
  // (and deletes it on close); it refuses a --user-data-dir argument here.
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: 60000 });
  console.log(`e2e: ${chromiumPath} ${browser.version()} on ${os.hostname()}`);

  const selected = SCENARIOS.filter(([name]) => filters.length === 0 || filters.some((f) => name.includes(f)));
  // The whole run must end in time to report: a scenario gets at most what
  // is left of the budget, and none starts with less than 20 s left.
  const budgetEnds = runStarted + budgetSeconds * 1000;
  for (const [name, timeoutMs, run, options = {}] of selected) {
    const started = Date.now();
    console.log(`--- ${name}`);
    if (budgetEnds - started < 20000 || (options.tls && !SIGWAY_TLS)) {
      results.push({ name, ok: false, seconds: '0.0' });
      console.log(`FAIL ${name}: not run, ${options.tls && !SIGWAY_TLS ? 'SIGWAY_TLS_URL is not set' : `the ${budgetSeconds} s budget is spent`}`);
      continue;
    }
    const scenario = new Scenario(name, browser, staticUrl, options.tls ? SIGWAY_TLS : SIGWAY);
    let error = null;
    try {
      await withTimeout(run(scenario), Math.min(timeoutMs, budgetEnds - started - 15000), name);
      if (scenario.problems.length) throw new Failure(scenario.problems.join('\n  '));
    } catch (err) {
      error = err;
      if (scenario.problems.length) console.log(`  also: ${scenario.problems.join('\n  also: ')}`);
    }
    await withTimeout(scenario.finish(error !== null), 30000, `${name} cleanup`).catch((err) => console.log(`  cleanup: ${err.message}`));
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    results.push({ name, ok: error === null, seconds });
    console.log(error === null ? `ok   ${name} (${seconds} s)` : `FAIL ${name} (${seconds} s): ${error instanceof Failure ? error.message : error.stack}`);
  }

  await browser.close();
  staticServer.close();

  console.log('\njoin timings (ms):');
  for (const t of timings) console.log(`  ${t.scenario.padEnd(38)} ${t.label.padEnd(26)} ${t.what.padEnd(28)} ${t.ms ?? '-'}`);
  console.log('\nscenarios:');
  for (const r of results) console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.seconds} s)`);
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  console.log(`\ne2e: ${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`e2e: ${err.stack || err}`);
    process.exit(1);
  },
);

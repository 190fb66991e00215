// Loaded first by every e2e test page, before any client library.
//
// It records every RTCPeerConnection the page's client code creates (the
// clients under test build their own; we only watch), so the harness can ask
// which ICE candidate pair carried the call, and it keeps a visible log on
// the page so that screenshots show what happened.
(function () {
  'use strict';
  // Injected by the harness before any page script and also named by the
  // test pages (so they work when opened by hand): install once.
  if (window.e2e) return;

  // In a network namespace with only loopback, Chromium reports
  // navigator.onLine = false, and Netflux 3.x refuses to join while offline.
  // Report the truth that matters here: sigway is reachable.
  Object.defineProperty(Navigator.prototype, 'onLine', { configurable: true, get: () => true });

  const NativePeerConnection = window.RTCPeerConnection;
  const peerConnections = [];

  class RecordedPeerConnection extends NativePeerConnection {
    constructor(configuration, ...rest) {
      super(configuration, ...rest);
      peerConnections.push({ pc: this, configuration: configuration || null });
    }
  }
  window.RTCPeerConnection = RecordedPeerConnection;

  function candidateView(stats) {
    if (!stats) return null;
    return {
      address: stats.address || stats.ip || null,
      port: stats.port,
      protocol: stats.protocol,
      candidateType: stats.candidateType,
    };
  }

  // The candidate pair ICE selected for one connection, read from getStats:
  // the transport's selectedCandidatePairId when present, else the
  // nominated pair that succeeded.
  async function selectedPair(pc) {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    for (const s of byId.values()) {
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        pair = byId.get(s.selectedCandidatePairId) || null;
      }
    }
    if (!pair) {
      for (const s of byId.values()) {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      }
    }
    if (!pair) return null;
    return {
      state: pair.state,
      nominated: !!pair.nominated,
      local: candidateView(byId.get(pair.localCandidateId)),
      remote: candidateView(byId.get(pair.remoteCandidateId)),
    };
  }

  // Every WebSocket the page opens, with how it was closed (by whom, code).
  const NativeWebSocket = window.WebSocket;
  const webSockets = [];
  class RecordedWebSocket extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      const record = { url: String(args[0]), opened: false, closeCalls: [], closed: null };
      webSockets.push(record);
      this.addEventListener('open', () => { record.opened = true; });
      this.addEventListener('close', (e) => { record.closed = { code: e.code, reason: e.reason, wasClean: e.wasClean }; });
      this.e2eRecord = record;
    }
    close(...args) {
      this.e2eRecord.closeCalls.push({ args, readyState: this.readyState, at: performance.now() });
      return super.close(...args);
    }
  }
  window.WebSocket = RecordedWebSocket;

  const logLines = [];
  function log(text) {
    const line = `${(performance.now() / 1000).toFixed(2)}s ${text}`;
    logLines.push(line);
    const el = document.getElementById('log');
    if (el) el.textContent = logLines.slice(-40).join('\n');
  }

  window.e2e = {
    log,
    logLines,
    peerConnections,
    webSockets,
    // One entry per peer connection that reached "connected": its
    // configuration's iceServers and the selected candidate pair.
    async iceReport() {
      const out = [];
      for (const { pc, configuration } of peerConnections) {
        if (pc.connectionState !== 'connected') continue;
        out.push({
          iceServers: configuration && configuration.iceServers,
          pair: await selectedPair(pc),
        });
      }
      return out;
    },
  };
})();

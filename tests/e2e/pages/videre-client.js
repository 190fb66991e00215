// A videre-client stand-in: the same packets, in the same order, for the
// same reasons as the real browser class (videre-client's src/index.js),
// written against today's WebRTC API.
//
// Flow of the real client, kept here:
// - connect(room): open SockJS to signallerURL, create the peer connection,
//   getUserMedia({audio, video}); once BOTH the socket is open and the local
//   stream exists, send {"Header":{"Event":"connect",...},"Payload":"{}"}
//   and start pinging every 2 s ({"Event":"ping", "Payload":"{}"}).
// - Own `connect` echoed back: Payload "true"/"false" says whether we are
//   the initiator. Own `ping` echoed back: Payload is the JSON list of users;
//   an initiator that sees more than one user starts the call.
// - Someone else's `connect`: an initiator that has not started yet starts.
// - Starting = createOffer({offerToReceiveAudio: 1, offerToReceiveVideo: 1}),
//   setLocalDescription, broadcast {Type: "Ice Offer", IcePacket: desc}.
// - `Ice Offer` from the other: setRemoteDescription, createAnswer,
//   setLocalDescription, broadcast {Type: "Ice Answer", IcePacket: desc}.
// - `Ice Answer`: setRemoteDescription.
// - Every local candidate: broadcast {Type: "Ice Candidate", sdpMLineIndex,
//   candidate, sdpMid} (flat, not wrapped in IcePacket).
// - Broadcast payloads are JSON objects, not strings; incoming ones are
//   JSON.parse'd when they are strings.
// - Packets carrying our own UserId are ignored except connect and ping.
// - Someone's `disconnect`: the real client hangs up completely
//   (disconnect(): stop pinging, stop tracks, close the peer connection and
//   the socket).
//
// Differences, all outside the wire protocol: iceServers is [] (the real
// client lists public STUN/TURN servers), tracks go through addTrack/ontrack
// instead of the removed addStream/onaddstream, promises replace the legacy
// callbacks, and `sockjsOptions` (e.g. {transports: ['xhr-polling']}) is
// passed to SockJS so the test can pin a transport.
(function () {
  'use strict';

  class VidereClient {
    constructor(options) {
      this.signallerURL = options.signallerURL;
      this.localVideoElement = options.localVideoElement;
      this.remoteVideoElement = options.remoteVideoElement;
      this.sockjsOptions = options.sockjsOptions || {};
      this.started = false;
      this.isInitiator = false;
      this.localStream = null;
      this.peerConnection = null;
      this.pingInterval = null;
      this.signallerConnected = false;
      this.userId = options.userId || VidereClient.randomId();

      // Observations for the test harness.
      this.observed = {
        connectEchoes: [],
        otherConnects: [],
        pingReplies: [],
        broadcastTypesReceived: [],
        broadcastTypesSent: [],
        disconnects: [],
        signallerClosed: null,
        errors: [],
      };
      this.onRemoteStream = () => {};
      this.onUserDisconnected = () => {};
    }

    static randomId() {
      const possible = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
      let id = '';
      for (let i = 0; i < 10; i++) id += possible.charAt(Math.floor(Math.random() * possible.length));
      return id;
    }

    connect(roomId) {
      this.roomId = roomId;
      this.signaller = new SockJS(this.signallerURL, null, this.sockjsOptions);
      this.signaller.onopen = this.onSignallerConnected.bind(this);
      this.signaller.onmessage = this.receivePacket.bind(this);
      this.signaller.onclose = this.onSignallerDisconnected.bind(this);

      this.peerConnection = new RTCPeerConnection({ iceServers: [] });
      this.peerConnection.onicecandidate = this.onIceCandidate.bind(this);
      this.peerConnection.ontrack = this.gotRemoteTrack.bind(this);

      this.loadHostVideo();
    }

    loadHostVideo() {
      navigator.mediaDevices
        .getUserMedia({ audio: true, video: true })
        .then((stream) => {
          this.localStream = stream;
          this.localVideoElement.srcObject = stream;
          for (const track of stream.getTracks()) this.peerConnection.addTrack(track, stream);
          this.connectToSignaller();
        })
        .catch((err) => this.fail(`getUserMedia: ${err.name}: ${err.message}`));
    }

    onSignallerConnected() {
      this.signallerConnected = true;
      this.connectToSignaller();
    }

    connectToSignaller() {
      if (this.signallerConnected && this.localStream) {
        this.sendPacket('connect', JSON.stringify({}));
        this.pingInterval = setInterval(this.pingSignaller.bind(this), 2000);
      }
    }

    onSignallerDisconnected(event) {
      this.signallerConnected = false;
      this.observed.signallerClosed = { code: event.code, reason: event.reason };
      e2e.log(`signaller closed ${event.code} ${event.reason}`);
    }

    pingSignaller() {
      if (this.signallerConnected) this.sendPacket('ping', JSON.stringify({}));
    }

    sendPacket(event, payload) {
      this.signaller.send(
        JSON.stringify({
          Header: { Event: event, UserId: this.userId, RoomId: this.roomId },
          Payload: payload,
        }),
      );
    }

    receivePacket(message) {
      let packet;
      try {
        packet = JSON.parse(message.data);
      } catch (err) {
        this.fail(`unparsable packet: ${message.data}`);
        return;
      }
      if (!packet.Header) {
        this.fail(`packet without Header: ${message.data}`);
        return;
      }
      const { Event: event, UserId: userId } = packet.Header;
      if (userId !== this.userId) {
        if (event === 'connect') this.userConnected(packet);
        else if (event === 'broadcast') this.receiveBroadcast(packet);
        else if (event === 'disconnect') this.userDisconnected(packet);
      } else if (event === 'connect') {
        try {
          this.isInitiator = JSON.parse(packet.Payload);
        } catch (err) {
          this.isInitiator = packet.Payload;
        }
        this.observed.connectEchoes.push(packet.Payload);
        e2e.log(`connected to room, initiator=${this.isInitiator}`);
      } else if (event === 'ping') {
        this.receivePing(packet);
      }
    }

    userConnected(packet) {
      this.observed.otherConnects.push({ userId: packet.Header.UserId, payload: packet.Payload });
      e2e.log(`user connected: ${packet.Header.UserId}`);
      if (this.isInitiator && !this.started) {
        this.started = true;
        this.initiateConnection();
      }
    }

    receiveBroadcast(packet) {
      let payload;
      try {
        payload = JSON.parse(packet.Payload);
      } catch (err) {
        payload = packet.Payload;
      }
      this.observed.broadcastTypesReceived.push(payload.Type);
      const pc = this.peerConnection;
      if (!pc) return;
      if (payload.Type === 'Ice Offer') {
        pc.setRemoteDescription({ type: payload.IcePacket.type, sdp: payload.IcePacket.sdp })
          .then(() => pc.createAnswer())
          .then((desc) => this.onCreateAnswerSuccess(desc))
          .catch((err) => this.fail(`answering: ${err}`));
      } else if (payload.Type === 'Ice Answer') {
        pc.setRemoteDescription({ type: payload.IcePacket.type, sdp: payload.IcePacket.sdp })
          .catch((err) => this.fail(`setting answer: ${err}`));
      } else if (payload.Type === 'Ice Candidate') {
        pc.addIceCandidate({
          sdpMLineIndex: payload.sdpMLineIndex,
          sdpMid: payload.sdpMid,
          candidate: payload.candidate,
        }).catch((err) => this.fail(`addIceCandidate: ${err}`));
      }
    }

    userDisconnected(packet) {
      this.observed.disconnects.push({ userId: packet.Header.UserId, roomId: packet.Header.RoomId, payload: packet.Payload });
      e2e.log(`user disconnected: ${packet.Header.UserId}`);
      this.onUserDisconnected(packet);
      this.disconnect();
    }

    receivePing(packet) {
      const userList = JSON.parse(packet.Payload);
      this.observed.pingReplies.push(userList);
      if (userList.length > 1 && this.isInitiator && !this.started) {
        this.started = true;
        this.initiateConnection();
      }
    }

    initiateConnection() {
      e2e.log('initiating the call (offer)');
      this.peerConnection
        .createOffer({ offerToReceiveAudio: 1, offerToReceiveVideo: 1 })
        .then((desc) => this.onCreateOfferSuccess(desc))
        .catch((err) => this.fail(`offering: ${err}`));
    }

    disconnect() {
      this.signallerConnected = false;
      this.isInitiator = false;
      this.started = false;
      clearInterval(this.pingInterval);
      if (this.localStream) this.localStream.getTracks().forEach((track) => track.stop());
      if (this.peerConnection) {
        this.peerConnection.close();
        this.peerConnection = null;
      }
      this.localStream = null;
      if (this.signaller) this.signaller.close();
    }

    onCreateOfferSuccess(desc) {
      return this.peerConnection.setLocalDescription(desc).then(() => {
        this.broadcast({ Type: 'Ice Offer', IcePacket: desc });
      });
    }

    onCreateAnswerSuccess(desc) {
      return this.peerConnection.setLocalDescription(desc).then(() => {
        this.broadcast({ Type: 'Ice Answer', IcePacket: desc });
      });
    }

    broadcast(payload) {
      this.observed.broadcastTypesSent.push(payload.Type);
      this.sendPacket('broadcast', payload);
    }

    gotRemoteTrack(event) {
      const stream = event.streams[0] || new MediaStream([event.track]);
      if (this.remoteVideoElement.srcObject !== stream) {
        this.remoteVideoElement.srcObject = stream;
        this.onRemoteStream(stream);
      }
    }

    onIceCandidate(event) {
      if (event.candidate) {
        this.broadcast({
          Type: 'Ice Candidate',
          sdpMLineIndex: event.candidate.sdpMLineIndex,
          candidate: event.candidate.candidate,
          sdpMid: event.candidate.sdpMid,
        });
      }
    }

    fail(text) {
      this.observed.errors.push(text);
      e2e.log(`ERROR ${text}`);
    }
  }

  window.VidereClient = VidereClient;
})();

//! One sigver WebSocket connection, from upgrade to close.
//!
//! The session checks the key, takes a connection place from the room
//! layer, joins the key's group, and then only moves messages: frames from
//! the socket are decoded and sent to the group, frames the group pushed to
//! the session's sink are written to the socket. It keeps the heartbeat itself (no group round trip)
//! and enforces the frame size limit and the message rate (one check per
//! received frame). With `auth.key_secret` set only signed keys get past
//! the handshake. Both dialects share this code through
//! [`Dialect`]; they differ in their messages, their rules and their close
//! codes. Whatever ends the session, the group hears of its leave once.
//! For the metrics it records its join latency (from the upgrade), its
//! close code, and, for one relayed frame in
//! [`RELAY_SAMPLE_EVERY`](crate::observe::RELAY_SAMPLE_EVERY), when it was
//! read (the group records the relay latency) and how long a stamped frame
//! waited in the outbox before it was written to the socket.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::AggregatedMessage;
use futures_util::future::Either;
use sigway_sockjs::ws::{self, FINAL_WRITE, ReadFailure};
use sigway_sockjs::{Event, WsConnection};
use tracing::Instrument;

use crate::config::SigverDialect;
use crate::error::{Close, SigverError};
use crate::observe::{Ended, ListedKey, RELAY_SAMPLE_EVERY, Reason, Stats};
use crate::rooms::peers::{PeerCard, PeerControl, Registration};
use crate::rooms::{InFlight, MemberId, MessageGate, Sink, SinkReceiver, Ticket};
use crate::services::Services;
use crate::sigver::frame::OutFrame;
use crate::sigver::group::{Dialect, GroupActor, Heard, Outbound, PeerEntry, PeerEvent};
use crate::sigver::handshake::{dialect_of, echoed_subprotocol, has_query_flag, key_of};
use crate::sigver::heartbeat::{Beat, Heartbeat};
use crate::sigver::legacy::state::LegacyGroupState;
use crate::sigver::state::GroupState;

/// Everything a session task needs, taken from the request.
pub(crate) struct Opening {
    pub key: Result<Arc<str>, SigverError>,
    pub favored: bool,
    /// The client's address (behind trusted proxies, the one they name).
    pub address: Option<std::net::SocketAddr>,
    /// The request's `Origin`, for the admin API.
    pub origin: Option<Arc<str>>,
    pub services: web::Data<Services>,
}

/// Most bytes of relayed frames encoded per wake-up before the socket is
/// written (the rest waits in the outbox).
const BATCH_BYTES: usize = 64 * 1024;

/// The upgrade handler for every path outside the SockJS prefix: the
/// handshake is accepted here and the session runs on the upgraded socket.
pub(crate) async fn entry(
    req: HttpRequest,
    services: web::Data<Services>,
) -> actix_web::Result<HttpResponse> {
    let query = req.uri().query().unwrap_or("");
    let dialect = dialect_of(query, services.settings.sigver.protocol);
    let opening = Opening {
        key: key_of(req.uri().path()).map(Arc::from),
        favored: has_query_flag(query, "favored"),
        address: sigway_sockjs::edge::client_addr(&req),
        origin: sigway_sockjs::edge::origin_of(&req),
        services,
    };
    let path = req.uri().path();
    let key = match &opening.key {
        Ok(key) => key,
        Err(_) => path.strip_prefix('/').unwrap_or(path),
    };
    // Only while the session joins (and again when it ends): a span held
    // for the session's whole life cost about 1 KB per idle peer in
    // tracing's registry.
    let span = session_span(&opening.services, key, dialect, None);
    // The session's future is built here, not awaited in an `async`
    // block, which would keep the opening and the socket it was given in
    // the session's state for its whole life.
    let place = match (&opening.key, dialect) {
        (Ok(key), SigverDialect::Current) => place_of::<GroupState<MemberId>>(&opening, key),
        (Ok(key), SigverDialect::Legacy) => place_of::<LegacyGroupState<MemberId>>(&opening, key),
        (Err(_), _) => None,
    };
    let session = move |socket| match dialect {
        SigverDialect::Current => Either::Left(run::<GroupState<MemberId>>(opening, socket, span)),
        SigverDialect::Legacy => {
            Either::Right(run::<LegacyGroupState<MemberId>>(opening, socket, span))
        }
    };
    // A session runs on its group's worker thread, so the group's relays
    // stay on one thread.
    let mut response = sigway_sockjs::accept_at(&req, place, session)?;
    if let Some(protocol) = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|offered| offered.to_str().ok())
        .and_then(echoed_subprotocol)
        .and_then(|protocol| HeaderValue::from_str(protocol).ok())
    {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    Ok(response)
}

/// The worker thread a session of the group `key` of dialect `D` runs on:
/// the group's when it is open on this node, else the least loaded (a new
/// group starts on its first session's thread; a group on another node of
/// a cluster is reached from any).
fn place_of<D: Dialect>(opening: &Opening, key: &str) -> Option<sigway_sockjs::Place> {
    opening
        .services
        .rooms
        .place_of::<GroupActor<D>>(key)
        .or_else(sigway_sockjs::Place::for_new_room)
}

/// A session that joined its group: what its loop and its end need, and
/// nothing else (the loop's state is paid for the session's whole life).
struct Joined<D: Dialect> {
    socket: WsConnection,
    services: web::Data<Services>,
    /// The group's key (shared with the group), for the log lines.
    key: Arc<str>,
    group: crate::rooms::RoomRef<GroupActor<D>>,
    peer: MemberId,
    /// The connection's place, given back before the final close.
    ticket: Ticket,
    messages: MessageGate,
    outbound: sigway_sockjs::Queue<Outbound>,
    overflow: Arc<sigway_sockjs::Overflow>,
    in_flight: Arc<InFlight>,
    /// Its entry in the admin API's registry, while the session lives.
    _registration: Registration,
}

/// Runs one session to its end.
///
/// Joining is boxed and done with before the loop starts, and the loop
/// borrows what it needs from [`Joined`]: an `async fn` doing it all kept
/// every value ever bound in it (the request's key, the socket as given,
/// the join's answer) in the session's state, about 500 B an idle peer
/// paid for nothing.
pub(crate) fn run<D: Dialect>(
    opening: Opening,
    socket: WsConnection,
    span: tracing::Span,
) -> impl Future<Output = ()> + 'static {
    let joining = Box::pin(join::<D>(opening, socket).instrument(span));
    async move {
        let Some(mut joined) = joining.await else {
            return;
        };
        let ending = relay(&mut joined).await;
        let span = joined.who().span::<D>();
        Box::pin(finish(joined, ending).instrument(span)).await;
    }
}

/// The span of a sigver session's log lines: its key (hashed unless
/// `log.show_keys`), dialect and, once it joined, member id.
fn session_span(
    services: &Services,
    key: &str,
    dialect: SigverDialect,
    peer: Option<MemberId>,
) -> tracing::Span {
    let shown = services.rooms.guard().shown(key);
    let span = tracing::info_span!("sigver", key = %shown, ?dialect, peer = tracing::field::Empty);
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    span
}

/// Who a joined session is, for the lines logged when it ends.
struct Who<'a> {
    services: &'a Services,
    key: &'a str,
    peer: MemberId,
}

impl Who<'_> {
    fn span<D: Dialect>(&self) -> tracing::Span {
        session_span(self.services, self.key, D::DIALECT, Some(self.peer))
    }
}

impl<D: Dialect> Joined<D> {
    fn who(&self) -> Who<'_> {
        Who {
            services: &self.services,
            key: &self.key,
            peer: self.peer,
        }
    }
}

/// Checks the key, takes a place, joins the group: `None` once a refusal
/// was sent.
async fn join<D: Dialect>(opening: Opening, socket: WsConnection) -> Option<Joined<D>> {
    let Opening {
        key,
        favored,
        address,
        origin,
        services,
    } = opening;
    let ip = address.map(|a| a.ip());
    let opened = Instant::now();
    let settings = &services.settings;
    let stats = &services.stats;
    let rooms = &services.rooms;
    let max_frame = settings.limits.max_frame_bytes;
    let socket = socket.limit(max_frame);
    let key = match key {
        Ok(key) => key,
        Err(error) => {
            Box::pin(refuse(socket, &error, D::DIALECT, &services, None)).await;
            return None;
        }
    };
    let guard = rooms.guard();
    if let Err(rejection) = guard.check_key(&key, None) {
        let error = SigverError::KeyRefused(rejection);
        Box::pin(refuse(socket, &error, D::DIALECT, &services, Some(&key))).await;
        return None;
    }
    // The connection's place; given back before any final close, whose
    // writes may wait for a slow client.
    let ticket = match rooms.admit(ip) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            let error = refusal.into();
            Box::pin(refuse(socket, &error, D::DIALECT, &services, Some(&key))).await;
            return None;
        }
    };
    if let Err(refusal) = guard.join(D::KIND, &key) {
        drop(ticket);
        let error = refusal.into();
        Box::pin(refuse(socket, &error, D::DIALECT, &services, Some(&key))).await;
        return None;
    }
    let messages = guard.message_gate();
    let peer = rooms.member_id();
    tracing::Span::current().record("peer", tracing::field::display(peer));
    let limits = &settings.limits;
    let (sink, receiver) = Sink::new(
        limits.outbound_queue,
        limits.outbound_queue_bytes,
        Outbound::weight,
    );
    let SinkReceiver {
        outbox: outbound,
        overflow,
        in_flight,
    } = receiver;
    let control = Box::new(SigverControl(sink.clone()));
    let entry = PeerEntry {
        id: peer,
        favored,
        sink,
    };
    // The task is sized for its largest await: the steps an idle session
    // is not waiting in (joining, closing) are boxed, so that only the
    // loop's own state is paid for the session's whole life.
    let joined = Box::pin(rooms.join::<GroupActor<D>>(key.clone(), entry)).await;
    let group = match joined {
        Ok(group) => group,
        Err(refusal) => {
            drop(ticket);
            let error = refusal.into();
            Box::pin(refuse(socket, &error, D::DIALECT, &services, Some(&key))).await;
            return None;
        }
    };
    // What the admin API shows of this peer and how it closes it, until
    // the session ends.
    let flavor = match D::DIALECT {
        SigverDialect::Current => "current",
        SigverDialect::Legacy => "legacy",
    };
    let card = PeerCard::new(peer, "sigver", flavor, address, origin, control);
    let _registration = services.peers.register(card);
    stats.joined(D::KIND, opened.elapsed());
    stats.session_opened(D::KIND, "websocket");
    tracing::debug!(favored, "sigver peer opened");
    Some(Joined {
        socket,
        group,
        peer,
        ticket,
        messages,
        outbound,
        overflow,
        in_flight,
        _registration,
        services,
        key,
    })
}

/// How long a write may wait for a client that takes nothing.
fn send_stall(services: &Services) -> Duration {
    services
        .settings
        .heartbeat_interval()
        .max(Duration::from_secs(1))
}

/// Moves frames both ways until the session ends.
async fn relay<D: Dialect>(joined: &mut Joined<D>) -> ws::Ending<Close> {
    let Joined {
        socket,
        services,
        key,
        group,
        peer,
        messages,
        outbound,
        overflow,
        in_flight,
        ..
    } = joined;
    let (socket, peer) = (socket, *peer);
    let who = Who {
        services,
        key,
        peer,
    };
    let settings = &services.settings;
    let stats = &services.stats;
    let max_frame = settings.limits.max_frame_bytes;
    let queue = settings.limits.outbound_queue;
    // Frames to relay before the next one is timed (the first one is).
    let mut until_sampled: u32 = 0;

    let period = settings.heartbeat_interval();
    // A write that cannot go out for this long means the client stopped reading.
    let send_stall = send_stall(services);
    let mut heartbeat =
        Heartbeat::new(Instant::now(), period, settings.sigver.heartbeat_max_missed);
    // One timer: the heartbeat's next deadline, or sooner the moment a
    // stalled write is given up.
    let timer = tokio::time::sleep_until(heartbeat.deadline().into());
    tokio::pin!(timer);
    let bell = services.shutdown.bell();
    let mut rung = std::pin::pin!(bell.notified());

    // One poll per wake-up moves everything that is ready: the outbox to
    // the socket, every complete frame already read to the group, the
    // timer. The sources are polled by hand rather than through `select!`,
    // which re-created (and re-registered) a waiter for each of them for
    // every message.
    std::future::poll_fn(|cx| {
        // The waiter is polled (registered) before the flag is read: a
        // ring in between completes it.
        if rung.as_mut().poll(cx).is_ready() || bell.is_rung() {
            return Poll::Ready(ws::Ending::Server(Close::going_away()));
        }
        loop {
            // A full outbox wakes this task (see `Queue::watch`).
            if overflow.is_raised() {
                return Poll::Ready(failed::<D>(
                    SigverError::SendFailed("client does not read: outbound queue full".into()),
                    &who,
                ));
            }
            // Take from the outbox only once the socket took what was
            // written: a client that does not read fills the outbox, whose
            // overflow closes it.
            let mut outbox_empty = false;
            if socket.pending_bytes() == 0 {
                match outbound.poll_recv(cx) {
                    Poll::Ready(Some(out @ (Outbound::Frame(_) | Outbound::Stamped(..)))) => {
                        make_room(&out, outbound, socket);
                        write_frame(out, socket, stats);
                        if let Some(error) = take_queued(outbound, socket, stats) {
                            return Poll::Ready(failed::<D>(error, &who));
                        }
                        continue;
                    }
                    Poll::Ready(Some(Outbound::Close(error))) => {
                        return Poll::Ready(failed::<D>(error, &who));
                    }
                    Poll::Ready(None) => return Poll::Ready(ws::Ending::Gone),
                    Poll::Pending => outbox_empty = true,
                }
            } else {
                outbound.watch(cx);
            }
            // Read the socket only while the group keeps up and our own
            // queue has room for what the group may answer.
            let group_keeps_up = in_flight.has_room();
            if !group_keeps_up && in_flight.poll_drained(cx).is_ready() {
                continue;
            }
            let readable = group_keeps_up && (outbox_empty || outbound.len() < queue.div_ceil(2));
            if let Poll::Ready(event) = socket.poll_next(cx, readable) {
                match event {
                    // Every frame the client sends to the group passes here.
                    Event::Message(AggregatedMessage::Binary(frame)) => {
                        stats.received(frame.len());
                        if let Err(refusal) = messages.check(stats) {
                            return Poll::Ready(flooded::<D>(refusal, &who));
                        }
                        // A group on another node gets the frame itself.
                        let raw = frame.clone();
                        match D::decode(frame, peer) {
                            Ok(Heard::Heartbeat) => heartbeat.heard(),
                            Ok(Heard::Event(event)) => {
                                // Counted before the group can see it, so
                                // its `handled` never comes first.
                                in_flight.sent();
                                tell::<D>(group, event, &raw, &mut until_sampled);
                            }
                            Ok(Heard::HeartbeatWith(event)) => {
                                heartbeat.heard();
                                in_flight.sent();
                                tell::<D>(group, event, &raw, &mut until_sampled);
                            }
                            Ok(Heard::Ignored) => {}
                            Err(error) => return Poll::Ready(failed::<D>(error, &who)),
                        }
                    }
                    Event::Message(AggregatedMessage::Text(_)) => {
                        return Poll::Ready(failed::<D>(SigverError::TextFrame, &who));
                    }
                    Event::Message(AggregatedMessage::Ping(payload)) => {
                        socket.send(actix_http::ws::Message::Pong(payload));
                    }
                    Event::Message(AggregatedMessage::Pong(_)) => {}
                    // Answered with the client's own code and reason, as
                    // both Node servers did.
                    Event::Message(AggregatedMessage::Close(reason)) => {
                        return Poll::Ready(ws::Ending::ClientClosed(reason));
                    }
                    Event::Eof => return Poll::Ready(ws::Ending::ClientClosed(None)),
                    Event::WriteFailed => return Poll::Ready(ws::Ending::Gone),
                    // The socket took what waited: the loop takes more.
                    Event::Drained => {}
                    Event::Failed(failure, detail) => {
                        return Poll::Ready(read_failed::<D>(failure, detail, max_frame, &who));
                    }
                }
                continue;
            }
            // One timer: the heartbeat's next deadline, or sooner the
            // moment a stalled write is given up.
            let due = match socket.stalled_since() {
                Some(since) => heartbeat.deadline().min(since + send_stall),
                None => heartbeat.deadline(),
            };
            if timer.deadline() != due.into() {
                timer.as_mut().reset(due.into());
            }
            if timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                if socket
                    .stalled_since()
                    .is_some_and(|since| since + send_stall <= now)
                {
                    return Poll::Ready(ws::Ending::Gone);
                }
                if heartbeat.deadline() <= now {
                    match heartbeat.on_deadline(now) {
                        Some(Beat::Expired) => {
                            return Poll::Ready(failed::<D>(SigverError::HeartbeatMissed, &who));
                        }
                        Some(Beat::Send) => socket.send_binary(D::heartbeat()),
                        None => {}
                    }
                }
                continue;
            }
            return Poll::Pending;
        }
    })
    .await
}

/// The end of a joined session: the group hears of the leave, the place is
/// given back, the socket closed as `ending` says.
async fn finish<D: Dialect>(joined: Joined<D>, ending: ws::Ending<Close>) {
    let Joined {
        socket,
        services,
        group,
        peer,
        ticket,
        ..
    } = joined;
    let stats = &services.stats;
    group.leave(peer);
    drop(ticket);
    stats.session_closed(D::KIND, "websocket");
    stats.closed(D::KIND, ended_as(&ending));
    let close = match ending {
        ws::Ending::Server(close) => Some(crate::error::ws_close(&close)),
        ws::Ending::ClientClosed(reason) => reason,
        ws::Ending::Gone => {
            tracing::debug!("sigver peer dropped");
            return;
        }
    };
    // The close may wait behind frames a slow client has yet to take, as
    // long as any write may stall.
    socket
        .close(close, FINAL_WRITE.max(send_stall(&services)))
        .await;
}

/// How the admin API closes a sigver peer: a close queued in its outbox,
/// behind the frames already there (a full outbox closes it anyway).
struct SigverControl(Sink<Outbound>);

impl PeerControl for SigverControl {
    fn close(&self, code: u16, reason: &str) {
        let error = SigverError::Operator {
            code,
            reason: reason.to_owned().into(),
        };
        let _ = self.0.push(Outbound::Close(error));
    }

    fn queued(&self) -> usize {
        self.0.queued()
    }
}

/// Makes room in the socket's buffer, once, for `first` and the frames
/// waiting behind it (counted as its size, up to [`BATCH_BYTES`]), which
/// [`take_queued`] writes in this same wake-up.
fn make_room(
    first: &Outbound,
    outbound: &sigway_sockjs::Queue<Outbound>,
    socket: &mut WsConnection,
) {
    let each = first.weight() + sigway_sockjs::MAX_FRAME_HEAD;
    let frames = 1 + outbound.len();
    socket.reserve(each.saturating_mul(frames).min(BATCH_BYTES.max(each)));
}

/// Encodes what else the outbox holds now, up to [`BATCH_BYTES`], so that
/// one wake-up writes many frames; a close found there is returned.
fn take_queued(
    outbound: &mut sigway_sockjs::Queue<Outbound>,
    socket: &mut WsConnection,
    stats: &Stats,
) -> Option<SigverError> {
    while socket.pending_bytes() < BATCH_BYTES {
        match outbound.try_recv() {
            Ok(Outbound::Close(error)) => return Some(error),
            Ok(out) => write_frame(out, socket, stats),
            Err(_) => break,
        }
    }
    None
}

/// Writes a frame taken from the outbox; a stamped one records how long it
/// waited there (until handed to the socket's write buffer).
fn write_frame(out: Outbound, socket: &mut WsConnection, stats: &Stats) {
    match out {
        Outbound::Frame(frame) => send_frame(&frame, socket),
        Outbound::Stamped(frame, pushed) => {
            stats.queue_wait.record(pushed.elapsed());
            send_frame(&frame, socket);
        }
        Outbound::Close(_) => {}
    }
}

/// Hands an event to the group; one in [`RELAY_SAMPLE_EVERY`] (counted down
/// in `until_sampled`) goes with the time its frame was read, the only
/// clock read the relay path makes on this side.
fn tell<D: Dialect>(
    group: &crate::rooms::RoomRef<GroupActor<D>>,
    event: D::Event,
    raw: &bytes::Bytes,
    until_sampled: &mut u32,
) {
    let received = if *until_sampled == 0 {
        *until_sampled = RELAY_SAMPLE_EVERY - 1;
        Some(Instant::now())
    } else {
        *until_sampled -= 1;
        None
    };
    group.event(PeerEvent { event, received }, raw);
}

/// Writes a group's frame into the socket's buffer (a split one without
/// joining its parts first).
fn send_frame(frame: &OutFrame, socket: &mut WsConnection) {
    let (head, data) = frame.parts();
    socket.send_binary_parts(head, data);
}

/// The close label of how a session ended: the code either side sent, or
/// 1006 for a socket gone without a close frame (what a browser reports).
fn ended_as(ending: &ws::Ending<Close>) -> Ended {
    match ending {
        ws::Ending::Server(close) => Ended::Code(close.code),
        ws::Ending::ClientClosed(Some(reason)) => Ended::Code(u16::from(reason.code)),
        ws::Ending::ClientClosed(None) => Ended::NoCode,
        ws::Ending::Gone => Ended::Code(1006),
    }
}

/// The session ends on `error`: counted when the client broke the
/// protocol, logged, and closed with the dialect's code for it.
fn failed<D: Dialect>(error: SigverError, who: &Who<'_>) -> ws::Ending<Close> {
    let stats = &who.services.stats;
    if matches!(
        error,
        SigverError::BadMessage(_)
            | SigverError::TextFrame
            | SigverError::InvalidFrame { .. }
            | SigverError::FrameTooLarge(_)
    ) {
        Stats::count(&stats.protocol_errors);
    }
    who.span::<D>()
        .in_scope(|| tracing::info!(%error, "closing sigver peer"));
    ws::Ending::Server(error.close(D::DIALECT))
}

/// The session ends because its client sends faster than
/// `limits.messages_per_sec`: counted, logged once, closed with 1008.
#[cold]
fn flooded<D: Dialect>(refusal: crate::error::Refusal, who: &Who<'_>) -> ws::Ending<Close> {
    who.services
        .stats
        .refused(Reason::of_refusal(&refusal), None);
    who.span::<D>()
        .in_scope(|| tracing::warn!(%refusal, "sigver peer closed"));
    ws::Ending::Server(SigverError::from(refusal).close(D::DIALECT))
}

/// Why reading the socket failed: the transport went away (a closed tab
/// ends without a close frame), or the client broke the WebSocket protocol.
fn read_failed<D: Dialect>(
    failure: ReadFailure,
    detail: String,
    max_frame: usize,
    who: &Who<'_>,
) -> ws::Ending<Close> {
    match failure {
        ReadFailure::Gone => ws::Ending::Gone,
        ReadFailure::TooBig => failed::<D>(SigverError::FrameTooLarge(max_frame), who),
        ReadFailure::Invalid => failed::<D>(
            SigverError::InvalidFrame {
                utf8: false,
                detail: detail.into(),
            },
            who,
        ),
        ReadFailure::InvalidUtf8 => failed::<D>(
            SigverError::InvalidFrame {
                utf8: true,
                detail: detail.into(),
            },
            who,
        ),
    }
}

/// Closes a connection refused before it joined: a bad key, a limit, or
/// (with `auth.key_secret`) a key that is not validly signed. Refusals are
/// counted by reason and listed with the key as `/stats` shows it.
async fn refuse(
    socket: WsConnection,
    error: &SigverError,
    dialect: SigverDialect,
    services: &Services,
    key: Option<&str>,
) {
    let close = error.close(dialect);
    let protocol = match dialect {
        SigverDialect::Current => "sigver",
        SigverDialect::Legacy => "sigver-legacy",
    };
    services.stats.closed(protocol, Ended::Code(close.code));
    let reason = match error {
        SigverError::Refused(refusal) => Some(Reason::of_refusal(refusal)),
        SigverError::KeyRefused(rejection) => Some(Reason::of_key(*rejection)),
        _ => None,
    };
    if let Some(reason) = reason {
        let show = services.rooms.guard().shows_keys();
        let listed = key.map(|key| ListedKey::of(key, show));
        services.stats.refused(reason, listed);
        tracing::warn!(%error, reason = reason.label(), "sigver connection refused");
    } else {
        tracing::info!(%error, "sigver connection refused");
    }
    socket
        .close(Some(crate::error::ws_close(&close)), FINAL_WRITE)
        .await;
}

//! One sigver WebSocket connection, from upgrade to close.
//!
//! The session checks the key, takes a connection place from the room
//! layer, joins the key's group, and then only moves messages: frames from
//! the socket are decoded and sent to the group, frames the group pushed to
//! the session's sink are written to the socket. It keeps the heartbeat itself (no group round trip)
//! and enforces the frame size limit. Both dialects share this code through
//! [`Dialect`]; they differ in their messages, their rules and their close
//! codes. Whatever ends the session, the group hears [`Leave`] once.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, ProtocolError, Session};
use sigway_sockjs::ws::{self, ReadFailure};
use tokio::time::timeout;
use tracing::Instrument;

use crate::config::SigverDialect;
use crate::error::{Close, SigverError};
use crate::observe::Stats;
use crate::rooms::{MemberId, Sink, SinkReceiver};
use crate::services::Services;
use crate::sigver::group::{Dialect, GroupActor, Heard, Leave, Outbound, PeerEntry};
use crate::sigver::handshake::{dialect_of, echoed_subprotocol, has_query_flag, key_of};
use crate::sigver::heartbeat::{Beat, Heartbeat};
use crate::sigver::legacy::state::LegacyGroupState;
use crate::sigver::state::GroupState;

/// Everything a session task needs, taken from the request.
pub(crate) struct Opening {
    pub key: Result<Arc<str>, SigverError>,
    pub favored: bool,
    pub ip: Option<std::net::IpAddr>,
    pub services: web::Data<Services>,
}

/// The upgrade handler for every path outside the SockJS prefix.
pub(crate) async fn entry(
    req: HttpRequest,
    body: web::Payload,
    services: web::Data<Services>,
) -> actix_web::Result<HttpResponse> {
    let (mut response, session, stream) = actix_ws::handle(&req, body)?;
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
    let query = req.uri().query().unwrap_or("");
    let dialect = dialect_of(query, services.settings.sigver.protocol);
    let opening = Opening {
        key: key_of(req.uri().path()).map(Arc::from),
        favored: has_query_flag(query, "favored"),
        ip: req.peer_addr().map(|a| a.ip()),
        services,
    };
    let span = tracing::info_span!("sigver", key = %req.uri().path(), ?dialect, peer = tracing::field::Empty);
    match dialect {
        SigverDialect::Current => actix_web::rt::spawn(
            run::<GroupState<MemberId>>(opening, session, stream).instrument(span),
        ),
        SigverDialect::Legacy => actix_web::rt::spawn(
            run::<LegacyGroupState<MemberId>>(opening, session, stream).instrument(span),
        ),
    };
    Ok(response)
}

/// Runs one session to its end.
pub(crate) async fn run<D: Dialect>(
    opening: Opening,
    mut session: Session,
    stream: actix_ws::MessageStream,
) {
    let Opening {
        key,
        favored,
        ip,
        services,
    } = opening;
    let settings = &services.settings;
    let stats = &services.stats;
    let rooms = &services.rooms;
    let key = match key {
        Ok(key) => key,
        Err(error) => return refuse(session, &error, D::DIALECT, stats).await,
    };
    let _ticket = match rooms.admit(ip) {
        Ok(ticket) => ticket,
        Err(refusal) => return refuse(session, &refusal.into(), D::DIALECT, stats).await,
    };
    let peer = rooms.member_id();
    tracing::Span::current().record("peer", tracing::field::display(peer));
    let queue = settings.limits.outbound_queue;
    let (sink, receiver) = Sink::new(queue);
    let SinkReceiver {
        outbox: mut outbound,
        overflow,
        in_flight,
    } = receiver;
    let entry = PeerEntry {
        id: peer,
        favored,
        sink,
    };
    let group = match rooms.join::<GroupActor<D>>(key, entry).await {
        Ok(group) => group,
        Err(refusal) => return refuse(session, &refusal.into(), D::DIALECT, stats).await,
    };
    tracing::debug!(favored, "sigver peer opened");

    let max_frame = settings.limits.max_frame_bytes;
    let mut stream = stream
        .max_frame_size(max_frame)
        .aggregate_continuations()
        .max_continuation_size(max_frame);
    let period = settings.heartbeat_interval();
    // A write that cannot go out for this long means the client stopped reading.
    let send_stall = period.max(Duration::from_secs(1));
    let mut heartbeat = Heartbeat::new(
        std::time::Instant::now(),
        period,
        settings.sigver.heartbeat_max_missed,
    );
    let beat = tokio::time::sleep_until(heartbeat.deadline().into());
    tokio::pin!(beat);
    let mut shutdown = services.shutdown.clone();

    let ending: ws::Ending<Close> = loop {
        // Read the socket only while the group keeps up and our own queue
        // has room for what the group may answer.
        let group_keeps_up = in_flight.has_room();
        let readable = group_keeps_up && outbound.len() < queue.div_ceil(2);
        tokio::select! {
            biased;
            _ = shutdown.wait() => break ws::Ending::Server(Close::going_away()),
            _ = overflow.raised() => {
                break failed::<D>(SigverError::SendFailed("client does not read: outbound queue full".into()), stats);
            }
            out = outbound.recv() => match out {
                Some(Outbound::Frame(frame)) => {
                    if !matches!(timeout(send_stall, session.binary(frame)).await, Ok(Ok(()))) {
                        break ws::Ending::Gone;
                    }
                }
                Some(Outbound::Close(error)) => break failed::<D>(error, stats),
                None => break ws::Ending::Gone,
            },
            _ = in_flight.drained(), if !group_keeps_up => {}
            message = stream.recv(), if readable => match message {
                Some(Ok(AggregatedMessage::Binary(frame))) => {
                    stats.received(frame.len());
                    // A group on another node gets the frame itself.
                    let raw = frame.clone();
                    match D::decode(frame, peer) {
                        Ok(Heard::Heartbeat) => heartbeat.heard(),
                        Ok(Heard::Event(event)) => {
                            // Counted before the group can see it, so its
                            // `handled` never comes first.
                            in_flight.sent();
                            D::tell(&group, event, &raw);
                        }
                        Ok(Heard::HeartbeatWith(event)) => {
                            heartbeat.heard();
                            in_flight.sent();
                            D::tell(&group, event, &raw);
                        }
                        Ok(Heard::Ignored) => {}
                        Err(error) => break failed::<D>(error, stats),
                    }
                }
                Some(Ok(AggregatedMessage::Text(_))) => {
                    break failed::<D>(SigverError::TextFrame, stats);
                }
                Some(Ok(AggregatedMessage::Ping(payload))) => {
                    let _ = session.pong(&payload).await;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                // Answered with the client's own code and reason, as both
                // Node servers did.
                Some(Ok(AggregatedMessage::Close(reason))) => break ws::Ending::ClientClosed(reason),
                None => break ws::Ending::ClientClosed(None),
                Some(Err(error)) => break read_failed::<D>(error, max_frame, stats),
            },
            _ = &mut beat => {
                let verdict = heartbeat.on_deadline(std::time::Instant::now());
                beat.as_mut().reset(heartbeat.deadline().into());
                match verdict {
                    Some(Beat::Expired) => break failed::<D>(SigverError::HeartbeatMissed, stats),
                    Some(Beat::Send)
                        if !matches!(timeout(send_stall, session.binary(D::heartbeat())).await, Ok(Ok(()))) =>
                    {
                        break ws::Ending::Gone;
                    }
                    _ => {}
                }
            }
        }
    };

    group.leave(Leave { peer });
    let close = match ending {
        ws::Ending::Server(close) => Some(crate::error::ws_close(&close)),
        ws::Ending::ClientClosed(reason) => reason,
        ws::Ending::Gone => {
            tracing::debug!("sigver peer dropped");
            return;
        }
    };
    ws::finish(session, close).await;
}

/// The session ends on `error`: counted when the client broke the
/// protocol, logged, and closed with the dialect's code for it.
fn failed<D: Dialect>(error: SigverError, stats: &Stats) -> ws::Ending<Close> {
    if matches!(
        error,
        SigverError::BadMessage(_)
            | SigverError::TextFrame
            | SigverError::InvalidFrame { .. }
            | SigverError::FrameTooLarge(_)
    ) {
        Stats::count(&stats.protocol_errors);
    }
    tracing::info!(%error, "closing sigver peer");
    ws::Ending::Server(error.close(D::DIALECT))
}

/// Why reading the socket failed: the transport went away (a closed tab
/// ends without a close frame), or the client broke the WebSocket protocol.
fn read_failed<D: Dialect>(
    error: ProtocolError,
    max_frame: usize,
    stats: &Stats,
) -> ws::Ending<Close> {
    match ws::read_failure(&error) {
        ReadFailure::Gone => ws::Ending::Gone,
        ReadFailure::TooBig => failed::<D>(SigverError::FrameTooLarge(max_frame), stats),
        ReadFailure::Invalid => failed::<D>(
            SigverError::InvalidFrame {
                utf8: false,
                detail: error.to_string().into(),
            },
            stats,
        ),
        ReadFailure::InvalidUtf8 => failed::<D>(
            SigverError::InvalidFrame {
                utf8: true,
                detail: error.to_string().into(),
            },
            stats,
        ),
    }
}

async fn refuse(session: Session, error: &SigverError, dialect: SigverDialect, stats: &Stats) {
    if matches!(error, SigverError::Refused(_)) {
        Stats::count(&stats.refusals);
        tracing::warn!(%error, "sigver connection refused");
    } else {
        tracing::info!(%error, "sigver connection refused");
    }
    ws::finish(session, Some(crate::error::ws_close(&error.close(dialect)))).await;
}

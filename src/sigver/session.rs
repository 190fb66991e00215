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
pub struct Opening {
    pub key: Result<Arc<str>, SigverError>,
    pub favored: bool,
    pub ip: Option<std::net::IpAddr>,
    pub services: web::Data<Services>,
}

/// The upgrade handler for every path outside the SockJS prefix.
pub async fn entry(
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
pub async fn run<D: Dialect>(
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
    let group = match rooms.join::<GroupActor<D>>(key, entry) {
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

    let ending: Ending = loop {
        // Read the socket only while the group keeps up and our own queue
        // has room for what the group may answer.
        let group_keeps_up = in_flight.has_room();
        let readable = group_keeps_up && outbound.len() < queue.div_ceil(2);
        tokio::select! {
            biased;
            _ = shutdown.wait() => break Ending::Close(Close::going_away()),
            _ = overflow.raised() => {
                break Ending::Error(SigverError::SendFailed("client does not read: outbound queue full".into()));
            }
            out = outbound.recv() => match out {
                Some(Outbound::Frame(frame)) => {
                    if !matches!(timeout(send_stall, session.binary(frame)).await, Ok(Ok(()))) {
                        break Ending::Dropped;
                    }
                }
                Some(Outbound::Close(error)) => break Ending::Error(error),
                None => break Ending::Dropped,
            },
            _ = in_flight.drained(), if !group_keeps_up => {}
            message = stream.recv(), if readable => match message {
                Some(Ok(AggregatedMessage::Binary(frame))) => {
                    stats.received(frame.len());
                    match D::dispatch(frame, peer, &group, &in_flight) {
                        Ok(Heard::Heartbeat) => heartbeat.heard(),
                        Ok(Heard::ToGroup | Heard::Ignored) => {}
                        Err(error) => break Ending::Error(error),
                    }
                }
                Some(Ok(AggregatedMessage::Text(_))) => {
                    break Ending::Error(SigverError::TextFrame);
                }
                Some(Ok(AggregatedMessage::Ping(payload))) => {
                    let _ = session.pong(&payload).await;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(reason))) => break Ending::ClientClosed(reason),
                None => break Ending::ClientClosed(None),
                Some(Err(error)) => break read_failure(error, max_frame),
            },
            _ = &mut beat => {
                let verdict = heartbeat.on_deadline(std::time::Instant::now());
                beat.as_mut().reset(heartbeat.deadline().into());
                match verdict {
                    Some(Beat::Expired) => break Ending::Error(SigverError::HeartbeatMissed),
                    Some(Beat::Send)
                        if !matches!(timeout(send_stall, session.binary(D::heartbeat())).await, Ok(Ok(()))) =>
                    {
                        break Ending::Dropped;
                    }
                    _ => {}
                }
            }
        }
    };

    group.tell(Leave { peer });
    let close = match ending {
        Ending::Error(error) => {
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
            Some(crate::error::ws_close(&error.close(D::DIALECT)))
        }
        Ending::Close(close) => Some(crate::error::ws_close(&close)),
        Ending::ClientClosed(reason) => reason,
        Ending::Dropped => {
            tracing::debug!("sigver peer dropped");
            return;
        }
    };
    let _ = timeout(Duration::from_secs(1), session.close(close)).await;
}

enum Ending {
    /// Close with this protocol error's code.
    Error(SigverError),
    /// Close with a fixed code (shutdown).
    Close(Close),
    /// The client closed: answer its close frame with its own code and
    /// reason, as both Node servers did.
    ClientClosed(Option<actix_ws::CloseReason>),
    /// The socket is unusable: just let it go.
    Dropped,
}

/// Why reading the socket failed: the transport went away (a closed tab
/// ends without a close frame), or the client broke the WebSocket protocol.
fn read_failure(error: ProtocolError, max_frame: usize) -> Ending {
    match &error {
        ProtocolError::Overflow => Ending::Error(SigverError::FrameTooLarge(max_frame)),
        ProtocolError::Io(io)
            if io
                .get_ref()
                .is_some_and(|e| e.is::<actix_web::error::PayloadError>()) =>
        {
            Ending::Dropped
        }
        ProtocolError::Io(io) if io.to_string().contains("maximum continuation size") => {
            Ending::Error(SigverError::FrameTooLarge(max_frame))
        }
        // A text frame that is not UTF-8 (actix-ws reports the decoding
        // error as invalid data).
        ProtocolError::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData && io.to_string().contains("utf-8") =>
        {
            Ending::Error(SigverError::InvalidFrame {
                utf8: true,
                detail: error.to_string().into(),
            })
        }
        _ => Ending::Error(SigverError::InvalidFrame {
            utf8: false,
            detail: error.to_string().into(),
        }),
    }
}

async fn refuse(session: Session, error: &SigverError, dialect: SigverDialect, stats: &Stats) {
    if matches!(error, SigverError::Refused(_)) {
        Stats::count(&stats.refusals);
        tracing::warn!(%error, "sigver connection refused");
    } else {
        tracing::info!(%error, "sigver connection refused");
    }
    let _ = timeout(
        Duration::from_secs(1),
        session.close(Some(crate::error::ws_close(&error.close(dialect)))),
    )
    .await;
}

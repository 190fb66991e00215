//! The WebSocket transports: raw (`prefix/websocket`, one text frame per
//! message, nothing else) and framed (`prefix/<server>/<session>/websocket`,
//! SockJS frames: `o`, `a[...]`, `c[...]`; its heartbeat is a WebSocket
//! ping, as in sockjs-node 0.3.24, and a ping left unanswered for
//! [`PONG_WAIT`] ends the session).
//!
//! A WebSocket session lives exactly as long as its connection and is never
//! registered by id (two connections may share an id). One local task per
//! connection moves frames between the socket and the app task.
//!
//! About 370 lines, slightly over the usual 350: the handshake refusals
//! (sockjs-node's exact answers) sit beside the connection loop they guard;
//! the plumbing shared with the gateway's sigver sessions is in [`crate::ws`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use tokio::sync::mpsc;

use crate::app::{SessionInfo, SockjsApp};
use crate::error::{CLOSE_GO_AWAY, Close, SockjsError};
use crate::frame;
use crate::link::{Outgoing, SessionLink};
use crate::server::Server;
use crate::session::{AppHandle, drain_batch, spawn_app};
use crate::ws::{self, FINAL_WRITE, ReadFailure};

/// sockjs-node's answers to a request on a WebSocket URL that it cannot
/// upgrade: plain HTTP (faye-websocket's `isWebSocket`: a GET whose
/// `Connection` lists `upgrade` and whose `Upgrade` is `websocket`), a raw
/// WebSocket of another version than 8 or 13, or any version but 13
/// (websocket-driver's hybi).
fn refuse_handshake(req: &HttpRequest, raw: bool) -> Option<HttpResponse> {
    let value = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let is_websocket = req.method() == actix_web::http::Method::GET
        && value(header::CONNECTION)
            .split(',')
            .any(|token| token.trim() == "upgrade")
        && value(header::UPGRADE) == "websocket";
    if !is_websocket {
        let mut refusal = HttpResponse::BadRequest().body("Not a valid websocket request");
        // A stray `Upgrade` or `Connection: upgrade` must not cost the
        // connection: Node keeps it for the next request.
        refusal
            .head_mut()
            .set_connection_type(actix_http::ConnectionType::KeepAlive);
        return Some(refusal);
    }
    let version = value(header::SEC_WEBSOCKET_VERSION);
    let refusal = if raw && version != "8" && version != "13" {
        HttpResponse::BadRequest()
            .force_close()
            .body("Only supported WebSocket protocol is RFC 6455.")
    } else if version != "13" {
        HttpResponse::BadRequest()
            .force_close()
            .content_type("text/plain")
            .body(format!("Unsupported WebSocket version: {version}"))
    } else {
        return None;
    };
    Some(refusal)
}

/// `prefix/websocket`.
pub(crate) fn raw<A: SockjsApp>(
    server: Arc<Server<A>>,
    req: &HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let id: Arc<str> = format!("raw-{:016x}", rand::random::<u64>()).into();
    start(server, req, body, id, false)
}

/// `prefix/<server>/<session>/websocket`.
pub(crate) fn framed<A: SockjsApp>(
    server: Arc<Server<A>>,
    req: &HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let path = req.path();
    let id = path
        .trim_end_matches('/')
        .rsplit('/')
        .nth(1)
        .unwrap_or_default();
    start(server, req, body, id.into(), true)
}

fn start<A: SockjsApp>(
    server: Arc<Server<A>>,
    req: &HttpRequest,
    body: web::Payload,
    id: Arc<str>,
    framed: bool,
) -> HttpResponse {
    if let Some(refusal) = refuse_handshake(req, !framed) {
        return refusal;
    }
    let (response, ws, stream) = match actix_ws::handle(req, body) {
        Ok(parts) => parts,
        Err(err) => {
            tracing::debug!("sockjs websocket handshake refused: {err}");
            return err.error_response();
        }
    };
    let options = &server.options;
    let max = options.max_message_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let (link, outgoing) = SessionLink::channel(options.outbound_queue);
    let transport = if framed { "websocket" } else { "websocket-raw" };
    let info = SessionInfo {
        id,
        remote: req.peer_addr(),
        transport,
    };
    let app = spawn_app(&server, link.clone(), info);
    let connection = Connection {
        ws,
        stream,
        outgoing,
        link,
        app,
        framed,
        heartbeat: options.heartbeat,
        pong_due: None,
        max_message_bytes: max,
        shutdown: Box::pin(server.shutdown_signal()),
    };
    actix_web::rt::spawn(connection.run());
    response
}

struct Connection {
    ws: actix_ws::Session,
    stream: AggregatedMessageStream,
    outgoing: mpsc::Receiver<Outgoing>,
    link: SessionLink,
    app: AppHandle,
    framed: bool,
    heartbeat: Duration,
    /// When the oldest unanswered heartbeat ping runs out of time.
    pong_due: Option<tokio::time::Instant>,
    max_message_bytes: usize,
    shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

/// How the server closes a SockJS WebSocket: `c` frame first when
/// `with_frame` (framed only).
struct ServerClose {
    close: Close,
    with_frame: bool,
}

type Ending = ws::Ending<ServerClose>;

/// The server closes with `close`, saying why in a `c` frame first.
fn close_with_frame(close: Close) -> Ending {
    ws::Ending::Server(ServerClose {
        close,
        with_frame: true,
    })
}

/// The server closes with `close` in the WebSocket close frame only.
fn close_without_frame(close: Close) -> Ending {
    ws::Ending::Server(ServerClose {
        close,
        with_frame: false,
    })
}

/// How long a heartbeat ping may stay unanswered (sockjs-node's 10 s).
pub const PONG_WAIT: Duration = Duration::from_secs(10);

/// Pause between the `c` frame and the WebSocket close.
const CLOSE_FRAME_GAP: Duration = Duration::from_millis(20);

fn overflowed() -> Ending {
    tracing::info!("sockjs websocket client does not keep up: closing");
    close_with_frame(SockjsError::OutboundQueueFull.close())
}

/// Sleeps until `due` (forever when there is none).
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Close codes an endpoint may put in a WebSocket close frame (the
/// registered ones, 1012 "service restart" and 1013 "try again later"
/// included).
fn sendable_code(code: u16) -> u16 {
    match code {
        1000..=1003 | 1007..=1013 | 3000..=4999 => code,
        _ => 1000,
    }
}

impl Connection {
    async fn run(mut self) {
        let ending = self.pump().await;
        self.app.close();
        let reason = match ending {
            ws::Ending::Gone => return,
            // Answered with the client's code and reason, 1000 when it gave
            // none (faye-websocket's answer).
            ws::Ending::ClientClosed(reason) => Some(reason.unwrap_or(CloseReason {
                code: CloseCode::Normal,
                description: None,
            })),
            ws::Ending::Server(ServerClose { close, with_frame }) if with_frame && self.framed => {
                let text = frame::close(close.code, &close.reason);
                let _ = tokio::time::timeout(FINAL_WRITE, self.ws.text(text)).await;
                // Some clients (ws4py, used by sockjs-protocol) drop a
                // message that arrives in the same read as the close.
                tokio::time::sleep(CLOSE_FRAME_GAP).await;
                // The `c` frame said why; the WebSocket itself closes
                // normally, as sockjs-node's receiver does.
                Some(CloseReason {
                    code: CloseCode::Normal,
                    description: Some("Normal closure".into()),
                })
            }
            ws::Ending::Server(ServerClose { close, .. }) => {
                Some(ws::close_reason(sendable_code(close.code), &close.reason))
            }
        };
        ws::finish(self.ws, reason).await;
    }

    async fn pump(&mut self) -> Ending {
        if self.framed
            && let Some(ending) = self.send_text(frame::OPEN.into()).await
        {
            return ending;
        }
        let start = tokio::time::Instant::now() + self.heartbeat;
        let mut heartbeat = tokio::time::interval_at(start, self.heartbeat);
        let mut app_gone = false;
        loop {
            tokio::select! {
                biased;
                _ = &mut self.shutdown => {
                    return close_with_frame(Close::going_away());
                }
                _ = self.link.wait_overflow() => return overflowed(),
                incoming = self.stream.recv() => {
                    if let Some(ending) = self.incoming(incoming).await {
                        return ending;
                    }
                }
                item = self.outgoing.recv(), if !app_gone => match item {
                    None => app_gone = true,
                    Some(Outgoing::Message(first)) => {
                        if let Some(ending) = self.send_messages(first).await {
                            return ending;
                        }
                    }
                    Some(Outgoing::Close { code, reason }) => {
                        return close_with_frame(Close::owned(code, reason.to_string()));
                    }
                },
                _ = heartbeat.tick(), if self.framed => {
                    if self.ws.ping(b"").await.is_err() {
                        return ws::Ending::Gone;
                    }
                    self.pong_due.get_or_insert(tokio::time::Instant::now() + PONG_WAIT);
                }
                _ = sleep_until(self.pong_due), if self.pong_due.is_some() => {
                    tracing::debug!("sockjs websocket: no pong to the heartbeat, closing");
                    return close_with_frame(Close::new(CLOSE_GO_AWAY, "No response from heartbeat"));
                }
            }
        }
    }

    /// Sends one text frame, waiting while the client is slow unless the
    /// app's queue overflows meanwhile (the client does not read).
    async fn send_text(&mut self, text: bytestring::ByteString) -> Option<Ending> {
        tokio::select! {
            biased;
            sent = self.ws.text(text) => sent.is_err().then_some(ws::Ending::Gone),
            _ = self.link.wait_overflow() => Some(overflowed()),
        }
    }

    /// Sends `first` and whatever else is already queued, one frame per
    /// message as sockjs-node sends them, without a trip through the
    /// connection's `select!` per message (a busy room queues many).
    async fn send_messages(&mut self, first: bytestring::ByteString) -> Option<Ending> {
        let (batch, close) = drain_batch(first, &mut self.outgoing);
        for message in batch {
            let text = if self.framed {
                frame::messages(&[message]).into()
            } else {
                message
            };
            if let Some(ending) = self.send_text(text).await {
                return Some(ending);
            }
        }
        close.map(|(code, reason)| close_with_frame(Close::owned(code, reason.to_string())))
    }

    async fn incoming(
        &mut self,
        incoming: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> Option<Ending> {
        let text = match incoming {
            None => return Some(ws::Ending::Gone),
            Some(Ok(AggregatedMessage::Close(reason))) => {
                return Some(ws::Ending::ClientClosed(reason));
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                return self
                    .ws
                    .pong(&bytes)
                    .await
                    .is_err()
                    .then_some(ws::Ending::Gone);
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {
                self.pong_due = None;
                return None;
            }
            Some(Ok(AggregatedMessage::Text(text))) => text,
            Some(Ok(AggregatedMessage::Binary(bytes))) => {
                match bytestring::ByteString::try_from(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        tracing::debug!("sockjs websocket: binary frame is not UTF-8, closing");
                        return Some(close_without_frame(Close::new(1007, "Invalid UTF-8")));
                    }
                }
            }
            Some(Err(err)) => return Some(self.read_failed(&err)),
        };
        // Each frame is handled before the next is read, as sockjs-node's
        // synchronous handlers are, so answers keep their order.
        if !self.framed {
            self.app.deliver_all(vec![text.to_string()]).await;
            return None;
        }
        match frame::parse_websocket_frame(&text) {
            Ok(messages) => {
                self.app.deliver_all(messages).await;
                None
            }
            Err(error) => {
                tracing::debug!("sockjs websocket: {error} closing");
                Some(close_without_frame(error.close()))
            }
        }
    }

    /// A failed read: too big a message closes with 1009 after a `c` frame,
    /// a protocol error with 1002, a vanished transport silently.
    fn read_failed(&self, err: &ProtocolError) -> Ending {
        match ws::read_failure(err) {
            ReadFailure::Gone => ws::Ending::Gone,
            ReadFailure::TooBig => {
                let error = SockjsError::MessageTooBig(self.max_message_bytes);
                tracing::info!("sockjs websocket: {error}, closing");
                close_with_frame(error.close())
            }
            ReadFailure::Invalid | ReadFailure::InvalidUtf8 => {
                tracing::debug!("sockjs websocket protocol error: {err}");
                close_without_frame(Close::new(1002, "Protocol error"))
            }
        }
    }
}

//! The WebSocket transports: raw (`prefix/websocket`, one text frame per
//! message, nothing else) and framed (`prefix/<server>/<session>/websocket`,
//! SockJS frames: `o`, `a[...]`, `c[...]`; its heartbeat is a WebSocket
//! ping, as in sockjs-node 0.3.24, and a ping left unanswered for
//! [`PONG_WAIT`] ends the session).
//!
//! A WebSocket session lives exactly as long as its connection and is never
//! registered by id (two connections may share an id). It leaves the HTTP
//! layer through the upgrade hook ([`crate::upgrade`]) and runs as one task
//! per connection over a [`WsConnection`]: the app's session is admitted,
//! opened and fed on that task, with no app task or inbound queue between.
//!
//! About 370 lines, slightly over the usual 350: the handshake refusals
//! (sockjs-node's exact answers) sit beside the connection loop they guard;
//! the plumbing shared with the gateway's sigver sessions is in [`crate::ws`].

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_http::ws::Message;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::future::LocalBoxFuture;
use tokio::time::Instant;

use crate::app::{SessionInfo, SockjsApp, SockjsSession};
use crate::bell::ShutdownBell;
use crate::error::{CLOSE_GO_AWAY, Close, SockjsError};
use crate::frame;
use crate::link::{Outgoing, SessionLink};
use crate::outbox::Queue;
use crate::server::Server;
use crate::session::{drain_batch, handle, open_inline};
use crate::upgrade;
use crate::ws::{self, FINAL_WRITE, ReadFailure};
use crate::ws_connection::{Event, WsConnection};

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
pub(crate) fn raw<A: SockjsApp>(server: Arc<Server<A>>, req: &HttpRequest) -> HttpResponse {
    let id: Arc<str> = format!("raw-{:016x}", rand::random::<u64>()).into();
    start(server, req, id, false)
}

/// `prefix/<server>/<session>/websocket`.
pub(crate) fn framed<A: SockjsApp>(server: Arc<Server<A>>, req: &HttpRequest) -> HttpResponse {
    let path = req.path();
    let id = path
        .trim_end_matches('/')
        .rsplit('/')
        .nth(1)
        .unwrap_or_default();
    start(server, req, id.into(), true)
}

fn start<A: SockjsApp>(
    server: Arc<Server<A>>,
    req: &HttpRequest,
    id: Arc<str>,
    framed: bool,
) -> HttpResponse {
    if let Some(refusal) = refuse_handshake(req, !framed) {
        return refusal;
    }
    let transport = if framed { "websocket" } else { "websocket-raw" };
    let info = SessionInfo {
        id,
        remote: server.options.edge.client_addr(req),
        transport,
        origin: crate::edge::origin_of(req),
    };
    let accepted = upgrade::accept(req, move |socket| run(server, socket, info, framed));
    match accepted {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!("sockjs websocket handshake refused: {err}");
            err.error_response()
        }
    }
}

/// Runs one WebSocket session: open frame, admission, then the loop.
///
/// Everything the loop does not need is consumed here, before the session's
/// future exists: an `async fn` keeps its arguments (the socket, the
/// session's info) in its state for its whole life even once moved out,
/// and an idle session pays for every byte of that state.
fn run<A: SockjsApp>(
    server: Arc<Server<A>>,
    socket: WsConnection,
    info: SessionInfo,
    framed: bool,
) -> impl Future<Output = ()> + 'static {
    let options = &server.options;
    let max = options.max_message_bytes;
    let (link, outgoing) =
        SessionLink::bounded(options.outbound_queue, options.outbound_queue_bytes);
    let mut connection = Connection {
        ws: socket.limit(max),
        outgoing,
        link: link.clone(),
        framed,
        heartbeat: options.heartbeat,
        max_message_bytes: max,
        bell: server.shutdown_bell(),
        pong_due: None,
    };
    // Lazy: admission starts once the open frame is out.
    let opening: LocalBoxFuture<'static, Option<A::Session>> =
        Box::pin(async move { open_inline(&server, link, info).await });
    // An async block, not an `async fn`: the latter would copy its
    // arguments into locals and keep both.
    async move {
        if connection.framed {
            // The client has its open frame while the app decides.
            connection.ws.send_text(frame::OPEN.into());
            if !matches!(
                tokio::time::timeout(FINAL_WRITE, connection.ws.flush()).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
        // The task is sized for its largest await: the steps an idle
        // session is not waiting in are boxed, so that only the loop's own
        // state is paid for the session's whole life.
        let mut app = opening.await;
        let ending = connection.pump(app.as_mut()).await;
        if let Some(app) = app.as_mut() {
            Box::pin(app.on_close()).await;
        }
        drop(app);
        Box::pin(connection.finish(ending)).await;
    }
}

struct Connection {
    ws: WsConnection,
    outgoing: Queue<Outgoing>,
    link: SessionLink,
    framed: bool,
    heartbeat: Duration,
    max_message_bytes: usize,
    bell: ShutdownBell,
    /// When the oldest unanswered heartbeat ping runs out of time.
    pong_due: Option<Instant>,
}

/// How the server closes a SockJS WebSocket: `c` frame first when
/// `with_frame` (framed only).
struct ServerClose {
    close: Close,
    with_frame: bool,
}

type Ending = ws::Ending<ServerClose>;

/// What woke the session's loop: the end, or an event the app handles.
enum Step {
    End(Ending),
    Incoming(Event),
}

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
    /// Says goodbye as `ending` says: the client's own close answered, or
    /// the server's close (after a `c` frame on the framed transport).
    async fn finish(mut self, ending: Ending) {
        let reason = match ending {
            ws::Ending::Gone => return,
            // Answered with the client's code and reason, 1000 when it gave
            // none (faye-websocket's answer).
            ws::Ending::ClientClosed(reason) => Some(reason.unwrap_or(CloseReason {
                code: CloseCode::Normal,
                description: None,
            })),
            ws::Ending::Server(ServerClose { close, with_frame }) if with_frame && self.framed => {
                self.ws
                    .send_text(frame::close(close.code, &close.reason).into());
                let _ = tokio::time::timeout(FINAL_WRITE, self.ws.flush()).await;
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
        self.ws.close(reason, FINAL_WRITE).await;
    }

    /// Moves messages both ways until the session ends. One timer serves
    /// the heartbeat and the wait for its pong.
    ///
    /// The sources are polled by hand rather than through `select!`, whose
    /// branch futures (a shutdown wait, an overflow wait, a read, a
    /// receive) were all part of every idle session's state, and were
    /// re-created for every message.
    async fn pump<S: SockjsSession>(&mut self, mut app: Option<&mut S>) -> Ending {
        let mut next_heartbeat = Instant::now() + self.heartbeat;
        let timer = tokio::time::sleep_until(next_heartbeat);
        tokio::pin!(timer);
        let bell = self.bell.clone();
        let mut rung = std::pin::pin!(bell.notified());
        let mut app_gone = false;
        loop {
            let step = std::future::poll_fn(|cx| {
                // The waiter is polled (registered) before the flag is read:
                // a ring in between completes it.
                if rung.as_mut().poll(cx).is_ready() || bell.is_rung() {
                    return Poll::Ready(Step::End(close_with_frame(Close::going_away())));
                }
                loop {
                    // A full link wakes this task (see `Queue::watch`).
                    if self.link.overflowed() {
                        return Poll::Ready(Step::End(overflowed()));
                    }
                    match self.ws.poll_next(cx, true) {
                        // The socket took what waited: the loop takes more.
                        Poll::Ready(Event::Drained) => continue,
                        Poll::Ready(event) => return Poll::Ready(Step::Incoming(event)),
                        Poll::Pending => {}
                    }
                    // Take more from the app only once the socket took what
                    // was written: a client that does not read fills the
                    // link, whose overflow closes the session.
                    if !app_gone && self.ws.pending_bytes() == 0 {
                        match self.outgoing.poll_recv(cx) {
                            Poll::Ready(None) => app_gone = true,
                            Poll::Ready(Some(Outgoing::Message(first))) => {
                                if let Some(ending) = self.send_messages(first) {
                                    return Poll::Ready(Step::End(ending));
                                }
                            }
                            Poll::Ready(Some(Outgoing::Close { code, reason })) => {
                                let close = Close::owned(code, reason.to_string());
                                return Poll::Ready(Step::End(close_with_frame(close)));
                            }
                            Poll::Pending => {}
                        }
                        // What was taken is written (or the app is gone):
                        // the socket is polled again before anything else.
                        if app_gone || self.ws.pending_bytes() > 0 {
                            continue;
                        }
                    } else if !app_gone {
                        self.outgoing.watch(cx);
                    }
                    if !self.framed {
                        return Poll::Pending;
                    }
                    let due = match self.pong_due {
                        Some(pong) => pong.min(next_heartbeat),
                        None => next_heartbeat,
                    };
                    if timer.deadline() != due {
                        timer.as_mut().reset(due);
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = Instant::now();
                    if self.pong_due.is_some_and(|pong| pong <= now) {
                        tracing::debug!("sockjs websocket: no pong to the heartbeat, closing");
                        let close = Close::new(CLOSE_GO_AWAY, "No response from heartbeat");
                        return Poll::Ready(Step::End(close_with_frame(close)));
                    }
                    if next_heartbeat <= now {
                        self.ws.send(Message::Ping(bytes::Bytes::new()));
                        self.pong_due.get_or_insert(now + PONG_WAIT);
                        next_heartbeat += self.heartbeat;
                        if next_heartbeat <= now {
                            next_heartbeat = now + self.heartbeat;
                        }
                    }
                }
            })
            .await;
            match step {
                Step::End(ending) => return ending,
                Step::Incoming(event) => {
                    // Boxed: the app's handling is paid only while it runs.
                    if let Some(ending) = Box::pin(self.incoming(event, app.as_deref_mut())).await {
                        return ending;
                    }
                }
            }
        }
    }

    /// Queues `first` and whatever else is already queued, one frame per
    /// message as sockjs-node sends them.
    fn send_messages(&mut self, first: bytestring::ByteString) -> Option<Ending> {
        let (batch, close) = drain_batch(first, &mut self.outgoing);
        for message in batch {
            let text = if self.framed {
                frame::messages(&[message]).into()
            } else {
                message
            };
            self.ws.send_text(text);
        }
        close.map(|(code, reason)| close_with_frame(Close::owned(code, reason.to_string())))
    }

    async fn incoming<S: SockjsSession>(
        &mut self,
        event: Event,
        app: Option<&mut S>,
    ) -> Option<Ending> {
        let text = match event {
            Event::Eof | Event::WriteFailed => return Some(ws::Ending::Gone),
            // The socket took what waited: the loop takes more.
            Event::Drained => return None,
            Event::Message(AggregatedMessage::Close(reason)) => {
                return Some(ws::Ending::ClientClosed(reason));
            }
            Event::Message(AggregatedMessage::Ping(bytes)) => {
                self.ws.send(Message::Pong(bytes));
                return None;
            }
            Event::Message(AggregatedMessage::Pong(_)) => {
                self.pong_due = None;
                return None;
            }
            Event::Message(AggregatedMessage::Text(text)) => text,
            Event::Message(AggregatedMessage::Binary(bytes)) => {
                match bytestring::ByteString::try_from(bytes) {
                    Ok(text) => text,
                    Err(_) => {
                        tracing::debug!("sockjs websocket: binary frame is not UTF-8, closing");
                        return Some(close_without_frame(Close::new(1007, "Invalid UTF-8")));
                    }
                }
            }
            Event::Failed(failure, detail) => return Some(self.read_failed(failure, &detail)),
        };
        // Each frame is handled before the next is read, as sockjs-node's
        // synchronous handlers are, so answers keep their order.
        let messages = if self.framed {
            match frame::parse_websocket_frame(&text) {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!("sockjs websocket: {error} closing");
                    return Some(close_without_frame(error.close()));
                }
            }
        } else {
            vec![text.to_string()]
        };
        // A refused session's messages reach no app.
        if let Some(app) = app {
            for message in messages {
                handle(app, message).await;
            }
        }
        None
    }

    /// A failed read: too big a message closes with 1009 after a `c` frame,
    /// a protocol error with 1002, a vanished transport silently.
    fn read_failed(&self, failure: ReadFailure, detail: &str) -> Ending {
        match failure {
            ReadFailure::Gone => ws::Ending::Gone,
            ReadFailure::TooBig => {
                let error = SockjsError::MessageTooBig(self.max_message_bytes);
                tracing::info!("sockjs websocket: {error}, closing");
                close_with_frame(error.close())
            }
            ReadFailure::Invalid | ReadFailure::InvalidUtf8 => {
                tracing::debug!("sockjs websocket protocol error: {detail}");
                close_without_frame(Close::new(1002, "Protocol error"))
            }
        }
    }
}

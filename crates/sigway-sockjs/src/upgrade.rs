//! How a WebSocket leaves the HTTP/1 dispatcher: actix-http hands every
//! request that asks for `Upgrade: websocket` to [`UpgradeFactory`]'s
//! service with the connection's framed socket. That service runs the
//! actix-web app on the request as usual (routing, handshake checks and
//! refusals stay in the handlers); a handler that accepts the WebSocket
//! answers with [`accept`], which attaches the session to run to its `101`
//! response. The service writes the response with the connection's own
//! HTTP/1 codec and then either spawns the session on a task of its own
//! over a [`WsConnection`] (the dispatcher, its two 8 KiB buffers and its
//! task are gone) or, for any other answer, closes the connection after it
//! as actix closed it before (a request flagged as an upgrade carries the
//! rest of the connection as its body).
//!
//! A handler that knows the room the session will join ([`accept_at`])
//! has it run on that room's worker thread (see [`crate::placement`]).
//!
//! Sessions run outside actix-server's connection count, so [`LiveSessions`]
//! counts them: a graceful stop waits for them to say goodbye.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix_codec::{AsyncRead, AsyncWrite, Encoder as _, Framed};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

use crate::placement::{Place, Workers, detach};
use crate::ws::FINAL_WRITE;
use crate::ws_connection::{WsConnection, WsIo};

/// Put on a request by the upgrade service: a handler may accept it.
#[derive(Debug, Clone, Copy)]
struct ThroughUpgradeHook;

/// Starts a session over its socket.
type Start = Box<dyn FnOnce(WsConnection) -> LocalBoxFuture<'static, ()>>;
/// The same, for a session that may move to another thread first.
type SendStart = Box<dyn FnOnce(WsConnection) -> LocalBoxFuture<'static, ()> + Send>;

/// The session a `101` response hands the socket to.
enum Upgrade {
    /// Runs on the thread that accepted the connection.
    Here(Start),
    /// Runs on the worker `place`.
    At { place: Place, start: SendStart },
}

/// Accepts the WebSocket handshake of `req`: the `101` answer, with
/// `session` attached; the upgrade service runs it over the socket once the
/// answer is written. A request that did not come through the upgrade hook
/// (its `Upgrade` header is not exactly `websocket`, so the HTTP layer kept
/// it) and a bad handshake get actix's handshake error.
pub fn accept<F, Fut>(req: &HttpRequest, session: F) -> Result<HttpResponse, actix_web::Error>
where
    F: FnOnce(WsConnection) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let start: Start = Box::new(move |connection| Box::pin(session(connection)));
    answer_handshake(req, Upgrade::Here(start))
}

/// [`accept`] for a session that will join a room running on the worker
/// `place` (when there is one): the session runs on that thread (moved
/// there after its `101` when it was accepted elsewhere), so that what the
/// room relays stays on one thread. `session` is called on that thread.
pub fn accept_at<F, Fut>(
    req: &HttpRequest,
    place: Option<Place>,
    session: F,
) -> Result<HttpResponse, actix_web::Error>
where
    F: FnOnce(WsConnection) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let upgrade = match place {
        Some(place) if !place.is_here() => Upgrade::At {
            place,
            start: Box::new(move |connection| Box::pin(session(connection))),
        },
        _ => Upgrade::Here(Box::new(move |connection| Box::pin(session(connection)))),
    };
    answer_handshake(req, upgrade)
}

/// The `101` answer to `req` carrying `upgrade`, or the handshake's error.
fn answer_handshake(req: &HttpRequest, upgrade: Upgrade) -> Result<HttpResponse, actix_web::Error> {
    let mut response = actix_http::ws::handshake(req.head())?;
    if req.extensions().get::<ThroughUpgradeHook>().is_none() {
        return Err(actix_http::ws::HandshakeError::NoWebsocketUpgrade.into());
    }
    let mut response = HttpResponse::from(response.finish().map_into_boxed_body());
    response.extensions_mut().insert(upgrade);
    Ok(response)
}

/// WebSocket sessions running on their own tasks, for a graceful stop.
#[derive(Debug, Default)]
pub struct LiveSessions {
    count: AtomicUsize,
    idle: Notify,
    moved: AtomicU64,
}

/// Held by a running session; its drop counts the session out.
struct LiveSession(Arc<LiveSessions>);

impl Drop for LiveSession {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl LiveSessions {
    fn enter(self: &Arc<Self>) -> LiveSession {
        self.count.fetch_add(1, Ordering::AcqRel);
        LiveSession(self.clone())
    }

    /// Sessions running now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Sessions moved to their room's worker since start.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Waits until no session runs, at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let idle = self.idle.notified();
                if self.count() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }

    /// The same from a thread outside any runtime: checks every 10 ms.
    pub fn wait_idle_blocking(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.count() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The upgrade service's factory for one worker: it builds its own
/// instance of the app (the HTTP side has another).
pub struct UpgradeFactory<S, B> {
    app: S,
    config: AppConfig,
    sessions: Arc<LiveSessions>,
    workers: Arc<Workers>,
    linger: Duration,
    _body: PhantomData<B>,
}

impl<S, B> UpgradeFactory<S, B> {
    /// Runs `app` (configured with `config`) on upgrade requests; sessions
    /// are counted in `sessions`; a connection closed after a refusal is
    /// read for at most `linger` first (actix's client disconnect timeout).
    /// The worker building a service joins `workers`, a [`Place`]
    /// sessions can move to.
    pub fn new(
        app: S,
        config: AppConfig,
        sessions: Arc<LiveSessions>,
        workers: Arc<Workers>,
        linger: Duration,
    ) -> Self {
        Self {
            app,
            config,
            sessions,
            workers,
            linger,
            _body: PhantomData,
        }
    }
}

/// The upgrade service of one worker.
pub struct UpgradeService<S, B> {
    app: Rc<S>,
    sessions: Arc<LiveSessions>,
    linger: Duration,
    _body: PhantomData<B>,
}

/// The upgrade service never fails: a broken connection just ends.
#[derive(Debug)]
pub struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("never")
    }
}

impl From<Never> for Response<BoxBody> {
    fn from(_: Never) -> Self {
        Response::internal_server_error()
    }
}

impl<T, S, B> ServiceFactory<(Request, Framed<T, h1::Codec>)> for UpgradeFactory<S, B>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: ServiceFactory<Request, Config = AppConfig>,
    S::Future: 'static,
    S::Service: 'static,
    S::Error: Into<actix_web::Error>,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = Never;
    type Config = ();
    type Service = UpgradeService<S::Service, B>;
    type InitError = S::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Service, Self::InitError>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let app = self.app.new_service(self.config.clone());
        let sessions = self.sessions.clone();
        self.workers.register_current();
        let linger = self.linger;
        Box::pin(async move {
            Ok(UpgradeService {
                app: Rc::new(app.await?),
                sessions,
                linger,
                _body: PhantomData,
            })
        })
    }
}

impl<T, S, B> Service<(Request, Framed<T, h1::Codec>)> for UpgradeService<S, B>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request> + 'static,
    S::Error: Into<actix_web::Error>,
    S::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    type Response = ();
    type Error = Never;
    type Future = LocalBoxFuture<'static, Result<(), Never>>;

    actix_service::always_ready!();

    fn call(&self, (request, framed): (Request, Framed<T, h1::Codec>)) -> Self::Future {
        let app = self.app.clone();
        let sessions = self.sessions.clone();
        let linger = self.linger;
        Box::pin(async move {
            request.extensions_mut().insert(ThroughUpgradeHook);
            let response: Response<BoxBody> = match app.call(request).await {
                Ok(response) => response.into().map_into_boxed_body(),
                Err(error) => {
                    let error: actix_web::Error = error.into();
                    error.error_response().into()
                }
            };
            answer(framed, response, &sessions, linger).await;
            Ok(())
        })
    }
}

/// Writes `response` on the connection, then runs the session it carries
/// or closes the connection.
async fn answer<T>(
    framed: Framed<T, h1::Codec>,
    mut response: Response<BoxBody>,
    sessions: &Arc<LiveSessions>,
    linger: Duration,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let upgrade = response.extensions_mut().remove::<Upgrade>();
    let parts = framed.into_parts();
    let (mut io, mut codec, already_read) = (parts.io, parts.codec, parts.read_buf);
    let (mut head, body) = response.into_parts();
    match upgrade {
        Some(upgrade) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let mut out = BytesMut::new();
            if codec
                .encode(Message::Item((head, BodySize::None)), &mut out)
                .is_err()
            {
                return;
            }
            let written = tokio::time::timeout(FINAL_WRITE, io.write_all(&out)).await;
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
            let live = sessions.enter();
            let start = match upgrade {
                Upgrade::Here(start) => start,
                Upgrade::At { place, start } => match detach(io) {
                    Ok(detached) => {
                        move_session(place, detached, already_read, start, live, sessions);
                        return;
                    }
                    Err(kept) => {
                        io = kept;
                        start
                    }
                },
            };
            let connection = WsConnection::new(Box::new(io) as Box<dyn WsIo>, &already_read);
            drop(already_read);
            run_session(start(connection), live);
        }
        _ => {
            // The request took the rest of the connection as its body, so
            // the connection ends after this answer, as it did in actix's
            // dispatcher.
            head.head_mut().set_connection_type(ConnectionType::Close);
            let _ =
                tokio::time::timeout(FINAL_WRITE, write_response(&mut io, &mut codec, head, body))
                    .await;
            let _ = tokio::time::timeout(FINAL_WRITE, io.shutdown()).await;
            let _ = tokio::time::timeout(linger, drain(&mut io)).await;
        }
    }
}

/// Runs `session` on this thread, counted as live and on this worker.
fn run_session(session: LocalBoxFuture<'static, ()>, live: LiveSession) {
    let on_worker = Place::here().map(|place| place.count_session());
    actix_rt::spawn(async move {
        session.await;
        drop(on_worker);
        drop(live);
    });
}

/// What a session moving to another worker takes along.
struct Moving {
    socket: std::net::TcpStream,
    already_read: Bytes,
    start: SendStart,
    live: LiveSession,
}

impl Moving {
    /// Runs the session on the calling thread's reactor.
    fn run_here(self) {
        match tokio::net::TcpStream::from_std(self.socket) {
            Ok(io) => {
                let connection =
                    WsConnection::new(Box::new(io) as Box<dyn WsIo>, &self.already_read);
                run_session((self.start)(connection), self.live);
            }
            Err(error) => {
                tracing::warn!("WebSocket closed: its socket could not join its thread: {error}");
            }
        }
    }
}

/// Runs the session `start` on the worker `place` over the socket
/// `detached` from this thread (with the bytes the client sent after its
/// handshake); here when that worker has stopped.
fn move_session(
    place: Place,
    detached: std::io::Result<std::net::TcpStream>,
    already_read: BytesMut,
    start: SendStart,
    live: LiveSession,
    sessions: &LiveSessions,
) {
    let socket = match detached {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!("WebSocket closed: its socket could not leave its thread: {error}");
            return;
        }
    };
    let moving = Arc::new(std::sync::Mutex::new(Some(Moving {
        socket,
        already_read: already_read.freeze(),
        start,
        live,
    })));
    let taken = moving.clone();
    let take = |slot: &std::sync::Mutex<Option<Moving>>| {
        slot.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    };
    let sent = place.arbiter().spawn_fn(move || {
        if let Some(moving) = take(&taken) {
            moving.run_here();
        }
    });
    if sent {
        sessions.moved.fetch_add(1, Ordering::Relaxed);
    } else if let Some(moving) = take(&moving) {
        // The worker stopped (the server is stopping, or actix restarted
        // it after a panic): the session stays.
        moving.run_here();
    }
}

/// Writes a whole HTTP response, its body chunk by chunk.
async fn write_response<T: AsyncWrite + Unpin>(
    io: &mut T,
    codec: &mut h1::Codec,
    head: Response<()>,
    body: BoxBody,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec.encode(Message::Item((head, body.size())), &mut out)?;
    let mut body = std::pin::pin!(body);
    loop {
        let chunk = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await;
        match chunk {
            Some(Ok(bytes)) => codec.encode(Message::Chunk(Some(bytes)), &mut out)?,
            Some(Err(_)) => return Err(std::io::ErrorKind::Other.into()),
            None => {
                codec.encode(Message::Chunk(None), &mut out)?;
                break;
            }
        }
        io.write_all(&out).await?;
        out.clear();
    }
    io.write_all(&out).await?;
    io.flush().await
}

/// Reads and drops until the client closes.
async fn drain<T: AsyncRead + Unpin>(io: &mut T) {
    let mut sink = [0u8; 1024];
    while let Ok(read) = io.read(&mut sink).await {
        if read == 0 {
            break;
        }
    }
}

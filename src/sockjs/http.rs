//! The HTTP side of the SockJS layer: static pages (greeting, info,
//! iframe, chunking_test), the polling/streaming receivers and the send
//! endpoints, with sockjs-node 0.3.24's headers, bodies and error answers
//! (`tests/sockjs_node_diff.rs` compares them byte for byte).
//!
//! A receiver is a response whose body is fed by a local task: the task
//! attaches to the session, writes frames (each one its own chunk) and ends
//! the body when the transport says so (after one frame for polling, after
//! `response_limit` characters for streaming). When actix drops the body
//! because the client went away, the task sees its channel closed and, as
//! sockjs-node does, ends the session at once and forgets it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use actix_http::ConnectionType;
use actix_web::body::{BodySize, MessageBody as _};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::frame::{self, Wrapping};
use super::route::{Route, Transport, route};
use super::session::{Attach, PollingSession, Registry, drain_batch, spawn_app};
use super::{Outgoing, Server, SessionInfo, SessionLink, SockjsApp, websocket};
use crate::error::SockjsError;

/// sockjs-node's `h_no_cache`.
const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
const ONE_YEAR_SECS: u64 = 31_536_000;
const TEXT: &str = "text/plain; charset=UTF-8";
const JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
/// Chunks a receiver may have written that the client has not taken yet.
const BODY_CHUNKS: usize = 16;

/// The iframe page with its ETag, built once per endpoint.
pub(crate) struct IframePage {
    body: String,
    etag: String,
}

impl IframePage {
    /// sockjs-node's page and ETag (the quoted MD5 of the page). The client
    /// URL is HTML-escaped here (sockjs-node pastes it raw, which changes
    /// nothing for URLs without `&`, `"`, `<` or `>`).
    pub fn new(client_url: &str) -> Self {
        let url = client_url
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let body = format!(
            r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#
        );
        let etag = format!("\"{}\"", md5_hex(body.as_bytes()));
        Self { body, etag }
    }
}

fn md5_hex(data: &[u8]) -> String {
    match openssl::hash::hash(openssl::hash::MessageDigest::md5(), data) {
        Ok(digest) => digest.iter().map(|b| format!("{b:02x}")).collect(),
        // MD5 unavailable (a FIPS-only OpenSSL): any stable tag will do.
        Err(_) => format!("{:016x}", data.len()),
    }
}

/// Routes one request under the prefix.
pub(crate) async fn dispatch<A: SockjsApp>(
    server: Arc<Server<A>>,
    req: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let options = &server.options;
    let path = req.path();
    let rest = path.strip_prefix(options.prefix.as_str()).unwrap_or(path);
    let mut response = match route(rest, req.method()) {
        Route::Greeting => HttpResponse::Ok()
            .content_type(TEXT)
            .body("Welcome to SockJS!\n"),
        Route::Info => info(&server, &req),
        Route::InfoOptions => preflight(&req, "OPTIONS, GET", cookie(&server, &req)),
        Route::Iframe => iframe(&server.iframe, &req),
        Route::ChunkingTest => chunking_test(&req, body).await,
        Route::ChunkingTestOptions => preflight(&req, "OPTIONS, POST", cookie(&server, &req)),
        Route::RawWebsocket if options.websocket => websocket::raw(server.clone(), &req, body),
        Route::Session {
            transport: Transport::Websocket,
            ..
        } if options.websocket => websocket::framed(server.clone(), &req, body),
        // sockjs-node's `disabled_transport`: a 404 cacheable for a year.
        Route::RawWebsocket
        | Route::Session {
            transport: Transport::Websocket,
            ..
        } => {
            let mut builder = HttpResponse::NotFound();
            cache_for_a_year(&mut builder);
            not_found_with(builder)
        }
        Route::Session {
            preflight: true, ..
        } => preflight(&req, "OPTIONS, POST", cookie(&server, &req)),
        Route::Session {
            session, transport, ..
        } => transport_response(&server, &req, session, transport, body).await,
        Route::MethodNotAllowed(allow) => {
            drain(body).await;
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, allow))
                .finish()
        }
        Route::NotFound => {
            drain(body).await;
            not_found()
        }
    };
    if req.version() < Version::HTTP_11 && response.body().size() == BodySize::Stream {
        // HTTP/1.0 knows no chunked encoding: the body runs until the
        // connection closes.
        let head = response.head_mut();
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
    response
}

fn not_found() -> HttpResponse {
    not_found_with(HttpResponse::NotFound())
}

/// sockjs-node's 404 page, after whatever headers `builder` has.
fn not_found_with(mut builder: HttpResponseBuilder) -> HttpResponse {
    builder
        .status(StatusCode::NOT_FOUND)
        .content_type(TEXT)
        .body("404 Error: Page not found\n")
}

/// An error answer with the headers already in `builder`: sockjs-node's
/// `handle_error` sends the message with no Content-Type; an unknown
/// session gets its 404 page.
fn refuse(error: &SockjsError, mut builder: HttpResponseBuilder) -> HttpResponse {
    if *error == SockjsError::SessionNotFound {
        return not_found_with(builder);
    }
    builder.status(error.http_status()).body(error.to_string())
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request's `Origin` unless absent or empty.
fn origin(req: &HttpRequest) -> Option<&HeaderValue> {
    req.headers().get(header::ORIGIN).filter(|o| !o.is_empty())
}

/// sockjs-node's `xhr_cors`: the Origin echoed with credentials allowed
/// (`null` included), `*` without credentials when there is none, and the
/// requested headers allowed.
fn cors(builder: &mut HttpResponseBuilder, req: &HttpRequest) {
    cors_with(builder, req, origin(req));
}

/// The CORS headers of `eventsource`, where sockjs-node treats `null` as
/// no Origin.
fn eventsource_cors(builder: &mut HttpResponseBuilder, req: &HttpRequest) {
    cors_with(
        builder,
        req,
        origin(req).filter(|o| o.as_bytes() != b"null"),
    );
}

fn cors_with(builder: &mut HttpResponseBuilder, req: &HttpRequest, origin: Option<&HeaderValue>) {
    match origin {
        Some(origin) => {
            builder
                .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        }
        None => {
            builder.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
        }
    }
    builder.insert_header((header::VARY, "Origin"));
    if let Some(requested) = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|h| !h.is_empty())
    {
        builder.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
    }
}

/// The `JSESSIONID` cookie to set when the endpoint wants cookies: the
/// client's own, so that load balancers can stick, else `dummy`.
fn cookie<A: SockjsApp>(server: &Server<A>, req: &HttpRequest) -> Option<String> {
    if !server.options.cookie_needed {
        return None;
    }
    let value = header_str(req, header::COOKIE)
        .and_then(jsessionid)
        .filter(|v| !v.is_empty())
        .unwrap_or("dummy");
    Some(format!("JSESSIONID={value}; path=/"))
}

/// `JSESSIONID` as sockjs-node's `parseCookie` reads it: pairs split at
/// `;`, the value is what lies between the first and second `=`, trimmed;
/// the last pair of that name wins.
fn jsessionid(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|pair| {
            let mut parts = pair.split('=');
            let name = parts.next()?.trim();
            (name == "JSESSIONID").then(|| parts.next().unwrap_or("").trim())
        })
        .next_back()
}

fn set_cookie(builder: &mut HttpResponseBuilder, cookie: Option<String>) {
    if let Some(cookie) = cookie
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        builder.insert_header((header::SET_COOKIE, value));
    }
}

fn cache_for_a_year(builder: &mut HttpResponseBuilder) {
    let expires = header::HttpDate::from(SystemTime::now() + Duration::from_secs(ONE_YEAR_SECS));
    builder
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={ONE_YEAR_SECS}"),
        ))
        .insert_header((header::EXPIRES, expires.to_string()));
}

/// A CORS preflight: 204, cacheable for a year (sockjs-node's
/// `h_sid, xhr_cors, cache_for, *_options`).
fn preflight(req: &HttpRequest, methods: &'static str, cookie: Option<String>) -> HttpResponse {
    let mut builder = HttpResponse::NoContent();
    set_cookie(&mut builder, cookie);
    cors(&mut builder, req);
    cache_for_a_year(&mut builder);
    builder
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, ONE_YEAR_SECS.to_string()))
        .finish()
}

fn info<A: SockjsApp>(server: &Server<A>, req: &HttpRequest) -> HttpResponse {
    // Key order as sockjs-node's (serde_json keeps insertion order here).
    let body = serde_json::json!({
        "websocket": server.options.websocket,
        "origins": ["*:*"],
        "cookie_needed": server.options.cookie_needed,
        "entropy": rand::random::<u32>(),
    });
    let mut builder = HttpResponse::Ok();
    cors(&mut builder, req);
    builder
        .insert_header((header::CACHE_CONTROL, NO_CACHE))
        .content_type("application/json; charset=UTF-8")
        .body(body.to_string())
}

/// sockjs-node answers 304 only to its exact ETag, with the caching headers
/// and neither the ETag nor a body.
fn iframe(page: &IframePage, req: &HttpRequest) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    if header_str(req, header::IF_NONE_MATCH) == Some(page.etag.as_str()) {
        cache_for_a_year(&mut builder);
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder
        .content_type("text/html; charset=UTF-8")
        .insert_header((header::ETAG, page.etag.as_str()));
    cache_for_a_year(&mut builder);
    builder.body(page.body.clone())
}

/// Reads and drops a (small) request body that nobody wants, so that the
/// connection can serve the next request, as Node's does.
async fn drain(mut body: web::Payload) {
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len();
        if seen > 64 * 1024 {
            break;
        }
    }
}

/// `chunking_test`: `h`, 2 KiB of spaces and `h`, then `h` after 5, 25,
/// 125, 625 and 3125 ms, each its own chunk (the request body is read and
/// ignored, as sockjs-node does).
async fn chunking_test(req: &HttpRequest, body: web::Payload) -> HttpResponse {
    // The body is read first, as expect_xhr does.
    drain(body).await;
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    actix_web::rt::spawn(async move {
        for (delay_ms, payload) in frame::chunking_test_steps() {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if tx.send(Bytes::from(payload)).await.is_err() {
                return;
            }
        }
    });
    let mut builder = HttpResponse::Ok();
    cors(&mut builder, req);
    builder
        .content_type(JAVASCRIPT)
        .streaming(ChannelBody::new(rx))
}

/// The values of the query parameter `c`, else of `callback` (sockjs-node
/// reads `c` when present at all).
fn callback_values(req: &HttpRequest) -> Vec<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    for name in ["c", "callback"] {
        let values: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        if !values.is_empty() {
            return values;
        }
    }
    Vec::new()
}

async fn transport_response<A: SockjsApp>(
    server: &Arc<Server<A>>,
    req: &HttpRequest,
    session_id: &str,
    transport: Transport,
    body: web::Payload,
) -> HttpResponse {
    // Headers in sockjs-node's filter order: h_sid, h_no_cache, then CORS
    // for the xhr transports.
    let mut builder = HttpResponse::Ok();
    set_cookie(&mut builder, cookie(server, req));
    builder.insert_header((header::CACHE_CONTROL, NO_CACHE));
    let content_type = header_str(req, header::CONTENT_TYPE).map(str::to_owned);
    match transport {
        Transport::XhrSend => {
            cors(&mut builder, req);
            let parse = |bytes: &[u8]| frame::parse_xhr_send(content_type.as_deref(), bytes);
            match receive_messages(server, req, session_id, body, parse).await {
                Ok(()) => builder
                    .status(StatusCode::NO_CONTENT)
                    .content_type(TEXT)
                    .finish(),
                Err(error) => refuse(&error, builder),
            }
        }
        Transport::JsonpSend => {
            let parse = |bytes: &[u8]| frame::parse_jsonp_send(content_type.as_deref(), bytes);
            match receive_messages(server, req, session_id, body, parse).await {
                Ok(()) => builder.content_type(TEXT).body("ok"),
                Err(error) => refuse(&error, builder),
            }
        }
        Transport::Xhr | Transport::XhrStreaming => {
            cors(&mut builder, req);
            let streaming = transport == Transport::XhrStreaming;
            let prelude = streaming.then(frame::xhr_streaming_prelude);
            let mut body = open_receiver(
                server,
                req,
                session_id,
                transport,
                Wrapping::Newline,
                streaming,
                prelude,
            );
            if !streaming {
                body.wait_first().await;
            }
            builder.content_type(JAVASCRIPT).streaming(body)
        }
        Transport::EventSource => {
            builder.content_type("text/event-stream");
            eventsource_cors(&mut builder, req);
            let body = open_receiver(
                server,
                req,
                session_id,
                transport,
                Wrapping::EventSource,
                true,
                Some("\r\n".into()),
            );
            builder.streaming(body)
        }
        Transport::HtmlFile | Transport::Jsonp => {
            let max_len = (transport == Transport::Jsonp).then_some(frame::MAX_JSONP_CALLBACK_LEN);
            let values = callback_values(req);
            let callback = match frame::validate_callback(&values, max_len) {
                Ok(callback) => callback.to_owned(),
                Err(error) => {
                    tracing::debug!(session = session_id, "sockjs {}: {error}", transport.name());
                    return refuse(&error, builder);
                }
            };
            if transport == Transport::HtmlFile {
                let prelude = frame::htmlfile_prelude(&callback);
                let body = open_receiver(
                    server,
                    req,
                    session_id,
                    transport,
                    Wrapping::HtmlFile,
                    true,
                    Some(prelude),
                );
                builder
                    .content_type("text/html; charset=UTF-8")
                    .streaming(body)
            } else {
                let mut body = open_receiver(
                    server,
                    req,
                    session_id,
                    transport,
                    Wrapping::Jsonp(callback),
                    false,
                    None,
                );
                body.wait_first().await;
                builder
                    .insert_header(("X-Content-Type-Options", "nosniff"))
                    .content_type(JAVASCRIPT)
                    .streaming(body)
            }
        }
        Transport::Websocket => not_found(),
    }
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(
    req: &HttpRequest,
    mut body: web::Payload,
    limit: usize,
) -> Result<BytesMut, SockjsError> {
    let declared = header_str(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(SockjsError::PayloadTooLarge(limit));
    }
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| SockjsError::PayloadExpected)?;
        if bytes.len() + chunk.len() > limit {
            return Err(SockjsError::PayloadTooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// xhr_send / jsonp_send: decodes the messages with `parse`, hands them, in
/// order, to the session's app and waits until the app has handled them
/// (sockjs-node runs the app's handlers before it answers, so what they
/// send is queued by then).
async fn receive_messages<A: SockjsApp>(
    server: &Server<A>,
    req: &HttpRequest,
    session_id: &str,
    body: web::Payload,
    parse: impl FnOnce(&[u8]) -> Result<Vec<String>, SockjsError>,
) -> Result<(), SockjsError> {
    let result = async {
        let bytes = read_body(req, body, server.options.max_message_bytes).await?;
        let messages = parse(&bytes)?;
        let session = server
            .registry
            .get(session_id)
            .ok_or(SockjsError::SessionNotFound)?;
        if session.is_closed() {
            return Ok(());
        }
        session.app.deliver_all(messages).await;
        Ok(())
    }
    .await;
    match &result {
        // A limit: worth seeing at the default level.
        Err(error @ SockjsError::PayloadTooLarge(_)) => {
            tracing::info!(session = session_id, "sockjs send refused: {error}")
        }
        Err(error) => tracing::debug!(session = session_id, "sockjs send refused: {error}"),
        Ok(()) => {}
    }
    result
}

/// The response body of a receiver: chunks from its task.
pub(crate) struct ChannelBody {
    chunks: mpsc::Receiver<Bytes>,
    /// A chunk taken early by [`ChannelBody::wait_first`].
    first: Option<Bytes>,
}

impl ChannelBody {
    fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            first: None,
        }
    }

    /// Waits for the first chunk, so that a poll's head goes out with its
    /// frame, as sockjs-node's does (Node sends the head with the first
    /// write). A client that leaves meanwhile drops this future, and the
    /// receiver sees it.
    async fn wait_first(&mut self) {
        if self.first.is_none() {
            self.first = self.chunks.recv().await;
        }
    }
}

impl futures_util::Stream for ChannelBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// How a receiver writes and when it stops.
struct ReceiverSpec {
    wrapping: Wrapping,
    streaming: bool,
    response_limit: usize,
    heartbeat: Duration,
}

fn open_receiver<A: SockjsApp>(
    server: &Arc<Server<A>>,
    req: &HttpRequest,
    session_id: &str,
    transport: Transport,
    wrapping: Wrapping,
    streaming: bool,
    prelude: Option<String>,
) -> ChannelBody {
    let options = &server.options;
    let remote = req.peer_addr();
    let session = server
        .registry
        .get_or_open(session_id, options.outbound_queue, |link, id| {
            tracing::debug!(session = %id, transport = transport.protocol(), "sockjs session opened");
            spawn_app(
                &server.app,
                link,
                SessionInfo {
                    id,
                    remote,
                    transport: transport.protocol(),
                },
            )
        });
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    if let Some(prelude) = prelude {
        // The channel is empty: this cannot fail.
        let _ = tx.try_send(Bytes::from(prelude));
    }
    let spec = ReceiverSpec {
        wrapping,
        streaming,
        response_limit: options.response_limit,
        heartbeat: options.heartbeat,
    };
    actix_web::rt::spawn(run_receiver(
        session,
        server.registry.clone(),
        spec,
        tx,
        server.shutdown_signal(),
    ));
    ChannelBody::new(rx)
}

/// Writes wrapped frames into a receiver's body.
struct Writer {
    out: mpsc::Sender<Bytes>,
    spec: ReceiverSpec,
    /// What the frames written so far weigh against the response limit:
    /// JavaScript string length (UTF-16 units), as sockjs-node counts.
    written: usize,
    link: SessionLink,
}

/// Why a receiver stopped before finishing its response.
enum Stop {
    /// The client went away mid-response.
    Gone,
    /// The client does not read and the app's queue filled up meanwhile.
    Overflow,
}

/// How long a last frame (a close) may wait for a client that does not read.
const FINAL_WRITE: Duration = Duration::from_secs(2);

impl Writer {
    /// Writes one frame; waits while the client is slow, unless the app's
    /// queue overflows meanwhile.
    async fn frame(&mut self, frame: &str) -> Result<(), Stop> {
        let wrapped = self.spec.wrapping.wrap(frame);
        self.written += wrapped.encode_utf16().count();
        tokio::select! {
            biased;
            sent = self.out.send(Bytes::from(wrapped)) => sent.map_err(|_| Stop::Gone),
            _ = self.link.wait_overflow() => Err(Stop::Overflow),
        }
    }

    /// Writes the frame that ends the response, if the client takes it soon.
    async fn last_frame(&mut self, frame: &str) {
        let wrapped = Bytes::from(self.spec.wrapping.wrap(frame));
        let _ = tokio::time::timeout(FINAL_WRITE, self.out.send(wrapped)).await;
    }

    /// This response has carried all it may: the client must reopen.
    fn done(&self) -> bool {
        !self.spec.streaming || self.written >= self.spec.response_limit
    }
}

/// Holds the session's outgoing queue while attached; gives it back on drop,
/// whatever way the receiver ends.
struct Attached {
    session: Arc<PollingSession>,
    outgoing: Option<mpsc::Receiver<Outgoing>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(outgoing) = self.outgoing.take() {
            self.session.detach(outgoing);
        }
    }
}

async fn run_receiver(
    session: Arc<PollingSession>,
    registry: Arc<Registry>,
    spec: ReceiverSpec,
    out: mpsc::Sender<Bytes>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut writer = Writer {
        out,
        spec,
        written: 0,
        link: session.link.clone(),
    };
    match session.attach() {
        Attach::Busy => {
            writer
                .last_frame(&frame::close_for(&SockjsError::AnotherConnection))
                .await;
        }
        Attach::Closed(close) => writer.last_frame(&close).await,
        Attach::Attached {
            outgoing,
            send_open,
        } => {
            let mut attached = Attached {
                session: session.clone(),
                outgoing: Some(outgoing),
            };
            match serve(&session, &mut attached, send_open, &mut writer, shutdown).await {
                Ok(()) => {}
                Err(Stop::Gone) => {
                    // sockjs-node's `didAbort`: the session ends at once and
                    // is forgotten; the same id later opens a new one.
                    tracing::debug!(session = %session.id, "sockjs receiver interrupted");
                    session.close_with(&SockjsError::Interrupted);
                    registry.remove(&session);
                }
                Err(Stop::Overflow) => {
                    tracing::info!(session = %session.id, "sockjs client does not keep up: closing");
                    let close = session.close_with(&SockjsError::OutboundQueueFull);
                    writer.last_frame(&close).await;
                }
            }
            drop(attached);
        }
    }
}

/// Serves an attached receiver until its response is complete: what was
/// queued before it attached goes out as one batch, then each message as
/// its own frame (sockjs-node flushes on every send while a receiver is
/// attached).
async fn serve(
    session: &PollingSession,
    attached: &mut Attached,
    send_open: bool,
    writer: &mut Writer,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Stop> {
    if send_open {
        writer.frame(frame::OPEN).await?;
        if writer.done() {
            return Ok(());
        }
    }
    let Some(outgoing) = attached.outgoing.as_mut() else {
        return Ok(());
    };
    if session.link.overflowed() {
        return Err(Stop::Overflow);
    }
    if let Ok(first) = outgoing.try_recv() {
        let (batch, close) = match first {
            Outgoing::Message(first) => drain_batch(first, outgoing),
            Outgoing::Close { code, reason } => (Vec::new(), Some((code, reason))),
        };
        if let Some(end) = send_batch(session, writer, &batch, close).await? {
            return end;
        }
    }
    let mut app_gone = false;
    let mut shutdown = std::pin::pin!(shutdown);
    // Heartbeats keep their period whatever is sent meanwhile, as in
    // sockjs-node.
    let period = writer.spec.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            _ = writer.out.closed() => return Err(Stop::Gone),
            _ = &mut shutdown => {
                let going_away = crate::error::Close::going_away();
                let close = session.close(going_away.code, &going_away.reason);
                writer.last_frame(&close).await;
                return Ok(());
            }
            _ = session.link.wait_overflow() => return Err(Stop::Overflow),
            item = outgoing.recv(), if !app_gone => match item {
                None => app_gone = true,
                Some(Outgoing::Message(message)) => {
                    if let Some(end) = send_batch(session, writer, &[message], None).await? {
                        return end;
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let close = session.close(code, &reason);
                    writer.last_frame(&close).await;
                    return Ok(());
                }
            },
            _ = heartbeat.tick() => {
                writer.frame(frame::HEARTBEAT).await?;
                if writer.done() {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes `batch` (if any) and then the close that followed it (if any);
/// `Some(result)` when the response is complete.
async fn send_batch(
    session: &PollingSession,
    writer: &mut Writer,
    batch: &[bytestring::ByteString],
    close: Option<(u16, bytestring::ByteString)>,
) -> Result<Option<Result<(), Stop>>, Stop> {
    if !batch.is_empty() {
        writer.frame(&frame::messages(batch)).await?;
    }
    if let Some((code, reason)) = close {
        let close = session.close(code, &reason);
        // A polling response that carried the batch is complete: the close
        // frame waits for the next request, as in sockjs-node.
        if batch.is_empty() || !writer.done() {
            writer.last_frame(&close).await;
        }
        return Ok(Some(Ok(())));
    }
    Ok(writer.done().then_some(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iframe_page_quotes_the_client_url_and_has_a_stable_etag() {
        let page = IframePage::new(r#"https://cdn.test/s.js?a=1&b="x"<"#);
        assert!(page.body.contains(
            r#"<script src="https://cdn.test/s.js?a=1&amp;b=&quot;x&quot;&lt;"></script>"#
        ));
        assert_eq!(
            page.etag,
            IframePage::new(r#"https://cdn.test/s.js?a=1&b="x"<"#).etag
        );
        assert_ne!(page.etag, IframePage::new("/other.js").etag);
        assert!(page.etag.starts_with('"') && page.etag.ends_with('"'));
    }

    #[test]
    fn the_default_iframe_page_is_sockjs_node_s_with_its_etag() {
        let page =
            IframePage::new("https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js");
        // The MD5 sockjs-node 0.3.24 gives the same page.
        assert_eq!(page.etag, "\"08c88a6396a2481f245d665a53d9dc14\"");
        assert!(page.body.contains("    SockJS.bootstrap_iframe();\n"));
    }

    #[test]
    fn jsessionid_is_read_as_sockjs_node_parse_cookie_reads_it() {
        assert_eq!(jsessionid("JSESSIONID=abc"), Some("abc"));
        assert_eq!(jsessionid("a=1; JSESSIONID= x.y ; b=2"), Some("x.y"));
        // The last one wins; the value stops at a second `=`.
        assert_eq!(jsessionid("JSESSIONID=one; JSESSIONID=two"), Some("two"));
        assert_eq!(jsessionid("JSESSIONID=a=b"), Some("a"));
        assert_eq!(jsessionid("JSESSIONID"), Some(""));
        assert_eq!(jsessionid("jsessionid=x; other=y"), None);
    }
}

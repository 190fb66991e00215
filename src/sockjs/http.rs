//! The HTTP side of the SockJS layer: static pages (greeting, info,
//! iframe), the polling/streaming receivers and the send endpoints.
//!
//! A receiver is a response whose body is fed by a local task: the task
//! attaches to the session, writes frames (each one its own chunk) and ends
//! the body when the transport says so (after one frame for polling, after
//! `response_limit` bytes for streaming). When actix drops the body because
//! the client went away, the task sees its channel closed and closes the
//! session with `c[1002,"Connection interrupted"]`.

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
use super::session::{Attach, PollingSession, drain_batch, spawn_app};
use super::{Outgoing, Server, SessionInfo, SessionLink, SockjsApp, websocket};
use crate::error::SockjsError;

const NO_CACHE: &str = "no-store, no-cache, must-revalidate, max-age=0";
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
  <script>
    document.domain = document.domain;
    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};
  </script>
  <script src="{url}"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#
        );
        // FNV-1a: stable across builds and runs, which is all an ETag needs.
        let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let etag = format!("\"{hash:016x}\"");
        Self { body, etag }
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
    match route(rest, req.method()) {
        Route::Greeting => HttpResponse::Ok()
            .content_type(TEXT)
            .body("Welcome to SockJS!\n"),
        Route::Info => info(&server, &req),
        Route::InfoOptions => preflight(&req, "OPTIONS, GET", None),
        Route::Iframe => iframe(&server.iframe, &req),
        Route::RawWebsocket if options.websocket => websocket::raw(server.clone(), &req, body),
        Route::Session {
            transport: Transport::Websocket,
            ..
        } if options.websocket => websocket::framed(server.clone(), &req, body),
        Route::RawWebsocket
        | Route::Session {
            transport: Transport::Websocket,
            ..
        } => not_found(),
        Route::Session {
            preflight: true, ..
        } => preflight(&req, "OPTIONS, POST", cookie(&server, &req)),
        Route::Session {
            session, transport, ..
        } => session_request(&server, &req, session, transport, body).await,
        Route::MethodNotAllowed(allow) => HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .finish(),
        Route::NotFound => not_found(),
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type(TEXT)
        .body("404 Error: Page not found\n")
}

fn refuse(error: &SockjsError, builder: &mut HttpResponseBuilder) -> HttpResponse {
    builder
        .status(error.http_status())
        .content_type(TEXT)
        .body(error.to_string())
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// CORS headers of sockjs-node's `xhr_cors`: the Origin echoed (`*` when
/// absent or `null`), credentials allowed, requested headers allowed.
fn cors(builder: &mut HttpResponseBuilder, req: &HttpRequest) {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null" && !o.is_empty())
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    builder
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
        .insert_header((header::VARY, "Origin"));
    if let Some(requested) = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|h| !h.is_empty())
    {
        builder.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
    }
}

/// The `JSESSIONID` cookie value to set, when the endpoint wants cookies:
/// the client's own (so load balancers can stick), else `dummy`.
fn cookie<A: SockjsApp>(server: &Server<A>, req: &HttpRequest) -> Option<String> {
    if !server.options.cookie_needed {
        return None;
    }
    let from_client = header_str(req, header::COOKIE).and_then(|cookies| {
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == "JSESSIONID").then(|| value.trim())
        })
    });
    let value = from_client
        .filter(|v| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
        })
        .unwrap_or("dummy");
    Some(format!("JSESSIONID={value}; path=/"))
}

fn set_cookie(builder: &mut HttpResponseBuilder, cookie: Option<String>) {
    if let Some(cookie) = cookie {
        builder.insert_header((header::SET_COOKIE, cookie));
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

/// A CORS preflight: 204, cacheable for a year.
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

fn iframe(page: &IframePage, req: &HttpRequest) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    cache_for_a_year(&mut builder);
    builder.insert_header((header::ETAG, page.etag.as_str()));
    let cached = header_str(req, header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.split(',')
            .any(|tag| tag.trim() == page.etag || tag.trim() == "*")
    });
    if cached {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder
        .content_type("text/html; charset=UTF-8")
        .body(page.body.clone())
}

fn query_param(req: &HttpRequest, names: &[&str]) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).ok()?;
    names.iter().find_map(|name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

async fn session_request<A: SockjsApp>(
    server: &Arc<Server<A>>,
    req: &HttpRequest,
    session_id: &str,
    transport: Transport,
    body: web::Payload,
) -> HttpResponse {
    let mut response = transport_response(server, req, session_id, transport, body).await;
    if req.version() < Version::HTTP_11 && response.body().size() == BodySize::Stream {
        // HTTP/1.0 knows no chunked encoding: the body runs until the
        // connection closes.
        let head = response.head_mut();
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
    response
}

async fn transport_response<A: SockjsApp>(
    server: &Arc<Server<A>>,
    req: &HttpRequest,
    session_id: &str,
    transport: Transport,
    body: web::Payload,
) -> HttpResponse {
    let cookie = cookie(server, req);
    let mut builder = HttpResponse::Ok();
    set_cookie(&mut builder, cookie);
    builder.insert_header((header::CACHE_CONTROL, NO_CACHE));
    match transport {
        Transport::XhrSend => {
            cors(&mut builder, req);
            match receive_messages(server, req, session_id, body, false).await {
                Ok(()) => builder
                    .status(StatusCode::NO_CONTENT)
                    .content_type(TEXT)
                    .finish(),
                Err(error) => refuse(&error, &mut builder),
            }
        }
        Transport::JsonpSend => match receive_messages(server, req, session_id, body, true).await {
            Ok(()) => builder.content_type(TEXT).body("ok"),
            Err(error) => refuse(&error, &mut builder),
        },
        Transport::Xhr | Transport::XhrStreaming => {
            cors(&mut builder, req);
            let streaming = transport == Transport::XhrStreaming;
            let prelude = streaming.then(frame::xhr_streaming_prelude);
            let body = open_receiver(
                server,
                req,
                session_id,
                transport,
                Wrapping::Newline,
                streaming,
                prelude,
            );
            builder.content_type(JAVASCRIPT).streaming(body)
        }
        Transport::EventSource => {
            let body = open_receiver(
                server,
                req,
                session_id,
                transport,
                Wrapping::EventSource,
                true,
                Some("\r\n".into()),
            );
            builder
                .content_type("text/event-stream; charset=UTF-8")
                .streaming(body)
        }
        Transport::HtmlFile | Transport::Jsonp => {
            let callback = query_param(req, &["c", "callback"]);
            let callback = match frame::validate_callback(callback.as_deref()) {
                Ok(callback) => callback.to_owned(),
                Err(error) => {
                    tracing::debug!(session = session_id, "sockjs {}: {error}", transport.name());
                    return refuse(&error, &mut builder);
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
                let body = open_receiver(
                    server,
                    req,
                    session_id,
                    transport,
                    Wrapping::Jsonp(callback),
                    false,
                    None,
                );
                builder.content_type(JAVASCRIPT).streaming(body)
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

/// xhr_send / jsonp_send: decodes the messages and queues them, in order,
/// for the session's app.
async fn receive_messages<A: SockjsApp>(
    server: &Server<A>,
    req: &HttpRequest,
    session_id: &str,
    body: web::Payload,
    form: bool,
) -> Result<(), SockjsError> {
    let result = async {
        let bytes = read_body(req, body, server.options.max_message_bytes).await?;
        let is_form = form
            && header_str(req, header::CONTENT_TYPE).is_some_and(|ct| {
                ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        let messages = if is_form {
            let field = frame::form_field_d(&bytes).ok_or(SockjsError::PayloadExpected)?;
            frame::parse_send_body(field.as_bytes())?
        } else {
            frame::parse_send_body(&bytes)?
        };
        let session = server
            .registry
            .get(session_id)
            .ok_or(SockjsError::SessionNotFound)?;
        if session.is_closed() {
            return Ok(());
        }
        for message in messages {
            if !session.app.deliver(message).await {
                break;
            }
        }
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
pub(crate) struct ChannelBody(mpsc::Receiver<Bytes>);

impl futures_util::Stream for ChannelBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
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
    actix_web::rt::spawn(run_receiver(session, spec, tx, server.shutdown_signal()));
    ChannelBody(rx)
}

/// Writes wrapped frames into a receiver's body.
struct Writer {
    out: mpsc::Sender<Bytes>,
    spec: ReceiverSpec,
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
        let wrapped = Bytes::from(self.spec.wrapping.wrap(frame));
        self.written += wrapped.len();
        tokio::select! {
            biased;
            sent = self.out.send(wrapped) => sent.map_err(|_| Stop::Gone),
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
                    tracing::debug!(session = %session.id, "sockjs receiver interrupted");
                    session.close_with(&SockjsError::Interrupted);
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

/// Serves an attached receiver until its response is complete.
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
    let mut app_gone = false;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let heartbeat = tokio::time::sleep(writer.spec.heartbeat);
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
                Some(Outgoing::Message(first)) => {
                    let (batch, close) = drain_batch(first, outgoing);
                    writer.frame(&frame::messages(&batch)).await?;
                    if let Some((code, reason)) = close {
                        let close = session.close(code, &reason);
                        if !writer.done() {
                            writer.last_frame(&close).await;
                        }
                        return Ok(());
                    }
                    if writer.done() {
                        return Ok(());
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let close = session.close(code, &reason);
                    writer.last_frame(&close).await;
                    return Ok(());
                }
            },
            _ = heartbeat => {
                writer.frame(frame::HEARTBEAT).await?;
                if writer.done() {
                    return Ok(());
                }
            }
        }
    }
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
}

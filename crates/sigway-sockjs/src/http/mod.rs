//! The HTTP side of the SockJS layer, with sockjs-node 0.3.24's headers,
//! bodies and error answers (`tests/sockjs_node_diff.rs` compares them byte
//! for byte). This module routes a request and holds the headers every
//! answer shares (CORS, cookies, caching, 404s); `info` has the static
//! pages (greeting, info, iframe, chunking_test), `transports` what each
//! session transport answers, `send` the xhr_send/jsonp_send endpoints and
//! `receiver` the polling and streaming responses.
//!
//! A receiver is a response whose body is fed by a local task: the task
//! attaches to the session, writes frames (each one its own chunk) and ends
//! the body when the transport says so (after one frame for polling, after
//! `response_limit` characters for streaming). When actix drops the body
//! because the client went away, the task sees its channel closed and, as
//! sockjs-node does, ends the session at once and forgets it.

mod info;
mod receiver;
mod send;
mod transports;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_http::ConnectionType;
use actix_web::body::{BodySize, MessageBody as _};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};

use crate::app::SockjsApp;
use crate::error::SockjsError;
use crate::route::{Route, Transport, route};
use crate::server::Server;
use crate::websocket;

pub(crate) use info::IframePage;
use info::{chunking_test, drain, iframe, info};
use transports::transport_response;

/// sockjs-node's `h_no_cache`.
const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
const ONE_YEAR_SECS: u64 = 31_536_000;
const TEXT: &str = "text/plain; charset=UTF-8";
const JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
/// Chunks a receiver may have written that the client has not taken yet.
const BODY_CHUNKS: usize = 16;

/// Routes one request under the prefix.
pub(crate) async fn dispatch<A: SockjsApp>(
    server: Arc<Server<A>>,
    req: HttpRequest,
    body: web::Payload,
) -> HttpResponse {
    let options = &server.options;
    // sockjs-node answered every origin; with `allowed_origins` set, a
    // request from another origin gets 403 before anything else, so the
    // CORS headers below only ever reflect an allowed origin.
    if let Some(refusal) = options.edge.origin_refusal(&req, "sockjs request") {
        return refusal;
    }
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
        Route::RawWebsocket if options.websocket => websocket::raw(server.clone(), &req),
        Route::Session {
            transport: Transport::Websocket,
            ..
        } if options.websocket => websocket::framed(server.clone(), &req),
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

#[cfg(test)]
mod tests {
    use super::*;

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

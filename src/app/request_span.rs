//! The span every HTTP request is logged in, without the room key a sigver
//! path carries.
//!
//! tracing-actix-web's default root span records the request target, and
//! a sigver request's path *is* its Netflux key, which lets anyone into
//! the group. This builder records the same fields, except that a path
//! which is not one of the server's own pages or under the SockJS prefix
//! is shown as its key hash (`/key_hash:<12 hex>`), unless
//! `log.show_keys`. `http.client_ip` is the client's address as the edge
//! finds it (behind trusted proxies only; the default believes
//! `Forwarded`/`X-Forwarded-For` from anyone). The end of the request is
//! recorded as by the default.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage as _, web};
use sigway_core::redact::ShownKey;
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};

use crate::services::Services;

/// The server's own pages, logged as they are.
const PAGES: [&str; 6] = ["/", "/demo", "/healthz", "/readyz", "/metrics", "/stats"];

/// [`RootSpanBuilder`] that hides sigver keys in `http.target`.
pub(super) struct KeyHidingRootSpan;

impl RootSpanBuilder for KeyHidingRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let target = shown_target(request);
        let client = sigway_sockjs::edge::client_addr(request.request())
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .unwrap_or("")
            .to_owned();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.client_ip = %client,
            http.user_agent = %user_agent,
            http.target = %target,
            http.status_code = Empty,
            otel.status_code = Empty,
            exception.message = Empty,
            exception.details = Empty,
            request_id = %request_id,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The request target as the log may show it.
fn shown_target(request: &ServiceRequest) -> String {
    let uri = request.uri();
    let path = uri.path();
    let (show_keys, prefix) = request
        .app_data::<web::Data<Services>>()
        .map(|services| {
            let settings = &services.settings;
            (settings.log.show_keys, settings.sockjs.prefix.clone())
        })
        .unwrap_or_default();
    let own = PAGES.contains(&path)
        || (!prefix.is_empty()
            && path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    if show_keys || own {
        return uri.path_and_query().map_or(path, |p| p.as_str()).to_owned();
    }
    let key = path.strip_prefix('/').unwrap_or(path);
    match uri.query() {
        Some(query) => format!("/{}?{query}", ShownKey::new(key, false)),
        None => format!("/{}", ShownKey::new(key, false)),
    }
}

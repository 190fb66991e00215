//! Every route of the one port: the SockJS/videre endpoint under its prefix,
//! the sigver WebSocket on any other path that asks for an upgrade, and
//! plain pages (`/`, `/demo`, `/healthz`, `/readyz`, `/metrics`, `/stats`,
//! `/turn`, `/dashboard` and its feed) for the rest.
//! A plain request to any other path gets a JSON answer saying what this
//! server is, never a hang. With `admin.token` set the admin API is
//! mounted under `/admin/` too ([`super::admin`]); while the node drains,
//! new sigver upgrades are answered 503.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, guard, web};
use serde_json::json;
use sigway_sockjs::edge::Edge;

use crate::observe;
use crate::services::Services;

fn is_websocket_upgrade(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head().upgrade()
        || ctx
            .head()
            .headers()
            .get(actix_web::http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

pub(super) fn routes(
    cfg: &mut web::ServiceConfig,
    videre: &Arc<sigway_sockjs::Server<crate::videre::VidereApp>>,
    admin: Option<super::admin::AdminToken>,
    feeds: &web::Data<super::dashboard::FeedClients>,
) {
    videre.configure(cfg);
    // Before the sigver catch-all: `/admin/...` is not a room key here.
    if let Some(token) = admin {
        super::admin::routes(cfg, token);
    }
    cfg.service(
        web::resource("/{any:.*}")
            .guard(guard::fn_guard(is_websocket_upgrade))
            .to(sigver_upgrade),
    )
    .route("/", web::get().to(landing))
    .route("/demo", web::get().to(demo))
    .route("/healthz", web::get().to(observe::healthz))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(observe::metrics))
    .route("/stats", web::get().to(observe::stats))
    // TURN credentials (issue 13 item 4).
    .route("/turn", web::get().to(super::turn::turn_credentials))
    // The live dashboard and its feed (dashboard.rs).
    .configure(|cfg| super::dashboard::routes(cfg, feeds))
    .default_service(web::to(not_a_websocket));
}

/// A sigver upgrade: refused with 403 before the handshake when its
/// `Origin` is not allowed, else the session's own entry.
async fn sigver_upgrade(
    req: HttpRequest,
    services: web::Data<Services>,
    edge: web::Data<Edge>,
) -> actix_web::Result<HttpResponse> {
    if let Some(refusal) = edge.origin_refusal(&req, "sigver upgrade") {
        return Ok(refusal);
    }
    if services.drain.is_draining() {
        return Ok(draining_refusal());
    }
    crate::sigver::session::entry(req, services).await
}

const LANDING_PAGE: &str = include_str!("../../static/index.html");
const DEMO_PAGE: &str = include_str!("../../static/demo.html");

async fn landing() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(LANDING_PAGE)
}

async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DEMO_PAGE)
}

/// Whether the node serves: always when alone; in a cluster, once it
/// reaches the other nodes through Redis (and not while it cannot).
async fn readyz(services: web::Data<Services>) -> HttpResponse {
    let (status, body) = if services.drain.is_draining() {
        (
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "draining\n",
        )
    } else if services.rooms.is_ready() {
        (actix_web::http::StatusCode::OK, "ready\n")
    } else {
        (
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "not ready: cluster unreachable\n",
        )
    };
    HttpResponse::build(status)
        .content_type("text/plain")
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

/// A new session while the node drains: 503, and the connection closes
/// (the client tries another node).
fn draining_refusal() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .force_close()
        .insert_header(("Retry-After", "1"))
        .content_type("text/plain")
        .body("draining: this node takes no new sessions\n")
}

/// Any other plain request: say what this server is instead of hanging.
async fn not_a_websocket(req: HttpRequest, services: web::Data<Services>) -> HttpResponse {
    let path = req.uri().path();
    HttpResponse::UpgradeRequired()
        .insert_header(("Upgrade", "websocket"))
        .json(json!({
            "server": "sigway",
            "version": env!("CARGO_PKG_VERSION"),
            "error": "this path is a sigver signaling endpoint: open a WebSocket to it",
            "sigver": { "key": path.strip_prefix('/').unwrap_or(path), "url": format!("ws(s)://HOST{path}") },
            "videre": { "sockjs": services.settings.sockjs.prefix },
            "endpoints": ["/", "/demo", "/healthz", "/readyz", "/metrics", "/stats", "/turn", "/dashboard"],
        }))
}

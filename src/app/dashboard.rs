//! The live dashboard: `GET /dashboard` serves `static/dashboard.html`
//! (self-contained: its script, styles and charts are inline, nothing is
//! loaded from elsewhere) and `GET /dashboard/feed` is its server-sent
//! events feed: one event a second carrying the same metric families as
//! `/metrics` (aggregates only, never a peer, a key or an address), which
//! the page turns into rates, percentiles and charts. In a cluster each
//! event also lists every live node (`nodes`: each one's `node`,
//! `started_ms`, `ready`, `t` and `metrics`) and the cluster's totals
//! (`cluster`), from the board the nodes share ([`NodeBoard`]): read once
//! a second for all the feeds of this node, not once per feed.
//!
//! `dashboard.enabled = false` answers 404 on both. Both want a token as
//! a bearer token or a `?token=` query (the page hands its own query token
//! to the feed, as `EventSource` cannot send headers) when
//! [`Settings::dashboard_access`] says so: `dashboard.token`, else
//! `admin.token` unless `dashboard.public`.
//! At most `dashboard.max_feed_clients` feeds run at once (503 beyond), and
//! every feed ends when the server begins to shut down, so it never holds
//! up a graceful stop.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::json;

use super::node_board::NodeBoard;
use crate::config::{DashboardAccess, Settings};
use crate::observe::Stats;
use crate::services::Services;
use crate::shutdown::Shutdown;

const DASHBOARD_PAGE: &str = include_str!("../../static/dashboard.html");

/// Time between two events of the feed.
const FEED_PERIOD: Duration = Duration::from_secs(1);

/// The feed clients being served, shared by every worker, and (in a
/// cluster) the board of every node's figures they show.
#[derive(Debug, Default)]
pub(super) struct FeedClients {
    serving: AtomicUsize,
    board: Option<Arc<NodeBoard>>,
}

/// One feed client's place; given back when its stream is dropped.
struct FeedPlace(Arc<FeedClients>);

impl FeedClients {
    /// The feeds of a node alone (`board`: none) or of a cluster node.
    pub(super) fn new(board: Option<Arc<NodeBoard>>) -> Self {
        Self {
            serving: AtomicUsize::new(0),
            board,
        }
    }

    /// A place if fewer than `max` feeds run.
    fn take(self: &Arc<Self>, max: usize) -> Option<FeedPlace> {
        self.serving
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| FeedPlace(self.clone()))
    }
}

impl Drop for FeedPlace {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Mounts `/dashboard` and `/dashboard/feed`.
pub(super) fn routes(cfg: &mut web::ServiceConfig, feeds: &web::Data<FeedClients>) {
    cfg.app_data(feeds.clone())
        .route("/dashboard", web::get().to(page))
        .route("/dashboard/feed", web::get().to(feed));
}

/// Why a dashboard request is not served, if it is not.
fn refusal(req: &HttpRequest, settings: &Settings) -> Option<HttpResponse> {
    if !settings.dashboard.enabled {
        return Some(HttpResponse::NotFound().body("the dashboard is off (dashboard.enabled)\n"));
    }
    let (token, from) = match settings.dashboard_access() {
        DashboardAccess::Public | DashboardAccess::PublicForWantOfToken => return None,
        DashboardAccess::Token { token, from } => (token, from),
    };
    if offers_token(req, token) {
        return None;
    }
    Some(
        HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"sigway dashboard\"",
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(format!(
                "the dashboard needs a token ({from}): ?token=... or a bearer token\n"
            )),
    )
}

/// Logs, once at start, that the dashboard is public for want of a token
/// (an operator who set none may not know the page exists).
pub(super) fn log_access(settings: &Settings) {
    if settings.dashboard.enabled
        && settings.dashboard_access() == DashboardAccess::PublicForWantOfToken
    {
        tracing::info!(
            "the dashboard (/dashboard) is public: no dashboard.token or admin.token is set \
             (dashboard.public = true says it is meant to be)"
        );
    }
}

/// Whether the request carries `token`, as a bearer token or `?token=`.
fn offers_token(req: &HttpRequest, token: &str) -> bool {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|offered| same_secret(offered.trim(), token));
    bearer
        || serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .unwrap_or_default()
            .iter()
            .any(|(name, value)| name == "token" && same_secret(value, token))
}

/// Compares without stopping at the first differing byte, so the time
/// taken does not tell how much of a guess was right.
fn same_secret(offered: &str, token: &str) -> bool {
    offered.len() == token.len()
        && offered
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

async fn page(req: HttpRequest, services: web::Data<Services>) -> HttpResponse {
    if let Some(refused) = refusal(&req, &services.settings) {
        return refused;
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // The page loads nothing from elsewhere, and says so to the browser.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
        ))
        .body(DASHBOARD_PAGE)
}

/// What a feed stream carries between two events.
struct Feed {
    stats: Arc<Stats>,
    shutdown: Shutdown,
    ticks: tokio::time::Interval,
    node: Option<u32>,
    board: Option<Arc<NodeBoard>>,
    _place: FeedPlace,
}

async fn feed(
    req: HttpRequest,
    services: web::Data<Services>,
    feeds: web::Data<FeedClients>,
) -> HttpResponse {
    let settings = &services.settings.dashboard;
    if let Some(refused) = refusal(&req, &services.settings) {
        return refused;
    }
    let feeds = feeds.into_inner();
    let board = feeds.board.clone();
    let Some(place) = feeds.take(settings.max_feed_clients) else {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .body("too many dashboard feeds (dashboard.max_feed_clients)\n");
    };
    let mut ticks = tokio::time::interval(FEED_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Feed {
        stats: services.stats.clone(),
        shutdown: services.shutdown.clone(),
        ticks,
        // The node's real id (a random one when `cluster.node_id = 0`).
        node: board.as_ref().map(|board| board.node()),
        board,
        _place: place,
    };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        if state.shutdown.is_down() {
            return None;
        }
        tokio::select! {
            _ = state.shutdown.wait() => None,
            _ = state.ticks.tick() => {
                let event = event_text(&state.stats, state.node, state.board.as_deref());
                Some((Ok::<_, Infallible>(Bytes::from(event)), state))
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Proxies that buffer (nginx) would hold the events back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events)
}

/// One SSE event: the time, and every metric family as `/stats` lists
/// them; in a cluster, every node's entry and the cluster's totals too.
fn event_text(stats: &Stats, node: Option<u32>, board: Option<&NodeBoard>) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let metrics = stats.metrics_json();
    let mut body = json!({
        "t": millis,
        "node": node,
        "metrics": metrics,
    });
    if let Some(board) = board {
        let ready = stats.cluster_figures().is_some_and(|figures| figures.ready);
        let (nodes, cluster) = board.view(body["metrics"].clone(), ready);
        body["nodes"] = nodes;
        body["cluster"] = cluster;
    }
    format!("event: stats\ndata: {body}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn feed_places_are_bounded_and_given_back() {
        let feeds = Arc::new(FeedClients::default());
        let first = feeds.take(2).expect("first");
        let second = feeds.take(2).expect("second");
        assert!(feeds.take(2).is_none(), "third is over the limit");
        drop(first);
        assert!(feeds.take(2).is_some(), "a place came back");
        drop(second);
    }

    #[test]
    fn an_event_is_one_sse_data_line_of_json() {
        let stats = Stats::default();
        stats.received(5);
        let text = event_text(&stats, None, None);
        let data = text
            .strip_prefix("event: stats\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .expect("framing");
        assert!(!data.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(data).expect("json");
        assert_eq!(value["metrics"]["sigway_bytes_received_total"], 5);
        assert!(value.get("nodes").is_none(), "a node alone lists no nodes");
    }

    #[test]
    fn a_cluster_nodes_event_lists_the_nodes_and_their_totals() {
        let stats = Stats::default();
        stats.connection_opened();
        let board = NodeBoard::new(7);
        let text = event_text(&stats, Some(7), Some(&board));
        let data = text
            .strip_prefix("event: stats\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .expect("framing");
        let value: serde_json::Value = serde_json::from_str(data).expect("json");
        assert_eq!(value["nodes"][0]["node"], 7);
        assert_eq!(value["nodes"][0]["metrics"]["sigway_connections_open"], 1);
        assert_eq!(value["cluster"]["nodes"], 1);
        assert_eq!(value["cluster"]["connections"], 1);
    }
}

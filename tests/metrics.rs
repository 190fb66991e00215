//! The operator's metrics through real sockets: latency histograms after
//! joins and relays (sigver relays and videre broadcasts), closes by code, refusals by reason, build and process
//! figures, `/stats` carrying every `/metrics` family, the Grafana
//! dashboard naming only exposed metrics, and the dashboard's SSE feed
//! (parseable events whose numbers move, its client limit, its token, its
//! end on shutdown).

mod videre_support;

use videre_support::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Peer, WAIT, start, test_settings};
use futures_util::{SinkExt, StreamExt};
use sigway::app::BackgroundServer;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn get(server: &BackgroundServer, path: &str) -> reqwest::Response {
    timeout(WAIT, reqwest::get(server.http_url(path)))
        .await
        .expect("answer in time")
        .expect("http")
}

async fn metrics_text(server: &BackgroundServer) -> String {
    get(server, "/metrics").await.text().await.expect("body")
}

/// Samples of the text format: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Family names of the text format (from its `# TYPE` lines).
fn family_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn sample(text: &str, series: &str) -> f64 {
    samples(text).get(series).copied().unwrap_or(0.0)
}

/// Polls `/metrics` (bounded) until `series` reaches `at_least`.
async fn wait_for(server: &BackgroundServer, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics_text(server).await;
        if sample(&text, series) >= at_least {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A founds `/key`, B joins through A: B's `offer` reaches A and A's
/// answer reaches B. Returns B's signaling id as A sees it.
async fn pair(server: &BackgroundServer, key: &str) -> (Peer, Peer, u32) {
    let mut a = Peer::open(server, key).await;
    assert!(a.connect(1, &[]).await);
    let mut b = Peer::open(server, key).await;
    assert!(!b.connect(2, &[]).await, "a newcomer is bound first");
    b.content(0, 0, b"offer", false).await;
    let (sb, _, _) = a.recv_content().await;
    (a, b, sb)
}

#[tokio::test]
async fn histograms_move_after_joins_and_relays() {
    let server = start(test_settings());
    let before = metrics_text(&server).await;
    assert_eq!(
        sample(
            &before,
            "sigway_join_latency_seconds_count{protocol=\"sigver\"}"
        ),
        0.0
    );
    assert_eq!(sample(&before, SIGVER_RELAYS), 0.0);
    let (mut a, mut b, sb) = pair(&server, "/histograms").await;
    // Enough relays that every session's sampling (1 in 16) times some.
    for i in 0..40u32 {
        a.content(0, sb, format!("candidate-{i}").as_bytes(), false)
            .await;
        assert_eq!(
            b.recv_content().await.2,
            format!("candidate-{i}").as_bytes()
        );
    }
    let text = wait_for(&server, "sigway_queue_wait_seconds_count", 2.0).await;
    assert_eq!(
        sample(
            &text,
            "sigway_join_latency_seconds_count{protocol=\"sigver\"}"
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "sigway_joins_total{protocol=\"sigver\"}"),
        2.0
    );
    assert!(sample(&text, SIGVER_RELAYS) >= 2.0);
    assert!(
        sample(
            &text,
            "sigway_relay_latency_seconds_sum{protocol=\"sigver\"}"
        ) > 0.0
    );
    // Cumulative buckets: +Inf holds every sample, and no bucket holds
    // more than the next one.
    let inf = sample(
        &text,
        "sigway_relay_latency_seconds_bucket{protocol=\"sigver\",le=\"+Inf\"}",
    );
    assert_eq!(inf, sample(&text, SIGVER_RELAYS));
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("sigway_relay_latency_seconds_bucket{protocol=\"sigver\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert_eq!(buckets.len(), 18, "17 bounds and +Inf");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(
        sample(
            &text,
            "sigway_sessions_open{protocol=\"sigver\",transport=\"websocket\"}"
        ),
        2.0
    );
    // `/stats` reads the same histograms, with percentiles.
    let stats: serde_json::Value = get(&server, "/stats").await.json().await.expect("json");
    let relay = &stats["metrics"]["sigway_relay_latency_seconds"]["protocol=\"sigver\""];
    assert!(relay["count"].as_u64().is_some_and(|n| n >= 2), "{relay}");
    assert!(
        relay["p50_seconds"].as_f64().is_some_and(|p| p > 0.0),
        "{relay}"
    );
    a.leave().await;
    b.leave().await;
    server.stop();
}

/// A group's peers run on its worker thread, and new groups keep the two
/// workers of the test server even. actix hands connections to its
/// workers in turn, so when pairs open one after the other every member
/// lands on one worker and every joiner on the other: the joiners move to
/// their member's thread (the relay through a moved session still works),
/// and once the members' worker runs more than the slack (16) sessions
/// more, new groups open on the other. Following groups alone would put
/// all 80 sessions on one thread.
#[tokio::test]
async fn groups_are_placed_on_one_worker_each_and_the_workers_stay_even() {
    let server = start(test_settings());
    let before = metrics_text(&server).await;
    assert_eq!(sample(&before, "sigway_sessions_moved_total"), 0.0);
    let mut peers = Vec::new();
    for n in 0..40 {
        let (mut a, mut b, sb) = pair(&server, &format!("/placed-{n}")).await;
        a.content(0, sb, b"answer", false).await;
        assert_eq!(b.recv_content().await.2, b"answer");
        peers.push((a, b));
    }
    let text = metrics_text(&server).await;
    let moved = sample(&text, "sigway_sessions_moved_total");
    assert!(
        (1.0..=80.0).contains(&moved),
        "moved {moved} of 80 sessions"
    );
    let per_worker = [
        sample(&text, "sigway_worker_sessions{worker=\"0\"}"),
        sample(&text, "sigway_worker_sessions{worker=\"1\"}"),
    ];
    assert_eq!(per_worker[0] + per_worker[1], 80.0, "{per_worker:?}");
    assert!(
        (per_worker[0] - per_worker[1]).abs() <= 20.0,
        "workers uneven: {per_worker:?}"
    );
    for (a, b) in peers {
        a.leave().await;
        b.leave().await;
    }
    server.stop();
}

/// Sampled sigver relays, and sampled videre broadcasts.
const SIGVER_RELAYS: &str = "sigway_relay_latency_seconds_count{protocol=\"sigver\"}";
const VIDERE_RELAYS: &str = "sigway_relay_latency_seconds_count{protocol=\"videre\"}";

#[tokio::test]
async fn videre_broadcasts_move_the_relay_histogram() {
    use videre_support::{Client, Transport, connect, expect_packet, packet};
    let server = start(videre_support::settings());
    let mut a = Client::open(&server, Transport::RawWebsocket).await;
    let mut b = Client::open(&server, Transport::RawWebsocket).await;
    connect(&mut a, "u1", "timed").await;
    expect_packet(&mut a, "connect", "u1", "timed").await;
    connect(&mut b, "u2", "timed").await;
    for client in [&mut a, &mut b] {
        expect_packet(client, "connect", "u2", "timed").await;
    }
    assert_eq!(sample(&metrics_text(&server).await, VIDERE_RELAYS), 0.0);
    // One broadcast in 16 per session is timed, the first one included:
    // 33 from one session are 3 samples (the 1st, 17th and 33rd).
    for i in 0..33 {
        let candidate = packet("broadcast", "u1", "timed", serde_json::json!({ "n": i }));
        a.send_json(&candidate).await;
        for client in [&mut a, &mut b] {
            let got = expect_packet(client, "broadcast", "u1", "timed").await;
            assert_eq!(got["Payload"]["n"], i);
        }
    }
    let text = wait_for(&server, VIDERE_RELAYS, 3.0).await;
    assert_eq!(sample(&text, VIDERE_RELAYS), 3.0, "{text}");
    assert!(
        sample(
            &text,
            "sigway_relay_latency_seconds_sum{protocol=\"videre\"}"
        ) > 0.0
    );
    assert_eq!(
        sample(
            &text,
            "sigway_relay_latency_seconds_bucket{protocol=\"videre\",le=\"+Inf\"}"
        ),
        3.0
    );
    assert_eq!(sample(&text, SIGVER_RELAYS), 0.0, "no sigver relay here");
    // A ping is not a broadcast: not timed.
    a.send_json(&packet("ping", "u1", "timed", serde_json::json!("{}")))
        .await;
    expect_packet(&mut a, "ping", "u1", "timed").await;
    assert_eq!(sample(&metrics_text(&server).await, VIDERE_RELAYS), 3.0);
    let stats: serde_json::Value = get(&server, "/stats").await.json().await.expect("json");
    let relay = &stats["metrics"]["sigway_relay_latency_seconds"]["protocol=\"videre\""];
    assert_eq!(relay["count"], 3, "{relay}");
    a.close().await;
    b.close().await;
    server.stop();
}

#[tokio::test]
async fn closes_are_counted_by_code() {
    let server = start(test_settings());
    // An empty key: closed by the server with 4741.
    let mut keyless = Peer::open(&server, "/").await;
    assert_eq!(keyless.closed().await.0, 4741);
    // A client that says goodbye with 1000.
    let mut polite = Peer::open(&server, "/closes").await;
    assert!(polite.connect(1, &[]).await);
    polite
        .ws
        .send(Ws::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .expect("close");
    let _ = timeout(WAIT, async {
        while let Some(Ok(_)) = polite.ws.next().await {}
    })
    .await;
    let text = wait_for(
        &server,
        "sigway_closes_total{protocol=\"sigver\",code=\"1000\"}",
        1.0,
    )
    .await;
    assert_eq!(
        sample(
            &text,
            "sigway_closes_total{protocol=\"sigver\",code=\"4741\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sigway_sessions_open{protocol=\"sigver\",transport=\"websocket\"}"
        ),
        0.0
    );
    server.stop();
}

#[tokio::test]
async fn refusals_are_labelled_by_reason() {
    let mut settings = test_settings();
    settings.limits.max_connections = 1;
    let server = start(settings);
    let mut first = Peer::open(&server, "/refusals").await;
    assert!(first.connect(1, &[]).await);
    let mut second = Peer::open(&server, "/refusals").await;
    let (code, _) = second.closed().await;
    assert_eq!(code, 1013, "try again later");
    let text = wait_for(
        &server,
        "sigway_refusals_total{reason=\"connections\"}",
        1.0,
    )
    .await;
    assert_eq!(sample(&text, "sigway_refusals_total"), 1.0, "{text}");
    assert_eq!(
        sample(&text, "sigway_refusals_total{reason=\"rooms\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "sigway_closes_total{protocol=\"sigver\",code=\"1013\"}"
        ),
        1.0
    );
    first.leave().await;
    server.stop();
}

#[tokio::test]
async fn build_info_and_process_figures_are_exposed() {
    let server = start(test_settings());
    let text = metrics_text(&server).await;
    let info = text
        .lines()
        .find(|l| l.starts_with("sigway_build_info{"))
        .expect("build info");
    assert!(
        info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(info.contains("rustc=\""), "{info}");
    assert!(info.ends_with("} 1"), "{info}");
    if cfg!(target_os = "linux") {
        let rss = sample(&text, "process_resident_memory_bytes");
        assert!(rss > 1024.0 * 1024.0, "RSS {rss}");
        let fds = sample(&text, "process_open_fds");
        assert!(fds >= 3.0, "fds {fds}");
        assert!(text.contains("# TYPE process_open_fds gauge"));
    }
    server.stop();
}

#[tokio::test]
async fn stats_carries_every_metrics_family() {
    let server = start(test_settings());
    let (a, b, _) = pair(&server, "/stats-names").await;
    let text = metrics_text(&server).await;
    let stats: serde_json::Value = get(&server, "/stats").await.json().await.expect("json");
    let listed: BTreeSet<String> = stats["metrics"]
        .as_object()
        .expect("metrics object")
        .keys()
        .cloned()
        .collect();
    let exposed = family_names(&text);
    assert!(exposed.len() > 20, "{exposed:?}");
    let missing: Vec<_> = exposed.difference(&listed).collect();
    assert!(missing.is_empty(), "/stats lacks {missing:?}");
    let extra: Vec<_> = listed.difference(&exposed).collect();
    assert!(extra.is_empty(), "/metrics lacks {extra:?}");
    // The same figures, not just the same names.
    assert_eq!(
        stats["metrics"]["sigway_connections_total"].as_f64(),
        Some(sample(&text, "sigway_connections_total"))
    );
    assert_eq!(
        stats["metrics"]["sigway_rooms"]["protocol=\"sigver\""].as_f64(),
        Some(1.0)
    );
    a.leave().await;
    b.leave().await;
    server.stop();
}

/// Metric names a PromQL expression mentions (identifiers starting with
/// `sigway_` or `process_`), histogram suffixes removed.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (rest.starts_with("sigway_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.push(family.to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(expr) if key == "expr" => out.push(expr.clone()),
                    other => exprs(other, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| exprs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn grafana_dashboard_names_only_exposed_metrics() {
    let text = std::fs::read_to_string("config/grafana-sigway.json").expect("dashboard file");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(dashboard["title"].is_string());
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    assert!(found.len() >= 10, "{found:?}");
    let server = start(test_settings());
    let exposed = family_names(&metrics_text(&server).await);
    let mut named = 0;
    for expr in &found {
        let names = metric_names_in(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(exposed.contains(&name), "{expr}: {name} is not exposed");
            named += 1;
        }
    }
    assert!(named >= found.len());
    server.stop();
}

/// Reads a feed response's events (bounded): the JSON of each `data:` line.
struct Feed {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffered: String,
}

impl Feed {
    async fn open(server: &BackgroundServer, query: &str) -> reqwest::Response {
        get(server, &format!("/dashboard/feed{query}")).await
    }

    fn of(response: reqwest::Response) -> Self {
        Feed {
            body: Box::pin(response.bytes_stream()),
            buffered: String::new(),
        }
    }

    /// The next event, or `None` once the stream ended.
    async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(end) = self.buffered.find("\n\n") {
                let event: String = self.buffered.drain(..end + 2).collect();
                assert!(event.starts_with("event: stats\n"), "{event}");
                let data = event
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .expect("data line");
                return Some(serde_json::from_str(data).expect("event JSON"));
            }
            let chunk = timeout(Duration::from_secs(3), self.body.next())
                .await
                .expect("an event every second")?;
            self.buffered
                .push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
        }
    }
}

#[tokio::test]
async fn the_feed_sends_events_whose_numbers_move() {
    let server = start(test_settings());
    let response = Feed::open(&server, "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    let mut feed = Feed::of(response);
    let first = feed.next().await.expect("first event");
    assert_eq!(first["metrics"]["sigway_connections_total"], 0);
    let (a, b, _) = pair(&server, "/feed").await;
    let second = feed.next().await.expect("second event");
    assert!(second["t"].as_u64() > first["t"].as_u64());
    assert_eq!(second["metrics"]["sigway_connections_total"], 2);
    assert!(
        second["metrics"]["sigway_messages_sent_total"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{second}"
    );
    // Aggregates only: no key, peer or address appears.
    let text = second.to_string();
    assert!(
        !text.contains("/feed") && !text.contains("127.0.0.1"),
        "{text}"
    );
    a.leave().await;
    b.leave().await;
    // Shutdown ends the feed instead of holding the stop up.
    let stopping = tokio::task::spawn_blocking(move || server.stop());
    let ended = timeout(Duration::from_secs(5), async {
        while feed.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the feed ends on shutdown");
    timeout(WAIT, stopping)
        .await
        .expect("stopped")
        .expect("join");
}

#[tokio::test]
async fn feed_clients_are_bounded() {
    let mut settings = test_settings();
    settings.dashboard.max_feed_clients = 1;
    let server = start(settings);
    let first = Feed::open(&server, "").await;
    assert_eq!(first.status(), 200);
    let mut first = Feed::of(first);
    first.next().await.expect("event");
    let refused = Feed::open(&server, "").await;
    assert_eq!(refused.status(), 503);
    drop(first);
    // The server notices the gone client at its next write (a second).
    let deadline = Instant::now() + WAIT;
    loop {
        let again = Feed::open(&server, "").await;
        if again.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop();
}

#[tokio::test]
async fn the_dashboard_is_linked_and_can_need_a_token_or_be_off() {
    let server = start(test_settings());
    let landing = get(&server, "/").await.text().await.expect("landing");
    assert!(landing.contains("href=\"/dashboard\""));
    let page = get(&server, "/dashboard").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("page");
    assert!(html.contains("/dashboard/feed"));
    for outside in ["src=\"http", "href=\"http", "url(http", "@import", "//cdn"] {
        assert!(!html.contains(outside), "the page loads {outside}...");
    }
    server.stop();

    let mut settings = test_settings();
    settings.dashboard.token = "s3cret".into();
    let server = start(settings);
    assert_eq!(get(&server, "/dashboard").await.status(), 401);
    assert_eq!(get(&server, "/dashboard?token=wrong").await.status(), 401);
    assert_eq!(Feed::open(&server, "").await.status(), 401);
    assert_eq!(get(&server, "/dashboard?token=s3cret").await.status(), 200);
    let bearer = reqwest::Client::new()
        .get(server.http_url("/dashboard/feed"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("feed");
    assert_eq!(bearer.status(), 200);
    drop(bearer);
    server.stop();

    let mut settings = test_settings();
    settings.dashboard.enabled = false;
    let server = start(settings);
    assert_eq!(get(&server, "/dashboard").await.status(), 404);
    assert_eq!(Feed::open(&server, "").await.status(), 404);
    server.stop();
}

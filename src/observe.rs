//! Observability: logging set-up, counters, and the `/metrics`, `/healthz`
//! and `/stats` endpoints.
//!
//! Counters are plain atomics in one shared [`Stats`] so the hot paths pay a
//! relaxed add and nothing else; `/metrics` renders them in the Prometheus
//! text format. Logs go to the console and, when configured, to a rotating
//! file (videre-server's `log/debug.log`) with per-packet detail at debug.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::{HttpResponse, web};
use serde_json::json;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use sigway_sockjs::edge::EdgeRefusals;

use crate::config::LogSettings;

/// Counters shared by every session and room.
#[derive(Debug)]
pub(crate) struct Stats {
    started: Instant,
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub rooms_sigver: AtomicI64,
    pub rooms_legacy: AtomicI64,
    pub rooms_videre: AtomicI64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Refusals of the limits (connections, rooms, members, SockJS
    /// sessions per address).
    pub refusals: AtomicU64,
    /// Of `refusals`: SockJS sessions beyond `max_sockjs_sessions_per_ip`.
    pub refusals_sockjs_per_ip: AtomicU64,
    /// Refusals at the edge (origin, PROXY header), counted by the listener.
    pub edge_refusals: Arc<EdgeRefusals>,
    pub protocol_errors: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// Where the cluster's figures come from (cluster mode only).
    cluster: OnceLock<ClusterSource>,
}

/// Reads the cluster's figures when `/metrics` or `/stats` is asked.
pub(crate) struct ClusterSource(pub Box<dyn Fn() -> ClusterFigures + Send + Sync>);

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSource")
    }
}

/// A node's view of its cluster, for `/metrics` and `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ClusterFigures {
    /// This node's id.
    pub node: u32,
    /// Whether the node reaches the others (`/readyz`).
    pub ready: bool,
    /// Live nodes, this one included.
    pub nodes: u64,
    /// Rooms this node owns.
    pub rooms_owned: u64,
    /// Members of other nodes in rooms owned here.
    pub remote_members: u64,
    /// Sessions of this node in rooms owned elsewhere.
    pub members_away: u64,
    /// Messages sent to / received from other nodes.
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Envelopes published again (lost or unacknowledged).
    pub retransmits: u64,
    /// Links to another node that started over.
    pub link_resets: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            rooms_sigver: AtomicI64::new(0),
            rooms_legacy: AtomicI64::new(0),
            rooms_videre: AtomicI64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            refusals_sockjs_per_ip: AtomicU64::new(0),
            edge_refusals: Arc::default(),
            protocol_errors: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            cluster: OnceLock::new(),
        }
    }
}

impl Stats {
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    fn rooms_of(&self, kind: &str) -> Option<&AtomicI64> {
        match kind {
            "sigver" => Some(&self.rooms_sigver),
            "sigver-legacy" => Some(&self.rooms_legacy),
            "videre" => Some(&self.rooms_videre),
            _ => None,
        }
    }

    pub(crate) fn room_opened(&self, kind: &str) {
        if let Some(rooms) = self.rooms_of(kind) {
            rooms.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn room_closed(&self, kind: &str) {
        if let Some(rooms) = self.rooms_of(kind) {
            rooms.fetch_sub(1, Relaxed);
        }
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Cluster mode: where the cluster's figures come from (set once).
    pub(crate) fn set_cluster_source(&self, source: ClusterSource) {
        let _ = self.cluster.set(source);
    }

    fn cluster_figures(&self) -> Option<ClusterFigures> {
        self.cluster.get().map(|source| (source.0)())
    }

    /// The Prometheus text exposition of every counter.
    pub(crate) fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, i64)]| {
            let _ = writeln!(
                out,
                "# HELP sigway_{name} {help}\n# TYPE sigway_{name} {kind}"
            );
            for (labels, value) in samples {
                let _ = writeln!(out, "sigway_{name}{labels} {value}");
            }
        };
        let u = |a: &AtomicU64| a.load(Relaxed) as i64;
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            &[("", self.started.elapsed().as_secs() as i64)],
        );
        metric(
            "connections_open",
            "gauge",
            "Open connections and SockJS sessions.",
            &[("", self.connections_open.load(Relaxed))],
        );
        metric(
            "connections_total",
            "counter",
            "Connections accepted since start.",
            &[("", u(&self.connections_total))],
        );
        metric(
            "rooms",
            "gauge",
            "Live rooms by protocol.",
            &[
                ("{protocol=\"sigver\"}", self.rooms_sigver.load(Relaxed)),
                (
                    "{protocol=\"sigver-legacy\"}",
                    self.rooms_legacy.load(Relaxed),
                ),
                ("{protocol=\"videre\"}", self.rooms_videre.load(Relaxed)),
            ],
        );
        metric(
            "messages_received_total",
            "counter",
            "Messages received from clients.",
            &[("", u(&self.messages_in))],
        );
        metric(
            "messages_sent_total",
            "counter",
            "Messages queued to clients.",
            &[("", u(&self.messages_out))],
        );
        metric(
            "bytes_received_total",
            "counter",
            "Payload bytes received.",
            &[("", u(&self.bytes_in))],
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Payload bytes queued to clients.",
            &[("", u(&self.bytes_out))],
        );
        let by_reason = self.refusals_by_reason();
        let labelled: Vec<(String, i64)> = by_reason
            .iter()
            .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n as i64))
            .collect();
        let total = by_reason.iter().map(|(_, n)| n).sum::<u64>() as i64;
        let mut series: Vec<(&str, i64)> = vec![("", total)];
        series.extend(labelled.iter().map(|(labels, n)| (labels.as_str(), *n)));
        metric(
            "refusals_total",
            "counter",
            "Connections, requests or joins refused: unlabelled, all of them; by reason, each kind.",
            &series,
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Clients closed or answered with an error for bad input.",
            &[("", u(&self.protocol_errors))],
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Connections closed because they did not read.",
            &[("", u(&self.slow_consumers))],
        );
        if let Some(cluster) = self.cluster_figures() {
            let n = |v: u64| v as i64;
            let figures: [(&str, &str, &str, i64); 10] = [
                (
                    "cluster_ready",
                    "gauge",
                    "1 when this node reaches the others.",
                    i64::from(cluster.ready),
                ),
                (
                    "cluster_nodes",
                    "gauge",
                    "Live nodes, this one included.",
                    n(cluster.nodes),
                ),
                (
                    "cluster_rooms_owned",
                    "gauge",
                    "Rooms this node owns.",
                    n(cluster.rooms_owned),
                ),
                (
                    "cluster_remote_members",
                    "gauge",
                    "Members of other nodes in rooms owned here.",
                    n(cluster.remote_members),
                ),
                (
                    "cluster_members_away",
                    "gauge",
                    "Sessions of this node in rooms owned elsewhere.",
                    n(cluster.members_away),
                ),
                (
                    "cluster_messages_sent_total",
                    "counter",
                    "Messages sent to other nodes.",
                    n(cluster.messages_sent),
                ),
                (
                    "cluster_messages_received_total",
                    "counter",
                    "Messages received from other nodes.",
                    n(cluster.messages_received),
                ),
                (
                    "cluster_retransmits_total",
                    "counter",
                    "Envelopes published again.",
                    n(cluster.retransmits),
                ),
                (
                    "cluster_link_resets_total",
                    "counter",
                    "Links to another node that started over.",
                    n(cluster.link_resets),
                ),
                (
                    "cluster_node_info",
                    "gauge",
                    "This node's id, as a label.",
                    1,
                ),
            ];
            for (name, kind, help, value) in figures {
                let labels = if name == "cluster_node_info" {
                    format!("{{node=\"{}\"}}", cluster.node)
                } else {
                    String::new()
                };
                metric(name, kind, help, &[(labels.as_str(), value)]);
            }
        }
        out
    }

    /// Every refusal by reason; they add up to the total.
    fn refusals_by_reason(&self) -> [(&'static str, u64); 4] {
        let limits = self.refusals.load(Relaxed);
        let sockjs_per_ip = self.refusals_sockjs_per_ip.load(Relaxed);
        [
            ("limit", limits.saturating_sub(sockjs_per_ip)),
            ("sockjs_sessions_per_ip", sockjs_per_ip),
            ("origin", self.edge_refusals.origin.load(Relaxed)),
            (
                "proxy_header",
                self.edge_refusals.proxy_header.load(Relaxed),
            ),
        ]
    }

    pub(crate) fn snapshot_json(&self) -> serde_json::Value {
        let mut snapshot = json!({
            "uptime_seconds": self.started.elapsed().as_secs(),
            "connections_open": self.connections_open.load(Relaxed),
            "connections_total": self.connections_total.load(Relaxed),
            "rooms": {
                "sigver": self.rooms_sigver.load(Relaxed),
                "sigver_legacy": self.rooms_legacy.load(Relaxed),
                "videre": self.rooms_videre.load(Relaxed),
            },
            "messages_received": self.messages_in.load(Relaxed),
            "messages_sent": self.messages_out.load(Relaxed),
            "refusals": self.refusals_by_reason().iter().map(|(_, n)| n).sum::<u64>(),
            "refusals_by_reason": self.refusals_by_reason().into_iter().map(|(reason, n)| (reason.to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "protocol_errors": self.protocol_errors.load(Relaxed),
            "slow_consumers": self.slow_consumers.load(Relaxed),
        });
        if let Some(cluster) = self.cluster_figures() {
            snapshot["cluster"] = json!(cluster);
        }
        snapshot
    }
}

pub(crate) async fn metrics(stats: web::Data<Stats>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(stats.render_prometheus())
}

pub(crate) async fn stats(stats: web::Data<Stats>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(stats.snapshot_json())
}

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Installs the global tracing subscriber. Keep the returned guard alive for
/// as long as the file should be written. Calling it twice is harmless (the
/// second call keeps the first subscriber), which tests rely on.
pub fn init_logging(log: &LogSettings) -> Option<WorkerGuard> {
    let console_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let console = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_filter(console_filter);

    let (file_layer, guard) = match file_appender(log) {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let filter =
                EnvFilter::try_new(&log.file_level).unwrap_or_else(|_| EnvFilter::new("debug"));
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .json()
                .with_writer(writer)
                .with_filter(filter);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(file_layer)
        .try_init();
    guard
}

fn file_appender(log: &LogSettings) -> Option<tracing_appender::rolling::RollingFileAppender> {
    use tracing_appender::rolling::{Builder, Rotation};
    if log.file.is_empty() {
        return None;
    }
    let path = std::path::Path::new(&log.file);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name()?.to_string_lossy().into_owned();
    let rotation = match log.rotation.as_str() {
        "minutely" => Rotation::MINUTELY,
        "hourly" => Rotation::HOURLY,
        "never" => Rotation::NEVER,
        _ => Rotation::DAILY,
    };
    match Builder::new()
        .rotation(rotation)
        .filename_prefix(name)
        .max_log_files(log.max_files.max(1))
        .build(dir)
    {
        Ok(appender) => Some(appender),
        Err(err) => {
            eprintln!(
                "sigway: cannot open log file {}: {err}; logging to the console only",
                log.file
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_counter() {
        let stats = Stats::default();
        stats.connection_opened();
        stats.room_opened("videre");
        stats.received(10);
        let text = stats.render_prometheus();
        assert!(text.contains("sigway_connections_open 1\n"), "{text}");
        assert!(
            text.contains("sigway_rooms{protocol=\"videre\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("sigway_bytes_received_total 10\n"), "{text}");
        assert!(
            text.contains("# TYPE sigway_messages_sent_total counter"),
            "{text}"
        );
    }
}

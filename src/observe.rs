//! Observability: logging set-up, counters, and the `/metrics`, `/healthz`
//! and `/stats` endpoints.
//!
//! Counters are plain atomics in one shared [`Stats`] so the hot paths pay a
//! relaxed add and nothing else; `/metrics` renders them in the Prometheus
//! text format. Logs go to the console and, when configured, to a rotating
//! file (videre-server's `log/debug.log`) with per-packet detail at debug.
//! Every refusal is counted by [`Reason`] (`sigway_refusals_total{reason=...}`
//! beside the unlabelled total) and the last few are listed in `/stats`,
//! their room keys hashed unless `log.show_keys` ([`ListedKey`]).
//!
//! Latencies are lock-free histograms ([`histogram`]): join latency by
//! protocol; relay latency of one relayed event in [`RELAY_SAMPLE_EVERY`]
//! per session, by protocol (sigver: read to pushed to the target's
//! outbox; videre: a broadcast read to queued for every member); and, for
//! sigver, the outbox wait of those events (a clock read costs about as
//! much as the rest of a relay's bookkeeping, so it is sampled). Closes
//! are counted by protocol and code ([`closes`]), sessions by protocol and
//! SockJS transport; the process' RSS and open descriptors ([`process`])
//! are read at scrape time. `/metrics` and `/stats` render the same list
//! of families ([`Family`]), so `/stats` carries every metric `/metrics`
//! has (under `metrics`, by Prometheus name).

mod closes;
mod histogram;
mod process;

use closes::Closes;
pub(crate) use closes::Ended;
use histogram::{Histogram, HistogramReading};

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use actix_web::{HttpResponse, web};
use serde_json::json;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use sigway_sockjs::edge::EdgeRefusals;

use crate::config::LogSettings;
use crate::error::{RateLimit, Refusal, VidereError};
use sigway_core::auth::KeyRejection;
use sigway_core::redact::key_hash;

/// Why a connection, a join or a packet was refused: the `reason` label of
/// `sigway_refusals_total` and the key of `/stats`' `refusals_by_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `limits.max_connections`.
    Connections,
    /// `limits.max_connections_per_ip`.
    ConnectionsPerIp,
    /// `limits.max_sockjs_sessions_per_ip`.
    SockjsSessionsPerIp,
    /// `limits.max_rooms`.
    Rooms,
    /// `limits.max_members_per_room`.
    RoomFull,
    /// The room layer failed (internal error).
    Internal,
    /// Cluster mode: the other nodes cannot be reached.
    ClusterUnavailable,
    /// Cluster mode: the room moved; the client joins again.
    RoomMoved,
    /// `limits.connections_per_ip_per_sec`.
    RateConnections,
    /// `limits.messages_per_sec`.
    RateMessages,
    /// `limits.joins_per_key_per_sec`.
    RateJoins,
    /// `auth.key_secret`: not a signed key.
    AuthMalformed,
    /// `auth.key_secret`: a signature no accepted secret made.
    AuthSignature,
    /// `auth.key_secret`: a signed key past its expiry.
    AuthExpired,
    /// videre: a packet over `limits.max_frame_bytes`.
    TooLarge,
}

impl Reason {
    const ALL: [Reason; 15] = [
        Reason::Connections,
        Reason::ConnectionsPerIp,
        Reason::SockjsSessionsPerIp,
        Reason::Rooms,
        Reason::RoomFull,
        Reason::Internal,
        Reason::ClusterUnavailable,
        Reason::RoomMoved,
        Reason::RateConnections,
        Reason::RateMessages,
        Reason::RateJoins,
        Reason::AuthMalformed,
        Reason::AuthSignature,
        Reason::AuthExpired,
        Reason::TooLarge,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Connections => "connections",
            Reason::ConnectionsPerIp => "connections_per_ip",
            Reason::SockjsSessionsPerIp => "sockjs_sessions_per_ip",
            Reason::Rooms => "rooms",
            Reason::RoomFull => "room_full",
            Reason::Internal => "internal",
            Reason::ClusterUnavailable => "cluster_unavailable",
            Reason::RoomMoved => "room_moved",
            Reason::RateConnections => "rate_connections",
            Reason::RateMessages => "rate_messages",
            Reason::RateJoins => "rate_joins",
            Reason::AuthMalformed => "auth_malformed",
            Reason::AuthSignature => "auth_signature",
            Reason::AuthExpired => "auth_expired",
            Reason::TooLarge => "too_large",
        }
    }

    fn is_rate(self) -> bool {
        matches!(
            self,
            Reason::RateConnections | Reason::RateMessages | Reason::RateJoins
        )
    }

    /// Why `refusal` refused.
    pub(crate) fn of_refusal(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::TooManyConnections(_) => Reason::Connections,
            Refusal::TooManyFromAddress(_) => Reason::ConnectionsPerIp,
            Refusal::TooManySessionsFromAddress(_) => Reason::SockjsSessionsPerIp,
            Refusal::TooManyRooms(_) => Reason::Rooms,
            Refusal::RoomFull(_) => Reason::RoomFull,
            Refusal::Internal => Reason::Internal,
            Refusal::ClusterUnavailable => Reason::ClusterUnavailable,
            Refusal::RoomMoved => Reason::RoomMoved,
            Refusal::RateLimited(RateLimit::Connections) => Reason::RateConnections,
            Refusal::RateLimited(RateLimit::Messages) => Reason::RateMessages,
            Refusal::RateLimited(RateLimit::Joins) => Reason::RateJoins,
        }
    }

    /// Why a signed key was refused.
    pub(crate) fn of_key(rejection: KeyRejection) -> Self {
        match rejection {
            KeyRejection::Malformed => Reason::AuthMalformed,
            KeyRejection::BadSignature => Reason::AuthSignature,
            KeyRejection::Expired => Reason::AuthExpired,
        }
    }

    /// Why a videre packet was refused, when a limit or authorization
    /// refused it (`None`: the client sent bad input).
    pub(crate) fn of_videre(error: &VidereError) -> Option<Self> {
        match error {
            VidereError::Refused(refusal) => Some(Reason::of_refusal(refusal)),
            VidereError::KeyRefused(rejection) => Some(Reason::of_key(*rejection)),
            VidereError::TooLarge(_) => Some(Reason::TooLarge),
            _ => None,
        }
    }
}

/// A room key as `/stats` lists it: hashed unless `log.show_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListedKey {
    /// `key_hash`: the first 12 hex of the key's SHA-256.
    Hash(String),
    /// `key`: the key itself (`log.show_keys = true`).
    Plain(String),
}

impl ListedKey {
    pub(crate) fn of(key: &str, show: bool) -> Self {
        if show {
            ListedKey::Plain(key.to_owned())
        } else {
            ListedKey::Hash(key_hash(key))
        }
    }
}

/// Refusals `/stats` lists, newest last.
const RECENT_REFUSALS: usize = 32;

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
    pub refusals: AtomicU64,
    /// Refusals at the edge (origin, PROXY header), counted by the listener
    /// (they are not in `refusals`).
    pub edge_refusals: Arc<EdgeRefusals>,
    pub protocol_errors: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// Refusals by [`Reason`] (in `Reason::ALL`'s order); `refusals` is
    /// their sum.
    refusals_by_reason: [AtomicU64; Reason::ALL.len()],
    /// Rate-limit violations `limits.dry_run` let through, by [`Reason`].
    dry_run_by_reason: [AtomicU64; Reason::ALL.len()],
    /// The last refusals, with the room key when one was named.
    recent_refusals: Mutex<VecDeque<(Reason, Option<ListedKey>)>>,
    /// Where the cluster's figures come from (cluster mode only).
    cluster: OnceLock<ClusterSource>,
    /// The WebSocket sessions running outside the HTTP layer, for the
    /// count of those moved to their room's worker (set once the server
    /// listens).
    live_sessions: OnceLock<(
        Arc<sigway_sockjs::LiveSessions>,
        Arc<sigway_sockjs::Workers>,
    )>,
    /// Closes by protocol and code.
    closes: Closes,
    /// Upgrade (sigver) or `connect` packet (videre) to the room's answer,
    /// by protocol ([`closes::PROTOCOLS`]' order).
    join_latency: [Histogram; closes::PROTOCOLS.len()],
    /// Successful joins by protocol.
    joins: [AtomicU64; closes::PROTOCOLS.len()],
    /// sigver, sampled: a frame read from a peer to its relay pushed to
    /// the target's outbox.
    pub relay_latency: Histogram,
    /// videre, sampled: a broadcast read from a session to queued for
    /// every member of its room.
    pub videre_relay_latency: Histogram,
    /// sigver, sampled: a relayed frame pushed to the outbox to its write
    /// to the socket.
    pub queue_wait: Histogram,
    /// Open sessions by [`SESSION_KINDS`].
    sessions_open: [AtomicI64; SESSION_KINDS.len()],
}

/// One relayed event in this many per session carries a timestamp for the
/// relay and queue histograms (the first one of each session included, so
/// a short session is seen too).
pub(crate) const RELAY_SAMPLE_EVERY: u32 = 16;

/// `(protocol, transport)` of the `sigway_sessions_open` gauge; videre's
/// transports are the SockJS ones (`other` for anything else).
const SESSION_KINDS: [(&str, &str); 10] = [
    ("sigver", "websocket"),
    ("sigver-legacy", "websocket"),
    ("videre", "websocket"),
    ("videre", "websocket-raw"),
    ("videre", "xhr-streaming"),
    ("videre", "xhr-polling"),
    ("videre", "eventsource"),
    ("videre", "htmlfile"),
    ("videre", "jsonp-polling"),
    ("videre", "other"),
];

/// One metric family as `/metrics` renders it and `/stats` lists it.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    /// The full Prometheus name.
    pub name: String,
    pub kind: &'static str,
    pub help: &'static str,
    pub samples: Samples,
}

/// A family's samples: each with its labels (`key="value",...`, or empty).
#[derive(Debug, Clone)]
pub(crate) enum Samples {
    Values(Vec<(String, i64)>),
    Histograms(Vec<(String, HistogramReading)>),
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
    /// Failed writes or reads of the nodes' dashboard figures.
    pub board_failures: u64,
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
            edge_refusals: Arc::default(),
            protocol_errors: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            refusals_by_reason: Default::default(),
            dry_run_by_reason: Default::default(),
            recent_refusals: Mutex::new(VecDeque::with_capacity(RECENT_REFUSALS)),
            cluster: OnceLock::new(),
            live_sessions: OnceLock::new(),
            closes: Closes::default(),
            join_latency: Default::default(),
            joins: Default::default(),
            relay_latency: Histogram::default(),
            videre_relay_latency: Histogram::default(),
            queue_wait: Histogram::default(),
            sessions_open: Default::default(),
        }
    }
}

/// The slot of `(protocol, transport)` in [`SESSION_KINDS`]; an unknown
/// videre transport is `other` (sigver is always on a WebSocket).
fn session_kind(protocol: &str, transport: &str) -> usize {
    SESSION_KINDS
        .iter()
        .position(|(p, t)| *p == protocol && (*t == transport || p.starts_with("sigver")))
        .unwrap_or(SESSION_KINDS.len() - 1)
}

fn borrowed(samples: &[(String, i64)]) -> Vec<(&str, i64)> {
    samples.iter().map(|(l, v)| (l.as_str(), *v)).collect()
}

/// A label value with `\\`, `"` and newlines escaped, as the text format
/// wants.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

    /// A session of `protocol` (a room kind) on `transport` opened.
    pub(crate) fn session_opened(&self, protocol: &str, transport: &str) {
        self.sessions_open[session_kind(protocol, transport)].fetch_add(1, Relaxed);
    }

    /// The session [`Stats::session_opened`] counted ended.
    pub(crate) fn session_closed(&self, protocol: &str, transport: &str) {
        self.sessions_open[session_kind(protocol, transport)].fetch_sub(1, Relaxed);
    }

    /// A session of `protocol` joined its room `elapsed` after it opened
    /// (sigver) or sent `connect` (videre).
    pub(crate) fn joined(&self, protocol: &str, elapsed: std::time::Duration) {
        if let Some(i) = closes::PROTOCOLS.iter().position(|p| *p == protocol) {
            self.joins[i].fetch_add(1, Relaxed);
            self.join_latency[i].record(elapsed);
        }
    }

    /// A session of `protocol` ended as `ended` says.
    pub(crate) fn closed(&self, protocol: &str, ended: Ended) {
        self.closes.count(protocol, ended);
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    fn index(reason: Reason) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default()
    }

    /// Counts a refusal (in the total and under its reason) and lists it
    /// with the room `key` it named, as `/stats` may show it.
    pub(crate) fn refused(&self, reason: Reason, key: Option<ListedKey>) {
        self.refusals.fetch_add(1, Relaxed);
        self.refusals_by_reason[Self::index(reason)].fetch_add(1, Relaxed);
        let mut recent = self
            .recent_refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() == RECENT_REFUSALS {
            recent.pop_front();
        }
        recent.push_back((reason, key));
    }

    /// Counts a rate-limit violation that `limits.dry_run` let through.
    pub(crate) fn would_refuse(&self, reason: Reason) {
        self.dry_run_by_reason[Self::index(reason)].fetch_add(1, Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn refusals_for(&self, reason: Reason) -> u64 {
        self.refusals_by_reason[Self::index(reason)].load(Relaxed)
    }

    /// The server's WebSocket sessions and worker threads, for the count
    /// of moved sessions and of sessions per worker.
    pub(crate) fn set_live_sessions(
        &self,
        sessions: Arc<sigway_sockjs::LiveSessions>,
        workers: Arc<sigway_sockjs::Workers>,
    ) {
        let _ = self.live_sessions.set((sessions, workers));
    }

    /// Cluster mode: where the cluster's figures come from (set once).
    pub(crate) fn set_cluster_source(&self, source: ClusterSource) {
        let _ = self.cluster.set(source);
    }

    /// The cluster's figures now (cluster mode only).
    pub(crate) fn cluster_figures(&self) -> Option<ClusterFigures> {
        self.cluster.get().map(|source| (source.0)())
    }

    /// The Prometheus text exposition of every family.
    pub(crate) fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(8192);
        for family in self.families() {
            let Family {
                name,
                kind,
                help,
                samples,
            } = &family;
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            match samples {
                Samples::Values(values) => {
                    for (labels, value) in values {
                        if labels.is_empty() {
                            let _ = writeln!(out, "{name} {value}");
                        } else {
                            let _ = writeln!(out, "{name}{{{labels}}} {value}");
                        }
                    }
                }
                Samples::Histograms(histograms) => {
                    for (labels, reading) in histograms {
                        reading.render(&mut out, name, labels);
                    }
                }
            }
        }
        out
    }

    /// Every metric family, read now: what `/metrics` renders and `/stats`
    /// lists under `metrics`.
    pub(crate) fn families(&self) -> Vec<Family> {
        let mut families = Vec::with_capacity(40);
        let mut metric =
            |name: &str, kind: &'static str, help: &'static str, samples: &[(&str, i64)]| {
                let samples = samples
                    .iter()
                    .map(|(labels, value)| {
                        let bare = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
                        (bare.unwrap_or(labels).to_owned(), *value)
                    })
                    .collect();
                families.push(Family {
                    name: format!("sigway_{name}"),
                    kind,
                    help,
                    samples: Samples::Values(samples),
                });
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
            "sessions_moved_total",
            "counter",
            "WebSocket sessions moved after their handshake to the worker thread of their room.",
            &[(
                "",
                self.live_sessions
                    .get()
                    .map_or(0, |(l, _)| l.moved() as i64),
            )],
        );
        let per_worker: Vec<(String, i64)> = self
            .live_sessions
            .get()
            .map(|(_, workers)| workers.sessions_per_worker())
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(worker, sessions)| (format!("{{worker=\"{worker}\"}}"), sessions as i64))
            .collect();
        let per_worker: Vec<(&str, i64)> =
            per_worker.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "worker_sessions",
            "gauge",
            "WebSocket sessions running on each HTTP worker thread.",
            &per_worker,
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
        // The unlabelled sample is the total of the labelled ones.
        let mut refusals = vec![(String::new(), self.refusals_total() as i64)];
        let mut dry_run = Vec::new();
        for (i, reason) in Reason::ALL.iter().enumerate() {
            let labels = format!("{{reason=\"{}\"}}", reason.label());
            refusals.push((labels.clone(), u(&self.refusals_by_reason[i])));
            if reason.is_rate() {
                dry_run.push((labels, u(&self.dry_run_by_reason[i])));
            }
        }
        for (reason, counted) in self.edge_refusals_by_reason() {
            refusals.push((format!("{{reason=\"{reason}\"}}"), counted as i64));
        }
        metric(
            "refusals_total",
            "counter",
            "Connections, joins and packets refused by a limit or by room authorization (unlabelled: all reasons).",
            &borrowed(&refusals),
        );
        metric(
            "rate_limit_dry_run_total",
            "counter",
            "Rate-limit violations let through because limits.dry_run is set.",
            &borrowed(&dry_run),
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
            let figures: [(&str, &str, &str, i64); 11] = [
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
                    "cluster_board_failures_total",
                    "counter",
                    "Failed writes or reads of the nodes' dashboard figures.",
                    n(cluster.board_failures),
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
        self.cockpit_families(&mut metric);
        self.histogram_families(&mut families);
        self.process_families(&mut families);
        families
    }

    /// Sessions by protocol and transport, joins, closes by code, build
    /// information.
    fn cockpit_families(
        &self,
        metric: &mut impl FnMut(&str, &'static str, &'static str, &[(&str, i64)]),
    ) {
        let sessions: Vec<(String, i64)> = SESSION_KINDS
            .iter()
            .zip(&self.sessions_open)
            .map(|((protocol, transport), open)| {
                (
                    format!("{{protocol=\"{protocol}\",transport=\"{transport}\"}}"),
                    open.load(Relaxed),
                )
            })
            .collect();
        metric(
            "sessions_open",
            "gauge",
            "Joined sigver connections and open videre (SockJS) sessions, by protocol and transport.",
            &borrowed(&sessions),
        );
        let joins: Vec<(String, i64)> = closes::PROTOCOLS
            .iter()
            .zip(&self.joins)
            .map(|(protocol, joins)| {
                (
                    format!("{{protocol=\"{protocol}\"}}"),
                    joins.load(Relaxed) as i64,
                )
            })
            .collect();
        metric(
            "joins_total",
            "counter",
            "Rooms joined, by protocol.",
            &borrowed(&joins),
        );
        let closes: Vec<(String, i64)> = self
            .closes
            .samples()
            .into_iter()
            .map(|(protocol, code, count)| {
                (
                    format!("{{protocol=\"{protocol}\",code=\"{code}\"}}"),
                    count as i64,
                )
            })
            .collect();
        metric(
            "closes_total",
            "counter",
            "Sessions ended, by protocol and close code (none: ended without one; other: a code not listed).",
            &borrowed(&closes),
        );
        let mut info = format!("{{version=\"{}\"", env!("CARGO_PKG_VERSION"));
        if let Some(sha) = option_env!("BUILD_GIT_SHA").filter(|s| !s.is_empty()) {
            let _ = write!(info, ",git_sha=\"{}\"", label_value(sha));
        }
        if let Some(rustc) = option_env!("BUILD_RUSTC_VERSION").filter(|s| !s.is_empty()) {
            let _ = write!(info, ",rustc=\"{}\"", label_value(rustc));
        }
        info.push('}');
        metric(
            "build_info",
            "gauge",
            "Always 1; the labels say which build runs.",
            &[(info.as_str(), 1)],
        );
    }

    fn histogram_families(&self, families: &mut Vec<Family>) {
        let joins = closes::PROTOCOLS
            .iter()
            .zip(&self.join_latency)
            .map(|(protocol, histogram)| (format!("protocol=\"{protocol}\""), histogram.read()))
            .collect();
        families.push(Family {
            name: "sigway_join_latency_seconds".into(),
            kind: "histogram",
            help: "From the upgrade (sigver) or the connect packet (videre) to the room's answer.",
            samples: Samples::Histograms(joins),
        });
        families.push(Family {
            name: "sigway_relay_latency_seconds".into(),
            kind: "histogram",
            help: "One relayed event in 16 per session, by protocol: sigver, read from the peer to pushed to the target's outbox; videre, a broadcast read to queued for every member.",
            samples: Samples::Histograms(vec![
                ("protocol=\"sigver\"".into(), self.relay_latency.read()),
                (
                    "protocol=\"videre\"".into(),
                    self.videre_relay_latency.read(),
                ),
            ]),
        });
        families.push(Family {
            name: "sigway_queue_wait_seconds".into(),
            kind: "histogram",
            help: "sigver, one relayed event in 16 per session: pushed to the outbox to written to the socket.",
            samples: Samples::Histograms(vec![(String::new(), self.queue_wait.read())]),
        });
    }

    /// The process' RSS and descriptors, where the system tells them.
    fn process_families(&self, families: &mut Vec<Family>) {
        let gauge = |name: &str, help: &'static str, value: Option<u64>| {
            value.map(|value| Family {
                name: name.into(),
                kind: "gauge",
                help,
                samples: Samples::Values(vec![(String::new(), value as i64)]),
            })
        };
        families.extend(gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            process::resident_memory_bytes(),
        ));
        families.extend(gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            process::open_fds(),
        ));
    }

    /// Every family as JSON (see [`Stats::families_json`]): `/stats`'
    /// `metrics` and the dashboard feed's.
    pub(crate) fn metrics_json(&self) -> serde_json::Value {
        Self::families_json(&self.families())
    }

    /// The families as JSON, by name: a single unlabelled sample as its
    /// value, labelled ones as `{labels: value}`, a histogram as its
    /// count, sum and percentiles.
    fn families_json(families: &[Family]) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for family in families {
            let value = match &family.samples {
                Samples::Values(values) => match values.as_slice() {
                    [(labels, value)] if labels.is_empty() => json!(value),
                    _ => values
                        .iter()
                        .map(|(labels, value)| (labels.clone(), json!(value)))
                        .collect::<serde_json::Map<_, _>>()
                        .into(),
                },
                Samples::Histograms(histograms) => match histograms.as_slice() {
                    [(labels, reading)] if labels.is_empty() => reading.summary_json(),
                    _ => histograms
                        .iter()
                        .map(|(labels, reading)| (labels.clone(), reading.summary_json()))
                        .collect::<serde_json::Map<_, _>>()
                        .into(),
                },
            };
            map.insert(family.name.clone(), value);
        }
        map.into()
    }

    /// Refusals the listener counted (origin, PROXY header), by reason.
    fn edge_refusals_by_reason(&self) -> [(&'static str, u64); 2] {
        [
            ("origin", self.edge_refusals.origin.load(Relaxed)),
            (
                "proxy_header",
                self.edge_refusals.proxy_header.load(Relaxed),
            ),
        ]
    }

    /// Every refusal: the room layer's and the listener's.
    fn refusals_total(&self) -> u64 {
        self.refusals.load(Relaxed)
            + self
                .edge_refusals_by_reason()
                .iter()
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    fn by_reason(
        &self,
        counters: &[AtomicU64; Reason::ALL.len()],
        listed: impl Fn(Reason) -> bool,
    ) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (reason, counter) in Reason::ALL.iter().zip(counters) {
            if listed(*reason) {
                map.insert(reason.label().into(), counter.load(Relaxed).into());
            }
        }
        map.into()
    }

    fn recent_refusals_json(&self) -> serde_json::Value {
        let recent = self
            .recent_refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        recent
            .iter()
            .map(|(reason, key)| {
                let mut entry = json!({ "reason": reason.label() });
                match key {
                    Some(ListedKey::Hash(hash)) => entry["key_hash"] = hash.as_str().into(),
                    Some(ListedKey::Plain(key)) => entry["key"] = key.as_str().into(),
                    None => {}
                }
                entry
            })
            .collect()
    }

    pub(crate) fn snapshot_json(&self) -> serde_json::Value {
        let mut refusals_by_reason = self.by_reason(&self.refusals_by_reason, |_| true);
        for (reason, counted) in self.edge_refusals_by_reason() {
            refusals_by_reason[reason] = counted.into();
        }
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
            "refusals": self.refusals_total(),
            "protocol_errors": self.protocol_errors.load(Relaxed),
            "slow_consumers": self.slow_consumers.load(Relaxed),
            "refusals_by_reason": refusals_by_reason,
            "rate_limit_dry_run": self.by_reason(&self.dry_run_by_reason, Reason::is_rate),
            "recent_refusals": self.recent_refusals_json(),
        });
        if let Some(cluster) = self.cluster_figures() {
            snapshot["cluster"] = json!(cluster);
        }
        snapshot["metrics"] = self.metrics_json();
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
    // tracing-appender lists the folder for old files to prune before it
    // creates it, and prints an alarming "Error reading the log
    // directory" on a first start in an empty folder; a failure here is
    // reported by `build` below.
    let _ = std::fs::create_dir_all(dir);
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

    #[test]
    fn refusals_are_counted_by_reason_and_listed_with_hashed_keys() {
        let stats = Stats::default();
        stats.refused(Reason::RateJoins, Some(ListedKey::of("secret-room", false)));
        stats.refused(Reason::AuthExpired, Some(ListedKey::of("shown", true)));
        stats.refused(Reason::Connections, None);
        stats.would_refuse(Reason::RateMessages);
        let text = stats.render_prometheus();
        assert!(text.contains("sigway_refusals_total 3\n"), "{text}");
        assert!(
            text.contains("sigway_refusals_total{reason=\"rate_joins\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("sigway_rate_limit_dry_run_total{reason=\"rate_messages\"} 1\n"),
            "{text}"
        );
        let json = stats.snapshot_json();
        assert_eq!(json["refusals_by_reason"]["auth_expired"], 1);
        assert_eq!(json["rate_limit_dry_run"]["rate_messages"], 1);
        let recent = json["recent_refusals"].to_string();
        assert!(!recent.contains("secret-room"), "{recent}");
        assert!(recent.contains(&key_hash("secret-room")), "{recent}");
        assert_eq!(json["recent_refusals"][1]["key"], "shown");
        for _ in 0..100 {
            stats.refused(Reason::Rooms, None);
        }
        assert_eq!(
            json_len(&stats.snapshot_json()["recent_refusals"]),
            RECENT_REFUSALS
        );
        assert_eq!(stats.refusals_for(Reason::Rooms), 100);
    }

    fn json_len(value: &serde_json::Value) -> usize {
        value.as_array().map_or(0, Vec::len)
    }
}

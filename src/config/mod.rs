//! Settings of the gateway and how they are layered.
//!
//! Built-in defaults < one settings file (sigway TOML, or videre-server's
//! `conf.json` with `Port`/`TLS`/`Cert`/`Key`) < environment (`SIGWAY_…`,
//! nested keys joined with `__`) < command-line flags. `config/default.toml`
//! documents every key with its default. This file is the settings'
//! reference (one doc comment per key); [`load`] reads the layers, and
//! [`Settings::validate`] is the single gate that turns a bad combination
//! into one clear start-up error.

mod dashboard;
mod load;
mod turn;

pub use dashboard::DashboardAccess;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything sigway can be told. Field names are the TOML keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to bind to (sigver's `-h/--host`).
    pub host: String,
    /// Port to listen on (sigver's `-p/--port`, videre's `Port`).
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Listen backlog (pending connections the kernel queues).
    pub backlog: u32,
    /// Seconds granted to open connections on shutdown before they are dropped.
    pub shutdown_timeout_secs: u64,
    /// Seconds a drain (SIGTERM, `POST /admin/drain`) keeps open sessions
    /// up while refusing new ones; 0: close them with 1001 at once.
    pub drain_timeout_secs: u64,
    /// TLS files and switch.
    pub tls: TlsSettings,
    /// The HTTP edge: allowed origins, proxies, header timeouts.
    pub http: HttpSettings,
    /// Every bound the gateway enforces.
    pub limits: Limits,
    /// The sigver (Netflux) endpoint.
    pub sigver: SigverSettings,
    /// The SockJS endpoint videre uses.
    pub sockjs: SockjsSettings,
    /// videre packet handling.
    pub videre: VidereSettings,
    /// Console and file logging.
    pub log: LogSettings,
    /// Several nodes as one deployment, through Redis (off by default).
    pub cluster: ClusterSettings,
    /// Room authorization by signed keys (off by default).
    pub auth: AuthSettings,
    /// TURN REST credentials at `GET /turn` (off by default).
    pub turn: TurnSettings,
    /// The admin API (off by default).
    pub admin: AdminSettings,
    /// The live dashboard at `/dashboard` and its feed.
    pub dashboard: DashboardSettings,
}

/// `[admin]`: the admin API (README "Admin API"): on its own listener,
/// and/or under `/admin/` on the public port behind a bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// `IP:port` of the admin listener (e.g. `127.0.0.1:9000`); empty: none.
    pub listen: String,
    /// Bearer token the admin API asks for; with it set the API is also
    /// served under `/admin/` on the public port. Empty: no token (the
    /// admin listener is then open to whoever reaches it).
    pub token: Secret,
}

/// `[dashboard]`: the live dashboard page and its SSE feed (aggregates only,
/// never per-peer data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    /// Serve `/dashboard` and `/dashboard/feed` (404 when off).
    pub enabled: bool,
    /// When set, both need it: `Authorization: Bearer <token>` or
    /// `?token=<token>` (the page passes its own `?token=` to the feed).
    /// Empty: they want `admin.token` when that is set (unless `public`),
    /// and are public when no token is set at all.
    pub token: Secret,
    /// `true`: public even when `admin.token` is set (with no
    /// `dashboard.token`; both set is refused at start).
    pub public: bool,
    /// Feed clients served at once; more are answered 503.
    pub max_feed_clients: usize,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            token: Secret::default(),
            public: false,
            max_feed_clients: 16,
        }
    }
}

/// `[tls]`: certificate files and whether to serve https/wss.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// `true`: serve https/wss (cert and key required); `false`: plain even if
    /// files are named; unset: TLS exactly when a cert or key is given.
    pub enabled: Option<bool>,
    /// PEM certificate (chain) file (sigver's `-c/--cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key file (sigver's `-k/--key`).
    pub key: Option<PathBuf>,
    /// PEM file of intermediate certificates sent after the cert (`-a/--ca`).
    pub ca: Option<PathBuf>,
}

/// `[http]`: what is decided about a request before either protocol sees
/// it: which browser origins may connect, who the client is behind
/// proxies, how long a client may take to send its request head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Origins allowed to open WebSockets and use SockJS: exact
    /// (`https://app.example.org`), subdomain patterns
    /// (`https://*.example.org`) or `null`; empty: any origin.
    pub allowed_origins: Vec<String>,
    /// Whether a request without `Origin` (not a browser) is served.
    pub allow_missing_origin: bool,
    /// Reverse proxies (CIDRs, v4 and v6) whose client address header is
    /// believed; empty: nobody's.
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies name the client in: `x-forwarded-for`,
    /// `forwarded` (RFC 7239) or `x-real-ip`.
    pub client_ip_header: String,
    /// Every connection starts with a PROXY protocol (v1 or v2) header
    /// from a TCP load balancer (plain listeners only).
    pub proxy_protocol: bool,
    /// Milliseconds a client has to send its request head (WebSocket
    /// handshakes included) and, with `proxy_protocol`, its PROXY header.
    pub client_request_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_missing_origin: true,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            proxy_protocol: false,
            client_request_timeout_ms: 5_000,
        }
    }
}

/// `[limits]`: every bound the gateway enforces; each refusal is a clear close code, status or error notice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket frame / SockJS request body accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Open connections (WebSocket and SockJS sessions) over all clients.
    pub max_connections: usize,
    /// Open connections from one client IP address.
    pub max_connections_per_ip: usize,
    /// Live rooms: sigver keys plus videre rooms.
    pub max_rooms: usize,
    /// Members of one sigver group / users of one videre room.
    pub max_members_per_room: usize,
    /// Longest videre UserId or RoomId, in bytes (sigver keys: 512 chars).
    pub max_id_bytes: usize,
    /// Frames waiting to be written to one connection; a connection that lets
    /// more pile up (it does not read) is closed.
    pub outbound_queue: usize,
    /// Bytes of frames waiting to be written to one connection (a single
    /// frame always fits); past them the connection is closed as when
    /// `outbound_queue` is reached.
    pub outbound_queue_bytes: usize,
    /// Open SockJS sessions (every transport) from one client address.
    pub max_sockjs_sessions_per_ip: usize,
    /// New connections (WebSockets and SockJS sessions) one client address
    /// may open per second, on average; 0: no limit.
    pub connections_per_ip_per_sec: f64,
    /// Connections one address may open at once above that rate.
    pub connection_burst: u32,
    /// Messages (sigver frames, videre packets) one connection may send
    /// per second, on average; 0: no limit.
    pub messages_per_sec: f64,
    /// Messages one connection may send at once above that rate.
    pub message_burst: u32,
    /// Joins of one sigver key or videre room per second, on average; 0: no
    /// limit.
    pub joins_per_key_per_sec: f64,
    /// Joins of one key at once above that rate.
    pub join_burst: u32,
    /// Rate limits count and log what they would refuse, and refuse nothing.
    pub dry_run: bool,
}

/// `[auth]`: opt-in room authorization by signed keys (README "Room
/// authorization"): with a secret set, sigver keys and videre RoomIds must
/// be `<room>.<expiry>.<signature>` signed with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The secret keys are signed with (HMAC-SHA256); empty: any key is
    /// accepted, as without sigway.
    pub key_secret: Secret,
    /// The secret before the last rotation, still accepted until
    /// `previous_until`.
    pub previous_key_secret: Secret,
    /// Unix second from which `previous_key_secret` is refused.
    pub previous_until: u64,
    /// videre: the signature covers the UserId as well
    /// (`<room>.<expiry>` + `.` + base64url(UserId) is what is signed).
    pub bind_videre_user: bool,
}

impl AuthSettings {
    /// Whether keys must be signed.
    pub fn enabled(&self) -> bool {
        !self.key_secret.is_empty()
    }
}

/// A secret setting: read like a string, never shown by `Debug` (so a
/// logged or printed `Settings` does not carry it).
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

pub use sigway_core::error::SigverDialect;

/// `[sigver]`: the Netflux endpoint (heartbeat timing, default dialect).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SigverSettings {
    /// Milliseconds between two heartbeats sent to a peer.
    pub heartbeat_interval_ms: u64,
    /// A peer that misses this many heartbeats in a row is closed (4742).
    pub heartbeat_max_missed: u32,
    /// Dialect of connections without a `?protocol=` query flag.
    pub protocol: SigverDialect,
}

/// `[sockjs]`: the SockJS endpoint videre-client talks to (sockjs-node's defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SockjsSettings {
    /// URL prefix of the SockJS endpoint (videre clients use `/echo`).
    pub prefix: String,
    /// Milliseconds between heartbeat frames (`h`) on open sessions.
    pub heartbeat_ms: u64,
    /// A session with no receiver attached for this long is closed.
    pub disconnect_delay_ms: u64,
    /// Bytes a streaming response may carry before the client must reopen it.
    pub response_limit: usize,
    /// Script the iframe page loads.
    pub client_url: String,
    /// Set the `JSESSIONID` cookie (for sticky load balancers).
    pub jsessionid: bool,
    /// Offer the WebSocket transports.
    pub websocket: bool,
}

/// `[videre]`: videre packet handling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VidereSettings {
    /// Accept `broadcast`/`ping` only for a room the session joined, under the
    /// UserId it joined with (videre-server accepted anything).
    pub strict: bool,
}

/// `[log]`: console and file logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Filter for the console (tracing `EnvFilter` syntax); `RUST_LOG` wins.
    pub level: String,
    /// Log file (videre-server wrote `log/debug.log`); empty: no file.
    pub file: String,
    /// Filter for the file.
    pub file_level: String,
    /// Rotation of the file: `minutely`, `hourly`, `daily` or `never`.
    pub rotation: String,
    /// Rotated files kept.
    pub max_files: usize,
    /// Show sigver keys and videre RoomIds as they are in logs and `/stats`
    /// (they let anyone into the room); `false`: as `key_hash:<12 hex of
    /// their SHA-256>`.
    pub show_keys: bool,
}

/// `[cluster]`: run as one node of several that share rooms through Redis
/// (README "Running a cluster"). Off while `redis_url` is empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Redis to meet the other nodes through: `redis://host:port[/db]`;
    /// empty: this node runs alone, exactly as without cluster mode.
    pub redis_url: String,
    /// Prefix of every Redis key and channel name.
    pub prefix: String,
    /// This node's number in the deployment (1..=4294967295); 0: a random
    /// one at each start.
    pub node_id: u32,
    /// Milliseconds between two heartbeats of this node.
    pub heartbeat_ms: u64,
    /// A node not heard for this many milliseconds is dead: its peers
    /// leave their rooms and its rooms move.
    pub dead_after_ms: u64,
    /// Milliseconds an empty room stays claimed by its node before the
    /// directory entry is released (a member on its way keeps it).
    pub release_after_ms: u64,
    /// After an outage of this node's own (its Redis subscription was made
    /// again, or its heartbeats stopped coming back), every other node gets
    /// `dead_after_ms` plus this many milliseconds to be heard again: nodes
    /// reconnect on their own backoff, some later than others.
    pub recovery_grace_ms: u64,
    /// Bytes of what rooms send to one other node that may wait for this
    /// node's bus. Past it, the link to that node starts over and the
    /// members whose traffic crossed it get 1012; a member's own frames
    /// wait instead (its session reads no more of its client until the bus
    /// took them) and are not counted.
    pub send_queue_bytes: usize,
    /// `true`: serve nothing until Redis answers (retrying forever);
    /// `false`: if Redis does not answer at start, serve as a node alone
    /// until restarted (and say so in the log).
    pub require: bool,
}

impl ClusterSettings {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.redis_url.trim().is_empty()
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            prefix: "sw".into(),
            node_id: 0,
            heartbeat_ms: 1_000,
            dead_after_ms: 3_000,
            release_after_ms: 2_000,
            recovery_grace_ms: 2_000,
            send_queue_bytes: 16 * 1024 * 1024,
            require: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8000,
            workers: 0,
            backlog: 4096,
            shutdown_timeout_secs: 5,
            drain_timeout_secs: 0,
            tls: TlsSettings::default(),
            http: HttpSettings::default(),
            limits: Limits::default(),
            sigver: SigverSettings::default(),
            sockjs: SockjsSettings::default(),
            videre: VidereSettings::default(),
            log: LogSettings::default(),
            cluster: ClusterSettings::default(),
            auth: AuthSettings::default(),
            turn: TurnSettings::default(),
            admin: AdminSettings::default(),
            dashboard: DashboardSettings::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1024 * 1024,
            max_connections: 100_000,
            max_connections_per_ip: 10_000,
            max_rooms: 100_000,
            max_members_per_room: 1_000,
            max_id_bytes: 512,
            outbound_queue: 1_024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            max_sockjs_sessions_per_ip: 10_000,
            connections_per_ip_per_sec: 0.0,
            connection_burst: 20,
            messages_per_sec: 0.0,
            message_burst: 200,
            joins_per_key_per_sec: 0.0,
            join_burst: 20,
            dry_run: false,
        }
    }
}

impl Default for SigverSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 5_000,
            heartbeat_max_missed: 3,
            protocol: SigverDialect::Current,
        }
    }
}

impl Default for SockjsSettings {
    fn default() -> Self {
        Self {
            prefix: "/echo".into(),
            heartbeat_ms: 25_000,
            disconnect_delay_ms: 5_000,
            response_limit: 128 * 1024,
            client_url: "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js".into(),
            jsessionid: false,
            websocket: true,
        }
    }
}

impl Default for VidereSettings {
    fn default() -> Self {
        Self { strict: true }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            file: "log/debug.log".into(),
            file_level: "debug".into(),
            rotation: "daily".into(),
            max_files: 7,
            show_keys: false,
        }
    }
}

pub use load::{ConfigError, DEFAULT_CONF_JSON, Overrides, SettingsFile, environment};
pub use turn::TurnSettings;

#[cfg(test)]
mod tests {
    use super::*;
    use config::Environment;
    use std::collections::HashMap;
    use std::path::Path;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        environment().source(Some(map))
    }

    #[test]
    fn defaults_match_the_node_servers() {
        let s = Settings::load_with_env(&Overrides::default(), env(&[])).expect("defaults load");
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 8000));
        assert_eq!(s.sigver.heartbeat_interval_ms, 5000);
        assert_eq!(s.sigver.heartbeat_max_missed, 3);
        assert_eq!(s.sockjs.prefix, "/echo");
        assert_eq!(s.sockjs.heartbeat_ms, 25_000);
        assert_eq!(s.sockjs.disconnect_delay_ms, 5_000);
        assert_eq!(s.sockjs.response_limit, 131_072);
        assert_eq!(s.limits.max_frame_bytes, 1 << 20);
        assert!(s.tls_files().expect("no tls").is_none());
    }

    #[test]
    fn layers_apply_in_order_file_env_cli() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "port = 1000\nhost = \"127.0.0.1\"\n[sigver]\nheartbeat_interval_ms = 100\nheartbeat_max_missed = 7\n")
            .expect("write");
        let over = Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::load_with_env(&over, env(&[])).expect("file");
        assert_eq!(
            (
                s.port,
                s.sigver.heartbeat_interval_ms,
                s.sigver.heartbeat_max_missed
            ),
            (1000, 100, 7)
        );

        let s = Settings::load_with_env(
            &over,
            env(&[
                ("SIGWAY_PORT", "2000"),
                ("SIGWAY_SIGVER__HEARTBEAT_MAX_MISSED", "9"),
            ]),
        )
        .expect("env");
        assert_eq!((s.port, s.sigver.heartbeat_max_missed), (2000, 9));

        let over = Overrides {
            port: Some(3000),
            ..over
        };
        let s = Settings::load_with_env(&over, env(&[("SIGWAY_PORT", "2000")])).expect("cli");
        assert_eq!((s.port, s.host.as_str()), (3000, "127.0.0.1"));
    }

    #[test]
    fn conf_json_maps_videre_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("conf.json");
        std::fs::write(&file, r#"{ "Port": 1111, "TLS": false, "Cert": "path_to_cert_file", "Key": "path_to_key_file" }"#)
            .expect("write");
        let over = Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::load_with_env(&over, env(&[])).expect("conf.json");
        assert_eq!(s.port, 1111);
        assert!(
            s.tls_files().expect("tls off").is_none(),
            "TLS false keeps plain HTTP"
        );

        std::fs::write(&file, r#"{ "Port": 1111, "TLS": true, "Cert": "/nonexistent/c.pem", "Key": "/nonexistent/k.pem" }"#)
            .expect("write");
        let err = Settings::load_with_env(&over, env(&[])).expect_err("missing cert");
        assert!(err.to_string().contains("TLS certificate"), "{err}");
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let missing = Overrides {
            config_file: Some("/nonexistent/sigway.toml".into()),
            ..Default::default()
        };
        assert!(matches!(
            Settings::load_with_env(&missing, env(&[])),
            Err(ConfigError::MissingFile(_))
        ));

        let key_only = Overrides {
            key: Some("/etc/hostname".into()),
            ..Default::default()
        };
        let err = Settings::load_with_env(&key_only, env(&[])).expect_err("key without cert");
        assert!(err.to_string().contains("without a certificate"), "{err}");

        let err = Settings::load_with_env(&Overrides::default(), env(&[("SIGWAY_PORT", "70000")]))
            .expect_err("bad port");
        assert!(err.to_string().contains("port"), "{err}");

        let err = Settings::load_with_env(
            &Overrides::default(),
            env(&[("SIGWAY_SIGVER__HEARTBEAT_INTERVAL_MS", "0")]),
        )
        .expect_err("zero heartbeat");
        assert!(err.to_string().contains("heartbeat"), "{err}");
    }

    #[test]
    fn bad_edge_settings_are_refused_with_one_clear_error() {
        let load =
            |vars: &[(&str, &str)]| Settings::load_with_env(&Overrides::default(), env(vars));
        let err = load(&[("SIGWAY_HTTP__TRUSTED_PROXIES", "10.0.0.0/8 10.0.0.0/33")])
            .expect_err("bad CIDR");
        assert!(err.to_string().contains("http.trusted_proxies"), "{err}");
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
        let err = load(&[("SIGWAY_HTTP__ALLOWED_ORIGINS", "example.org")]).expect_err("bad origin");
        assert!(err.to_string().contains("http.allowed_origins"), "{err}");
        assert!(err.to_string().contains("example.org"), "{err}");
        let err = load(&[("SIGWAY_HTTP__CLIENT_IP_HEADER", "via")]).expect_err("bad header");
        assert!(err.to_string().contains("client_ip_header"), "{err}");
        let err = load(&[("SIGWAY_HTTP__CLIENT_REQUEST_TIMEOUT_MS", "0")]).expect_err("zero");
        assert!(
            err.to_string().contains("client_request_timeout_ms"),
            "{err}"
        );

        let s = load(&[
            ("SIGWAY_HTTP__TRUSTED_PROXIES", "127.0.0.1 fd00::/8"),
            (
                "SIGWAY_HTTP__ALLOWED_ORIGINS",
                "https://a.example.org https://*.example.net",
            ),
        ])
        .expect("lists from the environment");
        assert_eq!(s.http.trusted_proxies, ["127.0.0.1", "fd00::/8"]);
        assert_eq!(
            s.http.allowed_origins,
            ["https://a.example.org", "https://*.example.net"]
        );
    }

    #[test]
    fn rate_limits_and_auth_are_checked_at_start() {
        let refused = |vars: &[(&str, &str)], says: &str| {
            let err =
                Settings::load_with_env(&Overrides::default(), env(vars)).expect_err("refused");
            assert!(err.to_string().contains(says), "{err}");
        };
        refused(
            &[
                ("SIGWAY_LIMITS__MESSAGES_PER_SEC", "50"),
                ("SIGWAY_LIMITS__MESSAGE_BURST", "0"),
            ],
            "limits.message_burst",
        );
        refused(
            &[("SIGWAY_LIMITS__JOINS_PER_KEY_PER_SEC", "-1")],
            "limits.joins_per_key_per_sec",
        );
        refused(
            &[
                ("SIGWAY_AUTH__KEY_SECRET", "s"),
                ("SIGWAY_AUTH__PREVIOUS_UNTIL", "1800000000"),
            ],
            "auth.previous_until",
        );
        refused(
            &[("SIGWAY_AUTH__PREVIOUS_KEY_SECRET", "old")],
            "auth.key_secret",
        );
        let s = Settings::load_with_env(
            &Overrides::default(),
            env(&[
                ("SIGWAY_AUTH__KEY_SECRET", "top-secret"),
                ("SIGWAY_LIMITS__MESSAGES_PER_SEC", "2.5"),
            ]),
        )
        .expect("secret from the environment");
        assert_eq!(s.auth.key_secret.expose(), "top-secret");
        assert_eq!(s.limits.messages_per_sec, 2.5);
        let printed = format!("{s:?}");
        assert!(!printed.contains("top-secret"), "{printed}");
    }

    #[test]
    fn shipped_default_toml_equals_built_in_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let over = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let s = Settings::load_with_env(&over, env(&[])).expect("default.toml loads");
        assert_eq!(s, Settings::default());
    }
}

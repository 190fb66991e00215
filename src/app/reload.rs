//! SIGHUP: read the settings again and take what can change while
//! sessions run, without a restart.
//!
//! Reloaded: the TLS certificate and key (new handshakes use the new pair,
//! open connections keep theirs), the connection limits, every rate limit
//! and `limits.dry_run`, `http` allowed origins and trusted proxies (and
//! their header), and the `auth` secrets. Each is read through a holder
//! swapped whole ([`crate::rooms::Rooms::apply`], `Edge::replace`, the TLS
//! swap), so the relay path takes no lock. A file that does not load (or a
//! TLS pair that does not) keeps every old setting and logs one line why;
//! other changes (ports, workers, cluster, SockJS, log, ...) are reported
//! in one line as needing a restart. [`merge_reloadable`] and
//! [`changed_keys`] are the pure part.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use sigway_sockjs::edge::Edge;

use super::tls::{TlsPair, TlsSwap};
use crate::config::{Overrides, Settings};
use crate::rooms::Rooms;

/// What a reload acts on.
pub(super) struct Reloader {
    pub overrides: Overrides,
    /// The settings in effect (what `GET /admin/settings` shows).
    pub live: Arc<ArcSwap<Settings>>,
    /// The TLS pair of new handshakes, when the listener serves TLS.
    pub tls: Option<TlsSwap>,
    pub rooms: Rooms,
    pub edge: Edge,
}

impl Reloader {
    /// Reads the settings again and applies what may change; logs what
    /// happened (one line on failure, one for changes needing a restart).
    pub(super) fn reload(&self) {
        let new = match Settings::load(&self.overrides) {
            Ok(new) => new,
            Err(error) => {
                tracing::warn!("settings reload refused, the old settings stay: {error}");
                return;
            }
        };
        let old = self.live.load_full();
        let effective = merge_reloadable(&old, &new);
        let pair = match &self.tls {
            Some(_) => match TlsPair::load(&effective) {
                Ok(pair) => Some(pair),
                Err(error) => {
                    tracing::warn!("settings reload refused, the old settings stay: {error}");
                    return;
                }
            },
            None => None,
        };
        let (origins, proxies) = match (effective.origin_policy(), effective.proxy_policy()) {
            (Ok(origins), Ok(proxies)) => (origins, proxies),
            // `Settings::load` validated both: not expected.
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!("settings reload refused, the old settings stay: {error}");
                return;
            }
        };
        self.rooms.apply(&effective);
        self.edge.replace(origins, proxies);
        if let (Some(swap), Some(pair)) = (&self.tls, pair) {
            swap.store(Some(Arc::new(pair)));
        }
        let applied = changed_keys(&old, &effective);
        let needs_restart = changed_keys(&effective, &new);
        self.live.store(Arc::new(effective));
        tracing::info!(
            changed = %applied.join(", "),
            tls = self.tls.is_some(),
            "settings reloaded"
        );
        if !needs_restart.is_empty() {
            tracing::warn!(
                "settings changed that need a restart (kept as they were): {}",
                needs_restart.join(", ")
            );
        }
    }
}

/// `old` with every setting a reload may change taken from `new`.
pub(super) fn merge_reloadable(old: &Settings, new: &Settings) -> Settings {
    let mut merged = old.clone();
    let (limits, from) = (&mut merged.limits, &new.limits);
    limits.max_connections = from.max_connections;
    limits.max_connections_per_ip = from.max_connections_per_ip;
    limits.max_sockjs_sessions_per_ip = from.max_sockjs_sessions_per_ip;
    limits.connections_per_ip_per_sec = from.connections_per_ip_per_sec;
    limits.connection_burst = from.connection_burst;
    limits.messages_per_sec = from.messages_per_sec;
    limits.message_burst = from.message_burst;
    limits.joins_per_key_per_sec = from.joins_per_key_per_sec;
    limits.join_burst = from.join_burst;
    limits.dry_run = from.dry_run;
    let (http, from) = (&mut merged.http, &new.http);
    http.allowed_origins = from.allowed_origins.clone();
    http.allow_missing_origin = from.allow_missing_origin;
    http.trusted_proxies = from.trusted_proxies.clone();
    http.client_ip_header = from.client_ip_header.clone();
    merged.auth = new.auth.clone();
    // The files are read again whatever their names; switching TLS on or
    // off needs a restart.
    if old.tls.enabled == new.tls.enabled {
        merged.tls.cert = new.tls.cert.clone();
        merged.tls.key = new.tls.key.clone();
        merged.tls.ca = new.tls.ca.clone();
    }
    merged
}

/// The dotted names of the settings that differ between `a` and `b`
/// (secrets by name only).
pub(super) fn changed_keys(a: &Settings, b: &Settings) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or(Value::Null),
        serde_json::to_value(b).unwrap_or(Value::Null),
    );
    let mut changed = Vec::new();
    diff("", &a, &b, &mut changed);
    changed
}

fn diff(path: &str, a: &Value, b: &Value, changed: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (name, value) in a {
                let inner = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                diff(&inner, value, b.get(name).unwrap_or(&Value::Null), changed);
            }
        }
        _ if a != b => changed.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_origins_and_secrets_reload_and_ports_wait_for_a_restart() {
        let old = Settings::default();
        let mut new = old.clone();
        new.limits.max_connections = 7;
        new.limits.messages_per_sec = 3.0;
        new.http.allowed_origins = vec!["https://a.example".into()];
        new.auth.key_secret = "s".into();
        new.port = 9999;
        new.workers = 3;
        new.cluster.redis_url = "redis://127.0.0.1:1".into();
        new.limits.max_frame_bytes = 4096;
        let effective = merge_reloadable(&old, &new);
        assert_eq!(effective.limits.max_connections, 7);
        assert_eq!(effective.limits.messages_per_sec, 3.0);
        assert_eq!(effective.http.allowed_origins, ["https://a.example"]);
        assert_eq!(effective.auth.key_secret.expose(), "s");
        assert_eq!((effective.port, effective.workers), (old.port, old.workers));
        assert_eq!(
            changed_keys(&old, &effective),
            [
                "http.allowed_origins",
                "limits.max_connections",
                "limits.messages_per_sec",
                "auth.key_secret"
            ]
        );
        assert_eq!(
            changed_keys(&effective, &new),
            [
                "port",
                "workers",
                "limits.max_frame_bytes",
                "cluster.redis_url"
            ]
        );
    }

    #[test]
    fn tls_files_reload_but_turning_tls_on_needs_a_restart() {
        let old = Settings::default();
        let mut new = old.clone();
        new.tls.cert = Some("/new/cert.pem".into());
        new.tls.enabled = Some(true);
        let effective = merge_reloadable(&old, &new);
        assert_eq!(effective.tls.cert, None);
        assert_eq!(changed_keys(&effective, &new), ["tls.enabled", "tls.cert"]);
        let mut renamed = new.clone();
        renamed.tls.cert = Some("/newer/cert.pem".into());
        let effective = merge_reloadable(&new, &renamed);
        assert_eq!(effective.tls.cert, renamed.tls.cert);
        assert!(changed_keys(&effective, &renamed).is_empty());
    }
}

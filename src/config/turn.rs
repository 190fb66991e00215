//! `[turn]`: the TURN REST credentials `GET /turn` hands out (the scheme
//! coturn checks with `use-auth-secret` / `static-auth-secret`). Off while
//! `secret` is empty; the settings are checked here at start so a half
//! configured section is one clear error, not a 500 on the first request.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// `[turn]`: shared secret with the TURN server, its URIs, the lifetime of
/// the credentials and the rate they are handed out at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnSettings {
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret`); empty: `GET /turn` answers 404.
    pub secret: Secret,
    /// TURN (and STUN) URIs handed to clients, e.g.
    /// `turn:turn.example.org:3478?transport=udp`.
    pub uris: Vec<String>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
    /// The user part of the username when the request names none
    /// (`?user=`).
    pub user: String,
    /// Credentials one client address may fetch per minute (burst of the
    /// same size); 0: no limit.
    pub requests_per_minute: u32,
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            secret: Secret::default(),
            uris: Vec::new(),
            ttl: 86_400,
            user: "sigway".into(),
            requests_per_minute: 60,
        }
    }
}

impl TurnSettings {
    /// Whether `GET /turn` hands out credentials.
    pub fn enabled(&self) -> bool {
        !self.secret.is_empty()
    }

    /// With a secret: at least one `turn:`/`turns:`/`stun:` URI, a
    /// positive TTL and a default user coturn can parse (no `:`).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !self.enabled() {
            return Ok(());
        }
        if self.uris.is_empty() {
            return invalid("turn.secret is set but turn.uris is empty".into());
        }
        if let Some(bad) = self.uris.iter().find(|uri| {
            !["turn:", "turns:", "stun:", "stuns:"]
                .iter()
                .any(|scheme| uri.starts_with(scheme))
        }) {
            return invalid(format!(
                "turn.uris: {bad:?} is not a turn:, turns:, stun: or stuns: URI"
            ));
        }
        if self.ttl == 0 {
            return invalid("turn.ttl must be > 0 seconds".into());
        }
        if self.user.is_empty() || self.user.contains(':') {
            return invalid(format!(
                "turn.user {:?} must be non-empty and contain no ':'",
                self.user
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{Overrides, Settings, environment};

    fn load(vars: &[(&str, &str)]) -> Result<Settings, super::ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(&Overrides::default(), environment().source(Some(map)))
    }

    #[test]
    fn the_environment_sets_secret_and_several_uris() {
        let s = load(&[
            ("SIGWAY_TURN__SECRET", "shared"),
            (
                "SIGWAY_TURN__URIS",
                "turn:127.0.0.1:3478?transport=udp turns:turn.example.org:5349",
            ),
            ("SIGWAY_TURN__TTL", "600"),
        ])
        .expect("loads");
        assert!(s.turn.enabled());
        assert_eq!(s.turn.secret.expose(), "shared");
        assert_eq!(s.turn.uris.len(), 2);
        assert_eq!(s.turn.ttl, 600);
        assert!(!format!("{s:?}").contains("shared"), "Debug redacts it");
    }

    #[test]
    fn half_configured_turn_is_one_clear_error() {
        for (vars, says) in [
            (vec![("SIGWAY_TURN__SECRET", "s")], "turn.uris is empty"),
            (
                vec![
                    ("SIGWAY_TURN__SECRET", "s"),
                    ("SIGWAY_TURN__URIS", "http://x"),
                ],
                "not a turn:",
            ),
            (
                vec![
                    ("SIGWAY_TURN__SECRET", "s"),
                    ("SIGWAY_TURN__URIS", "turn:x"),
                    ("SIGWAY_TURN__TTL", "0"),
                ],
                "turn.ttl",
            ),
            (
                vec![
                    ("SIGWAY_TURN__SECRET", "s"),
                    ("SIGWAY_TURN__URIS", "turn:x"),
                    ("SIGWAY_TURN__USER", "a:b"),
                ],
                "turn.user",
            ),
        ] {
            let error = load(&vars).expect_err("refused");
            assert!(error.to_string().contains(says), "{error}");
        }
        // Without a secret nothing else is required.
        assert!(!load(&[]).expect("defaults").turn.enabled());
    }
}

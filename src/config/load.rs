//! Reading the layers into [`Settings`]: defaults < one settings file
//! (sigway TOML, or videre-server's `conf.json`) < `SIGWAY_…` environment <
//! command-line flags, and the checks that refuse a bad combination.

use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use sigway_sockjs::edge::{ClientIpHeader, OriginPolicy, ProxyPolicy};

use super::Settings;

/// Why the settings could not be used. Each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that is not there.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A layer could not be read or does not fit the settings.
    #[error("cannot read settings: {0}")]
    Load(#[from] config::ConfigError),
    /// videre-server's `conf.json` could not be read.
    #[error("cannot read {path}: {source}")]
    ConfJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The settings read, but say something impossible.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`: a sigway TOML or videre-server `conf.json` file.
    pub config_file: Option<PathBuf>,
    /// `-h/--host`.
    pub host: Option<String>,
    /// `-p/--port`.
    pub port: Option<u16>,
    /// `-k/--key`.
    pub key: Option<PathBuf>,
    /// `-c/--cert`.
    pub cert: Option<PathBuf>,
    /// `-a/--ca`.
    pub ca: Option<PathBuf>,
}

/// videre-server's `conf.json`, key for key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VidereConf {
    #[serde(rename = "Port")]
    port: Option<u16>,
    #[serde(rename = "TLS")]
    tls: Option<bool>,
    #[serde(rename = "Cert")]
    cert: Option<String>,
    #[serde(rename = "Key")]
    key: Option<String>,
}

/// The file videre-server users keep beside the binary, read when no
/// `--config` is given.
pub const DEFAULT_CONF_JSON: &str = "conf.json";

/// What a settings file holds, as start-up tells from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsFile {
    /// sigway's own settings, TOML.
    Toml,
    /// videre-server's `conf.json` (any `.json` file).
    ConfJson,
}

impl Settings {
    /// Builds settings from every layer, reading the environment of this
    /// process and the working directory.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(overrides, environment())
    }

    /// Built-in defaults < the text of one settings file, and nothing else
    /// (no environment, no flags, no file read): what start-up takes from
    /// such a file, for harnesses that hold the text (the `settings` fuzz
    /// target). Not validated: [`Settings::validate`] opens the TLS files
    /// the settings name.
    pub fn from_file_text(text: &str, kind: SettingsFile) -> Result<Self, ConfigError> {
        let builder = Config::builder().add_source(Config::try_from(&Settings::default())?);
        let builder = match kind {
            SettingsFile::Toml => builder.add_source(File::from_str(text, FileFormat::Toml)),
            SettingsFile::ConfJson => {
                apply_conf_json_text(builder, text, Path::new(DEFAULT_CONF_JSON))?
            }
        };
        Ok(builder.build()?.try_deserialize()?)
    }

    /// [`Settings::load`] with an explicit environment source (tests pass a
    /// fixed map instead of the process environment).
    pub fn load_with_env(overrides: &Overrides, env: Environment) -> Result<Self, ConfigError> {
        let mut builder = Config::builder().add_source(Config::try_from(&Settings::default())?);

        let file = match &overrides.config_file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.clone())),
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONF_JSON)).filter(|p| p.is_file()),
        };
        if let Some(path) = file {
            builder = if is_conf_json(&path) {
                apply_conf_json(builder, &path)?
            } else {
                builder.add_source(File::from(path.as_path()).format(FileFormat::Toml))
            };
        }

        builder = builder.add_source(env.try_parsing(true));
        builder = builder
            .set_override_option("host", overrides.host.clone())?
            .set_override_option("port", overrides.port)?
            .set_override_option("tls.key", path_string(&overrides.key))?
            .set_override_option("tls.cert", path_string(&overrides.cert))?
            .set_override_option("tls.ca", path_string(&overrides.ca))?;

        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects combinations the server cannot run with. TLS files are opened
    /// here so that a bad path fails at start-up, not at the first client.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.host.parse::<std::net::IpAddr>().is_err() && self.host != "localhost" {
            return invalid(format!("host {:?} is not an IP address", self.host));
        }
        if let Some((cert, key)) = self.tls_files()? {
            for (what, path) in [("certificate", cert), ("key", key)] {
                readable(what, path)?;
            }
            if let Some(ca) = &self.tls.ca {
                readable("CA chain", ca)?;
            }
        }
        if self.sigver.heartbeat_interval_ms == 0 || self.sigver.heartbeat_max_missed == 0 {
            return invalid("sigver heartbeat interval and max missed must be > 0".into());
        }
        if self.sockjs.heartbeat_ms == 0 || self.sockjs.disconnect_delay_ms == 0 {
            return invalid("sockjs heartbeat and disconnect delay must be > 0".into());
        }
        if !self.sockjs.prefix.starts_with('/') || self.sockjs.prefix.len() < 2 {
            return invalid(format!(
                "sockjs prefix {:?} must start with '/' and name a path",
                self.sockjs.prefix
            ));
        }
        if self.limits.max_frame_bytes < 1024
            || self.limits.outbound_queue == 0
            || self.limits.outbound_queue_bytes == 0
        {
            return invalid(
                "limits.max_frame_bytes >= 1024, limits.outbound_queue > 0 and limits.outbound_queue_bytes > 0"
                    .into(),
            );
        }
        self.validate_rates()?;
        self.validate_auth()?;
        self.turn.validate()?;
        self.validate_dashboard()?;
        let cluster = &self.cluster;
        if cluster.enabled() {
            if cluster.heartbeat_ms == 0 || cluster.dead_after_ms <= cluster.heartbeat_ms {
                return invalid(
                    "cluster.heartbeat_ms must be > 0 and below cluster.dead_after_ms".into(),
                );
            }
            if cluster.prefix.is_empty() || cluster.prefix.contains(char::is_whitespace) {
                return invalid(format!(
                    "cluster.prefix {:?} must be a non-empty word",
                    cluster.prefix
                ));
            }
        }
        self.origin_policy()?;
        self.proxy_policy()?;
        if !self.admin.listen.is_empty()
            && self.admin.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return invalid(format!(
                "admin.listen {:?} is not IP:port (e.g. 127.0.0.1:9000)",
                self.admin.listen
            ));
        }
        if self.http.client_request_timeout_ms == 0 {
            return invalid("http.client_request_timeout_ms must be > 0".into());
        }
        if self.http.proxy_protocol && self.tls_files()?.is_some() {
            return invalid(
                "http.proxy_protocol is served on plain listeners only: terminate TLS at the load balancer, or turn one of them off".into(),
            );
        }
        if !["minutely", "hourly", "daily", "never"].contains(&self.log.rotation.as_str()) {
            return invalid(format!(
                "log rotation {:?} is not one of minutely, hourly, daily, never",
                self.log.rotation
            ));
        }
        Ok(())
    }

    /// Each rate is a number >= 0 (0: off), and a rate that limits has a
    /// burst of at least one (a zero burst would refuse everything).
    fn validate_rates(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (rate_name, rate, burst_name, burst) in [
            (
                "connections_per_ip_per_sec",
                l.connections_per_ip_per_sec,
                "connection_burst",
                l.connection_burst,
            ),
            (
                "messages_per_sec",
                l.messages_per_sec,
                "message_burst",
                l.message_burst,
            ),
            (
                "joins_per_key_per_sec",
                l.joins_per_key_per_sec,
                "join_burst",
                l.join_burst,
            ),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{rate_name} = {rate} must be a number >= 0 (0: no limit)"
                )));
            }
            if rate > 0.0 && burst == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{burst_name} must be >= 1 when limits.{rate_name} is set (a burst of 0 refuses everything)"
                )));
            }
        }
        Ok(())
    }

    /// A previous secret needs a current one and an end; an end needs a
    /// previous secret.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if !auth.enabled() && (!auth.previous_key_secret.is_empty() || auth.previous_until != 0) {
            return invalid(
                "auth.previous_key_secret / auth.previous_until are set without auth.key_secret",
            );
        }
        if auth.previous_until != 0 && auth.previous_key_secret.is_empty() {
            return invalid("auth.previous_until is set without auth.previous_key_secret");
        }
        if !auth.previous_key_secret.is_empty() && auth.previous_until == 0 {
            return invalid(
                "auth.previous_key_secret needs auth.previous_until (Unix seconds it stops being accepted)",
            );
        }
        if auth.bind_videre_user && !auth.enabled() {
            return invalid("auth.bind_videre_user is set without auth.key_secret");
        }
        Ok(())
    }

    /// The certificate and key to serve TLS with, or `None` for plain HTTP.
    pub fn tls_files(&self) -> Result<Option<(&Path, &Path)>, ConfigError> {
        let tls = &self.tls;
        let wanted = tls
            .enabled
            .unwrap_or(tls.cert.is_some() || tls.key.is_some());
        if !wanted {
            return Ok(None);
        }
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, Some(_)) => Err(ConfigError::Invalid(
                "a TLS key was given without a certificate (--cert)".into(),
            )),
            (Some(_), None) => Err(ConfigError::Invalid(
                "a TLS certificate was given without its key (--key)".into(),
            )),
            (None, None) => Err(ConfigError::Invalid(
                "TLS is on but no certificate and key are set".into(),
            )),
        }
    }

    /// `http.allowed_origins` and `http.allow_missing_origin`, parsed.
    pub fn origin_policy(&self) -> Result<OriginPolicy, ConfigError> {
        OriginPolicy::new(&self.http.allowed_origins, self.http.allow_missing_origin)
            .map_err(|error| ConfigError::Invalid(format!("http.allowed_origins: {error}")))
    }

    /// `http.trusted_proxies` and `http.client_ip_header`, parsed.
    pub fn proxy_policy(&self) -> Result<ProxyPolicy, ConfigError> {
        let header: ClientIpHeader = self
            .http
            .client_ip_header
            .parse()
            .map_err(|error| ConfigError::Invalid(format!("http.{error}")))?;
        ProxyPolicy::new(&self.http.trusted_proxies, header)
            .map_err(|error| ConfigError::Invalid(format!("http.trusted_proxies: {error}")))
    }

    /// `sigver.heartbeat_interval_ms` as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.sigver.heartbeat_interval_ms)
    }
}

/// `SIGWAY_PORT`, `SIGWAY_SIGVER__HEARTBEAT_INTERVAL_MS`, ...
pub fn environment() -> Environment {
    // The lists are read from one variable, their entries separated by
    // spaces (`SIGWAY_HTTP__TRUSTED_PROXIES="10.0.0.0/8 ::1"`).
    Environment::with_prefix("SIGWAY")
        .prefix_separator("_")
        .separator("__")
        .list_separator(" ")
        .with_list_parse_key("http.allowed_origins")
        .with_list_parse_key("http.trusted_proxies")
        .with_list_parse_key("turn.uris")
}

fn readable(what: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| ConfigError::Invalid(format!("TLS {what} {}: {e}", path.display())))
}

fn path_string(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.to_string_lossy().into_owned())
}

fn is_conf_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn apply_conf_json(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    path: &Path,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ConfJson {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    apply_conf_json_text(builder, &text, path)
}

/// The settings of a `conf.json` whose text is `text` (`path` names it in
/// errors) laid over `builder`.
fn apply_conf_json_text(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    text: &str,
    path: &Path,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    let conf: VidereConf = serde_json::from_str(text).map_err(|e| ConfigError::ConfJson {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    // Relative Cert/Key paths in conf.json are relative to the working
    // directory, as they were for videre-server.
    Ok(builder
        .set_override_option("port", conf.port)?
        .set_override_option("tls.enabled", conf.tls)?
        .set_override_option("tls.cert", conf.cert)?
        .set_override_option("tls.key", conf.key)?)
}

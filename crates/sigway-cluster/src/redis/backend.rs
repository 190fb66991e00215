//! The command side of the Redis transport: one connection (or connection
//! pool, for a Redis Cluster) that publishes and runs the directory
//! scripts, whatever the deployment is.
//!
//! - Standalone: a redis-rs `ConnectionManager` (one multiplexed
//!   connection that reconnects by itself).
//! - Redis Cluster: a redis-rs `ClusterConnection` (routes each command by
//!   its key or shard channel, follows MOVED/ASK, refreshes the slot map).
//! - Sentinel: a `ConnectionManager` to the master the sentinels name.
//!   redis-rs resolves the master only when asked, so after a connection
//!   failure or a `READONLY` answer (the old master came back as a
//!   replica) the manager is dropped and the next call asks the sentinels
//!   again.
//!
//! It also tells the subscriber where to subscribe ([`Backend::subscriber_target`]):
//! the server itself, the current master, or the shard master that serves
//! the node's inbox channel. Errors map to [`TransportError`]: what a retry
//! can cure (I/O, timeouts, failover states) is `Unreachable`, the rest
//! `Protocol`.

use std::sync::Mutex;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    Client, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ScriptInvocation, ServerErrorKind, Value,
};

use super::RedisOptions;
use super::address::Topology;
use super::keys::hash_slot;
use crate::TransportError;

/// A command to run: a plain command or a script (EVALSHA, then EVAL when
/// the server does not know the script yet, e.g. after a restart).
pub(crate) enum Request<'a> {
    Command(&'a redis::Cmd),
    Script(&'a ScriptInvocation<'a>),
}

impl Request<'_> {
    async fn run<T, C>(&self, connection: &mut C) -> Result<T, RedisError>
    where
        T: FromRedisValue,
        C: ConnectionLike + Send,
    {
        match self {
            Request::Command(command) => command.query_async(connection).await,
            Request::Script(script) => script.invoke_async(connection).await,
        }
    }
}

/// The deployment and its command connection.
pub(crate) enum Backend {
    Standalone {
        info: ConnectionInfo,
        commands: ConnectionManager,
    },
    Cluster {
        /// Credentials and settings shared by every node (from the first seed).
        seed: ConnectionInfo,
        commands: ClusterConnection,
    },
    Sentinel(Box<SentinelMaster>),
}

impl Backend {
    /// Connects to the deployment (fails when it cannot be reached).
    pub(crate) async fn connect(
        topology: Topology,
        options: &RedisOptions,
    ) -> Result<Self, RedisError> {
        match topology {
            Topology::Standalone(url) => {
                let info = url.as_str().into_connection_info()?.set_tcp_settings(tcp());
                let client = Client::open(info)?;
                let info = client.get_connection_info().clone();
                let commands =
                    ConnectionManager::new_with_config(client, manager_config(options)).await?;
                Ok(Backend::Standalone { info, commands })
            }
            Topology::Cluster(seeds) => {
                let seed = seeds
                    .first()
                    .ok_or_else(|| {
                        RedisError::from((ErrorKind::InvalidClientConfig, "no cluster seed"))
                    })?
                    .as_str()
                    .into_connection_info()?
                    .set_tcp_settings(tcp());
                let client = ClusterClient::builder(seeds)
                    .tcp_settings(tcp())
                    .connection_timeout(options.call_timeout)
                    .response_timeout(options.call_timeout)
                    .build()?;
                let commands = client.get_async_connection().await?;
                Ok(Backend::Cluster { seed, commands })
            }
            Topology::Sentinel {
                sentinels,
                master_name,
                username,
                password,
                db,
            } => {
                let mut master_settings = RedisConnectionInfo::default().set_db(db);
                if let Some(username) = username {
                    master_settings = master_settings.set_username(username);
                }
                if let Some(password) = password {
                    master_settings = master_settings.set_password(password);
                }
                let master = SentinelMaster {
                    sentinel: tokio::sync::Mutex::new(Sentinel::build(sentinels)?),
                    master_name,
                    node_info: SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(master_settings)
                        .set_tcp_settings(tcp()),
                    manager_config: manager_config(options),
                    current: Mutex::new(None),
                };
                master.commands().await?;
                Ok(Backend::Sentinel(Box::new(master)))
            }
        }
    }

    /// Whether inboxes use sharded pub/sub (SPUBLISH/SSUBSCRIBE).
    pub(crate) fn sharded(&self) -> bool {
        matches!(self, Backend::Cluster { .. })
    }

    /// Whether the subscriber must check that its server is still a master
    /// (after a failover, a demoted master's subscribers would not be
    /// counted by PUBLISH on the new one).
    pub(crate) fn follows_failover(&self) -> bool {
        !matches!(self, Backend::Standalone { .. })
    }

    /// Runs one request on the command connection. No timeout here: the
    /// caller bounds the whole call, including a Sentinel resolution.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        request: Request<'_>,
    ) -> Result<T, RedisError> {
        let result = match self {
            Backend::Standalone { commands, .. } => request.run(&mut commands.clone()).await,
            Backend::Cluster { commands, .. } => request.run(&mut commands.clone()).await,
            Backend::Sentinel(master) => {
                let mut commands = master.commands().await?;
                request.run(&mut commands).await
            }
        };
        if let Err(error) = &result {
            self.note_failure(error);
        }
        result
    }

    /// After a failed or timed-out call: a Sentinel deployment forgets its
    /// master when the failure says it may have moved.
    pub(crate) fn note_failure(&self, error: &RedisError) {
        if let Backend::Sentinel(master) = self
            && (is_transient(error)
                || matches!(
                    error.kind(),
                    ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                ))
        {
            master.forget();
        }
    }

    /// A call timed out, or a subscription found its server gone or no
    /// longer a master: a Sentinel deployment asks the sentinels again on
    /// the next call (a PUBLISH to a demoted master would not fail, it
    /// would only reach nobody).
    pub(crate) fn suspect_master(&self) {
        if let Backend::Sentinel(master) = self {
            master.forget();
        }
    }

    /// Where a subscriber for `inbox` connects (with RESP3, which the
    /// subscriber needs to share one connection between pushes and pings).
    pub(crate) async fn subscriber_target(
        &self,
        inbox: &str,
    ) -> Result<ConnectionInfo, RedisError> {
        let info = match self {
            Backend::Standalone { info, .. } => info.clone(),
            Backend::Sentinel(master) => master.resolve().await?.get_connection_info().clone(),
            Backend::Cluster { seed, commands } => {
                let slot = hash_slot(inbox.as_bytes());
                let slots: Value = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut commands.clone())
                    .await?;
                let (host, port) = master_of_slot(&slots, slot).ok_or_else(|| {
                    RedisError::from((
                        ErrorKind::ClusterConnectionNotFound,
                        "no master serves the inbox's slot",
                        format!("slot {slot}"),
                    ))
                })?;
                seed.clone().set_addr(ConnectionAddr::Tcp(host, port))
            }
        };
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        Ok(info.set_redis_settings(settings).set_tcp_settings(tcp()))
    }
}

/// Every connection to Redis: Nagle off (redis-rs leaves it on). The bus
/// publishes small envelopes back to back on one pipelined connection, and
/// Nagle may hold one back until Redis acknowledges the previous one.
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

fn manager_config(options: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.call_timeout))
        .set_response_timeout(Some(options.call_timeout))
        .set_max_delay(options.max_backoff)
}

/// The master a set of sentinels names, and a command connection to it
/// that is dropped (and re-resolved) when it fails.
pub(crate) struct SentinelMaster {
    sentinel: tokio::sync::Mutex<Sentinel>,
    master_name: String,
    node_info: SentinelNodeConnectionInfo,
    manager_config: ConnectionManagerConfig,
    current: Mutex<Option<ConnectionManager>>,
}

impl SentinelMaster {
    /// Asks the sentinels for the master (redis-rs checks that the server
    /// it names answers ROLE as a master).
    async fn resolve(&self) -> Result<Client, RedisError> {
        let mut sentinel = self.sentinel.lock().await;
        sentinel
            .async_master_for(&self.master_name, Some(&self.node_info))
            .await
    }

    async fn commands(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(current) = self.lock_current().clone() {
            return Ok(current);
        }
        let client = self.resolve().await?;
        tracing::info!(
            master = %client.get_connection_info().addr(),
            name = %self.master_name,
            "cluster transport: Redis master resolved through Sentinel"
        );
        let manager =
            ConnectionManager::new_with_config(client, self.manager_config.clone()).await?;
        *self.lock_current() = Some(manager.clone());
        Ok(manager)
    }

    fn forget(&self) {
        self.lock_current().take();
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        // The guarded value is a handle swapped in one statement: a panic
        // elsewhere cannot leave it half-written, so a poisoned lock is usable.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The master `(host, port)` serving `slot` in a `CLUSTER SLOTS` reply
/// (`[[start, end, [host, port, id, ...], replicas...], ...]`).
pub(crate) fn master_of_slot(reply: &Value, slot: u16) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let (start, end) = match (fields.first()?, fields.get(1)?) {
            (Value::Int(start), Value::Int(end)) => (*start, *end),
            _ => return None,
        };
        if !(start..=end).contains(&i64::from(slot)) {
            return None;
        }
        let Value::Array(master) = fields.get(2)? else {
            return None;
        };
        let host = match master.first()? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
            Value::SimpleString(text) => text.clone(),
            _ => return None,
        };
        let port = match master.get(1)? {
            Value::Int(port) => u16::try_from(*port).ok()?,
            _ => return None,
        };
        Some((host, port))
    })
}

/// Whether retrying later can cure `error` (the server is away, loading,
/// or in the middle of a failover or resharding).
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::EmptySentinelList
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
        )
}

/// Maps a redis-rs error to the transport's (naming the failed operation).
pub(crate) fn transport_error(operation: &str, error: &RedisError) -> TransportError {
    if is_transient(error) {
        TransportError::Unreachable(format!("{operation}: {error}"))
    } else {
        TransportError::Protocol(format!("{operation}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ]),
        ])
    }

    #[test]
    fn the_master_of_a_slot_is_found_in_cluster_slots() {
        let reply = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(5461, 10922, "10.0.0.2", 7001),
            range(10923, 16383, "10.0.0.3", 7002),
        ]);
        assert_eq!(master_of_slot(&reply, 0), Some(("10.0.0.1".into(), 7000)));
        assert_eq!(
            master_of_slot(&reply, 5461),
            Some(("10.0.0.2".into(), 7001))
        );
        assert_eq!(
            master_of_slot(&reply, 16383),
            Some(("10.0.0.3".into(), 7002))
        );
        let partial = Value::Array(vec![range(0, 100, "h", 1)]);
        assert_eq!(master_of_slot(&partial, 101), None);
        assert_eq!(master_of_slot(&Value::Nil, 1), None);
        let bad_port = Value::Array(vec![range(0, 16383, "h", 70000)]);
        assert_eq!(master_of_slot(&bad_port, 1), None);
    }

    #[test]
    fn failover_and_io_errors_are_transient() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_transient(&io));
        assert!(matches!(
            transport_error("publish", &io),
            TransportError::Unreachable(_)
        ));
        let script = RedisError::from((ErrorKind::UnexpectedReturnType, "bad reply"));
        assert!(!is_transient(&script));
        assert!(matches!(
            transport_error("claim", &script),
            TransportError::Protocol(_)
        ));
    }
}

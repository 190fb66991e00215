//! The [`Transport`] over Redis: standalone, Redis Cluster or Sentinel.
//!
//! Layout (`../shared/cluster.md`, "Redis layout", prefix `sw` by default):
//! the node registry `sw:nodes` (ZSET node → last heartbeat ms), the
//! control channel `sw:ctl` (PUBLISH/SUBSCRIBE), one inbox channel per
//! node `sw:in:{n:<node>}` (SPUBLISH/SSUBSCRIBE on Redis Cluster,
//! PUBLISH/SUBSCRIBE otherwise), and per group an owner hash
//! `sw:{g:<hex>}:own` {node, epoch} with its snapshot `sw:{g:<hex>}:snap`
//! in the same slot, changed only by the scripts of [`scripts`]; and each
//! node's dashboard figures `sw:dash:{sw}:<node>` (SET with PX, read with
//! one MGET: every node's in one slot).
//!
//! Which deployment is used follows from the URLs (see [`address`]): one
//! `redis://` URL is a standalone server, several URLs or a
//! `redis+cluster://` URL a Redis Cluster, a `redis+sentinel://` URL the
//! master its sentinels name. Commands share one connection
//! ([`backend`]); each subscription has its own ([`subscriber`]). Every
//! call is bounded by [`RedisOptions::call_timeout`] and fails with
//! [`TransportError::Unreachable`] when Redis does not answer in time.
//!
//! Receiver counts are what Redis reports: on a Redis Cluster, PUBLISH on
//! the control channel counts only the subscribers of the node it was sent
//! to (the others receive it through the cluster bus, uncounted), while
//! SPUBLISH counts the inbox's subscribers exactly.

mod address;
mod backend;
mod keys;
mod scripts;
mod subscriber;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::{RedisError, Script};
use tokio::sync::mpsc;

pub use keys::DEFAULT_PREFIX;

use self::backend::{Backend, Request, transport_error};
use self::keys::KeyLayout;
use self::scripts::ClaimReply;
use crate::{Claim, Delivery, GroupHash, NodeId, Transport, TransportError};

/// Settings of a [`RedisTransport`]; [`Default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prefix of every key and channel name (default `sw`).
    pub prefix: String,
    /// Bound on every call, connecting included (default 1 s).
    pub call_timeout: Duration,
    /// How long a released group remembers its last epoch, so that a claim
    /// soon after continues from it (default 1 h). After that the group
    /// starts again at epoch 1, which is safe: an epoch fences writes by a
    /// node that lost ownership, and every such write is a call bounded by
    /// `call_timeout`, long over; a node only keeps acting as owner while
    /// its own heartbeats come back, so none can still hold a claim from
    /// before the release.
    pub released_epoch_ttl: Duration,
    /// How long after a Redis restart a claim of a group Redis has no
    /// record of waits, when this node was in the cluster before that
    /// restart (default 5 s, whole seconds; Redis counts its uptime in
    /// whole seconds, so the wait ends 5 to 6 s after it started). A Redis
    /// restarted without persistence lost every group's claim; each owner
    /// claims its groups back by writing them down again once it reaches
    /// Redis (its
    /// resubscription backoff, up to 1 s plus a 1 s attempt, and a snapshot
    /// write's retry backoff, up to 2 s). A newcomer's node that claimed a
    /// group before that would found a second group of the same key.
    /// Nodes that connected after Redis started (a fresh deployment) are
    /// never held. 0 turns the hold off.
    pub restart_hold: Duration,
    /// How often a subscription checks its connection (default 1 s).
    pub probe_interval: Duration,
    /// How long a subscription's check may wait before the connection is
    /// deemed broken and replaced (default 3 s: longer than a short Redis
    /// pause, which loses nothing if the connection survives it).
    pub probe_timeout: Duration,
    /// First delay before resubscribing after a failure (default 50 ms);
    /// doubles on each failed attempt.
    pub min_backoff: Duration,
    /// Longest delay between resubscription attempts (default 1 s).
    pub max_backoff: Duration,
    /// Deliveries buffered for a slow receiver before the subscription
    /// waits for it, and messages from Redis queued meanwhile (default
    /// 4096 each). Past both the subscription drops what comes and is made
    /// again, as after a lost connection, so that a stalled node's memory
    /// stays bounded.
    pub delivery_capacity: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            call_timeout: Duration::from_secs(1),
            released_epoch_ttl: Duration::from_secs(3600),
            restart_hold: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(3),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            delivery_capacity: 4096,
        }
    }
}

/// The cluster transport on Redis (see the module docs).
pub struct RedisTransport {
    backend: Arc<Backend>,
    /// When this node first reached Redis (see [`RedisOptions::restart_hold`]).
    connected_at: tokio::time::Instant,
    keys: KeyLayout,
    options: RedisOptions,
    claim: Script,
    write_snapshot: Script,
    release: Script,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Connects with the default options and `prefix`. `url_or_seeds`: one
    /// `redis://host:port[/db]` (standalone), several URLs or
    /// `redis+cluster://host:port[,host:port...]` (Redis Cluster), or
    /// `redis+sentinel://host:port[,host:port...]/<master-name>[/db]`.
    pub async fn connect(url_or_seeds: &[String], prefix: &str) -> Result<Self, TransportError> {
        Self::connect_with(
            url_or_seeds,
            RedisOptions {
                prefix: prefix.to_owned(),
                ..RedisOptions::default()
            },
        )
        .await
    }

    /// Connects with explicit options. Fails with `Unreachable` when Redis
    /// does not answer within the call timeout, `Protocol` when the URLs or
    /// the prefix are not usable.
    pub async fn connect_with(
        url_or_seeds: &[String],
        options: RedisOptions,
    ) -> Result<Self, TransportError> {
        let topology = address::parse_topology(url_or_seeds).map_err(TransportError::Protocol)?;
        let keys = KeyLayout::new(&options.prefix).map_err(TransportError::Protocol)?;
        let backend =
            tokio::time::timeout(options.call_timeout, Backend::connect(topology, &options))
                .await
                .map_err(|_| {
                    TransportError::Unreachable(format!(
                        "connect: no answer within {:?}",
                        options.call_timeout
                    ))
                })?
                .map_err(|error| transport_error("connect", &error))?;
        Ok(Self {
            backend: Arc::new(backend),
            connected_at: tokio::time::Instant::now(),
            keys,
            options,
            claim: Script::new(scripts::CLAIM),
            write_snapshot: Script::new(scripts::WRITE_SNAPSHOT),
            release: Script::new(scripts::RELEASE),
        })
    }

    /// Runs `request` within the call timeout.
    async fn call<T: redis::FromRedisValue>(
        &self,
        operation: &str,
        request: Request<'_>,
    ) -> Result<T, TransportError> {
        match tokio::time::timeout(self.options.call_timeout, self.backend.run(request)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(transport_error(operation, &error)),
            Err(_) => {
                self.backend.suspect_master();
                Err(TransportError::Unreachable(format!(
                    "{operation}: no answer within {:?}",
                    self.options.call_timeout
                )))
            }
        }
    }

    async fn publish(
        &self,
        sharded: bool,
        channel: &str,
        payload: Bytes,
    ) -> Result<usize, TransportError> {
        let command = if sharded { "SPUBLISH" } else { "PUBLISH" };
        let mut publish = redis::cmd(command);
        publish.arg(channel).arg(payload.as_ref());
        self.call(command, Request::Command(&publish)).await
    }
}

impl Transport for RedisTransport {
    async fn subscribe(&self, me: NodeId) -> Result<mpsc::Receiver<Delivery>, TransportError> {
        let plan = subscriber::SubscriptionPlan {
            backend: Arc::clone(&self.backend),
            inbox: self.keys.inbox(me),
            control: self.keys.control(),
            options: self.options.clone(),
        };
        subscriber::start(plan)
            .await
            .map_err(|error: RedisError| transport_error("subscribe", &error))
    }

    async fn publish_inbox(&self, node: NodeId, payload: Bytes) -> Result<usize, TransportError> {
        self.publish(self.backend.sharded(), &self.keys.inbox(node), payload)
            .await
    }

    async fn publish_control(&self, payload: Bytes) -> Result<usize, TransportError> {
        self.publish(false, &self.keys.control(), payload).await
    }

    async fn register(&self, me: NodeId, now_ms: u64) -> Result<(), TransportError> {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(self.keys.nodes()).arg(now_ms).arg(me);
        self.call::<i64>("register", Request::Command(&zadd))
            .await
            .map(|_| ())
    }

    async fn deregister(&self, node: NodeId) -> Result<(), TransportError> {
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(self.keys.nodes()).arg(node);
        self.call::<i64>("deregister", Request::Command(&zrem))
            .await
            .map(|_| ())
    }

    async fn claim(
        &self,
        group: GroupHash,
        me: NodeId,
        expected: Option<(NodeId, u64)>,
    ) -> Result<Claim, TransportError> {
        /// How often a held claim asks again.
        const HELD_RETRY: Duration = Duration::from_millis(100);
        let (expected_node, expected_epoch) = match expected {
            Some((node, epoch)) => (node.to_string(), epoch),
            None => (String::new(), 0),
        };
        let hold_s = self.options.restart_hold.as_secs();
        // The script holds for at most `hold_s` + 1 s of Redis's uptime;
        // the margin covers the calls themselves.
        let give_up = tokio::time::Instant::now()
            + self.options.restart_hold
            + Duration::from_secs(1)
            + self.options.call_timeout;
        let mut hold_logged = false;
        loop {
            let age_ms = u64::try_from(self.connected_at.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut invocation = self.claim.prepare_invoke();
            invocation
                .key(self.keys.owner(&group))
                .key(self.keys.snapshot(&group))
                .arg(me)
                .arg(&expected_node)
                .arg(expected_epoch)
                .arg(hold_s)
                .arg(age_ms);
            let reply = self.call("claim", Request::Script(&invocation)).await?;
            match scripts::decode_claim(reply)? {
                ClaimReply::Decided(claim) => return Ok(claim),
                ClaimReply::Held { redis_uptime_s } => {
                    if !hold_logged {
                        hold_logged = true;
                        tracing::debug!(
                            redis_uptime_s,
                            "claim held: Redis restarted and lost the directory; \
                             waiting for the owners to write their groups again"
                        );
                    }
                    if tokio::time::Instant::now() >= give_up {
                        return Err(TransportError::Unreachable(format!(
                            "claim: still held {:?} after a Redis restart",
                            self.options.restart_hold
                        )));
                    }
                    tokio::time::sleep(HELD_RETRY).await;
                }
            }
        }
    }

    async fn write_snapshot(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
        snapshot: Bytes,
    ) -> Result<bool, TransportError> {
        let mut invocation = self.write_snapshot.prepare_invoke();
        invocation
            .key(self.keys.owner(&group))
            .key(self.keys.snapshot(&group))
            .arg(me)
            .arg(epoch)
            .arg(snapshot.as_ref());
        let reply = self
            .call("write_snapshot", Request::Script(&invocation))
            .await?;
        scripts::decode_flag("write_snapshot", reply)
    }

    async fn release(
        &self,
        group: GroupHash,
        me: NodeId,
        epoch: u64,
    ) -> Result<bool, TransportError> {
        // PEXPIRE refuses absurd values: cap at ten years.
        const LONGEST_KEEP_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
        let keep_ms = u64::try_from(self.options.released_epoch_ttl.as_millis())
            .unwrap_or(LONGEST_KEEP_MS)
            .clamp(1, LONGEST_KEEP_MS);
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(self.keys.owner(&group))
            .key(self.keys.snapshot(&group))
            .arg(me)
            .arg(epoch)
            .arg(keep_ms);
        let reply = self.call("release", Request::Script(&invocation)).await?;
        scripts::decode_flag("release", reply)
    }

    async fn write_node_figures(
        &self,
        me: NodeId,
        figures: Bytes,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        // PX 0 is refused by Redis; a TTL under a millisecond is one.
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(self.keys.node_figures(me))
            .arg(figures.as_ref())
            .arg("PX")
            .arg(ttl_ms);
        self.call::<()>("write_node_figures", Request::Command(&set))
            .await
    }

    async fn read_node_figures(
        &self,
        nodes: Vec<NodeId>,
    ) -> Result<Vec<(NodeId, Bytes)>, TransportError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = redis::cmd("MGET");
        for node in &nodes {
            mget.arg(self.keys.node_figures(*node));
        }
        let values: Vec<Option<Vec<u8>>> = self
            .call("read_node_figures", Request::Command(&mget))
            .await?;
        Ok(nodes
            .into_iter()
            .zip(values)
            .filter_map(|(node, value)| Some((node, Bytes::from(value?))))
            .collect())
    }
}

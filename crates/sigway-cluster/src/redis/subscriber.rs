//! One node's subscription: its inbox and the control channel, on one
//! dedicated connection, kept alive across Redis failures.
//!
//! The connection speaks RESP3 so that pushes (messages) and replies
//! (subscription confirmations, health probes) share it. On a Redis
//! Cluster the inbox is a shard channel, subscribed with SSUBSCRIBE on the
//! master serving its slot; control is an ordinary channel, which Redis
//! Cluster propagates to every node, so it is subscribed on that same
//! connection. A probe (PING, or ROLE when a failover can move the master)
//! runs every [`RedisOptions::probe_interval`]: a connection that stops
//! answering (a silent network failure) or a server that is no longer a
//! master counts as broken, as does a closed connection or a server-side
//! unsubscription (the slot moved).
//!
//! When broken: [`Delivery::Interrupted`] (and, on Sentinel, the command
//! connection is told to ask the sentinels again), then attempts with exponential
//! backoff (one log line per failed attempt), each resolving the target
//! again, then [`Delivery::Resubscribed`]. The task ends when the receiver
//! of deliveries is dropped. Payloads stay bytes end to end.
//!
//! Memory stays bounded when the node reads slower than Redis sends:
//! redis-rs hands each push to a callback that must not block, which puts
//! it in a queue of [`RedisOptions::delivery_capacity`] pushes in front of
//! the deliveries' own queue of that size. A push that finds the queue full
//! is dropped and the subscription counts as broken, as for a lost
//! connection: the node resubscribes and the bus's link layer sends again
//! what was lost (Redis itself disconnects a subscriber whose output
//! buffer passes its `client-output-buffer-limit pubsub`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, RedisError, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::RedisOptions;
use super::backend::Backend;
use crate::Delivery;

/// What one subscription listens to, and how.
#[derive(Clone)]
pub(crate) struct SubscriptionPlan {
    pub(crate) backend: Arc<Backend>,
    pub(crate) inbox: String,
    pub(crate) control: String,
    pub(crate) options: RedisOptions,
}

/// An established subscription.
struct Session {
    pushes: mpsc::Receiver<PushInfo>,
    /// Set when a push found `pushes` full and was dropped.
    overflowed: Arc<AtomicBool>,
    server: String,
    /// Fires with a reason when the health probe fails.
    probe_failed: oneshot::Receiver<String>,
    probe: JoinHandle<()>,
    /// Kept so the connection lives as long as the session.
    _connection: MultiplexedConnection,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// Subscribes once (an error when Redis cannot be reached within the call
/// timeout), then keeps the subscription alive in a task.
pub(crate) async fn start(plan: SubscriptionPlan) -> Result<mpsc::Receiver<Delivery>, RedisError> {
    let session = open_within_timeout(&plan).await?;
    let (deliveries, receiver) = mpsc::channel(plan.options.delivery_capacity.max(1));
    tokio::spawn(keep_alive(plan, session, deliveries));
    Ok(receiver)
}

async fn open_within_timeout(plan: &SubscriptionPlan) -> Result<Session, RedisError> {
    match tokio::time::timeout(plan.options.call_timeout, open(plan)).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {:?}", plan.options.call_timeout),
        ))),
    }
}

async fn open(plan: &SubscriptionPlan) -> Result<Session, RedisError> {
    let info = plan.backend.subscriber_target(&plan.inbox).await?;
    let server = info.addr().to_string();
    let client = Client::open(info)?;
    let (push_sender, pushes) = mpsc::channel(plan.options.delivery_capacity.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    let overflow = overflowed.clone();
    // Called by redis-rs's connection task, which must not wait.
    let push_to_queue = move |push: PushInfo| {
        push_sender.try_send(push).map_err(|error| {
            if matches!(error, mpsc::error::TrySendError::Full(_)) {
                overflow.store(true, Ordering::Release);
            }
        })
    };
    let config = AsyncConnectionConfig::new()
        .set_push_sender(push_to_queue)
        .set_connection_timeout(Some(plan.options.call_timeout))
        // Calls on this connection are bounded by the caller (the probe
        // timeout may be longer than the call timeout).
        .set_response_timeout(None);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    if plan.backend.sharded() {
        // One channel per SSUBSCRIBE: one confirmation, which redis-rs
        // takes as the command's reply.
        redis::cmd("SSUBSCRIBE")
            .arg(&plan.inbox)
            .exec_async(&mut connection)
            .await?;
    } else {
        connection.subscribe(&plan.inbox).await?;
    }
    connection.subscribe(&plan.control).await?;
    let (probe_failure, probe_failed) = oneshot::channel();
    let probe = tokio::spawn(probe(
        connection.clone(),
        plan.backend.follows_failover(),
        plan.options.probe_interval,
        plan.options.probe_timeout,
        probe_failure,
    ));
    Ok(Session {
        pushes,
        overflowed,
        server,
        probe_failed,
        probe,
        _connection: connection,
    })
}

/// Checks every `interval` that the server answers within `timeout` (and
/// is a master, when `master_only`); reports the first failure.
async fn probe(
    mut connection: MultiplexedConnection,
    master_only: bool,
    interval: Duration,
    timeout: Duration,
    failure: oneshot::Sender<String>,
) {
    loop {
        tokio::time::sleep(interval).await;
        let command = if master_only { "ROLE" } else { "PING" };
        let answer = tokio::time::timeout(
            timeout,
            redis::cmd(command).query_async::<Value>(&mut connection),
        )
        .await;
        let problem = match answer {
            Err(_) => format!("no answer to {command} within {timeout:?}"),
            Ok(Err(error)) => format!("{command} failed: {error}"),
            Ok(Ok(reply)) if master_only && !is_master_role(&reply) => {
                "the server is no longer a master".to_owned()
            }
            Ok(Ok(_)) => continue,
        };
        let _ = failure.send(problem);
        return;
    }
}

fn is_master_role(reply: &Value) -> bool {
    match reply {
        Value::Array(fields) => {
            matches!(
                fields.first(),
                Some(Value::BulkString(role)) if role.as_slice() == b"master"
            ) || matches!(fields.first(), Some(Value::SimpleString(role)) if role == "master")
        }
        _ => false,
    }
}

enum Ended {
    ReceiverGone,
    Broken(String),
}

async fn keep_alive(
    plan: SubscriptionPlan,
    mut session: Session,
    deliveries: mpsc::Sender<Delivery>,
) {
    loop {
        let reason = match forward(&plan, &mut session, &deliveries).await {
            Ended::ReceiverGone => return,
            Ended::Broken(reason) => reason,
        };
        tracing::warn!(
            server = %session.server,
            inbox = %plan.inbox,
            "cluster transport: Redis subscription lost ({reason}); resubscribing"
        );
        drop(session);
        plan.backend.suspect_master();
        if deliveries.send(Delivery::Interrupted).await.is_err() {
            return;
        }
        session = match resubscribe(&plan, &deliveries).await {
            Some(session) => session,
            None => return,
        };
        tracing::info!(
            server = %session.server,
            inbox = %plan.inbox,
            "cluster transport: Redis subscription restored"
        );
        if deliveries.send(Delivery::Resubscribed).await.is_err() {
            return;
        }
    }
}

/// Passes pushes on until the session breaks or nobody listens any more.
async fn forward(
    plan: &SubscriptionPlan,
    session: &mut Session,
    deliveries: &mpsc::Sender<Delivery>,
) -> Ended {
    loop {
        let push = tokio::select! {
            biased;
            () = deliveries.closed() => return Ended::ReceiverGone,
            reason = &mut session.probe_failed => {
                return Ended::Broken(reason.unwrap_or_else(|_| "probe stopped".to_owned()));
            }
            push = session.pushes.recv() => push,
        };
        if session.overflowed.load(Ordering::Acquire) {
            return Ended::Broken(format!(
                "over {} messages waited for this node; some were dropped",
                plan.options.delivery_capacity.max(1)
            ));
        }
        let Some(push) = push else {
            return Ended::Broken("connection closed".to_owned());
        };
        let delivery = match push.kind {
            PushKind::Message | PushKind::SMessage => match message(plan, push.data) {
                Some(delivery) => delivery,
                None => continue,
            },
            PushKind::Disconnection => return Ended::Broken("connection closed".to_owned()),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                return Ended::Broken("the server dropped the subscription".to_owned());
            }
            _ => continue,
        };
        if deliveries.send(delivery).await.is_err() {
            return Ended::ReceiverGone;
        }
    }
}

/// A `[channel, payload]` message as a delivery (None for other channels).
fn message(plan: &SubscriptionPlan, data: Vec<Value>) -> Option<Delivery> {
    let [channel, payload] = <[Value; 2]>::try_from(data).ok()?;
    let (Value::BulkString(channel), Value::BulkString(payload)) = (channel, payload) else {
        return None;
    };
    let payload = Bytes::from(payload);
    if channel == plan.inbox.as_bytes() {
        Some(Delivery::Inbox(payload))
    } else if channel == plan.control.as_bytes() {
        Some(Delivery::Control(payload))
    } else {
        None
    }
}

/// Tries again with exponential backoff until it works (None when the
/// receiver is dropped meanwhile).
async fn resubscribe(
    plan: &SubscriptionPlan,
    deliveries: &mpsc::Sender<Delivery>,
) -> Option<Session> {
    let mut delay = plan.options.min_backoff;
    let mut attempt: u64 = 0;
    loop {
        tokio::select! {
            () = deliveries.closed() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
        match open_within_timeout(plan).await {
            Ok(session) => return Some(session),
            Err(error) => {
                delay = (delay * 2).min(plan.options.max_backoff);
                tracing::warn!(
                    attempt,
                    inbox = %plan.inbox,
                    "cluster transport: resubscribing to Redis failed ({error}); next attempt in {delay:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_read_from_role_replies() {
        let master = Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(0),
            Value::Array(vec![]),
        ]);
        let replica = Value::Array(vec![Value::BulkString(b"slave".to_vec())]);
        assert!(is_master_role(&master));
        assert!(!is_master_role(&replica));
        assert!(!is_master_role(&Value::Nil));
    }
}

//! The room directory's three Lua scripts and the decoding of their replies.
//!
//! Each script touches one group's owner hash (`KEYS[1]`, fields `node`
//! and `epoch`) and snapshot (`KEYS[2]`, same hash slot), atomically:
//!
//! - `claim(me, expected_node, expected_epoch, hold_s, caller_age_ms)`:
//!   wins when nobody owns the group, or when its owner is exactly
//!   (`expected_node`, `expected_epoch`); winning sets the owner to `me` at
//!   epoch + 1. It returns the owner, its epoch, and the snapshot when the
//!   caller is that owner. It is held instead (replies with Redis's uptime,
//!   an integer) when the group has no record at all, Redis's uptime is at
//!   most `hold_s` seconds (so the hold lasts from `hold_s` to `hold_s` + 1
//!   seconds), and the caller's age passes that uptime by
//!   more than a second: Redis restarted and lost its data, and the group
//!   may still be owned by a node that has not written it down again yet
//!   (see [`super::RedisOptions::restart_hold`]). Redis counts its uptime
//!   in whole seconds of the clock, which can read up to one second more
//!   than the time passed, so only a caller connected before the start
//!   passes it by a second (a fresh deployment is never held), and every
//!   caller connected over two seconds before the start does.
//! - `write_snapshot(me, epoch, bytes)`: writes only while (`me`, `epoch`)
//!   still owns the group, or when the group has no owner hash at all
//!   (not even a release's tombstone): Redis lost its data (a restart
//!   without persistence), and the owner's write claims the group again at
//!   its epoch.
//! - `release(me, epoch, keep_ms)`: only while (`me`, `epoch`) owns it,
//!   deletes the snapshot and the `node` field, and keeps the `epoch` field
//!   for `keep_ms` (a tombstone), so that a group claimed again soon
//!   continues its epochs instead of restarting at 1. See
//!   [`super::RedisOptions::released_epoch_ttl`] for why a restart at 1 after
//!   that delay is safe.
//!
//! Epochs travel as decimal strings and are compared as strings (a Lua
//! number is a double), and written with `%d`, so they stay canonical.

use bytes::Bytes;
use redis::Value;

use crate::{Claim, NodeId, TransportError};

/// `KEYS` owner, snapshot; `ARGV` me, expected node (`""`: none),
/// expected epoch, hold seconds, caller's age in ms. Returns `{owner,
/// epoch, snapshot-or-nil}`, or Redis's uptime in seconds when held.
/// (`INFO` through `pcall`: where an ACL forbids it, nothing is held.)
pub(crate) const CLAIM: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'node')
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local hold_s = tonumber(ARGV[4])
if (not epoch) and hold_s > 0 then
  local info = redis.pcall('INFO', 'server')
  local uptime = type(info) == 'string'
    and tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
  if uptime and uptime <= hold_s and tonumber(ARGV[5]) > (uptime + 1) * 1000 then
    return uptime
  end
end
local takes_over = ARGV[2] ~= '' and owner == ARGV[2] and epoch == ARGV[3]
if (not owner) or takes_over then
  owner = ARGV[1]
  epoch = string.format('%d', (tonumber(epoch) or 0) + 1)
  redis.call('HSET', KEYS[1], 'node', owner, 'epoch', epoch)
  redis.call('PERSIST', KEYS[1])
end
local snapshot = false
if owner == ARGV[1] then
  snapshot = redis.call('GET', KEYS[2])
end
return {owner, epoch, snapshot}
"#;

/// `KEYS` owner, snapshot; `ARGV` me, epoch, snapshot bytes. Returns 1
/// when written, 0 when (me, epoch) no longer owns the group.
pub(crate) const WRITE_SNAPSHOT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'node', ARGV[1], 'epoch', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3])
  return 1
end
if redis.call('HGET', KEYS[1], 'node') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[3])
  return 1
end
return 0
"#;

/// `KEYS` owner, snapshot; `ARGV` me, epoch, milliseconds to remember the
/// epoch. Returns 1 when released, 0 when (me, epoch) no longer owns it.
pub(crate) const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'node')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"#;

/// What the claim script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimReply {
    /// The claim was decided.
    Decided(Claim),
    /// The claim is held: Redis restarted this many seconds ago.
    Held { redis_uptime_s: u64 },
}

/// Reads the claim script's `{owner, epoch, snapshot}` reply, or its
/// uptime when it held the claim.
pub(crate) fn decode_claim(reply: Value) -> Result<ClaimReply, TransportError> {
    let bad = |what: &str| TransportError::Protocol(format!("claim script replied {what}"));
    let items = match reply {
        Value::Int(uptime) => {
            return u64::try_from(uptime)
                .map(|redis_uptime_s| ClaimReply::Held { redis_uptime_s })
                .map_err(|_| bad(&format!("the uptime {uptime}")));
        }
        Value::Array(items) => items,
        other => return Err(bad(&format!("{other:?}, not an array"))),
    };
    let [owner, epoch, snapshot] = <[Value; 3]>::try_from(items)
        .map_err(|items| bad(&format!("{} items, not 3", items.len())))?;
    let owner = text(&owner)
        .and_then(|owner| owner.parse::<NodeId>().ok())
        .ok_or_else(|| bad(&format!("the owner {owner:?}")))?;
    let epoch = text(&epoch)
        .and_then(|epoch| epoch.parse::<u64>().ok())
        .ok_or_else(|| bad(&format!("the epoch {epoch:?}")))?;
    let snapshot = match snapshot {
        Value::Nil => None,
        Value::BulkString(bytes) => Some(Bytes::from(bytes)),
        other => return Err(bad(&format!("the snapshot {other:?}"))),
    };
    Ok(ClaimReply::Decided(Claim {
        owner,
        epoch,
        snapshot,
    }))
}

/// Reads a script's 0/1 answer.
pub(crate) fn decode_flag(script: &str, reply: Value) -> Result<bool, TransportError> {
    match reply {
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        other => Err(TransportError::Protocol(format!(
            "{script} script replied {other:?}, not 0 or 1"
        ))),
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_claim_reply_decodes() {
        assert_eq!(
            decode_claim(Value::Array(vec![bulk("7"), bulk("12"), Value::Nil])),
            Ok(ClaimReply::Decided(Claim {
                owner: 7,
                epoch: 12,
                snapshot: None
            }))
        );
        assert_eq!(
            decode_claim(Value::Int(3)),
            Ok(ClaimReply::Held { redis_uptime_s: 3 })
        );
        assert_eq!(
            decode_claim(Value::Array(vec![
                bulk("4294967295"),
                bulk("18446744073709551615"),
                Value::BulkString(vec![0, 255, 10]),
            ])),
            Ok(ClaimReply::Decided(Claim {
                owner: u32::MAX,
                epoch: u64::MAX,
                snapshot: Some(Bytes::from_static(&[0, 255, 10]))
            }))
        );
    }

    #[test]
    fn malformed_claim_replies_are_protocol_errors() {
        for reply in [
            Value::Nil,
            Value::Int(-1),
            Value::Array(vec![bulk("7"), bulk("1")]),
            Value::Array(vec![bulk("x"), bulk("1"), Value::Nil]),
            Value::Array(vec![bulk("4294967296"), bulk("1"), Value::Nil]),
            Value::Array(vec![bulk("7"), bulk("-1"), Value::Nil]),
            Value::Array(vec![bulk("7"), bulk("1"), Value::Int(3)]),
        ] {
            assert!(
                matches!(
                    decode_claim(reply.clone()),
                    Err(TransportError::Protocol(_))
                ),
                "{reply:?} decoded"
            );
        }
    }

    #[test]
    fn flags_are_zero_or_one() {
        assert_eq!(decode_flag("release", Value::Int(0)), Ok(false));
        assert_eq!(decode_flag("release", Value::Int(1)), Ok(true));
        assert!(decode_flag("release", Value::Int(2)).is_err());
        assert!(decode_flag("release", Value::Nil).is_err());
    }
}

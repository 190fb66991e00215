//! The room directory's three Lua scripts and the decoding of their replies.
//!
//! Each script touches one group's owner hash (`KEYS[1]`, fields `node`
//! and `epoch`) and snapshot (`KEYS[2]`, same hash slot), atomically:
//!
//! - `claim(me, expected_node, expected_epoch)`: wins when nobody owns the
//!   group, or when its owner is exactly (`expected_node`, `expected_epoch`);
//!   winning sets the owner to `me` at epoch + 1. It returns the owner, its
//!   epoch, and the snapshot when the caller is that owner.
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
/// expected epoch. Returns `{owner, epoch, snapshot-or-nil}`.
pub(crate) const CLAIM: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'node')
local epoch = redis.call('HGET', KEYS[1], 'epoch')
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

/// Reads the claim script's `{owner, epoch, snapshot}` reply.
pub(crate) fn decode_claim(reply: Value) -> Result<Claim, TransportError> {
    let bad = |what: &str| TransportError::Protocol(format!("claim script replied {what}"));
    let Value::Array(items) = reply else {
        return Err(bad(&format!("{reply:?}, not an array")));
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
    Ok(Claim {
        owner,
        epoch,
        snapshot,
    })
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
            Ok(Claim {
                owner: 7,
                epoch: 12,
                snapshot: None
            })
        );
        assert_eq!(
            decode_claim(Value::Array(vec![
                bulk("4294967295"),
                bulk("18446744073709551615"),
                Value::BulkString(vec![0, 255, 10]),
            ])),
            Ok(Claim {
                owner: u32::MAX,
                epoch: u64::MAX,
                snapshot: Some(Bytes::from_static(&[0, 255, 10]))
            })
        );
    }

    #[test]
    fn malformed_claim_replies_are_protocol_errors() {
        for reply in [
            Value::Nil,
            Value::Int(1),
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

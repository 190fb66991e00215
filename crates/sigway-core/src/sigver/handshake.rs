//! What a sigver upgrade request says, checked before the session exists:
//! the key (the raw path without its leading `/`, escapes kept, at most 512
//! characters), the `?favored` flag and the dialect (`?protocol=legacy` or
//! `current`, else the configured default).

use crate::error::{SigverDialect, SigverError};

/// Longest key accepted, in characters (sigver's limit).
pub const MAX_KEY_CHARS: usize = 512;

/// The key (raw path without its leading `/`, escapes kept) or why it is refused.
pub fn key_of(path: &str) -> Result<&str, SigverError> {
    let key = path.strip_prefix('/').unwrap_or(path);
    if key.is_empty() {
        return Err(SigverError::EmptyKey);
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(SigverError::KeyTooLong(MAX_KEY_CHARS));
    }
    Ok(key)
}

/// Whether the query string carries `name` (with any value, or none).
pub fn has_query_flag(query: &str, name: &str) -> bool {
    query_value(query, name).is_some()
}

/// The value of `name` in a query string (`""` for a bare flag).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The dialect a connection speaks: what `?protocol=` asks for, else
/// `default` (any other value counts as not asking).
pub fn dialect_of(query: &str, default: SigverDialect) -> SigverDialect {
    match query_value(query, "protocol") {
        Some("legacy") => SigverDialect::Legacy,
        Some("current") => SigverDialect::Current,
        _ => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_the_raw_path_without_its_slash() {
        assert_eq!(key_of("/a%20b/c"), Ok("a%20b/c"));
        assert_eq!(key_of("/"), Err(SigverError::EmptyKey));
        assert!(key_of(&format!("/{}", "k".repeat(512))).is_ok());
        assert_eq!(
            key_of(&format!("/{}", "k".repeat(513))),
            Err(SigverError::KeyTooLong(512))
        );
        assert!(
            key_of(&format!("/{}", "é".repeat(512))).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn query_flags_accept_any_value() {
        assert!(has_query_flag("favored", "favored"));
        assert!(has_query_flag("a=1&favored=0", "favored"));
        assert!(!has_query_flag("unfavored", "favored"));
        assert_eq!(
            query_value("protocol=legacy&favored", "protocol"),
            Some("legacy")
        );
    }

    #[test]
    fn the_query_picks_the_dialect_else_the_default_holds() {
        use SigverDialect::{Current, Legacy};
        assert_eq!(dialect_of("protocol=legacy", Current), Legacy);
        assert_eq!(dialect_of("favored&protocol=current", Legacy), Current);
        assert_eq!(dialect_of("protocol=other", Legacy), Legacy);
        assert_eq!(dialect_of("", Current), Current);
    }
}

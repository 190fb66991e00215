//! What a sigver upgrade request says, checked before the session exists:
//! the key (the raw path without its leading `/`, escapes kept, at most 512
//! characters), the `?favored` flag, the dialect (`?protocol=legacy` or
//! `current`, else the configured default) and the subprotocol to echo.
//! The URL is read as sigver's `url.parse(url, true)` read it: a backslash
//! in the path is a slash, query names are unescaped (`fav%6Fred` is
//! `favored`) and only the first 1000 `&`-separated pairs count.

use std::borrow::Cow;

use crate::error::{SigverDialect, SigverError};

/// Longest key accepted, in characters (sigver's limit).
pub const MAX_KEY_CHARS: usize = 512;

/// The key (raw path without its leading `/`, escapes kept, backslashes
/// made slashes as `url.parse` made them) or why it is refused.
pub fn key_of(path: &str) -> Result<Cow<'_, str>, SigverError> {
    let key = path.strip_prefix('/').unwrap_or(path);
    let key = if key.contains('\\') {
        Cow::Owned(key.replace('\\', "/"))
    } else {
        Cow::Borrowed(key)
    };
    if key.is_empty() {
        return Err(SigverError::EmptyKey);
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(SigverError::KeyTooLong(MAX_KEY_CHARS));
    }
    Ok(key)
}

/// Node's `querystring.parse` (its default `maxKeys`) reads this many
/// `&`-separated pairs and ignores the rest, empty ones included.
const MAX_QUERY_PAIRS: usize = 1000;

/// The subprotocol to answer a `Sec-WebSocket-Protocol` request header
/// with: the first one offered, as sigver's `ws` (and sigver 18's `uws`)
/// did without looking at it; none when that one is empty.
pub fn echoed_subprotocol(offered: &str) -> Option<&str> {
    offered
        .split(',')
        .next()
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
}

/// Whether the query string carries `name` (with any value, or none).
pub fn has_query_flag(query: &str, name: &str) -> bool {
    query_value(query, name).is_some()
}

/// The value of `name` in a query string (`""` for a bare flag), as
/// written (values are not unescaped).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').take(MAX_QUERY_PAIRS).find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        unescapes_to(k, name).then_some(v)
    })
}

/// Whether `escaped`, unescaped as `querystring.unescape` does (`+` is a
/// space, `%XX` a byte, any other `%` itself), is `name`.
fn unescapes_to(escaped: &str, name: &str) -> bool {
    let (bytes, mut expected) = (escaped.as_bytes(), name.bytes());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |i: usize| {
            bytes
                .get(i)
                .and_then(|&b| char::from(b).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        let byte = match bytes[at] {
            b'+' => b' ',
            b'%' => match (hex(at + 1), hex(at + 2)) {
                (Some(high), Some(low)) => {
                    at += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            other => other,
        };
        at += 1;
        if expected.next() != Some(byte) {
            return false;
        }
    }
    expected.next().is_none()
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
        assert_eq!(key_of("/a%20b/c").as_deref(), Ok("a%20b/c"));
        assert_eq!(
            key_of("/a\\b\\").as_deref(),
            Ok("a/b/"),
            "as url.parse reads it"
        );
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

    /// What sigver 20.1.0's `"favored" in url.parse(url, true).query` says,
    /// as checked on Node 20.
    #[test]
    fn query_names_are_unescaped_and_only_the_first_1000_pairs_count() {
        assert!(has_query_flag("fav%6Fred", "favored"));
        assert!(has_query_flag("%66avored=1", "favored"));
        assert!(has_query_flag("fav%6fred", "favored"));
        assert!(!has_query_flag("fav+ored", "favored"));
        assert!(has_query_flag("fav+ored", "fav ored"));
        assert!(!has_query_flag("favored%", "favored"));
        assert!(!has_query_flag("%zzfavored", "favored"));
        assert!(!has_query_flag("favored%3D1", "favored"));
        let after = |pairs: usize, sep: &str| format!("{}favored", format!("a{sep}").repeat(pairs));
        assert!(has_query_flag(&after(999, "&"), "favored"));
        assert!(!has_query_flag(&after(1000, "&"), "favored"));
        assert!(!has_query_flag(&after(600, "&&"), "favored"));
    }

    #[test]
    fn the_first_subprotocol_offered_is_echoed() {
        assert_eq!(echoed_subprotocol("foo, bar"), Some("foo"));
        assert_eq!(echoed_subprotocol(" foo "), Some("foo"));
        assert_eq!(echoed_subprotocol(", bar"), None);
        assert_eq!(echoed_subprotocol(""), None);
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

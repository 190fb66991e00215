//! Which browser origins may talk to the server: the pure matching of an
//! `Origin` header against `http.allowed_origins`.
//!
//! An origin is `scheme://host[:port]` as browsers serialise it. Allowed
//! entries are exact origins (`https://app.example.org`), subdomain
//! patterns (`https://*.example.org`: one or more labels in front of the
//! domain, never the bare domain) or the literal `null` (sandboxed frames,
//! `file:` pages), which matches only when listed. Scheme and host compare
//! case-insensitively; the port is significant, with the scheme's default
//! port (80 for http/ws, 443 for https/wss) the same as no port, as
//! browsers leave it out. No I/O here: the edge layer calls [`OriginPolicy::allows`].

use std::fmt;

/// An origin or a pattern, normalised: lower-case scheme and host, the
/// port made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    scheme: String,
    /// The host; for a pattern, the domain after `*.`.
    host: String,
    port: u16,
    wildcard: bool,
}

/// Why an `allowed_origins` entry is not an origin or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOriginPattern {
    /// The entry as configured.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for BadOriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allowed origin {:?}: {} (expected scheme://host[:port], scheme://*.domain[:port] or null)",
            self.entry, self.reason
        )
    }
}

impl std::error::Error for BadOriginPattern {}

/// `http.allowed_origins` and `http.allow_missing_origin`, parsed.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    patterns: Vec<Parsed>,
    allow_null: bool,
    allow_missing: bool,
}

impl Default for OriginPolicy {
    /// Any origin, and none (the Node servers checked nothing).
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            allow_null: false,
            allow_missing: true,
        }
    }
}

/// What the policy says of one request's `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginVerdict {
    /// The origin may be served (and reflected in CORS answers).
    Allowed,
    /// The request carries no `Origin` and that is allowed.
    Missing,
    /// Refused: not in the list, unparseable, or missing when that is not allowed.
    Denied,
}

impl OriginPolicy {
    /// Parses the configured entries; an empty list allows every origin.
    pub fn new<S: AsRef<str>>(
        allowed: &[S],
        allow_missing: bool,
    ) -> Result<Self, BadOriginPattern> {
        let mut policy = Self {
            patterns: Vec::new(),
            allow_null: false,
            allow_missing,
        };
        for entry in allowed {
            let entry = entry.as_ref().trim();
            if entry.eq_ignore_ascii_case("null") {
                policy.allow_null = true;
                continue;
            }
            let parsed = parse(entry, true).map_err(|reason| BadOriginPattern {
                entry: entry.to_owned(),
                reason,
            })?;
            policy.patterns.push(parsed);
        }
        Ok(policy)
    }

    /// Whether every origin is allowed (no list configured).
    pub fn allows_any(&self) -> bool {
        self.patterns.is_empty() && !self.allow_null
    }

    /// The verdict on a request whose `Origin` header is `origin` (`None`
    /// or empty: no header).
    pub fn check(&self, origin: Option<&[u8]>) -> OriginVerdict {
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return if self.allow_missing {
                OriginVerdict::Missing
            } else {
                OriginVerdict::Denied
            };
        };
        if self.allows(origin) {
            OriginVerdict::Allowed
        } else {
            OriginVerdict::Denied
        }
    }

    /// Whether the origin `origin` (a header value) is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.allows_any() {
            return true;
        }
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let origin = origin.trim();
        if origin.eq_ignore_ascii_case("null") {
            return self.allow_null;
        }
        let Ok(origin) = parse(origin, false) else {
            return false;
        };
        self.patterns
            .iter()
            .any(|pattern| matches(pattern, &origin))
    }
}

fn matches(pattern: &Parsed, origin: &Parsed) -> bool {
    if pattern.scheme != origin.scheme || pattern.port != origin.port {
        return false;
    }
    if !pattern.wildcard {
        return pattern.host == origin.host;
    }
    // `*.example.org`: at least one whole label before `.example.org`.
    origin
        .host
        .strip_suffix(pattern.host.as_str())
        .and_then(|front| front.strip_suffix('.'))
        .is_some_and(|front| !front.is_empty() && !front.starts_with('.'))
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `scheme://host[:port]`, with `*.` allowed in front of the host when
/// `pattern`.
fn parse(text: &str, pattern: bool) -> Result<Parsed, &'static str> {
    let (scheme, rest) = text.split_once("://").ok_or("no scheme://")?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err("bad scheme");
    }
    if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
        return Err("an origin has no path, query, fragment or user");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("unclosed [")?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("bad IPv6 address");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after ]")?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (rest.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        Some(port) => port.parse::<u16>().map_err(|_| "bad port")?,
        None => default_port(&scheme).ok_or("a port is needed for this scheme")?,
    };
    let (host, wildcard) = match host.strip_prefix("*.") {
        Some(domain) if pattern => (domain.to_owned(), true),
        Some(_) => return Err("a wildcard in an origin"),
        None => (host, false),
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }));
    if !host_ok {
        return Err("bad host");
    }
    Ok(Parsed {
        scheme,
        host,
        port,
        wildcard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(allowed: &[&str]) -> OriginPolicy {
        OriginPolicy::new(allowed, true).expect("valid patterns")
    }

    #[test]
    fn an_empty_list_allows_every_origin_and_none() {
        let p = policy(&[]);
        assert!(p.allows(b"https://anything.example"));
        assert!(p.allows(b"null"));
        assert_eq!(p.check(None), OriginVerdict::Missing);
        assert_eq!(p.check(Some(b"")), OriginVerdict::Missing);
    }

    #[test]
    fn exact_origins_match_case_insensitively_with_the_port_significant() {
        let p = policy(&["https://App.Example.org", "http://localhost:8080"]);
        assert!(p.allows(b"https://app.example.org"));
        assert!(p.allows(b"HTTPS://APP.EXAMPLE.ORG"));
        assert!(p.allows(b"https://app.example.org:443"), "default port");
        assert!(!p.allows(b"https://app.example.org:8443"));
        assert!(!p.allows(b"http://app.example.org"), "scheme differs");
        assert!(p.allows(b"http://localhost:8080"));
        assert!(!p.allows(b"http://localhost"));
        assert!(!p.allows(b"http://localhost:8081"));
        assert!(!p.allows(b"https://app.example.org.evil.net"));
        assert!(!p.allows(b"https://app.example.org/path"));
    }

    #[test]
    fn a_wildcard_matches_one_or_more_labels_but_not_the_bare_domain() {
        let p = policy(&["https://*.example.org"]);
        assert!(p.allows(b"https://a.example.org"));
        assert!(p.allows(b"https://a.b.example.org"));
        assert!(!p.allows(b"https://example.org"));
        assert!(!p.allows(b"https://evilexample.org"));
        assert!(!p.allows(b"https://.example.org"));
        assert!(!p.allows(b"http://a.example.org"));
        assert!(!p.allows(b"https://a.example.org:444"));
        assert!(!p.allows(b"https://*.example.org"), "a wildcard origin");
    }

    #[test]
    fn null_matches_only_when_listed() {
        assert!(!policy(&["https://a.org"]).allows(b"null"));
        assert!(policy(&["https://a.org", "null"]).allows(b"null"));
        assert!(!policy(&["null"]).allows(b"https://a.org"));
    }

    #[test]
    fn a_missing_origin_follows_allow_missing() {
        let strict = OriginPolicy::new(&["https://a.org"], false).expect("valid");
        assert_eq!(strict.check(None), OriginVerdict::Denied);
        assert_eq!(strict.check(Some(b"https://a.org")), OriginVerdict::Allowed);
        assert_eq!(strict.check(Some(b"https://b.org")), OriginVerdict::Denied);
        let no_list = OriginPolicy::new::<&str>(&[], false).expect("valid");
        assert_eq!(no_list.check(None), OriginVerdict::Denied);
    }

    #[test]
    fn ipv6_hosts_and_bad_bytes() {
        let p = policy(&["http://[::1]:8000"]);
        assert!(p.allows(b"http://[::1]:8000"));
        assert!(!p.allows(b"http://[::2]:8000"));
        assert!(!p.allows(b"http://[::1]"));
        assert!(!p.allows(&[0xff, 0xfe]));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in [
            "example.org",
            "https://",
            "https://a.org/",
            "https://a.org:99999",
            "https://a.*.org",
            "https://*",
            "ftp://a.org",
            "https://user@a.org",
            "https://[zz]",
        ] {
            let error = OriginPolicy::new(&[bad], true).expect_err(bad);
            assert_eq!(error.entry, bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}"
    }

    proptest! {
        #[test]
        fn any_case_of_an_allowed_origin_is_allowed(
            host in prop::collection::vec(label(), 1..4),
            port in 1u16..,
            upper in any::<bool>(),
        ) {
            let origin = format!("https://{}:{port}", host.join("."));
            let p = policy(&[origin.as_str()]);
            let asked = if upper { origin.to_ascii_uppercase() } else { origin.clone() };
            prop_assert!(p.allows(asked.as_bytes()));
            let other_port = if port == u16::MAX { port - 1 } else { port + 1 };
            let moved = format!("https://{}:{other_port}", host.join("."));
            prop_assert!(!p.allows(moved.as_bytes()));
        }

        #[test]
        fn a_wildcard_allows_exactly_the_strict_subdomains(
            domain in prop::collection::vec(label(), 1..3),
            front in prop::collection::vec(label(), 0..3),
            glued in label(),
        ) {
            let domain = domain.join(".");
            let p = policy(&[format!("https://*.{domain}").as_str()]);
            let host = if front.is_empty() { domain.clone() } else { format!("{}.{domain}", front.join(".")) };
            let origin = format!("https://{host}");
            prop_assert_eq!(p.allows(origin.as_bytes()), !front.is_empty());
            // A label glued onto the domain is another domain.
            let glued = format!("https://{glued}{domain}");
            prop_assert!(!p.allows(glued.as_bytes()));
        }

        #[test]
        fn arbitrary_headers_never_panic_and_never_pass_a_list(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let p = policy(&["https://a.org"]);
            let allowed = p.allows(&bytes);
            if allowed {
                let lower = String::from_utf8_lossy(&bytes).trim().to_ascii_lowercase();
                prop_assert_eq!(lower.trim_end_matches(":443"), "https://a.org");
            }
        }
    }
}

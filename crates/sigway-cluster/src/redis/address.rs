//! Which Redis deployment the operator named, read from the configured URLs.
//!
//! `cluster.redis_url` is a list of strings; this module turns it into a
//! [`Topology`] without touching the network, so the rule is one pure
//! function with its own tests. The rule:
//!
//! - one `redis://[user:password@]host[:port][/db]` URL: a standalone
//!   server;
//! - a `redis+cluster://[user:password@]host:port[,host:port...]` URL, or
//!   several URLs (each a seed, `redis://` or `redis+cluster://`): a Redis
//!   Cluster, found from its seeds;
//! - `redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[/db]`
//!   (alone): the master that those sentinels name (the credentials and
//!   db are the master's; the sentinels are reached without them).
//!
//! Anything else (TLS `rediss://`, unix sockets, an empty list, a sentinel
//! URL among others) is refused with a message naming the accepted forms.

/// The Redis deployment to use, with each server as a `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Standalone(String),
    /// A Redis Cluster, discovered from these seeds.
    Cluster(Vec<String>),
    /// A master found through Redis Sentinel.
    Sentinel {
        /// The sentinels, as `redis://host:port`.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the master under.
        master_name: String,
        /// Username for the master, if any.
        username: Option<String>,
        /// Password for the master, if any.
        password: Option<String>,
        /// The master's database number.
        db: i64,
    },
}

const ACCEPTED: &str = "expected redis://host:port[/db], several redis:// seeds or \
     redis+cluster://host:port[,host:port...] (Redis Cluster), or \
     redis+sentinel://host:port[,host:port...]/<master-name>[/db]";

/// Reads the configured URLs (see the module docs for the rule).
pub(crate) fn parse_topology(urls: &[String]) -> Result<Topology, String> {
    let urls: Vec<&str> = urls
        .iter()
        .map(|url| url.trim())
        .filter(|url| !url.is_empty())
        .collect();
    let Some(first) = urls.first() else {
        return Err(format!("no Redis URL given; {ACCEPTED}"));
    };
    if urls
        .iter()
        .any(|url| scheme_of(url) == Some("redis+sentinel"))
    {
        if urls.len() > 1 {
            return Err(format!(
                "a redis+sentinel:// URL must be the only one; {ACCEPTED}"
            ));
        }
        return parse_sentinel(first);
    }
    if urls.len() == 1 && scheme_of(first) == Some("redis") {
        let parts = split_url(first, "redis", 6379)?;
        if parts.hosts.len() != 1 {
            return Err(format!(
                "{first}: several hosts in one redis:// URL; use redis+cluster:// for a Redis Cluster ({ACCEPTED})"
            ));
        }
        return Ok(Topology::Standalone(parts.server_url(&parts.hosts[0])));
    }
    let mut seeds = Vec::new();
    for url in &urls {
        let scheme = match scheme_of(url) {
            Some(scheme @ ("redis" | "redis+cluster")) => scheme,
            _ => return Err(format!("{url}: unsupported URL; {ACCEPTED}")),
        };
        let parts = split_url(url, scheme, 6379)?;
        if !parts.path.is_empty() && parts.path != "0" {
            return Err(format!(
                "{url}: a Redis Cluster has only database 0 ({ACCEPTED})"
            ));
        }
        seeds.extend(parts.hosts.iter().map(|host| parts.server_url(host)));
    }
    Ok(Topology::Cluster(seeds))
}

fn parse_sentinel(url: &str) -> Result<Topology, String> {
    let parts = split_url(url, "redis+sentinel", 26379)?;
    let mut path = parts.path.split('/');
    let master_name = path.next().unwrap_or_default();
    if master_name.is_empty() {
        return Err(format!("{url}: the master's name is missing; {ACCEPTED}"));
    }
    let db = match path.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .map_err(|_| format!("{url}: `{db}` is not a database number"))?,
    };
    if path.next().is_some() {
        return Err(format!("{url}: unexpected path after the db; {ACCEPTED}"));
    }
    Ok(Topology::Sentinel {
        sentinels: parts
            .hosts
            .iter()
            .map(|host| format!("redis://{host}"))
            .collect(),
        master_name: master_name.to_owned(),
        username: parts.username.clone(),
        password: parts.password.clone(),
        db,
    })
}

fn scheme_of(url: &str) -> Option<&str> {
    url.split_once("://").map(|(scheme, _)| scheme)
}

/// A URL taken apart: credentials, `host:port` list and the path after `/`.
struct UrlParts {
    username: Option<String>,
    password: Option<String>,
    hosts: Vec<String>,
    path: String,
}

impl UrlParts {
    /// One server of the list as a `redis://` URL for redis-rs (keeps the
    /// credentials and the db path).
    fn server_url(&self, host: &str) -> String {
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(password)) => format!("{user}:{password}@"),
            (None, Some(password)) => format!(":{password}@"),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        if self.path.is_empty() {
            format!("redis://{auth}{host}")
        } else {
            format!("redis://{auth}{host}/{}", self.path)
        }
    }
}

fn split_url(url: &str, scheme: &str, default_port: u16) -> Result<UrlParts, String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .ok_or_else(|| format!("{url}: unsupported URL; {ACCEPTED}"))?;
    if rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "{url}: query parameters are not supported; {ACCEPTED}"
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, host_list) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_owned()),
                Some(password.to_owned()),
            ),
            None => ((!userinfo.is_empty()).then(|| userinfo.to_owned()), None),
        },
    };
    let mut hosts = Vec::new();
    for host in host_list.split(',') {
        hosts.push(host_with_port(url, host, default_port)?);
    }
    Ok(UrlParts {
        username,
        password,
        hosts,
        path: path.trim_end_matches('/').to_owned(),
    })
}

/// `host[:port]` (an IPv6 host in brackets) with the default port added.
fn host_with_port(url: &str, host: &str, default_port: u16) -> Result<String, String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (name, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url}: `{host}` lacks its closing `]`"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(format!("{url}: `{host}` is not host:port")),
        };
        (format!("[{name}]"), port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (host.to_owned(), None),
        }
    };
    if name.is_empty() || name == "[]" {
        return Err(format!("{url}: a host is missing; {ACCEPTED}"));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("{url}: `{port}` is not a port"))?,
    };
    Ok(format!("{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(urls: &[&str]) -> Result<Topology, String> {
        parse_topology(&urls.iter().map(|url| url.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn one_redis_url_is_a_standalone_server() {
        assert_eq!(
            parse(&["redis://127.0.0.1:6380"]),
            Ok(Topology::Standalone("redis://127.0.0.1:6380".into()))
        );
        assert_eq!(
            parse(&["redis://:secret@cache/2"]),
            Ok(Topology::Standalone("redis://:secret@cache:6379/2".into()))
        );
        assert_eq!(
            parse(&[" redis://u:p@[::1]:7000/ "]),
            Ok(Topology::Standalone("redis://u:p@[::1]:7000".into()))
        );
    }

    #[test]
    fn several_urls_or_the_cluster_scheme_are_a_cluster() {
        let expected = Topology::Cluster(vec![
            "redis://10.0.0.1:7000".into(),
            "redis://10.0.0.2:7001".into(),
        ]);
        assert_eq!(
            parse(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7001"]),
            Ok(expected.clone())
        );
        assert_eq!(
            parse(&["redis+cluster://10.0.0.1:7000,10.0.0.2:7001"]),
            Ok(expected)
        );
        assert_eq!(
            parse(&["redis+cluster://:pw@h"]),
            Ok(Topology::Cluster(vec!["redis://:pw@h:6379".into()]))
        );
        assert!(parse(&["redis+cluster://h:7000/3"]).is_err());
        assert!(parse(&["redis://h1,h2"]).is_err());
    }

    #[test]
    fn the_sentinel_scheme_names_sentinels_and_a_master() {
        assert_eq!(
            parse(&["redis+sentinel://user:pw@s1:26379,s2/mymaster/1"]),
            Ok(Topology::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                master_name: "mymaster".into(),
                username: Some("user".into()),
                password: Some("pw".into()),
                db: 1,
            })
        );
        assert!(parse(&["redis+sentinel://s1:26379"]).is_err());
        assert!(parse(&["redis+sentinel://s1:26379/m/x"]).is_err());
        assert!(parse(&["redis+sentinel://s1/m", "redis://h"]).is_err());
    }

    #[test]
    fn other_forms_are_refused() {
        for urls in [
            &[][..],
            &[""][..],
            &["rediss://h:6379"][..],
            &["redis+unix:///tmp/redis.sock"][..],
            &["h:6379"][..],
            &["redis://h:0"][..],
            &["redis://h:port"][..],
            &["redis://h?protocol=resp3"][..],
            &["redis://[::1"][..],
            &["redis://"][..],
        ] {
            assert!(parse(urls).is_err(), "{urls:?} was accepted");
        }
    }
}

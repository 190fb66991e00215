//! The real client address behind reverse proxies: the pure part of
//! `http.trusted_proxies` and `http.client_ip_header`.
//!
//! Only a TCP peer inside a trusted proxy range makes the header count. The
//! header's hops are then walked from the right (the hop the nearest proxy
//! appended) to the left: every trusted hop is skipped, and the first hop
//! that is not a trusted proxy is the client. A client can write anything
//! to the left of what the proxies appended, so nothing further left is
//! ever believed. Hops that are not addresses (`unknown`, `_obfuscated`,
//! garbage) stop the walk at the last address known good: the nearest
//! trusted hop. No I/O here: the edge layer hands in the peer and the
//! header values.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`; a bare address is
/// a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a `trusted_proxies` entry is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCidr(pub String);

impl fmt::Display for BadCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trusted proxy {:?} is not an address or CIDR (e.g. 10.0.0.0/8, fd00::/8, 127.0.0.1)",
            self.0
        )
    }
}

impl std::error::Error for BadCidr {}

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(text: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(text.to_owned());
        let trimmed = text.trim();
        let (address, prefix) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (trimmed, None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) if prefix.bytes().all(|b| b.is_ascii_digit()) => {
                prefix.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in the network (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
/// listener reports) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Which header carries the client address (`http.client_ip_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client` (one address, set by the nearest proxy).
    XRealIp,
}

impl ClientIpHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
            ClientIpHeader::XRealIp => "x-real-ip",
        }
    }
}

impl FromStr for ClientIpHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ClientIpHeader::XForwardedFor),
            "forwarded" => Ok(ClientIpHeader::Forwarded),
            "x-real-ip" => Ok(ClientIpHeader::XRealIp),
            _ => Err(format!(
                "client_ip_header {text:?} must be x-forwarded-for, forwarded or x-real-ip"
            )),
        }
    }
}

/// `http.trusted_proxies` and `http.client_ip_header`, parsed.
#[derive(Debug, Clone, Default)]
pub struct ProxyPolicy {
    trusted: Vec<Cidr>,
    header: ClientIpHeader,
}

impl ProxyPolicy {
    /// Parses the trusted ranges; an empty list trusts nobody (the header is
    /// never read).
    pub fn new<S: AsRef<str>>(trusted: &[S], header: ClientIpHeader) -> Result<Self, BadCidr> {
        let trusted = trusted
            .iter()
            .map(|entry| entry.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(Self { trusted, header })
    }

    /// The header read from trusted proxies.
    pub fn header(&self) -> ClientIpHeader {
        self.header
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client's address, given the TCP peer (or PROXY protocol source)
    /// `peer` and the values of the configured header, in the order they
    /// came. A peer that is not a trusted proxy is the client, whatever the
    /// header says.
    pub fn client(&self, peer: SocketAddr, values: &[&[u8]]) -> SocketAddr {
        if !self.trusts(peer.ip()) || values.is_empty() {
            return peer;
        }
        let hops: Vec<Option<SocketAddr>> = match self.header {
            ClientIpHeader::XForwardedFor => values
                .iter()
                .flat_map(|value| split_list(value))
                .map(|hop| parse_hop(hop.trim()))
                .collect(),
            ClientIpHeader::Forwarded => values
                .iter()
                .flat_map(|value| split_list(value))
                .map(forwarded_for)
                .collect(),
            // Set, not appended, by the nearest proxy: only its last value
            // counts.
            ClientIpHeader::XRealIp => values
                .last()
                .map(|value| parse_hop(String::from_utf8_lossy(value).trim()))
                .into_iter()
                .collect(),
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(hop) if self.trusts(hop.ip()) => client = hop,
                Some(hop) => return hop,
                None => return client,
            }
        }
        client
    }
}

/// The elements of a comma-separated header value (commas inside a
/// quoted string do not split).
fn split_list(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
}

/// The `for=` of one `Forwarded` element; `None` when it has none or it is
/// not an address (`unknown`, `_hidden`).
fn forwarded_for(element: String) -> Option<SocketAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(parse_hop(value))
    })?
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:5678`. The port is 0 when not given.
fn parse_hop(hop: &str) -> Option<SocketAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(addr.ip()), addr.port()));
    }
    let inside = hop.strip_prefix('[')?.strip_suffix(']')?;
    inside
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| SocketAddr::new(canonical(IpAddr::V6(ip)), 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn addr(text: &str) -> SocketAddr {
        parse_hop(text).expect("address")
    }

    fn policy(trusted: &[&str], header: ClientIpHeader) -> ProxyPolicy {
        ProxyPolicy::new(trusted, header).expect("valid CIDRs")
    }

    const PROXY: &str = "10.0.0.5:40000";

    #[test]
    fn cidrs_parse_and_contain() {
        let net: Cidr = "10.0.0.0/8".parse().expect("v4");
        assert!(net.contains("10.255.1.2".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("mapped")));
        let v6: Cidr = "fd00::/8".parse().expect("v6");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("fe80::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        let one: Cidr = "127.0.0.1".parse().expect("bare");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(BadCidr(bad.into())), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let p = policy(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let peer = addr("203.0.113.9:5000");
        assert_eq!(p.client(peer, &[b"1.2.3.4"]), peer);
        let nobody = policy(&[], ClientIpHeader::XForwardedFor);
        assert_eq!(nobody.client(addr(PROXY), &[b"1.2.3.4"]), addr(PROXY));
    }

    #[test]
    fn x_forwarded_for_takes_the_rightmost_untrusted_hop() {
        let p = policy(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
        let peer = addr(PROXY);
        assert_eq!(p.client(peer, &[b"198.51.100.7"]), addr("198.51.100.7"));
        // The client wrote 6.6.6.6 itself; the proxies appended the rest.
        assert_eq!(
            p.client(peer, &[b"6.6.6.6, 198.51.100.7, 10.1.1.1"]),
            addr("198.51.100.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            p.client(peer, &[b"6.6.6.6", b"198.51.100.7 , 10.1.1.1"]),
            addr("198.51.100.7")
        );
        assert_eq!(
            p.client(peer, &[b"[2001:db8::1]:443, 10.0.0.9"]),
            addr("[2001:db8::1]:443")
        );
        assert_eq!(
            p.client(peer, &[b"198.51.100.7:1234"]),
            addr("198.51.100.7:1234")
        );
        // All trusted: the furthest one known.
        assert_eq!(p.client(peer, &[b"10.9.9.9, 10.1.1.1"]), addr("10.9.9.9"));
        // Garbage stops the walk at the nearest trusted hop.
        assert_eq!(
            p.client(peer, &[b"1.1.1.1, garbage, 10.1.1.1"]),
            addr("10.1.1.1")
        );
        assert_eq!(p.client(peer, &[b"unknown"]), peer);
        assert_eq!(p.client(peer, &[]), peer);
    }

    #[test]
    fn forwarded_reads_for_parameters() {
        let p = policy(&["10.0.0.0/8", "fd00::/8"], ClientIpHeader::Forwarded);
        let peer = addr(PROXY);
        assert_eq!(
            p.client(peer, &[b"for=192.0.2.60;proto=http;by=203.0.113.43"]),
            addr("192.0.2.60")
        );
        assert_eq!(
            p.client(
                peer,
                &[b"for=6.6.6.6, For=\"[2001:db8:cafe::17]:4711\", for=\"[fd00::2]\";proto=https"]
            ),
            addr("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(
            p.client(peer, &[b"for=_hidden, for=10.2.2.2"]),
            addr("10.2.2.2")
        );
        assert_eq!(p.client(peer, &[b"proto=https"]), peer);
        assert_eq!(
            p.client(peer, &[b"for=\"a,b\", for=192.0.2.1"]),
            addr("192.0.2.1")
        );
    }

    #[test]
    fn x_real_ip_is_one_address_from_the_nearest_proxy() {
        let p = policy(&["10.0.0.0/8"], ClientIpHeader::XRealIp);
        let peer = addr(PROXY);
        assert_eq!(p.client(peer, &[b" 198.51.100.7 "]), addr("198.51.100.7"));
        assert_eq!(
            p.client(peer, &[b"6.6.6.6", b"198.51.100.8"]),
            addr("198.51.100.8")
        );
        assert_eq!(p.client(peer, &[b"nonsense"]), peer);
    }

    #[test]
    fn header_names_parse() {
        assert_eq!("Forwarded".parse(), Ok(ClientIpHeader::Forwarded));
        assert_eq!("x-real-ip".parse(), Ok(ClientIpHeader::XRealIp));
        assert_eq!("X-Forwarded-For".parse(), Ok(ClientIpHeader::XForwardedFor));
        assert!("via".parse::<ClientIpHeader>().is_err());
    }

    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    proptest! {
        #[test]
        fn the_client_is_never_a_hop_left_of_an_untrusted_one(
            hops in prop::collection::vec((ipv4(), any::<bool>()), 0..8),
        ) {
            // Trusted proxies: 10/8. Each hop is made trusted or not.
            let p = policy(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
            let hops: Vec<Ipv4Addr> = hops
                .into_iter()
                .map(|(ip, trusted)| {
                    let [_, b, c, d] = ip.octets();
                    if trusted { Ipv4Addr::new(10, b, c, d) } else if ip.octets()[0] == 10 { Ipv4Addr::new(11, b, c, d) } else { ip }
                })
                .collect();
            let header = hops.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ");
            let peer = addr(PROXY);
            let client = p.client(peer, &[header.as_bytes()]);
            let expected = match hops.iter().rposition(|ip| ip.octets()[0] != 10) {
                Some(i) => IpAddr::V4(hops[i]),
                None => hops.first().map_or(peer.ip(), |ip| IpAddr::V4(*ip)),
            };
            prop_assert_eq!(client.ip(), expected);
        }

        #[test]
        fn a_spoofed_header_from_an_untrusted_peer_changes_nothing(
            peer in ipv4(),
            header in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let p = policy(&["10.0.0.0/8"], ClientIpHeader::XForwardedFor);
            prop_assume!(peer.octets()[0] != 10);
            let peer = SocketAddr::new(IpAddr::V4(peer), 1234);
            prop_assert_eq!(p.client(peer, &[&header]), peer);
        }

        #[test]
        fn arbitrary_headers_never_panic(header in prop::collection::vec(any::<u8>(), 0..96), kind in 0..3u8) {
            let header_kind = [ClientIpHeader::XForwardedFor, ClientIpHeader::Forwarded, ClientIpHeader::XRealIp][kind as usize];
            let p = policy(&["0.0.0.0/0", "::/0"], header_kind);
            let _ = p.client(addr(PROXY), &[&header]);
        }
    }
}

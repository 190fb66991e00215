//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a TCP load
//! balancer writes at the start of each connection to say who the client
//! is. This is the pure parser; the listener (`serve`) reads the header
//! before any HTTP with it, in a bounded time.
//!
//! [`parse`] is told the bytes read so far and says how many more to read
//! ([`Step::Need`]), never more than the header holds, so that nothing of
//! the HTTP request behind it is consumed: version 1 is read to its line
//! end (at most 107 bytes), version 2 as its 16-byte head and then exactly
//! the length it announces (bounded by [`MAX_V2_BYTES`]). `LOCAL`
//! (version 2) and `UNKNOWN` (version 1) connections, the balancer's own
//! health checks, carry no source: the TCP peer stays the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The signature version 2 headers begin with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included (the specification's bound).
pub const MAX_V1_BYTES: usize = 107;
/// The longest version 2 header accepted (16-byte head and addresses and
/// TLVs); balancers' TLVs are far smaller.
pub const MAX_V2_BYTES: usize = 16 + 1024;

/// What to do after the bytes read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read exactly this many more bytes, then ask again.
    Need(usize),
    /// The header is complete: the client's address, or `None` for a
    /// connection of the balancer's own (`LOCAL`, `UNKNOWN`).
    Done(Option<SocketAddr>),
    /// Not a PROXY header: close the connection.
    Bad(&'static str),
}

/// The next step of reading a PROXY header whose first bytes are `read`.
pub fn parse(read: &[u8]) -> Step {
    match read.first() {
        None => Step::Need(1),
        Some(b'P') => parse_v1(read),
        Some(b'\r') => parse_v2(read),
        Some(_) => Step::Bad("no PROXY protocol header"),
    }
}

fn parse_v1(read: &[u8]) -> Step {
    const PREFIX: &[u8] = b"PROXY ";
    let common = read.len().min(PREFIX.len());
    if read[..common] != PREFIX[..common] {
        return Step::Bad("no PROXY protocol header");
    }
    if !read.ends_with(b"\r\n") {
        return if read.len() >= MAX_V1_BYTES {
            Step::Bad("PROXY v1 line too long")
        } else {
            Step::Need(1)
        };
    }
    let Ok(line) = std::str::from_utf8(&read[PREFIX.len()..read.len() - 2]) else {
        return Step::Bad("PROXY v1 line is not text");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Step::Done(None),
        [
            family @ ("TCP4" | "TCP6"),
            source,
            destination,
            source_port,
            destination_port,
        ] => {
            let source: Option<IpAddr> = source.parse().ok();
            let destination: Option<IpAddr> = destination.parse().ok();
            let v4 = *family == "TCP4";
            let (Some(source), Some(destination)) = (source, destination) else {
                return Step::Bad("PROXY v1 address is not an address");
            };
            if source.is_ipv4() != v4 || destination.is_ipv4() != v4 {
                return Step::Bad("PROXY v1 address of the wrong family");
            }
            match (port(source_port), port(destination_port)) {
                (Some(source_port), Some(_)) => {
                    Step::Done(Some(SocketAddr::new(source, source_port)))
                }
                _ => Step::Bad("PROXY v1 port is not a port"),
            }
        }
        _ => Step::Bad("PROXY v1 line malformed"),
    }
}

/// A decimal port without sign or leading zeros.
fn port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    if digits && canonical {
        text.parse().ok()
    } else {
        None
    }
}

fn parse_v2(read: &[u8]) -> Step {
    let common = read.len().min(V2_SIGNATURE.len());
    if read[..common] != V2_SIGNATURE[..common] {
        return Step::Bad("no PROXY protocol header");
    }
    if read.len() < 16 {
        return Step::Need(16 - read.len());
    }
    let (version_command, family) = (read[12], read[13]);
    if version_command >> 4 != 2 {
        return Step::Bad("PROXY v2 version is not 2");
    }
    let length = usize::from(u16::from_be_bytes([read[14], read[15]]));
    if 16 + length > MAX_V2_BYTES {
        return Step::Bad("PROXY v2 header too long");
    }
    if read.len() < 16 + length {
        return Step::Need(16 + length - read.len());
    }
    let body = &read[16..16 + length];
    match version_command & 0x0f {
        // LOCAL: the balancer's own connection; the addresses are ignored.
        0 => return Step::Done(None),
        1 => {}
        _ => return Step::Bad("PROXY v2 command unknown"),
    }
    match family {
        // UNSPEC: no address to take.
        0x00 => Step::Done(None),
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Step::Done(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x21 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Step::Done(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0x11 | 0x21 => Step::Bad("PROXY v2 addresses too short"),
        _ => Step::Bad("PROXY v2 family not TCP"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `header` the way the listener does: exactly what is asked.
    fn read_all(header: &[u8]) -> (Step, usize) {
        let mut taken = 0;
        loop {
            match parse(&header[..taken]) {
                Step::Need(n) if taken + n <= header.len() => taken += n,
                Step::Need(_) => return (Step::Need(0), taken),
                other => return (other, taken),
            }
        }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, family]);
        header.extend((body.len() as u16).to_be_bytes());
        header.extend(body);
        header
    }

    #[test]
    fn v1_lines_give_the_source_and_stop_at_their_end() {
        let mut wire = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 8000\r\nGET / HTTP/1.1\r\n".to_vec();
        let (step, taken) = read_all(&wire);
        assert_eq!(
            step,
            Step::Done(Some("203.0.113.7:51000".parse().expect("addr")))
        );
        assert_eq!(
            &wire[taken..taken + 3],
            b"GET",
            "nothing of the request taken"
        );
        wire = b"PROXY TCP6 2001:db8::7 2001:db8::1 443 8000\r\n".to_vec();
        assert_eq!(
            read_all(&wire).0,
            Step::Done(Some("[2001:db8::7]:443".parse().expect("addr")))
        );
        assert_eq!(read_all(b"PROXY UNKNOWN\r\n").0, Step::Done(None));
        assert_eq!(
            read_all(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n").0,
            Step::Done(None)
        );
    }

    #[test]
    fn bad_v1_lines_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXYTCP4\r\n",
        ] {
            assert!(
                matches!(read_all(bad).0, Step::Bad(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(read_all(&long).0, Step::Bad("PROXY v1 line too long"));
        assert_eq!(
            read_all(&long).1,
            MAX_V1_BYTES,
            "reads no further than the bound"
        );
    }

    #[test]
    fn v2_headers_give_the_source_and_stop_at_their_length() {
        let mut body = vec![203, 0, 113, 9, 10, 0, 0, 1];
        body.extend(40000u16.to_be_bytes());
        body.extend(8000u16.to_be_bytes());
        body.extend([0x04, 0x00, 0x01, 0xaa]); // a TLV, skipped
        let mut wire = v2(1, 0x11, &body);
        let end = wire.len();
        wire.extend(b"GET / HTTP/1.1\r\n");
        let (step, taken) = read_all(&wire);
        assert_eq!(
            step,
            Step::Done(Some("203.0.113.9:40000".parse().expect("addr")))
        );
        assert_eq!(taken, end);

        let mut body = Vec::new();
        body.extend("2001:db8::9".parse::<Ipv6Addr>().expect("v6").octets());
        body.extend([0u8; 16]);
        body.extend(443u16.to_be_bytes());
        body.extend(8000u16.to_be_bytes());
        assert_eq!(
            read_all(&v2(1, 0x21, &body)).0,
            Step::Done(Some("[2001:db8::9]:443".parse().expect("addr")))
        );
        assert_eq!(
            read_all(&v2(0, 0x11, &[0; 12])).0,
            Step::Done(None),
            "LOCAL"
        );
        assert_eq!(read_all(&v2(1, 0x00, &[])).0, Step::Done(None), "UNSPEC");
    }

    #[test]
    fn bad_v2_headers_are_refused() {
        assert!(matches!(read_all(&v2(1, 0x11, &[0; 4])).0, Step::Bad(_)));
        assert!(matches!(read_all(&v2(2, 0x11, &[0; 12])).0, Step::Bad(_)));
        assert!(
            matches!(read_all(&v2(1, 0x31, &[0; 216])).0, Step::Bad(_)),
            "unix"
        );
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(matches!(read_all(&wrong_version).0, Step::Bad(_)));
        let huge = v2(1, 0x11, &vec![0; MAX_V2_BYTES]);
        assert_eq!(read_all(&huge), (Step::Bad("PROXY v2 header too long"), 16));
        let mut bad_signature = v2(1, 0x11, &[0; 12]);
        bad_signature[5] = b'X';
        assert!(matches!(read_all(&bad_signature).0, Step::Bad(_)));
    }

    proptest! {
        #[test]
        fn never_asks_past_its_bounds_nor_panics(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
            let (_, taken) = read_all(&bytes);
            prop_assert!(taken <= MAX_V2_BYTES);
        }

        #[test]
        fn any_v1_tcp4_line_round_trips(source in any::<u32>(), port in any::<u16>()) {
            let ip = Ipv4Addr::from(source);
            let line = format!("PROXY TCP4 {ip} 10.0.0.1 {port} 80\r\n");
            prop_assert_eq!(read_all(line.as_bytes()), (Step::Done(Some(SocketAddr::new(IpAddr::V4(ip), port))), line.len()));
        }
    }
}

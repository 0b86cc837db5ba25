//! Addresses: the two ends of a client connection, and the networks a client may be
//! trusted from (`--status-allow`). Plain data at the bottom of the crate.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The two ends of the client connection.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// An address or a CIDR block allowed to read the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Compared in IPv6's space, where IPv4 is `::ffff:0:0/96` (RFC 4291 §2.5.5.2):
    /// an IPv4 client on a dual-stack socket is `::ffff:a.b.c.d`, and `10.0.0.0/8`,
    /// `::ffff:10.0.0.0/104` and `::/0` must each match it as they match `10.1.2.3`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, prefix) = match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped(), u32::from(self.prefix) + 96),
            IpAddr::V6(v6) => (v6, u32::from(self.prefix)),
        };
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        u128::from(net) & mask == u128::from(v6_space(ip)) & mask
    }
}

fn v6_space(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Is this client on this machine (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`)?
/// Behind a reverse proxy on the same host every client looks like this.
pub fn is_loopback(client: IpAddr) -> bool {
    match client {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// May `client` read the status page? Loopback always; others only when allowed.
pub fn allowed(client: IpAddr, allow: &[IpNet]) -> bool {
    is_loopback(client) || allow.iter().any(|net| net.contains(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let nets: Vec<IpNet> = ["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(ip("127.0.0.1"), &[]));
        assert!(allowed(ip("127.9.9.9"), &[]));
        assert!(allowed(ip("::1"), &[]));
        assert!(allowed(ip("::ffff:127.0.0.1"), &[]));
        assert!(!allowed(ip("10.1.2.3"), &[]));
        assert!(allowed(ip("10.1.2.3"), &nets));
        assert!(allowed(ip("::ffff:10.1.2.3"), &nets));
        assert!(!allowed(ip("10.2.0.1"), &nets));
        assert!(allowed(ip("192.0.2.7"), &nets));
        assert!(!allowed(ip("192.0.2.8"), &nets));
        assert!(allowed(ip("2001:db8:1::5"), &nets));
        assert!(!allowed(ip("2001:db9::5"), &nets));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        assert!(!all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn parsing_nets() {
        assert_eq!(
            "10.0.0.0/8".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
        assert!("10.0.0.0/x".parse::<IpNet>().is_err());
    }

    #[test]
    fn v4_mapped_peers_and_nets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        // A v4 network written either way matches a v4 client seen either way.
        for n in [
            "10.1.0.0/16",
            "::ffff:10.1.0.0/112",
            "::ffff:0:0/96",
            "::/0",
        ] {
            for client in ["10.1.2.3", "::ffff:10.1.2.3"] {
                assert!(net(n).contains(ip(client)), "{n} should hold {client}");
                assert!(allowed(ip(client), &[net(n)]), "{n}, {client}");
            }
        }
        assert!(!net("::ffff:10.1.0.0/112").contains(ip("10.2.0.1")));
        assert!(!net("::ffff:0:0/96").contains(ip("2001:db8::1")));
        assert!(
            !net("10.0.0.0/8").contains(ip("::a01:203")),
            "v4-compatible is not v4"
        );
        assert!(is_loopback(ip("::ffff:127.0.0.1")));
        assert!(is_loopback(ip("::1")));
        assert!(!is_loopback(ip("::ffff:10.0.0.1")));
        assert!(!allowed(ip("::ffff:10.0.0.1"), &[]));
    }
}

//! Which peers a client may relay to. Deny by default every range that reaches the server's own networks or
//! the cloud metadata service; operators open specific ranges with an explicit allow list.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ranges refused unless allowed explicitly.
const DENIED: &[&str] = &[
    "0.0.0.0/8",      // "this network"
    "10.0.0.0/8",     // RFC 1918
    "100.64.0.0/10",  // CGNAT (RFC 6598)
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local, includes cloud metadata 169.254.169.254
    "172.16.0.0/12",  // RFC 1918
    "192.0.0.0/24",   // IETF protocol assignments
    "192.168.0.0/16", // RFC 1918
    "198.18.0.0/15",  // benchmarking
    "224.0.0.0/4",    // multicast
    "240.0.0.0/4",    // reserved, includes broadcast 255.255.255.255
    "::/128",         // unspecified
    "::1/128",        // loopback
    "64:ff9b:1::/48", // local-use NAT64
    "2001::/32",      // Teredo
    "2002::/16",      // 6to4
    "fc00::/7",       // unique local
    "fe80::/10",      // link-local
    "ff00::/8",       // multicast
];

/// The peer policy: an address is refused when a deny range holds it and no allow range does.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

impl PeerPolicy {
    /// The built-in deny list plus `extra_deny`, with `allow` as exceptions.
    pub fn new(allow: Vec<IpNet>, extra_deny: Vec<IpNet>) -> Self {
        let mut deny: Vec<IpNet> = DENIED
            .iter()
            .map(|s| s.parse().expect("built-in ranges parse"))
            .collect();
        deny.extend(extra_deny);
        Self { deny, allow }
    }

    /// Whether a client may relay to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = normalise(ip);
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        !self.deny.iter().any(|n| n.contains(&ip))
    }
}

/// Maps IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible and well-known NAT64 (`64:ff9b::/96`) IPv6 addresses to
/// the IPv4 address they carry, so `::ffff:127.0.0.1` is judged as 127.0.0.1.
pub fn normalise(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(embedded_v4(v6));
    }
    // IPv4-compatible ::a.b.c.d (deprecated, but still routable by some stacks); keep :: and ::1 as they are.
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return IpAddr::V4(embedded_v4(v6));
    }
    ip
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> PeerPolicy {
        PeerPolicy::new(vec![], vec![])
    }

    #[test]
    fn denies_private_and_special_ranges_by_default() {
        let p = default_policy();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:0:1::1",
            "2002:a00:1::1",
        ] {
            assert!(!p.permits(ip.parse().expect("ip")), "{ip} must be denied");
        }
    }

    #[test]
    fn permits_public_addresses() {
        let p = default_policy();
        for ip in ["8.8.8.8", "203.0.113.9", "2a00:1450::1"] {
            assert!(p.permits(ip.parse().expect("ip")), "{ip} must be allowed");
        }
    }

    #[test]
    fn mapped_addresses_are_judged_as_ipv4() {
        let p = default_policy();
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
        ] {
            assert!(!p.permits(ip.parse().expect("ip")), "{ip} must be denied");
        }
        assert!(p.permits("::ffff:8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn allow_list_opens_a_denied_range() {
        let p = PeerPolicy::new(vec!["127.0.0.0/8".parse().expect("net")], vec![]);
        assert!(p.permits("127.0.0.1".parse().expect("ip")));
        assert!(p.permits("::ffff:127.0.0.2".parse().expect("ip")));
        assert!(!p.permits("10.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn extra_deny_closes_a_public_range() {
        let p = PeerPolicy::new(vec![], vec!["203.0.113.0/24".parse().expect("net")]);
        assert!(!p.permits("203.0.113.7".parse().expect("ip")));
    }
}

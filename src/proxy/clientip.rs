//! The client's address: the peer, or what trusted proxies say in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// The derived client and what the gateway knows about its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// The TCP peer is a trusted proxy, so its `X-Forwarded-*` headers are believed.
    pub peer_trusted: bool,
}

pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Walks `X-Forwarded-For` from the right, past trusted proxies, to the first untrusted hop.
/// Only a trusted peer's chain is read at all; anything unparsable ends the walk.
pub(crate) fn derive(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return ClientAddr {
            ip: peer,
            peer_trusted: false,
        };
    }
    let mut client = peer;
    let hops = headers.get_all(super::headers::X_FORWARDED_FOR);
    'walk: for value in hops.iter().rev() {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for hop in value.rsplit(',') {
            let Some(ip) = parse_hop(hop.trim()) else {
                break 'walk;
            };
            client = ip;
            if !is_trusted(ip, trusted) {
                break 'walk;
            }
        }
    }
    ClientAddr {
        ip: client,
        peer_trusted: true,
    }
}

fn parse_hop(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("net")).collect()
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_str(value).expect("value"),
        );
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let c = derive(ip("203.0.113.9"), &xff("1.1.1.1"), &nets(&["127.0.0.1/32"]));
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("203.0.113.9"),
                peer_trusted: false
            }
        );
    }

    #[test]
    fn trusted_peers_pass_the_first_untrusted_hop_from_the_right() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let c = derive(
            ip("127.0.0.1"),
            &xff("6.6.6.6, 198.51.100.7, 10.1.2.3"),
            &trusted,
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(c.peer_trusted);
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk_at_the_last_good_hop() {
        let c = derive(
            ip("127.0.0.1"),
            &xff("1.2.3.4, nonsense"),
            &nets(&["127.0.0.1/32"]),
        );
        assert_eq!(c.ip, ip("127.0.0.1"));
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_ranges() {
        assert!(is_trusted(ip("::ffff:127.0.0.1"), &nets(&["127.0.0.1/32"])));
    }
}

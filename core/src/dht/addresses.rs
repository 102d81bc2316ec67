//! Address classes the connect path decides by: which of a peer's advertised addresses are
//! worth trying across the internet, which only on a LAN, and which of two address lists are on
//! the same network (hyperdht's `bogon` checks and `Holepuncher.matchAddress`).

use core::net::{Ipv4Addr, SocketAddrV4};

/// A reserved or private address a client should not try to reach across the internet.
pub(crate) fn is_bogon(ip: &Ipv4Addr) -> bool {
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || is_shared(ip) || is_reserved(ip)
}

/// Reserved (not merely private): never useful even on a LAN.
pub(crate) fn is_reserved(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 0
        || (o[0] == 192 && o[1] == 0 && (o[2] == 0 || o[2] == 2))
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || o[0] >= 224
}

/// A private address a LAN peer may be reachable on (`bogon.isPrivate`).
pub(crate) fn is_private(ip: &Ipv4Addr) -> bool {
    ip.is_private() || ip.is_loopback() || ip.is_link_local() || is_shared(ip)
}

/// 100.64.0.0/10, the carrier-grade NAT range.
fn is_shared(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 100 && (o[1] & 0xc0) == 64
}

/// Number of leading dotted octets two addresses share.
pub(crate) fn shared_octets(a: &Ipv4Addr, b: &Ipv4Addr) -> usize {
    a.octets()
        .iter()
        .zip(b.octets().iter())
        .take_while(|(x, y)| x == y)
        .count()
}

/// `Holepuncher.matchAddress`: the remote address sharing the most leading octets (at least
/// one) with one of ours.
pub(crate) fn match_address(
    ours: &[SocketAddrV4],
    theirs: &[SocketAddrV4],
) -> Option<SocketAddrV4> {
    let mut best: Option<(usize, SocketAddrV4)> = None;
    for l in ours {
        for r in theirs {
            let shared = shared_octets(l.ip(), r.ip()).min(3);
            if shared == 3 {
                return Some(*r);
            }
            if shared >= 1 && best.is_none_or(|(s, _)| shared > s) {
                best = Some((shared, *r));
            }
        }
    }
    best.map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: [u8; 4]) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(s), 1)
    }

    #[test]
    fn match_address_prefers_the_longest_prefix() {
        let ours = [a([192, 168, 122, 238])];
        assert_eq!(
            match_address(&ours, &[a([192, 168, 0, 23]), a([192, 168, 122, 1])]),
            Some(a([192, 168, 122, 1]))
        );
        assert_eq!(
            match_address(&ours, &[a([192, 1, 0, 23]), a([192, 168, 0, 1])]),
            Some(a([192, 168, 0, 1]))
        );
        assert_eq!(match_address(&ours, &[a([10, 0, 0, 1])]), None);
        assert_eq!(match_address(&ours, &[]), None);
    }

    #[test]
    fn bogons_private_and_reserved() {
        let ip = |s: [u8; 4]| Ipv4Addr::from(s);
        for b in [
            [10, 0, 0, 1],
            [127, 0, 0, 1],
            [100, 64, 1, 1],
            [192, 0, 2, 1],
            [224, 0, 0, 1],
        ] {
            assert!(is_bogon(&ip(b)), "{b:?}");
        }
        assert!(!is_bogon(&ip([20, 0, 0, 1])));
        assert!(is_private(&ip([192, 168, 1, 1])) && !is_reserved(&ip([192, 168, 1, 1])));
        assert!(is_reserved(&ip([203, 0, 113, 9])) && !is_private(&ip([203, 0, 113, 9])));
    }
}

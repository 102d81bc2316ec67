//! The machine's IPv4 interface addresses, advertised for the LAN shortcut (hyperdht's
//! `localAddresses(socket)`), read with `if-addrs` (`getifaddrs` / `GetAdaptersAddresses`) and
//! read again every [`RESCAN_INTERVAL`] as libudx watches them, so a node that moves to
//! another network advertises its new addresses and its servers announce again.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How often the interfaces are read again (libudx's interface watcher: 5 s).
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// The local addresses of a node whose server socket is bound to `bound`, as the reference
/// picks them: a socket bound to 127.0.0.1 has only that; otherwise every non-loopback IPv4
/// interface address, with the socket's port; none at all falls back to 127.0.0.1.
///
/// One difference: a socket bound to one specific address advertises just that address (the
/// reference lists every interface, though only the bound one can receive).
pub fn local_addresses(bound: SocketAddrV4) -> Vec<SocketAddrV4> {
    if !bound.ip().is_unspecified() {
        return pick(bound, std::iter::empty());
    }
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => pick(
            bound,
            interfaces.iter().filter_map(|i| match &i.addr {
                if_addrs::IfAddr::V4(a) => Some(a.ip),
                if_addrs::IfAddr::V6(_) => None,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the network interfaces; advertising 127.0.0.1");
            pick(bound, std::iter::empty())
        }
    }
}

/// [`local_addresses`] over a given list of interface addresses (in the OS's order).
pub fn pick(bound: SocketAddrV4, interfaces: impl Iterator<Item = Ipv4Addr>) -> Vec<SocketAddrV4> {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut out: Vec<SocketAddrV4> = Vec::new();
    for ip in interfaces {
        let addr = SocketAddrV4::new(ip, port);
        if !ip.is_loopback() && !ip.is_unspecified() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        out.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    }
    out
}

/// Reads the interfaces again when [`RESCAN_INTERVAL`] has passed.
#[derive(Debug)]
pub(crate) struct InterfaceWatch {
    /// The server socket's local address; `None`: nothing to watch (a fixed bind address).
    bound: Option<SocketAddrV4>,
    next: Instant,
}

impl InterfaceWatch {
    /// Watches the interfaces for a server socket bound to `bound` (only a socket bound to
    /// every interface can gain or lose addresses).
    pub(crate) fn new(bound: SocketAddrV4) -> Self {
        InterfaceWatch {
            bound: bound.ip().is_unspecified().then_some(bound),
            next: Instant::now() + RESCAN_INTERVAL,
        }
    }

    /// Watches nothing.
    pub(crate) fn none() -> Self {
        InterfaceWatch {
            bound: None,
            next: Instant::now(),
        }
    }

    /// The current local addresses when a rescan is due, else `None`.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Vec<SocketAddrV4>> {
        let bound = self.bound?;
        if now < self.next {
            return None;
        }
        self.next = now + RESCAN_INTERVAL;
        Some(local_addresses(bound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn picks_as_the_reference() {
        let any = a("0.0.0.0:7");
        let ifs = [
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(192, 168, 1, 5),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 168, 1, 5),
        ];
        assert_eq!(
            pick(any, ifs.into_iter()),
            vec![a("192.168.1.5:7"), a("10.0.0.2:7")]
        );
        // Only loopback, or nothing: 127.0.0.1.
        assert_eq!(
            pick(any, [Ipv4Addr::LOCALHOST].into_iter()),
            vec![a("127.0.0.1:7")]
        );
        assert_eq!(pick(any, std::iter::empty()), vec![a("127.0.0.1:7")]);
        // Bound to one address: that address.
        assert_eq!(
            pick(a("127.0.0.1:9"), ifs.into_iter()),
            vec![a("127.0.0.1:9")]
        );
        assert_eq!(
            pick(a("10.0.0.2:9"), ifs.into_iter()),
            vec![a("10.0.0.2:9")]
        );
    }

    #[test]
    fn this_machine_has_addresses() {
        let got = local_addresses(a("0.0.0.0:1"));
        assert!(!got.is_empty());
        assert!(got.iter().all(|x| x.port() == 1));
    }
}

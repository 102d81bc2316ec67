//! Binding and name resolution with std, shared by every runtime (each wraps the bound std
//! sockets in its own async type).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs, UdpSocket};

use crate::{parse_bootstrap, BootstrapParseError, DhtError, DhtOptions};

/// The number of ports tried from a configured port before falling back to a random one.
pub const PORT_RANGE: u16 = 5;

/// The ports to try binding the server socket to, in order; `0` means "any".
pub fn port_candidates(opts: &DhtOptions) -> Vec<u16> {
    if opts.port == 0 {
        return vec![0];
    }
    let mut ports: Vec<u16> = (0..PORT_RANGE)
        .filter_map(|i| opts.port.checked_add(i))
        .collect();
    if !opts.any_port {
        ports.truncate(1);
    } else {
        ports.push(0);
    }
    ports
}

/// Binds the server socket (configured port range, then any port if allowed) and the client
/// socket (random port), both non-blocking.
pub fn bind_sockets(opts: &DhtOptions) -> io::Result<(UdpSocket, UdpSocket)> {
    let mut server = None;
    let mut last_err = None;
    for port in port_candidates(opts) {
        match UdpSocket::bind(SocketAddrV4::new(opts.host, port)) {
            Ok(s) => {
                server = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let server = server.ok_or_else(|| {
        last_err.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no port to bind"))
    })?;
    let client = UdpSocket::bind(SocketAddrV4::new(opts.host, 0))?;
    server.set_nonblocking(true)?;
    client.set_nonblocking(true)?;
    Ok((server, client))
}

/// The IPv4 local address of a bound socket.
pub fn local_v4(sock: &UdpSocket) -> io::Result<SocketAddrV4> {
    match sock.local_addr()? {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "IPv6 socket")),
    }
}

/// Whether resolving these entries needs DNS (so the caller should run it off the executor).
pub fn needs_dns(entries: &[String]) -> bool {
    entries.iter().any(|e| {
        parse_bootstrap(e)
            .map(|b| b.literal().is_none())
            .unwrap_or(false)
    })
}

/// Resolves bootstrap entries: a suggested IP or an IPv4 literal is used as is, other hosts go
/// through the system resolver (blocking). Entries that don't resolve are skipped, as the
/// reference does; it is an error only if none resolves.
pub fn resolve_bootstrap(entries: &[String]) -> Result<Vec<SocketAddrV4>, DhtError> {
    let mut out = Vec::new();
    for s in entries {
        let entry = parse_bootstrap(s)?;
        if let Some(addr) = entry.literal() {
            out.push(addr);
            continue;
        }
        let resolved = (entry.host.as_str(), entry.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| {
                it.find_map(|a| match a {
                    SocketAddr::V4(v4) => Some(v4),
                    SocketAddr::V6(_) => None,
                })
            });
        match resolved {
            Some(a) => {
                tracing::debug!(entry = %s, address = %a, "bootstrap entry resolved");
                out.push(a);
            }
            None => {
                tracing::warn!(entry = %s, "bootstrap entry does not resolve to an IPv4 address; skipped")
            }
        }
    }
    if out.is_empty() && !entries.is_empty() {
        return Err(BootstrapParseError::Unresolved(entries.join(",")).into());
    }
    Ok(out)
}

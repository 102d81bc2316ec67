//! Bootstrap entries as the reference accepts them: `"host:port"`, `"suggestedIP@host:port"`,
//! or a bare port (meaning 127.0.0.1).

use std::net::{Ipv4Addr, SocketAddrV4};

/// The public HyperDHT bootstrap nodes, hyperdht's default.
pub const DEFAULT_BOOTSTRAP: [&str; 3] = [
    "88.99.3.86@node1.hyperdht.org:49737",
    "142.93.90.113@node2.hyperdht.org:49737",
    "138.68.147.8@node3.hyperdht.org:49737",
];

/// One parsed bootstrap entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapEntry {
    /// An IPv4 address to try before resolving `host`.
    pub suggested: Option<Ipv4Addr>,
    /// Host name or IPv4 literal.
    pub host: String,
    /// UDP port.
    pub port: u16,
}

impl BootstrapEntry {
    /// The address if no DNS is needed (a suggested IP or an IPv4 literal host).
    pub fn literal(&self) -> Option<SocketAddrV4> {
        let ip = self.suggested.or_else(|| self.host.parse().ok())?;
        Some(SocketAddrV4::new(ip, self.port))
    }
}

/// Why a bootstrap entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapParseError {
    /// No `:port`, or the port is not a number in 1..=65535.
    #[error("{0:?}: expected host:port with a port in 1..=65535")]
    BadPort(String),
    /// The part before `@` is not an IPv4 address.
    #[error("{0:?}: the suggested address before '@' must be IPv4")]
    BadSuggestedIp(String),
    /// The host is empty.
    #[error("{0:?}: empty host")]
    EmptyHost(String),
    /// The host name did not resolve to an IPv4 address.
    #[error("{0:?}: does not resolve to an IPv4 address")]
    Unresolved(String),
}

/// Parses one entry.
pub fn parse_bootstrap(s: &str) -> Result<BootstrapEntry, BootstrapParseError> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        if port == 0 {
            return Err(BootstrapParseError::BadPort(s.into()));
        }
        return Ok(BootstrapEntry {
            suggested: None,
            host: "127.0.0.1".into(),
            port,
        });
    }
    let (suggested, rest) = match s.split_once('@') {
        Some((ip, rest)) => {
            let ip = ip
                .parse()
                .map_err(|_| BootstrapParseError::BadSuggestedIp(s.into()))?;
            (Some(ip), rest)
        }
        None => (None, s),
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| BootstrapParseError::BadPort(s.into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| BootstrapParseError::BadPort(s.into()))?;
    if port == 0 {
        return Err(BootstrapParseError::BadPort(s.into()));
    }
    if host.is_empty() {
        return Err(BootstrapParseError::EmptyHost(s.into()));
    }
    Ok(BootstrapEntry {
        suggested,
        host: host.into(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse_bootstrap("49737").unwrap().literal(),
            Some("127.0.0.1:49737".parse().unwrap())
        );
        let e = parse_bootstrap(DEFAULT_BOOTSTRAP[0]).unwrap();
        assert_eq!(e.host, "node1.hyperdht.org");
        assert_eq!(e.literal(), Some("88.99.3.86:49737".parse().unwrap()));
        assert_eq!(
            parse_bootstrap("10.0.0.1:5").unwrap().literal(),
            Some("10.0.0.1:5".parse().unwrap())
        );
        assert_eq!(parse_bootstrap("example.org:5").unwrap().literal(), None);
        assert!(parse_bootstrap("example.org").is_err());
        assert!(parse_bootstrap("x@example.org:1").is_err());
        assert!(parse_bootstrap(":1").is_err());
        assert!(parse_bootstrap("1.2.3.4:0").is_err());
    }
}

//! Which path a connect between two NAT classes can take, by the rules the connect path uses
//! (`client/`: a server that is OPEN is connected to directly; a client that is OPEN waits for
//! the server to connect to it; otherwise the two punch, with [`punch_strategy`]). For tools
//! that tell a user what to expect (`hdht doctor`); the connect path itself decides from the
//! handshake.

use super::error::{ConnectError, Firewall};
use super::puncher::{punch_strategy, Strategy};

/// How a client of one NAT class reaches a server of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The client connects straight to the server's address (the server is OPEN).
    Direct,
    /// The server connects to the client (the client is OPEN, the server is not).
    Reverse,
    /// The two punch a hole with this strategy.
    Holepunch(Strategy),
    /// Only a relay can carry the connection (both NATs random:
    /// `HOLEPUNCH_DOUBLE_RANDOMIZED_NATS`).
    RelayOnly,
    /// A side's class is not known.
    Unknown,
}

/// The path from a client of class `client` to a server of class `server`.
pub fn expected_path(client: Firewall, server: Firewall) -> Reach {
    if server == Firewall::Open {
        return Reach::Direct;
    }
    if client == Firewall::Open {
        return Reach::Reverse;
    }
    match punch_strategy(client, server) {
        Ok(s) => Reach::Holepunch(s),
        Err(ConnectError::HolepunchDoubleRandomizedNats) => Reach::RelayOnly,
        Err(_) => Reach::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Firewall::*;
        assert_eq!(expected_path(Random, Open), Reach::Direct);
        assert_eq!(expected_path(Open, Random), Reach::Reverse);
        assert_eq!(
            expected_path(Consistent, Consistent),
            Reach::Holepunch(Strategy::Consistent)
        );
        assert_eq!(
            expected_path(Consistent, Random),
            Reach::Holepunch(Strategy::RandomProbes)
        );
        assert_eq!(
            expected_path(Random, Consistent),
            Reach::Holepunch(Strategy::Birthday)
        );
        assert_eq!(expected_path(Random, Random), Reach::RelayOnly);
        assert_eq!(expected_path(Unknown, Consistent), Reach::Unknown);
    }
}

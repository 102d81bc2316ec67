//! The one error type of the user-facing API: every failure of a node, a record operation, a
//! connect or a server converts into [`DhtError`] with `?`, keeping the inner error as its
//! [`source`](std::error::Error::source), and names the reference's `err.code` where it has
//! one ([`DhtError::code`]).

use std::net::SocketAddrV4;

use hdht_core::connect::ConnectError;
use hdht_core::dht::OpError;
use hdht_core::rpc::{QueryError, RequestError};
use hdht_core::swarm::SwarmError;

use crate::BootstrapParseError;

/// Errors of the user-facing API.
///
/// `?` converts every error the driver's futures and streams return into it (the core's
/// [`RequestError`], [`QueryError`], [`OpError`], [`ConnectError`], and [`std::io::Error`]):
///
/// ```
/// use hdht_driver::DhtError;
/// use hdht_core::{connect::ConnectError, dht::OpError, rpc::{QueryError, RequestError}};
///
/// fn all(step: u8) -> Result<(), DhtError> {
///     match step {
///         0 => Err(RequestError::Timeout)?,
///         1 => Err(QueryError::TooFewNodes)?,
///         2 => Err(OpError::SeqTooLow)?,
///         3 => Err(ConnectError::PeerNotFound)?,
///         _ => Err(std::io::Error::other("socket"))?,
///     }
/// }
/// assert_eq!(all(3).unwrap_err().code(), Some("PEER_NOT_FOUND"));
/// assert_eq!(all(0).unwrap_err().code(), Some("REQUEST_TIMEOUT"));
/// ```
///
/// New variants may be added; match on [`code`](Self::code) or the variants you handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// An OS-level I/O failure (binding, sending).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A bootstrap entry could not be parsed or resolved.
    #[error("bad bootstrap entry: {0}")]
    Bootstrap(#[from] BootstrapParseError),
    /// The node was destroyed.
    #[error("node destroyed")]
    Destroyed,
    /// Bootstrapping ended without an answer from any node: every bootstrap node in `tried`
    /// was unreachable or silent. The node keeps running alone and asks them again on its
    /// periodic refresh (every 40 s while its routing table is empty).
    #[error("no bootstrap node answered (tried {})", list_addrs(tried))]
    NoBootstrapReply {
        /// The resolved bootstrap addresses the node queried.
        tried: Vec<SocketAddrV4>,
    },
    /// A request failed.
    #[error("request failed: {0}")]
    Request(#[from] RequestError),
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[from] QueryError),
    /// A HyperDHT operation (lookup, announce, records) failed.
    #[error("{0}")]
    Op(#[from] OpError),
    /// A connect, or a server's listen, failed (`Display` is the reference's
    /// `"CODE: message"`).
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// A swarm call was refused (destroyed, neither client nor server, too many topics).
    #[error("swarm: {0}")]
    Swarm(#[from] SwarmError),
    /// The node already runs a swarm (one swarm per node).
    #[error("the node already runs a swarm")]
    SwarmExists,
    /// An option or argument the call cannot use.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
}

impl DhtError {
    /// The reference's `err.code` for this error — hyperdht's `lib/errors.js`
    /// (`PEER_NOT_FOUND`, `HOLEPUNCH_ABORTED`, …), dht-rpc's (`REQUEST_TIMEOUT`,
    /// `REQUEST_DESTROYED`) and the storing nodes' (`SEQ_TOO_LOW`, `SEQ_REUSED`) — or `None`
    /// where the reference has no code (I/O, bootstrap parsing, limits it does not check).
    ///
    /// A stable string for programs (the CLI's JSON errors use it).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            DhtError::Destroyed => Some("NODE_DESTROYED"),
            DhtError::Request(e) => e.code(),
            DhtError::Query(e) => e.code(),
            DhtError::Op(e) => e.code(),
            DhtError::Connect(e) => Some(e.code()),
            DhtError::Swarm(SwarmError::Destroyed) => Some("SWARM_DESTROYED"),
            DhtError::Io(_)
            | DhtError::Bootstrap(_)
            | DhtError::NoBootstrapReply { .. }
            | DhtError::Swarm(_)
            | DhtError::SwarmExists
            | DhtError::InvalidOption(_) => None,
        }
    }

    /// The connect error inside, if this is one (to match on the reference's failure kinds).
    pub fn as_connect(&self) -> Option<&ConnectError> {
        match self {
            DhtError::Connect(e) => Some(e),
            _ => None,
        }
    }

    /// The operation error inside, if this is one.
    pub fn as_op(&self) -> Option<&OpError> {
        match self {
            DhtError::Op(e) => Some(e),
            _ => None,
        }
    }
}

/// `a, b, c` for an error message.
fn list_addrs(addrs: &[SocketAddrV4]) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn codes_are_the_reference_strings() {
        // hyperdht lib/errors.js: every ConnectError code comes through unchanged.
        for e in ConnectError::ALL {
            let d = DhtError::from(e);
            assert_eq!(d.code(), Some(e.code()));
            assert_eq!(d.to_string(), e.to_string());
        }
        let cases: [(DhtError, Option<&str>); 12] = [
            (ConnectError::PeerNotFound.into(), Some("PEER_NOT_FOUND")),
            (
                ConnectError::HolepunchAborted.into(),
                Some("HOLEPUNCH_ABORTED"),
            ),
            (RequestError::Timeout.into(), Some("REQUEST_TIMEOUT")),
            (RequestError::Destroyed.into(), Some("REQUEST_DESTROYED")),
            (OpError::SeqTooLow.into(), Some("SEQ_TOO_LOW")),
            (OpError::SeqReused.into(), Some("SEQ_REUSED")),
            (
                OpError::CommitFailed(RequestError::Timeout).into(),
                Some("REQUEST_TIMEOUT"),
            ),
            (
                OpError::Query(QueryError::Destroyed).into(),
                Some("NODE_DESTROYED"),
            ),
            (DhtError::Destroyed, Some("NODE_DESTROYED")),
            (OpError::TooFewNodes.into(), None),
            (std::io::Error::other("x").into(), None),
            (DhtError::NoBootstrapReply { tried: vec![] }, None),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }

    #[test]
    fn the_inner_error_is_the_source() {
        let e = DhtError::from(ConnectError::PeerNotFound);
        let inner = e.source().and_then(|s| s.downcast_ref::<ConnectError>());
        assert_eq!(inner, Some(&ConnectError::PeerNotFound));
        assert_eq!(e.as_connect(), Some(&ConnectError::PeerNotFound));
        let e = DhtError::from(OpError::SeqTooLow);
        let inner = e.source().and_then(|s| s.downcast_ref::<OpError>());
        assert_eq!(inner, Some(&OpError::SeqTooLow));
        assert_eq!(e.as_op(), Some(&OpError::SeqTooLow));
    }
}

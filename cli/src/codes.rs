//! The `error` codes of `--json` error lines: the reference's `err.code` where it has one
//! (`PEER_NOT_FOUND`, `SEQ_TOO_LOW`, `REQUEST_TIMEOUT`, `ECONNRESET`, …), an hdht code in the
//! same style otherwise. The one place that maps the libraries' error types to codes: when
//! they carry a `code()` method of their own, each impl here becomes a call to it.

use std::io;

use hdht_tokio::core::connect::ConnectError;
use hdht_tokio::core::dht::OpError;
use hdht_tokio::core::rpc::{QueryError, RequestError};
use hdht_tokio::DhtError;

/// An error's code for `{"error":CODE,"message":…}`.
pub trait Code {
    /// The code, `SCREAMING_SNAKE_CASE`.
    fn cli_code(&self) -> &'static str;
}

impl Code for ConnectError {
    fn cli_code(&self) -> &'static str {
        self.code()
    }
}

impl Code for RequestError {
    fn cli_code(&self) -> &'static str {
        match self {
            RequestError::Timeout => "REQUEST_TIMEOUT",
            RequestError::Destroyed => "REQUEST_DESTROYED",
            RequestError::TooManyRequests => "TOO_MANY_REQUESTS",
            RequestError::DatagramTooLarge { .. } => "DATAGRAM_TOO_LARGE",
            // (Variants added later, once the types are `#[non_exhaustive]`.)
            #[allow(unreachable_patterns)]
            _ => "ERROR",
        }
    }
}

impl Code for QueryError {
    fn cli_code(&self) -> &'static str {
        match self {
            QueryError::TooFewNodes => "TOO_FEW_NODES",
            QueryError::CommitFailed(_) => "COMMIT_FAILED",
            QueryError::Destroyed => "REQUEST_DESTROYED",
            // (Variants added later, once the types are `#[non_exhaustive]`.)
            #[allow(unreachable_patterns)]
            _ => "ERROR",
        }
    }
}

impl Code for OpError {
    fn cli_code(&self) -> &'static str {
        match self {
            OpError::TooFewNodes => "TOO_FEW_NODES",
            OpError::CommitFailed(e) => e.cli_code(),
            OpError::SeqTooLow => "SEQ_TOO_LOW",
            OpError::SeqReused => "SEQ_REUSED",
            OpError::Destroyed => "NODE_DESTROYED",
            OpError::Unexpected(_) => "UNEXPECTED",
            OpError::Query(e) => e.cli_code(),
            OpError::SeqOutOfRange { .. } => "SEQ_OUT_OF_RANGE",
            OpError::ValueTooLarge(_) => "VALUE_TOO_LARGE",
            // (Variants added later, once the types are `#[non_exhaustive]`.)
            #[allow(unreachable_patterns)]
            _ => "ERROR",
        }
    }
}

impl Code for DhtError {
    fn cli_code(&self) -> &'static str {
        match self {
            DhtError::Io(e) => e.cli_code(),
            DhtError::Bootstrap(_) => "BAD_BOOTSTRAP",
            DhtError::Destroyed => "NODE_DESTROYED",
            DhtError::NoBootstrapReply { .. } => "NO_BOOTSTRAP_REPLY",
            DhtError::Request(e) => e.cli_code(),
            DhtError::Query(e) => e.cli_code(),
            DhtError::Op(e) => e.cli_code(),
            DhtError::Connect(e) => e.cli_code(),
            // The library's own code (the reference's `err.code`) for anything added later.
            e => e.code().unwrap_or("ERROR"),
        }
    }
}

/// The libuv names udx-native's stream errors carry (`ECONNRESET`, `ETIMEDOUT`, …).
impl Code for io::Error {
    fn cli_code(&self) -> &'static str {
        match self.kind() {
            io::ErrorKind::ConnectionReset => "ECONNRESET",
            io::ErrorKind::TimedOut => "ETIMEDOUT",
            io::ErrorKind::BrokenPipe => "EPIPE",
            io::ErrorKind::AddrInUse => "EADDRINUSE",
            io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
            io::ErrorKind::PermissionDenied => "EACCES",
            io::ErrorKind::NotConnected => "ENOTCONN",
            _ => "IO_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_codes() {
        assert_eq!(ConnectError::PeerNotFound.cli_code(), "PEER_NOT_FOUND");
        assert_eq!(OpError::SeqTooLow.cli_code(), "SEQ_TOO_LOW");
        assert_eq!(
            OpError::CommitFailed(RequestError::Timeout).cli_code(),
            "REQUEST_TIMEOUT"
        );
        assert_eq!(
            DhtError::NoBootstrapReply { tried: vec![] }.cli_code(),
            "NO_BOOTSTRAP_REPLY"
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(reset.cli_code(), "ECONNRESET");
    }
}

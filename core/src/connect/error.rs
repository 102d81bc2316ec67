//! Constants and errors of the connect flow: `FIREWALL` and `ERROR` from hyperdht
//! `lib/constants.js`, and the error codes of `lib/errors.js` as a typed enum.

use thiserror::Error;

/// NAT / firewall classification (`FIREWALL`), carried in Noise and holepunch payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Firewall {
    /// Not known (yet): a firewalled DHT socket, or too few NAT samples.
    Unknown,
    /// Reachable at its address without punching.
    Open,
    /// Behind a NAT that keeps one mapping per socket (punchable).
    Consistent,
    /// Behind a NAT that maps every destination to a new port.
    Random,
}

impl Firewall {
    /// `FIREWALL.UNKNOWN`.
    pub const UNKNOWN: u64 = 0;
    /// `FIREWALL.OPEN`.
    pub const OPEN: u64 = 1;
    /// `FIREWALL.CONSISTENT`.
    pub const CONSISTENT: u64 = 2;
    /// `FIREWALL.RANDOM`.
    pub const RANDOM: u64 = 3;

    /// The wire value.
    pub fn to_wire(self) -> u64 {
        match self {
            Firewall::Unknown => Self::UNKNOWN,
            Firewall::Open => Self::OPEN,
            Firewall::Consistent => Self::CONSISTENT,
            Firewall::Random => Self::RANDOM,
        }
    }

    /// The classification for a wire value; `None` for values the reference never sends.
    pub fn from_wire(v: u64) -> Option<Self> {
        match v {
            Self::UNKNOWN => Some(Firewall::Unknown),
            Self::OPEN => Some(Firewall::Open),
            Self::CONSISTENT => Some(Firewall::Consistent),
            Self::RANDOM => Some(Firewall::Random),
            _ => None,
        }
    }

    /// The reference's name (`"CONSISTENT"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Firewall::Unknown => "UNKNOWN",
            Firewall::Open => "OPEN",
            Firewall::Consistent => "CONSISTENT",
            Firewall::Random => "RANDOM",
        }
    }
}

/// The `error` field of Noise and holepunch payloads (`ERROR`, connection part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// No error.
    None,
    /// The sender aborted (server: the client sent no udx info; holepunch: gave up).
    Aborted,
    /// The client's payload version is not 1.
    VersionMismatch,
    /// The server cannot punch right now (random NAT without a relay); try again later.
    TryLater,
}

impl ErrorCode {
    /// `ERROR.NONE`.
    pub const NONE: u64 = 0;
    /// `ERROR.ABORTED`.
    pub const ABORTED: u64 = 1;
    /// `ERROR.VERSION_MISMATCH`.
    pub const VERSION_MISMATCH: u64 = 2;
    /// `ERROR.TRY_LATER`.
    pub const TRY_LATER: u64 = 3;
    /// `ERROR.SEQ_REUSED` (mutable records, dht-rpc response error; listed for completeness).
    pub const SEQ_REUSED: u64 = 16;
    /// `ERROR.SEQ_TOO_LOW` (mutable records).
    pub const SEQ_TOO_LOW: u64 = 17;

    /// The wire value.
    pub fn to_wire(self) -> u64 {
        match self {
            ErrorCode::None => Self::NONE,
            ErrorCode::Aborted => Self::ABORTED,
            ErrorCode::VersionMismatch => Self::VERSION_MISMATCH,
            ErrorCode::TryLater => Self::TRY_LATER,
        }
    }

    /// The code for a wire value; `None` for anything else (still an error ≠ 0 to the reference).
    pub fn from_wire(v: u64) -> Option<Self> {
        match v {
            Self::NONE => Some(ErrorCode::None),
            Self::ABORTED => Some(ErrorCode::Aborted),
            Self::VERSION_MISMATCH => Some(ErrorCode::VersionMismatch),
            Self::TRY_LATER => Some(ErrorCode::TryLater),
            _ => None,
        }
    }
}

/// Why a connect (or listen) failed: the codes of hyperdht `lib/errors.js`, plus dht-rpc's
/// `REQUEST_TIMEOUT` which a client can also see. `Display` is the reference's
/// `"CODE: default message"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ConnectError {
    /// A PEER_HANDSHAKE reply was malformed or came from the wrong node (swallowed per attempt).
    #[error("BAD_HANDSHAKE_REPLY: Bad handshake reply")]
    BadHandshakeReply,
    /// A PEER_HOLEPUNCH reply was malformed, not a REPLY, or from the wrong node.
    #[error("BAD_HOLEPUNCH_REPLY: Bad holepunch reply")]
    BadHolepunchReply,
    /// Holepunching gave up (passive wait timed out, LAN-only path failed, puncher gave up, …).
    #[error("HOLEPUNCH_ABORTED: Holepunch aborted")]
    HolepunchAborted,
    /// The server's holepunch reply did not decrypt or decode.
    #[error("HOLEPUNCH_INVALID: Invalid holepunch payload")]
    HolepunchInvalid,
    /// A side's NAT type was still UNKNOWN after probing.
    #[error("HOLEPUNCH_PROBE_TIMEOUT: Holepunching probe did not finish in time")]
    HolepunchProbeTimeout,
    /// Both NATs are RANDOM.
    #[error("HOLEPUNCH_DOUBLE_RANDOMIZED_NATS: Both remote and local NATs are randomized")]
    HolepunchDoubleRandomizedNats,
    /// The server is not OPEN, not holepunchable, and there is no LAN path.
    #[error("CANNOT_HOLEPUNCH: Cannot holepunch to remote")]
    CannotHolepunch,
    /// The punch-round reply did not say `punching`.
    #[error("REMOTE_NOT_HOLEPUNCHING: Remote is not holepunching")]
    RemoteNotHolepunching,
    /// No punching strategy applies.
    #[error("REMOTE_NOT_HOLEPUNCHABLE: Remote is not holepunchable")]
    RemoteNotHolepunchable,
    /// The server's holepunch reply carried this error code (≠ 0).
    #[error("REMOTE_ABORTED: Remote aborted with error code {0}")]
    RemoteAborted(u64),
    /// `final()` before the handshake completed.
    #[error("HANDSHAKE_UNFINISHED: Handshake did not finish")]
    HandshakeUnfinished,
    /// The handshake phase ended without a result.
    #[error("HANDSHAKE_INVALID: Received invalid handshake")]
    HandshakeInvalid,
    /// Server: `listen` while already listening.
    #[error("ALREADY_LISTENING: Already listening")]
    AlreadyListening,
    /// Server: another server of this node listens on the key pair.
    #[error("KEYPAIR_ALREADY_USED: Keypair already used")]
    KeypairAlreadyUsed,
    /// The node was destroyed.
    #[error("NODE_DESTROYED: Node destroyed")]
    NodeDestroyed,
    /// Handshake attempts were made, none answered validly.
    #[error("PEER_CONNECTION_FAILED: Could not connect to peer")]
    PeerConnectionFailed,
    /// FIND_PEER found no node holding the announcement.
    #[error("PEER_NOT_FOUND: Peer not found")]
    PeerNotFound,
    /// The stream is not connected.
    #[error("STREAM_NOT_CONNECTED: Stream is not connected")]
    StreamNotConnected,
    /// The server's payload version is not 1.
    #[error("SERVER_INCOMPATIBLE: Server is using an incompatible version")]
    ServerIncompatible,
    /// The server's payload had error ≠ 0, or no udx info.
    #[error("SERVER_ERROR: Server returned an error")]
    ServerError,
    /// A connection pool replaced a duplicate connection.
    #[error("DUPLICATE_CONNECTION: Duplicate connection")]
    DuplicateConnection,
    /// Blind-relay pairing failed or timed out.
    #[error("RELAY_ABORTED: Relay aborted")]
    RelayAborted,
    /// The DHT is suspended.
    #[error("SUSPENDED: Suspended")]
    Suspended,
    /// dht-rpc: a request (e.g. PEER_HOLEPUNCH) got no reply after its retries.
    #[error("REQUEST_TIMEOUT: Request timed out")]
    RequestTimeout,
    /// hdht only (the reference has no buffer budget): the node's connection-buffer budget
    /// ([`DhtConfig::connection_budget`](crate::dht::DhtConfig::connection_budget)) is spent,
    /// so no new connection is opened until others close.
    #[error("BUFFER_BUDGET_SPENT: The node's connection-buffer budget is spent")]
    BufferBudgetSpent,
}

impl ConnectError {
    /// Every variant with a reference code (with `RemoteAborted(0)` standing for its family);
    /// [`BufferBudgetSpent`](Self::BufferBudgetSpent), hdht's own, is not among them.
    pub const ALL: [ConnectError; 24] = [
        ConnectError::BadHandshakeReply,
        ConnectError::BadHolepunchReply,
        ConnectError::HolepunchAborted,
        ConnectError::HolepunchInvalid,
        ConnectError::HolepunchProbeTimeout,
        ConnectError::HolepunchDoubleRandomizedNats,
        ConnectError::CannotHolepunch,
        ConnectError::RemoteNotHolepunching,
        ConnectError::RemoteNotHolepunchable,
        ConnectError::RemoteAborted(0),
        ConnectError::HandshakeUnfinished,
        ConnectError::HandshakeInvalid,
        ConnectError::AlreadyListening,
        ConnectError::KeypairAlreadyUsed,
        ConnectError::NodeDestroyed,
        ConnectError::PeerConnectionFailed,
        ConnectError::PeerNotFound,
        ConnectError::StreamNotConnected,
        ConnectError::ServerIncompatible,
        ConnectError::ServerError,
        ConnectError::DuplicateConnection,
        ConnectError::RelayAborted,
        ConnectError::Suspended,
        ConnectError::RequestTimeout,
    ];

    /// The reference's `err.code` string.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::BadHandshakeReply => "BAD_HANDSHAKE_REPLY",
            ConnectError::BadHolepunchReply => "BAD_HOLEPUNCH_REPLY",
            ConnectError::HolepunchAborted => "HOLEPUNCH_ABORTED",
            ConnectError::HolepunchInvalid => "HOLEPUNCH_INVALID",
            ConnectError::HolepunchProbeTimeout => "HOLEPUNCH_PROBE_TIMEOUT",
            ConnectError::HolepunchDoubleRandomizedNats => "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS",
            ConnectError::CannotHolepunch => "CANNOT_HOLEPUNCH",
            ConnectError::RemoteNotHolepunching => "REMOTE_NOT_HOLEPUNCHING",
            ConnectError::RemoteNotHolepunchable => "REMOTE_NOT_HOLEPUNCHABLE",
            ConnectError::RemoteAborted(_) => "REMOTE_ABORTED",
            ConnectError::HandshakeUnfinished => "HANDSHAKE_UNFINISHED",
            ConnectError::HandshakeInvalid => "HANDSHAKE_INVALID",
            ConnectError::AlreadyListening => "ALREADY_LISTENING",
            ConnectError::KeypairAlreadyUsed => "KEYPAIR_ALREADY_USED",
            ConnectError::NodeDestroyed => "NODE_DESTROYED",
            ConnectError::PeerConnectionFailed => "PEER_CONNECTION_FAILED",
            ConnectError::PeerNotFound => "PEER_NOT_FOUND",
            ConnectError::StreamNotConnected => "STREAM_NOT_CONNECTED",
            ConnectError::ServerIncompatible => "SERVER_INCOMPATIBLE",
            ConnectError::ServerError => "SERVER_ERROR",
            ConnectError::DuplicateConnection => "DUPLICATE_CONNECTION",
            ConnectError::RelayAborted => "RELAY_ABORTED",
            ConnectError::Suspended => "SUSPENDED",
            ConnectError::RequestTimeout => "REQUEST_TIMEOUT",
            ConnectError::BufferBudgetSpent => "BUFFER_BUDGET_SPENT",
        }
    }

    /// The variant for a reference code string (`RemoteAborted(0)` for `"REMOTE_ABORTED"`).
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }
}

//! Which of a node's sockets a datagram uses.

/// The node's sockets: dht-rpc's two, and the pool sockets hyperdht opens for holepunching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SocketKind {
    /// Bound to the configured port; the address other nodes store.
    Server,
    /// Bound to a random port; used for requests while firewalled.
    Client,
    /// A pool socket (hyperdht's `SocketPool`): bound to port 0 on the node's host when the
    /// node asks for it, carrying holepunch probes, NAT-sampling pings, PEER_HOLEPUNCH requests
    /// and replies, and the UDX stream of a punched connection. Requests arriving on it are
    /// answered like the client socket's (never with our id).
    Pool(u32),
}

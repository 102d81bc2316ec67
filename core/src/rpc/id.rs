//! Node ids: `H(ipv4Address)`, tied to a node's public ip:port, and XOR-distance ordering.

use core::cmp::Ordering;
use core::fmt;
use core::net::SocketAddrV4;

use crate::crypto::hash;

/// A 32-byte routing id (also the shape of targets).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; 32]);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl NodeId {
    /// The id of the node at `addr`: BLAKE2b-256 of its 6-byte wire address.
    pub fn from_addr(addr: &SocketAddrV4) -> NodeId {
        NodeId(hash(&encode_addr(addr)))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares `a` and `b` by XOR distance to `self` (the reference's `xorCompare`).
    pub fn cmp_distance(&self, a: &NodeId, b: &NodeId) -> Ordering {
        for i in 0..32 {
            if a.0[i] != b.0[i] {
                return (self.0[i] ^ a.0[i]).cmp(&(self.0[i] ^ b.0[i]));
            }
        }
        Ordering::Equal
    }

    /// The number of leading bits `other` shares with `self`, capped at 255 (kademlia row index).
    pub fn row_index(&self, other: &NodeId) -> usize {
        for i in 0..32 {
            let x = self.0[i] ^ other.0[i];
            if x != 0 {
                return i * 8 + x.leading_zeros() as usize;
            }
        }
        255
    }
}

/// The 6-byte wire form of an IPv4 address: octets then port LE.
pub fn encode_addr(addr: &SocketAddrV4) -> [u8; 6] {
    let o = addr.ip().octets();
    let p = addr.port().to_le_bytes();
    [o[0], o[1], o[2], o[3], p[0], p[1]]
}

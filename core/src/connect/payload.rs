//! NoisePayload: the plaintext carried by the two Noise messages (hyperdht `lib/messages.js`
//! `noisePayload`, spec 03 §2).
//!
//! ```text
//! uint version (1) | uint flags | uint error | uint firewall
//! [1]  holepunch:      uint id, relayInfo[] relays      relayInfo = ipv4 relayAddress, ipv4 peerAddress
//! [2]  addresses4:     ipv4[]          (flag set only when non-empty)
//! [4]  addresses6:     ipv6[]          (flag set only when non-empty)
//! [8]  udx:            uint version, uint features (bit0 reusableSocket), uint id, uint seq
//! [16] secretStream:   uint version
//! [32] relayThrough:   uint version, uint flags (0), fixed32 publicKey, fixed32 token
//! [64] relayAddresses: ipv4[]          (flag set whenever present, even when empty)
//! ```
//!
//! Decoding ignores unknown flag bits and trailing bytes, and stops after the version when it is
//! not 1 (everything else is then reported empty), exactly like the reference.

use alloc::vec::Vec;
use core::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::wire::{DecodeError, Reader, Writer};

/// The only NoisePayload version.
pub const VERSION: u64 = 1;

mod flag {
    pub(super) const HOLEPUNCH: u64 = 1;
    pub(super) const ADDRESSES4: u64 = 2;
    pub(super) const ADDRESSES6: u64 = 4;
    pub(super) const UDX: u64 = 8;
    pub(super) const SECRET_STREAM: u64 = 16;
    pub(super) const RELAY_THROUGH: u64 = 32;
    pub(super) const RELAY_ADDRESSES: u64 = 64;
}

/// A relay the server announced through: the relay node and the server as that node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayInfo {
    /// The DHT node that stores the server's announcement.
    pub relay_address: SocketAddrV4,
    /// The server's address as that node saw it.
    pub peer_address: SocketAddrV4,
}

/// Holepunch info in the server's payload (present iff the server is not OPEN).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchInfo {
    /// The server's handshake slot id, echoed in PEER_HOLEPUNCH.
    pub id: u64,
    /// Up to 3 relays to send PEER_HOLEPUNCH through.
    pub relays: Vec<RelayInfo>,
}

/// The UDX stream a side offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdxInfo {
    /// Encoded as sent (hyperdht always sends 1).
    pub version: u64,
    /// Feature bit 0.
    pub reusable_socket: bool,
    /// The sender's raw stream id (a 32-bit value in practice; kept as sent).
    pub id: u64,
    /// Informational, always 0 in the reference.
    pub seq: u64,
}

impl UdxInfo {
    /// Version 1 info for stream `id`, `seq` 0.
    pub fn new(id: u32, reusable_socket: bool) -> Self {
        UdxInfo {
            version: 1,
            reusable_socket,
            id: u64::from(id),
            seq: 0,
        }
    }
}

/// Secret-stream info: just a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretStreamInfo {
    /// Encoded as sent (hyperdht always sends 1).
    pub version: u64,
}

impl Default for SecretStreamInfo {
    fn default() -> Self {
        SecretStreamInfo { version: 1 }
    }
}

/// Blind-relay info: which relay to pair through and the pairing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayThroughInfo {
    /// Encoded as sent (hyperdht always sends 1). The flags field that follows it on the wire is
    /// written as 0 and ignored when read, as in the reference.
    pub version: u64,
    /// The relay's public key.
    pub public_key: [u8; 32],
    /// 32 random bytes both sides present to the relay.
    pub token: [u8; 32],
}

/// The payload of a Noise handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoisePayload {
    /// 1. A payload with another version encodes and decodes as the version alone.
    pub version: u64,
    /// `ERROR.*` ([`super::error::ErrorCode`]); kept as sent.
    pub error: u64,
    /// `FIREWALL.*` ([`super::error::Firewall`]) of the sender's DHT socket; kept as sent.
    pub firewall: u64,
    /// Server only, when not OPEN.
    pub holepunch: Option<HolepunchInfo>,
    /// Public address (if known) then local addresses. Empty = omitted.
    pub addresses4: Vec<SocketAddrV4>,
    /// Empty = omitted (hyperdht never sends any).
    pub addresses6: Vec<SocketAddrV6>,
    /// The sender's UDX stream.
    pub udx: Option<UdxInfo>,
    /// Always present in hyperdht payloads.
    pub secret_stream: Option<SecretStreamInfo>,
    /// Blind-relay pairing request.
    pub relay_through: Option<RelayThroughInfo>,
    /// Server only: nodes it announced to. `Some(empty)` is encoded (flag set, count 0).
    pub relay_addresses: Option<Vec<SocketAddrV4>>,
}

impl Default for NoisePayload {
    /// Version 1, no error, firewall UNKNOWN, everything else absent.
    fn default() -> Self {
        NoisePayload {
            version: VERSION,
            error: 0,
            firewall: 0,
            holepunch: None,
            addresses4: Vec::new(),
            addresses6: Vec::new(),
            udx: None,
            secret_stream: None,
            relay_through: None,
            relay_addresses: None,
        }
    }
}

pub(crate) fn read_ipv6(r: &mut Reader<'_>) -> Result<SocketAddrV6, DecodeError> {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(r.bytes(16)?);
    let port = r.u16()?;
    Ok(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
}

pub(crate) fn write_ipv6(w: &mut Writer<'_>, a: &SocketAddrV6) {
    w.bytes(&a.ip().octets());
    w.u16(a.port());
}

impl NoisePayload {
    /// A payload of another version: on the wire just `uint version` (what this decoder makes of
    /// any non-1 version). Useful to exercise `VERSION_MISMATCH` / `SERVER_INCOMPATIBLE`.
    pub fn other_version(version: u64) -> Self {
        NoisePayload {
            version,
            ..NoisePayload::default()
        }
    }

    /// The flags byte this payload encodes with.
    pub fn flags(&self) -> u64 {
        let mut flags = 0;
        if self.holepunch.is_some() {
            flags |= flag::HOLEPUNCH;
        }
        if !self.addresses4.is_empty() {
            flags |= flag::ADDRESSES4;
        }
        if !self.addresses6.is_empty() {
            flags |= flag::ADDRESSES6;
        }
        if self.udx.is_some() {
            flags |= flag::UDX;
        }
        if self.secret_stream.is_some() {
            flags |= flag::SECRET_STREAM;
        }
        if self.relay_through.is_some() {
            flags |= flag::RELAY_THROUGH;
        }
        if self.relay_addresses.is_some() {
            flags |= flag::RELAY_ADDRESSES;
        }
        flags
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.uint(self.version);
        if self.version != VERSION {
            return;
        }
        w.uint(self.flags());
        w.uint(self.error);
        w.uint(self.firewall);
        if let Some(hp) = &self.holepunch {
            w.uint(hp.id);
            w.uint(hp.relays.len() as u64);
            for r in &hp.relays {
                w.ipv4(&r.relay_address);
                w.ipv4(&r.peer_address);
            }
        }
        if !self.addresses4.is_empty() {
            w.ipv4_array(&self.addresses4);
        }
        if !self.addresses6.is_empty() {
            w.uint(self.addresses6.len() as u64);
            for a in &self.addresses6 {
                write_ipv6(&mut w, a);
            }
        }
        if let Some(u) = &self.udx {
            w.uint(u.version);
            w.uint(u64::from(u.reusable_socket));
            w.uint(u.id);
            w.uint(u.seq);
        }
        if let Some(s) = &self.secret_stream {
            w.uint(s.version);
        }
        if let Some(rt) = &self.relay_through {
            w.uint(rt.version);
            w.uint(0);
            w.fixed32(&rt.public_key);
            w.fixed32(&rt.token);
        }
        if let Some(ra) = &self.relay_addresses {
            w.ipv4_array(ra);
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 6 * self.addresses4.len());
        self.encode(&mut out);
        out
    }

    /// Decodes a payload; trailing bytes and unknown flag bits are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.uint()?;
        if version != VERSION {
            return Ok(NoisePayload::other_version(version));
        }
        let flags = r.uint()?;
        let error = r.uint()?;
        let firewall = r.uint()?;
        let holepunch = if flags & flag::HOLEPUNCH != 0 {
            let id = r.uint()?;
            let n = r.array_len(12)?;
            let mut relays = Vec::with_capacity(n);
            for _ in 0..n {
                let relay_address = r.ipv4()?;
                let peer_address = r.ipv4()?;
                relays.push(RelayInfo {
                    relay_address,
                    peer_address,
                });
            }
            Some(HolepunchInfo { id, relays })
        } else {
            None
        };
        let addresses4 = if flags & flag::ADDRESSES4 != 0 {
            r.ipv4_array()?
        } else {
            Vec::new()
        };
        let addresses6 = if flags & flag::ADDRESSES6 != 0 {
            let n = r.array_len(18)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_ipv6(&mut r)?);
            }
            v
        } else {
            Vec::new()
        };
        let udx = if flags & flag::UDX != 0 {
            let version = r.uint()?;
            let features = r.uint()?;
            let id = r.uint()?;
            let seq = r.uint()?;
            Some(UdxInfo {
                version,
                reusable_socket: features & 1 != 0,
                id,
                seq,
            })
        } else {
            None
        };
        let secret_stream = if flags & flag::SECRET_STREAM != 0 {
            Some(SecretStreamInfo { version: r.uint()? })
        } else {
            None
        };
        let relay_through = if flags & flag::RELAY_THROUGH != 0 {
            let version = r.uint()?;
            let _flags = r.uint()?;
            let public_key = r.fixed32()?;
            let token = r.fixed32()?;
            Some(RelayThroughInfo {
                version,
                public_key,
                token,
            })
        } else {
            None
        };
        let relay_addresses = if flags & flag::RELAY_ADDRESSES != 0 {
            Some(r.ipv4_array()?)
        } else {
            None
        };
        Ok(NoisePayload {
            version,
            error,
            firewall,
            holepunch,
            addresses4,
            addresses6,
            udx,
            secret_stream,
            relay_through,
            relay_addresses,
        })
    }
}

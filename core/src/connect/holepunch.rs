//! The holepunch payload: the plaintext inside a PEER_HOLEPUNCH SecurePayload box (hyperdht
//! `lib/messages.js` `holepunchPayload`, spec 03 §4.2).
//!
//! ```text
//! uint flags      -- 1 connected, 2 punching, 4 addresses, 8 remoteAddress, 16 token, 32 remoteToken
//! uint error | uint firewall | uint round
//! [4]  ipv4[] addresses        (present when Some, even if empty)
//! [8]  ipv4   remoteAddress
//! [16] fixed32 token
//! [32] fixed32 remoteToken
//! ```
//!
//! The outer PEER_HOLEPUNCH value (`flags | mode | id | buffer payload | [peerAddress]`) is
//! [`crate::dht::messages::HolepunchEnvelope`].

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use crate::wire::{DecodeError, Reader, Writer};

mod flag {
    pub(super) const CONNECTED: u64 = 1;
    pub(super) const PUNCHING: u64 = 2;
    pub(super) const ADDRESSES: u64 = 4;
    pub(super) const REMOTE_ADDRESS: u64 = 8;
    pub(super) const TOKEN: u64 = 16;
    pub(super) const REMOTE_TOKEN: u64 = 32;
}

/// One holepunch round's message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HolepunchPayload {
    /// `ERROR.*` ([`super::error::ErrorCode`]); kept as sent.
    pub error: u64,
    /// `FIREWALL.*` ([`super::error::Firewall`]) from the sender's puncher NAT analysis.
    pub firewall: u64,
    /// 0 = probe round, 1 = punch round, …
    pub round: u64,
    /// The sender already has a connected stream.
    pub connected: bool,
    /// The sender is punching (punch round).
    pub punching: bool,
    /// The sender's puncher addresses as the DHT sees them (RANDOM NATs advertise port 0).
    pub addresses: Option<Vec<SocketAddrV4>>,
    /// The address the sender sees for the receiver (fast-open target on the client).
    pub remote_address: Option<SocketAddrV4>,
    /// `token(receiver host)` from the sender's SecurePayload, to be echoed back.
    pub token: Option<[u8; 32]>,
    /// The receiver's token, echoed.
    pub remote_token: Option<[u8; 32]>,
}

impl HolepunchPayload {
    /// The flags byte this payload encodes with.
    pub fn flags(&self) -> u64 {
        let mut flags = 0;
        if self.connected {
            flags |= flag::CONNECTED;
        }
        if self.punching {
            flags |= flag::PUNCHING;
        }
        if self.addresses.is_some() {
            flags |= flag::ADDRESSES;
        }
        if self.remote_address.is_some() {
            flags |= flag::REMOTE_ADDRESS;
        }
        if self.token.is_some() {
            flags |= flag::TOKEN;
        }
        if self.remote_token.is_some() {
            flags |= flag::REMOTE_TOKEN;
        }
        flags
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.uint(self.flags());
        w.uint(self.error);
        w.uint(self.firewall);
        w.uint(self.round);
        if let Some(a) = &self.addresses {
            w.ipv4_array(a);
        }
        if let Some(a) = &self.remote_address {
            w.ipv4(a);
        }
        if let Some(t) = &self.token {
            w.fixed32(t);
        }
        if let Some(t) = &self.remote_token {
            w.fixed32(t);
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        self.encode(&mut out);
        out
    }

    /// Decodes a payload; trailing bytes and unknown flag bits are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let flags = r.uint()?;
        let error = r.uint()?;
        let firewall = r.uint()?;
        let round = r.uint()?;
        let addresses = if flags & flag::ADDRESSES != 0 {
            Some(r.ipv4_array()?)
        } else {
            None
        };
        let remote_address = if flags & flag::REMOTE_ADDRESS != 0 {
            Some(r.ipv4()?)
        } else {
            None
        };
        let token = if flags & flag::TOKEN != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let remote_token = if flags & flag::REMOTE_TOKEN != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        Ok(HolepunchPayload {
            error,
            firewall,
            round,
            connected: flags & flag::CONNECTED != 0,
            punching: flags & flag::PUNCHING != 0,
            addresses,
            remote_address,
            token,
            remote_token,
        })
    }
}

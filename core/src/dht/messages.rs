//! hyperdht message encodings (hyperdht 6.34 `lib/messages.js`), carried in the `value` of
//! dht-rpc requests and responses.
//!
//! Every decoder has the reference's leniency: trailing bytes after the last field are ignored,
//! unknown flag bits are ignored (no field is read for them), a truncated field is an error and a
//! `uint` above 2^53 − 1 is an error. Encoders always write the canonical (minimal) form, which is
//! what signables are built from. Encoders do not check integer ranges: a `u64` above
//! 2^53 − 1 is written in its 9-byte form, which a reference peer (and [`Reader::uint`]) rejects,
//! so callers keep seq, bump, ids and modes within JavaScript's safe range.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use crate::wire::{DecodeError, Reader, Writer};

/// hyperdht command numbers (`lib/constants.js` `COMMANDS`). All are sent as **non-internal**
/// dht-rpc requests; numbers 0–4 collide with dht-rpc's internal commands and only the internal
/// flag tells them apart.
pub mod command {
    /// Routed Noise handshake towards a server (`H(server publicKey)` target).
    pub const PEER_HANDSHAKE: u64 = 0;
    /// Routed holepunch exchange towards a server.
    pub const PEER_HOLEPUNCH: u64 = 1;
    /// Fetch the record a server announced under `H(publicKey)`.
    pub const FIND_PEER: u64 = 2;
    /// List the peers announced under a topic.
    pub const LOOKUP: u64 = 3;
    /// Store a signed peer record under a topic (token required).
    pub const ANNOUNCE: u64 = 4;
    /// Remove a peer record from a topic (token required).
    pub const UNANNOUNCE: u64 = 5;
    /// Store a signed mutable value under `H(publicKey)` (token required).
    pub const MUTABLE_PUT: u64 = 6;
    /// Fetch a mutable value with at least a given seq.
    pub const MUTABLE_GET: u64 = 7;
    /// Store a raw value under `H(value)` (token required).
    pub const IMMUTABLE_PUT: u64 = 8;
    /// Fetch a raw value by `H(value)`.
    pub const IMMUTABLE_GET: u64 = 9;
    /// Plugin request (`pluginRequest` value).
    pub const PLUGIN: u64 = 10;
}

/// Response error code: MUTABLE_PUT with the stored seq but a different value.
pub const ERROR_SEQ_REUSED: u64 = 16;
/// Response error code: MUTABLE_PUT with a seq lower than the stored one.
pub const ERROR_SEQ_TOO_LOW: u64 = 17;

/// Router envelope modes (`lib/constants.js` `FROM_CLIENT` … `REPLY`). Kept as raw `u64`s in the
/// envelopes so unknown modes still decode.
pub mod mode {
    /// Sent by the client towards the server.
    pub const FROM_CLIENT: u64 = 0;
    /// Sent by the server back towards the client.
    pub const FROM_SERVER: u64 = 1;
    /// Forwarded by the relaying (closest) node.
    pub const FROM_RELAY: u64 = 2;
    /// Forwarded by a second relay.
    pub const FROM_SECOND_RELAY: u64 = 3;
    /// A reply to the original requester.
    pub const REPLY: u64 = 4;
}

mod announce_flag {
    pub(super) const PEER: u64 = 1;
    pub(super) const REFRESH: u64 = 2;
    pub(super) const SIGNATURE: u64 = 4;
    pub(super) const BUMP: u64 = 8;
}

fn fixed64(r: &mut Reader<'_>) -> Result<[u8; 64], DecodeError> {
    let mut out = [0u8; 64];
    out.copy_from_slice(r.bytes(64)?);
    Ok(out)
}

/// Smallest encoded `peer`: 32-byte key and a one-byte empty array.
const MIN_PEER_LEN: usize = 33;

/// A peer record (`peer`): a public key and the relay addresses it can be reached through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peer {
    /// The peer's Ed25519 public key.
    pub public_key: [u8; 32],
    /// IPv4 relay addresses (`array(ipv4Address)`).
    pub relay_addresses: Vec<SocketAddrV4>,
}

impl Peer {
    /// Appends the canonical encoding: `fixed32 publicKey ‖ array(ipv4Address) relayAddresses`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.fixed32(&self.public_key);
        w.ipv4_array(&self.relay_addresses);
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + 6 * self.relay_addresses.len());
        self.encode(&mut out);
        out
    }

    /// Decodes a record; trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::new(bytes))
    }

    /// Reads a record from `r`, leaving `r` after it.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let public_key = r.fixed32()?;
        let relay_addresses = r.ipv4_array()?;
        Ok(Peer {
            public_key,
            relay_addresses,
        })
    }
}

/// The ANNOUNCE / UNANNOUNCE request value (`announce`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Announce {
    /// The record to store (flag 1).
    pub peer: Option<Peer>,
    /// A refresh token (flag 2).
    pub refresh: Option<[u8; 32]>,
    /// Ed25519 signature over the announce signable (flag 4).
    pub signature: Option<[u8; 64]>,
    /// Topic bump timestamp in ms (flag 8). Written only when non-zero; absent decodes as 0.
    pub bump: u64,
}

impl Announce {
    /// Appends the encoding: `uint flags ‖ [peer] ‖ [fixed32 refresh] ‖ [fixed64 signature] ‖ [uint bump]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.peer.is_some() {
            flags |= announce_flag::PEER;
        }
        if self.refresh.is_some() {
            flags |= announce_flag::REFRESH;
        }
        if self.signature.is_some() {
            flags |= announce_flag::SIGNATURE;
        }
        if self.bump != 0 {
            flags |= announce_flag::BUMP;
        }
        Writer::new(out).uint(flags);
        if let Some(peer) = &self.peer {
            peer.encode(out);
        }
        let mut w = Writer::new(out);
        if let Some(refresh) = &self.refresh {
            w.fixed32(refresh);
        }
        if let Some(sig) = &self.signature {
            w.bytes(sig);
        }
        if self.bump != 0 {
            w.uint(self.bump);
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes an announce value; unknown flag bits and trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let flags = r.uint()?;
        let peer = if flags & announce_flag::PEER != 0 {
            Some(Peer::read(&mut r)?)
        } else {
            None
        };
        let refresh = if flags & announce_flag::REFRESH != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let signature = if flags & announce_flag::SIGNATURE != 0 {
            Some(fixed64(&mut r)?)
        } else {
            None
        };
        let bump = if flags & announce_flag::BUMP != 0 {
            r.uint()?
        } else {
            0
        };
        Ok(Announce {
            peer,
            refresh,
            signature,
            bump,
        })
    }
}

/// The LOOKUP response value (`lookupRawReply`): the stored peer records and the topic's bump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LookupReplyValue {
    /// The peer records.
    pub peers: Vec<Peer>,
    /// The topic's bump timestamp; 0 when a legacy reply omits it.
    pub bump: u64,
}

impl LookupReplyValue {
    /// Appends the encoding: `array(peer) ‖ uint bump` (bump always written, as a 6.34 server does).
    pub fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).uint(self.peers.len() as u64);
        for p in &self.peers {
            p.encode(out);
        }
        Writer::new(out).uint(self.bump);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes a reply; `bump` is read only if bytes remain after the peers.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let len = r.array_len(MIN_PEER_LEN)?;
        let mut peers = Vec::with_capacity(len);
        for _ in 0..len {
            peers.push(Peer::read(&mut r)?);
        }
        let bump = if r.remaining().is_empty() {
            0
        } else {
            r.uint()?
        };
        Ok(LookupReplyValue { peers, bump })
    }
}

/// Appends a LOOKUP reply built from already-encoded peer records, copied verbatim (the server
/// replies with the stored record bytes), then `uint bump`.
pub fn encode_lookup_reply(records: &[&[u8]], bump: u64, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    w.uint(records.len() as u64);
    for rec in records {
        w.bytes(rec);
    }
    w.uint(bump);
}

/// The MUTABLE_PUT request value (`mutablePutRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutablePutRequest {
    /// The writer's public key; the target is `H(public_key)`.
    pub public_key: [u8; 32],
    /// Sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// Ed25519 signature over the mutable signable.
    pub signature: [u8; 64],
}

impl MutablePutRequest {
    /// Appends the encoding: `fixed32 publicKey ‖ uint seq ‖ buffer value ‖ fixed64 signature`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.fixed32(&self.public_key);
        w.uint(self.seq);
        w.buffer(&self.value);
        w.bytes(&self.signature);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 9 + 9 + self.value.len() + 64);
        self.encode(&mut out);
        out
    }

    /// Decodes the value; trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let public_key = r.fixed32()?;
        let seq = r.uint()?;
        let value = r.buffer()?.to_vec();
        let signature = fixed64(&mut r)?;
        Ok(MutablePutRequest {
            public_key,
            seq,
            value,
            signature,
        })
    }
}

/// The MUTABLE_GET response value (`mutableGetResponse`), also the stored form of a mutable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableGetResponse {
    /// Sequence number.
    pub seq: u64,
    /// The value.
    pub value: Vec<u8>,
    /// Ed25519 signature over the mutable signable.
    pub signature: [u8; 64],
}

impl MutableGetResponse {
    /// Appends the encoding: `uint seq ‖ buffer value ‖ fixed64 signature`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.uint(self.seq);
        w.buffer(&self.value);
        w.bytes(&self.signature);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 9 + self.value.len() + 64);
        self.encode(&mut out);
        out
    }

    /// Decodes the value; trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let seq = r.uint()?;
        let value = r.buffer()?.to_vec();
        let signature = fixed64(&mut r)?;
        Ok(MutableGetResponse {
            seq,
            value,
            signature,
        })
    }
}

/// The MUTABLE_GET request value: a single `uint`, the minimum seq wanted.
pub fn encode_mutable_get_request(seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    Writer::new(&mut out).uint(seq);
    out
}

/// Decodes a MUTABLE_GET request value (a single `uint`; trailing bytes ignored).
pub fn decode_mutable_get_request(bytes: &[u8]) -> Result<u64, DecodeError> {
    Reader::new(bytes).uint()
}

/// The outer PEER_HANDSHAKE value (`handshake`) the router forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeEnvelope {
    /// One of [`mode`]; unknown values are kept.
    pub mode: u64,
    /// The Noise message.
    pub noise: Vec<u8>,
    /// The address of the peer this envelope concerns (flag 1).
    pub peer_address: Option<SocketAddrV4>,
    /// The relaying node's address (flag 2).
    pub relay_address: Option<SocketAddrV4>,
}

impl HandshakeEnvelope {
    /// Appends `uint flags ‖ uint mode ‖ buffer noise ‖ [ipv4 peerAddress] ‖ [ipv4 relayAddress]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let flags =
            u64::from(self.peer_address.is_some()) | (u64::from(self.relay_address.is_some()) << 1);
        let mut w = Writer::new(out);
        w.uint(flags);
        w.uint(self.mode);
        w.buffer(&self.noise);
        if let Some(a) = &self.peer_address {
            w.ipv4(a);
        }
        if let Some(a) = &self.relay_address {
            w.ipv4(a);
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.noise.len() + 16);
        self.encode(&mut out);
        out
    }

    /// Decodes the envelope; unknown flag bits and trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let flags = r.uint()?;
        let mode = r.uint()?;
        let noise = r.buffer()?.to_vec();
        let peer_address = if flags & 1 != 0 {
            Some(r.ipv4()?)
        } else {
            None
        };
        let relay_address = if flags & 2 != 0 {
            Some(r.ipv4()?)
        } else {
            None
        };
        Ok(HandshakeEnvelope {
            mode,
            noise,
            peer_address,
            relay_address,
        })
    }
}

/// The outer PEER_HOLEPUNCH value (`holepunch`) the router forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolepunchEnvelope {
    /// One of [`mode`]; unknown values are kept.
    pub mode: u64,
    /// The holepunch session id.
    pub id: u64,
    /// The encrypted holepunch payload.
    pub payload: Vec<u8>,
    /// The address of the peer this envelope concerns (flag 1).
    pub peer_address: Option<SocketAddrV4>,
}

impl HolepunchEnvelope {
    /// Appends `uint flags ‖ uint mode ‖ uint id ‖ buffer payload ‖ [ipv4 peerAddress]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.uint(u64::from(self.peer_address.is_some()));
        w.uint(self.mode);
        w.uint(self.id);
        w.buffer(&self.payload);
        if let Some(a) = &self.peer_address {
            w.ipv4(a);
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 24);
        self.encode(&mut out);
        out
    }

    /// Decodes the envelope; unknown flag bits and trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let flags = r.uint()?;
        let mode = r.uint()?;
        let id = r.uint()?;
        let payload = r.buffer()?.to_vec();
        let peer_address = if flags & 1 != 0 {
            Some(r.ipv4()?)
        } else {
            None
        };
        Ok(HolepunchEnvelope {
            mode,
            id,
            payload,
            peer_address,
        })
    }
}

/// The PLUGIN request value (`pluginRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequest {
    /// The plugin name: the `string`'s bytes as sent (normally UTF-8; not validated).
    pub plugin: Vec<u8>,
    /// Plugin protocol version.
    pub version: u64,
    /// Plugin command.
    pub command: u64,
    /// Optional payload (flag 1).
    pub value: Option<Vec<u8>>,
}

impl PluginRequest {
    /// Appends `string plugin ‖ uint version ‖ uint command ‖ uint flags ‖ [buffer value]`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.buffer(&self.plugin);
        w.uint(self.version);
        w.uint(self.command);
        w.uint(u64::from(self.value.is_some()));
        if let Some(v) = &self.value {
            w.buffer(v);
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes the request; unknown flag bits and trailing bytes are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let plugin = r.utf8()?.to_vec();
        let version = r.uint()?;
        let command = r.uint()?;
        let flags = r.uint()?;
        let value = if flags & 1 != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        Ok(PluginRequest {
            plugin,
            version,
            command,
            value,
        })
    }
}

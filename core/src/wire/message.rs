//! dht-rpc datagrams (dht-rpc 6.27.0 `lib/io.js`): requests and responses.
//!
//! Decoding only checks structure. Whether an `id` matches the UDP source is a routing
//! question, answered by the rpc layer.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use super::compact::uint_len;
use super::{DecodeError, Reader, Writer};

/// Protocol version carried in the low 4 bits of the first byte.
pub const VERSION: u8 = 0b11;
/// First byte of a request: type 0, version 3.
pub const REQUEST_TYPE: u8 = VERSION;
/// First byte of a response: type 1, version 3.
pub const RESPONSE_TYPE: u8 = 0x10 | VERSION;

/// Error code: no error.
pub const ERROR_OK: u64 = 0;
/// Error code: the receiver does not handle this command.
pub const ERROR_UNKNOWN_COMMAND: u64 = 1;
/// Error code: the request carried a token that is not valid for its source.
pub const ERROR_INVALID_TOKEN: u64 = 2;

/// The most closer nodes a reply carries (k).
pub const MAX_CLOSER_NODES: usize = 20;

/// The largest datagram the reference reads: udx-native 1.21.3's libudx receives every
/// datagram on a socket (dht-rpc's and UDX's alike) into one 2,048-byte buffer
/// (`UDX_SOCKET_PACKET_BUFFER_SIZE`), so the kernel truncates anything longer to its first
/// 2,048 bytes (`MSG_TRUNC`), and dht-rpc decodes what is left — trailing bytes are ignored,
/// so a message that ends within the first 2,048 bytes is still handled, and any longer one
/// fails to decode and is dropped (`tests/tests/datagram_ceiling.rs` checks both on Node
/// nodes). hdht reads dht-rpc datagrams the same way and never sends a longer one; the value
/// sizes this allows are in [`crate::dht::value_size`].
pub const MAX_DATAGRAM_LEN: usize = 2048;

mod req_flag {
    pub(super) const ID: u64 = 1;
    pub(super) const TOKEN: u64 = 2;
    pub(super) const INTERNAL: u64 = 4;
    pub(super) const TARGET: u64 = 8;
    pub(super) const VALUE: u64 = 16;
}

mod res_flag {
    pub(super) const ID: u64 = 1;
    pub(super) const TOKEN: u64 = 2;
    pub(super) const CLOSER_NODES: u64 = 4;
    pub(super) const ERROR: u64 = 8;
    pub(super) const VALUE: u64 = 16;
}

/// A dht-rpc request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Transaction id, echoed by the response.
    pub tid: u16,
    /// The address the sender sent this datagram to, as the sender knows it.
    pub to: SocketAddrV4,
    /// The sender's node id (persistent senders only).
    pub id: Option<[u8; 32]>,
    /// A round-trip token previously issued by the receiver.
    pub token: Option<[u8; 32]>,
    /// Whether `command` is in dht-rpc's internal namespace.
    pub internal: bool,
    /// The command number.
    pub command: u64,
    /// The key this request is about.
    pub target: Option<[u8; 32]>,
    /// The payload. `Some(empty)` and `None` differ on the wire.
    pub value: Option<Vec<u8>>,
}

/// A dht-rpc response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Transaction id of the request this answers.
    pub tid: u16,
    /// The requester's address as the responder saw it.
    pub to: SocketAddrV4,
    /// The responder's node id (persistent responders only).
    pub id: Option<[u8; 32]>,
    /// A token the requester may echo back later.
    pub token: Option<[u8; 32]>,
    /// Nodes close to the request's target. Empty is encoded as absent.
    pub closer_nodes: Vec<SocketAddrV4>,
    /// Error code, 0 for success.
    pub error: u64,
    /// The payload. `Some(empty)` and `None` differ on the wire.
    pub value: Option<Vec<u8>>,
}

/// A decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request (first byte `0x03`).
    Request(Request),
    /// A response (first byte `0x13`).
    Response(Response),
}

impl Message {
    /// Decodes one datagram. Trailing bytes and unknown flag bits are ignored, as the reference
    /// does; anything truncated or of another type/version is an error.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() < 2 {
            return Err(DecodeError::TooShort);
        }
        let mut r = Reader::new(&bytes[1..]);
        match bytes[0] {
            REQUEST_TYPE => Request::decode_body(&mut r).map(Message::Request),
            RESPONSE_TYPE => Response::decode_body(&mut r).map(Message::Response),
            other => Err(DecodeError::UnknownType(other)),
        }
    }

    /// Appends the encoded datagram to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(r) => r.encode(out),
            Message::Response(r) => r.encode(out),
        }
    }
}

impl Request {
    fn decode_body(r: &mut Reader<'_>) -> Result<Request, DecodeError> {
        let flags = r.uint()?;
        let tid = r.u16()?;
        let to = r.ipv4()?;
        let id = if flags & req_flag::ID != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let token = if flags & req_flag::TOKEN != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let internal = flags & req_flag::INTERNAL != 0;
        let command = r.uint()?;
        let target = if flags & req_flag::TARGET != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let value = if flags & req_flag::VALUE != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        Ok(Request {
            tid,
            to,
            id,
            token,
            internal,
            command,
            target,
            value,
        })
    }

    /// The flags byte this request is encoded with.
    pub fn flags(&self) -> u64 {
        let mut f = 0;
        if self.id.is_some() {
            f |= req_flag::ID;
        }
        if self.token.is_some() {
            f |= req_flag::TOKEN;
        }
        if self.internal {
            f |= req_flag::INTERNAL;
        }
        if self.target.is_some() {
            f |= req_flag::TARGET;
        }
        if self.value.is_some() {
            f |= req_flag::VALUE;
        }
        f
    }

    /// The exact encoded length.
    pub fn encoded_len(&self) -> usize {
        Request::frame_len(
            self.id.is_some(),
            self.token.is_some(),
            self.command,
            self.target.is_some(),
            self.value.as_ref().map(Vec::len),
        )
    }

    /// The encoded length of a request with these fields (`value_len`: the value's length,
    /// `None` for no value), without building it.
    pub const fn frame_len(
        id: bool,
        token: bool,
        command: u64,
        target: bool,
        value_len: Option<usize>,
    ) -> usize {
        10 + if id { 32 } else { 0 }
            + if token { 32 } else { 0 }
            + uint_len(command)
            + if target { 32 } else { 0 }
            + buffer_len(value_len)
    }

    /// Appends the encoded request to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let mut w = Writer::new(out);
        w.u8(REQUEST_TYPE);
        w.uint(self.flags());
        w.u16(self.tid);
        w.ipv4(&self.to);
        if let Some(id) = &self.id {
            w.fixed32(id);
        }
        if let Some(token) = &self.token {
            w.fixed32(token);
        }
        w.uint(self.command);
        if let Some(target) = &self.target {
            w.fixed32(target);
        }
        if let Some(value) = &self.value {
            w.buffer(value);
        }
    }

    /// The encoded request as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl Response {
    fn decode_body(r: &mut Reader<'_>) -> Result<Response, DecodeError> {
        let flags = r.uint()?;
        let tid = r.u16()?;
        let to = r.ipv4()?;
        let id = if flags & res_flag::ID != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let token = if flags & res_flag::TOKEN != 0 {
            Some(r.fixed32()?)
        } else {
            None
        };
        let closer_nodes = if flags & res_flag::CLOSER_NODES != 0 {
            r.ipv4_array()?
        } else {
            Vec::new()
        };
        let error = if flags & res_flag::ERROR != 0 {
            r.uint()?
        } else {
            ERROR_OK
        };
        let value = if flags & res_flag::VALUE != 0 {
            Some(r.buffer()?.to_vec())
        } else {
            None
        };
        Ok(Response {
            tid,
            to,
            id,
            token,
            closer_nodes,
            error,
            value,
        })
    }

    /// The flags byte this response is encoded with.
    pub fn flags(&self) -> u64 {
        let mut f = 0;
        if self.id.is_some() {
            f |= res_flag::ID;
        }
        if self.token.is_some() {
            f |= res_flag::TOKEN;
        }
        if !self.closer_nodes.is_empty() {
            f |= res_flag::CLOSER_NODES;
        }
        if self.error > 0 {
            f |= res_flag::ERROR;
        }
        if self.value.is_some() {
            f |= res_flag::VALUE;
        }
        f
    }

    /// The exact encoded length.
    pub fn encoded_len(&self) -> usize {
        Response::frame_len(
            self.id.is_some(),
            self.token.is_some(),
            self.closer_nodes.len(),
            self.error,
            self.value.as_ref().map(Vec::len),
        )
    }

    /// The encoded length of a response with these fields (`closer_nodes`: how many;
    /// `value_len`: the value's length, `None` for no value), without building it.
    pub const fn frame_len(
        id: bool,
        token: bool,
        closer_nodes: usize,
        error: u64,
        value_len: Option<usize>,
    ) -> usize {
        10 + if id { 32 } else { 0 }
            + if token { 32 } else { 0 }
            + if closer_nodes == 0 {
                0
            } else {
                uint_len(closer_nodes as u64) + 6 * closer_nodes
            }
            + if error > 0 { uint_len(error) } else { 0 }
            + buffer_len(value_len)
    }

    /// Appends the encoded response to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        let mut w = Writer::new(out);
        w.u8(RESPONSE_TYPE);
        w.uint(self.flags());
        w.u16(self.tid);
        w.ipv4(&self.to);
        if let Some(id) = &self.id {
            w.fixed32(id);
        }
        if let Some(token) = &self.token {
            w.fixed32(token);
        }
        if !self.closer_nodes.is_empty() {
            w.ipv4_array(&self.closer_nodes);
        }
        if self.error > 0 {
            w.uint(self.error);
        }
        if let Some(value) = &self.value {
            w.buffer(value);
        }
    }

    /// The encoded response as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The encoded length of an optional length-prefixed buffer (`c.buffer`): nothing when absent.
const fn buffer_len(len: Option<usize>) -> usize {
    match len {
        Some(n) => uint_len(n as u64) + n,
        None => 0,
    }
}

//! How large a stored value may be: every datagram of a put and of the get that reads it back
//! must fit the datagram ceiling ([`MAX_DATAGRAM_LEN`], the reference's 2,048-byte receive
//! buffer).
//!
//! hyperdht itself checks no size; the transport is the only bound. A put travels as one
//! request (78 bytes of overhead from an ephemeral sender, 110 from a persistent one, for a
//! value of 253 bytes or more); the get's reply carries the responder's id, a token and up to
//! 20 closer nodes around the value — 198 bytes of overhead — so the reply is what limits:
//!
//! | value | largest | why |
//! |---|---|---|
//! | immutable | [`MAX_IMMUTABLE_VALUE`] = 1,850 bytes | IMMUTABLE_GET reply: 198 + 1,850 = 2,048 |
//! | mutable, seq < 253 | [`MAX_MUTABLE_VALUE`] = 1,782 bytes | MUTABLE_GET reply: the value travels as `{seq, value, signature}`, 68 bytes more |
//! | mutable, seq < 2^16 / 2^32 / ≤ 2^53 − 1 | 1,780 / 1,778 / 1,774 bytes | a larger seq takes 3 / 5 / 9 bytes ([`max_mutable_value`]) |
//!
//! Clients refuse larger values before sending anything ([`ValueTooLarge`]); servers drop puts
//! of them, since they could never return them. A Node client can still put up to 1,970 bytes
//! (immutable) into a Node node, which then answers gets with replies of up to 2,168 bytes that
//! no reference node can receive.

use thiserror::Error;

use super::messages::command;
use crate::wire::{uint_len, Request, Response, ERROR_OK, MAX_CLOSER_NODES, MAX_DATAGRAM_LEN};

/// The largest immutable value whose put and get fit a datagram: 1,850 bytes.
pub const MAX_IMMUTABLE_VALUE: usize = largest_fitting(Kind::Immutable, 0);

/// The largest mutable value (for a seq below 253) whose put and get fit a datagram: 1,782
/// bytes. Larger seqs leave a little less room: see [`max_mutable_value`].
pub const MAX_MUTABLE_VALUE: usize = largest_fitting(Kind::Mutable, 0);

/// A value too large for its put or its get to fit in a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "value too large: {len} bytes; the largest {kind} value is {max} bytes (its put and its get \
     must each fit in one {MAX_DATAGRAM_LEN}-byte datagram)"
)]
pub struct ValueTooLarge {
    /// The value's length.
    pub len: usize,
    /// The largest value of this kind (and seq) that fits.
    pub max: usize,
    /// Which record.
    pub kind: ValueKind,
}

/// The record kinds whose values are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// An immutable value (`immutablePut`).
    Immutable,
    /// A mutable value under this seq (`mutablePut`; a larger seq takes more bytes).
    Mutable {
        /// The record's seq.
        seq: u64,
    },
}

impl core::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ValueKind::Immutable => f.write_str("immutable"),
            ValueKind::Mutable { seq } => write!(f, "mutable (seq {seq})"),
        }
    }
}

/// The IMMUTABLE_PUT request carrying a value of `value_len` bytes: with our id when we are
/// `persistent`, always with a token and the target.
pub const fn immutable_put_frame_len(value_len: usize, persistent: bool) -> usize {
    Request::frame_len(
        persistent,
        true,
        command::IMMUTABLE_PUT,
        true,
        Some(value_len),
    )
}

/// The largest IMMUTABLE_GET reply returning a value of `value_len` bytes: a persistent
/// responder's id, a token and the full 20 closer nodes.
pub const fn immutable_get_reply_len(value_len: usize) -> usize {
    worst_reply_len(value_len)
}

/// The MUTABLE_PUT request carrying a value of `value_len` bytes under `seq`
/// (`{publicKey, seq, value, signature}`).
pub const fn mutable_put_frame_len(value_len: usize, seq: u64, persistent: bool) -> usize {
    let record = 32 + uint_len(seq) + uint_len(value_len as u64) + value_len + 64;
    Request::frame_len(persistent, true, command::MUTABLE_PUT, true, Some(record))
}

/// The largest MUTABLE_GET reply returning a value of `value_len` bytes under `seq`
/// (`{seq, value, signature}`), as [`immutable_get_reply_len`].
pub const fn mutable_get_reply_len(value_len: usize, seq: u64) -> usize {
    worst_reply_len(mutable_record_len(value_len, seq))
}

/// The largest mutable value under `seq` whose put and get fit a datagram.
pub const fn max_mutable_value(seq: u64) -> usize {
    largest_fitting(Kind::Mutable, seq)
}

/// Whether an immutable value of `value_len` bytes can be put (by a node that is `persistent`
/// or not) and read back.
pub const fn check_immutable(value_len: usize, persistent: bool) -> Result<(), ValueTooLarge> {
    if immutable_put_frame_len(value_len, persistent) <= MAX_DATAGRAM_LEN
        && immutable_get_reply_len(value_len) <= MAX_DATAGRAM_LEN
    {
        Ok(())
    } else {
        Err(ValueTooLarge {
            len: value_len,
            max: MAX_IMMUTABLE_VALUE,
            kind: ValueKind::Immutable,
        })
    }
}

/// Whether a mutable value of `value_len` bytes under `seq` can be put (by a node that is
/// `persistent` or not) and read back.
pub const fn check_mutable(
    value_len: usize,
    seq: u64,
    persistent: bool,
) -> Result<(), ValueTooLarge> {
    if mutable_put_frame_len(value_len, seq, persistent) <= MAX_DATAGRAM_LEN
        && mutable_get_reply_len(value_len, seq) <= MAX_DATAGRAM_LEN
    {
        Ok(())
    } else {
        Err(ValueTooLarge {
            len: value_len,
            max: max_mutable_value(seq),
            kind: ValueKind::Mutable { seq },
        })
    }
}

/// The stored (and returned) mutable record: `{seq, value, signature}`.
const fn mutable_record_len(value_len: usize, seq: u64) -> usize {
    uint_len(seq) + uint_len(value_len as u64) + value_len + 64
}

/// A reply with everything a storage reply can carry around a value of `value_len` bytes.
const fn worst_reply_len(value_len: usize) -> usize {
    Response::frame_len(true, true, MAX_CLOSER_NODES, ERROR_OK, Some(value_len))
}

#[derive(Clone, Copy)]
enum Kind {
    Immutable,
    Mutable,
}

/// Whether a value of `len` bytes fits from either kind of sender (a persistent one's put is
/// the larger).
const fn fits(kind: Kind, len: usize, seq: u64) -> bool {
    match kind {
        Kind::Immutable => {
            immutable_put_frame_len(len, true) <= MAX_DATAGRAM_LEN
                && immutable_get_reply_len(len) <= MAX_DATAGRAM_LEN
        }
        Kind::Mutable => {
            mutable_put_frame_len(len, seq, true) <= MAX_DATAGRAM_LEN
                && mutable_get_reply_len(len, seq) <= MAX_DATAGRAM_LEN
        }
    }
}

/// The largest length that fits (the frame lengths grow with the value's length, so a binary
/// search finds it).
const fn largest_fitting(kind: Kind, seq: u64) -> usize {
    let (mut lo, mut hi) = (0, MAX_DATAGRAM_LEN);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(kind, mid, seq) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_SAFE_INTEGER;

    #[test]
    fn the_documented_maxima() {
        assert_eq!(MAX_IMMUTABLE_VALUE, 1850);
        assert_eq!(MAX_MUTABLE_VALUE, 1782);
        assert_eq!(max_mutable_value(252), 1782);
        assert_eq!(max_mutable_value(253), 1780);
        assert_eq!(max_mutable_value(0xffff), 1780);
        assert_eq!(max_mutable_value(0x1_0000), 1778);
        assert_eq!(max_mutable_value(MAX_SAFE_INTEGER), 1774);
    }

    #[test]
    fn the_maxima_fill_the_get_reply_exactly() {
        assert_eq!(
            immutable_get_reply_len(MAX_IMMUTABLE_VALUE),
            MAX_DATAGRAM_LEN
        );
        assert_eq!(
            mutable_get_reply_len(MAX_MUTABLE_VALUE, 1),
            MAX_DATAGRAM_LEN
        );
        // The spec's frame sizes: 78 + len from an ephemeral sender, 110 + len persistent.
        assert_eq!(immutable_put_frame_len(1000, false), 1078);
        assert_eq!(immutable_put_frame_len(1000, true), 1110);
        assert_eq!(immutable_get_reply_len(1000), 1198);
    }

    #[test]
    fn one_byte_more_is_refused() {
        for persistent in [false, true] {
            assert_eq!(check_immutable(MAX_IMMUTABLE_VALUE, persistent), Ok(()));
            assert_eq!(
                check_immutable(MAX_IMMUTABLE_VALUE + 1, persistent),
                Err(ValueTooLarge {
                    len: MAX_IMMUTABLE_VALUE + 1,
                    max: MAX_IMMUTABLE_VALUE,
                    kind: ValueKind::Immutable
                })
            );
            for seq in [0, 1, 300, 70_000, MAX_SAFE_INTEGER] {
                let max = max_mutable_value(seq);
                assert_eq!(check_mutable(max, seq, persistent), Ok(()));
                assert_eq!(
                    check_mutable(max + 1, seq, persistent).map_err(|e| e.max),
                    Err(max)
                );
            }
        }
    }

    #[test]
    fn the_error_names_the_limit() {
        let e = check_mutable(2000, 7, false).unwrap_err();
        assert_eq!(
            alloc::format!("{e}"),
            "value too large: 2000 bytes; the largest mutable (seq 7) value is 1782 bytes (its \
             put and its get must each fit in one 2048-byte datagram)"
        );
    }

    #[test]
    fn frame_lengths_match_the_encoders() {
        use crate::dht::messages::{MutableGetResponse, MutablePutRequest};
        use core::net::{Ipv4Addr, SocketAddrV4};
        let addr = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 4000);
        for (len, seq) in [(0, 0), (252, 1), (253, 300), (1782, 70_000), (1850, 1)] {
            for persistent in [false, true] {
                let put = Request {
                    tid: 1,
                    to: addr,
                    id: persistent.then_some([1; 32]),
                    token: Some([2; 32]),
                    internal: false,
                    command: command::IMMUTABLE_PUT,
                    target: Some([3; 32]),
                    value: Some(alloc::vec![7; len]),
                };
                assert_eq!(
                    put.to_bytes().len(),
                    immutable_put_frame_len(len, persistent)
                );
                let record = MutablePutRequest {
                    public_key: [4; 32],
                    seq,
                    value: alloc::vec![7; len],
                    signature: [5; 64],
                }
                .to_bytes();
                let put = Request {
                    command: command::MUTABLE_PUT,
                    value: Some(record),
                    ..put
                };
                assert_eq!(
                    put.to_bytes().len(),
                    mutable_put_frame_len(len, seq, persistent)
                );
            }
            let reply = |value: alloc::vec::Vec<u8>| Response {
                tid: 1,
                to: addr,
                id: Some([1; 32]),
                token: Some([2; 32]),
                closer_nodes: alloc::vec![addr; MAX_CLOSER_NODES],
                error: 0,
                value: Some(value),
            };
            assert_eq!(
                reply(alloc::vec![7; len]).to_bytes().len(),
                immutable_get_reply_len(len)
            );
            let stored = MutableGetResponse {
                seq,
                value: alloc::vec![7; len],
                signature: [5; 64],
            }
            .to_bytes();
            assert_eq!(
                reply(stored).to_bytes().len(),
                mutable_get_reply_len(len, seq)
            );
        }
    }
}

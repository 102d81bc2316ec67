//! UDX: reliable, ordered byte streams over UDP, wire-compatible with libudx (spec 04 §1–§3).
//!
//! Sans-IO in the quinn-proto style:
//! - [`packet`]: the 20-byte header, type bits, data offset, SACK blocks (panic-free codec).
//! - [`stream`]: one stream ([`UdxStream`]): send/receive buffers, acks, RTT/RTO, RACK-TLP,
//!   receive window, congestion control and pacing, MTU probing, END/half-close/DESTROY,
//!   messages, timers.
//! - [`demux`]: many streams keyed by local id on the owner's sockets, told apart from dht-rpc by
//!   the first bytes; "connect on first packet" through [`demux::Incoming::Unattached`].
//! - mechanisms, one file each: [`rtt`], [`rack`], [`congestion`] (a folder: the controller
//!   trait, BBR — the default, libudx's — and NewReno), [`rate`] (delivery-rate samples),
//!   [`pacing`], [`mtu`] (path MTU probing), [`assembler`], [`send_buffer`], [`recv_buffer`],
//!   `timer` (the stream's deadlines as one table).

pub mod assembler;
pub mod congestion;
pub mod demux;
pub mod mtu;
pub mod pacing;
pub mod packet;
pub mod rack;
pub mod rate;
pub mod recv_buffer;
pub mod rtt;
pub mod send_buffer;
pub mod stream;
mod timer;

/// A buffer or queue of a stream that drains empty is freed if its allocation is at most this
/// big: an idle connection holds no buffers (they come back on its next data). A larger one is
/// a stream moving data, kept for its next burst.
pub(crate) const RELEASE_DRAINED_MAX: usize = 64 * 1024;

/// Frees `q`'s allocation if it is empty and at most [`RELEASE_DRAINED_MAX`].
pub(crate) fn release_if_drained<T>(q: &mut alloc::collections::VecDeque<T>) {
    if q.is_empty()
        && q.capacity() != 0
        && q.capacity().saturating_mul(core::mem::size_of::<T>()) <= RELEASE_DRAINED_MAX
    {
        *q = alloc::collections::VecDeque::new();
    }
}

pub use demux::{Demux, Incoming};
pub use packet::{Flags, Header, Packet, PacketDecodeError};
pub use stream::{
    MessageError, PacketOut, ReadError, SocketId, StreamConfig, StreamConnectError, StreamError,
    StreamEvent, StreamStats, UdxStream, WriteError,
};

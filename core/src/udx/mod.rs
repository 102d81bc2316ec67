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
mod release;
pub mod rtt;
pub mod send_buffer;
pub mod stream;
mod timer;

pub use demux::{Demux, Incoming};
pub use packet::{Flags, Header, Packet, PacketDecodeError};
pub(crate) use release::RELEASE_DRAINED_MAX;
pub use stream::{
    MessageError, PacketOut, ReadError, SocketId, StreamConfig, StreamConnectError, StreamError,
    StreamEvent, StreamStats, UdxStream, WriteError,
};

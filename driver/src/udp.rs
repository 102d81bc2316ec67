//! Batched UDP I/O shared by the runtimes: many datagrams per syscall in both directions.
//!
//! Sending: the core writes datagrams straight into one contiguous buffer
//! ([`DhtNode::poll_transmit`](hdht_core::dht::DhtNode::poll_transmit), no allocation
//! per packet); runs of equal-sized datagrams to the same peer leave in one `sendmsg` with UDP
//! GSO (`UDP_SEGMENT`) where the kernel has it, one datagram per call where it does not.
//! Receiving: `recvmmsg` into a few slots, each of which may hold a GRO-coalesced run of
//! datagrams from one peer (split again by `stride`).
//!
//! The syscalls come from `quinn-udp` (quinn's UDP layer, used in production by every quinn
//! user): it probes GSO/GRO support at run time, falls back to plain `sendmsg`/`recvmsg` on
//! kernels and platforms without them, and turns GSO off by itself if a NIC rejects it — the
//! fragile parts a hand-rolled `libc` version would have to get right again.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4};

use hdht_core::dht::{DatagramOut, SocketCommand, MAX_DATAGRAM};
use hdht_core::rpc::SocketKind;
pub use quinn_udp::{RecvMeta, Transmit as UdpTransmit, UdpSockRef, UdpSocketState};

use crate::Node;

/// Datagram bytes gathered per lock of the core before sending.
const FILL_LIMIT: usize = 192 * 1024;
/// The kernel's limit for one GSO send (a UDP payload of at most 65,507 bytes).
const GSO_MAX_BYTES: usize = 65_000;
/// `recvmmsg` slots; each holds up to 64 KiB (one datagram or a GRO run).
const RECV_SLOTS: usize = 16;
/// Bytes per receive slot: one datagram or a GRO run.
const SLOT: usize = 65536;

/// Configures a socket for batched I/O. The state says how many GSO segments the kernel
/// takes (1 without GSO).
#[cfg(unix)]
pub fn socket_state<S: std::os::fd::AsFd>(sock: &S) -> io::Result<UdpSocketState> {
    let state = UdpSocketState::new(UdpSockRef::from(sock))?;
    set_dont_fragment(sock);
    grow_recv_buffer(sock);
    Ok(state)
}

/// Configures a socket for batched I/O.
#[cfg(windows)]
pub fn socket_state<S: std::os::windows::io::AsSocket>(sock: &S) -> io::Result<UdpSocketState> {
    UdpSocketState::new(UdpSockRef::from(sock))
}

/// "Don't fragment", as libudx sets on every socket it binds (`udx__udp_set_dontfrag`, DHT-RPC
/// sockets included): `IP_PMTUDISC_PROBE` sets DF and ignores the kernel's cached path MTU, so a
/// UDX MTU probe that is too big for the path is dropped (and the search stops) instead of
/// arriving fragmented. Set explicitly rather than relying on quinn-udp's choice.
#[cfg(target_os = "linux")]
fn set_dont_fragment<S: std::os::fd::AsFd>(sock: &S) {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: a valid fd and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn set_dont_fragment<S>(_sock: &S) {}

/// A receive buffer as libudx asks for (`udx_socket_bind`: 1 MiB, else 512, 256, 208 KiB): the
/// kernel default (~208 KiB) overflows while a bulk sender's burst waits for the I/O task, and
/// every datagram dropped there is a retransmission (or, for an ACK, lost information).
#[cfg(target_os = "linux")]
fn grow_recv_buffer<S: std::os::fd::AsFd>(sock: &S) {
    use std::os::fd::AsRawFd;
    for size in [1024 * 1024, 512 * 1024, 256 * 1024, 208 * 1024] {
        let v: libc::c_int = size;
        // SAFETY: a valid fd and a c_int option value of the right size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn grow_recv_buffer<S>(_sock: &S) {}

#[derive(Debug, Clone, Copy)]
struct Item {
    socket: SocketKind,
    to: SocketAddrV4,
    ttl: Option<u8>,
    off: usize,
    len: usize,
}

/// Datagrams taken from the core, waiting to be sent.
#[derive(Debug, Default)]
pub struct SendBatch {
    buf: Vec<u8>,
    used: usize,
    items: Vec<Item>,
    next: usize,
}

/// One send: a single datagram, or a GSO run of `segment_size`-byte datagrams (the last may
/// be shorter) to the same peer.
#[derive(Debug, Clone, Copy)]
pub struct SendGroup<'a> {
    /// The socket to send from.
    pub socket: SocketKind,
    /// Destination.
    pub to: SocketAddrV4,
    /// A TTL to set around this (single-datagram) send.
    pub ttl: Option<u8>,
    /// The datagrams, back to back.
    pub contents: &'a [u8],
    /// `Some` for a GSO run of more than one datagram.
    pub segment_size: Option<usize>,
    /// How many datagrams (pass to [`SendBatch::advance`]).
    pub segments: usize,
}

impl SendGroup<'_> {
    /// The quinn-udp transmit for this group.
    pub fn transmit(&self) -> UdpTransmit<'_> {
        UdpTransmit {
            destination: SocketAddr::V4(self.to),
            ecn: None,
            contents: self.contents,
            segment_size: self.segment_size,
            src_ip: None,
        }
    }
}

impl SendBatch {
    /// Empty (the buffer is allocated on first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.next >= self.items.len()
    }

    /// Pulls datagrams out of the core until the buffer is full or the core has none.
    /// Returns whether the core may have more.
    ///
    /// Pool-socket commands are drained into `commands` first, so that the caller, applying
    /// them before it sends, binds every socket before anything is sent from it.
    pub(crate) fn fill(
        &mut self,
        node: &mut Node,
        now: hdht_core::Instant,
        commands: &mut Vec<SocketCommand>,
    ) -> bool {
        while let Some(cmd) = node.poll_socket_command() {
            commands.push(cmd);
        }
        if self.is_empty() {
            self.items.clear();
            self.next = 0;
            self.used = 0;
        }
        if self.buf.len() < FILL_LIMIT + MAX_DATAGRAM {
            // One zeroed allocation (calloc: fresh mmap pages), so that only the pages datagrams
            // are written to become resident; `resize` would write all 256 KiB at once.
            self.buf = vec![0u8; FILL_LIMIT + MAX_DATAGRAM];
        }
        while self.used < FILL_LIMIT {
            let Some(DatagramOut {
                socket,
                to,
                len,
                ttl,
            }) = node.poll_transmit(now, &mut self.buf[self.used..])
            else {
                return false;
            };
            self.items.push(Item {
                socket,
                to,
                ttl,
                off: self.used,
                len,
            });
            self.used += len;
        }
        true
    }

    /// The next send, coalescing up to `max_segments` datagrams; call [`advance`](Self::advance)
    /// once it went out (or failed for good).
    pub fn peek(&self, max_segments: usize) -> Option<SendGroup<'_>> {
        let first = *self.items.get(self.next)?;
        let mut n = 1;
        let mut bytes = first.len;
        if first.ttl.is_none() && first.len > 0 {
            while n < max_segments {
                let Some(it) = self.items.get(self.next + n) else {
                    break;
                };
                if it.socket != first.socket
                    || it.to != first.to
                    || it.ttl.is_some()
                    || it.len > first.len
                    || it.len == 0
                    || bytes + it.len > GSO_MAX_BYTES
                {
                    break;
                }
                n += 1;
                bytes += it.len;
                if it.len < first.len {
                    break; // only the last segment may be short
                }
            }
        }
        Some(SendGroup {
            socket: first.socket,
            to: first.to,
            ttl: first.ttl,
            contents: &self.buf[first.off..first.off + bytes],
            segment_size: (n > 1).then_some(first.len),
            segments: n,
        })
    }

    /// Drops the group last returned by [`peek`](Self::peek).
    pub fn advance(&mut self, group_segments: usize) {
        self.next = (self.next + group_segments).min(self.items.len());
    }
}

/// Receive slots for `recvmmsg`.
#[derive(Debug)]
pub struct RecvBatch {
    slots: usize,
    /// `slots` slots of `SLOT` bytes in one zeroed allocation (calloc: fresh mmap pages), so
    /// that a page becomes resident only once the kernel writes a datagram into it. Sixteen
    /// separate 64 KiB `vec!`s come from the brk heap instead, where calloc clears (touches)
    /// them: 1 MiB resident per socket before the first datagram.
    buf: Vec<u8>,
    meta: Vec<RecvMeta>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            slots: RECV_SLOTS,
            buf: Vec::new(),
            meta: Vec::new(),
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Empty, with the full number of slots (16 × 64 KiB, allocated on first use): for the
    /// server and client sockets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty, with `slots` slots of 64 KiB each (clamped to 1..=16; allocated on first use).
    /// Every slot must hold 64 KiB, since one may receive a whole GRO run.
    pub fn with_slots(slots: usize) -> Self {
        RecvBatch {
            slots: slots.clamp(1, RECV_SLOTS),
            ..Self::default()
        }
    }

    /// How many slots a receive fills at most.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// One non-blocking batched receive; returns how many slots were filled (`WouldBlock`
    /// when none was ready).
    pub fn try_recv(&mut self, state: &UdpSocketState, sock: UdpSockRef<'_>) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; self.slots * SLOT];
            self.meta = vec![RecvMeta::default(); self.slots];
        }
        self.count = 0;
        let slots = self.slots;
        let mut slices: [IoSliceMut<'_>; RECV_SLOTS] = {
            let mut it = self.buf.chunks_mut(SLOT);
            std::array::from_fn(|_| IoSliceMut::new(it.next().unwrap_or(&mut [])))
        };
        let n = state.recv(sock, &mut slices[..slots], &mut self.meta)?;
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last receive (GRO runs split back into datagrams).
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddrV4, &[u8])> + '_ {
        self.meta[..self.count]
            .iter()
            .zip(self.buf.chunks(SLOT))
            .flat_map(|(m, buf)| {
                let from = match m.addr {
                    SocketAddr::V4(a) => Some(a),
                    SocketAddr::V6(a) => a
                        .ip()
                        .to_ipv4_mapped()
                        .map(|ip| SocketAddrV4::new(ip, a.port())),
                };
                let stride = m.stride.max(1);
                buf[..m.len.min(buf.len())]
                    .chunks(stride)
                    .filter_map(move |d| from.map(|f| (f, d)))
            })
    }
}

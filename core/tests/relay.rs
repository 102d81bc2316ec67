//! Blind relaying in memory: two `RelayClient`s pair through a `RelayServer`, two real
//! `UdxStream`s then talk through its forwarder; hostile sessions (garbage frames, pair floods,
//! unknown unpairs, self-pairing, silent peers) cost bounded memory and never panic; the data
//! plane allocates nothing per forwarded packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use hdht_core::protomux::frame::encode_message;
use hdht_core::protomux::{ChannelOptions, Mux};
use hdht_core::relay::message::{Pair, Unpair, MESSAGE_TYPES, PROTOCOL, TYPE_PAIR, TYPE_UNPAIR};
use hdht_core::relay::{
    ClientEvent, DropReason, Forward, Forwarder, PairError, RelayClient, RelayEvent, RelayLimits,
    RelayServer, PAIRING_TIMEOUT,
};
use hdht_core::udx::{Packet, SocketId, StreamConfig, UdxStream};
use hdht_core::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Allocation counting (this thread, inside a window).
// ---------------------------------------------------------------------------------------------

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; the bookkeeping touches only const-initialised
// thread-locals of `Cell` types, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
            }
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNTING.try_with(|c| {
            if c.get() {
                let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
            }
        });
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(|a| a.get())
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const RELAY_SOCKET: SocketId = SocketId(0);

/// Moves frames between clients (session ids 1..) and the server until nothing moves.
fn pump(
    server: &mut RelayServer,
    clients: &mut [(u64, &mut RelayClient)],
    rng: &mut ChaCha8Rng,
    now: Instant,
) {
    loop {
        let mut moved = false;
        for (session, client) in clients.iter_mut() {
            while let Some(f) = client.poll_frame() {
                moved = true;
                let _ = server.handle_frame(now, *session, &f, rng, |_| false);
            }
        }
        while let Some((session, f)) = server.poll_frame() {
            moved = true;
            if let Some((_, c)) = clients.iter_mut().find(|(s, _)| *s == session) {
                c.handle_frame(&f).expect("relay frames are valid");
            }
        }
        if !moved {
            return;
        }
    }
}

fn paired_id(client: &mut RelayClient) -> u32 {
    loop {
        match client.poll_event() {
            Some(ClientEvent::Paired {
                relay_stream_id, ..
            }) => return relay_stream_id,
            Some(ClientEvent::Opened) => continue,
            other => panic!("expected a pairing, got {other:?}"),
        }
    }
}

/// A session of raw frames, for playing a hostile peer.
struct RawPeer {
    mux: Mux,
    ch: hdht_core::protomux::ChannelId,
}

impl RawPeer {
    fn new(id: &[u8]) -> Self {
        let mut mux = Mux::new();
        let ch = mux
            .open_channel(ChannelOptions::new(PROTOCOL, Some(id), MESSAGE_TYPES))
            .unwrap();
        RawPeer { mux, ch }
    }
    fn pair(&mut self, is_initiator: bool, token: [u8; 32], id: u32) {
        let m = Pair {
            is_initiator,
            token,
            id,
            seq: 0,
        };
        self.mux.send(self.ch, TYPE_PAIR, &m.to_vec()).unwrap();
    }
    fn unpair(&mut self, token: [u8; 32]) {
        self.mux
            .send(self.ch, TYPE_UNPAIR, &Unpair { token }.to_vec())
            .unwrap();
    }
    fn flush(
        &mut self,
        server: &mut RelayServer,
        session: u64,
        rng: &mut ChaCha8Rng,
        now: Instant,
    ) {
        while let Some(f) = self.mux.poll_frame() {
            server
                .handle_frame(now, session, &f, rng, |_| false)
                .unwrap();
        }
    }
}

fn drain_server_frames(server: &mut RelayServer) -> Vec<(u64, Vec<u8>)> {
    std::iter::from_fn(|| server.poll_frame()).collect()
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

/// Two UDX streams, each connected to its relay stream, exchange 300 KB each way through the
/// forwarder over a link that loses 2% of the packets; every forwarded datagram differs from
/// what was received only in bytes 4..8.
#[test]
fn two_udx_streams_talk_through_the_relay() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut now = Instant::from_millis(1);
    let mut server = RelayServer::default();
    server.accept(1, Some(&[0xaa; 32])).unwrap();
    server.accept(2, Some(&[0xcc; 32])).unwrap();
    let mut a = RelayClient::new(&[0xaa; 32]);
    let mut b = RelayClient::new(&[0xcc; 32]);
    let token = [7u8; 32];
    let (a_id, b_id) = (0x0a0a_0a0a, 0x0b0b_0b0b);
    a.pair(now, true, token, a_id).unwrap();
    b.pair(now, false, token, b_id).unwrap();
    pump(&mut server, &mut [(1, &mut a), (2, &mut b)], &mut rng, now);
    let a_remote = paired_id(&mut a);
    let b_remote = paired_id(&mut b);
    assert!(server.is_relay_stream(a_remote) && server.is_relay_stream(b_remote));
    assert_eq!(server.stats().pairings_matched, 1);

    let (relay, a_addr, b_addr) = (
        addr("10.0.0.1:49737"),
        addr("10.0.0.2:1000"),
        addr("10.0.0.3:2000"),
    );
    let mut sa = UdxStream::new(a_id, now, StreamConfig::default());
    let mut sb = UdxStream::new(b_id, now, StreamConfig::default());
    sa.connect(now, a_remote, relay).unwrap();
    sb.connect(now, b_remote, relay).unwrap();

    let payload_a: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let payload_b: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + 1) as u8).collect();
    let (mut wa, mut wb) = (0, 0);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 2048];
    let mut loss = ChaCha8Rng::seed_from_u64(99);
    let mut in_flight: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new(); // (arrival, to, bytes) into the relay
    let mut to_peers: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new(); // from the relay
    let latency = Duration::from_millis(5);
    for _ in 0..200_000 {
        if wa < payload_a.len() {
            wa += sa.write(&payload_a[wa..]).unwrap_or(0);
        }
        if wb < payload_b.len() {
            wb += sb.write(&payload_b[wb..]).unwrap_or(0);
        }
        for (s, from) in [(&mut sa, a_addr), (&mut sb, b_addr)] {
            while let Some(t) = s.poll_transmit(now, &mut buf) {
                assert_eq!(t.to, relay);
                if loss.next_u32() % 50 != 0 {
                    in_flight.push((now + latency, from, buf[..t.len].to_vec()));
                }
            }
        }
        // Deliver what is due: into the relay, then out of it to the peers.
        in_flight.sort_by_key(|p| p.0);
        while in_flight.first().is_some_and(|p| p.0 <= now) {
            let (_, from, bytes) = in_flight.remove(0);
            match server.handle_datagram(RELAY_SOCKET, from, &bytes) {
                Forward::Forwarded {
                    to,
                    socket,
                    closed_pair,
                } => {
                    assert_eq!(socket, RELAY_SOCKET);
                    assert!(!closed_pair);
                    let (_, _, len) = server.poll_transmit(&mut out).unwrap();
                    assert_eq!(len, bytes.len());
                    assert_eq!(out[..4], bytes[..4]);
                    assert_eq!(out[8..len], bytes[8..]);
                    to_peers.push((now + latency, to, out[..len].to_vec()));
                }
                Forward::Dropped(DropReason::PartnerNotAttached) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        to_peers.sort_by_key(|p| p.0);
        while to_peers.first().is_some_and(|p| p.0 <= now) {
            let (_, to, bytes) = to_peers.remove(0);
            let pkt = Packet::decode(&bytes).unwrap();
            let s = if to == a_addr { &mut sa } else { &mut sb };
            assert_eq!(pkt.header.stream_id, s.local_id());
            s.handle_packet(now, &pkt, relay);
        }
        for (s, got) in [(&mut sa, &mut got_a), (&mut sb, &mut got_b)] {
            loop {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        if got_a.len() == payload_b.len() && got_b.len() == payload_a.len() {
            break;
        }
        now = now + Duration::from_millis(1);
    }
    assert_eq!(got_b, payload_a, "b received a's bytes");
    assert_eq!(got_a, payload_b, "a received b's bytes");
    let f = server.forward_stats();
    assert!(f.packets > 400, "{f:?}");
}

/// The relay's streams attach to the first packet's socket and address; a packet on another
/// socket is dropped; a DESTROY is forwarded and removes the pair silently.
#[test]
fn forwarder_attaches_drops_and_closes_like_libudx() {
    let mut f = Forwarder::new();
    f.link(10, 100, 20, 200);
    let mut pkt = [0u8; 20];
    pkt[0] = 0xff;
    pkt[1] = 1;
    pkt[4..8].copy_from_slice(&10u32.to_le_bytes());
    let (p1, p2) = (addr("1.1.1.1:1"), addr("2.2.2.2:2"));
    // The partner has not sent anything yet: dropped (but stream 10 is attached now).
    assert_eq!(
        f.forward_in_place(SocketId(0), p1, &mut pkt.clone()),
        Forward::Dropped(DropReason::PartnerNotAttached)
    );
    let mut to20 = pkt;
    to20[4..8].copy_from_slice(&20u32.to_le_bytes());
    let mut d = to20;
    assert_eq!(
        f.forward_in_place(SocketId(3), p2, &mut d),
        Forward::Forwarded {
            socket: SocketId(0),
            to: p1,
            closed_pair: false
        }
    );
    assert_eq!(
        u32::from_le_bytes(d[4..8].try_into().unwrap()),
        100,
        "rewritten to peer 1's own id"
    );
    assert_eq!(d[..4], to20[..4]);
    assert_eq!(d[8..], to20[8..]);
    // Stream 10 is attached to socket 0: a packet for it on socket 1 is dropped.
    assert_eq!(
        f.forward_in_place(SocketId(1), p1, &mut pkt.clone()),
        Forward::Dropped(DropReason::WrongSocket)
    );
    let mut d = pkt;
    assert_eq!(
        f.forward_in_place(SocketId(0), p1, &mut d),
        Forward::Forwarded {
            socket: SocketId(3),
            to: p2,
            closed_pair: false
        }
    );
    assert_eq!(u32::from_le_bytes(d[4..8].try_into().unwrap()), 200);
    // Not UDX, or another stream: not for the relay.
    assert_eq!(
        f.forward_in_place(SocketId(0), p1, &mut [3u8; 30]),
        Forward::NotRelayed
    );
    let mut other = pkt;
    other[4..8].copy_from_slice(&11u32.to_le_bytes());
    assert_eq!(
        f.forward_in_place(SocketId(0), p1, &mut other),
        Forward::NotRelayed
    );
    // DESTROY: forwarded, then both streams are gone.
    let mut destroy = pkt;
    destroy[2] = 0x10;
    assert_eq!(
        f.forward_in_place(SocketId(0), p1, &mut destroy),
        Forward::Forwarded {
            socket: SocketId(3),
            to: p2,
            closed_pair: true
        }
    );
    assert_eq!(f.poll_closed(), Some((10, 20)));
    assert_eq!(f.streams(), 0);
    assert_eq!(
        f.forward_in_place(SocketId(3), p2, &mut to20.clone()),
        Forward::NotRelayed
    );
    // A DESTROY before the partner attached is dropped, and still closes the pair (libudx).
    f.link(30, 300, 40, 400);
    let mut d = pkt;
    d[2] = 0x10;
    d[4..8].copy_from_slice(&30u32.to_le_bytes());
    assert_eq!(
        f.forward_in_place(SocketId(0), p1, &mut d),
        Forward::Dropped(DropReason::PartnerNotAttached)
    );
    assert_eq!(f.poll_closed(), Some((30, 40)));
    assert_eq!(f.streams(), 0);
}

/// After the first packets, forwarding allocates nothing: in place and through the ring.
#[test]
fn forwarding_allocates_nothing_per_packet() {
    let mut f = Forwarder::new();
    f.link(10, 100, 20, 200);
    let (p1, p2) = (addr("1.1.1.1:1"), addr("2.2.2.2:2"));
    let mut a = vec![0u8; 1200];
    a[0] = 0xff;
    a[1] = 1;
    a[2] = 1;
    a[4..8].copy_from_slice(&10u32.to_le_bytes());
    let mut b = a.clone();
    b[4..8].copy_from_slice(&20u32.to_le_bytes());
    let mut out = vec![0u8; 2048];
    // Warm up: attach both, allocate the ring once.
    f.forward_in_place(SocketId(0), p1, &mut a.clone());
    f.forward_in_place(SocketId(0), p2, &mut b.clone());
    f.handle_datagram(SocketId(0), p1, &a);
    f.poll_transmit(&mut out).unwrap();
    let mut ina = a.clone();
    let mut inb = b.clone();
    assert_eq!(
        allocations_in(|| drop(vec![0u8; 1])),
        1,
        "the counter counts"
    );
    let n = allocations_in(|| {
        for i in 0..10_000 {
            ina[4..8].copy_from_slice(&10u32.to_le_bytes());
            inb[4..8].copy_from_slice(&20u32.to_le_bytes());
            assert!(matches!(
                f.forward_in_place(SocketId(0), p1, &mut ina),
                Forward::Forwarded { .. }
            ));
            assert!(matches!(
                f.forward_in_place(SocketId(0), p2, &mut inb),
                Forward::Forwarded { .. }
            ));
            assert!(matches!(
                f.handle_datagram(
                    SocketId(0),
                    if i % 2 == 0 { p1 } else { p2 },
                    if i % 2 == 0 { &a } else { &b }
                ),
                Forward::Forwarded { .. }
            ));
            assert!(f.poll_transmit(&mut out).is_some());
        }
    });
    assert_eq!(n, 0, "allocations while forwarding 30,000 packets");
    assert_eq!(
        f.stats().packets,
        30_002,
        "the first warm-up packet found no partner"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/// Random bytes as frames: each session either survives or ends with a typed error; nothing
/// panics, and ended sessions are gone.
#[test]
fn garbage_frames_end_sessions_cleanly() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut server = RelayServer::default();
    let now = Instant::from_millis(1);
    let mut ended = 0;
    for session in 0..2_000u64 {
        server.accept(session, Some(&[1; 32])).unwrap();
        for _ in 0..8 {
            let len = (rng.next_u32() % 64) as usize;
            let mut frame = vec![0u8; len];
            rng.fill_bytes(&mut frame);
            // Bias towards the control channel and channel 1 so that opens/messages are hit.
            if len > 1 && rng.next_u32() % 2 == 0 {
                frame[0] = (rng.next_u32() % 2) as u8;
            }
            let mut ids = ChaCha8Rng::seed_from_u64(session);
            if server
                .handle_frame(now, session, &frame, &mut ids, |_| false)
                .is_err()
            {
                ended += 1;
                break;
            }
        }
        drain_server_frames(&mut server);
    }
    assert!(ended > 100, "garbage often ends the session ({ended})");
    assert_eq!(server.sessions() + ended, 2_000);
    while server.poll_event().is_some() {}
}

/// One session floods pair requests with random tokens: it holds at most its per-session limit
/// of pending entries; many sessions together hold at most the total limit, the oldest entries
/// making way; an honest pairing still succeeds during the flood.
#[test]
fn pair_floods_are_bounded() {
    let limits = RelayLimits {
        pending_per_session: 16,
        pending_total: 256,
        ..RelayLimits::default()
    };
    let mut server = RelayServer::new(limits);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let now = Instant::from_millis(1);
    server.accept(1, Some(&[1; 32])).unwrap();
    let mut flood = RawPeer::new(&[1; 32]);
    for _ in 0..10_000 {
        let mut t = [0u8; 32];
        rng.fill_bytes(&mut t);
        flood.pair(rng.next_u32() % 2 == 0, t, rng.next_u32());
    }
    flood.flush(&mut server, 1, &mut rng, now);
    assert_eq!(server.pending(), 16);
    assert_eq!(server.stats().pairings_refused, 10_000 - 16);
    // 100 sessions of 16: the total stays at 256.
    for s in 2..102u64 {
        server.accept(s, Some(&[2; 32])).unwrap();
        let mut p = RawPeer::new(&[2; 32]);
        for _ in 0..16 {
            let mut t = [0u8; 32];
            rng.fill_bytes(&mut t);
            p.pair(false, t, 5);
        }
        p.flush(&mut server, s, &mut rng, now);
        assert!(server.pending() <= 256);
    }
    assert_eq!(server.pending(), 256);
    // An honest pair in the middle of it.
    server.accept(500, Some(&[5; 32])).unwrap();
    server.accept(501, Some(&[6; 32])).unwrap();
    let mut a = RelayClient::new(&[5; 32]);
    let mut b = RelayClient::new(&[6; 32]);
    a.pair(now, true, [9; 32], 1).unwrap();
    b.pair(now, false, [9; 32], 2).unwrap();
    pump(
        &mut server,
        &mut [(500, &mut a), (501, &mut b)],
        &mut rng,
        now,
    );
    paired_id(&mut a);
    paired_id(&mut b);
    drain_server_frames(&mut server);
    // Closing the flooding sessions releases everything they held.
    for s in 1..102u64 {
        server.close_session(s);
    }
    assert_eq!(server.pending(), 0);
    assert_eq!(server.relay_streams(), 2);
}

/// Unpair of tokens nobody paired: nothing happens, nothing is sent.
#[test]
fn unpair_of_unknown_tokens_is_ignored() {
    let mut server = RelayServer::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let now = Instant::from_millis(1);
    server.accept(1, Some(&[1; 32])).unwrap();
    let mut p = RawPeer::new(&[1; 32]);
    // Open the relay side first, then flush what it sent.
    p.flush(&mut server, 1, &mut rng, now);
    drain_server_frames(&mut server);
    for i in 0..1000u32 {
        let mut t = [0u8; 32];
        t[..4].copy_from_slice(&i.to_le_bytes());
        p.unpair(t);
    }
    p.flush(&mut server, 1, &mut rng, now);
    assert!(drain_server_frames(&mut server).is_empty());
    assert_eq!(server.stats().pairings_cancelled, 0);
    assert_eq!(server.sessions(), 1);
    assert_eq!(server.pending(), 0);
}

/// A session sends both halves of one token: it pairs with itself (as the reference allows),
/// receives both replies, and closing it removes both relay streams.
#[test]
fn a_session_pairing_with_itself() {
    let mut server = RelayServer::default();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let now = Instant::from_millis(1);
    server.accept(1, Some(&[1; 32])).unwrap();
    let mut p = RawPeer::new(&[1; 32]);
    p.pair(true, [3; 32], 11);
    p.pair(false, [3; 32], 12);
    p.pair(false, [3; 32], 13); // a third: the token is paired already, so a new entry starts
    p.flush(&mut server, 1, &mut rng, now);
    let frames = drain_server_frames(&mut server);
    assert_eq!(frames.len(), 3, "open + two pair replies");
    assert_eq!(server.relay_streams(), 2);
    assert_eq!(server.pending(), 1);
    assert!(matches!(
        server.poll_event(),
        Some(RelayEvent::Paired {
            follower: 1,
            initiator: 1,
            ..
        })
    ));
    server.close_session(1);
    assert_eq!(server.relay_streams(), 0);
    assert_eq!(server.pending(), 0);
    assert_eq!(server.sessions(), 0);
}

/// A peer that never sends its half: the relay drops the pending entry after its timeout; the
/// waiting client gives up after 15 s with `RELAY_ABORTED`'s error.
#[test]
fn a_peer_that_never_sends() {
    let limits = RelayLimits::default();
    let mut server = RelayServer::new(limits);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let start = Instant::from_millis(1);
    server.accept(1, Some(&[1; 32])).unwrap();
    server.accept(2, Some(&[2; 32])).unwrap(); // accepted, then silent forever
    let mut a = RelayClient::new(&[1; 32]);
    a.pair(start, true, [8; 32], 1).unwrap();
    pump(&mut server, &mut [(1, &mut a)], &mut rng, start);
    assert_eq!(server.pending(), 1);
    assert_eq!(a.poll_timeout(), Some(start + PAIRING_TIMEOUT));
    a.handle_timeout(start + PAIRING_TIMEOUT);
    assert_eq!(a.poll_event(), Some(ClientEvent::Opened));
    assert_eq!(
        a.poll_event(),
        Some(ClientEvent::Failed {
            token: [8; 32],
            error: PairError::TimedOut
        })
    );
    assert_eq!(server.poll_timeout(), Some(start + limits.pairing_timeout));
    server.handle_timeout(start + (limits.pairing_timeout - Duration::from_micros(1)));
    assert_eq!(server.pending(), 1);
    server.handle_timeout(start + limits.pairing_timeout);
    assert_eq!(server.pending(), 0);
    assert_eq!(server.stats().pairings_expired, 1);
    assert_eq!(server.poll_timeout(), None);
    assert_eq!(server.sessions(), 2);
}

/// With room for one relayed pair, a second pairing is dropped unanswered.
#[test]
fn relayed_pairs_are_limited() {
    let limits = RelayLimits {
        relayed_pairs: 1,
        ..RelayLimits::default()
    };
    let mut server = RelayServer::new(limits);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let now = Instant::from_millis(1);
    for s in 1..=4 {
        server.accept(s, Some(&[s as u8; 32])).unwrap();
    }
    let mut c: Vec<RelayClient> = (1..=4u8).map(|s| RelayClient::new(&[s; 32])).collect();
    c[0].pair(now, true, [1; 32], 1).unwrap();
    c[1].pair(now, false, [1; 32], 2).unwrap();
    c[2].pair(now, true, [2; 32], 3).unwrap();
    c[3].pair(now, false, [2; 32], 4).unwrap();
    let (c01, c23) = c.split_at_mut(2);
    let (c0, c1) = c01.split_at_mut(1);
    let (c2, c3) = c23.split_at_mut(1);
    pump(
        &mut server,
        &mut [
            (1, &mut c0[0]),
            (2, &mut c1[0]),
            (3, &mut c2[0]),
            (4, &mut c3[0]),
        ],
        &mut rng,
        now,
    );
    assert_eq!(server.relay_streams(), 2);
    assert_eq!(server.stats().pairings_refused, 1);
    paired_id(&mut c0[0]);
    assert_eq!(
        c2[0].pending(),
        1,
        "still waiting: the relay never answered"
    );
}

/// A pair message that does not decode ends the session (the reference destroys the stream).
#[test]
fn a_malformed_pair_ends_the_session() {
    let mut server = RelayServer::default();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let now = Instant::from_millis(1);
    server.accept(1, Some(&[1; 32])).unwrap();
    let mut frames = Vec::new();
    let mut mux = Mux::new();
    mux.open_channel(ChannelOptions::new(PROTOCOL, Some(&[1; 32]), MESSAGE_TYPES))
        .unwrap();
    frames.extend(std::iter::from_fn(|| mux.poll_frame()));
    let mut bad = Vec::new();
    encode_message(&mut bad, 1, 0, &[1, 2, 3]);
    frames.push(bad);
    server
        .handle_frame(now, 1, &frames[0], &mut rng, |_| false)
        .unwrap();
    assert!(server
        .handle_frame(now, 1, &frames[1], &mut rng, |_| false)
        .is_err());
    assert_eq!(server.sessions(), 0);
    assert!(matches!(
        server.poll_event(),
        Some(RelayEvent::SessionEnded {
            session: 1,
            error: Some(_)
        })
    ));
}

/// A token paired again (the reference keeps only the newest link per token, orphaning the
/// older one): every link still goes when its session ends, and `unpair` removes them all.
#[test]
fn a_token_paired_twice_leaves_nothing_behind() {
    let mut server = RelayServer::default();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let now = Instant::from_millis(1);
    server.accept(1, Some(&[1; 32])).unwrap();
    server.accept(2, Some(&[2; 32])).unwrap();
    let mut p = RawPeer::new(&[1; 32]);
    let mut q = RawPeer::new(&[2; 32]);
    for _ in 0..3 {
        p.pair(true, [4; 32], 1);
        p.flush(&mut server, 1, &mut rng, now);
        q.pair(false, [4; 32], 2);
        q.flush(&mut server, 2, &mut rng, now);
    }
    // And session 1 with itself, twice.
    for _ in 0..2 {
        p.pair(true, [5; 32], 1);
        p.pair(false, [5; 32], 1);
        p.flush(&mut server, 1, &mut rng, now);
    }
    assert_eq!(server.relay_streams(), 10);
    // Session 2 unpairs token 4: all three links it made with it go.
    q.unpair([4; 32]);
    q.flush(&mut server, 2, &mut rng, now);
    assert_eq!(server.relay_streams(), 4);
    server.close_session(1);
    assert_eq!(server.relay_streams(), 0);
    assert_eq!(server.stats().pairings_active, 0);
    server.close_session(2);
    assert_eq!(server.sessions(), 0);
}

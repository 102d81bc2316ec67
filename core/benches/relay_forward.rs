//! The blind relay's data plane: wall-clock cost per forwarded packet (in place and through the
//! ring) and the relay's memory per relayed pair.
//!
//! Run: `cargo bench -p hdht-core --bench relay_forward`. Prints packets/s and GiB/s of
//! 1,200-byte UDX packets forwarded between the two streams of a relayed pair among `PAIRS`
//! pairs (the table lookups see a realistic table), and the heap held per pair.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant as StdInstant;

use hdht_core::relay::{Forward, RelayClient, RelayServer};
use hdht_core::udx::SocketId;
use hdht_core::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct Counting;
static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to `System`; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAIRS: u32 = 1000;
const PACKET: usize = 1200;

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let now = Instant::from_millis(1);
    let limits = hdht_core::relay::RelayLimits {
        pending_per_session: 16,
        pending_total: 4096,
        relayed_pairs: PAIRS as usize,
        ..Default::default()
    };
    let held_before = HELD.load(Ordering::Relaxed);
    let mut server = RelayServer::new(limits);
    // Two sessions per pair, as hyperdht peers open one relay connection per relayed connect.
    let mut ids = Vec::new();
    for p in 0..u64::from(PAIRS) {
        let (s1, s2) = (2 * p + 1, 2 * p + 2);
        server.accept(s1, Some(&[1; 32])).unwrap();
        server.accept(s2, Some(&[2; 32])).unwrap();
        let mut a = RelayClient::new(&[1; 32]);
        let mut b = RelayClient::new(&[2; 32]);
        let token = {
            let mut t = [0u8; 32];
            t[..8].copy_from_slice(&p.to_le_bytes());
            t
        };
        a.pair(now, true, token, 1).unwrap();
        b.pair(now, false, token, 2).unwrap();
        for (s, c) in [(s1, &mut a), (s2, &mut b)] {
            while let Some(f) = c.poll_frame() {
                server
                    .handle_frame(now, s, &f, &mut rng, |_| false)
                    .unwrap();
            }
        }
        while server.poll_frame().is_some() {}
        if let Some(hdht_core::relay::RelayEvent::Paired {
            follower_stream,
            initiator_stream,
            ..
        }) = server.poll_event()
        {
            ids.push((follower_stream, initiator_stream));
        }
    }
    let held = HELD.load(Ordering::Relaxed) - held_before;
    assert_eq!(ids.len(), PAIRS as usize);
    println!(
        "relay_forward/memory: {:.0} bytes of heap per relayed pair (two sessions with their Protomux state, two relay streams), {PAIRS} pairs",
        held as f64 / f64::from(PAIRS)
    );

    let (p1, p2): (SocketAddr, SocketAddr) =
        ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    let mut a = vec![0u8; PACKET];
    a[0] = 0xff;
    a[1] = 1;
    a[2] = 1;
    let mut b = a.clone();
    // Attach every stream.
    for &(f, i) in &ids {
        a[4..8].copy_from_slice(&f.to_le_bytes());
        b[4..8].copy_from_slice(&i.to_le_bytes());
        server.forward_in_place(SocketId(0), p1, &mut a);
        server.forward_in_place(SocketId(0), p2, &mut b);
    }
    let n = 2_000_000u32;
    let t = StdInstant::now();
    for k in 0..n {
        let (f, i) = ids[(k % PAIRS) as usize];
        let (buf, id, from) = if k % 2 == 0 {
            (&mut a, f, p1)
        } else {
            (&mut b, i, p2)
        };
        buf[4..8].copy_from_slice(&id.to_le_bytes());
        let r = server.forward_in_place(SocketId(0), from, buf);
        debug_assert!(matches!(r, Forward::Forwarded { .. }));
        black_box(r);
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "relay_forward/in_place: {:.1} M packets/s, {:.2} GiB/s of {PACKET}-byte packets ({:.0} ns each)",
        f64::from(n) / dt / 1e6,
        f64::from(n) * PACKET as f64 / dt / f64::from(1u32 << 30),
        dt * 1e9 / f64::from(n)
    );
    let mut out = vec![0u8; 2048];
    let t = StdInstant::now();
    for k in 0..n {
        let (f, i) = ids[(k % PAIRS) as usize];
        let (buf, id, from) = if k % 2 == 0 {
            (&mut a, f, p1)
        } else {
            (&mut b, i, p2)
        };
        buf[4..8].copy_from_slice(&id.to_le_bytes());
        black_box(server.handle_datagram(SocketId(0), from, buf));
        black_box(server.poll_transmit(&mut out));
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "relay_forward/ring: {:.1} M packets/s, {:.2} GiB/s ({:.0} ns each, two copies)",
        f64::from(n) / dt / 1e6,
        f64::from(n) * PACKET as f64 / dt / f64::from(1u32 << 30),
        dt * 1e9 / f64::from(n)
    );
}

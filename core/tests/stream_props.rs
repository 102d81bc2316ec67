//! Properties of `hdht_core::secret_stream::SecretStream`: round trips through arbitrary chunkings,
//! rejection of tampered / truncated / reordered / replayed frames without panics, bounded
//! memory on arbitrary input, keep-alive and timeout timing as in the reference
//! (`@hyperswarm/secret-stream` 6.9.2: keep-alive = repeating timer refreshed by every write,
//! writing an empty frame; timeout = one-shot timer refreshed by every chunk of raw data).
//!
//! Every case is drawn from a seeded ChaCha RNG: failures reproduce.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use hdht_core::secret_stream::{
    frame_len, Config, HandshakeKeys, MessageDropped, SecretStream, SecretStreamError,
    DEFAULT_KEEP_ALIVE, HEADER_FRAME_LEN, MAX_FRAME_LEN, MAX_WRITE,
};
use hdht_core::Instant;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

// ------------------------------------------------------------------ allocation accounting

/// Records, per thread, the largest single allocation (or reallocation target) requested.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size)
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(|c| c.get()))
}

// ------------------------------------------------------------------ helpers

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn handshake(r: &mut ChaCha20Rng) -> (HandshakeKeys, HandshakeKeys) {
    let mut tx = [0; 32];
    let mut rx = [0; 32];
    let mut hash = [0; 64];
    let mut pk_i = [0; 32];
    let mut pk_r = [0; 32];
    for b in [&mut tx[..], &mut rx, &mut hash, &mut pk_i, &mut pk_r] {
        r.fill_bytes(b);
    }
    (
        HandshakeKeys {
            tx,
            rx,
            hash,
            public_key: pk_i,
            remote_public_key: pk_r,
        },
        HandshakeKeys {
            tx: rx,
            rx: tx,
            hash,
            public_key: pk_r,
            remote_public_key: pk_i,
        },
    )
}

fn pair_with(seed: u64, ci: &Config, cr: &Config) -> (SecretStream, SecretStream) {
    let mut r = rng(seed);
    let (hi, hr) = handshake(&mut r);
    let a = SecretStream::new(true, &hi, ci, Instant::ZERO, &mut r);
    let b = SecretStream::new(false, &hr, cr, Instant::ZERO, &mut r);
    (a, b)
}

fn quiet() -> Config {
    Config {
        keep_alive: None,
        ..Config::default()
    }
}

fn pair(seed: u64) -> (SecretStream, SecretStream) {
    pair_with(seed, &quiet(), &quiet())
}

fn random_message(r: &mut ChaCha20Rng) -> Vec<u8> {
    let len = match r.next_u32() % 10 {
        0 => 0,
        1..=5 => (r.next_u32() % 64) as usize,
        6..=8 => (r.next_u32() % 3000) as usize,
        _ => (r.next_u32() % 70_000) as usize,
    };
    let mut m = vec![0; len];
    r.fill_bytes(&mut m);
    m
}

/// Splits `wire` into random chunks: sometimes 1 byte at a time, sometimes huge.
fn random_chunks<'a>(r: &mut ChaCha20Rng, wire: &'a [u8]) -> Vec<&'a [u8]> {
    let mode = r.next_u32() % 4;
    let mut out = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = match mode {
            0 => 1,
            1 => 1 + (r.next_u32() % 64) as usize,
            2 => 1 + (r.next_u32() % 2000) as usize,
            _ => 1 + (r.next_u32() as usize % (wire.len() + 1)),
        }
        .min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// Writes `msgs` on `w`, returning the wire bytes (header frame first).
fn write_all(w: &mut SecretStream, msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    w.poll_transmit(&mut wire);
    for m in msgs {
        w.write(m, Instant::ZERO, &mut wire).unwrap();
    }
    wire
}

/// Reads `wire` in `chunks`; returns the messages delivered and the first error.
fn read_all(rd: &mut SecretStream, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<SecretStreamError>) {
    let mut got = Vec::new();
    for c in chunks {
        if let Err(e) = rd.read_messages(c, Instant::ZERO, |m| got.push(m.to_vec())) {
            return (got, Some(e));
        }
    }
    (got, rd.handle_remote_end().err())
}

/// Frame boundaries (start offsets) in a wire produced by `write_all`.
fn frame_starts(wire: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        starts.push(at);
        let len = wire[at] as usize | (wire[at + 1] as usize) << 8 | (wire[at + 2] as usize) << 16;
        at += 3 + len;
    }
    starts
}

// ------------------------------------------------------------------ round trips

#[test]
fn random_messages_round_trip_through_random_chunkings() {
    for seed in 0..150u64 {
        let mut r = rng(1000 + seed);
        let (mut a, mut b) = pair(seed);
        let msgs: Vec<Vec<u8>> = (0..(r.next_u32() % 20))
            .map(|_| random_message(&mut r))
            .collect();
        let wire = write_all(&mut a, &msgs);
        assert_eq!(
            wire.len(),
            HEADER_FRAME_LEN + msgs.iter().map(|m| frame_len(m.len())).sum::<usize>()
        );
        let chunks = random_chunks(&mut r, &wire);
        let mut got = Vec::new();
        for c in &chunks {
            b.read_messages(c, Instant::ZERO, |m| got.push(m.to_vec()))
                .unwrap();
        }
        assert_eq!(got, msgs, "seed {seed}");
        // And the other direction, in byte mode.
        let msgs: Vec<Vec<u8>> = (0..(r.next_u32() % 20))
            .map(|_| random_message(&mut r))
            .collect();
        let wire = write_all(&mut b, &msgs);
        let mut bytes = Vec::new();
        for c in random_chunks(&mut r, &wire) {
            a.read(c, Instant::ZERO, &mut bytes).unwrap();
        }
        assert_eq!(bytes, msgs.concat(), "seed {seed}");
        assert!(a.remote_header_received());
    }
}

#[test]
fn interleaved_bidirectional_exchange_and_graceful_close() {
    let (mut a, mut b) = pair(3);
    let mut r = rng(4);
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    a.poll_transmit(&mut a_out);
    b.poll_transmit(&mut b_out);
    let (mut a_sent, mut b_sent, mut a_got, mut b_got) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for step in 0..400 {
        let m = random_message(&mut r);
        if step % 2 == 0 {
            a.write(&m, Instant::ZERO, &mut a_out).unwrap();
            a_sent.extend_from_slice(&m);
        } else {
            b.write(&m, Instant::ZERO, &mut b_out).unwrap();
            b_sent.extend_from_slice(&m);
        }
        // Deliver a random prefix of each direction's pending bytes.
        let n = (r.next_u32() as usize) % (a_out.len() + 1);
        b.read(&a_out[..n], Instant::ZERO, &mut b_got).unwrap();
        a_out.drain(..n);
        let n = (r.next_u32() as usize) % (b_out.len() + 1);
        a.read(&b_out[..n], Instant::ZERO, &mut a_got).unwrap();
        b_out.drain(..n);
    }
    a.end(&mut a_out).unwrap();
    b.read(&a_out, Instant::ZERO, &mut b_got).unwrap();
    b.handle_remote_end().unwrap();
    assert!(!a.is_writable());
    assert!(b.is_writable() && !b.is_readable());
    assert_eq!(
        a.write(b"late", Instant::ZERO, &mut Vec::new()),
        Err(SecretStreamError::WriteAfterEnd)
    );
    b.write(b"after your end", Instant::ZERO, &mut b_out)
        .unwrap();
    b_sent.extend_from_slice(b"after your end");
    b.end(&mut b_out).unwrap();
    assert!(b.is_closed());
    a.read(&b_out, Instant::ZERO, &mut a_got).unwrap();
    a.handle_remote_end().unwrap();
    assert!(a.is_closed());
    assert_eq!(a_got, b_sent);
    assert_eq!(b_got, a_sent);
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(a.handle_transport_closed(), Ok(()));
    assert_eq!(
        a.read(b"x", Instant::ZERO, &mut Vec::new()),
        Err(SecretStreamError::Closed)
    );
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let (mut a, _) = pair(99);
        let mut wire = write_all(&mut a, &[b"one".to_vec(), Vec::new(), vec![7; 5000]]);
        a.send_message(b"unordered", &mut wire).unwrap();
        wire
    };
    assert_eq!(run(), run());
}

// ------------------------------------------------------------------ rejection

fn sample_wire(seed: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut r = rng(seed);
    let (mut a, _) = pair(seed);
    let mut msgs: Vec<Vec<u8>> = (0..(2 + r.next_u32() % 6))
        .map(|_| random_message(&mut r))
        .collect();
    msgs.iter_mut().for_each(|m| m.truncate(4000));
    (write_all(&mut a, &msgs), msgs)
}

/// Delivered messages must be an exact prefix of what was sent: never a corrupted plaintext.
fn assert_prefix(got: &[Vec<u8>], sent: &[Vec<u8>], ctx: &str) {
    assert!(got.len() <= sent.len(), "{ctx}: more messages than sent");
    assert_eq!(
        got,
        &sent[..got.len()],
        "{ctx}: a delivered message differs from what was sent"
    );
}

#[test]
fn every_bit_flip_is_rejected() {
    for seed in 0..12u64 {
        let (wire, msgs) = sample_wire(seed);
        let mut r = rng(seed + 77);
        // Every byte of the header frame and the first two frames, then random positions.
        let exhaustive = (frame_starts(&wire)[1] + 80).min(wire.len());
        let positions: Vec<usize> = (0..exhaustive)
            .chain((0..200).map(|_| r.next_u32() as usize % wire.len()))
            .collect();
        for pos in positions {
            let mut bad = wire.clone();
            bad[pos] ^= 1 << (r.next_u32() % 8);
            let (_, mut b) = pair(seed);
            let chunks = random_chunks(&mut r, &bad);
            let (got, err) = read_all(&mut b, &chunks);
            let ctx = format!("seed {seed} flip at {pos}");
            let err = err.unwrap_or_else(|| panic!("{ctx}: not rejected"));
            assert!(b.is_destroyed(), "{ctx}");
            assert_eq!(b.error(), Some(err), "{ctx}");
            assert!(
                matches!(
                    err,
                    SecretStreamError::Decrypt
                        | SecretStreamError::InvalidHeaderId
                        | SecretStreamError::InvalidHeaderLength(_)
                        | SecretStreamError::MessageTooShort(_)
                        | SecretStreamError::TruncatedFrame(_)
                ),
                "{ctx}: {err:?}"
            );
            assert_prefix(&got, &msgs, &ctx);
            // A destroyed stream refuses everything afterwards.
            assert_eq!(
                b.read(&wire, Instant::ZERO, &mut Vec::new()),
                Err(SecretStreamError::Destroyed)
            );
            assert_eq!(
                b.write(b"x", Instant::ZERO, &mut Vec::new()),
                Err(SecretStreamError::Destroyed)
            );
        }
    }
}

#[test]
fn truncation_reordering_replay_and_loss_are_rejected() {
    for seed in 0..40u64 {
        let (wire, msgs) = sample_wire(seed);
        let starts = frame_starts(&wire);
        let mut r = rng(seed + 5);
        let frames: Vec<&[u8]> = starts
            .iter()
            .zip(starts[1..].iter().chain([&wire.len()]))
            .map(|(s, e)| &wire[*s..*e])
            .collect();
        let ctx = |what: &str| format!("seed {seed}: {what}");

        // Ending mid-frame.
        let cut = starts[1] + 1 + r.next_u32() as usize % (wire.len() - starts[1] - 1);
        if !starts.contains(&cut) {
            let (_, mut b) = pair(seed);
            let (got, err) = read_all(&mut b, &[&wire[..cut]]);
            assert!(
                matches!(err, Some(SecretStreamError::TruncatedFrame(_))),
                "{}",
                ctx("truncated end")
            );
            assert_prefix(&got, &msgs, &ctx("truncated end"));
        }

        // Bytes missing from the middle of a frame, the stream going on after.
        let mut bad = wire.clone();
        let at = starts[1] + 3 + r.next_u32() as usize % (frames[1].len() - 3);
        let n = 1 + r.next_u32() as usize % 20;
        bad.drain(at..(at + n).min(bad.len()));
        let (_, mut b) = pair(seed);
        let (got, err) = read_all(&mut b, &random_chunks(&mut r, &bad));
        assert!(err.is_some(), "{}", ctx("bytes cut out"));
        assert_prefix(&got, &msgs, &ctx("bytes cut out"));

        // Swapped frames, a replayed frame, a lost frame.
        let msg_frames = &frames[1..];
        let mut variants: Vec<(String, Vec<&[u8]>)> = Vec::new();
        for i in 0..msg_frames.len().saturating_sub(1) {
            let mut v: Vec<&[u8]> = msg_frames.to_vec();
            v.swap(i, i + 1);
            if v != msg_frames {
                variants.push((format!("swap {i}"), v));
            }
            let mut v: Vec<&[u8]> = msg_frames.to_vec();
            v.insert(i + 1, msg_frames[i]);
            variants.push((format!("replay {i}"), v));
            let mut v: Vec<&[u8]> = msg_frames.to_vec();
            v.remove(i);
            variants.push((format!("drop {i}"), v));
        }
        // The header frame after a message, or twice.
        variants.push((
            "header twice".into(),
            [&[frames[0]][..], msg_frames].concat(),
        ));
        for (what, v) in variants {
            let mut bad = frames[0].to_vec();
            v.iter().for_each(|f| bad.extend_from_slice(f));
            let (_, mut b) = pair(seed);
            let (got, err) = read_all(&mut b, &random_chunks(&mut r, &bad));
            let err = err.unwrap_or_else(|| panic!("{}: accepted", ctx(&what)));
            // A second header frame is a 56-byte message frame that does not authenticate.
            assert_eq!(err, SecretStreamError::Decrypt, "{}", ctx(&what));
            assert_prefix(&got, &msgs, &ctx(&what));
        }

        // A message frame first instead of the header frame.
        let (_, mut b) = pair(seed);
        let err = b
            .read(frames[1], Instant::ZERO, &mut Vec::new())
            .unwrap_err();
        if frames[1].len() - 3 == 56 {
            assert_eq!(err, SecretStreamError::InvalidHeaderId);
        } else {
            assert_eq!(
                err,
                SecretStreamError::InvalidHeaderLength(frames[1].len() - 3)
            );
        }
    }
}

#[test]
fn truncation_at_a_frame_boundary_is_a_clean_end() {
    // No TAG_FINAL in secret-stream: the crypto layer cannot see a cut between frames.
    let (wire, msgs) = sample_wire(8);
    let starts = frame_starts(&wire);
    let (_, mut b) = pair(8);
    let (got, err) = read_all(&mut b, &[&wire[..starts[2]]]);
    assert_eq!(err, None);
    assert_eq!(got, msgs[..1]);
}

#[test]
fn header_from_another_handshake_or_same_role_is_rejected() {
    let (mut a, _) = pair(1);
    let (_, mut other) = pair(2);
    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    assert_eq!(
        other.read(&wire, Instant::ZERO, &mut Vec::new()),
        Err(SecretStreamError::InvalidHeaderId)
    );
    // Two initiators.
    let mut r = rng(1);
    let (hi, _) = handshake(&mut r);
    let mut i2 = SecretStream::new(true, &hi, &quiet(), Instant::ZERO, &mut r);
    assert_eq!(
        i2.read(&wire, Instant::ZERO, &mut Vec::new()),
        Err(SecretStreamError::InvalidHeaderId)
    );
    // Wrong first-frame lengths are rejected as soon as the prefix is read.
    for len in [0usize, 17, 55, 57, 0xff_ffff] {
        let (_, mut b) = pair(1);
        let prefix = (len as u32).to_le_bytes();
        assert_eq!(
            b.read(&prefix[..3], Instant::ZERO, &mut Vec::new()),
            Err(SecretStreamError::InvalidHeaderLength(len))
        );
    }
}

#[test]
fn short_and_oversized_frames() {
    let cfg = Config {
        max_frame_len: 1000,
        ..quiet()
    };
    for len in [0usize, 1, 16] {
        let (mut a, mut b) = pair_with(5, &quiet(), &cfg);
        let mut wire = Vec::new();
        a.poll_transmit(&mut wire);
        wire.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        assert_eq!(
            b.read(&wire, Instant::ZERO, &mut Vec::new()),
            Err(SecretStreamError::MessageTooShort(len))
        );
    }
    let (mut a, mut b) = pair_with(5, &quiet(), &cfg);
    let wire = write_all(&mut a, &[vec![1; 983], vec![2; 984]]);
    let (got, err) = read_all(&mut b, &[&wire]);
    assert_eq!(got, vec![vec![1; 983]]);
    assert_eq!(
        err,
        Some(SecretStreamError::FrameTooLarge {
            len: 1001,
            max: 1000
        })
    );
}

#[test]
fn write_limits() {
    let (mut a, _) = pair(6);
    let big = vec![0u8; MAX_WRITE + 1];
    let mut out = Vec::new();
    assert_eq!(
        a.write(&big, Instant::ZERO, &mut out),
        Err(SecretStreamError::WriteTooLarge {
            len: MAX_WRITE + 1,
            max: MAX_WRITE
        })
    );
    assert!(out.is_empty(), "a refused write emits nothing");
    assert!(a.is_writable(), "a refused write does not destroy");
    a.write(&big[..MAX_WRITE], Instant::ZERO, &mut out).unwrap();
    assert_eq!(out.len(), HEADER_FRAME_LEN + 3 + MAX_FRAME_LEN);
    assert_eq!(
        &out[HEADER_FRAME_LEN..HEADER_FRAME_LEN + 3],
        &[0xff, 0xff, 0xff]
    );
}

// ------------------------------------------------------------------ arbitrary input

#[test]
fn arbitrary_bytes_never_panic_and_stay_bounded() {
    for seed in 0..400u64 {
        let mut r = rng(seed);
        let max = [64usize, 4096, MAX_FRAME_LEN][seed as usize % 3];
        let cfg = Config {
            max_frame_len: max,
            keep_alive: None,
            ..Config::default()
        };
        let (mut a, mut b) = pair_with(seed, &quiet(), &cfg);
        let mut input = Vec::new();
        match seed % 4 {
            // Pure noise.
            0 => {}
            // A valid header frame, then noise.
            1 => {
                a.poll_transmit(&mut input);
            }
            // Valid frames, then noise.
            2 => input = write_all(&mut a, &[b"hi".to_vec(), vec![3; 100]]),
            // A valid header and a giant announced frame.
            _ => {
                a.poll_transmit(&mut input);
                input.extend_from_slice(&[0xff, 0xff, 0xff]);
            }
        }
        let noise_len = r.next_u32() as usize % 20_000;
        let mut noise = vec![0; noise_len];
        r.fill_bytes(&mut noise);
        if seed % 7 == 0 {
            // Plausible-looking prefixes.
            for (i, b) in noise.iter_mut().enumerate() {
                if i % 50 == 0 {
                    *b = 0x11;
                }
            }
        }
        input.extend_from_slice(&noise);
        let chunks = random_chunks(&mut r, &input);
        let ((_, _), largest) = largest_allocation_during(|| read_all(&mut b, &chunks));
        assert!(b.buffered_capacity() <= 2 * max, "seed {seed}");
        // The reader never allocates more than what arrived (plus the message being delivered,
        // itself bounded by what arrived) — in particular not the announced frame length.
        assert!(
            largest <= 2 * input.len() + 1024,
            "seed {seed}: allocation of {largest} bytes for {} input bytes",
            input.len()
        );
    }
}

#[test]
fn announced_16_mib_frame_allocates_only_what_arrives() {
    let (mut a, mut b) = pair(11);
    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    wire.extend_from_slice(&[0xff, 0xff, 0xff]);
    wire.extend_from_slice(&[0u8; 1000]);
    let (r, largest) = largest_allocation_during(|| b.read(&wire, Instant::ZERO, &mut Vec::new()));
    assert_eq!(r, Ok(0));
    assert!(
        largest <= 4096,
        "allocated {largest} bytes for a frame of which 1000 bytes arrived"
    );
    assert!(b.buffered_capacity() <= 4096);
    // The whole frame may legitimately arrive: memory grows with it, up to the frame length.
    let (mut a, mut b) = pair(12);
    let wire = write_all(&mut a, &[vec![9; MAX_WRITE]]);
    let mut got = Vec::new();
    for c in wire.chunks(1152) {
        b.read(c, Instant::ZERO, &mut got).unwrap();
    }
    assert_eq!(got.len(), MAX_WRITE);
    assert!(
        b.buffered_capacity() <= 128 * 1024,
        "large frame buffers are released afterwards"
    );
}

// ------------------------------------------------------------------ unordered messages

#[test]
fn unordered_messages_round_trip_and_bad_ones_are_dropped() {
    let (mut a, mut b) = pair(21);
    let mut r = rng(22);
    for _ in 0..200 {
        let m = random_message(&mut r);
        let m = &m[..m.len().min(1400)];
        let mut env = Vec::new();
        a.send_message(m, &mut env).unwrap();
        assert_eq!(env.len(), m.len() + 24);
        let mut out = Vec::new();
        assert_eq!(b.open_message(&env, &mut out), Ok(m.len()));
        assert_eq!(out, m);
        // Any flipped bit: dropped, nothing appended, stream unaffected.
        let pos = r.next_u32() as usize % env.len();
        env[pos] ^= 1 << (r.next_u32() % 8);
        let mut out = Vec::new();
        assert_eq!(
            b.open_message(&env, &mut out),
            Err(MessageDropped::Authentication)
        );
        assert!(out.is_empty());
        assert_eq!(
            b.open_message_in_place(&mut env),
            Err(MessageDropped::Authentication)
        );
    }
    // Replies the other way.
    let mut env = Vec::new();
    b.send_message(b"reply", &mut env).unwrap();
    let mut out = Vec::new();
    a.open_message(&env, &mut out).unwrap();
    assert_eq!(out, b"reply");
    // Too short (hyperdht's empty nudge included).
    for n in [0usize, 1, 23] {
        assert_eq!(
            b.open_message(&vec![0; n], &mut Vec::new()),
            Err(MessageDropped::TooShort)
        );
    }
    // No replay protection, as in the reference: the same envelope opens twice.
    assert!(a.open_message(&env, &mut Vec::new()).is_ok());
    assert!(b.is_open() && a.is_open());
    // Counters advance by one per message.
    let mut e1 = Vec::new();
    let mut e2 = Vec::new();
    a.send_message(b"", &mut e1).unwrap();
    a.send_message(b"", &mut e2).unwrap();
    let c1 = u64::from_le_bytes(e1[..8].try_into().unwrap());
    let c2 = u64::from_le_bytes(e2[..8].try_into().unwrap());
    assert_eq!(c2, c1.wrapping_add(1));
    // After destroy: refused.
    a.destroy();
    assert_eq!(
        a.send_message(b"x", &mut Vec::new()),
        Err(SecretStreamError::Destroyed)
    );
    assert_eq!(
        a.open_message(&env, &mut Vec::new()),
        Err(MessageDropped::NotOpen)
    );
}

// ------------------------------------------------------------------ keep-alive and timeout

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

#[test]
fn keep_alive_fires_after_write_silence_and_is_refreshed_by_writes() {
    let mut r = rng(31);
    let (hi, hr) = handshake(&mut r);
    let mut a = SecretStream::new(true, &hi, &Config::default(), ms(1000), &mut r);
    let mut b = SecretStream::new(false, &hr, &quiet(), ms(1000), &mut r);
    assert_eq!(Config::default().keep_alive, Some(DEFAULT_KEEP_ALIVE));
    assert_eq!(DEFAULT_KEEP_ALIVE, Duration::from_millis(5000));

    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    // The header frame does not count as a write: the first keep-alive is 5 s after start.
    assert_eq!(a.poll_timeout(), Some(ms(6000)));
    a.handle_timeout(ms(5999)).unwrap();
    assert!(!a.has_pending_transmit());
    a.handle_timeout(ms(6000)).unwrap();
    assert!(a.has_pending_transmit());
    let before = wire.len();
    assert!(a.poll_transmit(&mut wire));
    assert_eq!(
        &wire[before..before + 3],
        &[0x11, 0, 0],
        "an empty frame: 20 bytes"
    );
    assert_eq!(wire.len() - before, 20);
    // Repeats every 5 s while idle...
    assert_eq!(a.poll_timeout(), Some(ms(11000)));
    // ... a write at 8 s pushes it to 13 s.
    a.write(b"data", ms(8000), &mut wire).unwrap();
    assert_eq!(a.poll_timeout(), Some(ms(13000)));
    a.handle_timeout(ms(11000)).unwrap();
    assert!(!a.has_pending_transmit());
    // A late timer run queues one keep-alive, not one per missed interval.
    a.handle_timeout(ms(40000)).unwrap();
    let before = wire.len();
    a.poll_transmit(&mut wire);
    assert_eq!(wire.len() - before, 20);
    assert_eq!(a.poll_timeout(), Some(ms(45000)));

    // A peer without keep-alive sees the empty messages; with keep-alive it drops them.
    let mut got = Vec::new();
    b.read_messages(&wire, ms(40000), |m| got.push(m.to_vec()))
        .unwrap();
    assert_eq!(got, vec![Vec::new(), b"data".to_vec(), Vec::new()]);
    let mut r = rng(31);
    let (_, hr) = handshake(&mut r);
    let mut _a = SecretStream::new(true, &hi, &Config::default(), ms(0), &mut r);
    let mut b2 = SecretStream::new(false, &hr, &Config::default(), ms(0), &mut r);
    let mut got = Vec::new();
    b2.read_messages(&wire, ms(0), |m| got.push(m.to_vec()))
        .unwrap();
    assert_eq!(got, vec![b"data".to_vec()]);

    // end() stops the keep-alive.
    a.end(&mut wire).unwrap();
    assert_eq!(a.poll_timeout(), None);
    a.handle_timeout(ms(100_000)).unwrap();
    assert!(!a.has_pending_transmit());
}

#[test]
fn set_keep_alive_restarts_and_turns_on_filtering() {
    let (mut a, mut b) = pair(32);
    assert_eq!(a.poll_timeout(), None);
    a.set_keep_alive(Some(Duration::from_millis(250)), ms(10));
    assert_eq!(a.poll_timeout(), Some(ms(260)));
    a.set_keep_alive(Some(Duration::ZERO), ms(20));
    assert_eq!(a.poll_timeout(), None);
    // b's filter: off until a keep-alive is set, then on for good.
    let wire = write_all(&mut a, &[Vec::new(), b"x".to_vec(), Vec::new()]);
    let mut got = Vec::new();
    b.read_messages(&wire[..HEADER_FRAME_LEN + 20], ms(0), |m| {
        got.push(m.to_vec())
    })
    .unwrap();
    assert_eq!(got, vec![Vec::new()]);
    b.set_keep_alive(Some(Duration::from_secs(5)), ms(0));
    b.set_keep_alive(None, ms(0));
    got.clear();
    b.read_messages(&wire[HEADER_FRAME_LEN + 20..], ms(0), |m| {
        got.push(m.to_vec())
    })
    .unwrap();
    assert_eq!(got, vec![b"x".to_vec()]);
}

#[test]
fn timeout_destroys_after_read_silence() {
    let cfg = Config {
        timeout: Some(Duration::from_millis(10_000)),
        keep_alive: None,
        ..Config::default()
    };
    let mut r = rng(41);
    let (hi, hr) = handshake(&mut r);
    let mut a = SecretStream::new(true, &hi, &quiet(), ms(0), &mut r);
    let mut b = SecretStream::new(false, &hr, &cfg, ms(0), &mut r);
    assert_eq!(b.poll_timeout(), Some(ms(10_000)));
    // Any transport data refreshes it, even a partial frame.
    let mut wire = Vec::new();
    a.poll_transmit(&mut wire);
    b.read(&wire[..10], ms(3000), &mut Vec::new()).unwrap();
    assert_eq!(b.poll_timeout(), Some(ms(13_000)));
    // Writes and unordered messages do not.
    b.write(b"x", ms(5000), &mut Vec::new()).unwrap();
    let mut env = Vec::new();
    a.send_message(b"m", &mut env).unwrap();
    b.open_message(&env, &mut Vec::new()).unwrap();
    assert_eq!(b.poll_timeout(), Some(ms(13_000)));
    b.handle_timeout(ms(12_999)).unwrap();
    assert!(b.is_open());
    assert_eq!(
        b.handle_timeout(ms(13_000)),
        Err(SecretStreamError::TimedOut)
    );
    assert!(b.is_destroyed());
    assert_eq!(b.error(), Some(SecretStreamError::TimedOut));
    assert_eq!(b.poll_timeout(), None);
    assert_eq!(
        b.write(b"x", ms(13_001), &mut Vec::new()),
        Err(SecretStreamError::Destroyed)
    );
    assert!(!b.poll_transmit(&mut Vec::new()));
    // set_timeout restarts / disables.
    let (_, mut c) = pair(42);
    c.set_timeout(Some(Duration::from_millis(50)), ms(100));
    assert_eq!(c.poll_timeout(), Some(ms(150)));
    c.set_timeout(None, ms(100));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn timeout_keeps_running_after_remote_end_like_the_reference() {
    let cfg = Config {
        timeout: Some(Duration::from_millis(1000)),
        ..Config::default()
    };
    let (_, mut b) = pair_with(43, &quiet(), &cfg);
    b.handle_remote_end().unwrap();
    assert_eq!(b.poll_timeout(), Some(ms(1000)));
    // Both ends: closed, timers stop.
    b.end(&mut Vec::new()).unwrap();
    assert!(b.is_closed());
    assert_eq!(b.poll_timeout(), None);
}

// ------------------------------------------------------------------ lifecycle

#[test]
fn transport_close_before_both_ends_destroys() {
    let (mut a, _) = pair(51);
    a.end(&mut Vec::new()).unwrap();
    assert_eq!(
        a.handle_transport_closed(),
        Err(SecretStreamError::TransportClosed)
    );
    assert!(a.is_destroyed());
    assert_eq!(a.handle_transport_closed(), Ok(()));

    let (mut a, _) = pair(52);
    a.destroy();
    assert!(a.is_destroyed());
    assert_eq!(a.error(), None);
    assert_eq!(a.handle_remote_end(), Err(SecretStreamError::Destroyed));
    assert!(!a.has_pending_transmit());
}

#[test]
fn end_flushes_a_pending_header() {
    let (mut a, mut b) = pair(53);
    let mut out = Vec::new();
    a.end(&mut out).unwrap();
    assert_eq!(out.len(), HEADER_FRAME_LEN);
    assert_eq!(a.end(&mut out), Ok(()), "end is idempotent");
    assert_eq!(out.len(), HEADER_FRAME_LEN);
    b.read(&out, ms(0), &mut Vec::new()).unwrap();
    assert!(b.remote_header_received());
    b.handle_remote_end().unwrap();
    // A remote end before any byte is a plain end (the reference pushes EOF).
    let (_, mut c) = pair(54);
    assert_eq!(c.handle_remote_end(), Ok(()));
    assert_eq!(
        c.read(b"x", ms(0), &mut Vec::new()),
        Err(SecretStreamError::ReadAfterEnd)
    );
}

// ------------------------------------------------------------------ throughput (manual)

/// Encrypt + decrypt throughput with 64 KiB frames delivered in 1152-byte chunks (UDX payload
/// size). Manual: `cargo test --release -p hdht-core --test stream_props -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let (mut a, mut b) = pair(77);
    let msg = vec![0x5a; 64 * 1024];
    let total = 512 * 1024 * 1024;
    let mut wire = Vec::with_capacity(frame_len(msg.len()) + HEADER_FRAME_LEN);
    let mut out = Vec::with_capacity(256 * 1024);
    let (mut enc, mut dec) = (Duration::ZERO, Duration::ZERO);
    let mut sent = 0;
    a.poll_transmit(&mut wire);
    while sent < total {
        let t = std::time::Instant::now();
        a.write(&msg, Instant::ZERO, &mut wire).unwrap();
        enc += t.elapsed();
        let t = std::time::Instant::now();
        for c in wire.chunks(1152) {
            b.read(c, Instant::ZERO, &mut out).unwrap();
        }
        dec += t.elapsed();
        assert_eq!(out.len(), msg.len());
        out.clear();
        wire.clear();
        sent += msg.len();
    }
    let mb = total as f64 / 1e6;
    println!(
        "encrypt {:.0} MB/s, decrypt (1152-byte chunks) {:.0} MB/s",
        mb / enc.as_secs_f64(),
        mb / dec.as_secs_f64()
    );
}

/// `whole_frames_len` cuts transport bytes at frame boundaries only: a reader that feeds what it
/// says (and arbitrary pieces when it says "mid-frame" or "not even one frame") gets every
/// message in order, and right after a whole-frames feed it is between frames again.
#[test]
fn whole_frames_len_cuts_only_at_frame_boundaries() {
    for seed in 0..40u64 {
        let (mut a, mut b) = pair(seed);
        let mut r = rng(seed + 1000);
        let mut wire = Vec::new();
        a.poll_transmit(&mut wire);
        let mut sent = Vec::new();
        for _ in 0..30 {
            let m = random_message(&mut r);
            a.write(&m, Instant::ZERO, &mut wire).expect("write");
            sent.extend_from_slice(&m);
        }
        let mut got = Vec::new();
        let mut arrived = 0;
        let mut fed = 0;
        while fed < wire.len() {
            arrived = (arrived + 1 + (r.next_u32() % 90_000) as usize).min(wire.len());
            loop {
                let avail = &wire[fed..arrived];
                if avail.is_empty() {
                    break;
                }
                let limit = (r.next_u32() % 200_000) as usize;
                match b.whole_frames_len(avail, limit) {
                    Some(0) if arrived < wire.len() => break, // wait for more
                    Some(n) if n > 0 => {
                        b.read(&avail[..n], Instant::ZERO, &mut got).expect("read");
                        fed += n;
                        assert!(b.whole_frames_len(&[], 0).is_some(), "between frames");
                    }
                    _ => {
                        let n = 1 + (r.next_u32() as usize % avail.len());
                        b.read(&avail[..n], Instant::ZERO, &mut got).expect("read");
                        fed += n;
                    }
                }
            }
        }
        assert_eq!(got, sent, "seed {seed}");
    }
}

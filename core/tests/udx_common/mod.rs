//! A quinn-style `Pair`: two UDX streams wired through an in-memory link with virtual time and
//! seeded loss, duplication, reordering, jitter and an optional bottleneck rate.
#![allow(dead_code)]

use hdht_core::udx::{Packet, StreamConfig, UdxStream};
use hdht_core::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Link behaviour (same both ways).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// One-way latency in µs.
    pub latency_us: u64,
    /// Extra random delay 0..jitter_us.
    pub jitter_us: u64,
    /// Loss probability in parts per million.
    pub loss_ppm: u32,
    /// Duplication probability (ppm).
    pub dup_ppm: u32,
    /// Reorder probability (ppm): the packet is held back by `reorder_us`.
    pub reorder_ppm: u32,
    /// How long a reordered packet is held.
    pub reorder_us: u64,
    /// Bottleneck in bytes per second (None = unlimited).
    pub rate: Option<u64>,
    /// Bottleneck queue in bytes (drop-tail).
    pub queue_bytes: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            latency_us: 5_000,
            jitter_us: 0,
            loss_ppm: 0,
            dup_ppm: 0,
            reorder_ppm: 0,
            reorder_us: 0,
            rate: None,
            queue_bytes: 1 << 20,
        }
    }
}

impl LinkConfig {
    /// Lossy, reordering, duplicating, jittery link.
    pub fn lossy(loss_pct: u32) -> Self {
        LinkConfig {
            latency_us: 10_000,
            jitter_us: 1_000,
            loss_ppm: loss_pct * 10_000,
            dup_ppm: 5_000,
            reorder_ppm: 20_000,
            reorder_us: 3_000,
            rate: Some(50_000_000),
            queue_bytes: 1 << 20,
        }
    }
}

/// Side index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// The pair.
pub struct Pair {
    pub now: Instant,
    pub a: UdxStream,
    pub b: UdxStream,
    pub a_addr: SocketAddr,
    pub b_addr: SocketAddr,
    pub link: LinkConfig,
    rng: ChaCha8Rng,
    queue: BTreeMap<(u64, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    counter: u64,
    busy_until: [u64; 2],
    buf: Vec<u8>,
    /// Datagrams put on the wire by A and B.
    pub sent: [u64; 2],
    /// Datagrams lost on the link.
    pub lost: [u64; 2],
    /// Datagrams delivered to a stream.
    pub delivered: [u64; 2],
    /// Every datagram sent (if `record`).
    pub record: bool,
    pub log: Vec<(u64, Side, Vec<u8>)>,
    /// Call poll_transmit after every delivered datagram (libudx-like per-packet acks).
    pub flush_each: bool,
}

pub const A_ID: u32 = 0x1234_5678;
pub const B_ID: u32 = 0x9abc_def0;

impl Pair {
    pub fn new(seed: u64, link: LinkConfig, cfg: StreamConfig) -> Self {
        Self::with_configs(seed, link, cfg.clone(), cfg)
    }

    pub fn with_configs(
        seed: u64,
        link: LinkConfig,
        cfg_a: StreamConfig,
        cfg_b: StreamConfig,
    ) -> Self {
        let now = Instant::from_millis(1);
        let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
        let mut a = UdxStream::new(A_ID, now, cfg_a);
        let mut b = UdxStream::new(B_ID, now, cfg_b);
        a.connect(now, B_ID, b_addr).unwrap();
        b.connect(now, A_ID, a_addr).unwrap();
        Pair {
            now,
            a,
            b,
            a_addr,
            b_addr,
            link,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: BTreeMap::new(),
            counter: 0,
            busy_until: [0; 2],
            buf: vec![0u8; 2048],
            sent: [0; 2],
            lost: [0; 2],
            delivered: [0; 2],
            record: false,
            log: Vec::new(),
            flush_each: true,
        }
    }

    pub fn stream(&mut self, side: Side) -> &mut UdxStream {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && (self.rng.next_u32() % 1_000_000) < ppm
    }

    fn enqueue(&mut self, from_side: Side, to: SocketAddr, bytes: &[u8]) {
        let i = from_side as usize;
        self.sent[i] += 1;
        if self.record {
            self.log
                .push((self.now.as_micros(), from_side, bytes.to_vec()));
        }
        if self.chance(self.link.loss_ppm) {
            self.lost[i] += 1;
            return;
        }
        let mut t = self.now.as_micros();
        if let Some(rate) = self.link.rate {
            let start = self.busy_until[i].max(t);
            let backlog = (start - t) * rate / 1_000_000;
            if backlog > self.link.queue_bytes {
                self.lost[i] += 1;
                return;
            }
            let ser = (bytes.len() as u64 + 28) * 1_000_000 / rate;
            self.busy_until[i] = start + ser.max(1);
            t = self.busy_until[i];
        }
        t += self.link.latency_us;
        if self.link.jitter_us > 0 {
            t += u64::from(self.rng.next_u32()) % self.link.jitter_us;
        }
        if self.chance(self.link.reorder_ppm) {
            t += self.link.reorder_us;
        }
        let from = if from_side == Side::A {
            self.a_addr
        } else {
            self.b_addr
        };
        let copies = if self.chance(self.link.dup_ppm) { 2 } else { 1 };
        for c in 0..copies {
            self.counter += 1;
            self.queue
                .insert((t + c * 100, self.counter), (from, to, bytes.to_vec()));
        }
    }

    /// Put every pending datagram of both streams on the link.
    pub fn flush(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let now = self.now;
                let mut buf = std::mem::take(&mut self.buf);
                let t = self.stream(side).poll_transmit(now, &mut buf);
                match t {
                    Some(t) => {
                        let bytes = buf[..t.len].to_vec();
                        self.buf = buf;
                        self.enqueue(side, t.to, &bytes);
                    }
                    None => {
                        self.buf = buf;
                        break;
                    }
                }
            }
        }
    }

    /// Next instant something happens.
    pub fn next_event(&self) -> Option<Instant> {
        let q = self
            .queue
            .keys()
            .next()
            .map(|(t, _)| Instant::from_micros(*t));
        [q, self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advance to the next event and process it. False if nothing is scheduled.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        if next > self.now {
            self.now = next;
        }
        let now_us = self.now.as_micros();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now_us {
                break;
            }
            let (from, to, bytes) = entry.remove();
            let side = if to == self.a_addr {
                Side::A
            } else if to == self.b_addr {
                Side::B
            } else {
                continue; // nobody there any more
            };
            let Ok(pkt) = Packet::decode(&bytes) else {
                continue;
            };
            let expected = if side == Side::A { A_ID } else { B_ID };
            if pkt.header.stream_id != expected {
                continue;
            }
            self.delivered[side as usize] += 1;
            let now = self.now;
            self.stream(side).handle_packet(now, &pkt, from);
            if self.flush_each {
                self.flush();
            }
        }
        let now = self.now;
        for side in [Side::A, Side::B] {
            if self.stream(side).poll_timeout().is_some_and(|t| t <= now) {
                self.stream(side).handle_timeout(now);
            }
        }
        self.flush();
        true
    }
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Result of a one-way transfer.
#[derive(Debug)]
pub struct TransferResult {
    pub virtual_secs: f64,
    pub a_closed: Option<Option<hdht_core::udx::StreamError>>,
    pub b_closed: Option<Option<hdht_core::udx::StreamError>>,
    pub max_b_buffered: usize,
    pub max_a_send_buffered: usize,
}

/// A writes `data` then ends; B reads everything, then ends; run until both are closed.
/// Panics if B's bytes differ.
pub fn transfer(
    pair: &mut Pair,
    data: &[u8],
    read_chunk: usize,
    max_virtual_secs: u64,
) -> TransferResult {
    let start = pair.now;
    let mut pos = 0;
    let mut ended_a = false;
    let mut ended_b = false;
    let mut got = Vec::with_capacity(data.len());
    let mut rbuf = vec![0u8; read_chunk.max(1)];
    let mut max_b = 0;
    let mut max_a = 0;
    let deadline = start.as_micros() + max_virtual_secs * 1_000_000;
    loop {
        while pos < data.len() {
            match pair.a.write(&data[pos..]) {
                Ok(n) => pos += n,
                Err(_) => break,
            }
        }
        if pos == data.len() && !ended_a {
            pair.a.end().unwrap();
            ended_a = true;
        }
        loop {
            match pair.b.read(&mut rbuf) {
                Ok(0) => {
                    if !ended_b {
                        pair.b.end().unwrap();
                        ended_b = true;
                    }
                    break;
                }
                Ok(n) => got.extend_from_slice(&rbuf[..n]),
                Err(_) => break,
            }
        }
        while pair.a.poll_event().is_some() {}
        while pair.b.poll_event().is_some() {}
        max_b = max_b.max(pair.b.recv_buffered());
        max_a = max_a.max(pair.a.send_buffered());
        if pair.a.is_closed() && pair.b.is_closed() {
            break;
        }
        if !pair.step() || pair.now.as_micros() > deadline {
            break;
        }
    }
    assert_eq!(got.len(), data.len(), "received length");
    assert!(got == data, "received bytes differ");
    TransferResult {
        virtual_secs: (pair.now.as_micros() - start.as_micros()) as f64 / 1e6,
        a_closed: pair.a.close_reason(),
        b_closed: pair.b.close_reason(),
        max_b_buffered: max_b,
        max_a_send_buffered: max_a,
    }
}

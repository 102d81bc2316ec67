//! Property tests for `hdht_core::protomux` and the blind-relay messages: codec round trips,
//! arbitrary frames never panic and end a session cleanly, two honest sessions driven by random
//! scripts (opens, sends, closes, corks, any delivery chunking) never fail and deliver every
//! message in order.
//!
//! The number of cases per property can be raised with `QUICKCHECK_TESTS=<n>`.

mod prop_common;

use std::collections::{BTreeMap, VecDeque};

use hdht_core::protomux::frame::{encode_close, encode_message, encode_open, encode_reject};
use hdht_core::protomux::{
    Accept, BatchWriter, ChannelId, ChannelOptions, Frame, Mux, MuxEvent, Open, ProtomuxError,
};
use hdht_core::relay::message::{Pair, Unpair};
use prop_common::{arb_32, arb_uint_mostly_small, arb_vec, below, qc};
use quickcheck::{Arbitrary, Gen};

fn arb_bytes(g: &mut Gen, max: usize) -> Vec<u8> {
    arb_vec(g, max, u8::arbitrary)
}

// ---------------------------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum ArbFrame {
    Open {
        local_id: u64,
        protocol: String,
        id: Vec<u8>,
        handshake: Vec<u8>,
    },
    Reject(u64),
    Close(u64),
    Message {
        channel: u64,
        message_type: u64,
        body: Vec<u8>,
    },
}

impl Arbitrary for ArbFrame {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 4 {
            0 => ArbFrame::Open {
                local_id: arb_uint_mostly_small(g),
                protocol: String::arbitrary(g),
                id: arb_bytes(g, 40),
                handshake: arb_bytes(g, 20),
            },
            1 => ArbFrame::Reject(arb_uint_mostly_small(g)),
            2 => ArbFrame::Close(arb_uint_mostly_small(g)),
            _ => ArbFrame::Message {
                channel: 1 + arb_uint_mostly_small(g) % ((1 << 53) - 2),
                message_type: arb_uint_mostly_small(g),
                body: arb_bytes(g, 64),
            },
        }
    }
}

#[test]
fn frames_round_trip() {
    fn prop(f: ArbFrame) -> bool {
        let mut out = Vec::new();
        match &f {
            ArbFrame::Open {
                local_id,
                protocol,
                id,
                handshake,
            } => {
                encode_open(&mut out, *local_id, protocol, Some(id), handshake);
                Frame::decode(&out)
                    == Ok(Frame::Open(Open {
                        local_id: *local_id,
                        protocol: protocol.as_bytes(),
                        id: (!id.is_empty()).then_some(id.as_slice()),
                        handshake,
                    }))
            }
            ArbFrame::Reject(l) => {
                encode_reject(&mut out, *l);
                Frame::decode(&out) == Ok(Frame::Reject { local_id: *l })
            }
            ArbFrame::Close(l) => {
                encode_close(&mut out, *l);
                Frame::decode(&out) == Ok(Frame::Close { local_id: *l })
            }
            ArbFrame::Message {
                channel,
                message_type,
                body,
            } => {
                encode_message(&mut out, *channel, *message_type, body);
                Frame::decode(&out)
                    == Ok(Frame::Message {
                        channel: *channel,
                        message_type: *message_type,
                        body,
                    })
            }
        }
    }
    qc(2000).quickcheck(prop as fn(ArbFrame) -> bool);
}

#[derive(Debug, Clone)]
struct Entries(Vec<(u64, u64, Vec<u8>)>);

impl Arbitrary for Entries {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + below(g, 12);
        Entries(
            (0..n)
                .map(|_| {
                    (
                        u64::from(u8::arbitrary(g) % 4),
                        arb_uint_mostly_small(g),
                        arb_bytes(g, 300),
                    )
                })
                .collect(),
        )
    }
}

#[test]
fn batches_round_trip() {
    fn prop(e: Entries) -> bool {
        let mut w = BatchWriter::new();
        for (ch, ty, body) in &e.0 {
            w.push(*ch, *ty, body);
        }
        let frame = w.take().unwrap();
        assert!(w.is_empty());
        let Ok(Frame::Batch(mut entries)) = Frame::decode(&frame) else {
            return false;
        };
        let mut got = Vec::new();
        while let Some((ch, entry)) = entries.next_entry().unwrap() {
            let (ty, body) = if ch == 0 {
                // Channel-0 entries are control messages: split type and body only.
                let mut r = hdht_core::wire::Reader::new(entry);
                let ty = r.uint().unwrap();
                (ty, r.remaining().to_vec())
            } else {
                match Frame::decode_on(ch, entry).unwrap() {
                    Frame::Message {
                        message_type, body, ..
                    } => (message_type, body.to_vec()),
                    other => panic!("channel {ch} decoded as {other:?}"),
                }
            };
            got.push((ch, ty, body));
        }
        got == e.0
    }
    qc(1000).quickcheck(prop as fn(Entries) -> bool);
}

#[test]
fn relay_messages_round_trip_and_decode_anything() {
    fn prop(initiator: bool, id: u32, seq: u64, noise: Vec<u8>) -> bool {
        let token = {
            let mut g = Gen::new(8);
            arb_32(&mut g)
        };
        let p = Pair {
            is_initiator: initiator,
            token,
            id,
            seq: seq % (1 << 53),
        };
        let u = Unpair { token };
        // Arbitrary input: typed errors, no panic.
        let _ = Pair::decode(&noise);
        let _ = Unpair::decode(&noise);
        // Trailing bytes are ignored.
        let mut with_tail = p.to_vec();
        with_tail.extend_from_slice(&noise);
        Pair::decode(&p.to_vec()) == Ok(p)
            && Unpair::decode(&u.to_vec()) == Ok(u)
            && Pair::decode(&with_tail) == Ok(p)
    }
    qc(2000).quickcheck(prop as fn(bool, u32, u64, Vec<u8>) -> bool);
}

// ---------------------------------------------------------------------------------------------
// Arbitrary frames into a session
// ---------------------------------------------------------------------------------------------

/// Frames biased towards what a session reacts to: control messages, low channel ids, batches.
#[derive(Debug, Clone)]
struct Hostile(Vec<Vec<u8>>);

impl Arbitrary for Hostile {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + below(g, 24);
        let protocols = ["oky", "no", ""];
        let frame = |g: &mut Gen| -> Vec<u8> {
            let mut out = Vec::new();
            match u8::arbitrary(g) % 7 {
                0 => encode_open(
                    &mut out,
                    u64::from(u8::arbitrary(g) % 6),
                    protocols[below(g, 3)],
                    Some(&arb_bytes(g, 3)),
                    &[],
                ),
                1 => encode_reject(&mut out, u64::from(u8::arbitrary(g) % 6)),
                2 => encode_close(&mut out, u64::from(u8::arbitrary(g) % 6)),
                3 => encode_message(
                    &mut out,
                    u64::from(u8::arbitrary(g) % 6),
                    u64::from(u8::arbitrary(g) % 3),
                    &arb_bytes(g, 8),
                ),
                4 => {
                    let mut w = BatchWriter::new();
                    for _ in 0..1 + below(g, 5) {
                        w.push(
                            u64::from(u8::arbitrary(g) % 3),
                            u64::from(u8::arbitrary(g) % 4),
                            &arb_bytes(g, 6),
                        );
                    }
                    out = w.take().unwrap();
                }
                5 => out = arb_bytes(g, 24),
                _ => {}
            }
            // Sometimes truncated.
            if !out.is_empty() && u8::arbitrary(g) % 5 == 0 {
                let cut = below(g, out.len());
                out.truncate(cut);
            }
            out
        };
        Hostile((0..n).map(|_| frame(g)).collect())
    }
}

#[test]
fn arbitrary_frames_never_panic() {
    fn prop(h: Hostile) -> bool {
        let mut mux = Mux::new();
        mux.pair("oky", None);
        let mine = mux
            .open_channel(ChannelOptions::new("no", None, 2))
            .unwrap();
        let mut ended = false;
        for f in &h.0 {
            let r = mux.handle_frame_with(f, &mut |_, _| Some(Accept::new(2)));
            while mux.poll_event().is_some() {}
            while mux.poll_frame().is_some() {}
            match r {
                Err(ProtomuxError::Destroyed) => assert!(ended, "Destroyed only after an error"),
                Err(_) => {
                    assert!(!ended);
                    ended = true;
                    assert!(mux.is_destroyed());
                    assert!(!mux.is_live(mine));
                }
                Ok(()) => assert!(!ended),
            }
            assert_eq!(
                mux.early_message_bytes(),
                0,
                "early messages outlived their frame"
            );
        }
        true
    }
    qc(3000).quickcheck(prop as fn(Hostile) -> bool);
}

// ---------------------------------------------------------------------------------------------
// Two honest sessions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    Open(bool, u8),
    Send(bool, u8, u8),
    Close(bool, u8),
    Cork(bool),
    Uncork(bool),
    /// Deliver up to n frames from one side.
    Deliver(bool, u8),
}

#[derive(Debug, Clone)]
struct Script(Vec<Op>);

impl Arbitrary for Script {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + below(g, 60);
        Script(
            (0..n)
                .map(|_| {
                    let side = bool::arbitrary(g);
                    match u8::arbitrary(g) % 10 {
                        0 | 1 => Op::Open(side, u8::arbitrary(g) % 4),
                        2..=4 => Op::Send(side, u8::arbitrary(g) % 4, u8::arbitrary(g) % 5),
                        5 => Op::Close(side, u8::arbitrary(g) % 4),
                        6 => Op::Cork(side),
                        7 => Op::Uncork(side),
                        _ => Op::Deliver(side, u8::arbitrary(g) % 4),
                    }
                })
                .collect(),
        )
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        // Drop one op at a time.
        let ops = self.0.clone();
        Box::new((0..ops.len()).map(move |i| {
            let mut v = ops.clone();
            v.remove(i);
            Script(v)
        }))
    }
}

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const TYPES: u32 = 4;

struct Peer {
    mux: Mux,
    /// Key → the live channel of it.
    open: BTreeMap<String, ChannelId>,
    /// Every channel's key, from its creation on.
    keys: BTreeMap<ChannelId, String>,
    /// Key → messages sent (type, body), in order.
    sent: BTreeMap<String, Vec<(u32, Vec<u8>)>>,
    /// Key → messages received.
    received: BTreeMap<String, Vec<(u32, Vec<u8>)>>,
    corks: u32,
    counter: u32,
}

impl Peer {
    fn new() -> Self {
        let mut mux = Mux::new();
        for k in KEYS {
            mux.pair(k, None);
        }
        Peer {
            mux,
            open: BTreeMap::new(),
            keys: BTreeMap::new(),
            sent: BTreeMap::new(),
            received: BTreeMap::new(),
            corks: 0,
            counter: 0,
        }
    }

    fn drain(&mut self, out: &mut VecDeque<Vec<u8>>) {
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Opened {
                    channel, protocol, ..
                } => {
                    let key = protocol;
                    self.keys.insert(channel, key.clone());
                    self.open.insert(key, channel);
                }
                MuxEvent::Message {
                    channel,
                    message_type,
                    body,
                } => {
                    let key = self.keys[&channel].clone();
                    self.received
                        .entry(key)
                        .or_default()
                        .push((message_type, body));
                }
                MuxEvent::Closed { channel, .. } => self.open.retain(|_, c| *c != channel),
            }
        }
        out.extend(std::iter::from_fn(|| self.mux.poll_frame()));
    }
}

fn is_subsequence(small: &[(u32, Vec<u8>)], big: &[(u32, Vec<u8>)]) -> bool {
    let mut it = big.iter();
    small.iter().all(|x| it.any(|y| y == x))
}

#[test]
fn two_sessions_agree() {
    fn prop(s: Script) -> bool {
        let mut peers = [Peer::new(), Peer::new()];
        let mut wires: [VecDeque<Vec<u8>>; 2] = [VecDeque::new(), VecDeque::new()]; // frames from side i
        let mut closed_any = false;
        let deliver =
            |peers: &mut [Peer; 2], wires: &mut [VecDeque<Vec<u8>>; 2], from: usize, n: usize| {
                for _ in 0..n {
                    let Some(f) = wires[from].pop_front() else {
                        break;
                    };
                    let to = 1 - from;
                    peers[to]
                        .mux
                        .handle_frame_with(&f, &mut |_, _| Some(Accept::new(TYPES)))
                        .unwrap_or_else(|e| panic!("honest frame refused: {e}"));
                    assert_eq!(peers[to].mux.early_message_bytes(), 0);
                    let (a, b) = peers.split_at_mut(1);
                    let p = if to == 0 { &mut a[0] } else { &mut b[0] };
                    p.drain(&mut wires[to]);
                }
            };
        for op in &s.0 {
            match *op {
                Op::Open(side, k) => {
                    let i = usize::from(side);
                    let key = KEYS[usize::from(k)];
                    if let Ok(ch) = peers[i]
                        .mux
                        .open_channel(ChannelOptions::new(key, None, TYPES))
                    {
                        peers[i].keys.insert(ch, key.to_string());
                        peers[i].open.insert(key.to_string(), ch);
                    }
                }
                Op::Send(side, k, t) => {
                    let i = usize::from(side);
                    let key = KEYS[usize::from(k)];
                    if let Some(&ch) = peers[i].open.get(key) {
                        peers[i].counter += 1;
                        let body = peers[i].counter.to_le_bytes()[..usize::from(t % 4)].to_vec();
                        let ty = u32::from(t) % TYPES;
                        peers[i].mux.send(ch, ty, &body).unwrap();
                        peers[i]
                            .sent
                            .entry(key.to_string())
                            .or_default()
                            .push((ty, body));
                    }
                }
                Op::Close(side, k) => {
                    let i = usize::from(side);
                    if let Some(&ch) = peers[i].open.get(KEYS[usize::from(k)]) {
                        peers[i].mux.close(ch);
                        closed_any = true;
                    }
                }
                Op::Cork(side) => {
                    let i = usize::from(side);
                    peers[i].mux.cork();
                    peers[i].corks += 1;
                }
                Op::Uncork(side) => {
                    let i = usize::from(side);
                    if peers[i].corks > 0 {
                        peers[i].mux.uncork();
                        peers[i].corks -= 1;
                    }
                }
                Op::Deliver(side, n) => {
                    deliver(&mut peers, &mut wires, usize::from(side), usize::from(n))
                }
            }
            for (p, w) in peers.iter_mut().zip(wires.iter_mut()) {
                p.drain(w);
            }
        }
        // Uncork everything and deliver until quiet.
        for (p, w) in peers.iter_mut().zip(wires.iter_mut()) {
            while p.corks > 0 {
                p.mux.uncork();
                p.corks -= 1;
            }
            p.drain(w);
        }
        while !wires[0].is_empty() || !wires[1].is_empty() {
            deliver(&mut peers, &mut wires, 0, usize::MAX);
            deliver(&mut peers, &mut wires, 1, usize::MAX);
        }
        for from in 0..2 {
            for (key, got) in &peers[1 - from].received {
                let sent = peers[from]
                    .sent
                    .get(key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                assert!(
                    is_subsequence(got, sent),
                    "{key}: received {got:?} of sent {sent:?}"
                );
                if !closed_any {
                    // Without closes, a message is lost only if its channel was rejected
                    // (both sides opened the key while the other's open was in flight).
                    assert!(got.len() <= sent.len());
                }
            }
        }
        true
    }
    qc(1500).quickcheck(prop as fn(Script) -> bool);
}

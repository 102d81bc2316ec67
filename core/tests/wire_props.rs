//! Property tests for `hdht_core::wire`: round trips, robustness against arbitrary and truncated
//! input, minimal `uint` encoding, and bounded allocation for hostile length prefixes.
//!
//! The number of cases per property can be raised with `QUICKCHECK_TESTS=<n>`.

mod prop_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use hdht_core::wire::{
    DecodeError, Message, Reader, Request, Response, Writer, MAX_ARRAY_LEN, MAX_SAFE_INTEGER,
    REQUEST_TYPE, RESPONSE_TYPE,
};
use prop_common::{arb_32, arb_addr4, arb_uint_boundaries, below, qc_discarding, UINT_BOUNDARIES};
use quickcheck::{Arbitrary, Gen, TestResult};

// ---------------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made by this thread inside a window.
// ---------------------------------------------------------------------------------------------

struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` unchanged; the bookkeeping touches only
// const-initialised thread-locals of `Cell` types, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(Cell::get))
}

/// What a decoder may allocate for an input of `n` bytes: a `Vec<u64>` of one element per input
/// byte is the worst legitimate case (`array<uint>` with 1-byte elements).
fn alloc_budget(n: usize) -> usize {
    8 * n + 64
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn arb_opt32(g: &mut Gen) -> Option<[u8; 32]> {
    bool::arbitrary(g).then(|| arb_32(g))
}

/// Up to 1500 bytes: mostly short, sometimes around the 1→3-byte length boundary (253), rarely
/// a full datagram's worth.
fn arb_bytes(g: &mut Gen) -> Vec<u8> {
    let len = match below(g, 8) {
        0..=4 => below(g, g.size() + 1),
        5 | 6 => 245 + below(g, 20),
        _ => below(g, 1501),
    };
    (0..len).map(|_| u8::arbitrary(g)).collect()
}

fn arb_opt_bytes(g: &mut Gen) -> Option<Vec<u8>> {
    bool::arbitrary(g).then(|| arb_bytes(g))
}

fn arb_addrs(g: &mut Gen) -> Vec<SocketAddrV4> {
    let n = match below(g, 8) {
        0..=2 => 0,
        3..=6 => below(g, 21),
        // More than 252 nodes needs a 3-byte count; the codec must handle it even though dht-rpc
        // never sends more than k = 20.
        _ => below(g, 300),
    };
    (0..n).map(|_| arb_addr4(g)).collect()
}

/// A dht-rpc request with bounded value length.
#[derive(Debug, Clone)]
struct ArbRequest(Request);

impl Arbitrary for ArbRequest {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbRequest(Request {
            tid: u16::arbitrary(g),
            to: arb_addr4(g),
            id: arb_opt32(g),
            token: arb_opt32(g),
            internal: bool::arbitrary(g),
            command: arb_uint_boundaries(g),
            target: arb_opt32(g),
            value: arb_opt_bytes(g),
        })
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let r = &self.0;
        let mut out = Vec::new();
        let mut push = |f: &dyn Fn(&mut Request)| {
            let mut c = r.clone();
            f(&mut c);
            if c != *r {
                out.push(ArbRequest(c));
            }
        };
        push(&|c| c.id = None);
        push(&|c| c.token = None);
        push(&|c| c.target = None);
        push(&|c| c.value = None);
        push(&|c| c.internal = false);
        push(&|c| c.tid = 0);
        push(&|c| c.command = 0);
        push(&|c| c.command /= 2);
        push(&|c| c.to = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        push(&|c| {
            if let Some(v) = &mut c.value {
                v.truncate(v.len() / 2)
            }
        });
        Box::new(out.into_iter())
    }
}

/// A dht-rpc response with bounded value and closer-node lengths.
#[derive(Debug, Clone)]
struct ArbResponse(Response);

impl Arbitrary for ArbResponse {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbResponse(Response {
            tid: u16::arbitrary(g),
            to: arb_addr4(g),
            id: arb_opt32(g),
            token: arb_opt32(g),
            closer_nodes: arb_addrs(g),
            error: if bool::arbitrary(g) {
                0
            } else {
                arb_uint_boundaries(g)
            },
            value: arb_opt_bytes(g),
        })
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let r = &self.0;
        let mut out = Vec::new();
        let mut push = |f: &dyn Fn(&mut Response)| {
            let mut c = r.clone();
            f(&mut c);
            if c != *r {
                out.push(ArbResponse(c));
            }
        };
        push(&|c| c.id = None);
        push(&|c| c.token = None);
        push(&|c| c.closer_nodes.clear());
        push(&|c| {
            let n = c.closer_nodes.len() / 2;
            c.closer_nodes.truncate(n)
        });
        push(&|c| c.value = None);
        push(&|c| c.error = 0);
        push(&|c| c.error /= 2);
        push(&|c| c.tid = 0);
        push(&|c| c.to = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        push(&|c| {
            if let Some(v) = &mut c.value {
                v.truncate(v.len() / 2)
            }
        });
        Box::new(out.into_iter())
    }
}

/// Either message kind.
#[derive(Debug, Clone)]
struct ArbMessage(Message);

impl Arbitrary for ArbMessage {
    fn arbitrary(g: &mut Gen) -> Self {
        ArbMessage(if bool::arbitrary(g) {
            Message::Request(ArbRequest::arbitrary(g).0)
        } else {
            Message::Response(ArbResponse::arbitrary(g).0)
        })
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        match &self.0 {
            Message::Request(r) => Box::new(
                ArbRequest(r.clone())
                    .shrink()
                    .map(|r| ArbMessage(Message::Request(r.0))),
            ),
            Message::Response(r) => Box::new(
                ArbResponse(r.clone())
                    .shrink()
                    .map(|r| ArbMessage(Message::Response(r.0))),
            ),
        }
    }
}

/// Hostile datagrams: pure noise, a plausible header followed by noise, or a valid encoding
/// with some bytes changed, inserted, removed, or cut off.
#[derive(Debug, Clone)]
struct ArbDatagram(Vec<u8>);

impl Arbitrary for ArbDatagram {
    fn arbitrary(g: &mut Gen) -> Self {
        let bytes = match below(g, 4) {
            0 => Vec::<u8>::arbitrary(g),
            1 => {
                let mut b = vec![*g.choose(&[REQUEST_TYPE, RESPONSE_TYPE]).unwrap()];
                // Flags: usually small, sometimes a non-minimal or huge uint form.
                match below(g, 4) {
                    0 => b.extend_from_slice(&[0xfd, u8::arbitrary(g) & 0x3f, 0]),
                    1 => b.push(u8::arbitrary(g)),
                    _ => b.push(u8::arbitrary(g) & 0x1f),
                }
                b.extend(Vec::<u8>::arbitrary(g));
                b
            }
            _ => {
                let mut b = encode(&ArbMessage::arbitrary(g).0);
                for _ in 0..=below(g, 4) {
                    if b.is_empty() {
                        break;
                    }
                    let i = below(g, b.len());
                    match below(g, 5) {
                        0 => b[i] = u8::arbitrary(g),
                        1 => b[i] ^= 1 << below(g, 8),
                        2 => b.insert(i, *g.choose(&[0x00, 0xfc, 0xfd, 0xfe, 0xff]).unwrap()),
                        3 => {
                            b.remove(i);
                        }
                        _ => b.truncate(i),
                    }
                }
                b
            }
        };
        ArbDatagram(bytes)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(ArbDatagram))
    }
}

/// An input buffer and a script of `Reader` calls to run over it.
#[derive(Debug, Clone)]
struct ReaderScript {
    input: Vec<u8>,
    ops: Vec<(u8, usize)>,
}

impl Arbitrary for ReaderScript {
    fn arbitrary(g: &mut Gen) -> Self {
        let input = if bool::arbitrary(g) {
            Vec::<u8>::arbitrary(g)
        } else {
            // Bias towards uint prefixes so the multi-byte paths are taken often.
            (0..below(g, g.size() + 1))
                .map(|_| {
                    let any = u8::arbitrary(g);
                    *g.choose(&[0x00, 0x01, 0x06, 0xfc, 0xfd, 0xfe, 0xff, any])
                        .unwrap()
                })
                .collect()
        };
        let ops = (0..below(g, 24))
            .map(|_| {
                let n = match below(g, 3) {
                    0 => usize::arbitrary(g),
                    _ => below(g, 40),
                };
                (u8::arbitrary(g), n)
            })
            .collect();
        ReaderScript { input, ops }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let ops = self.ops.clone();
        let input = self.input.clone();
        Box::new(
            self.input
                .shrink()
                .map(move |input| ReaderScript {
                    input,
                    ops: ops.clone(),
                })
                .chain(self.ops.shrink().map(move |ops| ReaderScript {
                    input: input.clone(),
                    ops,
                })),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

fn encoded_len(m: &Message) -> usize {
    match m {
        Message::Request(r) => r.encoded_len(),
        Message::Response(r) => r.encoded_len(),
    }
}

fn write(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut Writer::new(&mut out));
    out
}

/// The size `uint` takes on the wire given its prefix byte.
fn uint_width(prefix: u8) -> usize {
    match prefix {
        0xfd => 3,
        0xfe => 5,
        0xff => 9,
        _ => 1,
    }
}

/// The minimal `uint` width for `v`, straight from the spec table (§1.1).
fn minimal_uint_width(v: u64) -> usize {
    if v <= 0xfc {
        1
    } else if v <= 0xffff {
        3
    } else if v <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Full check that `v` encodes minimally and round-trips.
fn check_uint(v: u64) -> Result<(), String> {
    let b = write(|w| w.uint(v));
    if b.len() != minimal_uint_width(v) {
        return Err(format!(
            "{v}: {} bytes, expected {}",
            b.len(),
            minimal_uint_width(v)
        ));
    }
    let expected_prefix = match b.len() {
        1 => v as u8,
        3 => 0xfd,
        5 => 0xfe,
        _ => 0xff,
    };
    if b[0] != expected_prefix {
        return Err(format!("{v}: prefix {:#04x}", b[0]));
    }
    // The payload is the value in LE, so the bytes are fully determined.
    if b.len() > 1 && b[1..] != v.to_le_bytes()[..b.len() - 1] {
        return Err(format!("{v}: payload {:02x?}", &b[1..]));
    }
    let mut r = Reader::new(&b);
    match r.uint() {
        Ok(got) if got == v && r.remaining().is_empty() => Ok(()),
        other => Err(format!(
            "{v}: decoded {other:?}, {} bytes left",
            r.remaining().len()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn request_roundtrip() {
    fn prop(r: ArbRequest) -> bool {
        let r = r.0;
        let bytes = r.to_bytes();
        assert_eq!(r.encoded_len(), bytes.len(), "encoded_len for {r:?}");
        assert_eq!(bytes[0], REQUEST_TYPE);
        assert_eq!(u64::from(bytes[1]), r.flags(), "flags byte");
        // encode() appends.
        let mut out = vec![0xaa, 0xbb];
        r.encode(&mut out);
        assert_eq!(&out[..2], &[0xaa, 0xbb]);
        assert_eq!(&out[2..], &bytes[..]);
        Message::decode(&bytes) == Ok(Message::Request(r))
    }
    qc_discarding(2000).quickcheck(prop as fn(ArbRequest) -> bool);
}

#[test]
fn response_roundtrip() {
    fn prop(r: ArbResponse) -> bool {
        let r = r.0;
        let bytes = r.to_bytes();
        assert_eq!(r.encoded_len(), bytes.len(), "encoded_len for {r:?}");
        assert_eq!(bytes[0], RESPONSE_TYPE);
        assert_eq!(u64::from(bytes[1]), r.flags(), "flags byte");
        let mut out = vec![0xaa];
        r.encode(&mut out);
        assert_eq!(&out[1..], &bytes[..]);
        Message::decode(&bytes) == Ok(Message::Response(r))
    }
    qc_discarding(2000).quickcheck(prop as fn(ArbResponse) -> bool);
}

#[test]
fn trailing_bytes_are_ignored() {
    fn prop(m: ArbMessage, tail: Vec<u8>) -> bool {
        let mut bytes = encode(&m.0);
        bytes.extend_from_slice(&tail);
        Message::decode(&bytes) == Ok(m.0)
    }
    qc_discarding(1000).quickcheck(prop as fn(ArbMessage, Vec<u8>) -> bool);
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_an_error() {
    fn prop(m: ArbMessage) -> bool {
        let bytes = encode(&m.0);
        for cut in 0..bytes.len() {
            let got = Message::decode(&bytes[..cut]);
            let want = if cut < 2 {
                DecodeError::TooShort
            } else {
                DecodeError::OutOfBounds
            };
            if got != Err(want) {
                panic!(
                    "decode of {cut}/{} bytes of {:?} gave {got:?}",
                    bytes.len(),
                    m.0
                );
            }
        }
        true
    }
    qc_discarding(500).quickcheck(prop as fn(ArbMessage) -> bool);
}

// ---------------------------------------------------------------------------------------------
// Arbitrary input never panics, and what decodes is consistent
// ---------------------------------------------------------------------------------------------

fn check_datagram(bytes: &[u8]) -> TestResult {
    let (res, largest) = largest_alloc_during(|| Message::decode(bytes));
    if largest > alloc_budget(bytes.len()) {
        return TestResult::error(format!(
            "decoding {} bytes allocated {largest} bytes at once",
            bytes.len()
        ));
    }
    match res {
        Err(_) => TestResult::passed(),
        Ok(m) => {
            // The first byte decides the kind.
            let kind_ok = matches!(
                (&m, bytes[0]),
                (Message::Request(_), REQUEST_TYPE) | (Message::Response(_), RESPONSE_TYPE)
            );
            if !kind_ok {
                return TestResult::error(format!("type byte {:#04x} decoded as {m:?}", bytes[0]));
            }
            // The canonical re-encoding decodes to the same message, and is never longer than
            // the input (a successful decode never reads past the end).
            let canon = encode(&m);
            if canon.len() != encoded_len(&m) {
                return TestResult::error("encoded_len disagrees with encode");
            }
            if canon.len() > bytes.len() {
                return TestResult::error(format!(
                    "canonical form ({} bytes) is longer than the input ({} bytes)",
                    canon.len(),
                    bytes.len()
                ));
            }
            if Message::decode(&canon).as_ref() != Ok(&m) {
                return TestResult::error(format!("re-encoding of {m:?} decodes differently"));
            }
            TestResult::passed()
        }
    }
}

#[test]
fn decode_arbitrary_bytes_never_panics() {
    fn prop(b: Vec<u8>) -> TestResult {
        check_datagram(&b)
    }
    qc_discarding(20_000).quickcheck(prop as fn(Vec<u8>) -> TestResult);
}

#[test]
fn decode_hostile_datagrams_never_panics() {
    fn prop(d: ArbDatagram) -> TestResult {
        check_datagram(&d.0)
    }
    qc_discarding(20_000).quickcheck(prop as fn(ArbDatagram) -> TestResult);
}

/// Runs one `Reader` call chosen by `op` and checks what it consumed against what it returned.
fn run_reader_op(r: &mut Reader<'_>, op: u8, n: usize) -> Result<(), String> {
    let before = r.remaining();
    let width = |r: &Reader<'_>| before.len() - r.remaining().len();
    let start = before.first().copied();
    match op % 15 {
        0 => match r.bytes(n) {
            Ok(b) => {
                if b.len() != n || width(r) != n || b != &before[..n] {
                    return Err(format!("bytes({n}) returned {} bytes", b.len()));
                }
            }
            Err(_) => {
                if n <= before.len() {
                    return Err(format!("bytes({n}) failed with {} left", before.len()));
                }
                if width(r) != 0 {
                    return Err("failed bytes() consumed input".into());
                }
            }
        },
        1 => {
            if let Ok(v) = r.u8() {
                if width(r) != 1 || v != before[0] {
                    return Err("u8".into());
                }
            }
        }
        2 => {
            if let Ok(v) = r.u16() {
                if width(r) != 2 || write(|w| w.u16(v)) != before[..2] {
                    return Err("u16".into());
                }
            }
        }
        3 => {
            if let Ok(v) = r.u32() {
                if width(r) != 4 || write(|w| w.u32(v)) != before[..4] {
                    return Err("u32".into());
                }
            }
        }
        4 => match r.u64() {
            Ok(v) => {
                if width(r) != 8 || v > MAX_SAFE_INTEGER || write(|w| w.u64(v)) != before[..8] {
                    return Err("u64".into());
                }
            }
            Err(DecodeError::IntegerTooLarge) => {
                let raw = u64::from_le_bytes(before[..8].try_into().unwrap());
                if raw <= MAX_SAFE_INTEGER {
                    return Err(format!("u64 {raw} rejected as too large"));
                }
            }
            Err(_) => {
                if before.len() >= 8 {
                    return Err("u64 failed with 8 bytes available".into());
                }
            }
        },
        5 => match r.uint() {
            Ok(v) => {
                let w = uint_width(start.unwrap());
                if width(r) != w || v > MAX_SAFE_INTEGER {
                    return Err(format!(
                        "uint {v} consumed {} bytes, prefix says {w}",
                        width(r)
                    ));
                }
                // Lenient decoding: a non-minimal form decodes to the value; the minimal
                // re-encoding is never longer than what was read.
                if minimal_uint_width(v) > w {
                    return Err(format!("uint {v} decoded from a {w}-byte form"));
                }
            }
            Err(DecodeError::IntegerTooLarge) if start == Some(0xff) => {}
            Err(e) => {
                if let Some(p) = start {
                    if before.len() >= uint_width(p) {
                        return Err(format!(
                            "uint failed with {e:?} though enough bytes were there"
                        ));
                    }
                }
            }
        },
        6 => {
            if let Ok(v) = r.bool() {
                if width(r) != 1 || v != (before[0] == 1) {
                    return Err("bool".into());
                }
            }
        }
        7 | 8 => {
            let res = if op % 15 == 7 { r.buffer() } else { r.utf8() };
            if let Ok(b) = res {
                let p = uint_width(start.unwrap());
                if width(r) != p + b.len() || b != &before[p..p + b.len()] {
                    return Err("buffer".into());
                }
            }
        }
        9 => {
            if let Ok(v) = r.fixed32() {
                if width(r) != 32 || v[..] != before[..32] {
                    return Err("fixed32".into());
                }
            }
        }
        10 => {
            if let Ok(a) = r.ipv4() {
                if width(r) != 6 || write(|w| w.ipv4(&a)) != before[..6] {
                    return Err("ipv4".into());
                }
            }
        }
        11 => {
            let min = n % 8;
            if let Ok(len) = r.array_len(min) {
                if len as u64 > MAX_ARRAY_LEN {
                    return Err(format!("array_len {len} above the limit"));
                }
                if min > 0 && len * min > r.remaining().len() {
                    return Err(format!(
                        "array_len {len} × {min} exceeds the {} bytes left",
                        r.remaining().len()
                    ));
                }
            }
        }
        12 => {
            let (res, largest) = largest_alloc_during(|| r.ipv4_array());
            if largest > alloc_budget(before.len()) {
                return Err(format!(
                    "ipv4_array allocated {largest} for {} bytes",
                    before.len()
                ));
            }
            if let Ok(v) = res {
                let p = uint_width(start.unwrap());
                if width(r) != p + 6 * v.len() {
                    return Err("ipv4_array width".into());
                }
                if write(|w| w.ipv4_array(&v))[minimal_uint_width(v.len() as u64)..]
                    != before[p..width(r)]
                {
                    return Err("ipv4_array elements".into());
                }
            }
        }
        13 => {
            let (res, largest) = largest_alloc_during(|| r.uint_array());
            if largest > alloc_budget(before.len()) {
                return Err(format!(
                    "uint_array allocated {largest} for {} bytes",
                    before.len()
                ));
            }
            if let Ok(v) = res {
                if v.iter().any(|&x| x > MAX_SAFE_INTEGER) {
                    return Err("uint_array element above 2^53-1".into());
                }
                if width(r) < 1 + v.len() {
                    return Err("uint_array consumed fewer bytes than elements".into());
                }
            }
        }
        _ => {
            let _ = r.remaining();
        }
    }
    if !before.ends_with(r.remaining()) || r.remaining().len() > before.len() {
        return Err("remaining() is not a suffix of the previous remaining()".into());
    }
    Ok(())
}

#[test]
fn reader_methods_never_panic() {
    fn prop(s: ReaderScript) -> TestResult {
        let mut r = Reader::new(&s.input);
        for &(op, n) in &s.ops {
            if let Err(e) = run_reader_op(&mut r, op, n) {
                return TestResult::error(format!("op {} (n = {n}): {e}", op % 15));
            }
        }
        TestResult::passed()
    }
    qc_discarding(20_000).quickcheck(prop as fn(ReaderScript) -> TestResult);
}

/// Every Reader method on every short input, exhaustively for 0..=2 bytes.
#[test]
fn reader_methods_on_tiny_inputs() {
    let mut inputs: Vec<Vec<u8>> = vec![vec![]];
    for a in 0..=255u8 {
        inputs.push(vec![a]);
        for b in [0u8, 1, 0x7f, 0xfc, 0xfd, 0xfe, 0xff] {
            inputs.push(vec![a, b]);
        }
    }
    for input in &inputs {
        for op in 0..15u8 {
            for n in [0usize, 1, 2, 3, usize::MAX] {
                let mut r = Reader::new(input);
                run_reader_op(&mut r, op, n)
                    .unwrap_or_else(|e| panic!("{input:02x?} op {op}: {e}"));
            }
        }
        assert!(
            Message::decode(input).is_err(),
            "{input:02x?} is too short to be a message"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// uint
// ---------------------------------------------------------------------------------------------

#[test]
fn uint_minimal_and_roundtrips() {
    fn prop(v: u64, bits: u8, pick: u8) -> TestResult {
        // Spread over every width up to 53 bits, plus the boundaries.
        let v = match pick % 3 {
            0 => UINT_BOUNDARIES[v as usize % UINT_BOUNDARIES.len()],
            _ => v & ((1u64 << (u32::from(bits) % 53 + 1)) - 1),
        };
        match check_uint(v) {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(e),
        }
    }
    qc_discarding(20_000).quickcheck(prop as fn(u64, u8, u8) -> TestResult);
}

#[test]
fn uint_exhaustive_near_boundaries() {
    for v in 0..=0x2_0000u64 {
        check_uint(v).unwrap();
    }
    for base in [0xffff_ffffu64, 1 << 40, MAX_SAFE_INTEGER - 0x1_0000] {
        for v in base - 0x1000..=base + 0x1000 {
            check_uint(v).unwrap();
        }
    }
    for v in MAX_SAFE_INTEGER - 0x1000..=MAX_SAFE_INTEGER {
        check_uint(v).unwrap();
    }
}

#[test]
fn uint_non_minimal_forms_decode_leniently() {
    fn prop(v: u64) -> bool {
        let v = v & MAX_SAFE_INTEGER;
        let mut forms: Vec<Vec<u8>> = Vec::new();
        if v <= 0xffff {
            forms.push([&[0xfd][..], &(v as u16).to_le_bytes()].concat());
        }
        if v <= 0xffff_ffff {
            forms.push([&[0xfe][..], &(v as u32).to_le_bytes()].concat());
        }
        forms.push([&[0xff][..], &v.to_le_bytes()].concat());
        forms.iter().all(|f| {
            let mut r = Reader::new(f);
            r.uint() == Ok(v) && r.remaining().is_empty()
        })
    }
    qc_discarding(5_000).quickcheck(prop as fn(u64) -> bool);
    assert!(prop(0) && prop(0xfc) && prop(0xffff) && prop(MAX_SAFE_INTEGER));
}

#[test]
fn uint_above_safe_integer_is_rejected() {
    fn prop(v: u64) -> bool {
        let v = v | (1 << 53); // always above 2^53 - 1
        let b = [&[0xff][..], &v.to_le_bytes()].concat();
        Reader::new(&b).uint() == Err(DecodeError::IntegerTooLarge)
            && Reader::new(&b[1..]).u64() == Err(DecodeError::IntegerTooLarge)
    }
    qc_discarding(2_000).quickcheck(prop as fn(u64) -> bool);
    assert!(prop(0) && prop(u64::MAX));
    // 2^53 exactly (the vector `uint64_above_2pow53`).
    let b = hex::decode("ff0000000000002000").unwrap();
    assert_eq!(Reader::new(&b).uint(), Err(DecodeError::IntegerTooLarge));
}

// ---------------------------------------------------------------------------------------------
// Hostile array lengths
// ---------------------------------------------------------------------------------------------

#[test]
fn huge_array_length_is_rejected_quickly_without_allocating() {
    // fe ff ff ff 0f = 0x0fffffff elements (above the 0x100000 limit), then
    // fe 00 00 10 00 = exactly the limit, ff … = 2^53-1, and a 0xfc count with too few bytes.
    let prefixes: &[(&str, DecodeError)] = &[
        ("feffffff0f", DecodeError::ArrayTooLong(0x0fff_ffff)),
        ("feffffffff", DecodeError::ArrayTooLong(0xffff_ffff)),
        (
            "ffffffffffffff1f00",
            DecodeError::ArrayTooLong(MAX_SAFE_INTEGER),
        ),
        ("fe01001000", DecodeError::ArrayTooLong(MAX_ARRAY_LEN + 1)),
        ("fe00001000", DecodeError::OutOfBounds),
        ("fc", DecodeError::OutOfBounds),
    ];
    for (h, want) in prefixes {
        let mut input = hex::decode(h).unwrap();
        input.extend_from_slice(&[7u8; 64]);
        let t = Instant::now();
        let ((a, b), largest) = largest_alloc_during(|| {
            (
                Reader::new(&input).ipv4_array(),
                Reader::new(&input).uint_array(),
            )
        });
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{h}: took {:?}",
            t.elapsed()
        );
        assert!(
            largest <= alloc_budget(input.len()),
            "{h}: allocated {largest} bytes"
        );
        assert_eq!(a, Err(*want), "{h}: ipv4_array");
        assert_eq!(b, Err(*want), "{h}: uint_array");

        // The same prefix as a response's closer-node count.
        let mut msg = hex::decode("13040000").unwrap(); // response, flags = closerNodes, tid 0
        msg.extend_from_slice(&[10, 0, 0, 1, 0x49, 0xc2]); // to
        msg.extend_from_slice(&input);
        let t = Instant::now();
        let (res, largest) = largest_alloc_during(|| Message::decode(&msg));
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{h}: took {:?}",
            t.elapsed()
        );
        assert!(
            largest <= alloc_budget(msg.len()),
            "{h}: allocated {largest} bytes"
        );
        assert_eq!(res, Err(*want), "{h}: response closer nodes");
    }

    // A count just within what the input can hold decodes; one more is refused up front.
    let mut ok = vec![3u8];
    ok.extend_from_slice(&[1u8; 18]);
    assert_eq!(Reader::new(&ok).ipv4_array().map(|v| v.len()), Ok(3));
    ok[0] = 4;
    assert_eq!(Reader::new(&ok).ipv4_array(), Err(DecodeError::OutOfBounds));
}

#[test]
fn array_length_never_allocates_beyond_input() {
    fn prop(count: u64, body: Vec<u8>) -> TestResult {
        let count = count & MAX_SAFE_INTEGER;
        let mut input = write(|w| w.uint(count));
        input.extend_from_slice(&body);
        let ((a, b), largest) = largest_alloc_during(|| {
            (
                Reader::new(&input).ipv4_array(),
                Reader::new(&input).uint_array(),
            )
        });
        if largest > alloc_budget(input.len()) {
            return TestResult::error(format!("count {count}: allocated {largest} bytes"));
        }
        if count > MAX_ARRAY_LEN
            && (a != Err(DecodeError::ArrayTooLong(count))
                || b != Err(DecodeError::ArrayTooLong(count)))
        {
            return TestResult::error(format!("count {count}: {a:?} / {b:?}"));
        }
        TestResult::passed()
    }
    qc_discarding(5_000).quickcheck(prop as fn(u64, Vec<u8>) -> TestResult);
}

// ---------------------------------------------------------------------------------------------
// Primitive round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn primitive_roundtrips() {
    fn prop(n: u64, buf: Vec<u8>, s: String, addrs: Vec<(u32, u16)>, nums: Vec<u64>) -> bool {
        let n = n & MAX_SAFE_INTEGER;
        let addrs: Vec<SocketAddrV4> = addrs
            .into_iter()
            .map(|(ip, p)| SocketAddrV4::new(Ipv4Addr::from(ip), p))
            .collect();
        let nums: Vec<u64> = nums.into_iter().map(|x| x & MAX_SAFE_INTEGER).collect();
        let mut fixed = [0u8; 32];
        for (i, b) in buf.iter().take(32).enumerate() {
            fixed[i] = *b;
        }
        let bytes = write(|w| {
            w.uint(n);
            w.u64(n);
            w.buffer(&buf);
            w.utf8(&s);
            w.fixed32(&fixed);
            w.ipv4_array(&addrs);
            w.uint_array(&nums);
            w.bool(true);
            w.bool(false);
        });
        let mut r = Reader::new(&bytes);
        r.uint() == Ok(n)
            && r.u64() == Ok(n)
            && r.buffer() == Ok(&buf[..])
            && r.utf8() == Ok(s.as_bytes())
            && r.fixed32() == Ok(fixed)
            && r.ipv4_array().as_ref() == Ok(&addrs)
            && r.uint_array().as_ref() == Ok(&nums)
            && r.bool() == Ok(true)
            && r.bool() == Ok(false)
            && r.remaining().is_empty()
    }
    qc_discarding(2_000)
        .quickcheck(prop as fn(u64, Vec<u8>, String, Vec<(u32, u16)>, Vec<u64>) -> bool);
}

/// The allocation tracker itself sees allocations (so the bounds above are not vacuous).
#[test]
fn allocation_tracker_sees_allocations() {
    let (v, largest) = largest_alloc_during(|| vec![0u8; 4096]);
    assert_eq!(v.len(), 4096);
    assert!(largest >= 4096, "tracker saw only {largest} bytes");
    let ((), none) = largest_alloc_during(|| ());
    assert_eq!(none, 0);
}

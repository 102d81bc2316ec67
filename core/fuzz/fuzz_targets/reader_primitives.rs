//! Drives every `Reader` method from the input. Byte 0 is the number of script bytes `k`;
//! bytes 1..=k are the script (one method per byte, plus a size argument for `bytes` and
//! `array_len`); the rest is what the reader reads. Each successful read is checked against
//! what it consumed.
#![no_main]

use hdht_core::wire::{DecodeError, Reader, Writer, MAX_ARRAY_LEN, MAX_SAFE_INTEGER};
use libfuzzer_sys::fuzz_target;

fn write(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut Writer::new(&mut out));
    out
}

fn uint_width(prefix: u8) -> usize {
    match prefix {
        0xfd => 3,
        0xfe => 5,
        0xff => 9,
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k).min(rest.len());
    let (script, input) = rest.split_at(k);
    let mut r = Reader::new(input);
    let mut ops = script.iter().copied();
    while let Some(op) = ops.next() {
        let before = r.remaining();
        let start = before.first().copied();
        let consumed = |r: &Reader<'_>| before.len() - r.remaining().len();
        match op % 14 {
            0 => {
                // Sizes 0..=254 from the next script byte, 255 meaning "huge".
                let n = match ops.next() {
                    Some(255) | None => usize::MAX,
                    Some(n) => usize::from(n),
                };
                match r.bytes(n) {
                    Ok(b) => assert!(b.len() == n && consumed(&r) == n && b == &before[..n]),
                    Err(_) => assert!(n > before.len() && consumed(&r) == 0),
                }
            }
            1 => {
                if let Ok(v) = r.u8() {
                    assert_eq!((consumed(&r), v), (1, before[0]));
                }
            }
            2 => {
                if let Ok(v) = r.u16() {
                    assert_eq!(write(|w| w.u16(v)), before[..2]);
                }
            }
            3 => {
                if let Ok(v) = r.u32() {
                    assert_eq!(write(|w| w.u32(v)), before[..4]);
                }
            }
            4 => match r.u64() {
                Ok(v) => {
                    assert!(v <= MAX_SAFE_INTEGER);
                    assert_eq!(write(|w| w.u64(v)), before[..8]);
                }
                Err(DecodeError::IntegerTooLarge) => {
                    assert!(u64::from_le_bytes(before[..8].try_into().unwrap()) > MAX_SAFE_INTEGER)
                }
                Err(_) => assert!(before.len() < 8),
            },
            5 => match r.uint() {
                Ok(v) => {
                    assert!(v <= MAX_SAFE_INTEGER);
                    let w = uint_width(start.unwrap());
                    assert_eq!(consumed(&r), w);
                    // The minimal form is never longer than the form that was read.
                    assert!(write(|wr| wr.uint(v)).len() <= w);
                }
                Err(DecodeError::IntegerTooLarge) => assert_eq!(start, Some(0xff)),
                Err(_) => assert!(start.map_or(true, |p| before.len() < uint_width(p))),
            },
            6 => {
                if let Ok(v) = r.bool() {
                    assert_eq!(v, before[0] == 1);
                }
            }
            7 | 8 => {
                let res = if op % 14 == 7 { r.buffer() } else { r.utf8() };
                if let Ok(b) = res {
                    let p = uint_width(start.unwrap());
                    assert_eq!(consumed(&r), p + b.len());
                    assert_eq!(b, &before[p..p + b.len()]);
                }
            }
            9 => {
                if let Ok(v) = r.fixed32() {
                    assert_eq!(&v[..], &before[..32]);
                }
            }
            10 => {
                if let Ok(a) = r.ipv4() {
                    assert_eq!(write(|w| w.ipv4(&a)), before[..6]);
                }
            }
            11 => {
                let min = usize::from(ops.next().unwrap_or(0) % 8);
                if let Ok(len) = r.array_len(min) {
                    assert!(len as u64 <= MAX_ARRAY_LEN);
                    assert!(min == 0 || len * min <= r.remaining().len());
                }
            }
            12 => {
                if let Ok(v) = r.ipv4_array() {
                    let p = uint_width(start.unwrap());
                    assert_eq!(consumed(&r), p + 6 * v.len());
                    let enc = write(|w| w.ipv4_array(&v));
                    assert_eq!(enc[enc.len() - 6 * v.len()..], before[p..consumed(&r)]);
                }
            }
            _ => {
                if let Ok(v) = r.uint_array() {
                    assert!(v.iter().all(|&x| x <= MAX_SAFE_INTEGER));
                    assert!(consumed(&r) >= 1 + v.len());
                    // Re-encoding and decoding gives the same values.
                    let enc = write(|w| w.uint_array(&v));
                    assert_eq!(Reader::new(&enc).uint_array(), Ok(v));
                }
            }
        }
        assert!(before.ends_with(r.remaining()));
    }
});

//! Records (`UdxStream::write_record`): a record never shares a packet with part of another
//! (records larger than a packet start one; whole small records are packed together), whatever
//! the loss, retransmissions or MTU probes — so for bulk data a receiver modelled on
//! udx-native's framed read mode (hyperdht streams are `framed: true`) stays framed, handing
//! each whole frame over in one callback instead of one per packet.

mod udx_common;

use std::collections::BTreeMap;

use hdht_core::udx::{Flags, Packet, StreamConfig};
use udx_common::*;

/// Record sizes as a bulk secret stream writes them: the 59-byte header frame, 64 KiB data
/// frames, a keep-alive (20 bytes) and sizes around one packet — no two small ones in a row.
const BULK: [usize; 9] = [59, 65_556, 20, 65_556, 1_452, 1_453, 3_000, 1_000, 65_556];

/// Writes every record (as the send buffer allows) and runs the pair to the end; returns the
/// data, the record ends (stream offsets) and A's DATA packets as (seq, payload) in seq order
/// (first transmissions; retransmissions must match them).
fn run(
    link: LinkConfig,
    sizes: &[usize],
    rounds: usize,
    seed: u64,
) -> (Vec<u8>, Vec<u64>, Vec<Vec<u8>>) {
    let mut pair = Pair::new(seed, link, StreamConfig::default());
    pair.record = true;
    let records: Vec<Vec<u8>> = (0..rounds)
        .flat_map(|r| sizes.iter().enumerate().map(move |(i, &n)| (r, i, n)))
        .map(|(r, i, n)| {
            // A frame as secret-stream writes it: uint24 LE length of the body, then the body.
            let body = n - 3;
            let mut f = vec![
                (body & 0xff) as u8,
                (body >> 8 & 0xff) as u8,
                (body >> 16) as u8,
            ];
            f.extend(pattern(body, (r * 100 + i) as u64));
            f
        })
        .collect();
    let data: Vec<u8> = records.concat();
    let mut ends = Vec::new();
    let mut offset = 0u64;
    let mut next = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let t0 = pair.now;
    while got.len() < data.len() {
        while next < records.len() && pair.a.send_capacity() >= records[next].len() {
            assert_eq!(
                pair.a.write_record(&records[next]).expect("write"),
                records[next].len()
            );
            offset += records[next].len() as u64;
            ends.push(offset);
            next += 1;
        }
        if next == records.len() {
            pair.a.end().ok();
        }
        assert!(
            pair.step(),
            "stalled at {} of {} bytes",
            got.len(),
            data.len()
        );
        while let Ok(n) = pair.b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!((pair.now - t0).as_secs_f64() < 120.0, "too slow");
    }
    assert_eq!(got, data, "the stream arrives intact and in order");

    let mut packets: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let first_seq = pair
        .log
        .iter()
        .filter(|(_, side, _)| *side == Side::A)
        .filter_map(|(_, _, b)| Packet::decode(b).ok())
        .find(|p| p.header.flags.contains(Flags::DATA))
        .map(|p| p.header.seq)
        .expect("data packets");
    for (_, side, bytes) in &pair.log {
        let Ok(p) = Packet::decode(bytes) else {
            continue;
        };
        if *side != Side::A || !p.header.flags.contains(Flags::DATA) {
            continue;
        }
        let key = p.header.seq.wrapping_sub(first_seq);
        match packets.get(&key) {
            Some(prev) => assert_eq!(
                prev.as_slice(),
                p.payload,
                "a retransmission carries the same bytes"
            ),
            None => {
                packets.insert(key, p.payload.to_vec());
            }
        }
    }
    (data, ends, packets.into_values().collect())
}

/// udx-native's `on_udx_stream_read` in framed mode (binding.cc): per in-order packet, the
/// first packet of a frame reads its uint24 length; a packet holding more than the rest of the
/// current frame drops the stream to "interactive" (a callback per packet) for good. Returns
/// the number of callbacks, or `None` if it left framed mode.
fn framed_callbacks(packets: &[Vec<u8>]) -> Option<usize> {
    const READ_BUF: usize = 65_536 + 2048;
    const MTU: usize = 1500;
    let mut frame_len: Option<usize> = None;
    let mut read = 0usize;
    let mut callbacks = 0;
    for p in packets {
        if frame_len.is_none() {
            if p.len() < 3 {
                return None;
            }
            frame_len = Some(3 + (p[0] as usize | (p[1] as usize) << 8 | (p[2] as usize) << 16));
        }
        read += p.len();
        let f = frame_len.expect("set above");
        if f < read {
            return None;
        } else if f == read {
            frame_len = None;
        } else if READ_BUF - read < 2 * MTU {
            frame_len = Some(f - read);
        } else {
            continue;
        }
        callbacks += 1;
        read = 0;
    }
    Some(callbacks)
}

/// Checks the record rule on every packet: one holding a record end inside it starts at a
/// record start and ends at a record end (whole records packed), and every record that fits in
/// a packet arrives in one. Returns (records sharing a packet, packets holding them).
fn check_records(data: &[u8], ends: &[u64], packets: &[Vec<u8>]) -> (usize, usize) {
    let is_end = |x: u64| x == 0 || ends.binary_search(&x).is_ok();
    let mut start = 0u64;
    let mut shared = 0;
    let mut packed = 0;
    for p in packets {
        let end = start + p.len() as u64;
        let inside = ends.iter().filter(|&&x| start < x && x < end).count();
        if inside > 0 {
            assert!(
                is_end(start) && is_end(end),
                "packet [{start}, {end}) mixes part of a record with another"
            );
            shared += inside + 1;
            packed += 1;
        }
        start = end;
    }
    assert_eq!(start, data.len() as u64, "the packets cover the stream");
    (shared, packed)
}

fn check_bulk(link: LinkConfig, rounds: usize, seed: u64) {
    let (data, ends, packets) = run(link, &BULK, rounds, seed);
    let (shared, _) = check_records(&data, &ends, &packets);
    assert_eq!(shared, 0, "no packet of a bulk stream holds two records");
    let callbacks = framed_callbacks(&packets).expect("a framed receiver stays framed");
    // One callback per frame, two for a 64 KiB frame that outgrows the read buffer's slack.
    assert!(
        callbacks <= ends.len() * 2,
        "{callbacks} callbacks for {} frames",
        ends.len()
    );
    assert!(
        packets.len() > callbacks * 4,
        "{} packets, {callbacks} callbacks",
        packets.len()
    );
}

#[test]
fn packets_never_span_records_on_a_clean_link() {
    check_bulk(LinkConfig::default(), 8, 1);
}

#[test]
fn packets_never_span_records_with_loss_reordering_and_retransmissions() {
    for seed in 0..4 {
        let mut link = LinkConfig::lossy(3);
        link.reorder_ppm = 20_000;
        link.reorder_us = 3_000;
        check_bulk(link, 4, seed);
    }
}

#[test]
fn small_records_are_packed_whole() {
    // Chatty streams (many small frames, as protocol messages are) still fill packets: whole
    // records packed together, none split, a large one starting its own packet.
    let sizes: Vec<usize> = (0..64)
        .map(|i| 20 + (i * 37) % 180)
        .chain([65_556, 20, 20, 3_000])
        .collect();
    let mut link = LinkConfig::lossy(2);
    link.reorder_ppm = 10_000;
    link.reorder_us = 2_000;
    let (data, ends, packets) = run(link, &sizes, 4, 3);
    let (shared, packed) = check_records(&data, &ends, &packets);
    // 4 rounds of 64 small records (7 KB a round) plus a pair of keep-alives: nearly all share.
    assert!(
        shared >= 4 * 60,
        "small records share packets ({shared} of {})",
        ends.len()
    );
    assert!(
        packed * 8 < shared,
        "{shared} records in {packed} packets: not packed"
    );
}

#[test]
fn plain_writes_mix_frames_and_leave_framed_mode() {
    // The contrast: the same frames through `write` are packed back to back, so some packet
    // holds the end of one frame and the start of the next.
    let mut pair = Pair::new(9, LinkConfig::default(), StreamConfig::default());
    pair.record = true;
    let mut frame = vec![0x00, 0x10, 0x00];
    frame.extend(pattern(0x1000, 1));
    for _ in 0..4 {
        assert_eq!(pair.a.write(&frame).expect("write"), frame.len());
    }
    for _ in 0..100 {
        pair.step();
    }
    let packets: Vec<Vec<u8>> = pair
        .log
        .iter()
        .filter(|(_, side, _)| *side == Side::A)
        .filter_map(|(_, _, b)| {
            Packet::decode(b)
                .ok()
                .filter(|p| p.header.flags.contains(Flags::DATA))
                .map(|p| p.payload.to_vec())
        })
        .collect();
    assert_eq!(framed_callbacks(&packets), None);
}

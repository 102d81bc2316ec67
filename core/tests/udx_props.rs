//! Property tests of the UDX codec and stream input handling.

use hdht_core::udx::packet::{write_sack_blocks, HEADER_LEN};
use hdht_core::udx::{Flags, Header, Packet, StreamConfig, UdxStream};
use hdht_core::Instant;
use quickcheck::{QuickCheck, TestResult};

#[test]
fn decode_never_panics_and_round_trips() {
    fn prop(bytes: Vec<u8>, prefix: bool) -> bool {
        let mut bytes = bytes;
        if prefix && bytes.len() >= 2 {
            bytes[0] = 0xff;
            bytes[1] = 0x01;
        }
        match Packet::decode(&bytes) {
            Ok(p) => {
                let _ = p.sack_blocks().count();
                let mut out = vec![0u8; p.encoded_len()];
                p.encode(&mut out).is_ok() && out == bytes
            }
            Err(_) => true,
        }
    }
    QuickCheck::new()
        .tests(20_000)
        .quickcheck(prop as fn(Vec<u8>, bool) -> bool);
}

#[test]
fn encode_decode_round_trip() {
    fn prop(
        flags: u8,
        stream_id: u32,
        rwnd: u32,
        seq: u32,
        ack: u32,
        pad: u8,
        payload: Vec<u8>,
    ) -> bool {
        let padding = vec![0u8; usize::from(pad % 64)];
        let header = Header {
            flags: Flags(flags),
            data_offset: padding.len() as u8,
            stream_id,
            rwnd,
            seq,
            ack,
        };
        let p = Packet {
            header,
            padding: &padding,
            payload: &payload,
        };
        let mut out = vec![0u8; p.encoded_len()];
        let n = p.encode(&mut out).unwrap();
        Packet::decode(&out[..n]) == Ok(p)
    }
    QuickCheck::new()
        .tests(5_000)
        .quickcheck(prop as fn(u8, u32, u32, u32, u32, u8, Vec<u8>) -> bool);
}

#[test]
fn sack_blocks_round_trip() {
    fn prop(blocks: Vec<(u32, u32)>) -> bool {
        let mut buf = vec![0u8; HEADER_LEN + 50 * 8];
        let n = write_sack_blocks(blocks.iter().copied(), &mut buf[HEADER_LEN..]);
        let h = Header {
            flags: Flags::SACK,
            ..Default::default()
        };
        h.write(&mut buf).unwrap();
        let p = Packet::decode(&buf[..HEADER_LEN + n]).unwrap();
        let got: Vec<_> = p.sack_blocks().collect();
        got == blocks.iter().copied().take(50).collect::<Vec<_>>()
    }
    QuickCheck::new()
        .tests(2_000)
        .quickcheck(prop as fn(Vec<(u32, u32)>) -> bool);
}

/// Arbitrary (well-formed UDX) packets thrown at a live stream never panic and never make its
/// buffers exceed their bounds.
#[test]
fn stream_survives_arbitrary_packets() {
    fn prop(pkts: Vec<(u8, u32, u32, u32, Vec<u8>)>) -> TestResult {
        let cfg = StreamConfig {
            recv_window: 16 * 1024,
            send_buffer: 16 * 1024,
            ..Default::default()
        };
        let mut s = UdxStream::new(1, Instant::ZERO, cfg);
        s.connect(Instant::ZERO, 2, "1.2.3.4:5".parse().unwrap())
            .unwrap();
        let _ = s.write(&[7u8; 40_000]);
        let mut buf = [0u8; 2048];
        let mut now = Instant::ZERO;
        for (i, (flags, rwnd, seq, ack, payload)) in pkts.into_iter().enumerate() {
            now = Instant::from_micros(i as u64 * 1000);
            let payload = &payload[..payload.len().min(1400)];
            let header = Header {
                flags: Flags(flags),
                data_offset: 0,
                stream_id: 1,
                rwnd,
                seq: seq % 64,
                ack: ack % 64,
            };
            s.handle_packet(
                now,
                &Packet {
                    header,
                    padding: &[],
                    payload,
                },
                "1.2.3.4:5".parse().unwrap(),
            );
            while s.poll_transmit(now, &mut buf).is_some() {}
            if let Some(t) = s.poll_timeout() {
                if t <= now + core::time::Duration::from_millis(1) {
                    s.handle_timeout(t);
                }
            }
            while s.poll_event().is_some() {}
            if s.recv_buffered() > 16 * 1024 + 2048 || s.send_buffered() > 16 * 1024 {
                return TestResult::failed();
            }
        }
        let _ = now;
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(2_000)
        .quickcheck(prop as fn(Vec<(u8, u32, u32, u32, Vec<u8>)>) -> TestResult);
}

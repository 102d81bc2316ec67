//! Two UDX streams over an in-memory link with virtual time.

mod udx_common;

use hdht_core::udx::pacing::Pacer;
use hdht_core::udx::{ReadError, StreamConfig, StreamError, StreamEvent, WriteError};
use hdht_core::Instant;
use udx_common::*;

fn events(s: &mut hdht_core::udx::UdxStream) -> Vec<StreamEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn large_transfer_no_loss() {
    let mut pair = Pair::new(1, LinkConfig::default(), StreamConfig::default());
    let data = pattern(8 << 20, 7);
    let r = transfer(&mut pair, &data, 64 * 1024, 60);
    assert_eq!(r.a_closed, Some(None));
    assert_eq!(r.b_closed, Some(None));
    assert_eq!(pair.a.stats().retransmits, 0, "{:?}", pair.a.stats());
    // 8 MiB over a 10 ms RTT path with no bottleneck: well under a second of virtual time.
    assert!(r.virtual_secs < 1.0, "took {}s", r.virtual_secs);
}

fn lossy(loss_pct: u32, seed: u64) {
    let mut pair = Pair::new(seed, LinkConfig::lossy(loss_pct), StreamConfig::default());
    let data = pattern(2 << 20, seed);
    let r = transfer(&mut pair, &data, 16 * 1024, 300);
    assert_eq!(
        r.a_closed,
        Some(None),
        "A {:?} after {}s",
        pair.a.stats(),
        r.virtual_secs
    );
    assert_eq!(r.b_closed, Some(None));
    if loss_pct > 0 {
        assert!(pair.a.stats().retransmits > 0);
    }
}

#[test]
fn transfer_reorder_dup_jitter_no_loss() {
    for seed in 0..3 {
        lossy(0, seed);
    }
}

#[test]
fn transfer_1pct_loss() {
    for seed in 10..13 {
        lossy(1, seed);
    }
}

#[test]
fn transfer_5pct_loss() {
    for seed in 20..23 {
        lossy(5, seed);
    }
}

#[test]
fn transfer_with_bottleneck_and_small_queue() {
    let link = LinkConfig {
        latency_us: 20_000,
        rate: Some(5_000_000),
        queue_bytes: 30_000,
        ..Default::default()
    };
    let mut pair = Pair::new(3, link, StreamConfig::default());
    let data = pattern(3 << 20, 3);
    let r = transfer(&mut pair, &data, 64 * 1024, 120);
    assert_eq!(r.a_closed, Some(None));
    // 3 MiB at 5 MB/s is ≥ 0.63 s; a sane controller stays within ~2×.
    assert!(
        r.virtual_secs < 1.5,
        "took {}s, {:?}",
        r.virtual_secs,
        pair.a.stats()
    );
}

#[test]
fn half_close_both_directions() {
    let mut pair = Pair::new(4, LinkConfig::default(), StreamConfig::default());
    pair.a.write(b"from a").unwrap();
    pair.a.end().unwrap();
    for _ in 0..50 {
        pair.step();
    }
    let ev = events(&mut pair.b);
    assert!(ev.contains(&StreamEvent::End), "{ev:?}");
    let mut buf = [0u8; 64];
    assert_eq!(pair.b.read(&mut buf), Ok(6));
    assert_eq!(pair.b.read(&mut buf), Ok(0));
    assert!(events(&mut pair.a).contains(&StreamEvent::Finished));
    assert!(!pair.a.is_closed() && !pair.b.is_closed());
    // A has ended writing but still receives.
    assert_eq!(pair.a.write(b"x"), Err(WriteError::Ended));
    pair.record = true;
    let big = pattern(300_000, 9);
    let mut pos = 0;
    let mut got = Vec::new();
    while !pair.a.is_closed() {
        if pos < big.len() {
            pos += pair.b.write(&big[pos..]).unwrap_or(0);
            if pos == big.len() {
                pair.b.end().unwrap();
            }
        }
        loop {
            match pair.a.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        assert!(pair.step());
    }
    while !pair.b.is_closed() && pair.step() {}
    while let Ok(n) = pair.a.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == big);
    assert_eq!(pair.a.close_reason(), Some(None));
    assert_eq!(pair.b.close_reason(), Some(None));
}

#[test]
fn destroy_resets_peer() {
    let mut pair = Pair::new(5, LinkConfig::default(), StreamConfig::default());
    pair.record = true;
    let data = pattern(200_000, 1);
    pair.a.write(&data).unwrap();
    for _ in 0..5 {
        pair.step();
    }
    pair.a.destroy();
    assert_eq!(pair.a.close_reason(), Some(None));
    for _ in 0..20 {
        pair.step();
    }
    let ev = events(&mut pair.b);
    assert!(
        ev.contains(&StreamEvent::Closed {
            error: Some(StreamError::Reset)
        }),
        "{ev:?}"
    );
    let mut buf = [0u8; 16];
    assert_eq!(
        pair.b.read(&mut buf),
        Err(ReadError::Failed(StreamError::Reset))
    );
    assert_eq!(pair.a.read(&mut buf), Err(ReadError::Destroyed));
    // Exactly one DESTROY on the wire, header only.
    let destroys: Vec<_> = pair.log.iter().filter(|(_, _, b)| b[2] == 0x10).collect();
    assert_eq!(destroys.len(), 1);
    assert_eq!(destroys[0].2.len(), 20);
    // Nothing more from A afterwards.
    assert!(pair.a.poll_timeout().is_none());
}

#[test]
fn rto_backoff_then_timeout() {
    let mut pair = Pair::new(6, LinkConfig::default(), StreamConfig::default());
    pair.a.write(b"hello").unwrap();
    for _ in 0..10 {
        pair.step();
    }
    assert_eq!(pair.a.send_buffered(), 0);
    // Black hole from now on.
    pair.link.loss_ppm = 1_000_000;
    pair.record = true;
    let t0 = pair.now.as_micros();
    pair.a.write(b"lost forever").unwrap();
    while !pair.a.is_closed() && pair.step() {}
    assert_eq!(pair.a.close_reason(), Some(Some(StreamError::TimedOut)));
    let times: Vec<u64> = pair
        .log
        .iter()
        .filter(|(_, s, b)| *s == Side::A && b[2] & 1 == 1)
        .map(|(t, _, _)| (t - t0) / 1000)
        .collect();
    // Original, a TLP, then RTO retransmissions: first at ~rto, then every 2·rto.
    let rto_ms = pair.a.rto().as_millis() as u64;
    assert!(rto_ms >= 1000);
    let rtx: Vec<u64> = times.iter().copied().filter(|t| *t >= 900).collect();
    assert!(rtx.len() >= 6, "{times:?}");
    for w in rtx.windows(2) {
        let gap = w[1] - w[0];
        assert!((2 * 1000 - 5..=2 * 30_000).contains(&gap), "gaps {rtx:?}");
    }
    let closed_at = (pair.now.as_micros() - t0) / 1000;
    assert!(
        (12_000..=16_000).contains(&closed_at),
        "closed at {closed_at} ms, {times:?}"
    );
    assert!(events(&mut pair.a).contains(&StreamEvent::Closed {
        error: Some(StreamError::TimedOut)
    }));
}

#[test]
fn receive_window_bounds_a_receiver_that_does_not_read() {
    let cfg_b = StreamConfig {
        recv_window: 64 * 1024,
        ..Default::default()
    };
    let cfg_a = StreamConfig {
        send_buffer: 256 * 1024,
        ..Default::default()
    };
    let mut pair = Pair::with_configs(7, LinkConfig::default(), cfg_a, cfg_b);
    let data = pattern(2 << 20, 2);
    let mut pos = 0;
    let mut blocked = false;
    // B does not read for 20 s of virtual time.
    let until = pair.now.as_micros() + 20_000_000;
    while pair.now.as_micros() < until {
        match pair.a.write(&data[pos..]) {
            Ok(n) => pos += n,
            Err(WriteError::WouldBlock) => blocked = true,
            Err(e) => panic!("{e:?}"),
        }
        assert!(pair.a.send_buffered() <= 256 * 1024);
        assert!(
            pair.b.recv_buffered() <= 64 * 1024 + 2048,
            "{}",
            pair.b.recv_buffered()
        );
        if !pair.step() {
            break;
        }
    }
    assert!(blocked, "the writer must be pushed back");
    assert!(pos < data.len());
    assert!(pair.b.stats().max_recv_buffered <= 64 * 1024 + 2048);
    assert!(pair.b.stats().max_recv_buffered >= 60 * 1024);
    assert_eq!(pair.a.send_window(), 0);
    // Zero-window probing kept the connection alive and bounded.
    assert!(pair.a.stats().heartbeats_sent >= 1);
    assert!(!pair.a.is_closed());
    // Now B reads: everything flows.
    let mut rest = pair;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let until = rest.now.as_micros() + 60_000_000;
    while got.len() < data.len() && rest.now.as_micros() < until {
        if pos < data.len() {
            if let Ok(n) = rest.a.write(&data[pos..]) {
                pos += n;
            }
        }
        while let Ok(n) = rest.b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        rest.flush();
        if !rest.step() {
            break;
        }
        assert!(rest.b.recv_buffered() <= 64 * 1024 + 2048);
    }
    assert!(got == data, "got {} of {}", got.len(), data.len());
}

#[test]
fn pacer_is_not_one_packet_per_millisecond() {
    // Unit: at 100 MB/s a 1200-byte packet is due every 12 µs.
    let mut p = Pacer::new(Instant::ZERO, 100_000_000, 12_000);
    let mut now = Instant::ZERO;
    let mut sent = 0u64;
    while now < Instant::from_millis(10) {
        match p.delay(now, 1200) {
            None => {
                p.on_sent(1200);
                sent += 1;
            }
            Some(t) => {
                assert!(t > now);
                assert!(
                    t.as_micros() - now.as_micros() < 1000,
                    "wait rounded up to a millisecond"
                );
                now = t;
            }
        }
    }
    // 10 ms at 100 MB/s ≈ 833 packets (+ the initial burst), not ~10.
    assert!(sent > 800, "{sent}");

    // End to end: 1 ms one-way latency, no bottleneck; far more than 1.2 MB/s.
    let link = LinkConfig {
        latency_us: 1_000,
        ..Default::default()
    };
    let mut pair = Pair::new(8, link, StreamConfig::default());
    let data = pattern(16 << 20, 8);
    let r = transfer(&mut pair, &data, 1 << 20, 60);
    let rate = data.len() as f64 / r.virtual_secs;
    assert!(rate > 100e6, "virtual throughput {rate} B/s");
}

#[test]
fn writer_does_not_wait_for_an_ack_per_write() {
    let mut pair = Pair::new(9, LinkConfig::default(), StreamConfig::default());
    pair.record = true;
    for i in 0..20u8 {
        assert_eq!(pair.a.write(&[i; 1000]), Ok(1000));
    }
    pair.flush();
    // All before a single ACK arrived: the initial window's worth of packets is on the wire.
    let a_data = pair
        .log
        .iter()
        .filter(|(_, s, b)| *s == Side::A && b[2] & 1 == 1)
        .count();
    assert!(a_data >= 10, "{a_data} packets sent before any ACK");
    // Coalescing: 20 000 bytes in full packets, not one packet per write.
    assert!(a_data <= 20_000 / 1100 + 1);
    let mut got = 0;
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        pair.step();
        while let Ok(n) = pair.b.read(&mut buf) {
            got += n;
        }
    }
    assert_eq!(got, 20_000);
}

#[test]
fn coalesced_small_writes_share_a_packet() {
    let mut pair = Pair::new(10, LinkConfig::default(), StreamConfig::default());
    pair.record = true;
    pair.a.write(b"hello").unwrap();
    pair.a.write(b"again").unwrap();
    pair.flush();
    assert_eq!(pair.log.len(), 1);
    assert_eq!(&pair.log[0].2[20..], b"helloagain");
}

#[test]
fn change_of_remote_address_mid_stream() {
    let mut pair = Pair::new(11, LinkConfig::default(), StreamConfig::default());
    let data = pattern(4 << 20, 11);
    let mut pos = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut changed = false;
    let mut remote_changed_event = false;
    let limit = pair.now.as_micros() + 60_000_000;
    while got.len() < data.len() && pair.now.as_micros() < limit {
        if pos < data.len() {
            pos += pair.a.write(&data[pos..]).unwrap_or(0);
        }
        while let Ok(n) = pair.b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if !changed && got.len() > 1 << 20 {
            // B is rebound (NAT): datagrams to the old address vanish; B's packets now come from
            // the new one and are still accepted by A (libudx does not check the source).
            pair.b_addr = "10.9.9.9:4444".parse().unwrap();
            changed = true;
            // Some time passes before A's owner notices and switches.
            for _ in 0..20 {
                pair.step();
            }
            let new = pair.b_addr;
            pair.a.change_remote(Default::default(), B_ID, new).unwrap();
        }
        for e in std::iter::from_fn(|| pair.a.poll_event()) {
            if e == StreamEvent::RemoteChanged {
                remote_changed_event = true;
            }
        }
        if !pair.step() {
            break;
        }
    }
    assert!(changed);
    assert!(got == data, "got {} of {}", got.len(), data.len());
    assert!(remote_changed_event);
    assert_eq!(pair.a.remote_addr(), Some(pair.b_addr));
}

#[test]
fn stream_messages() {
    let mut pair = Pair::new(12, LinkConfig::default(), StreamConfig::default());
    pair.record = true;
    pair.a.send_message(b"ping").unwrap();
    pair.a.send_message(b"").unwrap();
    pair.b.send_message(b"pong").unwrap();
    assert!(pair.a.send_message(&vec![0u8; 5000]).is_err());
    for _ in 0..10 {
        pair.step();
    }
    let b_msgs: Vec<_> = events(&mut pair.b)
        .into_iter()
        .filter_map(|e| {
            if let StreamEvent::Message(m) = e {
                Some(m)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(b_msgs, vec![b"ping".to_vec(), Vec::new()]);
    assert!(events(&mut pair.a).contains(&StreamEvent::Message(b"pong".to_vec())));
    // Messages consume no seq and are not acked: 3 datagrams in total.
    assert_eq!(pair.log.len(), 3);
    assert!(pair
        .log
        .iter()
        .all(|(_, _, b)| b[2] == 0x08 && b[12..16] == [0, 0, 0, 0]));
}

#[test]
fn keepalive_heartbeats_are_acked() {
    let mut pair = Pair::new(13, LinkConfig::default(), StreamConfig::default());
    pair.record = true;
    let now = pair.now;
    pair.a
        .set_keepalive(now, Some(std::time::Duration::from_millis(40)));
    let end = pair.now.as_micros() + 205_000;
    while pair.now.as_micros() < end && pair.step() {}
    let hb = pair
        .log
        .iter()
        .filter(|(_, s, b)| *s == Side::A && b[2] == 0x20)
        .count();
    let acks = pair
        .log
        .iter()
        .filter(|(_, s, b)| *s == Side::B && b[2] == 0x00)
        .count();
    assert!(hb >= 4, "{hb}");
    assert!(acks >= hb - 1);
}

#[test]
fn deterministic_given_the_seed() {
    let run = || {
        let mut pair = Pair::new(99, LinkConfig::lossy(2), StreamConfig::default());
        pair.record = true;
        let data = pattern(300_000, 1);
        transfer(&mut pair, &data, 4096, 100);
        pair.log
            .iter()
            .map(|(t, s, b)| (*t, *s as u8, b.clone()))
            .collect::<Vec<_>>()
    };
    assert!(run() == run());
}

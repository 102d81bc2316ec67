//! The demux's timer queue and ready lists with many streams: data still flows on the few
//! busy streams, and every idle stream's own timers still run (a dead peer is detected on
//! all of them) although no call walks every stream.

use core::net::SocketAddr;
use core::time::Duration;

use hdht_core::udx::{Demux, SocketId, StreamConfig, UdxStream};
use hdht_core::Instant;

const STREAMS: u32 = 200;
const BUSY: u32 = 3;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Moves every datagram each side has to send to the other (if `link`), then runs due timers.
fn turn(a: &mut Demux, b: &mut Demux, now: Instant, link: bool) {
    let mut buf = [0u8; 2048];
    loop {
        let mut moved = false;
        while let Some((_, t)) = a.poll_transmit(now, &mut buf) {
            moved = true;
            if link {
                b.handle_datagram(now, SocketId(0), addr("127.0.0.1:1"), &buf[..t.len]);
            }
        }
        while let Some((_, t)) = b.poll_transmit(now, &mut buf) {
            moved = true;
            if link {
                a.handle_datagram(now, SocketId(0), addr("127.0.0.1:2"), &buf[..t.len]);
            }
        }
        if !moved {
            break;
        }
    }
    a.handle_timeout(now);
    b.handle_timeout(now);
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
}

#[test]
fn busy_streams_move_data_and_every_idle_stream_runs_its_timers() {
    let cfg = StreamConfig {
        idle_timeout: Some(Duration::from_secs(15)),
        ..StreamConfig::default()
    };
    let mut now = Instant::from_millis(1);
    let (mut a, mut b) = (Demux::new(), Demux::new());
    for i in 0..STREAMS {
        let (ia, ib) = (1000 + i, 5000 + i);
        let mut sa = UdxStream::new(ia, now, cfg.clone());
        sa.connect(now, ib, addr("127.0.0.1:2")).unwrap();
        let mut sb = UdxStream::new(ib, now, cfg.clone());
        sb.connect(now, ia, addr("127.0.0.1:1")).unwrap();
        a.insert(sa);
        b.insert(sb);
    }
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let mut got = vec![Vec::new(); BUSY as usize];
    let mut sent = vec![0usize; BUSY as usize];
    // 30 s of a live link: the busy streams deliver everything, no stream times out.
    for _ in 0..30_000 {
        for i in 0..BUSY {
            let s = a.get_mut(1000 + i).unwrap();
            if sent[i as usize] < data.len() {
                sent[i as usize] += s.write(&data[sent[i as usize]..]).unwrap_or(0);
            }
        }
        turn(&mut a, &mut b, now, true);
        for i in 0..BUSY {
            let s = b.get_mut(5000 + i).unwrap();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut chunk) {
                got[i as usize].extend_from_slice(&chunk[..n]);
            }
        }
        now = Instant::from_micros(now.as_micros() + 1000);
    }
    for g in &got {
        assert_eq!(g, &data, "a busy stream's bytes");
    }
    for i in 0..STREAMS {
        assert!(
            !a.get(1000 + i).unwrap().is_closed(),
            "stream {i} closed on a live link"
        );
    }
    // The peer goes silent: every stream of `a` closes by its idle timeout, found through
    // poll_timeout alone.
    let end = Instant::from_micros(now.as_micros() + 20_000_000);
    while let Some(t) = a.poll_timeout() {
        if t > end {
            break;
        }
        now = now.max(t);
        turn(&mut a, &mut b, now, false);
    }
    for i in 0..STREAMS {
        assert!(
            a.get(1000 + i).unwrap().is_closed(),
            "stream {i} never timed out"
        );
    }
}

//! The issue's pitfall "an async writer that waits for an acknowledgement per write stalls the
//! pipe": UDX accepts writes into its send buffer at once and sends a whole window of them
//! before the first acknowledgement can arrive, so many small writes cost a few round trips,
//! not one round trip each.

mod udx_common;

use hdht_core::udx::StreamConfig;
use udx_common::*;

#[test]
fn small_writes_are_pipelined_not_acknowledged_one_by_one() {
    // 50 ms each way: one round trip is 100 ms.
    let link = LinkConfig {
        latency_us: 50_000,
        ..LinkConfig::default()
    };
    let mut pair = Pair::new(1, link, StreamConfig::default());
    let t0 = pair.now;
    let (writes, size) = (256usize, 1000usize);
    let data = pattern(writes * size, 3);
    for chunk in data.chunks(size) {
        let n = pair.a.write(chunk).expect("write");
        assert_eq!(
            n, size,
            "a write is accepted into the send buffer at once, not after an ACK"
        );
    }
    pair.flush();
    assert!(
        pair.sent[0] >= 10,
        "a window of packets leaves before any acknowledgement ({} sent)",
        pair.sent[0]
    );
    assert_eq!(pair.now, t0, "no virtual time passed: nothing waited");

    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < data.len() {
        assert!(pair.step(), "the transfer stalled at {} bytes", got.len());
        while let Ok(n) = pair.b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!((pair.now - t0).as_secs_f64() < 30.0, "stalled");
    }
    assert_eq!(got, data);
    let secs = (pair.now - t0).as_secs_f64();
    // Slow start from the initial window needs ~5 round trips for 256 packets; one round trip
    // per write would need 25.6 s.
    assert!(
        secs < 1.0,
        "256 writes took {secs:.3} s of virtual time (RTT 100 ms)"
    );
}

//! In-memory UDX Pair throughput: two sans-IO streams, a virtual-time link, wall-clock CPU cost.
//!
//! Run: `cargo bench -p hdht-core --bench udx_pair`. Prints bytes/s of application data moved
//! per wall-clock second (this measures the state machines, not a network), for a clean link
//! and a link with 1% loss.

#[path = "../tests/udx_common/mod.rs"]
mod udx_common;

use hdht_core::udx::StreamConfig;
use std::time::Instant as StdInstant;
use udx_common::{pattern, transfer, LinkConfig, Pair};

fn run(name: &str, link: LinkConfig, bytes: usize, reps: u32) {
    let data = pattern(bytes, 1);
    let mut best = 0f64;
    let mut retrans = 0;
    let mut vsecs = 0.0;
    for seed in 0..reps {
        let mut pair = Pair::new(u64::from(seed), link.clone(), StreamConfig::default());
        let t = StdInstant::now();
        let r = transfer(&mut pair, &data, 256 * 1024, 600);
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(r.a_closed, Some(None));
        let rate = bytes as f64 / dt;
        if rate > best {
            best = rate;
            retrans = pair.a.stats().retransmits;
            vsecs = r.virtual_secs;
        }
    }
    println!(
        "udx_pair/{name}: {:.1} MB/s wall ({} MiB, best of {reps}; {retrans} retransmits; {:.3} s virtual = {:.1} MB/s on the simulated link)",
        best / 1e6,
        bytes >> 20,
        vsecs,
        bytes as f64 / vsecs / 1e6
    );
}

fn main() {
    let clean = LinkConfig {
        latency_us: 1_000,
        ..Default::default()
    };
    run("no_loss", clean, 256 << 20, 3);
    let lossy = LinkConfig {
        latency_us: 1_000,
        loss_ppm: 10_000,
        ..Default::default()
    };
    run("loss_1pct", lossy, 64 << 20, 3);
}

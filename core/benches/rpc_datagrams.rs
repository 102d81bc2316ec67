//! decode + handle + encode of dht-rpc datagrams in the core, side by side with the Node.js
//! reference (dht-rpc 6.27.0) handling the same bytes in the same run.
//!
//! Run: `cargo bench -p hdht-core --bench rpc_datagrams` (needs `npm ci --prefix tests/interop`
//! for the Node side; without it only the Rust figures are printed, and the bench says so).

use std::hint::black_box;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use hdht_core::rpc::{NodeId, Persistence, RpcConfig, RpcNode, SocketKind};
use hdht_core::wire::{Message, Request};
use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

const RUN: Duration = Duration::from_secs(2);

fn workload() -> (Vec<SocketAddrV4>, Vec<(SocketAddrV4, Vec<u8>)>) {
    let table: Vec<SocketAddrV4> = (0..300u32)
        .map(|i| SocketAddrV4::new(Ipv4Addr::from(0x0a02_0000 + i), 49737))
        .collect();
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 49737);
    let mut dgrams = Vec::new();
    for i in 0..1000u32 {
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0a01_0000 + i), 49737);
        let (command, target) = if i % 4 == 0 {
            (0, None)
        } else {
            (2, Some(hdht_core::crypto::hash(&i.to_le_bytes())))
        };
        let req = Request {
            tid: i as u16,
            to,
            id: Some(NodeId::from_addr(&from).0),
            token: None,
            internal: true,
            command,
            target,
            value: None,
        };
        dgrams.push((from, req.to_bytes()));
    }
    (table, dgrams)
}

fn rust_handle(table: &[SocketAddrV4], dgrams: &[(SocketAddrV4, Vec<u8>)]) -> (f64, u64) {
    let cfg = RpcConfig {
        bootstrap: vec![],
        nodes: table.to_vec(),
        persistence: Persistence::Persistent,
        firewalled: false,
        server_port: 49737,
        ..RpcConfig::default()
    };
    let mut node = RpcNode::new(cfg, ChaCha8Rng::seed_from_u64(1), Instant::ZERO);
    node.handle_timeout(Instant::from_millis(1));
    while node.poll_transmit().is_some() {}
    let mut handled = 0u64;
    let mut replies = 0u64;
    let start = StdInstant::now();
    let now = Instant::from_millis(2);
    while start.elapsed() < RUN {
        for (from, bytes) in dgrams {
            node.handle_datagram(now, SocketKind::Server, *from, bytes);
            while let Some(t) = node.poll_transmit() {
                replies += 1;
                black_box(&t.payload);
            }
            while node.poll_event().is_some() {}
        }
        handled += dgrams.len() as u64;
    }
    (handled as f64 / start.elapsed().as_secs_f64(), replies)
}

fn rust_decode(dgrams: &[(SocketAddrV4, Vec<u8>)]) -> f64 {
    let mut handled = 0u64;
    let start = StdInstant::now();
    while start.elapsed() < RUN {
        for (_, bytes) in dgrams {
            black_box(Message::decode(black_box(bytes)).ok());
        }
        handled += dgrams.len() as u64;
    }
    handled as f64 / start.elapsed().as_secs_f64()
}

fn node_handle(table: &[SocketAddrV4], dgrams: &[(SocketAddrV4, Vec<u8>)]) -> Result<f64, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop/bench-rpc.js");
    let dir = std::env::temp_dir().join(format!("hdht-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("datagrams.txt");
    let mut f = std::fs::File::create(&file).map_err(|e| e.to_string())?;
    for a in table {
        writeln!(f, "node {} {}", a.ip(), a.port()).map_err(|e| e.to_string())?;
    }
    for (from, bytes) in dgrams {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(f, "dgram {} {} {hex}", from.ip(), from.port()).map_err(|e| e.to_string())?;
    }
    drop(f);
    let out = Command::new("node")
        .arg(script)
        .arg(&file)
        .arg(RUN.as_secs().to_string())
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(format!(
            "node bench failed (run `npm ci --prefix tests/interop`): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let key = "\"datagramsPerSec\":";
    let at = line.find(key).ok_or("no datagramsPerSec in node output")? + key.len();
    let num: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    num.parse().map_err(|e| format!("{e}: {line}"))
}

fn main() {
    let (table, dgrams) = workload();
    let decode = rust_decode(&dgrams);
    let (rust, replies) = rust_handle(&table, &dgrams);
    println!("workload: 1000 requests (75% FIND_NODE with a target, 25% PING), valid ids, 300-node table");
    println!("rust decode only          : {:>12.0} datagrams/s", decode);
    println!(
        "rust decode+handle+encode : {:>12.0} datagrams/s  ({replies} replies)",
        rust
    );
    match node_handle(&table, &dgrams) {
        Ok(node) => {
            println!("node decode+handle+encode : {:>12.0} datagrams/s", node);
            println!("ratio rust/node           : {:>12.2}x", rust / node);
        }
        Err(e) => println!("node side not measured: {e}"),
    }
}

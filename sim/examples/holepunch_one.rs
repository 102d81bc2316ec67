//! One holepunch run, summarised — with `--tap`, every datagram the server or the client sent,
//! lost or received, and every datagram lost on the link:
//!
//! ```text
//! cargo run --release -p hdht-sim --example holepunch_one -- CLIENT SERVER SEED [--loss P] [--tap]
//! ```

use std::net::SocketAddrV4;

use hdht_sim::scenario::holepunch::{run_holepunch_with, HolepunchConfig};
use hdht_sim::{NatPreset, TapKind, TapRecord};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let tap = args.iter().any(|a| a == "--tap");
    args.retain(|a| a != "--tap");
    let loss = args.iter().position(|a| a == "--loss").map(|i| {
        let v = args
            .get(i + 1)
            .and_then(|v| v.parse::<f64>().ok())
            .expect("--loss P");
        args.drain(i..i + 2);
        v
    });
    let client: NatPreset = args
        .first()
        .map_or("open", String::as_str)
        .parse()
        .expect("client preset");
    let server: NatPreset = args
        .get(1)
        .map_or("open", String::as_str)
        .parse()
        .expect("server preset");
    let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse()).expect("seed");
    let mut cfg = HolepunchConfig::new(client, server, seed);
    if let Some(l) = loss {
        cfg.loss = l;
    }
    let (server_host, client_host) = (cfg.public_nodes, cfg.public_nodes + 1);
    let name = move |h: usize| match h {
        h if h == server_host => "server".to_string(),
        h if h == client_host => "client".to_string(),
        h => format!("node{h}"),
    };
    let printer = move |r: &TapRecord<'_>| {
        let to_host = r.to_host.unwrap_or(usize::MAX);
        // Lost datagrams are shown whoever sent them (a drop does not know its receiver).
        let lost = r.kind == TapKind::Dropped(hdht_sim::DropReason::Loss);
        if !lost
            && ![server_host, client_host].contains(&r.from_host)
            && ![server_host, client_host].contains(&to_host)
        {
            return;
        }
        let what = match r.payload {
            [_] => "probe".to_string(),
            [0xff, ..] => "udx".to_string(),
            [b, ..] => format!("rpc {b:#04x}"),
            [] => "empty".to_string(),
        };
        let kind = match r.kind {
            TapKind::Sent => "sent".to_string(),
            TapKind::Delivered => format!("-> {}", name(to_host)),
            TapKind::Dropped(d) => format!("DROPPED {}", d.name()),
        };
        let addr = |a: SocketAddrV4| a.to_string();
        println!(
            "{:>10.3} ms  {:<7} {:>21} -> {:<21} ttl {:>2} {:>5} B {:<9} {}",
            r.at.as_micros() as f64 / 1000.0,
            name(r.from_host),
            addr(r.from),
            addr(r.to),
            r.ttl,
            r.payload.len(),
            what,
            kind
        );
    };
    let t = std::time::Instant::now();
    let r = run_holepunch_with(&cfg, tap.then(|| Box::new(printer) as hdht_sim::Tap)).expect("run");
    println!("{client} -> {server} seed {seed}: {:?}", r.outcome);
    println!(
        "  elapsed {:?} listen {:?} pool binds (client, server) {:?}",
        r.elapsed, r.listen_time, r.pool_binds
    );
    println!(
        "  events {} simulated {:?} wall {:?}",
        r.events,
        r.sim_time,
        t.elapsed()
    );
    let drops: Vec<String> = hdht_sim::DropReason::ALL
        .iter()
        .filter(|d| r.net.dropped(**d) > 0)
        .map(|d| format!("{} {}", d.name(), r.net.dropped(*d)))
        .collect();
    println!(
        "  sent {} delivered {} dropped: {}",
        r.net.sent,
        r.net.delivered,
        drops.join(", ")
    );
    println!("  trace {}", r.trace_hash);
}

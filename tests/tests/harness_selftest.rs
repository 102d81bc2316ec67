//! Self-test of the Node.js interop harness, against Node.js reference peers only.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use hdht_tests::{HarnessError, NodePeers};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// dht-rpc node id: BLAKE2b-256(ipv4 octets ‖ port as u16 LE).
fn node_id(host: &str, port: u16) -> String {
    let ip: std::net::Ipv4Addr = host.parse().unwrap();
    let mut h = Blake2b::<U32>::new();
    h.update(ip.octets());
    h.update(port.to_le_bytes());
    hex::encode(h.finalize())
}

fn random_target() -> [u8; 32] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut h = Blake2b::<U32>::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.finalize().into()
}

fn addr(v: &Value) -> (String, u16) {
    (
        v["host"].as_str().unwrap().to_string(),
        v["port"].as_u64().unwrap() as u16,
    )
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn harness_drives_node_reference_peers() {
    let started = Instant::now();
    let peers = NodePeers::new();
    let pid = peers.pid();

    // --- testnet: bootstrapper b + persistent n1..n4, all with the canonical ids -------------
    let net = peers.testnet(5).expect("testnet");
    assert_eq!(net.nodes.len(), 5);
    let names: Vec<_> = net.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["b", "n1", "n2", "n3", "n4"]);
    let mut by_port = HashMap::new();
    for n in &net.nodes {
        assert_eq!(n.host, "127.0.0.1");
        assert!(!n.ephemeral, "{} should be persistent", n.name);
        let id = n
            .node_id
            .clone()
            .unwrap_or_else(|| panic!("{} has no id", n.name));
        assert_eq!(id, node_id(&n.host, n.port), "id of {}", n.name);
        by_port.insert(n.port, n.clone());
    }
    assert_eq!(net.bootstrap, vec![net.node("b").addr_string()]);

    // --- findNode from n1: every other node is among the closest, ids check out ------------
    let target = random_target();
    let res = peers.find_node("n1", &target).expect("findNode");
    let closest = res["closest"].as_array().unwrap();
    assert!(closest.len() >= 4, "expected >= 4 closest, got {res}");
    for c in closest {
        let (host, port) = addr(c);
        assert_eq!(host, "127.0.0.1");
        assert_eq!(c["id"].as_str().unwrap(), node_id(&host, port));
        let known = by_port.get(&port).expect("closest node is a testnet node");
        assert_eq!(c["id"].as_str(), known.node_id.as_deref());
    }
    // closest are sorted by XOR distance to the target
    let dist = |c: &Value| -> Vec<u8> {
        let id = hex::decode(c["id"].as_str().unwrap()).unwrap();
        id.iter().zip(target.iter()).map(|(a, b)| a ^ b).collect()
    };
    assert!(
        closest.windows(2).all(|w| dist(&w[0]) < dist(&w[1])),
        "closest not sorted: {res}"
    );
    assert!(res["replies"].as_u64().unwrap() >= 4);
    assert_eq!(
        res["repliesFrom"].as_array().unwrap().len() as u64,
        res["replies"].as_u64().unwrap()
    );

    // --- query command 42: every rpc node answers "node:<its port>" --------------------------
    let res = peers
        .query("n2", &random_target(), 42, None, false)
        .expect("query");
    let replies = res["replies"].as_array().unwrap();
    assert!(replies.len() >= 4, "expected >= 4 replies, got {res}");
    for r in replies {
        let (_, port) = addr(&r["from"]);
        assert_eq!(r["error"], 0);
        let value = hex::decode(r["value"].as_str().unwrap()).unwrap();
        assert_eq!(String::from_utf8(value).unwrap(), format!("node:{port}"));
    }

    // --- query with commit: commits are answered by the closest nodes ----------------------
    let res = peers
        .query("n3", &random_target(), 42, Some(b"v"), true)
        .expect("commit query");
    assert!(
        !res["commits"].as_array().unwrap().is_empty(),
        "no commits: {res}"
    );
    for c in res["commits"].as_array().unwrap() {
        assert_eq!(c["error"], 0);
    }

    // --- respond: change n4's answer, then restore the library's unknown-command reply -----
    let n4 = net.node("n4").clone();
    peers
        .call(
            json!({"op": "respond", "name": "n4", "command": 42, "value": hex::encode(b"custom")}),
        )
        .unwrap();
    let direct = |cmd: u64| {
        peers
            .call(
                json!({"op": "request", "name": "n1", "host": n4.host, "port": n4.port,
                         "command": cmd, "target": hex::encode(random_target())}),
            )
            .expect("request")["response"]
            .clone()
    };
    let r = direct(42);
    assert_eq!(r["error"], 0);
    assert_eq!(r["value"], hex::encode(b"custom"));
    peers
        .call(json!({"op": "respond", "name": "n4", "command": 42, "remove": true}))
        .unwrap();
    let r = direct(42);
    assert_eq!(
        r["error"], 1,
        "unknown command after removing the responder: {r}"
    );
    let logged = peers.call(json!({"op": "requests", "name": "n4"})).unwrap();
    assert!(logged["requests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["command"] == 42));

    // --- ping ---------------------------------------------------------------------------------
    let b = net.node("b");
    let res = peers.ping("n1", b.addr()).expect("ping");
    assert_eq!(addr(&res["from"]), (b.host.clone(), b.port));
    assert_eq!(res["from"]["id"].as_str(), b.node_id.as_deref());
    assert_eq!(addr(&res["to"]).0, "127.0.0.1");

    // --- an ephemeral node joining the testnet sees it in its table -------------------------
    let e = peers
        .spawn("e1", json!({"bootstrap": net.bootstrap}))
        .expect("spawn ephemeral");
    assert!(e.ephemeral && e.node_id.is_none());
    let table = peers.call(json!({"op": "table", "name": "e1"})).unwrap();
    assert!(
        table["nodes"].as_array().unwrap().len() >= 4,
        "table: {table}"
    );

    // --- errors are replies, not hangs -----------------------------------------------------
    match peers.call(json!({"op": "nope"})) {
        Err(HarnessError::Remote { message, .. }) => assert!(message.contains("unknown op")),
        other => panic!("expected remote error, got {other:?}"),
    }
    match peers
        .call(json!({"op": "ping", "name": "n1", "host": "127.0.0.1", "port": 1, "timeout": 300}))
    {
        Err(HarnessError::Remote { message, .. }) => {
            assert!(message.contains("timed out"), "{message}")
        }
        other => panic!("expected timeout error, got {other:?}"),
    }

    // --- destroy: node gone from peer.js, and it no longer answers pings --------------------
    let n2 = net.node("n2").clone();
    peers.destroy("n2").expect("destroy");
    assert!(matches!(
        peers.state("n2"),
        Err(HarnessError::Remote { .. })
    ));
    let dead = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), n2.port);
    assert!(peers
        .call_timeout(
            json!({"op": "ping", "name": "n1", "host": "127.0.0.1", "port": dead.port()}),
            Duration::from_millis(1500)
        )
        .is_err());
    let list = peers.call(json!({"op": "list"})).unwrap();
    assert_eq!(list["nodes"].as_array().unwrap().len(), 5); // b, n1, n3, n4, e1

    // --- drop: child exits and is reaped ------------------------------------------------------
    assert!(process_alive(pid));
    drop(peers);
    assert!(
        !process_alive(pid),
        "peer.js (pid {pid}) still exists after drop"
    );

    assert!(
        started.elapsed() < Duration::from_secs(15),
        "self-test took {:?}",
        started.elapsed()
    );
}

#[test]
fn concurrent_calls_are_routed_by_id() {
    let peers = std::sync::Arc::new(NodePeers::new());
    let net = peers.testnet(3).expect("testnet");
    let bootstrap = net.bootstrap.clone();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let peers = peers.clone();
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || {
                let name = format!("c{i}");
                let n = peers
                    .spawn(
                        &name,
                        json!({"bootstrap": bootstrap, "ephemeral": false, "firewalled": false}),
                    )
                    .unwrap();
                assert_eq!(n.name, name);
                let st = peers.state(&name).unwrap();
                assert_eq!(st.port, n.port);
                n.port
            })
        })
        .collect();
    let ports: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut dedup = ports.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), ports.len());
}

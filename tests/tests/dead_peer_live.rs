//! Dead and aborting peers against the Node reference, over real UDP on 127.0.0.1 (issue 11).
//!
//! * A Node peer that destroys its connection: our read and write fail with `ConnectionReset`,
//!   never an end of stream.
//! * A Node peer whose process is SIGKILLed: our connections fail with `TimedOut`, whether our
//!   side is still open or already ended (where the reference itself would wait forever: with
//!   nothing in flight no RTO can give up, so we watch for silence).
//! * Our side going away: a `Connection` dropped without `shutdown` and an interrupted
//!   `hdht connect` abort (UDX DESTROY: the Node peer errors with `ECONNRESET` at once); a
//!   SIGKILLed `hdht connect` is noticed by the Node peer through its own keep-alive and RTO
//!   give-up (`ETIMEDOUT`).
//!
//! The detection times are printed; the waits are bounds, not speed claims.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use hdht_core::crypto::{hash, KeyPair};
use hdht_core::dht::ConnectOptions;
use hdht_core::rpc::Persistence;
use hdht_driver::{Connection, DhtOptions};
use hdht_tests::runtime::{Runtime, Tokio};
use hdht_tests::NodePeers;
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(30);
/// The connection's idle timeout (15 s) and the reference's 12–18 s, with room for a busy
/// machine.
const DETECT: Duration = Duration::from_secs(45);

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{signal} {pid}");
}

/// The records of a holdListen server, by the connecting key.
fn held(peers: &NodePeers, name: &str, remote: &[u8; 32]) -> Option<Value> {
    let v = peers
        .call(json!({"op": "heldConnections", "name": name}))
        .expect("heldConnections");
    v["connections"]
        .as_array()?
        .iter()
        .find(|c| c["remotePublicKey"] == hex::encode(remote))
        .cloned()
}

/// Polls `held` until `done` holds for the record of `remote`; returns it and the time taken.
fn wait_held(
    peers: &NodePeers,
    name: &str,
    remote: &[u8; 32],
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let t0 = Instant::now();
    loop {
        let rec = held(peers, name, remote);
        if let Some(r) = rec.as_ref().filter(|r| done(r)) {
            return (r.clone(), t0.elapsed());
        }
        assert!(
            t0.elapsed() < limit,
            "{name}: connection from {} not as expected within {limit:?}: {rec:?}",
            hex::encode(remote)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A read that must fail with `kind` (after any bytes still buffered), within `limit`.
async fn read_fails(conn: &mut Connection, kind: std::io::ErrorKind, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match Tokio::timeout(limit, conn.read(&mut buf)).await {
            None => panic!("no read error within {limit:?}"),
            Some(Ok(0)) => panic!("a clean end of stream where the peer died or aborted"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                assert_eq!(e.kind(), kind, "{e}");
                return t0.elapsed();
            }
        }
    }
}

async fn connect(dht: &hdht_tokio::Dht, pk: [u8; 32], kp: &KeyPair) -> Connection {
    let opts = ConnectOptions {
        key_pair: Some(kp.clone()),
        ..ConnectOptions::default()
    };
    Tokio::timeout(STEP, dht.connect_with(pk, opts))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// `hdht connect PK --seed SEED`, its stdin fed slowly without end from a thread.
fn cli_connect(bootstrap: &str, pk: &[u8; 32], seed: &[u8; 32]) -> Killed {
    let bin = hdht_tests::netns::hdht_binary().expect("the hdht binary");
    let mut child = Command::new(bin)
        .args(["connect", &hex::encode(pk), "--seed", &hex::encode(seed)])
        .args(["--host", "127.0.0.1", "--bootstrap", bootstrap, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hdht connect");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        let chunk = [0x42u8; 16 * 1024];
        while stdin.write_all(&chunk).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Killed(child)
}

#[test]
fn dead_and_aborting_peers_with_the_node_reference() {
    Tokio::run(async {
        let peers = NodePeers::new();
        let net = Tokio::blocking(|| peers.testnet_with(json!({"size": 5, "kind": "hyperdht"})))
            .expect("node testnet");
        let bootstrap = net.bootstrap.clone();
        // The server the test kills lives in a peer.js process of its own.
        let doomed = NodePeers::new();
        for (p, name) in [(&doomed, "srv"), (&peers, "srv2")] {
            Tokio::blocking(|| p.spawn(name, json!({"kind": "hyperdht", "bootstrap": bootstrap})))
                .expect("node server node");
        }
        let seed = hash(b"dead peer: doomed server");
        let seed2 = hash(b"dead peer: surviving server");
        let r = Tokio::blocking(|| {
            doomed.call(json!({"op": "holdListen", "name": "srv", "seed": hex::encode(seed)}))
        })
        .expect("holdListen");
        let pk: [u8; 32] = hex::decode(r["publicKey"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let r = Tokio::blocking(|| {
            peers.call(json!({"op": "holdListen", "name": "srv2", "seed": hex::encode(seed2)}))
        })
        .expect("holdListen");
        let pk2: [u8; 32] = hex::decode(r["publicKey"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let dht = hdht_tokio::Dht::new(DhtOptions {
            bootstrap: bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: Persistence::Adaptive,
            ..DhtOptions::isolated()
        })
        .await
        .expect("rust node");
        Tokio::timeout(STEP, dht.ready())
            .await
            .expect("bootstrap timed out")
            .expect("a bootstrap node answered");

        // Connections to the doomed server: one the Node side destroys, one with our side
        // ended, one with our side open.
        let kps: Vec<KeyPair> = (0..4u8)
            .map(|i| KeyPair::from_seed(&hash(&[b'k', i])))
            .collect();
        let data = vec![7u8; 64 * 1024];
        let mut conns = Vec::new();
        for kp in &kps[..3] {
            let mut c = connect(&dht, pk, kp).await;
            c.write_all(&data).await.expect("write");
            conns.push(c);
        }
        conns[1].close().await.expect("end our side");
        for kp in &kps[..3] {
            Tokio::blocking(|| {
                wait_held(&doomed, "srv", &kp.public_key(), STEP, |r| {
                    r["bytes"].as_u64() == Some(data.len() as u64)
                })
            });
        }
        // Our end arrived as a clean end.
        Tokio::blocking(|| {
            wait_held(&doomed, "srv", &kps[1].public_key(), STEP, |r| {
                r["ended"] == true
            })
        });

        // The Node side destroys: a reset, not an end; a write fails the same way.
        Tokio::blocking(|| {
            doomed.call(json!({"op": "destroyHeld", "name": "srv",
                "remotePublicKey": hex::encode(kps[0].public_key())}))
        })
        .expect("destroyHeld");
        let took = read_fails(&mut conns[0], std::io::ErrorKind::ConnectionReset, STEP).await;
        let w = conns[0]
            .write(b"late")
            .await
            .expect_err("a write after the reset");
        assert_eq!(w.kind(), std::io::ErrorKind::ConnectionReset, "{w}");
        println!("Node destroyed its side: our read failed (reset) after {took:.2?}");

        // Our side goes away from the surviving server: a dropped connection and an
        // interrupted `hdht connect` abort at once.
        let mut dropped = connect(&dht, pk2, &kps[3]).await;
        dropped.write_all(&data).await.expect("write");
        let cli_seeds = [hash(b"cli interrupted"), hash(b"cli killed")];
        let cli_pks = cli_seeds.map(|s| KeyPair::from_seed(&s).public_key());
        let interrupted = cli_connect(&bootstrap[0], &pk2, &cli_seeds[0]);
        let killed = cli_connect(&bootstrap[0], &pk2, &cli_seeds[1]);
        for remote in [kps[3].public_key(), cli_pks[0], cli_pks[1]] {
            Tokio::blocking(|| {
                wait_held(&peers, "srv2", &remote, STEP, |r| {
                    r["bytes"].as_u64().is_some_and(|b| b > 0)
                })
            });
        }
        drop(dropped);
        kill(interrupted.0.id(), "INT");
        for (what, remote) in [
            ("a dropped Connection", kps[3].public_key()),
            ("an interrupted hdht connect", cli_pks[0]),
        ] {
            let (rec, took) = Tokio::blocking(|| {
                wait_held(&peers, "srv2", &remote, STEP, |r| r["closed"] == true)
            });
            assert_eq!(rec["error"], "ECONNRESET", "{what}: {rec}");
            assert_eq!(rec["ended"], false, "{what}: no clean end: {rec}");
            println!("{what}: the Node peer saw ECONNRESET after {took:.2?}");
        }

        // Deaths without a word, at the same moment: the doomed Node process, and one
        // `hdht connect`.
        kill(doomed.pid(), "KILL");
        kill(killed.0.id(), "KILL");
        let watch_node = std::thread::spawn({
            let remote = cli_pks[1];
            move || {
                let (rec, took) =
                    wait_held(&peers, "srv2", &remote, DETECT, |r| r["closed"] == true);
                (rec, took, peers)
            }
        });
        let mut ended_side = conns.remove(1);
        let mut open_side = conns.remove(1);
        let (a, b) = futures_lite::future::zip(
            read_fails(&mut ended_side, std::io::ErrorKind::TimedOut, DETECT),
            read_fails(&mut open_side, std::io::ErrorKind::TimedOut, DETECT),
        )
        .await;
        println!("Node peer SIGKILLed: our side ended -> timed out after {a:.2?}");
        println!("Node peer SIGKILLed: our side open -> timed out after {b:.2?}");
        let (rec, took, _peers) = Tokio::blocking(|| watch_node.join().expect("watcher"));
        assert_eq!(rec["error"], "ETIMEDOUT", "{rec}");
        assert_eq!(rec["ended"], false, "{rec}");
        println!("hdht connect SIGKILLed: the Node peer saw ETIMEDOUT after {took:.2?}");
        drop(conns);
        dht.destroy().await;
    });
}

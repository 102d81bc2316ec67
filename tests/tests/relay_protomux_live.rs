//! Live Protomux / blind-relay interop with the Node reference (protomux 3.12.1, blind-relay
//! 1.6.1) over in-memory message pipes in a Node process (`tests/interop/relay-pipe.js`): two
//! Node clients pair through the Rust `RelayServer`, and two Rust `RelayClient`s pair through
//! the Node relay server. Frames cross as hex over JSON lines, one frame per pipe write.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use hdht_core::relay::{ClientEvent, RelayClient, RelayEvent, RelayServer};
use hdht_core::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// The Node endpoints, killed when dropped.
struct Pipes {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Pipes {
    fn start() -> Pipes {
        let dir = hdht_tests::interop_dir();
        assert!(
            dir.join("node_modules/blind-relay/package.json").is_file(),
            "the Node reference packages are missing: run `npm ci --prefix tests/interop`"
        );
        let node = std::env::var("HDHT_NODE").unwrap_or_else(|_| "node".into());
        let mut child = Command::new(&node)
            .arg("relay-pipe.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{node}` ({e}): Node.js >= 18 is needed on PATH or in $HDHT_NODE"
                )
            });
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Pipes {
            child,
            stdin,
            lines,
        };
        let ready = p.next_line();
        assert_eq!(ready["ready"], true);
        p
    }

    fn next_line(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("relay-pipe.js answered within 20 s");
        serde_json::from_str(&line).expect("JSON line")
    }

    fn call(&mut self, op: Value) -> Value {
        writeln!(self.stdin, "{op}").unwrap();
        let r = self.next_line();
        assert_eq!(r["ok"], true, "{op} failed: {r}");
        r
    }
}

impl Drop for Pipes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn frames_of(take: &Value) -> Vec<(u64, Vec<u8>)> {
    take["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["pipe"].as_u64().unwrap(),
                hex::decode(f["frame"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn node_clients_pair_through_the_rust_relay() {
    let mut node = Pipes::start();
    let mut server = RelayServer::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let now = Instant::from_millis(1);
    let token = hex::encode([0x5a; 32]);
    // Pipe 1: the initiator (as the hyperdht relay accepts: channel id = the peer's key).
    node.call(json!({"op": "client", "pipe": 1, "id": hex::encode([0xaa; 32])}));
    node.call(json!({"op": "client", "pipe": 2, "id": hex::encode([0xcc; 32])}));
    server.accept(1, Some(&[0xaa; 32])).unwrap();
    server.accept(2, None).unwrap(); // answers whatever id the peer opens with
    node.call(json!({"op": "pair", "pipe": 1, "isInitiator": true, "token": token, "stream": 0x12345678u32}));
    node.call(
        json!({"op": "pair", "pipe": 2, "isInitiator": false, "token": token, "stream": 100}),
    );
    let mut paired = Vec::new();
    for _ in 0..20 {
        let take = node.call(json!({"op": "take"}));
        for p in take["paired"].as_array().unwrap() {
            paired.push((p["pipe"].as_u64().unwrap(), p["id"].as_u64().unwrap()));
        }
        assert!(take["errors"].as_array().unwrap().is_empty(), "{take}");
        let frames = frames_of(&take);
        for (pipe, f) in frames {
            server
                .handle_frame(now, pipe, &f, &mut rng, |_| false)
                .unwrap();
        }
        let mut moved = false;
        while let Some((session, f)) = server.poll_frame() {
            moved = true;
            node.call(json!({"op": "push", "pipe": session, "frame": hex::encode(f)}));
        }
        if paired.len() == 2 && !moved {
            break;
        }
    }
    let Some(RelayEvent::Paired {
        follower: 2,
        initiator: 1,
        follower_stream,
        initiator_stream,
        ..
    }) = server.poll_event()
    else {
        panic!("the Rust relay did not pair the Node clients")
    };
    paired.sort();
    assert_eq!(
        paired,
        vec![
            (1, u64::from(initiator_stream)),
            (2, u64::from(follower_stream))
        ]
    );
    assert_eq!(server.stats().pairings_matched, 1);
    assert_eq!(server.stats().sessions_opened, 2);
    // The Node initiator unpairs: the Rust relay destroys the link.
    node.call(json!({"op": "unpair", "pipe": 1, "token": token}));
    let take = node.call(json!({"op": "take"}));
    for (pipe, f) in frames_of(&take) {
        server
            .handle_frame(now, pipe, &f, &mut rng, |_| false)
            .unwrap();
    }
    assert_eq!(server.relay_streams(), 0);
    assert_eq!(server.stats().pairings_cancelled, 1);
}

#[test]
fn rust_clients_pair_through_the_node_relay() {
    let mut node = Pipes::start();
    let now = Instant::from_millis(1);
    let token = [0x6b; 32];
    node.call(json!({"op": "relay", "pipe": 1}));
    node.call(json!({"op": "relay", "pipe": 2}));
    let mut clients = [RelayClient::new(&[1; 32]), RelayClient::new(&[2; 32])];
    clients[0].pair(now, false, token, 4242).unwrap();
    clients[1].pair(now, true, token, 4343).unwrap();
    let mut paired = [None, None];
    for _ in 0..20 {
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(f) = c.poll_frame() {
                node.call(json!({"op": "push", "pipe": i + 1, "frame": hex::encode(f)}));
            }
        }
        let take = node.call(json!({"op": "take"}));
        for (pipe, f) in frames_of(&take) {
            clients[pipe as usize - 1].handle_frame(&f).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            while let Some(ev) = c.poll_event() {
                match ev {
                    ClientEvent::Opened => {}
                    ClientEvent::Paired {
                        relay_stream_id,
                        token: t,
                        is_initiator,
                    } => {
                        assert_eq!(t, token);
                        assert_eq!(is_initiator, i == 1);
                        paired[i] = Some(relay_stream_id);
                    }
                    other => panic!("client {i}: {other:?}"),
                }
            }
        }
        if paired.iter().all(Option::is_some) {
            let stats = &take["stats"];
            assert_eq!(stats["pairings"]["matched"], 1, "{stats}");
            assert_eq!(stats["sessions"]["opened"], 2, "{stats}");
            break;
        }
    }
    // The Node relay allocates the non-initiator's stream first (ids count up from 1000).
    assert_eq!(paired, [Some(1000), Some(1001)]);
}

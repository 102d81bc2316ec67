//! `tests/vectors/protomux-blind-relay.json` (protomux 3.12.1, blind-relay 1.6.1): the Rust
//! Protomux and blind-relay machines replay each recorded side and must write the same frames,
//! byte for byte, and see the same channel events.

use std::collections::BTreeMap;

use hdht_core::protomux::{Accept, ChannelId, ChannelOptions, Mux, MuxEvent};
use hdht_core::relay::message::{Pair, Unpair};
use hdht_core::relay::{ClientEvent, RelayClient, RelayEvent, RelayServer};
use hdht_core::Instant;
use rand_core::{impls, RngCore};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/protomux-blind-relay.json"
);

fn vectors() -> Value {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn token(v: &Value) -> [u8; 32] {
    unhex(v).try_into().expect("32 bytes")
}

#[test]
fn pair_and_unpair_encodings() {
    let v = vectors();
    for case in v["messages"]["pair"].as_array().unwrap() {
        let p = Pair {
            is_initiator: case["is_initiator"].as_bool().unwrap(),
            token: token(&case["token"]),
            id: case["id"].as_u64().unwrap() as u32,
            seq: case["seq"].as_u64().unwrap(),
        };
        assert_eq!(p.to_vec(), unhex(&case["encoded"]), "{case}");
        assert_eq!(Pair::decode(&unhex(&case["encoded"])), Ok(p));
    }
    for case in v["messages"]["unpair"].as_array().unwrap() {
        let u = Unpair {
            token: token(&case["token"]),
        };
        assert_eq!(u.to_vec(), unhex(&case["encoded"]));
        assert_eq!(Unpair::decode(&unhex(&case["encoded"])), Ok(u));
    }
    for case in v["messages"]["pair_decode"].as_array().unwrap() {
        let p = Pair::decode(&unhex(&case["encoded"])).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            p.is_initiator,
            case["is_initiator"].as_bool().unwrap(),
            "{case}"
        );
        assert_eq!(p.token, token(&case["token"]));
        assert_eq!(u64::from(p.id), case["id"].as_u64().unwrap());
        assert_eq!(p.seq, case["seq"].as_u64().unwrap());
    }
}

/// Registered open handlers: (protocol, id) → (message types, handshake).
type Handlers = BTreeMap<(String, Option<Vec<u8>>), (u32, Vec<u8>)>;

/// One side of a scenario, played by the Rust [`Mux`].
struct Side {
    mux: Mux,
    /// Channels in creation order (as the scenario's `ch` indexes them).
    channels: Vec<ChannelId>,
    /// Registered handlers: (protocol, id) → (message types, handshake).
    handlers: Handlers,
    wrote: Vec<String>,
    events: Vec<Value>,
}

impl Side {
    /// The scenario's index of a channel; a channel a handler accepted is numbered when it
    /// first shows up (the reference numbers it when its handler creates it, just before).
    fn index(&mut self, ch: ChannelId) -> usize {
        if !self.channels.contains(&ch) {
            self.channels.push(ch);
        }
        self.channels.iter().position(|c| *c == ch).unwrap()
    }

    /// Feed one received frame; registered handlers accept as the scenario's `pair` ops do.
    fn receive(&mut self, frame: &[u8]) -> Result<(), hdht_core::protomux::ProtomuxError> {
        let handlers = &self.handlers;
        let r = self.mux.handle_frame_with(frame, &mut |protocol, id| {
            let (types, handshake) = handlers
                .get(&(protocol.to_string(), id.map(<[u8]>::to_vec)))
                .or_else(|| handlers.get(&(protocol.to_string(), None)))?;
            let mut accept = Accept::new(*types);
            accept.handshake = handshake.clone();
            Some(accept)
        });
        if r.is_ok() {
            self.drain();
        }
        r
    }

    fn drain(&mut self) {
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Opened {
                    channel, handshake, ..
                } => {
                    let ch = self.index(channel);
                    self.events.push(serde_json::json!({
                        "ch": ch, "event": "open", "handshake": hex::encode(handshake)
                    }))
                }
                MuxEvent::Message {
                    channel,
                    message_type,
                    body,
                } => {
                    let ch = self.index(channel);
                    self.events.push(serde_json::json!({
                        "ch": ch, "event": "message", "type": message_type, "data": hex::encode(body)
                    }))
                }
                MuxEvent::Closed { channel, remote } => {
                    let ch = self.index(channel);
                    self.events
                        .push(serde_json::json!({ "ch": ch, "event": "close", "remote": remote }))
                }
            }
        }
        while let Some(f) = self.mux.poll_frame() {
            self.wrote.push(hex::encode(f));
        }
    }

    fn op(&mut self, op: &Value) {
        let s = |k: &str| op[k].as_str().unwrap_or_default().to_string();
        let id = op["id"].as_str().map(|h| hex::decode(h).unwrap());
        let types = op["types"].as_u64().unwrap_or(0) as u32;
        let handshake = op["handshake"]
            .as_str()
            .map(|h| hex::decode(h).unwrap())
            .unwrap_or_default();
        match op["op"].as_str().unwrap() {
            "open" => {
                let protocol = s("protocol");
                let mut opts = ChannelOptions::new(&protocol, id.as_deref(), types);
                opts.handshake = &handshake;
                let ch = self.mux.open_channel(opts).expect("open");
                self.channels.push(ch);
            }
            "pair" => {
                self.mux.pair(&s("protocol"), id.as_deref());
                self.handlers
                    .insert((s("protocol"), id), (types, handshake));
            }
            "send" => {
                let ch = self.channels[op["ch"].as_u64().unwrap() as usize];
                let data = hex::decode(s("data")).unwrap();
                self.mux
                    .send(ch, op["type"].as_u64().unwrap() as u32, &data)
                    .expect("send");
            }
            "close" => {
                let ch = self.channels[op["ch"].as_u64().unwrap() as usize];
                self.mux.close(ch);
            }
            "cork" => self.mux.cork(),
            "uncork" => self.mux.uncork(),
            other => panic!("unknown op {other}"),
        }
        self.drain();
    }
}

#[test]
fn scenarios_replay_byte_for_byte() {
    let v = vectors();
    let scenarios = v["scenarios"].as_object().unwrap();
    assert!(scenarios.len() >= 8);
    for (name, steps) in scenarios {
        for me in ["a", "b"] {
            let mut side = Side {
                mux: Mux::new(),
                channels: Vec::new(),
                handlers: BTreeMap::new(),
                wrote: Vec::new(),
                events: Vec::new(),
            };
            let mut want_wrote = Vec::new();
            let mut want_events = Vec::new();
            for step in steps.as_array().unwrap() {
                if step["op"]["side"] == me {
                    side.op(&step["op"]);
                }
                for frame in step["received"][me].as_array().unwrap() {
                    side.receive(&unhex(frame))
                        .unwrap_or_else(|e| panic!("{name}/{me}: {e}"));
                }
                want_wrote.extend(
                    step["wrote"][me]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f.as_str().unwrap().to_string()),
                );
                want_events.extend(step["events"][me].as_array().unwrap().iter().cloned());
            }
            assert_eq!(side.wrote, want_wrote, "{name}: frames written by {me}");
            assert_eq!(side.events, want_events, "{name}: events of {me}");
        }
    }
}

#[test]
fn hostile_frames_end_or_not_as_the_reference() {
    let v = vectors();
    for case in v["hostile"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut side = Side {
            mux: Mux::new(),
            channels: Vec::new(),
            handlers: BTreeMap::new(),
            wrote: Vec::new(),
            events: Vec::new(),
        };
        side.mux.pair("oky", None);
        side.handlers.insert(("oky".into(), None), (0, Vec::new()));
        let mut destroyed = false;
        for frame in case["frames"].as_array().unwrap() {
            if side.receive(&unhex(frame)).is_err() {
                destroyed = true;
                break;
            }
        }
        assert_eq!(destroyed, case["destroyed"].as_bool().unwrap(), "{name}");
        if !destroyed {
            let want: Vec<String> = case["wrote"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().into())
                .collect();
            assert_eq!(side.wrote, want, "{name}");
        }
    }
}

/// Returns the given u32s in order (the reference's fake relay streams count up from one id).
struct Sequence(u32);

impl RngCore for Sequence {
    fn next_u32(&mut self) -> u32 {
        self.0 += 1;
        self.0 - 1
    }
    fn next_u64(&mut self) -> u64 {
        impls::next_u64_via_u32(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        impls::fill_bytes_via_next(self, dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn frames_from<'a>(pipe: &'a Value, from: &str) -> Vec<&'a str> {
    pipe.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["from"] == from)
        .map(|e| e["frame"].as_str().unwrap())
        .collect()
}

#[test]
fn relay_server_replays_the_reference_relay() {
    let v = vectors();
    let r = &v["relay"];
    let ids = r["relay_stream_ids"].as_array().unwrap();
    let mut rng = Sequence(ids[0].as_u64().unwrap() as u32);
    let mut server = RelayServer::default();
    let now = Instant::from_millis(1);
    // Session 1 is the initiator's relay connection, session 2 the follower's; both accept the
    // peer's channel id as the reference's `mux.pair(..., (id) => server.accept(...))` does.
    server.accept(1, None).unwrap();
    server.accept(2, None).unwrap();
    let mut wrote: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut pump = |server: &mut RelayServer| {
        while let Some((s, f)) = server.poll_frame() {
            wrote.entry(s).or_default().push(hex::encode(f));
        }
    };
    for (session, pipe) in [(1, &r["initiator_pipe"]), (2, &r["follower_pipe"])] {
        for f in frames_from(pipe, "client") {
            server
                .handle_frame(now, session, &hex::decode(f).unwrap(), &mut rng, |_| false)
                .unwrap();
            pump(&mut server);
        }
    }
    assert_eq!(wrote[&1], frames_from(&r["initiator_pipe"], "relay"));
    assert_eq!(wrote[&2], frames_from(&r["follower_pipe"], "relay"));
    match server.poll_event() {
        Some(RelayEvent::Paired {
            follower_stream,
            initiator_stream,
            follower: 2,
            initiator: 1,
            ..
        }) => {
            assert_eq!(u64::from(follower_stream), ids[0].as_u64().unwrap());
            assert_eq!(u64::from(initiator_stream), ids[1].as_u64().unwrap());
        }
        other => panic!("expected a pairing, got {other:?}"),
    }
    // The initiator unpairs and ends its channel: the pair is destroyed, the session closes.
    for f in frames_from(&r["after_unpair_and_end"], "client") {
        server
            .handle_frame(now, 1, &hex::decode(f).unwrap(), &mut rng, |_| false)
            .unwrap();
    }
    let stats = server.stats();
    let want = &r["relay_stats"];
    assert_eq!(
        stats.sessions_accepted,
        want["sessions"]["accepted"].as_u64().unwrap()
    );
    assert_eq!(
        stats.sessions_opened,
        want["sessions"]["opened"].as_u64().unwrap()
    );
    assert_eq!(
        stats.sessions_closed,
        want["sessions"]["closed"].as_u64().unwrap()
    );
    assert_eq!(
        stats.pairings_requested,
        want["pairings"]["requested"].as_u64().unwrap()
    );
    assert_eq!(
        stats.pairings_matched,
        want["pairings"]["matched"].as_u64().unwrap()
    );
    assert_eq!(
        stats.pairings_cancelled,
        want["pairings"]["cancelled"].as_u64().unwrap()
    );
    assert_eq!(
        stats.pairings_pending,
        want["pairings"]["pending"].as_u64().unwrap()
    );
    assert_eq!(
        stats.pairings_active,
        want["pairings"]["active"].as_u64().unwrap()
    );
    assert_eq!(
        stats.streams_opened,
        want["streams"]["opened"].as_u64().unwrap()
    );
    assert_eq!(
        stats.streams_closed,
        want["streams"]["closed"].as_u64().unwrap()
    );
    assert_eq!(server.relay_streams(), 0);
    assert_eq!(server.sessions(), 1);
    assert_eq!(
        server.poll_event(),
        Some(RelayEvent::SessionEnded {
            session: 1,
            error: None
        })
    );
}

#[test]
fn relay_clients_replay_the_reference_clients() {
    let v = vectors();
    let r = &v["relay"];
    let tok = token(&r["token"]);
    let now = Instant::from_millis(1);
    for (role, pipe, is_initiator) in [
        ("initiator", &r["initiator_pipe"], true),
        ("follower", &r["follower_pipe"], false),
    ] {
        let mut client = RelayClient::new(&unhex(&r[role]["channel_id"]));
        client
            .pair(
                now,
                is_initiator,
                tok,
                r[role]["stream_id"].as_u64().unwrap() as u32,
            )
            .unwrap();
        let mut wrote = Vec::new();
        while let Some(f) = client.poll_frame() {
            wrote.push(hex::encode(f));
        }
        assert_eq!(wrote, frames_from(pipe, "client"), "{role}");
        for f in frames_from(pipe, "relay") {
            client.handle_frame(&hex::decode(f).unwrap()).unwrap();
        }
        assert_eq!(client.poll_event(), Some(ClientEvent::Opened));
        let want = r["paired"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["client"] == role)
            .unwrap();
        assert_eq!(
            client.poll_event(),
            Some(ClientEvent::Paired {
                token: tok,
                is_initiator,
                relay_stream_id: want["relay_stream_id"].as_u64().unwrap() as u32
            })
        );
        assert_eq!(client.pending(), 0);
        if is_initiator {
            client.unpair(tok).unwrap();
            client.destroy();
            let mut wrote = Vec::new();
            while let Some(f) = client.poll_frame() {
                wrote.push(hex::encode(f));
            }
            assert_eq!(wrote, frames_from(&r["after_unpair_and_end"], "client"));
        }
    }
}

#[test]
fn every_section_is_covered() {
    let v = vectors();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["about", "hostile", "messages", "relay", "scenarios"]);
}

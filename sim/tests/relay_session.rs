//! Warm relay sessions (issue 14): a node keeps its blind-relay session with a relay across
//! pairings, so a second connect through the same relay pairs at once on it.
//!
//! - A server that names the relay opens its session when it listens: its first pairing
//!   already goes at once.
//! - Two random NATs connect through the relay, end the connection, and connect again: the
//!   first connection's pairing is released (the relay holds no relayed pair), both sides'
//!   sessions linger, and the second connect makes no new relay session (no lookup, no
//!   handshake): each side's pair request goes at once on its warm session, and it connects
//!   through the relay and carries bytes. Whether the server or the client names the relay.
//! - A client whose relay session failed between the two connects makes a new one for the
//!   second, which connects.
//!
//! Every run is its own deterministic simulation; `HDHT_SIM_SEED` sets the first seed.

mod logged;
use logged::run_logged;

use hdht_core::dht::RelayPath;
use hdht_sim::replay::Replay;
use hdht_sim::scenario::holepunch::{ClientRelay, HolepunchConfig, SecondConnect};
use hdht_sim::NatPreset;

const FILTER: &str = "hdht_core::dht::node::relay_client=debug";

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn config(seed: u64, server_names: bool, mode: SecondConnect) -> HolepunchConfig {
    let mut cfg = HolepunchConfig::new(NatPreset::Symmetric, NatPreset::Symmetric, seed);
    cfg.relay = true;
    cfg.second_connect = Some(mode);
    if !server_names {
        cfg.server_names_relay = false;
        cfg.client_relay = Some(ClientRelay::TheRelay);
    }
    cfg
}

#[test]
fn a_second_connect_pairs_at_once_on_the_warm_sessions() {
    let replay = Replay::new(
        "relay_session",
        "a_second_connect_pairs_at_once_on_the_warm_sessions",
        1,
    );
    for (i, server_names) in [true, false].into_iter().enumerate() {
        let seed = replay.seed() + i as u64;
        let cfg = config(seed, server_names, SecondConnect::Warm);
        let (r, log) = run_logged(&cfg, FILTER);
        let ctx = format!("seed {seed}, server names the relay: {server_names}");
        assert!(r.connected(), "{ctx}: {:?}\n{log}", r.outcome);
        let second = r.second.as_ref().expect("a second connect");
        assert_eq!(
            second.relay_pairs_between, 0,
            "{ctx}: the first pairing was released on the relay\n{log}"
        );
        assert_eq!(
            second.client_sessions_between,
            (1, 1),
            "{ctx}: the client's session lingers idle\n{log}"
        );
        assert!(second.outcome.is_ok(), "{ctx}: {:?}\n{log}", second.outcome);
        assert_eq!(
            second.relay_path,
            Some(RelayPath::Relayed),
            "{ctx}: through the relay"
        );
        assert!(second.first_byte.is_some(), "{ctx}: bytes arrived");
        assert_eq!(
            count(&log, "relay: a new relay session"),
            2,
            "{ctx}: one session per side, made for the first connect only\n{log}"
        );
        // A server that names the relay keeps its session from `listen` on: its first pair
        // request goes at once too.
        let at_once = if server_names { 3 } else { 2 };
        assert_eq!(
            count(&log, "pair request sent at once on the warm relay session"),
            at_once,
            "{ctx}: both sides' second pair requests went at once\n{log}"
        );
        if server_names {
            assert_eq!(
                count(&log, "the server's relay session opens at listen"),
                1,
                "{ctx}\n{log}"
            );
        }
        assert!(count(&log, "relay: unpair") >= 2, "{ctx}\n{log}");
        eprintln!(
            "{ctx}: first open {:?}, first byte {:?}; second open {:?}, first byte {:?}",
            r.outcome, r.first_byte, second.outcome, second.first_byte
        );
    }
}

#[test]
fn a_failed_relay_session_is_replaced() {
    let replay = Replay::new("relay_session", "a_failed_relay_session_is_replaced", 1);
    let cfg = config(replay.seed(), true, SecondConnect::SessionFailed);
    let (r, log) = run_logged(&cfg, FILTER);
    assert!(r.connected(), "{:?}\n{log}", r.outcome);
    let second = r.second.as_ref().expect("a second connect");
    assert!(second.outcome.is_ok(), "{:?}\n{log}", second.outcome);
    assert_eq!(second.relay_path, Some(RelayPath::Relayed));
    assert!(second.first_byte.is_some(), "bytes arrived");
    assert_eq!(
        count(&log, "relay: a new relay session"),
        3,
        "the client made a new session for the second connect\n{log}"
    );
    assert_eq!(
        count(&log, "pair request sent at once on the warm relay session"),
        2,
        "the server's was warm (from listen) for both connects\n{log}"
    );
}

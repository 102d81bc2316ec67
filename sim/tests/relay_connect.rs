//! Blind relaying in the connect path, in virtual time (issue 14 items 3 and 4): a blind relay
//! runs on one more public node, the server names it (`relayThrough`), 50 ms RTT and 1% loss.
//!
//! - Two random (symmetric) NATs cannot punch: the connection opens through the relay, and
//!   the bytes the client sends after it settled all reach the server, in order.
//! - Two consistent NATs can punch: the connection opens (through the relay or directly,
//!   whichever wins) and ends on a direct path; where it opened through the relay, the same
//!   stream moved to the direct path (`changeRemote`), and the bytes still all arrive.
//! - A server that is open is reached directly: no relay.
//! - A relay the client names (and the server does not): the client starts the relay
//!   connection and its pair request with the connect, before the handshake reply, and the
//!   reply adopts that pairing; a client-named relay the server overrides with its own is let
//!   go and the server's carries the stream.
//! - A connect opens when its stream starts, before the peer's secret-stream header arrives
//!   (as the reference's secret stream), so the first bytes go right behind our header.
//!
//! Every run is its own deterministic simulation; `HDHT_SIM_SEED` sets the first seed.

mod logged;
use logged::run_logged;

use hdht_core::dht::RelayPath;
use hdht_sim::replay::Replay;
use hdht_sim::scenario::holepunch::{run_holepunch, ClientRelay, HolepunchConfig, HolepunchRun};
use hdht_sim::NatPreset;

fn run(client: NatPreset, server: NatPreset, seed: u64) -> HolepunchRun {
    let mut cfg = HolepunchConfig::new(client, server, seed);
    cfg.relay = true;
    run_holepunch(&cfg).expect("the scenario runs")
}

#[test]
fn two_random_nats_connect_through_the_relay() {
    let replay = Replay::new(
        "relay_connect",
        "two_random_nats_connect_through_the_relay",
        1,
    );
    for seed in replay.seed()..replay.seed() + 2 {
        let r = run(NatPreset::Symmetric, NatPreset::Symmetric, seed);
        assert!(r.connected(), "seed {seed}: {:?}", r.outcome);
        assert_eq!(
            r.relay_path,
            Some((Some(RelayPath::Relayed), Some(RelayPath::Relayed))),
            "seed {seed}: the stream runs through the relay"
        );
        assert!(r.first_byte.is_some(), "seed {seed}: bytes arrived");
    }
}

#[test]
fn punchable_nats_end_on_the_direct_path() {
    let replay = Replay::new("relay_connect", "punchable_nats_end_on_the_direct_path", 1);
    let mut upgraded = 0;
    for (i, (c, s)) in [
        (NatPreset::PortRestricted, NatPreset::PortRestricted),
        (NatPreset::FullCone, NatPreset::Symmetric),
        (NatPreset::Cgnat, NatPreset::RestrictedCone),
        (NatPreset::UdpBlocked, NatPreset::PortRestricted),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = replay.seed() + i as u64;
        let r = run(c, s, seed);
        assert!(r.connected(), "{c} -> {s} seed {seed}: {:?}", r.outcome);
        let (at_open, settled) = r.relay_path.expect("a relay run");
        assert!(
            matches!(
                settled,
                Some(RelayPath::Upgraded | RelayPath::Direct) | None
            ),
            "{c} -> {s} seed {seed}: ends direct, not {settled:?} (at open {at_open:?})"
        );
        if at_open == Some(RelayPath::Relayed) {
            assert_eq!(settled, Some(RelayPath::Upgraded), "{c} -> {s} seed {seed}");
        }
        upgraded += usize::from(r.upgraded());
        eprintln!("{c} -> {s} seed {seed}: {at_open:?} -> {settled:?}");
    }
    eprintln!("upgraded {upgraded} of 4");
}

#[test]
fn an_open_server_is_reached_directly() {
    let replay = Replay::new("relay_connect", "an_open_server_is_reached_directly", 1);
    let r = run(NatPreset::Symmetric, NatPreset::Open, replay.seed());
    assert!(r.connected(), "{:?}", r.outcome);
    assert_eq!(r.relay_path, Some((None, None)), "no relay");
}

/// `hdht sim holepunch-matrix --relay` in small: with a relay every cell connects, random ×
/// random and the UDP-blocked firewall included, at 1% loss; the bytes arrive (checked in the
/// run), and the report counts relayed and upgraded connections.
#[test]
fn with_a_relay_every_cell_connects() {
    use hdht_sim::scenario::holepunch::{run_matrix, MatrixConfig};
    let replay = Replay::new("relay_connect", "with_a_relay_every_cell_connects", 1);
    let mut cfg = MatrixConfig::new(replay.seed(), 1);
    cfg.clients = vec![
        NatPreset::Symmetric,
        NatPreset::UdpBlocked,
        NatPreset::PortRestricted,
    ];
    cfg.servers = vec![NatPreset::Symmetric, NatPreset::UdpBlocked];
    cfg.run.relay = true;
    cfg.jobs = 1;
    let report = run_matrix(&cfg, &mut |_| {}, &mut |_| {}).expect("the matrix runs");
    eprintln!("{}", report.table());
    for p in &report.pairs {
        assert_eq!(
            p.successes, p.runs,
            "{} -> {}: {:?}",
            p.client, p.server, p.errors
        );
        assert!(p.first_byte_ms.count > 0, "{} -> {}", p.client, p.server);
    }
    let rr = report
        .pair(NatPreset::Symmetric, NatPreset::Symmetric)
        .expect("the cell");
    assert_eq!(rr.relayed, rr.runs, "random x random crosses the relay");
    assert_eq!(rr.upgraded, 0, "and cannot move off it");
}

/// The client names the relay, the server none (both sides pair with the client's token): the
/// client's pair request leaves before the handshake reply arrives, the reply adopts that
/// pairing (no second relay connection), and the stream runs through the relay.
#[test]
fn a_client_named_relay_pairs_before_the_handshake_reply() {
    let replay = Replay::new(
        "relay_connect",
        "a_client_named_relay_pairs_before_the_handshake_reply",
        1,
    );
    for seed in replay.seed()..replay.seed() + 2 {
        let mut cfg = HolepunchConfig::new(NatPreset::Symmetric, NatPreset::Symmetric, seed);
        cfg.relay = true;
        cfg.server_names_relay = false;
        cfg.client_relay = Some(ClientRelay::TheRelay);
        let (r, log) = run_logged(
            &cfg,
            "hdht_core::dht::node::relay_client=debug,hdht_core::dht::client=debug",
        );
        assert!(r.connected(), "seed {seed}: {:?}\n{log}", r.outcome);
        assert_eq!(
            r.relay_path,
            Some((Some(RelayPath::Relayed), Some(RelayPath::Relayed))),
            "seed {seed}: the stream runs through the relay"
        );
        assert!(r.first_byte.is_some(), "seed {seed}: bytes arrived");
        let lines: Vec<&str> = log.lines().collect();
        let at = |needle: &str, field: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle) && l.contains(field))
                .unwrap_or_else(|| panic!("seed {seed}: no {needle:?} in the log:\n{log}"))
        };
        // The client is the blind-relay initiator here, the server is not.
        let pair = at("relay: pair request sent", "is_initiator=true");
        let adopted = at("the handshake reply confirms our relay", "");
        assert!(
            pair < adopted,
            "seed {seed}: the pair request went before the reply\n{log}"
        );
        let pairs = lines
            .iter()
            .filter(|l| l.contains("relay: pair request sent") && l.contains("is_initiator=true"))
            .count();
        assert_eq!(
            pairs, 1,
            "seed {seed}: one pairing, not a second after the reply\n{log}"
        );
    }
}

/// The client names a relay nobody serves and the server names the run's relay: the server's
/// wins (spec 05 §3.3), the client's early pairing is let go, and the stream runs through the
/// server's relay.
#[test]
fn a_client_named_relay_yields_to_the_servers() {
    let replay = Replay::new(
        "relay_connect",
        "a_client_named_relay_yields_to_the_servers",
        1,
    );
    let mut cfg = HolepunchConfig::new(NatPreset::Symmetric, NatPreset::Symmetric, replay.seed());
    cfg.relay = true;
    cfg.client_relay = Some(ClientRelay::Nobody);
    let (r, log) = run_logged(&cfg, "hdht_core::dht::client=debug");
    assert!(r.connected(), "{:?}\n{log}", r.outcome);
    assert_eq!(
        r.relay_path,
        Some((Some(RelayPath::Relayed), Some(RelayPath::Relayed))),
        "through the server's relay"
    );
    assert!(
        log.contains("the reply chose another relay or none: our early pairing is let go"),
        "{log}"
    );
}

/// The client's connection opens as soon as its stream starts through the relay — before the
/// server's secret-stream header reached it, as the reference's secret stream opens — and the
/// bytes it writes then (right behind its header) all reach the server.
#[test]
fn a_connect_opens_before_the_peers_header() {
    let replay = Replay::new(
        "relay_connect",
        "a_connect_opens_before_the_peers_header",
        1,
    );
    let mut cfg = HolepunchConfig::new(NatPreset::Symmetric, NatPreset::Symmetric, replay.seed());
    cfg.relay = true;
    let (r, log) = run_logged(&cfg, "hdht_core::dht::node=debug");
    assert!(r.connected(), "{:?}\n{log}", r.outcome);
    assert!(r.first_byte.is_some(), "bytes arrived");
    let lines: Vec<&str> = log.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle) && l.contains("relay_conn=false"))
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
    };
    let open = at("connect: open (our header is out");
    let header = at("connect: the peer's secret-stream header arrived");
    assert!(open < header, "open before the peer's header\n{log}");
}

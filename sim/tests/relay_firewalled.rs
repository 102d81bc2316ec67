//! A blind relay that is itself firewalled, in virtual time (issue 14: the kernel-NAT relay
//! bench's `RELAY_ABORTED` pairs through the Node relay, which believed itself firewalled).
//!
//! Every relay connection then punches to the relay, and the relay — hyperdht's server, and
//! ours as the reference — runs at most one random punch per `randomPunchInterval` (20 s):
//! a later relay connection from a randomized NAT gets TRY_LATER to its punch round and,
//! having no relay token of its own to wait with, is aborted. The pairing then fails with
//! `RELAY_ABORTED` unless a punch connects the pair (two symmetric NATs cannot): the relay's
//! limit, not a pairing defect. The client says so in its log.

mod logged;
use logged::run_logged;

use hdht_core::connect::ConnectError;
use hdht_sim::scenario::holepunch::{run_holepunch, HolepunchConfig, HolepunchFailure};
use hdht_sim::NatPreset;

#[test]
fn a_firewalled_relay_throttles_random_relay_connections() {
    let mut cfg = HolepunchConfig::new(NatPreset::Symmetric, NatPreset::Symmetric, 1);
    cfg.relay = true;
    cfg.relay_nat = Some(NatPreset::PortRestricted);
    let (r, log) = run_logged(&cfg, "hdht_core::dht::node::relay_client=debug");
    assert!(
        matches!(
            r.outcome,
            Err(HolepunchFailure::Connect(ConnectError::RelayAborted))
        ),
        "{:?}",
        r.outcome
    );
    assert!(
        log.contains("the relay answered TRY_LATER and aborted our relay connection"),
        "the client names the relay's throttle:\n{log}"
    );
    // The same pair through the same relay when it is open: paired.
    cfg.relay_nat = None;
    let r = run_holepunch(&cfg).expect("the scenario runs");
    assert!(
        r.connected() && r.relayed(),
        "{:?} {:?}",
        r.outcome,
        r.relay_path
    );
}

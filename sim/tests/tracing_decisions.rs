//! The core's decisions are visible at debug level through `tracing`, and watching them changes
//! nothing: a holepunch run with a capturing subscriber says why it failed (both NATs random)
//! or which path it took, and replays with the same trace hash as without one.

mod logged;
use logged::run_logged;

use hdht_core::connect::ConnectError;
use hdht_sim::scenario::holepunch::{run_holepunch, HolepunchConfig, HolepunchFailure};
use hdht_sim::NatPreset;

/// The log lines that contain every one of `parts`.
fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

#[test]
fn a_failed_holepunch_says_why() {
    let cfg = HolepunchConfig::new(NatPreset::Symmetric, NatPreset::Symmetric, 7);
    let (run, log) = run_logged(&cfg, "hdht_core=debug");
    assert_eq!(
        run.outcome,
        Err(HolepunchFailure::Connect(
            ConnectError::HolepunchDoubleRandomizedNats
        ))
    );
    // What each side sampled, the decision, and the outcome, in that order.
    let sampled = lines_with(
        &log,
        &[
            "holepunch: NAT classes as sampled",
            "local=Random",
            "remote=Random",
        ],
    );
    assert!(!sampled.is_empty(), "the NAT classes are logged:\n{log}");
    let abort = lines_with(
        &log,
        &[
            "holepunch: aborting",
            "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS",
            "local=Random",
            "remote=Random",
        ],
    );
    assert_eq!(abort.len(), 1, "the client says why it gives up:\n{log}");
    let failed = lines_with(
        &log,
        &["connect failed", "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS"],
    );
    assert_eq!(
        failed.len(),
        1,
        "the connect's failure and its code:\n{log}"
    );
    let order = |l: &str| log.find(l).unwrap();
    assert!(order(sampled[0]) < order(abort[0]) && order(abort[0]) < order(failed[0]));

    // Watching changed nothing: the same run without a subscriber replays byte for byte.
    let quiet = run_holepunch(&cfg).expect("valid config");
    assert_eq!(quiet.trace_hash, run.trace_hash);
    assert_eq!(quiet.events, run.events);
}

#[test]
fn a_punched_connection_shows_its_path() {
    let cfg = HolepunchConfig::new(NatPreset::PortRestricted, NatPreset::Symmetric, 3);
    let (run, log) = run_logged(&cfg, "hdht_core=debug");
    assert!(run.connected(), "{:?}", run.outcome);
    assert!(
        !lines_with(
            &log,
            &["connect: path holepunch (the server is firewalled)"]
        )
        .is_empty(),
        "{log}"
    );
    assert!(
        !lines_with(
            &log,
            &["holepunch: strategy", "initiator=true", "Ok(RandomProbes)"]
        )
        .is_empty(),
        "the client sprays the random side's ports:\n{log}"
    );
    assert!(
        !lines_with(
            &log,
            &["holepunch: strategy", "initiator=false", "Ok(Birthday)"]
        )
        .is_empty(),
        "the server opens its birthday sockets:\n{log}"
    );
    assert!(
        !lines_with(&log, &["server: handshake accepted, path holepunch"]).is_empty(),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &["connect: path punched"]).len(),
        1,
        "{log}"
    );
    assert!(lines_with(&log, &["connect failed"]).is_empty(), "{log}");
    let quiet = run_holepunch(&cfg).expect("valid config");
    assert_eq!(quiet.trace_hash, run.trace_hash);
}

//! The server's TRY_LATER path, in virtual time (issue 14): a server that names a blind relay
//! and ran a random punch recently (`deferRandomPunch`, so its spacing clock starts when it
//! listens) answers a random punch request with TRY_LATER and its state instead of punching.
//! The connection opens through the relay meanwhile; the client sleeps 10–20 s (hyperdht's
//! `tryLater`) and asks again through the server's relay, and the bytes it sends before and
//! after the retry all reach the server, in order.

mod logged;
use logged::run_logged;

use std::time::Duration;

use hdht_core::dht::RelayPath;
use hdht_sim::scenario::holepunch::HolepunchConfig;
use hdht_sim::NatPreset;

/// The log lines that contain `part`, in order.
fn lines<'a>(log: &'a str, part: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(part)).collect()
}

/// Position of the first line containing `part` at or after line `from`.
fn find_from(log: &[&str], from: usize, part: &str) -> Option<usize> {
    log.iter()
        .skip(from)
        .position(|l| l.contains(part))
        .map(|i| i + from)
}

#[test]
fn a_throttled_server_answers_try_later_and_the_client_retries_through_the_relay() {
    // One side randomizes (a random punch), the other is consistent, so the pair could punch;
    // the server's `deferRandomPunch` throttles it (a 5 s `randomPunchInterval`, so the
    // client's retry 10–20 s later is not throttled again).
    for (i, (c, s)) in [
        (NatPreset::PortRestricted, NatPreset::Symmetric),
        (NatPreset::Symmetric, NatPreset::PortRestricted),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 1 + i as u64;
        let mut cfg = HolepunchConfig::new(c, s, seed);
        cfg.relay = true;
        cfg.server_defers_random_punch = Some(Duration::from_secs(5));
        let (run, log) = run_logged(&cfg, "hdht_core=debug");
        let what = format!("{c} -> {s} seed {seed}");
        // The connection opens through the relay and every byte (half before the retry, half
        // after it: the run settles 20 s in between) reaches the server, in order.
        assert!(run.connected(), "{what}: {:?}", run.outcome);
        assert_eq!(
            run.relay_path.map(|p| p.0),
            Some(Some(RelayPath::Relayed)),
            "{what}: the connection opens through the relay"
        );
        assert!(run.first_byte.is_some(), "{what}: bytes arrived");
        // The server answered the punch request with TRY_LATER (its state, not an abort) …
        let all: Vec<&str> = log.lines().collect();
        let answered = find_from(
            &all,
            0,
            "a random punch ran recently (throttled): TRY_LATER, the relay carries the stream",
        )
        .unwrap_or_else(|| panic!("{what}: the server did not answer TRY_LATER\n{log}"));
        // … the client took it as "wait and punch again" …
        let took = find_from(&all, answered, "the server is busy punching (TRY_LATER)")
            .unwrap_or_else(|| panic!("{what}: the client did not take the TRY_LATER\n{log}"));
        let later = find_from(&all, took, "trying the punch again later")
            .unwrap_or_else(|| panic!("{what}: the client scheduled no retry\n{log}"));
        let delay: u64 = all[later]
            .split("delay_ms=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no delay in {:?}", all[later]));
        assert!(
            (10_000..=20_000).contains(&delay),
            "{what}: the retry waits the reference's 10–20 s, not {delay} ms"
        );
        // … and 10–20 s later asked again (the second round, through the server's relay,
        // without a token) and got the server's answer: after TRY_LATER no address of the
        // server is verified, so the consistent side cannot punch a random one
        // (REMOTE_NOT_HOLEPUNCHABLE, as in hyperdht 6.34.0) and the relay keeps the stream.
        let retried = find_from(&all, later, "round=2")
            .unwrap_or_else(|| panic!("{what}: the second round never ran\n{log}"));
        assert!(
            all[retried].contains("REMOTE_NOT_HOLEPUNCHABLE"),
            "{what}: {}",
            all[retried]
        );
        assert_eq!(
            lines(&log, "TRY_LATER, the relay carries the stream").len(),
            1,
            "{what}: the retry is not throttled again (the server's 5 s passed)"
        );
        assert_eq!(
            run.relay_path.map(|p| p.1),
            Some(Some(RelayPath::Relayed)),
            "{what}: the relay still carries the stream after the retry"
        );
    }
}

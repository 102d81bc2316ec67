//! UDX transfers through the simulator (issue "Encrypted streams"): a client and a server, each
//! one socket + one UDX stream + a secret stream keyed by a real Noise IK handshake, move a
//! deterministic byte pattern with back-pressure over links with loss, reordering, jitter and
//! duplication, through NATs, and across a NAT rebinding. Every byte is checked; both ends END
//! and the streams close gracefully.

mod common;

use std::time::Duration;

use common::{Outcome, Setup, Transfer};
use hdht_core::udx::{StreamConfig, StreamError};
use hdht_sim::replay::Replay;
use hdht_sim::{DropReason, LinkModel, NatPreset};

const MIB: u64 = 1 << 20;

/// 20 ms one-way base latency, up to 5 ms of access delay per endpoint, 4 ms of per-datagram
/// jitter (datagrams sent within 4 ms of each other overtake one another), 2% of datagrams held
/// back 8 ms (reordered), the given loss and duplication.
fn rough_link(loss: f64, duplicate: f64) -> LinkModel {
    LinkModel {
        latency: Duration::from_millis(20),
        access: Duration::from_millis(5),
        jitter: Duration::from_millis(4),
        reorder: 0.02,
        reorder_delay: Duration::from_millis(8),
        loss,
        duplicate,
        ..LinkModel::default()
    }
}

fn secs(d_us: u64) -> f64 {
    d_us as f64 / 1e6
}

/// Runs a transfer to its graceful close and checks every byte; returns it for inspection.
fn complete(name: &str, seed: u64, setup: &Setup, limit: Duration) -> Transfer {
    let mut t = Transfer::new(seed, setup);
    let ok = t.run_until(limit, Duration::from_millis(250), Transfer::both_closed);
    let (c, s) = (t.client(), t.server());
    let cs = c.stream().stats();
    assert!(
        ok,
        "{name}: no close within {limit:?} of simulated time: server got {} of {} bytes, client got {} of {}, \
         client cwnd {} srtt {:?} rto {:?} send_buffered {} stats {cs:?}",
        s.received,
        setup.upload,
        c.received,
        setup.download,
        c.stream().cwnd(),
        c.stream().srtt(),
        c.stream().rto(),
        c.stream().send_buffered(),
    );
    for (side, p, want) in [("server", s, setup.upload), ("client", c, setup.download)] {
        assert_eq!(p.mismatch, None, "{name}: {side} saw a wrong byte");
        assert_eq!(p.secret_error, None, "{name}: {side} secret-stream error");
        assert_eq!(p.received, want, "{name}: {side} byte count");
        assert!(
            p.done(),
            "{name}: {side} not done: eof {} closed {:?}",
            p.eof,
            p.closed
        );
    }
    let done_us = s
        .complete_at
        .expect("server complete")
        .as_micros()
        .max(c.complete_at.map_or(0, |t| t.as_micros()));
    let closed_us = c
        .closed
        .unwrap()
        .0
        .as_micros()
        .max(s.closed.unwrap().0.as_micros());
    let bytes = setup.upload + setup.download;
    let st = t.sim.stats();
    println!(
        "{name:<28} {:>5.1} MiB in {:>7.3} s simulated (closed at {:>7.3} s): goodput {:>8.3} MB/s; \
         sent {} pkts, {} retransmits ({:.2}%), {} TLPs, {} RTOs; server dup/stale {}; datagrams sent {} lost {} duplicated {}",
        bytes as f64 / MIB as f64,
        secs(done_us),
        secs(closed_us),
        bytes as f64 / secs(done_us) / 1e6,
        cs.packets_sent,
        cs.retransmits,
        100.0 * cs.retransmits as f64 / cs.packets_sent.max(1) as f64,
        cs.tlp_probes,
        cs.rto_expiries,
        s.stream().stats().recv_duplicates,
        st.sent,
        st.dropped(DropReason::Loss),
        st.duplicated,
    );
    t
}

fn lossy_case(test: &'static str, default_seed: u64, loss: f64, duplicate: f64, limit_s: u64) {
    let replay = Replay::new("udx_transfer", test, default_seed);
    let setup = Setup {
        link: rough_link(loss, duplicate),
        upload: 4 * MIB,
        ..Setup::default()
    };
    let t = complete(test, replay.seed(), &setup, Duration::from_secs(limit_s));
    if loss > 0.0 {
        assert!(t.sim.stats().dropped(DropReason::Loss) > 0);
        assert!(t.client().stream().stats().retransmits > 0);
    }
    if duplicate > 0.0 {
        assert!(t.sim.stats().duplicated > 0);
        assert!(t.server().stream().stats().recv_duplicates > 0);
    }
}

#[test]
fn transfer_0pct_loss_with_reordering_and_jitter() {
    lossy_case(
        "transfer_0pct_loss_with_reordering_and_jitter",
        100,
        0.0,
        0.0,
        60,
    );
}

#[test]
fn transfer_1pct_loss_with_reordering_and_jitter() {
    lossy_case(
        "transfer_1pct_loss_with_reordering_and_jitter",
        101,
        0.01,
        0.0,
        120,
    );
}

#[test]
fn transfer_2pct_loss_with_reordering_and_jitter() {
    lossy_case(
        "transfer_2pct_loss_with_reordering_and_jitter",
        102,
        0.02,
        0.0,
        180,
    );
}

#[test]
fn transfer_5pct_loss_with_reordering_and_jitter() {
    lossy_case(
        "transfer_5pct_loss_with_reordering_and_jitter",
        105,
        0.05,
        0.0,
        300,
    );
}

#[test]
fn transfer_2pct_loss_with_duplication_reordering_and_jitter() {
    lossy_case(
        "transfer_2pct_loss_with_duplication_reordering_and_jitter",
        106,
        0.02,
        0.02,
        180,
    );
}

#[test]
fn both_directions_at_once_through_a_port_restricted_nat_with_loss() {
    let test = "both_directions_at_once_through_a_port_restricted_nat_with_loss";
    let replay = Replay::new("udx_transfer", test, 107);
    let setup = Setup {
        link: rough_link(0.02, 0.01),
        client_nat: Some(NatPreset::PortRestricted),
        upload: 2 * MIB,
        download: 2 * MIB,
        ..Setup::default()
    };
    complete(test, replay.seed(), &setup, Duration::from_secs(180));
}

#[test]
fn same_seed_same_trace_and_final_state() {
    let test = "same_seed_same_trace_and_final_state";
    let replay = Replay::new("udx_transfer", test, 108);
    let setup = Setup {
        link: rough_link(0.03, 0.01),
        client_nat: Some(NatPreset::FullCone),
        upload: MIB,
        download: MIB / 4,
        ..Setup::default()
    };
    let run = |seed| Outcome::of(&complete(test, seed, &setup, Duration::from_secs(180)));
    let a = run(replay.seed());
    let b = run(replay.seed());
    assert_eq!(a, b, "same seed, different run");
    let c = run(replay.seed() ^ 0x5555);
    assert_ne!(a.trace, c.trace, "another seed should give another trace");
}

// ---------------------------------------------------------------------------------------------
// NAT rebinding.
//
// What the reference does (libudx `process_packet`, holepunchto/libudx src/udx.c): a packet is
// matched to a stream by the stream id alone. Its source address is never compared with
// `stream->remote_addr`; the firewall hook runs only when it arrives on a *different socket*.
// Every packet the stream sends (data, retransmissions, ACKs) goes to `stream->remote_addr`,
// which only `udx_stream_connect` / `udx_stream_change_remote` set. hyperdht (6.x) calls
// `rawStream.changeRemote` only when a relayed connection is upgraded to a holepunched one, and
// `@hyperswarm/secret-stream` knows nothing of addresses. So after an unannounced rebinding of
// the client's NAT, the server still accepts the client's packets (now from the new public
// port) but answers to the old one, which the NAT no longer maps: the client never hears
// another ACK, its RTOs back off and after 6 it fails with ETIMEDOUT; the server, with nothing
// in flight, is killed the same way once its 5 s secret-stream keep-alive frame goes
// unacknowledged (in a download the roles swap: the server's data goes unacknowledged, the
// client's keep-alive kills the client). The reference survives a rebinding only when the owner is told the new
// address and calls `changeRemote`.
//
// hdht does the same: `Demux::handle_datagram` hands a packet that arrives on the stream's own
// socket to the stream whatever its source, `UdxStream::handle_packet` ignores the source, and
// replies go to the recorded remote until `change_remote`. The two tests below pin both halves.

/// Client behind `preset` uploads and/or downloads; once 1 MiB has arrived in each active
/// direction, the client's NAT moves every mapping to a new public port.
fn rebind_mid_transfer(
    seed: u64,
    preset: NatPreset,
    upload: u64,
    download: u64,
) -> (Transfer, std::net::SocketAddrV4, std::net::SocketAddrV4) {
    let setup = Setup {
        link: rough_link(0.0, 0.0),
        client_nat: Some(preset),
        upload,
        download,
        ..Setup::default()
    };
    let mut t = Transfer::new(seed, &setup);
    let reached = t.run_until(Duration::from_secs(30), Duration::from_millis(5), |t| {
        t.server().received >= MIB.min(upload) && t.client().received >= MIB.min(download)
    });
    assert!(reached, "transfer did not get going");
    let before = t.client_public().expect("client mapping");
    assert_eq!(t.server().stream().remote_addr(), Some(before.into()));
    t.sim.rebind_nat(t.nat.expect("nat")).expect("rebind");
    let after = t.client_public().expect("client mapping after rebind");
    assert_ne!(before, after, "rebinding must move the mapping");
    (t, before, after)
}

#[test]
fn unannounced_nat_rebinding_kills_the_stream_as_in_libudx() {
    let test = "unannounced_nat_rebinding_kills_the_stream_as_in_libudx";
    let replay = Replay::new("udx_transfer", test, 109);
    for (preset, upload, download) in [
        (NatPreset::PortRestricted, 4 * MIB, 0),
        (NatPreset::FullCone, 0, 4 * MIB),
    ] {
        let (mut t, before, after) = rebind_mid_transfer(replay.seed(), preset, upload, download);
        let at = t.sim.now();
        let nat_drops = t.sim.stats().dropped(DropReason::NatNoMapping);
        let closed = t.run_until(
            Duration::from_secs(300),
            Duration::from_millis(500),
            Transfer::both_closed,
        );
        assert!(closed, "{preset:?}: both ends should give up");
        let (c, s) = (t.client(), t.server());
        // The server kept answering to the old mapping (it never adopts a packet's source),
        // and the NAT dropped all of it.
        assert_eq!(
            s.stream().remote_addr(),
            Some(before.into()),
            "{preset:?}: new mapping {after}"
        );
        assert!(
            t.sim.stats().dropped(DropReason::NatNoMapping) > nat_drops + 5,
            "{preset:?}: server packets to the old mapping"
        );
        for (side, p) in [("client", c), ("server", s)] {
            let (when, error) = p.closed.unwrap();
            assert_eq!(
                error,
                Some(StreamError::TimedOut),
                "{preset:?}: {side} should time out"
            );
            println!(
                "{preset:?} rebinding at {:.3} s: {side} timed out at {:.3} s having received {} bytes",
                secs(at.as_micros()),
                secs(when.as_micros()),
                p.received
            );
            assert_eq!(
                p.mismatch, None,
                "{preset:?}: {side}: what did arrive is intact"
            );
        }
        let (total, got) = if upload > 0 {
            (upload, s.received)
        } else {
            (download, c.received)
        };
        assert!(
            got < total,
            "{preset:?}: the transfer cannot have completed"
        );
        // The side behind the NAT gives up after libudx's 6 backed-off RTOs, well within a minute
        // (RTO 1 s minimum, doubled each time).
        assert!(c.closed.unwrap().0.as_micros() - at.as_micros() < 120_000_000);
    }
}

#[test]
fn nat_rebinding_survives_when_the_owner_changes_the_remote() {
    let test = "nat_rebinding_survives_when_the_owner_changes_the_remote";
    let replay = Replay::new("udx_transfer", test, 110);
    for (preset, upload, download) in [
        (NatPreset::PortRestricted, 4 * MIB, 0),
        (NatPreset::FullCone, 0, 4 * MIB),
        (NatPreset::RestrictedCone, 2 * MIB, 2 * MIB),
    ] {
        let (mut t, _before, after) = rebind_mid_transfer(replay.seed(), preset, upload, download);
        // Some time passes before the server's owner learns the new address (hyperdht would
        // learn it by signalling, as when it upgrades a relayed connection) and calls
        // `changeRemote`; meanwhile everything it sends is lost at the NAT.
        t.run_until(
            Duration::from_millis(300),
            Duration::from_millis(300),
            |_| false,
        );
        let now = t.sim.now();
        t.sim.with_node(t.server, |app, now2| {
            assert_eq!(now, now2);
            app.change_remote(now2, after)
        });
        let ok = t.run_until(
            Duration::from_secs(120),
            Duration::from_millis(250),
            Transfer::both_closed,
        );
        assert!(ok, "{preset:?}: transfer should finish after change_remote");
        let (c, s) = (t.client(), t.server());
        assert_eq!(s.stream().remote_addr(), Some(after.into()));
        assert!(s.remote_changed_at.is_some(), "{preset:?}: RemoteChanged");
        for (side, p, want) in [("server", s, upload), ("client", c, download)] {
            assert_eq!(p.mismatch, None, "{preset:?} {side}");
            assert_eq!(p.received, want, "{preset:?} {side}");
            assert!(p.done(), "{preset:?} {side}: {:?}", p.closed);
        }
        println!(
            "{preset:?} rebinding + change_remote: complete at {:.3} s (server rto expiries {}, client rto expiries {})",
            secs(s.complete_at.unwrap().as_micros().max(c.complete_at.map_or(0, |t| t.as_micros()))),
            s.stream().stats().rto_expiries,
            c.stream().stats().rto_expiries
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The pitfalls, at the UDX level, in simulated time.

/// "A pacer whose refill or timer granularity is a whole millisecond caps a sender near one
/// packet per millisecond": on a 1 ms round trip without loss, one packet per millisecond would
/// be ~1.2 MB/s. The simulator has no bandwidth limit, so the only caps are the windows and the
/// pacer.
#[test]
fn pacer_does_not_cap_the_sender_at_one_packet_per_millisecond() {
    let test = "pacer_does_not_cap_the_sender_at_one_packet_per_millisecond";
    let replay = Replay::new("udx_transfer", test, 111);
    let link = LinkModel {
        latency: Duration::from_micros(500),
        jitter: Duration::ZERO,
        ..LinkModel::default()
    };
    let setup = Setup {
        link,
        upload: 16 * MIB,
        ..Setup::default()
    };
    let t = complete(test, replay.seed(), &setup, Duration::from_secs(30));
    let s = t.server();
    let elapsed = secs(s.complete_at.unwrap().as_micros());
    let goodput = (16 * MIB) as f64 / elapsed;
    let one_packet_per_ms = t.client().stream().max_payload() as f64 * 1000.0;
    assert!(
        goodput > 20.0 * one_packet_per_ms,
        "goodput {goodput:.0} B/s is not far above one packet per millisecond ({one_packet_per_ms:.0} B/s)"
    );
    assert!(t.client().stream().pacing_rate() as f64 > 20.0 * one_packet_per_ms);
}

/// "A receiver that always advertises a full window and buffers without limit grows without
/// bound": a server that never reads. The sender must stop once the advertised window is used
/// up (zero-window probes keep the stream alive), the receiver's buffer stays bounded, and once
/// the receiver reads, everything arrives.
///
/// With 1% loss and per-datagram jitter this found two hdht-core bugs in the bounded receive
/// window (libudx's receiver buffers without limit, so it has neither), fixed in
/// `core/src/udx/stream.rs`: a reordered older ACK (same cumulative ack, larger free space)
/// let the sender overrun the window, and the receiver refused the packet filling the hole in
/// front of a window full of out-of-order data; the overrun packets were never acknowledged and
/// the stream timed out after 6 RTOs while the receiver merely paused.
#[test]
fn a_receiver_that_never_reads_stays_bounded_and_the_sender_stops() {
    let test = "a_receiver_that_never_reads_stays_bounded_and_the_sender_stops";
    let replay = Replay::new("udx_transfer", test, 112);
    const WINDOW: usize = 256 * 1024;
    const SLACK: usize = 2048;
    let setup = Setup {
        link: rough_link(0.01, 0.0),
        upload: 4 * MIB,
        server_reads: false,
        server_stream: StreamConfig {
            recv_window: WINDOW,
            ..StreamConfig::default()
        },
        client_stream: StreamConfig {
            send_buffer: 512 * 1024,
            ..StreamConfig::default()
        },
        ..Setup::default()
    };
    let mut t = Transfer::new(replay.seed(), &setup);
    // 20 s of simulated time without reading.
    let mut sent_at_5s = None;
    t.run_until(Duration::from_secs(20), Duration::from_millis(100), |t| {
        assert!(
            t.server().stream().recv_buffered() <= WINDOW + SLACK,
            "receiver buffer grew to {}",
            t.server().stream().recv_buffered()
        );
        assert!(t.client().stream().send_buffered() <= 512 * 1024);
        if sent_at_5s.is_none() && t.sim.now().as_micros() >= 5_000_000 {
            sent_at_5s = Some(t.client().stream().stats().packets_sent);
        }
        false
    });
    let (c, s) = (t.client(), t.server());
    assert!(c.write_blocked > 0, "the writer must be pushed back");
    assert_eq!(
        c.stream().send_window(),
        0,
        "the receiver advertises a closed window"
    );
    assert!(s.max_recv_buffered <= WINDOW + SLACK);
    assert!(
        s.stream().stats().max_recv_buffered >= WINDOW / 2,
        "the window was used"
    );
    assert_eq!(s.received, 0);
    // The sender stopped: between 5 s and 20 s it sent no new data.
    assert_eq!(
        Some(c.stream().stats().packets_sent),
        sent_at_5s,
        "sender kept sending into a closed window"
    );
    assert!(
        c.stream().stats().heartbeats_sent >= 1,
        "zero-window probes"
    );
    assert!(
        c.closed.is_none() && s.closed.is_none(),
        "the stream stays up"
    );
    println!(
        "non-reading receiver: buffered {} bytes (window {WINDOW}), sender stopped after {} packets, {} zero-window probes",
        s.stream().stats().max_recv_buffered,
        c.stream().stats().packets_sent,
        c.stream().stats().heartbeats_sent
    );
    // The receiver starts reading: the transfer completes.
    let server = t.server;
    t.sim
        .with_node(server, |app, now| app.set_reading(now, true));
    let ok = t.run_until(
        Duration::from_secs(240),
        Duration::from_millis(250),
        Transfer::both_closed,
    );
    assert!(ok, "transfer should finish once the receiver reads");
    let s = t.server();
    assert_eq!(s.mismatch, None);
    assert_eq!(s.received, 4 * MIB);
    assert!(s.done() && t.client().done());
    assert!(s.max_recv_buffered <= WINDOW + SLACK);
}

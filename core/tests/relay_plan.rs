//! The relay decision (spec 05 §2.1, §3.3): selectors as the reference's key / array /
//! function, the role table, and when each side skips relaying.

use hdht_core::connect::{Firewall, NoisePayload, RelayThroughInfo};
use hdht_core::relay::{client_plan, server_plan, ClientView, RelayPlan, RelaySelector};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn info(key: u8, token: u8) -> RelayThroughInfo {
    RelayThroughInfo {
        version: 1,
        public_key: [key; 32],
        token: [token; 32],
    }
}

const RELAYED_VIEW: ClientView = ClientView {
    direct: false,
    server_firewall: Firewall::Consistent,
    like_reference: false,
};

#[test]
fn selectors_pick_like_the_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(RelaySelector::Key([7; 32]).select(&mut rng), Some([7; 32]));
    assert_eq!(RelaySelector::List(Vec::new()).select(&mut rng), None);
    // Every element of a list is drawn, roughly uniformly.
    let mut list = RelaySelector::List((0..4u8).map(|i| [i; 32]).collect());
    let mut seen = [0u32; 4];
    for _ in 0..4000 {
        seen[usize::from(list.select(&mut rng).unwrap()[0])] += 1;
    }
    assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    let calls = std::sync::atomic::AtomicU32::new(0);
    let mut cb = RelaySelector::Callback(std::sync::Arc::new(move || {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        (n % 2 == 0).then_some([9; 32])
    }));
    assert_eq!(cb.select(&mut rng), None);
    assert_eq!(cb.select(&mut rng), Some([9; 32]));
}

#[test]
fn a_drawn_relay_through_is_deterministic_and_encodes() {
    let draw = |seed| {
        RelaySelector::Key([0xaa; 32])
            .draw(&mut ChaCha8Rng::seed_from_u64(seed))
            .unwrap()
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5).token, draw(6).token);
    assert_eq!(draw(5).version, 1);
    assert!(RelaySelector::List(Vec::new())
        .draw(&mut ChaCha8Rng::seed_from_u64(5))
        .is_none());
    // It goes into the Noise payload as bit 5: `01 00 key token`.
    let p = NoisePayload {
        relay_through: Some(draw(5)),
        ..NoisePayload::default()
    };
    let bytes = p.to_bytes();
    let tail = &bytes[bytes.len() - 66..];
    assert_eq!(&tail[..2], &[1, 0]);
    assert_eq!(&tail[2..34], &[0xaa; 32]);
    assert_eq!(&tail[34..], &draw(5).token);
    assert_eq!(
        NoisePayload::decode(&bytes).unwrap().relay_through,
        Some(draw(5))
    );
}

#[test]
fn the_role_table() {
    let (c, s) = (info(1, 11), info(2, 22));
    // Client only: the client's relay, client initiator.
    let cp = client_plan(Some(&c), None, RELAYED_VIEW);
    let sp = server_plan(None, Some(&c), 0, Firewall::Random, false);
    assert_eq!(
        cp,
        Some(RelayPlan {
            relay: [1; 32],
            token: [11; 32],
            is_initiator: true
        })
    );
    assert_eq!(
        sp,
        Some(RelayPlan {
            relay: [1; 32],
            token: [11; 32],
            is_initiator: false
        })
    );
    // Server only: the server's relay, server initiator.
    let cp = client_plan(None, Some(&s), RELAYED_VIEW);
    let sp = server_plan(Some(&s), None, 0, Firewall::Random, false);
    assert_eq!(
        cp,
        Some(RelayPlan {
            relay: [2; 32],
            token: [22; 32],
            is_initiator: false
        })
    );
    assert_eq!(
        sp,
        Some(RelayPlan {
            relay: [2; 32],
            token: [22; 32],
            is_initiator: true
        })
    );
    // Both: the server's wins, on both sides.
    let cp = client_plan(Some(&c), Some(&s), RELAYED_VIEW).unwrap();
    let sp = server_plan(Some(&s), Some(&c), 0, Firewall::Random, false).unwrap();
    assert_eq!(
        (cp.relay, cp.token, cp.is_initiator),
        ([2; 32], [22; 32], false)
    );
    assert_eq!(
        (sp.relay, sp.token, sp.is_initiator),
        ([2; 32], [22; 32], true)
    );
    // Neither.
    assert_eq!(client_plan(None, None, RELAYED_VIEW), None);
    assert_eq!(server_plan(None, None, 0, Firewall::Random, false), None);
}

#[test]
fn when_each_side_skips() {
    let s = info(2, 22);
    // The server skips on an error reply, an OPEN client, or a direct handshake (PR #220).
    assert_eq!(
        server_plan(Some(&s), None, 1, Firewall::Random, false),
        None
    );
    assert_eq!(server_plan(Some(&s), None, 0, Firewall::Open, false), None);
    assert_eq!(server_plan(Some(&s), None, 0, Firewall::Random, true), None);
    assert!(server_plan(Some(&s), None, 0, Firewall::Unknown, false).is_some());
    // The client skips when the server answered directly or is OPEN — unless asked to behave
    // like the reference, which relays anyway.
    for view in [
        ClientView {
            direct: true,
            ..RELAYED_VIEW
        },
        ClientView {
            server_firewall: Firewall::Open,
            ..RELAYED_VIEW
        },
    ] {
        assert_eq!(client_plan(None, Some(&s), view), None);
        assert!(client_plan(
            None,
            Some(&s),
            ClientView {
                like_reference: true,
                ..view
            }
        )
        .is_some());
    }
}

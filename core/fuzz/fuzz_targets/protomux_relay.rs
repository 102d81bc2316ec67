//! Protomux sessions and the blind relay on arbitrary frames.
//!
//! Byte 0 = flags: bits 0–1 pick the machine (0: a bare `Mux` with an open handler and a
//! channel of its own, 1: a `RelayServer` session next to an honest pair, 2: a `RelayClient`,
//! 3: a `RelayServer` session whose frames are also fed to the forwarder as datagrams). The rest
//! is a sequence of frames, each `u8 length ‖ bytes`.
//!
//! Checked: no panic; an error ends the session for good (later frames are refused); no early
//! message outlives its frame; the relay's pending entries stay within
//! its limits and its relay streams within twice the relayed-pair limit.
#![no_main]

use hdht_core::protomux::{Accept, ChannelOptions, Mux, ProtomuxError};
use hdht_core::relay::{RelayClient, RelayLimits, RelayServer};
use hdht_core::udx::SocketId;
use hdht_core::Instant;
use libfuzzer_sys::fuzz_target;
use rand_core::{impls, RngCore};

/// A fixed, cheap RNG: the fuzzer explores the input, not the ids.
struct Counter(u32);
impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0
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

fn frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&len, tail) = rest.split_first()?;
        let len = usize::from(len).min(tail.len());
        let (f, r) = tail.split_at(len);
        rest = r;
        Some(f)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let now = Instant::from_millis(1);
    match flags & 3 {
        0 => {
            let mut mux = Mux::new();
            mux.pair("oky", None);
            let mine = mux.open_channel(ChannelOptions::new("blind-relay", None, 2)).unwrap();
            let mut ended = false;
            for f in frames(data) {
                let r = mux.handle_frame_with(f, &mut |_, _| Some(Accept::new(3)));
                match r {
                    Ok(()) => assert!(!ended),
                    Err(ProtomuxError::Destroyed) => assert!(ended),
                    Err(_) => {
                        assert!(!ended);
                        ended = true;
                        assert!(!mux.is_live(mine));
                    }
                }
                assert_eq!(mux.early_message_bytes(), 0);
                while mux.poll_event().is_some() {}
                while mux.poll_frame().is_some() {}
                let _ = mux.send(mine, 1, f);
            }
        }
        1 | 3 => {
            let limits = RelayLimits {
                pending_per_session: 4,
                pending_total: 8,
                relayed_pairs: 2,
                ..RelayLimits::default()
            };
            let mut server = RelayServer::new(limits);
            let mut rng = Counter(u32::from(flags));
            server.accept(1, None).unwrap();
            server.accept(2, Some(&[2; 32])).unwrap();
            let mut honest = RelayClient::new(&[2; 32]);
            let _ = honest.pair(now, false, [0x11; 32], 77);
            while let Some(f) = honest.poll_frame() {
                server.handle_frame(now, 2, &f, &mut rng, |_| false).unwrap();
            }
            let mut ended = false;
            let from = "1.2.3.4:5".parse().unwrap();
            for f in frames(data) {
                match server.handle_frame(now, 1, f, &mut rng, |id| id % 7 == 0) {
                    Ok(()) => assert!(!ended),
                    Err(_) if ended => {}
                    Err(_) => ended = true,
                }
                if flags & 3 == 3 {
                    let mut d = f.to_vec();
                    let _ = server.forward_in_place(SocketId(u32::from(flags >> 4)), from, &mut d);
                    let _ = server.handle_datagram(SocketId(0), from, f);
                    let mut buf = [0u8; 2048];
                    while server.poll_transmit(&mut buf).is_some() {}
                }
                while server.poll_frame().is_some() {}
                while server.poll_event().is_some() {}
                assert!(server.pending() <= limits.pending_total);
                assert!(server.relay_streams() <= 2 * limits.relayed_pairs);
            }
            server.handle_timeout(now + limits.pairing_timeout);
            assert_eq!(server.pending(), 0);
            server.close_session(1);
            server.close_session(2);
            assert_eq!(server.relay_streams(), 0);
            assert_eq!(server.sessions(), 0);
        }
        _ => {
            let mut client = RelayClient::new(&[1; 32]);
            let _ = client.pair(now, true, [0x11; 32], 5);
            for f in frames(data) {
                let _ = client.handle_frame(f);
                while client.poll_event().is_some() {}
                while client.poll_frame().is_some() {}
            }
            client.handle_timeout(now + hdht_core::relay::PAIRING_TIMEOUT);
            assert_eq!(client.pending(), 0);
        }
    }
});

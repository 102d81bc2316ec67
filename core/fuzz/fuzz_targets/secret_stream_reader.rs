//! `hdht_core::secret_stream::SecretStream`'s frame reader on arbitrary bytes.
//!
//! Byte 0 = flags: bit 0 prefixes the peer's valid header frame, bit 1 also two valid message
//! frames (so the fuzzer reaches the message path), bits 2–3 pick `max_frame_len` (64, 4096,
//! 65536, 2^24 − 1), bit 4 reads per message instead of into one byte buffer, bit 5 turns the
//! run into a round trip (with the default limit; the rest is split into plaintexts by byte 2, written by the peer and
//! must read back exactly). Byte 1 = chunk size (0: all at once). The rest is the input.
//!
//! Checked: no panic; the reader's buffers never exceed twice `max_frame_len`; plaintext out is
//! never more than the bytes in; an error leaves the stream destroyed and refusing more input.
#![no_main]

use hdht_core::secret_stream::{Config, HandshakeKeys, SecretStream, SecretStreamError, MAX_FRAME_LEN};
use hdht_core::Instant;
use libfuzzer_sys::fuzz_target;
use rand_core::{CryptoRng, RngCore};

/// A fixed, cheap RNG: the fuzzer explores the input, not the keys.
struct Counter(u8);
impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1);
        u32::from(self.0)
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.iter_mut().for_each(|b| *b = self.next_u32() as u8);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for Counter {}

fn pair(max_frame_len: usize) -> (SecretStream, SecretStream) {
    let i = HandshakeKeys { tx: [1; 32], rx: [2; 32], hash: [3; 64], public_key: [4; 32], remote_public_key: [5; 32] };
    let r = HandshakeKeys { tx: [2; 32], rx: [1; 32], hash: [3; 64], public_key: [5; 32], remote_public_key: [4; 32] };
    let cfg = Config { keep_alive: None, max_frame_len, ..Config::default() };
    let mut rng = Counter(0);
    (
        SecretStream::new(true, &i, &cfg, Instant::ZERO, &mut rng),
        SecretStream::new(false, &r, &cfg, Instant::ZERO, &mut rng),
    )
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let flags = data[0];
    let chunk = usize::from(data[1]);
    let round_trip = flags & 0x20 != 0;
    // A round trip must accept every frame it writes.
    let max = if round_trip { MAX_FRAME_LEN } else { [64, 4096, 65536, MAX_FRAME_LEN][usize::from(flags >> 2) & 3] };
    let (mut a, mut b) = pair(max);
    let mut input = Vec::new();

    if round_trip {
        // Round trip: split data[3..] into plaintexts at multiples of byte 2.
        let step = usize::from(data[2]).max(1);
        let msgs: Vec<&[u8]> = data[3..].chunks(step).collect();
        a.poll_transmit(&mut input);
        for m in &msgs {
            a.write(m, Instant::ZERO, &mut input).unwrap();
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let chunks: Vec<&[u8]> = if chunk == 0 { vec![&input[..]] } else { input.chunks(chunk).collect() };
        for c in chunks {
            b.read_messages(c, Instant::ZERO, |m| got.push(m.to_vec())).unwrap();
        }
        b.handle_remote_end().unwrap();
        assert_eq!(got.len(), msgs.len());
        assert!(got.iter().zip(&msgs).all(|(g, m)| g == m));
        return;
    }

    if flags & 1 != 0 {
        a.poll_transmit(&mut input);
        if flags & 2 != 0 {
            a.write(b"first", Instant::ZERO, &mut input).unwrap();
            a.write(&[], Instant::ZERO, &mut input).unwrap();
        }
    }
    input.extend_from_slice(&data[2..]);

    let chunks: Vec<&[u8]> = if chunk == 0 { vec![&input[..]] } else { input.chunks(chunk).collect() };
    let mut plain = Vec::new();
    let mut failed = None;
    for c in chunks {
        let r = if flags & 0x10 != 0 {
            b.read_messages(c, Instant::ZERO, |m| plain.extend_from_slice(m))
        } else {
            b.read(c, Instant::ZERO, &mut plain).map(|_| ())
        };
        assert!(b.buffered_capacity() <= 2 * max);
        if let Err(e) = r {
            failed = Some(e);
            break;
        }
    }
    assert!(plain.len() <= input.len());
    match failed {
        Some(e) => {
            assert!(b.is_destroyed());
            assert_eq!(b.error(), Some(e));
            assert_eq!(b.read(&input, Instant::ZERO, &mut Vec::new()), Err(SecretStreamError::Destroyed));
        }
        None => {
            let _ = b.handle_remote_end();
        }
    }
});

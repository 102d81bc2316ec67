//! Unordered messages (`send` / `trySend`, spec 04 §5.7): secretbox envelopes carried in UDX
//! MESSAGE packets.
//!
//! Envelope = `counter (8) ‖ MAC (16) ‖ XSalsa20 ciphertext`, i.e. the counter followed by
//! `crypto_secretbox_easy(plain, nonce = counter ‖ 16 zero bytes, key = sender's send key)`.
//! The counter starts at a random value and is incremented (little-endian, `sodium_increment`)
//! before each message; it must not come back to its start.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::OnceCell;

use crypto_secretbox::aead::generic_array::GenericArray;
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use zeroize::Zeroize;

use super::error::{MessageDropped, SecretStreamError};
use super::keys::unordered_send_key;

/// Length of the counter prefix.
pub(super) const COUNTER_LEN: usize = 8;
/// Length of the Poly1305 MAC.
pub(super) const MAC_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext (24).
pub const ENVELOPE_OVERHEAD: usize = COUNTER_LEN + MAC_LEN;

/// Sealing and opening state of one side. The two keys derive from the handshake hash and
/// are only derived (and boxed) with the stream's first unordered message, either way: an
/// idle connection, or one that never sends such a message, holds one pointer for them
/// instead of 64 bytes.
pub(super) struct Unordered {
    keys: OnceCell<Box<Keys>>,
    counter: [u8; COUNTER_LEN],
    initial: [u8; COUNTER_LEN],
}

/// The sealing key and the opening key.
struct Keys {
    send: [u8; 32],
    recv: [u8; 32],
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.send.zeroize();
        self.recv.zeroize();
    }
}

/// What the keys derive from: the handshake hash and our role.
#[derive(Clone, Copy)]
pub(super) struct KeySource<'a> {
    pub(super) hash: &'a [u8; 64],
    pub(super) is_initiator: bool,
}

fn nonce(counter: &[u8]) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..COUNTER_LEN].copy_from_slice(counter);
    n
}

/// `sodium_increment`: little-endian +1 with carry, wrapping.
fn increment(counter: &mut [u8; COUNTER_LEN]) {
    for b in counter.iter_mut() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return;
        }
    }
}

impl Unordered {
    pub(super) fn new(initial: [u8; COUNTER_LEN]) -> Self {
        Unordered {
            keys: OnceCell::new(),
            counter: initial,
            initial,
        }
    }

    /// The keys, derived on first use.
    fn keys(&self, src: KeySource<'_>) -> &Keys {
        self.keys.get_or_init(|| {
            Box::new(Keys {
                send: unordered_send_key(src.hash, src.is_initiator),
                recv: unordered_send_key(src.hash, !src.is_initiator),
            })
        })
    }

    /// Appends the envelope of `plain` to `out`.
    pub(super) fn seal(
        &mut self,
        src: KeySource<'_>,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SecretStreamError> {
        increment(&mut self.counter);
        if self.counter == self.initial {
            return Err(SecretStreamError::NonceExhausted);
        }
        let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&self.keys(src).send));
        let n = nonce(&self.counter);
        let start = out.len();
        out.reserve(ENVELOPE_OVERHEAD + plain.len());
        out.extend_from_slice(&self.counter);
        out.extend_from_slice(&[0u8; MAC_LEN]);
        out.extend_from_slice(plain);
        let body = start + ENVELOPE_OVERHEAD;
        match cipher.encrypt_in_place_detached(GenericArray::from_slice(&n), &[], &mut out[body..])
        {
            Ok(tag) => {
                out[start + COUNTER_LEN..body].copy_from_slice(&tag);
                Ok(())
            }
            // XSalsa20 cannot run out of keystream for a plaintext that fits in memory; if the
            // cipher ever refuses, send nothing rather than a malformed envelope.
            Err(_) => {
                out.truncate(start);
                Err(SecretStreamError::NonceExhausted)
            }
        }
    }

    /// Opens `envelope` in place; returns the plaintext (a sub-slice of `envelope`).
    pub(super) fn open_in_place<'a>(
        &self,
        src: KeySource<'_>,
        envelope: &'a mut [u8],
    ) -> Result<&'a mut [u8], MessageDropped> {
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(MessageDropped::TooShort);
        }
        let (head, body) = envelope.split_at_mut(ENVELOPE_OVERHEAD);
        let n = nonce(&head[..COUNTER_LEN]);
        let tag = GenericArray::clone_from_slice(&head[COUNTER_LEN..]);
        let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&self.keys(src).recv));
        cipher
            .decrypt_in_place_detached(GenericArray::from_slice(&n), &[], body, &tag)
            .map_err(|_| MessageDropped::Authentication)?;
        Ok(body)
    }

    /// Opens `envelope` and appends the plaintext to `out` (nothing on failure).
    pub(super) fn open_into(
        &self,
        src: KeySource<'_>,
        envelope: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, MessageDropped> {
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(MessageDropped::TooShort);
        }
        let n = nonce(&envelope[..COUNTER_LEN]);
        let tag = GenericArray::clone_from_slice(&envelope[COUNTER_LEN..ENVELOPE_OVERHEAD]);
        let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&self.keys(src).recv));
        let start = out.len();
        out.extend_from_slice(&envelope[ENVELOPE_OVERHEAD..]);
        match cipher.decrypt_in_place_detached(
            GenericArray::from_slice(&n),
            &[],
            &mut out[start..],
            &tag,
        ) {
            Ok(()) => Ok(out.len() - start),
            Err(_) => {
                out.truncate(start);
                Err(MessageDropped::Authentication)
            }
        }
    }

    #[cfg(test)]
    pub(super) fn set_counter(&mut self, counter: [u8; COUNTER_LEN]) {
        self.counter = counter;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: KeySource<'static> = KeySource {
        hash: &[1; 64],
        is_initiator: true,
    };

    #[test]
    fn increment_carries_and_wraps() {
        let mut c = [0xff, 0xff, 0, 0, 0, 0, 0, 0];
        increment(&mut c);
        assert_eq!(c, [0, 0, 1, 0, 0, 0, 0, 0]);
        let mut c = [0xff; 8];
        increment(&mut c);
        assert_eq!(c, [0; 8]);
    }

    #[test]
    fn counter_exhaustion_is_detected() {
        let initial = [5, 0, 0, 0, 0, 0, 0, 0];
        let mut u = Unordered::new(initial);
        // One step before coming back to the start.
        u.set_counter([4, 0, 0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        assert_eq!(
            u.seal(SRC, b"x", &mut out),
            Err(SecretStreamError::NonceExhausted)
        );
        assert!(out.is_empty());
        // The full wrap: all ones + 1 = 0 then up to the start.
        let mut u = Unordered::new([0; 8]);
        u.set_counter([0xff; 8]);
        assert_eq!(
            u.seal(SRC, b"x", &mut out),
            Err(SecretStreamError::NonceExhausted)
        );
    }
}

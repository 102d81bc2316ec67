//! Round-trip tokens (dht-rpc lib/io.js `token()` and `_drain()`).
//!
//! `token(host) = H_{secrets[1]}(ASCII dotted-decimal host)`; a token is valid under the current
//! or the previous secret. The secrets are created from the RNG the first time a token is issued
//! *or checked*, and rotate every 10 drains (7.5 s) once they exist:
//! `new[0] = old[1]`, `new[1] = H(old[0])`.

use core::net::Ipv4Addr;
use rand_core::RngCore;

use crate::crypto::{hash, keyed_hash};

/// Drains between two rotations.
const ROTATE_DRAINS: u8 = 10;

/// The two rotating secrets tokens are keyed with.
#[derive(Debug, Clone)]
pub struct TokenSecrets {
    /// `[previous, current]`, or `None` until first needed.
    secrets: Option<[[u8; 32]; 2]>,
    /// Drains left before the next rotation.
    countdown: u8,
}

impl Default for TokenSecrets {
    fn default() -> Self {
        TokenSecrets::new()
    }
}

impl TokenSecrets {
    /// No secrets yet; they are drawn from the RNG on first use.
    pub fn new() -> Self {
        TokenSecrets {
            secrets: None,
            countdown: ROTATE_DRAINS,
        }
    }

    /// Fixed secrets (tests and vectors), with a fresh 10-drain countdown.
    pub fn from_secrets(previous: [u8; 32], current: [u8; 32]) -> Self {
        TokenSecrets {
            secrets: Some([previous, current]),
            countdown: ROTATE_DRAINS,
        }
    }

    /// The token for `host` under the current secret, creating the secrets first if needed
    /// (32 random bytes for the previous secret, then 32 for the current one, as the reference).
    pub fn token<R: RngCore + ?Sized>(&mut self, host: Ipv4Addr, rng: &mut R) -> [u8; 32] {
        let [_, current] = self.ensure(rng);
        token_for(&current, host)
    }

    /// True if `token` is the token for `host` under the current or the previous secret. Without
    /// secrets nothing is valid. Unlike the reference this does not create the secrets; use
    /// [`TokenSecrets::validate`] for the exact reference behaviour.
    pub fn is_valid(&self, host: Ipv4Addr, token: &[u8; 32]) -> bool {
        match &self.secrets {
            Some([previous, current]) => {
                token_for(current, host) == *token || token_for(previous, host) == *token
            }
            None => false,
        }
    }

    /// The reference's check of an incoming request's token: creates the secrets if they do not
    /// exist yet (which starts the rotation countdown), then checks like
    /// [`TokenSecrets::is_valid`].
    pub fn validate<R: RngCore + ?Sized>(
        &mut self,
        host: Ipv4Addr,
        token: &[u8; 32],
        rng: &mut R,
    ) -> bool {
        self.ensure(rng);
        self.is_valid(host, token)
    }

    /// The token for `host` under the current secret, if the secrets exist.
    pub fn current_token(&self, host: Ipv4Addr) -> Option<[u8; 32]> {
        self.secrets
            .as_ref()
            .map(|[_, current]| token_for(current, host))
    }

    /// The token for `host` under the previous secret, if the secrets exist.
    pub fn previous_token(&self, host: Ipv4Addr) -> Option<[u8; 32]> {
        self.secrets
            .as_ref()
            .map(|[previous, _]| token_for(previous, host))
    }

    /// Called on every 750 ms drain. Once the secrets exist, every 10th call rotates them:
    /// `new[0] = old[1]`, `new[1] = H(old[0])`.
    pub fn on_drain(&mut self) {
        let Some([previous, current]) = self.secrets else {
            return;
        };
        self.countdown = self.countdown.saturating_sub(1);
        if self.countdown == 0 {
            self.countdown = ROTATE_DRAINS;
            self.secrets = Some([current, hash(&previous)]);
        }
    }

    /// `[previous, current]`, if they exist yet.
    pub fn secrets(&self) -> Option<[[u8; 32]; 2]> {
        self.secrets
    }

    /// Drains left before the next rotation (counts only while the secrets exist).
    pub fn drains_until_rotation(&self) -> u8 {
        self.countdown
    }

    fn ensure<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [[u8; 32]; 2] {
        if let Some(s) = self.secrets {
            return s;
        }
        let mut s = [[0u8; 32]; 2];
        for secret in &mut s {
            rng.fill_bytes(secret);
        }
        self.secrets = Some(s);
        s
    }
}

/// `H_secret(ASCII dotted-decimal host)`, formatted on the stack.
fn token_for(secret: &[u8; 32], host: Ipv4Addr) -> [u8; 32] {
    let mut buf = [0u8; 15];
    let len = format_ipv4(host, &mut buf);
    keyed_hash(secret, buf.get(..len).unwrap_or(&buf[..]))
}

/// Writes `a.b.c.d` into `buf` (at most 15 bytes) and returns the length.
fn format_ipv4(host: Ipv4Addr, buf: &mut [u8; 15]) -> usize {
    let mut n = 0;
    for (i, octet) in host.octets().into_iter().enumerate() {
        if i > 0 {
            push(buf, &mut n, b'.');
        }
        if octet >= 100 {
            push(buf, &mut n, b'0' + octet / 100);
        }
        if octet >= 10 {
            push(buf, &mut n, b'0' + (octet / 10) % 10);
        }
        push(buf, &mut n, b'0' + octet % 10);
    }
    n
}

fn push(buf: &mut [u8; 15], n: &mut usize, byte: u8) {
    if let Some(b) = buf.get_mut(*n) {
        *b = byte;
        *n += 1;
    }
}

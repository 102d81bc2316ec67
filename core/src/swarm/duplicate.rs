//! Which of two connections to the same peer survives (`_handleServerConnection`, hyperswarm
//! 4.17.2 `index.js:346-375`). Only the side receiving a connection decides; both sides apply
//! the same rule, so they agree without a message: **the connection dialed by the peer with
//! the larger public key survives**, unless the existing one has already carried a message
//! each way — then the peer must have lost it and is reconnecting, and the new one wins.

use core::cmp::Ordering;

/// What to do with a new incoming connection from a peer we already hold a connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// Keep the existing connection (poke it with a keep-alive); destroy the new one unseen.
    KeepExisting,
    /// Destroy the existing connection; the new one takes its place once it has closed.
    KeepNew,
}

/// The rule. `local` / `remote`: the two public keys (compared as unsigned bytes, as
/// `Buffer.compare`); `new_is_initiator`: whether we dialed the new connection (always false
/// on the receiving side, kept to state the reference's comparison literally);
/// `existing_bytes`: the existing connection's secret-stream message bytes `(read, written)`.
pub fn resolve(
    local: &[u8; 32],
    remote: &[u8; 32],
    new_is_initiator: bool,
    existing_bytes: (u64, u64),
) -> Duplicate {
    let existing_is_outdated = existing_bytes.0 > 0 && existing_bytes.1 > 0;
    let expected_initiator = local.cmp(remote) == Ordering::Greater;
    if existing_is_outdated || expected_initiator == new_is_initiator {
        Duplicate::KeepNew
    } else {
        Duplicate::KeepExisting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's rule, restated from `index.js:359-362` with its own names:
    /// `keepNew = existingIsOutdated || (compare(conn.publicKey, conn.remotePublicKey) > 0) ===
    /// conn.isInitiator`, for an incoming `conn` (isInitiator false).
    fn reference(local: &[u8; 32], remote: &[u8; 32], read: u64, written: u64) -> Duplicate {
        let outdated = read > 0 && written > 0;
        let expected_initiator = local > remote;
        if outdated || !expected_initiator {
            Duplicate::KeepNew
        } else {
            Duplicate::KeepExisting
        }
    }

    fn key(first: u8, last: u8) -> [u8; 32] {
        let mut k = [0x55; 32];
        k[0] = first;
        k[31] = last;
        k
    }

    /// Both key orders: the side with the smaller key takes the larger key's incoming
    /// connection over its own; the larger key drops the smaller key's incoming one. So the
    /// connection dialed by the larger key survives on both sides.
    #[test]
    fn the_larger_key_dials_the_survivor_in_both_orders() {
        // Keys differing in the first byte, on both sides of 0x80 (unsigned comparison), and
        // keys differing only in the last byte.
        let pairs = [
            (key(0x01, 0), key(0x02, 0)),
            (key(0x7f, 0), key(0x80, 0)),
            (key(0x00, 0), key(0xff, 0)),
            (key(0x42, 0x10), key(0x42, 0x11)),
        ];
        for (small, large) in pairs {
            assert!(small < large);
            // At the smaller key, a fresh existing connection: the incoming one (dialed by
            // the larger key) wins.
            assert_eq!(resolve(&small, &large, false, (0, 0)), Duplicate::KeepNew);
            // At the larger key: the existing one (its own dial, or the larger key's earlier
            // connection) stays; the smaller key's incoming one goes.
            assert_eq!(
                resolve(&large, &small, false, (0, 0)),
                Duplicate::KeepExisting
            );
            for (read, written) in [(0, 0), (1, 0), (0, 1), (20, 20), (u64::MAX, 1)] {
                for (l, r) in [(small, large), (large, small)] {
                    assert_eq!(
                        resolve(&l, &r, false, (read, written)),
                        reference(&l, &r, read, written),
                        "local {:02x}…{:02x}, bytes ({read}, {written})",
                        l[0],
                        l[31]
                    );
                }
            }
        }
    }

    /// An existing connection that carried messages both ways is outdated: any new incoming
    /// connection replaces it, in both key orders; one that carried them one way only is not.
    #[test]
    fn an_outdated_connection_is_replaced_in_both_orders() {
        let (small, large) = (key(0x10, 0), key(0x20, 0));
        assert_eq!(resolve(&large, &small, false, (22, 22)), Duplicate::KeepNew);
        assert_eq!(resolve(&small, &large, false, (22, 22)), Duplicate::KeepNew);
        assert_eq!(
            resolve(&large, &small, false, (22, 0)),
            Duplicate::KeepExisting
        );
        assert_eq!(
            resolve(&large, &small, false, (0, 22)),
            Duplicate::KeepExisting
        );
    }

    /// The simultaneous-dial outcome of spec 06 §7's run: `s2 > s1`, both dial. On s1 its own
    /// dial is replaced by s2's; on s2 s1's incoming one is dropped. Both keep the one s2
    /// dialed.
    #[test]
    fn simultaneous_dials_agree() {
        let s1 = key(0x30, 1);
        let s2 = key(0x30, 2);
        let on_s1 = resolve(&s1, &s2, false, (0, 0));
        let on_s2 = resolve(&s2, &s1, false, (0, 0));
        assert_eq!(
            (on_s1, on_s2),
            (Duplicate::KeepNew, Duplicate::KeepExisting)
        );
    }
}

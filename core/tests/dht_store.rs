//! Tests for `hdht_core::dht::store`: the two-generation caches of `xache` 1.3.0 and
//! `record-cache` 1.2.0 as hyperdht 6.34 uses them, one test per rule, model-based quickcheck
//! properties and flood tests for bounded memory.
//!
//! The number of quickcheck cases can be raised with `QUICKCHECK_TESTS=<n>`.

mod prop_common;

use core::time::Duration;
use std::collections::BTreeSet;

use hdht_core::dht::store::{
    Generation, NodeStoreLimits, RecordCache, StoreLimits, Xache, DEFAULT_MAX_AGE,
    DEFAULT_MAX_SIZE, DEFAULT_STORAGE_MAX_AGE,
};
use hdht_core::Instant;

use quickcheck::{Arbitrary, Gen};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

fn at_ms(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn topic(n: u8) -> [u8; 32] {
    [n; 32]
}

fn pk(n: u16) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..2].copy_from_slice(&n.to_be_bytes());
    k
}

// =============================================================================================
// Timer arithmetic and limits
// =============================================================================================

#[test]
fn tick_is_ceil_two_thirds_of_max_age() {
    // Math.ceil(2 / 3 * maxAge) for a few maxAge values, starting at the construction time.
    let cases: &[(u64, u64)] = &[
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 3),
        (1500, 1000),
        (20 * 60 * 1000, 800_000),
        (48 * 60 * 60 * 1000, 115_200_000),
    ];
    for &(max_age, tick) in cases {
        let x: Xache<u8, u8> = Xache::new(10, Duration::from_millis(max_age), at_ms(7));
        assert_eq!(x.poll_timeout(), at_ms(7 + tick), "xache maxAge {max_age}");
        let r = RecordCache::new(10, Duration::from_millis(max_age), at_ms(7));
        assert_eq!(
            r.poll_timeout(),
            at_ms(7 + tick),
            "record-cache maxAge {max_age}"
        );
    }
}

#[test]
fn zero_max_age_has_no_timer() {
    let mut x: Xache<u8, u8> = Xache::new(10, Duration::ZERO, at_ms(0));
    assert_eq!(x.poll_timeout(), Instant::from_micros(u64::MAX));
    x.set(1, 1);
    x.handle_timeout(Instant::from_micros(u64::MAX));
    assert_eq!(x.generation(&1), Some(Generation::Fresh));

    let mut r = RecordCache::new(10, Duration::ZERO, at_ms(0));
    assert_eq!(r.poll_timeout(), Instant::from_micros(u64::MAX));
    r.add(topic(1), pk(1), vec![1]);
    r.handle_timeout(Instant::from_micros(u64::MAX));
    assert_eq!(r.generation(&topic(1), &pk(1)), Some(Generation::Fresh));
}

#[test]
fn early_calls_do_nothing_and_late_ticks_reschedule_from_now() {
    let mut x: Xache<u8, u8> = Xache::new(10, Duration::from_millis(3000), at_ms(0));
    x.set(1, 1);
    x.handle_timeout(at_ms(1999));
    assert_eq!(x.poll_timeout(), at_ms(2000));
    assert_eq!(x.generation(&1), Some(Generation::Fresh));
    // On time: fixed schedule.
    x.handle_timeout(at_ms(2000));
    assert_eq!(x.poll_timeout(), at_ms(4000));
    assert_eq!(x.generation(&1), Some(Generation::Stale));
    // Late by several ticks: one tick runs, the next is one interval after `now`.
    x.handle_timeout(at_ms(9500));
    assert_eq!(x.poll_timeout(), at_ms(11_500));
    assert_eq!(x.peek(&1), None);
}

#[test]
fn store_limits_match_default_cache_opts() {
    assert_eq!(
        StoreLimits::default(),
        StoreLimits {
            max_size: 65536,
            max_age: Duration::from_secs(1200)
        }
    );
    assert_eq!(DEFAULT_MAX_SIZE, 65536);
    assert_eq!(DEFAULT_MAX_AGE, Duration::from_secs(20 * 60));
    assert_eq!(DEFAULT_STORAGE_MAX_AGE, Duration::from_secs(48 * 3600));

    let d = NodeStoreLimits::default();
    let base = StoreLimits::default();
    let storage = StoreLimits {
        max_size: 32768,
        max_age: Duration::from_secs(48 * 3600),
    };
    assert_eq!(d, StoreLimits::for_node(None, None));
    assert_eq!(
        (d.records, d.bumps, d.refreshes, d.router),
        (base, base, base, base)
    );
    assert_eq!((d.mutables, d.immutables), (storage, storage));
    assert_eq!(
        d.relay_addresses,
        StoreLimits {
            max_size: 512,
            max_age: Duration::ZERO
        }
    );

    // maxSize only: storage keeps 48 h, halves the size (rounding down).
    let s = StoreLimits::for_node(Some(1001), None);
    assert_eq!(
        s.records,
        StoreLimits {
            max_size: 1001,
            max_age: DEFAULT_MAX_AGE
        }
    );
    assert_eq!(
        s.mutables,
        StoreLimits {
            max_size: 500,
            max_age: DEFAULT_STORAGE_MAX_AGE
        }
    );
    assert_eq!(s.relay_addresses.max_size, 512);
    let s = StoreLimits::for_node(Some(100), None);
    assert_eq!(s.relay_addresses.max_size, 100);

    // An explicit maxAge replaces the 48 h as well.
    let age = Duration::from_millis(1500);
    let s = StoreLimits::for_node(None, Some(age));
    assert_eq!(
        s.bumps,
        StoreLimits {
            max_size: 65536,
            max_age: age
        }
    );
    assert_eq!(
        s.immutables,
        StoreLimits {
            max_size: 32768,
            max_age: age
        }
    );

    // `opts.x || default`: zero counts as not given.
    assert_eq!(StoreLimits::for_node(Some(0), Some(Duration::ZERO)), d);
}

// =============================================================================================
// Xache rules
// =============================================================================================

const AGE: Duration = Duration::from_millis(3000); // tick = 2000 ms

#[test]
fn xache_entry_lives_between_one_and_two_ticks() {
    // Set right after construction: survives the first tick (stale), gone at the second.
    let mut x: Xache<u8, &str> = Xache::new(100, AGE, at_ms(0));
    x.set(1, "a");
    x.handle_timeout(at_ms(1999));
    assert_eq!(x.generation(&1), Some(Generation::Fresh));
    x.handle_timeout(at_ms(2000));
    assert_eq!(x.generation(&1), Some(Generation::Stale));
    assert_eq!(x.peek(&1), Some(&"a"));
    x.handle_timeout(at_ms(3999));
    assert_eq!(x.peek(&1), Some(&"a"));
    x.handle_timeout(at_ms(4000));
    assert_eq!(x.peek(&1), None);
    assert!(x.is_empty());

    // Set right before the first tick: still present after it, gone at the second.
    let mut x: Xache<u8, &str> = Xache::new(100, AGE, at_ms(0));
    x.handle_timeout(at_ms(1999));
    x.set(2, "b");
    x.handle_timeout(at_ms(2000));
    assert_eq!(x.peek(&2), Some(&"b"));
    x.handle_timeout(at_ms(4000));
    assert_eq!(x.peek(&2), None);
}

#[test]
fn xache_get_refreshes_peek_does_not() {
    let mut x: Xache<u8, u32> = Xache::new(100, AGE, at_ms(0));
    x.set(1, 10);
    x.set(2, 20);
    x.handle_timeout(at_ms(2000));
    assert_eq!(x.generation(&1), Some(Generation::Stale));
    assert_eq!(x.get(&1), Some(&10));
    assert_eq!(x.generation(&1), Some(Generation::Fresh));
    assert_eq!(x.peek(&2), Some(&20));
    assert_eq!(x.generation(&2), Some(Generation::Stale));
    // A get of a fresh entry changes nothing.
    assert_eq!(x.get(&1), Some(&10));
    assert_eq!(x.generation_lens(), (1, 1, 0));
    x.handle_timeout(at_ms(4000));
    assert_eq!(x.peek(&1), Some(&10));
    assert_eq!(x.peek(&2), None);
    assert_eq!(x.get(&2), None);
    // Kept alive indefinitely by one read per tick.
    for k in 3..10u64 {
        assert_eq!(x.get(&1), Some(&10));
        x.handle_timeout(at_ms(k * 2000));
    }
    assert_eq!(x.peek(&1), Some(&10));
}

#[test]
fn xache_set_replaces_and_moves_to_latest() {
    let mut x: Xache<u8, u32> = Xache::new(100, AGE, at_ms(0));
    x.set(1, 10);
    x.set(1, 11);
    assert_eq!(x.len(), 1);
    assert_eq!(x.peek(&1), Some(&11));
    x.handle_timeout(at_ms(2000));
    x.set(1, 12);
    assert_eq!(x.generation(&1), Some(Generation::Fresh));
    assert_eq!(x.generation_lens(), (1, 0, 0));
    assert_eq!(x.peek(&1), Some(&12));
}

#[test]
fn xache_size_rotation_when_latest_reaches_max_size() {
    let mut x: Xache<u32, u32> = Xache::new(4, AGE, at_ms(0));
    for k in 0..3 {
        x.set(k, k);
    }
    assert_eq!(x.generation_lens(), (3, 0, 0));
    // Replacing an existing latest key does not grow it.
    x.set(0, 100);
    assert_eq!(x.generation_lens(), (3, 0, 0));
    // The 4th distinct key brings latest to max_size: rotate at once.
    x.set(3, 3);
    assert_eq!(x.generation_lens(), (0, 4, 0));
    // Three more, then the 4th again: the first generation is dropped.
    for k in 4..7 {
        x.set(k, k);
    }
    assert_eq!(x.generation_lens(), (3, 4, 0));
    x.set(7, 7);
    assert_eq!(x.generation_lens(), (0, 4, 0));
    assert_eq!(x.peek(&0), None);
    assert_eq!(x.peek(&4), Some(&4));
    // A set that moves a key out of oldest does not count twice.
    x.set(4, 40);
    assert_eq!(x.generation_lens(), (1, 3, 0));
}

#[test]
fn xache_tick_skipped_after_a_rotation_since_the_previous_tick() {
    let mut x: Xache<u32, u32> = Xache::new(2, AGE, at_ms(0));
    x.set(1, 1);
    x.set(2, 2); // size rotation: 1, 2 stale
    assert_eq!(x.generation_lens(), (0, 2, 0));
    x.set(3, 3);
    x.handle_timeout(at_ms(2000)); // skipped: a rotation happened since the previous tick
    assert_eq!(x.generation_lens(), (1, 2, 0));
    x.handle_timeout(at_ms(4000)); // rotates
    assert_eq!(x.generation_lens(), (0, 1, 0));
    assert_eq!(x.peek(&3), Some(&3));
    x.handle_timeout(at_ms(6000)); // rotates again (the flag was cleared by the previous tick)
    assert!(x.is_empty());

    // clear() also sets the flag.
    let mut x: Xache<u32, u32> = Xache::new(10, AGE, at_ms(0));
    x.clear();
    x.set(1, 1);
    x.handle_timeout(at_ms(2000));
    assert_eq!(x.generation(&1), Some(Generation::Fresh));
    x.handle_timeout(at_ms(4000));
    assert_eq!(x.generation(&1), Some(Generation::Stale));
}

#[test]
fn xache_retain_survives_rotations_and_ignores_set() {
    let mut x: Xache<u32, u32> = Xache::new(3, AGE, at_ms(0));
    x.set(1, 10);
    x.retain(1, 11); // moves from latest into retained
    assert_eq!(x.generation(&1), Some(Generation::Retained));
    assert_eq!(x.generation_lens(), (0, 0, 1));
    x.set(1, 12); // ignored
    assert_eq!(x.peek(&1), Some(&11));
    assert_eq!(x.generation_lens(), (0, 0, 1));
    x.retain(1, 13); // retain replaces a retained value
    assert_eq!(x.get(&1), Some(&13));
    assert_eq!(x.generation(&1), Some(Generation::Retained));

    // Retained entries never count toward the size threshold and survive every rotation.
    for k in 100..200 {
        x.set(k, k);
    }
    for t in 1..10 {
        x.handle_timeout(at_ms(t * 2000));
    }
    assert_eq!(x.peek(&1), Some(&13));
    assert_eq!(x.generation_lens(), (0, 0, 1));
    assert_eq!(x.len(), 1);

    // retain() of a key in oldest moves it too.
    x.set(2, 20);
    x.handle_timeout(at_ms(100_000));
    assert_eq!(x.generation(&2), Some(Generation::Stale));
    x.retain(2, 21);
    assert_eq!(x.generation_lens(), (0, 0, 2));

    // delete() removes retained entries; afterwards set() works again.
    assert_eq!(x.delete(&1), Some(13));
    assert_eq!(x.peek(&1), None);
    x.set(1, 14);
    assert_eq!(x.generation(&1), Some(Generation::Fresh));

    // clear() removes retained entries too.
    x.clear();
    assert!(x.is_empty());
}

#[test]
fn xache_delete_from_every_generation() {
    let mut x: Xache<u32, u32> = Xache::new(100, AGE, at_ms(0));
    x.set(1, 10);
    x.handle_timeout(at_ms(2000));
    x.set(2, 20);
    x.retain(3, 30);
    assert_eq!(x.generation_lens(), (1, 1, 1));
    assert_eq!(x.delete(&1), Some(10)); // oldest
    assert_eq!(x.delete(&2), Some(20)); // latest
    assert_eq!(x.delete(&3), Some(30)); // retained
    assert_eq!(x.delete(&3), None);
    assert!(x.is_empty());
    assert_eq!(x.get(&1), None);
}

#[test]
fn xache_get_that_fills_latest_rotates() {
    // The documented deviation: a read that brings latest to max_size rotates like a set.
    let mut x: Xache<u32, u32> = Xache::new(3, AGE, at_ms(0));
    x.set(1, 1);
    x.set(2, 2);
    x.handle_timeout(at_ms(2000));
    x.set(3, 3);
    x.set(4, 4);
    assert_eq!(x.generation_lens(), (2, 2, 0));
    assert_eq!(x.get(&1), Some(&1)); // latest reaches 3: rotate; 1 is now in the new oldest
    assert_eq!(x.generation_lens(), (0, 3, 0));
    assert_eq!(x.generation(&1), Some(Generation::Stale));
    assert_eq!(x.peek(&2), None);
    // And the next tick is skipped.
    x.handle_timeout(at_ms(4000));
    assert_eq!(x.generation_lens(), (0, 3, 0));
}

#[test]
fn xache_iter_and_contains() {
    let mut x: Xache<u32, u32> = Xache::new(100, AGE, at_ms(0));
    x.set(5, 50);
    x.handle_timeout(at_ms(2000));
    x.set(9, 90);
    x.set(1, 10);
    x.retain(0, 0);
    let all: Vec<(u32, u32)> = x.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(all, vec![(1, 10), (9, 90), (5, 50), (0, 0)]);
    assert!(x.contains_key(&5));
    assert_eq!(x.generation(&5), Some(Generation::Stale)); // no refresh
}

// =============================================================================================
// RecordCache rules
// =============================================================================================

#[test]
fn records_add_keeps_fresh_bytes_but_moves_stale_with_new_bytes() {
    let mut r = RecordCache::new(100, AGE, at_ms(0));
    r.add(topic(1), pk(1), b"first".to_vec());
    r.add(topic(1), pk(1), b"second".to_vec());
    assert_eq!(r.peek(&topic(1), &pk(1)), Some(&b"first"[..]));
    assert_eq!(r.len(), 1);
    r.handle_timeout(at_ms(2000));
    assert_eq!(r.generation(&topic(1), &pk(1)), Some(Generation::Stale));
    r.add(topic(1), pk(1), b"third".to_vec());
    assert_eq!(r.generation(&topic(1), &pk(1)), Some(Generation::Fresh));
    assert_eq!(r.peek(&topic(1), &pk(1)), Some(&b"third"[..]));
    assert_eq!(r.generation_lens(), (1, 0));
}

#[test]
fn records_entry_lives_between_one_and_two_ticks_and_reads_do_not_refresh() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut r = RecordCache::new(100, AGE, at_ms(0));
    r.add(topic(1), pk(1), vec![1]);
    r.handle_timeout(at_ms(1999));
    r.add(topic(1), pk(2), vec![2]);
    r.handle_timeout(at_ms(2000));
    assert_eq!(r.generation_lens(), (0, 2));
    assert_eq!(r.get(&topic(1), 20, &mut rng).len(), 2);
    assert_eq!(r.generation_lens(), (0, 2)); // get does not refresh
    r.handle_timeout(at_ms(3999));
    assert_eq!(r.len(), 2);
    r.handle_timeout(at_ms(4000));
    assert!(r.is_empty());
    assert_eq!(r.topic_len(&topic(1)), 0);
    assert!(r.get(&topic(1), 20, &mut rng).is_empty());
}

#[test]
fn records_size_rotation_when_fresh_exceeds_max_size() {
    let mut r = RecordCache::new(3, AGE, at_ms(0));
    for n in 0..3 {
        r.add(topic((n % 2) as u8), pk(n), vec![n as u8]);
    }
    assert_eq!(r.generation_lens(), (3, 0)); // at max_size: no rotation
    r.add(topic(0), pk(0), vec![9]); // already fresh: not an insertion
    assert_eq!(r.generation_lens(), (3, 0));
    r.add(topic(5), pk(3), vec![3]); // 4 > 3: rotate
    assert_eq!(r.generation_lens(), (0, 4));
    // Moving a stale record back does not count twice.
    r.add(topic(5), pk(3), vec![33]);
    assert_eq!(r.generation_lens(), (1, 3));
    for n in 10..13 {
        r.add(topic(7), pk(n), vec![]);
    }
    assert_eq!(r.generation_lens(), (0, 4)); // fresh reached 4 > 3
    assert_eq!(r.peek(&topic(0), &pk(0)), None);
    assert_eq!(r.peek(&topic(5), &pk(3)), Some(&[33u8][..]));
    // And the next tick is skipped.
    r.handle_timeout(at_ms(2000));
    assert_eq!(r.generation_lens(), (0, 4));
    r.handle_timeout(at_ms(4000));
    assert!(r.is_empty());
}

#[test]
fn records_remove_from_both_generations() {
    let mut r = RecordCache::new(100, AGE, at_ms(0));
    r.add(topic(1), pk(1), vec![1]);
    r.add(topic(1), pk(2), vec![2]);
    r.add(topic(2), pk(1), vec![3]);
    r.handle_timeout(at_ms(2000));
    r.add(topic(1), pk(3), vec![4]);
    r.remove(&topic(1), &pk(1)); // stale
    r.remove(&topic(1), &pk(3)); // fresh
    r.remove(&topic(1), &pk(9)); // absent
    r.remove(&topic(9), &pk(1)); // absent topic
    assert_eq!(r.len(), 2);
    assert_eq!(r.topic_len(&topic(1)), 1);
    assert_eq!(r.peek(&topic(2), &pk(1)), Some(&[3u8][..]));
    r.remove(&topic(1), &pk(2));
    r.remove(&topic(2), &pk(1));
    assert!(r.is_empty());
    r.add(topic(1), pk(1), vec![5]);
    r.clear();
    assert!(r.is_empty());
}

#[test]
fn records_clear_skips_next_tick() {
    let mut r = RecordCache::new(100, AGE, at_ms(0));
    r.clear();
    r.add(topic(1), pk(1), vec![1]);
    r.handle_timeout(at_ms(2000));
    assert_eq!(r.generation(&topic(1), &pk(1)), Some(Generation::Fresh));
}

fn sample_cache() -> RecordCache {
    // 6 fresh and 6 stale records under topic 1, noise under topic 2.
    let mut r = RecordCache::new(1000, AGE, at_ms(0));
    for n in 0..6u16 {
        r.add(topic(1), pk(n), vec![1, n as u8]);
        r.add(topic(2), pk(n), vec![2, n as u8]);
    }
    r.handle_timeout(at_ms(2000));
    for n in 6..12u16 {
        r.add(topic(1), pk(n), vec![1, n as u8]);
    }
    r
}

#[test]
fn records_sample_is_distinct_bounded_and_from_the_topic() {
    let r = sample_cache();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for max in 0..20usize {
        for _ in 0..50 {
            let s = r.get(&topic(1), max, &mut rng);
            let expect = if max == 0 { 12 } else { max.min(12) };
            assert_eq!(s.len(), expect);
            let set: BTreeSet<&[u8]> = s.iter().copied().collect();
            assert_eq!(set.len(), s.len(), "distinct");
            assert!(
                s.iter().all(|rec| rec[0] == 1 && rec[1] < 12),
                "from the topic"
            );
        }
    }
    assert!(r.get(&topic(3), 20, &mut rng).is_empty());
}

#[test]
fn records_sample_is_deterministic_for_a_seed() {
    let r = sample_cache();
    let draw = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..20)
            .map(|_| r.get(&topic(1), 5, &mut rng).concat())
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
}

#[test]
fn records_sample_draws_exactly_n_numbers() {
    let r = sample_cache();
    let mut a = ChaCha8Rng::seed_from_u64(3);
    let mut b = ChaCha8Rng::seed_from_u64(3);
    let _ = r.get(&topic(1), 5, &mut a);
    for _ in 0..5 {
        b.next_u64();
    }
    assert_eq!(a.next_u64(), b.next_u64());
    let _ = r.get(&topic(1), 0, &mut a); // all 12
    for _ in 0..12 {
        b.next_u64();
    }
    assert_eq!(a.next_u64(), b.next_u64());
}

#[test]
fn records_sample_covers_everything_roughly_uniformly() {
    let r = sample_cache();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut first = [0u32; 12];
    let mut any = [0u32; 12];
    let rounds = 24_000;
    for _ in 0..rounds {
        let s = r.get(&topic(1), 3, &mut rng);
        first[s[0][1] as usize] += 1;
        for rec in s {
            any[rec[1] as usize] += 1;
        }
    }
    // Each record is the first pick with probability 1/12 and in a 3-sample with 1/4.
    for n in 0..12 {
        let f = f64::from(first[n]) / f64::from(rounds);
        let a = f64::from(any[n]) / f64::from(rounds);
        assert!((f - 1.0 / 12.0).abs() < 0.01, "first[{n}] = {f}");
        assert!((a - 0.25).abs() < 0.015, "any[{n}] = {a}");
    }
}

#[test]
fn records_sample_follows_the_reference_procedure() {
    // Replay record-cache's loop by hand on the list order the reference would have:
    // fresh list [pk6..pk11] in insertion order, stale list [pk0..pk5].
    let r = sample_cache();
    let seed = 5;
    let got = r.get(&topic(1), 7, &mut ChaCha8Rng::seed_from_u64(seed));

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut a: Vec<u8> = (6..12).collect();
    let mut b: Vec<u8> = (0..6).collect();
    let (mut a_len, mut b_len) = (a.len(), b.len());
    let mut want = Vec::new();
    for _ in 0..7 {
        let f = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64; // Math.random()
        let j = (f * (a_len + b_len) as f64).floor() as usize;
        if j < a_len {
            want.push(a[j]);
            a_len -= 1;
            a.swap(j, a_len);
        } else {
            let j = j - a_len;
            want.push(b[j]);
            b_len -= 1;
            b.swap(j, b_len);
        }
    }
    let got: Vec<u8> = got.iter().map(|rec| rec[1]).collect();
    assert_eq!(got, want);
}

#[test]
fn records_list_order_follows_swap_removal() {
    // RecordSet.remove swaps the removed entry with the last one: after removing pk0 from
    // [pk0, pk1, pk2, pk3] the list is [pk3, pk1, pk2]. A draw that maps to index 0 returns pk3.
    struct Fixed(Vec<u64>);
    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }
    let mut r = RecordCache::new(100, AGE, at_ms(0));
    for n in 0..4u16 {
        r.add(topic(1), pk(n), vec![n as u8]);
    }
    r.remove(&topic(1), &pk(0));
    // j = 0 each time: takes list[0], swaps it with the end, and so on.
    let s = r.get(&topic(1), 0, &mut Fixed(vec![0, 0, 0]));
    let s: Vec<u8> = s.iter().map(|rec| rec[0]).collect();
    // [3,1,2]: take 3, swap(0,2) → [2,1,3]; take 2 (len 2), swap(0,1) → [1,2]; take 1.
    assert_eq!(s, vec![3, 2, 1]);
    // The largest fraction maps to the last index.
    let s = r.get(&topic(1), 1, &mut Fixed(vec![u64::MAX]));
    assert_eq!(s, vec![&[2u8][..]]);
}

// =============================================================================================
// Flood tests: bounded size under any load
// =============================================================================================

#[test]
fn xache_flood_stays_bounded() {
    let max = 1000;
    let mut x: Xache<u64, Vec<u8>> = Xache::new(max, DEFAULT_MAX_AGE, at_ms(0));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..200_000u64 {
        x.set(rng.next_u64(), vec![0; 8]);
        if i % 3 == 0 {
            let k = rng.next_u64() % 2000;
            let _ = x.get(&k);
        }
        assert!(x.len() < 2 * max);
    }
    // The pattern that grows the reference without bound: read every entry, add one new key.
    let mut x: Xache<u64, ()> = Xache::new(max, DEFAULT_MAX_AGE, at_ms(0));
    let mut next = 0u64;
    for _ in 0..50 {
        for k in 0..next {
            let _ = x.get(&k);
            let (l, o, _) = x.generation_lens();
            assert!(l < max && o <= max);
        }
        for _ in 0..100 {
            x.set(next, ());
            next += 1;
        }
        assert!(x.len() < 2 * max, "len {}", x.len());
    }
}

#[test]
fn records_flood_stays_bounded() {
    let max = 1000;
    let mut r = RecordCache::new(max, DEFAULT_MAX_AGE, at_ms(0));
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut peak = 0;
    for i in 0..100_000u32 {
        let mut p = [0u8; 32];
        rng.fill_bytes(&mut p);
        // Half the flood into one hot topic, half spread out.
        let t = if i % 2 == 0 {
            topic(0)
        } else {
            topic((i % 251) as u8)
        };
        r.add(t, p, vec![0; 51]);
        let (f, s) = r.generation_lens();
        assert!(f <= max && s <= max + 1);
        peak = peak.max(r.len());
    }
    assert!(peak <= 2 * max + 1);
    assert!(peak >= 2 * max); // the bound is reached
                              // Sampling a hot topic stays bounded by max.
    assert_eq!(r.get(&topic(0), 20, &mut rng).len(), 20);
}

// =============================================================================================
// Model-based properties
// =============================================================================================

/// Straightforward reference model of xache: a list of (key, value, generation) scanned
/// linearly, with the timer as a next-deadline plus flag.
#[derive(Debug)]
struct XacheModel {
    max_size: usize,
    tick: Option<u64>, // ms
    next: u64,         // ms
    gced: bool,
    entries: Vec<(u8, u32, Generation)>,
}

impl XacheModel {
    fn count(&self, g: Generation) -> usize {
        self.entries.iter().filter(|e| e.2 == g).count()
    }
    fn find(&self, k: u8) -> Option<usize> {
        self.entries.iter().position(|e| e.0 == k)
    }
    fn gc(&mut self) {
        self.gced = true;
        self.entries.retain(|e| e.2 != Generation::Stale);
        for e in &mut self.entries {
            if e.2 == Generation::Fresh {
                e.2 = Generation::Stale;
            }
        }
    }
    fn set(&mut self, k: u8, v: u32) {
        match self.find(k) {
            Some(i) if self.entries[i].2 == Generation::Retained => return,
            Some(i) => self.entries[i] = (k, v, Generation::Fresh),
            None => self.entries.push((k, v, Generation::Fresh)),
        }
        if self.count(Generation::Fresh) >= self.max_size {
            self.gc();
        }
    }
    fn retain(&mut self, k: u8, v: u32) {
        match self.find(k) {
            Some(i) => self.entries[i] = (k, v, Generation::Retained),
            None => self.entries.push((k, v, Generation::Retained)),
        }
    }
    fn get(&mut self, k: u8) -> Option<u32> {
        let i = self.find(k)?;
        let v = self.entries[i].1;
        if self.entries[i].2 == Generation::Stale {
            self.entries[i].2 = Generation::Fresh;
            if self.count(Generation::Fresh) >= self.max_size {
                self.gc();
            }
        }
        Some(v)
    }
    fn delete(&mut self, k: u8) -> Option<u32> {
        let i = self.find(k)?;
        Some(self.entries.remove(i).1)
    }
    fn timeout(&mut self, now: u64) {
        if let Some(t) = self.tick {
            if now >= self.next {
                self.next = now + t;
                if !self.gced {
                    self.gc();
                }
                self.gced = false;
            }
        }
    }
    fn clear(&mut self) {
        self.gced = true;
        self.entries.clear();
    }
}

#[derive(Debug, Clone)]
enum XOp {
    Set(u8, u32),
    Get(u8),
    Peek(u8),
    Retain(u8, u32),
    Delete(u8),
    Advance(u16),
    Clear,
}

impl Arbitrary for XOp {
    fn arbitrary(g: &mut Gen) -> Self {
        let k = u8::arbitrary(g) % 12;
        match u8::arbitrary(g) % 40 {
            0..=13 => XOp::Set(k, u32::arbitrary(g)),
            14..=22 => XOp::Get(k),
            23..=25 => XOp::Peek(k),
            26..=27 => XOp::Retain(k, u32::arbitrary(g)),
            28..=31 => XOp::Delete(k),
            32..=38 => XOp::Advance(u16::arbitrary(g) % 3000),
            _ => XOp::Clear,
        }
    }
}

#[derive(Debug, Clone)]
struct XCase {
    max_size: usize,
    max_age_ms: u64,
    ops: Vec<XOp>,
}

impl Arbitrary for XCase {
    fn arbitrary(g: &mut Gen) -> Self {
        let max_age_ms = [0u64, 1, 2, 3, 100, 1500, 3000][usize::arbitrary(g) % 7];
        XCase {
            max_size: usize::arbitrary(g) % 8,
            max_age_ms,
            ops: Vec::arbitrary(g),
        }
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let (m, a) = (self.max_size, self.max_age_ms);
        Box::new(self.ops.shrink().map(move |ops| XCase {
            max_size: m,
            max_age_ms: a,
            ops,
        }))
    }
}

fn xache_matches_model(case: XCase) -> bool {
    let start = 5u64;
    let mut x: Xache<u8, u32> = Xache::new(
        case.max_size,
        Duration::from_millis(case.max_age_ms),
        at_ms(start),
    );
    let tick = (case.max_age_ms > 0).then(|| (2 * case.max_age_ms).div_ceil(3));
    let mut m = XacheModel {
        max_size: case.max_size,
        tick,
        next: start + tick.unwrap_or(0),
        gced: false,
        entries: Vec::new(),
    };
    let mut now = start;
    for op in case.ops {
        let ok = match op {
            XOp::Set(k, v) => {
                x.set(k, v);
                m.set(k, v);
                true
            }
            XOp::Get(k) => x.get(&k).copied() == m.get(k),
            XOp::Peek(k) => x.peek(&k).copied() == m.find(k).map(|i| m.entries[i].1),
            XOp::Retain(k, v) => {
                x.retain(k, v);
                m.retain(k, v);
                true
            }
            XOp::Delete(k) => x.delete(&k) == m.delete(k),
            XOp::Advance(dt) => {
                now += u64::from(dt);
                x.handle_timeout(at_ms(now));
                m.timeout(now);
                true
            }
            XOp::Clear => {
                x.clear();
                m.clear();
                true
            }
        };
        if !ok {
            return false;
        }
        let deadline = if tick.is_some() {
            at_ms(m.next)
        } else {
            Instant::from_micros(u64::MAX)
        };
        if x.poll_timeout() != deadline || x.len() != m.entries.len() {
            return false;
        }
        let lens = (
            m.count(Generation::Fresh),
            m.count(Generation::Stale),
            m.count(Generation::Retained),
        );
        if x.generation_lens() != lens {
            return false;
        }
        for k in 0..12u8 {
            let want = m.find(k).map(|i| (m.entries[i].1, m.entries[i].2));
            if x.peek(&k).copied().zip(x.generation(&k)) != want {
                return false;
            }
        }
        // The bound on the two generations.
        if case.max_size > 0 && (lens.0 >= case.max_size || lens.1 > case.max_size) {
            return false;
        }
    }
    true
}

#[test]
fn xache_model_property() {
    prop_common::qc_discarding(500).quickcheck(xache_matches_model as fn(XCase) -> bool);
}

/// Reference model of record-cache that keeps the reference's list order (push, swap-remove)
/// and runs its sampling loop with real in-place swaps on copies of the lists.
/// One topic's list of (public key, bytes), in reference order.
type List = Vec<(u8, Vec<u8>)>;

#[derive(Debug, Default, Clone)]
struct Store {
    topics: Vec<(u8, List)>,
}

impl Store {
    fn size(&self) -> usize {
        self.topics.iter().map(|(_, l)| l.len()).sum()
    }
    fn list(&self, t: u8) -> List {
        self.topics
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
    fn find(&self, t: u8, p: u8) -> Option<&Vec<u8>> {
        let (_, l) = self.topics.iter().find(|(x, _)| *x == t)?;
        l.iter().find(|(q, _)| *q == p).map(|(_, b)| b)
    }
    fn add(&mut self, t: u8, p: u8, b: Vec<u8>) -> bool {
        if self.find(t, p).is_some() {
            return false;
        }
        match self.topics.iter_mut().find(|(x, _)| *x == t) {
            Some((_, l)) => l.push((p, b)),
            None => self.topics.push((t, vec![(p, b)])),
        }
        true
    }
    fn remove(&mut self, t: u8, p: u8) {
        if let Some(ti) = self.topics.iter().position(|(x, _)| *x == t) {
            let l = &mut self.topics[ti].1;
            if let Some(i) = l.iter().position(|(q, _)| *q == p) {
                let last = l.len() - 1;
                l.swap(i, last);
                l.pop();
                if l.is_empty() {
                    self.topics.remove(ti);
                }
            }
        }
    }
}

#[derive(Debug)]
struct RecordModel {
    max_size: usize,
    tick: Option<u64>,
    next: u64,
    gced: bool,
    fresh: Store,
    stale: Store,
}

impl RecordModel {
    fn gc(&mut self) {
        self.gced = true;
        self.stale = std::mem::take(&mut self.fresh);
    }
    fn add(&mut self, t: u8, p: u8, b: Vec<u8>) {
        self.stale.remove(t, p);
        if self.fresh.add(t, p, b) && self.fresh.size() > self.max_size {
            self.gc();
        }
    }
    fn get(&self, t: u8, n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
        let mut a = self.fresh.list(t);
        let mut b = self.stale.list(t);
        let (mut al, mut bl) = (a.len(), b.len());
        let len = al + bl;
        let n = if n > len || n == 0 { len } else { n };
        let mut out = Vec::new();
        for _ in 0..n {
            let f = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let j = (f * (al + bl) as f64).floor() as usize;
            if j < al {
                out.push(a[j].1.clone());
                al -= 1;
                a.swap(j, al);
            } else {
                let j = j - al;
                out.push(b[j].1.clone());
                bl -= 1;
                b.swap(j, bl);
            }
        }
        out
    }
    fn timeout(&mut self, now: u64) {
        if let Some(t) = self.tick {
            if now >= self.next {
                self.next = now + t;
                if !self.gced {
                    self.gc();
                }
                self.gced = false;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum ROp {
    Add(u8, u8, u8),
    Remove(u8, u8),
    Get(u8, u8, u64),
    Advance(u16),
    Clear,
}

impl Arbitrary for ROp {
    fn arbitrary(g: &mut Gen) -> Self {
        let t = u8::arbitrary(g) % 4;
        let p = u8::arbitrary(g) % 10;
        match u8::arbitrary(g) % 30 {
            0..=13 => ROp::Add(t, p, u8::arbitrary(g)),
            14..=17 => ROp::Remove(t, p),
            18..=23 => ROp::Get(t, u8::arbitrary(g) % 12, u64::arbitrary(g)),
            24..=28 => ROp::Advance(u16::arbitrary(g) % 3000),
            _ => ROp::Clear,
        }
    }
}

#[derive(Debug, Clone)]
struct RCase {
    max_size: usize,
    max_age_ms: u64,
    ops: Vec<ROp>,
}

impl Arbitrary for RCase {
    fn arbitrary(g: &mut Gen) -> Self {
        let max_age_ms = [0u64, 1, 3, 1500, 3000][usize::arbitrary(g) % 5];
        RCase {
            max_size: usize::arbitrary(g) % 12,
            max_age_ms,
            ops: Vec::arbitrary(g),
        }
    }
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let (m, a) = (self.max_size, self.max_age_ms);
        Box::new(self.ops.shrink().map(move |ops| RCase {
            max_size: m,
            max_age_ms: a,
            ops,
        }))
    }
}

fn records_match_model(case: RCase) -> bool {
    let start = 0u64;
    let mut r = RecordCache::new(
        case.max_size,
        Duration::from_millis(case.max_age_ms),
        at_ms(start),
    );
    let tick = (case.max_age_ms > 0).then(|| (2 * case.max_age_ms).div_ceil(3));
    let mut m = RecordModel {
        max_size: case.max_size,
        tick,
        next: start + tick.unwrap_or(0),
        gced: false,
        fresh: Store::default(),
        stale: Store::default(),
    };
    let mut now = start;
    for op in case.ops {
        match op {
            ROp::Add(t, p, v) => {
                // Several bytes so that fresh-vs-replaced is visible.
                let bytes = vec![t, p, v];
                r.add(topic(t), pk(u16::from(p)), bytes.clone());
                m.add(t, p, bytes);
            }
            ROp::Remove(t, p) => {
                r.remove(&topic(t), &pk(u16::from(p)));
                m.stale.remove(t, p);
                m.fresh.remove(t, p);
            }
            ROp::Get(t, n, seed) => {
                // Model get is only exact while no earlier get reordered the reference's lists;
                // our get never reorders, and neither does the model, so they must agree.
                let got: Vec<Vec<u8>> = r
                    .get(
                        &topic(t),
                        usize::from(n),
                        &mut ChaCha8Rng::seed_from_u64(seed),
                    )
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                if got != m.get(t, usize::from(n), &mut ChaCha8Rng::seed_from_u64(seed)) {
                    return false;
                }
            }
            ROp::Advance(dt) => {
                now += u64::from(dt);
                r.handle_timeout(at_ms(now));
                m.timeout(now);
            }
            ROp::Clear => {
                r.clear();
                m.gc();
                m.gc();
            }
        }
        let deadline = if tick.is_some() {
            at_ms(m.next)
        } else {
            Instant::from_micros(u64::MAX)
        };
        if r.poll_timeout() != deadline {
            return false;
        }
        let (f, s) = (m.fresh.size(), m.stale.size());
        if r.generation_lens() != (f, s) || r.len() != f + s {
            return false;
        }
        if f > case.max_size || s > case.max_size + 1 {
            return false;
        }
        for t in 0..4u8 {
            if r.topic_len(&topic(t)) != m.fresh.list(t).len() + m.stale.list(t).len() {
                return false;
            }
            for p in 0..10u8 {
                let want = match (m.fresh.find(t, p), m.stale.find(t, p)) {
                    (Some(b), _) => Some((b.as_slice(), Generation::Fresh)),
                    (None, Some(b)) => Some((b.as_slice(), Generation::Stale)),
                    (None, None) => None,
                };
                let key = pk(u16::from(p));
                if r.peek(&topic(t), &key).zip(r.generation(&topic(t), &key)) != want {
                    return false;
                }
            }
        }
    }
    true
}

#[test]
fn records_model_property() {
    prop_common::qc_discarding(500).quickcheck(records_match_model as fn(RCase) -> bool);
}

// =============================================================================================
// Byte counts (issue 17: stores bounded in bytes)
// =============================================================================================

#[allow(clippy::ptr_arg)] // the weigher of an `Xache<u32, Vec<u8>>`
fn weigh_vec(_: &u32, v: &Vec<u8>) -> usize {
    v.len() + 7
}

/// A seeded random mix of every mutating call: the byte count always equals the sum over what
/// the cache holds, per generation, and `evict_generation` frees what it reports.
#[test]
fn xache_and_record_cache_byte_counts_match_their_contents() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut x: Xache<u32, Vec<u8>> =
        Xache::with_weigher(16, Duration::from_millis(500), at_ms(0), weigh_vec);
    let mut r = RecordCache::new(16, Duration::from_millis(500), at_ms(0));
    let mut now = 0;
    for _ in 0..5_000 {
        let k = rng.next_u32() % 40;
        let len = (rng.next_u32() % 64) as usize;
        match rng.next_u32() % 8 {
            0..=2 => x.set(k, vec![0; len]),
            3 => {
                x.get(&k);
            }
            4 => {
                x.delete(&k);
            }
            5 => x.retain(k, vec![1; len]),
            6 => {
                let before = x.generation_bytes().1;
                assert_eq!(x.evict_generation(), before);
                let before = r.generation_bytes().1;
                assert_eq!(r.evict_generation(), before);
            }
            _ => {
                now += u64::from(rng.next_u32() % 300);
                x.handle_timeout(at_ms(now));
                r.handle_timeout(at_ms(now));
            }
        }
        match rng.next_u32() % 3 {
            0 => r.add(topic((k % 4) as u8), pk(k as u16), vec![2; len]),
            1 => r.remove(&topic((k % 4) as u8), &pk(k as u16)),
            _ => {}
        }
        let sum: usize = x.iter().map(|(k, v)| weigh_vec(k, v)).sum();
        assert_eq!(x.bytes(), sum);
        let (l, o, t) = x.generation_bytes();
        assert_eq!(l + o + t, sum);
        let mut records = 0;
        for t in 0..4u8 {
            records += r
                .get(&topic(t), 0, &mut rng)
                .iter()
                .map(|b| b.len() + hdht_core::dht::store::ENTRY_OVERHEAD)
                .sum::<usize>();
        }
        assert_eq!(r.bytes(), records);
    }
}

//! Seeds for tests and how to replay a failure.
//!
//! A scenario test takes its seed from [`SEED_ENV`] when set, else its built-in default, and
//! holds a [`Replay`] guard: if the test panics, the guard prints the seed and the one-line
//! command that reruns exactly that run.

/// The environment variable that overrides a test's seed.
pub const SEED_ENV: &str = "HDHT_SIM_SEED";

/// `HDHT_SIM_SEED` if set (decimal or 0x-hex), else `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| parse_seed(&s))
        .unwrap_or(default)
}

/// Parses a decimal or `0x`-prefixed hex seed.
pub fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Prints the replay command if dropped while panicking.
#[derive(Debug)]
pub struct Replay {
    seed: u64,
    target: &'static str,
    test: &'static str,
}

impl Replay {
    /// A guard for test `test` in test target `target` (e.g. "scenarios"), seeded from the
    /// environment or `default`.
    pub fn new(target: &'static str, test: &'static str, default: u64) -> Self {
        Replay {
            seed: seed_or(default),
            target,
            test,
        }
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The command that reruns this test with this seed.
    pub fn command(&self) -> String {
        format!(
            "{}={} cargo test -p hdht-sim --test {} {} -- --exact",
            SEED_ENV, self.seed, self.target, self.test
        )
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\nsimulation failed with seed {}; replay with:\n  {}\n",
                self.seed,
                self.command()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_seed("123"), Some(123));
        assert_eq!(parse_seed(" 0xff "), Some(255));
        assert_eq!(parse_seed("x"), None);
        let r = Replay {
            seed: 5,
            target: "scenarios",
            test: "churn",
        };
        assert_eq!(
            r.command(),
            "HDHT_SIM_SEED=5 cargo test -p hdht-sim --test scenarios churn -- --exact"
        );
    }
}

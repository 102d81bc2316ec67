//! `hdht keypair [--seed HEX]`: `DHT.keyPair(seed)` — libsodium's seed key pair.

use hdht_tokio::KeyPair;
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use super::common::{Error, Result};
use crate::args::KeypairArgs;
use crate::output::Output;

/// `{publicKey, secretKey}`; the secret key is libsodium's 64 bytes, seed ‖ public key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyPairOut {
    public_key: String,
    secret_key: String,
}

pub fn run(args: KeypairArgs, out: Output) -> Result<()> {
    let seed = match args.seed {
        Some(seed) => seed,
        None => {
            let mut seed = [0u8; 32];
            OsRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| Error::new(format!("no OS randomness for a seed: {e}")))?;
            seed
        }
    };
    let kp = KeyPair::from_seed(&seed);
    let rec = KeyPairOut {
        public_key: hex::encode(kp.public_key()),
        secret_key: hex::encode(kp.secret_key()),
    };
    out.emit(&rec, || {
        format!(
            "publicKey: {}\nsecretKey: {}",
            rec.public_key, rec.secret_key
        )
    });
    Ok(())
}

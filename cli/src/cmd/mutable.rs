//! `hdht mutable-put --seed HEX --seq N VALUE [--hex]` and
//! `hdht mutable-get PUBLIC_KEY [--seq N] [--latest | --first]`, through an ephemeral node.

use hdht_tokio::{DhtError, KeyPair, OpError, MAX_SEQ};
use serde::Serialize;

use super::common::{bootstrapped, start_client, until_signal, Error, Result};
use crate::args::{value_bytes, GlobalOpts, MutableGetArgs, MutablePutArgs};
use crate::output::{show_value, text_value, Addr, NodeAddr, Output, Warning};

/// `{publicKey, seq, signature, closestNodes}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PutOut {
    public_key: String,
    seq: u64,
    signature: String,
    closest_nodes: Vec<NodeAddr>,
}

/// `{value, valueHex, seq, signature, from}`: `value` is null when the bytes are not UTF-8.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GetOut {
    value: Option<String>,
    value_hex: String,
    seq: u64,
    signature: String,
    from: Addr,
}

/// What a refused put means, in words.
fn put_error(e: DhtError, public_key: &str, seq: u64) -> Error {
    match e {
        DhtError::Op(OpError::SeqTooLow) => Error::coded(
            "SEQ_TOO_LOW",
            format!(
                "mutable-put refused (SEQ_TOO_LOW): the nodes hold a record for {public_key} with \
             a seq higher than {seq}; put with a higher --seq (`hdht mutable-get {public_key}` \
             shows the current one)"
            ),
        ),
        DhtError::Op(OpError::SeqReused) => Error::coded(
            "SEQ_REUSED",
            format!(
                "mutable-put refused (SEQ_REUSED): the nodes hold a different value for \
             {public_key} with seq {seq}; put with a higher --seq"
            ),
        ),
        e => Error::from_err("mutable-put failed", &e),
    }
}

pub async fn run_put(args: MutablePutArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let value = value_bytes(&args.value, args.hex).map_err(Error::new)?;
    if args.seq == MAX_SEQ {
        out.warn(&Warning::final_seq(args.seq));
    }
    let kp = KeyPair::from_seed(&args.seed);
    let public_key = hex::encode(kp.public_key());
    let (dht, mut shutdown) = start_client(global).await?;
    let result = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        dht.mutable_put(&kp, &value, args.seq)
            .await
            .map_err(|e| put_error(e, &public_key, args.seq))
    })
    .await;
    dht.destroy().await;
    let put = result?;
    let rec = PutOut {
        public_key: hex::encode(put.public_key),
        seq: put.seq,
        signature: hex::encode(put.signature),
        closest_nodes: put.closest_nodes.into_iter().map(NodeAddr::from).collect(),
    };
    out.emit(&rec, || {
        format!(
            "{} seq {}  (stored at {} node(s))\nsignature {}",
            rec.public_key,
            rec.seq,
            rec.closest_nodes.len(),
            rec.signature
        )
    });
    Ok(())
}

pub async fn run_get(args: MutableGetArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let latest = args.latest();
    let (dht, mut shutdown) = start_client(global).await?;
    let result = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        dht.mutable_get(args.public_key, args.seq, latest)
            .await
            .map_err(|e| Error::from_err("mutable-get failed", &e))
    })
    .await;
    dht.destroy().await;
    let Some(found) = result? else {
        let with_seq = if args.seq > 0 {
            format!(" with seq >= {}", args.seq)
        } else {
            String::new()
        };
        return Err(Error::coded(
            "NOT_FOUND",
            format!(
                "not found: no node holds a record for public key {}{with_seq}",
                hex::encode(args.public_key)
            ),
        ));
    };
    let rec = GetOut {
        value: text_value(&found.value),
        value_hex: hex::encode(&found.value),
        seq: found.seq,
        signature: hex::encode(found.signature),
        from: found.from.into(),
    };
    out.emit(&rec, || {
        format!(
            "{}  (seq {}, from {})",
            show_value(&found.value),
            found.seq,
            found.from
        )
    });
    Ok(())
}

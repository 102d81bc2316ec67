//! `hdht immutable-put VALUE [--hex]` and `hdht immutable-get HASH`, through an ephemeral node.

use serde::Serialize;

use super::common::{bootstrapped, start_client, until_signal, Error, Result};
use crate::args::{value_bytes, GlobalOpts, ImmutableGetArgs, ImmutablePutArgs};
use crate::output::{show_value, text_value, Addr, NodeAddr, Output};

/// `{hash, closestNodes}`: where the value was stored, under which key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PutOut {
    hash: String,
    closest_nodes: Vec<NodeAddr>,
}

/// `{value, valueHex, from}`: `value` is the text, or null when the bytes are not UTF-8.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GetOut {
    value: Option<String>,
    value_hex: String,
    from: Addr,
}

pub async fn run_put(args: ImmutablePutArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let value = value_bytes(&args.value, args.hex).map_err(Error::new)?;
    let (dht, mut shutdown) = start_client(global).await?;
    let result = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        dht.immutable_put(&value)
            .await
            .map_err(|e| Error::from_err("immutable-put failed", &e))
    })
    .await;
    dht.destroy().await;
    let put = result?;
    let rec = PutOut {
        hash: hex::encode(put.hash),
        closest_nodes: put.closest_nodes.into_iter().map(NodeAddr::from).collect(),
    };
    out.emit(&rec, || {
        format!(
            "{}  (stored at {} node(s))",
            rec.hash,
            rec.closest_nodes.len()
        )
    });
    Ok(())
}

pub async fn run_get(args: ImmutableGetArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let (dht, mut shutdown) = start_client(global).await?;
    let result = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        dht.immutable_get(args.hash)
            .await
            .map_err(|e| Error::from_err("immutable-get failed", &e))
    })
    .await;
    dht.destroy().await;
    let Some(found) = result? else {
        return Err(Error::coded(
            "NOT_FOUND",
            format!(
                "not found: no node holds a value with hash {}",
                hex::encode(args.hash)
            ),
        ));
    };
    let rec = GetOut {
        value: text_value(&found.value),
        value_hex: hex::encode(&found.value),
        from: found.from.into(),
    };
    out.emit(&rec, || {
        format!("{}  (from {})", show_value(&found.value), found.from)
    });
    Ok(())
}

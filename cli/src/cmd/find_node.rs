//! `hdht find-node TARGET_HEX`: an ephemeral node runs one FIND_NODE query and exits.

use futures_lite::StreamExt;
use hdht_tokio::{Dht, DhtError, DhtOptions, Persistence, QueryReply};
use serde::Serialize;

use super::common::{Error, Result};
use crate::args::{FindNodeArgs, GlobalOpts};
use crate::codes::Code;
use crate::output::{hex_id, hex_opt_id, short, Addr, NodeAddr, Output};
use crate::signal::Shutdown;

/// One successful reply: `{from, to, nodeId}` (`to` is our address as the responder saw it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyOut {
    pub from: Addr,
    pub to: Addr,
    pub node_id: Option<String>,
}

impl From<&QueryReply> for ReplyOut {
    fn from(r: &QueryReply) -> Self {
        ReplyOut {
            from: r.from.into(),
            to: r.to.into(),
            node_id: hex_opt_id(r.from_id),
        }
    }
}

/// The outcome: `{target, closestNodes, replies, errors}`, closest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultOut {
    pub target: String,
    pub closest_nodes: Vec<NodeAddr>,
    pub replies: usize,
    pub errors: usize,
}

pub async fn run(args: FindNodeArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let mut shutdown = Shutdown::install();
    let opts = DhtOptions {
        bootstrap: global.bootstrap_list(),
        host: global.bind_host(),
        persistence: Persistence::Ephemeral,
        ..DhtOptions::isolated()
    };
    let dht = Dht::new(opts)
        .await
        .map_err(|e| Error::from_err("cannot start a node", &e))?;
    let result = tokio::select! {
        r = lookup(&dht, args, out) => r,
        sig = shutdown.recv() => Err(Error::coded("INTERRUPTED", format!("interrupted by {sig}"))),
    };
    dht.destroy().await;
    result
}

async fn lookup(dht: &Dht, args: FindNodeArgs, out: Output) -> Result<()> {
    match dht.ready().await {
        Ok(()) => {}
        Err(e @ DhtError::NoBootstrapReply { .. }) => {
            return Err(Error::coded(
                e.cli_code(),
                format!(
                    "find-node failed: {e}: check --bootstrap and that the network is reachable"
                ),
            ))
        }
        Err(e) => return Err(Error::from_err("bootstrap failed", &e)),
    }
    let mut query = dht.find_node(args.target);
    while let Some(reply) = query.next().await {
        let rec = ReplyOut::from(&reply);
        out.emit(&rec, || {
            format!("reply from {} (id {})", reply.from, short(&rec.node_id))
        });
    }
    let res = query
        .finish()
        .await
        .map_err(|e| Error::from_err("find-node failed", &e))?;
    if res.successes == 0 {
        return Err(Error::coded(
            "NO_NODES",
            "find-node failed: no node replied (is the bootstrap list reachable?)",
        ));
    }
    let rec = ResultOut {
        target: hex_id(args.target),
        closest_nodes: res.closest_nodes().map(NodeAddr::from).collect(),
        replies: res.successes,
        errors: res.errors,
    };
    out.emit(&rec, || {
        let mut s = format!(
            "{} closest nodes to {} ({} replies, {} errors):",
            rec.closest_nodes.len(),
            rec.target,
            rec.replies,
            rec.errors
        );
        for n in &rec.closest_nodes {
            s.push_str(&format!("\n  {}:{}  {}", n.host, n.port, n.node_id));
        }
        s
    });
    Ok(())
}

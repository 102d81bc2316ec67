//! `hdht lookup TOPIC`: an ephemeral node looks up the peers announced under a topic, prints
//! a line per reply that lists peers, and then the closest nodes. The reply lines are shared with `announce`.

use std::net::SocketAddrV4;

use futures_lite::StreamExt;
use hdht_tokio::{LookupReply, LookupStream};
use serde::Serialize;

use super::common::{bootstrapped, start_client, until_signal, Error, Result};
use crate::args::{GlobalOpts, LookupArgs};
use crate::output::{hex_opt_id, short, Addr, NodeAddr, Output, PeerOut};

/// One reply: `{from, to, nodeId, peers, bump}` (`to` is our address as the responder saw
/// it; `nodeId` the responder's id, null if it sent none).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyOut {
    pub from: Addr,
    pub to: Addr,
    pub node_id: Option<String>,
    pub peers: Vec<PeerOut>,
    pub bump: u64,
}

impl From<&LookupReply> for ReplyOut {
    fn from(r: &LookupReply) -> Self {
        ReplyOut {
            from: r.from.into(),
            to: r.to.into(),
            node_id: hex_opt_id(r.from_id),
            peers: r.peers.iter().map(PeerOut::from).collect(),
            bump: r.bump,
        }
    }
}

impl ReplyOut {
    fn text(&self) -> String {
        let mut s = format!(
            "reply from {}:{} (id {}): {} peer(s)",
            self.from.host,
            self.from.port,
            short(&self.node_id),
            self.peers.len()
        );
        for p in &self.peers {
            s.push_str(&format!("\n  {}", p.public_key));
            if !p.relay_addresses.is_empty() {
                let relays: Vec<String> = p
                    .relay_addresses
                    .iter()
                    .map(|a| format!("{}:{}", a.host, a.port))
                    .collect();
                s.push_str(&format!("  relays {}", relays.join(", ")));
            }
        }
        s
    }
}

/// The lookup's outcome: `{closestNodes}`, closest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClosestOut {
    closest_nodes: Vec<NodeAddr>,
}

/// Drains a lookup or announce stream, printing a line per reply. Only replies that list
/// peers come out of the stream (a node with nothing under the topic answers without a
/// value, and the reference's stream skips those too), so "no node replied" is judged by the
/// closest nodes. Returns the number of replies and the closest nodes (for an announce: those
/// that stored the record). `what` names the operation in errors.
pub async fn drain(
    mut stream: LookupStream,
    out: Output,
    what: &str,
) -> Result<(usize, Vec<SocketAddrV4>)> {
    let mut replies = 0;
    while let Some(reply) = stream.next().await {
        replies += 1;
        let rec = ReplyOut::from(&reply);
        out.emit(&rec, || rec.text());
    }
    let closest = stream
        .finish()
        .await
        .map_err(|e| Error::from_err(&format!("{what} failed"), &e))?;
    if closest.is_empty() {
        return Err(Error::coded(
            "NO_NODES",
            format!("{what} failed: no node replied (is the bootstrap list reachable?)"),
        ));
    }
    Ok((replies, closest))
}

pub async fn run(args: LookupArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let (dht, mut shutdown) = start_client(global).await?;
    let result = until_signal(&mut shutdown, async {
        bootstrapped(&dht).await?;
        let (replies, closest) = drain(dht.lookup(args.topic), out, "lookup").await?;
        let rec = ClosestOut {
            closest_nodes: closest.into_iter().map(NodeAddr::from).collect(),
        };
        out.emit(&rec, || {
            let mut s = format!(
                "{} closest nodes to {} ({replies} with peers):",
                rec.closest_nodes.len(),
                hex::encode(args.topic)
            );
            for n in &rec.closest_nodes {
                s.push_str(&format!("\n  {}:{}  {}", n.host, n.port, n.node_id));
            }
            s
        });
        Ok(())
    })
    .await;
    dht.destroy().await;
    result
}

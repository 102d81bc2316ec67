//! `hdht demo [--nodes N]`: a whole network on 127.0.0.1, on ephemeral ports, with no network
//! beyond loopback. A bootstrapper and N persistent nodes start; the routing tables are shown
//! after bootstrap and after a refresh round; the last node looks up a random target and the
//! result is checked against the true closest nodes; then everything is destroyed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use hdht_core::rpc::{NodeId, Persistence, QueryError, QueryResult, K};
use hdht_tokio::{Dht, DhtOptions, QueryStream};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use super::{Error, Result};
use crate::args::DemoArgs;
use crate::output::{hex_id, hex_opt_id, short, NodeAddr, Output};
use crate::signal::Shutdown;

/// How long one step (a node's bootstrap, a query) may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Routing-table sizes at one point: `sizes[i]` for node i; `full` tables hold every other
/// node of the network.
#[derive(Debug, Serialize)]
struct TableSizes {
    phase: &'static str,
    bootstrapper: usize,
    sizes: Vec<usize>,
    full: usize,
}

impl TableSizes {
    fn text(&self) -> String {
        let sizes: Vec<String> = self
            .sizes
            .iter()
            .enumerate()
            .map(|(i, s)| format!("n{i}={s}"))
            .collect();
        format!(
            "routing tables {:<12}  bootstrapper={}  {}  ({}/{} complete)",
            self.phase,
            self.bootstrapper,
            sizes.join(" "),
            self.full,
            self.sizes.len()
        )
    }
}

/// The demo's JSON lines, in the order they are printed.
#[derive(Debug, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum DemoEvent {
    /// The bootstrapper is up.
    Bootstrapper {
        host: String,
        port: u16,
        node_id: Option<String>,
    },
    /// Node `node` finished bootstrapping, `ms` after the demo started.
    Ready {
        node: usize,
        host: String,
        port: u16,
        firewalled: bool,
        ephemeral: bool,
        node_id: Option<String>,
        /// Its routing table's size at that moment.
        table_size: usize,
        ms: u128,
    },
    /// Routing-table sizes.
    Tables(TableSizes),
    /// The lookup from the last node.
    FindNode {
        node: usize,
        target: String,
        replies: usize,
        errors: usize,
        hops: usize,
        closest_nodes: Vec<NodeAddr>,
        /// Whether `closestNodes` are exactly the k nodes of the network closest to the target.
        exact: bool,
        ms: u128,
    },
    /// All `nodes` (the bootstrapper included) were destroyed.
    Done { nodes: usize, ms: u128 },
}

pub async fn run(args: DemoArgs, out: Output) -> Result<()> {
    let mut shutdown = Shutdown::install();
    let mut net = Network::default();
    let result = tokio::select! {
        r = demo(&mut net, usize::from(args.nodes), out) => r,
        sig = shutdown.recv() => Err(Error::new(format!("interrupted by {sig}"))),
    };
    let count = net.nodes.len() + usize::from(net.bootstrapper.is_some());
    net.destroy().await;
    if result.is_ok() {
        let ms = net.started.map_or(0, |t| t.elapsed().as_millis());
        let ev = DemoEvent::Done { nodes: count, ms };
        out.emit(&ev, || {
            format!(
                "destroyed all {count} nodes; {:.2} s in total",
                ms as f64 / 1e3
            )
        });
    }
    result
}

/// The demo's nodes, kept outside the demo future so they are destroyed whatever happens.
#[derive(Debug, Default)]
struct Network {
    started: Option<Instant>,
    bootstrapper: Option<Dht>,
    nodes: Vec<Dht>,
}

impl Network {
    async fn destroy(&mut self) {
        for dht in self.nodes.drain(..).rev().chain(self.bootstrapper.take()) {
            dht.destroy().await;
        }
    }

    fn push(&mut self, dht: Dht) -> &Dht {
        self.nodes.push(dht);
        &self.nodes[self.nodes.len() - 1]
    }

    /// Every node's server address (the bootstrapper first).
    fn addresses(&self) -> Vec<SocketAddrV4> {
        self.bootstrapper
            .iter()
            .chain(&self.nodes)
            .map(|d| d.server_address())
            .collect()
    }

    fn tables(&self, phase: &'static str) -> TableSizes {
        let all = self.addresses();
        let full = |dht: &Dht| {
            let own = dht.server_address();
            let table = dht.to_array();
            all.iter().filter(|a| **a != own).all(|a| table.contains(a))
        };
        TableSizes {
            phase,
            bootstrapper: self.bootstrapper.as_ref().map_or(0, |b| b.to_array().len()),
            sizes: self.nodes.iter().map(|d| d.to_array().len()).collect(),
            full: self.nodes.iter().filter(|d| full(d)).count(),
        }
    }
}

async fn step<T>(what: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut).await.map_err(|_| {
        Error::new(format!(
            "{what} took longer than {} s",
            STEP_TIMEOUT.as_secs()
        ))
    })
}

fn random_target() -> Result<NodeId> {
    let mut t = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut t)
        .map_err(|e| Error::new(format!("no OS randomness: {e}")))?;
    Ok(NodeId(t))
}

async fn demo(net: &mut Network, n: usize, out: Output) -> Result<()> {
    let started = Instant::now();
    net.started = Some(started);
    let host = Ipv4Addr::LOCALHOST;

    // 1. The bootstrapper.
    let bs = Dht::bootstrapper(0, host)
        .await
        .map_err(|e| Error::new(format!("cannot start the bootstrapper: {e}")))?;
    let bs = net.bootstrapper.insert(bs);
    step("the bootstrapper's start", bs.ready()).await?;
    let bs_addr = bs.server_address();
    let ev = DemoEvent::Bootstrapper {
        host: host.to_string(),
        port: bs_addr.port(),
        node_id: hex_opt_id(bs.id()),
    };
    out.emit(&ev, || {
        format!(
            "bootstrapper  {bs_addr:<21}  id {}",
            short(&hex_opt_id(bs.id()))
        )
    });

    // 2. N persistent nodes, one after the other, each bootstrapping from the bootstrapper:
    //    each finds the nodes started before it, and they learn about it in turn.
    for i in 0..n {
        let opts = DhtOptions {
            bootstrap: vec![bs_addr.to_string()],
            host,
            port: 0,
            persistence: Persistence::Persistent,
            ..DhtOptions::default()
        };
        let dht = Dht::new(opts)
            .await
            .map_err(|e| Error::new(format!("cannot start node {i}: {e}")))?;
        let dht = net.push(dht);
        if !step("a node's bootstrap", dht.ready()).await? {
            return Err(Error::new(format!(
                "node {i} was destroyed while bootstrapping"
            )));
        }
        let addr = dht.server_address();
        let id = hex_opt_id(dht.id());
        let ev = DemoEvent::Ready {
            node: i,
            host: addr.ip().to_string(),
            port: addr.port(),
            firewalled: dht.is_firewalled(),
            ephemeral: dht.is_ephemeral(),
            node_id: id.clone(),
            table_size: dht.to_array().len(),
            ms: started.elapsed().as_millis(),
        };
        out.emit(&ev, || {
            format!(
                "node {i:<2} ready  {addr:<21}  id {}  {}, {}, knows {} node(s)",
                short(&id),
                if dht.is_firewalled() {
                    "firewalled"
                } else {
                    "reachable"
                },
                if dht.is_ephemeral() {
                    "ephemeral"
                } else {
                    "persistent"
                },
                dht.to_array().len(),
            )
        });
    }
    // Let the last bootstrap replies and the nodes' pings to each other land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    print_tables(out, net.tables("bootstrapped"));

    // 3. A refresh round: every node looks up a random target at the same time (as the
    //    reference's periodic refresh does); every reply from a persistent node lands in the
    //    asking node's table.
    let mut queries = Vec::with_capacity(n);
    for dht in &net.nodes {
        queries.push(dht.find_node(random_target()?));
    }
    for q in queries {
        step("a refresh query", q.finish())
            .await?
            .map_err(|e| Error::new(format!("a refresh query failed: {e}")))?;
    }
    print_tables(out, net.tables("refreshed"));

    // 4. A lookup from the last node, checked against the network's true closest nodes.
    let last = n - 1;
    let dht = &net.nodes[last];
    let target = random_target()?;
    let t0 = Instant::now();
    let known = dht.to_array();
    let (replies, hops, result) =
        step("the lookup", run_lookup(dht.find_node(target), &known)).await?;
    let result = result.map_err(|e| Error::new(format!("the lookup failed: {e}")))?;
    let closest: Vec<SocketAddrV4> = result.closest_nodes().collect();
    let own = dht.server_address();
    let mut expected: Vec<SocketAddrV4> =
        net.addresses().into_iter().filter(|a| *a != own).collect();
    expected.sort_by(|a, b| target.cmp_distance(&NodeId::from_addr(a), &NodeId::from_addr(b)));
    expected.truncate(K);
    let ev = DemoEvent::FindNode {
        node: last,
        target: hex_id(target),
        replies,
        errors: result.errors,
        hops,
        closest_nodes: closest.iter().copied().map(NodeAddr::from).collect(),
        exact: closest == expected,
        ms: t0.elapsed().as_millis(),
    };
    out.emit(&ev, || {
        let mut s = format!(
            "find-node from node {last} for {}: {replies} replies, {} errors, {hops} hop(s), {} ms",
            short(&Some(hex_id(target))),
            result.errors,
            t0.elapsed().as_millis()
        );
        for (i, a) in closest.iter().enumerate() {
            s.push_str(&format!(
                "\n  {:>2}. {a:<21}  id {}",
                i + 1,
                short(&Some(hex_id(NodeId::from_addr(a))))
            ));
        }
        s.push_str(if closest == expected {
            "\n  = exactly the closest nodes of the whole network"
        } else {
            "\n  ! differs from the closest nodes of the whole network"
        });
        s
    });
    Ok(())
}

/// Drains a lookup: the number of replies, the hop count (how many referrals deep the
/// furthest replying node was; 1 = a node from our own table or the bootstrap list) and the
/// outcome.
async fn run_lookup(
    mut query: QueryStream,
    known: &[SocketAddrV4],
) -> (usize, usize, std::result::Result<QueryResult, QueryError>) {
    let mut hop_of: BTreeMap<SocketAddrV4, usize> = BTreeMap::new();
    let mut referred: BTreeMap<SocketAddrV4, usize> = known.iter().map(|a| (*a, 1)).collect();
    let mut replies = 0;
    while let Some(reply) = query.next().await {
        replies += 1;
        let hop = referred.get(&reply.from).copied().unwrap_or(1);
        hop_of.insert(reply.from, hop);
        for c in &reply.closer_nodes {
            let e = referred.entry(*c).or_insert(hop + 1);
            *e = (*e).min(hop + 1);
        }
    }
    let hops = hop_of.values().copied().max().unwrap_or(0);
    (replies, hops, query.finish().await)
}

fn print_tables(out: Output, tables: TableSizes) {
    let text = tables.text();
    out.emit(&DemoEvent::Tables(tables), || text);
}

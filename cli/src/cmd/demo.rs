//! `hdht demo [--nodes N]`: a whole network on 127.0.0.1, on ephemeral ports, with no network
//! beyond loopback. A bootstrapper and N persistent nodes start; the routing tables are shown
//! after bootstrap and after a refresh round; the last node looks up a random target and the
//! result is checked against the true closest nodes. Then the records: one node announces a
//! topic and another finds it with a lookup; an immutable put and get; a mutable put with
//! seq 1, then 2, a refused put with seq 1 and a get that returns seq 2; an unannounce and a
//! lookup that no longer finds the key. Then a connection by public key: node 0 listens on a
//! fresh key pair, the last node connects to it through the DHT and sends `--transfer-mib` MiB
//! (32 by default), which node 0 reads to the end and checks; the time to connect and the
//! throughput are shown. Then two firewalled nodes connect by holepunching. Then three swarm
//! peers join one topic at the same moment, mesh (one connection per pair) and exchange a line
//! each way. Then everything is destroyed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use hdht_tokio::core::rpc::K;
use hdht_tokio::{
    Connection, Dht, DhtError, DhtOptions, JoinOptions, KeyPair, NodeId, OpError, Persistence,
    QueryError, QueryResult, QueryStream, SwarmConnections, SwarmHandle, SwarmOptions,
};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{ms_since, Error, Result};
use crate::args::DemoArgs;
use crate::output::{
    hex_id, hex_opt_id, short, short_hex, show_value, text_value, Addr, NodeAddr, Output,
};
use crate::signal::Shutdown;

/// How long one step (a node's bootstrap, a query) may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the transfer through the connection may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// One MiB, the unit of `--transfer-mib` and of the data's repeating pattern.
const MIB: usize = 1 << 20;

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
    /// Node `node` announced `publicKey` under `topic`; `storedAt` nodes hold the record.
    Announce {
        node: usize,
        topic: String,
        public_key: String,
        stored_at: usize,
        ms: f64,
    },
    /// Node `node` looked up `topic`: the peers the replies listed, and whether `publicKey`
    /// (the demo's announcer) was among them.
    Lookup {
        node: usize,
        topic: String,
        public_key: String,
        replies: usize,
        peers: Vec<String>,
        found: bool,
        ms: f64,
    },
    /// Node `node` stored `value` under `hash` at `storedAt` nodes.
    ImmutablePut {
        node: usize,
        hash: String,
        value: String,
        stored_at: usize,
        ms: f64,
    },
    /// Node `node` fetched `hash`; `value` is null if no node had it.
    ImmutableGet {
        node: usize,
        hash: String,
        value: Option<String>,
        from: Option<Addr>,
        ms: f64,
    },
    /// Node `node` stored `value` signed by `publicKey` with `seq` at `storedAt` nodes.
    MutablePut {
        node: usize,
        public_key: String,
        seq: u64,
        value: String,
        stored_at: usize,
        ms: f64,
    },
    /// Node `node`'s put with `seq` was refused by every node (`error`: `SEQ_TOO_LOW` or
    /// `SEQ_REUSED`); `refused` is false if some node accepted it after all.
    MutablePutRefused {
        node: usize,
        public_key: String,
        seq: u64,
        value: String,
        refused: bool,
        error: Option<String>,
        ms: f64,
    },
    /// Node `node` fetched the newest record of `publicKey`.
    MutableGet {
        node: usize,
        public_key: String,
        value: Option<String>,
        seq: Option<u64>,
        from: Option<Addr>,
        ms: f64,
    },
    /// Node `node` removed its announcement of `publicKey` under `topic`.
    Unannounce {
        node: usize,
        topic: String,
        public_key: String,
        ms: f64,
    },
    /// Node `node` connected to `publicKey`, on which node `server` listens, in `connectMs`,
    /// and sent it `bytes`; node `server` read them all (`intact`: exactly the bytes sent) at
    /// `mbPerSec` (10^6 bytes per second, from the first write to the last byte read). `ms`:
    /// the whole step (listen, connect, transfer).
    Connection {
        node: usize,
        server: usize,
        public_key: String,
        connect_ms: f64,
        bytes: u64,
        mb_per_sec: f64,
        intact: bool,
        ms: f64,
    },
    /// Two firewalled nodes (on one host every reply comes from a known address, so with the
    /// quick firewall check off they stay firewalled) connected by holepunching: both sampled
    /// their NAT, exchanged PEER_HOLEPUNCH rounds through the relays and probed each other;
    /// the stream runs between their puncher sockets.
    Holepunch {
        public_key: String,
        connect_ms: f64,
        /// The server's puncher socket, as the client's stream sees it.
        remote_address: Option<Addr>,
        /// Whether that is not one of the server node's DHT sockets (the proof it punched).
        punched: bool,
        intact: bool,
        ms: f64,
    },
    /// `peers` swarm peers, each on a node of its own, joined `topic` at the same moment; in
    /// `meshMs` every pair held exactly one connection, the same on both sides (`pairs` of
    /// them), and each peer wrote a line to every other one: `lines` arrived, `intact` if
    /// each was exactly what its sender wrote. `ms`: the whole step (nodes, join, mesh, lines).
    Swarm {
        peers: usize,
        topic: String,
        public_keys: Vec<String>,
        mesh_ms: f64,
        pairs: usize,
        lines: usize,
        intact: bool,
        ms: f64,
    },
    /// All `nodes` (the bootstrapper included) were destroyed.
    Done { nodes: usize, ms: u128 },
}

pub async fn run(args: DemoArgs, out: Output) -> Result<()> {
    let mut shutdown = Shutdown::install();
    let mut net = Network::default();
    let result = tokio::select! {
        r = demo(&mut net, usize::from(args.nodes), args.transfer_mib as usize, out) => r,
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

async fn demo(net: &mut Network, n: usize, mib: usize, out: Output) -> Result<()> {
    let started = Instant::now();
    net.started = Some(started);
    let host = Ipv4Addr::LOCALHOST;

    // 1. The bootstrapper.
    let bs = Dht::bootstrapper(0, host)
        .await
        .map_err(|e| Error::new(format!("cannot start the bootstrapper: {e}")))?;
    let bs = net.bootstrapper.insert(bs);
    step("the bootstrapper's start", bs.ready())
        .await?
        .map_err(|e| Error::new(format!("the bootstrapper: {e}")))?;
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
            ..DhtOptions::isolated()
        };
        let dht = Dht::new(opts)
            .await
            .map_err(|e| Error::new(format!("cannot start node {i}: {e}")))?;
        let dht = net.push(dht);
        step("a node's bootstrap", dht.ready())
            .await?
            .map_err(|e| Error::new(format!("node {i}'s bootstrap: {e}")))?;
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

    // 5. The records.
    records(net, out).await?;

    // 6. Two nodes connect by public key and move data.
    connection(net, mib, out).await?;

    // 7. Two firewalled nodes holepunch.
    holepunch(net, out).await?;

    // 8. Three swarm peers join one topic at the same moment and exchange lines.
    swarm(net, out).await
}

/// Two more nodes that stay firewalled connect through a holepunch (no LAN shortcut).
async fn holepunch(net: &mut Network, out: Output) -> Result<()> {
    use hdht_tokio::{ConnectOptions, ServerOptions};
    let bootstrap = vec![net
        .bootstrapper
        .as_ref()
        .map(|b| b.server_address().to_string())
        .unwrap_or_default()];
    let t0 = Instant::now();
    let mut peers = Vec::new();
    for _ in 0..2 {
        let opts = DhtOptions {
            bootstrap: bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: Persistence::Ephemeral,
            quick_firewall: false,
            ..DhtOptions::isolated()
        };
        let dht = Dht::new(opts)
            .await
            .map_err(|e| Error::new(format!("cannot start a firewalled node: {e}")))?;
        let dht = net.push(dht);
        step("a firewalled node's bootstrap", dht.ready())
            .await?
            .map_err(|e| Error::new(format!("a firewalled node's bootstrap: {e}")))?;
        peers.push(net.nodes.len() - 1);
    }
    let (server_dht, client_dht) = (&net.nodes[peers[0]], &net.nodes[peers[1]]);
    if !server_dht.is_firewalled() || !client_dht.is_firewalled() {
        return Err(Error::new(
            "the two holepunching nodes did not stay firewalled",
        ));
    }
    let dht_ports = [
        server_dht.server_address().port(),
        server_dht.client_address().port(),
    ];
    let kp = KeyPair::from_seed(&random_bytes()?);
    let mut server = server_dht.create_server_with(
        ServerOptions {
            hide_local_addresses: true,
            ..ServerOptions::default()
        },
        None,
    );
    step("the listen", server.listen(&kp))
        .await?
        .map_err(|e| Error::new(format!("the listen failed: {e}")))?;
    let t1 = Instant::now();
    let opts = ConnectOptions {
        local_connection: false,
        ..ConnectOptions::default()
    };
    let mut client = step(
        "the holepunch",
        client_dht.connect_with(kp.public_key(), opts),
    )
    .await?
    .map_err(|e| Error::new(format!("the holepunch failed: {e}")))?;
    let connect_ms = ms_since(t1);
    let mut accepted = step("the accept", server.accept())
        .await?
        .ok_or_else(|| Error::new("the server closed before the connection arrived"))?;
    let msg = b"punched through";
    let exchange = async {
        client.write_all(msg).await?;
        let mut got = [0u8; 15];
        accepted.read_exact(&mut got).await?;
        Ok::<_, std::io::Error>(got == *msg)
    };
    let intact = step("the punched stream", exchange)
        .await?
        .map_err(|e| Error::new(format!("the punched stream failed: {e}")))?;
    let remote = client.remote_address().and_then(|a| match a {
        std::net::SocketAddr::V4(a) => Some(a),
        std::net::SocketAddr::V6(_) => None,
    });
    let punched = remote.is_some_and(|a| !dht_ports.contains(&a.port()));
    drop((client, accepted));
    server.close();
    let ms = ms_since(t0);
    let ev = DemoEvent::Holepunch {
        public_key: hex::encode(kp.public_key()),
        connect_ms,
        remote_address: remote.map(Addr::from),
        punched,
        intact,
        ms,
    };
    out.emit(&ev, || {
        format!(
            "holepunch      two firewalled nodes, key {}  punched in {connect_ms:.2} ms to {}, {}",
            short_hex(&kp.public_key()),
            remote.map_or_else(|| "?".to_string(), |a| a.to_string()),
            if intact && punched {
                "intact"
            } else {
                "NOT PUNCHED"
            }
        )
    });
    if intact && punched {
        Ok(())
    } else {
        Err(Error::new(
            "the firewalled nodes did not connect over their puncher sockets",
        ))
    }
}

/// Swarm peers of the swarm step.
const SWARM_PEERS: usize = 3;
/// How long the swarm peers may take to mesh: peers that join at the same moment may miss
/// each other's records on their first lookup and meet on the rendezvous lookup 2 s later.
const SWARM_TIMEOUT: Duration = Duration::from_secs(15);

/// One swarm peer of the demo: its swarm, its connection stream and the newest connection
/// per peer (a newer one replaced an older duplicate).
struct SwarmPeer {
    swarm: SwarmHandle,
    stream: SwarmConnections,
    conns: BTreeMap<[u8; 32], Connection>,
}

impl SwarmPeer {
    /// Takes the connections announced so far.
    async fn collect(&mut self) {
        while let Ok(Some((conn, _))) =
            tokio::time::timeout(Duration::from_millis(10), self.stream.next()).await
        {
            self.conns.insert(conn.remote_public_key(), conn);
        }
    }
}

/// Whether every pair holds exactly one connection, the same (handshake hash) on both sides.
fn meshed(peers: &[SwarmPeer]) -> bool {
    let keys: Vec<[u8; 32]> = peers.iter().map(|p| p.swarm.public_key()).collect();
    peers.iter().all(|p| {
        let mut held = p.swarm.connections();
        held.sort_unstable();
        let mut want: Vec<[u8; 32]> = keys
            .iter()
            .copied()
            .filter(|k| *k != p.swarm.public_key())
            .collect();
        want.sort_unstable();
        held == want
            && want.iter().all(|k| {
                let other = peers.iter().find(|q| q.swarm.public_key() == *k);
                match (
                    p.conns.get(k),
                    other.and_then(|q| q.conns.get(&p.swarm.public_key())),
                ) {
                    (Some(a), Some(b)) => a.handshake_hash() == b.handshake_hash(),
                    _ => false,
                }
            })
    })
}

/// Three swarm peers (nodes of their own) join a fresh topic at the same moment; once every
/// pair holds one shared connection, each peer writes a line to every other one.
async fn swarm(net: &mut Network, out: Output) -> Result<()> {
    let bootstrap = vec![net
        .bootstrapper
        .as_ref()
        .map(|b| b.server_address().to_string())
        .unwrap_or_default()];
    let t0 = Instant::now();
    let mut peers = Vec::with_capacity(SWARM_PEERS);
    for _ in 0..SWARM_PEERS {
        let dht = Dht::new(DhtOptions {
            bootstrap: bootstrap.clone(),
            host: Ipv4Addr::LOCALHOST,
            persistence: Persistence::Adaptive,
            ..DhtOptions::isolated()
        })
        .await
        .map_err(|e| Error::new(format!("cannot start a swarm node: {e}")))?;
        let dht = net.push(dht);
        step("a swarm node's bootstrap", dht.ready())
            .await?
            .map_err(|e| Error::new(format!("a swarm node's bootstrap: {e}")))?;
        let swarm = SwarmHandle::start(dht.shared(), SwarmOptions::default())
            .map_err(|e| Error::new(format!("cannot start a swarm: {e}")))?;
        peers.push(SwarmPeer {
            stream: swarm.connection_stream(),
            swarm,
            conns: BTreeMap::new(),
        });
    }
    let topic = random_bytes()?;
    let t1 = Instant::now();
    let mut discoveries = Vec::with_capacity(SWARM_PEERS);
    for p in &peers {
        discoveries.push(
            p.swarm
                .join(topic, JoinOptions::default())
                .map_err(op_failed("a swarm join"))?,
        );
    }
    let mesh = async {
        loop {
            for p in peers.iter_mut() {
                p.collect().await;
            }
            if meshed(&peers) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SWARM_TIMEOUT, mesh)
        .await
        .map_err(|_| {
            Error::new(format!(
                "the swarm peers did not mesh within {} s",
                SWARM_TIMEOUT.as_secs()
            ))
        })?;
    let mesh_ms = ms_since(t1);
    let keys: Vec<[u8; 32]> = peers.iter().map(|p| p.swarm.public_key()).collect();
    let line = |from: usize| format!("hello from swarm peer {from}\n");
    for (i, p) in peers.iter_mut().enumerate() {
        for c in p.conns.values_mut() {
            step("a swarm line's write", c.write_all(line(i).as_bytes()))
                .await?
                .map_err(|e| Error::new(format!("a swarm write failed: {e}")))?;
        }
    }
    let (mut lines, mut intact) = (0, true);
    for p in peers.iter_mut() {
        for (key, c) in p.conns.iter_mut() {
            let from = keys.iter().position(|k| k == key).unwrap_or(usize::MAX);
            let want = line(from);
            let mut got = vec![0u8; want.len()];
            step("a swarm line's read", c.read_exact(&mut got))
                .await?
                .map_err(|e| Error::new(format!("a swarm read failed: {e}")))?;
            lines += 1;
            intact &= got == want.as_bytes();
        }
    }
    drop(discoveries);
    for p in &peers {
        p.swarm.leave(&topic).map_err(op_failed("a swarm leave"))?;
    }
    drop(peers);
    let pairs = SWARM_PEERS * (SWARM_PEERS - 1) / 2;
    let ms = ms_since(t0);
    let ev = DemoEvent::Swarm {
        peers: SWARM_PEERS,
        topic: hex::encode(topic),
        public_keys: keys.iter().map(hex::encode).collect(),
        mesh_ms,
        pairs,
        lines,
        intact,
        ms,
    };
    out.emit(&ev, || {
        format!(
            "swarm          {SWARM_PEERS} peers joined topic {} at once: one connection per pair ({pairs} pairs) in {mesh_ms:.0} ms; {lines} lines, {}",
            short_hex(&topic),
            if intact { "intact" } else { "CORRUPTED" }
        )
    });
    if intact && lines == SWARM_PEERS * (SWARM_PEERS - 1) {
        Ok(())
    } else {
        Err(Error::new("the swarm peers' lines arrived altered"))
    }
}

fn random_bytes() -> Result<[u8; 32]> {
    random_target().map(|t| t.0)
}

fn op_failed(what: &str) -> impl FnOnce(DhtError) -> Error + '_ {
    move |e| Error::new(format!("{what} failed: {e}"))
}

/// The records part: every step on a node of the network, one line each.
async fn records(net: &Network, out: Output) -> Result<()> {
    // The writer (announcer, putter) is node 0, the reader the last node (there are at least
    // two: a node never stores its own records, so a reader needs a third node to ask).
    let n = net.nodes.len();
    let (a, b) = (0, n - 1);
    let (writer, reader) = (&net.nodes[a], &net.nodes[b]);
    let reader_name = |i: usize| format!("node {i}");

    // Announce from one node, look up from another.
    let topic = random_bytes()?;
    let announcer = KeyPair::from_seed(&random_bytes()?);
    let (topic_hex, pk_hex) = (hex::encode(topic), hex::encode(announcer.public_key()));
    let t0 = Instant::now();
    let stored = step(
        "the announce",
        writer.announce(topic, &announcer, &[]).finish(),
    )
    .await?
    .map_err(op_failed("the announce"))?;
    let ms = ms_since(t0);
    let ev = DemoEvent::Announce {
        node: a,
        topic: topic_hex.clone(),
        public_key: pk_hex.clone(),
        stored_at: stored.len(),
        ms,
    };
    out.emit(&ev, || {
        format!(
            "announce       node {a:<2}  topic {}  key {}  stored at {} nodes  {ms:.2} ms",
            short_hex(&topic),
            short_hex(&announcer.public_key()),
            stored.len()
        )
    });
    lookup_step(reader, b, &reader_name(b), topic, &announcer, out).await?;

    // Immutable put and get.
    let value = b"hello from the hdht demo".to_vec();
    let t0 = Instant::now();
    let put = step("the immutable put", writer.immutable_put(&value))
        .await?
        .map_err(op_failed("the immutable put"))?;
    let ms = ms_since(t0);
    let ev = DemoEvent::ImmutablePut {
        node: a,
        hash: hex::encode(put.hash),
        value: String::from_utf8_lossy(&value).into_owned(),
        stored_at: put.closest_nodes.len(),
        ms,
    };
    out.emit(&ev, || {
        format!(
            "immutable put  node {a:<2}  {} -> hash {}  stored at {} nodes  {ms:.2} ms",
            show_value(&value),
            short_hex(&put.hash),
            put.closest_nodes.len()
        )
    });
    let t0 = Instant::now();
    let got = step("the immutable get", reader.immutable_get(put.hash))
        .await?
        .map_err(op_failed("the immutable get"))?;
    let ms = ms_since(t0);
    let ev = DemoEvent::ImmutableGet {
        node: b,
        hash: hex::encode(put.hash),
        value: got.as_ref().and_then(|g| text_value(&g.value)),
        from: got.as_ref().map(|g| g.from.into()),
        ms,
    };
    out.emit(&ev, || match &got {
        Some(g) => format!(
            "immutable get  {:<7}  hash {} -> {} from {}  {ms:.2} ms",
            reader_name(b),
            short_hex(&put.hash),
            show_value(&g.value),
            g.from
        ),
        None => format!(
            "immutable get  {:<7}  hash {} -> not found!  {ms:.2} ms",
            reader_name(b),
            short_hex(&put.hash)
        ),
    });

    // Mutable: seq 1, seq 2, a refused seq 1 (all from the same node: a node never stores
    // its own puts, so every node it commits to holds seq 2), then a get of the newest.
    let signer = KeyPair::from_seed(&random_bytes()?);
    let signer_hex = hex::encode(signer.public_key());
    for (seq, value) in [(1u64, &b"first"[..]), (2, &b"second"[..])] {
        let t0 = Instant::now();
        let put = step("a mutable put", writer.mutable_put(&signer, value, seq))
            .await?
            .map_err(op_failed("a mutable put"))?;
        let ms = ms_since(t0);
        let ev = DemoEvent::MutablePut {
            node: a,
            public_key: signer_hex.clone(),
            seq,
            value: String::from_utf8_lossy(value).into_owned(),
            stored_at: put.closest_nodes.len(),
            ms,
        };
        out.emit(&ev, || {
            format!(
                "mutable put    node {a:<2}  key {}  seq {seq} {}  stored at {} nodes  {ms:.2} ms",
                short_hex(&signer.public_key()),
                show_value(value),
                put.closest_nodes.len()
            )
        });
    }
    let stale = b"stale";
    let t0 = Instant::now();
    let res = step("a mutable put", writer.mutable_put(&signer, stale, 1)).await?;
    let ms = ms_since(t0);
    let error = match res {
        Ok(_) => None,
        Err(DhtError::Op(e @ (OpError::SeqTooLow | OpError::SeqReused))) => Some(e),
        Err(e) => return Err(op_failed("the stale mutable put")(e)),
    };
    let code = |e: &OpError| match e {
        OpError::SeqTooLow => "SEQ_TOO_LOW",
        _ => "SEQ_REUSED",
    };
    let ev = DemoEvent::MutablePutRefused {
        node: a,
        public_key: signer_hex.clone(),
        seq: 1,
        value: String::from_utf8_lossy(stale).into_owned(),
        refused: error.is_some(),
        error: error.as_ref().map(|e| code(e).to_string()),
        ms,
    };
    out.emit(&ev, || {
        format!(
            "mutable put    node {a:<2}  key {}  seq 1 {}  {}  {ms:.2} ms",
            short_hex(&signer.public_key()),
            show_value(stale),
            match &error {
                Some(e) => format!("refused: {} ({e})", code(e)),
                None => "! accepted by some node".to_string(),
            }
        )
    });
    let t0 = Instant::now();
    let got = step(
        "the mutable get",
        reader.mutable_get(signer.public_key(), 0, true),
    )
    .await?
    .map_err(op_failed("the mutable get"))?;
    let ms = ms_since(t0);
    let ev = DemoEvent::MutableGet {
        node: b,
        public_key: signer_hex.clone(),
        value: got.as_ref().and_then(|g| text_value(&g.value)),
        seq: got.as_ref().map(|g| g.seq),
        from: got.as_ref().map(|g| g.from.into()),
        ms,
    };
    out.emit(&ev, || match &got {
        Some(g) => format!(
            "mutable get    {:<7}  key {}  -> seq {} {} from {}  {ms:.2} ms",
            reader_name(b),
            short_hex(&signer.public_key()),
            g.seq,
            show_value(&g.value),
            g.from
        ),
        None => format!(
            "mutable get    {:<7}  key {}  -> not found!  {ms:.2} ms",
            reader_name(b),
            short_hex(&signer.public_key())
        ),
    });

    // Unannounce, and the lookup no longer finds the key.
    let t0 = Instant::now();
    step("the unannounce", writer.unannounce(topic, &announcer))
        .await?
        .map_err(op_failed("the unannounce"))?;
    let ms = ms_since(t0);
    let ev = DemoEvent::Unannounce {
        node: a,
        topic: topic_hex,
        public_key: pk_hex,
        ms,
    };
    out.emit(&ev, || {
        format!(
            "unannounce     node {a:<2}  topic {}  key {}  {ms:.2} ms",
            short_hex(&topic),
            short_hex(&announcer.public_key())
        )
    });
    lookup_step(reader, b, &reader_name(b), topic, &announcer, out).await
}

/// Node 0 listens on a fresh key pair; the last node connects to its public key (found through
/// the DHT) and sends `mib` MiB of a random 1 MiB pattern, then ends; node 0 reads to the end
/// and checks every byte.
async fn connection(net: &Network, mib: usize, out: Output) -> Result<()> {
    let (s, c) = (0, net.nodes.len() - 1);
    let (server_dht, client_dht) = (&net.nodes[s], &net.nodes[c]);
    let kp = KeyPair::from_seed(&random_bytes()?);
    let mut pattern = vec![0u8; MIB];
    OsRng
        .try_fill_bytes(&mut pattern)
        .map_err(|e| Error::new(format!("no OS randomness: {e}")))?;

    let t0 = Instant::now();
    let mut server = server_dht.create_server();
    step("the listen", server.listen(&kp))
        .await?
        .map_err(|e| Error::new(format!("the listen failed: {e}")))?;
    let t1 = Instant::now();
    let mut client = step("the connect", client_dht.connect(kp.public_key()))
        .await?
        .map_err(|e| Error::new(format!("the connect failed: {e}")))?;
    let connect_ms = ms_since(t1);
    let mut accepted = step("the accept", server.accept())
        .await?
        .ok_or_else(|| Error::new("the server closed before the connection arrived"))?;

    let t2 = Instant::now();
    let send = async {
        for _ in 0..mib {
            client.write_all(&pattern).await?;
        }
        client.shutdown().await
    };
    let receive = async {
        let mut buf = vec![0u8; 256 * 1024];
        let (mut got, mut intact) = (0usize, true);
        loop {
            let n = accepted.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            intact &= matches_pattern(&pattern, got, &buf[..n]);
            got += n;
        }
        Ok::<_, std::io::Error>((got, intact, t2.elapsed()))
    };
    let transfer = async { tokio::try_join!(send, receive) };
    let ((), (got, intact, elapsed)) = tokio::time::timeout(TRANSFER_TIMEOUT, transfer)
        .await
        .map_err(|_| {
            Error::new(format!(
                "the transfer took longer than {} s",
                TRANSFER_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Error::new(format!("the transfer failed: {e}")))?;
    drop((client, accepted));
    server.close();
    let intact = intact && got == mib * MIB;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mb_per_sec = (got as f64 / secs / 1e6 * 10.0).round() / 10.0;
    let ms = ms_since(t0);
    let ev = DemoEvent::Connection {
        node: c,
        server: s,
        public_key: hex::encode(kp.public_key()),
        connect_ms,
        bytes: got as u64,
        mb_per_sec,
        intact,
        ms,
    };
    out.emit(&ev, || {
        format!(
            "connection     node {c:<2} -> node {s}  key {}  connected in {connect_ms:.2} ms; {} MiB in {secs:.2} s = {mb_per_sec:.1} MB/s, {}",
            short_hex(&kp.public_key()),
            got as f64 / MIB as f64,
            if intact { "intact" } else { "CORRUPTED" }
        )
    });
    if intact {
        Ok(())
    } else {
        Err(Error::new(
            "the bytes node 0 read differ from the bytes sent",
        ))
    }
}

/// Whether `chunk`, found at offset `at` of the stream, matches the repeating `pattern`.
fn matches_pattern(pattern: &[u8], mut at: usize, mut chunk: &[u8]) -> bool {
    while !chunk.is_empty() {
        let off = at % pattern.len();
        let n = chunk.len().min(pattern.len() - off);
        if chunk[..n] != pattern[off..off + n] {
            return false;
        }
        at += n;
        chunk = &chunk[n..];
    }
    true
}

/// A lookup of `topic` from `dht`, reporting whether `announcer` is listed.
async fn lookup_step(
    dht: &Dht,
    node: usize,
    name: &str,
    topic: [u8; 32],
    announcer: &KeyPair,
    out: Output,
) -> Result<()> {
    let t0 = Instant::now();
    let (replies, peers) = step("a lookup", async {
        let mut stream = dht.lookup(topic);
        let mut replies = 0;
        let mut peers: Vec<[u8; 32]> = Vec::new();
        while let Some(reply) = stream.next().await {
            replies += 1;
            for p in reply.peers {
                if !peers.contains(&p.public_key) {
                    peers.push(p.public_key);
                }
            }
        }
        stream
            .finish()
            .await
            .map(|_| (replies, peers))
            .map_err(op_failed("a lookup"))
    })
    .await??;
    let ms = ms_since(t0);
    let found = peers.contains(&announcer.public_key());
    let ev = DemoEvent::Lookup {
        node,
        topic: hex::encode(topic),
        public_key: hex::encode(announcer.public_key()),
        replies,
        peers: peers.iter().map(hex::encode).collect(),
        found,
        ms,
    };
    out.emit(&ev, || {
        format!(
            "lookup         {name:<7}  topic {}  {replies} node(s) list {} peer(s): key {} {}  {ms:.2} ms",
            short_hex(&topic),
            peers.len(),
            short_hex(&announcer.public_key()),
            if found { "found" } else { "gone" }
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_check_wraps_around() {
        let pattern = [1u8, 2, 3, 4];
        assert!(matches_pattern(&pattern, 0, &[1, 2, 3, 4, 1, 2]));
        assert!(matches_pattern(
            &pattern,
            3,
            &[4, 1, 2, 3, 4, 1, 2, 3, 4, 1]
        ));
        assert!(matches_pattern(&pattern, 6, &[]));
        assert!(!matches_pattern(&pattern, 1, &[2, 3, 4, 1, 3]));
        assert!(!matches_pattern(&pattern, 0, &[2]));
    }
}

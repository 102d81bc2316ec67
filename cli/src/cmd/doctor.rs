//! `hdht doctor`: what this machine looks like to the DHT. Starts an adaptive node (as
//! `listen` does), bootstraps, PINGs every bootstrap node, and reports which answered and in
//! what time, our NAT class, public and local addresses, and which peers we can expect to
//! reach directly, by punching, or only through a relay (the connect path's rules, from
//! `hdht_tokio::core::connect::expected_path`).
//!
//! NAT classes: `open` (the DHT reaches our server socket unsolicited), `consistent` (a NAT
//! that maps our socket to one public port whatever the destination: punchable), `random` (a
//! NAT that picks a new port per destination), `firewalled` (no NAT — the public address is
//! one of our own — but unsolicited datagrams are dropped: punches like consistent), `unknown`
//! (too few answers to tell).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_tokio::core::connect::{expected_path, Firewall, Reach, Strategy};
use hdht_tokio::core::rpc::{Persistence, RequestSpec, PING};
use hdht_tokio::{Dht, DhtError, DhtOptions};
use serde::Serialize;

use super::common::{Error, Result};
use crate::args::{DoctorArgs, GlobalOpts};
use crate::codes::Code;
use crate::output::{Addr, Output};
use crate::signal::Shutdown;

/// How long the bootstrap may take before the doctor gives up on it.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// This machine's NAT, as the DHT sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NatClass {
    Open,
    Consistent,
    Random,
    Firewalled,
    Unknown,
}

impl NatClass {
    /// From the node's state after bootstrap: its firewall check and its NAT sampler's
    /// estimate of our public address (port 0: the ports disagree, a random NAT).
    pub fn classify(
        firewalled: bool,
        public: (Option<Ipv4Addr>, u16),
        local: &[SocketAddrV4],
    ) -> NatClass {
        if !firewalled {
            return NatClass::Open;
        }
        match public {
            (None, _) => NatClass::Unknown,
            (Some(_), 0) => NatClass::Random,
            (Some(host), _) if local.iter().any(|l| *l.ip() == host) => NatClass::Firewalled,
            (Some(_), _) => NatClass::Consistent,
        }
    }

    /// The holepunch's view of the class.
    fn firewall(self) -> Firewall {
        match self {
            NatClass::Open => Firewall::Open,
            NatClass::Consistent | NatClass::Firewalled => Firewall::Consistent,
            NatClass::Random => Firewall::Random,
            NatClass::Unknown => Firewall::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            NatClass::Open => "open",
            NatClass::Consistent => "consistent",
            NatClass::Random => "random",
            NatClass::Firewalled => "firewalled",
            NatClass::Unknown => "unknown",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            NatClass::Open => "the DHT reaches this node unsolicited: peers connect to it directly",
            NatClass::Consistent => {
                "behind a NAT that keeps one public port per socket: holepunching works with \
                 every peer but one behind a random NAT too"
            }
            NatClass::Random => {
                "behind a NAT that picks a new port for every destination: holepunching needs \
                 the peer's NAT to be consistent"
            }
            NatClass::Firewalled => {
                "on a public address, but a firewall drops unsolicited datagrams: holepunching \
                 works as behind a consistent NAT"
            }
            NatClass::Unknown => "too few nodes answered to tell",
        }
    }
}

/// The lines of `--json` (one object each).
#[derive(Debug, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum DoctorLine {
    /// One bootstrap node: whether it answered a PING, in what time, and where it saw us.
    BootstrapNode {
        host: String,
        port: u16,
        answered: bool,
        rtt_ms: Option<f64>,
        seen_as: Option<Addr>,
    },
    /// This machine.
    Nat {
        nat_class: NatClass,
        firewalled: bool,
        public_address: Option<Addr>,
        local_addresses: Vec<Addr>,
    },
    /// What to expect when connecting to a peer of class `remoteNatClass` (it as the server).
    Reach {
        remote_nat_class: NatClass,
        path: &'static str,
        strategy: Option<&'static str>,
        relay_only: bool,
    },
}

/// `path` and `strategy` names of a [`Reach`].
fn reach_names(r: Reach) -> (&'static str, Option<&'static str>) {
    match r {
        Reach::Direct => ("direct", None),
        Reach::Reverse => ("reverse", None),
        Reach::Holepunch(s) => (
            "holepunch",
            Some(match s {
                Strategy::Consistent => "consistent",
                Strategy::RandomProbes => "randomProbes",
                Strategy::Birthday => "birthday",
            }),
        ),
        Reach::RelayOnly => ("relayOnly", None),
        Reach::Unknown => ("unknown", None),
    }
}

fn reach_text(r: Reach) -> &'static str {
    match r {
        Reach::Direct => "direct (it is reachable)",
        Reach::Reverse => "direct (it connects back to us: we are reachable)",
        Reach::Holepunch(Strategy::Consistent) => "holepunch (both consistent)",
        Reach::Holepunch(Strategy::RandomProbes) => "holepunch (we probe random ports of its host)",
        Reach::Holepunch(Strategy::Birthday) => "holepunch (we open 256 sockets toward it)",
        Reach::RelayOnly => "only through a relay (both NATs random)",
        Reach::Unknown => "unknown (our NAT class is unknown)",
    }
}

pub async fn run(args: DoctorArgs, global: &GlobalOpts, out: Output) -> Result<()> {
    let mut shutdown = Shutdown::install();
    let entries = global.bootstrap_list();
    let bootstrap = tokio::task::spawn_blocking(move || hdht_tokio::resolve_bootstrap(&entries))
        .await
        .map_err(|e| Error::new(format!("resolving the bootstrap nodes: {e}")))?
        .map_err(|e| Error::from_err("bootstrap", &e))?;
    let opts = DhtOptions {
        bootstrap: bootstrap.iter().map(ToString::to_string).collect(),
        host: global.bind_host(),
        port: args.port,
        persistence: Persistence::Adaptive,
        ..DhtOptions::isolated()
    };
    let dht = Dht::new(opts)
        .await
        .map_err(|e| Error::from_err("cannot start a node", &e))?;
    let result = tokio::select! {
        r = diagnose(&dht, &bootstrap, out) => r,
        sig = shutdown.recv() => Err(Error::coded("INTERRUPTED", format!("interrupted by {sig}"))),
    };
    dht.destroy().await;
    result
}

async fn diagnose(dht: &Dht, bootstrap: &[SocketAddrV4], out: Output) -> Result<()> {
    let ready = match tokio::time::timeout(BOOTSTRAP_TIMEOUT, dht.ready()).await {
        Ok(r) => r,
        Err(_) => {
            return Err(Error::coded(
                "TIMEOUT",
                format!(
                    "the bootstrap took longer than {} s",
                    BOOTSTRAP_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    // Every bootstrap node at once, each PING timed by the core.
    let pings: Vec<_> = bootstrap
        .iter()
        .map(|addr| {
            let mut spec = RequestSpec::new(*addr, PING);
            spec.internal = true;
            (*addr, dht.request(spec))
        })
        .collect();
    let mut answered = 0;
    for (addr, ping) in pings {
        let reply = ping.await.ok();
        answered += usize::from(reply.is_some());
        let rtt_ms = reply
            .as_ref()
            .map(|r| (r.rtt.as_secs_f64() * 1e6).round() / 1e3);
        let seen_as = reply.as_ref().map(|r| r.to);
        let line = DoctorLine::BootstrapNode {
            host: addr.ip().to_string(),
            port: addr.port(),
            answered: reply.is_some(),
            rtt_ms,
            seen_as: seen_as.map(Addr::from),
        };
        out.emit(&line, || match (rtt_ms, seen_as) {
            (Some(ms), Some(to)) => {
                format!("bootstrap  {addr:<21}  answered in {ms:.2} ms (sees us at {to})")
            }
            _ => format!("bootstrap  {addr:<21}  no answer"),
        });
    }
    if let Err(e @ DhtError::NoBootstrapReply { .. }) = &ready {
        return Err(Error::coded(
            e.cli_code(),
            format!("{e}: check --bootstrap and that the network is reachable"),
        ));
    }
    ready.map_err(|e| Error::from_err("bootstrap failed", &e))?;
    if answered == 0 && !bootstrap.is_empty() {
        return Err(Error::coded(
            "NO_BOOTSTRAP_REPLY",
            "no bootstrap node answered the doctor's PING",
        ));
    }

    let local = hdht_tokio::local_addresses(dht.server_address());
    let firewalled = dht.is_firewalled();
    let (host, port) = dht.public_address();
    let class = NatClass::classify(firewalled, (host, port), &local);
    let public = host
        .filter(|_| port != 0)
        .map(|h| SocketAddrV4::new(h, port));
    let line = DoctorLine::Nat {
        nat_class: class,
        firewalled,
        public_address: public.map(Addr::from),
        local_addresses: local.iter().copied().map(Addr::from).collect(),
    };
    out.emit(&line, || {
        let list: Vec<String> = local.iter().map(ToString::to_string).collect();
        format!(
            "nat        {}: {}\npublic     {}\nlocal      {}\nto reach a peer that is …",
            class.name(),
            class.explain(),
            match (public, host) {
                (Some(a), _) => a.to_string(),
                (None, Some(h)) => format!("{h} (the port changes per destination)"),
                (None, None) => "unknown".to_string(),
            },
            list.join(", ")
        )
    });
    for remote in [NatClass::Open, NatClass::Consistent, NatClass::Random] {
        let reach = expected_path(class.firewall(), remote.firewall());
        let (path, strategy) = reach_names(reach);
        let line = DoctorLine::Reach {
            remote_nat_class: remote,
            path,
            strategy,
            relay_only: reach == Reach::RelayOnly,
        };
        out.emit(&line, || {
            format!("  {:<12} {}", remote.name(), reach_text(reach))
        });
    }
    out.note(|| {
        "  (a peer on our LAN, behind the same public address, is tried over the LAN first)"
            .to_string()
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let local = [SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 5), 7)];
        let public = Ipv4Addr::new(1, 2, 3, 4);
        assert_eq!(
            NatClass::classify(false, (Some(public), 9), &local),
            NatClass::Open
        );
        assert_eq!(
            NatClass::classify(true, (Some(public), 9), &local),
            NatClass::Consistent
        );
        assert_eq!(
            NatClass::classify(true, (Some(public), 0), &local),
            NatClass::Random
        );
        assert_eq!(
            NatClass::classify(true, (Some(Ipv4Addr::new(192, 168, 1, 5)), 9), &local),
            NatClass::Firewalled
        );
        assert_eq!(
            NatClass::classify(true, (None, 0), &local),
            NatClass::Unknown
        );
    }
}

//! What a connect-path machine (a client's connect, a server, a holepunch) may use while it
//! handles one input, besides the actions it returns: the time, the node's RNG, the node's
//! pool sockets and random-punch throttle (bookkeeping the machine needs an answer from at
//! once — the socket id a new puncher binds, whether a random punch may start), and facts
//! about the node read at the start of the input.
//!
//! Everything that leaves the node — requests, replies, probes, streams, events — is an action
//! the machine returns and the node applies, in order, after the call.

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use rand_core::{CryptoRng, RngCore};

use super::pool::{socket_kind, udx_socket, SocketPool};
use crate::connect::nat::firewall_from_wire_lenient;
use crate::connect::puncher::MAX_SAMPLE_NODES;
use crate::connect::{Firewall, Puncher, PuncherConfig, PuncherOutput, RandomPunchLimiter};
use crate::relay::RelayServer;
use crate::rpc::{RoutingTable, SocketKind};
use crate::udx::{self, Demux};
use crate::Instant;

/// Facts about the node a machine decides by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeFacts<'a> {
    /// dht-rpc thinks we are firewalled.
    pub(crate) firewalled: bool,
    /// Our address as the DHT sees it, once known.
    pub(crate) remote_address: Option<SocketAddrV4>,
    /// Our NAT randomizes ports (`dht.randomized`: the DHT sees our host, no stable port).
    pub(crate) randomized: bool,
    /// The socket our own requests leave from.
    pub(crate) primary_socket: SocketKind,
    /// Local addresses advertised for the LAN shortcut.
    pub(crate) local_addresses: &'a [SocketAddrV4],
    /// The routing table (NAT samples for a new puncher).
    pub(crate) table: &'a RoutingTable,
    /// The UDX streams in use (a new stream needs a free id).
    pub(crate) streams: &'a Demux,
    /// The node's relay, whose relay stream ids are taken too.
    pub(crate) relay: Option<&'a RelayServer>,
    /// The connection-buffer budget is spent: a server answers handshakes with `TRY_LATER`.
    pub(crate) budget_spent: bool,
}

/// The environment of one machine call.
pub(crate) struct Env<'a, R> {
    /// The time of the input.
    pub(crate) now: Instant,
    /// The node's RNG (handshakes, secret boxes, punchers, stream ids).
    pub(crate) rng: &'a mut R,
    /// The node's pool sockets.
    pub(crate) pool: &'a mut SocketPool,
    /// The node-wide random-punch throttle.
    pub(crate) random_punches: &'a mut RandomPunchLimiter,
    /// Facts about the node.
    pub(crate) node: NodeFacts<'a>,
}

impl<R: RngCore + CryptoRng> Env<'_, R> {
    /// The firewall we report in handshakes: OPEN once the DHT told us our address.
    pub(crate) fn our_firewall(&self) -> u64 {
        if self.node.remote_address.is_some() {
            Firewall::OPEN
        } else {
            Firewall::UNKNOWN
        }
    }

    /// The addresses we advertise: our public one, then (if asked) our local ones.
    pub(crate) fn our_addresses(&self, include_local: bool) -> Vec<SocketAddrV4> {
        let mut out: Vec<SocketAddrV4> = self.node.remote_address.into_iter().collect();
        if include_local {
            for a in self.node.local_addresses {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }

    /// A fresh, nonzero UDX stream id not in use.
    pub(crate) fn new_stream_id(&mut self) -> u32 {
        loop {
            let id = self.rng.next_u32();
            if id != 0
                && !self.node.streams.contains(id)
                && !self.node.relay.is_some_and(|r| r.is_relay_stream(id))
            {
                return id;
            }
        }
    }

    /// A puncher on a new pool socket, sampling its NAT from the latest nodes of the table
    /// (`setupHolepuncher`); `None` when no socket is left.
    pub(crate) fn new_puncher(&mut self, initiator: bool, remote_firewall: u64) -> Option<Puncher> {
        let id = self.pool.open()?;
        let samples: Vec<SocketAddrV4> = self
            .node
            .table
            .latest_first()
            .take(MAX_SAMPLE_NODES)
            .map(|e| e.addr)
            .collect();
        let config = PuncherConfig {
            initiator,
            dht_firewalled: self.node.firewalled,
            remote_firewall: firewall_from_wire_lenient(remote_firewall),
        };
        Some(Puncher::new(
            config,
            udx_socket(SocketKind::Pool(id)),
            &samples,
            self.rng,
        ))
    }

    /// Up to `count` more pool sockets for a puncher (fewer at the pool's limit).
    pub(crate) fn open_pool_sockets(&mut self, count: usize) -> Vec<udx::SocketId> {
        let mut out = Vec::new();
        for _ in 0..count {
            match self.pool.open() {
                Some(id) => out.push(udx_socket(SocketKind::Pool(id))),
                None => break,
            }
        }
        out
    }

    /// A puncher let go of `socket` (it closes unless a stream runs over it).
    pub(crate) fn release_puncher_socket(&mut self, socket: udx::SocketId) {
        if let SocketKind::Pool(id) = socket_kind(socket) {
            self.pool.release_puncher(id);
        }
    }

    /// A stream now runs over `socket` (a punched connection keeps its puncher's socket).
    pub(crate) fn hold_stream_socket(&mut self, socket: udx::SocketId) {
        if let SocketKind::Pool(id) = socket_kind(socket) {
            self.pool.hold_stream(id);
        }
    }

    /// Destroys a puncher that is being dropped and applies its last outputs (socket releases,
    /// the end of a random punch).
    pub(crate) fn retire_puncher(&mut self, mut puncher: Puncher) {
        let kept = puncher.connected().map(|(s, _)| s);
        puncher.destroy();
        while let Some(out) = puncher.poll_output() {
            match out {
                PuncherOutput::ReleaseSocket(s) => self.release_puncher_socket(s),
                PuncherOutput::RandomPunchBegin | PuncherOutput::RandomPunchEnd => {
                    self.random_punches.apply(self.now, &out)
                }
                _ => {}
            }
        }
        // The connected socket now belongs to the stream (held before this).
        if let Some(s) = kept {
            self.release_puncher_socket(s);
        }
    }
}

//! A blind relay on a node (ARCHITECTURE §8, "Relay server"): a listening server whose
//! accepted connections are message-framed and become [`RelayServer`] sessions (session id =
//! the connection's id, channel id = the peer's public key, as hyperdht's relays), and whose
//! relayed UDX streams are forwarded on the node's own sockets.
//!
//! The node routes to it: a UDX datagram whose stream id is a relay stream (before the
//! demux), every message of a relay connection, a relay connection's end and close, its
//! timer. Relay connections raise no [`ConnectEvent`]s: the relay owns them.

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::relay_service::{RelayService, RelayServiceStats};
use super::DhtNode;
use crate::connect::ConnectError;
use crate::crypto::KeyPair;
use crate::dht::connection::ConnError;
use crate::dht::ids::{ConnId, ServerId};
use crate::dht::pool::{socket_kind, udx_socket};
use crate::dht::server::ServerOptions;
use crate::dht::DatagramOut;
use crate::relay::{Forward, RelayEvent, RelayLimits, RelayServer};
use crate::rpc::SocketKind;
use crate::Instant;

#[allow(unused_imports)] // doc links
use crate::dht::event::ConnectEvent;

impl<R: RngCore + CryptoRng> DhtNode<R> {
    /// Runs a blind relay (blind-relay 1.6.1's server, as `hyperdht --relay`): listens on
    /// `key_pair` (announced like any server, [`ConnectEvent::Listening`] when announced);
    /// peers connecting to it pair their UDX streams by token and the node forwards their
    /// packets. One relay per node.
    pub fn relay_server(
        &mut self,
        now: Instant,
        key_pair: KeyPair,
        limits: RelayLimits,
    ) -> Result<ServerId, ConnectError> {
        if self.relay.is_some() {
            return Err(ConnectError::AlreadyListening);
        }
        let server = self.create_server(ServerOptions::default());
        if let Err(e) = self.listen(now, server, Some(key_pair)) {
            self.servers.remove(&server);
            return Err(e);
        }
        self.relay = Some(RelayService {
            server,
            relay: RelayServer::new(limits),
        });
        Ok(server)
    }

    /// The relay's counters, if this node runs one.
    pub fn relay_stats(&self) -> Option<RelayServiceStats> {
        self.relay.as_ref().map(|r| RelayServiceStats {
            server: r.server,
            control: r.relay.stats(),
            forward: r.relay.forward_stats(),
            sessions: r.relay.sessions(),
        })
    }

    /// Whether `server` is the relay's.
    pub(super) fn is_relay_server(&self, server: ServerId) -> bool {
        self.relay.as_ref().is_some_and(|r| r.server == server)
    }

    /// Whether `conn` is a relay session.
    pub(super) fn is_relay_conn(&self, conn: ConnId) -> bool {
        self.relay.is_some()
            && self
                .conns
                .server_of(conn)
                .is_some_and(|s| self.is_relay_server(s))
    }

    /// A relay connection reached its peer: it carries Protomux frames from now on, and the
    /// relay opens its `blind-relay` channel on it.
    pub(super) fn relay_accept(&mut self, now: Instant, conn: ConnId) {
        let Some(remote) = self.conns.info(conn).map(|i| i.remote_public_key) else {
            return;
        };
        self.conns.set_message_framing(conn);
        let Some(r) = self.relay.as_mut() else {
            return;
        };
        if r.relay.accept(conn.0, Some(&remote)).is_err() {
            return self.conn_destroy(conn);
        }
        self.relay_flush(now);
    }

    /// Feeds a relay connection's messages to its session.
    pub(super) fn relay_read(&mut self, now: Instant, conn: ConnId) {
        while let Some(msg) = self.conns.pop_message(conn) {
            let Some(r) = self.relay.as_mut() else {
                return;
            };
            let udx = &self.conns.udx;
            let rng = self.rpc.rng();
            // An error ends the session: SessionEnded (below) destroys the connection.
            let _ = r
                .relay
                .handle_frame(now, conn.0, &msg, rng, |id| udx.contains(id));
        }
        if self.conns.has_read_room(conn) {
            let progress = self.conns.pump_read(now, conn);
            if progress.error.is_none() && progress.readable {
                return self.relay_read(now, conn);
            }
        }
        self.relay_flush(now);
    }

    /// Writes the relay's frames and applies its events.
    pub(super) fn relay_flush(&mut self, now: Instant) {
        let mut ended = alloc::vec::Vec::new();
        if let Some(r) = self.relay.as_mut() {
            while let Some((session, frame)) = r.relay.poll_frame() {
                // A control frame that does not fit the send buffer: the peer does not read
                // its relay connection; end the session.
                if !matches!(
                    self.conns.write_message(now, ConnId(session), &frame),
                    Ok(true)
                ) {
                    ended.push(ConnId(session));
                }
            }
            while let Some(ev) = r.relay.poll_event() {
                if let RelayEvent::SessionEnded { session, .. } = ev {
                    ended.push(ConnId(session));
                }
            }
        }
        for conn in ended {
            if let Some(r) = self.relay.as_mut() {
                r.relay.close_session(conn.0);
            }
            if !self.conns.is_closed(conn) {
                self.conns.destroy(conn);
                self.close_conn(conn, Some(ConnError::Destroyed));
            }
        }
    }

    /// A relay connection closed: its session goes, and the node forgets it (nobody else
    /// will).
    pub(super) fn relay_closed(&mut self, conn: ConnId) {
        if let Some(r) = self.relay.as_mut() {
            r.relay.close_session(conn.0);
        }
        self.conn_forget(conn);
    }

    /// A datagram for a relay stream is forwarded (queued for
    /// [`relay_transmit`](Self::relay_transmit)); false if it is not one.
    pub(super) fn relay_datagram(
        &mut self,
        socket: SocketKind,
        from: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let Some(r) = self.relay.as_mut() else {
            return false;
        };
        !matches!(
            r.relay.handle_datagram(udx_socket(socket), from, bytes),
            Forward::NotRelayed
        )
    }

    /// The next forwarded datagram.
    pub(super) fn relay_transmit(&mut self, buf: &mut [u8]) -> Option<DatagramOut> {
        let r = self.relay.as_mut()?;
        loop {
            let (socket, to, len) = r.relay.poll_transmit(buf)?;
            if let SocketAddr::V4(to) = to {
                return Some(DatagramOut {
                    socket: socket_kind(socket),
                    to,
                    len,
                    ttl: None,
                });
            }
        }
    }

    /// The relay's timer.
    pub(super) fn relay_poll_timeout(&self) -> Option<Instant> {
        self.relay.as_ref()?.relay.poll_timeout()
    }

    /// Expires pending pairings.
    pub(super) fn relay_timeout(&mut self, now: Instant) {
        if let Some(r) = self.relay.as_mut() {
            r.relay.handle_timeout(now);
        }
        self.relay_flush(now);
    }
}

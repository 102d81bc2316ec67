//! Blind relaying in the connect path (ARCHITECTURE §8, spec 05 §3): one [`RelayLink`] per
//! connection that pairs through a relay, on a client's connect or a server's accepted
//! handshake. `client/` and `server/` only decide ([`RelayPlan`]); this applies it.
//!
//! - **Relay session.** One relay connection per relay key ([`RelaySession`]), shared by
//!   every link that pairs through that relay: an ordinary connect to the relay's key with
//!   the node's default key pair, message-framed from its first message; its events never
//!   reach the owner (they are taken in [`DhtNode::emit`]). Once its stream connected, a
//!   [`RelayClient`] pairs each link's token in the plan's role with the application stream's
//!   id; every frame is one secret-stream message. A pairing on a live session sends its
//!   `pair` at once (no lookup, no handshake). A session whose connection fails fails every
//!   pairing still on it, and the next pairing makes a new one.
//! - **Paired.** The application stream connects to the relay stream over the relay
//!   connection's socket and remote address (so the NAT mapping exists), and the connection
//!   opens with the peer-to-peer handshake. No pairing within 15 s, or a relay connection that
//!   failed: the connect fails with `RELAY_ABORTED` only if no punch is alive.
//! - **Upgrade.** Punching continues. When our punch wins, the stream `change_remote`s to the
//!   direct path; a packet for a relayed stream arriving anywhere but from the relay (the peer's
//!   punch won) does the same. The first packet over the direct path releases the pairing
//!   after a linger; once the move is acknowledged an empty UDX message tells the peer. A
//!   direct path that wins before the relay paired releases it at once.
//! - **Release.** A pairing that is no longer used sends `unpair` (the relay drops its pending
//!   entry or destroys both relay streams — what the reference gets by closing its relay
//!   connection); the session then lingers idle ([`relay_session`](super::relay_session))
//!   for the next pairing through that relay, and ends after its linger or with the node.

use alloc::vec::Vec;
use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use super::relay_link::{RelayLink, RelayPath};
use super::relay_session::{RelaySession, MAX_IDLE_SESSIONS, SESSION_KEEP_ALIVE};
use super::DhtNode;
use crate::connect::{ConnectError, ErrorCode};
use crate::dht::client::ConnectOptions;
use crate::dht::event::ConnectEvent;
use crate::dht::ids::{ConnId, ServerId};
use crate::dht::pool::socket_kind;
use crate::relay::{ClientEvent, RelayClient, RelayPlan, Token, PAIRING_TIMEOUT};
use crate::rpc::SocketKind;
use crate::udx;
use crate::Instant;

/// How long a relay connection outlives the relayed connection that closed over it: the
/// stream still acknowledges the peer's retransmitted END meanwhile (its linger).
const RELAY_LINGER: Duration = Duration::from_secs(3);

/// How long after pairing a relayed stream sends its first packets again when nothing came
/// through the relay yet: a quarter of the relay connection's smoothed RTT, 5–100 ms (10 ms
/// before any measurement).
///
/// The relay tells both peers at once that they are paired, and both send at once; it drops
/// a packet whose partner has not sent its first one yet (its address is unknown), so of two
/// first packets arriving together the first is dropped. Resent as soon as the peer's first
/// packet arrives, that costs a full round trip through the relay; resent a little later
/// than the first, it passes the relay just behind the peer's own.
fn first_resend_delay(relay_srtt: Duration) -> Duration {
    if relay_srtt.is_zero() {
        return Duration::from_millis(10);
    }
    (relay_srtt / 4).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

fn event_conn(ev: &ConnectEvent) -> Option<ConnId> {
    match ev {
        ConnectEvent::Open { conn, .. }
        | ConnectEvent::Failed { conn, .. }
        | ConnectEvent::Closed { conn, .. }
        | ConnectEvent::Readable(conn)
        | ConnectEvent::Writable(conn)
        | ConnectEvent::Flushed(conn)
        | ConnectEvent::End(conn) => Some(*conn),
        _ => None,
    }
}

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

impl<R: RngCore + CryptoRng> DhtNode<R> {
    /// How the connection `conn` relates to its blind relay; `None` if it never tried one.
    pub fn conn_relay_path(&self, conn: ConnId) -> Option<RelayPath> {
        self.relay_links.get(&conn).map(|l| l.path)
    }

    /// Our relay sessions: `(relay connections, of which idle)`.
    pub fn relay_session_counts(&self) -> (usize, usize) {
        let idle = self
            .relay_conns
            .values()
            .filter(|s| s.idle_since.is_some())
            .count();
        (self.relay_conns.len(), idle)
    }

    /// The connection of our reusable session with the relay `relay`, if one is live.
    pub fn relay_session_conn(&self, relay: &[u8; 32]) -> Option<ConnId> {
        self.relay_sessions.get(relay).copied()
    }

    /// Whether `ev` belongs to a relay connection of ours (then it was handled here).
    pub(super) fn take_relay_event(&mut self, ev: &ConnectEvent) -> bool {
        let Some(rconn) = event_conn(ev) else {
            return false;
        };
        if !self.relay_conns.contains_key(&rconn) {
            return false;
        }
        let now = self.last_now;
        match ev {
            ConnectEvent::Open { .. } => self.relay_conn_opened(now, rconn),
            ConnectEvent::Readable(_) => self.relay_conn_read(now, rconn),
            ConnectEvent::End(_) => {
                let _ = self.conns.end(rconn);
            }
            ConnectEvent::Failed { .. } | ConnectEvent::Closed { .. } => {
                match ev {
                    ConnectEvent::Failed {
                        error: ConnectError::RemoteAborted(code),
                        ..
                    } if *code == ErrorCode::TRY_LATER => tracing::debug!(
                        relay_conn = rconn.0,
                        "relay: the relay answered TRY_LATER and aborted our relay connection \
                         (it is firewalled and ran a random punch within its randomPunchInterval; \
                         a relay connection has no relay token to wait with): pairing fails, \
                         as the reference's"
                    ),
                    ConnectEvent::Failed { error, .. } => {
                        tracing::debug!(relay_conn = rconn.0, %error, "relay: the relay connection failed");
                    }
                    _ => tracing::debug!(relay_conn = rconn.0, "relay: the relay connection ended"),
                }
                self.relay_session_gone(now, rconn);
                if matches!(ev, ConnectEvent::Closed { .. }) {
                    self.conn_forget(rconn);
                }
            }
            _ => {}
        }
        true
    }

    /// A relay connection failed or closed: its session goes, every pairing still on it
    /// fails (as the reference's relay request with its connection), and the next pairing
    /// through that relay makes a new session.
    fn relay_session_gone(&mut self, now: Instant, rconn: ConnId) {
        let Some(s) = self.relay_conns.remove(&rconn) else {
            return;
        };
        if self.relay_sessions.get(&s.relay) == Some(&rconn) {
            self.relay_sessions.remove(&s.relay);
        }
        for app in s.links {
            match self.relay_links.get_mut(&app) {
                Some(l) if l.relay_conn == Some(rconn) => l.relay_conn = None,
                _ => continue,
            }
            self.relay_gave_up(now, app);
            if !self.conns.contains(app) && !self.attempts.contains_key(&app) {
                self.relay_links.remove(&app);
            }
        }
    }

    /// A connect's handshake reply confirmed the relay it started pairing through with the
    /// connect (`peer_udx`: the server's stream): the pairing carries on, and if the relay
    /// already paired, the stream connects through it now. An early pairing that failed
    /// meanwhile is started again, as the reference would start it now.
    pub(super) fn relay_adopt(&mut self, now: Instant, app: ConnId, peer_udx: u32) {
        let Some(l) = self.relay_links.get_mut(&app) else {
            return;
        };
        l.peer_udx = peer_udx;
        if l.path != RelayPath::Pairing {
            let (plan, keep_alive, app_stream) = (l.plan, l.keep_alive, l.app_stream);
            let path = l.path;
            self.relay_let_go(app, path);
            self.relay_links.remove(&app);
            tracing::debug!(
                conn = app.0,
                "relay: the early pairing failed; pairing again after the reply"
            );
            return self.relay_start(now, app, app_stream, plan, peer_udx, keep_alive, None);
        }
        if let Some(relay_stream_id) = l.paired_early.take() {
            self.relay_paired(now, app, relay_stream_id);
        }
    }

    /// A connect's handshake reply chose another relay (or none): the pairing it started with
    /// the connect is let go, and its record removed so another can start.
    pub(super) fn relay_cancel(&mut self, app: ConnId) {
        if !self.relay_links.contains_key(&app) {
            return;
        }
        self.relay_let_go(app, RelayPath::Direct);
        self.relay_links.remove(&app);
    }

    /// Starts pairing `app` (whose own stream is `app_stream`) through the plan's relay: on
    /// the node's session with that relay if one is live (its `pair` goes at once when the
    /// session's stream is connected), else on a new one.
    #[allow(clippy::too_many_arguments)] // a link's fields
    pub(super) fn relay_start(
        &mut self,
        now: Instant,
        app: ConnId,
        app_stream: u32,
        plan: RelayPlan,
        peer_udx: u32,
        keep_alive: Option<Duration>,
        server: Option<ServerId>,
    ) {
        if self.relay_links.contains_key(&app) {
            return;
        }
        let warm = self.relay_sessions.get(&plan.relay).copied().filter(|c| {
            self.relay_conns
                .get(c)
                .is_some_and(|s| s.takes(&plan.token))
        });
        // A new session's id is known before the connect, so even an immediate failure is ours.
        let rconn = warm.unwrap_or(ConnId(self.next_conn));
        self.relay_links.insert(
            app,
            RelayLink {
                relay_conn: Some(rconn),
                plan,
                app_stream,
                peer_udx,
                deadline: now + PAIRING_TIMEOUT,
                keep_alive,
                path: RelayPath::Pairing,
                via: None,
                server,
                confirm_direct: false,
                announced: false,
                heard_through_relay: false,
                resend_at: None,
                end_at: None,
                paired_early: None,
            },
        );
        if warm.is_some() {
            let Some(s) = self.relay_conns.get_mut(&rconn) else {
                return;
            };
            s.links.insert(app);
            s.pending.insert(plan.token, app);
            s.idle_since = None;
            if let Some(ka) = keep_alive.filter(|d| !d.is_zero()) {
                self.conns.set_keep_alive(now, rconn, Some(ka));
            }
            let Some(client) = s.client.as_mut() else {
                tracing::debug!(
                    conn = app.0,
                    relay_conn = rconn.0,
                    "relay: pairing on the relay session being connected"
                );
                return;
            };
            tracing::debug!(
                conn = app.0,
                relay_conn = rconn.0,
                is_initiator = plan.is_initiator,
                "relay: pair request sent at once on the warm relay session"
            );
            if client
                .pair(now, plan.is_initiator, plan.token, app_stream)
                .is_err()
            {
                s.pending.remove(&plan.token);
                return self.relay_gave_up(now, app);
            }
            return self.relay_client_flush(now, rconn);
        }
        // A session that cannot take this pairing is replaced for the next ones.
        let rconn = self.relay_session_open(now, plan.relay, Some(app));
        if let Some(s) = self.relay_conns.get_mut(&rconn) {
            s.pending.insert(plan.token, app);
        }
    }

    /// Opens a new session with `relay` (for `app`'s pairing, or kept warm with none); a
    /// session it replaces no longer takes new pairings. Its id is known before the connect,
    /// so even an immediate failure is ours.
    fn relay_session_open(&mut self, now: Instant, relay: [u8; 32], app: Option<ConnId>) -> ConnId {
        let rconn = ConnId(self.next_conn);
        if let Some(old) = self.relay_sessions.remove(&relay) {
            if let Some(s) = self.relay_conns.get_mut(&old) {
                s.reusable = false;
            }
            self.relay_session_idle(now, old);
        }
        tracing::debug!(
            conn = app.map(|a| a.0),
            relay_conn = rconn.0,
            "relay: a new relay session (lookup and handshake with the relay)"
        );
        let mut session = RelaySession::new(relay);
        session.links.extend(app);
        self.relay_conns.insert(rconn, session);
        self.relay_sessions.insert(relay, rconn);
        let got = self.connect(now, relay, ConnectOptions::default());
        debug_assert_eq!(got, rconn);
        if self.relay_conns.contains_key(&rconn) {
            self.conn_set_message_framing(rconn);
        }
        rconn
    }

    /// A server listens naming `relays` by key: a session with each opens now and is kept
    /// while it listens, so its first relayed connection pairs at once.
    pub(super) fn relay_pin(&mut self, now: Instant, server: ServerId, relays: Vec<[u8; 32]>) {
        for relay in relays {
            self.relay_pins.entry(relay).or_default().insert(server);
            match self.relay_sessions.get(&relay).copied() {
                Some(rconn) => {
                    if let Some(s) = self.relay_conns.get_mut(&rconn) {
                        s.idle_since = None;
                    }
                }
                None => {
                    tracing::debug!(
                        server = server.0,
                        "relay: the server's relay session opens at listen"
                    );
                    self.relay_session_open(now, relay, None);
                }
            }
        }
    }

    /// A server stopped listening: the sessions kept for it alone may idle out.
    pub(super) fn relay_unpin(&mut self, now: Instant, server: ServerId) {
        let mut freed = Vec::new();
        self.relay_pins.retain(|relay, servers| {
            servers.remove(&server);
            if servers.is_empty() {
                freed.push(*relay);
            }
            !servers.is_empty()
        });
        for relay in freed {
            if let Some(rconn) = self.relay_sessions.get(&relay).copied() {
                self.relay_session_idle(now, rconn);
            }
        }
    }

    /// The relay connection's stream connected (its handshake is done): the blind-relay
    /// channel's open and the pair requests go at once, behind our secret-stream header, as
    /// the reference's writes before `open` do — not a round trip later when the relay's
    /// header arrives ([`relay_conn_opened`](Self::relay_conn_opened)).
    pub(super) fn relay_conn_connected(&mut self, now: Instant, rconn: ConnId) {
        if self.relay_conns.contains_key(&rconn) {
            self.relay_conn_opened(now, rconn);
        }
    }

    /// The relay connection opened (or its stream connected): the blind-relay channel opens
    /// and the pending pairings' requests go, once.
    fn relay_conn_opened(&mut self, now: Instant, rconn: ConnId) {
        let id = self.key_pair_or_default(None).public_key();
        let Some(s) = self.relay_conns.get_mut(&rconn) else {
            return;
        };
        if s.client.is_some() {
            // Started when the stream connected: read what the relay sent.
            return self.relay_conn_read(now, rconn);
        }
        let ka = s
            .links
            .iter()
            .filter_map(|a| self.relay_links.get(a).and_then(|l| l.keep_alive))
            .find(|d| !d.is_zero())
            .unwrap_or(SESSION_KEEP_ALIVE);
        self.conns.set_keep_alive(now, rconn, Some(ka));
        let mut client = RelayClient::new(&id);
        let mut failed = Vec::new();
        for (token, app) in &s.pending {
            let Some(l) = self.relay_links.get(app) else {
                continue;
            };
            if l.path != RelayPath::Pairing {
                continue;
            }
            tracing::debug!(
                conn = app.0,
                is_initiator = l.plan.is_initiator,
                "relay: pair request sent"
            );
            if client
                .pair(now, l.plan.is_initiator, *token, l.app_stream)
                .is_err()
            {
                failed.push((*token, *app));
            }
        }
        for (token, _) in &failed {
            s.pending.remove(token);
        }
        s.client = Some(client);
        for (_, app) in failed {
            self.relay_gave_up(now, app);
        }
        self.relay_conn_read(now, rconn);
    }

    /// Feeds the relay connection's messages to its client, writes its frames, acts on its
    /// events.
    fn relay_conn_read(&mut self, now: Instant, rconn: ConnId) {
        loop {
            let mut progressed = false;
            while let Some(msg) = self.conns.pop_message(rconn) {
                progressed = true;
                let bad = match self
                    .relay_conns
                    .get_mut(&rconn)
                    .and_then(|s| s.client.as_mut())
                {
                    Some(c) => c.handle_frame(&msg).is_err(),
                    None => false,
                };
                if bad {
                    self.relay_client_flush(now, rconn);
                    if let Some(s) = self.relay_conns.get_mut(&rconn) {
                        s.reusable = false;
                    }
                    self.conn_destroy(rconn);
                    return;
                }
            }
            if !progressed || !self.conns.has_read_room(rconn) {
                break;
            }
            let p = self.conns.pump_read(now, rconn);
            if p.error.is_some() || !p.readable {
                break;
            }
        }
        self.relay_client_flush(now, rconn);
    }

    /// Writes the relay client's frames and applies its events.
    fn relay_client_flush(&mut self, now: Instant, rconn: ConnId) {
        let Some(s) = self.relay_conns.get_mut(&rconn) else {
            return;
        };
        let Some(client) = s.client.as_mut() else {
            return;
        };
        let mut frames = Vec::new();
        while let Some(f) = client.poll_frame() {
            frames.push(f);
        }
        let mut events = Vec::new();
        while let Some(ev) = client.poll_event() {
            events.push(ev);
        }
        for f in frames {
            if !matches!(self.conns.write_message(now, rconn, &f), Ok(true)) {
                tracing::debug!("relay: a control frame did not fit the relay connection");
            }
        }
        for ev in events {
            match ev {
                ClientEvent::Paired {
                    token,
                    relay_stream_id,
                    ..
                } => {
                    let app = self
                        .relay_conns
                        .get_mut(&rconn)
                        .and_then(|s| s.pending.remove(&token));
                    if let Some(app) = app {
                        self.relay_paired(now, app, relay_stream_id);
                    }
                }
                ClientEvent::Failed { token, error } => {
                    let app = self
                        .relay_conns
                        .get_mut(&rconn)
                        .and_then(|s| s.pending.remove(&token));
                    if let Some(app) = app {
                        tracing::debug!(conn = app.0, %error, "relay: pairing failed");
                        self.relay_gave_up(now, app);
                    }
                }
                ClientEvent::Closed { error } => {
                    // The channel is gone: no more pairings here (those pending failed above).
                    tracing::debug!(relay_conn = rconn.0, %error, "relay: the blind-relay channel closed");
                    if let Some(s) = self.relay_conns.get_mut(&rconn) {
                        s.reusable = false;
                    }
                    self.relay_session_idle(now, rconn);
                }
                ClientEvent::Opened => {}
            }
        }
    }

    /// A pairing left the session `rconn`: with no pairing left it lingers for the next one
    /// (`SESSION_LINGER`), or ends if it cannot be reused; beyond [`MAX_IDLE_SESSIONS`] the
    /// longest idle session ends.
    fn relay_session_idle(&mut self, now: Instant, rconn: ConnId) {
        let Some(s) = self.relay_conns.get_mut(&rconn) else {
            return;
        };
        if !s.links.is_empty() {
            return;
        }
        if !s.reusable {
            return self.relay_session_end(rconn);
        }
        if self.relay_pins.contains_key(&s.relay) {
            // Kept for a listening server.
            s.idle_since = None;
            return;
        }
        if s.idle_since.is_none() {
            tracing::debug!(
                relay_conn = rconn.0,
                "relay: the relay session is idle and lingers"
            );
            s.idle_since = Some(now);
        }
        let idle: Vec<(Instant, ConnId)> = self
            .relay_conns
            .iter()
            .filter_map(|(c, s)| s.idle_since.map(|t| (t, *c)))
            .collect();
        if idle.len() > MAX_IDLE_SESSIONS {
            if let Some(&(_, oldest)) = idle.iter().min() {
                self.relay_session_end(oldest);
            }
        }
    }

    /// Ends a relay session: gracefully when its connection is open, else destroyed.
    fn relay_session_end(&mut self, rconn: ConnId) {
        let Some(s) = self.relay_conns.get_mut(&rconn) else {
            return;
        };
        s.reusable = false;
        s.idle_since = None;
        if self.relay_sessions.get(&s.relay) == Some(&rconn) {
            self.relay_sessions.remove(&s.relay);
        }
        if let Some(c) = s.client.as_mut() {
            c.shutdown();
            while c.poll_event().is_some() {}
        }
        if self.conns.contains(rconn) {
            let _ = self.conns.end(rconn);
        } else {
            // Still connecting.
            self.conn_destroy(rconn);
        }
    }

    /// A pairing leaves its session: the relay is told (`unpair`: it drops a pending entry,
    /// or destroys both relay streams of a pair, as closing the connection would), and the
    /// session may idle.
    fn relay_release(&mut self, now: Instant, rconn: ConnId, app: ConnId, token: Token) {
        let Some(s) = self.relay_conns.get_mut(&rconn) else {
            return;
        };
        s.links.remove(&app);
        if s.pending.get(&token) == Some(&app) {
            s.pending.remove(&token);
        }
        if let Some(c) = s.client.as_mut() {
            if !c.is_closed() {
                tracing::debug!(conn = app.0, relay_conn = rconn.0, "relay: unpair");
                let _ = c.unpair(token);
            }
        }
        self.relay_client_flush(now, rconn);
        self.relay_session_idle(now, rconn);
    }

    /// The relay paired: the application stream connects through it.
    fn relay_paired(&mut self, now: Instant, app: ConnId, relay_stream_id: u32) {
        let Some(l) = self.relay_links.get(&app) else {
            return;
        };
        if l.path != RelayPath::Pairing {
            return self.relay_let_go(app, l.path);
        }
        let (server, app_stream) = (l.server, l.app_stream);
        let via = l
            .relay_conn
            .and_then(|c| self.conns.stream_of(c))
            .and_then(|s| self.conns.udx.get(s))
            .and_then(|s| Some((s.socket()?, s.remote_addr()?)));
        let Some((socket, relay_addr)) = via else {
            return self.relay_gave_up(now, app);
        };
        let Some(addr) = v4(relay_addr) else {
            return self.relay_gave_up(now, app);
        };
        match server {
            Some(server) => {
                if self.conns.waiting_for(app).is_none() {
                    // The client's first packet already came directly.
                    return self.relay_let_go(app, RelayPath::Direct);
                }
                let ok = self.conns.udx.get_mut(app_stream).is_some_and(|s| {
                    s.connect_via(now, socket, relay_stream_id, relay_addr)
                        .is_ok()
                });
                if !ok {
                    return self.relay_gave_up(now, app);
                }
                self.set_relayed(now, app, socket, relay_addr);
                if let Some(s) = self.servers.get_mut(&server) {
                    s.relay_paired_for(app);
                }
                self.conns.attached(app);
                self.conns.flush_secret(app);
                tracing::debug!(conn = app.0, relay = %addr, "relay: paired, the connection runs through the relay");
                self.incoming(now, server, app);
            }
            None => {
                if self.attempts.get(&app).is_some_and(|a| a.awaiting_reply()) {
                    // Our early pairing won the race with the handshake reply: the stream
                    // connects through the relay once the reply says how.
                    tracing::debug!(conn = app.0, "relay: paired before the handshake reply");
                    if let Some(l) = self.relay_links.get_mut(&app) {
                        l.paired_early = Some(relay_stream_id);
                    }
                    return;
                }
                let mut result = None;
                self.with_attempt(now, app, |a, _, _| result = a.relay_paired());
                let Some(handshake) = result else {
                    return self.relay_let_go(app, RelayPath::Direct);
                };
                self.set_relayed(now, app, socket, relay_addr);
                tracing::debug!(conn = app.0, relay = %addr, "relay: paired, the connection runs through the relay");
                self.connect_stream(
                    now,
                    app,
                    socket,
                    relay_stream_id,
                    addr,
                    handshake,
                    Vec::new(),
                );
            }
        }
        self.drive_udx_events(now);
    }

    fn set_relayed(
        &mut self,
        now: Instant,
        app: ConnId,
        socket: udx::SocketId,
        relay_addr: SocketAddr,
    ) {
        let srtt = self
            .relay_links
            .get(&app)
            .and_then(|l| l.relay_conn)
            .and_then(|c| self.conns.stream_of(c))
            .and_then(|s| self.conns.udx.get(s))
            .map_or(Duration::ZERO, |s| s.srtt());
        if let Some(l) = self.relay_links.get_mut(&app) {
            l.path = RelayPath::Relayed;
            l.via = Some((socket, relay_addr));
            l.resend_at = Some(now + first_resend_delay(srtt));
        }
    }

    /// The relay failed before pairing (timeout, error, connection gone): the connection
    /// fails with `RELAY_ABORTED` unless a punch may still connect it.
    pub(super) fn relay_gave_up(&mut self, now: Instant, app: ConnId) {
        let Some(l) = self.relay_links.get_mut(&app) else {
            return;
        };
        if l.path != RelayPath::Pairing {
            return;
        }
        l.path = RelayPath::Failed;
        let server = l.server;
        self.relay_let_go(app, RelayPath::Failed);
        match server {
            None => {
                if !self.conns.contains(app) {
                    self.with_attempt(now, app, |a, _, out| a.relay_failed(out));
                }
            }
            Some(server) => {
                let punching = self
                    .servers
                    .get(&server)
                    .is_some_and(|s| s.punching_for(app));
                if self.conns.waiting_for(app).is_some() && !punching {
                    self.conn_forget(app);
                }
            }
        }
    }

    /// Records `path` and releases the pairing from its relay session (which lingers for the
    /// next pairing, see [`relay_release`](Self::relay_release)).
    pub(super) fn relay_let_go(&mut self, app: ConnId, path: RelayPath) {
        let Some(l) = self.relay_links.get_mut(&app) else {
            return;
        };
        l.path = path;
        l.confirm_direct = false;
        l.end_at = None;
        let token = l.plan.token;
        let Some(rconn) = l.relay_conn.take() else {
            return;
        };
        let now = self.last_now;
        self.relay_release(now, rconn, app, token);
    }

    /// Whether the connection waits on its relay (a server connection whose first packet
    /// may come through it).
    pub(super) fn relay_pending(&self, app: ConnId) -> bool {
        self.relay_links
            .get(&app)
            .is_some_and(|l| l.path == RelayPath::Pairing)
    }

    /// A direct path won before the relay paired: the relay goes.
    pub(super) fn relay_direct_won(&mut self, app: ConnId) {
        if self.relay_pending(app) {
            tracing::debug!(conn = app.0, "relay: a direct path won before pairing");
            self.relay_let_go(app, RelayPath::Direct);
        }
    }

    /// Our punch won while the stream runs through the relay: it moves to the direct path.
    pub(super) fn relay_upgrade(
        &mut self,
        now: Instant,
        app: ConnId,
        socket: udx::SocketId,
        remote_udx: u32,
        addr: SocketAddrV4,
    ) {
        let Some(stream_id) = self.conns.stream_of(app) else {
            return;
        };
        let moved = self.conns.udx.get_mut(stream_id).is_some_and(|s| {
            s.change_remote(socket, remote_udx, SocketAddr::V4(addr))
                .is_ok()
        });
        if !moved {
            return;
        }
        tracing::debug!(conn = app.0, %addr, "relay: the stream moved to the direct path");
        if let Some(l) = self.relay_links.get_mut(&app) {
            l.path = RelayPath::Upgraded;
            l.confirm_direct = true;
        }
        self.drive_udx_events(now);
    }

    /// A packet for a relayed stream arrived on a socket it is not attached to: from the relay
    /// it is a late relayed packet (the stream takes it: a peer whose move waits for the
    /// acknowledgement of what it sent before — libudx's `changeRemote` — may still resend
    /// through the relay), from anywhere else the peer's punch won and this is the direct
    /// path. True if it was handled here.
    pub(super) fn relay_unattached(
        &mut self,
        now: Instant,
        stream_id: u32,
        socket: udx::SocketId,
        from: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        let Some(app) = self.conns.by_stream(stream_id) else {
            return false;
        };
        let Some(l) = self.relay_links.get(&app) else {
            return false;
        };
        if !matches!(l.path, RelayPath::Relayed | RelayPath::Upgraded) {
            return false;
        }
        if l.via == Some((socket, from)) {
            self.conns
                .udx
                .handle_datagram_from_any_socket(now, from, bytes);
            self.drive_udx_events(now);
            return true;
        }
        let (peer_udx, server) = (l.peer_udx, l.server);
        let moved = self
            .conns
            .udx
            .get_mut(stream_id)
            .is_some_and(|s| s.change_remote(socket, peer_udx, from).is_ok());
        if !moved {
            return true;
        }
        tracing::debug!(conn = app.0, %from, "relay: the peer reached us directly; the stream moves there");
        if let SocketKind::Pool(id) = socket_kind(socket) {
            self.pool.hold_stream(id);
        }
        if let Some(l) = self.relay_links.get_mut(&app) {
            l.path = RelayPath::Upgraded;
        }
        match server {
            Some(server) => self.with_server(now, server, |s, env, out| {
                s.connection_attached(env, app, out)
            }),
            None => {
                self.drop_client_punch(now, app);
                self.attempts.remove(&app);
            }
        }
        self.conns.udx.handle_datagram(now, socket, from, bytes);
        // The peer already sends over the direct path: the relay is no longer needed, after a
        // linger (what the peer sent through it before its move may still be resent there).
        if let Some(l) = self.relay_links.get_mut(&app) {
            l.end_at.get_or_insert(now + RELAY_LINGER);
        }
        self.drive_udx_events(now);
        true
    }

    /// A packet was consumed by `stream_id` on its attached socket. The first one through the
    /// relay: what we sent before is resent now — a blind relay drops packets for a peer until
    /// that peer's first packet reached it (both relays attach a relay stream to the address
    /// of its first packet), and one side's first packets always hit that window; without
    /// this they wait for the first RTO (1 s). After a move to the direct path, the first
    /// direct one ends the relay connection (after a linger).
    pub(super) fn relay_consumed(
        &mut self,
        stream_id: u32,
        socket: udx::SocketId,
        from: SocketAddr,
    ) {
        let Some(app) = self.conns.by_stream(stream_id) else {
            return;
        };
        let Some(l) = self.relay_links.get_mut(&app) else {
            return;
        };
        if l.path == RelayPath::Relayed && !l.heard_through_relay && l.via == Some((socket, from)) {
            l.heard_through_relay = true;
            l.resend_at = None;
            if let Some(s) = self.conns.udx.get_mut(stream_id) {
                s.resend_in_flight();
            }
            return;
        }
        if l.confirm_direct && l.via != Some((socket, from)) {
            // Not at once: what the peer sent through the relay before its own move may still
            // be resent there (its move waits for those acknowledgements).
            tracing::debug!(
                conn = app.0,
                "relay: the direct path works; the relay connection ends after a linger"
            );
            let now = self.last_now;
            if let Some(l) = self.relay_links.get_mut(&app) {
                l.confirm_direct = false;
                l.end_at.get_or_insert(now + RELAY_LINGER);
            }
        }
    }

    /// The stream's move to the direct path was acknowledged: tell the peer with an empty UDX
    /// message (the reference's `trySend`).
    pub(super) fn relay_remote_changed(&mut self, stream_id: u32) {
        let Some(app) = self.conns.by_stream(stream_id) else {
            return;
        };
        let Some(l) = self.relay_links.get_mut(&app) else {
            return;
        };
        if l.path != RelayPath::Upgraded || l.announced {
            return;
        }
        l.announced = true;
        if let Some(s) = self.conns.udx.get_mut(stream_id) {
            let _ = s.send_message(&[]);
        }
    }

    /// The application connection closed or failed: its relay goes too — at once unless the
    /// stream ran through it, else after [`RELAY_LINGER`] (the stream's last acknowledgements
    /// still cross it).
    pub(super) fn relay_app_closed(&mut self, app: ConnId) {
        let now = self.last_now;
        if let Some(l) = self.relay_links.get_mut(&app) {
            let path = match l.path {
                RelayPath::Pairing => RelayPath::Failed,
                p => p,
            };
            if path == RelayPath::Relayed && l.relay_conn.is_some() {
                l.end_at.get_or_insert(now + RELAY_LINGER);
                return;
            }
            self.relay_let_go(app, path);
        }
    }

    /// The application connection was forgotten: its record goes.
    pub(super) fn relay_app_forgotten(&mut self, app: ConnId) {
        if self
            .relay_links
            .get(&app)
            .is_some_and(|l| l.relay_conn.is_none())
        {
            self.relay_links.remove(&app);
        }
    }

    /// The earliest pairing deadline or relay-client timer.
    pub(super) fn relay_links_timeout(&self) -> Option<Instant> {
        self.relay_links
            .values()
            .filter_map(|l| match l.path {
                RelayPath::Pairing => Some(l.deadline),
                RelayPath::Relayed if l.resend_at.is_some() => {
                    let end = l.end_at.filter(|_| l.relay_conn.is_some());
                    l.resend_at.min(end).or(l.resend_at)
                }
                _ => l.end_at.filter(|_| l.relay_conn.is_some()),
            })
            .chain(self.relay_conns.values().filter_map(|s| s.idle_deadline()))
            .min()
    }

    /// Pairings that ran out of time, relayed connections' ends, idle sessions' ends.
    pub(super) fn relay_links_handle_timeout(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .relay_links
            .iter()
            .filter(|(_, l)| l.path == RelayPath::Pairing && l.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for app in due {
            tracing::debug!(conn = app.0, "relay: no pairing within 15 s");
            self.relay_gave_up(now, app);
        }
        let mut resend = Vec::new();
        for l in self.relay_links.values_mut() {
            if l.resend_at.is_some_and(|t| t <= now) {
                l.resend_at = None;
                if l.path == RelayPath::Relayed && !l.heard_through_relay {
                    resend.push(l.app_stream);
                }
            }
        }
        for stream in resend {
            if let Some(s) = self.conns.udx.get_mut(stream) {
                s.resend_in_flight();
            }
        }
        let ending: Vec<ConnId> = self
            .relay_links
            .iter()
            .filter(|(_, l)| l.relay_conn.is_some() && l.end_at.is_some_and(|t| t <= now))
            .map(|(c, _)| *c)
            .collect();
        for app in ending {
            if let Some(l) = self.relay_links.get_mut(&app) {
                l.end_at = None;
                let path = l.path;
                self.relay_let_go(app, path);
            }
            if !self.conns.contains(app) && !self.attempts.contains_key(&app) {
                self.relay_links.remove(&app);
            }
        }
        let expired: Vec<ConnId> = self
            .relay_conns
            .iter()
            .filter(|(_, s)| s.idle_deadline().is_some_and(|t| t <= now))
            .map(|(c, _)| *c)
            .collect();
        for rconn in expired {
            tracing::debug!(
                relay_conn = rconn.0,
                "relay: the relay session was idle for its linger; it ends"
            );
            self.relay_session_end(rconn);
        }
    }
}

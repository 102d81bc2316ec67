//! A UDX transfer as a simulator [`App`]: one UDP socket, one [`Demux`] holding one
//! [`UdxStream`], optionally a [`SecretStream`] on top keyed by a real Noise IK handshake (run
//! out of band with fixed keys, as the DHT would have run it), and a deterministic byte pattern
//! written with back-pressure and checked byte for byte on the other side.
//!
//! The app drains its stream's datagrams into an outbox at the end of every input, so that a
//! pacing deadline set while transmitting is already visible to the engine's `poll_timeout`.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use hdht_core::connect::{Handshake, HandshakeResult};
use hdht_core::crypto::KeyPair;
use hdht_core::secret_stream::{self as secret, SecretStream};
use hdht_core::udx::{
    self, Demux, Incoming, StreamConfig, StreamError, StreamEvent, UdxStream, WriteError,
};
use hdht_core::Instant;
use hdht_sim::network::SocketId;
use hdht_sim::{App, Datagram, Engine, HostId, LinkModel, NatId, NatPreset, RealmId};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

/// The server's well-known port.
pub const SERVER_PORT: u16 = 5000;
/// The client's stream id (the server writes it in its packets).
pub const CLIENT_ID: u32 = 0x0c11_e417;
/// The server's stream id.
pub const SERVER_ID: u32 = 0x5e7e_0001;
/// Plaintext per secret-stream frame (the driver's 64 KiB frames).
const FRAME: usize = 64 * 1024;
/// Seeds of the two directions' byte patterns.
pub const UPLOAD_SEED: u64 = 0x75_7001;
/// Seed of the server → client pattern.
pub const DOWNLOAD_SEED: u64 = 0xd0_3001;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern of stream `seed` from byte `offset` on.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let pos = offset + i as u64;
        let word = splitmix(seed ^ (pos / 8).wrapping_mul(0x2545_f491_4f6c_dd1d)).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
    }
}

/// A real Noise IK handshake between two fixed key pairs: (client result, server result).
pub fn handshake() -> (HandshakeResult, HandshakeResult) {
    let client = KeyPair::from_seed(&[0xc1; 32]);
    let server = KeyPair::from_seed(&[0x5e; 32]);
    let mut hi = Handshake::initiator_with_ephemeral(&client, &server.public_key(), &[0x01; 32])
        .expect("initiator");
    let mut hr = Handshake::responder_with_ephemeral(&server, &[0x02; 32]).expect("responder");
    let m1 = hi.write_message(b"hdht-sim udx transfer").expect("msg1");
    hr.read_message(&m1).expect("read msg1");
    let m2 = hr.write_message(b"ok").expect("msg2");
    hi.read_message(&m2).expect("read msg2");
    (
        hi.finish().expect("client result"),
        hr.finish().expect("server result"),
    )
}

/// What a peer tells the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The UDX stream closed (`None` = gracefully).
    Closed(Option<StreamError>),
    /// A `change_remote` completed.
    RemoteChanged,
}

/// How one end behaves.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Our stream id / the peer's.
    pub local_id: u32,
    /// The peer's stream id.
    pub remote_id: u32,
    /// Connect to this address at once; `None` = learn it from the first packet (a server
    /// behind nothing, reached by a client behind a NAT).
    pub connect_to: Option<SocketAddrV4>,
    /// Bytes to send and the pattern seed.
    pub send: (u64, u64),
    /// Bytes expected and the pattern seed.
    pub expect: (u64, u64),
    /// End our side only after the peer's end (a receiver answering a transfer).
    pub end_after_eof: bool,
    /// Read at all (false: a receiver that never reads).
    pub reading: bool,
    /// UDX stream options.
    pub stream: StreamConfig,
    /// Secret stream over UDX, keyed by this handshake result.
    pub secret: Option<HandshakeResult>,
}

/// One end of the transfer.
pub struct UdxPeer {
    now: Instant,
    socket: SocketId,
    demux: Demux,
    cfg: PeerConfig,
    secret: Option<SecretStream>,
    // send side
    sent_plain: u64,
    pending: Vec<u8>,
    pending_off: usize,
    secret_ended: bool,
    udx_ended: bool,
    /// Times `write` pushed back (back-pressure seen).
    pub write_blocked: u64,
    // receive side
    /// Plaintext bytes received and checked.
    pub received: u64,
    /// First offset whose byte differed from the pattern.
    pub mismatch: Option<u64>,
    /// The peer's end was read (EOF after all data).
    pub eof: bool,
    /// A secret-stream error, if any.
    pub secret_error: Option<secret::SecretStreamError>,
    /// Set when the UDX stream closed: (when, error).
    pub closed: Option<(Instant, Option<StreamError>)>,
    /// When the last expected byte arrived.
    pub complete_at: Option<Instant>,
    /// When the first byte of the transfer was written.
    pub started_at: Instant,
    /// When a `change_remote` completed (the peer acknowledged everything sent before it).
    pub remote_changed_at: Option<Instant>,
    /// Largest receive-buffer occupancy seen after any input (UDX receive side).
    pub max_recv_buffered: usize,
    outbox: VecDeque<Datagram>,
    events: VecDeque<PeerEvent>,
    tx: Vec<u8>,
    rx: Vec<u8>,
    plain: Vec<u8>,
    expect_buf: Vec<u8>,
}

impl UdxPeer {
    fn new(now: Instant, socket: SocketId, cfg: PeerConfig, rng_seed: u64) -> Self {
        let mut demux = Demux::new();
        let mut stream = UdxStream::new(cfg.local_id, now, cfg.stream.clone());
        if let Some(to) = cfg.connect_to {
            stream
                .connect_via(now, udx_socket(socket), cfg.remote_id, SocketAddr::V4(to))
                .expect("connect");
        }
        demux.insert(stream);
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let secret = cfg
            .secret
            .as_ref()
            .map(|h| SecretStream::from_handshake(h, &secret::Config::default(), now, &mut rng));
        let mut p = UdxPeer {
            now,
            socket,
            demux,
            cfg,
            secret,
            sent_plain: 0,
            pending: Vec::new(),
            pending_off: 0,
            secret_ended: false,
            udx_ended: false,
            write_blocked: 0,
            received: 0,
            mismatch: None,
            eof: false,
            secret_error: None,
            closed: None,
            complete_at: None,
            started_at: now,
            remote_changed_at: None,
            max_recv_buffered: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            tx: vec![0; 1500],
            rx: vec![0; 64 * 1024],
            plain: Vec::new(),
            expect_buf: Vec::new(),
        };
        if let Some(s) = p.secret.as_mut() {
            s.poll_transmit(&mut p.pending);
        }
        p.pump();
        p
    }

    /// The UDX stream.
    pub fn stream(&self) -> &UdxStream {
        self.demux.get(self.cfg.local_id).expect("stream")
    }

    /// Whether every expected byte arrived intact and the stream closed gracefully.
    pub fn done(&self) -> bool {
        self.received == self.cfg.expect.0
            && self.mismatch.is_none()
            && self.eof
            && matches!(self.closed, Some((_, None)))
    }

    /// Starts or stops reading.
    pub fn set_reading(&mut self, now: Instant, on: bool) {
        self.now = now;
        self.cfg.reading = on;
        self.pump();
    }

    /// `change_remote` to a new peer address (same socket, same ids) — what an owner does
    /// when told of the peer's new address (hyperdht `rawStream.changeRemote`).
    pub fn change_remote(&mut self, now: Instant, to: SocketAddrV4) {
        self.now = now;
        let (sock, rid) = (udx_socket(self.socket), self.cfg.remote_id);
        if let Some(s) = self.demux.get_mut(self.cfg.local_id) {
            s.change_remote(sock, rid, SocketAddr::V4(to))
                .expect("change_remote");
        }
        self.pump();
    }

    fn pump(&mut self) {
        self.do_read();
        self.drive_events();
        self.do_write();
        self.drive_events();
        let buf_now = self
            .demux
            .get(self.cfg.local_id)
            .map_or(0, UdxStream::recv_buffered);
        self.max_recv_buffered = self.max_recv_buffered.max(buf_now);
        while let Some((_, t)) = self.demux.poll_transmit(self.now, &mut self.tx) {
            let SocketAddr::V4(to) = t.to else { continue };
            self.outbox.push_back(Datagram {
                socket: SocketId(t.socket.0 as u16),
                to,
                payload: self.tx[..t.len].to_vec(),
                ttl: None,
            });
        }
    }

    fn drive_events(&mut self) {
        while let Some((_, ev)) = self.demux.poll_event() {
            match ev {
                StreamEvent::Closed { error } => {
                    // A graceful close comes with the peer's END: read to EOF first.
                    self.do_read();
                    self.closed = Some((self.now, error));
                    if let Some(s) = self.secret.as_mut() {
                        if error.is_some() {
                            s.destroy();
                        } else if let Err(e) = s.handle_transport_closed() {
                            self.secret_error.get_or_insert(e);
                        }
                    }
                    self.events.push_back(PeerEvent::Closed(error));
                }
                StreamEvent::RemoteChanged => {
                    self.remote_changed_at.get_or_insert(self.now);
                    self.events.push_back(PeerEvent::RemoteChanged);
                }
                _ => {}
            }
        }
    }

    fn do_read(&mut self) {
        if !self.cfg.reading || self.eof {
            return;
        }
        loop {
            let Some(s) = self.demux.get_mut(self.cfg.local_id) else {
                return;
            };
            match s.read(&mut self.rx) {
                Ok(0) => {
                    self.eof = true;
                    if let Some(sec) = self.secret.as_mut() {
                        if let Err(e) = sec.handle_remote_end() {
                            self.secret_error.get_or_insert(e);
                        }
                    }
                    return;
                }
                Ok(n) => {
                    let got: &[u8] = match self.secret.as_mut() {
                        Some(sec) => {
                            self.plain.clear();
                            if let Err(e) = sec.read(&self.rx[..n], self.now, &mut self.plain) {
                                self.secret_error.get_or_insert(e);
                            }
                            &self.plain
                        }
                        None => &self.rx[..n],
                    };
                    check(
                        self.cfg.expect.1,
                        self.received,
                        got,
                        &mut self.expect_buf,
                        &mut self.mismatch,
                    );
                    self.received += got.len() as u64;
                    if self.received >= self.cfg.expect.0 && self.complete_at.is_none() {
                        self.complete_at = Some(self.now);
                    }
                }
                Err(_) => return,
            }
        }
    }

    fn do_write(&mut self) {
        let Some(s) = self.demux.get_mut(self.cfg.local_id) else {
            return;
        };
        if s.is_closed() {
            return;
        }
        loop {
            if self.pending_off < self.pending.len() {
                match s.write(&self.pending[self.pending_off..]) {
                    Ok(n) => self.pending_off += n,
                    Err(WriteError::WouldBlock) => {}
                    Err(_) => return,
                }
                if self.pending_off < self.pending.len() {
                    self.write_blocked += 1;
                    return; // back-pressure: wait for Writable (an ACK)
                }
                self.pending.clear();
                self.pending_off = 0;
            }
            let (total, seed) = self.cfg.send;
            if self.sent_plain < total {
                if s.send_capacity() == 0 {
                    self.write_blocked += 1;
                    return;
                }
                let n = (total - self.sent_plain).min(FRAME as u64) as usize;
                let start = self.pending.len();
                self.pending.resize(start + n, 0);
                fill_pattern(seed, self.sent_plain, &mut self.pending[start..]);
                if let Some(sec) = self.secret.as_mut() {
                    let plain = self.pending.split_off(start);
                    sec.write(&plain, self.now, &mut self.pending)
                        .expect("secret write");
                }
                self.sent_plain += n as u64;
                continue;
            }
            let may_end = !self.cfg.end_after_eof || self.eof;
            if may_end && !self.secret_ended {
                self.secret_ended = true;
                if let Some(sec) = self.secret.as_mut() {
                    sec.end(&mut self.pending).expect("secret end");
                }
                continue;
            }
            if self.secret_ended && !self.udx_ended {
                self.udx_ended = true;
                s.end().expect("udx end");
            }
            return;
        }
    }
}

/// Compares `got` with the pattern at `offset`; records the first differing offset.
fn check(seed: u64, offset: u64, got: &[u8], scratch: &mut Vec<u8>, mismatch: &mut Option<u64>) {
    if mismatch.is_some() {
        return;
    }
    scratch.resize(got.len(), 0);
    fill_pattern(seed, offset, scratch);
    if got != &scratch[..] {
        let i = got
            .iter()
            .zip(scratch.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        *mismatch = Some(offset + i as u64);
    }
}

fn udx_socket(s: SocketId) -> udx::SocketId {
    udx::SocketId(u32::from(s.0))
}

impl App for UdxPeer {
    type Event = PeerEvent;

    fn handle_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddrV4,
        bytes: &[u8],
    ) {
        self.now = now;
        let from = SocketAddr::V4(from);
        match self
            .demux
            .handle_datagram(now, udx_socket(socket), from, bytes)
        {
            Incoming::Unattached {
                stream_id,
                from,
                socket,
            } => {
                // Connect on first packet (libudx's firewall hook accepting the peer).
                let rid = self.cfg.remote_id;
                if let Some(s) = self.demux.get_mut(stream_id) {
                    if s.connect_via(now, socket, rid, from).is_ok() {
                        self.demux.handle_datagram(now, socket, from, bytes);
                    }
                }
            }
            Incoming::Consumed { .. } | Incoming::NotUdx | Incoming::UnknownStream { .. } => {}
        }
        self.pump();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.demux.handle_timeout(now);
        if let Some(sec) = self.secret.as_mut() {
            if sec.poll_timeout().is_some_and(|t| t <= now) {
                if let Err(e) = sec.handle_timeout(now) {
                    self.secret_error.get_or_insert(e);
                }
                sec.poll_transmit(&mut self.pending);
            }
        }
        self.pump();
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram> {
        self.outbox.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let udx = self.demux.poll_timeout();
        let sec = self
            .secret
            .as_ref()
            .filter(|_| self.closed.is_none())
            .and_then(SecretStream::poll_timeout);
        match (udx, sec) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    fn crash(&mut self) {
        if let Some(s) = self.demux.get_mut(self.cfg.local_id) {
            s.destroy();
        }
        self.outbox.clear();
    }
}

/// A transfer between a client (optionally behind a NAT) and a public server.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The link model.
    pub link: LinkModel,
    /// The client's NAT (`None` = public).
    pub client_nat: Option<NatPreset>,
    /// Client → server bytes.
    pub upload: u64,
    /// Server → client bytes.
    pub download: u64,
    /// Secret stream on top.
    pub secret: bool,
    /// Client stream options.
    pub client_stream: StreamConfig,
    /// Server stream options.
    pub server_stream: StreamConfig,
    /// Whether the server reads.
    pub server_reads: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            link: LinkModel::default(),
            client_nat: None,
            upload: 4 << 20,
            download: 0,
            secret: true,
            client_stream: StreamConfig::default(),
            server_stream: StreamConfig::default(),
            server_reads: true,
        }
    }
}

/// A running transfer.
pub struct Transfer {
    /// The simulator.
    pub sim: Engine<UdxPeer>,
    /// The client host.
    pub client: HostId,
    /// The server host.
    pub server: HostId,
    /// The client's home NAT, if any.
    pub nat: Option<NatId>,
    /// The server's address.
    pub server_addr: SocketAddrV4,
}

impl Transfer {
    /// Builds the network and both peers (the client's secret-stream header is already on its
    /// way).
    pub fn new(seed: u64, setup: &Setup) -> Transfer {
        let mut sim: Engine<UdxPeer> = Engine::new(seed, setup.link);
        let (hc, hs) = if setup.secret {
            let (c, s) = handshake();
            (Some(c), Some(s))
        } else {
            (None, None)
        };
        let server_cfg = PeerConfig {
            local_id: SERVER_ID,
            remote_id: CLIENT_ID,
            connect_to: None,
            send: (setup.download, DOWNLOAD_SEED),
            expect: (setup.upload, UPLOAD_SEED),
            end_after_eof: setup.download == 0,
            reading: setup.server_reads,
            stream: setup.server_stream.clone(),
            secret: hs,
        };
        let server = sim
            .spawn(RealmId::INTERNET, |h| {
                let s = h.bind(SERVER_PORT)?;
                let seed = h.seed();
                Ok(UdxPeer::new(h.now(), s, server_cfg, seed))
            })
            .expect("server");
        let server_addr = sim.socket_addr(server, SocketId(0)).expect("server addr");
        let (realm, nat) = match setup.client_nat {
            None => (RealmId::INTERNET, None),
            Some(p) => {
                let (realm, _) = sim.add_preset(p, None).expect("nat");
                (realm, sim.net().gateway(realm).expect("gateway"))
            }
        };
        let client_cfg = PeerConfig {
            local_id: CLIENT_ID,
            remote_id: SERVER_ID,
            connect_to: Some(server_addr),
            send: (setup.upload, UPLOAD_SEED),
            expect: (setup.download, DOWNLOAD_SEED),
            // A client with nothing to upload keeps its side open until the download ends.
            end_after_eof: setup.upload == 0,
            reading: true,
            stream: setup.client_stream.clone(),
            secret: hc,
        };
        let client = sim
            .spawn(realm, |h| {
                let s = h.bind(0)?;
                let seed = h.seed();
                Ok(UdxPeer::new(h.now(), s, client_cfg, seed))
            })
            .expect("client");
        Transfer {
            sim,
            client,
            server,
            nat,
            server_addr,
        }
    }

    /// The client app.
    pub fn client(&self) -> &UdxPeer {
        self.sim.node(self.client)
    }

    /// The server app.
    pub fn server(&self) -> &UdxPeer {
        self.sim.node(self.server)
    }

    /// Both streams closed (either way).
    pub fn both_closed(&self) -> bool {
        self.client().closed.is_some() && self.server().closed.is_some()
    }

    /// Runs in `step` slices until `until` returns true or `limit` of simulated time passed;
    /// returns whether `until` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut until: impl FnMut(&Transfer) -> bool,
    ) -> bool {
        let end = self.sim.now() + limit;
        loop {
            // Events are few (closes, remote changes); drop them as they come.
            self.sim.run_until_with(
                (self.sim.now() + step).min(end),
                &mut |_: &mut Engine<UdxPeer>, _: HostId, _: PeerEvent| {},
            );
            if until(self) {
                return true;
            }
            if self.sim.now() >= end {
                return false;
            }
        }
    }

    /// The client's current public endpoint towards the server (the NAT's mapping).
    pub fn client_public(&self) -> Option<SocketAddrV4> {
        let nat = self.nat?;
        let internal = self.sim.socket_addr(self.client, SocketId(0))?;
        self.sim
            .nat(nat)
            .ok()?
            .lookup(self.sim.now(), internal, self.server_addr)
    }
}

/// One side's end state: bytes received, first bad offset, (close time µs, error).
pub type SideState = (u64, Option<u64>, Option<(u64, Option<StreamError>)>);

/// Final state summary used to compare two runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Trace hash hex.
    pub trace: String,
    /// Simulated end time (µs).
    pub now_us: u64,
    /// (received, mismatch, closed) per side.
    pub client: SideState,
    /// Same for the server.
    pub server: SideState,
    /// Stream counters.
    pub stats: (udx::StreamStats, udx::StreamStats),
    /// Datagrams sent / delivered / dropped.
    pub datagrams: (u64, u64, u64),
}

impl Outcome {
    /// Of a transfer.
    pub fn of(t: &Transfer) -> Outcome {
        let side = |p: &UdxPeer| {
            (
                p.received,
                p.mismatch,
                p.closed.map(|(at, e)| (at.as_micros(), e)),
            )
        };
        let st = t.sim.stats();
        Outcome {
            trace: t.sim.trace().to_hex(),
            now_us: t.sim.now().as_micros(),
            client: side(t.client()),
            server: side(t.server()),
            stats: (t.client().stream().stats(), t.server().stream().stats()),
            datagrams: (st.sent, st.delivered, st.dropped_total()),
        }
    }
}

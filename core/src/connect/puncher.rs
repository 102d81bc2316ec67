//! The sans-IO holepuncher of one connection attempt (hyperdht `lib/holepuncher.js`, the puncher
//! parts of `lib/connect.js` and `lib/server.js`; spec 03 §4.4–§4.10).
//!
//! A [`Puncher`] owns the puncher sockets of one attempt (ids chosen by its owner), their
//! [`Nat`] analysis, the remote side's advertised state, and the probing strategies:
//!
//! | local \ remote | OPEN / CONSISTENT | RANDOM | UNKNOWN |
//! |---|---|---|---|
//! | OPEN / CONSISTENT | [`Strategy::Consistent`]: every remote address every 1 s (unverified on ticks 4, 8), 10 ticks | [`Strategy::RandomProbes`]: verified host : random port, 1750 probes every 2 ms (the reference: 20 ms), then 1575 every 20 ms (the reference's ~35 s window) | not punchable |
//! | RANDOM | [`Strategy::Birthday`]: 255 extra sockets, one TTL-5 probe each, then cycle all every 20 ms, 1750 probes | `HOLEPUNCH_DOUBLE_RANDOMIZED_NATS` | not punchable |
//! | UNKNOWN | not punchable | not punchable | not punchable |
//!
//! Inputs: [`handle_probe`](Puncher::handle_probe) (a 1-byte datagram on one of its sockets),
//! [`handle_timeout`](Puncher::handle_timeout), [`handle_ping_reply`](Puncher::handle_ping_reply)
//! / [`handle_ping_timeout`](Puncher::handle_ping_timeout) (NAT sampling),
//! [`add_sockets`](Puncher::add_sockets) (sockets it asked for), PEER_HOLEPUNCH results
//! ([`handle_reply`](Puncher::handle_reply), [`update_remote`](Puncher::update_remote),
//! [`add_sample`](Puncher::add_sample)). Outputs, drained with
//! [`poll_output`](Puncher::poll_output): [`PuncherOutput`] — probes to send, NAT pings, socket
//! requests and releases, random-punch accounting, "analysis ready", "connected", "failed".
//!
//! No clocks (every input takes `now`), no OS randomness (random ports come from a generator
//! seeded once from the owner's RNG), bounded state, no panics.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use rand_core::RngCore;

use super::error::{ConnectError, ErrorCode, Firewall};
use super::holepunch::HolepunchPayload;
use super::nat::{coerce, Nat};
use super::payload::RelayInfo;
use crate::time::Instant;
use crate::udx::SocketId;

/// The probe datagram: exactly one byte, `0x00` (`HOLEPUNCH`).
pub const PROBE: [u8; 1] = [0];
/// TTL of "open session" probes and the first birthday probes (`HOLEPUNCH_TTL`).
pub const HOLEPUNCH_TTL: u8 = 5;
/// TTL of every other probe (`DEFAULT_TTL`).
pub const DEFAULT_TTL: u8 = 64;
/// Sockets in total (main included) for the birthday strategy (`BIRTHDAY_SOCKETS`).
pub const BIRTHDAY_SOCKETS: usize = 256;
/// Socket replacements an unstable puncher may try (`MAX_REOPENS`).
pub const MAX_REOPENS: u32 = 3;
/// Ticks of the consistent strategy.
pub const CONSISTENT_TICKS: u32 = 10;
/// Interval of the consistent strategy (the server also waits this long before its first tick).
pub const CONSISTENT_INTERVAL: Duration = Duration::from_secs(1);
/// Probes of the birthday keep-alive strategy (~35 s) and of the random-port strategy's fast
/// burst.
pub const RANDOM_PROBES: u32 = 1750;
/// Interval of the birthday keep-alive strategy (the reference's 20 ms).
pub const RANDOM_INTERVAL: Duration = Duration::from_millis(20);
/// Interval of the random-port strategy's first [`RANDOM_PROBES`] probes. **Deliberate
/// deviation**: the reference sprays every 20 ms, so a consistent side needs ~175 probes (the
/// median, against 256 birthday sockets among 64,536 ports) ≈ 3.5 s to hit; we send the same
/// 1,750 probes every 2 ms (≈ 15 KB/s of 1-byte datagrams, the same conntrack entries, just
/// sooner), which puts the median near 0.35 s. The peer cannot tell the difference: only the
/// timing of our probes changes.
pub const RANDOM_PROBE_INTERVAL: Duration = Duration::from_millis(2);
/// Probes the random-port strategy sends after its fast burst, at the reference's pace
/// ([`RANDOM_INTERVAL`]), so that its window stays the reference's ~35 s: a burst alone lasts
/// 3.5 s, and a birthday side slow to open its 256 sockets (a loaded host) missed most of it.
pub const RANDOM_PROBES_TAIL: u32 = 1575;
/// How long the random-port strategy waits after its last probe before giving up, so that the
/// echo of a late hit still connects (the reference gives up at once).
pub const RANDOM_PROBE_GRACE: Duration = Duration::from_secs(1);
/// Pause between opening the birthday sockets and the keep-alive cycle.
pub const BIRTHDAY_PAUSE: Duration = Duration::from_millis(100);
/// Lowest random port probed (`randomPort`: `1000 + random * 64536`, i.e. 1000..=65535).
pub const MIN_RANDOM_PORT: u16 = 1000;
/// Client probe round: sleep when the remote firewall is still UNKNOWN.
pub const UNKNOWN_REMOTE_WAIT: Duration = Duration::from_secs(1);
/// Client is OPEN: wait this long for the server to connect, then `HOLEPUNCH_ABORTED`.
pub const PASSIVE_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Server: a handshake's window to start punching (`HANDSHAKE_INITIAL_TIMEOUT`).
pub const PREPUNCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Least try-later back-off.
pub const TRY_LATER_MIN: Duration = Duration::from_secs(10);
/// Spread of the try-later back-off (uniform on top of the minimum).
pub const TRY_LATER_SPREAD_MS: u64 = 10_000;
/// Least spacing between random punches of one node (`randomPunchInterval`).
pub const RANDOM_PUNCH_INTERVAL: Duration = Duration::from_secs(20);
/// Concurrent random punches of one node (`_randomPunchLimit`).
pub const RANDOM_PUNCH_LIMIT: u32 = 1;
/// Remote addresses kept from one update (hostile peers cannot make us spray more).
pub const MAX_REMOTE_ADDRESSES: usize = 32;
/// Nodes remembered for NAT sampling (the pings need at most 5 skipped + 2 × 4).
pub const MAX_SAMPLE_NODES: usize = 32;

/// How a puncher is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PuncherConfig {
    /// The client (`true`) treats the first probe it receives as success; the server (`false`)
    /// echoes every probe.
    pub initiator: bool,
    /// The node's own firewall state (`dht.firewalled`); `false` makes the NAT OPEN.
    pub dht_firewalled: bool,
    /// The remote firewall known so far (client: the server's NoisePayload `firewall`; server:
    /// the client's).
    pub remote_firewall: Firewall,
}

/// One advertised remote address and whether its host was verified by the token echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddress {
    /// The address (RANDOM NATs advertise port 0).
    pub addr: SocketAddrV4,
    /// The host echoed our token (or was verified earlier).
    pub verified: bool,
}

/// The remote state carried by a PEER_HOLEPUNCH payload (`updateRemote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteUpdate<'a> {
    /// The remote is punching (`punching` flag).
    pub punching: bool,
    /// The remote's firewall ([`super::nat::firewall_from_wire_lenient`] for wire values).
    pub firewall: Firewall,
    /// The remote's advertised addresses.
    pub addresses: Option<&'a [SocketAddrV4]>,
    /// A host verified by this message's token echo.
    pub verified: Option<Ipv4Addr>,
}

/// The strategy a punch started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Both consistent: probe every remote address each second.
    Consistent,
    /// We are consistent, the remote random: spray random ports on its verified host.
    RandomProbes,
    /// We are random, the remote consistent: many sockets toward its verified address.
    Birthday,
}

/// What [`Puncher::analyze`] found (`await analyze(allowReopen)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// Sampling (or a socket replacement) is still under way; an
    /// [`PuncherOutput::AnalysisReady`] follows, then ask again.
    Pending,
    /// `true`.
    Stable,
    /// `false`.
    Unstable,
}

/// Something the owner must do or learn. Drain with [`Puncher::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PuncherOutput {
    /// Send [`PROBE`] from `socket` to `to` with IP TTL `ttl`.
    Probe {
        /// One of the puncher's sockets.
        socket: SocketId,
        /// Destination.
        to: SocketAddrV4,
        /// IP TTL ([`HOLEPUNCH_TTL`] or [`DEFAULT_TTL`]).
        ttl: u8,
    },
    /// Send a dht-rpc PING (internal command, no retries, 1 s timeout) from `socket` to `to`;
    /// report with [`Puncher::handle_ping_reply`] or [`Puncher::handle_ping_timeout`].
    NatPing {
        /// The puncher's main socket.
        socket: SocketId,
        /// A DHT node.
        to: SocketAddrV4,
    },
    /// Bind `count` fresh UDP sockets (DHT host, port 0) and hand them over with
    /// [`Puncher::add_sockets`] (or [`Puncher::sockets_unavailable`] for the rest).
    OpenSockets {
        /// How many.
        count: usize,
    },
    /// The puncher no longer uses this socket: close it (unless a stream uses it).
    ReleaseSocket(SocketId),
    /// A random punch started: count it against the node's [`RandomPunchLimiter`].
    RandomPunchBegin,
    /// That random punch ended (connected or gave up): [`RandomPunchLimiter::end`].
    RandomPunchEnd,
    /// An [`Analysis::Pending`] answer is now decided: call [`Puncher::analyze`] again.
    AnalysisReady,
    /// Client only: the first probe arrived. Connect the UDX stream over `socket` to `addr`;
    /// the socket now belongs to the connection (the puncher released all others).
    Connected {
        /// The socket the probe arrived on.
        socket: SocketId,
        /// The probe's source.
        addr: SocketAddrV4,
    },
    /// The puncher gave up by itself (strategy exhausted, no socket): `HOLEPUNCH_ABORTED`.
    Failed(ConnectError),
}

/// Outcome of a PEER_HOLEPUNCH reply ([`Puncher::handle_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Accepted; the remote state was updated.
    Ok,
    /// The server said TRY_LATER (we asked to punch and have a relay token): back off
    /// [`try_later_delay`] and retry the punch round via the server's relay.
    TryLater,
}

/// What the client does after a probe round (`probeRound`, steps 5–6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Run the probe round once more (first pass, remote UNKNOWN or no token).
    Retry,
    /// Send the abort payload via the server relay and fail with this error.
    Abort(ConnectError),
    /// Go on to the punch round.
    Proceed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopen {
    Idle,
    Running { resets: u32 },
    Done(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Idle,
    Consistent {
        ticks: u32,
        next: Instant,
    },
    Random {
        host: Ipv4Addr,
        remaining: u32,
        next: Instant,
    },
    BirthdayOpening {
        target: SocketAddrV4,
    },
    BirthdayKeepAlive {
        target: SocketAddrV4,
        i: usize,
        low_ttl_rounds: u32,
        remaining: u32,
        next: Instant,
    },
}

/// The holepuncher of one connection attempt. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Puncher {
    initiator: bool,
    dht_firewalled: bool,
    nat: Nat,
    /// The main socket; `None` while a replacement is being opened.
    main: Option<SocketId>,
    /// Every socket held, main first (`_allHolders`).
    sockets: Vec<SocketId>,
    sample_nodes: Vec<SocketAddrV4>,
    remote_firewall: Firewall,
    remote_addresses: Vec<RemoteAddress>,
    remote_holepunching: bool,
    punching: bool,
    connected: Option<(SocketId, SocketAddrV4)>,
    destroyed: bool,
    randomized: bool,
    punch_result: Option<Result<Strategy, ConnectError>>,
    run: Run,
    reopen: Reopen,
    replacement_pending: bool,
    birthday_outstanding: usize,
    analysis_waiting: bool,
    rng: u64,
    out: VecDeque<PuncherOutput>,
}

impl Puncher {
    /// A puncher on `socket` (a fresh pool socket), starting NAT sampling against
    /// `sample_nodes_latest_first` (known DHT nodes, most recently seen first; the first
    /// [`MAX_SAMPLE_NODES`] are kept for later passes and socket replacements). One `u64` is
    /// drawn from `rng` to seed the random-port generator.
    pub fn new<R: RngCore>(
        config: PuncherConfig,
        socket: SocketId,
        sample_nodes_latest_first: &[SocketAddrV4],
        rng: &mut R,
    ) -> Self {
        let keep = sample_nodes_latest_first.len().min(MAX_SAMPLE_NODES);
        let mut p = Puncher {
            initiator: config.initiator,
            dht_firewalled: config.dht_firewalled,
            nat: Nat::new(config.dht_firewalled),
            main: Some(socket),
            sockets: alloc::vec![socket],
            sample_nodes: sample_nodes_latest_first[..keep].to_vec(),
            remote_firewall: config.remote_firewall,
            remote_addresses: Vec::new(),
            remote_holepunching: false,
            punching: false,
            connected: None,
            destroyed: false,
            randomized: false,
            punch_result: None,
            run: Run::Idle,
            reopen: Reopen::Idle,
            replacement_pending: false,
            birthday_outstanding: 0,
            analysis_waiting: false,
            rng: rng.next_u64() | 1,
            out: VecDeque::new(),
        };
        p.start_sampling(socket);
        p
    }

    // ---------------------------------------------------------------- accessors

    /// Whether this is the client's puncher.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// The main socket (`None` while a replacement is being opened). PEER_HOLEPUNCH requests
    /// (client) and replies (server) go out of it.
    pub fn socket(&self) -> Option<SocketId> {
        self.main
    }

    /// Every socket the puncher holds, main first.
    pub fn sockets(&self) -> &[SocketId] {
        &self.sockets
    }

    /// Whether `socket` is one of the puncher's.
    pub fn owns_socket(&self, socket: SocketId) -> bool {
        self.sockets.contains(&socket)
    }

    /// The NAT analysis of the main socket.
    pub fn nat(&self) -> &Nat {
        &self.nat
    }

    /// Own firewall (`nat.firewall`).
    pub fn firewall(&self) -> Firewall {
        self.nat.firewall()
    }

    /// Own advertised addresses (`nat.addresses`).
    pub fn addresses(&self) -> Option<&[SocketAddrV4]> {
        self.nat.addresses()
    }

    /// The remote firewall as last reported.
    pub fn remote_firewall(&self) -> Firewall {
        self.remote_firewall
    }

    /// The remote addresses as last reported.
    pub fn remote_addresses(&self) -> &[RemoteAddress] {
        &self.remote_addresses
    }

    /// The remote said it is punching.
    pub fn remote_holepunching(&self) -> bool {
        self.remote_holepunching
    }

    /// A strategy is running.
    pub fn is_punching(&self) -> bool {
        self.punching
    }

    /// Where the client got connected.
    pub fn connected(&self) -> Option<(SocketId, SocketAddrV4)> {
        self.connected
    }

    /// Destroyed (gave up, or the owner destroyed it).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// This puncher counts as a random punch right now.
    pub fn is_randomized(&self) -> bool {
        self.randomized
    }

    /// `_unstable()`: own firewall UNKNOWN, or both sides RANDOM.
    pub fn is_unstable(&self) -> bool {
        let fw = self.nat.firewall();
        (self.remote_firewall >= Firewall::Random && fw >= Firewall::Random)
            || fw == Firewall::Unknown
    }

    /// Either side is RANDOM (the random-punch throttle applies).
    pub fn is_random_punch(&self) -> bool {
        self.remote_firewall >= Firewall::Random || self.nat.firewall() >= Firewall::Random
    }

    /// Next output.
    pub fn poll_output(&mut self) -> Option<PuncherOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.destroyed {
            return None;
        }
        match self.run {
            Run::Consistent { next, .. }
            | Run::Random { next, .. }
            | Run::BirthdayKeepAlive { next, .. } => Some(next),
            Run::Idle | Run::BirthdayOpening { .. } => None,
        }
    }

    // ---------------------------------------------------------------- NAT sampling

    fn start_sampling(&mut self, socket: SocketId) {
        let pings = self.nat.auto_sample(&self.sample_nodes);
        for to in pings {
            self.out.push_back(PuncherOutput::NatPing { socket, to });
        }
        self.after_nat_change();
    }

    /// A NAT-sampling PING from `socket` was answered by `from`, which saw us as `to`.
    /// Replies for sockets that are no longer the main socket are ignored.
    pub fn handle_ping_reply(
        &mut self,
        _now: Instant,
        socket: SocketId,
        to: SocketAddrV4,
        from: SocketAddrV4,
    ) {
        if self.destroyed || self.main != Some(socket) {
            return;
        }
        self.nat.add(to, from);
        self.ping_done(socket);
    }

    /// A NAT-sampling PING from `socket` got no answer.
    pub fn handle_ping_timeout(&mut self, _now: Instant, socket: SocketId) {
        if self.destroyed || self.main != Some(socket) {
            return;
        }
        self.ping_done(socket);
    }

    fn ping_done(&mut self, socket: SocketId) {
        let more = self.nat.ping_done(&self.sample_nodes);
        for to in more {
            self.out.push_back(PuncherOutput::NatPing { socket, to });
        }
        self.after_nat_change();
    }

    /// A NAT sample from PEER_HOLEPUNCH traffic (`nat.add(to, from)`): client — a probe/punch
    /// reply's `to` and the relay it came from; server — a FROM_RELAY request that arrived on
    /// [`socket`](Self::socket), its `to` and `from`.
    pub fn add_sample(&mut self, to: SocketAddrV4, from: SocketAddrV4) {
        if self.destroyed {
            return;
        }
        self.nat.add(to, from);
        self.after_nat_change();
    }

    /// Stop reclassifying own NAT (its state was told to the peer).
    pub fn freeze(&mut self) {
        self.nat.freeze();
    }

    /// Resume reclassifying.
    pub fn unfreeze(&mut self) {
        self.nat.unfreeze();
    }

    fn after_nat_change(&mut self) {
        if let Reopen::Running { resets } = self.reopen {
            if self.replacement_pending || !self.nat.is_settled() {
                return;
            }
            if self.is_unstable() && resets < MAX_REOPENS && !self.done() && !self.punching {
                self.reopen = Reopen::Running { resets: resets + 1 };
                self.reset();
                return;
            }
            self.reopen = Reopen::Done(coerce(self.nat.firewall()) == Firewall::Consistent);
        }
        if self.analysis_waiting && self.nat.is_settled() {
            self.analysis_waiting = false;
            self.out.push_back(PuncherOutput::AnalysisReady);
        }
    }

    /// `analyze(allowReopen)`: wait for the analysis; when unstable and `allow_reopen`, replace
    /// the socket and resample up to [`MAX_REOPENS`] times (once per puncher; later calls get the
    /// same result), succeeding if that makes it CONSISTENT (or OPEN).
    pub fn analyze(&mut self, allow_reopen: bool) -> Analysis {
        let reopening = matches!(self.reopen, Reopen::Running { .. });
        if !self.nat.is_settled() || (reopening && allow_reopen) {
            self.analysis_waiting = true;
            return Analysis::Pending;
        }
        if !self.is_unstable() {
            return Analysis::Stable;
        }
        if !allow_reopen {
            return Analysis::Unstable;
        }
        match self.reopen {
            Reopen::Done(true) => Analysis::Stable,
            Reopen::Done(false) => Analysis::Unstable,
            Reopen::Running { .. } => {
                self.analysis_waiting = true;
                Analysis::Pending
            }
            Reopen::Idle => {
                if self.is_unstable() && !self.done() && !self.punching {
                    self.reopen = Reopen::Running { resets: 1 };
                    self.analysis_waiting = true;
                    self.reset();
                    Analysis::Pending
                } else {
                    let ok = coerce(self.nat.firewall()) == Firewall::Consistent;
                    self.reopen = Reopen::Done(ok);
                    if ok {
                        Analysis::Stable
                    } else {
                        Analysis::Unstable
                    }
                }
            }
        }
    }

    /// `_reset()`: release the main socket, ask for a fresh one, start a fresh analysis.
    fn reset(&mut self) {
        if let Some(old) = self.main.take() {
            self.sockets.retain(|s| *s != old);
            self.out.push_back(PuncherOutput::ReleaseSocket(old));
        }
        self.nat.destroy();
        self.nat = Nat::new(self.dht_firewalled);
        self.replacement_pending = true;
        self.out.push_back(PuncherOutput::OpenSockets { count: 1 });
    }

    // ---------------------------------------------------------------- sockets

    /// Sockets the puncher asked for ([`PuncherOutput::OpenSockets`]) arrived. A pending
    /// replacement takes the first; birthday sockets each send one TTL-5 probe. Sockets nobody
    /// waits for any more are released at once.
    pub fn add_sockets(&mut self, now: Instant, sockets: &[SocketId]) {
        for &socket in sockets {
            if self.destroyed || self.connected.is_some() || self.sockets.contains(&socket) {
                if !self.sockets.contains(&socket) {
                    self.out.push_back(PuncherOutput::ReleaseSocket(socket));
                }
                continue;
            }
            if self.replacement_pending {
                self.replacement_pending = false;
                self.main = Some(socket);
                self.sockets.insert(0, socket);
                self.start_sampling(socket);
                continue;
            }
            if self.birthday_outstanding > 0 {
                self.birthday_outstanding -= 1;
                if let Run::BirthdayOpening { target } = self.run {
                    if self.punching {
                        self.sockets.push(socket);
                        self.probe(socket, target, HOLEPUNCH_TTL);
                        if self.birthday_outstanding == 0 {
                            self.start_keep_alive(now, target);
                        }
                        continue;
                    }
                }
            }
            self.out.push_back(PuncherOutput::ReleaseSocket(socket));
        }
    }

    /// The owner cannot open the sockets still requested (limits, errors). A pending
    /// replacement then fails the puncher (`HOLEPUNCH_ABORTED`); birthday opening goes on with
    /// the sockets it has.
    pub fn sockets_unavailable(&mut self, now: Instant) {
        if self.destroyed {
            return;
        }
        if self.replacement_pending {
            self.replacement_pending = false;
            self.reopen = Reopen::Done(false);
            self.auto_destroy();
            return;
        }
        if self.birthday_outstanding > 0 {
            self.birthday_outstanding = 0;
            if let Run::BirthdayOpening { target } = self.run {
                if self.punching {
                    self.start_keep_alive(now, target);
                }
            }
        }
    }

    // ---------------------------------------------------------------- remote state

    /// `updateRemote`: replace the remote state. An address is verified if its host is
    /// `verified` or was verified before.
    pub fn update_remote(&mut self, update: RemoteUpdate<'_>) {
        let mut remote = Vec::new();
        if let Some(addresses) = update.addresses {
            for addr in addresses.iter().take(MAX_REMOTE_ADDRESSES) {
                let verified = update.verified == Some(*addr.ip()) || self.is_verified(addr.ip());
                remote.push(RemoteAddress {
                    addr: *addr,
                    verified,
                });
            }
        }
        self.remote_firewall = update.firewall;
        self.remote_addresses = remote;
        self.remote_holepunching = update.punching;
    }

    fn is_verified(&self, host: &Ipv4Addr) -> bool {
        self.remote_addresses
            .iter()
            .any(|a| a.verified && a.addr.ip() == host)
    }

    /// Client (`updateHolepunch`): apply a decrypted PEER_HOLEPUNCH reply to the payload `sent`
    /// to `peer_address`. TRY_LATER (when `sent` asked to punch and we hold a relay token) →
    /// [`ReplyStatus::TryLater`] without touching the remote state; any other error →
    /// `REMOTE_ABORTED`; else the remote state is updated, the server host verified if it
    /// echoed `sent.token`. (A box that does not decrypt is `HOLEPUNCH_INVALID`, the caller's.)
    pub fn handle_reply(
        &mut self,
        reply: &HolepunchPayload,
        sent: &HolepunchPayload,
        peer_address: SocketAddrV4,
        has_relay_token: bool,
    ) -> Result<ReplyStatus, ConnectError> {
        if reply.error == ErrorCode::TRY_LATER && has_relay_token && sent.punching {
            return Ok(ReplyStatus::TryLater);
        }
        if reply.error != ErrorCode::NONE {
            return Err(ConnectError::RemoteAborted(reply.error));
        }
        let echoed = matches!((&reply.remote_token, &sent.token), (Some(a), Some(b)) if a == b);
        self.update_remote(RemoteUpdate {
            punching: reply.punching,
            firewall: super::nat::firewall_from_wire_lenient(reply.firewall),
            addresses: reply.addresses.as_deref(),
            verified: if echoed {
                Some(*peer_address.ip())
            } else {
                None
            },
        });
        Ok(ReplyStatus::Ok)
    }

    /// Client, end of a probe round (after [`analyze`](Self::analyze)): `retry` is true on the
    /// first pass, `got_token` whether the reply carried the server's token.
    pub fn probe_round_verdict(&self, retry: bool, got_token: bool) -> ProbeVerdict {
        if (self.remote_firewall == Firewall::Unknown || !got_token) && retry {
            return ProbeVerdict::Retry;
        }
        if self.remote_firewall == Firewall::Unknown || self.nat.firewall() == Firewall::Unknown {
            return ProbeVerdict::Abort(ConnectError::HolepunchProbeTimeout);
        }
        if self.remote_firewall >= Firewall::Random && self.nat.firewall() >= Firewall::Random {
            return ProbeVerdict::Abort(ConnectError::HolepunchDoubleRandomizedNats);
        }
        ProbeVerdict::Proceed
    }

    /// Server fast mode (§4.6 step 7): own NAT OPEN/CONSISTENT and the client's `remoteAddress`
    /// is one of our advertised addresses → send [`ping`](Self::ping) to the client now.
    pub fn fast_mode(&self, remote_address: Option<SocketAddrV4>) -> bool {
        matches!(self.nat.firewall(), Firewall::Open | Firewall::Consistent)
            && remote_address.is_some_and(|a| self.nat.has_address(&a))
    }

    // ---------------------------------------------------------------- payloads

    /// Client probe round payload: own firewall and addresses, `remote_address` = the server
    /// address the fast-open probe went to (`None` without fast open).
    pub fn probe_round_payload(
        &self,
        round: u64,
        remote_address: Option<SocketAddrV4>,
    ) -> HolepunchPayload {
        HolepunchPayload {
            error: ErrorCode::NONE,
            firewall: self.nat.firewall().to_wire(),
            round,
            connected: false,
            punching: false,
            addresses: self.addresses().map(|a| a.to_vec()),
            remote_address,
            token: None,
            remote_token: None,
        }
    }

    /// Client punch round payload (`punching = true`): `token` = `token(serverAddress)` (`None`
    /// after a try-later delay), `remote_token` = the server's token from the probe round.
    pub fn punch_round_payload(
        &self,
        round: u64,
        token: Option<[u8; 32]>,
        remote_token: Option<[u8; 32]>,
    ) -> HolepunchPayload {
        HolepunchPayload {
            punching: true,
            token,
            remote_token,
            ..self.probe_round_payload(round, None)
        }
    }

    /// Client's single non-punching update sent while the random-punch throttle delays it.
    pub fn delayed_update_payload(
        &self,
        round: u64,
        token: Option<[u8; 32]>,
        remote_token: Option<[u8; 32]>,
    ) -> HolepunchPayload {
        HolepunchPayload {
            token,
            remote_token,
            ..self.probe_round_payload(round, None)
        }
    }

    /// Server reply (§4.6 step 9; `error` TRY_LATER for the throttled reply with state):
    /// `token` only when the request came via an announce relay, `remote_token` = the client's.
    pub fn server_reply_payload(
        &self,
        error: u64,
        round: u64,
        token: Option<[u8; 32]>,
        remote_token: Option<[u8; 32]>,
    ) -> HolepunchPayload {
        HolepunchPayload {
            error,
            firewall: self.nat.firewall().to_wire(),
            round,
            connected: self.connected.is_some(),
            punching: self.punching,
            addresses: self.addresses().map(|a| a.to_vec()),
            remote_address: None,
            token,
            remote_token,
        }
    }

    // ---------------------------------------------------------------- probes

    fn probe(&mut self, socket: SocketId, to: SocketAddrV4, ttl: u8) {
        self.out.push_back(PuncherOutput::Probe { socket, to, ttl });
    }

    /// `openSession(addr)`: a TTL-5 probe from the main socket (opens our mapping; normally dies
    /// before reaching the peer).
    pub fn open_session(&mut self, to: SocketAddrV4) {
        if let (false, Some(s)) = (self.destroyed, self.main) {
            self.probe(s, to, HOLEPUNCH_TTL);
        }
    }

    /// `ping(addr)`: a TTL-64 probe from the main socket.
    pub fn ping(&mut self, to: SocketAddrV4) {
        if let (false, Some(s)) = (self.destroyed, self.main) {
            self.probe(s, to, DEFAULT_TTL);
        }
    }

    /// A 1-byte datagram arrived on `socket` from `from`. The server echoes it (TTL 64, same
    /// socket); the client's first one connects ([`PuncherOutput::Connected`]), whatever the
    /// source. Returns whether the socket is the puncher's (else the datagram is not for it).
    pub fn handle_probe(&mut self, _now: Instant, socket: SocketId, from: SocketAddrV4) -> bool {
        if self.destroyed || !self.sockets.contains(&socket) {
            return false;
        }
        if !self.initiator {
            self.probe(socket, from, DEFAULT_TTL);
            return true;
        }
        if self.connected.is_some() {
            return true;
        }
        self.connected = Some((socket, from));
        self.punching = false;
        self.run = Run::Idle;
        self.birthday_outstanding = 0;
        for s in core::mem::take(&mut self.sockets) {
            if s != socket {
                self.out.push_back(PuncherOutput::ReleaseSocket(s));
            }
        }
        self.sockets.push(socket);
        self.main = Some(socket);
        self.replacement_pending = false;
        self.decrement_randomized();
        self.out
            .push_back(PuncherOutput::Connected { socket, addr: from });
        true
    }

    // ---------------------------------------------------------------- punching

    /// `punch()`: start the strategy for (own, remote) firewall, once (later calls return the
    /// first result). Errors: destroyed/connected → `HOLEPUNCH_ABORTED`; both RANDOM →
    /// `HOLEPUNCH_DOUBLE_RANDOMIZED_NATS` (the reference returns `false` here too, and its probe
    /// round catches the pair before); no remote address, an UNKNOWN side, or a random side
    /// without a verified remote address → `REMOTE_NOT_HOLEPUNCHABLE`. The server aborts on any
    /// error. The first probes are queued at once (the server's consistent probing waits 1 s).
    pub fn punch(&mut self, now: Instant) -> Result<Strategy, ConnectError> {
        if let Some(r) = self.punch_result {
            return r;
        }
        let r = self.start_punch(now);
        tracing::debug!(
            initiator = self.initiator,
            local = ?self.nat.firewall(),
            remote = ?self.remote_firewall,
            remote_addresses = self.remote_addresses.len(),
            outcome = ?r,
            "holepunch: strategy"
        );
        self.punch_result = Some(r);
        r
    }

    fn start_punch(&mut self, now: Instant) -> Result<Strategy, ConnectError> {
        if self.done() {
            return Err(ConnectError::HolepunchAborted);
        }
        if self.remote_addresses.is_empty() {
            return Err(ConnectError::RemoteNotHolepunchable);
        }
        let strategy = punch_strategy(self.nat.firewall(), self.remote_firewall)?;
        if strategy == Strategy::Consistent {
            self.punching = true;
            if self.initiator {
                self.run = Run::Consistent {
                    ticks: 0,
                    next: now,
                };
                self.consistent_tick(now);
            } else {
                self.run = Run::Consistent {
                    ticks: 0,
                    next: now + CONSISTENT_INTERVAL,
                };
            }
            return Ok(Strategy::Consistent);
        }
        let Some(verified) = self
            .remote_addresses
            .iter()
            .find(|a| a.verified)
            .map(|a| a.addr)
        else {
            return Err(ConnectError::RemoteNotHolepunchable);
        };
        if strategy == Strategy::RandomProbes {
            self.punching = true;
            self.increment_randomized();
            let host = *verified.ip();
            self.run = Run::Random {
                host,
                remaining: RANDOM_PROBES + RANDOM_PROBES_TAIL,
                next: now,
            };
            self.random_tick(now);
            return Ok(Strategy::RandomProbes);
        }
        self.punching = true;
        self.increment_randomized();
        self.run = Run::BirthdayOpening { target: verified };
        let want = BIRTHDAY_SOCKETS.saturating_sub(self.sockets.len());
        if want == 0 {
            self.start_keep_alive(now, verified);
        } else {
            self.birthday_outstanding = want;
            self.out
                .push_back(PuncherOutput::OpenSockets { count: want });
        }
        Ok(Strategy::Birthday)
    }

    fn start_keep_alive(&mut self, now: Instant, target: SocketAddrV4) {
        self.run = Run::BirthdayKeepAlive {
            target,
            i: 0,
            low_ttl_rounds: 1,
            remaining: RANDOM_PROBES,
            next: now + BIRTHDAY_PAUSE,
        };
    }

    /// Run the strategy's due steps.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.destroyed {
            return;
        }
        match self.poll_timeout() {
            Some(t) if t <= now => {}
            _ => return,
        }
        match self.run {
            Run::Consistent { .. } => self.consistent_tick(now),
            Run::Random { .. } => self.random_tick(now),
            Run::BirthdayKeepAlive { .. } => self.keep_alive_tick(now),
            Run::Idle | Run::BirthdayOpening { .. } => {}
        }
    }

    fn consistent_tick(&mut self, now: Instant) {
        let Run::Consistent { ticks, .. } = self.run else {
            return;
        };
        if !self.punching || ticks >= CONSISTENT_TICKS {
            return self.auto_destroy();
        }
        let tick = ticks + 1;
        if let Some(socket) = self.main {
            let targets: Vec<SocketAddrV4> = self
                .remote_addresses
                .iter()
                // Unverified addresses only every 4th tick.
                .filter(|a| a.verified || tick & 3 == 0)
                .map(|a| a.addr)
                .collect();
            for to in targets {
                self.probe(socket, to, DEFAULT_TTL);
            }
        }
        self.run = Run::Consistent {
            ticks: tick,
            next: now + CONSISTENT_INTERVAL,
        };
    }

    fn random_tick(&mut self, now: Instant) {
        let Run::Random {
            host, remaining, ..
        } = self.run
        else {
            return;
        };
        if !self.punching || remaining == 0 {
            return self.auto_destroy();
        }
        let port = self.random_port();
        if let Some(socket) = self.main {
            self.probe(socket, SocketAddrV4::new(host, port), DEFAULT_TTL);
        }
        // After the last probe, give a hit's echo time to come back before giving up.
        let left = remaining - 1;
        let wait = if left == 0 {
            RANDOM_PROBE_GRACE
        } else if left > RANDOM_PROBES_TAIL {
            RANDOM_PROBE_INTERVAL
        } else {
            RANDOM_INTERVAL
        };
        self.run = Run::Random {
            host,
            remaining: remaining - 1,
            next: now + wait,
        };
    }

    fn keep_alive_tick(&mut self, now: Instant) {
        let Run::BirthdayKeepAlive {
            target,
            mut i,
            mut low_ttl_rounds,
            remaining,
            ..
        } = self.run
        else {
            return;
        };
        if !self.punching || remaining == 0 || self.sockets.is_empty() {
            return self.auto_destroy();
        }
        if i >= self.sockets.len() {
            i = 0;
            low_ttl_rounds = low_ttl_rounds.saturating_sub(1);
        }
        let socket = self.sockets[i];
        let ttl = if low_ttl_rounds > 0 {
            HOLEPUNCH_TTL
        } else {
            DEFAULT_TTL
        };
        self.probe(socket, target, ttl);
        self.run = Run::BirthdayKeepAlive {
            target,
            i: i + 1,
            low_ttl_rounds,
            remaining: remaining - 1,
            next: now + RANDOM_INTERVAL,
        };
    }

    /// `randomPort()`: uniform in 1000..=65535.
    fn random_port(&mut self) -> u16 {
        // xorshift64* — deterministic, seeded from the owner's RNG.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
        let span = u64::from(u16::MAX - MIN_RANDOM_PORT) + 1;
        MIN_RANDOM_PORT + (r % span) as u16
    }

    fn done(&self) -> bool {
        self.destroyed || self.connected.is_some()
    }

    fn increment_randomized(&mut self) {
        if !self.randomized {
            self.randomized = true;
            self.out.push_back(PuncherOutput::RandomPunchBegin);
        }
    }

    fn decrement_randomized(&mut self) {
        if self.randomized {
            self.randomized = false;
            self.out.push_back(PuncherOutput::RandomPunchEnd);
        }
    }

    fn auto_destroy(&mut self) {
        if self.connected.is_none() && !self.destroyed {
            self.destroy();
            self.out
                .push_back(PuncherOutput::Failed(ConnectError::HolepunchAborted));
        }
    }

    /// `destroy()`: stop, release every socket (but the connected one, which the stream owns),
    /// end the random-punch count. Emits no [`PuncherOutput::Failed`]: the owner knows why.
    pub fn destroy(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        self.punching = false;
        self.run = Run::Idle;
        self.birthday_outstanding = 0;
        self.replacement_pending = false;
        let keep = self.connected.map(|(s, _)| s);
        for s in core::mem::take(&mut self.sockets) {
            if Some(s) != keep {
                self.out.push_back(PuncherOutput::ReleaseSocket(s));
            }
        }
        if let Some(s) = keep {
            self.sockets.push(s);
        }
        self.nat.destroy();
        if self.connected.is_none() {
            self.decrement_randomized();
        }
        if self.analysis_waiting {
            self.analysis_waiting = false;
            self.out.push_back(PuncherOutput::AnalysisReady);
        }
    }
}

/// The strategy two NAT classes punch with (OPEN counts as CONSISTENT), as
/// [`Puncher::punch`] chooses it: both consistent probe each other; a consistent side sprays
/// random ports of a random side's host while that side opens many sockets (the birthday
/// strategy); both random cannot punch (`HOLEPUNCH_DOUBLE_RANDOMIZED_NATS`); an UNKNOWN side
/// is `REMOTE_NOT_HOLEPUNCHABLE`. (The random strategies also need a verified address of the
/// remote, which `punch` checks.)
pub fn punch_strategy(local: Firewall, remote: Firewall) -> Result<Strategy, ConnectError> {
    let (local, remote) = (coerce(local), coerce(remote));
    if local >= Firewall::Random && remote >= Firewall::Random {
        return Err(ConnectError::HolepunchDoubleRandomizedNats);
    }
    match (local, remote) {
        (Firewall::Consistent, Firewall::Consistent) => Ok(Strategy::Consistent),
        (Firewall::Consistent, Firewall::Random) => Ok(Strategy::RandomProbes),
        (Firewall::Random, Firewall::Consistent) => Ok(Strategy::Birthday),
        _ => Err(ConnectError::RemoteNotHolepunchable),
    }
}

/// The client/server abort payload (§4.8): `error` ABORTED (server: or TRY_LATER), firewall
/// UNKNOWN, everything else empty. Client: `round` = its next round; server: the highest seen.
pub fn abort_payload(error: u64, round: u64) -> HolepunchPayload {
    HolepunchPayload {
        error,
        firewall: Firewall::UNKNOWN,
        round,
        ..HolepunchPayload::default()
    }
}

/// `pickServerRelay`: the server relay whose node is the one the handshake went through, else
/// the first.
pub fn pick_server_relay(relays: &[RelayInfo], handshake_node: SocketAddrV4) -> Option<&RelayInfo> {
    relays
        .iter()
        .find(|r| r.relay_address == handshake_node)
        .or_else(|| relays.first())
}

/// The try-later back-off: 10 s + uniform 0..=10 s (whole milliseconds).
pub fn try_later_delay<R: RngCore>(rng: &mut R) -> Duration {
    let extra = u64::from(rng.next_u32()) % (TRY_LATER_SPREAD_MS + 1);
    TRY_LATER_MIN + Duration::from_millis(extra)
}

/// The node-wide random-punch throttle (`dht._randomPunches`, `_lastRandomPunch`,
/// `_randomPunchLimit`, `_randomPunchInterval`): at most 1 random punch at a time and 20 s
/// between the end of one and the start of the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomPunchLimiter {
    limit: u32,
    interval: Duration,
    active: u32,
    last: Option<Instant>,
}

impl Default for RandomPunchLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomPunchLimiter {
    /// Limit 1, interval 20 s, no punch so far.
    pub fn new() -> Self {
        RandomPunchLimiter {
            limit: RANDOM_PUNCH_LIMIT,
            interval: RANDOM_PUNCH_INTERVAL,
            active: 0,
            last: None,
        }
    }

    /// With `randomPunchInterval`.
    pub fn with_interval(interval: Duration) -> Self {
        RandomPunchLimiter {
            interval,
            ..Self::new()
        }
    }

    /// `deferRandomPunch`: the spacing clock starts now.
    pub fn deferred(mut self, now: Instant) -> Self {
        self.last = Some(now);
        self
    }

    /// Whether a random punch must wait (`_randomPunches >= limit || now - last < interval`).
    pub fn is_throttled(&self, now: Instant) -> bool {
        self.active >= self.limit || self.last.is_some_and(|l| now - l < self.interval)
    }

    /// Random punches in progress.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// Count one more (`_randomPunches++`; the client also holds one around its punch request).
    pub fn begin(&mut self) {
        self.active = self.active.saturating_add(1);
    }

    /// Release a hold taken with [`begin`](Self::begin) without stamping the clock (the
    /// client's `_randomPunches--` after its punch request).
    pub fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// A random punch ended (`_decrementRandomized`): count down and stamp the clock.
    pub fn end(&mut self, now: Instant) {
        self.active = self.active.saturating_sub(1);
        self.last = Some(now);
    }

    /// Apply a puncher output ([`PuncherOutput::RandomPunchBegin`] / `End`); others are ignored.
    pub fn apply(&mut self, now: Instant, output: &PuncherOutput) {
        match output {
            PuncherOutput::RandomPunchBegin => self.begin(),
            PuncherOutput::RandomPunchEnd => self.end(now),
            _ => {}
        }
    }
}

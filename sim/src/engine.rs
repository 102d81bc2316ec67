//! The event loop: one thread, one queue of `(time, lane, sequence)` events, one seeded RNG,
//! virtual time. It drives unmodified sans-IO apps ([`App`]) over the [`Network`].
//!
//! Two kinds of events exist: a datagram arriving (its up half already routed at send time,
//! see [`crate::network`]) and a host's timer. Of the events due at one instant, every arrival
//! runs before any timer — as the real drivers feed the core (`hdht-tokio` and `hdht-smol`
//! read every datagram that is ready, then run the timer if it is due), so a reply that
//! arrives at its requester's deadline is in time, whichever of the two was queued first.
//! Each host has at most one live timer: when its app's deadline changes a new timer event is
//! queued and the old one is recognised as stale when it pops. Every app call is followed by
//! a *flush*: the sockets it asks for are bound (ephemeral ports) or closed, its events go to
//! a FIFO, its datagrams into the network, its deadline into the queue.
//!
//! Events reach the owner through a [`Handler`] run after each step, in the order they were
//! produced; a handler may call into apps (e.g. answer a request), whose new events join the
//! same FIFO. Without a handler they are collected per host for [`Engine::take_events`].
//!
//! All randomness (link jitter and loss, NAT ports, per-node RNG seeds, ephemeral ports)
//! comes from the one ChaCha8 RNG seeded with the run's seed, drawn in event order.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdht_core::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::app::{App, Datagram, SocketCommand, DEFAULT_TTL};
use crate::link::LinkModel;
use crate::nat::{NatBox, NatConfig, NatPreset};
use crate::network::{
    DropReason, HostId, NatId, NetError, Network, Outgoing, RealmId, SocketId, Transit,
};
use crate::queue::{EventQueue, Lane};
use crate::trace::{TraceHash, Tracer};

/// Datagram and event counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams apps handed to the network (duplicates not counted).
    pub sent: u64,
    /// Datagrams delivered to an app.
    pub delivered: u64,
    /// Payload bytes delivered.
    pub bytes_delivered: u64,
    /// Extra copies the link made.
    pub duplicated: u64,
    /// Dropped datagrams per reason, in [`DropReason::ALL`] order (see [`NetStats::dropped`]).
    pub dropped: [u64; DropReason::ALL.len()],
    /// Timer events that ran an app.
    pub timers: u64,
    /// Timer events found stale (superseded) when they popped.
    pub stale_timers: u64,
    /// Times an app, right after one of its timers ran, still asked for a deadline at or
    /// before that instant (the engine moves it 1 µs on; a deadline really 1 µs later does
    /// not count). An app that keeps a deadline in the
    /// past busy-loops — in a runtime too — so a healthy run has (nearly) none.
    pub busy_timers: u64,
    /// Events that did work: datagram arrivals (delivered or dropped on the way in) and
    /// timers that ran.
    pub events: u64,
}

impl NetStats {
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.dropped[r.index()]
    }
}

/// What happened to a datagram, as a [`Tap`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapKind {
    /// It left its host (after its way up through the sender's NATs).
    Sent,
    /// It was dropped: on its way up (no route, TTL, NAT ports, …), on the link (loss), or on
    /// its way down (filtering, port unreachable, partition, …).
    Dropped(DropReason),
    /// An app received it.
    Delivered,
}

/// One datagram event, for debugging a run (see [`Engine::set_tap`]).
#[derive(Debug, Clone, Copy)]
pub struct TapRecord<'a> {
    /// Virtual time.
    pub at: Instant,
    /// What happened.
    pub kind: TapKind,
    /// The sending host.
    pub from_host: HostId,
    /// The receiving host (when delivered).
    pub to_host: Option<HostId>,
    /// The source: the sender's local endpoint if it was dropped on its way up, else as
    /// translated by the sender's NATs.
    pub from: SocketAddrV4,
    /// The destination as the sender addressed it (delivered: the receiving local endpoint).
    pub to: SocketAddrV4,
    /// TTL: as sent for `Sent` and for drops on the way up or on the link, what was left of
    /// it after the way up otherwise.
    pub ttl: u8,
    /// The bytes.
    pub payload: &'a [u8],
}

/// Sees every datagram sent, dropped and delivered (it must not influence the run).
pub type Tap = Box<dyn FnMut(&TapRecord<'_>) + Send>;

/// Receives app events as the run produces them.
pub trait Handler<A: App> {
    /// One event from `host`'s app. The handler may call into any app through `sim`.
    fn on_event(&mut self, sim: &mut Engine<A>, host: HostId, event: A::Event);
}

impl<A: App, F: FnMut(&mut Engine<A>, HostId, A::Event)> Handler<A> for F {
    fn on_event(&mut self, sim: &mut Engine<A>, host: HostId, event: A::Event) {
        self(sim, host, event)
    }
}

/// The default handler: keep events per host for [`Engine::take_events`].
struct Collect;

impl<A: App> Handler<A> for Collect {
    fn on_event(&mut self, sim: &mut Engine<A>, host: HostId, event: A::Event) {
        if let Some(slot) = sim.hosts.get_mut(host) {
            slot.events.push_back(event);
        }
    }
}

/// What a host's sockets and app look like to a constructor (see [`Engine::spawn`]).
pub struct HostSetup<'a> {
    net: &'a mut Network,
    rng: &'a mut ChaCha8Rng,
    host: HostId,
    now: Instant,
}

impl HostSetup<'_> {
    /// The host being set up.
    pub fn host(&self) -> HostId {
        self.host
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Binds a socket (`port` 0 = an ephemeral port).
    pub fn bind(&mut self, port: u16) -> Result<SocketId, NetError> {
        self.net.bind(self.host, port, self.rng)
    }

    /// A bound socket's local address.
    pub fn local_addr(&self, s: SocketId) -> Option<SocketAddrV4> {
        self.net.socket_addr(self.host, s)
    }

    /// A fresh seed for the app's own RNG, drawn from the run's RNG.
    pub fn seed(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// A queued event: 8 bytes, so the heap moves little. Datagrams in flight live in a slab.
#[derive(Debug, Clone, Copy)]
enum Ev {
    Arrive(u32),
    Timer(u32),
}

/// A datagram between its up and its down half.
struct Flight {
    t: Transit,
    payload: Vec<u8>,
}

struct Slot<A: App> {
    app: Option<A>,
    alive: bool,
    next_wake: Option<Instant>,
    events: VecDeque<A::Event>,
}

/// The simulator, generic over what runs on the hosts.
pub struct Engine<A: App> {
    now: Instant,
    queue: EventQueue<Ev>,
    rng: ChaCha8Rng,
    seed: u64,
    net: Network,
    link: LinkModel,
    hosts: Vec<Slot<A>>,
    pending: VecDeque<(HostId, A::Event)>,
    tracer: Tracer,
    stats: NetStats,
    /// Datagrams in flight, indexed by `Ev::Arrive`; freed slots are reused.
    flights: Vec<Option<Flight>>,
    free_flights: Vec<u32>,
    tap: Option<Tap>,
}

impl<A: App> Engine<A> {
    /// A simulator whose every random choice derives from `seed`.
    pub fn new(seed: u64, link: LinkModel) -> Self {
        Engine {
            now: Instant::ZERO,
            queue: EventQueue::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            net: Network::new(),
            link,
            hosts: Vec::new(),
            pending: VecDeque::new(),
            tracer: Tracer::new(),
            stats: NetStats::default(),
            flights: Vec::new(),
            free_flights: Vec::new(),
            tap: None,
        }
    }

    /// The seed this run was made from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The run's RNG, for choices a scenario makes (keeps them on the seed).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The link model.
    pub fn link(&self) -> &LinkModel {
        &self.link
    }

    /// Replaces the link model from now on (datagrams in flight keep their delay).
    pub fn set_link(&mut self, link: LinkModel) {
        self.link = link;
    }

    /// Installs (or removes) a tap that sees every datagram sent, dropped and delivered from
    /// now on — for debugging; it draws nothing from the run's RNG, so the run is unchanged.
    pub fn set_tap(&mut self, tap: Option<Tap>) {
        self.tap = tap;
    }

    /// The topology.
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The topology, mutably (port forwards, inspecting NAT boxes).
    pub fn net_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Reserves room for `n` more hosts (avoids a doubling vector's slack at scale).
    pub fn reserve_hosts(&mut self, n: usize) {
        self.hosts.reserve_exact(n);
        self.net.reserve_hosts(n);
    }

    /// Bytes the simulator itself holds besides the apps (their inline size and their heap):
    /// host slots, the event queue, datagrams in flight, the topology and NAT tables.
    pub fn overhead_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Slot<A>>();
        let app = std::mem::size_of::<A>();
        let slots = self.hosts.capacity() * slot - self.hosts.len() * app;
        let events: usize = self
            .hosts
            .iter()
            .map(|s| s.events.capacity() * std::mem::size_of::<A::Event>())
            .sum();
        let flights = self.flights.capacity() * std::mem::size_of::<Option<Flight>>()
            + self
                .flights
                .iter()
                .flatten()
                .map(|f| f.payload.capacity())
                .sum::<usize>()
            + self.free_flights.capacity() * 4;
        slots
            + events
            + flights
            + self.queue.heap_bytes()
            + self.pending.capacity() * std::mem::size_of::<(HostId, A::Event)>()
            + self.net.heap_bytes()
    }

    /// Events waiting in the queue (datagrams in flight and timers).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Adds a NAT box in `outside`; its inside realm is numbered from 192.168.0.2 (every home
    /// uses the same private range — realms are separate address spaces).
    pub fn add_nat(&mut self, cfg: NatConfig, outside: RealmId) -> Result<NatId, NetError> {
        self.add_nat_numbered(
            cfg,
            outside,
            Ipv4Addr::new(192, 168, 0, 2),
            Ipv4Addr::new(192, 168, 255, 254),
        )
    }

    /// Adds a NAT box whose inside addresses run from `first` to `last`.
    pub fn add_nat_numbered(
        &mut self,
        cfg: NatConfig,
        outside: RealmId,
        first: Ipv4Addr,
        last: Ipv4Addr,
    ) -> Result<NatId, NetError> {
        self.net
            .add_nat(cfg, outside, first, last, &self.link, &mut self.rng)
    }

    /// The realm a host with `preset` lives in: the Internet for `open`, else behind a new box
    /// of the preset (for `cgnat`, a new home router behind `carrier`, which is created when
    /// `None` and returned so that later homes can share it).
    pub fn add_preset(
        &mut self,
        preset: NatPreset,
        carrier: Option<NatId>,
    ) -> Result<(RealmId, Option<NatId>), NetError> {
        let chain = preset.chain();
        let Some((home, outer)) = chain.split_first() else {
            return Ok((RealmId::INTERNET, None));
        };
        let mut realm = RealmId::INTERNET;
        let mut shared = None;
        if let Some(cfg) = outer.first() {
            let c = match carrier {
                Some(c) => c,
                // RFC 6598 shared address space, as carriers number their customers.
                None => self.add_nat_numbered(
                    cfg.clone(),
                    RealmId::INTERNET,
                    Ipv4Addr::new(100, 64, 0, 2),
                    Ipv4Addr::new(100, 127, 255, 254),
                )?,
            };
            realm = self.net.nat_inside(c)?;
            shared = Some(c);
        }
        let n = self.add_nat(home.clone(), realm)?;
        Ok((self.net.nat_inside(n)?, shared))
    }

    /// A NAT box.
    pub fn nat(&self, n: NatId) -> Result<&NatBox, NetError> {
        self.net.nat(n)
    }

    /// Moves every mapping of a NAT box to a new public port at once.
    pub fn rebind_nat(&mut self, n: NatId) -> Result<(), NetError> {
        self.net.rebind(n, &mut self.rng)
    }

    /// Splits the hosts: each listed set is one side, unlisted hosts another. Datagrams
    /// between sides are dropped (checked on arrival) until [`Engine::heal`].
    pub fn partition(&mut self, sides: &[&[HostId]]) {
        self.net.partition(sides);
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Adds a host in `realm` and starts the app `make` builds (it binds the host's sockets).
    pub fn spawn(
        &mut self,
        realm: RealmId,
        make: impl FnOnce(&mut HostSetup<'_>) -> Result<A, NetError>,
    ) -> Result<HostId, NetError> {
        let h = self.net.add_host(realm, &self.link, &mut self.rng)?;
        self.hosts.push(Slot {
            app: None,
            alive: false,
            next_wake: None,
            events: VecDeque::new(),
        });
        self.start(h, make)?;
        Ok(h)
    }

    fn start(
        &mut self,
        h: HostId,
        make: impl FnOnce(&mut HostSetup<'_>) -> Result<A, NetError>,
    ) -> Result<(), NetError> {
        let mut setup = HostSetup {
            net: &mut self.net,
            rng: &mut self.rng,
            host: h,
            now: self.now,
        };
        let app = match make(&mut setup) {
            Ok(app) => app,
            Err(e) => {
                let _ = self.net.unbind_all(h);
                return Err(e);
            }
        };
        let slot = &mut self.hosts[h];
        slot.app = Some(app);
        slot.alive = true;
        slot.next_wake = None;
        self.flush(h, self.now);
        Ok(())
    }

    /// Crashes a host: its app stops (it stays inspectable), its sockets close, datagrams to
    /// it are dropped.
    pub fn crash(&mut self, h: HostId) -> Result<(), NetError> {
        let slot = self.hosts.get_mut(h).ok_or(NetError::NoSuchHost(h))?;
        if !slot.alive {
            return Ok(());
        }
        slot.alive = false;
        slot.next_wake = None;
        if let Some(app) = slot.app.as_mut() {
            app.crash();
        }
        self.flush(h, self.now);
        self.net.unbind_all(h)
    }

    /// Replaces a host's app with a fresh one (after a crash, or crashing it now), on the
    /// same address or on a new one in the same realm.
    pub fn restart(
        &mut self,
        h: HostId,
        new_address: bool,
        make: impl FnOnce(&mut HostSetup<'_>) -> Result<A, NetError>,
    ) -> Result<(), NetError> {
        self.crash(h)?;
        if let Some(slot) = self.hosts.get_mut(h) {
            slot.app = None;
        }
        if new_address {
            self.net.renumber(h)?;
        }
        self.start(h, make)
    }

    /// Whether a host's app is running.
    pub fn is_alive(&self, h: HostId) -> bool {
        self.hosts.get(h).is_some_and(|s| s.alive)
    }

    /// The app on a host (panics on an unknown host or one whose app failed to start; see
    /// [`Engine::try_node`]).
    pub fn node(&self, h: HostId) -> &A {
        self.try_node(h)
            .unwrap_or_else(|| panic!("no app on host {h}"))
    }

    /// The app on a host, if any.
    pub fn try_node(&self, h: HostId) -> Option<&A> {
        self.hosts.get(h)?.app.as_ref()
    }

    /// Runs `f` on a host's app at the current time, then collects its output (panics on a
    /// host without an app; see [`Engine::try_with_node`]).
    pub fn with_node<T>(&mut self, h: HostId, f: impl FnOnce(&mut A, Instant) -> T) -> T {
        self.try_with_node(h, f)
            .unwrap_or_else(|| panic!("no app on host {h}"))
    }

    /// Runs `f` on a host's app at the current time, then collects its output; `None` if the
    /// host has no app.
    pub fn try_with_node<T>(
        &mut self,
        h: HostId,
        f: impl FnOnce(&mut A, Instant) -> T,
    ) -> Option<T> {
        let now = self.now;
        let app = self.hosts.get_mut(h)?.app.as_mut()?;
        let out = f(app, now);
        self.flush(h, now);
        Some(out)
    }

    /// Takes the events a host's app emitted so far (when no handler consumed them).
    pub fn take_events(&mut self, h: HostId) -> Vec<A::Event> {
        self.dispatch(&mut Collect);
        self.hosts
            .get_mut(h)
            .map(|s| s.events.drain(..).collect())
            .unwrap_or_default()
    }

    /// A socket's local address.
    pub fn socket_addr(&self, h: HostId, s: SocketId) -> Option<SocketAddrV4> {
        self.net.socket_addr(h, s)
    }

    /// The trace hash of every datagram delivered so far.
    pub fn trace(&self) -> TraceHash {
        self.tracer.finish()
    }

    /// The trace hash as bytes.
    pub fn trace_hash(&self) -> [u8; 32] {
        self.tracer.finish().0
    }

    /// (delivered, dropped) datagram counts.
    pub fn datagram_counts(&self) -> (u64, u64) {
        (self.stats.delivered, self.stats.dropped_total())
    }

    /// Counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Events processed so far (arrivals and timers that ran).
    pub fn events_processed(&self) -> u64 {
        self.stats.events
    }

    /// Processes one event; false when the queue is empty. Events the apps emit wait for the
    /// next run or [`Engine::take_events`].
    pub fn step(&mut self) -> bool {
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        match ev {
            Ev::Arrive(i) => {
                let Some(f) = self.flights.get_mut(i as usize).and_then(Option::take) else {
                    return true;
                };
                self.free_flights.push(i);
                self.arrive(&f.t, f.payload);
            }
            Ev::Timer(h) => {
                let h = h as usize;
                let slot = &mut self.hosts[h];
                if !slot.alive || slot.next_wake != Some(at) {
                    self.stats.stale_timers += 1;
                    return true;
                }
                slot.next_wake = None;
                self.stats.timers += 1;
                self.stats.events += 1;
                let now = self.now;
                if let Some(app) = slot.app.as_mut() {
                    app.handle_timeout(now);
                }
                // An app whose deadline does not move past `now` must not spin at one instant.
                self.flush(h, now + Duration::from_micros(1));
                // Busy: the app's own deadline is still at or before `now` (a deadline that
                // is legitimately 1 µs away, e.g. UDX pacing, is not).
                if self.hosts[h]
                    .app
                    .as_ref()
                    .and_then(|a| a.poll_timeout())
                    .is_some_and(|t| t <= now)
                {
                    self.stats.busy_timers += 1;
                }
            }
        }
        true
    }

    /// Runs until virtual time reaches `until`, collecting events per host. Collected events
    /// stay until [`Engine::take_events`]; long or large runs should consume them as they come
    /// with [`Engine::run_until_with`].
    pub fn run_until(&mut self, until: Instant) {
        self.run_until_with(until, &mut Collect);
    }

    /// Runs for `d` of virtual time, collecting events per host.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `until`, handing every event to `handler` as it happens.
    pub fn run_until_with(&mut self, until: Instant, handler: &mut impl Handler<A>) {
        self.dispatch(handler);
        while let Some(at) = self.queue.peek_time() {
            if at > until {
                break;
            }
            self.step();
            self.dispatch(handler);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d`, handing every event to `handler`.
    pub fn run_for_with(&mut self, d: Duration, handler: &mut impl Handler<A>) {
        let until = self.now + d;
        self.run_until_with(until, handler);
    }

    fn dispatch(&mut self, handler: &mut impl Handler<A>) {
        while let Some((h, ev)) = self.pending.pop_front() {
            handler.on_event(self, h, ev);
        }
    }

    fn drop_datagram(&mut self, r: DropReason) {
        self.stats.dropped[r.index()] += 1;
    }

    fn drop_arriving(&mut self, t: &Transit, payload: &[u8], r: DropReason) {
        if let Some(tap) = self.tap.as_mut() {
            let rec = TapRecord {
                at: self.now,
                kind: TapKind::Dropped(r),
                from_host: t.src_host as usize,
                to_host: None,
                from: t.src,
                to: t.dst,
                ttl: t.ttl,
                payload,
            };
            tap(&rec);
        }
        self.drop_datagram(r);
    }

    fn tap_sent(&mut self, h: HostId, d: &Datagram, from: SocketAddrV4, kind: TapKind) {
        if let Some(tap) = self.tap.as_mut() {
            let rec = TapRecord {
                at: self.now,
                kind,
                from_host: h,
                to_host: None,
                from,
                to: d.to,
                ttl: d.ttl.unwrap_or(DEFAULT_TTL),
                payload: &d.payload,
            };
            tap(&rec);
        }
    }

    fn local_or_unspecified(&self, h: HostId, s: SocketId) -> SocketAddrV4 {
        self.net
            .socket_addr(h, s)
            .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
    }

    fn arrive(&mut self, t: &Transit, payload: Vec<u8>) {
        let now = self.now;
        self.stats.events += 1;
        let (h, socket) = match self.net.route_in(now, t) {
            Ok(x) => x,
            Err(r) => return self.drop_arriving(t, &payload, r),
        };
        let h = h as usize;
        let Some(local) = self.net.socket_addr(h, socket) else {
            return self.drop_arriving(t, &payload, DropReason::PortUnreachable);
        };
        if !self.hosts[h].alive || self.hosts[h].app.is_none() {
            return self.drop_arriving(t, &payload, DropReason::PortUnreachable);
        }
        if let Some(tap) = self.tap.as_mut() {
            let rec = TapRecord {
                at: now,
                kind: TapKind::Delivered,
                from_host: t.src_host as usize,
                to_host: Some(h),
                from: t.src,
                to: local,
                ttl: t.ttl,
                payload: &payload,
            };
            tap(&rec);
        }
        let slot = &mut self.hosts[h];
        let Some(app) = slot.app.as_mut() else { return };
        self.stats.delivered += 1;
        self.stats.bytes_delivered += payload.len() as u64;
        self.tracer.record(now, t.src, local, &payload);
        app.handle_datagram(now, socket, t.src, &payload);
        self.flush(h, now);
    }

    /// Collects an app's output after it ran: socket commands, events, datagrams, next
    /// deadline (no earlier than `earliest`). Socket commands are drained first and again
    /// before every datagram, so a socket exists before anything is sent from it.
    fn flush(&mut self, h: HostId, earliest: Instant) {
        let Some(slot) = self.hosts.get(h) else {
            return;
        };
        if slot.app.is_none() {
            return;
        }
        let alive = slot.alive;
        self.socket_commands(h);
        self.collect_events(h);
        self.schedule(h, earliest);
        loop {
            self.socket_commands(h);
            let now = self.now;
            let Some(d) = self.hosts[h]
                .app
                .as_mut()
                .and_then(|a| a.poll_transmit(now))
            else {
                break;
            };
            if alive {
                self.send(h, d);
            }
        }
        // Sending may arm a timer (a retransmission) or report something.
        self.collect_events(h);
        self.schedule(h, earliest);
    }

    fn collect_events(&mut self, h: HostId) {
        let Some(app) = self.hosts[h].app.as_mut() else {
            return;
        };
        while let Some(ev) = app.poll_event() {
            self.pending.push_back((h, ev));
        }
    }

    /// Queues a timer for the app's deadline unless one for that time is queued already.
    fn schedule(&mut self, h: HostId, earliest: Instant) {
        let slot = &mut self.hosts[h];
        let wake = match (&slot.app, slot.alive) {
            (Some(app), true) => app.poll_timeout(),
            _ => None,
        };
        match wake {
            Some(w) => {
                let w = w.max(earliest);
                if slot.next_wake != Some(w) {
                    slot.next_wake = Some(w);
                    self.queue.push_timer(w, h as u32, Ev::Timer(h as u32));
                }
            }
            None => slot.next_wake = None,
        }
    }

    /// Opens and closes the sockets the app asks for (a crashed host opens nothing).
    fn socket_commands(&mut self, h: HostId) {
        let Engine {
            hosts,
            net,
            rng,
            now,
            ..
        } = self;
        let slot = &mut hosts[h];
        let Some(app) = slot.app.as_mut() else { return };
        while let Some(cmd) = app.poll_socket_command() {
            if !slot.alive {
                continue;
            }
            match cmd {
                SocketCommand::Bind { tag } => {
                    let r = net.bind(h, 0, rng);
                    app.socket_bound(*now, tag, r);
                }
                SocketCommand::Close(s) => {
                    let _ = net.unbind(h, s);
                }
            }
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn send(&mut self, h: HostId, d: Datagram) {
        self.stats.sent += 1;
        if d.payload.len() + LinkModel::HEADER > self.link.mtu {
            if self.tap.is_some() {
                let from = self.local_or_unspecified(h, d.socket);
                self.tap_sent(h, &d, from, TapKind::Dropped(DropReason::Mtu));
            }
            return self.drop_datagram(DropReason::Mtu);
        }
        let ttl = d.ttl.unwrap_or(DEFAULT_TTL);
        let out = Outgoing {
            host: h as u32,
            socket: d.socket,
            dst: d.to,
            ttl,
        };
        let t = match self.net.route_out(self.now, out, &self.link, &mut self.rng) {
            Ok(t) => t,
            Err(r) => {
                if self.tap.is_some() {
                    let from = self.local_or_unspecified(h, d.socket);
                    self.tap_sent(h, &d, from, TapKind::Dropped(r));
                }
                return self.drop_datagram(r);
            }
        };
        if self.chance(self.link.loss) {
            self.tap_sent(h, &d, t.src, TapKind::Dropped(DropReason::Loss));
            return self.drop_datagram(DropReason::Loss);
        }
        self.tap_sent(h, &d, t.src, TapKind::Sent);
        if self.chance(self.link.duplicate) {
            self.stats.duplicated += 1;
            let at = self.now + self.delay(&t);
            self.launch(
                at,
                Flight {
                    t: t.clone(),
                    payload: d.payload.clone(),
                },
            );
        }
        let at = self.now + self.delay(&t);
        self.launch(
            at,
            Flight {
                t,
                payload: d.payload,
            },
        );
    }

    fn launch(&mut self, at: Instant, f: Flight) {
        let i = match self.free_flights.pop() {
            Some(i) => {
                self.flights[i as usize] = Some(f);
                i
            }
            None => {
                self.flights.push(Some(f));
                (self.flights.len() - 1) as u32
            }
        };
        self.queue.push(at, Lane::Arrival, Ev::Arrive(i));
    }

    fn delay(&mut self, t: &Transit) -> Duration {
        let link = self.link;
        let mut d = if t.lan {
            link.lan_latency
        } else {
            link.latency + Duration::from_micros(u64::from(t.access_us))
        };
        if !t.lan {
            let j = u64::try_from(link.jitter.as_micros()).unwrap_or(u64::MAX);
            if j > 0 {
                d += Duration::from_micros(self.rng.next_u64() % j);
            }
        }
        if self.chance(link.reorder) {
            d += link.reorder_delay;
        }
        d
    }
}

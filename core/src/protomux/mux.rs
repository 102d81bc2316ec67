//! The Protomux session state machine: channel ids, pairing of channels by `(protocol, id)`,
//! early messages, open requests, reject, close, cork/uncork (protomux 3.12.1, spec 05 §5).
//!
//! Sans-IO: feed every message of the underlying framed stream to [`Mux::handle_frame`], write
//! every frame of [`Mux::poll_frame`] to it as one message, and drain [`Mux::poll_event`].
//!
//! Early messages (for a peer's open not answered yet) never outlive the frame that carried
//! them: an open is accepted or declined while its frame is handled, accepted channels open
//! and receive their early messages at the end of that frame, declined ones are rejected then.
//! So what a session buffers is bounded by one frame, and the reference's read back-pressure
//! (pausing the stream above 32 KiB of early messages, for its asynchronous handlers) has no
//! counterpart.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use super::error::{ChannelError, ProtomuxError};
use super::frame::{self, BatchWriter, Frame, Open, TYPE_CLOSE, TYPE_OPEN, TYPE_REJECT};
use crate::wire::{Reader, Writer};

/// Remote channel ids a peer may use (the reference grows its table without bound). An honest
/// peer reuses freed ids densely, so its largest id is its number of concurrent channels.
pub const MAX_REMOTE_CHANNELS: usize = 1024;
/// Local channels open at once.
pub const MAX_LOCAL_CHANNELS: usize = 1024;
/// Nesting of batch frames inside batch entries. No reference peer nests them (its batches
/// come from `_sendBatch` only); the reference recurses until its stack overflows.
pub const MAX_BATCH_DEPTH: usize = 4;
/// A batch is flushed early once it reaches this size (the reference's `MAX_BATCH`, 8 MiB).
pub const MAX_BATCH: usize = 8 * 1024 * 1024;

/// A channel of this session. Stays valid until the channel closes; a handle of a closed
/// channel is refused even when its local id was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId {
    slot: u32,
    serial: u64,
}

impl ChannelId {
    /// The local id on the wire (slot + 1).
    pub fn local_id(self) -> u32 {
        self.slot + 1
    }
}

/// What to open: the reference's `createChannel` options that reach the wire.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions<'a> {
    /// Protocol name.
    pub protocol: &'a str,
    /// Pairing id (`None` and an empty id are the same).
    pub id: Option<&'a [u8]>,
    /// How many message types the channel has (`addMessage` count); others are ignored.
    pub message_types: u32,
    /// Handshake bytes appended to the open (empty: no handshake encoding).
    pub handshake: &'a [u8],
    /// Refuse a second open channel with the same protocol and id (the reference default).
    pub unique: bool,
}

impl<'a> ChannelOptions<'a> {
    /// A unique channel without handshake.
    pub fn new(protocol: &'a str, id: Option<&'a [u8]>, message_types: u32) -> Self {
        ChannelOptions {
            protocol,
            id,
            message_types,
            handshake: &[],
            unique: true,
        }
    }
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// Both sides opened the channel.
    Opened {
        /// The channel.
        channel: ChannelId,
        /// Its protocol (what a handler accepted, or what was opened here).
        protocol: String,
        /// Its pairing id.
        id: Option<Vec<u8>>,
        /// The peer's handshake bytes (empty without one).
        handshake: Vec<u8>,
    },
    /// A message on an opened channel.
    Message {
        /// The channel.
        channel: ChannelId,
        /// Its type (below the channel's `message_types`).
        message_type: u32,
        /// The encoded message (everything after the type; decoders ignore trailing bytes).
        body: Vec<u8>,
    },
    /// The channel closed: by the peer's close or reject or the session's end (`remote`), or
    /// by [`Mux::close`].
    Closed {
        /// The channel.
        channel: ChannelId,
        /// Whether the peer (or the session's end) closed it.
        remote: bool,
    },
}

/// How an accepted open's channel is set up (the rest of [`ChannelOptions`]: protocol and id
/// are the peer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// Message types of the channel.
    pub message_types: u32,
    /// Handshake bytes of our open.
    pub handshake: Vec<u8>,
    /// Refuse it if a channel of the key is open already.
    pub unique: bool,
}

impl Accept {
    /// A unique channel with `message_types` types and no handshake.
    pub fn new(message_types: u32) -> Self {
        Accept {
            message_types,
            handshake: Vec::new(),
            unique: true,
        }
    }
}

/// Decides on a peer's open nobody waits for: `(protocol, id)` → accept or decline.
pub type OpenHandler<'a> = dyn FnMut(&str, Option<&[u8]>) -> Option<Accept> + 'a;

type Key = (String, Option<Vec<u8>>);

fn key_of(protocol: &str, id: Option<&[u8]>) -> Key {
    (
        String::from(protocol),
        id.filter(|i| !i.is_empty()).map(<[u8]>::to_vec),
    )
}

/// Per `(protocol, id)`: the reference's `info`.
#[derive(Debug, Default)]
struct Info {
    /// Local channels of this key not closed.
    opened: u32,
    /// Open requests not yet settled.
    pairing: u32,
    /// Remote ids of opens nobody answered yet, oldest first.
    incoming: VecDeque<u32>,
    /// Local ids of opens the peer has not answered yet, oldest first.
    outgoing: VecDeque<u32>,
}

#[derive(Debug)]
struct Local {
    serial: u64,
    key: Key,
    message_types: u32,
    /// 0 until the peer opened its side.
    remote_id: u32,
}

#[derive(Debug)]
enum Remote {
    /// Opened by the peer, not (fully) answered: its handshake and its early messages
    /// (`uint type ‖ uint len ‖ body` each). `slot` is the local channel that accepted it,
    /// which opens fully once the current frame is done (the reference's `_fullyOpenSoon`).
    Waiting {
        slot: Option<u32>,
        handshake: Vec<u8>,
        pending: Vec<u8>,
    },
    /// Paired with a local slot.
    Paired { slot: u32 },
}

/// One Protomux session over one framed stream.
#[derive(Debug, Default)]
pub struct Mux {
    local: Vec<Option<Local>>,
    free: Vec<u32>,
    remote: Vec<Option<Remote>>,
    infos: BTreeMap<Key, Info>,
    handlers: BTreeSet<Key>,
    next_serial: u64,
    corked: u32,
    batch: BatchWriter,
    /// Corks taken because a received batch had several entries, released when the events it
    /// caused are drained (the reference uncorks when their handlers settle).
    auto_corks: u32,
    /// Keys of open requests the handler saw during the current frame, settled at its end.
    to_settle: Vec<Key>,
    /// Remote ids of accepted opens that open fully at the end of the current call.
    opening: Vec<u32>,
    events: VecDeque<MuxEvent>,
    frames: VecDeque<Vec<u8>>,
    in_frame: bool,
    destroyed: bool,
}

impl Mux {
    /// A session with no channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the session ended ([`Mux::shutdown`] or a bad frame).
    pub fn is_destroyed(&self) -> bool {
        self.destroyed
    }

    /// Bytes of early messages held for peer opens not answered yet. Zero between calls: they
    /// never outlive the frame that carried them (see the module documentation).
    pub fn early_message_bytes(&self) -> usize {
        self.remote
            .iter()
            .map(|r| match r {
                Some(Remote::Waiting { pending, .. }) => pending.len(),
                _ => 0,
            })
            .sum()
    }

    /// Whether no local channel exists (`isIdle`).
    pub fn is_idle(&self) -> bool {
        self.local.len() == self.free.len()
    }

    /// Let the open handler of [`Mux::handle_frame_with`] decide on the peer's opens of
    /// `protocol` with this id (`None`: with any id) that no local channel waits for
    /// (`mux.pair`). An open nobody registered for is rejected at once; one the handler
    /// declines is rejected at the end of the frame (the reference rejects once its `notify`
    /// returned without creating the channel).
    pub fn pair(&mut self, protocol: &str, id: Option<&[u8]>) {
        self.handlers.insert(key_of(protocol, id));
    }

    /// Remove a handler registered with [`Mux::pair`].
    pub fn unpair(&mut self, protocol: &str, id: Option<&[u8]>) {
        self.handlers.remove(&key_of(protocol, id));
    }

    fn live(&self, ch: ChannelId) -> Option<&Local> {
        self.local
            .get(ch.slot as usize)?
            .as_ref()
            .filter(|l| l.serial == ch.serial)
    }

    /// Whether the channel is open on both sides.
    pub fn is_opened(&self, ch: ChannelId) -> bool {
        self.live(ch).is_some_and(|l| l.remote_id != 0)
    }

    /// Whether the channel exists (opened or waiting for the peer) and is not closed.
    pub fn is_live(&self, ch: ChannelId) -> bool {
        self.live(ch).is_some()
    }

    /// Whether a local channel with this protocol and id is open (`mux.opened`).
    pub fn opened(&self, protocol: &str, id: Option<&[u8]>) -> bool {
        self.infos
            .get(&key_of(protocol, id))
            .is_some_and(|i| i.opened > 0)
    }

    /// Create and open a channel (`createChannel` + `open`): pairs with the peer's oldest
    /// unanswered open of the same key if there is one, else waits for the peer's open.
    pub fn open_channel(&mut self, opts: ChannelOptions<'_>) -> Result<ChannelId, ChannelError> {
        if self.destroyed {
            return Err(ChannelError::Destroyed);
        }
        let key = key_of(opts.protocol, opts.id);
        if opts.unique && self.infos.get(&key).is_some_and(|i| i.opened > 0) {
            return Err(ChannelError::Duplicate);
        }
        if self.free.is_empty() && self.local.len() >= MAX_LOCAL_CHANNELS {
            return Err(ChannelError::TooManyChannels);
        }
        // The peer's oldest open of this key that is still waiting, if any.
        let mut incoming = None;
        if let Some(info) = self.infos.get_mut(&key) {
            while let Some(rid) = info.incoming.pop_front() {
                if let Some(Some(Remote::Waiting { .. })) = self.remote.get(rid as usize - 1) {
                    incoming = Some(rid);
                    break;
                }
            }
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.local.push(None);
                (self.local.len() - 1) as u32
            }
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let local_id = slot + 1;
        let info = self.infos.entry(key.clone()).or_default();
        info.opened += 1;
        if incoming.is_none() {
            info.outgoing.push_back(local_id);
        }
        self.local[slot as usize] = Some(Local {
            serial,
            key,
            message_types: opts.message_types,
            remote_id: incoming.unwrap_or(0),
        });
        let mut body = Vec::new();
        {
            let mut w = Writer::new(&mut body);
            w.uint(u64::from(local_id));
            w.utf8(opts.protocol);
            w.buffer(opts.id.unwrap_or(&[]));
            w.bytes(opts.handshake);
        }
        self.write_control(TYPE_OPEN, &body);
        let ch = ChannelId { slot, serial };
        if let Some(rid) = incoming {
            if let Some(Some(Remote::Waiting { slot: s, .. })) =
                self.remote.get_mut(rid as usize - 1)
            {
                *s = Some(slot);
            }
            self.opening.push(rid);
            if !self.in_frame {
                self.finish_opens();
            }
        }
        Ok(ch)
    }

    /// Accepted opens become open: the event, then their early messages (`_fullyOpen`).
    fn finish_opens(&mut self) {
        for rid in core::mem::take(&mut self.opening) {
            let Some(entry) = self.remote.get_mut(rid as usize - 1) else {
                continue;
            };
            let Some(Remote::Waiting {
                slot: Some(slot), ..
            }) = entry
            else {
                continue; // closed or rejected meanwhile
            };
            let slot = *slot;
            let Some(local) = self.local.get(slot as usize).and_then(Option::as_ref) else {
                continue;
            };
            let (ch, message_types, key) = (
                ChannelId {
                    slot,
                    serial: local.serial,
                },
                local.message_types,
                local.key.clone(),
            );
            if let Some(Remote::Waiting {
                handshake, pending, ..
            }) = entry.replace(Remote::Paired { slot })
            {
                self.events.push_back(MuxEvent::Opened {
                    channel: ch,
                    protocol: key.0,
                    id: key.1,
                    handshake,
                });
                self.drain_pending(ch, message_types, &pending);
            }
        }
    }

    /// Deliver early messages once their channel is open (`_drain`).
    fn drain_pending(&mut self, ch: ChannelId, message_types: u32, pending: &[u8]) {
        let mut r = Reader::new(pending);
        while !r.remaining().is_empty() {
            // Written by `buffer_message`, so these reads succeed.
            let (Ok(message_type), Ok(body)) = (r.uint(), r.buffer()) else {
                break;
            };
            if message_type < u64::from(message_types) {
                self.events.push_back(MuxEvent::Message {
                    channel: ch,
                    message_type: message_type as u32,
                    body: body.to_vec(),
                });
            }
        }
    }

    /// Send message `message_type` of the channel (before or after the peer opened it: the
    /// peer buffers early messages).
    pub fn send(
        &mut self,
        ch: ChannelId,
        message_type: u32,
        body: &[u8],
    ) -> Result<(), ChannelError> {
        if self.destroyed {
            return Err(ChannelError::Destroyed);
        }
        let local = self.live(ch).ok_or(ChannelError::Closed)?;
        if message_type >= local.message_types {
            return Err(ChannelError::UnknownMessageType(message_type));
        }
        let channel = u64::from(ch.local_id());
        if self.corked > 0 {
            self.push_batch(channel, u64::from(message_type), body);
        } else {
            let mut out = Vec::new();
            frame::encode_message(&mut out, channel, u64::from(message_type), body);
            self.frames.push_back(out);
        }
        Ok(())
    }

    /// Close the channel (one-way, unanswered). Emits [`MuxEvent::Closed`] with `remote =
    /// false`. A closed or stale handle is ignored.
    pub fn close(&mut self, ch: ChannelId) {
        if self.destroyed || self.live(ch).is_none() {
            return;
        }
        let mut body = Vec::new();
        Writer::new(&mut body).uint(u64::from(ch.local_id()));
        self.close_local(ch.slot, false);
        self.write_control(TYPE_CLOSE, &body);
    }

    /// Start collecting frames into one batch (nests).
    pub fn cork(&mut self) {
        self.corked += 1;
    }

    /// End a [`Mux::cork`]; the last one sends the batch.
    pub fn uncork(&mut self) {
        if self.corked == 0 {
            return;
        }
        self.corked -= 1;
        if self.corked == 0 {
            if let Some(f) = self.batch.take() {
                self.frames.push_back(f);
            }
        }
    }

    fn push_batch(&mut self, channel: u64, message_type: u64, body: &[u8]) {
        if self.batch.len() >= MAX_BATCH {
            if let Some(f) = self.batch.take() {
                self.frames.push_back(f);
            }
        }
        self.batch.push(channel, message_type, body);
    }

    /// A control message: its own frame, or an entry of the current batch (`_write0`).
    fn write_control(&mut self, message_type: u64, body: &[u8]) {
        if self.corked > 0 {
            self.push_batch(0, message_type, body);
        } else {
            let mut out = Vec::with_capacity(2 + body.len());
            frame::encode_message(&mut out, 0, message_type, body);
            self.frames.push_back(out);
        }
    }

    /// The next frame to write to the stream, one stream message each.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    /// The next event. Once every event is drained, the replies to a received batch (sent
    /// while handling its events) go out as one batch, as the reference answers a batch.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        let ev = self.events.pop_front();
        if ev.is_none() {
            while self.auto_corks > 0 {
                self.auto_corks -= 1;
                self.uncork();
            }
        }
        ev
    }

    /// The protocol and id of a live channel.
    pub fn channel_key(&self, ch: ChannelId) -> Option<(&str, Option<&[u8]>)> {
        self.live(ch)
            .map(|l| (l.key.0.as_str(), l.key.1.as_deref()))
    }

    /// An open request's handler returned (`_requestSession` after `await notify`): when no
    /// other request of the key is outstanding, reject every open still waiting.
    fn settle(&mut self, key: &Key) {
        let Some(info) = self.infos.get_mut(key) else {
            return;
        };
        info.pairing = info.pairing.saturating_sub(1);
        if info.pairing > 0 {
            return;
        }
        let rejected: Vec<u32> = info.incoming.drain(..).collect();
        for rid in rejected {
            if let Some(slot) = self.remote.get_mut(rid as usize - 1) {
                *slot = None;
            }
            let mut body = Vec::new();
            Writer::new(&mut body).uint(u64::from(rid));
            self.write_control(TYPE_REJECT, &body);
        }
        self.gc(key);
    }

    fn gc(&mut self, key: &Key) {
        if self.infos.get(key).is_some_and(|i| {
            i.opened == 0 && i.outgoing.is_empty() && i.incoming.is_empty() && i.pairing == 0
        }) {
            self.infos.remove(key);
        }
    }

    /// A local channel closes (`Channel._close`).
    fn close_local(&mut self, slot: u32, remote: bool) {
        let Some(local) = self.local.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        if let Some(info) = self.infos.get_mut(&local.key) {
            info.opened = info.opened.saturating_sub(1);
        }
        if local.remote_id > 0 {
            if let Some(r) = self.remote.get_mut(local.remote_id as usize - 1) {
                *r = None;
            }
            self.free.push(slot);
        }
        // Otherwise the id stays taken until the peer opens or rejects it.
        self.gc(&local.key);
        self.events.push_back(MuxEvent::Closed {
            channel: ChannelId {
                slot,
                serial: local.serial,
            },
            remote,
        });
    }

    /// The stream closed: every channel closes with `remote = true` (`_shutdown`); later
    /// frames are refused.
    pub fn shutdown(&mut self) {
        if self.destroyed {
            return;
        }
        self.destroyed = true;
        for slot in 0..self.local.len() as u32 {
            self.close_local(slot, true);
        }
        self.remote.clear();
        self.infos.clear();
        self.to_settle.clear();
        self.opening.clear();
        self.in_frame = false;
        self.batch = BatchWriter::new();
        self.frames.clear();
    }

    /// One message of the stream, with no open handler (every unmatched open is rejected).
    pub fn handle_frame(&mut self, bytes: &[u8]) -> Result<(), ProtomuxError> {
        self.handle_frame_with(bytes, &mut |_, _| None)
    }

    /// One message of the stream. An empty one is ignored. An error ends the session (every
    /// channel closes): the owner destroys the stream, as the reference does.
    ///
    /// `on_open` decides, at the point of the frame where it arrives, on a peer's open that no
    /// local channel waits for and that [`Mux::pair`] registered: `Some` opens the channel at
    /// once (so its local id is the one the reference's synchronous `notify` would take).
    pub fn handle_frame_with(
        &mut self,
        bytes: &[u8],
        on_open: &mut OpenHandler<'_>,
    ) -> Result<(), ProtomuxError> {
        if self.destroyed {
            return Err(ProtomuxError::Destroyed);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.in_frame = true;
        let result = Reader::new(bytes)
            .uint()
            .map_err(ProtomuxError::from)
            .and_then(|channel| {
                let rest = &bytes[crate::wire::uint_len(channel)..];
                self.dispatch(channel, rest, 0, on_open)
            });
        self.in_frame = false;
        if result.is_err() {
            self.shutdown();
            return result;
        }
        self.finish_opens();
        for key in core::mem::take(&mut self.to_settle) {
            self.settle(&key);
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        channel: u64,
        rest: &[u8],
        depth: usize,
        on_open: &mut OpenHandler<'_>,
    ) -> Result<(), ProtomuxError> {
        match Frame::decode_on(channel, rest)? {
            Frame::Message {
                channel,
                message_type,
                body,
            } => {
                self.on_message(channel, message_type, body);
                Ok(())
            }
            Frame::Batch(mut entries) => {
                if depth >= MAX_BATCH_DEPTH {
                    return Err(ProtomuxError::BatchTooDeep);
                }
                let mut corked = false;
                while let Some((ch, entry)) = entries.next_entry()? {
                    if entries.has_more() && !corked {
                        corked = true;
                        self.cork();
                        self.auto_corks += 1;
                    }
                    self.dispatch(ch, entry, depth + 1, on_open)?;
                }
                Ok(())
            }
            Frame::Open(open) => self.on_open(open, on_open),
            Frame::Reject { local_id } => self.on_reject(local_id),
            Frame::Close { local_id } => {
                self.on_close(local_id);
                Ok(())
            }
            Frame::UnknownControl { .. } => Ok(()),
        }
    }

    fn on_message(&mut self, channel: u64, message_type: u64, body: &[u8]) {
        let Some(Some(remote)) = usize::try_from(channel - 1)
            .ok()
            .and_then(|i| self.remote.get_mut(i))
        else {
            return; // an unknown or closed channel: ignored
        };
        match remote {
            Remote::Waiting { pending, .. } => {
                let mut w = Writer::new(pending);
                w.uint(message_type);
                w.buffer(body);
            }
            Remote::Paired { slot } => {
                let slot = *slot;
                if let Some(local) = self.local.get(slot as usize).and_then(Option::as_ref) {
                    if message_type < u64::from(local.message_types) {
                        self.events.push_back(MuxEvent::Message {
                            channel: ChannelId {
                                slot,
                                serial: local.serial,
                            },
                            message_type: message_type as u32,
                            body: body.to_vec(),
                        });
                    }
                }
            }
        }
    }

    fn on_open(
        &mut self,
        open: Open<'_>,
        on_open: &mut OpenHandler<'_>,
    ) -> Result<(), ProtomuxError> {
        if open.local_id == 0 {
            return Err(ProtomuxError::OpenOfControlChannel);
        }
        let rid = usize::try_from(open.local_id - 1).unwrap_or(usize::MAX);
        if rid == self.remote.len() {
            if rid >= MAX_REMOTE_CHANNELS {
                return Err(ProtomuxError::TooManyRemoteChannels);
            }
            self.remote.push(None);
        }
        if rid >= self.remote.len() || self.remote[rid].is_some() {
            return Err(ProtomuxError::InvalidOpen(open.local_id));
        }
        let remote_id = open.local_id as u32; // ≤ MAX_REMOTE_CHANNELS
        let protocol = String::from_utf8_lossy(open.protocol).into_owned();
        let key: Key = (protocol, open.id.map(<[u8]>::to_vec));
        let info = self.infos.entry(key.clone()).or_default();
        if let Some(local_id) = info.outgoing.pop_front() {
            let slot = local_id - 1;
            match self.local.get_mut(slot as usize).and_then(Option::as_mut) {
                None => {
                    // We closed it before the peer's open arrived: the id is free now.
                    self.free.push(slot);
                    self.gc(&key);
                }
                Some(local) => {
                    local.remote_id = remote_id;
                    let channel = ChannelId {
                        slot,
                        serial: local.serial,
                    };
                    self.remote[rid] = Some(Remote::Paired { slot });
                    self.events.push_back(MuxEvent::Opened {
                        channel,
                        protocol: key.0.clone(),
                        id: key.1.clone(),
                        handshake: open.handshake.to_vec(),
                    });
                }
            }
            return Ok(());
        }
        self.remote[rid] = Some(Remote::Waiting {
            slot: None,
            handshake: open.handshake.to_vec(),
            pending: Vec::new(),
        });
        info.pairing += 1;
        info.incoming.push_back(remote_id);
        let handled = self.handlers.contains(&key)
            || (key.1.is_some() && self.handlers.contains(&(key.0.clone(), None)));
        if handled {
            if let Some(accept) = on_open(&key.0, key.1.as_deref()) {
                let opts = ChannelOptions {
                    protocol: &key.0,
                    id: key.1.as_deref(),
                    message_types: accept.message_types,
                    handshake: &accept.handshake,
                    unique: accept.unique,
                };
                // A refused channel (a unique duplicate) is the reference's null
                // `createChannel`: the open is rejected when the request settles.
                let _ = self.open_channel(opts);
            }
            self.to_settle.push(key);
        } else {
            self.settle(&key);
        }
        Ok(())
    }

    fn on_reject(&mut self, local_id: u64) -> Result<(), ProtomuxError> {
        let found = self.infos.iter_mut().find_map(|(key, info)| {
            let i = info
                .outgoing
                .iter()
                .position(|&l| u64::from(l) == local_id)?;
            info.outgoing.remove(i);
            Some(key.clone())
        });
        let Some(key) = found else {
            return Err(ProtomuxError::InvalidReject(local_id));
        };
        let slot = (local_id - 1) as u32;
        self.free.push(slot);
        if self.local.get(slot as usize).is_some_and(Option::is_some) {
            // Freed above, so `close_local` must not free it again: it has no remote id.
            self.close_local(slot, true);
        }
        self.gc(&key);
        Ok(())
    }

    fn on_close(&mut self, local_id: u64) {
        if local_id == 0 {
            return;
        }
        let slot = match usize::try_from(local_id - 1)
            .ok()
            .and_then(|i| self.remote.get(i))
        {
            Some(Some(Remote::Paired { slot })) => *slot,
            // Accepted, not fully open yet: the reference's session is already set.
            Some(Some(Remote::Waiting {
                slot: Some(slot), ..
            })) => *slot,
            _ => return,
        };
        self.close_local(slot, true);
    }
}

impl MuxEvent {
    /// The channel the event is about.
    pub fn channel(&self) -> ChannelId {
        match self {
            MuxEvent::Opened { channel, .. }
            | MuxEvent::Message { channel, .. }
            | MuxEvent::Closed { channel, .. } => *channel,
        }
    }
}

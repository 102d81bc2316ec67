//! [`SecretStream`]: the byte-level state machine of `NoiseSecretStream` with a given handshake.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crypto_secretstream::aead::{self, Buffer};
use crypto_secretstream::{Header, Key, PullStream, PushStream, Tag};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::config::{Config, HandshakeKeys};
use super::error::{MessageDropped, SecretStreamError};
use super::frame::{
    frame_body_len, ABYTES, HEADER_FRAME_LEN, ID_HEADER_LEN, MAX_FRAME_LEN, MAX_WRITE,
};
use super::keys::stream_id;
use super::unordered::{KeySource, Unordered, COUNTER_LEN};
use crate::time::Instant;

/// Buffers that grew past this for one large frame are released once the frame is done, so a
/// single big message does not pin its memory for the life of the stream.
const RETAIN_CAPACITY: usize = 128 * 1024;

/// An [`aead::Buffer`] over the tail `vec[start..]` of a `Vec`: lets the secretstream crate
/// encrypt or decrypt a frame in place inside the caller's output buffer.
struct TailBuf<'a> {
    vec: &'a mut Vec<u8>,
    start: usize,
}

impl AsRef<[u8]> for TailBuf<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.vec[self.start..]
    }
}

impl AsMut<[u8]> for TailBuf<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..]
    }
}

impl Buffer for TailBuf<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> aead::Result<()> {
        self.vec.extend_from_slice(other);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.vec.truncate(self.start + len);
    }
}

/// Where decrypted messages go.
enum Sink<'a> {
    /// Plaintext appended to one byte buffer (message boundaries are not kept).
    Bytes(&'a mut Vec<u8>),
    /// One call per message.
    Messages(&'a mut dyn FnMut(&[u8])),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Both directions ended gracefully.
    Closed,
    /// Destroyed locally (`None`) or by a fatal error.
    Destroyed(Option<SecretStreamError>),
}

/// One side of a `@hyperswarm/secret-stream` over a reliable byte transport (a UDX stream),
/// with the handshake result given (hyperdht's way: no Noise message on the stream).
///
/// Sans-IO and transport-independent: bytes in through [`read`](Self::read) /
/// [`read_messages`](Self::read_messages), bytes out appended to caller-owned buffers by
/// [`poll_transmit`](Self::poll_transmit), [`write`](Self::write) and [`end`](Self::end); time
/// only through the `now` arguments and [`poll_timeout`](Self::poll_timeout) /
/// [`handle_timeout`](Self::handle_timeout); unordered messages through
/// [`send_message`](Self::send_message) / [`open_message`](Self::open_message). See the module
/// documentation for what the driver must do with each.
pub struct SecretStream {
    is_initiator: bool,
    public_key: [u8; 32],
    remote_public_key: [u8; 32],
    /// (The stream ids are not kept: both derive from `hash`.)
    hash: [u8; 64],

    push: PushStream,
    pull: Option<PullStream>,
    /// Until our header frame is sent and the peer's has arrived (boxed and then freed: an
    /// idle connection does not carry it).
    header: Option<Box<PendingHeader>>,
    keepalive_pending: bool,
    unordered: Unordered,

    // Frame reader.
    len_buf: [u8; 3],
    len_have: usize,
    /// Length of the frame whose body is being read.
    frame_len: Option<usize>,
    /// Body bytes of an incomplete frame (never more than `frame_len`).
    partial: Vec<u8>,
    /// Decryption space for [`Sink::Messages`] when a frame arrives whole.
    scratch: Vec<u8>,
    max_frame_len: usize,
    filter_empty: bool,

    // Timers.
    keep_alive: Option<Duration>,
    keepalive_at: Option<Instant>,
    timeout: Option<Duration>,
    idle_at: Option<Instant>,

    local_ended: bool,
    remote_ended: bool,
    state: State,

    raw_bytes_read: u64,
    raw_bytes_written: u64,
}

impl fmt::Debug for SecretStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStream")
            .field("is_initiator", &self.is_initiator)
            .field("state", &self.state)
            .field("remote_header_received", &self.pull.is_some())
            .field("local_ended", &self.local_ended)
            .field("remote_ended", &self.remote_ended)
            .finish_non_exhaustive()
    }
}

/// The header exchange's state.
struct PendingHeader {
    /// `38 00 00 ‖ local id ‖ secretstream header`.
    frame: [u8; HEADER_FRAME_LEN],
    /// Not yet handed to [`SecretStream::poll_transmit`].
    unsent: bool,
    /// Key of the pull state until the peer's header frame arrives (`None` after).
    rx_key: Option<[u8; 32]>,
}

impl Drop for PendingHeader {
    fn drop(&mut self) {
        if let Some(k) = self.rx_key.as_mut() {
            k.zeroize();
        }
    }
}

fn nonzero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

/// Grows `v` so that `additional` more bytes fit, never past `limit` bytes of capacity
/// (amortised doubling below it).
fn reserve_bounded(v: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = v.len() + additional;
    if needed > v.capacity() {
        let target = needed
            .max(v.capacity().saturating_mul(2))
            .min(limit)
            .max(needed);
        v.reserve_exact(target - v.len());
    }
}

fn release_if_large(v: &mut Vec<u8>) {
    v.clear();
    if v.capacity() > RETAIN_CAPACITY {
        *v = Vec::new();
    }
}

impl SecretStream {
    /// Starts a secret stream (`new NoiseSecretStream(isInitiator, raw, { handshake })` +
    /// `start`). Draws the 24-byte secretstream header and then the 8-byte initial
    /// unordered-message counter from `rng`, in that order (as the reference does), queues the
    /// 59-byte header frame for [`poll_transmit`](Self::poll_transmit) and arms the keep-alive
    /// and timeout timers from `now`.
    pub fn new<R: RngCore + CryptoRng>(
        is_initiator: bool,
        handshake: &HandshakeKeys,
        config: &Config,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        let (header, push) = PushStream::init(&mut *rng, &Key::from(handshake.tx));
        let mut counter = [0u8; COUNTER_LEN];
        rng.fill_bytes(&mut counter);

        let local_id = stream_id(&handshake.hash, is_initiator);
        let mut header_frame = [0u8; HEADER_FRAME_LEN];
        header_frame[..3].copy_from_slice(&(ID_HEADER_LEN as u32).to_le_bytes()[..3]);
        header_frame[3..35].copy_from_slice(&local_id);
        header_frame[35..].copy_from_slice(header.as_ref());

        let unordered = Unordered::new(counter);

        let keep_alive = nonzero(config.keep_alive);
        let timeout = nonzero(config.timeout);
        SecretStream {
            is_initiator,
            public_key: handshake.public_key,
            remote_public_key: handshake.remote_public_key,
            hash: handshake.hash,
            push,
            pull: None,
            header: Some(Box::new(PendingHeader {
                frame: header_frame,
                unsent: true,
                rx_key: Some(handshake.rx),
            })),
            keepalive_pending: false,
            unordered,
            len_buf: [0; 3],
            len_have: 0,
            frame_len: None,
            partial: Vec::new(),
            scratch: Vec::new(),
            max_frame_len: config.max_frame_len.clamp(ID_HEADER_LEN, MAX_FRAME_LEN),
            filter_empty: config.filter_empty_messages || keep_alive.is_some(),
            keep_alive,
            keepalive_at: keep_alive.map(|d| now + d),
            timeout,
            idle_at: timeout.map(|d| now + d),
            local_ended: false,
            remote_ended: false,
            state: State::Open,
            raw_bytes_read: 0,
            raw_bytes_written: 0,
        }
    }

    // ---------------------------------------------------------------- accessors

    /// True on the side that initiated the Noise handshake (the client).
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// Own static public key, as given.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The peer's static public key, as given.
    pub fn remote_public_key(&self) -> &[u8; 32] {
        &self.remote_public_key
    }

    /// The 64-byte Noise handshake hash.
    pub fn handshake_hash(&self) -> &[u8; 64] {
        &self.hash
    }

    /// This side's stream id (sent in its header frame).
    pub fn local_id(&self) -> [u8; 32] {
        stream_id(&self.hash, self.is_initiator)
    }

    /// The stream id expected in the peer's header frame (derived from the handshake hash).
    pub fn remote_id(&self) -> [u8; 32] {
        stream_id(&self.hash, !self.is_initiator)
    }

    /// This side's header frame (59 bytes): what [`poll_transmit`](Self::poll_transmit) emits
    /// first. `None` once it was sent and the peer's has arrived (it is not kept after).
    pub fn header_frame(&self) -> Option<&[u8; HEADER_FRAME_LEN]> {
        self.header.as_ref().map(|h| &h.frame)
    }

    /// Frees the header state once both header frames are done.
    fn release_header(&mut self) {
        if self
            .header
            .as_ref()
            .is_some_and(|h| !h.unsent && h.rx_key.is_none())
        {
            self.header = None;
        }
    }

    /// Whether the peer's header frame has arrived (its messages can be decrypted).
    pub fn remote_header_received(&self) -> bool {
        self.pull.is_some()
    }

    /// Neither destroyed nor closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Both directions ended gracefully.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Destroyed, locally or by a fatal error.
    pub fn is_destroyed(&self) -> bool {
        matches!(self.state, State::Destroyed(_))
    }

    /// The fatal error that destroyed the stream, if any (`None` also after a local
    /// [`destroy`](Self::destroy)).
    pub fn error(&self) -> Option<SecretStreamError> {
        match self.state {
            State::Destroyed(e) => e,
            _ => None,
        }
    }

    /// Open and not ended locally: [`write`](Self::write) is accepted.
    pub fn is_writable(&self) -> bool {
        self.state == State::Open && !self.local_ended
    }

    /// Open and the transport has not ended: more data may arrive.
    pub fn is_readable(&self) -> bool {
        self.state == State::Open && !self.remote_ended
    }

    /// Bytes of message frames received (length prefixes and the header frame excluded; the
    /// reference's `rawBytesRead`).
    pub fn raw_bytes_read(&self) -> u64 {
        self.raw_bytes_read
    }

    /// Bytes of message frames written, length prefixes included (header frame excluded; the
    /// reference's `rawBytesWritten`).
    pub fn raw_bytes_written(&self) -> u64 {
        self.raw_bytes_written
    }

    /// Capacity currently held by the frame reader's buffers: never more than twice the
    /// configured `max_frame_len`, and at most 256 KiB between frames.
    pub fn buffered_capacity(&self) -> usize {
        self.partial.capacity() + self.scratch.capacity()
    }

    /// The largest frame the reader accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    // ---------------------------------------------------------------- timers

    /// Changes the keep-alive interval (`setKeepAlive`): restarts the timer from `now`; `None`
    /// or zero stops it. A non-zero interval also turns on the filtering of empty messages (for
    /// good, as in the reference).
    pub fn set_keep_alive(&mut self, interval: Option<Duration>, now: Instant) {
        self.keep_alive = nonzero(interval);
        self.keepalive_pending = false;
        if self.keep_alive.is_some() {
            self.filter_empty = true;
        }
        self.keepalive_at = match self.keep_alive {
            Some(d) if self.is_writable() => Some(now + d),
            _ => None,
        };
    }

    /// Changes the inactivity timeout (`setTimeout`): restarts it from `now`; `None` or zero
    /// stops it.
    pub fn set_timeout(&mut self, timeout: Option<Duration>, now: Instant) {
        self.timeout = nonzero(timeout);
        self.idle_at = match self.timeout {
            Some(d) if self.is_open() => Some(now + d),
            _ => None,
        };
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != State::Open {
            return None;
        }
        match (self.keepalive_at, self.idle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`.
    ///
    /// * Inactivity timeout (no transport data for `timeout`): destroys the stream and returns
    ///   [`SecretStreamError::TimedOut`].
    /// * Keep-alive (no write for `keep_alive`): queues an empty message frame for
    ///   [`poll_transmit`](Self::poll_transmit) and re-arms for `now + keep_alive`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SecretStreamError> {
        if self.state != State::Open {
            return Ok(());
        }
        if self.idle_at.is_some_and(|t| now >= t) {
            return Err(self.fail(SecretStreamError::TimedOut));
        }
        if let (Some(t), Some(d)) = (self.keepalive_at, self.keep_alive) {
            if now >= t {
                self.keepalive_pending = true;
                self.keepalive_at = Some(now + d);
            }
        }
        Ok(())
    }

    /// Queues an empty message frame now (`sendKeepAlive()`), for
    /// [`poll_transmit`](Self::poll_transmit): hyperswarm pokes a connection this way when it
    /// keeps it over a duplicate, so that a dead one is noticed soon.
    pub fn queue_keep_alive(&mut self) {
        if self.state == State::Open && !self.local_ended {
            self.keepalive_pending = true;
        }
    }

    // ---------------------------------------------------------------- writing

    /// Whether [`poll_transmit`](Self::poll_transmit) would append bytes.
    pub fn has_pending_transmit(&self) -> bool {
        !self.is_destroyed()
            && (self.header.as_ref().is_some_and(|h| h.unsent) || self.keepalive_pending)
    }

    /// Appends the bytes the stream itself wants sent (its header frame, first; a due
    /// keep-alive frame) to `out`. Returns whether anything was appended. Call after
    /// [`new`](Self::new) and after [`handle_timeout`](Self::handle_timeout);
    /// [`write`](Self::write) and [`end`](Self::end) include these bytes themselves.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.is_destroyed() {
            return false;
        }
        let before = out.len();
        if let Some(h) = self.header.as_mut().filter(|h| h.unsent) {
            h.unsent = false;
            out.extend_from_slice(&h.frame);
            self.release_header();
        }
        if self.keepalive_pending {
            self.keepalive_pending = false;
            self.encrypt_frame(&[], out);
        }
        out.len() > before
    }

    /// Encrypts `plain` as one message frame (`uint24le(len + 17) ‖ push(plain, TAG_MESSAGE)`)
    /// and appends it to `out`, preceded by any bytes [`poll_transmit`](Self::poll_transmit)
    /// would have emitted. Refreshes the keep-alive timer.
    ///
    /// An empty `plain` writes an empty frame, which is what a keep-alive is; a byte-stream
    /// front end should not call this for empty writes. At most [`MAX_WRITE`] bytes per call
    /// ([`SecretStreamError::WriteTooLarge`] otherwise); a byte-stream front end cuts larger writes
    /// into frames (64 KiB is a good size).
    pub fn write(
        &mut self,
        plain: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), SecretStreamError> {
        self.check_not_dead()?;
        if self.local_ended {
            return Err(SecretStreamError::WriteAfterEnd);
        }
        if plain.len() > MAX_WRITE {
            return Err(SecretStreamError::WriteTooLarge {
                len: plain.len(),
                max: MAX_WRITE,
            });
        }
        self.poll_transmit(out);
        self.encrypt_frame(plain, out);
        if let Some(d) = self.keep_alive {
            self.keepalive_at = Some(now + d);
        }
        Ok(())
    }

    fn encrypt_frame(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let len = plain.len() + ABYTES;
        out.reserve(3 + len);
        let start = out.len();
        out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        out.extend_from_slice(plain);
        let mut buf = TailBuf {
            vec: out,
            start: start + 3,
        };
        if self.push.push(&mut buf, &[], Tag::Message).is_err() {
            // ChaCha20 only refuses past 256 GiB of keystream per message; a frame is at most
            // 16 MiB. Unreachable, but never emit a half-made frame.
            out.truncate(start);
            return;
        }
        self.raw_bytes_written += (3 + len) as u64;
    }

    /// Ends this side's writing (`end()` → `_final`): stops the keep-alive, appends any
    /// not-yet-transmitted header frame to `out`. The driver sends `out`, then ends the
    /// transport (UDX END). There is no cryptographic end marker.
    pub fn end(&mut self, out: &mut Vec<u8>) -> Result<(), SecretStreamError> {
        self.check_not_dead()?;
        if self.local_ended {
            return Ok(());
        }
        self.keepalive_pending = false;
        self.poll_transmit(out);
        self.local_ended = true;
        self.keepalive_at = None;
        self.keep_alive = None;
        if self.remote_ended {
            self.close();
        }
        Ok(())
    }

    /// Destroys the stream locally (`destroy()`): drops pending output and buffers, stops the
    /// timers. The driver destroys the transport (UDX DESTROY).
    pub fn destroy(&mut self) {
        if !self.is_destroyed() {
            self.state = State::Destroyed(None);
            self.teardown();
        }
    }

    // ---------------------------------------------------------------- reading

    /// Feeds transport bytes (any chunking) and appends the decrypted plaintext to `out`;
    /// returns how many plaintext bytes were appended. Message boundaries are not kept (empty
    /// messages add nothing); use [`read_messages`](Self::read_messages) to see them.
    ///
    /// Refreshes the inactivity timeout. A fatal error destroys the stream; the plaintext of
    /// the frames before the bad one stays in `out`.
    pub fn read(
        &mut self,
        data: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<usize, SecretStreamError> {
        let before = out.len();
        let r = self.read_inner(data, now, &mut Sink::Bytes(out));
        let n = out.len() - before;
        r.map(|()| n)
    }

    /// Feeds transport bytes and calls `on_message` once per decrypted message, in order (the
    /// reference's `data` events). Empty messages are passed on only when empty-message
    /// filtering is off (keep-alive disabled and `filter_empty_messages` false).
    pub fn read_messages<F: FnMut(&[u8])>(
        &mut self,
        data: &[u8],
        now: Instant,
        mut on_message: F,
    ) -> Result<(), SecretStreamError> {
        self.read_inner(data, now, &mut Sink::Messages(&mut on_message))
    }

    /// How much of `data` (the transport bytes that come next) to feed [`read`](Self::read)
    /// so that no frame is cut: `Some(n)` when the stream is between frames — `n` covers the
    /// whole frames at the front of `data` (at least the first, then more while the total
    /// stays within `limit`), 0 if not even the first is complete; `None` in the middle of a
    /// frame (feed anything). A frame given whole is decrypted where it lands in the output
    /// buffer; one cut across calls is first gathered in a buffer of its own, one more copy.
    pub fn whole_frames_len(&self, data: &[u8], limit: usize) -> Option<usize> {
        if self.frame_len.is_some() || self.len_have > 0 {
            return None;
        }
        let mut n = 0;
        while let [a, b, c, ..] = data[n..] {
            let len = 3 + frame_body_len([a, b, c]);
            if data.len() - n < len || (n > 0 && n + len > limit) {
                break;
            }
            n += len;
        }
        Some(n)
    }

    /// The transport's readable side ended (UDX END received, all data delivered). Ending in
    /// the middle of a frame is fatal ([`SecretStreamError::TruncatedFrame`]); ending before the
    /// peer's header frame is a plain end, as in the reference.
    pub fn handle_remote_end(&mut self) -> Result<(), SecretStreamError> {
        self.check_not_dead()?;
        if self.remote_ended {
            return Ok(());
        }
        let pending = if self.frame_len.is_some() {
            3 + self.partial.len()
        } else {
            self.len_have
        };
        if pending > 0 {
            return Err(self.fail(SecretStreamError::TruncatedFrame(pending)));
        }
        self.remote_ended = true;
        if self.local_ended {
            self.close();
        }
        Ok(())
    }

    /// The transport closed. Fine after both directions ended; otherwise the stream is
    /// destroyed with [`SecretStreamError::TransportClosed`] (reference `_onrawclose`). A stream that
    /// is already destroyed stays as it is.
    pub fn handle_transport_closed(&mut self) -> Result<(), SecretStreamError> {
        match self.state {
            State::Open => Err(self.fail(SecretStreamError::TransportClosed)),
            State::Closed | State::Destroyed(_) => Ok(()),
        }
    }

    fn read_inner(
        &mut self,
        mut data: &[u8],
        now: Instant,
        sink: &mut Sink<'_>,
    ) -> Result<(), SecretStreamError> {
        self.check_not_dead()?;
        if self.remote_ended {
            return Err(SecretStreamError::ReadAfterEnd);
        }
        if let Some(d) = self.timeout {
            self.idle_at = Some(now + d);
        }
        while !data.is_empty() {
            match self.frame_len {
                None => {
                    let take = (3 - self.len_have).min(data.len());
                    self.len_buf[self.len_have..self.len_have + take]
                        .copy_from_slice(&data[..take]);
                    self.len_have += take;
                    data = &data[take..];
                    if self.len_have < 3 {
                        break;
                    }
                    self.len_have = 0;
                    let len = frame_body_len(self.len_buf);
                    self.check_frame_len(len)?;
                    self.frame_len = Some(len);
                }
                Some(len) => {
                    if self.partial.is_empty() && data.len() >= len {
                        let (body, rest) = data.split_at(len);
                        data = rest;
                        self.frame_len = None;
                        self.on_frame(Some(body), sink)?;
                    } else {
                        let take = (len - self.partial.len()).min(data.len());
                        reserve_bounded(&mut self.partial, take, len);
                        self.partial.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if self.partial.len() == len {
                            self.frame_len = None;
                            self.on_frame(None, sink)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_frame_len(&mut self, len: usize) -> Result<(), SecretStreamError> {
        let err = if self.pull.is_none() {
            (len != ID_HEADER_LEN).then_some(SecretStreamError::InvalidHeaderLength(len))
        } else if len < ABYTES {
            Some(SecretStreamError::MessageTooShort(len))
        } else if len > self.max_frame_len {
            Some(SecretStreamError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            })
        } else {
            None
        };
        match err {
            Some(e) => Err(self.fail(e)),
            None => Ok(()),
        }
    }

    /// A complete frame body: `Some(body)` borrowed from the input, or `None` for the body
    /// accumulated in `self.partial`.
    fn on_frame(
        &mut self,
        body: Option<&[u8]>,
        sink: &mut Sink<'_>,
    ) -> Result<(), SecretStreamError> {
        let mut partial = core::mem::take(&mut self.partial);
        let r = self.on_frame_inner(body, &mut partial, sink);
        release_if_large(&mut partial);
        if !self.is_destroyed() {
            self.partial = partial;
        }
        r
    }

    fn on_frame_inner(
        &mut self,
        body: Option<&[u8]>,
        partial: &mut Vec<u8>,
        sink: &mut Sink<'_>,
    ) -> Result<(), SecretStreamError> {
        let len = body.map_or(partial.len(), <[u8]>::len);
        if self.pull.is_none() {
            let frame = match body {
                Some(b) => b,
                None => &partial[..],
            };
            return self.on_header(frame);
        }
        self.raw_bytes_read += len as u64;
        let Some(pull) = self.pull.as_mut() else {
            return Ok(());
        };
        let filter = self.filter_empty;

        match (body, sink) {
            // Whole frame in the input, plaintext into the caller's buffer: decrypt in place
            // there.
            (Some(body), Sink::Bytes(out)) => {
                let start = out.len();
                out.extend_from_slice(body);
                if pull.pull(&mut TailBuf { vec: out, start }, &[]).is_err() {
                    out.truncate(start);
                    return Err(self.fail(SecretStreamError::Decrypt));
                }
            }
            (Some(body), Sink::Messages(f)) => {
                let mut scratch = core::mem::take(&mut self.scratch);
                scratch.clear();
                scratch.extend_from_slice(body);
                let ok = pull
                    .pull(
                        &mut TailBuf {
                            vec: &mut scratch,
                            start: 0,
                        },
                        &[],
                    )
                    .is_ok();
                if ok && !(filter && scratch.is_empty()) {
                    f(&scratch);
                }
                release_if_large(&mut scratch);
                self.scratch = scratch;
                if !ok {
                    return Err(self.fail(SecretStreamError::Decrypt));
                }
            }
            // Reassembled frame: decrypt in place in the reassembly buffer.
            (None, sink) => {
                if pull
                    .pull(
                        &mut TailBuf {
                            vec: partial,
                            start: 0,
                        },
                        &[],
                    )
                    .is_err()
                {
                    return Err(self.fail(SecretStreamError::Decrypt));
                }
                match sink {
                    Sink::Bytes(out) => out.extend_from_slice(partial),
                    Sink::Messages(f) => {
                        if !(filter && partial.is_empty()) {
                            f(partial);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_header(&mut self, frame: &[u8]) -> Result<(), SecretStreamError> {
        // The length was checked when the prefix arrived.
        let (id, header) = frame.split_at(32);
        if id != self.remote_id() {
            return Err(self.fail(SecretStreamError::InvalidHeaderId));
        }
        let Ok(header) = Header::try_from(header) else {
            return Err(self.fail(SecretStreamError::InvalidHeaderLength(frame.len())));
        };
        let Some(mut rx_key) = self.header.as_mut().and_then(|h| h.rx_key.take()) else {
            // Torn down (destroyed or closed): there is nothing to set up any more.
            return Ok(());
        };
        self.pull = Some(PullStream::init(header, &Key::from(rx_key)));
        rx_key.zeroize();
        self.release_header();
        Ok(())
    }

    // ---------------------------------------------------------------- unordered messages

    /// What the unordered-message keys derive from.
    fn key_source(&self) -> KeySource<'_> {
        KeySource {
            hash: &self.hash,
            is_initiator: self.is_initiator,
        }
    }

    /// Seals `plain` as an unordered message (`send` / `trySend`) and appends the envelope
    /// (`counter ‖ MAC ‖ ciphertext`, `plain.len() + 24` bytes) to `out`; the driver sends it
    /// as one UDX MESSAGE packet. Works while the stream is open, also after ends.
    pub fn send_message(
        &mut self,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SecretStreamError> {
        self.check_not_dead()?;
        let src = KeySource {
            hash: &self.hash,
            is_initiator: self.is_initiator,
        };
        match self.unordered.seal(src, plain, out) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Opens an unordered message (the payload of a UDX MESSAGE packet) and appends its
    /// plaintext to `out`; returns the plaintext length. Dropped messages leave `out` as it
    /// was and do not affect the stream (the reference drops them silently).
    pub fn open_message(
        &self,
        envelope: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, MessageDropped> {
        if self.state != State::Open {
            return Err(MessageDropped::NotOpen);
        }
        self.unordered.open_into(self.key_source(), envelope, out)
    }

    /// [`open_message`](Self::open_message) in place: decrypts inside `envelope` and returns
    /// the plaintext, `envelope[24..]`.
    pub fn open_message_in_place<'a>(
        &self,
        envelope: &'a mut [u8],
    ) -> Result<&'a mut [u8], MessageDropped> {
        if self.state != State::Open {
            return Err(MessageDropped::NotOpen);
        }
        self.unordered.open_in_place(self.key_source(), envelope)
    }

    // ---------------------------------------------------------------- lifecycle helpers

    fn check_not_dead(&self) -> Result<(), SecretStreamError> {
        match self.state {
            State::Open => Ok(()),
            State::Closed => Err(SecretStreamError::Closed),
            State::Destroyed(_) => Err(SecretStreamError::Destroyed),
        }
    }

    /// Destroys the stream with `e` and returns `e`.
    fn fail(&mut self, e: SecretStreamError) -> SecretStreamError {
        if !self.is_destroyed() {
            self.state = State::Destroyed(Some(e));
            self.teardown();
        }
        e
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.keepalive_at = None;
        self.idle_at = None;
        self.keepalive_pending = false;
        self.partial = Vec::new();
        self.scratch = Vec::new();
    }

    fn teardown(&mut self) {
        self.header = None;
        self.keepalive_pending = false;
        self.keepalive_at = None;
        self.idle_at = None;
        self.frame_len = None;
        self.len_have = 0;
        self.partial = Vec::new();
        self.scratch = Vec::new();
    }
}

impl SecretStream {
    /// [`SecretStream::new`] from the connect layer's handshake result (role included).
    pub fn from_handshake<R: rand_core::RngCore + rand_core::CryptoRng>(
        handshake: &crate::connect::HandshakeResult,
        config: &Config,
        now: crate::Instant,
        rng: &mut R,
    ) -> Self {
        SecretStream::new(
            handshake.is_initiator,
            &HandshakeKeys::from(handshake),
            config,
            now,
            rng,
        )
    }
}

//! A peer's side of blind relaying on its relay connection (blind-relay 1.6.1 `Client`, spec
//! 05 §4, §6.4): the channel `("blind-relay", own public key)` opens at once; each `pair`
//! request is sent without waiting for the relay's open (the relay buffers it); the reply with
//! the same token and role names the relay stream to connect the application stream to.
//!
//! The pairing timeout is hyperdht's (15 s, `RELAY_ABORTED`); blind-relay itself has none.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

use super::error::{PairError, RelayError};
use super::message::{Pair, Token, Unpair, MESSAGE_TYPES, PROTOCOL, TYPE_PAIR, TYPE_UNPAIR};
use crate::protomux::{ChannelId, ChannelOptions, Mux, MuxEvent};
use crate::time::Instant;

/// How long a pairing may take (hyperdht: 15 s from the handshake, `lib/connect.js:812`).
pub const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);
/// Pairing requests pending on one relay connection (the reference has no limit; hyperdht makes
/// one per relay connection).
pub const MAX_REQUESTS: usize = 64;

/// What the client tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// The relay opened its side of the channel.
    Opened,
    /// The relay paired the request: connect the application stream to the relay with this
    /// remote stream id.
    Paired {
        /// The token.
        token: Token,
        /// The role the request had.
        is_initiator: bool,
        /// The relay-side stream id.
        relay_stream_id: u32,
    },
    /// The request ended without a relay stream.
    Failed {
        /// The token.
        token: Token,
        /// Why.
        error: PairError,
    },
    /// The channel closed; every request failed with `error`.
    Closed {
        /// `ChannelClosed` or `ChannelDestroyed`.
        error: PairError,
    },
}

#[derive(Debug, Clone, Copy)]
struct Request {
    is_initiator: bool,
    deadline: Instant,
}

/// One relay connection's blind-relay client.
#[derive(Debug)]
pub struct RelayClient {
    mux: Mux,
    channel: Option<ChannelId>,
    requests: BTreeMap<Token, Request>,
    deadlines: BTreeSet<(Instant, Token)>,
    events: VecDeque<ClientEvent>,
    closed: Option<PairError>,
}

impl RelayClient {
    /// Open the channel with `id` (hyperdht: the public key this peer's relay connection
    /// authenticated with, i.e. the DHT's default key pair).
    pub fn new(id: &[u8]) -> Self {
        let mut mux = Mux::new();
        let channel = mux
            .open_channel(ChannelOptions::new(PROTOCOL, Some(id), MESSAGE_TYPES))
            .ok();
        RelayClient {
            mux,
            channel,
            requests: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            events: VecDeque::new(),
            closed: channel.is_none().then_some(PairError::ChannelClosed),
        }
    }

    /// Whether the channel closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Requests pending.
    pub fn pending(&self) -> usize {
        self.requests.len()
    }

    /// Ask the relay to pair `token` in this role; `stream_id` is the application stream's own
    /// id. The answer is a [`ClientEvent::Paired`] or [`ClientEvent::Failed`].
    pub fn pair(
        &mut self,
        now: Instant,
        is_initiator: bool,
        token: Token,
        stream_id: u32,
    ) -> Result<(), PairError> {
        let (None, Some(ch)) = (self.closed, self.channel) else {
            return Err(self.closed.unwrap_or(PairError::ChannelClosed));
        };
        if self.requests.contains_key(&token) {
            return Err(PairError::AlreadyPairing);
        }
        if self.requests.len() >= MAX_REQUESTS {
            return Err(PairError::TooManyRequests);
        }
        let msg = Pair {
            is_initiator,
            token,
            id: stream_id,
            seq: 0,
        };
        self.mux
            .send(ch, TYPE_PAIR, &msg.to_vec())
            .map_err(|_| PairError::ChannelClosed)?;
        let deadline = now + PAIRING_TIMEOUT;
        self.requests.insert(
            token,
            Request {
                is_initiator,
                deadline,
            },
        );
        self.deadlines.insert((deadline, token));
        Ok(())
    }

    /// Cancel a pairing: the local request fails with `PairingCancelled` and `unpair` is sent
    /// (also for a token with no local request, as the reference does).
    pub fn unpair(&mut self, token: Token) -> Result<(), PairError> {
        let (None, Some(ch)) = (self.closed, self.channel) else {
            return Err(self.closed.unwrap_or(PairError::ChannelClosed));
        };
        if self.finish(&token).is_some() {
            self.events.push_back(ClientEvent::Failed {
                token,
                error: PairError::PairingCancelled,
            });
        }
        let msg = Unpair { token };
        self.mux
            .send(ch, TYPE_UNPAIR, &msg.to_vec())
            .map_err(|_| PairError::ChannelClosed)
    }

    fn finish(&mut self, token: &Token) -> Option<Request> {
        let r = self.requests.remove(token)?;
        self.deadlines.remove(&(r.deadline, *token));
        Some(r)
    }

    /// One message received on the relay connection. On an error the connection must be
    /// destroyed; every request has failed.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), RelayError> {
        if let Err(e) = self.mux.handle_frame(frame) {
            self.close_all(PairError::ChannelClosed);
            return Err(e.into());
        }
        while let Some(ev) = self.mux.poll_event() {
            match ev {
                MuxEvent::Opened { channel, .. } if Some(channel) == self.channel => {
                    self.events.push_back(ClientEvent::Opened);
                }
                MuxEvent::Message {
                    channel,
                    message_type: TYPE_PAIR,
                    body,
                } if Some(channel) == self.channel => match Pair::decode(&body) {
                    Ok(p) => self.on_pair(p),
                    Err(e) => {
                        self.mux.shutdown();
                        self.close_all(PairError::ChannelClosed);
                        return Err(e.into());
                    }
                },
                MuxEvent::Closed { channel, .. } if Some(channel) == self.channel => {
                    self.close_all(PairError::ChannelClosed);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_pair(&mut self, p: Pair) {
        match self.requests.get(&p.token) {
            Some(r) if r.is_initiator == p.is_initiator => {}
            _ => return, // not ours, or the other role: ignored as the reference does
        }
        self.finish(&p.token);
        self.events.push_back(ClientEvent::Paired {
            token: p.token,
            is_initiator: p.is_initiator,
            relay_stream_id: p.id,
        });
    }

    fn close_all(&mut self, error: PairError) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(error);
        let tokens: Vec<Token> = self.requests.keys().copied().collect();
        for token in tokens {
            self.finish(&token);
            self.events.push_back(ClientEvent::Failed { token, error });
        }
        self.events.push_back(ClientEvent::Closed { error });
    }

    /// The relay connection closed: every request fails with `ChannelClosed`.
    pub fn shutdown(&mut self) {
        self.mux.shutdown();
        self.close_all(PairError::ChannelClosed);
    }

    /// Close the channel (sent to the relay) and fail every request with `ChannelDestroyed`.
    pub fn destroy(&mut self) {
        if let Some(ch) = self.channel {
            self.mux.close(ch);
        }
        while self.mux.poll_event().is_some() {}
        self.close_all(PairError::ChannelDestroyed);
    }

    /// Fail requests whose pairing timeout passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, token)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.finish(&token);
            self.events.push_back(ClientEvent::Failed {
                token,
                error: PairError::TimedOut,
            });
        }
    }

    /// The next pairing deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// The next frame to write to the relay connection.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.mux.poll_frame()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

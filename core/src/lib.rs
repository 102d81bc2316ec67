//! `hdht-core`: the HyperDHT protocol as a pure, deterministic state machine.
//!
//! This crate contains **no networking code, no clocks, no threads, no async runtime and no OS
//! randomness**. It consumes datagrams and timer ticks (`handle_datagram`, `handle_timeout`, both
//! given the current time `now`) and produces transmits, timer deadlines, socket commands and
//! events through `poll_transmit`, `poll_timeout`, `poll_socket_command` and `poll_event`
//! ([`dht::DhtNode`] documents the loop). Randomness comes from an RNG the caller
//! injects. Maps iterate in a fixed order. Given the same inputs, a node produces the same
//! outputs byte for byte — which is what lets the simulator replay a whole network from a seed,
//! and what lets the same core run under tokio, smol, the simulator or an embedded loop.
//!
//! Layers, one folder each:
//! - [`wire`]: compact-encoding primitives and dht-rpc messages, bounded and panic-free.
//! - [`crypto`]: BLAKE2b hashing, node ids, Ed25519 key pairs.
//! - [`rpc`]: the dht-rpc node: routing table, tokens, requests in flight, congestion window,
//!   iterative queries, NAT sampler, firewall check, bootstrapping.
//! - [`dht`]: hyperdht — the top-level [`dht::DhtNode`]: records, router, client operations,
//!   and the connect path (client connects, servers, connections) as owned machines.
//! - [`connect`]: Noise IK over Ed25519, handshake payloads, holepunching.
//! - [`udx`]: UDX reliable streams over UDP.
//! - [`secret_stream`]: secret-stream encryption on top of a UDX stream.
#![no_std]
#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod connect;
pub mod crypto;
pub mod dht;
pub mod protomux;
pub mod relay;
pub mod rpc;
pub mod secret_stream;
pub mod swarm;
pub mod time;
mod timer_queue;
pub mod udx;
pub mod wire;

pub use time::Instant;

//! The send loop both runtimes run: it drains the core into a [`SendBatch`] (binding and
//! closing pool sockets first, as the core asks), then sends GSO runs where the kernel takes
//! them. Only how a socket waits to be writable differs per runtime ([`BatchSocket`]).

use std::future::Future;
use std::io;
use std::net::UdpSocket;
use std::sync::Arc;

use hdht_core::rpc::SocketKind;

use crate::pool::{PoolReceiver, PoolSockets};
use crate::udp::{SendBatch, UdpSocketState, UdpTransmit};

/// The IP TTL a socket goes back to after a probe with another one.
const DEFAULT_TTL: u8 = 64;

/// A runtime's UDP socket as the send loop uses it.
pub trait BatchSocket {
    /// Its batched-I/O state (GSO support).
    fn state(&self) -> &UdpSocketState;
    /// Sets the IP TTL of what it sends next.
    fn set_ttl(&self, ttl: u8);
    /// Sends `t` once the socket is writable.
    fn send(&self, t: &UdpTransmit<'_>) -> impl Future<Output = io::Result<()>>;
}

/// Sends everything the core has queued: GSO runs where possible, one lock per batch. Pool
/// sockets are bound (with `open`) as the core asks before the batch that follows, and closed
/// after it (a connection's last datagrams, such as its DESTROY, leave from its socket).
pub async fn flush<S: BatchSocket, T>(
    batch: &mut SendBatch,
    server: &S,
    client: &S,
    pool: &mut PoolSockets<S, T>,
    mut open: impl FnMut(UdpSocket, PoolReceiver) -> io::Result<(Arc<S>, T)>,
) {
    let mut no_gso = false;
    loop {
        let more = pool.fill(batch, &mut open);
        while let Some(socket) = batch.peek(1).map(|g| g.socket) {
            let sock = match socket {
                SocketKind::Server => server,
                SocketKind::Client => client,
                SocketKind::Pool(id) => match pool.get(id) {
                    Some(sock) => sock,
                    None => {
                        // Closed already (or never bound): the datagram is dropped.
                        batch.advance(1);
                        continue;
                    }
                },
            };
            let Some(g) = batch.peek(if no_gso {
                1
            } else {
                sock.state().max_gso_segments()
            }) else {
                break;
            };
            if let Some(ttl) = g.ttl {
                sock.set_ttl(ttl);
            }
            let r = sock.send(&g.transmit()).await;
            if g.ttl.is_some() {
                sock.set_ttl(DEFAULT_TTL);
            }
            let n = g.segments;
            if r.is_err() && n > 1 && !no_gso {
                // The kernel refused the GSO run: send its datagrams one by one from now on.
                tracing::debug!("a GSO send failed; sending datagram by datagram");
                no_gso = true;
                continue;
            }
            // Otherwise a failed send is a lost datagram; the protocol retries.
            if let Err(e) = &r {
                tracing::trace!(error = %e, datagrams = n, "send failed (the protocol retries)");
            }
            batch.advance(n);
        }
        // The batch is out: now the sockets the core closed may go.
        pool.apply_closes();
        if !more {
            break;
        }
    }
}

//! The option objects of the reference's record operations, where they go beyond the dht-rpc
//! query options ([`QueryOptions`]) that every operation takes.

use std::net::SocketAddrV4;

use hdht_core::rpc::QueryOptions;

/// `announce(target, keyPair, relayAddresses, opts)`: what
/// [`DhtHandle::announce_with`](crate::DhtHandle::announce_with) takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceOptions {
    /// `relayAddresses`: where a client may reach us (stored in the record; at most 3 kept).
    pub relay_addresses: Vec<SocketAddrV4>,
    /// `bump`: a Unix time in milliseconds that storing nodes keep as the topic's bump (the
    /// highest seen, at most a minute ahead of their clock) and return with every lookup reply
    /// — how announcers tell readers the topic changed. 0 (the default) bumps nothing.
    pub bump: u64,
    /// The query's options.
    pub query: QueryOptions,
}

/// `mutablePut(keyPair, value, opts)`: what
/// [`DhtHandle::mutable_put_with`](crate::DhtHandle::mutable_put_with) takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MutablePutOptions {
    /// `seq`: the record's sequence number (default 0); a node keeps the highest.
    pub seq: u64,
    /// The query's options.
    pub query: QueryOptions,
}

/// `mutableGet(publicKey, opts)`: what
/// [`DhtHandle::mutable_get_with`](crate::DhtHandle::mutable_get_with) takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableGetOptions {
    /// `seq`: the lowest sequence number wanted (default 0).
    pub seq: u64,
    /// `latest`: ask every node on the way and return the newest record (default `true`, as the
    /// reference); `false` returns the first valid record found.
    pub latest: bool,
    /// The query's options.
    pub query: QueryOptions,
}

impl Default for MutableGetOptions {
    /// The reference's defaults: `seq` 0, `latest` true.
    fn default() -> Self {
        MutableGetOptions {
            seq: 0,
            latest: true,
            query: QueryOptions::default(),
        }
    }
}

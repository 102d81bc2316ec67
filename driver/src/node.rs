//! The core node type every driver runs.

/// The core node type every driver runs.
pub type Node = hdht_core::dht::DhtNode<rand_chacha::ChaCha20Rng>;

// SPDX-License-Identifier: GPL-2.0

//! The driver module of `rslab_mount`: it mounts rslab's library as `slab`.

#[path = "../rust/lib/mod.rs"]
pub mod slab;

/// A node of the driver, allocated from a module-lifetime cache.
pub struct Node {
    /// The node's key.
    pub key: u64,
}

crate::static_cache_allocator!(
    in crate::driver::slab;
    /// Allocates `Node`s from `NODE_CACHE`.
    pub NodeAlloc, NODE_CACHE: Node
);

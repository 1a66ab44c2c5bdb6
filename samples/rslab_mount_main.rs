// SPDX-License-Identifier: GPL-2.0

//! rslab's library mounted as `slab` inside a submodule of the driver, not as `rslab` at its
//! root: the library names its own parts relative to itself, so a driver may put it anywhere.
//! [`static_cache_allocator!`] is told where with `in`.
//!
//! The module only runs its KUnit suite, `rslab_mount`.

use kernel::prelude::*;

/// The driver's own code, with the library inside it.
#[path = "rslab_mount_driver.rs"]
pub mod driver;

module! {
    type: MountModule,
    name: "rslab_mount",
    authors: ["rslab developers"],
    description: "rslab template: the library mounted inside a submodule",
    license: "GPL",
}

struct MountModule;

impl kernel::Module for MountModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self)
    }
}

#[kernel::macros::kunit_tests(rslab_mount)]
mod tests {
    use super::driver::{
        slab::{
            cache::{CacheOptions, KmemCache},
            kmalloc::RsBox,
        },
        Node, NodeAlloc, NODE_CACHE,
    };
    use kernel::{alloc::Box, prelude::*};

    #[test]
    fn the_library_works_from_a_submodule() -> Result {
        let cache = KmemCache::<u64>::new(c"rslab_mount_test", CacheOptions::new())?;
        assert_eq!(*cache.alloc(7, GFP_KERNEL)?, 7);
        #[repr(align(32))]
        struct Line([u8; 96]);
        let line = RsBox::new(Line([1; 96]), GFP_KERNEL)?;
        assert_eq!((&raw const *line) as usize % 32, 0);
        assert_eq!(line.0[95], 1);

        NODE_CACHE.init(c"rslab_mount_nodes", CacheOptions::new())?;
        let r = Box::<Node, NodeAlloc>::new(Node { key: 9 }, GFP_KERNEL).map(|n| n.key);
        // SAFETY: The only `Node` was dropped above; nothing else uses `NODE_CACHE`.
        unsafe { NODE_CACHE.destroy() };
        assert_eq!(r?, 9);
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Cache names and creation arguments the kernel would warn about: errors instead.
//!
//! With `CONFIG_DEBUG_VM`, `kmem_cache_create()` WARNs about a name with a space and about a
//! name another cache has; an empty name makes sysfs WARN, and a second cache of one name that
//! is not merged with the first is created without its sysfs directory, after a stack dump. A usercopy offset without a size WARNs with
//! `CONFIG_HARDENED_USERCOPY`. `KmemCache::new` answers each with an error, or leaves the bad
//! part out, before the kernel sees it. The runner fails a boot with any WARNING line, and the
//! debug kernel has `CONFIG_DEBUG_VM`.

use crate::rslab::{
    cache::{CacheFlags, CacheOptions, KmemCache},
    check,
};
use kernel::prelude::*;

#[kernel::macros::kunit_tests(rslab_cache_names)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_einval() -> Result {
        for name in [c"rslab test space", c"rslab_test_space ", c""] {
            check!(
                matches!(KmemCache::<u64>::new(name, CacheOptions::new()), Err(e) if e == EINVAL),
                "cache name {:?} accepted",
                name
            );
        }
        Ok(())
    }

    #[test]
    fn duplicate_names_are_eexist() -> Result {
        // Two instances of one driver, each creating "its" cache: mergeable, and unmergeable
        // (with sysfs, the kernel would create the second without its sysfs directory, after a
        // stack dump).
        for options in [
            CacheOptions::new(),
            CacheOptions::new().flags(CacheFlags::NO_MERGE),
        ] {
            let first = KmemCache::<[u64; 2]>::new(c"rslab_test_twice", options)?;
            check!(
                matches!(
                    KmemCache::<[u64; 2]>::new(c"rslab_test_twice", options),
                    Err(e) if e == EEXIST
                ),
                "a second cache of one name"
            );
            // Another type, same name: the name is what counts.
            check!(
                matches!(
                    KmemCache::<u32>::new(c"rslab_test_twice", options),
                    Err(e) if e == EEXIST
                ),
                "a second cache of one name and another type"
            );
            let o = first.alloc([1, 2], GFP_KERNEL)?;
            check!(o[1] == 2, "the first cache still works");
            drop(o);
            drop(first);
            // The name is free again once the cache is gone.
            let again = KmemCache::<[u64; 2]>::new(c"rslab_test_twice", options)?;
            check!(
                *again.alloc([3, 4], GFP_KERNEL)? == [3, 4],
                "the name reused"
            );
        }
        Ok(())
    }

    #[test]
    fn merged_caches_release_their_own_names() -> Result {
        // Two caches of one layout may be merged into one `struct kmem_cache` (without
        // `slab_debug`, which keeps caches apart). Dropping the older must release its name, not
        // the other's: its name can be taken again, the other's still cannot.
        let a = KmemCache::<[u64; 3]>::new(c"rslab_test_merged_a", CacheOptions::new())?;
        let b = KmemCache::<[u64; 3]>::new(c"rslab_test_merged_b", CacheOptions::new())?;
        drop(a);
        let a = KmemCache::<[u64; 3]>::new(c"rslab_test_merged_a", CacheOptions::new());
        check!(a.is_ok(), "the dropped cache's name is free again");
        check!(
            matches!(
                KmemCache::<[u64; 3]>::new(c"rslab_test_merged_b", CacheOptions::new()),
                Err(e) if e == EEXIST
            ),
            "the live cache's name is still taken"
        );
        drop(b);
        drop(a);
        let b = KmemCache::<[u64; 3]>::new(c"rslab_test_merged_b", CacheOptions::new());
        check!(b.is_ok(), "both names free once both caches are gone");
        Ok(())
    }

    #[test]
    fn empty_usercopy_has_no_offset() -> Result {
        // The kernel WARNs about `useroffset` without `usersize` (CONFIG_HARDENED_USERCOPY).
        let c = KmemCache::<[u64; 4]>::new(
            c"rslab_test_usercopy_empty",
            CacheOptions::new().usercopy(8, 0),
        )?;
        check!(
            c.usercopy_region() == (0..0),
            "empty region {:?}",
            c.usercopy_region()
        );
        check!(*c.alloc([5; 4], GFP_KERNEL)? == [5; 4], "allocation");
        Ok(())
    }
}

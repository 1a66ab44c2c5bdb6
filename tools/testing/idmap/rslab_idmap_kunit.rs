// SPDX-License-Identifier: GPL-2.0

//! rslab's tests of the template's map, `samples/rslab_idmap_map.rs`: a child module of the map
//! (`mod tests` at its end, in the driver's build with `--cfg rslab_idmap_kunit` and in rslab's
//! test build of the driver), so that they see its private items.
//!
//! - The KUnit suite of the map, `rslab_idmap`. It runs on caches of its own, in the root
//!   memory cgroup, where charges cannot fail.
//! - [`IdMap::start_at`], the one way into the map's state from outside it: the `first_id` hook
//!   of rslab's test build (`rslab_idmap_test_module.rs`), and the KUnit tests' way to the end
//!   of the ID space.

use super::*;

// `Node` is its ID, its value and one link, a one-word `SlabBox`: 24 bytes on a 64-bit
// kernel, where a two-word box made it 32.
#[cfg(target_pointer_width = "64")]
kernel::static_assert!(core::mem::size_of::<Node<'static>>() == 24);

impl IdMap<'_> {
    /// Makes `first` (at least 1) the next ID to hand out: a map whose ID space runs out soon.
    /// rslab's test hook, used by its test build's `open` and its KUnit tests only; called on
    /// a new map, before any insert.
    pub(crate) fn start_at(&self, first: u32) {
        // INVARIANT: `1 <= first < ID_END`; the map is empty, so no node has an ID above it.
        self.inner.lock().next_id = u64::from(first.max(1));
    }
}

#[cfg(rslab_sheaf)]
// Not in the test build, whose module is loaded for the client only.
#[cfg(not(rslab_idmap_test))]
#[kernel::macros::kunit_tests(rslab_idmap)]
mod idmap {
    use super::*;
    use crate::rslab::cache::{CacheFlags, CacheOptions};
    use pin_init::stack_try_pin_init;

    /// What the driver's calls do without a report, and the map's size.
    impl IdMap<'_> {
        /// Stores `values` under consecutive new IDs and returns the first one.
        fn insert_batch(&self, values: &[u64]) -> Result<u32> {
            self.insert_reported(values, |_| Ok(()))
        }

        /// Removes `id`; returns its value.
        fn remove(&self, id: u32) -> Option<u64> {
            self.remove_reported(id, |_| Ok(())).ok()
        }

        fn len(&self) -> usize {
            self.inner.lock().len
        }
    }

    /// Runs `f` with a fresh map of up to `limit` entries over a cache of its own; both go
    /// away at the end.
    fn with_map(limit: usize, f: impl FnOnce(&IdMap<'_>) -> Result) -> Result {
        let cache = KmemCache::new(c"rslab_idmap_test", CacheOptions::new().sheaf_capacity(8))?;
        stack_try_pin_init!(let map: IdMap<'_> =? IdMap::new(&cache, limit));
        let r = f(&map);
        map.clear();
        r
    }

    #[test]
    fn insert_get_remove() -> Result {
        with_map(1024, |map| {
            let first = map.insert_batch(&[10, 20, 30])?;
            assert_eq!(first, 1);
            assert_eq!(map.get(2), Some(20));
            assert_eq!(map.remove(2), Some(20));
            assert_eq!(map.remove(2), None);
            assert_eq!(map.get(2), None);
            assert_eq!(map.len(), 2);
            // A batch far larger than the sheaf capacity (oversize sheaf).
            let mut big = KVec::new();
            for i in 0..500u64 {
                big.push(i, GFP_KERNEL)?;
            }
            let f = map.insert_batch(&big)?;
            assert_eq!(f, 4);
            assert_eq!(map.get(f + 499), Some(499));
            assert_eq!(map.len(), 502);
            Ok(())
        })
    }

    #[test]
    fn exhausted_id_space_is_an_error() -> Result {
        let cache = KmemCache::new(c"rslab_idmap_test", CacheOptions::new().sheaf_capacity(8))?;
        stack_try_pin_init!(let map: IdMap<'_> =? IdMap::new(&cache, 64));
        map.start_at(u32::MAX - 2);
        let r = (|| -> Result {
            assert_eq!(map.insert_batch(&[1, 2])?, u32::MAX - 2);
            // Two values, one ID left: refused, and nothing changes.
            assert!(matches!(map.insert_batch(&[3, 4]), Err(e) if e == EOVERFLOW));
            assert_eq!(map.len(), 2);
            assert_eq!(map.get(u32::MAX), None);
            // The last ID, then none.
            assert_eq!(map.insert_batch(&[5])?, u32::MAX);
            assert!(matches!(map.insert_batch(&[6]), Err(e) if e == EOVERFLOW));
            assert_eq!(map.get(u32::MAX), Some(5));
            assert_eq!(map.get(u32::MAX - 1), Some(2));
            assert_eq!(map.len(), 3);
            Ok(())
        })();
        map.clear();
        r
    }

    /// A batch that ends at `u32::MAX` and cannot be reported is taken back: no ID after the
    /// last is computed.
    #[test]
    fn failed_report_at_the_end_of_the_id_space() -> Result {
        let cache = KmemCache::new(c"rslab_idmap_test", CacheOptions::new().sheaf_capacity(8))?;
        stack_try_pin_init!(let map: IdMap<'_> =? IdMap::new(&cache, 64));
        map.start_at(u32::MAX - 2);
        let r = (|| -> Result {
            assert_eq!(map.insert_batch(&[1])?, u32::MAX - 2);
            // The last two IDs, and a report that fails as a write to an unmapped page does.
            let r = map.insert_reported(&[2, 3], |first| {
                assert_eq!(first, u32::MAX - 1);
                Err(EFAULT)
            });
            assert!(matches!(r, Err(e) if e == EFAULT));
            assert_eq!((map.get(u32::MAX - 1), map.get(u32::MAX)), (None, None));
            let s = map.stats();
            assert_eq!((s.entries, s.inserted, s.next_id), (1, 1, ID_END));
            // Their IDs stay used.
            assert!(matches!(map.insert_batch(&[4]), Err(e) if e == EOVERFLOW));
            assert_eq!(map.get(u32::MAX - 2), Some(1));
            Ok(())
        })();
        map.clear();
        r
    }

    /// The driver's node cache, and a `SLAB_ACCOUNT` one (the test build's `forced_charge=1`),
    /// where every node is charged, by force, when it is taken from the sheaf.
    #[test]
    fn every_charge_mode_inserts_alike() -> Result {
        for flags in [CacheFlags::NONE, CacheFlags::ACCOUNT] {
            let options = CacheOptions::new().sheaf_capacity(8).flags(flags);
            let cache = KmemCache::new(c"rslab_idmap_test", options)?;
            stack_try_pin_init!(let map: IdMap<'_> =? IdMap::new(&cache, 64));
            // KUnit runs in the root memory cgroup, where charges cannot fail.
            assert_eq!(map.insert_batch(&[1, 2, 3])?, 1);
            // More than the sheaf capacity: an oversize sheaf.
            assert_eq!(map.insert_batch(&[9; 20])?, 4);
            assert_eq!(map.get(3), Some(3));
            assert_eq!(map.get(23), Some(9));
            assert_eq!(map.len(), 23);
        }
        Ok(())
    }

    #[test]
    fn entry_limit_is_an_error() -> Result {
        with_map(4, |map| {
            assert_eq!(map.insert_batch(&[1, 2, 3])?, 1);
            // Two more would make five: refused, and nothing changes.
            assert!(matches!(map.insert_batch(&[4, 5]), Err(e) if e == ENOSPC));
            assert_eq!(map.len(), 3);
            assert_eq!(map.get(4), None);
            assert_eq!(map.insert_batch(&[4])?, 4);
            assert!(matches!(map.insert_batch(&[5]), Err(e) if e == ENOSPC));
            // Room again after a removal; the IDs go on counting.
            assert_eq!(map.remove(1), Some(1));
            assert_eq!(map.insert_batch(&[5])?, 5);
            let s = map.stats();
            assert_eq!((s.entries, s.inserted, s.removed, s.next_id), (4, 5, 1, 6));
            Ok(())
        })
    }

    #[test]
    fn failed_reports_change_nothing() -> Result {
        with_map(1024, |map| {
            let first = map.insert_batch(&[7, 8, 9])?;
            // What `IOCTL_REMOVE` does when it cannot write the value back.
            let r = map.remove_reported(first + 1, |value| {
                assert_eq!(value, 8);
                Err(EFAULT)
            });
            assert!(matches!(r, Err(e) if e == EFAULT));
            assert_eq!(map.get(first + 1), Some(8));
            // What `IOCTL_INSERT` does when it cannot write the first ID back.
            let mut second = 0;
            let r = map.insert_reported(&[10, 11], |first| {
                second = first;
                Err(EFAULT)
            });
            assert!(matches!(r, Err(e) if e == EFAULT));
            assert_eq!((map.get(second), map.get(second + 1)), (None, None));
            let s = map.stats();
            assert_eq!((s.entries, s.inserted, s.removed), (3, 3, 0));
            // Their IDs stay used.
            assert_eq!(map.insert_batch(&[12])?, second + 2);
            Ok(())
        })
    }

    /// What other threads can see of a batch while its first ID is reported: nothing, and
    /// nothing at all if the report fails.
    #[test]
    fn unreported_batch_is_never_seen() -> Result {
        with_map(1024, |map| {
            let r = map.insert_reported(&[1, 2], |first| {
                // Another thread, while the first ID is written back.
                assert_eq!((map.get(first), map.get(first + 1)), (None, None));
                assert_eq!(map.stats().entries, 0);
                assert!(matches!(map.remove_reported(first, |_| Ok(())), Err(e) if e == ENOENT));
                Err(EFAULT)
            });
            assert!(matches!(r, Err(e) if e == EFAULT));
            let s = map.stats();
            assert_eq!((s.entries, s.inserted, s.removed, s.next_id), (0, 0, 0, 3));
            Ok(())
        })
    }

    /// A removal in flight and a batch in flight both hold their room: the map never holds more
    /// than its limit.
    #[test]
    fn calls_in_flight_hold_their_room() -> Result {
        with_map(2, |map| {
            let first = map.insert_batch(&[1, 2])?;
            // A removal whose value cannot be written back; meanwhile another thread inserts.
            let r = map.remove_reported(first, |_| {
                assert!(matches!(map.insert_batch(&[3]), Err(e) if e == ENOSPC));
                Err(EFAULT)
            });
            assert!(matches!(r, Err(e) if e == EFAULT));
            assert_eq!(map.get(first), Some(1));
            assert_eq!(map.len(), 2);
            assert_eq!(map.remove(first), Some(1));
            // A batch whose first ID is being written back.
            let r = map.insert_reported(&[5], |_| {
                assert!(matches!(map.insert_batch(&[6]), Err(e) if e == ENOSPC));
                Ok(())
            });
            assert_eq!(r?, first + 2);
            let s = map.stats();
            assert_eq!((s.entries, s.inserted, s.removed), (2, 3, 1));
            Ok(())
        })
    }

    /// The longest chain of the map's hash table.
    fn longest_chain(map: &IdMap<'_>) -> usize {
        let inner = map.inner.lock();
        let mut longest = 0;
        for head in inner.buckets.iter() {
            let mut n = 0;
            let mut cur = head.as_deref();
            while let Some(node) = cur {
                n += 1;
                cur = node.next.as_deref();
            }
            longest = longest.max(n);
        }
        longest
    }

    /// A lookup walks a few nodes, however many the map holds: for consecutive IDs, and for IDs
    /// with a common stride.
    #[test]
    fn chains_stay_short() -> Result {
        with_map(65536, |map| {
            let values = [7u64; 256];
            for _ in 0..256 {
                map.insert_batch(&values)?;
            }
            let full = longest_chain(map);
            for id in 1..=65536u32 {
                if id % 64 != 0 {
                    map.remove(id);
                }
            }
            let strided = longest_chain(map);
            pr_info!("longest chain: {full} at 65536 entries, {strided} at 1024 with stride 64\n");
            assert!(full <= 16);
            assert!(strided <= 16);
            Ok(())
        })
    }

    /// Drives the map the way a driver would: batches of growing size, every value looked up,
    /// every third ID removed.
    #[test]
    fn driver_exercise_is_consistent() -> Result {
        with_map(1024, |map| {
            let mut values = KVec::new();
            let mut inserted = 0;
            for batch in 1..=20u64 {
                values.clear();
                for i in 0..batch * 3 {
                    values.push(batch * 1000 + i, GFP_KERNEL)?;
                }
                let first = map.insert_batch(&values)?;
                for (i, &v) in values.iter().enumerate() {
                    assert_eq!(map.get(first + i as u32), Some(v));
                }
                inserted += values.len();
            }
            assert_eq!(inserted, 630);
            let mut removed = 0;
            for id in (1..=inserted as u32).step_by(3) {
                assert!(map.remove(id).is_some());
                removed += 1;
            }
            assert_eq!(map.len(), inserted - removed);
            Ok(())
        })
    }
}

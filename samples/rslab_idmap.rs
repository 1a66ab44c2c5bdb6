// SPDX-License-Identifier: GPL-2.0

//! rslab template driver: an ID map whose inserts never fail under its lock.
//!
//! The map hands out consecutive IDs for values and stores them in a hash table of singly
//! linked nodes behind a `SpinLock`. Inserting a batch needs one node per value. Allocating
//! those nodes under the spinlock would need `GFP_ATOMIC` and a failure path that undoes half
//! a batch; allocating them one by one before the lock would cost a slab call each.
//!
//! The pattern shown here is the sheaf one:
//!
//! 1. Before the lock (may sleep): prefill a sheaf with as many nodes as the batch needs and
//!    claim them ([`Sheaf::claims`](rslab::sheaf::Sheaf::claims)). This is the only place an insert can fail, and nothing
//!    has been changed yet, so failing is trivial.
//! 2. Under the lock: turn each claimed slot into a node. [`Slot::alloc`](rslab::sheaf::Slot::alloc) has no error to
//!    handle.
//! 3. After the lock: drop the sheaf; unused objects go back to the cache.
//!
//! Copy this file, rename the types, and keep the three steps.

use kernel::{debugfs::Dir, new_spinlock, prelude::*, sync::SpinLock};

#[path = "../rust/lib/mod.rs"]
pub mod rslab;

use rslab::{
    cache::{CacheOptions, KmemCache, SlabBox},
    static_cache::StaticCache,
};

module! {
    type: IdMapModule,
    name: "rslab_idmap",
    authors: ["rslab developers"],
    description: "rslab template: an ID map that allocates under a spinlock from a sheaf",
    license: "GPL",
}

/// Hash buckets of the map.
const BUCKETS: usize = 64;

/// One entry of the map, allocated from the map's cache `'c`.
struct Node<'c> {
    id: u32,
    value: u64,
    next: Link<'c>,
}

/// A chain of nodes.
type Link<'c> = Option<SlabBox<'c, Node<'c>>>;

/// The module's node cache; created in module init, destroyed in module exit.
static NODES: StaticCache<Node<'static>> = StaticCache::new();

/// One past the last ID: IDs are the `u32` values from 1 to `u32::MAX`.
const ID_END: u64 = u32::MAX as u64 + 1;

struct Inner<'c> {
    buckets: [Link<'c>; BUCKETS],
    /// The next ID to hand out; `ID_END` once the ID space is used up. A `u64`, so that
    /// counting up to `ID_END` cannot overflow under the lock.
    next_id: u64,
    len: usize,
}

/// The map. `insert_batch` reserves before it locks; nothing under the lock can fail.
///
/// The map borrows the cache its nodes come from, so the cache cannot go away first: the module
/// uses its `'static` cache, a test uses a local one.
#[pin_data]
struct IdMap<'c> {
    cache: &'c KmemCache<Node<'c>>,
    #[pin]
    inner: SpinLock<Inner<'c>>,
}

/// Takes the node with `id` out of the chain starting at `head`.
fn unlink<'c>(head: &mut Link<'c>, id: u32) -> Link<'c> {
    let mut link = head;
    while link.as_ref().is_some_and(|n| n.id != id) {
        link = &mut { link }.as_mut()?.next;
    }
    let mut node = link.take()?;
    *link = node.next.take();
    Some(node)
}

fn bucket(id: u32) -> usize {
    (id as usize).wrapping_mul(0x9e37_79b9) % BUCKETS
}

impl<'c> IdMap<'c> {
    fn new(cache: &'c KmemCache<Node<'c>>) -> impl PinInit<Self> + 'c {
        Self::starting_at(cache, 1)
    }

    /// A map whose first ID is `first` (tests start near the end of the ID space).
    fn starting_at(cache: &'c KmemCache<Node<'c>>, first: u32) -> impl PinInit<Self> + 'c {
        pin_init!(Self {
            cache,
            inner <- new_spinlock!(Inner {
                buckets: [const { None }; BUCKETS],
                next_id: u64::from(first),
                len: 0,
            }),
        })
    }

    /// Stores `values` under consecutive new IDs and returns the first one.
    ///
    /// Fails with `ENOSPC`, changing nothing, when the ID space has fewer IDs left than
    /// `values` needs, and as [`KmemCache::prefill`] does.
    ///
    /// # Context
    ///
    /// Process context; may sleep before it takes the lock.
    fn insert_batch(&self, values: &[u64]) -> Result<u32> {
        // Step 1, before the lock: reserve one node per value. Everything that can fail is
        // here, and nothing has been changed yet.
        let sheaf = self.cache.prefill(values.len(), GFP_KERNEL)?;
        // `values.len()` objects are claimable in a fresh sheaf: this cannot fail.
        let slots = sheaf.claims(values.len()).map_err(|_| ENOMEM)?;

        // Step 2, under the lock: link the nodes in. No allocation can fail here.
        let first;
        {
            let mut inner = self.inner.lock();
            // The whole batch's IDs, checked before anything changes: on failure the claims go
            // back to the sheaf and the sheaf to the cache. `next_id <= ID_END` and a batch is
            // at most `MAX_SHEAF_OBJECTS`, so the sum cannot overflow a `u64`.
            if inner.next_id + values.len() as u64 > ID_END {
                return Err(ENOSPC);
            }
            // Below `ID_END`, as every ID of the batch: the casts are exact.
            first = inner.next_id as u32;
            for (slot, &value) in slots.zip(values) {
                let id = inner.next_id as u32;
                inner.next_id += 1;
                let b = bucket(id);
                let next = inner.buckets[b].take();
                inner.buckets[b] = Some(slot.alloc(Node { id, value, next }));
                inner.len += 1;
            }
        }

        // Step 3, after the lock: `sheaf` drops here and returns what was not used.
        Ok(first)
    }

    /// The value stored under `id`.
    fn get(&self, id: u32) -> Option<u64> {
        let inner = self.inner.lock();
        let mut cur = inner.buckets[bucket(id)].as_deref();
        while let Some(n) = cur {
            if n.id == id {
                return Some(n.value);
            }
            cur = n.next.as_deref();
        }
        None
    }

    /// Removes `id`; the node is freed after the lock is released.
    fn remove(&self, id: u32) -> Option<u64> {
        let removed = {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            let node = unlink(&mut inner.buckets[bucket(id)], id);
            if node.is_some() {
                inner.len -= 1;
            }
            node
        };
        // Freeing outside the lock keeps the critical section short.
        removed.map(|n| n.value)
    }

    /// Frees every node.
    fn clear(&self) {
        for b in 0..BUCKETS {
            // One bucket at a time, each freed outside the lock.
            let mut head = self.inner.lock().buckets[b].take();
            // Unlink iteratively: a recursive drop of a long chain could overflow the stack.
            while let Some(mut n) = head {
                head = n.next.take();
            }
        }
        self.inner.lock().len = 0;
    }

    fn len(&self) -> usize {
        self.inner.lock().len
    }
}

/// What module init did, readable at `/sys/kernel/debug/rslab_idmap/report`.
#[derive(Clone, Copy)]
struct Summary {
    batches: usize,
    inserted: usize,
    removed: usize,
    left: usize,
    checked: usize,
}

impl core::fmt::Debug for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "rslab_idmap: ID map inserting under a spinlock from slab sheaves"
        )?;
        writeln!(
            f,
            "  {} batches, {} IDs inserted with no failure path under the lock,",
            self.batches, self.inserted
        )?;
        writeln!(
            f,
            "  {} removed, {} left, {} lookups checked: {}",
            self.removed,
            self.left,
            self.checked,
            if self.checked == self.inserted {
                "all correct"
            } else {
                "MISMATCH"
            }
        )
    }
}

/// Drives the map the way a driver would.
fn exercise(map: &IdMap<'_>) -> Result<Summary> {
    let mut s = Summary {
        batches: 0,
        inserted: 0,
        removed: 0,
        left: 0,
        checked: 0,
    };
    let mut values = KVec::new();
    for batch in 1..=20u64 {
        values.clear();
        for i in 0..batch * 3 {
            values.push(batch * 1000 + i, GFP_KERNEL)?;
        }
        let first = map.insert_batch(&values)?;
        for (i, &v) in values.iter().enumerate() {
            if map.get(first + i as u32) == Some(v) {
                s.checked += 1;
            }
        }
        s.batches += 1;
        s.inserted += values.len();
    }
    let mut id = 1;
    while id < s.inserted as u32 {
        if map.remove(id).is_some() {
            s.removed += 1;
        }
        id += 3;
    }
    s.left = map.len();
    Ok(s)
}

#[pin_data(PinnedDrop)]
struct IdMapModule {
    #[pin]
    map: IdMap<'static>,
    _dir: Dir,
    #[pin]
    _report: kernel::debugfs::File<Summary>,
}

impl kernel::InPlaceModule for IdMapModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let dir = Dir::new(c"rslab_idmap");
        try_pin_init!(&this in Self {
            map <- IdMap::new(
                NODES.init(c"rslab_idmap_node", CacheOptions::new().sheaf_capacity(32))?,
            ),
            _report <- {
                // SAFETY: `map` is initialised above and pinned in `this`.
                let map = unsafe { &(*this.as_ptr()).map };
                let summary = exercise(map).inspect_err(|_| {
                    // Init fails: `PinnedDrop` will not run, so clean up here.
                    map.clear();
                    // SAFETY: Every node was in `map`, which is empty now.
                    unsafe { NODES.destroy() };
                })?;
                pr_info!(
                    "{} IDs in {} batches, {} lookups correct\n",
                    summary.inserted,
                    summary.batches,
                    summary.checked
                );
                dir.read_only_file(c"report", summary)
            },
            _dir: dir,
        }? Error)
    }
}

#[pinned_drop]
impl PinnedDrop for IdMapModule {
    fn drop(self: Pin<&mut Self>) {
        // Free every node before the cache they come from is destroyed.
        self.map.clear();
        // SAFETY: Every node lived in `map`, which is empty; nothing else uses `NODES`.
        unsafe { NODES.destroy() };
    }
}

#[cfg(rslab_sheaf)]
#[kernel::macros::kunit_tests(rslab_idmap)]
mod tests {
    use super::*;
    use pin_init::stack_pin_init;

    /// Runs `f` with a fresh map over a cache of its own; both go away at the end.
    fn with_map(f: impl FnOnce(&IdMap<'_>) -> Result) -> Result {
        let cache = KmemCache::new(c"rslab_idmap_test", CacheOptions::new().sheaf_capacity(8))?;
        stack_pin_init!(let map = IdMap::new(&cache));
        let r = f(&map);
        map.clear();
        r
    }

    #[test]
    fn insert_get_remove() -> Result {
        with_map(|map| {
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
        stack_pin_init!(let map = IdMap::starting_at(&cache, u32::MAX - 2));
        let r = (|| -> Result {
            assert_eq!(map.insert_batch(&[1, 2])?, u32::MAX - 2);
            // Two values, one ID left: refused, and nothing changes.
            assert!(matches!(map.insert_batch(&[3, 4]), Err(e) if e == ENOSPC));
            assert_eq!(map.len(), 2);
            assert_eq!(map.get(u32::MAX), None);
            // The last ID, then none.
            assert_eq!(map.insert_batch(&[5])?, u32::MAX);
            assert!(matches!(map.insert_batch(&[6]), Err(e) if e == ENOSPC));
            assert_eq!(map.get(u32::MAX), Some(5));
            assert_eq!(map.get(u32::MAX - 1), Some(2));
            assert_eq!(map.len(), 3);
            Ok(())
        })();
        map.clear();
        r
    }

    #[test]
    fn driver_exercise_is_consistent() -> Result {
        with_map(|map| {
            let s = exercise(map)?;
            assert_eq!(s.checked, s.inserted);
            assert_eq!(s.inserted, 630);
            assert_eq!(s.left, s.inserted - s.removed);
            Ok(())
        })
    }
}

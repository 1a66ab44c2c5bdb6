// SPDX-License-Identifier: GPL-2.0

//! The map of the template driver `rslab_idmap_main.rs`: IDs to values, in a hash table of
//! nodes from a slab cache behind a `SpinLock`. No ioctl code: the driver's files, its KUnit
//! tests and the benchmark (`tools/testing/bench/`) use it alike.
//!
//! An insert never fails under the lock. A batch of values needs one node each: allocated under
//! the spinlock they would need `GFP_ATOMIC` and a failure path that undoes half a batch.
//! [`IdMap::insert_reported`] follows the sheaf pattern instead:
//!
//! 1. Before the lock (may sleep): prefill a sheaf with as many nodes as the batch needs, take
//!    them out and charge them to the caller's memory cgroup
//!    ([`Slot::charge`](super::rslab::sheaf::Slot::charge)). Only here can an insert fail for
//!    want of memory, and nothing has changed yet.
//! 2. Under the lock: move each value into its node
//!    ([`Charged::write`](super::rslab::sheaf::Charged::write), which cannot fail) and link it
//!    in.
//! 3. After the lock: drop the sheaf; what was not used goes back to the cache.
//!
//! The caller learns its first ID through `report`, which may fault and fail (the driver writes
//! to user space), so step 2 takes the lock twice: to check the limits, hand out the IDs and
//! hold the batch's room; then, once the caller has been told, to link the nodes in. No other
//! thread sees the batch before; if the caller cannot be told, it never was in the map (its IDs
//! stay used). A removal likewise reports the value before it counts.
//!
//! The table is sized when the map is made, for the most entries it may hold: a power of two of
//! buckets, one per four entries (16,384, 128 KiB, for the driver's default `max_entries` of
//! 65,536), a `KVVec` allocated with `GFP_KERNEL_ACCOUNT`. A lookup walks about four nodes
//! however full the map is, and nothing allocates under the lock. The kernel crate's `XArray`
//! would suit the dense IDs, but its `store` allocates its own nodes, dropping and retaking its
//! lock to do so; its `RBTree` needs a `KBox` per node, reserved one allocation at a time.
//! Neither takes its nodes from a sheaf.
//!
//! Everything that the lock protects is private to this file: the driver reaches it only through
//! [`IdMap`]'s methods, which keep its invariants.

use super::rslab::cache::{KmemCache, SlabBox};
use kernel::{new_spinlock, prelude::*, sync::SpinLock};

/// Entries per hash bucket of a full map, on average: the table has `limit / LOAD` buckets,
/// rounded up to a power of two.
const LOAD: usize = 4;
/// The fewest and the most buckets of a map (512 B and 8 MiB of table).
const MIN_BUCKETS: usize = 64;
const MAX_BUCKETS: usize = 1 << 20;

/// One entry of the map, allocated from the map's cache `'c`. Its fields are the map's: a
/// driver names the type only for its cache.
pub(super) struct Node<'c> {
    id: u32,
    value: u64,
    next: Link<'c>,
}

/// A chain of nodes.
type Link<'c> = Option<SlabBox<'c, Node<'c>>>;

/// One past the last ID: IDs are the `u32` values from 1 to `u32::MAX`.
const ID_END: u64 = u32::MAX as u64 + 1;

/// What the lock protects.
///
/// # Invariants
///
/// - `buckets.len() == 1 << (32 - shift)`, and `shift` is in `12..=26` (64 to 2^20 buckets):
///   [`Inner::bucket`]'s index is below `buckets.len()`.
/// - Every node is in the chain of `bucket(node.id)`, and no two nodes have the same ID.
/// - `1 <= next_id <= ID_END`, and every node's ID is below `next_id`.
/// - `len + pending <= limit`, the map's limit.
struct Inner<'c> {
    /// The hash table: a power of two of chains, allocated when the map is made.
    buckets: KVVec<Link<'c>>,
    /// 32 minus the number of bits of a bucket index.
    shift: u32,
    /// The next ID to hand out; `ID_END` once the ID space is used up. A `u64`, so that
    /// counting up to `ID_END` cannot overflow under the lock.
    next_id: u64,
    /// Entries in the map, and entries taken out by a removal not yet reported.
    len: usize,
    /// Room held for batches whose IDs are handed out but which are not in the map yet.
    pending: usize,
    /// Values inserted, entries removed, inserts failed. A `u64` counts far more calls than a
    /// machine can make.
    inserted: u64,
    removed: u64,
    failed: u64,
}

/// The map's counters and limit, as [`IdMap::stats`] reads them.
pub(super) struct Stats {
    /// The most entries the map holds.
    pub(super) limit: usize,
    /// Entries in the map, counting removals in flight.
    pub(super) entries: usize,
    pub(super) inserted: u64,
    pub(super) removed: u64,
    pub(super) failed: u64,
    pub(super) next_id: u64,
}

/// The map. It borrows the cache its nodes come from, so the cache cannot go away first: the
/// driver uses its module's `'static` cache, a test a local one. Dropping the map frees its
/// nodes.
///
/// # Invariants
///
/// `inner` keeps the invariants of `Inner` whenever its lock is free, with `limit` as its limit.
#[pin_data(PinnedDrop)]
pub(super) struct IdMap<'c> {
    cache: &'c KmemCache<Node<'c>>,
    /// The most entries the map holds.
    limit: usize,
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

impl<'c> Inner<'c> {
    /// The bucket of `id`: the top bits of `id * GOLDEN_RATIO_32`, as the kernel's `hash_32()`
    /// takes them, so that consecutive IDs and IDs with a common stride both spread.
    fn bucket(&mut self, id: u32) -> &mut Link<'c> {
        // `shift` is below 32 (the type invariants): `wrapping_shr` shifts by it unchanged,
        // with no overflow check, and the index is below `1 << (32 - shift)`, the table's
        // length.
        let b = id.wrapping_mul(0x61c8_8647).wrapping_shr(self.shift);
        &mut self.buckets[b as usize]
    }
}

/// An empty hash table for a map of up to `limit` entries, and its [`Inner::shift`]: a power
/// of two of buckets from `MIN_BUCKETS` to `MAX_BUCKETS`, and 32 minus its exponent.
fn table<'c>(limit: usize) -> Result<(KVVec<Link<'c>>, u32)> {
    let n = limit
        .min(MAX_BUCKETS * LOAD)
        .div_ceil(LOAD)
        .next_power_of_two()
        .max(MIN_BUCKETS);
    // Charged to whoever makes the map: the opener of a file.
    let mut buckets = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..n {
        // Within the capacity: this push does not allocate.
        buckets.push(None, GFP_KERNEL_ACCOUNT)?;
    }
    Ok((buckets, 32 - n.trailing_zeros()))
}

impl<'c> IdMap<'c> {
    /// An empty map of up to `limit` entries.
    ///
    /// # Context
    ///
    /// Process context; may sleep: the table is allocated here.
    pub(super) fn new(
        cache: &'c KmemCache<Node<'c>>,
        limit: usize,
    ) -> impl PinInit<Self, Error> + 'c {
        // Allocated here, before the lock exists: nothing allocates under it.
        let table = table(limit);
        try_pin_init!(Self {
            cache,
            limit,
            inner <- {
                let (buckets, shift) = table?;
                // INVARIANT: `table` returns `1 << (32 - shift)` empty buckets, `shift` in
                // `12..=26`; no node, no ID handed out, nothing pending.
                new_spinlock!(Inner {
                    buckets,
                    shift,
                    next_id: 1,
                    len: 0,
                    pending: 0,
                    inserted: 0,
                    removed: 0,
                    failed: 0,
                })
            },
        }? Error)
    }

    /// Stores `values` under consecutive new IDs, reporting the first one with `report` before
    /// any of them is in the map; returns it.
    ///
    /// `report` may fault, sleep and fail (the driver writes the first ID back to user space).
    /// If it fails, the batch is not inserted, its IDs stay used, and its error is returned. No
    /// other thread sees any of the batch before the report succeeded: all of it or none.
    ///
    /// Fails, changing nothing, with `ENOSPC` when the map would hold more than its limit of
    /// entries, `EOVERFLOW` when the ID space has fewer IDs left than `values` needs, `ENOMEM`
    /// as [`KmemCache::prefill`] does or at the caller's memory cgroup limit.
    ///
    /// # Context
    ///
    /// Process context; may sleep before it takes the lock, and in `report`.
    pub(super) fn insert_reported(
        &self,
        values: &[u64],
        report: impl FnOnce(u32) -> Result,
    ) -> Result<u32> {
        let n = values.len();
        // Step 1, before the lock: take one node per value out of a prefilled sheaf and charge it
        // to the caller's memory cgroup. Everything that can fail is here; nothing has changed.
        let sheaf = self.cache.prefill(n, GFP_KERNEL)?;
        let mut nodes = KVec::with_capacity(n, GFP_KERNEL)?;
        // `n` objects are claimable in a fresh sheaf: `claims` cannot fail.
        for slot in sheaf.claims(n).map_err(|_| ENOMEM)? {
            // Within the capacity: this push does not allocate.
            nodes.push(slot.charge()?, GFP_KERNEL)?;
        }
        // Its buffer is freed when `sheaf` is, after the lock.
        let mut nodes = nodes.into_iter();

        // Step 2, under the lock: check the limits, hand out the IDs and hold the batch's room.
        // On failure the charged nodes are freed and the sheaf goes back to the cache.
        let first = {
            let mut inner = self.inner.lock();
            // `next_id <= ID_END` and a batch is at most `MAX_SHEAF_OBJECTS`, so the sum cannot
            // overflow a `u64`.
            if n > self.limit.saturating_sub(inner.len + inner.pending) {
                return Err(ENOSPC);
            }
            if inner.next_id + n as u64 > ID_END {
                return Err(EOVERFLOW);
            }
            // Below `ID_END`: the cast is exact.
            let first = inner.next_id as u32;
            // INVARIANT: checked above: `next_id` stays at most `ID_END`, `len + pending` at
            // most `limit`.
            inner.next_id += n as u64;
            inner.pending += n;
            first
        };
        // No lock held: the report may fault. None of the batch is in the map yet.
        if let Err(e) = report(first) {
            // INVARIANT: the batch's room is given back; its IDs stay used.
            self.inner.lock().pending -= n;
            return Err(e);
        }
        // Still step 2, under the lock again: link the nodes in. No allocation can fail here.
        {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            for (i, (node, &value)) in nodes.by_ref().zip(values).enumerate() {
                // The batch's IDs are all in the ID space: `first + i` cannot overflow.
                let id = first + i as u32;
                // INVARIANT: a fresh ID, below `next_id`, in its own bucket.
                let head = inner.bucket(id);
                let next = head.take();
                *head = Some(node.write(Node { id, value, next }));
            }
            // INVARIANT: the batch's room moves from `pending` to `len`.
            inner.pending -= n;
            inner.len += n;
            inner.inserted += n as u64;
        }

        // Step 3, after the lock: `sheaf` drops here and returns what was not used.
        Ok(first)
    }

    /// Counts a failed insert in the statistics.
    pub(super) fn count_failure(&self) {
        self.inner.lock().failed += 1;
    }

    /// The map's counters.
    pub(super) fn stats(&self) -> Stats {
        let inner = self.inner.lock();
        Stats {
            limit: self.limit,
            entries: inner.len,
            inserted: inner.inserted,
            removed: inner.removed,
            failed: inner.failed,
            next_id: inner.next_id,
        }
    }

    /// The value stored under `id`.
    pub(super) fn get(&self, id: u32) -> Option<u64> {
        let mut inner = self.inner.lock();
        let mut cur = inner.bucket(id).as_deref();
        while let Some(n) = cur {
            if n.id == id {
                return Some(n.value);
            }
            cur = n.next.as_deref();
        }
        None
    }

    /// Removes `id`, reporting its value with `report`; returns the value, or `ENOENT`.
    ///
    /// `report` runs with no lock held, the entry taken out of the map but still counted in
    /// [`Stats::entries`], so that its room cannot be taken meanwhile. If `report` fails, the
    /// entry is put back and `report`'s error returned; until then, other threads find no `id`.
    pub(super) fn remove_reported(
        &self,
        id: u32,
        report: impl FnOnce(u64) -> Result,
    ) -> Result<u64> {
        let mut node = unlink(self.inner.lock().bucket(id), id).ok_or(ENOENT)?;
        let value = node.value;
        let r = report(value);
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if let Err(e) = r {
            // INVARIANT: back in its bucket, its room still counted in `len`; no other node
            // took its ID, as IDs are never handed out twice. This allocates nothing.
            let head = inner.bucket(id);
            node.next = head.take();
            *head = Some(node);
            return Err(e);
        }
        inner.len -= 1;
        inner.removed += 1;
        drop(guard);
        // Freeing outside the lock keeps the critical section short.
        drop(node);
        Ok(value)
    }

    /// Frees every node. Only for the map's drop and its tests: with a call in flight, `len`
    /// would no longer count what `pending` and a removal's report rely on.
    fn clear(&self) {
        let buckets = self.inner.lock().buckets.len();
        for b in 0..buckets {
            // One bucket at a time, each freed outside the lock.
            let mut head = self.inner.lock().buckets[b].take();
            // Unlink iteratively: a recursive drop of a long chain could overflow the stack.
            while let Some(mut n) = head {
                head = n.next.take();
            }
        }
        // INVARIANT: every bucket was emptied. Called with `&self` only where no insert or
        // removal is in flight (the map's drop, a test's end): nothing pending or unreported.
        self.inner.lock().len = 0;
    }
}

#[pinned_drop]
impl<'c> PinnedDrop for IdMap<'c> {
    fn drop(self: Pin<&mut Self>) {
        self.clear();
    }
}

// rslab's tests of the map, and the hook of its test build of the driver: a child module, so
// that they see the map's private items. Not part of a driver: leave it out of a copy.
#[cfg(any(rslab_idmap_kunit, rslab_idmap_test))]
#[path = "../tools/testing/idmap/rslab_idmap_kunit.rs"]
mod tests;

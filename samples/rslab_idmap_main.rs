// SPDX-License-Identifier: GPL-2.0

//! rslab template driver: an ID map whose inserts never fail under its lock.
//!
//! The map hands out consecutive IDs for values and keeps them in a hash table of singly
//! linked nodes behind a `SpinLock`. A batch of values needs one node each: allocated under
//! the spinlock they would need `GFP_ATOMIC` and a failure path that undoes half a batch;
//! allocated one by one before it, a slab call each. The sheaf pattern instead:
//!
//! 1. Before the lock (may sleep): prefill a sheaf with as many nodes as the batch needs, take
//!    them out and charge them to the caller's memory cgroup
//!    ([`Slot::charge`](rslab::sheaf::Slot::charge)). Only here can an insert fail, and
//!    nothing has changed yet.
//! 2. Under the lock: move each value into its node
//!    ([`Charged::write`](rslab::sheaf::Charged::write), which cannot fail).
//! 3. After the lock: drop the sheaf; what was not used goes back to the cache.
//!
//! The caller learns its first ID by a write to user space, which may fault, and fail (another
//! thread unmapped the page). So step 2 takes the lock twice: to check the limits, hand out the
//! IDs and hold the batch's room; then, once the caller has been told, to link the nodes in.
//! No other thread sees the batch before; if the caller cannot be told, it never was in the
//! map (its IDs stay used). A removal likewise writes the value back before it counts.
//!
//! The map is a hash table sized when it is made, for the most entries it may hold: a power of
//! two of buckets, one per four entries (16,384, 128 KiB, for the default `max_entries` of
//! 65,536), a `KVVec` allocated with `GFP_KERNEL_ACCOUNT`. A lookup walks about four nodes
//! however full the map is, and nothing allocates under the lock. The kernel crate's `XArray`
//! would suit the dense IDs, but its `store` allocates its own nodes, dropping and retaking its
//! lock to do so; its `RBTree` needs a `KBox` per node, reserved one allocation at a time.
//! Neither takes its nodes from a sheaf.
//!
//! User space reaches the map through the misc device `/dev/rslab_idmap`: every open file is a
//! map of its own, driven by the ioctls of [`abi`]. Everything from user space is checked
//! before it is used, and a failed call changes nothing. What a caller makes the driver
//! allocate is charged to its memory cgroup where the charge can fail: the file's state and
//! table at open, each node in step 1 (`GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL`). At the
//! cgroup's limit an insert fails with `ENOMEM`, and the cgroup never goes past `memory.max`.
//! An object charged as it is taken from a sheaf (with `Slot::accounted`, or from a
//! `SLAB_ACCOUNT` cache) is charged by force, past `memory.max` (`kmem_cache_alloc_from_sheaf()`
//! adds `__GFP_NOFAIL`): so the node cache is not `SLAB_ACCOUNT`.
//!
//! The device node has the misc default mode, 0600. No ioctl needs a capability: a file's map
//! is private to whoever holds the file, bounded by the `max_entries` module parameter and
//! charged to its opener, so an administrator may open the node to others. Inserting and
//! removing need a file open for writing, reading one open for reading (`EBADF` otherwise). An
//! open file keeps the module loaded (`rmmod` says "in use"): on 7.2 through [`own_file`].
//!
//! rslab's tests mount at the end (`tools/testing/idmap/`); its test build of the driver
//! mounts this file and declares the module itself. Copy this file, rename the types, and keep
//! the three steps.

use core::mem;
use kernel::{
    fs::{file, File},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_spinlock,
    prelude::*,
    sync::SpinLock,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice, UserSliceWriter},
};

#[path = "../rust/lib/mod.rs"]
pub mod rslab;

#[path = "rslab_idmap_abi.rs"]
pub mod abi;

#[path = "rslab_idmap_owner.rs"]
mod owner;
use owner::own_file;

use rslab::{
    cache::{CacheOptions, KmemCache, SlabBox},
    static_cache::StaticCache,
};

// rslab's test build (`tools/testing/idmap/`) declares the module itself.
#[cfg(not(rslab_idmap_test))]
module! {
    type: IdMapModule,
    name: "rslab_idmap",
    authors: ["rslab developers"],
    description: "rslab template: an ID map that allocates under a spinlock from a sheaf",
    license: "GPL",
    params: {
        max_entries: u32 {
            default: 65536,
            description: "The most entries one open file of /dev/rslab_idmap may hold",
        },
    },
}

/// Entries per hash bucket of a full map, on average: the table has `max_entries / LOAD`
/// buckets, rounded up to a power of two.
const LOAD: usize = 4;
/// The fewest and the most buckets of a map (512 B and 8 MiB of table).
const MIN_BUCKETS: usize = 64;
const MAX_BUCKETS: usize = 1 << 20;

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
    /// Values inserted, entries removed, inserts failed: the counters of [`abi::Stats`]. A
    /// `u64` counts far more calls than a machine can make.
    inserted: u64,
    removed: u64,
    failed: u64,
}

/// The map. It borrows the cache its nodes come from, so the cache cannot go away first: the
/// module uses its `'static` cache, a test a local one. Dropping the map frees its nodes.
#[pin_data(PinnedDrop)]
struct IdMap<'c> {
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
        let b = id.wrapping_mul(0x61c8_8647) >> self.shift;
        &mut self.buckets[b as usize]
    }
}

/// An empty hash table for a map of up to `limit` entries, and its [`Inner::shift`].
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
    fn new(cache: &'c KmemCache<Node<'c>>, limit: usize) -> impl PinInit<Self, Error> + 'c {
        // Allocated here, before the lock exists: nothing allocates under it.
        let table = table(limit);
        try_pin_init!(Self {
            cache,
            limit,
            inner <- {
                let (buckets, shift) = table?;
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
    fn insert_reported(&self, values: &[u64], report: impl FnOnce(u32) -> Result) -> Result<u32> {
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
            inner.next_id += n as u64;
            inner.pending += n;
            first
        };
        // No lock held: the report may fault. None of the batch is in the map yet.
        if let Err(e) = report(first) {
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
                let head = inner.bucket(id);
                let next = head.take();
                *head = Some(node.write(Node { id, value, next }));
            }
            inner.pending -= n;
            inner.len += n;
            inner.inserted += n as u64;
        }

        // Step 3, after the lock: `sheaf` drops here and returns what was not used.
        Ok(first)
    }

    /// Counts a failed insert in the statistics.
    fn count_failure(&self) {
        self.inner.lock().failed += 1;
    }

    /// The map's counters, as [`abi::IOCTL_STATS`] reports them.
    fn stats(&self) -> abi::Stats {
        let inner = self.inner.lock();
        abi::Stats {
            version: abi::VERSION,
            max_batch: abi::MAX_BATCH,
            max_entries: self.limit.try_into().unwrap_or(u32::MAX),
            // At most `limit` entries, and the module's limit is a `u32`.
            entries: inner.len.try_into().unwrap_or(u32::MAX),
            inserted: inner.inserted,
            removed: inner.removed,
            failed: inner.failed,
            next_id: inner.next_id,
        }
    }

    /// The value stored under `id`.
    fn get(&self, id: u32) -> Option<u64> {
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
    /// [`abi::Stats::entries`], so that its room cannot be taken meanwhile. If `report` fails, the
    /// entry is put back and `report`'s error returned; until then, other threads find no `id`.
    fn remove_reported(&self, id: u32, report: impl FnOnce(u64) -> Result) -> Result<u64> {
        let mut node = unlink(self.inner.lock().bucket(id), id).ok_or(ENOENT)?;
        let value = node.value;
        let r = report(value);
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if let Err(e) = r {
            // Back where it was; this allocates nothing.
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

    /// Frees every node.
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
        self.inner.lock().len = 0;
    }
}

#[pinned_drop]
impl<'c> PinnedDrop for IdMap<'c> {
    fn drop(self: Pin<&mut Self>) {
        self.clear();
    }
}

// SAFETY: The ABI's structures are `repr(C)`, of integer fields without padding (`abi` asserts
// their sizes): every bit pattern is a valid value, and every byte is initialised.
unsafe impl FromBytes for abi::Insert {}
// SAFETY: As above.
unsafe impl AsBytes for abi::Insert {}
// SAFETY: As above.
unsafe impl FromBytes for abi::Entry {}
// SAFETY: As above.
unsafe impl AsBytes for abi::Entry {}
// SAFETY: As above.
unsafe impl AsBytes for abi::Stats {}

/// Fails with `EBADF` unless `file` was opened for reading.
fn readable(file: &File) -> Result {
    if file.flags() & file::flags::O_ACCMODE == file::flags::O_WRONLY {
        return Err(EBADF);
    }
    Ok(())
}

/// Fails with `EBADF` unless `file` was opened for writing.
fn writable(file: &File) -> Result {
    if file.flags() & file::flags::O_ACCMODE == file::flags::O_RDONLY {
        return Err(EBADF);
    }
    Ok(())
}

/// One open file of `/dev/rslab_idmap`: a map of its own.
#[pin_data]
struct IdMapFile {
    #[pin]
    map: IdMap<'static>,
}

#[vtable]
impl MiscDevice for IdMapFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        own_file(file)?;
        let cache = NODES.get().ok_or(ENODEV)?;
        // The module's `max_entries` when the file is opened.
        let limit = rslab::param(&crate::module_parameters::max_entries) as usize;
        KBox::try_pin_init(
            try_pin_init!(IdMapFile {
                map <- IdMap::new(cache, limit),
            }),
            // The file's state is charged to whoever opens it.
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn ioctl(me: Pin<&IdMapFile>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let arg = UserPtr::from_addr(arg);
        match cmd {
            abi::IOCTL_INSERT => me.insert(file, arg)?,
            abi::IOCTL_GET => {
                readable(file)?;
                me.get(arg)?
            }
            abi::IOCTL_REMOVE => {
                writable(file)?;
                me.remove(arg)?
            }
            abi::IOCTL_STATS => {
                readable(file)?;
                UserSlice::new(arg, mem::size_of::<abi::Stats>())
                    .writer()
                    .write(&me.map.stats())?
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

impl IdMapFile {
    /// `IOCTL_INSERT`: reads the request, inserts the batch, writes back the first ID.
    fn insert(&self, file: &File, arg: UserPtr) -> Result {
        writable(file)?;
        let mut req: abi::Insert = UserSlice::new(arg, mem::size_of::<abi::Insert>())
            .reader()
            .read()?;
        let r = self.insert_request(&mut req, arg);
        if r.is_err() {
            self.map.count_failure();
        }
        r
    }

    fn insert_request(&self, req: &mut abi::Insert, arg: UserPtr) -> Result {
        let count = req.count as usize;
        if count == 0 {
            return Err(EINVAL);
        }
        if req.count > abi::MAX_BATCH {
            return Err(E2BIG);
        }
        let size = mem::size_of::<abi::Insert>();
        // The answer must have somewhere to go before anything changes: write the request back.
        req.first_id = 0;
        UserSlice::new(arg, size).writer().write(req)?;
        // The values, copied in before the lock: a copy from user space may fault and sleep.
        let addr = usize::try_from(req.values).map_err(|_| EFAULT)?;
        let mut values = KVec::from_elem(0u64, count, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(addr), mem::size_of_val(&values[..]))
            .reader()
            .read_slice(AsBytes::as_bytes_mut(&mut values[..]))?;
        // The caller's memory may have gone away since the check: then the batch is taken back.
        self.map.insert_reported(&values, |first| {
            req.first_id = first;
            UserSlice::new(arg, size).writer().write(req)
        })?;
        Ok(())
    }

    /// Reads an [`abi::Entry`] and checks its reserved field; returns it and a writer for the
    /// answer.
    fn read_entry(arg: UserPtr) -> Result<(abi::Entry, UserSliceWriter)> {
        let (mut reader, writer) =
            UserSlice::new(arg, mem::size_of::<abi::Entry>()).reader_writer();
        let e: abi::Entry = reader.read()?;
        if e.flags != 0 {
            return Err(EINVAL);
        }
        Ok((e, writer))
    }

    /// `IOCTL_GET`: fills in the value stored under the entry's ID.
    fn get(&self, arg: UserPtr) -> Result {
        let (mut e, mut writer) = Self::read_entry(arg)?;
        e.value = self.map.get(e.id).ok_or(ENOENT)?;
        writer.write(&e)
    }

    /// `IOCTL_REMOVE`: removes the ID and writes back its value; if that fails, it stays.
    fn remove(&self, arg: UserPtr) -> Result {
        let (mut e, mut writer) = Self::read_entry(arg)?;
        self.map.remove_reported(e.id, |value| {
            e.value = value;
            writer.write(&e)
        })?;
        Ok(())
    }
}

/// The module's node cache, destroyed when the module is.
struct NodeCache;

impl NodeCache {
    fn create() -> Result<Self> {
        NODES.init(
            c"rslab_idmap_node",
            // Not `SLAB_ACCOUNT`: the files charge their nodes themselves, in step 1.
            CacheOptions::new().sheaf_capacity(abi::MAX_BATCH),
        )?;
        Ok(Self)
    }
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        // SAFETY: Every open file holds a reference to the module (`own_file`), so the module
        // exits only once every file, and with it every file's map, is gone. `IdMapModule`
        // declares this field last: the device is gone too.
        unsafe { NODES.destroy() };
    }
}

/// The module. Fields drop in declaration order: the device first, the node cache last.
#[pin_data]
struct IdMapModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<IdMapFile>,
    _nodes: NodeCache,
}

impl kernel::InPlaceModule for IdMapModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // On an error, what was initialised is dropped again, in reverse order.
        try_pin_init!(Self {
            _nodes: NodeCache::create()?,
            // Last: once registered, the device can be opened.
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rslab_idmap",
            }),
        }? Error)
    }
}

/// rslab's tests of the driver: its KUnit suite, and the module of rslab's test build.
#[cfg(rslab_sheaf)]
#[path = "../tools/testing/idmap/rslab_idmap_kunit.rs"]
pub(crate) mod tests;

// SPDX-License-Identifier: GPL-2.0

//! Slab sheaves: allocations that cannot fail, reserved ahead of time.
//!
//! Code that must allocate where it can neither sleep nor fail (under a spinlock, in a critical
//! section) reserves the objects beforehand:
//!
//! 1. [`KmemCache::prefill`] returns a [`Sheaf`] holding at least the requested number of
//!    objects (`kmem_cache_prefill_sheaf()`; may sleep).
//! 2. [`Sheaf::claim`] turns one of those objects into a [`Slot`], still outside the critical
//!    section. Claiming is where the reservation is checked, so it is the only fallible step.
//! 3. Inside the critical section, [`Slot::alloc`] (or [`Slot::init`]) takes the object out of
//!    the sheaf (`kmem_cache_alloc_from_sheaf()`): it returns a [`SlabBox`] directly, with no
//!    error to handle, and never sleeps.
//! 4. Dropping the sheaf (or [`Sheaf::return_with`]) gives the unused objects back
//!    (`kmem_cache_return_sheaf()`).
// upstream-part refill: begin
//!    Or [`Sheaf::refill`] tops the sheaf up for the next round.
// upstream-part refill: end
//!
//! This is the slab counterpart of the kernel crate's `RBTreeNodeReservation`: allocate before
//! the lock, use under it. Objects taken from a sheaf belong to the cache, not to the sheaf, so
//! they may outlive it.
//!
//! This module exists when the driver's Kbuild includes rslab's `scripts/sheaf.mk` and the
//! kernel exports the five slab sheaf functions (stock 7.x kernels need
//! `tools/testing/patches/0001-mm-slub-export-the-slab-sheaf-API-to-modules.patch`; built into
//! the kernel, nothing is needed). Otherwise a stub stands in, and using it is a compile error
//! that says so.
//!
//! # Examples
//!
//! ```
//! use core::pin::Pin;
//! use kernel::{alloc::KBox, new_spinlock, sync::SpinLock};
//! use rslab::{
//!     cache::{CacheOptions, KmemCache, SlabBox},
//!     sheaf::{Sheaf, Slot},
//! };
//!
//! /// Two places for objects of the cache, behind a spinlock.
//! type Slots<'c> = SpinLock<[Option<SlabBox<'c, u64>>; 2]>;
//!
//! let cache = KmemCache::<u64>::new(c"rslab_doc_sheaf", CacheOptions::new())?;
//! let slots: Pin<KBox<Slots<'_>>> = KBox::pin_init(new_spinlock!([None, None]), GFP_KERNEL)?;
//!
//! // Outside the lock: may sleep, may fail.
//! let sheaf: Sheaf<'_, u64> = cache.prefill(2, GFP_KERNEL)?;
//! let a: Slot<'_, '_, u64> = sheaf.claim()?;
//! let b = sheaf.claim()?;
//! {
//!     let mut guard = slots.lock();
//!     // Inside: no failure path, no sleeping.
//!     guard[0] = Some(a.alloc(1));
//!     guard[1] = Some(b.alloc(2));
//! }
//! drop(sheaf); // Returns the unused objects with GFP_NOWAIT.
//! # Ok::<(), Error>(())
//! ```

use super::cache::{raw_gfp, slab_gfp, KmemCache, SlabBox, SLAB_BUG_MASK};
use core::{cell::Cell, convert::Infallible, mem, pin::Pin, ptr::NonNull};
// upstream-omit: begin
use super::cache::free_object;
use core::marker::PhantomData;
// upstream-omit: end
use kernel::{
    alloc::{AllocError, Flags},
    bindings,
    prelude::*,
};

pub use super::cache::MAX_SHEAF_OBJECTS;

/// Prefills and refills of more objects than this are asked for with `__GFP_NOWARN`.
///
/// A sheaf is one kmalloc object: its header and an array of pointers to its objects. Above
/// this many objects it is larger than `PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER` bytes (32 KiB with
/// 4 KiB pages), which the page allocator does not try hard to find: up to
/// [`MAX_SHEAF_OBJECTS`] that is an allocation of up to order 10, and when it fails the page
/// allocator prints an allocation-failure report with a call trace (`warn_alloc()`) unless the
/// caller passed `__GFP_NOWARN`. `kmem_cache_prefill_sheaf()` hands the caller's flags to that
/// allocation (and to the objects' allocation), so a prefill or refill this large passes
/// `__GFP_NOWARN` and reports its failure as the `ENOMEM` it returns.
const QUIET_SHEAF_OBJECTS: usize = ((kernel::page::PAGE_SIZE << bindings::PAGE_ALLOC_COSTLY_ORDER)
    - super::cache::SHEAF_HEADER_MAX)
    / mem::size_of::<*mut u8>();

/// The flags for a prefill or refill of `count` objects: `gfp`, with `__GFP_NOWARN` above
/// [`QUIET_SHEAF_OBJECTS`].
#[inline]
fn sheaf_gfp(count: u32, gfp: u32) -> u32 {
    if count as usize > QUIET_SHEAF_OBJECTS {
        gfp | bindings::__GFP_NOWARN
    } else {
        gfp
    }
}

fn sheaf_count(count: usize) -> Result<u32> {
    if count == 0 {
        return Err(EINVAL);
    }
    if count > MAX_SHEAF_OBJECTS {
        return Err(E2BIG);
    }
    // `MAX_SHEAF_OBJECTS` is far below `u32::MAX`.
    u32::try_from(count).map_err(|_| E2BIG)
}

impl<T> KmemCache<T> {
    /// Returns a sheaf holding at least `count` objects of this cache, `count` of them
    /// claimable.
    ///
    /// Counts above the cache's sheaf capacity get an "oversize" sheaf of their own. The kernel
    /// may put more objects in a sheaf than asked (a regular prefill fills it to the cache's
    /// capacity).
    // upstream-part refill: begin
    /// [`Sheaf::refill`] makes those claimable too.
    // upstream-part refill: end
    // upstream-omit: begin
    /// So does [`Sheaf::recount`].
    // upstream-omit: end
    ///
    /// Fails with `EINVAL` for a count of zero or for `flags` the slab allocator does not
    /// accept (see [`SLAB_BUG_MASK`]), `E2BIG` above [`MAX_SHEAF_OBJECTS`], and `ENOMEM` if the
    /// objects cannot be allocated (nothing is leaked then).
    ///
    /// A sheaf of more than about 4,000 objects (32 KiB of pointers with 4 KiB pages) needs
    /// contiguous memory that the page allocator may not find; such a prefill is made with
    /// `__GFP_NOWARN` added to `flags`, so that it fails with `ENOMEM` and no allocation-failure
    /// report.
    ///
    /// # Context
    ///
    /// May sleep if `flags` allows it.
    #[inline]
    pub fn prefill(&self, count: usize, flags: Flags) -> Result<Sheaf<'_, T>> {
        let count = sheaf_count(count)?;
        let gfp = sheaf_gfp(count, slab_gfp(flags).map_err(|_| EINVAL)?);
        // SAFETY: By `KmemCache`'s invariant the cache is live.
        let raw = unsafe { bindings::kmem_cache_prefill_sheaf(self.as_raw(), gfp, count) };
        // INVARIANT: A non-NULL result is a sheaf of this cache with at least `count` objects,
        // owned by the caller, with no slot.
        Ok(Sheaf {
            raw: NonNull::new(raw).ok_or(ENOMEM)?,
            cache: self,
            unclaimed: Cell::new(count as usize),
        })
    }
}

/// A sheaf of prefilled objects of a [`KmemCache<T>`].
///
/// A sheaf is used by one context at a time: it is [`Send`] (it may be prefilled on one CPU and
/// used or returned on another) but not [`Sync`].
///
/// # Invariants
///
/// - `raw` is a sheaf of `cache` obtained from `kmem_cache_prefill_sheaf()` (or replaced by
///   `kmem_cache_refill_sheaf()`), owned by this value until it is returned.
/// - The sheaf holds at least `unclaimed` objects more than there are live [`Slot`]s of it.
///
/// One counter, changed by claims and by unused slots, is all the bookkeeping: taking an object
/// out of the sheaf changes nothing here, and nothing asks the kernel for the sheaf's size
/// except where no slot exists (`&mut self`). An
/// allocation that KFENCE serves leaves the sheaf one object richer than counted, which only
/// errs on the safe side.
pub struct Sheaf<'c, T> {
    raw: NonNull<bindings::slab_sheaf>,
    cache: &'c KmemCache<T>,
    unclaimed: Cell<usize>,
}

// SAFETY: A sheaf is plain memory owned by this value; the slab functions that use it take the
// per-CPU locks they need themselves, so it may be used from any CPU, one at a time. The
// objects it hands out are `T`s, which need `T: Send` to move between threads.
unsafe impl<T: Send> Send for Sheaf<'_, T> {}

impl<'c, T> Sheaf<'c, T> {
    /// The number of objects in the sheaf, claimed or not (the kernel's count).
    pub fn len(&self) -> usize {
        // SAFETY: By the type invariant `raw` is a live sheaf.
        unsafe { bindings::kmem_cache_sheaf_size(self.raw.as_ptr()) as usize }
    }

    /// Whether the sheaf holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of objects that can still be claimed.
    #[inline]
    pub fn available(&self) -> usize {
        self.unclaimed.get()
    }

    // upstream-omit: begin
    /// Makes every object the sheaf holds claimable, the ones the kernel added beyond the
    /// request included, and returns how many that is.
    ///
    /// Taking `&mut self` means that no slot exists, so the kernel's count is exact.
    pub fn recount(&mut self) -> usize {
        let n = self.len();
        // INVARIANT: No slot is alive and the sheaf holds `n` objects.
        self.unclaimed.set(n);
        n
    }
    // upstream-omit: end

    /// Claims one object of the sheaf: the returned [`Slot`] allocates it without failing.
    ///
    /// Fails with [`AllocError`] when every claimable object is claimed already.
    #[inline]
    pub fn claim(&self) -> Result<Slot<'_, 'c, T>, AllocError> {
        let n = self.unclaimed.get();
        if n == 0 {
            return Err(AllocError);
        }
        // INVARIANT: One unclaimed object becomes the new slot's.
        self.unclaimed.set(n - 1);
        Ok(Slot {
            sheaf: self,
            // upstream-omit: begin
            gfp: 0,
            // upstream-omit: end
        })
    }

    // upstream-part claims: begin
    /// Claims `n` objects at once, all or nothing, and returns them as an iterator of
    /// [`Slot`]s.
    ///
    /// The count is checked once, here; taking the slots from the iterator costs nothing more
    /// than the loop that takes them. Slots the iterator still holds when it is dropped go back
    /// to the sheaf. Fails with [`AllocError`] when fewer than `n` objects can be claimed.
    ///
    /// # Examples
    ///
    /// ```
    /// use rslab::cache::{CacheOptions, KmemCache};
    ///
    /// let cache = KmemCache::<u32>::new(c"rslab_doc_claims", CacheOptions::new())?;
    /// let sheaf = cache.prefill(3, GFP_KERNEL)?;
    /// let claims = sheaf.claims(3)?;
    /// assert_eq!(claims.len(), 3);
    /// // Under a lock, typically: no failure path.
    /// let mut total = 0;
    /// for (i, slot) in claims.enumerate() {
    ///     total += *slot.alloc(i as u32 + 1);
    /// }
    /// assert_eq!(total, 6);
    /// assert!(sheaf.claims(1).is_err());
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn claims(&self, n: usize) -> Result<Claims<'_, 'c, T>, AllocError> {
        let left = self.unclaimed.get();
        if left < n {
            return Err(AllocError);
        }
        // INVARIANT: `n` unclaimed objects become the iterator's.
        self.unclaimed.set(left - n);
        Ok(Claims {
            sheaf: self,
            left: n,
        })
    }
    // upstream-part claims: end

    // upstream-omit: begin
    /// Claims `N` objects at once; all or nothing.
    pub fn claim_array<const N: usize>(&self) -> Result<[Slot<'_, 'c, T>; N], AllocError> {
        let left = self.unclaimed.get();
        if left < N {
            return Err(AllocError);
        }
        // INVARIANT: `N` unclaimed objects become the array's slots.
        self.unclaimed.set(left - N);
        Ok(core::array::from_fn(|_| Slot {
            sheaf: self,
            // upstream-omit: begin
            gfp: 0,
            // upstream-omit: end
        }))
    }
    // upstream-omit: end

    /// Allocates one object beyond any claim: fails with [`AllocError`] once every object is
    /// claimed or used. Never sleeps.
    pub fn alloc(&self, value: T) -> Result<SlabBox<'c, T>, AllocError> {
        Ok(self.claim()?.alloc(value))
    }

    // upstream-part refill: begin
    /// Tops the sheaf up to at least `count` objects. A sheaf that is already that full is left
    /// alone; one that must grow past its capacity is replaced by a larger one, with the same
    /// objects available. Afterwards every object the sheaf holds is claimable, the ones the
    /// kernel added beyond the request included.
    ///
    /// On failure (`ENOMEM`) the sheaf stays valid and keeps what it had, possibly with a few
    /// more objects. A count of zero is a no-op; above [`MAX_SHEAF_OBJECTS`] fails with
    /// `E2BIG`, and `flags` the slab allocator does not accept fail with `EINVAL`. As for
    /// [`KmemCache::prefill`], a refill to more than about 4,000 objects is made with
    /// `__GFP_NOWARN`.
    ///
    /// # Context
    ///
    /// May sleep if `flags` allows it.
    pub fn refill(&mut self, count: usize, flags: Flags) -> Result {
        if count == 0 {
            return Ok(());
        }
        let count = sheaf_count(count)?;
        let gfp = sheaf_gfp(count, slab_gfp(flags).map_err(|_| EINVAL)?);
        let mut raw = self.raw.as_ptr();
        // SAFETY: `raw` is a live sheaf of the cache; `&mut self` means no slot is alive, so
        // the kernel may replace the sheaf. On failure it leaves `raw` unchanged.
        let ret =
            unsafe { bindings::kmem_cache_refill_sheaf(self.cache.as_raw(), gfp, &mut raw, count) };
        // INVARIANT: `raw` is the (possibly new) sheaf owned by `self`; no slot is alive. After
        // a success it holds at least `count` objects; after a failure at least what it had.
        self.raw = NonNull::new(raw).ok_or(EINVAL)?;
        // INVARIANT: No slot is alive and the sheaf holds `self.len()` objects.
        self.unclaimed.set(self.len());
        kernel::error::to_result(ret)
    }
    // upstream-part refill: end

    /// Returns the sheaf and its unused objects to the cache, refilling it for reuse with
    /// `flags` if the kernel wants to keep it. Bits of `flags` the slab allocator does not
    /// accept ([`SLAB_BUG_MASK`]) are left out: returning cannot fail.
    ///
    /// # Context
    ///
    /// May sleep if `flags` allows it. Dropping a sheaf returns it with `GFP_NOWAIT`.
    pub fn return_with(self, flags: Flags) {
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: By the type invariant `raw` is owned by `this`, which is not used again.
        unsafe {
            bindings::kmem_cache_return_sheaf(
                this.cache.as_raw(),
                raw_gfp(flags) & !SLAB_BUG_MASK,
                this.raw.as_ptr(),
            )
        };
    }
}

impl<T> Drop for Sheaf<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `raw` is owned by `self`; no slot is alive since slots
        // borrow the sheaf.
        unsafe {
            bindings::kmem_cache_return_sheaf(
                self.cache.as_raw(),
                bindings::GFP_NOWAIT,
                self.raw.as_ptr(),
            )
        };
    }
}

/// One claimed object of a [`Sheaf`]: allocating it cannot fail and never sleeps.
///
/// Dropping an unused slot gives the claim back to the sheaf.
///
/// # Invariants
///
/// The slot's object is not counted in `sheaf.unclaimed`, so the sheaf holds an object for it.
pub struct Slot<'s, 'c, T> {
    sheaf: &'s Sheaf<'c, T>,
    // upstream-omit: begin
    gfp: u32,
    // upstream-omit: end
}

impl<'s, 'c, T> Slot<'s, 'c, T> {
    // upstream-omit: begin
    /// Zeroes the object's memory before it is initialised (`__GFP_ZERO`).
    pub fn zeroed(mut self) -> Self {
        self.gfp |= bindings::__GFP_ZERO;
        self
    }

    /// Charges the object to the current memory cgroup (`__GFP_ACCOUNT`) when it is taken; the
    /// charge is forced over the limit rather than fail. See [`Self::charge`] for a charge that
    /// can fail, before the lock.
    pub fn accounted(mut self) -> Self {
        self.gfp |= super::gfp::GFP_ACCOUNT;
        self
    }
    // upstream-omit: end

    fn take(self) -> NonNull<T> {
        let this = mem::ManuallyDrop::new(self);
        let sheaf = this.sheaf;
        // SAFETY: By `Sheaf`'s invariant `raw` is a live sheaf of `cache`; by this slot's
        // invariant it holds an unclaimed object, so the call returns one. The flags hold at
        // most `__GFP_ZERO` and `__GFP_ACCOUNT`, which is what the function accepts.
        let p = unsafe {
            super::helpers::kmem_cache_alloc_from_sheaf(
                sheaf.cache.as_raw(),
                this.gfp, // upstream-as: 0,
                sheaf.raw.as_ptr(),
            )
        };
        // INVARIANT: The slot is consumed and its object leaves the sheaf: the sheaf holds one
        // object and one slot less, so `unclaimed` still holds.
        match NonNull::new(p.cast()) {
            Some(p) => p,
            // The slab allocator guarantees as many allocations as the sheaf holds objects.
            None => panic!("rslab: kmem_cache_alloc_from_sheaf() broke its guarantee"),
        }
    }

    /// Takes the object and moves `value` into it.
    ///
    /// # Context
    ///
    /// Any context, including atomic; never sleeps.
    pub fn alloc(self, value: T) -> SlabBox<'c, T> {
        let cache = self.sheaf.cache;
        let p = self.take();
        // SAFETY: `p` is a fresh object of `cache`, valid for writes of a `T`.
        unsafe { p.as_ptr().write(value) };
        // SAFETY: `p` is an object of `cache` holding an initialised `T`, owned here.
        unsafe { SlabBox::from_object(p, cache) }
    }

    /// Takes the object and initialises it in place with an initialiser that cannot fail.
    ///
    /// # Context
    ///
    /// Any context, including atomic; never sleeps (as long as `init` does not).
    pub fn init(self, init: impl Init<T, Infallible>) -> SlabBox<'c, T> {
        let cache = self.sheaf.cache;
        let p = self.take();
        // SAFETY: `p` is a fresh object of `cache`, valid for writes of a `T`.
        let Ok(()) = unsafe { init.__init(p.as_ptr()) };
        // SAFETY: `p` is an object of `cache` holding an initialised `T`, owned here.
        unsafe { SlabBox::from_object(p, cache) }
    }

    /// Takes the object and initialises it in place with a pinned initialiser that cannot fail.
    ///
    /// # Context
    ///
    /// Any context, including atomic; never sleeps (as long as `init` does not).
    pub fn pin_init(self, init: impl PinInit<T, Infallible>) -> Pin<SlabBox<'c, T>> {
        let cache = self.sheaf.cache;
        let p = self.take();
        // SAFETY: `p` is a fresh object of `cache`, valid for writes of a `T`; it never moves
        // until it is freed.
        let Ok(()) = unsafe { super::pin_init_slot(p.as_ptr(), init) };
        // SAFETY: `p` is an object of `cache` holding an initialised `T`, owned here.
        SlabBox::into_pin(unsafe { SlabBox::from_object(p, cache) })
    }
}

// upstream-omit: begin
/// `GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL`: charge to the current memory cgroup, reclaim if
/// need be, and at the limit fail instead of invoking the cgroup's OOM killer.
const CHARGE_GFP: u32 = bindings::GFP_KERNEL_ACCOUNT | 1 << bindings::___GFP_RETRY_MAYFAIL_BIT;

impl<'s, 'c, T> Slot<'s, 'c, T> {
    /// Takes the object out of the sheaf now and charges it to the memory cgroup of the current
    /// task, so that the charge can fail here, before the lock, rather than be forced under it.
    ///
    /// The objects of a sheaf belong to the cache, uncharged, until they are taken, and the
    /// kernel forces the charge of an object taken from a sheaf (`kmem_cache_alloc_from_sheaf()`
    /// adds `__GFP_NOFAIL`): with [`Self::accounted`] or a `SLAB_ACCOUNT` cache, an object taken
    /// under a lock is charged even when that takes its cgroup over `memory.max`. A driver whose
    /// users decide how much it allocates charges the objects here instead, with
    /// `GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL`: at the cgroup's limit, after reclaim, this
    /// fails with [`AllocError`] (and frees the object) rather than invoke the cgroup's OOM
    /// killer. Writing a value into the charged object cannot fail and calls into nothing.
    ///
    /// On a `SLAB_ACCOUNT` cache the object is charged, forcibly, when it is taken, and this
    /// adds nothing: use a cache without [`CacheFlags::ACCOUNT`](super::cache::CacheFlags).
    ///
    /// # Examples
    ///
    /// ```
    /// use rslab::cache::{CacheOptions, KmemCache};
    ///
    /// let cache = KmemCache::<u64>::new(c"rslab_doc_charge", CacheOptions::new())?;
    /// let sheaf = cache.prefill(2, GFP_KERNEL)?;
    /// // Before the lock: may sleep, may fail at the caller's memory cgroup limit.
    /// let object = sheaf.claim()?.charge()?;
    /// // Under the lock: no failure path, no call into the allocator.
    /// let boxed = object.write(7);
    /// assert_eq!(*boxed, 7);
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Context
    ///
    /// Process context; may sleep.
    pub fn charge(mut self) -> Result<Charged<'c, T>, AllocError> {
        // Taken uncharged; charged below, where the charge may fail.
        self.gfp &= !super::gfp::GFP_ACCOUNT;
        // INVARIANT: A fresh object of the sheaf's cache, which lives for `'c`, owned by the new
        // value from here on, so that a failed charge frees it.
        let object = Charged {
            ptr: self.take(),
            _cache: PhantomData,
        };
        // SAFETY: `object.ptr` is a live object of the sheaf's cache; `CHARGE_GFP` is a valid
        // `gfp_t` for a context that may sleep.
        if unsafe { bindings::kmem_cache_charge(object.ptr.as_ptr().cast(), CHARGE_GFP) } {
            Ok(object)
        } else {
            Err(AllocError)
        }
    }
}

/// An object taken from a sheaf and charged to a memory cgroup before the lock
/// ([`Slot::charge`]). Writing a value into it cannot fail; dropping it frees the object and
/// its charge.
///
/// # Invariants
///
/// `ptr` is the start of an object of a cache that lives at least for `'c`, allocated and not
/// initialised, owned by this value.
pub struct Charged<'c, T> {
    ptr: NonNull<T>,
    _cache: PhantomData<&'c KmemCache<T>>,
}

impl<'c, T> Charged<'c, T> {
    /// Moves `value` into the object.
    ///
    /// # Context
    ///
    /// Any context, including atomic; never sleeps.
    pub fn write(self, value: T) -> SlabBox<'c, T> {
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: By the type invariant `ptr` is a fresh object, valid for writes of a `T`.
        unsafe { this.ptr.as_ptr().write(value) };
        // SAFETY: By the type invariant `ptr` is an object of a cache that lives for `'c`, now
        // holding an initialised `T`; its ownership moves from `this`, which is not dropped, to
        // the box.
        unsafe { SlabBox::from_owned(this.ptr) }
    }
}

impl<T> Drop for Charged<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `ptr` is an object of a live cache owned by `self`, and
        // it holds no value to drop.
        unsafe { free_object(self.ptr) };
    }
}
// upstream-omit: end

// upstream-part claims: begin
/// Claimed objects of a [`Sheaf`], taken one [`Slot`] at a time; see [`Sheaf::claims`].
///
/// # Invariants
///
/// `left` objects of the sheaf are claimed for this iterator and not counted in
/// `sheaf.unclaimed`.
pub struct Claims<'s, 'c, T> {
    sheaf: &'s Sheaf<'c, T>,
    left: usize,
}

impl<'s, 'c, T> Iterator for Claims<'s, 'c, T> {
    type Item = Slot<'s, 'c, T>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // INVARIANT: One of the iterator's claims becomes the slot's.
        self.left -= 1;
        Some(Slot {
            sheaf: self.sheaf,
            // upstream-omit: begin
            gfp: 0,
            // upstream-omit: end
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for Claims<'_, '_, T> {}

impl<T> Drop for Claims<'_, '_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.left != 0 {
            // INVARIANT: The claims not taken go back to the sheaf.
            self.sheaf
                .unclaimed
                .set(self.sheaf.unclaimed.get() + self.left);
        }
    }
}
// upstream-part claims: end

impl<T> Drop for Slot<'_, '_, T> {
    fn drop(&mut self) {
        // INVARIANT: The unused claim goes back to the sheaf.
        self.sheaf.unclaimed.set(self.sheaf.unclaimed.get() + 1);
    }
}

#[cfg(rslab_sheaf)]
#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_sheaf)]
mod tests {
    use super::super::cache::CacheOptions;
    use super::super::check;
    use super::*;
    // upstream-omit: begin
    use super::super::cache::CacheFlags;
    use core::mem::MaybeUninit;
    // upstream-omit: end
    use kernel::{new_spinlock, sync::SpinLock};
    use pin_init::stack_pin_init;

    fn cache(name: &CStr) -> Result<KmemCache<[u64; 8]>> {
        KmemCache::new(name, CacheOptions::new().sheaf_capacity(16))
    }

    /// Claims `n` slots outside the lock, then allocates them all under a spinlock.
    fn use_under_lock<'c>(
        sheaf: &Sheaf<'c, [u64; 8]>,
        n: usize,
    ) -> Result<KVec<SlabBox<'c, [u64; 8]>>> {
        let mut slots = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            slots.push(sheaf.claim().map_err(|_| ENOMEM)?, GFP_KERNEL)?;
        }
        let mut out = KVec::with_capacity(n, GFP_KERNEL)?;
        stack_pin_init!(let lock: SpinLock<u64> = new_spinlock!(0));
        {
            let mut guard = lock.lock();
            // Atomic context: a sleep here would be reported by CONFIG_DEBUG_ATOMIC_SLEEP.
            for (i, slot) in slots.drain_all().enumerate() {
                let obj = slot.alloc([i as u64; 8]);
                *guard += obj[0];
                // `out` has room for `n`: this push does not allocate.
                out.push(obj, GFP_NOWAIT)?;
            }
        }
        Ok(out)
    }

    #[test]
    fn prefill_counts() -> Result {
        let c = cache(c"rslab_test_prefill")?;
        check!(
            matches!(c.prefill(0, GFP_KERNEL), Err(e) if e == EINVAL),
            "prefill(0)"
        );
        check!(
            matches!(c.prefill(MAX_SHEAF_OBJECTS + 1, GFP_KERNEL), Err(e) if e == E2BIG),
            "prefill past the maximum"
        );
        check!(
            matches!(c.prefill(u32::MAX as usize + 1, GFP_KERNEL), Err(e) if e == E2BIG),
            "prefill past u32"
        );
        let one = c.prefill(1, GFP_KERNEL)?;
        let capacity = one.len();
        drop(one);
        if capacity == 1 {
            // With `slab_debug` every cache is a debug cache: no per-CPU sheaves, capacity 0,
            // and every prefill is oversize, holding exactly what was asked.
            pr_info!("rslab_sheaf: debug cache, every prefill is oversize\n");
        } else {
            // A regular prefill fills the sheaf to the cache's capacity, at least the minimum.
            check!(
                capacity >= 16,
                "capacity {} below the requested 16",
                capacity
            );
        }
        for count in [1, 16, capacity, capacity + 1, 1000] {
            let s = c.prefill(count, GFP_KERNEL)?;
            check!(s.len() >= count, "prefill({}) holds {}", count, s.len());
            if count > capacity {
                check!(
                    s.len() == count,
                    "oversize prefill({}) holds {}",
                    count,
                    s.len()
                );
            }
            let objs = use_under_lock(&s, count)?;
            check!(objs.len() == count, "allocated {}", objs.len());
            drop(objs);
        }
        pr_info!(
            "rslab_sheaf: sheaf capacity {} for a requested 16\n",
            capacity
        );
        Ok(())
    }

    #[test]
    fn exactly_the_reservation_then_an_error() -> Result {
        let c = cache(c"rslab_test_exact")?;
        let mut s = c.prefill(40, GFP_KERNEL)?;
        // What was asked for is claimable; what the kernel added only after a refill.
        check!(
            s.available() == 40,
            "available {} after prefill(40)",
            s.available()
        );
        // upstream-omit: begin
        let n = s.recount();
        check!(n == s.len() && s.available() == n, "recount {}", n);
        // upstream-omit: end
        s.refill(40, GFP_KERNEL)?;
        let n = s.available();
        check!(n == s.len() && n >= 40, "{} available after a refill", n);
        let objs = use_under_lock(&s, n)?;
        check!(
            s.is_empty() && s.available() == 0,
            "sheaf not empty: {}",
            s.len()
        );
        check!(s.claim().is_err(), "claim beyond the reservation");
        check!(s.alloc([0; 8]).is_err(), "alloc beyond the reservation");
        check!(
            objs.iter().enumerate().all(|(i, o)| o[7] == i as u64),
            "contents"
        );
        Ok(())
    }

    #[test]
    fn claims_are_counted_and_given_back() -> Result {
        let c = cache(c"rslab_test_claims")?;
        let s = c.prefill(3, GFP_KERNEL)?;
        let n = s.available();
        check!(n == 3, "available {} after prefill(3)", n);
        {
            let _a = s.claim().map_err(|_| ENOMEM)?;
            let _b = s.claim().map_err(|_| ENOMEM)?;
            check!(s.available() == n - 2, "available {}", s.available());
        }
        check!(s.available() == n, "unused claims not given back");
        // upstream-omit: begin
        {
            let [_a, _b, _c] = s.claim_array::<3>().map_err(|_| ENOMEM)?;
            check!(s.available() == n - 3, "available {}", s.available());
        }
        check!(s.available() == n, "unused claims not given back");
        // `[Slot; N]` lives on the stack: keep N small, just above what the sheaf holds.
        check!(
            n < 128,
            "sheaf of {} objects; the over-claim below needs more",
            n
        );
        check!(s.claim_array::<128>().is_err(), "over-claim");
        check!(s.available() == n, "failed claim_array changed the count");
        // upstream-omit: end
        // A batch of claims: checked once, given back unless taken.
        {
            let mut claims = s.claims(3).map_err(|_| ENOMEM)?;
            check!(s.available() == 0 && claims.len() == 3, "claims(3)");
            check!(s.claims(1).is_err(), "claims past the sheaf");
            let one = claims.next().ok_or(ENOMEM)?.alloc([1; 8]);
            check!(one[0] == 1 && claims.len() == 2, "one slot taken");
        }
        check!(s.available() == 2, "untaken claims not given back");
        check!(s.claims(4).is_err() && s.available() == 2, "failed claims");
        Ok(())
    }

    // upstream-omit: begin
    #[test]
    fn charged_objects_leave_the_sheaf_before_the_lock() -> Result {
        let c = cache(c"rslab_test_charge")?;
        let s = c.prefill(3, GFP_KERNEL)?;
        let len = s.len();
        // KUnit runs in the root memory cgroup, where a charge cannot fail.
        let a = s
            .claim()
            .map_err(|_| ENOMEM)?
            .charge()
            .map_err(|_| ENOMEM)?;
        let b = s
            .claim()
            .map_err(|_| ENOMEM)?
            .accounted()
            .charge()
            .map_err(|_| ENOMEM)?;
        // Taken out of the sheaf when charged, not when written.
        check!(
            s.len() == len - 2 && s.available() == 1,
            "sheaf holds {} with {} available",
            s.len(),
            s.available()
        );
        let boxed = a.write([5; 8]);
        check!(boxed[0] == 5 && boxed[7] == 5, "written value");
        // Dropped unwritten: freed, and the sheaf is not touched.
        drop(b);
        check!(s.len() == len - 2, "sheaf holds {}", s.len());
        Ok(())
    }

    // upstream-omit: end

    #[test]
    fn refill_smaller_equal_larger() -> Result {
        let c = cache(c"rslab_test_refill")?;
        let mut s = c.prefill(10, GFP_KERNEL)?;
        let cap = s.len();
        let used = use_under_lock(&s, 5)?;
        let now = s.len();
        s.refill(1, GFP_KERNEL)?;
        check!(
            s.len() == now,
            "refill smaller changed {} -> {}",
            now,
            s.len()
        );
        s.refill(now, GFP_KERNEL)?;
        check!(
            s.len() == now,
            "refill equal changed {} -> {}",
            now,
            s.len()
        );
        s.refill(cap, GFP_KERNEL)?;
        check!(s.len() >= cap, "refill to capacity: {}", s.len());
        s.refill(cap + 50, GFP_KERNEL)?;
        check!(s.len() >= cap + 50, "refill past capacity: {}", s.len());
        s.refill(0, GFP_KERNEL)?;
        check!(
            matches!(s.refill(MAX_SHEAF_OBJECTS + 1, GFP_KERNEL), Err(e) if e == E2BIG),
            "refill past the maximum"
        );
        let more = use_under_lock(&s, cap + 50)?;
        drop((used, more));
        Ok(())
    }

    // upstream-omit: begin
    #[test]
    fn the_sheaf_header_fits_its_allowance() -> Result {
        // A debug cache has no per-CPU sheaves, so a prefill of `n` objects allocates a sheaf of
        // exactly `struct_size(sheaf, objects, n)` bytes with kmalloc. Its kmalloc bucket, for
        // `n` from 1 to 64, pins the header's size down: the smallest `ksize - n * pointer`.
        let c = KmemCache::<u64>::new(
            c"rslab_test_sheaf_header",
            CacheOptions::new().flags(CacheFlags::DEBUG | CacheFlags::NO_MERGE),
        )?;
        let ptr = mem::size_of::<*mut u8>();
        let mut used = [0usize; 64];
        for (i, u) in used.iter_mut().enumerate() {
            let s = c.prefill(i + 1, GFP_KERNEL)?;
            // SAFETY: An oversize sheaf is a live kmalloc object until it is returned below.
            *u = unsafe { super::super::buckets::ksize(s.raw.cast()) };
        }
        let header = used
            .iter()
            .enumerate()
            .map(|(i, &u)| u - (i + 1) * ptr)
            .min()
            .ok_or(EINVAL)?;
        for (i, &u) in used.iter().enumerate() {
            check!(
                u == super::super::buckets::roundup(header + (i + 1) * ptr),
                "sheaf of {} objects in {} bytes: header is not {}",
                i + 1,
                u,
                header
            );
        }
        pr_info!("rslab_sheaf: sheaf header {} bytes\n", header);
        check!(
            header > 0 && header <= super::super::cache::SHEAF_HEADER_MAX,
            "sheaf header of {} bytes",
            header
        );
        Ok(())
    }

    // upstream-omit: end

    #[test]
    fn flags_the_slab_rejects_are_errors() -> Result {
        let c = cache(c"rslab_test_sheaf_gfp")?;
        let bad = GFP_KERNEL | __GFP_HIGHMEM;
        check!(
            matches!(c.prefill(4, bad), Err(e) if e == EINVAL),
            "prefill accepted __GFP_HIGHMEM"
        );
        let mut s = c.prefill(4, GFP_KERNEL)?;
        check!(
            matches!(s.refill(500, bad), Err(e) if e == EINVAL),
            "refill accepted __GFP_HIGHMEM"
        );
        check!(s.available() >= 4, "failed refill changed the sheaf");
        let a = use_under_lock(&s, 4)?;
        // Returning cannot fail: the bad bits are left out.
        s.return_with(bad);
        let big = c.prefill(500, GFP_KERNEL)?;
        big.return_with(!GFP_KERNEL);
        drop(a);
        Ok(())
    }

    #[test]
    fn return_full_partial_empty() -> Result {
        let c = cache(c"rslab_test_return")?;
        let full = c.prefill(8, GFP_KERNEL)?;
        full.return_with(GFP_KERNEL);
        let partial = c.prefill(8, GFP_KERNEL)?;
        let a = use_under_lock(&partial, 3)?;
        partial.return_with(GFP_KERNEL);
        let mut empty = c.prefill(8, GFP_KERNEL)?;
        // Every object claimable, the ones beyond the request included.
        empty.refill(8, GFP_KERNEL)?;
        let n = empty.available();
        let b = use_under_lock(&empty, n)?;
        empty.return_with(GFP_KERNEL);
        let oversize = c.prefill(500, GFP_KERNEL)?;
        let d = use_under_lock(&oversize, 7)?;
        drop(oversize); // GFP_NOWAIT return of an oversize sheaf.
        drop((a, b, d));
        Ok(())
    }

    #[test]
    fn objects_outlive_their_sheaf() -> Result {
        let c = cache(c"rslab_test_outlive")?;
        let objs = {
            let s = c.prefill(4, GFP_KERNEL)?;
            use_under_lock(&s, 4)?
        };
        check!(
            objs.iter().enumerate().all(|(i, o)| o[0] == i as u64),
            "contents after the sheaf was returned"
        );
        drop(objs);
        Ok(())
    }

    // upstream-omit: begin
    #[test]
    fn zeroed_and_accounted() -> Result {
        let c = KmemCache::<MaybeUninit<[u8; 128]>>::new(c"rslab_test_zero", CacheOptions::new())?;
        let s = c.prefill(4, GFP_KERNEL)?;
        let [a, b] = s.claim_array::<2>().map_err(|_| ENOMEM)?;
        // `MaybeUninit` needs no initialisation, so the memory is exactly what the slab gave.
        let z = a.zeroed().alloc(MaybeUninit::uninit());
        // SAFETY: `__GFP_ZERO` zeroed all 128 bytes.
        let bytes = unsafe { z.assume_init_ref() };
        check!(
            bytes.iter().all(|&x| x == 0),
            "__GFP_ZERO object not zeroed"
        );
        let acc = b.accounted().zeroed().alloc(MaybeUninit::uninit());
        // SAFETY: `__GFP_ZERO` zeroed all 128 bytes.
        let bytes = unsafe { acc.assume_init_ref() };
        check!(bytes.iter().all(|&x| x == 0), "accounted object not zeroed");
        Ok(())
    }

    #[test]
    fn debug_cache_sheaves_are_oversize() -> Result {
        let c = KmemCache::<[u64; 8]>::new(
            c"rslab_test_sheaf_debug",
            CacheOptions::new()
                .sheaf_capacity(16)
                .flags(CacheFlags::DEBUG | CacheFlags::NO_MERGE),
        )?;
        let mut s = c.prefill(5, GFP_KERNEL)?;
        // Capacity 0: every prefill is oversize and holds exactly what was asked.
        check!(s.len() == 5, "debug cache sheaf holds {}", s.len());
        let a = use_under_lock(&s, 5)?;
        // An oversize sheaf refills to its own capacity, the 5 it was created with.
        s.refill(3, GFP_KERNEL)?;
        check!(s.len() == 5, "refill on a debug cache: {}", s.len());
        let b = use_under_lock(&s, 5)?;
        drop((a, b, s));
        Ok(())
    }

    // upstream-omit: end

    #[test]
    fn large_sheaves_fail_quietly() -> Result {
        // Above `QUIET_SHEAF_OBJECTS`, and only there, the request carries `__GFP_NOWARN`.
        let quiet = QUIET_SHEAF_OBJECTS as u32;
        check!(
            quiet >= 1000 && (quiet as usize) < MAX_SHEAF_OBJECTS,
            "QUIET_SHEAF_OBJECTS is {}",
            quiet
        );
        let nowarn = bindings::__GFP_NOWARN;
        let kernel = bindings::GFP_KERNEL;
        check!(sheaf_gfp(quiet, kernel) == kernel, "NOWARN at {}", quiet);
        check!(
            sheaf_gfp(quiet + 1, kernel) == kernel | nowarn,
            "no NOWARN at {}",
            quiet + 1
        );
        // An impossible prefill and refill without `__GFP_NOWARN` from the caller: 64 KiB
        // objects, far more than a test guest's memory, with `GFP_NOWAIT` so that nothing
        // reclaims or invokes the OOM killer, less its `__GFP_NOWARN` (7.x's `GFP_NOWAIT`
        // includes it), so that only the library's flag keeps them quiet. They must fail with
        // ENOMEM and print no allocation-failure report.
        // upstream-omit: begin
        // The runner fails a boot with a call trace.
        // upstream-omit: end
        let loud = GFP_NOWAIT & !__GFP_NOWARN;
        let c = KmemCache::<[u8; 65536]>::new(c"rslab_test_quiet", CacheOptions::new())?;
        check!(
            matches!(c.prefill(100_000, loud), Err(e) if e == ENOMEM),
            "impossible prefill did not fail with ENOMEM"
        );
        let mut s = c.prefill(1, GFP_KERNEL)?;
        check!(
            matches!(s.refill(100_000, loud), Err(e) if e == ENOMEM),
            "impossible refill did not fail with ENOMEM"
        );
        check!(s.available() >= 1, "failed refill lost the sheaf's objects");
        // Initialised in place: a 64 KiB value must never pass through the stack.
        let one = s
            .claim()
            .map_err(|_| ENOMEM)?
            .init(pin_init::init_zeroed::<[u8; 65536]>());
        check!(one[0] == 0, "contents");
        drop(one);
        Ok(())
    }

    #[test]
    fn prefill_failure_is_enomem_and_leaks_nothing() -> Result {
        // 64 KiB objects; 100,000 of them cannot fit a test guest's memory. GFP_NOWAIT fails
        // instead of invoking the OOM killer.
        let c = KmemCache::<[u8; 65536]>::new(c"rslab_test_enomem", CacheOptions::new())?;
        let r = c.prefill(100_000, GFP_NOWAIT | __GFP_NOWARN);
        check!(
            matches!(r, Err(e) if e == ENOMEM),
            "impossible prefill did not fail with ENOMEM"
        );
        // The cache must still work, and be destroyed without "objects remaining".
        let s = c.prefill(2, GFP_KERNEL)?;
        let a = s.claim().map_err(|_| ENOMEM)?;
        // Initialised in place: a 64 KiB value must never pass through the stack.
        let obj = a.init(pin_init::init_zeroed::<[u8; 65536]>());
        check!(obj[65535] == 0, "contents");
        Ok(())
    }
}

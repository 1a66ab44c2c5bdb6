// SPDX-License-Identifier: GPL-2.0

//! A kmalloc [`Allocator`] for [`Box`] and [`Vec`] on the extended alignment guarantee.
//!
//! [`Kmalloc`] asks kmalloc for `layout.size()` rounded up to a multiple of `layout.align()`
//! (see [`layout`](super::layout)) and nothing more: a 96-byte, 32-aligned object lands in
//! `kmalloc-96`, not `kmalloc-128`. Layouts kmalloc cannot serve (larger than
//! `KMALLOC_MAX_SIZE`) fail with [`AllocError`] before the allocator is called, so they never
//! trigger the page allocator's warning.
//!
//! Flags the slab allocator does not accept (`__GFP_HIGHMEM` and the rest of
//! [`SLAB_BUG_MASK`](super::cache::SLAB_BUG_MASK)) fail with [`AllocError`] too, where the
//! kernel would warn "Unexpected gfp ... Fix your code!" with a stack dump.
//!
//! # At C's cost
//!
//! A fresh object is allocated the way C's `kmalloc()` allocates it, and freed the way
//! `kfree()` frees it:
//!
//! - [`Allocator::alloc`] (what [`Box`] calls, with the layout of a type, known at compile time)
//!   picks the cache as `kmalloc()` does for a compile-time size: [`kmalloc_type`] from the
//!   flags, [`kmalloc_index`] from the size, then `kmalloc_caches[type][index]`. With constant
//!   flags and layout all of it folds to one load, and the call is `__kmalloc_cache_noprof()`,
//!   or `__kmalloc_large_noprof()` above the slab range. (Given a layout computed at run time,
//!   the same choice is made at run time, a few comparisons: stable Rust cannot ask whether a
//!   value is a compile-time constant, as C's `kmalloc()` does with `__builtin_constant_p()`.)
//! - [`Allocator::realloc`] from nothing (a [`Vec`]'s first allocation, of a run-time size) calls
//!   `kmalloc()`'s run-time-size entry point, `__kmalloc_noprof()`.
//! - [`Allocator::free`], and a reallocation to size 0, call `kfree()`.
//! - Resizing a live object is delegated to the kernel crate's own
//!   [`kernel::alloc::allocator::Kmalloc`] (`krealloc`) with a layout whose size is already a
//!   multiple of its alignment, so its own padding is a no-op; so is an allocation on an explicit
//!   NUMA node, whose number is private to the kernel crate.
//!
//! Which function makes the call depends on the kernel's configuration:
//!
//! - Without `CONFIG_MEM_ALLOC_PROFILING` and `CONFIG_KMALLOC_PARTITION_CACHES`, the kernel's
//!   own: `kmalloc()` adds nothing around them then.
//! - Otherwise `kmalloc()` wraps the call in `alloc_hooks()`, so that allocation profiling
//!   (`/proc/allocinfo`) attributes it to its call site, or derives a partition token from that
//!   site; only C code can. Out of tree, every module that includes the library compiles
//!   `rust/lib/helpers.c` into itself (the same calls in `alloc_hooks()`) and sets
//!   `cfg(rslab_helpers)` for its Rust objects (see `rust/Kbuild`). Without that file (in the
//!   tree), an allocation goes through the kernel crate's helper, `krealloc_node_align()` of
//!   NULL, which has the hooks too.
//!
//! With `CONFIG_KMALLOC_PARTITION_CACHES`, C's choice among the normal caches depends on a
//! token from its call site: with `KMALLOC_PARTITION_RANDOM` a hash of the call site's address
//! and a per-boot seed, with `KMALLOC_PARTITION_TYPED` the allocated type as Clang infers it
//! from the C expression. Neither exists for a Rust call site, so there [`kmalloc_type`] returns
//! `None` for flags that select a normal cache, and the allocation takes the run-time-size
//! entry point, with the token of the C function's own call site (a plain size to Clang). The
//! DMA, reclaimable and accounted caches do not depend on the token: their choice stays a
//! compile-time one.
//!
//! # Examples
//!
//! ```
//! use rslab::kmalloc::{RsBox, RsVec};
//!
//! #[repr(align(32))]
//! struct Line([u8; 96]);
//!
//! let b = RsBox::new(Line([0; 96]), GFP_KERNEL)?;
//! assert_eq!((&raw const *b) as usize % 32, 0);
//!
//! let mut v = RsVec::new();
//! v.push(1u32, GFP_KERNEL)?;
//! v.extend_from_slice(&[2, 3], GFP_KERNEL)?;
//! assert_eq!(&v[..], &[1, 2, 3]);
//! # Ok::<(), Error>(())
//! ```

use super::{gfp, layout::kmalloc_size};
use core::{alloc::Layout, ptr::NonNull};
use kernel::{
    alloc::{allocator, AllocError, Allocator, Box, Flags, NumaNode, Vec},
    bindings,
};

/// kmalloc's smallest object (`KMALLOC_MIN_SIZE`).
pub const KMALLOC_MIN_SIZE: usize = 1 << bindings::KMALLOC_SHIFT_LOW;

/// The kmalloc cache types of this kernel (`enum kmalloc_cache_type`), as indices of
/// `kmalloc_caches`. Types a configuration does not have alias `NORMAL`, as in C.
pub mod cache_type {
    use kernel::bindings;

    /// `KMALLOC_NORMAL`: neither accounted, reclaimable nor DMA.
    pub const NORMAL: usize = bindings::kmalloc_cache_type_KMALLOC_NORMAL as usize;
    /// `KMALLOC_RECLAIM`: `__GFP_RECLAIMABLE`.
    pub const RECLAIM: usize = bindings::kmalloc_cache_type_KMALLOC_RECLAIM as usize;
    /// `KMALLOC_DMA`: `__GFP_DMA` (with `CONFIG_ZONE_DMA`).
    pub const DMA: usize = bindings::kmalloc_cache_type_KMALLOC_DMA as usize;
    /// `KMALLOC_CGROUP`: `__GFP_ACCOUNT` (with `CONFIG_MEMCG`).
    pub const CGROUP: usize = bindings::kmalloc_cache_type_KMALLOC_CGROUP as usize;
    /// The number of types (`NR_KMALLOC_TYPES`).
    pub const COUNT: usize = bindings::kmalloc_cache_type_NR_KMALLOC_TYPES as usize;
}

/// `__GFP_DMA`.
const GFP_DMA: u32 = 1 << bindings::___GFP_DMA_BIT;
/// `__GFP_RECLAIMABLE`.
const GFP_RECLAIMABLE: u32 = 1 << bindings::___GFP_RECLAIMABLE_BIT;

/// The flags that take an allocation out of `KMALLOC_NORMAL` (`KMALLOC_NOT_NORMAL_BITS`).
const NOT_NORMAL_BITS: u32 = GFP_RECLAIMABLE
    | if cfg!(CONFIG_ZONE_DMA) { GFP_DMA } else { 0 }
    | if cfg!(CONFIG_MEMCG) {
        gfp::GFP_ACCOUNT
    } else {
        0
    };

/// The kmalloc cache type C's `kmalloc_type()` picks for the raw `gfp_t` bits `flags`, or
/// `None` where C's choice depends on its call site's partition token
/// (`CONFIG_KMALLOC_PARTITION_CACHES` and flags that select a normal cache).
///
/// # Examples
///
/// ```
/// use kernel::bindings;
/// use rslab::{gfp, kmalloc::{cache_type, kmalloc_type}};
///
/// let normal = if cfg!(CONFIG_KMALLOC_PARTITION_CACHES) {
///     None
/// } else {
///     Some(cache_type::NORMAL)
/// };
/// assert_eq!(kmalloc_type(bindings::GFP_KERNEL), normal);
/// assert_eq!(kmalloc_type(bindings::GFP_ATOMIC | bindings::__GFP_ZERO), normal);
/// if cfg!(CONFIG_MEMCG) {
///     assert_eq!(kmalloc_type(gfp::raw(GFP_KERNEL_ACCOUNT)), Some(cache_type::CGROUP));
/// }
/// ```
#[inline]
pub const fn kmalloc_type(flags: u32) -> Option<usize> {
    if flags & NOT_NORMAL_BITS == 0 {
        return if cfg!(CONFIG_KMALLOC_PARTITION_CACHES) {
            None
        } else {
            Some(cache_type::NORMAL)
        };
    }
    // In C's order of priority: DMA, reclaimable, accounted.
    Some(if cfg!(CONFIG_ZONE_DMA) && flags & GFP_DMA != 0 {
        cache_type::DMA
    } else if !cfg!(CONFIG_MEMCG) || flags & GFP_RECLAIMABLE != 0 {
        cache_type::RECLAIM
    } else {
        cache_type::CGROUP
    })
}

/// The index in `kmalloc_caches[type]` of the cache C's `kmalloc_index()` picks for a request
/// of `size` bytes, `1 <= size <= KMALLOC_MAX_CACHE_SIZE`: 1 for 65 to 96 bytes, 2 for 129 to
/// 192 (where `KMALLOC_MIN_SIZE` allows those caches), otherwise `n` for `2^(n-1) + 1` to
/// `2^n`. A boot-time minimum alignment that rules a cache out makes its entry point to the next
/// larger one, in C as here.
///
/// # Examples
///
/// ```
/// use rslab::kmalloc::{kmalloc_index, KMALLOC_MIN_SIZE};
///
/// assert_eq!(kmalloc_index(1), KMALLOC_MIN_SIZE.trailing_zeros() as usize);
/// assert_eq!(kmalloc_index(128), 7);
/// assert_eq!(kmalloc_index(4096), 12);
/// if KMALLOC_MIN_SIZE <= 32 {
///     assert_eq!(kmalloc_index(96), 1);
/// }
/// ```
#[inline]
pub const fn kmalloc_index(size: usize) -> usize {
    if size <= KMALLOC_MIN_SIZE {
        return bindings::KMALLOC_SHIFT_LOW as usize;
    }
    if KMALLOC_MIN_SIZE <= 32 && size > 64 && size <= 96 {
        return 1;
    }
    if KMALLOC_MIN_SIZE <= 64 && size > 128 && size <= 192 {
        return 2;
    }
    // The smallest `n` with `size <= 2^n`; `size >= 2` here.
    (usize::BITS - (size - 1).leading_zeros()) as usize
}

/// The kmalloc cache C's `kmalloc()` uses for `size` bytes (`1 <= size <=
/// KMALLOC_MAX_CACHE_SIZE`) with the raw flags `flags`, or `None` where C's choice depends on
/// its call site ([`kmalloc_type`]).
///
/// # Examples
///
/// ```
/// use kernel::bindings;
/// use rslab::kmalloc;
///
/// if !cfg!(CONFIG_KMALLOC_PARTITION_CACHES) {
///     let s = kmalloc::cache(96, bindings::GFP_KERNEL).ok_or(EINVAL)?;
///     assert!(!s.is_null());
/// }
/// # Ok::<(), Error>(())
/// ```
#[inline]
pub fn cache(size: usize, flags: u32) -> Option<*mut bindings::kmem_cache> {
    let t = kmalloc_type(flags)?;
    let caches = kmalloc_caches()?;
    // For a size and type `kmalloc_index()` and `kmalloc_type()` can produce, the entry is set:
    // `create_kmalloc_caches()` fills index 1 and 2 (when `KMALLOC_MIN_SIZE` allows them) and
    // `KMALLOC_SHIFT_LOW` to `KMALLOC_SHIFT_HIGH` of every type, an alias where a cache is not
    // needed. `get` keeps an out-of-range argument from panicking.
    caches.get(t)?.get(kmalloc_index(size)).copied()
}

/// The kernel's `kmalloc_caches`: the kmalloc caches by type and index. Always `Some` (the
/// address of a static is not NULL; with it, the check folds away).
#[inline(always)]
fn kmalloc_caches() -> Option<&'static [bindings::kmem_buckets; cache_type::COUNT]> {
    // SAFETY: `kmalloc_caches` is `__ro_after_init` (mm/slab_common.c): written while the kernel
    // boots, before any module is loaded, and never again, so a shared reference cannot alias a
    // write.
    unsafe { (&raw const bindings::kmalloc_caches).as_ref() }
}

/// The calls behind a fresh allocation, each the call C's `kmalloc()` makes: `cache()` is
/// `__kmalloc_cache_noprof()`, `large()` `__kmalloc_large_noprof()`, `var()` (a run-time size)
/// `__kmalloc_noprof()`.
///
/// Without allocation profiling and partitioned caches these are the kernel's functions
/// themselves: C's `alloc_hooks()` is empty then, and C's call is exactly this one.
#[cfg(not(any(CONFIG_MEM_ALLOC_PROFILING, CONFIG_KMALLOC_PARTITION_CACHES)))]
mod entry {
    use kernel::{bindings, ffi::c_void};

    /// # Safety
    ///
    /// `s` is a live kmalloc cache whose objects hold at least `size` bytes.
    #[inline(always)]
    pub(super) unsafe fn cache(
        s: *mut bindings::kmem_cache,
        flags: u32,
        size: usize,
    ) -> *mut c_void {
        // SAFETY: The caller guarantees that `s` is a kmalloc cache for `size` bytes, which is all
        // `__kmalloc_cache_noprof()` needs besides valid flags (it warns about others).
        unsafe { bindings::__kmalloc_cache_noprof(s, flags, size) }
    }

    #[inline(always)]
    pub(super) fn large(size: usize, flags: u32) -> *mut c_void {
        // SAFETY: `__kmalloc_large_noprof()` accepts any size (it fails above
        // `KMALLOC_MAX_SIZE`) and flags.
        unsafe { bindings::__kmalloc_large_noprof(size, flags) }
    }

    #[inline(always)]
    pub(super) fn var(size: usize, flags: u32) -> *mut c_void {
        // SAFETY: `__kmalloc_noprof()` accepts any size and flags, as `kmalloc()` does.
        unsafe { bindings::__kmalloc_noprof(size, flags) }
    }
}

/// The calls behind a fresh allocation with allocation profiling or partitioned caches: C's
/// `kmalloc()` then records the allocation's call site (`alloc_hooks()`) or derives a partition
/// token from it, which only C code can do.
#[cfg(any(CONFIG_MEM_ALLOC_PROFILING, CONFIG_KMALLOC_PARTITION_CACHES))]
mod entry {
    use kernel::{bindings, ffi::c_void};

    #[cfg(rslab_helpers)]
    /// The module's copy of `rust/lib/helpers.c`: the same calls in `alloc_hooks()`,
    /// attributed to that file's lines.
    mod c {
        use kernel::{bindings, ffi::c_void};

        extern "C" {
            pub(super) fn rslab_kmalloc_cache(
                s: *mut bindings::kmem_cache,
                flags: bindings::gfp_t,
                size: usize,
            ) -> *mut c_void;
            pub(super) fn rslab_kmalloc_large(size: usize, flags: bindings::gfp_t) -> *mut c_void;
            pub(super) fn rslab_kmalloc(size: usize, flags: bindings::gfp_t) -> *mut c_void;
        }
    }

    #[cfg(rslab_helpers)]
    /// # Safety
    ///
    /// `s` is a live kmalloc cache whose objects hold at least `size` bytes.
    #[inline(always)]
    pub(super) unsafe fn cache(
        s: *mut bindings::kmem_cache,
        flags: u32,
        size: usize,
    ) -> *mut c_void {
        // SAFETY: The caller guarantees that `s` is a kmalloc cache for `size` bytes, which is all
        // `__kmalloc_cache_noprof()` needs besides valid flags (it warns about others).
        unsafe { c::rslab_kmalloc_cache(s, flags, size) }
    }

    #[cfg(rslab_helpers)]
    #[inline(always)]
    pub(super) fn large(size: usize, flags: u32) -> *mut c_void {
        // SAFETY: `__kmalloc_large_noprof()` accepts any size (it fails above
        // `KMALLOC_MAX_SIZE`) and flags.
        unsafe { c::rslab_kmalloc_large(size, flags) }
    }

    #[cfg(rslab_helpers)]
    #[inline(always)]
    pub(super) fn var(size: usize, flags: u32) -> *mut c_void {
        // SAFETY: `kmalloc()` accepts any size and flags.
        unsafe { c::rslab_kmalloc(size, flags) }
    }

    #[cfg(not(rslab_helpers))]
    /// # Safety
    ///
    /// None: the cache is not used. (Declared `unsafe` as the other variants are.)
    #[inline(always)]
    pub(super) unsafe fn cache(
        _s: *mut bindings::kmem_cache,
        flags: u32,
        size: usize,
    ) -> *mut c_void {
        var(size, flags)
    }

    #[cfg(not(rslab_helpers))]
    #[inline(always)]
    pub(super) fn large(size: usize, flags: u32) -> *mut c_void {
        var(size, flags)
    }

    #[cfg(not(rslab_helpers))]
    /// Without the module's own C functions: the kernel crate's helper, as the kernel crate's
    /// `Kmalloc` calls it, whose `krealloc_node_align()` has the hooks (attributed to that
    /// helper) and the partition token of its own call site.
    #[inline(always)]
    pub(super) fn var(size: usize, flags: u32) -> *mut c_void {
        // SAFETY: With a NULL pointer, `krealloc_node_align()` is `kmalloc_node()`, which accepts
        // any size, alignment (it only checks an existing object's), flags and node.
        unsafe {
            bindings::krealloc_node_align(core::ptr::null(), size, 1, flags, bindings::NUMA_NO_NODE)
        }
    }
}

/// The kmalloc allocator that relies on the extended alignment guarantee.
///
/// See the [module documentation](self).
pub struct Kmalloc;

/// A [`Box`] allocated with [`Kmalloc`].
pub type RsBox<T> = Box<T, Kmalloc>;

/// A [`Vec`] allocated with [`Kmalloc`].
pub type RsVec<T> = Vec<T, Kmalloc>;

impl Kmalloc {
    /// The layout handed to kmalloc for `layout`: same alignment, size rounded up to a multiple
    /// of it. Fails for layouts kmalloc cannot serve.
    #[inline]
    pub fn request_layout(layout: Layout) -> Result<Layout, AllocError> {
        let size = kmalloc_size(layout)?;
        // `size` is a multiple of the power-of-two `layout.align()` and at most
        // `KMALLOC_MAX_SIZE`, so this cannot fail; map the error rather than unwrap anyway.
        Layout::from_size_align(size, layout.align()).map_err(|_| AllocError)
    }

    /// Allocates `size` bytes (`1 <= size <= KMALLOC_MAX_SIZE`) with the raw flags `flags`, free
    /// of [`SLAB_BUG_MASK`](super::cache::SLAB_BUG_MASK), the way C's `kmalloc()` does for a size
    /// known at compile time: from the cache of [`cache()`], from the page allocator above the
    /// slab range, or through the run-time-size entry point where the cache depends on the call
    /// site. Returns NULL on failure.
    ///
    /// The result is a kmalloc object of at least `size` bytes, which `kfree()` frees, aligned
    /// to [`pow2_divisor`](super::layout::pow2_divisor)`(size)` by kmalloc's guarantee.
    #[inline(always)]
    fn kmalloc(size: usize, flags: u32) -> *mut u8 {
        let p = if size > super::layout::KMALLOC_MAX_CACHE_SIZE {
            entry::large(size, flags)
        } else if let Some(s) = cache(size, flags) {
            // SAFETY: `s` is the cache C's `kmalloc()` uses for `size` and `flags`: a live
            // kmalloc cache whose objects hold at least `size` bytes.
            unsafe { entry::cache(s, flags, size) }
        } else {
            entry::var(size, flags)
        };
        p.cast()
    }

    /// [`Kmalloc::kmalloc`] with a size known only at run time: C's `kmalloc()` with a run-time
    /// size (`__kmalloc_noprof()`).
    #[inline]
    fn kmalloc_var(size: usize, flags: u32) -> *mut u8 {
        entry::var(size, flags).cast()
    }

    /// A fresh object for `request` (size not zero, a multiple of its alignment) on no
    /// particular node, from `alloc`.
    #[inline(always)]
    fn fresh(
        request: Layout,
        flags: Flags,
        alloc: impl FnOnce(usize, u32) -> *mut u8,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let p = NonNull::new(alloc(request.size(), gfp::slab(flags)?)).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, request.size()))
    }
}

// SAFETY:
// - Memory comes from kmalloc (`kmalloc()`'s entry points, or `allocator::Kmalloc`), which keeps
//   it valid until it is freed through `krealloc` or `kfree`, which is what every path here
//   ends in.
// - Any pointer this allocator returned is a kmalloc object (or dangling for size 0, which
//   `allocator::Kmalloc` accepts the same way and `free` ignores), so it is valid to pass back.
// - Guarantees: `request_layout` keeps the alignment and does not shrink the size; a fresh
//   object of the rounded size is aligned to the layout by kmalloc's alignment guarantee (see
//   `layout`), as is the buffer `allocator::Kmalloc` returns for it. Contents and failure
//   behaviour are kmalloc's, as in `allocator::Kmalloc::realloc`.
unsafe impl Allocator for Kmalloc {
    const MIN_ALIGN: usize = bindings::ARCH_KMALLOC_MINALIGN;

    #[inline]
    fn alloc(layout: Layout, flags: Flags, nid: NumaNode) -> Result<NonNull<[u8]>, AllocError> {
        let request = Self::request_layout(layout)?;
        if request.size() == 0 || nid != NumaNode::NO_NODE {
            // SAFETY: `None` asks for a new allocation.
            return unsafe { Self::realloc(None, layout, Layout::new::<()>(), flags, nid) };
        }
        // With the layout of a type, the size is a compile-time constant: so is the cache.
        Self::fresh(request, flags, Self::kmalloc)
    }

    #[inline]
    unsafe fn realloc(
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
        nid: NumaNode,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let request = Self::request_layout(layout)?;
        // A pointer with a zero-sized `old_layout` is no allocation (`Allocator::realloc`).
        let live = ptr.filter(|_| old_layout.size() != 0);
        if let Some(p) = live {
            if request.size() == 0 {
                // SAFETY: By the caller's guarantee `p` is a live allocation of this allocator,
                // a kmalloc object, not used again.
                unsafe { bindings::kfree(p.as_ptr().cast()) };
                return Ok(NonNull::slice_from_raw_parts(dangling(request), 0));
            }
        }
        if live.is_none() && request.size() != 0 && nid == NumaNode::NO_NODE {
            // A fresh allocation here comes from a `Vec`, whose size is known at run time.
            return Self::fresh(request, flags, Self::kmalloc_var);
        }
        // Only an allocation uses `flags` (`free` passes none). With constant flags this folds
        // away.
        if request.size() != 0 {
            gfp::slab(flags)?;
        }
        // SAFETY: The caller upholds `Allocator::realloc`'s requirements for `ptr` and
        // `old_layout`. `ptr` may not come from `allocator::Kmalloc` (the fresh paths above call
        // kmalloc's entry points), and `old_layout` is the caller's, not the rounded one: this
        // relies on `allocator::Kmalloc::realloc` being `ReallocFunc::KREALLOC.call()` in 7.2
        // and 7.3, which accepts any live `krealloc` allocation (`ReallocFunc`'s guarantee; every
        // kmalloc object is one) and reads `old_layout` only to tell whether `ptr` is an
        // allocation. Every allocation of this allocator is a kmalloc object whose size is
        // non-zero exactly when `old_layout`'s is.
        unsafe { allocator::Kmalloc::realloc(ptr, request, old_layout, flags, nid) }
    }

    #[inline]
    unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: By the caller's guarantee `ptr` is a live allocation of this allocator with
            // `layout`, a kmalloc object (its size is not zero), never used again.
            unsafe { bindings::kfree(ptr.as_ptr().cast()) };
        }
    }
}

/// The dangling pointer of a zero-sized allocation: aligned to `layout`, never dereferenced
/// (as the kernel crate's allocators make it).
#[inline]
fn dangling(layout: Layout) -> NonNull<u8> {
    // The alignment is a power of two, so never NULL; `dangling()` only keeps this total.
    NonNull::new(layout.align() as *mut u8).unwrap_or(NonNull::dangling())
}

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_kmalloc)]
mod tests {
    use super::super::{
        buckets::{self, ideal_bucket, Buckets},
        check,
        layout::{pow2_padded_size, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE},
    };
    use super::*;
    use kernel::{page::PAGE_SIZE, prelude::*};

    /// Request sizes that hit every bucket boundary: every size up to 256, every 8th above,
    /// and each bucket size and its neighbours, up to twice the slab range.
    fn sizes(mut f: impl FnMut(usize) -> Result) -> Result {
        let top = 2 * KMALLOC_MAX_CACHE_SIZE;
        let mut size = 1;
        while size <= top {
            f(size)?;
            size += if size < 256 { 1 } else { 8 };
        }
        for &b in Buckets::expected().as_slice() {
            f(b - 1)?;
            f(b + 1)?;
        }
        f(top - 1)?;
        f(top + 1)
    }

    #[test]
    fn every_size_align_pair_gets_its_ideal_bucket() -> Result {
        let mut pairs = 0usize;
        let mut saved_pairs = 0usize;
        let mut align = 1;
        while align <= PAGE_SIZE {
            sizes(|size| {
                let layout = Layout::from_size_align(size, align).map_err(|_| EINVAL)?;
                let p = Kmalloc::alloc(layout, GFP_KERNEL, NumaNode::NO_NODE)
                    .map_err(|_| ENOMEM)?
                    .cast::<u8>();
                let addr = p.as_ptr() as usize;
                // SAFETY: `p` is a live `Kmalloc` object.
                let used = unsafe { buckets::ksize(p) };
                // SAFETY: `p` was allocated above with `layout` and is not used again.
                unsafe { Kmalloc::free(p, layout) };
                let ideal = ideal_bucket(layout).ok_or(EINVAL)?;
                let rounded = Kmalloc::request_layout(layout).map_err(|_| EINVAL)?.size();
                check!(
                    addr % align == 0,
                    "({}, {}): {:#x} misaligned",
                    size,
                    align,
                    addr
                );
                check!(used >= size, "({}, {}): ksize {}", size, align, used);
                check!(
                    used == buckets::roundup(rounded),
                    "({}, {}): ksize {} != kmalloc_size_roundup({}) = {}",
                    size,
                    align,
                    used,
                    rounded,
                    buckets::roundup(rounded)
                );
                check!(
                    used == ideal,
                    "({}, {}): got {} bytes, ideal bucket is {}",
                    size,
                    align,
                    used,
                    ideal
                );
                let pow2 = buckets::roundup(pow2_padded_size(layout).ok_or(EINVAL)?);
                check!(
                    used <= pow2,
                    "({}, {}): {} > pow2 {}",
                    size,
                    align,
                    used,
                    pow2
                );
                if used < pow2 {
                    saved_pairs += 1;
                }
                pairs += 1;
                Ok(())
            })?;
            align <<= 1;
        }
        pr_info!(
            "rslab_kmalloc: {} (size, align) pairs checked, {} of them smaller than with \
             power-of-two padding\n",
            pairs,
            saved_pairs
        );
        // The guarantee saves memory exactly where a non-power-of-two bucket exists (not at a
        // boot-time minimum alignment of 128 or more, as on some arm64 machines).
        let odd = Buckets::expected()
            .as_slice()
            .iter()
            .any(|b| !b.is_power_of_two());
        check!(
            (saved_pairs > 0) == odd,
            "{} pairs benefit from the guarantee, non-power-of-two buckets: {}",
            saved_pairs,
            odd
        );
        Ok(())
    }

    /// The C side of [`cache_choice`], `rust/kmalloc_test.c`, which rslab.ko links
    /// (`cfg(rslab_kmalloc_test_c)`, set by `rust/Kbuild`).
    #[cfg(rslab_kmalloc_test_c)]
    mod c {
        use kernel::{bindings, ffi::c_void};

        /// `kmalloc(n, flags)` with `n` a compile-time constant.
        pub(super) type KmallocN = unsafe extern "C" fn(flags: bindings::gfp_t) -> *mut c_void;

        extern "C" {
            /// The kmalloc cache `p` is an object of, or NULL.
            pub(super) fn rslab_test_obj_cache(p: *const c_void) -> *mut bindings::kmem_cache;
            /// C's `kmalloc_type(flags, token)`.
            pub(super) fn rslab_test_kmalloc_type(flags: bindings::gfp_t) -> u32;
            pub(super) fn rslab_test_kmalloc_8(flags: bindings::gfp_t) -> *mut c_void;
            pub(super) fn rslab_test_kmalloc_96(flags: bindings::gfp_t) -> *mut c_void;
            pub(super) fn rslab_test_kmalloc_192(flags: bindings::gfp_t) -> *mut c_void;
            pub(super) fn rslab_test_kmalloc_256(flags: bindings::gfp_t) -> *mut c_void;
            pub(super) fn rslab_test_kmalloc_4096(flags: bindings::gfp_t) -> *mut c_void;
        }
    }

    /// The cache of the kmalloc object `p`, freed here.
    #[cfg(rslab_kmalloc_test_c)]
    fn cache_of_and_free(p: *mut u8) -> Result<*mut bindings::kmem_cache> {
        if p.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `p` is a live kmalloc object.
        let s = unsafe { c::rslab_test_obj_cache(p.cast()) };
        // SAFETY: `p` is a kmalloc object, not used again.
        unsafe { bindings::kfree(p.cast()) };
        Ok(s)
    }

    /// Objects of every kmalloc type and of several sizes land in the cache C's `kmalloc()`
    /// with a compile-time size puts an object of the same size and flags in, and that cache is
    /// `kmalloc_caches[type][index]` of the type this kernel's `kmalloc_type()` picks.
    #[cfg(rslab_kmalloc_test_c)]
    #[test]
    fn cache_choice() -> Result {
        // Rust's `kmalloc_type` and C's agree on every combination of the flags that matter,
        // with and without others.
        let bits = [
            GFP_DMA,
            GFP_RECLAIMABLE,
            gfp::GFP_ACCOUNT,
            bindings::__GFP_ZERO,
            bindings::__GFP_NOWARN,
        ];
        for base in [
            bindings::GFP_KERNEL,
            bindings::GFP_ATOMIC,
            bindings::GFP_NOWAIT,
        ] {
            for pick in 0..1u32 << bits.len() {
                let flags = bits
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| pick & (1 << i) != 0)
                    .fold(base, |f, (_, &b)| f | b);
                // SAFETY: Pure computation on the flags.
                let theirs = unsafe { c::rslab_test_kmalloc_type(flags) } as usize;
                match kmalloc_type(flags) {
                    Some(ours) => {
                        check!(ours == theirs, "{:#x}: {} != C's {}", flags, ours, theirs)
                    }
                    None => check!(
                        cfg!(CONFIG_KMALLOC_PARTITION_CACHES) && flags & NOT_NORMAL_BITS == 0,
                        "{:#x}: no type",
                        flags
                    ),
                }
            }
        }

        let sizes: [(usize, c::KmallocN); 5] = [
            (8, c::rslab_test_kmalloc_8),
            (96, c::rslab_test_kmalloc_96),
            (192, c::rslab_test_kmalloc_192),
            (256, c::rslab_test_kmalloc_256),
            (4096, c::rslab_test_kmalloc_4096),
        ];
        let kernel = bindings::GFP_KERNEL;
        // One set of flags per type, the type expected where this kernel has it (a type it does
        // not have is `NORMAL`, as in C).
        let types = [
            (kernel, cache_type::NORMAL),
            (kernel | GFP_RECLAIMABLE, cache_type::RECLAIM),
            (kernel | GFP_DMA, cache_type::DMA),
            (kernel | gfp::GFP_ACCOUNT, cache_type::CGROUP),
            // Priorities: DMA over reclaimable over accounted.
            (kernel | GFP_DMA | GFP_RECLAIMABLE, cache_type::DMA),
            (
                bindings::GFP_ATOMIC | GFP_RECLAIMABLE | gfp::GFP_ACCOUNT,
                cache_type::RECLAIM,
            ),
        ];
        let mut distinct = 0;
        for &(flags, want) in &types {
            let t = kmalloc_type(flags);
            check!(
                t == Some(want) || (t.is_none() && want == cache_type::NORMAL),
                "{:#x}: type {:?}, want {}",
                flags,
                t,
                want
            );
            for &(size, kmalloc_n) in &sizes {
                let ours = cache_of_and_free(Kmalloc::kmalloc(size, flags))?;
                // SAFETY: `kmalloc_n` accepts any flags.
                let theirs = cache_of_and_free(unsafe { kmalloc_n(flags) }.cast())?;
                // With partitioned caches (`t` is `None`) each call site has its own partition.
                check!(
                    !ours.is_null() && (t.is_none() || ours == theirs),
                    "{} B, {:#x}: cache {:p}, C's {:p}",
                    size,
                    flags,
                    ours,
                    theirs
                );
                if let Some(t) = t {
                    let expected = cache(size, flags).ok_or(EINVAL)?;
                    let table = kmalloc_caches().ok_or(EINVAL)?[want][kmalloc_index(size)];
                    check!(
                        ours == expected && expected == table,
                        "{} B, {:#x}: not kmalloc_caches[{}][{}]",
                        size,
                        flags,
                        t,
                        kmalloc_index(size)
                    );
                    if ours != cache(size, kernel).ok_or(EINVAL)? {
                        distinct += 1;
                    }
                }
            }
        }
        // This kernel (`CONFIG_ZONE_DMA`, `CONFIG_MEMCG`) has a cache of its own for each type but
        // `NORMAL`, so every object of another type is in a cache other than the normal one.
        if cfg!(all(CONFIG_ZONE_DMA, CONFIG_MEMCG, not(CONFIG_SLUB_TINY)))
            && !cfg!(CONFIG_KMALLOC_PARTITION_CACHES)
        {
            check!(
                distinct == (types.len() - 1) * sizes.len(),
                "{} objects outside the normal caches",
                distinct
            );
        }

        // Through the public API, with the kernel crate's flags: `Box::new` and a `Vec`'s first
        // allocation (the run-time-size entry point) land where C's objects do.
        for flags in [
            GFP_KERNEL,
            GFP_ATOMIC,
            GFP_KERNEL_ACCOUNT,
            GFP_KERNEL | __GFP_ZERO,
        ] {
            let raw = gfp::raw(flags);
            // With partitioned caches each call site has its own partition.
            let partitioned = kmalloc_type(raw).is_none();
            let b = RsBox::new([0x5au8; 96], flags)?;
            // SAFETY: `b` is a live kmalloc object.
            let ours = unsafe { c::rslab_test_obj_cache((&raw const *b).cast()) };
            // SAFETY: `rslab_test_kmalloc_96` accepts any flags.
            let theirs = cache_of_and_free(unsafe { c::rslab_test_kmalloc_96(raw) }.cast())?;
            check!(
                !ours.is_null() && (partitioned || ours == theirs) && b[95] == 0x5a,
                "Box::new, {:#x}: {:p}, C's {:p}",
                raw,
                ours,
                theirs
            );
            let v = RsVec::<u8>::with_capacity(4096, flags)?;
            // SAFETY: `v` owns a live kmalloc object.
            let ours = unsafe { c::rslab_test_obj_cache(v.as_ptr().cast()) };
            // SAFETY: `rslab_test_kmalloc_4096` accepts any flags.
            let theirs = cache_of_and_free(unsafe { c::rslab_test_kmalloc_4096(raw) }.cast())?;
            check!(
                !ours.is_null() && (partitioned || ours == theirs),
                "Vec, {:#x}: {:p}, C's {:p}",
                raw,
                ours,
                theirs
            );
        }
        Ok(())
    }

    #[repr(align(32))]
    struct Line96([u8; 96]);

    #[repr(align(64))]
    struct Line192([u64; 24]);

    #[test]
    fn box_api() -> Result {
        let b = RsBox::new(Line96([7; 96]), GFP_KERNEL)?;
        check!((&raw const *b) as usize % 32 == 0, "Line96 misaligned");
        // SAFETY: `b` is a live `Kmalloc` object.
        let used = unsafe { buckets::ksize(NonNull::from(&*b).cast()) };
        // 96 wherever kmalloc-96 exists (128 at a boot-time minimum alignment of 64).
        let want = ideal_bucket(Layout::new::<Line96>()).ok_or(EINVAL)?;
        check!(
            used == want && (want == 96) == (buckets::min_align() < 64),
            "Line96 in a {}-byte object, ideal {}",
            used,
            want
        );
        check!(b.0.iter().all(|&x| x == 7), "contents");

        let b = RsBox::new(Line192([1; 24]), GFP_KERNEL)?;
        // SAFETY: `b` is a live `Kmalloc` object.
        let used = unsafe { buckets::ksize(NonNull::from(&*b).cast()) };
        check!(
            used == ideal_bucket(Layout::new::<Line192>()).ok_or(EINVAL)?
                && (used == 192) == (buckets::min_align() < 128)
                && (&raw const *b) as usize % 64 == 0
                && b.0[23] == 1,
            "Line192: {}",
            used
        );

        let u = RsBox::<[u64; 10]>::new_uninit(GFP_KERNEL)?;
        let u = u.write([3; 10]);
        check!(u.iter().sum::<u64>() == 30, "new_uninit/write");

        let z = RsBox::<[u8; 200]>::new_uninit(GFP_KERNEL | __GFP_ZERO)?;
        // SAFETY: `__GFP_ZERO` zeroed the memory, a valid `[u8; 200]`.
        let z = unsafe { z.assume_init() };
        check!(z.iter().all(|&x| x == 0), "__GFP_ZERO");

        let p = RsBox::pin_init(pin_init::init_zeroed::<[u32; 16]>(), GFP_KERNEL)?;
        check!(p.iter().all(|&x| x == 0), "pin_init");
        let zeroed = RsBox::<[u64; 12]>::zeroed(GFP_KERNEL)?;
        check!(zeroed.iter().all(|&x| x == 0), "zeroed");

        // Zero-sized types take no memory and get a dangling, aligned pointer.
        #[repr(align(64))]
        struct Zst;
        let zst = RsBox::new(Zst, GFP_KERNEL)?;
        check!(
            (&raw const *zst) as usize == 64,
            "ZST pointer is not the dangling one"
        );
        let unit = RsBox::new((), GFP_KERNEL)?;
        drop((zst, unit));

        // Every GFP flag the kernel crate exposes that kmalloc accepts.
        for flags in [
            GFP_KERNEL,
            GFP_ATOMIC,
            GFP_NOWAIT,
            GFP_KERNEL_ACCOUNT,
            GFP_KERNEL | __GFP_NOWARN,
            GFP_KERNEL | __GFP_ZERO,
        ] {
            let b = RsBox::new([0xa5u8; 40], flags)?;
            check!(b[39] == 0xa5, "flags");
        }

        // An explicit NUMA node.
        let layout = Layout::new::<Line96>();
        let p = Kmalloc::alloc(layout, GFP_KERNEL, NumaNode::new(0)?).map_err(|_| ENOMEM)?;
        // SAFETY: `p` was allocated above with `layout`.
        unsafe { Kmalloc::free(p.cast(), layout) };
        Ok(())
    }

    /// Reallocates a `from`-byte object filled with a pattern to `to` bytes and checks that it
    /// stayed in place with the pattern intact.
    fn realloc_in_place(from: usize, to: usize, align: usize) -> Result {
        let old = Layout::from_size_align(from, align).map_err(|_| EINVAL)?;
        let new = Layout::from_size_align(to, align).map_err(|_| EINVAL)?;
        let kept_len = from.min(to);
        let p = Kmalloc::alloc(old, GFP_KERNEL, NumaNode::NO_NODE)
            .map_err(|_| ENOMEM)?
            .cast::<u8>();
        // SAFETY: `p` is a live allocation of `old`, at least `kept_len` bytes.
        unsafe { p.as_ptr().write_bytes(0x3c, kept_len) };
        // SAFETY: `p` was allocated with `old`.
        let q = unsafe { Kmalloc::realloc(Some(p), new, old, GFP_KERNEL, NumaNode::NO_NODE) };
        let q = q.map_err(|_| ENOMEM)?.cast::<u8>();
        // SAFETY: `q` is valid for `to` bytes, the first `kept_len` of them written above.
        let kept = unsafe { core::slice::from_raw_parts(q.as_ptr(), kept_len) }
            .iter()
            .all(|&x| x == 0x3c);
        // SAFETY: `q` is a live allocation of `new`.
        unsafe { Kmalloc::free(q, new) };
        check!(
            q == p && kept,
            "realloc {} -> {} moved ({}) or lost the contents ({})",
            from,
            to,
            q != p,
            !kept
        );
        Ok(())
    }

    #[test]
    fn vec_api() -> Result {
        let mut v = RsVec::<u8>::with_capacity(65, GFP_KERNEL)?;
        // SAFETY: `v` owns a live `Kmalloc` object of at least 65 bytes.
        let used = unsafe { buckets::ksize(NonNull::new(v.as_mut_ptr()).ok_or(EINVAL)?) };
        // kmalloc-96, or kmalloc-128 at a boot-time minimum alignment of 64 or more.
        let want = ideal_bucket(Layout::array::<u8>(65).map_err(|_| EINVAL)?).ok_or(EINVAL)?;
        check!(
            used == want && (want == 96) == (buckets::min_align() < 64),
            "65-byte Vec in a {}-byte object, ideal {}",
            used,
            want
        );
        v.extend_from_slice(&[1; 65], GFP_KERNEL)?;
        // Growing past the object moves to a larger bucket and keeps the contents.
        v.reserve(200, GFP_KERNEL)?;
        check!(
            v.len() == 65 && v.iter().all(|&x| x == 1),
            "contents after grow"
        );
        check!(v.capacity() >= 265, "capacity {}", v.capacity());

        // Growing within the object's bucket keeps it in place (krealloc): 65 and 90 bytes
        // both fit kmalloc-96 (or kmalloc-128 where there is no kmalloc-96). Shrinking does too.
        realloc_in_place(65, 90, 1)?;
        realloc_in_place(1000, 100, 8)?;

        let mut w = RsVec::new();
        for i in 0..1000u32 {
            w.push(i, GFP_KERNEL)?;
        }
        check!(w.iter().copied().eq(0..1000), "push sequence");
        let mut zst = RsVec::new();
        zst.push((), GFP_KERNEL)?;
        check!(zst.len() == 1, "Vec of ZST");
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error_not_a_warning() -> Result {
        // Larger than kmalloc can serve: an error before kmalloc is called, so no WARN.
        let layout = Layout::from_size_align(KMALLOC_MAX_SIZE + 1, 1).map_err(|_| EINVAL)?;
        check!(
            Kmalloc::alloc(layout, GFP_KERNEL, NumaNode::NO_NODE).is_err(),
            "oversize allocation succeeded"
        );
        check!(
            Kmalloc::request_layout(layout).is_err(),
            "oversize layout accepted"
        );

        // Flags the slab allocator rejects: an error, not "Unexpected gfp ... Fix your code!".
        for flags in [GFP_KERNEL | __GFP_HIGHMEM, !GFP_KERNEL] {
            check!(RsBox::new([1u8; 100], flags).is_err(), "bad flags accepted");
            check!(
                RsVec::<u8>::with_capacity(5000, flags).is_err(),
                "bad flags accepted for a page-allocator size"
            );
        }

        // Zero size: a dangling pointer aligned to the layout.
        let layout = Layout::from_size_align(0, 256).map_err(|_| EINVAL)?;
        let p = Kmalloc::alloc(layout, GFP_KERNEL, NumaNode::NO_NODE).map_err(|_| ENOMEM)?;
        check!(p.cast::<u8>().as_ptr() as usize == 256, "zero-size pointer");
        // SAFETY: A zero-sized allocation of `Kmalloc` with `layout`.
        unsafe { Kmalloc::free(p.cast(), layout) };

        // A failed reallocation leaves the old buffer and its contents intact.
        let mut v = RsVec::<u64>::new();
        v.extend_from_slice(&[9; 16], GFP_KERNEL)?;
        let before = v.as_ptr();
        check!(
            v.reserve(KMALLOC_MAX_SIZE, GFP_KERNEL).is_err(),
            "oversize reserve succeeded"
        );
        check!(
            v.as_ptr() == before && v.as_slice() == [9; 16],
            "failed reserve changed the Vec"
        );
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The running kernel's kmalloc buckets, discovered at run time.
//!
//! The set of kmalloc caches depends on the architecture, the configuration and the boot:
//! `kmalloc-96` and `kmalloc-192` exist only while the minimum kmalloc alignment is below 64
//! and 128 bytes respectively, and that minimum is decided at boot on architectures with
//! non-coherent DMA (arm64: `ARCH_KMALLOC_MINALIGN` when swiotlb can bounce unaligned kmalloc
//! buffers, the CPU's cache writeback granule otherwise). [`Buckets::discover`] asks the kernel
//! (`kmalloc_size_roundup()`) instead of assuming, and [`Buckets::expected`] computes what the
//! kmalloc rules predict for the running kernel's [`min_align`], so that tests can compare the
//! two.
//!
//! A bucket of size `b` exists exactly when `b`'s largest power-of-two divisor is at least the
//! minimum alignment, so the runtime minimum acts like an alignment every request carries
//! implicitly: [`ideal_bucket`] uses it that way.

use super::layout::{pow2_divisor, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE};
use kernel::{
    alloc::{allocator::Kmalloc, Allocator, NumaNode},
    bindings,
    page::PAGE_SIZE,
    prelude::*,
};

use core::{alloc::Layout, ptr::NonNull};

/// The maximum number of slab-backed kmalloc buckets any configuration has (8 B .. 2 MiB
/// in powers of two plus 96 and 192).
pub const MAX_BUCKETS: usize = 24;

/// The smallest kmalloc object size this kernel was built for (`KMALLOC_MIN_SIZE`); the
/// running kernel may raise it at boot, see [`min_align`].
pub const KMALLOC_MIN_SIZE: usize = bindings::KMALLOC_MIN_SIZE as usize;

/// The running kernel's minimum kmalloc alignment: the size of its smallest kmalloc bucket.
///
/// `mm/slab_common.c` computes it at boot (`__kmalloc_minalign()`, not exported) from
/// `dma_get_cache_alignment()`, `ARCH_KMALLOC_MINALIGN` when swiotlb is there to bounce
/// unaligned buffers, and `arch_slab_minalign()`, and merges every smaller bucket into the
/// first one aligned to it; `kmalloc_size_roundup(1)` therefore returns it. It is
/// [`KMALLOC_MIN_SIZE`] on x86_64; on arm64 it is 8 or the cache writeback granule.
///
/// # Examples
///
/// ```
/// use rslab::buckets::{min_align, KMALLOC_MIN_SIZE};
///
/// assert!(min_align().is_power_of_two() && min_align() >= KMALLOC_MIN_SIZE);
/// ```
#[inline]
pub fn min_align() -> usize {
    roundup(1)
}

/// Returns `kmalloc_size_roundup(size)`: the size of the object kmalloc would return for a
/// request of `size` bytes.
///
/// # Examples
///
/// ```
/// use rslab::buckets::{min_align, roundup};
///
/// // kmalloc-96, where the boot-time minimum alignment leaves it (not on arm64 machines whose
/// // kmalloc objects are cache-line aligned).
/// assert_eq!(roundup(65), if min_align() < 64 { 96 } else { min_align().max(128) });
/// ```
#[inline]
pub fn roundup(size: usize) -> usize {
    // SAFETY: `kmalloc_size_roundup` has no preconditions; it only computes a size.
    unsafe { bindings::kmalloc_size_roundup(size) }
}

/// Returns `ksize(ptr)`: the usable size of the kmalloc object at `ptr`.
///
/// # Safety
///
/// `ptr` must point to a live object returned by kmalloc (or krealloc).
#[inline]
pub unsafe fn ksize(ptr: NonNull<u8>) -> usize {
    // SAFETY: By the safety requirements, `ptr` is a live kmalloc object.
    unsafe { bindings::ksize(ptr.as_ptr().cast()) }
}

/// A sorted set of kmalloc bucket sizes.
///
/// # Invariants
///
/// `sizes[..len]` is strictly increasing and `len <= MAX_BUCKETS`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Buckets {
    sizes: [usize; MAX_BUCKETS],
    len: usize,
}

impl Buckets {
    const fn empty() -> Self {
        // INVARIANT: The empty prefix is trivially increasing.
        Self {
            sizes: [0; MAX_BUCKETS],
            len: 0,
        }
    }

    /// Appends `size` if it is larger than every bucket so far. Returns `false` when the set is
    /// full.
    const fn push(&mut self, size: usize) -> bool {
        if self.len > 0 && self.sizes[self.len - 1] >= size {
            return true;
        }
        if self.len == MAX_BUCKETS {
            return false;
        }
        // INVARIANT: `size` is larger than the last element and there is room.
        self.sizes[self.len] = size;
        self.len += 1;
        true
    }

    /// The buckets the running kernel really has, from `kmalloc_size_roundup()` over every
    /// request size of the slab range.
    ///
    /// Fails with `EINVAL` if the kernel reports more buckets than any known configuration has
    /// or a size that goes down as the request goes up.
    ///
    /// # Examples
    ///
    /// ```
    /// use rslab::buckets::Buckets;
    ///
    /// let b = Buckets::discover()?;
    /// assert_eq!(b, Buckets::expected());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn discover() -> Result<Self> {
        let mut b = Self::empty();
        let mut size = 1;
        while size <= KMALLOC_MAX_CACHE_SIZE {
            let r = roundup(size);
            if r < size || r > KMALLOC_MAX_CACHE_SIZE || !b.push(r) {
                return Err(EINVAL);
            }
            // Every size up to `r` maps to the same bucket; jump to the next one.
            size = r + 1;
        }
        Ok(b)
    }

    /// The buckets the kmalloc rules predict for a minimum alignment of `min_align` (a power of
    /// two): powers of two from `min_align` to `KMALLOC_MAX_CACHE_SIZE`, plus 96 if `min_align`
    /// is below 64 and 192 if it is below 128.
    ///
    /// # Examples
    ///
    /// ```
    /// use rslab::buckets::Buckets;
    ///
    /// // arm64 without swiotlb bouncing, 64-byte cache lines: no kmalloc-96.
    /// let b = Buckets::rules(64);
    /// assert_eq!(&b.as_slice()[..4], &[64, 128, 192, 256]);
    /// ```
    pub const fn rules(min_align: usize) -> Self {
        let mut b = Self::empty();
        let mut p = if min_align > KMALLOC_MIN_SIZE {
            min_align
        } else {
            KMALLOC_MIN_SIZE
        };
        let min = p;
        while p <= KMALLOC_MAX_CACHE_SIZE {
            // `push` only fails past `MAX_BUCKETS`, which the rules never reach.
            if p == 128 && min < 64 {
                let _ = b.push(96);
            }
            if p == 256 && min < 128 {
                let _ = b.push(192);
            }
            let _ = b.push(p);
            p <<= 1;
        }
        b
    }

    /// The buckets the kmalloc rules predict for the running kernel: [`Self::rules`] at
    /// [`min_align`].
    pub fn expected() -> Self {
        Self::rules(min_align())
    }

    /// The bucket sizes, smallest first.
    pub fn as_slice(&self) -> &[usize] {
        &self.sizes[..self.len]
    }

    /// The smallest bucket that holds `size` bytes, or `None` above the slab range.
    pub fn bucket_for(&self, size: usize) -> Option<usize> {
        self.as_slice().iter().copied().find(|&b| b >= size)
    }

    /// The index of `bucket` in [`Self::as_slice`].
    pub fn index_of(&self, bucket: usize) -> Option<usize> {
        self.as_slice().iter().position(|&b| b == bucket)
    }
}

/// Every bucket a kernel built like this one can have, whatever its boot-time minimum
/// alignment ([`Buckets::rules`] at [`KMALLOC_MIN_SIZE`]); the running kernel has the subset
/// whose power-of-two divisor is at least [`min_align`]. Computed at compile time for the paths
/// that consult it on every allocation.
pub static ALL: Buckets = Buckets::rules(KMALLOC_MIN_SIZE);

/// The object size kmalloc uses above the slab range: whole pages, in a power-of-two block.
pub fn page_bucket(size: usize) -> usize {
    size.div_ceil(PAGE_SIZE).next_power_of_two() * PAGE_SIZE
}

/// Allocates `n` objects of `size` bytes with plain kmalloc, calls `f` on each pointer, and
/// frees them all. Stops at the first error from `f`.
pub fn with_objects(size: usize, n: usize, mut f: impl FnMut(NonNull<u8>) -> Result) -> Result {
    let layout = Layout::from_size_align(size, 1).map_err(|_| EINVAL)?;
    let mut ptrs = KVec::with_capacity(n, GFP_KERNEL)?;
    let mut ret = Ok(());
    for _ in 0..n {
        match Kmalloc::alloc(layout, GFP_KERNEL, NumaNode::NO_NODE) {
            Ok(p) => ptrs.push(p.cast::<u8>(), GFP_NOWAIT)?,
            Err(_) => {
                ret = Err(ENOMEM);
                break;
            }
        }
    }
    if ret.is_ok() {
        ret = ptrs.iter().try_for_each(|&p| f(p));
    }
    for p in ptrs {
        // SAFETY: `p` was allocated above by `Kmalloc` with `layout` and is not used again.
        unsafe { Kmalloc::free(p, layout) };
    }
    ret
}

/// The alignment kmalloc guarantees for an object of bucket size `bucket`.
pub fn guaranteed_align(bucket: usize) -> usize {
    pow2_divisor(bucket)
}

/// The smallest object kmalloc can return for `layout` on the running kernel: the smallest
/// bucket (or page block, above the slab range) of at least `layout.size()` bytes whose
/// guaranteed alignment is at least `layout.align()`. Computed by search, independently of the
/// layout rule.
pub fn ideal_bucket(layout: Layout) -> Option<usize> {
    // A bucket exists iff its guaranteed alignment reaches the minimum (see the module docs).
    let align = layout.align().max(min_align());
    let found = ALL
        .as_slice()
        .iter()
        .copied()
        .find(|&b| b >= layout.size() && pow2_divisor(b) >= align);
    match found {
        Some(b) => Some(b),
        None if layout.size() <= KMALLOC_MAX_SIZE => {
            let b = page_bucket(layout.size().max(KMALLOC_MAX_CACHE_SIZE + 1));
            (pow2_divisor(b) >= align).then_some(b)
        }
        None => None,
    }
}

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_align)]
mod tests {
    use super::super::check;
    use super::*;

    /// Objects allocated per bucket and request size.
    const BATCH: usize = 64;

    /// The minimum alignments `__kmalloc_minalign()` can produce on this architecture, and
    /// where they come from.
    #[cfg(CONFIG_X86)]
    fn possible_min_aligns() -> ([usize; 2], &'static str) {
        // No `ARCH_DMA_MINALIGN`: DMA is cache-coherent, kmalloc keeps its 8-byte minimum.
        ([KMALLOC_MIN_SIZE; 2], "x86: DMA is coherent")
    }

    #[cfg(CONFIG_ARM64)]
    fn possible_min_aligns() -> ([usize; 2], &'static str) {
        // SAFETY: `cache_line_size()` only reads the sanitised CTR_EL0 (or the firmware's
        // coherency size); it has no preconditions.
        let line = unsafe { bindings::cache_line_size() } as usize;
        (
            [bindings::ARCH_KMALLOC_MINALIGN, line.max(KMALLOC_MIN_SIZE)],
            "arm64: 8 with swiotlb bouncing, else cache_line_size()",
        )
    }

    #[cfg(not(any(CONFIG_X86, CONFIG_ARM64)))]
    fn possible_min_aligns() -> ([usize; 2], &'static str) {
        let m = min_align();
        ([m; 2], "architecture not modelled: any power of two")
    }

    #[test]
    fn kernel_has_the_expected_buckets() -> Result {
        let m = min_align();
        let (possible, why) = possible_min_aligns();
        check!(
            m.is_power_of_two() && m >= KMALLOC_MIN_SIZE && possible.contains(&m),
            "minimum kmalloc alignment {}, expected one of {:?} ({})",
            m,
            possible,
            why
        );
        let found = Buckets::discover()?;
        let want = Buckets::rules(m);
        check!(
            found == want,
            "kernel buckets {:?}, rules predict {:?}",
            found.as_slice(),
            want.as_slice()
        );
        // The extended guarantee matters only where non-power-of-two buckets exist.
        check!(
            found.as_slice().contains(&96) == (m < 64),
            "kmalloc-96 at minimum alignment {}",
            m
        );
        check!(
            found.as_slice().contains(&192) == (m < 128),
            "kmalloc-192 at minimum alignment {}",
            m
        );
        check!(
            found.as_slice().iter().all(|b| ALL.as_slice().contains(b)),
            "a bucket outside {:?}",
            ALL.as_slice()
        );
        pr_info!(
            "rslab_align: minimum alignment {} ({}), {} kmalloc buckets: {:?}\n",
            m,
            why,
            found.as_slice().len(),
            found.as_slice()
        );
        Ok(())
    }

    #[test]
    fn roundup_picks_the_expected_bucket() -> Result {
        let b = Buckets::expected();
        for size in 1..=KMALLOC_MAX_CACHE_SIZE {
            let want = b.bucket_for(size).ok_or(EINVAL)?;
            check!(
                roundup(size) == want,
                "kmalloc_size_roundup({}) = {}, expected {}",
                size,
                roundup(size),
                want
            );
        }
        // Above the slab range kmalloc hands out power-of-two page blocks.
        let mut size = KMALLOC_MAX_CACHE_SIZE + 1;
        while size <= 8 * KMALLOC_MAX_CACHE_SIZE {
            check!(
                roundup(size) == page_bucket(size),
                "kmalloc_size_roundup({}) = {}, expected {}",
                size,
                roundup(size),
                page_bucket(size)
            );
            size += PAGE_SIZE / 2 + 1;
        }
        Ok(())
    }

    #[test]
    fn every_bucket_is_aligned_to_its_pow2_divisor() -> Result {
        let b = Buckets::discover()?;
        let mut checked = 0;
        let mut prev = 0;
        for &bucket in b.as_slice() {
            let align = guaranteed_align(bucket);
            // The largest and the smallest request that land in this bucket.
            for size in [bucket, prev + 1] {
                with_objects(size, BATCH, |p| {
                    let addr = p.as_ptr() as usize;
                    check!(
                        addr % align == 0,
                        "kmalloc({}) -> {:#x}: not {}-aligned (bucket {})",
                        size,
                        addr,
                        align,
                        bucket
                    );
                    // SAFETY: `p` is a live kmalloc object for the duration of the callback.
                    let ks = unsafe { ksize(p) };
                    check!(
                        ks == bucket,
                        "ksize of kmalloc({}) is {}, expected bucket {}",
                        size,
                        ks,
                        bucket
                    );
                    Ok(())
                })?;
            }
            checked += 1;
            prev = bucket;
        }
        check!(checked == b.as_slice().len(), "checked {} buckets", checked);
        check!(checked >= 2, "only {} buckets", checked);
        pr_info!(
            "rslab_align: {} buckets checked, {} objects each\n",
            checked,
            2 * BATCH
        );
        Ok(())
    }
}

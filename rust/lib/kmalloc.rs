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
//! [`SLAB_BUG_MASK`](super::gfp::SLAB_BUG_MASK)) fail with [`AllocError`] too, where the
//! kernel would warn "Unexpected gfp ... Fix your code!" with a stack dump.
//!
//! The final call is delegated to the kernel crate's own [`kernel::alloc::allocator::Kmalloc`]
//! with a layout whose size is already a multiple of its alignment, so its own padding is a
//! no-op. That keeps every GFP flag and NUMA node working exactly as in the kernel crate
//! without access to the raw `gfp_t` bits (`Flags::as_raw()` is private to the kernel crate).
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
}

// SAFETY:
// - Memory comes from `allocator::Kmalloc`, which keeps it valid until it is freed through
//   `krealloc`/`kfree`, which is what every path here ends in.
// - Any pointer this allocator returned is a `allocator::Kmalloc` allocation (or dangling for
//   size 0, which `allocator::Kmalloc` accepts the same way), so it is valid to pass back.
// - Guarantees: `request_layout` keeps the alignment and does not shrink the size, so the
//   buffer `allocator::Kmalloc` returns for it satisfies the caller's `layout`; contents and
//   failure behaviour are those of `allocator::Kmalloc::realloc`.
unsafe impl Allocator for Kmalloc {
    const MIN_ALIGN: usize = bindings::ARCH_KMALLOC_MINALIGN;

    #[inline]
    unsafe fn realloc(
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
        nid: NumaNode,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let request = Self::request_layout(layout)?;
        // Only an allocation uses `flags` (`free` passes none). With constant flags, and for
        // every free, this folds away.
        if request.size() != 0 {
            gfp::slab(flags)?;
        }
        // SAFETY: The caller upholds `Allocator::realloc`'s requirements for `ptr` and
        // `old_layout`; every allocation of this allocator is an `allocator::Kmalloc` allocation
        // whose size is non-zero exactly when `old_layout`'s is, so they hold for
        // `allocator::Kmalloc` too.
        unsafe { allocator::Kmalloc::realloc(ptr, request, old_layout, flags, nid) }
    }
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

// SPDX-License-Identifier: GPL-2.0

//! What the extended kmalloc alignment guarantee costs in slab layout.
//!
//! For every kmalloc bucket of the running kernel, two caches are created side by side, laid
//! out as kmalloc lays out its own (`SLAB_KMALLOC`, the same size and whatever debug flags
//! this boot gives every cache): one aligned as the guarantee demands (the largest
//! power-of-two divisor of the size, at least `ARCH_KMALLOC_MINALIGN`), one aligned to
//! `ARCH_KMALLOC_MINALIGN` only, as kmalloc caches were before the guarantee. They hold no
//! objects; they exist so that their layout (`/sys/kernel/slab/rslab_layout_*`: object stride,
//! objects per slab, slab order) can be read next to the real `kmalloc-*` caches' and weighted
//! by the live kmalloc objects of `/proc/slabinfo`. The test runner does that after loading
//! the module (`make run` prints the table; `make check` also checks that the guaranteed-align
//! probe matches the real kmalloc cache, and that without slab debugging both are laid out
//! alike). They are destroyed when the module is unloaded.

use crate::rslab::{buckets::Buckets, layout::pow2_divisor};
use core::ptr::NonNull;
use kernel::{bindings, prelude::*, str::CString};

/// The probe caches, two per kmalloc bucket.
///
/// # Invariants
///
/// Every pointer is a live cache created by [`LayoutProbes::create`] and owned by this value.
pub(crate) struct LayoutProbes(KVec<NonNull<bindings::kmem_cache>>);

// SAFETY: The caches are only destroyed, from whichever thread drops this value.
unsafe impl Send for LayoutProbes {}

// SAFETY: `&LayoutProbes` gives no access to the caches.
unsafe impl Sync for LayoutProbes {}

impl LayoutProbes {
    /// Creates `rslab_layout_<bucket>_guaranteed` and `rslab_layout_<bucket>_minalign` for
    /// every kmalloc bucket.
    ///
    /// # Context
    ///
    /// Process context; may sleep.
    pub(crate) fn create() -> Result<Self> {
        let buckets = Buckets::discover()?;
        let mut this = Self(KVec::with_capacity(
            2 * buckets.as_slice().len(),
            GFP_KERNEL,
        )?);
        let minalign = bindings::ARCH_KMALLOC_MINALIGN;
        let flags = (1 << bindings::_slab_flag_bits__SLAB_KMALLOC)
            | (1 << bindings::_slab_flag_bits__SLAB_NO_MERGE);
        for &size in buckets.as_slice() {
            for (tag, align) in [
                ("guaranteed", pow2_divisor(size).max(minalign)),
                ("minalign", minalign),
            ] {
                let name = CString::try_from_fmt(fmt!("rslab_layout_{}_{}", size, tag))?;
                let mut args = bindings::kmem_cache_args {
                    // Bucket sizes and their alignments are below 4 GiB.
                    align: align as u32,
                    useroffset: 0,
                    usersize: 0,
                    freeptr_offset: 0,
                    use_freeptr_offset: false,
                    ctor: None,
                    sheaf_capacity: 0,
                };
                // SAFETY: `name` is NUL-terminated (the slab copies it) and `args` is a valid
                // argument block for the duration of the call.
                let cache = unsafe {
                    bindings::__kmem_cache_create_args(
                        name.as_char_ptr(),
                        size as u32,
                        &mut args,
                        flags as bindings::slab_flags_t,
                    )
                };
                // INVARIANT: A new cache, owned by `this`, which destroys it on drop.
                this.0
                    .push(NonNull::new(cache).ok_or(ENOMEM)?, GFP_KERNEL)?;
            }
        }
        Ok(this)
    }

    /// The number of probe caches.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for LayoutProbes {
    fn drop(&mut self) {
        for cache in self.0.drain_all() {
            // SAFETY: By the type invariant `cache` is live and owned here; it never held an
            // object.
            unsafe { bindings::kmem_cache_destroy(cache.as_ptr()) };
        }
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The slab calls that C makes through macros: allocations with their profiling hooks, and
//! cache creation and destruction.
//!
//! C's `kmem_cache_alloc()`, `kmem_cache_alloc_node()` and `kmem_cache_alloc_from_sheaf()` are
//! macros that wrap the `_noprof` functions in `alloc_hooks()`. With
//! `CONFIG_MEM_ALLOC_PROFILING` that sets `current->alloc_tag` to a tag of the call site, so
//! that `/proc/allocinfo` attributes the allocation; a slab allocation made without it is
//! attributed to nobody, makes `CONFIG_MEM_ALLOC_PROFILING_DEBUG` warn ("current->alloc_tag
//! not set"), and when the slab cannot allocate its object-extension vector, it marks the NULL
//! tag inaccurate (a NULL dereference). The functions here make the macros' calls, hooks
//! included; without allocation profiling `alloc_hooks()` is the call itself.
//!
//! Out of tree, every module that includes the library compiles `rust/lib/helpers.c` into itself
//! and sets `cfg(rslab_helpers)`: with allocation profiling the calls go through that file's
//! functions, each the C macro's call, attributed to its line there. The same file keeps the
//! list of the module's cache names (see `create()`). In the tree the calls go through the
//! kernel crate's helpers of `rust/helpers/slab.c`, which `tools/testing/intree.py` adds there.

use kernel::{bindings, prelude::*};
// upstream-part alloc: begin
use kernel::ffi::c_void;
// upstream-part alloc: end
#[cfg(rslab_helpers)]
/// The module's copy of `rust/lib/helpers.c`.
mod c {
    use kernel::{bindings, ffi::c_void};

    extern "C" {
        pub(super) fn rslab_kmem_cache_alloc(
            s: *mut bindings::kmem_cache,
            flags: bindings::gfp_t,
        ) -> *mut c_void;
        pub(super) fn rslab_kmem_cache_alloc_node(
            s: *mut bindings::kmem_cache,
            flags: bindings::gfp_t,
            node: i32,
        ) -> *mut c_void;
        #[cfg(rslab_sheaf)]
        pub(super) fn rslab_kmem_cache_alloc_from_sheaf(
            s: *mut bindings::kmem_cache,
            flags: bindings::gfp_t,
            sheaf: *mut bindings::slab_sheaf,
        ) -> *mut c_void;
        pub(super) fn rslab_kmem_cache_create(
            name: *const kernel::ffi::c_char,
            size: u32,
            args: *mut bindings::kmem_cache_args,
            flags: bindings::slab_flags_t,
            entryp: *mut *mut c_void,
        ) -> *mut bindings::kmem_cache;
        pub(super) fn rslab_kmem_cache_destroy(s: *mut bindings::kmem_cache, entry: *mut c_void);
    }
}

// upstream-part alloc: begin
/// `kmem_cache_alloc(s, flags)`, the call C's macro makes.
///
/// # Safety
///
/// `s` is a live cache.
#[inline(always)]
pub(crate) unsafe fn kmem_cache_alloc(
    s: *mut bindings::kmem_cache,
    flags: bindings::gfp_t,
) -> *mut c_void {
    #[cfg(rslab_helpers)]
    if cfg!(CONFIG_MEM_ALLOC_PROFILING) {
        // SAFETY: The caller guarantees that `s` is a live cache; the helper is
        // `kmem_cache_alloc()`.
        return unsafe { c::rslab_kmem_cache_alloc(s, flags) };
    }
    // SAFETY: The caller guarantees that `s` is a live cache.
    unsafe { bindings::kmem_cache_alloc_noprof(s, flags) }
}
// upstream-part alloc: end

// upstream-omit: begin
/// `kmem_cache_alloc_node(s, flags, node)`, the call C's macro makes.
///
/// # Safety
///
/// `s` is a live cache, and `node` is `NUMA_NO_NODE` or a node number below `MAX_NUMNODES`.
#[inline(always)]
pub(crate) unsafe fn kmem_cache_alloc_node(
    s: *mut bindings::kmem_cache,
    flags: bindings::gfp_t,
    node: i32,
) -> *mut c_void {
    #[cfg(rslab_helpers)]
    if cfg!(CONFIG_MEM_ALLOC_PROFILING) {
        // SAFETY: By the caller's guarantees; the helper is `kmem_cache_alloc_node()`.
        return unsafe { c::rslab_kmem_cache_alloc_node(s, flags, node) };
    }
    // SAFETY: By the caller's guarantees.
    unsafe { bindings::kmem_cache_alloc_node_noprof(s, flags, node) }
}
// upstream-omit: end

/// `kmem_cache_alloc_from_sheaf(s, flags, sheaf)`, the call C's macro makes.
///
/// # Safety
///
/// `sheaf` is a live sheaf of the live cache `s`, owned by the caller, and `flags` holds at
/// most `__GFP_ZERO` and `__GFP_ACCOUNT`.
#[cfg(rslab_sheaf)]
#[inline(always)]
pub(crate) unsafe fn kmem_cache_alloc_from_sheaf(
    s: *mut bindings::kmem_cache,
    flags: bindings::gfp_t,
    sheaf: *mut bindings::slab_sheaf,
) -> *mut c_void {
    #[cfg(rslab_helpers)]
    if cfg!(CONFIG_MEM_ALLOC_PROFILING) {
        // SAFETY: By the caller's guarantees; the helper is `kmem_cache_alloc_from_sheaf()`.
        return unsafe { c::rslab_kmem_cache_alloc_from_sheaf(s, flags, sheaf) };
    }
    // SAFETY: By the caller's guarantees.
    unsafe { bindings::kmem_cache_alloc_from_sheaf_noprof(s, flags, sheaf) }
}

#[cfg(rslab_helpers)]
/// A cache's name, held for it by the helpers until [`destroy`] releases it: merged caches
/// share one `struct kmem_cache`, so the name, not the cache, says what to release.
pub(crate) struct Name(*mut c_void);

#[cfg(not(rslab_helpers))]
/// A cache's name, for [`destroy`]: nothing to hold when the slab calls are made directly.
pub(crate) struct Name(());

/// Creates a cache: `__kmem_cache_create_args(name, size, args, flags)`, or `ENOMEM` when the
/// kernel cannot. A cache created here is destroyed with [`destroy`], with the [`Name`]
/// returned with it.
///
/// Out of tree (`cfg(rslab_helpers)`), a name that a live cache of this module already has
/// fails with `EEXIST`, which the kernel would warn about (`kmem_cache_sanity_check()` with
/// `CONFIG_DEBUG_VM`) or, for a cache not merged with the first, create without its sysfs
/// directory after a "cannot create duplicate filename" stack dump; [`destroy`] releases the
/// name.
///
/// # Safety
///
/// `args` is valid for reads and writes for the duration of the call.
pub(crate) unsafe fn create(
    name: &CStr,
    size: u32,
    args: *mut bindings::kmem_cache_args,
    flags: bindings::slab_flags_t,
) -> Result<(*mut bindings::kmem_cache, Name)> {
    #[cfg(rslab_helpers)]
    let mut entry = core::ptr::null_mut();
    #[cfg(rslab_helpers)]
    // SAFETY: `name` is a NUL-terminated string (the slab and the helper copy it); the caller
    // guarantees `args`; `entry` is valid for a write.
    let p =
        unsafe { c::rslab_kmem_cache_create(name.as_char_ptr(), size, args, flags, &mut entry) };
    #[cfg(not(rslab_helpers))]
    // SAFETY: `name` is a NUL-terminated string (the slab copies it); the caller guarantees
    // `args`.
    let p = unsafe { bindings::__kmem_cache_create_args(name.as_char_ptr(), size, args, flags) };
    // upstream-omit: begin
    // The helper returns a cache or an `ERR_PTR()`, the kernel's function a cache or NULL.
    let p = kernel::error::from_err_ptr(p)?;
    // upstream-omit: end
    if p.is_null() {
        return Err(ENOMEM);
    }
    #[cfg(rslab_helpers)]
    let name = Name(entry);
    #[cfg(not(rslab_helpers))]
    let name = Name(());
    Ok((p, name))
}

#[cfg(rslab_helpers)]
/// Destroys a cache made by [`create`]: `kmem_cache_destroy(s)`.
///
/// # Safety
///
/// `s` and `name` are a cache and its name returned together by [`create`], owned by the
/// caller; neither is used afterwards.
pub(crate) unsafe fn destroy(s: *mut bindings::kmem_cache, name: &Name) {
    // SAFETY: By the caller's guarantees; `name.0` is the helper's entry for this cache's name.
    unsafe { c::rslab_kmem_cache_destroy(s, name.0) };
}

#[cfg(not(rslab_helpers))]
/// Destroys a cache made by [`create`]: `kmem_cache_destroy(s)`.
///
/// # Safety
///
/// `s` and `name` are a cache and its name returned together by [`create`], owned by the
/// caller; neither is used afterwards.
pub(crate) unsafe fn destroy(s: *mut bindings::kmem_cache, _name: &Name) {
    // SAFETY: By the caller's guarantees.
    unsafe { bindings::kmem_cache_destroy(s) };
}

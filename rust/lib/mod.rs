// SPDX-License-Identifier: GPL-2.0

//! rslab: slab and kmalloc building blocks for Rust drivers.
//!
//! - [`layout`]: the rule that turns a [`core::alloc::Layout`] into a kmalloc request, relying
//!   on the extended kmalloc alignment guarantee instead of power-of-two padding.
//! - [`buckets`]: the running kernel's kmalloc buckets, discovered at run time.
//! - [`kmalloc`]: the [`kernel::alloc::Allocator`] over kmalloc built on that rule, for
//!   `Box<T, Kmalloc>` and `Vec<T, Kmalloc>`.
//! - [`stats`]: an opt-in wrapper of that allocator that counts where the bytes go.
//! - [`cache`]: typed slab caches, [`cache::KmemCache<T>`], whose objects borrow the cache.
//! - [`static_cache`]: module-lifetime caches and `Box` allocators over them.
//! - [`sheaf`]: prefilled sheaves for allocations that cannot fail under a lock.
// upstream-omit: begin
//!   Built when the kernel exports the sheaf API (`cfg(rslab_sheaf)`, set by
//!   `scripts/sheaf.mk`); otherwise a stub whose use is a compile error that says so.
// upstream-omit: end
//! - [`gfp`]: the raw `gfp_t` of a `Flags` value, for the slab calls.
//! - [`helpers`]: the slab calls that C makes through macros (`kmem_cache_alloc()` with its
//!   allocation-profiling hooks, and friends), and cache creation and destruction.
//!
//! An out-of-tree module cannot link against another module's Rust crate, so drivers include
//! this directory as a module of their own crate, with a `#[path]` attribute pointing at this
//! file (see `samples/rslab_idmap_main.rs`). The library names its own parts relative to itself
//! (`super::`), so it may be mounted under any name and anywhere in the crate
//! (`samples/rslab_mount_main.rs` mounts it as `slab` inside a submodule); only
//! [`static_cache_allocator!`](crate::static_cache_allocator) needs to be told where it is when
//! that is not `rslab` at the crate root.

pub mod buckets;
pub mod cache;
pub mod gfp;
pub mod helpers;
pub mod kmalloc;
pub mod layout;
#[cfg(rslab_sheaf)]
pub mod sheaf;
#[cfg(not(rslab_sheaf))]
#[path = "nosheaf.rs"]
pub mod sheaf;
pub mod static_cache;
pub mod stats;

/// Whether this build has the sheaf API (the kernel exports the sheaf functions).
pub const HAVE_SHEAVES: bool = cfg!(rslab_sheaf);

/// Returns the value of a module parameter, on every kernel rslab supports.
///
/// 7.3 changed `ModuleParamAccess::value()` to return a copy (the reference is now
/// `value_ref()`); 7.2's returns a reference. `scripts/compat.mk` probes the kernel's sources
/// and sets `cfg(rslab_param_value_copy)` for the new form.
///
/// # Examples
///
/// `no_run`: a parameter exists only in the module that declares it, so this example only
/// defines a function.
///
/// ```no_run
/// use kernel::module_param::ModuleParamAccess;
///
/// // In a module declared with `params: { batch: u64 { ... } }`, pass
/// // `&module_parameters::batch`.
/// fn batch(p: &ModuleParamAccess<u64>) -> u64 {
///     rslab::param(p)
/// }
/// ```
#[inline]
pub fn param<T: Copy>(p: &kernel::module_param::ModuleParamAccess<T>) -> T {
    #[cfg(rslab_param_value_copy)]
    let v = p.value();
    #[cfg(not(rslab_param_value_copy))]
    let v = *p.value();
    v
}

#[cfg(rslab_pin_init_raw)]
/// Runs the pinned initialiser `init` on `slot`, on every kernel rslab supports.
///
/// 7.3's pin-init renamed `PinInit::__pinned_init()` to `__init()` and added `raw_try_init()`
/// to call it; `scripts/compat.mk` sets `cfg(rslab_pin_init_raw)` for that form.
///
/// # Safety
///
/// - `slot` is valid for writes of a `T` and holds no value.
/// - If `Err` is returned, the caller does not touch `*slot` other than to deallocate it.
/// - `*slot` does not move until it is dropped.
#[inline(always)]
pub(crate) unsafe fn pin_init_slot<T, E>(
    slot: *mut T,
    init: impl pin_init::PinInit<T, E>,
) -> Result<(), E> {
    // SAFETY: The caller guarantees `raw_try_init`'s requirements, which are the ones above.
    unsafe { pin_init::raw_try_init(slot, init) }
}

#[cfg(not(rslab_pin_init_raw))]
/// Runs the pinned initialiser `init` on `slot`, on every kernel rslab supports.
///
/// 7.3's pin-init renamed `PinInit::__pinned_init()` to `__init()` and added `raw_try_init()`
/// to call it; `scripts/compat.mk` sets `cfg(rslab_pin_init_raw)` for that form.
///
/// # Safety
///
/// - `slot` is valid for writes of a `T` and holds no value.
/// - If `Err` is returned, the caller does not touch `*slot` other than to deallocate it.
/// - `*slot` does not move until it is dropped.
#[inline(always)]
pub(crate) unsafe fn pin_init_slot<T, E>(
    slot: *mut T,
    init: impl pin_init::PinInit<T, E>,
) -> Result<(), E> {
    // SAFETY: The caller guarantees `__pinned_init`'s requirements, which are the ones above.
    unsafe { init.__pinned_init(slot) }
}

/// Checks a condition in a test or self-check; on failure, logs what was expected and where,
/// and returns `Err(EINVAL)` from the enclosing function.
///
/// Unlike KUnit's `assert!`, which ends the test thread on the spot, this runs destructors, so a
/// failing check never leaks memory or leaves a lock held.
#[cfg_attr(not(rslab_lib_tests), allow(unused_macros))]
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            ::kernel::pr_err!(
                "check failed at {}:{}: {}: {}\n",
                ::core::file!(),
                ::core::line!(),
                ::core::stringify!($cond),
                ::core::format_args!($($arg)+)
            );
            return Err(::kernel::error::code::EINVAL);
        }
    };
}
#[allow(unused_imports)]
pub(crate) use check;

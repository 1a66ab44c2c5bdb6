// SPDX-License-Identifier: GPL-2.0

//! Slab sheaves: compiled out of this build.
//!
//! The sheaf API needs the kernel's five slab sheaf functions (`kmem_cache_prefill_sheaf()` and
//! the rest), which 7.x kernels do not export to modules. A driver's Kbuild includes rslab's
//! `scripts/sheaf.mk`, which looks them up in the kernel's `Module.symvers` and passes
//! `--cfg rslab_sheaf` when all five are there; this stub stands in otherwise. To get sheaves:
//!
//! - include `scripts/sheaf.mk` in the driver's Kbuild, next to `scripts/compat.mk`;
//! - build against a kernel that exports the functions:
//!   `tools/testing/patches/0001-mm-slub-export-the-slab-sheaf-API-to-modules.patch`, or build
//!   the driver into the kernel.
//!
//! Calling [`KmemCache::prefill`] here fails to compile with that explanation.

use super::cache::KmemCache;
use core::{convert::Infallible, marker::PhantomData};
use kernel::{alloc::Flags, prelude::*};

pub use super::cache::MAX_SHEAF_OBJECTS;

/// Implemented by nothing: a bound on the stubs below that makes every call a compile error
/// which says why the sheaf API is missing and how to get it.
#[diagnostic::on_unimplemented(
    message = "the rslab sheaf API is compiled out of this build",
    label = "`prefill` needs `--cfg rslab_sheaf`",
    note = "include rslab's scripts/sheaf.mk in the driver's Kbuild: it passes `--cfg rslab_sheaf` when the kernel exports the five slab sheaf functions",
    note = "7.x kernels do not export them: apply tools/testing/patches/0001-mm-slub-export-the-slab-sheaf-API-to-modules.patch, or build the driver into the kernel"
)]
pub trait SheafApi {}

/// A sheaf; this build has none (see the [module documentation](self)).
pub struct Sheaf<'c, T> {
    never: Infallible,
    _cache: PhantomData<&'c KmemCache<T>>,
}

/// A claimed object of a sheaf; this build has none (see the [module documentation](self)).
pub struct Slot<'s, 'c, T> {
    _never: Infallible,
    _sheaf: PhantomData<&'s Sheaf<'c, T>>,
}

/// Claimed objects of a sheaf; this build has none (see the [module documentation](self)).
pub struct Claims<'s, 'c, T> {
    _never: Infallible,
    _sheaf: PhantomData<&'s Sheaf<'c, T>>,
}

/// An object taken from a sheaf and charged; this build has none (see the
/// [module documentation](self)).
pub struct Charged<'c, T> {
    _never: Infallible,
    _cache: PhantomData<&'c KmemCache<T>>,
}

impl<T> KmemCache<T> {
    /// Compiled out: using it is a compile error that explains why (see the
    /// [module documentation](self)).
    pub fn prefill(&self, _count: usize, _flags: Flags) -> Result<Sheaf<'_, T>>
    where
        T: SheafApi,
    {
        Err(ENOTSUPP)
    }
}

impl<'c, T> Sheaf<'c, T> {
    /// Compiled out (see the [module documentation](self)).
    pub fn claim(&self) -> Result<Slot<'_, 'c, T>, kernel::alloc::AllocError>
    where
        T: SheafApi,
    {
        match self.never {}
    }
}

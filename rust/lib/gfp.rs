// SPDX-License-Identifier: GPL-2.0

//! The raw `gfp_t` of a [`Flags`] value, without access to the kernel crate's private field.
//!
//! `Flags::as_raw()` is private to the kernel crate, and `Flags` is not `#[repr(transparent)]`,
//! so reading its bits by transmute would rely on a layout Rust does not promise. This module
//! recovers them soundly instead: a `Flags` value can only be built from the kernel crate's
//! public constants with `|`, `&` and `!`, so it is a union of *atoms* of the Boolean algebra
//! those constants generate. For each atom, [`raw`] tests `flags.contains(atom)` and, when true,
//! adds the atom's bits (the same expression evaluated on the `bindings` constants).
//!
//! The atoms are found at compile time; the test costs a few dozen bit operations, so it is
//! meant for slow paths that may sleep anyway (sheaf prefill, refill, return), not for the
//! allocation fast path, which never needs it. The four values nearly every caller passes are
//! recognised by comparison first, and a constant argument folds to a constant.
//!
//! [`slab`] also refuses what the slab allocator would warn about: `__GFP_HIGHMEM`,
//! `__GFP_DMA32` and bits outside `__GFP_BITS_MASK` (the kernel's `GFP_SLAB_BUG_MASK`). The
//! kernel fixes such flags up with an "Unexpected gfp ... Fix your code!" warning and a stack
//! dump; rslab's calls that allocate return an error instead, before the kernel sees them.

use kernel::{
    alloc::{flags, AllocError, Flags},
    bindings,
};

/// The kernel crate's public flag constants, as `Flags` and as raw bits, in the same order.
const N: usize = 7;

fn generators() -> [Flags; N] {
    [
        flags::__GFP_ZERO,
        flags::__GFP_HIGHMEM,
        flags::__GFP_NOWARN,
        flags::GFP_ATOMIC,
        flags::GFP_KERNEL,
        flags::GFP_KERNEL_ACCOUNT,
        flags::GFP_NOWAIT,
    ]
}

const RAW: [u32; N] = [
    bindings::__GFP_ZERO,
    bindings::__GFP_HIGHMEM,
    bindings::__GFP_NOWARN,
    bindings::GFP_ATOMIC,
    bindings::GFP_KERNEL,
    bindings::GFP_KERNEL_ACCOUNT,
    bindings::GFP_NOWAIT,
];

/// `__GFP_ACCOUNT`, which the bindings do not export on its own.
pub const GFP_ACCOUNT: u32 = bindings::GFP_KERNEL_ACCOUNT & !bindings::GFP_KERNEL;

/// The raw bits of the atom selected by `signs` (bit `i` set: inside generator `i`).
const fn atom_raw(signs: u32) -> u32 {
    let mut bits = u32::MAX;
    let mut i = 0;
    while i < N {
        bits &= if signs & (1 << i) != 0 {
            RAW[i]
        } else {
            !RAW[i]
        };
        i += 1;
    }
    bits
}

/// The sign patterns of the non-empty atoms. There are at most 33: each holds at least one of
/// the 32 bits, and the atom outside every generator is one of them.
const ATOMS: ([u32; 33], usize) = {
    let mut out = [0; 33];
    let mut n = 0;
    let mut signs = 0;
    while signs < (1 << N) {
        if atom_raw(signs) != 0 {
            out[n] = signs;
            n += 1;
        }
        signs += 1;
    }
    (out, n)
};

/// Returns the raw `gfp_t` bits of `flags`.
///
/// # Examples
///
/// ```
/// use kernel::bindings;
/// use rslab::gfp;
///
/// assert_eq!(gfp::raw(GFP_KERNEL), bindings::GFP_KERNEL);
/// assert_eq!(
///     gfp::raw(GFP_KERNEL | __GFP_ZERO),
///     bindings::GFP_KERNEL | bindings::__GFP_ZERO
/// );
/// ```
#[inline]
pub fn raw(flags: Flags) -> u32 {
    // The values almost every caller passes, recognised by equality; with a constant argument
    // this folds to a constant.
    if flags == flags::GFP_KERNEL {
        bindings::GFP_KERNEL
    } else if flags == flags::GFP_NOWAIT {
        bindings::GFP_NOWAIT
    } else if flags == flags::GFP_ATOMIC {
        bindings::GFP_ATOMIC
    } else if flags == flags::GFP_KERNEL_ACCOUNT {
        bindings::GFP_KERNEL_ACCOUNT
    } else {
        raw_slow(&generators(), flags)
    }
}

fn raw_slow(gens: &[Flags; N], flags: Flags) -> u32 {
    let mut bits = 0;
    for &signs in &ATOMS.0[..ATOMS.1] {
        let mut atom = !empty();
        for (i, &g) in gens.iter().enumerate() {
            atom = atom & if signs & (1 << i) != 0 { g } else { !g };
        }
        if flags.contains(atom) {
            bits |= atom_raw(signs);
        }
    }
    bits
}

/// Returns the raw `gfp_t` bits of `flags` for a slab allocation, or [`AllocError`] if they
/// have a bit of [`SLAB_BUG_MASK`](super::cache::SLAB_BUG_MASK), which the slab allocator
/// would warn about.
///
/// Every rslab call that allocates from a slab (the kmalloc backend, caches, sheaves) checks
/// its flags with this function; with constant flags the check folds away.
///
/// # Examples
///
/// ```
/// use kernel::bindings;
/// use rslab::gfp;
///
/// assert_eq!(gfp::slab(GFP_NOWAIT), Ok(bindings::GFP_NOWAIT));
/// assert!(gfp::slab(GFP_KERNEL | __GFP_HIGHMEM).is_err());
/// ```
#[inline]
pub fn slab(flags: Flags) -> Result<u32, AllocError> {
    super::cache::slab_gfp(flags)
}

/// An empty `Flags` value, built from public constants.
pub fn empty() -> Flags {
    flags::GFP_KERNEL & !flags::GFP_KERNEL
}

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_gfp)]
mod tests {
    use super::super::cache::SLAB_BUG_MASK;
    use super::*;

    #[test]
    fn every_constant_and_combination_round_trips() {
        let gens = generators();
        // Every union of up to two generators, with and without complements of a third.
        for i in 0..N {
            assert_eq!(raw(gens[i]), RAW[i]);
            for j in 0..N {
                assert_eq!(raw(gens[i] | gens[j]), RAW[i] | RAW[j]);
                assert_eq!(raw(gens[i] & gens[j]), RAW[i] & RAW[j]);
                for k in 0..N {
                    assert_eq!(
                        raw((gens[i] | gens[j]) & !gens[k]),
                        (RAW[i] | RAW[j]) & !RAW[k]
                    );
                }
            }
        }
        assert_eq!(raw(empty()), 0);
        assert_eq!(raw(!empty()), u32::MAX);
        assert_eq!(raw(!flags::GFP_KERNEL), !bindings::GFP_KERNEL);
        assert_eq!(GFP_ACCOUNT.count_ones(), 1);
    }

    #[test]
    fn flags_the_slab_rejects_are_refused() {
        use flags::*;
        for ok in [
            GFP_KERNEL,
            GFP_ATOMIC,
            GFP_NOWAIT,
            GFP_KERNEL_ACCOUNT,
            GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN,
        ] {
            assert_eq!(slab(ok), Ok(raw(ok)));
        }
        assert_eq!(
            SLAB_BUG_MASK & bindings::__GFP_HIGHMEM,
            bindings::__GFP_HIGHMEM
        );
        assert_eq!(
            SLAB_BUG_MASK & (bindings::GFP_KERNEL | bindings::GFP_ATOMIC),
            0
        );
        for bad in [
            GFP_KERNEL | __GFP_HIGHMEM,
            GFP_ATOMIC | __GFP_HIGHMEM,
            // Every bit but GFP_KERNEL's: __GFP_DMA32 and bits beyond __GFP_BITS_MASK.
            !GFP_KERNEL,
            !empty(),
        ] {
            assert!(slab(bad).is_err());
        }
    }
}

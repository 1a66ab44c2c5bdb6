// SPDX-License-Identifier: GPL-2.0

//! The layout rule: how a Rust [`Layout`] becomes a kmalloc request.
//!
//! kmalloc guarantees that every object is aligned to at least the largest power-of-two divisor
//! of the size it was asked for (`kmalloc-96` objects are 32-aligned, `kmalloc-192` objects are
//! 64-aligned, power-of-two sizes are naturally aligned). Requests above the slab range go to the
//! page allocator, whose blocks are naturally aligned to their (power-of-two) size. Hence a
//! layout only needs its size rounded up to a multiple of its alignment: the request is then a
//! multiple of `align`, so its largest power-of-two divisor is at least `align`, and so is the
//! object's alignment. Padding to the next power of two is never needed.
//!
//! The rule is pure arithmetic; [`buckets`](super::buckets) checks at run time that the running
//! kernel keeps its side of the bargain.

use core::alloc::Layout;
use kernel::bindings;

/// The largest request kmalloc serves at all (`KMALLOC_MAX_SIZE`).
pub const KMALLOC_MAX_SIZE: usize = bindings::KMALLOC_MAX_SIZE as usize;

/// The largest request served by a kmalloc slab cache (`KMALLOC_MAX_CACHE_SIZE`); larger
/// requests go to the page allocator.
pub const KMALLOC_MAX_CACHE_SIZE: usize = bindings::KMALLOC_MAX_CACHE_SIZE as usize;

/// Why a [`Layout`] cannot be served by kmalloc.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Rounding the size up to the alignment overflows `isize`.
    Overflow,
    /// The rounded size exceeds [`KMALLOC_MAX_SIZE`].
    TooLarge,
    /// The alignment is not a power of two.
    BadAlign,
}

impl From<LayoutError> for kernel::alloc::AllocError {
    fn from(_: LayoutError) -> Self {
        kernel::alloc::AllocError
    }
}

impl From<LayoutError> for kernel::error::Error {
    fn from(e: LayoutError) -> Self {
        match e {
            LayoutError::Overflow => kernel::error::code::EOVERFLOW,
            LayoutError::TooLarge => kernel::error::code::E2BIG,
            LayoutError::BadAlign => kernel::error::code::EINVAL,
        }
    }
}

/// Returns the number of bytes to ask kmalloc for so that the object satisfies `layout`.
///
/// This is `layout.size()` rounded up to a multiple of `layout.align()`. A zero-sized layout
/// needs no memory and yields `Ok(0)`.
///
/// # Examples
///
/// ```
/// # use core::alloc::Layout;
/// use rslab::layout::{kmalloc_size, LayoutError, KMALLOC_MAX_SIZE};
///
/// // A 96-byte, 32-aligned object fits kmalloc-96: no padding to 128.
/// assert_eq!(kmalloc_size(Layout::from_size_align(96, 32)?), Ok(96));
/// // 100 bytes at 64-byte alignment need two cache lines.
/// assert_eq!(kmalloc_size(Layout::from_size_align(100, 64)?), Ok(128));
/// // 192 bytes at 64-byte alignment: kmalloc-192 is 64-aligned.
/// assert_eq!(kmalloc_size(Layout::from_size_align(192, 64)?), Ok(192));
/// assert_eq!(kmalloc_size(Layout::new::<()>()), Ok(0));
/// assert_eq!(
///     kmalloc_size(Layout::from_size_align(KMALLOC_MAX_SIZE + 1, 8)?),
///     Err(LayoutError::TooLarge)
/// );
/// # Ok::<(), core::alloc::LayoutError>(())
/// ```
#[inline]
pub const fn kmalloc_size(layout: Layout) -> Result<usize, LayoutError> {
    request_size(layout.size(), layout.align())
}

/// The layout rule on raw numbers: `size` rounded up to a multiple of `align`.
///
/// Unlike [`kmalloc_size`] it accepts any input, so it also reports what [`Layout`] would have
/// refused: an alignment that is not a power of two, and a rounding that overflows `isize`.
///
/// # Examples
///
/// ```
/// use rslab::layout::{request_size, LayoutError};
///
/// assert_eq!(request_size(96, 32), Ok(96));
/// assert_eq!(request_size(usize::MAX, 8), Err(LayoutError::Overflow));
/// assert_eq!(request_size(64, 24), Err(LayoutError::BadAlign));
/// ```
#[inline]
pub const fn request_size(size: usize, align: usize) -> Result<usize, LayoutError> {
    if !align.is_power_of_two() {
        return Err(LayoutError::BadAlign);
    }
    let mask = align - 1;
    let rounded = match size.checked_add(mask) {
        Some(s) => s & !mask,
        None => return Err(LayoutError::Overflow),
    };
    if rounded > isize::MAX as usize {
        return Err(LayoutError::Overflow);
    }
    if rounded > KMALLOC_MAX_SIZE {
        return Err(LayoutError::TooLarge);
    }
    Ok(rounded)
}

/// Returns the largest power of two that divides `size` (`size` must not be zero).
///
/// This is the alignment kmalloc guarantees for a request of `size` bytes.
///
/// # Examples
///
/// ```
/// use rslab::layout::pow2_divisor;
///
/// assert_eq!(pow2_divisor(96), 32);
/// assert_eq!(pow2_divisor(192), 64);
/// assert_eq!(pow2_divisor(4096), 4096);
/// ```
#[inline]
pub const fn pow2_divisor(size: usize) -> usize {
    1 << size.trailing_zeros()
}

/// The request size a power-of-two padding scheme would use for `layout`: its size rounded up
/// to the next power of two, at least the alignment.
///
/// This is what rslab avoids; it is here to measure the difference.
///
/// # Examples
///
/// ```
/// # use core::alloc::Layout;
/// use rslab::layout::pow2_padded_size;
///
/// assert_eq!(pow2_padded_size(Layout::from_size_align(96, 32).unwrap()), Some(128));
/// assert_eq!(pow2_padded_size(Layout::from_size_align(8, 1).unwrap()), Some(8));
/// ```
#[inline]
pub const fn pow2_padded_size(layout: Layout) -> Option<usize> {
    let size = if layout.size() > layout.align() {
        layout.size()
    } else {
        layout.align()
    };
    size.checked_next_power_of_two()
}

/// Returns whether kmalloc, by its guarantee alone, aligns an object of `size` bytes to `align`.
#[inline]
pub const fn guaranteed_aligned(size: usize, align: usize) -> bool {
    size != 0 && pow2_divisor(size) >= align
}

/// The largest alignment the rule supports: the size of the largest kmalloc request.
pub const MAX_ALIGN: usize = KMALLOC_MAX_SIZE;

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_layout)]
mod tests {
    use super::*;
    use kernel::{page::PAGE_SIZE, prelude::*};

    fn l(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("valid test layout")
    }

    #[test]
    fn rounds_to_alignment_not_power_of_two() {
        assert_eq!(kmalloc_size(l(96, 32)), Ok(96));
        assert_eq!(kmalloc_size(l(192, 64)), Ok(192));
        assert_eq!(kmalloc_size(l(100, 64)), Ok(128));
        assert_eq!(kmalloc_size(l(1, 1)), Ok(1));
        assert_eq!(kmalloc_size(l(3, 4)), Ok(4));
        assert_eq!(kmalloc_size(l(4097, 4096)), Ok(8192));
        assert_eq!(kmalloc_size(l(1, PAGE_SIZE)), Ok(PAGE_SIZE));
    }

    #[test]
    fn zero_size_needs_no_memory() {
        assert_eq!(kmalloc_size(l(0, 1)), Ok(0));
        assert_eq!(kmalloc_size(l(0, 4096)), Ok(0));
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert_eq!(kmalloc_size(l(KMALLOC_MAX_SIZE, 1)), Ok(KMALLOC_MAX_SIZE));
        assert_eq!(
            kmalloc_size(l(KMALLOC_MAX_SIZE + 1, 1)),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(
            kmalloc_size(l(isize::MAX as usize - 7, 8)),
            Err(LayoutError::TooLarge)
        );
        // The largest size `Layout` accepts at this alignment rounds past `isize::MAX`.
        let max = isize::MAX as usize - (PAGE_SIZE - 1);
        assert_eq!(kmalloc_size(l(max, PAGE_SIZE)), Err(LayoutError::TooLarge));
        assert_eq!(request_size(usize::MAX, 8), Err(LayoutError::Overflow));
        assert_eq!(
            request_size(isize::MAX as usize, 2),
            Err(LayoutError::Overflow)
        );
        assert_eq!(request_size(64, 0), Err(LayoutError::BadAlign));
        assert_eq!(request_size(64, 24), Err(LayoutError::BadAlign));
        assert_eq!(Error::from(LayoutError::TooLarge), E2BIG);
        assert_eq!(Error::from(LayoutError::BadAlign), EINVAL);
        assert_eq!(Error::from(LayoutError::Overflow), EOVERFLOW);
    }

    #[test]
    fn rounded_size_is_always_guaranteed_aligned() {
        let mut align = 1;
        while align <= PAGE_SIZE {
            let mut size = 1;
            while size <= 3 * PAGE_SIZE {
                let r = kmalloc_size(l(size, align)).expect("in range");
                assert!(r >= size && r < size + align);
                assert!(guaranteed_aligned(r, align));
                size += 7;
            }
            align <<= 1;
        }
    }

    #[test]
    fn pow2_padding_model() {
        assert_eq!(pow2_padded_size(l(96, 32)), Some(128));
        assert_eq!(pow2_padded_size(l(192, 64)), Some(256));
        assert_eq!(pow2_padded_size(l(1, 64)), Some(64));
        assert_eq!(pow2_divisor(24), 8);
        assert_eq!(pow2_divisor(1), 1);
    }
}

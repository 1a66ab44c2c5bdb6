// SPDX-License-Identifier: GPL-2.0

//! Opt-in per-bucket statistics for [`Kmalloc`] allocations.
//!
//! [`TrackedKmalloc`] allocates exactly like [`Kmalloc`] and additionally counts, per kmalloc
//! bucket: allocations, live objects, and the live bytes requested, actually used (`ksize()`),
//! that power-of-two padding would have used, and of the ideal bucket. The plain allocator has
//! no counters at all; only users of [`TrackedKmalloc`] pay for them (a few relaxed atomic
//! additions, one `ksize()` and two `kmalloc_size_roundup()` per call).
//!
//! [`Snapshot`] renders the counters in a stable text format (see [`Snapshot`]'s `Debug`
//! implementation), which rslab exposes at `/sys/kernel/debug/rslab/kmalloc_stats`.
//!
//! # Examples
//!
//! ```
//! use rslab::stats::{Snapshot, TrackedBox};
//!
//! let before = Snapshot::take();
//! let b = TrackedBox::new([0u8; 96], GFP_KERNEL)?;
//! let after = Snapshot::take();
//! assert_eq!(after.total().live, before.total().live + 1);
//! # drop(b);
//! # Ok::<(), Error>(())
//! ```

use super::{
    buckets::{self, ALL, MAX_BUCKETS},
    kmalloc::Kmalloc,
    layout::{pow2_padded_size, KMALLOC_MAX_CACHE_SIZE},
};
use core::{alloc::Layout, fmt, ptr::NonNull};
use kernel::{
    alloc::{AllocError, Allocator, Box, Flags, NumaNode, Vec},
    sync::atomic::{Atomic, Relaxed},
};

/// Rows in the table: the slab buckets plus one for page-allocator-backed objects.
const ROWS: usize = MAX_BUCKETS + 1;

/// Live and cumulative counters of one bucket.
struct Counters {
    allocs: Atomic<usize>,
    live: Atomic<usize>,
    requested: Atomic<usize>,
    used: Atomic<usize>,
    pow2: Atomic<usize>,
    ideal: Atomic<usize>,
}

impl Counters {
    const fn new() -> Self {
        Self {
            allocs: Atomic::new(0),
            live: Atomic::new(0),
            requested: Atomic::new(0),
            used: Atomic::new(0),
            pow2: Atomic::new(0),
            ideal: Atomic::new(0),
        }
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Counters = Counters::new();
static COUNTERS: [Counters; ROWS] = [ZERO; ROWS];

/// The row of an object of usable size `used`: its index among the rules' buckets, or the
/// last row for objects from the page allocator.
fn row(used: usize) -> usize {
    if used > KMALLOC_MAX_CACHE_SIZE {
        return ROWS - 1;
    }
    ALL.index_of(used).map_or(ROWS - 1, |i| i.min(ROWS - 2))
}

/// What one live object contributes to the counters.
struct Object {
    row: usize,
    requested: usize,
    used: usize,
    pow2: usize,
    ideal: usize,
}

impl Object {
    /// Measures the live `Kmalloc` object `ptr` allocated for `layout`.
    fn measure(ptr: NonNull<u8>, layout: Layout) -> Self {
        // SAFETY: Callers pass live objects of `Kmalloc`, which are kmalloc objects.
        let used = unsafe { buckets::ksize(ptr) };
        Self {
            row: row(used),
            requested: layout.size(),
            used,
            pow2: pow2_padded_size(layout).map_or(0, buckets::roundup),
            ideal: buckets::ideal_bucket(layout).unwrap_or(0),
        }
    }

    fn add(&self, new_allocation: bool) {
        let c = &COUNTERS[self.row];
        if new_allocation {
            c.allocs.fetch_add(1, Relaxed);
        }
        c.live.fetch_add(1, Relaxed);
        c.requested.fetch_add(self.requested, Relaxed);
        c.used.fetch_add(self.used, Relaxed);
        c.pow2.fetch_add(self.pow2, Relaxed);
        c.ideal.fetch_add(self.ideal, Relaxed);
    }

    fn remove(&self) {
        let c = &COUNTERS[self.row];
        c.live.fetch_sub(1, Relaxed);
        c.requested.fetch_sub(self.requested, Relaxed);
        c.used.fetch_sub(self.used, Relaxed);
        c.pow2.fetch_sub(self.pow2, Relaxed);
        c.ideal.fetch_sub(self.ideal, Relaxed);
    }
}

/// [`Kmalloc`] with per-bucket statistics; see the [module documentation](self).
pub struct TrackedKmalloc;

/// A [`Box`] allocated with [`TrackedKmalloc`].
pub type TrackedBox<T> = Box<T, TrackedKmalloc>;

/// A [`Vec`] allocated with [`TrackedKmalloc`].
pub type TrackedVec<T> = Vec<T, TrackedKmalloc>;

// SAFETY: Every call is forwarded unchanged to `Kmalloc`, which is an `Allocator`; the
// accounting only reads `ksize()` of live objects and never touches their memory.
unsafe impl Allocator for TrackedKmalloc {
    const MIN_ALIGN: usize = Kmalloc::MIN_ALIGN;

    unsafe fn realloc(
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
        nid: NumaNode,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // The old object must be measured while it is still live.
        let old = ptr
            .filter(|_| old_layout.size() != 0)
            .map(|p| Object::measure(p, old_layout));
        if let Some(o) = &old {
            o.remove();
        }
        // SAFETY: The caller upholds `realloc`'s requirements, which are `Kmalloc`'s too.
        let ret = unsafe { Kmalloc::realloc(ptr, layout, old_layout, flags, nid) };
        match (&ret, &old) {
            (Ok(new), _) if layout.size() != 0 => {
                let moved = ptr != Some(new.cast());
                Object::measure(new.cast(), layout).add(old.is_none() || moved);
            }
            // A failed reallocation leaves the old object as it was.
            (Err(_), Some(o)) => o.add(false),
            _ => {}
        }
        ret
    }
}

/// One row of a [`Snapshot`].
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Row {
    /// Object size of the bucket (0 for the page allocator row).
    pub bucket: usize,
    /// Allocations since the module was loaded (a reallocation into a new object counts).
    pub allocs: usize,
    /// Objects alive now.
    pub live: usize,
    /// Bytes the live objects' layouts asked for.
    pub requested: usize,
    /// Bytes the live objects occupy (`ksize()`).
    pub used: usize,
    /// Bytes the live objects would occupy with power-of-two padding.
    pub pow2: usize,
    /// Bytes the live objects would occupy in the smallest bucket that fits their layout.
    pub ideal: usize,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.allocs += o.allocs;
        self.live += o.live;
        self.requested += o.requested;
        self.used += o.used;
        self.pow2 += o.pow2;
        self.ideal += o.ideal;
    }
}

/// A copy of the [`TrackedKmalloc`] counters at one point in time.
///
/// Its `Debug` output is the stable text format of `rslab/kmalloc_stats`: a `# rslab
/// kmalloc_stats v1` line, a `#` header naming the columns, one line per bucket with
/// whitespace-separated decimal fields `bucket allocs live requested used pow2 ideal` (bucket
/// `large` for the page allocator), and a final `total` line.
pub struct Snapshot {
    rows: [Row; ROWS],
}

impl Snapshot {
    /// Reads all counters (not atomically as a whole; each field is exact).
    pub fn take() -> Self {
        let expected = &ALL;
        let mut rows = [Row::default(); ROWS];
        for (i, (r, c)) in rows.iter_mut().zip(COUNTERS.iter()).enumerate() {
            *r = Row {
                bucket: expected.as_slice().get(i).copied().unwrap_or(0),
                allocs: c.allocs.load(Relaxed),
                live: c.live.load(Relaxed),
                requested: c.requested.load(Relaxed),
                used: c.used.load(Relaxed),
                pow2: c.pow2.load(Relaxed),
                ideal: c.ideal.load(Relaxed),
            };
        }
        rows[ROWS - 1].bucket = 0;
        Self { rows }
    }

    /// The rows that saw at least one allocation.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.allocs != 0 || r.live != 0)
    }

    /// The row of the bucket of size `bucket` (0 for the page allocator).
    pub fn bucket(&self, bucket: usize) -> Row {
        self.rows
            .iter()
            .find(|r| r.bucket == bucket)
            .copied()
            .unwrap_or_default()
    }

    /// The sum over all rows.
    pub fn total(&self) -> Row {
        let mut t = Row::default();
        for r in self.rows.iter() {
            t.add(r);
        }
        t
    }

    /// Counters accumulated between `earlier` and `self`, row by row.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut rows = self.rows;
        for (r, e) in rows.iter_mut().zip(earlier.rows.iter()) {
            r.allocs = r.allocs.wrapping_sub(e.allocs);
            r.live = r.live.wrapping_sub(e.live);
            r.requested = r.requested.wrapping_sub(e.requested);
            r.used = r.used.wrapping_sub(e.used);
            r.pow2 = r.pow2.wrapping_sub(e.pow2);
            r.ideal = r.ideal.wrapping_sub(e.ideal);
        }
        Snapshot { rows }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# rslab kmalloc_stats v1")?;
        writeln!(f, "# bucket allocs live requested used pow2 ideal")?;
        for r in self.rows() {
            if r.bucket == 0 {
                write!(f, "large")?;
            } else {
                write!(f, "{}", r.bucket)?;
            }
            writeln!(
                f,
                " {} {} {} {} {} {}",
                r.allocs, r.live, r.requested, r.used, r.pow2, r.ideal
            )?;
        }
        let t = self.total();
        writeln!(
            f,
            "total {} {} {} {} {} {}",
            t.allocs, t.live, t.requested, t.used, t.pow2, t.ideal
        )
    }
}

/// The debugfs file: renders a fresh [`Snapshot`] on every read.
pub struct StatsFile;

impl fmt::Debug for StatsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Snapshot::take(), f)
    }
}

#[cfg(rslab_lib_tests)]
#[kernel::macros::kunit_tests(rslab_stats)]
mod tests {
    use super::super::check;
    use super::*;
    use kernel::{prelude::*, str::CString};

    #[repr(align(32))]
    struct Line96([u8; 96]);

    #[test]
    fn box_is_counted_in_its_bucket() -> Result {
        let before = Snapshot::take();
        let b = TrackedBox::new(Line96([3; 96]), GFP_KERNEL)?;
        check!(b.0[95] == 3, "contents");
        // kmalloc-96, or kmalloc-128 at a boot-time minimum alignment of 64 or more.
        let bucket = buckets::ideal_bucket(Layout::new::<Line96>()).ok_or(EINVAL)?;
        let d = Snapshot::take().since(&before).bucket(bucket);
        check!(
            d == Row {
                bucket,
                allocs: 1,
                live: 1,
                requested: 96,
                used: bucket,
                pow2: 128,
                ideal: bucket
            },
            "after alloc: {:?}",
            d
        );
        drop(b);
        let d = Snapshot::take().since(&before).bucket(bucket);
        check!(
            d.allocs == 1 && d.live == 0 && d.requested == 0 && d.used == 0 && d.pow2 == 0,
            "after free: {:?}",
            d
        );
        Ok(())
    }

    #[test]
    fn vec_growth_moves_between_buckets() -> Result {
        let before = Snapshot::take();
        let mut v = TrackedVec::<[u8; 24]>::new();
        for _ in 0..100 {
            v.push([1; 24], GFP_KERNEL)?;
        }
        let d = Snapshot::take().since(&before);
        let t = d.total();
        check!(t.live == 1, "one live buffer expected: {:?}", t);
        check!(
            t.allocs >= 3,
            "growth should have moved the buffer: {:?}",
            t
        );
        check!(
            t.requested == v.capacity() * 24,
            "requested {} for capacity {}",
            t.requested,
            v.capacity()
        );
        check!(t.used == t.ideal && t.used <= t.pow2, "{:?}", t);
        drop(v);
        let t = Snapshot::take().since(&before).total();
        check!(
            t.live == 0 && t.used == 0 && t.requested == 0,
            "after drop: {:?}",
            t
        );
        Ok(())
    }

    #[test]
    fn failed_realloc_changes_nothing() -> Result {
        let mut v = TrackedVec::<u64>::new();
        v.extend_from_slice(&[5; 8], GFP_KERNEL)?;
        let before = Snapshot::take();
        check!(
            v.reserve(super::super::layout::KMALLOC_MAX_SIZE, GFP_KERNEL)
                .is_err(),
            "oversize reserve succeeded"
        );
        let t = Snapshot::take().since(&before).total();
        check!(t == Row::default(), "counters moved: {:?}", t);
        check!(v.as_slice() == [5; 8], "contents");
        Ok(())
    }

    #[test]
    fn text_format_is_stable() -> Result {
        let keep = TrackedBox::new([0u8; 100], GFP_KERNEL)?;
        let text = CString::try_from_fmt(fmt!("{:?}", Snapshot::take()))?;
        let text = text.to_str()?;
        let mut lines = text.lines();
        check!(
            lines.next() == Some("# rslab kmalloc_stats v1"),
            "version line"
        );
        check!(
            lines.next() == Some("# bucket allocs live requested used pow2 ideal"),
            "header line"
        );
        let mut rows = 0;
        let mut total = false;
        for line in lines {
            let mut fields = line.split(' ');
            let name = fields.next().ok_or(EINVAL)?;
            let mut n = 0;
            for f in fields {
                f.parse::<usize>().map_err(|_| EINVAL)?;
                n += 1;
            }
            check!(n == 6, "line {:?} has {} numbers", line, n);
            if name == "total" {
                total = true;
            } else {
                check!(
                    name == "large" || name.parse::<usize>().is_ok(),
                    "{:?}",
                    line
                );
                rows += 1;
            }
        }
        check!(total && rows >= 1, "rows {} total {}", rows, total);
        drop(keep);
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! The report `make run` prints: what rslab verified about the running kernel.

use crate::rslab::{
    buckets::{self, Buckets, KMALLOC_MIN_SIZE},
    stats::{Row as StatRow, Snapshot, TrackedBox, TrackedVec},
};
use core::fmt;
use kernel::prelude::*;

/// Objects sampled per bucket for the observed alignment.
const SAMPLES: usize = 32;

/// One kmalloc bucket as measured at module load.
struct Row {
    bucket: usize,
    /// The alignment the extended guarantee promises.
    guaranteed: usize,
    /// The smallest alignment seen over the sampled objects.
    observed: usize,
    /// Every sampled object had `ksize() == bucket`.
    ksize_ok: bool,
}

/// What rslab found out about the running kernel.
pub(crate) struct Report {
    rows: KVec<Row>,
    matches_rules: bool,
    /// The boot-time minimum kmalloc alignment (the smallest bucket).
    min_align: usize,
    /// Per-bucket bytes of the layout mix, and the total.
    mix: KVec<StatRow>,
    mix_total: StatRow,
}

// A realistic mix of driver data structures.

/// A crypto or DMA descriptor block that must sit on a 32-byte boundary.
#[repr(align(32))]
struct Desc96(#[expect(dead_code)] [u8; 96]);

/// A per-queue state of three cache lines.
#[repr(align(64))]
struct Queue192(#[expect(dead_code)] [u64; 24]);

/// A cache-line aligned counter block.
#[repr(align(64))]
struct Stat40(#[expect(dead_code)] [u64; 5]);

/// A request header: 72 bytes, 8-aligned.
struct Req72(#[expect(dead_code)] [u64; 9]);

/// A frame buffer of 160 bytes.
struct Frame160(#[expect(dead_code)] [u8; 160]);

/// A 320-byte, 64-aligned context.
#[repr(align(64))]
struct Ctx320(#[expect(dead_code)] [u8; 320]);

/// A 1500-byte packet buffer.
struct Packet(#[expect(dead_code)] [u8; 1500]);

/// Objects of each type in the mix.
const MIX_COUNT: usize = 64;

fn many<T>(make: impl Fn() -> T) -> Result<KVec<TrackedBox<T>>> {
    let mut v = KVec::with_capacity(MIX_COUNT, GFP_KERNEL)?;
    for _ in 0..MIX_COUNT {
        v.push(TrackedBox::new(make(), GFP_KERNEL)?, GFP_KERNEL)?;
    }
    Ok(v)
}

fn grown<T: Copy>(n: usize, x: T) -> Result<TrackedVec<T>> {
    let mut v = TrackedVec::new();
    for _ in 0..n {
        v.push(x, GFP_KERNEL)?;
    }
    Ok(v)
}

/// Allocates the mix through `TrackedKmalloc` and returns the counters it moved.
fn measure_mix() -> Result<Snapshot> {
    let before = Snapshot::take();
    let live = (
        many(|| Desc96([0; 96]))?,
        many(|| Queue192([0; 24]))?,
        many(|| Stat40([0; 5]))?,
        many(|| Req72([0; 9]))?,
        many(|| Frame160([0; 160]))?,
        many(|| Ctx320([0; 320]))?,
        many(|| Packet([0; 1500]))?,
    );
    // KVec growth sequences, each left at the capacity its pushes reached.
    let vecs = (
        grown(100, [0u8; 24])?,
        grown(37, [0u8; 40])?,
        grown(1000, 0u32)?,
        grown(5, [0u8; 36])?,
        grown(3, [0u64; 8])?,
    );
    let diff = Snapshot::take().since(&before);
    drop((live, vecs));
    Ok(diff)
}

impl Report {
    /// Measures every kmalloc bucket of the running kernel.
    ///
    /// # Context
    ///
    /// Process context; allocates with `GFP_KERNEL`.
    pub(crate) fn build() -> Result<Self> {
        let found = Buckets::discover()?;
        let mut rows = KVec::with_capacity(found.as_slice().len(), GFP_KERNEL)?;
        for &bucket in found.as_slice() {
            let mut observed = usize::MAX;
            let mut ksize_ok = true;
            buckets::with_objects(bucket, SAMPLES, |p| {
                let addr = p.as_ptr() as usize;
                observed = observed.min(1 << addr.trailing_zeros());
                // SAFETY: `p` is a live kmalloc object for the duration of the callback.
                ksize_ok &= unsafe { buckets::ksize(p) } == bucket;
                Ok(())
            })?;
            rows.push(
                Row {
                    bucket,
                    guaranteed: buckets::guaranteed_align(bucket),
                    observed,
                    ksize_ok,
                },
                GFP_KERNEL,
            )?;
        }
        let snap = measure_mix()?;
        let mut mix = KVec::new();
        // Buckets the mix only passed through (KVec growth) hold nothing at the end.
        for r in snap.rows().filter(|r| r.live != 0) {
            mix.push(*r, GFP_KERNEL)?;
        }
        Ok(Self {
            matches_rules: found == Buckets::expected(),
            min_align: buckets::min_align(),
            rows,
            mix,
            mix_total: snap.total(),
        })
    }

    /// Whether every bucket met the guarantee.
    fn all_ok(&self) -> bool {
        self.matches_rules
            && self
                .rows
                .iter()
                .all(|r| r.ksize_ok && r.observed >= r.guaranteed)
    }

    /// Prints a summary to the kernel log.
    pub(crate) fn log(&self) {
        pr_info!(
            "{} kmalloc buckets, extended alignment guarantee {}; sheaf API {}\n",
            self.rows.len(),
            if self.all_ok() { "holds" } else { "VIOLATED" },
            if crate::rslab::HAVE_SHEAVES {
                "available"
            } else {
                "compiled out"
            }
        );
        let t = &self.mix_total;
        pr_info!(
            "layout mix: {} objects, rslab {} B, power-of-two {} B, ideal {} B\n",
            t.live,
            t.used,
            t.pow2,
            t.ideal
        );
    }
}

// The debugfs file renders through `Debug`; this is the human-readable text of the report.
impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rslab report")?;
        writeln!(f)?;
        if crate::rslab::HAVE_SHEAVES {
            writeln!(
                f,
                "sheaf API: available (the kernel exports the five slab sheaf functions)"
            )?;
        } else {
            writeln!(
                f,
                "sheaf API: compiled out (the kernel does not export the slab sheaf functions;"
            )?;
            writeln!(
                f,
                "  apply tools/testing/patches/ to use KmemCache::prefill and the samples)"
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "kmalloc alignment (extended guarantee: an object is aligned to the"
        )?;
        writeln!(f, "largest power-of-two divisor of its size)")?;
        writeln!(
            f,
            "  KMALLOC_MIN_SIZE {}  minimum alignment at boot {}  buckets {}  match the kmalloc rules: {}",
            KMALLOC_MIN_SIZE,
            self.min_align,
            self.rows.len(),
            if self.matches_rules { "yes" } else { "NO" }
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:>8}  {:>10}  {:>14}  {:>6}  verdict",
            "bucket", "guaranteed", "observed(min)", "ksize"
        )?;
        for r in self.rows.iter() {
            let ok = r.ksize_ok && r.observed >= r.guaranteed;
            writeln!(
                f,
                "  {:>8}  {:>10}  {:>14}  {:>6}  {}",
                r.bucket,
                r.guaranteed,
                r.observed,
                if r.ksize_ok { "ok" } else { "WRONG" },
                if ok { "ok" } else { "VIOLATED" }
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  result: {}",
            if self.all_ok() {
                "guarantee holds for every bucket"
            } else {
                "GUARANTEE VIOLATED"
            }
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "kmalloc bytes for a mix of driver layouts ({} objects of 7 struct types,",
            MIX_COUNT
        )?;
        writeln!(
            f,
            "5 KVec growth sequences), live at once, by bucket of this backend"
        )?;
        writeln!(
            f,
            "  (a) rslab: size rounded to alignment; (b) power-of-two padding; (c) ideal bucket"
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:>8}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}",
            "bucket", "objects", "requested", "(a) rslab", "(b) pow2", "(c) ideal", "saved"
        )?;
        for r in Iterator::chain(self.mix.iter(), core::iter::once(&self.mix_total)) {
            if core::ptr::eq(r, &self.mix_total) {
                write!(f, "  {:>8}", "total")?;
            } else if r.bucket == 0 {
                write!(f, "  {:>8}", "pages")?;
            } else {
                write!(f, "  {:>8}", r.bucket)?;
            }
            let saved = r.pow2.saturating_sub(r.used);
            let permille = (saved * 1000).checked_div(r.pow2).unwrap_or(0);
            writeln!(
                f,
                "  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>5}.{}%",
                r.live,
                r.requested,
                r.used,
                r.pow2,
                r.ideal,
                permille / 10,
                permille % 10
            )?;
        }
        let t = &self.mix_total;
        writeln!(f)?;
        writeln!(
            f,
            "  result: rslab uses {} B where power-of-two padding uses {} B ({} B saved);",
            t.used,
            t.pow2,
            t.pow2.saturating_sub(t.used)
        )?;
        writeln!(
            f,
            "          {} B above the ideal bucket",
            t.used.saturating_sub(t.ideal)
        )
    }
}

// SPDX-License-Identifier: GPL-2.0

//! rslab benchmark: rslab's wrappers against the raw C calls, side by side, in one run.
//!
//! The C side of the kmalloc rows is C code (`rslab_bench_c.c`, compiled into this module by
//! Kbuild like any C driver); the other baselines call the C functions through the bindings.
//!
//! Loading the module runs every benchmark and publishes the results as JSON at
//! `/sys/kernel/debug/rslab_bench/results`; `make bench` turns them into a table and a chart.
//!
//! Each benchmark runs `warmup` untimed rounds, then `rounds` timed ones; a round times a batch
//! of operations large enough (at least 100 us) that the clock's resolution is far below 1% of
//! it. The task is pinned to its CPU (`migrate_disable()`) while a batch runs, and the median
//! over rounds, with the minimum and maximum, is reported, so a preemption shows as an outlier
//! and does not move the median. Untimed set-up (prefilling the sheaf an allocation benchmark
//! draws from, reserving result arrays) stays outside the batch.

use core::fmt;
#[cfg(rslab_sheaf)]
use core::{mem::MaybeUninit, ptr::NonNull};
use kernel::{
    alloc::{allocator, Allocator, Box, Vec},
    bindings,
    debugfs::Dir,
    prelude::*,
    time::{Instant, Monotonic},
};
#[cfg(rslab_sheaf)]
use kernel::{new_spinlock, sync::Arc};

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::{
    cache::{CacheOptions, KmemCache},
    kmalloc::Kmalloc,
};

/// The template driver's map (`samples/rslab_idmap_map.rs`), mounted as the driver mounts it;
/// what only the driver's ioctls use is dead code here.
#[cfg(rslab_sheaf)]
#[allow(dead_code)]
#[path = "../../../samples/rslab_idmap_map.rs"]
mod idmap;

module! {
    type: BenchModule,
    name: "rslab_bench",
    authors: ["rslab developers"],
    description: "rslab benchmark: wrappers against the raw C calls",
    license: "GPL",
    params: {
        rounds: u32 {
            default: 41,
            description: "Timed rounds per benchmark",
        },
        warmup: u32 {
            default: 5,
            description: "Untimed warm-up rounds per benchmark",
        },
    },
}

/// Operations per allocation batch.
const BATCH: usize = 10_000;
/// Shortest batch that keeps timer resolution below 1% of it.
const MIN_BATCH_NS: u64 = 100_000;
/// Most results this module produces.
const MAX_RESULTS: usize = 96;

/// One benchmark's figures, in picoseconds per operation.
#[derive(Clone, Copy)]
struct Figure {
    group: &'static str,
    variant: &'static str,
    /// The object count of a growth figure, the entries in the map of an ID map figure; 0
    /// elsewhere.
    count: usize,
    median_ps: u64,
    min_ps: u64,
    max_ps: u64,
    ops: u64,
    batch_ns: u64,
}

/// Per-round samples of one variant.
struct Samples {
    per_op: [u64; 101],
    len: usize,
    ops: u64,
    shortest: u64,
}

impl Samples {
    fn new() -> Self {
        Self {
            per_op: [0; 101],
            len: 0,
            ops: 0,
            shortest: u64::MAX,
        }
    }

    fn add(&mut self, (ns, n): (u64, u64)) -> Result {
        if n == 0 || self.len == self.per_op.len() {
            return Err(EINVAL);
        }
        self.per_op[self.len] = ns * 1000 / n;
        self.len += 1;
        self.ops = n;
        self.shortest = self.shortest.min(ns);
        Ok(())
    }

    fn figure(mut self, group: &'static str, variant: &'static str) -> Figure {
        // Insertion sort: at most 101 samples, and no panicking paths from `core`'s sort,
        // which objtool flags in module code.
        let sorted = &mut self.per_op[..self.len];
        for i in 1..sorted.len() {
            let mut j = i;
            while j > 0 && sorted[j - 1] > sorted[j] {
                sorted.swap(j - 1, j);
                j -= 1;
            }
        }
        if self.shortest < MIN_BATCH_NS {
            pr_warn!(
                "{}/{}: a batch took only {} ns; timer resolution may exceed 1%\n",
                group,
                variant,
                self.shortest
            );
        }
        Figure {
            group,
            variant,
            count: 0,
            median_ps: sorted[sorted.len() / 2],
            min_ps: sorted[0],
            max_ps: sorted[sorted.len() - 1],
            ops: self.ops,
            batch_ns: self.shortest,
        }
    }
}

/// One variant of a measurement: its name and a round, which returns (timed ns, operations).
type Variant<'a> = (&'static str, &'a mut dyn FnMut() -> Result<(u64, u64)>);

/// Most variants measured side by side.
const MAX_VARIANTS: usize = 4;

/// Measures variants side by side: their rounds alternate, and which goes first rotates, so
/// that a change in background load hits all of them alike. The first is the baseline.
fn measure_set(out: &mut KVec<Figure>, group: &'static str, set: &mut [Variant<'_>]) -> Result {
    let warm = rslab::param(&module_parameters::warmup);
    let rounds = rslab::param(&module_parameters::rounds).clamp(1, 101);
    let n = set.len();
    if n == 0 || n > MAX_VARIANTS {
        return Err(EINVAL);
    }
    for _ in 0..warm {
        for (_, f) in set.iter_mut() {
            f()?;
        }
    }
    let mut samples = [
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
    ];
    for round in 0..rounds as usize {
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].add((set[i].1)()?)?;
        }
    }
    for (s, (name, _)) in samples.into_iter().zip(set.iter()) {
        out.push(s.figure(group, name), GFP_KERNEL)?;
    }
    Ok(())
}

/// Measures a baseline and rslab's counterpart side by side (see [`measure_set`]).
#[cfg(rslab_sheaf)]
fn measure_pair<'a>(
    out: &mut KVec<Figure>,
    group: &'static str,
    base: Variant<'a>,
    ours: Variant<'a>,
) -> Result {
    measure_set(out, group, &mut [base, ours])
}

/// Times `f` with the task pinned to its CPU.
fn timed(f: impl FnOnce()) -> u64 {
    // SAFETY: Balanced by `migrate_enable()` below; `f` does not sleep across CPUs.
    unsafe { bindings::migrate_disable() };
    let start = Instant::<Monotonic>::now();
    f();
    let ns = start.elapsed().as_nanos() as u64;
    // SAFETY: Balances `migrate_disable()` above.
    unsafe { bindings::migrate_enable() };
    ns
}

type Obj = [u64; 4];
// `RSLAB_BENCH_OBJ` in rslab_bench_c.h.
const _: () = assert!(core::mem::size_of::<Obj>() == 32);

/// A sheaf of `BATCH` objects straight from the C API, or `ENOMEM`.
#[cfg(rslab_sheaf)]
fn raw_sheaf(cache: &KmemCache<Obj>) -> Result<*mut bindings::slab_sheaf> {
    // SAFETY: `cache` is live; the caller returns the sheaf.
    let sheaf = unsafe {
        bindings::kmem_cache_prefill_sheaf(cache.as_raw(), bindings::GFP_KERNEL, BATCH as u32)
    };
    if sheaf.is_null() {
        return Err(ENOMEM);
    }
    Ok(sheaf)
}

/// Returns a sheaf from [`raw_sheaf`].
#[cfg(rslab_sheaf)]
fn raw_return(cache: &KmemCache<Obj>, sheaf: *mut bindings::slab_sheaf) {
    // SAFETY: `sheaf` came from `kmem_cache_prefill_sheaf` on this cache.
    unsafe { bindings::kmem_cache_return_sheaf(cache.as_raw(), bindings::GFP_KERNEL, sheaf) };
}

/// The raw C loop: `BATCH` objects taken from a prefilled sheaf, each initialised (as a C
/// caller would, and as `Slot::alloc` must) and freed right away with `kmem_cache_free()`.
#[cfg(rslab_sheaf)]
fn raw_sheaf_batch(cache: &KmemCache<Obj>) -> Result<(u64, u64)> {
    raw_sheaf_batch_with(cache, |p| {
        // SAFETY: `p` is an object of `cache`, not used again.
        unsafe { bindings::kmem_cache_free(cache.as_raw(), p) }
    })
}

/// [`raw_sheaf_batch`] freeing with `kfree()`, as a `SlabBox` does.
#[cfg(rslab_sheaf)]
fn raw_sheaf_kfree_batch(cache: &KmemCache<Obj>) -> Result<(u64, u64)> {
    raw_sheaf_batch_with(cache, |p| {
        // SAFETY: `p` is a slab object, not used again.
        unsafe { bindings::kfree(p) }
    })
}

#[cfg(rslab_sheaf)]
#[inline(always)]
fn raw_sheaf_batch_with(
    cache: &KmemCache<Obj>,
    free: impl Fn(*mut kernel::ffi::c_void),
) -> Result<(u64, u64)> {
    let sheaf = raw_sheaf(cache)?;
    let ns = timed(|| {
        for _ in 0..BATCH {
            // SAFETY: The sheaf holds at least `BATCH` objects.
            let p =
                unsafe { bindings::kmem_cache_alloc_from_sheaf_noprof(cache.as_raw(), 0, sheaf) };
            // SAFETY: `p` is a fresh object of `Obj`'s size and alignment, freed right after.
            unsafe { p.cast::<Obj>().write([0; 4]) };
            free(p);
        }
    });
    raw_return(cache, sheaf);
    Ok((ns, 2 * BATCH as u64))
}

/// rslab's loop: the batch claimed at once ([`rslab::sheaf::Sheaf::claims`]), each slot
/// allocated and the `SlabBox` dropped.
#[cfg(rslab_sheaf)]
fn rslab_sheaf_batch(cache: &KmemCache<Obj>) -> Result<(u64, u64)> {
    let sheaf = cache.prefill(BATCH, GFP_KERNEL)?;
    let claims = sheaf.claims(BATCH)?;
    let ns = timed(|| {
        for slot in claims {
            drop(slot.alloc([0; 4]));
        }
    });
    sheaf.return_with(GFP_KERNEL);
    Ok((ns, 2 * BATCH as u64))
}

/// Sheaf allocation + free: the raw C calls against rslab, claiming the batch at once and one
/// object at a time; and rslab against the design of the posted upstream series, which keeps
/// an `Arc` of the cache in every object (an atomic increment per allocation, a decrement per
/// free) and returns an `Option` from each sheaf allocation.
#[cfg(rslab_sheaf)]
fn sheaf_alloc(out: &mut KVec<Figure>, cache: &KmemCache<Obj>) -> Result {
    measure_set(
        out,
        "sheaf alloc+free",
        &mut [
            ("raw C", &mut || raw_sheaf_batch(cache)),
            ("raw C kfree", &mut || raw_sheaf_kfree_batch(cache)),
            ("rslab", &mut || rslab_sheaf_batch(cache)),
        ],
    )?;
    measure_pair(
        out,
        "sheaf alloc+free, claim()",
        ("raw C", &mut || raw_sheaf_batch(cache)),
        ("rslab", &mut || {
            let sheaf = cache.prefill(BATCH, GFP_KERNEL)?;
            let ns = timed(|| {
                for _ in 0..BATCH {
                    if let Ok(slot) = sheaf.claim() {
                        drop(slot.alloc([0; 4]));
                    }
                }
            });
            sheaf.return_with(GFP_KERNEL);
            Ok((ns, 2 * BATCH as u64))
        }),
    )?;
    // The cache's owner in the Arc design; each object holds a clone.
    let owner = Arc::new((), GFP_KERNEL)?;
    measure_pair(
        out,
        "sheaf alloc+free vs Arc",
        ("Arc per object", &mut || {
            let sheaf = raw_sheaf(cache)?;
            let ns = timed(|| {
                for _ in 0..BATCH {
                    // SAFETY: The sheaf holds at least `BATCH` objects.
                    let p = unsafe {
                        bindings::kmem_cache_alloc_from_sheaf_noprof(cache.as_raw(), 0, sheaf)
                    };
                    // `Sheaf::alloc` returns `Option`; the object takes a reference to the cache.
                    if let Some(p) = NonNull::new(p.cast::<Obj>()) {
                        let cache_ref = owner.clone();
                        // SAFETY: `p` is a fresh object of `Obj`'s size and alignment, freed
                        // right after, when its reference to the cache is dropped too.
                        unsafe {
                            p.as_ptr().write([0; 4]);
                            bindings::kmem_cache_free(cache.as_raw(), p.as_ptr().cast());
                        }
                        drop(cache_ref);
                    }
                }
            });
            raw_return(cache, sheaf);
            Ok((ns, 2 * BATCH as u64))
        }),
        ("rslab", &mut || rslab_sheaf_batch(cache)),
    )
}

/// One batch of a C baseline of [`cache_alloc`]: `f` allocates, zeroes and frees `BATCH`
/// objects of `cache` one at a time and returns how many.
fn c_cache_batch(
    cache: &KmemCache<Obj>,
    f: unsafe extern "C" fn(*mut bindings::kmem_cache, usize) -> usize,
) -> Result<(u64, u64)> {
    let mut done = 0;
    // SAFETY: `cache` is a live cache of `Obj`s, which is what the C functions expect.
    let ns = timed(|| done = unsafe { f(cache.as_raw(), BATCH) });
    if done != BATCH {
        return Err(ENOMEM);
    }
    Ok((ns, 2 * BATCH as u64))
}

/// `kmem_cache_alloc` + free, each object initialised and freed right away, as in
/// [`sheaf_alloc`]: the C calls made from Rust (`raw C`, the baseline of the sheaf rows), a C
/// driver's loop freeing with `kmem_cache_free()` (the baseline here) and with `kfree()`, and
/// `KmemCache::alloc` + drop, whose `SlabBox` frees with `kfree()`.
fn cache_alloc(out: &mut KVec<Figure>, cache: &KmemCache<Obj>) -> Result {
    measure_set(
        out,
        "kmem_cache alloc+free",
        &mut [
            ("raw C", &mut || {
                let ns = timed(|| {
                    for _ in 0..BATCH {
                        // SAFETY: `cache` is live.
                        let p = unsafe {
                            bindings::kmem_cache_alloc_noprof(cache.as_raw(), bindings::GFP_KERNEL)
                        };
                        if !p.is_null() {
                            // SAFETY: `p` is a fresh object of `Obj`'s size and alignment, freed
                            // right after.
                            unsafe {
                                p.cast::<Obj>().write([0; 4]);
                                bindings::kmem_cache_free(cache.as_raw(), p);
                            }
                        }
                    }
                });
                Ok((ns, 2 * BATCH as u64))
            }),
            ("C kmem_cache_free", &mut || {
                c_cache_batch(cache, c::rslab_bench_cache_free)
            }),
            ("C kfree", &mut || {
                c_cache_batch(cache, c::rslab_bench_cache_kfree)
            }),
            ("rslab", &mut || {
                let ns = timed(|| {
                    for _ in 0..BATCH {
                        drop(cache.alloc([0; 4], GFP_KERNEL));
                    }
                });
                Ok((ns, 2 * BATCH as u64))
            }),
        ],
    )
}

#[cfg(rslab_sheaf)]
/// A prefill count, known at run time or at compile time (where its bounds check folds away,
/// as in a driver that reserves a fixed batch).
trait Count: Copy {
    fn get(self) -> usize;
}

#[cfg(rslab_sheaf)]
/// A count known at run time.
#[derive(Clone, Copy)]
struct Runtime(usize);

#[cfg(rslab_sheaf)]
impl Count for Runtime {
    #[inline(always)]
    fn get(self) -> usize {
        self.0
    }
}

#[cfg(rslab_sheaf)]
/// A count known at compile time.
#[derive(Clone, Copy)]
struct Const<const N: usize>;

#[cfg(rslab_sheaf)]
impl<const N: usize> Count for Const<N> {
    #[inline(always)]
    fn get(self) -> usize {
        N
    }
}

/// Prefill + return cycles of `count` objects, raw and through rslab.
#[cfg(rslab_sheaf)]
fn prefill_return(
    out: &mut KVec<Figure>,
    cache: &KmemCache<Obj>,
    group: &'static str,
    count: impl Count,
) -> Result {
    const CYCLES: usize = 1000;
    measure_pair(
        out,
        group,
        ("raw C", &mut || {
            let ns = timed(|| {
                for _ in 0..CYCLES {
                    // SAFETY: `cache` is live; a non-NULL sheaf is returned right away.
                    unsafe {
                        let s = bindings::kmem_cache_prefill_sheaf(
                            cache.as_raw(),
                            bindings::GFP_KERNEL,
                            count.get() as u32,
                        );
                        if !s.is_null() {
                            bindings::kmem_cache_return_sheaf(
                                cache.as_raw(),
                                bindings::GFP_KERNEL,
                                s,
                            );
                        }
                    }
                }
            });
            Ok((ns, CYCLES as u64))
        }),
        ("rslab", &mut || {
            let ns = timed(|| {
                for _ in 0..CYCLES {
                    if let Ok(s) = cache.prefill(count.get(), GFP_KERNEL) {
                        s.return_with(GFP_KERNEL);
                    }
                }
            });
            Ok((ns, CYCLES as u64))
        }),
    )?;
    let n = out.len();
    for f in &mut out[n - 2..] {
        f.count = count.get();
    }
    Ok(())
}

/// A full sheaf's allocations: prefill `count`, allocate all of them, free them, return the
/// sheaf; per object. `held` keeps the objects between allocation and free.
#[cfg(rslab_sheaf)]
fn fill(
    out: &mut KVec<Figure>,
    cache: &KmemCache<Obj>,
    count: usize,
    held: &mut KVec<*mut Obj>,
) -> Result {
    let cycles = (20_000 / count).max(50);
    let mut boxes = KVec::with_capacity(count, GFP_KERNEL)?;
    measure_pair(
        out,
        "prefill+fill+return",
        ("raw C", &mut || {
            let ns = timed(|| {
                for _ in 0..cycles {
                    // SAFETY: `cache` is live; the sheaf holds `count` objects, each freed
                    // below, and is returned.
                    unsafe {
                        let s = bindings::kmem_cache_prefill_sheaf(
                            cache.as_raw(),
                            bindings::GFP_KERNEL,
                            count as u32,
                        );
                        if s.is_null() {
                            continue;
                        }
                        for _ in 0..count {
                            let p =
                                bindings::kmem_cache_alloc_from_sheaf_noprof(cache.as_raw(), 0, s)
                                    .cast::<Obj>();
                            p.write([0; 4]);
                            // `held` has room for `count`: no allocation.
                            let _ = held.push(p, GFP_NOWAIT);
                        }
                        for p in held.drain_all() {
                            bindings::kmem_cache_free(cache.as_raw(), p.cast());
                        }
                        bindings::kmem_cache_return_sheaf(cache.as_raw(), bindings::GFP_KERNEL, s);
                    }
                }
            });
            Ok((ns, (cycles * count) as u64))
        }),
        ("rslab", &mut || {
            let ns = timed(|| {
                for _ in 0..cycles {
                    let Ok(s) = cache.prefill(count, GFP_KERNEL) else {
                        continue;
                    };
                    if let Ok(claims) = s.claims(count) {
                        for slot in claims {
                            // `boxes` has room for `count`: no allocation.
                            let _ = boxes.push(slot.alloc([0; 4]), GFP_NOWAIT);
                        }
                    }
                    boxes.clear();
                    s.return_with(GFP_KERNEL);
                }
            });
            Ok((ns, (cycles * count) as u64))
        }),
    )
}

/// How prefill+return and a full sheaf's allocations grow with the count, from 1 to four times
/// the cache's sheaf capacity (the kernel's, measured). Returns the capacity.
#[cfg(rslab_sheaf)]
fn growth(out: &mut KVec<Figure>, cache: &KmemCache<Obj>) -> Result<usize> {
    // A regular prefill fills the sheaf to the cache's capacity.
    let capacity = cache.prefill(1, GFP_KERNEL)?.len();
    let mut held = KVec::with_capacity(4 * capacity, GFP_KERNEL)?;
    for count in [
        1,
        capacity / 4,
        capacity / 2,
        3 * capacity / 4,
        capacity,
        capacity + 1,
        3 * capacity / 2,
        2 * capacity,
        3 * capacity,
        4 * capacity,
    ] {
        let count = count.max(1);
        prefill_return(out, cache, "prefill+return", Runtime(count))?;
        fill(out, cache, count, &mut held)?;
        let n = out.len();
        for f in &mut out[n - 2..] {
            f.count = count;
        }
    }
    Ok(capacity)
}

/// The byte every allocation benchmark writes into each byte of its objects, on the C side
/// (`RSLAB_BENCH_FILL` in `rslab_bench_c.h`) and the Rust side alike.
const FILL: u8 = 0xa5;

/// The C baselines, `rslab_bench_c.c`.
mod c {
    use kernel::ffi::c_void;

    /// A batch of `kmalloc()` + fill + `kfree()` with a compile-time size: it allocates `count`
    /// objects into `held`, fills them, frees them and returns how many it allocated.
    pub(super) type ConstBatch =
        unsafe extern "C" fn(held: *mut *mut c_void, count: usize) -> usize;

    extern "C" {
        pub(super) fn rslab_bench_kmalloc_const_8(held: *mut *mut c_void, count: usize) -> usize;
        pub(super) fn rslab_bench_kmalloc_const_96(held: *mut *mut c_void, count: usize) -> usize;
        pub(super) fn rslab_bench_kmalloc_const_192(held: *mut *mut c_void, count: usize) -> usize;
        pub(super) fn rslab_bench_kmalloc_const_256(held: *mut *mut c_void, count: usize) -> usize;
        pub(super) fn rslab_bench_kmalloc_const_4096(held: *mut *mut c_void, count: usize)
            -> usize;
        /// The same with a run-time size.
        pub(super) fn rslab_bench_kmalloc_var(
            held: *mut *mut c_void,
            count: usize,
            size: usize,
        ) -> usize;
        /// `count` objects of `s` (of `Obj`'s size) allocated, zeroed and freed one at a time
        /// with `kmem_cache_free()`; returns how many.
        pub(super) fn rslab_bench_cache_free(
            s: *mut kernel::bindings::kmem_cache,
            count: usize,
        ) -> usize;
        /// The same, freed with `kfree()`.
        pub(super) fn rslab_bench_cache_kfree(
            s: *mut kernel::bindings::kmem_cache,
            count: usize,
        ) -> usize;
        /// An array of `u32` grown to `n` elements with `krealloc()`, `KVec`'s policy; returns
        /// its length (0 on failure).
        pub(super) fn rslab_bench_krealloc_growth(n: usize) -> usize;
    }
}

/// One batch of the C side: `f` allocates `BATCH` objects into `held`'s spare capacity, fills
/// and frees them, and returns how many it allocated.
fn c_batch(
    held: &mut KVec<*mut kernel::ffi::c_void>,
    f: impl Fn(*mut *mut kernel::ffi::c_void, usize) -> usize,
) -> Result<(u64, u64)> {
    let spare = held.spare_capacity_mut();
    if spare.len() < BATCH {
        return Err(EINVAL);
    }
    let slots = spare.as_mut_ptr().cast();
    let mut done = 0;
    let ns = timed(|| done = f(slots, BATCH));
    if done != BATCH {
        return Err(ENOMEM);
    }
    Ok((ns, 2 * BATCH as u64))
}

/// One batch of `Box::new([FILL; N])` + drop over allocator `A`: `BATCH` boxes kept in `held`'s
/// spare capacity, as the C side keeps its pointers in an array (no `push` and its capacity
/// check per object), then dropped.
fn box_batch<A: Allocator, const N: usize>(held: &mut KVec<Box<[u8; N], A>>) -> Result<(u64, u64)> {
    held.clear();
    if held.capacity() < BATCH {
        return Err(EINVAL);
    }
    let mut done = 0;
    let ns = timed(|| {
        for slot in held.spare_capacity_mut().iter_mut().take(BATCH) {
            let Ok(b) = Box::new([FILL; N], GFP_KERNEL) else {
                break;
            };
            slot.write(b);
            done += 1;
        }
        // SAFETY: The loop wrote the first `done` slots of the spare capacity, so `done` is at
        // most the spare capacity and those elements are initialized.
        unsafe { held.inc_len(done) };
        held.clear();
    });
    if done != BATCH {
        return Err(ENOMEM);
    }
    Ok((ns, 2 * BATCH as u64))
}

/// An `N`-byte object allocated, filled and freed: C's `kmalloc()` with a compile-time size
/// (`konst`, the baseline), C's `kmalloc()` with a run-time size, `Box::new` over the kernel
/// crate's `Kmalloc` (`KBox::new`), and over rslab's.
fn boxes<const N: usize>(
    out: &mut KVec<Figure>,
    group: &'static str,
    konst: c::ConstBatch,
) -> Result {
    let mut konst_held: KVec<*mut kernel::ffi::c_void> = KVec::with_capacity(BATCH, GFP_KERNEL)?;
    let mut var_held: KVec<*mut kernel::ffi::c_void> = KVec::with_capacity(BATCH, GFP_KERNEL)?;
    let mut up: KVec<Box<[u8; N], allocator::Kmalloc>> = KVec::with_capacity(BATCH, GFP_KERNEL)?;
    let mut ours: KVec<Box<[u8; N], Kmalloc>> = KVec::with_capacity(BATCH, GFP_KERNEL)?;
    // The run-time size, hidden from the optimiser on the Rust side too (the C function cannot
    // see it anyway).
    let size = core::hint::black_box(N);
    measure_set(
        out,
        group,
        &mut [
            ("C kmalloc const", &mut || {
                c_batch(&mut konst_held, |held, count| {
                    // SAFETY: `konst` is one of the `rslab_bench_kmalloc_const_*` functions,
                    // which take any count; `held` has room for `count` pointers (`c_batch`
                    // checks it).
                    unsafe { konst(held, count) }
                })
            }),
            ("C kmalloc var", &mut || {
                c_batch(&mut var_held, |held, count| {
                    // SAFETY: `rslab_bench_kmalloc_var` takes any count and size; `held` has
                    // room for `count` pointers (`c_batch` checks it).
                    unsafe { c::rslab_bench_kmalloc_var(held, count, size) }
                })
            }),
            ("KBox::new", &mut || box_batch(&mut up)),
            ("rslab", &mut || box_batch(&mut ours)),
        ],
    )
}

/// Growth to this many elements, one push at a time.
const GROWTH: usize = 100_000;

/// One `Vec::push` growth to `GROWTH` elements over allocator `A`.
fn push_batch<A: Allocator>() -> Result<(u64, u64)> {
    let mut ok = true;
    let ns = timed(|| {
        let mut v = Vec::<u32, A>::new();
        for i in 0..GROWTH {
            ok &= v.push(i as u32, GFP_KERNEL).is_ok();
        }
    });
    if ok {
        Ok((ns, GROWTH as u64))
    } else {
        Err(ENOMEM)
    }
}

/// Growth to `GROWTH` elements: C's `krealloc()` with `KVec`'s policy (the baseline), and
/// `Vec::push` through both Rust backends.
fn vec_growth(out: &mut KVec<Figure>) -> Result {
    measure_set(
        out,
        "KVec push to 1e5",
        &mut [
            ("C krealloc", &mut || {
                let mut len = 0;
                // SAFETY: The function takes any count and owns everything it allocates.
                let ns = timed(|| len = unsafe { c::rslab_bench_krealloc_growth(GROWTH) });
                if len == GROWTH {
                    Ok((ns, GROWTH as u64))
                } else {
                    Err(ENOMEM)
                }
            }),
            ("kernel Kmalloc", &mut push_batch::<allocator::Kmalloc>),
            ("rslab", &mut push_batch::<Kmalloc>),
        ],
    )
}

/// The limit of every map of the ID map rows: the template driver's default `max_entries`, for
/// which the map sizes its table when it is made.
#[cfg(rslab_sheaf)]
const IDMAP_LIMIT: usize = 65_536;
/// The entry counts of the ID map rows, and their variants' names.
#[cfg(rslab_sheaf)]
const IDMAP_SIZES: [(usize, &str); 2] = [(64, "64 entries"), (IDMAP_LIMIT, "65536 entries")];
/// The most values of one insert, the driver's `abi::MAX_BATCH`: the batches that fill the maps,
/// and the sheaf capacity of their cache, as the driver's.
#[cfg(rslab_sheaf)]
const IDMAP_MAX_BATCH: usize = 256;
/// Inserts per timed chunk of the `INSERT` rows; each chunk's entries are removed again, untimed.
#[cfg(rslab_sheaf)]
const IDMAP_CHUNK: usize = 8;
/// Chunks per round of the `INSERT` rows.
#[cfg(rslab_sheaf)]
const IDMAP_CHUNKS: usize = 64;

/// The value the ID map rows store under `id`, so that every lookup can be checked.
#[cfg(rslab_sheaf)]
fn idmap_value(id: u32) -> u64 {
    u64::from(id) * 3 + 1
}

/// A map of up to [`IDMAP_LIMIT`] entries holding IDs 1 to `entries`, filled in batches of
/// [`IDMAP_MAX_BATCH`].
#[cfg(rslab_sheaf)]
fn idmap_filled<'c>(
    cache: &'c KmemCache<idmap::Node<'c>>,
    entries: usize,
) -> Result<Pin<KBox<idmap::IdMap<'c>>>> {
    let map = KBox::pin_init(idmap::IdMap::new(cache, IDMAP_LIMIT), GFP_KERNEL)?;
    let mut values = KVec::with_capacity(IDMAP_MAX_BATCH, GFP_KERNEL)?;
    let mut next = 1;
    while next <= entries {
        let n = (entries + 1 - next).min(IDMAP_MAX_BATCH);
        values.clear();
        for id in next..next + n {
            values.push(idmap_value(id as u32), GFP_KERNEL)?;
        }
        if map.insert_reported(&values, |_| Ok(()))? as usize != next {
            return Err(EINVAL);
        }
        next += n;
    }
    Ok(map)
}

/// One round of `GET` on a map holding IDs 1 to `entries` (a power of two): [`BATCH`] lookups
/// of IDs drawn at random among them (xorshift32, `rng` carried from round to round). The IDs
/// are drawn into `ids` and the sum of their values computed before the clock starts; the timed
/// loop only looks each one up and adds its value (a miss adds 0), and the sum is checked after
/// it, so that the time is the lookups', not the generator's or the checks'.
#[cfg(rslab_sheaf)]
fn idmap_get_round(
    map: &idmap::IdMap<'_>,
    entries: u32,
    rng: &mut u32,
    ids: &mut [u32],
) -> Result<(u64, u64)> {
    let mut x = *rng;
    let mut expected = 0u64;
    for id in ids.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *id = (x & (entries - 1)) + 1;
        expected = expected.wrapping_add(idmap_value(*id));
    }
    *rng = x;
    let mut sum = 0u64;
    let ns = timed(|| {
        for &id in ids.iter() {
            sum = sum.wrapping_add(map.get(id).unwrap_or(0));
        }
    });
    if sum != expected {
        pr_err!("idmap GET at {entries} entries: lookups missed or read wrong values\n");
        return Err(EINVAL);
    }
    Ok((ns, ids.len() as u64))
}

/// One round of `INSERT` on a map of `entries - IDMAP_CHUNK` entries: chunks of
/// [`IDMAP_CHUNK`] fresh inserts of one value each, timed (the map reaches `entries`), each
/// chunk then checked and removed, untimed. A round is [`IDMAP_CHUNKS`] timed chunks, not one
/// batch: [`MIN_BATCH_NS`] applies to their sum, each chunk taking about a sixty-fourth of it.
#[cfg(rslab_sheaf)]
fn idmap_insert_round(map: &idmap::IdMap<'_>) -> Result<(u64, u64)> {
    let mut ns = 0;
    for _ in 0..IDMAP_CHUNKS {
        let mut ids = [0u32; IDMAP_CHUNK];
        let mut r = Ok(());
        ns += timed(|| {
            for (i, id) in ids.iter_mut().enumerate() {
                match map.insert_reported(&[idmap_value(i as u32)], |_| Ok(())) {
                    Ok(first) => *id = first,
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
        });
        r?;
        for (i, &id) in ids.iter().enumerate() {
            // Fresh, consecutive IDs, each holding its value.
            if id != ids[0] + i as u32
                || map.remove_reported(id, |_| Ok(()))? != idmap_value(i as u32)
            {
                pr_err!("idmap INSERT: ID {id} is not the value inserted\n");
                return Err(EINVAL);
            }
        }
    }
    Ok((ns, (IDMAP_CHUNKS * IDMAP_CHUNK) as u64))
}

/// The template driver's map (`samples/rslab_idmap_map.rs`) at 64 and at 65,536 entries
/// ([`IDMAP_SIZES`]), in maps of the driver's default limit: `GET` of an ID that is there, and
/// `INSERT` of one fresh value (a sheaf prefilled, the node charged, two critical sections, as
/// the driver's ioctl does without its copies from and to user space). The module is loaded
/// from the root memory cgroup, where the charge takes its fast path and charges nothing.
#[cfg(rslab_sheaf)]
fn idmap_rows(out: &mut KVec<Figure>) -> Result {
    let [(small_n, small_name), (full_n, full_name)] = IDMAP_SIZES;
    let options = CacheOptions::new().sheaf_capacity(IDMAP_MAX_BATCH as u32);
    let cache = KmemCache::new(c"rslab_bench_idmap", options)?;
    let (small, full) = (
        idmap_filled(&cache, small_n)?,
        idmap_filled(&cache, full_n)?,
    );
    let (mut rng_small, mut rng_full) = (0x1234_5678, 0x1234_5678);
    let mut ids_small = KVec::from_elem(0u32, BATCH, GFP_KERNEL)?;
    let mut ids_full = KVec::from_elem(0u32, BATCH, GFP_KERNEL)?;
    let first = out.len();
    measure_set(
        out,
        "idmap GET",
        &mut [
            (small_name, &mut || {
                idmap_get_round(&small, small_n as u32, &mut rng_small, &mut ids_small)
            }),
            (full_name, &mut || {
                idmap_get_round(&full, full_n as u32, &mut rng_full, &mut ids_full)
            }),
        ],
    )?;
    drop((small, full));
    let small = idmap_filled(&cache, small_n - IDMAP_CHUNK)?;
    let full = idmap_filled(&cache, full_n - IDMAP_CHUNK)?;
    measure_set(
        out,
        "idmap INSERT",
        &mut [
            (small_name, &mut || idmap_insert_round(&small)),
            (full_name, &mut || idmap_insert_round(&full)),
        ],
    )?;
    // Each figure's entry count, found by its variant's name.
    for f in out[first..].iter_mut() {
        f.count = IDMAP_SIZES
            .iter()
            .find(|&&(_, name)| name == f.variant)
            .ok_or(EINVAL)?
            .0;
    }
    Ok(())
}

/// Allocations made under the lock by each method of the pressure benchmark.
#[cfg(rslab_sheaf)]
const PRESSURE_OBJECTS: usize = 8192;
/// The object of the pressure benchmark; uninitialised, so that nothing but the allocation is
/// timed.
#[cfg(rslab_sheaf)]
type PressureObj = MaybeUninit<[u8; 1024]>;
/// Memory the hog gives back once it has taken all it could, so that the rest of the system
/// keeps working: the allocations under test find this much above the watermarks.
#[cfg(rslab_sheaf)]
const HOG_SLACK_PAGES: usize = 512;

/// A memory hog: order-0 pages taken until the page allocator, after one round of direct
/// reclaim, has none left (`__GFP_NORETRY`: no OOM killer, `__GFP_NOWARN`: no report), kept
/// in a list threaded through the pages themselves. Dropping it frees them.
#[cfg(rslab_sheaf)]
struct Hog {
    head: usize,
    pages: usize,
}

#[cfg(rslab_sheaf)]
impl Hog {
    fn fill() -> Self {
        let gfp =
            bindings::GFP_KERNEL | bindings::__GFP_NOWARN | (1 << bindings::___GFP_NORETRY_BIT);
        let mut hog = Hog { head: 0, pages: 0 };
        loop {
            // SAFETY: Any flags and order 0 are valid; a non-zero result is a page we own.
            let page = unsafe { bindings::get_free_pages_noprof(gfp, 0) } as usize;
            if page == 0 {
                break;
            }
            // SAFETY: `page` is a fresh, mapped, page-aligned page owned by the hog.
            unsafe { (page as *mut usize).write(hog.head) };
            hog.head = page;
            hog.pages += 1;
        }
        // Give some back, so that the system keeps breathing.
        for _ in 0..HOG_SLACK_PAGES {
            hog.pop();
        }
        hog
    }

    fn pop(&mut self) {
        if self.head != 0 {
            let page = self.head;
            // SAFETY: `page` is a hog page; its first word links to the next one.
            self.head = unsafe { (page as *const usize).read() };
            // SAFETY: `page` came from `get_free_pages_noprof(_, 0)` and is not used again.
            unsafe { bindings::free_pages(page as kernel::ffi::c_ulong, 0) };
            self.pages -= 1;
        }
    }
}

#[cfg(rslab_sheaf)]
impl Drop for Hog {
    fn drop(&mut self) {
        while self.head != 0 {
            self.pop();
        }
    }
}

/// Free memory, in KiB.
#[cfg(rslab_sheaf)]
fn free_kib() -> u64 {
    // SAFETY: `sysinfo` is plain data that `si_meminfo` fills in.
    let mut info: bindings::sysinfo = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is valid for writes.
    unsafe { bindings::si_meminfo(&mut info) };
    info.freeram as u64 * u64::from(info.mem_unit) / 1024
}

/// One method's figures under pressure.
#[cfg(rslab_sheaf)]
#[derive(Clone, Copy)]
struct Method {
    name: &'static str,
    failures: usize,
    p50: u64,
    p99: u64,
    max: u64,
}

/// Sorts in place (heapsort: no allocation, no recursion).
#[cfg(rslab_sheaf)]
fn sort(v: &mut [u64]) {
    fn sift(v: &mut [u64], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child] < v[child + 1] {
                child += 1;
            }
            if v[root] >= v[child] {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for i in (0..n / 2).rev() {
        sift(v, i, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

#[cfg(rslab_sheaf)]
fn percentiles(name: &'static str, failures: usize, lat: &mut [u64]) -> Method {
    sort(lat);
    let at = |q: usize| lat.get((lat.len() * q / 100).min(lat.len().saturating_sub(1)));
    Method {
        name,
        failures,
        p50: at(50).copied().unwrap_or(0),
        p99: at(99).copied().unwrap_or(0),
        max: lat.last().copied().unwrap_or(0),
    }
}

/// Times one allocation.
#[cfg(rslab_sheaf)]
#[inline(always)]
fn time_one<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let start = Instant::<Monotonic>::now();
    let r = f();
    (r, start.elapsed().as_nanos() as u64)
}

/// Under real memory pressure, `PRESSURE_OBJECTS` allocations inside a spinlock with
/// `GFP_ATOMIC`, with `GFP_NOWAIT`, and from a sheaf reserved beforehand: failures and latency
/// percentiles. Each method allocates from a fresh cache of its own (so that no method finds
/// the objects another one freed), destroyed afterwards.
#[cfg(rslab_sheaf)]
fn pressure() -> Result<Pressure> {
    let mut lat = KVec::with_capacity(PRESSURE_OBJECTS, GFP_KERNEL)?;
    let mut methods = KVec::with_capacity(3, GFP_KERNEL)?;
    let lock = KBox::pin_init(new_spinlock!(()), GFP_KERNEL)?;
    // The driver's reservation, made where it may sleep and may fail, before the pressure.
    let sheaf_cache =
        KmemCache::<PressureObj>::new(c"rslab_bench_pressure_sheaf", CacheOptions::new())?;
    let mut sheaf_objs = KVec::with_capacity(PRESSURE_OBJECTS, GFP_KERNEL)?;
    let sheaf = sheaf_cache.prefill(PRESSURE_OBJECTS, GFP_KERNEL)?;
    let claims = sheaf.claims(PRESSURE_OBJECTS)?;

    // Everything but the allocations under test is set up before the pressure: a cache of its
    // own per method and room for what it allocates.
    let atomic =
        KmemCache::<PressureObj>::new(c"rslab_bench_pressure_atomic", CacheOptions::new())?;
    let nowait =
        KmemCache::<PressureObj>::new(c"rslab_bench_pressure_nowait", CacheOptions::new())?;
    let mut atomic_objs = KVec::with_capacity(PRESSURE_OBJECTS, GFP_KERNEL)?;
    let mut nowait_objs = KVec::with_capacity(PRESSURE_OBJECTS, GFP_KERNEL)?;

    let hog = Hog::fill();
    let free = free_kib();
    for (name, flags, cache, objs) in [
        (
            "GFP_ATOMIC",
            GFP_ATOMIC | __GFP_NOWARN,
            &atomic,
            &mut atomic_objs,
        ),
        (
            "GFP_NOWAIT",
            GFP_NOWAIT | __GFP_NOWARN,
            &nowait,
            &mut nowait_objs,
        ),
    ] {
        let mut failures = 0;
        lat.clear();
        {
            let _guard = lock.lock();
            for _ in 0..PRESSURE_OBJECTS {
                let (r, ns) = time_one(|| cache.alloc(MaybeUninit::uninit(), flags));
                // Both vectors have the capacity: these pushes do not allocate.
                lat.push(ns, GFP_NOWAIT)?;
                match r {
                    Ok(o) => objs.push(o, GFP_NOWAIT)?,
                    Err(_) => failures += 1,
                }
            }
        }
        // Free them and give the empty slabs back, so that the next method finds the memory
        // this one took.
        objs.clear();
        // SAFETY: `cache` is live.
        unsafe { bindings::kmem_cache_shrink(cache.as_raw()) };
        methods.push(percentiles(name, failures, &mut lat), GFP_NOWAIT)?;
    }
    lat.clear();
    {
        let _guard = lock.lock();
        for slot in claims {
            let (o, ns) = time_one(|| slot.alloc(MaybeUninit::uninit()));
            lat.push(ns, GFP_NOWAIT)?;
            sheaf_objs.push(o, GFP_NOWAIT)?;
        }
    }
    let taken = sheaf_objs.len();
    methods.push(
        percentiles("sheaf (reserved)", PRESSURE_OBJECTS - taken, &mut lat),
        GFP_NOWAIT,
    )?;
    let hog_kib = hog.pages as u64 * 4;
    drop(hog);
    drop(sheaf_objs);
    drop(sheaf);
    Ok(Pressure {
        hog_kib,
        free_kib: free,
        methods,
    })
}

/// The pressure benchmark's results.
#[cfg(rslab_sheaf)]
struct Pressure {
    hog_kib: u64,
    free_kib: u64,
    methods: KVec<Method>,
}

/// All results, rendered as JSON.
struct Results {
    figures: KVec<Figure>,
    #[cfg(rslab_sheaf)]
    pressure: Pressure,
    /// The benchmark cache's sheaf capacity, as the kernel set it (0 without sheaves).
    capacity: usize,
}

impl fmt::Debug for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{{")?;
        writeln!(f, "  \"unit\": \"ps/op\",")?;
        writeln!(f, "  \"sheaf_api\": {},", rslab::HAVE_SHEAVES)?;
        writeln!(f, "  \"sheaf_capacity\": {},", self.capacity)?;
        #[cfg(rslab_sheaf)]
        {
            let p = &self.pressure;
            write!(
                f,
                "  \"pressure\": {{\"objects\": {}, \"size\": 1024, \"hog_kib\": {}, \"free_kib\": {}, \"methods\": [",
                PRESSURE_OBJECTS, p.hog_kib, p.free_kib
            )?;
            for (i, m) in p.methods.iter().enumerate() {
                write!(
                    f,
                    "{}{{\"method\": \"{}\", \"failures\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \"max_ns\": {}}}",
                    if i == 0 { "" } else { ", " },
                    m.name,
                    m.failures,
                    m.p50,
                    m.p99,
                    m.max
                )?;
            }
            writeln!(f, "]}},")?;
        }
        writeln!(
            f,
            "  \"rounds\": {},",
            rslab::param(&module_parameters::rounds)
        )?;
        writeln!(
            f,
            "  \"warmup\": {},",
            rslab::param(&module_parameters::warmup)
        )?;
        writeln!(f, "  \"results\": [")?;
        for (i, r) in self.figures.iter().enumerate() {
            writeln!(
                f,
                "    {{\"group\": \"{}\", \"variant\": \"{}\", \"count\": {}, \"median_ps\": {}, \"min_ps\": {}, \"max_ps\": {}, \"ops\": {}, \"batch_ns\": {}}}{}",
                r.group,
                r.variant,
                r.count,
                r.median_ps,
                r.min_ps,
                r.max_ps,
                r.ops,
                r.batch_ns,
                if i + 1 == self.figures.len() { "" } else { "," }
            )?;
        }
        writeln!(f, "  ]")?;
        writeln!(f, "}}")
    }
}

fn run() -> Result<Results> {
    let mut figures = KVec::with_capacity(MAX_RESULTS, GFP_KERNEL)?;
    let cache = KmemCache::<Obj>::new(c"rslab_bench", CacheOptions::new().sheaf_capacity(32))?;
    #[cfg(rslab_sheaf)]
    sheaf_alloc(&mut figures, &cache)?;
    cache_alloc(&mut figures, &cache)?;
    #[cfg(rslab_sheaf)]
    let capacity = growth(&mut figures, &cache)?;
    #[cfg(rslab_sheaf)]
    prefill_return(
        &mut figures,
        &cache,
        "prefill+return, constant count",
        Const::<32>,
    )?;
    #[cfg(not(rslab_sheaf))]
    let capacity = 0;
    boxes::<8>(&mut figures, "Box::new 8 B", c::rslab_bench_kmalloc_const_8)?;
    boxes::<96>(
        &mut figures,
        "Box::new 96 B",
        c::rslab_bench_kmalloc_const_96,
    )?;
    boxes::<192>(
        &mut figures,
        "Box::new 192 B",
        c::rslab_bench_kmalloc_const_192,
    )?;
    boxes::<256>(
        &mut figures,
        "Box::new 256 B",
        c::rslab_bench_kmalloc_const_256,
    )?;
    boxes::<4096>(
        &mut figures,
        "Box::new 4096 B",
        c::rslab_bench_kmalloc_const_4096,
    )?;
    vec_growth(&mut figures)?;
    #[cfg(rslab_sheaf)]
    idmap_rows(&mut figures)?;
    for r in figures.iter() {
        pr_info!(
            "{:<26} {:>4} {:<15} {:>6}.{:01} ns/op (min {}.{:01}, max {}.{:01})\n",
            r.group,
            r.count,
            r.variant,
            r.median_ps / 1000,
            r.median_ps % 1000 / 100,
            r.min_ps / 1000,
            r.min_ps % 1000 / 100,
            r.max_ps / 1000,
            r.max_ps % 1000 / 100
        );
    }
    // Last: the guest is short of memory while it runs.
    #[cfg(rslab_sheaf)]
    let pressure = pressure()?;
    #[cfg(rslab_sheaf)]
    for m in pressure.methods.iter() {
        pr_info!(
            "pressure {:<18} {:>5} failures  p50 {} p99 {} max {}\n",
            m.name,
            m.failures,
            m.p50,
            m.p99,
            m.max
        );
    }
    Ok(Results {
        figures,
        #[cfg(rslab_sheaf)]
        pressure,
        capacity,
    })
}

#[pin_data]
struct BenchModule {
    _dir: Dir,
    #[pin]
    _results: kernel::debugfs::File<Results>,
}

impl kernel::InPlaceModule for BenchModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let dir = Dir::new(c"rslab_bench");
        try_pin_init!(Self {
            _results <- dir.read_only_file(c"results", run()?),
            _dir: dir,
        })
    }
}

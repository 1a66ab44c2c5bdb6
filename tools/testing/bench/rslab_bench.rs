// SPDX-License-Identifier: GPL-2.0

//! rslab benchmark: rslab's wrappers against the raw C calls, side by side, in one run.
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

use core::{fmt, mem::MaybeUninit};
use kernel::{
    alloc::{allocator, Allocator, Box, Vec},
    bindings,
    debugfs::Dir,
    prelude::*,
    time::{Instant, Monotonic},
};

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::{
    cache::{CacheOptions, KmemCache},
    kmalloc::Kmalloc,
};

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
const MAX_RESULTS: usize = 40;

/// One benchmark's figures, in picoseconds per operation.
#[derive(Clone, Copy)]
struct Figure {
    group: &'static str,
    variant: &'static str,
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
            median_ps: sorted[sorted.len() / 2],
            min_ps: sorted[0],
            max_ps: sorted[sorted.len() - 1],
            ops: self.ops,
            batch_ns: self.shortest,
        }
    }
}

/// Measures a baseline and rslab's counterpart side by side: their rounds alternate (and which
/// goes first alternates too), so a change in background load hits both alike. Each round
/// returns (timed ns, operations).
fn measure_pair(
    out: &mut KVec<Figure>,
    group: &'static str,
    base: (&'static str, &mut dyn FnMut() -> Result<(u64, u64)>),
    ours: (&'static str, &mut dyn FnMut() -> Result<(u64, u64)>),
) -> Result {
    let warm = rslab::param(&module_parameters::warmup);
    let rounds = rslab::param(&module_parameters::rounds).clamp(1, 101);
    let (bname, bf) = base;
    let (oname, of) = ours;
    for _ in 0..warm {
        bf()?;
        of()?;
    }
    let (mut bs, mut os) = (Samples::new(), Samples::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            bs.add(bf()?)?;
            os.add(of()?)?;
        } else {
            os.add(of()?)?;
            bs.add(bf()?)?;
        }
    }
    out.push(bs.figure(group, bname), GFP_KERNEL)?;
    out.push(os.figure(group, oname), GFP_KERNEL)?;
    Ok(())
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

/// Sheaf allocation + free: the raw C calls against `Slot::alloc` and dropping the `SlabBox`.
///
/// Each object is initialised (as a C caller would, and as `Slot::alloc` must) and freed right
/// away, so both sides do exactly the same work and nothing else is timed.
#[cfg(rslab_sheaf)]
fn sheaf_alloc(out: &mut KVec<Figure>, cache: &KmemCache<Obj>) -> Result {
    measure_pair(
        out,
        "sheaf alloc+free",
        ("raw C", &mut || {
            // SAFETY: `cache` is live; the sheaf is returned below.
            let sheaf = unsafe {
                bindings::kmem_cache_prefill_sheaf(
                    cache.as_raw(),
                    bindings::GFP_KERNEL,
                    BATCH as u32,
                )
            };
            if sheaf.is_null() {
                return Err(ENOMEM);
            }
            let ns = timed(|| {
                for _ in 0..BATCH {
                    // SAFETY: The sheaf holds at least `BATCH` objects.
                    let p = unsafe {
                        bindings::kmem_cache_alloc_from_sheaf_noprof(cache.as_raw(), 0, sheaf)
                    };
                    // SAFETY: `p` is a fresh object of `Obj`'s size and alignment, freed right
                    // after.
                    unsafe {
                        p.cast::<Obj>().write([0; 4]);
                        bindings::kmem_cache_free(cache.as_raw(), p);
                    }
                }
            });
            // SAFETY: `sheaf` came from `kmem_cache_prefill_sheaf` on this cache.
            unsafe {
                bindings::kmem_cache_return_sheaf(cache.as_raw(), bindings::GFP_KERNEL, sheaf)
            };
            Ok((ns, 2 * BATCH as u64))
        }),
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
    )
}

/// `kmem_cache_alloc` + `kmem_cache_free`, raw and through `KmemCache::alloc`; each object is
/// initialised and freed right away, as in [`sheaf_alloc`].
fn cache_alloc(out: &mut KVec<Figure>, cache: &KmemCache<Obj>) -> Result {
    measure_pair(
        out,
        "kmem_cache alloc+free",
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
        ("rslab", &mut || {
            let ns = timed(|| {
                for _ in 0..BATCH {
                    drop(cache.alloc([0; 4], GFP_KERNEL));
                }
            });
            Ok((ns, 2 * BATCH as u64))
        }),
    )
}

/// Prefill + return cycles of `count` objects.
#[cfg(rslab_sheaf)]
fn prefill_return(
    out: &mut KVec<Figure>,
    cache: &KmemCache<Obj>,
    group: &'static str,
    count: usize,
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
                            count as u32,
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
                    if let Ok(s) = cache.prefill(count, GFP_KERNEL) {
                        s.return_with(GFP_KERNEL);
                    }
                }
            });
            Ok((ns, CYCLES as u64))
        }),
    )
}

/// One batch of `Box::new` + drop over allocator `A`; `held` keeps the boxes between the two.
fn box_batch<A: Allocator, const N: usize>(
    held: &mut KVec<Box<MaybeUninit<[u8; N]>, A>>,
) -> Result<(u64, u64)> {
    let ns = timed(|| {
        for _ in 0..BATCH {
            if let Ok(b) = Box::new(MaybeUninit::uninit(), GFP_KERNEL) {
                // `held` has room for `BATCH`: no allocation.
                let _ = held.push(b, GFP_NOWAIT);
            }
        }
        held.clear();
    });
    Ok((ns, 2 * BATCH as u64))
}

/// `Box::new` + drop over the kernel crate's `Kmalloc` and over rslab's.
fn boxes<const N: usize>(out: &mut KVec<Figure>, group: &'static str) -> Result {
    let mut up: KVec<Box<MaybeUninit<[u8; N]>, allocator::Kmalloc>> =
        KVec::with_capacity(BATCH, GFP_KERNEL)?;
    let mut ours: KVec<Box<MaybeUninit<[u8; N]>, Kmalloc>> =
        KVec::with_capacity(BATCH, GFP_KERNEL)?;
    measure_pair(
        out,
        group,
        ("kernel Kmalloc", &mut || box_batch(&mut up)),
        ("rslab", &mut || box_batch(&mut ours)),
    )
}

/// One `Vec::push` growth to 100,000 elements over allocator `A`.
fn push_batch<A: Allocator>() -> Result<(u64, u64)> {
    const N: usize = 100_000;
    let mut ok = true;
    let ns = timed(|| {
        let mut v = Vec::<u32, A>::new();
        for i in 0..N {
            ok &= v.push(i as u32, GFP_KERNEL).is_ok();
        }
    });
    if ok {
        Ok((ns, N as u64))
    } else {
        Err(ENOMEM)
    }
}

/// `Vec::push` growth through both backends.
fn vec_growth(out: &mut KVec<Figure>) -> Result {
    measure_pair(
        out,
        "KVec push to 1e5",
        ("kernel Kmalloc", &mut push_batch::<allocator::Kmalloc>),
        ("rslab", &mut push_batch::<Kmalloc>),
    )
}

/// All results, rendered as JSON.
struct Results {
    figures: KVec<Figure>,
}

impl fmt::Debug for Results {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{{")?;
        writeln!(f, "  \"unit\": \"ps/op\",")?;
        writeln!(f, "  \"sheaf_api\": {},", rslab::HAVE_SHEAVES)?;
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
                "    {{\"group\": \"{}\", \"variant\": \"{}\", \"median_ps\": {}, \"min_ps\": {}, \"max_ps\": {}, \"ops\": {}, \"batch_ns\": {}}}{}",
                r.group,
                r.variant,
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
    for (group, count) in [
        ("prefill+return 1", 1),
        ("prefill+return 10", 10),
        ("prefill+return 32", 32),
        ("prefill+return 100", 100),
    ] {
        prefill_return(&mut figures, &cache, group, count)?;
    }
    boxes::<8>(&mut figures, "Box::new 8 B")?;
    boxes::<96>(&mut figures, "Box::new 96 B")?;
    boxes::<192>(&mut figures, "Box::new 192 B")?;
    boxes::<256>(&mut figures, "Box::new 256 B")?;
    boxes::<4096>(&mut figures, "Box::new 4096 B")?;
    vec_growth(&mut figures)?;
    for r in figures.iter() {
        pr_info!(
            "{:<24} {:<15} {:>6}.{:01} ns/op (min {}.{:01}, max {}.{:01})\n",
            r.group,
            r.variant,
            r.median_ps / 1000,
            r.median_ps % 1000 / 100,
            r.min_ps / 1000,
            r.min_ps % 1000 / 100,
            r.max_ps / 1000,
            r.max_ps % 1000 / 100
        );
    }
    Ok(Results { figures })
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

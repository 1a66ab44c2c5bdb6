// SPDX-License-Identifier: GPL-2.0

//! Model-based random testing of the allocator, the cache and the sheaf wrappers.
//!
//! A seeded PRNG drives a long sequence of operations against the real objects and against a
//! model of what they must contain; any divergence fails with the seed and the step, so the run
//! can be replayed with `insmod rslab.ko model_seed=<seed> model_ops=<step + 1>`.

use crate::rslab::{
    cache::{CacheOptions, KmemCache, SlabBox},
    kmalloc::{Kmalloc, RsVec},
};
use core::{alloc::Layout, ptr::NonNull};
use kernel::{
    alloc::{Allocator, NumaNode},
    page::PAGE_SIZE,
    prelude::*,
};

/// xorshift64*: small, fast and good enough to pick operations.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64 spreads every seed bit over the state; xorshift's state must not be zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The suite runs `model_ops` operations as this many test cases of `model_ops / PARTS`
/// operations each, seeded `model_seed + part`: each case stays far below KUnit's per-case
/// timeout even on the debug kernel (KASAN, lockdep, `slab_debug`), where one million
/// operations take about five minutes under emulation.
pub(crate) const PARTS: u64 = 4;

/// Objects kept alive at most, per kind.
const MAX_LIVE: usize = 256;
/// Longest vector.
const MAX_VEC: usize = 4096;

/// One raw `Kmalloc` allocation of the model, filled with `tag`.
struct Raw {
    ptr: NonNull<u8>,
    layout: Layout,
    tag: u8,
}

impl Raw {
    fn intact(&self) -> bool {
        // SAFETY: `ptr` is a live allocation of `layout`, fully written with `tag`.
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) };
        bytes.first() == Some(&self.tag) && bytes.last() == Some(&self.tag)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by `Kmalloc` with `layout`.
        unsafe { Kmalloc::free(self.ptr, self.layout) };
    }
}

/// Counts of what a run did.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) ops: u64,
    pub(crate) by_kind: [u64; 12],
}

/// Runs `ops` random operations from `seed`. Returns what was done, or `EINVAL` after logging
/// the seed and step of the first divergence.
pub(crate) fn run(seed: u64, ops: u64) -> Result<Counts> {
    let cache = KmemCache::<[u64; 6]>::new(c"rslab_model", CacheOptions::new().sheaf_capacity(16))?;
    let mut rng = Rng::new(seed);
    let mut counts = Counts::default();
    let mut objs: KVec<(SlabBox<'_, [u64; 6]>, u64)> = KVec::with_capacity(MAX_LIVE, GFP_KERNEL)?;
    let mut raws: KVec<Raw> = KVec::with_capacity(MAX_LIVE, GFP_KERNEL)?;
    let mut vec = RsVec::<u64>::new();
    // The model of `vec`: the same values in the kernel crate's own `KVec`.
    let mut model = KVec::<u64>::with_capacity(MAX_VEC, GFP_KERNEL)?;
    #[cfg(rslab_sheaf)]
    let mut sheaf: Option<crate::rslab::sheaf::Sheaf<'_, [u64; 6]>> = None;

    macro_rules! diverged {
        ($step:expr, $($arg:tt)+) => {{
            pr_err!(
                "rslab_model: divergence at step {} (seed {}): {}\n",
                $step,
                seed,
                format_args!($($arg)+)
            );
            pr_err!(
                "rslab_model: replay with: insmod rslab.ko model_seed={} model_ops={} \
                 (the suite's first part replays this sequence)\n",
                seed,
                PARTS * ($step + 1)
            );
            return Err(EINVAL);
        }};
    }

    for step in 0..ops {
        let kind = rng.below(12);
        counts.by_kind[kind] += 1;
        match kind {
            // Allocate an object from the cache, tagged.
            0 | 1 if objs.len() < MAX_LIVE => {
                let tag = rng.next();
                let o = cache.alloc([tag; 6], GFP_KERNEL)?;
                objs.push((o, tag), GFP_KERNEL)?;
            }
            // Free a random object after checking its contents.
            0..=2 if !objs.is_empty() => {
                let i = rng.below(objs.len());
                let (o, tag) = objs.remove(i)?;
                if o.iter().any(|&x| x != tag) {
                    diverged!(step, "cache object {:?} lost its tag {:#x}", &*o, tag);
                }
            }
            // A raw `Kmalloc` allocation of a random layout.
            3 if raws.len() < MAX_LIVE => {
                let size = 1 + rng.below(3 * PAGE_SIZE);
                let align = 1 << rng.below(13);
                let layout = Layout::from_size_align(size, align).map_err(|_| EINVAL)?;
                let ptr = Kmalloc::alloc(layout, GFP_KERNEL, NumaNode::NO_NODE)
                    .map_err(|_| ENOMEM)?
                    .cast::<u8>();
                let tag = rng.next() as u8;
                // SAFETY: `ptr` is valid for `size` bytes.
                unsafe { ptr.as_ptr().write_bytes(tag, size) };
                let raw = Raw { ptr, layout, tag };
                if ptr.as_ptr() as usize % align != 0 {
                    diverged!(step, "Kmalloc({}, {}) returned {:p}", size, align, ptr);
                }
                raws.push(raw, GFP_KERNEL)?;
            }
            3 | 4 if !raws.is_empty() => {
                let raw = raws.remove(rng.below(raws.len()))?;
                if !raw.intact() {
                    diverged!(step, "raw allocation {:?} lost its tag", raw.layout);
                }
            }
            // Vector operations against the model.
            5 | 6 if vec.len() < MAX_VEC => {
                let v = rng.next();
                vec.push(v, GFP_KERNEL)?;
                model.push(v, GFP_KERNEL)?;
            }
            5..=7 => {
                let len = rng.below(vec.len() + 1);
                vec.truncate(len);
                model.truncate(len);
                if vec.as_slice() != model.as_slice() {
                    diverged!(
                        step,
                        "vector differs from its model after truncate({})",
                        len
                    );
                }
            }
            8 => {
                let extra = rng.below(2 * MAX_VEC);
                let before = vec.as_ptr();
                if vec.reserve(extra, GFP_KERNEL).is_err() {
                    diverged!(step, "reserve({}) failed", extra);
                }
                if vec.capacity() < vec.len() + extra {
                    diverged!(step, "reserve({}) left capacity {}", extra, vec.capacity());
                }
                if vec.as_slice() != model.as_slice() {
                    diverged!(
                        step,
                        "vector differs from its model after reserve (moved: {})",
                        before != vec.as_ptr()
                    );
                }
                if vec.capacity() > 4 * MAX_VEC {
                    vec = RsVec::new();
                    model.clear();
                }
            }
            // Sheaf operations.
            #[cfg(rslab_sheaf)]
            9 => match &sheaf {
                None => {
                    let n = 1 + rng.below(80);
                    let s = cache.prefill(n, GFP_KERNEL)?;
                    if s.len() < n {
                        diverged!(step, "prefill({}) holds {}", n, s.len());
                    }
                    sheaf = Some(s);
                }
                Some(_) => {
                    // Returned explicitly or dropped (GFP_NOWAIT), at random.
                    if let Some(s) = sheaf.take() {
                        if rng.below(2) == 0 {
                            s.return_with(GFP_KERNEL);
                        }
                    }
                }
            },
            #[cfg(rslab_sheaf)]
            10 => {
                if let Some(s) = &sheaf {
                    let before = s.len();
                    match s.claim() {
                        Ok(slot) if objs.len() < MAX_LIVE => {
                            let tag = rng.next();
                            let o = slot.alloc([tag; 6]);
                            if s.len() != before - 1 {
                                diverged!(
                                    step,
                                    "sheaf went from {} to {} objects",
                                    before,
                                    s.len()
                                );
                            }
                            objs.push((o, tag), GFP_KERNEL)?;
                        }
                        Ok(_) => {}
                        Err(_) if s.available() != 0 => {
                            diverged!(
                                step,
                                "claim failed with {} claimable objects",
                                s.available()
                            );
                        }
                        Err(_) => {}
                    }
                }
            }
            #[cfg(rslab_sheaf)]
            11 => {
                if let Some(s) = &mut sheaf {
                    let n = rng.below(120);
                    let before = s.len();
                    if n % 4 == 0 {
                        // Recount instead: every object the sheaf holds becomes claimable.
                        if s.recount() != before || s.available() != before {
                            diverged!(step, "recount of {} objects", before);
                        }
                    } else {
                        s.refill(n, GFP_KERNEL)?;
                        if s.len() < n || (before >= n && s.len() != before) {
                            diverged!(step, "refill({}) took {} objects to {}", n, before, s.len());
                        }
                        if s.available() != s.len() {
                            diverged!(
                                step,
                                "after refill {} of {} claimable",
                                s.available(),
                                s.len()
                            );
                        }
                    }
                }
            }
            _ => {}
        }
        counts.ops += 1;
    }
    if vec.as_slice() != model.as_slice() {
        diverged!(ops, "vector differs from its model at the end");
    }
    Ok(counts)
}

#[kernel::macros::kunit_tests(rslab_model)]
mod tests {
    use super::*;
    use crate::rslab::{check, param};

    /// Runs part `part` of the model: `model_ops / PARTS` operations seeded `model_seed + part`.
    fn part(part: u64) -> Result {
        let seed = param(&crate::module_parameters::model_seed).wrapping_add(part);
        let ops = param(&crate::module_parameters::model_ops) / PARTS;
        let c = run(seed, ops)?;
        check!(c.ops == ops, "ran {} of {} operations", c.ops, ops);
        check!(
            c.by_kind.iter().all(|&k| k > 0),
            "an operation kind was never picked"
        );
        pr_info!(
            "rslab_model: part {} of {}, seed {}, {} operations executed, by kind {:?}\n",
            part + 1,
            PARTS,
            seed,
            c.ops,
            c.by_kind
        );
        Ok(())
    }

    #[test]
    fn random_operations_part_1() -> Result {
        part(0)
    }

    #[test]
    fn random_operations_part_2() -> Result {
        part(1)
    }

    #[test]
    fn random_operations_part_3() -> Result {
        part(2)
    }

    #[test]
    fn random_operations_part_4() -> Result {
        part(3)
    }

    #[test]
    fn the_prng_is_deterministic() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let mut same = true;
        let mut differs = false;
        for _ in 0..1000 {
            let (x, y, z) = (a.next(), b.next(), c.next());
            same &= x == y;
            differs |= x != z;
        }
        assert!(same);
        assert!(differs);
    }
}

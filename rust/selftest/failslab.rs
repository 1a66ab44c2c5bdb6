// SPDX-License-Identifier: GPL-2.0

//! Fault injection: every allocation failure path, exercised with failslab.
//!
//! The runner arms failslab for tasks that ask for it only (`task-filter=Y`, probability 50%,
//! `verbose=0`); [`Inject`] sets `current->make_it_fail` around one operation at a time, so the
//! test's own bookkeeping never sees an injected failure. Each injected failure must surface as
//! `ENOMEM`/`AllocError`, leave the previous state intact, and leak nothing (the caches are
//! destroyed at the end of each test, and any "objects remaining" fails the run).

use crate::rslab::{
    cache::{CacheOptions, KmemCache},
    kmalloc::{RsBox, RsVec},
};
use kernel::{bindings, prelude::*};

/// Operations tried per test.
const ROUNDS: usize = 4000;

/// While alive, slab allocations of the current task may fail (failslab's task filter).
struct Inject(*mut bindings::task_struct);

impl Inject {
    fn arm() -> Self {
        let task = kernel::current!().as_ptr();
        // SAFETY: `task` is the current task, alive while this code runs; only the task itself
        // (through the allocator) and this guard touch `make_it_fail`.
        unsafe { (*task).make_it_fail = 1 };
        Self(task)
    }
}

impl Drop for Inject {
    fn drop(&mut self) {
        // SAFETY: As in `arm`: `self.0` is the current task.
        unsafe { (*self.0).make_it_fail = 0 };
    }
}

/// Runs `f` with failures injected.
fn injected<R>(f: impl FnOnce() -> R) -> R {
    let _armed = Inject::arm();
    f()
}

/// Whether failslab is armed the way the runner sets it up.
fn failslab_armed() -> bool {
    let mut failed = 0;
    for _ in 0..64 {
        if injected(|| KBox::new(0u64, GFP_KERNEL)).is_err() {
            failed += 1;
        }
    }
    failed > 0
}

/// Fails unless failslab is armed for this task's injections.
fn require_failslab() -> Result {
    crate::rslab::check!(
        failslab_armed(),
        "failslab is not armed: the runner sets /sys/kernel/debug/failslab (task-filter=Y, \
         probability=50, verbose=0)"
    );
    Ok(())
}

/// Totals over the suites, printed by their last tests.
static INJECTED: kernel::sync::atomic::Atomic<usize> = kernel::sync::atomic::Atomic::new(0);

fn count(n: usize) {
    INJECTED.fetch_add(n, kernel::sync::atomic::Relaxed);
}

#[kernel::macros::kunit_tests(rslab_failslab)]
mod tests {
    use super::*;
    use crate::rslab::check;

    #[test]
    fn kmalloc_backend_failures() -> Result {
        require_failslab()?;
        let mut failures = 0;
        let mut v = RsVec::<u32>::new();
        for round in 0..ROUNDS {
            // Allocation: either a box, or AllocError.
            match injected(|| RsBox::new([round as u8; 100], GFP_KERNEL)) {
                Ok(b) => check!(b[99] == round as u8, "contents"),
                Err(_) => failures += 1,
            }
            // Growth: on failure the vector keeps its buffer and contents.
            let (len, cap, ptr) = (v.len(), v.capacity(), v.as_ptr());
            match injected(|| v.reserve(cap + 1, GFP_KERNEL)) {
                Ok(()) => check!(v.capacity() > cap, "reserve did not grow"),
                Err(_) => {
                    failures += 1;
                    check!(
                        v.len() == len && v.capacity() == cap && v.as_ptr() == ptr,
                        "failed reserve changed the vector"
                    );
                }
            }
            check!(
                v.iter().enumerate().all(|(i, &x)| x == i as u32),
                "contents after reserve"
            );
            if v.len() < 2000 {
                v.push(v.len() as u32, GFP_KERNEL)?;
            } else {
                v = RsVec::new();
            }
        }
        check!(failures > 0, "no failure injected");
        count(failures);
        pr_info!(
            "rslab_failslab: kmalloc backend: {} injected failures\n",
            failures
        );
        Ok(())
    }

    #[test]
    fn cache_alloc_failures() -> Result {
        require_failslab()?;
        let cache = KmemCache::<[u64; 8]>::new(c"rslab_inject_alloc", CacheOptions::new())?;
        let mut failures = 0;
        let mut live = KVec::with_capacity(ROUNDS, GFP_KERNEL)?;
        for round in 0..ROUNDS {
            match injected(|| cache.alloc([round as u64; 8], GFP_KERNEL)) {
                Ok(o) => live.push(o, GFP_KERNEL)?,
                Err(_) => failures += 1,
            }
            let r = injected(|| cache.init(pin_init::init_zeroed::<[u64; 8]>(), GFP_KERNEL));
            match r {
                Ok(o) => check!(o[7] == 0, "init"),
                Err(e) => {
                    check!(e == ENOMEM, "init failed with {:?}", e);
                    failures += 1;
                }
            }
        }
        check!(
            live.iter().all(|o| o[0] == o[7]),
            "a surviving object was corrupted"
        );
        check!(failures > 0, "no failure injected");
        count(failures);
        pr_info!(
            "rslab_failslab: cache alloc/init: {} injected failures\n",
            failures
        );
        Ok(())
    }

    #[test]
    fn cache_creation_failures() -> Result {
        require_failslab()?;
        let mut failures = 0;
        // Each failed creation prints a warning and a stack dump (the runner expects exactly
        // these, for caches named rslab_inject_*), so keep the count small.
        for _ in 0..48 {
            match injected(|| {
                KmemCache::<[u64; 3]>::new(c"rslab_inject_create", CacheOptions::new())
            }) {
                Ok(c) => {
                    let o = c.alloc([2; 3], GFP_KERNEL)?;
                    check!(o[2] == 2, "allocation from a created cache");
                }
                Err(e) => {
                    check!(e == ENOMEM, "creation failed with {:?}", e);
                    failures += 1;
                }
            }
        }
        check!(failures > 0, "no failure injected");
        count(failures);
        pr_info!(
            "rslab_failslab: cache creation: {} injected failures; {} in this suite so far\n",
            failures,
            INJECTED.load(kernel::sync::atomic::Relaxed)
        );
        Ok(())
    }
}

/// The sheaf paths, only where the kernel exports the sheaf API (a `#[cfg]`-ed out KUnit case
/// would still be registered, and reported as skipped).
#[cfg(rslab_sheaf)]
#[kernel::macros::kunit_tests(rslab_failslab_sheaf)]
mod sheaf_tests {
    use super::*;
    use crate::rslab::check;

    #[test]
    fn prefill_and_refill_failures() -> Result {
        require_failslab()?;
        let cache = KmemCache::<[u64; 8]>::new(
            c"rslab_inject_sheaf",
            CacheOptions::new().sheaf_capacity(16),
        )?;
        let mut failures = 0;
        let mut kept = cache.prefill(4, GFP_KERNEL)?;
        for round in 0..ROUNDS {
            // Prefill, regular and oversize.
            let n = if round % 2 == 0 { 8 } else { 200 };
            match injected(|| cache.prefill(n, GFP_KERNEL)) {
                Ok(s) => check!(s.len() >= n, "prefill({}) holds {}", n, s.len()),
                Err(e) => {
                    check!(e == ENOMEM, "prefill failed with {:?}", e);
                    failures += 1;
                }
            }
            // Refill past the capacity: on failure the sheaf stays valid and keeps its objects.
            let before = kept.len();
            let want = before + 1 + round % 300;
            match injected(|| kept.refill(want, GFP_KERNEL)) {
                Ok(()) => check!(kept.len() >= want, "refill({}) holds {}", want, kept.len()),
                Err(e) => {
                    check!(e == ENOMEM, "refill failed with {:?}", e);
                    check!(kept.len() >= before, "failed refill lost objects");
                    failures += 1;
                }
            }
            // The sheaf still works: use it, and start over small now and then.
            if let Ok(slot) = kept.claim() {
                let o = slot.alloc([1; 8]);
                check!(o[0] == 1, "allocation after a failed refill");
            }
            if kept.len() > 400 {
                kept = cache.prefill(4, GFP_KERNEL)?;
            }
        }
        check!(failures > 0, "no failure injected");
        count(failures);
        pr_info!(
            "rslab_failslab: prefill/refill: {} injected failures\n",
            failures
        );
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Concurrent use of one cache from kthreads on different CPUs.
//!
//! Two kthreads, bound to CPU 0 and CPU 1, share one [`KmemCache`]. Each prefills sheaves of
//! its own, allocates from them under a shared spinlock, and posts the objects to the other
//! thread's mailbox; each frees what the other allocated, so every object is allocated on one
//! CPU and freed on the other. After a bounded number of operations the counts must balance
//! and the cache must be destroyed without "objects remaining".

use crate::rslab::cache::{CacheOptions, KmemCache, SlabBox};
use core::{ffi::c_void, ptr};
use kernel::{bindings, new_spinlock, prelude::*, sync::SpinLock, types::Opaque};

/// Objects in flight per mailbox.
const SLOTS: usize = 64;

type Obj<'c> = SlabBox<'c, [u64; 4]>;

struct Mailbox<'c> {
    slots: [Option<Obj<'c>>; SLOTS],
}

/// The state under the shared lock.
struct Boxes<'c> {
    /// `mail[i]` holds objects allocated by the other thread for thread `i` to free.
    mail: [Mailbox<'c>; 2],
    /// Thread `i` has allocated all its objects.
    done: [bool; 2],
    /// Stop now (the other thread could not be started).
    abort: bool,
}

/// What both threads share.
#[pin_data]
struct Shared<'c> {
    cache: &'c KmemCache<[u64; 4]>,
    #[pin]
    boxes: SpinLock<Boxes<'c>>,
    ops: u64,
}

/// One thread's view: its CPU, the shared state and its result.
struct Worker<'a, 'c> {
    id: usize,
    shared: &'a Shared<'c>,
    allocated: u64,
    freed: u64,
    /// `None` until the thread has run.
    result: Option<Result>,
    done: Opaque<bindings::completion>,
}

impl Worker<'_, '_> {
    fn work(&mut self) -> Result {
        let me = self.id;
        let other = 1 - me;
        let mut round = 0u64;
        loop {
            // Before the lock: reserve this round's objects (none once all are allocated).
            let want = SLOTS.min((self.shared.ops - self.allocated) as usize);
            let sheaf = match want {
                0 => None,
                n => Some(self.shared.cache.prefill(n, GFP_KERNEL)?),
            };
            let mut slots = KVec::with_capacity(want, GFP_KERNEL)?;
            if let Some(sheaf) = &sheaf {
                for _ in 0..want {
                    slots.push(sheaf.claim().map_err(|_| ENOMEM)?, GFP_KERNEL)?;
                }
            }
            // Objects taken from our mailbox, freed after the lock.
            let mut mine: KVec<Obj<'_>> = KVec::with_capacity(SLOTS, GFP_KERNEL)?;
            let (exit, progress) = {
                let mut boxes = self.shared.boxes.lock();
                let before = self.allocated;
                // Under the lock: allocate into the other thread's mailbox...
                let mut claimed = slots.drain_all();
                for slot in boxes.mail[other].slots.iter_mut().filter(|s| s.is_none()) {
                    let Some(s) = claimed.next() else { break };
                    *slot = Some(s.alloc([round; 4]));
                    self.allocated += 1;
                }
                // Unused claims go back to the sheaf.
                drop(claimed);
                if self.allocated == self.shared.ops {
                    boxes.done[me] = true;
                }
                // ... and take everything from ours. Checking `done[other]` in the same
                // critical section means nothing can be posted to us after our last take.
                for slot in boxes.mail[me].slots.iter_mut() {
                    if let Some(o) = slot.take() {
                        // `mine` has room for every slot: this push does not allocate.
                        mine.push(o, GFP_NOWAIT)?;
                    }
                }
                (
                    boxes.abort || (boxes.done[me] && boxes.done[other]),
                    self.allocated != before || !mine.is_empty(),
                )
            };
            // After the lock: free on this CPU what the other CPU allocated.
            self.freed += mine.len() as u64;
            drop(mine);
            drop(slots);
            drop(sheaf);
            if exit {
                return Ok(());
            }
            if !progress {
                // The other thread is behind; let it run.
                // SAFETY: Sleeping is allowed here: no lock is held.
                unsafe { bindings::msleep(1) };
            }
            round += 1;
        }
    }
}

/// The body of each kthread.
///
/// # Safety
///
/// `data` must point to a [`Worker`] whose `done` completion is initialised, and the worker must
/// stay valid until that completion is signalled.
unsafe extern "C" fn thread_fn(data: *mut c_void) -> i32 {
    // SAFETY: `data` is the `Worker` that `run` passed, alive until `done` completes.
    let w = unsafe { &mut *data.cast::<Worker<'_, '_>>() };
    w.result = Some(w.work());
    // SAFETY: `done` was initialised by `run`, which waits for it before `w` goes away;
    // `kthread_complete_and_exit` signals it as this thread's very last action.
    unsafe { bindings::kthread_complete_and_exit(w.done.get(), 0) }
}

/// Runs the two threads for `ops` allocations each; returns (allocated, freed) in total.
pub(crate) fn run(ops: u64) -> Result<(u64, u64, u64)> {
    let cache = KmemCache::<[u64; 4]>::new(c"rslab_concurrency", CacheOptions::new())?;
    let cache = &cache;
    let shared = KBox::pin_init(
        pin_init!(Shared {
            cache,
            boxes <- new_spinlock!(Boxes {
                mail: [const { Mailbox { slots: [const { None }; SLOTS] } }; 2],
                done: [false; 2],
                abort: false,
            }),
            ops,
        }),
        GFP_KERNEL,
    )?;
    let mut workers = KVec::with_capacity(2, GFP_KERNEL)?;
    for id in 0..2 {
        let w = KBox::new(
            Worker {
                id,
                shared: &shared,
                allocated: 0,
                freed: 0,
                result: None,
                done: Opaque::uninit(),
            },
            GFP_KERNEL,
        )?;
        workers.push(w, GFP_KERNEL)?;
    }
    let mut started = 0;
    for w in workers.iter_mut() {
        // SAFETY: `done` is valid for an in-place `init_completion`.
        unsafe { bindings::init_completion(w.done.get()) };
        let data = ptr::from_mut::<Worker<'_, '_>>(&mut **w).cast::<c_void>();
        // SAFETY: `thread_fn` matches the kthread signature; `data` stays valid until the thread
        // completes `done`, which is waited for below before `workers` is dropped.
        let task = unsafe {
            bindings::kthread_create_on_cpu(
                Some(thread_fn),
                data,
                w.id as u32,
                c"rslab_conc/%u".as_char_ptr(),
            )
        };
        // NULL or an `ERR_PTR()`.
        if task.is_null() || task as usize >= (-4095isize) as usize {
            // The thread already running must not wait for this one.
            shared.boxes.lock().abort = true;
            break;
        }
        // SAFETY: `task` is a freshly created, not yet running kthread.
        unsafe { bindings::wake_up_process(task) };
        started += 1;
    }
    for w in workers.iter().take(started) {
        // SAFETY: The thread completes `done` before it exits.
        unsafe { bindings::wait_for_completion(w.done.get()) };
    }
    if started != 2 {
        return Err(ENOMEM);
    }
    let mut allocated = 0;
    let mut freed = 0;
    for w in workers.iter() {
        w.result.ok_or(ESRCH)??;
        allocated += w.allocated;
        freed += w.freed;
    }
    // What is still in the mailboxes: nothing, if both threads drained to the end.
    let left = {
        let mut boxes = shared.boxes.lock();
        let mut n = 0u64;
        for b in boxes.mail.iter_mut() {
            for s in b.slots.iter_mut() {
                n += u64::from(s.take().is_some());
            }
        }
        n
    };
    // `workers`, `shared` and the cache go away in that order.
    Ok((allocated, freed, left))
}

#[cfg(rslab_sheaf)]
#[kernel::macros::kunit_tests(rslab_concurrency)]
mod tests {
    use super::*;
    use crate::rslab::check;

    #[test]
    fn two_cpus_allocate_and_free_each_others_objects() -> Result {
        // SAFETY: `__num_online_cpus` is a valid, aligned `atomic_t`; this is `num_online_cpus()`,
        // a racy read by design.
        let cpus =
            unsafe { core::ptr::read_volatile(&raw const bindings::__num_online_cpus.counter) };
        check!(cpus >= 2, "needs 2 online CPUs, has {}", cpus);
        let ops = crate::rslab::param(&crate::module_parameters::concurrency_ops);
        let (allocated, freed, left) = run(ops)?;
        check!(
            allocated == 2 * ops,
            "allocated {} of {}",
            allocated,
            2 * ops
        );
        check!(
            freed == allocated && left == 0,
            "allocated {}, freed {}, left in mailboxes {}",
            allocated,
            freed,
            left
        );
        pr_info!(
            "rslab_concurrency: 2 CPUs, {} objects allocated under the lock, {} freed by the other CPU\n",
            allocated,
            freed
        );
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Allocation profiling: `/proc/allocinfo` attributes rslab's allocations to rslab's own lines.
//!
//! With `CONFIG_MEM_ALLOC_PROFILING`, the library allocates through the module's C helpers
//! (`rust/lib/helpers.c`), each wrapped in `alloc_hooks()` as C's allocation macros are, so the
//! kernel counts every allocation against a tag of the helper's line, which `/proc/allocinfo`
//! shows as `<bytes> <calls> <path>/helpers.c:<line> [rslab] func:<helper>`. The test allocates
//! on each path, a cache object, a sheaf slot and a `Box` over the library's `Kmalloc`, and
//! checks that the calls and bytes of the matching lines grew by at least what it allocated.
//! `/proc/allocinfo` counts live allocations, so a free between the two snapshots would lower
//! them; none can happen: every object attributed to these lines of rslab.ko is freed by the
//! thread that owns it, when it drops it (the library frees nothing through RCU or a workqueue),
//! and KUnit runs rslab's cases one after another.
//! The suite exists only in kernels with allocation profiling (the runner expects it there
//! alone); with profiling switched off at run time (`vm.mem_profiling`) it is skipped, which
//! the runner counts as a failure.

use crate::rslab::{
    cache::{CacheOptions, KmemCache},
    check,
    kmalloc::RsBox,
};
use kernel::{bindings, ffi::c_char, prelude::*};

/// An open file of the kernel's own (`filp_open()`), closed on drop.
///
/// # Invariants
///
/// `0` is an open file owned by this value.
struct File(*mut bindings::file);

impl File {
    fn open(path: &CStr) -> Result<Self> {
        // SAFETY: `path` is a NUL-terminated string; a read-only open needs no mode.
        let f = unsafe { bindings::filp_open(path.as_char_ptr(), bindings::O_RDONLY as i32, 0) };
        // INVARIANT: A file that did not fail to open is open and ours.
        Ok(Self(kernel::error::from_err_ptr(f)?))
    }

    /// Calls `line` for each line of the file, read in pieces: a procfs file has no size, so
    /// `kernel_read_file()` refuses it.
    fn for_each_line(&self, mut line: impl FnMut(&[u8])) -> Result {
        let mut buf = KVec::from_elem(0u8, 8192, GFP_KERNEL)?;
        let mut held = 0;
        let mut pos: bindings::loff_t = 0;
        loop {
            let room = buf.len() - held;
            check!(room > 0, "a line longer than {} bytes", buf.len());
            // SAFETY: By the type invariant the file is open; `buf[held..]` is valid for writes
            // of `room` bytes, and `pos` for reads and writes.
            let n = unsafe {
                bindings::kernel_read(self.0, buf.as_mut_ptr().add(held).cast(), room, &mut pos)
            };
            if n < 0 {
                return Err(Error::from_errno(n as i32));
            }
            if n == 0 {
                break;
            }
            held += n as usize;
            let mut start = 0;
            while let Some(i) = buf[start..held].iter().position(|&b| b == b'\n') {
                line(&buf[start..start + i]);
                start += i + 1;
            }
            buf.copy_within(start..held, 0);
            held -= start;
        }
        if held > 0 {
            line(&buf[..held]);
        }
        Ok(())
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the file is open and ours; it is not used again.
        unsafe { bindings::filp_close(self.0, core::ptr::null_mut()) };
    }
}

/// The helpers whose lines the test looks for, by allocation path.
const CACHE: &[&[u8]] = &[b"rslab_kmem_cache_alloc"];
const SHEAF: &[&[u8]] = &[b"rslab_kmem_cache_alloc_from_sheaf"];
const KMALLOC: &[&[u8]] = &[
    b"rslab_kmalloc_cache",
    b"rslab_kmalloc",
    b"rslab_kmalloc_large",
];

/// Bytes and calls of one allocation path in rslab.ko, summed over its helpers' lines.
#[derive(Clone, Copy, Default)]
struct Count {
    bytes: i64,
    calls: u64,
    lines: usize,
}

fn number(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

/// `<bytes> <calls> <file>:<line> [rslab] func:<function> ...`: the counts, the file and the
/// function of one of rslab.ko's tags, or `None` for any other line.
fn parse(line: &[u8]) -> Option<(i64, u64, &[u8], &[u8])> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let bytes = number(fields.next()?)?;
    let calls = u64::try_from(number(fields.next()?)?).ok()?;
    let file = fields.next()?;
    if fields.next()? != b"[rslab]" {
        return None;
    }
    let func = fields.next()?.strip_prefix(b"func:")?;
    Some((bytes, calls, file, func))
}

/// The counts of the three paths, read from `/proc/allocinfo`; with `log`, prints the lines.
fn snapshot(log: bool) -> Result<[Count; 3]> {
    let mut counts = [Count::default(); 3];
    let mut foreign = 0;
    File::open(c"/proc/allocinfo")?.for_each_line(|line| {
        let Some((bytes, calls, file, func)) = parse(line) else {
            return;
        };
        for (count, funcs) in counts.iter_mut().zip([CACHE, SHEAF, KMALLOC]) {
            if funcs.contains(&func) {
                // rslab's own source line: the library's C helpers.
                let ours = file
                    .windows(b"helpers.c:".len())
                    .any(|w| w == b"helpers.c:");
                if !ours {
                    foreign += 1;
                    return;
                }
                count.bytes += bytes;
                count.calls += calls;
                count.lines += 1;
                if log {
                    pr_info!("rslab_allocinfo: {}\n", kernel::str::BStr::from_bytes(line));
                }
            }
        }
    })?;
    check!(
        foreign == 0,
        "{} of rslab's tags are not in helpers.c",
        foreign
    );
    Ok(counts)
}

/// Marks the running test skipped (`kunit_mark_skipped()`, a C macro) with `reason`.
fn skip(reason: &str) -> Result {
    // SAFETY: Always safe to call; NULL outside a test.
    let test = unsafe { bindings::kunit_get_current_test() };
    check!(!test.is_null(), "not running in a KUnit test");
    // SAFETY: `test` is the running test; while it runs, its status and comment are written by
    // its own thread only (this one), and read by KUnit after it ends.
    unsafe {
        core::ptr::write_volatile(
            &raw mut (*test).status,
            bindings::kunit_status_KUNIT_SKIPPED,
        );
        let comment = &mut (*test).status_comment;
        let n = reason.len().min(comment.len() - 1);
        for (d, &s) in comment.iter_mut().zip(&reason.as_bytes()[..n]) {
            *d = s as c_char;
        }
        comment[n] = 0;
    }
    pr_info!("rslab_allocinfo: skipped: {}\n", reason);
    Ok(())
}

/// Whether allocation profiling, built in, counts allocations now (not switched off).
fn profiling() -> Result<Option<&'static str>> {
    let mut on = false;
    File::open(c"/proc/sys/vm/mem_profiling")?.for_each_line(|l| on = l == b"1")?;
    Ok((!on).then_some("allocation profiling is switched off (vm.mem_profiling)"))
}

const N: usize = 16;

// The module is compiled with allocation profiling only; the runner reads this line.
#[cfg(CONFIG_MEM_ALLOC_PROFILING)]
#[kernel::macros::kunit_tests(rslab_allocinfo)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_attributed_to_rslab_lines() -> Result {
        if let Some(reason) = profiling()? {
            return skip(reason);
        }
        let before = snapshot(false)?;
        let cache = KmemCache::<[u64; 4]>::new(c"rslab_test_allocinfo", CacheOptions::new())?;
        let mut objects = KVec::with_capacity(N, GFP_KERNEL)?;
        let mut boxes = KVec::with_capacity(N, GFP_KERNEL)?;
        for i in 0..N {
            objects.push(cache.alloc([i as u64; 4], GFP_KERNEL)?, GFP_KERNEL)?;
            boxes.push(RsBox::new([i as u8; 96], GFP_KERNEL)?, GFP_KERNEL)?;
        }
        #[cfg(rslab_sheaf)]
        let slots = {
            let sheaf = cache.prefill(N, GFP_KERNEL)?;
            let mut slots = KVec::with_capacity(N, GFP_KERNEL)?;
            for slot in sheaf.claims(N).map_err(|_| ENOMEM)? {
                slots.push(slot.alloc([7; 4]), GFP_KERNEL)?;
            }
            slots
        };
        let after = snapshot(true)?;
        let paths = [
            ("kmem_cache_alloc", 32),
            ("sheaf slot", 32),
            ("kmalloc", 96),
        ];
        for (i, &(name, size)) in paths.iter().enumerate() {
            if i == 1 && !cfg!(rslab_sheaf) {
                continue;
            }
            let (b, a) = (before[i], after[i]);
            check!(
                a.lines > 0,
                "no /proc/allocinfo line of rslab.ko's helpers.c for the {} path",
                name
            );
            check!(
                a.calls >= b.calls + N as u64 && a.bytes >= b.bytes + (N * size) as i64,
                "{} path: {} calls, {} bytes before; {} calls, {} bytes after {} allocations",
                name,
                b.calls,
                b.bytes,
                a.calls,
                a.bytes,
                N
            );
            pr_info!(
                "rslab_allocinfo: {}: +{} calls, +{} bytes on {} line(s)\n",
                name,
                a.calls - b.calls,
                a.bytes - b.bytes,
                a.lines
            );
        }
        #[cfg(rslab_sheaf)]
        drop(slots);
        drop((objects, boxes));
        Ok(())
    }
}

// SPDX-License-Identifier: GPL-2.0

//! Load: threads and processes on own and shared files, checked against a model.

use crate::{abi, dev::*, ktap::Suite};
use std::{
    fs::{File, OpenOptions},
    io::{self, Read},
    os::fd::{AsRawFd, RawFd},
    ptr, thread,
    time::{Duration, Instant},
};

/// Touches 128 KiB of stack, so that what follows does not fault in stack pages.
#[inline(never)]
pub(crate) fn prefault_stack() {
    let mut stack = [0u8; 128 << 10];
    for i in (0..stack.len()).step_by(4096) {
        // SAFETY: `i` is within the local array.
        unsafe { ptr::write_volatile(stack.as_mut_ptr().add(i), 1) };
    }
    std::hint::black_box(&stack);
}

/// A small deterministic random number generator (xorshift64*).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What one worker saw.
#[derive(Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) ops: u64,
    pub(crate) checked: u64,
    pub(crate) mismatches: u64,
    /// Values inserted into, and entries removed from, the shared file.
    pub(crate) shared_inserted: u64,
    pub(crate) shared_removed: u64,
    /// `ENOMEM`s seen (fault injection).
    pub(crate) enomem: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, o: &Tally) {
        self.ops += o.ops;
        self.checked += o.checked;
        self.mismatches += o.mismatches;
        self.shared_inserted += o.shared_inserted;
        self.shared_removed += o.shared_removed;
        self.enomem += o.enomem;
    }

    const WORDS: usize = 6;

    pub(crate) fn to_words(self) -> [u64; Self::WORDS] {
        [
            self.ops,
            self.checked,
            self.mismatches,
            self.shared_inserted,
            self.shared_removed,
            self.enomem,
        ]
    }

    pub(crate) fn from_words(w: [u64; Self::WORDS]) -> Self {
        Self {
            ops: w[0],
            checked: w[1],
            mismatches: w[2],
            shared_inserted: w[3],
            shared_removed: w[4],
            enomem: w[5],
        }
    }
}

/// The entries one worker owns in one file, with the checks on what the driver answers.
pub(crate) struct Model {
    live: Vec<(u32, u64)>,
    /// The ID of the last insert: IDs of one file only grow.
    last_first: u32,
    /// Own file only: the ID the next insert must get (IDs are consecutive, none lost).
    expect_next: Option<u32>,
    inserted: u64,
    removed: u64,
}

impl Model {
    pub(crate) fn new(capacity: usize, expect_next: Option<u32>) -> Self {
        let mut live = Vec::with_capacity(capacity);
        // Touch every page now: the fault-injection phase must not fault in memory.
        live.resize(capacity, (0, 0));
        live.clear();
        Self {
            live,
            last_first: 0,
            expect_next,
            inserted: 0,
            removed: 0,
        }
    }
}

/// Where a worker reports a mismatch.
pub(crate) struct Checker<'a> {
    t: &'a mut Tally,
    problems: &'a mut Vec<String>,
}

impl Checker<'_> {
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.t.checked += 1;
        if !ok {
            self.t.mismatches += 1;
            if self.problems.len() < 10 {
                self.problems.push(what());
            }
        }
    }
}

/// One operation on `fd` against `m`. With `faults`, `ENOMEM` from an insert is expected
/// (and counted); any other error is a mismatch.
pub(crate) fn step(
    fd: RawFd,
    m: &mut Model,
    rng: &mut Rng,
    tag: u64,
    c: &mut Checker<'_>,
    faults: bool,
) {
    let op = rng.below(10);
    if op < 5 || m.live.is_empty() {
        if m.live.len() + abi::MAX_BATCH as usize > m.live.capacity() {
            return;
        }
        let n = if rng.below(16) == 0 {
            abi::MAX_BATCH as usize
        } else {
            1 + rng.below(64)
        };
        let mut vals = [0u64; abi::MAX_BATCH as usize];
        for (i, v) in vals[..n].iter_mut().enumerate() {
            *v = tag | (m.inserted + i as u64);
        }
        c.t.ops += 1;
        match insert(fd, &vals[..n]) {
            Ok(first) => {
                c.check(first > m.last_first, || {
                    format!(
                        "insert: first ID {first} not above the previous {}",
                        m.last_first
                    )
                });
                if let Some(next) = m.expect_next {
                    c.check(first == next, || {
                        format!("insert: first ID {first}, expected {next}")
                    });
                    m.expect_next = Some(first + n as u32);
                }
                m.last_first = first;
                for (i, &v) in vals[..n].iter().enumerate() {
                    m.live.push((first + i as u32, v));
                }
                m.inserted += n as u64;
            }
            Err(libc::ENOMEM) if faults => c.t.enomem += 1,
            Err(e) => c.check(false, || format!("insert of {n}: {}", errname(e))),
        }
    } else if op < 8 {
        let (id, v) = m.live[rng.below(m.live.len())];
        c.t.ops += 1;
        let got = get(fd, id);
        c.check(got == Ok(v), || {
            format!("get {id}: {got:?}, expected {v:#x}")
        });
    } else {
        let i = rng.below(m.live.len());
        let (id, v) = m.live.swap_remove(i);
        c.t.ops += 2;
        let got = remove(fd, id);
        c.check(got == Ok(v), || {
            format!("remove {id}: {got:?}, expected {v:#x}")
        });
        let again = get(fd, id);
        c.check(again == Err(libc::ENOENT), || {
            format!("get {id} after remove: {again:?}")
        });
        m.removed += 1;
    }
}

/// Verifies every entry of `m` in `fd`, and the file's counters when it is the worker's own.
pub(crate) fn verify(fd: RawFd, m: &Model, own: bool, c: &mut Checker<'_>) {
    for &(id, v) in &m.live {
        let got = get(fd, id);
        c.check(got == Ok(v), || {
            format!("final get {id}: {got:?}, expected {v:#x}")
        });
    }
    if own {
        match stats(fd) {
            Ok(s) => c.check(
                s.entries as usize == m.live.len()
                    && s.inserted == m.inserted
                    && s.removed == m.removed,
                || {
                    format!(
                        "stats {s:?}: model has {} live, {} in, {} out",
                        m.live.len(),
                        m.inserted,
                        m.removed
                    )
                },
            ),
            Err(e) => c.check(false, || format!("stats: {}", errname(e))),
        }
    }
}

/// A worker thread: its own file and the shared one, for `duration` (or `max_ops`).
pub(crate) fn worker(
    shared: Option<RawFd>,
    seed: u64,
    deadline: Instant,
    max_ops: u64,
    faults: bool,
) -> (Tally, Vec<String>) {
    let mut t = Tally::default();
    let mut problems = Vec::new();
    let own = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return (t, vec![format!("open {DEV}: {e}")]),
    };
    let mut rng = Rng(seed | 1);
    let tag = seed << 40;
    let mut m_own = Model::new(8192, Some(1));
    let mut m_shared = Model::new(4096, None);
    // Opened now: with the fault armed, opening a file could fail itself.
    let make_it_fail = if faults {
        match OpenOptions::new()
            .write(true)
            .open("/proc/thread-self/make-it-fail")
        {
            Ok(f) => Some(f),
            Err(e) => return (t, vec![format!("/proc/thread-self/make-it-fail: {e}")]),
        }
    } else {
        None
    };
    let arm = |on: bool| -> io::Result<()> {
        if let Some(f) = &make_it_fail {
            let v: &[u8] = if on { b"1" } else { b"0" };
            // SAFETY: `v` is a valid buffer; `f` is open for writing.
            if unsafe { libc::pwrite(f.as_raw_fd(), v.as_ptr().cast(), 1, 0) } != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // Nothing may fault in new memory while failslab is armed: a page fault that needs slab
    // memory would fail too.
    prefault_stack();
    if let Err(e) = arm(true) {
        return (t, vec![format!("arming failslab: {e}")]);
    }
    {
        let mut c = Checker {
            t: &mut t,
            problems: &mut problems,
        };
        while c.t.ops < max_ops && Instant::now() < deadline {
            match shared {
                Some(fd) if rng.below(2) == 0 => {
                    let before = (m_shared.inserted, m_shared.removed);
                    step(fd, &mut m_shared, &mut rng, tag | 1 << 39, &mut c, faults);
                    c.t.shared_inserted += m_shared.inserted - before.0;
                    c.t.shared_removed += m_shared.removed - before.1;
                }
                _ => step(own.as_raw_fd(), &mut m_own, &mut rng, tag, &mut c, faults),
            }
        }
    }
    if let Err(e) = arm(false) {
        problems.push(format!("disarming failslab: {e}"));
    }
    let mut c = Checker {
        t: &mut t,
        problems: &mut problems,
    };
    verify(own.as_raw_fd(), &m_own, true, &mut c);
    if let Some(fd) = shared {
        verify(fd, &m_shared, false, &mut c);
        // Remove what this worker put into the shared file: an ID handed out twice would come
        // back with another worker's value, or be gone.
        for &(id, v) in &m_shared.live {
            let got = remove(fd, id);
            c.check(got == Ok(v), || {
                format!("shared remove {id}: {got:?}, expected {v:#x}")
            });
            c.t.shared_removed += 1;
        }
    }
    (t, problems)
}

/// Runs `threads` workers in this process and adds up what they saw.
pub(crate) fn run_threads(
    threads: usize,
    shared: Option<RawFd>,
    seed: u64,
    duration: Duration,
    max_ops: u64,
    faults: bool,
) -> (Tally, Vec<String>) {
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let s = seed * 64 + i as u64;
            thread::spawn(move || worker(shared, s, deadline, max_ops, faults))
        })
        .collect();
    let mut total = Tally::default();
    let mut problems = Vec::new();
    for h in handles {
        match h.join() {
            Ok((t, p)) => {
                total.add(&t);
                problems.extend(p);
            }
            Err(_) => problems.push("a worker thread panicked".into()),
        }
    }
    (total, problems)
}

/// Load: `procs` processes of `threads` threads, each thread on a file of its own and all on
/// one shared file, for `secs` seconds.
pub(crate) fn case_load(suite: &mut Suite, procs: usize, threads: usize, secs: u64) {
    let mut problems = Vec::new();
    let shared = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case("load", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let start = Instant::now();
    let mut children = Vec::new();
    for p in 0..procs {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe` writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            problems.push(format!("pipe: {}", io::Error::last_os_error()));
            break;
        }
        // SAFETY: This process has one thread here; the child only runs this function's code
        // and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: `fds[0]` is the read end, unused in the child.
            unsafe { libc::close(fds[0]) };
            let (t, probs) = run_threads(
                threads,
                Some(shared.as_raw_fd()),
                1 + p as u64,
                Duration::from_secs(secs),
                u64::MAX,
                false,
            );
            let mut out = Vec::new();
            for w in t.to_words() {
                out.extend_from_slice(&w.to_le_bytes());
            }
            for pr in probs {
                out.extend_from_slice(pr.as_bytes());
                out.push(b'\n');
            }
            // SAFETY: `fds[1]` is this process's write end; `out` is a valid buffer.
            unsafe {
                libc::write(fds[1], out.as_ptr().cast(), out.len());
                libc::_exit(0);
            }
        }
        // SAFETY: `fds[1]` is the child's end.
        unsafe { libc::close(fds[1]) };
        if pid < 0 {
            problems.push(format!("fork: {}", io::Error::last_os_error()));
            // SAFETY: Ours, unused.
            unsafe { libc::close(fds[0]) };
            break;
        }
        children.push((pid, fds[0]));
    }
    let mut total = Tally::default();
    for (pid, rfd) in children {
        let mut buf = Vec::new();
        // SAFETY: `rfd` is the read end of this child's pipe, owned from here on.
        let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(rfd) };
        let _ = f.read_to_end(&mut buf);
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is valid for writes.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !libc::WIFEXITED(status)
            || libc::WEXITSTATUS(status) != 0
            || buf.len() < 8 * Tally::WORDS
        {
            problems.push(format!("worker process {pid} died (status {status:#x})"));
            continue;
        }
        let mut w = [0u64; Tally::WORDS];
        for (i, x) in w.iter_mut().enumerate() {
            *x = u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
        }
        total.add(&Tally::from_words(w));
        problems.extend(
            String::from_utf8_lossy(&buf[8 * Tally::WORDS..])
                .lines()
                .map(String::from),
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    // The shared file: every ID handed out exactly once, all removed again.
    match stats(shared.as_raw_fd()) {
        Ok(s) => {
            if s.entries != 0 {
                problems.push(format!("shared file still holds {} entries", s.entries));
            }
            if s.inserted != total.shared_inserted || s.removed != total.shared_removed {
                problems.push(format!(
                    "shared file counted {} in, {} out; the workers {} in, {} out",
                    s.inserted, s.removed, total.shared_inserted, total.shared_removed
                ));
            }
            if s.next_id != 1 + total.shared_inserted {
                problems.push(format!(
                    "shared file's next ID is {}, but {} IDs were handed out from 1",
                    s.next_id, total.shared_inserted
                ));
            }
        }
        Err(e) => problems.push(format!("shared stats: {}", errname(e))),
    }
    if total.ops == 0 || total.checked == 0 {
        problems.push("no operation ran".into());
    }
    let notes = vec![
        format!(
            "{procs} processes x {threads} threads, own files + 1 shared file, {secs} s: {} ops, {:.0} ops/s",
            total.ops,
            total.ops as f64 / elapsed
        ),
        format!(
            "{} results checked, {} mismatches; shared file: {} IDs handed out, each once, all removed",
            total.checked, total.mismatches, total.shared_inserted
        ),
    ];
    suite.case("load", notes, problems);
}

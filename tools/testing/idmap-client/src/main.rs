// SPDX-License-Identifier: GPL-2.0

//! The user-space client of `/dev/rslab_idmap`, run inside the test guest by
//! `tools/testing/runner.py`.
//!
//! ```text
//! rslab-idmap-client all --ktap FILE [--seconds N]   load, bad input, failslab, memcg
//! rslab-idmap-client forced --ktap FILE               memcg with nodes charged under the lock;
//!                                                      needs the module loaded with forced_charge=1
//! rslab-idmap-client ids --ktap FILE                  the ID space running out; needs the
//!                                                      module loaded with first_id=4294967286
//! ```
//!
//! Every case checks what it does against a model and reports a KTAP result, written to FILE
//! as a KUnit-style suite (`rslab_idmap_user`, `rslab_idmap_user_ids`), which the runner
//! parses with the kernel's `kunit.py` together with the kernel's own suites.

#[path = "../../../../samples/rslab_idmap_abi.rs"]
#[allow(dead_code)]
mod abi;

use std::{
    ffi::CString,
    fmt::Write as _,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    process::exit,
    ptr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

const DEV: &str = "/dev/rslab_idmap";
const CGROUP: &str = "/sys/fs/cgroup";
const FAILSLAB: &str = "/sys/kernel/debug/failslab";

/// The `first_id` the runner loads the module with for the `ids` command.
const IDS_FIRST: u32 = u32::MAX - 9;

// --- The device ---------------------------------------------------------------------------

/// An errno value.
type Errno = i32;

fn errno() -> Errno {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errname(e: Errno) -> String {
    match e {
        0 => "success".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::E2BIG => "E2BIG".into(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::EOVERFLOW => "EOVERFLOW".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::ENOTTY => "ENOTTY".into(),
        libc::EBADF => "EBADF".into(),
        libc::ENODEV => "ENODEV".into(),
        e => format!("errno {e}"),
    }
}

/// `ioctl(fd, cmd, arg)`.
fn ioctl_raw(fd: RawFd, cmd: u32, arg: usize) -> Result<(), Errno> {
    // SAFETY: An ioctl on any file descriptor with any argument is memory-safe for this process:
    // the kernel checks every user pointer, and the device's commands write at most the size
    // their number encodes into `arg`, which callers pass valid or deliberately invalid.
    let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn ioctl<T>(fd: RawFd, cmd: u32, arg: &mut T) -> Result<(), Errno> {
    ioctl_raw(fd, cmd, arg as *mut T as usize)
}

fn insert(fd: RawFd, values: &[u64]) -> Result<u32, Errno> {
    let mut req = abi::Insert {
        values: values.as_ptr() as u64,
        count: values.len() as u32,
        first_id: 0,
    };
    ioctl(fd, abi::IOCTL_INSERT, &mut req)?;
    Ok(req.first_id)
}

/// `IOCTL_GET` or `IOCTL_REMOVE` of `id`: the value stored under it.
fn entry(fd: RawFd, cmd: u32, id: u32) -> Result<u64, Errno> {
    let mut e = abi::Entry {
        id,
        ..Default::default()
    };
    ioctl(fd, cmd, &mut e)?;
    Ok(e.value)
}

fn get(fd: RawFd, id: u32) -> Result<u64, Errno> {
    entry(fd, abi::IOCTL_GET, id)
}

fn remove(fd: RawFd, id: u32) -> Result<u64, Errno> {
    entry(fd, abi::IOCTL_REMOVE, id)
}

fn stats(fd: RawFd) -> Result<abi::Stats, Errno> {
    let mut s = abi::Stats::default();
    ioctl(fd, abi::IOCTL_STATS, &mut s)?;
    Ok(s)
}

fn open(mode: libc::c_int) -> io::Result<File> {
    let mut o = OpenOptions::new();
    match mode {
        libc::O_RDONLY => o.read(true),
        libc::O_WRONLY => o.write(true),
        _ => o.read(true).write(true),
    };
    o.custom_flags(0).open(DEV)
}

/// The counters a failed call must leave alone (`failed` counts failures).
fn unchanged(a: &abi::Stats, b: &abi::Stats) -> bool {
    (a.entries, a.inserted, a.removed, a.next_id) == (b.entries, b.inserted, b.removed, b.next_id)
}

// --- KTAP -----------------------------------------------------------------------------------

/// The results of one suite, printed as KTAP.
struct Suite {
    name: &'static str,
    cases: Vec<(String, bool, Vec<String>)>,
}

impl Suite {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            cases: Vec::new(),
        }
    }

    /// Records case `name`: passed when `problems` is empty; `notes` are its figures.
    fn case(&mut self, name: &str, notes: Vec<String>, problems: Vec<String>) {
        let ok = problems.is_empty();
        println!("{}: {}", name, if ok { "ok" } else { "FAILED" });
        let mut lines = Vec::new();
        for n in &notes {
            println!("  {n}");
            lines.push(n.clone());
        }
        for p in problems.iter().take(20) {
            println!("  problem: {p}");
            lines.push(format!("problem: {p}"));
        }
        if problems.len() > 20 {
            lines.push(format!("problem: ... and {} more", problems.len() - 20));
        }
        self.cases.push((name.into(), ok, lines));
    }

    fn ktap(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "KTAP version 1\n1..1");
        let _ = writeln!(s, "    KTAP version 1\n    # Subtest: {}", self.name);
        let _ = writeln!(s, "    1..{}", self.cases.len());
        for (i, (name, ok, lines)) in self.cases.iter().enumerate() {
            for l in lines {
                let _ = writeln!(s, "    # {name}: {l}");
            }
            let _ = writeln!(
                s,
                "    {} {} {}",
                if *ok { "ok" } else { "not ok" },
                i + 1,
                name
            );
        }
        let all = !self.cases.is_empty() && self.cases.iter().all(|c| c.1);
        let _ = writeln!(s, "{} 1 {}", if all { "ok" } else { "not ok" }, self.name);
        s
    }
}

// --- Load -----------------------------------------------------------------------------------

/// Touches 128 KiB of stack, so that what follows does not fault in stack pages.
#[inline(never)]
fn prefault_stack() {
    let mut stack = [0u8; 128 << 10];
    for i in (0..stack.len()).step_by(4096) {
        // SAFETY: `i` is within the local array.
        unsafe { ptr::write_volatile(stack.as_mut_ptr().add(i), 1) };
    }
    std::hint::black_box(&stack);
}

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What one worker saw.
#[derive(Default, Clone, Copy)]
struct Tally {
    ops: u64,
    checked: u64,
    mismatches: u64,
    /// Values inserted into, and entries removed from, the shared file.
    shared_inserted: u64,
    shared_removed: u64,
    /// `ENOMEM`s seen (fault injection).
    enomem: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.ops += o.ops;
        self.checked += o.checked;
        self.mismatches += o.mismatches;
        self.shared_inserted += o.shared_inserted;
        self.shared_removed += o.shared_removed;
        self.enomem += o.enomem;
    }

    const WORDS: usize = 6;

    fn to_words(self) -> [u64; Self::WORDS] {
        [
            self.ops,
            self.checked,
            self.mismatches,
            self.shared_inserted,
            self.shared_removed,
            self.enomem,
        ]
    }

    fn from_words(w: [u64; Self::WORDS]) -> Self {
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
struct Model {
    live: Vec<(u32, u64)>,
    /// The ID of the last insert: IDs of one file only grow.
    last_first: u32,
    /// Own file only: the ID the next insert must get (IDs are consecutive, none lost).
    expect_next: Option<u32>,
    inserted: u64,
    removed: u64,
}

impl Model {
    fn new(capacity: usize, expect_next: Option<u32>) -> Self {
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
struct Checker<'a> {
    t: &'a mut Tally,
    problems: &'a mut Vec<String>,
}

impl Checker<'_> {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
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
fn step(fd: RawFd, m: &mut Model, rng: &mut Rng, tag: u64, c: &mut Checker<'_>, faults: bool) {
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
fn verify(fd: RawFd, m: &Model, own: bool, c: &mut Checker<'_>) {
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
fn worker(
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
fn run_threads(
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
fn case_load(suite: &mut Suite, procs: usize, threads: usize, secs: u64) {
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

// --- Fault injection --------------------------------------------------------------------------

fn read_trim(path: &str) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

/// The load on own files with failslab armed for the workers' threads only.
fn case_failslab(suite: &mut Suite, threads: usize, secs: u64) {
    const TIMES: i64 = 1_000_000;
    let mut problems = Vec::new();
    let knobs = [
        ("probability", "20"),
        ("interval", "1"),
        ("times", "1000000"),
        ("task-filter", "Y"),
        ("ignore-gfp-wait", "N"),
        ("verbose", "0"),
    ];
    let mut saved = Vec::new();
    for (k, v) in knobs {
        let path = format!("{FAILSLAB}/{k}");
        match read_trim(&path).and_then(|old| fs::write(&path, v).map(|_| old)) {
            Ok(old) => saved.push((path, old)),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    let (t, probs) = if problems.is_empty() {
        run_threads(threads, None, 100, Duration::from_secs(secs), 200_000, true)
    } else {
        (Tally::default(), vec![])
    };
    problems.extend(probs);
    let left = read_trim(&format!("{FAILSLAB}/times"))
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    for (path, old) in saved.into_iter().rev() {
        if let Err(e) = fs::write(&path, old) {
            problems.push(format!("restoring {path}: {e}"));
        }
    }
    let injected = left.map(|l| TIMES - l);
    // With kmemleak, every slab allocation also allocates kmemleak's record of it, from a slab
    // cache in the same task: failslab injects failures there too, and kmemleak falls back to
    // its reserve pool without telling anyone. Then only the driver's share of the injected
    // failures reaches user space, and which share is not visible from here.
    let kmemleak = fs::metadata("/sys/kernel/debug/kmemleak").is_ok();
    match injected {
        Some(i) if t.enomem > 0 && (i == t.enomem as i64 || kmemleak && i > t.enomem as i64) => {}
        Some(i) => problems.push(format!(
            "failslab injected {i} failures, the workers saw {} ENOMEM",
            t.enomem
        )),
        None => problems.push("cannot read failslab's remaining count".into()),
    }
    let notes = vec![
        format!(
            "{threads} threads, failslab at 20% for their tasks, {secs} s: {} ops, {} failures injected, {} ENOMEM returned{}",
            t.ops,
            injected.unwrap_or(-1),
            t.enomem,
            if kmemleak {
                " (kmemleak: its own records are injected too, and fall back to its pool)"
            } else {
                ", one per injected failure"
            }
        ),
        format!(
            "{} results checked after the faults, {} mismatches",
            t.checked, t.mismatches
        ),
    ];
    suite.case("failslab", notes, problems);
}

// --- Memory cgroup ------------------------------------------------------------------------------

/// Reads a small cgroup file with `pread` into a buffer of the caller's: no allocation.
fn pread_u64(f: &File, key: Option<&str>) -> Option<u64> {
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::pread(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n <= 0 {
        return None;
    }
    let text = std::str::from_utf8(&buf[..n as usize]).ok()?;
    match key {
        None => text.trim().parse().ok(),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok()),
    }
}

/// What the child in the cgroup reports after its first part.
#[derive(Default, Debug, Clone, Copy)]
#[repr(C)]
struct Phase1 {
    batches: u64,
    /// The errno that ended the inserts.
    end: u64,
    /// `ENOMEM`s: the one that ended the inserts and the retries after it.
    enomem: u64,
    other_errors: u64,
}

/// What the child reports after its second part.
#[derive(Default, Debug, Clone, Copy)]
#[repr(C)]
struct Phase2 {
    verified: u64,
    mismatches: u64,
    insert_after_free: u64,
}

const BATCH: usize = 64;
const MAX_BATCHES: usize = 4096;
const RETRIES_AT_LIMIT: u64 = 10;

/// Writes plain data to a pipe.
fn send<T: Copy>(fd: RawFd, v: &T) -> bool {
    let n = std::mem::size_of::<T>();
    // SAFETY: `v` is valid for reads of its size; `T` is plain data (`repr(C)` integers).
    unsafe { libc::write(fd, (v as *const T).cast(), n) == n as isize }
}

/// Reads plain data from a pipe.
fn receive<T: Copy + Default>(fd: RawFd) -> Option<T> {
    let mut v = T::default();
    let n = std::mem::size_of::<T>();
    // SAFETY: `v` is valid for writes of its size; any bytes are a valid `T` (integers).
    (unsafe { libc::read(fd, (&mut v as *mut T).cast(), n) } == n as isize).then_some(v)
}

/// The child's part, in the cgroup: insert until the limit refuses, report, wait; then verify,
/// free half, insert again, report. It allocates nothing and faults in no memory once it has
/// joined: a page fault at the limit would wake the OOM killer.
fn memcg_child(procs: &File, fd: RawFd, to_parent: RawFd, from_parent: RawFd, firsts: &mut [u32]) {
    let mut r = Phase1::default();
    let mut vals = [0u64; BATCH];
    // Sets errno once, so that its page is written before joining.
    let _ = ioctl_raw(fd, 0, 0);
    // A first write to the parent, which reads it: the pipe keeps the page for the reports
    // (a pipe page is charged when it is allocated, and at the limit that would be an OOM kill).
    send(to_parent, &0u8);
    // SAFETY: `procs` is open for writing; the buffer is valid.
    if unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
        r.other_errors = 1;
        send(to_parent, &r);
        return;
    }
    let mut n = 0;
    while n < firsts.len() {
        for (i, v) in vals.iter_mut().enumerate() {
            *v = ((n as u64) << 16) | i as u64;
        }
        match insert(fd, &vals) {
            Ok(first) => {
                firsts[n] = first;
                n += 1;
            }
            Err(e) => {
                r.end = e as u64;
                break;
            }
        }
    }
    r.batches = n as u64;
    if r.end == libc::ENOMEM as u64 {
        r.enomem = 1;
    }
    if r.enomem == 1 {
        for _ in 0..RETRIES_AT_LIMIT {
            match insert(fd, &vals) {
                Err(libc::ENOMEM) => r.enomem += 1,
                _ => r.other_errors += 1,
            }
        }
    }
    send(to_parent, &r);
    // The parent reads the cgroup's counters now.
    if receive::<u8>(from_parent).is_none() {
        return;
    }
    let mut r2 = Phase2::default();
    // Every value inserted is still there.
    for (b, &first) in firsts[..n].iter().enumerate() {
        for i in 0..BATCH {
            let want = ((b as u64) << 16) | i as u64;
            r2.verified += 1;
            if get(fd, first + i as u32) != Ok(want) {
                r2.mismatches += 1;
            }
        }
    }
    // Free half of it: the charge goes, and inserting works again.
    for &first in firsts[..n].iter().step_by(2) {
        for i in 0..BATCH as u32 {
            if remove(fd, first + i).is_err() {
                r2.mismatches += 1;
            }
        }
    }
    r2.insert_after_free = u64::from(insert(fd, &vals).is_ok());
    send(to_parent, &r2);
}

/// The lines of a cgroup's `memory.stat` that say where its charge is.
fn memory_stat(cg: &str) -> String {
    let text = fs::read_to_string(format!("{cg}/memory.stat")).unwrap_or_default();
    text.lines()
        .filter(|l| {
            [
                "anon ",
                "file ",
                "kernel ",
                "slab ",
                "slab_unreclaimable ",
                "percpu ",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The memory cgroup contract, for a child in a cgroup with a small `memory.max`.
///
/// By default the driver charges each node before its lock, where the charge can fail: at the
/// limit an insert fails with `ENOMEM`, and the cgroup never goes past `memory.max`. With the
/// module's `forced_charge=1` (`forced`), nodes are charged when taken under the lock, and the
/// kernel forces that charge: every insert succeeds (until the file's `max_entries`), past the
/// limit. Either way nothing is lost, the OOM killer never runs, and others are unaffected.
fn case_memcg(suite: &mut Suite, forced: bool) {
    let name = if forced { "memcg_forced" } else { "memcg" };
    const LIMIT: u64 = 1 << 20;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let cg = format!("{CGROUP}/rslab_idmap_memcg");
    let setup = || -> io::Result<()> {
        if fs::metadata(format!("{CGROUP}/cgroup.controllers")).is_err() {
            let src = CString::new("cgroup2").unwrap();
            let dst = CString::new(CGROUP).unwrap();
            // SAFETY: The strings are NUL-terminated; no data argument.
            if unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, ptr::null()) } != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        fs::write(format!("{CGROUP}/cgroup.subtree_control"), "+memory")?;
        let _ = fs::remove_dir(&cg);
        fs::create_dir(&cg)?;
        fs::write(format!("{cg}/memory.max"), LIMIT.to_string())?;
        Ok(())
    };
    if let Err(e) = setup() {
        return suite.case(name, notes, vec![format!("setting up {cg}: {e}")]);
    }
    let files = (|| -> io::Result<_> {
        Ok((
            OpenOptions::new()
                .write(true)
                .open(format!("{cg}/cgroup.procs"))?,
            File::open(format!("{cg}/memory.current"))?,
            File::open(format!("{cg}/memory.events"))?,
        ))
    })();
    let (procs, current, events) = match files {
        Ok(f) => f,
        Err(e) => return suite.case(name, notes, vec![format!("{cg}: {e}")]),
    };
    let dev = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case(name, notes, vec![format!("open {DEV}: {e}")]),
    };
    let mut firsts = vec![0u32; MAX_BATCHES];
    let (mut up, mut down) = ([0; 2], [0; 2]);
    // SAFETY: Each array has room for two descriptors.
    if unsafe { libc::pipe(up.as_mut_ptr()) } != 0 || unsafe { libc::pipe(down.as_mut_ptr()) } != 0
    {
        return suite.case(
            "memcg",
            notes,
            vec![format!("pipe: {}", io::Error::last_os_error())],
        );
    }
    let before = pread_u64(&current, None).unwrap_or(0);
    // SAFETY: One thread here; the child runs `memcg_child` and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Touch the buffer the child writes into and the stack, then lock every page of the
        // process in memory, before joining: a page fault in the cgroup at its limit (a page
        // of this program's text not read yet, say) would wake the OOM killer.
        firsts.fill(1);
        prefault_stack();
        // SAFETY: No pointer arguments.
        if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
            // SAFETY: Leaves the child; the parent sees no report.
            unsafe { libc::_exit(1) };
        }
        memcg_child(&procs, dev.as_raw_fd(), up[1], down[0], &mut firsts);
        // SAFETY: Leaves the child without running anything of the parent's.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: The child's ends.
    unsafe {
        libc::close(up[1]);
        libc::close(down[0]);
    }
    if pid < 0 {
        return suite.case(
            "memcg",
            notes,
            vec![format!("fork: {}", io::Error::last_os_error())],
        );
    }
    let ready = receive::<u8>(up[0]);
    let r1 = receive::<Phase1>(up[0]).unwrap_or_default();
    let usage = pread_u64(&current, None).unwrap_or(0);
    let stat = memory_stat(&cg);
    send(down[1], &1u8);
    let r2 = receive::<Phase2>(up[0]).unwrap_or_default();
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for writes.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(up[0]);
        libc::close(down[1]);
    }
    drop(dev);
    let oom = pread_u64(&events, Some("oom")).unwrap_or(u64::MAX);
    let oom_kill = pread_u64(&events, Some("oom_kill")).unwrap_or(u64::MAX);
    let max_events = pread_u64(&events, Some("max")).unwrap_or(0);
    let after_close = pread_u64(&current, None).unwrap_or(u64::MAX);
    // What the nodes were charged is gone; `memory.current` still counts the per-CPU charge
    // stock (up to 64 pages per CPU) until it is drained.
    let slab_after_close = fs::read_to_string(format!("{cg}/memory.stat"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("slab "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(u64::MAX);

    // Outside the cgroup, the device works as before.
    let outside = open(libc::O_RDWR)
        .map_err(|e| e.raw_os_error().unwrap_or(0))
        .and_then(|f| {
            let vals = [7u64; BATCH];
            for _ in 0..64 {
                insert(f.as_raw_fd(), &vals)?;
            }
            get(f.as_raw_fd(), 1)
        });

    let nodes = r1.batches * BATCH as u64;
    let over = usage.saturating_sub(LIMIT);
    notes.push(format!(
        "memory.max {LIMIT} B: {} batches of {BATCH} inserted ({nodes} nodes), ended by {}, then {} of {} inserts ENOMEM",
        r1.batches,
        errname(r1.end as Errno),
        r1.enomem,
        RETRIES_AT_LIMIT + 1
    ));
    notes.push(format!(
        "usage {before} B before, {usage} B after: {over} B past memory.max ({}); memory.events: max {max_events}, oom {oom}, oom_kill {oom_kill}",
        if forced {
            "nodes charged under the lock, forced"
        } else {
            "nodes charged before the lock, refused at the limit"
        }
    ));
    notes.push(format!("memory.stat: {stat}"));
    notes.push(format!(
        "{} values verified, {} mismatches; after freeing half, an insert {}; after close: slab {slab_after_close} B, usage {after_close} B (per-CPU charge stock); outside the cgroup: {}",
        r2.verified,
        r2.mismatches,
        if r2.insert_after_free == 1 { "succeeded" } else { "FAILED" },
        if outside == Ok(7) { "64 inserts ok" } else { "FAILED" }
    ));
    if ready.is_none() || !libc::WIFEXITED(status) {
        problems.push(format!(
            "the child in the cgroup was killed (status {status:#x})"
        ));
    }
    if r1.other_errors != 0 {
        problems.push(format!(
            "{} errors other than ENOMEM at the limit",
            r1.other_errors
        ));
    }
    if r1.batches == 0 {
        problems.push("no insert succeeded".into());
    }
    if forced {
        // Charged under the lock: forced past the limit, never refused by it.
        if r1.end != libc::ENOSPC as u64 {
            problems.push(format!(
                "inserts ended by {}, not by max_entries",
                errname(r1.end as Errno)
            ));
        }
        if over == 0 {
            problems.push(format!(
                "usage {usage} B: no node was charged past the limit"
            ));
        }
    } else {
        // Charged before the lock: refused at the limit, never past it.
        if r1.enomem != RETRIES_AT_LIMIT + 1 {
            problems.push(format!(
                "{} of {} inserts at the limit were ENOMEM",
                r1.enomem,
                RETRIES_AT_LIMIT + 1
            ));
        }
        if over != 0 {
            problems.push(format!("usage {usage} B: {over} B past memory.max"));
        }
    }
    if r2.mismatches != 0 || r2.verified != nodes {
        problems.push(format!("{} of {} values wrong", r2.mismatches, r2.verified));
    }
    if r2.insert_after_free != 1 {
        problems.push("inserting after freeing half did not work".into());
    }
    if oom != 0 || oom_kill != 0 {
        problems.push(format!(
            "the cgroup's OOM killer ran: oom {oom}, oom_kill {oom_kill}"
        ));
    }
    if slab_after_close > LIMIT / 16 {
        problems.push(format!(
            "{slab_after_close} B of slab still charged after the file was closed"
        ));
    }
    if outside != Ok(7) {
        problems.push(format!("inserting outside the cgroup: {outside:?}"));
    }
    let _ = fs::remove_dir(&cg);
    suite.case(name, notes, problems);
}

// --- Bad input ----------------------------------------------------------------------------------

/// An anonymous mapping of `pages` pages, unmapped on drop.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(pages: usize, prot: libc::c_int) -> Self {
        let len = pages * 4096;
        // SAFETY: An anonymous private mapping at an address of the kernel's choosing.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(
            addr != libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        Self {
            addr: addr.cast(),
            len,
        }
    }

    fn at(&self, off: usize) -> *mut u8 {
        self.addr.wrapping_add(off)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: Our own mapping (munmap of a partly unmapped range is fine).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// The rows of the bad-input table and what went wrong.
struct Table {
    rows: usize,
    problems: Vec<String>,
}

impl Table {
    /// Row `name`: the call gave `got`, it must give `want`; with `before`, `fd`'s counters
    /// must not have changed.
    fn expect(
        &mut self,
        name: &str,
        got: Result<(), Errno>,
        want: Errno,
        fd: RawFd,
        before: Option<abi::Stats>,
    ) {
        self.rows += 1;
        let got = got.err().unwrap_or(0);
        if got != want {
            self.problems.push(format!(
                "{name}: {}, expected {}",
                errname(got),
                errname(want)
            ));
        }
        if let Some(b) = before {
            match stats(fd) {
                Ok(a) if unchanged(&a, &b) => {}
                Ok(a) => self
                    .problems
                    .push(format!("{name}: the map changed: {b:?} -> {a:?}")),
                Err(e) => self.problems.push(format!("{name}: stats: {}", errname(e))),
            }
        }
    }
}

/// The table of malformed calls: each must get its errno and change nothing.
fn case_bad_input(suite: &mut Suite) {
    let mut t = Table {
        rows: 0,
        problems: Vec::new(),
    };
    let rw = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case("bad_input", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let fd = rw.as_raw_fd();
    let seed = [11u64, 22, 33];
    let first = insert(fd, &seed).unwrap_or(0);
    let st = |fd| stats(fd).ok();
    let vals = [1u64, 2, 3, 4];
    let req = |values: *const u64, count: u32| abi::Insert {
        values: values as u64,
        count,
        first_id: 0,
    };

    // INSERT.
    let b = st(fd);
    t.expect(
        "insert, argument NULL",
        ioctl_raw(fd, abi::IOCTL_INSERT, 0),
        libc::EFAULT,
        fd,
        b,
    );
    t.expect(
        "insert, argument unmapped",
        ioctl_raw(fd, abi::IOCTL_INSERT, 0x1000),
        libc::EFAULT,
        fd,
        b,
    );
    t.expect(
        "insert, count 0",
        ioctl(fd, abi::IOCTL_INSERT, &mut req(vals.as_ptr(), 0)),
        libc::EINVAL,
        fd,
        b,
    );
    t.expect(
        "insert, count MAX_BATCH + 1",
        ioctl(
            fd,
            abi::IOCTL_INSERT,
            &mut req(vals.as_ptr(), abi::MAX_BATCH + 1),
        ),
        libc::E2BIG,
        fd,
        b,
    );
    t.expect(
        "insert, count u32::MAX",
        ioctl(fd, abi::IOCTL_INSERT, &mut req(vals.as_ptr(), u32::MAX)),
        libc::E2BIG,
        fd,
        b,
    );
    t.expect(
        "insert, values NULL",
        ioctl(fd, abi::IOCTL_INSERT, &mut req(ptr::null(), 4)),
        libc::EFAULT,
        fd,
        b,
    );
    t.expect(
        "insert, values in kernel space",
        ioctl(
            fd,
            abi::IOCTL_INSERT,
            &mut req(0xffff_8000_0000_0000usize as *const u64, 4),
        ),
        libc::EFAULT,
        fd,
        b,
    );
    {
        let m = Mapping::new(2, libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: The second page of our own mapping.
        unsafe { libc::munmap(m.at(4096).cast(), 4096) };
        // Two values at the end of the first page, two beyond it.
        let p = m.at(4096 - 16) as *const u64;
        t.expect(
            "insert, values run into an unmapped page",
            ioctl(fd, abi::IOCTL_INSERT, &mut req(p, 4)),
            libc::EFAULT,
            fd,
            b,
        );
    }
    {
        let m = Mapping::new(1, libc::PROT_READ | libc::PROT_WRITE);
        let p = m.at(0) as *mut abi::Insert;
        // SAFETY: `p` is in our writable mapping, aligned.
        unsafe { p.write(req(vals.as_ptr(), 4)) };
        // SAFETY: Our mapping.
        unsafe { libc::mprotect(m.addr.cast(), m.len, libc::PROT_READ) };
        t.expect(
            "insert, request in a read-only page (no room for the answer)",
            ioctl_raw(fd, abi::IOCTL_INSERT, p as usize),
            libc::EFAULT,
            fd,
            b,
        );
    }
    {
        let ro = open(libc::O_RDONLY);
        match ro {
            Ok(ro) => {
                let r = ro.as_raw_fd();
                let b = st(r);
                t.expect(
                    "insert, file open read-only",
                    ioctl(r, abi::IOCTL_INSERT, &mut req(vals.as_ptr(), 4)),
                    libc::EBADF,
                    r,
                    b,
                );
                t.expect(
                    "remove, file open read-only",
                    remove(r, 1).map(|_| ()),
                    libc::EBADF,
                    r,
                    b,
                );
                t.expect(
                    "get, file open read-only",
                    get(r, 1).map(|_| ()),
                    libc::ENOENT,
                    r,
                    b,
                );
            }
            Err(e) => t.problems.push(format!("open read-only: {e}")),
        }
        match open(libc::O_WRONLY) {
            Ok(wo) => {
                let w = wo.as_raw_fd();
                t.expect(
                    "get, file open write-only",
                    get(w, 1).map(|_| ()),
                    libc::EBADF,
                    w,
                    None,
                );
                t.expect(
                    "stats, file open write-only",
                    stats(w).map(|_| ()),
                    libc::EBADF,
                    w,
                    None,
                );
            }
            Err(e) => t.problems.push(format!("open write-only: {e}")),
        }
    }

    // GET, REMOVE, STATS.
    let b = st(fd);
    t.expect(
        "get, unknown ID",
        get(fd, first + 100).map(|_| ()),
        libc::ENOENT,
        fd,
        b,
    );
    t.expect("get, ID 0", get(fd, 0).map(|_| ()), libc::ENOENT, fd, b);
    let mut e = abi::Entry {
        id: first,
        flags: 1,
        value: 0,
    };
    t.expect(
        "get, flags not 0",
        ioctl(fd, abi::IOCTL_GET, &mut e),
        libc::EINVAL,
        fd,
        b,
    );
    t.expect(
        "remove, flags not 0",
        ioctl(fd, abi::IOCTL_REMOVE, &mut e),
        libc::EINVAL,
        fd,
        b,
    );
    t.expect(
        "get, argument NULL",
        ioctl_raw(fd, abi::IOCTL_GET, 0),
        libc::EFAULT,
        fd,
        b,
    );
    t.expect(
        "remove, argument NULL",
        ioctl_raw(fd, abi::IOCTL_REMOVE, 0),
        libc::EFAULT,
        fd,
        b,
    );
    t.expect(
        "remove, unknown ID",
        remove(fd, first + 100).map(|_| ()),
        libc::ENOENT,
        fd,
        b,
    );
    t.expect(
        "stats, argument NULL",
        ioctl_raw(fd, abi::IOCTL_STATS, 0),
        libc::EFAULT,
        fd,
        b,
    );
    {
        let m = Mapping::new(1, libc::PROT_READ | libc::PROT_WRITE);
        let p = m.at(0) as *mut abi::Entry;
        // SAFETY: In our writable mapping, aligned.
        unsafe {
            p.write(abi::Entry {
                id: first + 1,
                flags: 0,
                value: 0,
            })
        };
        // SAFETY: Our mapping.
        unsafe { libc::mprotect(m.addr.cast(), m.len, libc::PROT_READ) };
        t.expect(
            "remove, entry in a read-only page (no room for the value)",
            ioctl_raw(fd, abi::IOCTL_REMOVE, p as usize),
            libc::EFAULT,
            fd,
            b,
        );
        t.expect(
            "get, entry in a read-only page",
            ioctl_raw(fd, abi::IOCTL_GET, p as usize),
            libc::EFAULT,
            fd,
            b,
        );
    }
    t.rows += 1;
    if get(fd, first + 1) != Ok(22) {
        t.problems
            .push("the entry a failed remove touched is gone".into());
    }
    let ok_remove = remove(fd, first);
    t.expect(
        "remove, twice",
        remove(fd, first).map(|_| ()),
        libc::ENOENT,
        fd,
        None,
    );
    if ok_remove != Ok(11) {
        t.problems.push(format!("first remove: {ok_remove:?}"));
    }

    // Unknown commands.
    let b = st(fd);
    let ioc = |dir: u32, ty: u32, nr: u32, size: u32| dir << 30 | size << 16 | ty << 8 | nr;
    t.expect(
        "unknown ioctl number",
        ioctl_raw(fd, ioc(3, 0xb5, 9, 16), 0),
        libc::ENOTTY,
        fd,
        b,
    );
    t.expect(
        "INSERT's number with another size",
        ioctl_raw(fd, ioc(3, 0xb5, 1, 8), 0),
        libc::ENOTTY,
        fd,
        b,
    );
    t.expect(
        "INSERT's number with no direction",
        ioctl_raw(fd, ioc(0, 0xb5, 1, 0), 0),
        libc::ENOTTY,
        fd,
        b,
    );
    t.expect(
        "INSERT's number with another type",
        ioctl_raw(fd, ioc(3, 0xb6, 1, 16), 0),
        libc::ENOTTY,
        fd,
        b,
    );
    t.expect("ioctl 0", ioctl_raw(fd, 0, 0), libc::ENOTTY, fd, b);

    // Not ioctls.
    let mut byte = [0u8; 8];
    // SAFETY: Our buffer.
    let rd = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 8) };
    t.expect(
        "read()",
        if rd < 0 { Err(errno()) } else { Ok(()) },
        libc::EINVAL,
        fd,
        b,
    );
    // SAFETY: Our buffer.
    let wr = unsafe { libc::write(fd, byte.as_ptr().cast(), 8) };
    t.expect(
        "write()",
        if wr < 0 { Err(errno()) } else { Ok(()) },
        libc::EINVAL,
        fd,
        b,
    );
    // SAFETY: A shared mapping request of the device; checked for failure below.
    let mm = unsafe {
        libc::mmap(
            ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    t.expect(
        "mmap()",
        if mm == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(())
        },
        libc::ENODEV,
        fd,
        b,
    );

    // Files are separate maps.
    match open(libc::O_RDWR) {
        Ok(other) => {
            let o = other.as_raw_fd();
            let ob = st(o);
            t.expect(
                "another file: get of this file's ID",
                get(o, first + 1).map(|_| ()),
                libc::ENOENT,
                o,
                ob,
            );
            t.expect(
                "another file: remove of this file's ID",
                remove(o, first + 1).map(|_| ()),
                libc::ENOENT,
                o,
                ob,
            );
            t.rows += 1;
            if get(fd, first + 1) != Ok(22) {
                t.problems
                    .push("another file's remove reached this file's entry".into());
            }
        }
        Err(e) => t.problems.push(format!("open: {e}")),
    }

    // The per-file limit.
    match open(libc::O_RDWR) {
        Ok(full) => {
            let f = full.as_raw_fd();
            let limit = stats(f).map(|s| s.max_entries).unwrap_or(0);
            let batch = [5u64; abi::MAX_BATCH as usize];
            let mut n = 0u32;
            let mut err = None;
            while n + abi::MAX_BATCH <= limit {
                if let Err(e) = insert(f, &batch) {
                    err = Some(e);
                    break;
                }
                n += abi::MAX_BATCH;
            }
            while err.is_none() && n < limit {
                if let Err(e) = insert(f, &batch[..1]) {
                    err = Some(e);
                }
                n += 1;
            }
            if let Some(e) = err {
                t.problems
                    .push(format!("filling to max_entries {limit}: {}", errname(e)));
            }
            let b = st(f);
            t.expect(
                "insert, one entry beyond max_entries",
                insert(f, &batch[..1]).map(|_| ()),
                libc::ENOSPC,
                f,
                b,
            );
            t.expect(
                "insert, a batch beyond max_entries",
                insert(f, &batch).map(|_| ()),
                libc::ENOSPC,
                f,
                b,
            );
            t.rows += 1;
            if remove(f, 1).is_err() || insert(f, &batch[..1]).is_err() {
                t.problems
                    .push("after a remove, a full file took no insert".into());
            }
        }
        Err(e) => t.problems.push(format!("open: {e}")),
    }

    // A closed file, and a file closed while another thread uses it.
    let closed = open(libc::O_RDWR).map(|f| f.as_raw_fd());
    if let Ok(c) = closed {
        t.expect(
            "ioctl on a closed file",
            stats(c).map(|_| ()),
            libc::EBADF,
            c,
            None,
        );
    }
    match open(libc::O_RDWR) {
        Ok(f) => {
            let cfd = f.as_raw_fd();
            std::mem::forget(f);
            let stop = Arc::new(AtomicBool::new(false));
            let s2 = stop.clone();
            let user = thread::spawn(move || {
                let (mut ok, mut ebadf, mut other) = (0u64, 0u64, 0u64);
                let v = [9u64];
                while !s2.load(Ordering::Relaxed) {
                    match insert(cfd, &v).and_then(|id| get(cfd, id).and(remove(cfd, id))) {
                        Ok(9) => ok += 1,
                        Err(libc::EBADF) => ebadf += 1,
                        _ => other += 1,
                    }
                }
                (ok, ebadf, other)
            });
            thread::sleep(Duration::from_millis(200));
            // SAFETY: `cfd` is ours (forgotten above); the other thread only passes it to
            // ioctl, which answers EBADF once it is closed.
            unsafe { libc::close(cfd) };
            thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
            t.rows += 1;
            match user.join() {
                Ok((ok, ebadf, other)) => {
                    if other != 0 || ok == 0 || ebadf == 0 {
                        t.problems.push(format!(
                            "concurrent close: {ok} ok, {ebadf} EBADF, {other} other results"
                        ));
                    }
                }
                Err(_) => t
                    .problems
                    .push("concurrent close: the thread panicked".into()),
            }
        }
        Err(e) => t.problems.push(format!("open: {e}")),
    }
    drop(rw);
    let notes = vec![format!(
        "{} malformed or misdirected calls, each with its errno and nothing changed",
        t.rows
    )];
    suite.case("bad_input", notes, t.problems);
}

// --- Unloading -----------------------------------------------------------------------------------

/// The module behind `/dev/rslab_idmap`.
const MODULE: &str = "rslab_idmap";

/// The module's reference count.
fn module_refcnt() -> io::Result<u64> {
    read_trim(&format!("/sys/module/{MODULE}/refcnt"))?
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `rmmod` with a file open: refused ("in use"), and the file keeps working. An open file holds
/// one reference to the module, which goes when the file is closed.
fn case_unload_busy(suite: &mut Suite) {
    let mut problems = Vec::new();
    let before = match module_refcnt() {
        Ok(n) => n,
        Err(e) => return suite.case("unload_busy", vec![], vec![format!("{MODULE} refcnt: {e}")]),
    };
    let f = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case("unload_busy", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let fd = f.as_raw_fd();
    let vals = [1u64, 2, 3, 4, 5, 6, 7, 8];
    let first = insert(fd, &vals);
    if first.is_err() {
        problems.push(format!("insert: {first:?}"));
    }
    let open_refs = module_refcnt().unwrap_or(0);
    let mut rmmod_note = String::from("rmmod not tried");
    if open_refs != before + 1 {
        // Unloading now would free the module under this file: the next call on it would
        // oops. Fail without trying.
        problems.push(format!(
            "refcnt {before} before open, {open_refs} with a file open: the file does not keep \
             the module loaded (rmmod not tried: it would unload the module under the file)"
        ));
    } else {
        match std::process::Command::new("rmmod").arg(MODULE).output() {
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                rmmod_note = format!("rmmod {MODULE}: exit {:?}, \"{err}\"", out.status.code());
                if out.status.success() {
                    problems.push(format!("rmmod {MODULE} succeeded with a file open"));
                } else if !err.contains("in use") {
                    problems.push(format!("rmmod {MODULE} failed, but not as in use: {err}"));
                }
            }
            Err(e) => problems.push(format!("running rmmod: {e}")),
        }
    }
    if fs::metadata(format!("/sys/module/{MODULE}")).is_err() {
        problems.push(format!("{MODULE} is gone with a file open"));
    } else if let Ok(first) = first {
        // The file keeps working.
        for (i, &v) in vals.iter().enumerate() {
            let got = get(fd, first + i as u32);
            if got != Ok(v) {
                problems.push(format!("get {}: {got:?}, expected {v}", first + i as u32));
            }
        }
        let more = insert(fd, &[9]);
        if more != Ok(first + 8) {
            problems.push(format!("insert after rmmod: {more:?}"));
        }
        match stats(fd) {
            Ok(s) if s.entries == 9 => {}
            s => problems.push(format!("stats after rmmod: {s:?}")),
        }
    }
    drop(f);
    let after = module_refcnt().map_err(|e| e.to_string());
    if after != Ok(before) {
        problems.push(format!(
            "refcnt {after:?} after close, {before} before open"
        ));
    }
    let notes = vec![
        format!(
            "refcnt {before} before open, {open_refs} with the file open, {} after close",
            after.map_or_else(|e| e, |n| n.to_string())
        ),
        format!("{rmmod_note}; then the file's 8 entries read back and one more inserted"),
    ];
    suite.case("unload_busy", notes, problems);
}

// --- ID space -----------------------------------------------------------------------------------

/// With the module loaded with `first_id=IDS_FIRST`: the ID space runs out with `EOVERFLOW`,
/// changing nothing.
fn case_id_space(suite: &mut Suite) {
    let mut problems = Vec::new();
    let f = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case("id_space", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let fd = f.as_raw_fd();
    let mut check = |what: &str, ok: bool| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    let s = stats(fd);
    check(
        "next ID starts at first_id",
        matches!(s, Ok(s) if s.next_id == IDS_FIRST as u64),
    );
    check("8 IDs of 10", insert(fd, &[1; 8]) == Ok(IDS_FIRST));
    let before = stats(fd).ok();
    check(
        "3 more: EOVERFLOW",
        insert(fd, &[2; 3]) == Err(libc::EOVERFLOW),
    );
    check(
        "nothing changed",
        matches!((before, stats(fd)), (Some(b), Ok(a)) if unchanged(&a, &b)),
    );
    check("the last 2", insert(fd, &[3, 4]) == Ok(u32::MAX - 1));
    check("u32::MAX holds its value", get(fd, u32::MAX) == Ok(4));
    check(
        "one more: EOVERFLOW",
        insert(fd, &[5]) == Err(libc::EOVERFLOW),
    );
    check(
        "next ID is 1 << 32",
        matches!(stats(fd), Ok(s) if s.next_id == 1 << 32 && s.entries == 10),
    );
    check("removing still works", remove(fd, IDS_FIRST) == Ok(1));
    check(
        "a removed ID is not handed out again",
        insert(fd, &[6]) == Err(libc::EOVERFLOW),
    );
    let other = open(libc::O_RDWR)
        .map_err(|_| 0)
        .and_then(|o| insert(o.as_raw_fd(), &[7]));
    check("another file has IDs of its own", other == Ok(IDS_FIRST));
    let notes = vec![format!(
        "first_id {IDS_FIRST}: 10 IDs handed out up to u32::MAX, then EOVERFLOW twice with nothing changed"
    )];
    suite.case("id_space", notes, problems);
}

// --- Cost per call -------------------------------------------------------------------------------

/// `GET`, `INSERT` (one value) and `REMOVE` per second on one file holding about `entries`
/// entries, from `rounds` rounds of `k` inserts and `k` removes and `gets` lookups each.
fn bench_at(entries: u32, k: u32, rounds: u32, gets: u32) -> Result<[f64; 3], String> {
    let f = open(libc::O_RDWR).map_err(|e| format!("open {DEV}: {e}"))?;
    let fd = f.as_raw_fd();
    let batch: Vec<u64> = (0..abi::MAX_BATCH as u64).collect();
    // Filled to `entries - k`; each round inserts `k` more and removes them again.
    let base = entries - k;
    let mut n = 0;
    while n < base {
        let c = (base - n).min(abi::MAX_BATCH);
        insert(fd, &batch[..c as usize]).map_err(|e| format!("fill: {}", errname(e)))?;
        n += c;
    }
    let mut rng = Rng(0x1234_5678);
    let (mut t_get, mut t_ins, mut t_rem) = (0f64, 0f64, 0f64);
    let mut ids = Vec::with_capacity(k as usize);
    for _ in 0..rounds {
        ids.clear();
        let t = Instant::now();
        for i in 0..k {
            ids.push(insert(fd, &[u64::from(i)]).map_err(|e| format!("insert: {}", errname(e)))?);
        }
        t_ins += t.elapsed().as_secs_f64();
        // Lookups of entries that exist, at `entries` entries, in random order.
        let t = Instant::now();
        for _ in 0..gets {
            let id = 1 + rng.below(base as usize) as u32;
            get(fd, id).map_err(|e| format!("get {id}: {}", errname(e)))?;
        }
        t_get += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for &id in &ids {
            remove(fd, id).map_err(|e| format!("remove {id}: {}", errname(e)))?;
        }
        t_rem += t.elapsed().as_secs_f64();
    }
    let per = |count: u32, secs: f64| f64::from(count) * f64::from(rounds) / secs;
    Ok([per(gets, t_get), per(k, t_ins), per(k, t_rem)])
}

/// The cost of `GET`, `INSERT` and `REMOVE` at 64 and at 65,536 entries (the default
/// `max_entries`): calls per second, and nanoseconds per call (under QEMU's `-icount shift=0`,
/// one nanosecond of guest time is one instruction).
fn case_bench(suite: &mut Suite) {
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    for (entries, k) in [(64, 32), (65536, 4096)] {
        // About as many calls of each kind at both sizes.
        let rounds = 131072 / k;
        match bench_at(entries, k, rounds, 2 * k) {
            Ok([g, i, r]) => notes.push(format!(
                "{entries} entries: GET {g:.0}/s ({:.0} ns), INSERT {i:.0}/s ({:.0} ns), REMOVE {r:.0}/s ({:.0} ns)",
                1e9 / g,
                1e9 / i,
                1e9 / r
            )),
            Err(e) => problems.push(format!("{entries} entries: {e}")),
        }
    }
    suite.case("bench", notes, problems);
}

// --- main ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: {} all|ids --ktap FILE [--seconds N]", args[0]);
        exit(2)
    };
    if args.len() < 2 {
        usage();
    }
    let mut ktap = None;
    let mut secs = 4;
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--ktap" if i + 1 < args.len() => ktap = Some(args[i + 1].clone()),
            "--seconds" if i + 1 < args.len() => {
                secs = args[i + 1].parse().unwrap_or_else(|_| usage())
            }
            _ => usage(),
        }
        i += 2;
    }
    let suite = match args[1].as_str() {
        "all" => {
            let mut s = Suite::new("rslab_idmap_user");
            case_bad_input(&mut s);
            case_load(&mut s, 2, 2, secs);
            case_failslab(&mut s, 2, secs.div_ceil(2));
            case_memcg(&mut s, false);
            case_unload_busy(&mut s);
            s
        }
        "memcg" => {
            let mut s = Suite::new("rslab_idmap_user");
            case_memcg(&mut s, false);
            s
        }
        "forced" => {
            let mut s = Suite::new("rslab_idmap_user_forced");
            case_memcg(&mut s, true);
            s
        }
        "bench" => {
            let mut s = Suite::new("rslab_idmap_user_bench");
            case_bench(&mut s);
            s
        }
        "ids" => {
            let mut s = Suite::new("rslab_idmap_user_ids");
            case_id_space(&mut s);
            s
        }
        _ => usage(),
    };
    let text = suite.ktap();
    match ktap {
        Some(path) => {
            if let Err(e) = fs::write(&path, &text) {
                eprintln!("{path}: {e}");
                exit(1);
            }
        }
        None => print!("{text}"),
    }
    let _ = io::stdout().flush();
    exit(if suite.cases.iter().all(|c| c.1) {
        0
    } else {
        1
    });
}

// SPDX-License-Identifier: GPL-2.0

//! Bad input: malformed and misdirected calls, each with its errno and nothing changed.

use crate::{abi, dev::*, ktap::Suite};
use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    ptr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

/// An anonymous mapping of `pages` pages, unmapped on drop.
pub(crate) struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    pub(crate) fn new(pages: usize, prot: libc::c_int) -> Self {
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

    pub(crate) fn at(&self, off: usize) -> *mut u8 {
        self.addr.wrapping_add(off)
    }

    /// Unmaps page `i` of the mapping.
    fn unmap_page(&self, i: usize) {
        // SAFETY: A page of our own mapping, which nothing references.
        unsafe { libc::munmap(self.at(i * 4096).cast(), 4096) };
    }

    /// Makes the mapping read-only.
    fn read_only(&self) {
        // SAFETY: Our own mapping.
        unsafe { libc::mprotect(self.addr.cast(), self.len, libc::PROT_READ) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: Our own mapping (munmap of a partly unmapped range is fine).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

/// The files a row may call, and the ID of the first of three entries of `rw` (11, 22, 33).
struct Files {
    rw: RawFd,
    ro: RawFd,
    wo: RawFd,
    first: u32,
}

/// The file a row calls: its counters must not change (a write-only file's cannot be read).
#[derive(Clone, Copy)]
enum On {
    Rw,
    Ro,
    Wo,
}

/// One malformed or misdirected call and the errno it must get.
struct Row {
    name: &'static str,
    on: On,
    want: Errno,
    call: fn(&Files) -> Result<(), Errno>,
}

const VALS: [u64; 4] = [1, 2, 3, 4];
const RW: libc::c_int = libc::PROT_READ | libc::PROT_WRITE;

/// An `INSERT` request.
fn req(values: *const u64, count: u32) -> abi::Insert {
    abi::Insert {
        values: values as u64,
        count,
        first_id: 0,
    }
}

/// An ioctl number in the generic encoding.
const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    dir << 30 | size << 16 | ty << 8 | nr
}

/// `cmd` with an [`abi::Entry`] for `id` in a read-only page: no room for the answer.
fn read_only_entry(fd: RawFd, cmd: u32, id: u32) -> Result<(), Errno> {
    let m = Mapping::new(1, RW);
    let p = m.at(0) as *mut abi::Entry;
    // SAFETY: In our writable mapping, aligned.
    unsafe {
        p.write(abi::Entry {
            id,
            ..Default::default()
        })
    };
    m.read_only();
    ioctl_raw(fd, cmd, p as usize)
}

/// `cmd` with an [`abi::Entry`] for `id` whose reserved `flags` is not 0.
fn flagged_entry(fd: RawFd, cmd: u32, id: u32) -> Result<(), Errno> {
    let mut e = abi::Entry {
        id,
        flags: 1,
        value: 0,
    };
    ioctl(fd, cmd, &mut e)
}

/// The result of a `read`, `write` or `mmap` return value: `Err(errno)` if it failed.
fn check(failed: bool) -> Result<(), Errno> {
    if failed {
        Err(errno())
    } else {
        Ok(())
    }
}

static ROWS: &[Row] = &[
    // INSERT.
    Row {
        name: "insert, argument NULL",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| ioctl_raw(f.rw, abi::IOCTL_INSERT, 0),
    },
    Row {
        name: "insert, argument unmapped",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| ioctl_raw(f.rw, abi::IOCTL_INSERT, 0x1000),
    },
    Row {
        name: "insert, count 0",
        on: On::Rw,
        want: libc::EINVAL,
        call: |f| ioctl(f.rw, abi::IOCTL_INSERT, &mut req(VALS.as_ptr(), 0)),
    },
    Row {
        name: "insert, count MAX_BATCH + 1",
        on: On::Rw,
        want: libc::E2BIG,
        call: |f| {
            let mut r = req(VALS.as_ptr(), abi::MAX_BATCH + 1);
            ioctl(f.rw, abi::IOCTL_INSERT, &mut r)
        },
    },
    Row {
        name: "insert, count u32::MAX",
        on: On::Rw,
        want: libc::E2BIG,
        call: |f| ioctl(f.rw, abi::IOCTL_INSERT, &mut req(VALS.as_ptr(), u32::MAX)),
    },
    Row {
        name: "insert, values NULL",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| ioctl(f.rw, abi::IOCTL_INSERT, &mut req(ptr::null(), 4)),
    },
    Row {
        name: "insert, values in kernel space",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| {
            let mut r = req(0xffff_8000_0000_0000usize as *const u64, 4);
            ioctl(f.rw, abi::IOCTL_INSERT, &mut r)
        },
    },
    Row {
        name: "insert, values run into an unmapped page",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| {
            let m = Mapping::new(2, RW);
            m.unmap_page(1);
            // Two values at the end of the first page, two beyond it.
            let mut r = req(m.at(4096 - 16) as *const u64, 4);
            ioctl(f.rw, abi::IOCTL_INSERT, &mut r)
        },
    },
    Row {
        name: "insert, request in a read-only page (no room for the answer)",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| {
            let m = Mapping::new(1, RW);
            let p = m.at(0) as *mut abi::Insert;
            // SAFETY: `p` is in our writable mapping, aligned.
            unsafe { p.write(req(VALS.as_ptr(), 4)) };
            m.read_only();
            ioctl_raw(f.rw, abi::IOCTL_INSERT, p as usize)
        },
    },
    // Access modes.
    Row {
        name: "insert, file open read-only",
        on: On::Ro,
        want: libc::EBADF,
        call: |f| ioctl(f.ro, abi::IOCTL_INSERT, &mut req(VALS.as_ptr(), 4)),
    },
    Row {
        name: "remove, file open read-only",
        on: On::Ro,
        want: libc::EBADF,
        call: |f| remove(f.ro, 1).map(drop),
    },
    Row {
        name: "get, file open read-only",
        on: On::Ro,
        want: libc::ENOENT,
        call: |f| get(f.ro, 1).map(drop),
    },
    Row {
        name: "get, file open write-only",
        on: On::Wo,
        want: libc::EBADF,
        call: |f| get(f.wo, 1).map(drop),
    },
    Row {
        name: "stats, file open write-only",
        on: On::Wo,
        want: libc::EBADF,
        call: |f| stats(f.wo).map(drop),
    },
    // GET, REMOVE, STATS.
    Row {
        name: "get, unknown ID",
        on: On::Rw,
        want: libc::ENOENT,
        call: |f| get(f.rw, f.first + 100).map(drop),
    },
    Row {
        name: "get, ID 0",
        on: On::Rw,
        want: libc::ENOENT,
        call: |f| get(f.rw, 0).map(drop),
    },
    Row {
        name: "get, flags not 0",
        on: On::Rw,
        want: libc::EINVAL,
        call: |f| flagged_entry(f.rw, abi::IOCTL_GET, f.first),
    },
    Row {
        name: "remove, flags not 0",
        on: On::Rw,
        want: libc::EINVAL,
        call: |f| flagged_entry(f.rw, abi::IOCTL_REMOVE, f.first),
    },
    Row {
        name: "get, argument NULL",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| ioctl_raw(f.rw, abi::IOCTL_GET, 0),
    },
    Row {
        name: "remove, argument NULL",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| ioctl_raw(f.rw, abi::IOCTL_REMOVE, 0),
    },
    Row {
        name: "remove, unknown ID",
        on: On::Rw,
        want: libc::ENOENT,
        call: |f| remove(f.rw, f.first + 100).map(drop),
    },
    Row {
        name: "stats, argument NULL",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| ioctl_raw(f.rw, abi::IOCTL_STATS, 0),
    },
    Row {
        name: "remove, entry in a read-only page (no room for the value)",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| read_only_entry(f.rw, abi::IOCTL_REMOVE, f.first + 1),
    },
    Row {
        name: "get, entry in a read-only page",
        on: On::Rw,
        want: libc::EFAULT,
        call: |f| read_only_entry(f.rw, abi::IOCTL_GET, f.first + 1),
    },
    // Unknown commands.
    Row {
        name: "unknown ioctl number",
        on: On::Rw,
        want: libc::ENOTTY,
        call: |f| ioctl_raw(f.rw, ioc(3, 0xb5, 9, 16), 0),
    },
    Row {
        name: "INSERT's number with another size",
        on: On::Rw,
        want: libc::ENOTTY,
        call: |f| ioctl_raw(f.rw, ioc(3, 0xb5, 1, 8), 0),
    },
    Row {
        name: "INSERT's number with no direction",
        on: On::Rw,
        want: libc::ENOTTY,
        call: |f| ioctl_raw(f.rw, ioc(0, 0xb5, 1, 0), 0),
    },
    Row {
        name: "INSERT's number with another type",
        on: On::Rw,
        want: libc::ENOTTY,
        call: |f| ioctl_raw(f.rw, ioc(3, 0xb6, 1, 16), 0),
    },
    Row {
        name: "ioctl 0",
        on: On::Rw,
        want: libc::ENOTTY,
        call: |f| ioctl_raw(f.rw, 0, 0),
    },
    // Not ioctls.
    Row {
        name: "read()",
        on: On::Rw,
        want: libc::EINVAL,
        call: |f| {
            let mut byte = [0u8; 8];
            // SAFETY: Our buffer.
            check(unsafe { libc::read(f.rw, byte.as_mut_ptr().cast(), 8) } < 0)
        },
    },
    Row {
        name: "write()",
        on: On::Rw,
        want: libc::EINVAL,
        call: |f| {
            let byte = [0u8; 8];
            // SAFETY: Our buffer.
            check(unsafe { libc::write(f.rw, byte.as_ptr().cast(), 8) } < 0)
        },
    },
    Row {
        name: "mmap()",
        on: On::Rw,
        want: libc::ENODEV,
        call: |f| {
            // SAFETY: A shared mapping request of the device; it must fail (if it did not,
            // the mapping would stay, unused).
            let mm = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    f.rw,
                    0,
                )
            };
            check(mm == libc::MAP_FAILED)
        },
    },
];

/// What the bad-input case found.
struct Findings {
    rows: usize,
    problems: Vec<String>,
}

impl Findings {
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

    /// A check that is not a call with an errno.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.rows += 1;
        if !ok {
            self.problems.push(what());
        }
    }
}

/// The table of malformed calls, each of which must get its errno and change nothing; then the
/// calls whose answer depends on what came before.
pub(crate) fn case_bad_input(suite: &mut Suite) {
    let mut t = Findings {
        rows: 0,
        problems: Vec::new(),
    };
    let files = (|| -> io::Result<_> {
        Ok((
            open(libc::O_RDWR)?,
            open(libc::O_RDONLY)?,
            open(libc::O_WRONLY)?,
        ))
    })();
    let (rw, ro, wo) = match files {
        Ok(f) => f,
        Err(e) => return suite.case("bad_input", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let fd = rw.as_raw_fd();
    let first = insert(fd, &[11, 22, 33]).unwrap_or(0);
    let f = Files {
        rw: fd,
        ro: ro.as_raw_fd(),
        wo: wo.as_raw_fd(),
        first,
    };
    for row in ROWS {
        let on = match row.on {
            On::Rw => Some(f.rw),
            On::Ro => Some(f.ro),
            On::Wo => None,
        };
        let before = on.and_then(|fd| stats(fd).ok());
        t.expect(
            row.name,
            (row.call)(&f),
            row.want,
            on.unwrap_or(f.wo),
            before,
        );
    }

    t.check(get(fd, first + 1) == Ok(22), || {
        "the entry a failed remove touched is gone".into()
    });
    let ok_remove = remove(fd, first);
    t.expect(
        "remove, twice",
        remove(fd, first).map(drop),
        libc::ENOENT,
        fd,
        None,
    );
    if ok_remove != Ok(11) {
        t.problems.push(format!("first remove: {ok_remove:?}"));
    }

    // Files are separate maps.
    match open(libc::O_RDWR) {
        Ok(other) => {
            let o = other.as_raw_fd();
            let ob = stats(o).ok();
            t.expect(
                "another file: get of this file's ID",
                get(o, first + 1).map(drop),
                libc::ENOENT,
                o,
                ob,
            );
            t.expect(
                "another file: remove of this file's ID",
                remove(o, first + 1).map(drop),
                libc::ENOENT,
                o,
                ob,
            );
            t.check(get(fd, first + 1) == Ok(22), || {
                "another file's remove reached this file's entry".into()
            });
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
            let b = stats(f).ok();
            t.expect(
                "insert, one entry beyond max_entries",
                insert(f, &batch[..1]).map(drop),
                libc::ENOSPC,
                f,
                b,
            );
            t.expect(
                "insert, a batch beyond max_entries",
                insert(f, &batch).map(drop),
                libc::ENOSPC,
                f,
                b,
            );
            t.check(
                remove(f, 1).is_ok() && insert(f, &batch[..1]).is_ok(),
                || "after a remove, a full file took no insert".into(),
            );
        }
        Err(e) => t.problems.push(format!("open: {e}")),
    }

    // A closed file, and a file closed while another thread uses it.
    let closed = open(libc::O_RDWR).map(|f| f.as_raw_fd());
    if let Ok(c) = closed {
        t.expect(
            "ioctl on a closed file",
            stats(c).map(drop),
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

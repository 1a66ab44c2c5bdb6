// SPDX-License-Identifier: GPL-2.0

//! The device: `/dev/rslab_idmap` and its ioctls, as thin wrappers that return the errno.

use crate::abi;
use std::{
    fs::{self, File, OpenOptions},
    io,
    os::{fd::RawFd, unix::fs::OpenOptionsExt},
};

/// The device.
pub(crate) const DEV: &str = "/dev/rslab_idmap";

/// An errno value.
pub(crate) type Errno = i32;

pub(crate) fn errno() -> Errno {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub(crate) fn errname(e: Errno) -> String {
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
pub(crate) fn ioctl_raw(fd: RawFd, cmd: u32, arg: usize) -> Result<(), Errno> {
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

pub(crate) fn ioctl<T>(fd: RawFd, cmd: u32, arg: &mut T) -> Result<(), Errno> {
    ioctl_raw(fd, cmd, arg as *mut T as usize)
}

pub(crate) fn insert(fd: RawFd, values: &[u64]) -> Result<u32, Errno> {
    let mut req = abi::Insert {
        values: values.as_ptr() as u64,
        count: values.len() as u32,
        first_id: 0,
    };
    ioctl(fd, abi::IOCTL_INSERT, &mut req)?;
    Ok(req.first_id)
}

/// `IOCTL_GET` or `IOCTL_REMOVE` of `id`: the value stored under it.
pub(crate) fn entry(fd: RawFd, cmd: u32, id: u32) -> Result<u64, Errno> {
    let mut e = abi::Entry {
        id,
        ..Default::default()
    };
    ioctl(fd, cmd, &mut e)?;
    Ok(e.value)
}

pub(crate) fn get(fd: RawFd, id: u32) -> Result<u64, Errno> {
    entry(fd, abi::IOCTL_GET, id)
}

pub(crate) fn remove(fd: RawFd, id: u32) -> Result<u64, Errno> {
    entry(fd, abi::IOCTL_REMOVE, id)
}

pub(crate) fn stats(fd: RawFd) -> Result<abi::Stats, Errno> {
    let mut s = abi::Stats::default();
    ioctl(fd, abi::IOCTL_STATS, &mut s)?;
    Ok(s)
}

pub(crate) fn open(mode: libc::c_int) -> io::Result<File> {
    let mut o = OpenOptions::new();
    match mode {
        libc::O_RDONLY => o.read(true),
        libc::O_WRONLY => o.write(true),
        _ => o.read(true).write(true),
    };
    o.custom_flags(0).open(DEV)
}

/// The counters a failed call must leave alone (`failed` counts failures).
pub(crate) fn unchanged(a: &abi::Stats, b: &abi::Stats) -> bool {
    (a.entries, a.inserted, a.removed, a.next_id) == (b.entries, b.inserted, b.removed, b.next_id)
}

/// A small sysfs or debugfs file, trimmed.
pub(crate) fn read_trim(path: &str) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

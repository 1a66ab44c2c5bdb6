// SPDX-License-Identifier: GPL-2.0

//! The user-space ABI of `/dev/rslab_idmap`, version 1.
//!
//! One file describes the ABI for both sides: the driver (`samples/rslab_idmap_main.rs`) and the
//! user-space client (`tools/testing/idmap-client`) include it with `#[path]`. It uses nothing
//! but `core`, so it builds in the kernel and in a `std` program alike.
//!
//! Every open file of `/dev/rslab_idmap` is a map of its own, from IDs (`u32`, counting up from
//! 1, never reused) to values (`u64`). The ioctls, with the errors each can return (besides
//! `EFAULT` for any pointer the kernel cannot read or write):
//!
//! - [`IOCTL_INSERT`] ([`Insert`]): stores `count` values read from `values` under consecutive
//!   new IDs and sets `first_id`; all of them or none. `EBADF` (file not open for writing),
//!   `EINVAL` (`count` 0), `E2BIG` (`count` above [`MAX_BATCH`]), `ENOSPC` (the file would hold
//!   more than `max_entries`), `EOVERFLOW` (not enough IDs left), `ENOMEM` (the caller's memory
//!   cgroup is at its limit, or memory is short).
//! - [`IOCTL_GET`] ([`Entry`]): the value stored under `id`. `EBADF` (not open for reading),
//!   `EINVAL` (`flags` not 0), `ENOENT` (no such ID).
//! - [`IOCTL_REMOVE`] ([`Entry`]): removes `id` and returns its value. `EBADF` (not open for
//!   writing), `EINVAL`, `ENOENT`.
//! - [`IOCTL_STATS`] ([`Stats`]): the file's counters and limits. `EBADF` (not open for
//!   reading).
//!
//! Any other command is `ENOTTY`. A call that fails changes nothing, with one exception: when
//! `INSERT` cannot write `first_id` back (`EFAULT`), the values are not stored but their IDs
//! stay used.
//!
//! What other threads sharing the file see of a call in progress: `INSERT` hands out its IDs
//! first (`Stats::next_id` moves), then writes `first_id` back, and only then stores the values,
//! so that they can be found only once the caller has been told, all together, and never if it
//! could not be told. `REMOVE` takes its ID out, then writes the value back: meanwhile the ID is
//! not found (`ENOENT`), and if the write fails, the entry is back as before. `Stats::entries`
//! changes only when such a call succeeds, and while one runs its batch or entry holds its room
//! (`ENOSPC` for others at `max_entries`), so a file never holds more than `max_entries`.
//!
//! Compatibility: the ioctl numbers encode the size of their argument, so a changed structure
//! is a new command; fields reserved as zero (`Entry::flags`) are checked, so that they can be
//! given a meaning later. [`Stats::version`] is [`VERSION`].

/// The ABI version this file describes, reported in [`Stats::version`].
pub const VERSION: u32 = 1;

/// The ioctl type ("magic") byte of the device.
pub const IOCTL_TYPE: u32 = 0xb5;

/// The most values one [`IOCTL_INSERT`] takes; a larger `count` is `E2BIG`.
pub const MAX_BATCH: u32 = 256;

/// Argument of [`IOCTL_INSERT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insert {
    /// User address of `count` `u64` values.
    pub values: u64,
    /// How many values: 1 to [`MAX_BATCH`] (0 is `EINVAL`, more is `E2BIG`).
    pub count: u32,
    /// Out: the ID of `values[0]`; `values[i]` has ID `first_id + i`.
    pub first_id: u32,
}

/// Argument of [`IOCTL_GET`] and [`IOCTL_REMOVE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// In: the ID.
    pub id: u32,
    /// In: must be 0 (`EINVAL` otherwise).
    pub flags: u32,
    /// Out: the value stored under `id`.
    pub value: u64,
}

/// Argument of [`IOCTL_STATS`]: the file's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// [`VERSION`].
    pub version: u32,
    /// [`MAX_BATCH`].
    pub max_batch: u32,
    /// The most entries one file may hold (module parameter `max_entries`); an insert that
    /// would go beyond it is `ENOSPC`.
    pub max_entries: u32,
    /// Entries in the map now.
    pub entries: u32,
    /// Values inserted since the file was opened.
    pub inserted: u64,
    /// Entries removed since the file was opened.
    pub removed: u64,
    /// Inserts that failed (any error after the arguments were read).
    pub failed: u64,
    /// The ID the next inserted value gets; `1 << 32` once the ID space is used up
    /// (`EOVERFLOW`).
    pub next_id: u64,
}

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// An ioctl number in the generic encoding (`include/uapi/asm-generic/ioctl.h`), which x86 and
/// arm64 use.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < 1 << IOC_SIZEBITS);
    (dir << IOC_DIRSHIFT)
        | (IOCTL_TYPE << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `_IOWR(0xb5, 1, struct Insert)`.
pub const IOCTL_INSERT: u32 = ioc(IOC_READ | IOC_WRITE, 1, core::mem::size_of::<Insert>());
/// `_IOWR(0xb5, 2, struct Entry)`.
pub const IOCTL_GET: u32 = ioc(IOC_READ | IOC_WRITE, 2, core::mem::size_of::<Entry>());
/// `_IOWR(0xb5, 3, struct Entry)`.
pub const IOCTL_REMOVE: u32 = ioc(IOC_READ | IOC_WRITE, 3, core::mem::size_of::<Entry>());
/// `_IOR(0xb5, 4, struct Stats)`.
pub const IOCTL_STATS: u32 = ioc(IOC_READ, 4, core::mem::size_of::<Stats>());

// The layout is the ABI: no padding, the same on every architecture.
const _: () = assert!(core::mem::size_of::<Insert>() == 16);
const _: () = assert!(core::mem::size_of::<Entry>() == 16);
const _: () = assert!(core::mem::size_of::<Stats>() == 48);

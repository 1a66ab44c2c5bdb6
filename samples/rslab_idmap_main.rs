// SPDX-License-Identifier: GPL-2.0

//! rslab template driver: an ID map whose inserts never fail under its lock.
//!
//! The map ([`map::IdMap`], `rslab_idmap_map.rs`) hands out consecutive IDs for values and
//! keeps them in a hash table of nodes behind a `SpinLock`, sized for `max_entries` when a file
//! is opened. It owns the three steps of an insert (prefill and charge before the lock, fill
//! under it, return the sheaf after), so that nothing can fail under its lock: its module doc
//! explains them.
//!
//! This file is the misc device `/dev/rslab_idmap`: every open file is a map of its own, driven
//! by the ioctls of [`abi`]. Everything from user space is checked before it is used, and a
//! failed call changes nothing. What a caller makes the driver allocate is charged to its
//! memory cgroup where the charge can fail: the file's state and table at open, each node in
//! step 1. The node cache is not `SLAB_ACCOUNT`: that charge would be forced, past
//! `memory.max`, as the node is taken from the sheaf. Inserting and removing need a file open
//! for writing, reading one open for reading (`EBADF` otherwise); no ioctl needs a capability.
//! An open file keeps the module loaded (`rmmod` says "in use"): on 7.2 through [`own_file`].
//! `Documentation/driver-guide.rst` explains each choice.
//!
//! rslab's test build of the driver (`tools/testing/idmap/`) mounts this file, declares the
//! module itself and adds its own module at the end of this one. Copy this file and the map's,
//! rename the types, and keep the three steps.

use core::mem;
use kernel::{
    fs::{file, File},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    transmute::{AsBytes, FromBytes},
    uaccess::{UserPtr, UserSlice, UserSliceWriter},
};

#[path = "../rust/lib/mod.rs"]
pub mod rslab;

#[path = "rslab_idmap_abi.rs"]
pub mod abi;

#[path = "rslab_idmap_map.rs"]
mod map;
use map::{IdMap, Node};

#[path = "rslab_idmap_owner.rs"]
mod owner;
use owner::own_file;

use rslab::{cache::CacheOptions, static_cache::StaticCache};

// rslab's test build (`tools/testing/idmap/`) declares the module itself.
#[cfg(not(rslab_idmap_test))]
module! {
    type: IdMapModule,
    name: "rslab_idmap",
    authors: ["rslab developers"],
    description: "rslab template: an ID map that allocates under a spinlock from a sheaf",
    license: "GPL",
    params: {
        max_entries: u32 {
            default: 65536,
            description: "The most entries one open file of /dev/rslab_idmap may hold",
        },
    },
}

/// The module's node cache; created in module init, destroyed in module exit.
static NODES: StaticCache<Node<'static>> = StaticCache::new();

// SAFETY: The ABI's structures are `repr(C)`, of integer fields without padding (`abi` asserts
// their sizes): every bit pattern is a valid value, and every byte is initialised.
unsafe impl FromBytes for abi::Insert {}
// SAFETY: As above.
unsafe impl AsBytes for abi::Insert {}
// SAFETY: As above.
unsafe impl FromBytes for abi::Entry {}
// SAFETY: As above.
unsafe impl AsBytes for abi::Entry {}
// SAFETY: As above.
unsafe impl AsBytes for abi::Stats {}

/// Fails with `EBADF` unless `file` was opened for reading.
fn readable(file: &File) -> Result {
    if file.flags() & file::flags::O_ACCMODE == file::flags::O_WRONLY {
        return Err(EBADF);
    }
    Ok(())
}

/// Fails with `EBADF` unless `file` was opened for writing.
fn writable(file: &File) -> Result {
    if file.flags() & file::flags::O_ACCMODE == file::flags::O_RDONLY {
        return Err(EBADF);
    }
    Ok(())
}

/// One open file of `/dev/rslab_idmap`: a map of its own.
#[pin_data]
struct IdMapFile {
    #[pin]
    map: IdMap<'static>,
}

#[vtable]
impl MiscDevice for IdMapFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        own_file(file)?;
        let cache = NODES.get().ok_or(ENODEV)?;
        // The module's `max_entries` when the file is opened.
        let limit = rslab::param(&crate::module_parameters::max_entries) as usize;
        KBox::try_pin_init(
            try_pin_init!(IdMapFile {
                map <- IdMap::new(cache, limit),
            }),
            // The file's state is charged to whoever opens it.
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn ioctl(me: Pin<&IdMapFile>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let arg = UserPtr::from_addr(arg);
        match cmd {
            abi::IOCTL_INSERT => me.insert(file, arg)?,
            abi::IOCTL_GET => {
                readable(file)?;
                me.get(arg)?
            }
            abi::IOCTL_REMOVE => {
                writable(file)?;
                me.remove(arg)?
            }
            abi::IOCTL_STATS => {
                readable(file)?;
                UserSlice::new(arg, mem::size_of::<abi::Stats>())
                    .writer()
                    .write(&me.stats())?
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

impl IdMapFile {
    /// `IOCTL_STATS`: the map's counters and limits.
    fn stats(&self) -> abi::Stats {
        let s = self.map.stats();
        abi::Stats {
            version: abi::VERSION,
            max_batch: abi::MAX_BATCH,
            // The module's limit is a `u32`, and a map holds at most that many entries.
            max_entries: s.limit.try_into().unwrap_or(u32::MAX),
            entries: s.entries.try_into().unwrap_or(u32::MAX),
            inserted: s.inserted,
            removed: s.removed,
            failed: s.failed,
            next_id: s.next_id,
        }
    }

    /// `IOCTL_INSERT`: reads the request, inserts the batch, writes back the first ID.
    fn insert(&self, file: &File, arg: UserPtr) -> Result {
        writable(file)?;
        let mut req: abi::Insert = UserSlice::new(arg, mem::size_of::<abi::Insert>())
            .reader()
            .read()?;
        let r = self.insert_request(&mut req, arg);
        if r.is_err() {
            self.map.count_failure();
        }
        r
    }

    fn insert_request(&self, req: &mut abi::Insert, arg: UserPtr) -> Result {
        let count = req.count as usize;
        if count == 0 {
            return Err(EINVAL);
        }
        if req.count > abi::MAX_BATCH {
            return Err(E2BIG);
        }
        let size = mem::size_of::<abi::Insert>();
        // The answer must have somewhere to go before anything changes: write the request back.
        req.first_id = 0;
        UserSlice::new(arg, size).writer().write(req)?;
        // The values, copied in before the lock: a copy from user space may fault and sleep.
        let addr = usize::try_from(req.values).map_err(|_| EFAULT)?;
        let mut values = KVec::from_elem(0u64, count, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(addr), mem::size_of_val(&values[..]))
            .reader()
            .read_slice(AsBytes::as_bytes_mut(&mut values[..]))?;
        // The caller's memory may have gone away since the check: then the batch is taken back.
        self.map.insert_reported(&values, |first| {
            req.first_id = first;
            UserSlice::new(arg, size).writer().write(req)
        })?;
        Ok(())
    }

    /// Reads an [`abi::Entry`] and checks its reserved field; returns it and a writer for the
    /// answer.
    fn read_entry(arg: UserPtr) -> Result<(abi::Entry, UserSliceWriter)> {
        let (mut reader, writer) =
            UserSlice::new(arg, mem::size_of::<abi::Entry>()).reader_writer();
        let e: abi::Entry = reader.read()?;
        if e.flags != 0 {
            return Err(EINVAL);
        }
        Ok((e, writer))
    }

    /// `IOCTL_GET`: fills in the value stored under the entry's ID.
    fn get(&self, arg: UserPtr) -> Result {
        let (mut e, mut writer) = Self::read_entry(arg)?;
        e.value = self.map.get(e.id).ok_or(ENOENT)?;
        writer.write(&e)
    }

    /// `IOCTL_REMOVE`: removes the ID and writes back its value; if that fails, it stays.
    fn remove(&self, arg: UserPtr) -> Result {
        let (mut e, mut writer) = Self::read_entry(arg)?;
        self.map.remove_reported(e.id, |value| {
            e.value = value;
            writer.write(&e)
        })?;
        Ok(())
    }
}

/// The module's node cache, destroyed when the module is.
struct NodeCache;

impl NodeCache {
    fn create() -> Result<Self> {
        NODES.init(
            c"rslab_idmap_node",
            // Not `SLAB_ACCOUNT`: the files charge their nodes themselves, in step 1.
            CacheOptions::new().sheaf_capacity(abi::MAX_BATCH),
        )?;
        Ok(Self)
    }
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        // SAFETY: Every open file holds a reference to the module (`own_file`), so the module
        // exits only once every file, and with it every file's map, is gone. `IdMapModule`
        // declares this field last: the device is gone too.
        unsafe { NODES.destroy() };
    }
}

/// The module. Fields drop in declaration order: the device first, the node cache last.
#[pin_data]
struct IdMapModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<IdMapFile>,
    _nodes: NodeCache,
}

impl kernel::InPlaceModule for IdMapModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // On an error, what was initialised is dropped again, in reverse order.
        try_pin_init!(Self {
            _nodes: NodeCache::create()?,
            // Last: once registered, the device can be opened.
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rslab_idmap",
            }),
        }? Error)
    }
}

/// The module of rslab's test build of the driver (`tools/testing/idmap/`), a child module so
/// that it sees the driver's private items.
#[cfg(rslab_idmap_test)]
#[path = "../tools/testing/idmap/rslab_idmap_test_module.rs"]
pub(crate) mod test_build;

// SPDX-License-Identifier: GPL-2.0

//! An open file of `/dev/rslab_idmap` keeps the module loaded, on 7.2 too: [`own_file`].
//!
//! From 7.3 on the kernel crate makes the module the owner of a misc device's file operations,
//! so that the VFS holds a reference to the module from `open` until after `release`, and
//! [`own_file`] does nothing. 7.2's leaves the owner unset (`scripts/compat.mk` tells the two
//! apart). A file of its own, mounted by `samples/rslab_idmap_main.rs`: a driver for 7.3 and later
//! does not need it.

use kernel::{fs::File, prelude::*};
#[cfg(not(rslab_misc_fops_owner))]
use {super::IdMapFile, kernel::miscdevice::MiscDeviceOptions};

/// The device's file operations as the kernel crate builds them, with this module as their
/// owner (see [`own_file`]).
#[cfg(not(rslab_misc_fops_owner))]
struct OwnedFops(kernel::bindings::file_operations);

// SAFETY: Never written after it is built: shared read-only, as the kernel crate's own vtable.
#[cfg(not(rslab_misc_fops_owner))]
unsafe impl Sync for OwnedFops {}

#[cfg(not(rslab_misc_fops_owner))]
static OWNED_FOPS: OwnedFops = {
    let raw = MiscDeviceOptions {
        name: c"rslab_idmap",
    }
    .into_raw::<IdMapFile>();
    // SAFETY: `into_raw` points `fops` at the kernel crate's `'static` vtable for `IdMapFile`.
    let mut fops = unsafe { *raw.fops };
    fops.owner = crate::THIS_MODULE.as_ptr();
    OwnedFops(fops)
};

/// Makes `file` keep this module loaded until it has been released, on 7.2.
///
/// 7.2's kernel crate registers a misc device's file operations without an owner, so
/// `misc_open()` takes no reference to the module, and the module could be unloaded under an
/// open file. This takes the reference and gives the file a copy of its operations with this
/// module as their owner: the VFS puts that reference once the file is gone, after `release`
/// has returned (`fops_put()` in `__fput()`, or in the clean-up of a failed open), when no code
/// of the module runs any more. Taking and putting a reference from the module's own `open` and
/// `release` would not do: the module could go away between the put and `release`'s return.
///
/// # Context
///
/// Only from the device's `open`, first.
#[cfg(not(rslab_misc_fops_owner))]
pub(super) fn own_file(file: &File) -> Result {
    let file = file.as_ptr();
    // SAFETY: `file` is being opened on this thread: `misc_open()` set its `f_op` to valid file
    // operations, and nothing but this `open` changes it until the open is complete.
    let fops = unsafe { (*file).f_op };
    // SAFETY: `fops` points at the registered file operations, which outlive the open.
    if !unsafe { (*fops).owner }.is_null() {
        // Owned already: `misc_open()` took the reference.
        return Ok(());
    }
    // SAFETY: `THIS_MODULE` is this module, and it cannot be freed during this call:
    // `misc_open()` calls `open` with `misc_mtx` held, and the module's exit deregisters the
    // device, which takes `misc_mtx`, before the module can go. This is the "implied protection"
    // of `try_module_get()`'s documentation; it fails once the module is being unloaded.
    if !unsafe { kernel::bindings::try_module_get(crate::THIS_MODULE.as_ptr()) } {
        return Err(ENODEV);
    }
    // SAFETY: What `replace_fops()` does, which `open` may do: the old operations have no owner
    // to put, and the new ones are `'static`, the same but for `owner`, and their owner has the
    // reference just taken, which the VFS puts when it is done with the file.
    unsafe { (*file).f_op = &OWNED_FOPS.0 };
    Ok(())
}

/// Nothing to do: the kernel crate makes the module the owner of the file operations.
#[cfg(rslab_misc_fops_owner)]
pub(super) fn own_file(_file: &File) -> Result {
    Ok(())
}

// SPDX-License-Identifier: GPL-2.0

//! A box of a type that is not `Send`, moved to another thread.
//!
//! Must not compile: see tools/testing/compile-fail/Kbuild.

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

include!("common/module.rs");

/// Not `Send`: a raw pointer, as in a type tied to the CPU or thread that made it.
struct Local(*mut u8);

/// What every kernel API that runs a value on another thread requires of it (a work item's
/// data, a spawned kthread's closure).
fn on_another_thread<S: Send>(value: S) {
    drop(value);
}

fn case() -> Result {
    let cache = KmemCache::<Local>::new(c"rslab_cf_send", CacheOptions::new())?;
    let object = cache.alloc(Local(core::ptr::null_mut()), GFP_KERNEL)?;
    on_another_thread(object); // error[E0277]
    Ok(())
}

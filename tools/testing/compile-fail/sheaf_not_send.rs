// SPDX-License-Identifier: GPL-2.0

//! A sheaf of a type that is not `Send`, moved to another thread.
//!
//! Must not compile: see tools/testing/compile-fail/Kbuild.

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

include!("common/module.rs");

/// Not `Send`: a raw pointer, as in a type tied to the CPU or thread that made it.
struct Local(*mut u8);

/// What every kernel API that runs a value on another thread requires of it.
fn on_another_thread<S: Send>(value: S) {
    drop(value);
}

fn case() -> Result {
    let cache = KmemCache::<Local>::new(c"rslab_cf_sheaf_send", CacheOptions::new())?;
    let sheaf = cache.prefill(1, GFP_KERNEL)?;
    on_another_thread(sheaf); // error[E0277]
    Ok(())
}

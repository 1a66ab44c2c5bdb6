// SPDX-License-Identifier: GPL-2.0

//! A slot that outlives its sheaf.
//!
//! Must not compile: see tools/testing/compile-fail/Kbuild.

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

include!("common/module.rs");

fn case() -> Result {
    let cache = KmemCache::<u64>::new(c"rslab_cf_slot", CacheOptions::new())?;
    let sheaf = cache.prefill(1, GFP_KERNEL)?;
    let slot = sheaf.claim()?;
    // `slot` is dropped (its claim given back to the sheaf) at the end of the function.
    drop(sheaf); // error[E0505]
    drop(slot.alloc(1));
    Ok(())
}

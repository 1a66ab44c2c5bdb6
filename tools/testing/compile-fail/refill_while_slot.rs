// SPDX-License-Identifier: GPL-2.0

//! A refill while a slot of the sheaf lives (the slot is only dropped, after the refill).
//!
//! Must not compile: see tools/testing/compile-fail/Kbuild.

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

include!("common/module.rs");

fn case() -> Result {
    let cache = KmemCache::<u64>::new(c"rslab_cf_refill", CacheOptions::new())?;
    let mut sheaf = cache.prefill(1, GFP_KERNEL)?;
    let slot = sheaf.claim()?;
    // `slot` is dropped at the end of the function, after the refill.
    sheaf.refill(4, GFP_KERNEL)?; // error[E0502]
    pr_info!("{}\n", sheaf.len());
    Ok(())
}

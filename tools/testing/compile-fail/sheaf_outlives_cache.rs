// SPDX-License-Identifier: GPL-2.0

//! A sheaf that outlives its cache (dropped only, after the cache).
//!
//! Must not compile: see tools/testing/compile-fail/Kbuild.

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

include!("common/module.rs");

fn case() -> Result {
    let cache = KmemCache::<u64>::new(c"rslab_cf_sheaf", CacheOptions::new())?;
    let sheaf = cache.prefill(1, GFP_KERNEL)?;
    pr_info!("{}\n", sheaf.len());
    // `sheaf` is dropped (returned) at the end of the function, after the cache.
    drop(cache); // error[E0505]
    Ok(())
}

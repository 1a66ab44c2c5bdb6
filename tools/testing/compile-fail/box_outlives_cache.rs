// SPDX-License-Identifier: GPL-2.0

//! A box that outlives its cache: the box is only dropped (no use after the cache is gone), so
//! the refusal is the box's `Drop` needing the cache.
//!
//! Must not compile: see tools/testing/compile-fail/Kbuild.

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

include!("common/module.rs");

fn case() -> Result {
    let cache = KmemCache::<u64>::new(c"rslab_cf_box", CacheOptions::new())?;
    let object = cache.alloc(1, GFP_KERNEL)?;
    pr_info!("{}\n", *object);
    // `object` is dropped at the end of the function, after the cache.
    drop(cache); // error[E0505]
    Ok(())
}

// SPDX-License-Identifier: GPL-2.0

//! A driver that uses sheaves but whose Kbuild forgets `scripts/sheaf.mk`.
//!
//! It must not build: `make clippy` builds it and checks that the compiler's error names the
//! cause and the fix, rather than only "no method named `prefill`".

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};

module! {
    type: NoSheaf,
    name: "rslab_nosheaf",
    authors: ["rslab developers"],
    description: "rslab build test: a sheaf user without scripts/sheaf.mk",
    license: "GPL",
}

struct NoSheaf;

impl kernel::Module for NoSheaf {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let cache = KmemCache::<u64>::new(c"rslab_nosheaf", CacheOptions::new())?;
        let sheaf = cache.prefill(1, GFP_KERNEL)?;
        drop(sheaf);
        Ok(Self)
    }
}

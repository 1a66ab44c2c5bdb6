// SPDX-License-Identifier: GPL-2.0

//! A driver that uses sheaves but whose Kbuild forgets `scripts/sheaf.mk`.
//!
//! It must not build: `make clippy` builds it and checks that the compiler's error names the
//! cause and the fix, rather than only "no method named `prefill`".

use kernel::prelude::*;

#[path = "../../../rust/lib/mod.rs"]
pub mod rslab;

use rslab::cache::{CacheOptions, KmemCache};
// Every public name of the sheaf module resolves in the stub too (`make clippy` checks that the
// list is complete), so that the one error is the explanation below, not an unresolved import.
#[expect(unused_imports)]
use rslab::sheaf::{Charged, Claims, Sheaf, Slot, MAX_SHEAF_OBJECTS};

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

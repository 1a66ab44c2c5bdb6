// SPDX-License-Identifier: GPL-2.0

//! rslab_doctests: the library's documentation examples, run as KUnit cases.
//!
//! `tools/testing/doctests.py` extracts every example of `rust/lib/` with the kernel's own
//! doctest machinery (`scripts/rustdoc_test_builder.rs` and `scripts/rustdoc_test_gen.rs`) and
//! writes `rslab_doctests_generated.rs`, one KUnit case per example in the suite
//! `rslab_doctests`; loading this module runs them. Kbuild builds the module only once that
//! file exists.
//!
//! The examples reach the library as `rslab`, the way a driver that mounts it at the root of
//! its crate does.

use kernel::prelude::*;

#[path = "lib/mod.rs"]
pub mod rslab;

module! {
    type: RslabDoctests,
    name: "rslab_doctests",
    authors: ["rslab developers"],
    description: "rslab's documentation examples as KUnit tests",
    license: "GPL",
}

struct RslabDoctests;

impl kernel::Module for RslabDoctests {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self)
    }
}

/// The generated cases: each example, wrapped as an `extern "C"` KUnit case, and the suite.
#[allow(dead_code, unreachable_pub, clippy::undocumented_unsafe_blocks)]
mod generated {
    #[allow(unused_imports)]
    use crate::rslab;

    include!("rslab_doctests_generated.rs");
}

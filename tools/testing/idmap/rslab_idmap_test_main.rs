// SPDX-License-Identifier: GPL-2.0

//! rslab's test build of the template driver `samples/rslab_idmap_main.rs`: the driver, mounted
//! unchanged as [`driver`], in a module with two parameters more for what rslab's user-space
//! client (`tools/testing/idmap-client`, its `forced` and `ids` runs) cannot reach through a
//! driver as a driver author would write it:
//!
//! - `first_id`: the first ID of every new file's map, so that the ID space can run out.
//! - `forced_charge=1`: a `SLAB_ACCOUNT` node cache, so that every node is charged when it is
//!   taken from its sheaf, by force, past the cgroup's `memory.max`: what the driver's charge
//!   before the lock avoids.
//!
//! Its device is the driver's `/dev/rslab_idmap`, so the runner loads it in place of
//! `rslab_idmap.ko`, never with it. The module's code is the driver's test module
//! (`rslab_idmap_test_module.rs`), which sees the driver's private items.

use kernel::prelude::*;

/// The template driver, whose own module type is not used here, nor what the library and the
/// ABI make public for a driver to export.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../samples/rslab_idmap_main.rs"]
mod driver;

use driver::test_build::TestModule;

module! {
    type: TestModule,
    name: "rslab_idmap_test",
    authors: ["rslab developers"],
    description: "rslab's test build of the template driver rslab_idmap, with test hooks",
    license: "GPL",
    params: {
        max_entries: u32 {
            default: 65536,
            description: "The most entries one open file of /dev/rslab_idmap may hold",
        },
        first_id: u32 {
            default: 1,
            description: "The first ID of every new file's map (IDs near u32::MAX)",
        },
        forced_charge: u32 {
            default: 0,
            description: "1: a SLAB_ACCOUNT node cache, charged by force past memory.max",
        },
    },
}

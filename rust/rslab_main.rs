// SPDX-License-Identifier: GPL-2.0

//! rslab: proves the kmalloc alignment guarantee on the running kernel and reports it.
//!
//! Loading the module runs its KUnit suites (with `CONFIG_KUNIT`), then builds a report of what
//! it verified, readable at `/sys/kernel/debug/rslab/report`, and exposes the statistics of
//! [`rslab::stats::TrackedKmalloc`] at `/sys/kernel/debug/rslab/kmalloc_stats`.

use kernel::{debugfs::Dir, prelude::*};

#[path = "lib/mod.rs"]
pub mod rslab;

mod layout_probe;
mod report;

/// Test-only suites: model-based random testing, concurrency, fault injection, allocation
/// profiling and cache names.
#[cfg(CONFIG_KUNIT = "y")]
mod selftest {
    #[cfg(CONFIG_MEM_ALLOC_PROFILING)]
    pub(crate) mod allocinfo;
    #[cfg(rslab_sheaf)]
    pub(crate) mod concurrency;
    pub(crate) mod failslab;
    pub(crate) mod model;
    pub(crate) mod names;
}

module! {
    type: RslabModule,
    name: "rslab",
    authors: ["rslab developers"],
    description: "kmalloc and slab sheaf building blocks for Rust drivers",
    license: "GPL",
    params: {
        model_seed: u64 {
            default: 0x5eed,
            description: "Seed of the rslab_model suite's random operations",
        },
        model_ops: u64 {
            default: 1_000_000,
            description: "Operations the rslab_model suite executes (in 4 parts)",
        },
        concurrency_ops: u64 {
            default: 100_000,
            description: "Allocations per thread in the rslab_concurrency suite",
        },
    },
}

#[pin_data]
struct RslabModule {
    _dir: Dir,
    #[pin]
    _report: kernel::debugfs::File<report::Report>,
    #[pin]
    _stats: kernel::debugfs::File<rslab::stats::StatsFile>,
    /// Caches whose layout shows what the kmalloc alignment guarantee costs, read by the runner
    /// from `/sys/kernel/slab/rslab_layout_*` while the module is loaded.
    _layout: layout_probe::LayoutProbes,
}

impl kernel::InPlaceModule for RslabModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let dir = Dir::new(c"rslab");
        try_pin_init!(Self {
            _report <- {
                let report = report::Report::build()?;
                report.log();
                dir.read_only_file(c"report", report)
            },
            _stats <- dir.read_only_file(c"kmalloc_stats", rslab::stats::StatsFile),
            _layout: {
                let probes = layout_probe::LayoutProbes::create()?;
                pr_info!("{} slab layout probe caches\n", probes.len());
                probes
            },
            _dir: dir,
        })
    }
}

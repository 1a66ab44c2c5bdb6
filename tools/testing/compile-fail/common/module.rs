// SPDX-License-Identifier: GPL-2.0

// The module around a compile-fail case, `include!`d by each: its `init` runs the case's
// `case()`. One case is built at a time (RSLAB_CASE), so they share the module's name.

module! {
    type: Case,
    name: "rslab_compile_fail",
    authors: ["rslab developers"],
    description: "rslab build test: a program the compiler refuses",
    license: "GPL",
}

struct Case;

impl kernel::Module for Case {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        case()?;
        Ok(Self)
    }
}

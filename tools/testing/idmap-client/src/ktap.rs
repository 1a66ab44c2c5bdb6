// SPDX-License-Identifier: GPL-2.0

//! KTAP output: the results of one run as a KUnit-style suite, for `kunit.py`.

use std::fmt::Write as _;

/// The results of one suite, printed as KTAP.
pub(crate) struct Suite {
    name: &'static str,
    cases: Vec<(String, bool, Vec<String>)>,
}

impl Suite {
    /// Whether every case passed.
    pub(crate) fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.1)
    }

    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            cases: Vec::new(),
        }
    }

    /// Records case `name`: passed when `problems` is empty; `notes` are its figures.
    pub(crate) fn case(&mut self, name: &str, notes: Vec<String>, problems: Vec<String>) {
        let ok = problems.is_empty();
        println!("{}: {}", name, if ok { "ok" } else { "FAILED" });
        let mut lines = Vec::new();
        for n in &notes {
            println!("  {n}");
            lines.push(n.clone());
        }
        for p in problems.iter().take(20) {
            println!("  problem: {p}");
            lines.push(format!("problem: {p}"));
        }
        if problems.len() > 20 {
            lines.push(format!("problem: ... and {} more", problems.len() - 20));
        }
        self.cases.push((name.into(), ok, lines));
    }

    pub(crate) fn ktap(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "KTAP version 1\n1..1");
        let _ = writeln!(s, "    KTAP version 1\n    # Subtest: {}", self.name);
        let _ = writeln!(s, "    1..{}", self.cases.len());
        for (i, (name, ok, lines)) in self.cases.iter().enumerate() {
            for l in lines {
                let _ = writeln!(s, "    # {name}: {l}");
            }
            let _ = writeln!(
                s,
                "    {} {} {}",
                if *ok { "ok" } else { "not ok" },
                i + 1,
                name
            );
        }
        let all = !self.cases.is_empty() && self.cases.iter().all(|c| c.1);
        let _ = writeln!(s, "{} 1 {}", if all { "ok" } else { "not ok" }, self.name);
        s
    }
}

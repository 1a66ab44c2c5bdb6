// SPDX-License-Identifier: GPL-2.0

//! Fault injection: the load with failslab armed for the workers' threads.

use crate::{
    dev::read_trim,
    ktap::Suite,
    load::{run_threads, Tally},
};
use std::{fs, time::Duration};

const FAILSLAB: &str = "/sys/kernel/debug/failslab";

/// The load on own files with failslab armed for the workers' threads only.
pub(crate) fn case_failslab(suite: &mut Suite, threads: usize, secs: u64) {
    const TIMES: i64 = 1_000_000;
    let mut problems = Vec::new();
    let knobs = [
        ("probability", "20"),
        ("interval", "1"),
        ("times", "1000000"),
        ("task-filter", "Y"),
        ("ignore-gfp-wait", "N"),
        ("verbose", "0"),
    ];
    let mut saved = Vec::new();
    for (k, v) in knobs {
        let path = format!("{FAILSLAB}/{k}");
        match read_trim(&path).and_then(|old| fs::write(&path, v).map(|_| old)) {
            Ok(old) => saved.push((path, old)),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    let (t, probs) = if problems.is_empty() {
        run_threads(threads, None, 100, Duration::from_secs(secs), 200_000, true)
    } else {
        (Tally::default(), vec![])
    };
    problems.extend(probs);
    let left = read_trim(&format!("{FAILSLAB}/times"))
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    for (path, old) in saved.into_iter().rev() {
        if let Err(e) = fs::write(&path, old) {
            problems.push(format!("restoring {path}: {e}"));
        }
    }
    let injected = left.map(|l| TIMES - l);
    // With kmemleak, every slab allocation also allocates kmemleak's record of it, from a slab
    // cache in the same task: failslab injects failures there too, and kmemleak falls back to
    // its reserve pool without telling anyone. Then only the driver's share of the injected
    // failures reaches user space, and which share is not visible from here.
    let kmemleak = fs::metadata("/sys/kernel/debug/kmemleak").is_ok();
    match injected {
        Some(i) if t.enomem > 0 && (i == t.enomem as i64 || kmemleak && i > t.enomem as i64) => {}
        Some(i) => problems.push(format!(
            "failslab injected {i} failures, the workers saw {} ENOMEM",
            t.enomem
        )),
        None => problems.push("cannot read failslab's remaining count".into()),
    }
    let notes = vec![
        format!(
            "{threads} threads, failslab at 20% for their tasks, {secs} s: {} ops, {} failures injected, {} ENOMEM returned{}",
            t.ops,
            injected.unwrap_or(-1),
            t.enomem,
            if kmemleak {
                " (kmemleak: its own records are injected too, and fall back to its pool)"
            } else {
                ", one per injected failure"
            }
        ),
        format!(
            "{} results checked after the faults, {} mismatches",
            t.checked, t.mismatches
        ),
    ];
    suite.case("failslab", notes, problems);
}

// SPDX-License-Identifier: GPL-2.0

//! Cost per call: `GET`, `INSERT` and `REMOVE` at 64 and at 65,536 entries.

use crate::{abi, dev::*, ktap::Suite, load::Rng};
use std::{os::fd::AsRawFd, time::Instant};

/// `GET`, `INSERT` (one value) and `REMOVE` per second on one file holding about `entries`
/// entries, from `rounds` rounds of `k` inserts and `k` removes and `gets` lookups each.
pub(crate) fn bench_at(entries: u32, k: u32, rounds: u32, gets: u32) -> Result<[f64; 3], String> {
    let f = open(libc::O_RDWR).map_err(|e| format!("open {DEV}: {e}"))?;
    let fd = f.as_raw_fd();
    let batch: Vec<u64> = (0..abi::MAX_BATCH as u64).collect();
    // Filled to `entries - k`; each round inserts `k` more and removes them again.
    let base = entries - k;
    let mut n = 0;
    while n < base {
        let c = (base - n).min(abi::MAX_BATCH);
        insert(fd, &batch[..c as usize]).map_err(|e| format!("fill: {}", errname(e)))?;
        n += c;
    }
    let mut rng = Rng(0x1234_5678);
    let (mut t_get, mut t_ins, mut t_rem) = (0f64, 0f64, 0f64);
    let mut ids = Vec::with_capacity(k as usize);
    for _ in 0..rounds {
        ids.clear();
        let t = Instant::now();
        for i in 0..k {
            ids.push(insert(fd, &[u64::from(i)]).map_err(|e| format!("insert: {}", errname(e)))?);
        }
        t_ins += t.elapsed().as_secs_f64();
        // Lookups of entries that exist, at `entries` entries, in random order.
        let t = Instant::now();
        for _ in 0..gets {
            let id = 1 + rng.below(base as usize) as u32;
            get(fd, id).map_err(|e| format!("get {id}: {}", errname(e)))?;
        }
        t_get += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for &id in &ids {
            remove(fd, id).map_err(|e| format!("remove {id}: {}", errname(e)))?;
        }
        t_rem += t.elapsed().as_secs_f64();
    }
    let per = |count: u32, secs: f64| f64::from(count) * f64::from(rounds) / secs;
    Ok([per(gets, t_get), per(k, t_ins), per(k, t_rem)])
}

/// The cost of `GET`, `INSERT` and `REMOVE` at 64 and at 65,536 entries (the default
/// `max_entries`): calls per second, and nanoseconds per call (under QEMU's `-icount shift=0`,
/// one nanosecond of guest time is one instruction).
pub(crate) fn case_bench(suite: &mut Suite) {
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    for (entries, k) in [(64, 32), (65536, 4096)] {
        // About as many calls of each kind at both sizes.
        let rounds = 131072 / k;
        match bench_at(entries, k, rounds, 2 * k) {
            Ok([g, i, r]) => notes.push(format!(
                "{entries} entries: GET {g:.0}/s ({:.0} ns), INSERT {i:.0}/s ({:.0} ns), REMOVE {r:.0}/s ({:.0} ns)",
                1e9 / g,
                1e9 / i,
                1e9 / r
            )),
            Err(e) => problems.push(format!("{entries} entries: {e}")),
        }
    }
    suite.case("bench", notes, problems);
}

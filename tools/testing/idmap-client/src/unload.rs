// SPDX-License-Identifier: GPL-2.0

//! Unloading: an open file keeps the module loaded.

use crate::{dev::*, ktap::Suite};
use std::{fs, io, os::fd::AsRawFd};

/// The module behind `/dev/rslab_idmap`.
pub(crate) const MODULE: &str = "rslab_idmap";

/// The module's reference count.
pub(crate) fn module_refcnt() -> io::Result<u64> {
    read_trim(&format!("/sys/module/{MODULE}/refcnt"))?
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// `rmmod` with a file open: refused ("in use"), and the file keeps working. An open file holds
/// one reference to the module, which goes when the file is closed.
pub(crate) fn case_unload_busy(suite: &mut Suite) {
    let mut problems = Vec::new();
    let before = match module_refcnt() {
        Ok(n) => n,
        Err(e) => return suite.case("unload_busy", vec![], vec![format!("{MODULE} refcnt: {e}")]),
    };
    let f = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case("unload_busy", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let fd = f.as_raw_fd();
    let vals = [1u64, 2, 3, 4, 5, 6, 7, 8];
    let first = insert(fd, &vals);
    if first.is_err() {
        problems.push(format!("insert: {first:?}"));
    }
    let open_refs = module_refcnt().unwrap_or(0);
    let mut rmmod_note = String::from("rmmod not tried");
    if open_refs != before + 1 {
        // Unloading now would free the module under this file: the next call on it would
        // oops. Fail without trying.
        problems.push(format!(
            "refcnt {before} before open, {open_refs} with a file open: the file does not keep \
             the module loaded (rmmod not tried: it would unload the module under the file)"
        ));
    } else {
        match std::process::Command::new("rmmod").arg(MODULE).output() {
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                rmmod_note = format!("rmmod {MODULE}: exit {:?}, \"{err}\"", out.status.code());
                if out.status.success() {
                    problems.push(format!("rmmod {MODULE} succeeded with a file open"));
                } else if !err.contains("in use") {
                    problems.push(format!("rmmod {MODULE} failed, but not as in use: {err}"));
                }
            }
            Err(e) => problems.push(format!("running rmmod: {e}")),
        }
    }
    if fs::metadata(format!("/sys/module/{MODULE}")).is_err() {
        problems.push(format!("{MODULE} is gone with a file open"));
    } else if let Ok(first) = first {
        // The file keeps working.
        for (i, &v) in vals.iter().enumerate() {
            let got = get(fd, first + i as u32);
            if got != Ok(v) {
                problems.push(format!("get {}: {got:?}, expected {v}", first + i as u32));
            }
        }
        let more = insert(fd, &[9]);
        if more != Ok(first + 8) {
            problems.push(format!("insert after rmmod: {more:?}"));
        }
        match stats(fd) {
            Ok(s) if s.entries == 9 => {}
            s => problems.push(format!("stats after rmmod: {s:?}")),
        }
    }
    drop(f);
    let after = module_refcnt().map_err(|e| e.to_string());
    if after != Ok(before) {
        problems.push(format!(
            "refcnt {after:?} after close, {before} before open"
        ));
    }
    let notes = vec![
        format!(
            "refcnt {before} before open, {open_refs} with the file open, {} after close",
            after.map_or_else(|e| e, |n| n.to_string())
        ),
        format!("{rmmod_note}; then the file's 8 entries read back and one more inserted"),
    ];
    suite.case("unload_busy", notes, problems);
}

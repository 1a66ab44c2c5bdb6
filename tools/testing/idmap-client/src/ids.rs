// SPDX-License-Identifier: GPL-2.0

//! The ID space running out.

use crate::{dev::*, ktap::Suite};
use std::os::fd::AsRawFd;

/// The `first_id` the runner loads rslab's test build of the module with for the `ids` command.
const IDS_FIRST: u32 = u32::MAX - 9;

/// With the test build loaded with `first_id=IDS_FIRST`: the ID space runs out with `EOVERFLOW`,
/// changing nothing.
pub(crate) fn case_id_space(suite: &mut Suite) {
    let mut problems = Vec::new();
    let f = match open(libc::O_RDWR) {
        Ok(f) => f,
        Err(e) => return suite.case("id_space", vec![], vec![format!("open {DEV}: {e}")]),
    };
    let fd = f.as_raw_fd();
    let mut check = |what: &str, ok: bool| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    let s = stats(fd);
    check(
        "next ID starts at first_id",
        matches!(s, Ok(s) if s.next_id == IDS_FIRST as u64),
    );
    check("8 IDs of 10", insert(fd, &[1; 8]) == Ok(IDS_FIRST));
    let before = stats(fd).ok();
    check(
        "3 more: EOVERFLOW",
        insert(fd, &[2; 3]) == Err(libc::EOVERFLOW),
    );
    check(
        "nothing changed",
        matches!((before, stats(fd)), (Some(b), Ok(a)) if unchanged(&a, &b)),
    );
    check("the last 2", insert(fd, &[3, 4]) == Ok(u32::MAX - 1));
    check("u32::MAX holds its value", get(fd, u32::MAX) == Ok(4));
    check(
        "one more: EOVERFLOW",
        insert(fd, &[5]) == Err(libc::EOVERFLOW),
    );
    check(
        "next ID is 1 << 32",
        matches!(stats(fd), Ok(s) if s.next_id == 1 << 32 && s.entries == 10),
    );
    check("removing still works", remove(fd, IDS_FIRST) == Ok(1));
    check(
        "a removed ID is not handed out again",
        insert(fd, &[6]) == Err(libc::EOVERFLOW),
    );
    let other = open(libc::O_RDWR)
        .map_err(|_| 0)
        .and_then(|o| insert(o.as_raw_fd(), &[7]));
    check("another file has IDs of its own", other == Ok(IDS_FIRST));
    let notes = vec![format!(
        "first_id {IDS_FIRST}: 10 IDs handed out up to u32::MAX, then EOVERFLOW twice with nothing changed"
    )];
    suite.case("id_space", notes, problems);
}

// SPDX-License-Identifier: GPL-2.0

//! The user-space client of `/dev/rslab_idmap`, run inside the test guest by
//! `tools/testing/runner.py`.
//!
//! ```text
//! rslab-idmap-client all --ktap FILE [--seconds N]   bad input, load, failslab, memcg, unloading
//! rslab-idmap-client forced --ktap FILE               memcg with nodes charged by force; needs
//!                                                      the test build loaded with forced_charge=1
//! rslab-idmap-client ids --ktap FILE                  the ID space running out; needs the
//!                                                      test build loaded with first_id=4294967286
//! rslab-idmap-client bench [--ktap FILE]              the cost of GET, INSERT and REMOVE at 64
//!                                                      and at 65,536 entries
//! ```
//!
//! Every case checks what it does against a model and reports a KTAP result, written to FILE
//! as a KUnit-style suite (`rslab_idmap_user`, `rslab_idmap_user_ids`, ...), which the runner
//! parses with the kernel's `kunit.py` together with the kernel's own suites. One module per
//! concern: [`dev`] (the ioctls), [`ktap`], and one per kind of case.

#[path = "../../../../samples/rslab_idmap_abi.rs"]
#[allow(dead_code)]
mod abi;

mod bad_input;
mod bench;
mod dev;
mod failslab;
mod ids;
mod ktap;
mod load;
mod memcg;
mod unload;

use ktap::Suite;
use std::{
    fs,
    io::{self, Write},
    process::exit,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!(
            "usage: {} all|memcg|forced|ids|bench [--ktap FILE] [--seconds N]",
            args[0]
        );
        exit(2)
    };
    if args.len() < 2 {
        usage();
    }
    let mut ktap = None;
    let mut secs = 4;
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--ktap" if i + 1 < args.len() => ktap = Some(args[i + 1].clone()),
            "--seconds" if i + 1 < args.len() => {
                secs = args[i + 1].parse().unwrap_or_else(|_| usage())
            }
            _ => usage(),
        }
        i += 2;
    }
    let suite = match args[1].as_str() {
        "all" => {
            let mut s = Suite::new("rslab_idmap_user");
            bad_input::case_bad_input(&mut s);
            load::case_load(&mut s, 2, 2, secs);
            failslab::case_failslab(&mut s, 2, secs.div_ceil(2));
            memcg::case_memcg(&mut s, false);
            unload::case_unload_busy(&mut s);
            s
        }
        "memcg" => {
            let mut s = Suite::new("rslab_idmap_user");
            memcg::case_memcg(&mut s, false);
            s
        }
        "forced" => {
            let mut s = Suite::new("rslab_idmap_user_forced");
            memcg::case_memcg(&mut s, true);
            s
        }
        "bench" => {
            let mut s = Suite::new("rslab_idmap_user_bench");
            bench::case_bench(&mut s);
            s
        }
        "ids" => {
            let mut s = Suite::new("rslab_idmap_user_ids");
            ids::case_id_space(&mut s);
            s
        }
        _ => usage(),
    };
    let text = suite.ktap();
    match ktap {
        Some(path) => {
            if let Err(e) = fs::write(&path, &text) {
                eprintln!("{path}: {e}");
                exit(1);
            }
        }
        None => print!("{text}"),
    }
    let _ = io::stdout().flush();
    exit(if suite.passed() { 0 } else { 1 });
}

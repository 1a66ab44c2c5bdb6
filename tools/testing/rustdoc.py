#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run rustdoc on rslab's module crate with the flags kbuild compiled it with.

Kbuild's `make rustdoc` documents the kernel's own crates only; it has no rule
for external modules. The module crate's exact rustc command line is in kbuild's
saved command file (rust/.rslab_main.o.cmd), so this script replays it through
rustdoc: same target, cfgs (CONFIG_*, rslab_sheaf), externs (kernel, pin_init)
and -Z features, minus what only code generation needs. The HTML lands in
OUT/rustdoc/rslab/index.html; any rustdoc warning (a broken intra-doc link, a
missing doc) fails the run.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

# rustc options that produce or place build outputs; rustdoc has no use for them.
DROP_WITH_VALUE = {'--out-dir'}
DROP_PREFIX = ('--emit', '-Zbinary_dep_depinfo', '-Zfunction-sections')


def module_rustdoc(root: Path):
    """rustdoc's command line for the module crate, from kbuild's saved rustc command line.

    Returns (env, args, source) with args[0] the rustdoc next to kbuild's rustc, or raises
    RuntimeError with the reason."""
    cmdfile = root / 'rust' / '.rslab_main.o.cmd'
    try:
        text = cmdfile.read_text()
    except OSError as e:
        raise RuntimeError(f'{e}: build the modules first')
    m = re.search(r'^savedcmd_rust/rslab_main\.o := (.*?)(?:\s+;.*)?$', text, re.M)
    if not m:
        raise RuntimeError(f'no rustc command line in {cmdfile}')
    env = dict(os.environ)
    args = []
    skip = False
    for tok in shlex.split(m.group(1)):
        if skip:
            skip = False
            continue
        if not args and re.match(r'^[A-Z_]+=', tok):
            k, v = tok.split('=', 1)
            env[k] = v
            continue
        if tok in DROP_WITH_VALUE:
            skip = True
            continue
        if tok.startswith(DROP_PREFIX):
            continue
        args.append(tok)
    # rustc, or clippy-driver in a CLIPPY=1 build; rustdoc sits next to either.
    compiler = next((c for c in ('rustc', 'clippy-driver') if args and args[0].endswith(c)), None)
    if compiler is None:
        raise RuntimeError(f'unexpected command in {cmdfile}: {args[:1]}')
    args[0] = args[0][:-len(compiler)] + 'rustdoc'
    source = args.pop()
    # Like the kernel's own rustdoc rules: unstable flags are allowed for its toolchain.
    env['RUSTC_BOOTSTRAP'] = '1'
    return env, args, source


def main():
    if len(sys.argv) != 3:
        print('usage: rustdoc.py MODULE_SOURCE_ROOT OUT_DIR', file=sys.stderr)
        return 2
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        env, args, source = module_rustdoc(root)
    except RuntimeError as e:
        print(f'rustdoc: {e}', file=sys.stderr)
        return 1
    args += ['--crate-name', 'rslab', '--document-private-items', '-o', str(out), source]
    res = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    sys.stderr.write(res.stderr)
    if res.returncode != 0:
        print('rustdoc: failed', file=sys.stderr)
        return 1
    warnings = [l for l in res.stderr.splitlines() if l.startswith('warning')]
    if warnings:
        print(f'rustdoc: {len(warnings)} warnings', file=sys.stderr)
        return 1
    print(f'rustdoc: no warnings; {out / "rslab" / "index.html"}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())

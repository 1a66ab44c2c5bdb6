#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the library's documentation examples into KUnit cases, with the kernel's own machinery.

The kernel runs its crate's doctests as KUnit with two host programs:
scripts/rustdoc_test_builder.rs, which rustdoc calls instead of a compiler for each example
(`rustdoc --test --no-run --test-builder`) and which saves the example's source, and
scripts/rustdoc_test_gen.rs, which wraps each saved example in an `extern "C"` KUnit case whose
`assert!`/`assert_eq!` report to KUnit. Both hard-code the kernel crate's paths. This script
builds them from the kernel tree in use with those paths pointed at rslab's (each replaced
string must be found, so a change upstream fails loudly), runs rustdoc on rust/rslab_main.rs with
the flags kbuild compiled it with (rustdoc.py's replay of rust/.rslab_main.o.cmd), and writes
rust/rslab_doctests_generated.rs: the generated cases and a KUnit suite, `rslab_doctests`,
listing them. rust/rslab_doctests_main.rs includes that file; Kbuild builds rslab_doctests.ko when it
exists.

Every example of rust/lib/ must become a case: `ignore` is refused (use `no_run`, which is
still compiled, and keep such an example's body from doing anything when run), and the number
of cases from each file must match the number of examples in it.

Usage: doctests.py ROOT KSRC WORKDIR
"""

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rustdoc import module_rustdoc  # noqa: E402

GENERATED = 'rust/rslab_doctests_generated.rs'
SUITE = 'rslab_doctests'

# Opening or closing fence of a code block in a doc comment.
FENCE = re.compile(r'^\s*//[/!]\s?\s*```(.*)$')


def fail(msg):
    print(f'[doctests] error: {msg}', file=sys.stderr)
    sys.exit(1)


def patched(src: Path, dst: Path, replacements):
    text = src.read_text()
    for old, new in replacements:
        if old not in text:
            fail(f'{src}: expected "{old}" (the kernel changed its doctest scripts?)')
        text = text.replace(old, new)
    dst.write_text(text)


def build_host_programs(ksrc: Path, work: Path, tests: Path, out: Path):
    """The kernel's two doctest programs, with the kernel crate's paths replaced by ours."""
    builder = work / 'rustdoc_test_builder.rs'
    gen = work / 'rustdoc_test_gen.rs'
    patched(ksrc / 'scripts/rustdoc_test_builder.rs', builder, [
        # Test names are `_doctest_main_rust_lib_cache_rs_18_0` here.
        ('split_once("_rust_kernel_")', 'split_once("_rust_")'),
        ('"rust/test/doctests/kernel/{name}"', f'"{tests}/{{name}}"'),
    ])
    patched(ksrc / 'scripts/rustdoc_test_gen.rs', gen, [
        ('fs::read_dir("rust/test/doctests/kernel")', f'fs::read_dir("{tests}")'),
        # Sources are looked up under rust/ (rust/lib/cache.rs for `lib_cache_rs`).
        ('.join("rust/kernel")', '.join("rust")'),
        ('Path::new("rust/kernel")', 'Path::new("rust")'),
        ('rust_doctest_kernel_', 'rust_doctest_rslab_'),
        ('"rust/doctests_kernel_generated.rs"', f'"{out}"'),
        ('"rust/doctests_kernel_generated_kunit.c"', f'"{work}/unused_kunit.c"'),
    ])
    bins = []
    for src in (builder, gen):
        exe = work / src.stem
        r = subprocess.run(['rustc', '--edition=2021', '-O', '-o', str(exe), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f'cannot build {src.name}:\n{r.stderr}')
        bins.append(exe)
    return bins


def examples_per_file(root: Path, sheaf: bool):
    """The code examples in each library file's doc comments, refusing `ignore`."""
    counts = {}
    for path in sorted((root / 'rust/lib').glob('*.rs')):
        if path.name == ('nosheaf.rs' if sheaf else 'sheaf.rs'):
            continue  # Not compiled in this configuration.
        n = 0
        inside = False
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = FENCE.match(line)
            if not m:
                continue
            if inside:
                inside = False
                continue
            inside = True
            attrs = {a.strip() for a in m.group(1).split(',') if a.strip()}
            where = f'{path.relative_to(root)}:{lineno}'
            if 'ignore' in attrs:
                fail(f'{where}: an `ignore` example is never compiled; make it run, or mark it '
                     f'`no_run` and keep it from doing anything when run')
            if attrs & {'should_panic', 'compile_fail'}:
                fail(f'{where}: {attrs}: a kernel doctest must build and must not panic')
            if attrs - {'rust', 'no_run'}:
                continue  # Another language (`text`, `sh`): not an example.
            n += 1
        counts[f'lib_{path.stem}_rs'] = n
    return counts


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    root, ksrc, work = (Path(a).resolve() for a in sys.argv[1:])
    tests = work / 'tests'
    out = root / GENERATED
    out.unlink(missing_ok=True)
    tests.mkdir(parents=True, exist_ok=True)
    for f in tests.iterdir():
        f.unlink()
    builder, gen = build_host_programs(ksrc, work, tests, work / 'generated.rs')

    try:
        env, args, source = module_rustdoc(root)
    except RuntimeError as e:
        fail(str(e))
    # A crate name the examples never mention, so that rustdoc adds no `extern crate` line to
    # them: they reach the library as `rslab`, a module of the crate that runs them.
    if '--crate-name' in args:
        i = args.index('--crate-name')
        del args[i:i + 2]
    sheaf = 'rslab_sheaf' in args
    args += ['--test', '--no-run', '-Zunstable-options', '--test-builder', str(builder),
             '--crate-name', 'rslab_doc_examples', str(Path(source).resolve().relative_to(root))]
    r = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f'rustdoc --test failed:\n{r.stdout}{r.stderr}')

    want = examples_per_file(root, sheaf)
    got = {}
    for t in tests.iterdir():
        file = t.name.rsplit('_', 2)[0]
        got[file] = got.get(file, 0) + 1
    for file, n in want.items():
        if got.get(file, 0) != n:
            fail(f'rust/lib/{file[4:-3]}.rs has {n} examples, rustdoc extracted '
                 f'{got.get(file, 0)}')

    r = subprocess.run([str(gen)], cwd=root, env={**env, 'srctree': str(root)},
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(f'rustdoc_test_gen failed:\n{r.stderr}')
    text = (work / 'generated.rs').read_text()
    # The file is included into a module: no inner doc comment, and the crate root's
    # `__LOG_PREFIX` (from `module!`) serves the cases' printing.
    text = re.sub(r'^//!.*\n', '', text, flags=re.M)
    text = re.sub(r'^const __LOG_PREFIX: .*\n', '', text, flags=re.M)
    names = re.findall(r'pub extern "C" fn (rust_doctest_rslab_\w+)\(', text)
    if not names:
        fail('no examples were extracted')
    cases = ''.join(f'    ::kernel::kunit::kunit_case(c"{n}", {n}),\n' for n in names)
    text = f'''// SPDX-License-Identifier: GPL-2.0
// Generated by tools/testing/doctests.py from the documentation examples of rust/; do not edit.

{text.strip()}

/// The cases of the `{SUITE}` suite, one per example.
static mut RSLAB_DOCTEST_CASES: [::kernel::bindings::kunit_case; {len(names) + 1}] = [
{cases}    ::pin_init::zeroed(),
];

::kernel::kunit_unsafe_test_suite!({SUITE}, RSLAB_DOCTEST_CASES);
'''
    out.write_text(text)
    per_file = ', '.join(f'{f[:-3].replace("_", "/", 1)}.rs {n}' for f, n in sorted(got.items()))
    print(f'[doctests] {len(names)} examples -> KUnit suite {SUITE} ({per_file})',
          file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())

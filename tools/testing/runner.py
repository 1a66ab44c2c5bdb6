#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot a test kernel, load rslab's modules, and judge the run.

x86_64 kernels boot under virtme-ng (the host's root file system, read-only).
arm64 kernels boot under qemu-system-aarch64 (TCG, "virt" machine) with a
generated initramfs: a static arm64 busybox, the modules and the guest script.

The guest writes its kernel log, reports and exit status into the output
directory (shared read-write with the guest over virtio-9p), so the verdict
never depends on virtme-ng's or QEMU's exit code or on a terminal being
attached.

Every module load prints its own KTAP stream. They are merged into one stream
(suites renumbered) and rendered with the kernel tree's own
tools/testing/kunit/kunit.py parse, which also writes JSON and JUnit files.

The run fails (exit 1, with the reason) when: the guest did not finish in
time, a module failed to load or unload, no KTAP was printed, a suite failed
or is missing, a test was skipped, or the kernel log holds an oops, BUG,
WARNING, panic, KASAN, kmemleak or lockdep report.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

TS = re.compile(r'^\[\s*\d+\.\d+\]\s?')
RESULT = re.compile(r'^(ok|not ok) (\d+)(.*)$')
SUITE_DECL = re.compile(r'kunit_tests\((\w+)\)')

# The warning that starts an expected stack dump (see judge()). The slab allocator reports
# some allocation failures inside cache creation as -EINVAL rather than -ENOMEM.
EXPECTED_DUMP = re.compile(r'__kmem_cache_create_args\(rslab_inject_\w+\) failed with error -(12|22)$')
# The lines of a dump_stack() that follows it: the header, then one frame a line (x86_64 wraps
# the frames in <TASK> ... </TASK>, arm64 does not).
DUMP_LINE = re.compile(r'^(CPU: |Tainted: |Hardware name: |Call [Tt]race:$|\s*</?TASK>$|'
                       r'\s*(\? )?\S+\+0x[0-9a-f]+/0x[0-9a-f]+( |$))')

# Kernel log lines that fail a run wherever they appear.
BAD = [
    (re.compile(r'\bBUG[: ]'), 'BUG'),
    (re.compile(r'^WARNING:|------------\[ cut here \]'), 'WARNING'),
    (re.compile(r'\bOops\b|general protection fault'), 'oops'),
    (re.compile(r'Kernel panic'), 'panic'),
    (re.compile(r'KASAN'), 'KASAN'),
    (re.compile(r'kmemleak: [1-9]\d* new suspected'), 'kmemleak'),
    # lockdep's report headers (not its boot banner, "RCU lockdep checking is enabled").
    (re.compile(r'possible (recursive|circular) locking|inconsistent lock state|'
                r'lockdep is turned off|suspicious RCU usage|bad unlock balance|'
                r'held lock freed|possible irq lock inversion|possible deadlock'), 'lockdep'),
    (re.compile(r'sleeping function called from invalid context'), 'atomic sleep'),
    (re.compile(r'UBSAN'), 'UBSAN'),
    (re.compile(r'objects remaining|Objects remaining'), 'slab leak'),
    (re.compile(r'\bCall [Tt]race:'), 'call trace'),
]


def log(msg):
    print(f'[runner] {msg}', file=sys.stderr, flush=True)


def expected_suites(root: Path, sheaf: bool):
    """Suites declared in the sources. A suite whose declaration has
    `cfg(rslab_sheaf)` on one of the three lines above it exists only when
    the kernel exports the sheaf API."""
    found = {}
    for path in sorted(list(root.glob('rust/**/*.rs')) + list(root.glob('samples/**/*.rs'))):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = SUITE_DECL.search(line)
            if not m or line.lstrip().startswith('//'):
                continue
            gated = any('cfg(rslab_sheaf)' in l for l in lines[max(0, i - 3):i])
            if sheaf or not gated:
                found[m.group(1)] = path.relative_to(root)
    return found


def sheaf_exported(kdir: Path):
    syms = {'kmem_cache_prefill_sheaf', 'kmem_cache_refill_sheaf', 'kmem_cache_return_sheaf',
            'kmem_cache_alloc_from_sheaf_noprof', 'kmem_cache_sheaf_size'}
    try:
        text = (kdir / 'Module.symvers').read_text()
    except OSError:
        return False
    have = {l.split('\t')[1] for l in text.splitlines() if l.count('\t') >= 2}
    return syms <= have


def kunit_py(kdir: Path):
    for base in (kdir, kdir / 'source'):
        p = base / 'tools/testing/kunit/kunit.py'
        if p.exists():
            return p
    return None


def merge_ktap(lines):
    """Merge the KTAP streams of several module loads into one stream.

    Returns (merged lines, number of streams)."""
    suites = []          # list of lists of lines, one per top-level test
    current = []
    streams = 0
    in_stream = False
    for raw in lines:
        line = TS.sub('', raw.rstrip('\n'))
        if line.startswith('KTAP version') or line.startswith('TAP version'):
            streams += 1
            in_stream = True
            current = []
            continue
        if not in_stream:
            continue
        if re.match(r'^1\.\.\d+$', line):
            continue
        m = RESULT.match(line)
        if m:
            current.append(m)
            suites.append(current)
            current = []
            continue
        current.append(line)
    out = ['KTAP version 1', f'1..{len(suites)}']
    for n, block in enumerate(suites, 1):
        *body, m = block
        out.extend(body)
        out.append(f'{m.group(1)} {n}{m.group(3)}')
    return out, streams


def guest_script(out: Path, modules):
    """The guest's script: POSIX sh, for bash (virtme-ng) and busybox (arm64)."""
    q = shlex.quote
    mods = ' '.join(q(str(m)) for m in modules)
    names = ' '.join(q(Path(m).stem) for m in reversed(modules))
    return f'''#!/bin/sh
# Generated by tools/testing/runner.py; runs inside the guest.
out={q(str(out))}
exec > "$out/guest.log" 2>&1
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
status=0
echo "rslab-runner: kernel $(uname -r), cmdline: $(cat /proc/cmdline)" > /dev/kmsg
# failslab for tasks that set make_it_fail only (rslab_failslab arms it around one
# operation at a time), half of their slab allocations, quietly.
fs=/sys/kernel/debug/failslab
if [ -d "$fs" ]; then
    echo 0 > "$fs/verbose" && echo Y > "$fs/task-filter" && echo N > "$fs/ignore-gfp-wait" &&
    echo N > "$fs/cache-filter" && echo 1 > "$fs/interval" && echo -1 > "$fs/times" &&
    echo 50 > "$fs/probability" || echo "rslab-runner: could not configure failslab" > /dev/kmsg
fi
for m in {mods}; do
    if ! insmod "$m"; then
        echo "rslab-runner: insmod $m failed" | tee /dev/kmsg
        status=1
    fi
done
for d in /sys/kernel/debug/rslab*; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do
        [ -f "$f" ] && cat "$f" > "$out/$(basename "$d")-$(basename "$f").txt"
    done
done
for n in {names}; do
    if grep -q "^$n " /proc/modules && ! rmmod "$n"; then
        echo "rslab-runner: rmmod $n failed" | tee /dev/kmsg
        status=1
    fi
done
if [ -w /sys/kernel/debug/kmemleak ]; then
    echo scan > /sys/kernel/debug/kmemleak
    sleep 1
    echo scan > /sys/kernel/debug/kmemleak
    cat /sys/kernel/debug/kmemleak > "$out/kmemleak.txt"
    echo "rslab-runner: kmemleak scan done, $(grep -c '^unreferenced object' "$out/kmemleak.txt") reports" > /dev/kmsg
fi
dmesg -s 4194304 > "$out/dmesg.log"
echo "$status" > "$out/guest.status"
'''


# --- arm64: QEMU virt machine with an initramfs -------------------------------------------

# QEMU's Cortex-A57 model: a 64-byte cache writeback granule (CTR_EL0.CWG = 4), which is what
# arm64's cache_line_size(), and with it kmalloc's boot-time minimum alignment without
# swiotlb, builds on. (QEMU 7.2's A64FX model, 256-byte granule, printed nothing in 180 s.)
ARM64_CPU = 'cortex-a57'
NINEP_TAG = 'rslab_out'


def cpio_newc(entries):
    """An uncompressed initramfs ("newc" cpio) from (name, mode, data, rdev) tuples, written
    without root (device nodes included)."""
    out = bytearray()

    def pad(n):
        out.extend(b'\0' * (-n % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries + [('TRAILER!!!', 0, b'', (0, 0))], 1):
        nameb = name.encode() + b'\0'
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0]
        out.extend(b'070701' + b''.join(b'%08X' % f for f in fields))
        out.extend(nameb)
        pad(110 + len(nameb))
        out.extend(data)
        pad(len(data))
    return bytes(out)


def arm64_initramfs(args, out: Path):
    """Writes out/initramfs.cpio: busybox, an /init that mounts the output directory over
    9p at the same path as on the host and runs the guest script there, then powers off."""
    q = shlex.quote
    init = f'''#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p {q(str(out))}
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {NINEP_TAG} {q(str(out))}; then
    sh {q(str(out / 'guest.sh'))}
else
    echo "rslab-init: cannot mount the output directory over 9p"
fi
sync
poweroff -f
'''
    d, x = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755
    entries = [('bin', d, b'', (0, 0)), ('dev', d, b'', (0, 0)),
               ('dev/console', stat.S_IFCHR | 0o600, b'', (5, 1)),
               ('bin/busybox', x, args.busybox.read_bytes(), (0, 0)),
               ('init', x, init.encode(), (0, 0))]
    path = out / 'initramfs.cpio'
    path.write_bytes(cpio_newc(entries))
    return path


def arm64_cmd(args, out: Path):
    initrd = arm64_initramfs(args, out)
    append = 'console=ttyAMA0 rdinit=/init panic=-1 ' + args.append
    return ['qemu-system-aarch64', '-M', 'virt', '-cpu', ARM64_CPU, '-accel', 'tcg',
            '-smp', str(args.cpus), '-m', args.memory, '-nographic', '-no-reboot',
            '-kernel', str(args.image), '-initrd', str(initrd), '-append', append.strip(),
            '-fsdev', f'local,id=out,path={out},security_model=none',
            '-device', f'virtio-9p-pci,fsdev=out,mount_tag={NINEP_TAG}']


# A boot that has not started the guest script by then has stalled (seen once under TCG on a
# loaded host: the switch to the tsc-early clocksource never completed); it is retried.
BOOT_STALL_SECONDS = 180
BOOT_ATTEMPTS = 3


def boot(args, out: Path, modules):
    script = out / 'guest.sh'
    if args.arch == 'arm64':
        # The guest sees only the output directory: the modules go there.
        mdir = out / 'modules'
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir()
        for m in modules:
            shutil.copy2(m, mdir / m.name)
        modules = [mdir / m.name for m in modules]
    script.write_text(guest_script(out, modules))
    script.chmod(0o755)
    if args.arch == 'arm64':
        cmd = arm64_cmd(args, out)
    else:
        cmd = [args.vng, '--run', str(args.kdir), '--verbose', '--user', 'root', '--rwdir',
               str(out), '--cpus', str(args.cpus), '--memory', args.memory, '--exec',
               f'sh {script}']
        if not args.kvm:
            cmd.insert(1, '--disable-kvm')
        if args.append:
            cmd += ['--append', args.append]
    for attempt in range(1, BOOT_ATTEMPTS + 1):
        for f in ['guest.status', 'dmesg.log', 'guest.log', 'kmemleak.txt', 'totals'] + \
                [p.name for p in out.glob('*.txt')]:
            (out / f).unlink(missing_ok=True)
        log(f'booting {args.kdir.name} ({"KVM" if args.kvm else "TCG"}, {args.arch}'
            f'{", " + args.append if args.append else ""})'
            f'{f", attempt {attempt} of {BOOT_ATTEMPTS}" if attempt > 1 else ""}')
        start = time.monotonic()
        with open(out / 'console.log', 'w') as vlog:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=vlog,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            stalled = timed_out = False
            while p.poll() is None:
                elapsed = time.monotonic() - start
                if not (out / 'guest.log').exists() and elapsed > BOOT_STALL_SECONDS:
                    stalled = True
                elif elapsed > args.timeout:
                    timed_out = True
                if stalled or timed_out:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    break
                time.sleep(1)
        if stalled:
            console = (out / 'console.log').read_text(errors='replace').splitlines()
            last = console[-1].strip() if console else '(no console output)'
            log(f'boot stalled: no guest script after {BOOT_STALL_SECONDS} s; last console '
                f'line: {last}')
            continue
        if timed_out:
            return f'timeout: the guest did not finish within {args.timeout} s (see {out}/console.log)'
        log(f'guest finished in {time.monotonic() - start:.1f} s')
        break
    else:
        return f'the kernel did not boot to the guest script in {BOOT_ATTEMPTS} attempts'
    if not (out / 'guest.status').exists():
        console = (out / 'console.log').read_text(errors='replace').splitlines()
        panic = [i for i, l in enumerate(console) if re.search(r'Oops|BUG:|Kernel panic|double fault', l)]
        start = max(0, panic[0] - 5) if panic else len(console) - 25
        tail = console[start:start + 30]
        return 'the guest did not complete its script; console (console.log):\n  ' + \
            '\n  '.join(tail)
    return None


def judge(args, out: Path, kunit=True):
    problems = []
    dmesg = (out / 'dmesg.log').read_text(errors='replace').splitlines()
    status = (out / 'guest.status').read_text().strip()
    if status != '0':
        problems.append('a module failed to load or unload: ' +
                        '; '.join(l for l in dmesg if 'rslab-runner:' in l and 'failed' in l))

    # rslab_failslab makes cache creation fail on purpose, and the slab allocator answers each
    # failure with a warning and a stack dump. Exactly those dumps are expected; any other
    # report fails the run.
    in_expected_dump = False
    expected_dumps = 0
    for line in dmesg:
        text = TS.sub('', line)
        if EXPECTED_DUMP.search(text):
            in_expected_dump = True
            expected_dumps += 1
            continue
        if in_expected_dump:
            if DUMP_LINE.match(text):
                continue
            in_expected_dump = False
        for rx, what in BAD:
            if rx.search(text):
                problems.append(f'kernel log has a {what} report: {text.strip()}')
                break
    if expected_dumps:
        log(f'{expected_dumps} expected stack dumps from injected cache-creation failures')

    # kmemleak (debug kernel): the guest scanned after unloading the modules. A leak whose
    # report names rslab fails the run; others belong to the kernel and are only counted.
    leaks = out / 'kmemleak.txt'
    if leaks.exists():
        reports = [r for r in leaks.read_text(errors='replace').split('unreferenced object')[1:]]
        ours = [r for r in reports if 'rslab' in r]
        log(f'kmemleak: {len(reports)} reports after the scan, {len(ours)} involving rslab')
        for r in ours[:5]:
            problems.append('kmemleak: unreferenced object' + r.rstrip())
    if not kunit:
        return problems, None
    # Only the streams our module loads printed: a kernel may run built-in suites of its own at
    # boot (7.3 runs three of the kernel crate's), which are not rslab's results.
    marker = next((i for i, l in enumerate(dmesg) if 'rslab-runner: kernel' in l), 0)
    _, boot_streams = merge_ktap(dmesg[:marker])
    if boot_streams:
        log(f'ignoring {boot_streams} KTAP stream(s) the kernel printed at boot, before the '
            f'modules were loaded')
    merged, streams = merge_ktap(dmesg[marker:])
    (out / 'ktap.log').write_text('\n'.join(merged) + '\n')
    if streams == 0:
        problems.append('no KTAP output at all: were the modules built with CONFIG_KUNIT=y?')
        return problems, None

    kp = kunit_py(args.kdir)
    if kp is None:
        problems.append(f'kunit.py not found under {args.kdir}')
        return problems, None
    res = subprocess.run([sys.executable, str(kp), 'parse', f'--json={out / "kunit.json"}',
                          f'--junit={out / "junit.xml"}', str(out / 'ktap.log')],
                         capture_output=True, text=True)
    rendered = res.stdout
    if args.mode == 'check' or res.returncode != 0:
        print(rendered, end='')
    else:
        print('\n'.join(l for l in rendered.splitlines() if 'Testing complete' in l or
                        'Totals' in l or 'passed' in l))
    try:
        result = json.loads((out / 'kunit.json').read_text())
    except (OSError, ValueError) as e:
        problems.append(f'kunit.py produced no JSON ({e}); stderr: {res.stderr.strip()}')
        return problems, None

    seen = {}
    def walk(group):
        for sub in group.get('sub_groups', []):
            seen[sub['name']] = sub['misc']
            walk(sub)
    walk(result)
    totals = result['misc']
    if res.returncode != 0 or totals['failed'] or totals['crashed'] or totals['errors']:
        problems.append(f'KUnit reports failures: {totals}')
    if totals['skipped']:
        problems.append(f'{totals["skipped"]} tests were skipped; a skip is not a pass')
    if totals['tests'] == 0:
        problems.append('KUnit ran no test')
    if args.expect_min_align:
        found = [m.group(1) for m in
                 (re.search(r'rslab_align: minimum alignment (\d+)', l) for l in dmesg) if m]
        if not found:
            problems.append('rslab_align reported no minimum alignment')
        elif any(int(m) != args.expect_min_align for m in found):
            problems.append(f'boot-time minimum kmalloc alignment {found[0]}, this boot '
                            f'expects {args.expect_min_align}')
        else:
            log(f'boot-time minimum kmalloc alignment {found[0]}, as expected')
    for suite, path in args.expected.items():
        if suite not in seen:
            problems.append(f'suite {suite} ({path}) did not run')
        elif seen[suite]['tests'] == 0:
            problems.append(f'suite {suite} ran no test')
    return problems, totals


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--kdir', type=Path, required=True, help='kernel build directory')
    ap.add_argument('--vng', default=shutil.which('vng') or 'vng')
    ap.add_argument('--out', type=Path, required=True, help='output directory')
    ap.add_argument('--mode', choices=('check', 'run', 'bench'), default='check')
    ap.add_argument('--append', default='', help='extra kernel command line')
    ap.add_argument('--timeout', type=int, default=900)
    ap.add_argument('--cpus', type=int, default=2)
    ap.add_argument('--memory', default='1G')
    ap.add_argument('--kvm', action='store_true', help='use KVM instead of TCG (x86_64)')
    ap.add_argument('--arch', choices=('x86_64', 'arm64'), default='x86_64')
    ap.add_argument('--image', type=Path, help='kernel image (arm64: arch/arm64/boot/Image)')
    ap.add_argument('--busybox', type=Path, help='static busybox for the arm64 initramfs')
    ap.add_argument('--expect-min-align', type=int, default=0,
                    help='the boot-time minimum kmalloc alignment this boot must report')
    ap.add_argument('--root', type=Path, default=Path(__file__).resolve().parents[2])
    ap.add_argument('--label', default='', help='name of this run in the summary')
    ap.add_argument('modules', nargs='+', type=Path)
    args = ap.parse_args()

    if args.arch == 'arm64' and not (args.image and args.busybox):
        ap.error('--arch arm64 needs --image and --busybox')
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    modules = [m.resolve() for m in args.modules]
    for m in modules:
        if not m.exists():
            log(f'error: module {m} does not exist; build it first')
            return 1
    sheaf = sheaf_exported(args.kdir)
    args.expected = expected_suites(args.root, sheaf)
    label = args.label or args.kdir.name
    log(f'{label}: sheaf API {"exported" if sheaf else "NOT exported (sheaf suites compiled out)"}; '
        f'expecting {len(args.expected)} suites')

    err = boot(args, args.out, modules)
    if err:
        log(f'FAILED ({label}): {err}')
        return 1
    if args.mode == 'run':
        reports = sorted(args.out.glob('*-report.txt'), key=lambda p: (p.name != 'rslab-report.txt', p.name))
        if not reports:
            log('no report was written (was debugfs mounted, did the modules load?)')
        for f in reports:
            print(f.read_text())
    if args.mode == 'bench':
        # No KUnit here: the kernel log must still be clean, and the results must exist.
        problems, _ = judge(args, args.out, kunit=False)
        if not (args.out / 'rslab_bench-results.txt').exists():
            problems.append('the benchmark wrote no results')
        for p in problems:
            log(f'FAILED ({label}): {p}')
        return 1 if problems else 0
    problems, totals = judge(args, args.out)
    if totals:
        t = totals
        (args.out / 'totals').write_text(
            f'{t["passed"]} {t["failed"] + t["crashed"] + t["errors"]} {t["skipped"]}\n')
        log(f'{label}: KUnit totals: {t["tests"]} tests, {t["passed"]} passed, '
            f'{t["failed"] + t["crashed"] + t["errors"]} failed, {t["skipped"]} skipped, '
            f'{len(args.expected)} suites expected')
    log(f'{label}: logs in {args.out} (dmesg.log, ktap.log, junit.xml, kunit.json)')
    if problems:
        for p in problems:
            log(f'FAILED ({label}): {p}')
        return 1
    log(f'{label}: PASSED')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn rslab_bench's results into ratios, tables, JSON and charts.

`make bench` boots the test kernel twice and loads rslab_bench.ko each time:

- icount (the primary figures): QEMU runs with `-icount shift=0,sleep=off`, so one guest
  nanosecond is one executed instruction and every figure is an instruction count,
  deterministic from run to run;
- wallclock: plain TCG, real time. Noisier, but it shows what instruction counts hide, such as
  the cost of an atomic read-modify-write.

Reads OUT/<mode>/rslab_bench-results.txt for each mode that ran, writes OUT/results.json (every
figure, each pair's ratio and its target's verdict, per mode; the growth series; the pressure
results; the template ID map's rows) and the charts OUT/ratios.png, OUT/kmalloc.png,
OUT/growth.png, OUT/pressure.png and OUT/idmap.png, and prints the tables. With --before DIR
(the OUT of an earlier `make bench`, say of a build with
tools/testing/bench/idmap-64-buckets.patch applied; `BENCH_BEFORE=DIR make bench`), the ID
map rows also show that run's figures, and, for instruction counts only, the ratio to them:
wall-clock figures of two boots are not comparable. Every pair was measured in the same boot,
side by side, so ratios hold under emulation where absolute wall-clock times do not.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MODES = {
    'icount': ('instructions', 'instruction count (QEMU -icount shift=0,sleep=off)'),
    'wallclock': ('ns', 'wall clock (TCG)'),
}

# (label, group, variant, baseline group, baseline variant, icount target, meaning)
# ratio = measured / baseline, lower is better; ('speedup>=', x) means baseline / rslab >= x.
PAIRS = [
    ('sheaf alloc+free', 'sheaf alloc+free', 'rslab', 'sheaf alloc+free', 'raw C kfree',
     ('<=', 1.02), 'claims(n), then Slot::alloc + drop, against the raw C calls freeing with '
     'kfree(), as a SlabBox does'),
    ('sheaf vs kmem_cache_free', 'sheaf alloc+free', 'rslab', 'sheaf alloc+free', 'raw C',
     None, 'the same against the raw C calls freeing with kmem_cache_free()'),
    ('sheaf C kfree vs C', 'sheaf alloc+free', 'raw C kfree', 'sheaf alloc+free', 'raw C',
     None, 'the raw sheaf loop freeing with kfree() against kmem_cache_free()'),
    ('sheaf alloc+free, claim()', 'sheaf alloc+free, claim()', 'rslab',
     'sheaf alloc+free, claim()', 'raw C', None,
     'claim() per object (a counter update each), against the raw C calls'),
    ('sheaf vs Arc per object', 'sheaf alloc+free vs Arc', 'rslab', 'sheaf alloc+free vs Arc',
     'Arc per object', None,
     'rslab against the posted series\' design: the same sheaf calls plus an Arc clone per '
     'allocation and a drop per free'),
    ('sheaf vs kmem_cache_alloc', 'sheaf alloc+free', 'rslab', 'kmem_cache alloc+free', 'raw C',
     ('speedup>=', 1.3), 'why sheaves: allocation from a sheaf against kmem_cache_alloc'),
    ('KmemCache::alloc vs C', 'kmem_cache alloc+free', 'rslab', 'kmem_cache alloc+free',
     'C kmem_cache_free', ('<=', 1.02),
     "KmemCache::alloc + drop (a one-word SlabBox, freed with kfree()) against a C driver's "
     'kmem_cache_alloc() + kmem_cache_free()'),
    ('C kfree vs kmem_cache_free', 'kmem_cache alloc+free', 'C kfree', 'kmem_cache alloc+free',
     'C kmem_cache_free', None,
     "a C driver's kmem_cache_alloc() + kfree() against the same with kmem_cache_free()"),
] + [
    row
    for n in (8, 96, 192, 256, 4096)
    for row in (
        (f'Box::new {n} B vs C', f'Box::new {n} B', 'rslab', f'Box::new {n} B', 'C kmalloc const',
         ('<=', 1.02), "rslab's Box::new([x; N]) + drop against C's kmalloc(N) + memset + kfree "
         'with a compile-time size'),
        (f'KBox::new {n} B vs C', f'Box::new {n} B', 'KBox::new', f'Box::new {n} B',
         'C kmalloc const', None, "the kernel crate's KBox::new + drop against the same"),
        (f'C run-time size {n} B', f'Box::new {n} B', 'C kmalloc var', f'Box::new {n} B',
         'C kmalloc const', None, "C's kmalloc() with a run-time size against a compile-time one"),
        (f'Box::new {n} B vs KBox', f'Box::new {n} B', 'rslab', f'Box::new {n} B', 'KBox::new',
         None, "rslab's Box::new against the kernel crate's KBox::new"),
    )
] + [
    ('KVec push to 1e5 vs C', 'KVec push to 1e5', 'rslab', 'KVec push to 1e5', 'C krealloc',
     None, "rslab's Vec::push growth against C's krealloc() growth with KVec's policy"),
    ('KVec (kernel) vs C', 'KVec push to 1e5', 'kernel Kmalloc', 'KVec push to 1e5',
     'C krealloc', None, "the kernel crate's KVec growth against the same"),
    ('KVec push to 1e5 vs KVec', 'KVec push to 1e5', 'rslab', 'KVec push to 1e5',
     'kernel Kmalloc', ('<=', 1.0005), "rslab's Vec growth against the kernel crate's KVec"),
]

PREFILL_TARGET = ('<=', 1.01)


def verdict(target, ratio):
    if target is None:
        return None, None
    kind, value = target
    if kind == '<=':
        return ratio <= value + 1e-12, f'<= {value:g}x'
    return 1 / ratio >= value, f'>= {value:g}x faster'


def load(out: Path):
    modes = {}
    for mode in MODES:
        f = out / mode / 'rslab_bench-results.txt'
        if f.exists():
            modes[mode] = json.loads(f.read_text())
    return modes


def pair_rows(data, mode):
    figs = {(r['group'], r['variant'], r.get('count', 0)): r for r in data['results']}
    rows = []
    for label, group, variant, bgroup, bvariant, target, meaning in PAIRS:
        a, b = figs.get((group, variant, 0)), figs.get((bgroup, bvariant, 0))
        if a is None or b is None:
            continue
        ratio = a['median_ps'] / b['median_ps']
        met, shown = verdict(target if mode == 'icount' else None, ratio)
        rows.append({'pair': label, 'meaning': meaning, 'baseline': f'{bgroup} ({bvariant})',
                     'baseline_per_op': b['median_ps'] / 1000, 'rslab_per_op': a['median_ps'] / 1000,
                     'ratio': ratio, 'target': shown, 'met': met})
    # Prefill + return of a constant count (the bounds check folds away).
    for r in data['results']:
        if r['group'] == 'prefill+return, constant count' and r['variant'] == 'rslab':
            b = figs.get((r['group'], 'raw C', r['count']))
            if b:
                ratio = r['median_ps'] / b['median_ps']
                met, shown = verdict(PREFILL_TARGET if mode == 'icount' else None, ratio)
                rows.append({'pair': f'prefill+return const {r["count"]}',
                             'meaning': 'prefill + return_with of a count known at compile '
                                        'time', 'baseline': 'prefill+return (raw C)',
                             'baseline_per_op': b['median_ps'] / 1000,
                             'rslab_per_op': r['median_ps'] / 1000,
                             'ratio': ratio, 'target': shown, 'met': met})
    # Prefill + return, on the regular path (counts up to the sheaf capacity).
    cap = data.get('sheaf_capacity', 0)
    for r in data['results']:
        if r['group'] != 'prefill+return' or r['variant'] != 'rslab':
            continue
        b = figs.get(('prefill+return', 'raw C', r['count']))
        if b is None:
            continue
        ratio = r['median_ps'] / b['median_ps']
        regular = r['count'] <= cap
        met, shown = verdict(PREFILL_TARGET if mode == 'icount' and regular else None, ratio)
        rows.append({'pair': f'prefill+return {r["count"]}',
                     'meaning': 'prefill + return_with cycle' +
                                ('' if regular else ' (oversize sheaf)'),
                     'baseline': 'prefill+return (raw C)',
                     'baseline_per_op': b['median_ps'] / 1000,
                     'rslab_per_op': r['median_ps'] / 1000,
                     'ratio': ratio, 'target': shown, 'met': met})
    return rows


def growth_series(data):
    """{group: {variant: [(count, per-op)]}} for the growth groups."""
    series = {}
    for r in data['results']:
        if r['group'] in ('prefill+return', 'prefill+fill+return'):
            series.setdefault(r['group'], {}).setdefault(r['variant'], []).append(
                (r['count'], r['median_ps'] / 1000))
    for g in series.values():
        for v in g.values():
            v.sort()
    return series


IDMAP_GROUPS = ('idmap GET', 'idmap INSERT')
IDMAP_COUNTS = (64, 65536)


def idmap_rows(data, mode, before=None):
    """The template ID map's rows: instructions (or ns) per call at each entry count, the ratio
    to the same call at 64 entries, and, given `before` (the same mode of another run), that
    run's figures; the ratio to them (`vs_before`) only in instruction counts, where two boots
    compare exactly."""
    def figs(d):
        return {(r['group'], r['count']): r['median_ps'] / 1000 for r in d['results']
                if r['group'] in IDMAP_GROUPS}
    now, old = figs(data), figs(before) if before else {}
    rows = []
    for group in IDMAP_GROUPS:
        for count in IDMAP_COUNTS:
            v, small = now.get((group, count)), now.get((group, IDMAP_COUNTS[0]))
            if v is None or small is None:
                continue
            row = {'call': group.split()[1], 'entries': count, 'per_op': v, 'vs_64': v / small}
            b, b_small = old.get((group, count)), old.get((group, IDMAP_COUNTS[0]))
            if b and b_small:
                row.update(before_per_op=b, before_vs_64=b / b_small)
                if mode == 'icount':
                    row['vs_before'] = v / b
            rows.append(row)
    return rows


def print_idmap(modes, idmap):
    for mode, rows in idmap.items():
        if not rows:
            continue
        unit, what = MODES[mode]
        has_before = any('before_per_op' in r for r in rows)
        ratio = has_before and mode == 'icount'
        note = ''
        if ratio:
            note = '; "after/before" the ratio to the --before run'
        elif has_before:
            note = '; "before" is another boot: not comparable to "after" in wall-clock time'
        print(f'template ID map (samples/rslab_idmap_map.rs), {what}: {unit} per call; "vs 64" '
              'is the ratio to the same call at 64 entries' + note)
        head = f'{"call":<7} {"entries":>7}'
        if has_before:
            head += f' {"before":>10} {"vs 64":>7}'
        head += f' {"after" if has_before else "per call":>10} {"vs 64":>7}'
        if ratio:
            head += f' {"after/before":>13}'
        print(head)
        for r in rows:
            line = f'{r["call"]:<7} {r["entries"]:>7}'
            if has_before:
                if 'before_per_op' in r:
                    line += f' {r["before_per_op"]:>10.2f} {r["before_vs_64"]:>6.3f}x'
                else:
                    line += f' {"-":>10} {"-":>7}'
            line += f' {r["per_op"]:>10.2f} {r["vs_64"]:>6.3f}x'
            if ratio:
                line += (f' {r["vs_before"]:>12.4f}x' if 'vs_before' in r else f' {"-":>13}')
            print(line)
        print()


def print_tables(modes, ratios):
    for mode, rows in ratios.items():
        unit, what = MODES[mode]
        data = modes[mode]
        print(f'rslab benchmark, {what}: {unit} per operation, medians over {data["rounds"]} '
              f'rounds after {data["warmup"]} warm-up rounds; ratio = measured / baseline')
        print()
        print(f'{"pair":<28} {"baseline":>10} {"measured":>10} {"ratio":>8}  target')
        for r in rows:
            tgt = '' if r['target'] is None else \
                f'{r["target"]}: {"met" if r["met"] else "NOT MET"}'
            print(f'{r["pair"]:<28} {r["baseline_per_op"]:>10.2f} {r["rslab_per_op"]:>10.2f} '
                  f'{r["ratio"]:>7.3f}x  {tgt}')
        print()
        spread = max((r['max_ps'] - r['min_ps']) / r['median_ps'] for r in data['results'])
        print(f'largest (max - min) / median of any figure: {100 * spread:.2f}%')
        print()


def print_growth(modes):
    for mode, data in modes.items():
        unit = MODES[mode][0]
        series = growth_series(data)
        if not series:
            continue
        cap = data.get('sheaf_capacity', 0)
        pr = series.get('prefill+return', {})
        fill = series.get('prefill+fill+return', {})
        print(f'growth ({MODES[mode][1]}), sheaf capacity {cap}: prefill+return in {unit} per '
              f'cycle, prefill+fill+return in {unit} per object')
        print(f'{"count":>6} {"x cap":>6} {"p+r raw C":>11} {"p+r rslab":>11} {"ratio":>7} '
              f'{"fill raw C":>11} {"fill rslab":>11} {"ratio":>7}')
        for (count, raw), (_, ours) in zip(pr.get('raw C', []), pr.get('rslab', [])):
            f_raw = dict(fill.get('raw C', [])).get(count)
            f_ours = dict(fill.get('rslab', [])).get(count)
            line = (f'{count:>6} {count / cap:>6.2f} {raw:>11.1f} {ours:>11.1f} '
                    f'{ours / raw:>7.3f}')
            if f_raw and f_ours:
                line += f' {f_raw:>11.1f} {f_ours:>11.1f} {f_ours / f_raw:>7.3f}'
            print(line)
        print()


def print_pressure(modes):
    for mode, data in modes.items():
        p = data.get('pressure')
        if not p:
            continue
        unit = MODES[mode][0]
        print(f'memory pressure ({MODES[mode][1]}): {p["objects"]} allocations of {p["size"]} B '
              f'under a spinlock, {p["hog_kib"]} KiB held by a hog, {p["free_kib"]} KiB free '
              f'when it stopped; latency in {unit}')
        print(f'{"method":<34} {"failures":>9} {"p50":>9} {"p99":>9} {"max":>9}')
        for m in p['methods']:
            print(f'{m["method"]:<34} {m["failures"]:>9} {m["p50_ns"]:>9} {m["p99_ns"]:>9} '
                  f'{m["max_ns"]:>9}')
        print()


def charts(out: Path, modes, ratios, idmap=None, before_label=None):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no charts', file=sys.stderr)
        return []
    written = []

    # Ratios against their targets, both modes side by side, as bars from 1.0 (parity), so
    # that a few percent show. Oversize prefills are in the growth chart.
    shown = {mode: [r for r in rows if 'oversize' not in r['meaning']]
             for mode, rows in ratios.items()}
    labels = []
    for rows in shown.values():
        for r in rows:
            if r['pair'] not in labels:
                labels.append(r['pair'])
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(labels) + 1.8))
    height = 0.38
    colors = {'icount': '#4c72b0', 'wallclock': '#dd8452'}
    for k, (mode, rows) in enumerate(shown.items()):
        by = {r['pair']: r for r in rows}
        ys = [i + (k - 0.5) * height for i, l in enumerate(labels) if l in by]
        xs = [by[l]['ratio'] for l in labels if l in by]
        ax.barh(ys, [x - 1 for x in xs], height, left=1.0, color=colors[mode],
                label=MODES[mode][1])
        for y, x in zip(ys, xs):
            ax.text(max(x, 1.0) + 0.004, y, f'{x:.3f}', va='center', fontsize=7)
    for i, l in enumerate(labels):
        target = next((r['target'] for r in ratios.get('icount', []) if r['pair'] == l), None)
        if target and target.startswith('<='):
            v = float(target.split()[1].rstrip('x'))
            ax.plot([v, v], [i - 0.45, i + 0.45], color='black', lw=1.5)
        elif target:
            v = 1 / float(target.split()[1].rstrip('x'))
            ax.plot([v, v], [i - 0.45, i + 0.45], color='black', lw=1.5, ls='--')
    ax.axvline(1.0, color='grey', lw=1.0)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('ratio measured / baseline, bars from parity (1.0; left is cheaper); black: '
                  'icount target (dashed: a speed-up target as a ratio)')
    all_x = [r['ratio'] for rows in shown.values() for r in rows]
    ax.set_xlim(min(0.55, min(all_x) - 0.05), max(1.1, max(all_x) + 0.05))
    ax.grid(axis='x', alpha=0.3)
    ax.legend(loc='lower left', fontsize=8)
    ax.set_title('rslab against its baselines, measured side by side in one boot per mode')
    fig.tight_layout()
    fig.savefig(out / 'ratios.png', dpi=110)
    plt.close(fig)
    written.append(out / 'ratios.png')

    # kmalloc against C: each variant's ratio to C's kmalloc() with a compile-time size, per
    # object size, one panel per mode.
    sizes = [8, 96, 192, 256, 4096]
    kvariants = [('C kmalloc var', "C kmalloc(), run-time size", '#8c8c8c'),
                 ('KBox::new', "kernel crate's KBox::new", '#dd8452'),
                 ('rslab', "rslab's Box::new", '#4c72b0')]
    kmodes = [m for m in modes if any(r['group'] == 'Box::new 8 B' and
                                      r['variant'] == 'C kmalloc const'
                                      for r in modes[m]['results'])]
    if kmodes:
        fig, axes = plt.subplots(1, len(kmodes), figsize=(6.2 * len(kmodes), 4.4), squeeze=False)
        for ax, mode in zip(axes[0], kmodes):
            figs = {(r['group'], r['variant']): r['median_ps'] for r in modes[mode]['results']}
            width = 0.8 / len(kvariants)
            top = 1.0
            for k, (variant, label, color) in enumerate(kvariants):
                xs, ys = [], []
                for i, n in enumerate(sizes):
                    base = figs.get((f'Box::new {n} B', 'C kmalloc const'))
                    v = figs.get((f'Box::new {n} B', variant))
                    if base and v:
                        xs.append(i + (k - (len(kvariants) - 1) / 2) * width)
                        ys.append(v / base)
                ax.bar(xs, ys, width, color=color, label=label)
                for x, y in zip(xs, ys):
                    ax.text(x, y + 0.01, f'{y:.3f}', ha='center', va='bottom', fontsize=6.5,
                            rotation=90)
                top = max([top] + ys)
            ax.axhline(1.0, color='black', lw=1.0)
            if mode == 'icount':
                ax.axhline(1.02, color='#c44e52', lw=1.0, ls='--', label='target for rslab: 1.02')
            ax.set_xticks(range(len(sizes)))
            ax.set_xticklabels([f'{n} B' for n in sizes])
            ax.set_ylim(0, top * 1.4)
            ax.set_ylabel("ratio to C's kmalloc() + kfree(), compile-time size")
            ax.set_title(MODES[mode][1], fontsize=9)
            ax.grid(axis='y', alpha=0.3)
            ax.legend(fontsize=7, loc='upper right')
        fig.suptitle('allocate, fill and free one object: ratios to C, measured side by side in '
                     'one boot per mode', fontsize=10)
        fig.tight_layout()
        fig.savefig(out / 'kmalloc.png', dpi=110)
        plt.close(fig)
        written.append(out / 'kmalloc.png')

    # Growth with the count, per mode.
    mode = 'icount' if 'icount' in modes else next(iter(modes))
    data = modes[mode]
    series = growth_series(data)
    if series:
        cap = data.get('sheaf_capacity', 0)
        unit = MODES[mode][0]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for ax, (group, ylabel) in zip(axes, [
                ('prefill+return', f'{unit} per prefill+return cycle'),
                ('prefill+fill+return', f'{unit} per object (prefill, fill, free, return)')]):
            for variant, style in (('raw C', 'o-'), ('rslab', 'x--')):
                pts = series.get(group, {}).get(variant, [])
                ax.plot([c for c, _ in pts], [v for _, v in pts], style, label=variant)
            if group == 'prefill+return':
                # A regular prefill costs ~100 instructions, an oversize one thousands.
                ax.set_yscale('log')
            ax.axvline(cap, color='#c44e52', lw=1.2)
            lo, hi = ax.get_ylim()
            ax.text(cap, hi / 1.15 if group == 'prefill+return' else hi - (hi - lo) * 0.04,
                    f' sheaf capacity {cap}', color='#c44e52', fontsize=8, va='top')
            ax.set_xlabel('objects requested')
            ax.set_ylabel(ylabel)
            ax.set_title(group)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f'sheaf cost by count, {MODES[mode][1]}: beyond the capacity a prefill '
                     f'builds an oversize sheaf', fontsize=10)
        fig.tight_layout()
        fig.savefig(out / 'growth.png', dpi=110)
        plt.close(fig)
        written.append(out / 'growth.png')

    # Pressure: failures and latency per method, per mode.
    pmodes = {m: d['pressure'] for m, d in modes.items() if d.get('pressure')}
    if pmodes:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        methods = [m['method'] for m in next(iter(pmodes.values()))['methods']]
        n_objs = next(iter(pmodes.values()))['objects']
        width = 0.8 / len(pmodes)
        for k, (mode, p) in enumerate(pmodes.items()):
            xs = [i + (k - (len(pmodes) - 1) / 2) * width for i in range(len(methods))]
            fails = [m['failures'] for m in p['methods']]
            p99 = [m['p99_ns'] for m in p['methods']]
            axes[0].bar(xs, fails, width, color=colors[mode], label=MODES[mode][1])
            axes[1].bar(xs, p99, width, color=colors[mode], label=MODES[mode][1])
            for x, f, l in zip(xs, fails, p99):
                axes[0].text(x, f, str(f), ha='center', va='bottom', fontsize=8)
                axes[1].text(x, l, str(l), ha='center', va='bottom', fontsize=8)
        axes[1].set_yscale('log')
        axes[0].set_ylim(0, n_objs * 1.4)
        for ax, title in zip(axes, [f'failures under the lock (of {n_objs})',
                                    'p99 latency per allocation, log scale '
                                    '(icount: instructions; wall clock: ns)']):
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels(methods, fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8, loc='upper right')
        axes[1].margins(y=0.15)
        n = next(iter(pmodes.values()))['objects']
        fig.suptitle(f'{n} allocations inside a spinlock under memory pressure', fontsize=10)
        fig.tight_layout()
        fig.savefig(out / 'pressure.png', dpi=110)
        plt.close(fig)
        written.append(out / 'pressure.png')

    # The template ID map: per call at 64 and 65,536 entries, before and after if given, one
    # panel per call, log scale (a chained GET grows 37-fold). Instruction counts only: a
    # before and an after from two boots compare exactly there, and not in wall-clock time.
    imodes = [m for m in modes if (idmap or {}).get(m)]
    imodes = ['icount'] if 'icount' in imodes else imodes
    if imodes:
        fig, axes = plt.subplots(len(imodes), 2, figsize=(10, 3.9 * len(imodes)), squeeze=False)
        for row, mode in zip(axes, imodes):
            rows = idmap[mode]
            for ax, call in zip(row, ('GET', 'INSERT')):
                mine = [r for r in rows if r['call'] == call]
                if not mine:
                    ax.set_visible(False)
                    continue
                # A before series only where the before run has every row of this call.
                series = ([('before', 'before_per_op', '#8c8c8c')]
                          if all('before_per_op' in r for r in mine) else [])
                series.append(('after', 'per_op', '#4c72b0'))
                width = 0.8 / len(series)
                for k, (label, key, color) in enumerate(series):
                    xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(mine))]
                    ys = [r[key] for r in mine]
                    ax.bar(xs, ys, width, color=color, label=label)
                    for x, y in zip(xs, ys):
                        ax.text(x, y * 1.08, f'{y:,.0f}', ha='center', va='bottom', fontsize=8)
                ax.set_yscale('log')
                lo = min(r[key] for r in mine for _, key, _ in series)
                hi = max(r[key] for r in mine for _, key, _ in series)
                ax.set_ylim(lo / 3, hi * 4)
                ax.set_xticks(range(len(mine)))
                ax.set_xticklabels([f'{r["entries"]:,} entries' for r in mine])
                ax.set_ylabel(f'{MODES[mode][0]} per call (log)')
                ax.set_title(f'{call}, {MODES[mode][1]}', fontsize=9)
                ax.grid(axis='y', alpha=0.3)
                ax.legend(fontsize=8, loc='upper left')
        title = 'the template map (samples/rslab_idmap_map.rs), per call'
        if before_label and any('before_per_op' in r for m in imodes for r in idmap[m]):
            title += f'; before: {before_label}'
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(out / 'idmap.png', dpi=110)
        plt.close(fig)
        written.append(out / 'idmap.png')
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out', type=Path)
    ap.add_argument('--before', type=Path, help='the OUT of an earlier run, for the ID map rows')
    ap.add_argument('--before-label', help='what the --before run measured, for the chart '
                    '(default: its directory)')
    args = ap.parse_args()

    modes = load(args.out)
    if not modes:
        print(f'no results under {args.out}', file=sys.stderr)
        return 1
    before = load(args.before) if args.before else {}
    if args.before and not before:
        print(f'no results under {args.before}', file=sys.stderr)
        return 1
    ratios = {mode: pair_rows(data, mode) for mode, data in modes.items()}
    idmap = {mode: idmap_rows(data, mode, before.get(mode)) for mode, data in modes.items()}
    try:
        revision = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        revision = None
    result = {
        'revision': revision,
        'modes': {mode: {'measure': MODES[mode][1], 'unit': f'{MODES[mode][0]} per operation '
                         '(median over rounds)', 'rounds': data['rounds'],
                         'warmup': data['warmup'], 'sheaf_capacity': data.get('sheaf_capacity'),
                         'figures': data['results'], 'ratios': ratios[mode],
                         'pressure': data.get('pressure'), 'idmap': idmap[mode]}
                  for mode, data in modes.items()},
        'before': str(args.before) if args.before else None,
        'before_label': args.before_label,
    }
    (args.out / 'results.json').write_text(json.dumps(result, indent=2) + '\n')
    print_tables(modes, ratios)
    print_growth(modes)
    print_pressure(modes)
    print_idmap(modes, idmap)
    label = args.before_label or (str(args.before) if args.before else None)
    written = charts(args.out, modes, ratios, idmap, label)
    print(f'wrote {args.out / "results.json"}' +
          ''.join(f', {p.name}' for p in written))
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn rslab_bench's results into ratios, a table, JSON and a chart.

Reads OUT/rslab_bench-results.txt (the module's debugfs file, copied by the
runner), writes OUT/results.json (the figures plus each pair's ratio and
target verdict) and OUT/bench.png, and prints the table. The ratios are the
result: every pair was measured in the same boot, side by side, so they hold
under emulation where absolute times do not.
"""

import argparse
import json
import sys
from pathlib import Path

# (group, rslab variant, baseline group, baseline variant, target, meaning)
# ratio = rslab / baseline (lower is better) unless 'inverse' is set.
TARGETS = [
    ('sheaf alloc+free', 'rslab', 'sheaf alloc+free', 'raw C', ('<=', 1.05),
     'safe sheaf allocation costs what the raw C call costs'),
    ('sheaf alloc+free', 'rslab', 'kmem_cache alloc+free', 'raw C', ('speedup>=', 1.3),
     'sheaf allocation beats kmem_cache_alloc'),
    ('kmem_cache alloc+free', 'rslab', 'kmem_cache alloc+free', 'raw C', None,
     'KmemCache::alloc against kmem_cache_alloc'),
] + [
    (f'prefill+return {n}', 'rslab', f'prefill+return {n}', 'raw C', None,
     f'prefill({n}) + return cycle') for n in (1, 10, 32, 100)
] + [
    (f'Box::new {n} B', 'rslab', f'Box::new {n} B', 'kernel Kmalloc', ('<=', 1.02),
     'rslab Kmalloc backend against the kernel crate\'s') for n in (8, 96, 192, 256, 4096)
] + [
    ('KVec push to 1e5', 'rslab', 'KVec push to 1e5', 'kernel Kmalloc', None,
     'KVec growth through both backends'),
]


def ns(ps):
    return ps / 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('out', type=Path)
    ap.add_argument('--accel', default='TCG', help='how the guest ran (TCG or KVM)')
    args = ap.parse_args()

    raw = (args.out / 'rslab_bench-results.txt').read_text()
    data = json.loads(raw)
    figs = {(r['group'], r['variant']): r for r in data['results']}

    rows = []
    for group, variant, bgroup, bvariant, target, meaning in TARGETS:
        a, b = figs.get((group, variant)), figs.get((bgroup, bvariant))
        if a is None or b is None:
            continue
        ratio = a['median_ps'] / b['median_ps']
        verdict = None
        if target:
            kind, value = target
            if kind == '<=':
                verdict = ratio <= value
                shown = f'<= {value:.2f}x'
            else:
                verdict = 1 / ratio >= value
                shown = f'>= {value:.1f}x faster'
        rows.append({
            'pair': f'{group} / {variant}' if group == bgroup else f'{group} {variant} vs {bgroup} {bvariant}',
            'meaning': meaning,
            'rslab_ns': ns(a['median_ps']), 'baseline_ns': ns(b['median_ps']),
            'baseline': f'{bgroup} ({bvariant})', 'ratio': ratio,
            'target': shown if target else None, 'met': verdict,
        })

    result = {'accel': args.accel, 'unit': 'ns/op (median over rounds)',
              'rounds': data['rounds'], 'warmup': data['warmup'],
              'figures': data['results'], 'ratios': rows}
    (args.out / 'results.json').write_text(json.dumps(result, indent=2) + '\n')

    print(f'rslab benchmark ({args.accel}; medians over {data["rounds"]} rounds after '
          f'{data["warmup"]} warm-up rounds; ratio = rslab / baseline)')
    print()
    print(f'{"operation":<26} {"baseline":<28} {"base ns":>9} {"rslab ns":>9} {"ratio":>7}  target')
    for r in rows:
        group = r['pair'].split(' / ')[0].split(' rslab vs ')[0]
        tgt = '' if r['target'] is None else f'{r["target"]}: {"met" if r["met"] else "NOT MET"}'
        print(f'{group:<26} {r["baseline"]:<28} {r["baseline_ns"]:>9.1f} {r["rslab_ns"]:>9.1f} '
              f'{r["ratio"]:>6.3f}x  {tgt}')
    print()
    print('All figures (ns/op, median [min, max]):')
    for r in data['results']:
        print(f'  {r["group"]:<24} {r["variant"]:<16} {ns(r["median_ps"]):>9.1f} '
              f'[{ns(r["min_ps"]):.1f}, {ns(r["max_ps"]):.1f}]  {r["ops"]} ops/round')

    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no chart', file=sys.stderr)
        return 0
    groups = []
    for r in data['results']:
        if r['group'] not in groups:
            groups.append(r['group'])
    fig, ax = plt.subplots(figsize=(13, 6))
    width = 0.4
    for i, g in enumerate(groups):
        variants = [r for r in data['results'] if r['group'] == g]
        for j, r in enumerate(variants):
            x = i + (j - (len(variants) - 1) / 2) * width
            err = [[ns(r['median_ps'] - r['min_ps'])], [ns(r['max_ps'] - r['median_ps'])]]
            color = '#c44e52' if r['variant'] == 'rslab' else '#4c72b0'
            ax.bar(x, ns(r['median_ps']), width, yerr=err, color=color, capsize=3,
                   label=('rslab' if r['variant'] == 'rslab' else 'baseline (raw C / kernel Kmalloc)')
                   if i == 0 or (i == 1 and r['variant'] != 'rslab' and j == 0) else None)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha='right')
    ax.set_ylabel('ns per operation (median, min-max)')
    ax.set_yscale('log')
    ax.set_title(f'rslab against its baselines, one boot, {args.accel}')
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys())
    fig.tight_layout()
    fig.savefig(args.out / 'bench.png', dpi=110)
    print(f'\nwrote {args.out / "results.json"} and {args.out / "bench.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

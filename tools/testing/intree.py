#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""rslab as kernel patch series: small standalone series kept as files, and the slab-cache
RFC generated from the sources that build rslab.ko.

  intree.py patches --ksrc DIR --cache DIR --out DIR [--series NAME...]
      Writes one directory per series to --out (`git format-patch --cover-letter --base`
      output). Each series is a branch in a git copy of the kernel tree at --ksrc (kept under
      --cache), started at that copy's one commit (the base-commit); its commits are authored
      and signed off by the generating user's git identity. Each series is then applied with
      `git am` to a clean branch and must reproduce the same tree. Prints every patch's size
      and what the static checks find (sizes, wording, base-commit).

      Series (SERIES below): `align`, one patch that tests the extended kmalloc alignment
      guarantee in the kernel crate's allocator test (tools/testing/intree/align/); `kmalloc`,
      two patches that make the kernel crate's Kmalloc allocate as kmalloc() (with the cache
      chosen at compile time for a constant layout, by the second) and free with kfree()
      (tools/testing/intree/kmalloc/); `slab`, the RFC: the library files under
      rust/lib/ become rust/kernel/alloc/slab{.rs,/}, one commit per step.

  intree.py probe --ksrc DIR --cache DIR --out DIR
      Exit 0 when `check` would find its kernel build cached (for CI's time budget).

  intree.py check --ksrc DIR --cache DIR --out DIR --make-option OPT... [--series NAME...]
      `patches`, then per series: the static checks (no patch above MAX_CHANGED changed lines,
      no out-of-tree wording, base-commit and Signed-off-by present), checkpatch.pl --strict on
      every patch, a build of the tree at every step (each patch builds on its own), the tree's
      own `kunit.py run` with the series' kunitconfig at the last step; for `align`, the same
      run on the tree without the guarantee must fail the new case, and for `kmalloc` with a
      kmalloc_type() that ignores __GFP_DMA; for `slab`, `make rustdoc`.
      Fails unless every expected suite ran and passed and nothing else failed.

The transformation from rust/lib/ is mechanical and checked: what the library keeps for its
own users is marked `// upstream-omit: begin`/`end` and left out, parts of a file that a later
patch adds are marked `// upstream-part NAME: begin`/`end` (unpaired markers stop the
generation), cfgs that only exist out of tree are evaluated (the sheaf API is there from the
patch that adds it; `Flags::as_raw()` is used inside the kernel crate; compat cfgs are probed
in the tree's sources as scripts/compat.mk does), test cfgs become a Kconfig symbol added with
the first tests, `check!` becomes KUnit's `assert!` or `assert_eq!`, `SLAB_*` bits become
RUST_CONST_HELPER_ constants, the slab allocation macros get Rust helpers in
rust/helpers/slab.c, `// upstream-as:` lines take their in-tree text, names lose the rslab prefix, paragraphs about the out-of-tree build are dropped, the
files are formatted with the tree's rustfmt configuration, and any "rslab" left over stops the
generation.
"""

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / 'rust/lib'
KUNITCONFIG = ROOT / 'tools/testing/kunit/rslab.kunitconfig'
INTREE = ROOT / 'tools/testing/intree'
# No patch may change more lines than this (insertions + deletions).
MAX_CHANGED = 400
# Words that must not appear in a patch or cover letter.
FORBIDDEN = re.compile(r'rslab|out[- ]of[- ]tree|@localhost', re.I)

KCONFIG_SYMBOL = 'RUST_SLAB_KUNIT_TEST'
TREE_DIR = 'rust/kernel/alloc/slab'

# The steps of the series: the library files each adds (`files`), the files whose KUnit suites
# it adds (`tests`: a file's `#[cfg(rslab_lib_tests)]` items are left out until then), and its
# commit message. The RFC is the typed cache and the sheaf API for their first user; the
# library's other files (the kmalloc Allocator, gfp, layout, buckets, static caches) are not
# part of it.
STEPS = [
    {
        'files': ['cache', 'helpers'],
        'tests': [],
        'subject': 'rust: alloc: add typed slab caches',
        'body': '''\
Rust code that allocates many objects of one type wants a dedicated slab
cache, and the slab sheaf API that follows in this series needs a cache
to prefill from.

Add kernel::alloc::slab with KmemCache<T>, a cache for objects of type
T, created with __kmem_cache_create_args() for T's size and alignment
and destroyed with kmem_cache_destroy() when it is dropped. The creation
flags are SLAB_HWCACHE_ALIGN, SLAB_NO_MERGE and SLAB_ACCOUNT, as
RUST_CONST_HELPER_ constants. A zero-sized or oversized T and a name
that /proc/slabinfo cannot show are errors, never warnings.''',
    },
    {
        'files': [],
        'tests': [],
        'parts': ['alloc'],
        'subject': 'rust: alloc: slab: allocate objects as SlabBox',
        'body': '''\
Add KmemCache::alloc() and SlabBox<'c, T>, an owned object that borrows
its cache. The borrow makes it a compile error to destroy a cache while
one of its objects is alive, with no reference count to touch on
allocation or free. A SlabBox is one pointer, as a C object pointer is:
it stores no cache and frees the object with kfree(), which
Documentation/core-api/memory-allocation.rst allows for
kmem_cache_alloc() objects.

Flags in GFP_SLAB_BUG_MASK are refused with an error before the slab
allocator would warn about them; the raw gfp_t comes from
Flags::as_raw().

kmem_cache_alloc() is a macro that sets the allocation tag of
CONFIG_MEM_ALLOC_PROFILING around kmem_cache_alloc_noprof(); add it to
rust/helpers/slab.c, as krealloc_node_align() is, so that the objects
are attributed in /proc/allocinfo and the slab never finds
current->alloc_tag unset.''',
    },
    {
        'files': [],
        'tests': [],
        'parts': ['init'],
        'subject': 'rust: alloc: slab: initialise cache objects in place',
        'body': '''\
Add KmemCache::init() and KmemCache::pin_init(), which allocate an
object and run an initialiser on it in place, so that a large or pinned
T never passes through the stack; on error the object is freed and
nothing leaks.''',
    },
    {
        'files': [],
        'tests': [],
        'parts': ['foreign'],
        'subject': 'rust: alloc: slab: implement ForeignOwnable for SlabBox',
        'body': '''\
A SlabBox<'static, T>, of a cache that lives as long as the kernel or
the module, can be stored in an XArray or handed to C: implement
ForeignOwnable for it, with SlabBox::into_raw() and SlabBox::from_raw().
The foreign pointer is the object pointer itself, one word, with no
allocation or reference count beside the object.''',
    },
    {
        'files': [],
        'tests': ['cache'],
        'subject': 'rust: alloc: slab: add KUnit tests for typed slab caches',
        'body': '''\
Add CONFIG_RUST_SLAB_KUNIT_TEST and the rust_slab_cache suite: objects
are dropped and freed, aligned for their type, a failed initialiser
leaks nothing, long names are copied, and zero-sized or oversized types
and flags in GFP_SLAB_BUG_MASK are refused.''',
    },
    {
        'files': ['sheaf'],
        'tests': [],
        'parts': ['sheaf'],
        'subject': 'rust: alloc: slab: add slab sheaves',
        'body': '''\
The slab allocator's sheaves let a caller reserve objects before taking
a lock and allocate them under it without a failure path: the prefill
(kmem_cache_prefill_sheaf()) may sleep and fail, the allocations from
the sheaf (kmem_cache_alloc_from_sheaf()) cannot fail for as many
objects as the sheaf holds.

Add Sheaf, which borrows its cache, and Slot, a claim on one object of
a sheaf. Claiming checks the reservation outside the critical section;
under the lock, Slot::alloc() returns a SlabBox with no error to handle
and never sleeps. The bookkeeping is one counter per sheaf and no
atomic operation per object. A cache's minimum sheaf capacity becomes a
creation option. kmem_cache_alloc_from_sheaf(), a macro, gets a Rust
helper for its allocation tag, as kmem_cache_alloc() did.

The sheaf functions are not exported to modules, so this API serves
built-in users only; a module user would come with an mm patch that
exports them.''',
    },
    {
        'files': [],
        'tests': [],
        'parts': ['refill'],
        'subject': 'rust: alloc: slab: refill sheaves',
        'body': '''\
Add Sheaf::refill() (kmem_cache_refill_sheaf()), which tops a sheaf up
for the next round while no claim on it is alive, replacing it with a
larger one when it must grow past its capacity, and then makes every
object it holds claimable, those the kernel added beyond the request
included.''',
    },
    {
        'files': [],
        'tests': [],
        'parts': ['claims'],
        'subject': 'rust: alloc: slab: claim several sheaf objects at once',
        'body': '''\
Add Sheaf::claims(), which claims n objects of a sheaf at once, all or
nothing, and hands them out as an iterator of Slots: the reservation is
checked once, before the lock, and taking the slots under the lock costs
nothing more than the loop. Slots not taken go back to the sheaf.''',
    },
    {
        'files': [],
        'tests': ['sheaf'],
        'subject': 'rust: alloc: slab: add KUnit tests for slab sheaves',
        'body': '''\
Add the rust_slab_sheaf suite: prefills hold at least what was asked
(exactly that when oversize), a sheaf hands out exactly its reservation
and then an error, allocations under a spinlock never sleep, refills
grow and keep sheaves, returns of full, partial, empty and oversize
sheaves, objects outliving their sheaf, bad flags refused, and large
prefills failing with ENOMEM and no allocation-failure report.''',
    },
]

# Doc paragraphs about the out-of-tree build are dropped in the tree.
OUT_OF_TREE = re.compile(r'scripts/(sheaf|compat)\.mk|tools/testing/|#\[path\]|out-of-tree|'
                         r'`rslab_sheaf`|cfg\(rslab_|mounted elsewhere')

# rslab-specific words and their in-tree form.
RENAMES = [
    (re.compile(r'kunit_tests\(rslab_'), 'kunit_tests(rust_slab_'),
    (re.compile(r'\brslab_lib_tests\b'), f'CONFIG_{KCONFIG_SYMBOL}'),
    (re.compile(r'c"rslab_'), 'c"slab_'),
    (re.compile(r'"rslab_(\w+): '), r'"rust_slab_\1: '),
    (re.compile(r'"rslab: '), '"slab: '),
    (re.compile(r'\$crate::rslab\b'), '$crate::alloc::slab'),
    # A doctest is a crate of its own: the macro is the kernel crate's.
    (re.compile(r'^(\s*//[!/] )crate::static_cache_allocator!', re.M),
     r'\1kernel::static_cache_allocator!'),
    (re.compile(r'`rslab` at the root of the\s*$'), 'the kernel crate\'s `alloc::slab` by'),
    (re.compile(r'\brslab::'), 'kernel::alloc::slab::'),
    (re.compile(r"rslab's calls that allocate"), 'calls of this module that allocate'),
    (re.compile(r'Every rslab call'), 'Every call here'),
    (re.compile(r'This is what rslab avoids'), 'This is what the extended guarantee avoids'),
    (re.compile(r' of rslab\'s\.'), '.'),
    (re.compile(r'rslab refuses it'), 'KmemCache::new() refuses it'),
    (re.compile(r', on every kernel rslab supports\.'), '.'),
    # The slab allocations go through the helpers of rust/helpers/slab.c (see `SLAB_HELPERS`),
    # which are C's macros with their `alloc_hooks()`, as `krealloc_node_align()`'s is.
    (re.compile(r'\bbindings::(kmem_cache_alloc(?:_from_sheaf)?)_noprof\('), r'bindings::\1('),
]

# The Rust helpers of rust/helpers/slab.c that the in-tree sources call: C's allocation macros,
# so that with CONFIG_MEM_ALLOC_PROFILING the allocation has its `current->alloc_tag` (a slab
# allocation without one warns with CONFIG_MEM_ALLOC_PROFILING_DEBUG, goes unattributed in
# /proc/allocinfo, and dereferences the NULL tag when the object extensions cannot be
# allocated).
SLAB_HELPERS = {
    'kmem_cache_alloc': """
__rust_helper void *__must_check
rust_helper_kmem_cache_alloc(struct kmem_cache *s, gfp_t flags)
{
	return kmem_cache_alloc(s, flags);
}
""",
    'kmem_cache_alloc_from_sheaf': """
__rust_helper void *__must_check
rust_helper_kmem_cache_alloc_from_sheaf(struct kmem_cache *s, gfp_t gfp,
					struct slab_sheaf *sheaf)
{
	return kmem_cache_alloc_from_sheaf(s, gfp, sheaf);
}
""",
}


def log(msg):
    print(f'[intree] {msg}', file=sys.stderr, flush=True)


def die(msg):
    log(f'error: {msg}')
    sys.exit(1)


def run(cmd, cwd=None, check=True, env=None, quiet=False):
    r = subprocess.run(cmd, cwd=cwd, env=env, text=True,
                       stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.STDOUT if quiet else None)
    if check and r.returncode != 0:
        die(f'{" ".join(map(str, cmd))} failed (exit {r.returncode})' +
            (f':\n{r.stdout[-3000:]}' if quiet and r.stdout else ''))
    return r


@functools.lru_cache(maxsize=None)
def identity():
    """(name, email) of the user who generates the series: their git identity (git's
    GIT_AUTHOR_NAME/EMAIL or user.name/email), the author who signs off every patch."""
    r = run(['git', '-C', str(ROOT), 'var', 'GIT_AUTHOR_IDENT'], check=False, quiet=True)
    m = re.match(r'^(.*) <([^>]*)> \d+ [+-]\d{4}$', r.stdout.strip()) if r.returncode == 0 \
        else None
    if not m or not m.group(1) or not m.group(2) or FORBIDDEN.search(r.stdout):
        die('no usable git identity: set user.name and user.email (git config), the author and '
            'Signed-off-by of the series')
    return m.group(1), m.group(2)


def git(repo, *args, quiet=True, env=None):
    name, email = identity()
    return run(['git', '-C', str(repo), '-c', f'user.name={name}', '-c', f'user.email={email}',
                '-c', 'advice.detachedHead=false', '-c', 'gc.auto=0', *args], quiet=quiet,
               env=env)


# --- The transformation ----------------------------------------------------------------------

def probe_cfgs(ksrc: Path):
    """The out-of-tree cfgs' values for the tree at `ksrc` (scripts/compat.mk's probes)."""
    def has(path, text):
        p = ksrc / path
        return p.exists() and text in p.read_text(errors='replace')
    return {
        'rslab_sheaf': True,
        # The library as part of the kernel crate: `Flags::as_raw()` is usable.
        'rslab_kernel_crate': True,
        'rslab_param_value_copy': has('rust/kernel/module_param.rs', 'pub fn value_ref'),
        'rslab_pin_init_raw': has('rust/pin-init/src/lib.rs', 'pub unsafe fn raw_try_init'),
        # The library's C helpers and the kmalloc test's C side are C files of the out-of-tree
        # modules; in the tree, the kernel crate's helper path and no such test.
        'rslab_helpers': False,
        'rslab_kmalloc_test_c': False,
    }


CFG_ATTR = re.compile(r'^\s*#\[cfg\((not\()?(rslab_\w+)\)?\)\]\s*$')


def item_end(lines, start):
    """Index one past the item (or statement) that starts at `start`: its attributes, then up
    to the line that closes its braces or ends with `;`."""
    depth = 0
    for i in range(start, len(lines)):
        code = re.sub(r'"([^"\\]|\\.)*"', '""', lines[i].split('//')[0])
        depth += code.count('{') - code.count('}')
        s = code.rstrip()
        if depth <= 0 and (s.endswith(';') or s.endswith('}') or s.endswith('},')) and \
                not s.lstrip().startswith('#['):
            return i + 1
    die(f'cannot find the end of the item at line {start + 1}')


def eval_cfgs(lines, cfgs, name):
    """Removes `#[cfg(X)]` / `#[cfg(not(X))]` for the out-of-tree cfgs X: the attribute when
    it holds, the item when it does not."""
    out = []
    i = 0
    while i < len(lines):
        m = CFG_ATTR.match(lines[i])
        if m and m.group(2) in cfgs:
            value = cfgs[m.group(2)] != bool(m.group(1))
            if value:
                i += 1
            else:
                # The item's doc comment goes with it, whether above or below the cfg.
                while out and re.match(r'^\s*///', out[-1]):
                    out.pop()
                i = item_end(lines, i + 1)
            continue
        if m and m.group(2) != 'rslab_lib_tests':
            die(f'{name}:{i + 1}: unknown cfg {m.group(2)}')
        out.append(lines[i])
        i += 1
    text = '\n'.join(out)
    sheaf = str(cfgs.get('rslab_sheaf', True)).lower()
    return text.replace('cfg!(rslab_sheaf)', sheaf).split('\n')


def drop_paragraphs(lines):
    """Drops doc-comment paragraphs that are about the out-of-tree build."""
    out = []
    i = 0
    doc = re.compile(r'^\s*//[!/]')
    while i < len(lines):
        if not doc.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and doc.match(lines[j]) and lines[j].strip() not in ('//!', '///'):
            j += 1
        para = lines[i:j]
        if para and OUT_OF_TREE.search(' '.join(para)):
            # Also drop the blank doc line that separated it from the next paragraph.
            if j < len(lines) and lines[j].strip() in ('//!', '///'):
                j += 1
        else:
            out.extend(para)
            if j < len(lines) and lines[j].strip() in ('//!', '///'):
                out.append(lines[j])
                j += 1
        i = max(j, i + 1)
    # A doc block must not end with a blank doc line before the item.
    cleaned = []
    for k, l in enumerate(out):
        nxt = out[k + 1] if k + 1 < len(out) else ''
        if l.strip() in ('//!', '///') and not re.match(r'^\s*//[!/]', nxt) and \
                not (l.strip() == '//!' and nxt.strip() == ''):
            continue
        if l.strip() == '//!' and nxt.strip() == '':
            continue
        cleaned.append(l)
    return cleaned


# What the library keeps for its own users but the in-tree form leaves out (usercopy helpers,
# debug flags, extra sheaf operations, tests of private slab internals) is marked in the
# sources with a line `// upstream-omit: begin` and a line `// upstream-omit: end`; the lines
# from one to the other are left out. A part of a file that a later patch of the series adds
# is marked `// upstream-part NAME: begin` ... `// upstream-part NAME: end`, NAME being one of
# that step's `parts`. Markers must pair up and nest, and a patch that still refers to what
# was left out does not build, which check-intree reports.
MARKER = re.compile(r'^\s*// upstream-(omit|part (\w+)): (begin|end)\s*$')
# A line `CODE // upstream-as: TEXT` is `TEXT` in the tree, at the line's indentation: for the
# few expressions whose out-of-tree form uses what the tree leaves out.
AS_MARKER = re.compile(r'^(\s*)\S.*?\s*// upstream-as: (.*)$')


def strip_omitted(lines, name, parts=None):
    """`lines` without the omitted blocks and the parts not in `parts` (None: every part)."""
    known = {p for s in STEPS for p in s.get('parts', [])}
    out = []
    stack = []
    for i, l in enumerate(lines):
        a = AS_MARKER.match(l)
        if a:
            l = a.group(1) + a.group(2)
        m = MARKER.match(l)
        if not m:
            if 'upstream-' in l and re.search(r'//\s*upstream-', l):
                die(f'{name}:{i + 1}: malformed upstream marker: {l.strip()}')
            if all(keep for _, _, keep in stack):
                out.append(l)
            continue
        kind = m.group(1)
        part = m.group(2)
        if part is not None and part not in known:
            die(f'{name}:{i + 1}: no step adds the part {part}')
        if m.group(3) == 'begin':
            keep = False if part is None else (parts is None or part in parts)
            stack.append((kind, i, keep))
        else:
            if not stack or stack[-1][0] != kind:
                die(f'{name}:{i + 1}: upstream-{kind} ends without its begin')
            stack.pop()
    if stack:
        die(f'{name}:{stack[-1][1] + 1}: upstream-{stack[-1][0]} begins and never ends')
    return out


def rust_chars(text, start=0, depth=0):
    """(offset, character, bracket depth before it) for each character of `text` from `start`
    that is not inside a string literal, `depth` being the depth at `start`."""
    in_str = False
    p = start
    while p < len(text):
        c = text[p]
        if in_str:
            if c == '\\':
                p += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        else:
            yield p, c, depth
            if c in '([{':
                depth += 1
            elif c in ')]}':
                depth -= 1
        p += 1


def eq_sides(cond):
    """(left, right) when `cond` is one comparison `left == right` at its top level (no `&&`,
    `||` or other `==` beside it), else None."""
    at = None
    for p, c, depth in rust_chars(cond):
        if depth != 0 or (at is not None and p == at + 1):
            continue
        if cond.startswith(('&&', '||'), p):
            return None
        if cond.startswith('==', p):
            if at is not None:
                return None
            at = p
    if at is None:
        return None
    left, right = cond[:at].strip(), cond[at + 2:].strip()
    if not left or not right or left.endswith(('!', '<', '>', '=')) or right.startswith('='):
        return None
    return left, right


def kunit_asserts(text, name):
    """The library's `check!(cond, fmt, args..)` (which returns an error, so that destructors
    run) becomes KUnit's `assert!(cond)` of `#[kunit_tests]`, which takes no message, or its
    `assert_eq!(left, right)` for a comparison `left == right`."""
    out = []
    i = 0
    call = re.compile(r'\bcheck!\(')
    while True:
        m = call.search(text, i)
        if not m:
            out.append(text[i:])
            break
        k = m.end()
        comma, p = None, None
        for q, c, depth in rust_chars(text, k, 1):
            if depth == 1 and c in ')]}':
                p = q + 1
                break
            if depth == 1 and c == ',' and comma is None:
                comma = q
        if p is None:
            die(f'{name}: unterminated check! at offset {m.start()}')
        cond = text[k:comma if comma is not None else p - 1].strip()
        out.append(text[i:m.start()])
        sides = eq_sides(cond)
        out.append(f'assert_eq!({sides[0]}, {sides[1]})' if sides else f'assert!({cond})')
        i = p
    text = ''.join(out)
    return re.sub(r'^\s*use super::super::check;\n', '', text, flags=re.M)


def rustfmt(text, name, ksrc):
    """The text as the kernel's rustfmt configuration formats it."""
    r = subprocess.run(['rustfmt', '--edition', '2021', '--config-path',
                        str(ksrc / '.rustfmt.toml')], input=text, text=True,
                       capture_output=True)
    if r.returncode != 0:
        die(f'rustfmt of the in-tree {name} failed:\n{r.stderr[-2000:]}')
    return r.stdout


# The bits of `SLAB_*` flags: in the tree, the constants of rust/bindings/bindings_helper.h.
SLAB_BIT = re.compile(r'1 << bindings::_slab_flag_bits__(SLAB_\w+)')


def transform(text, cfgs, name, ksrc=None, parts=None):
    lines = strip_omitted(text.split('\n'), name, parts)
    lines = eval_cfgs(lines, cfgs, name)
    lines = drop_paragraphs(lines)
    text = '\n'.join(lines)
    for rx, repl in RENAMES:
        text = rx.sub(repl, text)
    text = kunit_asserts(text, name)
    text = SLAB_BIT.sub(r'bindings::\1', text)
    left = [f'{name}:{n}: {l.strip()}' for n, l in enumerate(text.split('\n'), 1)
            if re.search(r'rslab', l, re.I)]
    if left:
        die('"rslab" left in the in-tree sources (add a rename or fix the source):\n  ' +
            '\n  '.join(left))
    if ksrc is not None:
        text = rustfmt(text, name, ksrc)
    return text


# The modules of kernel::alloc::slab that are the kernel crate's API; the others are private.
PUBLIC = ('cache', 'sheaf')


def mod_file(files, cfgs, used, ksrc, parts):
    """rust/kernel/alloc/slab.rs from rust/lib/mod.rs: the modules of `files`, and of the
    library's own items only those that `used` (the in-tree text of the files) uses."""
    src = (LIB / 'mod.rs').read_text()
    lines = eval_cfgs(strip_omitted(src.split('\n'), 'mod.rs', parts), cfgs, 'mod.rs')
    head = ['// SPDX-License-Identifier: GPL-2.0', '',
            '//! Slab caches and sheaves.', '//!']
    # The module list of the header, for the public modules present.
    i = 0
    while i < len(lines) and not lines[i].startswith('//! - '):
        i += 1
    keep = False
    while i < len(lines) and lines[i].startswith('//!'):
        m = re.match(r'^//! - \[`(\w+)`\]', lines[i])
        if m:
            keep = m.group(1) in files and m.group(1) in PUBLIC
        if lines[i].strip() == '//!':
            break
        if keep:
            head.append(lines[i])
        i += 1
    body = [f'{"pub " if f in PUBLIC else ""}mod {f};' for f in sorted(files)]
    # Top-level items after the module declarations: kept if used.
    rest = lines[next(k for k, l in enumerate(lines) if l.startswith('pub mod ')):]
    items, cur = [], []
    for l in rest:
        if l.startswith('pub mod ') or l.startswith('#[path'):
            continue
        cur.append(l)
        if l.startswith('}') or (l.endswith(';') and not l.startswith((' ', '#', '/'))):
            items.append(cur)
            cur = []
    items.append(cur)
    kept = []
    for it in items:
        text = '\n'.join(it).strip('\n')
        if not text.strip():
            continue
        m = re.search(r'(?:fn|const|macro_rules!|use)\s+(\w+)', text)
        if m and not re.search(rf'super::{m.group(1)}\b|\b{m.group(1)}!', used):
            continue
        kept.append(text)
    out = '\n'.join(head) + '\n\n' + '\n'.join(body) + '\n\n' + '\n\n'.join(kept) + '\n'
    out = re.sub(r'\n{3,}', '\n\n', out)
    return transform(out, cfgs, 'slab.rs', ksrc, parts)


KCONFIG_ENTRY = f'''config {KCONFIG_SYMBOL}
	bool "KUnit tests for Rust slab caches and sheaves" if !KUNIT_ALL_TESTS
	default KUNIT_ALL_TESTS
	help
	  This option enables KUnit tests for kernel::alloc::slab: typed
	  slab caches and slab sheaves. These are only for development and
	  testing, not for regular kernel use cases.

	  If unsure, say N.

'''


def tree_files(step, cfgs, ksrc):
    """{path: text} of everything the series has changed or added up to `step` (0-based)."""
    files = [f for s in STEPS[:step + 1] for f in s['files']]
    tested = {f for s in STEPS[:step + 1] for f in s['tests']}
    parts = {p for s in STEPS[:step + 1] for p in s.get('parts', [])}
    # The sheaf API is there from the patch that adds it; tests from the patch that adds them.
    cfgs = dict(cfgs, rslab_sheaf='sheaf' in files)
    out = {}
    for f in files:
        c = cfgs if f in tested else dict(cfgs, rslab_lib_tests=False)
        out[f'{TREE_DIR}/{f}.rs'] = transform((LIB / f'{f}.rs').read_text(), c, f'{f}.rs',
                                              ksrc, parts)
    out[f'{TREE_DIR}.rs'] = mod_file(files, cfgs, '\n'.join(out.values()), ksrc, parts)
    alloc = (ksrc / 'rust/kernel/alloc.rs').read_text()
    decls = list(re.finditer(r'^pub mod \w+;\n', alloc, re.M))
    if not decls:
        die('rust/kernel/alloc.rs declares no module')
    last = decls[-1]
    out['rust/kernel/alloc.rs'] = alloc[:last.end()] + 'pub mod slab;\n' + alloc[last.end():]
    # The slab allocation macros the sources call, as Rust helpers.
    used = [h for h in SLAB_HELPERS
            if any(re.search(rf'\bbindings::{h}\(', t) for t in out.values())]
    if used:
        slab_c = (ksrc / 'rust/helpers/slab.c').read_text()
        out['rust/helpers/slab.c'] = slab_c + ''.join(SLAB_HELPERS[h] for h in used)
    # The SLAB_* flags the sources use, as constants of the bindings.
    flags = sorted({m for t in out.values() for m in re.findall(r'bindings::(SLAB_\w+)', t)})
    if flags:
        helper = (ksrc / 'rust/bindings/bindings_helper.h').read_text()
        anchor = re.search(r'^const gfp_t RUST_CONST_HELPER___GFP_NOWARN = .*\n', helper, re.M)
        if not anchor:
            die('rust/bindings/bindings_helper.h has no RUST_CONST_HELPER___GFP_NOWARN to add '
                'the SLAB_* constants after')
        add = ''.join(f'const slab_flags_t RUST_CONST_HELPER_{f} = {f};\n' for f in flags)
        out['rust/bindings/bindings_helper.h'] = helper[:anchor.end()] + add + \
            helper[anchor.end():]
    if tested:
        # Last in the `if RUST_KUNIT_TESTS` block of the Rust KUnit options.
        kconfig = (ksrc / 'rust/kernel/Kconfig.test').read_text()
        end = kconfig.rstrip('\n').rfind('\nendif')
        if end < 0:
            die('rust/kernel/Kconfig.test has no `endif` to add the option before')
        out['rust/kernel/Kconfig.test'] = kconfig[:end + 1] + KCONFIG_ENTRY + kconfig[end + 1:]
    return out


# --- The git tree and the series ---------------------------------------------------------------

def kernel_version(ksrc: Path):
    """(VERSION.PATCHLEVEL, VERSION.PATCHLEVEL.SUBLEVEL) from the tree's Makefile."""
    mk = (ksrc / 'Makefile').read_text()
    v = {k: re.search(rf'^{k} = (\d+)', mk, re.M).group(1)
         for k in ('VERSION', 'PATCHLEVEL', 'SUBLEVEL')}
    return f'{v["VERSION"]}.{v["PATCHLEVEL"]}', \
        f'{v["VERSION"]}.{v["PATCHLEVEL"]}.{v["SUBLEVEL"]}'


# The base commit is made with a fixed identity and date from the tree alone, so that the same
# kernel source gives the same base-commit on every machine.
BASE_ENV = {'GIT_AUTHOR_NAME': 'Linux source', 'GIT_AUTHOR_EMAIL': 'linux-source@kernel.org',
            'GIT_COMMITTER_NAME': 'Linux source',
            'GIT_COMMITTER_EMAIL': 'linux-source@kernel.org',
            'GIT_AUTHOR_DATE': '2000-01-01T00:00:00Z',
            'GIT_COMMITTER_DATE': '2000-01-01T00:00:00Z'}


def base_tree(ksrc: Path, cache: Path):
    """A git repository of the pristine kernel source, made once per source version; tag
    `base` is its one commit, the series' base-commit."""
    repo = cache / ksrc.name / 'linux'
    stamp = repo / '.git/rslab-base'
    if not stamp.exists():
        log(f'making a git repository of {ksrc} in {repo} (once per kernel source)')
        shutil.rmtree(repo, ignore_errors=True)
        repo.parent.mkdir(parents=True, exist_ok=True)
        run(['cp', '-a', str(ksrc), str(repo)])
        git(repo, 'init', '-q', '-b', 'linux')
        git(repo, 'add', '-A', '-f', '.')
        git(repo, 'commit', '-q', '--no-verify', '-m', 'base')
        git(repo, 'tag', 'base')
        stamp.write_text('ok\n')
    # The Debian source has no upstream history: the base is a commit of that source in this
    # repository, made from its tree alone and so the same wherever it is made.
    _, full = kernel_version(ksrc)
    msg = f'Linux {full}\n\nThe source of {ksrc.name}, without history.\n'
    tree = git(repo, 'rev-parse', 'base^{tree}').stdout.strip()
    env = dict(os.environ, **BASE_ENV)
    commit = run(['git', '-C', str(repo), 'commit-tree', tree, '-m', msg], env=env,
                 quiet=True).stdout.strip()
    if git(repo, 'rev-parse', 'base^{commit}').stdout.strip() != commit:
        git(repo, 'tag', '-f', 'base', commit)
    return repo


def base_paragraph(ksrc: Path):
    """The cover letter's statement of what the series is based on."""
    short, full = kernel_version(ksrc)
    return textwrap.fill(f'Based on v{short}, made against {full} ({ksrc.name}, as Debian '
                         f'packages it). That source has no git history, so the base-commit '
                         f'below is a commit of it in a repository of its own, not an upstream '
                         f'commit.', width=72)


def rfc_cover(nsteps):
    """The RFC series' cover letter: subject line, then the text."""
    return f'''rust: alloc: slab caches and sheaves

This RFC adds kernel::alloc::slab: typed slab caches (KmemCache<T>,
whose objects are SlabBox<'c, T>) and wrappers of the slab sheaf API
(Sheaf, Slot). It is the cache and the sheaf API only, as much as its
first user needs; it has no in-tree user yet, which is why it is an RFC.

The intended first user is the XArray preload of the posted series
"rust: mm: add abstractions for allocating from a `sheaf`": a sheaf of
radix_tree_node_cachep nodes is prefilled before the lock is taken, and
when xas_store() reports -ENOMEM under the lock, a node is taken from
the sheaf, set as xas.xa_alloc and the store retried, never dropping
the lock. With this series that is KmemCache::prefill() and
Sheaf::claim() before the lock, where they may sleep and fail, and
Slot::alloc() under it, which returns the object with no error to
handle and never sleeps; Sheaf::refill() tops the sheaf up for the next
store, and dropping the sheaf returns the unused objects. A sheaf
borrows its cache instead of holding a reference count, and its
bookkeeping is one counter, so nothing atomic is touched per object.

What the one-word SlabBox changes there: a SlabBox is the object pointer
and nothing else (it frees with kfree(), so it carries no cache
pointer), and a SlabBox<'static, T> implements ForeignOwnable (patch 4).
An entry of a Rust XArray can therefore itself be an object of a typed
cache, stored as its own pointer and allocated from a sheaf under the
same lock as the node the preload provides, with no second allocation
and no reference count per entry. A box that also held a reference to
its cache would be two words, and could pass through ForeignOwnable's
single pointer only by storing the reference in the object or by
allocating for it.

What this RFC lacks for that user: a KmemCache can only be created here,
not wrap a cache that C owns, such as radix_tree_node_cachep.

The sheaf functions (kmem_cache_prefill_sheaf() and friends) are not
exported to modules, so the sheaf API serves built-in users only; a
module user would need an mm patch that exports them, sent with that
user.

Patches 1-4 add the cache, patch 5 its KUnit tests, patches 6-8 the
sheaf API and patch 9 its KUnit tests. The kmalloc side (the test of the
extended kmalloc alignment guarantee, and Kmalloc allocating as
kmalloc() does) is sent as series of its own.

Testing, on 7.3.4: each of the {nsteps} patches builds on its own;
tools/testing/kunit/kunit.py run --arch=x86_64 with CONFIG_RUST,
CONFIG_KUNIT, CONFIG_RUST_KUNIT_TESTS, CONFIG_{KCONFIG_SYMBOL} and
CONFIG_RUST_KERNEL_DOCTESTS runs the new suites (rust_slab_cache and
rust_slab_sheaf) and the documentation examples as kernel doctests under
QEMU; all pass.

{{base}}
'''


# The series. `dir`: a series kept as files (cover.txt: subject line, then the text;
# NNNN-*.patch: the commit message, a line `---`, the diff); `steps`: generated from rust/lib/.
# `suites`: the KUnit suites that must run and pass (None: every rust_slab_* suite of the
# included files); `mutation`: a change to the tree under which the named cases must fail.
SERIES = [
    {
        'name': 'align',
        'dir': INTREE / 'align',
        'kunitconfig': INTREE / 'align/kunitconfig',
        'kernel_args': ['slab_debug'],
        'suites': ['rust_allocator', 'rust_kvec'],
        'mutation': {
            'diff': INTREE / 'align/before-ad59baa31695.diff',
            'what': 'create_boot_cache() as before ad59baa31695',
            'suite': 'rust_allocator',
            'fail': ['test_alignment_not_power_of_two'],
            'pass': ['test_alignment'],
        },
    },
    {
        'name': 'kmalloc',
        'dir': INTREE / 'kmalloc',
        'kunitconfig': INTREE / 'kmalloc/kunitconfig',
        'suites': ['rust_allocator', 'rust_kvec'],
        'mutation': {
            'diff': INTREE / 'kmalloc/mutation-dma-type.diff',
            'what': 'a Rust kmalloc_type() that ignores __GFP_DMA',
            'suite': 'rust_allocator',
            'fail': ['test_kmalloc_cache_choice'],
            'pass': ['test_alignment'],
        },
    },
    {
        'name': 'slab',
        'prefix': 'RFC PATCH',
        'steps': STEPS,
        'kunitconfig': KUNITCONFIG,
        'suites': None,
        'doctests': 'alloc_slab',
        'rustdoc': 'alloc/slab',
    },
]


def series_by_name(names):
    if not names:
        return SERIES
    known = {s['name']: s for s in SERIES}
    for n in names:
        if n not in known:
            die(f'no series {n} (known: {", ".join(known)})')
    return [known[n] for n in names]


def expected_suites(series):
    if series['suites'] is not None:
        return set(series['suites'])
    expected = set()
    for f in LIB.glob('*.rs'):
        for m in re.finditer(r'kunit_tests\(rslab_(\w+)\)', f.read_text()):
            if any(f.stem in s['tests'] for s in series['steps']):
                expected.add(f'rust_slab_{m.group(1)}')
    return expected


def split_patch(path: Path):
    """(message, diff) of a patch kept as a file."""
    msg, sep, diff = path.read_text().partition('\n---\n')
    if not sep or not diff.startswith('diff --git'):
        die(f'{path}: expected the commit message, a line "---", then the diff')
    return msg.strip('\n') + '\n', diff


def git_apply(repo: Path, diff: str, *args):
    return subprocess.run(['git', '-C', str(repo), 'apply', *args], input=diff, text=True,
                          capture_output=True)


def make_series(series, ksrc: Path, cache: Path, out: Path):
    """Commits the series on branch `name` from `base` and writes it with format-patch to
    `out`; returns (repo, commits, patches)."""
    name = series['name']
    repo = base_tree(ksrc, cache)
    git(repo, 'checkout', '-q', '-f', '-B', name, 'base')
    git(repo, 'clean', '-q', '-fdx')
    commits = []
    if 'dir' in series:
        for p in sorted(series['dir'].glob('[0-9][0-9][0-9][0-9]-*.patch')):
            msg, diff = split_patch(p)
            r = git_apply(repo, diff, '--index')
            if r.returncode != 0:
                die(f'{p.name} does not apply to {ksrc.name}: {r.stderr.strip()}')
            git(repo, 'commit', '-q', '-s', '--no-verify', '-m', msg)
            commits.append(git(repo, 'rev-parse', 'HEAD').stdout.strip())
        subject, blurb = (series['dir'] / 'cover.txt').read_text().split('\n', 1)
    else:
        cfgs = probe_cfgs(ksrc)
        log(f'{ksrc.name}: cfgs evaluated as {cfgs}')
        for n, step in enumerate(series['steps']):
            changed = tree_files(n, cfgs, ksrc)
            for path, text in changed.items():
                p = repo / path
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
            git(repo, 'add', '-f', '--', *changed)
            msg = step['subject'] + '\n\n' + step['body'] + '\n'
            git(repo, 'commit', '-q', '-s', '--no-verify', '-m', msg)
            commits.append(git(repo, 'rev-parse', 'HEAD').stdout.strip())
        subject, blurb = rfc_cover(len(series['steps'])).split('\n', 1)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    prefix = series.get('prefix', 'PATCH')
    git(repo, 'format-patch', '-q', '--cover-letter', '--no-signature', '--base=base',
        f'--subject-prefix={prefix}', '-o', str(out), f'base..{name}')
    blurb = blurb.replace('{base}', base_paragraph(ksrc))
    cover = next(out.glob('0000-*.patch'))
    text = cover.read_text()
    text = text.replace('*** SUBJECT HERE ***', subject).replace('*** BLURB HERE ***',
                                                                   blurb.strip('\n'))
    cover.write_text(text)
    patches = sorted(p for p in out.glob('*.patch') if not p.name.startswith('0000-'))
    # The series must apply to a clean tree and give exactly the same result.
    git(repo, 'checkout', '-q', '-f', '-B', f'{name}-am', 'base')
    git(repo, 'am', '-q', '--committer-date-is-author-date', *map(str, patches))
    if git(repo, 'rev-parse', f'{name}-am^{{tree}}').stdout != \
            git(repo, 'rev-parse', f'{name}^{{tree}}').stdout:
        die(f'{name}: git am of the series does not reproduce the generated tree')
    git(repo, 'checkout', '-q', '-f', name)
    log(f'{name}: {len(patches)} patches and a cover letter in {out}; git am applies them to a '
        f'clean {ksrc.name} tree')
    return repo, commits, patches


def static_checks(series, repo: Path, commits, patches, out: Path):
    """Sizes, wording, base-commit and sign-off; returns (problems, rows), rows being
    (patch file, lines, changed lines)."""
    problems, rows = [], []
    name, email = identity()
    cover = next(out.glob('0000-*.patch'))
    for p in [cover, *patches]:
        for n, l in enumerate(p.read_text().split('\n'), 1):
            if FORBIDDEN.search(l):
                problems.append(f'{p.name}:{n}: out-of-tree wording: {l.strip()[:80]}')
    if not re.search(r'^base-commit: [0-9a-f]{40}$', cover.read_text(), re.M):
        problems.append(f'{cover.name}: no base-commit')
    for c, p in zip(commits, patches):
        stat = git(repo, 'diff', '--shortstat', f'{c}^', c).stdout
        changed = sum(int(x) for x in re.findall(r'(\d+) (?:insertion|deletion)', stat))
        text = p.read_text()
        rows.append((p.name, len(text.split('\n')) - 1, changed))
        if changed > MAX_CHANGED:
            problems.append(f'{p.name}: {changed} changed lines (at most {MAX_CHANGED})')
        author = git(repo, 'log', '-1', '--format=%an <%ae>', c).stdout.strip()
        if f'Signed-off-by: {name} <{email}>' not in text or author != f'{name} <{email}>':
            problems.append(f'{p.name}: not authored and signed off by {name} <{email}>')
    log(f'{series["name"]} [{series.get("prefix", "PATCH")}]: ' + ', '.join(
        f'{p} {n} lines ({c} changed)' for p, n, c in rows))
    return problems, rows


def make_all(ksrc: Path, cache: Path, out: Path, names):
    """Every selected series; returns [(series, repo, commits, patches, problems)]."""
    made = []
    for series in series_by_name(names):
        o = out / series['name']
        repo, commits, patches = make_series(series, ksrc, cache, o)
        problems, _ = static_checks(series, repo, commits, patches, o)
        for p in problems:
            log(f'{series["name"]}: {p}')
        made.append((series, repo, commits, patches, problems))
    return made


# --- The checks ------------------------------------------------------------------------------

def checkpatch(repo: Path, patches):
    ignore = 'FILE_PATH_CHANGES,UNKNOWN_COMMIT_ID'
    bad = 0
    for p in patches:
        r = run(['perl', str(repo / 'scripts/checkpatch.pl'), '--strict', '--no-tree',
                 f'--ignore={ignore}', str(p)], check=False, quiet=True)
        last = [l for l in r.stdout.splitlines() if l.startswith('total:')]
        log(f'checkpatch --strict {p.name}: {last[-1] if last else r.stdout.strip()[-200:]}')
        if r.returncode != 0 or not last or \
                not last[-1].startswith('total: 0 errors, 0 warnings, 0 checks'):
            bad += 1
            print(r.stdout)
    log(f'checkpatch ignores {ignore}: MAINTAINERS already covers rust/kernel/alloc/, and the '
        f'generated tree has no upstream history to find the commits cited in')
    return bad


def kunit(repo: Path, build: Path, kunitconfig: Path, make_opts, jobs, args):
    cmd = [sys.executable, str(repo / 'tools/testing/kunit/kunit.py'), *args,
           '--arch=x86_64', f'--build_dir={build}', f'--kunitconfig={kunitconfig}',
           f'--jobs={jobs}']
    for o in make_opts:
        cmd.append(f'--make_options={o}')
    return cmd


def kunit_run(repo, build, series, make_opts, jobs, out: Path, tag, extra=()):
    """`kunit.py run` of the tree as checked out; returns (exit code, JSON path)."""
    start = time.monotonic()
    js = out / f'kunit{tag}.json'
    cmd = kunit(repo, build, series['kunitconfig'], make_opts, jobs,
                ['run', '--timeout=1800', f'--json={js}',
                 *[f'--kernel_args={a}' for a in series.get('kernel_args', [])], *extra])
    if Path('/dev/kvm').exists() and not os.environ.get('RSLAB_KVM'):
        # kunit.py asks QEMU for KVM first and TCG last. Where /dev/kvm exists but does not
        # work (nested virtualisation here), QEMU takes KVM and the guest never runs; hide
        # /dev/kvm in a mount namespace of its own so that QEMU falls back to TCG, as the
        # runner's boots do. RSLAB_KVM=1 keeps KVM.
        cmd = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
               'mount --bind /dev/null /dev/kvm && exec "$@"', 'sh', *cmd]
        log('kunit.py run under TCG (/dev/kvm hidden from QEMU)')
    r = run(cmd, cwd=repo, check=False, quiet=True)
    (out / f'kunit{tag}.log').write_text(r.stdout)
    summary = [l for l in r.stdout.splitlines() if re.search(
        r'Testing complete|Ran \d+ tests|Totals|ASSERTION|Expected|=+ \[(PASSED|FAILED|SKIPPED|'
        r'CRASHED)\] (rust_slab|rust_alloc|rust_kvec|rust_doctests)|\[(PASSED|FAILED)\] test_',
        l)]
    print('\n'.join(summary))
    log(f'kunit.py run{tag}: exit {r.returncode} in {time.monotonic() - start:.0f} s '
        f'({out}/kunit{tag}.log)')
    return r.returncode, js


def suites_of(js: Path):
    """{suite: [case]} from kunit.py's JSON, or None."""
    try:
        result = json.loads(js.read_text())
    except (OSError, ValueError):
        return None
    suites = {}

    # kunit.py's JSON: groups ({"name", "sub_groups", "test_cases": [{"name", "status"}]}),
    # one per suite under the top group.
    def walk(group):
        for sub in group.get('sub_groups', []):
            suites[sub['name']] = sub.get('test_cases', [])
            walk(sub)
    walk(result)
    return suites


def check_series(series, repo, commits, patches, static, build, make_opts, jobs, out: Path):
    """Returns (problems, build times, (passed, failed))."""
    problems = list(static)
    name = series['name']
    bad = checkpatch(repo, patches)
    if bad:
        problems.append(f'checkpatch --strict complains about {bad} patches')
    timings = []
    built = True
    # The kernel doctests extracted for another series' tree must not be built into this one:
    # regenerate them from this tree.
    for stale in [build / 'rust/test/doctests', *build.glob('rust/doctests_kernel_generated*')]:
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    for n, c in enumerate(commits, 1):
        git(repo, 'checkout', '-q', '-f', c)
        start = time.monotonic()
        log(f'{name}: building patch {n}/{len(commits)} ({patches[n - 1].name})')
        kunitconfig = series['kunitconfig']
        if f'CONFIG_{KCONFIG_SYMBOL}=' in kunitconfig.read_text() and \
                f'config {KCONFIG_SYMBOL}\n' not in \
                (repo / 'rust/kernel/Kconfig.test').read_text():
            # A patch before the one that adds the tests' option: built without it.
            kunitconfig = out / f'kunitconfig-{n}'
            kunitconfig.write_text(''.join(
                l for l in series['kunitconfig'].read_text().splitlines(True)
                if f'CONFIG_{KCONFIG_SYMBOL}=' not in l))
        r = run(kunit(repo, build, kunitconfig, make_opts, jobs, ['build']),
                cwd=repo, check=False, quiet=True)
        took = time.monotonic() - start
        timings.append(took)
        (out / f'build-{n}.log').write_text(r.stdout)
        touched = git(repo, 'diff', '--name-only', f'{c}^', c).stdout.split()
        warnings = [b for b in re.split(r'\n(?=warning|error)', r.stdout)
                    if re.match(r'warning', b) and any(t in b for t in touched)]
        log(f'{name}: patch {n}: build {"ok" if r.returncode == 0 else "FAILED"} in '
            f'{took:.0f} s, {len(warnings)} warnings in the files it touches')
        for w in warnings[:3]:
            print(w)
        if warnings:
            problems.append(f'patch {n} builds with warnings (see {out}/build-{n}.log)')
        if r.returncode != 0:
            problems.append(f'patch {n} does not build (see {out}/build-{n}.log)')
            print(r.stdout[-4000:])
            built = False
            break
    counts = (0, 1)
    if built:
        rc, js = kunit_run(repo, build, series, make_opts, jobs, out, '')
        found, counts = judge(series, js, rc)
        problems += found
        if series.get('mutation'):
            problems += mutation(series, repo, build, make_opts, jobs, out)
        if series.get('rustdoc'):
            problems += rustdoc(repo, build, make_opts, jobs, out, series['rustdoc'])
    git(repo, 'checkout', '-q', '-f', name)
    return problems, timings, counts


def mutation(series, repo, build, make_opts, jobs, out: Path):
    """The same run on the tree without what the series tests: the named cases must fail and
    the others pass."""
    m = series['mutation']
    r = git_apply(repo, m['diff'].read_text())
    if r.returncode != 0:
        return [f'{m["diff"].name} does not apply: {r.stderr.strip()}']
    log(f'{series["name"]}: the same run with {m["what"]} ({m["diff"].name})')
    try:
        rc, js = kunit_run(repo, build, series, make_opts, jobs, out, '-mutated', [m['suite']])
    finally:
        git(repo, 'checkout', '-q', '-f', '--', '.')
    suites = suites_of(js) or {}
    status = {c['name']: c.get('status') for c in suites.get(m['suite'], [])}
    problems = []
    for case in m['fail']:
        if status.get(case) != 'FAIL':
            problems.append(f'{m["suite"]}.{case} did not fail with {m["what"]} '
                            f'({status.get(case)})')
    for case in m['pass']:
        if status.get(case) != 'PASS':
            problems.append(f'{m["suite"]}.{case} did not pass with {m["what"]} '
                            f'({status.get(case)})')
    if not problems:
        log(f'{series["name"]}: with {m["what"]}: ' +
            ', '.join(f'{c} {s}' for c, s in status.items()) + ', as expected')
    return problems


def rustdoc(repo: Path, build: Path, make_opts, jobs, out: Path, where):
    """The kernel's `make rustdoc` with the series applied: no warning may point into
    `where`."""
    start = time.monotonic()
    r = run(['make', '-C', str(repo), f'O={build}', 'ARCH=x86_64', f'-j{jobs}', *make_opts,
             'rustdoc'], check=False, quiet=True)
    (out / 'rustdoc.log').write_text(r.stdout)
    blocks = re.split(r'\n(?=warning|error)', r.stdout)
    ours = [b for b in blocks if re.match(r'(warning|error)', b) and where in b]
    total = sum(1 for b in blocks if re.match(r'warning', b))
    log(f'make rustdoc: exit {r.returncode} in {time.monotonic() - start:.0f} s, '
        f'{total} warnings in all, {len(ours)} in {where}')
    problems = [f'rustdoc: {b.splitlines()[0]} ({out}/rustdoc.log)' for b in ours[:5]]
    if r.returncode != 0:
        problems.append(f'make rustdoc failed ({out}/rustdoc.log)')
    return problems


def judge(series, js: Path, rc):
    """Problems with the kunit.py run, and (passed, failed) of the expected suites' cases and
    the series' doctests."""
    problems = []
    counts = [0, 0]
    if rc != 0:
        problems.append(f'kunit.py run exited {rc}')
    suites = suites_of(js)
    if suites is None:
        return problems + [f'no kunit.py JSON ({js})'], (0, 1)
    for s in sorted(expected_suites(series)):
        cases = suites.get(s)
        if not cases:
            problems.append(f'suite {s} did not run')
            continue
        failed = [c['name'] for c in cases if c.get('status') != 'PASS']
        log(f'{s}: {len(cases)} cases, {len(cases) - len(failed)} passed')
        counts[0] += len(cases) - len(failed)
        counts[1] += len(failed)
        if failed:
            problems.append(f'{s}: {", ".join(failed)} did not pass')
    if series.get('doctests'):
        doc = [c for n, cs in suites.items() if 'doctest' in n for c in cs
               if series['doctests'] in c['name']]
        doc_failed = [c['name'] for c in doc if c.get('status') != 'PASS']
        log(f'kernel doctests matching {series["doctests"]}: {len(doc)} run, '
            f'{len(doc) - len(doc_failed)} passed')
        counts[0] += len(doc) - len(doc_failed)
        counts[1] += len(doc_failed)
        if not doc:
            problems.append('the documentation examples did not run as kernel doctests')
        problems += [f'doctest {d} did not pass' for d in doc_failed]
    others = [(n, c['name']) for n, cs in suites.items() for c in cs
              if c.get('status') not in ('PASS',)]
    if others and not problems:
        problems.append(f'other KUnit cases did not pass: {others[:5]}')
    if problems and counts[1] == 0:
        counts[1] = 1
    return problems, tuple(counts)


def check(ksrc: Path, cache: Path, out: Path, make_opts, jobs, names):
    build = cache / ksrc.name / 'build'
    build.mkdir(parents=True, exist_ok=True)
    results = []
    shutil.rmtree(out, ignore_errors=True)
    for series, repo, commits, patches, static in make_all(ksrc, cache, out / 'patches',
                                                           names):
        o = out / series['name']
        o.mkdir(parents=True)
        start = time.monotonic()
        problems, timings, counts = check_series(series, repo, commits, patches, static, build,
                                                 make_opts, jobs, o)
        # For CI's totals: the expected suites' cases and the series' doctests.
        (o / 'totals').write_text(f'{counts[0]} {counts[1]} 0\n')
        results.append((series['name'], problems, timings, time.monotonic() - start))
    return results


def bench(ksrc: Path, cache: Path, out: Path, make_opts, jobs):
    """Instructions per allocation + zeroing + free of C's kmalloc() and the kernel crate's
    KBox::new(), and per push of a KVec grown to 100,000 elements, before the kmalloc series and
    after each of its patches, each in one boot under QEMU -icount
    (tools/testing/intree/kmalloc/bench.{rs,c}, added to the tree for the measurement only)."""
    series = series_by_name(['kmalloc'])[0]
    repo, commits, patches, = make_series(series, ksrc, cache, out / 'patches')
    build = cache / ksrc.name / 'build'
    d = series['dir']
    rows = {}
    # One boot per step: `before` (the base), then `after1`, `after2`, ... (each patch).
    steps = [('before', 'base')] + [(f'after{n}', c) for n, c in enumerate(commits, 1)]
    for label, ref in steps:
        git(repo, 'checkout', '-q', '-f', ref)
        for path, add in (('rust/kernel/alloc/allocator.rs', 'bench.rs'),
                          ('rust/helpers/slab.c', 'bench.c')):
            with open(repo / path, 'a') as f:
                f.write((d / add).read_text())
        try:
            rc, js = kunit_run(repo, build, series, make_opts, jobs, out, f'-bench-{label}',
                               ['--qemu_args=-icount shift=0,sleep=off', '--raw_output=all',
                                'rust_kmalloc_bench'])
        finally:
            git(repo, 'checkout', '-q', '-f', '--', '.')
        text = (out / f'kunit-bench-{label}.log').read_text()
        found = re.findall(r'bench: (\w+) (\d+) ([\d.]+) ([\d.]+)', text)
        if rc != 0 or not found:
            die(f'the benchmark did not run {label} the series ({out}/kunit-bench-{label}.log)')
        # Every row of every boot, named by its boot: the ratios are to the same boot's C.
        for what, size, med, low in found:
            rows.setdefault(int(size), {})[f'{what}_{label}'] = \
                {'median': float(med), 'min': float(low)}
    git(repo, 'checkout', '-q', '-f', series['name'])
    (out / 'bench.json').write_text(json.dumps(rows, indent=1, sort_keys=True) + '\n')
    labels = [label for label, _ in steps]
    print('instructions per kmalloc + memset + kfree, median of 21 rounds of 20,000; ratio to C '
          'with a compile-time size in the same boot')
    print(f'{"size":>6} ' + ' '.join(f'{h:>15}' for h in (
        [f'C const {l}' for l in labels] + [f'C var {labels[-1]}'] +
        [f'KBox {l}' for l in labels])))
    for size in sorted(rows):
        r = rows[size]
        if f'c_const_{labels[-1]}' not in r:
            continue
        cells = [f'{r[f"c_const_{l}"]["median"]:15.2f}' for l in labels]
        for key, l in [('c_var', labels[-1])] + [('kbox', l) for l in labels]:
            v, c = r[f'{key}_{l}']['median'], r[f'c_const_{l}']['median']
            cells.append(f'{v:9.2f} {v / c:5.3f}')
        print(f'{size:>6} ' + ' '.join(cells))
    for size in sorted(rows):
        r = rows[size]
        if f'kvec_push_{labels[-1]}' in r:
            print(f'KVec<u32> push to {size}, instructions per push (median, min): ' +
                  ', '.join(f'{l} {r[f"kvec_push_{l}"]["median"]:.2f} '
                            f'({r[f"kvec_push_{l}"]["min"]:.2f})' for l in labels))
    log(f'benchmark in {out}/bench.json')


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('command', choices=('patches', 'check', 'probe', 'bench'))
    ap.add_argument('--ksrc', type=Path, required=True)
    ap.add_argument('--cache', type=Path, required=True)
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--series', action='append', default=[],
                    help='only this series (repeatable, or comma-separated; default: all)')
    ap.add_argument('--make-option', action='append', default=[])
    ap.add_argument('--jobs', type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    args.out = args.out.resolve()
    names = [n for s in args.series for n in s.split(',') if n]
    if args.command == 'patches':
        shutil.rmtree(args.out, ignore_errors=True)
        made = make_all(args.ksrc, args.cache, args.out, names)
        # What the static checks find fails `check`; here it is reported only.
        for m in made:
            log(f'{m[0]["name"]}: {len(m[4])} problems for check-intree' if m[4] else
                f'{m[0]["name"]}: sizes, wording, base-commit and sign-off as required')
        return 0
    if args.command == 'probe':
        # Cached: the tree and a kernel built by an earlier check (later builds are
        # incremental, a few minutes each).
        built = (args.cache / args.ksrc.name / 'build/vmlinux').exists()
        log(f'{args.ksrc.name}: in-tree build {"cached" if built else "not cached"}')
        return 0 if built else 1
    if args.command == 'bench':
        bench(args.ksrc, args.cache, args.out, args.make_option, args.jobs)
        return 0
    start = time.monotonic()
    results = check(args.ksrc, args.cache, args.out, args.make_option, args.jobs, names)
    failed = False
    for name, problems, timings, took in results:
        log(f'{name}: builds per patch: ' +
            ', '.join(f'{n}: {t:.0f} s' for n, t in enumerate(timings, 1)) +
            f'; {took:.0f} s in all')
        for p in problems:
            log(f'{name}: FAILED: {p}')
        failed |= bool(problems)
        if not problems:
            log(f'{name}: PASSED')
    log(f'check-intree took {time.monotonic() - start:.0f} s')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

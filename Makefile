# SPDX-License-Identifier: GPL-2.0
#
# rslab: out-of-tree Rust-for-Linux module.
#
#   make run        boot the test kernel, load rslab and the samples, print the report
#   make check      build everything and run every KUnit suite in the test kernel
#   make check-debug the same in the debug kernel (KASAN, kmemleak, lockdep) with slab_debug
#   make bench      boot, run the benchmark, print ratios; JSON and PNG in out/bench/
#                   (BENCH_BEFORE=DIR: the template map's rows against an earlier
#                   out/bench; BENCH_BEFORE=FILE.patch: measured with FILE applied first)
#   make boots      boot BOOTS times (default 20) with nothing loaded, count detector reports
#                   (FLAVOUR=debug: the debug kernel; FIVE_LEVEL=1: a CPU with LA57)
#   make modules    build the modules only
#   make kernel     build (or reuse) the cached test kernel
#   make rust-analyzer, make fmt, make fmtcheck, make clippy, make checkpatch
#   make rustdoc    rustdoc HTML of the library in out/rustdoc/ (warnings fail)
#   make htmldocs   Sphinx HTML of Documentation/ in out/htmldocs/ (warnings fail)
#   make patches    the in-tree patch series in out/patches/$KVER/SERIES/ (SERIES=a,b: some)
#   make check-intree  the series in a kernel tree, tested by the tree's own kunit.py run
#   make bench-intree  the kmalloc series' figures: KBox::new() against C, before and per patch
#   make clean
#
# Test kernel matrix: KVER=7.2 (default) or 7.3; ARCH=x86_64 (default) or arm64.
# With your own Rust-enabled kernel build: make KDIR=/path/to/build LLVM=1 [run|check]
# Kbuild reads ./Kbuild, not this file, when the kernel builds the modules.

export KDIR LLVM KVER OUT RSLAB_CACHE NOPATCH SLAB_DEBUG FLAVOUR BOOTS FIVE_LEVEL
# An empty ARCH in the environment would override kbuild's own default.
ifneq ($(ARCH),)
export ARCH
endif

TESTING := tools/testing

.PHONY: all modules run check check-debug bench boots kernel rust-analyzer fmt fmtcheck clippy checkpatch \
	rustdoc htmldocs patches check-intree bench-intree clean

all: modules

modules run check check-debug bench boots kernel rust-analyzer fmt fmtcheck clippy checkpatch \
rustdoc htmldocs patches check-intree bench-intree:
	@$(TESTING)/rslab.sh $@

clean:
	rm -rf out
	find rust samples tools/testing/bench tools/testing/idmap tools/testing/nosheaf tools/testing/compile-fail \
		\( -name '*.o' -o -name '*.ko' -o -name '*.mod' -o -name '*.mod.c' \
		-o -name '.*.cmd' -o -name '*.rmeta' -o -name '*.d' -o -name 'modules.order' \) -delete
	rm -f Module.symvers modules.order rust/rslab_doctests_generated.rs

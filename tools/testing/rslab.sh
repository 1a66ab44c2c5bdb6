#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# rslab's test driver; the Makefile's targets call it.
#
#   rslab.sh kernel              build (or reuse) the test kernel
#   rslab.sh modules             build the modules against KDIR or the test kernel
#   rslab.sh run                 boot, load rslab and the samples, print the report
#   rslab.sh check               boot, run every KUnit suite, fail on any problem
#   rslab.sh check-debug         the same on the debug kernel (KASAN, kmemleak, lockdep,
#                                debug objects), booted with slab_debug
#   rslab.sh bench               boot, run the benchmark module, print ratios, write JSON + PNG.
#                                BENCH_BEFORE=DIR: the template map's rows also against an
#                                earlier run's OUT/bench; BENCH_BEFORE=FILE.patch: first
#                                measure with FILE applied (tools/testing/bench/
#                                idmap-64-buckets.patch), into OUT/bench-before
#   rslab.sh boots               boot the test kernel BOOTS times (default 20) with nothing to
#                                load; fail if any boot's log has a detector report.
#                                FLAVOUR=debug: the debug kernel, with slab_debug as check-debug
#                                boots it; FIVE_LEVEL=1: a CPU with LA57 (runner.py X86_QEMU_OPTS)
#   rslab.sh rust-analyzer       write rust-project.json for the modules against KDIR
#   rslab.sh fmt | fmtcheck      rustfmt with the kernel's .rustfmt.toml
#   rslab.sh clippy              build with CLIPPY=1; any warning fails
#   rslab.sh checkpatch          the kernel's checkpatch.pl on our patches and sources
#   rslab.sh rustdoc             rustdoc for the module crate and its library; warnings fail
#   rslab.sh htmldocs            Sphinx HTML of Documentation/; warnings fail
#   rslab.sh patches             the in-tree patch series for KVER's kernel (align, kmalloc:
#                                kept in tools/testing/intree/; slab: the RFC, from rust/lib/),
#                                in out/patches/KVER/SERIES/ (git format-patch; git am checked)
#   rslab.sh check-intree        patches, their sizes and wording, checkpatch --strict, a build
#                                per patch, and the tree's own kunit.py run (x86_64) per
#                                series; SERIES=a,b for some only; --probe: cached or not
#   rslab.sh bench-intree        instructions of the kernel crate's KBox::new() against C's
#                                kmalloc(), and of KVec growth, before the kmalloc series and
#                                after each of its patches (QEMU -icount)
#
# Environment: KDIR (use your own Rust-enabled kernel build instead of the test
# kernel), LLVM (as for kbuild; default -19 for the test kernel, 1 for KDIR),
# KVER (test kernel version: 7.2, the default, or 7.3), ARCH (x86_64, the
# default, or arm64: cross-built by clang, booted under qemu-system-aarch64),
# OUT (output directory, default out/),
# RSLAB_CACHE (test kernel cache, default ~/.cache/rslab), NOPATCH=1 (test
# kernel without the sheaf export patch), SLAB_DEBUG=1 (also boot with
# slab_debug on the command line, for `check`).

set -euo pipefail

# rustup's toolchain, when the caller's PATH does not have it (a CI shell, sudo).
cargo_bin=${CARGO_HOME:-${HOME:-/root}/.cargo}/bin
case ":$PATH:" in
*":$cargo_bin:"*) ;;
*) [ -d "$cargo_bin" ] && PATH="$cargo_bin:$PATH" ;;
esac
export PATH

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cmd=${1:-}
OUT=${OUT:-$root/out}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)

log() { printf '[rslab] %s\n' "$*" >&2; }
die() { printf '[rslab] error: %s\n' "$*" >&2; exit 1; }

# import_env PATTERN COMMAND...: runs a helper whose output ends in KEY=value lines and imports
# those matching PATTERN. A helper that fails has printed its own error: stop right there, so
# that its message stays the last line.
import_env() {
	local pattern=$1 out
	shift
	out=$("$@") || exit 1
	eval "$(grep -E "$pattern" <<< "$out")"
}

# Resolve the kernel to build against and the tools to run it.
kernel_env() {
	if [ -n "${KDIR:-}" ]; then
		KDIR=$(cd "$KDIR" && pwd) || die "KDIR=$KDIR does not exist"
		[ -f "$KDIR/Module.symvers" ] ||
			die "$KDIR has no Module.symvers: build the kernel (with modules) first"
		LLVM=${LLVM:-1}
		MAKE_EXTRA=()
		KERNEL_NAME=$(basename "$KDIR")
		KSRC=$KDIR
		[ -e "$KDIR/source" ] && KSRC=$(cd "$KDIR/source" && pwd)
		if [ "$cmd" = run ] || [ "$cmd" = check ] || [ "$cmd" = bench ]; then
			import_env '^VENV=' "$here/setup.sh"
		fi
	else
		local flags=()
		[ "${NOPATCH:-0}" = 1 ] && flags+=(--no-patches)
		[ "$cmd" = check-debug ] && flags+=(--flavour debug)
		[ "$cmd" = boots ] && [ "${FLAVOUR:-base}" = debug ] && flags+=(--flavour debug)
		import_env '^[A-Z_]+=' "$here/kernel.sh" ${flags[@]+"${flags[@]}"}
		MAKE_EXTRA=(RUST_LIB_SRC="$RUST_LIB_SRC" BINDGEN="$BINDGEN" LIBCLANG_PATH="$LIBCLANG_PATH")
	fi
	# x86_64 module builds leave ARCH to kbuild, as the kernel build did.
	case ${ARCH:-x86_64} in
	x86_64 | x86) ARCH=x86_64 ;;
	arm64 | aarch64) ARCH=arm64 MAKE_EXTRA+=(ARCH=arm64) ;;
	*) die "unsupported ARCH '$ARCH' (x86_64, arm64)" ;;
	esac
}

RUST_ROOTS=("$root/rust/rslab_main.rs" "$root/rust/rslab_doctests_main.rs" "$root"/samples/*.rs \
	"$root/tools/testing/bench/rslab_bench_main.rs" "$root/tools/testing/nosheaf/rslab_nosheaf_main.rs" \
	"$root/tools/testing/idmap/rslab_idmap_test_main.rs")

# build_modules [doctests] [MAKE ARGS...]: builds the modules; with "doctests" also the
# library's documentation examples as KUnit cases (rslab_doctests.ko), generated from the
# first build's rustc command line and built in a second pass.
build_modules() {
	local doctests=0
	if [ "${1:-}" = doctests ]; then
		doctests=1
		shift
	fi
	# Never build examples generated from older sources.
	rm -f "$root/rust/rslab_doctests_generated.rs"
	log "building modules against $KDIR (LLVM=$LLVM)"
	make -C "$KDIR" M="$root" LLVM="$LLVM" ${MAKE_EXTRA[@]+"${MAKE_EXTRA[@]}"} \
		-j"$(nproc)" "$@" modules >&2 || die "module build failed"
	if [ $doctests = 1 ]; then
		python3 "$here/doctests.py" "$root" "$KSRC" "$OUT/doctests" ||
			die "the documentation examples could not be turned into tests"
		make -C "$KDIR" M="$root" LLVM="$LLVM" ${MAKE_EXTRA[@]+"${MAKE_EXTRA[@]}"} \
			-j"$(nproc)" "$@" modules >&2 || die "module build with the doctests failed"
	fi
	BENCH_MODULE="$root/tools/testing/bench/rslab_bench.ko"
	# Exactly what this build produced (a sample compiled out for this kernel may have a
	# stale .ko from an earlier build against another kernel).
	MODULES=("$root/rust/rslab.ko")
	while read -r m; do
		case $m in
		samples/* | rust/rslab_doctests.o) MODULES+=("$root/${m%.o}.ko") ;;
		esac
	done < "$root/modules.order"
}

# build_client: the user-space client of /dev/rslab_idmap, built with the host's cargo. An
# x86_64 guest runs it from the host's file system; for arm64 the host has no Rust standard
# library, so the client does not run there (and says so). Sets CLIENT for the runner.
build_client() {
	CLIENT=()
	if [ "${ARCH:-x86_64}" != x86_64 ]; then
		log "idmap client: NOT RUN on $ARCH (no Rust standard library for it on this host)"
		return
	fi
	log "building the idmap client (cargo build --release)"
	CARGO_TARGET_DIR="$OUT/idmap-client" cargo build --release --locked -q \
		--manifest-path "$here/idmap-client/Cargo.toml" >&2 || die "idmap client build failed"
	CLIENT=(--client "$OUT/idmap-client/release/rslab-idmap-client"
		--client-module "$root/tools/testing/idmap/rslab_idmap_test.ko")
}

runner() {
	local arch=()
	if [ "$ARCH" = arm64 ]; then
		[ -n "${IMAGE:-}" ] || IMAGE=$KDIR/arch/arm64/boot/Image
		[ -n "${BUSYBOX:-}" ] || import_env '^BUSYBOX=' "$here/setup.sh"
		arch=(--arch arm64 --image "$IMAGE" --busybox "$BUSYBOX")
	fi
	# vng runs virtme-run and friends from its own venv.
	PATH="$VENV/bin:$PATH" "$VENV/bin/python3" "$here/runner.py" --kdir "$KDIR" \
		--vng "$VENV/bin/vng" ${arch[@]+"${arch[@]}"} "$@"
}

case $cmd in
kernel)
	kernel_env
	echo "KDIR=$KDIR"
	;;
modules)
	kernel_env
	build_modules
	;;
run)
	kernel_env
	build_modules
	runner --mode run --out "$OUT/run" --label "$KERNEL_NAME" "${MODULES[@]}"
	;;
check)
	kernel_env
	build_modules doctests
	build_client
	rm -f "$OUT"/check*/totals
	rc=0
	if [ "$ARCH" = arm64 ]; then
		# kmalloc's minimum alignment is decided at boot on arm64: 8 while swiotlb can
		# bounce unaligned kmalloc buffers (no kmalloc-8..32 merging, kmalloc-96 and -192
		# exist), the cache writeback granule (64 on QEMU's Cortex-A57: no kmalloc-96)
		# without swiotlb. One boot of each, and one with slab_debug.
		runner --mode check --out "$OUT/check-arm64" --expect-min-align 8 --timeout 2400 \
			--label "$KERNEL_NAME" "${MODULES[@]}" || rc=1
		runner --mode check --out "$OUT/check-arm64-noswiotlb" --append swiotlb=noforce \
			--expect-min-align 64 --timeout 2400 --label "$KERNEL_NAME swiotlb=noforce" \
			"${MODULES[@]}" || rc=1
		if [ "${SLAB_DEBUG:-1}" = 1 ]; then
			runner --mode check --out "$OUT/check-arm64-slab_debug" --append slab_debug \
				--expect-min-align 8 --timeout 2400 --label "$KERNEL_NAME slab_debug" \
				"${MODULES[@]}" || rc=1
		fi
	else
		runner --mode check --out "$OUT/check" --label "$KERNEL_NAME" \
			${CLIENT[@]+"${CLIENT[@]}"} "${MODULES[@]}" || rc=1
		if [ "${SLAB_DEBUG:-1}" = 1 ]; then
			runner --mode check --out "$OUT/check-slab_debug" --append slab_debug \
				--label "$KERNEL_NAME slab_debug" ${CLIENT[@]+"${CLIENT[@]}"} \
				"${MODULES[@]}" || rc=1
		fi
	fi
	# One totals line for every boot of this check.
	passed=0 failed=0 skipped=0
	for t in "$OUT"/check*/totals; do
		[ -f "$t" ] || continue
		read -r p f s < "$t"
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	done
	log "all boots: $passed passed, $failed failed, $skipped skipped"
	exit $rc
	;;
bench)
	kernel_env
	"$VENV/bin/python3" -c 'import matplotlib' 2>/dev/null || {
		log "pip install matplotlib (for the chart)"
		"$VENV/bin/pip" install -q matplotlib >&2
	}
	# bench_boots DIR: the benchmark's boots, each mode's results in DIR/MODE.
	bench_boots() {
		rm -rf "$1"
		# Instruction counts first (one guest nanosecond is one executed instruction, so the
		# figures repeat exactly), then wall clock. BENCH_MODES picks a subset.
		for mode in ${BENCH_MODES:-icount wallclock}; do
			case $mode in
			icount) opts=(--qemu-opts "-icount shift=0,sleep=off") ;;
			wallclock) opts=() ;;
			*) die "unknown benchmark mode '$mode' (icount, wallclock)" ;;
			esac
			# 512 MiB: the pressure benchmark's hog takes it all.
			runner --mode bench --out "$1/$mode" --memory 512M ${opts[@]+"${opts[@]}"} \
				--label "$KERNEL_NAME $mode" "$BENCH_MODULE" ||
				die "benchmark boot ($mode) failed"
		done
	}
	before=${BENCH_BEFORE:-}
	before_opts=()
	case $before in
	*.patch)
		# The "before" build: the patch applied for one build and its boots, then taken out.
		patch=$(realpath "$before")
		git -C "$root" apply --check "$patch" || die "$before does not apply"
		log "bench: before, with $before applied"
		git -C "$root" apply "$patch"
		trap 'git -C "$root" apply -R "$patch"' EXIT
		build_modules
		bench_boots "$OUT/bench-before"
		git -C "$root" apply -R "$patch"
		trap - EXIT
		log "bench: after, $before taken out again"
		before=$OUT/bench-before
		before_opts=(--before-label "$(basename "$patch")")
		;;
	esac
	build_modules
	bench_boots "$OUT/bench"
	"$VENV/bin/python3" "$here/bench.py" ${before:+--before "$before"} \
		${before_opts[@]+"${before_opts[@]}"} "$OUT/bench"
	;;
check-debug)
	[ "${ARCH:-x86_64}" = x86_64 ] || die "check-debug builds the x86_64 debug kernel only"
	kernel_env
	build_modules doctests
	build_client
	rm -f "$OUT"/check-debug/totals
	# KASAN, lockdep and slab_debug together make TCG several times slower.
	runner --mode check --out "$OUT/check-debug" --append slab_debug --timeout 2400 \
		--label "$KERNEL_NAME slab_debug" ${CLIENT[@]+"${CLIENT[@]}"} "${MODULES[@]}"
	;;
boots)
	kernel_env
	opts=(--boots "${BOOTS:-20}")
	[ "${FLAVOUR:-base}" = debug ] && opts+=(--append slab_debug --timeout 2400)
	[ "${FIVE_LEVEL:-0}" = 1 ] && opts+=(--five-level)
	rm -rf "$OUT/boots"
	runner --mode boot --out "$OUT/boots" --label "$KERNEL_NAME" "${opts[@]}"
	;;
rust-analyzer)
	kernel_env
	make -C "$KDIR" M="$root" LLVM="$LLVM" ${MAKE_EXTRA[@]+"${MAKE_EXTRA[@]}"} rust-analyzer >&2 ||
		die "make rust-analyzer failed"
	log "wrote $root/rust-project.json (rust-analyzer picks it up from the repository root)"
	;;
fmt | fmtcheck)
	kernel_env
	check=()
	[ "$cmd" = fmtcheck ] && check=(--check)
	rustfmt --edition 2021 --config-path "$KSRC/.rustfmt.toml" ${check[@]+"${check[@]}"} \
		"${RUST_ROOTS[@]}" || die "rustfmt: the sources are not formatted (run make fmt)"
	# The user-space client is an ordinary cargo crate, with rustfmt's defaults.
	cargo fmt --manifest-path "$here/idmap-client/Cargo.toml" ${check[@]+"${check[@]}"} ||
		die "rustfmt: the idmap client is not formatted (run make fmt)"
	log "rustfmt: clean"
	;;
clippy)
	kernel_env
	log "clippy: building against $KDIR with CLIPPY=1 W=e (every warning is an error)"
	# Rebuild every Rust object, the doctests module's too, so that clippy sees all of them.
	find "$root/rust" "$root/samples" "$root/tools/testing/bench" "$root/tools/testing/idmap" -name '*.o' -delete
	(build_modules doctests CLIPPY=1 W=e) > "$OUT/clippy.log" 2>&1 ||
		{ cat "$OUT/clippy.log" >&2; die "clippy/W=e build failed"; }
	if grep -qE '^(warning|error)' "$OUT/clippy.log"; then
		grep -E '^(warning|error)' -A 12 "$OUT/clippy.log" >&2
		die "clippy: warnings (full log: $OUT/clippy.log)"
	fi
	log "clippy: no warnings with W=e"
	CARGO_TARGET_DIR="$OUT/idmap-client" cargo clippy --release --locked -q \
		--manifest-path "$here/idmap-client/Cargo.toml" -- -D warnings ||
		die "clippy: warnings in the idmap client"
	log "clippy: the idmap client is clean"
	# Sheaf support is opt-in per driver Kbuild: a driver that forgets scripts/sheaf.mk must
	# get the library's explanation from the compiler.
	if [ "${NOPATCH:-0}" != 1 ]; then
		nosheaf=$root/tools/testing/nosheaf
		# The stub declares every public name of the sheaf module, and the test driver
		# imports them all: an import then resolves and the use gets the explanation.
		pub_names() {
			sed -nE 's/^pub (use [a-z_:]+::|struct |enum |trait |fn |const |type )([A-Za-z_0-9]+).*/\2/p' "$@" | sort -u
		}
		missing=$(comm -23 <(pub_names "$root/rust/lib/sheaf.rs") <(pub_names "$root/rust/lib/nosheaf.rs"))
		[ -z "$missing" ] || die "the no-sheaf stub (rust/lib/nosheaf.rs) lacks: $(echo $missing)"
		imported=$(sed -nE 's/^use rslab::sheaf::\{(.*)\};/\1/p' "$nosheaf/rslab_nosheaf_main.rs" | tr -d ' ' | tr ',' '\n' | sort -u)
		unused=$(comm -23 <(pub_names "$root/rust/lib/sheaf.rs") <(echo "$imported"))
		[ -z "$unused" ] || die "tools/testing/nosheaf does not import: $(echo $unused)"
		if make -C "$KDIR" M="$nosheaf" LLVM="$LLVM" ${MAKE_EXTRA[@]+"${MAKE_EXTRA[@]}"} \
			modules > "$OUT/nosheaf.log" 2>&1; then
			die "a driver without scripts/sheaf.mk built with the sheaf API ($OUT/nosheaf.log)"
		fi
		# That error and no other (the stub itself must compile).
		grep -q 'the rslab sheaf API is compiled out of this build' "$OUT/nosheaf.log" &&
			grep -q 'scripts/sheaf.mk' "$OUT/nosheaf.log" &&
			[ "$(grep -c '^error\[E' "$OUT/nosheaf.log")" = 1 ] ||
			{ cat "$OUT/nosheaf.log" >&2; die "no explanation for the missing sheaf API"; }
		log "a driver without scripts/sheaf.mk is told why: $(grep -m1 -o 'error\[E[0-9]*\]: the rslab sheaf API[^`]*' "$OUT/nosheaf.log")"
	fi
	# What the library's lifetimes and bounds forbid, the compiler must keep refusing: each case
	# in tools/testing/compile-fail/ is a module with one line marked `// error[E....]`. It
	# must fail to build with that error alone, reported on that line, and build once that
	# line is deleted (so that the refusal is the marked line's, not something else's). The
	# sheaf cases need the sheaf API, as scripts/sheaf.mk decides.
	cf=$root/tools/testing/compile-fail
	sheaf_syms=0
	for s in kmem_cache_prefill_sheaf kmem_cache_refill_sheaf kmem_cache_return_sheaf \
		kmem_cache_alloc_from_sheaf_noprof kmem_cache_sheaf_size; do
		grep -qP "^0x[0-9a-f]+\t$s\t" "$KDIR/Module.symvers" && sheaf_syms=$((sheaf_syms + 1))
	done
	cf_build() {
		make -C "$KDIR" M="$cf" RSLAB_CASE="$1" LLVM="$LLVM" \
			${MAKE_EXTRA[@]+"${MAKE_EXTRA[@]}"} modules
	}
	for src in "$cf"/*.rs; do
		case=$(basename "$src" .rs)
		if [ $sheaf_syms != 5 ] && grep -q 'prefill' "$src"; then
			log "compile-fail $case: NOT RUN (this kernel does not export the sheaf API)"
			continue
		fi
		[ "$(grep -c '// error\[E[0-9]*\]$' "$src")" = 1 ] ||
			die "$src: needs exactly one line marked // error[E....]"
		want=$(grep -n '// error\[E[0-9]*\]$' "$src")
		line=${want%%:*}
		code=$(grep -o 'error\[E[0-9]*\]$' <<< "$want")
		cflog=$OUT/compile-fail-$case.log
		if cf_build "$case" > "$cflog" 2>&1; then
			die "compile-fail $case: built, but the compiler must refuse it ($src)"
		fi
		# Every error rustc printed, with or without a code, but its closing summary.
		errors=$(grep -E '^error(\[E[0-9]+\])?: ' "$cflog" | grep -v '^error: aborting due to' || true)
		at=$(grep -A1 -E '^error(\[E[0-9]+\])?: ' "$cflog" | grep -m1 -oE -- "--> (.*/)?$case\.rs:[0-9]+" || true)
		[ "$(wc -l <<< "$errors")" = 1 ] && [[ $errors == "$code: "* ]] &&
			[ "${at##*:}" = "$line" ] && grep -q '^error: aborting due to 1 previous error' "$cflog" ||
			{ cat "$cflog" >&2; die "compile-fail $case: expected $code on line $line and no other error"; }
		# The positive control: the same module without the marked line.
		ok=$cf/${case}_ok.rs
		sed "${line}d" "$src" > "$ok"
		cf_build "${case}_ok" > "$cflog.ok" 2>&1
		r=$?
		rm -f "$ok" "$cf/${case}_ok".{o,ko,mod,mod.c,mod.o} "$cf/.${case}_ok".*.cmd
		[ $r = 0 ] || { cat "$cflog.ok" >&2; die "compile-fail $case: does not build without line $line"; }
		log "compile-fail $case: refused with $errors (line $line); builds without that line"
	done
	;;
checkpatch)
	kernel_env
	cp=("$KSRC/scripts/checkpatch.pl" --no-tree --quiet --show-types)
	rc=0
	for p in "$here"/patches/*.patch; do
		"${cp[@]}" "$p" || rc=1
	done
	# Our own sources, as files.
	mapfile -t files < <(cd "$root" && git ls-files '*.rs' '*.c' '*.h' 'Kbuild' '*/Kbuild' '*.mk')
	(cd "$root" && "${cp[@]}" --ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG -f "${files[@]}") || rc=1
	[ $rc = 0 ] || die "checkpatch: problems found"
	log "checkpatch: clean"
	;;
rustdoc)
	kernel_env
	build_modules
	rm -rf "$OUT/rustdoc"
	python3 "$here/rustdoc.py" "$root" "$OUT/rustdoc" || die "rustdoc: problems found"
	;;
htmldocs)
	import_env '^VENV=' "$here/setup.sh"
	[ -x "$VENV/bin/sphinx-build" ] || {
		log "pip install sphinx"
		"$VENV/bin/pip" install -q sphinx >&2
	}
	rm -rf "$OUT/htmldocs"
	"$VENV/bin/sphinx-build" -W --keep-going -q -b html "$root/Documentation" \
		"$OUT/htmldocs" || die "htmldocs: Sphinx reported problems"
	log "htmldocs: no warnings; $OUT/htmldocs/index.html"
	;;
patches | check-intree | bench-intree)
	import_env '^[A-Z_]+=' "$here/setup.sh"
	intree=(python3 "$here/intree.py" --ksrc "$KSRC" --cache "${RSLAB_CACHE:-${HOME:-/root}/.cache/rslab}/intree")
	[ -z "${SERIES:-}" ] || intree+=(--series "$SERIES")
	if [ "$cmd" = patches ]; then
		"${intree[@]}" patches --out "$OUT/patches/${KVER:-7.2}" || die "make patches failed"
		exit 0
	fi
	[ "${ARCH:-x86_64}" = x86_64 ] || die "check-intree runs kunit.py for x86_64 only"
	if [ "${2:-}" = --probe ]; then
		exec "${intree[@]}" probe --out "$OUT/intree/${KVER:-7.2}"
	fi
	export LIBCLANG_PATH
	sub=check out=$OUT/intree/${KVER:-7.2}
	[ "$cmd" = check-intree ] || sub=bench out=$OUT/intree-bench/${KVER:-7.2}
	"${intree[@]}" $sub --out "$out" --jobs $(($(nproc) + 1)) \
		--make-option LLVM="${LLVM:--19}" --make-option RUST_LIB_SRC="$RUST_LIB_SRC" \
		--make-option BINDGEN="$BINDGEN" || die "$cmd failed"
	;;
*)
	sed -n '4,35p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac

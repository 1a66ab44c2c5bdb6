#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or reuse) the rslab test kernel.
#
#   tools/testing/kernel.sh [--flavour NAME] [--no-patches] [--probe]
#
# The kernel is cached under $RSLAB_CACHE/kbuild/<key>, where <key> hashes the
# kernel source version, the architecture, the config fragments, the patch
# series, the flavour and the toolchain versions. A cache hit takes a second.
# On success the last lines of stdout are KEY=value pairs (KDIR=..., etc.) for
# the Makefile.
#
# KVER picks the kernel version (setup.sh), ARCH the architecture: x86_64 (the
# default) or arm64, cross-compiled by clang; configs/arm64.config is merged
# after base.config for it.
#
# Flavours: "base" (tools/testing/configs/base.config) and "debug" (base plus
# configs/debug.config). --probe only answers whether that kernel is cached
# (exit 0, or 1 when it would have to be built), for CI's time budget. --no-patches builds the same kernel without our patch
# series, to prove that rslab builds and loads on a stock kernel; it is a full
# build of its own (a build directory records its source path in every
# command line, so another build's objects cannot be reused).

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
FLAVOUR=base
PATCHES=1
PROBE=0
while [ $# -gt 0 ]; do
	case $1 in
	--flavour) FLAVOUR=$2; shift 2 ;;
	--no-patches) PATCHES=0; shift ;;
	--probe) PROBE=1; shift ;;
	*) echo "kernel.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

# Bump when a change to this script changes what a build produces.
CACHE_LAYOUT=1

log() { printf '[kernel] %s\n' "$*" >&2; }
die() { printf '[kernel] error: %s\n' "$*" >&2; exit 1; }

# setup.sh prints its own error when it fails; stop there, with that message last.
setup_env=$("$here/setup.sh") || exit 1
eval "$(grep -E '^[A-Z_]+=' <<< "$setup_env")"
CACHE=${RSLAB_CACHE:-${HOME:-/root}/.cache/rslab}
LLVM=${LLVM:--19}
JOBS=${JOBS:-$(($(nproc) + 1))}
export LIBCLANG_PATH

ARCH=${ARCH:-x86_64}
case $ARCH in
x86_64 | x86) ARCH=x86_64 SRCARCH=x86 IMAGE=arch/x86/boot/bzImage ;;
arm64 | aarch64) ARCH=arm64 SRCARCH=arm64 IMAGE=arch/arm64/boot/Image ;;
*) die "unsupported ARCH '$ARCH' (x86_64, arm64)" ;;
esac

fragments=("$here/configs/base.config")
[ "$ARCH" = x86_64 ] || fragments+=("$here/configs/$ARCH.config")
case $FLAVOUR in
base) ;;
debug) fragments+=("$here/configs/debug.config") ;;
*) die "unknown flavour '$FLAVOUR' (base, debug)" ;;
esac
patches=()
[ "$PATCHES" = 1 ] && patches=("$here"/patches/*.patch)

key=$( {
	echo "src $KSRC_VERSION flavour $FLAVOUR patches $PATCHES llvm $LLVM"
	[ "$ARCH" = x86_64 ] || echo "arch $ARCH"
	rustc --version
	"$BINDGEN" --version
	"clang$LLVM" --version | head -n1
	cat "${fragments[@]}" ${patches[@]+"${patches[@]}"}
	echo "layout $CACHE_LAYOUT"
} | sha256sum | cut -c1-16)
name="linux-$KSRC_VERSION-$([ "$ARCH" = x86_64 ] || echo "$ARCH-")$FLAVOUR$([ "$PATCHES" = 1 ] || echo -nopatch)-$key"
W="$CACHE/kbuild/$name"
KDIR="$W/build"

# x86_64 builds leave ARCH to the kernel's Makefile (the host's), as they always have.
arch_arg=()
[ "$ARCH" = x86_64 ] || arch_arg=(ARCH="$ARCH")

make_k() {
	make -C "$W/src" O="$KDIR" ${arch_arg[@]+"${arch_arg[@]}"} LLVM="$LLVM" \
		RUST_LIB_SRC="$RUST_LIB_SRC" BINDGEN="$BINDGEN" "$@"
}

emit() {
	echo "KDIR=$KDIR"
	echo "KSRC=$W/src"
	echo "KSRC_VERSION=$KSRC_VERSION"
	echo "RUST_LIB_SRC=$RUST_LIB_SRC"
	echo "BINDGEN=$BINDGEN"
	echo "VENV=$VENV"
	echo "LIBCLANG_PATH=$LIBCLANG_PATH"
	echo "LLVM=$LLVM"
	echo "KERNEL_NAME=$name"
	echo "ARCH=$ARCH"
	echo "IMAGE=$KDIR/$IMAGE"
	echo "BUSYBOX=$BUSYBOX"
}

if [ -f "$W/.done" ]; then
	log "cached: $name"
	emit
	exit 0
fi
if [ "$PROBE" = 1 ]; then
	log "not cached: $name"
	exit 1
fi

rm -rf "$W"
mkdir -p "$W"

# A hard-linked copy of the pristine source: cheap, and patch(1) replaces the
# files it changes instead of writing through the links.
log "preparing source tree $name"
cp -al "$KSRC" "$W/src"
for p in ${patches[@]+"${patches[@]}"}; do
	log "applying $(basename "$p")"
	patch -d "$W/src" -p1 --quiet --no-backup-if-mismatch < "$p" ||
		die "patch $(basename "$p") does not apply to $KSRC_VERSION"
done

mkdir -p "$KDIR"
if [ ! -f "$KDIR/.config" ]; then
	log "configuring: allnoconfig + ${fragments[*]##*/}"
	make_k -s allnoconfig >&2
	"$W/src/scripts/kconfig/merge_config.sh" -m -O "$KDIR" "$KDIR/.config" \
		"${fragments[@]}" >/dev/null
	make_k -s olddefconfig >&2
fi

# Every option the fragments ask for (a later fragment overrides an earlier one)
# must have survived Kconfig's dependency resolution; a silently dropped
# CONFIG_RUST (toolchain not detected) is the classic failure. An option that
# this kernel's Kconfig does not define for this architecture at all (renamed
# between releases, such as PROC_SYSCTL -> SYSCTL in 7.3, or x86-only) is
# reported and skipped: the fragments serve every kernel in the matrix.
defined=$(find "$W/src" -path "$W/src/arch" -prune -o -name 'Kconfig*' -print |
	cat - <(find "$W/src/arch/$SRCARCH" -name 'Kconfig*') |
	xargs sed -nE 's/^[[:space:]]*(menu)?config[[:space:]]+([A-Za-z0-9_]+).*/\2/p' | sort -u)
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		grep -qxF "$line" "$KDIR/.config" && continue
		sym=${line%%=*}; sym=${sym#CONFIG_}
		if ! grep -qxF "$sym" <<< "$defined"; then
			log "config: $sym is not defined by $KSRC_VERSION's Kconfig for $ARCH; skipped"
			continue
		fi
		log "config: wanted '$line', got '$(grep -E "^(# )?${line%%=*}[= ]" "$KDIR/.config" || echo unset)'"
		bad=1
		;;
	"# CONFIG_"*" is not set")
		opt=${line#\# }; opt=${opt%% *}
		! grep -q "^$opt=" "$KDIR/.config" || { log "config: wanted $opt off"; bad=1; }
		;;
	esac
done < <(cat "${fragments[@]}" |
	sed -nE 's/^(CONFIG_[A-Za-z0-9_]+)=.*/\1 &/p; s/^# (CONFIG_[A-Za-z0-9_]+) is not set/\1 &/p' |
	awk '{ sym = $1; sub(/^[^ ]+ /, ""); last[sym] = $0; order[sym] = NR }
	     END { for (s in last) print order[s], last[s] }' | sort -n | cut -d' ' -f2-)
if [ $bad = 1 ]; then
	make_k rustavailable >&2 || true
	die "the kernel configuration does not have what the fragments ask for"
fi

log "building $name with -j$JOBS (log: $W/build.log)"
start=$(date +%s)
set +e
make_k -j"$JOBS" all > "$W/build.log" 2>&1 &
pid=$!
# Progress: one line a minute while the build runs.
while kill -0 $pid 2>/dev/null; do
	for _ in $(seq 60); do
		kill -0 $pid 2>/dev/null || break
		sleep 1
	done
	kill -0 $pid 2>/dev/null || break
	n=$(grep -cE '^  (CC|RUSTC|AS|LD|AR|BINDGEN|EXPORTS|RUSTDOC)' "$W/build.log")
	log "$n steps done, $(( ($(date +%s) - start) / 60 )) min elapsed, last: $(tail -n1 "$W/build.log" | cut -c1-70)"
done
wait $pid
rc=$?
set -e
if [ $rc != 0 ]; then
	grep -E 'error|Error' "$W/build.log" | head -n 30 >&2
	die "kernel build failed (exit $rc); full log: $W/build.log"
fi
[ -f "$KDIR/Module.symvers" ] && [ -f "$KDIR/$IMAGE" ] ||
	die "build finished without $IMAGE or Module.symvers"
log "built $name in $(( $(date +%s) - start )) s"
touch "$W/.done"
emit

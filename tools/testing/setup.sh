#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything the rslab test kernel needs, from package registries only:
#
#   - Debian (host suite):  clang/lld/llvm 19, kernel build deps, qemu, busybox
#   - Debian (sid, trixie-backports, through a private apt state that leaves
#     the host's apt configuration untouched): linux-source-$KVER and the
#     rust-src that matches the host's rustc exactly
#   - with ARCH=arm64: qemu-system-arm (host suite) and the arm64 build of
#     busybox-static (host suite's arm64 archive, private apt state) for the
#     guest's initramfs
#   - crates.io:            bindgen-cli
#   - PyPI:                 virtme-ng (in a venv)
#
# Everything lands under $RSLAB_CACHE (default ~/.cache/rslab). Each step is
# skipped when its result is already there, so a second run takes seconds.
#
# Prints shell assignments (KEY=value) describing the result on the last lines
# of stdout, for the Makefile to read; progress goes to stderr.

set -euo pipefail

# rustup's toolchain, when the caller's PATH does not have it (a CI shell, sudo).
cargo_bin=${CARGO_HOME:-${HOME:-/root}/.cargo}/bin
case ":$PATH:" in
*":$cargo_bin:"*) ;;
*) [ -d "$cargo_bin" ] && PATH="$cargo_bin:$PATH" ;;
esac
export PATH

KVER=${KVER:-7.2}
ARCH=${ARCH:-x86_64}
CACHE=${RSLAB_CACHE:-${HOME:-/root}/.cache/rslab}
LLVM_VER=${LLVM_VER:-19}
BINDGEN_VER=${BINDGEN_VER:-0.72.1}
VNG_VER=${VNG_VER:-1.42}

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE"

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# --- Host packages ----------------------------------------------------------
host_pkgs=(clang-$LLVM_VER lld-$LLVM_VER llvm-$LLVM_VER libclang-$LLVM_VER-dev
	   make flex bison bc libelf-dev libssl-dev cpio kmod xz-utils
	   qemu-system-x86 busybox-static python3-venv zstd patch)
case $ARCH in
x86_64 | x86) ;;
arm64 | aarch64) host_pkgs+=(qemu-system-arm) ;;
*) die "unsupported ARCH '$ARCH' (x86_64, arm64)" ;;
esac
missing=()
for p in "${host_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "apt-get install ${missing[*]}"
	$SUDO apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >&2
fi

# --- Private apt state for the extra suites ---------------------------------
APT="$CACHE/apt"
apt_opts=(-oAPT::Sandbox::User=root -oDir::Etc::SourceList="$APT/sources.list" -oDir::Etc::SourceParts=/dev/null
	  -oDir::State::Lists="$APT/lists" -oDir::Cache="$APT/cache"
	  -oAPT::Get::List-Cleanup=0)
apt_priv() { apt-get "${apt_opts[@]}" "$@"; }
apt_cache_priv() { apt-cache "${apt_opts[@]}" "$@"; }

mirror=$(sed -n 's/^URIs:[[:space:]]*\(http[^ ]*debian\)\/\?$/\1/p' \
	/etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\+\(http[^ ]*debian\)\/\?[[:space:]].*/\1/p' \
	/etc/apt/sources.list 2>/dev/null | head -n1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$CACHE/debs"
printf 'deb %s sid main\ndeb %s trixie-backports main\n' "$mirror" "$mirror" \
	> "$APT/sources.list"
# Refresh the lists at most once a day.
if [ -z "$(find "$APT/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
	log "apt-get update (sid, trixie-backports; private state in $APT)"
	apt_priv update -qq >&2 || die "apt-get update for the extra suites failed"
fi

# Download one exact version of a package from the extra suites and unpack it.
fetch_deb() { # name version destdir
	local name=$1 ver=$2 dest=$3
	[ -f "$dest/.done" ] && return 0
	log "downloading $name=$ver"
	rm -rf "$dest" && mkdir -p "$dest"
	(cd "$CACHE/debs" && apt_priv download -qq "$name=$ver" >&2) ||
		die "apt-get download $name=$ver failed"
	dpkg -x "$CACHE/debs/${name}_$(printf %s "$ver" | sed 's/:/%3a/')_"*.deb "$dest"
	touch "$dest/.done"
}

# --- rust-src matching rustc -------------------------------------------------
command -v rustc >/dev/null || die "rustc not found (rustup toolchain expected)"
rustc_ver=$(rustc --version | awk '{print $2}')
src_ver=$(apt_cache_priv madison rust-src | awk -v v="$rustc_ver" '
	{ gsub(/ /, "", $3); if (index($3, v "+") == 1 || index($3, v "-") == 1) { print $3; exit } }')
[ -n "$src_ver" ] || die "no Debian rust-src for rustc $rustc_ver in sid/trixie-backports; " \
	"available: $(apt_cache_priv madison rust-src | awk '{print $3}' | tr '\n' ' ')"
fetch_deb rust-src "$src_ver" "$CACHE/rust-src-$rustc_ver"
RUST_LIB_SRC="$CACHE/rust-src-$rustc_ver/usr/lib/rustlib/src/rust/library"
[ -d "$RUST_LIB_SRC/core" ] || die "rust-src layout unexpected under $RUST_LIB_SRC"

# --- Kernel source ------------------------------------------------------------
ksrc_ver=$(apt_cache_priv madison "linux-source-$KVER" | awk '{gsub(/ /,"",$3); print $3; exit}')
[ -n "$ksrc_ver" ] || die "linux-source-$KVER is not in sid or trixie-backports"
KSRC="$CACHE/src/linux-$ksrc_ver"
if [ ! -f "$KSRC/.done" ]; then
	fetch_deb "linux-source-$KVER" "$ksrc_ver" "$CACHE/debs/linux-source-$ksrc_ver"
	tarball=$(ls "$CACHE/debs/linux-source-$ksrc_ver"/usr/src/linux-source-*.tar.* | head -n1)
	log "unpacking $(basename "$tarball")"
	rm -rf "$KSRC" && mkdir -p "$KSRC"
	tar -xf "$tarball" -C "$KSRC" --strip-components=1
	touch "$KSRC/.done"
	rm -rf "$CACHE/debs/linux-source-$ksrc_ver" "$CACHE/debs"/linux-source-*.deb
fi

# --- bindgen ------------------------------------------------------------------
BINDGEN="$CACHE/bindgen-$BINDGEN_VER/bin/bindgen"
if [ ! -x "$BINDGEN" ]; then
	log "cargo install bindgen-cli $BINDGEN_VER"
	LIBCLANG_PATH=/usr/lib/llvm-$LLVM_VER/lib cargo install -q --locked bindgen-cli \
		--version "$BINDGEN_VER" --root "$CACHE/bindgen-$BINDGEN_VER" >&2
fi

# --- virtme-ng ------------------------------------------------------------------
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/vng" ]; then
	log "pip install virtme-ng $VNG_VER"
	python3 -m venv "$VENV" >&2
	"$VENV/bin/pip" install -q "virtme-ng==$VNG_VER" >&2
fi

# --- arm64 guest userspace ----------------------------------------------------------
# One static busybox from the host suite's arm64 archive, through its own private apt
# state (the host's dpkg does not know the architecture).
BUSYBOX=
if [ "$ARCH" = arm64 ] || [ "$ARCH" = aarch64 ]; then
	A64="$CACHE/apt-arm64"
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	a64_opts=(-oAPT::Sandbox::User=root -oDir::Etc::SourceList="$A64/sources.list"
		  -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$A64/lists"
		  -oDir::Cache="$A64/cache" -oAPT::Get::List-Cleanup=0
		  -oAPT::Architecture=arm64 -oAPT::Architectures::=arm64)
	BUSYBOX="$CACHE/busybox-arm64/bin/busybox"
	if [ ! -x "$BUSYBOX" ]; then
		mkdir -p "$A64/lists/partial" "$A64/cache/archives/partial"
		printf 'deb [arch=arm64] %s %s main\n' "$mirror" "$suite" > "$A64/sources.list"
		log "apt-get update ($suite arm64; private state in $A64)"
		apt-get "${a64_opts[@]}" update -qq >&2 || die "apt-get update for arm64 failed"
		bb_ver=$(apt-cache "${a64_opts[@]}" madison busybox-static | awk '{gsub(/ /,"",$3); print $3; exit}')
		[ -n "$bb_ver" ] || die "no arm64 busybox-static in $suite"
		log "downloading busybox-static:arm64=$bb_ver"
		rm -rf "$CACHE/busybox-arm64" "$A64/deb" && mkdir -p "$A64/deb"
		(cd "$A64/deb" && apt-get "${a64_opts[@]}" download -qq "busybox-static:arm64=$bb_ver" >&2) ||
			die "apt-get download busybox-static:arm64 failed"
		dpkg -x "$A64"/deb/busybox-static_*_arm64.deb "$A64/deb/x"
		mkdir -p "$CACHE/busybox-arm64/bin"
		cp "$A64/deb/x/bin/busybox" "$BUSYBOX"
		rm -rf "$A64/deb"
	fi
fi

echo "KSRC=$KSRC"
echo "KSRC_VERSION=$ksrc_ver"
echo "RUST_LIB_SRC=$RUST_LIB_SRC"
echo "BINDGEN=$BINDGEN"
echo "VENV=$VENV"
echo "LIBCLANG_PATH=/usr/lib/llvm-$LLVM_VER/lib"
echo "BUSYBOX=$BUSYBOX"

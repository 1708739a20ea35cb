#!/usr/bin/env bash
# Set up a Debian 12 machine (as root) to build and test zring. Idempotent.
#   1. install the Debian packages that are missing (apt-get update only then)
#   2. build the pinned AES-NI wolfSSL into deps/ (scripts/build-wolfssl.sh)
#   3. configure (when needed) and build three meson build dirs:
#        build/       release + LTO        (unit, integ, fuzz suites)
#        build-asan/  debug, ASan + UBSan  (unit, fuzz suites)
#        build-tsan/  clang, TSan          (tsan suite)
# Usage: scripts/setup.sh [--no-build]   (--no-build: steps 1 and 2 only)
set -euo pipefail

build=1
case "${1:-}" in
--no-build) build=0 ;;
"") ;;
*) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { echo "setup: $*"; }

# --- 1. Debian packages -----------------------------------------------------------
packages=(
	# build
	build-essential meson ninja-build pkg-config liburing-dev libnghttp2-dev
	nanopb libnanopb-dev libjansson-dev libyaml-dev libwolfssl-dev clang
	libclang-rt-14-dev
	# pinned wolfSSL from Debian's source package
	autoconf automake libtool dpkg-dev
	# tests and benches
	iproute2 iptables haproxy iperf3 nghttp2-proxy nghttp2-client python3-h2
	python3-grpcio python3-grpc-tools python3-protobuf openssl curl socat wrk
	sockperf procps
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if ((${#missing[@]})); then
	say "installing: ${missing[*]}"
	sudo=()
	if [[ $EUID -ne 0 ]]; then
		command -v sudo >/dev/null || { say "not root and no sudo: cannot install packages"; exit 1; }
		sudo=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. pinned wolfSSL ------------------------------------------------------------
wolfssl_prefix=$(bash scripts/build-wolfssl.sh | tail -n 1)
say "wolfSSL: $wolfssl_prefix"
bash scripts/helm.sh >/dev/null || say "helm.sh failed: the chart test will be skipped"
((build)) || exit 0

# --- 3. meson build dirs ----------------------------------------------------------
# configure <dir> <CC> <meson options...>: set up the dir if new or broken, or
# reconfigure it if its options changed (recorded in <dir>/.zring-setup); otherwise
# leave it to ninja, which re-runs meson itself when a meson.build changes.
configure() {
	local dir=$1 cc=$2; shift 2
	local want="CC=$cc $*" log
	log=$(mktemp)
	if [[ -f $dir/meson-private/coredata.dat ]]; then
		[[ -f $dir/.zring-setup && "$(<"$dir/.zring-setup")" == "$want" ]] && { rm -f "$log"; return 0; }
		say "$dir: reconfiguring"
		set -- --reconfigure "$@"
	else
		say "$dir: configuring"
		rm -rf "$dir" # a half-made dir from a failed first setup
	fi
	if ! CC=$cc meson setup "$@" "$dir" >"$log" 2>&1; then
		cat "$log"
		rm -f "$log"
		say "$dir: meson setup failed (see above and $dir/meson-logs/meson-log.txt)"
		exit 1
	fi
	rm -f "$log"
	echo "$want" >"$dir/.zring-setup"
}

wolf=-Dwolfssl_prefix=$wolfssl_prefix
configure build gcc --buildtype=release -Db_lto=true "$wolf"
configure build-asan gcc --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false "$wolf"
configure build-tsan clang --buildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false "$wolf"

for dir in build build-asan build-tsan; do
	say "building $dir"
	ninja -C "$dir" || { say "$dir: build failed"; exit 1; }
done
say "done"

#!/usr/bin/env bash
# Build the pinned wolfSSL with AES-NI from Debian's own source package and install
# it into deps/wolfssl-<version>/ (Debian's libwolfssl is built without AES-NI and
# is ~27x slower at AES-GCM; see DESIGN.md).
#
# The system's apt sources are not touched: a private sources file with deb-src
# lines for the mirrors the system already uses, and private lists/cache dirs.
# Cached: a second run with the same version and flags does nothing.
# Prints the install prefix as the last line.
set -euo pipefail

# Debian's bookworm-security package (5.5.4 plus Debian's CVE patches).
DEB_VERSION=${WOLFSSL_DEB_VERSION:-5.5.4-2+deb12u3}
UPSTREAM=${DEB_VERSION%%-*}
CONFIGURE_FLAGS=(
	--enable-tls13 --enable-alpn --enable-sni --enable-session-ticket
	--enable-certgen --enable-certreq --enable-certext --enable-opensslextra
	--enable-keying-material --enable-aesni --enable-intelasm --enable-sp
	--enable-sp-asm --enable-ecc --enable-supportedcurves --enable-altcertchains
	--enable-aesgcm-stream
	--disable-oldtls --disable-examples --disable-crypttests
)
# LARGE_STATIC_BUFFERS: a record-sized input buffer inside each session, so
# receiving a 16 KiB record does not malloc, zero and free a buffer each time
# (perf showed ShrinkInputBuffer's ForceZero at ~2-3% of a tunnel's CPU).
# HAVE_SECRET_CALLBACK + --enable-aesgcm-stream: once the handshake is done zring
# seals and opens TLS 1.3 records itself (hbone/tlsrec.c), straight between its
# buffers, from the traffic secrets wolfSSL hands over and wolfCrypt's AES-GCM.
BUILD_CPPFLAGS="-DWOLFSSL_ALT_NAMES -DKEEP_PEER_CERT -DLARGE_STATIC_BUFFERS -DHAVE_SECRET_CALLBACK"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=$root/deps/wolfssl-$UPSTREAM
work=$root/deps/.wolfssl-work
stamp=$prefix/.zring-build-stamp
want_stamp="debian=$DEB_VERSION
configure=${CONFIGURE_FLAGS[*]}
CPPFLAGS=$BUILD_CPPFLAGS"

# Cached?
if [[ -f $prefix/lib/libwolfssl.so && -f $stamp && "$(<"$stamp")" == "$want_stamp" ]]; then
	echo "$prefix"
	exit 0
fi

log() { echo "build-wolfssl: $*" >&2; }
t0=$SECONDS
mkdir -p "$work/src"

# 1. Fetch the source package (kept in deps/.wolfssl-work/src across rebuilds).
dsc=$work/src/wolfssl_$DEB_VERSION.dsc
if [[ ! -f $dsc ]]; then
	# deb-src lines for bookworm and bookworm-security, from the mirrors that the
	# system's own (deb) entries use; apt parses both sources formats for us.
	# shellcheck disable=SC2016 # $(...) is apt's format syntax
	mirrors=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 'Target-Of: deb' |
		awk '$2 == "bookworm" || $2 == "bookworm-security"' | sort -u)
	if [[ -z $mirrors ]]; then
		log "no bookworm entry in /etc/apt/sources.list{,.d/*}; cannot find a mirror"
		exit 1
	fi
	signed=""
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[[ -f $keyring ]] && signed="[signed-by=$keyring] "
	mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
	while read -r uri suite; do
		echo "deb-src ${signed}$uri $suite main"
	done <<<"$mirrors" >"$work/apt/sources.list"

	apt_opts=(-q
		-o "Dir::Etc::SourceList=$work/apt/sources.list"
		-o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$work/apt/lists"
		-o "Dir::Cache=$work/apt/cache")
	# The _apt sandbox user cannot write into the repo: download as root.
	[[ $EUID -eq 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)

	log "fetching Debian source wolfssl=$DEB_VERSION from: $(tr '\n' ' ' <<<"$mirrors")"
	apt-get "${apt_opts[@]}" update >"$work/apt-update.log" 2>&1 ||
		{ cat "$work/apt-update.log" >&2; exit 1; }
	if ! (cd "$work/src" && apt-get "${apt_opts[@]}" --download-only \
		source "wolfssl=$DEB_VERSION") >"$work/apt-source.log" 2>&1; then
		cat "$work/apt-source.log" >&2
		log "versions on the mirrors:" \
			"$(apt-cache "${apt_opts[@]}" showsrc wolfssl | awk '/^Version:/{printf " %s", $2}')"
		log "set WOLFSSL_DEB_VERSION to one of them to override the pin"
		exit 1
	fi
	rm -rf "$work/apt" # the package indexes are not needed any more
fi

# 2. Unpack (applies Debian's patches) into a fresh tree.
srcdir=$work/wolfssl-$DEB_VERSION
rm -rf "$srcdir"
dpkg-source --no-copy -x "$dsc" "$srcdir" >"$work/dpkg-source.log" 2>&1 ||
	{ cat "$work/dpkg-source.log" >&2; exit 1; }

# 3. autogen, configure, make, install.
run() { # run <step> <cmd...>: quiet unless it fails
	local step=$1; shift
	log "$step"
	if ! "$@" >"$work/$step.log" 2>&1; then
		tail -n 40 "$work/$step.log" >&2
		log "$step failed (full log: $work/$step.log)"
		exit 1
	fi
}
cd "$srcdir"
rm -rf "$prefix"
run autogen ./autogen.sh
run configure ./configure --prefix="$prefix" --libdir="$prefix/lib" \
	"${CONFIGURE_FLAGS[@]}" CPPFLAGS="$BUILD_CPPFLAGS"
run make make -j"$(nproc)"
run install make install
grep -q '^#define WOLFSSL_AESNI' "$prefix/include/wolfssl/options.h" ||
	{ log "installed options.h lacks WOLFSSL_AESNI"; exit 1; }

echo "$want_stamp" >"$stamp"
rm -rf "$srcdir"
log "built in $((SECONDS - t0)) s"
echo "$prefix"

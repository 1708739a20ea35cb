#!/bin/sh
# Entrypoint of the zring image (/usr/local/bin/zring-entrypoint). Runs zring with the
# arguments and environment that Istio's ztunnel chart, or zring's chart, gives the
# istio-proxy container:
#  - a leading "proxy ztunnel" (ztunnel's subcommand, passed by both charts) is dropped;
#  - ZTUNNEL_WORKER_THREADS="N%" (as ztunnel accepts it) becomes N percent of the CPU
#    limit (ZTUNNEL_CPU_LIMIT, from the downward API's limits.cpu) or of the CPUs the
#    container may run on, whichever is smaller; rounded up, at least 1;
#  - ZTUNNEL_WORKER_THREADS unset: zring's default, one shard per CPU it may run on,
#    but no more shards than ZTUNNEL_CPU_LIMIT.
# Everything else zring reads itself (PROXY_MODE, INPOD_UDS, LOCAL_XDS_PATH, RUST_LOG,
# LOG_FORMAT, TERMINATION_GRACE_PERIOD_SECONDS). ZRING_BIN overrides the binary (tests).
set -eu

zring=${ZRING_BIN:-/usr/local/bin/zring}

if [ $# -ge 2 ] && [ "$1" = proxy ] && [ "$2" = ztunnel ]; then
	shift 2
fi

cpus=$(nproc 2>/dev/null || echo 1)
limit=${ZTUNNEL_CPU_LIMIT:-}
case $limit in
'' | *[!0-9]* | 0) limit=$cpus ;; # unset, or not a whole number of CPUs
esac
if [ "$limit" -gt "$cpus" ]; then
	limit=$cpus
fi

case ${ZTUNNEL_WORKER_THREADS:-} in
'')
	if [ "$limit" -lt "$cpus" ]; then
		ZTUNNEL_WORKER_THREADS=$limit
		export ZTUNNEL_WORKER_THREADS
	fi
	;;
*%)
	pct=${ZTUNNEL_WORKER_THREADS%\%}
	if ! n=$(awk -v base="$limit" -v pct="$pct" 'BEGIN {
		if (pct !~ /^[0-9]+(\.[0-9]+)?$/ || pct + 0 <= 0 || pct + 0 > 100) exit 1
		n = base * pct / 100; i = int(n); if (i < n) i++; if (i < 1) i = 1; print i }'); then
		echo "zring-entrypoint: ZTUNNEL_WORKER_THREADS=$ZTUNNEL_WORKER_THREADS: want a number or a percentage in (0, 100]" >&2
		exit 2
	fi
	ZTUNNEL_WORKER_THREADS=$n
	export ZTUNNEL_WORKER_THREADS
	;;
esac

exec "$zring" "$@"

#!/bin/sh
# One command for the whole benchmark: bench/run.sh [--quick] [--mtls] [--pin] [--perf] ...
# See bench/README.md. Needs root (network namespaces, iptables).
exec /usr/bin/python3 "$(dirname "$0")/run.py" "$@"

#!/usr/bin/env python3
"""Sum up meson testlog.json files (JSON lines, one test result per line).

Usage: summary.py [--extra-failed N] LOG...
Prints the failed tests, then as the very last line: "N passed, N failed, N skipped".
OK and EXPECTEDFAIL count as passed, SKIP as skipped, any other result as failed;
--extra-failed adds failures that left no log (a failed setup or build).
Exits 1 if anything failed or if no test passed or failed at all (nothing ran).
"""
import argparse
import json
import sys

PASSED = {"OK", "EXPECTEDFAIL"}
SKIPPED = {"SKIP"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra-failed", type=int, default=0)
    ap.add_argument("logs", nargs="*")
    args = ap.parse_args()

    passed = skipped = 0
    failed = []
    for path in args.logs:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError as e:
            print(f"summary: cannot read {path}: {e}")
            args.extra_failed += 1
            continue
        for line in lines:
            if not line.strip():
                continue
            try:
                t = json.loads(line)
            except ValueError:
                print(f"summary: bad line in {path}: {line[:80]!r}")
                args.extra_failed += 1
                continue
            result = t.get("result", "?")
            if result in PASSED:
                passed += 1
            elif result in SKIPPED:
                skipped += 1
            else:
                failed.append(f"{path}: {t.get('name', '?')} {result}")

    for name in failed:
        print(f"FAILED {name}")
    nfailed = len(failed) + args.extra_failed
    if passed + nfailed == 0:
        print("summary: no test was executed")
    print(f"{passed} passed, {nfailed} failed, {skipped} skipped")
    return 1 if nfailed or passed + nfailed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

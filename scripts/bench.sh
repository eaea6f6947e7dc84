#!/usr/bin/env bash
# Run the benchmarks; `short` is the CI setting (small counts), `long` the full one.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-short}
status=0
run() { echo "== $*"; "$@" || { echo "benchmark failed: $*"; status=1; }; }
for b in bench/bench_*.py; do
  [ -e "$b" ] || continue
  run python "$b" --mode "$mode"
done
exit $status

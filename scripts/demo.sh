#!/usr/bin/env bash
# demo.sh -- `make demo`: the flagship job of libps on a local cluster.
# Fetches and converts flights-3m once (scripts/data/fetch.sh caches it in
# data/cache/), then trains L1-regularized logistic regression with Block
# Proximal Gradient and the KKT filter on a scheduler, 2 servers and 2
# workers, printing progress and a final summary.  Usage: scripts/demo.sh BIN_DIR
set -euo pipefail
bin=${1:-build/bin}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
if ! "$root/scripts/data/fetch.sh" flights; then
    echo "demo: could not fetch the flights data set (could npm install vega-datasets?)." >&2
    echo "demo: run scripts/data/fetch.sh flights where npm can install packages," >&2
    echo "demo: or copy its data/cache/flights/ to $cache/flights/, then run make demo again." >&2
    exit 1
fi
echo "== libps demo: L1 logistic regression (BPG + KKT filter) on flights-3m, psrun -s 2 -w 2"
"$bin/psrun" -s 2 -w 2 --timeout 600 --no-prefix -q -- "$bin/pslinear" --algo bpg \
    --train "$cache/flights/train.tsv" --test "$cache/flights/test.tsv" --format flights \
    --iters 80 --blocks 4 --eval-every 10 --json

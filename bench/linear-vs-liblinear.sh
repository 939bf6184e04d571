#!/usr/bin/env bash
# linear-vs-liblinear.sh -- L1-regularized logistic regression, side by side on
# the same train/test split: liblinear (`liblinear-train -s 6 -c 1`, one
# thread) against pslinear (BPG + KKT filter, psrun -s 2 -w 2).  Each tool's
# wall time is its whole training command, data loading included (for
# liblinear: reading the libsvm export, which pslinear writes beforehand with
# 2^24 hashed buckets; the export is not timed).  Prints one JSON line.
# Usage: bench/linear-vs-liblinear.sh [--dataset flights|spam] [BIN_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dataset=flights bin=$root/build/bin
while [ $# -gt 0 ]; do
    case $1 in
    --dataset) dataset=${2:?--dataset needs flights or spam}; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) bin=$1; shift ;;
    esac
done
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
case $dataset in
flights) fmt=flights train=$cache/flights/train.tsv test=$cache/flights/test.tsv
         ps_args=(--iters 80 --blocks 4) ;;
spam)    fmt=text train=$cache/spam/train.txt test=$cache/spam/test.txt
         ps_args=(--iters 300 --blocks 2) ;;
*) echo "unknown dataset $dataset (flights or spam)" >&2; exit 2 ;;
esac
command -v liblinear-train >/dev/null || { echo "liblinear-train not found (apt-get install liblinear-tools)" >&2; exit 1; }
[ -f "$train" ] || "$root/scripts/data/fetch.sh" "$dataset"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }

"$bin/pslinear" --export-libsvm "$tmp/train.svm" --train "$train" --format $fmt --bits 24
"$bin/pslinear" --export-libsvm "$tmp/test.svm" --train "$test" --format $fmt --bits 24

t0=$(now)
liblinear-train -s 6 -c 1 -q "$tmp/train.svm" "$tmp/model" >/dev/null
t1=$(now)
liblinear-predict -b 1 "$tmp/test.svm" "$tmp/model" "$tmp/pred" >/dev/null
ll=$(python3 - "$tmp/test.svm" "$tmp/pred" <<'PY'
import math, sys
ys = [1 if l.split(None, 1)[0] in ("+1", "1") else 0 for l in open(sys.argv[1])]
f = open(sys.argv[2]); hdr = f.readline().split()
col = 1 + hdr[1:].index("1")
ps = [float(l.split()[col]) for l in f]
eps = 1e-15
loss = -sum(math.log(max(p, eps)) if y else math.log(max(1 - p, eps)) for y, p in zip(ys, ps)) / len(ys)
order = sorted(range(len(ps)), key=lambda i: ps[i])
P = sum(ys); N = len(ys) - P; rank = 0; auc = 0.0; i = 0
while i < len(order):             # average ranks over ties
    j = i
    while j < len(order) and ps[order[j]] == ps[order[i]]: j += 1
    r = (i + 1 + j) / 2.0
    auc += r * sum(ys[order[k]] for k in range(i, j)); i = j
auc = (auc - P * (P + 1) / 2.0) / (P * N)
print('{"test_auc": %.6f, "test_logloss": %.6f' % (auc, loss))
PY
)
lib="$ll, \"wall_seconds\": $(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", b - a }')}"

t0=$(now)
out=$("$bin/psrun" -s 2 -w 2 --timeout 600 --no-prefix -q -- "$bin/pslinear" --algo bpg \
      --train "$train" --test "$test" --format $fmt "${ps_args[@]}" --eval-every 0 --json)
t1=$(now)
js=$(printf '%s\n' "$out" | grep '^{' | tail -n 1)
auc=$(printf '%s' "$js" | sed 's/.*"test_auc": \([0-9.]*\).*/\1/')
loss=$(printf '%s' "$js" | sed 's/.*"test_logloss": \([0-9.]*\).*/\1/')
wall=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", b - a }')
libwall=$(printf '%s' "$lib" | sed 's/.*"wall_seconds": \([0-9.]*\).*/\1/')
echo "{\"dataset\": \"$dataset\", \"liblinear\": $lib, \"pslinear\": {\"test_auc\": $auc, \"test_logloss\": $loss, \"wall_seconds\": $wall}, \"wall_ratio\": $(awk -v a=$wall -v b=$libwall 'BEGIN { printf "%.3f", a / b }')}"

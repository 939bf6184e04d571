#!/usr/bin/env bash
# linear-defaults.sh -- are pslinear's defaults trustworthy (issue 16, slice 4)?
# For each cached data set (flights, spam, names, birdstrikes; DATASETS to
# choose; fetch with scripts/data/fetch.sh NAME), with nothing
# but --train/--test/--format: BPG's final objective against liblinear's
# (`liblinear-train -s 6 -c 1`, the same problem: mean logloss + |w|_1 / N, on
# pslinear's libsvm export with 2^24 hashed buckets; its test AUC and logloss
# from `liblinear-predict -b 1` on the test set's export), and FTRL's.
# Prints one JSON line per data set:
#   {"dataset", "examples", "liblinear": {"objective", "seconds", "test_auc",
#    "test_logloss", "nnz"}, "bpg": {"objective", "iterations", "seconds",
#    "test_auc", "test_logloss", "nnz"}, "gap_pct",
#    "ftrl": {"test_auc", "test_logloss", "objective", "nnz", "seconds"}}
# gap_pct = 100 (bpg - liblinear) / liblinear; the goal is gap_pct <= 1.
# Each cluster is bounded (psrun --timeout 600).  Needs liblinear-tools, jq.
# Usage: bench/linear-defaults.sh [BIN_DIR]    env: DATASETS ("flights spam")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${PS_BIN:-$root/build/bin}}
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
command -v liblinear-train >/dev/null || { echo "liblinear-train not found (apt-get install liblinear-tools)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq not found (apt-get install jq)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# compact TRAIN TEST: renumber the hashed feature indices the training set
# uses to 1..K, in place (a test feature the training set lacks is dropped: its
# weight is 0), so that liblinear's time is not spent on 2^24 empty columns;
# the problem, and so the objective, is the same.
compact() {
    python3 - "$@" <<'PY'
import sys
ids = {}
for k, path in enumerate(sys.argv[1:3]):
    out = []
    for line in open(path):
        f = line.split()
        feats = []
        for kv in f[1:]:
            i, v = kv.split(":")
            if k == 0: ids.setdefault(i, len(ids) + 1)
            if i in ids: feats.append((ids[i], v))
        out.append(" ".join([f[0]] + ["%d:%s" % p for p in sorted(feats)]) + "\n")
    open(path, "w").writelines(out)
PY
}

# metrics TEST_SVM PRED MODEL: liblinear's test AUC and logloss (from the
# probabilities of `liblinear-predict -b 1`) and its model's nnz, as JSON
metrics() {
    python3 - "$@" <<'PY'
import json, math, sys
ys = [1 if float(l.split(None, 1)[0]) > 0.5 else 0 for l in open(sys.argv[1])]
lines = open(sys.argv[2]).read().split("\n")
col = lines[0].split()[1:].index("1")        # "labels 1 0": where P(y = 1) is
ps = [float(l.split()[1 + col]) for l in lines[1:] if l.strip()]
ll = -sum(math.log(max(p if y else 1 - p, 1e-15)) for y, p in zip(ys, ps)) / len(ys)
pos = sorted(p for y, p in zip(ys, ps) if y); neg = sorted(p for y, p in zip(ys, ps) if not y)
import bisect                                # AUC: P(score of a positive > a negative)
auc = sum(bisect.bisect_left(neg, p) + 0.5 * (bisect.bisect_right(neg, p) - bisect.bisect_left(neg, p))
          for p in pos) / (len(pos) * len(neg))
m = open(sys.argv[3]).read().split("\nw\n", 1)[1].split()
print(json.dumps({"test_auc": round(auc, 6), "test_logloss": round(ll, 6),
                  "nnz": sum(1 for v in m if float(v) != 0)}))
PY
}

# pslin ARGS...: the final JSON summary of one psrun -s 2 -w 2 pslinear run
pslin() {
    timeout 620 "$bin/psrun" -s 2 -w 2 --timeout 600 --no-prefix -q -- "$bin/pslinear" "$@" \
        >"$tmp/ps.log" 2>&1 || { tail -n 5 "$tmp/ps.log" >&2; return 1; }
    grep '^{"algo"' "$tmp/ps.log" | tail -n 1
}

for ds in ${DATASETS:-flights spam}; do
    case $ds in
    flights) fmt=flights train=$cache/flights/train.tsv test=$cache/flights/test.tsv ;;
    spam)    fmt=text train=$cache/spam/train.txt test=$cache/spam/test.txt ;;
    names)   fmt=text train=$cache/names/train.txt test=$cache/names/test.txt ;;
    birdstrikes) fmt=csv train=$cache/birdstrikes/train.csv test=$cache/birdstrikes/test.csv ;;
    *) echo "linear-defaults: unknown data set $ds (flights, spam, names, birdstrikes)" >&2; exit 2 ;;
    esac
    [ -f "$train" ] || { echo "linear-defaults: $ds not cached (scripts/data/fetch.sh $ds); skipped" >&2; continue; }
    "$bin/pslinear" --export-libsvm "$tmp/train.svm" --train "$train" --format "$fmt" --bits 24
    "$bin/pslinear" --export-libsvm "$tmp/test.svm" --train "$test" --format "$fmt" --bits 24
    compact "$tmp/train.svm" "$tmp/test.svm"
    n=$(wc -l <"$tmp/train.svm")
    t0=$(now)
    lo=$(liblinear-train -s 6 -c 1 "$tmp/train.svm" "$tmp/model" | sed -n 's/^Objective value = //p')
    t1=$(now)
    liblinear-predict -b 1 "$tmp/test.svm" "$tmp/model" "$tmp/pred" >/dev/null
    lib=$(jq -nc --argjson o "$lo" --argjson n "$n" --arg s "$(secs "$t0" "$t1")" \
          --argjson m "$(metrics "$tmp/test.svm" "$tmp/pred" "$tmp/model")" \
          '{objective: ($o / $n), seconds: ($s | tonumber)} + $m')
    t0=$(now); b=$(pslin --train "$train" --test "$test" --format "$fmt" --json); t1=$(now)
    bs=$(secs "$t0" "$t1")
    t0=$(now); f=$(pslin --algo ftrl --train "$train" --test "$test" --format "$fmt" --json); t1=$(now)
    fs=$(secs "$t0" "$t1")
    jq -nc --arg ds "$ds" --argjson n "$n" --argjson lib "$lib" --argjson b "$b" --argjson f "$f" \
        --arg bs "$bs" --arg fs "$fs" \
        '{dataset: $ds, examples: $n, liblinear: $lib,
          bpg: {objective: $b.objective, iterations: $b.iterations, seconds: ($bs | tonumber),
                test_auc: $b.test_auc, test_logloss: $b.test_logloss, nnz: $b.nnz},
          gap_pct: (100 * ($b.objective - $lib.objective) / $lib.objective * 1000 | round / 1000),
          ftrl: {test_auc: $f.test_auc, test_logloss: $f.test_logloss, objective: $f.objective,
                 nnz: $f.nnz, seconds: ($fs | tonumber)}}'
done

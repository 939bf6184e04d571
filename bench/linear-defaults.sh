#!/usr/bin/env bash
# linear-defaults.sh -- are pslinear's defaults trustworthy (issue 16, slice 4)?
# For each cached data set (flights, spam; DATASETS to choose), with nothing
# but --train/--test/--format: BPG's final objective against liblinear's
# (`liblinear-train -s 6 -c 1`, the same problem: mean logloss + |w|_1 / N, on
# pslinear's libsvm export with 2^24 hashed buckets), and FTRL's test AUC.
# Prints one JSON line per data set:
#   {"dataset", "examples", "liblinear": {"objective", "seconds"},
#    "bpg": {"objective", "iterations", "seconds", "test_auc"}, "gap_pct",
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
    *) echo "linear-defaults: unknown data set $ds (flights or spam)" >&2; exit 2 ;;
    esac
    [ -f "$train" ] || { echo "linear-defaults: $ds not cached (scripts/data/fetch.sh $ds); skipped" >&2; continue; }
    "$bin/pslinear" --export-libsvm "$tmp/train.svm" --train "$train" --format "$fmt" --bits 24
    n=$(wc -l <"$tmp/train.svm")
    t0=$(now)
    lo=$(liblinear-train -s 6 -c 1 "$tmp/train.svm" "$tmp/model" | sed -n 's/^Objective value = //p')
    t1=$(now)
    lib=$(jq -nc --argjson o "$lo" --argjson n "$n" --arg s "$(secs "$t0" "$t1")" \
          '{objective: ($o / $n), seconds: ($s | tonumber)}')
    t0=$(now); b=$(pslin --train "$train" --test "$test" --format "$fmt" --json); t1=$(now)
    bs=$(secs "$t0" "$t1")
    t0=$(now); f=$(pslin --algo ftrl --train "$train" --test "$test" --format "$fmt" --json); t1=$(now)
    fs=$(secs "$t0" "$t1")
    jq -nc --arg ds "$ds" --argjson n "$n" --argjson lib "$lib" --argjson b "$b" --argjson f "$f" \
        --arg bs "$bs" --arg fs "$fs" \
        '{dataset: $ds, examples: $n, liblinear: $lib,
          bpg: {objective: $b.objective, iterations: $b.iterations, seconds: ($bs | tonumber),
                test_auc: $b.test_auc},
          gap_pct: (100 * ($b.objective - $lib.objective) / $lib.objective * 1000 | round / 1000),
          ftrl: {test_auc: $f.test_auc, test_logloss: $f.test_logloss, objective: $f.objective,
                 nnz: $f.nnz, seconds: ($fs | tonumber)}}'
done

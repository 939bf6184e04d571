# common.sh -- sourced by the bench/paper scripts: paths, one bounded pslinear
# run on flights-3m under psrun -s 2 -w $WORKERS (default 2), and progress-line parsing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${PS_BIN:-$root/build/bin}
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
out=$root/bench/paper/out
mkdir -p "$out"
[ -f "$cache/flights/train.tsv" ] || "$root/scripts/data/fetch.sh" flights
command -v gnuplot >/dev/null || { echo "gnuplot not found (apt-get install -y gnuplot-nox)" >&2; exit 1; }
flights=(--train "$cache/flights/train.tsv" --test "$cache/flights/test.tsv" --format flights)

# lin LOG ARGS...: one pslinear cluster, at most 170 s; psrun kills every node
# on --timeout, SIGTERM or SIGINT, so nothing outlives the run.
lin() {
    local log=$1; shift
    timeout 180 "$bin/psrun" -s 2 -w "${WORKERS:-2}" -q --timeout 170 -- "$bin/pslinear" "$@" >"$log" 2>&1
}

# prog LOG: the scheduler's progress lines as
#   iter objective nnz keys_sent(cumulative) filtered_pct elapsed_s idle_pct test_logloss test_auc
# (test columns "-" when that line has no evaluation)
prog() {
    awk '/^\[scheduler\] (iter|epoch) / {
        it = $3; obj = "-"; nnz = "-"; ks = "-"; fp = "-"; el = "-"; idle = "-"; ll = "-"; auc = "-"
        for (i = 2; i <= NF; i++) {
            if ($i == "objective") obj = $(i+1)
            else if ($i == "nnz") nnz = $(i+1)
            else if ($i == "logloss") ll = $(i+1)
            else if ($i == "auc") auc = $(i+1)
            else if ($i == "sent") ks = $(i+1)
            else if ($i == "filtered") { fp = $(i+1); sub(/%/, "", fp) }
            else if ($i == "idle") { idle = $(i+1); sub(/%/, "", idle) }
            else if ($i ~ /^[0-9.]+s$/) { el = $i; sub(/s$/, "", el) }
        }
        print it, obj, nnz, ks, fp, el, idle, ll, auc }' "$1"
}
json() { grep -o '{"algo".*}' "$1" | tail -1; }

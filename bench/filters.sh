#!/usr/bin/env bash
# filters.sh -- traffic saved by each filter chain on a real training job, and
# the CPU cost per MB of each filter.
#
# Part 1: pslinear BPG (KKT filter on, BSP) on flights-3m under psrun -s 2 -w 2
# with `--stats`, once per filter setting, same flags every run.  From the
# per-node stats lines of table "w": bytes the workers sent (after filters,
# and before them), bytes the servers sent back (pull answers; the servers
# set no filter, so this is unchanged), and pslinear's JSON summary (test
# AUC / logloss, train seconds).
# Part 2: psbench push of 100000 random u64 keys x 2 f32 (the shape of a BPG
# push: gradient + curvature), psrun -s 1 -w 1, 50 iterations, once per filter;
# cost per MB = (p50 with filter - p50 without) / raw MB per push.  Median p50
# of BENCH_REPEAT runs.
#
# Prints Markdown tables; raw logs go to bench/paper/out/filters/.
# Usage: bench/filters.sh [BIN_DIR]      env: ITERS (20), SIGMOD (1e-6),
#        BENCH_REPEAT (3), LIBPS_DATA_CACHE
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/bin}
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
out=$root/bench/paper/out/filters
iters=${ITERS:-20} sigmod=${SIGMOD:-1e-6} rep=${BENCH_REPEAT:-3}
mkdir -p "$out"
[ -f "$cache/flights/train.tsv" ] || "$root/scripts/data/fetch.sh" flights

settings=(none keycache zstd fp16 int8 "sigmod=$sigmod" keycache,zstd keycache,zstd,int8)
lin_args=(--algo bpg --train "$cache/flights/train.tsv" --test "$cache/flights/test.tsv"
          --format flights --iters "$iters" --blocks 4 --eval-every 0 --json)

# sum a field of the "stats table w" lines of one role:
#   $1 log, $2 role (worker|server), $3 field: wire (bytes sent after filters),
#   raw (before filters), recv (bytes received, on the wire)
stat_sum() {
    awk -v role="$2" -v f="$3" '
        index($0, "[" role " ") == 1 && / stats table w: / {
            match($0, /sent [0-9]+ msgs [0-9]+ keys [0-9]+ bytes \([0-9]+ before/)
            split(substr($0, RSTART, RLENGTH), p, " ")
            match($0, /received [0-9]+ msgs [0-9]+ keys [0-9]+ bytes/)
            split(substr($0, RSTART, RLENGTH), q, " ")
            if (f == "wire") t += p[6]; else if (f == "raw") t += substr(p[8], 2); else t += q[6]
        }
        END { printf "%d\n", t }' "$1"
}

echo "## pslinear BPG on flights-3m, psrun -s 2 -w 2, $iters iterations, --blocks 4, KKT on"
echo
echo '```'
echo "$bin/psrun -s 2 -w 2 --stats -q -- $bin/pslinear ${lin_args[*]} [--filters SPEC]"
echo '```'
echo
echo "| filters | worker->server bytes (wire) | before filters | ratio vs none | saved | server->worker bytes | bytes_sent (pslinear) | test AUC | test logloss | train s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
base=
for s in "${settings[@]}"; do
    tag=${s//[,=]/_}
    log=$out/lin-$tag.log
    fl=(); [ "$s" = none ] || fl=(--filters "$s")
    timeout 180 "$bin/psrun" -s 2 -w 2 --stats -q --timeout 170 -- "$bin/pslinear" "${lin_args[@]}" "${fl[@]}" \
        >"$log" 2>&1 || { echo "| $s | run failed (see $log) |"; continue; }
    js=$(grep -o '{"algo".*}' "$log" | tail -1)
    w=$(stat_sum "$log" worker wire) r=$(stat_sum "$log" worker raw) sv=$(stat_sum "$log" server wire)
    [ -n "$base" ] || base=$w
    echo "$js" | jq -r --arg s "$s" --argjson w "$w" --argjson r "$r" --argjson sv "$sv" --argjson b "$base" '
        "| \($s) | \($w) | \($r) | \(($b / $w * 100 | round) / 100)x | \(((1 - $w / $b) * 1000 | round) / 10)% | \($sv) | \(.bytes_sent) | \(.test_auc) | \(.test_logloss) | \(.train_seconds) |"'
done

echo
echo "## Filter cost: psbench push, 100000 random keys x 2 f32, psrun -s 1 -w 1, 50 iters, median p50 of $rep runs"
echo
echo '```'
echo "$bin/psrun -s 1 -w 1 --stats -q -- $bin/psbench --op push --keys 100000 --val-len 2 --random-keys --store --iters 50 --json --progress 0 [--filters X]"
echo '```'
echo
echo "| filters | p50 us/push | raw MB/push | wire MB/push | extra us per raw MB |"
echo "|---|---:|---:|---:|---:|"
p0=
for s in none keycache zstd fp16 int8 "sigmod=$sigmod" keycache,zstd keycache,zstd,int8; do
    tag=${s//[,=]/_}
    fl=(); [ "$s" = none ] || fl=(--filters "$s")
    ps=()
    for i in $(seq "$rep"); do
        log=$out/bench-$tag-$i.log
        timeout 60 "$bin/psrun" -s 1 -w 1 --stats -q --timeout 55 -- "$bin/psbench" --op push --keys 100000 \
            --val-len 2 --random-keys --store --iters 50 --json --progress 0 "${fl[@]}" >"$log" 2>&1 || continue
        ps+=("$(grep -o '"p50_us":[0-9.]*' "$log" | cut -d: -f2)")
    done
    [ ${#ps[@]} -gt 0 ] || { echo "| $s | failed |"; continue; }
    p=$(printf '%s\n' "${ps[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    # per-push bytes from the last run's worker stats of table psbench (warm-up pushes included)
    read -r msgs raw wire < <(awk '/^\[worker 0\] stats table psbench: / {
        match($0, /sent [0-9]+ msgs [0-9]+ keys [0-9]+ bytes \([0-9]+ before/)
        split(substr($0, RSTART, RLENGTH), p, " "); print p[2], substr(p[8], 2), p[6] }' "$log")
    [ -n "$p0" ] || p0=$p
    awk -v s="$s" -v p="$p" -v p0="$p0" -v m="$msgs" -v r="$raw" -v w="$wire" 'BEGIN {
        mb = r / m / 1e6; printf "| %s | %.0f | %.3f | %.3f | %s |\n", s, p, mb, w / m / 1e6,
        (s == "none") ? "-" : sprintf("%.0f", (p - p0) / mb) }'
done
echo
echo "Raw logs: $out"

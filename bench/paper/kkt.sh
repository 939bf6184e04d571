#!/usr/bin/env bash
# kkt.sh -- (b) the KKT filter: BPG on flights-3m (psrun -s 2 -w 2, tau 0,
# ITERS iterations, 4 blocks) with --kkt and --no-kkt.  Gradient keys the
# workers sent in each iteration (difference of pslinear's cumulative "keys
# sent"), final nnz, objective, test AUC/logloss.  Writes out/kkt.dat,
# out/kkt.png and prints a Markdown table.   env: ITERS (40), L1 (pslinear's
# default 1/N; set, e.g. L1=1e-5, files get the suffix -l1_$L1)
source "$(dirname "$0")/common.sh"
iters=${ITERS:-40}
l1=(); sfx=
if [ -n "${L1:-}" ]; then l1=(--l1 "$L1"); sfx=-l1_$L1; fi
echo "| KKT filter | keys sent (all iterations) | keys filtered | final nnz | final objective | test AUC | test logloss | train s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for k in kkt no-kkt; do
    log=$out/kkt$sfx-$k.log
    lin "$log" --algo bpg "${flights[@]}" --iters "$iters" --blocks 4 --tau 0 --eval-every 0 --json --$k "${l1[@]}" \
        || { echo "| $k | failed (see $log) |"; continue; }
    prog "$log" | awk 'BEGIN { p = 0 } { print $1, $4 - p, $2, $3; p = $4 }' >"$out/kkt$sfx-$k.dat"
    j=$(json "$log")
    jq -r --arg k "$k" '"| \(if $k == "kkt" then "on" else "off" end) | \(.keys_sent) | \(.keys_filtered_pct)% | \(.nnz) | \(.objective) | \(.test_auc) | \(.test_logloss) | \(.train_seconds) |"' <<<"$j"
done
gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$out/kkt$sfx.png"
set title "BPG on flights-3m, psrun -s 2 -w 2: gradient keys sent per iteration ${L1:+(l1 $L1)}"
set xlabel "iteration"; set ylabel "keys sent (both workers)"
set yrange [0:*]; set grid; set key bottom right
plot "$out/kkt$sfx-no-kkt.dat" using 1:2 with linespoints lw 2 title "KKT filter off", \
     "$out/kkt$sfx-kkt.dat" using 1:2 with linespoints lw 2 title "KKT filter on"
GP
echo
echo "Plot: $out/kkt$sfx.png (per-iteration data: $out/kkt$sfx-kkt.dat, $out/kkt$sfx-no-kkt.dat: iter keys objective nnz)"

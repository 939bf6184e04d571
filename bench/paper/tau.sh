#!/usr/bin/env bash
# tau.sh -- (a) bounded delay: BPG on flights-3m (psrun -s 2 -w 2, KKT on,
# ITERS iterations, 4 blocks) for tau in TAUS.  Per tau: the worker idle share
# at the end and the wall time (pslinear's elapsed, 0.1 s resolution) to the
# first iteration whose objective is <= TARGET.  Writes out/tau.dat, out/tau.png
# and prints a Markdown table.   env: TAUS ("0 1 2 4 8"), ITERS (40), TARGET (0.4440)
source "$(dirname "$0")/common.sh"
taus=${TAUS:-0 1 2 4 8} iters=${ITERS:-40} target=${TARGET:-0.4440}
dat=$out/tau.dat
echo "# tau idle_pct time_to_target_s iters_to_target train_s final_objective test_auc" >"$dat"
echo "| tau | worker idle | time to objective <= $target | iterations to it | train s ($iters iters) | final objective | test AUC |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for t in $taus; do
    log=$out/tau-$t.log
    lin "$log" --algo bpg "${flights[@]}" --iters "$iters" --blocks 4 --tau "$t" --eval-every 0 --json \
        || { echo "| $t | failed (see $log) |"; continue; }
    read -r tt it < <(prog "$log" | awk -v T="$target" '$2 != "-" && $2 + 0 <= T + 0 { print $6, $1 + 1; f = 1; exit }
                                                     END { if (!f) print "nan", "-" }')
    j=$(json "$log")
    idle=$(jq -r .idle_pct <<<"$j") tr=$(jq -r .train_seconds <<<"$j")
    obj=$(jq -r .objective <<<"$j") auc=$(jq -r .test_auc <<<"$j")
    echo "$t $idle $tt $it $tr $obj $auc" >>"$dat"
    echo "| $t | $idle% | ${tt} s | $it | $tr | $obj | $auc |"
done
gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$out/tau.png"
set title "BPG on flights-3m, psrun -s 2 -w 2: bounded delay tau"
set xlabel "tau (max outstanding iterations)"
set ylabel "worker idle share (%)"
set y2label "seconds to objective <= $target"
set ytics nomirror; set y2tics; set yrange [0:*]; set y2range [0:*]
set key top right; set grid
plot "$dat" using 1:2 with linespoints lw 2 title "idle %", \
     "$dat" using 1:3 axes x1y2 with linespoints lw 2 title "time to target (s)"
GP
echo
echo "Plot: $out/tau.png"

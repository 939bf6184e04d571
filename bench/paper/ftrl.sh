#!/usr/bin/env bash
# ftrl.sh -- (c) asynchronous FTRL-proximal against BPG (BSP, tau 0, KKT on):
# test logloss over wall time on flights-3m, psrun -s 2 -w 2, each with its
# default hyperparameters.  Points come from pslinear's progress lines (per
# BPG iteration with --eval-every BPG_EVAL, per FTRL epoch with
# --eval-every 1); the elapsed time includes the evaluation passes.  Writes
# out/ftrl.dat, out/bpg.dat, out/ftrl.png and prints a Markdown table.
# env: EPOCHS (6), ITERS (40), BPG_EVAL (2)
source "$(dirname "$0")/common.sh"
epochs=${EPOCHS:-6} iters=${ITERS:-40} be=${BPG_EVAL:-2}
lin "$out/ftrl.log" --algo ftrl "${flights[@]}" --epochs "$epochs" --eval-every 1 --json || echo "ftrl run failed (see $out/ftrl.log)" >&2
lin "$out/bpg.log" --algo bpg "${flights[@]}" --iters "$iters" --blocks 4 --tau 0 --eval-every "$be" --json || echo "bpg run failed (see $out/bpg.log)" >&2
for a in ftrl bpg; do
    prog "$out/$a.log" | awk '$8 != "-" { print $6, $8, $9, $1 + 1 }' >"$out/$a.dat"
done
echo "| algorithm | points (elapsed s : test logloss) | final test logloss | test AUC | nnz | train s | idle |"
echo "|---|---|---:|---:|---:|---:|---:|"
for a in ftrl bpg; do
    pts=$(awk '{ printf "%s%s: %s", (NR > 1 ? ", " : ""), $1, $2 }' "$out/$a.dat")
    json "$out/$a.log" | jq -r --arg p "$pts" '"| \(.algo) | \($p) | \(.test_logloss) | \(.test_auc) | \(.nnz) | \(.train_seconds) | \(.idle_pct)% |"'
done
gnuplot <<GP
set terminal pngcairo size 800,500 noenhanced
set output "$out/ftrl.png"
set title "flights-3m, psrun -s 2 -w 2: test logloss over wall time"
set xlabel "elapsed seconds (scheduler, includes evaluation)"; set ylabel "test logloss"
set grid; set key top right
plot "$out/ftrl.dat" using 1:2 with linespoints lw 2 title "FTRL (async, per epoch)", \
     "$out/bpg.dat" using 1:2 with linespoints lw 2 title "BPG (BSP, KKT, every $be iterations)"
GP
echo
echo "Plot: $out/ftrl.png"

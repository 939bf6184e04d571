#!/usr/bin/env bash
# tau.sh -- (a) bounded delay (issue 16): BPG on flights-3m under psrun -s 2 -w WORKERS (4)
# (KKT on, 4 blocks, ITERS iterations, --eval-every 0) for every tau in TAUS,
# each without and with simulated stragglers (STRAGGLE: pslinear --straggle,
# default lognormal:300 = every worker sleeps a seeded lognormal time, sigma 1,
# of mean 300 ms per iteration, a few times an iteration's compute here).
# With tau > 0 a worker computes block t+1 while block t's push/pull is
# outstanding, its margins moved by its estimate of each step in flight
# (DCOMP=1, --delay-comp), and the step is divided by 1 + (d - 1), d the
# updates still in flight when it computes (--delay-rule seen; DRULE=bound:
# d = tau; DCOMP=0: 1 + d) (apps/linear/bpg.c).
#
# Prints one JSON line per run:
#   {"tau", "stragglers", "rep", "seconds_to_target", "iterations_to_target",
#    "idle_pct", "final_objective", "iterations", "train_seconds", "test_auc",
#    "mean_delay"}
# (seconds_to_target: pslinear's elapsed time, 0.1 s resolution, at the first
# iteration whose objective is <= TARGET; null if never) into out/tau.jsonl,
# and plots out/tau-objective.png (objective vs time, one curve per tau, both
# straggler settings) and out/tau-idle.png (idle % vs tau), copied to
# bench/paper/.  The objective of a progress line at tau > 0 is the loss of
# the weights pulled so far (margins that miss up to tau updates, without
# the estimates), plus the current norms; the final one is exact (the last
# iteration applies every update).
# The whole script stays under BUDGET seconds (runs that would start later
# are skipped and said so).
# env: TAUS ("0 1 2 4 8 16"), ITERS (40), TARGET (0.4450), STRAGGLE
# (lognormal:300), DSTEP (--delay-step, 1), DRULE (--delay-rule, seen), DCOMP
# (--delay-comp, 1), REPS (runs of each setting, 1; the plots show the
# first), BUDGET (900), WORKERS (4), PS_BIN.
# --quick: TAUS "0 2 8", ITERS 30, BUDGET 300.
source "$(dirname "$0")/common.sh"
if [ "${1:-}" = --quick ]; then : "${TAUS:=0 2 8}" "${ITERS:=30}" "${BUDGET:=300}"; fi
export WORKERS=${WORKERS:-4}
taus=${TAUS:-0 1 2 4 8 16} iters=${ITERS:-40} target=${TARGET:-0.4450}
strag=${STRAGGLE:-lognormal:300} budget=${BUDGET:-900} dstep=${DSTEP:-1} drule=${DRULE:-seen}
reps=${REPS:-1} dcomp=${DCOMP:-1}
jl=$out/tau.jsonl
: >"$jl"
start=$SECONDS
for rep in $(seq 1 "$reps"); do
for st in none "$strag"; do
    for t in $taus; do
        if [ $((SECONDS - start)) -gt $((budget - 60)) ]; then
            echo "tau.sh: skipped tau $t stragglers $st rep $rep (budget ${budget}s spent)" >&2; continue
        fi
        tag=tau-$t-${st//[:]/_}; log=$out/$tag.log
        [ "$rep" = 1 ] || log=$out/$tag-r$rep.log
        lin "$log" --algo bpg "${flights[@]}" --iters "$iters" --blocks 4 --tau "$t" \
            --eval-every 0 --json --straggle "$st" --delay-step "$dstep" --delay-rule "$drule" \
            --delay-comp "$dcomp" --tol 0 || { echo "tau.sh: tau $t stragglers $st failed (see $log)" >&2; continue; }
        [ "$rep" = 1 ] && prog "$log" | awk '$2 != "-" { print $6, $2 }' >"$out/$tag.dat"
        read -r tt it < <(prog "$log" | awk -v T="$target" '$2 != "-" && $2 + 0 <= T + 0 { print $6, $1 + 1; f = 1; exit }
                                                         END { if (!f) print "null", "null" }')
        json "$log" | jq -c --argjson tau "$t" --arg st "$st" --argjson tt "$tt" --argjson it "$it" \
            --argjson rep "$rep" \
            '{tau: $tau, stragglers: $st, rep: $rep, seconds_to_target: $tt, iterations_to_target: $it,
              idle_pct: .idle_pct, final_objective: .objective, iterations: .iterations,
              train_seconds: .train_seconds, test_auc: .test_auc, mean_delay: .mean_delay}' | tee -a "$jl"
    done
done
done
jq -r 'select(.stragglers == "none" and .rep == 1) | "\(.tau) \(.idle_pct)"' "$jl" >"$out/idle-none.dat"
jq -r 'select(.stragglers != "none" and .rep == 1) | "\(.tau) \(.idle_pct)"' "$jl" >"$out/idle-strag.dat"
plots="" k=0
for t in $taus; do
    k=$((k + 1))
    for st in none "$strag"; do
        f=$out/tau-$t-${st//[:]/_}.dat
        [ -s "$f" ] || continue
        lt=$([ "$st" = none ] && echo 1 || echo 2)
        plots+="${plots:+, }\"$f\" using 1:2 with lines lc $k dt $lt lw 2 title \"tau $t, $st\""
    done
done
gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set output "$out/tau-objective.png"
set title "BPG, flights-3m, -s 2 -w $WORKERS, 4 blocks: objective vs time (dashed: stragglers $strag)"
set xlabel "seconds"; set ylabel "objective"; set yrange [0.44:0.50]; set key outside right; set grid
plot $plots
set output "$out/tau-idle.png"
set title "BPG on flights-3m: worker idle share vs tau"
set xlabel "tau"; set ylabel "idle (% of worker time waiting in pulls)"; set yrange [0:*]
set autoscale y; set key top right
plot "$out/idle-none.dat" using 1:2 with linespoints lw 2 title "no stragglers", \
     "$out/idle-strag.dat" using 1:2 with linespoints lw 2 title "$strag"
GP
cp "$out/tau-objective.png" "$out/tau-idle.png" "$(dirname "$0")/"
echo "tau.sh: $(wc -l <"$jl") runs in $((SECONDS - start)) s -> $jl, bench/paper/tau-objective.png, bench/paper/tau-idle.png" >&2

#!/usr/bin/env bash
# test_linear_defaults.sh -- pslinear's defaults on a small data set (issue 16,
# slice 4), on the 400-example fixture of test_pslinear_ref.sh (its last 100
# lines are the test set: this checks that training works, not generalization):
#  - BPG with no --iters stops on the relative tolerance (--tol): it says
#    "converged at iteration K", runs K + 1 < 2000 iterations, and the final
#    JSON's "iterations" is that count; with --tol 0 it runs all --iters;
#  - FTRL with its defaults (minibatch 1/100 of the shard) learns: test AUC
#    > 0.75 (the old minibatch of 1000 made one push per worker per epoch);
#    its progress lines show the nnz of the model (> 0), and its objective
#    includes the L1 term (the objective is above the mean progressive loss);
#  - the summary's nnz is exactly the number of weights --save writes.
source "$(dirname "$0")/lib.sh"

run() { timeout $((60 * SCALE)) "$PS_BIN/psrun" -s 1 -w 2 --timeout $((50 * SCALE)) --no-prefix -q -- \
        "$PS_BIN/pslinear" "$@"; }
fx="$(dirname "$0")/pslinear_fixture.awk"
awk -v seed=11 -f "$fx" </dev/null >"$TMP/train.svm" && awk -v seed=11 -f "$fx" </dev/null |
    tail -n 100 >"$TMP/test.svm" || fail "fixture"
jf() { grep '^{"algo"' "$1" | tail -n 1 | python3 -c "import json, sys; print(json.load(sys.stdin)[\"$2\"])"; }

run --train "$TMP/train.svm" --test "$TMP/test.svm" --json --save "$TMP/bpg.model" >"$TMP/bpg.log" 2>&1 ||
    fail "bpg with defaults exited $?"
k=$(sed -n 's/^pslinear: converged at iteration \([0-9]*\):.*/\1/p' "$TMP/bpg.log")
[ -n "$k" ] || fail "bpg with defaults did not stop on the tolerance: $(tail -n 2 "$TMP/bpg.log")"
it=$(jf "$TMP/bpg.log" iterations)
[ "$it" -eq $((k + 1)) ] && [ "$it" -lt 2000 ] || fail "converged at $k but ran $it iterations"
nnz=$(jf "$TMP/bpg.log" nnz); saved=$(grep -vc '^#' "$TMP/bpg.model")
[ "$nnz" = "$saved" ] || fail "bpg summary nnz $nnz, --save wrote $saved weights"
pass "bpg defaults: converged at iteration $k ($it iterations), objective $(jf "$TMP/bpg.log" objective), nnz $nnz = saved weights"

run --train "$TMP/train.svm" --iters 30 --tol 0 --json >"$TMP/bpg0.log" 2>&1 || fail "--tol 0 exited $?"
[ "$(jf "$TMP/bpg0.log" iterations)" = 30 ] || fail "--tol 0 --iters 30 did not run 30 iterations"
pass "--tol 0 runs every iteration"

run --algo ftrl --train "$TMP/train.svm" --test "$TMP/test.svm" --json --save "$TMP/ftrl.model" \
    >"$TMP/ftrl.log" 2>&1 || fail "ftrl with defaults exited $?"
auc=$(jf "$TMP/ftrl.log" test_auc)
awk -v a="$auc" 'BEGIN { exit !(a > 0.75) }' || fail "ftrl defaults: test AUC $auc <= 0.75"
grep '^epoch' "$TMP/ftrl.log" | awk '{ for (i = 1; i < NF; i++) if ($i == "nnz") n = $(i + 1) }
    END { exit !(n > 0) }' || fail "ftrl progress shows nnz 0: $(grep '^epoch' "$TMP/ftrl.log" | tail -n 1)"
nnz=$(jf "$TMP/ftrl.log" nnz); saved=$(grep -vc '^#' "$TMP/ftrl.model")
[ "$nnz" = "$saved" ] || fail "ftrl summary nnz $nnz, --save wrote $saved weights"
pass "ftrl defaults: test AUC $auc, progress nnz > 0, nnz $nnz = saved weights"

#!/usr/bin/env bash
# test_pslinear_ref.sh -- pslinear's distributed BPG against a single-process
# reference of the same algorithm (tests/apps/linear_ref.c): on a tiny
# deterministic libsvm fixture (pslinear_fixture.awk: 400 examples, 300
# features, real values), psrun -s 2 -w 2 pslinear --json prints the
# objective after every iteration; it must equal linear_ref's to 1e-6
# (relative) at every iteration, with the same nnz: tau 0 with the KKT
# filter on (with an l1 that makes it drop keys) and off (with l2 > 0 and
# lr != 1).  With tau > 0 (bounded delay: a worker computes iteration t's
# gradient with margins that miss the updates of iterations t-tau..t-1, and
# the step shrinks by 1 + delay_step tau: --delay-rule bound --delay-comp 0,
# the deterministic rule the reference implements) the final objective must equal the
# reference run with the same --tau (deterministic for tau < blocks); the
# objectives printed before the end are not compared there, as the servers'
# norms are read while later iterations run.  tau 1 and 3 must also end away
# from tau 0's objective (the delay is real).  linear_ref rounds to float32
# where pslinear does; its --f64 run is printed for information.
set -u
: "${PS_BIN:?PS_BIN must point at the build/bin folder}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ps-linref.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$TMP/out" ] && tail -n 20 "$TMP/out" >&2; exit 1; }
pass() { echo "ok - $*"; }
export TMP

awk -v seed=11 -f "$(dirname "$0")/pslinear_fixture.awk" </dev/null >"$TMP/train.svm" ||
    fail "fixture"

# objs FILE: "iter objective nnz" lines from pslinear's per-iteration JSON
objs() {
    sed -n 's/^{"iter": \([0-9]*\), "objective": \([^,]*\), "nnz": \([0-9]*\)}$/\1 \2 \3/p' "$1"
}

# check NAME TAU ARGS...: pslinear --tau TAU and linear_ref with ARGS; every
# iteration's objective (TAU > 0: only the last one's) within 1e-6 relative
# and nnz equal.
check() {
    local name=$1 tau=$2; shift 2
    timeout 60 "$PS_BIN/psrun" -s 2 -w 2 --timeout 50 --no-prefix -q -- "$PS_BIN/pslinear" \
        --train "$TMP/train.svm" --json --eval-every 0 --tol 0 --tau "$tau" \
        --delay-rule bound --delay-comp 0 "$@" >"$TMP/out" 2>&1 ||
        fail "$name: pslinear exited $?"
    objs "$TMP/out" >"$TMP/ps.txt"
    timeout 30 "$PS_BIN/linear_ref" --train "$TMP/train.svm" --workers 2 --tau "$tau" "$@" \
        >"$TMP/ref.out" 2>&1 || fail "$name: linear_ref exited $?"
    timeout 30 "$PS_BIN/linear_ref" --train "$TMP/train.svm" --workers 2 --tau "$tau" --f64 "$@" \
        >"$TMP/f64.out" 2>&1 || fail "$name: linear_ref --f64 exited $?"
    awk '{ print $2, $4, $6 }' "$TMP/ref.out" >"$TMP/ref.txt"
    awk '{ print $2, $4, $6 }' "$TMP/f64.out" >"$TMP/f64.txt"
    local want have
    want=$(wc -l <"$TMP/ref.txt"); have=$(wc -l <"$TMP/ps.txt")
    [ "$want" -gt 0 ] && [ "$want" -eq "$have" ] ||
        fail "$name: pslinear printed $have iterations, the reference $want"
    paste -d ' ' "$TMP/ps.txt" "$TMP/ref.txt" "$TMP/f64.txt" | { [ "$tau" -gt 0 ] && tail -n 1 || cat; } |
        awk -v name="$name" '
        function rel(a, b) { d = a - b; if (d < 0) d = -d; return d / (b < 0 ? -b : b) }
        { r = rel($2, $5); f = rel($2, $8); if (r > mx) mx = r; if (f > mf) mf = f
          if ($1 != $4 || r > 1e-6 || $3 != $6) {
              printf "%s: iteration %s: pslinear objective %s nnz %s, reference %s nnz %s (rel %.3g)\n",
                     name, $1, $2, $3, $5, $6, r; bad = 1 } }
        END { if (!bad) printf "%s: %d iterations compared, final objective %s nnz %s, max rel diff %.3g " \
                              "(float32 reference), %.3g (--f64 reference)\n", name, NR, $2, $3, mx, mf
              exit bad }' >"$TMP/cmp" || { cat "$TMP/cmp" >&2; fail "$name: objectives differ"; }
    pass "$(cat "$TMP/cmp")"
}

check "tau 0, kkt on, l1 0.004" 0 --iters 24 --blocks 4 --l1 0.004 --kkt
grep -q 'filtered [1-9]' "$TMP/out" || fail "the KKT filter dropped nothing; pick a larger --l1"
tau0=$(objs "$TMP/out" | tail -n 1 | cut -d' ' -f2)
# differs NAME: the last run's final objective is not tau 0's.
differs() {
    local o; o=$(objs "$TMP/out" | tail -n 1 | cut -d' ' -f2)
    [ "$o" != "$tau0" ] || fail "$1 ended on tau 0's objective $tau0: the delay changed nothing"
    pass "$1 ends at $o, tau 0 at $tau0"
}
check "tau 0, kkt off, l1 1/N, l2 0.01, lr 0.7, 3 blocks" 0 --iters 24 --blocks 3 \
    --l2 0.01 --lr 0.7 --no-kkt
check "tau 2, kkt on, l1 0.004" 2 --iters 24 --blocks 4 --l1 0.004 --kkt
differs "tau 2"
check "tau 1, kkt off, l2 0.01, delay-step 0.5" 1 --iters 24 --blocks 4 --l2 0.01 --no-kkt \
    --delay-step 0.5
check "tau 3, kkt on, l1 0.004, 4 blocks" 3 --iters 24 --blocks 4 --l1 0.004 --kkt
differs "tau 3"

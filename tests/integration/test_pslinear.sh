#!/usr/bin/env bash
# test_pslinear.sh -- pslinear end to end on a synthetic fixture (no network,
# no cached data): 20000 + 5000 libsvm rows labelled by a sparse separating
# weight vector (plus noise).  BPG and FTRL under psrun -s 2 -w 2 must reach
# test AUC > 0.9; --save then --predict reproduces the test metrics; bad
# flags exit 2; a corrupt data file exits 1 naming file:line.
set -u
: "${PS_BIN:?PS_BIN must point at the build/bin folder}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ps-lin.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$TMP/out" ] && tail -n 20 "$TMP/out" >&2; exit 1; }
pass() { echo "ok - $*"; }

export TMP
awk -v seed=7 'BEGIN {
    srand(seed); D = 200
    for (j = 1; j < D; j++) w[j] = (rand() < 0.3) ? (rand() * 4 - 2) : 0
    for (f = 0; f < 2; f++) {
        out = f ? ENVIRON["TMP"] "/test.svm" : ENVIRON["TMP"] "/train.svm"; n = f ? 5000 : 20000
        for (i = 0; i < n; i++) {
            delete seen; line = ""; z = 0; k = 0
            while (k < 10) { j = 1 + int(rand() * (D - 1)); if (!(j in seen)) { seen[j] = 1; k++ } }
            for (j = 1; j < D; j++) if (j in seen) { z += w[j]; line = line " " j ":1" }
            z += (rand() - 0.5) * 1.0
            print ((z > 0) ? "+1" : "-1") line > out
        }
    }
}' </dev/null || fail "fixture"

run() { timeout 60 "$PS_BIN/psrun" -s 2 -w 2 --timeout 50 --no-prefix -q -- "$PS_BIN/pslinear" "$@"; }
auc_of() { grep '^{' "$1" | tail -n 1 | sed 's/.*"test_auc": \([0-9.]*\).*/\1/'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

run --algo bpg --train "$TMP/train.svm" --test "$TMP/test.svm" --iters 30 --json \
    --save "$TMP/model.txt" >"$TMP/out" 2>&1 || fail "bpg run exited $?"
a=$(auc_of "$TMP/out"); gt "$a" 0.9 || fail "bpg test auc $a <= 0.9"
pass "bpg: test auc $a"
ll=$(grep '^{' "$TMP/out" | tail -n 1 | sed 's/.*"test_logloss": \([0-9.]*\).*/\1/')
"$PS_BIN/pslinear" --predict --model "$TMP/model.txt" --test "$TMP/test.svm" --json >"$TMP/pred" 2>&1 ||
    fail "predict exited $?"
pa=$(auc_of "$TMP/pred"); pl=$(sed 's/.*"test_logloss": \([0-9.]*\).*/\1/' "$TMP/pred")
awk -v a="$a" -v b="$pa" -v c="$ll" -v d="$pl" 'BEGIN { exit !((a - b) ^ 2 < 1e-8 && (c - d) ^ 2 < 1e-8) }' ||
    fail "predict gives auc $pa logloss $pl, training gave $a $ll"
pass "predict reproduces the test metrics ($pa, $pl)"

run --algo ftrl --train "$TMP/train.svm" --test "$TMP/test.svm" --epochs 3 --minibatch 500 --json \
    >"$TMP/out" 2>&1 || fail "ftrl run exited $?"
a=$(auc_of "$TMP/out"); gt "$a" 0.9 || fail "ftrl test auc $a <= 0.9"
pass "ftrl: test auc $a"

for bad in "--algo nope" "--l1 -3" "--iters x" "--bogus" "--format tsv"; do
    # shellcheck disable=SC2086
    "$PS_BIN/pslinear" --train "$TMP/train.svm" $bad >"$TMP/out" 2>&1; rc=$?
    [ $rc -eq 2 ] || fail "pslinear $bad exited $rc, want 2"
    grep -q "pslinear:" "$TMP/out" || fail "no message for $bad"
done
"$PS_BIN/pslinear" >"$TMP/out" 2>&1; [ $? -eq 2 ] || fail "no --train should exit 2"
pass "bad flags exit 2 with a message"

head -n 100 "$TMP/train.svm" >"$TMP/bad.svm"
echo "+1 3:1 oops" >>"$TMP/bad.svm"
run --train "$TMP/bad.svm" >"$TMP/out" 2>&1; rc=$?
[ $rc -eq 1 ] || fail "corrupt data exited $rc, want 1"
grep -q "bad.svm:101" "$TMP/out" || fail "the error does not name bad.svm:101"
pass "corrupt data exits 1 naming file:line"

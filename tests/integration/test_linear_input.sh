#!/usr/bin/env bash
# test_linear_input.sh -- pslinear refuses input it cannot train or score on
# with a clear message (file:line and what is wrong) and a nonzero exit, and
# its --json output is valid JSON (no nan / inf) (issue 16, slice 1): an
# empty or one-class training set, non-finite values and labels, unknown
# labels, gzip data cut short or corrupt in the middle (zlib's reason, even
# with --skip-bad-lines), an unknown --format (the message lists every format),
# an empty test file (training and --predict), --json without --test.
# Small fixtures written here; each cluster bounded by psrun --timeout.
source "$(dirname "$0")/lib.sh"

run() { timeout $((60 * SCALE)) "$PS_BIN/psrun" -s 1 -w 2 --timeout $((50 * SCALE)) --no-prefix -q -- \
        "$PS_BIN/pslinear" "$@"; }
awk -v seed=5 -f "$(dirname "$0")/pslinear_fixture.awk" </dev/null >"$TMP/ok.svm" || fail "fixture"
head -n 50 "$TMP/ok.svm" >"$TMP/small.svm"

# refuse NAME WANT_STATUS PATTERN CMD...: CMD exits nonzero (WANT_STATUS if
# not "any") and its output matches PATTERN (grep -E).
refuse() {
    local name=$1 want=$2 pat=$3 rc; shift 3
    "$@" >"$TMP/out.log" 2>&1; rc=$?
    [ "$rc" -ne 0 ] || fail "$name: exited 0"
    [ "$want" = any ] || [ "$rc" -eq "$want" ] || fail "$name: exited $rc, want $want"
    grep -Eq -- "$pat" "$TMP/out.log" || fail "$name: no message matching '$pat'"
    pass "$name: exit $rc, $(grep -Em1 -- "$pat" "$TMP/out.log")"
}

: >"$TMP/empty.svm"
refuse "empty training set" any "empty.svm: no examples: the training set is empty" \
    run --train "$TMP/empty.svm" --iters 2
awk '{ $1 = "0"; print }' "$TMP/small.svm" >"$TMP/neg.svm"
refuse "one-class training set" any "neg.svm: every training example has label 0 \(one class\)" \
    run --train "$TMP/neg.svm" --iters 2
printf '1 1:1\n0 2:1 3:nan\n' >"$TMP/nan.svm"
refuse "3:nan" any "nan.svm:2: bad feature '3:nan': value is not finite" \
    run --train "$TMP/nan.svm" --iters 2
printf '1 1:inf\n' >"$TMP/inf.svm"
refuse "1:inf" any "inf.svm:1: bad feature '1:inf': value is not finite" \
    run --train "$TMP/inf.svm" --iters 2
printf '1 1:1\n0 1:1\n2 3:1\n' >"$TMP/lab.svm"
refuse "label 2" any "lab.svm:3: bad label '2': unknown label \(want 0 or 1, -1 or \+1\)" \
    run --train "$TMP/lab.svm" --iters 2
printf '1\tA\tB\t1\t1\t1\ninf\tA\tB\t1\t1\t1\n' >"$TMP/lab.tsv"
refuse "label inf" any "lab.tsv:2: bad label 'inf': not finite" \
    run --train "$TMP/lab.tsv" --format flights --iters 2
printf '1 2:x\n' >"$TMP/val.svm"
refuse "value x" any "val.svm:1: bad feature '2:x': value 'x' is not a number" \
    run --train "$TMP/val.svm" --iters 2
gzip -c "$TMP/small.svm" | head -c 200 >"$TMP/cut.svm.gz"
refuse "gzip cut short" 1 "cut.svm.gz: gzip data cut short \(zlib: unexpected end of file\)" \
    "$PS_BIN/pslinear" --export-libsvm "$TMP/x" --train "$TMP/cut.svm.gz"
gzip -c "$TMP/ok.svm" >"$TMP/ok.svm.gz"
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); m = len(b) // 2
b[m:m + 4] = bytes(x ^ 0x55 for x in b[m:m + 4]); open(sys.argv[2], "wb").write(b)' \
    "$TMP/ok.svm.gz" "$TMP/mid.svm.gz" || fail "fixture mid.svm.gz"
# zlib's reason depends on the bytes: a bad code, a bad CRC, or a stream that now ends early
refuse "gzip corrupt in the middle" 1 "mid.svm.gz: (corrupt gzip data|gzip data cut short) \(zlib: " \
    "$PS_BIN/pslinear" --export-libsvm "$TMP/x" --train "$TMP/mid.svm.gz" --skip-bad-lines
refuse "unknown --format" 2 "unknown --format 'csvx' \(libsvm, flights, text, criteo or csv\)" \
    "$PS_BIN/pslinear" --train "$TMP/ok.svm" --format csvx
: >"$TMP/empty_test.svm"
refuse "empty test file" any "empty_test.svm: no examples: the test set is empty" \
    run --train "$TMP/ok.svm" --test "$TMP/empty_test.svm" --iters 2

# --json without --test: every JSON line parses (null, never nan), and the
# model saved meanwhile serves --predict; then --predict on an empty file.
run --train "$TMP/ok.svm" --iters 4 --json --save "$TMP/model.txt" >"$TMP/json.log" 2>&1 ||
    fail "--json without --test exited $?"
grep -q nan "$TMP/json.log" && fail "--json without --test printed nan: $(grep nan "$TMP/json.log")"
grep '^{' "$TMP/json.log" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
last = rows[-1]
assert len(rows) == 5, rows
assert last["test_auc"] is None and last["test_logloss"] is None, last
assert last["objective"] > 0, last' || fail "--json without --test: not valid JSON as expected"
pass "--json without --test: $(grep -c '^{' "$TMP/json.log") JSON lines, test metrics null"
refuse "--predict on an empty test file" 1 "empty_test.svm: no examples: the test set is empty" \
    "$PS_BIN/pslinear" --predict --model "$TMP/model.txt" --test "$TMP/empty_test.svm" --json
echo "all pslinear input checks passed"

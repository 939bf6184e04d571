#!/usr/bin/env bash
# test_linear_model.sh -- pslinear's model file and --predict outputs (issue
# 16, slice 5), on a small flights-format fixture (600 lines written here,
# label 1 mostly for origin LAS and late hours) and the libsvm fixture:
#  - --save writes a readable model: a '#' header naming the algorithm and the
#    format, then key<TAB>weight<TAB>feature lines whose feature is the
#    string read ("origin=LAS", an hour, a route "origin=LAS&dest=PHL",
#    "bias"); the summary's nnz is its number of weights;
#  - --predict reads it back and gives the test AUC and logloss the training
#    run printed (to the 4th decimal: the histogram AUC of both);
#  - --predict-out writes one probability per test example, in (0, 1), whose
#    mean logloss is the one --predict printed;
#  - libsvm: the feature is the index; --bias adds a "bias" weight, without
#    it there is none.
source "$(dirname "$0")/lib.sh"

run() { timeout $((60 * SCALE)) "$PS_BIN/psrun" -s 1 -w 2 --timeout $((50 * SCALE)) --no-prefix -q -- \
        "$PS_BIN/pslinear" "$@"; }
awk 'function rnd() { x = (x * 16807) % 2147483647; return x / 2147483647 }
     BEGIN { x = 7; split("LAS SFO JFK ORD", O, " "); split("PHL SEA BOS", D, " ")
       for (i = 0; i < 600; i++) {
         o = O[1 + int(rnd() * 4)]; d = D[1 + int(rnd() * 3)]; h = int(rnd() * 24)
         p = (o == "LAS" ? 0.7 : 0.15) + (h >= 20 ? 0.2 : 0)
         printf "%d\t%s\t%s\t%d\t%d\t%d\n", rnd() < p, o, d, h, int(rnd() * 7), 1 + int(rnd() * 12) } }' \
    </dev/null >"$TMP/all.tsv" || fail "fixture"
head -n 500 "$TMP/all.tsv" >"$TMP/train.tsv"; tail -n 100 "$TMP/all.tsv" >"$TMP/test.tsv"
F=(--format flights)

run --train "$TMP/train.tsv" --test "$TMP/test.tsv" "${F[@]}" --save "$TMP/model" --json \
    >"$TMP/train.log" 2>&1 || fail "training exited $?"
head -n 1 "$TMP/model" | grep -q '^# pslinear model: bpg, format flights, [0-9]* non-zero weights' ||
    fail "no model header: $(head -n 1 "$TMP/model")"
for f in 'origin=LAS' 'bias' 'hour=[0-9]+' 'origin=[A-Z]+&dest=[A-Z]+'; do
    grep -Eq "^[0-9]+	-?[0-9.e+-]+	$f\$" "$TMP/model" || fail "model has no line for feature $f"
done
grep -v '^#' "$TMP/model" | awk -F'\t' 'NF != 3 || $3 == "?" { exit 1 }' || fail "a model line has no feature name"
js=$(grep '^{"algo"' "$TMP/train.log")
nnz=$(jq .nnz <<<"$js"); n=$(grep -vc '^#' "$TMP/model")
[ "$nnz" = "$n" ] || fail "summary nnz $nnz, model has $n weights"
pass "--save: readable model, $n weights with feature names (origin=LAS, routes, bias)"

"$PS_BIN/pslinear" --predict --model "$TMP/model" --test "$TMP/test.tsv" "${F[@]}" --json \
    --predict-out "$TMP/probs" >"$TMP/pred.log" 2>&1 || fail "--predict exited $?"
pj=$(grep '^{' "$TMP/pred.log")
python3 - "$js" "$pj" "$TMP/probs" "$TMP/test.tsv" <<'PY' || fail "--predict does not match training"
import json, math, sys
t, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
probs = [float(l) for l in open(sys.argv[3])]
ys = [int(l.split("\t")[0]) for l in open(sys.argv[4])]
assert len(probs) == len(ys) == p["examples"], (len(probs), len(ys))
assert all(0 < q < 1 for q in probs)
ll = -sum(math.log(q) if y else math.log(1 - q) for q, y in zip(probs, ys)) / len(ys)
assert abs(ll - p["test_logloss"]) < 1e-5, (ll, p)
assert abs(t["test_auc"] - p["test_auc"]) < 1e-4 and abs(t["test_logloss"] - p["test_logloss"]) < 1e-4, (t, p)
print("ok - --predict: AUC %.4f logloss %.4f as in training; --predict-out: %d probabilities, logloss %.5f"
      % (p["test_auc"], p["test_logloss"], len(probs), ll))
PY

awk -v seed=11 -f "$(dirname "$0")/pslinear_fixture.awk" </dev/null >"$TMP/train.svm"
run --train "$TMP/train.svm" --save "$TMP/svm.model" --l1 0.0005 >"$TMP/svm.log" 2>&1 || fail "libsvm exited $?"
grep -v '^#' "$TMP/svm.model" | awk -F'\t' '$3 !~ /^[0-9]+$/ { exit 1 }' || fail "libsvm model: a feature is not an index"
grep -qP '\tbias$' "$TMP/svm.model" && fail "libsvm model without --bias has a bias"
run --train "$TMP/train.svm" --save "$TMP/svmb.model" --l1 0 --iters 30 --bias >"$TMP/svmb.log" 2>&1 ||
    fail "libsvm --bias exited $?"
grep -qP '\tbias$' "$TMP/svmb.model" || fail "libsvm model with --bias has no bias"
pass "libsvm: features are indices; --bias adds a bias weight"

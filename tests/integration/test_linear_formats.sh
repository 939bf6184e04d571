#!/usr/bin/env bash
# test_linear_formats.sh -- pslinear's CSV reader and gzip input (issue 16,
# slice 6), on fixtures written here:
#  - csv: a header, quoted fields ("note, free" holds a comma, "a ""b""" a
#    quote), numeric and categorical columns: the model names "age" (numeric)
#    and "city=Paris" (categorical) and the bias; --label-col by name and by
#    number read the same; --predict reads the csv back;
#  - csv errors name file:line: a short row, a non-finite cell, a label
#    column that does not exist, no header;
#  - gzip (zlib): the libsvm fixture gzipped reads exactly as the plain file
#    (--export-libsvm byte for byte; one worker saves the same model and
#    prints the same objective), and so does `cat a.gz b.gz` of its two
#    halves cut mid-line; it trains (psrun -s 1 -w 2, line-modulo shards) to
#    the objective of the plain file within 1e-6 relative (KKT filter off:
#    its per-worker share makes the trajectory depend on which worker holds
#    which example); a gzipped csv reads too.  Cut or corrupt gzip files:
#    test_linear_input.sh.
source "$(dirname "$0")/lib.sh"

run() { timeout $((60 * SCALE)) "$PS_BIN/psrun" -s 1 -w 2 --timeout $((50 * SCALE)) --no-prefix -q -- \
        "$PS_BIN/pslinear" "$@"; }
obj() { grep '^{"algo"' "$1" | tail -n 1 | sed 's/.*"objective": \([^,]*\),.*/\1/'; }
awk 'function rnd() { x = (x * 16807) % 2147483647; return x / 2147483647 }
     BEGIN { x = 3; split("Paris Rome Oslo", C, " "); print "age,city,\"note, free\",label"
       for (i = 0; i < 300; i++) { c = C[1 + int(rnd() * 3)]; a = 18 + int(rnd() * 50)
         y = rnd() < (c == "Paris" ? 0.8 : 0.2) + (a > 50 ? 0.1 : 0)
         printf "%d,%s,%s,%d\n", a, c, (i % 7 ? "\"a \"\"b\"\", c\"" : ""), y } }' </dev/null >"$TMP/t.csv" ||
    fail "fixture"

run --train "$TMP/t.csv" --format csv --save "$TMP/csv.model" --l1 0.001 --json >"$TMP/csv.log" 2>&1 ||
    fail "csv training exited $?"
for f in age 'city=Paris' bias; do
    grep -q "	$f\$" "$TMP/csv.model" || fail "csv model has no feature $f"
done
run --train "$TMP/t.csv" --format csv --label-col 4 --l1 0.001 --json >"$TMP/csv4.log" 2>&1 ||
    fail "--label-col 4 exited $?"
[ "$(obj "$TMP/csv.log")" = "$(obj "$TMP/csv4.log")" ] || fail "--label-col 4 trains another model"
"$PS_BIN/pslinear" --predict --model "$TMP/csv.model" --test "$TMP/t.csv" --format csv \
    --label-col label >"$TMP/pred.log" 2>&1 || fail "csv --predict exited $?"
pass "csv: numeric (age) and categorical (city=Paris) features, quoted fields, --label-col; $(cat "$TMP/pred.log")"

# bad NAME PATTERN FILE [ARGS]: the export of FILE as csv exits 1 saying PATTERN
bad() {
    local name=$1 pat=$2 f=$3; shift 3
    "$PS_BIN/pslinear" --export-libsvm "$TMP/x" --train "$f" --format csv "$@" >"$TMP/bad.log" 2>&1
    [ $? -eq 1 ] || fail "$name: want exit 1"
    grep -Eq "$pat" "$TMP/bad.log" || fail "$name: no message matching $pat: $(cat "$TMP/bad.log")"
}
printf 'a,label\n1,1\n2\n' >"$TMP/short.csv"
bad "short row" "short.csv:3: expected 2 comma-separated fields, got 1" "$TMP/short.csv"
printf 'a,label\ninf,1\n' >"$TMP/inf.csv"
bad "inf cell" "inf.csv:2: column a: value 'inf' is not finite" "$TMP/inf.csv"
bad "no such label column" "t.csv:1: no label column 'y'" "$TMP/t.csv" --label-col y
: >"$TMP/empty.csv"
bad "no header" "empty.csv:1: no header line" "$TMP/empty.csv"
pass "csv errors name file:line and what is wrong"

awk -v seed=11 -f "$(dirname "$0")/pslinear_fixture.awk" </dev/null >"$TMP/train.svm"
gzip -c "$TMP/train.svm" >"$TMP/train.svm.gz"; gzip -c "$TMP/t.csv" >"$TMP/t.csv.gz"
export_svm() { "$PS_BIN/pslinear" --export-libsvm "$2" --train "$1" >"$TMP/export.log" 2>&1 ||
               fail "--export-libsvm $1 exited $?"; }
half=$(( $(wc -c <"$TMP/train.svm") / 2 ))
head -c "$half" "$TMP/train.svm" | gzip -c >"$TMP/two.svm.gz"
tail -c +"$((half + 1))" "$TMP/train.svm" | gzip -c >>"$TMP/two.svm.gz"
[ "$(head -c "$half" "$TMP/train.svm" | tail -c 1)" != "" ] || fail "fixture: the halves meet at a line end"
export_svm "$TMP/train.svm" "$TMP/plain.out"
export_svm "$TMP/train.svm.gz" "$TMP/gz.out"
export_svm "$TMP/two.svm.gz" "$TMP/two.out"
[ "$(wc -l <"$TMP/plain.out")" -eq "$(wc -l <"$TMP/train.svm")" ] || fail "plain export: not every line"
cmp -s "$TMP/plain.out" "$TMP/gz.out" || fail "the gzip file reads other examples than the plain one"
cmp -s "$TMP/plain.out" "$TMP/two.out" || fail "the two-member gzip file reads other examples"
run1() { timeout $((60 * SCALE)) "$PS_BIN/psrun" -s 1 -w 1 --timeout $((50 * SCALE)) --no-prefix -q -- \
         "$PS_BIN/pslinear" --iters 10 --json "$@"; }
run1 --train "$TMP/train.svm" --save "$TMP/plain.model" >"$TMP/plain1.log" 2>&1 || fail "plain -w 1 exited $?"
run1 --train "$TMP/two.svm.gz" --save "$TMP/gz.model" >"$TMP/gz1.log" 2>&1 || fail "gzip -w 1 exited $?"
[ -n "$(obj "$TMP/plain1.log")" ] && [ "$(obj "$TMP/plain1.log")" = "$(obj "$TMP/gz1.log")" ] ||
    fail "one worker: gzip objective $(obj "$TMP/gz1.log") != plain $(obj "$TMP/plain1.log")"
cmp -s "$TMP/plain.model" "$TMP/gz.model" || fail "one worker: the gzip file trains another model"
pass "gzip: one member, and two cut mid-line, read as the plain file; one worker: the same model, objective $(obj "$TMP/gz1.log")"

A=(--iters 20 --tol 0 --no-kkt --json)
run --train "$TMP/train.svm" "${A[@]}" >"$TMP/plain.log" 2>&1 || fail "plain exited $?"
run --train "$TMP/train.svm.gz" "${A[@]}" >"$TMP/gz.log" 2>&1 || fail "gzip exited $?"
awk -v a="$(obj "$TMP/plain.log")" -v b="$(obj "$TMP/gz.log")" \
    'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d / a < 1e-6) }' ||
    fail "gzip objective $(obj "$TMP/gz.log") != plain $(obj "$TMP/plain.log")"
run --train "$TMP/t.csv.gz" --format csv --l1 0.001 --json >"$TMP/csvgz.log" 2>&1 || fail "csv.gz exited $?"
pass "gzip: libsvm objective $(obj "$TMP/gz.log") = plain $(obj "$TMP/plain.log"); csv.gz objective $(obj "$TMP/csvgz.log")"

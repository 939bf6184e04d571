#!/usr/bin/env bash
# test_linear_data.sh -- checks the real data sets that scripts/data/fetch.sh
# converted, when they are cached (it never downloads: CI must not fetch in
# the test suite).  flights: every line has 6 valid fields, train + test ==
# the parquet's rows, the split is 9:1 by row index, and the label rate
# (delay > 15 min) is about 19.9%.  spam, when present: 4:1 split of 6,046
# mails, every line `label TAB words`, spam rate about 31%.
set -euo pipefail
: "${PS_TESTS:?PS_TESTS must point at the tests folder}"
cache=${LIBPS_DATA_CACHE:-$PS_TESTS/../data/cache}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }

# count FILE NFIELDS: "lines positives" after checking every line's shape.
count() {
    awk -F'\t' -v nf="$2" -v f="$1" '
        NF != nf || ($1 != "0" && $1 != "1") { printf "%s:%d: bad line\n", f, NR > "/dev/stderr"; bad = 1; exit }
        { pos += $1 }
        END { if (!bad) print NR, pos; exit bad }' "$1"
}

# ratio_ok A B LO HI: LO <= A/B <= HI.
ratio_ok() { awk -v a="$1" -v b="$2" -v lo="$3" -v hi="$4" 'BEGIN { exit !(b > 0 && a / b >= lo && a / b <= hi) }'; }

check_flights() {
    local d="$cache/flights" total trn tst trn_pos tst_pos
    total=$(grep -o '"rows":[0-9]*' "$d/stats.json" | cut -d: -f2)
    read -r trn trn_pos < <(count "$d/train.tsv" 6) || fail "flights train.tsv has a bad line"
    read -r tst tst_pos < <(count "$d/test.tsv" 6) || fail "flights test.tsv has a bad line"
    echo "flights: rows $total, train $trn ($trn_pos positive), test $tst ($tst_pos positive)"
    [ "$((trn + tst))" -eq "$total" ] || fail "train + test = $((trn + tst)), want $total"
    [ "$tst" -eq "$((total / 10))" ] || fail "test has $tst rows, want every 10th: $((total / 10))"
    pass "flights split 9:1, $trn + $tst = $total rows"
    ratio_ok "$((trn_pos + tst_pos))" "$total" 0.194 0.204 || fail "label rate off 19.9%"
    ratio_ok "$tst_pos" "$tst" 0.19 0.21 || fail "test label rate off 19.9%"
    pass "flights label rate $(awk -v a=$((trn_pos + tst_pos)) -v b="$total" 'BEGIN { printf "%.2f%%", 100 * a / b }')"
}

check_spam() {
    local d="$cache/spam" trn tst trn_pos tst_pos
    read -r trn trn_pos < <(count "$d/train.txt" 2) || fail "spam train.txt has a bad line"
    read -r tst tst_pos < <(count "$d/test.txt" 2) || fail "spam test.txt has a bad line"
    echo "spam: train $trn ($trn_pos spam), test $tst ($tst_pos spam)"
    [ "$((trn + tst))" -eq 6046 ] || fail "spam has $((trn + tst)) mails, want 6046"
    [ "$tst" -eq $((6046 / 5)) ] || fail "spam test has $tst mails, want every 5th: $((6046 / 5))"
    ratio_ok "$((trn_pos + tst_pos))" 6046 0.30 0.33 || fail "spam rate off 31%"
    pass "spam split 4:1 and spam rate"
}

if [ ! -f "$cache/flights/.done" ] || [ ! -f "$cache/flights/train.tsv" ]; then
    echo "skip: no cached data (scripts/data/fetch.sh fetches it)"
    exit 0
fi
check_flights
if [ -f "$cache/spam/.done" ]; then check_spam; else echo "skip: no cached spam data"; fi

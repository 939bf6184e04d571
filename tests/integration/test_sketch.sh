#!/usr/bin/env bash
# test_sketch.sh -- pssketch (apps/sketch), the CountMin sketch on libps.
#
# The stream is built here: 600 keys with Zipf-like counts (key i occurs
# floor(8000 / i) + 1 times; N = 56,110), as a "word TAB count" list and as
# the same occurrences one per line, interleaved.  A sketch of eps 0.01,
# delta 0.05 (272 x 3 cells, so keys do collide) on 2 servers and 2 workers
# must: never underestimate, keep >= 95% of the keys within eps * N, hold
# exactly N in every row (no insert lost or applied twice), count every key
# exactly once in the check (exact mass = N), and answer --query with
# estimates >= the true counts.  Then the same under PS_FAULT drop and dup
# (small batches: many pushes, many resends), once with --replicas 1: every
# row still holds exactly N.  And bad input fails with a message and a
# nonzero status: empty or missing file, a bad count, eps out of range.
. "$(dirname "$0")/lib.sh"
SK=$PS_BIN/pssketch

awk 'BEGIN { for (i = 1; i <= 600; i++) printf "k%d\t%d\n", i, int(8000 / i) + 1 }' \
  >"$TMP/counts.tsv"
# the same occurrences as lines, round-robin over the keys still left
awk -F'\t' '{ k[NR] = $1; c[NR] = $2; n = NR } END {
  for (left = 1; left;) { left = 0
    for (i = 1; i <= n; i++) if (c[i]-- > 0) { print k[i]; left = 1 } } }' \
  "$TMP/counts.tsv" >"$TMP/lines.txt"
N=$(awk -F'\t' '{ s += $2 } END { print s }' "$TMP/counts.tsv")
[ "$N" = "$(wc -l <"$TMP/lines.txt")" ] || fail "fixture: the lines file does not hold N=$N keys"
printf 'k1\nk2\nk600\nnever-inserted\n' >"$TMP/query.txt"

# run NAME ARGS...: pssketch on 2 servers and 2 workers; its JSON summary in $TMP/NAME.json
run() {
  local name=$1; shift
  timeout $((100 * SCALE)) "$PS_BIN/psrun" -s 2 -w 2 --timeout $((90 * SCALE)) -- "$SK" \
    --eps 0.01 --delta 0.05 --json --progress 0 "$@" >"$TMP/$name.log" 2>&1 ||
    fail "$name: psrun exited $?: $(tail -n 20 "$TMP/$name.log")"
  sed -n 's/^\[worker 0\] \({"stream".*\)$/\1/p' "$TMP/$name.log" >"$TMP/$name.json"
  [ -s "$TMP/$name.json" ] || fail "$name: no JSON summary"
}

# expect NAME PYTHON-CONDITION...: every condition holds on summary s
expect() {
  local name=$1; shift
  python3 - "$TMP/$name.json" "$N" "$@" <<'PY' || fail "$name: $(cat "$TMP/$name.json")"
import json, sys
s = json.loads(open(sys.argv[1]).read())
N = int(sys.argv[2])
for cond in sys.argv[3:]:
    if not eval(cond):
        print("condition failed:", cond, file=sys.stderr)
        sys.exit(1)
PY
}

EXACT=('s["N"] == N' 's["row_mass_min"] == N' 's["row_mass_max"] == N' 's["acked"] == N'
       's["acked_lost"] == 0' 's["applied_twice"] == 0' 's["failed_pushes"] == 0')
CHECK=('s["underestimates"] == 0' 's["distinct_keys"] == 600' 's["exact_mass"] == N'
       's["within_eps_pct"] >= 100 * (1 - s["delta"])' 's["width"] == 272' 's["depth"] == 3')

run counts --input "$TMP/counts.tsv" --format counts --check --batch 2000 --query "$TMP/query.txt"
expect counts "${EXACT[@]}" "${CHECK[@]}"
# the queries: estimates never below the truth (k1: 8001, k2: 4001, k600: 14)
python3 - "$TMP/counts.log" <<'PY' || fail "queries: $(grep query "$TMP/counts.log")"
import json, re, sys
got = {}
for line in open(sys.argv[1]):
    m = re.match(r'^\[worker 0\] ({"query".*)$', line)
    if m:
        q = json.loads(m.group(1)); got[q["query"]] = q["estimate"]
want = {"k1": 8001, "k2": 4001, "k600": 14, "never-inserted": 0}
assert set(got) == set(want), got
assert all(got[k] >= want[k] for k in want), got
PY
pass "counts stream (N=$N, 600 keys): no underestimate, >= 95% within eps*N, every row = N, queries >= truth"

run lines --input "$TMP/lines.txt" --format lines --check --batch 3000
expect lines "${EXACT[@]}" "${CHECK[@]}"
pass "lines stream: the same guarantees, sharded by line"

export PS_RESEND_MS=200
PS_FAULT="drop=0.05,dup=0.05,seed=7" run fault1 --input "$TMP/counts.tsv" --format counts \
    --check --batch 500
expect fault1 "${EXACT[@]}" "${CHECK[@]}" 's["pushes"] >= 100'
PS_FAULT="drop=0.03,dup=0.05,seed=8" run fault2 --input "$TMP/lines.txt" --format lines \
  --batch 500 --replicas 1
expect fault2 "${EXACT[@]}" 's["replicas"] == 1'
pass "under PS_FAULT drop and dup (and with --replicas 1) every row holds exactly N"
unset PS_RESEND_MS

# bad NAME WANT CMD...: CMD exits nonzero and prints WANT
bad() {
  local name=$1 want=$2; shift 2
  timeout $((60 * SCALE)) "$@" >"$TMP/$name.log" 2>&1 && fail "$name: exited 0"
  grep -q -- "$want" "$TMP/$name.log" || fail "$name: no '$want' in: $(tail -n 5 "$TMP/$name.log")"
}
: >"$TMP/empty.txt"
printf 'a\t3\nb\tx7\nc\t1\n' >"$TMP/badcount.tsv"
bad eps0 "want 0 < eps < 1" "$SK" --input "$TMP/counts.tsv" --eps 0
bad eps1 "want 0 < eps < 1" "$SK" --input "$TMP/counts.tsv" --eps 1.5
bad delta "want 0 < delta < 1" "$SK" --input "$TMP/counts.tsv" --delta 0
bad empty "empty file" "$SK" --input "$TMP/empty.txt"
bad missing "No such file" "$SK" --input "$TMP/nonexistent.txt"
bad badcount "line 2: bad count 'x7'" "$PS_BIN/psrun" -s 1 -w 2 --timeout 50 -- "$SK" \
  --input "$TMP/badcount.tsv" --format counts
printf 'a\t0\n' >"$TMP/zero.tsv"
bad zerocount "line 1: bad count '0'" "$PS_BIN/psrun" -s 1 -w 1 --timeout 50 -- "$SK" \
  --input "$TMP/zero.tsv" --format counts
printf '1\tLAX\n' >"$TMP/route.tsv"
bad route "line 1: want label TAB origin TAB destination" "$PS_BIN/psrun" -s 1 -w 1 \
  --timeout 50 -- "$SK" --input "$TMP/route.tsv" --format routes
pass "bad input (eps/delta out of range, empty or missing file, bad count, short route) fails with a message"

#!/usr/bin/env bash
# A 1-scheduler/2-server/4-worker cluster under psrun starts, runs 100
# barriers over every node, and shuts down clean: every process exits 0 and
# none is left behind.
. "$(dirname "$0")/lib.sh"

out=$TMP/out.txt
timeout 60 "$PS_BIN/psrun" -s 2 -w 4 --timeout 50 -- "$PS_BIN/ps_testnode" --barriers 100 \
  >"$out" 2>&1 || fail "psrun exited $?: $(tail -n 20 "$out")"
[ "$(grep -c 'barriers 100 done' "$out")" = 7 ] || fail "not all 7 nodes finished 100 barriers"
[ "$(grep -c 'finalized: success' "$out")" = 7 ] || fail "not all 7 nodes finalized cleanly"
for r in 0 1 2 3; do grep -q "^\[worker $r\] joined id $((3 + r)) rank $r nodes 7 epoch 1" "$out" ||
  fail "worker $r did not get id $((3 + r))"; done
grep -q '^\[scheduler\] joined id 0 ' "$out" || fail "scheduler line missing"
pgrep -f "$PS_BIN/ps_testnode" >/dev/null && fail "ps_testnode processes left behind"
pass "100 barriers on 1+2+4 nodes, clean shutdown"

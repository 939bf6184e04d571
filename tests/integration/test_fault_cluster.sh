#!/usr/bin/env bash
# The 1+2+4 cluster still forms, runs 100 barriers and shuts down cleanly
# when the transport drops 5% and duplicates 5% of all messages: control
# messages are resent until acknowledged and duplicates are ignored.
. "$(dirname "$0")/lib.sh"

for seed in 7 8; do
  out=$TMP/out.$seed.txt
  PS_FAULT="drop=0.05,dup=0.05,seed=$seed" timeout 120 "$PS_BIN/psrun" -s 2 -w 4 --timeout 110 -- \
    "$PS_BIN/ps_testnode" --barriers 100 >"$out" 2>&1 || fail "seed $seed: psrun exited $?: $(tail -n 20 "$out")"
  [ "$(grep -c 'barriers 100 done' "$out")" = 7 ] || fail "seed $seed: not all nodes finished"
  [ "$(grep -c 'finalized: success' "$out")" = 7 ] || fail "seed $seed: not all nodes finalized"
  grep -q 'declared dead' "$out" && fail "seed $seed: a node was falsely declared dead"
done
pgrep -f "$PS_BIN/ps_testnode" >/dev/null && fail "processes left behind"
pass "100 barriers with drop=0.05,dup=0.05 (two seeds)"

#!/usr/bin/env bash
# test_pslinear_failover.sh -- pslinear (BPG, BSP table, --replication 1) with
# three servers survives the loss of one of them mid-training: server 1 gets
# SIGKILL after iteration 150 of 600, the scheduler declares it dead, its
# key ranges fall to their replicas, the workers move their unacknowledged
# pushes there (src/replica/chain.c), and training ends with the same test
# AUC (within 0.002) and objective (within 1e-4 relative) as an undisturbed
# run of the same command.  Data: the deterministic fixture of
# pslinear_fixture.awk, 300 examples to train, 100 to test.
. "$(dirname "$0")/lib.sh"

awk -v seed=11 -f "$(dirname "$0")/pslinear_fixture.awk" </dev/null >"$TMP/all.svm" || fail "fixture"
head -n 300 "$TMP/all.svm" >"$TMP/train.svm"
tail -n 100 "$TMP/all.svm" >"$TMP/test.svm"
ARGS=(--train "$TMP/train.svm" --test "$TMP/test.svm" --iters 600 --eval-every 0
      --replication 1 --json)
export PS_HEARTBEAT_TIMEOUT_MS=1000 PS_RESEND_MS=200

summary() { grep '^{"algo"' "$1" | tail -n 1; }
field() { sed -n "s/.*\"$2\": \\([^,}]*\\).*/\\1/p" <<<"$1"; }

timeout 120 "$PS_BIN/psrun" -s 3 -w 2 --timeout 110 --no-prefix -q -- "$PS_BIN/pslinear" \
  "${ARGS[@]}" >"$TMP/ref.log" 2>&1 || fail "undisturbed run exited $?"
ref=$(summary "$TMP/ref.log"); [ -n "$ref" ] || fail "undisturbed run printed no summary"

# The disturbed run: nodes started directly (psrun stops a cluster whose node dies).
SCHED=$(free_port)
run_node() { # NAME ROLE RANK
  PS_ROLE=$2 PS_RANK=$3 PS_SCHEDULER=127.0.0.1:$SCHED PS_NUM_SERVERS=3 PS_NUM_WORKERS=2 \
    "$PS_BIN/pslinear" "${ARGS[@]}" >"$TMP/$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
}
run_node sched scheduler 0
for r in 0 1 2; do run_node s$r server $r; done
for r in 0 1; do run_node w$r worker $r; done
wait_for 60 grep -q '^iter *150 ' "$TMP/sched.log" || fail "training never reached iteration 150"
grep -q '^final' "$TMP/sched.log" && fail "training ended before the kill: make it longer"
kill -9 "$PID_s1"
wait_exit "$PID_sched" 90 || fail "the scheduler exited $? after the kill"
for n in s0 s2 w0 w1; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "$n exited $?"; done
got=$(summary "$TMP/sched.log"); [ -n "$got" ] || fail "disturbed run printed no summary"
grep -q 'declared dead' "$TMP/sched.log" || fail "server 1 was never declared dead"

awk -v a="$(field "$ref" test_auc)" -v b="$(field "$got" test_auc)" \
    -v oa="$(field "$ref" objective)" -v ob="$(field "$got" objective)" 'BEGIN {
  d = a - b; if (d < 0) d = -d; r = (oa - ob) / oa; if (r < 0) r = -r
  printf "test AUC undisturbed %s, with a server killed %s (diff %.5f); objective %s vs %s (rel %.2g)\n", a, b, d, oa, ob, r
  exit !(d <= 0.002 && r <= 1e-4) }' || fail "the run that lost a server ended elsewhere"
pass "pslinear -s 3 --replication 1 survives losing a server: same AUC and objective"

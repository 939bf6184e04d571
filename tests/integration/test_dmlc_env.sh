#!/usr/bin/env bash
# ps-lite's DMLC_* environment names are accepted: a 1+1+1 cluster
# configured only through them forms and shuts down cleanly.
. "$(dirname "$0")/lib.sh"

port=$(free_port)
for role in scheduler server worker; do
  env -u PS_ROLE -u PS_SCHEDULER -u PS_NUM_SERVERS -u PS_NUM_WORKERS \
    DMLC_ROLE=$role DMLC_PS_ROOT_URI=127.0.0.1 DMLC_PS_ROOT_PORT=$port DMLC_NUM_SERVER=1 \
    DMLC_NUM_WORKER=1 "$PS_BIN/ps_testnode" --barriers 5 >"$TMP/$role.log" 2>&1 &
  PIDS+=($!); eval "PID_$role=$!"
done
for role in scheduler server worker; do
  wait_exit "$(eval echo \$PID_$role)" 30 || fail "$role exited $?"
  grep -q 'barriers 5 done' "$TMP/$role.log" || fail "$role did not finish"
done
grep -q '^joined id 2 rank 0 nodes 3 epoch 1' "$TMP/worker.log" || fail "worker got the wrong id"
pass "DMLC_* names configure a cluster"

#!/usr/bin/env bash
# A worker killed with SIGKILL is declared dead within 2x the heartbeat
# timeout, every survivor is told through a new view, and the survivors
# still finish a barrier and shut down cleanly.
. "$(dirname "$0")/lib.sh"

SCHED=$(free_port); NS=2; NW=4
export PS_HEARTBEAT_TIMEOUT_MS=${PS_HEARTBEAT_TIMEOUT_MS:-1000}
start_node sched scheduler 0 --pid-dir "$TMP" --wait-dead 1 --barriers 1
for r in 0 1; do start_node s$r server $r --pid-dir "$TMP" --wait-dead 1 --barriers 1; done
for r in 0 2 3; do start_node w$r worker $r --pid-dir "$TMP" --wait-dead 1 --barriers 1; done
start_node w1 worker 1 --pid-dir "$TMP" --wait-dead 99 --wait-ms 60000
wait_for 30 test -s "$TMP/worker.1.pid" || fail "worker 1 never joined"
wait_for 30 sh -c "grep -q 'joined id' $TMP/sched.log" || fail "cluster did not form"
t_kill=$(now_ms)
kill -9 "$(cat "$TMP/worker.1.pid")"
for n in sched s0 s1 w0 w2 w3; do
  pid=$(eval echo \$PID_$n)
  wait_exit "$pid" 20; rc=$?
  [ $rc = 0 ] || fail "$n exited $rc"
  line=$(grep '^dead 4 at' "$TMP/$n.log") || fail "$n was not told that node 4 (worker 1) died"
  t_dead=$(echo "$line" | awk '{print $4}')
  delay=$(( t_dead - t_kill ))
  [ $delay -le $((2 * PS_HEARTBEAT_TIMEOUT_MS)) ] || fail "$n learned of the death after $delay ms (limit $((2 * PS_HEARTBEAT_TIMEOUT_MS)))"
  grep -q 'finalized: success' "$TMP/$n.log" || fail "$n did not finalize"
done
pass "killed worker declared dead within 2x timeout; survivors told and exit 0"

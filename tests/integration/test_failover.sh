#!/usr/bin/env bash
# Failover with chain replication (k = 1), three servers, two workers that
# keep adding 1 to their own keys (tests/apps/ps_failtest.c):
#   kill   a server is killed with SIGKILL mid-run;
#   stop   a server is paused with SIGSTOP past the heartbeat timeout, the
#          cluster goes on without it, then it is resumed: it must learn it
#          was replaced and exit, and the survivors' sums stay exact;
#   faults the kill case under PS_FAULT drop/dup/delay;
#   twice  after the first failover has copied the replicas back to k = 1,
#          a second server is killed: still nothing lost;
#   bsp    a BSP table (every worker adds 1 to the same keys each iteration
#          and pulls): every iteration reads exactly W * i, across the kill
#          of a server mid-iteration ("replication after aggregation");
#   bsp2   the same with two servers: after the kill no range has a backup
#          left, and iterations go on unreplicated;
#   bspf   the bsp case under PS_FAULT drop/dup (lost answers, resends);
#   leave  server 1 calls ps_leave() mid-run (graceful: its ranges are handed
#          over at once, without a timeout) and exits 0; sums stay exact;
#   join   a fourth server joins mid-run (ps_join): its share is streamed to
#          it, then handed over; it must serve pushes, and sums stay exact;
#   joinf  the join case under PS_FAULT drop/dup/delay, 32 pushes in flight;
#   joinkill  server 1 is killed just before a fourth server joins, so its
#          death is declared while the join is under way, under drop/dup/delay:
#          pushes moved off the dead server cross the handover;
#   joinleave  a server joins, then server 1 leaves, both during pushes;
#   k2     four servers with k = 2, two of them killed at the same time;
#   k0     without replication the same kill fails the pushes in flight, and
#          new pushes to the dead server's keys, with a clear error instead of
#          hanging (control).
# Every acknowledged push must be in the model and none applied twice: each
# worker's keys read exactly the number of pushes it saw acknowledged.
# Usage: test_failover.sh [case...] (default: all).  Prints the recovery time.
. "$(dirname "$0")/lib.sh"

NS=3; NW=2
export PS_HEARTBEAT_TIMEOUT_MS=${PS_HEARTBEAT_TIMEOUT_MS:-1000} PS_RESEND_MS=${PS_RESEND_MS:-200}
export PS_PID_DIR=$TMP

# Nodes run ps_failtest (lib.sh's start_node), with no timeout(1) wrapper:
# lib.sh's cleanup must kill the node itself; the workers bound their own
# time with --deadline-ms.
NODE_BIN=$PS_BIN/ps_failtest

# cluster ARGS...: scheduler, NS servers and NW workers of ps_failtest.
cluster() {
  rm -f "$TMP"/*.log "$TMP"/*.pid
  SCHED=$(free_port)
  start_node sched scheduler 0 "$@"
  for r in $(seq 0 $((NS - 1))); do start_node s$r server $r "$@"; done
  for r in $(seq 0 $((NW - 1))); do start_node w$r worker $r "$@"; done
  wait_for 30 grep -q '^phaseA' "$TMP/w0.log" || fail "$CASE: workers never finished phase A"
  wait_for 5 test -s "$TMP/server.1.pid" || fail "$CASE: no pid file for server 1"
}

# workers_pass: both workers exit 0 and print PASS; echo the recovery ms.
workers_pass() {
  for r in $(seq 0 $((NW - 1))); do
    wait_exit "$(eval echo \$PID_w$r)" 60; rc=$?
    grep -q '^PASS' "$TMP/w$r.log" && [ $rc = 0 ] || fail "$CASE: worker $r exited $rc"
  done
}

# recovery_ms T_KILL: from the kill to the first push acknowledged after it.
recovery_ms() {
  local t
  t=$(awk '/^recovered/ {print $2}' "$TMP"/w*.log | sort -n | head -1)
  [ -n "$t" ] || fail "$CASE: no push acknowledged after the failure"
  echo $(( t - $1 ))
}

server_pid() { cat "$TMP/server.$1.pid"; }

case_kill() {
  cluster --keys 3000 --before 40 --after 60 "$@"
  t_kill=$(now_ms); kill -9 "$(server_pid 1)"
  workers_pass
  echo "recovery_ms $(recovery_ms "$t_kill")"
  for n in sched s0 s2; do
    wait_exit "$(eval echo \$PID_$n)" 30 || fail "$CASE: $n exited $?"
  done
  grep -h '^result' "$TMP"/w*.log
}

case_stop() {
  cluster --keys 3000 --before 40 --after 60
  pid=$(server_pid 1)
  kill -STOP "$pid"
  wait_for 30 grep -q '^dead 2 at' "$TMP/w0.log" || { kill -CONT "$pid"; fail "stop: server 1 never declared dead"; }
  workers_pass
  kill -CONT "$pid"
  wait_exit "$PID_s1" 30; rc=$?
  [ $rc != 0 ] && [ $rc != 255 ] || fail "stop: the resumed server exited $rc, wanted a clear error"
  grep -Eq 'declared this node dead|lost the connection to the scheduler' "$TMP/s1.log" || fail "stop: the resumed server did not say it was replaced"
  for n in sched s0 s2; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "stop: $n exited $?"; done
  grep -h '^result' "$TMP"/w*.log
}

case_twice() {
  cluster --keys 3000 --before 30 --after 40 --deaths 2
  kill -9 "$(server_pid 1)"
  wait_for 30 grep -q 'copied .* keys to new backups' "$TMP/s0.log" "$TMP/s2.log" \
    || fail "twice: no replicas were restored after the first death"
  wait_for 30 sh -c "[ \$(grep -c '^recovered' $TMP/w0.log) -ge 1 ]" || fail "twice: no recovery"
  kill -9 "$(server_pid 2)"
  workers_pass
  wait_exit "$PID_s0" 30 || fail "twice: server 0 exited $?"
  grep -h '^result' "$TMP"/w*.log
}

case_k2() { # two servers killed at once with k = 2: nothing lost
  cluster --keys 3000 --before 40 --after 60 --deaths 2 --replication 2
  wait_for 5 test -s "$TMP/server.2.pid" || fail "k2: no pid file for server 2"
  kill -9 "$(server_pid 1)" "$(server_pid 2)"
  workers_pass
  for n in sched s0 s3; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "k2: $n exited $?"; done
  grep -h '^result' "$TMP"/w*.log
}

case_k0() {
  cluster --keys 3000 --before 40 --after 20 --replication 0
  kill -9 "$(server_pid 1)"
  for r in 0 1; do
    wait_exit "$(eval echo \$PID_w$r)" 60; rc=$?
    [ $rc != 0 ] && [ $rc != 255 ] || fail "k0: worker $r exited $rc (wanted failed pushes)"
    grep -Eq 'failed=[1-9]|is dead \(the table has no replicas\)' "$TMP/w$r.log" ||
      fail "k0: worker $r did not report failed pushes"
  done
}

case_bsp() {
  cluster --keys 3000 --before 15 --after 25 --bsp 1
  kill -9 "$(server_pid 1)"
  workers_pass
  for n in sched $(seq 0 $((NS - 1)) | grep -vx 1 | sed 's/^/s/'); do
    wait_exit "$(eval echo \$PID_$n)" 30 || fail "$CASE: $n exited $?"
  done
  grep -h '^result' "$TMP"/w*.log
}

case_leave() {
  PS_LEAVE_FILE=$TMP/leave cluster --keys 3000 --before 40 --after 60
  touch "$TMP/leave"
  wait_for 30 grep -q '^left: ' "$TMP/s1.log" || fail "leave: server 1 did not leave"
  grep -q '^left: success' "$TMP/s1.log" || fail "leave: $(grep '^left' "$TMP/s1.log")"
  workers_pass
  for n in sched s0 s1 s2; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "leave: $n exited $?"; done
  grep -h '^result' "$TMP"/w*.log
}

# joiner: start server NS (no rank: it joins the running cluster) and wait
# until it serves its share.
joiner() {
  start_node s$NS server "" "$@"
  wait_for 60 grep -q '^join: ' "$TMP/s$NS.log" || fail "$CASE: the new server never joined"
  grep -q '^join: success' "$TMP/s$NS.log" || fail "$CASE: $(grep '^join' "$TMP/s$NS.log")"
}

# joined_served: the server that joined applied pushes as a head, and exited 0.
joined_served() {
  wait_exit "$(eval echo \$PID_s$NS)" 30 || fail "$CASE: the joined server exited $?"
  local applied
  applied=$(awk '/^server [0-9]+: keys/ {print $6}' "$TMP/s$NS.log")
  [ "${applied:-0}" -gt 0 ] || fail "$CASE: the joined server applied no push"
  echo "joined server: $(grep '^server' "$TMP/s$NS.log")"
}

# held_pairs_exact: with k = 1 and every server alive at the end, each key is
# held by exactly its chain, 2 servers: the servers' keys sum to twice the
# workers' (a backup a joiner pushed out of a chain lets its copy go, prune.c).
held_pairs_exact() {
  local held total
  held=$(awk '/^server [0-9]+: keys/ {s += $4} END {print s + 0}' "$TMP"/s*.log)
  total=$(grep -h '^result' "$TMP"/w*.log | sed -n 's/.* keys=\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
  [ "$total" -gt 0 ] && [ "$held" = $((2 * total)) ] \
    || fail "$CASE: the servers hold $held keys, the chains $((2 * total)) ($total keys, k = 1)"
  echo "held keys: $held = 2 x $total"
}

case_join() {
  cluster --keys 3000 --before 40 --after 80 --deaths 0 --joins 1 "$@"
  joiner
  workers_pass
  for n in sched s0 s1 s2; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "$CASE: $n exited $?"; done
  joined_served
  grep -h '^result' "$TMP"/w*.log
  held_pairs_exact
}

case_joinkill() {
  cluster --keys 20000 --before 40 --after 60 --deaths 1 --joins 1 --inflight 12 "$@"
  kill -9 "$(server_pid 1)"
  # place the join just before the death is declared (1 s heartbeat); the
  # sums must be exact whenever it lands, this is only where it is likeliest
  # to cross moved pushes
  sleep 0.85
  joiner --keys 20000
  workers_pass
  for n in sched s0 s2; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "$CASE: $n exited $?"; done
  joined_served
  grep -h '^result' "$TMP"/w*.log
}

case_joinleave() {
  PS_LEAVE_FILE=$TMP/leave cluster --keys 3000 --before 40 --after 60 --deaths 1 --joins 1
  joiner
  touch "$TMP/leave"
  wait_for 30 grep -q '^left: success' "$TMP/s1.log" || fail "joinleave: server 1 did not leave"
  workers_pass
  for n in sched s0 s1 s2; do wait_exit "$(eval echo \$PID_$n)" 30 || fail "$CASE: $n exited $?"; done
  joined_served
  grep -h '^result' "$TMP"/w*.log
}

CASES=${*:-kill stop faults twice bsp bsp2 bspf leave join joinf joinkill joinleave k2 k0}
for CASE in $CASES; do
  case $CASE in
    kill) case_kill ;;
    faults) PS_FAULT="drop=0.02,dup=0.05,delay=0.1,delay_ms=20,seed=11" case_kill ;;
    stop) case_stop ;;
    twice) PS_LOG_LEVEL=info case_twice ;;
    bsp) case_bsp ;;
    bsp2) NS=2 case_bsp ;;
    bspf) PS_FAULT="drop=0.05,dup=0.05,seed=7" case_bsp ;;
    leave) case_leave ;;
    join) PS_LOG_LEVEL=info case_join ;;
    joinf) PS_LOG_LEVEL=info PS_FAULT="drop=0.02,dup=0.05,delay=0.1,delay_ms=20,seed=5" case_join --inflight 32 ;;
    joinkill) PS_LOG_LEVEL=info PS_FAULT="drop=0.03,dup=0.03,delay=0.1,delay_ms=20,seed=3" NW=3 case_joinkill ;;
    joinleave) PS_LOG_LEVEL=info case_joinleave ;;
    k2) NS=4 case_k2 ;;
    k0) case_k0 ;;
    *) fail "unknown case $CASE" ;;
  esac
  pass "$CASE"
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null; PIDS=()
done

#!/usr/bin/env bash
# test_multihost.sh -- libps clusters spread over hosts of the one-machine
# test bed (tests/netns/lib.sh): the scheduler, each server and each worker
# in its own network namespace with its own address (PS_HOST), PS_SCHEDULER
# at the scheduler's address, and a cluster secret (PS_SECRET) in every
# node's environment.  Hosts: 0 scheduler, 1..4 servers (rank r on 1 + r),
# 5..7 workers (rank r on 5 + r).  Cases:
#   sum       ps_kvtest sum, 2 servers, 3 workers: exact sums;
#   sumloss   the same with 1% of packets dropped in and out of every host;
#   kill      ps_failtest, 3 servers, 2 workers, k = 1: a server SIGKILLed
#             mid-run; every acknowledged push in the model exactly once;
#   killloss  the kill case with 1% loss on every host;
#   join      a fourth server joins the running job (ps_join) and serves;
#   ckpt      ps_ckpttest: 2 servers checkpoint iterations 3 and 6; 3 servers
#             restore 6: exact values, AdaGrad state kept;
#   linear    pslinear BPG + KKT on the small fixture (pslinear_fixture.awk),
#             -s 2 -w 2, 24 iterations: the same objectives and nnz as the
#             same run under psrun on loopback (1e-12 relative);
#   cutserver server 1's host is partitioned past the heartbeat timeout
#             (PS_HEARTBEAT_TIMEOUT_MS), then healed while the workers still
#             push: sums exact; the cut server must say it was replaced and
#             exit nonzero, not serve again;
#   cutworker the same for worker 1: the rest finishes exact and exits 0;
#             the cut worker says it was declared dead and exits nonzero;
#   cutsched  the scheduler's host is partitioned past the timeout, then
#             healed: the scheduler says it lost every server and exits
#             nonzero; every other node says it lost the scheduler and exits
#             nonzero (none finishes as if nothing happened, none hangs).
# Every case is bounded (timeout on each node, deadlines on every poll); a
# failing case does not stop the others.  Each case prints the exit status
# of every node ("exits: ..."), the record of what the nodes do.
# Usage: test_multihost.sh [case...] (default: all).  PS_BIN: build/bin.
# Prints "SKIP: ..." and exits 0 without root or network namespaces.
# shellcheck disable=SC2046,SC2034,SC1091 # node lists split on purpose; lib.sh reads NB_*
. "$(dirname "$0")/lib.sh"
: "${PS_BIN:?PS_BIN must point at the build/bin folder}"
nb_require

HERE=$(cd "$(dirname "$0")" && pwd)
export PS_HEARTBEAT_TIMEOUT_MS=${PS_HEARTBEAT_TIMEOUT_MS:-1000} PS_RESEND_MS=${PS_RESEND_MS:-200}
export PS_PID_DIR=$NB_TMP
NODE_LIMIT=${NODE_LIMIT:-90} # seconds any node may run
NB_SCHED_HOST=0
NB_PORT=9100
FAILED=()

fail() {
  echo "FAIL: $CASE: $*"
  local f
  for f in "$NB_TMP"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $CASE/$(basename "$f")"; tail -n 12 "$f"
  done | sed 's/^/    /'
  nb_kill_all
  exit 1
}
pass() { echo "ok - $CASE: $*"; }

# node NAME HOST ROLE RANK ARGS...: BIN (ps_failtest unless set) as a node.
node() {
  local name=$1 h=$2 role=$3 rank=$4; shift 4
  nb_node "$name" "$h" "$role" "$rank" timeout -k 5 "$NODE_LIMIT" "${BIN:-$PS_BIN/ps_failtest}" "$@"
}
shost() { echo $(( 1 + $1 )); }
whost() { echo $(( 5 + $1 )); }

# cluster NS NW ARGS...: the scheduler, NS servers and NW workers, all running
# BIN ARGS; a new scheduler port for every cluster.
cluster() {
  NB_NS=$1 NB_NW=$2; shift 2
  NB_PORT=$((NB_PORT + 1)) # and for each cluster in a case
  rm -f "$NB_TMP"/*.log "$NB_TMP"/*.pid
  node sched 0 scheduler 0 "$@"
  local r
  for r in $(seq 0 $((NB_NS - 1))); do node "s$r" "$(shost "$r")" server "$r" "$@"; done
  for r in $(seq 0 $((NB_NW - 1))); do node "w$r" "$(whost "$r")" worker "$r" "$@"; done
}
nodes() { echo sched; seq 0 $((NB_NS - 1)) | sed 's/^/s/'; seq 0 $((NB_NW - 1)) | sed 's/^/w/'; }
pid_of() { eval echo "\$PID_$1"; }

# exits NAME...: wait for each, all within EXIT_S seconds (40), record its
# exit status in RC_NAME (255: still running) and print them on one line.
exits() {
  local n left line="exits:" end=$(( $(nb_now_ms) / 1000 + ${EXIT_S:-40} ))
  for n in "$@"; do
    left=$(( end - $(nb_now_ms) / 1000 )); [ $left -gt 0 ] || left=1
    nb_wait_exit "$(pid_of "$n")" $left; eval "RC_$n=$?"
    line="$line $n=$(eval echo \$RC_$n)"
  done
  echo "$line"
}
rc_of() { eval echo "\$RC_$1"; }

# all_zero NAME...: every one exited 0.
all_zero() {
  local n
  for n in "$@"; do [ "$(rc_of "$n")" = 0 ] || fail "$n exited $(rc_of "$n")"; done
}

# failtest_exact W...: each ps_failtest worker printed PASS, with nothing
# lost, nothing applied twice and no push failed; prints their result lines.
failtest_exact() {
  local w
  for w in "$@"; do
    grep -q '^PASS' "$NB_TMP/$w.log" ||
      fail "$w (exit $(rc_of "$w")) has no PASS: $(grep -Ev 'INFO' "$NB_TMP/$w.log" | tail -n 3 | tr '\n' ' ')"
    grep -Eq '^result .* lost=0 twice=0 failed=0 ' "$NB_TMP/$w.log" || fail "$w: $(grep '^result' "$NB_TMP/$w.log")"
  done
}
results() { for w in "$@"; do echo "$w $(grep '^result' "$NB_TMP/$w.log" | cut -d' ' -f2-)"; done | tr '\n' ';'; }
logs() { for n in "$@"; do echo "$NB_TMP/$n.log"; done; }

phase_a() { nb_wait_for 30 grep -q '^phaseA' "$NB_TMP/w0.log" || fail "workers never finished phase A"; }

# ---- cases ----

kvsum() {
  BIN=$PS_BIN/ps_kvtest cluster 2 3 sum --keys 2000 --rounds 30
  exits $(nodes)
  all_zero $(nodes)
  local n; n=$(cat $(logs w0 w1 w2) | grep -c '^PASS')
  grep -h '^FAIL' $(logs w0 w1 w2) && fail "a worker failed"
  [ "$n" = 6 ] || fail "$n PASS lines, want 6"
  pass "6 PASS, exact sums; $(grep -h 'worker resends' $(logs w0 w1 w2) | tr '\n' ';')"
}

case_sum() { kvsum; }
case_sumloss() {
  local h; for h in $(seq 0 $((NB_HOSTS - 1))); do nb_loss "$h" 1; done
  kvsum
}

case_kill() {
  cluster 3 2 --keys 3000 --before 40 --after 60
  phase_a
  nb_wait_for 5 test -s "$NB_TMP/server.1.pid" || fail "no pid file for server 1"
  local t_kill; t_kill=$(nb_now_ms)
  kill -9 "$(cat "$NB_TMP/server.1.pid")" 2>/dev/null || echo "note: server 1 had exited before the kill"
  exits sched s0 s2 w0 w1
  all_zero sched s0 s2 w0 w1
  failtest_exact w0 w1
  local r t; r=$(results w0 w1)
  t=$(awk '/^recovered/ {print $2}' $(logs w0 w1) | sort -n | head -1)
  [ -n "$t" ] || fail "no push acknowledged after the kill"
  pass "recovery $((t - t_kill)) ms; $r"
}

case_killloss() {
  local h; for h in $(seq 0 $((NB_HOSTS - 1))); do nb_loss "$h" 1; done
  case_kill
}

case_join() {
  PS_LOG_LEVEL=info cluster 3 2 --keys 3000 --before 40 --after 80 --deaths 0 --joins 1
  phase_a
  PS_LOG_LEVEL=info node s3 "$(shost 3)" server "" --keys 3000 --before 40 --after 80 --deaths 0 --joins 1
  nb_wait_for 60 grep -q '^join: ' "$NB_TMP/s3.log" || fail "the new server never joined"
  grep -q '^join: success' "$NB_TMP/s3.log" || fail "$(grep '^join' "$NB_TMP/s3.log")"
  exits sched s0 s1 s2 s3 w0 w1
  all_zero sched s0 s1 s2 s3 w0 w1
  failtest_exact w0 w1
  local r applied; r=$(results w0 w1)
  applied=$(awk '/^server [0-9]+: keys/ {print $6}' "$NB_TMP/s3.log")
  [ "${applied:-0}" -gt 0 ] || fail "the joined server applied no push"
  pass "$(grep '^join:' "$NB_TMP/s3.log"), it applied $applied; $r"
}

case_ckpt() {
  local ck=$NB_TMP/ck keys=5000
  BIN=$PS_BIN/ps_ckpttest cluster 2 2 write --dir "$ck" --keys $keys --iters 8 --ckpt 3,6
  exits $(nodes); all_zero $(nodes)
  grep -h 'FAIL' "$NB_TMP"/*.log && fail "write failed"
  [ "$(cat "$NB_TMP"/*.log | grep -c 'PASS checkpoint')" = 2 ] || fail "write: want 2 PASS checkpoint lines"
  local ada; ada=$(cat "$NB_TMP"/*.log | grep -o 'ada checksum .*') || fail "write: no AdaGrad checksum"
  BIN=$PS_BIN/ps_ckpttest cluster 3 2 check --dir "$ck" --keys $keys --want-iter 6 --iters 8
  exits $(nodes); all_zero $(nodes)
  local all; all=$(cat "$NB_TMP"/*.log)
  echo "$all" | grep 'FAIL' && fail "restore failed"
  [ "$(echo "$all" | grep -c 'PASS sparse values exact')" = 2 ] || fail "sparse values not exact"
  [ "$(echo "$all" | grep -c 'PASS dense values exact')" = 2 ] || fail "dense values not exact"
  local held; held=$(echo "$all" | grep -o 'server sparse keys [0-9]*' | awk '{n++; s += $4} END {print n, s}')
  [ "$held" = "3 $keys" ] || fail "servers hold (count, keys) = ($held), want (3 $keys)"
  [ "$(echo "$all" | grep -o 'ada checksum .*')" = "$ada" ] || fail "AdaGrad values differ from the uninterrupted run"
  pass "2 servers checkpoint 3 and 6; 3 servers restore 6 exactly, $ada"
}

# objectives of pslinear's per-iteration JSON lines in FILE: "iter objective nnz"
objs() { sed -n 's/^{"iter": \([0-9]*\), "objective": \([^,]*\), "nnz": \([0-9]*\)}$/\1 \2 \3/p' "$@"; }

case_linear() {
  local lin="--train $NB_TMP/train.svm --json --eval-every 0 --blocks 4 --l1 0.004 --kkt --iters 24"
  awk -v seed=11 -f "$HERE/../integration/pslinear_fixture.awk" </dev/null >"$NB_TMP/train.svm" || fail "fixture"
  # shellcheck disable=SC2086
  timeout 60 "$PS_BIN/psrun" -s 2 -w 2 --timeout 50 --no-prefix -q -- "$PS_BIN/pslinear" $lin \
    >"$NB_TMP/loopback.out" 2>&1 || fail "the loopback run exited $?"
  # shellcheck disable=SC2086
  BIN=$PS_BIN/pslinear cluster 2 2 $lin
  exits $(nodes); all_zero $(nodes)
  objs "$NB_TMP/loopback.out" >"$NB_TMP/ref.txt"
  objs "$NB_TMP"/*.log >"$NB_TMP/got.txt"
  [ "$(tail -n 1 "$NB_TMP/ref.txt" | cut -d' ' -f1)" = 23 ] || fail "the loopback run did not reach iteration 23"
  [ "$(tail -n 1 "$NB_TMP/got.txt" | cut -d' ' -f1)" = 23 ] || fail "the multi-host run did not reach iteration 23"
  awk 'NR == FNR { o[$1] = $2; z[$1] = $3; next }
       { d = $2 - o[$1]; if (d < 0) d = -d; if (!($1 in o) || d > 1e-12 * o[$1] || $3 != z[$1]) {
           print "iteration " $1 ": " $2 " nnz " $3 ", loopback " o[$1] " nnz " z[$1]; bad = 1 } }
       END { exit bad }' "$NB_TMP/ref.txt" "$NB_TMP/got.txt" >"$NB_TMP/cmp" ||
    fail "objectives differ from loopback: $(head -3 "$NB_TMP/cmp")"
  pass "24 iterations as on loopback, final $(tail -n 1 "$NB_TMP/got.txt")"
}

# replaced NAME: the node exited nonzero (not still running) and said that it
# was declared dead or lost the scheduler.
replaced() {
  local rc; rc=$(rc_of "$1")
  [ "$rc" != 0 ] && [ "$rc" != 255 ] || fail "the healed $1 exited $rc, want a clear error"
  grep -Eq 'declared this node dead|lost the connection to the scheduler|cut off' "$NB_TMP/$1.log" ||
    fail "the healed $1 did not say it was replaced: $(tail -n 2 "$NB_TMP/$1.log" | tr '\n' ' ')"
}

case_cutserver() {
  cluster 3 2 --keys 3000 --before 40 --after 1000
  phase_a
  local t0; t0=$(nb_now_ms); nb_cut "$(shost 1)"
  nb_wait_for 30 grep -q '^dead 2 at' "$NB_TMP/w0.log" || fail "server 1 never declared dead"
  local t1; t1=$(nb_now_ms); nb_heal "$(shost 1)"
  grep -q '^PASS' "$NB_TMP/w0.log" && echo "note: the workers had finished before the heal"
  exits sched s0 s1 s2 w0 w1
  failtest_exact w0 w1
  local r; r=$(results w0 w1)
  all_zero sched s0 s2 w0 w1
  replaced s1
  pass "cut $((t1 - t0)) ms; s1: $(grep -Eo 'declared this node dead.*|lost the connection.*' "$NB_TMP/s1.log" | head -1); $r"
}

case_cutworker() {
  PS_LOG_LEVEL=info cluster 3 2 --keys 3000 --before 40 --after 1000 --deaths 0
  phase_a
  local t0; t0=$(nb_now_ms); nb_cut "$(whost 1)"
  nb_wait_for 30 grep -q 'worker 1 .* declared dead' "$NB_TMP/sched.log" || fail "worker 1 never declared dead"
  local t1; t1=$(nb_now_ms); nb_heal "$(whost 1)"
  exits sched s0 s1 s2 w0 w1
  failtest_exact w0
  local r; r=$(results w0)
  all_zero sched s0 s1 s2 w0
  replaced w1
  pass "cut $((t1 - t0)) ms; w1: $(grep -Eo 'declared this node dead.*|lost the connection.*' "$NB_TMP/w1.log" | head -1); $r"
}

case_cutsched() {
  PS_LOG_LEVEL=info cluster 3 2 --keys 3000 --before 40 --after 1000 --deaths 0
  phase_a
  local t0; t0=$(nb_now_ms); nb_cut 0
  # past the timeout: the scheduler declares everyone dead and gives up; the
  # nodes hear nothing from it (its answers to their beats stop) and give up
  # too: nobody may go on as if nothing happened, nobody may hang
  nb_wait_for $(( 4 * PS_HEARTBEAT_TIMEOUT_MS / 1000 + 2 )) \
    grep -Eq 'every (server|worker) was declared dead' "$NB_TMP/sched.log" ||
    fail "the scheduler did not say it lost the cluster within 4 timeouts"
  local t1; t1=$(nb_now_ms); nb_heal 0
  exits $(nodes)
  local n
  for n in $(nodes); do
    [ "$(rc_of "$n")" != 0 ] && [ "$(rc_of "$n")" != 255 ] ||
      fail "$n exited $(rc_of "$n"): a node cut off from the scheduler must fail, not finish or hang"
  done
  for n in $(nodes | grep -v sched); do
    grep -Eq 'cut off|lost the connection to the scheduler|declared this node dead' "$NB_TMP/$n.log" ||
      fail "$n's log does not say it lost the scheduler"
  done
  pass "cut $((t1 - t0)) ms; every node failed and said why"
}

CASES=${*:-sum sumloss kill killloss join ckpt linear cutserver cutworker cutsched}
t_all=$(nb_now_ms)
nb_setup 9 || { echo "FAIL: cannot build the test network"; exit 1; }
i=0
for CASE in $CASES; do
  i=$((i + 1)); NB_PORT=$((9100 + 10 * i)) # a fresh scheduler port for each case
  type "case_$CASE" >/dev/null 2>&1 || { echo "FAIL: unknown case $CASE"; FAILED+=("$CASE"); continue; }
  t_case=$(nb_now_ms)
  ( "case_$CASE" ); rc=$?
  nb_kill_all; nb_reset
  mkdir -p "$NB_TMP/$CASE"; mv "$NB_TMP"/*.log "$NB_TMP"/*.out "$NB_TMP/$CASE/" 2>/dev/null
  echo "   ($CASE: $(( ($(nb_now_ms) - t_case) / 1000 )) s)"
  [ $rc = 0 ] || FAILED+=("$CASE")
done
echo "total $(( ($(nb_now_ms) - t_all) / 1000 )) s"
[ ${#FAILED[@]} = 0 ] || { echo "FAILED: ${FAILED[*]}"; exit 1; }

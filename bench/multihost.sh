#!/usr/bin/env bash
# bench/multihost.sh -- libps across hosts of the one-machine test bed
# (tests/netns/lib.sh: one network namespace and address per node, a bridge
# between them, LOSS% of packets dropped in and out of every host).
#
#   failover  3 servers, 2 workers of tests/apps/ps_failtest (k = 1, 3000
#             keys, 8 pushes in flight), LOSS% loss on every host: after the
#             workers' first 40 pushes server 1 gets SIGKILL; then 60 more
#             pushes and every key is checked against the pushes acknowledged
#             (bench/failover.sh's method): acked_lost / applied_twice count
#             keys reading below / above that; recovery_ms is from the kill
#             to the first push acknowledged after it.
#   partition the same cluster, but server 1's host is cut off from the
#             bridge until it is declared dead (PS_HEARTBEAT_TIMEOUT_MS), then
#             healed while the workers go on (1000 more pushes):
#             partition_lost = keys lost plus keys applied twice.
#   intruder  a running cluster (ps_testnode); one more node with a WRONG
#             PS_SECRET starts as a server without a rank (a join):
#             intruder_admitted is true if it got in (it printed "joined id",
#             or the scheduler logged it joining).
#   rate      psbench -s 1 -w 1, pushes of 1000 keys x 1 f32, 4 in flight,
#             with no loss and with LOSS%: pushes_per_s_ratio = median
#             pushes/s at LOSS% / median with none (PB_REPEAT runs each).
#   false_deaths (extra): nodes the scheduler declared dead that were neither
#             killed nor cut, in all these runs (a heartbeat lost to loss or
#             CPU load); it explains acked_lost > 0 with k = 1.
#   garbage_crashes: nodes that died of a signal (segfault, abort, ...) in
#             any of these runs, not counting the server killed on purpose;
#             a placeholder until garbage input is sent on purpose.
# A value that a failed run could not give is null (the reason on stderr).
# Prints one JSON line.  Usage: bench/multihost.sh [BIN_DIR]
#   env: LOSS (1), HB_MS (1000), PB_REPEAT (3), PS_KEEP_LOGS (keep the logs),
#   PARTS (default "failover partition intruder rate": the runs to make;
#   the others' values are null)
# Needs root (network namespaces); every node runs under timeout, the whole
# run takes about 1-2 minutes and at most about 5 (each run has a budget).
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${PS_BIN:-$ROOT/build/bin}}
LOSS=${LOSS:-1} PB_REPEAT=${PB_REPEAT:-3} PARTS=${PARTS:-failover partition intruder rate}
export PS_HEARTBEAT_TIMEOUT_MS=${HB_MS:-1000} PS_RESEND_MS=${RESEND_MS:-200}
for b in ps_failtest ps_testnode psbench; do
  [ -x "$BIN/$b" ] || { echo "multihost.sh: build first (make build); no $BIN/$b" >&2; exit 2; }
done
. "$ROOT/tests/netns/lib.sh"
nb_skip() { echo "multihost.sh: $*" >&2; exit 2; }
nb_require
export PS_PID_DIR=$NB_TMP
note() { echo "multihost.sh: $*" >&2; }

HOSTS=7 # 0 scheduler, 1-3 servers, 4-5 workers, 6 intruder
NB_SCHED_HOST=0 NB_PORT=9300
nb_setup $HOSTS || { note "cannot build the test network"; exit 1; }
all_loss() { local h; for h in $(seq 0 $((HOSTS - 1))); do nb_loss "$h" "$1"; done; }

node() { # NAME HOST ROLE RANK BINARY ARGS...
  local name=$1 h=$2 role=$3 rank=$4 bin=$5; shift 5
  nb_node "$name" "$h" "$role" "$rank" timeout -k 5 90 "$BIN/$bin" "$@"
}

# cluster NS NW BINARY ARGS...: the scheduler, NS servers (hosts 1..), NW
# workers (hosts 4..), a new scheduler port each time.
cluster() {
  NB_NS=$1 NB_NW=$2; local bin=$3 r; shift 3
  NB_PORT=$((NB_PORT + 1)); rm -f "$NB_TMP"/*.log "$NB_TMP"/*.pid
  node sched 0 scheduler 0 "$bin" "$@"
  for r in $(seq 0 $((NB_NS - 1))); do node "s$r" $((1 + r)) server "$r" "$bin" "$@"; done
  for r in $(seq 0 $((NB_NW - 1))); do node "w$r" $((4 + r)) worker "$r" "$bin" "$@"; done
}

# budget SECONDS: the current run must end within SECONDS from now; left:
# seconds left of it (at least 1), or of $1 if that is less.
budget() { CASE_END=$(( $(nb_now_ms) / 1000 + $1 )); }
left() {
  local l=$(( CASE_END - $(nb_now_ms) / 1000 ))
  [ $# = 1 ] && [ "$1" -lt $l ] && l=$1
  [ $l -gt 0 ] && echo $l || echo 1
}

# finish SKIP NAME...: wait (until the run's end, and 5 s more) for every
# node; list those that died of a signal in $NB_TMP/crashes, except SKIP
# (the one killed on purpose); then kill the rest.
finish() {
  local skip=$1 n rc; shift
  CASE_END=$((CASE_END + 5))
  for n in "$@"; do
    nb_wait_exit "$(eval echo "\$PID_$n")" "$(left)"; rc=$?
    [ "$rc" = 255 ] && note "$CASE: $n still running at the end of the run"
    if [ "$rc" -gt 128 ] && [ "$rc" != 255 ] && [ "$n" != "$skip" ]; then
      echo "$CASE $n" >>"$NB_TMP/crashes"; note "$CASE: $n died of signal $((rc - 128))"
    fi
  done
  nb_kill_all
  if [ -n "${PS_KEEP_LOGS:-}" ]; then mkdir -p "$NB_TMP/$CASE"; cp "$NB_TMP"/*.log "$NB_TMP/$CASE/"; fi
}

# sum_field FIELD: the sum of FIELD=N over both workers' result lines, or
# null (with a note) when a worker printed none.
sum_field() {
  local w s=0 v
  for w in w0 w1; do
    v=$(sed -n "s/^result.* $1=\([0-9]*\).*/\1/p" "$NB_TMP/$w.log")
    [ -n "$v" ] || { note "$CASE: $w has no result: $(grep -v INFO "$NB_TMP/$w.log" | tail -n 2 | tr '\n' ' ')"; echo null; return; }
    s=$((s + v))
  done
  echo $s
}
# false_deaths [WANT]: list in $NB_TMP/false the nodes the scheduler declared
# dead in this run beyond the WANT (1) that the run killed or cut; note them.
false_deaths() {
  local n want=${1:-1}
  n=$(grep -c 'declared dead: silent' "$NB_TMP/sched.log")
  [ "$n" -gt "$want" ] || return 0
  seq $((n - want)) | sed "s/^/$CASE /" >>"$NB_TMP/false"
  note "$CASE: $((n - want)) false death(s): $(grep -o '[a-z]* [0-9] (node [0-9]*.*declared dead: silent for [0-9]* ms' "$NB_TMP/sched.log" | sed 's/ at [0-9.:]*//' | tr '\n' ';')"
}
wait_grep() { nb_wait_for "$(left "$1")" grep -q "$2" "$3" || { note "$CASE: no '$2' in $(basename "$3") after $1 s"; return 1; }; }

want() { [[ " $PARTS " == *" $1 "* ]]; }
lost=null twice=null rec=null plost=null admitted=null ratio=null

# ---- failover under loss ----
CASE=failover
if want failover; then
all_loss "$LOSS"; budget 60
cluster 3 2 ps_failtest --keys 3000 --before 40 --after 60 --replication 1
if wait_grep 60 '^phaseA' "$NB_TMP/w0.log" && wait_grep 10 . "$NB_TMP/server.1.pid"; then
  t_kill=$(nb_now_ms)
  killed=1; kill -9 "$(cat "$NB_TMP/server.1.pid")" 2>/dev/null || killed=0
  wait_grep 60 '^result' "$NB_TMP/w0.log"; wait_grep 30 '^result' "$NB_TMP/w1.log"
  lost=$(sum_field lost) twice=$(sum_field twice)
  t_rec=$(awk '/^recovered/ {print $2}' "$NB_TMP"/w*.log | sort -n | head -1)
  if [ $killed = 0 ]; then note "failover: server 1 was gone before the kill: no recovery time"
  elif [ -z "$t_rec" ]; then note "failover: no push acknowledged after the kill"
  else rec=$((t_rec - t_kill)); fi
fi
false_deaths # one death is the kill's
finish s1 sched s0 s1 s2 w0 w1
fi

# ---- partition of a server, healed ----
CASE=partition
if want partition; then
all_loss "$LOSS"; budget 75
cluster 3 2 ps_failtest --keys 3000 --before 40 --after 1000 --replication 1
if wait_grep 60 '^phaseA' "$NB_TMP/w0.log"; then
  nb_cut 2
  wait_grep 30 '^dead 2 at' "$NB_TMP/w0.log"
  nb_heal 2
  wait_grep 90 '^result' "$NB_TMP/w0.log"; wait_grep 30 '^result' "$NB_TMP/w1.log"
  a=$(sum_field lost) b=$(sum_field twice)
  [ "$a" != null ] && [ "$b" != null ] && plost=$((a + b))
fi
false_deaths # one death is the cut's
finish "" sched s0 s1 s2 w0 w1
all_loss 0
fi

# ---- an intruder with the wrong secret ----
CASE=intruder
if want intruder; then
budget 30
PS_LOG_LEVEL=info cluster 1 1 ps_testnode --barriers 1 --wait-dead 1 --wait-ms 20000
if wait_grep 30 '^joined id' "$NB_TMP/w0.log"; then
  SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n') node intruder 6 server "" ps_testnode --barriers 0
  in_log() { grep -q '^joined id' "$NB_TMP/intruder.log" ||
             grep -q "joined the running cluster from $(nb_addr 6)" "$NB_TMP/sched.log"; }
  nb_wait_for "$(left 15)" sh -c "! kill -0 $PID_intruder 2>/dev/null" || true
  if in_log; then admitted=true; else admitted=false; fi
  false_deaths 0
  note "intruder: admitted=$admitted; its log: $(grep -v INFO "$NB_TMP/intruder.log" | tail -n 2 | tr '\n' ' ')"
fi
finish "" intruder
fi

# ---- push rate with and without loss ----
CASE=rate
PB="--op push --keys 1000 --val-len 1 --iters 2000 --inflight 4 --json"
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
rate_runs() { # LOSS: pushes/s of each run that finished, one per line
  local i v
  all_loss "$1"
  for i in $(seq "$PB_REPEAT"); do
    # shellcheck disable=SC2086
    budget 20; cluster 1 1 psbench $PB
    nb_wait_exit "$PID_w0" "$(left)"
    v=$(sed -n 's/^{"op".*"iters":\([0-9]*\),.*"wall_s":\([0-9.]*\),.*/\1 \2/p' "$NB_TMP/w0.log" |
        awk '$2 > 0 {printf "%.1f\n", $1 / $2}')
    false_deaths 0 >&2
    if [ -n "$v" ]; then echo "$v"; else note "rate: a run at $1% loss failed: $(grep -v INFO "$NB_TMP/w0.log" | tail -n 2 | tr '\n' ' ')"; fi
    finish "" sched s0 w0 >&2
  done
}
if want rate; then
r0=$(rate_runs 0 | median) r1=$(rate_runs "$LOSS" | median)
all_loss 0
[ -n "$r0" ] && [ -n "$r1" ] && ratio=$(awk -v a="$r1" -v b="$r0" 'BEGIN {printf "%.3f", a / b}')
note "rate: median pushes/s ${r0:-none} without loss, ${r1:-none} at $LOSS% loss"
fi

printf '{"hosts":%d,"loss_pct":%s,"acked_lost":%s,"applied_twice":%s,"recovery_ms":%s,"intruder_admitted":%s,"garbage_crashes":%d,"partition_lost":%s,"pushes_per_s_ratio":%s,"false_deaths":%d}\n' \
  "$HOSTS" "$LOSS" "$lost" "$twice" "$rec" "$admitted" "$(cat "$NB_TMP/crashes" 2>/dev/null | wc -l)" \
  "$plost" "$ratio" "$(cat "$NB_TMP/false" 2>/dev/null | wc -l)"

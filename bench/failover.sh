#!/usr/bin/env bash
# failover.sh -- what a server death costs with chain replication (k = 1).
#
# Cluster: 3 servers, 2 workers of tests/apps/ps_failtest (each worker adds 1
# to its own KEYS keys per push, INFLIGHT pushes in flight), heartbeat timeout
# HB_MS (default 250 ms, the paper's setting is about 1 s).
#   failover: after the workers' first 40 pushes, server 1 gets SIGKILL; the
#     workers go on until they saw the death, then 60 more pushes, then check
#     every key against the pushes acknowledged.  acked_lost / applied_twice
#     count keys that read below / above that; recovery_ms is the time from
#     the kill to the first push acknowledged after it (median of REPEAT runs,
#     and every run's value).
#   join: after the workers' first 40 pushes a fourth server starts and joins
#     (ps_join); the workers go on until it serves, then 60 more pushes, then
#     check every key as above (join_lost / join_twice); join_ms is how long
#     ps_join took, from its call to serving its share (median of REPEAT).
#   overhead: PUSHES pushes per worker with no failure, k = 1 and k = 0, in
#     the same invocation; replication_overhead = k1 throughput / k0
#     throughput (pushes/s summed over workers, median of REPEAT runs).
# Prints one JSON line.  Usage: bench/failover.sh [BIN_DIR]
#   env: REPEAT (3), KEYS (3000), INFLIGHT (8), PUSHES (300), HB_MS (250)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/bin}
rep=${REPEAT:-3} keys=${KEYS:-3000} inflight=${INFLIGHT:-8} pushes=${PUSHES:-300}
export PS_HEARTBEAT_TIMEOUT_MS=${HB_MS:-250} PS_RESEND_MS=${RESEND_MS:-100}
[ -x "$bin/ps_failtest" ] || { echo "failover.sh: build first (make build); no $bin/ps_failtest" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ps-failover.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cluster ARGS...: start 1 scheduler, 3 servers, 2 workers; logs in $tmp.
cluster() {
  rm -f "$tmp"/*.log "$tmp"/*.pid; pids=()
  sched=$(port) # global: joiner() starts a node later
  start() {
    PS_ROLE=$1 PS_RANK=$2 PS_SCHEDULER=127.0.0.1:$sched PS_NUM_SERVERS=3 PS_NUM_WORKERS=2 \
      PS_PID_DIR=$tmp timeout 120 "$bin/ps_failtest" --keys "$keys" --inflight "$inflight" "${@:4}" \
      >"$tmp/$3.log" 2>&1 &
    pids+=($!)
  }
  start scheduler 0 sched "$@"
  for r in 0 1 2; do start server $r s$r "$@"; done
  for r in 0 1; do start worker $r w$r "$@"; done
  joiner() { start server "" s3 "$@"; } # a server without a rank joins the running cluster
}

wait_grep() { # wait_grep SECONDS PATTERN FILE
  local end=$(( $(now_ms) + $1 * 1000 ))
  until grep -q "$2" "$3" 2>/dev/null; do
    [ "$(now_ms)" -lt $end ] || { echo "failover.sh: timed out waiting for '$2' in $3" >&2; tail "$tmp"/*.log >&2; exit 1; }
    sleep 0.02
  done
}

wait_workers() {
  for r in 0 1; do
    wait_grep 60 '^result' "$tmp/w$r.log"
  done
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

lost=0 twice=0 recs=()
for _ in $(seq "$rep"); do
  cluster --before 40 --after 60 --replication 1
  wait_grep 30 '^phaseA' "$tmp/w0.log"
  wait_grep 10 . "$tmp/server.1.pid"
  t_kill=$(now_ms); kill -9 "$(cat "$tmp/server.1.pid")"
  wait_workers
  t_rec=$(awk '/^recovered/ {print $2}' "$tmp"/w*.log | sort -n | head -1)
  recs+=($(( t_rec - t_kill )))
  lost=$(( lost + $(sed -n 's/^result.* lost=\([0-9]*\).*/\1/p' "$tmp"/w*.log | paste -sd+ | bc) ))
  twice=$(( twice + $(sed -n 's/^result.* twice=\([0-9]*\).*/\1/p' "$tmp"/w*.log | paste -sd+ | bc) ))
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
done

jlost=0 jtwice=0 joins=()
for _ in $(seq "$rep"); do
  cluster --before 40 --after 60 --replication 1 --deaths 0 --joins 1
  wait_grep 30 '^phaseA' "$tmp/w0.log"
  joiner --replication 1
  wait_workers
  wait_grep 30 '^join: success' "$tmp/s3.log"
  joins+=($(sed -n 's/^join: success in \([0-9]*\) ms/\1/p' "$tmp/s3.log"))
  jlost=$(( jlost + $(sed -n 's/^result.* lost=\([0-9]*\).*/\1/p' "$tmp"/w*.log | paste -sd+ | bc) ))
  jtwice=$(( jtwice + $(sed -n 's/^result.* twice=\([0-9]*\).*/\1/p' "$tmp"/w*.log | paste -sd+ | bc) ))
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
done

# throughput: pushes/s over both workers in phase A, no failure
tput() {
  cluster --before "$pushes" --after 0 --deaths 0 --replication "$1"
  wait_workers
  awk '/^phaseA/ {s += $3} END {print s}' "$tmp"/w*.log
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
k1=() k0=()
for _ in $(seq "$rep"); do k1+=("$(tput 1)"); k0+=("$(tput 0)"); done
m1=$(printf '%s\n' "${k1[@]}" | median) m0=$(printf '%s\n' "${k0[@]}" | median)
rec=$(printf '%s\n' "${recs[@]}" | median)
jm=$(printf '%s\n' "${joins[@]}" | median)
printf '{"acked_lost": %d, "applied_twice": %d, "recovery_ms": %s, "recovery_ms_runs": [%s], "heartbeat_ms": %d, "join_lost": %d, "join_twice": %d, "join_ms": %s, "join_ms_runs": [%s], "replication_overhead": %.3f, "pushes_per_s_k1": %s, "pushes_per_s_k0": %s, "keys_per_push": %d, "servers": 3, "workers": 2}\n' \
  "$lost" "$twice" "$rec" "$(IFS=,; echo "${recs[*]}")" "$PS_HEARTBEAT_TIMEOUT_MS" \
  "$jlost" "$jtwice" "$jm" "$(IFS=,; echo "${joins[*]}")" \
  "$(echo "$m1 / $m0" | bc -l)" "$m1" "$m0" "$keys"

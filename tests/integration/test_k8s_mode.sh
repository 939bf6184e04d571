#!/usr/bin/env bash
# test_k8s_mode.sh -- psrun --k8s, one psrun per "pod", on 127.0.0.1.
#
# What deploy/k8s/ runs, without Kubernetes: each node is a separate
# `psrun --k8s --role ROLE` with the environment a pod has: POD_IP (here
# 127.0.0.1), JOB_COMPLETION_INDEX (an indexed Job: the server) or a
# StatefulSet-style HOSTNAME ending in the ordinal (the workers), and the
# secret as a file (PS_SECRET_FILE, as a mounted Secret).  Checks: a real
# job (ps_kvtest sum, 1 server + 2 workers) passes with every psrun exiting
# 0 and prefixing its node's lines with the rank it derived; bad input (no
# secret, no --role, no rank, a rank past the count, a scheduler name that
# does not resolve within PS_CONNECT_TIMEOUT_MS) exits 2 with a clear
# message and starts nothing.  Every psrun is bounded by timeout(1).
. "$(dirname "$0")/lib.sh"
PSRUN=$PS_BIN/psrun
PORT=$(free_port)
head -c 32 /dev/urandom | base64 >"$TMP/secret"
chmod 600 "$TMP/secret"

# pod NAME ENV... -- ARGS...: one psrun --k8s in the background, log $TMP/NAME.log.
pod() {
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env -u JOB_COMPLETION_INDEX -u PS_SECRET POD_IP=127.0.0.1 PS_SECRET_FILE="$TMP/secret" \
    HOSTNAME=pod "${envs[@]}" timeout -k 5 $((60 * SCALE)) "$PSRUN" --k8s -q \
    --scheduler 127.0.0.1 --port "$PORT" -s 1 -w 2 "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}
JOB=("$PS_BIN/ps_kvtest" sum --keys 1000 --rounds 10)
pod sched -- --role scheduler -- "${JOB[@]}"
pod s0 JOB_COMPLETION_INDEX=0 -- --role server -- "${JOB[@]}"
pod w0 HOSTNAME=libps-workers-0 -- --role worker -- "${JOB[@]}"
pod w1 HOSTNAME=libps-workers-1 -- --role worker -- "${JOB[@]}"
for n in sched s0 w0 w1; do
  pid_var=PID_$n
  wait_exit "${!pid_var}" $((70 * SCALE)); rc=$?
  [ "$rc" = 0 ] || fail "$n exited $rc"
done
for w in 0 1; do
  [ "$(grep -c "^\[worker $w\] PASS" "$TMP/w$w.log")" = 2 ] || fail "worker $w: no PASS lines"
done
grep -q '^\[server 0\] server keys' "$TMP/s0.log" || fail "server 0 did not report"
pass "4 psrun --k8s pods (index, hostname ordinal, POD_IP, secret file): ps_kvtest sum passes, all exit 0"

# bad ENV... -- ARGS... / MESSAGE: exit 2 with MESSAGE, nothing started.
bad() {
  local envs=() msg out rc
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  msg=${!#}
  out=$(env -u JOB_COMPLETION_INDEX -u PS_SECRET -u PS_SECRET_FILE HOSTNAME=pod "${envs[@]}" \
    timeout 10 "$PSRUN" --k8s --scheduler 127.0.0.1 -s 1 -w 2 "${@:1:$#-1}" -- sleep 30 2>&1)
  rc=$?
  [ "$rc" = 2 ] || fail "'$*': exit $rc, want 2: $out"
  echo "$out" | grep -qF -- "$msg" || fail "'$*': no '$msg' in: $out"
}
bad PS_SECRET=x -- "needs --role"
bad -- --role worker --rank 0 "set PS_SECRET or PS_SECRET_FILE"
bad PS_SECRET=x -- --role worker "no rank: give --rank"
bad PS_SECRET=x JOB_COMPLETION_INDEX=2 -- --role worker "rank 2, but there are 2 workers"
bad PS_SECRET=x -- --role boss "--role must be scheduler, server or worker"
bad PS_SECRET=x PS_CONNECT_TIMEOUT_MS=600 -- --role worker --rank 0 --scheduler no-such-name.invalid \
  "the scheduler's name no-such-name.invalid did not resolve within 600 ms"
pass "no --role, no secret, no rank, a rank too large, a bad role, a scheduler name that never resolves: exit 2, said plainly"

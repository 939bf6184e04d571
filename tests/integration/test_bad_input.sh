#!/usr/bin/env bash
# Bad configuration and bad peers give a clear error and a nonzero exit
# within the configured timeouts, never a crash or a hang.
. "$(dirname "$0")/lib.sh"

TN=$PS_BIN/ps_testnode

# A wrong PS_ROLE.
out=$(PS_ROLE=banker PS_SCHEDULER=127.0.0.1:1 PS_NUM_SERVERS=1 PS_NUM_WORKERS=1 timeout 10 "$TN" 2>&1)
rc=$?; [ $rc = 1 ] || fail "wrong PS_ROLE: exit $rc"
echo "$out" | grep -q 'PS_ROLE="banker": expected scheduler, server or worker' || fail "wrong PS_ROLE: message: $out"

# Missing and malformed variables.
out=$(env -u PS_SCHEDULER PS_ROLE=worker PS_NUM_SERVERS=1 PS_NUM_WORKERS=1 timeout 10 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'PS_SCHEDULER is not set' || fail "missing PS_SCHEDULER: $out"
out=$(PS_ROLE=worker PS_SCHEDULER=nohost PS_NUM_SERVERS=1 PS_NUM_WORKERS=1 timeout 10 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'expected host:port' || fail "bad PS_SCHEDULER: $out"
out=$(PS_ROLE=worker PS_SCHEDULER=127.0.0.1:5 PS_NUM_SERVERS=x PS_NUM_WORKERS=1 timeout 10 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'PS_NUM_SERVERS="x"' || fail "bad PS_NUM_SERVERS: $out"
pass "bad environment rejected with clear messages"

# An unreachable scheduler: the node gives up after PS_CONNECT_TIMEOUT_MS.
port=$(free_port); t0=$(now_ms)
out=$(PS_ROLE=worker PS_SCHEDULER=127.0.0.1:$port PS_NUM_SERVERS=0 PS_NUM_WORKERS=1 \
      PS_CONNECT_TIMEOUT_MS=1500 timeout 20 "$TN" 2>&1)
rc=$?; took=$(( $(now_ms) - t0 ))
[ $rc = 1 ] || fail "unreachable scheduler: exit $rc"
echo "$out" | grep -q "no answer from the scheduler at 127.0.0.1:$port" || fail "unreachable scheduler: $out"
[ $took -lt 6000 ] || fail "unreachable scheduler: took $took ms"
pass "unreachable scheduler: clear error after the connect timeout ($took ms)"

# Garbage bytes at the scheduler's port, and a node claiming a rank that does
# not exist: the scheduler survives both and the real cluster still forms.
SCHED=$(free_port); NS=0; NW=1
start_node sched scheduler 0 --barriers 3
wait_for 10 sh -c "ss -ltn | grep -q ':$SCHED '" || fail "scheduler not listening"
head -c 4096 /dev/urandom > "$TMP/garbage"
python3 - "$SCHED" "$TMP/garbage" <<'PY' || true
import socket, sys
for n in (1, 7, 104, 4096):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
        s.sendall(open(sys.argv[2], "rb").read()[:n]); s.close()
    except OSError:
        pass
PY
out=$(PS_ROLE=worker PS_RANK=5 PS_SCHEDULER=127.0.0.1:$SCHED PS_NUM_SERVERS=0 PS_NUM_WORKERS=1 \
      PS_CONNECT_TIMEOUT_MS=5000 timeout 20 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'refused' || fail "bad rank was not refused: $out"
start_node w0 worker 0 --barriers 3
wait_exit "$PID_w0" 20 || fail "worker exit $? after garbage: $(cat "$TMP/w0.log")"
wait_exit "$PID_sched" 20 || fail "scheduler exit $? after garbage"
grep -q 'finalized: success' "$TMP/sched.log" || fail "scheduler did not finish"
pass "garbage at the scheduler port and a bad rank: refused, cluster unaffected"

# Misconfiguration says so at once, on the node that has it: a wrong cluster
# secret (both sides log the refusal), cluster sizes that differ from the
# scheduler's, a wildcard PS_HOST, a secret-less node beyond loopback.
SCHED=$(free_port); NS=0; NW=1
PS_SECRET=right start_node sched scheduler 0 --barriers 3
wait_for 10 sh -c "ss -ltn | grep -q ':$SCHED '" || fail "scheduler not listening"
t0=$(now_ms)
out=$(PS_SECRET=wrong PS_ROLE=worker PS_SCHEDULER=127.0.0.1:$SCHED PS_NUM_SERVERS=0 \
      PS_NUM_WORKERS=1 timeout 20 "$TN" 2>&1)
rc=$?; took=$(( $(now_ms) - t0 ))
[ $rc = 1 ] && echo "$out" | grep -q 'do not share the cluster secret' ||
  fail "wrong secret: exit $rc: $out"
[ $took -lt 5000 ] || fail "wrong secret: took $took ms"
wait_for 5 grep -q 'refused a connection from 127.0.0.1' "$TMP/sched.log" ||
  fail "wrong secret: the scheduler did not log the refusal"
out=$(PS_SECRET=right PS_ROLE=worker PS_SCHEDULER=127.0.0.1:$SCHED PS_NUM_SERVERS=2 \
      PS_NUM_WORKERS=1 timeout 20 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q "refused this node's configuration" ||
  fail "mismatched sizes: $out"
grep -q 'was started for 2 servers and 1 workers, this cluster has 0 and 1' "$TMP/sched.log" ||
  fail "mismatched sizes: the scheduler did not say which"
PS_SECRET=right start_node w0 worker 0 --barriers 3
wait_exit "$PID_w0" 20 || fail "worker exit $?: $(cat "$TMP/w0.log")"
wait_exit "$PID_sched" 20 || fail "scheduler exit $? after the refusals"
out=$(PS_HOST=0.0.0.0 PS_ROLE=worker PS_SCHEDULER=127.0.0.1:1 PS_NUM_SERVERS=0 \
      PS_NUM_WORKERS=1 timeout 20 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'is a wildcard' || fail "wildcard PS_HOST: $out"
out=$(PS_ROLE=scheduler PS_SCHEDULER=0.0.0.0:$SCHED PS_NUM_SERVERS=0 PS_NUM_WORKERS=1 \
      timeout 20 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'is a wildcard' || fail "wildcard PS_SCHEDULER: $out"
# A scheduler's name that does not resolve (yet: a Service being created) is
# waited for up to PS_CONNECT_TIMEOUT_MS, then named; a PS_HOST that does not
# resolve is named at once.
t0=$(now_ms)
out=$(PS_CONNECT_TIMEOUT_MS=800 PS_ROLE=worker PS_SCHEDULER=no-such-host.invalid:9 \
      PS_NUM_SERVERS=0 PS_NUM_WORKERS=1 PS_SECRET=x timeout 20 "$TN" 2>&1)
rc=$?; took=$(( $(now_ms) - t0 ))
[ $rc = 1 ] && echo "$out" | grep -q 'does not resolve yet' &&
  echo "$out" | grep -q "no-such-host.invalid does not resolve to an IPv4 address (waited 800 ms" &&
  [ "$took" -ge 700 ] || fail "unresolvable scheduler (exit $rc after $took ms): $out"
out=$(PS_HOST=no-such-host.invalid PS_ROLE=worker PS_SCHEDULER=127.0.0.1:1 PS_NUM_SERVERS=0 \
      PS_NUM_WORKERS=1 timeout 20 "$TN" 2>&1)
[ $? = 1 ] && echo "$out" | grep -q 'PS_HOST=no-such-host.invalid does not resolve' ||
  fail "unresolvable PS_HOST: $out"
pass "wrong secret, mismatched sizes wildcard and unresolvable addresses: refused at once, both sides say why"

# A push whose slice cannot fit PS_MAX_MSG_BYTES fails at the sender, at
# once, with PS_ERR_TOOBIG (instead of being dropped and resent forever).
t0=$(now_ms)
out=$(PS_MAX_MSG_BYTES=65536 timeout 60 "$PS_BIN/psrun" -q -s 1 -w 1 --timeout 50 -- \
      "$PS_BIN/psbench" --op push --keys 1000 --val-len 64 --iters 10 --progress 0 2>&1)
rc=$?; took=$(( $(now_ms) - t0 ))
[ $rc = 1 ] && echo "$out" | grep -q 'over PS_MAX_MSG_BYTES' || fail "oversized push: exit $rc: $out"
[ $took -lt 10000 ] || fail "oversized push: took $took ms"
pass "a push over PS_MAX_MSG_BYTES fails at the sender in $took ms"

#!/usr/bin/env bash
# Port fuzzing of a live job: while a real cluster (1 scheduler, 2 servers,
# 3 workers) runs BSP iterations, tests/tools/portfuzz.py throws hostile clients at
# every TCP port its nodes listen on (found from /proc: the node pids are
# psrun's descendants, their socket inodes are matched to LISTEN entries of
# /proc/net/tcp and tcp6): random and truncated streams, huge lengths, idle
# and half-open connection storms, replays, slowloris, wrong-secret
# handshakes and hostile frames after a good one.  The job must still exit 0
# with every PASS line, no node may crash, and no listener may die while its
# node lives; every listener must be the libps gate (src/net/gate.h) and
# shut out wrong secrets, bad proofs and replayed handshakes.  Only 127.0.0.1
# is ever fuzzed: listeners bound to another address are listed and skipped.
# PS_FUZZ_SEED=N repeats a run (the seed is printed); PS_KEEP_LOGS=1 keeps logs.
. "$(dirname "$0")/lib.sh"
FUZZ=${PS_TESTS:-$(cd "$(dirname "$0")/.." && pwd)}/tools/portfuzz.py
SECONDS_FUZZ=${PS_FUZZ_SECONDS:-18}
SEED=${PS_FUZZ_SEED:-$(( $(date +%s) % 100000 ))}
# BSP iterations are paced by the servers (about 2.5 k a second here), so the
# job lasts ~20-40 s without flooding anyone; `sum` with enough rounds for
# that queues tens of thousands of pushes at once, and its servers then go
# silent for seconds and are declared dead even with no fuzzing at all.
ITERS=${PS_FUZZ_ITERS:-12000}
# The job's own deadline: it ends in 20-40 s plain and in ~55 s under ASan
# with the fuzzer beside it; the deadline only catches a hang.
JOB_S=$((120 * SCALE))

JOB=
stop_job() { # psrun stops its nodes on SIGTERM; SIGKILL whatever is left
  [ -n "$JOB" ] || return 0
  kill -TERM "$JOB" 2>/dev/null
  wait_for 5 sh -c "! kill -0 $JOB 2>/dev/null"
  for p in ${NODE_PIDS:-}; do kill -9 "$p" 2>/dev/null; done
}
trap 'stop_job; cleanup' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# node_pids ROOT: every descendant of ROOT.
node_pids() {
  python3 - "$1" <<'PY'
import os, sys
kids = {}
for d in filter(str.isdigit, os.listdir("/proc")):
    try:
        ppid = int(open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        continue
    kids.setdefault(ppid, []).append(int(d))
todo, out = [int(sys.argv[1])], []
while todo:
    for c in kids.get(todo.pop(), []):
        out.append(c); todo.append(c)
print(" ".join(map(str, out)))
PY
}

# listeners PID...: "ADDR PORT PID" for every LISTEN socket the pids hold.
listeners() {
  python3 - "$@" <<'PY'
import os, re, socket, struct, sys
owner = {}
for pid in sys.argv[1:]:
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        continue
    for fd in fds:
        try:
            m = re.match(r"socket:\[(\d+)\]$", os.readlink("/proc/%s/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m:
            owner[m.group(1)] = pid
for fam, path in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
    for line in open(path).readlines()[1:]:
        f = line.split()
        if f[3] != "0A" or f[9] not in owner:
            continue
        hexaddr, hexport = f[1].split(":")
        raw = b"".join(struct.pack("<I", int(hexaddr[i:i + 8], 16)) for i in range(0, len(hexaddr), 8))
        print(socket.inet_ntop(fam, raw), int(hexport, 16), owner[f[9]])
PY
}

export PS_SECRET; PS_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
t0=$(now_ms)
# A node silent for 5 s is dead (not 1 s): the fuzzer takes a core of two,
# and a stall that short is the scheduler's business, not this test's.
PS_HEARTBEAT_TIMEOUT_MS=${PS_HEARTBEAT_TIMEOUT_MS:-5000} \
  "$PS_BIN/psrun" -q -s 2 -w 3 --timeout "$JOB_S" -- "$PS_BIN/ps_kvtest" bsp --iters "$ITERS" \
  >"$TMP/job.log" 2>&1 &
JOB=$!

# Every node (1 + 2 + 3) up and listening on loopback.
ready() {
  NODE_PIDS=$(node_pids "$JOB")
  [ "$(echo $NODE_PIDS | wc -w)" -ge 6 ] || return 1
  listeners $NODE_PIDS >"$TMP/listeners.txt"
  for p in $NODE_PIDS; do
    grep -Eq "^(127\.0\.0\.1|0\.0\.0\.0|::) [0-9]+ $p\$" "$TMP/listeners.txt" || return 1
  done
}
wait_for 20 ready || fail "the job's 6 nodes did not all listen on loopback within 20 s"
pass "found $(wc -l <"$TMP/listeners.txt") listening ports of 6 nodes"
ports=$(awk '$1 ~ /^(127\.0\.0\.1|0\.0\.0\.0|::)$/ { printf "%s127.0.0.1:%s@%s", s, $2, $3; s = "," }' \
  "$TMP/listeners.txt")
skipped=$(awk '$1 !~ /^(127\.0\.0\.1|0\.0\.0\.0|::)$/ { printf " %s:%s", $1, $2 }' "$TMP/listeners.txt")
[ -n "$skipped" ] && echo "# not fuzzed (bound to non-loopback addresses):$skipped"

python3 "$FUZZ" --ports "$ports" --seconds "$SECONDS_FUZZ" --seed "$SEED" \
  --secret "$PS_SECRET" --job-pid "$JOB" >"$TMP/fuzz.out" 2>"$TMP/fuzz.log" &
PIDS+=($!)
wait_exit $! $((SECONDS_FUZZ + 20)); frc=$?
report=$(tail -n 1 "$TMP/fuzz.out")
[ "$frc" = 0 ] || [ "$frc" = 2 ] || fail "portfuzz.py (seed $SEED) exited $frc: $(tail -n 5 "$TMP/fuzz.log")"
summary=$(echo "$report" | python3 -c 'import json, sys
d = json.load(sys.stdin); t = d["totals"]
print("%d ports, %d connections, %d bytes, %d refused, %d resets, %d auth_refused, %d auth_ok%s"
      % (len(d["ports"]), t["connections"], t["bytes_sent"], t["refused"], t["resets"],
         t["auth_refused"], t["auth_ok"], ", job ended first" if d["job_ended"] else ""))') ||
  fail "portfuzz.py (seed $SEED) printed no report: $(tail -n 5 "$TMP/fuzz.out" "$TMP/fuzz.log")"
pass "portfuzz seed $SEED: $summary"

wait_exit "$JOB" $((JOB_S + 5)); rc=$?
JOB=
crash=$(grep -E 'Assertion|SIGSEGV|Segmentation fault|Aborted|crash|killed by signal' "$TMP/job.log" | head -n 5)
[ "$rc" = 0 ] || fail "the job under fuzzing (seed $SEED) exited $rc: $crash $(grep -E 'FAIL|ERROR|psrun:' "$TMP/job.log" | head -n 5)"
[ -z "$crash" ] || fail "a node crashed under fuzzing (seed $SEED): $crash"
grep -q 'FAIL' "$TMP/job.log" && fail "the job under fuzzing (seed $SEED): $(grep FAIL "$TMP/job.log" | head -n 3)"
got=$(grep -c 'PASS' "$TMP/job.log")
[ "$got" = 3 ] || fail "the job under fuzzing (seed $SEED): $got PASS lines, want 3"
pass "the job finished exactly under fuzzing (exit 0, 3 PASS) in $(( ($(now_ms) - t0) / 1000 )) s"

# A listener that stopped accepting while its node still ran is a finding
# the job's status cannot show; one whose node exited is the job's business.
alive_dead=$(grep '^DEAD .*alive)' "$TMP/fuzz.out")
[ -z "$alive_dead" ] || fail "a listener died in a live node (seed $SEED): $alive_dead"
# Every listener is a gate: a correct handshake completes (so the hostile
# frames went past it), and a wrong secret, a wrong proof or a replayed
# handshake is shut out; and a storm of idle connections does not stop it
# from accepting a new one.
verdict=$(echo "$report" | python3 "$FUZZ" --verdict) ||
  fail "portfuzz.py's report (seed $SEED) is not what this test reads: $report"
[ -z "$verdict" ] || fail "gate (seed $SEED): $verdict"
pass "every port is a gate that shuts out wrong secrets, bad proofs and replays, and accepts during idle storms; total $(( ($(now_ms) - t0) / 1000 )) s"

#!/usr/bin/env bash
# test_netfuzz.sh -- port fuzzing across hosts of the one-machine test bed
# (tests/netns/lib.sh), the multi-host twin of tests/integration/
# test_portfuzz.sh.  A cluster with a secret (PS_SECRET) runs BSP iterations
# of ps_kvtest: the scheduler on host 0, 2 servers on hosts 1-2, 3 workers on
# hosts 3-5, each on its own address.  From host 6, a namespace of its own,
# tests/tools/portfuzz.py --netns-ok (the only way it fuzzes an address that
# is not 127.0.0.1, and only inside a test bed namespace) throws hostile
# clients at EVERY TCP port any node listens on (found from /proc: each
# namespace's /proc/PID/net/tcp) and random, malformed, wrongly and rightly
# tagged but rejectable heartbeat datagrams at every UDP port bound there
# (the scheduler's heartbeat port, src/node/beat.h).  Checks:
#   - every node exits 0, every worker prints PASS (exact BSP sums), none
#     dies of a signal;
#   - no listener refuses connections while its node runs;
#   - every TCP listener is a gate: a handshake with the secret completes, a
#     wrong secret, a bad proof or a replayed handshake is shut out, and an
#     idle storm does not stop it from accepting;
#   - the scheduler answers no datagram of ours (a stranger gets nothing back).
# PS_FUZZ_SEED=N repeats a run; PS_FUZZ_SECONDS (18); PS_KEEP_LOGS=1 keeps
# the logs.  Prints "SKIP: ..." and exits 0 without root or namespaces.
# shellcheck disable=SC1091,SC2034,SC2154 # lib.sh reads NB_* and sets PID_*
. "$(dirname "$0")/lib.sh"
: "${PS_BIN:?PS_BIN must point at the build/bin folder}"
nb_require
command -v python3 >/dev/null || nb_skip "needs python3 (portfuzz.py)"

FUZZ=$(cd "$(dirname "$0")/.." && pwd)/tools/portfuzz.py
SECONDS_FUZZ=${PS_FUZZ_SECONDS:-18}
SEED=${PS_FUZZ_SEED:-$(( $(date +%s) % 100000 ))}
ITERS=${PS_FUZZ_ITERS:-8000}
# A node silent for 5 s is dead: the fuzzer takes a core of two.
export PS_HEARTBEAT_TIMEOUT_MS=${PS_HEARTBEAT_TIMEOUT_MS:-5000} PS_PID_DIR=$NB_TMP
NB_SCHED_HOST=0 NB_PORT=$(( 9400 + $$ % 500 )) NB_NS=2 NB_NW=3
HOSTS=7

fail() {
  echo "FAIL: $* (seed $SEED)"
  local f
  for f in "$NB_TMP"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f")"; grep -v '^{' "$f" | tail -n 10
  done | sed 's/^/    /'
  exit 1
}
pass() { echo "ok - $*"; }


t0=$(nb_now_ms)
nb_setup $HOSTS || fail "cannot build the test network"
node() { # NAME HOST ROLE RANK
  nb_node "$1" "$2" "$3" "$4" timeout -k 5 90 "$PS_BIN/ps_kvtest" bsp --iters "$ITERS"
}
node sched 0 scheduler 0
node s0 1 server 0; node s1 2 server 1
node w0 3 worker 0; node w1 4 worker 1; node w2 5 worker 2
NODES="sched s0 s1 w0 w1 w2"

nb_wait_for 30 nb_all_listen 0 1 2 3 4 5 || fail "the 6 nodes did not all listen within 30 s: $(tr '\n' ';' <"$NB_TMP/listeners.txt")"
nb_fuzz_targets; tports=$NB_TPORTS uports=$NB_UPORTS other=$NB_OTHER
[ -n "$other" ] && echo "# not fuzzed (not reachable from host 6):$other"
pass "found $(echo "$tports" | tr ',' '\n' | grep -c .) TCP and $(echo "$uports" | tr ',' '\n' | grep -c .) UDP ports of 6 nodes on 6 hosts"

nb_spawn fuzz 6 python3 "$FUZZ" --netns-ok --ports "$tports" ${uports:+--udp "$uports"} \
  --seconds "$SECONDS_FUZZ" --seed "$SEED" --secret "$NB_SECRET" --job-pid "$PID_sched"
nb_wait_exit "$PID_fuzz" $((SECONDS_FUZZ + 20)); frc=$?
grep -v '^{' "$NB_TMP/fuzz.log" | grep -v '^DEAD' | head -n 5
report=$(grep '^{' "$NB_TMP/fuzz.log" | tail -n 1)
[ "$frc" = 0 ] || [ "$frc" = 2 ] || fail "portfuzz.py exited $frc"
summary=$(echo "$report" | python3 -c 'import json, sys
d = json.load(sys.stdin); t = d["totals"]; u = d.get("udp_totals", {})
print("%d TCP ports, %d connections, %d bytes, %d refused, %d resets, %d auth_refused, %d auth_ok; "
      "%d UDP ports, %d datagrams%s" % (len(d["ports"]), t["connections"], t["bytes_sent"],
      t["refused"], t["resets"], t["auth_refused"], t["auth_ok"], len(d.get("udp", {})),
      u.get("datagrams", 0), ", job ended first" if d["job_ended"] else ""))') ||
  fail "portfuzz.py printed no report"
pass "portfuzz seed $SEED: $summary"

# NAME=STATUS for every node, within 60 s in all
line='' bad=''
end=$(( $(nb_now_ms) / 1000 + 60 ))
for n in $NODES; do
  left=$(( end - $(nb_now_ms) / 1000 )); [ $left -gt 0 ] || left=1
  nb_wait_exit "$(eval echo "\$PID_$n")" $left; rc=$?
  line="$line $n=$rc"; [ "$rc" = 0 ] || bad="$bad $n=$rc"
done
echo "exits:$line"
crash=$(grep -hE 'Assertion|SIGSEGV|Segmentation fault|Aborted|AddressSanitizer|runtime error' \
  "$NB_TMP"/{sched,s0,s1,w0,w1,w2}.log | head -n 5)
[ -z "$crash" ] || fail "a node crashed under fuzzing: $crash"
[ -z "$bad" ] || fail "nodes exited nonzero under fuzzing:$bad"
got=$(cat "$NB_TMP"/w[012].log | grep -c '^PASS')
cat "$NB_TMP"/w[012].log | grep -q '^FAIL' && fail "a worker failed: $(grep -h '^FAIL' "$NB_TMP"/w[012].log | head -n 3)"
[ "$got" = 3 ] || fail "$got PASS lines, want 3"
pass "the job finished exactly under fuzzing (every node exit 0, 3 PASS) in $(( ($(nb_now_ms) - t0) / 1000 )) s"

alive_dead=$(grep '^DEAD .*alive)' "$NB_TMP/fuzz.log")
[ -z "$alive_dead" ] || fail "a listener died in a live node: $alive_dead"
verdict=$(echo "$report" | python3 "$FUZZ" --verdict --want-udp) ||
  fail "portfuzz.py's report is not what this test reads: $report"
[ -z "$verdict" ] || fail "gate: $verdict"
pass "every TCP port is a gate (wrong secrets, bad proofs, replays shut out; accepts during idle storms), no datagram answered; total $(( ($(nb_now_ms) - t0) / 1000 )) s"

#!/usr/bin/env bash
# test_ssh.sh -- psrun --hostfile: a libps cluster started over real ssh
# across hosts of the one-machine test bed (tests/netns/lib.sh).
#
# Host 0 runs psrun; hosts 1..3 each run an sshd of their own (Debian
# openssh-server, /usr/sbin/sshd) on port 22 of their address, with a
# throwaway host key and an authorized client key in $NB_TMP, and nothing
# else.  Cases, in order:
#   job       a hostfile with roles, slots and comments puts the scheduler on
#             host 1, servers on host 2 and workers on hosts 3 and 2, as
#             round-robin says; each node sees its PS_* variables and the
#             secret; then ps_kvtest sum (2 servers + 3 workers): 6 PASS,
#             exit 0;
#   teardown  3 nodes on hosts 1..3 (a plain round-robin hostfile), psrun
#             killed mid-job with SIGTERM (exit 143) and with SIGKILL (the
#             guards see their stdin close): the secret is on no command
#             line of any host, and within 10 s no node process is left on
#             any host (--timeout takes SIGTERM's path: test_psrun.sh);
#   bad       a malformed hostfile, a missing --ssh-key (exit 2, nothing
#             started), a key the hosts refuse and an unreachable host (exit
#             255 naming the host, every node already started torn down).
# Root only (namespaces, sshd): prints "SKIP: ..." and exits 0 otherwise or
# without sshd.  Every process is killed on exit by lib.sh's trap; the
# whole test is bounded (< 120 s).
# shellcheck disable=SC1091
# The whole test, cleanup included, within 115 s times the build's scale
# (lib.sh's trap handles TERM;
# timeout signals our process group, so inner timeouts use --foreground).
[ -n "${SSH_TEST_BOUNDED:-}" ] || SSH_TEST_BOUNDED=1 exec timeout -k 5 $((115 * ${PS_TIMEOUT_SCALE:-1})) bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
: "${PS_BIN:?PS_BIN must point at the build/bin folder}"
nb_require
[ -x /usr/sbin/sshd ] || nb_skip "needs sshd (Debian: openssh-server)"
command -v ssh >/dev/null || nb_skip "needs ssh (Debian: openssh-client)"

PSRUN=$PS_BIN/psrun
MARK="ssh_test_$$_$RANDOM"
SLEEP=$NB_TMP/sleep_$MARK
ln -s "$(command -v sleep)" "$SLEEP"
export PS_HEARTBEAT_TIMEOUT_MS=1000
unset PS_SECRET PS_SECRET_FILE
CASE=setup

fail() { echo "FAIL: $CASE: $*"; [ -f "$NB_TMP/out" ] && sed 's/^/    /' "$NB_TMP/out" | tail -n 20; exit 1; }
pass() { echo "ok - $CASE: $* [$(( $(nb_now_ms) - T0 )) ms]"; }

# ---- the test bed: hosts 0..3, an sshd on each of 1..3 ----

setup_ssh() {
  ssh-keygen -q -t ed25519 -N '' -f "$NB_TMP/id" -C psrun-test || fail "ssh-keygen"
  ssh-keygen -q -t ed25519 -N '' -f "$NB_TMP/other" -C not-authorized || fail "ssh-keygen"
  ssh-keygen -q -t ed25519 -N '' -f "$NB_TMP/hostkey" || fail "ssh-keygen"
  cp "$NB_TMP/id.pub" "$NB_TMP/authorized_keys"
  mkdir -p /run/sshd # sshd's privilege-separation directory (Debian makes it at boot)
  local h
  for h in 1 2 3; do
    cat >"$NB_TMP/sshd_$h.conf" <<EOF
ListenAddress $(nb_addr "$h"):22
HostKey $NB_TMP/hostkey
AuthorizedKeysFile $NB_TMP/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
EOF
    nb_spawn "sshd$h" "$h" /usr/sbin/sshd -D -e -f "$NB_TMP/sshd_$h.conf"
  done
  for h in 1 2 3; do
    nb_wait_for 10 sshd_up "$h" || fail "sshd on host $h does not answer: $(tail -3 "$NB_TMP/sshd$h.log")"
  done
}
SSH_OPTS=(--ssh-opt StrictHostKeyChecking=no --ssh-opt UserKnownHostsFile=/dev/null --ssh-opt LogLevel=ERROR)
sshd_up() { nb_exec 0 timeout 2 bash -c "exec 3<>/dev/tcp/$(nb_addr "$1")/22" 2>/dev/null; }

# psrun_ssh ARGS...: psrun in host 0 with the test's key and ssh options,
# bounded; output in $NB_TMP/out, status in RC.
psrun_ssh() {
  nb_exec 0 timeout --foreground -k 5 60 "$PSRUN" -q --ssh-key "${KEY:-$NB_TMP/id}" "${SSH_OPTS[@]}" "$@" \
    >"$NB_TMP/out" 2>&1
  RC=$?
}

# Processes of this test's nodes on any host (by the marker in their command line).
marked() { pgrep -f -- "$MARK" | grep -v "^$$\$" ; }
none_marked() { [ -z "$(marked)" ]; }
count_marked() { [ "$(pgrep -c -f -- "^$SLEEP 60")" -ge "$1" ]; }

write_hostfile() {
  cat >"$NB_TMP/hosts" <<EOF
# the scheduler alone on host 1
$(nb_addr 1) role=scheduler
$(nb_addr 2)   slots=2 role=server   # both servers
$(nb_addr 3) role=worker
$(nb_addr 2) role=worker
EOF
  printf '%s\n' "$(nb_addr 1)" "$(nb_addr 2)" "$(nb_addr 3)" >"$NB_TMP/hosts3" # round-robin
}

# ---- cases ----

# One job: where each node ran, its PS_* and secret, then ps_kvtest sum.
case_job() {
  CASE=job
  psrun_ssh --hostfile "$NB_TMP/hosts" -s 2 -w 3 --timeout 50 -- sh -c \
    'echo "at $PS_ROLE $PS_RANK $(hostname -I | cut -d" " -f1) $PS_NUM_SERVERS $PS_NUM_WORKERS $PS_SCHEDULER ${PS_SECRET:+secret}"
     exec "$0" sum --keys 2000 --rounds 30' "$PS_BIN/ps_kvtest"
  [ "$RC" = 0 ] || fail "exit $RC: $(grep -E 'FAIL|ERROR|psrun' "$NB_TMP/out" | head -5)"
  local got want s
  s=$(nb_addr 1):PORT
  got=$(sed -n 's/^\[[a-z0-9 ]*\] \(at .*\)/\1/p' "$NB_TMP/out" | sort | sed -E 's/:[0-9]+ secret/:PORT secret/' | tr '\n' ';')
  want="at scheduler 0 $(nb_addr 1) 2 3 $s secret;"
  want+="at server 0 $(nb_addr 2) 2 3 $s secret;at server 1 $(nb_addr 2) 2 3 $s secret;"
  want+="at worker 0 $(nb_addr 3) 2 3 $s secret;at worker 1 $(nb_addr 2) 2 3 $s secret;"
  want+="at worker 2 $(nb_addr 3) 2 3 $s secret;"
  [ "$got" = "$want" ] || fail "placement: got '$got', want '$want'"
  grep -q FAIL "$NB_TMP/out" && fail "$(grep FAIL "$NB_TMP/out" | head -3)"
  [ "$(grep -c PASS "$NB_TMP/out")" = 6 ] || fail "$(grep -c PASS "$NB_TMP/out") PASS lines, want 6"
  pass "roles, slots and comments place 6 nodes on hosts 1, 2, 2, 3, 2, 3 with their PS_* and the secret; ps_kvtest sum: 6 PASS, exit 0"
}

# teardown SIG WANT: start a job of sleeping nodes, check that the secret is
# on no command line of any host, send psrun SIG,
# expect exit WANT (or any with "-"), then no node anywhere.
teardown() {
  CASE="teardown $1"
  local secret=s3cr3t-$RANDOM-$RANDOM
  PS_SECRET=$secret ip netns exec "$(nb_ns 0)" "$PSRUN" -q --ssh-key "$NB_TMP/id" "${SSH_OPTS[@]}" \
    --hostfile "$NB_TMP/hosts3" -s 1 -w 1 -- "$SLEEP" 60 >"$NB_TMP/out" 2>&1 &
  local pid=$! t0
  nb_wait_for 30 count_marked 3 || { kill -KILL "$pid"; fail "the 3 nodes did not start"; }
  printf '%s\n' "$secret" >"$NB_TMP/pattern" # not on grep's own command line
  if grep -l -a -F -f "$NB_TMP/pattern" /proc/[0-9]*/cmdline 2>/dev/null | grep -q .; then
    kill -KILL "$pid"; fail "the secret is on a command line: $(grep -l -a -F -f "$NB_TMP/pattern" /proc/[0-9]*/cmdline)"
  fi
  t0=$(nb_now_ms)
  kill "-$1" "$pid"
  nb_wait_for 25 sh -c "! kill -0 $pid 2>/dev/null" || { kill -KILL "$pid"; fail "psrun still running"; }
  wait "$pid"; RC=$?
  [ "$2" = - ] || [ "$RC" = "$2" ] || fail "exit $RC, want $2"
  nb_wait_for 10 none_marked || fail "processes left: $(marked | xargs -r ps -o pid=,args= -p)"
  pass "psrun exit $RC; every node on every host gone $(( $(nb_now_ms) - t0 )) ms after the stop; the secret was on no command line"
}

case_bad() {
  CASE=bad
  printf '%s slots=x\n' "$(nb_addr 1)" >"$NB_TMP/badhosts"
  psrun_ssh --hostfile "$NB_TMP/badhosts" -s 1 -w 1 -- "$SLEEP" 60
  [ "$RC" = 2 ] && grep -q "badhosts:1: slots must be 1..4096, got 'x'" "$NB_TMP/out" ||
    fail "malformed hostfile: exit $RC"
  printf '%s\n-oProxyCommand=x\n' "$(nb_addr 1)" >"$NB_TMP/badhosts"
  psrun_ssh --hostfile "$NB_TMP/badhosts" -s 1 -w 1 -- "$SLEEP" 60
  [ "$RC" = 2 ] && grep -q "badhosts:2: not a host name" "$NB_TMP/out" || fail "option as host: exit $RC"
  KEY=$NB_TMP/nokey psrun_ssh --hostfile "$NB_TMP/hosts" -s 1 -w 1 -- "$SLEEP" 60
  [ "$RC" = 2 ] && grep -q "ssh-key $NB_TMP/nokey: No such file" "$NB_TMP/out" || fail "missing key: exit $RC"
  none_marked || fail "a node started after bad input"
  pass "malformed hostfile, host like an option, missing key: exit 2 naming the problem, nothing started"

  KEY=$NB_TMP/other psrun_ssh --hostfile "$NB_TMP/hosts3" -s 1 -w 1 -- "$SLEEP" 60
  [ "$RC" = 255 ] && grep -q "ssh exited with status 255" "$NB_TMP/out" &&
    grep -q "Permission denied" "$NB_TMP/out" || fail "refused key: exit $RC"
  nb_wait_for 10 none_marked || fail "refused key: processes left: $(marked | xargs -r ps -o pid=,args= -p)"
  pass "a key the hosts refuse: exit 255, 'Permission denied' shown, nothing left"

  # Nodes on hosts 1 and 2 start; host .99 does not exist.
  printf '%s\n%s\n%s\n' "$(nb_addr 1)" "$(nb_addr 2)" "$(nb_addr 89)" >"$NB_TMP/hosts99"
  psrun_ssh --hostfile "$NB_TMP/hosts99" -s 1 -w 1 --ssh-opt ConnectTimeout=3 -- "$SLEEP" 60
  [ "$RC" = 255 ] && grep -q "worker 0 on $(nb_addr 89): ssh exited with status 255" "$NB_TMP/out" ||
    fail "unreachable host: exit $RC"
  nb_wait_for 10 none_marked || fail "unreachable host: processes left: $(marked | xargs -r ps -o pid=,args= -p)"
  pass "an unreachable host: exit 255 naming it, the nodes on the others torn down"
}

T0=$(nb_now_ms)
nb_setup 4 || fail "test bed"
setup_ssh
write_hostfile
case_job
teardown TERM 143
teardown KILL -
case_bad
echo "test_ssh: all checks passed"

#!/usr/bin/env bash
# test_slurm.sh -- psrun --slurm under a real SLURM on this machine.
#
# Starts munged, slurmctld and slurmd (Debian slurm-wlm, munge) as root with
# a one-node cluster whose every file is in $TMP: a fresh munge key and
# socket, slurm.conf (SLURM_CONF) with free ports, this machine's CPUs,
# proctrack/linuxproc and no cgroups, a partition that may be
# oversubscribed, a random first job id (psrun --slurm derives its port
# from the job id: two runs of this test at once must not share one).
# Then, through srun: the roles, ranks and one scheduler address of 6
# tasks; a real job (ps_kvtest sum, 2 servers + 3 workers) with the secret
# derived from the job id and a key file, checked by its PASS lines and
# exit status; a job with fewer tasks than 1 + S + W fails with a clear
# error before any node starts; a failing worker ends the step nonzero
# with no node left.  The daemons are started by pid and stopped by pid on
# every exit (trap).  Root only (slurmd runs jobs as their user): prints
# "SKIP: ..." and exits 0 otherwise, or when slurm-wlm or munge is not
# installed.  Installs nothing.
# The whole test, cleanup included, within 115 s (times the build's scale):
# timeout signals our process group, so the commands inside are bounded with
# --foreground (they stay in the group and get the signal too).
[ -n "${SLURM_TEST_BOUNDED:-}" ] || SLURM_TEST_BOUNDED=1 exec timeout -k 5 $((115 * ${PS_TIMEOUT_SCALE:-1})) bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
trap 'exit 143' TERM # so that the EXIT trap stops everything on timeout
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (slurmd)"; exit 0; }
for b in srun slurmctld slurmd munged; do
  command -v "$b" >/dev/null || { echo "SKIP: $b is not installed (Debian: slurm-wlm munge)"; exit 0; }
done

PSRUN=$PS_BIN/psrun
MARK="slurm_test_$$_$RANDOM"
SLEEP=$TMP/sleep_$MARK
ln -s "$(command -v sleep)" "$SLEEP"
DAEMONS=()
stop_daemons() {
  local p
  for p in "${DAEMONS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${DAEMONS[@]}"; do wait_for 5 sh -c "! kill -0 $p 2>/dev/null" || kill -KILL "$p" 2>/dev/null; done
  pkill -KILL -f -- "$SLEEP" 2>/dev/null
  # slurmstepd of our jobs, if any outlived slurmd: they name our spool dir
  pkill -KILL -f -- "slurmstepd.*$TMP" 2>/dev/null
  cleanup
}
trap stop_daemons EXIT
# slurmctld and slurmd log to files in $TMP; show them on failure
fail() { echo "FAIL: $*" >&2; for f in "$TMP"/*.log "$TMP"/out; do [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }; done >&2; exit 1; }

NODE=$(hostname -s)
CPUS=$(nproc)
export SLURM_CONF=$TMP/slurm.conf
mkdir -p "$TMP/state" "$TMP/spool" "$TMP/munge"
chmod 700 "$TMP/munge"

start_munge() {
  head -c 1024 /dev/urandom >"$TMP/munge/munge.key"
  chmod 600 "$TMP/munge/munge.key"
  munged --foreground --force --key-file="$TMP/munge/munge.key" --socket="$TMP/munge/munge.sock" \
    --pid-file="$TMP/munge/munged.pid" --log-file="$TMP/munged.log" \
    --seed-file="$TMP/munge/munged.seed" >/dev/null 2>&1 &
  DAEMONS+=($!)
  wait_for 10 test -S "$TMP/munge/munge.sock" || fail "munged did not start"
}

write_conf() {
  cat >"$SLURM_CONF" <<EOF
ClusterName=pstest$$
FirstJobId=$((RANDOM * 16 + 1000))
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/munge/munge.sock
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=pstest Nodes=$NODE Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:16
EOF
}

node_idle() { sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }

start_slurm() {
  slurmctld -D -i >"$TMP/slurmctld.out" 2>&1 &
  DAEMONS+=($!)
  slurmd -D -N "$NODE" >"$TMP/slurmd.out" 2>&1 &
  DAEMONS+=($!)
  wait_for 30 node_idle || fail "the node never became idle: $(sinfo 2>&1 | tail -2)"
}

# job N ARGS...: srun N tasks of psrun --slurm ARGS; output in $TMP/out, status in RC.
job() {
  local n=$1; shift
  timeout --foreground -k 5 $((40 * SCALE)) srun --overcommit --kill-on-bad-exit=1 -n "$n" -t 2 "$PSRUN" --slurm -q "$@" \
    >"$TMP/out" 2>&1
  RC=$?
}
no_leftovers() { ! pgrep -f -- "$SLEEP" >/dev/null; }

start_munge
write_conf
start_slurm
pass "munged, slurmctld and slurmd up: one node, $CPUS CPUs"

job 6 -s 2 --key-file "$TMP/key" -- sh -c 'echo "role $PS_ROLE $PS_RANK $PS_NUM_SERVERS $PS_NUM_WORKERS $PS_SCHEDULER"'
[ "$RC" = 0 ] || fail "roles: exit $RC"
got=$(grep -o 'role .*' "$TMP/out" | awk '{print $2, $3, $4, $5}' | sort | tr '\n' ';')
want="scheduler 0 2 3;server 0 2 3;server 1 2 3;worker 0 2 3;worker 1 2 3;worker 2 2 3;"
[ "$got" = "$want" ] || fail "roles: got '$got', want '$want'"
[ "$(grep -o 'role .*' "$TMP/out" | awk '{print $6}' | sort -u)" != "" ] &&
  [ "$(grep -o 'role .*' "$TMP/out" | awk '{print $6}' | sort -u | wc -l)" = 1 ] ||
  fail "roles: tasks disagree on PS_SCHEDULER"
grep -q "role scheduler 0 2 3 $NODE:[0-9]*\$" "$TMP/out" || fail "roles: the scheduler is not on $NODE"
pass "roles from SLURM_PROCID/SLURM_NTASKS; scheduler on the first host: $(grep -o "role scheduler.*" "$TMP/out" | awk '{print $6}')"

job 6 -s 2 --timeout 30 --key-file "$TMP/key" -- "$PS_BIN/ps_kvtest" sum --keys 2000 --rounds 30
[ "$RC" = 0 ] || fail "kvtest: exit $RC: $(grep -E 'FAIL|ERROR|psrun' "$TMP/out" | head -5)"
grep -q FAIL "$TMP/out" && fail "kvtest: $(grep FAIL "$TMP/out" | head -3)"
[ "$(grep -c PASS "$TMP/out")" = 6 ] || fail "kvtest: $(grep -c PASS "$TMP/out") PASS lines, want 6"
pass "ps_kvtest sum on 6 SLURM tasks, secret derived from the job id: 6 PASS, exit 0"

job 4 -s 2 -w 3 -- "$SLEEP" 30
[ "$RC" != 0 ] || fail "4 tasks for 6 nodes: exit 0"
grep -q 'the job has 4 task(s), but 1 scheduler + 2 server(s) + 3 worker(s) need exactly 6' "$TMP/out" ||
  fail "4 tasks for 6 nodes: no clear error"
wait_for 5 no_leftovers || fail "4 tasks for 6 nodes: nodes left running"
pass "an allocation smaller than 1 + S + W: exit $RC, clear error, nothing started"

t0=$(now_ms)
job 4 -s 1 -- sh -c '[ "$PS_ROLE" = worker ] && [ "$PS_RANK" = 1 ] && exit 3; exec "$0" 30' "$SLEEP"
[ "$RC" != 0 ] || fail "failing worker: exit 0"
[ $(( $(now_ms) - t0 )) -lt $((15000 * SCALE)) ] || fail "failing worker: the step outlived it by $(( $(now_ms) - t0 )) ms"
grep -q 'worker 1 exited with status 3' "$TMP/out" || fail "failing worker not named"
wait_for 10 no_leftovers || fail "failing worker: nodes left running"
pass "a failing worker (srun --kill-on-bad-exit): srun exits $RC in $(( $(now_ms) - t0 )) ms, no node left"

#!/usr/bin/env bash
# test_mpi.sh -- psrun --mpi under a real mpirun (Open MPI): one psrun per
# rank, each becoming one node (rank 0 the scheduler, 1..S servers, the rest
# workers), all on 127.0.0.1 because every rank is local.  Checks: the roles,
# ranks and one scheduler address every rank gets; a real job (ps_kvtest sum,
# 2 servers + 3 workers = 6 ranks) with a secret derived from a key file and
# the job id, and again with PS_SECRET given and -w explicit; a job with the
# wrong number of ranks fails on every rank before any node starts, and one
# whose worker fails ends nonzero with no node left; psrun --mpi outside
# mpirun says so.  Prints "SKIP: ..." and exits 0 when mpirun is absent.
# Every mpirun is bounded by timeout(1); leftovers are found by a marker.
# The whole test, cleanup included, within 115 s (times the build's scale):
# timeout signals our process group, so the commands inside are bounded with
# --foreground (they stay in the group and get the signal too).
[ -n "${MPI_TEST_BOUNDED:-}" ] || MPI_TEST_BOUNDED=1 exec timeout -k 5 $((115 * ${PS_TIMEOUT_SCALE:-1})) bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
trap 'exit 143' TERM # so that the EXIT trap stops everything on timeout
command -v mpirun >/dev/null || { echo "SKIP: mpirun is not installed (Debian: openmpi-bin)"; exit 0; }

PSRUN=$PS_BIN/psrun
MARK="mpi_test_$$_$RANDOM"
SLEEP=$TMP/sleep_$MARK
ln -s "$(command -v sleep)" "$SLEEP"
trap 'pkill -KILL -f -- "$SLEEP" 2>/dev/null; cleanup' EXIT
MPIRUN=(mpirun --oversubscribe --allow-run-as-root --mca btl "self,tcp")
LIMIT=$((60 * SCALE))

# mpi N ARGS...: psrun --mpi on N ranks, output in $TMP/out, status in RC.
mpi() {
  local n=$1; shift
  timeout --foreground -k 5 "$LIMIT" "${MPIRUN[@]}" -n "$n" "$PSRUN" --mpi -q --port "$(free_port)" "$@" \
    >"$TMP/out" 2>&1
  RC=$?
}
no_leftovers() { ! pgrep -f -- "$SLEEP" >/dev/null; }

# Roles: 1 scheduler, servers 0..1, workers 0..2, one scheduler address.
mpi 6 -s 2 --key-file "$TMP/key" -- sh -c 'echo "role $PS_ROLE $PS_RANK $PS_NUM_SERVERS $PS_NUM_WORKERS $PS_SCHEDULER"'
[ "$RC" = 0 ] || fail "roles: exit $RC: $(tail -5 "$TMP/out")"
got=$(grep -o 'role .*' "$TMP/out" | awk '{print $2, $3, $4, $5}' | sort | tr '\n' ';')
want="scheduler 0 2 3;server 0 2 3;server 1 2 3;worker 0 2 3;worker 1 2 3;worker 2 2 3;"
[ "$got" = "$want" ] || fail "roles: got '$got', want '$want'"
[ "$(grep -o 'role .*' "$TMP/out" | awk '{print $6}' | sort -u | wc -l)" = 1 ] ||
  fail "roles: ranks disagree on PS_SCHEDULER"
grep -q 'role scheduler 0 2 3 127\.0\.0\.1:' "$TMP/out" || fail "roles: scheduler not on 127.0.0.1"
[ "$(stat -c %a "$TMP/key")" = 600 ] || fail "the key file is not mode 600"
pass "roles and ranks from OMPI_COMM_WORLD_RANK/SIZE; key file made, mode 600"

# A real job with the derived secret (so every rank derived the same one).
mpi 6 -s 2 --timeout 50 --key-file "$TMP/key" -- "$PS_BIN/ps_kvtest" sum --keys 2000 --rounds 30
[ "$RC" = 0 ] || fail "kvtest: exit $RC: $(grep -E 'FAIL|ERROR|psrun' "$TMP/out" | head -5)"
[ "$(grep -c 'PASS' "$TMP/out")" = 6 ] || fail "kvtest: $(grep -c PASS "$TMP/out") PASS lines, want 6"
grep -q FAIL "$TMP/out" && fail "kvtest: $(grep FAIL "$TMP/out" | head -3)"
pass "ps_kvtest sum on 6 ranks, derived secret: 6 PASS, exit 0"

PS_SECRET=given-$RANDOM mpi 6 -s 2 -w 3 --timeout 50 -- "$PS_BIN/ps_kvtest" sum --keys 500 --rounds 10
[ "$RC" = 0 ] && [ "$(grep -c 'PASS' "$TMP/out")" = 6 ] || fail "kvtest with PS_SECRET: exit $RC"
pass "ps_kvtest sum with PS_SECRET given and -w 3: 6 PASS, exit 0"

# Too few ranks: every rank refuses before starting anything.
mpi 3 -s 2 -w 3 -- "$SLEEP" 30
[ "$RC" != 0 ] || fail "3 ranks for 6 nodes: exit 0"
grep -q 'the job has 3 task(s), but 1 scheduler + 2 server(s) + 3 worker(s) need exactly 6' "$TMP/out" ||
  fail "3 ranks for 6 nodes: no clear error: $(head -3 "$TMP/out")"
wait_for 5 no_leftovers || fail "3 ranks for 6 nodes: nodes left running"
mpi 3 -s 2 -- "$SLEEP" 30
grep -q 'need at least 4' "$TMP/out" || fail "3 ranks, -s 2: $(head -3 "$TMP/out")"
pass "too few ranks: exit $RC, clear error, nothing started"

# A worker that fails: nonzero, and no node left anywhere.
t0=$(now_ms)
mpi 4 -s 1 -- sh -c '[ "$PS_ROLE" = worker ] && [ "$PS_RANK" = 1 ] && exit 3; exec "$0" 30' "$SLEEP"
[ "$RC" != 0 ] || fail "failing worker: exit 0"
grep -q 'worker 1 exited with status 3' "$TMP/out" || fail "failing worker not named: $(head -5 "$TMP/out")"
[ $(( $(now_ms) - t0 )) -lt $((20000 * SCALE)) ] || fail "failing worker: took too long"
wait_for 5 no_leftovers || fail "failing worker: nodes left running"
pass "a failing worker: exit $RC, named, no node left"

out=$(env -u OMPI_COMM_WORLD_RANK -u PMI_RANK "$PSRUN" --mpi -s 1 -- true 2>&1); rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q 'start psrun --mpi with mpirun' || fail "outside mpirun: exit $rc: $out"
pass "psrun --mpi outside mpirun: exit 2, says why"

#!/usr/bin/env bash
# test_psrun.sh -- integration test of psrun, the local cluster launcher.
#
# Runs psrun with plain shell commands as the node program and checks: the
# environment every role gets (PS_ROLE, PS_RANK, PS_NUM_*, PS_SCHEDULER with
# a real port, --env, inherited variables), the "[role rank] " prefixes and
# stdout/stderr separation, partial and very long lines, exit-status
# propagation (worker, server, killed by a signal, command not found), the
# grace period, --timeout, SIGINT/SIGTERM to psrun, escalation to SIGKILL for
# nodes that ignore SIGTERM, children that nodes leave behind (even in their
# own session), and usage errors.  After every cluster that is
# killed it checks that no node process is left.
#
# Design: every node process that must die carries a marker unique to this run
# in its command line (a symlink to sleep named after the marker), so pgrep
# finds leftovers and nothing else.  Every psrun call is bounded by timeout(1)
# or by a deadline; conditions are polled with a deadline, never slept on.
# Needs PS_BIN (the build's bin directory).  Exits 1 if any check fails.
#
# The node scripts are single-quoted on purpose: they expand in the nodes.
# shellcheck disable=SC2016
set -u

PSRUN="${PS_BIN:?set PS_BIN to the bin directory of a build}/psrun"
[ -x "$PSRUN" ] || { echo "FAIL: $PSRUN is not built" >&2; exit 1; }

MARK="psrun_test_$$_${RANDOM}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/psrun_test.XXXXXX")
SLEEP="$TMP/sleep_$MARK"
ln -s "$(command -v sleep)" "$SLEEP"
FAILED=0

# kill_marked PATTERN: SIGKILL this run's processes whose command line matches.
kill_marked() {
    local pids
    pids=$(pgrep -f -- "$1")
    # shellcheck disable=SC2086 # one pid per word
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
}
cleanup() {
    kill_marked "$MARK"
    rm -rf "$TMP"
}
trap cleanup EXIT

pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; FAILED=$((FAILED + 1)); }
# check DESCRIPTION COMMAND...: pass if COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_for DEADLINE_S COMMAND...: poll COMMAND until it succeeds; 1 on timeout.
wait_for() {
    local end=$(( $(now_ms) + $1 * 1000 ))
    shift
    until "$@"; do
        [ "$(now_ms)" -ge "$end" ] && return 1
        sleep 0.05
    done
}

leftovers() { pgrep -f -- "$SLEEP" >/dev/null; }
no_leftovers() { ! leftovers; }
# Nodes are gone once psrun returns; allow a moment for the kernel to finish.
check_no_leftovers() {
    if wait_for 3 no_leftovers; then pass "$1: no node left"; else
        fail "$1: node processes left: $(pgrep -a -f -- "$SLEEP" | tr '\n' ';')"
        kill_marked "$SLEEP" # so later checks start clean
    fi
}

# run_psrun ARGS...: psrun bounded to 30 s, output in $TMP/out and $TMP/err,
# status in RC, duration in ELAPSED_MS.
run_psrun() {
    local t0
    t0=$(now_ms)
    timeout -k 5 30 "$PSRUN" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    ELAPSED_MS=$(( $(now_ms) - t0 ))
}

count() { grep -c -x -e "$1" "$2"; }
expect_rc() {
    if [ "$RC" = "$2" ]; then pass "$1: exit $2"; else
        fail "$1: exit $RC, want $2; stderr: $(head -c 2000 "$TMP/err")"
    fi
}
quick() { # quick DESCRIPTION MAX_MS
    if [ "$ELAPSED_MS" -lt "$2" ]; then pass "$1: took ${ELAPSED_MS} ms"; else
        fail "$1: took ${ELAPSED_MS} ms, want < $2"
    fi
}

valid_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ] && [ "$1" -le 65535 ]; }

test_env_and_prefix() {
    run_psrun -q -s 2 -w 3 -- sh -c \
        'echo "env $PS_ROLE $PS_RANK $PS_NUM_SERVERS $PS_NUM_WORKERS $PS_SCHEDULER"'
    expect_rc "env" 0
    check "env: 6 lines" [ "$(wc -l <"$TMP/out")" -eq 6 ]
    check "env: scheduler" [ "$(count '\[scheduler\] env scheduler 0 2 3 127\.0\.0\.1:[0-9]*' "$TMP/out")" -eq 1 ]
    local r
    for r in 0 1; do
        check "env: server $r" [ "$(count "\[server $r\] env server $r 2 3 127\.0\.0\.1:[0-9]*" "$TMP/out")" -eq 1 ]
    done
    for r in 0 1 2; do
        check "env: worker $r" [ "$(count "\[worker $r\] env worker $r 2 3 127\.0\.0\.1:[0-9]*" "$TMP/out")" -eq 1 ]
    done
    local addrs port
    addrs=$(awk '{print $NF}' "$TMP/out" | sort -u)
    check "env: one PS_SCHEDULER for all" [ "$(echo "$addrs" | wc -l)" -eq 1 ]
    port=${addrs##*:}
    check "env: port '$port' numeric > 0" valid_port "$port"
    check "env: -q prints nothing of psrun's own" [ ! -s "$TMP/err" ]
}

test_env_options() {
    PS_FAULT="drop=0.5" run_psrun -s 0 -w 1 --port 4242 --host 10.1.2.3 \
        --env FOO=bar --env 'BAZ=a b' -- sh -c 'echo "$PS_SCHEDULER|$FOO|$BAZ|$PS_FAULT"'
    expect_rc "env options" 0
    check "env options: --port/--host/--env/inherited" \
        [ "$(count '\[worker 0\] 10\.1\.2\.3:4242|bar|a b|drop=0\.5' "$TMP/out")" -eq 1 ]
    check "env options: status lines without -q" grep -q '^psrun: ' "$TMP/err"
}

test_streams() {
    run_psrun -q -s 1 -w 1 -- sh -c 'echo "out $PS_ROLE"; echo "err $PS_ROLE" >&2; printf "tail-$PS_ROLE"'
    expect_rc "streams" 0
    check "streams: stdout lines" [ "$(count '\[worker 0\] out worker' "$TMP/out")" -eq 1 ]
    check "streams: stderr lines" [ "$(count '\[server 0\] err server' "$TMP/err")" -eq 1 ]
    check "streams: no stderr in stdout" [ "$(grep -c err "$TMP/out")" -eq 0 ]
    check "streams: partial last line" [ "$(count '\[scheduler\] tail-scheduler' "$TMP/out")" -eq 1 ]
    run_psrun -q --no-prefix -s 0 -w 1 -- sh -c 'echo plain; printf end'
    check "streams: --no-prefix" [ "$(sort "$TMP/out" | tr '\n' ' ')" = "end end plain plain " ]
}

# long_lines FILE: how many lines are a prefix and more than 300000 zeros.
long_lines() { awk 'length > 300000 && /^\[[a-z0-9 ]*\] 0+$/' "$1" | wc -l; }

test_long_lines() {
    # 3 nodes each print a 300000-byte line in many small writes, then a short one.
    run_psrun -q -s 1 -w 1 -- sh -c 'i=0; while [ $i -lt 3000 ]; do
        printf "%0100d" 0; i=$((i + 1)); done; echo; echo short'
    expect_rc "long lines" 0
    check "long lines: 6 lines" [ "$(wc -l <"$TMP/out")" -eq 6 ]
    check "long lines: whole" [ "$(long_lines "$TMP/out")" -eq 3 ]
}

test_worker_failure() {
    run_psrun -q -s 1 -w 2 -- sh -c \
        '[ "$PS_ROLE" = worker ] && [ "$PS_RANK" = 1 ] && exit 3; exec "$0" 30' "$SLEEP"
    expect_rc "worker failure" 3
    quick "worker failure" 5000
    check "worker failure: named" grep -q 'worker 1 exited with status 3' "$TMP/err"
    check_no_leftovers "worker failure"
}

test_server_failure() {
    run_psrun -q -s 2 -w 2 -- sh -c '[ "$PS_ROLE" = server ] && [ "$PS_RANK" = 1 ] && exit 5; "$0" 30 & wait' "$SLEEP"
    expect_rc "server failure" 5
    quick "server failure" 5000
    check_no_leftovers "server failure"
}

test_killed_worker() {
    run_psrun -q -s 1 -w 1 -- sh -c '[ "$PS_ROLE" = worker ] && kill -KILL $$; exec "$0" 30' "$SLEEP"
    expect_rc "killed worker" 137
    check "killed worker: named" grep -q 'worker 0 was killed by signal 9' "$TMP/err"
    check_no_leftovers "killed worker"
}

test_not_found() {
    run_psrun -q -s 0 -w 1 -- "/nonexistent/$MARK"
    expect_rc "command not found" 127
    check "command not found: message" grep -q 'cannot run' "$TMP/err"
}

test_grace() {
    run_psrun -q -s 1 -w 2 -- sh -c '[ "$PS_ROLE" = worker ] && exit 0; sleep 0.2; exit 0'
    expect_rc "grace: servers exit 0 later" 0
    run_psrun -q -s 1 -w 1 --grace 0.3 -- sh -c '[ "$PS_ROLE" = worker ] && exit 0; exec "$0" 30' "$SLEEP"
    expect_rc "grace: servers outlive it" 1
    quick "grace: servers outlive it" 5000
    check_no_leftovers "grace"
    run_psrun -q -s 1 -w 1 -- sh -c '[ "$PS_ROLE" = worker ] && exit 0; exit 7'
    expect_rc "grace: server exits nonzero" 7
}

test_stragglers() {
    # Nodes exit 0 but leave children behind, one in its own session.
    run_psrun -q -s 1 -w 1 -- sh -c '"$0" 30 & setsid "$0" 31 & echo started' "$SLEEP"
    expect_rc "stragglers" 0
    check "stragglers: output" [ "$(grep -c started "$TMP/out")" -eq 3 ]
    quick "stragglers" 5000
    check_no_leftovers "stragglers"
}

test_timeout() {
    run_psrun -q -s 1 -w 2 --timeout 1 -- "$SLEEP" 30
    expect_rc "timeout" 124
    check "timeout: message" grep -q 'psrun: timeout after 1 s' "$TMP/err"
    quick "timeout" 5000
    check_no_leftovers "timeout"
    # Nodes (and their children) that ignore SIGTERM get SIGKILL 2 s later.
    run_psrun -q -s 1 -w 1 --timeout 0.5 -- sh -c 'trap "" TERM; "$0" 30 & wait' "$SLEEP"
    expect_rc "timeout, TERM ignored" 124
    check "timeout, TERM ignored: waited for SIGKILL" [ "$ELAPSED_MS" -ge 2400 ]
    quick "timeout, TERM ignored" 8000
    check_no_leftovers "timeout, TERM ignored"
}

count_nodes() { [ "$(pgrep -c -f -- "^$SLEEP 30")" -ge "$1" ]; }
psrun_gone() { ! kill -0 "$1" 2>/dev/null; }

# test_signal SIGNAL STATUS: signal psrun while its nodes (and their children,
# in the same process group) are running.
test_signal() {
    "$PSRUN" -q -s 1 -w 2 -- sh -c '"$0" 30 & wait' "$SLEEP" >"$TMP/out" 2>"$TMP/err" &
    local pid=$! rc
    if ! wait_for 10 count_nodes 4; then
        fail "$1: nodes did not start"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return
    fi
    kill "-$1" "$pid"
    if wait_for 10 psrun_gone "$pid"; then
        wait "$pid"
        rc=$?
        check "$1: exit $rc, want $2" [ "$rc" -eq "$2" ]
    else
        fail "$1: psrun still running"
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    check_no_leftovers "$1"
}

test_usage() {
    run_psrun --help
    expect_rc "--help" 0
    check "--help: usage on stdout" grep -q '^Usage: psrun' "$TMP/out"
    local args
    for args in "--bogus -s 1 -w 1 -- true" "-s 1 -w 1" "-s 1 -w 1 --" "-s 1 -w 1 true" \
        "-s 1 -- true" "-s 1 -w 0 -- true" "-s -1 -w 1 -- true" "-s 1 -w 1025 -- true" \
        "-s 1 -w x -- true" "-s 1 -w 1 --timeout -2 -- true" "-s 1 -w 1 --env X -- true" \
        "-s 1 -w 1 --port 70000 -- true" "-w" "-s 1 -w 1 --status a/b -- true"; do
        # shellcheck disable=SC2086 # split the arguments on purpose
        run_psrun $args
        expect_rc "usage error '$args'" 2
        check "usage error '$args': message" grep -q '^psrun: ' "$TMP/err"
    done
}

# --status: the scheduler serves its page where psrun says (PS_STATUS), and
# prints the address.
test_status_flag() {
    run_psrun -s 1 -w 1 --status 0 --env PS_LOG_LEVEL=warn -- "$PS_BIN/psdemo"
    expect_rc "--status 0" 0
    check "--status 0: the scheduler names its page" \
        grep -q '^\[scheduler\] status page at http://127\.0\.0\.1:[0-9]*/' "$TMP/out" "$TMP/err"
}

test_env_and_prefix
test_status_flag
test_env_options
test_streams
test_long_lines
test_worker_failure
test_server_failure
test_killed_worker
test_not_found
test_grace
test_stragglers
test_timeout
test_signal INT 130
test_signal TERM 143
test_usage

if [ "$FAILED" -ne 0 ]; then
    echo "test_psrun: $FAILED check(s) failed" >&2
    exit 1
fi
echo "test_psrun: all checks passed"

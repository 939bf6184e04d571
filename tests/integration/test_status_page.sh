#!/usr/bin/env bash
# The scheduler's status page as a person sees it.  A job (psrun -s 2 -w 2,
# ps_kvtest sum reporting its iteration with ps_report) runs with
# PS_STATUS=127.0.0.1:<port>: /status.json lists every node and the table
# and series of every worker; every /metrics line is a comment or a sample;
# headless Chromium's DOM of / has a row per node, the table and a chart
# with a line per worker for each series, and a screenshot is saved
# (STATUS_SHOT=FILE keeps a copy).  Then the guard and the errors: with
# PS_STATUS_AUTH=1 (what a page beyond loopback does) a request without the
# secret gets 401 and one with it 200; a page beyond loopback without a
# secret, a port in use and a malformed PS_STATUS each stop the scheduler
# with an error naming PS_STATUS; and a short job with the page on runs to
# its end and exits 0.  Chromium missing: its checks are skipped with a
# note.
. "$(dirname "$0")/lib.sh"
# the system's python starts in 0.1 s where a pyenv shim may take seconds
PY=$(command -v /usr/bin/python3 || command -v python3)
CHECK="$PY $PS_TESTS/tools/status_check.py"
DEADLINE=$((80 * SCALE))
START=$(date +%s)

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
JOB=
stop_job() { # SIGTERM psrun (it stops its nodes), bounded
  [ -n "$JOB" ] || return 0
  kill -TERM "$JOB" 2>/dev/null
  wait_exit "$JOB" 10 >/dev/null
  JOB=
}
trap 'stop_job; cleanup' EXIT

PS_STATUS=127.0.0.1:$PORT "$PS_BIN/psrun" -s 2 -w 2 --timeout "$DEADLINE" -- \
  "$PS_BIN/ps_kvtest" sum --keys 2000 --rounds 100000 --pace-ms 50 >"$TMP/job.log" 2>&1 &
JOB=$!
PIDS+=("$JOB")

wait_for $((40 * SCALE)) $CHECK json "$URL/status.json" 5 sum iteration progress 2>/dev/null ||
  { $CHECK json "$URL/status.json" 5 sum iteration progress; fail "the page never showed every node, the table and the series"; }
pass "status.json shows 5 nodes, table sum on every node, iteration and progress from both workers"

curl -sf "$URL/metrics" >"$TMP/metrics.txt" || fail "GET /metrics failed"
$CHECK metrics "$TMP/metrics.txt" || fail "/metrics does not parse"
grep -q '^libps_app_value{node="[0-9]*",role="worker",rank="0",series="iteration"} [0-9]' \
  "$TMP/metrics.txt" || fail "no iteration of worker 0 in /metrics"
pass "/metrics parses, with the workers' series"

code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/nope")
[ "$code" = 404 ] || fail "GET /nope: $code, want 404"

if command -v chromium >/dev/null; then
  chrome() { timeout $((40 * SCALE)) chromium --headless --no-sandbox --disable-gpu \
    --hide-scrollbars --user-data-dir="$TMP/chromium" "$@" 2>>"$TMP/chromium.log"; }
  chrome --dump-dom "$URL/" >"$TMP/dom.html" || fail "chromium --dump-dom failed"
  $CHECK dom "$TMP/dom.html" 5 sum iteration progress || fail "the DOM misses a node, the table or a chart"
  chrome --window-size=1280,900 --screenshot="$TMP/status.png" "$URL/" >/dev/null ||
    fail "chromium --screenshot failed"
  [ -s "$TMP/status.png" ] || fail "no screenshot"
  [ -n "${STATUS_SHOT:-}" ] && cp "$TMP/status.png" "$STATUS_SHOT"
  pass "headless Chromium: a row per node, the table, a chart per series with a line per worker; screenshot taken"
else
  echo "note - chromium is not installed: the DOM and screenshot checks did not run (apt-get install chromium)"
fi
stop_job

# ---- the guard and the errors: a lone scheduler each time -------------------------------------
SP=$(free_port) # the lone scheduler's port: only `authed` gets as far as binding it
sched() { # NAME ENV...: a scheduler of a 1+1 cluster that never forms, in the background
  local name=$1; shift
  env PS_ROLE=scheduler PS_SCHEDULER=127.0.0.1:$SP PS_NUM_SERVERS=1 PS_NUM_WORKERS=1 \
    PS_CONNECT_TIMEOUT_MS=$((30000 * SCALE)) "$@" "$PS_BIN/ps_testnode" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}
refused() { # NAME PATTERN: the scheduler exited nonzero, saying PATTERN
  local pid; eval "pid=\$PID_$1"
  wait_exit "$pid" $((15 * SCALE)); local rc=$?
  [ "$rc" != 0 ] && [ "$rc" != 255 ] || fail "$1: exit $rc, want a refusal"
  grep -q "$2" "$TMP/$1.log" || fail "$1: no '$2' in its log: $(tail -3 "$TMP/$1.log")"
}

P2=$(free_port)
sched authed PS_STATUS=127.0.0.1:$P2 PS_STATUS_AUTH=1 PS_SECRET=s3cret
wait_for $((15 * SCALE)) sh -c "curl -s -o /dev/null http://127.0.0.1:$P2/" || fail "no page on :$P2"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P2/status.json")
[ "$code" = 401 ] || fail "without the secret: $code, want 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -u x:wrong "http://127.0.0.1:$P2/status.json")
[ "$code" = 401 ] || fail "with a wrong secret: $code, want 401"
code=$(curl -s -o "$TMP/forming.json" -w '%{http_code}' -u anyone:s3cret "http://127.0.0.1:$P2/status.json")
[ "$code" = 200 ] || fail "with the secret: $code, want 200"
$PY -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["epoch"] == 0' "$TMP/forming.json" ||
  fail "a forming cluster's status.json: $(head -c 200 "$TMP/forming.json")"
pass "a page that needs the secret: 401 without it or with a wrong one, 200 with it"

sched inuse PS_STATUS=127.0.0.1:$P2
refused inuse "PS_STATUS=127.0.0.1:$P2: cannot listen there: Address already in use"
sched open PS_STATUS=10.255.255.1:$P2
refused open "PS_STATUS=10.255.255.1:$P2: the status page would be open beyond loopback"
sched badspec PS_STATUS=localhost
refused badspec 'PS_STATUS="localhost": expected host:port'
pass "a port in use, a page beyond loopback without a secret and a malformed PS_STATUS stop the scheduler"

# A job with the page on (port 0: any free one) runs to its end: the
# reporters and the page stop cleanly, its checks pass, it exits 0.
PS_STATUS=127.0.0.1:0 "$PS_BIN/psrun" -s 2 -w 2 --timeout $((40 * SCALE)) -- \
  "$PS_BIN/ps_kvtest" sum --keys 500 --rounds 40 --pace-ms 40 >"$TMP/short.log" 2>&1 ||
  fail "a short job with the page on: exit $? ($(grep -E 'FAIL|ERROR' "$TMP/short.log" | head -3))"
[ "$(grep -c PASS "$TMP/short.log")" = 4 ] || fail "a short job with the page on: not 4 PASS lines"
grep -q "status page at http://127.0.0.1:[1-9][0-9]*/" "$TMP/short.log" || fail "no URL logged for port 0"
pass "a job with the page on runs to its end and exits 0"

[ $(( $(date +%s) - START )) -lt "$DEADLINE" ] || fail "took over $DEADLINE s"

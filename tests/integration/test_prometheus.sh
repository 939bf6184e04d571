#!/usr/bin/env bash
# A real Prometheus scrapes the status page.  A job (psrun -s 2 -w 2,
# ps_kvtest sum with ps_report) runs with PS_STATUS=127.0.0.1:<port>; a
# Prometheus with its config and storage in $TMP scrapes /metrics every
# second; its HTTP API must return the job's series with their labels:
# libps_table_pushes_total of the table on both servers (> 0, labelled
# node/role/rank/table), libps_node_up for all 5 nodes, and the workers'
# libps_app_value{series="iteration"}.  Prometheus missing: a note, and the
# test passes without it (scripts/deps.sh installs it).
. "$(dirname "$0")/lib.sh"
PY=$(command -v /usr/bin/python3 || command -v python3) # a pyenv shim may take seconds
CHECK="$PY $PS_TESTS/tools/status_check.py"
DEADLINE=$((80 * SCALE))
START=$(date +%s)

if ! command -v prometheus >/dev/null; then
  echo "note - prometheus is not installed: nothing scraped (apt-get install prometheus)"
  exit 0
fi

PORT=$(free_port)
PPORT=$(free_port)
JOB= PROM=
stop_all() { # SIGTERM Prometheus and psrun (which stops its nodes), bounded
  for p in $PROM $JOB; do kill -TERM "$p" 2>/dev/null; done
  for p in $PROM $JOB; do wait_exit "$p" 10 >/dev/null; done
  JOB= PROM=
}
trap 'stop_all; cleanup' EXIT

PS_STATUS=127.0.0.1:$PORT "$PS_BIN/psrun" -s 2 -w 2 --timeout "$DEADLINE" -- \
  "$PS_BIN/ps_kvtest" sum --keys 2000 --rounds 100000 --pace-ms 50 >"$TMP/job.log" 2>&1 &
JOB=$!
PIDS+=("$JOB")

cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: libps
    static_configs:
      - targets: ['127.0.0.1:$PORT']
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" >"$TMP/prometheus.log" 2>&1 &
PROM=$!
PIDS+=("$PROM")

wait_for $((60 * SCALE)) $CHECK prom "http://127.0.0.1:$PPORT" 5 sum iteration >/dev/null 2>&1 || {
  $CHECK prom "http://127.0.0.1:$PPORT" 5 sum iteration
  fail "Prometheus never returned the job's series (its log: $(tail -2 "$TMP/prometheus.log"))"
}
$CHECK prom "http://127.0.0.1:$PPORT" 5 sum iteration || fail "the series went away"
pass "Prometheus scraped the page: pushes per server and table, 5 nodes up, the workers' iteration"
stop_all
[ $(( $(date +%s) - START )) -lt "$DEADLINE" ] || fail "took over $DEADLINE s"

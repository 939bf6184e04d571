# lib.sh -- helpers for the process-level integration tests (sourced).
#
# Every test starts real processes on 127.0.0.1, polls for conditions with a
# deadline instead of sleeping, and kills everything it started on exit
# (trap).  PS_BIN points at the build's bin/ folder (set by ctest).
set -u
: "${PS_BIN:?PS_BIN must point at the build/bin folder}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ps-it.XXXXXX")
PS_LIB_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd) # tests/tools
# Slow builds (ThreadSanitizer) multiply the tests' own deadlines by this.
SCALE=${PS_TIMEOUT_SCALE:-1}
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${PS_KEEP_LOGS:-}" ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done >&2; exit 1; }
pass() { echo "ok - $*"; }

# free_port: a TCP port on 127.0.0.1 that nothing uses right now, chosen
# below the kernel's ephemeral range (ip_local_port_range) so that the
# nodes' own listeners on port 0 can never take it before the scheduler binds.
free_port() { python3 "$PS_LIB_TOOLS/free_port.py"; }

# wait_for DEADLINE_S CMD...: poll CMD until it succeeds or the deadline passes.
wait_for() {
  local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
  until "$@"; do
    [ $(( $(date +%s%N) / 1000000 )) -ge $deadline ] && return 1
    sleep 0.05
  done
}

# start_node NAME ROLE RANK ARGS...: start NODE_BIN (default ps_testnode) in
# the background with the cluster's environment (SCHED, NS, NW must be set);
# log in $TMP/NAME.log; its pid in PID_NAME.
start_node() {
  local name=$1 role=$2 rank=$3; shift 3
  PS_ROLE=$role PS_RANK=$rank PS_SCHEDULER=127.0.0.1:$SCHED PS_NUM_SERVERS=$NS \
    PS_NUM_WORKERS=$NW "${NODE_BIN:-$PS_BIN/ps_testnode}" "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}

# exit status of a background pid, waiting at most DEADLINE_S seconds.
wait_exit() {
  local pid=$1 deadline=$2
  wait_for "$deadline" sh -c "! kill -0 $pid 2>/dev/null" || return 255
  wait "$pid"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

#!/usr/bin/env bash
# sketch.sh -- pssketch (apps/sketch), the CountMin sketch of the paper's
# third application, on the two real key streams of ../shared/DATA.md.
#
#   throughput: --eps 0.001 --delta 0.01 (2719 x 5 cells), --check, on
#     2 servers + 2 workers and on 1 server + 1 worker (the per-core figure:
#     one worker process streams, the server has the machine's other core),
#     REPEAT runs each, medians.  Streams: SUBTLEX (49.7M occurrences of
#     74,286 words, replayed shuffled) and flight routes (2.7M events, 3,394
#     routes, file order, replayed ROUTE_PASSES times so a run lasts long
#     enough to time).  underestimates: summed over every checked run (must
#     be 0); within_eps_pct: the lowest of them.
#   failover: --replicas 1 on 3 servers + 2 workers started by hand (psrun
#     would stop the job), heartbeat timeout HB_MS; when worker 0 has
#     streamed KILL_AT % of its SUBTLEX shard, server 1 gets SIGKILL.
#     recovery_ms: from the kill to the first push acknowledged after the
#     scheduler declared it dead (earliest worker, as bench/failover.sh);
#     acked_lost: acknowledged inserts missing from the sketch at the end
#     (the lowest row's mass below the acknowledged count), summed over
#     REPEAT runs, with applied_twice the other way.  A run in which a
#     server is declared dead before the kill (an overloaded machine starves
#     a process past the heartbeat timeout) is counted in false_deaths and
#     run again.
# Prints progress on stderr and ONE JSON line on stdout, with the 1-minute
# load average at the start and the end (the cores may be shared).  Bounded: every
# cluster has a deadline (psrun --timeout, or the waits below).
# Usage: bench/sketch.sh [BIN_DIR]   (default build/bin; data: scripts/data/fetch.sh flights subtlex)
#   env: REPEAT (3), ROUTE_PASSES (10), HB_MS (250), KILL_AT (30), BATCH (10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/bin}
rep=${REPEAT:-3} passes=${ROUTE_PASSES:-10} hb=${HB_MS:-250} kill_at=${KILL_AT:-30}
batch=${BATCH:-10000}
words=$root/data/cache/subtlex/words.tsv routes=$root/data/cache/flights/train.tsv
[ -x "$bin/pssketch" ] || { echo "sketch.sh: build first; no $bin/pssketch" >&2; exit 2; }
for f in "$words" "$routes"; do
  [ -s "$f" ] || { echo "sketch.sh: no $f (run scripts/data/fetch.sh flights subtlex)" >&2; exit 2; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ps-sketch.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP_LOGS:-}" ] && say "logs kept in $tmp" || rm -rf "$tmp"; }
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
say() { echo "sketch.sh: $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
jget() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
SK=(--eps 0.001 --delta 0.01 --batch "$batch" --json --progress 0)
load0=$(cut -d' ' -f1 /proc/loadavg) # the machine's load: other jobs share its cores

# tput S W ARGS...: one psrun job; prints its JSON summary
tput() {
  local s=$1 w=$2; shift 2
  timeout 300 "$bin/psrun" -s "$s" -w "$w" --timeout 280 -- "$bin/pssketch" "${SK[@]}" "$@" \
    >"$tmp/tput.log" 2>&1 || { say "psrun -s $s -w $w failed:"; tail -n 20 "$tmp/tput.log" >&2; exit 1; }
  sed -n 's/^\[worker 0\] \({"stream".*\)$/\1/p' "$tmp/tput.log"
}

under=0 within=100
declare -A rate
for stream in counts routes; do
  if [ $stream = counts ]; then args=(--input "$words" --format counts);
  else args=(--input "$routes" --format routes --passes "$passes"); fi
  for sw in "2 2" "1 1"; do
    runs=()
    for i in $(seq "$rep"); do
      js=$(tput $sw "${args[@]}" --check)
      runs+=("$(jget inserts_per_s <<<"$js")")
      under=$(( under + $(jget underestimates <<<"$js") ))
      within=$(python3 -c "print(min($within, $(jget within_eps_pct <<<"$js")))")
      [ "$(jget acked_lost <<<"$js")" = 0 ] && [ "$(jget applied_twice <<<"$js")" = 0 ] ||
        { say "$stream -s/-w $sw: row masses differ from the acknowledged inserts: $js"; exit 1; }
      say "$stream, servers/workers $sw, run $i: $(jget inserts_per_s <<<"$js") inserts/s, N $(jget N <<<"$js")"
    done
    rate[$stream.${sw// /x}]=$(printf '%s\n' "${runs[@]}" | median)
    echo "$js" >"$tmp/$stream.${sw// /x}.json"
  done
done

# free_port: a free port below the ephemeral range, so that no node's own
# listener (port 0) can take it before the scheduler binds (as lib.sh)
free_port() { python3 "$root/tests/tools/free_port.py"; }

# failover: nodes started by hand; server 1 killed mid-stream
export PS_HEARTBEAT_TIMEOUT_MS=$hb PS_RESEND_MS=${RESEND_MS:-100}
wait_grep() { # wait_grep SECONDS PATTERN FILE
  local end=$(( $(now_ms) + $1 * 1000 ))
  until grep -q "$2" "$3" 2>/dev/null; do
    [ "$(now_ms)" -lt $end ] || { say "timed out waiting for '$2' in $3"; tail -n 5 "$tmp"/f-*.log >&2; exit 1; }
    sleep 0.02
  done
}
# false_death PATTERN [EXCEPT]: the scheduler declared a node dead (other
# than EXCEPT): an overloaded machine starved it past the heartbeat timeout.
# Stops the run's nodes and returns 0 if so (the run is counted and redone).
false_death() {
  grep "$1" "$tmp/f-sched.log" 2>/dev/null | grep -qv -F "${2:-@none@}" || return 1
  say "a node was declared dead that was not killed (the machine is overloaded?):"
  grep -h 'declared dead\|did not run' "$tmp"/f-*.log | tail -n 3 >&2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  return 0
}
failover() {
  rm -f "$tmp"/f-*.log; pids=()
  local sched; sched=$(free_port)
  start() {
    PS_ROLE=$1 PS_RANK=$2 PS_SCHEDULER=127.0.0.1:$sched PS_NUM_SERVERS=3 PS_NUM_WORKERS=2 \
      "$bin/pssketch" "${SK[@]}" --progress 0.05 --replicas 1 --input "$words" --format counts \
      >"$tmp/f-$3.log" 2>&1 &
    pids+=($!)
    eval "pid_$3=$!"
  }
  start scheduler 0 sched
  for r in 0 1 2; do start server $r s$r; done
  for r in 0 1; do start worker $r w$r; done
  local end=$(( $(now_ms) + 120000 ))
  until awk -v k="$kill_at" '/inserts \(/ { p = $0; sub(/.*\(/, "", p); sub(/%.*/, "", p); if (p + 0 >= k) f = 1 } END { exit !f }' "$tmp/f-w0.log" 2>/dev/null; do
    [ "$(now_ms)" -lt $end ] || { say "worker 0 never reached $kill_at %"; tail -n 5 "$tmp"/f-*.log >&2; exit 1; }
    false_death 'declared dead' && return 1
    sleep 0.01
  done
  grep -q '(100%)' "$tmp/f-w0.log" && { say "the stream ended before the kill"; exit 1; }
  t_kill=$(now_ms); kill -9 "$pid_s1"; wait "$pid_s1" 2>/dev/null || true
  for n in sched s0 s2 w0 w1; do
    local p; p=$(eval echo \$pid_$n) end=$(( $(now_ms) + 150000 ))
    while kill -0 "$p" 2>/dev/null; do
      [ "$(now_ms)" -lt $end ] || { say "$n still running 150 s after the kill"; exit 1; }
      sleep 0.05
    done
    wait "$p" && continue
    local rc=$?
    false_death 'declared dead' 'server 1 (' && return 1
    say "$n exited $rc after the kill:"; tail -n 20 "$tmp/f-$n.log" >&2; exit 1
  done
  t_rec=$(awk '/^recovered/ {print $2}' "$tmp"/f-w*.log | sort -n | head -1)
  [ -n "$t_rec" ] || { say "no worker saw the death and a push after it"; exit 1; }
  sed -n 's/^\({"stream".*\)$/\1/p' "$tmp/f-w0.log" >"$tmp/failover.json"
}
lost=0 twice=0 recs=() false_deaths=0
for i in $(seq "$rep"); do
  # not in $(...): its pids and times stay in this shell
  until failover; do
    false_deaths=$(( false_deaths + 1 ))
    [ $false_deaths -le $(( 2 * rep )) ] || { say "too many false deaths: raise HB_MS"; exit 1; }
  done
  js=$(cat "$tmp/failover.json")
  recs+=($(( t_rec - t_kill )))
  lost=$(( lost + $(jget acked_lost <<<"$js") ))
  twice=$(( twice + $(jget applied_twice <<<"$js") ))
  [ "$(jget N <<<"$js")" = "$(jget acked <<<"$js")" ] || { say "failover: a push failed: $js"; exit 1; }
  say "failover run $i: recovery $(( t_rec - t_kill )) ms after the kill, acked_lost $(jget acked_lost <<<"$js"), twice $(jget applied_twice <<<"$js")"
done
rec=$(printf '%s\n' "${recs[@]}" | median)

c22=${rate[counts.2x2]} c11=${rate[counts.1x1]} r22=${rate[routes.2x2]} r11=${rate[routes.1x1]}
cj=$tmp/counts.2x2.json rj=$tmp/routes.2x2.json
printf '{"inserts_per_s": %.0f, "inserts_per_s_per_core": %.0f, "underestimates": %d, "within_eps_pct": %s, "acked_lost": %d, "applied_twice": %d, "recovery_ms": %s, "recovery_ms_runs": [%s], "heartbeat_ms": %d, "false_deaths": %d, "stream": "subtlex", "N": %s, "distinct_keys": %s, "eps": 0.001, "delta": 0.01, "width": %s, "depth": %s, "batch": %d, "cells_per_insert": %s, "max_error": %s, "routes_inserts_per_s": %.0f, "routes_inserts_per_s_per_core": %.0f, "routes_N": %s, "routes_distinct_keys": %s, "routes_cells_per_insert": %s, "routes_max_error": %s, "servers": 2, "workers": 2, "failover_servers": 3, "repeat": %d, "cores": %d, "loadavg_start": %s, "loadavg_end": %s}\n' \
  "$c22" "$c11" "$under" "$within" "$lost" "$twice" "$rec" "$(IFS=,; echo "${recs[*]}")" "$hb" "$false_deaths" \
  "$(jget N <"$cj")" "$(jget distinct_keys <"$cj")" "$(jget width <"$cj")" "$(jget depth <"$cj")" \
  "$batch" "$(jget cells_per_insert <"$cj")" "$(jget max_error <"$cj")" \
  "$r22" "$r11" "$(jget N <"$rj")" "$(jget distinct_keys <"$rj")" \
  "$(jget cells_per_insert <"$rj")" "$(jget max_error <"$rj")" "$rep" "$(nproc)" \
  "$load0" "$(cut -d' ' -f1 /proc/loadavg)"

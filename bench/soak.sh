#!/usr/bin/env bash
# bench/soak.sh -- a long replicated job under faults, kills and joins
# (issue 13 item 5).  What it does, exactly:
#
#   job      tests/apps/ps_failtest, table "ft" with replication k = 1: one
#            scheduler, 3 servers (ranks 0-2), 3 workers (ranks 0-2); each
#            worker adds 1 to its own 3000 keys per push, 8 pushes in
#            flight, for MINUTES minutes (--deaths 0 --joins 0 --before 20
#            --after <huge> --deadline-ms MINUTES*60000: it pushes until
#            its deadline, then pulls its keys and checks each one against
#            the pushes it saw acknowledged).  Every node runs with
#            PS_FAULT=SOAK_FAULT (drop/dup/delay; seed differs per node),
#            PS_HEARTBEAT_TIMEOUT_MS=HB_MS (1000), PS_RESEND_MS=200.
#   kills    once a minute (at 30 s into minute m, m = 0 .. MINUTES-1) the
#            oldest live server other than rank 0 gets SIGKILL; once the
#            scheduler has declared it dead, a new server is started
#            without PS_RANK (it joins the running cluster: ps_join streams
#            its share to it) and must print "join: success" within 60 s.
#            Server rank 0 is never killed: its RSS is the leak measure.
#            A kill waits for the previous join to have succeeded (with
#            k = 1 two overlapping failures may lose data by design).
#   worker   once, at 45 s into minute WORKER_MINUTE (0), worker 2 gets
#            SIGKILL; once it is declared dead a new worker joins (no PS_RANK): it
#            gets rank 2, hence the same keys, and pushes until the others'
#            deadline.  It runs with --keys 6000: keys 0-2999 are the dead
#            worker's (they also hold its pushes, a number the script cannot
#            know exactly, so they read above the new worker's count: its
#            "twice" must be exactly 3000), keys 3000-5999 are fresh and
#            must read exactly its acknowledged pushes.  So the job's
#            model grows by a third at the replacement (server 0 goes from
#            about 6000 to 8000 keys, and from then on gets larger pushes):
#            it happens in minute 0 by default, before the second minute
#            that rss_growth_pct compares the last one with, so that a
#            bigger model does not read as a leak (replaced mid-run, it
#            stepped server 0's RSS up by 0.2-0.4 MB, 2-4 points).
#   check    acked_lost / applied_twice: keys reading below / above the
#            pushes acknowledged, summed over the workers (for the
#            replacement: twice beyond its 3000 inherited keys); exact is
#            true when both are 0, no push failed and every surviving node
#            exited 0.  false_evictions: "declared dead" lines of the
#            scheduler about nodes that were not killed (matched by node
#            id; the scheduler logs at info level to name joiners' ids).
#   rss      every node's VmRSS each 5 s (/proc/PID/status of this script's
#            descendants with PS_ROLE in their environment):
#            rss_growth_pct = server rank 0's mean RSS in the last minute
#            over its mean in the second minute, minus 1, in percent (must
#            be under 10; null when MINUTES < 3); server_anon_growth_pct and
#            server_file_growth_pct the same for its anonymous and file-backed
#            parts (RssAnon, RssFile: heap, and code or libraries paged in);
#            max_server_rss_mb over every server sample.
#   netns    SOAK_NETNS=1 as root: the same job in the test bed of
#            tests/netns/lib.sh (hosts: 0 scheduler, 1-3 servers, 4-6
#            workers, 7 the replacement worker; a joining server takes the
#            host of the server just killed), SOAK_LOSS% (1) loss on every
#            host.  Otherwise everything runs on 127.0.0.1.
# Bounded: the nodes' own deadlines, and every wait here has a limit; the
# whole run ends within MINUTES + about 4 minutes.  Every process it started
# is killed by pid on exit (and, in netns mode, every process left in its
# namespaces).  Prints one JSON line; notes on stderr.
# Usage: bench/soak.sh [BIN_DIR]
#   env: MINUTES (10), HB_MS (1000), WORKER_MINUTE (0), SOAK_FAULT
#   ("drop=0.02,dup=0.05,delay=0.1,delay_ms=20"), SOAK_NETNS (0),
#   SOAK_LOSS (1), PS_KEEP_LOGS (keep the logs; their folder is printed)
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${PS_BIN:-$ROOT/build/bin}}
MINUTES=${MINUTES:-10} WORKER_MINUTE=${WORKER_MINUTE:-0} FAULT=${SOAK_FAULT:-drop=0.02,dup=0.05,delay=0.1,delay_ms=20}
export PS_HEARTBEAT_TIMEOUT_MS=${HB_MS:-1000} PS_RESEND_MS=${RESEND_MS:-200}
export PS_LOG_LEVEL=${PS_LOG_LEVEL:-info}
[ -x "$BIN/ps_failtest" ] || { echo "soak.sh: build first (make build); no $BIN/ps_failtest" >&2; exit 2; }
[ "$MINUTES" -ge 2 ] || { echo "soak.sh: MINUTES must be at least 2" >&2; exit 2; }
command -v python3 >/dev/null || { echo "soak.sh: needs python3 (the RSS sampler)" >&2; exit 2; }
note() { echo "soak.sh: $*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
NS=3 NW=3 KEYS=3000

PIDS=()
my_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${PS_KEEP_LOGS:-}" ]; then echo "soak.sh: logs kept in $D" >&2; else rm -rf "$D"; fi
}
NETNS=0
if [ "${SOAK_NETNS:-0}" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    note "SOAK_NETNS=1 needs root: running on 127.0.0.1 instead"
  else
    . "$ROOT/tests/netns/lib.sh"
    probe=$(nb_require 2>&1; echo rc=$?)
    if [[ "$probe" == *SKIP* ]]; then note "no test bed ($probe): running on 127.0.0.1"
    else NETNS=1; fi
  fi
fi
if [ $NETNS = 1 ]; then
  D=$NB_TMP
  trap 'rc=$?; my_cleanup; (exit $rc); nb_cleanup' EXIT
  nb_setup 8 || { note "cannot build the test network"; exit 1; }
  for h in $(seq 0 7); do nb_loss "$h" "${SOAK_LOSS:-1}"; done
  NB_SCHED_HOST=0 NB_PORT=9500 NB_NS=$NS NB_NW=$NW
else
  D=$(mktemp -d "${TMPDIR:-/tmp}/ps-soak.XXXXXX")
  trap my_cleanup EXIT
  SCHED=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
fi
trap 'exit 130' INT
trap 'exit 143' TERM
export PS_PID_DIR=$D

SEED=1
# spawn NAME HOST ROLE RANK ARGS...: a ps_failtest node (RANK "": it joins
# the running cluster); its pid (the node's own) in PID_NAME.
spawn() {
  local name=$1 h=$2 role=$3 rank=$4 pid; shift 4
  SEED=$((SEED + 1))
  if [ $NETNS = 1 ]; then
    PS_FAULT="$FAULT,seed=$SEED" nb_node "$name" "$h" "$role" "$rank" "$BIN/ps_failtest" --replication 1 "$@"
    pid=$(eval echo "\$PID_$name")
  else
    env -u PS_RANK PS_ROLE="$role" ${rank:+PS_RANK=$rank} PS_SCHEDULER=127.0.0.1:$SCHED \
      PS_NUM_SERVERS=$NS PS_NUM_WORKERS=$NW PS_SECRET="$SECRET" PS_FAULT="$FAULT,seed=$SEED" \
      "$BIN/ps_failtest" --replication 1 "$@" >"$D/$name.log" 2>&1 &
    pid=$!; eval "PID_$name=$pid"
  fi
  PIDS+=("$pid")
}
pid_of() { eval echo "\$PID_$1"; }
alive() { kill -0 "$(pid_of "$1")" 2>/dev/null; }
# wait_grep SECONDS PATTERN FILE
wait_grep() {
  local end=$(( $(now_ms) + $1 * 1000 ))
  until grep -q "$2" "$3" 2>/dev/null; do [ "$(now_ms)" -lt $end ] || return 1; sleep 0.1; done
}
# declared ID: the scheduler declared node ID dead
declared() { grep -q "(node $1 at [^)]*) declared dead: silent" "$D/sched.log"; }
wait_declared() {
  local end=$(( $(now_ms) + $2 * 1000 ))
  until declared "$1"; do [ "$(now_ms)" -lt $end ] || return 1; sleep 0.05; done
}

# RSS sampler: every 5 s, "ms pid role rank rss_kb" for each libps node
# among this script's descendants.
python3 "$ROOT/bench/tools/rss_sampler.py" $$ 5 "$D/rss.txt" &
PIDS+=($!); SAMPLER=$!

# ---- the cluster ----
WARGS=(--keys $KEYS --before 20 --after 1000000000 --deaths 0 --joins 0)
T0=$(now_ms)
DEADLINE_MS=$((MINUTES * 60000))
spawn sched 0 scheduler 0 "${WARGS[@]}"
for r in 0 1 2; do spawn "s$r" $((1 + r)) server "$r" "${WARGS[@]}"; done
for r in 0 1 2; do spawn "w$r" $((4 + r)) worker "$r" "${WARGS[@]}" --deadline-ms $DEADLINE_MS; done
for r in 0 1 2; do
  wait_grep 60 '^phaseA' "$D/w$r.log" || { note "worker $r never finished phase A: $(tail -n 3 "$D/w$r.log" | tr '\n' ' ')"; exit 1; }
done
TW=$(now_ms) # the workers' deadlines run from about here
note "cluster up after $((TW - T0)) ms; soaking for $MINUTES min"

declare -A HOST_OF=([s1]=2 [s2]=3) ID_OF=([s1]=2 [s2]=3)
LIVE=(s1 s2)   # killable servers, oldest first (s0 is never killed)
KILLED_IDS=" "
kills=0 joins=0 join_fail=0 nj=0 wreplaced=0 join_ms=()
at() { # at SECONDS: sleep until TW + SECONDS (false if the workers are done)
  local t=$((TW + $1 * 1000))
  while [ "$(now_ms)" -lt $t ]; do
    alive w0 || return 1
    sleep 0.5
  done
}
for m in $(seq 0 $((MINUTES - 1))); do
  at $((m * 60 + 30)) || { note "minute $m: the workers ended early"; break; }
  if [ "$join_fail" -gt 0 ] || [ ${#LIVE[@]} = 0 ]; then note "minute $m: no kill (an earlier join failed)"; continue; fi
  v=${LIVE[0]}; LIVE=("${LIVE[@]:1}")
  kill -9 "$(pid_of "$v")" 2>/dev/null || note "minute $m: $v was already gone"
  t_kill=$(now_ms); kills=$((kills + 1)); KILLED_IDS="$KILLED_IDS${ID_OF[$v]} "
  if ! wait_declared "${ID_OF[$v]}" 20; then
    note "minute $m: $v (node ${ID_OF[$v]}) not declared dead within 20 s: no join"; join_fail=1; continue
  fi
  nj=$((nj + 1)); j=j$nj
  spawn "$j" "${HOST_OF[$v]}" server "" "${WARGS[@]}"
  if wait_grep 60 '^join: ' "$D/$j.log" && grep -q '^join: success' "$D/$j.log"; then
    joins=$((joins + 1)); join_ms+=($(sed -n 's/^join: success in \([0-9]*\) ms/\1/p' "$D/$j.log"))
    # its rank (pid file) and so its node id (the scheduler's log)
    jr=$(grep -lx "$(pid_of "$j")" "$D"/server.*.pid 2>/dev/null | sed 's/.*server\.\([0-9]*\)\.pid/\1/' | head -n 1)
    jid=$(sed -n "s/.*server $jr joined the running cluster from .* as node \([0-9]*\),.*/\1/p" "$D/sched.log" | tail -n 1)
    [ -n "$jid" ] || note "minute $m: cannot find $j's node id (rank ${jr:-?})"
    ID_OF[$j]=${jid:-0}; HOST_OF[$j]=${HOST_OF[$v]}; LIVE+=("$j")
    note "minute $m: killed $v (node ${ID_OF[$v]}), $j joined as server $jr (node ${jid:-?}) in ${join_ms[-1]} ms"
  else
    join_fail=1; note "minute $m: $j did not join: $(grep -v INFO "$D/$j.log" | tail -n 3 | tr '\n' ' ')"
  fi
  if [ "$m" = "$WORKER_MINUTE" ] && [ $wreplaced = 0 ]; then
    at $((m * 60 + 45)) || continue
    kill -9 "$PID_w2"; wreplaced=1; KILLED_IDS="$KILLED_IDS$((1 + NS + 2)) "
    if wait_declared $((1 + NS + 2)) 20; then
      left_ms=$(( TW + DEADLINE_MS - $(now_ms) ))
      spawn wr 7 worker "" --keys $((2 * KEYS)) --before 20 --after 1000000000 --deaths 0 \
        --joins 0 --deadline-ms $left_ms
      wait_grep 60 '^join: ' "$D/wr.log" || note "the new worker did not join: $(tail -n 3 "$D/wr.log" | tr '\n' ' ')"
      note "minute $m: worker 2 killed and replaced: $(grep '^join:' "$D/wr.log")"
    else
      note "minute $m: worker 2 not declared dead within 20 s: not replaced"; wreplaced=2
    fi
  fi
done

# ---- the end: results, exits ----
WORKERS="w0 w1"; [ $wreplaced = 1 ] && WORKERS="$WORKERS wr"
[ $wreplaced = 0 ] && WORKERS="$WORKERS w2"
for w in $WORKERS; do
  wait_grep $(( (TW + DEADLINE_MS - $(now_ms)) / 1000 + 120 )) '^result' "$D/$w.log" ||
    note "$w printed no result: $(grep -v INFO "$D/$w.log" | tail -n 3 | tr '\n' ' ')"
done
end=$(( $(now_ms) + 90000 )) bad=0
NODES="sched s0 $WORKERS ${LIVE[*]}"
for n in $NODES; do
  p=$(pid_of "$n")
  while kill -0 "$p" 2>/dev/null && [ "$(now_ms)" -lt $end ]; do sleep 0.2; done
  if kill -0 "$p" 2>/dev/null; then note "$n still running 90 s after the results"; bad=$((bad + 1)); continue; fi
  wait "$p"; rc=$?
  [ $rc = 0 ] || [ $n = wr ] || { note "$n exited $rc: $(grep -v INFO "$D/$n.log" | tail -n 2 | tr '\n' ' ')"; bad=$((bad + 1)); }
  [ $n = wr ] && [ $rc != 0 ] && [ $rc != 1 ] && { note "wr exited $rc"; bad=$((bad + 1)); }
done
kill "$SAMPLER" 2>/dev/null

field() { sed -n "s/^result.* $2=\([0-9]*\).*/\1/p" "$D/$1.log"; }
lost=0 twice=0 failed=0 acked=0 missing=0
for w in $WORKERS; do
  l=$(field "$w" lost) t=$(field "$w" twice) f=$(field "$w" failed) a=$(field "$w" acked)
  [ -n "$l" ] || { missing=$((missing + 1)); continue; }
  if [ $w = wr ]; then
    [ "$t" = $KEYS ] || note "the replacement worker: $t keys above its count, want exactly the $KEYS inherited ones"
    t=$(( t > KEYS ? t - KEYS : KEYS - t ))
  fi
  lost=$((lost + l)) twice=$((twice + t)) failed=$((failed + f)) acked=$((acked + a))
  note "$w: $(grep '^result' "$D/$w.log")"
done
false=0
while read -r id; do
  case "$KILLED_IDS" in *" $id "*) ;; *) false=$((false + 1)) ;; esac
done < <(sed -n 's/.*(node \([0-9]*\) at [^)]*) declared dead: silent.*/\1/p' "$D/sched.log")
[ "$false" -gt 0 ] && note "false evictions: $(grep 'declared dead: silent' "$D/sched.log" | tr '\n' ';')"
exact=false
[ $lost = 0 ] && [ $twice = 0 ] && [ $failed = 0 ] && [ $missing = 0 ] && [ $bad = 0 ] && exact=true

# RSS: server rank 0 (pid PID_s0), minute 2 vs the last minute
read -r growth s0_2 s0_last maxsrv sched_g w0_g anon_g file_g < <(awk -v p="$PID_s0" -v ps="$PID_sched" -v pw="$PID_w0" \
  -v t0="$TW" -v M="$MINUTES" '
  function win(t) { m = int((t - t0) / 60000); return m == 1 ? 2 : (m == M - 1 ? 9 : 0) }
  { w = win($1) }
  $3 == "server" && $5 > mx { mx = $5 }
  $2 == p  && w == 2 { a2 += $5; n2++ }  $2 == p  && w == 9 { a9 += $5; n9++ }
  $2 == ps && w == 2 { b2 += $5; m2++ }  $2 == ps && w == 9 { b9 += $5; m9++ }
  $2 == pw && w == 2 { c2 += $5; k2++ }  $2 == pw && w == 9 { c9 += $5; k9++ }
  $2 == p  && w == 2 { d2 += $6; f2 += $7 }  $2 == p  && w == 9 { d9 += $6; f9 += $7 }
  END {
    g = (n2 && n9 && M >= 3) ? sprintf("%.1f", (a9 / n9) / (a2 / n2) * 100 - 100) : "null"
    gs = (m2 && m9 && M >= 3) ? sprintf("%.1f", (b9 / m9) / (b2 / m2) * 100 - 100) : "null"
    gw = (k2 && k9 && M >= 3) ? sprintf("%.1f", (c9 / k9) / (c2 / k2) * 100 - 100) : "null"
    ga = (n2 && n9 && M >= 3 && d2) ? sprintf("%.1f", (d9 / n9) / (d2 / n2) * 100 - 100) : "null"
    gf = (n2 && n9 && M >= 3 && f2) ? sprintf("%.1f", (f9 / n9) / (f2 / n2) * 100 - 100) : "null"
    printf "%s %.1f %.1f %.1f %s %s %s %s\n", g, n2 ? a2 / n2 / 1024 : 0, n9 ? a9 / n9 / 1024 : 0, mx / 1024, gs, gw, ga, gf
  }' "$D/rss.txt")
note "server 0 RSS: minute 2 mean $s0_2 MB, last minute $s0_last MB ($growth%: anonymous $anon_g%, file-backed $file_g%); scheduler $sched_g%, worker 0 $w0_g%; $(wc -l <"$D/rss.txt") samples"
note "joins took ms: ${join_ms[*]:-none}; logs $(du -sh "$D" | cut -f1)"

printf '{"minutes":%d,"kills":%d,"joins":%d,"acked_lost":%d,"applied_twice":%d,"false_evictions":%d,"rss_growth_pct":%s,"max_server_rss_mb":%s,"worker_replaced":%s,"failed_pushes":%d,"acked_pushes":%d,"exact":%s,"bad_exits":%d,"scheduler_rss_growth_pct":%s,"worker0_rss_growth_pct":%s,"server_anon_growth_pct":%s,"server_file_growth_pct":%s,"netns":%s,"fault":"%s","hb_timeout_ms":%d}\n' \
  "$MINUTES" "$kills" "$joins" "$lost" "$twice" "$false" "$growth" "$maxsrv" \
  "$([ $wreplaced = 1 ] && echo true || echo false)" "$failed" "$acked" "$exact" "$bad" "$sched_g" "$w0_g" "$anon_g" "$file_g" \
  "$([ $NETNS = 1 ] && echo true || echo false)" "$FAULT" "$PS_HEARTBEAT_TIMEOUT_MS"

#!/usr/bin/env bash
# bench/evictions.sh -- does the cluster evict healthy nodes (issue 13)?
#
# Counts FALSE evictions: scheduler lines "declared dead: silent for N ms"
# about nodes that were not killed, over RUNS runs (default 20) of each
# scenario; every run is bounded in time (timeout + psrun --timeout, or the
# run's own deadline), and a run that fails is counted as a job failure
# (reported apart from evictions):
#   storm    psrun -s 1 -w 1 -- psbench --op push --keys 1000 --val-len 64
#            --iters 20000 --inflight 4096 (a worker flooding its server);
#            the server's VmRSS is sampled every 200 ms (/proc/PID/status of
#            the processes among psrun's descendants whose /proc/PID/environ
#            has PS_ROLE=server): storm_max_server_rss_mb is the largest
#            sample over all runs.
#   loss     root only (else skipped with a note, values null): the netns
#            test bed of tests/netns/lib.sh (one namespace and address per
#            node, a bridge), LOSS% (1) packet loss in and out of EVERY host
#            by nftables; a ps_failtest job with 3 servers and 2 workers
#            (k = 1, 3000 keys each, 40 + 200 pushes, no kill): every key
#            must read exactly the pushes acknowledged (PASS), else a job
#            failure.
#   startup  psrun -s STARTUP_S -w STARTUP_W (60 + 60 + the scheduler = 121
#            processes on this machine's cores) -- ps_testnode --barriers 5;
#            a failure unless every process printed "finalized: success".
#   detect   a ps_failtest job (3 servers, 2 workers, k = 1) on 127.0.0.1;
#            after the workers' first 40 pushes server 1 gets SIGKILL;
#            detect_ms is from the kill (wall clock just before kill(1)) to
#            the timestamp of the scheduler's "declared dead" line about it;
#            it must stay within 2 x PS_HEARTBEAT_TIMEOUT_MS.  Evictions of
#            other nodes in these runs are false ones too
#            (detect_false_evictions).
# Prints one JSON line; notes (every eviction and failure, with the log
# line) go to stderr.  Usage: bench/evictions.sh [BIN_DIR]
#   env: RUNS (20), HB_MS (PS_HEARTBEAT_TIMEOUT_MS, default 1000), LOSS (1),
#        STARTUP_S / STARTUP_W (60 / 60), SCENARIOS ("storm loss startup
#        detect"; the others' values are null), PS_KEEP_LOGS (keep the logs
#        of failed or evicting runs: their folder is printed; the loss runs
#        log at PS_LOG_LEVEL=info unless it is set).
# Every process is started by this script (or by psrun, which never leaves
# a node running) and killed by pid on exit.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${PS_BIN:-$ROOT/build/bin}}
RUNS=${RUNS:-20} LOSS=${LOSS:-1} SCENARIOS=${SCENARIOS:-storm loss startup detect}
STARTUP_S=${STARTUP_S:-60} STARTUP_W=${STARTUP_W:-60}
export PS_HEARTBEAT_TIMEOUT_MS=${HB_MS:-${PS_HEARTBEAT_TIMEOUT_MS:-1000}}
HB=$PS_HEARTBEAT_TIMEOUT_MS
for b in psrun psbench ps_testnode ps_failtest; do
  [ -x "$BIN/$b" ] || { echo "evictions.sh: build first (make build); no $BIN/$b" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "evictions.sh: needs python3 (the RSS sampler)" >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/ps-evict.XXXXXX")
KEEP=$T/kept
PIDS=()
my_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${PS_KEEP_LOGS:-}" ] && [ -d "$KEEP" ]; then
    echo "evictions.sh: logs of failed or evicting runs kept in $KEEP" >&2
    find "$T" -mindepth 1 -maxdepth 1 ! -name kept -exec rm -rf {} +
  else rm -rf "$T"; fi
}
trap my_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
note() { echo "evictions.sh: $*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
keep() { # keep NAME FILES...: keep a failed run's logs (PS_KEEP_LOGS)
  [ -n "${PS_KEEP_LOGS:-}" ] || return 0
  local d=$KEEP/$1; shift; mkdir -p "$d"; cp "$@" "$d/" 2>/dev/null
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
evictions() { grep -c 'declared dead: silent' "$@" 2>/dev/null | awk -F: '{s += $NF} END {print s + 0}'; }
evicted_lines() { grep -ho '[a-z]* [0-9]* (node [0-9]* at [^)]*) declared dead: silent for [0-9]* ms' "$@" | tr '\n' ';'; }

# sampler ROOTPID INTERVAL_S OUT: in the background, every INTERVAL_S until
# ROOTPID is gone, one line "ms pid role rank rss_kb anon_kb file_kb" per libps node among
# ROOTPID's descendants (PS_ROLE in /proc/PID/environ; rank "-" without
# PS_RANK).  Its pid in SAMPLER.
sampler() {
  python3 "$ROOT/bench/tools/rss_sampler.py" "$@" &
  SAMPLER=$!; PIDS+=($SAMPLER)
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; else print "null"}'; }
T_START=$(now_ms)

# ---- storm ----
storm_runs=0 storm_ev=0 storm_fail=0 storm_rss=null storm_walls=()
if want storm; then
  rss_max=0
  for i in $(seq "$RUNS"); do
    log=$T/storm.$i.log t0=$(now_ms)
    timeout -k 5 130 "$BIN/psrun" -s 1 -w 1 --timeout 120 -- "$BIN/psbench" --op push --keys 1000 \
      --val-len 64 --iters 20000 --inflight 4096 --progress 0 >"$log" 2>&1 &
    pr=$!; PIDS+=($pr)
    sampler "$pr" 0.2 "$T/storm.$i.rss"
    wait "$pr"; rc=$?
    wait "$SAMPLER" 2>/dev/null
    storm_walls+=($(( $(now_ms) - t0 )))
    storm_runs=$((storm_runs + 1))
    e=$(evictions "$log"); storm_ev=$((storm_ev + e))
    m=$(awk '$3 == "server" && $5 > m {m = $5} END {print m + 0}' "$T/storm.$i.rss")
    [ "$m" -gt "$rss_max" ] && rss_max=$m
    [ "$e" -gt 0 ] && note "storm run $i: $e eviction(s): $(evicted_lines "$log")"
    if [ "$rc" != 0 ]; then
      storm_fail=$((storm_fail + 1))
      note "storm run $i: psrun exited $rc: $(grep -v '^psrun' "$log" | grep -Ev 'progress|WARN (connection to node 0|cannot reach the scheduler)' | tail -n 3 | tr '\n' ' ')"
    fi
    [ "$rc" != 0 ] || [ "$e" -gt 0 ] && keep "storm.$i" "$log" "$T/storm.$i.rss"
    rm -f "$log" "$T/storm.$i.rss"
  done
  storm_rss=$(awk -v k="$rss_max" 'BEGIN {printf "%.1f", k / 1024}')
  note "storm: $storm_runs runs, wall ms median $(printf '%s\n' "${storm_walls[@]}" | median), $storm_ev eviction(s), $storm_fail failure(s), server max RSS $storm_rss MB"
fi

# ---- startup ----
startup_runs=0 startup_ev=0 startup_fail=0 startup_procs=$((1 + STARTUP_S + STARTUP_W)) startup_walls=()
if want startup; then
  for i in $(seq "$RUNS"); do
    log=$T/startup.$i.log t0=$(now_ms)
    timeout -k 5 130 "$BIN/psrun" -s "$STARTUP_S" -w "$STARTUP_W" --timeout 120 -- \
      "$BIN/ps_testnode" --barriers 5 >"$log" 2>&1 &
    pr=$!; PIDS+=($pr)
    wait "$pr"; rc=$?
    startup_walls+=($(( $(now_ms) - t0 )))
    startup_runs=$((startup_runs + 1))
    e=$(evictions "$log"); startup_ev=$((startup_ev + e))
    fin=$(grep -c 'finalized: success' "$log")
    [ "$e" -gt 0 ] && note "startup run $i: $e eviction(s): $(evicted_lines "$log")"
    if [ "$rc" != 0 ] || [ "$fin" != "$startup_procs" ]; then
      startup_fail=$((startup_fail + 1))
      note "startup run $i: psrun exited $rc, $fin of $startup_procs finalized: $(grep -E 'ERROR|FAIL|psrun:' "$log" | tail -n 3 | tr '\n' ' ')"
    fi
    [ "$rc" != 0 ] || [ "$e" -gt 0 ] || [ "$fin" != "$startup_procs" ] && keep "startup.$i" "$log"
    rm -f "$log"
  done
  note "startup: $startup_runs runs of $startup_procs processes, wall ms median $(printf '%s\n' "${startup_walls[@]}" | median), $startup_ev eviction(s), $startup_fail failure(s)"
fi

# ---- detect: kill -9 a server, time to "declared dead" ----
detect_runs=0 detect_max=null detect_fail=0 detect_false=0 detect_all=()
if want detect; then
  export PS_RESEND_MS=${RESEND_MS:-200}
  for i in $(seq "$RUNS"); do
    d=$T/detect.$i; mkdir -p "$d"
    sched=$(port); names=(sched s0 s1 s2 w0 w1); pids=()
    dstart() {
      PS_ROLE=$1 PS_RANK=$2 PS_SCHEDULER=127.0.0.1:$sched PS_NUM_SERVERS=3 PS_NUM_WORKERS=2 \
        PS_PID_DIR=$d timeout -k 5 90 "$BIN/ps_failtest" --keys 3000 --before 40 --after 60 \
        --replication 1 --deadline-ms 60000 >"$d/$3.log" 2>&1 &
      pids+=($!); PIDS+=($!)
    }
    dstart scheduler 0 sched; for r in 0 1 2; do dstart server $r s$r; done
    for r in 0 1; do dstart worker $r w$r; done
    end=$(( $(now_ms) + 60000 )) ok=0
    until grep -q '^phaseA' "$d/w0.log" 2>/dev/null && [ -s "$d/server.1.pid" ]; do
      [ "$(now_ms)" -lt $end ] || break; sleep 0.02
    done
    if grep -q '^phaseA' "$d/w0.log" && [ -s "$d/server.1.pid" ]; then
      spid=$(cat "$d/server.1.pid")
      t_kill=$(date +%s%3N)
      kill -9 "$spid" 2>/dev/null && ok=1
    fi
    [ $ok = 1 ] || note "detect run $i: no kill (phaseA or server 1's pid never came, or it was gone)"
    # wait for every node but the killed one (each under timeout 90)
    for k in 0 1 3 4 5; do
      p=${pids[$k]}; e2=$(( $(now_ms) + 90000 ))
      while kill -0 "$p" 2>/dev/null && [ "$(now_ms)" -lt $e2 ]; do sleep 0.05; done
    done
    frc=0
    for k in 0 1 3 4 5; do wait "${pids[$k]}"; rc=$?; [ $rc = 0 ] || { frc=1; note "detect run $i: ${names[$k]} exited $rc"; }; done
    kill -9 "${pids[2]}" 2>/dev/null; wait "${pids[2]}" 2>/dev/null
    line=$(grep -m1 'server 1 (node 2 at [^)]*) declared dead: silent' "$d/sched.log")
    detect_runs=$((detect_runs + 1))
    if [ $ok = 1 ] && [ -n "$line" ]; then
      hms=$(echo "$line" | grep -o '^[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9][0-9][0-9]')
      t_dead=$(date -d "$(date -d "@$((t_kill / 1000))" +%F) $hms" +%s%3N)
      [ $((t_dead - t_kill)) -lt -43200000 ] && t_dead=$((t_dead + 86400000)) # midnight
      detect_all+=($((t_dead - t_kill)))
    elif [ $ok = 1 ]; then
      note "detect run $i: server 1 was never declared dead"; frc=1
    fi
    e=$(evictions "$d/sched.log"); [ -n "$line" ] && e=$((e - 1))
    detect_false=$((detect_false + e))
    [ "$e" -gt 0 ] && note "detect run $i: $e false eviction(s): $(evicted_lines "$d/sched.log")"
    grep -q '^PASS' "$d/w0.log" && grep -q '^PASS' "$d/w1.log" || { frc=1; note "detect run $i: $(grep -hE '^(result|FAIL)' "$d"/w*.log | tr '\n' ' ')"; }
    [ $ok = 1 ] || frc=1
    detect_fail=$((detect_fail + frc))
    [ $frc = 1 ] || [ "$e" -gt 0 ] && keep "detect.$i" "$d"/*.log
    rm -rf "$d"
  done
  if [ ${#detect_all[@]} -gt 0 ]; then
    detect_max=$(printf '%s\n' "${detect_all[@]}" | sort -n | tail -n 1)
  fi
  note "detect: $detect_runs runs, kill to declared dead ms: ${detect_all[*]:-none} (max $detect_max, limit $((2 * HB))); $detect_false false eviction(s), $detect_fail failure(s)"
fi

# ---- loss: the netns test bed, LOSS% on every host ----
loss_runs=null loss_ev=null loss_fail=null
if want loss; then
  if [ "$(id -u)" != 0 ]; then
    note "loss: skipped, needs root (network namespaces)"
  else
    . "$ROOT/tests/netns/lib.sh"
    # lib.sh's trap deletes the namespaces; ours kills our pids first
    trap 'rc=$?; my_cleanup; (exit $rc); nb_cleanup' EXIT
    probe=$(nb_require 2>&1; echo rc=$?)
    if [[ "$probe" == *SKIP* ]]; then
      note "loss: skipped: $probe"
    elif ! nb_setup 6; then
      note "loss: cannot build the test network"
    else
      loss_runs=0 loss_ev=0 loss_fail=0
      for h in 0 1 2 3 4 5; do nb_loss "$h" "$LOSS"; done
      NB_SCHED_HOST=0 NB_PORT=9400 NB_NS=3 NB_NW=2
      export PS_RESEND_MS=${RESEND_MS:-200} PS_LOG_LEVEL=${PS_LOG_LEVEL:-info} # kept logs say when each node joined
      for i in $(seq "$RUNS"); do
        NB_PORT=$((NB_PORT + 1)); rm -f "$NB_TMP"/*.log
        lnode() { nb_node "$1" "$2" "$3" "$4" timeout -k 5 90 "$BIN/ps_failtest" --keys 3000 \
                    --before 40 --after 200 --deaths 0 --replication 1 --deadline-ms 75000; }
        lnode sched 0 scheduler 0
        for r in 0 1 2; do lnode "s$r" $((1 + r)) server "$r"; done
        for r in 0 1; do lnode "w$r" $((4 + r)) worker "$r"; done
        frc=0
        for n in sched s0 s1 s2 w0 w1; do
          nb_wait_exit "$(eval echo "\$PID_$n")" 100; rc=$?
          [ $rc = 0 ] || { frc=1; note "loss run $i: $n exited $rc"; }
        done
        grep -q '^PASS' "$NB_TMP/w0.log" && grep -q '^PASS' "$NB_TMP/w1.log" ||
          { frc=1; note "loss run $i: $(grep -hE '^(result|FAIL)' "$NB_TMP"/w*.log | tr '\n' ' ')"; }
        nb_kill_all
        e=$(evictions "$NB_TMP/sched.log")
        loss_runs=$((loss_runs + 1)) loss_ev=$((loss_ev + e)) loss_fail=$((loss_fail + frc))
        [ "$e" -gt 0 ] && note "loss run $i: $e eviction(s): $(evicted_lines "$NB_TMP/sched.log")"
        [ $frc = 1 ] || [ "$e" -gt 0 ] && keep "loss.$i" "$NB_TMP"/*.log
      done
      for h in 0 1 2 3 4 5; do nb_loss "$h" 0; done
      note "loss: $loss_runs runs at $LOSS% loss on every host, $loss_ev eviction(s), $loss_fail failure(s)"
    fi
  fi
fi

[ "$detect_max" != null ] && within=$([ "$detect_max" -le $((2 * HB)) ] && echo true || echo false) || within=null
printf '{"storm_runs":%s,"storm_false_evictions":%s,"storm_max_server_rss_mb":%s,"loss_runs":%s,"loss_false_evictions":%s,"startup_runs":%s,"startup_processes":%s,"startup_false_evictions":%s,"detect_runs":%s,"detect_ms_max":%s,"hb_timeout_ms":%s,"detect_within_2x":%s,"detect_false_evictions":%s,"job_failures":{"storm":%s,"loss":%s,"startup":%s,"detect":%s},"loss_pct":%s,"wall_s":%d}\n' \
  "$(want storm && echo $storm_runs || echo null)" "$(want storm && echo $storm_ev || echo null)" "$storm_rss" \
  "$loss_runs" "$loss_ev" \
  "$(want startup && echo $startup_runs || echo null)" "$(want startup && echo $startup_procs || echo null)" "$(want startup && echo $startup_ev || echo null)" \
  "$(want detect && echo $detect_runs || echo null)" "$detect_max" "$HB" "$within" "$(want detect && echo $detect_false || echo null)" \
  "$(want storm && echo $storm_fail || echo null)" "$loss_fail" "$(want startup && echo $startup_fail || echo null)" "$(want detect && echo $detect_fail || echo null)" \
  "$LOSS" $(( ($(now_ms) - T_START) / 1000 ))

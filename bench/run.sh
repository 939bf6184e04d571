#!/usr/bin/env bash
# bench/run.sh -- the psbench benchmark matrix in one invocation.
#
# For each transport setting it measures, in this same run, the limits UCX
# itself reaches on this machine (ucx_perftest tag_lat and tag_bw, server and
# client on 127.0.0.1) and then libps under `psrun -s 1 -w 1` unless said
# otherwise: the round-trip latency of a one-value pushpull, the bandwidth of
# 10 MiB pushes (1 key x 2621440 f32) with one and with four requests in
# flight, copied into the library's buffers (the default) and sent from the
# caller's array (psbench --zero-copy, ps_task_opts.zero_copy), and of 10 MiB
# pulls; the key rate of 1M random-key pushes into the servers' hash table
# and its bytes per key; the key rates of 100k random keys handed over
# unsorted, pushed and pulled, with the same list every time (the library's
# memo of sorted lists answers) and in 16 orders in turn (every request
# sorts); 1M random keys pushed to 2 servers (psrun -s 2); and 100k-key
# pushes from 2 workers at once (psrun -w 2: the total and each worker's
# rate).  The targets are those of issue 14.  The settings:
#   tcp      libps's default transport (src/net/tcp.c: authenticated TCP)
#            against ucx_perftest with UCX_TLS=tcp UCX_NET_DEVICES=lo.
#   sealed   the same with PS_ENCRYPT=1 (every byte through XChaCha20-
#            Poly1305); ucx_perftest's tcp numbers are reused.
#   ucx-tcp  PS_TRANSPORT=ucx with UCX_TLS=tcp UCX_NET_DEVICES=lo for both
#            libps and ucx_perftest (tcp's perftest numbers reused).
#   default  PS_TRANSPORT=ucx, UCX_TLS, UCX_NET_DEVICES and PS_SHM unset.  Not
#            the same wire for both: libps turns on peer error handling, so
#            UCX 1.13 leaves shared memory out and libps runs over TCP, while
#            ucx_perftest (no error handling) uses shared memory.
#   shm      as default, plus PS_SHM=1 for psbench, which lets libps's UCX
#            use shared memory too; ucx_perftest is the same as in default,
#            so its default-setting numbers are reused, not measured again.
# It prints a Markdown table with the ratios to the targets on stdout, and
# keeps every raw line (perftest output, psbench JSON, server storage
# lines, logs) under bench/results/<UTC time>/.
#
# Design: every command runs under `timeout`, with a limit no larger than
# what is left of the whole run's budget (BENCH_BUDGET seconds, default
# 1800), so the script always ends; a step that no longer fits is reported as
# skipped.  Processes the script starts in the background (perftest
# servers) are remembered by PID and killed by PID on exit; psrun kills its
# own cluster when `timeout` stops it.  Benchmarks run one at a time.
#
# Every measurement runs BENCH_REPEAT times (default 3) and the run with the
# median value is reported; all values are listed under the table, because
# on a small shared machine single runs are noisy.  Runs during which other
# processes used more than BENCH_QUIET_MAX percent (default 10) of the CPU
# are marked, repeated (up to BENCH_TRIES runs, default 2 x BENCH_REPEAT)
# and kept out of the median when undisturbed runs exist.
#
# Environment: PS_BIN (default build/bin) holds psrun and psbench;
# BENCH_BUDGET; BENCH_REPEAT; BENCH_QUIET_MAX; BENCH_TRIES; BENCH_OUT
# (default bench/results/<time>);
# BENCH_SETTINGS (default "tcp sealed ucx-tcp"; sealed and ucx-tcp reuse
# tcp's ucx_perftest numbers and shm reuses default's
# ucx_perftest numbers only when default ran first); BENCH_KEYS_SETTINGS
# (default "tcp": the settings that also get the key-rate rows, the 100k,
# 1M-on-2-servers and 2-worker ones, which exercise sorting and the
# servers' hash tables more than the wire).
# Never: kill a process by name, or leave a process it started running.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PS_BIN:-$ROOT/build/bin}
BUDGET=${BENCH_BUDGET:-1800}
REPEAT=${BENCH_REPEAT:-3}
QUIET_MAX=${BENCH_QUIET_MAX:-10}
TRIES=${BENCH_TRIES:-$((2 * REPEAT))}
SETTINGS=${BENCH_SETTINGS:-tcp sealed ucx-tcp}
KEYS_SETTINGS=${BENCH_KEYS_SETTINGS:-tcp}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
START=$SECONDS
PIDS=()
QRUNS=()
DRUNS=()
ALL=""
OTHER=0
NS=1 # servers and workers of the next psbench runs
NW=1
ROWS=()
declare -A PT_CACHE PTALL_CACHE
NOTES=()
BUSY=()

die() { echo "run.sh: $*" >&2; exit 1; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Seconds this step may take: min(want, what is left of the budget), or 0.
limit() {
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 10)); then echo 0; elif (($1 < left)); then echo "$1"; else echo "$left"; fi
}

# `env` arguments for a transport setting (PS_SHM only matters to libps).
setting_env() {
    case $1 in
    tcp) echo "-u PS_SHM -u PS_ENCRYPT PS_TRANSPORT=tcp UCX_TLS=tcp UCX_NET_DEVICES=lo" ;;
    sealed) echo "-u PS_SHM PS_ENCRYPT=1 PS_TRANSPORT=tcp UCX_TLS=tcp UCX_NET_DEVICES=lo" ;;
    ucx-tcp) echo "-u PS_SHM -u PS_ENCRYPT PS_TRANSPORT=ucx UCX_TLS=tcp UCX_NET_DEVICES=lo" ;;
    default) echo "-u PS_SHM -u PS_ENCRYPT PS_TRANSPORT=ucx -u UCX_TLS -u UCX_NET_DEVICES" ;;
    shm) echo "-u UCX_TLS -u UCX_NET_DEVICES -u PS_ENCRYPT PS_TRANSPORT=ucx PS_SHM=1" ;;
    esac
}

setting_label() {
    case $1 in
    tcp) echo "libps tcp (default transport) vs perftest UCX_TLS=tcp" ;;
    sealed) echo "libps tcp + PS_ENCRYPT=1 vs perftest UCX_TLS=tcp" ;;
    ucx-tcp) echo "PS_TRANSPORT=ucx UCX_TLS=tcp UCX_NET_DEVICES=lo" ;;
    default) echo "PS_TRANSPORT=ucx default (UCX_TLS, PS_SHM unset: libps on TCP, perftest on shm)" ;;
    shm) echo "PS_TRANSPORT=ucx PS_SHM=1 (UCX_TLS unset: libps and perftest on shm)" ;;
    esac
}

# The setting whose ucx_perftest runs stand for this one: PS_SHM does not
# change ucx_perftest, so shm reuses default's.
perftest_setting() {
    case $1 in shm) echo default ;; sealed | ucx-tcp) echo tcp ;; *) echo "$1" ;; esac
}

# CPU time used by OTHER processes while one of our commands ran, in percent
# of all cores: cpu_mark before the command, cpu_other after it (once the
# command and everything it started has been waited for).  Other = the
# machine's busy time (/proc/stat) less what this shell's reaped children
# used (cutime + cstime of /proc/$$/stat: psrun reaps its nodes, timeout
# reaps psrun or ucx_perftest, this shell reaps timeout).  Both count in
# clock ticks.  A run during which others used more than QUIET_MAX percent
# is "disturbed": it is listed with a * and left out of the median when at
# least one undisturbed run exists, and it is run again (at most TRIES runs
# in all, while the budget lasts) until REPEAT runs were undisturbed.
cpu_mark() {
    M_STAT=$(head -1 /proc/stat)
    M_CHILD=$(awk '{print $16 + $17}' "/proc/$$/stat")
}

cpu_other() {
    local b c
    b=$(head -1 /proc/stat)
    c=$(awk '{print $16 + $17}' "/proc/$$/stat")
    awk -v a="$M_STAT" -v b="$b" -v dc="$((c - M_CHILD))" 'BEGIN {
        n = split(a, x); split(b, y); t = 0
        for (i = 2; i <= 9 && i <= n; i++) t += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        o = t > 0 ? 100 * (t - idle - dc) / t : 0
        printf "%.0f", (o < 0 ? 0 : o) }'
}

# ---- ports ---------------------------------------------------------------------

# Whether TCP port $1 appears in any socket of this host.
port_used() {
    local hex
    hex=$(printf ':%04X ' "$1")
    grep -q "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

port_listening() {
    awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" && $4 == "0A" {f = 1} END {exit !f}' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        port_used "$p" || { echo "$p"; return 0; }
    done
    echo "run.sh: no free TCP port found in 20000..32000" >&2
    return 1
}

# ---- ucx_perftest -----------------------------------------------------------------

# perftest SETTING NAME ARGS...: run a server and a client; the client's
# output goes to $OUT/perftest-SETTING-NAME.txt.  Sets PT to the numbers of
# its final line: iterations p50 avg overall bw_avg bw_overall mr_avg
# mr_overall (latency: half round trip in us; bandwidth: MB/s = 2^20 B/s).
# Called directly, never in $(...), so PIDS and NOTES stay in this shell.
perftest() {
    local setting=$1 name=$2 lim port spid log rc
    shift 2
    PT=""
    lim=$(limit 120)
    ((lim > 0)) || { NOTES+=("ucx_perftest $name ($setting) skipped: time budget"); return 1; }
    port=$(free_port) || { NOTES+=("ucx_perftest $name ($setting): no free port"); return 1; }
    log=$OUT/perftest-$setting-$name
    cpu_mark
    # shellcheck disable=SC2046
    env $(setting_env "$setting") timeout -k 5 "$lim" ucx_perftest -p "$port" \
        >"$log.server.txt" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    for _ in $(seq 200); do # up to 10 s for the server to listen
        port_listening "$port" && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    # shellcheck disable=SC2046
    env $(setting_env "$setting") timeout -k 5 "$lim" ucx_perftest 127.0.0.1 -p "$port" -f "$@" \
        >"$log.txt" 2>&1
    rc=$?
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    OTHER=$(cpu_other)
    BUSY+=("$OTHER")
    echo "other processes used $OTHER% of the CPU during this run" >>"$log.txt"
    ((rc == 0)) || { NOTES+=("ucx_perftest $name ($setting) failed, rc $rc: see $log.txt"); return 1; }
    PT=$(awk '/^ +[0-9]+ +[0-9.]+ +[0-9.]+/ {line = $0} END {print line}' "$log.txt")
}

# ---- psbench -------------------------------------------------------------------------

# psbench SETTING NAME ARGS...: one psrun -s $NS -w $NW run; sets J to the
# result JSON (worker 0) and appends it and the servers' lines, tagged with
# the setting and bench name, to results.jsonl.  Called directly, like perftest.
psbench() {
    local setting=$1 name=$2 lim log rc
    shift 2
    J=""
    lim=$(limit 300)
    ((lim > 0)) || { NOTES+=("psbench $name ($setting) skipped: time budget"); return 1; }
    log=$OUT/psbench-$setting-$name.log
    echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$log"
    echo "command: env $(setting_env "$setting") psrun -s $NS -w $NW -- psbench $* --json" >>"$log"
    cpu_mark
    # shellcheck disable=SC2046
    env $(setting_env "$setting") timeout -k 10 "$lim" "$BIN/psrun" -s "$NS" -w "$NW" -- \
        "$BIN/psbench" "$@" --json >>"$log" 2>&1
    rc=$?
    OTHER=$(cpu_other)
    BUSY+=("$OTHER")
    echo "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg); other processes used $OTHER% of the CPU during this run" >>"$log"
    sed -n 's/^\[\(worker 0\|server [0-9]*\)\] {/{"setting":"'"$setting"'","bench":"'"$name"'",/p' \
        "$log" >>"$OUT/results.jsonl"
    ((rc == 0)) || { NOTES+=("psbench $name ($setting) failed, rc $rc: see $log"); return 1; }
    J=$(sed -n 's/^\[worker 0\] \({.*}\)$/\1/p' "$log")
}

server_line() { sed -n 's/^\[server 0\] \({"server".*}\)$/\1/p' "$OUT/psbench-$1-$2.log"; }

# Bytes per key over every server of a run: sum of bytes / sum of keys.
server_bytes_per_key() {
    sed -n 's/^\[server [0-9]*\] \({"server".*}\)$/\1/p' "$OUT/psbench-$1-$2.log" |
        jq -s 'if length > 0 and (map(.keys) | add) > 0
               then ((map(.bytes) | add) / (map(.keys) | add) * 100 | round / 100) else empty end' 2>/dev/null
}

jget() { jq -r ".$1 // empty" 2>/dev/null <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-"}'; }
verdict() {
    awk -v r="${1%x}" -v op="$2" -v t="$3" 'BEGIN {
        if (r == "-") print "n/a";
        else if ((op == "<=" && r + 0 <= t) || (op == ">=" && r + 0 >= t)) print "met";
        else print "missed" }'
}

# ---- repeats: every measurement runs REPEAT times; the median run is reported --------

# median_of "v1 payload1" "v2 payload2" ...: the payload whose value is the
# median (the lower middle one for an even count).
median_of() {
    printf '%s\n' "$@" | sort -g -k1,1 | awk '{a[NR] = $0} END {if (NR) {sub(/^[^ ]* /, "", a[int((NR + 1) / 2)]); print a[int((NR + 1) / 2)]}}'
}

# After a run with value V (OTHER set by it): add it to QRUNS (undisturbed)
# or DRUNS (disturbed) with PAYLOAD, and to the list ALL ("V" or "V*").
keep_run() {
    local v=$1 payload=$2
    if ((OTHER > QUIET_MAX)); then
        DRUNS+=("$v $payload")
        ALL+="${ALL:+, }$v*"
    else
        QRUNS+=("$v $payload")
        ALL+="${ALL:+, }$v"
    fi
}

# The median of the undisturbed runs, or of all runs when every one was.
median_run() {
    if ((${#QRUNS[@]})); then median_of "${QRUNS[@]}"; else median_of "${DRUNS[@]}"; fi
}

# perftest_median SETTING NAME COLUMN ARGS...: sets PT to the median run's
# final line by COLUMN (2: latency p50, 6: overall bandwidth) and PTALL to
# every run's value.
perftest_median() {
    local s name=$2 col=$3 i v key
    s=$(perftest_setting "$1")
    shift 3
    key="$s/$name/$*"
    if [[ -n ${PT_CACHE[$key]+set} ]]; then
        PT=${PT_CACHE[$key]}
        PTALL=${PTALL_CACHE[$key]}
        return
    fi
    QRUNS=() DRUNS=() ALL=""
    for ((i = 1; i <= TRIES && ${#QRUNS[@]} < REPEAT; i++)); do
        perftest "$s" "$name.$i" "$@" || continue
        v=$(awk -v c="$col" '{print $c}' <<<"$PT")
        [[ -n $v ]] && keep_run "$v" "$PT"
    done
    PT=$(median_run)
    PTALL=$ALL
    PT_CACHE[$key]=$PT
    PTALL_CACHE[$key]=$PTALL
}

# psbench_median SETTING NAME KEY ARGS...: sets J to the median run's JSON
# by KEY, JN to that run's name and JALL to every run's KEY.
psbench_median() {
    local s=$1 name=$2 key=$3 i v
    shift 3
    QRUNS=() DRUNS=() ALL=""
    for ((i = 1; i <= TRIES && ${#QRUNS[@]} < REPEAT; i++)); do
        psbench "$s" "$name.$i" "$@" || continue
        v=$(jget "$key" "$J")
        [[ -n $v ]] && keep_run "$v" "$name.$i $J"
    done
    J=$(median_run)
    JALL=$ALL
    JN=${J%% *}
    J=${J#* }
}

# ---- the matrix -------------------------------------------------------------------------

latency_row() {
    local s=$1 label=$2 half p50 p99 rtt r
    perftest_median "$s" tag_lat 2 -t tag_lat -s 4 -n 20000
    half=$(awk '{print $2}' <<<"$PT")
    rtt=$(awk -v x="$half" 'BEGIN {if (x != "") printf "%.2f", 2 * x}')
    psbench_median "$s" lat p50_us --op pushpull --keys 1 --val-len 1 --iters 20000 --inflight 1
    p50=$(jget p50_us "$J")
    p99=$(jget p99_us "$J")
    r=$(ratio "${p50:-0}" "${rtt:-0}")
    ROWS+=("| $label | pushpull 1 key x 1 f32, inflight 1: p50 round trip | ${p50:-fail} us (p99 ${p99:-?}) | ${rtt:-fail} us (tag_lat 4 B: 2 x p50 ${half:-?}) | $r | <= 2x: $(verdict "$r" "<=" 2) |")
    NOTES+=("$label, latency runs: psbench p50 us [$JALL]; tag_lat half-round-trip p50 us [$PTALL]")
}

# The issue's command is 1 key x 2621440 f32; libps before 6e9b8cd capped
# tables at 2^20 values per key, so when it is refused the same 10 MiB go as
# 4 keys x 655360.  Four rows: one request in flight (the issue's command),
# then four, each copying the values and zero-copy.
bandwidth_rows() {
    local s=$1 label=$2 mbs gbs what="1 key x 2621440 f32" r got args inf
    perftest_median "$s" tag_bw 6 -t tag_bw -s 10485760 -n 200
    mbs=$(awk '{print $6}' <<<"$PT")
    gbs=$(awk -v x="$mbs" 'BEGIN {if (x != "") printf "%.3f", x * 1048576 / 1e9}')
    args=(--op push --keys 1 --val-len 2621440 --iters 200)
    if ! psbench "$s" bw-exact "${args[@]}" --inflight 1; then
        if grep -q 'ERROR table option width' "$OUT/psbench-$s-bw-exact.log"; then
            unset 'NOTES[-1]' # the "failed" note: expected, explained by the next one
            NOTES+=("$label: 1 key x 2621440 f32 is refused by the library (table width cap 2^20 values per key); the rows measure 4 keys x 655360 f32, the same 10 MiB per request")
        fi
        what="4 keys x 655360 f32"
        args=(--op push --keys 4 --val-len 655360 --iters 200)
    fi
    local zc zname
    for zc in "" --zero-copy; do
        zname=${zc:+-zc}
        for inf in 1 4; do
            psbench_median "$s" "bw-inflight$inf$zname" gbytes_per_s "${args[@]}" --inflight "$inf" ${zc:+"$zc"}
            got=$(jget gbytes_per_s "$J")
            r=$(ratio "${got:-0}" "${gbs:-0}")
            ROWS+=("| $label | push $what (10 MiB), inflight $inf${zc:+, zero-copy} | ${got:-fail} GB/s (p50 $(jget p50_us "$J") us, $(jget submit_p50_us "$J") us of it inside ps_push) | ${gbs:-fail} GB/s (tag_bw 10 MiB: ${mbs:-?} MB/s) | $r | >= 0.7x: $(verdict "$r" ">=" 0.7) |")
            NOTES+=("$label, bandwidth inflight $inf${zc:+ zero-copy} runs: psbench GB/s [$JALL]; tag_bw MB/s [$PTALL]")
        done
    done
    args[1]=pull
    psbench_median "$s" bw-pull gbytes_per_s "${args[@]}" --inflight 1
    got=$(jget gbytes_per_s "$J")
    r=$(ratio "${got:-0}" "${gbs:-0}")
    ROWS+=("| $label | pull $what (10 MiB), inflight 1 | ${got:-fail} GB/s (p50 $(jget p50_us "$J") us) | ${gbs:-fail} GB/s (tag_bw 10 MiB: ${mbs:-?} MB/s) | $r | >= 0.8x: $(verdict "$r" ">=" 0.8) |")
    NOTES+=("$label, pull bandwidth runs: psbench GB/s [$JALL]; tag_bw MB/s [$PTALL]")
}

store_row() {
    local s=$1 label=$2 srv
    psbench_median "$s" store mkeys_per_s --op push --keys 1000000 --val-len 1 --random-keys \
        --store --iters 20
    local m
    m=$(jget mkeys_per_s "$J")
    [[ -n $m ]] || { ROWS+=("| $label | push 1M random keys x 1 f32, --store, 20 iters | failed or skipped | - | - | - |"); return; }
    srv=$(server_line "$s" "$JN" 2>/dev/null)
    local bpk
    bpk=$(jget bytes_per_key "$srv")
    ROWS+=("| $label | push 1M random keys x 1 f32, --store, 20 iters | $m Mkeys/s (p50 $(jget p50_us "$J") us per push, $(jget submit_p50_us "$J") us inside ps_push) | - | - | - |")
    ROWS+=("| $label | server memory after it: $(jget keys "$srv") keys | ${bpk:-?} B/key | - | - | <= 16 B/key: $(verdict "${bpk:--}" "<=" 16) |")
    NOTES+=("$label, store runs: Mkeys/s [$JALL]")
}

# One key-rate row: psbench_median with NAME and ARGS, a row LABEL TEXT, and
# a target (OP VALUE, or "" for none).
keyrate_row() {
    local s=$1 label=$2 name=$3 text=$4 op=$5 tgt=$6 m extra="" target="-"
    shift 6
    psbench_median "$s" "$name" mkeys_per_s "$@"
    m=$(jget mkeys_per_s "$J")
    if ((NW > 1)); then
        extra="; per worker $(jq -r '[.per_worker[]? | .mkeys_per_s | tostring] | join(" / ")' <<<"$J" 2>/dev/null) Mkeys/s"
    fi
    [[ -n $op ]] && target="$op $tgt Mkeys/s: $(verdict "${m:--}" "$op" "$tgt")"
    ROWS+=("| $label | $text | ${m:-fail} Mkeys/s (p50 $(jget p50_us "$J") us, $(jget submit_p50_us "$J") us inside the call$extra) | - | - | $target |")
    NOTES+=("$label, $name runs: Mkeys/s [$JALL]")
}

# 100k unsorted random keys pushed and pulled (the same list every time, and
# in 16 orders so that every request sorts), 1M pushed to 2 servers, and
# 100k pushed by 2 workers at once.
keyrate_rows() {
    local s=$1 label=$2 k100=(--keys 100000 --val-len 1 --random-keys --store --iters 300)
    keyrate_row "$s" "$label" k100k-push "push 100k random keys x 1 f32, unsorted, --store" \
        ">=" 55 --op push "${k100[@]}"
    keyrate_row "$s" "$label" k100k-pull "pull 100k random keys x 1 f32, unsorted, --store" \
        ">=" 130 --op pull "${k100[@]}"
    keyrate_row "$s" "$label" k100k-push-orders "push 100k random keys, unsorted, 16 orders in turn (every push sorts)" \
        "" "" --op push "${k100[@]}" --orders 16
    keyrate_row "$s" "$label" k100k-pull-orders "pull 100k random keys, unsorted, 16 orders in turn (every pull sorts)" \
        "" "" --op pull "${k100[@]}" --orders 16
    NS=2
    keyrate_row "$s" "$label" k1m-2srv "push 1M random keys x 1 f32, unsorted, --store, psrun -s 2" \
        ">=" 28 --op push --keys 1000000 --val-len 1 --random-keys --store --iters 20
    NS=1 NW=2
    keyrate_row "$s" "$label" k100k-push-2w "push 100k random keys x 1 f32, unsorted, psrun -w 2: all workers" \
        "" "" --op push "${k100[@]}"
    NW=1
}

main() {
    [[ -x $BIN/psrun && -x $BIN/psbench ]] || die "no $BIN/psrun or psbench: run make (or set PS_BIN)"
    command -v ucx_perftest >/dev/null || die "ucx_perftest missing: apt-get install ucx-utils"
    command -v jq >/dev/null || die "jq missing: apt-get install jq"
    local s
    for s in $SETTINGS; do
        [[ $s =~ ^(tcp|sealed|ucx-tcp|default|shm)$ ]] ||
            die "BENCH_SETTINGS: unknown setting $s (tcp, sealed, ucx-tcp, default, shm)"
    done
    mkdir -p "$OUT" || die "cannot create $OUT"
    local load0 label poll
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    for s in $SETTINGS; do
        label=$(setting_label "$s")
        latency_row "$s" "$label"
        bandwidth_rows "$s" "$label"
        store_row "$s" "$label"
        [[ " $KEYS_SETTINGS " == *" $s "* ]] && keyrate_rows "$s" "$label"
    done
    echo "| transport | benchmark (psrun -s 1 -w 1 unless said) | libps (psbench) | UCX limit (ucx_perftest, same run) | ratio | target |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "libps $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(no git)'), $(ucx_info -v 2>/dev/null | sed -n 's/^# Version /UCX /p')."
    echo "$(nproc) cores; load average $load0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; $((SECONDS - START)) s."
    poll="unset, so the library default: 30 us when servers + workers <= usable cores ($(nproc) here; the scheduler, mostly asleep, is not counted) or the scheduler is not on loopback, else 0"
    echo "PS_POLL_US: ${PS_POLL_US:-$poll}."
    echo "Other processes' CPU use during each run, % of all cores, in run order (perftest and psbench): ${BUSY[*]}."
    echo "Runs marked * below had other processes above $QUIET_MAX% of the CPU (BENCH_QUIET_MAX); the table's medians leave them out when an undisturbed run exists."
    echo "Raw lines: $OUT/results.jsonl (psbench, servers) and $OUT/perftest-*.txt."
    for n in "${NOTES[@]}"; do echo "- $n"; done
}

main "$@"

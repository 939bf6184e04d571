# lib.sh -- a multi-host test bed on one machine (sourced by tests/netns/
# test_*.sh and bench/multihost.sh).
#
# Design: one "hub" network namespace holds a Linux bridge; each host is its
# own network namespace, joined to the bridge by a veth pair (eth0 inside the
# host, v<H> on the hub), with address 10.213.N.<10+H>/24 where N comes from
# $$, so that parallel runs can coexist (their bridges are separate anyway).
# The subnet exists only inside these namespaces.  Faults:
#   nb_loss HOST PCT   drop PCT% of the host's packets in and out (nftables
#                      netdev ingress/egress on its eth0: silent, like a lossy
#                      link; this kernel has no netem);
#   nb_cut / nb_heal   partition a host: the hub's bridge drops every frame
#                      from or to its port (links stay up, nothing is told);
#   nb_rate HOST RATE  tc tbf on both ends of its veth ("off" removes it).
# Nodes are started with nb_spawn / nb_node, remembered by pid, and killed by
# pid on exit; an EXIT trap (also on INT/TERM) then kills by pid whatever is
# still inside our namespaces and deletes them, the veths and the bridge with
# them.  Namespaces of an earlier run that was SIGKILLed (name nb<pid>-*,
# pid gone) are removed at setup.
# Never: touch the root namespace's interfaces, routes or firewall (every
# `ip`, `nft` and `tc` here runs inside one of our namespaces); kill by name.
#
# Without root or without working network namespaces, nb_require prints
# "SKIP: ..." and exits 0.
set -u

NB_PFX=nb$$
NB_HUB=$NB_PFX-hub
NB_NET=10.213.$(( $$ % 250 + 1 ))
NB_HOSTS=0
NB_PIDS=()
NB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ps-netns.XXXXXX")
NB_SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

nb_skip() { echo "SKIP: $*"; exit 0; }

# nb_require: skip (exit 0) unless we are root and namespaces, veths,
# bridges and nftables work here.
nb_require() {
  [ "$(id -u)" = 0 ] || nb_skip "needs root (network namespaces)"
  command -v ip >/dev/null || nb_skip "needs iproute2 (ip)"
  command -v nft >/dev/null || nb_skip "needs nftables (nft)"
  local p=$NB_PFX-probe
  ip netns add "$p" 2>/dev/null || nb_skip "ip netns is unavailable here"
  if ! ip -n "$p" link add br0 type bridge 2>/dev/null ||
     ! ip -n "$p" link add va type veth peer name vb 2>/dev/null ||
     ! ip netns exec "$p" nft add table bridge probe 2>/dev/null; then
    ip netns del "$p"; nb_skip "veth, bridge or nftables unavailable in a namespace"
  fi
  ip netns del "$p"
}

nb_ns() { echo "$NB_PFX-$1"; }
nb_addr() { echo "$NB_NET.$(( 10 + $1 ))"; }
nb_exec() { local h=$1; shift; ip netns exec "$(nb_ns "$h")" "$@"; }

# Remove namespaces left by earlier runs that were killed before their trap ran.
nb_sweep_stale() {
  local ns pid
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^nb[0-9]+-' || true); do
    pid=${ns#nb}; pid=${pid%%-*}
    [ "$pid" != $$ ] && ! kill -0 "$pid" 2>/dev/null || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}

nb_cleanup() {
  local rc=$? ns p
  trap - EXIT INT TERM
  for p in "${NB_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NB_PFX-" || true); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  wait 2>/dev/null
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NB_PFX-" || true); do
    ip netns del "$ns" 2>/dev/null
  done
  if [ -n "${PS_KEEP_LOGS:-}" ]; then echo "logs kept in $NB_TMP" >&2; else rm -rf "$NB_TMP"; fi
  exit $rc
}
trap nb_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

nb_now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# nb_wait_for DEADLINE_S CMD...: poll CMD until it succeeds or the deadline passes.
nb_wait_for() {
  local deadline=$(( $(nb_now_ms) + $1 * 1000 )); shift
  until "$@"; do
    [ "$(nb_now_ms)" -ge $deadline ] && return 1
    sleep 0.05
  done
}

nb_port_forwarding() { ip -n "$NB_HUB" -d link show "v$1" 2>/dev/null | grep -q 'state forwarding'; }

# nb_setup NHOSTS: the hub, its bridge and NHOSTS hosts 0..NHOSTS-1, each with
# lo up and eth0 at nb_addr HOST; returns once every bridge port forwards.
nb_setup() {
  local n=$1 h ns
  nb_sweep_stale
  ip netns add "$NB_HUB" || return 1
  ip -n "$NB_HUB" link set lo up
  ip -n "$NB_HUB" link add br0 type bridge
  ip -n "$NB_HUB" link set br0 up
  ip netns exec "$NB_HUB" nft -f - <<'EOF' || return 1
table bridge nbcut {
  set cut { type ifname; }
  chain xfer { type filter hook forward priority 0; iifname @cut drop; oifname @cut drop; }
}
EOF
  for h in $(seq 0 $((n - 1))); do
    ns=$(nb_ns "$h")
    ip netns add "$ns" || return 1
    ip -n "$ns" link set lo up
    ip -n "$NB_HUB" link add "v$h" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$NB_HUB" link set "v$h" master br0 up
    ip -n "$ns" addr add "$(nb_addr "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  NB_HOSTS=$n
  for h in $(seq 0 $((n - 1))); do
    nb_wait_for 10 nb_port_forwarding "$h" || { echo "nb_setup: port v$h never forwards" >&2; return 1; }
  done
}

# nb_loss HOST PCT: drop PCT% (0.1% steps; 0 removes the rule) of the host's
# packets, in and out.
nb_loss() {
  local h=$1 x
  x=$(awk -v p="$2" 'BEGIN { printf "%d", p * 10 + 0.5 }')
  nb_exec "$h" nft delete table netdev nbloss 2>/dev/null
  [ "$x" -gt 0 ] || return 0
  nb_exec "$h" nft -f - <<EOF
table netdev nbloss {
  chain in { type filter hook ingress device "eth0" priority 0; numgen random mod 1000 < $x drop; }
  chain out { type filter hook egress device "eth0" priority 0; numgen random mod 1000 < $x drop; }
}
EOF
}

# nb_cut HOST / nb_heal HOST: partition the host from every other one / undo it.
nb_cut() { ip netns exec "$NB_HUB" nft add element bridge nbcut cut "{ \"v$1\" }"; }
nb_heal() { ip netns exec "$NB_HUB" nft delete element bridge nbcut cut "{ \"v$1\" }" 2>/dev/null || true; }

# nb_rate HOST RATE: shape the host's link to RATE (tc units, e.g. 100mbit)
# both ways; RATE "off" removes the shaping.
nb_rate() {
  local h=$1 r=$2
  nb_exec "$h" tc qdisc del dev eth0 root 2>/dev/null
  tc -n "$NB_HUB" qdisc del dev "v$h" root 2>/dev/null
  [ "$r" = off ] && return 0
  nb_exec "$h" tc qdisc add dev eth0 root tbf rate "$r" burst 64kb latency 100ms &&
    tc -n "$NB_HUB" qdisc add dev "v$h" root tbf rate "$r" burst 64kb latency 100ms
}

# nb_reset: no loss, no partition, no shaping on any host.
nb_reset() {
  local h
  for h in $(seq 0 $((NB_HOSTS - 1))); do nb_loss "$h" 0; nb_heal "$h"; nb_rate "$h" off; done
}

# nb_spawn NAME HOST CMD...: run CMD in the background inside HOST's
# namespace, output in $NB_TMP/NAME.log, pid in PID_NAME (the command's own
# pid: ip netns exec and env exec it).
nb_spawn() {
  local name=$1 h=$2; shift 2
  ip netns exec "$(nb_ns "$h")" "$@" >"$NB_TMP/$name.log" 2>&1 &
  NB_PIDS+=($!)
  eval "PID_$name=$!"
}

# nb_node NAME HOST ROLE RANK CMD...: a libps node in HOST with the cluster's
# environment: PS_HOST (its address), PS_SCHEDULER (NB_SCHED_HOST, NB_PORT),
# PS_NUM_SERVERS (NB_NS), PS_NUM_WORKERS (NB_NW), PS_SECRET (NB_SECRET unless
# SECRET is set for this call); RANK "" starts a node without PS_RANK (it
# joins the running cluster).  Other PS_* variables come from the caller's
# environment.
nb_node() {
  local name=$1 h=$2 role=$3 rank=$4; shift 4
  local env=(-u PS_RANK PS_ROLE="$role" PS_HOST="$(nb_addr "$h")"
             PS_SCHEDULER="$(nb_addr "$NB_SCHED_HOST"):$NB_PORT"
             PS_NUM_SERVERS="$NB_NS" PS_NUM_WORKERS="$NB_NW" PS_SECRET="${SECRET:-$NB_SECRET}")
  [ -n "$rank" ] && env+=(PS_RANK="$rank")
  nb_spawn "$name" "$h" env "${env[@]}" "$@"
}

# nb_wait_exit PID DEADLINE_S: the pid's exit status, waiting at most
# DEADLINE_S seconds (255 if it is still running then).
nb_wait_exit() {
  local pid=$1
  nb_wait_for "$2" sh -c "! kill -0 $pid 2>/dev/null" || return 255
  wait "$pid"
}

# nb_kill_all: kill -9 every node started so far and every process still in
# one of our hosts (by pid), and forget them.
nb_kill_all() {
  local p h
  for p in "${NB_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for h in $(seq 0 $((NB_HOSTS - 1))); do
    for p in $(ip netns pids "$(nb_ns "$h")" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  wait
  NB_PIDS=()
} 2>/dev/null # no "Killed" notices

# nb_listeners [HOST...]: "HOST PROTO ADDR PORT PID" (PROTO t or u) for every
# socket listening (TCP) or bound and unconnected (UDP) inside each HOST's
# namespace (default: every host), read from /proc with no `ip netns exec`
# (one process; `ss -p` per namespace took seconds on a loaded machine): a
# process's /proc/PID/net/{tcp,udp} are its namespace's tables, and the
# namespace of /run/netns/NAME is the inode of that file.
nb_listeners() {
  local h args=()
  for h in "${@:-$(seq 0 $((NB_HOSTS - 1)))}"; do args+=("$h=$(nb_ns "$h")"); done
  python3 - "${args[@]}" <<'PY'
import os, re, socket, struct, sys
want = {}
for a in sys.argv[1:]:
    h, ns = a.split("=", 1)
    try:
        want["net:[%d]" % os.stat("/run/netns/" + ns).st_ino] = h
    except OSError:
        pass
pids, owner = {}, {}
for d in filter(str.isdigit, os.listdir("/proc")):
    try:
        h = want.get(os.readlink("/proc/%s/ns/net" % d))
        if h is None:
            continue
        pids.setdefault(h, d)
        for fd in os.listdir("/proc/%s/fd" % d):
            m = re.match(r"socket:\[(\d+)\]$", os.readlink("/proc/%s/fd/%s" % (d, fd)))
            if m:
                owner.setdefault(m.group(1), d)
    except OSError:
        continue
for h, pid in sorted(pids.items(), key=lambda x: int(x[0])):
    for proto, name, state in (("t", "tcp", "0A"), ("u", "udp", "07")):
        try:
            lines = open("/proc/%s/net/%s" % (pid, name)).readlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != state or f[9] not in owner or f[2].split(":")[0].strip("0"):
                continue          # (UDP: bound, not connected: no remote address)
            addr, port = f[1].split(":")
            print(h, proto, socket.inet_ntoa(struct.pack("<I", int(addr, 16))), int(port, 16),
                  owner[f[9]])
PY
}

# nb_all_listen HOST...: every HOST has a TCP listener, and host 0 (the
# scheduler's) its UDP port; the table in $NB_TMP/listeners.txt.
nb_all_listen() {
  nb_listeners "$@" >"$NB_TMP/listeners.txt"
  [ "$(awk '$2 == "t" { print $1 }' "$NB_TMP/listeners.txt" | sort -u | wc -l)" = $# ] &&
    grep -q '^0 u ' "$NB_TMP/listeners.txt"
}

# nb_fuzz_targets: from $NB_TMP/listeners.txt, the ports a fuzzer in another
# host can reach (bound to the host's address or the wildcard), as
# portfuzz.py's --ports (NB_TPORTS) and --udp (NB_UPORTS) lists
# ("ADDR:PORT@PID,..."), and the others in NB_OTHER ("proto:host:addr:port ...").
nb_fuzz_targets() {
  NB_TPORTS='' NB_UPORTS='' NB_OTHER=''
  local h proto a port pid
  while read -r h proto a port pid; do
    case $a in
      "$(nb_addr "$h")"|0.0.0.0)
        if [ "$proto" = t ]; then NB_TPORTS="$NB_TPORTS${NB_TPORTS:+,}$(nb_addr "$h"):$port@$pid"
        else NB_UPORTS="$NB_UPORTS${NB_UPORTS:+,}$(nb_addr "$h"):$port@$pid"; fi ;;
      *) NB_OTHER="$NB_OTHER $proto:$h:$a:$port" ;;
    esac
  done <"$NB_TMP/listeners.txt"
}

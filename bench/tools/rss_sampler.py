#!/usr/bin/env python3
"""rss_sampler.py -- the resident memory of every libps node below a process.

Usage: rss_sampler.py ROOT_PID INTERVAL_S OUT_FILE

Until ROOT_PID exits, every INTERVAL_S seconds appends one line per libps
node among ROOT_PID's descendants to OUT_FILE: "ms pid role rank rss_kb
anon_kb file_kb" (VmRSS and its anonymous and file-backed parts, RssAnon and
RssFile: code and libraries paged in later count in the last; ms: wall clock; role: PS_ROLE in the process's environment, which is how a
node is told from the shells and tools around it; rank: PS_RANK, or "-" for a
node started without one, a joiner).  Used by bench/soak.sh and
bench/evictions.sh; reads /proc only.
"""
import os
import sys
import time


def node_of(pid):
    """(role, rank) from a process's environment, or None."""
    try:
        raw = open("/proc/%d/environ" % pid).read().split("\0")
    except OSError:
        return None
    env = dict(kv.split("=", 1) for kv in raw if "=" in kv)
    return env.get("PS_ROLE"), env.get("PS_RANK") or "-"


def descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open("/proc/%s/stat" % d).read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    todo, out = [root], []
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def rss_kb(pid):
    """"rss anon file" in kB from /proc/PID/status, or None."""
    got = {}
    try:
        for line in open("/proc/%d/status" % pid):
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                got[key] = line.split()[1]
    except OSError:
        return None
    if "VmRSS" not in got:
        return None
    return "%s %s %s" % (got["VmRSS"], got.get("RssAnon", "0"), got.get("RssFile", "0"))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2])
    root, interval = int(sys.argv[1]), float(sys.argv[2])
    out = open(sys.argv[3], "w", buffering=1)
    while os.path.exists("/proc/%d" % root):
        now = int(time.time() * 1000)
        for pid in descendants(root):
            node = node_of(pid)
            rss = rss_kb(pid) if node and node[0] else None
            if rss:
                out.write("%d %d %s %s %s\n" % (now, pid, node[0], node[1], rss))
        time.sleep(interval)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""status_check.py -- checks of the scheduler's status page for the
integration tests (tests/integration/test_status_page.sh, test_prometheus.sh).

  status_check.py json URL NODES TABLE SERIES...     /status.json lists NODES
      nodes, TABLE on every server and worker, and each SERIES from every
      worker with at least 3 points; exit 1 (saying what is missing) if not
  status_check.py metrics FILE                       every line of a /metrics
      text is a comment or `name{labels} value`, each sample's name has HELP
      and TYPE before it, and names start with libps_
  status_check.py dom FILE NODES TABLE SERIES...     a DOM dumped by headless
      Chromium: a row per node, a row for TABLE, and per SERIES an <svg> with
      a <polyline> per worker holding points
  status_check.py prom URL NODES TABLE SERIES        Prometheus's HTTP API at
      URL returns libps_table_pushes_total for TABLE on every server (> 0)
      with node/role/rank/table labels, libps_node_up for NODES nodes and
      libps_app_value of SERIES for every worker

Standard library only; every network read has a short timeout.
"""
import json
import re
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def check_json(url, nodes, table, series):
    s = json.loads(get(url))
    if len(s["nodes"]) != nodes:
        return "%d nodes, want %d" % (len(s["nodes"]), nodes)
    if any(n["state"] != "alive" for n in s["nodes"]):
        return "not all alive: %s" % [n["state"] for n in s["nodes"]]
    ids = {n["id"] for n in s["nodes"] if n["role"] != "scheduler"}
    t = [t for t in s["tables"] if t["name"] == table]
    if not t or {r["node"] for r in t[0]["nodes"]} < ids:
        return "table %s not reported by every node" % table
    if t[0]["pushes"] <= 0 or t[0]["keys"] <= 0:
        return "table %s: no pushes or keys yet" % table
    workers = {n["id"] for n in s["nodes"] if n["role"] == "worker"}
    for name in series:
        have = {r["node"] for r in s["series"] if r["name"] == name and len(r["points"]) >= 3}
        if have < workers:
            return "series %s: 3 points from %s only" % (name, sorted(have))
    return None


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (?P<value>\S+)$')


def check_metrics(path):
    helped, typed, n = set(), set(), 0
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if parts[3] not in ("gauge", "counter"):
                return "bad TYPE line: " + line
            typed.add(parts[2])
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            return "not a sample: " + line
        float(m.group("value"))
        name = m.group(1)
        if not name.startswith("libps_") or name not in helped or name not in typed:
            return "no libps_ prefix, HELP or TYPE for: " + line
        n += 1
    if n < 20:
        return "only %d samples" % n
    print("metrics: %d samples, %d metric names, every line well-formed" % (n, len(typed)))
    return None


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.tables, self.figures, self.cur = set(), set(), {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("id", "").startswith("node-"):
            self.rows.add(int(a["id"][5:]))
        if tag == "tr" and "data-table" in a:
            self.tables.add(a["data-table"])
        if tag == "figure" and a.get("id", "").startswith("series-"):
            self.cur = a["id"][7:]
            self.figures[self.cur] = {"svg": 0, "lines": set()}
        if tag == "svg" and self.cur:
            self.figures[self.cur]["svg"] += 1
        if tag in ("polyline", "path") and self.cur and len(a.get("points", a.get("d", ""))) > 10:
            self.figures[self.cur]["lines"].add(a.get("data-node"))

    def handle_endtag(self, tag):
        if tag == "figure":
            self.cur = None


def check_dom(path, nodes, table, series):
    d = Dom()
    d.feed(open(path).read())
    if d.rows != set(range(nodes)):
        return "node rows %s, want 0..%d" % (sorted(d.rows), nodes - 1)
    if table not in d.tables:
        return "no row for table %s" % table
    for name in series:
        f = d.figures.get(name)
        if not f or f["svg"] != 1 or len(f["lines"]) < 2:
            return "series %s: no <svg> with a line per worker (%s)" % (name, f)
    print("dom: %d node rows, table %s, charts %s" % (len(d.rows), table, sorted(d.figures)))
    return None


def query(url, q):
    r = json.loads(get(url + "/api/v1/query?" + urllib.parse.urlencode({"query": q})))
    return r["data"]["result"] if r.get("status") == "success" else []


def check_prom(url, nodes, table, series):
    pushes = query(url, 'libps_table_pushes_total{table="%s",role="server"}' % table)
    if len(pushes) < 2 or any(float(r["value"][1]) <= 0 for r in pushes):
        return "pushes of %s on the servers: %s" % (table, pushes)
    for r in pushes:
        if not {"node", "role", "rank", "table", "job", "instance"} <= set(r["metric"]):
            return "labels missing: %s" % r["metric"]
    up = query(url, "libps_node_up == 1")
    if len(up) != nodes:
        return "%d nodes up, want %d" % (len(up), nodes)
    vals = query(url, 'libps_app_value{series="%s",role="worker"}' % series)
    if len({r["metric"]["rank"] for r in vals}) < 2:
        return "series %s from the workers: %s" % (series, vals)
    print("prometheus: %d server series of %s, %d nodes up, %s from %d workers"
          % (len(pushes), table, len(up), series, len(vals)))
    return None


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    try:
        if cmd == "json":
            err = check_json(argv[2], int(argv[3]), argv[4], argv[5:])
        elif cmd == "metrics":
            err = check_metrics(argv[2])
        elif cmd == "dom":
            err = check_dom(argv[2], int(argv[3]), argv[4], argv[5:])
        elif cmd == "prom":
            err = check_prom(argv[2], int(argv[3]), argv[4], argv[5])
        else:
            err = "usage: status_check.py json|metrics|dom|prom ..."
    except (OSError, ValueError, KeyError, IndexError) as e:
        err = "%s: %s" % (type(e).__name__, e)
    if err:
        print("status_check %s: %s" % (cmd, err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""free_port.py -- print a TCP port on 127.0.0.1 that nothing uses right now.

Chosen below the kernel's ephemeral range (ip_local_port_range), so that the
nodes' own listeners on port 0 can never take it before a scheduler binds it.
Used by tests/integration/lib.sh and bench/sketch.sh.  Exits 1 when none of
200 tries is free.
"""
import random
import socket
import sys

lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    p = random.randint(10000, max(10001, lo - 1))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        print(p)
        sys.exit(0)
    except OSError:
        pass
    finally:
        s.close()
sys.exit(1)

#!/usr/bin/env python3
"""portfuzz.py -- hostile TCP clients against the listening ports of a running libps job.

    portfuzz.py --ports 127.0.0.1:PORT[@PID],... --seconds S --seed N
                [--udp 127.0.0.1:PORT[@PID],...] [--udp-rate N]
                [--secret STRING] [--job-pid PID] [--idle N] [--hold S] [--netns-ok]
    portfuzz.py --intrude HOST:PORT [--netns-ok]     (one wrong-secret client, below)

For every port, one thread loops over these cases until the time is up:
  random      random bytes (0..64 KiB), then close (sometimes with a reset)
  truncated   a valid-looking prefix (HELLO, a frame header, a frame) cut mid-way
  oversized   frame headers claiming huge lengths, and 1-2 MiB of junk
  lenprefix   a u64/u32 length (0, small, huge) then a few bytes more or fewer
              than it claims (today's UCX sockaddr listener aborts on 8 zero
              bytes and 9 more: "Assertion ... offset <= length failed: 17 > 16")
  idle        N connections at once held for a few seconds: half-open (never
              send), one byte then stall, an unfinished HELLO; one port at a
              time, and a fresh connection must still be accepted meanwhile
  replay      the exact bytes of an earlier connection of ours (handshakes too)
  slowloris   one byte every 100 ms
  wrongkey    the gate handshake with a wrong secret: the acceptor's tag must
              not verify, and the acceptor must close after our wrong proof
  frames      after a correct handshake (the secret from --secret, else the
              public empty one): random frames, good magic with a bad CRC, a
              good CRC with absurd segment lengths, truncated frames, a valid
              header claiming a 1 GiB payload then a stall.  If the peer does
              not speak the gate, the frames go raw.
Frames with a valid CRC are always ones that validation must reject (bad
version or type, lengths over the cap, flags out of range): an authenticated
peer is trusted, so a well-formed message would be a legitimate one.

The gate (src/net/gate.h): K = BLAKE2b-256(secret);
  C->A "PSGATE01" nonce_c[32]; A->C "PSGATE01" nonce_a[32] tag_a[32];
  C->A tag_c[32]; tag_a = HMAC-SHA256(K, "acceptor" nonce_c nonce_a),
  tag_c = HMAC-SHA256(K, "connector" nonce_a nonce_c).
A frame: the 104-byte header of src/wire/msg.h (CRC32C of bytes 0..99 at
offset 100) followed by its segments.

--udp: one more thread per UDP port (the scheduler's heartbeat port,
src/node/beat.h: 40-byte "PSHB" datagrams tagged with BLAKE2b-128 under the
cluster key), at most --udp-rate datagrams a second in all:
  udp_random    random datagrams of 0..65507 bytes (39, 40, 41 often)
  udp_magic     "PSHB", any version and kind, random fields and tag
  udp_wrongkey  a well-formed beat tagged with a wrong key
  udp_keyed     (with --secret) a correctly tagged datagram that must still be
                dropped: version != 1, kind != beat, node id 0 or >= 4096, or
                41 bytes; never a valid beat of a real node (that is a peer)
  udp_burst     100..500 random or "PSHB" datagrams back to back
Any datagram that comes back counts as udp_answered (the scheduler must not
answer a stranger); an ICMP port unreachable as udp_refused (the port is gone).

--intrude HOST:PORT: a single client with a wrong secret: HELLO, our (wrong)
PROOF, at once a frame after it, then it waits up to 3 s for the acceptor to
close.  One JSON line: connected, gate (a REPLY came), tag_verified (the
acceptor's tag verified under the wrong key), closed (the acceptor closed
within 3 s after the proof), admitted (connected and tag_verified or not
closed).  Exit 0 (not admitted), 1 (admitted), 64 on bad usage.

Targets: 127.0.0.1 (or localhost) only.  With --netns-ok, also literal
addresses in 10.213.0.0/16 (tests/netns/lib.sh's test bed), and only when
this process runs in a network namespace other than the root one (pid 1's:
/proc/self/ns/net differs from /proc/1/ns/net; where /proc/1/ns/net cannot be
read, pid 2's, kthreadd, a kernel thread always in the root namespace), where
that subnet exists only inside the test bed's namespaces.

Output: `DEAD host:port ...` lines for a port that refused connections (a TCP
RST, a UDP ICMP port unreachable) for more than 3 s while the job
(--job-pid) was still running, then one JSON line of counts, totals and per
port (UDP ports under "udp").  Exit 0, 2 if a port died, 64 on bad usage.
Never: connect anywhere but 127.0.0.1 (or, with --netns-ok inside a test
bed namespace, 10.213.0.0/16); crash on a refused or reset connection; run
past --seconds by more than a few seconds.
"""
import argparse
import errno
import hashlib
import hmac
import ipaddress
import json
import os
import random
import resource
import select
import socket
import struct
import sys
import threading
import time

MAGIC_GATE = b"PSGATE01"
WIRE_MAGIC = 0x314D5350
HDR = 104
DEAD_AFTER = 3.0
CONNECT_TIMEOUT = 3.0
IO_TIMEOUT = 2.0
# How long a gate has to close a connection it must refuse (a replayed
# handshake, a wrong proof) before that counts as a finding.  A gate that lets
# one in never closes it, so waiting longer only costs time; a loaded node
# under a sanitizer took over 1 s to get to a replay (1 of 5 ASan runs with
# one second), so the wait scales with the tests' PS_TIMEOUT_SCALE.
MUST_CLOSE_WAIT = 2.0 * max(1.0, float(os.environ.get("PS_TIMEOUT_SCALE", "1") or 1))

# ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven ----------

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t

_CRC = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# ---- wire: gate handshake and frame headers --------------------------------------

def gate_key(secret):
    return hashlib.blake2b(secret, digest_size=32).digest()


def tag(key, who, n1, n2):
    return hmac.new(key, who + n1 + n2, hashlib.sha256).digest()


def header(rng, seg_len=(0, 0, 0, 0), version=1, mtype=None, flags=None, crc_ok=True,
           key_count=None):
    """A 104-byte frame header, little-endian, fields as in src/wire/msg.h."""
    mtype = rng.randrange(0, 256) if mtype is None else mtype
    flags = rng.randrange(0, 1 << 16) if flags is None else flags
    kc = rng.choice([0, 1, 2 ** 63, rng.randrange(1 << 64)]) if key_count is None else key_count
    h = struct.pack("<IBBHIIII", WIRE_MAGIC, version, mtype, flags, rng.randrange(1 << 32),
                    rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(1 << 32))
    h += struct.pack("<QQQQ", rng.randrange(1 << 64), rng.randrange(1 << 64),
                     rng.randrange(1 << 64), kc)
    h += bytes(rng.randrange(256) for _ in range(8))          # filters
    h += struct.pack("<QQQQ", *seg_len) + struct.pack("<I", rng.randrange(1 << 32))
    assert len(h) == 100
    c = crc32c(h)
    return h + struct.pack("<I", c if crc_ok else c ^ (1 << rng.randrange(32)))


HUGE = [2 ** 62, 2 ** 63, 2 ** 64 - 1, 2 ** 40, (1 << 30) + 1, 2 ** 32, 2 ** 32 - 1]


def rejectable_header(rng):
    """A header with a valid CRC that validation must refuse."""
    kind = rng.randrange(4)
    if kind == 0:   # absurd segment lengths
        seg = [rng.choice(HUGE + [0, 8]) for _ in range(4)]
        seg[rng.randrange(4)] = rng.choice(HUGE)
        return header(rng, seg_len=seg, version=1, mtype=rng.randrange(1, 11))
    if kind == 1:   # wrong version
        return header(rng, version=rng.choice([0, 2, 255]), mtype=rng.randrange(1, 11))
    if kind == 2:   # type out of range
        return header(rng, mtype=rng.choice([0, 11, 12, 200, 255]))
    return header(rng, mtype=rng.randrange(1, 11), flags=rng.randrange(1 << 9, 1 << 16))


def junk_frame(rng):
    """One hostile frame: random bytes, bad CRC, or a rejectable header plus a body."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randrange(HDR, 4096))
    if kind == 1:
        seg = [rng.randrange(64) for _ in range(4)]
        return header(rng, seg_len=seg, version=1, mtype=rng.randrange(1, 11),
                      crc_ok=False) + rng.randbytes(sum(seg))
    return rejectable_header(rng) + rng.randbytes(rng.randrange(256))

# ---- per-port state and socket helpers -------------------------------------------


class Port:
    def __init__(self, host, port, pid, seed):
        self.host, self.port, self.pid = host, port, pid
        self.name = "%s:%d" % (host, port)
        self.rng = random.Random(seed * 1000003 + port)
        self.c = {k: 0 for k in ("connections", "bytes_sent", "bytes_recv", "refused",
                                 "resets", "timeouts", "errors", "stalled_writes",
                                 "peer_closed", "auth_ok", "auth_refused",
                                 "auth_unexpected", "auth_mismatch", "closed_at_hello",
                                 "proof_not_closed", "no_gate",
                                 "replay_refused", "replay_open", "idle_opened",
                                 "idle_probe_ok", "idle_probe_fail", "idle_probe_refused",
                                 "slowloris_cut")}
        self.cases = {}
        self.transcripts = []        # (case, [chunks]) of earlier connections
        self.ever_up = False
        self.down_since = None       # first refusal of the current refused streak
        self.dead = None
        self.stuck_since = None
        self.gate = None             # None unknown; False: no REPLY seen to a HELLO

    def up(self):
        self.ever_up = True
        self.down_since = None
        self.stuck_since = None


class UdpPort:
    """A UDP target: counters and the same liveness fields as Port (a UDP port
    that once sent an ICMP port unreachable stays down: nothing re-binds it)."""

    def __init__(self, host, port, pid, seed):
        self.host, self.port, self.pid = host, port, pid
        self.name = "udp:%s:%d" % (host, port)
        self.rng = random.Random(seed * 1000003 + port + 7919)
        self.c = {k: 0 for k in ("datagrams", "bytes_sent", "udp_refused", "udp_answered",
                                 "errors", "would_block")}
        self.cases = {}
        self.ever_up = False
        self.down_since = None
        self.dead = None
        self.stuck_since = None
        self.gate = None


class Conn:
    """A client connection that records what it sent and never raises on a
    refused or reset peer: failures are counted and turn the socket off."""

    def __init__(self, p, record=True):
        self.p, self.s, self.chunks = p, None, [] if record else None
        self.closed_by_peer = False

    def open(self, probe=True):
        p = self.p
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(CONNECT_TIMEOUT)
        try:
            s.connect((p.host, p.port))
        except OSError as e:
            s.close()
            self._count(e)
            if probe:
                now = time.monotonic()
                if isinstance(e, ConnectionRefusedError):
                    p.down_since = p.down_since or now
                elif isinstance(e, socket.timeout):
                    p.stuck_since = p.stuck_since or now
            return False
        p.c["connections"] += 1
        if probe:
            p.up()
        s.settimeout(IO_TIMEOUT)
        self.s = s
        return True

    def _count(self, e):
        c = self.p.c
        if isinstance(e, ConnectionRefusedError):
            c["refused"] += 1
        elif isinstance(e, (ConnectionResetError, BrokenPipeError)):
            c["resets"] += 1
        elif isinstance(e, socket.timeout):
            c["timeouts"] += 1
        else:
            c["errors"] += 1

    def send(self, data):
        if self.s is None:
            return False
        if self.chunks is not None and len(self.chunks) < 64:
            self.chunks.append(bytes(data[:1 << 17]))
        try:
            self.s.sendall(data)
            self.p.c["bytes_sent"] += len(data)
            return True
        except socket.timeout:
            self.p.c["stalled_writes"] += 1
        except OSError as e:
            self._count(e)
        self.close()
        return False

    def recv_exact(self, n, timeout=IO_TIMEOUT):
        """n bytes, or None (timeout, reset or close; closed_by_peer set on EOF/reset)."""
        if self.s is None:
            return None
        buf = b""
        end = time.monotonic() + timeout
        try:
            while len(buf) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.s.settimeout(left)
                d = self.s.recv(n - len(buf))
                if not d:
                    self.closed_by_peer = True
                    return None
                buf += d
                self.p.c["bytes_recv"] += len(d)
        except socket.timeout:
            return None
        except OSError as e:
            self._count(e)
            self.closed_by_peer = True
            return None
        finally:
            if self.s is not None:
                self.s.settimeout(IO_TIMEOUT)
        return buf

    def peer_closes(self, timeout):
        """True if the peer closes (EOF or reset) within timeout, draining what it sends."""
        end = time.monotonic() + timeout
        while self.s is not None and not self.closed_by_peer:
            left = end - time.monotonic()
            if left <= 0:
                return False
            if self.recv_exact(1 << 16, timeout=min(left, 0.2)) is None and self.closed_by_peer:
                break
        return True

    def close(self, reset=False):
        if self.s is None:
            return
        try:
            if reset:
                self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.s.close()
        except OSError:
            pass
        self.s = None

    def done(self, case):
        if self.chunks:
            t = self.p.transcripts
            t.append((case, self.chunks))
            if len(t) > 32:
                del t[self.p.rng.randrange(len(t))]
        self.close(reset=self.p.rng.random() < 0.2)


class Fuzzer:
    def __init__(self, a, ports, udp=()):
        self.a, self.ports, self.udp = a, ports, list(udp)
        self.key = gate_key(a.secret.encode())
        self.end = time.monotonic() + a.seconds
        self.storm_lock = threading.Lock()
        self.job_ended = False
        self.stop = threading.Event()

    def running(self):
        return not self.stop.is_set() and time.monotonic() < self.end

    def handshake(self, c, key):
        """Run the connector's side.  'ok'; 'badtag' (REPLY's tag did not verify
        with our key: we sent the proof our key gives, which must be refused);
        'closed' (the peer closed before a REPLY); or 'none' (no REPLY, or not
        a gate's: the peer does not speak the gate)."""
        rng = c.p.rng
        nc = rng.randbytes(32)
        if not c.send(MAGIC_GATE + nc):
            return "closed"
        # A port that never answered a HELLO gets a short wait, so that it
        # still sees many cases.
        r = c.recv_exact(72, timeout=0.3 if c.p.gate is False else IO_TIMEOUT)
        if r is None:
            if c.closed_by_peer:
                return "closed"
            c.p.gate = c.p.gate or False
            return "none"
        if r[:8] != MAGIC_GATE:
            c.p.gate = c.p.gate or False
            return "none"
        c.p.gate = True
        na, ta = r[8:40], r[40:72]
        if not hmac.compare_digest(ta, tag(key, b"acceptor", nc, na)):
            c.send(tag(key, b"connector", na, nc))   # a proof the acceptor must refuse
            return "badtag"
        c.send(tag(key, b"connector", na, nc))
        return "ok"

    # ---- the cases ---------------------------------------------------------------

    def case_random(self, p):
        c = Conn(p)
        if c.open():
            n = p.rng.choice([0, 1, 17, p.rng.randrange(64), p.rng.randrange(1 << 16)])
            c.send(p.rng.randbytes(n))
        c.done("random")

    def case_truncated(self, p):
        rng = p.rng
        c = Conn(p)
        if not c.open():
            return
        kind = rng.randrange(3)
        if kind == 0:      # an unfinished HELLO
            c.send((MAGIC_GATE + rng.randbytes(32))[:rng.randrange(1, 40)])
        elif kind == 1:    # a handshake, then a frame cut short
            if self.handshake(c, self.key) == "ok":
                p.c["auth_ok"] += 1
            seg = [rng.randrange(1, 4096) for _ in range(4)]
            f = header(rng, seg_len=seg, version=1, mtype=rng.randrange(1, 11)) + \
                rng.randbytes(sum(seg))
            c.send(f[:rng.randrange(1, len(f))])
        else:              # a bare frame header cut short
            c.send(header(rng)[:rng.randrange(1, HDR)])
        c.done("truncated")

    def case_oversized(self, p):
        rng = p.rng
        c = Conn(p)
        if not c.open():
            return
        if rng.random() < 0.5:
            seg = [rng.choice(HUGE) for _ in range(4)]
            c.send(header(rng, seg_len=seg, version=1, mtype=rng.randrange(1, 11)) +
                   rng.randbytes(rng.randrange(4096)))
        else:
            left = rng.randrange((1 << 20) + 1, 2 << 20)
            while left > 0 and c.s is not None and self.running():
                n = min(left, 1 << 16)
                c.send(rng.randbytes(n))
                left -= n
        c.done("oversized")

    def case_lenprefix(self, p):
        rng = p.rng
        c = Conn(p)
        if not c.open():
            return
        n = rng.choice([0, 0, 1, 8, 9, 16, 17, 40, 104, 1 << 16, (1 << 31) - 1, 1 << 32,
                        1 << 62, (1 << 64) - 1])
        wide = rng.random() < 0.7
        if not wide:
            n &= 0xFFFFFFFF
        pre = struct.pack("<Q" if wide else "<I", n)
        body = rng.choice([bytes(rng.randrange(1, 24)), rng.randbytes(rng.randrange(0, 64)),
                           rng.randbytes(max(0, min(n, 4096) + rng.randrange(-2, 3)))])
        c.send(pre + body)
        c.recv_exact(1 << 12, timeout=0.1)
        c.done("lenprefix")

    def case_idle(self, p):
        """N connections at once: a third never send, a third send one byte, a
        third an unfinished HELLO; held, while one fresh connection must be accepted."""
        if not self.storm_lock.acquire(blocking=False):
            return self.case_random(p)
        try:
            rng, socks = p.rng, []
            for i in range(self.a.idle):
                if not self.running():
                    break
                c = Conn(p, record=False)
                if not c.open(probe=False):
                    break
                socks.append(c)
                if i % 3 == 1:
                    c.send(rng.randbytes(1))
                elif i % 3 == 2:
                    c.send((MAGIC_GATE + rng.randbytes(32))[:rng.randrange(1, 40)])
            p.c["idle_opened"] += len(socks)
            hold_end = time.monotonic() + self.a.hold
            # The probe fails only if it cannot get through the storm (a
            # timeout: the backlog full); a refusal means the listener is
            # gone, which the DEAD watcher judges (the node may be exiting
            # at the end of the job).
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(CONNECT_TIMEOUT)
            try:
                probe.connect((p.host, p.port))
                p.c["idle_probe_ok"] += 1
            except ConnectionRefusedError:
                p.c["idle_probe_refused"] += 1
            except OSError:
                p.c["idle_probe_fail"] += 1
            finally:
                probe.close()
            while time.monotonic() < hold_end and self.running():
                time.sleep(0.1)
            for c in socks:
                c.close(reset=rng.random() < 0.1)
        finally:
            self.storm_lock.release()

    def case_replay(self, p):
        if not p.transcripts:
            return self.case_handshake_frames(p)
        case, chunks = p.rng.choice(p.transcripts)
        c = Conn(p, record=False)
        if not c.open():
            return
        for ch in chunks:
            if not c.send(ch):
                break
        if case == "frames":  # a recorded good handshake: the old proof must not pass
            if c.peer_closes(MUST_CLOSE_WAIT):
                p.c["replay_refused"] += 1
            else:
                p.c["replay_open"] += 1
        c.close()

    def case_slowloris(self, p):
        rng = p.rng
        c = Conn(p)
        if not c.open():
            return
        data = (MAGIC_GATE + rng.randbytes(32)) if rng.random() < 0.5 else rng.randbytes(40)
        end = time.monotonic() + rng.uniform(1.0, 4.0)
        for b in data:
            if time.monotonic() > end or not self.running() or not c.send(bytes([b])):
                break
            r, _, _ = select.select([c.s], [], [], 0.1)
            if r and c.recv_exact(1, timeout=0.05) is None and c.closed_by_peer:
                p.c["slowloris_cut"] += 1
                c.close()
                break
        c.done("slowloris")

    def case_wrongkey(self, p):
        c = Conn(p)
        if not c.open():
            return
        wrong = gate_key(p.rng.randbytes(p.rng.randrange(1, 33)))
        r = self.handshake(c, wrong)
        if r == "ok":
            p.c["auth_unexpected"] += 1       # an acceptor that proved a secret it must not know
        elif r == "badtag":
            p.c["auth_refused"] += 1
            # After our wrong proof the acceptor must close, never read frames.
            if c.s is not None and not c.peer_closes(MUST_CLOSE_WAIT):
                p.c["proof_not_closed"] += 1
        elif r == "closed":
            p.c["closed_at_hello"] += 1
        else:
            p.c["no_gate"] += 1
        c.done("wrongkey")

    def case_handshake_frames(self, p):
        rng = p.rng
        c = Conn(p)
        if not c.open():
            return
        r = self.handshake(c, self.key)
        if r == "ok":
            p.c["auth_ok"] += 1
        elif r == "badtag":
            p.c["auth_mismatch"] += 1         # the node does not know our --secret
        elif r == "closed":
            p.c["closed_at_hello"] += 1
        else:
            p.c["no_gate"] += 1
        kind = rng.randrange(5)
        if kind == 0:      # a stream of hostile frames
            for _ in range(rng.randrange(1, 20)):
                if not c.send(junk_frame(rng)):
                    break
        elif kind == 1:    # good magic, bad CRC
            c.send(header(rng, version=1, mtype=rng.randrange(1, 11), crc_ok=False))
        elif kind == 2:    # good CRC, absurd lengths
            seg = [rng.choice(HUGE) for _ in range(4)]
            c.send(header(rng, seg_len=seg, version=1, mtype=rng.randrange(1, 11)))
        elif kind == 3:    # a frame cut short
            f = junk_frame(rng)
            c.send(f[:rng.randrange(1, len(f))])
        else:              # a valid-looking header claiming 1 GiB, then a stall
            seg = [0, 1 << 30, 0, 0]
            c.send(header(rng, seg_len=seg, version=1, mtype=8, flags=0x5, key_count=0) +
                   rng.randbytes(rng.randrange(1 << 12)))
            end = time.monotonic() + rng.uniform(0.5, 2.0)
            while time.monotonic() < end and self.running() and not c.closed_by_peer:
                c.recv_exact(1 << 16, timeout=0.1)
        if c.closed_by_peer:
            p.c["peer_closed"] += 1
        c.done("frames")

    # ---- UDP (the scheduler's heartbeat port) ------------------------------------

    def beat(self, rng, key, version=1, kind=0, ident=None, seq=None, tag_ok=True):
        """A 40-byte heartbeat datagram (src/node/beat.c) tagged with `key`."""
        ident = rng.randrange(1 << 32) if ident is None else ident
        seq = rng.randrange(1 << 64) if seq is None else seq
        body = b"PSHB" + struct.pack("<BBH", version, kind, 0) + \
            struct.pack("<IIQ", ident, rng.randrange(1 << 32), seq)
        t = hashlib.blake2b(body, digest_size=16, key=key).digest()
        if not tag_ok:
            t = bytes([t[0] ^ (1 << rng.randrange(8))]) + t[1:]
        return body + t

    def udp_datagrams(self, p):
        """(case name, [datagrams]) for one UDP case."""
        rng = p.rng
        name = rng.choices(["udp_random", "udp_magic", "udp_wrongkey", "udp_keyed",
                            "udp_burst"], [5, 4, 3, 3 if self.a.secret else 0, 1])[0]
        if name == "udp_random":
            n = rng.choice([0, 1, 39, 40, 40, 41, 64, 512, 1472, rng.randrange(65508)])
            return name, [rng.randbytes(n)]
        if name == "udp_magic":
            d = b"PSHB" + bytes([rng.choice([1, 1, 0, 2, 255]), rng.choice([0, 0, 1, 2, 255])]) + \
                rng.randbytes(35)
            return name, [d[:rng.choice([40, 40, 40, 4, 8, 24, 39, 41])]]
        if name == "udp_wrongkey":
            wrong = gate_key(rng.randbytes(rng.randrange(1, 33)))
            return name, [self.beat(rng, wrong, ident=rng.randrange(1, 8))]
        if name == "udp_keyed":   # the right key, but a datagram the scheduler must drop
            k = rng.randrange(5)
            if k == 0:
                return name, [self.beat(rng, self.key, version=rng.choice([0, 2, 255]))]
            if k == 1:
                return name, [self.beat(rng, self.key, kind=rng.choice([1, 2, 255]))]
            if k == 2:
                return name, [self.beat(rng, self.key, ident=rng.choice(
                    [0, 4096, 4097, 65535, (1 << 32) - 1]))]
            if k == 3:
                return name, [self.beat(rng, self.key, ident=rng.randrange(1, 8)) +
                              rng.randbytes(rng.randrange(1, 64))]
            return name, [self.beat(rng, self.key, ident=rng.randrange(1, 8), tag_ok=False)]
        n = rng.randrange(100, 501)
        return name, [rng.randbytes(rng.randrange(0, 128)) if rng.random() < 0.5 else
                      b"PSHB" + rng.randbytes(36) for _ in range(n)]

    def udp_loop(self, p):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            s.connect((p.host, p.port))     # so that ICMP port unreachable comes back to us
        except OSError as e:
            p.c["errors"] += 1
            print("portfuzz: udp %s: %s" % (p.name, e), file=sys.stderr, flush=True)
            s.close()
            return
        rate = max(1.0, float(self.a.udp_rate))
        t0, sent = time.monotonic(), 0

        def refused():
            p.c["udp_refused"] += 1
            p.down_since = p.down_since or time.monotonic()

        def drain():
            while True:
                try:
                    d = s.recv(1 << 16)
                except BlockingIOError:
                    return
                except ConnectionRefusedError:
                    refused()
                    return
                except OSError:
                    p.c["errors"] += 1
                    return
                p.c["udp_answered"] += 1
                p.c["bytes_recv"] = p.c.get("bytes_recv", 0) + len(d)

        while self.running() and p.dead is None:
            name, grams = self.udp_datagrams(p)
            p.cases[name] = p.cases.get(name, 0) + 1
            for d in grams:
                try:
                    s.send(d)
                    p.c["datagrams"] += 1
                    p.c["bytes_sent"] += len(d)
                    if p.down_since is None:
                        p.ever_up = True
                except ConnectionRefusedError:
                    refused()
                except BlockingIOError:
                    p.c["would_block"] += 1
                except OSError:
                    p.c["errors"] += 1
                sent += 1
            drain()
            ahead = sent / rate - (time.monotonic() - t0)   # stay under --udp-rate
            if ahead > 0:
                time.sleep(min(ahead, 1.0))
        drain()
        s.close()

    CASES = ["random", "truncated", "oversized", "lenprefix", "idle", "replay", "slowloris",
             "wrongkey", "handshake_frames"]
    WEIGHTS = [6, 4, 2, 4, 1, 3, 1, 3, 5]

    def port_loop(self, p):
        # A correct handshake first, then the idle storm, then chance: the
        # verdict needs one correct handshake per port, and a job that ends
        # in a few seconds left some ports without one when chance decided.
        first = ["handshake_frames", "idle"]
        while self.running() and p.dead is None:
            if p.down_since is not None:      # refusing: probe gently until it is back or dead
                c = Conn(p, record=False)
                if c.open():
                    c.close()
                else:
                    time.sleep(0.2)
                continue
            name = first.pop(0) if first else p.rng.choices(self.CASES, self.WEIGHTS)[0]
            p.cases[name] = p.cases.get(name, 0) + 1
            getattr(self, "case_" + name)(p)

    def job_alive(self):
        if not self.a.job_pid:
            return True
        try:
            with open("/proc/%d/stat" % self.a.job_pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def watch(self):
        """Decide DEAD: refused for DEAD_AFTER s while the job runs."""
        while self.running():
            time.sleep(0.1)
            if not self.job_alive():
                self.job_ended = True
                self.stop.set()
                break
            now = time.monotonic()
            for p in self.ports + self.udp:
                if p.dead is None and p.ever_up and p.down_since is not None and \
                        now - p.down_since > DEAD_AFTER:
                    alive = p.pid is not None and os.path.exists("/proc/%d" % p.pid)
                    p.dead = "refused for %.1f s, owner pid %s %s" % (
                        now - p.down_since, p.pid,
                        "alive" if alive else ("gone" if p.pid else "unknown"))
                    print("DEAD %s (%s)" % (p.name, p.dead), flush=True)

    def run(self):
        threads = [threading.Thread(target=self.port_loop, args=(p,), daemon=True)
                   for p in self.ports]
        threads += [threading.Thread(target=self.udp_loop, args=(p,), daemon=True)
                    for p in self.udp]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        self.watch()
        self.stop.set()
        for t in threads:
            t.join(timeout=CONNECT_TIMEOUT + IO_TIMEOUT + 2)
        return time.monotonic() - t0


def self_test_acceptor(secret):
    """A toy gate acceptor on 127.0.0.1:0 (--self-test): answers HELLO, closes on a
    bad proof, then reads and drops frames.  Returns its port."""
    key = gate_key(secret.encode())
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)

    def serve(s):
        s.settimeout(5)
        try:
            h = b""
            while len(h) < 40:
                d = s.recv(40 - len(h))
                if not d:
                    return
                h += d
            if h[:8] != MAGIC_GATE:
                return
            na = os.urandom(32)
            s.sendall(MAGIC_GATE + na + tag(key, b"acceptor", h[8:40], na))
            pr = b""
            while len(pr) < 32:
                d = s.recv(32 - len(pr))
                if not d:
                    return
                pr += d
            if not hmac.compare_digest(pr, tag(key, b"connector", na, h[8:40])):
                return
            while s.recv(1 << 16):
                pass
        except OSError:
            pass
        finally:
            s.close()

    def loop():
        while True:
            s, _ = ls.accept()
            threading.Thread(target=serve, args=(s,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return ls.getsockname()[1]


TESTBED = ipaddress.ip_network("10.213.0.0/16")


def root_netns():
    """The root network namespace's link: pid 1's; where pid 1's is not readable
    (an init that even root may not inspect), kthreadd's (pid 2), which as a
    kernel thread is always in the initial one.  None if neither can be read."""
    for pid in (1, 2):
        try:
            if pid == 2:
                with open("/proc/2/comm") as f:
                    if f.read().strip() != "kthreadd":
                        continue
            return os.readlink("/proc/%d/ns/net" % pid)
        except OSError:
            continue
    return None


def in_other_netns():
    """True if this process's network namespace is not the root one."""
    try:
        mine = os.readlink("/proc/self/ns/net")
    except OSError:
        return False
    root = root_netns()
    return root is not None and mine != root    # cannot tell: the root one


def target_host(host, netns_ok):
    """The address to use for `host`, or ValueError if it may not be fuzzed."""
    if host in ("127.0.0.1", "localhost"):
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip in TESTBED and netns_ok:
        if not in_other_netns():
            raise ValueError("%s: --netns-ok allows the test bed's addresses only inside a "
                             "network namespace other than the root one" % host)
        return str(ip)
    if ip is not None and ip in TESTBED:
        raise ValueError("only 127.0.0.1 may be fuzzed, not %s (10.213.0.0/16 needs "
                         "--netns-ok, inside a test bed namespace)" % host)
    raise ValueError("only 127.0.0.1 may be fuzzed, not %s" % host)


def parse_ports(spec, netns_ok=False):
    out = []
    for item in filter(None, spec.split(",")):
        pid = None
        if "@" in item:
            item, pid = item.split("@", 1)
            pid = int(pid)
        host, port = item.rsplit(":", 1)
        out.append((target_host(host, netns_ok), int(port), pid))
    return out


def intrude(host, port, seed):
    """One client with a wrong secret (--intrude): see the docstring."""
    rng = random.Random(seed)
    r = {"target": "%s:%d" % (host, port), "connected": False, "gate": False,
         "tag_verified": False, "proof_sent": False, "frame_sent": False, "closed": False,
         "admitted": False}
    wrong = gate_key(b"not the cluster secret " + rng.randbytes(16))
    s = socket.socket()
    s.settimeout(CONNECT_TIMEOUT)
    try:
        s.connect((host, port))
        r["connected"] = True
        nc = rng.randbytes(32)
        s.sendall(MAGIC_GATE + nc)
        buf = b""
        while len(buf) < 72:
            d = s.recv(72 - len(buf))
            if not d:
                break
            buf += d
        if len(buf) == 72 and buf[:8] == MAGIC_GATE:
            r["gate"] = True
            na = buf[8:40]
            r["tag_verified"] = hmac.compare_digest(buf[40:72], tag(wrong, b"acceptor", nc, na))
            # The proof our wrong key gives, and at once a frame behind it: an acceptor
            # that reads one byte past the proof would see it ("invalid frame" in its log).
            s.sendall(tag(wrong, b"connector", na, nc))
            r["proof_sent"] = True
            seg = [rng.randrange(64) for _ in range(4)]
            s.sendall(rejectable_header(rng) + rng.randbytes(sum(seg)))
            r["frame_sent"] = True
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            s.settimeout(max(0.01, end - time.monotonic()))
            if not s.recv(1 << 16):
                r["closed"] = True
                break
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        r["closed"] = r["connected"]
    except socket.timeout:
        pass
    except OSError as e:
        r["error"] = str(e)
    finally:
        s.close()
    r["admitted"] = r["connected"] and (r["tag_verified"] or not r["closed"])
    return r


def verdict(report, want_udp):
    """What a test fails on in a report: every listener a gate (a correct
    handshake completed on each, so the hostile frames went past the
    handshake), no wrong secret, bad proof or replay let in, no idle storm
    that kept a new connection out; with want_udp, the scheduler's UDP port
    fuzzed and none of our datagrams answered.  A list of findings."""
    t, u, bad = report["totals"], report.get("udp_totals", {}), []
    nogate = sorted(k for k, v in report["ports"].items() if v["auth_ok"] == 0)
    if nogate:
        bad.append("no correct handshake completed on %s" % " ".join(nogate))
    for k in ("auth_unexpected", "auth_mismatch", "proof_not_closed", "replay_open",
              "idle_probe_fail"):
        if t.get(k):
            bad.append("%s %d" % (k, t[k]))
    if want_udp and not report.get("udp"):
        bad.append("no UDP port fuzzed")
    if want_udp and u.get("udp_answered"):
        bad.append("the scheduler answered %d of our datagrams" % u["udp_answered"])
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", default="", help="127.0.0.1:PORT[@PID],... (TCP)")
    ap.add_argument("--udp", default="", help="127.0.0.1:PORT[@PID],... (UDP datagrams)")
    ap.add_argument("--udp-rate", type=float, default=1000,
                    help="datagrams a second per UDP port, at most")
    ap.add_argument("--netns-ok", action="store_true",
                    help="also allow 10.213.0.0/16, only inside a non-root network namespace")
    ap.add_argument("--intrude", default="",
                    help="HOST:PORT: one wrong-secret handshake and a frame; JSON verdict")
    ap.add_argument("--self-test", action="store_true",
                    help="fuzz a toy gate acceptor of our own (checks the handshake code)")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--secret", default="", help="the cluster secret (PS_SECRET's string)")
    ap.add_argument("--job-pid", type=int, default=0,
                    help="stop when this pid exits; ports only die while it runs")
    ap.add_argument("--idle", type=int, default=300, help="idle connections per storm")
    ap.add_argument("--hold", type=float, default=3.0, help="seconds a storm is held")
    ap.add_argument("--verdict", action="store_true",
                    help="read a report (JSON) on stdin, print what is wrong with it "
                         "(nothing when all is well); exit 0, or 64 on a bad report")
    ap.add_argument("--want-udp", action="store_true", help="with --verdict: UDP was fuzzed too")
    a = ap.parse_args()
    if a.verdict:
        try:
            print("; ".join(verdict(json.load(sys.stdin), a.want_udp)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print("portfuzz: not a report: %r" % e, file=sys.stderr)
            return 64
        return 0
    if a.intrude:
        try:
            (h, port, _), = parse_ports(a.intrude, a.netns_ok)
        except ValueError as e:
            print("portfuzz: %s" % e, file=sys.stderr)
            return 64
        r = intrude(h, port, a.seed)
        print(json.dumps(r, sort_keys=True), flush=True)
        return 1 if r["admitted"] else 0
    if a.seconds is None:
        print("portfuzz: --seconds is required", file=sys.stderr)
        return 64
    if a.self_test:
        a.secret = a.secret or "self-test"
        a.ports = "127.0.0.1:%d" % self_test_acceptor(a.secret)
    try:
        specs = parse_ports(a.ports, a.netns_ok)
        uspecs = parse_ports(a.udp, a.netns_ok)
    except ValueError as e:
        print("portfuzz: %s" % e, file=sys.stderr)
        return 64
    if not specs and not uspecs:
        print("portfuzz: no ports", file=sys.stderr)
        return 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    ports = [Port(h, port, pid, a.seed) for h, port, pid in specs]
    udp = [UdpPort(h, port, pid, a.seed) for h, port, pid in uspecs]
    fz = Fuzzer(a, ports, udp)
    elapsed = fz.run()

    def total(ps):
        t = {}
        for p in ps:
            for k, v in p.c.items():
                t[k] = t.get(k, 0) + v
        return t
    report = {"seed": a.seed, "seconds": a.seconds, "elapsed": round(elapsed, 2),
              "job_ended": fz.job_ended, "secret": bool(a.secret),
              "dead": {p.name: p.dead for p in ports + udp if p.dead},
              "totals": total(ports),
              "ports": {p.name: dict(p.c, pid=p.pid, gate=p.gate, cases=p.cases) for p in ports}}
    if udp:
        report["udp_totals"] = total(udp)
        report["udp"] = {p.name: dict(p.c, pid=p.pid, cases=p.cases) for p in udp}
    print(json.dumps(report, sort_keys=True), flush=True)
    return 2 if report["dead"] else 0


if __name__ == "__main__":
    sys.exit(main())

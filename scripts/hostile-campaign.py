#!/usr/bin/env python3
"""Reruns the hostile-input campaign of issue 14 against one node on loopback.

Starts a node (roles cloud + exchange) from a fresh `intercloud init`, then
runs each attack for a bounded count and time while a canary client pings
the server every half second and a sampler reads the node's memory (its RSS
and its query workers') and open files. Prints, per attack, the peak and
final memory and the canary's worst round trip; exits 1 if memory did not
come back near where it started, or the canary went unserved.

    /usr/bin/python3 scripts/hostile-campaign.py [--bin PATH] [--keep DIR]

Loopback only; every process it starts it stops, by PID.
"""

import argparse
import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

DOMAIN = "campaign.test"
HDR = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
       "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % DOMAIN)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Conn:
    """A minimal XMPP client over a real socket: STARTTLS, SASL PLAIN, bind."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data.encode() if isinstance(data, str) else data)

    def until(self, marker, limit=1 << 20):
        while marker.encode() not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed: %r" % self.buf[-200:])
            self.buf += chunk
            if len(self.buf) > limit:
                self.buf = self.buf[-limit:]
        i = self.buf.index(marker.encode()) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode(errors="replace")

    def login(self, user, password, resource=None, sm=False):
        self.send(HDR)
        self.until("</stream:features>")
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.until("<proceed")
        self.until(">")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.s = ctx.wrap_socket(self.s, server_hostname=DOMAIN)
        self.buf = b""
        self.send(HDR)
        self.until("</stream:features>")
        cred = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % cred)
        r = self.until(">")
        if "success" not in r:
            self.until("</failure>")
            return False
        self.send(HDR)
        self.until("</stream:features>")
        res = "<resource>%s</resource>" % resource if resource else ""
        self.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>%s</bind></iq>" % res)
        r = self.until("</iq>")
        if "type='result'" not in r and 'type="result"' not in r:
            raise ConnectionError("bind: " + r)
        if sm:
            self.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
            self.until("<enabled")
        return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def memory_kib(pid):
    """RSS of the node and of its children (query workers), in KiB."""
    total = 0
    pids = [pid]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_files(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Watch(threading.Thread):
    """Samples memory and files, and runs the canary, until stopped."""

    def __init__(self, pid, port):
        super().__init__(daemon=True)
        self.pid, self.port = pid, port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.peak = 0
            self.peak_fds = 0
            self.worst_rtt = 0.0
            self.canary_failures = 0

    def run(self):
        canary = None
        n = 0
        while not self.stop.is_set():
            m, f = memory_kib(self.pid), open_files(self.pid)
            with self.lock:
                self.peak = max(self.peak, m)
                self.peak_fds = max(self.peak_fds, f)
            try:
                if canary is None:
                    canary = Conn(self.port, timeout=5)
                    canary.login("canary", "canary-pw", "c")
                n += 1
                t0 = time.monotonic()
                canary.send("<iq type='get' id='c%d'><ping xmlns='urn:xmpp:ping'/></iq>" % n)
                canary.until("id='c%d'" % n)
                rtt = time.monotonic() - t0
                with self.lock:
                    self.worst_rtt = max(self.worst_rtt, rtt)
            except (OSError, ConnectionError) as e:
                with self.lock:
                    self.canary_failures += 1
                print("   canary failed: %s" % e, flush=True)
                if canary:
                    canary.close()
                canary = None
            self.stop.wait(0.5)


def attack_detached(port):
    """300 stream-managed sessions of one account, each cut (resumable)."""
    for i in range(300):
        c = Conn(port)
        c.login("mallory", "mallory-pw", "d%d" % i, sm=True)
        c.send("<presence/>")
        c.s.shutdown(socket.SHUT_RDWR)
        c.close()
    # And a big message to the bare JID, which every session would hold.
    a = Conn(port)
    a.login("alice", "alice-pw", "a")
    big = "x" * 200_000
    for i in range(5):
        a.send("<message to='mallory@%s' type='chat' id='b%d'><body>%s</body></message>" % (DOMAIN, i, big))
    a.send("<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>")
    a.until("id='s'")
    a.close()


def attack_slow_reader(port):
    """A client that never reads is sent 400 messages of 250 KB."""
    bob = Conn(port)
    bob.login("bob", "bob-pw", "slow")
    bob.send("<presence/>")
    a = Conn(port)
    a.login("alice", "alice-pw", "a2")
    big = "y" * 250_000
    for i in range(400):
        a.send("<message to='bob@%s/slow' type='chat' id='m%d'><body>%s</body></message>" % (DOMAIN, i, big))
    a.send("<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>")
    a.until("id='s'", limit=1 << 24)
    a.close()
    bob.close()


def attack_dials(port):
    """Messages to 5,000 made-up domains and to names that are no domains."""
    a = Conn(port)
    a.login("alice", "alice-pw", "a3")
    bad = ["fuzz..test", "host:port", "-x", "x_y", "a" * 1023 + ".test", "urn:xmpp:ping"]
    out = []
    for i in range(5000):
        out.append("<message to='u@made-up-%d.invalid' id='d%d'><body>x</body></message>" % (i, i))
    for b in bad:
        out.append("<message to='u@%s'><body>x</body></message>" % b)
    a.send("".join(out))
    a.send("<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>")
    a.until("id='s'", limit=1 << 24)
    a.close()


def attack_sparql(port):
    """Four queries that multiply and sort inline data, at once."""
    vals = lambda v: "VALUES ?%s { %s }" % (v, " ".join(str(i) for i in range(200)))
    q = "SELECT ?a ?b ?c WHERE { %s %s %s } ORDER BY DESC(?a) DESC(?b) DESC(?c) LIMIT 1" % (
        vals("a"), vals("b"), vals("c"))
    a = Conn(port, timeout=60)
    a.login("alice", "alice-pw", "a4")
    for i in range(4):
        a.send("<iq type='set' to='service.%s' id='q%d'><command xmlns='http://jabber.org/protocol/commands' "
               "node='sparql_query' action='execute'><iodata xmlns='urn:xmpp:tmp:io-data' type='input'>"
               "<in><query>%s</query></in></iodata></command></iq>" % (DOMAIN, i, q))
    # The answers come in any order.
    seen = ""
    while not all("id='q%d'" % i in seen for i in range(4)):
        seen += a.until("</iq>", limit=1 << 24)
    a.close()


def attack_brute_force(port):
    """300 wrong passwords, each on a connection of its own."""
    for i in range(300):
        c = Conn(port)
        c.login("alice", "guess-%d" % i)
        c.close()


def attack_roster_and_commands(port):
    """300 roster items with 250 KB names; 5,000 command sessions."""
    a = Conn(port)
    a.login("bob", "bob-pw", "r")
    name = "n" * 250_000
    for i in range(300):
        a.send("<iq type='set' id='r%d'><query xmlns='jabber:iq:roster'><item jid='c%d@%s' name='%s'/></query></iq>"
               % (i, i, DOMAIN, name))
    a.send("<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>")
    a.until("id='rg'", limit=1 << 26)
    out = []
    for i in range(5000):
        out.append("<iq type='set' to='service.%s' id='x%d'><command xmlns='http://jabber.org/protocol/commands' "
                   "node='constraint_catalog_resources'><iodata xmlns='urn:xmpp:tmp:io-data' type='io-schemata-get'/>"
                   "</command></iq>" % (DOMAIN, i))
    a.send("".join(out))
    a.send("<iq type='get' id='s'><ping xmlns='urn:xmpp:ping'/></iq>")
    a.until("id='s'", limit=1 << 26)
    a.close()


def attack_slowloris(port):
    """300 connections that send a byte a second for 15 s."""
    socks = []
    for _ in range(300):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    for t in range(15):
        for s in socks:
            try:
                s.send(HDR[t:t + 1].encode())
            except OSError:
                pass
        time.sleep(1)
    for s in socks:
        s.close()


ATTACKS = [
    ("detached sessions", attack_detached),
    ("slow reader", attack_slow_reader),
    ("dials to made-up domains", attack_dials),
    ("SPARQL bombs", attack_sparql),
    ("brute force", attack_brute_force),
    ("roster and command sessions", attack_roster_and_commands),
    ("slowloris", attack_slowloris),
]


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
    ap.add_argument("--bin", default=os.path.join(target, "debug", "intercloud"))
    ap.add_argument("--keep", help="keep the node's directory here")
    ap.add_argument("--settle-secs", type=float, default=5.0)
    args = ap.parse_args()
    d = args.keep or tempfile.mkdtemp(prefix="intercloud-campaign-")
    port = free_port()
    subprocess.run([args.bin, "init", d, "--domain", DOMAIN, "--roles", "cloud,exchange",
                    "--c2s-port", str(port), "--s2s-port", str(free_port()), "--p2p-port", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    cfg = os.path.join(d, "intercloud.toml")
    for u in ["alice", "bob", "mallory", "canary"]:
        subprocess.run([args.bin, "user", "add", "--config", cfg, "%s@%s" % (u, DOMAIN), "--password", "%s-pw" % u],
                       check=True, stdout=subprocess.DEVNULL)
    log = open(os.path.join(d, "node.log"), "w")
    node = subprocess.Popen([args.bin, "node", "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    ok = True
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        watch = Watch(node.pid, port)
        watch.start()
        time.sleep(2)
        base = memory_kib(node.pid)
        print("node %d up: %d KiB, %d files" % (node.pid, base, open_files(node.pid)), flush=True)
        print("%-30s %10s %10s %8s %10s %s" % ("attack", "peak KiB", "after KiB", "files", "canary ms", "canary failures"))
        for name, attack in ATTACKS:
            watch.reset()
            t0 = time.monotonic()
            try:
                attack(port)
            except (OSError, ConnectionError) as e:
                print("   %s: the attacker's connection ended: %s" % (name, e))
            time.sleep(args.settle_secs)
            after = memory_kib(node.pid)
            with watch.lock:
                print("%-30s %10d %10d %8d %10.0f %d   (%.0f s)" % (
                    name, watch.peak, after, watch.peak_fds, watch.worst_rtt * 1000,
                    watch.canary_failures, time.monotonic() - t0), flush=True)
                if watch.canary_failures:
                    ok = False
            if node.poll() is not None:
                print("the node exited: %s" % node.returncode)
                ok = False
                break
        end = memory_kib(node.pid)
        grown = end - base
        print("memory: %d KiB before, %d KiB after (%+d KiB)" % (base, end, grown))
        # "Flat": what the attacks made is given back, within allocator slack.
        if grown > 64 * 1024:
            ok = False
        watch.stop.set()
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    print("verdict: %s" % ("flat memory, canary served" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

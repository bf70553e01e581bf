#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Reload of every key of both files (issue 15), as a table, with one long
# session open through relay and agent the whole time.
#
# The key lists are read from the parser's source (relay_config.cpp,
# agent_config.cpp): a key with no row here fails the test, so a key added
# later needs its reload row. Each row edits one key, sends SIGHUP, and
# checks the effect from outside (a client, the status socket, a TLS
# handshake, /proc); then the original file is written back and reloaded.
# A key expected to be restart-only must be named in reload-failed
# REASON=restart-only and its old value must still be in force. Rows marked
# "either" accept a live change or a named restart-only with the old value.
# A row whose key is not in the source is "unused".
#
# The lab, one port on many 127.x addresses:
#   R   relay, shared keys: agent-a, agent-b and cert-agent connect to it
#   R2  relay, certificate mode: cert-agent (its [auth] rows, drain last)
#   A   agent-a: services svc (the long session), hc (health checks), svc2
#   B   agent-b, behind a forwarder so R sees it at its own address (.77):
#       the agent the relay rows deny, cut, freeze and kill
#   A3  cert-agent: certificate mode to R2, shared key to R
# The long session (an echo of deterministic bytes at a steady rate, from
# its own client address, through R and A) must end byte-exact after all
# rows, and a second one through R2 and A3 after all rows but the last:
# no reload may close an established session.
#
# Usage: reload_table_test.py RELAY_BIN AGENT_BIN RELAY_CONFIG_CPP AGENT_CONFIG_CPP [ROW...]
# Standard library and the openssl CLI only; 127.0.0.0/8, one port below
# 32768 on many addresses; every wait bounded; every process stopped by PID.
import copy
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

RELAY, AGENT, RELAY_SRC, AGENT_SRC = sys.argv[1:5]
ONLY = set(sys.argv[5:])
NET = f"127.{91 + os.getpid() % 3}.{(os.getpid() // 3) % 200 + 20}"
PORT = 21000 + os.getpid() % 9000  # below 32768: never an ephemeral port



def a(host, port=PORT):
    return f"{NET}.{host}:{port}"


def t(host, port=PORT):
    return (f"{NET}.{host}", port)


# ---------------------------------------------------------------- key lists


def source_keys(path, arrays):
    text = open(path).read()
    out = set()
    for name, section in arrays.items():
        m = re.search(r"std::array<std::string_view,\s*\d+>\s*" + name + r"\s*=\s*\{(.*?)\};",
                      text, re.S)
        if not m:
            raise SystemExit(f"FAIL: {name} not found in {path}")
        for k in re.findall(r'"([a-z0-9_]+)"', m.group(1)):
            out.add(f"{section}.{k}")
    return out


RELAY_KEYS = source_keys(RELAY_SRC, {"kRelayKeys": "relay", "kAuthKeys": "auth",
                                     "kLimitsKeys": "limits", "kOutboundKeys": "outbound"})
AGENT_KEYS = source_keys(AGENT_SRC, {"kAgentKeys": "agent", "kRelayKeys": "relay",
                                     "kServiceKeys": "service", "kOutboundKeys": "outbound"})

# ---------------------------------------------------------------- helpers

failures = []
# Rows that fail because of a daemon bug reported to its owner: printed as
# FAIL with the bug, not counted; once the row passes it fails until its
# entry is removed here (strict expected failure).
KNOWN_BUGS: dict[str, str] = {}
known = []
procs = {}  # name -> Popen, every one stopped by pid at the end
servers = []  # the test's own listeners


def wait_until(pred, secs, step=0.05):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


def render(doc):
    """doc: {section: dict} or {section: [dict, ...]} (array of tables)."""
    out = []
    for sec, body in doc.items():
        for table in body if isinstance(body, list) else [body]:
            out.append(f"[[{sec}]]" if isinstance(body, list) else f"[{sec}]")
            out += [f"{k} = {toml_value(v)}" for k, v in table.items()]
            out.append("")
    return "\n".join(out)


def connect(addr, src=None, timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    if src:
        s.bind((f"{NET}.{src}", 0))
    try:
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


def readline(s, limit=200):
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        d = s.recv(1)
        if not d:
            break
        buf += d
    return buf.decode(errors="replace").strip()


def ping(addr, src=60, timeout=5):
    """The backend's answer ("pong b1 proxy=0"), or how it failed."""
    try:
        s = connect(addr, src, timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"connect-error {e}"
    try:
        s.sendall(b"ping\n")
        line = readline(s)
        return line or "closed"
    except socket.timeout:
        return "timeout"
    except OSError:
        return "closed"
    finally:
        s.close()


def hold(addr, src=60, timeout=5):
    """A session the backend keeps open: (socket, "held b1") or (None, why)."""
    try:
        s = connect(addr, src, timeout)
        s.sendall(b"hold\n")
        line = readline(s)
        if line.startswith("held"):
            return s, line
        s.close()
        return None, line or "closed"
    except OSError as e:
        return None, str(e)


def closed_within(s, secs):
    """Seconds until the peer closed `s`, or None."""
    start = time.monotonic()
    s.settimeout(0.1)
    while time.monotonic() - start < secs:
        try:
            d = s.recv(4096)
            if not d:
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def accepts(addr, timeout=2):
    try:
        connect(addr, None, timeout).close()
        return True
    except OSError:
        return False


def admin(sock_path, cmd, timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall((json.dumps({"v": 1, "cmd": cmd}) + "\n").encode())
        answer = json.loads(s.makefile().readline())
        return answer.get("data", {})
    finally:
        s.close()


def admin_or_none(sock_path, cmd):
    try:
        return admin(sock_path, cmd, 2)
    except (OSError, ValueError):
        return None


def pipes(pid):
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
            except OSError:
                pass
    except OSError:
        pass
    return n


def bulk(addr, nbytes=4 << 20, src=61):
    """A 4 MiB echo through a new session: bytes in flight in both daemons."""
    s = connect(addr, src, 10)
    s.settimeout(10)
    s.sendall(b"echo\n")
    got = [0]

    def rd():
        while got[0] < nbytes:
            d = s.recv(1 << 16)
            if not d:
                return
            got[0] += len(d)

    th = threading.Thread(target=rd, daemon=True)
    th.start()
    chunk = b"x" * (1 << 16)
    for _ in range(nbytes >> 16):
        s.sendall(chunk)
    th.join(20)
    s.close()
    return got[0] == nbytes


def http_connect(proxy, dest, src=60, auth=None, keep=False):
    """HTTP CONNECT through the agent's forward proxy: (status, socket)."""
    try:
        s = connect(proxy, src, 10)
    except OSError as e:
        return f"connect-error {e}", None
    try:
        head = f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n"
        if auth:
            import base64
            head += f"Proxy-Authorization: Basic {base64.b64encode(auth.encode()).decode()}\r\n"
        s.sendall((head + "\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 8192:
            d = s.recv(1)
            if not d:
                break
            buf += d
        status = buf.split(b" ", 2)[1].decode() if buf.count(b" ") >= 1 else "closed"
        if keep:
            return status, s
        s.close()
        return status, None
    except OSError as e:
        s.close()
        return f"error {e}", None


def tls_peer(addr, cert=None, key=None):
    """DER of the certificate a TLS server shows at addr, and whether it
    then closed the connection (refused our client certificate) within 1.5 s."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = connect(addr, None, 5)
    try:
        s = ctx.wrap_socket(raw)
        der = s.getpeercert(binary_form=True)
        s.settimeout(1.5)
        try:
            refused = s.recv(1) == b""
        except socket.timeout:
            refused = False
        except (ssl.SSLError, OSError):
            refused = True
        s.close()
        return der, refused
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return None, str(e)


def der_of(pem_path):
    return ssl.PEM_cert_to_DER_cert(open(pem_path).read())


# ---------------------------------------------------------------- servers


class Backend:
    """First line "ping": answers "pong NAME proxy=0|1"; "hold": "held NAME"
    then waits for EOF; "echo": echoes to EOF. A PROXY v1 header before the
    first line is noted (proxy=1)."""

    def __init__(self, name, addr, backlog=512):
        self.name, self.addr, self.backlog = name, addr, backlog
        self.sock = None
        self.start()
        threading.Thread(target=self.loop, daemon=True).start()

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.addr)
        s.listen(self.backlog)
        s.settimeout(0.2)
        self.sock = s

    def stop(self):
        s, self.sock = self.sock, None
        if s:
            s.close()

    def loop(self):
        while True:
            s = self.sock
            if s is None:
                time.sleep(0.05)
                continue
            try:
                c, _ = s.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.settimeout(300)
            line = readline(c)
            proxy = 0
            if line.startswith("PROXY "):
                proxy = 1
                line = readline(c)
            if line == "ping":
                c.sendall(f"pong {self.name} proxy={proxy}\n".encode())
            elif line == "hold":
                c.sendall(f"held {self.name}\n".encode())
                while c.recv(4096):
                    pass
            elif line == "echo":
                while True:
                    d = c.recv(1 << 16)
                    if not d:
                        break
                    c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()


class Blackhole:
    """A listener whose accept queue is full: SYNs to it go unanswered."""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(addr)
        self.sock.listen(0)
        self.fill = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(addr)
            except BlockingIOError:
                pass
            self.fill.append(f)


class Forwarder:
    """TCP forwarder that connects to `target` from the source address
    `src`: the relay sees an agent behind it at that address."""

    def __init__(self, listen, target, src):
        self.target, self.src = target, src
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen)
        self.sock.listen(64)
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.socket()
                u.bind((self.src, 0))
                u.connect(self.target)
            except OSError:
                c.close()
                continue
            for x, y in ((c, u), (u, c)):
                threading.Thread(target=self.pump, args=(x, y), daemon=True).start()

    @staticmethod
    def pump(x, y):
        try:
            while True:
                d = x.recv(1 << 16)
                if not d:
                    break
                y.sendall(d)
        except OSError:
            pass
        for s in (x, y):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LongSession:
    """Echo of deterministic 8 KiB blocks, about 160 KiB/s each way, from its
    own client address; byte-exact at the end."""

    def __init__(self, addr, src):
        self.s = connect(addr, src, 10)
        self.s.settimeout(60)
        self.s.sendall(b"echo\n")
        self.sent = hashlib.sha256()
        self.got = hashlib.sha256()
        self.nsent = self.ngot = 0
        self.stop = False
        self.error = None
        self.early_eof = False
        self.tw = threading.Thread(target=self.writer, daemon=True)
        self.tr = threading.Thread(target=self.reader, daemon=True)
        self.tw.start()
        self.tr.start()

    def writer(self):
        i = 0
        try:
            while not self.stop:
                block = hashlib.sha256(str(i).encode()).digest() * 256
                self.s.sendall(block)
                self.sent.update(block)
                self.nsent += len(block)
                i += 1
                time.sleep(0.05)
            self.s.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = f"send: {e} after {self.nsent} bytes"

    def reader(self):
        try:
            while True:
                d = self.s.recv(1 << 16)
                if not d:
                    if not self.stop:
                        self.early_eof = True
                    return
                self.got.update(d)
                self.ngot += len(d)
        except OSError as e:
            self.error = f"recv: {e} after {self.ngot} bytes"

    def finish(self):
        self.stop = True
        self.tw.join(10)
        self.tr.join(30)
        self.s.close()
        intact = (not self.error and not self.early_eof and self.nsent == self.ngot and
                  self.sent.digest() == self.got.digest())
        return intact, (f"{self.nsent} bytes each way, sha256 "
                        f"{'equal' if self.sent.digest() == self.got.digest() else 'DIFFERENT'}"
                        f", error={self.error}, early_eof={self.early_eof}")


# ---------------------------------------------------------------- the lab

D = tempfile.mkdtemp(prefix="sallyport-reload-table-")


def p(f):
    return os.path.join(D, f)


def sh(cmd):
    return subprocess.run(["/bin/sh", "-c", f"cd '{D}' && {cmd}"], capture_output=True).returncode


def make_files():
    for kid in ("agent-a", "agent-a2", "agent-b", "agent-c"):
        line = subprocess.run([RELAY, "--gen-key", kid], capture_output=True, text=True,
                              check=True).stdout
        with open(p(f"{kid}.key"), "w") as fh:
            fh.write(line)
        os.chmod(p(f"{kid}.key"), 0o600)
    keys = "".join(open(p(f"{k}.key")).read()
                   for k in ("agent-a", "agent-a2", "agent-b", "agent-c"))
    with open(p("relay.keys"), "w") as fh:
        fh.write(keys)
    os.chmod(p("relay.keys"), 0o600)
    with open(p("relay-no-b.keys"), "w") as fh:
        fh.write("".join(line for line in keys.splitlines(True) if not line.startswith("agent-b")))
    os.chmod(p("relay-no-b.keys"), 0o600)
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    ok = (sh(f"openssl req -x509 {ec} -keyout ca.key -out ca.crt -subj /CN=test-ca -days 2") == 0
          and sh(f"openssl req -x509 {ec} -keyout rogue-ca.key -out rogue-ca.crt "
                 "-subj /CN=rogue-ca -days 2") == 0)
    for name, cn, ca in (("relay", "relay", "ca"), ("relay-b", "relay-b", "ca"),
                         ("agent", "cert-agent", "ca"), ("agent-b", "cert-agent-b", "ca"),
                         ("rogue", "rogue-agent", "rogue-ca")):
        ok = ok and sh(f"openssl req {ec} -keyout {name}.pem -out {name}.csr -subj /CN={cn}") == 0
        ok = ok and sh(f"openssl x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key "
                       f"-CAcreateserial -out {name}.crt -days 2") == 0
    # Copies the cert rows overwrite in place; the originals stay for restores.
    for f in ("relay.crt", "relay.pem", "agent.crt", "agent.pem"):
        shutil.copy2(p(f), p("live-" + f))
    sh("chmod 600 *.pem *.key")
    with open(p("users"), "w") as fh:
        fh.write("u:secret\n")
    os.chmod(p("users"), 0o600)
    if not ok:
        raise SystemExit("FAIL: openssl could not make the test certificates")


def relay_base():
    doc = {
        "relay": {"threads": 2, "data_path": "copy", "control_listen": [a(1)],
                  "allow_listen": [a(h, "1024-32767") for h in (10, 11, 12, 14, 15)],
                  "status_socket": p("relay.sock"), "metrics_listen": a(4),
                  "drain_timeout_s": 5},
        "auth": {"keys": p("relay.keys")},
        "limits": {"pending_timeout_ms": 10000, "handshake_timeout_ms": 10000,
                   "listener_grace_ms": 0},
    }
    if "outbound.allow" in RELAY_KEYS:
        doc["outbound"] = {"allow": [a(21), a(25)]}
    return doc


def relay2_base():
    return {
        "relay": {"threads": 1, "control_listen": [a(2)], "allow_listen": [a(13, "1024-32767")],
                  "status_socket": p("relay2.sock")},
        "auth": {"certificate": p("live-relay.crt"), "private_key": p("live-relay.pem"),
                 "agent_ca": p("ca.crt")},
    }


def agent_base():
    doc = {
        "agent": {"name": "agent-a", "threads": 2, "pool": 4, "data_path": "copy",
                  "status_socket": p("agent.sock"), "metrics_listen": a(7)},
        "relay": [{"address": a(1), "key": p("agent-a.key")}],
        "service": [
            {"name": "svc", "listen": [a(10)], "backend": [a(21)]},
            {"name": "hc", "listen": [a(14)], "backend": [a(24)]},
            {"name": "svc2", "listen": [a(15)], "backend": [a(21), a(22)], "affinity_s": 300,
             "affinity_group": "g0"},
        ],
    }
    if "outbound.http_proxy_listen" in AGENT_KEYS:
        doc["outbound"] = {"http_proxy_listen": a(40)}
        if "outbound.socks5_listen" in AGENT_KEYS:
            doc["outbound"]["socks5_listen"] = a(41)
    return doc


def agent_b_conf():
    return {
        "agent": {"name": "agent-b", "threads": 1, "pool": 2, "status_socket": p("agent-b.sock")},
        "relay": [{"address": a(5), "key": p("agent-b.key")}],
        "service": [{"name": "side", "listen": [a(11)], "backend": [a(21)]}],
    }


def agent3_base():
    return {
        "agent": {"name": "cert-agent", "threads": 1, "pool": 2,
                  "status_socket": p("agent3.sock")},
        # The certificate-mode relay R2, and R with a shared key: R does not
        # allow the listen address (config-rejected there), but the link is
        # up, so R2 can be made a standby.
        "relay": [{"address": a(2), "certificate": p("live-agent.crt"),
                   "private_key": p("live-agent.pem"), "relay_ca": p("ca.crt")},
                  {"address": a(1), "key": p("agent-c.key")}],
        "service": [{"name": "c", "listen": [a(13)], "backend": [a(21)]}],
    }


BASE = {}
FILES = {"R": "relay.toml", "R2": "relay2.toml", "A": "agent.toml", "A3": "agent3.toml"}
BINS = {"R": RELAY, "R2": RELAY, "A": AGENT, "A3": AGENT, "B": AGENT}
SOCKS = {"R": "relay.sock", "R2": "relay2.sock", "A": "agent.sock", "A3": "agent3.sock",
         "B": "agent-b.sock"}


def write(name, doc):
    with open(p(FILES.get(name, f"{name}.toml")), "w") as fh:
        fh.write(render(doc))


def log(name):
    try:
        with open(p(f"{name}.log"), errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def start(name):
    f = FILES.get(name, f"{name}.toml")
    procs[name] = subprocess.Popen([BINS[name], "-c", p(f), "--log-target", "stderr"],
                                   stderr=open(p(f"{name}.log"), "ab"), stdin=subprocess.DEVNULL)


def stop(name):
    pr = procs.pop(name, None)
    if pr is None:
        return
    if pr.poll() is None:
        pr.send_signal(signal.SIGTERM)
        try:
            pr.wait(10)
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.wait(5)


def agents_of(relay):
    d = admin_or_none(p(SOCKS[relay]), "agents") or {}
    return d.get("agents", [])


def reload(name, secs=8):
    """SIGHUP and wait for the reload's outcome; returns the log it wrote."""
    before = log(name)
    marks = ("configuration reloaded", "reload failed")
    n0 = sum(before.count(m) for m in marks)
    procs[name].send_signal(signal.SIGHUP)
    wait_until(lambda: sum(log(name).count(m) for m in marks) > n0, secs)
    return log(name)[len(before):]


def ensure_side():
    """agent-b serves its service again; restarted if it did not come back."""
    if wait_until(lambda: ping(t(11)).startswith("pong"), 8, 0.2):
        return True
    stop("B")
    start("B")
    return wait_until(lambda: ping(t(11)).startswith("pong"), 20, 0.2)


def ensure_cert():
    """cert-agent connected to R2 again. A relay that refused it put its
    link in back-off (up to about 30 s): a reload that changes the pool
    makes the agent dial every relay at once, and the base file again.
    Never a restart: the second long session goes through this agent."""
    if wait_until(lambda: cert_agent_id("cert-agent"), 5, 0.1):
        return True
    doc = copy.deepcopy(BASE["A3"])
    doc["agent"]["pool"] += 1
    write("A3", doc)
    reload("A3")
    wait_until(lambda: cert_agent_id("cert-agent"), 10, 0.1)
    write("A3", BASE["A3"])
    reload("A3")
    return wait_until(lambda: cert_agent_id("cert-agent"), 10, 0.1)


def ensure(addr):
    return wait_until(lambda: ping(addr).startswith("pong"), 15, 0.2)


# ---------------------------------------------------------------- rows
# Each row: daemon (R, R2, A, A3), file key, how the file changes (edit on a
# copy of the base document), expectation, check (live effect) and, for
# restart-only, old (old value still in force). A check returns (ok, detail).

ROWS = {}


def row(side, key, proc, expect="live", name=None, final=False):
    """final: the check stops the daemon, so the row runs after all others."""
    def deco(fn):
        ROWS[f"{side} {key}"] = dict(proc=proc, expect=expect, fn=fn, logname=name or key,
                                     final=final)
        return fn
    return deco


def set_svc(doc, **kw):
    doc["service"][0].update(kw)


def set_hc(doc, **kw):
    doc["service"][1].update(kw)


# -- relay [relay]

@row("relay", "relay.threads", "R", "restart-only")
def _(doc):
    doc["relay"]["threads"] = 1
    return None, lambda: (admin(p("relay.sock"), "status").get("workers") == 2,
                          "status still says workers 2")


@row("relay", "relay.data_path", "R")
def _(doc):
    # Control first, on the running copy path: a session takes no pipe.
    pid = procs["R"].pid
    c0 = pipes(pid)
    bulk(t(10))
    c1 = pipes(pid)
    doc["relay"]["data_path"] = "splice"

    def check():
        before = pipes(pid)
        moved = bulk(t(10))
        after = pipes(pid)
        return moved and c1 == c0 and after > before, \
            f"relay pipes {c0} -> {c1} across a session on copy, {before} -> {after} on splice"
    return check, None


@row("relay", "relay.control_listen", "R", name="relay.control_listen")
def _(doc):
    doc["relay"]["control_listen"] = [a(1), a(3)]
    return lambda: (wait_until(lambda: accepts(t(3)), 3), f"{a(3)} accepts agents"), \
        lambda: (not accepts(t(3)), f"{a(3)} still closed")


@row("relay", "relay.allow_listen", "R")
def _(doc):
    doc["relay"]["allow_listen"] = [a(h, "1024-32767") for h in (10, 12, 14, 15)]
    return lambda: (wait_until(lambda: ping(t(11)) == "refused", 5),
                    f"agent-b's listener {a(11)} closed"), None


@row("relay", "relay.status_socket", "R")
def _(doc):
    doc["relay"]["status_socket"] = p("relay-new.sock")

    def check():
        ok = wait_until(lambda: admin_or_none(p("relay-new.sock"), "status") is not None, 3)
        return ok, "the new socket path answers status"
    return check, lambda: (admin_or_none(p("relay.sock"), "status") is not None,
                           "the old socket still answers")


def metrics_at(host):
    try:
        with urllib.request.urlopen(f"http://{NET}.{host}:{PORT}/metrics", timeout=3) as r:
            return b"sallyport_" in r.read()
    except OSError:
        return False


@row("relay", "relay.metrics_listen", "R")
def _(doc):
    doc["relay"]["metrics_listen"] = a(8)
    return lambda: (wait_until(lambda: metrics_at(8), 3), f"{a(8)} serves /metrics"), \
        lambda: (metrics_at(4), f"{a(4)} still serves /metrics")


@row("relay", "relay.drain_timeout_s", "R2", final=True)
def _(doc):
    doc["relay"]["drain_timeout_s"] = 1

    def check():
        # Its effect shows when the relay stops: R2 (the certificate-mode
        # relay, stopped after every other row) with a session open must
        # give up draining after about 1 s, not the default.
        h, line = hold(t(13), 60)
        if h is None:
            return False, f"no session through the relay to drain: {line}"
        t0 = time.monotonic()
        procs["R2"].send_signal(signal.SIGTERM)
        try:
            procs["R2"].wait(10)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - t0
        h.close()
        said = "for up to 1 s" in log("R2")
        return procs["R2"].poll() is not None and took < 5 and said, \
            f"stopped with a session open after {took:.1f} s (logged 'for up to 1 s': {said})"
    return check, None


# -- relay [auth]

def agent_b_cut(reason):
    """Check: agent-b disconnected with `reason` in the relay's event,
    agent-a kept."""
    mark = len(log("R"))

    def check():
        gone = wait_until(lambda: all(x["name"] != "agent-b" for x in agents_of("R")), 5)
        kept = any(x["name"] == "agent-a" for x in agents_of("R"))
        said = wait_until(lambda: re.search(r"agent-disconnected AGENT=agent-b .*" + reason,
                                            log("R")[mark:]), 2)
        return gone and kept and bool(said), \
            f"agent-b (at {NET}.77) disconnected: {gone}, with {reason}: {bool(said)}; " \
            f"agent-a kept: {kept}"
    return check, None


@row("relay", "auth.keys", "R")
def _(doc):
    doc["auth"]["keys"] = p("relay-no-b.keys")
    return agent_b_cut("REASON=key-removed")


def relay2_shows(crt):
    der, _ = tls_peer(t(2))
    return der == der_of(p(crt))


@row("relay", "auth.certificate", "R2", name="auth.certificate")
def _(doc):
    doc["auth"]["certificate"] = p("relay-b.crt")
    doc["auth"]["private_key"] = p("relay-b.pem")
    return lambda: (wait_until(lambda: relay2_shows("relay-b.crt"), 3),
                    "a new handshake sees the new certificate (path changed)"), \
        lambda: (relay2_shows("relay.crt"), "a new handshake still sees the old certificate")


@row("relay", "auth.private_key", "R2", name="auth.certificate")
def _(doc):
    # Same paths, new contents (a renewed certificate and key).
    shutil.copy2(p("relay-b.crt"), p("live-relay.crt"))
    shutil.copy2(p("relay-b.pem"), p("live-relay.pem"))
    doc["relay"]["drain_timeout_s"] = 6  # so the file differs too
    return lambda: (wait_until(lambda: relay2_shows("relay-b.crt"), 3),
                    "a new handshake sees the renewed certificate and key (contents changed)"), \
        lambda: (relay2_shows("relay.crt"), "a new handshake still sees the old certificate")


def agent_cert_refused(crt, key):
    der, refused = tls_peer(t(2), p(crt), p(key))
    return der is not None and refused is True


@row("relay", "auth.agent_ca", "R2", name="auth.certificate")
def _(doc):
    doc["auth"]["agent_ca"] = p("rogue-ca.crt")
    # Connected agents are verified again too: cert-agent's certificate is
    # of the old CA, so it is no longer connected.
    def check():
        old_refused = wait_until(lambda: agent_cert_refused("agent.crt", "agent.pem"), 4)
        new_accepted = not agent_cert_refused("rogue.crt", "rogue.pem")
        dropped = wait_until(lambda: not cert_agent_id("cert-agent"), 10)
        return old_refused and new_accepted and dropped, \
            f"a new handshake with a certificate of the old CA refused: {old_refused}, of " \
            f"the new CA accepted: {new_accepted}; the connected cert-agent dropped: {dropped}"
    return check, \
        lambda: (not agent_cert_refused("agent.crt", "agent.pem"),
                 "a certificate of the old CA is still accepted")


@row("relay", "auth.allow_agents", "R")
def _(doc):
    doc["auth"]["allow_agents"] = ["127.0.0.1/32"]
    return agent_b_cut("REASON=not-allowed")


@row("relay", "auth.deny_agents", "R")
def _(doc):
    doc["auth"]["deny_agents"] = [f"{NET}.77/32"]
    return agent_b_cut("REASON=not-allowed")


# -- relay [limits]

def settled(count):
    """A session count once only the long session is open (at most 5 s)."""
    wait_until(lambda: count() <= 1, 5)
    return count()


def over_limit(addr, src_hold=60, src_next=60):
    """Holds one session, then one more from src_next must be refused."""
    h, line = hold(addr, src_hold)
    if h is None:
        return False, f"the session within the limit was not served ({line})"
    try:
        r = ping(addr, src_next)
        return r != "refused" and not r.startswith("pong"), f"held one ({line}), the next: {r}"
    finally:
        h.close()


@row("relay", "limits.max_sessions", "R")
def _(doc):
    # Only the long session open: earlier rows' sessions may still be ending.
    n = settled(lambda: admin(p("relay.sock"), "status").get("sessions", 0))
    doc["limits"]["max_sessions"] = n + 1
    return lambda: over_limit(t(10)), None


@row("relay", "limits.max_sessions_per_client", "R")
def _(doc):
    doc["limits"]["max_sessions_per_client"] = 1

    def check():
        ok, why = over_limit(t(10), 62, 62)
        other = ping(t(10), 63)
        return ok and other.startswith("pong"), f"{why}; another client: {other}"
    return check, None


@row("relay", "limits.max_new_sessions_per_client_per_s", "R")
def _(doc):
    doc["limits"]["max_new_sessions_per_client_per_s"] = 2

    def check():
        got = [ping(t(10), 64) for _ in range(6)]
        return any(not g.startswith("pong") for g in got), f"6 at once from one client: {got}"
    return check, None


@row("relay", "limits.pending_timeout_ms", "R")
def _(doc):
    doc["limits"]["pending_timeout_ms"] = 800

    def check():
        # agent-b frozen: its idle channels go to the first clients, the
        # rest wait for a channel and must be dropped after about 0.8 s.
        b = procs["B"]
        clients = []
        b.send_signal(signal.SIGSTOP)
        try:
            for _ in range(12):
                try:
                    s = connect(t(11), 65, 2)
                    s.sendall(b"ping\n")
                    clients.append(s)
                except OSError:
                    pass
            start = time.monotonic()
            first = None
            while time.monotonic() - start < 3.5 and first is None:
                for s in clients:
                    s.settimeout(0.02)
                    try:
                        if s.recv(64) == b"":
                            first = time.monotonic() - start
                            break
                    except socket.timeout:
                        pass
                    except OSError:
                        first = time.monotonic() - start
                        break
        finally:
            b.send_signal(signal.SIGCONT)
            for s in clients:
                s.close()
        return first is not None and first < 3.5, \
            f"{len(clients)} clients of a frozen agent, first dropped after {first} s"
    return check, None


@row("relay", "limits.handshake_timeout_ms", "R")
def _(doc):
    doc["limits"]["handshake_timeout_ms"] = 600

    def check():
        s = connect(t(1), None, 2)
        took = closed_within(s, 5)
        s.close()
        return took is not None and 0.3 < took < 4, \
            f"a silent control connection closed after {took} s"
    return check, None


@row("relay", "limits.idle_timeout_s", "R")
def _(doc):
    doc["limits"]["idle_timeout_s"] = 2

    def check():
        h, line = hold(t(10), 66)
        if h is None:
            return False, f"not served: {line}"
        took = closed_within(h, 8)
        h.close()
        return took is not None and 0.8 < took < 7.5, f"an idle session closed after {took} s"
    return check, None


@row("relay", "limits.listener_grace_ms", "R")
def _(doc):
    doc["limits"]["listener_grace_ms"] = 5000

    def check():
        procs["B"].kill()
        procs["B"].wait(5)
        time.sleep(0.8)
        up = accepts(t(11))
        start("B")
        return up, f"agent-b killed: its listener {'still accepts' if up else 'CLOSED'} 0.8 s later"
    return check, None


def outbound_dest():
    return a(21)


@row("relay", "limits.max_outbound_sessions", "R")
def _(doc):
    doc["limits"]["max_outbound_sessions"] = 1
    return lambda: outbound_over_limit(), None


@row("relay", "limits.max_outbound_sessions_per_agent", "R")
def _(doc):
    doc["limits"]["max_outbound_sessions_per_agent"] = 1
    return lambda: outbound_over_limit(), None


def outbound_over_limit():
    st, s = http_connect(t(40), outbound_dest(), keep=True)
    if st != "200":
        return False, f"the first CONNECT got {st}"
    try:
        s.sendall(b"hold\n")
        line = readline(s)
        st2, _ = http_connect(t(40), outbound_dest())
        return st2 == "503", f"one tunnel open ({line}), the next CONNECT: {st2}"
    finally:
        s.close()


# -- relay [outbound]

@row("relay", "outbound.allow", "R")
def _(doc):
    doc.setdefault("outbound", {})["allow"] = [a(25)]
    return lambda: (http_connect(t(40), outbound_dest())[0] == "403",
                    f"CONNECT {outbound_dest()} now 403"), None


@row("relay", "outbound.connect_timeout_ms", "R")
def _(doc):
    doc.setdefault("outbound", {})["connect_timeout_ms"] = 500

    def check():
        t0 = time.monotonic()
        st, _ = http_connect(t(40), a(25))
        took = time.monotonic() - t0
        return st == "504" and took < 4, f"CONNECT to a silent host: {st} after {took:.1f} s"
    return check, None


# -- agent [agent]

@row("agent", "agent.name", "A")
def _(doc):
    doc["agent"]["name"] = "agent-a-new"
    return lambda: (wait_until(lambda: any(x["name"] == "agent-a-new" for x in agents_of("R")),
                               10), "the relay's agents lists agent-a-new"), None


@row("agent", "agent.status_socket", "A")
def _(doc):
    doc["agent"]["status_socket"] = p("agent-new.sock")
    return lambda: (wait_until(lambda: admin_or_none(p("agent-new.sock"), "status"), 3),
                    "the new socket path answers status"), \
        lambda: (admin_or_none(p("agent.sock"), "status") is not None,
                 "the old socket still answers")


@row("agent", "agent.metrics_listen", "A")
def _(doc):
    doc["agent"]["metrics_listen"] = a(9)
    return lambda: (wait_until(lambda: metrics_at(9), 3), f"{a(9)} serves /metrics"), \
        lambda: (metrics_at(7), f"{a(7)} still serves /metrics")


@row("agent", "agent.pool", "A")
def _(doc):
    doc["agent"]["pool"] = 6
    mark = len(log("R"))

    def check():
        seen = wait_until(lambda: re.search(r'agent "agent-a" connected .*pool 6',
                                            log("R")[mark:]), 10)
        target = [x.get("pool_target") for x in agents_of("R") if x["name"] == "agent-a"]
        return seen, f"the relay saw agent-a reconnect with pool 6 (agents: pool_target {target})"
    return check, None


@row("agent", "agent.threads", "A", "restart-only")
def _(doc):
    doc["agent"]["threads"] = 1
    return None, lambda: (admin(p("agent.sock"), "status").get("workers") == 2,
                          "status still says workers 2")


@row("agent", "agent.data_path", "A")
def _(doc):
    # Control first, on the running copy path: a session takes no pipe.
    pid = procs["A"].pid
    c0 = pipes(pid)
    bulk(t(10))
    c1 = pipes(pid)
    doc["agent"]["data_path"] = "splice"

    def check():
        before = pipes(pid)
        moved = bulk(t(10))
        after = pipes(pid)
        return moved and c1 == c0 and after > before, \
            f"agent pipes {c0} -> {c1} across a session on copy, {before} -> {after} on splice"
    return check, None


# -- agent [[relay]]

@row("agent", "relay.address", "A")
def _(doc):
    doc["relay"][0]["address"] = a(6)  # a forwarder to the same relay, from .78
    return lambda: (wait_until(lambda: any(
        x["name"] == "agent-a" and x["address"].startswith(f"{NET}.78:")
        for x in agents_of("R")), 10), f"agent-a reconnected through {a(6)}"), None


@row("agent", "relay.key", "A")
def _(doc):
    doc["relay"][0]["key"] = p("agent-a2.key")
    return lambda: (wait_until(lambda: any(
        x["name"] == "agent-a" and x["key_id"] == "agent-a2" for x in agents_of("R")), 10),
        "the relay sees agent-a with key agent-a2"), None


def cert_agent_id(kid):
    return any(x["key_id"] == kid for x in agents_of("R2"))


@row("agent", "relay.certificate", "A3")
def _(doc):
    shutil.copy2(p("agent-b.crt"), p("live-agent.crt"))
    shutil.copy2(p("agent-b.pem"), p("live-agent.pem"))
    doc["agent"]["pool"] = 3  # so the file differs too
    return lambda: (wait_until(lambda: cert_agent_id("cert-agent-b"), 10),
                    "the relay sees the renewed certificate (contents changed)"), None


@row("agent", "relay.private_key", "A3")
def _(doc):
    doc["relay"][0]["certificate"] = p("agent-b.crt")
    doc["relay"][0]["private_key"] = p("agent-b.pem")
    return lambda: (wait_until(lambda: cert_agent_id("cert-agent-b"), 10),
                    "the relay sees the certificate of the new key path"), None


@row("agent", "relay.relay_ca", "A3")
def _(doc):
    doc["relay"][0]["relay_ca"] = p("rogue-ca.crt")
    return lambda: (wait_until(lambda: not agents_of("R2"), 10),
                    "with a CA that did not sign the relay, the agent is no longer connected"), \
        None


@row("agent", "relay.standby", "A3")
def _(doc):
    doc["relay"][0]["standby"] = True
    # R, not a standby, is up: the agent lets R2 go.
    return lambda: (wait_until(lambda: not agents_of("R2"), 10) and
                    any(x["name"] == "cert-agent" for x in agents_of("R")),
                    "R2, now a standby, released while R stays connected"), None


# -- agent [[service]] (svc carries the long session; hc the health checks)

@row("agent", "service.name", "A")
def _(doc):
    set_svc(doc, name="svc-renamed")

    def named():
        d = admin_or_none(p("relay.sock"), "listeners") or {}
        return any(x.get("service") == "svc-renamed" for x in d.get("listeners", []))
    return lambda: (wait_until(named, 5), "the relay's listeners name svc-renamed"), None


@row("agent", "service.listen", "A")
def _(doc):
    set_svc(doc, listen=[a(12)])
    return lambda: (wait_until(lambda: ping(t(12)).startswith("pong") and
                               ping(t(10)) == "refused", 5),
                    f"{a(12)} serves, {a(10)} closed"), None


@row("agent", "service.backend", "A")
def _(doc):
    set_svc(doc, backend=[a(22)])
    return lambda: (wait_until(lambda: ping(t(10)).startswith("pong b2"), 5),
                    "new sessions reach the new backend b2"), None


@row("agent", "service.proxy_protocol", "A")
def _(doc):
    set_svc(doc, proxy_protocol="v1")
    return lambda: (wait_until(lambda: ping(t(10)).endswith("proxy=1"), 5),
                    "the backend sees a PROXY v1 header"), None


@row("agent", "service.allow_clients", "A")
def _(doc):
    set_svc(doc, allow_clients=[f"{NET}.50/32", f"{NET}.60/32"])

    def check():
        no, yes = ping(t(10), 67), ping(t(10), 60)
        return not no.startswith("pong") and yes.startswith("pong"), \
            f"{NET}.67 now gets {no}, {NET}.60 {yes}"
    return check, None


@row("agent", "service.deny_clients", "A")
def _(doc):
    set_svc(doc, deny_clients=[f"{NET}.67/32"])

    def check():
        no, yes = ping(t(10), 67), ping(t(10), 60)
        return not no.startswith("pong") and yes.startswith("pong"), \
            f"{NET}.67 now gets {no}, {NET}.60 {yes}"
    return check, None


@row("agent", "service.max_sessions", "A")
def _(doc):
    n = settled(lambda: next(x["sessions"] for x in admin(p("agent.sock"), "services")["services"]
                             if x["name"] == "svc"))
    set_svc(doc, max_sessions=n + 1)
    return lambda: over_limit(t(10), 60, 61), None


@row("agent", "service.affinity_s", "A")
def _(doc):
    set_svc(doc, backend=[a(21), a(22)], affinity_s=300)

    def check():
        # Without affinity sessions go round robin over b1 and b2; with it
        # one client stays on one backend.
        got = [ping(t(10), 68) for _ in range(4)]
        return len({g.split(" proxy")[0] for g in got}) == 1 and got[0].startswith("pong"), \
            f"4 sessions of one client: {got}"
    return check, None


@row("agent", "service.affinity_group", "A")
def _(doc):
    # svc joins svc2's group g0 and lists only host .22. A client holding a
    # session on host .21 through svc2 is then held there for svc too, and
    # refused (affinity-held); in separate groups svc would serve it on .22.
    set_svc(doc, backend=[a(22)], affinity_s=300, affinity_group="g0")

    def check():
        for c in range(70, 78):
            h, line = hold(t(15), c)
            if h is None:
                return False, f"svc2 did not serve: {line}"
            if line != "held b1":
                h.close()
                continue
            try:
                held, free = ping(t(10), c), ping(t(10), 78)
            finally:
                h.close()
            return not held.startswith("pong") and free.startswith("pong b2"), \
                f"a client held on host .21 by svc2 gets {held} on svc; a free client {free}"
        return False, "no client of 8 hashed to host .21 on svc2"
    return check, None


def hc_check():
    d = admin_or_none(p("agent.sock"), "services") or {}
    for s in d.get("services", []):
        if s["name"] == "hc" and s.get("backends"):
            return s["backends"][0].get("check")
    return None


@row("agent", "service.health_check_interval_ms", "A")
def _(doc):
    set_hc(doc, health_check_interval_ms=200)
    return lambda: (wait_until(lambda: hc_check() == "up", 5),
                    f"services: check {hc_check()} (was off)"), None


def syn_sent(pid, host):
    """Sockets of process `pid` waiting for a SYN-ACK from NET.host:PORT.
    ss filters in the kernel: /proc/net/tcp on a busy test host has tens of
    thousands of lines and is too slow to sample a 150 ms window."""
    out = subprocess.run(["ss", "-tnHe", "state", "syn-sent", "dst", a(host)],
                         capture_output=True, text=True).stdout
    cand = re.findall(r"ino:(\d+)", out)
    if not cand:
        return 0
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return sum(i in inodes for i in cand)


@row("agent", "service.health_check_timeout_ms", "A")
def _(doc):
    # Checks of a host that never answers a SYN: each one waits for its
    # timeout in SYN-SENT. 150 ms of every 1000 ms, where the default
    # (half the interval) would be 500.
    set_hc(doc, backend=[a(25)], health_check_interval_ms=1000, health_check_timeout_ms=150)

    def check():
        pid = procs["A"].pid
        samples = []
        end = time.monotonic() + 4
        while time.monotonic() < end:
            samples.append(syn_sent(pid, 25) > 0)
            time.sleep(0.01)
        share = sum(samples) / max(1, len(samples))
        return 0 < share < 0.32, \
            f"checks of a silent host spent {share:.0%} of the time connecting " \
            f"(timeout 150 of 1000 ms; {len(samples)} samples)"
    return check, None


def timed_transition(want, secs=10):
    t0 = time.monotonic()
    ok = wait_until(lambda: hc_check() == want, secs, 0.05)
    return ok, time.monotonic() - t0


@row("agent", "service.health_check_rise", "A")
def _(doc):
    B4.stop()
    set_hc(doc, health_check_interval_ms=200, health_check_fall=1, health_check_rise=10)

    def check():
        if not wait_until(lambda: hc_check() == "down", 5):
            return False, f"a dead backend is not down: {hc_check()}"
        B4.start()
        ok, took = timed_transition("up")
        return ok and 1.4 < took < 8, f"back up after {took:.1f} s (10 checks of 200 ms)"
    return check, None


@row("agent", "service.health_check_fall", "A")
def _(doc):
    set_hc(doc, health_check_interval_ms=200, health_check_rise=1, health_check_fall=10)

    def check():
        if not wait_until(lambda: hc_check() == "up", 5):
            return False, f"a live backend is not up: {hc_check()}"
        B4.stop()
        ok, took = timed_transition("down")
        B4.start()
        return ok and 1.4 < took < 8, f"down after {took:.1f} s (10 checks of 200 ms)"
    return check, None


# -- agent [outbound]

def socks_greets(host):
    try:
        s = connect(t(host), 60, 2)
        s.sendall(b"\x05\x01\x00")
        ok = s.recv(2) == b"\x05\x00"
        s.close()
        return ok
    except OSError:
        return False


@row("agent", "outbound.socks5_listen", "A", "either")
def _(doc):
    doc.setdefault("outbound", {})["socks5_listen"] = a(43)
    return lambda: (wait_until(lambda: socks_greets(43), 3), f"SOCKS5 answers on {a(43)}"), \
        lambda: (socks_greets(41), f"SOCKS5 still answers on {a(41)}")


@row("agent", "outbound.http_proxy_listen", "A", "either")
def _(doc):
    doc.setdefault("outbound", {})["http_proxy_listen"] = a(42)
    return lambda: (wait_until(lambda: http_connect(t(42), outbound_dest())[0] == "200", 3),
                    f"HTTP CONNECT answers on {a(42)}"), \
        lambda: (http_connect(t(40), outbound_dest())[0] == "200",
                 f"HTTP CONNECT still answers on {a(40)}")


@row("agent", "outbound.users", "A")
def _(doc):
    doc.setdefault("outbound", {})["users"] = p("users")

    def check():
        no = http_connect(t(40), outbound_dest())[0]
        yes = http_connect(t(40), outbound_dest(), auth="u:secret")[0]
        return no == "407" and yes == "200", f"without credentials {no}, with {yes}"
    return check, None


@row("agent", "outbound.allow_clients", "A")
def _(doc):
    doc.setdefault("outbound", {})["allow_clients"] = [f"{NET}.60/32"]

    def check():
        no = http_connect(t(40), outbound_dest(), src=67)[0]
        yes = http_connect(t(40), outbound_dest(), src=60)[0]
        return no == "403" and yes == "200", f"{NET}.67 gets {no}, {NET}.60 {yes}"
    return check, None


@row("agent", "outbound.deny_clients", "A")
def _(doc):
    doc.setdefault("outbound", {})["deny_clients"] = [f"{NET}.67/32"]

    def check():
        no = http_connect(t(40), outbound_dest(), src=67)[0]
        yes = http_connect(t(40), outbound_dest(), src=60)[0]
        return no == "403" and yes == "200", f"{NET}.67 gets {no}, {NET}.60 {yes}"
    return check, None



# ---------------------------------------------------------------- run


def restore(proc):
    """The original file (and files the row rewrote in place), reloaded."""
    for f in ("relay.crt", "relay.pem", "agent.crt", "agent.pem"):
        if open(p(f), "rb").read() != open(p("live-" + f), "rb").read():
            shutil.copy2(p(f), p("live-" + f))
    write(proc, BASE[proc])
    reload(proc)


def run_row(rid):
    r = ROWS[rid]
    proc = r["proc"]
    doc = copy.deepcopy(BASE[proc])
    check, old = r["fn"](doc)
    write(proc, doc)
    out = reload(proc)
    named = "restart-only" in out and r["logname"] in out
    label = rid
    try:
        if r["expect"] == "restart-only":
            ok, why = old() if named else (False, "not named restart-only")
            ok = ok and named
        elif r["expect"] == "either":
            if named:
                ok, why = old()
                why = "restart-only, named; " + why
            else:
                ok, why = check()
        else:
            if named:
                ok, why = False, "the daemon names it restart-only"
                if old:
                    kept, w = old()
                    why += f" ({w}: {kept})"
            elif "reload failed" in out and r["logname"] not in out:
                ok, why = False, "reload failed: " + out.strip().splitlines()[-1][:300]
            else:
                ok, why = check()
    except Exception as e:  # a check that crashed is a failing row
        ok, why = False, f"check raised {type(e).__name__}: {e}"
    if not ok and not why.startswith(("the daemon", "reload failed", "check raised")):
        why = "expected: " + why
    if rid in KNOWN_BUGS and ok:
        ok, why = False, f"passes now: remove it from KNOWN_BUGS ({why})"
    elif rid in KNOWN_BUGS:
        print(f"FAIL (known bug, not counted: {KNOWN_BUGS[rid]}): {label}: {why}", flush=True)
        known.append(rid)
        ok = None
    if ok:
        print(f"ok: {label}: {why}", flush=True)
    elif ok is None:
        pass
    else:
        print(f"FAIL: {label}: {why}", flush=True)
        failures.append(f"{label}: {why}")
    if r["final"]:
        return
    restore(proc)
    # Back to the base state before the next row: agent-b (cut by relay
    # rows), svc, cert-agent.
    back = {"R": ("agent-b's service", ensure_side),
            "A": ("the service svc", lambda: ensure(t(10))),
            "R2": ("cert-agent on R2", ensure_cert),
            "A3": ("cert-agent on R2", ensure_cert)}
    if proc in back and not back[proc][1]():
        print(f"FAIL: after {label}: {back[proc][0]} did not come back", flush=True)
        failures.append(f"after {label}: {back[proc][0]} did not come back")


def end_long(what, ls):
    intact, why = ls.finish()
    if intact:
        print(f"ok: {what}, across every reload: {why}", flush=True)
    else:
        print(f"FAIL: {what}, across the reloads: {why}", flush=True)
        failures.append(f"{what}: {why}")


def main():
    make_files()
    global B4
    backends = [Backend("b1", t(21)), Backend("b2", t(22))]
    B4 = Backend("b4", t(24))
    # Open for the whole run (the forwarders' threads keep them alive too).
    servers.extend([Blackhole(t(25)), Forwarder(t(5), t(1), f"{NET}.77"),
                    Forwarder(t(6), t(1), f"{NET}.78")])
    BASE.update(R=relay_base(), R2=relay2_base(), A=agent_base(), A3=agent3_base())
    for k, v in BASE.items():
        write(k, v)
    write("B", agent_b_conf())
    covered = {"relay": RELAY_KEYS, "agent": AGENT_KEYS}
    missing = [f"{side} {k}" for side, keys in covered.items() for k in sorted(keys)
               if f"{side} {k}" not in ROWS]
    for m in missing:
        print(f"FAIL: {m}: a key of the file with no reload row in this table", flush=True)
        failures.append(f"{m}: no reload row")
    long = long2 = None
    t0 = time.monotonic()
    try:
        for name in ("R", "R2", "A", "B", "A3"):
            start(name)
        if not (ensure(t(10)) and ensure(t(11)) and ensure(t(13))):
            raise RuntimeError("the services did not come up")
        long = LongSession(t(10), 50)
        # A second one through the certificate-mode relay and agent, ended
        # before the last rows stop R2.
        long2 = LongSession(t(13), 51)
        order = [k for k in ROWS if not ROWS[k]["final"]] + [k for k in ROWS if ROWS[k]["final"]]
        for rid in order:
            if long2 and ROWS[rid]["final"]:
                end_long("the session through R2 and cert-agent", long2)
                long2 = None
            side, key = rid.split()
            if ONLY and rid not in ONLY and key not in ONLY:
                continue
            if key not in covered[side]:
                print(f"unused: {rid}: not a key of the file yet", flush=True)
                continue
            for name, pr in procs.items():
                if pr.poll() is not None:
                    raise RuntimeError(f"{name} exited ({pr.returncode}) before row {rid}")
            run_row(rid)
        if long2:
            end_long("the session through R2 and cert-agent", long2)
            long2 = None
        end_long("the long session through R and agent-a", long)
        long = None
    except Exception as e:
        failures.append(f"{type(e).__name__}: {e}")
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
    finally:
        for ls in (long, long2):
            if ls:
                ls.stop = True
        if failures:
            for name in ("R", "A", "R2", "A3", "B"):
                print(f"--- {name}.log (last 15 lines)")
                print("\n".join(log(name).splitlines()[-15:]))
        for name in list(procs):
            stop(name)
        for b in backends:
            b.stop()
        if os.environ.get("RELOAD_TABLE_KEEP_DIR"):
            print("kept", D)
        else:
            shutil.rmtree(D, ignore_errors=True)
    print(f"{len(failures)} failure(s), "
          f"{len(known)} known bug(s) ({', '.join(known)}), "
          f"{time.monotonic() - t0:.0f} s")
    return 1 if failures else 0


B4 = None
# meson's timeout sends SIGTERM: unwind through main's finally, which stops
# every daemon by its pid.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Binary upgrade (issue 15, SIGUSR2) with the real daemons on 127.0.0.0/8.
#
#   relay   a relay, an agent and a backend; a 256 MiB transfer each way in
#           flight (throttled so it spans the upgrade) and a client
#           connecting in a tight loop; SIGUSR2 to the relay. The transfer
#           completes byte-exact (sha256 at both ends), the loop sees 0
#           refused or failed connections, the status socket answers from
#           the new pid, systemd's MAINPID goes to the new pid (a fake
#           NOTIFY_SOCKET records it), the old process exits by itself
#           once its session ended, and new sessions are served after it.
#   agent   the same with SIGUSR2 to the agent: the relay replaces the old
#           agent's control connections with the new one's, listeners stay.
#   broken  the relay started from a copy of its binary; a configuration
#           error, then a file that is not a binary: each upgrade fails
#           (upgrade-failed), the old process goes on serving, and the loop
#           still sees 0 refused.
#
# Usage: upgrade_test.py RELAY_BIN AGENT_BIN [CASE...]. Standard library only;
# every wait has a deadline; every process started is stopped by its PID.
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import json

RELAY, AGENT = sys.argv[1], sys.argv[2]
CASES = sys.argv[3:] or ["relay", "agent", "broken"]
BIG = 256 * 1024 * 1024
CHUNK = 256 * 1024
RATE = 48 * 1024 * 1024  # bytes/s each way: about 5.5 s for 256 MiB
failures = []


def fail(msg):
    print("FAIL:", msg, flush=True)
    failures.append(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stream(seed):
    """Deterministic bytes: CHUNK-sized blocks of sha256 counter output."""
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(CHUNK // 32))
    i = 0
    while True:
        # Vary each block cheaply so a misplaced block shows in the hash.
        yield i.to_bytes(8, "big") + block[8:]
        i += 1


def admin(sock_path, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall((json.dumps({"v": 1, "cmd": cmd}) + "\n").encode())
    answer = json.loads(s.makefile().readline())
    s.close()
    return answer.get("data", {})


class Backend:
    """Mode byte 'P': answer "pong\\n" to "ping\\n" and close. Mode 'B':
    send BIG bytes of stream("down") while reading BIG bytes, then send the
    sha256 of what was read."""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(addr)
        self.sock.listen(512)
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        self.sock.settimeout(0.5)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.settimeout(120)
            mode = c.recv(1)
            if mode == b"P":
                buf = b""
                while not buf.endswith(b"\n"):
                    d = c.recv(64)
                    if not d:
                        return
                    buf += d
                c.sendall(b"pong\n")
            elif mode == b"B":
                h = hashlib.sha256()
                got = [0]

                def reader():
                    while got[0] < BIG:
                        d = c.recv(1 << 20)
                        if not d:
                            break
                        h.update(d)
                        got[0] += len(d)

                t = threading.Thread(target=reader, daemon=True)
                t.start()
                sent = 0
                start = time.monotonic()
                for block in stream("down"):
                    if sent >= BIG:
                        break
                    c.sendall(block)
                    sent += len(block)
                    ahead = sent / RATE - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
                t.join(120)
                c.sendall(h.digest())
        except OSError:
            pass
        finally:
            c.close()


def big_transfer(addr, result):
    """Both directions at once; result['ok'] when both hashes match."""
    try:
        s = socket.create_connection(addr, timeout=10)
        s.settimeout(120)
        s.sendall(b"B")
        up = hashlib.sha256()
        down = hashlib.sha256()
        want_down = hashlib.sha256()
        gen = stream("down")
        got = bytearray()
        total = [0]

        def reader():
            while total[0] < BIG + 32:
                d = s.recv(1 << 20)
                if not d:
                    break
                if total[0] + len(d) > BIG:
                    keep = BIG - total[0] if total[0] < BIG else 0
                    down.update(d[:keep])
                    got.extend(d[keep:])
                else:
                    down.update(d)
                total[0] += len(d)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        sent = 0
        start = time.monotonic()
        for block in stream("up"):
            if sent >= BIG:
                break
            s.sendall(block)
            up.update(block)
            sent += len(block)
            ahead = sent / RATE - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        t.join(120)
        n = 0
        for block in stream("down"):
            if n >= BIG:
                break
            want_down.update(block)
            n += len(block)
        result["down_bytes"] = min(total[0], BIG)
        result["ok_down"] = down.digest() == want_down.digest()
        result["ok_up"] = bytes(got[:32]) == up.digest()
        s.close()
    except OSError as e:
        result["error"] = str(e)


class Looper:
    """Connects in a tight loop; counts answered, refused and failed."""

    def __init__(self, addr):
        self.addr = addr
        self.ok = self.refused = self.failed = 0
        self.errors = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                s = socket.create_connection(self.addr, timeout=15)
                s.settimeout(15)
                s.sendall(b"Pping\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    d = s.recv(64)
                    if not d:
                        break
                    buf += d
                s.close()
                if buf == b"pong\n":
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(f"answer {buf!r}")
            except ConnectionRefusedError:
                self.refused += 1
            except OSError as e:
                self.failed += 1
                self.errors.append(str(e))
            time.sleep(0.002)

    def finish(self):
        self.stop = True
        self.thread.join(30)


class NotifySocket:
    """A fake systemd NOTIFY_SOCKET: records every datagram."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stop:
            try:
                self.messages.append(self.sock.recv(4096).decode(errors="replace"))
            except OSError:
                pass


def wait_until(pred, secs, step=0.05):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


class Env:
    def __init__(self, name, idx):
        self.dir = tempfile.mkdtemp(prefix=f"sallyport-upgrade-{name}-")
        self.net = f"127.{60 + idx}.{(os.getpid() % 200) + 20}"
        self.public = (f"{self.net}.10", 20000 + idx)
        self.backend_addr = (f"{self.net}.21", 20100 + idx)
        self.control = free_port()
        self.procs = []  # (pid, Popen)
        self.notify = NotifySocket(os.path.join(self.dir, "notify"))
        self.relay_bin = RELAY
        key = subprocess.run([RELAY, "--gen-key", "up-agent"], capture_output=True,
                             text=True, check=True).stdout
        for f in ("agent.key", "relay.keys"):
            with open(os.path.join(self.dir, f), "w") as fh:
                fh.write(key)
            os.chmod(os.path.join(self.dir, f), 0o600)
        self.backend = Backend(self.backend_addr)

    def path(self, f):
        return os.path.join(self.dir, f)

    def write_relay_conf(self, extra=""):
        with open(self.path("relay.toml"), "w") as fh:
            fh.write(f"""[relay]
threads = 2
control_listen = ["127.0.0.1:{self.control}"]
allow_listen = ["{self.net}.10:1024-65535"]
status_socket = "{self.path('relay.sock')}"
drain_timeout_s = 60
[auth]
keys = "{self.path('relay.keys')}"
[limits]
pending_timeout_ms = 10000
{extra}""")

    def write_agent_conf(self):
        with open(self.path("agent.toml"), "w") as fh:
            fh.write(f"""[agent]
name = "up-agent"
threads = 2
pool = 4
status_socket = "{self.path('agent.sock')}"
[[relay]]
address = "127.0.0.1:{self.control}"
key = "{self.path('agent.key')}"
[[service]]
name = "up"
listen = ["{self.public[0]}:{self.public[1]}"]
backend = ["{self.backend_addr[0]}:{self.backend_addr[1]}"]
""")

    def start(self, binary, conf, log):
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        p = subprocess.Popen([binary, "-c", self.path(conf), "--log-target", "stderr"],
                             stderr=open(self.path(log), "ab"), stdin=subprocess.DEVNULL,
                             env=env)
        self.procs.append(p.pid)
        return p

    def log(self, name):
        with open(self.path(name), errors="replace") as fh:
            return fh.read()

    def served(self):
        try:
            s = socket.create_connection(self.public, timeout=5)
            s.settimeout(10)
            s.sendall(b"Pping\n")
            ok = s.recv(16) == b"pong\n"
            s.close()
            return ok
        except OSError:
            return False

    def up(self):
        self.write_relay_conf()
        self.write_agent_conf()
        self.relay = self.start(self.relay_bin, "relay.toml", "relay.log")
        self.agent = self.start(AGENT, "agent.toml", "agent.log")
        return wait_until(self.served, 20, 0.2)

    def new_pid(self, log, old_pid, secs=30):
        """The pid the old process logged as its successor."""
        found = []

        def look():
            m = re.findall(r"upgrade: started pid (\d+)", self.log(log))
            if m:
                found.append(int(m[-1]))
            return bool(found)

        wait_until(look, secs, 0.1)
        pid = found[-1] if found else None
        if pid is not None and pid not in self.procs:
            self.procs.append(pid)
        return pid

    def close(self):
        for pid in reversed(self.procs):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for pid in self.procs:
            wait_until(lambda: not alive(pid), 10, 0.1)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self.backend.stop = True
        self.notify.stop = True
        if os.environ.get("UPGRADE_KEEP_DIR"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def upgrade_case(name, idx, which):
    env = Env(name, idx)
    try:
        if not env.up():
            fail(f"{name}: the service did not come up")
            print(env.log("relay.log")[-2000:], env.log("agent.log")[-2000:])
            return
        target = env.relay if which == "relay" else env.agent
        log = "relay.log" if which == "relay" else "agent.log"
        sock = env.path("relay.sock" if which == "relay" else "agent.sock")
        big = {}
        bt = threading.Thread(target=big_transfer, args=(env.public, big), daemon=True)
        bt.start()
        loop = Looper(env.public)
        time.sleep(1.5)
        before = loop.ok
        os.kill(target.pid, signal.SIGUSR2)
        new = env.new_pid(log, target.pid)
        if new is None:
            fail(f"{name}: no 'upgrade: started pid' in {log}")
            print(env.log(log)[-3000:])
            return
        if not wait_until(lambda: "is ready and serves new connections" in env.log(log), 30):
            fail(f"{name}: the new process never became ready")
        if not wait_until(lambda: admin(sock, "status").get("pid") == new, 10, 0.1):
            fail(f"{name}: the status socket does not answer from the new pid {new}")
        if not wait_until(lambda: any(f"MAINPID={new}" in m for m in env.notify.messages), 10):
            fail(f"{name}: no MAINPID={new} on NOTIFY_SOCKET: {env.notify.messages[-5:]}")
        bt.join(180)
        if not big.get("ok_up") or not big.get("ok_down"):
            fail(f"{name}: the 256 MiB transfer across the upgrade is not byte-exact: {big}")
        else:
            print(f"ok: {name}: 256 MiB each way across the upgrade, sha256 equal at both ends")
        # The old process ends by itself once its session is over.
        if not wait_until(lambda: target.poll() is not None, 60, 0.2):
            fail(f"{name}: the old process {target.pid} did not exit by itself")
        else:
            print(f"ok: {name}: the old process exited by itself ({target.returncode})")
        time.sleep(1.0)
        after_old = loop.ok
        time.sleep(1.5)
        loop.finish()
        if loop.refused or loop.failed:
            fail(f"{name}: connect loop: {loop.refused} refused, {loop.failed} failed "
                 f"({loop.errors[:3]}), {loop.ok} ok")
        else:
            print(f"ok: {name}: connect loop {loop.ok} served ({before} before SIGUSR2), "
                  "0 refused, 0 failed")
        if loop.ok <= after_old:
            fail(f"{name}: nothing served after the old process exited")
        if not env.served():
            fail(f"{name}: a new session after the upgrade was not served")
        if not alive(new):
            fail(f"{name}: the new process {new} is gone")
        # Every process started is stopped by its pid: the new one too.
    finally:
        if failures:
            for f in ("relay.log", "agent.log"):
                print(f"--- {name}: {f} (last 25 lines)")
                print("\n".join(env.log(f).splitlines()[-25:]))
        env.close()


def broken_case(idx):
    name = "broken"
    env = Env(name, idx)
    try:
        env.relay_bin = env.path("sallyport-relay")
        shutil.copy2(RELAY, env.relay_bin)
        if not env.up():
            fail(f"{name}: the service did not come up")
            return
        loop = Looper(env.public)
        pid = env.relay.pid
        # 1: a configuration the new process refuses.
        env.write_relay_conf("no_such_key = 1\n")
        os.kill(pid, signal.SIGUSR2)
        if not wait_until(lambda: "upgrade failed, still serving" in env.log("relay.log"), 30):
            fail(f"{name}: no upgrade-failed after a bad configuration")
        env.write_relay_conf()
        # 2: the file at the binary's path is not a program.
        os.replace(env.relay_bin, env.relay_bin + ".good")
        with open(env.relay_bin, "w") as fh:
            fh.write("#!/bin/false\n")
        os.chmod(env.relay_bin, 0o755)
        os.kill(pid, signal.SIGUSR2)
        if not wait_until(lambda: env.log("relay.log").count("upgrade failed, still serving")
                          >= 2, 30):
            fail(f"{name}: no upgrade-failed for a broken binary")
        time.sleep(1.0)
        loop.finish()
        if env.relay.poll() is not None:
            fail(f"{name}: the old relay exited")
        if loop.refused or loop.failed or loop.ok == 0:
            fail(f"{name}: connect loop: {loop.refused} refused, {loop.failed} failed, "
                 f"{loop.ok} ok")
        else:
            print(f"ok: {name}: two failed upgrades, the relay kept serving: {loop.ok} served, "
                  "0 refused")
        if not env.served() or admin(env.path("relay.sock"), "status").get("pid") != pid:
            fail(f"{name}: the old relay does not answer after the failed upgrades")
    finally:
        if failures:
            print("--- broken: relay.log (last 25 lines)")
            print("\n".join(env.log("relay.log").splitlines()[-25:]))
        env.close()


for i, case in enumerate(CASES):
    if case in ("relay", "agent"):
        upgrade_case(case, i, case)
    elif case == "broken":
        broken_case(i)
    else:
        fail(f"unknown case {case}")
print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)

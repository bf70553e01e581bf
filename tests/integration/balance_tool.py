#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# The helpers of balance_test.sh: status-socket queries, TCP clients that
# hold many connections at once, an identity backend, and the FTP verdict.
# Standard library only; every wait has a deadline.
#
#   query SOCKET CMD                       print the answer's data as JSON
#   wait-listener SOCKET ADDR N SECS [SERVICE...]
#                                          wait until the relay's listener on
#                                          each SERVICE lists N agents and the
#                                          relay has N agents with idle channels
#   backends FILE NAME=HOST:PORT...         serve each address: send NAME and a
#                                          newline, then wait for EOF
#   burst SOCKET HOST PORT PER_SRC SRC...  PER_SRC connections from each SRC at
#                                          once; print "SRC AGENT BACKEND" each
#   ftp-verdict MANIFEST SRV1_DIR SRV2_DIR CLIENTS
#                                          classify every download attempt
#   ftp-log AGENT_LOG                      where the agent sent control and data
#   ftp-stray RELAY_IP NET SRV1_DIR SRV2_DIR
#                                          a data connection for the other server
import json
import os
import re
import socket
import sys
import threading
import time


def admin(sock_path, cmd, args=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    req = {"v": 1, "cmd": cmd}
    if args:
        req["args"] = args
    s.sendall((json.dumps(req) + "\n").encode())
    answer = json.loads(s.makefile().readline())
    s.close()
    if not answer.get("ok"):
        raise RuntimeError(f"{cmd}: {answer}")
    return answer.get("data", {})


def cmd_query(sock_path, cmd):
    print(json.dumps(admin(sock_path, cmd)))


def cmd_wait_listener(sock_path, addr, n, secs, *services):
    n = int(n)
    deadline = time.monotonic() + float(secs)
    last = None
    while time.monotonic() < deadline:
        try:
            listeners = admin(sock_path, "listeners").get("listeners", [])
            agents = admin(sock_path, "agents").get("agents", [])
            ready = all(
                any(
                    l.get("service") == svc and l.get("address", "").startswith(addr)
                    and len(l.get("agents") or []) >= n and l.get("state") == "open"
                    for l in listeners
                )
                for svc in services
            )
            pooled = sum(1 for a in agents if (a.get("pool_idle") or 0) > 0)
            last = (listeners, agents)
            if ready and len(agents) >= n and pooled >= n:
                return 0
        except (OSError, RuntimeError, ValueError) as e:
            last = str(e)
        time.sleep(0.2)
    print(f"wait-listener: not ready after {secs}s: {last}", file=sys.stderr)
    return 1


def cmd_backends(port_file, *specs):
    socks = []
    for spec in specs:
        name, addr = spec.split("=", 1)
        host, port = addr.rsplit(":", 1)
        srv = socket.create_server((host, int(port)), backlog=256)
        socks.append((name, srv))

    def serve(name, c):
        try:
            c.sendall(f"{name}\n".encode())
            c.settimeout(60)
            while c.recv(4096):
                pass
        except OSError:
            pass
        c.close()

    def accept_loop(name, srv):
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(name, c), daemon=True).start()

    for name, srv in socks:
        threading.Thread(target=accept_loop, args=(name, srv), daemon=True).start()
    with open(port_file + ".tmp", "w") as f:
        f.write("up\n")
    os.rename(port_file + ".tmp", port_file)
    while True:
        time.sleep(3600)


def cmd_burst(sock_path, host, port, per_src, *srcs):
    """All connections are open at once while the relay is asked which agent
    holds each of them; a connection that gets no name prints "-"."""
    port, per_src = int(port), int(per_src)
    conns = []  # (src, socket or None)
    lock = threading.Lock()

    def connect(src):
        try:
            s = socket.create_connection((host, port), timeout=15, source_address=(src, 0))
        except OSError:
            s = None
        with lock:
            conns.append((src, s))

    threads = [threading.Thread(target=connect, args=(src,)) for src in srcs for _ in range(per_src)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {}
    for src, s in conns:
        if s is None:
            continue
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                b = s.recv(64)
                if not b:
                    break
                buf += b
        except OSError:
            pass
        names[id(s)] = buf.decode(errors="replace").strip() or "-"
    agent_of = {}
    try:
        for row in admin(sock_path, "sessions").get("sessions", []):
            agent_of[row.get("client")] = row.get("agent") or "-"
    except (OSError, RuntimeError, ValueError) as e:
        print(f"burst: sessions query failed: {e}", file=sys.stderr)
    for src, s in conns:
        if s is None:
            print(f"{src} refused -")
            continue
        local = s.getsockname()
        print(f"{src} {agent_of.get(f'{local[0]}:{local[1]}', '-')} {names[id(s)]}")
        s.close()


def cmd_ftp_verdict(manifest, srv1, srv2, clients):
    """MANIFEST lines: CLIENT ATTEMPT CONTROL_SERVER(1|2|-) OUTPUT_PATH RC.
    Prints one line per finding and a summary; exit 0 when every client has
    a correct download and no attempt holds data it should not."""
    clients = int(clients)
    files = {}  # (server, client) -> bytes
    for server, d in ((1, srv1), (2, srv2)):
        for c in range(clients):
            with open(os.path.join(d, f"client{c}.bin"), "rb") as f:
                files[(server, c)] = f.read()
    ok_clients = set()
    counts = {"ok": 0, "empty": 0, "short": 0, "partial-own": 0, "wrong-server": 0, "foreign": 0,
              "garbage": 0, "unknown-server": 0}
    with open(manifest) as f:
        rows = [line.split() for line in f if line.strip()]
    for client, attempt, server, path, _rc in rows:
        c = int(client)
        try:
            with open(path, "rb") as f:
                got = f.read()
        except OSError:
            got = b""
        if not got:
            counts["empty"] += 1
            continue
        exact = [k for k, v in files.items() if v == got]
        if len(got) < 64 and not exact:
            counts["short"] += 1  # too short to tell whose it is
            continue
        owners = [k for k, v in files.items() if v.startswith(got) or got.startswith(v)]
        if server not in ("1", "2"):
            counts["unknown-server"] += 1
            print(f"client{c} attempt {attempt}: {len(got)} bytes but the control "
                  f"connection's server is unknown")
            continue
        s = int(server)
        other = 3 - s
        if exact == [(s, c)]:
            counts["ok"] += 1
            ok_clients.add(c)
        elif owners == [(s, c)]:
            counts["partial-own"] += 1  # a cut transfer of its own file: no leak
        elif owners and all(k == (other, c) for k in owners):
            counts["wrong-server"] += 1
            print(f"client{c} attempt {attempt}: control on server{s}, got {len(got)} "
                  f"bytes of client{c}.bin from server{other}")
        elif owners:
            counts["foreign"] += 1
            who = ", ".join(f"client{k[1]}.bin of server{k[0]}" for k in owners)
            print(f"client{c} attempt {attempt}: control on server{s}, got {len(got)} "
                  f"bytes of ANOTHER client's file: {who}")
        else:
            counts["garbage"] += 1
            print(f"client{c} attempt {attempt}: {len(got)} bytes that match no file")
    missing = sorted(set(range(clients)) - ok_clients)
    print("attempts: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"clients with a correct download: {len(ok_clients)}/{clients}"
          + (f" (missing: {' '.join(f'client{c}' for c in missing)})" if missing else ""))
    bad = counts["wrong-server"] + counts["foreign"] + counts["garbage"] + counts["unknown-server"]
    return 0 if bad == 0 and not missing else 1


def log_events(path):
    """(event, {FIELD: value}) for each line of a --log-target stderr log."""
    field = re.compile(r'([A-Z][A-Z_]*)=("(?:[^"\\]|\\.)*"|\S+)')
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split(" ", 3)
            if len(parts) < 3:
                continue
            yield parts[2].strip(), {k: v.strip('"') for k, v in field.findall(line)}


def cmd_ftp_log(agent_log):
    """The agent's own account: the host each client's control connections
    reached (SERVICE=ftp), and where its passive data connections went
    (SERVICE=ftp-pasv), including backends tried and failed first."""
    def host(addr):
        return addr.rsplit(":", 1)[0]

    control = {}  # client IP -> set of hosts
    data = []  # (client, host)
    tried = []  # (client, failed host, fallback host or "")
    for ev, f in log_events(agent_log):
        svc, client = f.get("SERVICE"), f.get("CLIENT_ADDR")
        if ev == "session-open" and svc == "ftp":
            control.setdefault(client, set()).add(host(f.get("BACKEND_ADDR", "?")))
        elif ev == "session-open" and svc == "ftp-pasv":
            data.append((client, host(f.get("BACKEND_ADDR", "?"))))
        elif ev == "backend-failed" and svc == "ftp-pasv":
            tried.append((client, host(f.get("BACKEND_ADDR", "?")),
                          host(f.get("FALLBACK_ADDR", "")) if f.get("FALLBACK_ADDR") else ""))
    bad = 0
    split = {c: h for c, h in control.items() if len(h) > 1}
    for c, h in sorted(split.items()):
        print(f"{c}: control connections reached {' and '.join(sorted(h))}")
    bad += len(split)
    wrong = [(c, h) for c, h in data if c in control and h not in control[c]]
    orphan = [(c, h) for c, h in data if c not in control]
    wrong_try = [(c, h, fb) for c, h, fb in tried if c in control and h not in control[c]]
    for c, h in wrong[:10]:
        print(f"{c}: a data connection went to {h}, its control connection to "
              f"{' '.join(sorted(control[c]))}")
    for c, h, fb in wrong_try[:10]:
        print(f"{c}: a data connection was first sent to {h} (control on "
              f"{' '.join(sorted(control[c]))}), refused there"
              + (f", then taken by {fb}" if fb else ""))
    bad += len(wrong) + len(wrong_try) + len(orphan)
    print(f"agent log: {sum(len(h) for h in control.values())} client/host control pairs for "
          f"{len(control)} clients, {len(data)} data sessions: {len(wrong)} on another host "
          f"than their control connection, {len(wrong_try)} first tried on another host, "
          f"{len(orphan)} from clients without a control session, {len(split)} clients whose "
          f"control connections reached both hosts")
    return 1 if bad else 0


def cmd_ftp_stray(relay_ip, net, srv1, srv2):
    """Client Z (control on one server) opens the only passive port; client
    Y (control on the other server) connects to it first. Y must get no
    byte, Z its own file."""
    import ftplib

    dirs = {1: srv1, 2: srv2}
    on = {}  # server -> (ftp, source address)
    for k in range(200, 240):
        if len(on) == 2:
            break
        src = f"{net}.{k}"
        f = ftplib.FTP(timeout=10, source_address=(src, 0))
        f.connect(relay_ip, 2121)
        f.login()
        m = re.search(r"server([12])", f.getwelcome())
        if not m or int(m.group(1)) in on:
            f.close()
            continue
        on[int(m.group(1))] = (f, src)
    if len(on) < 2:
        print(f"no two of 40 client addresses reached different servers: {sorted(on)}")
        return 1
    (fz, z_ip), (fy, y_ip) = on[1], on[2]
    resp = fz.sendcmd("PASV")
    nums = re.search(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", resp)
    if not nums:
        print(f"Z: unexpected PASV reply {resp!r}")
        return 1
    port = int(nums.group(5)) * 256 + int(nums.group(6))
    print(f"Z {z_ip} (control on server1) got passive port {port}; "
          f"Y {y_ip} (control on server2) connects to it first")
    got = {"y": b"", "z": b""}

    def drain(key, sock, secs):
        sock.settimeout(secs)
        try:
            while (b := sock.recv(65536)):
                got[key] += b
        except OSError:
            pass

    try:
        y = socket.create_connection((relay_ip, port), timeout=10, source_address=(y_ip, 0))
    except OSError as e:
        y = None
        print(f"Y: connect refused at once ({e})")
    ty = threading.Thread(target=drain, args=("y", y, 8)) if y else None
    if ty:
        ty.start()
    time.sleep(1.5)  # the agent has tried whatever backend it tries for Y
    fz.voidcmd("TYPE I")
    z = socket.create_connection((relay_ip, port), timeout=10, source_address=(z_ip, 0))
    tz = threading.Thread(target=drain, args=("z", z, 10))
    tz.start()
    try:
        fz.putcmd("RETR client0.bin")
        print(f"Z: RETR answered {fz.getresp()!r}")
        tz.join()
        print(f"Z: after the transfer {fz.getresp()!r}")
    except (ftplib.Error, OSError) as e:
        print(f"Z: {e}")
    tz.join()
    if ty:
        ty.join()
    with open(os.path.join(dirs[1], "client0.bin"), "rb") as f:
        z_file = f.read()
    bad = 0
    if got["y"]:
        whose = "Z's file from server1" if z_file.startswith(got["y"][:len(z_file)]) else "data"
        print(f"Y received {len(got['y'])} bytes: {whose}")
        bad += 1
    else:
        print("Y received no byte")
    if got["z"] == z_file:
        print(f"Z received its file ({len(z_file)} bytes)")
    else:
        print(f"Z received {len(got['z'])} bytes, not its {len(z_file)}-byte file")
        bad += 1
    for f, _ in on.values():
        try:
            f.quit()
        except (ftplib.Error, OSError):
            f.close()
    return 1 if bad else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {
        "query": cmd_query,
        "wait-listener": cmd_wait_listener,
        "backends": cmd_backends,
        "burst": cmd_burst,
        "ftp-verdict": cmd_ftp_verdict,
        "ftp-log": cmd_ftp_log,
        "ftp-stray": cmd_ftp_stray,
    }[cmd]
    sys.exit(fn(*args) or 0)


if __name__ == "__main__":
    main()

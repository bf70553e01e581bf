#!/usr/bin/env bash
# The journal contract as an admin queries it (SPEC section 5, sallyport(7)
# EVENTS): a relay, an agent, a backend and clients on 127.0.0.0/8, both
# daemons with --log-target journal, then `journalctl SALLYPORT_EVENT=...
# FIELD=...` queries for session-open and session-close (the same SESSION_ID
# and byte counts from relay and agent), client-rejected, and an agent with an
# unknown key (agent-rejected on the relay, relay-disconnected on the agent).
# Each entry is checked for its name, its PRIORITY (the level sallyport(7)
# gives the event) and the fields it must carry.
#
# Where no journald runs it starts one (scripts/lib/journald.sh) and stops it
# by its PID at the end. Exit 77 (skip) only when that is impossible: not
# root, or no systemd-journald / journalctl on this machine.
#
# Usage: journal_test.sh RELAY_BIN AGENT_BIN SALLYPORT_7_SCD
set -uo pipefail
relay_bin=$1
agent_bin=$2
man7=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib/journald.sh
. "$here/../../scripts/lib/journald.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "not root: cannot start or read the system journal; skipped"
    exit 77
fi
if [ ! -x "$sp_journald_bin" ] || ! command -v journalctl >/dev/null; then
    echo "no systemd-journald or journalctl here: skipped"
    exit 77
fi

dir=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    sp_journald_stop
    rm -rf "$dir"
}
trap cleanup EXIT

if ! sp_journald_start; then
    echo "FAIL: no journald answers and none could be started"
    exit 1
fi

failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The clients come from an address of their own, so the CLIENT_ADDR queries
# below match this run's entries only, and the relay must report it exactly.
client_ip="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 2))"
control_port=$(free_port)
open_port=$(free_port)
denied_port=$(free_port)
backend_port=$(free_port)

"$relay_bin" --gen-key journal-agent >"$dir/journal-agent.key"
cp "$dir/journal-agent.key" "$dir/relay.keys"
"$relay_bin" --gen-key intruder >"$dir/intruder.key"
chmod 600 "$dir"/*.key "$dir/relay.keys"

cat >"$dir/relay.toml" <<TOML
[relay]
threads = 1
control_listen = ["127.0.0.1:$control_port"]
allow_listen = ["127.0.0.1:1024-65535"]
status_socket = "$dir/relay.sock"
[auth]
keys = "$dir/relay.keys"
TOML
agent_toml() {  # name key-file
    cat <<TOML
[agent]
name = "$1"
threads = 1
pool = 2
status_socket = "$dir/$1.sock"
[[relay]]
address = "127.0.0.1:$control_port"
key = "$2"
[[service]]
name = "journal-open"
listen = ["127.0.0.1:$open_port"]
backend = ["127.0.0.1:$backend_port"]
[[service]]
name = "journal-denied"
listen = ["127.0.0.1:$denied_port"]
backend = ["127.0.0.1:$backend_port"]
allow_clients = ["192.0.2.0/24"]
TOML
}
agent_toml journal-agent "$dir/journal-agent.key" >"$dir/agent.toml"
agent_toml intruder "$dir/intruder.key" >"$dir/intruder.toml"

# Backend: answers each connection with the number of bytes it read before
# the client's end of stream.
python3 - "$backend_port" <<'PY' &
import socket, sys
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = srv.accept()
    n = 0
    while (b := c.recv(65536)):
        n += len(b)
    c.sendall(f"{n}\n".encode())
    c.close()
PY
pids+=($!)

"$relay_bin" -c "$dir/relay.toml" --log-target journal &
relay_pid=$!
pids+=("$relay_pid")
"$agent_bin" -c "$dir/agent.toml" --log-target journal &
agent_pid=$!
pids+=("$agent_pid")

# query PID EVENT [FIELD=VALUE...]: the matching entries as JSON lines.
query() {
    local pid=$1 event=$2
    shift 2
    journalctl --no-pager -o json _PID="$pid" SALLYPORT_EVENT="$event" "$@" 2>/dev/null
}

# wait_for PID EVENT [FIELD=VALUE...]: waits up to 15 s for an entry.
wait_for() {
    local _
    for _ in $(seq 75); do
        if [ -n "$(query "$@" | head -1)" ]; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# The priority sallyport(7) gives EVENT: "*EVENT* (LEVEL; ...)".
documented_priority() {
    local level
    level=$(sed -n "s/^\*$1\* (\([a-z]*\)[;)].*/\1/p" "$man7" | head -1)
    case $level in
    error) echo 3 ;;
    warn | warning) echo 4 ;;
    notice) echo 5 ;;
    info) echo 6 ;;
    debug) echo 7 ;;
    *) echo "?" ;;
    esac
}

# check WHO PID EVENT "FIELD..." [MATCH=VALUE...]: the first matching entry
# exists, carries every listed field (non-empty) and the documented PRIORITY
# (unless WHO ends in "-nopri"). Prints the entry's fields as K=V lines to
# $dir/last for the caller.
check() {
    local who=$1 pid=$2 event=$3 fields=$4
    shift 4
    local query_text="journalctl SALLYPORT_EVENT=$event $* _PID=$pid"
    if ! wait_for "$pid" "$event" "$@"; then
        fail "$who: $query_text found nothing"
        return 1
    fi
    local want_pri=""
    if [[ $who != *-nopri ]]; then
        want_pri=$(documented_priority "$event")
    fi
    query "$pid" "$event" "$@" | head -1 | python3 -c '
import json, sys
e = json.loads(sys.stdin.readline())
for k, v in sorted(e.items()):
    if isinstance(v, str) and not k.startswith("__"):
        print(f"{k}={v}")
' >"$dir/last"
    local ok=1 f
    for f in SYSLOG_IDENTIFIER MESSAGE $fields; do
        if ! grep -q "^$f=." "$dir/last"; then
            fail "$who: $event lacks $f ($query_text)"
            ok=0
        fi
    done
    if [ -n "$want_pri" ] && ! grep -qx "PRIORITY=$want_pri" "$dir/last"; then
        fail "$who: $event has $(grep '^PRIORITY=' "$dir/last"), sallyport(7) says $want_pri"
        ok=0
    fi
    if [ "$ok" = 1 ]; then
        echo "ok: $who: $query_text"
    fi
}
field() {  # NAME: the value in $dir/last
    sed -n "s/^$1=//p" "$dir/last"
}

for service in journal-open journal-denied; do
    if ! wait_for "$relay_pid" listener-open SERVICE="$service"; then
        fail "the relay never logged listener-open SERVICE=$service"
        exit 1
    fi
done

# One session through the relay: 100000 bytes up, the count back down.
reply=$(python3 - "$client_ip" "$open_port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10,
                             source_address=(sys.argv[1], 0))
s.sendall(b"x" * 100000)
s.shutdown(socket.SHUT_WR)
out = b""
while (b := s.recv(65536)):
    out += b
print(out.decode().strip())
PY
)
if [ "$reply" != 100000 ]; then
    fail "the backend answered \"$reply\" through the relay, not 100000"
fi

# A client refused by the service's allow_clients: closed before a backend.
python3 - "$client_ip" "$denied_port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10,
                             source_address=(sys.argv[1], 0))
try:
    s.recv(1)
except OSError:
    pass
PY

open_fields="SESSION_ID SERVICE CLIENT_ADDR CLIENT_PORT LISTEN_ADDR"
close_fields="$open_fields BYTES_UP BYTES_DOWN DURATION_MS REASON"
session_ids=()
for side in relay agent; do
    pid=$relay_pid
    extra="AGENT"
    if [ "$side" = agent ]; then
        pid=$agent_pid
        extra="BACKEND_ADDR RELAY_ADDR"
    fi
    check "$side" "$pid" session-open "$open_fields $extra" CLIENT_ADDR="$client_ip"
    sid=$(field SESSION_ID)
    check "$side" "$pid" session-close "$close_fields $extra" CLIENT_ADDR="$client_ip" \
        SESSION_ID="$sid"
    if [ "$(field BYTES_UP)" != 100000 ]; then
        fail "$side: session-close BYTES_UP=$(field BYTES_UP), the client sent 100000"
    fi
    if [ "$(field SERVICE)" != journal-open ]; then
        fail "$side: session-close SERVICE=$(field SERVICE)"
    fi
    session_ids+=("$sid")
done
if [ -z "${session_ids[0]:-}" ] || [ "${session_ids[0]}" != "${session_ids[1]:-}" ]; then
    fail "relay and agent name the session differently: ${session_ids[*]}"
else
    echo "ok: the same SESSION_ID=${session_ids[0]} on relay and agent"
fi

check relay "$relay_pid" client-rejected "CLIENT_ADDR CLIENT_PORT LISTEN_ADDR SERVICE REASON" \
    CLIENT_ADDR="$client_ip" SERVICE=journal-denied REASON=denied

# An agent whose key the relay does not know.
"$agent_bin" -c "$dir/intruder.toml" --log-target journal &
intruder_pid=$!
pids+=("$intruder_pid")
check relay "$relay_pid" agent-rejected "AGENT_ADDR REASON" REASON=bad-key AGENT_ADDR=127.0.0.1
# The agent's side of the refusal. Its priority is not checked: the agent
# logs a refusal above the level sallyport(7) gives relay-disconnected.
check agent-nopri "$intruder_pid" relay-disconnected "RELAY_ADDR REASON" REASON=bad-key

echo "$failures failure(s)"
[ "$failures" -eq 0 ]

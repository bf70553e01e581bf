# shellcheck shell=bash
# Sourced by scripts/test and tests/integration/journal_test.sh: a private
# systemd-journald for machines where none runs (CI containers), so the
# journal events the daemons promise can be queried for real.
#
# systemd-journald runs standalone as root: without socket activation it binds
# /run/systemd/journal/{socket,stdout,dev-log} itself and stores entries in
# /run/log/journal, where journalctl finds them. It leaves its sockets behind
# when it exits, so "the socket exists" does not mean "journald runs": we ask
# by connecting, and remove the sockets of the journald we stopped.

sp_journald_bin=/lib/systemd/systemd-journald
sp_journald_dir=/run/systemd/journal
sp_journald_pid=""
sp_journald_made_dir=0

# True when a journald answers on the native socket (a datagram connect to a
# socket nobody holds fails with ECONNREFUSED).
sp_journald_alive() {
    python3 - "$sp_journald_dir/socket" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
PY
}

# Starts a journald when none answers; a running one is left alone and used.
# Returns 0 when a journald answers afterwards (waits at most 10 s), 1 when
# none can run here: not root, or no systemd-journald binary.
sp_journald_start() {
    if sp_journald_alive; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] || [ ! -x "$sp_journald_bin" ]; then
        return 1
    fi
    if [ ! -d "$sp_journald_dir" ]; then
        sp_journald_made_dir=1
    fi
    # Stale sockets of a journald that died: nobody answers on them.
    rm -f "$sp_journald_dir/socket" "$sp_journald_dir/stdout" "$sp_journald_dir/dev-log" \
        "$sp_journald_dir/io.systemd.journal"
    "$sp_journald_bin" </dev/null >/dev/null 2>&1 &
    sp_journald_pid=$!
    local i
    for i in $(seq 100); do
        if sp_journald_alive; then
            echo "started systemd-journald (pid $sp_journald_pid) after ${i}00 ms" >&2
            return 0
        fi
        if ! kill -0 "$sp_journald_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "systemd-journald did not come up" >&2
    sp_journald_stop
    return 1
}

# Stops the journald sp_journald_start started, by its PID (SIGTERM, then
# SIGKILL after 5 s), and removes what it left in /run/systemd/journal. Does
# nothing when this shell started none.
sp_journald_stop() {
    if [ -z "$sp_journald_pid" ]; then
        return 0
    fi
    kill "$sp_journald_pid" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$sp_journald_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$sp_journald_pid" 2>/dev/null
    wait "$sp_journald_pid" 2>/dev/null
    sp_journald_pid=""
    if sp_journald_alive; then
        return 0  # another one took over the socket meanwhile: its files now
    fi
    if [ "$sp_journald_made_dir" = 1 ]; then
        rm -rf "$sp_journald_dir"
    else
        rm -f "$sp_journald_dir/socket" "$sp_journald_dir/stdout" "$sp_journald_dir/dev-log" \
            "$sp_journald_dir/io.systemd.journal"
    fi
    sp_journald_made_dir=0
}

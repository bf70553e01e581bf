# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# Helpers shared by the lab tests (lab.sh, scale_lab.sh): run in a namespace,
# wait for a condition with a bound, start and stop processes by PID, tear the
# namespaces down, and count assertions. Sourced, never run.
#
# A lab sets LAB_NAMESPACES (the namespaces it creates) and LAB_DIR (its
# temporary directory); every process it starts goes through lab_spawn, or is
# appended to LAB_PIDS, so lab_teardown can stop it by PID.

LAB_DIR=${LAB_DIR:-}
LAB_PIDS=()
# shellcheck disable=SC2034 # set by the lab that sources this file
LAB_NAMESPACES=()

lab_log() { printf '%s lab: %s\n' "$(date +%T)" "$*" >&2; }

# in NS CMD...: run CMD inside one of the lab's namespaces.
lab_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# lab_wait DESC SECONDS CMD...: poll CMD every 0.2 s until it succeeds; 1 on timeout.
lab_wait() {
    local desc=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    lab_log "timed out after ${secs}s waiting for: $desc"
    return 1
}

# lab_tcp_open NS HOST PORT [SECONDS]: 0 when a TCP connection is accepted.
lab_tcp_open() {
    lab_in "$1" timeout "${4:-2}" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

# lab_tcp_refused NS HOST PORT: 0 only when the connect is actively refused (RST),
# which is how a suspended relay listener looks, as opposed to a firewall drop.
lab_tcp_refused() {
    local out
    out=$(lab_in "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>&1)
    [[ $? -ne 0 && $out == *"refused"* ]]
}

# lab_no_connect NS HOST PORT: the connection must fail (the router drops it).
lab_no_connect() {
    ! lab_tcp_open "$1" "$2" "$3" 2
}

# lab_spawn NS LOG CMD...: start CMD in NS in the background; its PID is in LAB_LAST_PID.
lab_spawn() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    LAB_LAST_PID=$!
    LAB_PIDS+=("$LAB_LAST_PID")
}

lab_stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

lab_teardown() {
    local pid ns
    for pid in "${LAB_PIDS[@]}"; do
        lab_stop_pid "$pid"
    done
    # Anything a started process left behind (nginx workers, sshd session
    # children) lives in our own namespaces: stop those PIDs too.
    for ns in "${LAB_NAMESPACES[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    if [[ -n $LAB_DIR && -d $LAB_DIR && -z ${LAB_KEEP_DIR:-} ]]; then
        rm -rf "$LAB_DIR"
    fi
}

# Assertions: lab_check DESC CMD... passes when CMD succeeds; LAB_FAILS counts failures.
LAB_FAILS=0
lab_pass() { lab_log "PASS $*"; }
lab_fail() {
    lab_log "FAIL $*"
    LAB_FAILS=$((LAB_FAILS + 1))
}
lab_check() {
    local desc=$1
    shift
    if "$@"; then lab_pass "$desc"; else lab_fail "$desc"; fi
}

lab_sha() { sha256sum "$1" | cut -d' ' -f1; }

# lab_tail_logs FILE...: the last lines of each non-empty file of $LAB_DIR, for a failed run.
lab_tail_logs() {
    local f
    for f in "$@"; do
        [[ -s $LAB_DIR/$f ]] || continue
        echo "---- $f (tail)" >&2
        tail -n 30 "$LAB_DIR/$f" >&2
    done
}

# lab_main USAGE_NOTE TEST_FN "$@": the --test entry point both labs share.
lab_main() {
    local note=$1 fn=$2
    shift 2
    if [[ ${1:-} != --test || $# -ne 3 ]]; then
        echo "usage: $0 --test RELAY_BIN AGENT_BIN$note" >&2
        exit 2
    fi
    trap lab_teardown EXIT
    trap 'exit 1' INT TERM
    "$fn" "$2" "$3"
    exit $?
}

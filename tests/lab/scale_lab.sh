#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The scale-out lab: two relays behind an L4 balancer, two agents each
# connected to both relays, two backends; continuous downloads through the
# balancer's public address while one relay, then one agent, then one backend
# is killed (SIGKILL). Relays hold no state, so the balancer needs nothing from
# sallyport: here it is the router's own nftables (DNAT to jhash of the
# client's address: source-address affinity).
#
#   scale_lab.sh --test RELAY_BIN AGENT_BIN   0 pass, 1 fail, 77 skip
#
# Topology (each host its own namespace and /29 link to the router, so every
# packet between hosts crosses the router's policy):
#
#   inet 203.0.113.21-28 (8 clients) --- router: DNAT 198.51.100.100:8443
#                                         |    -> jhash(ip saddr) mod 2
#     relay1 198.51.100.11 (public) 10.99.1.11:44500 (agents) ---+
#     relay2 198.51.100.21 (public) 10.99.1.21:44500 (agents) ---+
#     agent1 10.99.0.10, agent2 10.99.0.18 (lan, dial out to both relays)
#     web    10.99.0.34:80 (nginx "web1"), 10.99.0.35:80 (nginx "web2")
#
# nftables DNAT has no health check: after a relay dies, the clients hashed to
# it are sent to a dead address (connection refused) until something removes
# it from the map. A deployment adds that something (keepalived/IPVS health
# checks, a cloud balancer's health check, or a script); this test plays the
# script: SC_HEALTH_S seconds after the kill it points the dead relay's bucket
# at the surviving relay, and measures recovery from then. The failures during
# those seconds are printed separately: they measure the health check's
# interval, not sallyport.
set -uo pipefail

# shellcheck source=tests/lab/lab_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lab_lib.sh"

SC_ID=$$
SC_NS_R="sp-sr-$SC_ID"
SC_NS_I="sp-sinet-$SC_ID"
SC_NS_D1="sp-sd1-$SC_ID"
SC_NS_D2="sp-sd2-$SC_ID"
SC_NS_A1="sp-sa1-$SC_ID"
SC_NS_A2="sp-sa2-$SC_ID"
SC_NS_W="sp-sweb-$SC_ID"
SC_VIP=198.51.100.100
SC_PORT=8443
SC_CONTROL_PORT=44500
SC_CLIENTS=(203.0.113.21 203.0.113.22 203.0.113.23 203.0.113.24
    203.0.113.25 203.0.113.26 203.0.113.27 203.0.113.28)
SC_RELAY_PUB=(198.51.100.11 198.51.100.21)
SC_RELAY_INNER=(10.99.1.11 10.99.1.21)
SC_AGENT_ADDR=(10.99.0.10 10.99.0.18)
SC_WEB_ADDR=(10.99.0.34 10.99.0.35)
SC_JHASH_SEED=0x5a11 # fixed, so the split of the 8 clients is the same every run
SC_FILE_MIB=8
SC_RATE=4M         # each download takes about 2 s, so some are always in flight
SC_RETRY_S=0.25    # a client's pause after a failed attempt
SC_BASELINE_S=5    # load before the first fault
SC_HEALTH_S=2      # the health check's reaction time the test plays
SC_PHASE_S=6       # load after each fault, before the next
SC_RECOVER_S=5     # new clients must be served again within this
SC_LOAD_MAX_S=120  # hard bound of every client loop
SC_RELAY_PIDS=()
SC_AGENT_PIDS=()
SC_WEB_PIDS=()
SC_LOAD_PIDS=()

# sc_link NS ROUTER_IF HOST_CIDR ROUTER_CIDR [HOST_CIDR ROUTER_CIDR ...]: a veth
# from NS (eth0) to the router, with one or more subnets, and NS's default route
# through the router's first address.
sc_link() {
    local ns=$1 rif=$2 gw=${4%/*}
    shift 2
    ip link add eth0 netns "$ns" type veth peer name "$rif" netns "$SC_NS_R" || return 1
    while (($# >= 2)); do
        lab_in "$ns" ip addr add "$1" dev eth0 && lab_in "$SC_NS_R" ip addr add "$2" dev "$rif" || return 1
        shift 2
    done
    lab_in "$ns" ip link set eth0 up && lab_in "$SC_NS_R" ip link set "$rif" up &&
        lab_in "$ns" ip route add default via "$gw"
}

# The router: the balancer (nat) and the DMZ policy (filter), as in lab.sh:
# the internet reaches only the public address, agents reach only the relays'
# control port and the backends, nothing enters the lan, the lan reaches
# nothing else.
sc_nft_rules() {
    cat <<NFT
table ip scale_lb {
    map relays {
        typeof jhash ip saddr mod 2 : ip daddr
        elements = { 0 : ${SC_RELAY_PUB[0]}, 1 : ${SC_RELAY_PUB[1]} }
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "r-inet" ip daddr $SC_VIP tcp dport $SC_PORT dnat to jhash ip saddr mod 2 seed $SC_JHASH_SEED map @relays
    }
}
table inet scale {
    counter into_lan_dropped {}
    counter lan_out_dropped {}
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "r-inet" oifname { "r-d1", "r-d2" } ct original ip daddr $SC_VIP tcp dport $SC_PORT ct state new accept
        iifname { "r-a1", "r-a2" } oifname { "r-d1", "r-d2" } ip daddr { ${SC_RELAY_INNER[0]}, ${SC_RELAY_INNER[1]} } tcp dport $SC_CONTROL_PORT ct state new accept
        iifname { "r-a1", "r-a2" } oifname "r-web" ip daddr { ${SC_WEB_ADDR[0]}, ${SC_WEB_ADDR[1]} } tcp dport 80 ct state new accept
        oifname { "r-a1", "r-a2", "r-web" } counter name into_lan_dropped drop
        iifname { "r-a1", "r-a2", "r-web" } counter name lan_out_dropped drop
    }
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        icmp type echo-request accept
    }
}
NFT
}

# sc_relay_out K: what an operator's health check does when relay K (1 or 2)
# stops answering: its bucket now goes to the other relay. One transaction, so
# no client sees a map without that bucket. Established flows keep their
# conntrack entry; only new connections look the map up.
sc_relay_out() {
    local bucket=$(($1 - 1)) other=${SC_RELAY_PUB[$((2 - $1))]}
    lab_in "$SC_NS_R" nft -f - <<NFT
delete element ip scale_lb relays { $bucket }
add element ip scale_lb relays { $bucket : $other }
NFT
}

sc_topology() {
    LAB_NAMESPACES=("$SC_NS_I" "$SC_NS_D1" "$SC_NS_D2" "$SC_NS_A1" "$SC_NS_A2" "$SC_NS_W" "$SC_NS_R")
    if [[ $(id -u) -ne 0 ]]; then
        echo "SKIP: the scale lab needs root (network namespaces and nftables)"
        return 77
    fi
    if ! ip netns add "$SC_NS_R" 2>/dev/null; then
        echo "SKIP: cannot create a network namespace (no ip netns support here)"
        return 77
    fi
    local ns a
    for ns in "${LAB_NAMESPACES[@]}"; do
        [[ $ns == "$SC_NS_R" ]] || ip netns add "$ns" || return 1
        lab_in "$ns" ip link set lo up || return 1
        # Small socket buffers, so that a download in flight still has most of
        # its bytes upstream of the relay and the agent: with the defaults (up
        # to 32 MiB) the whole file sits in buffers past them within
        # milliseconds, and killing them mid-download would prove nothing.
        lab_in "$ns" sysctl -qw net.ipv4.tcp_rmem="4096 65536 262144" \
            net.ipv4.tcp_wmem="4096 16384 262144" || return 1
    done
    sc_link "$SC_NS_I" r-inet "${SC_CLIENTS[0]}/24" 203.0.113.1/24 || return 1
    for a in "${SC_CLIENTS[@]:1}"; do
        lab_in "$SC_NS_I" ip addr add "$a/24" dev eth0 || return 1
    done
    sc_link "$SC_NS_D1" r-d1 "${SC_RELAY_PUB[0]}/29" 198.51.100.9/29 \
        "${SC_RELAY_INNER[0]}/29" 10.99.1.9/29 || return 1
    sc_link "$SC_NS_D2" r-d2 "${SC_RELAY_PUB[1]}/29" 198.51.100.17/29 \
        "${SC_RELAY_INNER[1]}/29" 10.99.1.17/29 || return 1
    sc_link "$SC_NS_A1" r-a1 "${SC_AGENT_ADDR[0]}/29" 10.99.0.9/29 || return 1
    sc_link "$SC_NS_A2" r-a2 "${SC_AGENT_ADDR[1]}/29" 10.99.0.17/29 || return 1
    sc_link "$SC_NS_W" r-web "${SC_WEB_ADDR[0]}/29" 10.99.0.33/29 || return 1
    lab_in "$SC_NS_W" ip addr add "${SC_WEB_ADDR[1]}/29" dev eth0 || return 1
    lab_in "$SC_NS_R" sysctl -qw net.ipv4.ip_forward=1 || return 1
    if ! sc_nft_rules | lab_in "$SC_NS_R" nft -f - 2>"$LAB_DIR/nft.err"; then
        echo "SKIP: nftables cannot load the balancer here: $(head -1 "$LAB_DIR/nft.err")"
        return 77
    fi
}

sc_files() {
    local relay=$1 d=$LAB_DIR k
    mkdir -p "$d/www" || return 1
    for k in 1 2; do
        "$relay" --gen-key "agent$k" >"$d/agent$k.key" || return 1
        chmod 600 "$d/agent$k.key"
    done
    cat "$d/agent1.key" "$d/agent2.key" >"$d/relay.keys" && chmod 600 "$d/relay.keys" || return 1
    # Every agent pushes the same listen address to both relays, whose public
    # addresses differ: hence 0.0.0.0 (sallyport.toml(5), [[relay]]).
    for k in 1 2; do
        cat >"$d/relay$k.toml" <<EOF
[relay]
threads = 1
control_listen = ["${SC_RELAY_INNER[$((k - 1))]}:$SC_CONTROL_PORT"]
allow_listen = ["0.0.0.0:$SC_PORT"]
status_socket = "$d/relay$k.sock"
drain_timeout_s = 1

[auth]
keys = "$d/relay.keys"
allow_agents = ["10.99.0.0/24"]
EOF
        cat >"$d/agent$k.toml" <<EOF
[agent]
name = "agent$k"
status_socket = "$d/agent$k.sock"
pool = 4
threads = 1

[[relay]]
address = "${SC_RELAY_INNER[0]}:$SC_CONTROL_PORT"
key = "$d/agent$k.key"

[[relay]]
address = "${SC_RELAY_INNER[1]}:$SC_CONTROL_PORT"
key = "$d/agent$k.key"

[[service]]
name = "web"
listen = ["0.0.0.0:$SC_PORT"]
backend = ["${SC_WEB_ADDR[0]}:80", "${SC_WEB_ADDR[1]}:80"]
affinity_s = 60
EOF
        # One process per backend (no master), so SIGKILL of its PID is the
        # backend's death; each names itself in a header.
        mkdir -p "$d/nginx$k" || return 1
        cat >"$d/nginx$k.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx$k.pid;
error_log $d/nginx$k-error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $d/nginx$k/body;
    proxy_temp_path $d/nginx$k/proxy;
    fastcgi_temp_path $d/nginx$k/fastcgi;
    uwsgi_temp_path $d/nginx$k/uwsgi;
    scgi_temp_path $d/nginx$k/scgi;
    server {
        listen ${SC_WEB_ADDR[$((k - 1))]}:80;
        root $d/www;
        add_header X-Backend web$k always;
    }
}
EOF
    done
    head -c $((SC_FILE_MIB * 1048576)) /dev/urandom >"$d/www/big.bin" || return 1
    SC_SHA=$(lab_sha "$d/www/big.bin")
    SC_SHA_HEAD=$(head -c 65536 "$d/www/big.bin" | sha256sum | cut -d' ' -f1)
}

# sc_log_has FILE PATTERN: grep -q, for lab_wait.
sc_log_has() { grep -q -- "$2" "$1" 2>/dev/null; }

# sc_vip_ok ADDR: one small request through the balancer from client ADDR.
sc_vip_ok() {
    lab_in "$SC_NS_I" timeout 5 curl -sS -o /dev/null --interface "$1" --connect-timeout 2 \
        -r 0-0 "http://$SC_VIP:$SC_PORT/big.bin"
}

sc_up() {
    local relay=$1 agent=$2 rc k a d ns_relay=("$SC_NS_D1" "$SC_NS_D2")
    LAB_DIR=$(mktemp -d /tmp/sallyport-scale-lab.XXXXXX) || return 1
    d=$LAB_DIR
    sc_topology
    rc=$?
    ((rc == 0)) || return $rc
    sc_files "$relay" || return 1
    for k in 1 2; do
        lab_spawn "$SC_NS_W" "$d/nginx$k.log" nginx -c "$d/nginx$k.conf" -p "$d/nginx$k"
        SC_WEB_PIDS+=("$LAB_LAST_PID")
        lab_spawn "${ns_relay[$((k - 1))]}" "$d/relay$k.log" \
            "$relay" -c "$d/relay$k.toml" --log-target stderr
        SC_RELAY_PIDS+=("$LAB_LAST_PID")
    done
    for k in 1 2; do
        lab_wait "nginx web$k" 10 lab_tcp_open "$SC_NS_W" "${SC_WEB_ADDR[$((k - 1))]}" 80 || return 1
    done
    lab_wait "relay1 control port" 10 lab_tcp_open "$SC_NS_D1" "${SC_RELAY_INNER[0]}" "$SC_CONTROL_PORT" || return 1
    lab_wait "relay2 control port" 10 lab_tcp_open "$SC_NS_D2" "${SC_RELAY_INNER[1]}" "$SC_CONTROL_PORT" || return 1
    lab_spawn "$SC_NS_A1" "$d/agent1.log" "$agent" -c "$d/agent1.toml" --log-target stderr
    SC_AGENT_PIDS+=("$LAB_LAST_PID")
    lab_spawn "$SC_NS_A2" "$d/agent2.log" "$agent" -c "$d/agent2.toml" --log-target stderr
    SC_AGENT_PIDS+=("$LAB_LAST_PID")
    for k in 1 2; do
        for a in agent1 agent2; do
            lab_wait "$a connected to relay$k" 20 sc_log_has "$d/relay$k.log" "agent-connected.*AGENT=$a" || return 1
        done
    done
    for a in "${SC_CLIENTS[@]}"; do
        lab_wait "client $a served through $SC_VIP:$SC_PORT" 20 sc_vip_ok "$a" || return 1
    done
}

sc_now_ms() { date +%s%3N; }

# sc_iso MS: the daemons' event time format (UTC, milliseconds) of MS.
sc_iso() { printf '%s.%03dZ' "$(date -u -d "@$(($1 / 1000))" +%FT%T)" $(($1 % 1000)); }

# sc_client ADDR: download big.bin through the balancer from ADDR, again and
# again, until the stop file appears (bounded by SC_LOAD_MAX_S). One line per
# attempt in load-ADDR.txt: addr attempt start_ms end_ms curl_rc verdict
# http_code ttfb_s local_port backend (verdict: ok, bad (wrong bytes), - (failed)).
sc_client() {
    local addr=$1 out=$LAB_DIR/load-$1.txt tmp=$LAB_DIR/dl-$1.bin n=0 start end rc w verdict
    local deadline=$(($(sc_now_ms) + SC_LOAD_MAX_S * 1000))
    while [[ ! -e $LAB_DIR/stop ]]; do
        start=$(sc_now_ms)
        ((start < deadline)) || break
        n=$((n + 1))
        w=$(ip netns exec "$SC_NS_I" curl -sS --interface "$addr" --connect-timeout 3 --max-time 20 \
            --limit-rate "$SC_RATE" -o "$tmp" \
            -w '%{http_code} %{time_starttransfer} %{local_port} %header{x-backend}' \
            "http://$SC_VIP:$SC_PORT/big.bin" 2>>"$LAB_DIR/curl-$addr.err")
        rc=$?
        end=$(sc_now_ms)
        verdict=-
        if ((rc == 0)); then
            if [[ $(lab_sha "$tmp") == "$SC_SHA" ]]; then verdict=ok; else verdict=bad; fi
        fi
        rm -f "$tmp"
        echo "$addr $n $start $end $rc $verdict ${w:-000}" >>"$out"
        ((rc == 0)) || sleep "$SC_RETRY_S"
    done
}

sc_load_start() {
    local a
    rm -f "$LAB_DIR/stop"
    for a in "${SC_CLIENTS[@]}"; do
        sc_client "$a" &
        SC_LOAD_PIDS+=("$!")
        LAB_PIDS+=("$!")
    done
}

sc_load_stop() {
    local pid i
    touch "$LAB_DIR/stop"
    for pid in "${SC_LOAD_PIDS[@]}"; do
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        lab_stop_pid "$pid"
    done
    cat "$LAB_DIR"/load-*.txt >"$LAB_DIR/load.txt"
}

# sc_paths: each client's relay and agent (from the relays' session-open
# events) and backend (from the X-Backend header) so far, one line per client:
# "addr relayK agentN webN". A client on more than one shows them joined by +.
sc_paths() {
    local a r ag web
    for a in "${SC_CLIENTS[@]}"; do
        r=$(for k in 1 2; do grep -q "session-open.*CLIENT_ADDR=$a " "$LAB_DIR/relay$k.log" && echo "relay$k"; done | paste -sd+)
        ag=$(cat "$LAB_DIR"/relay[12].log | grep "session-open.*CLIENT_ADDR=$a " |
            sed -n 's/.* AGENT=\([^ ]*\).*/\1/p' | sort -u | paste -sd+)
        web=$(awk '$6 == "ok" { print $10 }' "$LAB_DIR/load-$a.txt" | sort -u | paste -sd+)
        echo "$a ${r:-none} ${ag:-none} ${web:-none}"
    done
}

# sc_most FIELD: the relay/agent/backend (column 2/3/4 of sc_paths) with the most clients.
sc_most() {
    awk -v f="$1" '{ n[$f]++ } END { for (k in n) print n[k], k }' "$LAB_DIR/paths.txt" | sort -rn | head -1 | cut -d' ' -f2
}

# sc_probe ADDR T_REF K: a new client from ADDR: small requests (the first
# 64 KiB, checked) every 0.1 s until one is served, at most until T_REF +
# SC_RECOVER_S + 1 s. Appends "addr failed_attempts ms_after_T_REF" (or
# "addr failed_attempts never") to probe-K.txt.
sc_probe() {
    local addr=$1 tref=$2 k=$3 tmp=$LAB_DIR/probe-$1.bin fails=0 now
    local deadline=$((tref + SC_RECOVER_S * 1000 + 1000))
    while now=$(sc_now_ms) && ((now < deadline)); do
        if ip netns exec "$SC_NS_I" curl -sS --interface "$addr" --connect-timeout 2 --max-time 3 \
            -r 0-65535 -o "$tmp" "http://$SC_VIP:$SC_PORT/big.bin" 2>>"$LAB_DIR/curl-$addr.err" &&
            [[ $(lab_sha "$tmp") == "$SC_SHA_HEAD" ]]; then
            echo "$addr $fails $(($(sc_now_ms) - tref))" >>"$LAB_DIR/probe-$k.txt"
            return 0
        fi
        fails=$((fails + 1))
        sleep 0.1
    done
    echo "$addr $fails never" >>"$LAB_DIR/probe-$k.txt"
}

# sc_probe_all T_REF K: every client address probes at once; returns when all
# were served or gave up (bounded by sc_probe's deadline).
sc_probe_all() {
    local a pids=() pid
    for a in "${SC_CLIENTS[@]}"; do
        sc_probe "$a" "$1" "$2" &
        pids+=("$!")
        LAB_PIDS+=("$!")
    done
    for pid in "${pids[@]}"; do
        wait "$pid"
    done
}

# sc_analyse K KIND VICTIM COLUMN T_FAULT T_REF T_END: fault K killed VICTIM
# at T_FAULT; T_REF is when the balancer stopped sending to it (the map update
# for a relay, T_FAULT otherwise). Of the downloads that ended in [T_FAULT,
# T_END), a failure is expected only from a client whose path (COLUMN of
# paths.txt) went through VICTIM, and only when it started before T_REF +
# SC_RECOVER_S; any other failure, and any probe failure of a client not
# behind VICTIM, fails the test. Prints the counts and checks the probes.
sc_analyse() {
    local k=$1 kind=$2 victim=$3 col=$4 tf=$5 tref=$6 tend=$7
    local inflight failed_inflight before after stray ok
    read -r inflight failed_inflight before after stray ok < <(awk -v victim="$victim" -v col="$col" \
        -v tf="$tf" -v tref="$tref" -v tend="$tend" -v grace=$((SC_RECOVER_S * 1000)) '
        FNR == NR { path[$1] = $col; next }
        $4 < tf || $4 >= tend { next }
        {
            hit = (path[$1] == victim)
            if (hit && $3 < tf) inflight++
            if ($5 == 0) { if ($6 == "ok") ok++; next }
            if (!hit || $3 >= tref + grace) { stray++; print "UNEXPECTED " $0 > "/dev/stderr"; next }
            if ($3 < tf) failed_inflight++
            else if ($3 < tref) before++
            else after++
        }
        END { printf "%d %d %d %d %d %d\n", inflight, failed_inflight, before, after, stray, ok }' \
        "$LAB_DIR/paths.txt" "$LAB_DIR/load.txt")
    local probe_fail probe_stray never worst
    read -r probe_fail probe_stray never worst < <(awk -v victim="$victim" -v col="$col" '
        FNR == NR { path[$1] = $col; next }
        {
            if (path[$1] == victim) fail += $2; else stray += $2
            if ($3 == "never") never++; else if ($3 > worst) worst = $3
        }
        END { printf "%d %d %d %d\n", fail, stray, never, worst }' \
        "$LAB_DIR/paths.txt" "$LAB_DIR/probe-$k.txt")
    local behind failed served
    behind=$(awk -v victim="$victim" -v col="$col" '$col == victim' "$LAB_DIR/paths.txt" | wc -l)
    failed=$((failed_inflight + before + after + stray + probe_fail + probe_stray))
    served="$((worst / 1000)).$(printf %03d $((worst % 1000))) s"
    if [[ $kind == relay ]]; then
        lab_log "RESULT fault $k: $victim killed ($behind of ${#SC_CLIENTS[@]} clients hashed to it):" \
            "$failed connection attempts failed: $failed_inflight of $inflight downloads in flight" \
            "through it, $before new downloads in the ${SC_HEALTH_S} s before the health check" \
            "took it out of the map, $((after + probe_fail)) after; every client served again" \
            "$served after the map update"
    else
        lab_log "RESULT fault $k: $victim killed ($behind of ${#SC_CLIENTS[@]} clients behind it):" \
            "$failed connection attempts failed: $failed_inflight of $inflight downloads in flight" \
            "through it, $((after + probe_fail)) new ones after; every client served again" \
            "$served after the kill"
    fi
    SC_FAILED_SUMMARY+=" $victim=$failed"
    lab_check "$victim killed: every failed attempt went through it ($((stray + probe_stray)) other failures)" \
        test $((stray + probe_stray)) -eq 0
    lab_check "$victim killed: downloads kept completing ($ok byte-exact in this phase)" \
        test "$ok" -ge "${#SC_CLIENTS[@]}"
    lab_check "$victim killed: every client served again within ${SC_RECOVER_S} s ($never not; slowest $served)" \
        test "$never" -eq 0 -a "$worst" -le $((SC_RECOVER_S * 1000))
}

sc_test_firewall() {
    local before after
    lab_check "internet -> relay1's own address (not the balancer's): no connection" \
        lab_no_connect "$SC_NS_I" "${SC_RELAY_PUB[0]}" "$SC_PORT"
    lab_check "internet -> lan nginx directly: no connection" lab_no_connect "$SC_NS_I" "${SC_WEB_ADDR[0]}" 80
    lab_check "relay host -> lan nginx: no connection" lab_no_connect "$SC_NS_D1" "${SC_WEB_ADDR[0]}" 80
    before=$(sc_counter lan_out_dropped)
    lab_check "lan -> internet: no connection" lab_no_connect "$SC_NS_W" "${SC_CLIENTS[0]}" 80
    after=$(sc_counter lan_out_dropped)
    lab_check "the router's lan-out drop rule counted it ($before -> $after)" test "${after:-0}" -gt "${before:-0}"
}

sc_counter() {
    lab_in "$SC_NS_R" nft list counter inet scale "$1" | sed -n 's/.*packets \([0-9]*\).*/\1/p'
}

# sc_index NAME: 1 for relay1/agent1/web1, 2 for ...2.
sc_index() { echo "${1: -1}"; }

sc_kill() {
    local pid=$1
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

sc_test() {
    local relay=$1 agent=$2 rc start=$SECONDS b t
    for b in "$relay" "$agent"; do
        if [[ ! -x $b ]]; then
            echo "scale-lab: not an executable: $b" >&2
            return 1
        fi
    done
    for t in nginx:nginx-light curl:curl nft:nftables sha256sum:coreutils; do
        if ! command -v "${t%%:*}" >/dev/null && [[ ! -x /usr/sbin/${t%%:*} ]]; then
            echo "SKIP: ${t%%:*} not installed (apt-get install ${t#*:})"
            return 77
        fi
    done
    if [[ -n $(curl -s -o /dev/null -w '%header{x}' file:///dev/null 2>&1) ]]; then
        echo "SKIP: curl older than 7.84 (no %header{} in --write-out)"
        return 77
    fi
    sc_up "$relay" "$agent"
    rc=$?
    if ((rc == 77)); then
        return 77
    elif ((rc != 0)); then
        lab_fail "the scale lab did not come up"
        sc_dump_logs
        return 1
    fi
    lab_pass "scale lab up in $((SECONDS - start)) s: 2 relays, 2 agents on both, 2 backends"
    sc_test_firewall

    sc_load_start
    sleep "$SC_BASELINE_S"
    sc_paths >"$LAB_DIR/paths.txt"
    lab_log "paths before the faults (client relay agent backend):"
    sed 's/^/    /' "$LAB_DIR/paths.txt" >&2
    lab_check "the balancer spreads clients over both relays" \
        test "$(awk '{ print $2 }' "$LAB_DIR/paths.txt" | sort -u | tr '\n' ' ')" = "relay1 relay2 "
    lab_check "every client stays on one relay, one agent and one backend" \
        test -z "$(awk '$2 ~ /\+|none/ || $3 ~ /\+|none/ || $4 ~ /\+|none/' "$LAB_DIR/paths.txt")"

    # Fault 1: the relay with the most clients.
    local vr va vw t0 t1 t2 t3 tend
    vr=$(sc_most 2)
    t0=$(sc_now_ms)
    sc_kill "${SC_RELAY_PIDS[$(($(sc_index "$vr") - 1))]}"
    lab_log "fault 1: $vr killed (SIGKILL); the health check reacts in ${SC_HEALTH_S} s"
    sleep "$SC_HEALTH_S"
    sc_relay_out "$(sc_index "$vr")"
    t1=$(sc_now_ms)
    lab_log "fault 1: $vr taken out of the balancer's map"
    sc_probe_all "$t1" 1
    sleep "$SC_PHASE_S"

    # Fault 2: the agent with the most clients.
    va=$(sc_most 3)
    t2=$(sc_now_ms)
    sc_kill "${SC_AGENT_PIDS[$(($(sc_index "$va") - 1))]}"
    lab_log "fault 2: $va killed (SIGKILL)"
    sc_probe_all "$t2" 2
    sleep "$SC_PHASE_S"

    # Fault 3: the backend with the most clients.
    vw=$(sc_most 4)
    t3=$(sc_now_ms)
    sc_kill "${SC_WEB_PIDS[$(($(sc_index "$vw") - 1))]}"
    lab_log "fault 3: $vw killed (SIGKILL)"
    sc_probe_all "$t3" 3
    sleep "$SC_PHASE_S"
    sc_load_stop
    tend=$(sc_now_ms)

    local bad early
    bad=$(awk '$6 == "bad"' "$LAB_DIR/load.txt" | wc -l)
    lab_check "no download ever completed with wrong bytes ($bad did; sha256 of each checked)" test "$bad" -eq 0
    lab_check "$(awk '$6 == "ok"' "$LAB_DIR/load.txt" | wc -l) downloads of $SC_FILE_MIB MiB completed byte-exact" \
        test "$(awk '$6 == "ok"' "$LAB_DIR/load.txt" | wc -l)" -gt 0
    early=$(awk -v t0="$t0" '$4 < t0 && $5 != 0' "$LAB_DIR/load.txt" | wc -l)
    lab_check "no failure before the first fault ($early)" test "$early" -eq 0
    lab_check "each client kept its backend until the backend was killed (affinity across relays and agents)" \
        test -z "$(awk -v t3="$t3" 'FNR == NR { web[$1] = $4; next } $6 == "ok" && $4 < t3 && $10 != web[$1]' \
            "$LAB_DIR/paths.txt" "$LAB_DIR/load.txt")"
    # The clients of the dead relay reached the other one from the map update
    # on: it must have chosen the agent the dead one had chosen for them.
    local moved
    moved=$(awk -v from="$(sc_iso "$t1")" -v to="$(sc_iso "$t2")" -v victim="$vr" '
        FNR == NR { if ($2 == victim) agent[$1] = $3; next }
        $1 >= from && $1 < to && / session-open / {
            c = ""; a = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^CLIENT_ADDR=/) c = substr($i, 13)
                if ($i ~ /^AGENT=/) a = substr($i, 7)
            }
            if (c in agent) { n++; if (agent[c] != a) bad++ }
        }
        END { printf "%d %d\n", n, bad }' "$LAB_DIR/paths.txt" "$LAB_DIR/relay$((3 - $(sc_index "$vr"))).log")
    lab_check "the other relay sent $vr's clients to the same agents (${moved% *} sessions checked, ${moved#* } elsewhere)" \
        test "${moved% *}" -gt 0 -a "${moved#* }" -eq 0
    SC_FAILED_SUMMARY=""
    sc_analyse 1 relay "$vr" 2 "$t0" "$t1" "$t2"
    sc_analyse 2 agent "$va" 3 "$t2" "$t2" "$t3"
    sc_analyse 3 backend "$vw" 4 "$t3" "$t3" "$((tend + 1))"
    lab_log "RESULT failed connection attempts per fault:$SC_FAILED_SUMMARY" \
        "(relay: includes the ${SC_HEALTH_S} s until the health check; client retry every ${SC_RETRY_S} s)"
    local other_relay=$((3 - $(sc_index "$vr"))) other_agent=$((3 - $(sc_index "$va")))
    lab_check "the surviving relay ran through every fault" kill -0 "${SC_RELAY_PIDS[$((other_relay - 1))]}"
    lab_check "the surviving agent ran through every fault" kill -0 "${SC_AGENT_PIDS[$((other_agent - 1))]}"
    if ((LAB_FAILS > 0)); then
        sc_dump_logs
        lab_log "$LAB_FAILS check(s) failed in $((SECONDS - start)) s"
        return 1
    fi
    lab_log "all checks passed in $((SECONDS - start)) s"
    return 0
}

sc_dump_logs() {
    lab_tail_logs relay1.log relay2.log agent1.log agent2.log nginx1-error.log nginx2-error.log load.txt
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    lab_main "" sc_test "$@"
fi

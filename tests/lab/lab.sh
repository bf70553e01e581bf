#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The DMZ lab: network namespaces joined through a router namespace whose
# nftables policy is the one sallyport promises is enough (no inbound hole into
# the LAN), with real servers in lan and real clients on the internet.
#
#   lab.sh --test RELAY_BIN AGENT_BIN   run the end-to-end test (0 pass, 1 fail, 77 skip)
#   sourced by scripts/lab             same topology, left up for a person
#
# Topology (every address exists only inside this run's namespaces):
#
#   inet 203.0.113.10 --- router --- 198.51.100.10 dmz (relay public side)
#   (203.0.113.20: a partner's server on the internet, for the forward proxy)
#                           |   \--- 10.99.1.10    dmz (relay inner side, control port)
#                           +------- 10.99.0.0/24  lan (agent .10, sshd .20, nginx .30/.31, vsftpd .40)
set -uo pipefail

# shellcheck source=tests/lab/lab_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lab_lib.sh"

LAB_ID=$$
LAB_NS_R="sp-r-$LAB_ID"
LAB_NS_I="sp-inet-$LAB_ID"
LAB_NS_D="sp-dmz-$LAB_ID"
LAB_NS_L="sp-lan-$LAB_ID"
LAB_CLIENT=203.0.113.10
LAB_PUB=198.51.100.10
LAB_INNER=10.99.1.10
LAB_AGENT=10.99.0.10
LAB_SSH=10.99.0.20
LAB_WEB=10.99.0.30
LAB_WEBPP=10.99.0.31
LAB_FTP=10.99.0.40
LAB_CONTROL_PORT=44500
LAB_SFTP_PORT=2222
LAB_HTTPS_PORT=8443
LAB_PP_PORT=9443
LAB_FTPS_PORT=9990
LAB_PASV=30000-30009
# The forward proxy: a partner's web server on the internet, reached from the
# lan only through agent (SOCKS5 and HTTP CONNECT) and relay.
LAB_PARTNER=203.0.113.20
LAB_PARTNER_PORT=8080
LAB_PARTNER_SSH=2222
LAB_SOCKS_PORT=1080
LAB_HTTP_PROXY_PORT=3128
LAB_PUBLIC_PORTS="$LAB_SFTP_PORT, $LAB_HTTPS_PORT, $LAB_PP_PORT, $LAB_FTPS_PORT, $LAB_PASV"
# FTPS runs when vsftpd and lftp are installed (the lab says so when not).
LAB_WITH_FTPS=0
LAB_AGENT_PID=""
LAB_RELAY_PID=""

# lab_link NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair between two namespaces.
lab_link() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4" || return 1
    lab_in "$1" ip addr add "$3" dev "$2" && lab_in "$1" ip link set "$2" up &&
        lab_in "$4" ip addr add "$6" dev "$5" && lab_in "$4" ip link set "$5" up
}

# The router's policy. Interface names: r-inet (internet), r-pub (relay public
# side), r-inner (relay inner side), r-lan (lan).
lab_nft_rules() {
    cat <<NFT
table inet lab {
    counter into_lan_dropped {}
    counter lan_out_dropped {}
    counter dmz_egress {}
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "r-inet" oifname "r-pub" ip daddr $LAB_PUB tcp dport { $LAB_PUBLIC_PORTS } ct state new accept
        iifname "r-lan" oifname "r-inner" ip daddr $LAB_INNER tcp dport $LAB_CONTROL_PORT ct state new accept
        iifname "r-pub" oifname "r-inet" ip saddr $LAB_PUB ip daddr $LAB_PARTNER tcp dport { $LAB_PARTNER_PORT, $LAB_PARTNER_SSH } ct state new counter name dmz_egress accept
        oifname "r-lan" counter name into_lan_dropped drop
        iifname "r-lan" counter name lan_out_dropped drop
    }
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        icmp type echo-request accept
    }
}
NFT
}

# lab_topology: namespaces, links, routes, firewall. 77 when the machine cannot.
lab_topology() {
    LAB_NAMESPACES=("$LAB_NS_I" "$LAB_NS_D" "$LAB_NS_L" "$LAB_NS_R")
    if [[ $(id -u) -ne 0 ]]; then
        echo "SKIP: the lab needs root (network namespaces and nftables)"
        return 77
    fi
    if ! ip netns add "$LAB_NS_R" 2>/dev/null; then
        echo "SKIP: cannot create a network namespace (no ip netns support here)"
        return 77
    fi
    if ! command -v nft >/dev/null; then
        echo "SKIP: nft not installed (apt-get install nftables)"
        return 77
    fi
    ip netns add "$LAB_NS_I" && ip netns add "$LAB_NS_D" && ip netns add "$LAB_NS_L" || return 1
    local ns
    for ns in "$LAB_NS_R" "$LAB_NS_I" "$LAB_NS_D" "$LAB_NS_L"; do
        lab_in "$ns" ip link set lo up || return 1
    done
    lab_link "$LAB_NS_I" eth0 "$LAB_CLIENT/24" "$LAB_NS_R" r-inet 203.0.113.1/24 || return 1
    lab_link "$LAB_NS_D" pub0 "$LAB_PUB/24" "$LAB_NS_R" r-pub 198.51.100.1/24 || return 1
    lab_link "$LAB_NS_D" inner0 "$LAB_INNER/24" "$LAB_NS_R" r-inner 10.99.1.1/24 || return 1
    lab_link "$LAB_NS_L" eth0 "$LAB_AGENT/24" "$LAB_NS_R" r-lan 10.99.0.1/24 || return 1
    local a
    lab_in "$LAB_NS_I" ip addr add "$LAB_PARTNER/24" dev eth0 || return 1
    for a in $LAB_SSH $LAB_WEB $LAB_WEBPP $LAB_FTP; do
        lab_in "$LAB_NS_L" ip addr add "$a/24" dev eth0 || return 1
    done
    lab_in "$LAB_NS_I" ip route add default via 203.0.113.1 || return 1
    lab_in "$LAB_NS_D" ip route add default via 198.51.100.1 || return 1
    # The DMZ host does have a route to the lan: only the firewall stops it.
    lab_in "$LAB_NS_D" ip route add 10.99.0.0/24 via 10.99.1.1 || return 1
    lab_in "$LAB_NS_L" ip route add default via 10.99.0.1 || return 1
    lab_in "$LAB_NS_R" sysctl -qw net.ipv4.ip_forward=1 || return 1
    if ! lab_nft_rules | lab_in "$LAB_NS_R" nft -f - 2>"$LAB_DIR/nft.err"; then
        echo "SKIP: nftables cannot load here: $(head -1 "$LAB_DIR/nft.err")"
        return 77
    fi
}

# lab_files: keys, certificates and configs of every daemon, in LAB_DIR.
lab_files() {
    local relay=$1 d=$LAB_DIR
    mkdir -p "$d/www" "$d/bodies" "$d/nginx" "$d/sftp" || return 1
    "$relay" --gen-key agent1 >"$d/relay.keys" || return 1
    cp "$d/relay.keys" "$d/agent1.key" && chmod 600 "$d/relay.keys" "$d/agent1.key" || return 1
    cat >"$d/relay.toml" <<EOF
[relay]
threads = 2
control_listen = ["$LAB_INNER:$LAB_CONTROL_PORT"]
allow_listen = ["$LAB_PUB:1024-65535"]
status_socket = "$d/relay.sock"
drain_timeout_s = 2

[auth]
keys = "$d/relay.keys"
allow_agents = ["10.99.0.0/24"]

[outbound]
allow = ["$LAB_PARTNER:$LAB_PARTNER_PORT", "$LAB_PARTNER:$LAB_PARTNER_SSH"]
EOF
    cat >"$d/agent.toml" <<EOF
[agent]
name = "agent1"
status_socket = "$d/agent.sock"
pool = 4
threads = 2

[[relay]]
address = "$LAB_INNER:$LAB_CONTROL_PORT"
key = "$d/agent1.key"

[[service]]
name = "sftp"
listen = ["$LAB_PUB:$LAB_SFTP_PORT"]
backend = ["$LAB_SSH:22"]

[[service]]
name = "https"
listen = ["$LAB_PUB:$LAB_HTTPS_PORT"]
backend = ["$LAB_WEB:443"]

[[service]]
name = "https-pp"
listen = ["$LAB_PUB:$LAB_PP_PORT"]
backend = ["$LAB_WEBPP:443"]
proxy_protocol = "v2"

[outbound]
socks5_listen = "$LAB_AGENT:$LAB_SOCKS_PORT"
http_proxy_listen = "$LAB_AGENT:$LAB_HTTP_PROXY_PORT"
allow_clients = ["10.99.0.0/24"]
EOF
    if ((LAB_WITH_FTPS)); then
        cat >>"$d/agent.toml" <<EOF

[[service]]
name = "ftps"
listen = ["$LAB_PUB:$LAB_FTPS_PORT"]
backend = ["$LAB_FTP:990"]
affinity_s = 300

[[service]]
name = "ftps-pasv"
listen = ["$LAB_PUB:$LAB_PASV"]
backend = ["$LAB_FTP:$LAB_PASV"]
affinity_s = 300
EOF
        # Implicit FTPS, anonymous, chrooted in ftp/ (root-owned) with an
        # upload directory the ftp user owns; passive ports announced as the
        # relay's public address, mapped port for port by the relay.
        mkdir -p "$d/ftp/incoming" && chmod 755 "$d/ftp" && chown ftp: "$d/ftp/incoming" || return 1
        head -c $((16 * 1048576)) /dev/urandom >"$d/ftp/file.bin" && chmod 644 "$d/ftp/file.bin" || return 1
        local p1=${LAB_PASV%-*} p2=${LAB_PASV#*-}
        cat >"$d/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$LAB_FTP
listen_port=990
background=NO
anonymous_enable=YES
local_enable=NO
anon_root=$d/ftp
write_enable=YES
anon_upload_enable=YES
anon_umask=022
no_anon_password=YES
ssl_enable=YES
implicit_ssl=YES
allow_anon_ssl=YES
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$d/www.crt
rsa_private_key_file=$d/www.key
pasv_enable=YES
pasv_min_port=$p1
pasv_max_port=$p2
pasv_address=$LAB_PUB
connect_from_port_20=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=YES
vsftpd_log_file=$d/vsftpd-xfer.log
secure_chroot_dir=/var/run/vsftpd/empty
EOF
    fi
    # sshd: its own host key, one authorized client key, root into the lab dir.
    ssh-keygen -q -t ed25519 -N '' -f "$d/ssh_host_key" || return 1
    ssh-keygen -q -t ed25519 -N '' -f "$d/client_key" || return 1
    cp "$d/client_key.pub" "$d/authorized_keys" || return 1
    cat >"$d/sshd_config" <<EOF
ListenAddress $LAB_SSH:22
HostKey $d/ssh_host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
EOF
    # The partner's sshd on the internet (the forward proxy's sftp case).
    sed -e "s|^ListenAddress .*|ListenAddress $LAB_PARTNER:$LAB_PARTNER_SSH|" \
        -e "s|^PidFile .*|PidFile $d/partner-sshd.pid|" "$d/sshd_config" >"$d/partner_sshd_config" ||
        return 1
    # nginx: a certificate the lab makes; one TLS server, one TLS + PROXY v2 server.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=www.lab.test" \
        -keyout "$d/www.key" -out "$d/www.crt" >/dev/null 2>&1 || return 1
    head -c 1048576 /dev/urandom >"$d/www/blob.bin" || return 1
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $d/nginx.pid;
error_log $d/nginx-error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_max_body_size 64m;
    client_body_temp_path $d/bodies;
    proxy_temp_path $d/nginx/proxy;
    fastcgi_temp_path $d/nginx/fastcgi;
    uwsgi_temp_path $d/nginx/uwsgi;
    scgi_temp_path $d/nginx/scgi;
    log_format pp '\$proxy_protocol_addr \$remote_addr "\$request" \$status';
    ssl_certificate $d/www.crt;
    ssl_certificate_key $d/www.key;
    server {
        listen $LAB_WEB:443 ssl;
        root $d/www;
        access_log $d/web-access.log;
        location = /upload {
            # Keep the request body on disk so the test can compare it byte for byte.
            client_body_in_file_only on;
            proxy_pass http://127.0.0.1:18080/ok;
        }
    }
    server {
        listen $LAB_WEBPP:443 ssl proxy_protocol;
        root $d/www;
        access_log $d/pp-access.log pp;
        set_real_ip_from $LAB_AGENT/32;
        real_ip_header proxy_protocol;
    }
    server {
        listen 127.0.0.1:18080;
        location / { return 200 "stored\n"; }
    }
}
EOF
}

# lab_start_backends: sshd and nginx in lan, each by PID.
lab_start_backends() {
    local d=$LAB_DIR
    mkdir -p /run/sshd # sshd's privilege separation directory (a packaged path)
    lab_spawn "$LAB_NS_L" "$d/sshd.log" /usr/sbin/sshd -D -e -f "$d/sshd_config"
    lab_spawn "$LAB_NS_L" "$d/nginx.log" nginx -c "$d/nginx.conf" -p "$d/nginx"
    lab_wait "sshd on $LAB_SSH:22" 10 lab_tcp_open "$LAB_NS_L" "$LAB_SSH" 22 || return 1
    lab_wait "nginx on $LAB_WEB:443" 10 lab_tcp_open "$LAB_NS_L" "$LAB_WEB" 443 || return 1
    lab_wait "nginx on $LAB_WEBPP:443" 10 lab_tcp_open "$LAB_NS_L" "$LAB_WEBPP" 443 || return 1
    if ((LAB_WITH_FTPS)); then
        lab_spawn "$LAB_NS_L" "$d/vsftpd.log" vsftpd "$d/vsftpd.conf"
        lab_wait "vsftpd on $LAB_FTP:990" 10 lab_tcp_open "$LAB_NS_L" "$LAB_FTP" 990 || return 1
    fi
}

lab_start_partner() {
    local d=$LAB_DIR
    mkdir -p "$d/partner" && head -c $((64 * 1048576)) /dev/urandom >"$d/partner/big.bin" || return 1
    lab_spawn "$LAB_NS_I" "$d/partner.log" python3 -m http.server "$LAB_PARTNER_PORT" \
        --bind "$LAB_PARTNER" --directory "$d/partner"
    lab_wait "partner web server on $LAB_PARTNER:$LAB_PARTNER_PORT" 10 \
        lab_tcp_open "$LAB_NS_I" "$LAB_PARTNER" "$LAB_PARTNER_PORT" || return 1
    lab_spawn "$LAB_NS_I" "$d/partner-sshd.log" /usr/sbin/sshd -D -e -f "$d/partner_sshd_config"
    lab_wait "partner sshd on $LAB_PARTNER:$LAB_PARTNER_SSH" 10 \
        lab_tcp_open "$LAB_NS_I" "$LAB_PARTNER" "$LAB_PARTNER_SSH"
}

lab_start_relay() {
    lab_spawn "$LAB_NS_D" "$LAB_DIR/relay.log" "$1" -c "$LAB_DIR/relay.toml" --log-target stderr
    LAB_RELAY_PID=$LAB_LAST_PID
    lab_wait "relay control port" 10 lab_tcp_open "$LAB_NS_D" "$LAB_INNER" "$LAB_CONTROL_PORT"
}

# lab_start_agent AGENT_BIN: start the agent and wait until its listeners are up.
lab_start_agent() {
    lab_spawn "$LAB_NS_L" "$LAB_DIR/agent.log" "$1" -c "$LAB_DIR/agent.toml" --log-target stderr
    LAB_AGENT_PID=$LAB_LAST_PID
    lab_wait "relay listener $LAB_PUB:$LAB_SFTP_PORT from internet" 20 \
        lab_tcp_open "$LAB_NS_I" "$LAB_PUB" "$LAB_SFTP_PORT"
}

lab_stop_agent() {
    lab_stop_pid "$LAB_AGENT_PID"
    LAB_AGENT_PID=""
}

# lab_up RELAY_BIN AGENT_BIN: the whole lab. 0 up, 77 cannot run here, 1 broken.
lab_up() {
    local relay=$1 agent=$2 rc
    LAB_DIR=$(mktemp -d /tmp/sallyport-lab.XXXXXX) || return 1
    lab_topology
    rc=$?
    ((rc == 0)) || return $rc
    lab_files "$relay" || return 1
    lab_start_backends || return 1
    lab_start_partner || return 1
    lab_start_relay "$relay" || return 1
    lab_start_agent "$agent" || return 1
}

lab_print_help() {
    cat <<EOF

The sallyport lab is up (files in $LAB_DIR).
  internet  $LAB_NS_I   client $LAB_CLIENT
  dmz       $LAB_NS_D    relay $LAB_PUB (public), $LAB_INNER:$LAB_CONTROL_PORT (agents)
  lan       $LAB_NS_L    agent $LAB_AGENT, sshd $LAB_SSH:22, nginx $LAB_WEB:443, nginx+PROXY v2 $LAB_WEBPP:443
  router    $LAB_NS_R      nftables: ip netns exec $LAB_NS_R nft list ruleset

From the internet:
  ip netns exec $LAB_NS_I sftp -i $LAB_DIR/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -P $LAB_SFTP_PORT root@$LAB_PUB
  ip netns exec $LAB_NS_I curl -k https://$LAB_PUB:$LAB_HTTPS_PORT/blob.bin -o /dev/null -w '%{http_code} %{size_download}\n'
  ip netns exec $LAB_NS_I curl -k https://$LAB_PUB:$LAB_PP_PORT/blob.bin -o /dev/null; tail -1 $LAB_DIR/pp-access.log
  ip netns exec $LAB_NS_I curl -k --connect-timeout 3 https://$LAB_WEB/   # dropped by the router
  ip netns exec $LAB_NS_I lftp -c "set ssl:verify-certificate no; set ftp:prefer-epsv no; open -u anonymous,lab ftps://$LAB_PUB:$LAB_FTPS_PORT; ls"   # when vsftpd runs
From the dmz (the relay reaches nothing in the lan by itself):
  ip netns exec $LAB_NS_D curl -k --connect-timeout 3 https://$LAB_WEB/   # dropped
From the lan:
  ip netns exec $LAB_NS_L ss -tnp                                        # the agent's outbound connections
Logs: $LAB_DIR/relay.log (relay PID $LAB_RELAY_PID) $LAB_DIR/agent.log (agent PID $LAB_AGENT_PID)
EOF
}

# ---------------------------------------------------------------------------
# The end-to-end test.

lab_sftp() {
    lab_in "$LAB_NS_I" timeout 60 sftp -q -b "$1" -i "$LAB_DIR/client_key" \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
        -o ConnectTimeout=5 -P "$LAB_SFTP_PORT" "root@$LAB_PUB" >>"$LAB_DIR/sftp.log" 2>&1
}

lab_curl() {
    lab_in "$LAB_NS_I" timeout 60 curl -sS -k --connect-timeout 5 "$@"
}

# lab_counter NAME: the packet count of one of the router's named counters.
lab_counter() {
    lab_in "$LAB_NS_R" nft list counter inet lab "$1" | sed -n 's/.*packets \([0-9]*\).*/\1/p'
}

lab_test_sftp() {
    local d=$LAB_DIR
    head -c $((64 * 1048576)) /dev/urandom >"$d/up.bin"
    printf 'put %s %s/sftp/stored.bin\nget %s/sftp/stored.bin %s/down.bin\n' \
        "$d/up.bin" "$d" "$d" "$d" >"$d/sftp.batch"
    lab_check "sftp put+get of 64 MiB through the relay" lab_sftp "$d/sftp.batch"
    lab_check "sftp: the stored file matches (sha256)" \
        test "$(lab_sha "$d/up.bin")" = "$(lab_sha "$d/sftp/stored.bin" 2>/dev/null)"
    lab_check "sftp: the downloaded file matches (sha256)" \
        test "$(lab_sha "$d/up.bin")" = "$(lab_sha "$d/down.bin" 2>/dev/null)"
}

lab_test_https() {
    local d=$LAB_DIR body
    lab_check "https GET of 1 MiB" lab_curl -o "$d/get.bin" "https://$LAB_PUB:$LAB_HTTPS_PORT/blob.bin"
    lab_check "https GET: bytes match" test "$(lab_sha "$d/www/blob.bin")" = "$(lab_sha "$d/get.bin" 2>/dev/null)"
    head -c $((4 * 1048576)) /dev/urandom >"$d/post.bin"
    body=$(lab_curl --data-binary "@$d/post.bin" -H 'Content-Type: application/octet-stream' \
        "https://$LAB_PUB:$LAB_HTTPS_PORT/upload")
    lab_check "https POST of 4 MiB answered" test "$body" = "stored"
    local stored
    stored=$(find "$d/bodies" -type f -size 4096k | head -1)
    lab_check "https POST: the body nginx stored matches (sha256)" \
        test -n "$stored" -a "$(lab_sha "$d/post.bin")" = "$(lab_sha "${stored:-/dev/null}")"
    lab_check "https through PROXY v2" lab_curl -o /dev/null "https://$LAB_PUB:$LAB_PP_PORT/blob.bin"
    lab_check "nginx logs the client 203.0.113.10 from PROXY v2" \
        grep -q "^$LAB_CLIENT $LAB_CLIENT \"GET /blob.bin" "$d/pp-access.log"
    lab_check "the plain TLS backend saw the agent, not the client" \
        grep -q "^$LAB_AGENT " "$d/web-access.log"
}

lab_test_firewall() {
    local before after
    before=$(lab_counter into_lan_dropped)
    lab_check "internet -> lan sshd directly: no connection" lab_no_connect "$LAB_NS_I" "$LAB_SSH" 22
    lab_check "internet -> lan nginx directly: no connection" lab_no_connect "$LAB_NS_I" "$LAB_WEB" 443
    lab_check "dmz -> lan sshd (the relay host itself): no connection" lab_no_connect "$LAB_NS_D" "$LAB_SSH" 22
    lab_check "dmz -> lan agent address: no connection" lab_no_connect "$LAB_NS_D" "$LAB_AGENT" 22
    after=$(lab_counter into_lan_dropped)
    lab_check "the router's into-lan drop rule counted those attempts ($before -> $after)" \
        test "${after:-0}" -gt "${before:-0}"
    lab_check "internet -> dmz control port: no connection" \
        lab_no_connect "$LAB_NS_I" "$LAB_INNER" "$LAB_CONTROL_PORT"
    # A listener on the internet host proves the drop is the router's, not an absent server.
    lab_spawn "$LAB_NS_I" "$LAB_DIR/inet-listener.log" socat TCP-LISTEN:8000,bind=$LAB_CLIENT,fork,reuseaddr SYSTEM:true
    local pid=$LAB_LAST_PID
    lab_wait "internet test listener" 5 lab_tcp_open "$LAB_NS_I" "$LAB_CLIENT" 8000
    before=$(lab_counter lan_out_dropped)
    lab_check "lan -> internet: no connection" lab_no_connect "$LAB_NS_L" "$LAB_CLIENT" 8000
    after=$(lab_counter lan_out_dropped)
    lab_check "the router's lan-out drop rule counted it ($before -> $after)" \
        test "${after:-0}" -gt "${before:-0}"
    lab_stop_pid "$pid"
}

# lab_fails CMD...: CMD must fail.
lab_fails() { ! "$@"; }

# lab_lan_curl ARGS...: curl run by an application on the lan.
lab_lan_curl() {
    lab_in "$LAB_NS_L" timeout 60 curl -sS --connect-timeout 5 "$@"
}

# The forward proxy: the lan has no route to the internet (the router drops
# it), yet a lan application reaches the partner through agent and relay;
# the router's counters show the only path taken (the relay's egress).
lab_test_outbound() {
    local d=$LAB_DIR before after want
    want=$(lab_sha "$d/partner/big.bin")
    before=$(lab_counter lan_out_dropped)
    lab_check "lan -> partner directly: no connection" \
        lab_no_connect "$LAB_NS_L" "$LAB_PARTNER" "$LAB_PARTNER_PORT"
    after=$(lab_counter lan_out_dropped)
    lab_check "the router's lan-out drop rule counted it ($before -> $after)" \
        test "${after:-0}" -gt "${before:-0}"
    before=$(lab_counter dmz_egress)
    rm -f "$d/out-socks.bin" "$d/out-connect.bin"
    lab_check "curl --socks5-hostname through the agent: 64 MiB from the partner" \
        lab_lan_curl --socks5-hostname "$LAB_AGENT:$LAB_SOCKS_PORT" -o "$d/out-socks.bin" \
        "http://$LAB_PARTNER:$LAB_PARTNER_PORT/big.bin"
    lab_check "SOCKS5 download: bytes match (sha256)" \
        test "$want" = "$(lab_sha "$d/out-socks.bin" 2>/dev/null)"
    lab_check "curl -x (HTTP CONNECT) through the agent: 64 MiB from the partner" \
        lab_lan_curl -p -x "http://$LAB_AGENT:$LAB_HTTP_PROXY_PORT" -o "$d/out-connect.bin" \
        "http://$LAB_PARTNER:$LAB_PARTNER_PORT/big.bin"
    lab_check "HTTP CONNECT download: bytes match (sha256)" \
        test "$want" = "$(lab_sha "$d/out-connect.bin" 2>/dev/null)"
    after=$(lab_counter dmz_egress)
    lab_check "the router counted the relay's egress to the partner ($before -> $after)" \
        test "$((${after:-0} - ${before:-0}))" -ge 2
    # sftp to the partner's sshd with OpenBSD netcat as the SOCKS5 client.
    head -c $((16 * 1048576)) /dev/urandom >"$d/out-up.bin"
    mkdir -p "$d/partner-sftp"
    printf 'put %s %s/partner-sftp/stored.bin\nget %s/partner-sftp/stored.bin %s/out-down.bin\n' \
        "$d/out-up.bin" "$d" "$d" "$d" >"$d/out-sftp.batch"
    lab_check "sftp with ProxyCommand nc -X 5 through the agent: put+get 16 MiB" \
        lab_in "$LAB_NS_L" timeout 60 sftp -q -b "$d/out-sftp.batch" -i "$d/client_key" \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
        -o "ProxyCommand=nc -X 5 -x $LAB_AGENT:$LAB_SOCKS_PORT %h %p" -P "$LAB_PARTNER_SSH" \
        "root@$LAB_PARTNER"
    lab_check "sftp through the forward proxy: stored and downloaded files match (sha256)" \
        test "$(lab_sha "$d/out-up.bin")" = "$(lab_sha "$d/partner-sftp/stored.bin" 2>/dev/null)" \
        -a "$(lab_sha "$d/out-up.bin")" = "$(lab_sha "$d/out-down.bin" 2>/dev/null)"
    lab_check "a port outside [outbound] allow is refused" \
        lab_fails lab_lan_curl --socks5-hostname "$LAB_AGENT:$LAB_SOCKS_PORT" -o /dev/null \
        "http://$LAB_PARTNER:22/"
    lab_check "the relay logged outbound-rejected for it" \
        grep -q "outbound-rejected.*DESTINATION=$LAB_PARTNER:22" "$d/relay.log"
}

lab_lftp() {
    lab_in "$LAB_NS_I" timeout 60 lftp -c "set ssl:verify-certificate no; set ftp:ssl-force true; \
set ftp:passive-mode true; set ftp:prefer-epsv false; set net:max-retries 1; set net:timeout 10; \
debug 9; open -u anonymous,lab ftps://$LAB_PUB:$LAB_FTPS_PORT; $1" >>"$LAB_DIR/lftp.log" 2>&1
}

lab_test_ftps() {
    local d=$LAB_DIR
    if ((!LAB_WITH_FTPS)); then
        lab_log "SKIP ftps: vsftpd or lftp not installed"
        return
    fi
    lab_check "ftps (implicit, PASV via pasv_address): get 16 MiB" \
        lab_lftp "get /file.bin -o $d/ftp-down.bin"
    lab_check "ftps: the download matches (sha256)" \
        test "$(lab_sha "$d/ftp/file.bin")" = "$(lab_sha "$d/ftp-down.bin" 2>/dev/null)"
    lab_check "ftps: put 16 MiB" lab_lftp "cd /incoming; put $d/ftp-down.bin -o up.bin"
    lab_check "ftps: the upload matches (sha256)" \
        test "$(lab_sha "$d/ftp/file.bin")" = "$(lab_sha "$d/ftp/incoming/up.bin" 2>/dev/null)"
    lab_check "ftps: vsftpd announced the relay's public address in PASV" \
        grep -q "227 Entering Passive Mode (${LAB_PUB//./,}," "$d/lftp.log"
    lab_check "ftps: the data connections were ftps-pasv sessions on the relay" \
        grep -q "session-open.*SERVICE=ftps-pasv CLIENT_ADDR=$LAB_CLIENT" "$d/relay.log"
}

lab_test_agent_restart() {
    local agent=$1
    lab_stop_agent
    lab_check "agent stopped: the relay port is refused from the internet" \
        lab_wait "connection refused on $LAB_PUB:$LAB_SFTP_PORT" 10 \
        lab_tcp_refused "$LAB_NS_I" "$LAB_PUB" "$LAB_SFTP_PORT"
    lab_check "agent started again: the listener is back" lab_start_agent "$agent"
    lab_check "https works again after the agent returned" \
        lab_curl -o /dev/null "https://$LAB_PUB:$LAB_HTTPS_PORT/blob.bin"
}

# The agent's current control connection source port, from the relay's
# agent-connected event ("connected from 10.99.0.10:PORT").
lab_control_port() {
    grep 'agent-connected' "$LAB_DIR/relay.log" | tail -1 |
        sed -n "s/.*connected from $LAB_AGENT:\([0-9]*\).*/\1/p"
}

lab_test_control_cut() {
    local d=$LAB_DIR port suspended_before
    head -c $((24 * 1048576)) /dev/urandom >"$d/www/slow.bin"
    port=$(lab_control_port)
    if [[ -z $port ]]; then
        lab_fail "cannot find the agent's control connection in relay.log"
        return
    fi
    lab_in "$LAB_NS_L" ss -tn "dst $LAB_INNER:$LAB_CONTROL_PORT" >"$d/ss-before-cut.txt"
    # 24 MiB at 1 MiB/s (~24 s): the download outlives the relay's heartbeat timeout (3 x 5 s).
    lab_in "$LAB_NS_I" timeout 60 curl -sS -k --limit-rate 1M -o "$d/slow.out" \
        "https://$LAB_PUB:$LAB_HTTPS_PORT/slow.bin" 2>"$d/slow.err" &
    local curl_pid=$!
    LAB_PIDS+=("$curl_pid")
    sleep 1
    suspended_before=$(grep -c 'listeners-suspended' "$d/relay.log")
    # Cut only the control connection (its 5-tuple), and keep the agent from
    # dialing a new one, so the relay is left without an agent while the data
    # channel carrying the download stays untouched.
    lab_in "$LAB_NS_R" nft -f - <<NFT
table inet labcut {
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        ip saddr $LAB_AGENT tcp sport $port ip daddr $LAB_INNER tcp dport $LAB_CONTROL_PORT drop
        ip saddr $LAB_INNER tcp sport $LAB_CONTROL_PORT ip daddr $LAB_AGENT tcp dport $port drop
        iifname "r-lan" tcp dport $LAB_CONTROL_PORT ct state new drop
    }
}
NFT
    lab_log "control connection (agent port $port) cut; waiting for the heartbeat timeout"
    lab_check "control cut: the relay suspends its listeners (within 25 s)" \
        lab_wait "listeners-suspended in relay.log" 25 \
        bash -c "test \$(grep -c listeners-suspended '$d/relay.log') -gt $suspended_before"
    lab_check "control cut: the relay port is refused from the internet" \
        lab_wait "connection refused" 5 lab_tcp_refused "$LAB_NS_I" "$LAB_PUB" "$LAB_HTTPS_PORT"
    lab_check "control cut: the download was still running when the listener went" \
        kill -0 "$curl_pid"
    wait "$curl_pid"
    local rc=$?
    lab_check "control cut: the established download completed (curl rc $rc)" test "$rc" -eq 0
    lab_check "control cut: the download is byte-exact (24 MiB, sha256)" \
        test "$(lab_sha "$d/www/slow.bin")" = "$(lab_sha "$d/slow.out" 2>/dev/null)"
    lab_in "$LAB_NS_R" nft delete table inet labcut
    lab_check "control restored: the agent reconnects and the listener is back (within 40 s)" \
        lab_wait "listener back" 40 lab_tcp_open "$LAB_NS_I" "$LAB_PUB" "$LAB_HTTPS_PORT"
}

lab_test() {
    local relay=$1 agent=$2 rc start=$SECONDS
    for b in "$relay" "$agent"; do
        if [[ ! -x $b ]]; then
            echo "lab: not an executable: $b" >&2
            return 1
        fi
    done
    local t
    for t in sshd:openssh-server sftp:openssh-client nginx:nginx-light curl:curl socat:socat \
        nft:nftables nc:netcat-openbsd; do
        if ! command -v "${t%%:*}" >/dev/null && [[ ! -x /usr/sbin/${t%%:*} ]]; then
            echo "SKIP: ${t%%:*} not installed (apt-get install ${t#*:})"
            return 77
        fi
    done
    if command -v lftp >/dev/null && [[ -x /usr/sbin/vsftpd ]] && id ftp >/dev/null 2>&1; then
        LAB_WITH_FTPS=1
    fi
    lab_up "$relay" "$agent"
    rc=$?
    if ((rc == 77)); then
        return 77
    elif ((rc != 0)); then
        lab_fail "the lab did not come up"
        lab_dump_logs
        return 1
    fi
    lab_pass "lab up in $((SECONDS - start)) s"
    lab_test_firewall
    lab_test_sftp
    lab_test_https
    lab_test_ftps
    lab_test_outbound
    lab_test_agent_restart "$agent"
    lab_test_control_cut
    lab_check "the relay ran through every fault (PID $LAB_RELAY_PID alive)" kill -0 "$LAB_RELAY_PID"
    if ((LAB_FAILS > 0)); then
        lab_dump_logs
        lab_log "$LAB_FAILS check(s) failed in $((SECONDS - start)) s"
        return 1
    fi
    lab_log "all checks passed in $((SECONDS - start)) s"
    return 0
}

lab_dump_logs() {
    lab_tail_logs relay.log agent.log sshd.log nginx-error.log sftp.log vsftpd.log lftp.log
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    lab_main "   (interactive lab: scripts/lab)" lab_test "$@"
fi

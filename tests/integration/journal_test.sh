#!/usr/bin/env bash
# Where journald runs, an event written with --log-target journal must be
# found by its structured field, as SPEC section 5 promises. Exit 77 (skip)
# where there is no journald to ask (containers, CI sandboxes).
set -uo pipefail
relay=$1
if [ ! -S /run/systemd/journal/socket ] || ! command -v journalctl >/dev/null; then
    echo "no journald socket here: skipped"
    exit 77
fi
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$relay" --gen-key j >"$dir/relay.keys" && chmod 600 "$dir/relay.keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/relay.toml" <<TOML
[relay]
threads = 1
control_listen = ["127.0.0.1:$port"]
status_socket = "$dir/relay.sock"
[auth]
keys = "$dir/relay.keys"
TOML
"$relay" -c "$dir/relay.toml" --log-target journal &
pid=$!
for _ in $(seq 50); do
    if journalctl --no-pager -o cat SALLYPORT_EVENT=started _PID="$pid" 2>/dev/null | grep -q started; then
        echo "journalctl SALLYPORT_EVENT=started _PID=$pid found the entry"
        exit 0
    fi
    sleep 0.2
done
echo "journalctl SALLYPORT_EVENT=started _PID=$pid found nothing"
exit 1

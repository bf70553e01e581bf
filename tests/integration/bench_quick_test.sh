#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Smoke test of the benchmark harness: bench/run --quick stands up every path
# on 127.0.0.1 and asserts each moved bytes with matching hashes and served
# every client of a 50-client burst (no speeds).
# Usage: bench_quick_test.sh [PATH/TO/sallyport-bench]. Exit 0 pass, 77 skip
# (a peer program is missing), anything else fail.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [ $# -ge 1 ]; then
    export SALLYPORT_BENCH=$1
fi
BUILD=${BUILD:-$REPO/build}
export BUILD

for prog in haproxy socat ssh ssh-keygen python3 ss; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        echo "SKIP: $prog not installed (bench/run installs it: apt-get install haproxy socat openssh-server openssh-client iproute2)"
        exit 77
    fi
done
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
    echo "SKIP: sshd not installed (apt-get install openssh-server)"
    exit 77
fi

OUT=$(mktemp -d /tmp/bench-quick.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
# timeout bounds the whole run even if a peer hangs; bench/run's own EXIT trap
# stops everything it started when timeout sends it TERM.
timeout -s TERM 240 "$REPO/bench/run" --quick --no-install --out "$OUT"
rc=$?
if [ "$rc" = 124 ]; then
    echo "FAIL: bench/run --quick did not finish within 240 s"
    exit 1
fi
exit "$rc"

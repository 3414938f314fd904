#!/bin/bash
# On demand (as root, inside `unshare --mount --net --propagation private`), N=5000 by default:
# one sandbox, N namespaces, then creates at 50/s without a check and during one `check`.
set -eu
cd "$(dirname "$0")/.."
sh scripts/sandbox-net.sh >/dev/null 2>&1
BIN=$PWD/target/release/nsagent
mkdir -p -m 0755 /run/a
export NSAGENT_SOCKET=/run/a/s.sock
N=${N:-5000}
$BIN run --socket $NSAGENT_SOCKET --pool 100.64.0.0/14 --metrics-addr off --log-level warn \
    --check-interval 0 >>/run/agent.log 2>&1 & pid=$!
while [ ! -S $NSAGENT_SOCKET ]; do sleep 0.05; done
$BIN add --count "$N" --prefix n >/dev/null
sleep 5
python3 benches/check-latency.py
kill $pid

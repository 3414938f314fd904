#!/bin/bash
# Lone requests on an idle agent with a warm pool, from a C client (benches/lone.c), in a
# sandbox (scripts/sandbox-net.sh); compare binaries by alternating runs:
#   for b in old new old new; do sudo BIN=/tmp/nsagent-$b benches/lone.sh; done
# BIN: the agent (default target/release/nsagent); WARM (250), N (200), GAP ms (50).
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$here/target/release/nsagent}
mkdir -p "$here/target/bench"
gcc -O2 -o "$here/target/bench/lone" "$here/benches/lone.c"
if [ -z "$LONE_INSIDE" ]; then
    exec env LONE_INSIDE=1 BIN="$BIN" timeout 300 unshare --mount --net --propagation private bash "$0"
fi
sh "$here/scripts/sandbox-net.sh" >/dev/null 2>&1
mkdir -p /run/a
"$BIN" run --socket /run/a/s.sock --pool 100.64.0.0/16 --pool6 none --log-level warn \
    --warm "${WARM:-250}" &
agent=$!
trap 'kill $agent 2>/dev/null; wait $agent 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S /run/a/s.sock ] && break; sleep 0.1; done
for _ in $(seq 600); do
    ready=$(curl -s 127.0.0.1:9477/metrics | awk '/^nsagent_warm_ready /{print $2}')
    [ "${ready:-0}" = "${WARM:-250}" ] && break
    sleep 0.1
done
sleep 1
"$here/target/bench/lone" "${N:-200}" "${GAP:-50}" ping
"$here/target/bench/lone" "${N:-200}" "${GAP:-50}" create c

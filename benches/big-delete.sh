#!/bin/bash
# On demand (as root, inside `unshare --mount --net --propagation private`), N=30000 by default:
# one sandbox, N namespaces created, then all deleted by one `nsagent del --prefix`: when the
# deletes were answered and when the kernel had freed them. PERF=1 also records
# `perf record -a -g` and `perf trace -s` of the executor thread for the first 25 s.
PERF=${PERF:-}; set -u
cd "$(dirname "$0")/.."
sh scripts/sandbox-net.sh >/dev/null 2>&1
BIN=$PWD/target/release/nsagent
S=/run/a/s.sock
mkdir -p -m 0755 /run/a
export NSAGENT_SOCKET=$S
N=${N:-30000}
$BIN run --socket $S --pool 100.64.0.0/13 --metrics-addr off --log-level warn >>/run/agent.log 2>&1 & pid=$!
while [ ! -S $S ]; do sleep 0.05; done
t=$(date +%s.%N); $BIN add --count $N --prefix n >/dev/null 2>/run/big-add.err; t2=$(date +%s.%N)
echo "created $N in $(echo "$t2 - $t" | bc) s"
sleep 20
links0=$(($(wc -l < /proc/net/dev) - 2 - N))
EX=$(ls /proc/$pid/task | while read t; do [ "$(cat /proc/$pid/task/$t/comm)" = executor ] && echo $t; done)
[ -n "$PERF" ] && perf record -a -g -o /tmp/big-delete.perf -- sleep 25 >/dev/null 2>&1 &
[ -n "$PERF" ] && perf trace -s -t $EX -o /tmp/big-delete.trace -- sleep 25 >/dev/null 2>&1 &
t=$(date +%s.%N); $BIN del --prefix n >/dev/null 2>&1; t2=$(date +%s.%N)
echo "del acked in $(echo "$t2 - $t" | bc) s"
while [ $(($(wc -l < /proc/net/dev) - 2)) -gt $links0 ]; do sleep 0.2; done; t3=$(date +%s.%N)
echo "deleted $N until freed in $(echo "$t3 - $t" | bc) s"
wait
kill $pid

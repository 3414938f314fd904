#!/bin/bash
# On demand (as root, inside `unshare --mount --net --propagation private`), N=20000 by default:
# one sandbox, N namespaces: creates, list, kill -9 + restart (time to ready), list, deletes.
set -u
cd "$(dirname "$0")/.."
sh scripts/sandbox-net.sh >/dev/null 2>&1
BIN=$PWD/target/release/nsagent
S=/run/a/s.sock
export NSAGENT_SOCKET=$S
N=${N:-20000}
start() { $BIN run --socket $S --pool 100.64.0.0/13 --metrics-addr off --log-level warn >>/run/agent.log 2>&1 & echo $!; }
hwm() { grep VmHWM /proc/$1/status | awk '{print $2/1024 " MiB"}'; }
pid=$(start); while [ ! -S $S ]; do sleep 0.05; done
t=$(date +%s.%N); $BIN add --count $N --prefix n >/dev/null 2>/tmp/bench/big-add.err; t2=$(date +%s.%N)
echo "created $N in $(echo "$t2 - $t" | bc) s; agent peak RSS $(hwm $pid)"
t=$(date +%s.%N); $BIN list --json | wc -c; t2=$(date +%s.%N)
echo "list in $(echo "$t2 - $t" | bc) s; agent peak RSS $(hwm $pid)"
kill -9 $pid; sleep 0.5; rm -f $S
t=$(date +%s.%N); pid=$(start); while ! $BIN status >/dev/null 2>&1; do sleep 0.05; done; t2=$(date +%s.%N)
echo "restart (kill -9) to ready: $(echo "$t2 - $t" | bc) s; peak RSS $(hwm $pid)"
t=$(date +%s.%N); n=$($BIN list --json | grep -o '"name"' | wc -l); t2=$(date +%s.%N)
echo "adopted and listed $n in $(echo "$t2 - $t" | bc) s after ready; agent peak RSS $(hwm $pid)"
links0=$(($(wc -l < /proc/net/dev) - 2 - n))
t=$(date +%s.%N); $BIN del --prefix n >/dev/null 2>&1
while [ $(($(wc -l < /proc/net/dev) - 2)) -gt $links0 ]; do sleep 0.2; done; t2=$(date +%s.%N)
echo "deleted $n until freed in $(echo "$t2 - $t" | bc) s"
kill $pid

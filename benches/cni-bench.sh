#!/bin/bash
# On demand (as root, inside `unshare --mount --net --propagation private`), N=200 by default:
# container network set-up through nsagent-cni against the reference ptp plugin with ipMasq
# (Debian's containernetworking-plugins, host-local IPAM), each plugin executed once per
# container and verb as a runtime does, in one sandbox. Needs containernetworking-plugins and
# iptables. Prints ms per ADD and per DEL for both, and the ratios.
set -eu
cd "$(dirname "$0")/.."
sh scripts/sandbox-net.sh >/dev/null 2>&1
N=${N:-200}
REF=${REF:-/usr/lib/cni}
BIN=$PWD/target/release/nsagent
D=$(mktemp -d)
mkdir -p -m 0755 /run/a
$BIN run --socket /run/a/s.sock --pool 100.64.0.0/14 --metrics-addr off --log-level warn \
    --check-interval 0 >"$D/agent.log" 2>&1 & pid=$!
while [ ! -S /run/a/s.sock ]; do sleep 0.05; done
ln -s "$BIN-cni" "$D/nsagent-cni"
for i in $(seq 1 "$N"); do echo "netns add a$i"; echo "netns add p$i"; done | ip -batch -
NSAGENT='{"cniVersion":"1.0.0","name":"bench","type":"nsagent-cni","socket":"/run/a/s.sock","ipMasq":true}'
PTP='{"cniVersion":"1.0.0","name":"ptpbench","type":"ptp","ipMasq":true,"ipam":{"type":"host-local","subnet":"100.72.0.0/16","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'"$D"'/ipam"}}'
# Runs $1 (plugin) with verb $2 for every container of prefix $3; prints ms per call.
each() {
    local plugin=$1 verb=$2 prefix=$3 conf=$4 t0 t1
    t0=$(date +%s%N)
    for i in $(seq 1 "$N"); do
        CNI_COMMAND=$verb CNI_CONTAINERID=$prefix$i CNI_NETNS=/run/netns/$prefix$i \
            CNI_IFNAME=eth0 CNI_PATH=$REF "$plugin" <<<"$conf" >/dev/null \
            || { echo "$plugin $verb $prefix$i failed" >&2; exit 1; }
    done
    t1=$(date +%s%N)
    echo "scale=3; ($t1 - $t0) / 1000000 / $N" | bc
}
na=$(each "$D/nsagent-cni" ADD a "$NSAGENT")
pa=$(each "$REF/ptp" ADD p "$PTP")
# Both work: a container of each reaches the uplink's side.
ip netns exec a1 ping -c1 -W2 198.18.0.2 >/dev/null
ip netns exec p1 ping -c1 -W2 198.18.0.2 >/dev/null
rules=$(iptables-save 2>/dev/null | grep -c . || true)
nd=$(each "$D/nsagent-cni" DEL a "$NSAGENT")
pd=$(each "$REF/ptp" DEL p "$PTP")
kill $pid
printf '{"n":%s,"nsagent_add_ms":%s,"ptp_add_ms":%s,"add_ratio":%s,"nsagent_del_ms":%s,"ptp_del_ms":%s,"del_ratio":%s,"iptables_lines_with_ptp":%s}\n' \
    "$N" "$na" "$pa" "$(echo "scale=1; $pa / $na" | bc)" "$nd" "$pd" "$(echo "scale=1; $pd / $nd" | bc)" "$rules"

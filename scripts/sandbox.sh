#!/usr/bin/env bash
# Runs a command (default: the agent) inside a throwaway mount+network namespace with an
# "upstream" namespace behind an uplink veth (198.18.0.0/30), so the agent can be tried without
# touching the host's network or firewall. Everything disappears when the command exits.
#   scripts/sandbox.sh                      # agent on /tmp/nsagent-sandbox/nsagent.sock
#   scripts/sandbox.sh bash                 # a shell in the sandbox
set -euo pipefail
bin=${NSAGENT_BIN:-$(dirname "$0")/../target/release/nsagent}
sock_dir=${NSAGENT_SANDBOX_DIR:-/tmp/nsagent-sandbox}
mkdir -p "$sock_dir"
if (($# == 0)); then
    set -- "$bin" run --socket "$sock_dir/nsagent.sock" --pool 100.64.0.0/16
fi
exec unshare --mount --net --propagation private bash -c '
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
ip link set lo up
ip netns add upstream
ip link add uplink0 type veth peer name up0 netns upstream
ip addr add 198.18.0.1/30 dev uplink0
ip link set uplink0 up
ip -n upstream addr add 198.18.0.2/30 dev up0
ip -n upstream link set up0 up
ip -n upstream link set lo up
ip route add default via 198.18.0.2
exec "$@"' sandbox "$@"

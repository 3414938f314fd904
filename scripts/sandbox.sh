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
net_setup=$(cat "$(dirname "$0")/sandbox-net.sh")
exec unshare --mount --net --propagation private bash -c "$net_setup
"'exec "$@"' sandbox "$@"

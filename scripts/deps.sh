#!/usr/bin/env bash
# Installs the system packages nsagent needs to build and test on Debian (run as root).
# prometheus (for promtool and the end-to-end scrape test) is installed without starting its
# service: the tests run their own Prometheus inside a sandbox.
set -euo pipefail
pkgs=(libnftnl-dev libmnl-dev pkg-config nftables iproute2 conntrack socat iputils-ping util-linux procps systemd python3-yaml prometheus)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    trap '((made_policy)) && rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

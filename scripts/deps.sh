#!/usr/bin/env bash
# Installs the system packages nsagent needs to build and test on Debian (run as root).
set -euo pipefail
pkgs=(libnftnl-dev libmnl-dev pkg-config nftables iproute2 conntrack socat iputils-ping util-linux)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

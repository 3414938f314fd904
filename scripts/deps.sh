#!/usr/bin/env bash
# Installs the system packages nsagent needs to build and test on Debian (run as root); the
# list is scripts/debian-packages.txt. prometheus (for promtool and the end-to-end scrape test)
# is installed without starting its service: the tests run their own inside a sandbox.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
while read -r p; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done < debian-packages.txt
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

#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks that it carries everything it should.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo deb -p nsagent --quiet
deb=$(ls -t target/debian/nsagent_*.deb | head -1)
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/nsagent ./lib/systemd/system/nsagent.service \
         ./usr/share/doc/nsagent/examples/nsagent.toml ./usr/lib/sysctl.d/60-nsagent.conf \
         ./usr/share/bash-completion/completions/nsagent ./usr/share/zsh/vendor-completions/_nsagent \
         ./usr/share/fish/vendor_completions.d/nsagent.fish ./usr/share/man/man1/nsagent.1.gz; do
    grep -qxF "$f" <<<"$contents" || { echo "package.sh: $deb lacks $f" >&2; exit 1; }
done
dpkg-deb -f "$deb" Depends | grep -q libnftnl || { echo "package.sh: Depends lacks libnftnl" >&2; exit 1; }
echo "package.sh: $deb ok"

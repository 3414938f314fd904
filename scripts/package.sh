#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks that it carries everything it should: a
# stripped /usr/bin/nsagent (its debug info goes to nsagent-dbgsym_*.ddeb, see dbgsym in
# agent/Cargo.toml) and a unit file whose Documentation= points at what the package installs.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo-deb 3 or later: older ones know no `dbgsym` and would ship the unstripped binary.
cargo deb --version 2>/dev/null | grep -qE '^cargo-deb ([3-9]|[1-9][0-9]+)\.' \
    || cargo install --locked cargo-deb
# No stale packages from an earlier run: the checks below must see this build's.
rm -f target/debian/nsagent_*.deb target/debian/nsagent-dbgsym_*.ddeb
cargo deb -p nsagent --quiet
deb=$(ls -t target/debian/nsagent_*.deb | head -1)
ddeb=$(ls -t target/debian/nsagent-dbgsym_*.ddeb | head -1)
fail() { echo "package.sh: $*" >&2; exit 1; }
listing=$(dpkg-deb -c "$deb")
contents=$(awk '{print $6}' <<<"$listing")
for f in ./usr/bin/nsagent ./usr/lib/cni/nsagent-cni ./lib/systemd/system/nsagent.service \
         ./usr/share/doc/nsagent/examples/nsagent.toml ./usr/lib/sysctl.d/60-nsagent.conf \
         ./usr/share/bash-completion/completions/nsagent ./usr/share/zsh/vendor-completions/_nsagent \
         ./usr/share/fish/vendor_completions.d/nsagent.fish ./usr/share/man/man1/nsagent.1.gz \
         ./usr/share/doc/nsagent/README.md; do
    grep -qxF "$f" <<<"$contents" || fail "$deb lacks $f"
done
dpkg-deb -f "$deb" Depends | grep -q libnftnl || fail "Depends lacks libnftnl"
# The shipped binary is stripped (unstripped, with the release profile's debug = 1: ~64 MB).
size=$(awk '$6 == "./usr/bin/nsagent" {print $3}' <<<"$listing")
((size < 20000000)) || fail "/usr/bin/nsagent is $size bytes (not stripped?), limit 20 MB"
cni=$(awk '$6 == "./usr/lib/cni/nsagent-cni" {print $3}' <<<"$listing")
((cni < 5000000)) || fail "/usr/lib/cni/nsagent-cni is $cni bytes (not stripped?), limit 5 MB"
grep -qE '\./usr/lib/debug/\.build-id/[0-9a-f]{2}/[0-9a-f]+\.debug$' <<<"$(dpkg-deb -c "$ddeb")" \
    || fail "$ddeb lacks the debug info of /usr/bin/nsagent"
# Documentation= of the installed unit: no placeholder URLs.
docs=$(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./lib/systemd/system/nsagent.service \
    | grep '^Documentation=') || fail "the unit has no Documentation="
if grep -qiE 'example\.(invalid|com|org|net)' <<<"$docs"; then fail "placeholder URL in the unit: $docs"; fi
echo "package.sh: $deb ok (/usr/bin/nsagent: $size bytes; debug info in $ddeb)"

#!/usr/bin/env bash
# The whole default test suite (as root): deps, format, lints, unit and integration tests.
# Integration tests run the real agent in throwaway mount+network namespaces; they never touch
# the host's interfaces, routes, /run/netns or firewall.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace
./scripts/package.sh

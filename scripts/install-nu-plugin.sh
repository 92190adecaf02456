#!/usr/bin/env bash
# Builds the Nushell plugin the `nushell-plugins` tests load
# (tests/nu_plugins.rs): nu_plugin_inc at the version of xs's Nushell
# crates, from the crates.io registry, into the project-local .tools/bin.
# The npm package of Nushell (scripts/install-nushell.sh) has no plugins.
#
# Idempotent: when .tools/bin/nu_plugin_inc exists it does nothing.
# Usage: scripts/install-nu-plugin.sh [--force]
set -euo pipefail

VERSION="${NUSHELL_VERSION:-0.115.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
plugin="$tools/bin/nu_plugin_inc"

if [[ "${1:-}" != "--force" && -x "$plugin" ]]; then
  echo "nu_plugin_inc already at $plugin"
  exit 0
fi
cargo install --quiet --locked --root "$tools" nu_plugin_inc --version "$VERSION"
echo "nu_plugin_inc $VERSION at $plugin"

#!/usr/bin/env bash
# Installs Debian's chromium (the headless browser tests/ui.rs loads the
# viewer page in) when it is not on PATH yet. Idempotent. Needs root or sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "install-chromium: run as root, or install chromium yourself (apt-get install chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null; then
  "${sudo[@]}" apt-get update >/dev/null
  "${sudo[@]}" apt-get install -y --no-install-recommends chromium >/dev/null
fi
chromium --version 2>/dev/null | head -1

#!/usr/bin/env bash
# Installs Debian's redis-server (the Redis the Redis backend's tests run
# against) when it is not on PATH yet. Idempotent. Needs root or sudo.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "redis-server already installed: $(redis-server --version | head -1)"
  exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "install-redis: run as root, or install redis-server yourself (apt-get install redis-server)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends redis-server >/dev/null; then
  "${sudo[@]}" apt-get update >/dev/null
  "${sudo[@]}" apt-get install -y --no-install-recommends redis-server >/dev/null
fi
redis-server --version | head -1

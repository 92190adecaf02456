#!/usr/bin/env bash
# Installs the official Nushell binary (the user's shell that runs src/nu/xs.nu)
# into the project-local .tools/ folder, from the npm registry package
# `nushell`, and links it as .tools/bin/nu. The package's `nu` entry is a
# node launcher; the binary itself comes in a platform package
# (@nushell/<os>-<arch>, an optional dependency), which is what we link.
#
# Idempotent: when .tools/bin/nu already runs and reports the wanted version,
# it does nothing. Usage: scripts/install-nushell.sh [--force]
set -euo pipefail

VERSION="${NUSHELL_VERSION:-0.115.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
link="$bin/nu"

if [[ "${1:-}" != "--force" && -x "$link" ]]; then
  if have="$("$link" --version 2>/dev/null)" && [[ "$have" == "$VERSION" ]]; then
    echo "nushell $VERSION already at $link"
    exit 0
  fi
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install-nushell: npm is needed (apt-get install npm)" >&2
  exit 1
fi

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "install-nushell: unsupported OS $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  armv7l | armv6l) arch=arm ;;
  riscv64) arch=riscv64 ;;
  *) echo "install-nushell: unsupported CPU $(uname -m)" >&2; exit 1 ;;
esac
platform="@nushell/$os-$arch"

mkdir -p "$tools" "$bin"
# Naming the platform package as well as the launcher installs the binary
# even where npm is set to skip optional dependencies. The launcher's
# engines field asks for a newer node than some machines have; it is never
# run, so that warning is harmless.
npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error \
  "nushell@$VERSION" "$platform@$VERSION"

found=""
for candidate in \
  "$tools/node_modules/$platform/bin/nu" \
  "$tools/node_modules/nushell/node_modules/$platform/bin/nu"; do
  if [[ -f "$candidate" ]]; then
    found="$candidate"
    break
  fi
done
if [[ -z "$found" ]]; then
  found="$(find "$tools/node_modules" -path '*/bin/nu' -type f -perm -u+x 2>/dev/null | head -n 1 || true)"
fi
if [[ -z "$found" ]]; then
  echo "install-nushell: no nu binary under $tools/node_modules" >&2
  exit 1
fi
chmod +x "$found"
# A relative link, so the checkout can move.
ln -sfn "../${found#"$tools/"}" "$link"

have="$("$link" --version)"
if [[ "$have" != "$VERSION" ]]; then
  echo "install-nushell: $link reports $have, wanted $VERSION" >&2
  exit 1
fi
echo "nushell $have installed at $link -> $found"

#!/usr/bin/env bash
# Installs Debian's zsh, fish and groff when they are not on PATH yet: the
# shells tests/cli_completions.rs loads `xs completions` into, and the
# formatter it renders `xs man` with (bash is already there; Nushell comes
# from scripts/install-nushell.sh). Idempotent. Needs root or sudo.
set -euo pipefail

missing=()
command -v zsh >/dev/null 2>&1 || missing+=(zsh)
command -v fish >/dev/null 2>&1 || missing+=(fish)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
if [[ ${#missing[@]} == 0 ]]; then
  echo "zsh, fish and groff already installed"
  exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "install-shells: run as root, or install them yourself (apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
  "${sudo[@]}" apt-get update >/dev/null
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
zsh --version
fish --version
groff --version | head -1

#!/usr/bin/env bash
# Build statistics for xs.
#
#   scripts/build-stats.sh           stripped size of the release binary and
#                                    the number of crates in the normal
#                                    dependency graph
#   scripts/build-stats.sh --clean   also times a clean `cargo build --release`
#                                    in a scratch CARGO_TARGET_DIR (removed after)
#   scripts/build-stats.sh --core    the same for the build without Nushell
#                                    (`--no-default-features`), in its own
#                                    target folder (target/core)
#   scripts/build-stats.sh --features F   the same with extra Cargo features
#                                    (e.g. nushell-os), in target/features-F
#
# The binary is ${CARGO_TARGET_DIR:-target}/release/xs; `cargo build
# --release` runs first (a no-op when it is up to date), so the size is never
# that of a stale build. The size is measured on a stripped copy (`strip`
# when available; the release profile already sets strip = true, so both
# usually agree).
set -euo pipefail

cd "$(dirname "$0")/.."

clean=0
features=()
for arg in "$@"; do
    case "$arg" in
        --clean) clean=1 ;;
        --core) features=(--no-default-features) ;;
        --features) want_features=1 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *)
            if [ "${want_features:-0}" = 1 ]; then
                features=(--features "$arg"); want_features=0; folder="features-$arg"
            else
                echo "unknown argument: $arg" >&2; exit 2
            fi ;;
    esac
done

target_dir="${CARGO_TARGET_DIR:-target}"
if [ ${#features[@]} -gt 0 ]; then
    # Its own folder: switching features back and forth rebuilds xs.
    target_dir="$target_dir/${folder:-core}"
fi
bin="$target_dir/release/xs"
echo "cargo build --release ${features[*]} (up to date unless the sources changed)..." >&2
cargo build --release --quiet --target-dir "$target_dir" "${features[@]}"

stripped="$(mktemp)"
trap 'rm -f "$stripped"' EXIT
cp "$bin" "$stripped"
if command -v strip >/dev/null 2>&1; then
    strip "$stripped"
fi
bytes=$(stat -c %s "$stripped")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
echo "binary $bin (built $(date -r "$bin" '+%F %T')) stripped_bytes=$bytes stripped_mb=$mb"

tree="$(cargo tree --prefix none -e normal "${features[@]}")"
crates=$(printf '%s\n' "$tree" | sort -u | wc -l)
# cargo tree marks a crate's repeat appearances with " (*)": folded, each
# crate (the package itself included) counts once.
distinct=$(printf '%s\n' "$tree" | sed 's/ (\*)$//' | sort -u | wc -l)
echo "crates=$crates (cargo tree --prefix none -e normal | sort -u | wc -l) distinct=$distinct (with ' (*)' repeats folded)"

if [ "$clean" = 1 ]; then
    scratch="$(mktemp -d)"
    trap 'rm -f "$stripped"; rm -rf "$scratch"' EXIT
    echo "clean release build in $scratch ..." >&2
    start=$(date +%s.%N)
    cargo build --release --quiet --target-dir "$scratch" "${features[@]}"
    end=$(date +%s.%N)
    secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }')
    echo "clean_release_build_secs=$secs jobs=$(nproc) (other builds on the machine skew this)"
fi

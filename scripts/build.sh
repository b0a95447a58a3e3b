#!/usr/bin/env bash
# Configures (once) and builds strata.
#
#   scripts/build.sh [BUILD_DIR] [meson options...]
#
# BUILD_DIR defaults to build/ (debugoptimized: -O2 with debug info).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-build}
shift || true
if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "$@"
elif [[ $# -gt 0 ]]; then
    meson configure "$dir" "$@"
fi
ninja -C "$dir"

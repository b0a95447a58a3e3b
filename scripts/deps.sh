#!/usr/bin/env bash
# Installs what strata needs from Debian's packages (Debian 12).
#
#   scripts/deps.sh            build and run dependencies
#   scripts/deps.sh --test     also what the test suites use (Check, curl,
#                              promtool to validate /metrics)
#   scripts/deps.sh --fuzz     also clang and its runtime, for the libFuzzer
#                              builds (CC=clang meson setup build-fuzz -Dfuzz=true)
#
# Idempotent and quick when everything is present: it runs apt-get only
# for packages that are missing. Needs root (or sudo) to install.
set -euo pipefail

pkgs=(gcc pkg-config meson ninja-build python3
      libevent-dev libhttp-parser-dev libjansson-dev liblz4-dev
      libyaml-dev zlib1g-dev libsodium-dev)
case "${1:-}" in
--test) pkgs+=(check curl prometheus libsqlite3-dev) ;;
--fuzz) pkgs+=(check clang libclang-rt-14-dev) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps CI fast; the prometheus package is only for promtool
# and must not start a service here.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

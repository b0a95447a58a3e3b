#!/usr/bin/env bash
# Installs what strata needs from Debian's packages (Debian 12).
#
#   scripts/deps.sh            build and run dependencies
#   scripts/deps.sh --test     also what the test suites use (Check, curl,
#                              promtool to validate /metrics, SQLite and
#                              npm), and fetches the query oracle's data set
#                              (tests/data/vega/, see fetch_vega below)
#   scripts/deps.sh --fuzz     also clang and its runtime, for the libFuzzer
#                              builds (CC=clang meson setup build-fuzz -Dfuzz=true)
#
# Idempotent and quick when everything is present: it runs apt-get only
# for packages that are missing, and npm only when the data set is
# missing. Needs root (or sudo) to install.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(gcc pkg-config meson ninja-build python3
      libevent-dev libhttp-parser-dev libjansson-dev liblz4-dev
      libyaml-dev zlib1g-dev libsodium-dev)
case "${1:-}" in
--test)
    pkgs+=(check curl prometheus libsqlite3-dev)
    # npm fetches the oracle's data set; a machine may have it from elsewhere.
    command -v npm >/dev/null || pkgs+=(npm)
    ;;
--fuzz) pkgs+=(check clang libclang-rt-14-dev) ;;
esac

# The real flight records that tests/integration/test_oracle.c loads into
# strata and into SQLite: data/flights-20k.json of the npm package
# vega-datasets, at a pinned version and checksum, extracted into
# tests/data/vega/ (not committed: .gitignore). Fails loudly: CI must have it.
VEGA_VERSION=3.2.1
VEGA_FILE=flights-20k.json
VEGA_SHA256=52f0ddd892d4569284b845e17323abc9afb7d303ec8f63251634a20327a610bb
fetch_vega() {
    local dir=tests/data/vega tmp
    if [[ -f $dir/$VEGA_FILE ]] && echo "$VEGA_SHA256  $dir/$VEGA_FILE" | sha256sum -c --quiet - 2>/dev/null; then
        return 0
    fi
    echo "deps.sh: fetching vega-datasets@$VEGA_VERSION ($VEGA_FILE) into $dir"
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && npm pack --loglevel=error "vega-datasets@$VEGA_VERSION" >/dev/null) ||
       ! tar -xzf "$tmp/vega-datasets-$VEGA_VERSION.tgz" -C "$tmp" "package/data/$VEGA_FILE"; then
        rm -rf "$tmp"
        echo "deps.sh: cannot fetch vega-datasets@$VEGA_VERSION with npm" >&2
        exit 1
    fi
    if ! echo "$VEGA_SHA256  $tmp/package/data/$VEGA_FILE" | sha256sum -c --quiet -; then
        rm -rf "$tmp"
        echo "deps.sh: $VEGA_FILE of vega-datasets@$VEGA_VERSION has an unexpected checksum" >&2
        exit 1
    fi
    mv "$tmp/package/data/$VEGA_FILE" "$dir/$VEGA_FILE"
    rm -rf "$tmp"
}

install_missing() {
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0

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
}

install_missing
if [[ "${1:-}" == "--test" ]]; then
    fetch_vega
fi

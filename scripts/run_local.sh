#!/usr/bin/env bash
# Installs the dependencies, builds strata and runs it on the commented
# default configuration etc/strata.yaml with the data directory ./data.
#
#   scripts/run_local.sh [extra strata serve flags...]
#
# Ctrl-C stops it gracefully. The admin token is generated at first start
# into ./data/admin_token (mode 0600).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
scripts/build.sh build
exec build/strata serve --config etc/strata.yaml --data-dir ./data "$@"

#!/usr/bin/env bash
# Builds and runs every test suite (unit, integration, fuzz-corpus replay).
#
#   scripts/test.sh                 the normal build, in build/
#   scripts/test.sh --sanitize      an ASan+UBSan build, in build-asan/
#
# Prints the meson test summary, then one line "N passed, N failed" that
# counts every Check test case (and every other test once). Exits non-zero
# when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test

dir=build
opts=()
if [[ "${1:-}" == "--sanitize" ]]; then
    dir=build-asan
    opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "${opts[@]}"
fi
ninja -C "$dir"

rc=0
meson test -C "$dir" --print-errorlogs --num-processes 2 || rc=$?
python3 scripts/count_tests.py "$dir/meson-logs/testlog.json"
exit $rc

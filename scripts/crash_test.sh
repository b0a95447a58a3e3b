#!/usr/bin/env bash
# The long crash test: tests/integration/test_crash.c (which `meson test
# integ_crash` runs short, with 4 kills per case) with many more kill -9s
# of a server, each followed by a restart on the same data dir and a check
# that every acknowledged batch is there and no unacknowledged batch is
# half there. Two cases: "ingest" kills during concurrent ingest (default
# settings), "storage" kills while flushes, compactions and checkpoints
# run (1 MiB memtables, tiny compaction tiers, 50 ms job intervals, the
# server also asked for checkpoints and compactions just before kills),
# with upserts checked against a model of every key and the data dir
# checked for leftover *.tmp and unlisted segment files.
#
#   scripts/crash_test.sh [options]
#
#   --kills N          kill -9 the server N times in the ingest case (default 300)
#   --storage-kills N  kill -9 it N times in the storage case (default 150)
#   --cases C          all, ingest or storage (default all)
#   --loops N          run everything N times, the seed plus 1 each time
#                      (default 1); stops at the first failure
#   --seconds S        stop killing after S seconds, whatever N, per case
#                      and loop (default: no limit)
#   --seed N           seed of the kill times (default 20261124; "random" picks
#                      one, printed so that a failure can be replayed)
#   --threads N        client threads, 1 to 8 (default 3)
#   --pace-ms N        each thread pauses N ms after a batch (default 1), which
#                      bounds the data a long run writes, recovers and reads back
#   --build DIR        build directory (default build; configured if missing)
#   --sanitize         use an ASan+UBSan build (default dir build-asan)
#   --keep             keep the servers' directories and logs (printed at the end)
#
# Builds the server and the test, runs the test binary directly (no meson
# test timeout; the test sets its own from the kills and seconds) and
# exits with its status. Each kill costs about 0.3 s plus recovery in the
# ingest case, about 0.5 s in the storage case.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=300
storage_kills=150
cases=all
loops=1
seconds=0
seed=20261124
threads=3
pace=1
dir=""
sanitize=0
keep=0

usage() {
    sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --kills) kills=${2:?--kills needs a number}; shift 2 ;;
    --storage-kills) storage_kills=${2:?--storage-kills needs a number}; shift 2 ;;
    --cases) cases=${2:?--cases needs all, ingest or storage}; shift 2 ;;
    --loops) loops=${2:?--loops needs a number}; shift 2 ;;
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --seed) seed=${2:?--seed needs a number or "random"}; shift 2 ;;
    --threads) threads=${2:?--threads needs a number}; shift 2 ;;
    --pace-ms) pace=${2:?--pace-ms needs a number}; shift 2 ;;
    --build) dir=${2:?--build needs a directory}; shift 2 ;;
    --sanitize) sanitize=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "crash_test.sh: unknown option '$1'" >&2; usage 2 ;;
    esac
done

if [[ "$seed" == random ]]; then
    seed=$(( (RANDOM << 15 | RANDOM) ))
fi
for v in "$kills" "$storage_kills" "$loops" "$seconds" "$seed" "$threads" "$pace"; do
    [[ "$v" =~ ^[0-9]+$ ]] || { echo "crash_test.sh: '$v' is not a number" >&2; exit 2; }
done
case "$cases" in
all) run_case="" ;;
ingest) run_case=crash ;;
storage) run_case=storage ;;
*) echo "crash_test.sh: --cases must be all, ingest or storage, not '$cases'" >&2; exit 2 ;;
esac
[[ $loops -ge 1 ]] || { echo "crash_test.sh: --loops must be at least 1" >&2; exit 2; }

scripts/deps.sh --test

opts=()
if [[ $sanitize -eq 1 ]]; then
    dir=${dir:-build-asan}
    opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
dir=${dir:-build}
if [[ ! -f "$dir/build.ninja" ]]; then
    meson setup "$dir" "${opts[@]}"
fi
ninja -C "$dir" strata tests/integration/test_integ_crash

echo "crash_test.sh: cases $cases, $kills ingest kills, $storage_kills storage kills," \
     "${seconds} s limit, seed $seed, $loops loops, $threads threads, pace $pace ms, build $dir"
export STRATA_BIN="$PWD/$dir/strata"
export STRATA_CRASH_KILLS=$kills
export STRATA_CRASH_STORAGE_KILLS=$storage_kills
export STRATA_CRASH_SECONDS=$seconds
export STRATA_CRASH_THREADS=$threads
export STRATA_CRASH_PACE_MS=$pace
export CK_VERBOSITY=${CK_VERBOSITY:-verbose}
if [[ -n "$run_case" ]]; then
    export CK_RUN_CASE=$run_case
else
    unset CK_RUN_CASE
fi
[[ $keep -eq 1 ]] && export HARNESS_KEEP=1

rc=0
for ((loop = 0; loop < loops; loop++)); do
    s=$((seed + loop))
    [[ $loops -gt 1 ]] && echo "crash_test.sh: loop $((loop + 1)) of $loops, seed $s"
    export STRATA_CRASH_SEED=$s
    "$dir/tests/integration/test_integ_crash" || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "crash_test.sh: FAILED (seed $s; replay with --seed $s --cases $cases" \
             "--kills $kills --storage-kills $storage_kills)" >&2
        break
    fi
done
exit $rc

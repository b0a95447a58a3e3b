#!/usr/bin/env bash
# The ingest benchmark: NDJSON batches of flights-like records (~104 bytes)
# POSTed over HTTP to a fresh strata with fsync on (storage.sync: always),
# on 127.0.0.1 only. Prints records/s, MB/s and latency, then the bytes
# the WAL took on disk per NDJSON byte.
#
#   bench/run_ingest.sh [-n RECORDS] [-k BATCH] [-c CONNS] [-d SECONDS] [--sync MODE]
#                       [--memtable SIZE] [--short]
#
#   -n RECORDS     records generated (distinct ids), default 2000000
#   -k BATCH       records per request, default 10000
#   -c CONNS       keep-alive connections, default 4
#   -d SECONDS     measured time, default 10 (after 1 s of warm-up)
#   --sync MODE    always (default), interval or never
#   --memtable S   storage.memtable_size, default 1GiB: until segments take
#                  frozen memtables off the heap, memory must hold the run
#   --short        a quick run for CI: 100k records, 2 s
#
# Environment: BUILD_DIR (default build), KEEP=1 keeps the data directory,
# PERF=1 records a CPU profile of the server during the measured time
# (perf record -g; the report is printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

records=2000000 batch=10000 conns=4 duration=10 sync=always memtable=1GiB
while [[ $# -gt 0 ]]; do
    case "$1" in
    -n) records=$2; shift 2 ;;
    -k) batch=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    -d) duration=$2; shift 2 ;;
    --sync) sync=$2; shift 2 ;;
    --memtable) memtable=$2; shift 2 ;;
    --short) records=100000; duration=2; shift ;;
    *) echo "usage: see the top of $0" >&2; exit 2 ;;
    esac
done

build=${BUILD_DIR:-build}
[[ -x "$build/strata" && -x "$build/bench/strata-loadgen" ]] || scripts/build.sh "$build" >/dev/null
work=$(mktemp -d /tmp/strata-bench-ingest.XXXXXX)
server_pid=
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [[ "${KEEP:-0}" == 1 ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

echo "generating $records records in batches of $batch ..."
python3 bench/gen_ndjson.py -n "$records" -k "$batch" -o "$work/batches" --list "$work/list" >/dev/null
ndjson_bytes=$(cat "$work"/batches/* | wc -c)

token=bench-admin-token-0123456789abcdef
STRATA_SERVER_INGEST_LISTEN=127.0.0.1:0 STRATA_SERVER_QUERY_LISTEN=127.0.0.1:0 \
STRATA_STORAGE_SYNC=$sync STRATA_STORAGE_MEMTABLE_SIZE=$memtable STRATA_ADMIN_TOKEN=$token \
STRATA_LOG_LEVEL=warn \
    "$build/strata" serve --data-dir "$work/data" --ready-file "$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
[[ -s "$work/ready" ]] || { cat "$work/server.log"; exit 1; }
ingest=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['ingest'])" "$work/ready")
query=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['query'])" "$work/ready")

auth="Authorization: Bearer $token"
curl -sf -X POST -H "$auth" -d '{"name":"bench"}' "http://$query/v1/tenants" >/dev/null
curl -sf -X POST -H "$auth" -H 'Content-Type: application/json' "http://$query/v1/tenants/bench/tables" -d '{
  "name": "flights",
  "fields": [
    {"name": "id", "type": "int64"},
    {"name": "ts", "type": "timestamp"},
    {"name": "origin", "type": "string"},
    {"name": "destination", "type": "string"},
    {"name": "delay", "type": "int64", "nullable": true},
    {"name": "distance", "type": "int64", "nullable": true}
  ],
  "primary_key": ["id"], "time_field": "ts"}' >/dev/null

echo "ingest: $conns connections, batches of $batch, sync=$sync, ${duration}s"
perf_pid=
if [[ "${PERF:-0}" == 1 ]]; then
    (sleep 1; perf record -q -g -o "$work/perf.data" -p "$server_pid" -- sleep "$duration") \
        >/dev/null 2>&1 &
    perf_pid=$!
fi
"$build/bench/strata-loadgen" --body-list "$work/list" --records-per-request lines \
    -H "$auth" -H 'Content-Type: application/x-ndjson' -c "$conns" \
    --warmup 1 -d "$duration" \
    "http://$ingest/v1/tenants/bench/tables/flights/records"

if [[ -n "$perf_pid" ]]; then
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --no-children --sort dso,symbol --percent-limit 1.5 \
        --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -30
fi
wal_bytes=$(du -sb "$work/data/wal" | cut -f1)
python3 - "$ndjson_bytes" "$wal_bytes" <<'PY'
import sys
nd, wal = int(sys.argv[1]), int(sys.argv[2])
print(f"NDJSON generated: {nd/1e6:.1f} MB; WAL on disk: {wal/1e6:.1f} MB (pre-allocated files included)")
PY
rss=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
echo "server RSS: $((rss / 1024)) MiB"

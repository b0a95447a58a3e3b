#!/usr/bin/env bash
# The storage benchmark: bytes on disk per NDJSON byte, and ingest with and
# without background work (flush, compaction), on three data sets:
#
#   flights  generated flights-like records, ~104 bytes (bench/gen_ndjson.py)
#   logs     generated log events, ~225 bytes (bench/gen_ndjson.py --kind logs)
#   vega     the real US flights of 2001 from the npm package vega-datasets
#            (bench/vega_flights.py: flights-3m.parquet, or flights-20k.json
#            without node; skipped, with a message, when npm cannot fetch it)
#
# Every run is on a fresh server on 127.0.0.1 with fsync on (storage.sync:
# always) and mvcc.history_retention 0, in one of two modes:
#
#   bg    flush and compaction running: memtable 64MiB, default jobs
#   nobg  flush and compaction cannot run: memtable 16GiB (holds everything
#         sent), jobs.flush_interval 1h, compaction and checkpoint intervals 1d
#
# and of one of two kinds, strata-loadgen sending the set's batches:
#
#   once    every batch exactly once (distinct keys). In mode bg, then
#           POST /v1/admin/checkpoint, /v1/admin/compact, /v1/admin/checkpoint
#           and the bytes of data_dir/segments, data_dir/wal and the whole
#           data_dir (du --apparent-size and allocated blocks), and their
#           ratios to the NDJSON bytes: the storage measurement.
#   steady  the batches round-robin for -d seconds after 1 s of warm-up, so
#           that flushes and compactions happen while it is measured (batches
#           sent again are upserts of the same keys).
#
# Each repetition runs once-bg, once-nobg, steady-bg, steady-nobg. Each run
# reports records/s (acknowledged), request latency (p50, p99), the
# server's CPU per record, the storage state at the end of the ingest
# (segments, rows in them, memtables, WAL bytes, compactions done; from
# /v1/admin/status and /metrics), and the machine's load: the 1-minute
# load average before the run and the CPU used by other processes during it
# (all cores' busy time less the server's and the load generator's), in % of
# one core.
#
#   bench/run_storage.sh [--short] [--sets flights,logs,vega] [--repeat R] [-d SECONDS]
#                        [--flights N] [--logs N] [--vega N] [-k BATCH] [-c CONNS]
#
#   --short        smoke run (under 30 s): 100k flights, 50k logs, 100k vega
#                  records, one repetition, steady runs of 1 s
#   -d SECONDS     measured time of the steady runs (default 15: compaction
#                  looks for work every 10 s, jobs.compaction_interval)
#   --sets LIST    data sets to run, comma-separated (default all three)
#   --repeat R     repetitions of the four runs per set (default 3)
#   --flights N    generated flights records (default 3000000)
#   --logs N       generated log events (default 1000000)
#   --vega N       at most N real flights (default 0: all 3,000,000)
#   -k BATCH       records per request (default 10000)
#   -c CONNS       keep-alive connections (default 4)
#
# Environment: BUILD_DIR (default build), KEEP=1 keeps the work directory,
# SEGMENTS_OUT=DIR copies each set's compacted segment to DIR/SET.seg (for
# bench/segment_columns.py),
# OUT (default bench/out) receives storage-<time>.jsonl, one JSON object per
# run; the vega-datasets package is cached in bench/out/vega.
set -euo pipefail
cd "$(dirname "$0")/.."

sets=flights,logs,vega repeat=3 n_flights=3000000 n_logs=1000000 n_vega=0 batch=10000 conns=4
duration=15 warmup=1 settle=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --short) n_flights=100000 n_logs=50000 n_vega=100000 repeat=1 duration=1 warmup=0 settle=0.2
        shift ;;
    -d) duration=$2; shift 2 ;;
    --sets) sets=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --flights) n_flights=$2; shift 2 ;;
    --logs) n_logs=$2; shift 2 ;;
    --vega) n_vega=$2; shift 2 ;;
    -k) batch=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    *) echo "usage: see the top of $0" >&2; exit 2 ;;
    esac
done

build=${BUILD_DIR:-build}
[[ -x "$build/strata" && -x "$build/bench/strata-loadgen" ]] || scripts/build.sh "$build" >/dev/null
out=${OUT:-bench/out}
mkdir -p "$out"
results="$out/storage-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
work=$(mktemp -d /tmp/strata-bench-storage.XXXXXX)
token=bench-admin-token-0123456789abcdef
auth="Authorization: Bearer $token"
server_pid=
cleanup() {
    stop_server
    if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}

# start_server MODE: a fresh server on a new data directory.
start_server() {
    local mode=$1
    local -a env=(STRATA_SERVER_INGEST_LISTEN=127.0.0.1:0 STRATA_SERVER_QUERY_LISTEN=127.0.0.1:0
        STRATA_STORAGE_SYNC=always STRATA_MVCC_HISTORY_RETENTION=0 "STRATA_ADMIN_TOKEN=$token"
        STRATA_LOG_LEVEL=warn)
    if [[ $mode == bg ]]; then
        env+=(STRATA_STORAGE_MEMTABLE_SIZE=64MiB)
    else
        env+=(STRATA_STORAGE_MEMTABLE_SIZE=16GiB STRATA_JOBS_FLUSH_INTERVAL=1h
            STRATA_JOBS_COMPACTION_INTERVAL=1d STRATA_JOBS_CHECKPOINT_INTERVAL=1d)
    fi
    rm -rf "$work/data" "$work/ready"
    env "${env[@]}" "$build/strata" serve --data-dir "$work/data" --ready-file "$work/ready" \
        2>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 100); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
    [[ -s "$work/ready" ]] || { cat "$work/server.log"; exit 1; }
    ingest=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['ingest'])" "$work/ready")
    query=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['query'])" "$work/ready")
}

create_table() {
    local set=$1 body
    if [[ $set == logs ]]; then
        body='{"name": "logs", "fields": [
          {"name": "tenant", "type": "string"},
          {"name": "ts", "type": "timestamp"},
          {"name": "host", "type": "string"},
          {"name": "service", "type": "string"},
          {"name": "level", "type": "string"},
          {"name": "latency_ms", "type": "float64", "nullable": true},
          {"name": "bytes", "type": "int64", "nullable": true},
          {"name": "message", "type": "string"}],
          "primary_key": ["host", "ts"], "time_field": "ts"}'
    else
        body='{"name": "flights", "fields": [
          {"name": "id", "type": "int64"},
          {"name": "ts", "type": "timestamp"},
          {"name": "origin", "type": "string"},
          {"name": "destination", "type": "string"},
          {"name": "delay", "type": "int64", "nullable": true},
          {"name": "distance", "type": "int64", "nullable": true}],
          "primary_key": ["id"], "time_field": "ts"}'
    fi
    curl -sf -X POST -H "$auth" -d '{"name":"bench"}' "http://$query/v1/tenants" >/dev/null
    curl -sf -X POST -H "$auth" -H 'Content-Type: application/json' \
        "http://$query/v1/tenants/bench/tables" -d "$body" >/dev/null
}

cpu_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
du_bytes() { du -s "$@" --block-size=1 | cut -f1; }

# run_one SET MODE KIND REP: one fresh server, one ingest, one JSON line in $results.
#   KIND once    every batch exactly once; with MODE bg, then checkpoint,
#                compact, checkpoint and the bytes on disk
#   KIND steady  the batches round-robin for $duration s after $warmup s
#                (past the end of the data they are sent again: upserts)
run_one() {
    local set=$1 mode=$2 kind=$3 rep=$4 table=flights
    [[ $set == logs ]] && table=logs
    local dir="$work/sets/$set" r="$work/run"
    local -a limit
    if [[ $kind == once ]]; then
        limit=(-n "$(wc -l <"$dir/list")")
    else
        limit=(-d "$duration" --warmup "$warmup")
    fi
    rm -rf "$r"
    mkdir -p "$r"
    start_server "$mode"
    create_table "$set"
    sync
    sleep "$settle"
    cut -d' ' -f1 /proc/loadavg >"$r/load1"
    cpu_busy >"$r/busy0"
    proc_cpu "$server_pid" >"$r/srv0"
    date +%s%N >"$r/t0"
    # The load generator's CPU time, by GNU time when installed (else it
    # counts with the other processes).
    local -a timer=()
    echo 0 0 >"$r/lg.time"
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f '%U %S' -o "$r/lg.time")
    "${timer[@]}" "$build/bench/strata-loadgen" --body-list "$dir/list" --records-per-request lines \
        -H "$auth" -H 'Content-Type: application/x-ndjson' -c "$conns" "${limit[@]}" --json \
        "http://$ingest/v1/tenants/bench/tables/$table/records" >"$r/lg.json"
    date +%s%N >"$r/t1"
    cpu_busy >"$r/busy1"
    proc_cpu "$server_pid" >"$r/srv1"
    curl -sf -H "$auth" "http://$query/v1/admin/status" >"$r/status-after-ingest.json"
    curl -sf "http://$query/metrics" | grep -E '^strata_(flushes|compactions)_total|^strata_(flush_bytes|compaction_bytes_written)_total' >"$r/metrics" || true
    echo '{}' >"$r/checkpoint.json"
    echo '{}' >"$r/compact.json"
    echo '{}' >"$r/checkpoint2.json"
    if [[ $mode == bg && $kind == once ]]; then
        curl -sf -X POST -H "$auth" "http://$query/v1/admin/checkpoint" >"$r/checkpoint.json"
        curl -sf -X POST -H "$auth" "http://$query/v1/admin/compact" >"$r/compact.json"
        curl -sf -X POST -H "$auth" "http://$query/v1/admin/checkpoint" >"$r/checkpoint2.json"
        if [[ -n "${SEGMENTS_OUT:-}" && $rep == 1 ]]; then
            mkdir -p "$SEGMENTS_OUT"
            cat "$work"/data/segments/*.seg >"$SEGMENTS_OUT/$set.seg"
        fi
    fi
    curl -sf -H "$auth" "http://$query/v1/admin/status" >"$r/status.json"
    {
        echo "segments_apparent $(du_bytes --apparent-size "$work/data/segments")"
        echo "segments_allocated $(du_bytes "$work/data/segments")"
        echo "wal_apparent $(du_bytes --apparent-size "$work/data/wal")"
        echo "wal_allocated $(du_bytes "$work/data/wal")"
        echo "data_dir_apparent $(du_bytes --apparent-size "$work/data")"
        echo "data_dir_allocated $(du_bytes "$work/data")"
    } >"$r/sizes"
    stop_server
    python3 - "$r" "$set" "$mode" "$kind" "$rep" "$dir" "$(getconf CLK_TCK)" "$results" <<'PY'
import json, os, sys
r, set_, mode, kind, rep, d, tck, results = sys.argv[1:]
tck = int(tck)
rd = lambda name, base=r: open(os.path.join(base, name)).read().strip()
js = lambda name: json.loads(rd(name))
lgj = js("lg.json")
lg = lgj["workloads"][0]
lg_cpu = sum(float(x) for x in rd("lg.time").split())
wall = (int(rd("t1")) - int(rd("t0"))) / 1e9
busy = (int(rd("busy1")) - int(rd("busy0"))) / tck
srv = (int(rd("srv1")) - int(rd("srv0"))) / tck
sent = lg.get("records", 0)
metrics = {}
for line in rd("metrics").splitlines():
    name, value = line.rsplit(" ", 1)
    metrics[name] = float(value)
out = {
    "set": set_, "mode": mode, "kind": kind, "rep": int(rep), "source": rd("source", d),
    "ndjson_bytes": int(rd("ndjson_bytes", d)), "records": int(rd("records", d)),
    "records_acked": sent, "requests": lg["requests"], "ok": lg["ok"], "errors": lg["errors"],
    "status": lg["status"], "duration_s": lgj["duration_s"], "warmup_s": lgj["warmup_s"],
    "records_per_s": lg.get("records_per_s", 0), "mb_per_s": lg["sent_mb_per_s"],
    "latency_ms": lg["latency_ms"], "load1_before": float(rd("load1")),
    # CPU over the load generator's whole life (it reads the bodies before it
    # measures); others = every core's busy time less the server's and its own.
    "wall_s": wall, "server_cpu_s": srv, "loadgen_cpu_s": lg_cpu,
    "other_cpu_pct": 100.0 * max(busy - srv - lg_cpu, 0.0) / wall,
    "server_cpu_us_per_record": 1e6 * srv / max(sent, 1),
    "metrics": metrics, "after_ingest": js("status-after-ingest.json")["storage"],
    "storage": js("status.json")["storage"], "checkpoint": js("checkpoint.json"),
    "compact": js("compact.json"), "checkpoint2": js("checkpoint2.json"),
}
for line in rd("sizes").splitlines():
    k, v = line.split()
    out[k] = int(v)
with open(results, "a") as f:
    f.write(json.dumps(out) + "\n")
lat = out["latency_ms"]
msg = ("  %-7s %-4s %-6s #%d %8.0f rec/s  p50 %6.1f  p99 %6.1f ms  server %.2f us/rec  "
       "load1 %.2f  others %3.0f%%  ok %d/%d"
       % (set_, mode, kind, out["rep"], out["records_per_s"], lat["p50"], lat["p99"],
          out["server_cpu_us_per_record"], out["load1_before"], out["other_cpu_pct"],
          out["ok"], out["requests"]))
ai = out["after_ingest"]
# The flush and compaction counters move only when a job's loop ends (under
# sustained load a flush keeps going), so the status is the better witness.
msg += ("\n      at the end of the ingest: %d segments, %d rows in segments, %d memtables "
        "(%.0f MB), WAL %.0f MB, compactions %d"
        % (ai["segments"], ai["rows_stored"], ai["memtables"], ai["memtable_bytes"] / 1e6,
           ai["wal_bytes"] / 1e6, metrics.get("strata_compactions_total", 0)))
if mode == "bg" and kind == "once":
    nd = out["ndjson_bytes"]
    msg += ("\n      segments %.2f MB (%.4f of NDJSON), data dir %.2f MB (%.4f), rows %d"
            % (out["segments_apparent"] / 1e6, out["segments_apparent"] / nd,
               out["data_dir_apparent"] / 1e6, out["data_dir_apparent"] / nd,
               out["storage"]["rows_stored"]))
print(msg, flush=True)
PY
}

# prepare SET: NDJSON batches in $work/sets/SET (list, ndjson_bytes, records, source).
prepare() {
    local set=$1 dir="$work/sets/$1"
    mkdir -p "$dir"
    case $set in
    flights)
        python3 bench/gen_ndjson.py -n "$n_flights" -k "$batch" -o "$dir/batches" \
            --list "$dir/list" 2>/dev/null
        echo "gen_ndjson.py --kind flights -n $n_flights" >"$dir/source" ;;
    logs)
        python3 bench/gen_ndjson.py --kind logs -n "$n_logs" -k "$batch" -o "$dir/batches" \
            --list "$dir/list" 2>/dev/null
        echo "gen_ndjson.py --kind logs -n $n_logs" >"$dir/source" ;;
    vega)
        local res
        if ! res=$(python3 bench/vega_flights.py -o "$dir/batches" -k "$batch" -n "$n_vega" \
            --list "$dir/list" --cache "$out/vega" 2>"$dir/err"); then
            cat "$dir/err" >&2
            echo "vega: the real flights data could not be had (npm unavailable?); skipped," \
                "the generated flights set stands in for it" >&2
            return 1
        fi
        python3 -c "import json,sys;print('vega-datasets ' + json.loads(sys.argv[1])['source'])" \
            "$res" >"$dir/source" ;;
    *) echo "unknown set $set" >&2; exit 2 ;;
    esac
    cat "$dir"/batches/* | wc -c >"$dir/ndjson_bytes"
    cat "$dir"/batches/* | wc -l >"$dir/records"
}

echo "strata storage benchmark: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), build $build" \
    "($(python3 -c "import json,sys;print([o['value'] for o in json.load(open(sys.argv[1])) if o['name'] == 'buildtype'][0])" \
        "$build/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?'))"
echo "sync always, history_retention 0, $conns connections, batches of $batch records; results: $results"
IFS=, read -ra set_list <<<"$sets"
for set in "${set_list[@]}"; do
    echo "$set: preparing data ..."
    prepare "$set" || continue
    echo "$set: $(cat "$work/sets/$set/records") records, $(cat "$work/sets/$set/ndjson_bytes") NDJSON bytes ($(cat "$work/sets/$set/source"))"
    for rep in $(seq "$repeat"); do
        run_one "$set" bg once "$rep"
        run_one "$set" nobg once "$rep"
        run_one "$set" bg steady "$rep"
        run_one "$set" nobg steady "$rep"
    done
    rm -rf "$work/sets/$set"
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
sets = list(dict.fromkeys(r["set"] for r in rows))
print()
print("bytes on disk after checkpoint + compact + checkpoint (bg once runs; MB = 10^6 bytes)")
print("%-8s %9s %11s %9s %8s %10s %9s %8s %8s %11s" % (
    "set", "records", "NDJSON MB", "segs MB", "segs/ND", "segs alloc", "dir MB", "dir/ND", "WAL MB",
    "dir-WAL/ND"))
for s in sets:
    bg = [r for r in rows if r["set"] == s and r["mode"] == "bg" and r["kind"] == "once"]
    if not bg:
        continue
    r = bg[0]
    nd = r["ndjson_bytes"]
    segs = sorted(x["segments_apparent"] for x in bg)
    print("%-8s %9d %11.1f %9.2f %8.4f %10.2f %9.2f %8.4f %8.1f %11.4f%s" % (
        s, r["records"], nd / 1e6, r["segments_apparent"] / 1e6, r["segments_apparent"] / nd,
        r["segments_allocated"] / 1e6, r["data_dir_apparent"] / 1e6,
        r["data_dir_apparent"] / nd, r["wal_apparent"] / 1e6,
        (r["data_dir_apparent"] - r["wal_apparent"]) / nd,
        "" if segs[0] == segs[-1] else "  (segments %d..%d bytes over the runs)" % (segs[0], segs[-1])))
    for x in bg:
        if x["storage"]["rows_stored"] != x["records"]:
            print("  WARNING: run %d stored %d rows of %d records" % (
                x["rep"], x["storage"]["rows_stored"], x["records"]))
print()
print("ingest: median [min..max] over the runs; others = CPU of other processes, % of one core")
print("%-8s %-6s %-5s %4s %26s %22s %19s %13s" % (
    "set", "kind", "mode", "runs", "records/s", "p99 ms", "server us/rec", "others% (max)"))
for s in sets:
    for k in ("once", "steady"):
        for m in ("bg", "nobg"):
            rs = [r for r in rows if r["set"] == s and r["mode"] == m and r["kind"] == k]
            if not rs:
                continue
            med = lambda v: (statistics.median(v), min(v), max(v))
            rps = med([r["records_per_s"] for r in rs])
            p99 = med([r["latency_ms"]["p99"] for r in rs])
            cpu = med([r["server_cpu_us_per_record"] for r in rs])
            oth = [r["other_cpu_pct"] for r in rs]
            bad = sum(r["requests"] - r["ok"] for r in rs)
            codes = {}
            for r in rs:
                for c, v in r["status"].items():
                    if not c.startswith("2"):
                        codes[c] = codes.get(c, 0) + v
            print("%-8s %-6s %-5s %4d %9.0f [%7.0f..%7.0f] %6.1f [%5.1f..%5.1f] %5.2f [%.2f..%.2f] %6.0f (%3.0f)%s"
                  % ((s, k, m, len(rs)) + rps + p99 + cpu + (statistics.median(oth), max(oth))
                     + ("" if not bad else "  %d of %d requests not ok %s"
                        % (bad, sum(r["requests"] for r in rs), codes),)))
PY

#!/bin/sh
# HTTP baseline for a running server: strata-loadgen (and wrk, when it is
# installed) against the same two endpoints, printed side by side.
#
#   1. GET /health on 50 connections (small requests: per-request cost)
#   2. POST of a ~1 MiB NDJSON body on 4 connections (bytes per second)
#
# It builds strata-loadgen if needed but starts no server: start strata
# (or any HTTP server) first and pass its base URL, e.g.
#
#   bench/run_http.sh http://127.0.0.1:8080
#   bench/run_http.sh -d 20 -H 'Authorization: Bearer TOKEN' \
#       --post-path /v1/tenants/bench/tables/flights/records http://127.0.0.1:8080
#
# Environment: BUILD_DIR (default: <repo>/build), LOADGEN (a prebuilt
# strata-loadgen, skips the build), WRK (default: wrk from PATH; WRK=none
# skips it).
set -eu

usage() {
    cat <<EOF
usage: $0 [options] BASE_URL
  -d SECONDS          measured time per run (default 10)
  -w SECONDS          warmup per run (default 1)
  -t THREADS          threads for both tools (default 1)
  -c N                connections for GET /health (default 50)
  --post-conns N      connections for the POST (default 4)
  --get-path PATH     default /health
  --post-path PATH    default /v1/tenants/bench/tables/flights/records
  -H 'Name: value'    extra header for every request (repeatable)
EOF
    exit 2
}

duration=10
warmup=1
threads=1
get_conns=50
post_conns=4
get_path=/health
post_path=/v1/tenants/bench/tables/flights/records
base=
nhdr=0

while [ $# -gt 0 ]; do
    case "$1" in
    -d) duration=$2; shift 2 ;;
    -w) warmup=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -c) get_conns=$2; shift 2 ;;
    --post-conns) post_conns=$2; shift 2 ;;
    --get-path) get_path=$2; shift 2 ;;
    --post-path) post_path=$2; shift 2 ;;
    -H) nhdr=$((nhdr + 1)); eval "hdr_$nhdr=\$2"; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [ -z "$base" ] || usage; base=${1%/}; shift ;;
    esac
done
[ -n "$base" ] || usage

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
build=${BUILD_DIR:-$repo/build}
if [ -z "${LOADGEN:-}" ]; then
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$repo" >/dev/null
    fi
    ninja -C "$build" bench/strata-loadgen >/dev/null
    LOADGEN=$build/bench/strata-loadgen
fi
wrk=${WRK:-wrk}
if [ "$wrk" = none ] || ! command -v "$wrk" >/dev/null 2>&1; then
    wrk=
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/run_http.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# A ~1 MiB body of whole NDJSON records.
python3 "$here/gen_ndjson.py" -n 11000 -b 1048576 -o "$tmp/body" 2>/dev/null
body=$tmp/body/batch-000000.ndjson
body_bytes=$(wc -c <"$body")

# run_lg NAME CONNS PATH [extra args...]
run_lg() {
    name=$1 conns=$2 path=$3
    shift 3
    i=1
    while [ $i -le $nhdr ]; do
        eval "set -- \"\$@\" -H \"\$hdr_$i\""
        i=$((i + 1))
    done
    echo "strata-loadgen: $name ..." >&2
    "$LOADGEN" --json -t "$threads" -c "$conns" -d "$duration" --warmup "$warmup" \
        "$@" "$base$path" >"$tmp/$name.lg.json" || true
}

# run_wrk NAME CONNS PATH [extra args...]
run_wrk() {
    name=$1 conns=$2 path=$3
    shift 3
    [ -n "$wrk" ] || return 0
    i=1
    while [ $i -le $nhdr ]; do
        eval "set -- \"\$@\" -H \"\$hdr_$i\""
        i=$((i + 1))
    done
    wconns=$conns
    [ "$wconns" -ge "$threads" ] || wconns=$threads
    echo "wrk: $name ..." >&2
    if [ "$warmup" != 0 ]; then
        "$wrk" -t "$threads" -c "$wconns" -d "${warmup}s" "$@" "$base$path" >/dev/null 2>&1 || true
    fi
    "$wrk" -t "$threads" -c "$wconns" -d "${duration}s" --timeout 10s --latency \
        "$@" "$base$path" >"$tmp/$name.wrk.txt" 2>&1 || true
}

cat >"$tmp/post.lua" <<'EOF'
-- wrk: POST the body file named by $RUN_HTTP_BODY.
wrk.method = "POST"
local f = assert(io.open(os.getenv("RUN_HTTP_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-ndjson"
EOF
export RUN_HTTP_BODY="$body"

run_lg get "$get_conns" "$get_path"
run_wrk get "$get_conns" "$get_path"
run_lg post "$post_conns" "$post_path" --body-file "$body" --records-per-request lines \
    -H 'Content-Type: application/x-ndjson'
run_wrk post "$post_conns" "$post_path" -s "$tmp/post.lua"

python3 - "$tmp" "$body_bytes" "$get_conns" "$post_conns" "$get_path" "$post_path" <<'EOF'
import json, os, re, sys

tmp, body_bytes = sys.argv[1], int(sys.argv[2])
get_conns, post_conns, get_path, post_path = sys.argv[3:7]
scenarios = [
    ("get", "GET %s c=%s" % (get_path, get_conns), 0),
    ("post", "POST %.2f MiB c=%s" % (body_bytes / 1048576, post_conns), body_bytes),
]

def lg_row(path):
    try:
        with open(path) as f:
            d = json.load(f)
        w = d["workloads"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    lat = w["latency_ms"]
    return [w["requests_per_s"], w["sent_mb_per_s"], lat["p50"], lat["p90"], lat["p99"],
            lat["max"], w["errors"]]

def to_ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

def wrk_row(path, body):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return None
    rps = float(m.group(1))
    pct = {p: to_ms(v, u) for p, v, u in
           re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    mx = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)", text)
    errors = 0
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if s:
        errors += sum(int(x) for x in s.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        errors += int(n.group(1))
    return [rps, rps * body / 1e6, pct.get("50"), pct.get("90"), pct.get("99"),
            to_ms(*mx.groups()) if mx else None, errors]

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

head = "%-28s %-15s %11s %11s %9s %9s %9s %9s %8s" % (
    "scenario", "tool", "req/s", "MB/s sent", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors")
print(head)
print("-" * len(head))
for key, label, body in scenarios:
    for tool, row in (("strata-loadgen", lg_row(os.path.join(tmp, key + ".lg.json"))),
                      ("wrk", wrk_row(os.path.join(tmp, key + ".wrk.txt"), body))):
        if row is None:
            if tool == "wrk" and not os.path.exists(os.path.join(tmp, key + ".wrk.txt")):
                continue
            print("%-28s %-15s %s" % (label, tool, "no result"))
            continue
        print("%-28s %-15s %11s %11s %9s %9s %9s %9s %8s" % (
            label, tool, fmt(row[0], ".0f"), fmt(row[1], ".1f"), fmt(row[2], ".3f"),
            fmt(row[3], ".3f"), fmt(row[4], ".3f"), fmt(row[5], ".3f"), fmt(row[6], "d")))
print("MB = 10^6 body bytes; wrk's MB/s is its req/s x body size; errors are failed requests "
      "plus unexpected statuses.")
EOF

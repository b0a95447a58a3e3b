#!/usr/bin/env bash
# The query benchmark: latency of five query shapes on a table of a few
# million flights-like records (bench/gen_ndjson.py: id 0..N-1, ts = id
# minutes after 2001-01-01), alone and while ingest runs at a steady rate.
#
# Shapes (query listener; keys and times drawn at random, seed 1, from
# lists of 2000 bodies / 20000 ids sent round-robin):
#
#   point   GET .../tables/flights/records/{id}, a random existing id
#   range   1,000 consecutive records by time: ts >= T and ts < T + 1000 min
#   day     count and avg(delay) by origin over one random day (1,440 rows)
#   origin  one origin over 4 random days: ~190 of 5,760 rows (the peers'
#           "one origin on one day (~180 rows)": our days have 1,440 rows)
#   full    count and avg(delay) by origin over the whole table
#
# Variants, each on fresh servers (fsync always, memtable 64MiB default,
# every other setting default) with the table of run_ingest.sh and N
# records loaded by strata-loadgen -n (2 connections, batches of 10,000):
#
#   compacted  then POST /v1/admin/compact: one segment, as a long-running
#              server has
#   flushed    no compaction: whatever flush (and background work) left,
#              i.e. a few segments and the last ~180k rows in the memtable
#
# Runs (p50 / p99 / max per shape; open-loop latency runs from the time a
# request was due, so a server that falls behind shows it):
#
#   alone    each shape by itself, closed loop, 1 connection (service time)
#   one+ing  each shape by itself at its --rates rate (open loop, 4
#            connections) while ingest runs: new records (ids from N up) in
#            batches of 10,000 at --ingest-rate (open loop, 4 connections)
#   mix      all five shapes at once at their --rates
#   mix+ing  the mix while ingest runs
#
# The alone runs and the mix share one server per variant (no writes);
# every run with ingest gets a fresh server, so that each starts from the
# same table and sends the same new ids. Answers are checked against the
# generated data on the first server and after every run with ingest (a
# sample of every shape; after ingest the full-table aggregate over id < N,
# and that the new ids came in whole batches): a mismatch prints a WRONG
# ANSWER line and counts in the summary.
#
#   bench/run_query.sh [-n RECORDS] [-d SECONDS] [--alone SECONDS]
#                      [--ingest-rate RECORDS_PER_S] [--rates P,R,D,O,F]
#                      [--variants compacted,flushed]
#                      [--runs alone,one+ing,mix,mix+ing] [--repeat R] [--short]
#   bench/run_query.sh --summary bench/out/query-*.jsonl
#
#   -n RECORDS        table size (default 3000000)
#   -d SECONDS        measured time of the mix runs (default 10, after 1 s
#                     of warm-up)
#   --alone SECONDS   measured time of each one-shape run (default 5, after
#                     1 s of warm-up with ingest)
#   --ingest-rate R   records/s offered by the concurrent ingest (default 300000)
#   --rates LIST      requests/s of point,range,day,origin,full (default
#                     100,10.3,9.7,11.3,0.9: slightly apart, so that the
#                     fixed schedules of the shapes do not line up)
#   --variants LIST   default compacted,flushed
#   --runs LIST       default alone,one+ing,mix,mix+ing
#   --repeat R        run everything R times (default 1); the summary gives
#                     the median and range of each figure
#   --summary FILE... only print the summary of earlier result files
#   --short           a smoke run (about 30 s): 200k records, runs alone
#                     (1 s), mix and mix+ing (2 s, 0.5 s warm-up), ingest at
#                     100k records/s
#
# Environment: BUILD_DIR (default build), KEEP=1 keeps the work directory,
# OUT (default bench/out) receives query-<time>.jsonl (one JSON object per
# run), PERF=SHAPE records a CPU profile of the server (perf record -g
# --call-graph dwarf; the build needs debug info) during that shape's alone
# run of the first variant and prints its top, VERBOSE=1 prints every
# strata-loadgen command line (they are always in the work directory's
# commands file).
set -euo pipefail
cd "$(dirname "$0")/.."

records=3000000 duration=10 warmup=1 alone=5 ingest_rate=300000 rates=100,10.3,9.7,11.3,0.9
variants=compacted,flushed runs=alone,one+ing,mix,mix+ing repeat=1 batch=10000 nbodies=2000
summary_only=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    -n) records=$2; shift 2 ;;
    -d) duration=$2; shift 2 ;;
    --alone) alone=$2; shift 2 ;;
    --ingest-rate) ingest_rate=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --summary) shift; summary_only=("$@"); break ;;
    --short) records=200000 duration=2 warmup=0.5 alone=1 ingest_rate=100000 nbodies=200
        runs=alone,mix,mix+ing; shift ;;
    *) echo "usage: see the top of $0" >&2; exit 2 ;;
    esac
done
shapes=(point range day origin full)
IFS=, read -ra rate_list <<<"$rates"
[[ ${#rate_list[@]} == 5 ]] || { echo "--rates wants 5 numbers" >&2; exit 2; }

# summary FILE...: the figures of every run in the result files, as
# median [min..max] over the repetitions.
summary() {
    python3 - "$@" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f)]
runs = ("alone", "one+ing", "mix", "mix+ing")
order = {"point": 0, "range": 1, "day": 2, "origin": 3, "full": 4, "ingest": 5}
groups = {}
for r in rows:
    if r["run"] not in runs:
        continue
    names = [w["name"] for w in r["loadgen"]["workloads"]]
    for w in r["loadgen"]["workloads"]:
        pos = order[w["name"]]
        if r["run"] == "one+ing" and w["name"] == "ingest":
            # the ingest that ran with one shape: listed under it
            pos = min(order[x] for x in names) + 0.5
        groups.setdefault((r["variant"], runs.index(r["run"]), pos), []).append((r, w))
tables = sorted(set(r["records"] for r in rows if "records" in r))
print()
print("query latency in ms, median [min..max] over %d repetition(s); tables of %s records"
      % (max(map(len, groups.values())) if groups else 0, ", ".join(map(str, tables))))
print("%-9s %-7s %-7s %7s %23s %25s %25s %6s  %s" % (
    "variant", "run", "shape", "req/s", "p50", "p99", "max", "errors", "load1; others' CPU %"))
rng = lambda v: "%8.3f [%6.2f..%6.2f]" % (statistics.median(v), min(v), max(v)) if len(v) > 1 \
    else "%8.3f %14s" % (v[0], "")
rng_wide = lambda v: "%9.2f [%6.1f..%6.1f]" % (statistics.median(v), min(v), max(v)) if len(v) > 1 \
    else "%9.2f %15s" % (v[0], "")
for key in sorted(groups, key=lambda k: (k[0] != "compacted", k[0], k[1], k[2])):
    g = groups[key]
    variant, run, shape = key[0], runs[key[1]], g[0][1]["name"]
    label = shape if key[2] == int(key[2]) else "+" + shape
    lat = lambda p: [w["latency_ms"][p] for _, w in g]
    errors = sum(w["errors"] for _, w in g)
    load = "%.1f; %.0f" % (statistics.median(r["load1"] for r, _ in g),
                           statistics.median(r["other_cpu_pct"] for r, _ in g))
    line = "%-9s %-7s %-7s %7.1f %s %s %s %6d  %s" % (
        variant, run, label, statistics.median(w["requests_per_s"] for _, w in g),
        rng(lat("p50")), rng_wide(lat("p99")), rng_wide(lat("max")), errors, load)
    if shape == "ingest":
        v = [w.get("records_per_s", 0) / 1e3 for _, w in g]
        line += "  achieved %.0fk records/s [%.0fk..%.0fk]" % (statistics.median(v), min(v), max(v))
    print(line)
loads = [r["loadgen"]["workloads"][0].get("records_per_s", 0) / 1e6 for r in rows if r["run"] == "load"]
if loads:
    print("load phases (strata-loadgen -n, 2 connections): %.2f M records/s median [%.2f..%.2f], %d loads"
          % (statistics.median(loads), min(loads), max(loads), len(loads)))
wrong = sum(r.get("wrong", 0) for r in rows)
checks = sum(r.get("checks", 0) for r in rows)
print("answers checked: %d, wrong: %d%s" % (checks, wrong, "" if not wrong else
                                              "  (see the WRONG ANSWER lines)"))
PY
}

if [[ ${#summary_only[@]} -gt 0 ]]; then
    summary "${summary_only[@]}"
    exit 0
fi

build=${BUILD_DIR:-build}
[[ -x "$build/strata" && -x "$build/bench/strata-loadgen" ]] || scripts/build.sh "$build" >/dev/null
loadgen=$build/bench/strata-loadgen
out=${OUT:-bench/out}
mkdir -p "$out"
results="$out/query-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
work=$(mktemp -d /tmp/strata-bench-query.XXXXXX)
token=bench-admin-token-0123456789abcdef
auth="Authorization: Bearer $token"
server_pid=
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    [[ "${KEEP:-0}" == 1 ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

start_server() {
    rm -rf "$work/data" "$work/ready"
    STRATA_SERVER_INGEST_LISTEN=127.0.0.1:0 STRATA_SERVER_QUERY_LISTEN=127.0.0.1:0 \
    STRATA_STORAGE_SYNC=always STRATA_ADMIN_TOKEN=$token STRATA_LOG_LEVEL=warn \
        "$build/strata" serve --data-dir "$work/data" --ready-file "$work/ready" \
        2>>"$work/server.log" &
    server_pid=$!
    for _ in $(seq 100); do [[ -s "$work/ready" ]] && break; sleep 0.1; done
    [[ -s "$work/ready" ]] || { cat "$work/server.log"; exit 1; }
    ingest=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['ingest'])" "$work/ready")
    query=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['query'])" "$work/ready")
}

create_table() {
    curl -sf -X POST -H "$auth" -d '{"name":"bench"}' "http://$query/v1/tenants" >/dev/null
    curl -sf -X POST -H "$auth" -H 'Content-Type: application/json' \
        "http://$query/v1/tenants/bench/tables" -d '{"name": "flights", "fields": [
          {"name": "id", "type": "int64"},
          {"name": "ts", "type": "timestamp"},
          {"name": "origin", "type": "string"},
          {"name": "destination", "type": "string"},
          {"name": "delay", "type": "int64", "nullable": true},
          {"name": "distance", "type": "int64", "nullable": true}],
          "primary_key": ["id"], "time_field": "ts"}' >/dev/null
}

cpu_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The loadgen arguments of one query shape: WORKLOAD_ARGS=(...).
shape_args() {
    local shape=$1
    local -a ct=(-H 'Content-Type: application/json')
    case $shape in
    point) workload_args=(--path-list "$work/q/point.paths" "http://$query/") ;;
    full) workload_args=(--body-file "$work/q/full.json" "${ct[@]}" "http://$query/v1/tenants/bench/query") ;;
    *) workload_args=(--bodies-dir "$work/q/$shape" "${ct[@]}" "http://$query/v1/tenants/bench/query") ;;
    esac
    workload_args=(--name "$shape" -H "$auth" --expect-status 200 "${workload_args[@]}")
}

# run_lg VARIANT RUN ARGS...: one strata-loadgen run (--json), measured
# with the server's CPU, the load generator's and everybody else's, into
# one line of $results; prints a line per workload.
run_lg() {
    local variant=$1 run=$2 r="$work/run"
    shift 2
    rm -rf "$r"
    mkdir -p "$r"
    curl -sf -H "$auth" "http://$query/v1/admin/status" >"$r/status0.json"
    echo "$variant $run: strata-loadgen $(printf '%q ' "$@")" >>"$work/commands"
    [[ "${VERBOSE:-0}" == 1 ]] && echo "  + strata-loadgen $(printf '%q ' "$@")"
    cut -d' ' -f1 /proc/loadavg >"$r/load1"
    cpu_busy >"$r/busy0"
    proc_cpu "$server_pid" >"$r/srv0"
    date +%s%N >"$r/t0"
    /usr/bin/time -f '%U %S' -o "$r/lg.time" "$loadgen" --json "$@" >"$r/lg.json"
    date +%s%N >"$r/t1"
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "SERVER DIED during $variant $run; its log:" >&2
        tail -n 30 "$work/server.log" >&2
        exit 1
    fi
    cpu_busy >"$r/busy1"
    proc_cpu "$server_pid" >"$r/srv1"
    curl -sf -H "$auth" "http://$query/v1/admin/status" >"$r/status1.json"
    python3 - "$r" "$variant" "$run" "$(getconf CLK_TCK)" "$results" "$records" <<'PY'
import json, os, sys
r, variant, run, tck, results, records = sys.argv[1:]
tck = int(tck)
rd = lambda name: open(os.path.join(r, name)).read().strip()
lg = json.loads(rd("lg.json"))
wall = (int(rd("t1")) - int(rd("t0"))) / 1e9
busy = (int(rd("busy1")) - int(rd("busy0"))) / tck
srv = (int(rd("srv1")) - int(rd("srv0"))) / tck
lg_cpu = sum(float(x) for x in rd("lg.time").split())
st0 = json.loads(rd("status0.json"))["storage"]
st1 = json.loads(rd("status1.json"))["storage"]
out = {"variant": variant, "run": run, "records": int(records), "load1": float(rd("load1")),
       "wall_s": wall, "server_cpu_pct": 100 * srv / wall, "loadgen_cpu_pct": 100 * lg_cpu / wall,
       "other_cpu_pct": 100 * max(busy - srv - lg_cpu, 0.0) / wall,
       "storage_before": st0, "storage_after": st1, "loadgen": lg}
with open(results, "a") as f:
    f.write(json.dumps(out) + "\n")
print("  %-9s %-6s load1 %.2f; CPU %% of one core: server %.0f, loadgen %.0f, others %.0f;"
      " segments %d -> %d" % (variant, run, out["load1"], out["server_cpu_pct"],
                              out["loadgen_cpu_pct"], out["other_cpu_pct"], st0["segments"],
                              st1["segments"]))
for w in lg["workloads"]:
    lat = w["latency_ms"]
    extra = ""
    if "records_per_s" in w:
        extra = "  %.0f records/s" % w["records_per_s"]
    if w["rate"] > 0:
        extra += "  (rate %g/s, backlog %d)" % (w["rate"], w["backlog"])
    bad = w["requests"] - w["ok"]
    print("    %-7s %7d req %8.1f/s  p50 %8.3f  p99 %8.3f  max %8.3f ms%s%s"
          % (w["name"], w["requests"], w["requests_per_s"], lat["p50"], lat["p99"], lat["max"],
             extra, "" if not bad and not w["errors"] else
             "  ERRORS %d (status %s)" % (w["errors"], w["status"])))
PY
}

# verify VARIANT WHEN: checks a sample of every shape against the data.
verify() {
    python3 - "$work/q/checks.json" "$query" "$token" "$1" "$2" "$records" "$batch" "$results" \
        "$work/ingest.list" <<'PY'
import http.client, json, sys
checks_file, addr, token, variant, when, n, batch, results, ingest_list = sys.argv[1:]
n, batch = int(n), int(batch)
checks = json.load(open(checks_file))
host, port = addr.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=60)
hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
bad = []

def get(path):
    conn.request("GET", path, headers=hdr)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")

def post(body):
    conn.request("POST", "/v1/tenants/bench/query", body=json.dumps(body), headers=hdr)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")

def same_groups(rows, want):
    got = {r["origin"]: (r["n"], r["avg_delay"]) for r in rows}
    if set(got) != set(want):
        return False
    return all(got[k][0] == want[k][0] and abs(got[k][1] - want[k][1]) <= 1e-9 * max(1, abs(want[k][1]))
               for k in want)

count = 0
for c in checks:
    shape = c["shape"]
    if shape == "full" and when == "after":
        # New records came in: check the old ones only.
        body = dict(c["body"])
        body["where"] = {"field": "id", "op": "<", "value": n}
    else:
        body = c.get("body")
    count += 1
    if shape == "point":
        status, ans = get(c["path"])
        ok = status == 200 and ans["record"] == c["want"]
    else:
        status, ans = post(body)
        if status != 200:
            ok = False
        elif shape in ("day", "full"):
            ok = same_groups(ans["rows"], {k: tuple(v) for k, v in c["want"].items()})
        else:
            ok = ans["rows"] == c["want"] and ans["next_cursor"] is None
    if not ok:
        bad.append({"shape": shape, "request": c.get("path") or body, "status": status,
                    "got": ans, "want": c["want"]})
if when == "after":
    # The concurrent ingest wrote ids from n up, in whole batches.
    count += 1
    status, ans = post({"table": "flights", "where": {"field": "id", "op": ">=", "value": n},
                        "aggregates": [{"fn": "count", "as": "n"}, {"fn": "min", "field": "id"},
                                       {"fn": "max", "field": "id"}]})
    if status != 200:
        bad.append({"shape": "ingested", "status": status, "got": ans})
    else:
        row = ans["rows"][0]
        c_, lo, hi = row["n"], row["min_id"], row["max_id"]
        if c_ % batch or (c_ and (lo != n or hi - n + 1 < c_)):
            bad.append({"shape": "ingested", "got": row,
                        "want": "count a multiple of %d, min %d, max >= min + count - 1" % (batch, n)})
        # Point reads of some new records, against the batch files sent.
        files = open(ingest_list).read().split()
        for k in range(8):
            i = n + (c_ - 1) * k // 7 if c_ else None
            if i is None:
                break
            want = json.loads(open(files[(i - n) // batch]).read().split("\n")[(i - n) % batch])
            want["ts"] = want["ts"][:-1] + ".000Z"
            count += 1
            status, ans = get("/v1/tenants/bench/tables/flights/records/%d" % i)
            if status != 200 or ans["record"] != want:
                bad.append({"shape": "ingested point", "id": i, "status": status, "got": ans,
                            "want": want})
for b in bad:
    print("  WRONG ANSWER (%s, %s): %s" % (variant, when, json.dumps(b)[:2000]))
print("  %-9s verify %-6s %d checks, %d wrong" % (variant, when, count, len(bad)))
with open(results, "a") as f:
    f.write(json.dumps({"variant": variant, "run": "verify-" + when, "checks": count,
                        "wrong": len(bad), "details": bad[:20]}) + "\n")
PY
}

# ------------------------------------------------------------------ data

ingest_records=$(python3 -c "import math,sys;r,d,a,w,b=map(float,sys.argv[1:]);print(int(math.ceil(r*(max(d,a)+w+1)/b)*b))" \
    "$ingest_rate" "$duration" "$alone" "$warmup" "$batch")
echo "strata query benchmark: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
    "build $build ($(python3 -c "import json,sys;print([o['value'] for o in json.load(open(sys.argv[1])) if o['name'] == 'buildtype'][0])" \
        "$build/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?'))"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); results: $results"
echo "generating $records records (and $ingest_records for the concurrent ingest) ..."
python3 bench/gen_ndjson.py -n "$records" -k "$batch" -o "$work/load" --list "$work/load.list" \
    --start-id 0 2>/dev/null
python3 bench/gen_ndjson.py -n "$ingest_records" -k "$batch" -o "$work/ingest" \
    --list "$work/ingest.list" --start-id "$records" --seed 2 2>/dev/null

# Query bodies (nbodies random ones per shape, sent round-robin) and the
# expected answers of a sample, from the generated records.
python3 - "$work/load" "$work/q" "$records" "$nbodies" <<'PY'
import array, datetime, json, os, random, re, sys
load, qdir, n, nbodies = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
EPOCH = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
ts = lambda m: (EPOCH + datetime.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")
ts_ms = lambda m: (EPOCH + datetime.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

names = {}
origin = bytearray(n)
dest = bytearray(n)
delay = array.array("i", bytes(4 * n))
dist = array.array("i", bytes(4 * n))
rec = re.compile(rb'\{"id":(\d+),"ts":"[^"]*","origin":"(\w+)","destination":"(\w+)",'
                 rb'"delay":(-?\d+),"distance":(\d+)\}')
code = lambda s: names.setdefault(s.decode(), len(names))
seen = 0
for f in sorted(os.listdir(load)):
    for m in rec.finditer(open(os.path.join(load, f), "rb").read()):
        i = int(m.group(1))
        origin[i] = code(m.group(2))
        dest[i] = code(m.group(3))
        delay[i] = int(m.group(4))
        dist[i] = int(m.group(5))
        seen += 1
assert seen == n, (seen, n)
name = {v: k for k, v in names.items()}
record = lambda i: {"id": i, "ts": ts_ms(i), "origin": name[origin[i]],
                    "destination": name[dest[i]], "delay": delay[i], "distance": dist[i]}

def groups(ids):
    acc = {}
    for i in ids:
        c = acc.setdefault(name[origin[i]], [0, 0])
        c[0] += 1
        c[1] += delay[i]
    return {k: [v[0], v[1] / v[0]] for k, v in acc.items()}

def window(lo, hi):
    return {"and": [{"field": "ts", "op": ">=", "value": ts(lo)},
                    {"field": "ts", "op": "<", "value": ts(hi)}]}

aggs = [{"fn": "count", "as": "n"}, {"fn": "avg", "field": "delay", "as": "avg_delay"}]
rng = random.Random(1)
os.makedirs(qdir, exist_ok=True)
checks = []
ids = [rng.randrange(n) for _ in range(max(nbodies * 10, 1000))]
with open(os.path.join(qdir, "point.paths"), "w") as f:
    for i in ids:
        f.write("/v1/tenants/bench/tables/flights/records/%d\n" % i)
for i in ids[:20]:
    checks.append({"shape": "point", "path": "/v1/tenants/bench/tables/flights/records/%d" % i,
                   "want": record(i)})
airports = sorted(names)
for shape in ("range", "day", "origin"):
    os.makedirs(os.path.join(qdir, shape))
    for k in range(nbodies):
        if shape == "range":
            t = rng.randrange(n - 1000 + 1)
            body = {"table": "flights", "where": window(t, t + 1000), "limit": 5000}
            want = [record(i) for i in range(t, t + 1000)] if k < 10 else None
        elif shape == "day":
            d = rng.randrange(n // 1440)
            body = {"table": "flights", "where": window(d * 1440, (d + 1) * 1440),
                    "group_by": ["origin"], "aggregates": aggs}
            want = groups(range(d * 1440, (d + 1) * 1440)) if k < 10 else None
        else:
            d = rng.randrange(n // 1440 - 3)
            o = rng.choice(airports)
            w = window(d * 1440, (d + 4) * 1440)
            w["and"].insert(0, {"field": "origin", "op": "=", "value": o})
            body = {"table": "flights", "where": w, "limit": 5000}
            want = ([record(i) for i in range(d * 1440, (d + 4) * 1440) if name[origin[i]] == o]
                    if k < 10 else None)
        with open(os.path.join(qdir, shape, "%06d.json" % k), "w") as f:
            json.dump(body, f)
        if want is not None:
            checks.append({"shape": shape, "body": body, "want": want})
full = {"table": "flights", "group_by": ["origin"], "aggregates": aggs}
with open(os.path.join(qdir, "full.json"), "w") as f:
    json.dump(full, f)
checks.append({"shape": "full", "body": full, "want": groups(range(n))})
with open(os.path.join(qdir, "checks.json"), "w") as f:
    json.dump(checks, f)
PY

# ------------------------------------------------------------------ runs

# fresh_server VARIANT: a new server with the table loaded (and compacted).
fresh_server() {
    local variant=$1 nload
    stop_server
    start_server
    create_table
    nload=$(wc -l <"$work/load.list")
    run_lg "$variant" load --name load --body-list "$work/load.list" --records-per-request lines \
        -H "$auth" -H 'Content-Type: application/x-ndjson' -c 2 -n "$nload" --expect-status 200 \
        "http://$ingest/v1/tenants/bench/tables/flights/records"
    if [[ $variant == compacted ]]; then
        echo "  compact: $(curl -sf -X POST -H "$auth" "http://$query/v1/admin/compact")"
    fi
    echo "  storage: $(storage_line)"
}

storage_line() {
    curl -sf -H "$auth" "http://$query/v1/admin/status" | python3 -c "
import json, sys
s = json.load(sys.stdin)['storage']
print('%d segments (%.1f MB), %d rows in segments, %.1f MB of memtables'
      % (s['segments'], s['segment_bytes'] / 1e6, s['rows_stored'], s['memtable_bytes'] / 1e6))"
}

# The five shapes at their rates, as "--and ARGS" each: mix=(...).
mix_args() {
    mix=()
    for i in "${!shapes[@]}"; do
        shape_args "${shapes[$i]}"
        mix+=(--and -c 4 --rate "${rate_list[$i]}" "${workload_args[@]}")
    done
}

has_run() { [[ ",$runs," == *",$1,"* ]]; }

ingest_req_rate=$(python3 -c "import sys;print(float(sys.argv[1]) / float(sys.argv[2]))" \
    "$ingest_rate" "$batch")
ingest_args=(--name ingest -c 4 --rate "$ingest_req_rate" --body-list "$work/ingest.list"
    --records-per-request lines -H "$auth" -H 'Content-Type: application/x-ndjson'
    --expect-status 200)
perf_shape=${PERF:-}
IFS=, read -ra variant_list <<<"$variants"
for rep in $(seq "$repeat"); do
for variant in "${variant_list[@]}"; do
    [[ $variant == compacted || $variant == flushed ]] || { echo "unknown variant $variant" >&2; exit 2; }
    [[ $repeat == 1 ]] || echo "repetition $rep of $repeat"
    echo "$variant: a fresh server, $records records loaded"
    fresh_server "$variant"
    verify "$variant" before

    if has_run alone; then
        for shape in "${shapes[@]}"; do
            shape_args "$shape"
            perf_pid=
            if [[ -n "$perf_shape" && "$perf_shape" == "$shape" ]]; then
                (sleep 0.5; exec perf record -q -F 499 -g --call-graph dwarf -o "$work/perf.data" \
                    -p "$server_pid" -- sleep "$(python3 -c "print(max(float('$alone') - 1, 1))")") \
                    >/dev/null 2>&1 &
                perf_pid=$!
            fi
            run_lg "$variant" alone -c 1 -d "$alone" "${workload_args[@]}"
            if [[ -n "$perf_pid" ]]; then
                wait "$perf_pid" || true
                echo "  perf: the server during '$shape' alone, self time (perf report --no-children):"
                perf report -i "$work/perf.data" --no-children --sort dso,symbol -g none \
                    --percent-limit 1 --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *- *- *$//' | head -25
                echo "  perf: inclusive time (perf report --children):"
                perf report -i "$work/perf.data" --children --sort symbol -g none \
                    --percent-limit 3 --stdio 2>/dev/null | grep -E '^ +[0-9]' | sed 's/ *- *- *$//' | head -40
                perf_shape=
            fi
        done
    fi
    if has_run mix; then
        mix_args
        run_lg "$variant" mix --warmup "$warmup" -d "$duration" "${mix[@]:1}"
    fi
    if has_run one+ing; then
        for i in "${!shapes[@]}"; do
            fresh_server "$variant"
            shape_args "${shapes[$i]}"
            run_lg "$variant" one+ing --warmup "$warmup" -d "$alone" "${ingest_args[@]}" \
                "http://$ingest/v1/tenants/bench/tables/flights/records" \
                --and -c 4 --rate "${rate_list[$i]}" "${workload_args[@]}"
            verify "$variant" after
        done
    fi
    if has_run mix+ing; then
        fresh_server "$variant"
        mix_args
        run_lg "$variant" mix+ing --warmup "$warmup" -d "$duration" "${ingest_args[@]}" \
            "http://$ingest/v1/tenants/bench/tables/flights/records" "${mix[@]}"
        verify "$variant" after
    fi
    stop_server
done
done

summary "$results"
if grep -qiE 'level=(warn|error)' "$work/server.log"; then
    echo "server log: $(grep -ciE 'level=(warn|error)' "$work/server.log") warnings/errors, e.g.:"
    grep -iE 'level=(warn|error)' "$work/server.log" | head -5
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env python3
"""Real flights data for strata's benchmarks: the npm package vega-datasets.

vega-datasets ships US flight records of 2001 (the data is not kept in this
repository; it is fetched when the script runs):

  data/flights-3m.parquet   3,000,000 records: date, delay, distance, origin,
                            destination (polars, ZSTD)
  data/flights-20k.json     20,000 records (another sample, not the first
                            20,000 above) as a JSON array, with "date":
                            "2001/01/01 00:47" (flights-10k, -5k, -2k are
                            smaller; flights-200k.json has only delay,
                            distance and a fractional hour, no airports)

This script converts them into NDJSON batches shaped like bench/gen_ndjson.py
writes (and like the peers' measurement in shared/notes/peers.md):

  {"id":1,"ts":"2001-01-01T00:01:00Z","origin":"LAS","destination":"PHL","delay":33,"distance":2176}

with id = 1 + the record's position in the file. Missing values become null.

Source (--source):
  parquet  flights-3m.parquet, read by node with the npm packages hyparquet
           and hyparquet-compressors (installed into the cache directory)
  json     the largest flights-*.json that has the airports (flights-20k)
  auto     parquet when node and those packages can be had, else json
           (the default)

Everything fetched lives in --cache (default bench/out/vega, git-ignored):
the package tarball from `npm pack`, the extracted files and node_modules.
A second run reuses them. Needs npm (and node for parquet); exit status 3
when npm cannot fetch the package, so callers can fall back to generated
data.

  bench/vega_flights.py -o OUTDIR [-k RECORDS_PER_FILE] [-n MAX_RECORDS]
                        [--list FILE] [--source auto|parquet|json] [--cache DIR]
"""

import argparse
import datetime
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile

VEGA = "vega-datasets@3.2.1"
NODE_PKGS = ["hyparquet@1.31.5", "hyparquet-compressors@1.1.2"]

# Reads a parquet file row group by row group and writes NDJSON batches.
# argv: parquet outdir records_per_batch max_records(0 = all)
NODE_CONVERTER = r"""
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

const [src, outdir, perBatchArg, maxArg] = process.argv.slice(2)
const perBatch = Number(perBatchArg)
const file = await asyncBufferFromFile(src)
const md = await parquetMetadataAsync(file)
let total = Number(md.num_rows)
if (Number(maxArg) > 0 && Number(maxArg) < total) total = Number(maxArg)

const num = v => (v === null || v === undefined) ? 'null' : String(v)
const str = v => (v === null || v === undefined) ? 'null' : JSON.stringify(String(v))
const ts = d => {
  if (d === null || d === undefined) return 'null'
  const s = d.toISOString()
  return '"' + (s.endsWith('.000Z') ? s.slice(0, -5) + 'Z' : s) + '"'
}

let lines = [], nbatch = 0, bytes = 0, id = 0, start = 0
const flush = () => {
  if (!lines.length) return
  const body = lines.join('')
  writeFileSync(join(outdir, 'batch-' + String(nbatch++).padStart(6, '0') + '.ndjson'), body)
  bytes += Buffer.byteLength(body)
  lines = []
}
for (const rg of md.row_groups) {
  if (start >= total) break
  const end = Math.min(start + Number(rg.num_rows), total)
  const rows = await parquetReadObjects({ file, compressors, rowStart: start, rowEnd: end })
  for (const r of rows) {
    id++
    lines.push('{"id":' + id + ',"ts":' + ts(r.date) + ',"origin":' + str(r.origin) +
      ',"destination":' + str(r.destination) + ',"delay":' + num(r.delay) +
      ',"distance":' + num(r.distance) + '}\n')
    if (lines.length === perBatch) flush()
  }
  start = end
}
flush()
console.log(JSON.stringify({ records: id, bytes, files: nbatch }))
"""


def run(cmd, cwd=None):
    """Runs cmd quietly; returns True on success (output shown on failure)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False)
    except OSError as e:
        print("vega_flights: %s: %s" % (cmd[0], e), file=sys.stderr)
        return False
    if p.returncode != 0:
        print("vega_flights: '%s' failed:\n%s" % (" ".join(cmd), p.stdout[-2000:]),
              file=sys.stderr)
        return False
    return True


def fetch_package(cache):
    """npm pack vega-datasets into cache and extract its flights files; returns the data dir."""
    data = os.path.join(cache, "package", "data")
    if glob.glob(os.path.join(data, "flights-*")):
        return data
    if not shutil.which("npm"):
        print("vega_flights: npm is not installed", file=sys.stderr)
        return None
    os.makedirs(cache, exist_ok=True)
    tgz = glob.glob(os.path.join(cache, "vega-datasets-*.tgz"))
    if not tgz:
        if not run(["npm", "pack", "--silent", VEGA, "--pack-destination", cache]):
            return None
        tgz = glob.glob(os.path.join(cache, "vega-datasets-*.tgz"))
        if not tgz:
            return None
    with tarfile.open(tgz[0]) as tf:
        members = [m for m in tf.getmembers()
                   if m.isfile() and m.name.startswith("package/data/flights-")]
        for m in members:
            tf.extract(m, cache)
    return data


def convert_parquet(cache, data, args):
    src = os.path.join(data, "flights-3m.parquet")
    if not os.path.exists(src) or not shutil.which("node"):
        return None
    if not os.path.isdir(os.path.join(cache, "node_modules", "hyparquet-compressors")):
        if not run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", cache]
                   + NODE_PKGS):
            return None
    script = os.path.join(cache, "parquet2ndjson.mjs")
    with open(script, "w") as f:
        f.write(NODE_CONVERTER)
    p = subprocess.run(["node", script, src, args.outdir, str(args.batch_records),
                        str(args.max_records)], stdout=subprocess.PIPE, text=True, check=False)
    if p.returncode != 0:
        print("vega_flights: the parquet conversion failed", file=sys.stderr)
        return None
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["source"] = "flights-3m.parquet"
    return res


def json_value(v):
    return "null" if v is None else json.dumps(v)


def convert_json(data, args):
    best = None
    for path in glob.glob(os.path.join(data, "flights-*.json")):
        with open(path) as f:
            head = f.read(4096)
        if '"origin"' in head and '"date"' in head:
            if best is None or os.path.getsize(path) > os.path.getsize(best):
                best = path
    if best is None:
        return None
    with open(best) as f:
        rows = json.load(f)
    if args.max_records:
        rows = rows[:args.max_records]
    nbatch = nbytes = 0
    lines = []

    def flush():
        nonlocal nbatch, nbytes, lines
        if lines:
            body = "".join(lines).encode("ascii")
            with open(os.path.join(args.outdir, "batch-%06d.ndjson" % nbatch), "wb") as out:
                out.write(body)
            nbatch += 1
            nbytes += len(body)
            lines = []

    for i, r in enumerate(rows, 1):
        ts = None
        if r.get("date"):
            ts = datetime.datetime.strptime(r["date"], "%Y/%m/%d %H:%M").strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        lines.append('{"id":%d,"ts":%s,"origin":%s,"destination":%s,"delay":%s,"distance":%s}\n'
                     % (i, json_value(ts), json_value(r.get("origin")),
                        json_value(r.get("destination")), json_value(r.get("delay")),
                        json_value(r.get("distance"))))
        if len(lines) == args.batch_records:
            flush()
    flush()
    return {"records": len(rows), "bytes": nbytes, "files": nbatch,
            "source": os.path.basename(best)}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="Real flights (vega-datasets) as NDJSON batches.")
    p.add_argument("-o", "--outdir", required=True, help="output directory (created if missing)")
    p.add_argument("-k", "--batch-records", type=int, default=10000,
                   help="records per batch file (default 10000)")
    p.add_argument("-n", "--max-records", type=int, default=0,
                   help="convert at most this many records (default: all)")
    p.add_argument("--list", metavar="FILE", help="also write the batch paths to FILE")
    p.add_argument("--source", choices=("auto", "parquet", "json"), default="auto")
    p.add_argument("--cache", default=os.path.join(here, "out", "vega"),
                   help="where the package is fetched (default bench/out/vega)")
    args = p.parse_args()
    if args.batch_records < 1 or args.max_records < 0:
        p.error("bad record counts")

    data = fetch_package(os.path.abspath(args.cache))
    if data is None:
        print("vega_flights: could not fetch %s with npm" % VEGA, file=sys.stderr)
        return 3
    os.makedirs(args.outdir, exist_ok=True)
    for old in glob.glob(os.path.join(args.outdir, "batch-*.ndjson")):
        os.unlink(old)
    res = None
    if args.source in ("auto", "parquet"):
        res = convert_parquet(os.path.abspath(args.cache), data, args)
        if res is None and args.source == "parquet":
            return 1
    if res is None:
        res = convert_json(data, args)
    if res is None:
        print("vega_flights: no usable flights file in %s" % data, file=sys.stderr)
        return 1
    names = sorted(n for n in os.listdir(args.outdir) if n.startswith("batch-"))
    if args.list:
        with open(args.list, "w") as f:
            f.write("".join(os.path.join(os.path.abspath(args.outdir), n) + "\n" for n in names))
    print("%s: %d records, %d bytes (%.1f bytes/record) in %d files to %s"
          % (res["source"], res["records"], res["bytes"], res["bytes"] / max(res["records"], 1),
             res["files"], args.outdir), file=sys.stderr)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Generate flights-like NDJSON records in batch files for strata's benchmarks.

Each record is about 104 bytes, e.g.

  {"id":1,"ts":"2001-01-01T00:01:00Z","origin":"LAS","destination":"PHL","delay":33,"distance":2176}

Record i has id i (from --start-id) and a timestamp i minutes after
2001-01-01T00:00:00Z, so ids are unique and time moves forward across
batches; the other fields come from a random generator seeded with --seed,
so the same arguments always produce the same bytes.

Records are written to OUTDIR/batch-NNNNNN.ndjson, K records per file
(--batch-records, default 10000) or as many whole records as fit in B bytes
(--batch-bytes). OUTDIR then holds nothing else, so it can be given to
strata-loadgen --bodies-dir; --list FILE also writes the file names, one a
line, for --body-list.

Example:
  bench/gen_ndjson.py -n 1000000 -k 10000 -o /tmp/flights
  strata-loadgen --bodies-dir /tmp/flights --records-per-request lines \\
      -H 'Content-Type: application/x-ndjson' -c 4 \\
      http://127.0.0.1:8080/v1/tenants/bench/tables/flights/records
"""

import argparse
import datetime
import os
import random
import sys

AIRPORTS = [
    "ATL", "BOS", "BWI", "CLT", "DCA", "DEN", "DFW", "DTW", "EWR", "FLL",
    "HNL", "IAD", "IAH", "JFK", "LAS", "LAX", "LGA", "MCO", "MDW", "MIA",
    "MSP", "ORD", "PDX", "PHL", "PHX", "SAN", "SEA", "SFO", "SLC", "TPA",
]

EPOCH = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)


def records(n, start_id, seed):
    """Yields n records as bytes, each ending in a newline."""
    rng = random.Random(seed)
    for i in range(start_id, start_id + n):
        origin = rng.choice(AIRPORTS)
        dest = rng.choice(AIRPORTS)
        while dest == origin:
            dest = rng.choice(AIRPORTS)
        # Mostly small delays, some early departures, a long tail.
        delay = int(rng.expovariate(1 / 25.0)) - 10
        distance = rng.randint(100, 4000)
        ts = (EPOCH + datetime.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        yield (
            '{"id":%d,"ts":"%s","origin":"%s","destination":"%s","delay":%d,"distance":%d}\n'
            % (i, ts, origin, dest, delay, distance)
        ).encode("ascii")


def write_batches(args):
    os.makedirs(args.outdir, exist_ok=True)
    names = []
    batch = []
    batch_bytes = 0
    total_bytes = 0

    def flush():
        nonlocal batch, batch_bytes, total_bytes
        if not batch:
            return
        name = "batch-%06d.ndjson" % len(names)
        with open(os.path.join(args.outdir, name), "wb") as f:
            f.write(b"".join(batch))
        names.append(name)
        total_bytes += batch_bytes
        batch = []
        batch_bytes = 0

    for rec in records(args.records, args.start_id, args.seed):
        if args.batch_bytes and batch and batch_bytes + len(rec) > args.batch_bytes:
            flush()
        batch.append(rec)
        batch_bytes += len(rec)
        if args.batch_records and len(batch) == args.batch_records:
            flush()
    flush()
    if args.list:
        with open(args.list, "w") as f:
            f.write("".join(os.path.join(os.path.abspath(args.outdir), n) + "\n"
                            for n in names))
    return names, total_bytes


def main():
    p = argparse.ArgumentParser(
        description="Generate flights-like NDJSON batches (deterministic).")
    p.add_argument("-n", "--records", type=int, required=True,
                   help="number of records")
    p.add_argument("-k", "--batch-records", type=int, default=0,
                   help="records per batch file")
    p.add_argument("-b", "--batch-bytes", type=int, default=0,
                   help="at most this many bytes per batch file (whole records)")
    p.add_argument("-o", "--outdir", required=True,
                   help="output directory (created if missing)")
    p.add_argument("--list", metavar="FILE",
                   help="also write the batch paths to FILE, for --body-list")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--start-id", type=int, default=1, help="first id (default 1)")
    args = p.parse_args()
    if args.records < 1:
        p.error("--records must be at least 1")
    if args.batch_records < 0 or args.batch_bytes < 0:
        p.error("batch sizes must not be negative")
    if not args.batch_records and not args.batch_bytes:
        args.batch_records = 10000

    names, total = write_batches(args)
    print("wrote %d records, %d bytes (%.1f bytes/record) in %d files to %s"
          % (args.records, total, total / args.records, len(names), args.outdir),
          file=sys.stderr)


if __name__ == "__main__":
    main()

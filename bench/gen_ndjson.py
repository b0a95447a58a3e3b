#!/usr/bin/env python3
"""Generate flights-like or log-like NDJSON records in batch files for strata's benchmarks.

--kind flights (the default): records of about 104 bytes, e.g.

  {"id":1,"ts":"2001-01-01T00:01:00Z","origin":"LAS","destination":"PHL","delay":33,"distance":2176}

Record i has id i (from --start-id) and a timestamp i minutes after
2001-01-01T00:00:00Z, so ids are unique and time moves forward across
batches; the other fields come from a random generator seeded with --seed,
so the same arguments always produce the same bytes.

--kind logs: application log events of about 225 bytes, e.g.

  {"tenant":"stark","ts":"2026-11-24T00:00:00.017Z","host":"svc-173.ap-south-1",
   "service":"inventory","level":"info","latency_ms":40.936,"bytes":1700,
   "message":"POST /api/v1/reports/582331 200 in 40ms bytes=1700 tenant=stark
   request_id=81355c53f0e642f4"}

(one line each). Event i has timestamp 2026-11-24T00:00:00Z + 2*i + (0 or 1)
milliseconds, so timestamps strictly increase and (host, ts) is unique
across batches and --start-id ranges. 300 hosts (role-NNN.region, skewed:
busy hosts log more), each running one of 20 services; 8 tenants (skewed);
levels info/debug/warn/error at about 76/14/7/3 %; latency and bytes
log-normal; the message comes from 50 templates (chosen by level, skewed
within a level) with numbers, ids, paths and, in a fifth of them, a 64-bit hex
request, trace or session id inside. Deterministic for a seed, like flights.

Records are written to OUTDIR/batch-NNNNNN.ndjson, K records per file
(--batch-records, default 10000) or as many whole records as fit in B bytes
(--batch-bytes). OUTDIR then holds nothing else, so it can be given to
strata-loadgen --bodies-dir; --list FILE also writes the file names, one a
line, for --body-list.

Example:
  bench/gen_ndjson.py -n 1000000 -k 10000 -o /tmp/flights
  bench/gen_ndjson.py --kind logs -n 1000000 -o /tmp/logs
  strata-loadgen --bodies-dir /tmp/flights --records-per-request lines \\
      -H 'Content-Type: application/x-ndjson' -c 4 \\
      http://127.0.0.1:8080/v1/tenants/bench/tables/flights/records
"""

import argparse
import bisect
import datetime
import os
import random
import sys
import time

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


# ---------------------------------------------------------------------------
# --kind logs

LOGS_EPOCH_MS = 1795478400000  # 2026-11-24T00:00:00Z

SERVICES = [
    "checkout", "cart", "search", "auth", "payments", "catalog", "gateway",
    "profile", "billing", "notify", "reports", "inventory", "shipping",
    "recommend", "pricing", "session", "media", "analytics", "scheduler",
    "audit",
]
ROLES = ["api", "web", "worker", "svc", "batch"]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1"]
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
TENANT_WEIGHTS = [40, 20, 12, 9, 7, 5, 4, 3]
PATHS = [
    "/api/v2/orders", "/api/v2/cart", "/api/v2/search", "/api/v2/users",
    "/api/v2/items", "/api/v2/payments", "/api/v2/sessions", "/api/v2/inventory",
    "/api/v2/shipments", "/api/v1/reports",
]
TABLES = ["orders", "order_items", "users", "sessions", "payments", "inventory",
          "shipments", "products", "prices", "audit_log"]
TOPICS = ["events.orders", "events.payments", "events.clicks", "events.audit",
          "events.inventory", "events.notifications"]
JOBS = ["nightly-export", "reindex-products", "expire-sessions", "recompute-prices",
        "send-digests", "rollup-metrics", "gc-uploads"]
ENTITIES = ["user", "order", "item", "cart", "price", "session"]
FLAGS = ["new-checkout", "fast-search", "dark-mode", "bulk-export", "v3-pricing"]
CARRIERS = ["UPS", "FedEx", "DHL", "USPS"]
CURRENCIES = ["USD", "USD", "USD", "EUR", "GBP"]
ERRORS = ["connection reset by peer", "503 Service Unavailable", "context deadline exceeded",
          "EOF", "i/o timeout"]
DECLINES = ["card_declined", "insufficient_funds", "expired_card", "processing_error"]
EXCEPTIONS = [("NullPointerException", "order.customer is null"),
              ("KeyError", "'shipping_address'"),
              ("ValueError", "invalid literal for int() with base 10: ''"),
              ("TimeoutError", "read timed out"),
              ("IllegalStateException", "transaction already committed")]
HANDLERS = ["OrderController.create", "CartHandler.update", "SearchService.query",
            "PaymentWorker.process", "ProfileView.get"]


def _hex(rng):
    return "%016x" % rng.getrandbits(64)


def _method(rng):
    r = rng.random()
    return "GET" if r < 0.70 else "POST" if r < 0.90 else "PUT" if r < 0.96 else "DELETE"


def _other(rng, ev):
    svc = rng.choice(SERVICES)
    return svc if svc != ev["service"] else "gateway"


def _ip(rng):
    return "%d.%d.%d.%d" % (rng.randint(11, 223), rng.randint(0, 255),
                            rng.randint(0, 255), rng.randint(1, 254))


# Each template makes a message from (rng, event); event has service, lat
# (float ms), bytes, tenant. Ordered by how common they are within a level.
INFO_TEMPLATES = [
    lambda r, e: "%s %s/%d %d in %dms bytes=%d tenant=%s request_id=%s" % (
        _method(r), r.choice(PATHS), r.randint(1000, 999999),
        r.choice((200, 200, 200, 201, 204, 304)), int(e["lat"]), e["bytes"], e["tenant"], _hex(r)),
    lambda r, e: "%s %s %d %dB in %dms from %s ua=%s" % (
        _method(r), r.choice(PATHS), r.choice((200, 200, 201, 304)), e["bytes"], int(e["lat"]),
        _ip(r), r.choice(("Mozilla/5.0", "okhttp/4.12.0", "python-requests/2.31", "curl/8.4.0"))),
    lambda r, e: "user %d logged in from %s via %s" % (
        r.randint(1000, 999999), _ip(r), r.choice(("password", "sso", "password", "api_key"))),
    lambda r, e: "served %d requests in last 10s, p50=%dms p99=%dms errors=%d" % (
        r.randint(200, 5000), r.randint(2, 20), r.randint(40, 900), r.randint(0, 12)),
    lambda r, e: "order %d created for customer %d: %d items, total %d.%02d %s" % (
        r.randint(10000000, 99999999), r.randint(1000, 999999), r.randint(1, 12),
        r.randint(5, 900), r.randint(0, 99), r.choice(CURRENCIES)),
    lambda r, e: "flushed %d events to kafka topic %s partition %d offset %d" % (
        r.randint(1, 500), r.choice(TOPICS), r.randint(0, 11), r.randint(10000000, 99999999)),
    lambda r, e: "health check passed: db=ok cache=ok queue=ok upstream=ok (%dms)" % (
        r.randint(1, 40)),
    lambda r, e: "payment %s authorized order=%d amount=%d.%02d currency=%s" % (
        _hex(r)[:12], r.randint(10000000, 99999999), r.randint(5, 900), r.randint(0, 99),
        r.choice(CURRENCIES)),
    lambda r, e: "cache hit ratio %d.%d%% over last 60s (%d lookups)" % (
        r.randint(80, 99), r.randint(0, 9), r.randint(1000, 90000)),
    lambda r, e: "user %d logged out after %ds" % (r.randint(1000, 999999), r.randint(5, 7200)),
    lambda r, e: "scheduled job %s finished in %dms, %d items processed" % (
        r.choice(JOBS), r.randint(100, 90000), r.randint(0, 50000)),
    lambda r, e: "connection pool stats: active=%d idle=%d waiting=0" % (
        r.randint(1, 50), r.randint(0, 20)),
    lambda r, e: "order %d shipped via %s tracking=1Z%s" % (
        r.randint(10000000, 99999999), r.choice(CARRIERS), _hex(r)[:12].upper()),
    lambda r, e: "consumer group %s-cg committed offset %d on %s/%d" % (
        e["service"], r.randint(10000000, 99999999), r.choice(TOPICS), r.randint(0, 11)),
    lambda r, e: "session %s renewed for user %d, ttl=3600s" % (_hex(r), r.randint(1000, 999999)),
    lambda r, e: "feature flag %s evaluated to %s for tenant %s" % (
        r.choice(FLAGS), r.choice(("true", "false")), e["tenant"]),
    lambda r, e: "uploaded s3://%s-uploads/2026/11/24/%s.json.gz size=%d" % (
        e["tenant"], _hex(r)[:8], e["bytes"]),
    lambda r, e: "search query returned %d results in %dms index=products-v%d" % (
        r.randint(0, 500), int(e["lat"]), r.randint(3, 5)),
    lambda r, e: "email notification queued template=%s recipient_id=%d" % (
        r.choice(("order_confirmation", "password_reset", "weekly_digest", "shipping_update")),
        r.randint(1000, 999999)),
    lambda r, e: "config reloaded from /etc/%s/config.yaml version=%d" % (
        e["service"], r.randint(100, 140)),
    lambda r, e: "GC pause %dms heap %dMB/%dMB" % (
        r.randint(1, 80), r.randint(200, 2000), r.choice((2048, 4096))),
    lambda r, e: "rate limiter bucket tenant=%s tokens=%d/%d" % (
        e["tenant"], r.randint(0, 1000), 1000),
]
DEBUG_TEMPLATES = [
    lambda r, e: "cache lookup key=%s:%s:%d hit=%s ttl=%ds" % (
        e["service"], r.choice(ENTITIES), r.randint(1000, 999999),
        "true" if r.random() < 0.85 else "false", r.choice((60, 300, 900, 3600))),
    lambda r, e: "sql: SELECT * FROM %s WHERE id = $1 args=[%d] rows=1 took=%dms" % (
        r.choice(TABLES), r.randint(1000, 9999999), r.randint(0, 40)),
    lambda r, e: "span %s child of %s name=%s.%s" % (
        _hex(r), _hex(r), e["service"], r.choice(("handle", "fetch", "encode", "validate"))),
    lambda r, e: "grpc call %s.v1.%sService/Get status=OK duration=%dms" % (
        _other(r, e), r.choice(("Order", "User", "Price", "Stock")), r.randint(0, 60)),
    lambda r, e: "resolved %s.internal to 10.%d.%d.%d" % (
        _other(r, e), r.randint(0, 3), r.randint(0, 255), r.randint(1, 254)),
    lambda r, e: "acquired lock %s/%d after %dms" % (
        r.choice(ENTITIES), r.randint(1000, 999999), r.randint(0, 30)),
    lambda r, e: "http client %s: reused connection #%d" % (_other(r, e), r.randint(1, 64)),
    lambda r, e: "deserialized payload %d bytes in %dus" % (e["bytes"], r.randint(3, 900)),
    lambda r, e: "batch %d: %d rows buffered, flush at 500" % (
        r.randint(1, 99999), r.randint(1, 499)),
    lambda r, e: "token validated sub=user-%d scope=read:%s exp=%d" % (
        r.randint(1000, 999999), r.choice(ENTITIES), 1795478400 + r.randint(0, 86400)),
    lambda r, e: "enqueued task %s id=%s eta=+%ds" % (
        r.choice(JOBS), _hex(r), r.randint(0, 300)),
    lambda r, e: "feature flags refreshed: %d flags, etag %s" % (r.randint(20, 40), _hex(r)[:8]),
]
WARN_TEMPLATES = [
    lambda r, e: "%s %s/%d %d in %dms request_id=%s" % (
        _method(r), r.choice(PATHS), r.randint(1000, 999999), r.choice((400, 401, 404, 404, 409, 429)),
        int(e["lat"]), _hex(r)),
    lambda r, e: "slow query on %s: %dms (threshold 500ms) request_id=%s" % (
        r.choice(TABLES), r.randint(500, 9000), _hex(r)),
    lambda r, e: "retrying call to %s (attempt %d of 3) after %s" % (
        _other(r, e), r.randint(1, 3), r.choice(ERRORS)),
    lambda r, e: "connection pool %s-db near capacity: active=%d/50 waiting=%d" % (
        e["service"], r.randint(45, 50), r.randint(0, 30)),
    lambda r, e: "rate limit exceeded tenant=%s limit=%d/min path=%s" % (
        e["tenant"], r.choice((600, 1200, 6000)), r.choice(PATHS)),
    lambda r, e: "request body %d bytes exceeds soft limit 1048576, tenant=%s" % (
        r.randint(1048577, 9000000), e["tenant"]),
    lambda r, e: "deprecated API version v1 used by client %s/%d.%d.%d" % (
        r.choice(("ios-app", "android-app", "python-sdk", "curl")), r.randint(1, 4),
        r.randint(0, 20), r.randint(0, 9)),
    lambda r, e: "disk usage %d%% on /var/lib/%s" % (r.randint(80, 97), e["service"]),
    lambda r, e: "circuit breaker for %s half-open after %d failures" % (
        _other(r, e), r.randint(5, 50)),
]
ERROR_TEMPLATES = [
    lambda r, e: "%s %s/%d 500 in %dms request_id=%s: internal error" % (
        _method(r), r.choice(PATHS), r.randint(1000, 999999), int(e["lat"]), _hex(r)),
    lambda r, e: "upstream %s.internal:8443 timed out after %dms trace_id=%s" % (
        _other(r, e), r.choice((1000, 2000, 5000, 10000, 30000)), _hex(r)),
    lambda r, e: "failed to charge card for order %d: %s payment_id=%s" % (
        r.randint(10000000, 99999999), r.choice(DECLINES), _hex(r)[:12]),
    lambda r, e: "unhandled exception in %s: %s: %s trace_id=%s" % (
        (r.choice(HANDLERS),) + r.choice(EXCEPTIONS) + (_hex(r),)),
    lambda r, e: "kafka produce to %s failed: %s, %d messages dropped" % (
        r.choice(TOPICS), r.choice(("NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT",
                                    "MESSAGE_TOO_LARGE")), r.randint(1, 500)),
    lambda r, e: "database connection lost to %s-db-%d.internal:5432: %s" % (
        e["service"], r.randint(0, 3), r.choice(ERRORS)),
    lambda r, e: "job %s failed after %dms: %s (run %d)" % (
        r.choice(JOBS), r.randint(100, 600000), r.choice(ERRORS), r.randint(1, 99999)),
]
# level name, cumulative probability, templates
LEVELS = [("info", 0.76, INFO_TEMPLATES), ("debug", 0.90, DEBUG_TEMPLATES),
          ("warn", 0.97, WARN_TEMPLATES), ("error", 1.0, ERROR_TEMPLATES)]


def _cumulative(weights):
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return [c / total for c in out]


def log_records(n, start_id, seed):
    """Yields n log events as bytes, each ending in a newline."""
    # The hosts are fixed (not seeded): 300 of them, each running one
    # service, busier ones first.
    hosts = []
    for k in range(300):
        svc = SERVICES[(k * 7) % len(SERVICES)]
        hosts.append(("%s-%03d.%s" % (ROLES[k % len(ROLES)], k, REGIONS[(k // 5) % len(REGIONS)]),
                      svc))
    host_cum = _cumulative([1.0 / (1 + k / 20.0) for k in range(len(hosts))])
    tenant_cum = _cumulative(TENANT_WEIGHTS)
    # Within a level, template j is picked with weight 1/(j+1)^0.7.
    level_cums = [_cumulative([1.0 / (j + 1) ** 0.7 for j in range(len(t))])
                  for _, _, t in LEVELS]
    rng = random.Random(seed)
    second_cache = [-1, ""]
    for i in range(start_id, start_id + n):
        ts = LOGS_EPOCH_MS + 2 * i + rng.getrandbits(1)
        sec = ts // 1000
        if sec != second_cache[0]:
            second_cache[0] = sec
            second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        host, svc = hosts[bisect.bisect(host_cum, rng.random())]
        tenant = TENANTS[bisect.bisect(tenant_cum, rng.random())]
        r = rng.random()
        lv = 0 if r < LEVELS[0][1] else 1 if r < LEVELS[1][1] else 2 if r < LEVELS[2][1] else 3
        level, _, templates = LEVELS[lv]
        lat = rng.lognormvariate(2.5, 1.1)
        if lv == 3:
            lat *= 8
        ev = {"service": svc, "lat": lat, "tenant": tenant,
              "bytes": int(rng.lognormvariate(7.2, 1.3))}
        msg = templates[min(bisect.bisect(level_cums[lv], rng.random()), len(templates) - 1)](rng, ev)
        yield (
            '{"tenant":"%s","ts":"%s.%03dZ","host":"%s","service":"%s","level":"%s",'
            '"latency_ms":%.3f,"bytes":%d,"message":"%s"}\n'
            % (tenant, second_cache[1], ts % 1000, host, svc, level, lat, ev["bytes"], msg)
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

    gen = log_records if args.kind == "logs" else records
    for rec in gen(args.records, args.start_id, args.seed):
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
        description="Generate flights-like or log-like NDJSON batches (deterministic).")
    p.add_argument("--kind", choices=("flights", "logs"), default="flights",
                   help="flights (~104-byte records, default) or logs (~230-byte events)")
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

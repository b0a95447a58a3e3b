/*
 * engine: the storage facade (see engine.h for the contract).
 *
 * DESIGN
 *
 * The loop thread owns the engine. A write runs, on that thread, without
 * yielding: look the table up in the current catalog snapshot, decode and
 * check the records, take the next commit version (mvcc), append one WAL
 * record, put the rows into the active memtable. The memtable holds them
 * at their version, which readers skip until mvcc says it is visible. The
 * WAL's writer thread reports each record durable; those completions are
 * queued under `cq_lock` and the loop is woken (opts.post) once per WAL
 * group. On the loop thread, drain() ends each commit in mvcc (in version
 * order, which is WAL order) and answers every waiting write whose
 * version is now visible.
 *
 * Catalog changes take the same path, one at a time (`cc_busy`): the op is
 * checked against the newest catalog, logged, and applied to the catalog
 * once durable; only then is the next change checked. So two clients
 * creating the same tenant get 201 and 409, never two 201s.
 *
 * WAL RECORDS. WAL_REC_CATALOG carries catalog_op_encode() bytes.
 * WAL_REC_DATA carries one write batch (do not change: on-disk format,
 * version 1; integers little-endian):
 *
 *   u8  format        1
 *   u8  kind          1 = upsert rows, 2 = delete keys
 *   u16 idem_len      bytes of the Idempotency-Key, 0 when none
 *   u32 schema_ver    schema version of the rows
 *   u64 table_id      catalog table id (never reused)
 *   i64 wall_ms       commit wall time (idempotency expiry)
 *   u64 count         rows or keys that follow
 *   u64 rejected      records refused in partial mode
 *   u32 ndetails      per-record errors that follow
 *   idem_len bytes    the Idempotency-Key
 *   ndetails x { u64 index, u8 field_len, field, u16 reason_len, reason }
 *   kind 1: count rows back to back (schema.h format, self-sized)
 *   kind 2: count x { u32 len, encoded key (key.h) }
 *   kind 3 (a transaction; table_id and schema_ver are 0): count x
 *          { u8 op (1 upsert, 2 delete), u64 table_id, u32 schema_ver,
 *            u32 len, the row or the encoded key }
 *
 * Replay applies both kinds in WAL order; data of a table id that the
 * catalog no longer has (deleted) is skipped.
 *
 * IDEMPOTENCY. Keys live in a hash table by (tenant id, key) with the
 * result of their commit, in a FIFO by insertion (= expiry) order. A retry
 * finds the entry and gets its result; a retry while the first request is
 * still in flight waits for it. Entries come back at replay from the WAL
 * records, so retries after a restart are still recognised.
 *
 * Lock rules: cq_lock guards cq_head/cq_tail/cq_posted only; it is taken
 * by the WAL writer thread and the loop thread and never held while
 * calling anything else. Everything else is loop-thread only.
 */
#include "engine/engine_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/fs.h"
#include "jobs/jobs.h"
#include "engine/key.h"
#include "engine/memtable.h"
#include "engine/mvcc.h"
#include "engine/timestamp.h"
#include "engine/wal.h"
#include "util/crc32c.h"
#include "util/le.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/timeutil.h"

#define BATCH_FORMAT       1
#define BATCH_UPSERT       1
#define BATCH_DELETE       2
#define BATCH_MIXED        3
#define BATCH_HEADER       44
#define MAX_FROZEN_DEFAULT 4
#define IDEM_KEY_MAX       256
#define KEY_BUF            1024

enum pending_kind {
    P_INGEST,
    P_DELETE,
    P_CATALOG,
    P_TXN,
};

/* A commit between its WAL append and its answer. */
struct pending {
    struct engine *e;       /* owner */
    struct pending *next;   /* in the wait list, version order */
    struct pending *cnext;  /* in the completion queue */
    bool completed;         /* the WAL has reported it */
    enum pending_kind kind; /* what answers it */
    uint64_t version;       /* its commit version */
    enum st_status st;      /* WAL outcome */
    struct err err;         /* WAL error text */
    struct strbuf payload;  /* the WAL record (borrowed by the WAL) */
    engine_ingest_fn ingest_done;
    engine_txn_fn txn_done;  /* P_TXN */
    engine_done_fn done;     /* P_DELETE, P_CATALOG */
    void *arg;               /* their argument */
    struct idem_entry *idem; /* P_INGEST with an Idempotency-Key */
    uint64_t accepted;       /* P_INGEST result */
    uint64_t rejected;
    struct decode_detail *details;
    uint32_t ndetails;
};

/* A remembered Idempotency-Key. */
struct idem_entry {
    struct idem_entry *hnext; /* hash chain */
    struct idem_entry *fnext; /* FIFO by expiry */
    uint64_t tenant_id;       /* owner */
    char *key;                /* the header value */
    uint64_t hash;            /* of (tenant_id, key) */
    int64_t expires_ms;       /* wall time it is forgotten */
    bool done;                /* committed (else still in flight) */
    enum st_status st;        /* its outcome once done */
    uint64_t version;         /* result */
    uint64_t accepted;
    uint64_t rejected;
    struct decode_detail *details;
    uint32_t ndetails;
    struct idem_waiter *waiters; /* retries that came while in flight */
};

struct idem_waiter {
    struct idem_waiter *next;
    engine_ingest_fn done;
    void *arg;
};

/* A tenant's ingest-rate bucket (max_records_per_sec quota). */
struct rate_bucket {
    uint64_t tenant_id; /* 0: empty slot */
    double tokens;      /* records it may ingest now; negative: in debt */
    uint64_t last_ns;   /* when tokens was last refilled */
};

/* A catalog change waiting for its turn. */
struct cat_change {
    struct cat_change *next;
    struct catalog_op op;
    engine_done_fn done;
    void *arg;
};

/* ------------------------------------------------------------------ */
/* Reading the little-endian encoding (util/le.h writes it) */

struct reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static const void *take(struct reader *r, size_t n)
{
    const void *p = r->p;

    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    r->p += n;
    r->left -= n;
    return p;
}

static uint64_t get_le(struct reader *r, size_t n)
{
    const uint8_t *p = take(r, n);
    uint64_t v = 0;

    if (!p)
        return 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------------ */
/* Idempotency table */

static uint64_t idem_hash(uint64_t tenant_id, const char *key)
{
    uint64_t h = key_hash(key, strlen(key));

    return h ^ (tenant_id * 0x9e3779b97f4a7c15ull);
}

static struct idem_entry *idem_find(engine *e, uint64_t tenant_id, const char *key)
{
    uint64_t h;

    if (!e->idem_cap)
        return NULL;
    h = idem_hash(tenant_id, key);
    for (struct idem_entry *x = e->idem_tab[h & (e->idem_cap - 1)]; x; x = x->hnext)
        if (x->hash == h && x->tenant_id == tenant_id && !strcmp(x->key, key))
            return x;
    return NULL;
}

static void idem_unlink(engine *e, struct idem_entry *x)
{
    struct idem_entry **pp = &e->idem_tab[x->hash & (e->idem_cap - 1)];

    while (*pp != x)
        pp = &(*pp)->hnext;
    *pp = x->hnext;
    e->idem_count--;
}

static void idem_free(struct idem_entry *x)
{
    free(x->key);
    free(x->details);
    free(x);
}

/* Forgets expired entries; only done ones (in-flight entries have waiters). */
static void idem_expire(engine *e, int64_t now_ms)
{
    while (e->idem_fifo_head && e->idem_fifo_head->expires_ms <= now_ms &&
           e->idem_fifo_head->done) {
        struct idem_entry *x = e->idem_fifo_head;

        e->idem_fifo_head = x->fnext;
        if (!e->idem_fifo_head)
            e->idem_fifo_tail = NULL;
        idem_unlink(e, x);
        idem_free(x);
    }
}

static void idem_grow(engine *e)
{
    size_t ncap = e->idem_cap ? e->idem_cap * 2 : 1024;
    struct idem_entry **tab = calloc_array(ncap, sizeof(*tab));

    for (size_t i = 0; i < e->idem_cap; i++) {
        struct idem_entry *x = e->idem_tab[i];

        while (x) {
            struct idem_entry *next = x->hnext;

            x->hnext = tab[x->hash & (ncap - 1)];
            tab[x->hash & (ncap - 1)] = x;
            x = next;
        }
    }
    free(e->idem_tab);
    e->idem_tab = tab;
    e->idem_cap = ncap;
}

static struct idem_entry *idem_insert(engine *e, uint64_t tenant_id, const char *key,
                                      int64_t expires_ms)
{
    struct idem_entry *x;

    /* Bounded memory: past the limit the oldest finished keys go first. */
    while (e->idem_count >= e->opts.idempotency_max_keys && e->idem_fifo_head &&
           e->idem_fifo_head->done) {
        x = e->idem_fifo_head;
        e->idem_fifo_head = x->fnext;
        if (!e->idem_fifo_head)
            e->idem_fifo_tail = NULL;
        idem_unlink(e, x);
        idem_free(x);
        e->idem_evicted++;
    }
    x = xcalloc(1, sizeof(*x));

    if (e->idem_count + 1 > e->idem_cap / 2)
        idem_grow(e);
    x->tenant_id = tenant_id;
    x->key = xstrdup(key);
    x->hash = idem_hash(tenant_id, key);
    x->expires_ms = expires_ms;
    x->hnext = e->idem_tab[x->hash & (e->idem_cap - 1)];
    e->idem_tab[x->hash & (e->idem_cap - 1)] = x;
    e->idem_count++;
    if (e->idem_fifo_tail)
        e->idem_fifo_tail->fnext = x;
    else
        e->idem_fifo_head = x;
    e->idem_fifo_tail = x;
    return x;
}

/* Removes an in-flight entry whose commit never happened. */
static void idem_drop(engine *e, struct idem_entry *x)
{
    struct idem_entry **pp = &e->idem_fifo_head;
    struct idem_entry *prev = NULL;

    while (*pp != x) {
        prev = *pp;
        pp = &(*pp)->fnext;
    }
    *pp = x->fnext;
    if (e->idem_fifo_tail == x)
        e->idem_fifo_tail = prev;
    idem_unlink(e, x);
    idem_free(x);
}

static struct decode_detail *copy_details(const struct decode_detail *d, uint32_t n)
{
    struct decode_detail *c;

    if (!n)
        return NULL;
    c = calloc_array(n, sizeof(*c));
    memcpy(c, d, n * sizeof(*c));
    return c;
}

/* ------------------------------------------------------------------ */
/* Completions: WAL writer thread -> loop thread */

static void drain(void *arg);

/* On the WAL writer thread: queue the finished record for drain(). */
static void wal_done(void *arg, enum st_status st, uint64_t seq)
{
    struct pending *p = arg;
    engine *e = p->e;

    ST_UNUSED(seq);
    p->st = st;
    pthread_mutex_lock(&e->cq_lock);
    p->cnext = NULL;
    if (e->cq_tail)
        e->cq_tail->cnext = p;
    else
        e->cq_head = p;
    e->cq_tail = p;
    pthread_mutex_unlock(&e->cq_lock);
}

/* On the WAL writer thread, once per group: wake the loop once. */
static void wal_group_done(void *arg)
{
    engine *e = arg;
    bool post = false;

    pthread_mutex_lock(&e->cq_lock);
    /* While closing, engine_close() drains by itself after wal_close(). */
    if (!e->cq_posted && e->cq_head && !e->closing) {
        e->cq_posted = true;
        post = true;
    }
    pthread_mutex_unlock(&e->cq_lock);
    if (post)
        e->opts.post(e->opts.post_ctx, drain, e);
}

/* ------------------------------------------------------------------ */
/* Answers */

static void answer_ingest(engine *e, struct pending *p, enum st_status st, const struct err *err)
{
    struct engine_ingest_result res;

    memset(&res, 0, sizeof(res));
    res.r.st = st;
    if (err)
        res.r.err = *err;
    res.r.version = p->version;
    res.accepted = st == ST_OK ? p->accepted : 0;
    res.rejected = p->rejected;
    res.details = p->details;
    res.ndetails = p->ndetails;
    if (p->idem) {
        struct idem_entry *x = p->idem;
        struct idem_waiter *w = x->waiters;

        x->waiters = NULL;
        pthread_mutex_lock(&e->idem_lock);
        if (st != ST_OK) {
            /* Nothing was committed: a retry may try again. */
            idem_drop(e, x);
            x = NULL;
        } else {
            x->done = true;
            x->st = st;
            x->version = p->version;
            x->accepted = p->accepted;
            x->rejected = p->rejected;
            x->details = copy_details(p->details, p->ndetails);
            x->ndetails = p->ndetails;
        }
        pthread_mutex_unlock(&e->idem_lock);
        p->ingest_done(p->arg, &res);
        /* Retries that waited get the same answer; a failure is not a replay. */
        res.replayed = st == ST_OK;
        while (w) {
            struct idem_waiter *next = w->next;

            w->done(w->arg, &res);
            free(w);
            w = next;
        }
        return;
    }
    p->ingest_done(p->arg, &res);
}

static void pending_free(struct pending *p)
{
    strbuf_release(&p->payload);
    free(p->details);
    free(p);
}

static void start_next_catalog_change(engine *e);

/* Answers p, whose commit is visible (st ST_OK) or failed. */
static void finish(engine *e, struct pending *p)
{
    struct engine_result r;
    struct err err;

    err_clear(&err);
    switch (p->kind) {
    case P_INGEST:
        answer_ingest(e, p, p->st, &p->err);
        break;
    case P_DELETE:
        memset(&r, 0, sizeof(r));
        r.st = p->st;
        r.err = p->err;
        r.version = p->version;
        p->done(p->arg, &r);
        break;
    case P_TXN: {
        struct engine_txn_result tr;

        memset(&tr, 0, sizeof(tr));
        tr.r.st = p->st;
        tr.r.err = p->err;
        tr.r.version = p->version;
        p->txn_done(p->arg, &tr);
        break;
    }
    case P_CATALOG:
        memset(&r, 0, sizeof(r));
        r.st = p->st;
        r.err = p->err;
        r.version = p->version;
        if (p->st == ST_OK) {
            r.st = catalog_apply(e->cat, p->payload.buf, p->payload.len, p->version, &err);
            if (r.st) {
                /* A checked op that does not apply: a bug or corruption. */
                log_error("engine catalog change did not apply version=%llu: %s",
                          (unsigned long long)p->version, err.msg);
                r.err = err;
            }
        }
        pthread_mutex_lock(&e->store_lock);
        e->cc_version = 0;
        pthread_mutex_unlock(&e->store_lock);
        p->done(p->arg, &r);
        e->cc_busy = false;
        start_next_catalog_change(e);
        break;
    }
    pending_free(p);
}

static void update_gauges(engine *e)
{
    size_t nfrozen;

    if (!e->m_version)
        return;
    pthread_mutex_lock(&e->mt_lock);
    nfrozen = e->nfrozen;
    pthread_mutex_unlock(&e->mt_lock);
    metric_set(e->m_version, (double)mvcc_visible(e->mvcc));
    metric_set(e->m_mem_bytes, (double)memtable_bytes(e->active));
    metric_set(e->m_frozen, (double)nfrozen);
    metric_set(e->m_snapshots, (double)mvcc_snapshot_count(e->mvcc));
}

/* On the loop thread: ends completed commits and answers visible ones. */
static void drain(void *arg)
{
    engine *e = arg;
    struct pending *list;
    uint64_t visible = mvcc_visible(e->mvcc);

    pthread_mutex_lock(&e->cq_lock);
    list = e->cq_head;
    e->cq_head = e->cq_tail = NULL;
    e->cq_posted = false;
    pthread_mutex_unlock(&e->cq_lock);

    for (struct pending *p = list; p; p = p->cnext) {
        p->completed = true;
        if (p->st != ST_OK) {
            err_clear(&p->err);
            if (!e->wal || wal_error(e->wal, &p->err) == ST_OK || !p->err.msg[0])
                err_set(&p->err, ST_EIO, "the write-ahead log failed");
            p->err.code = ST_EIO;
            p->st = ST_EIO;
            if (mvcc_error(e->mvcc, NULL) == ST_OK)
                log_error("engine read-only after a WAL failure: %s", p->err.msg);
            mvcc_fail(e->mvcc, &p->err);
        }
        visible = mvcc_commit_done(e->mvcc, p->version, p->st);
        if (e->m_commits && p->st == ST_OK)
            metric_inc(e->m_commits);
    }
    /*
     * Answer in version order. The WAL completes records in append order
     * and fails everything after a failure, so a completed commit is
     * either visible or failed.
     */
    while (e->wait_head && e->wait_head->completed) {
        struct pending *p = e->wait_head;

        if (p->st == ST_OK && p->version > visible)
            break;
        e->wait_head = p->next;
        if (!e->wait_head)
            e->wait_tail = NULL;
        finish(e, p);
    }
    if (e->m_readonly)
        metric_set(e->m_readonly, mvcc_error(e->mvcc, NULL) ? 1 : 0);
    update_gauges(e);
}

/* ------------------------------------------------------------------ */
/* Submitting commits */

static struct pending *pending_new(engine *e, enum pending_kind kind)
{
    struct pending *p = xcalloc(1, sizeof(*p));

    p->e = e;
    p->kind = kind;
    strbuf_init(&p->payload, 0);
    err_clear(&p->err);
    return p;
}

/* Writes that must wait: read-only after a failure, or memory full. */
static enum st_status check_writable(engine *e, struct err *err)
{
    size_t nfrozen;

    if (mvcc_error(e->mvcc, err))
        return err->code = ST_EIO;
    if (e->closing)
        return err_set(err, ST_ESHUTDOWN, "the server is shutting down");
    pthread_mutex_lock(&e->mt_lock);
    nfrozen = e->nfrozen;
    pthread_mutex_unlock(&e->mt_lock);
    if (nfrozen >= e->max_frozen)
        return err_set(err, ST_EAGAIN,
                       "memory for recent writes is full (%zu memtables wait for flush); "
                       "retry later",
                       nfrozen);
    return ST_OK;
}

/*
 * Gives p the next commit version and appends its payload to the WAL
 * (borrowed until the WAL is done with it). On ST_OK p is on the wait
 * list and will be answered by drain(); otherwise the version is given up
 * and the caller answers and frees p.
 */
static enum st_status submit(engine *e, struct pending *p, uint16_t type, struct err *err)
{
    struct wal_entry we;
    enum st_status rc;

    rc = mvcc_commit_begin(e->mvcc, &p->version, err);
    if (rc)
        return rc;
    memset(&we, 0, sizeof(we));
    we.type = type;
    we.version = p->version;
    we.payload = p->payload.buf;
    we.len = p->payload.len;
    we.flags = WAL_F_BORROW;
    we.done = wal_done;
    we.arg = p;
    rc = wal_append(e->wal, &we, err);
    if (rc) {
        mvcc_commit_abort(e->mvcc, p->version);
        return rc;
    }
    p->next = NULL;
    if (e->wait_tail)
        e->wait_tail->next = p;
    else
        e->wait_head = p;
    e->wait_tail = p;
    return ST_OK;
}

/* Hands the active memtable to the flush job once it is full. */
static void maybe_rotate_memtable(engine *e)
{
    if (memtable_bytes(e->active) >= e->opts.memtable_size)
        engine__rotate(e, true);
}

/*
 * Puts one row or tombstone at version. s is the row's schema (for its
 * time value: the memtable keeps each table's time range), or NULL.
 */
static void put_one(engine *e, uint64_t version, uint32_t table, uint32_t schema_version,
                    const uint8_t *key, size_t key_len, uint64_t hash, const void *row,
                    uint32_t row_len, const struct schema *s)
{
    struct memtable_write w;

    memset(&w, 0, sizeof(w));
    if (row && s && s->time_field >= 0) {
        struct value t;

        schema_row_get(s, row, (uint32_t)s->time_field, &t);
        w.has_time = !t.is_null;
        w.time = t.u.i;
    }
    w.table = table;
    w.key = key;
    w.key_len = (uint32_t)key_len;
    w.hash = hash;
    w.schema_version = schema_version;
    w.row = row;
    w.row_len = row_len;
    memtable_put(e->active, version, &w);
    e->put_version = version;
}

/* Encodes row's primary key into kbuf (growing it for a long key). */
static void row_key(const struct schema *s, const void *row, struct strbuf *kbuf)
{
    size_t klen = schema_row_key(s, row, (uint8_t *)kbuf->buf, kbuf->alloc);

    if (klen > kbuf->alloc) {
        strbuf_grow(kbuf, klen);
        klen = schema_row_key(s, row, (uint8_t *)kbuf->buf, kbuf->alloc);
    }
    kbuf->len = klen;
}

/*
 * Puts a row, encoding its key into kbuf. hash is the key's key_hash()
 * when the caller has it (the decoder computes one per row), else 0.
 */
static void put_row(engine *e, uint64_t version, uint32_t table, const struct schema *s,
                    const void *row, uint64_t hash, struct strbuf *kbuf)
{
    row_key(s, row, kbuf);
    put_one(e, version, table, s->version, (const uint8_t *)kbuf->buf, kbuf->len,
            hash ? hash : key_hash(kbuf->buf, kbuf->len), row, schema_row_len(row), s);
}

/* The header of a data batch (see the top of this file). */
static void batch_header(struct strbuf *sb, uint8_t kind, const char *idem, uint32_t schema_version,
                         uint64_t table_id, uint64_t count, uint64_t rejected,
                         const struct decode_detail *details, uint32_t ndetails)
{
    size_t idem_len = idem ? strlen(idem) : 0;

    le_add(sb, BATCH_FORMAT, 1);
    le_add(sb, kind, 1);
    le_add(sb, (uint16_t)idem_len, 2);
    le_add(sb, schema_version, 4);
    le_add(sb, table_id, 8);
    le_add(sb, (uint64_t)time_wall_ms(), 8);
    le_add(sb, count, 8);
    le_add(sb, rejected, 8);
    le_add(sb, ndetails, 4);
    strbuf_add(sb, idem, idem_len);
    for (uint32_t i = 0; i < ndetails; i++) {
        size_t fl = strlen(details[i].field);
        size_t rl = strlen(details[i].reason);

        le_add(sb, details[i].index, 8);
        le_add(sb, (uint8_t)fl, 1);
        strbuf_add(sb, details[i].field, fl);
        le_add(sb, (uint16_t)rl, 2);
        strbuf_add(sb, details[i].reason, rl);
    }
}

/* ------------------------------------------------------------------ */
/* Catalog */

struct catalog_snap *engine_catalog(engine *e)
{
    return catalog_acquire(e->cat);
}

static void answer_now(engine_done_fn done, void *arg, enum st_status st, const struct err *err)
{
    struct engine_result r;

    memset(&r, 0, sizeof(r));
    r.st = st;
    if (err)
        r.err = *err;
    done(arg, &r);
}

/* The count limits of the catalog (ST_EQUOTA), checked on the newest catalog. */
static enum st_status check_catalog_limits(engine *e, const struct catalog_snap *snap,
                                           const struct catalog_op *op, struct err *err)
{
    const struct catalog_tenant *t =
        op->tenant ? catalog_find_tenant(snap, op->tenant, strlen(op->tenant)) : NULL;
    uint32_t max;

    switch (op->type) {
    case CATALOG_OP_CREATE_TENANT:
        max = e->opts.max_tenants;
        if (max && catalog_ntenants(snap) >= max)
            return err_set(err, ST_EQUOTA, "the server holds its limit of %u tenants", max);
        break;
    case CATALOG_OP_CREATE_TABLE:
        max = e->opts.max_tables_per_tenant;
        if (max && t && catalog_tenant_ntables(t) >= max)
            return err_set(err, ST_EQUOTA, "tenant '%s' holds its limit of %u tables", op->tenant,
                           max);
        break;
    case CATALOG_OP_CREATE_KEY:
        max = e->opts.max_keys_per_tenant;
        if (max && t && catalog_tenant_nkeys(t) >= max)
            return err_set(err, ST_EQUOTA, "tenant '%s' holds its limit of %u keys", op->tenant,
                           max);
        break;
    case CATALOG_OP_ADD_SCHEMA_VERSION: {
        const struct catalog_table *tb =
            t && op->table ? catalog_tenant_find_table(t, op->table, strlen(op->table)) : NULL;

        max = e->opts.max_schema_versions;
        if (max && tb && catalog_table_schema(tb)->version >= max)
            return err_set(err, ST_EQUOTA, "table '%s' holds its limit of %u schema versions",
                           op->table, max);
        break;
    }
    default:
        break;
    }
    return ST_OK;
}

static void start_next_catalog_change(engine *e)
{
    while (!e->cc_busy && e->cc_head) {
        struct cat_change *c = e->cc_head;
        struct catalog_snap *snap;
        struct pending *p;
        struct err err;
        enum st_status rc;

        e->cc_head = c->next;
        if (!e->cc_head)
            e->cc_tail = NULL;
        err_clear(&err);
        rc = check_writable(e, &err);
        if (rc == ST_EAGAIN)
            rc = ST_OK; /* catalog changes are tiny: never refused for memory */
        if (!rc) {
            snap = catalog_acquire(e->cat);
            rc = catalog_check_op(snap, &c->op, &err);
            if (!rc)
                rc = check_catalog_limits(e, snap, &c->op, &err);
            catalog_release(snap);
        }
        if (!rc) {
            p = pending_new(e, P_CATALOG);
            p->done = c->done;
            p->arg = c->arg;
            catalog_op_encode(&c->op, &p->payload);
            rc = submit(e, p, WAL_REC_CATALOG, &err);
            if (rc) {
                pending_free(p);
            } else {
                e->cc_busy = true;
                pthread_mutex_lock(&e->store_lock);
                e->cc_version = p->version;
                pthread_mutex_unlock(&e->store_lock);
            }
        }
        if (rc)
            answer_now(c->done, c->arg, rc, &err);
        catalog_op_release(&c->op);
        free(c);
    }
}

enum st_status engine_catalog_change(engine *e, struct catalog_op *op, engine_done_fn done,
                                     void *arg)
{
    struct cat_change *c = xcalloc(1, sizeof(*c));

    c->op = *op;
    catalog_op_init(op);
    c->done = done;
    c->arg = arg;
    if (e->cc_tail)
        e->cc_tail->next = c;
    else
        e->cc_head = c;
    e->cc_tail = c;
    start_next_catalog_change(e);
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Tables and keys */

const struct catalog_table *engine__find_table(struct catalog_snap *snap, const char *tenant,
                                               const char *table, struct err *err)
{
    const struct catalog_tenant *t = catalog_find_tenant(snap, tenant, strlen(tenant));
    const struct catalog_table *tb;

    if (!t) {
        err_set(err, ST_ENOTFOUND, "no tenant '%s'", tenant);
        return NULL;
    }
    tb = catalog_tenant_find_table(t, table, strlen(table));
    if (!tb)
        err_set(err, ST_ENOTFOUND, "no table '%s' in tenant '%s'", table, tenant);
    else if (catalog_table_id(tb) > UINT32_MAX)
        ST_BUG("table id %llu does not fit the memtable", (unsigned long long)catalog_table_id(tb));
    return tb;
}

/* Parses one key value from its URL text. */
static enum st_status parse_key_value(const struct field *f, const char *text, struct value *v,
                                      struct err *err)
{
    size_t len = strlen(text);
    char *end;

    memset(v, 0, sizeof(*v));
    v->type = f->type;
    errno = 0;
    switch (f->type) {
    case FIELD_INT64: {
        long long x = len ? strtoll(text, &end, 10) : 0;

        if (!len || *end || errno || text[0] == '+' || text[0] == ' ')
            goto bad;
        v->u.i = x;
        return ST_OK;
    }
    case FIELD_TIMESTAMP:
        if (!timestamp_parse_text(text, len, &v->u.i))
            goto bad;
        return ST_OK;
    case FIELD_FLOAT64: {
        double x = len ? strtod(text, &end) : 0;

        if (!len || *end || errno || x != x || x > 1.7976931348623157e308 ||
            x < -1.7976931348623157e308 || text[0] == ' ')
            goto bad;
        v->u.f = x;
        return ST_OK;
    }
    case FIELD_BOOL:
        if (!strcmp(text, "true"))
            v->u.b = true;
        else if (!strcmp(text, "false"))
            v->u.b = false;
        else
            goto bad;
        return ST_OK;
    case FIELD_STRING:
        v->u.s.ptr = text;
        v->u.s.len = (uint32_t)len;
        return ST_OK;
    case FIELD_JSON:
        break;
    }
bad:
    return err_set(err, ST_EINVAL, "key field '%s': '%s' is not a valid %s", f->name, text,
                   field_type_name(f->type));
}

/* Encodes the primary key given as URL texts into kbuf. */
enum st_status engine__encode_key(const struct schema *s, const char *const *texts, size_t n,
                                  struct strbuf *kbuf, struct err *err)
{
    struct value vals[SCHEMA_MAX_PK];
    size_t klen;

    if (n != s->npk)
        return err_set(err, ST_EINVAL, "the primary key has %u field%s; the path gives %zu", s->npk,
                       s->npk == 1 ? "" : "s", n);
    for (size_t i = 0; i < n; i++) {
        enum st_status rc = parse_key_value(&s->fields[s->pk[i]], texts[i], &vals[i], err);

        if (rc)
            return rc;
    }
    strbuf_reset(kbuf);
    klen = schema_key_encode(vals, s->npk, (uint8_t *)kbuf->buf, kbuf->alloc);
    if (klen > kbuf->alloc) {
        strbuf_grow(kbuf, klen);
        klen = schema_key_encode(vals, s->npk, (uint8_t *)kbuf->buf, kbuf->alloc);
    }
    kbuf->len = klen;
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Rate quotas */

static struct rate_bucket *rate_bucket(engine *e, uint64_t tenant_id, double rate)
{
    size_t i;

    if (e->rates_used + 1 > e->rates_cap / 2) {
        size_t ncap = e->rates_cap ? e->rates_cap * 2 : 64;
        struct rate_bucket *n = calloc_array(ncap, sizeof(*n));

        for (size_t j = 0; j < e->rates_cap; j++) {
            if (!e->rates[j].tenant_id)
                continue;
            for (i = e->rates[j].tenant_id & (ncap - 1); n[i].tenant_id; i = (i + 1) & (ncap - 1))
                ;
            n[i] = e->rates[j];
        }
        free(e->rates);
        e->rates = n;
        e->rates_cap = ncap;
    }
    for (i = tenant_id & (e->rates_cap - 1); e->rates[i].tenant_id;
         i = (i + 1) & (e->rates_cap - 1))
        if (e->rates[i].tenant_id == tenant_id)
            return &e->rates[i];
    e->rates[i].tenant_id = tenant_id;
    e->rates[i].tokens = rate;
    e->rates[i].last_ns = time_mono_ns();
    e->rates_used++;
    return &e->rates[i];
}

/*
 * Takes n records from the bucket of a tenant whose quota is rate records
 * per second (0: none); the bucket holds one second of it. Returns 0 when
 * they may go in, else the seconds to wait.
 */
static uint32_t rate_take(engine *e, uint64_t tenant_id, uint64_t quota, uint64_t n)
{
    struct rate_bucket *b;
    uint64_t now = time_mono_ns();
    double rate = (double)quota;
    double need;

    if (!quota)
        return 0;
    b = rate_bucket(e, tenant_id, rate);
    b->tokens = ST_MIN(rate, b->tokens + rate * (double)(now - b->last_ns) / 1e9);
    b->last_ns = now;
    need = ST_MIN((double)n, rate);
    if (b->tokens >= need) {
        b->tokens -= (double)n;
        return 0;
    }
    return (uint32_t)((need - b->tokens) / rate) + 1;
}

/* ------------------------------------------------------------------ */
/* Ingest */

static void ingest_fail(engine_ingest_fn done, void *arg, enum st_status st, const struct err *err)
{
    struct engine_ingest_result res;

    memset(&res, 0, sizeof(res));
    res.r.st = st;
    if (err)
        res.r.err = *err;
    done(arg, &res);
}

static void replay_idem(const struct idem_entry *x, engine_ingest_fn done, void *arg)
{
    struct engine_ingest_result res;

    memset(&res, 0, sizeof(res));
    res.r.st = x->st;
    res.r.version = x->version;
    res.accepted = x->accepted;
    res.rejected = x->rejected;
    res.details = x->details;
    res.ndetails = x->ndetails;
    res.replayed = true;
    done(arg, &res);
}

void engine_ingest(engine *e, const char *tenant, const char *table, const char *body, size_t len,
                   const struct engine_ingest_opts *opts, engine_ingest_fn done, void *arg)
{
    struct catalog_snap *snap = catalog_acquire(e->cat);
    const struct catalog_table *tb;
    const struct schema *s;
    struct decode_opts dopts;
    struct decode_result *dec = &e->dec;
    struct strbuf kbuf = STRBUF_INIT;
    struct idem_entry *idem = NULL;
    struct pending *p;
    struct err err;
    enum st_status rc;
    uint32_t table_id;
    int64_t now = time_wall_ms();

    err_clear(&err);
    tb = engine__find_table(snap, tenant, table, &err);
    if (!tb) {
        ingest_fail(done, arg, ST_ENOTFOUND, &err);
        goto out;
    }
    table_id = (uint32_t)catalog_table_id(tb);
    s = catalog_table_schema(tb);
    if (opts->idempotency_key) {
        uint64_t tenant_id = catalog_table_tenant_id(tb);
        struct idem_entry *x;

        if (strlen(opts->idempotency_key) > IDEM_KEY_MAX || !opts->idempotency_key[0]) {
            err_set(&err, ST_EINVAL, "Idempotency-Key must be 1 to %d bytes", IDEM_KEY_MAX);
            ingest_fail(done, arg, ST_EINVAL, &err);
            goto out;
        }
        pthread_mutex_lock(&e->idem_lock);
        idem_expire(e, now);
        pthread_mutex_unlock(&e->idem_lock);
        x = idem_find(e, tenant_id, opts->idempotency_key);
        if (x && x->done) {
            replay_idem(x, done, arg);
            goto out;
        }
        if (x) {
            struct idem_waiter *w = xcalloc(1, sizeof(*w));

            w->done = done;
            w->arg = arg;
            w->next = x->waiters;
            x->waiters = w;
            goto out;
        }
    }
    rc = check_writable(e, &err);
    if (!rc)
        rc = engine__check_storage_quota(e, snap, catalog_table_tenant_id(tb), &err);
    if (rc) {
        ingest_fail(done, arg, rc, &err);
        goto out;
    }

    decode_opts_init(&dopts);
    dopts.format = opts->format;
    dopts.partial = opts->partial;
    dopts.max_rows_bytes = e->opts.max_body_bytes * 2 + (1u << 20);
    rc = decode_batch(s, body, len, &dopts, dec, &err);
    if (rc || (!opts->partial && dec->rejected)) {
        struct engine_ingest_result res;

        memset(&res, 0, sizeof(res));
        res.r.st = rc ? rc : ST_EINVAL;
        res.r.err = err;
        if (!rc)
            err_set(&res.r.err, ST_EINVAL, "%llu of %llu records failed validation",
                    (unsigned long long)dec->rejected, (unsigned long long)dec->nrecords);
        res.rejected = dec->rejected;
        res.details = dec->details;
        res.ndetails = dec->ndetails;
        res.err_offset = dec->err_offset;
        res.err_line = dec->err_line;
        res.err_column = dec->err_column;
        done(arg, &res);
        goto out;
    }
    if (!dec->nrows) {
        struct engine_ingest_result res;

        memset(&res, 0, sizeof(res));
        res.r.version = mvcc_visible(e->mvcc);
        res.rejected = dec->rejected;
        res.details = dec->details;
        res.ndetails = dec->ndetails;
        done(arg, &res);
        goto out;
    }

    {
        const struct catalog_tenant *t = catalog_find_tenant(snap, tenant, strlen(tenant));
        uint32_t wait = rate_take(e, catalog_table_tenant_id(tb),
                                  t ? catalog_tenant_quotas(t).max_records_per_sec : 0, dec->nrows);

        if (wait) {
            struct engine_ingest_result res;

            memset(&res, 0, sizeof(res));
            res.r.st = ST_EBUSY;
            err_set(&res.r.err, ST_EBUSY,
                    "tenant '%s' is over its quota of records per second; retry in %u s",
                    catalog_table_tenant(tb), wait);
            res.retry_after_s = wait;
            done(arg, &res);
            goto out;
        }
    }
    p = pending_new(e, P_INGEST);
    p->ingest_done = done;
    p->arg = arg;
    p->accepted = dec->nrows;
    p->rejected = dec->rejected;
    p->details = copy_details(dec->details, dec->ndetails);
    p->ndetails = dec->ndetails;
    strbuf_grow(&p->payload, BATCH_HEADER + dec->rows_len + 64);
    batch_header(&p->payload, BATCH_UPSERT, opts->idempotency_key, s->version, catalog_table_id(tb),
                 dec->nrows, dec->rejected, dec->details, dec->ndetails);
    strbuf_add(&p->payload, dec->rows, dec->rows_len);
    rc = submit(e, p, WAL_REC_DATA, &err);
    if (rc) {
        pending_free(p);
        ingest_fail(done, arg, rc, &err);
        goto out;
    }
    if (opts->idempotency_key) {
        pthread_mutex_lock(&e->idem_lock);
        idem = idem_insert(e, catalog_table_tenant_id(tb), opts->idempotency_key,
                           now + (int64_t)e->opts.idempotency_window_ms);
        pthread_mutex_unlock(&e->idem_lock);
        p->idem = idem;
    }
    strbuf_grow(&kbuf, KEY_BUF);
    for (size_t i = 0; i < dec->nrows; i++)
        put_row(e, p->version, table_id, s, decode_result_row(dec, i), dec->row[i].key_hash, &kbuf);
    maybe_rotate_memtable(e);
    if (e->m_records) {
        const char *tn = catalog_table_tenant(tb);

        metric_add(metric_series_get(e->m_records, tn), (double)dec->nrows);
        metric_add(metric_series_get(e->m_bytes, tn), (double)len);
        if (dec->rejected)
            metric_add(metric_series_get(e->m_rejected, tn), (double)dec->rejected);
    }
out:
    strbuf_release(&kbuf);
    catalog_release(snap);
}

/* ------------------------------------------------------------------ */
/* Deletes */

void engine_delete(engine *e, const char *tenant, const char *table, const char *const *key,
                   size_t nkey, engine_done_fn done, void *arg)
{
    struct catalog_snap *snap = catalog_acquire(e->cat);
    struct strbuf kbuf = STRBUF_INIT;
    const struct catalog_table *tb;
    const struct schema *s;
    struct pending *p;
    struct err err;
    enum st_status rc;

    err_clear(&err);
    tb = engine__find_table(snap, tenant, table, &err);
    if (!tb) {
        answer_now(done, arg, ST_ENOTFOUND, &err);
        goto out;
    }
    s = catalog_table_schema(tb);
    strbuf_grow(&kbuf, KEY_BUF);
    rc = engine__encode_key(s, key, nkey, &kbuf, &err);
    if (!rc)
        rc = check_writable(e, &err);
    if (rc) {
        answer_now(done, arg, rc, &err);
        goto out;
    }
    p = pending_new(e, P_DELETE);
    p->done = done;
    p->arg = arg;
    batch_header(&p->payload, BATCH_DELETE, NULL, s->version, catalog_table_id(tb), 1, 0, NULL, 0);
    le_add(&p->payload, (uint32_t)kbuf.len, 4);
    strbuf_add(&p->payload, kbuf.buf, kbuf.len);
    rc = submit(e, p, WAL_REC_DATA, &err);
    if (rc) {
        pending_free(p);
        answer_now(done, arg, rc, &err);
        goto out;
    }
    put_one(e, p->version, (uint32_t)catalog_table_id(tb), s->version, (const uint8_t *)kbuf.buf,
            kbuf.len, key_hash(kbuf.buf, kbuf.len), NULL, 0, NULL);
    maybe_rotate_memtable(e);
out:
    strbuf_release(&kbuf);
    catalog_release(snap);
}

/* ------------------------------------------------------------------ */
/* Transactions */

struct txn_state {
    struct engine_txn_conflict *conflicts; /* found so far */
    size_t nconflicts;
    struct decode_detail *details; /* bad records */
    uint32_t ndetails;
    struct strbuf body; /* the ops, WAL encoded */
    struct strbuf kbuf; /* key scratch */
    uint32_t *tables;   /* per op: table id */
    size_t *key_off;    /* per op: key offset in keys */
    size_t *key_len;    /* per op: key length */
    struct strbuf keys; /* every op's encoded key */
};

/* Prefixes err's message with "what N: " (a copy: err_set must not read its own buffer). */
static void prefix_err(struct err *err, const char *what, size_t index)
{
    char msg[ST_ERR_MSG_MAX];

    memcpy(msg, err->msg, sizeof(msg));
    err_set(err, err->code, "%s %zu: %s", what, index, msg);
}

static void txn_conflict(struct txn_state *ts, bool is_cond, size_t index)
{
    ts->conflicts = realloc_array(ts->conflicts, ts->nconflicts + 1, sizeof(*ts->conflicts));
    ts->conflicts[ts->nconflicts].is_cond = is_cond;
    ts->conflicts[ts->nconflicts].index = index;
    ts->nconflicts++;
}

/* Looks up a table of tenant t and encodes a key given as texts. */
static enum st_status txn_key(const struct catalog_tenant *t, const struct engine_txn_key *k,
                              const struct catalog_table **tb, struct strbuf *kbuf, struct err *err)
{
    if (!k->table || !(*tb = catalog_tenant_find_table(t, k->table, strlen(k->table))))
        return err_set(err, ST_ENOTFOUND, "no table '%s' in tenant '%s'", k->table ? k->table : "",
                       catalog_tenant_name(t));
    return engine__encode_key(catalog_table_schema(*tb), k->key, k->nkey, kbuf, err);
}

/* Decodes one upserted record into ts->body; its key into kbuf. */
static enum st_status txn_record(engine *e, const struct schema *s, size_t index,
                                 const struct engine_txn_op *op, struct txn_state *ts,
                                 struct strbuf *kbuf, bool *rejected, struct err *err)
{
    struct decode_opts dopts;
    const void *row;
    enum st_status rc;

    decode_opts_init(&dopts);
    dopts.max_rows_bytes = e->opts.max_body_bytes * 2 + (1u << 20);
    rc = decode_batch(s, op->record ? op->record : "", op->record ? op->record_len : 0, &dopts,
                      &e->dec, err);
    if (rc == ST_OK && e->dec.nrecords != 1)
        rc = err_set(err, ST_EINVAL, "op %zu: the record must be one JSON object", index);
    if (rc == ST_OK && e->dec.rejected) {
        struct decode_detail *d;

        ts->details = realloc_array(ts->details, ts->ndetails + 1, sizeof(*ts->details));
        d = &ts->details[ts->ndetails++];
        *d = e->dec.details[0];
        d->index = index;
        *rejected = true;
        return ST_OK;
    }
    if (rc)
        return rc;
    row = decode_result_row(&e->dec, 0);
    strbuf_add(&ts->body, row, schema_row_len(row));
    row_key(s, row, kbuf);
    return ST_OK;
}

static void txn_state_release(struct txn_state *ts)
{
    free(ts->conflicts);
    free(ts->details);
    free(ts->tables);
    free(ts->key_off);
    free(ts->key_len);
    strbuf_release(&ts->body);
    strbuf_release(&ts->kbuf);
    strbuf_release(&ts->keys);
}

static void txn_answer(engine_txn_fn done, void *arg, enum st_status st, const struct err *err,
                       const struct txn_state *ts)
{
    struct engine_txn_result res;

    memset(&res, 0, sizeof(res));
    res.r.st = st;
    if (err)
        res.r.err = *err;
    if (ts) {
        res.conflicts = ts->conflicts;
        res.nconflicts = ts->nconflicts;
        res.details = ts->details;
        res.ndetails = ts->ndetails;
    }
    done(arg, &res);
}

void engine_txn(engine *e, const char *tenant, const struct engine_txn *t, engine_txn_fn done,
                void *arg)
{
    struct catalog_snap *snap = catalog_acquire(e->cat);
    const struct catalog_tenant *tn = catalog_find_tenant(snap, tenant, strlen(tenant));
    struct txn_state ts;
    struct engine__found f;
    struct pending *p;
    struct err err;
    enum st_status rc = ST_OK;
    size_t nops = t->nops;

    memset(&ts, 0, sizeof(ts));
    strbuf_init(&ts.kbuf, KEY_BUF);
    err_clear(&err);
    if (!tn) {
        err_set(&err, ST_ENOTFOUND, "no tenant '%s'", tenant);
        txn_answer(done, arg, ST_ENOTFOUND, &err, NULL);
        goto out;
    }
    rc = check_writable(e, &err);
    for (size_t i = 0; rc == ST_OK && i < nops; i++) {
        if (t->ops[i].op == ENGINE_TXN_UPSERT) {
            rc = engine__check_storage_quota(e, snap, catalog_tenant_id(tn), &err);
            break;
        }
    }
    if (rc) {
        txn_answer(done, arg, rc, &err, NULL);
        goto out;
    }

    /* Conditions, on everything applied so far. */
    for (size_t i = 0; i < t->nconds; i++) {
        const struct engine_txn_cond *c = &t->conds[i];
        const struct catalog_table *tb;
        bool exists;
        uint64_t version;

        rc = txn_key(tn, &c->k, &tb, &ts.kbuf, &err);
        if (rc) {
            prefix_err(&err, "condition", i);
            goto fail;
        }
        /* A delete is a change too: version_le sees the tombstone's version. */
        rc = engine__lookup(e, (uint32_t)catalog_table_id(tb), ts.kbuf.buf, ts.kbuf.len, UINT64_MAX,
                            &f, &err);
        if (rc && rc != ST_ENOTFOUND)
            goto fail;
        exists = rc == ST_OK && !f.tombstone;
        version = rc == ST_OK ? f.version : 0;
        if (rc == ST_OK)
            engine__found_release(&f);
        if ((c->exists == 1 && !exists) || (c->exists == 0 && exists) ||
            (c->has_version_le && version > c->version_le))
            txn_conflict(&ts, true, i);
    }

    /* Operations: decode, encode keys, look for read_version conflicts. */
    ts.tables = calloc_array(nops, sizeof(*ts.tables));
    ts.key_off = calloc_array(nops, sizeof(*ts.key_off));
    ts.key_len = calloc_array(nops, sizeof(*ts.key_len));
    for (size_t i = 0; i < nops; i++) {
        const struct engine_txn_op *op = &t->ops[i];
        const struct catalog_table *tb;
        const struct schema *s;
        size_t len_at;

        if (!op->k.table ||
            !(tb = catalog_tenant_find_table(tn, op->k.table, strlen(op->k.table)))) {
            rc = err_set(&err, ST_ENOTFOUND, "op %zu: no table '%s' in tenant '%s'", i,
                         op->k.table ? op->k.table : "", tenant);
            goto fail;
        }
        s = catalog_table_schema(tb);
        ts.tables[i] = (uint32_t)catalog_table_id(tb);
        le_add(&ts.body, (uint8_t)op->op, 1);
        le_add(&ts.body, catalog_table_id(tb), 8);
        le_add(&ts.body, s->version, 4);
        len_at = ts.body.len;
        le_add(&ts.body, 0, 4);
        if (op->op == ENGINE_TXN_UPSERT) {
            bool rejected = false;

            rc = txn_record(e, s, i, op, &ts, &ts.kbuf, &rejected, &err);
            if (!rc && rejected)
                continue; /* reported with the others below */
        } else if (op->op == ENGINE_TXN_DELETE) {
            rc = engine__encode_key(s, op->k.key, op->k.nkey, &ts.kbuf, &err);
            if (!rc)
                strbuf_add(&ts.body, ts.kbuf.buf, ts.kbuf.len);
        } else {
            rc = err_set(&err, ST_EINVAL, "op %zu: unknown operation", i);
        }
        if (rc) {
            prefix_err(&err, "op", i);
            goto fail;
        }
        {
            uint32_t len = (uint32_t)(ts.body.len - len_at - 4);

            for (int b = 0; b < 4; b++)
                ts.body.buf[len_at + (size_t)b] = (char)(len >> (8 * b));
        }
        ts.key_off[i] = ts.keys.len;
        ts.key_len[i] = ts.kbuf.len;
        strbuf_add(&ts.keys, ts.kbuf.buf, ts.kbuf.len);
        if (t->has_read_version) {
            rc = engine__lookup(e, ts.tables[i], ts.kbuf.buf, ts.kbuf.len, UINT64_MAX, &f, &err);
            if (rc && rc != ST_ENOTFOUND)
                goto fail;
            if (rc == ST_OK) {
                if (f.version > t->read_version)
                    txn_conflict(&ts, false, i);
                engine__found_release(&f);
            }
        }
    }
    if (ts.ndetails) {
        rc = err_set(&err, ST_EINVAL, "%u record%s failed validation", ts.ndetails,
                     ts.ndetails == 1 ? "" : "s");
        goto fail;
    }
    if (ts.nconflicts) {
        rc = err_set(&err, ST_ECONFLICT, "%zu condition%s or key%s conflict", ts.nconflicts,
                     ts.nconflicts == 1 ? "" : "s", ts.nconflicts == 1 ? "" : "s");
        goto fail;
    }

    p = pending_new(e, P_TXN);
    p->txn_done = done;
    p->arg = arg;
    batch_header(&p->payload, BATCH_MIXED, NULL, 0, 0, nops, 0, NULL, 0);
    strbuf_add(&p->payload, ts.body.buf, ts.body.len);
    rc = submit(e, p, WAL_REC_DATA, &err);
    if (rc) {
        pending_free(p);
        goto fail;
    }
    {
        /* Apply: walk the encoded ops again (rows and keys are in body). */
        struct reader r = {(const uint8_t *)ts.body.buf, ts.body.len, false};

        for (size_t i = 0; i < nops; i++) {
            uint8_t op = (uint8_t)get_le(&r, 1);
            uint64_t tid = get_le(&r, 8);
            uint32_t sv = (uint32_t)get_le(&r, 4);
            uint32_t len = (uint32_t)get_le(&r, 4);
            const void *bytes = take(&r, len);
            const uint8_t *key = (const uint8_t *)ts.keys.buf + ts.key_off[i];

            st_assert(!r.bad);
            put_one(e, p->version, (uint32_t)tid, sv, key, ts.key_len[i],
                    key_hash(key, ts.key_len[i]), op == ENGINE_TXN_UPSERT ? bytes : NULL,
                    op == ENGINE_TXN_UPSERT ? len : 0,
                    catalog_table_schema_version(catalog_find_table_by_id(snap, tid), sv));
        }
    }
    maybe_rotate_memtable(e);
    goto out;

fail:
    txn_answer(done, arg, rc, &err, &ts);
out:
    txn_state_release(&ts);
    catalog_release(snap);
}

/* ------------------------------------------------------------------ */
/* Reads */

uint64_t engine_version(engine *e)
{
    return mvcc_visible(e->mvcc);
}

enum st_status engine_health(engine *e, struct err *err)
{
    return mvcc_error(e->mvcc, err);
}

/* ------------------------------------------------------------------ */
/* Idempotency checkpoint */

/*
 * The file DATA_DIR/idempotency keeps the remembered Idempotency-Keys of
 * commits whose WAL records the checkpoint may delete (do not change:
 * on-disk format, version 1; integers little-endian):
 *   u32 magic "SIDM", u32 format 1, u64 covered version, u64 count,
 *   count x { u64 tenant_id, i64 expires_ms, u64 version, u64 accepted,
 *             u64 rejected, u16 key_len, key, u32 ndetails,
 *             ndetails x { u64 index, u8 field_len, field, u16 reason_len, reason } },
 *   u32 crc32c of everything before it.
 */
#define IDEM_MAGIC  0x4d444953u /* "SIDM" */
#define IDEM_FORMAT 1u

uint64_t engine__idem_dump(engine *e, uint64_t covered, struct strbuf *out)
{
    uint64_t count = 0;
    size_t count_at;
    uint32_t crc;

    pthread_mutex_lock(&e->idem_lock);

    strbuf_reset(out);
    le_add(out, IDEM_MAGIC, 4);
    le_add(out, IDEM_FORMAT, 4);
    le_add(out, covered, 8);
    count_at = out->len;
    le_add(out, 0, 8);
    for (struct idem_entry *x = e->idem_fifo_head; x; x = x->fnext) {
        size_t kl;

        if (!x->done || x->st != ST_OK || x->version > covered)
            continue;
        kl = strlen(x->key);
        le_add(out, x->tenant_id, 8);
        le_add(out, (uint64_t)x->expires_ms, 8);
        le_add(out, x->version, 8);
        le_add(out, x->accepted, 8);
        le_add(out, x->rejected, 8);
        le_add(out, (uint16_t)kl, 2);
        strbuf_add(out, x->key, kl);
        le_add(out, x->ndetails, 4);
        for (uint32_t i = 0; i < x->ndetails; i++) {
            const struct decode_detail *d = &x->details[i];
            size_t fl = strlen(d->field), rl = strlen(d->reason);

            le_add(out, d->index, 8);
            le_add(out, (uint8_t)fl, 1);
            strbuf_add(out, d->field, fl);
            le_add(out, (uint16_t)rl, 2);
            strbuf_add(out, d->reason, rl);
        }
        count++;
    }
    pthread_mutex_unlock(&e->idem_lock);
    for (int b = 0; b < 8; b++)
        out->buf[count_at + (size_t)b] = (char)(count >> (8 * b));
    crc = crc32c(out->buf, out->len);
    le_add(out, crc, 4);
    return covered;
}

enum st_status engine__idem_load(engine *e, const void *bytes, size_t len, struct err *err)
{
    struct reader r = {bytes, len, false};
    int64_t now = time_wall_ms();
    uint64_t count;
    const uint8_t *tail;

    if (len < 28)
        return err_set(err, ST_ECORRUPT, "idempotency checkpoint: too short");
    tail = (const uint8_t *)bytes + len - 4;
    if (crc32c(bytes, len - 4) != ((uint32_t)tail[0] | (uint32_t)tail[1] << 8 |
                                   (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24))
        return err_set(err, ST_ECORRUPT, "idempotency checkpoint: bad length or checksum");
    r.left = len - 4;
    if (get_le(&r, 4) != IDEM_MAGIC || get_le(&r, 4) != IDEM_FORMAT)
        return err_set(err, ST_ECORRUPT, "idempotency checkpoint: bad magic or format");
    e->idem_version = get_le(&r, 8);
    count = get_le(&r, 8);
    for (uint64_t i = 0; i < count && !r.bad; i++) {
        uint64_t tenant = get_le(&r, 8);
        int64_t expires = (int64_t)get_le(&r, 8);
        uint64_t version = get_le(&r, 8);
        uint64_t accepted = get_le(&r, 8);
        uint64_t rejected = get_le(&r, 8);
        uint16_t kl = (uint16_t)get_le(&r, 2);
        const char *k = take(&r, kl);
        uint32_t nd = (uint32_t)get_le(&r, 4);
        struct decode_detail *d = NULL;
        char key[IDEM_KEY_MAX + 1];
        struct idem_entry *x;

        if (r.bad || !kl || kl > IDEM_KEY_MAX || nd > 100000) {
            r.bad = true;
            break;
        }
        if (nd)
            d = calloc_array(nd, sizeof(*d));
        for (uint32_t j = 0; j < nd && !r.bad; j++) {
            uint8_t fl;
            uint16_t rl;
            const char *f, *rs;

            d[j].index = get_le(&r, 8);
            fl = (uint8_t)get_le(&r, 1);
            f = take(&r, fl);
            rl = (uint16_t)get_le(&r, 2);
            rs = take(&r, rl);
            if (r.bad || fl >= sizeof(d[j].field) || rl >= sizeof(d[j].reason))
                r.bad = true;
            else {
                memcpy(d[j].field, f, fl);
                memcpy(d[j].reason, rs, rl);
            }
        }
        memcpy(key, k ? k : "", k ? kl : 0);
        key[k ? kl : 0] = '\0';
        if (r.bad || expires <= now || idem_find(e, tenant, key)) {
            free(d);
            continue;
        }
        x = idem_insert(e, tenant, key, expires);
        x->done = true;
        x->st = ST_OK;
        x->version = version;
        x->accepted = accepted;
        x->rejected = rejected;
        x->details = d;
        x->ndetails = nd;
    }
    if (r.bad || r.left)
        return err_set(err, ST_ECORRUPT, "idempotency checkpoint: malformed entry");
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Recovery */

struct replay_ctx {
    engine *e;
    uint64_t max_version; /* newest version seen */
    uint64_t records;     /* records applied */
    uint64_t skipped;     /* data of tables that no longer exist */
    int64_t now_ms;       /* for idempotency expiry */
    uint64_t flushed;     /* commits <= this are in segments: not put again */
    struct strbuf kbuf;   /* key scratch */
};

/* Replays the ops of a transaction; ops on deleted tables are skipped. */
static enum st_status replay_mixed(struct replay_ctx *c, const struct wal_record *rec,
                                   struct reader *r, uint64_t count, struct err *err)
{
    engine *e = c->e;
    struct catalog_snap *snap = catalog_acquire(e->cat);

    for (uint64_t i = 0; i < count && !r->bad; i++) {
        uint8_t op = (uint8_t)get_le(r, 1);
        uint64_t tid = get_le(r, 8);
        uint32_t sv = (uint32_t)get_le(r, 4);
        uint32_t len = (uint32_t)get_le(r, 4);
        const uint8_t *bytes = take(r, len);
        const struct catalog_table *tb = catalog_find_table_by_id(snap, tid);
        const struct schema *s = tb ? catalog_table_schema_version(tb, sv) : NULL;

        if (r->bad || !len || (op != ENGINE_TXN_UPSERT && op != ENGINE_TXN_DELETE) ||
            (op == ENGINE_TXN_UPSERT && (len < 4 || schema_row_len(bytes) != len))) {
            r->bad = true;
            break;
        }
        if (!s) {
            c->skipped++;
            continue;
        }
        if (rec->version <= c->flushed)
            continue;
        if (op == ENGINE_TXN_UPSERT)
            put_row(e, rec->version, (uint32_t)tid, s, bytes, 0, &c->kbuf);
        else
            put_one(e, rec->version, (uint32_t)tid, sv, bytes, len, key_hash(bytes, len), NULL, 0,
                    NULL);
    }
    catalog_release(snap);
    if (r->bad || r->left)
        return err_set(err, ST_ECORRUPT, "transaction record at version %llu is malformed",
                       (unsigned long long)rec->version);
    maybe_rotate_memtable(e);
    return ST_OK;
}

static enum st_status replay_data(struct replay_ctx *c, const struct wal_record *rec,
                                  struct err *err)
{
    engine *e = c->e;
    struct reader r = {rec->payload, rec->len, false};
    struct catalog_snap *snap;
    const struct catalog_table *tb;
    const struct schema *s;
    uint8_t format = (uint8_t)get_le(&r, 1);
    uint8_t kind = (uint8_t)get_le(&r, 1);
    uint16_t idem_len = (uint16_t)get_le(&r, 2);
    uint32_t schema_version = (uint32_t)get_le(&r, 4);
    uint64_t table_id = get_le(&r, 8);
    int64_t wall_ms = (int64_t)get_le(&r, 8);
    uint64_t count = get_le(&r, 8);
    uint64_t rejected = get_le(&r, 8);
    uint32_t ndetails = (uint32_t)get_le(&r, 4);
    const char *idem = take(&r, idem_len);
    struct decode_detail *details = NULL;
    enum st_status rc = ST_OK;

    if (r.bad || format != BATCH_FORMAT ||
        (kind != BATCH_UPSERT && kind != BATCH_DELETE && kind != BATCH_MIXED) || ndetails > 100000)
        return err_set(err, ST_ECORRUPT, "data record at version %llu has a bad header",
                       (unsigned long long)rec->version);
    if (ndetails)
        details = calloc_array(ndetails, sizeof(*details));
    for (uint32_t i = 0; i < ndetails && !r.bad; i++) {
        uint8_t fl;
        uint16_t rl;
        const char *f;
        const char *rs;

        details[i].index = get_le(&r, 8);
        fl = (uint8_t)get_le(&r, 1);
        f = take(&r, fl);
        rl = (uint16_t)get_le(&r, 2);
        rs = take(&r, rl);
        if (r.bad || fl >= sizeof(details[i].field) || rl >= sizeof(details[i].reason))
            r.bad = true;
        else {
            memcpy(details[i].field, f, fl);
            memcpy(details[i].reason, rs, rl);
        }
    }
    if (r.bad) {
        rc = err_set(err, ST_ECORRUPT, "data record at version %llu has bad details",
                     (unsigned long long)rec->version);
        goto out;
    }

    if (kind == BATCH_MIXED) {
        rc = replay_mixed(c, rec, &r, count, err);
        goto out;
    }
    snap = catalog_acquire(e->cat);
    tb = catalog_find_table_by_id(snap, table_id);
    s = tb ? catalog_table_schema_version(tb, schema_version) : NULL;
    if (!s) {
        /* The table was deleted after this write: its data is gone. */
        c->skipped++;
        catalog_release(snap);
        goto out;
    }
    for (uint64_t i = 0; i < count; i++) {
        if (kind == BATCH_UPSERT) {
            const uint8_t *row = r.p;
            uint32_t rl;

            if (r.left < 4 || (rl = schema_row_len(row)) < 4 || rl > r.left) {
                r.bad = true;
                break;
            }
            take(&r, rl);
            if (rec->version > c->flushed)
                put_row(e, rec->version, (uint32_t)table_id, s, row, 0, &c->kbuf);
        } else {
            uint32_t kl = (uint32_t)get_le(&r, 4);
            const uint8_t *k = take(&r, kl);

            if (!k || !kl) {
                r.bad = true;
                break;
            }
            if (rec->version > c->flushed)
                put_one(e, rec->version, (uint32_t)table_id, s->version, k, kl, key_hash(k, kl),
                        NULL, 0, NULL);
        }
    }
    catalog_release(snap);
    if (r.bad || r.left) {
        rc = err_set(err, ST_ECORRUPT, "data record at version %llu has bad rows",
                     (unsigned long long)rec->version);
        goto out;
    }
    maybe_rotate_memtable(e);
    if (idem_len && wall_ms + (int64_t)e->opts.idempotency_window_ms > c->now_ms) {
        char key[IDEM_KEY_MAX + 1];
        struct idem_entry *x;

        memcpy(key, idem, ST_MIN((size_t)idem_len, sizeof(key) - 1));
        key[ST_MIN((size_t)idem_len, sizeof(key) - 1)] = '\0';
        if (idem_find(e, catalog_table_tenant_id(tb), key))
            goto out; /* loaded from the idempotency checkpoint */
        x = idem_insert(e, catalog_table_tenant_id(tb), key,
                        wall_ms + (int64_t)e->opts.idempotency_window_ms);
        x->done = true;
        x->version = rec->version;
        x->accepted = count;
        x->rejected = rejected;
        x->details = details;
        x->ndetails = ndetails;
        details = NULL;
    }
out:
    free(details);
    return rc;
}

static enum st_status replay_one(void *arg, const struct wal_record *rec)
{
    struct replay_ctx *c = arg;
    struct err err;
    enum st_status rc = ST_OK;

    err_clear(&err);
    if (rec->version > c->max_version)
        c->max_version = rec->version;
    switch (rec->type) {
    case WAL_REC_CATALOG:
        rc = catalog_apply(c->e->cat, rec->payload, rec->len, rec->version, &err);
        if (rc == ST_ECORRUPT) {
            log_error("engine replay: catalog record at version %llu: %s",
                      (unsigned long long)rec->version, err.msg);
            return rc;
        }
        rc = ST_OK; /* an op that no longer applies was skipped live too */
        break;
    case WAL_REC_DATA:
        rc = replay_data(c, rec, &err);
        if (rc) {
            log_error("engine replay: %s", err.msg);
            return rc;
        }
        break;
    default:
        break;
    }
    c->records++;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Open and close */

static void declare_metrics(engine *e)
{
    struct metrics *m = e->opts.metrics;

    if (!m)
        return;
    e->m_records = metrics_counter(m, "strata_ingest_records_total",
                                   "Records committed by ingest, per tenant.", "tenant");
    e->m_bytes = metrics_counter(m, "strata_ingest_bytes_total",
                                 "Request body bytes of committed ingests, per tenant.", "tenant");
    e->m_rejected = metrics_counter(m, "strata_ingest_rejected_total",
                                    "Records refused by ingest validation, per tenant.", "tenant");
    e->m_commits = metric_series_get(
        metrics_counter(m, "strata_commits_total", "Commits made durable.", NULL));
    e->m_mem_bytes = metric_series_get(
        metrics_gauge(m, "strata_memtable_bytes", "Bytes held by the active memtable.", NULL));
    e->m_frozen = metric_series_get(metrics_gauge(m, "strata_memtables_frozen",
                                                  "Frozen memtables waiting to be flushed.", NULL));
    e->m_version = metric_series_get(
        metrics_gauge(m, "strata_visible_version", "The newest visible commit version.", NULL));
    e->m_readonly = metric_series_get(metrics_gauge(
        m, "strata_read_only", "1 when a storage failure made the server read-only.", NULL));
    e->m_snapshots = metric_series_get(metrics_gauge(
        m, "strata_snapshots_held", "Snapshots held by clients (POST .../snapshots).", NULL));
}

static char *path_join(const char *dir, const char *name)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "%s/%s", dir, name);
    return strbuf_detach(&sb, NULL);
}

/* Frees what engine_open() built; the WAL must be closed (or never opened). */
static void engine_free(engine *e)
{
    engine__store_stop(e);
    engine__store_free(e);
    if (e->active)
        memtable_unref(e->active);
    for (size_t i = 0; i < e->nfrozen; i++)
        memtable_unref(e->frozen[i]);
    free(e->frozen);
    if (e->mvcc)
        mvcc_free(e->mvcc);
    if (e->cat)
        catalog_free(e->cat);
    idem_expire(e, INT64_MAX);
    free(e->idem_tab);
    decode_result_release(&e->dec);
    free(e->rates);
    pthread_mutex_destroy(&e->cq_lock);
    pthread_mutex_destroy(&e->mt_lock);
    pthread_mutex_destroy(&e->idem_lock);
    pthread_mutex_destroy(&e->flush_lock);
    pthread_mutex_destroy(&e->store_lock);
    free(e->frozen_upto);
    free(e->data_dir);
    free(e->wal_dir);
    free(e->catalog_path);
    free(e);
}

enum st_status engine_open(const struct engine_opts *opts, engine **out, struct err *err)
{
    engine *e = xcalloc(1, sizeof(*e));
    struct wal_options wo;
    struct memtable_opts mo;
    struct replay_ctx rc_ctx;
    enum st_status rc;
    uint64_t start = time_mono_ns();

    st_assert(opts->post);
    e->opts = *opts;
    e->data_dir = xstrdup(opts->data_dir);
    e->opts.data_dir = e->data_dir;
    e->wal_dir = path_join(e->data_dir, "wal");
    e->catalog_path = path_join(e->data_dir, "catalog.json");
    e->fs = opts->fs ? opts->fs : fs_posix();
    e->max_frozen = opts->max_frozen ? opts->max_frozen : MAX_FROZEN_DEFAULT;
    if (!e->opts.memtable_size)
        e->opts.memtable_size = 64u << 20;
    if (!e->opts.max_body_bytes)
        e->opts.max_body_bytes = 64u << 20;
    if (!e->opts.idempotency_max_keys)
        e->opts.idempotency_max_keys = 1000000;
    pthread_mutex_init(&e->cq_lock, NULL);
    pthread_mutex_init(&e->mt_lock, NULL);
    pthread_mutex_init(&e->idem_lock, NULL);
    pthread_mutex_init(&e->flush_lock, NULL);
    pthread_mutex_init(&e->store_lock, NULL);
    decode_result_init(&e->dec);
    declare_metrics(e);

    rc = catalog_load(e->fs, e->catalog_path, &e->cat, err);
    if (rc == ST_ENOTFOUND) {
        e->cat = catalog_new();
        rc = ST_OK;
    }
    if (rc)
        goto err_free;
    engine__memtable_opts(e, &mo);
    e->active = memtable_new(&mo);
    /* Replay puts rows into memtables, which need no mvcc until the end. */
    e->mvcc = mvcc_new(0, NULL);
    /* Segments, the idempotency checkpoint: what the WAL need not replay. */
    rc = engine__store_open(e, err);
    if (rc)
        goto err_free;

    memset(&wo, 0, sizeof(wo));
    wo.dir = e->wal_dir;
    wo.fs = e->fs;
    wo.file_size = opts->wal_file_size;
    wo.max_record = (uint32_t)ST_MIN(e->opts.max_body_bytes * 2 + (1u << 20), WAL_MAX_RECORD_LIMIT);
    wo.sync = opts->sync == ENGINE_SYNC_ALWAYS     ? WAL_SYNC_ALWAYS
              : opts->sync == ENGINE_SYNC_INTERVAL ? WAL_SYNC_INTERVAL
                                                   : WAL_SYNC_NEVER;
    wo.sync_interval_ms = opts->sync_interval_ms ? opts->sync_interval_ms : 10;
    wo.metrics = opts->metrics;
    wo.truncate_on_corruption = opts->truncate_corrupt_wal;
    wo.group_done = wal_group_done;
    wo.group_done_arg = e;
    memset(&rc_ctx, 0, sizeof(rc_ctx));
    rc_ctx.e = e;
    rc_ctx.now_ms = time_wall_ms();
    {
        struct catalog_snap *snap = catalog_acquire(e->cat);

        const struct manifest_version *mv = manifest_acquire(e->man);

        rc_ctx.max_version = ST_MAX(catalog_snap_version(snap), mv->flushed_version);
        rc_ctx.max_version = ST_MAX(rc_ctx.max_version, e->idem_version);
        rc_ctx.flushed = mv->flushed_version;
        catalog_release(snap);
        manifest_version_release(mv);
    }
    strbuf_init(&rc_ctx.kbuf, KEY_BUF);
    rc = wal_open(&wo, replay_one, &rc_ctx, &e->wal, err);
    strbuf_release(&rc_ctx.kbuf);
    if (rc)
        goto err_free;
    mvcc_free(e->mvcc);
    e->mvcc = mvcc_new(rc_ctx.max_version, NULL);
    {
        const struct manifest_version *mv = manifest_acquire(e->man);

        mvcc_set_floor(e->mvcc, mv->floor);
        manifest_version_release(mv);
    }
    engine__store_start(e);
    update_gauges(e);
    log_info("engine recovered records=%llu skipped=%llu version=%llu frozen=%zu ms=%llu",
             (unsigned long long)rc_ctx.records, (unsigned long long)rc_ctx.skipped,
             (unsigned long long)rc_ctx.max_version, e->nfrozen,
             (unsigned long long)((time_mono_ns() - start) / 1000000));
    *out = e;
    return ST_OK;

err_free:
    engine_free(e);
    return rc;
}

enum st_status engine_close(engine *e, struct err *err)
{
    enum st_status rc;
    struct catalog_snap *snap;

    pthread_mutex_lock(&e->cq_lock);
    e->closing = true;
    pthread_mutex_unlock(&e->cq_lock);
    /* Background jobs end first: they post to the loop and use the WAL. */
    engine__store_stop(e);
    /* wal_close() completes every queued record; answer them here. */
    rc = wal_close(e->wal, err);
    e->wal = NULL;
    drain(e);
    st_assert(!e->wait_head);
    while (e->cc_head) {
        struct cat_change *c = e->cc_head;
        struct err cerr;

        e->cc_head = c->next;
        err_set(&cerr, ST_ESHUTDOWN, "the server is shutting down");
        answer_now(c->done, c->arg, ST_ESHUTDOWN, &cerr);
        catalog_op_release(&c->op);
        free(c);
    }
    if (rc == ST_OK && mvcc_error(e->mvcc, NULL) == ST_OK) {
        snap = catalog_acquire(e->cat);
        rc = catalog_save(snap, e->fs, e->catalog_path, err);
        catalog_release(snap);
    }
    engine_free(e);
    return rc;
}

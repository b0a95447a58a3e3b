/*
 * engine: the one facade for storage.
 *
 * Everything the HTTP handlers (src/api) do with data goes through this
 * header: the catalog (tenants, keys, tables), writes (ingest, deletes,
 * transactions), reads (point reads, the current version) and status.
 * Behind it sit the catalog, the WAL, MVCC, the memtables and the ingest
 * decoder; none of their headers is needed by a caller.
 *
 * THREADS. Every function here is called on one thread, the caller's loop
 * thread. Writes return at once; their completion callback runs later on
 * that same thread, delivered through opts.post (the server implements it
 * with a libevent event made active from the WAL's writer thread). The
 * engine never includes libevent.
 *
 * WRITES. A write is validated against the current catalog, given the
 * next commit version, applied to the memtable (invisible to readers until
 * durable), appended to the WAL, and acknowledged once the WAL reports the
 * fsync that covers it and every older commit is durable too, so a client
 * can read at the version it was given. Catalog changes take the same
 * path one at a time, so each client gets its exact error (a duplicate
 * name, say) before anything is logged.
 *
 * FAILURE. A failed WAL write or fsync makes the engine read-only until
 * restart: every later write fails with ST_EIO, engine_health() reports
 * it, reads go on. Nothing is acknowledged that is not durable.
 *
 * MEMORY. The active memtable is frozen at opts.memtable_size; frozen
 * memtables stay in memory until segments take them over. When
 * opts.max_frozen are held, writes fail with ST_EAGAIN (the API answers
 * 503 with Retry-After) instead of growing memory without bound.
 */
#ifndef ST_ENGINE_ENGINE_H
#define ST_ENGINE_ENGINE_H

#include "engine/catalog.h"
#include "engine/decode.h"
#include "engine/schema.h"
#include "util/status.h"

struct fs;
struct metrics;

typedef struct engine engine;

/* Runs fn(arg) on the caller's loop thread, soon. Thread-safe. */
typedef void (*engine_post_fn)(void *ctx, void (*fn)(void *arg), void *arg);

enum engine_sync {
    ENGINE_SYNC_ALWAYS = 0, /* fsync before acknowledging */
    ENGINE_SYNC_INTERVAL,   /* fsync every sync_interval_ms */
    ENGINE_SYNC_NEVER,      /* never fsync (benchmarks only) */
};

struct engine_opts {
    const char *data_dir;           /* the whole state; must exist */
    struct fs *fs;                  /* file operations; NULL for POSIX */
    enum engine_sync sync;          /* WAL durability */
    uint32_t sync_interval_ms;      /* for ENGINE_SYNC_INTERVAL */
    uint64_t wal_file_size;         /* WAL files rotate here; 0: default */
    uint64_t memtable_size;         /* freeze the active memtable at this size */
    uint32_t max_frozen;            /* frozen memtables before ST_EAGAIN; 0: 4 */
    uint64_t idempotency_window_ms; /* how long Idempotency-Key answers live */
    uint64_t idempotency_max_keys;  /* most keys remembered; 0: 1000000 */
    bool truncate_corrupt_wal;      /* cut the WAL at mid-log damage */
    uint32_t max_tenants;           /* creates past these get ST_EQUOTA; */
    uint32_t max_tables_per_tenant; /* 0 means no limit */
    uint32_t max_keys_per_tenant;
    uint32_t max_schema_versions;   /* per table */
    uint64_t max_body_bytes; /* largest write; sizes the WAL record limit */
    struct metrics *metrics; /* registry; may be NULL */
    engine_post_fn post;     /* completions to the loop thread */
    void *post_ctx;          /* its context */
};

/*
 * Opens the data directory: loads the catalog checkpoint, replays the WAL
 * (cutting a torn tail; a corrupt record in the middle is ST_ECORRUPT
 * naming file and offset) and rebuilds memtables and the idempotency
 * table. Caller frees with engine_close().
 */
enum st_status engine_open(const struct engine_opts *opts, engine **out, struct err *err);

/*
 * Waits for writes in flight to become durable (their callbacks run from
 * here), then closes the WAL. Returns the WAL's sticky error, if any.
 */
enum st_status engine_close(engine *e, struct err *err);

/* ST_OK while writes are accepted; ST_EIO (read-only) after a WAL failure. */
enum st_status engine_health(engine *e, struct err *err);

/* The newest visible commit version. */
uint64_t engine_version(engine *e);

/* ------------------------------------------------------------------ */
/* Catalog */

/* The current catalog; release with catalog_release(). */
struct catalog_snap *engine_catalog(engine *e);

struct engine_result {
    enum st_status st; /* ST_OK when committed */
    struct err err;    /* the reason otherwise */
    uint64_t version;  /* the commit version, when committed */
};

typedef void (*engine_done_fn)(void *arg, const struct engine_result *res);

/*
 * Checks op against the catalog and makes it durable; done runs once it
 * is applied (res->version is its commit version) or has failed. Takes
 * ownership of op's contents (the caller's struct is left empty). A check
 * failure (ST_EINVAL, ST_EEXIST, ST_ENOTFOUND) is reported through done
 * like any other, never by the return value, which is ST_OK.
 */
enum st_status engine_catalog_change(engine *e, struct catalog_op *op, engine_done_fn done,
                                     void *arg);

/* ------------------------------------------------------------------ */
/* Writes */

struct engine_ingest_opts {
    enum decode_format format;   /* NDJSON or a JSON array */
    bool partial;                /* ?mode=partial: commit the valid records */
    const char *idempotency_key; /* Idempotency-Key, or NULL */
};

struct engine_ingest_result {
    struct engine_result r;              /* status, error, version */
    uint64_t accepted;                   /* records committed */
    uint64_t rejected;                   /* records refused */
    const struct decode_detail *details; /* ndetails per-record errors */
    uint32_t ndetails;                   /* at most DECODE_MAX_DETAILS */
    uint32_t retry_after_s;              /* ST_EBUSY: over the tenant's
                                          * max_records_per_sec quota; retry
                                          * after this many seconds */
    bool replayed;                       /* the result of an earlier request with
                                          * the same Idempotency-Key: nothing was
                                          * written now */
    size_t err_offset;                   /* ST_EINVAL on bad JSON: byte offset */
    uint32_t err_line;                   /* ... line, from 1 */
    uint32_t err_column;                 /* ... column, from 1 */
};

typedef void (*engine_ingest_fn)(void *arg, const struct engine_ingest_result *res);

/*
 * Upserts the records of body (len bytes, borrowed until done runs) into
 * tenant's table. Atomic unless opts->partial: with any bad record nothing
 * is written and res->r.st is ST_EINVAL with the details. done always
 * runs exactly once, on the loop thread; pointers in res are valid only
 * during the call. A tenant over its max_records_per_sec quota gets
 * ST_EBUSY with retry_after_s (a token bucket holding one second of the
 * quota; a batch larger than that passes when the bucket is full and
 * leaves it in debt). A request with an Idempotency-Key that committed within
 * opts.idempotency_window_ms gets that commit's result again (replayed),
 * also after a restart: the key and the result are part of the WAL record.
 */
void engine_ingest(engine *e, const char *tenant, const char *table, const char *body, size_t len,
                   const struct engine_ingest_opts *opts, engine_ingest_fn done, void *arg);

/*
 * Deletes the record with the given primary key (one text value per key
 * field, in key order, as they come from the URL path). ST_EINVAL when a
 * value does not parse as its field's type; deleting a missing record is
 * not an error (it writes a tombstone).
 */
void engine_delete(engine *e, const char *tenant, const char *table, const char *const *key,
                   size_t nkey, engine_done_fn done, void *arg);

/*
 * Transactions: conditions and operations on keys of one tenant's tables,
 * committed atomically at one version with snapshot isolation, first
 * committer wins. Keys are given as text values in primary-key order, as
 * for engine_delete(); upserted records as JSON object text.
 */
struct engine_txn_key {
    const char *table;      /* table name */
    const char *const *key; /* key field values as text, in key order */
    size_t nkey;            /* entries in key */
};

struct engine_txn_cond {
    struct engine_txn_key k; /* the record */
    int exists;              /* 1: must exist, 0: must not, -1: no check */
    bool has_version_le;     /* check version_le */
    uint64_t version_le;     /* the record's version must be <= this (a
                              * missing record counts as version 0) */
};

enum engine_txn_op_type {
    ENGINE_TXN_UPSERT = 1,
    ENGINE_TXN_DELETE = 2,
};

struct engine_txn_op {
    enum engine_txn_op_type op; /* upsert or delete */
    struct engine_txn_key k;    /* delete: the key; upsert: k.table only */
    const char *record;         /* upsert: one JSON object */
    size_t record_len;          /* its length */
};

struct engine_txn {
    bool has_read_version;               /* conflict check against read_version */
    uint64_t read_version;               /* the snapshot the client read at */
    const struct engine_txn_cond *conds; /* nconds conditions */
    size_t nconds;
    const struct engine_txn_op *ops; /* nops operations */
    size_t nops;
};

/* Where a transaction failed: a condition or an op, by index. */
struct engine_txn_conflict {
    bool is_cond; /* conds[index], else ops[index] */
    size_t index; /* into conds or ops */
};

struct engine_txn_result {
    struct engine_result r;                      /* ST_OK, or the failure */
    const struct engine_txn_conflict *conflicts; /* ST_ECONFLICT: what failed */
    size_t nconflicts;
    const struct decode_detail *details; /* ST_EINVAL on a bad record:
                                          * index is the op's index */
    uint32_t ndetails;
};

typedef void (*engine_txn_fn)(void *arg, const struct engine_txn_result *res);

/*
 * Runs t for tenant. Conditions are checked, and read_version conflicts
 * looked for, against every commit applied so far (durable or about to
 * be): a commit that wins the race is seen. ST_ECONFLICT lists every
 * failed condition and every written key committed after read_version;
 * ST_EINVAL a bad key, table name or record (details); ST_ENOTFOUND an
 * unknown tenant or table. Nothing is written unless everything holds.
 * t and its strings are borrowed for the call only.
 */
void engine_txn(engine *e, const char *tenant, const struct engine_txn *t, engine_txn_fn done,
                void *arg);

/* ------------------------------------------------------------------ */
/* Reads */

struct engine_record {
    uint64_t version;             /* the snapshot read */
    uint64_t record_version;      /* the commit that wrote the value */
    const struct schema *schema;  /* the row's schema version */
    const struct schema *current; /* the table's newest schema */
    const void *row;              /* the row (schema.h format) */
    struct catalog_snap *snap;    /* keeps schema and current alive */
    void *priv;                   /* keeps row alive */
};

/*
 * Reads the record with the given primary key (as engine_delete) at
 * as_of (0: the newest visible version). ST_ENOTFOUND for no such
 * tenant, table or record; ST_EINVAL for a key that does not parse or an
 * as_of newer than the newest visible version; ST_ECONFLICT
 * ("snapshot_too_old") for an as_of no longer retained. Release out with
 * engine_record_release().
 */
enum st_status engine_get(engine *e, const char *tenant, const char *table, const char *const *key,
                          size_t nkey, uint64_t as_of, struct engine_record *out, struct err *err);
void engine_record_release(struct engine_record *rec);

#endif

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
 * MEMORY. The active memtable is frozen at opts.memtable_size and handed
 * to the flush job, which writes it to segments on a worker thread
 * (engine_store.c). When opts.max_frozen are waiting, writes fail with
 * ST_EAGAIN (the API answers 503 with Retry-After) instead of growing
 * memory without bound.
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
    uint32_t max_schema_versions;    /* per table */
    uint64_t max_body_bytes;         /* largest write; sizes the WAL record limit */
    uint64_t history_retention_ms;   /* versions older than this (and not held by
                                      * a snapshot) may be dropped; 0: keep only
                                      * what held snapshots need */
    uint32_t job_threads;            /* background worker threads; 0: 1 */
    uint32_t flush_interval_ms;      /* flush check period; 0: 1000 */
    uint32_t compact_interval_ms;    /* compaction check period; 0: 10000 */
    uint32_t checkpoint_interval_ms; /* checkpoint and WAL trim period; 0: 60000 */
    uint32_t compact_fanout;         /* segments of a tier merged at once; 0: 4 */
    uint64_t compact_base_bytes;     /* tier 0 size; 0: 4 MiB */
    uint32_t compact_max_segments;   /* per table before a forced merge; 0: 24 */
    bool manual_jobs;                /* tests: no timers, and compaction only
                                      * on demand (the calls below); a full
                                      * memtable is still flushed */
    struct metrics *metrics;         /* registry; may be NULL */
    engine_post_fn post;             /* completions to the loop thread */
    void *post_ctx;                  /* its context */
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
/* Background work: flush, compaction, checkpoint */

struct engine_job_result {
    enum st_status st;          /* ST_OK, or the first failure */
    struct err err;             /* its reason */
    uint64_t memtables_flushed; /* memtables written to segments */
    uint64_t segments_written;  /* segments created (flush and compaction) */
    uint64_t segments_removed;  /* segments deleted (merged or dropped) */
    uint64_t bytes_read;        /* segment bytes read by compaction */
    uint64_t bytes_written;     /* segment bytes written (a backup: bytes copied) */
    uint64_t versions_dropped;  /* versions, tombstones and expired rows dropped */
    uint64_t wal_files_removed; /* by the checkpoint */
    uint64_t files_copied;      /* by a backup */
    uint64_t elapsed_ms;        /* wall time of the work */
};

typedef void (*engine_job_fn)(void *arg, const struct engine_job_result *res);

/*
 * Compacts every table of tenant (NULL: every tenant) named table (NULL:
 * every table) into one segment each, dropping what no reader can see
 * (after flushing the memtables, so that everything written before the
 * call is included). done runs on the loop thread. ST_ENOTFOUND through
 * done for an unknown tenant or table.
 */
void engine_compact(engine *e, const char *tenant, const char *table, engine_job_fn done,
                    void *arg);

/*
 * Freezes the active memtable, flushes every memtable to segments,
 * checkpoints the catalog and the idempotency keys and deletes the WAL
 * files that are no longer needed. done runs on the loop thread.
 */
void engine_checkpoint(engine *e, engine_job_fn done, void *arg);

/*
 * Copies the data directory, consistently, into a new directory path
 * (absolute; its parent must exist) while reads and writes go on; a
 * server started on path recovers the state as of some moment during the
 * copy, with every write acknowledged before the call. done runs on the
 * loop thread: ST_EEXIST when path exists, ST_EINVAL when it is not
 * absolute, ST_EIO on a copy failure (the partial copy is left).
 */
void engine_backup(engine *e, const char *path, engine_job_fn done, void *arg);

/* What is stored, for /v1/admin/status. */
struct engine_storage_stats {
    uint64_t segments;       /* live segments */
    uint64_t segment_bytes;  /* their bytes on disk */
    uint64_t rows_stored;    /* entries in them (every version) */
    uint64_t memtables;      /* active + frozen */
    uint64_t memtable_bytes; /* their bytes */
    uint64_t wal_bytes;      /* WAL files on disk */
    uint64_t flushed_version;
    uint64_t floor;             /* versions below are no longer readable */
    int64_t last_checkpoint_ms; /* wall time, 0: none yet */
};
void engine_storage_stats(engine *e, struct engine_storage_stats *out);

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

/*
 * Scans: the rows of one table on one snapshot, in primary-key order,
 * merged from the memtables and the segments, deletes removed, for the
 * query executor (engine/query.h). A scan pins what it reads (catalog
 * snapshot, memtables, manifest version), so writes, flushes and
 * compactions may go on while it runs; it reads lazily, a block at a
 * time, so it can be stepped from the loop thread in bounded slices.
 */
struct query_key_range;
struct query_time_range;
struct query_source;

struct engine_scan_opts {
    uint64_t as_of;                      /* 0: the newest visible version */
    const struct query_key_range *keys;  /* primary-key bounds, or NULL */
    const struct query_time_range *time; /* time-field bounds, or NULL: used
                                          * to skip segments and blocks; rows
                                          * outside may still be yielded */
    const bool *fields;                  /* fields of the newest schema the
                                          * reader uses (one entry each), or
                                          * NULL: all; rows from segments may
                                          * leave the others null (the key is
                                          * always there) */
    const void *after;                   /* resume strictly after this encoded
                                          * key (a cursor), or NULL */
    size_t after_len;                    /* its length */
};

struct engine_scan_stats {
    uint64_t rows_scanned;      /* rows yielded to the query */
    uint64_t segments_total;    /* segments of the table in the pinned manifest */
    uint64_t segments_skipped;  /* left unread by their key or time statistics */
    uint64_t blocks_read;       /* segment blocks read and decoded */
    uint64_t blocks_skipped;    /* left unread by their statistics */
    uint64_t memtables;         /* memtables read */
    uint64_t memtables_skipped; /* left unread: no row in the time range */
};

struct engine_scan;

/*
 * Opens a scan of tenant's table. ST_ENOTFOUND for no such tenant or
 * table; ST_EINVAL for an as_of newer than the visible version;
 * ST_ECONFLICT ("snapshot_too_old") for one no longer retained. Read
 * errors (ST_ECORRUPT, ST_EIO) surface through the source's status().
 */
enum st_status engine_scan_open(engine *e, const char *tenant, const char *table,
                                const struct engine_scan_opts *opts, struct engine_scan **out,
                                struct err *err);
/* The row source for query_exec_new(); valid until engine_scan_close(). */
void engine_scan_source(struct engine_scan *s, struct query_source *out);
/* The snapshot version the scan reads. */
uint64_t engine_scan_version(const struct engine_scan *s);
/* The table's newest schema (alive until close), its id and its tenant's id. */
const struct schema *engine_scan_schema(const struct engine_scan *s);
uint64_t engine_scan_table_id(const struct engine_scan *s);
uint64_t engine_scan_tenant_id(const struct engine_scan *s);
void engine_scan_get_stats(const struct engine_scan *s, struct engine_scan_stats *out);
/* s may be NULL. */
void engine_scan_close(struct engine_scan *s);

/* ------------------------------------------------------------------ */
/* Held snapshots (per tenant) */

struct engine_snapshot {
    uint64_t id;        /* never 0 */
    uint64_t version;   /* the version it pins */
    int64_t expires_ms; /* wall-clock expiry */
};

/*
 * Holds the visible version for tenant for ttl_ms. ST_ENOTFOUND for no
 * such tenant; ST_EINVAL for ttl_ms <= 0; ST_EBUSY when too many are held.
 */
enum st_status engine_snapshot_hold(engine *e, const char *tenant, int64_t ttl_ms,
                                    struct engine_snapshot *out, struct err *err);
/* Releases tenant's snapshot id; ST_ENOTFOUND when tenant holds none such. */
enum st_status engine_snapshot_release(engine *e, const char *tenant, uint64_t id, struct err *err);

/*
 * 32 secret bytes of this data directory (generated at first start,
 * kept in DATA_DIR/secret with mode 0600): a key for MACs over cursors.
 */
const uint8_t *engine_secret(engine *e);
#define ENGINE_SECRET_LEN 32

#endif

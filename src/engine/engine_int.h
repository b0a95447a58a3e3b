/*
 * engine_int: what the engine's source files share (engine.c: writes,
 * recovery, catalog changes; engine_read.c: point reads, scans,
 * snapshots; engine_store.c: flush, compaction, checkpoint on the jobs
 * pool). Not for use outside src/engine.
 */
#ifndef ST_ENGINE_ENGINE_INT_H
#define ST_ENGINE_ENGINE_INT_H

#include <pthread.h>

#include "engine/decode.h"
#include "engine/engine.h"
#include "engine/manifest.h"
#include "engine/memtable.h"
#include "util/strbuf.h"

struct catalog;
struct wal;
struct mvcc;
struct pending;
struct cat_change;
struct idem_entry;
struct rate_bucket;
struct metric;
struct metric_series;
struct jobs;
struct jobs_task;
struct engine__compact_req;

/* Segment bytes of one tenant. */
struct engine__usage {
    uint64_t tenant_id;
    uint64_t bytes;
};

/* Retention compactions are rate limited per table. */
struct engine__retention_mark {
    uint64_t table_id;
    int64_t last_ms;
};
struct engine__store_metrics;

struct engine {
    struct engine_opts opts;   /* as opened; strings below are owned */
    char *data_dir;            /* opts.data_dir */
    char *wal_dir;             /* DATA_DIR/wal */
    char *catalog_path;        /* DATA_DIR/catalog.json */
    struct fs *fs;             /* file operations */
    struct catalog *cat;       /* tenants, keys, tables */
    struct wal *wal;           /* the log */
    struct mvcc *mvcc;         /* versions and visibility */
    struct memtable *active;   /* takes writes */
    struct memtable **frozen;  /* newest last; read-only */
    size_t nfrozen;            /* entries in frozen */
    size_t max_frozen;         /* writes get ST_EAGAIN at this many */
    struct pending *wait_head; /* commits not yet answered, version order */
    struct pending *wait_tail;
    pthread_mutex_t cq_lock; /* guards the three fields below */
    struct pending *cq_head; /* completed by the WAL, not yet drained */
    struct pending *cq_tail;
    bool cq_posted;             /* a drain is scheduled */
    struct cat_change *cc_head; /* catalog changes waiting for their turn */
    struct cat_change *cc_tail;
    bool cc_busy;                 /* a catalog change is in flight */
    struct idem_entry **idem_tab; /* hash table */
    size_t idem_cap;              /* buckets, a power of two */
    size_t idem_count;            /* entries */
    struct idem_entry *idem_fifo_head;
    struct idem_entry *idem_fifo_tail;
    uint64_t idem_evicted;     /* keys forgotten early for the limit */
    struct decode_result dec;  /* reused decoder output */
    struct rate_bucket *rates; /* open addressing by tenant id */
    size_t rates_cap;          /* slots, a power of two */
    size_t rates_used;         /* slots in use */
    bool closing;              /* engine_close() has begun */
    struct metric *m_records;  /* strata_ingest_records_total{tenant} */
    struct metric *m_bytes;    /* strata_ingest_bytes_total{tenant} */
    struct metric *m_rejected; /* strata_ingest_rejected_total{tenant} */
    struct metric_series *m_commits;
    struct metric_series *m_mem_bytes;
    struct metric_series *m_frozen;
    struct metric_series *m_version;
    struct metric_series *m_readonly;
    struct metric_series *m_snapshots;
    /* Storage: segments, background jobs (engine_store.c) */
    pthread_mutex_t mt_lock;        /* guards frozen/nfrozen/frozen_upto and the
                                     * active pointer against readers on other
                                     * threads; the loop thread writes them, the
                                     * flush job removes flushed memtables */
    uint64_t *frozen_upto;          /* per frozen memtable: the last version
                                     * assigned when it was frozen */
    struct manifest *man;           /* live segments */
    struct jobs *jobs;              /* worker pool; NULL until started */
    struct jobs_task *t_flush;      /* flush frozen memtables */
    struct jobs_task *t_compact;    /* compaction, retention, dropped tables */
    struct jobs_task *t_checkpoint; /* catalog + idempotency checkpoint, WAL trim */
    struct jobs_task *t_backup;     /* online backups */
    pthread_mutex_t idem_lock;      /* held by the loop thread while it changes
                                     * the idempotency table, by the checkpoint
                                     * while it reads it */
    uint64_t cc_version;            /* the catalog change logged but not yet
                                     * applied, or 0 (under store_lock) */
    uint64_t put_version;           /* the newest version put into a memtable */
    pthread_mutex_t store_lock;     /* guards the fields below */
    struct manifest_clock *clock;   /* version clock samples, ascending */
    size_t nclock;
    size_t clock_cap;
    uint64_t idem_version;       /* the idempotency checkpoint covers commits <= this */
    int64_t last_checkpoint_ms;  /* wall time of the last checkpoint; 0: none */
    size_t backups;              /* backups running: the WAL is not trimmed meanwhile */
    struct engine__usage *usage; /* segment bytes per tenant (under store_lock) */
    size_t nusage;
    volatile int stopping; /* set by engine__store_stop(): long jobs give up (atomic) */
    struct engine__compact_req *compact_reqs; /* on-demand compactions waiting */
    struct engine__retention_mark *retention; /* compaction task only */
    size_t nretention;
    pthread_mutex_t flush_lock;        /* one flush at a time */
    uint8_t secret[ENGINE_SECRET_LEN]; /* engine_secret() */
    char *idem_path;                   /* DATA_DIR/idempotency */
    struct engine__store_metrics *sm;  /* storage metrics (engine_store.c) */
};

/* engine.c */
const struct catalog_table *engine__find_table(struct catalog_snap *snap, const char *tenant,
                                               const char *table, struct err *err);
enum st_status engine__encode_key(const struct schema *s, const char *const *texts, size_t n,
                                  struct strbuf *kbuf, struct err *err);
/*
 * Serialises the committed idempotency entries with versions <= covered
 * (any thread: takes idem_lock, which the loop thread holds while it
 * changes the table). Returns covered.
 */
uint64_t engine__idem_dump(engine *e, uint64_t covered, struct strbuf *out);
/* Loads entries written by engine__idem_dump() (at open); ST_ECORRUPT on damage. */
enum st_status engine__idem_load(engine *e, const void *bytes, size_t len, struct err *err);

/* engine_read.c */

/* What a reader holds: memtables newest first and a manifest version. */
struct engine__pins {
    struct memtable **mts; /* nmts references, malloc'd */
    size_t nmts;
    const struct manifest_version *man; /* reference held */
};
void engine__pin(engine *e, struct engine__pins *p);
void engine__unpin(struct engine__pins *p);

/* The newest entry of a key at or below snap in memtables and segments. */
struct engine__found {
    uint64_t version;
    uint32_t schema_version;
    bool tombstone;
    const void *row;          /* into a pinned memtable or into buf */
    struct strbuf buf;        /* a row read from a segment */
    struct engine__pins pins; /* keep row alive */
};
/*
 * Looks key up (memtables first, then segments newest first). ST_OK with
 * *f filled (release with engine__found_release()), ST_ENOTFOUND, or a
 * read error (ST_ECORRUPT, ST_EIO) of a segment.
 */
enum st_status engine__lookup(engine *e, uint32_t table, const void *key, size_t len, uint64_t snap,
                              struct engine__found *f, struct err *err);
void engine__found_release(struct engine__found *f);

/* engine_store.c */
enum st_status engine__store_open(engine *e, struct err *err); /* before replay */
void engine__store_start(engine *e);                           /* after replay: jobs */
void engine__store_stop(engine *e);                            /* stops jobs */
void engine__store_free(engine *e);
/*
 * Freezes the active memtable into the frozen list (loop thread) and,
 * with kick, wakes the flush task (an admin request leaves the flush to
 * its own task, which then reports it).
 */
void engine__rotate(engine *e, bool kick);
/* Memtable options for storage.memtable_size (index and arena block sizes). */
void engine__memtable_opts(const engine *e, struct memtable_opts *mo);
/* The newest version at or before wall time ms by the clock samples (0: unknown). */
uint64_t engine__version_at(engine *e, int64_t wall_ms);
/*
 * ST_EQUOTA (err set) when the tenant's segments hold at least its
 * max_storage_bytes quota (bytes as of the last flush or compaction);
 * ST_OK otherwise or without a quota.
 */
enum st_status engine__check_storage_quota(engine *e, struct catalog_snap *snap, uint64_t tenant_id,
                                           struct err *err);
/* Bytes of segments of the tenant, as of the last flush or compaction. */
uint64_t engine__tenant_bytes(engine *e, uint64_t tenant_id);
/* Counts a corrupt block seen by a read. */
void engine__count_corruption(engine *e);

#endif

/*
 * engine_store: where data goes once it leaves the active memtable. Flush,
 * compaction and checkpoint run as tasks of a jobs pool (src/jobs), on
 * worker threads; they never touch connections and hand results to the
 * loop thread through opts.post.
 *
 * FLUSH. When the active memtable is full the loop thread moves it to the
 * frozen list (engine__rotate(), noting the newest version put into it)
 * and kicks the flush task. The task takes the oldest frozen memtable,
 * freezes (sorts) it, and writes one segment per table it holds: every
 * version, newest first per key, run through the merge's garbage
 * collection (merge.h) and converted to the table's newest schema. It
 * makes the segments current in one manifest edit that also raises
 * flushed_version to the memtable's last version, and only then takes
 * the memtable out of the frozen list (readers pin both under mt_lock,
 * so they see the rows in one place or the other, maybe both, never in
 * neither). Rows of tables deleted meanwhile are not written.
 *
 * CHECKPOINT. After a flush (and every checkpoint interval) the catalog
 * and the idempotency keys are saved, and WAL files whose records are
 * all at or below min(flushed_version, the version those saves cover)
 * are deleted. Replay then starts from the manifest (segments), the
 * catalog checkpoint and the idempotency file, and skips the data of
 * WAL records at or below flushed_version.
 *
 * COMPACTION. Tiered (docs/storage-format.md "Compaction"): per table, a
 * run of neighbouring segments of one tier is merged into one segment
 * (manifest_pick()). On the way, the merge drops versions below the
 * horizon that no reader can see, tombstones once nothing older is left,
 * and rows past the table's retention. The horizon is the oldest version
 * a held snapshot pins, or the newest version that was already visible
 * mvcc.history_retention ago, whichever is older (from a clock of
 * (wall time, version) samples kept in the manifest); the MVCC floor is
 * raised to it before anything is dropped, so no new read can ask for
 * what is gone. Segments of deleted tables are removed. A table whose
 * oldest data is past its retention is compacted whole now and then.
 *
 * A crash anywhere leaves either the old manifest or the new one; a
 * segment written but not listed, and *.tmp files, are deleted at start
 * (manifest_open()), and the WAL still holds everything not flushed.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_int.h"
#include "engine/merge.h"
#include "engine/mvcc.h"
#include "engine/segment.h"
#include "engine/wal.h"
#include "jobs/jobs.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/timeutil.h"

#define MAX_LEVEL_LABEL   10 /* levels >= this share the last label */
#define CLOCK_MIN_STEP_MS 1000

enum req_kind {
    REQ_COMPACT,
    REQ_CHECKPOINT,
    REQ_BACKUP,
};

/* An on-demand compaction, checkpoint or backup waiting for its task. */
struct engine__compact_req {
    struct engine__compact_req *next;
    enum req_kind kind; /* which task takes it */
    char *tenant;       /* compaction: NULL for every tenant */
    char *table;        /* compaction: NULL for every table */
    char *path;         /* backup: the new directory */
    engine_job_fn done; /* answered on the loop thread */
    void *arg;
    struct engine_job_result res;
    uint64_t start_ns;
};

struct engine__store_metrics {
    struct metric_series *segments[MAX_LEVEL_LABEL];
    struct metric_series *seg_bytes[MAX_LEVEL_LABEL];
    struct metric_series *flushes;
    struct metric_series *flush_errors;
    struct metric_series *flush_bytes;
    struct metric_series *compactions;
    struct metric_series *compact_errors;
    struct metric_series *compact_read;
    struct metric_series *compact_written;
    struct metric_series *versions_dropped;
    struct metric_series *checkpoints;
    struct metric_series *checkpoint_ts;
    struct metric_series *wal_removed;
    struct metric_series *wal_disk;
    struct metric_series *corrupt;
};

static enum st_status flush_one(engine *e, struct engine_job_result *res, struct err *err);

/* ------------------------------------------------------------------ */
/* Metrics */

static void declare_store_metrics(engine *e)
{
    struct metrics *m = e->opts.metrics;
    struct engine__store_metrics *sm;
    struct metric *segs, *bytes;

    if (!m)
        return;
    sm = xcalloc(1, sizeof(*sm));
    segs = metrics_gauge(m, "strata_segments", "Live segments, per compaction level.", "level");
    bytes = metrics_gauge(m, "strata_segment_bytes",
                          "Bytes of live segments, per compaction level.", "level");
    for (int i = 0; i < MAX_LEVEL_LABEL; i++) {
        char l[8];

        snprintf(l, sizeof(l), "%d", i);
        sm->segments[i] = metric_series_get(segs, l);
        sm->seg_bytes[i] = metric_series_get(bytes, l);
    }
#define COUNTER(field, name, help)                                                                 \
    sm->field = metric_series_get(metrics_counter(m, name, help, NULL))
    COUNTER(flushes, "strata_flushes_total", "Memtables written to segments.");
    COUNTER(flush_errors, "strata_flush_errors_total", "Flushes that failed (retried later).");
    COUNTER(flush_bytes, "strata_flush_bytes_total", "Segment bytes written by flushes.");
    COUNTER(compactions, "strata_compactions_total", "Compactions done.");
    COUNTER(compact_errors, "strata_compaction_errors_total", "Compactions that failed.");
    COUNTER(compact_read, "strata_compaction_bytes_read_total",
            "Segment bytes read by compaction.");
    COUNTER(compact_written, "strata_compaction_bytes_written_total",
            "Segment bytes written by compaction.");
    COUNTER(versions_dropped, "strata_versions_dropped_total",
            "Old versions, tombstones and expired rows dropped by flush and compaction.");
    COUNTER(checkpoints, "strata_checkpoints_total", "Checkpoints done.");
    COUNTER(wal_removed, "strata_wal_files_removed_total", "WAL files deleted by checkpoints.");
    COUNTER(corrupt, "strata_segment_corruptions_total",
            "Damaged segment blocks found by reads (see the log for file and offset).");
#undef COUNTER
    sm->wal_disk = metric_series_get(
        metrics_gauge(m, "strata_wal_disk_bytes",
                      "Bytes of WAL files on disk (pre-allocated files count whole).", NULL));
    sm->checkpoint_ts = metric_series_get(
        metrics_gauge(m, "strata_last_checkpoint_timestamp_seconds",
                      "Wall time of the last checkpoint (0: none since start).", NULL));
    e->sm = sm;
}

static void add_metric(struct metric_series *s, double v)
{
    if (s && v > 0)
        metric_add(s, v);
}

/* Recomputes the segment bytes per tenant from v (for storage quotas). */
static void update_usage(engine *e, const struct manifest_version *v)
{
    struct catalog_snap *snap = catalog_acquire(e->cat);
    struct engine__usage *u = v->ntables ? calloc_array(v->ntables, sizeof(*u)) : NULL;
    size_t n = 0;

    for (size_t t = 0; t < v->ntables; t++) {
        const struct catalog_table *tb = catalog_find_table_by_id(snap, v->tables[t].table_id);
        uint64_t tenant, bytes = 0;
        size_t k;

        if (!tb)
            continue;
        tenant = catalog_table_tenant_id(tb);
        for (size_t i = 0; i < v->tables[t].nsegs; i++)
            bytes += v->tables[t].segs[i]->info.file_bytes;
        for (k = 0; k < n && u[k].tenant_id != tenant; k++)
            ;
        if (k == n)
            u[n++].tenant_id = tenant;
        u[k].bytes += bytes;
    }
    catalog_release(snap);
    pthread_mutex_lock(&e->store_lock);
    free(e->usage);
    e->usage = u;
    e->nusage = n;
    pthread_mutex_unlock(&e->store_lock);
}

uint64_t engine__tenant_bytes(engine *e, uint64_t tenant_id)
{
    uint64_t bytes = 0;

    pthread_mutex_lock(&e->store_lock);
    for (size_t i = 0; i < e->nusage; i++)
        if (e->usage[i].tenant_id == tenant_id)
            bytes = e->usage[i].bytes;
    pthread_mutex_unlock(&e->store_lock);
    return bytes;
}

enum st_status engine__check_storage_quota(engine *e, struct catalog_snap *snap, uint64_t tenant_id,
                                           struct err *err)
{
    uint32_t n = catalog_ntenants(snap);
    uint64_t quota = 0, used;
    const char *name = "";

    for (uint32_t i = 0; i < n; i++) {
        const struct catalog_tenant *t = catalog_tenant_at(snap, i);

        if (catalog_tenant_id(t) == tenant_id) {
            quota = catalog_tenant_quotas(t).max_storage_bytes;
            name = catalog_tenant_name(t);
            break;
        }
    }
    if (!quota)
        return ST_OK;
    used = engine__tenant_bytes(e, tenant_id);
    if (used < quota)
        return ST_OK;
    return err_set(err, ST_EQUOTA,
                   "tenant '%s' stores %llu bytes, at or over its storage quota of %llu bytes",
                   name, (unsigned long long)used, (unsigned long long)quota);
}

/* Sets the per-level gauges and the per-tenant usage from the current manifest. */
static void update_level_metrics(engine *e)
{
    const struct manifest_version *v;
    uint64_t n[MAX_LEVEL_LABEL] = {0}, b[MAX_LEVEL_LABEL] = {0};

    v = manifest_acquire(e->man);
    update_usage(e, v);
    if (!e->sm) {
        manifest_version_release(v);
        return;
    }
    for (size_t t = 0; t < v->ntables; t++) {
        for (size_t i = 0; i < v->tables[t].nsegs; i++) {
            const struct manifest_seg *s = v->tables[t].segs[i];
            uint32_t l = ST_MIN(s->level, (uint32_t)MAX_LEVEL_LABEL - 1);

            n[l]++;
            b[l] += s->info.file_bytes;
        }
    }
    manifest_version_release(v);
    for (int i = 0; i < MAX_LEVEL_LABEL; i++) {
        metric_set(e->sm->segments[i], (double)n[i]);
        metric_set(e->sm->seg_bytes[i], (double)b[i]);
    }
}

void engine__count_corruption(engine *e)
{
    if (e->sm)
        metric_inc(e->sm->corrupt);
}

/* ------------------------------------------------------------------ */
/* The version clock and the horizon */

static uint64_t clock_step_ms(const engine *e)
{
    return ST_MAX((uint64_t)CLOCK_MIN_STEP_MS, e->opts.history_retention_ms / 1000);
}

/* Records (now, visible) when the clock has moved on; drops samples no longer needed. */
static void clock_sample(engine *e)
{
    int64_t now = time_wall_ms();
    uint64_t v = mvcc_visible(e->mvcc);
    int64_t cutoff = now - (int64_t)e->opts.history_retention_ms;
    size_t keep_from = 0;

    pthread_mutex_lock(&e->store_lock);
    if (e->nclock && (e->clock[e->nclock - 1].version >= v ||
                      now - e->clock[e->nclock - 1].wall_ms < (int64_t)clock_step_ms(e))) {
        pthread_mutex_unlock(&e->store_lock);
        return;
    }
    /* Keep the newest sample at or before the cutoff and everything after it. */
    while (keep_from + 1 < e->nclock && e->clock[keep_from + 1].wall_ms <= cutoff)
        keep_from++;
    if (keep_from) {
        memmove(e->clock, e->clock + keep_from, (e->nclock - keep_from) * sizeof(*e->clock));
        e->nclock -= keep_from;
    }
    if (e->nclock >= MANIFEST_MAX_CLOCK) { /* thin out: drop every other sample */
        size_t j = 0;

        for (size_t i = 0; i < e->nclock; i += 2)
            e->clock[j++] = e->clock[i];
        e->nclock = j;
    }
    if (e->nclock == e->clock_cap) {
        e->clock_cap = e->clock_cap ? e->clock_cap * 2 : 64;
        e->clock = realloc_array(e->clock, e->clock_cap, sizeof(*e->clock));
    }
    e->clock[e->nclock].wall_ms = now;
    e->clock[e->nclock].version = v;
    e->nclock++;
    pthread_mutex_unlock(&e->store_lock);
}

uint64_t engine__version_at(engine *e, int64_t wall_ms)
{
    uint64_t v = 0;

    pthread_mutex_lock(&e->store_lock);
    for (size_t i = 0; i < e->nclock && e->clock[i].wall_ms <= wall_ms; i++)
        v = e->clock[i].version;
    pthread_mutex_unlock(&e->store_lock);
    return v;
}

/*
 * The horizon: no read below it is allowed any more (the floor is raised
 * to it here), so versions below it that newer ones shadow can go.
 */
static uint64_t take_horizon(engine *e)
{
    int64_t now = time_wall_ms();
    uint64_t held, by_time, h;

    mvcc_snapshot_expire(e->mvcc, now);
    held = mvcc_oldest_held(e->mvcc, now);
    by_time = e->opts.history_retention_ms
                  ? engine__version_at(e, now - (int64_t)e->opts.history_retention_ms)
                  : held;
    h = ST_MIN(held, by_time);
    if (h < mvcc_floor(e->mvcc))
        h = mvcc_floor(e->mvcc);
    mvcc_set_floor(e->mvcc, h);
    return h;
}

/* Fills the clock part of an edit with a copy of the samples (caller frees *out). */
static void edit_clock(engine *e, struct manifest_edit *ed, struct manifest_clock **out)
{
    pthread_mutex_lock(&e->store_lock);
    *out = e->nclock ? calloc_array(e->nclock, sizeof(**out)) : NULL;
    if (e->nclock)
        memcpy(*out, e->clock, e->nclock * sizeof(**out));
    ed->clock = *out;
    ed->nclock = e->nclock;
    ed->set_clock = true;
    pthread_mutex_unlock(&e->store_lock);
}

/* ------------------------------------------------------------------ */
/* Writing one segment out of a merge */

struct expiry {
    engine *e;
    const struct catalog_table *tb;
    int64_t cutoff; /* rows whose time is before this are expired */
};

static bool row_expired(void *arg, const struct merge_rec *r)
{
    const struct expiry *x = arg;
    const struct schema *s;
    struct value v;

    if (r->tombstone)
        return false;
    s = catalog_table_schema_version(x->tb, r->schema_version);
    if (!s || s->time_field < 0)
        return false;
    schema_row_get(s, r->row, (uint32_t)s->time_field, &v);
    return !v.is_null && v.u.i < x->cutoff;
}

static void merge_opts_for(engine *e, const struct catalog_table *tb, uint64_t horizon, bool bottom,
                           struct expiry *x, struct merge_opts *mo)
{
    uint64_t ret = catalog_table_retention_ms(tb);

    memset(mo, 0, sizeof(*mo));
    mo->mode = MERGE_COMPACT;
    mo->horizon = horizon;
    mo->bottom = bottom;
    if (ret) {
        x->e = e;
        x->tb = tb;
        x->cutoff = time_wall_ms() - (int64_t)ret;
        mo->expired = row_expired;
        mo->expired_arg = x;
    }
}

static struct manifest_policy policy_of(const engine *e)
{
    struct manifest_policy p;

    p.fanout = e->opts.compact_fanout ? e->opts.compact_fanout : 4;
    p.base_bytes = e->opts.compact_base_bytes ? e->opts.compact_base_bytes : (4u << 20);
    p.max_segments = e->opts.compact_max_segments ? e->opts.compact_max_segments : 24;
    return p;
}

/*
 * Writes what m yields (entries of table tb) into a new segment in the
 * table's newest schema. *add is filled when something was written;
 * add->seg stays NULL when the merge yielded nothing.
 */
static enum st_status write_segment(engine *e, const struct catalog_table *tb, struct merge *m,
                                    int hc_level, struct manifest_add *add,
                                    struct engine_job_result *res, struct err *err)
{
    const struct schema *to = catalog_table_schema(tb);
    struct segment_writer_opts wo;
    struct segment_writer *w = NULL;
    struct strbuf path = STRBUF_INIT, conv = STRBUF_INIT;
    struct segment_info info;
    struct merge_stats ms;
    struct merge_rec r;
    enum st_status rc;
    uint64_t n = 0;
    uint64_t id;

    memset(add, 0, sizeof(*add));
    memset(&wo, 0, sizeof(wo));
    wo.lz4_hc_level = hc_level;
    id = manifest_new_segment(e->man, &path);
    rc = segment_writer_new(e->fs, path.buf, to, catalog_table_id(tb), &wo, &w, err);
    if (rc)
        goto out;
    while (merge_next(m, &r)) {
        const void *row = r.row;

        if (!r.tombstone && r.schema_version != to->version) {
            const struct schema *from = catalog_table_schema_version(tb, r.schema_version);

            if (!from)
                ST_BUG("row at schema version %u, which the catalog lacks", r.schema_version);
            rc = segment_row_convert(from, to, r.row, &conv, err);
            if (rc)
                goto out_abort;
            row = conv.buf;
        }
        rc = segment_writer_add(w, r.key, r.key_len, r.version, r.tombstone,
                                r.tombstone ? NULL : row, err);
        if (rc)
            goto out_abort;
        /* Shutdown does not wait for a long merge: the inputs stay as they are. */
        if (!(++n & 4095) && __atomic_load_n(&e->stopping, __ATOMIC_RELAXED)) {
            rc = err_set(err, ST_ESHUTDOWN, "the server is shutting down");
            goto out_abort;
        }
    }
    rc = merge_status(m, err);
    if (rc) {
        if (rc == ST_ECORRUPT)
            engine__count_corruption(e);
        goto out_abort;
    }
    merge_get_stats(m, &ms);
    res->versions_dropped += ms.versions_dropped + ms.tombstones_dropped + ms.expired;
    if (!n) {
        segment_writer_abort(w);
        goto out;
    }
    rc = segment_writer_finish(w, &info, err);
    w = NULL;
    if (rc)
        goto out;
    rc = segment_open(e->fs, path.buf, &add->seg, err);
    if (rc) {
        e->fs->unlink(e->fs, path.buf);
        goto out;
    }
    {
        struct manifest_policy p = policy_of(e);

        add->id = id;
        add->level = manifest_tier(&p, info.file_bytes);
    }
    res->segments_written++;
    res->bytes_written += info.file_bytes;
    goto out;
out_abort:
    segment_writer_abort(w);
out:
    strbuf_release(&path);
    strbuf_release(&conv);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Flush */

void engine__rotate(engine *e, bool kick)
{
    struct memtable_opts mo;
    struct memtable *old = e->active;
    bool sync_flush;
    size_t nfrozen;

    engine__memtable_opts(e, &mo);
    pthread_mutex_lock(&e->mt_lock);
    e->frozen = realloc_array(e->frozen, e->nfrozen + 1, sizeof(*e->frozen));
    e->frozen_upto = realloc_array(e->frozen_upto, e->nfrozen + 1, sizeof(*e->frozen_upto));
    e->frozen[e->nfrozen] = old;
    e->frozen_upto[e->nfrozen] = e->put_version;
    e->nfrozen++;
    e->active = memtable_new(&mo);
    sync_flush = !e->jobs && e->nfrozen > e->max_frozen;
    nfrozen = e->nfrozen;
    pthread_mutex_unlock(&e->mt_lock);
    log_debug("engine memtable frozen frozen=%zu", nfrozen);
    if (e->jobs) {
        if (kick)
            jobs_kick(e->t_flush);
    } else if (sync_flush) {
        /* Recovery: no workers yet; keep memory bounded by flushing here. */
        struct engine_job_result res;
        struct err err;

        memset(&res, 0, sizeof(res));
        if (flush_one(e, &res, &err))
            log_error("engine flush during recovery failed: %s", err.msg);
    }
}

void engine__memtable_opts(const engine *e, struct memtable_opts *mo)
{
    memset(mo, 0, sizeof(*mo));
    /* ~130 bytes a row: the index starts at its final size. */
    mo->expect_keys = (size_t)ST_MIN(e->opts.memtable_size / 130, 1u << 22);
    /* Arena blocks count whole: small memtables need small blocks. */
    mo->arena_chunk = (size_t)ST_MIN(e->opts.memtable_size / 16, MEMTABLE_DEFAULT_ARENA_CHUNK);
}

/* Flushes the oldest frozen memtable, if any. ST_ENOTFOUND when there is none. */
static enum st_status flush_one(engine *e, struct engine_job_result *res, struct err *err)
{
    struct memtable *mt;
    uint64_t upto, horizon;
    struct catalog_snap *snap;
    const struct manifest_version *mv;
    struct manifest_add *adds = NULL;
    struct manifest_edit ed;
    struct manifest_clock *clk = NULL;
    uint32_t *tables;
    size_t ntables, nadd = 0;
    enum st_status rc = ST_OK;
    uint64_t start = time_mono_ns();

    pthread_mutex_lock(&e->mt_lock);
    if (!e->nfrozen) {
        pthread_mutex_unlock(&e->mt_lock);
        return ST_ENOTFOUND;
    }
    mt = e->frozen[0];
    upto = e->frozen_upto[0];
    memtable_ref(mt);
    pthread_mutex_unlock(&e->mt_lock);

    /*
     * Segments hold durable commits only: wait for the memtable's last
     * commits to become visible (a group commit away), and never flush
     * after a WAL failure, whose applied-but-failed commits must stay
     * invisible (the restart replays only what the WAL holds).
     */
    if (e->jobs) {
        for (int i = 0; mvcc_visible(e->mvcc) < upto; i++) {
            if (mvcc_error(e->mvcc, NULL) || i >= 2000) {
                memtable_unref(mt);
                return err_set(err, ST_EAGAIN,
                               "commits up to version %llu are not durable; the flush waits",
                               (unsigned long long)upto);
            }
            usleep(500);
        }
    }
    memtable_freeze(mt);
    horizon = take_horizon(e);
    snap = catalog_acquire(e->cat);
    mv = manifest_acquire(e->man);
    tables = memtable_tables(mt, &ntables);
    adds = ntables ? calloc_array(ntables, sizeof(*adds)) : NULL;
    for (size_t i = 0; i < ntables && rc == ST_OK; i++) {
        const struct catalog_table *tb = catalog_find_table_by_id(snap, tables[i]);
        struct merge_source src;
        struct merge_opts mo;
        struct expiry x;
        struct merge *m;

        if (!tb)
            continue; /* deleted: its rows go with it */
        merge_source_memtable(
            memtable_iter_new(mt, tables[i], NULL, UINT64_MAX,
                              MEMTABLE_ITER_TOMBSTONES | MEMTABLE_ITER_ALL_VERSIONS),
            &src);
        merge_opts_for(e, tb, horizon, !manifest_find_table(mv, tables[i]), &x, &mo);
        m = merge_new(&src, 1, &mo);
        rc = write_segment(e, tb, m, 0, &adds[nadd], res, err);
        merge_free(m);
        if (rc == ST_OK && adds[nadd].seg)
            nadd++;
    }
    free(tables);
    manifest_version_release(mv);
    catalog_release(snap);
    if (rc) {
        for (size_t i = 0; i < nadd; i++) {
            char *p = xstrdup(segment_path(adds[i].seg));

            segment_unref(adds[i].seg);
            e->fs->unlink(e->fs, p);
            free(p);
        }
        goto out;
    }
    memset(&ed, 0, sizeof(ed));
    ed.add = adds;
    ed.nadd = nadd;
    ed.flushed_version = upto;
    ed.floor = mvcc_floor(e->mvcc);
    edit_clock(e, &ed, &clk);
    rc = manifest_apply(e->man, &ed, err);
    free(clk);
    if (rc)
        goto out;
    pthread_mutex_lock(&e->mt_lock);
    st_assert(e->nfrozen && e->frozen[0] == mt);
    memmove(e->frozen, e->frozen + 1, (e->nfrozen - 1) * sizeof(*e->frozen));
    memmove(e->frozen_upto, e->frozen_upto + 1, (e->nfrozen - 1) * sizeof(*e->frozen_upto));
    e->nfrozen--;
    pthread_mutex_unlock(&e->mt_lock);
    memtable_unref(mt); /* the frozen list's reference */
    res->memtables_flushed++;
    log_info("engine flushed memtable segments=%zu version=%llu ms=%llu", nadd,
             (unsigned long long)upto, (unsigned long long)((time_mono_ns() - start) / 1000000));
out:
    memtable_unref(mt);
    free(adds);
    return rc;
}

/*
 * Flushes up to max frozen memtables (the oldest first); stops at the
 * first failure. Counts and metrics are updated per memtable, so a long
 * backlog shows in them as it goes.
 */
static enum st_status flush_some(engine *e, size_t max, struct engine_job_result *res,
                                 struct err *err)
{
    enum st_status rc = ST_ENOTFOUND;

    pthread_mutex_lock(&e->flush_lock);
    for (size_t i = 0; i < max; i++) {
        uint64_t written = res->bytes_written, dropped = res->versions_dropped;

        rc = flush_one(e, res, err);
        if (rc)
            break;
        if (e->sm) {
            metric_inc(e->sm->flushes);
            add_metric(e->sm->flush_bytes, (double)(res->bytes_written - written));
            add_metric(e->sm->versions_dropped, (double)(res->versions_dropped - dropped));
        }
        update_level_metrics(e);
    }
    pthread_mutex_unlock(&e->flush_lock);
    if (rc && rc != ST_ENOTFOUND && rc != ST_EAGAIN && e->sm)
        metric_inc(e->sm->flush_errors);
    return rc == ST_ENOTFOUND ? ST_OK : rc;
}

/* Flushes the memtables frozen now (not those frozen meanwhile: bounded). */
static enum st_status flush_all(engine *e, struct engine_job_result *res, struct err *err)
{
    size_t n;

    pthread_mutex_lock(&e->mt_lock);
    n = e->nfrozen;
    pthread_mutex_unlock(&e->mt_lock);
    return flush_some(e, n, res, err);
}

/* ------------------------------------------------------------------ */
/* Checkpoint */

/* Bytes of WAL files on disk: files are pre-allocated to their full size. */
static uint64_t wal_disk_bytes(engine *e)
{
    struct wal_stats ws;

    if (!e->wal)
        return 0;
    wal_get_stats(e->wal, &ws);
    return ws.files * (e->opts.wal_file_size ? e->opts.wal_file_size : WAL_DEFAULT_FILE_SIZE);
}

static enum st_status checkpoint(engine *e, struct engine_job_result *res, struct err *err)
{
    struct catalog_snap *snap;
    const struct manifest_version *mv;
    struct strbuf idem = STRBUF_INIT;
    uint64_t visible, pending, covered, upto;
    size_t removed = 0, backup;
    enum st_status rc;

    if (!e->wal)
        return ST_OK;
    clock_sample(e);
    /*
     * Every catalog change at or below `covered` is in snap: changes are
     * applied one at a time, and the one in flight (cc_version) is not.
     */
    pthread_mutex_lock(&e->store_lock);
    visible = mvcc_visible(e->mvcc);
    pending = e->cc_version;
    snap = catalog_acquire(e->cat);
    pthread_mutex_unlock(&e->store_lock);
    covered = pending ? ST_MIN(visible, pending - 1) : visible;
    rc = catalog_save(snap, e->fs, e->catalog_path, err);
    catalog_release(snap);
    if (rc)
        return rc;
    engine__idem_dump(e, covered, &idem);
    rc = fs_write_atomic(e->fs, e->idem_path, idem.buf, idem.len, 0644, err);
    strbuf_release(&idem);
    if (rc)
        return rc;
    mv = manifest_acquire(e->man);
    upto = ST_MIN(mv->flushed_version, covered);
    manifest_version_release(mv);
    pthread_mutex_lock(&e->store_lock);
    backup = e->backups;
    pthread_mutex_unlock(&e->store_lock);
    /* A backup copies the WAL after the manifest it pinned: keep it whole meanwhile. */
    rc = backup ? ST_OK : wal_trim(e->wal, upto, &removed, err);
    if (rc)
        return rc;
    res->wal_files_removed += removed;
    pthread_mutex_lock(&e->store_lock);
    e->last_checkpoint_ms = time_wall_ms();
    pthread_mutex_unlock(&e->store_lock);
    if (e->sm) {
        metric_inc(e->sm->checkpoints);
        add_metric(e->sm->wal_removed, (double)removed);
        metric_set(e->sm->checkpoint_ts, (double)time_wall_ms() / 1000.0);
        metric_set(e->sm->wal_disk, (double)wal_disk_bytes(e));
    }
    log_debug("engine checkpoint upto=%llu wal_files_removed=%zu", (unsigned long long)upto,
              removed);
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Compaction */

/*
 * Merges segs[first, first + n) of table tb (from the pinned version mv)
 * into one segment, or drops them all when nothing survives.
 */
static enum st_status compact_run(engine *e, const struct catalog_table *tb,
                                  const struct manifest_table *t, size_t first, size_t n,
                                  struct engine_job_result *res, struct err *err)
{
    struct merge_source *src = calloc_array(n, sizeof(*src));
    uint64_t *remove = calloc_array(n, sizeof(*remove));
    struct manifest_clock *clk = NULL;
    struct manifest_add add;
    struct manifest_edit ed;
    struct merge_opts mo;
    struct expiry x;
    struct merge *m;
    uint64_t horizon = take_horizon(e);
    uint64_t read = 0, start = time_mono_ns();
    enum st_status rc;

    for (size_t i = 0; i < n; i++) {
        struct manifest_seg *ms = t->segs[first + i];

        merge_source_segment(segment_iter_new(ms->seg, NULL, UINT64_MAX,
                                              SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS),
                             ms->seg, UINT64_MAX, false, &src[i]);
        remove[i] = ms->id;
        read += ms->info.file_bytes;
    }
    merge_opts_for(e, tb, horizon, first + n == t->nsegs, &x, &mo);
    m = merge_new(src, n, &mo);
    free(src);
    rc = write_segment(e, tb, m, 9, &add, res, err);
    merge_free(m);
    if (rc)
        goto out;
    memset(&ed, 0, sizeof(ed));
    ed.add = &add;
    ed.nadd = add.seg ? 1 : 0;
    ed.remove = remove;
    ed.nremove = n;
    ed.floor = horizon;
    edit_clock(e, &ed, &clk);
    rc = manifest_apply(e->man, &ed, err);
    free(clk);
    if (rc)
        goto out;
    res->segments_removed += n;
    res->bytes_read += read;
    log_info("engine compacted table=%llu segments=%zu bytes_in=%llu out=%s ms=%llu",
             (unsigned long long)catalog_table_id(tb), n, (unsigned long long)read,
             add.seg ? "1" : "0 (all dropped)",
             (unsigned long long)((time_mono_ns() - start) / 1000000));
out:
    free(remove);
    return rc;
}

/* Removes every segment of a table the catalog no longer has. */
static enum st_status drop_table_segments(engine *e, const struct manifest_table *t,
                                          struct engine_job_result *res, struct err *err)
{
    uint64_t *remove = calloc_array(t->nsegs, sizeof(*remove));
    struct manifest_edit ed;
    enum st_status rc;

    for (size_t i = 0; i < t->nsegs; i++)
        remove[i] = t->segs[i]->id;
    memset(&ed, 0, sizeof(ed));
    ed.remove = remove;
    ed.nremove = t->nsegs;
    rc = manifest_apply(e->man, &ed, err);
    free(remove);
    if (rc == ST_OK) {
        res->segments_removed += t->nsegs;
        log_info("engine dropped segments of deleted table=%llu segments=%zu",
                 (unsigned long long)t->table_id, t->nsegs);
    }
    return rc;
}

/* Whether a table's oldest data is past its retention, at most once per interval. */
static bool retention_due(engine *e, const struct catalog_table *tb, const struct manifest_table *t)
{
    uint64_t ret = catalog_table_retention_ms(tb);
    const struct manifest_seg *oldest = t->segs[t->nsegs - 1];
    int64_t now = time_wall_ms();
    int64_t every = (int64_t)ST_MAX(ret / 10, (uint64_t)60000);

    if (!ret || !oldest->info.has_time || oldest->info.min_time >= now - (int64_t)ret)
        return false;
    for (size_t i = 0; i < e->nretention; i++) {
        if (e->retention[i].table_id == t->table_id) {
            if (now - e->retention[i].last_ms < every)
                return false;
            e->retention[i].last_ms = now;
            return true;
        }
    }
    e->retention = realloc_array(e->retention, e->nretention + 1, sizeof(*e->retention));
    e->retention[e->nretention].table_id = t->table_id;
    e->retention[e->nretention].last_ms = now;
    e->nretention++;
    return true;
}

/*
 * One round of background compaction: the first table that needs work
 * gets one compaction. *did says whether anything was done.
 */
static enum st_status compact_step(engine *e, struct engine_job_result *res, bool *did,
                                   struct err *err)
{
    const struct manifest_version *mv = manifest_acquire(e->man);
    struct catalog_snap *snap = catalog_acquire(e->cat);
    struct manifest_policy p = policy_of(e);
    enum st_status rc = ST_OK;

    *did = false;
    for (size_t i = 0; i < mv->ntables && !*did; i++) {
        const struct manifest_table *t = &mv->tables[i];
        const struct catalog_table *tb = catalog_find_table_by_id(snap, t->table_id);
        size_t first, n;

        if (!t->nsegs)
            continue;
        if (!tb) {
            *did = true;
            rc = drop_table_segments(e, t, res, err);
        } else if (retention_due(e, tb, t)) {
            *did = true;
            rc = compact_run(e, tb, t, 0, t->nsegs, res, err);
        } else if (manifest_pick(t, &p, &first, &n)) {
            *did = true;
            rc = compact_run(e, tb, t, first, n, res, err);
        }
    }
    catalog_release(snap);
    manifest_version_release(mv);
    return rc;
}

/* Compacts every matching table whole (admin compaction). */
static enum st_status compact_tables(engine *e, const char *tenant, const char *table,
                                     struct engine_job_result *res, struct err *err)
{
    const struct manifest_version *mv = manifest_acquire(e->man);
    struct catalog_snap *snap = catalog_acquire(e->cat);
    enum st_status rc = ST_OK;

    for (size_t i = 0; i < mv->ntables && rc == ST_OK; i++) {
        const struct manifest_table *t = &mv->tables[i];
        const struct catalog_table *tb = catalog_find_table_by_id(snap, t->table_id);

        if (!t->nsegs)
            continue;
        if (!tb) {
            if (!tenant)
                rc = drop_table_segments(e, t, res, err);
            continue;
        }
        if (tenant && strcmp(catalog_table_tenant(tb), tenant) != 0)
            continue;
        if (table && strcmp(catalog_table_name(tb), table) != 0)
            continue;
        rc = compact_run(e, tb, t, 0, t->nsegs, res, err);
    }
    catalog_release(snap);
    manifest_version_release(mv);
    return rc;
}

static void count_compaction(engine *e, const struct engine_job_result *before,
                             const struct engine_job_result *after, enum st_status rc)
{
    if (!e->sm)
        return;
    if (rc)
        metric_inc(e->sm->compact_errors);
    add_metric(e->sm->compactions,
               (double)(after->segments_removed - before->segments_removed ? 1 : 0));
    add_metric(e->sm->compact_read, (double)(after->bytes_read - before->bytes_read));
    add_metric(e->sm->compact_written, (double)(after->bytes_written - before->bytes_written));
    add_metric(e->sm->versions_dropped,
               (double)(after->versions_dropped - before->versions_dropped));
}

/* ------------------------------------------------------------------ */
/* Tasks */

static void answer_req(void *arg)
{
    struct engine__compact_req *r = arg;

    r->done(r->arg, &r->res);
    free(r->tenant);
    free(r->table);
    free(r->path);
    free(r);
}

/* Finishes a request: its answer goes to the loop thread. */
static void post_req(engine *e, struct engine__compact_req *r)
{
    r->res.elapsed_ms = (time_mono_ns() - r->start_ns) / 1000000;
    e->opts.post(e->opts.post_ctx, answer_req, r);
}

/* Takes the waiting requests of one kind, in arrival order. */
static struct engine__compact_req *take_reqs(engine *e, enum req_kind kind)
{
    struct engine__compact_req *out = NULL, **tail = &out, **pp;

    pthread_mutex_lock(&e->store_lock);
    pp = &e->compact_reqs;
    while (*pp) {
        struct engine__compact_req *r = *pp;

        if (r->kind == kind) {
            *pp = r->next;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&e->store_lock);
    return out;
}

static void flush_task(void *arg)
{
    engine *e = arg;
    struct engine_job_result res;
    enum st_status rc;
    struct err err;

    memset(&res, 0, sizeof(res));
    /* One memtable a run: the checkpoint and compaction it wakes run beside the next. */
    rc = flush_some(e, 1, &res, &err);
    if (rc == ST_EAGAIN) {
        log_debug("engine flush postponed: %s", err.msg);
        return;
    }
    if (rc) {
        log_error("engine flush failed (retried later): %s", err.msg);
        return;
    }
    if (!res.memtables_flushed)
        return;
    jobs_kick(e->t_checkpoint); /* trim the WAL behind the flush */
    if (!e->opts.manual_jobs)
        jobs_kick(e->t_compact); /* a new segment may complete a tier */
    jobs_kick(e->t_flush);       /* more may wait */
}

static void checkpoint_task(void *arg)
{
    engine *e = arg;
    struct engine__compact_req *reqs = take_reqs(e, REQ_CHECKPOINT);
    struct engine_job_result res;
    enum st_status rc = ST_OK;
    struct err err;

    memset(&res, 0, sizeof(res));
    err_clear(&err);
    if (reqs)
        rc = flush_all(e, &res, &err);
    if (rc == ST_OK)
        rc = checkpoint(e, &res, &err);
    if (rc)
        log_error("engine checkpoint failed (retried later): %s", err.msg);
    while (reqs) {
        struct engine__compact_req *r = reqs;

        reqs = r->next;
        r->res = res;
        r->res.st = rc;
        r->res.err = err;
        post_req(e, r);
    }
}

static void compact_task(void *arg)
{
    engine *e = arg;
    struct engine__compact_req *reqs = take_reqs(e, REQ_COMPACT);
    struct engine_job_result res, before;
    enum st_status rc = ST_OK;
    struct err err;
    bool did = false;

    clock_sample(e);
    memset(&res, 0, sizeof(res));
    err_clear(&err);
    if (reqs)
        rc = flush_all(e, &res, &err);
    while (reqs) {
        struct engine__compact_req *r = reqs;
        struct err rerr;

        reqs = r->next;
        memset(&r->res, 0, sizeof(r->res));
        err_clear(&rerr);
        r->res.memtables_flushed = res.memtables_flushed;
        before = r->res;
        r->res.st = rc ? rc : compact_tables(e, r->tenant, r->table, &r->res, &rerr);
        r->res.err = rc ? err : rerr;
        count_compaction(e, &before, &r->res, r->res.st);
        post_req(e, r);
    }
    memset(&res, 0, sizeof(res));
    before = res;
    rc = compact_step(e, &res, &did, &err);
    count_compaction(e, &before, &res, rc);
    update_level_metrics(e);
    if (rc)
        log_error("engine compaction failed (retried later): %s", err.msg);
    else if (did)
        jobs_kick(e->t_compact); /* more may be due */
}

/* ------------------------------------------------------------------ */
/* Online backup */

/* Copies the file src to dst (created, mode), fsynced; adds its bytes to *bytes. */
static enum st_status copy_file(struct fs *fs, const char *src, const char *dst, unsigned mode,
                                uint64_t *bytes, struct err *err)
{
    enum st_status rc = ST_OK;
    uint64_t size, off = 0;
    char *buf = NULL;
    int in, out = -1;

    in = fs->open(fs, src, O_RDONLY, 0);
    if (in < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot open '%s'", src);
    if (fs->fsize(fs, in, &size) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot stat '%s'", src);
        goto out;
    }
    out = fs->open(fs, dst, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (out < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot create '%s'", dst);
        goto out;
    }
    buf = xmalloc(1u << 20);
    while (off < size) {
        size_t n = (size_t)ST_MIN(size - off, (uint64_t)(1u << 20)), got = 0;

        if (fs_pread_full(fs, in, buf, n, off, &got) < 0 && !got) {
            rc = err_set_errno(err, ST_EIO, errno, "cannot read '%s'", src);
            goto out;
        }
        if (!got)
            break; /* the file shrank: copy what there was */
        if (fs_pwrite_full(fs, out, buf, got, off) < 0) {
            rc = err_set_errno(err, ST_EIO, errno, "cannot write '%s'", dst);
            goto out;
        }
        off += got;
    }
    if (fs->fsync(fs, out) < 0)
        rc = err_set_errno(err, ST_EIO, errno, "cannot sync '%s'", dst);
    *bytes += off;
out:
    free(buf);
    if (out >= 0)
        fs->close(fs, out);
    fs->close(fs, in);
    return rc;
}

/* Copies DATA_DIR/name to DIR/name when it exists. */
static enum st_status copy_named(engine *e, const char *dir, const char *name, unsigned mode,
                                 bool optional, struct engine_job_result *res, struct err *err)
{
    struct strbuf src = STRBUF_INIT, dst = STRBUF_INIT;
    enum st_status rc;
    int fd;

    strbuf_addf(&src, "%s/%s", e->data_dir, name);
    strbuf_addf(&dst, "%s/%s", dir, name);
    fd = optional ? e->fs->open(e->fs, src.buf, O_RDONLY, 0) : 0;
    if (optional && fd < 0 && errno == ENOENT) {
        rc = ST_OK;
    } else {
        if (optional && fd >= 0)
            e->fs->close(e->fs, fd);
        rc = copy_file(e->fs, src.buf, dst.buf, mode, &res->bytes_written, err);
        if (rc == ST_OK)
            res->files_copied++;
    }
    strbuf_release(&src);
    strbuf_release(&dst);
    return rc;
}

/* The manifest file of version mv (what a restore opens). */
static void manifest_bytes(const struct manifest_version *mv, struct strbuf *out)
{
    struct manifest_image img;
    size_t n = 0;

    memset(&img, 0, sizeof(img));
    img.generation = mv->generation;
    img.flushed_version = mv->flushed_version;
    img.floor = mv->floor;
    img.next_id = mv->next_id;
    img.segs = mv->segments ? calloc_array(mv->segments, sizeof(*img.segs)) : NULL;
    for (size_t t = 0; t < mv->ntables; t++) {
        for (size_t i = 0; i < mv->tables[t].nsegs; i++) {
            img.segs[n].id = mv->tables[t].segs[i]->id;
            img.segs[n].table_id = mv->tables[t].segs[i]->table_id;
            img.segs[n].level = mv->tables[t].segs[i]->level;
            n++;
        }
    }
    img.nsegs = n;
    img.clock = mv->nclock ? calloc_array(mv->nclock, sizeof(*img.clock)) : NULL;
    if (mv->nclock)
        memcpy(img.clock, mv->clock, mv->nclock * sizeof(*img.clock));
    img.nclock = mv->nclock;
    strbuf_reset(out);
    manifest_encode(&img, out);
    manifest_image_release(&img);
}

/*
 * A consistent copy of the data directory into dir, while writes go on:
 * with WAL trimming held off, the checkpoints (catalog, idempotency) are
 * copied first, then the segments of a pinned manifest version and that
 * manifest, then every WAL file. Whatever the WAL gains during the copy
 * is either whole in the copy or a torn tail that recovery cuts; what it
 * held before is all there, and so is everything the segments do not.
 */
static enum st_status backup(engine *e, const char *dir, struct engine_job_result *res,
                             struct err *err)
{
    const struct manifest_version *mv;
    struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
    char **names = NULL;
    size_t nnames = 0;
    enum st_status rc;

    if (e->fs->mkdir(e->fs, dir, 0700) < 0)
        return err_set_errno(err, errno == EEXIST ? ST_EEXIST : ST_EIO, errno,
                             "cannot create backup directory '%s'", dir);
    strbuf_addf(&a, "%s/segments", dir);
    strbuf_addf(&b, "%s/wal", dir);
    if (e->fs->mkdir(e->fs, a.buf, 0755) < 0 || e->fs->mkdir(e->fs, b.buf, 0755) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot create directories in '%s'", dir);
        goto out_bufs;
    }
    pthread_mutex_lock(&e->store_lock);
    e->backups++;
    pthread_mutex_unlock(&e->store_lock);
    mv = manifest_acquire(e->man);
    if ((rc = copy_named(e, dir, "catalog.json", 0644, true, res, err)) ||
        (rc = copy_named(e, dir, "idempotency", 0644, true, res, err)) ||
        (rc = copy_named(e, dir, "secret", 0600, false, res, err)) ||
        (rc = copy_named(e, dir, "admin_token", 0600, true, res, err)))
        goto out;
    for (size_t t = 0; t < mv->ntables && !rc; t++) {
        for (size_t i = 0; i < mv->tables[t].nsegs && !rc; i++) {
            const char *src = segment_path(mv->tables[t].segs[i]->seg);
            const char *base = strrchr(src, '/');

            strbuf_reset(&a);
            strbuf_addf(&a, "%s/segments/%s", dir, base ? base + 1 : src);
            rc = copy_file(e->fs, src, a.buf, 0644, &res->bytes_written, err);
            res->files_copied++;
        }
    }
    if (rc)
        goto out;
    manifest_bytes(mv, &b);
    strbuf_reset(&a);
    strbuf_addf(&a, "%s/MANIFEST", dir);
    if ((rc = fs_write_atomic(e->fs, a.buf, b.buf, b.len, 0644, err)))
        goto out;
    res->files_copied++;
    if (e->fs->list_dir(e->fs, e->wal_dir, &names, &nnames) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot list '%s'", e->wal_dir);
        goto out;
    }
    for (size_t i = 0; i < nnames && !rc; i++) {
        size_t l = strlen(names[i]);

        if (l < 4 || strcmp(names[i] + l - 4, ".log") != 0)
            continue;
        strbuf_reset(&a);
        strbuf_reset(&b);
        strbuf_addf(&a, "%s/%s", e->wal_dir, names[i]);
        strbuf_addf(&b, "%s/wal/%s", dir, names[i]);
        rc = copy_file(e->fs, a.buf, b.buf, 0644, &res->bytes_written, err);
        res->files_copied++;
    }
    fs_names_free(names, nnames);
    if (rc)
        goto out;
    strbuf_reset(&a);
    strbuf_addf(&a, "%s/segments", dir);
    strbuf_reset(&b);
    strbuf_addf(&b, "%s/wal", dir);
    if (e->fs->fsync_dir(e->fs, a.buf) < 0 || e->fs->fsync_dir(e->fs, b.buf) < 0 ||
        e->fs->fsync_dir(e->fs, dir) < 0)
        rc = err_set_errno(err, ST_EIO, errno, "cannot sync the directories of '%s'", dir);
out:
    manifest_version_release(mv);
    pthread_mutex_lock(&e->store_lock);
    e->backups--;
    pthread_mutex_unlock(&e->store_lock);
    if (rc == ST_OK)
        log_info("engine backup done dir='%s' files=%llu bytes=%llu", dir,
                 (unsigned long long)res->files_copied, (unsigned long long)res->bytes_written);
    else
        log_error("engine backup to '%s' failed: %s", dir, err->msg);
out_bufs:
    strbuf_release(&a);
    strbuf_release(&b);
    return rc;
}

static void backup_task(void *arg)
{
    engine *e = arg;
    struct engine__compact_req *reqs = take_reqs(e, REQ_BACKUP);

    while (reqs) {
        struct engine__compact_req *r = reqs;

        reqs = r->next;
        memset(&r->res, 0, sizeof(r->res));
        r->res.st = backup(e, r->path, &r->res, &r->res.err);
        post_req(e, r);
    }
}

void engine_backup(engine *e, const char *path, engine_job_fn done, void *arg)
{
    struct engine__compact_req *r = xcalloc(1, sizeof(*r));

    r->start_ns = time_mono_ns();
    r->kind = REQ_BACKUP;
    r->done = done;
    r->arg = arg;
    if (path[0] != '/') {
        r->res.st = err_set(&r->res.err, ST_EINVAL, "the backup path must be absolute");
        done(arg, &r->res);
        free(r);
        return;
    }
    r->path = xstrdup(path);
    pthread_mutex_lock(&e->store_lock);
    r->next = e->compact_reqs;
    e->compact_reqs = r;
    pthread_mutex_unlock(&e->store_lock);
    jobs_kick(e->t_backup);
}

/* ------------------------------------------------------------------ */
/* Requests from the loop thread */

static void request(engine *e, struct engine__compact_req *r)
{
    struct memtable_stats st;

    /* Everything written so far goes into the flush. */
    memtable_get_stats(e->active, &st);
    if (st.entries)
        engine__rotate(e, false);
    pthread_mutex_lock(&e->store_lock);
    r->next = e->compact_reqs;
    e->compact_reqs = r;
    pthread_mutex_unlock(&e->store_lock);
    jobs_kick(r->kind == REQ_CHECKPOINT ? e->t_checkpoint
              : r->kind == REQ_BACKUP   ? e->t_backup
                                        : e->t_compact);
}

void engine_compact(engine *e, const char *tenant, const char *table, engine_job_fn done, void *arg)
{
    struct engine__compact_req *r = xcalloc(1, sizeof(*r));

    r->start_ns = time_mono_ns();
    r->done = done;
    r->arg = arg;
    if (tenant || table) {
        struct catalog_snap *snap = catalog_acquire(e->cat);
        const struct catalog_tenant *t =
            tenant ? catalog_find_tenant(snap, tenant, strlen(tenant)) : NULL;

        if (tenant && !t)
            err_set(&r->res.err, ST_ENOTFOUND, "no tenant '%s'", tenant);
        else if (table && !(t && catalog_tenant_find_table(t, table, strlen(table))))
            err_set(&r->res.err, ST_ENOTFOUND, "no table '%s'%s%s", table,
                    tenant ? " in tenant " : "", tenant ? tenant : "");
        catalog_release(snap);
        if (r->res.err.code) {
            r->res.st = r->res.err.code;
            done(arg, &r->res);
            free(r);
            return;
        }
    }
    r->tenant = tenant ? xstrdup(tenant) : NULL;
    r->table = table ? xstrdup(table) : NULL;
    request(e, r);
}

void engine_checkpoint(engine *e, engine_job_fn done, void *arg)
{
    struct engine__compact_req *r = xcalloc(1, sizeof(*r));

    r->start_ns = time_mono_ns();
    r->kind = REQ_CHECKPOINT;
    r->done = done;
    r->arg = arg;
    request(e, r);
}

void engine_storage_stats(engine *e, struct engine_storage_stats *out)
{
    const struct manifest_version *mv = manifest_acquire(e->man);

    memset(out, 0, sizeof(*out));
    out->segments = mv->segments;
    out->segment_bytes = mv->file_bytes;
    for (size_t t = 0; t < mv->ntables; t++)
        for (size_t i = 0; i < mv->tables[t].nsegs; i++)
            out->rows_stored += mv->tables[t].segs[i]->info.entries;
    out->flushed_version = mv->flushed_version;
    manifest_version_release(mv);
    out->floor = mvcc_floor(e->mvcc);
    pthread_mutex_lock(&e->mt_lock);
    out->memtables = 1 + e->nfrozen;
    out->memtable_bytes = memtable_bytes(e->active);
    for (size_t i = 0; i < e->nfrozen; i++)
        out->memtable_bytes += memtable_bytes(e->frozen[i]);
    pthread_mutex_unlock(&e->mt_lock);
    out->wal_bytes = wal_disk_bytes(e);
    pthread_mutex_lock(&e->store_lock);
    out->last_checkpoint_ms = e->last_checkpoint_ms;
    pthread_mutex_unlock(&e->store_lock);
}

/* ------------------------------------------------------------------ */
/* Open, start, stop */

/* Removes the *.tmp files a crash during a checkpoint can leave in the data dir. */
static void remove_leftovers(engine *e)
{
    static const char *const names[] = {"catalog.json.tmp", "idempotency.tmp", "secret.tmp"};
    struct strbuf p = STRBUF_INIT;

    for (size_t i = 0; i < ST_ARRAY_SIZE(names); i++) {
        strbuf_reset(&p);
        strbuf_addf(&p, "%s/%s", e->data_dir, names[i]);
        if (e->fs->unlink(e->fs, p.buf) == 0)
            log_info("engine removed leftover file='%s'", p.buf);
    }
    strbuf_release(&p);
}

/* Loads DATA_DIR/secret, or makes one (mode 0600). */
static enum st_status load_secret(engine *e, struct err *err)
{
    struct strbuf path = STRBUF_INIT;
    char *bytes = NULL;
    size_t len = 0;
    enum st_status rc;

    strbuf_addf(&path, "%s/secret", e->data_dir);
    rc = fs_read_all(e->fs, path.buf, &bytes, &len, err);
    if (rc == ST_OK && len == ENGINE_SECRET_LEN) {
        memcpy(e->secret, bytes, ENGINE_SECRET_LEN);
    } else if (rc == ST_OK) {
        rc = err_set(err, ST_ECORRUPT, "'%s' is not %d bytes", path.buf, ENGINE_SECRET_LEN);
    } else if (rc == ST_ENOTFOUND) {
        randombytes_buf(e->secret, sizeof(e->secret));
        rc = fs_write_atomic(e->fs, path.buf, e->secret, sizeof(e->secret), 0600, err);
    }
    free(bytes);
    strbuf_release(&path);
    return rc;
}

enum st_status engine__store_open(engine *e, struct err *err)
{
    const struct manifest_version *mv;
    char *bytes = NULL;
    size_t len = 0;
    enum st_status rc;
    struct strbuf path = STRBUF_INIT;

    declare_store_metrics(e);
    remove_leftovers(e);
    rc = load_secret(e, err);
    if (rc)
        return rc;
    rc = manifest_open(e->fs, e->data_dir, &e->man, err);
    if (rc)
        return rc;
    mv = manifest_acquire(e->man);
    if (mv->nclock) {
        e->clock_cap = mv->nclock + 64;
        e->clock = calloc_array(e->clock_cap, sizeof(*e->clock));
        memcpy(e->clock, mv->clock, mv->nclock * sizeof(*e->clock));
        e->nclock = mv->nclock;
    }
    manifest_version_release(mv);
    strbuf_addf(&path, "%s/idempotency", e->data_dir);
    e->idem_path = strbuf_detach(&path, NULL);
    update_level_metrics(e);
    rc = fs_read_all(e->fs, e->idem_path, &bytes, &len, err);
    if (rc == ST_ENOTFOUND)
        return ST_OK;
    if (rc == ST_OK) {
        rc = engine__idem_load(e, bytes, len, err);
        if (rc)
            err_set(err, rc, "'%s': damaged idempotency checkpoint", e->idem_path);
    }
    free(bytes);
    return rc;
}

void engine__store_start(engine *e)
{
    struct jobs_opts jo;
    bool manual = e->opts.manual_jobs;

    memset(&jo, 0, sizeof(jo));
    jo.threads = e->opts.job_threads ? e->opts.job_threads : 1;
    e->jobs = jobs_new(&jo);
    e->t_flush = jobs_add(e->jobs, "flush", flush_task, e,
                          manual                      ? 0
                          : e->opts.flush_interval_ms ? e->opts.flush_interval_ms
                                                      : 1000);
    e->t_compact = jobs_add(e->jobs, "compact", compact_task, e,
                            manual                        ? 0
                            : e->opts.compact_interval_ms ? e->opts.compact_interval_ms
                                                          : 10000);
    e->t_checkpoint = jobs_add(e->jobs, "checkpoint", checkpoint_task, e,
                               manual                           ? 0
                               : e->opts.checkpoint_interval_ms ? e->opts.checkpoint_interval_ms
                                                                : 60000);
    e->t_backup = jobs_add(e->jobs, "backup", backup_task, e, 0);
    if (e->nfrozen)
        jobs_kick(e->t_flush);
}

void engine__store_stop(engine *e)
{
    struct engine__compact_req *r;

    if (!e->jobs)
        return;
    __atomic_store_n(&e->stopping, 1, __ATOMIC_RELAXED);
    jobs_free(e->jobs);
    e->jobs = NULL;
    /* Requests no task took: answered here, on the loop thread. */
    while ((r = e->compact_reqs)) {
        e->compact_reqs = r->next;
        r->res.st = err_set(&r->res.err, ST_ESHUTDOWN, "the server is shutting down");
        answer_req(r);
    }
}

void engine__store_free(engine *e)
{
    manifest_close(e->man);
    e->man = NULL;
    free(e->clock);
    e->clock = NULL;
    free(e->retention);
    e->retention = NULL;
    free(e->idem_path);
    e->idem_path = NULL;
    free(e->sm);
    e->sm = NULL;
    free(e->usage);
    e->usage = NULL;
}

/*
 * engine_read: point reads, scans and held snapshots (see engine.h).
 *
 * A read pins what it needs under mt_lock, in one go: a reference on the
 * active memtable, on every frozen one, and on the current manifest
 * version (engine__pin()). The flush job makes a memtable's segments
 * current before it takes the memtable out of the frozen list, so a pin
 * may see a flushed memtable twice (in memory and in a segment: the same
 * entries, which the merge reads once) but never misses it.
 *
 * Sources are ordered newest first: the active memtable, the frozen ones
 * newest first, then the table's segments newest first (the manifest
 * keeps them in that order and their versions never overlap). A point
 * read stops at the first source holding the key at the snapshot. A scan
 * merges them (merge.h, read mode) after leaving out the segments whose
 * statistics exclude the query: versions all above the snapshot, a key
 * range outside the query's, a bloom filter without the key of a point
 * query (none of these can hold a visible entry in range, so nothing is
 * lost), or a time range outside the query's (these may hold the newest
 * version of a key whose older version elsewhere is in range, so they
 * stay in the merge as sources that can only hide keys).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "engine/key.h"
#include "engine/merge.h"
#include "engine/mvcc.h"
#include "engine/query.h"
#include "engine/segment.h"
#include "util/metrics.h"
#include "util/timeutil.h"

/* ------------------------------------------------------------------ */
/* Pins */

void engine__pin(engine *e, struct engine__pins *p)
{
    pthread_mutex_lock(&e->mt_lock);
    p->nmts = 1 + e->nfrozen;
    p->mts = calloc_array(p->nmts, sizeof(*p->mts));
    p->mts[0] = e->active;
    memtable_ref(e->active);
    for (size_t i = 0; i < e->nfrozen; i++) {
        p->mts[1 + i] = e->frozen[e->nfrozen - 1 - i];
        memtable_ref(p->mts[1 + i]);
    }
    p->man = manifest_acquire(e->man);
    pthread_mutex_unlock(&e->mt_lock);
}

void engine__unpin(struct engine__pins *p)
{
    for (size_t i = 0; i < p->nmts; i++)
        memtable_unref(p->mts[i]);
    free(p->mts);
    if (p->man)
        manifest_version_release(p->man);
    memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------------ */
/* Point reads */

enum st_status engine__lookup(engine *e, uint32_t table, const void *key, size_t len, uint64_t snap,
                              struct engine__found *f, struct err *err)
{
    uint64_t hash = key_hash(key, len);
    const struct manifest_table *mt;
    struct memtable_rec rec;
    struct segment_rec srec;
    enum st_status rc;

    memset(f, 0, sizeof(*f));
    strbuf_init(&f->buf, 0);
    engine__pin(e, &f->pins);
    for (size_t i = 0; i < f->pins.nmts; i++) {
        if (memtable_get(f->pins.mts[i], table, key, len, hash, snap, &rec)) {
            f->version = rec.version;
            f->schema_version = rec.schema_version;
            f->tombstone = rec.tombstone;
            f->row = rec.row;
            return ST_OK;
        }
    }
    mt = manifest_find_table(f->pins.man, table);
    for (size_t i = 0; mt && i < mt->nsegs; i++) {
        if (mt->segs[i]->info.min_version > snap)
            continue;
        rc = segment_get(mt->segs[i]->seg, key, len, snap, &srec, &f->buf, err);
        if (rc == ST_ENOTFOUND)
            continue;
        if (rc) {
            if (rc == ST_ECORRUPT)
                engine__count_corruption(e);
            engine__found_release(f);
            return rc;
        }
        f->version = srec.version;
        f->schema_version = srec.schema_version;
        f->tombstone = srec.tombstone;
        f->row = srec.row;
        return ST_OK;
    }
    engine__found_release(f);
    return ST_ENOTFOUND;
}

void engine__found_release(struct engine__found *f)
{
    engine__unpin(&f->pins);
    strbuf_release(&f->buf);
    f->row = NULL;
}

/* Checks as_of and returns the version a read runs at. */
static enum st_status read_version(engine *e, uint64_t as_of, uint64_t *out, struct err *err)
{
    enum st_status rc;

    *out = mvcc_visible(e->mvcc);
    if (!as_of)
        return ST_OK;
    rc = mvcc_check_read(e->mvcc, as_of, err);
    if (rc == ST_OK)
        *out = as_of;
    return rc;
}

enum st_status engine_get(engine *e, const char *tenant, const char *table, const char *const *key,
                          size_t nkey, uint64_t as_of, struct engine_record *out, struct err *err)
{
    struct catalog_snap *snap = catalog_acquire(e->cat);
    struct strbuf kbuf = STRBUF_INIT;
    const struct catalog_table *tb;
    struct engine__found *f = NULL;
    uint64_t version;
    enum st_status rc;

    memset(out, 0, sizeof(*out));
    tb = engine__find_table(snap, tenant, table, err);
    if (!tb) {
        rc = ST_ENOTFOUND;
        goto out;
    }
    strbuf_grow(&kbuf, 256);
    rc = engine__encode_key(catalog_table_schema(tb), key, nkey, &kbuf, err);
    if (rc)
        goto out;
    rc = read_version(e, as_of, &version, err);
    if (rc)
        goto out;
    f = xmalloc(sizeof(*f));
    rc = engine__lookup(e, (uint32_t)catalog_table_id(tb), kbuf.buf, kbuf.len, version, f, err);
    if (rc == ST_OK && f->tombstone) {
        engine__found_release(f);
        rc = ST_ENOTFOUND;
    }
    if (rc == ST_ENOTFOUND)
        err_set(err, ST_ENOTFOUND, "no record with that key in table '%s'", table);
    if (rc) {
        free(f);
        f = NULL;
        goto out;
    }
    out->version = version;
    out->record_version = f->version;
    out->schema = catalog_table_schema_version(tb, f->schema_version);
    out->current = catalog_table_schema(tb);
    out->row = f->row;
    if (!out->schema)
        ST_BUG("row of table %s at schema version %u, which the catalog lacks", table,
               f->schema_version);
    out->priv = f;
    out->snap = snap;
    snap = NULL;
out:
    strbuf_release(&kbuf);
    if (snap)
        catalog_release(snap);
    return rc;
}

void engine_record_release(struct engine_record *rec)
{
    if (rec->priv) {
        engine__found_release(rec->priv);
        free(rec->priv);
    }
    if (rec->snap)
        catalog_release(rec->snap);
    memset(rec, 0, sizeof(*rec));
}

/* ------------------------------------------------------------------ */
/* Scans */

struct engine_scan {
    engine *e;
    struct catalog_snap *snap;      /* keeps the table and its schemas alive */
    const struct catalog_table *tb; /* the table */
    uint64_t version;               /* the snapshot */
    struct engine__pins pins;       /* what is read */
    struct merge *merge;            /* NULL: nothing to read */
    struct segment_iter **sits;     /* segment iterators (owned by the merge) */
    size_t nsits;
    uint8_t *lo, *hi; /* key bounds, owned */
    size_t lo_len, hi_len;
    bool lo_excl, hi_incl;
    const struct schema *last; /* schema of the last row (cache) */
    struct engine_scan_stats stats;
};

/* Whether [lo, hi) (hi_incl: ]) and the segment's keys can overlap. */
static bool seg_in_key_range(const struct engine_scan *s, struct segment *seg)
{
    const void *a, *b;
    size_t alen, blen;
    int c;

    if (!segment_key_range(seg, &a, &alen, &b, &blen))
        return false;
    if (s->lo) {
        c = key_compare(b, blen, s->lo, s->lo_len);
        if (c < 0 || (c == 0 && s->lo_excl))
            return false;
    }
    if (s->hi) {
        c = key_compare(a, alen, s->hi, s->hi_len);
        if (c > 0 || (c == 0 && !s->hi_incl))
            return false;
    }
    return true;
}

static bool scan_next(void *ctx, const void **row, const struct schema **schema)
{
    struct engine_scan *s = ctx;
    struct merge_rec r;

    if (!s->merge || !merge_next(s->merge, &r))
        return false;
    if (!s->last || s->last->version != r.schema_version) {
        s->last = catalog_table_schema_version(s->tb, r.schema_version);
        if (!s->last)
            ST_BUG("row at schema version %u, which the catalog lacks", r.schema_version);
    }
    *row = r.row;
    *schema = s->last;
    s->stats.rows_scanned++;
    return true;
}

static enum st_status scan_status(void *ctx, struct err *err)
{
    struct engine_scan *s = ctx;
    enum st_status rc = s->merge ? merge_status(s->merge, err) : ST_OK;

    if (rc == ST_ECORRUPT)
        engine__count_corruption(s->e);
    return rc;
}

/* Sets the scan's key bounds from the query's range and the cursor. */
static void scan_bounds(struct engine_scan *s, const struct engine_scan_opts *o)
{
    const struct query_key_range *k = o->keys;

    if (k && k->lo) {
        s->lo = xmalloc(k->lo_len + 1);
        memcpy(s->lo, k->lo, k->lo_len);
        s->lo_len = k->lo_len;
    }
    if (k && k->hi) {
        s->hi = xmalloc(k->hi_len + 1);
        memcpy(s->hi, k->hi, k->hi_len);
        s->hi_len = k->hi_len;
        s->hi_incl = k->hi_incl;
    }
    if (o->after && (!s->lo || key_compare(o->after, o->after_len, s->lo, s->lo_len) >= 0)) {
        free(s->lo);
        s->lo = xmalloc(o->after_len + 1);
        memcpy(s->lo, o->after, o->after_len);
        s->lo_len = o->after_len;
        s->lo_excl = true;
    }
}

/* Tells a segment iterator which of its fields the reader uses (matched by name). */
static void project(struct engine_scan *s, struct segment_iter *it, uint32_t schema_version,
                    const bool *fields)
{
    const struct schema *cur = catalog_table_schema(s->tb);
    const struct schema *ss = catalog_table_schema_version(s->tb, schema_version);
    bool *need;

    if (!ss)
        return; /* not the catalog's: read every field */
    need = calloc_array(ss->nfields ? ss->nfields : 1, sizeof(*need));
    for (uint32_t j = 0; j < ss->nfields; j++) {
        int i = ss == cur ? (int)j
                          : schema_find_field(cur, ss->fields[j].name, strlen(ss->fields[j].name));

        need[j] = i >= 0 && fields[i];
    }
    segment_iter_set_fields(it, need);
    free(need);
}

/* Builds the merge over every source that may hold rows in range. */
static void scan_sources(struct engine_scan *s, const struct engine_scan_opts *o)
{
    uint32_t table = (uint32_t)catalog_table_id(s->tb);
    const struct manifest_table *mt = manifest_find_table(s->pins.man, table);
    size_t nsegs = mt ? mt->nsegs : 0;
    struct merge_source *src = calloc_array(s->pins.nmts + nsegs + 1, sizeof(*src));
    bool timed = o->time && o->time->bounded;
    bool point = o->keys && o->keys->point && !o->after;
    struct memtable_range mr = {s->lo, s->lo_len, s->lo_excl, s->hi, s->hi_len, s->hi_incl};
    struct segment_range sr = {s->lo,      s->lo_len, s->lo_excl, s->hi, s->hi_len,
                               s->hi_incl, false,     0,          0};
    struct merge_opts mo = {.mode = MERGE_READ};
    size_t n = 0;

    if (timed) {
        sr.has_time = true;
        sr.time_lo = o->time->lo;
        sr.time_hi = o->time->hi;
    }
    s->sits = calloc_array(nsegs + 1, sizeof(*s->sits));
    for (size_t i = 0; i < s->pins.nmts; i++) {
        struct memtable_iter *it;
        int64_t lo, hi;

        /*
         * A memtable whose rows all miss the time range is not read (time
         * series: it holds the newest times); it may still hold the
         * newest version of a key an older source has in range.
         */
        if (timed && (!memtable_time_range(s->pins.mts[i], table, &lo, &hi) || hi < o->time->lo ||
                      lo > o->time->hi)) {
            merge_source_skipped_memtable(s->pins.mts[i], table, s->version, &src[n++]);
            s->stats.memtables_skipped++;
            continue;
        }
        it = memtable_iter_new(s->pins.mts[i], table, &mr, s->version, MEMTABLE_ITER_TOMBSTONES);
        merge_source_memtable(it, &src[n++]);
        s->stats.memtables++;
    }
    s->stats.segments_total = nsegs;
    for (size_t i = 0; i < nsegs; i++) {
        const struct manifest_seg *ms = mt->segs[i];
        struct segment_iter *it;

        if (ms->info.min_version > s->version || !seg_in_key_range(s, ms->seg) ||
            (point && !segment_may_contain(ms->seg, s->lo, s->lo_len))) {
            s->stats.segments_skipped++;
            continue;
        }
        if (timed && (!ms->info.has_time || ms->info.max_time < o->time->lo ||
                      ms->info.min_time > o->time->hi)) {
            merge_source_skipped_segment(ms->seg, s->version, &src[n++]);
            s->stats.segments_skipped++;
            continue;
        }
        it = segment_iter_new(ms->seg, &sr, s->version, SEGMENT_ITER_TOMBSTONES);
        if (o->fields)
            project(s, it, ms->info.schema_version, o->fields);
        s->sits[s->nsits++] = it;
        merge_source_segment(it, ms->seg, s->version, timed, &src[n++]);
    }
    s->merge = merge_new(src, n, &mo);
    free(src);
}

enum st_status engine_scan_open(engine *e, const char *tenant, const char *table,
                                const struct engine_scan_opts *opts, struct engine_scan **out,
                                struct err *err)
{
    struct engine_scan *s = xcalloc(1, sizeof(*s));
    enum st_status rc;

    *out = NULL;
    s->e = e;
    s->snap = catalog_acquire(e->cat);
    s->tb = engine__find_table(s->snap, tenant, table, err);
    if (!s->tb) {
        rc = ST_ENOTFOUND;
        goto fail;
    }
    rc = read_version(e, opts ? opts->as_of : 0, &s->version, err);
    if (rc)
        goto fail;
    if (opts && ((opts->keys && opts->keys->empty) || (opts->time && opts->time->empty))) {
        *out = s; /* nothing can match: no sources */
        return ST_OK;
    }
    if (opts)
        scan_bounds(s, opts);
    engine__pin(e, &s->pins);
    if (opts)
        scan_sources(s, opts);
    else {
        struct engine_scan_opts none;

        memset(&none, 0, sizeof(none));
        scan_sources(s, &none);
    }
    *out = s;
    return ST_OK;
fail:
    engine_scan_close(s);
    return rc;
}

void engine_scan_source(struct engine_scan *s, struct query_source *out)
{
    out->next = scan_next;
    out->status = scan_status;
    out->ctx = s;
}

uint64_t engine_scan_version(const struct engine_scan *s)
{
    return s->version;
}

const struct schema *engine_scan_schema(const struct engine_scan *s)
{
    return catalog_table_schema(s->tb);
}

uint64_t engine_scan_table_id(const struct engine_scan *s)
{
    return catalog_table_id(s->tb);
}

uint64_t engine_scan_tenant_id(const struct engine_scan *s)
{
    return catalog_table_tenant_id(s->tb);
}

void engine_scan_get_stats(const struct engine_scan *s, struct engine_scan_stats *out)
{
    *out = s->stats;
    for (size_t i = 0; i < s->nsits; i++) {
        struct segment_iter_stats st;

        segment_iter_get_stats(s->sits[i], &st);
        out->blocks_read += st.blocks_read;
        out->blocks_skipped += st.blocks_skipped_time + st.blocks_skipped_version;
    }
}

void engine_scan_close(struct engine_scan *s)
{
    if (!s)
        return;
    merge_free(s->merge);
    free(s->sits);
    if (s->pins.mts || s->pins.man)
        engine__unpin(&s->pins);
    free(s->lo);
    free(s->hi);
    if (s->snap)
        catalog_release(s->snap);
    free(s);
}

/* ------------------------------------------------------------------ */
/* Held snapshots */

static void count_snapshots(engine *e)
{
    if (e->m_snapshots)
        metric_set(e->m_snapshots, (double)mvcc_snapshot_count(e->mvcc));
}

/* The id of tenant in the current catalog, or 0 (err set). */
static uint64_t tenant_id(engine *e, const char *tenant, struct err *err)
{
    struct catalog_snap *snap = catalog_acquire(e->cat);
    const struct catalog_tenant *t = catalog_find_tenant(snap, tenant, strlen(tenant));
    uint64_t id = t ? catalog_tenant_id(t) : 0;

    catalog_release(snap);
    if (!id)
        err_set(err, ST_ENOTFOUND, "no tenant '%s'", tenant);
    return id;
}

enum st_status engine_snapshot_hold(engine *e, const char *tenant, int64_t ttl_ms,
                                    struct engine_snapshot *out, struct err *err)
{
    uint64_t owner = tenant_id(e, tenant, err);
    struct mvcc_snapshot ms;
    int64_t now = time_wall_ms();
    enum st_status rc;

    if (!owner)
        return ST_ENOTFOUND;
    mvcc_snapshot_expire(e->mvcc, now);
    rc = mvcc_snapshot_hold(e->mvcc, owner, 0, now, ttl_ms, &ms, err);
    count_snapshots(e);
    if (rc)
        return rc;
    out->id = ms.id;
    out->version = ms.version;
    out->expires_ms = ms.expires_ms;
    return ST_OK;
}

enum st_status engine_snapshot_release(engine *e, const char *tenant, uint64_t id, struct err *err)
{
    uint64_t owner = tenant_id(e, tenant, err);

    if (!owner)
        return ST_ENOTFOUND;
    if (mvcc_snapshot_release(e->mvcc, owner, id) != ST_OK)
        return err_set(err, ST_ENOTFOUND, "no snapshot '%llu'", (unsigned long long)id);
    count_snapshots(e);
    return ST_OK;
}

const uint8_t *engine_secret(engine *e)
{
    return e->secret;
}

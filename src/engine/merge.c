/*
 * merge: the k-way merge of a table's sources (see merge.h for the
 * contract).
 *
 * DESIGN
 *
 * A binary min-heap holds the sources that have a current entry, ordered
 * by (key ascending, version descending, source index ascending); the
 * key order is key_compare()'s, memcmp() then the shorter first, which
 * is the natural order of key.h's encoding. The heap stores source
 * indices; each source keeps its current entry in place, so a step is
 * one next() call and one sift-down of the root, with no allocation.
 *
 * Borrowing: a source's entry is valid until its next next() call, and
 * the merge yields entries by pointer. So the source whose entry was
 * yielded stays at the root, unadvanced, until the following
 * merge_next() (the "pending" flag). To recognise later entries of the
 * same key, the merge copies each new key into a buffer of its own
 * (grown, never shrunk): one memcpy per distinct key.
 *
 * Read mode: the first entry of a key off the heap is the newest one
 * from the lowest-index source (sources do not overlap in versions);
 * every later entry with that key, from any source, is skipped. A
 * tombstone drops the key. Before yielding a row taken from source i the
 * merge asks the sources j < i that have a hides() callback (kept in a
 * short ascending list) and drops the key when one says yes.
 *
 * Compaction mode, per key, entries newest first: versions above the
 * horizon pass; the first one at or below it is "the newest <= H" and is
 * kept, except a tombstone at the bottom (dropped) and an expired row
 * (a tombstone instead, or dropped at the bottom); everything after it
 * is dropped. An entry with the version of the previous entry of the
 * same key (the same write in two sources, which should not happen) is
 * dropped as a duplicate, keeping the lower source's, because segment
 * writers take each (key, version) once.
 *
 * Counters in compaction mode: versions_dropped counts the entries
 * dropped below the newest <= H (and duplicates), except below a
 * tombstone dropped at the bottom, where tombstones_dropped counts the
 * tombstone and the entries it hid; expired counts the expired rows
 * (turned into tombstones or, at the bottom, dropped). So
 * entries_in = entries_out + versions_dropped + tombstones_dropped
 * (+ expired when bottom is set).
 *
 * Errors: a source whose next() returns false is asked for its status();
 * an error there (or after a hides() that said yes) is copied into the
 * merge, which then yields nothing more.
 *
 * The adapters wrap memtable and segment iterators. The segment one's
 * hides() answers, when asked to (check_hidden, set for iterators with a
 * time range), with segment_get() at the snapshot behind a bloom filter
 * probe. It does so whether or not the iterator skipped blocks by time:
 * an iterator also drops a key whose newest version it read but whose
 * time is out of range (or null), and that version must hide the older
 * sources' versions of the key just the same. The keys hides() is asked
 * about are ones this segment did not yield, so segment_get() only finds
 * the keys it must hide, plus bloom false positives.
 */
#include "engine/merge.h"

#include <stdlib.h>
#include <string.h>

#include "engine/key.h"
#include "engine/memtable.h"
#include "engine/segment.h"
#include "util/strbuf.h"

struct msrc {
    struct merge_rec cur;  /* the current entry, while in the heap */
    struct merge_source s; /* the source (owned) */
    uint32_t idx;          /* its index: newest data first */
};

struct merge {
    struct msrc *src;         /* nsrc sources */
    size_t nsrc;              /* how many */
    uint32_t *heap;           /* indices of sources with a current entry */
    size_t nheap;             /* how many */
    uint32_t *hiders;         /* indices of sources with hides(), ascending */
    size_t nhiders;           /* how many */
    struct merge_opts opts;   /* copied */
    struct merge_stats stats; /* counters */
    bool started;             /* sources primed */
    bool pending;             /* the root's entry was yielded: advance it first */
    bool done;                /* at the end */
    uint8_t *lk;              /* copy of the current key */
    size_t lk_len;            /* its length */
    size_t lk_cap;            /* bytes allocated */
    bool have_lk;             /* lk is set */
    bool solo;                /* read mode: one source left, past every key
                               * taken so far: its keys need no comparing */
    uint64_t last_ver;        /* compaction: version of the key's previous entry */
    bool le_seen;             /* compaction: the key's newest <= H was seen */
    bool tomb_dropped;        /* compaction: that one was a tombstone dropped at the bottom */
    enum st_status status;    /* sticky error */
    struct err err;           /* its message */
};

/* ------------------------------------------------------------------ */
/* The heap */

/* The first 8 bytes of a key (at least 8 long) as a big-endian number. */
static inline uint64_t prefix8(const void *p)
{
    uint64_t x;

    memcpy(&x, p, 8);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap64(x);
#elif !defined(__GNUC__)
    {
        const uint8_t *b = p;

        x = 0;
        for (int i = 0; i < 8; i++)
            x = x << 8 | b[i];
    }
#endif
    return x;
}

/*
 * Whether a's entry comes before b's. Keys of 8 bytes or more are first
 * told apart by their first 8 bytes in one comparison (most keys differ
 * there), then by key_compare().
 */
static inline bool before(const struct msrc *a, const struct msrc *b)
{
    int c;

    if (a->cur.key_len >= 8 && b->cur.key_len >= 8) {
        uint64_t x = prefix8(a->cur.key);
        uint64_t y = prefix8(b->cur.key);

        if (x != y)
            return x < y;
    }
    c = key_compare(a->cur.key, a->cur.key_len, b->cur.key, b->cur.key_len);
    if (c)
        return c < 0;
    if (a->cur.version != b->cur.version)
        return a->cur.version > b->cur.version;
    return a->idx < b->idx;
}

static void sift_down(struct merge *m, size_t i)
{
    uint32_t *h = m->heap;
    size_t n = m->nheap;
    uint32_t x = h[i];
    const struct msrc *xs = &m->src[x];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= n)
            break;
        if (c + 1 < n && before(&m->src[h[c + 1]], &m->src[h[c]]))
            c++;
        if (!before(&m->src[h[c]], xs))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void sift_up(struct merge *m, size_t i)
{
    uint32_t *h = m->heap;
    uint32_t x = h[i];
    const struct msrc *xs = &m->src[x];

    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (!before(xs, &m->src[h[p]]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

/* Records a source's error; the merge ends. */
static void fail_from(struct merge *m, const struct msrc *s)
{
    if (m->status || !s->s.status)
        return;
    err_clear(&m->err);
    m->status = s->s.status(s->s.ctx, &m->err);
    if (m->status && !m->err.msg[0])
        err_set(&m->err, m->status, "merge source %u failed: %s", s->idx, status_str(m->status));
}

/* Reads s's next entry; false at its end or on error (m->status). */
static bool advance(struct merge *m, struct msrc *s)
{
    if (ST_LIKELY(s->s.next(s->s.ctx, &s->cur))) {
        m->stats.entries_in++;
        return true;
    }
    fail_from(m, s);
    return false;
}

/* Advances the root's source; false on error. */
static bool step(struct merge *m)
{
    if (advance(m, &m->src[m->heap[0]])) {
        sift_down(m, 0);
        return true;
    }
    if (m->status)
        return false;
    m->heap[0] = m->heap[--m->nheap];
    if (m->nheap)
        sift_down(m, 0);
    return true;
}

/* Reads every source's first entry into the heap; false on error. */
static bool prime(struct merge *m)
{
    m->started = true;
    for (size_t i = 0; i < m->nsrc; i++) {
        if (!advance(m, &m->src[i])) {
            if (m->status)
                return false;
            continue;
        }
        m->heap[m->nheap++] = (uint32_t)i;
        sift_up(m, m->nheap - 1);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Merging */

static bool same_key(const struct merge *m, const struct merge_rec *r)
{
    return m->have_lk && r->key_len == m->lk_len &&
           (!m->lk_len || !memcmp(r->key, m->lk, m->lk_len));
}

static void save_key(struct merge *m, const struct merge_rec *r)
{
    if (r->key_len > m->lk_cap) {
        m->lk_cap = ST_MAX((size_t)r->key_len, 2 * m->lk_cap);
        free(m->lk);
        m->lk = xmalloc(m->lk_cap);
    }
    if (r->key_len)
        memcpy(m->lk, r->key, r->key_len);
    m->lk_len = r->key_len;
    m->have_lk = true;
}

/* Read mode: whether a source newer than idx hides key; false with m->status on error. */
static bool hidden(struct merge *m, uint32_t idx, const struct merge_rec *r)
{
    for (size_t k = 0; k < m->nhiders && m->hiders[k] < idx; k++) {
        struct msrc *s = &m->src[m->hiders[k]];

        if (s->s.hides(s->s.ctx, r->key, r->key_len)) {
            fail_from(m, s);
            return true;
        }
    }
    return false;
}

enum gc_action {
    GC_KEEP,
    GC_DROP,
    GC_TOMBSTONE,
};

/* Compaction mode: what becomes of r, the entry at the root. */
static enum gc_action gc(struct merge *m, const struct merge_rec *r)
{
    const struct merge_opts *o = &m->opts;

    if (!same_key(m, r)) {
        save_key(m, r);
        m->le_seen = false;
        m->tomb_dropped = false;
    } else if (r->version == m->last_ver) {
        m->stats.versions_dropped++; /* a duplicate of the previous entry */
        return GC_DROP;
    }
    m->last_ver = r->version;
    if (o->horizon == 0 || r->version > o->horizon)
        return GC_KEEP;
    if (m->le_seen) {
        if (m->tomb_dropped)
            m->stats.tombstones_dropped++;
        else
            m->stats.versions_dropped++;
        return GC_DROP;
    }
    m->le_seen = true;
    if (r->tombstone) {
        if (!o->bottom)
            return GC_KEEP;
        m->tomb_dropped = true;
        m->stats.tombstones_dropped++;
        return GC_DROP;
    }
    if (o->expired && o->expired(o->expired_arg, r)) {
        m->stats.expired++;
        return o->bottom ? GC_DROP : GC_TOMBSTONE;
    }
    return GC_KEEP;
}

/* Read mode: whether the root's entry r is yielded; false with m->status on error. */
static bool read_take(struct merge *m, const struct merge_rec *r, uint32_t idx)
{
    /*
     * A read-mode source yields each key once, so once only one source is
     * left and its entry is past the last key taken, nothing is compared
     * or copied any more (the common case: one segment, empty memtables).
     */
    if (!m->solo || m->nheap != 1) {
        if (same_key(m, r))
            return false;
        save_key(m, r);
        m->solo = m->nheap == 1;
    }
    if (r->tombstone)
        return false;
    if (m->nhiders && m->hiders[0] < idx && hidden(m, idx, r)) {
        if (!m->status)
            m->stats.hidden++;
        return false;
    }
    return true;
}

bool merge_next(struct merge *m, struct merge_rec *out)
{
    if (m->status || m->done)
        return false;
    if (!m->started) {
        if (!prime(m))
            return false;
    } else if (m->pending) {
        m->pending = false;
        if (!step(m))
            return false;
    }
    while (m->nheap) {
        const struct msrc *s = &m->src[m->heap[0]];
        const struct merge_rec *r = &s->cur;
        enum gc_action a;

        if (m->opts.mode == MERGE_READ) {
            a = read_take(m, r, s->idx) ? GC_KEEP : GC_DROP;
            if (m->status)
                return false;
        } else {
            a = gc(m, r);
        }
        if (a == GC_DROP) {
            if (!step(m))
                return false;
            continue;
        }
        *out = *r;
        if (a == GC_TOMBSTONE) {
            out->tombstone = true;
            out->row = NULL;
            out->row_len = 0;
        }
        m->pending = true;
        m->stats.entries_out++;
        return true;
    }
    m->done = true;
    return false;
}

struct merge *merge_new(const struct merge_source *src, size_t nsrc, const struct merge_opts *opts)
{
    struct merge *m = xcalloc(1, sizeof(*m));

    st_assert(nsrc < UINT32_MAX);
    m->opts = *opts;
    m->nsrc = nsrc;
    m->src = calloc_array(nsrc ? nsrc : 1, sizeof(*m->src));
    m->heap = calloc_array(nsrc ? nsrc : 1, sizeof(*m->heap));
    m->hiders = calloc_array(nsrc ? nsrc : 1, sizeof(*m->hiders));
    for (size_t i = 0; i < nsrc; i++) {
        st_assert(src[i].next);
        m->src[i].s = src[i];
        m->src[i].idx = (uint32_t)i;
        if (src[i].hides && opts->mode == MERGE_READ)
            m->hiders[m->nhiders++] = (uint32_t)i;
    }
    err_clear(&m->err);
    return m;
}

enum st_status merge_status(const struct merge *m, struct err *err)
{
    if (m->status && err)
        *err = m->err;
    return m->status;
}

void merge_get_stats(const struct merge *m, struct merge_stats *out)
{
    *out = m->stats;
}

void merge_free(struct merge *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nsrc; i++)
        if (m->src[i].s.free)
            m->src[i].s.free(m->src[i].s.ctx);
    free(m->src);
    free(m->heap);
    free(m->hiders);
    free(m->lk);
    free(m);
}

/* ------------------------------------------------------------------ */
/* Memtable iterators */

static bool mt_next(void *ctx, struct merge_rec *out)
{
    struct memtable_rec r;

    if (!memtable_iter_next(ctx, &r))
        return false;
    out->key = r.key;
    out->key_len = r.key_len;
    out->version = r.version;
    out->schema_version = r.schema_version;
    out->tombstone = r.tombstone;
    out->row = r.row;
    out->row_len = r.row_len;
    return true;
}

static void mt_free(void *ctx)
{
    memtable_iter_free(ctx);
}

void merge_source_memtable(struct memtable_iter *it, struct merge_source *out)
{
    memset(out, 0, sizeof(*out));
    out->next = mt_next;
    out->free = mt_free;
    out->ctx = it;
}

/* ------------------------------------------------------------------ */
/* Segment iterators and skipped segments */

struct seg_src {
    struct segment_iter *it; /* owned; NULL for a skipped segment */
    struct segment *seg;     /* it's segment, or a reference of our own without it */
    uint64_t snap;           /* snapshot of hides() */
    bool check_hidden;       /* hides() reads the segment */
    struct strbuf buf;       /* rows read by hides() */
    enum st_status status;   /* a hides() failure (sticky) */
    struct err err;          /* its message */
};

static bool seg_next(void *ctx, struct merge_rec *out)
{
    struct seg_src *ss = ctx;
    struct segment_rec r;

    if (!ss->it || !segment_iter_next(ss->it, &r))
        return false;
    out->key = r.key;
    out->key_len = r.key_len;
    out->version = r.version;
    out->schema_version = r.schema_version;
    out->tombstone = r.tombstone;
    out->row = r.row;
    out->row_len = r.row_len;
    return true;
}

static enum st_status seg_status(void *ctx, struct err *err)
{
    struct seg_src *ss = ctx;
    enum st_status rc = ss->it ? segment_iter_status(ss->it, err) : ST_OK;

    if (rc)
        return rc;
    if (ss->status && err)
        *err = ss->err;
    return ss->status;
}

static bool seg_hides(void *ctx, const void *key, size_t len)
{
    struct seg_src *ss = ctx;
    struct segment_rec r;
    enum st_status rc;

    if (!ss->check_hidden)
        return false;
    if (ss->status)
        return true;
    if (!segment_may_contain(ss->seg, key, len))
        return false;
    rc = segment_get(ss->seg, key, len, ss->snap, &r, &ss->buf, &ss->err);
    if (rc == ST_ENOTFOUND)
        return false;
    if (rc)
        ss->status = rc;
    return true;
}

static void seg_free(void *ctx)
{
    struct seg_src *ss = ctx;

    if (ss->it)
        segment_iter_free(ss->it);
    else
        segment_unref(ss->seg);
    strbuf_release(&ss->buf);
    free(ss);
}

static void seg_source(struct segment_iter *it, struct segment *seg, uint64_t snap,
                       bool check_hidden, struct merge_source *out)
{
    struct seg_src *ss = xcalloc(1, sizeof(*ss));

    ss->it = it;
    ss->seg = seg;
    ss->snap = snap;
    ss->check_hidden = check_hidden;
    strbuf_init(&ss->buf, 0);
    err_clear(&ss->err);
    memset(out, 0, sizeof(*out));
    out->next = seg_next;
    out->status = seg_status;
    out->hides = check_hidden ? seg_hides : NULL;
    out->free = seg_free;
    out->ctx = ss;
}

void merge_source_segment(struct segment_iter *it, struct segment *seg, uint64_t snap,
                          bool check_hidden, struct merge_source *out)
{
    seg_source(it, seg, snap, check_hidden, out);
}

void merge_source_skipped_segment(struct segment *seg, uint64_t snap, struct merge_source *out)
{
    segment_ref(seg);
    seg_source(NULL, seg, snap, true, out);
}

/* A memtable left unread: it only answers hides() with a point read. */
struct skipped_mt {
    struct memtable *mt; /* a reference */
    uint32_t table;
    uint64_t snap;
};

static bool skipped_mt_next(void *ctx, struct merge_rec *out)
{
    (void)ctx;
    (void)out;
    return false;
}

static bool skipped_mt_hides(void *ctx, const void *key, size_t len)
{
    struct skipped_mt *s = ctx;
    struct memtable_rec rec;

    return memtable_get(s->mt, s->table, key, len, key_hash(key, len), s->snap, &rec);
}

static void skipped_mt_free(void *ctx)
{
    struct skipped_mt *s = ctx;

    memtable_unref(s->mt);
    free(s);
}

void merge_source_skipped_memtable(struct memtable *mt, uint32_t table, uint64_t snap,
                                   struct merge_source *out)
{
    struct skipped_mt *s = xcalloc(1, sizeof(*s));

    memtable_ref(mt);
    s->mt = mt;
    s->table = table;
    s->snap = snap;
    memset(out, 0, sizeof(*out));
    out->next = skipped_mt_next;
    out->hides = skipped_mt_hides;
    out->free = skipped_mt_free;
    out->ctx = s;
}

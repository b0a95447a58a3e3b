/*
 * The manifest: the list of live segment files, rewritten whole and
 * atomically on every change, with immutable reference-counted versions
 * in memory; and the tiered compaction picker.
 *
 * DESIGN
 *
 * A version (struct mversion) owns one segment reference per segment it
 * lists, its tables' index arrays and its clock samples; nothing in it
 * changes after it is published. The manifest holds one reference to the
 * current version; manifest_acquire() adds one under a short mutex
 * (m->lock), and the last manifest_version_release() frees the version
 * and drops its segment references. A segment an edit removes is marked
 * with segment_unlink_on_close(), so its file goes when the last version
 * or reader that holds it lets go.
 *
 * Edits are serialised by m->edit_lock, held across the whole of
 * manifest_apply() including its I/O, so acquire never waits for an
 * fsync: m->lock only guards the current-version pointer and the id
 * counter. Lock order: edit_lock, then lock.
 *
 * manifest_apply() builds the next version from the current one, checks
 * it (removed ids live, added ids new and handed out, the no-overlap
 * invariant), encodes it, writes MANIFEST.tmp, fsyncs it, renames it over
 * MANIFEST and fsyncs the data directory, and only then swaps it in. A
 * failure before the rename leaves everything as it was (the added
 * segments' files are unlinked, as the header promises). A failure of
 * the directory fsync after the rename leaves the new MANIFEST visible
 * but perhaps not durable: the edit reports ST_EIO, the old version stays
 * current, no file is unlinked (either MANIFEST may survive a crash, and
 * every file that either lists is kept), and the manifest refuses every
 * later edit with ST_EIO (sticky, like the WAL) so memory and disk cannot
 * drift further apart; the next manifest_open() deletes whatever the
 * surviving file does not list.
 *
 * MANIFEST FILE FORMAT (version 1; all integers little-endian; do not
 * change: on-disk format)
 *
 *   offset      size    field
 *   0           8       magic "STRATAMF"
 *   8           4       format version, 1
 *   12          4       S, segment entries (<= MANIFEST_MAX_SEGMENTS)
 *   16          4       C, clock samples (<= MANIFEST_MAX_CLOCK)
 *   20          4       reserved, 0
 *   24          8       generation
 *   32          8       flushed_version
 *   40          8       floor
 *   48          8       next_id
 *   56          20 x S  segment entries: u64 id, u64 table_id, u32 level
 *   56 + 20S    16 x C  clock samples: i64 wall_ms (two's complement),
 *                       u64 version
 *   56+20S+16C  4       CRC32C of every byte before it
 *
 * The file is exactly 60 + 20 S + 16 C bytes. A reader checks, in this
 * order: the length covers the fixed header, the magic, the version, the
 * counts against the limits (before allocating anything), the exact
 * length, the CRC, the reserved word, then that no id appears twice and
 * every id is below next_id. Any failure is ST_ECORRUPT with the offset
 * of the bad field. Entries are written grouped by table (ascending),
 * newest segment first; a reader does not rely on that order.
 *
 * Segment files are DATA_DIR/segments/<id as 16 lowercase hex digits>.seg.
 */
#include "engine/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"
#include "util/le.h"
#include "util/log.h"
#include "util/strbuf.h"

#define MAGIC      "STRATAMF"
#define HEAD_SIZE  56
#define SEG_SIZE   20
#define CLOCK_SIZE 16
#define CRC_SIZE   4

#define DEFAULT_FANOUT       4u
#define DEFAULT_BASE_BYTES   (4u << 20)
#define DEFAULT_MAX_SEGMENTS 24u

/* One immutable version; pub first so that the public pointer converts back. */
struct mversion {
    struct manifest_version pub;   /* what callers see */
    atomic_size_t refs;            /* references: the manifest's and readers' */
    struct manifest_seg *segs;     /* nsegs; sorted by table, then newest first */
    size_t nsegs;                  /* entries in segs */
    struct manifest_seg **by_id;   /* nsegs pointers into segs, ascending id */
    struct manifest_seg **ptrs;    /* nsegs pointers into segs, the tables' arrays */
    struct manifest_table *tables; /* pub.ntables */
    struct manifest_clock *clock;  /* pub.nclock */
};

/*
 * Lock rules: edit_lock serialises manifest_apply() and is held across
 * its I/O; lock guards cur and next_id and is held only for pointer and
 * counter updates. Take edit_lock first when both are needed.
 */
struct manifest {
    struct fs *fs;             /* the file system */
    char *dir;                 /* DATA_DIR */
    char *seg_dir;             /* DATA_DIR/segments */
    char *path;                /* DATA_DIR/MANIFEST */
    char *tmp;                 /* DATA_DIR/MANIFEST.tmp */
    pthread_mutex_t edit_lock; /* one edit at a time */
    pthread_mutex_t lock;      /* guards cur and next_id */
    struct mversion *cur;      /* the current version; one reference held */
    uint64_t next_id;          /* the next id manifest_new_segment() hands out */
    bool failed;               /* an edit failed after its rename: edits refused */
};

/* ------------------------------------------------------------------ */
/* Bytes */

/* ------------------------------------------------------------------ */
/* The file */

void manifest_encode(const struct manifest_image *img, struct strbuf *out)
{
    size_t start = out->len;

    st_assert(img->nsegs <= MANIFEST_MAX_SEGMENTS && img->nclock <= MANIFEST_MAX_CLOCK);
    strbuf_grow(out, HEAD_SIZE + img->nsegs * SEG_SIZE + img->nclock * CLOCK_SIZE + CRC_SIZE);
    strbuf_add(out, MAGIC, 8);
    le_add(out, MANIFEST_FORMAT_VERSION, 4);
    le_add(out, img->nsegs, 4);
    le_add(out, img->nclock, 4);
    le_add(out, 0, 4);
    le_add(out, img->generation, 8);
    le_add(out, img->flushed_version, 8);
    le_add(out, img->floor, 8);
    le_add(out, img->next_id, 8);
    for (size_t i = 0; i < img->nsegs; i++) {
        le_add(out, img->segs[i].id, 8);
        le_add(out, img->segs[i].table_id, 8);
        le_add(out, img->segs[i].level, 4);
    }
    for (size_t i = 0; i < img->nclock; i++) {
        le_add(out, (uint64_t)img->clock[i].wall_ms, 8);
        le_add(out, img->clock[i].version, 8);
    }
    le_add(out, crc32c(out->buf + start, out->len - start), 4);
}

void manifest_image_release(struct manifest_image *img)
{
    if (!img)
        return;
    free(img->segs);
    free(img->clock);
    memset(img, 0, sizeof(*img));
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* What is wrong with a file and where. */
struct damage {
    size_t off;    /* offset of the bad field */
    char why[120]; /* what is wrong */
};

static enum st_status damaged(struct damage *d, size_t off, const char *fmt, ...) ST_PRINTF(3, 4);

static enum st_status damaged(struct damage *d, size_t off, const char *fmt, ...)
{
    va_list ap;

    d->off = off;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof(d->why), fmt, ap);
    va_end(ap);
    return ST_ECORRUPT;
}

/* Checks ids: none twice (reported at the second one's entry), all below next_id. */
static enum st_status check_ids(const struct manifest_image *img, struct damage *d)
{
    uint64_t *ids;
    enum st_status rc = ST_OK;

    for (size_t i = 0; i < img->nsegs; i++)
        if (img->segs[i].id >= img->next_id)
            return damaged(d, HEAD_SIZE + i * SEG_SIZE,
                           "segment id %" PRIu64 " is not below next id %" PRIu64, img->segs[i].id,
                           img->next_id);
    ids = calloc_array(img->nsegs, sizeof(*ids));
    for (size_t i = 0; i < img->nsegs; i++)
        ids[i] = img->segs[i].id;
    qsort(ids, img->nsegs, sizeof(*ids), u64_cmp);
    for (size_t i = 1; i < img->nsegs && !rc; i++) {
        if (ids[i] != ids[i - 1])
            continue;
        for (size_t j = 0, seen = 0; j < img->nsegs; j++) {
            if (img->segs[j].id == ids[i] && seen++) {
                rc = damaged(d, HEAD_SIZE + j * SEG_SIZE, "segment id %" PRIu64 " listed twice",
                             ids[i]);
                break;
            }
        }
    }
    free(ids);
    return rc;
}

static enum st_status decode(const uint8_t *p, size_t len, struct manifest_image *out,
                             struct damage *d)
{
    struct manifest_image img;
    uint64_t nsegs, nclock, want, ver;
    const uint8_t *q;
    enum st_status rc;

    memset(out, 0, sizeof(*out));
    if (len < HEAD_SIZE + CRC_SIZE)
        return damaged(d, len, "file ends early (%zu bytes)", len);
    if (memcmp(p, MAGIC, 8) != 0)
        return damaged(d, 0, "bad magic");
    ver = le_get(p + 8, 4);
    if (ver != MANIFEST_FORMAT_VERSION)
        return damaged(d, 8, "unknown format version %" PRIu64, ver);
    nsegs = le_get(p + 12, 4);
    if (nsegs > MANIFEST_MAX_SEGMENTS)
        return damaged(d, 12, "%" PRIu64 " segments, over the limit of %u", nsegs,
                       MANIFEST_MAX_SEGMENTS);
    nclock = le_get(p + 16, 4);
    if (nclock > MANIFEST_MAX_CLOCK)
        return damaged(d, 16, "%" PRIu64 " clock samples, over the limit of %u", nclock,
                       MANIFEST_MAX_CLOCK);
    want = HEAD_SIZE + nsegs * SEG_SIZE + nclock * CLOCK_SIZE + CRC_SIZE;
    if (len < want)
        return damaged(d, len, "file ends early (%zu of %" PRIu64 " bytes)", len, want);
    if (len > want)
        return damaged(d, (size_t)want, "%zu bytes after the end of the manifest",
                       len - (size_t)want);
    if (crc32c(p, len - CRC_SIZE) != le_get(p + len - CRC_SIZE, 4))
        return damaged(d, len - CRC_SIZE, "checksum mismatch");
    if (le_get(p + 20, 4) != 0)
        return damaged(d, 20, "reserved field is not zero");

    memset(&img, 0, sizeof(img));
    img.generation = le_get(p + 24, 8);
    img.flushed_version = le_get(p + 32, 8);
    img.floor = le_get(p + 40, 8);
    img.next_id = le_get(p + 48, 8);
    img.nsegs = (size_t)nsegs;
    img.nclock = (size_t)nclock;
    img.segs = calloc_array(img.nsegs, sizeof(*img.segs));
    img.clock = calloc_array(img.nclock, sizeof(*img.clock));
    q = p + HEAD_SIZE;
    for (size_t i = 0; i < img.nsegs; i++, q += SEG_SIZE) {
        img.segs[i].id = le_get(q, 8);
        img.segs[i].table_id = le_get(q + 8, 8);
        img.segs[i].level = (uint32_t)le_get(q + 16, 4);
    }
    for (size_t i = 0; i < img.nclock; i++, q += CLOCK_SIZE) {
        img.clock[i].wall_ms = (int64_t)le_get(q, 8);
        img.clock[i].version = le_get(q + 8, 8);
    }
    if ((rc = check_ids(&img, d))) {
        manifest_image_release(&img);
        return rc;
    }
    *out = img;
    return ST_OK;
}

enum st_status manifest_decode(const void *bytes, size_t len, struct manifest_image *out,
                               struct err *err)
{
    struct damage d;

    if (decode(bytes, len, out, &d))
        return err_set(err, ST_ECORRUPT, "manifest is corrupt at offset %zu: %s", d.off, d.why);
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Versions */

static struct mversion *version_alloc(size_t nsegs, size_t nclock)
{
    struct mversion *v = xcalloc(1, sizeof(*v));

    atomic_init(&v->refs, 1);
    v->segs = calloc_array(nsegs, sizeof(*v->segs));
    v->by_id = calloc_array(nsegs, sizeof(*v->by_id));
    v->ptrs = calloc_array(nsegs, sizeof(*v->ptrs));
    v->clock = calloc_array(nclock, sizeof(*v->clock));
    v->pub.clock = v->clock;
    v->pub.nclock = nclock;
    return v;
}

/* Frees v, dropping the segment references it holds (set in segs[0..nsegs)). */
static void version_free(struct mversion *v)
{
    for (size_t i = 0; i < v->nsegs; i++)
        segment_unref(v->segs[i].seg);
    free(v->segs);
    free(v->by_id);
    free(v->ptrs);
    free(v->tables);
    free(v->clock);
    free(v);
}

static void version_unref(struct mversion *v)
{
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        version_free(v);
}

/* Table ascending, then newest first (max_version descending), then id descending. */
static int seg_order(const void *a, const void *b)
{
    const struct manifest_seg *x = a;
    const struct manifest_seg *y = b;

    if (x->table_id != y->table_id)
        return x->table_id < y->table_id ? -1 : 1;
    if (x->info.max_version != y->info.max_version)
        return x->info.max_version > y->info.max_version ? -1 : 1;
    if (x->id != y->id)
        return x->id > y->id ? -1 : 1;
    return 0;
}

static int by_id_order(const void *a, const void *b)
{
    const struct manifest_seg *x = *(struct manifest_seg *const *)a;
    const struct manifest_seg *y = *(struct manifest_seg *const *)b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* Whether two non-empty segments' version ranges meet. */
static bool overlaps(const struct manifest_seg *a, const struct manifest_seg *b)
{
    if (a->info.entries == 0 || b->info.entries == 0)
        return false;
    return a->info.min_version <= b->info.max_version && b->info.min_version <= a->info.max_version;
}

/*
 * Sorts v->segs (filled, nsegs set), builds the tables and the id index,
 * and checks the invariants: ids unique, and per table no two segments
 * with entries overlap in versions. On failure describes the problem in
 * why and leaves v for version_free().
 */
static bool version_index(struct mversion *v, char *why, size_t whylen)
{
    size_t ntables = 0;
    uint64_t bytes = 0;

    qsort(v->segs, v->nsegs, sizeof(*v->segs), seg_order);
    for (size_t i = 0; i < v->nsegs; i++) {
        v->by_id[i] = &v->segs[i];
        v->ptrs[i] = &v->segs[i];
        bytes += v->segs[i].info.file_bytes;
        if (i == 0 || v->segs[i].table_id != v->segs[i - 1].table_id)
            ntables++;
    }
    qsort(v->by_id, v->nsegs, sizeof(*v->by_id), by_id_order);
    for (size_t i = 1; i < v->nsegs; i++) {
        if (v->by_id[i]->id == v->by_id[i - 1]->id) {
            snprintf(why, whylen, "segment id %" PRIu64 " listed twice", v->by_id[i]->id);
            return false;
        }
    }
    /*
     * Sorted newest first within a table, non-empty segments must each
     * end below the start of the previous non-empty one.
     */
    for (size_t i = 0, prev = SIZE_MAX; i < v->nsegs; i++) {
        const struct manifest_seg *s = &v->segs[i];

        if (i && s->table_id != v->segs[i - 1].table_id)
            prev = SIZE_MAX;
        if (s->info.entries == 0)
            continue;
        if (prev != SIZE_MAX && overlaps(&v->segs[prev], s)) {
            snprintf(why, whylen,
                     "segments %" PRIu64 " and %" PRIu64 " of table %" PRIu64
                     " overlap in versions ([%" PRIu64 ", %" PRIu64 "] and [%" PRIu64 ", %" PRIu64
                     "])",
                     v->segs[prev].id, s->id, s->table_id, v->segs[prev].info.min_version,
                     v->segs[prev].info.max_version, s->info.min_version, s->info.max_version);
            return false;
        }
        prev = i;
    }
    v->tables = calloc_array(ntables, sizeof(*v->tables));
    for (size_t i = 0, t = 0; i < v->nsegs; i++) {
        if (i == 0 || v->segs[i].table_id != v->segs[i - 1].table_id) {
            if (i)
                t++;
            v->tables[t].table_id = v->segs[i].table_id;
            v->tables[t].segs = &v->ptrs[i];
        }
        v->tables[t].nsegs++;
    }
    v->pub.tables = v->tables;
    v->pub.ntables = ntables;
    v->pub.segments = v->nsegs;
    v->pub.file_bytes = bytes;
    return true;
}

/* The live segment with id in v, or NULL. */
static struct manifest_seg *version_find(const struct mversion *v, uint64_t id)
{
    size_t lo = 0;
    size_t hi = v->nsegs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v->by_id[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->nsegs && v->by_id[lo]->id == id ? v->by_id[lo] : NULL;
}

static void version_image(const struct mversion *v, struct manifest_image *img)
{
    memset(img, 0, sizeof(*img));
    img->generation = v->pub.generation;
    img->flushed_version = v->pub.flushed_version;
    img->floor = v->pub.floor;
    img->next_id = v->pub.next_id;
    img->nsegs = v->nsegs;
    img->segs = calloc_array(v->nsegs, sizeof(*img->segs));
    for (size_t i = 0; i < v->nsegs; i++) {
        img->segs[i].id = v->segs[i].id;
        img->segs[i].table_id = v->segs[i].table_id;
        img->segs[i].level = v->segs[i].level;
    }
    img->nclock = v->pub.nclock;
    img->clock = calloc_array(v->pub.nclock, sizeof(*img->clock));
    if (v->pub.nclock)
        memcpy(img->clock, v->clock, v->pub.nclock * sizeof(*img->clock));
}

const struct manifest_version *manifest_acquire(struct manifest *m)
{
    struct mversion *v;

    pthread_mutex_lock(&m->lock);
    v = m->cur;
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&m->lock);
    return &v->pub;
}

void manifest_version_release(const struct manifest_version *v)
{
    /* pub is the first member of struct mversion. */
    if (v)
        version_unref((struct mversion *)(uintptr_t)v);
}

const struct manifest_table *manifest_find_table(const struct manifest_version *v,
                                                 uint64_t table_id)
{
    size_t lo = 0;
    size_t hi = v->ntables;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v->tables[mid].table_id < table_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->ntables && v->tables[lo].table_id == table_id ? &v->tables[lo] : NULL;
}

/* ------------------------------------------------------------------ */
/* Opening */

static char *path_of(const char *dir, const char *name)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addf(&sb, "%s/%s", dir, name);
    return strbuf_detach(&sb, NULL);
}

static void seg_path(const struct manifest *m, uint64_t id, struct strbuf *out)
{
    strbuf_reset(out);
    strbuf_addf(out, "%s/%016" PRIx64 ".seg", m->seg_dir, id);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t k = strlen(suffix);

    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* Parses "<16 lowercase hex digits>.seg". */
static bool parse_seg_name(const char *name, uint64_t *id)
{
    return strlen(name) == 20 && strcmp(name + 16, ".seg") == 0 && st_parse_hex(name, 16, id);
}

/* Loads MANIFEST into img (an empty image when there is none). */
static enum st_status load_image(struct manifest *m, struct manifest_image *img, struct err *err)
{
    struct damage d;
    enum st_status rc;
    char *buf;
    size_t len;

    memset(img, 0, sizeof(*img));
    rc = fs_read_all(m->fs, m->path, &buf, &len, err);
    if (rc == ST_ENOTFOUND) {
        img->next_id = 1;
        log_info("manifest: none yet file='%s'", m->path);
        return ST_OK;
    }
    if (rc)
        return rc;
    rc = decode((const uint8_t *)buf, len, img, &d);
    free(buf);
    if (rc) {
        log_error("manifest: corrupt file='%s' offset=%zu cause=\"%s\"", m->path, d.off, d.why);
        return err_set(err, ST_ECORRUPT, "manifest '%s' is corrupt at offset %zu: %s", m->path,
                       d.off, d.why);
    }
    return ST_OK;
}

/* Opens every segment img lists into a new version in *out. */
static enum st_status open_segments(struct manifest *m, const struct manifest_image *img,
                                    struct mversion **out, struct err *err)
{
    struct mversion *v = version_alloc(img->nsegs, img->nclock);
    struct strbuf path = STRBUF_INIT;
    enum st_status rc = ST_OK;
    char why[200];

    v->pub.generation = img->generation;
    v->pub.flushed_version = img->flushed_version;
    v->pub.floor = img->floor;
    v->pub.next_id = img->next_id;
    if (img->nclock)
        memcpy(v->clock, img->clock, img->nclock * sizeof(*v->clock));
    for (size_t i = 0; i < img->nsegs; i++) {
        struct manifest_seg *s = &v->segs[i];

        seg_path(m, img->segs[i].id, &path);
        rc = segment_open(m->fs, path.buf, &s->seg, err);
        if (rc == ST_ENOTFOUND)
            rc = err_set(err, ST_ECORRUPT, "segment '%s' listed in manifest '%s' is missing",
                         path.buf, m->path);
        if (rc)
            goto out_free;
        v->nsegs++;
        s->id = img->segs[i].id;
        s->table_id = img->segs[i].table_id;
        s->level = img->segs[i].level;
        segment_get_info(s->seg, &s->info);
        if (s->info.table_id != s->table_id) {
            rc = err_set(err, ST_ECORRUPT,
                         "segment '%s' holds table %" PRIu64 " but manifest '%s' says %" PRIu64,
                         path.buf, s->info.table_id, m->path, s->table_id);
            goto out_free;
        }
    }
    if (!version_index(v, why, sizeof(why))) {
        rc = err_set(err, ST_ECORRUPT, "manifest '%s': %s", m->path, why);
        goto out_free;
    }
    strbuf_release(&path);
    *out = v;
    return ST_OK;

out_free:
    if (rc == ST_ECORRUPT)
        log_error("manifest: cannot open segments file='%s' cause=\"%s\"", m->path, err->msg);
    strbuf_release(&path);
    version_free(v);
    return rc;
}

/* Unlinks path, a leftover; ENOENT is fine. */
static enum st_status remove_leftover(struct manifest *m, const char *path, const char *what,
                                      struct err *err)
{
    if (m->fs->unlink(m->fs, path) < 0) {
        if (errno == ENOENT)
            return ST_OK;
        if (errno == EISDIR) {
            log_warn("manifest: directory left alone path='%s'", path);
            return ST_OK;
        }
        return err_set_errno(err, ST_EIO, errno, "cannot remove '%s'", path);
    }
    log_info("manifest: removed %s file='%s'", what, path);
    return ST_OK;
}

/* Removes MANIFEST.tmp, segments/ *.tmp and unlisted segments/ *.seg. */
static enum st_status remove_leftovers(struct manifest *m, const struct mversion *v,
                                       struct err *err)
{
    char **names = NULL;
    size_t n = 0;
    enum st_status rc;
    bool removed = false;

    if ((rc = remove_leftover(m, m->tmp, "unfinished manifest", err)))
        return rc;
    if (m->fs->list_dir(m->fs, m->seg_dir, &names, &n) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot list '%s'", m->seg_dir);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *what = NULL;
        uint64_t id;
        char *path;

        if (ends_with(names[i], ".tmp"))
            what = "unfinished segment";
        else if (ends_with(names[i], ".seg") &&
                 !(parse_seg_name(names[i], &id) && version_find(v, id)))
            what = "unlisted segment";
        path = path_of(m->seg_dir, names[i]);
        if (what) {
            rc = remove_leftover(m, path, what, err);
            removed = true;
        } else if (!ends_with(names[i], ".seg")) {
            log_warn("manifest: unknown file left alone file='%s'", path);
        }
        free(path);
    }
    fs_names_free(names, n);
    if (!rc && removed && m->fs->fsync_dir(m->fs, m->seg_dir) < 0)
        rc = err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", m->seg_dir);
    return rc;
}

/* Creates DATA_DIR/segments unless it exists. */
static enum st_status make_seg_dir(struct manifest *m, struct err *err)
{
    if (m->fs->mkdir(m->fs, m->seg_dir, 0755) == 0) {
        if (m->fs->fsync_dir(m->fs, m->dir) < 0)
            return err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", m->dir);
        return ST_OK;
    }
    if (errno == EEXIST)
        return ST_OK;
    return err_set_errno(err, ST_EIO, errno, "cannot create directory '%s'", m->seg_dir);
}

static void manifest_free(struct manifest *m)
{
    version_unref(m->cur);
    pthread_mutex_destroy(&m->edit_lock);
    pthread_mutex_destroy(&m->lock);
    free(m->dir);
    free(m->seg_dir);
    free(m->path);
    free(m->tmp);
    free(m);
}

enum st_status manifest_open(struct fs *fs, const char *data_dir, struct manifest **out,
                             struct err *err)
{
    struct manifest *m = xcalloc(1, sizeof(*m));
    struct manifest_image img;
    struct err local;
    enum st_status rc;

    if (!err)
        err = &local;

    m->fs = fs;
    m->dir = xstrdup(data_dir);
    m->seg_dir = path_of(data_dir, "segments");
    m->path = path_of(data_dir, "MANIFEST");
    m->tmp = path_of(data_dir, "MANIFEST.tmp");
    pthread_mutex_init(&m->edit_lock, NULL);
    pthread_mutex_init(&m->lock, NULL);
    *out = NULL;

    if ((rc = make_seg_dir(m, err)))
        goto out_free;
    if ((rc = load_image(m, &img, err)))
        goto out_free;
    rc = open_segments(m, &img, &m->cur, err);
    manifest_image_release(&img);
    if (rc)
        goto out_free;
    m->next_id = ST_MAX(m->cur->pub.next_id, 1);
    if ((rc = remove_leftovers(m, m->cur, err)))
        goto out_free;
    log_info("manifest: opened file='%s' generation=%" PRIu64 " segments=%zu bytes=%" PRIu64,
             m->path, m->cur->pub.generation, m->cur->nsegs, m->cur->pub.file_bytes);
    *out = m;
    return ST_OK;

out_free:
    manifest_free(m);
    return rc;
}

void manifest_close(struct manifest *m)
{
    if (m)
        manifest_free(m);
}

uint64_t manifest_new_segment(struct manifest *m, struct strbuf *path)
{
    uint64_t id;

    pthread_mutex_lock(&m->lock);
    id = m->next_id++;
    pthread_mutex_unlock(&m->lock);
    seg_path(m, id, path);
    return id;
}

/* ------------------------------------------------------------------ */
/* Edits */

/*
 * Writes bytes as MANIFEST durably. *renamed tells whether the rename
 * happened (a failure after it leaves the new file visible).
 */
static enum st_status write_file(struct manifest *m, const struct strbuf *bytes, bool *renamed,
                                 struct err *err)
{
    int fd, e;

    *renamed = false;
    fd = m->fs->open(m->fs, m->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot create '%s'", m->tmp);
    if (fs_pwrite_full(m->fs, fd, bytes->buf, bytes->len, 0) < 0) {
        e = errno;
        m->fs->close(m->fs, fd);
        err_set_errno(err, ST_EIO, e, "cannot write '%s'", m->tmp);
        goto out_unlink;
    }
    if (m->fs->fsync(m->fs, fd) < 0) {
        e = errno;
        m->fs->close(m->fs, fd);
        err_set_errno(err, ST_EIO, e, "cannot fsync '%s'", m->tmp);
        goto out_unlink;
    }
    if (m->fs->close(m->fs, fd) < 0) {
        err_set_errno(err, ST_EIO, errno, "cannot close '%s'", m->tmp);
        goto out_unlink;
    }
    if (m->fs->rename(m->fs, m->tmp, m->path) < 0) {
        err_set_errno(err, ST_EIO, errno, "cannot rename '%s' to '%s'", m->tmp, m->path);
        goto out_unlink;
    }
    *renamed = true;
    if (m->fs->fsync_dir(m->fs, m->dir) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", m->dir);
    return ST_OK;

out_unlink:
    m->fs->unlink(m->fs, m->tmp); /* best effort; manifest_open() removes it otherwise */
    return ST_EIO;
}

/*
 * Drops the references of e's added segments after a failed edit,
 * unlinking their files unless another segment of cur has the same path
 * (an id added twice or a live one: the file is not the edit's to remove)
 * or keep is set (the new MANIFEST, which lists them, may be on disk).
 */
static void drop_adds(const struct mversion *cur, const struct manifest_edit *e, bool keep)
{
    for (size_t i = 0; i < e->nadd; i++) {
        struct segment *seg = e->add[i].seg;
        bool live = false;

        if (!seg)
            continue;
        for (size_t j = 0; j < cur->nsegs && !live; j++)
            live = !strcmp(segment_path(cur->segs[j].seg), segment_path(seg));
        if (!live && !keep)
            segment_unlink_on_close(seg);
        segment_unref(seg);
    }
}

/* Checks an edit against cur; ST_EINVAL describing the first problem. */
static enum st_status edit_check(struct manifest *m, const struct mversion *cur,
                                 const struct manifest_edit *e, uint64_t next_id, struct err *err)
{
    struct strbuf path = STRBUF_INIT;
    enum st_status rc = ST_OK;

    if (e->set_clock && e->nclock > MANIFEST_MAX_CLOCK)
        return err_set(err, ST_EINVAL, "%zu clock samples, over the limit of %u", e->nclock,
                       MANIFEST_MAX_CLOCK);
    for (size_t i = 0; i < e->nremove; i++) {
        if (!version_find(cur, e->remove[i]))
            return err_set(err, ST_EINVAL, "cannot remove segment %" PRIu64 ": not live",
                           e->remove[i]);
        for (size_t j = 0; j < i; j++)
            if (e->remove[j] == e->remove[i])
                return err_set(err, ST_EINVAL, "segment %" PRIu64 " removed twice", e->remove[i]);
    }
    for (size_t i = 0; i < e->nadd && !rc; i++) {
        const struct manifest_add *a = &e->add[i];

        if (!a->seg) {
            rc = err_set(err, ST_EINVAL, "segment %" PRIu64 " added without a segment", a->id);
            break;
        }
        if (a->id >= next_id || version_find(cur, a->id)) {
            rc = err_set(err, ST_EINVAL, "cannot add segment %" PRIu64 ": %s", a->id,
                         a->id >= next_id ? "id not handed out" : "already live");
            break;
        }
        for (size_t j = 0; j < i && !rc; j++)
            if (e->add[j].id == a->id)
                rc = err_set(err, ST_EINVAL, "segment %" PRIu64 " added twice", a->id);
        seg_path(m, a->id, &path);
        if (!rc && strcmp(segment_path(a->seg), path.buf) != 0)
            rc = err_set(err, ST_EINVAL, "segment %" PRIu64 " is at '%s', not '%s'", a->id,
                         segment_path(a->seg), path.buf);
    }
    if (!rc && cur->nsegs - e->nremove + e->nadd > MANIFEST_MAX_SEGMENTS)
        rc = err_set(err, ST_EINVAL, "over the limit of %u segments", MANIFEST_MAX_SEGMENTS);
    strbuf_release(&path);
    return rc;
}

static bool removed(const struct manifest_edit *e, uint64_t id)
{
    for (size_t i = 0; i < e->nremove; i++)
        if (e->remove[i] == id)
            return true;
    return false;
}

/* The version after e (checked), or NULL with err set. Adds' references are not taken yet. */
static struct mversion *edit_build(const struct mversion *cur, const struct manifest_edit *e,
                                   uint64_t next_id, struct err *err)
{
    size_t nclock = e->set_clock ? e->nclock : cur->pub.nclock;
    struct mversion *v = version_alloc(cur->nsegs - e->nremove + e->nadd, nclock);
    char why[200];

    v->pub.generation = cur->pub.generation + 1;
    v->pub.flushed_version = ST_MAX(cur->pub.flushed_version, e->flushed_version);
    v->pub.floor = ST_MAX(cur->pub.floor, e->floor);
    v->pub.next_id = next_id;
    if (nclock)
        memcpy(v->clock, e->set_clock ? e->clock : cur->clock, nclock * sizeof(*v->clock));
    for (size_t i = 0; i < cur->nsegs; i++) {
        if (removed(e, cur->segs[i].id))
            continue;
        v->segs[v->nsegs] = cur->segs[i];
        segment_ref(v->segs[v->nsegs].seg);
        v->nsegs++;
    }
    for (size_t i = 0; i < e->nadd; i++) {
        struct manifest_seg *s = &v->segs[v->nsegs++];

        s->id = e->add[i].id;
        s->level = e->add[i].level;
        s->seg = e->add[i].seg;
        segment_ref(s->seg);
        segment_get_info(s->seg, &s->info);
        s->table_id = s->info.table_id;
    }
    if (!version_index(v, why, sizeof(why))) {
        err_set(err, ST_EINVAL, "invalid manifest edit: %s", why);
        version_free(v);
        return NULL;
    }
    return v;
}

enum st_status manifest_apply(struct manifest *m, const struct manifest_edit *e, struct err *err)
{
    struct manifest_image img;
    struct strbuf bytes = STRBUF_INIT;
    struct mversion *cur, *v;
    enum st_status rc;
    uint64_t next_id;
    bool renamed = false;
    struct err local;

    if (!err)
        err = &local;
    pthread_mutex_lock(&m->edit_lock);
    pthread_mutex_lock(&m->lock);
    cur = m->cur;
    next_id = m->next_id;
    pthread_mutex_unlock(&m->lock);

    if (m->failed) {
        rc = err_set(err, ST_EIO, "manifest '%s' failed earlier; no edits until restart", m->path);
        goto out_drop;
    }
    if ((rc = edit_check(m, cur, e, next_id, err)))
        goto out_drop;
    if (!(v = edit_build(cur, e, next_id, err))) {
        rc = ST_EINVAL;
        goto out_drop;
    }
    version_image(v, &img);
    manifest_encode(&img, &bytes);
    manifest_image_release(&img);
    rc = write_file(m, &bytes, &renamed, err);
    strbuf_release(&bytes);
    if (rc) {
        log_error("manifest: cannot write file='%s' generation=%" PRIu64 " renamed=%d cause=\"%s\"",
                  m->path, v->pub.generation, renamed, err->msg);
        if (renamed)
            m->failed = true;
        version_free(v);
        goto out_drop;
    }

    /* Durable: the removed segments go once nothing holds them. */
    for (size_t i = 0; i < e->nremove; i++)
        segment_unlink_on_close(version_find(cur, e->remove[i])->seg);
    for (size_t i = 0; i < e->nadd; i++)
        segment_unref(e->add[i].seg); /* the version holds its own reference */
    pthread_mutex_lock(&m->lock);
    m->cur = v;
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_unlock(&m->edit_lock);
    log_debug("manifest: applied generation=%" PRIu64 " added=%zu removed=%zu segments=%zu",
              v->pub.generation, e->nadd, e->nremove, v->nsegs);
    version_unref(cur);
    return ST_OK;

out_drop:
    drop_adds(cur, e, renamed);
    pthread_mutex_unlock(&m->edit_lock);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Compaction policy */

/* p with zero fields (or NULL) filled with the defaults; fanout at least 2. */
static struct manifest_policy policy_of(const struct manifest_policy *p)
{
    struct manifest_policy r = {DEFAULT_FANOUT, DEFAULT_BASE_BYTES, DEFAULT_MAX_SEGMENTS};

    if (p && p->fanout)
        r.fanout = ST_MAX(p->fanout, 2u);
    if (p && p->base_bytes)
        r.base_bytes = p->base_bytes;
    if (p && p->max_segments)
        r.max_segments = p->max_segments;
    return r;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

uint32_t manifest_tier(const struct manifest_policy *p, uint64_t bytes)
{
    struct manifest_policy q = policy_of(p);
    uint64_t bound = mul_sat(q.base_bytes, q.fanout);
    uint32_t t = 0;

    while (bytes >= bound) {
        t++;
        if (bound == UINT64_MAX)
            break;
        bound = mul_sat(bound, q.fanout);
    }
    return t;
}

bool manifest_pick(const struct manifest_table *t, const struct manifest_policy *p, size_t *first,
                   size_t *n)
{
    struct manifest_policy q = policy_of(p);
    size_t w, best = 0;
    uint64_t sum = 0, best_sum = 0;

    if (!t || t->nsegs < 2)
        return false;
    for (size_t i = 0; i < t->nsegs;) {
        uint32_t tier = manifest_tier(&q, t->segs[i]->info.file_bytes);
        size_t j = i + 1;

        while (j < t->nsegs && manifest_tier(&q, t->segs[j]->info.file_bytes) == tier)
            j++;
        if (j - i >= q.fanout) {
            *first = i;
            *n = j - i;
            return true;
        }
        i = j;
    }
    if (t->nsegs <= q.max_segments)
        return false;
    w = ST_MIN((size_t)q.fanout, t->nsegs);
    for (size_t i = 0; i < t->nsegs; i++) {
        sum += t->segs[i]->info.file_bytes;
        if (i >= w)
            sum -= t->segs[i - w]->info.file_bytes;
        if (i + 1 == w || (i + 1 > w && sum < best_sum)) {
            best_sum = sum;
            best = i + 1 - w;
        }
    }
    *first = best;
    *n = w;
    return true;
}

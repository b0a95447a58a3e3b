/*
 * Unit tests for src/engine/manifest.c, on the in-memory fault fs (and
 * once on the real one).
 *
 * The file format: encode/decode round trips, and every single-byte flip
 * and every truncation of a valid file refused with ST_ECORRUPT, plus
 * hand-made files that pass the checksum but break a rule (duplicate ids,
 * an id >= next_id, limits, trailing bytes). The manifest: opening an
 * empty directory, edits with real small segments (written with the
 * segment writer) and reopening to the same content, a reader's old
 * version keeping a removed segment readable until it is released (the
 * file unlinked only then), leftovers removed at open while listed files
 * stay, every I/O failure of an edit (old version current, MANIFEST
 * unchanged, the added file gone; after a failure past the rename, edits
 * refused and a reopen consistent), crashes around an edit, overlapping
 * versions refused at open (ST_ECORRUPT) and in an edit (ST_EINVAL), bad
 * edits, readers on threads racing edits. The compaction picker on
 * hand-made tables.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/key.h"
#include "engine/manifest.h"
#include "util/crc32c.h"
#include "util/log.h"

/* Failure-only checks (Check reports every passing ck_assert through a pipe). */
#define EXPECT_MSG(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)
#define EXPECT(cond) EXPECT_MSG(cond, "%s:%d: failed: %s", __FILE__, __LINE__, #cond)
#define EXPECT_OP(a, op, b)                                                                        \
    do {                                                                                           \
        long long a_ = (long long)(a);                                                             \
        long long b_ = (long long)(b);                                                             \
        EXPECT_MSG(a_ op b_, "%s:%d: failed: %s %s %s (%lld, %lld)", __FILE__, __LINE__, #a, #op,  \
                   #b, a_, b_);                                                                    \
    } while (0)
#define EXPECT_EQ(a, b) EXPECT_OP(a, ==, b)
#define EXPECT_NE(a, b) EXPECT_OP(a, !=, b)
#define EXPECT_STR(hay, needle)                                                                    \
    EXPECT_MSG(strstr((hay), (needle)) != NULL, "%s:%d: '%s' lacks '%s'", __FILE__, __LINE__,      \
               (hay), (needle))

/* ------------------------------------------------------------------ */
/* Helpers */

static struct schema *test_schema(void)
{
    struct field f[2];
    const char *pk[] = {"id"};
    struct schema *s;
    struct err err;

    memset(f, 0, sizeof(f));
    st_strlcpy(f[0].name, "id", sizeof(f[0].name));
    f[0].type = FIELD_INT64;
    st_strlcpy(f[1].name, "v", sizeof(f[1].name));
    f[1].type = FIELD_INT64;
    EXPECT_EQ(schema_new(1, f, 2, pk, 1, NULL, &s, &err), ST_OK);
    return s;
}

/* A row (id, v) of test_schema(): u32 length, null bitmap, two int64. */
static void make_row(int64_t id, int64_t v, uint8_t row[21])
{
    uint64_t a = (uint64_t)id;
    uint64_t b = (uint64_t)v;

    row[0] = 21;
    row[1] = row[2] = row[3] = 0;
    row[4] = 0;
    for (int i = 0; i < 8; i++) {
        row[5 + i] = (uint8_t)(a >> (8 * i));
        row[13 + i] = (uint8_t)(b >> (8 * i));
    }
}

static size_t make_key(int64_t id, uint8_t *buf, size_t cap)
{
    struct value v;

    memset(&v, 0, sizeof(v));
    v.type = FIELD_INT64;
    v.u.i = id;
    return key_encode(&v, 1, buf, cap);
}

/*
 * Writes and opens a segment of table with keys 0..nkeys-1: key 0 at
 * versions vmax and vmin, the others at vmin; value = version * 1000 + key.
 */
static struct segment *write_seg(struct fs *fs, const char *path, uint64_t table, uint64_t vmin,
                                 uint64_t vmax, int nkeys)
{
    struct schema *s = test_schema();
    struct segment_writer *w;
    struct segment *seg;
    struct err err;
    uint8_t key[32];
    uint8_t row[21];

    EXPECT_EQ(segment_writer_new(fs, path, s, table, NULL, &w, &err), ST_OK);
    for (int k = 0; k < nkeys; k++) {
        size_t klen = make_key(k, key, sizeof(key));

        if (k == 0 && vmax != vmin) {
            make_row(k, (int64_t)vmax * 1000 + k, row);
            EXPECT_EQ(segment_writer_add(w, key, klen, vmax, false, row, &err), ST_OK);
        }
        make_row(k, (int64_t)vmin * 1000 + k, row);
        EXPECT_EQ(segment_writer_add(w, key, klen, vmin, false, row, &err), ST_OK);
    }
    EXPECT_EQ(segment_writer_finish(w, NULL, &err), ST_OK);
    EXPECT_MSG(segment_open(fs, path, &seg, &err) == ST_OK, "%s", err.msg);
    schema_free(s);
    return seg;
}

/* Hands out an id and writes its segment. */
static struct manifest_add new_seg(struct manifest *m, struct fs *fs, uint64_t table, uint64_t vmin,
                                   uint64_t vmax, uint32_t level)
{
    struct strbuf path = STRBUF_INIT;
    struct manifest_add a;

    a.id = manifest_new_segment(m, &path);
    a.level = level;
    a.seg = write_seg(fs, path.buf, table, vmin, vmax, 5);
    strbuf_release(&path);
    return a;
}

static bool file_exists(struct fs *fs, const char *path)
{
    size_t len;
    uint8_t *p = fs_fault_get_file(fs, path, &len);

    free(p);
    return p != NULL;
}

static void seg_file(uint64_t id, char *buf, size_t n)
{
    snprintf(buf, n, "/d/segments/%016llx.seg", (unsigned long long)id);
}

static struct fs *new_fs(void)
{
    struct fs *fs = fs_fault_new();

    EXPECT_EQ(fs->mkdir(fs, "/d", 0755), 0);
    return fs;
}

static struct manifest *open_ok(struct fs *fs, const char *dir)
{
    struct manifest *m;
    struct err err;

    EXPECT_MSG(manifest_open(fs, dir, &m, &err) == ST_OK, "%s", err.msg);
    return m;
}

static enum st_status apply_adds(struct manifest *m, const struct manifest_add *a, size_t n,
                                 struct err *err)
{
    struct manifest_edit e;

    memset(&e, 0, sizeof(e));
    e.add = a;
    e.nadd = n;
    return manifest_apply(m, &e, err);
}

/* Reads key k at snapshot snap from seg and returns the value (-1: not found). */
static int64_t read_val(struct segment *seg, int64_t k, uint64_t snap)
{
    struct strbuf buf = STRBUF_INIT;
    struct segment_rec rec;
    struct value v;
    struct schema *s = test_schema();
    uint8_t key[32];
    size_t klen = make_key(k, key, sizeof(key));
    int64_t out = -1;

    if (segment_get(seg, key, klen, snap, &rec, &buf, NULL) == ST_OK) {
        schema_row_get(s, rec.row, 1, &v);
        out = v.u.i;
    }
    strbuf_release(&buf);
    schema_free(s);
    return out;
}

/* A flat description of a version for comparisons. */
static void describe(const struct manifest_version *v, struct strbuf *out)
{
    strbuf_reset(out);
    strbuf_addf(out, "gen=%llu flushed=%llu floor=%llu next=%llu segs=%llu bytes=%llu\n",
                (unsigned long long)v->generation, (unsigned long long)v->flushed_version,
                (unsigned long long)v->floor, (unsigned long long)v->next_id,
                (unsigned long long)v->segments, (unsigned long long)v->file_bytes);
    for (size_t t = 0; t < v->ntables; t++) {
        strbuf_addf(out, "table %llu:", (unsigned long long)v->tables[t].table_id);
        for (size_t i = 0; i < v->tables[t].nsegs; i++) {
            const struct manifest_seg *s = v->tables[t].segs[i];

            strbuf_addf(out, " %llu/L%u/[%llu,%llu]", (unsigned long long)s->id, s->level,
                        (unsigned long long)s->info.min_version,
                        (unsigned long long)s->info.max_version);
        }
        strbuf_addch(out, '\n');
    }
    for (size_t i = 0; i < v->nclock; i++)
        strbuf_addf(out, "clock %lld=%llu\n", (long long)v->clock[i].wall_ms,
                    (unsigned long long)v->clock[i].version);
}

static void describe_current(struct manifest *m, struct strbuf *out)
{
    const struct manifest_version *v = manifest_acquire(m);

    describe(v, out);
    manifest_version_release(v);
}

/* ------------------------------------------------------------------ */
/* The file format */

static void sample_image(struct manifest_image *img, size_t nsegs, size_t nclock)
{
    memset(img, 0, sizeof(*img));
    img->generation = 42;
    img->flushed_version = 1000;
    img->floor = 900;
    img->next_id = 100;
    img->nsegs = nsegs;
    img->segs = calloc(nsegs ? nsegs : 1, sizeof(*img->segs));
    for (size_t i = 0; i < nsegs; i++) {
        img->segs[i].id = 99 - i * 3;
        img->segs[i].table_id = 7 + i / 2;
        img->segs[i].level = (uint32_t)i;
    }
    img->nclock = nclock;
    img->clock = calloc(nclock ? nclock : 1, sizeof(*img->clock));
    for (size_t i = 0; i < nclock; i++) {
        img->clock[i].wall_ms = (int64_t)i * 1000 - 500; /* one negative */
        img->clock[i].version = 10 * i;
    }
}

static void expect_same_image(const struct manifest_image *a, const struct manifest_image *b)
{
    EXPECT_EQ(a->generation, b->generation);
    EXPECT_EQ(a->flushed_version, b->flushed_version);
    EXPECT_EQ(a->floor, b->floor);
    EXPECT_EQ(a->next_id, b->next_id);
    EXPECT_EQ(a->nsegs, b->nsegs);
    EXPECT_EQ(a->nclock, b->nclock);
    for (size_t i = 0; i < a->nsegs; i++) {
        EXPECT_EQ(a->segs[i].id, b->segs[i].id);
        EXPECT_EQ(a->segs[i].table_id, b->segs[i].table_id);
        EXPECT_EQ(a->segs[i].level, b->segs[i].level);
    }
    for (size_t i = 0; i < a->nclock; i++) {
        EXPECT_EQ(a->clock[i].wall_ms, b->clock[i].wall_ms);
        EXPECT_EQ(a->clock[i].version, b->clock[i].version);
    }
}

START_TEST(test_roundtrip)
{
    static const size_t shapes[][2] = {{0, 0}, {1, 0}, {0, 3}, {5, 4}, {33, 1}};

    for (size_t k = 0; k < ST_ARRAY_SIZE(shapes); k++) {
        struct manifest_image img, back;
        struct strbuf a = STRBUF_INIT;
        struct strbuf b = STRBUF_INIT;
        struct err err;

        sample_image(&img, shapes[k][0], shapes[k][1]);
        manifest_encode(&img, &a);
        EXPECT_EQ(a.len, 60 + 20 * shapes[k][0] + 16 * shapes[k][1]);
        EXPECT(!memcmp(a.buf, "STRATAMF", 8));
        EXPECT_MSG(manifest_decode(a.buf, a.len, &back, &err) == ST_OK, "%s", err.msg);
        expect_same_image(&img, &back);
        manifest_encode(&back, &b);
        EXPECT(a.len == b.len && !memcmp(a.buf, b.buf, a.len));
        manifest_image_release(&img);
        manifest_image_release(&back);
        strbuf_release(&a);
        strbuf_release(&b);
    }
}
END_TEST

/* Every single-byte change and every truncation of a valid file is refused. */
START_TEST(test_decode_refuses_damage)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xff};
    struct manifest_image img, out;
    struct strbuf a = STRBUF_INIT;
    struct err err;
    uint8_t *buf;

    sample_image(&img, 6, 3);
    manifest_encode(&img, &a);
    buf = malloc(a.len + 1);
    for (size_t i = 0; i < a.len; i++) {
        for (size_t k = 0; k < ST_ARRAY_SIZE(masks); k++) {
            memcpy(buf, a.buf, a.len);
            buf[i] ^= masks[k];
            memset(&out, 0xa5, sizeof(out));
            EXPECT_MSG(manifest_decode(buf, a.len, &out, &err) == ST_ECORRUPT,
                       "flip %#x at %zu accepted", masks[k], i);
            EXPECT_STR(err.msg, "corrupt at offset");
            EXPECT(out.segs == NULL && out.clock == NULL);
        }
    }
    for (size_t n = 0; n < a.len; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exactly n bytes: ASan catches reads past them */

        memcpy(cut, a.buf, n);
        EXPECT_MSG(manifest_decode(cut, n, &out, &err) == ST_ECORRUPT, "truncation to %zu accepted",
                   n);
        EXPECT_STR(err.msg, "corrupt at offset");
        free(cut);
    }
    /* One byte too many. */
    memcpy(buf, a.buf, a.len);
    buf[a.len] = 0;
    EXPECT_EQ(manifest_decode(buf, a.len + 1, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 228"); /* 60 + 6 * 20 + 3 * 16 */
    free(buf);
    manifest_image_release(&img);
    strbuf_release(&a);
}
END_TEST

/* Files whose checksum is right but whose contents break a rule. */
START_TEST(test_decode_rules)
{
    struct manifest_image img, out;
    struct strbuf a = STRBUF_INIT;
    struct err err;
    uint32_t crc;

    /* A duplicate id: reported at the second entry (56 + 2 * 20). */
    sample_image(&img, 4, 0);
    img.segs[2].id = img.segs[0].id;
    manifest_encode(&img, &a);
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 96");
    EXPECT_STR(err.msg, "twice");
    manifest_image_release(&img);

    /* An id equal to next_id. */
    strbuf_reset(&a);
    sample_image(&img, 3, 1);
    img.segs[1].id = img.next_id;
    manifest_encode(&img, &a);
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 76");
    EXPECT_STR(err.msg, "next id");
    manifest_image_release(&img);

    /* Counts over the limits are refused before allocating (no body needed). */
    strbuf_reset(&a);
    sample_image(&img, 0, 0);
    manifest_encode(&img, &a);
    a.buf[12] = 0;
    a.buf[13] = 0;
    a.buf[14] = 0x10;
    a.buf[15] = 0; /* 2^20: the limit itself is fine, and the file ends early */
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "ends early");
    a.buf[12] = 1; /* 2^20 + 1 */
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 12");
    EXPECT_STR(err.msg, "limit");
    a.buf[12] = 0;
    a.buf[14] = 0;
    a.buf[16] = 0x01;
    a.buf[17] = 0x10; /* 4097 clock samples */
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 16");

    /* The reserved word, with a checksum to match. */
    strbuf_reset(&a);
    manifest_encode(&img, &a);
    a.buf[21] = 1;
    crc = crc32c(a.buf, a.len - 4);
    for (int i = 0; i < 4; i++)
        a.buf[a.len - 4 + (size_t)i] = (char)(crc >> (8 * i));
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 20");

    /* Another format version. */
    a.buf[21] = 0;
    a.buf[8] = 2;
    EXPECT_EQ(manifest_decode(a.buf, a.len, &out, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "offset 8");
    manifest_image_release(&img);
    strbuf_release(&a);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Opening */

START_TEST(test_open_empty)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    const struct manifest_version *v = manifest_acquire(m);
    struct strbuf path = STRBUF_INIT;
    char **names;
    size_t n;

    EXPECT_EQ(v->generation, 0);
    EXPECT_EQ(v->ntables, 0);
    EXPECT_EQ(v->segments, 0);
    EXPECT_EQ(v->nclock, 0);
    EXPECT(manifest_find_table(v, 1) == NULL);
    manifest_version_release(v);
    EXPECT(!file_exists(fs, "/d/MANIFEST")); /* nothing written until the first edit */
    EXPECT_EQ(fs->list_dir(fs, "/d/segments", &names, &n), 0);
    EXPECT_EQ(n, 0);
    fs_names_free(names, n);
    EXPECT_EQ(manifest_new_segment(m, &path), 1);
    EXPECT(!strcmp(path.buf, "/d/segments/0000000000000001.seg"));
    EXPECT_EQ(manifest_new_segment(m, &path), 2);
    EXPECT(!strcmp(path.buf, "/d/segments/0000000000000002.seg"));
    manifest_close(m);

    /* A missing data directory is an I/O error. */
    EXPECT_EQ(manifest_open(fs, "/nope", &m, NULL), ST_EIO);
    EXPECT(m == NULL);
    manifest_close(NULL);
    strbuf_release(&path);
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_apply_and_reopen)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a[3];
    struct manifest_clock clock[2] = {{1000, 5}, {2000, 30}};
    struct manifest_edit e;
    const struct manifest_version *v;
    const struct manifest_table *t;
    struct strbuf before = STRBUF_INIT;
    struct strbuf after = STRBUF_INIT;
    struct err err;
    char path[64];

    a[0] = new_seg(m, fs, 9, 1, 10, 0);  /* id 1 */
    a[1] = new_seg(m, fs, 7, 1, 10, 0);  /* id 2 */
    a[2] = new_seg(m, fs, 9, 11, 20, 0); /* id 3 */
    memset(&e, 0, sizeof(e));
    e.add = a;
    e.nadd = 3;
    e.flushed_version = 20;
    e.clock = clock;
    e.nclock = 2;
    e.set_clock = true;
    EXPECT_MSG(manifest_apply(m, &e, &err) == ST_OK, "%s", err.msg);
    v = manifest_acquire(m);
    EXPECT_EQ(v->generation, 1);
    EXPECT_EQ(v->flushed_version, 20);
    EXPECT_EQ(v->floor, 0);
    EXPECT_EQ(v->next_id, 4);
    EXPECT_EQ(v->segments, 3);
    EXPECT_EQ(v->ntables, 2);
    EXPECT_EQ(v->tables[0].table_id, 7);
    EXPECT_EQ(v->tables[1].table_id, 9);
    t = manifest_find_table(v, 9);
    EXPECT(t == &v->tables[1]);
    EXPECT(manifest_find_table(v, 8) == NULL);
    EXPECT_EQ(t->nsegs, 2);
    EXPECT_EQ(t->segs[0]->id, 3); /* newest first */
    EXPECT_EQ(t->segs[1]->id, 1);
    EXPECT_EQ(t->segs[0]->info.max_version, 20);
    EXPECT_EQ(t->segs[0]->table_id, 9);
    EXPECT_EQ(read_val(t->segs[0]->seg, 0, 100), 20000);
    EXPECT_EQ(v->file_bytes, t->segs[0]->info.file_bytes + t->segs[1]->info.file_bytes +
                                 v->tables[0].segs[0]->info.file_bytes);
    EXPECT_EQ(v->nclock, 2);
    EXPECT_EQ(v->clock[1].wall_ms, 2000);
    manifest_version_release(v);

    /* A compaction of table 9: ids 1 and 3 become id 4 at level 1. */
    {
        uint64_t rm[2] = {1, 3};
        struct manifest_add c = new_seg(m, fs, 9, 1, 20, 1);

        memset(&e, 0, sizeof(e));
        e.add = &c;
        e.nadd = 1;
        e.remove = rm;
        e.nremove = 2;
        e.floor = 15;
        e.flushed_version = 3; /* smaller: unchanged */
        EXPECT_MSG(manifest_apply(m, &e, &err) == ST_OK, "%s", err.msg);
    }
    describe_current(m, &before);
    EXPECT_STR(before.buf, "gen=2 flushed=20 floor=15 next=5 segs=2");
    EXPECT_STR(before.buf, "table 9: 4/L1/[1,20]\n");
    EXPECT_STR(before.buf, "table 7: 2/L0/[1,10]\n");
    EXPECT_STR(before.buf, "clock 2000=30\n"); /* kept: set_clock was false */
    seg_file(1, path, sizeof(path));
    EXPECT(!file_exists(fs, path)); /* unreferenced: gone at once */
    seg_file(3, path, sizeof(path));
    EXPECT(!file_exists(fs, path));
    manifest_close(m);

    m = open_ok(fs, "/d");
    describe_current(m, &after);
    EXPECT_MSG(!strcmp(before.buf, after.buf), "before:\n%s\nafter:\n%s", before.buf, after.buf);
    v = manifest_acquire(m);
    EXPECT_EQ(read_val(manifest_find_table(v, 9)->segs[0]->seg, 0, 100), 20000);
    manifest_version_release(v);
    /* Ids continue after the persisted next_id. */
    EXPECT_EQ(manifest_new_segment(m, &after), 5);
    manifest_close(m);
    strbuf_release(&before);
    strbuf_release(&after);
    fs_fault_free(fs);
}
END_TEST

/* An id handed out but never added is not reused after the next edit's reopen. */
START_TEST(test_next_id_persisted)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct strbuf path = STRBUF_INIT;
    struct manifest_add a;
    struct err err;

    EXPECT_EQ(manifest_new_segment(m, &path), 1);
    EXPECT_EQ(manifest_new_segment(m, &path), 2);
    a = new_seg(m, fs, 1, 1, 1, 0); /* id 3 */
    EXPECT_EQ(apply_adds(m, &a, 1, &err), ST_OK);
    manifest_close(m);
    m = open_ok(fs, "/d");
    EXPECT_EQ(manifest_new_segment(m, &path), 4);
    manifest_close(m);
    strbuf_release(&path);
    fs_fault_free(fs);
}
END_TEST

/* A reader's version keeps a removed segment open and its file on disk. */
START_TEST(test_reader_pins_removed)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a[2];
    const struct manifest_version *old, *cur;
    struct manifest_edit e;
    uint64_t rm = 1;
    struct err err;
    char path[64];

    a[0] = new_seg(m, fs, 5, 1, 4, 0);
    a[1] = new_seg(m, fs, 5, 5, 9, 0);
    EXPECT_EQ(apply_adds(m, a, 2, &err), ST_OK);
    old = manifest_acquire(m);
    memset(&e, 0, sizeof(e));
    e.remove = &rm;
    e.nremove = 1;
    EXPECT_EQ(manifest_apply(m, &e, &err), ST_OK);
    cur = manifest_acquire(m);
    EXPECT_EQ(cur->generation, 2);
    EXPECT_EQ(cur->segments, 1);
    EXPECT_EQ(manifest_find_table(cur, 5)->segs[0]->id, 2);
    manifest_version_release(cur);

    seg_file(1, path, sizeof(path));
    EXPECT(file_exists(fs, path));
    EXPECT_EQ(old->segments, 2);
    EXPECT_EQ(manifest_find_table(old, 5)->segs[1]->id, 1);
    EXPECT_EQ(read_val(manifest_find_table(old, 5)->segs[1]->seg, 0, 100), 4000);
    EXPECT_EQ(read_val(manifest_find_table(old, 5)->segs[1]->seg, 3, 100), 1003);
    /* Closing the manifest does not invalidate the reader's version either. */
    manifest_close(m);
    EXPECT(file_exists(fs, path));
    EXPECT_EQ(read_val(manifest_find_table(old, 5)->segs[1]->seg, 2, 100), 1002);
    manifest_version_release(old);
    EXPECT(!file_exists(fs, path));
    seg_file(2, path, sizeof(path));
    EXPECT(file_exists(fs, path)); /* listed: stays */
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_leftovers_removed)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a[2];
    struct strbuf before = STRBUF_INIT;
    struct strbuf after = STRBUF_INIT;
    char logbuf[8192] = {0};
    struct err err;
    char path[64];
    int fds[2];
    ssize_t got;

    a[0] = new_seg(m, fs, 5, 1, 4, 0);
    a[1] = new_seg(m, fs, 6, 1, 4, 0);
    EXPECT_EQ(apply_adds(m, a, 2, &err), ST_OK);
    describe_current(m, &before);
    manifest_close(m);

    fs_fault_set_file(fs, "/d/MANIFEST.tmp", "junk", 4);
    fs_fault_set_file(fs, "/d/segments/0000000000000003.seg", "unlisted", 8);
    fs_fault_set_file(fs, "/d/segments/00000000000000ff.seg", "unlisted, past next", 19);
    fs_fault_set_file(fs, "/d/segments/0000000000000004.seg.tmp", "partial", 7);
    fs_fault_set_file(fs, "/d/segments/other.seg", "odd name", 8);
    fs_fault_set_file(fs, "/d/segments/notes.txt", "keep me", 7);

    EXPECT_EQ(pipe(fds), 0);
    log_set_fd(fds[1]);
    m = open_ok(fs, "/d");
    log_set_fd(2);
    close(fds[1]);
    got = read(fds[0], logbuf, sizeof(logbuf) - 1);
    close(fds[0]);
    EXPECT(got > 0);

    EXPECT(!file_exists(fs, "/d/MANIFEST.tmp"));
    EXPECT(!file_exists(fs, "/d/segments/0000000000000003.seg"));
    EXPECT(!file_exists(fs, "/d/segments/00000000000000ff.seg"));
    EXPECT(!file_exists(fs, "/d/segments/0000000000000004.seg.tmp"));
    EXPECT(!file_exists(fs, "/d/segments/other.seg"));
    EXPECT(file_exists(fs, "/d/segments/notes.txt"));
    seg_file(1, path, sizeof(path));
    EXPECT(file_exists(fs, path));
    seg_file(2, path, sizeof(path));
    EXPECT(file_exists(fs, path));
    EXPECT_STR(logbuf, "file='/d/MANIFEST.tmp'");
    EXPECT_STR(logbuf, "file='/d/segments/0000000000000003.seg'");
    EXPECT_STR(logbuf, "file='/d/segments/0000000000000004.seg.tmp'");
    EXPECT_STR(logbuf, "level=warn");
    EXPECT_STR(logbuf, "notes.txt");
    describe_current(m, &after);
    EXPECT(!strcmp(before.buf, after.buf));
    manifest_close(m);
    strbuf_release(&before);
    strbuf_release(&after);
    fs_fault_free(fs);
}
END_TEST

/* Damage found at open: the MANIFEST itself, a missing or wrong segment. */
START_TEST(test_open_damage)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a[2];
    struct manifest_image img;
    struct strbuf sb = STRBUF_INIT;
    struct err err;
    uint8_t *file;
    size_t len;
    char path[64];

    log_set_level(ST_LOG_ERROR + 1);
    a[0] = new_seg(m, fs, 5, 1, 4, 0);
    a[1] = new_seg(m, fs, 6, 1, 4, 0);
    EXPECT_EQ(apply_adds(m, a, 2, &err), ST_OK);
    manifest_close(m);
    file = fs_fault_get_file(fs, "/d/MANIFEST", &len);

    /* A flipped byte in MANIFEST. */
    file[30] ^= 4;
    fs_fault_set_file(fs, "/d/MANIFEST", file, len);
    EXPECT_EQ(manifest_open(fs, "/d", &m, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "manifest '/d/MANIFEST' is corrupt at offset");
    file[30] ^= 4;
    fs_fault_set_file(fs, "/d/MANIFEST", file, len);

    /* A listed segment that is gone. */
    seg_file(2, path, sizeof(path));
    EXPECT_EQ(fs->rename(fs, path, "/d/saved"), 0);
    EXPECT_EQ(manifest_open(fs, "/d", &m, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, path);
    EXPECT_STR(err.msg, "missing");
    EXPECT_EQ(fs->rename(fs, "/d/saved", path), 0);

    /* A listed segment of another table than the manifest says. */
    EXPECT_EQ(manifest_decode(file, len, &img, &err), ST_OK);
    for (size_t i = 0; i < img.nsegs; i++)
        img.segs[i].table_id = 5;
    manifest_encode(&img, &sb);
    fs_fault_set_file(fs, "/d/MANIFEST", sb.buf, sb.len);
    EXPECT_EQ(manifest_open(fs, "/d", &m, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "holds table 6");
    manifest_image_release(&img);

    /* Intact again: opens. */
    fs_fault_set_file(fs, "/d/MANIFEST", file, len);
    m = open_ok(fs, "/d");
    manifest_close(m);
    log_set_level(ST_LOG_INFO);
    free(file);
    strbuf_release(&sb);
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Failures */

struct fail_case {
    int errnum;
    unsigned mask;
};

/*
 * Fails the nth operation of an edit (for n = 1, 2, ... until the edit
 * succeeds): before the rename nothing changes (old version, MANIFEST
 * bytes, no MANIFEST.tmp, the added file gone, the next edit fine); past
 * the rename (the directory fsync) the edit reports ST_EIO, the old
 * version stays, later edits are refused, and a reopen sees the new file
 * with every segment it lists.
 */
START_TEST(test_apply_io_failures)
{
    static const struct fail_case cases[] = {{EIO, FS_OP_ANY}, {ENOSPC, FS_OP_WRITE | FS_OP_META}};

    log_set_level(ST_LOG_ERROR + 1);
    for (size_t c = 0; c < ST_ARRAY_SIZE(cases); c++) {
        bool done = false;

        for (uint64_t nth = 1; !done; nth++) {
            struct fs *fs = new_fs();
            struct manifest *m = open_ok(fs, "/d");
            struct manifest_add a = new_seg(m, fs, 5, 1, 4, 0);
            struct manifest_add b;
            struct strbuf before = STRBUF_INIT;
            struct strbuf now = STRBUF_INIT;
            uint8_t *old, *cur;
            size_t old_len, cur_len;
            uint64_t rm = 1;
            struct manifest_edit e;
            struct err err;
            enum st_status rc;
            char path[64];

            EXPECT(nth < 20);
            EXPECT_EQ(apply_adds(m, &a, 1, &err), ST_OK);
            describe_current(m, &before);
            old = fs_fault_get_file(fs, "/d/MANIFEST", &old_len);
            b = new_seg(m, fs, 5, 5, 9, 0); /* id 2 */
            seg_file(2, path, sizeof(path));
            memset(&e, 0, sizeof(e));
            e.add = &b;
            e.nadd = 1;
            e.remove = &rm;
            e.nremove = 1;
            e.flushed_version = 9;
            fs_fault_fail_nth(fs, cases[c].mask, nth, cases[c].errnum, false);
            rc = manifest_apply(m, &e, &err);
            fs_fault_clear(fs);
            cur = fs_fault_get_file(fs, "/d/MANIFEST", &cur_len);
            describe_current(m, &now);
            if (rc == ST_OK) {
                done = true;
                EXPECT_STR(now.buf, "gen=2 flushed=9");
                EXPECT(file_exists(fs, path));
            } else {
                EXPECT_EQ(rc, ST_EIO);
                EXPECT_MSG(!strcmp(before.buf, now.buf), "nth %llu changed the version",
                           (unsigned long long)nth);
                EXPECT(!file_exists(fs, "/d/MANIFEST.tmp"));
                seg_file(1, path, sizeof(path));
                EXPECT(file_exists(fs, path)); /* still listed by the current version */
                seg_file(2, path, sizeof(path));
                if (old_len == cur_len && !memcmp(old, cur, old_len)) {
                    /* Before the rename: a clean failure. */
                    struct manifest_add b2 = new_seg(m, fs, 5, 5, 9, 0);

                    EXPECT(!file_exists(fs, path));
                    EXPECT_MSG(apply_adds(m, &b2, 1, &err) == ST_OK, "%s", err.msg);
                } else {
                    /* Past the rename: sticky, files kept for either MANIFEST. */
                    struct manifest_add b2 = new_seg(m, fs, 5, 10, 12, 0);
                    char path3[64];

                    seg_file(b2.id, path3, sizeof(path3));
                    EXPECT(file_exists(fs, path));
                    EXPECT_EQ(apply_adds(m, &b2, 1, &err), ST_EIO);
                    EXPECT(!file_exists(fs, path3));
                    manifest_close(m);
                    m = open_ok(fs, "/d");
                    describe_current(m, &now);
                    EXPECT_STR(now.buf, "gen=2 flushed=9 floor=0 next=3 segs=1");
                    seg_file(1, path, sizeof(path));
                    EXPECT(!file_exists(fs, path)); /* unlisted by the surviving file */
                }
            }
            free(old);
            free(cur);
            manifest_close(m);
            strbuf_release(&before);
            strbuf_release(&now);
            fs_fault_free(fs);
        }
    }
    log_set_level(ST_LOG_INFO);
}
END_TEST

/* A crash just after an edit keeps it; a crash after a failed one does not. */
START_TEST(test_crash_around_apply)
{
    log_set_level(ST_LOG_ERROR + 1);
    for (int fail = 0; fail < 2; fail++) {
        struct fs *fs = new_fs();
        struct manifest *m = open_ok(fs, "/d");
        struct manifest_add a = new_seg(m, fs, 5, 1, 4, 0);
        struct manifest_add b;
        struct strbuf s1 = STRBUF_INIT;
        struct strbuf s2 = STRBUF_INIT;
        struct err err;

        EXPECT_EQ(apply_adds(m, &a, 1, &err), ST_OK);
        describe_current(m, &s1);
        b = new_seg(m, fs, 5, 5, 9, 0);
        if (fail)
            fs_fault_fail_nth(fs, FS_OP_FSYNC, 1, EIO, false); /* MANIFEST.tmp's fsync */
        EXPECT_EQ(apply_adds(m, &b, 1, &err), fail ? ST_EIO : ST_OK);
        fs_fault_clear(fs);
        if (!fail)
            describe_current(m, &s1);
        fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 1);
        manifest_close(m);
        m = open_ok(fs, "/d");
        describe_current(m, &s2);
        EXPECT_MSG(!strcmp(s1.buf, s2.buf), "want\n%s\ngot\n%s", s1.buf, s2.buf);
        manifest_close(m);
        strbuf_release(&s1);
        strbuf_release(&s2);
        fs_fault_free(fs);
    }
    log_set_level(ST_LOG_INFO);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Invariants and bad edits */

START_TEST(test_overlap_refused)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a[2];
    struct manifest_add bad, other, empty;
    struct manifest_image img;
    struct strbuf sb = STRBUF_INIT;
    struct strbuf before = STRBUF_INIT;
    struct strbuf now = STRBUF_INIT;
    struct err err;
    uint8_t *file;
    size_t len;
    char path[64];

    log_set_level(ST_LOG_ERROR + 1);
    a[0] = new_seg(m, fs, 5, 1, 10, 0);
    a[1] = new_seg(m, fs, 5, 11, 20, 0);
    EXPECT_EQ(apply_adds(m, a, 2, &err), ST_OK);
    describe_current(m, &before);
    file = fs_fault_get_file(fs, "/d/MANIFEST", &len);

    /* In an edit: [15, 25] meets [11, 20]. */
    bad = new_seg(m, fs, 5, 15, 25, 0);
    seg_file(bad.id, path, sizeof(path));
    EXPECT_EQ(apply_adds(m, &bad, 1, &err), ST_EINVAL);
    EXPECT_STR(err.msg, "overlap");
    describe_current(m, &now);
    EXPECT(!strcmp(before.buf, now.buf));
    EXPECT(!file_exists(fs, path));
    {
        uint8_t *same = fs_fault_get_file(fs, "/d/MANIFEST", &len);

        EXPECT(!memcmp(same, file, len));
        free(same);
    }
    /* Equal version ranges overlap too; another table's do not. */
    bad = new_seg(m, fs, 5, 20, 20, 0);
    EXPECT_EQ(apply_adds(m, &bad, 1, &err), ST_EINVAL);
    other = new_seg(m, fs, 6, 15, 25, 0);
    EXPECT_EQ(apply_adds(m, &other, 1, &err), ST_OK);
    /* An empty segment overlaps nothing and sorts oldest. */
    {
        struct strbuf p = STRBUF_INIT;
        struct schema *s = test_schema();
        struct segment_writer *w;

        empty.id = manifest_new_segment(m, &p);
        empty.level = 0;
        EXPECT_EQ(segment_writer_new(fs, p.buf, s, 5, NULL, &w, &err), ST_OK);
        EXPECT_EQ(segment_writer_finish(w, NULL, &err), ST_OK);
        EXPECT_EQ(segment_open(fs, p.buf, &empty.seg, &err), ST_OK);
        EXPECT_EQ(apply_adds(m, &empty, 1, &err), ST_OK);
        schema_free(s);
        strbuf_release(&p);
    }
    {
        const struct manifest_version *v = manifest_acquire(m);
        const struct manifest_table *t = manifest_find_table(v, 5);

        EXPECT_EQ(t->nsegs, 3);
        EXPECT_EQ(t->segs[2]->id, empty.id);
        manifest_version_release(v);
    }
    manifest_close(m);

    /*
     * At open: a MANIFEST listing overlapping segments. Table 6's segment
     * [15, 25] is relisted as table 5's (and its file rewritten for table
     * 5, so that only the overlap is wrong).
     */
    free(file);
    file = fs_fault_get_file(fs, "/d/MANIFEST", &len);
    EXPECT_EQ(manifest_decode(file, len, &img, &err), ST_OK);
    for (size_t i = 0; i < img.nsegs; i++)
        if (img.segs[i].table_id == 6)
            img.segs[i].table_id = 5;
    manifest_encode(&img, &sb);
    fs_fault_set_file(fs, "/d/MANIFEST", sb.buf, sb.len);
    seg_file(other.id, path, sizeof(path));
    segment_unref(write_seg(fs, path, 5, 15, 25, 5));
    EXPECT_EQ(manifest_open(fs, "/d", &m, &err), ST_ECORRUPT);
    EXPECT_STR(err.msg, "overlap");
    manifest_image_release(&img);
    log_set_level(ST_LOG_INFO);
    free(file);
    strbuf_release(&sb);
    strbuf_release(&before);
    strbuf_release(&now);
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_bad_edits)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a = new_seg(m, fs, 5, 1, 4, 0);
    struct manifest_add b, c[2];
    struct manifest_edit e;
    struct strbuf before = STRBUF_INIT;
    struct strbuf now = STRBUF_INIT;
    struct err err;
    uint64_t rm[2];
    char path[64];

    log_set_level(ST_LOG_ERROR + 1);
    EXPECT_EQ(apply_adds(m, &a, 1, &err), ST_OK);
    describe_current(m, &before);
    seg_file(a.id, path, sizeof(path));

    /* Removing what is not live, or twice. */
    memset(&e, 0, sizeof(e));
    rm[0] = 77;
    e.remove = rm;
    e.nremove = 1;
    EXPECT_EQ(manifest_apply(m, &e, &err), ST_EINVAL);
    EXPECT_STR(err.msg, "not live");
    rm[0] = rm[1] = a.id;
    e.nremove = 2;
    EXPECT_EQ(manifest_apply(m, &e, &err), ST_EINVAL);

    /* Adding a live id (another open of the same file): the live file must stay. */
    {
        struct segment *again;

        EXPECT_EQ(segment_open(fs, path, &again, &err), ST_OK);
        b.id = a.id;
        b.level = 0;
        b.seg = again;
        EXPECT_EQ(apply_adds(m, &b, 1, &err), ST_EINVAL);
        EXPECT_STR(err.msg, "already live");
        EXPECT(file_exists(fs, path));
    }

    /* Adding an id twice, or one never handed out. */
    c[0] = new_seg(m, fs, 5, 10, 12, 0);
    c[1] = c[0];
    segment_ref(c[0].seg);
    EXPECT_EQ(apply_adds(m, c, 2, &err), ST_EINVAL);
    EXPECT_STR(err.msg, "twice");
    seg_file(c[0].id, path, sizeof(path));
    EXPECT(!file_exists(fs, path));
    b = new_seg(m, fs, 5, 10, 12, 0);
    b.id = 1000;
    EXPECT_EQ(apply_adds(m, &b, 1, &err), ST_EINVAL);
    EXPECT_STR(err.msg, "not handed out");

    /* A segment at another path than its id's. */
    b = new_seg(m, fs, 5, 10, 12, 0);
    b.id = c[0].id;
    EXPECT_EQ(apply_adds(m, &b, 1, &err), ST_EINVAL);

    /* Too many clock samples. */
    memset(&e, 0, sizeof(e));
    e.set_clock = true;
    e.nclock = MANIFEST_MAX_CLOCK + 1;
    e.clock = calloc(e.nclock, sizeof(*e.clock));
    EXPECT_EQ(manifest_apply(m, &e, &err), ST_EINVAL);
    free((void *)e.clock);

    describe_current(m, &now);
    EXPECT(!strcmp(before.buf, now.buf));
    manifest_close(m);
    log_set_level(ST_LOG_INFO);
    strbuf_release(&before);
    strbuf_release(&now);
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Threads and the real file system */

struct reader_arg {
    struct manifest *m;
    atomic_bool *stop;
    atomic_long reads;
    bool ok;
};

static void *reader(void *p)
{
    struct reader_arg *r = p;

    r->ok = true;
    while (!atomic_load(r->stop)) {
        const struct manifest_version *v = manifest_acquire(r->m);
        const struct manifest_table *t = manifest_find_table(v, 5);

        /* Every version lists one segment of table 5, readable to the end. */
        if (!t || t->nsegs != 1 || read_val(t->segs[0]->seg, 1, UINT64_MAX) < 0)
            r->ok = false;
        manifest_version_release(v);
        atomic_fetch_add(&r->reads, 1);
    }
    return NULL;
}

START_TEST(test_threads)
{
    struct fs *fs = new_fs();
    struct manifest *m = open_ok(fs, "/d");
    struct manifest_add a = new_seg(m, fs, 5, 1, 1, 0);
    struct reader_arg r[2];
    pthread_t th[2];
    atomic_bool stop;
    struct err err;

    atomic_init(&stop, false);
    EXPECT_EQ(apply_adds(m, &a, 1, &err), ST_OK);
    for (int i = 0; i < 2; i++) {
        r[i].m = m;
        r[i].stop = &stop;
        atomic_init(&r[i].reads, 0);
        r[i].ok = false;
        EXPECT_EQ(pthread_create(&th[i], NULL, reader, &r[i]), 0);
    }
    /* Both readers are running before the edits start. */
    while (atomic_load(&r[0].reads) == 0 || atomic_load(&r[1].reads) == 0)
        sched_yield();
    /* Replace the segment 40 times, each a newer slice. */
    for (uint64_t i = 0; i < 40; i++) {
        struct manifest_add b = new_seg(m, fs, 5, 1, i + 2, 0);
        struct manifest_edit e;
        uint64_t rm = a.id;

        memset(&e, 0, sizeof(e));
        e.add = &b;
        e.nadd = 1;
        e.remove = &rm;
        e.nremove = 1;
        EXPECT_MSG(manifest_apply(m, &e, &err) == ST_OK, "%s", err.msg);
        a = b;
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ(pthread_join(th[i], NULL), 0);
        EXPECT(r[i].ok);
    }
    {
        char **names;
        size_t n;

        EXPECT_EQ(fs->list_dir(fs, "/d/segments", &names, &n), 0);
        EXPECT_EQ(n, 1); /* every replaced file is gone */
        fs_names_free(names, n);
    }
    manifest_close(m);
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_posix)
{
    char dir[] = "/tmp/test_manifest.XXXXXX";
    struct fs *fs = fs_posix();
    struct manifest *m;
    struct manifest_add a;
    struct strbuf s1 = STRBUF_INIT;
    struct strbuf s2 = STRBUF_INIT;
    struct strbuf path = STRBUF_INIT;
    struct err err;
    char cmd[128];

    EXPECT(mkdtemp(dir) != NULL);
    m = open_ok(fs, dir);
    a.id = manifest_new_segment(m, &path);
    a.level = 0;
    a.seg = write_seg(fs, path.buf, 3, 1, 7, 10);
    EXPECT_EQ(apply_adds(m, &a, 1, &err), ST_OK);
    describe_current(m, &s1);
    manifest_close(m);
    m = open_ok(fs, dir);
    describe_current(m, &s2);
    EXPECT(!strcmp(s1.buf, s2.buf));
    EXPECT_STR(s2.buf, "gen=1");
    manifest_close(m);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    EXPECT_EQ(system(cmd), 0);
    strbuf_release(&s1);
    strbuf_release(&s2);
    strbuf_release(&path);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The compaction picker */

/* A hand-made table of n segments of the given sizes (newest first). */
struct fake_table {
    struct manifest_seg segs[64];
    struct manifest_seg *ptrs[64];
    struct manifest_table t;
};

static void fake(struct fake_table *f, const uint64_t *bytes, size_t n)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        f->segs[i].id = 100 - i;
        f->segs[i].info.file_bytes = bytes[i];
        f->ptrs[i] = &f->segs[i];
    }
    f->t.table_id = 1;
    f->t.segs = f->ptrs;
    f->t.nsegs = n;
}

#define MIB (UINT64_C(1) << 20)

START_TEST(test_tier)
{
    struct manifest_policy p = {4, 1000, 24};

    EXPECT_EQ(manifest_tier(NULL, 0), 0);
    EXPECT_EQ(manifest_tier(NULL, 16 * MIB - 1), 0);
    EXPECT_EQ(manifest_tier(NULL, 16 * MIB), 1);
    EXPECT_EQ(manifest_tier(NULL, 64 * MIB - 1), 1);
    EXPECT_EQ(manifest_tier(NULL, 64 * MIB), 2);
    EXPECT_EQ(manifest_tier(&p, 3999), 0);
    EXPECT_EQ(manifest_tier(&p, 4000), 1);
    EXPECT_EQ(manifest_tier(&p, 16000), 2);
    EXPECT(manifest_tier(&p, UINT64_MAX) > 20); /* no overflow, no endless loop */
    EXPECT(manifest_tier(&p, UINT64_MAX) < 40);
    p.fanout = 1; /* treated as 2 */
    EXPECT_EQ(manifest_tier(&p, 1999), 0);
    EXPECT_EQ(manifest_tier(&p, 2000), 1);
}
END_TEST

START_TEST(test_pick)
{
    struct manifest_policy p = {4, 1000, 8};
    struct fake_table f;
    size_t first = 99, n = 99;

    EXPECT(!manifest_pick(NULL, NULL, &first, &n));
    /* No run: three small ones, then bigger tiers. */
    {
        uint64_t b[] = {100, 200, 300, 5000, 5000, 5000, 20000};

        fake(&f, b, ST_ARRAY_SIZE(b));
        EXPECT(!manifest_pick(&f.t, &p, &first, &n));
    }
    /* A run of 4 same-tier segments. */
    {
        uint64_t b[] = {100, 200, 300, 3999, 5000};

        fake(&f, b, ST_ARRAY_SIZE(b));
        EXPECT(manifest_pick(&f.t, &p, &first, &n));
        EXPECT_EQ(first, 0);
        EXPECT_EQ(n, 4);
    }
    /* Two runs: the newest is picked, in full. */
    {
        uint64_t b[] = {100, 5000, 4000, 6000, 7000, 8000, 10, 20, 30, 40};

        fake(&f, b, ST_ARRAY_SIZE(b));
        EXPECT(manifest_pick(&f.t, &p, &first, &n));
        EXPECT_EQ(first, 1);
        EXPECT_EQ(n, 5);
    }
    /* Defaults: 4 MiB base, fanout 4. */
    {
        uint64_t b[] = {20 * MIB, 17 * MIB, 60 * MIB, 16 * MIB, 1 * MIB};

        fake(&f, b, ST_ARRAY_SIZE(b));
        EXPECT(manifest_pick(&f.t, NULL, &first, &n));
        EXPECT_EQ(first, 0);
        EXPECT_EQ(n, 4);
    }
    /*
     * No run of 4 (tiers 2 2 0 1 0 0 2 3 1 3), but 10 > max_segments 8:
     * the window of 4 with the fewest bytes, 1 + 5000 + 2 + 3 at 2.
     */
    {
        uint64_t b[] = {50000, 20000, 1, 5000, 2, 3, 20000, 90000, 5000, 200000};

        fake(&f, b, ST_ARRAY_SIZE(b));
        EXPECT(manifest_pick(&f.t, &p, &first, &n));
        EXPECT_EQ(first, 2);
        EXPECT_EQ(n, 4);
        /* Ties go to the newest window: 5006 at 2 and at 7. */
        {
            uint64_t c[] = {50000, 20000, 1, 5000, 2, 3, 90000, 1, 5000, 2, 3};

            fake(&f, c, ST_ARRAY_SIZE(c));
            EXPECT(manifest_pick(&f.t, &p, &first, &n));
            EXPECT_EQ(first, 2);
            EXPECT_EQ(n, 4);
        }
        /* Fewer segments than fanout but over max_segments: all of them. */
        p.max_segments = 2;
        fake(&f, b, 3);
        EXPECT(manifest_pick(&f.t, &p, &first, &n));
        EXPECT_EQ(first, 0);
        EXPECT_EQ(n, 3);
        p.max_segments = 8;
    }
    /* At max_segments exactly: nothing forced. */
    {
        uint64_t b[] = {1, 5000, 2, 20000, 3, 90000, 4, 5000};

        fake(&f, b, ST_ARRAY_SIZE(b));
        EXPECT(!manifest_pick(&f.t, &p, &first, &n));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("manifest");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_decode_refuses_damage);
    tcase_add_test(tc, test_decode_rules);
    tcase_add_test(tc, test_open_empty);
    tcase_add_test(tc, test_apply_and_reopen);
    tcase_add_test(tc, test_next_id_persisted);
    tcase_add_test(tc, test_reader_pins_removed);
    tcase_add_test(tc, test_leftovers_removed);
    tcase_add_test(tc, test_open_damage);
    tcase_add_test(tc, test_apply_io_failures);
    tcase_add_test(tc, test_crash_around_apply);
    tcase_add_test(tc, test_overlap_refused);
    tcase_add_test(tc, test_bad_edits);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_posix);
    tcase_add_test(tc, test_tier);
    tcase_add_test(tc, test_pick);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

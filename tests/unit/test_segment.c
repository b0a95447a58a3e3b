/*
 * Unit tests for src/engine/segment.c: segment files written and read
 * back on the in-memory fault fs.
 *
 * The core tests compare a segment with a brute-force model (a sorted
 * array of entries, fixed seeds): random multi-version histories with
 * tombstones over composite keys (a string with 0x00 bytes and an int64)
 * and every field type, written with tiny blocks so a key's versions run
 * across blocks, then point reads at every snapshot and iterators over
 * random key ranges, time ranges and flags. A second one uses a real
 * memtable as the model: its ALL_VERSIONS|TOMBSTONES iterator feeds the
 * writer, and gets and scans of both must agree. Others: block skipping
 * by key, time and version (counted), the rule that keeps a block whose
 * versions hide the next block's, empty segments, large values, LZ4 HC
 * and stored blocks, writer input checks, schema conversion, byte flips
 * at many offsets (ST_ECORRUPT or correct data, never wrong data, plus
 * the log line), failures and simulated crashes at every step of a write
 * (never a partial file under the final name), the POSIX fs, and
 * readers on two threads.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/key.h"
#include "engine/memtable.h"
#include "engine/segment.h"
#include "util/log.h"

/*
 * Check's ck_assert*() report every passing check to the parent process
 * through a pipe (one write(2) each); these report only failures, which
 * keeps the model comparisons (millions of checks) fast.
 */
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

#define EXPECT_OP_EQ(a, b) EXPECT_OP(a, ==, b)
#define EXPECT_OP_NE(a, b) EXPECT_OP(a, !=, b)
#define EXPECT_OP_LE(a, b) EXPECT_OP(a, <=, b)
#define EXPECT_OP_GE(a, b) EXPECT_OP(a, >=, b)
#define EXPECT_OP_GT(a, b) EXPECT_OP(a, >, b)
#define EXPECT_OP_LT(a, b) EXPECT_OP(a, <, b)
#define EXPECT_NULL(p)     EXPECT((p) == NULL)
#define EXPECT_NONNULL(p)  EXPECT((p) != NULL)
#define EXPECT_STREQ(a, b) EXPECT(!strcmp((a), (b)))

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static struct field mkfield(const char *name, enum field_type t, bool nullable)
{
    struct field f;

    memset(&f, 0, sizeof(f));
    st_strlcpy(f.name, name, sizeof(f.name));
    f.type = t;
    f.nullable = nullable;
    return f;
}

/* id int64 key, ts time field, two strings, an int, a float, a nullable bool and json. */
static struct schema *flights_schema(void)
{
    struct field f[8];
    const char *pk[] = {"id"};
    struct schema *s;
    struct err err;

    f[0] = mkfield("id", FIELD_INT64, false);
    f[1] = mkfield("ts", FIELD_TIMESTAMP, false);
    f[2] = mkfield("origin", FIELD_STRING, false);
    f[3] = mkfield("destination", FIELD_STRING, false);
    f[4] = mkfield("delay", FIELD_INT64, true);
    f[5] = mkfield("distance", FIELD_FLOAT64, false);
    f[6] = mkfield("ok", FIELD_BOOL, true);
    f[7] = mkfield("meta", FIELD_JSON, true);
    EXPECT_OP_EQ(schema_new(1, f, 8, pk, 1, "ts", &s, &err), ST_OK);
    return s;
}

/* Composite key (name string, n int64); ts nullable time field; all types. */
static struct schema *wide_schema(void)
{
    struct field f[8];
    const char *pk[] = {"name", "n"};
    struct schema *s;
    struct err err;

    f[0] = mkfield("val", FIELD_FLOAT64, true);
    f[1] = mkfield("name", FIELD_STRING, false);
    f[2] = mkfield("ts", FIELD_TIMESTAMP, true);
    f[3] = mkfield("n", FIELD_INT64, false);
    f[4] = mkfield("flag", FIELD_BOOL, false);
    f[5] = mkfield("data", FIELD_JSON, true);
    f[6] = mkfield("note", FIELD_STRING, true);
    f[7] = mkfield("big", FIELD_INT64, false);
    EXPECT_OP_EQ(schema_new(3, f, 8, pk, 2, "ts", &s, &err), ST_OK);
    return s;
}

static void put_le(struct strbuf *sb, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        strbuf_addch(sb, (char)(v >> (8 * i)));
}

/* The test's own row builder (schema.h format), independent of segment.c's. */
static void build_row(const struct schema *s, const struct value *vals, struct strbuf *out)
{
    size_t nb = (s->nfields + 7) / 8;
    uint8_t nulls[SCHEMA_MAX_FIELDS / 8] = {0};
    uint64_t bits;

    strbuf_reset(out);
    put_le(out, 0, 4);
    for (uint32_t i = 0; i < s->nfields; i++)
        if (vals[i].is_null)
            nulls[i / 8] |= (uint8_t)(1u << (i % 8));
    strbuf_add(out, nulls, nb);
    for (uint32_t i = 0; i < s->nfields; i++) {
        const struct value *v = &vals[i];

        if (v->is_null)
            continue;
        switch (s->fields[i].type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            put_le(out, (uint64_t)v->u.i, 8);
            break;
        case FIELD_FLOAT64:
            memcpy(&bits, &v->u.f, 8);
            put_le(out, bits, 8);
            break;
        case FIELD_BOOL:
            strbuf_addch(out, v->u.b ? 1 : 0);
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            put_le(out, v->u.s.len, 4);
            strbuf_add(out, v->u.s.ptr, v->u.s.len);
            break;
        }
    }
    for (int i = 0; i < 4; i++)
        out->buf[i] = (char)(out->len >> (8 * i));
}

/* One entry of the model. */
struct ent {
    uint8_t *key;     /* encoded key */
    size_t key_len;   /* its length */
    uint64_t version; /* commit version */
    bool tomb;        /* a delete */
    uint8_t *row;     /* the row, or NULL */
    size_t row_len;   /* its length */
    bool has_time;    /* the row has a non-null time value */
    int64_t time;     /* that value */
};

struct model {
    struct ent *e; /* in (key asc, version desc) order */
    size_t n;      /* entries */
};

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].row);
    }
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

static int ent_cmp(const void *a, const void *b)
{
    const struct ent *x = a;
    const struct ent *y = b;
    int c = key_compare(x->key, x->key_len, y->key, y->key_len);

    if (c)
        return c;
    return x->version < y->version ? 1 : x->version > y->version ? -1 : 0;
}

static uint8_t *mdup(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);

    memcpy(d, p, n);
    return d;
}

static const char *const words[] = {"LAS", "PHL", "SFO", "", "JFK", "a\0b", "a", "zz"};
static const size_t word_len[] = {3, 3, 3, 0, 3, 3, 1, 2};

/* Random values for a row of the wide schema with key (name, n). */
static void wide_values(struct value *v, uint32_t name, int64_t n, char *scratch)
{
    memset(v, 0, 8 * sizeof(*v));
    v[0].type = FIELD_FLOAT64;
    v[0].is_null = rnd() % 5 == 0;
    v[0].u.f = (rnd() % 2) ? (double)(rnd() % 1000) / 100.0 : (double)rnd() / 3.0;
    v[1].type = FIELD_STRING;
    v[1].u.s.ptr = words[name];
    v[1].u.s.len = (uint32_t)word_len[name];
    v[2].type = FIELD_TIMESTAMP;
    v[2].is_null = rnd() % 6 == 0;
    v[2].u.i = (int64_t)(rnd() % 1000) - 200;
    v[3].type = FIELD_INT64;
    v[3].u.i = n;
    v[4].type = FIELD_BOOL;
    v[4].u.b = rnd() & 1;
    v[5].type = FIELD_JSON;
    v[5].is_null = rnd() % 3 == 0;
    v[5].u.s.ptr = (rnd() & 1) ? "{\"a\":[1,2]}" : "null";
    v[5].u.s.len = (uint32_t)strlen(v[5].u.s.ptr);
    v[6].type = FIELD_STRING;
    v[6].is_null = rnd() % 4 == 0;
    snprintf(scratch, 40, "note %llu", (unsigned long long)(rnd() % 50));
    v[6].u.s.ptr = scratch;
    v[6].u.s.len = (rnd() % 7 == 0) ? 0 : (uint32_t)strlen(scratch);
    v[7].type = FIELD_INT64;
    v[7].u.i = (rnd() % 3 == 0) ? INT64_MIN : (rnd() % 2) ? INT64_MAX : (int64_t)rnd();
}

/*
 * A random history for the wide schema: nkeys keys, each with 1..5
 * versions from 1..60, about a fifth of them tombstones.
 */
static void model_random(const struct schema *s, struct model *m, size_t nkeys)
{
    struct strbuf row = STRBUF_INIT;
    struct value v[8];
    char scratch[40];
    uint8_t key[256];

    m->e = calloc(nkeys * 5, sizeof(*m->e));
    m->n = 0;
    for (size_t k = 0; k < nkeys; k++) {
        uint32_t name = (uint32_t)(rnd() % ST_ARRAY_SIZE(words));
        int64_t n = (int64_t)(rnd() % 40) - 20 + (int64_t)k * 1000;
        int nver = 1 + (int)(rnd() % 5);
        uint64_t ver = 60;
        size_t klen;

        wide_values(v, name, n, scratch);
        build_row(s, v, &row);
        klen = key_encode_row(s, row.buf, key, sizeof(key));
        for (int j = 0; j < nver && ver > 0; j++) {
            struct ent *e = &m->e[m->n++];

            ver -= 1 + rnd() % 12;
            if ((int64_t)ver <= 0)
                ver = 1;
            wide_values(v, name, n, scratch);
            build_row(s, v, &row);
            e->key = mdup(key, klen);
            e->key_len = klen;
            e->version = ver;
            e->tomb = rnd() % 5 == 0;
            if (!e->tomb) {
                e->row = mdup(row.buf, row.len);
                e->row_len = row.len;
                e->has_time = !v[2].is_null;
                e->time = v[2].u.i;
            }
            if (ver == 1)
                break;
        }
    }
    qsort(m->e, m->n, sizeof(*m->e), ent_cmp);
    /* Equal keys from different k (n collides): drop repeated versions. */
    {
        size_t o = 0;

        for (size_t i = 0; i < m->n; i++) {
            if (o && !ent_cmp(&m->e[o - 1], &m->e[i])) {
                free(m->e[i].key);
                free(m->e[i].row);
                continue;
            }
            m->e[o++] = m->e[i];
        }
        m->n = o;
    }
    strbuf_release(&row);
}

static struct fs *new_fs(void)
{
    struct fs *fs = fs_fault_new();

    EXPECT_OP_EQ(fs->mkdir(fs, "/d", 0755), 0);
    return fs;
}

static void write_model(struct fs *fs, const char *path, const struct schema *s,
                        const struct model *m, const struct segment_writer_opts *o,
                        struct segment_info *info)
{
    struct segment_writer *w;
    struct err err;

    EXPECT_OP_EQ(segment_writer_new(fs, path, s, 77, o, &w, &err), ST_OK);
    for (size_t i = 0; i < m->n; i++) {
        const struct ent *e = &m->e[i];

        EXPECT_MSG(segment_writer_add(w, e->key, e->key_len, e->version, e->tomb, e->row, &err) ==
                       ST_OK,
                   "add %zu: %s", i, err.msg);
    }
    EXPECT_MSG(segment_writer_finish(w, info, &err) == ST_OK, "%s", err.msg);
}

/* The model's newest entry of key with version <= snap, or NULL. */
static const struct ent *model_get(const struct model *m, const void *key, size_t len,
                                   uint64_t snap)
{
    size_t lo = 0;
    size_t hi = m->n;

    /* The first entry of key (binary search), then its versions, newest first. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (key_compare(m->e[mid].key, m->e[mid].key_len, key, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < m->n && !key_compare(m->e[lo].key, m->e[lo].key_len, key, len); lo++)
        if (m->e[lo].version <= snap)
            return &m->e[lo];
    return NULL;
}

static void check_get(struct segment *seg, const struct model *m, const void *key, size_t len,
                      uint64_t snap)
{
    const struct ent *want = model_get(m, key, len, snap);
    struct strbuf buf = STRBUF_INIT;
    struct segment_rec rec;
    struct err err;
    enum st_status rc = segment_get(seg, key, len, snap, &rec, &buf, &err);

    if (!want) {
        EXPECT_MSG(rc == ST_ENOTFOUND, "get at %llu: %s", (unsigned long long)snap, status_str(rc));
    } else {
        EXPECT_MSG(rc == ST_OK, "get at %llu: %s %s", (unsigned long long)snap, status_str(rc),
                   rc == ST_ENOTFOUND ? "" : err.msg);
        EXPECT_OP_EQ(rec.version, want->version);
        EXPECT_OP_EQ(rec.tombstone, want->tomb);
        EXPECT_OP_EQ(rec.key_len, len);
        EXPECT(!memcmp(rec.key, key, len));
        if (want->tomb) {
            EXPECT_NULL(rec.row);
        } else {
            EXPECT_OP_EQ(rec.row_len, want->row_len);
            EXPECT(!memcmp(rec.row, want->row, want->row_len));
        }
    }
    strbuf_release(&buf);
}

static bool in_range(const struct segment_range *r, const void *k, size_t len)
{
    int c;

    if (r && r->lo) {
        c = key_compare(k, len, r->lo, r->lo_len);
        if (c < 0 || (c == 0 && r->lo_excl))
            return false;
    }
    if (r && r->hi) {
        c = key_compare(k, len, r->hi, r->hi_len);
        if (c > 0 || (c == 0 && !r->hi_incl))
            return false;
    }
    return true;
}

/* What an iterator must yield, by brute force over the model: indexes into m->e. */
static size_t model_iter(const struct model *m, const struct segment_range *r, uint64_t snap,
                         unsigned flags, size_t *out)
{
    size_t n = 0;

    for (size_t i = 0; i < m->n; i++) {
        const struct ent *e = &m->e[i];
        bool newest = true;

        if (!in_range(r, e->key, e->key_len) || e->version > snap)
            continue;
        /* Entries are sorted: a key's newer versions come right before. */
        for (size_t j = i;
             j-- > 0 && !key_compare(m->e[j].key, m->e[j].key_len, e->key, e->key_len);)
            if (m->e[j].version <= snap)
                newest = false;
        if (!(flags & SEGMENT_ITER_ALL_VERSIONS) && !newest)
            continue;
        if (e->tomb) {
            if (flags & SEGMENT_ITER_TOMBSTONES)
                out[n++] = i;
            continue;
        }
        if (r && r->has_time && (!e->has_time || e->time < r->time_lo || e->time > r->time_hi))
            continue;
        out[n++] = i;
    }
    return n;
}

static void check_iter(struct segment *seg, const struct model *m, const struct segment_range *r,
                       uint64_t snap, unsigned flags, struct segment_iter_stats *stats)
{
    size_t *want = calloc(m->n + 1, sizeof(*want));
    size_t nwant = model_iter(m, r, snap, flags, want);
    struct segment_iter *it = segment_iter_new(seg, r, snap, flags);
    struct segment_rec rec;
    struct segment_info info;
    struct err err;
    size_t got = 0;

    segment_get_info(seg, &info);
    while (segment_iter_next(it, &rec)) {
        const struct ent *e;

        EXPECT_MSG(got < nwant, "iterator yields more than %zu entries (snap %llu flags %u)", nwant,
                   (unsigned long long)snap, flags);
        e = &m->e[want[got++]];
        EXPECT(rec.key_len == e->key_len && !memcmp(rec.key, e->key, e->key_len));
        EXPECT_OP_EQ(rec.version, e->version);
        EXPECT_OP_EQ(rec.tombstone, e->tomb);
        EXPECT_OP_EQ(rec.schema_version, info.schema_version);
        if (!e->tomb)
            EXPECT(rec.row_len == e->row_len && !memcmp(rec.row, e->row, e->row_len));
    }
    EXPECT_MSG(segment_iter_status(it, &err) == ST_OK, "%s", err.msg);
    EXPECT_MSG(got == nwant, "iterator yields %zu of %zu entries (snap %llu flags %u)", got, nwant,
               (unsigned long long)snap, flags);
    if (stats)
        segment_iter_get_stats(it, stats);
    segment_iter_free(it);
    free(want);
}

static void random_range(const struct model *m, struct segment_range *r)
{
    const struct ent *a = &m->e[rnd() % m->n];
    const struct ent *b = &m->e[rnd() % m->n];

    memset(r, 0, sizeof(*r));
    if (rnd() % 4) {
        r->lo = a->key;
        r->lo_len = a->key_len - (rnd() % 3 == 0); /* sometimes a prefix: not a key */
        r->lo_excl = rnd() & 1;
    }
    if (rnd() % 4) {
        r->hi = b->key;
        r->hi_len = b->key_len;
        r->hi_incl = rnd() & 1;
    }
    if (rnd() % 3 == 0) {
        r->has_time = true;
        r->time_lo = (int64_t)(rnd() % 1000) - 200;
        r->time_hi = r->time_lo + (int64_t)(rnd() % 500);
    }
}

static void run_random(uint64_t seed, size_t nkeys, const struct segment_writer_opts *o)
{
    struct schema *s = wide_schema();
    struct fs *fs = new_fs();
    struct model m;
    struct segment *seg;
    struct segment_info info;
    struct err err;
    uint8_t absent[64];

    rng_state = seed;
    model_random(s, &m, nkeys);
    write_model(fs, "/d/seg", s, &m, o, &info);
    EXPECT_OP_EQ(segment_open(fs, "/d/seg", &seg, &err), ST_OK);
    EXPECT(segment_schema_matches(seg, s));
    EXPECT_OP_EQ(info.entries, m.n);
    EXPECT_OP_EQ(info.table_id, 77);
    EXPECT_OP_EQ(info.schema_version, 3);
    {
        struct segment_info in2;

        segment_get_info(seg, &in2);
        EXPECT_OP_EQ(in2.entries, m.n);
        EXPECT_OP_EQ(in2.blocks, info.blocks);
        EXPECT_OP_EQ(in2.file_bytes, info.file_bytes);
        EXPECT_OP_EQ(in2.keys, info.keys);
    }

    /* Point reads of every entry's key at every snapshot that matters. */
    for (size_t i = 0; i < m.n; i++) {
        if (i && !key_compare(m.e[i].key, m.e[i].key_len, m.e[i - 1].key, m.e[i - 1].key_len))
            continue;
        for (uint64_t snap = 0; snap <= 61; snap += 1 + rnd() % 4)
            check_get(seg, &m, m.e[i].key, m.e[i].key_len, snap);
        check_get(seg, &m, m.e[i].key, m.e[i].key_len, UINT64_MAX);
        /* Neighbours that are not keys. */
        memcpy(absent, m.e[i].key, ST_MIN(m.e[i].key_len, sizeof(absent) - 1));
        absent[ST_MIN(m.e[i].key_len, sizeof(absent) - 1)] = 0;
        check_get(seg, &m, absent, ST_MIN(m.e[i].key_len, sizeof(absent) - 1) + 1, UINT64_MAX);
        check_get(seg, &m, absent, m.e[i].key_len - 1, UINT64_MAX);
    }
    for (int round = 0; round < 200; round++) {
        struct segment_range r;
        uint64_t snap = (rnd() % 8 == 0) ? UINT64_MAX : rnd() % 62;

        random_range(&m, &r);
        check_iter(seg, &m, (rnd() % 10) ? &r : NULL, snap, (unsigned)(rnd() % 4), NULL);
    }
    segment_unref(seg);
    model_free(&m);
    fs_fault_free(fs);
    schema_free(s);
}

START_TEST(test_random_tiny_blocks)
{
    struct segment_writer_opts o = {.block_rows = 3};

    run_random(1, 300, &o);
}
END_TEST

START_TEST(test_random_small_blocks)
{
    struct segment_writer_opts o = {.block_rows = 17, .lz4_hc_level = 9};

    run_random(2, 600, &o);
}
END_TEST

START_TEST(test_random_byte_blocks)
{
    struct segment_writer_opts o = {.block_bytes = 700, .bloom_bits = 4};

    run_random(3, 600, &o);
}
END_TEST

START_TEST(test_random_defaults)
{
    run_random(4, 800, NULL);
}
END_TEST

/* ------------------------------------------------------------------ */

/* Flights-like rows: key id, time 60 s * id, versions rising with id. */
static void model_flights(const struct schema *s, struct model *m, size_t n, int64_t first_id)
{
    struct strbuf row = STRBUF_INIT;
    struct value v[8];
    uint8_t key[16];

    m->e = calloc(n, sizeof(*m->e));
    m->n = n;
    for (size_t i = 0; i < n; i++) {
        int64_t id = first_id + (int64_t)i;
        struct ent *e = &m->e[i];

        memset(v, 0, sizeof(v));
        v[0] = (struct value){.type = FIELD_INT64, .u.i = id};
        v[1] = (struct value){.type = FIELD_TIMESTAMP, .u.i = 978307200000 + id * 60000};
        v[2] = (struct value){.type = FIELD_STRING, .u.s = {words[id % 3], 3}};
        v[3] = (struct value){.type = FIELD_STRING, .u.s = {words[(id / 3) % 3], 3}};
        v[4] = (struct value){.type = FIELD_INT64, .is_null = id % 11 == 0, .u.i = id % 90 - 10};
        v[5] = (struct value){.type = FIELD_FLOAT64, .u.f = (double)(100 + id % 3900)};
        v[6] = (struct value){.type = FIELD_BOOL, .is_null = id % 2 == 0, .u.b = id % 3 == 0};
        v[7] = (struct value){.type = FIELD_JSON, .is_null = true};
        build_row(s, v, &row);
        e->key_len = key_encode_row(s, row.buf, key, sizeof(key));
        e->key = mdup(key, e->key_len);
        e->row = mdup(row.buf, row.len);
        e->row_len = row.len;
        e->version = 1 + (uint64_t)i / 100;
        e->has_time = true;
        e->time = v[1].u.i;
    }
    strbuf_release(&row);
}

static size_t int_key(int64_t v, uint8_t *buf)
{
    struct value val = {.type = FIELD_INT64, .u.i = v};

    return key_encode(&val, 1, buf, 16);
}

START_TEST(test_block_skipping)
{
    struct schema *s = flights_schema();
    struct fs *fs = new_fs();
    struct segment_writer_opts o = {.block_rows = 256};
    struct segment_iter_stats st;
    struct segment_range r;
    struct segment_info info;
    struct segment *seg;
    struct model m;
    struct err err;
    uint8_t lo[16];
    uint8_t hi[16];
    size_t nblocks;

    model_flights(s, &m, 10000, 1);
    write_model(fs, "/d/f", s, &m, &o, &info);
    EXPECT_OP_EQ(segment_open(fs, "/d/f", &seg, &err), ST_OK);
    nblocks = (10000 + 255) / 256;
    EXPECT_OP_EQ(info.blocks, nblocks);
    EXPECT(info.has_time);
    EXPECT_OP_EQ(info.min_time, 978307200000 + 60000);
    EXPECT_OP_EQ(info.max_time, 978307200000 + 10000 * 60000);
    EXPECT_OP_EQ(info.min_version, 1);
    EXPECT_OP_EQ(info.max_version, 100);
    EXPECT_OP_EQ(info.keys, 10000);

    /* Whole scan reads every block. */
    check_iter(seg, &m, NULL, UINT64_MAX, 0, &st);
    EXPECT_OP_EQ(st.blocks_read, nblocks);
    EXPECT_OP_EQ(st.entries_scanned, 10000);

    /* A key range reads only its blocks. */
    memset(&r, 0, sizeof(r));
    r.lo = lo;
    r.lo_len = int_key(5000, lo);
    r.hi = hi;
    r.hi_len = int_key(5100, hi);
    check_iter(seg, &m, &r, UINT64_MAX, 0, &st);
    EXPECT_OP_LE(st.blocks_read, 2);
    EXPECT_OP_LE(st.entries_scanned, 2 * 256);

    /* A time range skips the other blocks by their stats. */
    memset(&r, 0, sizeof(r));
    r.has_time = true;
    r.time_lo = 978307200000 + 7000 * 60000;
    r.time_hi = 978307200000 + 7050 * 60000;
    check_iter(seg, &m, &r, UINT64_MAX, 0, &st);
    EXPECT_OP_LE(st.blocks_read, 2);
    EXPECT_OP_GE(st.blocks_skipped_time, nblocks - 2);
    check_iter(seg, &m, &r, UINT64_MAX, SEGMENT_ITER_ALL_VERSIONS, &st);
    EXPECT_OP_LE(st.blocks_read, 2);

    /* A time range before everything reads nothing. */
    r.time_lo = 0;
    r.time_hi = 1000;
    check_iter(seg, &m, &r, UINT64_MAX, 0, &st);
    EXPECT_OP_EQ(st.blocks_read, 0);
    EXPECT_OP_EQ(st.blocks_skipped_time, nblocks);

    /* An old snapshot skips blocks whose every version is newer. */
    check_iter(seg, &m, NULL, 10, 0, &st);
    EXPECT_OP_LE(st.blocks_read, 5);
    EXPECT_OP_GE(st.blocks_skipped_version, nblocks - 5);

    /* Point reads of every key, a few snapshots each. */
    for (size_t i = 0; i < m.n; i += 7) {
        check_get(seg, &m, m.e[i].key, m.e[i].key_len, UINT64_MAX);
        check_get(seg, &m, m.e[i].key, m.e[i].key_len, m.e[i].version - 1);
    }
    /* Absent keys: the bloom filter answers nearly all of them. */
    {
        int passed = 0;

        for (int64_t id = 20000; id < 30000; id++) {
            uint8_t k[16];
            size_t kl = int_key(id, k);

            passed += segment_may_contain(seg, k, kl);
            if (id % 50 == 0)
                check_get(seg, &m, k, kl, UINT64_MAX);
        }
        EXPECT_OP_LE(passed, 200); /* 2%; ~0.8% expected */
    }
    segment_unref(seg);
    model_free(&m);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* Adds an entry of the flights schema with the given id, version and time. */
static void add_flight(struct segment_writer *w, const struct schema *s, struct model *m,
                       int64_t id, uint64_t ver, int64_t ts, bool tomb)
{
    struct strbuf row = STRBUF_INIT;
    struct value v[8];
    struct ent *e = &m->e[m->n++];
    uint8_t key[16];
    struct err err;

    memset(v, 0, sizeof(v));
    v[0] = (struct value){.type = FIELD_INT64, .u.i = id};
    v[1] = (struct value){.type = FIELD_TIMESTAMP, .u.i = ts};
    v[2] = (struct value){.type = FIELD_STRING, .u.s = {"SFO", 3}};
    v[3] = (struct value){.type = FIELD_STRING, .u.s = {"LAX", 3}};
    v[4] = (struct value){.type = FIELD_INT64, .u.i = (int64_t)ver};
    v[5] = (struct value){.type = FIELD_FLOAT64, .u.f = 1.5};
    v[6] = (struct value){.type = FIELD_BOOL, .is_null = true};
    v[7] = (struct value){.type = FIELD_JSON, .is_null = true};
    build_row(s, v, &row);
    e->key_len = int_key(id, key);
    e->key = mdup(key, e->key_len);
    e->version = ver;
    e->tomb = tomb;
    if (!tomb) {
        e->row = mdup(row.buf, row.len);
        e->row_len = row.len;
        e->has_time = true;
        e->time = ts;
    }
    EXPECT_OP_EQ(segment_writer_add(w, e->key, e->key_len, ver, tomb, e->row, &err), ST_OK);
    strbuf_release(&row);
}

/*
 * Key 1's two newest versions are out of the time range and fill block 0;
 * its older ones, in range, are in block 1. Skipping block 0 by its time
 * stats would resurrect version 3.
 */
START_TEST(test_time_skip_keeps_shadowing_block)
{
    struct schema *s = flights_schema();
    struct fs *fs = new_fs();
    struct segment_writer_opts o = {.block_rows = 2};
    struct segment_iter_stats st;
    struct segment_range r = {.has_time = true, .time_lo = 0, .time_hi = 10};
    struct segment *seg;
    struct segment_writer *w;
    struct model m = {calloc(16, sizeof(struct ent)), 0};
    struct err err;

    EXPECT_OP_EQ(segment_writer_new(fs, "/d/s", s, 1, &o, &w, &err), ST_OK);
    add_flight(w, s, &m, 1, 5, 100, false);
    add_flight(w, s, &m, 1, 4, 100, false); /* block 0: time [100, 100] */
    add_flight(w, s, &m, 1, 3, 5, false);
    add_flight(w, s, &m, 1, 2, 5, false); /* block 1: time [5, 5] */
    add_flight(w, s, &m, 2, 9, 200, false);
    add_flight(w, s, &m, 2, 1, 200, true); /* block 2: a tombstone, time [200, 200] */
    add_flight(w, s, &m, 3, 1, 300, false);
    add_flight(w, s, &m, 4, 1, 7, false); /* block 3: time [7, 300] */
    EXPECT_OP_EQ(segment_writer_finish(w, NULL, &err), ST_OK);
    EXPECT_OP_EQ(segment_open(fs, "/d/s", &seg, &err), ST_OK);

    /* Newest per key: key 1 is out of range (v5), key 4 is in. */
    check_iter(seg, &m, &r, UINT64_MAX, 0, &st);
    EXPECT_OP_EQ(st.blocks_skipped_time, 1); /* block 2 only */
    EXPECT_OP_EQ(st.blocks_read, 3);
    /* Every version: block 0 is skipped; v3 and v2 come out. */
    check_iter(seg, &m, &r, UINT64_MAX, SEGMENT_ITER_ALL_VERSIONS, &st);
    EXPECT_OP_EQ(st.blocks_skipped_time, 2);
    /* Tombstones wanted: block 2 must be read. */
    check_iter(seg, &m, &r, UINT64_MAX, SEGMENT_ITER_TOMBSTONES, &st);
    EXPECT_OP_EQ(st.blocks_skipped_time, 0);
    /* At snapshot 3, block 0 is all newer: skipped by version, key 1 v3 in range. */
    check_iter(seg, &m, &r, 3, 0, &st);
    EXPECT_OP_EQ(st.blocks_skipped_version, 1);
    check_iter(seg, &m, NULL, 3, SEGMENT_ITER_TOMBSTONES, NULL);
    check_iter(seg, &m, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS,
               NULL);
    for (uint64_t snap = 0; snap < 11; snap++)
        for (size_t i = 0; i < m.n; i++)
            check_get(seg, &m, m.e[i].key, m.e[i].key_len, snap);
    segment_unref(seg);
    model_free(&m);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */

/* The memtable as the model: flush it through its iterator, compare reads. */
START_TEST(test_against_memtable)
{
    struct schema *s = wide_schema();
    struct fs *fs = new_fs();
    struct memtable *mt = memtable_new(NULL);
    struct segment_writer_opts o = {.block_rows = 5};
    struct memtable_iter *mit;
    struct memtable_rec mrec;
    struct segment_writer *w;
    struct segment *seg;
    struct strbuf row = STRBUF_INIT;
    struct strbuf buf = STRBUF_INIT;
    struct value v[8];
    char scratch[40];
    uint8_t keys[64][256];
    size_t klen[64];
    struct err err;

    rng_state = 5;
    for (int k = 0; k < 64; k++) {
        wide_values(v, (uint32_t)(k % ST_ARRAY_SIZE(words)), k / 8, scratch);
        build_row(s, v, &row);
        klen[k] = key_encode_row(s, row.buf, keys[k], sizeof(keys[k]));
    }
    /* 40 versions, each writing a few random keys (sometimes twice). */
    for (uint64_t ver = 1; ver <= 40; ver++) {
        for (int j = 0; j < 6; j++) {
            int k = (int)(rnd() % 64);
            struct memtable_write mw = {.table = 9, .key = keys[k], .key_len = (uint32_t)klen[k]};

            mw.hash = key_hash(keys[k], klen[k]);
            mw.schema_version = 3;
            if (rnd() % 4) {
                wide_values(v, (uint32_t)(k % ST_ARRAY_SIZE(words)), k / 8, scratch);
                build_row(s, v, &row);
                mw.row = row.buf;
                mw.row_len = (uint32_t)row.len;
            }
            memtable_put(mt, ver, &mw);
        }
    }
    memtable_freeze(mt);
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/m", s, 9, &o, &w, &err), ST_OK);
    mit = memtable_iter_new(mt, 9, NULL, UINT64_MAX,
                            MEMTABLE_ITER_ALL_VERSIONS | MEMTABLE_ITER_TOMBSTONES);
    while (memtable_iter_next(mit, &mrec))
        EXPECT_MSG(segment_writer_add(w, mrec.key, mrec.key_len, mrec.version, mrec.tombstone,
                                      mrec.row, &err) == ST_OK,
                   "%s", err.msg);
    memtable_iter_free(mit);
    EXPECT_OP_EQ(segment_writer_finish(w, NULL, &err), ST_OK);
    EXPECT_OP_EQ(segment_open(fs, "/d/m", &seg, &err), ST_OK);

    for (int k = 0; k < 64; k++) {
        for (uint64_t snap = 0; snap <= 41; snap++) {
            struct segment_rec srec;
            bool in_mt =
                memtable_get(mt, 9, keys[k], klen[k], key_hash(keys[k], klen[k]), snap, &mrec);
            enum st_status rc = segment_get(seg, keys[k], klen[k], snap, &srec, &buf, &err);

            EXPECT_OP_EQ(rc, in_mt ? ST_OK : ST_ENOTFOUND);
            if (!in_mt)
                continue;
            EXPECT_OP_EQ(srec.version, mrec.version);
            EXPECT_OP_EQ(srec.tombstone, mrec.tombstone);
            EXPECT(srec.row_len == mrec.row_len &&
                   (!mrec.row_len || !memcmp(srec.row, mrec.row, mrec.row_len)));
        }
    }
    for (int round = 0; round < 100; round++) {
        int a = (int)(rnd() % 64);
        int b = (int)(rnd() % 64);
        struct memtable_range mr = {keys[a], klen[a], rnd() & 1, keys[b], klen[b], rnd() & 1};
        struct segment_range sr = {.lo = keys[a],
                                   .lo_len = klen[a],
                                   .lo_excl = mr.lo_excl,
                                   .hi = keys[b],
                                   .hi_len = klen[b],
                                   .hi_incl = mr.hi_incl};
        uint64_t snap = rnd() % 42;
        unsigned flags = (unsigned)(rnd() % 4);
        struct segment_iter *sit = segment_iter_new(seg, &sr, snap, flags);
        struct segment_rec srec;

        mit = memtable_iter_new(mt, 9, &mr, snap, flags);
        while (memtable_iter_next(mit, &mrec)) {
            EXPECT(segment_iter_next(sit, &srec));
            EXPECT(srec.key_len == mrec.key_len && !memcmp(srec.key, mrec.key, mrec.key_len));
            EXPECT_OP_EQ(srec.version, mrec.version);
            EXPECT_OP_EQ(srec.tombstone, mrec.tombstone);
            EXPECT(srec.row_len == mrec.row_len &&
                   (!mrec.row_len || !memcmp(srec.row, mrec.row, mrec.row_len)));
        }
        EXPECT(!segment_iter_next(sit, &srec));
        EXPECT_OP_EQ(segment_iter_status(sit, NULL), ST_OK);
        segment_iter_free(sit);
        memtable_iter_free(mit);
    }
    segment_unref(seg);
    memtable_unref(mt);
    strbuf_release(&row);
    strbuf_release(&buf);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

START_TEST(test_empty_segment)
{
    struct schema *s = flights_schema();
    struct fs *fs = new_fs();
    struct segment_writer *w;
    struct segment *seg;
    struct segment_info info;
    struct segment_iter *it;
    struct segment_rec rec;
    struct strbuf buf = STRBUF_INIT;
    struct err err;
    const void *lo;
    const void *hi;
    size_t lol;
    size_t hil;
    uint8_t k[16];

    EXPECT_OP_EQ(segment_writer_new(fs, "/d/e", s, 5, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_finish(w, &info, &err), ST_OK);
    EXPECT_OP_EQ(info.entries, 0);
    EXPECT_OP_EQ(segment_open(fs, "/d/e", &seg, &err), ST_OK);
    segment_get_info(seg, &info);
    EXPECT_OP_EQ(info.entries, 0);
    EXPECT_OP_EQ(info.blocks, 0);
    EXPECT_OP_EQ(info.table_id, 5);
    EXPECT(!info.has_time);
    EXPECT(!segment_key_range(seg, &lo, &lol, &hi, &hil));
    EXPECT_OP_EQ(segment_get(seg, k, int_key(1, k), UINT64_MAX, &rec, &buf, &err), ST_ENOTFOUND);
    it = segment_iter_new(seg, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES);
    EXPECT(!segment_iter_next(it, &rec));
    EXPECT_OP_EQ(segment_iter_status(it, NULL), ST_OK);
    segment_iter_free(it);
    EXPECT_STREQ(segment_path(seg), "/d/e");
    segment_unref(seg);
    strbuf_release(&buf);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* Values over 64 KiB, one per block, and incompressible ones (stored blocks). */
START_TEST(test_large_values)
{
    struct schema *s = wide_schema();
    struct fs *fs = new_fs();
    struct segment_writer_opts o = {.block_bytes = 1000};
    struct segment *seg;
    struct model m = {calloc(8, sizeof(struct ent)), 0};
    struct strbuf row = STRBUF_INIT;
    struct value v[8];
    char scratch[40];
    char *big = malloc(300000);
    uint8_t key[64];
    uint8_t *file;
    size_t flen;
    struct err err;

    rng_state = 6;
    for (size_t i = 0; i < 300000; i++)
        big[i] = (char)(' ' + rnd() % 90);
    for (int i = 0; i < 6; i++) {
        struct ent *e = &m.e[m.n++];

        wide_values(v, 0, i, scratch);
        v[6].is_null = false;
        v[6].u.s.ptr = big + i;
        v[6].u.s.len = 70000 + (uint32_t)i * 40000;
        v[5].is_null = false;
        v[5].u.s.ptr = "[\"x\"]";
        v[5].u.s.len = 5;
        build_row(s, v, &row);
        e->key_len = key_encode_row(s, row.buf, key, sizeof(key));
        e->key = mdup(key, e->key_len);
        e->row = mdup(row.buf, row.len);
        e->row_len = row.len;
        e->version = 10;
        e->has_time = !v[2].is_null;
        e->time = v[2].u.i;
    }
    write_model(fs, "/d/l", s, &m, &o, NULL);
    file = fs_fault_get_file(fs, "/d/l", &flen);
    EXPECT_NONNULL(file);
    EXPECT_OP_EQ(file[32], 0); /* first block stored: random text barely compresses */
    free(file);
    EXPECT_OP_EQ(segment_open(fs, "/d/l", &seg, &err), ST_OK);
    for (size_t i = 0; i < m.n; i++)
        check_get(seg, &m, m.e[i].key, m.e[i].key_len, 10);
    check_iter(seg, &m, NULL, UINT64_MAX, 0, NULL);
    segment_unref(seg);
    model_free(&m);
    strbuf_release(&row);
    free(big);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

START_TEST(test_writer_rejects)
{
    struct schema *s = flights_schema();
    struct fs *fs = new_fs();
    struct segment_writer *w;
    struct model m = {calloc(4, sizeof(struct ent)), 0};
    struct strbuf row = STRBUF_INIT;
    uint8_t k1[16];
    uint8_t k2[16];
    size_t l1 = int_key(1, k1);
    size_t l2 = int_key(2, k2);
    struct err err;
    size_t len;

    /* Out of order keys. */
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    add_flight(w, s, &m, 2, 1, 0, true);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 1, true, NULL, &err), ST_EINVAL);
    EXPECT_OP_EQ(segment_writer_add(w, k2, l2, 1, true, NULL, &err), ST_EINVAL); /* sticky */
    EXPECT_OP_EQ(segment_writer_finish(w, NULL, &err), ST_EINVAL);
    EXPECT_NULL(fs_fault_get_file(fs, "/d/w", &len));
    EXPECT_NULL(fs_fault_get_file(fs, "/d/w.tmp", &len));

    /* The same version twice, and a version going up. */
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 5, true, NULL, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 5, true, NULL, &err), ST_EINVAL);
    segment_writer_abort(w);
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 5, true, NULL, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 6, true, NULL, &err), ST_EINVAL);
    segment_writer_abort(w);

    /* Version 0, empty key, tombstone with a row, key that does not decode. */
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 0, true, NULL, &err), ST_EINVAL);
    segment_writer_abort(w);
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, 0, 1, true, NULL, &err), ST_EINVAL);
    segment_writer_abort(w);
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, l1, 1, true, k1, &err), ST_EINVAL);
    segment_writer_abort(w);
    EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_add(w, k1, 7, 1, true, NULL, &err), ST_EINVAL);
    segment_writer_abort(w);

    /* A row whose key differs, and a malformed row. */
    {
        struct model m2 = {calloc(2, sizeof(struct ent)), 0};

        EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
        add_flight(w, s, &m2, 7, 1, 0, false);
        segment_writer_abort(w);
        strbuf_add(&row, m2.e[0].row, m2.e[0].row_len);
        EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
        EXPECT_OP_EQ(segment_writer_add(w, k2, l2, 1, false, row.buf, &err), ST_EINVAL);
        EXPECT_MSG(strstr(err.msg, "differs"), "%s", err.msg);
        segment_writer_abort(w);
        EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
        row.buf[0] = (char)(row.buf[0] - 1); /* length one short */
        EXPECT_OP_EQ(segment_writer_add(w, m2.e[0].key, m2.e[0].key_len, 1, false, row.buf, &err),
                     ST_EINVAL);
        segment_writer_abort(w);
        model_free(&m2);
    }
    /* A null in a field that is not nullable (origin). */
    {
        struct value v[8];
        uint8_t k[16];

        memset(v, 0, sizeof(v));
        for (int i = 0; i < 8; i++) {
            v[i].type = s->fields[i].type;
            v[i].is_null = i >= 2;
        }
        v[3].is_null = false;
        v[5].is_null = false;
        build_row(s, v, &row);
        EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", s, 1, NULL, &w, &err), ST_OK);
        EXPECT_OP_EQ(segment_writer_add(w, k, key_encode_row(s, row.buf, k, sizeof(k)), 1, false,
                                        row.buf, &err),
                     ST_EINVAL);
        EXPECT_MSG(strstr(err.msg, "'origin'"), "%s", err.msg);
        segment_writer_abort(w);
    }
    /* A tombstone key that decodes but is not canonical: float -0.0. */
    {
        struct field f[1] = {mkfield("x", FIELD_FLOAT64, false)};
        const char *pk[] = {"x"};
        static const uint8_t negzero[8] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        static const uint8_t poszero[8] = {0x80, 0, 0, 0, 0, 0, 0, 0};
        struct schema *fs1;

        EXPECT_OP_EQ(schema_new(1, f, 1, pk, 1, NULL, &fs1, &err), ST_OK);
        EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", fs1, 1, NULL, &w, &err), ST_OK);
        EXPECT_OP_EQ(segment_writer_add(w, negzero, 8, 1, true, NULL, &err), ST_EINVAL);
        segment_writer_abort(w);
        EXPECT_OP_EQ(segment_writer_new(fs, "/d/w", fs1, 1, NULL, &w, &err), ST_OK);
        EXPECT_OP_EQ(segment_writer_add(w, poszero, 8, 1, true, NULL, &err), ST_OK);
        segment_writer_abort(w);
        schema_free(fs1);
    }
    EXPECT_NULL(fs_fault_get_file(fs, "/d/w", &len));
    EXPECT_NULL(fs_fault_get_file(fs, "/d/w.tmp", &len));
    /* No directory: cannot create. */
    EXPECT_OP_EQ(segment_writer_new(fs, "/nodir/w", s, 1, NULL, &w, &err), ST_EIO);
    EXPECT_NULL(w);
    model_free(&m);
    strbuf_release(&row);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

START_TEST(test_open_errors)
{
    struct fs *fs = new_fs();
    struct segment *seg;
    struct err err;
    uint8_t junk[200];

    log_set_level(ST_LOG_ERROR + 1);
    EXPECT_OP_EQ(segment_open(fs, "/d/none", &seg, &err), ST_ENOTFOUND);
    EXPECT_NULL(seg);
    fs_fault_set_file(fs, "/d/short", junk, 50);
    EXPECT_OP_EQ(segment_open(fs, "/d/short", &seg, &err), ST_ECORRUPT);
    memset(junk, 0, sizeof(junk));
    fs_fault_set_file(fs, "/d/zeros", junk, sizeof(junk));
    EXPECT_OP_EQ(segment_open(fs, "/d/zeros", &seg, &err), ST_ECORRUPT);
    EXPECT_MSG(strstr(err.msg, "'/d/zeros'") && strstr(err.msg, "offset 0"), "%s", err.msg);
    log_set_level(ST_LOG_INFO);
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Corruption */

/*
 * Reads everything the segment at path holds and checks it against the
 * model: each read either fails with ST_ECORRUPT or gives the right
 * answer. Returns the number of reads that failed.
 */
static int read_all_checked(struct fs *fs, const char *path, const struct model *m)
{
    struct strbuf buf = STRBUF_INIT;
    struct segment *seg;
    struct segment_rec rec;
    struct err err;
    enum st_status rc;
    int failures = 0;

    rc = segment_open(fs, path, &seg, &err);
    if (rc) {
        EXPECT_MSG(rc == ST_ECORRUPT, "open: %s", status_str(rc));
        return 1;
    }
    for (unsigned flags = 0; flags < 4; flags += 3) {
        size_t *want = calloc(m->n + 1, sizeof(*want));
        size_t nwant = model_iter(m, NULL, UINT64_MAX, flags, want);
        struct segment_iter *it = segment_iter_new(seg, NULL, UINT64_MAX, flags);
        size_t got = 0;

        while (segment_iter_next(it, &rec)) {
            const struct ent *e;

            EXPECT(got < nwant);
            e = &m->e[want[got++]];
            EXPECT(rec.key_len == e->key_len && !memcmp(rec.key, e->key, e->key_len));
            EXPECT_OP_EQ(rec.version, e->version);
            EXPECT_OP_EQ(rec.tombstone, e->tomb);
            if (!e->tomb)
                EXPECT(rec.row_len == e->row_len && !memcmp(rec.row, e->row, e->row_len));
        }
        rc = segment_iter_status(it, NULL);
        EXPECT(rc == ST_OK || rc == ST_ECORRUPT);
        EXPECT(rc == ST_ECORRUPT || got == nwant);
        failures += rc != ST_OK;
        segment_iter_free(it);
        free(want);
    }
    for (size_t i = 0; i < m->n; i += 13) {
        const struct ent *want = model_get(m, m->e[i].key, m->e[i].key_len, UINT64_MAX);

        rc = segment_get(seg, m->e[i].key, m->e[i].key_len, UINT64_MAX, &rec, &buf, &err);
        if (rc == ST_ECORRUPT) {
            failures++;
            continue;
        }
        EXPECT_OP_EQ(rc, ST_OK);
        EXPECT_OP_EQ(rec.version, want->version);
        EXPECT_OP_EQ(rec.tombstone, want->tomb);
        if (!want->tomb)
            EXPECT(rec.row_len == want->row_len && !memcmp(rec.row, want->row, want->row_len));
    }
    segment_unref(seg);
    strbuf_release(&buf);
    return failures;
}

START_TEST(test_byte_flips)
{
    struct schema *s = wide_schema();
    struct fs *fs = new_fs();
    struct segment_writer_opts o = {.block_rows = 40};
    struct model m;
    uint8_t *file;
    uint8_t *copy;
    size_t len;
    int detected = 0;
    int tried = 0;

    log_set_level(ST_LOG_ERROR + 1);
    rng_state = 7;
    model_random(s, &m, 150);
    write_model(fs, "/d/c", s, &m, &o, NULL);
    file = fs_fault_get_file(fs, "/d/c", &len);
    copy = malloc(len);
    EXPECT_OP_EQ(read_all_checked(fs, "/d/c", &m), 0);
    /* Every offset of the header and the tail (sections, footer); a sample of the blocks. */
    for (size_t off = 0; off < len; off += (off < 32 || off + 600 > len) ? 1 : 1 + rnd() % 9) {
        memcpy(copy, file, len);
        copy[off] ^= (uint8_t)(1u << (rnd() % 8));
        fs_fault_set_file(fs, "/d/c", copy, len);
        detected += read_all_checked(fs, "/d/c", &m) > 0;
        tried++;
    }
    /* Every flip touches a checksummed byte, and these reads read everything. */
    EXPECT_OP_EQ(detected, tried);
    /* Truncations. */
    for (size_t cut = 0; cut < len; cut += 1 + len / 50) {
        fs_fault_set_file(fs, "/d/c", file, cut);
        EXPECT_OP_GT(read_all_checked(fs, "/d/c", &m), 0);
    }
    log_set_level(ST_LOG_INFO);
    free(copy);
    free(file);
    model_free(&m);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* A damaged block is reported with a log line naming the file and offset. */
START_TEST(test_corrupt_block_logged)
{
    struct schema *s = flights_schema();
    struct fs *fs = new_fs();
    struct segment_writer_opts o = {.block_rows = 100};
    struct strbuf buf = STRBUF_INIT;
    struct segment *seg;
    struct segment_rec rec;
    struct model m;
    struct err err;
    uint8_t *file;
    size_t len;
    char logbuf[2048] = {0};
    int fds[2];
    ssize_t got;

    model_flights(s, &m, 300, 1);
    write_model(fs, "/d/b", s, &m, &o, NULL);
    file = fs_fault_get_file(fs, "/d/b", &len);
    file[40] ^= 0x10; /* inside block 0, which starts at 32 */
    fs_fault_set_file(fs, "/d/b", file, len);
    EXPECT_OP_EQ(segment_open(fs, "/d/b", &seg, &err), ST_OK); /* blocks are checked on read */
    EXPECT_OP_EQ(pipe(fds), 0);
    log_set_fd(fds[1]);
    EXPECT_OP_EQ(segment_get(seg, m.e[5].key, m.e[5].key_len, UINT64_MAX, &rec, &buf, &err),
                 ST_ECORRUPT);
    log_set_fd(2);
    close(fds[1]);
    got = read(fds[0], logbuf, sizeof(logbuf) - 1);
    close(fds[0]);
    EXPECT_OP_GT(got, 0);
    EXPECT_MSG(strstr(logbuf, "level=error") && strstr(logbuf, "file='/d/b'") &&
                   strstr(logbuf, "offset=32") && strstr(logbuf, "checksum"),
               "%s", logbuf);
    EXPECT_MSG(strstr(err.msg, "segment '/d/b' is corrupt at offset 32"), "%s", err.msg);
    /* Other blocks still read. */
    EXPECT_OP_EQ(segment_get(seg, m.e[250].key, m.e[250].key_len, UINT64_MAX, &rec, &buf, &err),
                 ST_OK);
    segment_unref(seg);
    strbuf_release(&buf);
    free(file);
    model_free(&m);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Failures and crashes while writing */

/* Writes m to path on fs; returns the first failure, never asserting on I/O. */
static enum st_status try_write(struct fs *fs, const char *path, const struct schema *s,
                                const struct model *m)
{
    struct segment_writer_opts o = {.block_rows = 50};
    struct segment_writer *w;
    struct err err;
    enum st_status rc;

    rc = segment_writer_new(fs, path, s, 3, &o, &w, &err);
    if (rc)
        return rc;
    for (size_t i = 0; i < m->n; i++) {
        const struct ent *e = &m->e[i];

        rc = segment_writer_add(w, e->key, e->key_len, e->version, e->tomb, e->row, &err);
        if (rc) {
            segment_writer_abort(w);
            return rc;
        }
    }
    return segment_writer_finish(w, NULL, &err);
}

/* The file at path is absent, or whole and right. */
static bool absent_or_whole(struct fs *fs, const char *path, const struct model *m)
{
    size_t len;
    uint8_t *p = fs_fault_get_file(fs, path, &len);

    if (!p)
        return false;
    free(p);
    EXPECT_OP_EQ(read_all_checked(fs, path, m), 0);
    return true;
}

START_TEST(test_io_failures)
{
    struct schema *s = flights_schema();
    struct model m;
    uint64_t nth;
    size_t len;

    model_flights(s, &m, 400, 1);
    log_set_level(ST_LOG_ERROR + 1);
    for (nth = 1;; nth++) {
        struct fs *fs = new_fs();
        enum st_status rc;
        bool exists;

        fs_fault_fail_nth(fs, FS_OP_ANY, nth, (nth % 2) ? EIO : ENOSPC, false);
        rc = try_write(fs, "/d/x", s, &m);
        fs_fault_clear(fs);
        exists = absent_or_whole(fs, "/d/x", &m);
        /* A failure leaves no file, unless only the directory fsync failed. */
        if (rc && exists)
            EXPECT_OP_EQ(fs_fault_count(fs, FS_OP_SYNC), 2);
        if (rc)
            EXPECT_NULL(fs_fault_get_file(fs, "/d/x.tmp", &len));
        fs_fault_free(fs);
        if (rc == ST_OK) {
            EXPECT(exists);
            break;
        }
        EXPECT_OP_EQ(rc, ST_EIO);
    }
    EXPECT_OP_GE(nth, 10); /* create, header, 8 blocks, sections, footer, fsync, ... */
    log_set_level(ST_LOG_INFO);
    model_free(&m);
    schema_free(s);
}
END_TEST

struct crash_at {
    struct fs *fs; /* the fault fs */
    uint64_t at;   /* crash before this operation */
    uint64_t seen; /* operations so far */
    uint64_t seed; /* for torn writes */
    bool torn;     /* FS_CRASH_TORN */
};

static void crash_hook(void *arg, unsigned cls)
{
    struct crash_at *c = arg;

    ST_UNUSED(cls);
    if (++c->seen == c->at)
        fs_fault_crash(c->fs, c->torn ? FS_CRASH_TORN : FS_CRASH_DROP_UNSYNCED, c->seed);
}

START_TEST(test_crash_during_write)
{
    struct schema *s = flights_schema();
    struct model m;
    uint64_t at;
    int whole = 0;

    model_flights(s, &m, 400, 1);
    log_set_level(ST_LOG_ERROR + 1);
    for (int torn = 0; torn < 2; torn++) {
        for (at = 1;; at++) {
            struct fs *fs = new_fs();
            struct crash_at c = {
                .fs = fs, .at = at, .seed = at * 31 + (uint64_t)torn, .torn = torn};
            enum st_status rc;

            fs_fault_set_hook(fs, crash_hook, &c);
            rc = try_write(fs, "/d/x", s, &m);
            fs_fault_set_hook(fs, NULL, NULL);
            whole += absent_or_whole(fs, "/d/x", &m);
            fs_fault_free(fs);
            if (c.seen < at) {
                EXPECT_OP_EQ(rc, ST_OK); /* no crash: the write completed */
                break;
            }
        }
    }
    EXPECT_OP_GT(whole, 0);
    log_set_level(ST_LOG_INFO);
    model_free(&m);
    schema_free(s);
}
END_TEST

/* The real file system, once. */
START_TEST(test_posix)
{
    struct schema *s = flights_schema();
    char dir[] = "/tmp/test_segment.XXXXXX";
    char path[64];
    char tmp[80];
    struct model m;

    EXPECT_NONNULL(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/seg-1", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    model_flights(s, &m, 5000, 100);
    EXPECT_OP_EQ(try_write(fs_posix(), path, s, &m), ST_OK);
    EXPECT_OP_NE(access(tmp, F_OK), 0);
    EXPECT_OP_EQ(read_all_checked(fs_posix(), path, &m), 0);
    unlink(path);
    rmdir(dir);
    model_free(&m);
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */

struct reader_arg {
    struct segment *seg; /* a reference of the thread's own */
    const struct model *m;
    int ok;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    struct strbuf buf = STRBUF_INIT;
    struct segment_rec rec;
    struct err err;

    for (size_t i = 0; i < a->m->n; i += 3)
        if (segment_get(a->seg, a->m->e[i].key, a->m->e[i].key_len, UINT64_MAX, &rec, &buf, &err) ==
                ST_OK &&
            rec.row_len == a->m->e[i].row_len && !memcmp(rec.row, a->m->e[i].row, rec.row_len))
            a->ok++;
    segment_unref(a->seg);
    strbuf_release(&buf);
    return NULL;
}

START_TEST(test_threads_and_refs)
{
    struct schema *s = flights_schema();
    struct fs *fs = new_fs();
    struct segment_writer_opts o = {.block_rows = 64};
    struct reader_arg a[2];
    pthread_t t[2];
    struct segment *seg;
    struct segment_iter *it;
    struct segment_rec rec;
    struct model m;
    struct err err;
    size_t n = 0;

    model_flights(s, &m, 1200, 1);
    write_model(fs, "/d/t", s, &m, &o, NULL);
    EXPECT_OP_EQ(segment_open(fs, "/d/t", &seg, &err), ST_OK);
    for (int i = 0; i < 2; i++) {
        segment_ref(seg);
        a[i] = (struct reader_arg){seg, &m, 0};
        EXPECT_OP_EQ(pthread_create(&t[i], NULL, reader, &a[i]), 0);
    }
    it = segment_iter_new(seg, NULL, UINT64_MAX, 0);
    segment_unref(seg); /* the iterator keeps it open */
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        EXPECT_OP_EQ(a[i].ok, 400);
    }
    while (segment_iter_next(it, &rec))
        n++;
    EXPECT_OP_EQ(n, 1200);
    segment_iter_free(it);
    model_free(&m);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

START_TEST(test_row_convert)
{
    struct field f1[4];
    struct field f2[5];
    const char *pk[] = {"id"};
    struct schema *a;
    struct schema *b;
    struct strbuf row = STRBUF_INIT;
    struct strbuf out = STRBUF_INIT;
    struct value v[4];
    struct value got;
    struct err err;

    f1[0] = mkfield("id", FIELD_INT64, false);
    f1[1] = mkfield("n", FIELD_INT64, true);
    f1[2] = mkfield("gone", FIELD_STRING, false);
    f1[3] = mkfield("s", FIELD_STRING, false);
    EXPECT_OP_EQ(schema_new(1, f1, 4, pk, 1, NULL, &a, &err), ST_OK);
    /* Version 2: reordered, n widened, gone dropped, two new fields. */
    f2[0] = mkfield("s", FIELD_STRING, false);
    f2[1] = mkfield("id", FIELD_INT64, false);
    f2[2] = mkfield("n", FIELD_FLOAT64, true);
    f2[3] = mkfield("d", FIELD_INT64, false);
    f2[3].has_default = true;
    f2[3].def = (struct value){.type = FIELD_INT64, .u.i = 42};
    f2[4] = mkfield("maybe", FIELD_BOOL, true);
    EXPECT_OP_EQ(schema_new(2, f2, 5, pk, 1, NULL, &b, &err), ST_OK);

    v[0] = (struct value){.type = FIELD_INT64, .u.i = 7};
    v[1] = (struct value){.type = FIELD_INT64, .u.i = -3};
    v[2] = (struct value){.type = FIELD_STRING, .u.s = {"old", 3}};
    v[3] = (struct value){.type = FIELD_STRING, .u.s = {"hello", 5}};
    build_row(a, v, &row);
    EXPECT_OP_EQ(segment_row_convert(a, b, row.buf, &out, &err), ST_OK);
    EXPECT_OP_EQ(schema_row_len(out.buf), out.len);
    schema_row_get(b, out.buf, 0, &got);
    EXPECT(got.u.s.len == 5 && !memcmp(got.u.s.ptr, "hello", 5));
    schema_row_get(b, out.buf, 1, &got);
    EXPECT_OP_EQ(got.u.i, 7);
    schema_row_get(b, out.buf, 2, &got);
    EXPECT(!got.is_null && got.u.f == -3.0);
    schema_row_get(b, out.buf, 3, &got);
    EXPECT_OP_EQ(got.u.i, 42);
    schema_row_get(b, out.buf, 4, &got);
    EXPECT(got.is_null);
    /* A null stays null where allowed. */
    v[1].is_null = true;
    build_row(a, v, &row);
    EXPECT_OP_EQ(segment_row_convert(a, b, row.buf, &out, &err), ST_OK);
    schema_row_get(b, out.buf, 2, &got);
    EXPECT(got.is_null);
    /* Backwards is refused: float64 cannot narrow, "gone" has no value. */
    EXPECT_OP_EQ(segment_row_convert(b, a, out.buf, &row, &err), ST_EINVAL);
    /* Same schema: the same bytes. */
    build_row(a, v, &row);
    EXPECT_OP_EQ(segment_row_convert(a, a, row.buf, &out, &err), ST_OK);
    EXPECT(out.len == row.len && !memcmp(out.buf, row.buf, row.len));
    strbuf_release(&row);
    strbuf_release(&out);
    schema_free(a);
    schema_free(b);
}
END_TEST

START_TEST(test_schema_matches)
{
    struct schema *s = flights_schema();
    struct schema *w = wide_schema();
    struct fs *fs = new_fs();
    struct segment_writer *wr;
    struct segment *seg;
    struct err err;

    EXPECT_OP_EQ(segment_writer_new(fs, "/d/s", s, 1, NULL, &wr, &err), ST_OK);
    EXPECT_OP_EQ(segment_writer_finish(wr, NULL, &err), ST_OK);
    EXPECT_OP_EQ(segment_open(fs, "/d/s", &seg, &err), ST_OK);
    EXPECT(segment_schema_matches(seg, s));
    EXPECT(!segment_schema_matches(seg, w));
    s->fields[4].nullable = false;
    EXPECT(!segment_schema_matches(seg, s));
    segment_unref(seg);
    fs_fault_free(fs);
    schema_free(s);
    schema_free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("segment");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_random_tiny_blocks);
    tcase_add_test(tc, test_random_small_blocks);
    tcase_add_test(tc, test_random_byte_blocks);
    tcase_add_test(tc, test_random_defaults);
    tcase_add_test(tc, test_block_skipping);
    tcase_add_test(tc, test_time_skip_keeps_shadowing_block);
    tcase_add_test(tc, test_against_memtable);
    tcase_add_test(tc, test_empty_segment);
    tcase_add_test(tc, test_large_values);
    tcase_add_test(tc, test_writer_rejects);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_byte_flips);
    tcase_add_test(tc, test_corrupt_block_logged);
    tcase_add_test(tc, test_io_failures);
    tcase_add_test(tc, test_crash_during_write);
    tcase_add_test(tc, test_posix);
    tcase_add_test(tc, test_threads_and_refs);
    tcase_add_test(tc, test_row_convert);
    tcase_add_test(tc, test_schema_matches);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

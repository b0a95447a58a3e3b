/*
 * Unit tests for src/engine/merge.c.
 *
 * The logic is tested on array sources (a sorted array of entries that a
 * source yields as a memtable or segment iterator would: at a snapshot,
 * newest per key or every version, and, for "timed" sources, leaving out
 * the rows marked filtered while answering hides() for them): read mode
 * on hand-made cases (newest source wins, tombstones hide older rows,
 * keys only in old sources, empty and many sources, keys that are
 * prefixes of one another), the hides() path and its counter,
 * compaction mode at many horizons with and without bottom, retention,
 * counters, and errors from next() and hides(). A randomized check then
 * compares both modes with a brute-force model on random histories split
 * into sources by version ranges (fixed seeds).
 *
 * The adapters are tested on real memtables and segments (the in-memory
 * fault fs): a merge of a memtable and two segments in both modes; a
 * newer segment iterated with a time range whose out-of-range row must
 * hide the older in-range version of its key in an older segment, both
 * when the iterator skips that row's block by time and when it reads the
 * block and filters the row; skipped segments; and I/O errors from a
 * segment iterator and from hides().
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fs.h"
#include "engine/key.h"
#include "engine/memtable.h"
#include "engine/merge.h"
#include "engine/segment.h"
#include "util/strbuf.h"

/* Failures only: Check reports every passing ck_assert through a pipe. */
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

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ */
/* Array sources */

/* One entry of an array source. */
struct aent {
    const uint8_t *key; /* encoded key */
    size_t key_len;     /* its length */
    uint64_t version;   /* commit version */
    bool tomb;          /* a delete */
    bool filtered;      /* a row a timed source leaves out (outside its time range) */
    bool expired;       /* a row past retention (for the expired callback) */
};

/* A source over an array of entries in (key asc, version desc) order. */
struct asrc {
    const struct aent *e;    /* entries */
    size_t n;                /* how many */
    size_t i;                /* next one */
    uint64_t snap;           /* entries above it are invisible */
    bool all_versions;       /* every version, not the newest per key */
    bool timed;              /* leave out filtered rows; hides() answers for them */
    const struct aent *prev; /* newest-only: the last key examined */
    size_t fail_after;       /* fail after this many entries (0: never) */
    size_t yielded;          /* entries yielded */
    bool hides_fail;         /* hides() fails */
    enum st_status status;   /* the failure */
    size_t hides_calls;      /* hides() calls */
};

static int frees; /* array sources freed */

static bool same_key(const struct aent *a, const struct aent *b)
{
    return a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len);
}

static bool a_next(void *ctx, struct merge_rec *out)
{
    struct asrc *a = ctx;

    if (a->status)
        return false;
    if (a->fail_after && a->yielded == a->fail_after) {
        a->status = ST_ECORRUPT;
        return false;
    }
    while (a->i < a->n) {
        const struct aent *e = &a->e[a->i++];

        if (e->version > a->snap)
            continue;
        if (!a->all_versions) {
            if (a->prev && same_key(a->prev, e))
                continue;
            a->prev = e;
        }
        if (a->timed && e->filtered)
            continue;
        memset(out, 0, sizeof(*out));
        out->key = e->key;
        out->key_len = (uint32_t)e->key_len;
        out->version = e->version;
        out->schema_version = 7;
        out->tombstone = e->tomb;
        out->row = e->tomb ? NULL : (const void *)e; /* identifies the entry */
        out->row_len = e->tomb ? 0 : (uint32_t)sizeof(*e);
        a->yielded++;
        return true;
    }
    return false;
}

static enum st_status a_status(void *ctx, struct err *err)
{
    struct asrc *a = ctx;

    if (a->status)
        return err_set(err, a->status, "array source failed after %zu", a->yielded);
    return ST_OK;
}

/* The newest entry of key at the snapshot, filtered or not; NULL if none. */
static const struct aent *a_find(const struct asrc *a, const void *key, size_t len)
{
    for (size_t i = 0; i < a->n; i++) {
        const struct aent *e = &a->e[i];

        if (e->key_len == len && !memcmp(e->key, key, len) && e->version <= a->snap)
            return e;
    }
    return NULL;
}

static bool a_hides(void *ctx, const void *key, size_t len)
{
    struct asrc *a = ctx;
    const struct aent *e;

    a->hides_calls++;
    if (a->hides_fail) {
        a->status = ST_EIO;
        return true;
    }
    e = a_find(a, key, len);
    return a->timed && e && e->filtered;
}

static void a_free(void *ctx)
{
    ST_UNUSED(ctx);
    frees++;
}

static struct merge_source asource(struct asrc *a, const struct aent *e, size_t n, uint64_t snap)
{
    struct merge_source s;

    memset(a, 0, sizeof(*a));
    a->e = e;
    a->n = n;
    a->snap = snap;
    memset(&s, 0, sizeof(s));
    s.next = a_next;
    s.status = a_status;
    s.hides = a_hides;
    s.free = a_free;
    s.ctx = a;
    return s;
}

#define E(k, v, t)                                                                                 \
    {                                                                                              \
        (const uint8_t *)(k), sizeof(k) - 1, (v), (t), false, false                                \
    }
#define EF(k, v)                                                                                   \
    {                                                                                              \
        (const uint8_t *)(k), sizeof(k) - 1, (v), false, true, false                               \
    }
#define EX(k, v)                                                                                   \
    {                                                                                              \
        (const uint8_t *)(k), sizeof(k) - 1, (v), false, false, true                               \
    }

/* What a merge yielded, as "key@version" words ("key@version-" for tombstones). */
static void drain(struct merge *m, char *buf, size_t cap)
{
    struct merge_rec r;
    size_t len = 0;

    buf[0] = 0;
    while (merge_next(m, &r)) {
        int n =
            snprintf(buf + len, cap - len, "%s%.*s@%llu%s", len ? " " : "", (int)r.key_len,
                     (const char *)r.key, (unsigned long long)r.version, r.tombstone ? "-" : "");

        EXPECT(n > 0 && (size_t)n < cap - len);
        EXPECT(r.tombstone ? r.row == NULL && r.row_len == 0 : r.row != NULL);
        EXPECT_OP_EQ(r.schema_version, 7);
        if (!r.tombstone) {
            const struct aent *e = r.row;

            EXPECT(e->version == r.version && e->key_len == r.key_len &&
                   !memcmp(e->key, r.key, r.key_len));
        }
        len += (size_t)n;
    }
}

#define EXPECT_OUT(m, want)                                                                        \
    do {                                                                                           \
        char got_[4096];                                                                           \
                                                                                                   \
        drain((m), got_, sizeof(got_));                                                            \
        EXPECT_MSG(!strcmp(got_, (want)), "%s:%d: got '%s', want '%s'", __FILE__, __LINE__, got_,  \
                   (want));                                                                        \
    } while (0)

static const struct merge_opts read_opts = {.mode = MERGE_READ};

/* ------------------------------------------------------------------ */
/* Read mode */

START_TEST(test_read_basic)
{
    static const struct aent s0[] = {E("b", 30, false), E("d", 31, true),
                                     E("longkey-002", 32, false)};
    static const struct aent s1[] = {E("a", 20, false),           E("b", 20, false),
                                     E("d", 20, false),           E("e", 21, true),
                                     E("longkey-001", 22, false), E("longkey-002", 22, false),
                                     E("longkey-0021", 23, false)};
    static const struct aent s2[] = {E("a", 10, false), E("c", 10, false), E("d", 10, false),
                                     E("e", 10, false), E("f", 10, false)};
    struct asrc a[3];
    struct merge_source src[3];
    struct merge_stats st;
    struct merge *m;
    struct err err;

    src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 100);
    src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
    src[2] = asource(&a[2], s2, ST_ARRAY_SIZE(s2), 100);
    frees = 0;
    m = merge_new(src, 3, &read_opts);
    EXPECT_OUT(m, "a@20 b@30 c@10 f@10 longkey-001@22 longkey-002@32 longkey-0021@23");
    EXPECT_OP_EQ(merge_status(m, &err), ST_OK);
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.entries_in, 15);
    EXPECT_OP_EQ(st.entries_out, 7);
    EXPECT_OP_EQ(st.hidden, 0);
    /*
     * No source hides anything, but each is asked about the rows taken
     * from older sources: source 0 about a, c, f, longkey-001 and
     * longkey-0021, source 1 about c and f.
     */
    EXPECT_OP_EQ(a[0].hides_calls, 5);
    EXPECT_OP_EQ(a[1].hides_calls, 2);
    EXPECT_OP_EQ(a[2].hides_calls, 0);
    merge_free(m);
    EXPECT_OP_EQ(frees, 3);
}
END_TEST

/* Keys that are prefixes of one another and keys with 0x00 bytes, long and short. */
START_TEST(test_read_key_order)
{
    static const struct aent s0[] = {
        E("", 5, false),         E("\x00", 5, false),         E("a", 5, false),
        E("abcdefgh", 5, false), E("abcdefgh\x00", 5, false), E("abcdefgh\x01", 5, false),
        E("abcdefghi", 5, false)};
    static const struct aent s1[] = {E("", 1, false),
                                     E("\x00\x00", 1, false),
                                     E("a\x00", 1, false),
                                     E("abcdefg", 1, false),
                                     E("abcdefgh", 1, false),
                                     E("abcdefgh\x00\x01", 1, false),
                                     E("abcdefgh\xff", 1, false),
                                     E("b", 1, false)};
    static const char *const want[] = {"",
                                       "\x00",
                                       "\x00\x00",
                                       "a",
                                       "a\x00",
                                       "abcdefg",
                                       "abcdefgh",
                                       "abcdefgh\x00",
                                       "abcdefgh\x00\x01",
                                       "abcdefgh\x01",
                                       "abcdefghi",
                                       "abcdefgh\xff",
                                       "b"};
    static const size_t want_len[] = {0, 1, 2, 1, 2, 7, 8, 9, 10, 9, 9, 9, 1};
    static const uint64_t want_ver[] = {5, 5, 1, 5, 1, 1, 5, 5, 1, 5, 5, 1, 1};
    struct asrc a[2];
    struct merge_source src[2];
    struct merge_rec r;
    struct merge *m;
    size_t n = 0;

    /* Both orders of the sources: equal keys go to the newer version. */
    for (int order = 0; order < 2; order++) {
        src[order] = asource(&a[order], s0, ST_ARRAY_SIZE(s0), 100);
        src[!order] = asource(&a[!order], s1, ST_ARRAY_SIZE(s1), 100);
        m = merge_new(src, 2, &read_opts);
        for (n = 0; merge_next(m, &r); n++) {
            EXPECT(n < ST_ARRAY_SIZE(want));
            EXPECT_MSG(r.key_len == want_len[n] && !memcmp(r.key, want[n], want_len[n]),
                       "entry %zu: wrong key", n);
            EXPECT_OP_EQ(r.version, want_ver[n]);
        }
        EXPECT_OP_EQ(n, ST_ARRAY_SIZE(want));
        merge_free(m);
    }
}
END_TEST

START_TEST(test_read_empty)
{
    static const struct aent s1[] = {E("x", 3, false), E("y", 3, true)};
    struct asrc a[4];
    struct merge_source src[4];
    struct merge_stats st;
    struct merge_rec r;
    struct merge *m;

    /* No sources at all. */
    m = merge_new(NULL, 0, &read_opts);
    EXPECT(!merge_next(m, &r));
    EXPECT(!merge_next(m, &r));
    EXPECT_OP_EQ(merge_status(m, NULL), ST_OK);
    merge_free(m);
    merge_free(NULL);

    /* Empty sources around a non-empty one; and all empty. */
    frees = 0;
    src[0] = asource(&a[0], NULL, 0, 100);
    src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
    src[2] = asource(&a[2], NULL, 0, 100);
    src[3] = asource(&a[3], s1, ST_ARRAY_SIZE(s1), 2); /* everything above its snapshot */
    m = merge_new(src, 4, &read_opts);
    EXPECT_OUT(m, "x@3");
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.entries_in, 2);
    EXPECT_OP_EQ(st.entries_out, 1);
    merge_free(m);
    src[0] = asource(&a[0], NULL, 0, 100);
    src[1] = asource(&a[1], NULL, 0, 100);
    m = merge_new(src, 2, &read_opts);
    EXPECT_OUT(m, "");
    merge_free(m);
    /* A merge never read still frees its sources. */
    src[0] = asource(&a[0], s1, ST_ARRAY_SIZE(s1), 100);
    m = merge_new(src, 1, &read_opts);
    merge_free(m);
    EXPECT_OP_EQ(frees, 7);
}
END_TEST

/* 100 sources: one key everywhere (newest wins), one key per source, deletes in between. */
START_TEST(test_read_many_sources)
{
    enum { N = 100 };
    static uint8_t keys[N][8];
    static struct aent ents[N][3];
    struct asrc a[N];
    struct merge_source src[N];
    struct merge_stats st;
    struct merge_rec r;
    struct merge *m;
    size_t nent[N];
    size_t total = 0;
    size_t n = 0;

    for (int i = 0; i < N; i++) {
        uint64_t v = (uint64_t)(N - i) * 10; /* source 0 newest */

        snprintf((char *)keys[i], sizeof(keys[i]), "k%03d", i);
        ents[i][0] = (struct aent){(const uint8_t *)"common", 6, v, i == 0, false, false};
        ents[i][1] = (struct aent){(const uint8_t *)"deleted", 7, v, i == 3, false, false};
        ents[i][2] = (struct aent){keys[i], 4, v, false, false, false};
    }
    /*
     * Sources hold ("common", "deleted", k<i>), in key order; sources 0..2
     * lack "deleted" (so source 3's tombstone is its newest entry) and
     * sources 50..59 are empty.
     */
    for (int i = 0; i < 3; i++)
        ents[i][1] = ents[i][2];
    for (int i = 0; i < N; i++) {
        nent[i] = i < 3 ? 2 : (i >= 50 && i < 60) ? 0 : 3;
        total += nent[i];
    }
    for (int i = 0; i < N; i++)
        src[i] = asource(&a[i], ents[i], nent[i], 10000);
    m = merge_new(src, N, &read_opts);
    /* "common": source 0 has a tombstone; "deleted": source 3's tombstone. */
    while (merge_next(m, &r)) {
        int idx = atoi((const char *)r.key + 1);

        EXPECT(r.key_len == 4 && ((const char *)r.key)[0] == 'k');
        EXPECT_OP_EQ(idx, (int)n + (n >= 50 ? 10 : 0));
        EXPECT_OP_EQ(r.version, (uint64_t)(N - idx) * 10);
        n++;
    }
    EXPECT_OP_EQ(n, N - 10);
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.entries_in, total);
    EXPECT_OP_EQ(st.entries_out, N - 10);
    merge_free(m);

    /* Without source 0's tombstone, its "common" comes out. */
    ents[0][0].tomb = false;
    for (int i = 0; i < N; i++)
        src[i] = asource(&a[i], ents[i], nent[i], 10000);
    m = merge_new(src, N, &read_opts);
    EXPECT(merge_next(m, &r));
    EXPECT(r.key_len == 6 && !memcmp(r.key, "common", 6) && r.version == N * 10);
    EXPECT(merge_next(m, &r));
    EXPECT(r.key_len == 4 && !memcmp(r.key, "k000", 4) && r.version == N * 10);
    merge_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */
/* hides() */

START_TEST(test_hides)
{
    /* Source 0 is timed: b and e left out (filtered) but held. */
    static const struct aent s0[] = {E("a", 40, false), EF("b", 40), E("c", 41, true), EF("e", 40)};
    static const struct aent s1[] = {E("b", 30, false), E("d", 30, false)};
    static const struct aent s2[] = {E("a", 20, false), E("b", 20, false), E("c", 20, false),
                                     E("d", 20, false), E("e", 20, true),  E("f", 20, false)};
    struct asrc a[3];
    struct merge_source src[3];
    struct merge_stats st;
    struct merge *m;

    src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 100);
    src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
    src[2] = asource(&a[2], s2, ST_ARRAY_SIZE(s2), 100);
    a[0].timed = true;
    a[1].timed = true;
    m = merge_new(src, 3, &read_opts);
    /* b's newest version (40) is out of range: not b@30 from the older source. */
    EXPECT_OUT(m, "a@40 d@30 f@20");
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.hidden, 1); /* b; e's older entry is a tombstone, dropped anyway */
    /* Asked for keys taken from sources 1 and 2 only: b (from 1) and d, f. */
    EXPECT_OP_EQ(a[0].hides_calls, 3);
    EXPECT_OP_EQ(a[1].hides_calls, 1); /* f */
    EXPECT_OP_EQ(a[2].hides_calls, 0);
    merge_free(m);

    /* Without a hides callback on source 0, b@30 comes through (what hides() prevents). */
    src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 100);
    src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
    src[2] = asource(&a[2], s2, ST_ARRAY_SIZE(s2), 100);
    a[0].timed = true;
    src[0].hides = NULL;
    src[1].hides = NULL;
    src[2].hides = NULL;
    m = merge_new(src, 3, &read_opts);
    EXPECT_OUT(m, "a@40 b@30 d@30 f@20");
    merge_free(m);

    /* At snapshot 35 source 0 holds nothing: b@30 is the newest. */
    src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 35);
    src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 35);
    src[2] = asource(&a[2], s2, ST_ARRAY_SIZE(s2), 35);
    a[0].timed = true;
    m = merge_new(src, 3, &read_opts);
    EXPECT_OUT(m, "a@20 b@30 c@20 d@30 f@20");
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.hidden, 0);
    merge_free(m);
}
END_TEST

START_TEST(test_hides_error)
{
    static const struct aent s0[] = {E("q", 40, false)};
    static const struct aent s1[] = {E("a", 30, false), E("b", 30, false), E("r", 30, false)};
    struct asrc a[2];
    struct merge_source src[2];
    struct merge_rec r;
    struct merge *m;
    struct err err;

    frees = 0;
    src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 100);
    src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
    a[0].hides_fail = true;
    m = merge_new(src, 2, &read_opts);
    EXPECT(!merge_next(m, &r)); /* a, from source 1: hides() of 0 fails */
    EXPECT_OP_EQ(merge_status(m, &err), ST_EIO);
    EXPECT_MSG(strstr(err.msg, "array source failed") != NULL, "msg '%s'", err.msg);
    EXPECT(!merge_next(m, &r));
    EXPECT_OP_EQ(merge_status(m, NULL), ST_EIO);
    merge_free(m);
    EXPECT_OP_EQ(frees, 2);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors from next() */

START_TEST(test_source_error)
{
    static const struct aent s0[] = {E("a", 40, false), E("c", 40, false), E("e", 40, false)};
    static const struct aent s1[] = {E("b", 30, false), E("d", 30, false), E("f", 30, false)};
    struct asrc a[2];
    struct merge_source src[2];
    struct merge_opts co = {.mode = MERGE_COMPACT, .horizon = 10};
    struct merge_rec r;
    struct merge *m;
    struct err err;

    for (int mode = 0; mode < 2; mode++) {
        /* Fails after 2 entries: a and c come out, b (read with them) too, then the end. */
        src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 100);
        src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
        a[0].fail_after = 2;
        a[0].all_versions = a[1].all_versions = mode == 1;
        m = merge_new(src, 2, mode ? &co : &read_opts);
        EXPECT_OUT(m, "a@40 b@30 c@40");
        EXPECT_OP_EQ(merge_status(m, &err), ST_ECORRUPT);
        EXPECT_MSG(!strcmp(err.msg, "array source failed after 2"), "msg '%s'", err.msg);
        EXPECT(!merge_next(m, &r));
        merge_free(m);

        /* Fails at once: nothing comes out. */
        src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), 100);
        src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), 100);
        a[1].status = ST_EIO;
        m = merge_new(src, 2, mode ? &co : &read_opts);
        EXPECT(!merge_next(m, &r));
        EXPECT_OP_EQ(merge_status(m, &err), ST_EIO);
        EXPECT(!merge_next(m, &r));
        merge_free(m);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Compaction mode */

static bool aent_expired(void *arg, const struct merge_rec *r)
{
    const struct aent *e = r->row;

    (*(int *)arg)++;
    EXPECT(!r->tombstone && e != NULL);
    return e->expired;
}

/* One key, versions 50 row, 40 tombstone, 30 row, 20 row (expired), 10 row, in three sources. */
START_TEST(test_compact_gc)
{
    static const struct aent s0[] = {E("k", 50, false), E("k", 40, true), E("m", 45, false)};
    static const struct aent s1[] = {E("k", 30, false), EX("k", 20)};
    static const struct aent s2[] = {E("a", 5, true), E("k", 10, false), E("m", 10, false)};
    static const struct {
        uint64_t h;
        bool bottom;
        const char *want;
        uint64_t vdrop, tdrop, expired;
        int calls; /* rows that are the newest <= H: asked about retention */
    } cases[] = {
        {0, false, "a@5- k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 0, 0, 0},
        {0, true, "a@5- k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 0, 0, 0},
        {4, true, "a@5- k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 0, 0, 0},
        {5, false, "a@5- k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 0, 0, 0},
        {5, true, "k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 1, 0, 0},
        {10, false, "a@5- k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 0, 0, 2},
        {15, false, "a@5- k@50 k@40- k@30 k@20 k@10 m@45 m@10", 0, 0, 0, 2},
        {20, false, "a@5- k@50 k@40- k@30 k@20- m@45 m@10", 1, 0, 1, 2},
        {20, true, "k@50 k@40- k@30 m@45 m@10", 1, 1, 1, 2},
        {29, false, "a@5- k@50 k@40- k@30 k@20- m@45 m@10", 1, 0, 1, 2},
        {30, false, "a@5- k@50 k@40- k@30 m@45 m@10", 2, 0, 0, 2},
        {39, true, "k@50 k@40- k@30 m@45 m@10", 2, 1, 0, 2},
        {40, false, "a@5- k@50 k@40- m@45 m@10", 3, 0, 0, 1},
        {40, true, "k@50 m@45 m@10", 0, 5, 0, 1},
        {45, true, "k@50 m@45", 1, 5, 0, 1},
        {50, false, "a@5- k@50 m@45", 5, 0, 0, 2},
        {1000, true, "k@50 m@45", 5, 1, 0, 2},
    };

    for (size_t c = 0; c < ST_ARRAY_SIZE(cases); c++) {
        struct merge_opts o = {.mode = MERGE_COMPACT,
                               .horizon = cases[c].h,
                               .bottom = cases[c].bottom,
                               .expired = aent_expired};
        struct asrc a[3];
        struct merge_source src[3];
        struct merge_stats st;
        struct merge *m;
        char got[512];
        int calls = 0;

        o.expired_arg = &calls;
        src[0] = asource(&a[0], s0, ST_ARRAY_SIZE(s0), UINT64_MAX);
        src[1] = asource(&a[1], s1, ST_ARRAY_SIZE(s1), UINT64_MAX);
        src[2] = asource(&a[2], s2, ST_ARRAY_SIZE(s2), UINT64_MAX);
        for (int i = 0; i < 3; i++)
            a[i].all_versions = true;
        m = merge_new(src, 3, &o);
        drain(m, got, sizeof(got));
        EXPECT_MSG(!strcmp(got, cases[c].want), "H=%llu bottom=%d: got '%s', want '%s'",
                   (unsigned long long)cases[c].h, cases[c].bottom, got, cases[c].want);
        merge_get_stats(m, &st);
        EXPECT_MSG(st.versions_dropped == cases[c].vdrop &&
                       st.tombstones_dropped == cases[c].tdrop && st.expired == cases[c].expired,
                   "H=%llu bottom=%d: dropped %llu %llu %llu", (unsigned long long)cases[c].h,
                   cases[c].bottom, (unsigned long long)st.versions_dropped,
                   (unsigned long long)st.tombstones_dropped, (unsigned long long)st.expired);
        EXPECT_OP_EQ(st.entries_in, 8);
        EXPECT_OP_EQ(st.entries_in, st.entries_out + st.versions_dropped + st.tombstones_dropped +
                                        (cases[c].bottom ? st.expired : 0));
        /* Retention is asked only about a row that is the newest <= H. */
        EXPECT_OP_EQ(calls, cases[c].calls);
        merge_free(m);
    }
}
END_TEST

/* Expired rows above the horizon stay; without an expired callback nothing expires. */
START_TEST(test_compact_expired)
{
    static const struct aent s0[] = {EX("a", 50), EX("b", 40), E("b", 30, false), EX("c", 20),
                                     E("c", 10, true)};
    struct merge_opts o = {.mode = MERGE_COMPACT, .horizon = 45, .expired = aent_expired};
    struct asrc a;
    struct merge_source src;
    struct merge_stats st;
    struct merge *m;
    int calls = 0;

    o.expired_arg = &calls;
    src = asource(&a, s0, ST_ARRAY_SIZE(s0), UINT64_MAX);
    a.all_versions = true;
    m = merge_new(&src, 1, &o);
    EXPECT_OUT(m, "a@50 b@40- c@20-");
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.expired, 2);
    EXPECT_OP_EQ(st.versions_dropped, 2);
    EXPECT_OP_EQ(calls, 2);
    merge_free(m);

    o.bottom = true;
    src = asource(&a, s0, ST_ARRAY_SIZE(s0), UINT64_MAX);
    a.all_versions = true;
    m = merge_new(&src, 1, &o);
    EXPECT_OUT(m, "a@50");
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.expired, 2);
    EXPECT_OP_EQ(st.entries_out, 1);
    merge_free(m);

    o.expired = NULL;
    src = asource(&a, s0, ST_ARRAY_SIZE(s0), UINT64_MAX);
    a.all_versions = true;
    m = merge_new(&src, 1, &o);
    EXPECT_OUT(m, "a@50 b@40 c@20");
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.expired, 0);
    merge_free(m);
}
END_TEST

/* The same write in two sources comes out once (from the lower source). */
START_TEST(test_compact_duplicate)
{
    static const struct aent s0[] = {E("a", 50, false), E("a", 40, false)};
    static const struct aent s1[] = {E("a", 40, false), E("a", 30, false)};
    struct merge_opts o = {.mode = MERGE_COMPACT};
    struct asrc a[2];
    struct merge_source src[2];
    struct merge_stats st;
    struct merge_rec r;
    struct merge *m;

    src[0] = asource(&a[0], s0, 2, UINT64_MAX);
    src[1] = asource(&a[1], s1, 2, UINT64_MAX);
    a[0].all_versions = a[1].all_versions = true;
    m = merge_new(src, 2, &o);
    EXPECT(merge_next(m, &r) && r.version == 50);
    EXPECT(merge_next(m, &r) && r.version == 40 && r.row == &s0[1]);
    EXPECT(merge_next(m, &r) && r.version == 30);
    EXPECT(!merge_next(m, &r));
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.versions_dropped, 1);
    merge_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Randomized model check */

#define MAXV 200

struct hist {
    struct aent *e;   /* all entries, (key asc, version desc) */
    size_t n;         /* how many */
    uint8_t **keys;   /* key bytes, owned */
    size_t nkeys;     /* distinct keys */
    size_t nsrc;      /* sources */
    uint64_t b[17];   /* source i holds versions in (b[i + 1], b[i]] */
    size_t start[17]; /* the entries of source i: a copy, sorted */
    struct aent *se;  /* entries by source */
};

static int aent_cmp(const void *x, const void *y)
{
    const struct aent *a = x;
    const struct aent *b = y;
    int c = key_compare(a->key, a->key_len, b->key, b->key_len);

    if (c)
        return c;
    return a->version < b->version ? 1 : a->version > b->version ? -1 : 0;
}

static size_t src_of(const struct hist *h, uint64_t v)
{
    for (size_t i = 0; i < h->nsrc; i++)
        if (v > h->b[i + 1])
            return i;
    ST_BUG("version %llu in no source", (unsigned long long)v);
}

static void hist_random(struct hist *h)
{
    static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0xff};
    size_t cap = 0;

    memset(h, 0, sizeof(*h));
    h->nkeys = 1 + rnd() % 60;
    h->keys = calloc(h->nkeys, sizeof(*h->keys));
    for (size_t k = 0; k < h->nkeys; k++) {
        /* Short keys from a small alphabet (prefixes, 0x00), or long ones sharing 8 bytes. */
        size_t len = rnd() % 3 ? rnd() % 4 : 8 + rnd() % 4;
        size_t nver = 1 + rnd() % 6;
        uint64_t used[8];
        size_t nused = 0;

        h->keys[k] = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            h->keys[k][i] = i >= 8 || len < 8 ? alphabet[rnd() % sizeof(alphabet)]
                            : rnd() % 16      ? 'p'
                                              : 'q';
        h->e = realloc(h->e, (cap += nver) * sizeof(*h->e));
        for (size_t j = 0; j < nver; j++) {
            uint64_t v = 1 + rnd() % MAXV;
            struct aent *e;
            bool dup = false;

            for (size_t u = 0; u < nused; u++)
                dup |= used[u] == v;
            if (dup)
                continue;
            used[nused++] = v;
            e = &h->e[h->n++];
            e->key = h->keys[k];
            e->key_len = len;
            e->version = v;
            e->tomb = rnd() % 4 == 0;
            e->filtered = !e->tomb && rnd() % 5 == 0;
            e->expired = !e->tomb && rnd() % 4 == 0;
        }
    }
    qsort(h->e, h->n, sizeof(*h->e), aent_cmp);
    /* Equal random keys: drop repeated (key, version) pairs. */
    {
        size_t o = 0;

        for (size_t i = 0; i < h->n; i++)
            if (!o || aent_cmp(&h->e[o - 1], &h->e[i]))
                h->e[o++] = h->e[i];
        h->n = o;
    }
    /* Version ranges, newest first: b[0] = MAXV > b[1] >= ... > b[nsrc] = 0. */
    h->nsrc = 1 + rnd() % 16;
    h->b[0] = MAXV;
    for (size_t i = 1; i < h->nsrc; i++)
        h->b[i] = rnd() % (h->b[i - 1] + 1);
    h->b[h->nsrc] = 0;
    h->se = calloc(h->n + 1, sizeof(*h->se));
    {
        size_t o = 0;

        for (size_t i = 0; i < h->nsrc; i++) {
            h->start[i] = o;
            for (size_t j = 0; j < h->n; j++)
                if (src_of(h, h->e[j].version) == i)
                    h->se[o++] = h->e[j];
        }
        h->start[h->nsrc] = o;
        EXPECT_OP_EQ(o, h->n);
    }
}

static void hist_free(struct hist *h)
{
    for (size_t k = 0; k < h->nkeys; k++)
        free(h->keys[k]);
    free(h->keys);
    free(h->e);
    free(h->se);
}

static struct merge *hist_merge(const struct hist *h, struct asrc *a, uint64_t snap, bool all,
                                unsigned timed, const struct merge_opts *o)
{
    struct merge_source src[16];

    for (size_t i = 0; i < h->nsrc; i++) {
        src[i] = asource(&a[i], &h->se[h->start[i]], h->start[i + 1] - h->start[i], snap);
        a[i].all_versions = all;
        a[i].timed = (timed >> i) & 1;
        if (!a[i].timed && rnd() % 2)
            src[i].hides = NULL;
    }
    return merge_new(src, h->nsrc, o);
}

static void expect_rec(const struct merge_rec *r, const struct aent *e, bool tomb)
{
    EXPECT_MSG(r->key_len == e->key_len && !memcmp(r->key, e->key, e->key_len) &&
                   r->version == e->version && r->tombstone == tomb,
               "got version %llu tomb %d, want version %llu tomb %d",
               (unsigned long long)r->version, r->tombstone, (unsigned long long)e->version, tomb);
    if (!tomb) {
        const struct aent *y = r->row; /* the source's copy of e */

        EXPECT(y != NULL && y->key == e->key && y->version == e->version && !y->tomb &&
               y->filtered == e->filtered && y->expired == e->expired);
    }
}

/*
 * Read mode at snap with the sources in the timed mask. The model: per
 * key, the newest entry at snap over all sources is the answer, unless
 * it is a tombstone or a row its (timed) source leaves out. The merge
 * counts a key as hidden when the first entry yielded for it (by the
 * lowest source that yields one) is a row, but not the newest.
 */
static void check_read(const struct hist *h, uint64_t snap, unsigned timed)
{
    struct asrc a[16];
    struct merge *m = hist_merge(h, a, snap, false, timed, &read_opts);
    struct merge_stats st;
    struct merge_rec r;
    uint64_t hidden = 0;
    uint64_t out = 0;

    for (size_t i = 0; i < h->n;) {
        const struct aent *newest = NULL;
        const struct aent *winner = NULL;
        size_t last_src = SIZE_MAX;
        size_t j;

        for (j = i; j < h->n && same_key(&h->e[j], &h->e[i]); j++) {
            const struct aent *e = &h->e[j];
            size_t si = src_of(h, e->version);
            bool first_of_src = si != last_src;

            if (e->version > snap)
                continue;
            last_src = si;
            if (!newest)
                newest = e;
            /* A source yields its newest entry at snap, unless it leaves it out. */
            if (!winner && first_of_src && !(e->filtered && ((timed >> si) & 1)))
                winner = e;
        }
        i = j;
        if (!winner || winner->tomb)
            continue;
        if (winner != newest) {
            hidden++;
            continue;
        }
        EXPECT_MSG(merge_next(m, &r), "merge ended early, status %d", merge_status(m, NULL));
        expect_rec(&r, newest, false);
        out++;
    }
    EXPECT(!merge_next(m, &r));
    EXPECT_OP_EQ(merge_status(m, NULL), ST_OK);
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.entries_out, out);
    EXPECT_OP_EQ(st.hidden, hidden);
    merge_free(m);
}

/* Compaction mode at horizon H: model applies the rules key by key. */
static void check_compact(const struct hist *h, uint64_t hz, bool bottom)
{
    struct merge_opts o = {.mode = MERGE_COMPACT, .horizon = hz, .bottom = bottom};
    struct asrc a[16];
    struct merge *m;
    struct merge_stats st;
    struct merge_rec r;
    uint64_t vdrop = 0;
    uint64_t tdrop = 0;
    uint64_t exp = 0;
    uint64_t out = 0;
    int calls = 0;
    int asked = 0;
    bool le_seen = false;
    bool tomb_gone = false;

    o.expired = aent_expired;
    o.expired_arg = &calls;
    m = hist_merge(h, a, UINT64_MAX, true, 0, &o);
    for (size_t i = 0; i < h->n; i++) {
        const struct aent *e = &h->e[i];
        int keep = 1; /* 1 row as is, 2 tombstone, 0 dropped */

        if (!i || h->e[i - 1].key_len != e->key_len ||
            memcmp(h->e[i - 1].key, e->key, e->key_len)) {
            le_seen = false;
            tomb_gone = false;
        }
        if (hz && e->version <= hz) {
            if (le_seen) {
                keep = 0;
                if (tomb_gone)
                    tdrop++;
                else
                    vdrop++;
            } else if (e->tomb && bottom) {
                keep = 0;
                tdrop++;
                tomb_gone = true;
            } else if (!e->tomb) {
                asked++;
                if (e->expired) {
                    exp++;
                    keep = bottom ? 0 : 2;
                }
            }
            le_seen = true;
        }
        if (!keep)
            continue;
        EXPECT_MSG(merge_next(m, &r), "merge ended early at %zu", i);
        expect_rec(&r, e, e->tomb || keep == 2);
        out++;
    }
    EXPECT(!merge_next(m, &r));
    merge_get_stats(m, &st);
    EXPECT_OP_EQ(st.entries_in, h->n);
    EXPECT_OP_EQ(st.entries_out, out);
    EXPECT_OP_EQ(st.versions_dropped, vdrop);
    EXPECT_OP_EQ(st.tombstones_dropped, tdrop);
    EXPECT_OP_EQ(st.expired, exp);
    EXPECT_OP_EQ(calls, asked);
    for (size_t i = 0; i < h->nsrc; i++)
        EXPECT_OP_EQ(a[i].hides_calls, 0);
    merge_free(m);
}

START_TEST(test_random_model)
{
    rng_state = 42;
    for (int round = 0; round < 400; round++) {
        struct hist h;

        hist_random(&h);
        for (int k = 0; k < 6; k++) {
            uint64_t snap = rnd() % 4 ? rnd() % (MAXV + 2) : UINT64_MAX;
            unsigned timed = rnd() % 3 ? (unsigned)rnd() & 0xffff : 0;

            check_read(&h, snap, timed);
        }
        check_compact(&h, 0, rnd() % 2);
        for (int k = 0; k < 5; k++)
            check_compact(&h, 1 + rnd() % (MAXV + 1), rnd() % 2);
        hist_free(&h);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Adapters on memtables and segments */

/* id int64 key, ts timestamp (nullable time field), v int64. */
static struct schema *ts_schema(void)
{
    struct field f[3];
    const char *pk[] = {"id"};
    struct schema *s;
    struct err err;

    memset(f, 0, sizeof(f));
    st_strlcpy(f[0].name, "id", sizeof(f[0].name));
    f[0].type = FIELD_INT64;
    st_strlcpy(f[1].name, "ts", sizeof(f[1].name));
    f[1].type = FIELD_TIMESTAMP;
    f[1].nullable = true;
    st_strlcpy(f[2].name, "v", sizeof(f[2].name));
    f[2].type = FIELD_INT64;
    EXPECT_OP_EQ(schema_new(1, f, 3, pk, 1, "ts", &s, &err), ST_OK);
    return s;
}

static void put_le(struct strbuf *sb, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        strbuf_addch(sb, (char)(v >> (8 * i)));
}

#define NULL_TS INT64_MIN

/* A row of ts_schema (schema.h format: u32 length, null bitmap, values). */
static void mkrow(struct strbuf *sb, int64_t id, int64_t ts, int64_t v)
{
    strbuf_reset(sb);
    put_le(sb, 0, 4);
    strbuf_addch(sb, ts == NULL_TS ? 2 : 0);
    put_le(sb, (uint64_t)id, 8);
    if (ts != NULL_TS)
        put_le(sb, (uint64_t)ts, 8);
    put_le(sb, (uint64_t)v, 8);
    for (int i = 0; i < 4; i++)
        sb->buf[i] = (char)(sb->len >> (8 * i));
}

static size_t mkkey(uint8_t *buf, int64_t id)
{
    struct value v;

    memset(&v, 0, sizeof(v));
    v.type = FIELD_INT64;
    v.u.i = id;
    return key_encode(&v, 1, buf, 16);
}

/* One write for the helpers: id, version, tombstone, ts, v. */
struct w {
    int64_t id;
    uint64_t version;
    bool tomb;
    int64_t ts;
    int64_t v;
};

/* Writes ws (key order, newest first) into a segment at path and opens it. */
static struct segment *mkseg(struct fs *fs, const char *path, const struct schema *s,
                             const struct w *ws, size_t n, uint32_t block_rows)
{
    struct segment_writer_opts o = {.block_rows = block_rows};
    struct strbuf row = STRBUF_INIT;
    struct segment_writer *wr;
    struct segment *seg;
    struct err err;
    uint8_t key[16];

    EXPECT_OP_EQ(segment_writer_new(fs, path, s, 1, &o, &wr, &err), ST_OK);
    for (size_t i = 0; i < n; i++) {
        size_t klen = mkkey(key, ws[i].id);

        mkrow(&row, ws[i].id, ws[i].ts, ws[i].v);
        EXPECT_MSG(segment_writer_add(wr, key, klen, ws[i].version, ws[i].tomb,
                                      ws[i].tomb ? NULL : row.buf, &err) == ST_OK,
                   "add: %s", err.msg);
    }
    EXPECT_MSG(segment_writer_finish(wr, NULL, &err) == ST_OK, "%s", err.msg);
    EXPECT_OP_EQ(segment_open(fs, path, &seg, &err), ST_OK);
    strbuf_release(&row);
    return seg;
}

static struct memtable *mkmem(const struct w *ws, size_t n)
{
    struct memtable *mt = memtable_new(NULL);
    struct strbuf row = STRBUF_INIT;
    uint8_t key[16];

    /* Puts in version order. */
    for (uint64_t v = 0; v < 1000; v++)
        for (size_t i = 0; i < n; i++) {
            struct memtable_write mw;

            if (ws[i].version != v)
                continue;
            memset(&mw, 0, sizeof(mw));
            mw.table = 1;
            mw.key_len = (uint32_t)mkkey(key, ws[i].id);
            mw.key = key;
            mw.hash = key_hash(key, mw.key_len);
            mw.schema_version = 1;
            if (!ws[i].tomb) {
                mkrow(&row, ws[i].id, ws[i].ts, ws[i].v);
                mw.row = row.buf;
                mw.row_len = (uint32_t)row.len;
            }
            memtable_put(mt, v, &mw);
        }
    strbuf_release(&row);
    return mt;
}

/* What the merge yields as "id@version:v" words ("id@version-" for tombstones). */
static void drain_rows(struct merge *m, const struct schema *s, char *buf, size_t cap)
{
    struct merge_rec r;
    size_t len = 0;

    buf[0] = 0;
    while (merge_next(m, &r)) {
        struct value id;
        struct value v;
        int n;

        EXPECT_OP_EQ(r.key_len, 8);
        EXPECT_OP_EQ(r.schema_version, 1);
        if (r.tombstone) {
            uint64_t k = 0;

            for (int i = 0; i < 8; i++)
                k = k << 8 | ((const uint8_t *)r.key)[i];
            n = snprintf(buf + len, cap - len, "%s%lld@%llu-", len ? " " : "",
                         (long long)(k ^ (UINT64_C(1) << 63)), (unsigned long long)r.version);
        } else {
            EXPECT_OP_EQ(r.row_len, schema_row_len(r.row));
            schema_row_get(s, r.row, 0, &id);
            schema_row_get(s, r.row, 2, &v);
            n = snprintf(buf + len, cap - len, "%s%lld@%llu:%lld", len ? " " : "",
                         (long long)id.u.i, (unsigned long long)r.version, (long long)v.u.i);
        }
        EXPECT(n > 0 && (size_t)n < cap - len);
        len += (size_t)n;
    }
}

#define EXPECT_ROWS(m, s, want)                                                                    \
    do {                                                                                           \
        char got_[2048];                                                                           \
                                                                                                   \
        drain_rows((m), (s), got_, sizeof(got_));                                                  \
        EXPECT_MSG(!strcmp(got_, (want)), "%s:%d: got '%s', want '%s'", __FILE__, __LINE__, got_,  \
                   (want));                                                                        \
        EXPECT_OP_EQ(merge_status((m), NULL), ST_OK);                                              \
    } while (0)

static struct fs *new_fs(void)
{
    struct fs *fs = fs_fault_new();

    EXPECT_OP_EQ(fs->mkdir(fs, "/d", 0755), 0);
    return fs;
}

/* A memtable (versions 30+) over two segments (20s, then 10s), both modes. */
START_TEST(test_adapters)
{
    static const struct w mem[] = {{2, 31, false, 100, 231},
                                   {4, 30, true, 0, 0},
                                   {7, 32, false, 100, 732},
                                   {2, 33, false, 100, 233}};
    static const struct w s1[] = {{1, 21, false, 100, 121},
                                  {2, 22, false, 100, 222},
                                  {3, 23, true, 0, 0},
                                  {4, 24, false, 100, 424},
                                  {4, 20, false, 100, 420}};
    static const struct w s2[] = {{1, 11, false, 100, 111},
                                  {3, 12, false, 100, 312},
                                  {4, 13, false, 100, 413},
                                  {5, 14, false, NULL_TS, 514},
                                  {5, 10, true, 0, 0}};
    struct schema *s = ts_schema();
    struct fs *fs = new_fs();
    struct memtable *mt = mkmem(mem, ST_ARRAY_SIZE(mem));
    struct segment *g1 = mkseg(fs, "/d/s1", s, s1, ST_ARRAY_SIZE(s1), 2);
    struct segment *g2 = mkseg(fs, "/d/s2", s, s2, ST_ARRAY_SIZE(s2), 0);
    struct merge_source src[3];
    struct merge_opts co = {.mode = MERGE_COMPACT, .horizon = 22, .bottom = true};
    struct merge *m;
    uint64_t snaps[] = {100, 32, 22, 12};
    const char *want[] = {"1@21:121 2@33:233 5@14:514 7@32:732",
                          "1@21:121 2@31:231 5@14:514 7@32:732",
                          "1@21:121 2@22:222 3@12:312 4@20:420 5@14:514", "1@11:111 3@12:312"};

    for (size_t k = 0; k < ST_ARRAY_SIZE(snaps); k++) {
        merge_source_memtable(memtable_iter_new(mt, 1, NULL, snaps[k], MEMTABLE_ITER_TOMBSTONES),
                              &src[0]);
        merge_source_segment(segment_iter_new(g1, NULL, snaps[k], SEGMENT_ITER_TOMBSTONES), g1,
                             snaps[k], false, &src[1]);
        merge_source_segment(segment_iter_new(g2, NULL, snaps[k], SEGMENT_ITER_TOMBSTONES), g2,
                             snaps[k], false, &src[2]);
        EXPECT(src[1].hides == NULL && src[1].status != NULL);
        m = merge_new(src, 3, &read_opts);
        EXPECT_ROWS(m, s, want[k]);
        merge_free(m);
    }

    /* Compaction at H = 22, bottom: the memtable and segments hold every version. */
    merge_source_memtable(memtable_iter_new(mt, 1, NULL, UINT64_MAX,
                                            MEMTABLE_ITER_TOMBSTONES | MEMTABLE_ITER_ALL_VERSIONS),
                          &src[0]);
    merge_source_segment(
        segment_iter_new(g1, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS),
        g1, UINT64_MAX, false, &src[1]);
    merge_source_segment(
        segment_iter_new(g2, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS),
        g2, UINT64_MAX, false, &src[2]);
    m = merge_new(src, 3, &co);
    EXPECT_ROWS(m, s,
                "1@21:121 2@33:233 2@31:231 2@22:222 3@23- 3@12:312 4@30- 4@24:424 4@20:420 "
                "5@14:514 7@32:732");
    merge_free(m);
    co.horizon = 30;
    merge_source_memtable(memtable_iter_new(mt, 1, NULL, UINT64_MAX,
                                            MEMTABLE_ITER_TOMBSTONES | MEMTABLE_ITER_ALL_VERSIONS),
                          &src[0]);
    merge_source_segment(
        segment_iter_new(g1, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS),
        g1, UINT64_MAX, false, &src[1]);
    merge_source_segment(
        segment_iter_new(g2, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS),
        g2, UINT64_MAX, false, &src[2]);
    m = merge_new(src, 3, &co);
    EXPECT_ROWS(m, s, "1@21:121 2@33:233 2@31:231 2@22:222 5@14:514 7@32:732");
    merge_free(m);

    memtable_unref(mt);
    segment_unref(g1);
    segment_unref(g2);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* Keys 1..8 at versions 1..8, all in the time range [100, 200]. */
static const struct w old_rows[] = {
    {1, 1, false, 150, 11}, {2, 2, false, 150, 21}, {3, 3, false, 150, 31}, {4, 4, false, 150, 41},
    {5, 5, false, 150, 51}, {6, 6, false, 150, 61}, {7, 7, false, 150, 71}, {8, 8, false, 150, 81}};

/*
 * A newer segment holds key 5 at a time out of the range (and key 6 in
 * it); iterated with the time range, it must hide the older in-range
 * row of key 5. block_rows 1: key 5's block is skipped by time; 0 (the
 * default): it is read and the row filtered.
 */
static void check_time_hides(uint32_t block_rows, bool want_skip)
{
    static const struct w new_rows[] = {
        {5, 50, false, 1000, 52}, {6, 51, false, 150, 62}, {9, 52, false, NULL_TS, 91}};
    struct schema *s = ts_schema();
    struct fs *fs = new_fs();
    struct segment *older = mkseg(fs, "/d/old", s, old_rows, ST_ARRAY_SIZE(old_rows), 0);
    struct segment *newer = mkseg(fs, "/d/new", s, new_rows, ST_ARRAY_SIZE(new_rows), block_rows);
    struct segment_range tr = {.has_time = true, .time_lo = 100, .time_hi = 200};
    struct segment_iter_stats is;
    struct merge_source src[2];
    struct merge_stats st;
    struct segment_iter *it;
    struct merge *m;

    for (int check = 1; check >= 0; check--) {
        it = segment_iter_new(newer, &tr, 100, SEGMENT_ITER_TOMBSTONES);
        merge_source_segment(it, newer, 100, check, &src[0]);
        merge_source_segment(segment_iter_new(older, &tr, 100, SEGMENT_ITER_TOMBSTONES), older, 100,
                             check, &src[1]);
        m = merge_new(src, 2, &read_opts);
        if (check)
            EXPECT_ROWS(m, s, "1@1:11 2@2:21 3@3:31 4@4:41 6@51:62 7@7:71 8@8:81");
        else /* what goes wrong without the check: key 5's stale row */
            EXPECT_ROWS(m, s, "1@1:11 2@2:21 3@3:31 4@4:41 5@5:51 6@51:62 7@7:71 8@8:81");
        segment_iter_get_stats(it, &is);
        EXPECT_OP_EQ(is.blocks_skipped_time > 0, want_skip);
        merge_get_stats(m, &st);
        EXPECT_OP_EQ(st.hidden, check ? 1 : 0);
        merge_free(m);
    }

    /* Below the newer segment's versions nothing is hidden. */
    merge_source_segment(segment_iter_new(newer, &tr, 49, SEGMENT_ITER_TOMBSTONES), newer, 49, true,
                         &src[0]);
    merge_source_segment(segment_iter_new(older, &tr, 49, SEGMENT_ITER_TOMBSTONES), older, 49, true,
                         &src[1]);
    m = merge_new(src, 2, &read_opts);
    EXPECT_ROWS(m, s, "1@1:11 2@2:21 3@3:31 4@4:41 5@5:51 6@6:61 7@7:71 8@8:81");
    merge_free(m);
    segment_unref(older);
    segment_unref(newer);
    fs_fault_free(fs);
    schema_free(s);
}

START_TEST(test_segment_hides_skipped_block)
{
    check_time_hides(1, true);
}
END_TEST

START_TEST(test_segment_hides_filtered_row)
{
    check_time_hides(0, false);
}
END_TEST

/* A segment left unopened (its times are all out of range) still hides its keys. */
START_TEST(test_skipped_segment)
{
    static const struct w new_rows[] = {
        {5, 50, false, 1000, 52}, {6, 51, true, 0, 0}, {9, 52, false, 2000, 91}};
    struct schema *s = ts_schema();
    struct fs *fs = new_fs();
    struct segment *older = mkseg(fs, "/d/old", s, old_rows, ST_ARRAY_SIZE(old_rows), 0);
    struct segment *newer = mkseg(fs, "/d/new", s, new_rows, ST_ARRAY_SIZE(new_rows), 0);
    struct segment_range tr = {.has_time = true, .time_lo = 100, .time_hi = 200};
    struct merge_source src[2];
    struct merge_stats st;
    struct merge *m;
    uint64_t snaps[] = {100, 50, 49};
    const char *want[] = {"1@1:11 2@2:21 3@3:31 4@4:41 7@7:71 8@8:81",
                          "1@1:11 2@2:21 3@3:31 4@4:41 6@6:61 7@7:71 8@8:81",
                          "1@1:11 2@2:21 3@3:31 4@4:41 5@5:51 6@6:61 7@7:71 8@8:81"};
    uint64_t want_hidden[] = {2, 1, 0};

    for (size_t k = 0; k < ST_ARRAY_SIZE(snaps); k++) {
        merge_source_skipped_segment(newer, snaps[k], &src[0]);
        EXPECT(src[0].hides != NULL);
        merge_source_segment(segment_iter_new(older, &tr, snaps[k], SEGMENT_ITER_TOMBSTONES), older,
                             snaps[k], true, &src[1]);
        m = merge_new(src, 2, &read_opts);
        if (k == 0)
            segment_unref(newer); /* the source holds its own reference */
        EXPECT_ROWS(m, s, want[k]);
        merge_get_stats(m, &st);
        EXPECT_OP_EQ(st.hidden, want_hidden[k]);
        merge_free(m);
        if (k == 0)
            EXPECT_OP_EQ(segment_open(fs, "/d/new", &newer, NULL), ST_OK);
    }
    segment_unref(older);
    segment_unref(newer);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

/* I/O errors: a segment iterator's, and segment_get()'s inside hides(). */
START_TEST(test_segment_errors)
{
    static const struct w new_rows[] = {{5, 50, false, 1000, 52}};
    static const struct w mem[] = {{1, 1, false, 150, 11}, {5, 5, false, 150, 51}};
    struct schema *s = ts_schema();
    struct fs *fs = new_fs();
    struct segment *older = mkseg(fs, "/d/old", s, old_rows, ST_ARRAY_SIZE(old_rows), 0);
    struct segment *newer = mkseg(fs, "/d/new", s, new_rows, ST_ARRAY_SIZE(new_rows), 0);
    struct memtable *mt = mkmem(mem, ST_ARRAY_SIZE(mem));
    struct merge_source src[2];
    struct merge_rec r;
    struct merge *m;
    struct err err;
    uint8_t key1[16];

    mkkey(key1, 1);
    /* The iterator over the older segment cannot read its block. */
    merge_source_memtable(memtable_iter_new(mt, 1, NULL, 100, MEMTABLE_ITER_TOMBSTONES), &src[0]);
    merge_source_segment(segment_iter_new(older, NULL, 100, SEGMENT_ITER_TOMBSTONES), older, 100,
                         false, &src[1]);
    fs_fault_fail_nth(fs, FS_OP_READ, 1, EIO, true);
    m = merge_new(src, 2, &read_opts);
    EXPECT(!merge_next(m, &r));
    EXPECT_OP_EQ(merge_status(m, &err), ST_EIO);
    EXPECT(err.msg[0] != 0);
    merge_free(m);

    /* hides() of a skipped segment cannot read the block holding key 5. */
    merge_source_skipped_segment(newer, 100, &src[0]);
    merge_source_memtable(memtable_iter_new(mt, 1, NULL, 100, MEMTABLE_ITER_TOMBSTONES), &src[1]);
    m = merge_new(src, 2, &read_opts);
    if (!segment_may_contain(newer, key1, 8)) /* else key 1 already fails */
        EXPECT(merge_next(m, &r) && r.version == 1);
    EXPECT(!merge_next(m, &r));
    EXPECT_OP_EQ(merge_status(m, &err), ST_EIO);
    EXPECT(err.msg[0] != 0);
    EXPECT(!merge_next(m, &r));
    merge_free(m);

    fs_fault_clear(fs);
    memtable_unref(mt);
    segment_unref(older);
    segment_unref(newer);
    fs_fault_free(fs);
    schema_free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("merge");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_read_basic);
    tcase_add_test(tc, test_read_key_order);
    tcase_add_test(tc, test_read_empty);
    tcase_add_test(tc, test_read_many_sources);
    tcase_add_test(tc, test_hides);
    tcase_add_test(tc, test_hides_error);
    tcase_add_test(tc, test_source_error);
    tcase_add_test(tc, test_compact_gc);
    tcase_add_test(tc, test_compact_expired);
    tcase_add_test(tc, test_compact_duplicate);
    tcase_add_test(tc, test_random_model);
    tcase_add_test(tc, test_adapters);
    tcase_add_test(tc, test_segment_hides_skipped_block);
    tcase_add_test(tc, test_segment_hides_filtered_row);
    tcase_add_test(tc, test_skipped_segment);
    tcase_add_test(tc, test_segment_errors);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

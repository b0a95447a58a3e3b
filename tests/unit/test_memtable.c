/*
 * Unit tests for src/engine/memtable.c.
 *
 * The core test applies a few thousand random operations (upserts,
 * deletes, repeated versions, keys with shared prefixes and 0x00 bytes,
 * three tables) to a memtable and to a brute-force model (the list of
 * operations), and compares point reads at every snapshot and random
 * range scans (bounds inclusive and exclusive, every flag) as it goes,
 * under tuning that forces many sorted runs and merges, under the
 * defaults (everything in the unsorted tail), and after freezing. Others:
 * multi-version histories with tombstones, the same key twice at one
 * version, iterators that outlive later writes, memory accounting, large
 * rows, and a reader thread checking its reads while the writer writes.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/key.h"
#include "engine/memtable.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A fake row: u32 length, u32 id, then (id % 13) filler bytes. */
static uint32_t make_row(uint8_t *row, uint32_t id)
{
    uint32_t len = 8 + id % 13;

    for (int i = 0; i < 4; i++) {
        row[i] = (uint8_t)(len >> (8 * i));
        row[4 + i] = (uint8_t)(id >> (8 * i));
    }
    memset(row + 8, (int)(id & 0xff), len - 8);
    return len;
}

static uint32_t row_id(const struct memtable_rec *r)
{
    const uint8_t *p = r->row;

    return (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
}

static void put(struct memtable *mt, uint32_t table, const void *key, uint32_t klen,
                uint64_t version, bool tomb, uint32_t id)
{
    uint8_t row[32];
    struct memtable_write w;

    memset(&w, 0, sizeof(w));
    w.table = table;
    w.key = key;
    w.key_len = klen;
    w.hash = key_hash(key, klen);
    w.schema_version = id % 3 + 1;
    if (!tomb) {
        w.row_len = make_row(row, id);
        w.row = row;
    }
    memtable_put(mt, version, &w);
}

static bool get(struct memtable *mt, uint32_t table, const void *key, size_t klen, uint64_t snap,
                struct memtable_rec *r)
{
    return memtable_get(mt, table, key, klen, key_hash(key, klen), snap, r);
}

/* ---- the model ---- */

#define MAXKEY 14

struct op {
    uint32_t table;      /* table id */
    uint8_t key[MAXKEY]; /* key bytes */
    uint32_t klen;       /* key length */
    uint64_t version;    /* commit version */
    bool tomb;           /* a delete */
    uint32_t id;         /* row id (the op's index) */
};

struct model {
    struct op *ops; /* in put order */
    size_t n;       /* ops */
};

/* The newest op of (table, key) with version <= snap, or NULL. */
static const struct op *model_get(const struct model *m, uint32_t table, const uint8_t *key,
                                  uint32_t klen, uint64_t snap)
{
    for (size_t i = m->n; i-- > 0;) {
        const struct op *o = &m->ops[i];

        if (o->table == table && o->klen == klen && !memcmp(o->key, key, klen) &&
            o->version <= snap)
            return o;
    }
    return NULL;
}

struct yielded {
    uint8_t key[MAXKEY]; /* key bytes */
    uint32_t klen;       /* key length */
    uint64_t version;    /* version */
    bool tomb;           /* tombstone */
    uint32_t id;         /* row id, or 0 for a tombstone */
};

static const struct op *sort_base;

static int cmp_op_key(const void *a, const void *b)
{
    const struct op *x = &sort_base[*(const size_t *)a];
    const struct op *y = &sort_base[*(const size_t *)b];
    int c = key_compare(x->key, x->klen, y->key, y->klen);

    if (c)
        return c;
    /* Same key: newest (highest index) first. */
    return (*(const size_t *)a < *(const size_t *)b) - (*(const size_t *)a > *(const size_t *)b);
}

static bool in_range(const struct memtable_range *r, const uint8_t *k, uint32_t klen)
{
    int c;

    if (!r)
        return true;
    if (r->lo) {
        c = key_compare(k, klen, r->lo, r->lo_len);
        if (c < 0 || (c == 0 && r->lo_excl))
            return false;
    }
    if (r->hi) {
        c = key_compare(k, klen, r->hi, r->hi_len);
        if (c > 0 || (c == 0 && !r->hi_incl))
            return false;
    }
    return true;
}

/* What an iterator should yield, into out (room for m->n); returns the count. */
static size_t model_scan(const struct model *m, uint32_t table, const struct memtable_range *r,
                         uint64_t snap, unsigned flags, struct yielded *out)
{
    size_t *idx = calloc(m->n + 1, sizeof(*idx));
    size_t k = 0, n = 0;
    const struct op *prev = NULL;  /* last op considered for its key */
    const struct op *group = NULL; /* last op resolved */

    for (size_t i = 0; i < m->n; i++)
        if (m->ops[i].table == table && in_range(r, m->ops[i].key, m->ops[i].klen))
            idx[k++] = i;
    sort_base = m->ops;
    qsort(idx, k, sizeof(*idx), cmp_op_key);
    for (size_t i = 0; i < k; i++) {
        const struct op *o = &m->ops[idx[i]];
        bool same = group && group->klen == o->klen && !memcmp(group->key, o->key, o->klen);

        prev = o;
        if (same && !(flags & MEMTABLE_ITER_ALL_VERSIONS))
            continue;
        if (same && o->version == group->version)
            continue;
        if (o->version > snap)
            continue;
        group = o;
        if (o->tomb && !(flags & MEMTABLE_ITER_TOMBSTONES))
            continue;
        memcpy(out[n].key, o->key, o->klen);
        out[n].klen = o->klen;
        out[n].version = o->version;
        out[n].tomb = o->tomb;
        out[n].id = o->tomb ? 0 : o->id;
        n++;
    }
    (void)prev;
    free(idx);
    return n;
}

static void check_scan(struct memtable *mt, const struct model *m, uint32_t table,
                       const struct memtable_range *r, uint64_t snap, unsigned flags)
{
    struct yielded *want = calloc(m->n + 1, sizeof(*want));
    size_t nwant = model_scan(m, table, r, snap, flags, want);
    struct memtable_iter *it = memtable_iter_new(mt, table, r, snap, flags);
    struct memtable_rec rec;
    size_t n = 0;

    while (memtable_iter_next(it, &rec)) {
        ck_assert_msg(n < nwant, "iterator yields more than %zu entries", nwant);
        ck_assert_uint_eq(rec.table, table);
        ck_assert_uint_eq(rec.key_len, want[n].klen);
        ck_assert_int_eq(memcmp(rec.key, want[n].key, rec.key_len), 0);
        ck_assert_uint_eq(rec.version, want[n].version);
        ck_assert_int_eq(rec.tombstone, want[n].tomb);
        if (!rec.tombstone)
            ck_assert_uint_eq(row_id(&rec), want[n].id);
        n++;
    }
    ck_assert_uint_eq(n, nwant);
    /* Exhausted iterators stay exhausted. */
    ck_assert(!memtable_iter_next(it, &rec));
    memtable_iter_free(it);
    free(want);
}

static void check_get(struct memtable *mt, const struct model *m, uint32_t table,
                      const uint8_t *key, uint32_t klen, uint64_t snap)
{
    const struct op *o = model_get(m, table, key, klen, snap);
    struct memtable_rec rec;
    bool found = get(mt, table, key, klen, snap, &rec);

    ck_assert_int_eq(found, o != NULL);
    if (!o)
        return;
    ck_assert_uint_eq(rec.version, o->version);
    ck_assert_int_eq(rec.tombstone, o->tomb);
    ck_assert_uint_eq(rec.schema_version, o->id % 3 + 1);
    ck_assert_uint_eq(rec.key_len, klen);
    ck_assert_int_eq(memcmp(rec.key, key, klen), 0);
    if (o->tomb) {
        ck_assert_ptr_null(rec.row);
        ck_assert_uint_eq(rec.row_len, 0);
    } else {
        ck_assert_uint_eq(row_id(&rec), o->id);
        ck_assert_uint_eq(rec.row_len, 8 + o->id % 13);
    }
}

/* ---- random operations ---- */

#define NKEYS 300

static uint8_t keypool[NKEYS][MAXKEY];
static uint32_t keylen[NKEYS];

static void make_keys(void)
{
    /* Short keys over a tiny alphabet (shared prefixes, 0x00 bytes), and
     * 9-14 byte keys sharing their first 8 bytes (ties on the prefix). */
    static const uint8_t alpha[] = {0x00, 0x01, 'a', 'b', 0xff};

    for (int i = 0; i < NKEYS; i++) {
        if (i % 3 == 2) {
            keylen[i] = 9 + (uint32_t)(rnd() % 6);
            memcpy(keypool[i], "prefix:!", 8);
            for (uint32_t j = 8; j < keylen[i]; j++)
                keypool[i][j] = alpha[rnd() % sizeof(alpha)];
        } else {
            keylen[i] = 1 + (uint32_t)(rnd() % 5);
            for (uint32_t j = 0; j < keylen[i]; j++)
                keypool[i][j] = alpha[rnd() % sizeof(alpha)];
        }
    }
}

static const uint32_t tables[] = {1, 2, 7};

static void random_range(struct memtable_range *r, uint8_t *lo, uint8_t *hi)
{
    int a = (int)(rnd() % NKEYS), b = (int)(rnd() % NKEYS);

    memset(r, 0, sizeof(*r));
    if (rnd() % 4) {
        memcpy(lo, keypool[a], keylen[a]);
        r->lo = lo;
        r->lo_len = keylen[a];
        /* Sometimes a bound that is not a key: a proper prefix. */
        if (r->lo_len > 1 && rnd() % 4 == 0)
            r->lo_len--;
        r->lo_excl = rnd() & 1;
    }
    if (rnd() % 4) {
        memcpy(hi, keypool[b], keylen[b]);
        r->hi = hi;
        r->hi_len = keylen[b];
        r->hi_incl = rnd() & 1;
    }
}

static void check_random(struct memtable *mt, const struct model *m, uint64_t maxv)
{
    uint8_t lo[MAXKEY], hi[MAXKEY];
    struct memtable_range r;

    for (int i = 0; i < 20; i++) {
        int k = (int)(rnd() % NKEYS);

        check_get(mt, m, tables[rnd() % 3], keypool[k], keylen[k], rnd() % (maxv + 2));
    }
    for (int i = 0; i < 3; i++) {
        uint64_t snap = rnd() % 4 == 0 ? UINT64_MAX : rnd() % (maxv + 2);

        random_range(&r, lo, hi);
        check_scan(mt, m, tables[rnd() % 3], &r, snap, (unsigned)(rnd() % 4));
    }
    check_scan(mt, m, tables[rnd() % 3], NULL, UINT64_MAX, 0);
}

static void random_ops(const struct memtable_opts *opts, uint64_t seed, size_t nops)
{
    struct memtable *mt = memtable_new(opts);
    struct model m = {calloc(nops, sizeof(struct op)), 0};
    uint64_t version = 1;
    struct memtable_stats st;

    rng_state = seed;
    make_keys();
    for (size_t i = 0; i < nops; i++) {
        struct op *o = &m.ops[m.n];
        int k = (int)(rnd() % NKEYS);

        /* About one version in three is shared by several writes. */
        if (rnd() % 3)
            version++;
        o->table = tables[rnd() % 3];
        memcpy(o->key, keypool[k], keylen[k]);
        o->klen = keylen[k];
        o->version = version;
        o->tomb = rnd() % 5 == 0;
        o->id = (uint32_t)i + 1;
        put(mt, o->table, o->key, o->klen, o->version, o->tomb, o->id);
        m.n++;
        if (i % 97 == 96)
            check_random(mt, &m, version);
    }
    memtable_get_stats(mt, &st);
    ck_assert_uint_eq(st.entries, nops);
    ck_assert_uint_eq(st.tables, 3);
    ck_assert_uint_eq(st.max_version, version);
    ck_assert(!memtable_is_frozen(mt));

    memtable_freeze(mt);
    ck_assert(memtable_is_frozen(mt));
    memtable_get_stats(mt, &st);
    ck_assert_uint_eq(st.runs, 3); /* one run per table */
    for (int i = 0; i < 5; i++)
        check_random(mt, &m, version);
    memtable_freeze(mt); /* idempotent */
    check_random(mt, &m, version);
    memtable_unref(mt);
    free(m.ops);
}

START_TEST(test_random_many_runs)
{
    /* Small everything: many runs, merges capped by max_run, index growing from 8 slots. */
    struct memtable_opts o = {
        .run_size = 8, .fanin = 3, .max_run = 100, .arena_chunk = 4096, .expect_keys = 1};

    random_ops(&o, 11, 4000);
}
END_TEST

START_TEST(test_random_fanin2)
{
    struct memtable_opts o = {.run_size = 5, .fanin = 2, .max_run = 1000000, .expect_keys = 100};

    random_ops(&o, 12, 3000);
}
END_TEST

START_TEST(test_random_defaults)
{
    random_ops(NULL, 13, 3000);
}
END_TEST

/* ---- histories ---- */

START_TEST(test_history_every_snapshot)
{
    struct memtable_opts o = {.run_size = 4};
    struct memtable *mt = memtable_new(&o);
    struct memtable_rec rec;
    /* Key "k": v2 put, v4 delete, v5 put, v9 delete, v12 put; "j": v3 put. */
    static const struct {
        const char *key;
        uint64_t v;
        bool tomb;
    } h[] = {{"k", 2, false}, {"j", 3, false}, {"k", 4, true},
             {"k", 5, false}, {"k", 9, true},  {"k", 12, false}};

    for (size_t i = 0; i < ST_ARRAY_SIZE(h); i++)
        put(mt, 1, h[i].key, 1, h[i].v, h[i].tomb, (uint32_t)i + 100);
    for (int round = 0; round < 2; round++) {
        for (uint64_t s = 0; s <= 14; s++) {
            int want = -1;

            for (size_t i = 0; i < ST_ARRAY_SIZE(h); i++)
                if (h[i].key[0] == 'k' && h[i].v <= s)
                    want = (int)i;
            if (want < 0) {
                ck_assert(!get(mt, 1, "k", 1, s, &rec));
                continue;
            }
            ck_assert(get(mt, 1, "k", 1, s, &rec));
            ck_assert_uint_eq(rec.version, h[want].v);
            ck_assert_int_eq(rec.tombstone, h[want].tomb);
            if (!rec.tombstone)
                ck_assert_uint_eq(row_id(&rec), (uint32_t)want + 100);
        }
        ck_assert(!get(mt, 1, "k", 1, 1, &rec));
        ck_assert(!get(mt, 2, "k", 1, 100, &rec)); /* another table */
        ck_assert(!get(mt, 1, "kk", 2, 100, &rec));
        ck_assert(get(mt, 1, "j", 1, 3, &rec));
        memtable_freeze(mt);
    }
    memtable_unref(mt);
}
END_TEST

START_TEST(test_same_version_later_wins)
{
    struct memtable *mt = memtable_new(NULL);
    struct memtable_rec rec;
    struct memtable_iter *it;

    /* One request (version 7) writes "a" twice, deletes then re-puts "b". */
    put(mt, 1, "a", 1, 5, false, 1);
    put(mt, 1, "a", 1, 7, false, 2);
    put(mt, 1, "b", 1, 7, true, 3);
    put(mt, 1, "a", 1, 7, false, 4);
    put(mt, 1, "b", 1, 7, false, 5);
    put(mt, 1, "c", 1, 7, false, 6);
    put(mt, 1, "c", 1, 7, true, 7);

    for (int round = 0; round < 2; round++) {
        ck_assert(get(mt, 1, "a", 1, 7, &rec));
        ck_assert_uint_eq(row_id(&rec), 4);
        ck_assert(get(mt, 1, "a", 1, 6, &rec));
        ck_assert_uint_eq(row_id(&rec), 1);
        ck_assert(get(mt, 1, "b", 1, 7, &rec));
        ck_assert(!rec.tombstone);
        ck_assert_uint_eq(row_id(&rec), 5);
        ck_assert(get(mt, 1, "c", 1, 7, &rec));
        ck_assert(rec.tombstone);

        /* Newest per key: a=4, b=5; c is deleted. */
        it = memtable_iter_new(mt, 1, NULL, 7, 0);
        ck_assert(memtable_iter_next(it, &rec));
        ck_assert_uint_eq(row_id(&rec), 4);
        ck_assert(memtable_iter_next(it, &rec));
        ck_assert_uint_eq(row_id(&rec), 5);
        ck_assert(!memtable_iter_next(it, &rec));
        memtable_iter_free(it);

        /* All versions: a@7 (id 4), a@5 (id 1), b@7 (id 5), c@7 tombstone. */
        it = memtable_iter_new(mt, 1, NULL, UINT64_MAX,
                               MEMTABLE_ITER_ALL_VERSIONS | MEMTABLE_ITER_TOMBSTONES);
        ck_assert(memtable_iter_next(it, &rec));
        ck_assert_uint_eq(row_id(&rec), 4);
        ck_assert(memtable_iter_next(it, &rec));
        ck_assert_uint_eq(rec.version, 5);
        ck_assert(memtable_iter_next(it, &rec));
        ck_assert_uint_eq(row_id(&rec), 5);
        ck_assert(memtable_iter_next(it, &rec));
        ck_assert(rec.tombstone);
        ck_assert_int_eq(((const char *)rec.key)[0], 'c');
        ck_assert(!memtable_iter_next(it, &rec));
        memtable_iter_free(it);
        memtable_freeze(mt);
    }
    memtable_unref(mt);
}
END_TEST

START_TEST(test_bounds)
{
    struct memtable *mt = memtable_new(NULL);
    struct memtable_range r;
    struct memtable_iter *it;
    struct memtable_rec rec;
    uint8_t keys[10][8];
    struct value v = {.type = FIELD_INT64};
    int got[10], n;

    for (int i = 0; i < 10; i++) {
        v.u.i = i * 10 - 40; /* -40 .. 50 */
        key_encode(&v, 1, keys[i], 8);
        put(mt, 3, keys[i], 8, 1, false, (uint32_t)i);
    }
    for (int mode = 0; mode < 4; mode++) {
        memset(&r, 0, sizeof(r));
        r.lo = keys[2];
        r.lo_len = 8;
        r.lo_excl = mode & 1;
        r.hi = keys[6];
        r.hi_len = 8;
        r.hi_incl = mode & 2;
        it = memtable_iter_new(mt, 3, &r, 1, 0);
        n = 0;
        while (memtable_iter_next(it, &rec))
            got[n++] = (int)row_id(&rec);
        memtable_iter_free(it);
        ck_assert_int_eq(n, 4 - (mode & 1) + ((mode & 2) ? 1 : 0));
        ck_assert_int_eq(got[0], (mode & 1) ? 3 : 2);
        ck_assert_int_eq(got[n - 1], (mode & 2) ? 6 : 5);
    }
    /* An empty range and an unknown table yield nothing. */
    memset(&r, 0, sizeof(r));
    r.lo = keys[5];
    r.lo_len = 8;
    r.hi = keys[5];
    r.hi_len = 8;
    it = memtable_iter_new(mt, 3, &r, 1, 0);
    ck_assert(!memtable_iter_next(it, &rec));
    memtable_iter_free(it);
    it = memtable_iter_new(mt, 4, NULL, 1, 0);
    ck_assert(!memtable_iter_next(it, &rec));
    memtable_iter_free(it);
    memtable_iter_free(NULL);
    memtable_unref(mt);
}
END_TEST

START_TEST(test_iterator_outlives_writes)
{
    struct memtable_opts o = {.run_size = 4, .fanin = 2};
    struct memtable *mt = memtable_new(&o);
    struct memtable_iter *it[3];
    struct memtable_rec rec;
    uint8_t key[8];
    struct value v = {.type = FIELD_INT64};
    size_t before, pinned;

    for (int i = 0; i < 50; i++) {
        v.u.i = (i * 37) % 100;
        key_encode(&v, 1, key, 8);
        put(mt, 1, key, 8, (uint64_t)i + 1, false, (uint32_t)i);
    }
    before = memtable_bytes(mt);
    it[0] = memtable_iter_new(mt, 1, NULL, 50, 0);
    it[1] = memtable_iter_new(mt, 1, NULL, 50, MEMTABLE_ITER_ALL_VERSIONS);
    /* Enough writes to seal tails and merge runs several times over. */
    for (int i = 50; i < 500; i++) {
        v.u.i = (i * 37) % 100;
        key_encode(&v, 1, key, 8);
        put(mt, 1, key, 8, (uint64_t)i + 1, false, (uint32_t)i);
    }
    it[2] = memtable_iter_new(mt, 1, NULL, 50, 0);
    memtable_freeze(mt);
    pinned = memtable_bytes(mt);
    ck_assert_uint_gt(pinned, before);
    /* The first iterator's view still holds the 50 entries, in key order. */
    for (int k = 0; k < 3; k++) {
        int64_t prev = -1;
        int n = 0;

        while (memtable_iter_next(it[k], &rec)) {
            struct value back;
            enum field_type t = FIELD_INT64;
            uint8_t scratch[8];

            ck_assert_int_eq(key_decode(&t, 1, rec.key, rec.key_len, &back, scratch, NULL), ST_OK);
            ck_assert_int_gt(back.u.i, prev);
            ck_assert_uint_le(rec.version, 50);
            prev = back.u.i;
            n++;
        }
        ck_assert_int_eq(n, 50);
        memtable_iter_free(it[k]);
    }
    /* Freed iterators release the old runs and tails they pinned. */
    ck_assert_uint_lt(memtable_bytes(mt), pinned);
    memtable_unref(mt);
}
END_TEST

/* ---- memory accounting ---- */

START_TEST(test_memory_accounting)
{
    struct memtable *mt = memtable_new(NULL);
    struct memtable_stats st;
    size_t empty = memtable_bytes(mt);
    uint8_t key[8], row[100];
    struct memtable_write w;
    struct value v = {.type = FIELD_INT64};

    ck_assert_uint_gt(empty, 0);
    ck_assert_uint_lt(empty, 64 * 1024);
    memset(row, 'x', sizeof(row));
    row[0] = sizeof(row);
    row[1] = row[2] = row[3] = 0;
    for (int i = 0; i < 20000; i++) {
        v.u.i = (int64_t)(rnd() % 1000000);
        key_encode(&v, 1, key, 8);
        memset(&w, 0, sizeof(w));
        w.table = (uint32_t)(i % 2);
        w.key = key;
        w.key_len = 8;
        w.hash = key_hash(key, 8);
        w.row = row;
        w.row_len = sizeof(row);
        memtable_put(mt, (uint64_t)i + 1, &w);
    }
    memtable_get_stats(mt, &st);
    ck_assert_uint_eq(st.bytes, st.arena_bytes + st.index_bytes + st.order_bytes);
    ck_assert_uint_eq(st.bytes, memtable_bytes(mt));
    /* Entries hold key + row + header; the index at least a word a key; runs 16 B an entry. */
    ck_assert_uint_ge(st.arena_bytes, 20000u * (8 + 100 + 40));
    ck_assert_uint_le(st.arena_bytes, 20000u * (8 + 100 + 48) + 2 * MEMTABLE_DEFAULT_ARENA_CHUNK);
    ck_assert_uint_ge(st.index_bytes, st.keys * 8);
    /* At most 4/3 slots a key, plus the old table while it grows: 32 B a key. */
    ck_assert_uint_le(st.index_bytes, st.keys * 32 + 1024);
    ck_assert_uint_ge(st.order_bytes, 20000u * 16);
    ck_assert_uint_eq(st.entries, 20000);
    ck_assert_uint_eq(st.min_version, 1);
    ck_assert_uint_eq(st.max_version, 20000);
    ck_assert_uint_le(st.keys, 20000);
    ck_assert_uint_gt(st.keys, 19000);
    /* Per table: 9 sealed runs of 1024 became 2 merged runs of 4096 plus 1. */
    ck_assert_uint_eq(st.runs, 6);

    /* Frozen: one run per table, no tails; about the same size. */
    memtable_freeze(mt);
    memtable_get_stats(mt, &st);
    ck_assert_uint_eq(st.runs, 2);
    ck_assert_uint_ge(st.order_bytes, 20000u * 16);
    ck_assert_uint_le(st.order_bytes, 20000u * 16 + 4096);
    memtable_unref(mt);
}
END_TEST

START_TEST(test_large_rows_and_tables)
{
    struct memtable_opts o = {.arena_chunk = 4096};
    struct memtable *mt = memtable_new(&o);
    uint8_t *big = malloc(100000);
    struct memtable_write w;
    struct memtable_rec rec;
    struct memtable_stats st;
    uint32_t *ids;
    size_t n;

    for (uint32_t i = 0; i < 100000; i++)
        big[i] = (uint8_t)(i * 31);
    memset(&w, 0, sizeof(w));
    w.key = "big";
    w.key_len = 3;
    w.hash = key_hash("big", 3);
    w.row = big;
    for (uint32_t t = 40; t > 0; t--) {
        w.table = t * 3;
        w.row_len = 1000 + t * 2000; /* some fit a 4 KiB block, most do not */
        memtable_put(mt, 1, &w);
        put(mt, t * 3, "small", 5, 1, false, t);
    }
    for (uint32_t t = 1; t <= 40; t++) {
        ck_assert(get(mt, t * 3, "big", 3, 1, &rec));
        ck_assert_uint_eq(rec.row_len, 1000 + t * 2000);
        ck_assert_int_eq(memcmp(rec.row, big, rec.row_len), 0);
        ck_assert(get(mt, t * 3, "small", 5, 1, &rec));
        ck_assert_uint_eq(row_id(&rec), t);
    }
    memtable_get_stats(mt, &st);
    ck_assert_uint_eq(st.tables, 40);
    ck_assert_uint_ge(st.arena_bytes, 40 * 1000 + 2000 * 820);
    ids = memtable_tables(mt, &n);
    ck_assert_uint_eq(n, 40);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(ids[i], (i + 1) * 3);
    free(ids);
    memtable_unref(mt);
    free(big);

    mt = memtable_new(NULL);
    ids = memtable_tables(mt, &n);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(ids);
    memtable_unref(mt);
}
END_TEST

START_TEST(test_refcount)
{
    struct memtable *mt = memtable_new(NULL);
    struct memtable_iter *it;
    struct memtable_rec rec;

    put(mt, 1, "k", 1, 1, false, 9);
    memtable_ref(mt);
    memtable_unref(mt);
    it = memtable_iter_new(mt, 1, NULL, 1, 0);
    memtable_unref(mt); /* the iterator keeps it alive (ASan checks) */
    ck_assert(memtable_iter_next(it, &rec));
    ck_assert_uint_eq(row_id(&rec), 9);
    memtable_iter_free(it);
}
END_TEST

START_TEST(test_put_after_freeze_aborts)
{
    struct memtable *mt = memtable_new(NULL);

    memtable_freeze(mt);
    put(mt, 1, "k", 1, 1, false, 1);
}
END_TEST

START_TEST(test_put_older_version_aborts)
{
    struct memtable *mt = memtable_new(NULL);

    put(mt, 1, "k", 1, 5, false, 1);
    put(mt, 1, "j", 1, 4, false, 1);
}
END_TEST

/* ---- a reader thread while the writer writes ---- */

#define CONC_KEYS 2000
#define CONC_PUTS 20000

struct conc {
    struct memtable *mt;         /* shared */
    atomic_uint_fast64_t vis;    /* every version <= this is put */
    atomic_bool stop;            /* writer done */
    atomic_uint_fast64_t checks; /* reader's count */
};

static void conc_key(int64_t k, uint8_t *key)
{
    struct value v = {.type = FIELD_INT64};

    v.u.i = k;
    key_encode(&v, 1, key, 8);
}

/* Put i (version i) writes key i % CONC_KEYS, a tombstone when i % 7 == 0. */
static uint64_t conc_expect(uint64_t snap, uint64_t k)
{
    uint64_t d = (snap + CONC_KEYS - k % CONC_KEYS) % CONC_KEYS;

    return snap >= d ? snap - d : 0;
}

static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    uint64_t seed = 99;

    while (!atomic_load(&c->stop)) {
        uint64_t snap = atomic_load(&c->vis);
        uint64_t k = (seed = seed * 6364136223846793005u + 1) >> 33;
        uint64_t want = conc_expect(snap, k % CONC_KEYS);
        struct memtable_rec rec;
        struct memtable_iter *it;
        uint8_t key[8];
        uint64_t n = 0, prev = 0;

        conc_key((int64_t)(k % CONC_KEYS), key);
        if (get(c->mt, 1, key, 8, snap, &rec)) {
            ck_assert_uint_eq(rec.version, want);
            ck_assert_int_eq(rec.tombstone, want % 7 == 0);
        } else {
            ck_assert_uint_eq(want, 0);
        }
        if (atomic_load(&c->checks) % 50 == 0) {
            it = memtable_iter_new(c->mt, 1, NULL, snap, MEMTABLE_ITER_TOMBSTONES);
            while (memtable_iter_next(it, &rec)) {
                uint64_t kk = rec.version % CONC_KEYS;

                ck_assert_uint_eq(rec.version, conc_expect(snap, kk));
                ck_assert(n == 0 || kk > prev);
                prev = kk;
                n++;
            }
            memtable_iter_free(it);
            ck_assert_uint_eq(n, snap < CONC_KEYS ? snap : CONC_KEYS);
        }
        atomic_fetch_add(&c->checks, 1);
    }
    return NULL;
}

START_TEST(test_concurrent_reader)
{
    /* The index grows (incrementally) while the reader reads. */
    struct memtable_opts o = {.run_size = 64, .fanin = 4, .arena_chunk = 8192, .expect_keys = 1};
    struct conc c = {.mt = memtable_new(&o)};
    pthread_t th;

    atomic_init(&c.vis, 0);
    atomic_init(&c.stop, false);
    atomic_init(&c.checks, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, conc_reader, &c), 0);
    for (uint64_t i = 1; i <= CONC_PUTS; i++) {
        uint8_t key[8];

        conc_key((int64_t)(i % CONC_KEYS), key);
        put(c.mt, 1, key, 8, i, i % 7 == 0, (uint32_t)i);
        atomic_store(&c.vis, i);
        /* Now and then wait for the reader, so reads interleave with writes. */
        if (i % 200 == 0) {
            uint64_t seen = atomic_load(&c.checks);

            while (atomic_load(&c.checks) < seen + 3)
                sched_yield();
        }
    }
    memtable_freeze(c.mt);
    atomic_store(&c.stop, true);
    pthread_join(th, NULL);
    ck_assert_uint_ge(atomic_load(&c.checks), 3 * (CONC_PUTS / 200));
    memtable_unref(c.mt);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memtable");
    TCase *tc = tcase_create("memtable");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_random_many_runs);
    tcase_add_test(tc, test_random_fanin2);
    tcase_add_test(tc, test_random_defaults);
    tcase_add_test(tc, test_history_every_snapshot);
    tcase_add_test(tc, test_same_version_later_wins);
    tcase_add_test(tc, test_bounds);
    tcase_add_test(tc, test_iterator_outlives_writes);
    tcase_add_test(tc, test_memory_accounting);
    tcase_add_test(tc, test_large_rows_and_tables);
    tcase_add_test(tc, test_refcount);
    tcase_add_test_raise_signal(tc, test_put_after_freeze_aborts, SIGABRT);
    tcase_add_test_raise_signal(tc, test_put_older_version_aborts, SIGABRT);
    tcase_add_test(tc, test_concurrent_reader);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

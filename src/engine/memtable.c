/*
 * The memtable (see memtable.h for the contract).
 *
 * DESIGN
 *
 * Entries. memtable_put() copies each write into an arena of large
 * blocks (no allocation per write) as one struct mt_entry: header, key
 * bytes, row bytes. Entries never move and are never changed once
 * published, except that nothing points to them until they are
 * complete. Each entry gets a sequence number (seq) in put order; since
 * versions never decrease in put order, a higher seq means a newer
 * version or, at the same version, a later write that shadows.
 *
 * Point reads: a hash index. An open-addressing table (linear probing,
 * at most 3/4 full) maps (table, key) to the newest entry of that key;
 * each entry links to the next older entry of the same key, so a read at
 * snapshot S walks the chain to the first entry with version <= S. A
 * slot is one 64-bit word: the entry's address in the low 48 bits and
 * the top 16 bits of the hash as a tag, so probing rarely touches an
 * entry that does not match. The index doubles incrementally (Redis's
 * rehashing): the full table becomes mt->old, and each put moves the
 * next MIGRATE_STEP of its slots into the new one, so no put pays for
 * rehashing millions of keys (that took 100 ms at 1.5 M keys). Lookups
 * try the new table, then the old. A put of a key still in the old
 * table moves it right away and marks the old slot SLOT_MOVED (bit 0 of
 * the address) so the migration skips it; the old slot keeps its
 * pointer, an older head whose chain is still correct for any snapshot
 * taken before the put (writes after a reader's snapshot have newer
 * versions and need not be seen).
 *
 * Ordered reads: sorted runs per table. Each table appends an element
 * (the first 8 key bytes as a big-endian integer, plus the entry
 * address) to an unsorted tail. When the tail holds run_size elements
 * it is sorted into an immutable run, and whenever the newest `fanin`
 * runs have the same level they are merged into one run of the next
 * level (as long as the result stays under max_run, which bounds how
 * long one put can take). Runs are ordered by (key ascending, seq
 * descending), i.e. (key, version descending). A merge whose inputs do
 * not overlap (keys arriving in order) is a memcpy. An iterator merges
 * the runs and a sorted copy of the tail with a heap; the 8-byte prefix
 * decides most comparisons without touching the entries. Freezing
 * merges everything into a single run per table.
 *
 * CONCURRENCY
 *
 * One writer, many readers. Readers see a table's ordered state through
 * a view: {runs, tail}, reference counted. The writer never changes a
 * published view, except that it appends to the tail's free slots and
 * then raises tail->n with a release store; readers load tail->n with
 * acquire and read only the slots below it. Sealing or growing the tail
 * and merging runs make a new view, swapped in under mt->lock held
 * exclusively; the old view is freed by whoever drops its last
 * reference (the writer, or the last iterator using it), and its runs
 * and tail with it unless a newer view shares them.
 *
 * mt->lock (a writer-preferring rwlock) guards three pointers: mt->idx
 * and mt->old (replaced when the index grows), each table's view, and
 * the table map. The writer takes it exclusively only to replace one of
 * them, and reads them without it (it is the only one who changes
 * them). Readers hold it shared while they probe the index (a few
 * hundred nanoseconds) or while they take a reference on a view. Index
 * slots are atomic words: the writer fills an entry, then stores its
 * slot with release. Once frozen (mt->frozen, set with release after
 * the last change) nothing changes and readers skip the lock.
 *
 * Memory accounting counts allocated arena blocks, the index, runs,
 * tails and views, with atomic counters updated wherever they are
 * allocated or freed (readers free views too).
 */
#include "engine/memtable.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/key.h"

/* Initial sizes: small, so that a memtable with many idle tables stays small. */
#define TAIL_MIN   16u
#define TABLES_MIN 16u

#define SLOT_PTR_BITS 48
#define SLOT_PTR_MASK ((UINT64_C(1) << SLOT_PTR_BITS) - 1)
/* In the old index while it grows: this key lives in the new index now. */
#define SLOT_MOVED UINT64_C(1)
/* Old index slots moved per put while the index grows. */
#define MIGRATE_STEP 8

struct mt_entry {
    struct mt_entry *older;  /* next older entry of this key, or NULL */
    uint64_t version;        /* commit version */
    uint64_t hash;           /* key_hash() of the key */
    uint32_t table;          /* table id */
    uint32_t seq;            /* put order in this memtable */
    uint32_t schema_version; /* schema version of the row */
    uint32_t key_len;        /* key bytes at data */
    uint32_t row_len;        /* row bytes after the key; 0: tombstone */
    uint8_t data[];          /* key, then row */
};

/* A sorted element: the key's first 8 bytes (big-endian, zero-padded) and the entry. */
struct mt_elem {
    uint64_t pfx;       /* order-preserving key prefix */
    struct mt_entry *e; /* the entry */
};

/* An immutable sorted run. */
struct mt_run {
    atomic_uint refs; /* views holding it */
    uint32_t level;   /* merges that made it; 0 for a sealed tail */
    size_t n;         /* elements */
    struct mt_elem e[];
};

/* The unsorted tail: the writer fills e[n] and then raises n. */
struct mt_tail {
    atomic_size_t n; /* elements published */
    size_t cap;      /* slots */
    struct mt_elem e[];
};

/* What readers of one table see: runs plus tail. Immutable but for the tail. */
struct mt_view {
    atomic_uint refs;     /* the table's own, plus one per iterator */
    uint32_t nruns;       /* runs, oldest first */
    struct mt_tail *tail; /* owned by this view */
    struct mt_run *runs[];
};

struct mt_table {
    uint32_t id;          /* table id */
    struct mt_view *view; /* current view; see mt->lock */
    _Atomic int64_t tmin; /* smallest time value put (INT64_MAX: none) */
    _Atomic int64_t tmax; /* largest (INT64_MIN: none) */
};

struct mt_index {
    size_t mask;              /* slots - 1 */
    _Atomic uint64_t slots[]; /* tag << 48 | entry address; 0: empty */
};

/* An arena block; entries follow the header (16 bytes, so 8-aligned). */
struct mt_chunk {
    struct mt_chunk *next; /* older blocks */
    size_t size;           /* bytes allocated, header included */
};

struct memtable {
    atomic_uint refs;         /* references */
    atomic_bool frozen;       /* set once, after the last change */
    struct memtable_opts opt; /* tuning, defaults applied */
    /*
     * Guards idx, old, every table's view pointer and the table map (tmap,
     * tmask, ntables) against readers: the writer holds it exclusively
     * while it replaces one of them, readers hold it shared while they
     * use idx or take a view reference. Not taken once frozen. Never
     * held while taking another lock.
     */
    pthread_rwlock_t lock;
    struct mt_index *idx;   /* the hash index */
    struct mt_index *old;   /* while idx grows: the index it replaces, or NULL */
    struct mt_table **tmap; /* open addressing by table id; tmask + 1 slots */
    size_t tmask;           /* slots - 1 */
    size_t ntables;         /* tables in tmap */

    /* Writer only. */
    struct mt_table *last;   /* the table of the previous put */
    struct mt_chunk *chunks; /* arena blocks, newest first */
    uint8_t *cur;            /* free space in the newest block */
    size_t left;             /* its bytes */
    uint32_t next_seq;       /* seq of the next entry */
    uint64_t last_version;   /* version of the previous put */
    size_t nkeys;            /* keys in idx and old */
    size_t migrate_pos;      /* next slot of old to move into idx */
    struct mt_elem *scratch; /* scratch_cap elements for sorting */
    size_t scratch_cap;      /* its size */

    /* Statistics, readable from any thread. */
    atomic_uint_fast64_t entries;     /* puts */
    atomic_uint_fast64_t keys;        /* distinct keys */
    atomic_uint_fast64_t tables;      /* distinct tables */
    atomic_uint_fast64_t runs;        /* runs in current views */
    atomic_uint_fast64_t min_version; /* first version put */
    atomic_uint_fast64_t max_version; /* last version put */
    atomic_size_t arena_bytes;        /* arena blocks */
    atomic_size_t index_bytes;        /* the index */
    atomic_size_t order_bytes;        /* runs, tails, views */
};

/* ---- small helpers ---- */

static void lock_shared(struct memtable *mt)
{
    if (pthread_rwlock_rdlock(&mt->lock))
        ST_BUG("memtable rwlock rdlock failed");
}

static void lock_excl(struct memtable *mt)
{
    if (pthread_rwlock_wrlock(&mt->lock))
        ST_BUG("memtable rwlock wrlock failed");
}

static void unlock(struct memtable *mt)
{
    pthread_rwlock_unlock(&mt->lock);
}

static bool is_frozen(const struct memtable *mt)
{
    return atomic_load_explicit(&mt->frozen, memory_order_acquire);
}

static void acct(atomic_size_t *c, size_t add, size_t sub)
{
    if (add)
        atomic_fetch_add_explicit(c, add, memory_order_relaxed);
    if (sub)
        atomic_fetch_sub_explicit(c, sub, memory_order_relaxed);
}

static uint64_t key_prefix(const uint8_t *k, size_t len)
{
    uint8_t b[8] = {0};
    uint64_t v = 0;

    memcpy(b, k, len < 8 ? len : 8);
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

static int entry_key_cmp(const struct mt_entry *a, const struct mt_entry *b)
{
    return key_compare(a->data, a->key_len, b->data, b->key_len);
}

/* Run order: key ascending, then seq descending (newest first). */
static inline bool elem_lt(const struct mt_elem *a, const struct mt_elem *b)
{
    int c;

    if (a->pfx != b->pfx)
        return a->pfx < b->pfx;
    c = entry_key_cmp(a->e, b->e);
    if (c)
        return c < 0;
    return a->e->seq > b->e->seq;
}

/* Element key versus a key k (len bytes) whose prefix is pfx. */
static inline int elem_key_cmp(const struct mt_elem *a, uint64_t pfx, const void *k, size_t len)
{
    if (a->pfx != pfx)
        return a->pfx < pfx ? -1 : 1;
    return key_compare(a->e->data, a->e->key_len, k, len);
}

static inline bool same_key(const struct mt_elem *a, uint64_t pfx, const struct mt_entry *b)
{
    return a->pfx == pfx && entry_key_cmp(a->e, b) == 0;
}

/* ---- sorting and merging ---- */

static void insertion_sort(struct mt_elem *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct mt_elem x = a[i];
        size_t j = i;

        while (j > 0 && elem_lt(&x, &a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

static void merge2(const struct mt_elem *a, size_t na, const struct mt_elem *b, size_t nb,
                   struct mt_elem *out)
{
    size_t i = 0;
    size_t j = 0;
    size_t o = 0;

    if (!na || !nb || elem_lt(&a[na - 1], &b[0])) {
        memcpy(out, a, na * sizeof(*a));
        memcpy(out + na, b, nb * sizeof(*b));
        return;
    }
    while (i < na && j < nb)
        out[o++] = elem_lt(&b[j], &a[i]) ? b[j++] : a[i++];
    memcpy(out + o, a + i, (na - i) * sizeof(*a));
    o += na - i;
    memcpy(out + o, b + j, (nb - j) * sizeof(*b));
}

/* Sorts a (n elements) using tmp (n elements): bottom-up merge sort. */
static void elem_sort(struct mt_elem *a, size_t n, struct mt_elem *tmp)
{
    const size_t block = 16;
    struct mt_elem *src = a;
    struct mt_elem *dst = tmp;
    size_t i;

    for (i = 1; i < n && !elem_lt(&a[i], &a[i - 1]); i++)
        ;
    if (i >= n)
        return;
    for (i = 0; i < n; i += block)
        insertion_sort(a + i, ST_MIN(block, n - i));
    for (size_t w = block; w < n; w *= 2) {
        struct mt_elem *t;

        for (i = 0; i < n; i += 2 * w) {
            size_t na = ST_MIN(w, n - i);
            size_t nb = i + na < n ? ST_MIN(w, n - i - na) : 0;

            merge2(src + i, na, src + i + na, nb, dst + i);
        }
        t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof(*a));
}

struct cursor {
    const struct mt_elem *p;   /* next element */
    const struct mt_elem *end; /* one past the last */
};

/* A binary min-heap of cursor indexes, ordered by each cursor's next element. */
struct heap {
    struct cursor *cur; /* the cursors */
    uint32_t *h;        /* heap of indexes into cur */
    uint32_t n;         /* cursors not exhausted */
};

static void sift_down(struct heap *hp, uint32_t i)
{
    uint32_t x = hp->h[i];

    for (;;) {
        uint32_t c = 2 * i + 1;

        if (c >= hp->n)
            break;
        if (c + 1 < hp->n && elem_lt(hp->cur[hp->h[c + 1]].p, hp->cur[hp->h[c]].p))
            c++;
        if (!elem_lt(hp->cur[hp->h[c]].p, hp->cur[x].p))
            break;
        hp->h[i] = hp->h[c];
        i = c;
    }
    hp->h[i] = x;
}

/* Builds the heap over the k cursors in cur that are not empty. */
static void heap_init(struct heap *hp, struct cursor *cur, uint32_t *h, uint32_t k)
{
    hp->cur = cur;
    hp->h = h;
    hp->n = 0;
    for (uint32_t i = 0; i < k; i++)
        if (cur[i].p < cur[i].end)
            hp->h[hp->n++] = i;
    for (uint32_t i = hp->n / 2; i-- > 0;)
        sift_down(hp, i);
}

/* The smallest next element, consumed; NULL when all cursors are done. */
static const struct mt_elem *heap_pop(struct heap *hp)
{
    struct cursor *c;
    const struct mt_elem *el;

    if (!hp->n)
        return NULL;
    c = &hp->cur[hp->h[0]];
    el = c->p++;
    if (c->p == c->end) {
        hp->h[0] = hp->h[--hp->n];
        if (!hp->n)
            return el;
    }
    sift_down(hp, 0);
    return el;
}

/*
 * Merges k cursors (in creation order) into out, which has room for all
 * their elements. Inputs that follow each other without overlap are
 * concatenated.
 */
static void merge_cursors(struct cursor *cur, uint32_t k, struct mt_elem *out)
{
    const struct mt_elem *prev_last = NULL;
    bool ordered = true;
    uint32_t hbuf[64];
    uint32_t *h = hbuf;
    struct heap hp;
    const struct mt_elem *el;

    for (uint32_t i = 0; i < k && ordered; i++) {
        if (cur[i].p == cur[i].end)
            continue;
        if (prev_last && !elem_lt(prev_last, cur[i].p))
            ordered = false;
        prev_last = cur[i].end - 1;
    }
    if (ordered) {
        for (uint32_t i = 0; i < k; i++) {
            size_t n = (size_t)(cur[i].end - cur[i].p);

            memcpy(out, cur[i].p, n * sizeof(*out));
            out += n;
        }
        return;
    }
    if (k > ST_ARRAY_SIZE(hbuf))
        h = calloc_array(k, sizeof(*h));
    heap_init(&hp, cur, h, k);
    while ((el = heap_pop(&hp)))
        *out++ = *el;
    if (h != hbuf)
        free(h);
}

/* ---- runs, tails, views ---- */

static struct mt_run *run_new(struct memtable *mt, size_t n, uint32_t level)
{
    struct mt_run *r = xmalloc(sizeof(*r) + n * sizeof(struct mt_elem));

    atomic_init(&r->refs, 0);
    r->level = level;
    r->n = n;
    acct(&mt->order_bytes, sizeof(*r) + n * sizeof(struct mt_elem), 0);
    return r;
}

static void run_unref(struct memtable *mt, struct mt_run *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    acct(&mt->order_bytes, 0, sizeof(*r) + r->n * sizeof(struct mt_elem));
    free(r);
}

static struct mt_tail *tail_new(struct memtable *mt, size_t cap)
{
    struct mt_tail *t = xmalloc(sizeof(*t) + cap * sizeof(struct mt_elem));

    atomic_init(&t->n, 0);
    t->cap = cap;
    acct(&mt->order_bytes, sizeof(*t) + cap * sizeof(struct mt_elem), 0);
    return t;
}

static void tail_free(struct memtable *mt, struct mt_tail *t)
{
    acct(&mt->order_bytes, 0, sizeof(*t) + t->cap * sizeof(struct mt_elem));
    free(t);
}

/* A view holding one reference to each of runs (nruns) and owning tail. */
static struct mt_view *view_new(struct memtable *mt, struct mt_run *const *runs, uint32_t nruns,
                                struct mt_tail *tail)
{
    struct mt_view *v = xmalloc(sizeof(*v) + nruns * sizeof(v->runs[0]));

    atomic_init(&v->refs, 1);
    v->nruns = nruns;
    v->tail = tail;
    for (uint32_t i = 0; i < nruns; i++) {
        v->runs[i] = runs[i];
        atomic_fetch_add_explicit(&runs[i]->refs, 1, memory_order_relaxed);
    }
    acct(&mt->order_bytes, sizeof(*v) + nruns * sizeof(v->runs[0]), 0);
    return v;
}

static void view_ref(struct mt_view *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

static void view_unref(struct memtable *mt, struct mt_view *v)
{
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < v->nruns; i++)
        run_unref(mt, v->runs[i]);
    tail_free(mt, v->tail);
    acct(&mt->order_bytes, 0, sizeof(*v) + v->nruns * sizeof(v->runs[0]));
    free(v);
}

/* Writer: makes v the current view of t. */
static void table_publish(struct memtable *mt, struct mt_table *t, struct mt_view *v)
{
    struct mt_view *old = t->view;

    atomic_fetch_add_explicit(&mt->runs, v->nruns, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mt->runs, old->nruns, memory_order_relaxed);
    lock_excl(mt);
    t->view = v;
    unlock(mt);
    view_unref(mt, old);
}

/* ---- the table map ---- */

static size_t table_slot(uint32_t id, size_t mask)
{
    return (size_t)(((uint64_t)id * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & mask;
}

/* The table with this id, or NULL. Readers hold mt->lock shared (or frozen). */
static struct mt_table *table_find(const struct memtable *mt, uint32_t id)
{
    for (size_t i = table_slot(id, mt->tmask);; i = (i + 1) & mt->tmask) {
        struct mt_table *t = mt->tmap[i];

        if (!t || t->id == id)
            return t;
    }
}

static void tmap_insert(struct mt_table **map, size_t mask, struct mt_table *t)
{
    size_t i = table_slot(t->id, mask);

    while (map[i])
        i = (i + 1) & mask;
    map[i] = t;
}

/* Writer: the table with this id, created when missing. */
static struct mt_table *table_get(struct memtable *mt, uint32_t id)
{
    struct mt_table *t;
    struct mt_table **map = NULL;
    size_t mask = mt->tmask;

    if (mt->last && mt->last->id == id)
        return mt->last;
    t = table_find(mt, id);
    if (!t) {
        t = xcalloc(1, sizeof(*t));
        t->id = id;
        atomic_init(&t->tmin, INT64_MAX);
        atomic_init(&t->tmax, INT64_MIN);
        t->view = view_new(mt, NULL, 0, tail_new(mt, ST_MIN(TAIL_MIN, mt->opt.run_size)));
        if ((mt->ntables + 1) * 2 > mt->tmask + 1) {
            mask = mt->tmask * 2 + 1;
            map = calloc_array(mask + 1, sizeof(*map));
            for (size_t i = 0; i <= mt->tmask; i++)
                if (mt->tmap[i])
                    tmap_insert(map, mask, mt->tmap[i]);
        }
        lock_excl(mt);
        if (map) {
            struct mt_table **old = mt->tmap;

            mt->tmap = map;
            mt->tmask = mask;
            map = old;
        }
        tmap_insert(mt->tmap, mt->tmask, t);
        mt->ntables++;
        unlock(mt);
        free(map);
        acct(&mt->order_bytes, sizeof(*t), 0);
        atomic_fetch_add_explicit(&mt->tables, 1, memory_order_relaxed);
    }
    mt->last = t;
    return t;
}

/* ---- the hash index ---- */

static uint64_t slot_hash(uint64_t hash, uint32_t table)
{
    return hash ^ ((uint64_t)table * UINT64_C(0x9e3779b97f4a7c15));
}

static struct mt_index *index_new(struct memtable *mt, size_t slots)
{
    /*
     * Zeroed memory is a valid empty slot for a lock-free 64-bit atomic;
     * not touching the slots here leaves the page faults of a large table
     * to the puts that use it instead of one long pause.
     */
    struct mt_index *ix = xcalloc(1, sizeof(*ix) + slots * sizeof(ix->slots[0]));

    ix->mask = slots - 1;
    acct(&mt->index_bytes, sizeof(*ix) + slots * sizeof(ix->slots[0]), 0);
    return ix;
}

static void index_free(struct memtable *mt, struct mt_index *ix)
{
    acct(&mt->index_bytes, 0, sizeof(*ix) + (ix->mask + 1) * sizeof(ix->slots[0]));
    free(ix);
}

static struct mt_entry *slot_entry(uint64_t s)
{
    return (struct mt_entry *)(uintptr_t)(s & SLOT_PTR_MASK & ~SLOT_MOVED);
}

/*
 * The slot of (table, key) in ix: *head gets its newest entry, or NULL
 * and the slot is the empty one where it would go.
 */
static _Atomic uint64_t *index_find(struct mt_index *ix, uint32_t table, const void *key,
                                    size_t len, uint64_t hash, struct mt_entry **head)
{
    uint64_t h = slot_hash(hash, table);
    uint64_t tag = h >> SLOT_PTR_BITS;

    for (size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        uint64_t s = atomic_load_explicit(&ix->slots[i], memory_order_acquire);
        struct mt_entry *e;

        if (!s) {
            *head = NULL;
            return &ix->slots[i];
        }
        if ((s >> SLOT_PTR_BITS) != tag)
            continue;
        e = slot_entry(s);
        if (e->hash == hash && e->table == table && e->key_len == len &&
            !memcmp(e->data, key, len)) {
            *head = e;
            return &ix->slots[i];
        }
    }
}

/* Readers (mt->lock shared, or frozen): the newest entry of (table, key), or NULL. */
static struct mt_entry *index_lookup(const struct memtable *mt, uint32_t table, const void *key,
                                     size_t len, uint64_t hash)
{
    struct mt_entry *e;

    index_find(mt->idx, table, key, len, hash, &e);
    if (!e && mt->old)
        index_find(mt->old, table, key, len, hash, &e);
    return e;
}

static uint64_t slot_word(const struct mt_entry *e)
{
    uint64_t p = (uint64_t)(uintptr_t)e;

    st_assert(!(p >> SLOT_PTR_BITS) && !(p & SLOT_MOVED));
    return (slot_hash(e->hash, e->table) >> SLOT_PTR_BITS) << SLOT_PTR_BITS | p;
}

/* Writer: moves up to steps slots of mt->old into mt->idx; frees old when done. */
static void index_migrate(struct memtable *mt, size_t steps)
{
    struct mt_index *old = mt->old;
    struct mt_index *ix = mt->idx;
    size_t end = old->mask + 1;

    if (steps < end - mt->migrate_pos)
        end = mt->migrate_pos + steps;
    for (size_t i = mt->migrate_pos; i < end; i++) {
        uint64_t s = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        const struct mt_entry *e;
        size_t j;

        if (!s || (s & SLOT_MOVED))
            continue;
        e = slot_entry(s);
        for (j = slot_hash(e->hash, e->table) & ix->mask;
             atomic_load_explicit(&ix->slots[j], memory_order_relaxed); j = (j + 1) & ix->mask)
            ;
        atomic_store_explicit(&ix->slots[j], s, memory_order_release);
    }
    mt->migrate_pos = end;
    if (end <= old->mask)
        return;
    lock_excl(mt);
    mt->old = NULL;
    unlock(mt);
    index_free(mt, old);
}

/* Writer: starts doubling the index; index_migrate() moves the keys over. */
static void index_grow(struct memtable *mt)
{
    struct mt_index *ix;

    if (mt->old)
        index_migrate(mt, SIZE_MAX);
    ix = index_new(mt, (mt->idx->mask + 1) * 2);
    lock_excl(mt);
    mt->old = mt->idx;
    mt->idx = ix;
    unlock(mt);
    mt->migrate_pos = 0;
}

/* ---- the arena ---- */

static void *arena_alloc(struct memtable *mt, size_t n)
{
    struct mt_chunk *c;
    size_t size;
    void *p;

    n = (n + 7) & ~(size_t)7;
    if (n <= mt->left) {
        p = mt->cur;
        mt->cur += n;
        mt->left -= n;
        return p;
    }
    if (n > mt->opt.arena_chunk / 4) {
        /* A large entry gets a block of its own; the current one stays. */
        size = sizeof(*c) + n;
        c = xmalloc(size);
        c->size = size;
        c->next = mt->chunks->next;
        mt->chunks->next = c;
        acct(&mt->arena_bytes, size, 0);
        return c + 1;
    }
    size = mt->opt.arena_chunk;
    c = xmalloc(size);
    c->size = size;
    c->next = mt->chunks;
    mt->chunks = c;
    mt->cur = (uint8_t *)(c + 1) + n;
    mt->left = size - sizeof(*c) - n;
    acct(&mt->arena_bytes, size, 0);
    return c + 1;
}

/* ---- life cycle ---- */

struct memtable *memtable_new(const struct memtable_opts *opts)
{
    struct memtable *mt = xcalloc(1, sizeof(*mt));
    pthread_rwlockattr_t attr;
    size_t slots;

    if (opts)
        mt->opt = *opts;
    if (!mt->opt.run_size)
        mt->opt.run_size = MEMTABLE_DEFAULT_RUN_SIZE;
    if (mt->opt.fanin < 2)
        mt->opt.fanin = MEMTABLE_DEFAULT_FANIN;
    if (!mt->opt.max_run)
        mt->opt.max_run = MEMTABLE_DEFAULT_MAX_RUN;
    if (mt->opt.arena_chunk < 4096)
        mt->opt.arena_chunk = MEMTABLE_DEFAULT_ARENA_CHUNK;

    atomic_init(&mt->refs, 1);
    atomic_init(&mt->frozen, false);
    pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
    /* So a stream of readers cannot starve the writer (nobody nests the lock). */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    if (pthread_rwlock_init(&mt->lock, &attr))
        ST_BUG("cannot initialise the memtable rwlock");
    pthread_rwlockattr_destroy(&attr);
    atomic_init(&mt->entries, 0);
    atomic_init(&mt->keys, 0);
    atomic_init(&mt->tables, 0);
    atomic_init(&mt->runs, 0);
    atomic_init(&mt->min_version, 0);
    atomic_init(&mt->max_version, 0);
    atomic_init(&mt->arena_bytes, 0);
    atomic_init(&mt->index_bytes, 0);
    atomic_init(&mt->order_bytes, sizeof(*mt));

    if (!mt->opt.expect_keys)
        mt->opt.expect_keys = MEMTABLE_DEFAULT_EXPECT_KEYS;
    slots = 8;
    while (slots / 4 * 3 < mt->opt.expect_keys)
        slots *= 2;
    mt->idx = index_new(mt, slots);
    mt->tmask = TABLES_MIN - 1;
    mt->tmap = calloc_array(TABLES_MIN, sizeof(*mt->tmap));
    acct(&mt->order_bytes, TABLES_MIN * sizeof(*mt->tmap), 0);
    /* An empty first block, so arena_alloc() always has a list head. */
    mt->chunks = xcalloc(1, sizeof(*mt->chunks));
    mt->chunks->size = sizeof(*mt->chunks);
    return mt;
}

void memtable_ref(struct memtable *mt)
{
    atomic_fetch_add_explicit(&mt->refs, 1, memory_order_relaxed);
}

static void memtable_free(struct memtable *mt)
{
    struct mt_chunk *c;

    for (size_t i = 0; i <= mt->tmask; i++) {
        struct mt_table *t = mt->tmap[i];

        if (!t)
            continue;
        view_unref(mt, t->view);
        free(t);
    }
    free(mt->tmap);
    free(mt->idx);
    free(mt->old);
    while ((c = mt->chunks)) {
        mt->chunks = c->next;
        free(c);
    }
    free(mt->scratch);
    pthread_rwlock_destroy(&mt->lock);
    free(mt);
}

void memtable_unref(struct memtable *mt)
{
    if (!mt)
        return;
    if (atomic_fetch_sub_explicit(&mt->refs, 1, memory_order_acq_rel) == 1)
        memtable_free(mt);
}

/* ---- writing ---- */

/* Writer: the tail of t is full and run_size long; sort it into a run and merge. */
static void seal_tail(struct memtable *mt, struct mt_table *t)
{
    struct mt_view *v = t->view;
    struct mt_tail *tl = v->tail;
    size_t n = atomic_load_explicit(&tl->n, memory_order_relaxed);
    uint32_t nruns = v->nruns;
    struct mt_run **runs = calloc_array(nruns + 1, sizeof(*runs));
    struct mt_run *r = run_new(mt, n, 0);
    struct mt_view *nv;

    if (mt->scratch_cap < n) {
        free(mt->scratch);
        mt->scratch = calloc_array(n, sizeof(*mt->scratch));
        mt->scratch_cap = n;
    }
    memcpy(r->e, tl->e, n * sizeof(r->e[0]));
    elem_sort(r->e, n, mt->scratch);
    memcpy(runs, v->runs, nruns * sizeof(*runs));
    runs[nruns++] = r;

    /* Merge the newest fanin runs while they share a level. */
    while (nruns >= mt->opt.fanin) {
        uint32_t k = mt->opt.fanin;
        uint32_t first = nruns - k;
        uint32_t level = runs[nruns - 1]->level;
        struct cursor cur[64];
        struct cursor *cp = k <= ST_ARRAY_SIZE(cur) ? cur : calloc_array(k, sizeof(*cp));
        size_t total = 0;
        struct mt_run *m;
        bool same = true;

        for (uint32_t i = first; i < nruns; i++) {
            same = same && runs[i]->level == level;
            total += runs[i]->n;
        }
        if (!same || total > mt->opt.max_run) {
            if (cp != cur)
                free(cp);
            break;
        }
        for (uint32_t i = 0; i < k; i++) {
            cp[i].p = runs[first + i]->e;
            cp[i].end = runs[first + i]->e + runs[first + i]->n;
        }
        m = run_new(mt, total, level + 1);
        merge_cursors(cp, k, m->e);
        if (cp != cur)
            free(cp);
        /* Runs made here and not yet in a view have no references: free them. */
        for (uint32_t i = first; i < nruns; i++) {
            if (!atomic_load_explicit(&runs[i]->refs, memory_order_relaxed)) {
                atomic_store_explicit(&runs[i]->refs, 1, memory_order_relaxed);
                run_unref(mt, runs[i]);
            }
        }
        runs[first] = m;
        nruns = first + 1;
    }
    nv = view_new(mt, runs, nruns, tail_new(mt, mt->opt.run_size));
    free(runs);
    table_publish(mt, t, nv);
}

/* Writer: the tail of t is full but short of run_size; double it. */
static void grow_tail(struct memtable *mt, struct mt_table *t)
{
    struct mt_view *v = t->view;
    struct mt_tail *tl = v->tail;
    size_t n = atomic_load_explicit(&tl->n, memory_order_relaxed);
    struct mt_tail *nt = tail_new(mt, ST_MIN(tl->cap * 2, (size_t)mt->opt.run_size));

    memcpy(nt->e, tl->e, n * sizeof(nt->e[0]));
    atomic_store_explicit(&nt->n, n, memory_order_relaxed);
    table_publish(mt, t, view_new(mt, v->runs, v->nruns, nt));
}

static void tail_push(struct memtable *mt, struct mt_table *t, struct mt_entry *e)
{
    struct mt_tail *tl = t->view->tail;
    size_t n = atomic_load_explicit(&tl->n, memory_order_relaxed);

    if (n == tl->cap) {
        if (tl->cap >= mt->opt.run_size)
            seal_tail(mt, t);
        else
            grow_tail(mt, t);
        tl = t->view->tail;
        n = atomic_load_explicit(&tl->n, memory_order_relaxed);
    }
    tl->e[n].pfx = key_prefix(e->data, e->key_len);
    tl->e[n].e = e;
    atomic_store_explicit(&tl->n, n + 1, memory_order_release);
}

void memtable_put(struct memtable *mt, uint64_t version, const struct memtable_write *w)
{
    size_t size = offsetof(struct mt_entry, data) + (size_t)w->key_len + w->row_len;
    struct mt_entry *e;
    struct mt_entry *head;
    _Atomic uint64_t *slot;

    st_assert(!atomic_load_explicit(&mt->frozen, memory_order_relaxed));
    st_assert(version >= mt->last_version);
    st_assert(w->key_len > 0);
    st_assert((w->row == NULL) == (w->row_len == 0));
    st_assert(mt->next_seq != UINT32_MAX);

    e = arena_alloc(mt, size);
    e->version = version;
    e->hash = w->hash;
    e->table = w->table;
    e->seq = mt->next_seq++;
    e->schema_version = w->schema_version;
    e->key_len = w->key_len;
    e->row_len = w->row_len;
    memcpy(e->data, w->key, w->key_len);
    if (w->row_len)
        memcpy(e->data + w->key_len, w->row, w->row_len);

    slot = index_find(mt->idx, w->table, w->key, w->key_len, w->hash, &head);
    if (!head && mt->old) {
        /* Not moved yet: move it now, and have the migration skip it. */
        _Atomic uint64_t *os = index_find(mt->old, w->table, w->key, w->key_len, w->hash, &head);

        if (head)
            atomic_fetch_or_explicit(os, SLOT_MOVED, memory_order_relaxed);
    }
    e->older = head;
    atomic_store_explicit(slot, slot_word(e), memory_order_release);
    if (!head) {
        mt->nkeys++;
        atomic_store_explicit(&mt->keys, mt->nkeys, memory_order_relaxed);
    }
    if (mt->old)
        index_migrate(mt, MIGRATE_STEP);
    else if (mt->nkeys * 4 > (mt->idx->mask + 1) * 3)
        index_grow(mt);

    {
        struct mt_table *t = table_get(mt, w->table);

        tail_push(mt, t, e);
        if (w->has_time) {
            /* One writer: plain load-compare-store; readers load relaxed. */
            if (w->time < atomic_load_explicit(&t->tmin, memory_order_relaxed))
                atomic_store_explicit(&t->tmin, w->time, memory_order_relaxed);
            if (w->time > atomic_load_explicit(&t->tmax, memory_order_relaxed))
                atomic_store_explicit(&t->tmax, w->time, memory_order_relaxed);
        }
    }

    if (!atomic_load_explicit(&mt->entries, memory_order_relaxed))
        atomic_store_explicit(&mt->min_version, version, memory_order_relaxed);
    mt->last_version = version;
    atomic_store_explicit(&mt->max_version, version, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->entries, 1, memory_order_relaxed);
}

/* Writer: one run for the whole table. */
static void freeze_table(struct memtable *mt, struct mt_table *t)
{
    struct mt_view *v = t->view;
    size_t tn = atomic_load_explicit(&v->tail->n, memory_order_relaxed);
    struct mt_elem *sorted = NULL;
    struct cursor *cur;
    size_t total = tn;
    uint32_t k = 0;
    uint32_t level = 0;
    struct mt_run *r;

    if (v->nruns == 1 && tn == 0 && v->tail->cap == 0)
        return;
    cur = calloc_array(v->nruns + 1, sizeof(*cur));
    for (uint32_t i = 0; i < v->nruns; i++) {
        cur[k].p = v->runs[i]->e;
        cur[k].end = v->runs[i]->e + v->runs[i]->n;
        total += v->runs[i]->n;
        level = ST_MAX(level, v->runs[i]->level + 1);
        k++;
    }
    if (tn) {
        struct mt_elem *tmp = calloc_array(tn, sizeof(*tmp));

        sorted = calloc_array(tn, sizeof(*sorted));
        memcpy(sorted, v->tail->e, tn * sizeof(*sorted));
        elem_sort(sorted, tn, tmp);
        free(tmp);
        cur[k].p = sorted;
        cur[k].end = sorted + tn;
        k++;
    }
    r = run_new(mt, total, level);
    merge_cursors(cur, k, r->e);
    free(cur);
    free(sorted);
    table_publish(mt, t, view_new(mt, &r, 1, tail_new(mt, 0)));
}

void memtable_freeze(struct memtable *mt)
{
    if (is_frozen(mt))
        return;
    if (mt->old)
        index_migrate(mt, SIZE_MAX);
    for (size_t i = 0; i <= mt->tmask; i++)
        if (mt->tmap[i])
            freeze_table(mt, mt->tmap[i]);
    free(mt->scratch);
    mt->scratch = NULL;
    mt->scratch_cap = 0;
    mt->last = NULL;
    atomic_store_explicit(&mt->frozen, true, memory_order_release);
}

bool memtable_is_frozen(const struct memtable *mt)
{
    return is_frozen(mt);
}

/* ---- reading ---- */

static void fill_rec(const struct mt_entry *e, struct memtable_rec *out)
{
    out->table = e->table;
    out->key = e->data;
    out->key_len = e->key_len;
    out->version = e->version;
    out->schema_version = e->schema_version;
    out->tombstone = e->row_len == 0;
    out->row = e->row_len ? e->data + e->key_len : NULL;
    out->row_len = e->row_len;
}

bool memtable_get(struct memtable *mt, uint32_t table, const void *key, size_t len, uint64_t hash,
                  uint64_t snap, struct memtable_rec *out)
{
    bool frozen = is_frozen(mt);
    struct mt_entry *e;

    if (!frozen)
        lock_shared(mt);
    e = index_lookup(mt, table, key, len, hash);
    while (e && e->version > snap)
        e = e->older;
    if (!frozen)
        unlock(mt);
    if (!e)
        return false;
    fill_rec(e, out);
    return true;
}

size_t memtable_bytes(const struct memtable *mt)
{
    return atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed) +
           atomic_load_explicit(&mt->index_bytes, memory_order_relaxed) +
           atomic_load_explicit(&mt->order_bytes, memory_order_relaxed);
}

void memtable_get_stats(const struct memtable *mt, struct memtable_stats *out)
{
    out->entries = atomic_load_explicit(&mt->entries, memory_order_relaxed);
    out->keys = atomic_load_explicit(&mt->keys, memory_order_relaxed);
    out->tables = atomic_load_explicit(&mt->tables, memory_order_relaxed);
    out->runs = atomic_load_explicit(&mt->runs, memory_order_relaxed);
    out->min_version = atomic_load_explicit(&mt->min_version, memory_order_relaxed);
    out->max_version = atomic_load_explicit(&mt->max_version, memory_order_relaxed);
    out->arena_bytes = atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed);
    out->index_bytes = atomic_load_explicit(&mt->index_bytes, memory_order_relaxed);
    out->order_bytes = atomic_load_explicit(&mt->order_bytes, memory_order_relaxed);
    out->bytes = out->arena_bytes + out->index_bytes + out->order_bytes;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

uint32_t *memtable_tables(struct memtable *mt, size_t *n)
{
    bool frozen = is_frozen(mt);
    uint32_t *ids = NULL;
    size_t k = 0;

    if (!frozen)
        lock_shared(mt);
    if (mt->ntables) {
        ids = calloc_array(mt->ntables, sizeof(*ids));
        for (size_t i = 0; i <= mt->tmask; i++)
            if (mt->tmap[i])
                ids[k++] = mt->tmap[i]->id;
    }
    if (!frozen)
        unlock(mt);
    if (k)
        qsort(ids, k, sizeof(*ids), cmp_u32);
    *n = k;
    return ids;
}

/* ---- iterators ---- */

struct memtable_iter {
    struct memtable *mt;         /* referenced */
    struct mt_view *view;        /* referenced, or NULL: empty */
    uint64_t snap;               /* snapshot version */
    unsigned flags;              /* enum memtable_iter_flags */
    uint8_t *hi;                 /* copy of the upper bound, or NULL */
    size_t hi_len;               /* its length */
    uint64_t hi_pfx;             /* its prefix */
    bool hi_incl;                /* hi itself included */
    struct mt_elem *tail;        /* sorted copy of the tail's elements in range */
    struct cursor *cur;          /* one per run, then the tail */
    uint32_t *h;                 /* heap storage */
    struct heap heap;            /* the merge */
    const struct mt_entry *last; /* entry of the key last resolved, or NULL */
    uint64_t last_pfx;           /* its prefix */
};

/* First element of e[0..n) not before the lower bound. */
static size_t lower_bound(const struct mt_elem *e, size_t n, uint64_t pfx, const void *lo,
                          size_t lo_len, bool excl)
{
    size_t a = 0;
    size_t b = n;

    while (a < b) {
        size_t m = a + (b - a) / 2;
        int c = elem_key_cmp(&e[m], pfx, lo, lo_len);

        if (c < 0 || (excl && c == 0))
            a = m + 1;
        else
            b = m;
    }
    return a;
}

static bool past_hi(const struct memtable_iter *it, const struct mt_elem *el)
{
    int c;

    if (!it->hi)
        return false;
    c = elem_key_cmp(el, it->hi_pfx, it->hi, it->hi_len);
    return it->hi_incl ? c > 0 : c >= 0;
}

struct memtable_iter *memtable_iter_new(struct memtable *mt, uint32_t table,
                                        const struct memtable_range *range, uint64_t snap,
                                        unsigned flags)
{
    struct memtable_iter *it = xcalloc(1, sizeof(*it));
    bool frozen = is_frozen(mt);
    struct mt_table *t;
    struct mt_view *v = NULL;
    const void *lo = range ? range->lo : NULL;
    size_t lo_len = lo ? range->lo_len : 0;
    uint64_t lo_pfx = lo ? key_prefix(lo, lo_len) : 0;
    size_t tn;
    size_t k = 0;

    memtable_ref(mt);
    it->mt = mt;
    it->snap = snap;
    it->flags = flags;
    if (range && range->hi) {
        it->hi = xmalloc(range->hi_len + 1);
        memcpy(it->hi, range->hi, range->hi_len);
        it->hi_len = range->hi_len;
        it->hi_pfx = key_prefix(it->hi, it->hi_len);
        it->hi_incl = range->hi_incl;
    }

    if (!frozen)
        lock_shared(mt);
    t = table_find(mt, table);
    if (t) {
        v = t->view;
        view_ref(v);
    }
    if (!frozen)
        unlock(mt);
    if (!v)
        return it;
    it->view = v;

    /* A sorted copy of the tail, keeping only what is in range. */
    tn = atomic_load_explicit(&v->tail->n, memory_order_acquire);
    if (tn) {
        struct mt_elem *tmp;

        it->tail = calloc_array(tn, sizeof(*it->tail));
        for (size_t i = 0; i < tn; i++) {
            const struct mt_elem *el = &v->tail->e[i];
            int c = lo ? elem_key_cmp(el, lo_pfx, lo, lo_len) : 1;

            if (c < 0 || (c == 0 && range->lo_excl) || past_hi(it, el))
                continue;
            it->tail[k++] = *el;
        }
        tmp = calloc_array(k ? k : 1, sizeof(*tmp));
        elem_sort(it->tail, k, tmp);
        free(tmp);
    }

    it->cur = calloc_array(v->nruns + 1, sizeof(*it->cur));
    it->h = calloc_array(v->nruns + 1, sizeof(*it->h));
    for (uint32_t i = 0; i < v->nruns; i++) {
        const struct mt_run *r = v->runs[i];
        size_t s = lo ? lower_bound(r->e, r->n, lo_pfx, lo, lo_len, range->lo_excl) : 0;

        it->cur[i].p = r->e + s;
        it->cur[i].end = r->e + r->n;
    }
    it->cur[v->nruns].p = it->tail;
    it->cur[v->nruns].end = it->tail ? it->tail + k : NULL;
    heap_init(&it->heap, it->cur, it->h, v->nruns + 1);
    return it;
}

bool memtable_iter_next(struct memtable_iter *it, struct memtable_rec *out)
{
    const struct mt_elem *el;

    if (!it->view)
        return false;
    while ((el = heap_pop(&it->heap))) {
        const struct mt_entry *e = el->e;

        if (past_hi(it, el)) {
            it->heap.n = 0;
            return false;
        }
        if (it->last && same_key(el, it->last_pfx, it->last)) {
            if (!(it->flags & MEMTABLE_ITER_ALL_VERSIONS))
                continue;
            if (e->version == it->last->version)
                continue; /* shadowed by a later write at the same version */
        }
        if (e->version > it->snap)
            continue;
        it->last = e;
        it->last_pfx = el->pfx;
        if (!e->row_len && !(it->flags & MEMTABLE_ITER_TOMBSTONES))
            continue;
        fill_rec(e, out);
        return true;
    }
    return false;
}

bool memtable_time_range(struct memtable *mt, uint32_t table, int64_t *lo, int64_t *hi)
{
    bool frozen = is_frozen(mt);
    struct mt_table *t;

    *lo = INT64_MAX;
    *hi = INT64_MIN;
    if (!frozen)
        lock_shared(mt);
    t = table_find(mt, table);
    if (t) {
        *lo = atomic_load_explicit(&t->tmin, memory_order_relaxed);
        *hi = atomic_load_explicit(&t->tmax, memory_order_relaxed);
    }
    if (!frozen)
        unlock(mt);
    return *lo <= *hi;
}

void memtable_iter_free(struct memtable_iter *it)
{
    if (!it)
        return;
    if (it->view)
        view_unref(it->mt, it->view);
    memtable_unref(it->mt);
    free(it->hi);
    free(it->tail);
    free(it->cur);
    free(it->h);
    free(it);
}

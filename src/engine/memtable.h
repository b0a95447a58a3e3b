/*
 * The memtable: recent writes of every table, in memory, versioned.
 *
 * One memtable holds the writes of all tables (the engine keeps one
 * active memtable plus the frozen ones waiting for flush), keyed by
 * (table id, encoded primary key): one freeze and flush cycle, one
 * number to compare with storage.memtable_size, and a transaction that
 * spans tables lands in one structure. Inside, ordered structures are per
 * table, so a scan never steps over other tables' entries.
 *
 * Each entry is (table, key, commit version, schema version, row or
 * tombstone), where key is encoded by key.h and row is in the format of
 * schema.h. Entries are never changed or removed: a newer write of a key
 * adds an entry, and reads pick the newest one visible at their snapshot.
 *
 * Same key twice at the same version (one request holding a key twice):
 * the later memtable_put() wins. Both entries are kept, the later one
 * shadows the earlier for every read (gets, scans, and ALL_VERSIONS
 * iteration, which skips shadowed entries), and both count in
 * memtable_bytes().
 *
 * Versions: puts must come in non-decreasing version order (commit
 * versions are assigned in the order commits are applied; recovery
 * replays in log order). A write must be put before its version becomes
 * visible (mvcc.h), so a reader never misses a write its snapshot covers;
 * readers rely on it too (a write put after a reader took its snapshot
 * has a newer version, so a reader racing with it may miss it).
 *
 * Threads: one writer (the thread that puts; the loop thread for the
 * active memtable) and any number of concurrent readers on any thread
 * (gets and iterators). Once frozen, a memtable is read-only and readers
 * take no lock at all. Writers never wait for readers except for a few
 * pointer swaps under a short lock. Lifetime is reference counted:
 * memtable_new() returns one reference; memtable_ref()/memtable_unref().
 *
 * Bytes returned by reads (struct memtable_rec) point into the memtable:
 * they stay valid while the caller holds a reference.
 */
#ifndef ST_ENGINE_MEMTABLE_H
#define ST_ENGINE_MEMTABLE_H

#include "util/common.h"
#include "util/status.h"

struct memtable;
struct memtable_iter;

/* Tuning; zero fields take the defaults. */
struct memtable_opts {
    uint32_t run_size;  /* writes of a table sorted into a run; default 1024 */
    uint32_t fanin;     /* runs of one size merged into one; default 4 */
    uint32_t max_run;   /* no merge makes a run larger than this (bounds the
                         * writer's pause); default 262144 */
    size_t arena_chunk; /* arena block size in bytes; default 1 MiB */
    size_t expect_keys; /* keys the hash index is first sized for (it grows
                         * past that, a little at each put); default 768.
                         * Sizing it for storage.memtable_size / ~130 B
                         * spares the growing. */
};

#define MEMTABLE_DEFAULT_RUN_SIZE    1024u
#define MEMTABLE_DEFAULT_FANIN       4u
#define MEMTABLE_DEFAULT_MAX_RUN     262144u
#define MEMTABLE_DEFAULT_ARENA_CHUNK ((size_t)1 << 20)
#define MEMTABLE_DEFAULT_EXPECT_KEYS 768u

/* One write. */
struct memtable_write {
    uint32_t table;          /* table id */
    const void *key;         /* encoded primary key (key.h), key_len bytes */
    uint32_t key_len;        /* 1 or more */
    uint64_t hash;           /* key_hash(key, key_len), e.g. decode_row.key_hash */
    uint32_t schema_version; /* schema version the row was built for */
    const void *row;         /* row (schema.h format), or NULL for a delete */
    uint32_t row_len;        /* schema_row_len(row); 0 for a delete */
    bool has_time;           /* the row has a non-null time-field value: */
    int64_t time;            /* it (ms), for memtable_time_range() */
};

/* One entry as read back; every pointer borrows the memtable. */
struct memtable_rec {
    uint32_t table;          /* table id */
    const void *key;         /* encoded primary key */
    uint32_t key_len;        /* its length */
    uint64_t version;        /* commit version that wrote it */
    uint32_t schema_version; /* schema version of row */
    bool tombstone;          /* a delete: row is NULL */
    const void *row;         /* the row, or NULL */
    uint32_t row_len;        /* its length, or 0 */
};

struct memtable_stats {
    uint64_t entries;     /* puts so far */
    uint64_t keys;        /* distinct (table, key) pairs */
    uint64_t tables;      /* distinct tables */
    uint64_t runs;        /* sorted runs, all tables */
    uint64_t min_version; /* smallest version put, 0 when empty */
    uint64_t max_version; /* largest version put, 0 when empty */
    size_t bytes;         /* memtable_bytes() */
    size_t arena_bytes;   /* of which arena blocks (entries, keys, rows) */
    size_t index_bytes;   /* of which the hash index */
    size_t order_bytes;   /* of which runs and unsorted tails */
};

/* A new empty memtable with one reference. opts may be NULL. */
struct memtable *memtable_new(const struct memtable_opts *opts);
/* Adds a reference. Thread-safe. */
void memtable_ref(struct memtable *mt);
/* Drops a reference, freeing the memtable with the last one. Thread-safe. */
void memtable_unref(struct memtable *mt);

/*
 * Adds w at commit version `version` (>= every version put before).
 * Copies the key and row. The writer thread only; not after freeze.
 * Never fails (allocation failure aborts); the caller bounds memory by
 * watching memtable_bytes() and freezing.
 */
void memtable_put(struct memtable *mt, uint64_t version, const struct memtable_write *w);

/*
 * Point read at snapshot snap: the newest entry of (table, key) with
 * version <= snap (a tombstone means deleted at that version). hash is
 * key_hash(key, len). Returns false when no such entry is here (the key
 * may still be in older memtables or segments). Any thread.
 * snap = UINT64_MAX gives the newest entry, committed or not: for
 * conflict checks.
 */
bool memtable_get(struct memtable *mt, uint32_t table, const void *key, size_t len, uint64_t hash,
                  uint64_t snap, struct memtable_rec *out);

/*
 * Makes the memtable immutable and fully sorted: one run per table. Call
 * from the writer thread, or from another thread once the writer has
 * stopped putting and handed the memtable over through a lock (a job
 * queue). Costs about a k-way merge of its entries (tens of ms per
 * million entries); the engine should switch writes to a new memtable
 * first and freeze the old one off the loop thread. Idempotent.
 */
void memtable_freeze(struct memtable *mt);
bool memtable_is_frozen(const struct memtable *mt);

/*
 * Bytes of memory held: arena blocks, hash index, runs and tails,
 * including runs that finished iterators still pin. Any thread.
 */
size_t memtable_bytes(const struct memtable *mt);
void memtable_get_stats(const struct memtable *mt, struct memtable_stats *out);

/*
 * The ids of the tables with entries, ascending, in a new array of *n
 * entries (NULL when *n is 0); the caller frees it with free(). For the
 * flush writer. Any thread.
 */
uint32_t *memtable_tables(struct memtable *mt, size_t *n);

/*
 * Range scans. Bounds are encoded keys: lo is inclusive unless lo_excl,
 * hi exclusive unless hi_incl; a NULL bound is open.
 */
struct memtable_range {
    const void *lo; /* lower bound, or NULL */
    size_t lo_len;  /* its length */
    bool lo_excl;   /* lo itself excluded */
    const void *hi; /* upper bound, or NULL */
    size_t hi_len;  /* its length */
    bool hi_incl;   /* hi itself included */
};

enum memtable_iter_flags {
    /* Yield tombstones too (rec.tombstone); without it deletes are skipped. */
    MEMTABLE_ITER_TOMBSTONES = 1 << 0,
    /*
     * Yield every version <= snap of each key, newest first, instead of
     * only the newest one; shadowed same-version entries are still
     * skipped. For the flush writer (snap = UINT64_MAX).
     */
    MEMTABLE_ITER_ALL_VERSIONS = 1 << 1,
};

/*
 * An iterator over the entries of one table in key order, yielding for
 * each key in range the newest entry with version <= snap (see the
 * flags). It sees the memtable as it was when created: writes after
 * that are not yielded (their versions are above any visible snapshot
 * anyway). range may be NULL (the whole table). Holds a reference to mt
 * until memtable_iter_free(), so yielded bytes stay valid until then.
 * Creating one costs a binary search per run plus a sort of the
 * unsorted tail (at most run_size entries). Any thread; one thread at a
 * time per iterator.
 */
struct memtable_iter *memtable_iter_new(struct memtable *mt, uint32_t table,
                                        const struct memtable_range *range, uint64_t snap,
                                        unsigned flags);
/* The next entry into *out; false at the end. */
bool memtable_iter_next(struct memtable_iter *it, struct memtable_rec *out);
/* it may be NULL. */
void memtable_iter_free(struct memtable_iter *it);

/*
 * The smallest and largest time values of the rows of table put so far
 * (memtable_write.has_time), into *lo and *hi; false when there are none.
 * A reader that took its snapshot before calling sees at least the
 * values of every write its snapshot covers. Any thread.
 */
bool memtable_time_range(struct memtable *mt, uint32_t table, int64_t *lo, int64_t *hi);

#endif

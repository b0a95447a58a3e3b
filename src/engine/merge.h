/*
 * merge: one ordered stream of a table's entries out of several sources
 * (memtables and segments), for reads on a snapshot and for flush and
 * compaction.
 *
 * A source yields entries (key, version, row or tombstone) in key order
 * and, within a key, newest version first. Sources are given newest
 * first: source 0 holds the newest data (the active memtable), the last
 * one the oldest segment. Sources of one table never overlap in
 * versions, so for equal keys the lower source index holds the newer
 * entries; the merge relies on that only to order equal keys (it orders
 * by key ascending, then version descending, then source index).
 *
 * Read mode (MERGE_READ): sources are opened at the reader's snapshot
 * yielding the newest entry per key (tombstones included); the merge
 * yields, per key, the entry of the lowest-index source that has the
 * key, and drops the key when that entry is a tombstone. Sources that
 * skipped data by time statistics (segment iterators with a time range,
 * or whole segments left unopened) may hide a key's newest version:
 * before yielding a key taken from source i, the merge asks every source
 * j < i that has a hides() callback whether it holds the key at the
 * snapshot; if one does, the key is not yielded (its newest version is
 * outside the time range, or deleted).
 *
 * Compaction mode (MERGE_COMPACT): sources yield every version,
 * tombstones included; the merge yields every entry except those the
 * garbage-collection rules drop:
 *   - versions of a key no reader can see: with horizon H (no snapshot
 *     below H can be read any more), every version > H is kept, the
 *     newest version <= H is kept, older ones are dropped;
 *   - a tombstone that is that newest version <= H when bottom is set
 *     (the merge includes the table's oldest data, so nothing older can
 *     reappear): dropped, with everything older;
 *   - an expired row (expired() says so) that is the newest version <= H:
 *     replaced by a tombstone at the same version (dropped when bottom),
 *     so that older versions in sources outside the merge stay hidden.
 * Counters say what was dropped.
 *
 * One thread at a time per merge. The merge borrows the bytes of the
 * entry it yielded until the next call (they point into a source).
 */
#ifndef ST_ENGINE_MERGE_H
#define ST_ENGINE_MERGE_H

#include "util/common.h"
#include "util/status.h"

struct memtable_iter;
struct segment;
struct segment_iter;

/* One entry; the same fields as memtable_rec and segment_rec. */
struct merge_rec {
    const void *key;         /* encoded primary key */
    uint32_t key_len;        /* its length */
    uint64_t version;        /* commit version */
    uint32_t schema_version; /* schema version of row */
    bool tombstone;          /* a delete: row is NULL */
    const void *row;         /* the row, or NULL */
    uint32_t row_len;        /* its length, or 0 */
};

struct merge_source {
    /* The next entry, borrowed until the next call; false at the end or on error. */
    bool (*next)(void *ctx, struct merge_rec *out);
    /* ST_OK, or the error that ended next() (copied into err). May be NULL. */
    enum st_status (*status)(void *ctx, struct err *err);
    /*
     * Read mode: whether this source holds an entry (row or tombstone)
     * for key at the snapshot that it did not yield. NULL: never. May
     * fail (a corrupt block): then it returns true and status() reports
     * the error, which ends the merge.
     */
    bool (*hides)(void *ctx, const void *key, size_t len);
    /* Frees ctx and what it holds. May be NULL. */
    void (*free)(void *ctx);
    void *ctx;
};

/*
 * Sources over a memtable iterator (taking ownership of it) and a
 * segment iterator (taking ownership; seg is the iterator's segment,
 * used by hides(): when check_hidden is set, hides() answers for keys
 * the iterator may have skipped by time, with segment_get() at snap).
 */
void merge_source_memtable(struct memtable_iter *it, struct merge_source *out);
void merge_source_segment(struct segment_iter *it, struct segment *seg, uint64_t snap,
                          bool check_hidden, struct merge_source *out);
/*
 * A source that yields nothing but may hide keys: a segment left
 * unopened because its statistics exclude the query (hides() is a
 * segment_get() at snap). Holds a reference to seg.
 */
void merge_source_skipped_segment(struct segment *seg, uint64_t snap, struct merge_source *out);
/*
 * The same for a memtable left unread because its table's time range
 * (memtable_time_range()) misses the query: hides() is a memtable_get()
 * at snap. Holds a reference to mt.
 */
struct memtable;
void merge_source_skipped_memtable(struct memtable *mt, uint32_t table, uint64_t snap,
                                   struct merge_source *out);

enum merge_mode {
    MERGE_READ,
    MERGE_COMPACT,
};

/* Compaction mode: is this row past its table's retention? */
typedef bool (*merge_expired_fn)(void *arg, const struct merge_rec *r);

struct merge_opts {
    enum merge_mode mode;
    /* MERGE_COMPACT: */
    uint64_t horizon;         /* H above; 0 keeps every version */
    bool bottom;              /* the sources include the oldest data */
    merge_expired_fn expired; /* may be NULL */
    void *expired_arg;
};

struct merge_stats {
    uint64_t entries_in;         /* entries read from sources */
    uint64_t entries_out;        /* entries yielded */
    uint64_t versions_dropped;   /* older versions no reader can see */
    uint64_t tombstones_dropped; /* tombstones (and what they hid) at the bottom */
    uint64_t expired;            /* rows dropped or turned into tombstones by retention */
    uint64_t hidden;             /* read mode: keys dropped because a newer source hides them */
};

struct merge;

/*
 * A merge of nsrc sources (copied; the merge owns them from now on and
 * frees them with merge_free(), also on error). opts is copied.
 */
struct merge *merge_new(const struct merge_source *src, size_t nsrc, const struct merge_opts *opts);

/* The next entry; false at the end or on error (merge_status()). */
bool merge_next(struct merge *m, struct merge_rec *out);
/* ST_OK, or the first source error (sticky). */
enum st_status merge_status(const struct merge *m, struct err *err);
void merge_get_stats(const struct merge *m, struct merge_stats *out);
/* m may be NULL. */
void merge_free(struct merge *m);

#endif

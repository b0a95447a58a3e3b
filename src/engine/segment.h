/*
 * Segments: immutable files holding the entries of one table that left
 * the memtables (flushed, then merged by compaction), compressed by
 * column blocks. The byte layout is in segment.c and docs/storage-format.md
 * ("Segments"; do not change: on-disk format).
 *
 * A segment holds entries (key, commit version, row or tombstone) of one
 * table, every version kept, in key order and newest version first within
 * a key: the order of a memtable iterator with MEMTABLE_ITER_ALL_VERSIONS
 * | MEMTABLE_ITER_TOMBSTONES. All rows are in one schema version, recorded
 * in the file with the table id and the field types, so a segment can be
 * read without the catalog. Keys are the encoded primary keys of key.h;
 * segments store them in their block index and hash them into their bloom
 * filter, so that encoding is part of the segment format (a change to it
 * needs a new segment format version).
 *
 * Writing: segment_writer_new(), segment_writer_add() for each entry, then
 * segment_writer_finish(), which makes the file durable and only then
 * gives it its name, or segment_writer_abort(). The file is written as
 * PATH.tmp and renamed, so a crash never leaves a partial file under PATH
 * (a stale PATH.tmp may remain; the next writer of PATH truncates it, and
 * the engine should delete *.tmp at start-up). One thread per writer.
 *
 * Reading: segment_open() checks the footer, the section checksums and
 * the index, and keeps the index, the bloom filter and an open descriptor;
 * blocks are read, checked and decoded on demand. A damaged block is
 * reported as ST_ECORRUPT (and a log line naming the file and offset) by
 * the read that touches it, never returned as data. A segment is
 * reference counted and may be read by any number of threads at once;
 * each iterator belongs to one thread at a time.
 */
#ifndef ST_ENGINE_SEGMENT_H
#define ST_ENGINE_SEGMENT_H

#include "engine/fs.h"
#include "engine/schema.h"
#include "util/status.h"
#include "util/strbuf.h"

struct segment;
struct segment_writer;
struct segment_iter;

#define SEGMENT_FORMAT_VERSION 1

/* Writer tuning; zero fields take the defaults. */
struct segment_writer_opts {
    uint32_t block_rows;  /* most entries in a block; default 4096, at most
                           * SEGMENT_MAX_BLOCK_ROWS, and lowered so that
                           * rows x (fields + 2) <= SEGMENT_MAX_BLOCK_CELLS */
    uint32_t block_bytes; /* a block ends once its entries' key and row bytes
                           * reach this; default 256 KiB */
    uint32_t bloom_bits;  /* bloom filter bits per distinct key; default 10 */
    int lz4_hc_level;     /* 0: LZ4 fast (default); 1..12: LZ4 HC at that
                           * level (smaller, several times slower to write;
                           * reads cost the same) */
};

#define SEGMENT_DEFAULT_BLOCK_ROWS  4096u
#define SEGMENT_DEFAULT_BLOCK_BYTES (256u * 1024)
#define SEGMENT_DEFAULT_BLOOM_BITS  10u

/* Limits, checked by the writer and by the reader before allocating. */
#define SEGMENT_MAX_BLOCK_ROWS  65536u
#define SEGMENT_MAX_BLOCK_CELLS (1u << 22)        /* rows x (fields + 2) in a block */
#define SEGMENT_MAX_ROW         (1u << 28)        /* bytes of one row */
#define SEGMENT_MAX_KEY         (1u << 20)        /* bytes of one encoded key */
#define SEGMENT_MAX_BLOCK_RAW   (3u << 28)        /* bytes of a decompressed block */
#define SEGMENT_MAX_SECTION     ((1u << 31) - 1u) /* bytes of the meta, index or bloom */

/* Facts about a whole segment (from its meta section). */
struct segment_info {
    uint64_t table_id;       /* catalog table id */
    uint32_t schema_version; /* the schema version of every row */
    uint64_t entries;        /* entries: every version, tombstones included */
    uint64_t keys;           /* distinct keys */
    uint64_t tombstones;     /* entries that are deletes */
    uint64_t blocks;         /* data blocks */
    uint64_t min_version;    /* smallest commit version; 0 when empty */
    uint64_t max_version;    /* largest commit version; 0 when empty */
    bool has_time;           /* min_time/max_time are set: the schema has a
                              * time field and some row a non-null value */
    int64_t min_time;        /* smallest time-field value (ms), rows only */
    int64_t max_time;        /* largest */
    uint64_t input_bytes;    /* key and row bytes given to the writer */
    uint64_t file_bytes;     /* size of the file */
};

/* One entry as read back. Pointers borrow (see the function). */
struct segment_rec {
    const void *key;         /* encoded primary key */
    uint32_t key_len;        /* its length */
    uint64_t version;        /* commit version that wrote it */
    uint32_t schema_version; /* schema version of row (the segment's) */
    bool tombstone;          /* a delete: row is NULL */
    const void *row;         /* the row (schema.h format), or NULL */
    uint32_t row_len;        /* its length, or 0 */
};

/* ------------------------------------------------------------------ */
/* Writing */

/*
 * Starts a segment of table table_id whose rows are in schema s (the
 * caller keeps s alive until finish or abort). Creates PATH.tmp,
 * truncating a stale one; the directory of path must exist. opts may be
 * NULL. ST_EIO when the file cannot be created.
 */
enum st_status segment_writer_new(struct fs *fs, const char *path, const struct schema *s,
                                  uint64_t table_id, const struct segment_writer_opts *opts,
                                  struct segment_writer **out, struct err *err);

/*
 * Adds an entry: key (key_len bytes, encoded by key.h) at commit version
 * version (>= 1), and either a tombstone (row NULL) or row, a row of
 * schema s whose length is schema_row_len(row). Entries must come in key
 * order, newest version first within a key, each (key, version) once.
 * The bytes are copied. ST_EINVAL when the order is wrong, the row is
 * malformed, a row's key differs from key or a tombstone's key does not
 * decode; ST_ETOOLARGE past SEGMENT_MAX_ROW or SEGMENT_MAX_KEY; ST_EIO
 * when writing a finished block fails. After an error the writer only
 * accepts segment_writer_abort().
 */
enum st_status segment_writer_add(struct segment_writer *w, const void *key, size_t key_len,
                                  uint64_t version, bool tombstone, const void *row,
                                  struct err *err);

/*
 * Writes the last block, the meta, index and bloom sections and the
 * footer, fsyncs the file, renames it to its path and fsyncs the
 * directory. Frees w either way; on failure PATH.tmp is removed and PATH
 * is untouched (unless the failure came after the rename, at the
 * directory fsync, when PATH is complete but maybe not durable). info
 * (may be NULL) receives what segment_get_info() would report.
 * An empty segment (no entries) is valid.
 */
enum st_status segment_writer_finish(struct segment_writer *w, struct segment_info *info,
                                     struct err *err);

/* Discards the writer and removes PATH.tmp. w may be NULL. */
void segment_writer_abort(struct segment_writer *w);

/* ------------------------------------------------------------------ */
/* Reading */

/*
 * Opens the segment at path: reads and checks the header, footer, meta,
 * index and bloom filter (checksums, limits, ordering). ST_ECORRUPT with
 * file and offset in the message (and a log line) on damage; ST_EIO when
 * it cannot be read; ST_ENOTFOUND when there is no such file. Returns one
 * reference in *out.
 */
enum st_status segment_open(struct fs *fs, const char *path, struct segment **out, struct err *err);
/* Adds a reference. Thread-safe. */
void segment_ref(struct segment *seg);
/* Drops a reference, closing and freeing with the last one. Thread-safe; seg may be NULL. */
void segment_unref(struct segment *seg);
/*
 * Marks seg so that the segment_unref() that drops its last reference
 * also unlinks its file (through its fs, after closing it; a failure is
 * logged, not reported). For a segment no manifest version lists any
 * more (manifest_apply()), so the file goes once no reader holds it.
 * Thread-safe; cannot be undone.
 */
void segment_unlink_on_close(struct segment *seg);

void segment_get_info(const struct segment *seg, struct segment_info *out);
/* The path given to segment_open(). */
const char *segment_path(const struct segment *seg);

/*
 * The first and last keys in the segment (borrowing seg); false when it
 * is empty.
 */
bool segment_key_range(const struct segment *seg, const void **lo, size_t *lo_len, const void **hi,
                       size_t *hi_len);

/*
 * Whether the segment's rows are in schema s: same version, field count,
 * types, nullability, primary key and time field. The names and types in
 * the file are the catalog's as of writing; a table's schema version is
 * never redefined, so this only fails on a catalog/segment mix-up.
 */
bool segment_schema_matches(const struct segment *seg, const struct schema *s);

/* The bloom filter alone: false when key is certainly not in the segment. */
bool segment_may_contain(const struct segment *seg, const void *key, size_t len);

/*
 * Point read at snapshot snap: the newest entry of key with version <=
 * snap. Checks the bloom filter, finds the block(s) through the index,
 * and decodes them. The row is written into buf (reset first) and
 * out->row points into it; out->key points to the caller's key. Returns
 * ST_OK, ST_ENOTFOUND, ST_ECORRUPT (a damaged block) or ST_EIO.
 */
enum st_status segment_get(struct segment *seg, const void *key, size_t len, uint64_t snap,
                           struct segment_rec *out, struct strbuf *buf, struct err *err);

/* Key bounds like struct memtable_range, plus an optional time range. */
struct segment_range {
    const void *lo;  /* lower key bound, or NULL */
    size_t lo_len;   /* its length */
    bool lo_excl;    /* lo itself excluded */
    const void *hi;  /* upper key bound, or NULL */
    size_t hi_len;   /* its length */
    bool hi_incl;    /* hi itself included */
    bool has_time;   /* yield only rows whose time field is in [time_lo, time_hi] */
    int64_t time_lo; /* inclusive, ms */
    int64_t time_hi; /* inclusive, ms */
};

/* Same values as enum memtable_iter_flags. */
enum segment_iter_flags {
    SEGMENT_ITER_TOMBSTONES = 1 << 0,   /* yield tombstones too */
    SEGMENT_ITER_ALL_VERSIONS = 1 << 1, /* every version <= snap, newest first */
};

/* What an iterator did, for the query layer's statistics. */
struct segment_iter_stats {
    uint64_t blocks_read;            /* blocks read, checked and decoded */
    uint64_t blocks_skipped_time;    /* left unread: no row in the time range */
    uint64_t blocks_skipped_version; /* left unread: every entry newer than snap */
    uint64_t entries_scanned;        /* entries examined in read blocks */
};

/*
 * An iterator over the entries with keys in range (NULL: all), yielding
 * per key the newest entry with version <= snap (or every such version
 * with SEGMENT_ITER_ALL_VERSIONS); tombstones only with
 * SEGMENT_ITER_TOMBSTONES. Blocks outside the key range are never read.
 *
 * With a time range (and a time field in the schema), rows whose time
 * value is null or outside it are not yielded, and blocks whose time
 * stats show no row in range are not read, except when that could change
 * the answer: a block that holds tombstones when they are asked for, or,
 * without ALL_VERSIONS, a block whose last key continues into the next
 * block (its versions hide older ones there). Newest-per-key is decided
 * before the time filter: a key whose newest version is out of range is
 * not yielded at all. Tombstones are yielded whatever the time range.
 *
 * Note for merging sources: a time-skipped block's entries are invisible
 * to the merge, so they cannot hide older versions of the same keys in
 * OTHER sources. A merge that passes a time range down must check that a
 * row it takes from an older source is not superseded in a newer one
 * (segment_get()), or apply the time range only after merging.
 *
 * Holds a reference to seg until segment_iter_free(). range is copied.
 */
struct segment_iter *segment_iter_new(struct segment *seg, const struct segment_range *range,
                                      uint64_t snap, unsigned flags);
/*
 * The next entry into *out, borrowed until the next call or free; false
 * at the end or on error (then segment_iter_status() says which). Errors
 * are sticky.
 */
bool segment_iter_next(struct segment_iter *it, struct segment_rec *out);
/* ST_OK, or the error that stopped the iterator (copied into err). */
enum st_status segment_iter_status(const struct segment_iter *it, struct err *err);
void segment_iter_get_stats(const struct segment_iter *it, struct segment_iter_stats *out);
/*
 * Projection: rows yielded from now on carry only the fields with
 * need[i] set (need has one entry per field of the segment's schema, in
 * its order) and the key fields; the others are null and their columns
 * are never decoded. need is copied; NULL: every field (the default).
 * The time range still applies whatever need says.
 */
void segment_iter_set_fields(struct segment_iter *it, const bool *need);
/* it may be NULL. */
void segment_iter_free(struct segment_iter *it);

/* ------------------------------------------------------------------ */
/* Rows across schema versions */

/*
 * Rewrites row (schema from) as a row of schema to, into out (reset
 * first), for the flush and compaction writers, whose segments hold one
 * schema version. Fields are matched by name: a field of to that from
 * lacks takes its default, or null; int64 values widen to float64; fields
 * of from that to lacks are dropped. ST_EINVAL when a value cannot be
 * carried over (another type change, or null or missing for a field of
 * to that is neither nullable nor has a default): a change the catalog
 * refuses.
 */
enum st_status segment_row_convert(const struct schema *from, const struct schema *to,
                                   const void *row, struct strbuf *out, struct err *err);

/*
 * Test hook (fuzzers): when on, block and section checksums are not
 * verified, so that hostile bytes reach the decoders. Process-wide.
 */
void segment_test_skip_checksums(bool on);

#endif

/*
 * manifest: which segment files make up the stored data, changed
 * atomically, with readers pinning the version they started on.
 *
 * The manifest is one small file, DATA_DIR/MANIFEST, rewritten whole on
 * every change (written as MANIFEST.tmp, fsynced, renamed over MANIFEST,
 * directory fsynced), so a crash leaves either the old or the new one.
 * Its byte layout is in manifest.c and docs/storage-format.md
 * ("Manifest"). Segment files live in DATA_DIR/segments/ and are named by
 * a segment id that is never reused: segments/<id as 16 hex digits>.seg.
 *
 * In memory the manifest is a sequence of immutable, reference-counted
 * versions (struct manifest_version). manifest_acquire() returns the
 * current one; it and every segment it lists stay valid until
 * manifest_version_release(), whatever edits happen meanwhile. An edit
 * (manifest_apply()) builds the next version from the current one, makes
 * it durable and swaps it in. A segment an edit removes is unlinked from
 * disk when its last reference drops (no version and no reader holds it),
 * so compaction can replace files under running reads. A crash before
 * that unlink leaves an unlisted file, which manifest_open() deletes.
 *
 * Threads: every function is thread-safe. Edits are serialised inside
 * (one mutex); acquire/release are short.
 */
#ifndef ST_ENGINE_MANIFEST_H
#define ST_ENGINE_MANIFEST_H

#include "engine/fs.h"
#include "engine/segment.h"
#include "util/status.h"

#define MANIFEST_FORMAT_VERSION 1
#define MANIFEST_MAX_SEGMENTS   (1u << 20) /* entries a file may list */
#define MANIFEST_MAX_CLOCK      4096u      /* clock samples a file may hold */

struct manifest;

/* One live segment. */
struct manifest_seg {
    uint64_t id;              /* segment id (file name) */
    uint64_t table_id;        /* catalog table id */
    uint32_t level;           /* compaction level (tier), 0 for a flush */
    struct segment *seg;      /* the open segment (a reference held by the version) */
    struct segment_info info; /* segment_get_info(seg) */
};

/* The segments of one table, newest data first (descending max_version). */
struct manifest_table {
    uint64_t table_id;
    struct manifest_seg *const *segs; /* nsegs entries */
    size_t nsegs;
};

/* A sample of the version clock: commit version `version` was visible at wall_ms. */
struct manifest_clock {
    int64_t wall_ms;
    uint64_t version;
};

/*
 * One immutable state. Segments of one table never overlap in commit
 * versions: each holds a contiguous slice of the table's history, and
 * segs is ordered newest slice first (compactions merge only neighbours).
 */
struct manifest_version {
    uint64_t generation;      /* 1 for the first file, +1 per edit; 0: no file yet */
    uint64_t flushed_version; /* every commit <= this is in segments (or dropped) */
    uint64_t floor;           /* versions below this may have been dropped */
    uint64_t next_id;         /* the next segment id to hand out */
    const struct manifest_table *tables; /* ntables, ascending table_id */
    size_t ntables;
    const struct manifest_clock *clock; /* nclock samples, ascending */
    size_t nclock;
    uint64_t segments;   /* segments in all tables */
    uint64_t file_bytes; /* their bytes */
};

/*
 * Opens the manifest of data_dir: creates DATA_DIR/segments/ if missing,
 * reads MANIFEST (none: an empty manifest, generation 0), opens every
 * segment it lists (ST_ECORRUPT naming the file when one is missing or
 * damaged), then removes MANIFEST.tmp, segments/ *.tmp and every
 * segments/ *.seg file the manifest does not list (leftovers of a crash
 * during a flush or compaction), logging each. ST_ECORRUPT (naming file
 * and offset) for a damaged MANIFEST, ST_EIO for I/O errors.
 */
enum st_status manifest_open(struct fs *fs, const char *data_dir, struct manifest **out,
                             struct err *err);

/* Closes: drops the current version (readers may still hold theirs). m may be NULL. */
void manifest_close(struct manifest *m);

/* The current version, with a reference; never NULL. */
const struct manifest_version *manifest_acquire(struct manifest *m);
void manifest_version_release(const struct manifest_version *v);

/* The table's entry in v, or NULL when it has no segments. */
const struct manifest_table *manifest_find_table(const struct manifest_version *v,
                                                 uint64_t table_id);

/*
 * Hands out a new segment id (persisted with the next edit; an id handed
 * out but never added is simply never used again after that edit) and
 * writes the segment's path (DATA_DIR/segments/<id>.seg) into path.
 */
uint64_t manifest_new_segment(struct manifest *m, struct strbuf *path);

/* An edit: segments added and removed, and the new scalar values. */
struct manifest_add {
    uint64_t id;          /* from manifest_new_segment() */
    uint32_t level;       /* its level */
    struct segment *seg;  /* the finished, opened segment; the edit takes
                           * this reference (also on failure) */
};

struct manifest_edit {
    const struct manifest_add *add; /* nadd segments to add */
    size_t nadd;
    const uint64_t *remove; /* nremove segment ids to remove (must be live) */
    size_t nremove;
    uint64_t flushed_version; /* new flushed_version if larger; 0: unchanged */
    uint64_t floor;           /* new floor if larger; 0: unchanged */
    const struct manifest_clock *clock; /* replaces the samples when set_clock */
    size_t nclock;
    bool set_clock;
};

/*
 * Applies e: writes the new MANIFEST durably, then makes it current.
 * Removed segments are unlinked once unreferenced. On failure (ST_EIO)
 * the current version is unchanged, the added segments' references are
 * dropped and their files removed. ST_EINVAL (a bug) for removing a
 * segment that is not live or adding an id twice.
 */
enum st_status manifest_apply(struct manifest *m, const struct manifest_edit *e, struct err *err);

/* ------------------------------------------------------------------ */
/* Compaction policy */

struct manifest_policy {
    uint32_t fanout;       /* segments of one tier merged at once; default 4 */
    uint64_t base_bytes;   /* tier 0 holds segments below fanout x this;
                            * default 4 MiB */
    uint32_t max_segments; /* per table; more forces a merge; default 24 */
};

/* The tier of a segment of `bytes` bytes under p: 0 below base_bytes x fanout, and so on. */
uint32_t manifest_tier(const struct manifest_policy *p, uint64_t bytes);

/*
 * Picks a compaction for one table (tiered, see docs/storage-format.md
 * "Compaction"): a run of consecutive entries of t->segs (*first, *n)
 * to merge into one, or false when none is due. The run is the newest
 * run of at least fanout neighbours in the same tier; failing that, when
 * the table has more than max_segments, the fanout neighbours with the
 * fewest bytes in all. p may be NULL (defaults).
 */
bool manifest_pick(const struct manifest_table *t, const struct manifest_policy *p, size_t *first,
                   size_t *n);

/* ------------------------------------------------------------------ */
/* The file, decoded without opening segments (for tests and the fuzzer) */

struct manifest_image_seg {
    uint64_t id;
    uint64_t table_id;
    uint32_t level;
};

struct manifest_image {
    uint64_t generation, flushed_version, floor, next_id;
    struct manifest_image_seg *segs; /* nsegs, malloc'd */
    size_t nsegs;
    struct manifest_clock *clock; /* nclock, malloc'd */
    size_t nclock;
};

/*
 * Decodes the bytes of a MANIFEST file. ST_ECORRUPT with the offset in
 * err on any damage (bad magic, checksum, lengths, limits, duplicate
 * ids, an id >= next_id). Never reads past len. Release with
 * manifest_image_release().
 */
enum st_status manifest_decode(const void *bytes, size_t len, struct manifest_image *out,
                               struct err *err);
void manifest_encode(const struct manifest_image *img, struct strbuf *out);
void manifest_image_release(struct manifest_image *img);

#endif

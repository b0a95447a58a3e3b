/*
 * The write-ahead log: durable, ordered, checksummed records in a
 * directory of pre-allocated files, written by one thread with group
 * commit.
 *
 * Life cycle: wal_open() replays every record already in the directory
 * through a callback (cutting a torn tail, refusing mid-log corruption),
 * then starts the writer thread. wal_append() queues a record and returns
 * at once; the writer writes everything queued with one pwritev, syncs it
 * once according to the sync mode, and then calls each record's done
 * callback, in append order, on the writer thread. wal_trim() deletes old
 * files the checkpointer no longer needs. wal_close() drains the queue,
 * syncs and stops the thread.
 *
 * Failure is sticky: once a write or sync has failed, every record queued
 * or appended afterwards completes (or is refused) with ST_EIO until the
 * WAL is closed and reopened; wal_error() gives the first cause.
 *
 * The WAL never assigns commit versions (MVCC does) and never interprets
 * payloads; it assigns each record a sequence number (seq), 1, 2, 3, ...
 * across files, reported to the done callback and the replay callback.
 * Internal records (file seals) use seqs too, so the seqs a caller sees
 * increase but may skip.
 *
 * The on-disk format is specified in wal.c and docs/storage-format.md.
 */
#ifndef ST_ENGINE_WAL_H
#define ST_ENGINE_WAL_H

#include "util/common.h"
#include "util/status.h"

struct fs;
struct metrics;
struct wal;

/*
 * Record types: an open enum stored as a u16 (do not change: on-disk
 * format). The engine may use any value from 1 to WAL_REC_USER_MAX; 0 is
 * never valid (zero-filled space never parses as a record) and values
 * above WAL_REC_USER_MAX are the WAL's own.
 */
enum wal_rec_type {
    WAL_REC_DATA = 1,       /* a data batch: one ingest request */
    WAL_REC_CATALOG = 2,    /* a catalog change */
    WAL_REC_CHECKPOINT = 3, /* a checkpoint marker */
    WAL_REC_USER_MAX = 0xfeff,
};

enum wal_sync_mode {
    WAL_SYNC_ALWAYS,   /* fdatasync every group before acknowledging it */
    WAL_SYNC_INTERVAL, /* acknowledge after the write; fdatasync every sync_interval_ms */
    WAL_SYNC_NEVER,    /* acknowledge after the write; sync only at rotation and close */
};

#define WAL_DEFAULT_FILE_SIZE  (64u << 20)
#define WAL_DEFAULT_MAX_RECORD (128u << 20)
#define WAL_DEFAULT_MAX_QUEUED ((size_t)256 << 20)
/* The largest payload the format allows, whatever the configuration. */
#define WAL_MAX_RECORD_LIMIT (1u << 30)
/* Bytes a record takes in a file besides its payload: header and padding. */
#define WAL_RECORD_OVERHEAD 48u

/* Per-record completion, on the writer thread. seq is 0 unless st is ST_OK. */
typedef void (*wal_done_fn)(void *arg, enum st_status st, uint64_t seq);

struct wal_options {
    const char *dir;             /* the WAL directory; created (one level) if missing */
    struct fs *fs;               /* file operations; NULL for fs_posix() */
    uint64_t file_size;          /* rotate at this size; pre-allocated; 0: default */
    uint32_t max_record;         /* largest payload accepted; 0: default */
    size_t max_queued_bytes;     /* backpressure threshold; 0: default */
    enum wal_sync_mode sync;     /* when to fdatasync */
    uint32_t sync_interval_ms;   /* WAL_SYNC_INTERVAL only; must be > 0 */
    bool truncate_on_corruption; /* cut at mid-log corruption instead of failing */
    bool read_only;              /* wal_replay() only: report damage, repair nothing */
    struct metrics *metrics;     /* registry for wal_* metrics; may be NULL */
    /*
     * Called on the writer thread after the done callbacks of each group
     * (and of each batch failed with ST_EIO), so a caller can collect
     * completions in done() without locking and hand them to its loop
     * with one wake-up here. May be NULL.
     */
    void (*group_done)(void *arg);
    void *group_done_arg; /* argument of group_done */
};

/* A record read back from the log. payload is borrowed for the callback only. */
struct wal_record {
    uint64_t seq;        /* the WAL's sequence number */
    uint64_t version;    /* commit version given to wal_append() */
    uint16_t type;       /* enum wal_rec_type or another user value */
    const void *payload; /* len bytes */
    size_t len;          /* payload length */
};

/* Replay callback; any status but ST_OK stops replay and is returned. */
typedef enum st_status (*wal_replay_fn)(void *arg, const struct wal_record *rec);

/* wal_entry.flags */
enum wal_append_flags {
    /*
     * Do not copy the payload: the caller keeps it valid and unchanged
     * until the record's done callback has run (zero-copy for large
     * ingest bodies). Without it the payload is copied before
     * wal_append() returns.
     */
    WAL_F_BORROW = 1 << 0,
};

/* What to append. */
struct wal_entry {
    uint16_t type;       /* 1..WAL_REC_USER_MAX */
    uint64_t version;    /* commit version, stored as given */
    const void *payload; /* len bytes; may be NULL when len is 0 */
    size_t len;          /* at most max_record */
    unsigned flags;      /* enum wal_append_flags */
    wal_done_fn done;    /* completion; may be NULL */
    void *arg;           /* argument of done */
};

struct wal_stats {
    uint64_t appends;        /* records completed with ST_OK */
    uint64_t bytes;          /* payload bytes of those */
    uint64_t groups;         /* group writes */
    uint64_t syncs;          /* fdatasync/fsync calls on WAL files */
    uint64_t sync_ns;        /* total time in them */
    uint64_t rotations;      /* files sealed */
    uint64_t next_seq;       /* seq the next record will get */
    uint64_t durable_seq;    /* every seq <= this is known durable */
    uint64_t queued_bytes;   /* bytes appended but not completed */
    uint64_t files;          /* WAL files in the directory */
    uint64_t replay_records; /* records delivered by replay at open */
    uint64_t replay_cut;     /* bytes cut from a torn tail at open */
};

/*
 * Opens the WAL in opt->dir, replays every record into fn (may be NULL)
 * in seq order, repairs a torn tail, and starts the writer thread. opt is
 * copied (dir too); fs and metrics must outlive the WAL. On ST_OK *out is
 * the WAL, which the caller frees with wal_close().
 *
 * Errors: ST_ECORRUPT for damage that is not a torn tail (err names the
 * file and offset) unless opt->truncate_on_corruption; ST_EIO for I/O
 * errors; ST_EINVAL for bad options; whatever fn returned.
 */
enum st_status wal_open(const struct wal_options *opt, wal_replay_fn fn, void *arg,
                        struct wal **out, struct err *err);

/*
 * Replays the log like wal_open() and repairs it the same way (unless
 * opt->read_only), without starting a writer. In read-only mode a torn
 * tail is reported in the log and otherwise ignored.
 */
enum st_status wal_replay(const struct wal_options *opt, wal_replay_fn fn, void *arg,
                          struct err *err);

/*
 * Queues a record and returns without touching the disk. On ST_OK the
 * done callback will run exactly once, on the writer thread, with ST_OK
 * once the record is written (and synced, under WAL_SYNC_ALWAYS) or
 * ST_EIO. On any other status done is never called:
 *   ST_EAGAIN     the queue holds max_queued_bytes; retry after a completion
 *   ST_EIO        the WAL failed earlier (sticky); err has the first cause
 *   ST_ESHUTDOWN  wal_close() has begun
 *   ST_ETOOLARGE  len > max_record
 *   ST_EINVAL     type out of range
 *   ST_ENOMEM     no memory for the copy of the payload
 * Records are written in the order their wal_append() calls queue them.
 * Thread-safe; never blocks on I/O. Do not call wal_close() from done.
 */
enum st_status wal_append(struct wal *w, const struct wal_entry *e, struct err *err);

/*
 * Deletes whole files, oldest first, while every record in the file has
 * version <= upto_version (wal_trim) or seq <= upto_seq (wal_trim_seq),
 * then fsyncs the directory. The newest file is never deleted. For the
 * checkpointer; safe while appends go on. removed (may be NULL) gets the
 * number of files deleted.
 */
enum st_status wal_trim(struct wal *w, uint64_t upto_version, size_t *removed, struct err *err);
enum st_status wal_trim_seq(struct wal *w, uint64_t upto_seq, size_t *removed, struct err *err);

/* ST_OK, or ST_EIO with the sticky failure's message in err. */
enum st_status wal_error(struct wal *w, struct err *err);

void wal_get_stats(struct wal *w, struct wal_stats *out);

/*
 * Refuses new appends, writes and syncs everything queued, completes it,
 * stops the writer and frees w. Returns the sticky error if there was
 * one. w may be NULL.
 */
enum st_status wal_close(struct wal *w, struct err *err);

#endif

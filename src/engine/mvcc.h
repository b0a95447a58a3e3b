/*
 * MVCC: the version clock, what is visible, held snapshots, and write
 * conflicts between transactions.
 *
 * Versions. Every commit gets the next version (1, 2, 3, ...) from
 * mvcc_commit_begin(), at the moment it is applied (WAL append plus
 * memtable puts, in version order, on the writer thread). A commit then
 * ends exactly once: mvcc_commit_done() when it is durable (or when its
 * write failed), or mvcc_commit_abort() when it was given up before
 * anything of it reached a memtable. The visible version is the highest
 * V such that every version <= V is durable or aborted; commits may
 * become durable in any order, and a durable commit stays invisible
 * while an older one is pending, so readers never see a gap. A commit
 * whose write failed after it was applied is never visible, and neither
 * is anything after it.
 *
 * The engine should acknowledge a commit only once mvcc_visible() has
 * reached its version (mvcc_commit_done() returns the new visible
 * version), so that a client may read at the version it was given.
 *
 * Failure is sticky: after mvcc_fail(), or a commit that ended with an
 * error, mvcc_commit_begin() refuses every new commit with ST_EIO. Commits
 * already in flight still end normally.
 *
 * Snapshots. A held snapshot (POST .../snapshots) pins a version until it
 * is released or expires; mvcc_oldest_held() tells compaction which
 * history must stay. Times are milliseconds passed in by the caller.
 * Versions below the floor (mvcc_set_floor(), set by compaction) can no
 * longer be read.
 *
 * Conflicts. mvcc_check_conflicts() implements first-committer-wins: a
 * transaction that read at read_version conflicts when any key it
 * writes has a version > read_version, committed or only applied (so a
 * commit appended but not yet durable wins over a later one). The check
 * reads the memtables; versions that were flushed to segments come from
 * a callback (segments do not exist yet). Run the check, then
 * mvcc_commit_begin(), then apply, on the writer thread without yielding
 * in between, so that no commit slips in between check and apply.
 *
 * Threads: every function is thread-safe (one mutex; mvcc_visible() and
 * mvcc_last_assigned() are lock-free atomic loads).
 */
#ifndef ST_ENGINE_MVCC_H
#define ST_ENGINE_MVCC_H

#include "util/common.h"
#include "util/status.h"

struct memtable;
struct mvcc;

#define MVCC_DEFAULT_MAX_SNAPSHOTS 10000u

struct mvcc_opts {
    uint32_t max_snapshots; /* held snapshots at most; 0: the default */
};

/*
 * A new clock after recovery: last_version is the newest version found
 * in the data (0 for an empty store); it is visible, and the next commit
 * gets last_version + 1. opts may be NULL. Free with mvcc_free().
 */
struct mvcc *mvcc_new(uint64_t last_version, const struct mvcc_opts *opts);
void mvcc_free(struct mvcc *m);

/* ---- commits ---- */

/*
 * Assigns the next commit version to *version. ST_EIO after a failure
 * (sticky; err says the first cause).
 */
enum st_status mvcc_commit_begin(struct mvcc *m, uint64_t *version, struct err *err);

/*
 * Ends commit `version`: st is ST_OK when it is durable, any other status
 * when its write failed after it was applied (which also makes the
 * failure sticky). Returns the visible version afterwards.
 */
uint64_t mvcc_commit_done(struct mvcc *m, uint64_t version, enum st_status st);

/*
 * Ends commit `version` that never reached a memtable (e.g. the WAL
 * refused the append): it is skipped over. Returns the visible version.
 */
uint64_t mvcc_commit_abort(struct mvcc *m, uint64_t version);

/* The newest version readers may see. */
uint64_t mvcc_visible(const struct mvcc *m);
/* The newest version assigned (visible <= this). */
uint64_t mvcc_last_assigned(const struct mvcc *m);
/* Commits begun and not ended. */
uint64_t mvcc_in_flight(const struct mvcc *m);

/* Makes all later commits fail with ST_EIO; cause (may be NULL) is kept. */
void mvcc_fail(struct mvcc *m, const struct err *cause);
/* ST_OK, or ST_EIO with the first cause in err. */
enum st_status mvcc_error(struct mvcc *m, struct err *err);

/* ---- reads ---- */

/* Versions below floor may be gone (compaction calls this; it only rises). */
void mvcc_set_floor(struct mvcc *m, uint64_t floor);
uint64_t mvcc_floor(const struct mvcc *m);

/*
 * Checks that a read at as_of can be served: ST_EINVAL when as_of is
 * newer than the visible version, ST_ECONFLICT ("snapshot too old") when
 * it is below the floor.
 */
enum st_status mvcc_check_read(struct mvcc *m, uint64_t as_of, struct err *err);

/* ---- held snapshots ---- */

struct mvcc_snapshot {
    uint64_t id;        /* unique, never 0, never reused */
    uint64_t owner;     /* who may see and release it (the tenant id) */
    uint64_t version;   /* the version it pins */
    int64_t expires_ms; /* expiry time; it is gone at or after this time */
};

/*
 * Holds a snapshot of version (0: the visible version) for owner until
 * now_ms + ttl_ms; *out describes it. ST_EINVAL for a version newer than
 * visible or ttl_ms <= 0, ST_ECONFLICT for one below the floor, ST_EBUSY
 * when max_snapshots are held.
 */
enum st_status mvcc_snapshot_hold(struct mvcc *m, uint64_t owner, uint64_t version, int64_t now_ms,
                                  int64_t ttl_ms, struct mvcc_snapshot *out, struct err *err);

/* The snapshot id of owner, unexpired at now_ms, into *out; else ST_ENOTFOUND. */
enum st_status mvcc_snapshot_get(struct mvcc *m, uint64_t owner, uint64_t id, int64_t now_ms,
                                 struct mvcc_snapshot *out);

/* Releases snapshot id of owner; ST_ENOTFOUND when there is none. */
enum st_status mvcc_snapshot_release(struct mvcc *m, uint64_t owner, uint64_t id);

/* Drops every snapshot expired at now_ms; returns how many. */
size_t mvcc_snapshot_expire(struct mvcc *m, int64_t now_ms);

/* Snapshots held (expired ones count until mvcc_snapshot_expire()). */
size_t mvcc_snapshot_count(struct mvcc *m);

/*
 * The oldest version a held, unexpired snapshot pins, or the visible
 * version when none is held: history at or above it must be kept.
 */
uint64_t mvcc_oldest_held(struct mvcc *m, int64_t now_ms);

/* ---- write conflicts ---- */

/* A key a transaction writes. */
struct mvcc_key {
    uint32_t table;   /* table id */
    const void *key;  /* encoded primary key (key.h) */
    uint32_t key_len; /* its length */
    uint64_t hash;    /* key_hash(key, key_len) */
};

/*
 * The newest committed version of k outside the memtables (segments), or
 * 0 when it has none. Called only for keys no memtable holds.
 */
typedef uint64_t (*mvcc_stored_version_fn)(void *arg, const struct mvcc_key *k);

/*
 * First-committer-wins: checks the nkeys keys a transaction that read at
 * read_version wants to write. mts are the memtables holding recent
 * writes, newest first (the active one, then frozen ones); stored (may
 * be NULL) answers for keys none of them holds.
 *
 * ST_OK when no key has a version > read_version. ST_ECONFLICT when some
 * do: their indexes, ascending, go to conflicts (room for nkeys) and
 * their number to *nconflicts. ST_EINVAL when read_version is newer than
 * the visible version; ST_EIO after a failure.
 */
enum st_status mvcc_check_conflicts(struct mvcc *m, struct memtable *const *mts, size_t nmts,
                                    uint64_t read_version, const struct mvcc_key *keys,
                                    size_t nkeys, mvcc_stored_version_fn stored, void *arg,
                                    size_t *conflicts, size_t *nconflicts, struct err *err);

#endif

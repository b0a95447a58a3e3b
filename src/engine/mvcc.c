/*
 * MVCC: version clock, visibility, held snapshots, conflicts (see mvcc.h).
 *
 * DESIGN
 *
 * In-flight commits live in a ring of one state byte per version,
 * covering visible + 1 .. next - 1 (slot v & mask): PENDING until the
 * commit ends, then DURABLE, ABORTED or FAILED. When a commit ends,
 * visible advances over every DURABLE or ABORTED slot that directly
 * follows it and stops at the first PENDING or FAILED one; a FAILED slot
 * never changes again, so nothing at or after a failed commit ever
 * becomes visible. The ring doubles when more commits are in flight
 * than it has slots (the WAL's queue bounds that number in practice).
 *
 * visible and next are atomics so readers can load them without the
 * mutex; every change happens under it.
 *
 * Held snapshots are an unsorted array: they are few (max_snapshots),
 * and every operation on them is a linear scan under the mutex.
 *
 * Conflict checks read the memtables through memtable_get() at snapshot
 * UINT64_MAX, i.e. the newest entry of the key whether or not its commit
 * is durable yet; they take the mutex only to read the failure state.
 */
#include "engine/mvcc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/memtable.h"

enum slot_state {
    PENDING = 0, /* begun, not ended */
    DURABLE,     /* ended: durable */
    ABORTED,     /* ended: never applied, skipped */
    FAILED,      /* ended: applied, then its write failed; blocks visibility */
};

#define RING_MIN 64u

struct mvcc {
    /*
     * Guards everything but the atomics' reads: the ring, the failure,
     * the floor and the snapshots. visible and next change only under it.
     */
    pthread_mutex_t mu;
    _Atomic uint64_t visible;    /* every version <= this is durable or aborted */
    _Atomic uint64_t next;       /* the version the next commit gets */
    uint8_t *ring;               /* enum slot_state per in-flight version */
    size_t ring_mask;            /* ring slots - 1 */
    bool failed;                 /* sticky failure */
    struct err cause;            /* its first cause */
    uint64_t floor;              /* versions below are not readable */
    struct mvcc_snapshot *snaps; /* held snapshots, unsorted */
    size_t nsnaps;               /* held */
    size_t snaps_cap;            /* allocated */
    uint64_t next_snap_id;       /* id of the next snapshot */
    uint32_t max_snapshots;      /* limit */
};

struct mvcc *mvcc_new(uint64_t last_version, const struct mvcc_opts *opts)
{
    struct mvcc *m = xcalloc(1, sizeof(*m));

    if (pthread_mutex_init(&m->mu, NULL))
        ST_BUG("cannot initialise the mvcc mutex");
    atomic_init(&m->visible, last_version);
    atomic_init(&m->next, last_version + 1);
    m->ring = xcalloc(RING_MIN, 1);
    m->ring_mask = RING_MIN - 1;
    m->next_snap_id = 1;
    m->max_snapshots =
        opts && opts->max_snapshots ? opts->max_snapshots : MVCC_DEFAULT_MAX_SNAPSHOTS;
    return m;
}

void mvcc_free(struct mvcc *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->ring);
    free(m->snaps);
    free(m);
}

static void lock(struct mvcc *m)
{
    pthread_mutex_lock(&m->mu);
}

static void unlock(struct mvcc *m)
{
    pthread_mutex_unlock(&m->mu);
}

static uint64_t load_visible(const struct mvcc *m)
{
    return atomic_load_explicit(&m->visible, memory_order_acquire);
}

/* ---- commits ---- */

/* Doubles the ring; m->mu held. */
static void ring_grow(struct mvcc *m)
{
    size_t slots = (m->ring_mask + 1) * 2;
    uint8_t *ring = xcalloc(slots, 1);
    uint64_t next = atomic_load_explicit(&m->next, memory_order_relaxed);

    for (uint64_t v = load_visible(m) + 1; v < next; v++)
        ring[v & (slots - 1)] = m->ring[v & m->ring_mask];
    free(m->ring);
    m->ring = ring;
    m->ring_mask = slots - 1;
}

enum st_status mvcc_commit_begin(struct mvcc *m, uint64_t *version, struct err *err)
{
    uint64_t v;

    lock(m);
    if (m->failed) {
        unlock(m);
        return err_set(err, ST_EIO, "writes are refused after an earlier failure: %s",
                       m->cause.msg);
    }
    v = atomic_load_explicit(&m->next, memory_order_relaxed);
    if (v - load_visible(m) > m->ring_mask)
        ring_grow(m);
    m->ring[v & m->ring_mask] = PENDING;
    atomic_store_explicit(&m->next, v + 1, memory_order_release);
    unlock(m);
    *version = v;
    return ST_OK;
}

/* Ends version v with state s and advances visible; m->mu held. */
static uint64_t end_commit(struct mvcc *m, uint64_t v, enum slot_state s)
{
    uint64_t vis = load_visible(m);
    uint64_t next = atomic_load_explicit(&m->next, memory_order_relaxed);

    st_assert(v > vis && v < next);
    st_assert(m->ring[v & m->ring_mask] == PENDING);
    m->ring[v & m->ring_mask] = (uint8_t)s;
    while (vis + 1 < next) {
        uint8_t st = m->ring[(vis + 1) & m->ring_mask];

        if (st != DURABLE && st != ABORTED)
            break;
        vis++;
    }
    atomic_store_explicit(&m->visible, vis, memory_order_release);
    return vis;
}

uint64_t mvcc_commit_done(struct mvcc *m, uint64_t version, enum st_status st)
{
    uint64_t vis;

    lock(m);
    if (st != ST_OK && !m->failed) {
        m->failed = true;
        err_set(&m->cause, ST_EIO, "commit %" PRIu64 " failed: %s", version, status_str(st));
    }
    vis = end_commit(m, version, st == ST_OK ? DURABLE : FAILED);
    unlock(m);
    return vis;
}

uint64_t mvcc_commit_abort(struct mvcc *m, uint64_t version)
{
    uint64_t vis;

    lock(m);
    vis = end_commit(m, version, ABORTED);
    unlock(m);
    return vis;
}

uint64_t mvcc_visible(const struct mvcc *m)
{
    return load_visible(m);
}

uint64_t mvcc_last_assigned(const struct mvcc *m)
{
    return atomic_load_explicit(&m->next, memory_order_acquire) - 1;
}

uint64_t mvcc_in_flight(const struct mvcc *m)
{
    struct mvcc *mm = (struct mvcc *)m;
    uint64_t n = 0;
    uint64_t next;

    lock(mm);
    next = atomic_load_explicit(&m->next, memory_order_relaxed);
    for (uint64_t v = load_visible(m) + 1; v < next; v++)
        n += m->ring[v & m->ring_mask] == PENDING;
    unlock(mm);
    return n;
}

void mvcc_fail(struct mvcc *m, const struct err *cause)
{
    lock(m);
    if (!m->failed) {
        m->failed = true;
        err_set(&m->cause, ST_EIO, "%s", cause && cause->msg[0] ? cause->msg : "failed");
        if (cause)
            m->cause.sys_errno = cause->sys_errno;
    }
    unlock(m);
}

enum st_status mvcc_error(struct mvcc *m, struct err *err)
{
    enum st_status rc = ST_OK;

    lock(m);
    if (m->failed) {
        rc = ST_EIO;
        if (err)
            *err = m->cause;
    }
    unlock(m);
    return rc;
}

/* ---- reads ---- */

void mvcc_set_floor(struct mvcc *m, uint64_t floor)
{
    lock(m);
    if (floor > m->floor)
        m->floor = floor;
    unlock(m);
}

uint64_t mvcc_floor(const struct mvcc *m)
{
    struct mvcc *mm = (struct mvcc *)m;
    uint64_t f;

    lock(mm);
    f = m->floor;
    unlock(mm);
    return f;
}

/* ST_OK when version can be read; m->mu held. */
static enum st_status check_read(struct mvcc *m, uint64_t version, struct err *err)
{
    uint64_t vis = load_visible(m);

    if (version > vis)
        return err_set(err, ST_EINVAL, "version %" PRIu64 " is newer than the latest (%" PRIu64 ")",
                       version, vis);
    if (version < m->floor)
        return err_set(err, ST_ECONFLICT,
                       "snapshot too old: version %" PRIu64 " is below the oldest kept (%" PRIu64
                       ")",
                       version, m->floor);
    return ST_OK;
}

enum st_status mvcc_check_read(struct mvcc *m, uint64_t as_of, struct err *err)
{
    enum st_status rc;

    lock(m);
    rc = check_read(m, as_of, err);
    unlock(m);
    return rc;
}

/* ---- held snapshots ---- */

static struct mvcc_snapshot *snap_find(struct mvcc *m, uint64_t owner, uint64_t id)
{
    for (size_t i = 0; i < m->nsnaps; i++)
        if (m->snaps[i].id == id && m->snaps[i].owner == owner)
            return &m->snaps[i];
    return NULL;
}

static void snap_remove(struct mvcc *m, struct mvcc_snapshot *s)
{
    *s = m->snaps[--m->nsnaps];
}

enum st_status mvcc_snapshot_hold(struct mvcc *m, uint64_t owner, uint64_t version, int64_t now_ms,
                                  int64_t ttl_ms, struct mvcc_snapshot *out, struct err *err)
{
    struct mvcc_snapshot *s;
    enum st_status rc;

    if (ttl_ms <= 0)
        return err_set(err, ST_EINVAL, "snapshot ttl must be positive");
    lock(m);
    if (!version)
        version = load_visible(m);
    rc = check_read(m, version, err);
    if (rc)
        goto out_unlock;
    if (m->nsnaps >= m->max_snapshots) {
        rc = err_set(err, ST_EBUSY, "too many held snapshots (%u)", m->max_snapshots);
        goto out_unlock;
    }
    if (m->nsnaps == m->snaps_cap) {
        m->snaps_cap = m->snaps_cap ? m->snaps_cap * 2 : 16;
        m->snaps = realloc_array(m->snaps, m->snaps_cap, sizeof(*m->snaps));
    }
    s = &m->snaps[m->nsnaps++];
    s->id = m->next_snap_id++;
    s->owner = owner;
    s->version = version;
    s->expires_ms = ttl_ms > INT64_MAX - now_ms ? INT64_MAX : now_ms + ttl_ms;
    *out = *s;
out_unlock:
    unlock(m);
    return rc;
}

enum st_status mvcc_snapshot_get(struct mvcc *m, uint64_t owner, uint64_t id, int64_t now_ms,
                                 struct mvcc_snapshot *out)
{
    struct mvcc_snapshot *s;
    enum st_status rc = ST_ENOTFOUND;

    lock(m);
    s = snap_find(m, owner, id);
    if (s && now_ms >= s->expires_ms) {
        snap_remove(m, s);
        s = NULL;
    }
    if (s) {
        *out = *s;
        rc = ST_OK;
    }
    unlock(m);
    return rc;
}

enum st_status mvcc_snapshot_release(struct mvcc *m, uint64_t owner, uint64_t id)
{
    struct mvcc_snapshot *s;
    enum st_status rc = ST_ENOTFOUND;

    lock(m);
    s = snap_find(m, owner, id);
    if (s) {
        snap_remove(m, s);
        rc = ST_OK;
    }
    unlock(m);
    return rc;
}

size_t mvcc_snapshot_expire(struct mvcc *m, int64_t now_ms)
{
    size_t n = 0;

    lock(m);
    for (size_t i = 0; i < m->nsnaps;) {
        if (now_ms >= m->snaps[i].expires_ms) {
            snap_remove(m, &m->snaps[i]);
            n++;
        } else {
            i++;
        }
    }
    unlock(m);
    return n;
}

size_t mvcc_snapshot_count(struct mvcc *m)
{
    size_t n;

    lock(m);
    n = m->nsnaps;
    unlock(m);
    return n;
}

uint64_t mvcc_oldest_held(struct mvcc *m, int64_t now_ms)
{
    uint64_t v;

    lock(m);
    v = load_visible(m);
    for (size_t i = 0; i < m->nsnaps; i++)
        if (now_ms < m->snaps[i].expires_ms && m->snaps[i].version < v)
            v = m->snaps[i].version;
    unlock(m);
    return v;
}

/* ---- write conflicts ---- */

/* The newest version of k in mts (newest first), else from stored, else 0. */
static uint64_t newest_version(struct memtable *const *mts, size_t nmts, const struct mvcc_key *k,
                               mvcc_stored_version_fn stored, void *arg)
{
    struct memtable_rec rec;

    for (size_t i = 0; i < nmts; i++)
        if (memtable_get(mts[i], k->table, k->key, k->key_len, k->hash, UINT64_MAX, &rec))
            return rec.version;
    return stored ? stored(arg, k) : 0;
}

enum st_status mvcc_check_conflicts(struct mvcc *m, struct memtable *const *mts, size_t nmts,
                                    uint64_t read_version, const struct mvcc_key *keys,
                                    size_t nkeys, mvcc_stored_version_fn stored, void *arg,
                                    size_t *conflicts, size_t *nconflicts, struct err *err)
{
    enum st_status rc = ST_OK;
    uint64_t vis;
    size_t n = 0;

    *nconflicts = 0;
    lock(m);
    if (m->failed)
        rc = err_set(err, ST_EIO, "writes are refused after an earlier failure: %s", m->cause.msg);
    vis = load_visible(m);
    unlock(m);
    if (rc)
        return rc;
    if (read_version > vis)
        return err_set(err, ST_EINVAL,
                       "read_version %" PRIu64 " is newer than the latest version (%" PRIu64 ")",
                       read_version, vis);
    for (size_t i = 0; i < nkeys; i++)
        if (newest_version(mts, nmts, &keys[i], stored, arg) > read_version)
            conflicts[n++] = i;
    *nconflicts = n;
    if (n)
        return err_set(err, ST_ECONFLICT, "%zu of %zu keys were written after version %" PRIu64, n,
                       nkeys, read_version);
    return ST_OK;
}

/*
 * The write-ahead log (API in wal.h).
 *
 * DESIGN
 *
 * Appenders (the event-loop thread, workers) only queue: wal_append()
 * reserves queue space, copies the payload (or borrows it, WAL_F_BORROW),
 * links the record onto a FIFO under the mutex and signals the writer when
 * the FIFO goes from empty to non-empty. One writer thread takes the whole
 * FIFO at once, gives each record the next sequence number, frames it
 * (header, payload, padding) as iovecs, writes the group with as few
 * pwritev calls as FS_IOV_MAX allows, syncs once (WAL_SYNC_ALWAYS), and
 * then runs every record's done callback in order, outside the lock. While
 * it writes and syncs, new appends pile up for the next group: that is the
 * group commit, and one fdatasync covers every batch that arrived during
 * the previous one.
 *
 * Files are pre-allocated to file_size with fallocate so appends do not
 * change the file size (fdatasync then has little metadata to flush). When
 * a record does not fit, the writer seals the file (a SEAL record), syncs
 * it, and creates the next file: written as wal-<seq>.tmp, header,
 * fallocate, fsync, renamed to wal-<seq>.log, directory fsynced. So every
 * .log file has a durable header, and every file but the newest is sealed
 * and fully durable.
 *
 * Failure is sticky (LMDB's MDB_PANIC, LevelDB's bg_error_): the first
 * failed write, sync, or file creation sets w->failed; the group in flight
 * and every queued record complete with ST_EIO, later appends are refused
 * with ST_EIO, and nothing is ever written or synced again by this
 * instance. A failed fsync is never retried: Linux may have dropped the
 * dirty pages, and a second fsync would "succeed" without them.
 *
 * LOCKS
 *
 * w->mu guards the FIFO, queued_bytes, stopping, failed/fail_err, the
 * files array and stats. Everything under "writer only" in struct wal is
 * touched only by the writer thread (or by open and close, when there is
 * no writer). No file I/O happens under w->mu, and done callbacks run
 * without it, so a callback may call wal_append().
 *
 * FILE FORMAT (do not change: on-disk format)
 *
 * All integers are little-endian. A WAL directory holds files named
 * wal-<first seq as 16 lower-case hex digits>.log, e.g.
 * wal-0000000000000001.log; names sort in seq order. Leftover
 * wal-<seq>.tmp files are unfinished creations and are deleted at open.
 *
 * File header, 32 bytes at offset 0:
 *   0   8  magic "STRATAWL"
 *   8   4  format version, 1
 *   12  4  header size, 32
 *   16  8  first seq: the seq of the file's first record (= the name)
 *   24  4  reserved, 0
 *   28  4  CRC32C of bytes 0..27
 *
 * Records follow from offset 32, each starting at a multiple of 8:
 *   0   4  hcrc: CRC32C of header bytes 4..39
 *   4   4  pcrc: CRC32C of the payload (0 for an empty payload)
 *   8   4  len: payload length, at most 2^30
 *   12  2  type: 1..0xfeff engine types (enum wal_rec_type), 0xff01 SEAL;
 *          0 is never valid, so zero-filled space never parses
 *   14  2  flags, 0
 *   16  8  seq: the previous record's seq + 1 (the first: the file's first seq)
 *   24  8  version: the commit version given to wal_append()
 *   32  8  durable seq: every record with seq <= this was durable (its sync
 *          had returned) before this record was written; always < seq
 *   40  len payload, then 0..7 zero bytes of padding to a multiple of 8
 * The two CRCs together cover every header field and the payload; the
 * header has its own so that a damaged length is caught before it is used
 * and so that a scan can test any offset cheaply.
 *
 * A SEAL record (len 0) ends a file; nothing after it is read. After the
 * last record of the newest file comes the zero-filled pre-allocated
 * space, or the end of the file.
 *
 * RECOVERY
 *
 * Files are read in seq order; each must start at the seq after the
 * previous file's last (a gap is corruption). Records are checked in turn
 * (header CRC, fields, length within the file, payload CRC, seq) and
 * handed to the replay callback (SEAL records are not). At the first
 * record that fails, the "stop point", recovery decides between a torn
 * tail and corruption:
 *
 *   - only zeros from the stop point to the end: the clean end of the log;
 *   - in a file that is not the newest, or that is sealed: corruption (those
 *     files were fully synced before the next was created);
 *   - a record with good CRCs but the wrong seq: corruption;
 *   - otherwise the rest of the file is searched, at every 8-byte offset,
 *     for a well-formed record whose seq and durable seq are both >= the
 *     seq expected at the stop point. Such a record proves the damaged
 *     record had been synced, hence maybe acknowledged: corruption. With no
 *     proof, the damage lies in writes never synced, which a crash may have
 *     left in any state (the OS writes back dirty pages in any order, so a
 *     later unsynced record can survive an earlier lost one): a torn tail.
 *
 * A torn tail is cut: the file is truncated at the stop point, with a
 * warning in the log. Corruption fails the open with ST_ECORRUPT naming
 * the file and offset, or, with truncate_on_corruption, is cut the same
 * way along with every later file, with an error in the log.
 *
 * Before appending to the newest file again, recovery rewrites its good
 * prefix with the bytes it read and fsyncs it: after a crash of the
 * process alone, or a failed fsync, the page cache may hold records that
 * never reached the disk, and the next records will claim they are durable.
 */
#include "engine/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/fs.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/timeutil.h"

/* do not change: on-disk format */
#define FILE_MAGIC   "STRATAWL"
#define FILE_VERSION 1u
#define FILE_HDR     32u
#define REC_HDR      40u
#define REC_ALIGN    8u
#define REC_SEAL     0xff01u
#define NAME_LEN     24 /* "wal-" + 16 hex digits + ".log" */

#define PATH_BUF 4096

struct rec_hdr {
    uint32_t hcrc;    /* CRC32C of header bytes 4..39 */
    uint32_t pcrc;    /* CRC32C of the payload */
    uint32_t len;     /* payload bytes */
    uint16_t type;    /* record type */
    uint16_t flags;   /* 0 */
    uint64_t seq;     /* sequence number */
    uint64_t version; /* commit version */
    uint64_t durable; /* durable seq when written */
};

/* One WAL file, oldest first in w->files. */
struct wal_file {
    char *path;           /* full path */
    uint64_t first_seq;   /* from the header */
    uint64_t last_seq;    /* seq of its last record; first_seq - 1 when empty */
    uint64_t max_version; /* highest version of its records */
    bool sealed;          /* ends with a SEAL record */
};

/* A queued record. */
struct pend {
    struct pend *next;      /* FIFO link */
    wal_done_fn done;       /* completion, may be NULL */
    void *arg;              /* its argument */
    const uint8_t *payload; /* borrowed, or rec + REC_HDR */
    uint32_t len;           /* payload bytes */
    uint16_t type;          /* record type */
    bool borrowed;          /* payload is the caller's */
    uint64_t version;       /* commit version */
    uint64_t seq;           /* assigned by the writer */
    uint8_t rec[];          /* REC_HDR bytes, then the copied payload and padding */
};

struct wal {
    struct wal_options opt; /* copy; opt.dir points at dir */
    char *dir;              /* the directory */
    struct fs *fs;          /* file operations */

    pthread_mutex_t mu;     /* guards the fields down to "writer only" */
    pthread_cond_t cond;    /* the writer waits here for work */
    struct pend *head;      /* FIFO of queued records */
    struct pend **tail;     /* &last->next, or &head */
    size_t queued_bytes;    /* payload + WAL_RECORD_OVERHEAD of records not completed */
    bool stopping;          /* wal_close() has begun */
    enum st_status failed;  /* ST_OK, or ST_EIO once sticky */
    struct err fail_err;    /* the first failure */
    struct wal_file *files; /* every file, oldest first; the writer appends to the last */
    size_t nfiles;          /* used */
    size_t files_alloc;     /* allocated */
    struct wal_stats stats; /* counters (next_seq etc. filled on read) */

    /* writer only */
    bool thread_started;      /* thread is valid */
    pthread_t thread;         /* the writer */
    int fd;                   /* the newest file, or -1 (none yet, or sealed) */
    uint64_t off;             /* where the next record goes */
    uint64_t cap;             /* the file's pre-allocated size */
    uint64_t iov_off;         /* file offset of iov[0] */
    struct iovec *iov;        /* FS_IOV_MAX framed pieces not yet written */
    int niov;                 /* used */
    uint64_t next_seq;        /* seq of the next record */
    uint64_t durable_seq;     /* records <= this are synced */
    uint64_t framed_seq;      /* last seq put into iov */
    uint64_t written_seq;     /* last seq written */
    uint64_t act_max_version; /* max version written to the newest file */
    bool dirty;               /* written since the last sync */
    uint64_t last_sync_ns;    /* time of the last sync */
    uint8_t seal[REC_HDR];    /* buffer for a SEAL record */

    struct metric_series *m_appends; /* wal_appends_total */
    struct metric_series *m_bytes;   /* wal_append_bytes_total */
    struct metric_series *m_groups;  /* wal_groups_total */
    struct metric_series *m_syncs;   /* wal_syncs_total */
    struct metric_series *m_sync_s;  /* wal_sync_seconds */
    struct metric_series *m_queued;  /* wal_queued_bytes */
    struct metric_series *m_failed;  /* wal_failed */
};

static const uint8_t zeros[REC_ALIGN];

/* ------------------------------------------------------------------ */
/* Encoding */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t padded(uint64_t len)
{
    return (len + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
}

static uint64_t rec_size(uint64_t len)
{
    return REC_HDR + padded(len);
}

/* Frames a header into out; h->hcrc is computed here. */
static void rec_encode(uint8_t *out, struct rec_hdr *h)
{
    put32(out + 4, h->pcrc);
    put32(out + 8, h->len);
    put16(out + 12, h->type);
    put16(out + 14, h->flags);
    put64(out + 16, h->seq);
    put64(out + 24, h->version);
    put64(out + 32, h->durable);
    h->hcrc = crc32c(out + 4, REC_HDR - 4);
    put32(out, h->hcrc);
}

static void file_header_encode(uint8_t *out, uint64_t first_seq)
{
    memcpy(out, FILE_MAGIC, 8);
    put32(out + 8, FILE_VERSION);
    put32(out + 12, FILE_HDR);
    put64(out + 16, first_seq);
    put32(out + 24, 0);
    put32(out + 28, crc32c(out, 28));
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

enum parse {
    P_OK,
    P_SHORT,     /* fewer than REC_HDR bytes left */
    P_ZERO,      /* an all-zero header */
    P_BAD_HCRC,  /* header checksum mismatch */
    P_BAD_FIELD, /* type 0, flags, length over the limit */
    P_TRUNCATED, /* the record runs past the end of the file */
    P_BAD_PCRC,  /* payload checksum mismatch */
};

static const char *parse_str(enum parse p)
{
    switch (p) {
    case P_OK:
        return "ok";
    case P_SHORT:
        return "partial record header";
    case P_ZERO:
        return "zero-filled record header";
    case P_BAD_HCRC:
        return "record header checksum mismatch";
    case P_BAD_FIELD:
        return "invalid record header fields";
    case P_TRUNCATED:
        return "record runs past the end of the file";
    case P_BAD_PCRC:
        return "record payload checksum mismatch";
    }
    return "?";
}

/* Checks the record at off (checksums and framing, not the seq). */
static enum parse rec_parse(const uint8_t *buf, uint64_t size, uint64_t off, struct rec_hdr *h)
{
    const uint8_t *p = buf + off;

    if (off > size || size - off < REC_HDR)
        return P_SHORT;
    h->hcrc = get32(p);
    h->pcrc = get32(p + 4);
    h->len = get32(p + 8);
    h->type = get16(p + 12);
    h->flags = get16(p + 14);
    h->seq = get64(p + 16);
    h->version = get64(p + 24);
    h->durable = get64(p + 32);
    if (all_zero(p, REC_HDR))
        return P_ZERO;
    if (crc32c(p + 4, REC_HDR - 4) != h->hcrc)
        return P_BAD_HCRC;
    if (h->type == 0 || h->flags != 0 || h->len > WAL_MAX_RECORD_LIMIT)
        return P_BAD_FIELD;
    if (rec_size(h->len) > size - off)
        return P_TRUNCATED;
    if (crc32c(p + REC_HDR, h->len) != h->pcrc)
        return P_BAD_PCRC;
    return P_OK;
}

/* ------------------------------------------------------------------ */
/* Scanning one file image */

enum scan_stop {
    SCAN_END,     /* sealed, or only zeros (or nothing) after the last good record */
    SCAN_TORN,    /* damage in writes that were never synced */
    SCAN_CORRUPT, /* damage in synced data, or impossible contents */
};

struct scan {
    uint64_t first_seq;   /* from the header */
    uint64_t last_seq;    /* last good record's seq, first_seq - 1 when none */
    uint64_t end;         /* offset just after the last good record */
    uint64_t max_version; /* highest version of the good records */
    uint64_t records;     /* good records handed to the callback */
    bool sealed;          /* a SEAL record was reached */
    enum scan_stop stop;  /* how the scan ended */
    char why[200];        /* for SCAN_TORN and SCAN_CORRUPT */
};

/* Appends a formatted string to the NUL-terminated why, truncating. */
static void ST_PRINTF(3, 4) why_append(char *why, size_t n, const char *fmt, ...)
{
    size_t used = strlen(why);
    va_list ap;

    if (used + 1 >= n)
        return;
    va_start(ap, fmt);
    vsnprintf(why + used, n - used, fmt, ap);
    va_end(ap);
}

/* Parses the file header; false with why filled when it is bad. */
static bool file_header_parse(const uint8_t *buf, uint64_t size, uint64_t *first_seq, char *why,
                              size_t whylen)
{
    if (size < FILE_HDR) {
        snprintf(why, whylen, "file of %" PRIu64 " bytes is shorter than its header", size);
        return false;
    }
    if (memcmp(buf, FILE_MAGIC, 8)) {
        snprintf(why, whylen, "bad magic");
        return false;
    }
    if (get32(buf + 28) != crc32c(buf, 28)) {
        snprintf(why, whylen, "file header checksum mismatch");
        return false;
    }
    if (get32(buf + 8) != FILE_VERSION || get32(buf + 12) != FILE_HDR) {
        snprintf(why, whylen, "unsupported format version %" PRIu32, get32(buf + 8));
        return false;
    }
    *first_seq = get64(buf + 16);
    if (*first_seq == 0) {
        snprintf(why, whylen, "first seq is 0");
        return false;
    }
    return true;
}

/*
 * Looks past a stop point at off, where seq `expected` was due, for a
 * well-formed record proving that the stopped record had been synced.
 * Returns true with why filled when it finds one.
 */
static bool find_proof(const uint8_t *buf, uint64_t size, uint64_t off, uint64_t expected,
                       char *why, size_t whylen)
{
    uint64_t o = off + REC_ALIGN;

    while (o < size && size - o >= REC_HDR) {
        struct rec_hdr h;

        /* Cheap filters first: the scan mostly crosses zeros. */
        if (get16(buf + o + 12) == 0 || get64(buf + o + 16) < expected) {
            o += REC_ALIGN;
            continue;
        }
        if (rec_parse(buf, size, o, &h) != P_OK) {
            o += REC_ALIGN;
            continue;
        }
        if (h.durable >= expected) {
            snprintf(why, whylen,
                     "the record at offset %" PRIu64 " (seq %" PRIu64 ") shows seq %" PRIu64
                     " was already durable",
                     o, h.seq, expected);
            return true;
        }
        o += rec_size(h.len);
    }
    return false;
}

/*
 * Reads the records of one file image, handing each good one to fn.
 * Returns fn's status if it stopped the scan, else ST_OK with sc filled.
 */
static enum st_status scan_records(const uint8_t *buf, uint64_t size, struct scan *sc,
                                   wal_replay_fn fn, void *arg)
{
    uint64_t off = FILE_HDR;
    uint64_t expected = sc->first_seq;
    enum st_status rc;

    sc->last_seq = sc->first_seq - 1;
    sc->max_version = 0;
    sc->records = 0;
    sc->sealed = false;
    sc->why[0] = '\0';
    for (;;) {
        struct rec_hdr h;
        enum parse p;
        char proof[160];

        if (off >= size) {
            sc->end = size;
            sc->stop = SCAN_END;
            return ST_OK;
        }
        p = rec_parse(buf, size, off, &h);
        if (p == P_OK && (h.seq != expected || h.durable >= h.seq)) {
            sc->end = off;
            sc->stop = SCAN_CORRUPT;
            snprintf(sc->why, sizeof(sc->why),
                     "record has seq %" PRIu64 " (durable seq %" PRIu64 "), expected seq %" PRIu64,
                     h.seq, h.durable, expected);
            return ST_OK;
        }
        if (p != P_OK) {
            sc->end = off;
            if (all_zero(buf + off, size - off)) {
                sc->stop = SCAN_END;
            } else if (find_proof(buf, size, off, expected, proof, sizeof(proof))) {
                why_append(sc->why, sizeof(sc->why), "%s, but %s", parse_str(p), proof);
                sc->stop = SCAN_CORRUPT;
            } else {
                snprintf(sc->why, sizeof(sc->why), "%s", parse_str(p));
                sc->stop = SCAN_TORN;
            }
            return ST_OK;
        }
        if (h.type == REC_SEAL) {
            sc->last_seq = h.seq;
            sc->end = off + rec_size(h.len);
            sc->sealed = true;
            sc->stop = SCAN_END;
            return ST_OK;
        }
        if (h.type <= WAL_REC_USER_MAX) {
            struct wal_record r = {
                .seq = h.seq,
                .version = h.version,
                .type = h.type,
                .payload = buf + off + REC_HDR,
                .len = h.len,
            };

            if (fn && (rc = fn(arg, &r)) != ST_OK)
                return rc;
            sc->records++;
            if (h.version > sc->max_version)
                sc->max_version = h.version;
        }
        /* Unknown internal types (from a newer minor format) are skipped. */
        sc->last_seq = h.seq;
        expected = h.seq + 1;
        off += rec_size(h.len);
    }
}

/* ------------------------------------------------------------------ */
/* Small helpers */

static void path_join(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_BUF, "%s/%s", dir, name);
}

static void file_name(char *out, size_t n, uint64_t seq, const char *ext)
{
    snprintf(out, n, "wal-%016" PRIx64 ".%s", seq, ext);
}

/* Parses "wal-<16 hex>.<ext>"; returns true with *seq. */
static bool name_parse(const char *name, const char *ext, uint64_t *seq)
{
    if (strlen(name) != NAME_LEN || strncmp(name, "wal-", 4) || name[20] != '.' ||
        strcmp(name + 21, ext))
        return false;
    return st_parse_hex(name + 4, 16, seq);
}

static void files_push(struct wal *w, const char *path, uint64_t first_seq)
{
    struct wal_file *f;

    if (w->nfiles == w->files_alloc) {
        w->files_alloc = w->files_alloc ? w->files_alloc * 2 : 8;
        w->files = realloc_array(w->files, w->files_alloc, sizeof(*w->files));
    }
    f = &w->files[w->nfiles++];
    f->path = xstrdup(path);
    f->first_seq = first_seq;
    f->last_seq = first_seq - 1;
    f->max_version = 0;
    f->sealed = false;
}

static struct wal_file *files_last(struct wal *w)
{
    st_assert(w->nfiles > 0);
    return &w->files[w->nfiles - 1];
}

/* ------------------------------------------------------------------ */
/* Recovery */

struct found {
    uint64_t seq; /* from the name */
    char *path;   /* full path */
};

static int found_cmp(const void *a, const void *b)
{
    const struct found *x = a;
    const struct found *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void found_free(struct found *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].path);
    free(v);
}

/* Lists wal-*.log files in seq order, deleting stale .tmp files unless read-only. */
static enum st_status list_files(struct wal *w, struct found **out, size_t *nout, struct err *err)
{
    char **names = NULL;
    size_t n = 0;
    struct found *v = NULL;
    size_t nv = 0;
    bool deleted = false;
    char path[PATH_BUF];

    if (w->fs->list_dir(w->fs, w->dir, &names, &n) < 0)
        return err_set_errno(err, errno == ENOENT ? ST_ENOTFOUND : ST_EIO, errno,
                             "cannot list wal directory '%s'", w->dir);
    v = calloc_array(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        uint64_t seq;

        path_join(path, w->dir, names[i]);
        if (name_parse(names[i], "log", &seq)) {
            v[nv].seq = seq;
            v[nv].path = xstrdup(path);
            nv++;
        } else if (name_parse(names[i], "tmp", &seq) && !w->opt.read_only) {
            log_info("wal: removing unfinished file '%s'", path);
            if (w->fs->unlink(w->fs, path) < 0) {
                int e = errno;

                fs_names_free(names, n);
                found_free(v, nv);
                return err_set_errno(err, ST_EIO, e, "cannot remove '%s'", path);
            }
            deleted = true;
        }
    }
    fs_names_free(names, n);
    if (deleted && w->fs->fsync_dir(w->fs, w->dir) < 0) {
        int e = errno;

        found_free(v, nv);
        return err_set_errno(err, ST_EIO, e, "cannot fsync directory '%s'", w->dir);
    }
    qsort(v, nv, sizeof(*v), found_cmp);
    *out = v;
    *nout = nv;
    return ST_OK;
}

/* Reads a whole file. On success *buf (malloc'ed) holds *size bytes. */
static enum st_status read_file(struct wal *w, const char *path, int flags, int *fd_out,
                                uint8_t **buf, uint64_t *size, struct err *err)
{
    uint64_t n;
    uint8_t *b;
    int fd;

    fd = w->fs->open(w->fs, path, flags, 0);
    if (fd < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot open wal file '%s'", path);
    if (w->fs->fsize(w->fs, fd, &n) < 0) {
        int e = errno;

        w->fs->close(w->fs, fd);
        return err_set_errno(err, ST_EIO, e, "cannot stat wal file '%s'", path);
    }
    b = (n == (size_t)n) ? malloc(n ? (size_t)n : 1) : NULL;
    if (!b) {
        w->fs->close(w->fs, fd);
        return err_set(err, ST_ENOMEM, "no memory to read wal file '%s' of %" PRIu64 " bytes", path,
                       n);
    }
    if (n && fs_pread_full(w->fs, fd, b, (size_t)n, 0, NULL) < 0) {
        int e = errno ? errno : EIO;

        free(b);
        w->fs->close(w->fs, fd);
        return err_set_errno(err, ST_EIO, e, "cannot read wal file '%s'", path);
    }
    *fd_out = fd;
    *buf = b;
    *size = n;
    return ST_OK;
}

/* Deletes found[from..n) (files after a corruption being cut). */
static enum st_status unlink_from(struct wal *w, struct found *v, size_t from, size_t n,
                                  struct err *err)
{
    for (size_t i = from; i < n; i++) {
        log_error("wal: deleting '%s' after corruption (truncate_on_corruption)", v[i].path);
        if (w->fs->unlink(w->fs, v[i].path) < 0)
            return err_set_errno(err, ST_EIO, errno, "cannot remove '%s'", v[i].path);
    }
    if (from < n && w->fs->fsync_dir(w->fs, w->dir) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", w->dir);
    return ST_OK;
}

/*
 * Makes the newest file ready for appends: rewrites its good prefix,
 * cuts what follows when it is not zeros, restores the pre-allocation,
 * fsyncs. Takes over fd.
 */
static enum st_status prepare_tail(struct wal *w, int fd, const char *path, const uint8_t *buf,
                                   uint64_t size, uint64_t end, struct err *err)
{
    uint64_t cap = ST_MAX(w->opt.file_size, end + REC_HDR);
    bool cut = !all_zero(buf + end, size - end);
    enum st_status rc;

    if (fs_pwrite_full(w->fs, fd, buf, (size_t)end, 0) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot rewrite wal file '%s'", path);
        goto err_close;
    }
    if (cut) {
        if (w->fs->ftruncate(w->fs, fd, end) < 0) {
            rc = err_set_errno(err, ST_EIO, errno, "cannot truncate wal file '%s'", path);
            goto err_close;
        }
        w->stats.replay_cut += size - end;
        size = end;
    }
    cap = ST_MAX(cap, size);
    if (w->fs->fallocate(w->fs, fd, 0, cap) < 0 && errno != EOPNOTSUPP && errno != ENOSYS) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot allocate wal file '%s'", path);
        goto err_close;
    }
    if (w->fs->fsync(w->fs, fd) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot fsync wal file '%s'", path);
        goto err_close;
    }
    w->fd = fd;
    w->off = end;
    w->iov_off = end;
    w->cap = cap;
    return ST_OK;

err_close:
    w->fs->close(w->fs, fd);
    return rc;
}

/*
 * Replays every file into fn and repairs the log (see RECOVERY above).
 * Leaves the writer state (fd, off, next_seq, files) ready for appends.
 */
static enum st_status recover(struct wal *w, wal_replay_fn fn, void *arg, struct err *err)
{
    struct found *v = NULL;
    size_t nfound = 0;
    size_t n;
    uint64_t prev_last = 0;
    bool have_prev = false;
    bool ro = w->opt.read_only;
    enum st_status rc;

    if (!ro && w->fs->mkdir(w->fs, w->dir, 0755) < 0 && errno != EEXIST)
        return err_set_errno(err, ST_EIO, errno, "cannot create wal directory '%s'", w->dir);
    rc = list_files(w, &v, &nfound, err);
    if (rc)
        return rc;
    n = nfound;
    for (size_t i = 0; i < n; i++) {
        bool last = i + 1 == n;
        uint8_t *buf = NULL;
        uint64_t size = 0;
        int fd = -1;
        struct scan sc = {0};
        uint64_t bad_off = 0;
        bool header_bad = false;

        rc = read_file(w, v[i].path, (last && !ro) ? O_RDWR : O_RDONLY, &fd, &buf, &size, err);
        if (rc)
            goto out_free;
        if (!file_header_parse(buf, size, &sc.first_seq, sc.why, sizeof(sc.why))) {
            if (last && all_zero(buf, size)) {
                /* Cannot happen with tmp + rename, but a file system may
                 * still show an empty file after a crash: nothing in it. */
                log_warn("wal: removing empty file '%s' with no header", v[i].path);
                w->fs->close(w->fs, fd);
                free(buf);
                if (!ro && (rc = unlink_from(w, v, i, n, err)))
                    goto out_free;
                break;
            }
            header_bad = true;
            sc.stop = SCAN_CORRUPT;
        } else if (sc.first_seq != v[i].seq) {
            snprintf(sc.why, sizeof(sc.why), "header says first seq %" PRIu64, sc.first_seq);
            header_bad = true;
            sc.stop = SCAN_CORRUPT;
        } else if (have_prev && sc.first_seq != prev_last + 1) {
            snprintf(sc.why, sizeof(sc.why),
                     "file starts at seq %" PRIu64 " but the previous file ends at seq %" PRIu64,
                     sc.first_seq, prev_last);
            header_bad = true;
            sc.stop = SCAN_CORRUPT;
        } else {
            rc = scan_records(buf, size, &sc, fn, arg);
            if (rc) {
                err_set(err, rc, "wal replay stopped at '%s': %s", v[i].path, status_str(rc));
                w->fs->close(w->fs, fd);
                free(buf);
                goto out_free;
            }
            w->stats.replay_records += sc.records;
            bad_off = sc.end;
            if (!sc.sealed && !last && sc.stop != SCAN_CORRUPT) {
                why_append(sc.why, sizeof(sc.why), "%sfile is not sealed but a newer file follows",
                           sc.why[0] ? "; " : "");
                sc.stop = SCAN_CORRUPT;
            }
        }

        if (sc.stop == SCAN_TORN) {
            log_warn("wal: %s torn tail file='%s' offset=%" PRIu64 " bytes=%" PRIu64
                     " cause=\"%s\"",
                     ro ? "found" : "cutting", v[i].path, sc.end, size - sc.end, sc.why);
        } else if (sc.stop == SCAN_CORRUPT) {
            if (!w->opt.truncate_on_corruption || ro) {
                err_set(err, ST_ECORRUPT, "wal file '%s' is corrupt at offset %" PRIu64 ": %s",
                        v[i].path, bad_off, sc.why);
                w->fs->close(w->fs, fd);
                free(buf);
                rc = ST_ECORRUPT;
                goto out_free;
            }
            log_error("wal: cutting corrupt log file='%s' offset=%" PRIu64 " cause=\"%s\"",
                      v[i].path, bad_off, sc.why);
            if (header_bad) {
                w->fs->close(w->fs, fd);
                free(buf);
                rc = unlink_from(w, v, i, n, err);
                if (rc)
                    goto out_free;
                break;
            }
            rc = unlink_from(w, v, i + 1, n, err);
            if (!rc && !last) {
                /* It becomes the newest file: reopen it for writing. */
                w->fs->close(w->fs, fd);
                fd = w->fs->open(w->fs, v[i].path, O_RDWR, 0);
                if (fd < 0)
                    rc = err_set_errno(err, ST_EIO, errno, "cannot open wal file '%s'", v[i].path);
            }
            if (rc) {
                if (fd >= 0)
                    w->fs->close(w->fs, fd);
                free(buf);
                goto out_free;
            }
            last = true;
            n = i + 1;
        }

        files_push(w, v[i].path, sc.first_seq);
        files_last(w)->last_seq = sc.last_seq;
        files_last(w)->max_version = sc.max_version;
        files_last(w)->sealed = sc.sealed;
        prev_last = sc.last_seq;
        have_prev = true;
        if (last && !sc.sealed && !ro) {
            rc = prepare_tail(w, fd, v[i].path, buf, size, sc.end, err);
            free(buf);
            if (rc)
                goto out_free;
            w->act_max_version = sc.max_version;
        } else {
            w->fs->close(w->fs, fd);
            free(buf);
        }
    }
    w->next_seq = have_prev ? prev_last + 1 : 1;
    w->durable_seq = w->next_seq - 1;
    w->written_seq = w->next_seq - 1;
    w->framed_seq = w->next_seq - 1;
    rc = ST_OK;
out_free:
    found_free(v, nfound);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Writer */

static void set_failed(struct wal *w, const struct err *e)
{
    pthread_mutex_lock(&w->mu);
    if (!w->failed) {
        w->failed = ST_EIO;
        w->fail_err = *e;
        w->fail_err.code = ST_EIO;
    }
    pthread_mutex_unlock(&w->mu);
    if (w->m_failed)
        metric_set(w->m_failed, 1);
    log_error("wal: %s; refusing writes until restart", e->msg);
}

static const char *cur_path(struct wal *w)
{
    const char *p;

    pthread_mutex_lock(&w->mu);
    p = w->nfiles ? files_last(w)->path : w->dir;
    pthread_mutex_unlock(&w->mu);
    return p;
}

/* Writes the framed iovecs; publishes what the newest file now holds. */
static enum st_status flush_iov(struct wal *w, struct err *err)
{
    struct iovec *iov = w->iov;
    int cnt = w->niov;
    uint64_t off = w->iov_off;

    while (cnt > 0) {
        ssize_t n = w->fs->pwritev(w->fs, w->fd, iov, cnt, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return err_set_errno(err, ST_EIO, n < 0 ? errno : EIO,
                                 "cannot write wal file '%s' at offset %" PRIu64, cur_path(w), off);
        off += (uint64_t)n;
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0 && n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    w->niov = 0;
    w->iov_off = off;
    if (w->framed_seq != w->written_seq) {
        w->written_seq = w->framed_seq;
        w->dirty = true;
        pthread_mutex_lock(&w->mu);
        files_last(w)->last_seq = w->written_seq;
        files_last(w)->max_version = w->act_max_version;
        pthread_mutex_unlock(&w->mu);
    }
    return ST_OK;
}

static enum st_status sync_file(struct wal *w, bool full, struct err *err)
{
    uint64_t t0 = time_mono_ns();
    int r = full ? w->fs->fsync(w->fs, w->fd) : w->fs->fdatasync(w->fs, w->fd);
    int e = errno;
    uint64_t dt;

    w->last_sync_ns = time_mono_ns();
    dt = w->last_sync_ns - t0;
    pthread_mutex_lock(&w->mu);
    w->stats.syncs++;
    w->stats.sync_ns += dt;
    pthread_mutex_unlock(&w->mu);
    if (w->m_syncs) {
        metric_inc(w->m_syncs);
        metric_observe(w->m_sync_s, (double)dt / 1e9);
    }
    if (r < 0)
        return err_set_errno(err, ST_EIO, e, "cannot %s wal file '%s'",
                             full ? "fsync" : "fdatasync", cur_path(w));
    w->durable_seq = w->written_seq;
    w->dirty = false;
    pthread_mutex_lock(&w->mu);
    w->stats.durable_seq = w->durable_seq;
    pthread_mutex_unlock(&w->mu);
    return ST_OK;
}

static void add_iov(struct wal *w, const void *p, size_t n)
{
    st_assert(w->niov < FS_IOV_MAX);
    if (!n)
        return;
    w->iov[w->niov].iov_base = (void *)(uintptr_t)p;
    w->iov[w->niov].iov_len = n;
    w->niov++;
}

/* Creates the next file, starting at w->next_seq, big enough for need bytes. */
static enum st_status create_file(struct wal *w, uint64_t need, struct err *err)
{
    char name[64];
    char tmp[PATH_BUF];
    char path[PATH_BUF];
    uint8_t hdr[FILE_HDR];
    uint64_t cap = ST_MAX(w->opt.file_size, FILE_HDR + need + REC_HDR);
    enum st_status rc;
    int fd;

    file_name(name, sizeof(name), w->next_seq, "tmp");
    path_join(tmp, w->dir, name);
    file_name(name, sizeof(name), w->next_seq, "log");
    path_join(path, w->dir, name);
    fd = w->fs->open(w->fs, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot create wal file '%s'", tmp);
    file_header_encode(hdr, w->next_seq);
    if (fs_pwrite_full(w->fs, fd, hdr, sizeof(hdr), 0) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot write wal file '%s'", tmp);
        goto err_close;
    }
    if (w->fs->fallocate(w->fs, fd, 0, cap) < 0 && errno != EOPNOTSUPP && errno != ENOSYS) {
        rc = err_set_errno(err, ST_EIO, errno,
                           "cannot allocate %" PRIu64 " bytes for wal file '%s'", cap, tmp);
        goto err_close;
    }
    if (w->fs->fsync(w->fs, fd) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot fsync wal file '%s'", tmp);
        goto err_close;
    }
    if (w->fs->rename(w->fs, tmp, path) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot rename '%s' to '%s'", tmp, path);
        goto err_close;
    }
    pthread_mutex_lock(&w->mu);
    files_push(w, path, w->next_seq);
    w->stats.files = w->nfiles;
    pthread_mutex_unlock(&w->mu);
    w->fd = fd;
    w->off = FILE_HDR;
    w->iov_off = FILE_HDR;
    w->cap = cap;
    w->act_max_version = 0;
    if (w->fs->fsync_dir(w->fs, w->dir) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", w->dir);
    return ST_OK;

err_close:
    w->fs->close(w->fs, fd);
    w->fs->unlink(w->fs, tmp);
    return rc;
}

/* Seals the newest file (with what is framed so far) and starts the next. */
static enum st_status rotate(struct wal *w, uint64_t need, struct err *err)
{
    enum st_status rc;

    if (w->fd >= 0) {
        struct rec_hdr h = {
            .pcrc = 0,
            .len = 0,
            .type = REC_SEAL,
            .seq = w->next_seq++,
            .durable = w->durable_seq,
        };

        rec_encode(w->seal, &h);
        add_iov(w, w->seal, REC_HDR);
        w->off += REC_HDR;
        w->framed_seq = h.seq;
        rc = flush_iov(w, err);
        if (!rc)
            rc = sync_file(w, false, err);
        if (rc)
            return rc;
        pthread_mutex_lock(&w->mu);
        files_last(w)->sealed = true;
        w->stats.rotations++;
        pthread_mutex_unlock(&w->mu);
        w->fs->close(w->fs, w->fd);
        w->fd = -1;
    }
    return create_file(w, need, err);
}

/* Hands a finished list to its callbacks and frees it. */
static void complete(struct wal *w, struct pend *list, enum st_status st)
{
    size_t bytes = 0;
    size_t payload = 0;
    uint64_t count = 0;

    for (struct pend *p = list; p; p = p->next) {
        bytes += p->len + WAL_RECORD_OVERHEAD;
        payload += p->len;
        count++;
    }
    pthread_mutex_lock(&w->mu);
    w->queued_bytes -= bytes;
    w->stats.next_seq = w->next_seq;
    if (st == ST_OK) {
        w->stats.appends += count;
        w->stats.bytes += payload;
        w->stats.groups++;
    }
    if (w->m_queued)
        metric_set(w->m_queued, (double)w->queued_bytes);
    pthread_mutex_unlock(&w->mu);
    if (st == ST_OK && w->m_appends) {
        metric_add(w->m_appends, (double)count);
        metric_add(w->m_bytes, (double)payload);
        metric_inc(w->m_groups);
    }
    while (list) {
        struct pend *p = list;

        list = p->next;
        if (p->done)
            p->done(p->arg, st, st == ST_OK ? p->seq : 0);
        free(p);
    }
    if (w->opt.group_done)
        w->opt.group_done(w->opt.group_done_arg);
}

/* Frames one record into the iovecs. */
static void frame(struct wal *w, struct pend *p)
{
    struct rec_hdr h = {
        .pcrc = crc32c(p->payload, p->len),
        .len = p->len,
        .type = p->type,
        .seq = w->next_seq++,
        .version = p->version,
        .durable = w->durable_seq,
    };
    uint64_t pad = padded(p->len) - p->len;

    p->seq = h.seq;
    rec_encode(p->rec, &h);
    if (p->borrowed) {
        add_iov(w, p->rec, REC_HDR);
        add_iov(w, p->payload, p->len);
        add_iov(w, zeros, (size_t)pad);
    } else {
        add_iov(w, p->rec, (size_t)rec_size(p->len));
    }
    w->off += rec_size(p->len);
    w->framed_seq = h.seq;
    if (p->version > w->act_max_version)
        w->act_max_version = p->version;
}

static bool sync_due(struct wal *w)
{
    switch (w->opt.sync) {
    case WAL_SYNC_ALWAYS:
        return true;
    case WAL_SYNC_INTERVAL:
        return time_mono_ns() - w->last_sync_ns >= (uint64_t)w->opt.sync_interval_ms * 1000000u;
    case WAL_SYNC_NEVER:
        return false;
    }
    return true;
}

/* Writes, syncs and completes one group. */
static void process(struct wal *w, struct pend *list)
{
    struct err e;
    enum st_status rc = ST_OK;

    err_clear(&e);
    for (struct pend *p = list; p && !rc; p = p->next) {
        uint64_t sz = rec_size(p->len);

        if (w->fd >= 0 && w->off == FILE_HDR && w->off + sz + REC_HDR > w->cap) {
            /* An empty file grows to fit a record bigger than file_size. */
            uint64_t cap = w->off + sz + REC_HDR;

            if (w->fs->fallocate(w->fs, w->fd, 0, cap) < 0 && errno != EOPNOTSUPP &&
                errno != ENOSYS)
                rc = err_set_errno(&e, ST_EIO, errno, "cannot allocate wal file '%s'", cur_path(w));
            w->cap = cap;
        } else if (w->fd < 0 || w->off + sz + REC_HDR > w->cap) {
            rc = rotate(w, sz, &e);
        }
        if (!rc && w->niov + 4 > FS_IOV_MAX)
            rc = flush_iov(w, &e);
        if (!rc)
            frame(w, p);
    }
    if (!rc)
        rc = flush_iov(w, &e);
    if (!rc && w->dirty && sync_due(w))
        rc = sync_file(w, false, &e);
    if (rc) {
        w->niov = 0;
        set_failed(w, &e);
        complete(w, list, ST_EIO);
        return;
    }
    complete(w, list, ST_OK);
}

static void *writer_main(void *arg)
{
    struct wal *w = arg;
    sigset_t all;
    bool failed;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct pend *list;

        while (!w->head && !w->stopping) {
            if (w->opt.sync == WAL_SYNC_INTERVAL && w->dirty && !w->failed) {
                uint64_t due = w->last_sync_ns + (uint64_t)w->opt.sync_interval_ms * 1000000u;
                struct timespec ts;

                if (time_mono_ns() >= due)
                    break;
                ts.tv_sec = (time_t)(due / 1000000000u);
                ts.tv_nsec = (long)(due % 1000000000u);
                pthread_cond_timedwait(&w->cond, &w->mu, &ts);
            } else {
                pthread_cond_wait(&w->cond, &w->mu);
            }
        }
        list = w->head;
        w->head = NULL;
        w->tail = &w->head;
        failed = w->failed != ST_OK;
        pthread_mutex_unlock(&w->mu);
        if (list) {
            if (failed)
                complete(w, list, ST_EIO);
            else
                process(w, list);
        } else if (w->dirty && !failed && w->fd >= 0) {
            struct err e;

            if (sync_file(w, false, &e))
                set_failed(w, &e);
        }
        pthread_mutex_lock(&w->mu);
        if (!w->head && w->stopping)
            break;
    }
    failed = w->failed != ST_OK;
    pthread_mutex_unlock(&w->mu);
    if (!failed && w->dirty && w->fd >= 0) {
        struct err e;

        if (sync_file(w, false, &e))
            set_failed(w, &e);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public API */

static enum st_status check_options(struct wal_options *o, struct err *err)
{
    if (!o->dir || !o->dir[0])
        return err_set(err, ST_EINVAL, "wal directory not set");
    if (!o->file_size)
        o->file_size = WAL_DEFAULT_FILE_SIZE;
    if (!o->max_record)
        o->max_record = WAL_DEFAULT_MAX_RECORD;
    if (!o->max_queued_bytes)
        o->max_queued_bytes = WAL_DEFAULT_MAX_QUEUED;
    if (o->file_size < 4096)
        return err_set(err, ST_EINVAL, "wal file size %" PRIu64 " is under 4096", o->file_size);
    if (o->max_record > WAL_MAX_RECORD_LIMIT)
        return err_set(err, ST_EINVAL, "wal max record %" PRIu32 " is over %u", o->max_record,
                       WAL_MAX_RECORD_LIMIT);
    if (o->sync == WAL_SYNC_INTERVAL && !o->sync_interval_ms)
        return err_set(err, ST_EINVAL, "wal sync interval must be > 0");
    if (o->sync != WAL_SYNC_ALWAYS && o->sync != WAL_SYNC_INTERVAL && o->sync != WAL_SYNC_NEVER)
        return err_set(err, ST_EINVAL, "unknown wal sync mode %d", (int)o->sync);
    return ST_OK;
}

static void wal_free(struct wal *w)
{
    if (w->fd >= 0)
        w->fs->close(w->fs, w->fd);
    for (size_t i = 0; i < w->nfiles; i++)
        free(w->files[i].path);
    free(w->files);
    free(w->iov);
    free(w->dir);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static enum st_status wal_new(const struct wal_options *opt, struct wal **out, struct err *err)
{
    struct wal_options o = *opt;
    pthread_condattr_t ca;
    struct wal *w;
    enum st_status rc;

    rc = check_options(&o, err);
    if (rc)
        return rc;
    w = xcalloc(1, sizeof(*w));
    w->dir = xstrdup(o.dir);
    o.dir = w->dir;
    w->opt = o;
    w->fs = o.fs ? o.fs : fs_posix();
    w->fd = -1;
    w->tail = &w->head;
    w->iov = calloc_array(FS_IOV_MAX, sizeof(*w->iov));
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->last_sync_ns = time_mono_ns();
    *out = w;
    return ST_OK;
}

static void register_metrics(struct wal *w)
{
    struct metrics *m = w->opt.metrics;

    if (!m)
        return;
    w->m_appends = metric_series_get(
        metrics_counter(m, "strata_wal_appends_total", "records written to the WAL", NULL));
    w->m_bytes = metric_series_get(metrics_counter(m, "strata_wal_append_bytes_total",
                                                   "payload bytes written to the WAL", NULL));
    w->m_groups = metric_series_get(
        metrics_counter(m, "strata_wal_groups_total", "group commits (one write each)", NULL));
    w->m_syncs = metric_series_get(
        metrics_counter(m, "strata_wal_syncs_total", "fdatasync calls on WAL files", NULL));
    w->m_sync_s = metric_series_get(metrics_histogram(
        m, "strata_wal_sync_seconds", "latency of WAL fdatasync calls", NULL, NULL, 0));
    w->m_queued = metric_series_get(
        metrics_gauge(m, "strata_wal_queued_bytes", "bytes appended and not yet completed", NULL));
    w->m_failed = metric_series_get(
        metrics_gauge(m, "strata_wal_failed", "1 once a WAL write or sync has failed", NULL));
}

enum st_status wal_replay(const struct wal_options *opt, wal_replay_fn fn, void *arg,
                          struct err *err)
{
    struct wal *w;
    enum st_status rc;

    rc = wal_new(opt, &w, err);
    if (rc)
        return rc;
    rc = recover(w, fn, arg, err);
    wal_free(w);
    return rc;
}

enum st_status wal_open(const struct wal_options *opt, wal_replay_fn fn, void *arg,
                        struct wal **out, struct err *err)
{
    struct wal *w;
    enum st_status rc;
    int e;

    if (opt->read_only)
        return err_set(err, ST_EINVAL, "wal_open cannot be read-only");
    rc = wal_new(opt, &w, err);
    if (rc)
        return rc;
    rc = recover(w, fn, arg, err);
    if (rc) {
        wal_free(w);
        return rc;
    }
    w->stats.files = w->nfiles;
    w->stats.durable_seq = w->durable_seq;
    w->stats.next_seq = w->next_seq;
    register_metrics(w);
    e = pthread_create(&w->thread, NULL, writer_main, w);
    if (e) {
        wal_free(w);
        return err_set_errno(err, ST_EIO, e, "cannot start the wal writer thread");
    }
    w->thread_started = true;
    log_info("wal: opened dir='%s' files=%zu next_seq=%" PRIu64 " replayed=%" PRIu64, w->dir,
             w->nfiles, w->next_seq, w->stats.replay_records);
    *out = w;
    return ST_OK;
}

/* Refusals shared by both checks in wal_append(); call under w->mu. */
static enum st_status refuse(struct wal *w, struct err *err)
{
    if (w->failed) {
        err_set(err, ST_EIO, "wal failed earlier: %s", w->fail_err.msg);
        if (err)
            err->sys_errno = w->fail_err.sys_errno;
        return ST_EIO;
    }
    if (w->stopping)
        return err_set(err, ST_ESHUTDOWN, "wal is closing");
    return ST_OK;
}

enum st_status wal_append(struct wal *w, const struct wal_entry *e, struct err *err)
{
    size_t cost;
    bool borrow = e->flags & WAL_F_BORROW;
    struct pend *p;
    enum st_status rc;
    bool was_empty;

    if (e->type == 0 || e->type > WAL_REC_USER_MAX)
        return err_set(err, ST_EINVAL, "invalid wal record type %u", (unsigned)e->type);
    if (e->len > w->opt.max_record)
        return err_set(err, ST_ETOOLARGE, "wal record of %zu bytes is over the limit of %" PRIu32,
                       e->len, w->opt.max_record);
    if (e->len && !e->payload)
        return err_set(err, ST_EINVAL, "wal record without payload");
    cost = e->len + WAL_RECORD_OVERHEAD;

    pthread_mutex_lock(&w->mu);
    rc = refuse(w, err);
    if (!rc && w->queued_bytes && w->queued_bytes + cost > w->opt.max_queued_bytes)
        rc = err_set(err, ST_EAGAIN, "wal queue is full (%zu bytes)", w->queued_bytes);
    if (!rc)
        w->queued_bytes += cost;
    pthread_mutex_unlock(&w->mu);
    if (rc)
        return rc;

    p = malloc(sizeof(*p) + REC_HDR + (borrow ? 0 : (size_t)padded(e->len)));
    if (!p) {
        pthread_mutex_lock(&w->mu);
        w->queued_bytes -= cost;
        pthread_mutex_unlock(&w->mu);
        return err_set(err, ST_ENOMEM, "no memory to queue a wal record of %zu bytes", e->len);
    }
    p->next = NULL;
    p->done = e->done;
    p->arg = e->arg;
    p->len = (uint32_t)e->len;
    p->type = e->type;
    p->version = e->version;
    p->seq = 0;
    p->borrowed = borrow;
    if (borrow) {
        p->payload = e->payload;
    } else {
        uint8_t *dst = p->rec + REC_HDR;

        if (e->len)
            memcpy(dst, e->payload, e->len);
        memset(dst + e->len, 0, (size_t)(padded(e->len) - e->len));
        p->payload = dst;
    }

    pthread_mutex_lock(&w->mu);
    rc = refuse(w, err);
    if (rc) {
        w->queued_bytes -= cost;
        pthread_mutex_unlock(&w->mu);
        free(p);
        return rc;
    }
    was_empty = !w->head;
    *w->tail = p;
    w->tail = &p->next;
    if (was_empty)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return ST_OK;
}

static enum st_status trim(struct wal *w, bool by_seq, uint64_t upto, size_t *removed,
                           struct err *err)
{
    struct wal_file *victims;
    size_t k = 0;
    enum st_status rc = ST_OK;

    pthread_mutex_lock(&w->mu);
    while (k + 1 < w->nfiles && w->files[k].sealed &&
           (by_seq ? w->files[k].last_seq <= upto : w->files[k].max_version <= upto))
        k++;
    victims = calloc_array(k ? k : 1, sizeof(*victims));
    memcpy(victims, w->files, k * sizeof(*victims));
    memmove(w->files, w->files + k, (w->nfiles - k) * sizeof(*w->files));
    w->nfiles -= k;
    w->stats.files = w->nfiles;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < k; i++) {
        if (w->fs->unlink(w->fs, victims[i].path) < 0 && errno != ENOENT && !rc)
            rc = err_set_errno(err, ST_EIO, errno, "cannot remove wal file '%s'", victims[i].path);
        else
            log_info("wal: trimmed '%s'", victims[i].path);
        free(victims[i].path);
    }
    free(victims);
    if (k && w->fs->fsync_dir(w->fs, w->dir) < 0 && !rc)
        rc = err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", w->dir);
    if (removed)
        *removed = k;
    return rc;
}

enum st_status wal_trim(struct wal *w, uint64_t upto_version, size_t *removed, struct err *err)
{
    return trim(w, false, upto_version, removed, err);
}

enum st_status wal_trim_seq(struct wal *w, uint64_t upto_seq, size_t *removed, struct err *err)
{
    return trim(w, true, upto_seq, removed, err);
}

enum st_status wal_error(struct wal *w, struct err *err)
{
    enum st_status rc;

    pthread_mutex_lock(&w->mu);
    rc = w->failed;
    if (rc && err)
        *err = w->fail_err;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void wal_get_stats(struct wal *w, struct wal_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->queued_bytes = w->queued_bytes;
    out->files = w->nfiles;
    pthread_mutex_unlock(&w->mu);
}

enum st_status wal_close(struct wal *w, struct err *err)
{
    enum st_status rc;

    if (!w)
        return ST_OK;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_started)
        pthread_join(w->thread, NULL);
    rc = wal_error(w, err);
    wal_free(w);
    return rc;
}

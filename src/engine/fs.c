/*
 * The file-I/O seam: the POSIX implementation and the fault-injecting
 * in-memory one (see fs.h for the contract).
 *
 * POSIX
 *
 * Thin wrappers over the syscalls. fsync_dir opens the directory
 * read-only and fsyncs it. Nothing is cached and nothing retried, except
 * EINTR in the *_full helpers.
 *
 * FAULT FS: THE MODEL
 *
 * An in-memory file system that keeps, for every file (a node), two
 * images: what a reader sees now (data, size) and what would survive a
 * power failure (dur, dur_size). Writes change data and mark the 512-byte
 * sectors they touch dirty. A successful fsync or fdatasync copies the
 * dirty sectors into dur, makes the size durable and clears the dirty
 * marks. A failed fsync clears the dirty marks without copying, as Linux
 * does after writeback errors: the data stays readable but is lost on a
 * crash even if a later fsync succeeds ("fsyncgate"), which is why the WAL
 * never retries one. A shrinking ftruncate remembers the lowest size it
 * cut to, so that a sync also zeroes what was cut even where no sector is
 * dirty.
 *
 * Names are kept the same way: a current list of (path -> node) entries
 * and a durable one. fsync_dir(d) copies the current entries under d into
 * the durable list. A crash replaces the current entries by the durable
 * ones and every node's data by its durable image (in FS_CRASH_TORN mode
 * each dirty sector is first kept or dropped at random), and bumps a
 * generation number so that descriptors opened before it fail with EIO.
 * Directories exist from mkdir on and are always durable: the engine
 * creates its directories once at start-up, and modelling their loss adds
 * nothing to the tests.
 *
 * Nodes are freed only by fs_fault_free(): a node that lost all its names
 * may still be open or reachable from the durable entries.
 *
 * FAULTS
 *
 * Every operation first goes through fault_check() with its class bits
 * (fs.h), which counts it and applies the fail rule; data transfers also
 * go through the short-write rule and the capacity limit. One mutex
 * serialises the whole file system; it is a test tool, not a fast path.
 */
#include "engine/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fs_names_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int fs_pread_full(struct fs *fs, int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
    size_t done = 0;

    while (done < n) {
        ssize_t r = fs->pread(fs, fd, (char *)buf + done, n - done, off + done);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (got)
                *got = done;
            return -1;
        }
        if (r == 0) {
            if (got)
                *got = done;
            errno = 0;
            return -1;
        }
        done += (size_t)r;
    }
    if (got)
        *got = done;
    return 0;
}

int fs_pwrite_full(struct fs *fs, int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;

    while (done < n) {
        ssize_t r = fs->pwrite(fs, fd, (const char *)buf + done, n - done, off + done);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

void fs_dir_of(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');

    if (!slash) {
        st_strlcpy(dir, ".", n);
    } else if (slash == path) {
        st_strlcpy(dir, "/", n);
    } else {
        size_t len = ST_MIN((size_t)(slash - path), n - 1);

        memcpy(dir, path, len);
        dir[len] = '\0';
    }
}

enum st_status fs_write_atomic(struct fs *fs, const char *path, const void *buf, size_t n,
                               unsigned mode, struct err *err)
{
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 5);
    char *dir = xmalloc(plen + 2);
    enum st_status rc = ST_OK;
    int fd, e;

    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fs_dir_of(path, dir, plen + 2);
    fd = fs->open(fs, tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot create '%s'", tmp);
        goto out;
    }
    if (fs_pwrite_full(fs, fd, buf, n, 0) < 0 || fs->fsync(fs, fd) < 0) {
        e = errno;
        fs->close(fs, fd);
        fs->unlink(fs, tmp);
        rc = err_set_errno(err, ST_EIO, e, "cannot write '%s'", tmp);
        goto out;
    }
    if (fs->close(fs, fd) < 0) {
        e = errno;
        fs->unlink(fs, tmp);
        rc = err_set_errno(err, ST_EIO, e, "cannot close '%s'", tmp);
        goto out;
    }
    if (fs->rename(fs, tmp, path) < 0) {
        e = errno;
        fs->unlink(fs, tmp);
        rc = err_set_errno(err, ST_EIO, e, "cannot rename '%s' to '%s'", tmp, path);
        goto out;
    }
    if (fs->fsync_dir(fs, dir) < 0)
        rc = err_set_errno(err, ST_EIO, errno, "cannot sync directory '%s'", dir);
out:
    free(tmp);
    free(dir);
    return rc;
}

enum st_status fs_read_all(struct fs *fs, const char *path, char **out, size_t *len,
                           struct err *err)
{
    uint64_t size;
    char *buf;
    int fd, e;

    fd = fs->open(fs, path, O_RDONLY, 0);
    if (fd < 0) {
        e = errno;
        if (e == ENOENT)
            return err_set(err, ST_ENOTFOUND, "no file '%s'", path);
        return err_set_errno(err, ST_EIO, e, "cannot open '%s'", path);
    }
    if (fs->fsize(fs, fd, &size) < 0) {
        e = errno;
        fs->close(fs, fd);
        return err_set_errno(err, ST_EIO, e, "cannot stat '%s'", path);
    }
    if (size > SIZE_MAX - 1) {
        fs->close(fs, fd);
        return err_set(err, ST_EIO, "'%s' is too large to read", path);
    }
    buf = xmalloc((size_t)size + 1);
    if (fs_pread_full(fs, fd, buf, (size_t)size, 0, NULL) < 0) {
        e = errno;
        fs->close(fs, fd);
        free(buf);
        return err_set_errno(err, ST_EIO, e, "cannot read '%s'", path);
    }
    fs->close(fs, fd);
    buf[size] = '\0';
    *out = buf;
    *len = (size_t)size;
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* POSIX */

static int px_open(struct fs *fs, const char *path, int flags, unsigned mode)
{
    ST_UNUSED(fs);
    return open(path, flags | O_CLOEXEC, (mode_t)mode);
}

static int px_close(struct fs *fs, int fd)
{
    ST_UNUSED(fs);
    return close(fd);
}

static ssize_t px_read(struct fs *fs, int fd, void *buf, size_t n)
{
    ST_UNUSED(fs);
    return read(fd, buf, n);
}

static ssize_t px_write(struct fs *fs, int fd, const void *buf, size_t n)
{
    ST_UNUSED(fs);
    return write(fd, buf, n);
}

static ssize_t px_pread(struct fs *fs, int fd, void *buf, size_t n, uint64_t off)
{
    ST_UNUSED(fs);
    return pread(fd, buf, n, (off_t)off);
}

static ssize_t px_pwrite(struct fs *fs, int fd, const void *buf, size_t n, uint64_t off)
{
    ST_UNUSED(fs);
    return pwrite(fd, buf, n, (off_t)off);
}

static ssize_t px_pwritev(struct fs *fs, int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    ST_UNUSED(fs);
    return pwritev(fd, iov, iovcnt, (off_t)off);
}

static int px_fsync(struct fs *fs, int fd)
{
    ST_UNUSED(fs);
    return fsync(fd);
}

static int px_fdatasync(struct fs *fs, int fd)
{
    ST_UNUSED(fs);
    return fdatasync(fd);
}

static int px_fallocate(struct fs *fs, int fd, uint64_t off, uint64_t len)
{
    ST_UNUSED(fs);
    return fallocate(fd, 0, (off_t)off, (off_t)len);
}

static int px_ftruncate(struct fs *fs, int fd, uint64_t len)
{
    ST_UNUSED(fs);
    return ftruncate(fd, (off_t)len);
}

static int px_fsize(struct fs *fs, int fd, uint64_t *out)
{
    struct stat st;

    ST_UNUSED(fs);
    if (fstat(fd, &st) < 0)
        return -1;
    *out = (uint64_t)st.st_size;
    return 0;
}

static int px_rename(struct fs *fs, const char *from, const char *to)
{
    ST_UNUSED(fs);
    return rename(from, to);
}

static int px_unlink(struct fs *fs, const char *path)
{
    ST_UNUSED(fs);
    return unlink(path);
}

static int px_mkdir(struct fs *fs, const char *path, unsigned mode)
{
    ST_UNUSED(fs);
    return mkdir(path, (mode_t)mode);
}

static int px_fsync_dir(struct fs *fs, const char *path)
{
    int fd;
    int rc;
    int saved;

    ST_UNUSED(fs);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int px_list_dir(struct fs *fs, const char *path, char ***names, size_t *n)
{
    DIR *d;
    struct dirent *de;
    char **v = NULL;
    size_t len = 0;
    size_t alloc = 0;

    ST_UNUSED(fs);
    d = opendir(path);
    if (!d)
        return -1;
    errno = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (len == alloc) {
            alloc = alloc ? alloc * 2 : 16;
            v = realloc_array(v, alloc, sizeof(*v));
        }
        v[len++] = xstrdup(de->d_name);
    }
    if (errno) {
        int saved = errno;

        fs_names_free(v, len);
        closedir(d);
        errno = saved;
        return -1;
    }
    closedir(d);
    *names = v;
    *n = len;
    return 0;
}

static struct fs posix_fs = {
    .name = "posix",
    .open = px_open,
    .close = px_close,
    .read = px_read,
    .write = px_write,
    .pread = px_pread,
    .pwrite = px_pwrite,
    .pwritev = px_pwritev,
    .fsync = px_fsync,
    .fdatasync = px_fdatasync,
    .fallocate = px_fallocate,
    .ftruncate = px_ftruncate,
    .fsize = px_fsize,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
    .fsync_dir = px_fsync_dir,
    .list_dir = px_list_dir,
};

struct fs *fs_posix(void)
{
    return &posix_fs;
}

/* ------------------------------------------------------------------ */
/* The fault-injecting in-memory file system */

#define SECTOR     512u
#define FD_BASE    3
#define PATH_MAX_F 4096

/* Operation kinds, each with its class bits; counted separately. */
enum mop {
    MOP_OPEN,
    MOP_CREATE,
    MOP_READ,
    MOP_WRITE,
    MOP_FALLOCATE,
    MOP_FTRUNCATE,
    MOP_FSYNC,
    MOP_FDATASYNC,
    MOP_FSYNC_DIR,
    MOP_RENAME,
    MOP_UNLINK,
    MOP_MKDIR,
    MOP_LIST,
    MOP__COUNT
};

static const unsigned mop_class[MOP__COUNT] = {
    [MOP_OPEN] = FS_OP_READ,
    [MOP_CREATE] = FS_OP_META,
    [MOP_READ] = FS_OP_READ,
    [MOP_WRITE] = FS_OP_WRITE,
    [MOP_FALLOCATE] = FS_OP_WRITE,
    [MOP_FTRUNCATE] = FS_OP_WRITE,
    [MOP_FSYNC] = FS_OP_SYNC | FS_OP_FSYNC,
    [MOP_FDATASYNC] = FS_OP_SYNC | FS_OP_DATASYNC,
    [MOP_FSYNC_DIR] = FS_OP_SYNC,
    [MOP_RENAME] = FS_OP_META,
    [MOP_UNLINK] = FS_OP_META,
    [MOP_MKDIR] = FS_OP_META,
    [MOP_LIST] = FS_OP_READ,
};

struct mnode {
    struct mnode *next; /* every node of the fs, for freeing */
    uint8_t *data;      /* current contents */
    uint64_t size;      /* current size */
    uint8_t *dur;       /* durable contents */
    uint64_t dur_size;  /* durable size */
    uint8_t *dirty;     /* one flag per sector of data: written since the last sync */
    uint64_t nsect;     /* sectors covered by data's allocation and dirty */
    uint64_t trunc_low; /* lowest size cut to since the last sync, or UINT64_MAX */
};

struct mentry {
    char *path;         /* normalised full path */
    struct mnode *node; /* the file it names */
};

struct mentries {
    struct mentry *v; /* entries */
    size_t n;         /* used */
    size_t alloc;     /* allocated */
};

struct mfd {
    struct mnode *node; /* NULL when the slot is free */
    uint64_t pos;       /* for read and write */
    unsigned gen;       /* fs generation at open */
    bool writable;      /* opened O_WRONLY or O_RDWR */
};

struct ffs {
    struct fs fs;        /* must be first */
    pthread_mutex_t mu;  /* guards everything below */
    struct mnode *nodes; /* every node */
    struct mentries cur; /* the names as seen now */
    struct mentries dur; /* the names after a crash */
    char **dirs;         /* directories, normalised */
    size_t ndirs;        /* number of dirs */
    struct mfd *fds;     /* descriptor table, fd = index + FD_BASE */
    size_t nfds;         /* slots in fds */
    unsigned gen;        /* bumped by a crash */
    uint64_t counts[MOP__COUNT];
    /* fail rule */
    unsigned fail_mask; /* classes; 0 when no rule */
    uint64_t fail_nth;  /* fail the nth matching operation */
    uint64_t fail_seen; /* matching operations since the rule was set */
    int fail_err;       /* errno to fail with */
    bool fail_sticky;   /* keep failing after the nth */
    /* short-write rule */
    uint64_t short_nth;    /* 0 when no rule */
    uint64_t short_seen;   /* transfers since the rule was set */
    size_t short_max;      /* bytes a short transfer moves */
    bool short_every;      /* every transfer from the nth on */
    uint64_t capacity;     /* 0: unlimited */
    fs_fault_hook_fn hook; /* run before every operation, unlocked; may be NULL */
    void *hook_arg;        /* its argument */
};

static struct ffs *ffs_of(struct fs *fs)
{
    return (struct ffs *)fs;
}

/* Collapses repeated slashes and drops a trailing one into out. */
static void norm(const char *path, char *out)
{
    size_t o = 0;

    for (const char *p = path; *p && o < PATH_MAX_F - 1; p++) {
        if (*p == '/' && o > 0 && out[o - 1] == '/')
            continue;
        out[o++] = *p;
    }
    if (o > 1 && out[o - 1] == '/')
        o--;
    out[o] = '\0';
}

/* The parent directory of a normalised path into out: "a/b" -> "a", "b" -> ".". */
static void parent_of(const char *path, char *out)
{
    const char *slash = strrchr(path, '/');

    if (!slash) {
        strcpy(out, ".");
    } else if (slash == path) {
        strcpy(out, "/");
    } else {
        memcpy(out, path, (size_t)(slash - path));
        out[slash - path] = '\0';
    }
}

static bool dir_exists(struct ffs *f, const char *path)
{
    if (!strcmp(path, ".") || !strcmp(path, "/"))
        return true;
    for (size_t i = 0; i < f->ndirs; i++)
        if (!strcmp(f->dirs[i], path))
            return true;
    return false;
}

static struct mentry *entry_find(struct mentries *es, const char *path)
{
    for (size_t i = 0; i < es->n; i++)
        if (!strcmp(es->v[i].path, path))
            return &es->v[i];
    return NULL;
}

static void entry_add(struct mentries *es, const char *path, struct mnode *node)
{
    struct mentry *e = entry_find(es, path);

    if (e) {
        e->node = node;
        return;
    }
    if (es->n == es->alloc) {
        es->alloc = es->alloc ? es->alloc * 2 : 16;
        es->v = realloc_array(es->v, es->alloc, sizeof(*es->v));
    }
    es->v[es->n].path = xstrdup(path);
    es->v[es->n].node = node;
    es->n++;
}

static void entry_del_at(struct mentries *es, size_t i)
{
    free(es->v[i].path);
    es->v[i] = es->v[--es->n];
}

static void entries_clear(struct mentries *es)
{
    for (size_t i = 0; i < es->n; i++)
        free(es->v[i].path);
    es->n = 0;
}

static bool parent_is(const char *path, const char *dir)
{
    char p[PATH_MAX_F];

    parent_of(path, p);
    return !strcmp(p, dir);
}

/* Grows a node's current image to hold at least n bytes (zeros). */
static void node_reserve(struct mnode *nd, uint64_t n)
{
    uint64_t need = (n + SECTOR - 1) / SECTOR;

    if (need <= nd->nsect)
        return;
    if (need < nd->nsect * 2)
        need = nd->nsect * 2;
    nd->data = xrealloc(nd->data, need * SECTOR);
    memset(nd->data + nd->nsect * SECTOR, 0, (need - nd->nsect) * SECTOR);
    nd->dirty = xrealloc(nd->dirty, need);
    memset(nd->dirty + nd->nsect, 0, need - nd->nsect);
    nd->nsect = need;
}

/* Sets the current size, zeroing what a shrink cuts so a regrow reads zeros. */
static void node_resize(struct mnode *nd, uint64_t n)
{
    if (n > nd->size) {
        node_reserve(nd, n);
    } else if (n < nd->size) {
        memset(nd->data + n, 0, nd->size - n);
        if (n < nd->trunc_low)
            nd->trunc_low = n;
    }
    nd->size = n;
}

static void dur_resize(struct mnode *nd, uint64_t n)
{
    if (n > nd->dur_size) {
        nd->dur = xrealloc(nd->dur, n ? n : 1);
        memset(nd->dur + nd->dur_size, 0, n - nd->dur_size);
    }
    nd->dur_size = n;
}

static struct mnode *node_new(struct ffs *f)
{
    struct mnode *nd = xcalloc(1, sizeof(*nd));

    nd->trunc_low = UINT64_MAX;
    node_reserve(nd, SECTOR); /* data and dirty are never NULL */
    nd->next = f->nodes;
    f->nodes = nd;
    return nd;
}

/* A successful sync: dirty sectors and the size become durable. */
static void node_sync(struct mnode *nd)
{
    if (nd->trunc_low < nd->dur_size)
        nd->dur_size = nd->trunc_low;
    dur_resize(nd, nd->size);
    for (uint64_t s = 0; s < nd->nsect; s++) {
        uint64_t off = s * SECTOR;

        if (!nd->dirty[s])
            continue;
        nd->dirty[s] = 0;
        if (off < nd->size)
            memcpy(nd->dur + off, nd->data + off, ST_MIN((uint64_t)SECTOR, nd->size - off));
    }
    nd->trunc_low = UINT64_MAX;
}

/* A failed sync: the dirty data never reaches the disk, and is forgotten. */
static void node_lose_dirty(struct mnode *nd)
{
    memset(nd->dirty, 0, nd->nsect);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* The crash itself: data goes back to dur, keeping random dirty sectors when torn. */
static void node_crash(struct mnode *nd, enum fs_crash_mode mode, uint64_t *rng)
{
    if (mode == FS_CRASH_TORN) {
        uint64_t keep_end = nd->dur_size;

        for (uint64_t s = 0; s < nd->nsect; s++) {
            uint64_t off = s * SECTOR;
            uint64_t n;

            if (!nd->dirty[s] || off >= nd->size || !(xorshift(rng) & 1))
                continue;
            n = ST_MIN((uint64_t)SECTOR, nd->size - off);
            if (off + n > nd->dur_size)
                dur_resize(nd, off + n);
            memcpy(nd->dur + off, nd->data + off, n);
            if (off + n > keep_end)
                keep_end = off + n;
        }
        nd->dur_size = keep_end;
    }
    node_reserve(nd, nd->dur_size);
    memset(nd->data, 0, nd->nsect * SECTOR);
    if (nd->dur_size)
        memcpy(nd->data, nd->dur, nd->dur_size);
    nd->size = nd->dur_size;
    memset(nd->dirty, 0, nd->nsect);
    nd->trunc_low = UINT64_MAX;
}

/*
 * Takes the fs mutex at the start of an operation, first running the test
 * hook (without the mutex, so it may block or call back into the fs).
 */
static void op_lock(struct ffs *f, enum mop op)
{
    fs_fault_hook_fn hook;
    void *arg;

    pthread_mutex_lock(&f->mu);
    hook = f->hook;
    arg = f->hook_arg;
    if (!hook)
        return;
    pthread_mutex_unlock(&f->mu);
    hook(arg, mop_class[op]);
    pthread_mutex_lock(&f->mu);
}

/* Counts the operation and applies the fail rule. Returns 0 or -1 with errno. */
static int fault_check(struct ffs *f, enum mop op)
{
    unsigned cls = mop_class[op];

    f->counts[op]++;
    if (!(f->fail_mask & cls))
        return 0;
    f->fail_seen++;
    if (f->fail_seen == f->fail_nth || (f->fail_sticky && f->fail_seen > f->fail_nth)) {
        errno = f->fail_err;
        return -1;
    }
    return 0;
}

static struct mfd *fd_get(struct ffs *f, int fd)
{
    size_t i = (size_t)fd - FD_BASE;

    if (fd < FD_BASE || i >= f->nfds || !f->fds[i].node) {
        errno = EBADF;
        return NULL;
    }
    if (f->fds[i].gen != f->gen) {
        errno = EIO;
        return NULL;
    }
    return &f->fds[i];
}

static uint64_t used_bytes(struct ffs *f)
{
    uint64_t sum = 0;

    for (struct mnode *nd = f->nodes; nd; nd = nd->next) {
        bool named = false;

        for (size_t i = 0; i < f->cur.n && !named; i++)
            named = f->cur.v[i].node == nd;
        for (size_t i = 0; i < f->nfds && !named; i++)
            named = f->fds[i].node == nd;
        if (named)
            sum += nd->size;
    }
    return sum;
}

/* Writes n bytes at off into a node, after the short-write and capacity rules. */
static ssize_t node_write(struct ffs *f, struct mnode *nd, const void *buf, size_t n, uint64_t off)
{
    if (f->short_nth) {
        f->short_seen++;
        if ((f->short_seen == f->short_nth || (f->short_every && f->short_seen > f->short_nth)) &&
            n > f->short_max && f->short_max > 0)
            n = f->short_max;
    }
    if (f->capacity && off + n > nd->size) {
        uint64_t used = used_bytes(f);
        uint64_t avail = f->capacity > used ? f->capacity - used : 0;
        uint64_t limit = nd->size + avail;

        if (off >= limit) {
            errno = ENOSPC;
            return -1;
        }
        if (off + n > limit)
            n = (size_t)(limit - off);
    }
    if (n == 0)
        return 0;
    if (off + n > nd->size)
        node_resize(nd, off + n);
    memcpy(nd->data + off, buf, n);
    for (uint64_t s = off / SECTOR; s <= (off + n - 1) / SECTOR; s++)
        nd->dirty[s] = 1;
    return (ssize_t)n;
}

static int ff_open(struct fs *fs, const char *path, int flags, unsigned mode)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    char parent[PATH_MAX_F];
    struct mentry *e;
    struct mnode *nd;
    int acc = flags & O_ACCMODE;
    int rc = -1;

    ST_UNUSED(mode);
    norm(path, p);
    op_lock(f, (flags & O_CREAT) ? MOP_CREATE : MOP_OPEN);
    if (fault_check(f, (flags & O_CREAT) ? MOP_CREATE : MOP_OPEN) < 0)
        goto out_unlock;
    e = entry_find(&f->cur, p);
    if (!e && dir_exists(f, p)) {
        errno = EISDIR;
        goto out_unlock;
    }
    if (e && (flags & O_CREAT) && (flags & O_EXCL)) {
        errno = EEXIST;
        goto out_unlock;
    }
    if (!e) {
        if (!(flags & O_CREAT)) {
            errno = ENOENT;
            goto out_unlock;
        }
        parent_of(p, parent);
        if (!dir_exists(f, parent)) {
            errno = ENOENT;
            goto out_unlock;
        }
        nd = node_new(f);
        entry_add(&f->cur, p, nd);
    } else {
        nd = e->node;
    }
    if ((flags & O_TRUNC) && acc != O_RDONLY)
        node_resize(nd, 0);
    for (size_t i = 0;; i++) {
        if (i == f->nfds) {
            size_t n = f->nfds ? f->nfds * 2 : 16;

            f->fds = realloc_array(f->fds, n, sizeof(*f->fds));
            memset(f->fds + f->nfds, 0, (n - f->nfds) * sizeof(*f->fds));
            f->nfds = n;
        }
        if (!f->fds[i].node) {
            f->fds[i].node = nd;
            f->fds[i].pos = 0;
            f->fds[i].gen = f->gen;
            f->fds[i].writable = acc != O_RDONLY;
            rc = (int)i + FD_BASE;
            break;
        }
    }
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_close(struct fs *fs, int fd)
{
    struct ffs *f = ffs_of(fs);
    size_t i = (size_t)fd - FD_BASE;
    int rc = 0;

    pthread_mutex_lock(&f->mu);
    if (fd < FD_BASE || i >= f->nfds || !f->fds[i].node) {
        errno = EBADF;
        rc = -1;
    } else {
        f->fds[i].node = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static ssize_t do_pread(struct ffs *f, struct mfd *d, void *buf, size_t n, uint64_t off)
{
    struct mnode *nd = d->node;

    if (off >= nd->size)
        return 0;
    if (n > nd->size - off)
        n = (size_t)(nd->size - off);
    memcpy(buf, nd->data + off, n);
    ST_UNUSED(f);
    return (ssize_t)n;
}

static ssize_t ff_pread(struct fs *fs, int fd, void *buf, size_t n, uint64_t off)
{
    struct ffs *f = ffs_of(fs);
    struct mfd *d;
    ssize_t r = -1;

    op_lock(f, MOP_READ);
    if (!(d = fd_get(f, fd)) || fault_check(f, MOP_READ) < 0)
        goto out_unlock;
    r = do_pread(f, d, buf, n, off);
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return r;
}

static ssize_t ff_read(struct fs *fs, int fd, void *buf, size_t n)
{
    struct ffs *f = ffs_of(fs);
    struct mfd *d;
    ssize_t r = -1;

    op_lock(f, MOP_READ);
    if (!(d = fd_get(f, fd)) || fault_check(f, MOP_READ) < 0)
        goto out_unlock;
    r = do_pread(f, d, buf, n, d->pos);
    if (r > 0)
        d->pos += (uint64_t)r;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return r;
}

static ssize_t do_write(struct ffs *f, int fd, const void *buf, size_t n, uint64_t *off)
{
    struct mfd *d;
    ssize_t r = -1;

    if (!(d = fd_get(f, fd)) || fault_check(f, MOP_WRITE) < 0)
        return -1;
    if (!d->writable) {
        errno = EBADF;
        return -1;
    }
    r = node_write(f, d->node, buf, n, off ? *off : d->pos);
    if (r > 0 && !off)
        d->pos += (uint64_t)r;
    return r;
}

static ssize_t ff_write(struct fs *fs, int fd, const void *buf, size_t n)
{
    struct ffs *f = ffs_of(fs);
    ssize_t r;

    op_lock(f, MOP_WRITE);
    r = do_write(f, fd, buf, n, NULL);
    pthread_mutex_unlock(&f->mu);
    return r;
}

static ssize_t ff_pwrite(struct fs *fs, int fd, const void *buf, size_t n, uint64_t off)
{
    struct ffs *f = ffs_of(fs);
    ssize_t r;

    op_lock(f, MOP_WRITE);
    r = do_write(f, fd, buf, n, &off);
    pthread_mutex_unlock(&f->mu);
    return r;
}

static ssize_t ff_pwritev(struct fs *fs, int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    struct ffs *f = ffs_of(fs);
    size_t total = 0;
    size_t at = 0;
    uint8_t *tmp;
    ssize_t r;

    if (iovcnt < 0 || iovcnt > FS_IOV_MAX) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    tmp = xmalloc(total ? total : 1);
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(tmp + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    op_lock(f, MOP_WRITE);
    r = do_write(f, fd, tmp, total, &off);
    pthread_mutex_unlock(&f->mu);
    free(tmp);
    return r;
}

static int do_sync(struct fs *fs, int fd, enum mop op)
{
    struct ffs *f = ffs_of(fs);
    struct mfd *d;
    int rc = -1;

    op_lock(f, op);
    if (!(d = fd_get(f, fd)))
        goto out_unlock;
    if (fault_check(f, op) < 0) {
        int saved = errno;

        node_lose_dirty(d->node);
        errno = saved;
        goto out_unlock;
    }
    node_sync(d->node);
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_fsync(struct fs *fs, int fd)
{
    return do_sync(fs, fd, MOP_FSYNC);
}

static int ff_fdatasync(struct fs *fs, int fd)
{
    return do_sync(fs, fd, MOP_FDATASYNC);
}

static int ff_fallocate(struct fs *fs, int fd, uint64_t off, uint64_t len)
{
    struct ffs *f = ffs_of(fs);
    struct mfd *d;
    int rc = -1;

    op_lock(f, MOP_FALLOCATE);
    if (!(d = fd_get(f, fd)) || fault_check(f, MOP_FALLOCATE) < 0)
        goto out_unlock;
    if (off + len > d->node->size) {
        if (f->capacity && used_bytes(f) + (off + len - d->node->size) > f->capacity) {
            errno = ENOSPC;
            goto out_unlock;
        }
        node_resize(d->node, off + len);
    }
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_ftruncate(struct fs *fs, int fd, uint64_t len)
{
    struct ffs *f = ffs_of(fs);
    struct mfd *d;
    int rc = -1;

    op_lock(f, MOP_FTRUNCATE);
    if (!(d = fd_get(f, fd)) || fault_check(f, MOP_FTRUNCATE) < 0)
        goto out_unlock;
    if (len > d->node->size && f->capacity && used_bytes(f) + (len - d->node->size) > f->capacity) {
        errno = ENOSPC;
        goto out_unlock;
    }
    node_resize(d->node, len);
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_fsize(struct fs *fs, int fd, uint64_t *out)
{
    struct ffs *f = ffs_of(fs);
    struct mfd *d;
    int rc = -1;

    pthread_mutex_lock(&f->mu);
    if ((d = fd_get(f, fd))) {
        *out = d->node->size;
        rc = 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_rename(struct fs *fs, const char *from, const char *to)
{
    struct ffs *f = ffs_of(fs);
    char a[PATH_MAX_F];
    char b[PATH_MAX_F];
    char parent[PATH_MAX_F];
    struct mentry *e;
    struct mnode *nd;
    int rc = -1;

    norm(from, a);
    norm(to, b);
    op_lock(f, MOP_RENAME);
    if (fault_check(f, MOP_RENAME) < 0)
        goto out_unlock;
    e = entry_find(&f->cur, a);
    parent_of(b, parent);
    if (!e || !dir_exists(f, parent)) {
        errno = ENOENT;
        goto out_unlock;
    }
    if (dir_exists(f, b)) {
        errno = EISDIR;
        goto out_unlock;
    }
    rc = 0;
    if (!strcmp(a, b))
        goto out_unlock;
    nd = e->node;
    entry_del_at(&f->cur, (size_t)(e - f->cur.v));
    entry_add(&f->cur, b, nd);
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_unlink(struct fs *fs, const char *path)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    struct mentry *e;
    int rc = -1;

    norm(path, p);
    op_lock(f, MOP_UNLINK);
    if (fault_check(f, MOP_UNLINK) < 0)
        goto out_unlock;
    e = entry_find(&f->cur, p);
    if (!e) {
        errno = dir_exists(f, p) ? EISDIR : ENOENT;
        goto out_unlock;
    }
    entry_del_at(&f->cur, (size_t)(e - f->cur.v));
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_mkdir(struct fs *fs, const char *path, unsigned mode)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    char parent[PATH_MAX_F];
    int rc = -1;

    ST_UNUSED(mode);
    norm(path, p);
    op_lock(f, MOP_MKDIR);
    if (fault_check(f, MOP_MKDIR) < 0)
        goto out_unlock;
    if (dir_exists(f, p) || entry_find(&f->cur, p)) {
        errno = EEXIST;
        goto out_unlock;
    }
    parent_of(p, parent);
    if (!dir_exists(f, parent)) {
        errno = ENOENT;
        goto out_unlock;
    }
    f->dirs = realloc_array(f->dirs, f->ndirs + 1, sizeof(*f->dirs));
    f->dirs[f->ndirs++] = xstrdup(p);
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int ff_fsync_dir(struct fs *fs, const char *path)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    int rc = -1;

    norm(path, p);
    op_lock(f, MOP_FSYNC_DIR);
    if (!dir_exists(f, p)) {
        errno = ENOENT;
        goto out_unlock;
    }
    if (fault_check(f, MOP_FSYNC_DIR) < 0)
        goto out_unlock;
    for (size_t i = f->dur.n; i-- > 0;)
        if (parent_is(f->dur.v[i].path, p))
            entry_del_at(&f->dur, i);
    for (size_t i = 0; i < f->cur.n; i++)
        if (parent_is(f->cur.v[i].path, p))
            entry_add(&f->dur, f->cur.v[i].path, f->cur.v[i].node);
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void names_push(char ***v, size_t *n, const char *full)
{
    const char *slash = strrchr(full, '/');

    *v = realloc_array(*v, *n + 1, sizeof(**v));
    (*v)[(*n)++] = xstrdup(slash ? slash + 1 : full);
}

static int ff_list_dir(struct fs *fs, const char *path, char ***names, size_t *n)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    char **v = NULL;
    size_t len = 0;
    int rc = -1;

    norm(path, p);
    op_lock(f, MOP_LIST);
    if (fault_check(f, MOP_LIST) < 0)
        goto out_unlock;
    if (!dir_exists(f, p)) {
        errno = ENOENT;
        goto out_unlock;
    }
    for (size_t i = 0; i < f->cur.n; i++)
        if (parent_is(f->cur.v[i].path, p))
            names_push(&v, &len, f->cur.v[i].path);
    for (size_t i = 0; i < f->ndirs; i++)
        if (parent_is(f->dirs[i], p))
            names_push(&v, &len, f->dirs[i]);
    *names = v;
    *n = len;
    rc = 0;
out_unlock:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

struct fs *fs_fault_new(void)
{
    struct ffs *f = xcalloc(1, sizeof(*f));

    f->fs = (struct fs){
        .name = "fault",
        .open = ff_open,
        .close = ff_close,
        .read = ff_read,
        .write = ff_write,
        .pread = ff_pread,
        .pwrite = ff_pwrite,
        .pwritev = ff_pwritev,
        .fsync = ff_fsync,
        .fdatasync = ff_fdatasync,
        .fallocate = ff_fallocate,
        .ftruncate = ff_ftruncate,
        .fsize = ff_fsize,
        .rename = ff_rename,
        .unlink = ff_unlink,
        .mkdir = ff_mkdir,
        .fsync_dir = ff_fsync_dir,
        .list_dir = ff_list_dir,
    };
    pthread_mutex_init(&f->mu, NULL);
    return &f->fs;
}

void fs_fault_free(struct fs *fs)
{
    struct ffs *f;
    struct mnode *nd;

    if (!fs)
        return;
    f = ffs_of(fs);
    while ((nd = f->nodes)) {
        f->nodes = nd->next;
        free(nd->data);
        free(nd->dur);
        free(nd->dirty);
        free(nd);
    }
    entries_clear(&f->cur);
    entries_clear(&f->dur);
    free(f->cur.v);
    free(f->dur.v);
    for (size_t i = 0; i < f->ndirs; i++)
        free(f->dirs[i]);
    free(f->dirs);
    free(f->fds);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void fs_fault_fail_nth(struct fs *fs, unsigned mask, uint64_t nth, int err, bool sticky)
{
    struct ffs *f = ffs_of(fs);

    st_assert(nth >= 1);
    pthread_mutex_lock(&f->mu);
    f->fail_mask = mask;
    f->fail_nth = nth;
    f->fail_seen = 0;
    f->fail_err = err;
    f->fail_sticky = sticky;
    pthread_mutex_unlock(&f->mu);
}

void fs_fault_short_write(struct fs *fs, uint64_t nth, size_t max_bytes, bool every)
{
    struct ffs *f = ffs_of(fs);

    st_assert(nth >= 1);
    pthread_mutex_lock(&f->mu);
    f->short_nth = nth;
    f->short_seen = 0;
    f->short_max = max_bytes;
    f->short_every = every;
    pthread_mutex_unlock(&f->mu);
}

void fs_fault_set_hook(struct fs *fs, fs_fault_hook_fn fn, void *arg)
{
    struct ffs *f = ffs_of(fs);

    pthread_mutex_lock(&f->mu);
    f->hook = fn;
    f->hook_arg = arg;
    pthread_mutex_unlock(&f->mu);
}

void fs_fault_set_capacity(struct fs *fs, uint64_t bytes)
{
    struct ffs *f = ffs_of(fs);

    pthread_mutex_lock(&f->mu);
    f->capacity = bytes;
    pthread_mutex_unlock(&f->mu);
}

void fs_fault_clear(struct fs *fs)
{
    struct ffs *f = ffs_of(fs);

    pthread_mutex_lock(&f->mu);
    f->fail_mask = 0;
    f->short_nth = 0;
    pthread_mutex_unlock(&f->mu);
}

uint64_t fs_fault_count(struct fs *fs, unsigned mask)
{
    struct ffs *f = ffs_of(fs);
    uint64_t sum = 0;

    pthread_mutex_lock(&f->mu);
    for (int op = 0; op < MOP__COUNT; op++)
        if (mop_class[op] & mask)
            sum += f->counts[op];
    pthread_mutex_unlock(&f->mu);
    return sum;
}

void fs_fault_reset_counts(struct fs *fs)
{
    struct ffs *f = ffs_of(fs);

    pthread_mutex_lock(&f->mu);
    memset(f->counts, 0, sizeof(f->counts));
    pthread_mutex_unlock(&f->mu);
}

void fs_fault_crash(struct fs *fs, enum fs_crash_mode mode, uint64_t seed)
{
    struct ffs *f = ffs_of(fs);
    uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 1;

    pthread_mutex_lock(&f->mu);
    for (struct mnode *nd = f->nodes; nd; nd = nd->next)
        node_crash(nd, mode, &rng);
    entries_clear(&f->cur);
    for (size_t i = 0; i < f->dur.n; i++)
        entry_add(&f->cur, f->dur.v[i].path, f->dur.v[i].node);
    f->gen++;
    pthread_mutex_unlock(&f->mu);
}

uint8_t *fs_fault_get_file(struct fs *fs, const char *path, size_t *len)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    struct mentry *e;
    uint8_t *out = NULL;

    norm(path, p);
    pthread_mutex_lock(&f->mu);
    e = entry_find(&f->cur, p);
    if (e) {
        out = xmalloc(e->node->size ? e->node->size : 1);
        if (e->node->size)
            memcpy(out, e->node->data, e->node->size);
        *len = e->node->size;
    }
    pthread_mutex_unlock(&f->mu);
    return out;
}

void fs_fault_set_file(struct fs *fs, const char *path, const void *data, size_t len)
{
    struct ffs *f = ffs_of(fs);
    char p[PATH_MAX_F];
    struct mentry *e;
    struct mnode *nd;

    norm(path, p);
    pthread_mutex_lock(&f->mu);
    e = entry_find(&f->cur, p);
    if (e) {
        nd = e->node;
    } else {
        nd = node_new(f);
        entry_add(&f->cur, p, nd);
    }
    entry_add(&f->dur, p, nd);
    nd->size = 0;
    nd->trunc_low = UINT64_MAX;
    node_reserve(nd, len);
    memset(nd->data, 0, nd->nsect * SECTOR);
    if (len)
        memcpy(nd->data, data, len);
    nd->size = len;
    memset(nd->dirty, 1, nd->nsect);
    node_sync(nd);
    pthread_mutex_unlock(&f->mu);
}

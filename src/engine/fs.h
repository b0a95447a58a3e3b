/*
 * The one file-I/O seam of the engine (LevelDB's Env, SQLite's VFS).
 *
 * Every file the engine touches goes through a struct fs: a table of
 * POSIX-shaped operations. Two implementations exist:
 *
 *   fs_posix()      the real file system, a thin wrapper over the syscalls;
 *   fs_fault_new()  an in-memory file system for tests that injects faults
 *                   (fail the Nth write or sync with EIO or ENOSPC, short
 *                   writes, a capacity limit) and simulates a crash that
 *                   drops every byte and directory entry not yet synced.
 *
 * Conventions are POSIX's, so the two can be swapped without thought:
 * operations return -1 (or a negative ssize_t) and set errno on failure;
 * reads and writes may be short; offsets and sizes are uint64_t. A file
 * descriptor is an int that only has meaning for the struct fs that
 * returned it. All operations are thread-safe.
 */
#ifndef ST_ENGINE_FS_H
#define ST_ENGINE_FS_H

#include <sys/types.h>
#include <sys/uio.h>

#include "util/common.h"
#include "util/status.h"

struct fs {
    const char *name; /* "posix", "fault" */
    /* open(2): flags are O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_TRUNC. */
    int (*open)(struct fs *fs, const char *path, int flags, unsigned mode);
    int (*close)(struct fs *fs, int fd);
    ssize_t (*read)(struct fs *fs, int fd, void *buf, size_t n);
    ssize_t (*write)(struct fs *fs, int fd, const void *buf, size_t n);
    ssize_t (*pread)(struct fs *fs, int fd, void *buf, size_t n, uint64_t off);
    ssize_t (*pwrite)(struct fs *fs, int fd, const void *buf, size_t n, uint64_t off);
    /* pwritev(2); iovcnt is at most FS_IOV_MAX. */
    ssize_t (*pwritev)(struct fs *fs, int fd, const struct iovec *iov, int iovcnt, uint64_t off);
    int (*fsync)(struct fs *fs, int fd);
    int (*fdatasync)(struct fs *fs, int fd);
    /*
     * Makes [off, off + len) allocated and the file at least off + len
     * bytes long, reading as zeros where nothing was written (fallocate
     * mode 0). May fail with EOPNOTSUPP where the file system cannot.
     */
    int (*fallocate)(struct fs *fs, int fd, uint64_t off, uint64_t len);
    int (*ftruncate)(struct fs *fs, int fd, uint64_t len);
    /* The file's size in bytes. */
    int (*fsize)(struct fs *fs, int fd, uint64_t *out);
    int (*rename)(struct fs *fs, const char *from, const char *to);
    int (*unlink)(struct fs *fs, const char *path);
    /* mkdir(2) of one level; fails with EEXIST when it exists. */
    int (*mkdir)(struct fs *fs, const char *path, unsigned mode);
    /* Makes the directory's entries (creations, renames, unlinks) durable. */
    int (*fsync_dir)(struct fs *fs, const char *path);
    /*
     * The names in a directory, without "." and "..", in no particular
     * order. On success *names is an array of *n strings that the caller
     * frees with fs_names_free().
     */
    int (*list_dir)(struct fs *fs, const char *path, char ***names, size_t *n);
};

/* The most iovecs one pwritev() takes (POSIX guarantees 1024 on Linux). */
#define FS_IOV_MAX 1024

/* The real file system. A process-wide singleton; never freed. */
struct fs *fs_posix(void);

/* Frees a list_dir() result. */
void fs_names_free(char **names, size_t n);

/*
 * Helpers over any struct fs that loop over short transfers and EINTR.
 * They return 0 on success and -1 with errno set on failure; a read that
 * reaches end of file early fails with errno 0 and *got (when not NULL)
 * set to the bytes read.
 */
int fs_pread_full(struct fs *fs, int fd, void *buf, size_t n, uint64_t off, size_t *got);
int fs_pwrite_full(struct fs *fs, int fd, const void *buf, size_t n, uint64_t off);

/*
 * Replaces the file at path with n bytes of buf (a new file gets mode)
 * so that a crash leaves
 * either the old or the new content whole: writes "path.tmp", fsyncs
 * it, renames it over path, fsyncs the directory. ST_EIO (naming the
 * file) on failure, when path.tmp is removed.
 */
enum st_status fs_write_atomic(struct fs *fs, const char *path, const void *buf, size_t n,
                               unsigned mode, struct err *err);

/*
 * Reads the whole file at path into *out (malloc'd, NUL-terminated after
 * *len bytes; caller frees). ST_ENOTFOUND when it does not exist, ST_EIO
 * when it cannot be read.
 */
enum st_status fs_read_all(struct fs *fs, const char *path, char **out, size_t *len,
                           struct err *err);

/* The directory part of path into dir (n bytes): "." when there is none. */
void fs_dir_of(const char *path, char *dir, size_t n);

/* ------------------------------------------------------------------ */
/* The fault-injecting in-memory file system (tests, fuzzers, benches). */

/*
 * Operation classes for counting and for fault rules. A rule or counter on
 * a class covers every operation in it:
 *   FS_OP_WRITE  write, pwrite, pwritev, fallocate, ftruncate
 *   FS_OP_SYNC   fsync, fdatasync, fsync_dir
 *   FS_OP_META   open with O_CREAT, rename, unlink, mkdir
 *   FS_OP_READ   read, pread, list_dir, open without O_CREAT
 * FS_OP_DATASYNC and FS_OP_FSYNC count fdatasync and fsync alone (they are
 * also FS_OP_SYNC). FS_OP_ANY is every operation but close and fsize.
 */
enum fs_op_class {
    FS_OP_WRITE = 1 << 0,
    FS_OP_SYNC = 1 << 1,
    FS_OP_META = 1 << 2,
    FS_OP_READ = 1 << 3,
    FS_OP_DATASYNC = 1 << 4,
    FS_OP_FSYNC = 1 << 5,
    FS_OP_ANY = FS_OP_WRITE | FS_OP_SYNC | FS_OP_META | FS_OP_READ,
};

/* What a crash keeps of the data written since the last sync. */
enum fs_crash_mode {
    FS_CRASH_DROP_UNSYNCED, /* keep nothing unsynced: files as of their last sync */
    FS_CRASH_TORN,          /* keep each unsynced 512-byte sector or not, at random */
};

/* Caller frees with fs_fault_free(); every fd must be closed first. */
struct fs *fs_fault_new(void);
void fs_fault_free(struct fs *fs);

/*
 * Fails the nth operation (1 = the next one) of the classes in mask,
 * counting from this call, with errno err (EIO, ENOSPC, ...). A failed
 * write writes nothing. When sticky, every later operation of those
 * classes fails too. Replaces any previous fail rule.
 */
void fs_fault_fail_nth(struct fs *fs, unsigned mask, uint64_t nth, int err, bool sticky);

/*
 * Makes the nth write-class data transfer (write, pwrite, pwritev; 1 =
 * the next one) transfer at most max_bytes bytes and report that short
 * count. When every is true, every transfer from then on is short.
 */
void fs_fault_short_write(struct fs *fs, uint64_t nth, size_t max_bytes, bool every);

/*
 * Limits the total bytes of all file contents (the sum of file sizes).
 * Writes beyond it transfer what fits and then fail with ENOSPC; fallocate
 * and ftruncate that would exceed it fail with ENOSPC. 0 means no limit.
 */
void fs_fault_set_capacity(struct fs *fs, uint64_t bytes);

/*
 * Runs fn(arg, class bits of the operation) at the start of every
 * operation but close and fsize, on the calling thread and without the fs
 * lock, before the operation is counted or its faults applied. A test can
 * use it to block a writer inside an fsync, or to act at an exact point.
 * NULL removes it.
 */
typedef void (*fs_fault_hook_fn)(void *arg, unsigned cls);
void fs_fault_set_hook(struct fs *fs, fs_fault_hook_fn fn, void *arg);

/* Clears every fault rule (not the counters, the capacity or the hook). */
void fs_fault_clear(struct fs *fs);

/* Operations of the classes in mask since fs_fault_new() or the last reset. */
uint64_t fs_fault_count(struct fs *fs, unsigned mask);
void fs_fault_reset_counts(struct fs *fs);

/*
 * Simulates a power failure: every file's contents and size go back to
 * what its last successful fsync/fdatasync made durable (with
 * FS_CRASH_TORN, each unsynced 512-byte sector is kept or dropped at
 * random from seed), and every directory's entries go back to its last
 * fsync_dir. A file whose fsync failed lost its dirty data (Linux drops
 * the dirty pages, so a later fsync "succeeds" without them). Descriptors
 * opened before the crash fail every operation with EIO except close.
 * Directories created with mkdir are durable at once.
 */
void fs_fault_crash(struct fs *fs, enum fs_crash_mode mode, uint64_t seed);

/*
 * Test helpers that bypass faults and counters: read or replace a whole
 * file (set creates it, durable at once, like a file that was there
 * before the test). get returns a malloc'ed copy the caller frees, or
 * NULL when the file does not exist.
 */
uint8_t *fs_fault_get_file(struct fs *fs, const char *path, size_t *len);
void fs_fault_set_file(struct fs *fs, const char *path, const void *data, size_t len);

#endif

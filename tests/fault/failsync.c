/*
 * failsync: an LD_PRELOAD shim that makes the server's storage fail on
 * demand, for the fault-injection integration tests (test_fault.c).
 *
 * The shim wraps fsync(), fdatasync() and the write calls the server uses
 * (write, pwrite, pwritev, their 64-bit names, and fallocate). Until the
 * trigger fires each wrapper calls the real function, found with
 * dlsym(RTLD_NEXT), so the server starts and recovers normally. The
 * trigger is a file: once the path named by STRATA_FAULT_TRIGGER exists,
 * the fault is on, and it stays on for the life of the process (a disk
 * that failed once is not trusted again), even if the file goes away.
 *
 * STRATA_FAULT_MODE picks the fault:
 *
 *   eio     (the default) fsync and fdatasync fail with EIO; writes work,
 *           so the bytes reach the page cache but are never synced;
 *   enospc  writes (and fallocate) to regular files fail with ENOSPC
 *           before writing anything; syncs work.
 *
 * Only descriptors above 2 that refer to regular files are touched, so
 * the log on stderr, pipes, eventfds and sockets keep working. The first
 * injected failure is announced on stderr ("failsync: ...") so the server
 * log shows when the fault began.
 */
/* Both the plain and the 64-bit names are defined here: no redirection. */
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* The wrappers are exported by name for the dynamic linker: no header. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

enum mode {
    MODE_EIO,    /* syncs fail */
    MODE_ENOSPC, /* writes fail */
};

static atomic_bool fired;     /* the trigger was seen: sticky */
static atomic_bool announced; /* the first failure was logged */

typedef int (*sync_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);

/* The next definition of name after this shim; aborts if there is none. */
static void *next_sym(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);

    if (!p)
        abort();
    return p;
}

/*
 * Stores the next definition of name in the function pointer at fp
 * (size bytes). dlsym returns an object pointer; POSIX allows converting
 * it, ISO C does not, so the bytes are copied.
 */
static void load_sym(void *fp, size_t size, const char *name)
{
    void *p = next_sym(name);

    if (size != sizeof(p))
        abort();
    memcpy(fp, &p, size);
}

static enum mode fault_mode(void)
{
    const char *m = getenv("STRATA_FAULT_MODE");

    return m && !strcmp(m, "enospc") ? MODE_ENOSPC : MODE_EIO;
}

/* True once the trigger file has existed. */
static bool is_fired(void)
{
    const char *t;

    if (atomic_load(&fired))
        return true;
    t = getenv("STRATA_FAULT_TRIGGER");
    if (!t || !*t || access(t, F_OK) != 0)
        return false;
    atomic_store(&fired, true);
    return true;
}

/* True for a descriptor the fault applies to: a regular file above 2. */
static bool is_target(int fd)
{
    struct stat st;

    return fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whether a call of this kind on fd fails now; sets errno when it does. */
static bool inject(int fd, enum mode kind, const char *what)
{
    if (fault_mode() != kind || !is_target(fd) || !is_fired())
        return false;
    if (!atomic_exchange(&announced, true)) {
        static write_fn real_write;
        char msg[128];
        size_t n = 0;
        const char *parts[] = {"failsync: injecting ", kind == MODE_EIO ? "EIO" : "ENOSPC",
                               " into ", what, " from now on\n"};

        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            size_t len = strlen(parts[i]);

            if (n + len < sizeof(msg)) {
                memcpy(msg + n, parts[i], len);
                n += len;
            }
        }
        if (!real_write)
            load_sym(&real_write, sizeof(real_write), "write");
        (void)!real_write(2, msg, n);
    }
    errno = kind == MODE_EIO ? EIO : ENOSPC;
    return true;
}

int fsync(int fd)
{
    static sync_fn real;

    if (inject(fd, MODE_EIO, "fsync"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "fsync");
    return real(fd);
}

int fdatasync(int fd)
{
    static sync_fn real;

    if (inject(fd, MODE_EIO, "fdatasync"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "fdatasync");
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static write_fn real;

    if (inject(fd, MODE_ENOSPC, "write"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "write");
    return real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static pwrite_fn real;

    if (inject(fd, MODE_ENOSPC, "pwrite"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "pwrite");
    return real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    static pwrite_fn real;

    if (inject(fd, MODE_ENOSPC, "pwrite64"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "pwrite64");
    return real(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    static pwritev_fn real;

    if (inject(fd, MODE_ENOSPC, "pwritev"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "pwritev");
    return real(fd, iov, iovcnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    static pwritev_fn real;

    if (inject(fd, MODE_ENOSPC, "pwritev64"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "pwritev64");
    return real(fd, iov, iovcnt, off);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    static fallocate_fn real;

    if (inject(fd, MODE_ENOSPC, "fallocate"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "fallocate");
    return real(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    static fallocate_fn real;

    if (inject(fd, MODE_ENOSPC, "fallocate64"))
        return -1;
    if (!real)
        load_sym(&real, sizeof(real), "fallocate64");
    return real(fd, mode, off, len);
}

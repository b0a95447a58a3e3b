/*
 * Unit tests for src/engine/wal and the fault-injecting fs it is tested on.
 *
 * Most tests run on fs_fault_new(), an in-memory file system that counts
 * operations, fails the Nth one, shortens writes, runs out of space and
 * simulates a crash by dropping whatever was not synced. A few run on the
 * real file system in a temporary directory.
 *
 * Payloads are derived from an id so any record read back can be checked
 * on its own: 8 bytes of id, then bytes computed from the id, with a
 * length that is also a function of the id (payload_len()).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/fs.h"
#include "engine/wal.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"

#define DIR      "/wal"
#define FIRST    DIR "/wal-0000000000000001.log"
#define MAX_DONE 20000
#define FILE_HDR 32
#define REC_HDR  40

/* ------------------------------------------------------------------ */
/* Payloads */

static size_t payload_len(uint64_t id)
{
    return 8 + (size_t)((id * 37) % 600);
}

static uint8_t payload_byte(uint64_t id, size_t i)
{
    return (uint8_t)(id * 131 + i * 7 + (i >> 8));
}

static uint8_t *payload_new(uint64_t id, size_t *len)
{
    size_t n = payload_len(id);
    uint8_t *p = malloc(n);

    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(id >> (8 * i));
    for (size_t i = 8; i < n; i++)
        p[i] = payload_byte(id, i);
    *len = n;
    return p;
}

/* The id of a well-formed payload, or 0. */
static uint64_t payload_check(const uint8_t *p, size_t len)
{
    uint64_t id = 0;

    if (len < 8)
        return 0;
    for (int i = 0; i < 8; i++)
        id |= (uint64_t)p[i] << (8 * i);
    if (!id || len != payload_len(id))
        return 0;
    for (size_t i = 8; i < len; i++)
        if (p[i] != payload_byte(id, i))
            return 0;
    return id;
}

/*
 * Loops compare in plain C and assert once: Check records every passing
 * assertion, which costs microseconds each.
 */
static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static uint64_t rec_size(uint64_t len)
{
    return REC_HDR + ((len + 7) & ~7ull);
}

/* ------------------------------------------------------------------ */
/* Completions */

struct done_ent {
    uint64_t id;
    uint64_t seq;
    enum st_status st;
};

static pthread_mutex_t dl_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dl_cv = PTHREAD_COND_INITIALIZER;
static struct done_ent dl[MAX_DONE];
static size_t dl_n;

static void dl_reset(void)
{
    pthread_mutex_lock(&dl_mu);
    dl_n = 0;
    pthread_mutex_unlock(&dl_mu);
}

static void on_done(void *arg, enum st_status st, uint64_t seq)
{
    pthread_mutex_lock(&dl_mu);
    if (dl_n < MAX_DONE)
        dl[dl_n++] = (struct done_ent){(uint64_t)(uintptr_t)arg, seq, st};
    pthread_cond_broadcast(&dl_cv);
    pthread_mutex_unlock(&dl_mu);
}

static size_t dl_count(void)
{
    size_t n;

    pthread_mutex_lock(&dl_mu);
    n = dl_n;
    pthread_mutex_unlock(&dl_mu);
    return n;
}

static void wait_done(size_t n)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&dl_mu);
    while (dl_n < n)
        ck_assert_int_eq(pthread_cond_timedwait(&dl_cv, &dl_mu, &ts), 0);
    pthread_mutex_unlock(&dl_mu);
}

/* The completion of id, or NULL. */
static struct done_ent *dl_find(uint64_t id)
{
    for (size_t i = 0; i < dl_n; i++)
        if (dl[i].id == id)
            return &dl[i];
    return NULL;
}

/* A gate: the first done callback through it blocks the writer until opened. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_entered;
static bool gate_open;

static void on_done_gate(void *arg, enum st_status st, uint64_t seq)
{
    on_done(arg, st, seq);
    pthread_mutex_lock(&gate_mu);
    gate_entered = true;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void gate_reset(void)
{
    gate_entered = false;
    gate_open = false;
}

static void gate_wait_entered(void)
{
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* ------------------------------------------------------------------ */
/* Replayed records */

struct got {
    uint64_t seq;
    uint64_t version;
    uint16_t type;
    uint8_t *p;
    size_t len;
};

static struct got *gv;
static size_t gn;

static void got_reset(void)
{
    for (size_t i = 0; i < gn; i++)
        free(gv[i].p);
    free(gv);
    gv = NULL;
    gn = 0;
}

static enum st_status on_rec(void *arg, const struct wal_record *r)
{
    ST_UNUSED(arg);
    gv = realloc(gv, (gn + 1) * sizeof(*gv));
    gv[gn].seq = r->seq;
    gv[gn].version = r->version;
    gv[gn].type = r->type;
    gv[gn].len = r->len;
    gv[gn].p = malloc(r->len ? r->len : 1);
    if (r->len)
        memcpy(gv[gn].p, r->payload, r->len);
    gn++;
    return ST_OK;
}

/* Checks that the replayed records are well-formed with strictly increasing ids and seqs. */
static void got_check_sane(void)
{
    uint64_t prev_id = 0;
    uint64_t prev_seq = 0;

    for (size_t i = 0; i < gn; i++) {
        uint64_t id = payload_check(gv[i].p, gv[i].len);

        if (!id || id <= prev_id || gv[i].seq <= prev_seq || gv[i].version != id)
            ck_abort_msg("replayed record %zu (seq %llu, id %llu) is not whole or out of order", i,
                         (unsigned long long)gv[i].seq, (unsigned long long)id);
        prev_id = id;
        prev_seq = gv[i].seq;
    }
}

static bool got_has(uint64_t id)
{
    for (size_t i = 0; i < gn; i++)
        if (payload_check(gv[i].p, gv[i].len) == id)
            return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* WAL helpers */

static struct wal_options opts(struct fs *fs, uint64_t file_size)
{
    struct wal_options o = {0};

    o.dir = DIR;
    o.fs = fs;
    o.file_size = file_size;
    o.sync = WAL_SYNC_ALWAYS;
    return o;
}

static enum st_status append_id_cb(struct wal *w, uint64_t id, wal_done_fn done)
{
    size_t len;
    uint8_t *p = payload_new(id, &len);
    struct wal_entry e = {
        .type = WAL_REC_DATA,
        .version = id,
        .payload = p,
        .len = len,
        .done = done,
        .arg = (void *)(uintptr_t)id,
    };
    enum st_status rc = wal_append(w, &e, NULL);

    free(p);
    return rc;
}

static enum st_status append_id(struct wal *w, uint64_t id)
{
    return append_id_cb(w, id, on_done);
}

static struct wal *open_ok(const struct wal_options *o)
{
    struct wal *w = NULL;
    struct err err;
    enum st_status rc;

    got_reset();
    rc = wal_open(o, on_rec, NULL, &w, &err);
    ck_assert_msg(rc == ST_OK, "wal_open: %s", err.msg);
    return w;
}

static void close_ok(struct wal *w)
{
    struct err err;

    ck_assert_msg(wal_close(w, &err) == ST_OK, "wal_close: %s", err.msg);
}

static void replay_ok(const struct wal_options *o)
{
    struct err err;
    enum st_status rc;

    got_reset();
    rc = wal_replay(o, on_rec, NULL, &err);
    ck_assert_msg(rc == ST_OK, "wal_replay: %s", err.msg);
}

/* Writes ids first..last, each its own synced group. */
static void write_ids(struct wal *w, uint64_t first, uint64_t last)
{
    for (uint64_t id = first; id <= last; id++) {
        size_t n = dl_count();

        ck_assert_int_eq(append_id(w, id), ST_OK);
        wait_done(n + 1);
    }
}

/* Offset of the record holding id k in a file that holds ids first.. in order. */
static uint64_t rec_off(uint64_t first, uint64_t k)
{
    uint64_t off = FILE_HDR;

    for (uint64_t id = first; id < k; id++)
        off += rec_size(payload_len(id));
    return off;
}

static struct fs *fault_fs_with_dir(void)
{
    struct fs *fs = fs_fault_new();

    ck_assert_int_eq(fs->mkdir(fs, DIR, 0755), 0);
    return fs;
}

/* A fresh fault fs holding img as the first WAL file. */
static struct fs *fs_with_image(const uint8_t *img, size_t len)
{
    struct fs *fs = fault_fs_with_dir();

    fs_fault_set_file(fs, FIRST, img, len);
    return fs;
}

/* ------------------------------------------------------------------ */
/* Temporary directories on the real file system */

static char tmpdir[256];

static void tmpdir_make(void)
{
    strcpy(tmpdir, "/tmp/strata-test-wal-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmpdir_remove(void)
{
    struct fs *fs = fs_posix();
    char sub[512];
    char **names;
    size_t n;

    snprintf(sub, sizeof(sub), "%s/wal", tmpdir);
    if (fs->list_dir(fs, sub, &names, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            char p[1024];

            snprintf(p, sizeof(p), "%s/%s", sub, names[i]);
            unlink(p);
        }
        fs_names_free(names, n);
        rmdir(sub);
    }
    rmdir(tmpdir);
}

/* ------------------------------------------------------------------ */
/* The fault fs itself */

START_TEST(test_fault_fs_model)
{
    struct fs *fs = fault_fs_with_dir();
    char buf[16];
    size_t len;
    uint8_t *img;
    int fd;

    fd = fs->open(fs, DIR "/a", O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fs->pwrite(fs, fd, "hello", 5, 0), 5);
    ck_assert_int_eq(fs->fdatasync(fs, fd), 0);
    ck_assert_int_eq(fs->fsync_dir(fs, DIR), 0);
    ck_assert_int_eq(fs->pwrite(fs, fd, "HELLO world", 11, 0), 11);
    ck_assert_int_eq(fs->pread(fs, fd, buf, sizeof(buf), 0), 11);
    ck_assert(!memcmp(buf, "HELLO world", 11));
    /* An unsynced name and unsynced bytes both vanish in a crash. */
    ck_assert_int_ge(fs->open(fs, DIR "/b", O_RDWR | O_CREAT, 0644), 0);
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    ck_assert_int_eq(fs->pread(fs, fd, buf, 4, 0), -1);
    ck_assert_int_eq(errno, EIO);
    fs->close(fs, fd);
    img = fs_fault_get_file(fs, DIR "/a", &len);
    ck_assert_uint_eq(len, 5);
    ck_assert(!memcmp(img, "hello", 5));
    free(img);
    ck_assert_ptr_null(fs_fault_get_file(fs, DIR "/b", &len));

    /* A failed fsync drops the dirty data; the next fsync "succeeds" without it. */
    fd = fs->open(fs, DIR "/a", O_RDWR, 0);
    ck_assert_int_eq(fs->pwrite(fs, fd, "J", 1, 0), 1);
    fs_fault_fail_nth(fs, FS_OP_SYNC, 1, EIO, false);
    ck_assert_int_eq(fs->fdatasync(fs, fd), -1);
    ck_assert_int_eq(errno, EIO);
    ck_assert_int_eq(fs->fdatasync(fs, fd), 0);
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    fs->close(fs, fd);
    img = fs_fault_get_file(fs, DIR "/a", &len);
    ck_assert(!memcmp(img, "hello", 5));
    free(img);

    /* Short writes, capacity, counting. */
    fs_fault_reset_counts(fs);
    fd = fs->open(fs, DIR "/c", O_RDWR | O_CREAT, 0644);
    fs_fault_short_write(fs, 1, 3, false);
    ck_assert_int_eq(fs->pwrite(fs, fd, "abcdef", 6, 0), 3);
    ck_assert_int_eq(fs->pwrite(fs, fd, "def", 3, 3), 3);
    fs_fault_set_capacity(fs, 5 + 6 + 2);
    ck_assert_int_eq(fs->pwrite(fs, fd, "ghijk", 5, 6), 2);
    ck_assert_int_eq(fs->pwrite(fs, fd, "ijk", 3, 8), -1);
    ck_assert_int_eq(errno, ENOSPC);
    ck_assert_int_eq(fs->fallocate(fs, fd, 0, 100), -1);
    ck_assert_int_eq(errno, ENOSPC);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_WRITE), 5);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_META), 1);
    fs->close(fs, fd);
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Format and round trips */

START_TEST(test_format_bytes)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 8192);
    struct wal *w = open_ok(&o);
    struct wal_entry e = {.type = 7,
                          .version = 0x1122334455667788ull,
                          .payload = "abcdefghijk",
                          .len = 11,
                          .done = on_done};
    uint8_t *img;
    const uint8_t *r;
    size_t len;

    dl_reset();
    ck_assert_int_eq(wal_append(w, &e, NULL), ST_OK);
    wait_done(1);
    ck_assert_uint_eq(dl[0].seq, 1);
    close_ok(w);
    img = fs_fault_get_file(fs, FIRST, &len);
    ck_assert_ptr_nonnull(img);
    ck_assert_uint_eq(len, 8192); /* pre-allocated */
    /* File header. */
    ck_assert(!memcmp(img, "STRATAWL", 8));
    ck_assert_uint_eq(img[8], 1);
    ck_assert_uint_eq(img[12], 32);
    ck_assert_uint_eq(img[16], 1);
    ck_assert_uint_eq(img[28] | img[29] << 8 | (uint32_t)img[30] << 16 | (uint32_t)img[31] << 24,
                      crc32c(img, 28));
    /* Record header. */
    r = img + 32;
    ck_assert_uint_eq(r[0] | r[1] << 8 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24,
                      crc32c(r + 4, 36));
    ck_assert_uint_eq(r[4] | r[5] << 8 | (uint32_t)r[6] << 16 | (uint32_t)r[7] << 24,
                      crc32c("abcdefghijk", 11));
    ck_assert_uint_eq(r[8], 11);
    ck_assert_uint_eq(r[12], 7);
    ck_assert_uint_eq(r[14], 0);
    ck_assert_uint_eq(r[16], 1);
    ck_assert_uint_eq(r[24], 0x88);
    ck_assert_uint_eq(r[31], 0x11);
    ck_assert_uint_eq(r[32], 0); /* nothing was durable before */
    ck_assert(!memcmp(r + 40, "abcdefghijk", 11));
    ck_assert(is_zero(r + 51, 5));                    /* padding */
    ck_assert(is_zero(img + 32 + 56, len - 32 - 56)); /* pre-allocated space */
    free(img);

    replay_ok(&o);
    ck_assert_uint_eq(gn, 1);
    ck_assert_uint_eq(gv[0].type, 7);
    ck_assert_uint_eq(gv[0].version, 0x1122334455667788ull);
    ck_assert_uint_eq(gv[0].len, 11);
    ck_assert(!memcmp(gv[0].p, "abcdefghijk", 11));
    got_reset();
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_roundtrip_posix)
{
    char dir[512];
    struct wal_options o = {0};
    struct wal_stats st;
    struct wal *w;
    size_t sizes[] = {0, 1, 7, 8, 9, 1000, 100000, 3};
    char path[600];

    tmpdir_make();
    snprintf(dir, sizeof(dir), "%s/wal", tmpdir);
    o.dir = dir;
    o.file_size = 1 << 20;
    w = open_ok(&o);
    ck_assert_uint_eq(gn, 0);
    dl_reset();
    for (size_t i = 0; i < ST_ARRAY_SIZE(sizes); i++) {
        uint8_t *p = malloc(sizes[i] + 1);
        struct wal_entry e = {.type = (uint16_t)(1 + i),
                              .version = 100 + i,
                              .payload = p,
                              .len = sizes[i],
                              .done = on_done,
                              .arg = (void *)(uintptr_t)i};

        for (size_t k = 0; k < sizes[i]; k++)
            p[k] = (uint8_t)(k ^ i);
        ck_assert_int_eq(wal_append(w, &e, NULL), ST_OK);
        free(p); /* copied */
    }
    wait_done(ST_ARRAY_SIZE(sizes));
    for (size_t i = 0; i < ST_ARRAY_SIZE(sizes); i++) {
        ck_assert_int_eq(dl[i].st, ST_OK);
        ck_assert_uint_eq(dl[i].id, i);
        ck_assert_uint_eq(dl[i].seq, i + 1);
    }
    wal_get_stats(w, &st);
    ck_assert_uint_eq(st.appends, ST_ARRAY_SIZE(sizes));
    ck_assert_uint_eq(st.next_seq, ST_ARRAY_SIZE(sizes) + 1);
    ck_assert_uint_ge(st.syncs, 1);
    close_ok(w);
    snprintf(path, sizeof(path), "%s/wal-0000000000000001.log", dir);
    ck_assert_int_eq(access(path, F_OK), 0);

    w = open_ok(&o);
    ck_assert_uint_eq(gn, ST_ARRAY_SIZE(sizes));
    for (size_t i = 0; i < gn; i++) {
        ck_assert_uint_eq(gv[i].seq, i + 1);
        ck_assert_uint_eq(gv[i].type, 1 + i);
        ck_assert_uint_eq(gv[i].version, 100 + i);
        ck_assert_uint_eq(gv[i].len, sizes[i]);
        size_t bad = 0;

        for (size_t k = 0; k < sizes[i]; k++)
            bad += gv[i].p[k] != (uint8_t)(k ^ i);
        ck_assert_uint_eq(bad, 0);
    }
    /* Appends continue after the last record. */
    dl_reset();
    ck_assert_int_eq(append_id(w, 1), ST_OK);
    wait_done(1);
    ck_assert_uint_eq(dl[0].seq, ST_ARRAY_SIZE(sizes) + 1);
    close_ok(w);
    replay_ok(&o);
    ck_assert_uint_eq(gn, ST_ARRAY_SIZE(sizes) + 1);
    ck_assert_uint_eq(payload_check(gv[gn - 1].p, gv[gn - 1].len), 1);
    got_reset();
    tmpdir_remove();
}
END_TEST

START_TEST(test_invalid_arguments)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 8192);
    struct wal *w;
    struct wal_entry e = {.type = 0, .payload = "x", .len = 1};
    struct err err;

    o.max_record = 1000;
    w = open_ok(&o);
    ck_assert_int_eq(wal_append(w, &e, &err), ST_EINVAL);
    e.type = 0xff01;
    ck_assert_int_eq(wal_append(w, &e, &err), ST_EINVAL);
    e.type = WAL_REC_DATA;
    e.len = 1001;
    ck_assert_int_eq(wal_append(w, &e, &err), ST_ETOOLARGE);
    ck_assert_ptr_nonnull(strstr(err.msg, "1001"));
    e.payload = NULL;
    e.len = 5;
    ck_assert_int_eq(wal_append(w, &e, &err), ST_EINVAL);
    close_ok(w);

    o.dir = NULL;
    ck_assert_int_eq(wal_open(&o, NULL, NULL, &w, &err), ST_EINVAL);
    o = opts(fs, 8192);
    o.sync = WAL_SYNC_INTERVAL;
    ck_assert_int_eq(wal_open(&o, NULL, NULL, &w, &err), ST_EINVAL);
    o = opts(fs, 8192);
    o.read_only = true;
    ck_assert_int_eq(wal_open(&o, NULL, NULL, &w, &err), ST_EINVAL);
    o.dir = "/nowhere";
    ck_assert_int_eq(wal_replay(&o, NULL, NULL, &err), ST_ENOTFOUND);
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Group commit */

START_TEST(test_group_commit_shares_fsyncs)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w = open_ok(&o);
    struct wal_stats st;
    uint64_t writes;

    dl_reset();
    gate_reset();
    fs_fault_reset_counts(fs);
    /* Record 1 completes and holds the writer in its callback ... */
    ck_assert_int_eq(append_id_cb(w, 1, on_done_gate), ST_OK);
    gate_wait_entered();
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_DATASYNC), 1);
    writes = fs_fault_count(fs, FS_OP_WRITE);
    /* ... while 99 more arrive; they become one group with one fdatasync. */
    for (uint64_t id = 2; id <= 100; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    gate_release();
    wait_done(100);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_DATASYNC), 2);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_WRITE), writes + 1);
    for (size_t i = 0; i < 100; i++) {
        ck_assert_int_eq(dl[i].st, ST_OK);
        ck_assert_uint_eq(dl[i].id, i + 1); /* completion order = append order */
        ck_assert_uint_eq(dl[i].seq, i + 1);
    }
    wal_get_stats(w, &st);
    ck_assert_uint_eq(st.groups, 2);
    ck_assert_uint_eq(st.durable_seq, 100);
    close_ok(w);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 100);
    got_check_sane();
    got_reset();
    fs_fault_free(fs);
}
END_TEST

struct producer {
    struct wal *w;
    uint64_t base;
    int n;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;

    for (int i = 0; i < p->n; i++) {
        uint64_t id = p->base + (uint64_t)i;
        enum st_status rc;

        while ((rc = append_id(p->w, id)) == ST_EAGAIN)
            sched_yield();
        ck_assert_int_eq(rc, ST_OK);
    }
    return NULL;
}

START_TEST(test_concurrent_producers)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 64 << 10);
    struct producer prod[4];
    pthread_t th[4];
    struct wal *w;
    uint64_t last[4] = {0};
    uint64_t prev_seq = 0;

    o.max_queued_bytes = 32 << 10; /* exercise EAGAIN too */
    w = open_ok(&o);
    dl_reset();
    fs_fault_reset_counts(fs);
    for (int t = 0; t < 4; t++) {
        prod[t] = (struct producer){w, (uint64_t)(t + 1) * 100000, 500};
        pthread_create(&th[t], NULL, producer_main, &prod[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    wait_done(2000);
    /* Every record completed once, in seq order; each producer's in its order. */
    for (size_t i = 0; i < 2000; i++) {
        int t = (int)(dl[i].id / 100000) - 1;

        ck_assert_int_eq(dl[i].st, ST_OK);
        ck_assert_uint_gt(dl[i].seq, prev_seq);
        ck_assert_uint_gt(dl[i].id, last[t]);
        last[t] = dl[i].id;
        prev_seq = dl[i].seq;
    }
    ck_assert_uint_le(fs_fault_count(fs, FS_OP_DATASYNC), 2000 + 100);
    close_ok(w);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 2000);
    for (size_t i = 0; i < gn; i++)
        ck_assert_uint_eq(payload_check(gv[i].p, gv[i].len), dl[i].id);
    got_reset();
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_backpressure_eagain)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w;
    struct err err;
    uint64_t id = 2;
    size_t accepted;

    o.max_queued_bytes = 8192;
    w = open_ok(&o);
    dl_reset();
    gate_reset();
    ck_assert_int_eq(append_id_cb(w, 1, on_done_gate), ST_OK);
    gate_wait_entered();
    /* Record 1 still counts until its callback returns; the queue fills up. */
    while (append_id(w, id) == ST_OK)
        id++;
    ck_assert_int_eq(append_id(w, id), ST_EAGAIN);
    accepted = (size_t)(id - 1);
    ck_assert_uint_gt(accepted, 2);
    ck_assert_uint_lt(accepted, 40);
    gate_release();
    wait_done(accepted);
    ck_assert_int_eq(wal_error(w, &err), ST_OK);
    ck_assert_int_eq(append_id(w, id), ST_OK);
    wait_done(accepted + 1);
    close_ok(w);
    fs_fault_free(fs);
}
END_TEST

static void on_done_free(void *arg, enum st_status st, uint64_t seq)
{
    uint8_t *p = arg;
    uint64_t id = 0;

    for (int i = 0; i < 8; i++)
        id |= (uint64_t)p[i] << (8 * i);
    memset(p, 0xee, payload_len(id));
    free(p);
    on_done((void *)(uintptr_t)id, st, seq);
}

START_TEST(test_borrowed_payloads)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 16 << 10);
    struct wal *w = open_ok(&o);

    dl_reset();
    for (uint64_t id = 1; id <= 50; id++) {
        size_t len;
        uint8_t *p = payload_new(id, &len);
        struct wal_entry e = {.type = WAL_REC_DATA,
                              .version = id,
                              .payload = p,
                              .len = len,
                              .flags = WAL_F_BORROW,
                              .done = on_done_free,
                              .arg = p};

        ck_assert_int_eq(wal_append(w, &e, NULL), ST_OK);
    }
    wait_done(50);
    close_ok(w);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 50);
    got_check_sane();
    got_reset();
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_sync_modes)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w;
    struct timespec ts = {0, 5 * 1000000};

    /* never: acknowledged after the write, synced only at close. */
    o.sync = WAL_SYNC_NEVER;
    w = open_ok(&o);
    dl_reset();
    fs_fault_reset_counts(fs);
    write_ids(w, 1, 20);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_DATASYNC), 0);
    close_ok(w);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_DATASYNC), 1);
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 20);

    /* interval: acknowledged at once, synced within the interval. */
    o.sync = WAL_SYNC_INTERVAL;
    o.sync_interval_ms = 30;
    w = open_ok(&o);
    dl_reset();
    fs_fault_reset_counts(fs);
    write_ids(w, 21, 30);
    for (int i = 0; i < 400 && fs_fault_count(fs, FS_OP_DATASYNC) == 0; i++)
        nanosleep(&ts, NULL);
    ck_assert_uint_ge(fs_fault_count(fs, FS_OP_DATASYNC), 1);
    ck_assert_uint_lt(fs_fault_count(fs, FS_OP_DATASYNC), 10);
    /* Once synced, a crash keeps them all. */
    {
        struct wal_stats st;

        for (int i = 0; i < 400; i++) {
            wal_get_stats(w, &st);
            if (st.durable_seq >= 30)
                break;
            nanosleep(&ts, NULL);
        }
        ck_assert_uint_ge(st.durable_seq, 30);
    }
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    wal_close(w, NULL);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 30);
    got_check_sane();
    got_reset();
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Torn tails and corruption */

/* A WAL image of ids 1..n, each its own synced group, sealed off by close. */
static uint8_t *image_of(uint64_t n, uint64_t file_size, size_t *len)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, file_size);
    struct wal *w = open_ok(&o);
    uint8_t *img;

    dl_reset();
    write_ids(w, 1, n);
    close_ok(w);
    img = fs_fault_get_file(fs, FIRST, len);
    ck_assert_ptr_nonnull(img);
    fs_fault_free(fs);
    return img;
}

START_TEST(test_torn_tail_every_offset)
{
    size_t len;
    uint8_t *img = image_of(3, 4096, &len);
    uint64_t last_off = rec_off(1, 3);
    uint64_t last_end = last_off + rec_size(payload_len(3));
    uint64_t last_covered = last_off + REC_HDR + payload_len(3);

    /*
     * Mode 0 ends the file at every offset of record 3, padding included;
     * modes 1 and 2 overwrite from every offset of the bytes its CRCs
     * cover (its padding is not checked) with zeros or garbage.
     */
    for (int mode = 0; mode < 3; mode++) {
        for (uint64_t k = last_off; k < (mode ? last_covered : last_end); k++) {
            uint8_t *copy = malloc(len);
            size_t clen = len;
            struct fs *fs;
            struct wal_options o;
            struct wal *w;
            uint8_t *after;
            size_t alen;

            memcpy(copy, img, len);
            if (mode == 0)
                clen = (size_t)k; /* the file ends inside the record */
            else
                memset(copy + k, mode == 1 ? 0 : 0xa5, len - (size_t)k); /* zeros or garbage */
            fs = fs_with_image(copy, clen);
            o = opts(fs, 4096);
            w = open_ok(&o);
            ck_assert_msg(gn == 2, "mode %d cut at %llu: %zu records", mode, (unsigned long long)k,
                          gn);
            {
                struct wal_stats st;
                bool zero = true;
                uint64_t want;

                for (uint64_t i = last_off; i < k; i++)
                    zero = zero && !img[i];
                if (mode == 2)
                    want = len - last_off;
                else if (zero)
                    want = 0; /* nothing but zeros after record 2: not even torn */
                else
                    want = (mode == 0 ? k : len) - last_off;
                wal_get_stats(w, &st);
                ck_assert_uint_eq(st.replay_cut, want);
            }
            got_check_sane();
            /* Nothing but zeros (or nothing) remains past record 2. */
            after = fs_fault_get_file(fs, FIRST, &alen);
            ck_assert(alen <= last_off || is_zero(after + last_off, alen - (size_t)last_off));
            free(after);
            dl_reset();
            ck_assert_int_eq(append_id(w, 3), ST_OK);
            wait_done(1);
            ck_assert_uint_eq(dl[0].seq, 3);
            close_ok(w);
            replay_ok(&o);
            ck_assert_uint_eq(gn, 3);
            got_check_sane();
            got_reset();
            fs_fault_free(fs);
            free(copy);
        }
    }
    free(img);
}
END_TEST

START_TEST(test_bit_flip_in_the_middle_is_corruption)
{
    size_t len;
    uint8_t *img = image_of(5, 4096, &len);
    uint64_t off2 = rec_off(1, 2);
    uint64_t end2 = off2 + REC_HDR + payload_len(2); /* padding is not covered */
    char want[64];

    snprintf(want, sizeof(want), "offset %llu", (unsigned long long)off2);
    for (uint64_t i = off2; i < end2; i++) {
        struct fs *fs;
        struct wal_options o;
        struct err err;
        enum st_status rc;

        img[i] ^= (uint8_t)(1u << (i % 8));
        fs = fs_with_image(img, len);
        o = opts(fs, 4096);
        o.read_only = true;
        got_reset();
        rc = wal_replay(&o, on_rec, NULL, &err);
        ck_assert_msg(rc == ST_ECORRUPT, "flip at %llu: %s", (unsigned long long)i, status_str(rc));
        ck_assert_ptr_nonnull(strstr(err.msg, "wal-0000000000000001.log"));
        ck_assert_msg(strstr(err.msg, want), "%s", err.msg);
        ck_assert_uint_eq(gn, 1);
        img[i] ^= (uint8_t)(1u << (i % 8));
        fs_fault_free(fs);
    }

    /* wal_open refuses too; with truncate_on_corruption it cuts and goes on. */
    img[off2 + REC_HDR] ^= 1;
    {
        struct fs *fs = fs_with_image(img, len);
        struct wal_options o = opts(fs, 4096);
        struct wal *w = NULL;
        struct err err;

        ck_assert_int_eq(wal_open(&o, on_rec, NULL, &w, &err), ST_ECORRUPT);
        o.truncate_on_corruption = true;
        w = open_ok(&o);
        ck_assert_uint_eq(gn, 1);
        dl_reset();
        ck_assert_int_eq(append_id(w, 2), ST_OK);
        wait_done(1);
        close_ok(w);
        o.truncate_on_corruption = false;
        replay_ok(&o);
        ck_assert_uint_eq(gn, 2);
        got_check_sane();
        fs_fault_free(fs);
    }
    got_reset();
    free(img);
}
END_TEST

START_TEST(test_bit_flip_in_the_tail_is_cut)
{
    size_t len;
    uint8_t *img = image_of(5, 4096, &len);
    uint64_t off5 = rec_off(1, 5);
    uint64_t end5 = off5 + REC_HDR + payload_len(5);

    for (uint64_t i = off5; i < end5; i++) {
        struct fs *fs;
        struct wal_options o;

        img[i] ^= 0x40;
        fs = fs_with_image(img, len);
        o = opts(fs, 4096);
        o.read_only = true;
        replay_ok(&o);
        ck_assert_uint_eq(gn, 4);
        img[i] ^= 0x40;
        fs_fault_free(fs);
    }
    got_reset();
    free(img);
}
END_TEST

START_TEST(test_damage_in_last_unsynced_group_is_cut)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 4096);
    struct wal *w = open_ok(&o);
    uint8_t *img;
    size_t len;
    uint64_t off4 = rec_off(1, 4);

    /* 1, 2 alone; 3 holds the writer; 4 and 5 form the last group. */
    dl_reset();
    gate_reset();
    write_ids(w, 1, 2);
    ck_assert_int_eq(append_id_cb(w, 3, on_done_gate), ST_OK);
    gate_wait_entered();
    ck_assert_int_eq(append_id(w, 4), ST_OK);
    ck_assert_int_eq(append_id(w, 5), ST_OK);
    gate_release();
    wait_done(5);
    close_ok(w);
    img = fs_fault_get_file(fs, FIRST, &len);
    fs_fault_free(fs);

    /*
     * Record 5 only claims seqs <= 3 durable, so damage to 4 may be a
     * crash that wrote 5's pages and not 4's: cut both.
     */
    img[off4 + REC_HDR + 3] ^= 0x01;
    fs = fs_with_image(img, len);
    o = opts(fs, 4096);
    w = open_ok(&o);
    ck_assert_uint_eq(gn, 3);
    close_ok(w);
    fs_fault_free(fs);
    img[off4 + REC_HDR + 3] ^= 0x01;

    /* The same damage to 3, which 4 and 5 prove synced, is corruption. */
    img[rec_off(1, 3) + REC_HDR] ^= 0x01;
    fs = fs_with_image(img, len);
    o = opts(fs, 4096);
    {
        struct err err;

        got_reset();
        ck_assert_int_eq(wal_replay(&o, on_rec, NULL, &err), ST_ECORRUPT);
        ck_assert_ptr_nonnull(strstr(err.msg, "already durable"));
    }
    fs_fault_free(fs);
    got_reset();
    free(img);
}
END_TEST

START_TEST(test_bad_headers_and_leftovers)
{
    size_t len;
    uint8_t *img = image_of(3, 4096, &len);
    struct fs *fs;
    struct wal_options o;
    struct wal *w;
    struct err err;
    size_t n;
    char **names;

    /* A damaged file header is corruption, never a torn tail. */
    img[3] ^= 1;
    fs = fs_with_image(img, len);
    o = opts(fs, 4096);
    ck_assert_int_eq(wal_replay(&o, on_rec, NULL, &err), ST_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "bad magic"));
    fs_fault_free(fs);
    img[3] ^= 1;

    /* A name that disagrees with the header. */
    fs = fault_fs_with_dir();
    fs_fault_set_file(fs, DIR "/wal-0000000000000002.log", img, len);
    o = opts(fs, 4096);
    ck_assert_int_eq(wal_replay(&o, on_rec, NULL, &err), ST_ECORRUPT);
    fs_fault_free(fs);

    /* A stale .tmp goes away; foreign files stay. */
    fs = fs_with_image(img, len);
    fs_fault_set_file(fs, DIR "/wal-0000000000000009.tmp", "junk", 4);
    fs_fault_set_file(fs, DIR "/README", "hi", 2);
    o = opts(fs, 4096);
    w = open_ok(&o);
    ck_assert_uint_eq(gn, 3);
    close_ok(w);
    ck_assert_int_eq(fs->list_dir(fs, DIR, &names, &n), 0);
    ck_assert_uint_eq(n, 2);
    fs_names_free(names, n);
    fs_fault_free(fs);
    got_reset();
    free(img);

    /*
     * A sealed file followed by an empty one (a crash while creating it, on
     * a file system that shows the name before the header): the empty file
     * goes, and appends start a new one.
     */
    fs = fault_fs_with_dir();
    o = opts(fs, 4096);
    w = open_ok(&o);
    dl_reset();
    for (uint64_t id = 1; id <= 20; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    wait_done(20);
    close_ok(w);
    {
        uint64_t seal_next = 0;
        struct fs *fs2 = fault_fs_with_dir();
        char path[256];
        size_t first_ids = 0;

        ck_assert_int_eq(fs->list_dir(fs, DIR, &names, &n), 0);
        for (size_t i = 0; i < n; i++) {
            uint64_t seq = strtoull(names[i] + 4, NULL, 16);

            if (seq > 1 && (!seal_next || seq < seal_next))
                seal_next = seq;
        }
        fs_names_free(names, n);
        ck_assert_uint_gt(seal_next, 1);
        img = fs_fault_get_file(fs, FIRST, &len);
        fs_fault_set_file(fs2, FIRST, img, len);
        snprintf(path, sizeof(path), DIR "/wal-%016llx.log", (unsigned long long)seal_next);
        fs_fault_set_file(fs2, path, "", 0);
        o = opts(fs2, 4096);
        w = open_ok(&o);
        first_ids = gn;
        ck_assert_uint_gt(first_ids, 1);
        ck_assert_uint_lt(first_ids, 20);
        ck_assert_int_eq(append_id(w, 21), ST_OK);
        wait_done(21);
        close_ok(w);
        replay_ok(&o);
        ck_assert_uint_eq(gn, first_ids + 1);
        got_check_sane();
        fs_fault_free(fs2);
        free(img);
    }
    fs_fault_free(fs);
    got_reset();
}
END_TEST

/* Opens, closes and returns what was logged at warn level and above. */
static char *open_close_logged(const struct wal_options *o)
{
    static char buf[4096];
    int fds[2];
    ssize_t n;
    struct wal *w;

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    log_set_fd(fds[1]);
    log_set_level(ST_LOG_WARN);
    w = open_ok(o);
    close_ok(w);
    log_set_level(ST_LOG_ERROR);
    log_set_fd(2);
    n = read(fds[0], buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    close(fds[1]);
    return buf;
}

START_TEST(test_torn_tail_is_logged_clean_end_is_not)
{
    size_t len;
    uint8_t *img = image_of(3, 4096, &len);
    struct fs *fs = fs_with_image(img, len);
    struct wal_options o = opts(fs, 4096);
    char *log;

    log = open_close_logged(&o);
    ck_assert_msg(log[0] == '\0', "clean reopen logged: %s", log);
    fs_fault_free(fs);

    img[rec_off(1, 3) + REC_HDR + 2] ^= 0x08;
    fs = fs_with_image(img, len);
    o = opts(fs, 4096);
    log = open_close_logged(&o);
    ck_assert_msg(
        strstr(log, "level=warn wal: cutting torn tail file='/wal/wal-0000000000000001.log'"), "%s",
        log);
    ck_assert_ptr_nonnull(strstr(log, "record payload checksum mismatch"));
    fs_fault_free(fs);
    got_reset();
    free(img);
}
END_TEST

static enum st_status on_rec_stop_at_3(void *arg, const struct wal_record *r)
{
    ST_UNUSED(arg);
    return r->seq == 3 ? ST_EINVAL : ST_OK;
}

START_TEST(test_replay_callback_stops)
{
    size_t len;
    uint8_t *img = image_of(5, 4096, &len);
    struct fs *fs = fs_with_image(img, len);
    struct wal_options o = opts(fs, 4096);
    struct wal *w = NULL;
    struct err err;

    ck_assert_int_eq(wal_open(&o, on_rec_stop_at_3, NULL, &w, &err), ST_EINVAL);
    ck_assert_ptr_null(w);
    fs_fault_free(fs);
    free(img);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Rotation and trimming */

START_TEST(test_rotation_replay_and_trim)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 4096);
    struct wal *w = open_ok(&o);
    struct wal_stats st;
    size_t removed;
    char **names;
    size_t n;
    uint64_t seq30;
    struct err err;

    dl_reset();
    for (uint64_t id = 1; id <= 100; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    wait_done(100);
    wal_get_stats(w, &st);
    ck_assert_uint_gt(st.files, 8);
    ck_assert_uint_eq(st.rotations, st.files - 1);
    seq30 = dl_find(30)->seq;
    close_ok(w);
    ck_assert_int_eq(fs->list_dir(fs, DIR, &names, &n), 0);
    ck_assert_uint_eq(n, st.files);
    fs_names_free(names, n);

    replay_ok(&o);
    ck_assert_uint_eq(gn, 100);
    got_check_sane();
    for (size_t i = 0; i < gn; i++)
        ck_assert_uint_eq(gv[i].seq, dl[i].seq);

    /* Trim by seq: files wholly at or below record 30's seq go. */
    w = open_ok(&o);
    ck_assert_int_eq(wal_trim_seq(w, seq30, &removed, &err), ST_OK);
    ck_assert_uint_ge(removed, 1);
    close_ok(w);
    replay_ok(&o);
    got_check_sane();
    ck_assert_uint_le(payload_check(gv[0].p, gv[0].len), 31);
    ck_assert_uint_gt(payload_check(gv[0].p, gv[0].len), 1);
    ck_assert_uint_eq(payload_check(gv[gn - 1].p, gv[gn - 1].len), 100);

    /* Trim by version (= id here). */
    w = open_ok(&o);
    ck_assert_int_eq(wal_trim(w, 50, &removed, &err), ST_OK);
    ck_assert_uint_ge(removed, 1);
    close_ok(w);
    replay_ok(&o);
    got_check_sane();
    ck_assert_uint_le(payload_check(gv[0].p, gv[0].len), 51);
    ck_assert_uint_gt(payload_check(gv[0].p, gv[0].len), 31);

    /* Trim everything: the newest file stays, appends carry on. */
    w = open_ok(&o);
    ck_assert_int_eq(wal_trim(w, UINT64_MAX, &removed, &err), ST_OK);
    wal_get_stats(w, &st);
    ck_assert_uint_eq(st.files, 1);
    dl_reset();
    write_ids(w, 101, 101);
    close_ok(w);
    replay_ok(&o);
    got_check_sane();
    ck_assert_uint_eq(payload_check(gv[gn - 1].p, gv[gn - 1].len), 101);
    got_reset();
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_missing_middle_file_is_corruption)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 4096);
    struct wal *w = open_ok(&o);
    char **names;
    size_t n;
    struct err err;
    char path[256];
    char *second = NULL;

    dl_reset();
    for (uint64_t id = 1; id <= 40; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    wait_done(40);
    close_ok(w);
    ck_assert_int_eq(fs->list_dir(fs, DIR, &names, &n), 0);
    ck_assert_uint_ge(n, 3);
    /* Names sort by seq; delete the second. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];

                names[i] = names[j];
                names[j] = t;
            }
    second = names[1];
    snprintf(path, sizeof(path), "%s/%s", DIR, second);
    ck_assert_int_eq(fs->unlink(fs, path), 0);
    fs_names_free(names, n);
    ck_assert_int_eq(wal_replay(&o, on_rec, NULL, &err), ST_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, "previous file ends"));
    got_reset();
    fs_fault_free(fs);
}
END_TEST

/*
 * truncate_on_corruption with the damage in a file that is not the newest:
 * that file is cut and becomes the newest, the later ones go, and appends
 * continue there. (Found by fuzz_wal: the file was still open read-only.)
 */
START_TEST(test_truncate_on_corruption_in_older_file)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 4096);
    struct wal *w = open_ok(&o);
    uint8_t *img;
    size_t len;
    char **names;
    size_t n;
    struct err err;

    dl_reset();
    write_ids(w, 1, 40);
    close_ok(w);
    img = fs_fault_get_file(fs, FIRST, &len);
    img[rec_off(1, 2) + REC_HDR] ^= 0x20;
    fs_fault_set_file(fs, FIRST, img, len);
    free(img);
    ck_assert_int_eq(wal_replay(&o, on_rec, NULL, &err), ST_ECORRUPT);

    o.truncate_on_corruption = true;
    w = open_ok(&o);
    ck_assert_uint_eq(gn, 1);
    dl_reset();
    write_ids(w, 2, 3);
    ck_assert_int_eq(wal_error(w, &err), ST_OK);
    close_ok(w);
    ck_assert_int_eq(fs->list_dir(fs, DIR, &names, &n), 0);
    ck_assert_uint_eq(n, 1);
    fs_names_free(names, n);
    o.truncate_on_corruption = false;
    replay_ok(&o);
    ck_assert_uint_eq(gn, 3);
    got_check_sane();
    got_reset();
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_large_record_posix)
{
    char dir[512];
    struct wal_options o = {0};
    struct wal *w;
    size_t big = 8 << 20;
    uint8_t *p = malloc(big);
    struct wal_entry e = {
        .type = WAL_REC_DATA, .version = 1, .payload = p, .len = big, .done = on_done};
    struct err err;

    for (size_t i = 0; i < big; i++)
        p[i] = (uint8_t)(i * 2654435761u >> 13);
    tmpdir_make();
    snprintf(dir, sizeof(dir), "%s/wal", tmpdir);
    o.dir = dir;
    o.file_size = 1 << 20;
    o.max_record = 16 << 20;
    w = open_ok(&o);
    dl_reset();
    ck_assert_int_eq(wal_append(w, &e, NULL), ST_OK);
    ck_assert_int_eq(append_id(w, 2), ST_OK);
    ck_assert_int_eq(wal_append(w, &e, NULL), ST_OK);
    wait_done(3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(dl[i].st, ST_OK);
    e.len = (16 << 20) + 1;
    ck_assert_int_eq(wal_append(w, &e, &err), ST_ETOOLARGE);
    close_ok(w);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 3);
    ck_assert_uint_eq(gv[0].len, big);
    ck_assert(!memcmp(gv[0].p, p, big));
    ck_assert(!memcmp(gv[2].p, p, big));
    ck_assert_uint_eq(payload_check(gv[1].p, gv[1].len), 2);
    got_reset();
    free(p);
    tmpdir_remove();
}
END_TEST

/* ------------------------------------------------------------------ */
/* I/O errors */

START_TEST(test_fsync_failure_is_sticky)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w = open_ok(&o);
    struct err err;
    uint64_t syncs;

    dl_reset();
    write_ids(w, 1, 2);
    fs_fault_fail_nth(fs, FS_OP_DATASYNC, 1, EIO, false);
    ck_assert_int_eq(append_id(w, 3), ST_OK);
    wait_done(3);
    ck_assert_int_eq(dl[2].st, ST_EIO);
    ck_assert_uint_eq(dl[2].seq, 0);
    ck_assert_int_eq(wal_error(w, &err), ST_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "fdatasync"));
    ck_assert_int_eq(err.sys_errno, EIO);
    /* The fs would succeed now; the WAL must not try again. */
    syncs = fs_fault_count(fs, FS_OP_SYNC | FS_OP_WRITE);
    ck_assert_int_eq(append_id(w, 4), ST_EIO);
    ck_assert_int_eq(wal_close(w, &err), ST_EIO);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_SYNC | FS_OP_WRITE), syncs);
    ck_assert_uint_eq(dl_count(), 3);

    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    w = open_ok(&o);
    ck_assert(got_has(1) && got_has(2));
    ck_assert(!got_has(4));
    got_check_sane();
    close_ok(w);
    got_reset();
    fs_fault_free(fs);
}
END_TEST

/* A hook that holds the writer inside its next fdatasync until released. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static bool hold_armed;
static bool hold_inside;

static void hold_hook(void *arg, unsigned cls)
{
    ST_UNUSED(arg);
    if (!(cls & FS_OP_DATASYNC))
        return;
    pthread_mutex_lock(&hold_mu);
    if (hold_armed) {
        hold_inside = true;
        pthread_cond_broadcast(&hold_cv);
        while (hold_armed)
            pthread_cond_wait(&hold_cv, &hold_mu);
    }
    pthread_mutex_unlock(&hold_mu);
}

START_TEST(test_append_never_waits_for_the_disk)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w = open_ok(&o);
    uint64_t ops;
    struct err err;

    dl_reset();
    write_ids(w, 1, 1);
    hold_armed = true;
    hold_inside = false;
    fs_fault_set_hook(fs, hold_hook, NULL);
    ck_assert_int_eq(append_id(w, 2), ST_OK);
    pthread_mutex_lock(&hold_mu);
    while (!hold_inside)
        pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);

    /* The writer is stuck in fdatasync: appends still return at once. */
    for (uint64_t id = 3; id <= 20; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    ck_assert_uint_eq(dl_count(), 1);

    /* That fdatasync fails. 3..20 were queued before anyone knew. */
    fs_fault_fail_nth(fs, FS_OP_DATASYNC, 1, EIO, false);
    ops = fs_fault_count(fs, FS_OP_ANY);
    pthread_mutex_lock(&hold_mu);
    hold_armed = false;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
    wait_done(20);
    for (size_t i = 1; i < 20; i++) {
        ck_assert_int_eq(dl[i].st, ST_EIO);
        ck_assert_uint_eq(dl[i].id, i + 1);
    }
    /* Only the failed fdatasync itself: nothing written or synced after it. */
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_ANY), ops + 1);
    ck_assert_int_eq(wal_close(w, &err), ST_EIO);
    ck_assert_uint_eq(fs_fault_count(fs, FS_OP_ANY), ops + 1);
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_failure_fails_queued_records)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w = open_ok(&o);

    dl_reset();
    gate_reset();
    ck_assert_int_eq(append_id_cb(w, 1, on_done_gate), ST_OK);
    gate_wait_entered();
    for (uint64_t id = 2; id <= 10; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    fs_fault_fail_nth(fs, FS_OP_WRITE, 1, EIO, false);
    gate_release();
    wait_done(10);
    ck_assert_int_eq(dl[0].st, ST_OK);
    for (size_t i = 1; i < 10; i++) {
        ck_assert_int_eq(dl[i].st, ST_EIO);
        ck_assert_uint_eq(dl[i].id, i + 1);
    }
    ck_assert_int_eq(wal_close(w, NULL), ST_EIO);
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_enospc)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 4096);
    struct wal *w;
    struct err err;
    size_t i;

    /* Room for one pre-allocated file only: the rotation cannot allocate. */
    fs_fault_set_capacity(fs, 4096 + 1024);
    w = open_ok(&o);
    dl_reset();
    for (i = 1; i <= 40; i++) {
        size_t n = dl_count();

        ck_assert_int_eq(append_id(w, i), ST_OK);
        wait_done(n + 1);
        if (dl[n].st != ST_OK)
            break;
    }
    ck_assert_uint_lt(i, 40);
    ck_assert_int_eq(dl[i - 1].st, ST_EIO);
    ck_assert_int_eq(wal_error(w, &err), ST_EIO);
    ck_assert_int_eq(err.sys_errno, ENOSPC);
    ck_assert_msg(strstr(err.msg, "No space left"), "%s", err.msg);
    ck_assert_int_eq(append_id(w, 100), ST_EIO);
    wal_close(w, NULL);

    /* ENOSPC from a write: same story. */
    fs_fault_set_capacity(fs, 0);
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    w = open_ok(&o);
    got_check_sane();
    ck_assert_uint_eq(gn, i - 1);
    fs_fault_fail_nth(fs, FS_OP_WRITE, 1, ENOSPC, false);
    dl_reset();
    ck_assert_int_eq(append_id(w, 500), ST_OK);
    wait_done(1);
    ck_assert_int_eq(dl[0].st, ST_EIO);
    ck_assert_int_eq(wal_error(w, &err), ST_EIO);
    ck_assert_int_eq(err.sys_errno, ENOSPC);
    wal_close(w, NULL);
    got_reset();
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_short_writes)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 8192);
    struct wal *w = open_ok(&o);

    fs_fault_short_write(fs, 1, 7, true);
    dl_reset();
    for (uint64_t id = 1; id <= 30; id++)
        ck_assert_int_eq(append_id(w, id), ST_OK);
    wait_done(30);
    for (size_t i = 0; i < 30; i++)
        ck_assert_int_eq(dl[i].st, ST_OK);
    close_ok(w);
    fs_fault_clear(fs);
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 30);
    got_check_sane();
    got_reset();
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Crashes */

/*
 * Appends ids with a few in flight and crashes the fs after `after`
 * acknowledgements;
 * then reopens and checks: every acknowledged record is there, nothing
 * partial is, order is kept.
 */
static void crash_run(enum fs_crash_mode mode, uint64_t seed, size_t after, uint64_t file_size,
                      enum wal_sync_mode sync)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, file_size);
    struct wal *w;
    bool crashed = false;

    o.sync = sync;
    o.sync_interval_ms = 1;
    w = open_ok(&o);
    size_t window = 1 + (size_t)(seed % 8);
    size_t nok = 0;

    dl_reset();
    for (uint64_t id = 1; id <= 400; id++) {
        enum st_status rc;

        /* At most `window` records in flight, so the crash lands mid-stream. */
        if (nok > window)
            wait_done(nok - window);
        rc = append_id(w, id);
        ck_assert(rc == ST_OK || (crashed && rc == ST_EIO));
        nok += rc == ST_OK;
        if (!crashed && dl_count() >= after) {
            fs_fault_crash(fs, mode, seed);
            crashed = true;
        }
        if (crashed && id > after + 50)
            break;
    }
    if (!crashed)
        fs_fault_crash(fs, mode, seed);
    wal_close(w, NULL);

    w = open_ok(&o);
    got_check_sane();
    for (size_t i = 0; i < dl_n && sync == WAL_SYNC_ALWAYS; i++)
        if (dl[i].st == ST_OK)
            ck_assert_msg(got_has(dl[i].id), "acknowledged id %llu lost (mode %d seed %llu)",
                          (unsigned long long)dl[i].id, mode, (unsigned long long)seed);
    /* The log goes on after the crash. */
    {
        uint64_t next = gn ? payload_check(gv[gn - 1].p, gv[gn - 1].len) + 1 : 1;

        dl_reset();
        write_ids(w, next, next + 2);
        close_ok(w);
        replay_ok(&o);
        got_check_sane();
        ck_assert_uint_eq(payload_check(gv[gn - 1].p, gv[gn - 1].len), next + 2);
    }
    got_reset();
    fs_fault_free(fs);
}

START_TEST(test_crash_keeps_acknowledged)
{
    for (uint64_t seed = 1; seed <= 24; seed++) {
        size_t after = (size_t)(seed * 13 % 150);

        crash_run(FS_CRASH_DROP_UNSYNCED, seed, after, seed % 2 ? 4096 : 64 << 10, WAL_SYNC_ALWAYS);
        crash_run(FS_CRASH_TORN, seed, after, seed % 2 ? 4096 : 64 << 10, WAL_SYNC_ALWAYS);
    }
}
END_TEST

/*
 * Without sync on every group, acknowledged records may be lost, but a
 * crash must never look like corruption: records only claim durable what
 * a sync had really covered.
 */
START_TEST(test_crash_without_sync_always)
{
    for (uint64_t seed = 1; seed <= 16; seed++) {
        size_t after = (size_t)(seed * 17 % 120);

        crash_run(FS_CRASH_TORN, seed, after, seed % 2 ? 4096 : 64 << 10, WAL_SYNC_NEVER);
        crash_run(FS_CRASH_TORN, seed, after, seed % 2 ? 4096 : 64 << 10, WAL_SYNC_INTERVAL);
    }
}
END_TEST

START_TEST(test_reopen_after_failed_fsync_without_crash)
{
    struct fs *fs = fault_fs_with_dir();
    struct wal_options o = opts(fs, 1 << 20);
    struct wal *w = open_ok(&o);

    /*
     * The fsync of record 16 (640 bytes, over two sectors) fails: Linux
     * drops the dirty pages, but reads still see them.
     */
    dl_reset();
    write_ids(w, 1, 2);
    fs_fault_fail_nth(fs, FS_OP_DATASYNC, 1, EIO, false);
    ck_assert_int_eq(append_id(w, 16), ST_OK);
    wait_done(3);
    ck_assert_int_eq(dl[2].st, ST_EIO);
    wal_close(w, NULL);

    /* The process restarts (no crash) and sees record 16 in the page cache. */
    w = open_ok(&o);
    ck_assert_uint_eq(gn, 3);
    dl_reset();
    write_ids(w, 17, 18);
    close_ok(w);
    /*
     * Records 17 and 18 claim 16 is durable, and their writes touch only
     * its last sector. Recovery rewrote it before saying so, so a power
     * failure now loses nothing and finds no "corruption".
     */
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 0);
    replay_ok(&o);
    ck_assert_uint_eq(gn, 5);
    got_check_sane();
    got_reset();
    fs_fault_free(fs);
}
END_TEST

/*
 * SQLite's I/O-error loop: for N = 1, 2, 3, ... fail the Nth file
 * operation of "open the log, append ten records, close", until the
 * operation completes without reaching the Nth. After each run the fs
 * crashes; the log must then open cleanly with the old records, every
 * acknowledged new one, and nothing partial.
 */
static void fail_nth_loop(bool sticky, enum fs_crash_mode mode)
{
    size_t len;
    uint8_t *img = image_of(5, 4096, &len);
    uint64_t n;

    for (n = 1; n < 5000; n++) {
        struct fs *fs = fs_with_image(img, len);
        struct wal_options o = opts(fs, 4096);
        struct wal *w = NULL;
        bool reached;
        size_t nok = 0;

        dl_reset();
        fs_fault_reset_counts(fs);
        fs_fault_fail_nth(fs, FS_OP_ANY, n, EIO, sticky);
        got_reset();
        if (wal_open(&o, on_rec, NULL, &w, NULL) == ST_OK) {
            for (uint64_t id = 6; id <= 15; id++) {
                enum st_status rc = append_id(w, id);

                ck_assert(rc == ST_OK || rc == ST_EIO);
                nok += rc == ST_OK;
                if (id % 3 == 0)
                    wait_done(nok);
            }
            wal_close(w, NULL);
        }
        reached = fs_fault_count(fs, FS_OP_ANY) >= n;
        fs_fault_clear(fs);
        fs_fault_crash(fs, mode, n);

        w = open_ok(&o);
        got_check_sane();
        for (uint64_t id = 1; id <= 5; id++)
            ck_assert_msg(got_has(id), "n=%llu: old record %llu lost", (unsigned long long)n,
                          (unsigned long long)id);
        for (size_t i = 0; i < dl_n; i++)
            if (dl[i].st == ST_OK)
                ck_assert_msg(got_has(dl[i].id), "n=%llu: acknowledged %llu lost",
                              (unsigned long long)n, (unsigned long long)dl[i].id);
        if (!reached) {
            ck_assert_uint_eq(gn, 15);
            close_ok(w);
            fs_fault_free(fs);
            break;
        }
        dl_reset();
        ck_assert_int_eq(append_id(w, 100), ST_OK);
        wait_done(1);
        ck_assert_int_eq(dl[0].st, ST_OK);
        close_ok(w);
        fs_fault_free(fs);
    }
    ck_assert_uint_lt(n, 5000);
    ck_assert_uint_gt(n, 20);
    got_reset();
    free(img);
}

START_TEST(test_fail_nth_io_loop)
{
    fail_nth_loop(false, FS_CRASH_DROP_UNSYNCED);
    fail_nth_loop(true, FS_CRASH_DROP_UNSYNCED);
    fail_nth_loop(false, FS_CRASH_TORN);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Metrics */

START_TEST(test_metrics_hooks)
{
    struct fs *fs = fault_fs_with_dir();
    struct metrics *m = metrics_new();
    struct wal_options o = opts(fs, 1 << 20);
    struct strbuf sb = STRBUF_INIT;
    struct wal *w;

    o.metrics = m;
    w = open_ok(&o);
    dl_reset();
    write_ids(w, 1, 4);
    close_ok(w);
    metrics_format(m, &sb);
    ck_assert_msg(strstr(sb.buf, "\nstrata_wal_appends_total 4\n"), "%s", sb.buf);
    ck_assert_ptr_nonnull(strstr(sb.buf, "\nstrata_wal_append_bytes_total "));
    ck_assert_ptr_nonnull(strstr(sb.buf, "\nstrata_wal_syncs_total "));
    ck_assert_ptr_nonnull(strstr(sb.buf, "\nstrata_wal_sync_seconds_count "));
    ck_assert_ptr_nonnull(strstr(sb.buf, "\nstrata_wal_failed 0\n"));
    strbuf_release(&sb);
    metrics_free(m);
    fs_fault_free(fs);
}
END_TEST

static TCase *tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("wal");
    TCase *tc;
    SRunner *sr;
    int failed;

    log_set_level(ST_LOG_ERROR);
    tc = tcase(s, "basic");
    tcase_add_test(tc, test_fault_fs_model);
    tcase_add_test(tc, test_format_bytes);
    tcase_add_test(tc, test_roundtrip_posix);
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_large_record_posix);
    tcase_add_test(tc, test_metrics_hooks);
    tc = tcase(s, "group");
    tcase_add_test(tc, test_group_commit_shares_fsyncs);
    tcase_add_test(tc, test_concurrent_producers);
    tcase_add_test(tc, test_backpressure_eagain);
    tcase_add_test(tc, test_borrowed_payloads);
    tcase_add_test(tc, test_sync_modes);
    tc = tcase(s, "recovery");
    tcase_add_test(tc, test_torn_tail_every_offset);
    tcase_add_test(tc, test_bit_flip_in_the_middle_is_corruption);
    tcase_add_test(tc, test_bit_flip_in_the_tail_is_cut);
    tcase_add_test(tc, test_damage_in_last_unsynced_group_is_cut);
    tcase_add_test(tc, test_bad_headers_and_leftovers);
    tcase_add_test(tc, test_replay_callback_stops);
    tcase_add_test(tc, test_torn_tail_is_logged_clean_end_is_not);
    tcase_add_test(tc, test_rotation_replay_and_trim);
    tcase_add_test(tc, test_missing_middle_file_is_corruption);
    tcase_add_test(tc, test_truncate_on_corruption_in_older_file);
    tc = tcase(s, "faults");
    tcase_add_test(tc, test_fsync_failure_is_sticky);
    tcase_add_test(tc, test_append_never_waits_for_the_disk);
    tcase_add_test(tc, test_failure_fails_queued_records);
    tcase_add_test(tc, test_enospc);
    tcase_add_test(tc, test_short_writes);
    tcase_add_test(tc, test_reopen_after_failed_fsync_without_crash);
    tcase_add_test(tc, test_fail_nth_io_loop);
    tc = tcase(s, "crash");
    tcase_add_test(tc, test_crash_keeps_acknowledged);
    tcase_add_test(tc, test_crash_without_sync_always);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

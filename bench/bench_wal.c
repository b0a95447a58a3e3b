/*
 * Micro-benchmark of the WAL (src/engine/wal.c) on the real file system.
 *
 * For each batch size (1 MiB and 100 KiB by default) and each number of
 * producer threads (1..4), the producers append records of that size as
 * fast as the WAL acknowledges them, each keeping at most `window` records
 * in flight (like a client with a few requests outstanding), with sync
 * mode "always": every acknowledgement has been fdatasync'ed. Each run
 * stops after `seconds` or `max_mib` MiB, whichever comes first, then the
 * files are deleted. Payloads are borrowed (WAL_F_BORROW), as the ingest
 * path will do with request bodies; -c copies them instead.
 *
 * Prints one line per run: MB/s of payload acknowledged, records/s,
 * fdatasyncs/s, records per fdatasync (the group commit at work) and the
 * mean fdatasync latency.
 *
 *   bench_wal [-d dir] [-s seconds] [-m max_mib] [-w window] [-t max_threads]
 *             [-b batch_bytes] [-c]
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/fs.h"
#include "engine/wal.h"
#include "util/log.h"
#include "util/timeutil.h"

struct producer {
    struct wal *w;          /* the log */
    const uint8_t *payload; /* shared, never written during a run */
    size_t batch;           /* bytes per record */
    unsigned flags;         /* WAL_F_BORROW or 0 */
    int window;             /* records in flight at most */
    uint64_t deadline;      /* time_mono_ns() to stop at */
    uint64_t budget;        /* records this producer may send */
    pthread_mutex_t mu;     /* guards the counters below */
    pthread_cond_t cv;      /* signalled on every completion */
    int inflight;           /* appended, not completed */
    uint64_t acked;         /* completed with ST_OK */
    uint64_t failed;        /* completed otherwise */
};

static void on_done(void *arg, enum st_status st, uint64_t seq)
{
    struct producer *p = arg;

    (void)seq;
    pthread_mutex_lock(&p->mu);
    p->inflight--;
    if (st == ST_OK)
        p->acked++;
    else
        p->failed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    uint64_t sent = 0;

    while (sent < p->budget && time_mono_ns() < p->deadline) {
        struct wal_entry e = {
            .type = WAL_REC_DATA,
            .version = sent + 1,
            .payload = p->payload,
            .len = p->batch,
            .flags = p->flags,
            .done = on_done,
            .arg = p,
        };
        enum st_status rc;

        pthread_mutex_lock(&p->mu);
        while (p->inflight >= p->window)
            pthread_cond_wait(&p->cv, &p->mu);
        p->inflight++;
        pthread_mutex_unlock(&p->mu);
        rc = wal_append(p->w, &e, NULL);
        if (rc == ST_OK) {
            sent++;
            continue;
        }
        pthread_mutex_lock(&p->mu);
        p->inflight--;
        if (rc == ST_EAGAIN && p->inflight > 0)
            pthread_cond_wait(&p->cv, &p->mu); /* backpressure: wait for a completion */
        pthread_mutex_unlock(&p->mu);
        if (rc != ST_EAGAIN) {
            fprintf(stderr, "bench_wal: append failed: %s\n", status_str(rc));
            exit(1);
        }
    }
    pthread_mutex_lock(&p->mu);
    while (p->inflight > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void remove_files(const char *dir)
{
    struct fs *fs = fs_posix();
    char **names;
    size_t n;

    if (fs->list_dir(fs, dir, &names, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        char path[4096];

        if (strncmp(names[i], "wal-", 4))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    fs_names_free(names, n);
}

static void run(const char *dir, size_t batch, int threads, int window, double seconds,
                uint64_t max_bytes, unsigned flags, const uint8_t *payload)
{
    struct wal_options o = {0};
    struct producer prod[16];
    pthread_t th[16];
    struct wal_stats st;
    struct wal *w;
    struct err err;
    uint64_t t0;
    uint64_t t1;
    uint64_t acked = 0;
    double secs;

    remove_files(dir);
    o.dir = dir;
    o.sync = WAL_SYNC_ALWAYS;
    if (wal_open(&o, NULL, NULL, &w, &err)) {
        fprintf(stderr, "bench_wal: %s\n", err.msg);
        exit(1);
    }
    t0 = time_mono_ns();
    for (int i = 0; i < threads; i++) {
        struct producer *p = &prod[i];

        memset(p, 0, sizeof(*p));
        p->w = w;
        p->payload = payload;
        p->batch = batch;
        p->flags = flags;
        p->window = window;
        p->deadline = t0 + (uint64_t)(seconds * 1e9);
        p->budget = max_bytes / batch / (uint64_t)threads + 1;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        pthread_create(&th[i], NULL, producer_main, p);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        acked += prod[i].acked;
        if (prod[i].failed) {
            fprintf(stderr, "bench_wal: %llu records failed\n", (unsigned long long)prod[i].failed);
            exit(1);
        }
    }
    t1 = time_mono_ns();
    wal_get_stats(w, &st);
    if (wal_close(w, &err)) {
        fprintf(stderr, "bench_wal: %s\n", err.msg);
        exit(1);
    }
    for (int i = 0; i < threads; i++) {
        pthread_mutex_destroy(&prod[i].mu);
        pthread_cond_destroy(&prod[i].cv);
    }
    remove_files(dir);
    secs = (double)(t1 - t0) / 1e9;
    printf("batch=%-7zu threads=%d window=%d  %8.1f MB/s  %8.0f rec/s  %7.0f fsync/s  "
           "%5.1f rec/fsync  fsync %.3f ms\n",
           batch, threads, window, (double)acked * (double)batch / secs / 1e6, (double)acked / secs,
           (double)st.syncs / secs, st.syncs ? (double)acked / (double)st.syncs : 0.0,
           st.syncs ? (double)st.sync_ns / (double)st.syncs / 1e6 : 0.0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    char tmp[] = "/tmp/strata-bench-wal-XXXXXX";
    double seconds = 2.0;
    uint64_t max_mib = 512;
    int window = 4;
    int max_threads = 4;
    size_t one_batch = 0;
    unsigned flags = WAL_F_BORROW;
    size_t batches[] = {1 << 20, 100 << 10};
    uint8_t *payload;
    int c;

    while ((c = getopt(argc, argv, "d:s:m:w:t:b:c")) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'm':
            max_mib = strtoull(optarg, NULL, 10);
            break;
        case 'w':
            window = atoi(optarg);
            break;
        case 't':
            max_threads = atoi(optarg);
            break;
        case 'b':
            one_batch = strtoull(optarg, NULL, 10);
            break;
        case 'c':
            flags = 0;
            break;
        default:
            fprintf(stderr, "usage: bench_wal [-d dir] [-s seconds] [-m max_mib] [-w window] "
                            "[-t max_threads] [-b batch_bytes] [-c]\n");
            return 2;
        }
    }
    if (window < 1 || max_threads < 1 || max_threads > 16 || seconds <= 0) {
        fprintf(stderr, "bench_wal: bad arguments\n");
        return 2;
    }
    if (!dir) {
        if (!mkdtemp(tmp)) {
            perror("bench_wal: mkdtemp");
            return 1;
        }
        dir = tmp;
    }
    log_set_level(ST_LOG_WARN);
    payload = malloc(batches[0] > one_batch ? batches[0] : one_batch);
    for (size_t i = 0; i < (batches[0] > one_batch ? batches[0] : one_batch); i++)
        payload[i] = (uint8_t)(i * 131 + (i >> 7));
    printf("bench_wal: dir=%s sync=always %s, up to %.1f s or %llu MiB per run\n", dir,
           flags ? "borrowed payloads" : "copied payloads", seconds, (unsigned long long)max_mib);
    for (size_t b = 0; b < (one_batch ? 1 : ST_ARRAY_SIZE(batches)); b++)
        for (int t = 1; t <= max_threads; t++)
            run(dir, one_batch ? one_batch : batches[b], t, window, seconds, max_mib << 20, flags,
                payload);
    if (dir == tmp)
        rmdir(tmp);
    free(payload);
    return 0;
}

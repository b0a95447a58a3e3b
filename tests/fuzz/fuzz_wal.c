/*
 * Fuzz target for WAL recovery (src/engine/wal.c): arbitrary bytes as the
 * files of a WAL directory, on the in-memory fault fs.
 *
 * Input: byte 0 holds flags, the rest is file data.
 *   bit 0  truncate_on_corruption
 *   bit 1  two files: bytes 1-2 give the split point (little-endian, modulo
 *          the data length); the second part is named after the first seq
 *          in its header when it has one, else wal-0000000000000002.log
 * Without bit 1 the data is wal-0000000000000001.log.
 *
 * Besides never crashing or reading out of bounds (every file is read
 * into a buffer of exactly its size), recovery must be consistent:
 *   1. a read-only replay and a repairing wal_open() see the same records
 *      and agree on the outcome (ECORRUPT stays ECORRUPT unless
 *      truncate_on_corruption, where the open succeeds);
 *   2. after a successful open, an append and a close, the log replays
 *      cleanly: the same records plus the new one, with a higher seq.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fs.h"
#include "engine/wal.h"
#include "util/crc32c.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_wal: " __VA_ARGS__);                                                 \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

#define MAX_RECS 4096

/* What a replay saw: one summary per record. */
struct seen {
    size_t n;
    struct {
        uint64_t seq;
        uint64_t version;
        uint16_t type;
        size_t len;
        uint32_t crc;
    } r[MAX_RECS];
};

static enum st_status on_rec(void *arg, const struct wal_record *rec)
{
    struct seen *s = arg;

    if (rec->type == 0 || rec->type > WAL_REC_USER_MAX)
        FAIL("replay delivered type %u", rec->type);
    if (s->n && rec->seq <= s->r[s->n - 1].seq)
        FAIL("replay seqs out of order");
    if (s->n == MAX_RECS)
        return ST_OK;
    s->r[s->n].seq = rec->seq;
    s->r[s->n].version = rec->version;
    s->r[s->n].type = rec->type;
    s->r[s->n].len = rec->len;
    s->r[s->n].crc = crc32c(rec->payload, rec->len); /* touches every byte */
    s->n++;
    return ST_OK;
}

static bool same_prefix(const struct seen *a, const struct seen *b, size_t n)
{
    if (a->n < n || b->n < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (a->r[i].seq != b->r[i].seq || a->r[i].version != b->r[i].version ||
            a->r[i].type != b->r[i].type || a->r[i].len != b->r[i].len ||
            a->r[i].crc != b->r[i].crc)
            return false;
    return true;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_files(struct fs *fs, const uint8_t *data, size_t size)
{
    uint8_t flags = size ? data[0] : 0;
    size_t split;
    char name[64];
    uint64_t seq = 2;

    if (!(flags & 2) || size < 3) {
        fs_fault_set_file(fs, "/w/wal-0000000000000001.log", size ? data + 1 : data,
                          size ? size - 1 : 0);
        return;
    }
    split = (size_t)(data[1] | data[2] << 8);
    data += 3;
    size -= 3;
    split = size ? split % (size + 1) : 0;
    fs_fault_set_file(fs, "/w/wal-0000000000000001.log", data, split);
    if (size - split >= 24 && !memcmp(data + split, "STRATAWL", 8))
        seq = get64(data + split + 16);
    snprintf(name, sizeof(name), "/w/wal-%016llx.log", (unsigned long long)seq);
    fs_fault_set_file(fs, name, data + split, size - split);
}

static void on_done(void *arg, enum st_status st, uint64_t seq)
{
    uint64_t *out = arg;

    *out = st == ST_OK ? seq : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct seen ro;
    static struct seen rw;
    static struct seen again;
    struct fs *fs = fs_fault_new();
    struct wal_options o = {0};
    struct wal *w = NULL;
    enum st_status rc_ro;
    enum st_status rc_rw;
    enum st_status rc;
    struct err err;
    uint64_t new_seq = 0;
    struct wal_entry e = {.type = WAL_REC_DATA, .version = 7, .payload = "fuzz", .len = 4};

    log_set_level(ST_LOG_ERROR + 1);
    if (fs->mkdir(fs, "/w", 0755))
        FAIL("mkdir");
    put_files(fs, data, size);
    o.dir = "/w";
    o.fs = fs;
    o.file_size = 4096;
    o.truncate_on_corruption = size && (data[0] & 1);

    ro.n = rw.n = again.n = 0;
    o.read_only = true;
    rc_ro = wal_replay(&o, on_rec, &ro, NULL);
    o.read_only = false;
    err_clear(&err);
    rc_rw = wal_open(&o, on_rec, &rw, &w, &err);

    if (rc_ro != ST_OK && rc_ro != ST_ECORRUPT)
        FAIL("read-only replay returned %s", status_str(rc_ro));
    if (rc_ro == ST_OK || !o.truncate_on_corruption) {
        if (rc_rw != rc_ro)
            FAIL("read-only replay says %s, open says %s (%s)", status_str(rc_ro),
                 status_str(rc_rw), err.msg);
        if (rc_ro == ST_OK && (ro.n != rw.n || !same_prefix(&ro, &rw, ro.n)))
            FAIL("read-only replay and open saw different records");
    } else if (rc_rw != ST_OK) {
        FAIL("open with truncate_on_corruption returned %s (%s)", status_str(rc_rw), err.msg);
    } else if (ro.n != rw.n || !same_prefix(&ro, &rw, rw.n)) {
        FAIL("open after cutting corruption saw different records");
    }

    if (rc_rw == ST_OK) {
        e.done = on_done;
        e.arg = &new_seq;
        if (wal_append(w, &e, &err) != ST_OK)
            FAIL("append failed: %s", err.msg);
        if (wal_close(w, &err) != ST_OK)
            FAIL("close failed: %s", err.msg);
        if (!new_seq)
            FAIL("append not acknowledged");
        if (rw.n && new_seq <= rw.r[rw.n - 1].seq)
            FAIL("new seq %llu not after the replayed ones", (unsigned long long)new_seq);
        o.read_only = true;
        o.truncate_on_corruption = false;
        rc = wal_replay(&o, on_rec, &again, &err);
        if (rc != ST_OK)
            FAIL("replay after repair returned %s (%s)", status_str(rc), err.msg);
        if (rw.n < MAX_RECS && (again.n != rw.n + 1 || !same_prefix(&rw, &again, rw.n) ||
                                again.r[rw.n].seq != new_seq || again.r[rw.n].len != 4))
            FAIL("replay after repair: %zu records, expected %zu + 1", again.n, rw.n);
    }
    fs_fault_free(fs);
    return 0;
}

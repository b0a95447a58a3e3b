/*
 * Fuzz target for segment files (src/engine/segment.c, colenc.c,
 * bloom.c): arbitrary bytes as a segment file, on the in-memory fault fs.
 *
 * Input: byte 0 holds flags, the rest is the file.
 *   bit 0  do not verify checksums (segment_test_skip_checksums()), so
 *          mutated bytes reach the section, block and column decoders
 *   bit 1  also feed the rest to each column decoder directly, with
 *          byte 1 as the value count
 *
 * Hostile files must never crash the reader or make it read outside what
 * it allocated (every file is read into buffers of exactly the sizes it
 * checked), and whatever the reader accepts must keep its promises:
 * iterators yield keys in order (newest-only: strictly ascending; every
 * version: versions strictly descending within a key), only versions <=
 * the snapshot, and rows whose length prefix is their length. Every
 * yielded byte is touched (CRC) so ASan sees any over-read; every key
 * yielded is then read back with segment_get().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/colenc.h"
#include "engine/fs.h"
#include "engine/key.h"
#include "engine/segment.h"
#include "util/crc32c.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_segment: " __VA_ARGS__);                                             \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

#define MAX_KEYS 64

static void fuzz_columns(const uint8_t *p, size_t len)
{
    size_t n = len ? p[0] : 0;
    int64_t iv[256];
    uint8_t bv[256];
    double fv[256];
    struct colenc_str sv[256];
    uint8_t *copy;
    struct colenc_rd rd;

    if (!len)
        return;
    copy = malloc(len - 1 ? len - 1 : 1);
    memcpy(copy, p + 1, len - 1);
    rd = (struct colenc_rd){copy, copy + len - 1};
    (void)colenc_get_ints(&rd, iv, n);
    rd = (struct colenc_rd){copy, copy + len - 1};
    (void)colenc_get_bits(&rd, bv, n, NULL);
    rd = (struct colenc_rd){copy, copy + len - 1};
    (void)colenc_get_floats(&rd, fv, n);
    rd = (struct colenc_rd){copy, copy + len - 1};
    if (colenc_get_strs(&rd, sv, n) == ST_OK)
        for (size_t i = 0; i < n; i++)
            (void)crc32c(sv[i].ptr, sv[i].len);
    free(copy);
}

/* Runs one iterator to its end, checking its promises; collects keys. */
static void scan(struct segment *seg, const struct segment_range *r, uint64_t snap, unsigned flags,
                 uint8_t keys[MAX_KEYS][64], size_t *klen, size_t *nkeys)
{
    struct segment_iter *it = segment_iter_new(seg, r, snap, flags);
    struct segment_rec rec;
    uint8_t prev[64];
    size_t prev_len = 0;
    uint64_t prev_ver = 0;
    bool have_prev = false;
    uint32_t sum = 0;

    while (segment_iter_next(it, &rec)) {
        int c;

        if (rec.version > snap)
            FAIL("version %llu above snapshot %llu", (unsigned long long)rec.version,
                 (unsigned long long)snap);
        if (rec.key_len == 0)
            FAIL("empty key");
        if (rec.tombstone != (rec.row == NULL))
            FAIL("tombstone with a row or row missing");
        if (rec.tombstone && !(flags & SEGMENT_ITER_TOMBSTONES))
            FAIL("tombstone without SEGMENT_ITER_TOMBSTONES");
        if (rec.row && (rec.row_len < 4 || schema_row_len(rec.row) != rec.row_len))
            FAIL("row length prefix differs from its length");
        sum = crc32c_extend(sum, rec.key, rec.key_len);
        if (rec.row)
            sum = crc32c_extend(sum, rec.row, rec.row_len);
        if (have_prev && prev_len) {
            c = key_compare(rec.key, rec.key_len, prev, prev_len);
            if (c < 0 || (c == 0 && !(flags & SEGMENT_ITER_ALL_VERSIONS)) ||
                (c == 0 && rec.version >= prev_ver))
                FAIL("entries out of order");
        }
        have_prev = true;
        prev_ver = rec.version;
        prev_len = rec.key_len <= sizeof(prev) ? rec.key_len : 0;
        if (prev_len)
            memcpy(prev, rec.key, prev_len);
        if (keys && *nkeys < MAX_KEYS && rec.key_len <= 64) {
            memcpy(keys[*nkeys], rec.key, rec.key_len);
            klen[(*nkeys)++] = rec.key_len;
        }
    }
    if (segment_iter_status(it, NULL) != ST_OK && segment_iter_status(it, NULL) != ST_ECORRUPT)
        FAIL("iterator status %s", status_str(segment_iter_status(it, NULL)));
    segment_iter_free(it);
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t keys[MAX_KEYS][64];
    static size_t klen[MAX_KEYS];
    struct fs *fs;
    struct segment *seg;
    struct segment_info info;
    struct strbuf buf = STRBUF_INIT;
    struct err err;
    enum st_status rc;
    size_t nkeys = 0;
    uint8_t flags = size ? data[0] : 0;

    log_set_level(ST_LOG_ERROR + 1);
    if (size)
        data++, size--;
    if (flags & 2)
        fuzz_columns(data, size);
    fs = fs_fault_new();
    fs_fault_set_file(fs, "/seg", data, size);
    segment_test_skip_checksums(flags & 1);
    rc = segment_open(fs, "/seg", &seg, &err);
    if (rc != ST_OK && rc != ST_ECORRUPT)
        FAIL("open returned %s (%s)", status_str(rc), err.msg);
    if (rc == ST_OK) {
        struct segment_range r = {.has_time = true};
        const void *lo;
        const void *hi;
        size_t lol;
        size_t hil;

        segment_get_info(seg, &info);
        if (segment_key_range(seg, &lo, &lol, &hi, &hil))
            (void)crc32c_extend(crc32c(lo, lol), hi, hil);
        scan(seg, NULL, UINT64_MAX, 0, keys, klen, &nkeys);
        scan(seg, NULL, UINT64_MAX, SEGMENT_ITER_TOMBSTONES | SEGMENT_ITER_ALL_VERSIONS, NULL, NULL,
             NULL);
        scan(seg, NULL, info.min_version, SEGMENT_ITER_TOMBSTONES, NULL, NULL, NULL);
        r.time_lo = info.min_time;
        r.time_hi = info.min_time + (info.max_time - info.min_time) / 2;
        if (nkeys) {
            r.lo = keys[0];
            r.lo_len = klen[0];
            r.lo_excl = true;
        }
        scan(seg, &r, UINT64_MAX, 0, NULL, NULL, NULL);
        scan(seg, &r, UINT64_MAX, SEGMENT_ITER_ALL_VERSIONS, NULL, NULL, NULL);
        for (size_t i = 0; i < nkeys; i++) {
            struct segment_rec rec;

            rc = segment_get(seg, keys[i], klen[i], UINT64_MAX, &rec, &buf, &err);
            if (rc != ST_OK && rc != ST_ENOTFOUND && rc != ST_ECORRUPT)
                FAIL("get returned %s", status_str(rc));
            if (rc == ST_OK && rec.row && schema_row_len(rec.row) != rec.row_len)
                FAIL("get: row length prefix differs from its length");
            if (rc == ST_OK && rec.row)
                (void)crc32c(rec.row, rec.row_len);
            (void)segment_get(seg, keys[i], klen[i], info.min_version, &rec, &buf, &err);
        }
        segment_unref(seg);
    }
    segment_test_skip_checksums(false);
    strbuf_release(&buf);
    fs_fault_free(fs);
    return 0;
}

/*
 * Fuzz target for MANIFEST files (src/engine/manifest.c): arbitrary bytes
 * given to manifest_decode(), twice: as they are, and with their last 4
 * bytes replaced by the CRC32C of the rest, so that mutated bytes get
 * past the checksum and reach the count, length, reserved-word and id
 * checks.
 *
 * Hostile bytes must never crash the decoder or make it read past the
 * input (each input is copied into a buffer of exactly its size), and
 * must be refused with ST_ECORRUPT and nothing else. Whatever decodes
 * must keep the decoder's promises (ids unique and below next_id,
 * counts within the limits) and round-trip: the format has one encoding
 * per image, so re-encoding gives back the input bytes, and those decode
 * to the same image.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/manifest.h"
#include "util/crc32c.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_manifest: " __VA_ARGS__);                                            \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void check_promises(const struct manifest_image *img)
{
    uint64_t *ids;

    if (img->nsegs > MANIFEST_MAX_SEGMENTS || img->nclock > MANIFEST_MAX_CLOCK)
        FAIL("counts over the limits");
    ids = malloc((img->nsegs ? img->nsegs : 1) * sizeof(*ids));
    for (size_t i = 0; i < img->nsegs; i++) {
        if (img->segs[i].id >= img->next_id)
            FAIL("id %llu not below next id %llu", (unsigned long long)img->segs[i].id,
                 (unsigned long long)img->next_id);
        ids[i] = img->segs[i].id;
    }
    qsort(ids, img->nsegs, sizeof(*ids), u64_cmp);
    for (size_t i = 1; i < img->nsegs; i++)
        if (ids[i] == ids[i - 1])
            FAIL("id %llu accepted twice", (unsigned long long)ids[i]);
    free(ids);
}

static bool same_image(const struct manifest_image *a, const struct manifest_image *b)
{
    if (a->generation != b->generation || a->flushed_version != b->flushed_version ||
        a->floor != b->floor || a->next_id != b->next_id || a->nsegs != b->nsegs ||
        a->nclock != b->nclock)
        return false;
    for (size_t i = 0; i < a->nsegs; i++)
        if (a->segs[i].id != b->segs[i].id || a->segs[i].table_id != b->segs[i].table_id ||
            a->segs[i].level != b->segs[i].level)
            return false;
    for (size_t i = 0; i < a->nclock; i++)
        if (a->clock[i].wall_ms != b->clock[i].wall_ms ||
            a->clock[i].version != b->clock[i].version)
            return false;
    return true;
}

static void one(const uint8_t *buf, size_t size)
{
    struct manifest_image img, back;
    struct strbuf enc = STRBUF_INIT;
    struct err err;
    enum st_status rc;

    rc = manifest_decode(buf, size, &img, &err);
    if (rc != ST_OK && rc != ST_ECORRUPT)
        FAIL("decode returned %s (%s)", status_str(rc), err.msg);
    if (rc == ST_ECORRUPT) {
        if (!strstr(err.msg, "at offset"))
            FAIL("corruption without an offset: %s", err.msg);
        return;
    }
    check_promises(&img);
    manifest_encode(&img, &enc);
    if (enc.len != size || memcmp(enc.buf, buf, size) != 0)
        FAIL("re-encoding differs from the input (%zu vs %zu bytes)", enc.len, size);
    if (manifest_decode(enc.buf, enc.len, &back, &err) != ST_OK)
        FAIL("re-encoded image does not decode: %s", err.msg);
    if (!same_image(&img, &back))
        FAIL("re-encoded image decodes differently");
    manifest_image_release(&back);
    manifest_image_release(&img);
    strbuf_release(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);

    log_set_level(ST_LOG_ERROR + 1);
    if (size)
        memcpy(buf, data, size);
    one(buf, size);
    if (size >= 4) {
        uint32_t crc = crc32c(buf, size - 4);

        for (int i = 0; i < 4; i++)
            buf[size - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
        one(buf, size);
    }
    free(buf);
    return 0;
}

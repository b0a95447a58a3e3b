/*
 * Segment files: the writer, the reader, point reads and iterators.
 *
 * DESIGN
 *
 * A segment is written once, front to back, from entries that arrive in
 * (key asc, version desc) order, and never changed. Entries are cut into
 * blocks of up to block_rows entries or block_bytes input bytes; each
 * block is laid out by column (colenc.h), compressed with LZ4 as a whole
 * and checksummed, and written as soon as it is full, so the writer holds
 * one block in memory plus the index and one 8-byte hash per distinct
 * key. At the end come the meta section (schema and totals), the index
 * (per block: size, entry and tombstone counts, version range, time
 * range, first and last key), the bloom filter over distinct keys, and a
 * fixed-size footer that locates them.
 *
 * Keys are not stored in blocks: every entry carries the primary-key
 * fields as ordinary columns (a tombstone's come from decoding its key,
 * its other fields are null), and a reader re-encodes a row's key with
 * key_encode() when it needs it. That saves the bytes of a second copy
 * of the key (for flights-like rows, 3 to 4 of the ~7 bytes an entry
 * takes after compression). The index holds encoded first and last keys,
 * and the bloom filter hashes encoded keys: that is where key.h's
 * encoding is part of the file format.
 *
 * Reading: segment_open() reads the footer, then the three sections,
 * checks their checksums and every invariant the reader later relies on
 * (limits, block layout, key order across blocks, totals), and keeps the
 * parsed index and the bloom bits in memory. Blocks are read with pread
 * on the shared descriptor, checked against their CRC before anything is
 * decompressed, and decoded into per-column arrays; the version,
 * tombstone and key columns at once, the others when first touched (a
 * point read decodes only what it returns). The block's first and last
 * keys are compared with the index, so stats used for skipping cannot
 * disagree with the data. Iterators also check that keys ascend and
 * versions descend as they go, which costs one compare per entry.
 *
 * SEGMENT FILE FORMAT (version 1; all integers little-endian; varints
 * and columns as in colenc.h; do not change: on-disk format)
 *
 *   header  32 bytes at offset 0
 *     0  8  magic "STRATASG"
 *     8  4  format version, 1
 *     12 4  header size, 32
 *     16 8  table id
 *     24 4  schema version
 *     28 4  CRC32C of bytes 0..27
 *   blocks  back to back from offset 32
 *   meta, index, bloom sections, back to back after the last block
 *   footer  80 bytes, ending the file
 *     0  8  meta offset     8  4  meta length     12 4  meta CRC32C
 *     16 8  index offset    24 4  index length    28 4  index CRC32C
 *     32 8  bloom offset    40 4  bloom length    44 4  bloom CRC32C
 *     48 8  table id        56 4  schema version  60 4  format version, 1
 *     64 4  reserved, 0     68 4  CRC32C of bytes 0..67
 *     72 8  magic "STRATASG"
 *
 *   block on disk (length L, from the index)
 *     0    1      codec: 0 stored, 1 LZ4 (block format)
 *     1    4      raw length R
 *     5    L - 9  payload: R raw bytes (stored) or their LZ4 compression
 *     L-4  4      CRC32C of bytes 0..L-5
 *   raw block
 *     varint n (entries, as in the index); varint c (= fields + 2)
 *     c varints: byte length of each column, then the columns:
 *       0      commit versions: integer column of n values
 *       1      tombstones: bits column of n values
 *       2 + f  field f: bits column of n nulls, then a column of the
 *              non-null values: integer (int64, timestamp), float
 *              (float64), bits (bool) or strings (string, json)
 *
 *   meta section
 *     varint fields; per field: u8 type (enum field_type), u8 flags (bit
 *       0 nullable, others 0), varint name length (1..63), name
 *     varint key fields; that many varint field indexes
 *     varint time field index + 1 (0: none)
 *     varint entries, keys, tombstones, input bytes
 *     varint min version, max version (0 and 0 when empty)
 *     u8 has time (0/1); if 1: varint zigzag(min time), zigzag(max time)
 *   index section
 *     varint blocks; per block (offsets follow from the lengths):
 *       varint length L; varint entries (1..65536); varint tombstones
 *       varint min version (>= 1); varint max version - min version
 *       u8 has time; if 1: varint zigzag(min time), varint max - min
 *       varint first key length (>= 1), first key
 *       varint bytes the last key shares with the first, varint length
 *       of the rest, the rest
 *   bloom section: bloom.h
 *
 * Time stats cover rows with a non-null time value, never tombstones.
 */
#include "engine/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <lz4hc.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bloom.h"
#include "engine/colenc.h"
#include "engine/key.h"
#include "util/crc32c.h"
#include "util/le.h"
#include "util/log.h"

#define MAGIC               "STRATASG"
#define HEADER_SIZE         32
#define FOOTER_SIZE         80
#define BLOCK_OVERHEAD      9 /* codec, raw length, CRC */
#define CODEC_STORED        0
#define CODEC_LZ4           1
#define MAX_BLOCK_BYTES_OPT (64u << 20)

static bool skip_checksums;

void segment_test_skip_checksums(bool on)
{
    skip_checksums = on;
}

/* ------------------------------------------------------------------ */
/* Bytes */

static bool crc_ok(const void *p, size_t n, uint32_t want)
{
    return skip_checksums || crc32c(p, n) == want;
}

static enum st_status corrupt(struct err *err, const char *path, uint64_t off, const char *fmt, ...)
    ST_PRINTF(4, 5);

static enum st_status corrupt(struct err *err, const char *path, uint64_t off, const char *fmt, ...)
{
    char why[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_error("segment: corrupt file='%s' offset=%" PRIu64 " cause=\"%s\"", path, off, why);
    return err_set(err, ST_ECORRUPT, "segment '%s' is corrupt at offset %" PRIu64 ": %s", path, off,
                   why);
}

/* Reads n bytes at off; a short file is corruption (the index said otherwise). */
static enum st_status read_at(struct fs *fs, int fd, const char *path, void *buf, size_t n,
                              uint64_t off, struct err *err)
{
    size_t got = 0;

    if (fs_pread_full(fs, fd, buf, n, off, &got) == 0)
        return ST_OK;
    if (errno == 0)
        return corrupt(err, path, off + got, "file ends early");
    return err_set_errno(err, ST_EIO, errno, "cannot read segment '%s'", path);
}

/* ------------------------------------------------------------------ */
/* Rows */

/*
 * Splits a row of the given field types into vals (borrowing row),
 * checking that every value lies inside len bytes and that the row ends
 * exactly there.
 */
static bool row_parse(const struct field *fields, uint32_t nfields, const uint8_t *row, size_t len,
                      struct value *vals)
{
    size_t nb = (nfields + 7) / 8;
    const uint8_t *p = row + 4 + nb;
    const uint8_t *end = row + len;

    if (len < 4 + nb || le_get(row, 4) != len)
        return false;
    for (uint32_t i = 0; i < nfields; i++) {
        struct value *v = &vals[i];
        size_t sz;

        memset(v, 0, sizeof(*v));
        v->type = fields[i].type;
        v->is_null = (row[4 + i / 8] >> (i % 8)) & 1;
        if (v->is_null)
            continue;
        switch (v->type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
        case FIELD_FLOAT64:
            if (end - p < 8)
                return false;
            if (v->type == FIELD_FLOAT64) {
                uint64_t bits = le_get(p, 8);

                memcpy(&v->u.f, &bits, sizeof(bits));
            } else {
                v->u.i = (int64_t)le_get(p, 8);
            }
            p += 8;
            break;
        case FIELD_BOOL:
            if (end - p < 1 || *p > 1)
                return false;
            v->u.b = *p++;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            if (end - p < 4)
                return false;
            sz = (size_t)le_get(p, 4);
            if ((size_t)(end - p) - 4 < sz)
                return false;
            v->u.s.len = (uint32_t)sz;
            v->u.s.ptr = (const char *)p + 4;
            p += 4 + sz;
            break;
        default:
            return false;
        }
    }
    return p == end;
}

/* Bytes of the row row_build() makes of vals; UINT64_MAX on a bad type. */
static uint64_t row_size(uint32_t nfields, const struct value *vals)
{
    uint64_t n = 4 + (nfields + 7) / 8;

    for (uint32_t i = 0; i < nfields; i++) {
        if (vals[i].is_null)
            continue;
        switch (vals[i].type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
        case FIELD_FLOAT64:
            n += 8;
            break;
        case FIELD_BOOL:
            n += 1;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            n += 4 + (uint64_t)vals[i].u.s.len;
            break;
        default:
            return UINT64_MAX;
        }
    }
    return n;
}

/* Appends the row of vals (size bytes, from row_size()) to out. */
static void row_build(uint32_t nfields, const struct value *vals, uint64_t size, struct strbuf *out)
{
    size_t nb = (nfields + 7) / 8;
    uint8_t *p;
    uint64_t bits;

    strbuf_grow(out, (size_t)size);
    p = (uint8_t *)out->buf + out->len;
    le_put(p, size, 4);
    memset(p + 4, 0, nb);
    for (uint32_t i = 0; i < nfields; i++)
        if (vals[i].is_null)
            p[4 + i / 8] |= (uint8_t)(1u << (i % 8));
    p += 4 + nb;
    for (uint32_t i = 0; i < nfields; i++) {
        const struct value *v = &vals[i];

        if (v->is_null)
            continue;
        switch (v->type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            le_put(p, (uint64_t)v->u.i, 8);
            p += 8;
            break;
        case FIELD_FLOAT64:
            memcpy(&bits, &v->u.f, sizeof(bits));
            le_put(p, bits, 8);
            p += 8;
            break;
        case FIELD_BOOL:
            *p++ = v->u.b ? 1 : 0;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            le_put(p, v->u.s.len, 4);
            if (v->u.s.len)
                memcpy(p + 4, v->u.s.ptr, v->u.s.len);
            p += 4 + v->u.s.len;
            break;
        }
    }
    colenc_buf_setlen(out, out->len + (size_t)size);
}

enum st_status segment_row_convert(const struct schema *from, const struct schema *to,
                                   const void *row, struct strbuf *out, struct err *err)
{
    struct value *src = calloc_array(from->nfields, sizeof(*src));
    struct value *dst = calloc_array(to->nfields, sizeof(*dst));
    enum st_status rc = ST_OK;
    uint64_t size;

    strbuf_reset(out);
    if (!row_parse(from->fields, from->nfields, row, schema_row_len(row), src)) {
        rc = err_set(err, ST_EINVAL, "row is malformed for schema version %u", from->version);
        goto out_free;
    }
    for (uint32_t i = 0; i < to->nfields && !rc; i++) {
        const struct field *f = &to->fields[i];
        int j = schema_find_field(from, f->name, strlen(f->name));
        struct value *v = &dst[i];

        if (j >= 0)
            *v = src[j];
        if (j < 0 || v->is_null) {
            if (j < 0 && f->has_default) {
                *v = f->def;
            } else if (f->nullable) {
                memset(v, 0, sizeof(*v));
                v->is_null = true;
            } else {
                rc = err_set(err, ST_EINVAL, "field '%s' has no value in schema version %u",
                             f->name, from->version);
                break;
            }
        } else if (v->type == FIELD_INT64 && f->type == FIELD_FLOAT64) {
            v->u.f = (double)v->u.i;
        } else if (v->type != f->type) {
            rc = err_set(err, ST_EINVAL, "field '%s' cannot change from %s to %s", f->name,
                         field_type_name(v->type), field_type_name(f->type));
            break;
        }
        v->type = f->type;
    }
    if (!rc) {
        size = row_size(to->nfields, dst);
        if (size > SEGMENT_MAX_ROW)
            rc = err_set(err, ST_ETOOLARGE, "converted row is over %u bytes", SEGMENT_MAX_ROW);
        else
            row_build(to->nfields, dst, size, out);
    }
out_free:
    free(dst);
    free(src);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Writer */

struct wstr {
    size_t off;   /* into the block's arena */
    uint32_t len; /* bytes */
};

/* One field of the block being built. */
struct wcol {
    uint8_t *nulls; /* per entry: 1 when null */
    int64_t *i;     /* int64, timestamp: the non-null values */
    double *f;      /* float64 */
    uint8_t *b;     /* bool */
    struct wstr *s; /* string, json */
    uint32_t nv;    /* non-null values so far */
};

/* Stats of one block, for its index entry. */
struct bstats {
    uint32_t ntomb; /* tombstones */
    uint64_t minv;  /* smallest version */
    uint64_t maxv;  /* largest */
    bool has_time;  /* some row has a non-null time value */
    int64_t mint;   /* smallest time value */
    int64_t maxt;   /* largest */
};

struct segment_writer {
    struct fs *fs;                /* where the file goes */
    int fd;                       /* PATH.tmp, or -1 */
    char *path;                   /* final name */
    char *tmp;                    /* PATH.tmp */
    const struct schema *s;       /* rows' schema, borrowed */
    uint64_t table_id;            /* for the header and footer */
    struct segment_writer_opts o; /* with defaults filled in */
    uint64_t off;                 /* file offset of the next block */
    bool failed;                  /* an add failed: only abort is allowed */

    uint32_t cap;        /* entries per block */
    uint32_t n;          /* entries in the current block */
    size_t bytes;        /* their key and row bytes */
    int64_t *ver;        /* their versions */
    uint8_t *tomb;       /* 1 for a tombstone */
    struct wcol *cols;   /* s->nfields columns */
    struct strbuf arena; /* string bytes of the block */
    struct strbuf first; /* first key of the block */
    struct bstats bs;    /* its stats so far */

    struct strbuf prev;       /* last key added */
    uint64_t prev_ver;        /* and its version */
    bool have_prev;           /* false before the first add */
    struct strbuf index;      /* index entries so far */
    uint64_t *hashes;         /* bloom_hash() of each distinct key */
    size_t nhash;             /* used */
    size_t hash_alloc;        /* allocated */
    struct segment_info info; /* totals so far */

    struct value *vals;    /* s->nfields, scratch for add */
    uint8_t *keyscratch;   /* for key_decode_pk() of tombstones */
    size_t keyscratch_len; /* its size */
    struct strbuf key;     /* a row's key, re-encoded */
    struct strbuf raw;     /* a block, before compression */
    struct strbuf colbuf;  /* its columns */
    struct strbuf out;     /* a block as written */
};

static void wcol_alloc(struct wcol *c, enum field_type t, uint32_t cap)
{
    c->nulls = calloc_array(cap, 1);
    switch (t) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        c->i = calloc_array(cap, sizeof(*c->i));
        break;
    case FIELD_FLOAT64:
        c->f = calloc_array(cap, sizeof(*c->f));
        break;
    case FIELD_BOOL:
        c->b = calloc_array(cap, 1);
        break;
    case FIELD_STRING:
    case FIELD_JSON:
        c->s = calloc_array(cap, sizeof(*c->s));
        break;
    }
}

static void wcol_free(struct wcol *c)
{
    free(c->nulls);
    free(c->i);
    free(c->f);
    free(c->b);
    free(c->s);
}

static void writer_free(struct segment_writer *w)
{
    if (w->fd >= 0)
        w->fs->close(w->fs, w->fd);
    for (uint32_t i = 0; w->cols && i < w->s->nfields; i++)
        wcol_free(&w->cols[i]);
    free(w->cols);
    free(w->ver);
    free(w->tomb);
    strbuf_release(&w->arena);
    strbuf_release(&w->first);
    strbuf_release(&w->prev);
    strbuf_release(&w->index);
    free(w->hashes);
    free(w->vals);
    free(w->keyscratch);
    strbuf_release(&w->key);
    strbuf_release(&w->raw);
    strbuf_release(&w->colbuf);
    strbuf_release(&w->out);
    free(w->path);
    free(w->tmp);
    free(w);
}

enum st_status segment_writer_new(struct fs *fs, const char *path, const struct schema *s,
                                  uint64_t table_id, const struct segment_writer_opts *opts,
                                  struct segment_writer **out, struct err *err)
{
    struct segment_writer *w = xcalloc(1, sizeof(*w));
    uint8_t hdr[HEADER_SIZE] = {0};
    size_t plen = strlen(path);
    uint32_t ncells;

    *out = NULL;
    st_assert(s->nfields >= 1 && s->npk >= 1);
    w->fs = fs;
    w->fd = -1;
    w->s = s;
    w->table_id = table_id;
    if (opts)
        w->o = *opts;
    if (!w->o.block_rows)
        w->o.block_rows = SEGMENT_DEFAULT_BLOCK_ROWS;
    if (!w->o.block_bytes)
        w->o.block_bytes = SEGMENT_DEFAULT_BLOCK_BYTES;
    if (!w->o.bloom_bits)
        w->o.bloom_bits = SEGMENT_DEFAULT_BLOOM_BITS;
    w->o.block_rows = ST_MIN(w->o.block_rows, SEGMENT_MAX_BLOCK_ROWS);
    w->o.block_bytes = ST_MIN(w->o.block_bytes, MAX_BLOCK_BYTES_OPT);
    w->o.bloom_bits = ST_MIN(w->o.bloom_bits, 64u);
    ncells = SEGMENT_MAX_BLOCK_CELLS / (s->nfields + 2);
    w->cap = ST_MIN(w->o.block_rows, ncells);
    w->o.block_rows = w->cap;

    w->path = xstrdup(path);
    w->tmp = xmalloc(plen + 5);
    memcpy(w->tmp, path, plen);
    memcpy(w->tmp + plen, ".tmp", 5);
    strbuf_init(&w->arena, 0);
    strbuf_init(&w->first, 0);
    strbuf_init(&w->prev, 0);
    strbuf_init(&w->index, 0);
    strbuf_init(&w->key, 0);
    strbuf_init(&w->raw, 0);
    strbuf_init(&w->colbuf, 0);
    strbuf_init(&w->out, 0);
    w->ver = calloc_array(w->cap, sizeof(*w->ver));
    w->tomb = calloc_array(w->cap, 1);
    w->cols = calloc_array(s->nfields, sizeof(*w->cols));
    for (uint32_t i = 0; i < s->nfields; i++)
        wcol_alloc(&w->cols[i], s->fields[i].type, w->cap);
    w->vals = calloc_array(s->nfields, sizeof(*w->vals));
    w->info.table_id = table_id;
    w->info.schema_version = s->version;

    w->fd = fs->open(fs, w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w->fd < 0) {
        enum st_status rc = err_set_errno(err, ST_EIO, errno, "cannot create segment '%s'", w->tmp);

        writer_free(w);
        return rc;
    }
    memcpy(hdr, MAGIC, 8);
    le_put(hdr + 8, SEGMENT_FORMAT_VERSION, 4);
    le_put(hdr + 12, HEADER_SIZE, 4);
    le_put(hdr + 16, table_id, 8);
    le_put(hdr + 24, s->version, 4);
    le_put(hdr + 28, crc32c(hdr, 28), 4);
    if (fs_pwrite_full(fs, w->fd, hdr, sizeof(hdr), 0) < 0) {
        enum st_status rc = err_set_errno(err, ST_EIO, errno, "cannot write segment '%s'", w->tmp);

        segment_writer_abort(w);
        return rc;
    }
    w->off = HEADER_SIZE;
    *out = w;
    return ST_OK;
}

/* Appends the index entry of the block just written (len bytes on disk). */
static void index_add(struct segment_writer *w, uint64_t len)
{
    const struct bstats *b = &w->bs;
    struct strbuf *ix = &w->index;
    size_t shared = 0;
    size_t max = ST_MIN(w->first.len, w->prev.len);

    while (shared < max && w->first.buf[shared] == w->prev.buf[shared])
        shared++;
    colenc_put_varint(ix, len);
    colenc_put_varint(ix, w->n);
    colenc_put_varint(ix, b->ntomb);
    colenc_put_varint(ix, b->minv);
    colenc_put_varint(ix, b->maxv - b->minv);
    strbuf_addch(ix, b->has_time ? 1 : 0);
    if (b->has_time) {
        colenc_put_varint(ix, colenc_zigzag(b->mint));
        colenc_put_varint(ix, (uint64_t)b->maxt - (uint64_t)b->mint);
    }
    colenc_put_varint(ix, w->first.len);
    strbuf_add(ix, w->first.buf, w->first.len);
    colenc_put_varint(ix, shared);
    colenc_put_varint(ix, w->prev.len - shared);
    strbuf_add(ix, w->prev.buf + shared, w->prev.len - shared);
}

/* Encodes the columns of the current block into w->raw. */
static void block_encode(struct segment_writer *w)
{
    uint32_t ncols = w->s->nfields + 2;
    size_t *lens = calloc_array(ncols, sizeof(*lens));
    struct colenc_str *strs = NULL;
    size_t start;

    strbuf_reset(&w->colbuf);
    strbuf_reset(&w->raw);
    colenc_put_ints(&w->colbuf, w->ver, w->n);
    lens[0] = w->colbuf.len;
    start = w->colbuf.len;
    colenc_put_bits(&w->colbuf, w->tomb, w->n);
    lens[1] = w->colbuf.len - start;
    for (uint32_t f = 0; f < w->s->nfields; f++) {
        struct wcol *c = &w->cols[f];

        start = w->colbuf.len;
        colenc_put_bits(&w->colbuf, c->nulls, w->n);
        switch (w->s->fields[f].type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            colenc_put_ints(&w->colbuf, c->i, c->nv);
            break;
        case FIELD_FLOAT64:
            colenc_put_floats(&w->colbuf, c->f, c->nv);
            break;
        case FIELD_BOOL:
            colenc_put_bits(&w->colbuf, c->b, c->nv);
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            if (!strs)
                strs = calloc_array(w->cap, sizeof(*strs));
            for (uint32_t i = 0; i < c->nv; i++) {
                strs[i].ptr = (const uint8_t *)w->arena.buf + c->s[i].off;
                strs[i].len = c->s[i].len;
            }
            colenc_put_strs(&w->colbuf, strs, c->nv);
            break;
        }
        lens[2 + f] = w->colbuf.len - start;
    }
    colenc_put_varint(&w->raw, w->n);
    colenc_put_varint(&w->raw, ncols);
    for (uint32_t i = 0; i < ncols; i++)
        colenc_put_varint(&w->raw, lens[i]);
    strbuf_add(&w->raw, w->colbuf.buf, w->colbuf.len);
    free(strs);
    free(lens);
}

/* Compresses, frames and writes the current block, then starts a new one. */
static enum st_status block_flush(struct segment_writer *w, struct err *err)
{
    int bound;
    int clen = 0;
    uint8_t *p;
    size_t len;

    block_encode(w);
    st_assert(w->raw.len <= SEGMENT_MAX_BLOCK_RAW);
    bound = LZ4_compressBound((int)w->raw.len);
    strbuf_reset(&w->out);
    strbuf_grow(&w->out, (size_t)bound + BLOCK_OVERHEAD);
    p = (uint8_t *)w->out.buf;
    if (w->o.lz4_hc_level > 0)
        clen =
            LZ4_compress_HC(w->raw.buf, (char *)p + 5, (int)w->raw.len, bound, w->o.lz4_hc_level);
    else
        clen = LZ4_compress_default(w->raw.buf, (char *)p + 5, (int)w->raw.len, bound);
    if (clen > 0 && (size_t)clen < w->raw.len) {
        p[0] = CODEC_LZ4;
        len = (size_t)clen;
    } else {
        p[0] = CODEC_STORED;
        memcpy(p + 5, w->raw.buf, w->raw.len);
        len = w->raw.len;
    }
    le_put(p + 1, w->raw.len, 4);
    le_put(p + 5 + len, crc32c(p, 5 + len), 4);
    len += BLOCK_OVERHEAD;
    if (fs_pwrite_full(w->fs, w->fd, p, len, w->off) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot write segment '%s'", w->tmp);
    index_add(w, len);
    w->off += len;
    w->info.blocks++;

    for (uint32_t f = 0; f < w->s->nfields; f++)
        w->cols[f].nv = 0;
    w->n = 0;
    w->bytes = 0;
    strbuf_reset(&w->arena);
    memset(&w->bs, 0, sizeof(w->bs));
    return ST_OK;
}

/* Checks the entry and puts its values in w->vals. */
static enum st_status check_entry(struct segment_writer *w, const void *key, size_t key_len,
                                  uint64_t version, bool tombstone, const void *row,
                                  struct err *err)
{
    const struct schema *s = w->s;
    struct value pk[SCHEMA_MAX_PK];
    uint32_t row_len;
    size_t klen;
    int c;

    if (key_len == 0 || key_len > SEGMENT_MAX_KEY)
        return err_set(err, key_len ? ST_ETOOLARGE : ST_EINVAL, "key length %zu not allowed",
                       key_len);
    if (version == 0)
        return err_set(err, ST_EINVAL, "version 0 is not a commit version");
    if (tombstone != (row == NULL))
        return err_set(err, ST_EINVAL, "a tombstone has no row and a row is not a tombstone");
    if (w->have_prev) {
        c = key_compare(key, key_len, w->prev.buf, w->prev.len);
        if (c < 0)
            return err_set(err, ST_EINVAL, "keys out of order");
        if (c == 0 && version >= w->prev_ver)
            return err_set(err, ST_EINVAL,
                           "versions of a key must come newest first, each once (%" PRIu64
                           " after %" PRIu64 ")",
                           version, w->prev_ver);
    }
    if (tombstone) {
        if (w->keyscratch_len < key_len) {
            free(w->keyscratch);
            w->keyscratch = xmalloc(key_len);
            w->keyscratch_len = key_len;
        }
        /* Readers rebuild the key from these values: it must come back the same. */
        if (key_decode_pk(s, key, key_len, pk, w->keyscratch, err))
            return err_set(err, ST_EINVAL, "tombstone key does not decode");
        strbuf_reset(&w->key);
        strbuf_grow(&w->key, key_len);
        klen = key_encode(pk, s->npk, (uint8_t *)w->key.buf, key_len);
        if (klen != key_len || memcmp(w->key.buf, key, key_len))
            return err_set(err, ST_EINVAL, "tombstone key is not in canonical form");
        for (uint32_t i = 0; i < s->nfields; i++) {
            memset(&w->vals[i], 0, sizeof(w->vals[i]));
            w->vals[i].type = s->fields[i].type;
            w->vals[i].is_null = true;
        }
        for (uint32_t k = 0; k < s->npk; k++)
            w->vals[s->pk[k]] = pk[k];
        return ST_OK;
    }
    row_len = schema_row_len(row);
    if (row_len > SEGMENT_MAX_ROW)
        return err_set(err, ST_ETOOLARGE, "row of %u bytes is over %u", row_len, SEGMENT_MAX_ROW);
    if (!row_parse(s->fields, s->nfields, row, row_len, w->vals))
        return err_set(err, ST_EINVAL, "row is malformed for schema version %u", s->version);
    for (uint32_t i = 0; i < s->nfields; i++)
        if (w->vals[i].is_null && (!s->fields[i].nullable || s->fields[i].is_pk))
            return err_set(err, ST_EINVAL, "row has a null in field '%s', which is not nullable",
                           s->fields[i].name);
    for (uint32_t k = 0; k < s->npk; k++)
        pk[k] = w->vals[s->pk[k]];
    strbuf_reset(&w->key);
    strbuf_grow(&w->key, key_len);
    klen = key_encode(pk, s->npk, (uint8_t *)w->key.buf, key_len);
    if (klen != key_len || memcmp(w->key.buf, key, key_len))
        return err_set(err, ST_EINVAL, "row's primary key differs from its key");
    return ST_OK;
}

/* Appends w->vals as the next entry of the block. */
static void block_append(struct segment_writer *w, uint64_t version, bool tombstone)
{
    uint32_t r = w->n++;

    w->ver[r] = (int64_t)version;
    w->tomb[r] = tombstone;
    if (tombstone)
        w->bs.ntomb++;
    if (r == 0 || version < w->bs.minv)
        w->bs.minv = version;
    if (r == 0 || version > w->bs.maxv)
        w->bs.maxv = version;
    for (uint32_t f = 0; f < w->s->nfields; f++) {
        const struct value *v = &w->vals[f];
        struct wcol *c = &w->cols[f];

        c->nulls[r] = v->is_null;
        if (v->is_null)
            continue;
        switch (v->type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            c->i[c->nv] = v->u.i;
            break;
        case FIELD_FLOAT64:
            c->f[c->nv] = v->u.f;
            break;
        case FIELD_BOOL:
            c->b[c->nv] = v->u.b;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            c->s[c->nv].off = w->arena.len;
            c->s[c->nv].len = v->u.s.len;
            strbuf_add(&w->arena, v->u.s.ptr, v->u.s.len);
            break;
        }
        c->nv++;
    }
    if (!tombstone && w->s->time_field >= 0 && !w->vals[w->s->time_field].is_null) {
        int64_t t = w->vals[w->s->time_field].u.i;

        if (!w->bs.has_time || t < w->bs.mint)
            w->bs.mint = t;
        if (!w->bs.has_time || t > w->bs.maxt)
            w->bs.maxt = t;
        w->bs.has_time = true;
    }
}

enum st_status segment_writer_add(struct segment_writer *w, const void *key, size_t key_len,
                                  uint64_t version, bool tombstone, const void *row,
                                  struct err *err)
{
    struct segment_info *in = &w->info;
    enum st_status rc;
    bool new_key;

    if (w->failed)
        return err_set(err, ST_EINVAL, "segment writer of '%s' failed earlier", w->path);
    rc = check_entry(w, key, key_len, version, tombstone, row, err);
    if (rc) {
        w->failed = true;
        return rc;
    }
    new_key = !w->have_prev || key_compare(key, key_len, w->prev.buf, w->prev.len) != 0;
    if (w->n == 0) {
        strbuf_reset(&w->first);
        strbuf_add(&w->first, key, key_len);
    }
    block_append(w, version, tombstone);
    w->bytes += key_len + (tombstone ? 0 : schema_row_len(row));

    in->entries++;
    in->input_bytes += key_len + (tombstone ? 0 : schema_row_len(row));
    in->tombstones += tombstone;
    if (in->entries == 1 || version < in->min_version)
        in->min_version = version;
    if (version > in->max_version)
        in->max_version = version;
    if (w->bs.has_time) {
        if (!in->has_time || w->bs.mint < in->min_time)
            in->min_time = w->bs.mint;
        if (!in->has_time || w->bs.maxt > in->max_time)
            in->max_time = w->bs.maxt;
        in->has_time = true;
    }
    if (new_key) {
        if (w->nhash == w->hash_alloc) {
            w->hash_alloc = w->hash_alloc ? 2 * w->hash_alloc : 1024;
            w->hashes = realloc_array(w->hashes, w->hash_alloc, sizeof(*w->hashes));
        }
        w->hashes[w->nhash++] = bloom_hash(key, key_len);
        in->keys++;
    }
    strbuf_reset(&w->prev);
    strbuf_add(&w->prev, key, key_len);
    w->prev_ver = version;
    w->have_prev = true;

    if (w->n == w->cap || w->bytes >= w->o.block_bytes) {
        rc = block_flush(w, err);
        if (rc)
            w->failed = true;
    }
    return rc;
}

static void meta_encode(const struct segment_writer *w, struct strbuf *m)
{
    const struct schema *s = w->s;
    const struct segment_info *in = &w->info;

    colenc_put_varint(m, s->nfields);
    for (uint32_t i = 0; i < s->nfields; i++) {
        size_t nlen = strlen(s->fields[i].name);

        strbuf_addch(m, (char)s->fields[i].type);
        strbuf_addch(m, s->fields[i].nullable ? 1 : 0);
        colenc_put_varint(m, nlen);
        strbuf_add(m, s->fields[i].name, nlen);
    }
    colenc_put_varint(m, s->npk);
    for (uint32_t k = 0; k < s->npk; k++)
        colenc_put_varint(m, s->pk[k]);
    colenc_put_varint(m, (uint64_t)(s->time_field + 1));
    colenc_put_varint(m, in->entries);
    colenc_put_varint(m, in->keys);
    colenc_put_varint(m, in->tombstones);
    colenc_put_varint(m, in->input_bytes);
    colenc_put_varint(m, in->min_version);
    colenc_put_varint(m, in->max_version);
    strbuf_addch(m, in->has_time ? 1 : 0);
    if (in->has_time) {
        colenc_put_varint(m, colenc_zigzag(in->min_time));
        colenc_put_varint(m, colenc_zigzag(in->max_time));
    }
}

/* Writes a section at w->off and fills its 16-byte footer descriptor. */
static enum st_status section_write(struct segment_writer *w, const struct strbuf *sec,
                                    uint8_t *desc, struct err *err)
{
    if (sec->len > SEGMENT_MAX_SECTION)
        return err_set(err, ST_ETOOLARGE, "segment '%s': a section is over %u bytes", w->path,
                       SEGMENT_MAX_SECTION);
    le_put(desc, w->off, 8);
    le_put(desc + 8, sec->len, 4);
    le_put(desc + 12, crc32c(sec->buf, sec->len), 4);
    if (fs_pwrite_full(w->fs, w->fd, sec->buf, sec->len, w->off) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot write segment '%s'", w->tmp);
    w->off += sec->len;
    return ST_OK;
}

/* The directory part of path ("." when none) in a new string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

enum st_status segment_writer_finish(struct segment_writer *w, struct segment_info *info,
                                     struct err *err)
{
    struct strbuf sec = STRBUF_INIT;
    uint8_t foot[FOOTER_SIZE] = {0};
    enum st_status rc = ST_OK;
    char *dir;
    int fd;

    if (w->failed) {
        rc = err_set(err, ST_EINVAL, "segment writer of '%s' failed earlier", w->path);
        goto out_abort;
    }
    if (w->n && (rc = block_flush(w, err)))
        goto out_abort;

    meta_encode(w, &sec);
    if ((rc = section_write(w, &sec, foot, err)))
        goto out_abort;
    strbuf_reset(&sec);
    colenc_put_varint(&sec, w->info.blocks);
    strbuf_add(&sec, w->index.buf, w->index.len);
    if ((rc = section_write(w, &sec, foot + 16, err)))
        goto out_abort;
    strbuf_reset(&sec);
    bloom_build(w->hashes, w->nhash, w->o.bloom_bits, &sec);
    if ((rc = section_write(w, &sec, foot + 32, err)))
        goto out_abort;

    le_put(foot + 48, w->table_id, 8);
    le_put(foot + 56, w->s->version, 4);
    le_put(foot + 60, SEGMENT_FORMAT_VERSION, 4);
    le_put(foot + 68, crc32c(foot, 68), 4);
    memcpy(foot + 72, MAGIC, 8);
    if (fs_pwrite_full(w->fs, w->fd, foot, sizeof(foot), w->off) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot write segment '%s'", w->tmp);
        goto out_abort;
    }
    w->off += sizeof(foot);
    if (w->fs->fsync(w->fs, w->fd) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot fsync segment '%s'", w->tmp);
        goto out_abort;
    }
    fd = w->fd;
    w->fd = -1;
    if (w->fs->close(w->fs, fd) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot close segment '%s'", w->tmp);
        goto out_abort;
    }
    if (w->fs->rename(w->fs, w->tmp, w->path) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot rename '%s' to '%s'", w->tmp, w->path);
        goto out_abort;
    }
    w->info.file_bytes = w->off;
    if (info)
        *info = w->info;
    dir = dir_of(w->path);
    if (w->fs->fsync_dir(w->fs, dir) < 0)
        rc = err_set_errno(err, ST_EIO, errno, "cannot fsync directory '%s'", dir);
    free(dir);
    strbuf_release(&sec);
    writer_free(w);
    return rc;

out_abort:
    strbuf_release(&sec);
    segment_writer_abort(w);
    return rc;
}

void segment_writer_abort(struct segment_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        w->fs->close(w->fs, w->fd);
        w->fd = -1;
    }
    w->fs->unlink(w->fs, w->tmp); /* best effort; a leftover is truncated by the next writer */
    writer_free(w);
}

/* ------------------------------------------------------------------ */
/* Reader: opening */

/* One block's index entry. */
struct bidx {
    uint64_t off;         /* file offset */
    uint32_t len;         /* bytes on disk */
    uint32_t nrows;       /* entries */
    uint32_t ntomb;       /* tombstones among them */
    uint64_t minv;        /* smallest version */
    uint64_t maxv;        /* largest */
    bool has_time;        /* mint/maxt are set */
    int64_t mint;         /* smallest time value of a row */
    int64_t maxt;         /* largest */
    const uint8_t *first; /* first key (into segment.index) */
    uint32_t first_len;   /* its length */
    uint8_t *last;        /* last key (owned) */
    uint32_t last_len;    /* its length */
};

struct segment {
    atomic_uint refs;           /* references */
    struct fs *fs;              /* the file system */
    int fd;                     /* open for reading, shared by all readers */
    char *path;                 /* as given to segment_open() */
    struct segment_info info;   /* totals from the meta section */
    uint32_t nfields;           /* fields of the rows */
    struct field *fields;       /* their names, types and nullability */
    uint32_t npk;               /* key fields */
    uint32_t pk[SCHEMA_MAX_PK]; /* their indexes, in key order */
    int32_t time_field;         /* index of the time field, or -1 */
    uint8_t *index;             /* the index section's bytes */
    struct bidx *blocks;        /* info.blocks entries */
    uint8_t *bloom_buf;         /* the bloom section's bytes */
    struct bloom bloom;         /* parsed over bloom_buf */
    atomic_bool unlink_last;    /* the last unref unlinks the file */
};

static void segment_free(struct segment *seg)
{
    if (seg->fd >= 0)
        seg->fs->close(seg->fs, seg->fd);
    if (atomic_load_explicit(&seg->unlink_last, memory_order_acquire)) {
        if (seg->fs->unlink(seg->fs, seg->path) < 0)
            log_warn("segment: cannot remove file='%s' errno=%d", seg->path, errno);
        else
            log_info("segment: removed file='%s'", seg->path);
    }
    for (uint64_t i = 0; seg->blocks && i < seg->info.blocks; i++)
        free(seg->blocks[i].last);
    free(seg->blocks);
    free(seg->index);
    free(seg->bloom_buf);
    free(seg->fields);
    free(seg->path);
    free(seg);
}

void segment_ref(struct segment *seg)
{
    atomic_fetch_add_explicit(&seg->refs, 1, memory_order_relaxed);
}

void segment_unlink_on_close(struct segment *seg)
{
    atomic_store_explicit(&seg->unlink_last, true, memory_order_release);
}

void segment_unref(struct segment *seg)
{
    if (seg && atomic_fetch_sub_explicit(&seg->refs, 1, memory_order_acq_rel) == 1)
        segment_free(seg);
}

/* Reads a section described at desc into a new buffer and checks its CRC. */
static enum st_status section_read(struct segment *seg, const uint8_t *desc, const char *name,
                                   uint8_t **out, size_t *len, struct err *err)
{
    uint64_t off = le_get(desc, 8);
    size_t n = (size_t)le_get(desc + 8, 4);
    uint8_t *buf = xmalloc(n ? n : 1);
    enum st_status rc;

    rc = read_at(seg->fs, seg->fd, seg->path, buf, n, off, err);
    if (!rc && !crc_ok(buf, n, (uint32_t)le_get(desc + 12, 4)))
        rc = corrupt(err, seg->path, off, "%s checksum mismatch", name);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return ST_OK;
}

static bool get_u32v(struct colenc_rd *rd, uint64_t max, uint32_t *out)
{
    uint64_t v;

    if (!colenc_get_varint(rd, &v) || v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

static enum st_status meta_parse(struct segment *seg, const uint8_t *buf, size_t len, uint64_t off,
                                 struct err *err)
{
    struct colenc_rd rd = {buf, buf + len};
    struct segment_info *in = &seg->info;
    uint64_t v;
    uint64_t lo;

    if (!get_u32v(&rd, SCHEMA_MAX_FIELDS, &seg->nfields) || seg->nfields == 0)
        goto out_bad;
    seg->fields = calloc_array(seg->nfields, sizeof(*seg->fields));
    for (uint32_t i = 0; i < seg->nfields; i++) {
        struct field *f = &seg->fields[i];
        uint32_t nlen;

        if (rd.end - rd.p < 2 || rd.p[0] > FIELD_JSON || rd.p[1] > 1)
            goto out_bad;
        f->type = (enum field_type)rd.p[0];
        f->nullable = rd.p[1];
        rd.p += 2;
        if (!get_u32v(&rd, SCHEMA_NAME_MAX - 1, &nlen) || (size_t)(rd.end - rd.p) < nlen ||
            !schema_field_name_is_valid((const char *)rd.p, nlen))
            goto out_bad;
        memcpy(f->name, rd.p, nlen);
        rd.p += nlen;
    }
    if (!get_u32v(&rd, SCHEMA_MAX_PK, &seg->npk) || seg->npk == 0)
        goto out_bad;
    for (uint32_t k = 0; k < seg->npk; k++) {
        if (!get_u32v(&rd, seg->nfields - 1, &seg->pk[k]))
            goto out_bad;
        seg->fields[seg->pk[k]].is_pk = true;
    }
    if (!colenc_get_varint(&rd, &v) || v > seg->nfields ||
        (v && seg->fields[v - 1].type != FIELD_TIMESTAMP))
        goto out_bad;
    seg->time_field = (int32_t)v - 1;
    if (!colenc_get_varint(&rd, &in->entries) || !colenc_get_varint(&rd, &in->keys) ||
        !colenc_get_varint(&rd, &in->tombstones) || !colenc_get_varint(&rd, &in->input_bytes) ||
        !colenc_get_varint(&rd, &in->min_version) || !colenc_get_varint(&rd, &in->max_version) ||
        in->keys > in->entries || in->tombstones > in->entries ||
        in->min_version > in->max_version || rd.p == rd.end || *rd.p > 1)
        goto out_bad;
    in->has_time = *rd.p++;
    if (in->has_time) {
        if (!colenc_get_varint(&rd, &lo) || !colenc_get_varint(&rd, &v))
            goto out_bad;
        in->min_time = colenc_unzigzag(lo);
        in->max_time = colenc_unzigzag(v);
        if (in->min_time > in->max_time || seg->time_field < 0)
            goto out_bad;
    }
    if (rd.p != rd.end)
        goto out_bad;
    return ST_OK;
out_bad:
    return corrupt(err, seg->path, off + (uint64_t)(rd.p - buf), "malformed meta section");
}

/* Parses the index section (kept in seg->index) and checks it against the meta. */
static enum st_status index_parse(struct segment *seg, size_t len, uint64_t off, uint64_t data_end,
                                  struct err *err)
{
    const uint8_t *buf = seg->index;
    struct colenc_rd rd = {buf, buf + len};
    struct segment_info *in = &seg->info;
    uint64_t pos = HEADER_SIZE;
    uint64_t entries = 0;
    uint64_t tombs = 0;
    uint64_t n;
    uint32_t max_rows =
        ST_MIN(SEGMENT_MAX_BLOCK_ROWS, SEGMENT_MAX_BLOCK_CELLS / (seg->nfields + 2));

    /* An entry takes at least 9 bytes: bounds the allocation. */
    if (!colenc_get_varint(&rd, &n) || n > len / 9 || (n == 0) != (in->entries == 0))
        goto out_bad;
    in->blocks = n;
    seg->blocks = calloc_array(n ? n : 1, sizeof(*seg->blocks));
    for (uint64_t i = 0; i < n; i++) {
        struct bidx *b = &seg->blocks[i];
        uint64_t v;
        uint32_t shared;
        uint32_t rest;

        if (!get_u32v(&rd, SEGMENT_MAX_BLOCK_RAW + BLOCK_OVERHEAD, &b->len) ||
            b->len < BLOCK_OVERHEAD + 1 || !get_u32v(&rd, max_rows, &b->nrows) || b->nrows == 0 ||
            !get_u32v(&rd, b->nrows, &b->ntomb) || !colenc_get_varint(&rd, &b->minv) ||
            b->minv == 0 || !colenc_get_varint(&rd, &v) || v > UINT64_MAX - b->minv ||
            rd.p == rd.end || *rd.p > 1)
            goto out_bad;
        b->maxv = b->minv + v;
        b->off = pos;
        pos += b->len;
        b->has_time = *rd.p++;
        if (b->has_time) {
            if (!colenc_get_varint(&rd, &v))
                goto out_bad;
            b->mint = colenc_unzigzag(v);
            if (!colenc_get_varint(&rd, &v))
                goto out_bad;
            b->maxt = (int64_t)((uint64_t)b->mint + v);
            if (b->maxt < b->mint || seg->time_field < 0)
                goto out_bad;
        }
        if (!get_u32v(&rd, SEGMENT_MAX_KEY, &b->first_len) || b->first_len == 0 ||
            (size_t)(rd.end - rd.p) < b->first_len)
            goto out_bad;
        b->first = rd.p;
        rd.p += b->first_len;
        if (!get_u32v(&rd, b->first_len, &shared) || !get_u32v(&rd, SEGMENT_MAX_KEY, &rest) ||
            (size_t)(rd.end - rd.p) < rest || shared + rest == 0 || shared + rest > SEGMENT_MAX_KEY)
            goto out_bad;
        b->last_len = shared + rest;
        b->last = xmalloc(b->last_len);
        memcpy(b->last, b->first, shared);
        memcpy(b->last + shared, rd.p, rest);
        rd.p += rest;
        if (key_compare(b->first, b->first_len, b->last, b->last_len) > 0)
            goto out_bad;
        if (i && key_compare(seg->blocks[i - 1].last, seg->blocks[i - 1].last_len, b->first,
                             b->first_len) > 0)
            goto out_bad;
        if (b->minv < in->min_version || b->maxv > in->max_version)
            goto out_bad;
        if (b->has_time && (!in->has_time || b->mint < in->min_time || b->maxt > in->max_time))
            goto out_bad;
        entries += b->nrows;
        tombs += b->ntomb;
    }
    if (rd.p != rd.end || pos != data_end || entries != in->entries || tombs != in->tombstones)
        goto out_bad;
    return ST_OK;
out_bad:
    return corrupt(err, seg->path, off + (uint64_t)(rd.p - buf), "malformed index section");
}

/* Checks the header and footer; fills the three section descriptors. */
static enum st_status frame_check(struct segment *seg, uint64_t size, uint8_t *foot,
                                  uint64_t *data_end, struct err *err)
{
    uint8_t hdr[HEADER_SIZE];
    uint64_t foot_off = size - FOOTER_SIZE;
    uint64_t pos;
    enum st_status rc;

    rc = read_at(seg->fs, seg->fd, seg->path, hdr, sizeof(hdr), 0, err);
    if (rc)
        return rc;
    if (memcmp(hdr, MAGIC, 8) || le_get(hdr + 8, 4) != SEGMENT_FORMAT_VERSION ||
        le_get(hdr + 12, 4) != HEADER_SIZE || !crc_ok(hdr, 28, (uint32_t)le_get(hdr + 28, 4)))
        return corrupt(err, seg->path, 0, "bad file header");
    rc = read_at(seg->fs, seg->fd, seg->path, foot, FOOTER_SIZE, foot_off, err);
    if (rc)
        return rc;
    if (memcmp(foot + 72, MAGIC, 8) || !crc_ok(foot, 68, (uint32_t)le_get(foot + 68, 4)) ||
        le_get(foot + 60, 4) != SEGMENT_FORMAT_VERSION || le_get(foot + 64, 4) != 0)
        return corrupt(err, seg->path, foot_off, "bad footer");
    if (le_get(foot + 48, 8) != le_get(hdr + 16, 8) || le_get(foot + 56, 4) != le_get(hdr + 24, 4))
        return corrupt(err, seg->path, foot_off, "footer and header disagree");
    /* The sections must tile [end of blocks, footer). */
    *data_end = le_get(foot, 8);
    pos = *data_end;
    for (int s = 0; s < 3; s++) {
        const uint8_t *d = foot + 16 * s;

        if (le_get(d, 8) != pos || le_get(d + 8, 4) > SEGMENT_MAX_SECTION ||
            le_get(d + 8, 4) > foot_off - pos)
            return corrupt(err, seg->path, foot_off, "bad section layout");
        pos += le_get(d + 8, 4);
    }
    if (*data_end < HEADER_SIZE || pos != foot_off)
        return corrupt(err, seg->path, foot_off, "bad section layout");
    seg->info.table_id = le_get(foot + 48, 8);
    seg->info.schema_version = (uint32_t)le_get(foot + 56, 4);
    seg->info.file_bytes = size;
    return ST_OK;
}

enum st_status segment_open(struct fs *fs, const char *path, struct segment **out, struct err *err)
{
    struct segment *seg = xcalloc(1, sizeof(*seg));
    uint8_t foot[FOOTER_SIZE];
    uint64_t data_end = 0;
    uint8_t *meta = NULL;
    size_t len;
    uint64_t size;
    enum st_status rc;
    int e;

    *out = NULL;
    atomic_init(&seg->refs, 1);
    atomic_init(&seg->unlink_last, false);
    seg->fs = fs;
    seg->path = xstrdup(path);
    seg->fd = fs->open(fs, path, O_RDONLY, 0);
    if (seg->fd < 0) {
        e = errno;
        rc = err_set_errno(err, e == ENOENT ? ST_ENOTFOUND : ST_EIO, e, "cannot open segment '%s'",
                           path);
        goto out_free;
    }
    if (fs->fsize(fs, seg->fd, &size) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot stat segment '%s'", path);
        goto out_free;
    }
    if (size < HEADER_SIZE + FOOTER_SIZE) {
        rc = corrupt(err, path, 0, "file of %" PRIu64 " bytes is too short", size);
        goto out_free;
    }
    if ((rc = frame_check(seg, size, foot, &data_end, err)))
        goto out_free;
    if ((rc = section_read(seg, foot, "meta section", &meta, &len, err)))
        goto out_free;
    rc = meta_parse(seg, meta, len, le_get(foot, 8), err);
    free(meta);
    if (rc)
        goto out_free;
    if ((rc = section_read(seg, foot + 16, "index section", &seg->index, &len, err)))
        goto out_free;
    if ((rc = index_parse(seg, len, le_get(foot + 16, 8), data_end, err)))
        goto out_free;
    if ((rc = section_read(seg, foot + 32, "bloom section", &seg->bloom_buf, &len, err)))
        goto out_free;
    if (bloom_parse(seg->bloom_buf, len, &seg->bloom) || (seg->info.keys && seg->bloom.m == 0)) {
        rc = corrupt(err, path, le_get(foot + 32, 8), "malformed bloom section");
        goto out_free;
    }
    *out = seg;
    return ST_OK;

out_free:
    segment_free(seg);
    return rc;
}

void segment_get_info(const struct segment *seg, struct segment_info *out)
{
    *out = seg->info;
}

const char *segment_path(const struct segment *seg)
{
    return seg->path;
}

bool segment_key_range(const struct segment *seg, const void **lo, size_t *lo_len, const void **hi,
                       size_t *hi_len)
{
    const struct bidx *last;

    if (!seg->info.blocks)
        return false;
    last = &seg->blocks[seg->info.blocks - 1];
    *lo = seg->blocks[0].first;
    *lo_len = seg->blocks[0].first_len;
    *hi = last->last;
    *hi_len = last->last_len;
    return true;
}

bool segment_schema_matches(const struct segment *seg, const struct schema *s)
{
    if (s->version != seg->info.schema_version || s->nfields != seg->nfields ||
        s->npk != seg->npk || s->time_field != seg->time_field)
        return false;
    for (uint32_t i = 0; i < s->nfields; i++)
        if (s->fields[i].type != seg->fields[i].type ||
            s->fields[i].nullable != seg->fields[i].nullable ||
            strcmp(s->fields[i].name, seg->fields[i].name))
            return false;
    for (uint32_t k = 0; k < s->npk; k++)
        if (s->pk[k] != seg->pk[k])
            return false;
    return true;
}

bool segment_may_contain(const struct segment *seg, const void *key, size_t len)
{
    return bloom_may_contain(&seg->bloom, bloom_hash(key, len));
}

/* ------------------------------------------------------------------ */
/* Reader: blocks */

/* One column of a decoded block; values are dense (one per entry). */
struct dcol {
    const uint8_t *src;   /* encoded bytes, in the raw block */
    size_t src_len;       /* their length */
    bool done;            /* decoded */
    uint8_t *nulls;       /* per entry, or NULL when none is null */
    int64_t *i;           /* int64, timestamp */
    double *f;            /* float64 */
    uint8_t *b;           /* bool */
    struct colenc_str *s; /* string, json (slices of the raw block) */
};

struct dblock {
    uint64_t bi;        /* index of the block */
    uint32_t n;         /* entries */
    uint32_t nfields;   /* columns in cols */
    uint8_t *buf;       /* the block as read */
    uint8_t *dec;       /* decompressed bytes, or NULL when stored */
    int64_t *ver;       /* versions */
    uint8_t *tomb;      /* 1 for a tombstone */
    struct dcol *cols;  /* one per field */
    struct value *vals; /* scratch: one entry's values */
};

static void dblock_free(struct dblock *db)
{
    if (!db)
        return;
    for (uint32_t f = 0; db->cols && f < db->nfields; f++) {
        struct dcol *c = &db->cols[f];

        free(c->nulls);
        free(c->i);
        free(c->f);
        free(c->b);
        free(c->s);
    }
    free(db->cols);
    free(db->vals);
    free(db->ver);
    free(db->tomb);
    free(db->dec);
    free(db->buf);
    free(db);
}

/*
 * Decodes field f of db (once). Non-null values decode into the front of
 * the dense array and then move to their entries, back to front.
 */
static enum st_status dcol_ensure(const struct segment *seg, struct dblock *db, uint32_t f,
                                  struct err *err)
{
    struct dcol *c = &db->cols[f];
    const struct bidx *b = &seg->blocks[db->bi];
    struct colenc_rd rd = {c->src, c->src + c->src_len};
    enum field_type t = seg->fields[f].type;
    uint32_t n = db->n;
    enum st_status rc;
    size_t nnull;
    size_t nv;
    size_t j;

    if (c->done)
        return ST_OK;
    free(c->nulls); /* left by an earlier failed attempt */
    free(c->i);
    free(c->f);
    free(c->b);
    free(c->s);
    c->i = NULL;
    c->f = NULL;
    c->b = NULL;
    c->s = NULL;
    c->nulls = xmalloc(n);
    if (colenc_get_bits(&rd, c->nulls, n, &nnull))
        goto out_bad;
    nv = n - nnull;
    for (uint32_t r = 0; nnull && r < n; r++)
        if (c->nulls[r] && (seg->fields[f].is_pk || (!seg->fields[f].nullable && !db->tomb[r])))
            return corrupt(err, seg->path, b->off, "null in field '%s' of a block",
                           seg->fields[f].name);
    switch (t) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        c->i = calloc_array(n, sizeof(*c->i));
        rc = colenc_get_ints(&rd, c->i, nv);
        break;
    case FIELD_FLOAT64:
        c->f = calloc_array(n, sizeof(*c->f));
        rc = colenc_get_floats(&rd, c->f, nv);
        break;
    case FIELD_BOOL:
        c->b = calloc_array(n, 1);
        rc = colenc_get_bits(&rd, c->b, nv, NULL);
        break;
    default:
        c->s = calloc_array(n, sizeof(*c->s));
        rc = colenc_get_strs(&rd, c->s, nv);
        break;
    }
    if (rc || rd.p != rd.end)
        goto out_bad;
    j = nv;
    for (uint32_t r = n; nnull && r-- > 0;) {
        bool null = c->nulls[r];

        if (!null)
            j--;
        switch (t) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            c->i[r] = null ? 0 : c->i[j];
            break;
        case FIELD_FLOAT64:
            c->f[r] = null ? 0 : c->f[j];
            break;
        case FIELD_BOOL:
            c->b[r] = null ? 0 : c->b[j];
            break;
        default:
            c->s[r] = null ? (struct colenc_str){NULL, 0} : c->s[j];
            break;
        }
    }
    if (!nnull) {
        free(c->nulls);
        c->nulls = NULL;
    }
    c->done = true;
    return ST_OK;
out_bad:
    return corrupt(err, seg->path, b->off, "malformed column of field '%s' in a block",
                   seg->fields[f].name);
}

/* The value of field f at entry r (the column is decoded). */
static void dcol_value(const struct segment *seg, const struct dblock *db, uint32_t f, uint32_t r,
                       struct value *v)
{
    const struct dcol *c = &db->cols[f];

    memset(v, 0, sizeof(*v));
    v->type = seg->fields[f].type;
    v->is_null = c->nulls && c->nulls[r];
    if (v->is_null)
        return;
    switch (v->type) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        v->u.i = c->i[r];
        break;
    case FIELD_FLOAT64:
        v->u.f = c->f[r];
        break;
    case FIELD_BOOL:
        v->u.b = c->b[r];
        break;
    default:
        v->u.s.ptr = (const char *)c->s[r].ptr;
        v->u.s.len = c->s[r].len;
        break;
    }
}

/* Encodes the key of entry r into out (reset first); the key columns are decoded. */
static enum st_status dblock_key(const struct segment *seg, const struct dblock *db, uint32_t r,
                                 struct strbuf *out, struct err *err)
{
    struct value vals[SCHEMA_MAX_PK];
    size_t len;

    for (uint32_t k = 0; k < seg->npk; k++) {
        dcol_value(seg, db, seg->pk[k], r, &vals[k]);
        if ((vals[k].type == FIELD_STRING || vals[k].type == FIELD_JSON) &&
            vals[k].u.s.len > SEGMENT_MAX_KEY)
            return corrupt(err, seg->path, seg->blocks[db->bi].off, "key too long in a block");
    }
    strbuf_reset(out);
    strbuf_grow(out, 64);
    len = key_encode(vals, seg->npk, (uint8_t *)out->buf, out->alloc - 1);
    if (len > out->alloc - 1) {
        if (len > SEGMENT_MAX_KEY)
            return corrupt(err, seg->path, seg->blocks[db->bi].off, "key too long in a block");
        strbuf_grow(out, len);
        key_encode(vals, seg->npk, (uint8_t *)out->buf, len);
    }
    colenc_buf_setlen(out, len);
    return ST_OK;
}

/* Builds the row of entry r into out (reset first), decoding columns as needed. */
static enum st_status dblock_row(const struct segment *seg, struct dblock *db, uint32_t r,
                                 const bool *need, struct strbuf *out, struct err *err)
{
    uint64_t size;
    enum st_status rc;

    for (uint32_t f = 0; f < seg->nfields; f++) {
        if (need && !need[f]) {
            /* Not read by the caller: null, and its column is never decoded. */
            memset(&db->vals[f], 0, sizeof(db->vals[f]));
            db->vals[f].type = seg->fields[f].type;
            db->vals[f].is_null = true;
            continue;
        }
        if ((rc = dcol_ensure(seg, db, f, err)))
            return rc;
        dcol_value(seg, db, f, r, &db->vals[f]);
    }
    size = row_size(seg->nfields, db->vals);
    if (size > SEGMENT_MAX_ROW)
        return corrupt(err, seg->path, seg->blocks[db->bi].off, "row too large in a block");
    strbuf_reset(out);
    row_build(seg->nfields, db->vals, size, out);
    return ST_OK;
}

/* Checks a stored block's CRC and decompresses it; *raw points into buf or db->dec. */
static enum st_status block_unpack(const struct segment *seg, struct dblock *db,
                                   const uint8_t **raw, size_t *raw_len, struct err *err)
{
    const struct bidx *b = &seg->blocks[db->bi];
    size_t plen = b->len - BLOCK_OVERHEAD;
    uint64_t rlen;
    int got;

    if (!crc_ok(db->buf, b->len - 4, (uint32_t)le_get(db->buf + b->len - 4, 4)))
        return corrupt(err, seg->path, b->off, "block checksum mismatch");
    rlen = le_get(db->buf + 1, 4);
    if (db->buf[0] == CODEC_STORED) {
        if (rlen != plen)
            return corrupt(err, seg->path, b->off, "stored block length mismatch");
        *raw = db->buf + 5;
        *raw_len = plen;
        return ST_OK;
    }
    /* LZ4 expands at most ~255 times: bounds the allocation by the file. */
    if (db->buf[0] != CODEC_LZ4 || rlen > SEGMENT_MAX_BLOCK_RAW || rlen > (uint64_t)plen * 256 + 64)
        return corrupt(err, seg->path, b->off, "bad block codec or length");
    db->dec = xmalloc(rlen ? (size_t)rlen : 1);
    got = LZ4_decompress_safe((const char *)db->buf + 5, (char *)db->dec, (int)plen, (int)rlen);
    if (got < 0 || (uint64_t)got != rlen)
        return corrupt(err, seg->path, b->off, "block does not decompress");
    *raw = db->dec;
    *raw_len = (size_t)rlen;
    return ST_OK;
}

/* Splits the raw block into columns and decodes versions, tombstones and key fields. */
static enum st_status block_parse(const struct segment *seg, struct dblock *db, const uint8_t *raw,
                                  size_t raw_len, struct err *err)
{
    const struct bidx *b = &seg->blocks[db->bi];
    struct colenc_rd rd = {raw, raw + raw_len};
    uint32_t ncols = seg->nfields + 2;
    const uint8_t *col[2];
    size_t col_len[2];
    uint64_t v;
    size_t ntomb;
    const uint8_t *p;

    if (!colenc_get_varint(&rd, &v) || v != b->nrows || !colenc_get_varint(&rd, &v) || v != ncols)
        goto out_bad;
    db->n = b->nrows;
    db->cols = calloc_array(seg->nfields, sizeof(*db->cols));
    db->nfields = seg->nfields;
    db->vals = calloc_array(seg->nfields, sizeof(*db->vals));
    /* Column lengths first, then the columns they measure. */
    {
        size_t *lens = calloc_array(ncols, sizeof(*lens));
        uint64_t total = 0;
        bool ok = true;

        for (uint32_t i = 0; i < ncols && ok; i++) {
            ok = colenc_get_varint(&rd, &v) && v <= raw_len;
            lens[i] = (size_t)v;
            total += v;
        }
        if (!ok || total != (uint64_t)(rd.end - rd.p)) {
            free(lens);
            goto out_bad;
        }
        p = rd.p;
        for (uint32_t i = 0; i < ncols; i++) {
            if (i < 2) {
                col[i] = p;
                col_len[i] = lens[i];
            } else {
                db->cols[i - 2].src = p;
                db->cols[i - 2].src_len = lens[i];
            }
            p += lens[i];
        }
        free(lens);
    }
    db->ver = calloc_array(db->n, sizeof(*db->ver));
    db->tomb = xmalloc(db->n);
    rd = (struct colenc_rd){col[0], col[0] + col_len[0]};
    if (colenc_get_ints(&rd, db->ver, db->n) || rd.p != rd.end)
        goto out_bad;
    for (uint32_t r = 0; r < db->n; r++)
        if ((uint64_t)db->ver[r] < b->minv || (uint64_t)db->ver[r] > b->maxv)
            goto out_bad;
    rd = (struct colenc_rd){col[1], col[1] + col_len[1]};
    if (colenc_get_bits(&rd, db->tomb, db->n, &ntomb) || rd.p != rd.end || ntomb != b->ntomb)
        goto out_bad;
    return ST_OK;
out_bad:
    return corrupt(err, seg->path, b->off, "malformed block");
}

/*
 * Reads, checks and decodes block bi into a new *out (caller frees with
 * dblock_free()): versions, tombstones and key columns, and checks its
 * first and last keys against the index.
 */
static enum st_status dblock_load(const struct segment *seg, uint64_t bi, struct dblock **out,
                                  struct err *err)
{
    const struct bidx *b = &seg->blocks[bi];
    struct dblock *db = xcalloc(1, sizeof(*db));
    struct strbuf key = STRBUF_INIT;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    enum st_status rc;

    db->bi = bi;
    db->buf = xmalloc(b->len);
    if ((rc = read_at(seg->fs, seg->fd, seg->path, db->buf, b->len, b->off, err)) ||
        (rc = block_unpack(seg, db, &raw, &raw_len, err)) ||
        (rc = block_parse(seg, db, raw, raw_len, err)))
        goto out_free;
    for (uint32_t k = 0; k < seg->npk; k++)
        if ((rc = dcol_ensure(seg, db, seg->pk[k], err)))
            goto out_free;
    if ((rc = dblock_key(seg, db, 0, &key, err)))
        goto out_free;
    if (key_compare(key.buf, key.len, b->first, b->first_len)) {
        rc = corrupt(err, seg->path, b->off, "block's first key differs from the index");
        goto out_free;
    }
    if ((rc = dblock_key(seg, db, db->n - 1, &key, err)))
        goto out_free;
    if (key_compare(key.buf, key.len, b->last, b->last_len)) {
        rc = corrupt(err, seg->path, b->off, "block's last key differs from the index");
        goto out_free;
    }
    strbuf_release(&key);
    *out = db;
    return ST_OK;
out_free:
    strbuf_release(&key);
    dblock_free(db);
    return rc;
}

/*
 * The first entry of db whose key is not "before" the bound: key >= k
 * (or > k when excl). kb is scratch.
 */
static enum st_status dblock_lower_bound(const struct segment *seg, const struct dblock *db,
                                         const void *k, size_t klen, bool excl, uint32_t *out,
                                         struct strbuf *kb, struct err *err)
{
    uint32_t lo = 0;
    uint32_t hi = db->n;
    enum st_status rc;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c;

        if ((rc = dblock_key(seg, db, mid, kb, err)))
            return rc;
        c = key_compare(kb->buf, kb->len, k, klen);
        if (c < 0 || (c == 0 && excl))
            lo = mid + 1;
        else
            hi = mid;
    }
    *out = lo;
    return ST_OK;
}

/* The first block whose last key is >= k (> k when excl); nblocks when none. */
static uint64_t block_lower_bound(const struct segment *seg, const void *k, size_t klen, bool excl)
{
    uint64_t lo = 0;
    uint64_t hi = seg->info.blocks;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = key_compare(seg->blocks[mid].last, seg->blocks[mid].last_len, k, klen);

        if (c < 0 || (c == 0 && excl))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ------------------------------------------------------------------ */
/* Point reads */

enum st_status segment_get(struct segment *seg, const void *key, size_t len, uint64_t snap,
                           struct segment_rec *out, struct strbuf *buf, struct err *err)
{
    struct strbuf kb = STRBUF_INIT;
    enum st_status rc = ST_ENOTFOUND;
    uint64_t bi;

    /* Outside the key range (two compares) or not in the bloom filter. */
    if (!seg->info.blocks ||
        key_compare(key, len, seg->blocks[0].first, seg->blocks[0].first_len) < 0 ||
        key_compare(key, len, seg->blocks[seg->info.blocks - 1].last,
                    seg->blocks[seg->info.blocks - 1].last_len) > 0 ||
        !segment_may_contain(seg, key, len))
        return ST_ENOTFOUND;
    /* A key's versions may run over several blocks, newest first. */
    for (bi = block_lower_bound(seg, key, len, false); bi < seg->info.blocks; bi++) {
        const struct bidx *b = &seg->blocks[bi];
        struct dblock *db;
        uint32_t r = 0;
        bool found;
        bool ended;
        int c = 0;

        if (key_compare(b->first, b->first_len, key, len) > 0)
            break;
        if (b->minv > snap)
            continue;
        if ((rc = dblock_load(seg, bi, &db, err)))
            break;
        rc = dblock_lower_bound(seg, db, key, len, false, &r, &kb, err);
        for (; !rc && r < db->n; r++) {
            if ((rc = dblock_key(seg, db, r, &kb, err)))
                break;
            c = key_compare(kb.buf, kb.len, key, len);
            if (c != 0 || (uint64_t)db->ver[r] <= snap)
                break;
        }
        found = !rc && r < db->n && c == 0;
        ended = r < db->n;
        if (found) {
            memset(out, 0, sizeof(*out));
            out->key = key;
            out->key_len = (uint32_t)len;
            out->version = (uint64_t)db->ver[r];
            out->schema_version = seg->info.schema_version;
            out->tombstone = db->tomb[r];
            strbuf_reset(buf);
            if (!out->tombstone && !(rc = dblock_row(seg, db, r, NULL, buf, err))) {
                out->row = buf->buf;
                out->row_len = (uint32_t)buf->len;
            }
        }
        dblock_free(db);
        if (rc || found)
            break;
        rc = ST_ENOTFOUND;
        if (ended)
            break; /* the key ended inside this block */
    }
    strbuf_release(&kb);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Iterators */

struct segment_iter {
    struct segment *seg;             /* holds a reference */
    uint64_t snap;                   /* snapshot version */
    unsigned flags;                  /* enum segment_iter_flags */
    uint8_t *lo;                     /* lower key bound (owned), or NULL */
    size_t lo_len;                   /* its length */
    bool lo_excl;                    /* lo excluded */
    uint8_t *hi;                     /* upper key bound (owned), or NULL */
    size_t hi_len;                   /* its length */
    bool hi_incl;                    /* hi included */
    bool has_time;                   /* filter rows by [tlo, thi] */
    int64_t tlo;                     /* inclusive */
    int64_t thi;                     /* inclusive */
    uint64_t bi;                     /* next block to consider */
    struct dblock *db;               /* current block, or NULL */
    uint32_t r;                      /* next entry of db */
    struct strbuf kb[2];             /* keys of the current and previous entries */
    int cur;                         /* which of kb is the current one */
    uint64_t prev_ver;               /* version of the previous entry */
    bool have_prev;                  /* an entry was examined */
    bool resolved;                   /* newest-only: the previous entry's key is decided */
    struct strbuf row;               /* the row last yielded */
    bool done;                       /* at the end */
    enum st_status status;           /* sticky error */
    struct err err;                  /* its message */
    struct segment_iter_stats stats; /* counters */
    bool *need;                      /* fields rows must carry, or NULL: all */
};

static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = xmalloc(n ? n : 1);

    if (n)
        memcpy(d, p, n);
    return d;
}

struct segment_iter *segment_iter_new(struct segment *seg, const struct segment_range *range,
                                      uint64_t snap, unsigned flags)
{
    struct segment_iter *it = xcalloc(1, sizeof(*it));

    segment_ref(seg);
    it->seg = seg;
    it->snap = snap;
    it->flags = flags;
    strbuf_init(&it->kb[0], 0);
    strbuf_init(&it->kb[1], 0);
    strbuf_init(&it->row, 0);
    err_clear(&it->err);
    if (range && range->lo) {
        it->lo = dup_bytes(range->lo, range->lo_len);
        it->lo_len = range->lo_len;
        it->lo_excl = range->lo_excl;
    }
    if (range && range->hi) {
        it->hi = dup_bytes(range->hi, range->hi_len);
        it->hi_len = range->hi_len;
        it->hi_incl = range->hi_incl;
    }
    /* Without a time field there is nothing to filter on: the range is ignored. */
    if (range && range->has_time && seg->time_field >= 0) {
        it->has_time = true;
        it->tlo = range->time_lo;
        it->thi = range->time_hi;
    }
    if (it->lo)
        it->bi = block_lower_bound(seg, it->lo, it->lo_len, it->lo_excl);
    return it;
}

static bool below_lo(const struct segment_iter *it, const void *k, size_t len)
{
    int c;

    if (!it->lo)
        return false;
    c = key_compare(k, len, it->lo, it->lo_len);
    return c < 0 || (c == 0 && it->lo_excl);
}

static bool above_hi(const struct segment_iter *it, const void *k, size_t len)
{
    int c;

    if (!it->hi)
        return false;
    c = key_compare(k, len, it->hi, it->hi_len);
    return c > 0 || (c == 0 && !it->hi_incl);
}

/* Whether block bi can be left unread; counts it when so. */
static bool block_skip(struct segment_iter *it, uint64_t bi)
{
    const struct segment *seg = it->seg;
    const struct bidx *b = &seg->blocks[bi];
    const struct bidx *next = bi + 1 < seg->info.blocks ? &seg->blocks[bi + 1] : NULL;

    if (b->minv > it->snap) {
        it->stats.blocks_skipped_version++;
        return true;
    }
    if (!it->has_time || (b->has_time && b->maxt >= it->tlo && b->mint <= it->thi))
        return false;
    if ((it->flags & SEGMENT_ITER_TOMBSTONES) && b->ntomb)
        return false;
    /* Its versions of the last key hide older ones in the next block. */
    if (!(it->flags & SEGMENT_ITER_ALL_VERSIONS) && next &&
        !key_compare(b->last, b->last_len, next->first, next->first_len))
        return false;
    it->stats.blocks_skipped_time++;
    return true;
}

static bool iter_fail(struct segment_iter *it, enum st_status rc)
{
    it->status = rc;
    return false;
}

/* Loads the next block worth reading into it->db; false at the end or on error. */
static bool iter_next_block(struct segment_iter *it)
{
    const struct segment *seg = it->seg;
    enum st_status rc;

    dblock_free(it->db);
    it->db = NULL;
    for (; it->bi < seg->info.blocks; it->bi++) {
        const struct bidx *b = &seg->blocks[it->bi];

        if (above_hi(it, b->first, b->first_len))
            break;
        if (block_skip(it, it->bi))
            continue;
        rc = dblock_load(seg, it->bi, &it->db, &it->err);
        if (rc)
            return iter_fail(it, rc);
        it->stats.blocks_read++;
        it->bi++;
        it->r = 0;
        if (below_lo(it, b->first, b->first_len)) {
            rc = dblock_lower_bound(seg, it->db, it->lo, it->lo_len, it->lo_excl, &it->r,
                                    &it->kb[it->cur], &it->err);
            if (rc)
                return iter_fail(it, rc);
        }
        return true;
    }
    it->done = true;
    return false;
}

bool segment_iter_next(struct segment_iter *it, struct segment_rec *out)
{
    const struct segment *seg = it->seg;
    enum st_status rc;

    if (it->done || it->status)
        return false;
    for (;;) {
        struct strbuf *key = &it->kb[it->cur];
        const struct strbuf *prev = &it->kb[!it->cur];
        struct dblock *db = it->db;
        uint64_t ver;
        uint32_t r;
        int c = 1;

        if (!db || it->r >= db->n) {
            if (!iter_next_block(it))
                return false;
            continue;
        }
        r = it->r++;
        it->stats.entries_scanned++;
        if ((rc = dblock_key(seg, db, r, key, &it->err)))
            return iter_fail(it, rc);
        if (above_hi(it, key->buf, key->len)) {
            it->done = true;
            return false;
        }
        ver = (uint64_t)db->ver[r];
        if (it->have_prev) {
            c = key_compare(key->buf, key->len, prev->buf, prev->len);
            if (c < 0 || (c == 0 && ver >= it->prev_ver))
                return iter_fail(it, corrupt(&it->err, seg->path, seg->blocks[db->bi].off,
                                             "entries out of order in a block"));
        }
        it->cur = !it->cur;
        it->prev_ver = ver;
        it->have_prev = true;
        if (c != 0)
            it->resolved = false;
        if (ver > it->snap)
            continue;
        if (!(it->flags & SEGMENT_ITER_ALL_VERSIONS)) {
            if (it->resolved)
                continue;
            it->resolved = true;
        }
        memset(out, 0, sizeof(*out));
        out->key = key->buf;
        out->key_len = (uint32_t)key->len;
        out->version = ver;
        out->schema_version = seg->info.schema_version;
        if (db->tomb[r]) {
            if (!(it->flags & SEGMENT_ITER_TOMBSTONES))
                continue;
            out->tombstone = true;
            return true;
        }
        if (it->has_time) {
            struct value t;

            if ((rc = dcol_ensure(seg, db, (uint32_t)seg->time_field, &it->err)))
                return iter_fail(it, rc);
            dcol_value(seg, db, (uint32_t)seg->time_field, r, &t);
            if (t.is_null || t.u.i < it->tlo || t.u.i > it->thi)
                continue;
        }
        if ((rc = dblock_row(seg, db, r, it->need, &it->row, &it->err)))
            return iter_fail(it, rc);
        out->row = it->row.buf;
        out->row_len = (uint32_t)it->row.len;
        return true;
    }
}

enum st_status segment_iter_status(const struct segment_iter *it, struct err *err)
{
    if (it->status && err)
        *err = it->err;
    return it->status;
}

void segment_iter_get_stats(const struct segment_iter *it, struct segment_iter_stats *out)
{
    *out = it->stats;
}

void segment_iter_set_fields(struct segment_iter *it, const bool *need)
{
    const struct segment *seg = it->seg;

    free(it->need);
    it->need = NULL;
    if (!need)
        return;
    it->need = calloc_array(seg->nfields ? seg->nfields : 1, sizeof(*it->need));
    memcpy(it->need, need, seg->nfields * sizeof(*need));
    for (uint32_t f = 0; f < seg->nfields; f++)
        if (seg->fields[f].is_pk)
            it->need[f] = true; /* a row's key is always whole */
}

void segment_iter_free(struct segment_iter *it)
{
    if (!it)
        return;
    free(it->need);
    dblock_free(it->db);
    strbuf_release(&it->kb[0]);
    strbuf_release(&it->kb[1]);
    strbuf_release(&it->row);
    free(it->lo);
    free(it->hi);
    segment_unref(it->seg);
    free(it);
}

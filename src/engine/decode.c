/*
 * The ingest decoder: request bodies to binary rows (see decode.h for the
 * rules it enforces).
 *
 * DESIGN
 *
 * One pass, no DOM. A record is parsed by a hand-written recursive-descent
 * parser that knows the schema: each key is matched to a field (first
 * against the field that followed the previous one in schema order, which
 * is one memcmp when producers keep the schema's order, else through the
 * schema's name hash), and the value is parsed straight into that field's
 * slot as an int64, a double, a bool, or a (pointer, length) string that
 * borrows the body when the string has no escapes. Strings with escapes,
 * and json values, are written to a per-record scratch buffer. When the
 * object closes, missing fields take their defaults, and the row is
 * written once, in field order, into the result's row buffer.
 *
 * Values that do not fit the schema (json values, the rest of a record
 * that already failed, unknown fields) are walked by walk_value(), an
 * iterative parser with an explicit stack of 2048 levels. It checks the
 * same syntax, and, for json fields, also writes the minimal text and
 * checks the nesting and duplicate-key rules.
 *
 * The syntax checked is jansson's (json_loadb() with flags 0), decision
 * for decision, so that the server accepts exactly the JSON that the rest
 * of it can read back: tests/fuzz/fuzz_decode.c checks this against
 * jansson itself.
 *
 * BOUNDS
 *
 * The scanning loops (strings, numbers, literals, escapes, UTF-8) do not
 * check the end of the buffer: they stop at any control character, and
 * the buffer is set up so that one ends it. That holds when the body ends
 * in a control character (an NDJSON body's final '\n'), or when the caller
 * says body[len] is a NUL; otherwise the body is copied into scratch with
 * a '\n' appended. Only whitespace skipping (whitespace includes control
 * characters) checks the end, and peek() reads nothing at the end.
 *
 * ERRORS
 *
 * A syntax error stops the parser (functions return NULL with d->err_at
 * set). In NDJSON it fails only its record, which resumes at the next
 * '\n'; in an array it fails the request. A schema violation ("reject")
 * only marks the record failed and keeps its first reason; parsing goes
 * on, so that a syntax error later in the record still takes precedence
 * and the array framing is followed. Out of memory sets d->fatal.
 */
#include "engine/decode.h"
#include "engine/timestamp.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1: a string byte copied as is (printable ASCII but '"' and '\\'). */
static const uint8_t str_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* 1: whitespace between tokens: JSON's four, and the same less '\n'. */
static const uint8_t ws_json[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static const uint8_t ws_line[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The value of a hex digit, or -1. */
static const int8_t hex_val[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  -1, -1, -1, -1, -1, -1, -1, 10, 11, 12, 13, 14, 15, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/*
 * Growable buffers for bytes whose size the client chooses: growth
 * failure is reported (ST_ENOMEM), never fatal.
 */
struct dbuf {
    char *buf;  /* bytes, or NULL */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
};

static bool dbuf_reserve(struct dbuf *b, size_t extra)
{
    size_t cap;
    char *p;

    if (extra <= b->cap - b->len)
        return true;
    if (extra > SIZE_MAX / 4 - b->len)
        return false;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    p = realloc(b->buf, cap);
    if (!p)
        return false;
    b->buf = p;
    b->cap = cap;
    return true;
}

static void dbuf_release(struct dbuf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}

/* A field as the decoder needs it. */
struct dfield {
    const char *name;     /* the schema's name */
    uint32_t name_len;    /* strlen(name) */
    enum field_type type; /* its type */
    bool nullable;        /* null allowed */
    uint64_t pat[2];      /* the key's bytes with its closing quote, when */
    uint64_t mask[2];     /* ... they fit 16 bytes: matched by two loads */
};

/* One field's value in the record being decoded. */
struct slot {
    int64_t i;       /* int64, timestamp, bool */
    double f;        /* float64 */
    const char *ptr; /* string or json bytes in the body or the schema, or
                      * NULL when they are in scratch tmp at off */
    size_t off;      /* see ptr */
    uint32_t len;    /* string or json bytes */
    bool is_null;    /* SQL null */
};

/* A key of a json object being written: where its text is in out. */
struct kent {
    size_t off; /* first byte of the key's text, after the quote */
    size_t len; /* bytes */
};

struct decode_scratch {
    uint32_t cap;          /* fields the arrays below hold */
    struct dfield *fields; /* the schema's fields */
    struct slot *slots;    /* the record's values */
    uint32_t *seen;        /* gen of the record that set each field */
    uint32_t gen;          /* the current record's generation */
    struct dbuf tmp;       /* per record: decoded strings, json text */
    struct dbuf key;       /* decoded keys; long key encodings */
    struct dbuf copy;      /* the body, when it needs a terminator */
    struct kent *keys;     /* keys of open json objects */
    size_t nkeys;          /* entries used */
    size_t keys_cap;       /* entries allocated */
};

/* The decoder's state for one call. */
struct dec {
    const struct schema *s;         /* the schema */
    const struct decode_opts *o;    /* options */
    struct decode_result *res;      /* where rows and details go */
    struct decode_scratch *sc;      /* working memory */
    const char *base;               /* the body (or its copy) */
    const char *end;                /* its end */
    const uint8_t *ws;              /* whitespace inside records */
    unsigned depth0;                /* jansson depth of a record object */
    enum st_status fatal;           /* ST_ENOMEM or ST_ETOOLARGE, else ST_OK */
    const char *err_at;             /* the syntax error's position, or NULL */
    char err_msg[96];               /* ... and what it is */
    uint64_t index;                 /* the record's number */
    bool failed;                    /* the record is rejected */
    bool want_detail;               /* its detail will be kept: format it */
    uint32_t nseen;                 /* fields given in the record */
    char field[SCHEMA_NAME_MAX];    /* the rejection's field */
    char reason[DECODE_REASON_MAX]; /* ... and reason */
};

enum vkind { K_NULL, K_BOOL, K_INT, K_FLOAT, K_STRING, K_ARRAY, K_OBJECT };

static const char *const kind_names[] = {
    [K_NULL] = "null",     [K_BOOL] = "bool",   [K_INT] = "integer",   [K_FLOAT] = "float",
    [K_STRING] = "string", [K_ARRAY] = "array", [K_OBJECT] = "object",
};

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static const char *skip_ws(const struct dec *d, const char *p)
{
    while (p < d->end && d->ws[(uint8_t)*p])
        p++;
    return p;
}

static uint8_t peek(const struct dec *d, const char *p)
{
    return p < d->end ? (uint8_t)*p : 0;
}

static bool out_add(struct dec *d, struct dbuf *b, const void *p, size_t n)
{
    if (!dbuf_reserve(b, n)) {
        d->fatal = ST_ENOMEM;
        return false;
    }
    if (n)
        memcpy(b->buf + b->len, p, n);
    b->len += n;
    return true;
}

static bool out_add1(struct dec *d, struct dbuf *b, char c)
{
    return out_add(d, b, &c, 1);
}

/* Records a syntax error at p (the first one wins) and returns NULL. */
static const char *syntax(struct dec *d, const char *p, const char *fmt, ...) ST_PRINTF(3, 4);

static const char *syntax(struct dec *d, const char *p, const char *fmt, ...)
{
    va_list ap;

    if (d->err_at)
        return NULL;
    d->err_at = p;
    va_start(ap, fmt);
    vsnprintf(d->err_msg, sizeof(d->err_msg), fmt, ap);
    va_end(ap);
    return NULL;
}

/* Copies name (len bytes) into d->field, cut at a UTF-8 boundary. */
static void set_field(struct dec *d, const char *name, size_t len)
{
    if (len >= sizeof(d->field)) {
        len = sizeof(d->field) - 1;
        while (len > 0 && ((uint8_t)name[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy(d->field, name, len);
    d->field[len] = '\0';
}

/*
 * Rejects the record for field (flen bytes; "" when not field-specific).
 * Only the first reason of a record is kept.
 */
static void reject(struct dec *d, const char *field, size_t flen, const char *fmt, ...)
    ST_PRINTF(4, 5);

static void reject(struct dec *d, const char *field, size_t flen, const char *fmt, ...)
{
    va_list ap;

    if (d->failed)
        return;
    d->failed = true;
    if (!d->want_detail)
        return;
    set_field(d, field, flen);
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

static const char *fname(const struct dec *d, int32_t fi)
{
    return fi >= 0 ? d->sc->fields[fi].name : "";
}

static size_t fname_len(const struct dec *d, int32_t fi)
{
    return fi >= 0 ? d->sc->fields[fi].name_len : 0;
}

/* Cuts s (len bytes) to at most max bytes at a UTF-8 boundary. */
static int cut_utf8(const char *s, size_t len, size_t max)
{
    if (len > max) {
        len = max;
        while (len > 0 && ((uint8_t)s[len] & 0xc0) == 0x80)
            len--;
    }
    return (int)len;
}

/*
 * Strings.
 */

/* The length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_len(const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    uint8_t c = p[0];

    if (c < 0xc2)
        return 0;
    if (c < 0xe0)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if ((p[1] & 0xc0) != 0x80 || (c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
            return 0;
        return (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c < 0xf5) {
        if ((p[1] & 0xc0) != 0x80 || (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
            return 0;
        if ((p[2] & 0xc0) != 0x80)
            return 0;
        return (p[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

enum smode {
    S_SKIP,   /* check only */
    S_DECODE, /* write the decoded bytes, once the string has an escape */
    S_CANON,  /* write the canonical JSON text of the contents */
};

/* Writes code point cp in mode's form. */
static bool put_cp(struct dec *d, struct dbuf *out, uint32_t cp, enum smode mode)
{
    static const char short_esc[32] = {
        ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    };
    char b[6];
    size_t n;

    if (mode == S_CANON && (cp < 0x20 || cp == '"' || cp == '\\')) {
        b[0] = '\\';
        if (cp == '"' || cp == '\\') {
            b[1] = (char)cp;
            return out_add(d, out, b, 2);
        }
        if (short_esc[cp]) {
            b[1] = short_esc[cp];
            return out_add(d, out, b, 2);
        }
        b[1] = 'u';
        b[2] = '0';
        b[3] = '0';
        b[4] = "0123456789ABCDEF"[cp >> 4];
        b[5] = "0123456789ABCDEF"[cp & 15];
        return out_add(d, out, b, 6);
    }
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return out_add(d, out, b, n);
}

/* The value of the 4 hex digits at p, or -1; stops at the first non-digit. */
static int hex4(const char *p)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        int h = hex_val[(uint8_t)p[i]];

        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* A \u escape at p (the backslash), with its surrogate pair. */
static const char *scan_uescape(struct dec *d, const char *p, enum smode mode, struct dbuf *out)
{
    int hi = hex4(p + 2);
    int lo;
    uint32_t cp;

    if (hi < 0)
        return syntax(d, p, "invalid \\u escape");
    if (hi >= 0xd800 && hi <= 0xdbff) {
        if (p[6] != '\\' || p[7] != 'u')
            return syntax(d, p, "lone surrogate \\u%04X", (unsigned)hi);
        lo = hex4(p + 8);
        if (lo < 0)
            return syntax(d, p + 6, "invalid \\u escape");
        if (lo < 0xdc00 || lo > 0xdfff)
            return syntax(d, p, "lone surrogate \\u%04X", (unsigned)hi);
        cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
        p += 12;
    } else if (hi >= 0xdc00 && hi <= 0xdfff) {
        return syntax(d, p, "lone surrogate \\u%04X", (unsigned)hi);
    } else if (hi == 0) {
        return syntax(d, p, "\\u0000 is not allowed");
    } else {
        cp = (uint32_t)hi;
        p += 6;
    }
    if (mode != S_SKIP && !put_cp(d, out, cp, mode))
        return NULL;
    return p;
}

static const char *scan_escape(struct dec *d, const char *p, enum smode mode, struct dbuf *out)
{
    uint32_t c;

    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        c = (uint8_t)p[1];
        break;
    case 'b':
        c = '\b';
        break;
    case 'f':
        c = '\f';
        break;
    case 'n':
        c = '\n';
        break;
    case 'r':
        c = '\r';
        break;
    case 't':
        c = '\t';
        break;
    case 'u':
        return scan_uescape(d, p, mode, out);
    default:
        return syntax(d, p, "invalid escape");
    }
    if (mode != S_SKIP && !put_cp(d, out, c, mode))
        return NULL;
    return p + 2;
}

/*
 * Scans a string whose opening quote is at p[-1] and returns the byte
 * after its closing quote. S_DECODE writes the decoded bytes to out only
 * when the string has an escape (*escaped says so); otherwise the bytes
 * between the quotes are the value. S_CANON always writes the contents'
 * canonical text. escaped may be NULL.
 */
static const char *scan_string(struct dec *d, const char *p, enum smode mode, struct dbuf *out,
                               bool *escaped)
{
    const char *run = p; /* bytes not yet written */
    bool esc = false;

    for (;;) {
        uint8_t c;

        while (str_plain[(uint8_t)*p])
            p++;
        c = (uint8_t)*p;
        if (c == '"')
            break;
        if (c >= 0x80) {
            size_t n = utf8_len(p);

            if (!n)
                return syntax(d, p, "invalid UTF-8");
            p += n;
            continue;
        }
        if (c == '\\') {
            if (mode != S_SKIP && !out_add(d, out, run, (size_t)(p - run)))
                return NULL;
            esc = true;
            p = scan_escape(d, p, mode, out);
            if (!p)
                return NULL;
            run = p;
            continue;
        }
        if (p >= d->end || c == '\n')
            return syntax(d, p, "unterminated string");
        return syntax(d, p, "control character 0x%02x in string", c);
    }
    if ((mode == S_CANON || (mode == S_DECODE && esc)) && !out_add(d, out, run, (size_t)(p - run)))
        return NULL;
    if (escaped)
        *escaped = esc;
    return p + 1;
}

/*
 * Numbers, lexed as jansson does: integers must fit int64, reals must not
 * overflow a double (underflow to 0 is fine).
 */
struct num {
    const char *start; /* the literal */
    const char *stop;  /* its end */
    bool is_int;       /* no fraction, no exponent */
    bool neg;          /* starts with '-' */
    int64_t i;         /* is_int: the value */
    uint64_t mant;     /* the first 19 significant digits */
    int64_t exp10;     /* value = mant * 10^exp10 when !inexact */
    int nsig;          /* digits in mant */
    bool inexact;      /* nonzero digits did not fit in mant */
};

static const double pow10_tab[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/*
 * strtod() in the C locale whatever the process's LC_NUMERIC says, so '.'
 * is always the decimal point.
 */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c_locale)
        ST_BUG("cannot create the C locale");
}

/* strtod() of the literal, through a NUL-terminated copy at tmp's end. */
static bool num_strtod(struct dec *d, const struct num *n, double *v)
{
    struct dbuf *t = &d->sc->tmp;
    size_t len = (size_t)(n->stop - n->start);
    size_t mark = t->len;

    if (!out_add(d, t, n->start, len) || !out_add1(d, t, '\0'))
        return false;
    pthread_once(&c_locale_once, c_locale_init);
    *v = strtod_l(t->buf + mark, NULL, c_locale);
    t->len = mark;
    return true;
}

static const char *lex_number(struct dec *d, const char *p, struct num *n)
{
    const char *q = p;
    uint64_t mant = 0;
    int64_t exp10 = 0;
    int nsig = 0;
    bool inexact = false;

    n->start = p;
    n->neg = *q == '-';
    if (n->neg)
        q++;
    if (*q == '0') {
        q++;
        if (is_digit((uint8_t)*q))
            return syntax(d, q, "leading zero in number");
    } else if (is_digit((uint8_t)*q)) {
        do {
            unsigned dg = (unsigned)(*q - '0');

            if (nsig < 19) {
                mant = mant * 10 + dg;
                nsig++;
            } else {
                exp10++;
                inexact |= dg != 0;
            }
            q++;
        } while (is_digit((uint8_t)*q));
    } else {
        return syntax(d, q, "invalid number");
    }
    n->stop = q;
    if (*q != '.' && *q != 'e' && *q != 'E') {
        uint64_t limit = n->neg ? (UINT64_C(1) << 63) : (UINT64_C(1) << 63) - 1;

        if (exp10 > 0 || mant > limit)
            return syntax(d, p, "integer out of range");
        n->is_int = true;
        n->i = n->neg ? (mant == (UINT64_C(1) << 63) ? INT64_MIN : -(int64_t)mant) : (int64_t)mant;
        return q;
    }
    n->is_int = false;
    if (*q == '.') {
        q++;
        if (!is_digit((uint8_t)*q))
            return syntax(d, q, "expected a digit after '.'");
        do {
            unsigned dg = (unsigned)(*q - '0');

            if (nsig == 0 && dg == 0) {
                exp10--;
            } else if (nsig < 19) {
                mant = mant * 10 + dg;
                nsig++;
                exp10--;
            } else {
                inexact |= dg != 0;
            }
            q++;
        } while (is_digit((uint8_t)*q));
    }
    if (*q == 'e' || *q == 'E') {
        bool eneg = false;
        int64_t e = 0;

        q++;
        if (*q == '+' || *q == '-') {
            eneg = *q == '-';
            q++;
        }
        if (!is_digit((uint8_t)*q))
            return syntax(d, q, "expected a digit in the exponent");
        do {
            if (e < 1000000000)
                e = e * 10 + (*q - '0');
            q++;
        } while (is_digit((uint8_t)*q));
        exp10 += eneg ? -e : e;
    }
    n->stop = q;
    n->mant = mant;
    n->exp10 = exp10;
    n->nsig = nsig;
    n->inexact = inexact;
    if (mant != 0) {
        /* The decimal exponent of the first significant digit. */
        int64_t esci = exp10 + nsig - 1;
        double v;

        if (esci > 308)
            return syntax(d, p, "number out of range");
        if (esci == 308) {
            if (!num_strtod(d, n, &v))
                return NULL;
            if (isinf(v))
                return syntax(d, p, "number out of range");
        }
    }
    return q;
}

/* The double a lexed number denotes, correctly rounded as strtod() does. */
static bool num_double(struct dec *d, const struct num *n, double *v)
{
    if (n->is_int) {
        *v = (double)n->i;
        return true;
    }
    if (n->mant == 0) {
        *v = n->neg ? -0.0 : 0.0;
        return true;
    }
    if (!n->inexact && n->mant <= (UINT64_C(1) << 53) && n->exp10 >= -22 && n->exp10 <= 22) {
        /* Clinger's fast path: both operands exact, one rounding. */
        double x = (double)n->mant;

        x = n->exp10 < 0 ? x / pow10_tab[-n->exp10] : x * pow10_tab[n->exp10];
        *v = n->neg ? -x : x;
        return true;
    }
    return num_strtod(d, n, v);
}

/*
 * Generic values: syntax checking, and json fields' minimal text.
 */

static bool push_key(struct dec *d, size_t off, size_t len)
{
    struct decode_scratch *sc = d->sc;

    if (sc->nkeys == sc->keys_cap) {
        size_t cap = sc->keys_cap ? sc->keys_cap * 2 : 64;
        struct kent *k = cap < SIZE_MAX / sizeof(*k) ? realloc(sc->keys, cap * sizeof(*k)) : NULL;

        if (!k) {
            d->fatal = ST_ENOMEM;
            return false;
        }
        sc->keys = k;
        sc->keys_cap = cap;
    }
    sc->keys[sc->nkeys].off = off;
    sc->keys[sc->nkeys].len = len;
    sc->nkeys++;
    return true;
}

static int kent_cmp(const void *a, const void *b, void *arg)
{
    const struct kent *x = a;
    const struct kent *y = b;
    const char *buf = arg;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(buf + x->off, buf + y->off, x->len);
}

/*
 * Checks that the keys of the object just closed (key entries from first
 * on) are distinct; rejects the record for field fi when not.
 */
static bool keys_unique(struct dec *d, const struct dbuf *out, size_t first, int32_t fi)
{
    struct kent *k = d->sc->keys + first;
    size_t n = d->sc->nkeys - first;
    const struct kent *dup = NULL;

    if (n < 2)
        return true;
    if (n <= 8) {
        for (size_t i = 0; i < n && !dup; i++)
            for (size_t j = i + 1; j < n && !dup; j++)
                if (!kent_cmp(&k[i], &k[j], out->buf))
                    dup = &k[i];
    } else {
        qsort_r(k, n, sizeof(*k), kent_cmp, out->buf);
        for (size_t i = 1; i < n && !dup; i++)
            if (!kent_cmp(&k[i - 1], &k[i], out->buf))
                dup = &k[i];
    }
    if (!dup)
        return true;
    reject(d, fname(d, fi), fname_len(d, fi), "duplicate key '%.*s' in json value",
           cut_utf8(out->buf + dup->off, dup->len, 48), out->buf + dup->off);
    return false;
}

/*
 * Walks the JSON value whose first byte is at p and returns the byte after
 * it. depth is its nesting level as jansson counts it (a top-level value
 * is 1). *kind gets the kind of the value. With out, also appends the
 * value's minimal text to out and applies the json field rules, rejecting
 * the record for field fi on a violation (then it goes on without out).
 */
static const char *walk_value(struct dec *d, const char *p, unsigned depth, struct dbuf *out,
                              int32_t fi, enum vkind *kind)
{
    uint64_t is_obj[DECODE_NESTING_MAX / 64 + 1];
    size_t kstart[DECODE_JSON_MAX_DEPTH + 1];
    unsigned lvl = 0; /* containers open */
    struct num n;
    const char *q;
    bool obj;
    uint8_t c;

    if (out)
        d->sc->nkeys = 0;
value:
    if (depth + lvl > DECODE_NESTING_MAX)
        return syntax(d, p, "values nested deeper than %d levels", DECODE_NESTING_MAX);
    c = peek(d, p);
    switch (c) {
    case '{':
    case '[':
        obj = c == '{';
        if (lvl == 0)
            *kind = obj ? K_OBJECT : K_ARRAY;
        if (out && lvl == DECODE_JSON_MAX_DEPTH) {
            reject(d, fname(d, fi), fname_len(d, fi), "json value nested deeper than %d levels",
                   DECODE_JSON_MAX_DEPTH);
            out = NULL;
        }
        if (obj)
            is_obj[lvl / 64] |= UINT64_C(1) << (lvl % 64);
        else
            is_obj[lvl / 64] &= ~(UINT64_C(1) << (lvl % 64));
        if (out) {
            if (!out_add1(d, out, (char)c))
                return NULL;
            kstart[lvl] = d->sc->nkeys;
        }
        lvl++;
        p = skip_ws(d, p + 1);
        if (peek(d, p) == (obj ? '}' : ']')) {
            p++;
            lvl--;
            if (out && !out_add1(d, out, obj ? '}' : ']'))
                return NULL;
            goto after;
        }
        if (obj)
            goto key;
        goto value;
    case '"':
        if (lvl == 0)
            *kind = K_STRING;
        if (out) {
            if (!out_add1(d, out, '"'))
                return NULL;
            p = scan_string(d, p + 1, S_CANON, out, NULL);
            if (!p || !out_add1(d, out, '"'))
                return NULL;
        } else {
            p = scan_string(d, p + 1, S_SKIP, NULL, NULL);
            if (!p)
                return NULL;
        }
        goto after;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        q = lex_number(d, p, &n);
        if (!q)
            return NULL;
        if (lvl == 0)
            *kind = n.is_int ? K_INT : K_FLOAT;
        if (out && !out_add(d, out, p, (size_t)(q - p)))
            return NULL;
        p = q;
        goto after;
    case 't':
        if (p[1] != 'r' || p[2] != 'u' || p[3] != 'e')
            return syntax(d, p, "invalid literal");
        q = "true";
        if (lvl == 0)
            *kind = K_BOOL;
        goto literal;
    case 'f':
        if (p[1] != 'a' || p[2] != 'l' || p[3] != 's' || p[4] != 'e')
            return syntax(d, p, "invalid literal");
        q = "false";
        if (lvl == 0)
            *kind = K_BOOL;
        goto literal;
    case 'n':
        if (p[1] != 'u' || p[2] != 'l' || p[3] != 'l')
            return syntax(d, p, "invalid literal");
        q = "null";
        if (lvl == 0)
            *kind = K_NULL;
        goto literal;
    default:
        if (p >= d->end || c == '\n')
            return syntax(d, p, "unexpected end of input, expected a value");
        return syntax(d, p, "expected a value");
    }
literal:
    if (out && !out_add(d, out, q, strlen(q)))
        return NULL;
    p += strlen(q);
after:
    if (lvl == 0)
        return p;
    p = skip_ws(d, p);
    c = peek(d, p);
    obj = (is_obj[(lvl - 1) / 64] >> ((lvl - 1) % 64)) & 1;
    if (c == ',') {
        if (out && !out_add1(d, out, ','))
            return NULL;
        p = skip_ws(d, p + 1);
        if (obj)
            goto key;
        goto value;
    }
    if (c == (obj ? '}' : ']')) {
        p++;
        lvl--;
        if (out && obj) {
            if (!keys_unique(d, out, kstart[lvl], fi))
                out = NULL;
            else
                d->sc->nkeys = kstart[lvl];
        }
        if (out && !out_add1(d, out, (char)c))
            return NULL;
        goto after;
    }
    return syntax(d, p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
key:
    if (peek(d, p) != '"')
        return syntax(d, p, "expected a string key");
    if (out) {
        size_t off;

        if (!out_add1(d, out, '"'))
            return NULL;
        off = out->len;
        p = scan_string(d, p + 1, S_CANON, out, NULL);
        if (!p || !push_key(d, off, out->len - off) || !out_add1(d, out, '"'))
            return NULL;
    } else {
        p = scan_string(d, p + 1, S_SKIP, NULL, NULL);
        if (!p)
            return NULL;
    }
    p = skip_ws(d, p);
    if (peek(d, p) != ':')
        return syntax(d, p, "expected ':'");
    if (out && !out_add1(d, out, ':'))
        return NULL;
    p = skip_ws(d, p + 1);
    goto value;
}

/*
 * Records.
 */

/* Skips the value at p (syntax only); rejects for field fi with a type mismatch. */
static const char *mismatch(struct dec *d, int32_t fi, const char *p)
{
    enum vkind kind = K_NULL;
    const char *q = walk_value(d, p, d->depth0 + 1, NULL, fi, &kind);

    if (q)
        reject(d, fname(d, fi), fname_len(d, fi), "expected %s, got %s",
               field_type_name(d->sc->fields[fi].type), kind_names[kind]);
    return q;
}

static bool is_null_lit(const char *p)
{
    return p[0] == 'n' && p[1] == 'u' && p[2] == 'l' && p[3] == 'l';
}

/* A string value into sl: borrowed from the body, or decoded into tmp. */
static const char *string_value(struct dec *d, const char *p, struct slot *sl)
{
    struct dbuf *t = &d->sc->tmp;
    size_t mark = t->len;
    bool esc;
    const char *q = scan_string(d, p + 1, S_DECODE, t, &esc);
    size_t len;

    if (!q)
        return NULL;
    if (esc) {
        sl->ptr = NULL;
        sl->off = mark;
        len = t->len - mark;
    } else {
        sl->ptr = p + 1;
        len = (size_t)(q - 1 - (p + 1));
    }
    if (len > UINT32_MAX) {
        reject(d, "", 0, "string longer than 4 GiB");
        len = 0;
    }
    sl->len = (uint32_t)len;
    return q;
}

/* Parses the value at p into field fi's slot. */
static const char *parse_field(struct dec *d, int32_t fi, const char *p)
{
    const struct dfield *f = &d->sc->fields[fi];
    struct slot *sl = &d->sc->slots[fi];
    uint8_t c = peek(d, p);
    struct num n;
    const char *q;
    enum vkind kind;

    sl->is_null = false;
    if (c == 'n' && is_null_lit(p) && f->nullable) {
        sl->is_null = true;
        return p + 4;
    }
    switch (f->type) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        if (c == '-' || is_digit(c)) {
            q = lex_number(d, p, &n);
            if (q && n.is_int)
                sl->i = n.i;
            else if (q)
                reject(d, f->name, f->name_len, "expected %s, got float", field_type_name(f->type));
            return q;
        }
        if (c == '"' && f->type == FIELD_TIMESTAMP) {
            const char *s;

            q = string_value(d, p, sl);
            if (!q)
                return NULL;
            s = sl->ptr ? sl->ptr : d->sc->tmp.buf + sl->off;
            if (!timestamp_parse_rfc3339(s, sl->len, &sl->i))
                reject(d, f->name, f->name_len, "invalid timestamp '%.*s'",
                       cut_utf8(s, sl->len, 40), s);
            return q;
        }
        break;
    case FIELD_FLOAT64:
        if (c == '-' || is_digit(c)) {
            q = lex_number(d, p, &n);
            if (q && !num_double(d, &n, &sl->f))
                return NULL;
            return q;
        }
        break;
    case FIELD_BOOL:
        if (c == 't' && p[1] == 'r' && p[2] == 'u' && p[3] == 'e') {
            sl->i = 1;
            return p + 4;
        }
        if (c == 'f' && p[1] == 'a' && p[2] == 'l' && p[3] == 's' && p[4] == 'e') {
            sl->i = 0;
            return p + 5;
        }
        break;
    case FIELD_STRING:
        if (c == '"')
            return string_value(d, p, sl);
        break;
    case FIELD_JSON:
        sl->ptr = NULL;
        sl->off = d->sc->tmp.len;
        q = walk_value(d, p, d->depth0 + 1, &d->sc->tmp, fi, &kind);
        if (q && d->sc->tmp.len - sl->off > UINT32_MAX)
            reject(d, f->name, f->name_len, "json value longer than 4 GiB");
        sl->len = (uint32_t)(d->sc->tmp.len - sl->off);
        return q;
    }
    return mismatch(d, fi, p);
}

/*
 * Parses the key whose opening quote is at p[-1]: *idx gets the field, or
 * -1 (then the record is rejected as having an unknown field).
 */
static const char *parse_key(struct dec *d, const char *p, int32_t *idx)
{
    struct dbuf *kb = &d->sc->key;
    const char *key;
    size_t klen;
    bool esc;
    const char *q;

    kb->len = 0;
    q = scan_string(d, p, S_DECODE, kb, &esc);
    if (!q)
        return NULL;
    key = esc ? kb->buf : p;
    klen = esc ? kb->len : (size_t)(q - 1 - p);
    *idx = schema_find_field(d->s, key, klen);
    if (*idx < 0)
        reject(d, key, klen, "unknown field '%.*s'", cut_utf8(key, klen, 64), key);
    return q;
}

static void begin_record(struct dec *d)
{
    struct decode_scratch *sc = d->sc;

    d->index = d->res->nrecords++;
    d->failed = false;
    d->want_detail = d->res->ndetails < d->o->max_details;
    d->nseen = 0;
    d->err_at = NULL;
    sc->tmp.len = 0;
    if (++sc->gen == 0) {
        memset(sc->seen, 0, sc->cap * sizeof(*sc->seen));
        sc->gen = 1;
    }
}

/* True when the key at p (after its opening quote) is f's name. */
static bool key_is(const struct dec *d, const struct dfield *f, const char *p)
{
    uint64_t w[2];

    if (f->mask[0] && d->end - p >= 16) {
        memcpy(w, p, sizeof(w));
        return ((w[0] & f->mask[0]) ^ f->pat[0]) == 0 && ((w[1] & f->mask[1]) ^ f->pat[1]) == 0;
    }
    return (size_t)(d->end - p) > f->name_len && !memcmp(p, f->name, f->name_len) &&
           p[f->name_len] == '"';
}

/* Parses the record whose first byte is at p; returns the byte after it. */
static const char *parse_record(struct dec *d, const char *p)
{
    struct decode_scratch *sc = d->sc;
    uint32_t nf = d->s->nfields;
    uint32_t expect = 0;
    enum vkind kind;
    uint8_t c;

    if (peek(d, p) != '{') {
        p = walk_value(d, p, d->depth0, NULL, -1, &kind);
        if (p)
            reject(d, "", 0, "record is not a JSON object");
        return p;
    }
    p = skip_ws(d, p + 1);
    if (peek(d, p) == '}')
        return p + 1;
    for (;;) {
        const struct dfield *f = &sc->fields[expect];
        int32_t idx;

        if (peek(d, p) != '"')
            return syntax(d, p, "expected a string key");
        p++;
        if (key_is(d, f, p)) {
            idx = (int32_t)expect;
            p += f->name_len + 1;
        } else {
            p = parse_key(d, p, &idx);
            if (!p)
                return NULL;
        }
        p = skip_ws(d, p);
        if (peek(d, p) != ':')
            return syntax(d, p, "expected ':'");
        p = skip_ws(d, p + 1);
        if (idx >= 0 && sc->seen[idx] == sc->gen) {
            reject(d, sc->fields[idx].name, sc->fields[idx].name_len, "duplicate field");
            idx = -1;
        }
        if (idx < 0 || d->failed) {
            p = walk_value(d, p, d->depth0 + 1, NULL, -1, &kind);
        } else {
            sc->seen[idx] = sc->gen;
            d->nseen++;
            p = parse_field(d, idx, p);
            expect = (uint32_t)idx + 1 == nf ? 0 : (uint32_t)idx + 1;
        }
        if (!p)
            return NULL;
        p = skip_ws(d, p);
        c = peek(d, p);
        if (c == ',') {
            p = skip_ws(d, p + 1);
            continue;
        }
        if (c == '}')
            return p + 1;
        return syntax(d, p, "expected ',' or '}'");
    }
}

/* Missing fields: their default, or null, or the record fails. */
static void fill_missing(struct dec *d)
{
    const struct schema *s = d->s;
    struct decode_scratch *sc = d->sc;

    if (d->nseen == s->nfields)
        return;
    for (uint32_t i = 0; i < s->nfields; i++) {
        const struct field *f = &s->fields[i];
        struct slot *sl = &sc->slots[i];

        if (sc->seen[i] == sc->gen)
            continue;
        sl->is_null = false;
        if (f->has_default && !f->def.is_null) {
            switch (f->type) {
            case FIELD_INT64:
            case FIELD_TIMESTAMP:
                sl->i = f->def.u.i;
                break;
            case FIELD_FLOAT64:
                sl->f = f->def.u.f;
                break;
            case FIELD_BOOL:
                sl->i = f->def.u.b;
                break;
            case FIELD_STRING:
            case FIELD_JSON:
                sl->ptr = f->def.u.s.ptr;
                sl->len = f->def.u.s.len;
                break;
            }
        } else if (f->nullable) {
            sl->is_null = true;
        } else {
            reject(d, f->name, sc->fields[i].name_len, "missing required field");
            return;
        }
    }
}

/* The size of the row of the record in the slots. */
static size_t row_size(const struct dec *d)
{
    const struct decode_scratch *sc = d->sc;
    uint32_t nf = d->s->nfields;
    size_t size = 4 + (nf + 7) / 8;

    for (uint32_t i = 0; i < nf; i++) {
        const struct slot *sl = &sc->slots[i];

        if (sl->is_null)
            continue;
        switch (sc->fields[i].type) {
        case FIELD_INT64:
        case FIELD_FLOAT64:
        case FIELD_TIMESTAMP:
            size += 8;
            break;
        case FIELD_BOOL:
            size += 1;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            size += 4 + (size_t)sl->len;
            break;
        }
    }
    return size;
}

static void wr32(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, sizeof(v));
}

static void wr64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof(v));
}

/* Bytes of a string or json slot. */
static const char *slot_bytes(const struct dec *d, const struct slot *sl)
{
    return sl->ptr ? sl->ptr : d->sc->tmp.buf + sl->off;
}

/* schema_key_hash() of the record's primary key. */
static uint64_t key_hash(struct dec *d)
{
    const struct schema *s = d->s;
    struct value vals[SCHEMA_MAX_PK];
    uint8_t buf[256];
    struct dbuf *kb = &d->sc->key;
    size_t len;

    for (uint32_t k = 0; k < s->npk; k++) {
        uint32_t fi = s->pk[k];
        const struct slot *sl = &d->sc->slots[fi];
        struct value *v = &vals[k];

        v->type = s->fields[fi].type;
        v->is_null = false;
        switch (v->type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            v->u.i = sl->i;
            break;
        case FIELD_FLOAT64:
            v->u.f = sl->f;
            break;
        case FIELD_BOOL:
            v->u.b = sl->i != 0;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            v->u.s.ptr = slot_bytes(d, sl);
            v->u.s.len = sl->len;
            break;
        }
    }
    len = schema_key_encode(vals, s->npk, buf, sizeof(buf));
    if (len <= sizeof(buf))
        return schema_key_hash(buf, len);
    kb->len = 0;
    if (!dbuf_reserve(kb, len)) {
        d->fatal = ST_ENOMEM;
        return 0;
    }
    schema_key_encode(vals, s->npk, (uint8_t *)kb->buf, len);
    return schema_key_hash(kb->buf, len);
}

static bool grow_rows(struct dec *d, size_t size)
{
    struct decode_result *res = d->res;

    if (size > d->o->max_rows_bytes - ST_MIN(res->rows_len, d->o->max_rows_bytes)) {
        d->fatal = ST_ETOOLARGE;
        return false;
    }
    if (size > res->rows_cap - res->rows_len) {
        size_t cap = res->rows_cap ? res->rows_cap : 64 * 1024;
        uint8_t *r;

        while (cap < res->rows_len + size)
            cap = cap < SIZE_MAX / 2 ? cap * 2 : res->rows_len + size;
        r = realloc(res->rows, cap);
        if (!r) {
            d->fatal = ST_ENOMEM;
            return false;
        }
        res->rows = r;
        res->rows_cap = cap;
    }
    if (res->nrows == res->row_cap) {
        size_t cap = res->row_cap ? res->row_cap * 2 : 1024;
        struct decode_row *e =
            cap < SIZE_MAX / sizeof(*e) ? realloc(res->row, cap * sizeof(*e)) : NULL;

        if (!e) {
            d->fatal = ST_ENOMEM;
            return false;
        }
        res->row = e;
        res->row_cap = cap;
    }
    return true;
}

/* Appends the row of the record in the slots (size bytes). */
static void write_row(struct dec *d, size_t size)
{
    struct decode_result *res = d->res;
    const struct decode_scratch *sc = d->sc;
    uint32_t nf = d->s->nfields;
    size_t nb = (nf + 7) / 8;
    uint8_t *r, *q;
    uint64_t bits;

    if (!grow_rows(d, size))
        return;
    r = res->rows + res->rows_len;
    wr32(r, (uint32_t)size);
    memset(r + 4, 0, nb);
    q = r + 4 + nb;
    for (uint32_t i = 0; i < nf; i++) {
        const struct slot *sl = &sc->slots[i];

        if (sl->is_null) {
            r[4 + i / 8] |= (uint8_t)(1u << (i % 8));
            continue;
        }
        switch (sc->fields[i].type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            wr64(q, (uint64_t)sl->i);
            q += 8;
            break;
        case FIELD_FLOAT64:
            memcpy(&bits, &sl->f, sizeof(bits));
            wr64(q, bits);
            q += 8;
            break;
        case FIELD_BOOL:
            *q++ = sl->i != 0;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            wr32(q, sl->len);
            if (sl->len)
                memcpy(q + 4, slot_bytes(d, sl), sl->len);
            q += 4 + sl->len;
            break;
        }
    }
    st_assert((size_t)(q - r) == size);
    res->row[res->nrows].off = res->rows_len;
    res->row[res->nrows].key_hash = key_hash(d);
    res->nrows++;
    res->rows_len += size;
}

static bool add_detail(struct dec *d)
{
    struct decode_result *res = d->res;
    struct decode_detail *det;

    if (res->ndetails % 16 == 0) {
        size_t n = (size_t)res->ndetails + 16;
        struct decode_detail *a =
            n < SIZE_MAX / sizeof(*a) ? realloc(res->details, n * sizeof(*a)) : NULL;

        if (!a) {
            d->fatal = ST_ENOMEM;
            return false;
        }
        res->details = a;
    }
    det = &res->details[res->ndetails++];
    det->index = d->index;
    memcpy(det->field, d->field, sizeof(det->field));
    memcpy(det->reason, d->reason, sizeof(det->reason));
    return true;
}

/* Ends the record that spans [start, stop): its row or its rejection. */
static void finish_record(struct dec *d, const char *start, const char *stop)
{
    struct decode_result *res = d->res;
    size_t size = 0;

    if (!d->failed)
        fill_missing(d);
    if (!d->failed) {
        size = row_size(d);
        if ((size_t)(stop - start) > d->o->max_record_bytes || size > d->o->max_record_bytes ||
            size > UINT32_MAX)
            reject(d, "", 0, "record larger than %zu bytes",
                   ST_MIN(d->o->max_record_bytes, (size_t)UINT32_MAX));
    }
    if (d->failed) {
        res->rejected++;
        if (d->want_detail)
            add_detail(d);
        if (!d->o->partial) {
            res->rows_len = 0;
            res->nrows = 0;
        }
        return;
    }
    if (!d->o->partial && res->rejected)
        return;
    write_row(d, size);
}

/* Makes the record's rejection its syntax error (NDJSON). */
static void fail_syntax(struct dec *d)
{
    d->failed = false;
    reject(d, "", 0, "invalid JSON at byte %zu: %s", (size_t)(d->err_at - d->base), d->err_msg);
}

static enum st_status run_ndjson(struct dec *d)
{
    const char *p = d->base;
    const char *end = d->end;

    while (p < end) {
        uint8_t c = peek(d, p);
        const char *start = p;
        const char *q;

        if (c == '\n' || c == ' ' || c == '\t' || c == '\r') {
            p++;
            continue;
        }
        begin_record(d);
        q = parse_record(d, p);
        if (q) {
            q = skip_ws(d, q);
            if (q < end && *q != '\n')
                q = syntax(d, q, "unexpected data after the record");
        }
        if (d->fatal)
            return d->fatal;
        if (!q) {
            fail_syntax(d);
            q = memchr(d->err_at, '\n', (size_t)(end - d->err_at));
            if (!q)
                q = end;
        }
        finish_record(d, start, q);
        if (d->fatal)
            return d->fatal;
        p = q;
    }
    return ST_OK;
}

static enum st_status run_array(struct dec *d)
{
    const char *p = skip_ws(d, d->base);
    const char *end = d->end;

    if (peek(d, p) != '[') {
        syntax(d, p,
               p == end ? "empty body" : "expected '[': the body must be an array of records");
        return ST_EINVAL;
    }
    p = skip_ws(d, p + 1);
    if (peek(d, p) == ']') {
        p++;
    } else {
        for (;;) {
            const char *start = p;
            uint8_t c;

            begin_record(d);
            p = parse_record(d, p);
            if (!p)
                return d->fatal ? d->fatal : ST_EINVAL;
            finish_record(d, start, p);
            if (d->fatal)
                return d->fatal;
            p = skip_ws(d, p);
            c = peek(d, p);
            if (c == ',') {
                p = skip_ws(d, p + 1);
                continue;
            }
            if (c == ']') {
                p++;
                break;
            }
            syntax(d, p, "expected ',' or ']'");
            return ST_EINVAL;
        }
    }
    p = skip_ws(d, p);
    if (p != end) {
        syntax(d, p, "unexpected data after the array");
        return ST_EINVAL;
    }
    return ST_OK;
}

/*
 * The API.
 */

void decode_opts_init(struct decode_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->format = DECODE_NDJSON;
    o->partial = false;
    o->nul_terminated = false;
    o->max_details = DECODE_MAX_DETAILS;
    o->max_record_bytes = (size_t)16 << 20;
    o->max_rows_bytes = (size_t)1 << 30;
}

void decode_result_init(struct decode_result *res)
{
    memset(res, 0, sizeof(*res));
}

static void scratch_free(struct decode_scratch *sc)
{
    if (!sc)
        return;
    free(sc->fields);
    free(sc->slots);
    free(sc->seen);
    dbuf_release(&sc->tmp);
    dbuf_release(&sc->key);
    dbuf_release(&sc->copy);
    free(sc->keys);
    free(sc);
}

void decode_result_release(struct decode_result *res)
{
    free(res->rows);
    free(res->row);
    free(res->details);
    scratch_free(res->scratch);
    decode_result_init(res);
}

const void *decode_result_row(const struct decode_result *res, size_t i)
{
    st_assert(i < res->nrows);
    return res->rows + res->row[i].off;
}

/*
 * Prepares the 16-byte pattern of f's key ("name" and the closing quote),
 * for names of at most 15 bytes; longer names use memcmp().
 */
static void key_pattern(struct dfield *f)
{
    uint8_t pat[16] = {0};
    uint8_t mask[16] = {0};

    if (f->name_len > 15) {
        memset(f->mask, 0, sizeof(f->mask));
        return;
    }
    memcpy(pat, f->name, f->name_len);
    pat[f->name_len] = '"';
    memset(mask, 0xff, f->name_len + 1);
    memcpy(f->pat, pat, sizeof(pat));
    memcpy(f->mask, mask, sizeof(mask));
}

/* Sizes the scratch for s and loads its fields. */
static struct decode_scratch *scratch_prepare(struct decode_result *res, const struct schema *s)
{
    struct decode_scratch *sc = res->scratch;

    if (!sc)
        sc = res->scratch = xcalloc(1, sizeof(*sc));
    if (sc->cap < s->nfields) {
        free(sc->fields);
        free(sc->slots);
        free(sc->seen);
        sc->cap = s->nfields;
        sc->fields = calloc_array(sc->cap, sizeof(*sc->fields));
        sc->slots = calloc_array(sc->cap, sizeof(*sc->slots));
        sc->seen = calloc_array(sc->cap, sizeof(*sc->seen));
        sc->gen = 0;
    }
    for (uint32_t i = 0; i < s->nfields; i++) {
        struct dfield *f = &sc->fields[i];

        f->name = s->fields[i].name;
        f->name_len = (uint32_t)strlen(f->name);
        f->type = s->fields[i].type;
        f->nullable = s->fields[i].nullable;
        key_pattern(f);
    }
    return sc;
}

/*
 * Points d at the body, or at a copy ending in '\n' when the body has no
 * terminator the scanning loops stop at (see BOUNDS above).
 */
static bool set_region(struct dec *d, const char *body, size_t len, bool nul_terminated)
{
    struct dbuf *c = &d->sc->copy;

    if (nul_terminated || (len > 0 && (uint8_t)body[len - 1] < 0x20)) {
        d->base = body;
        d->end = body + len;
        return true;
    }
    c->len = 0;
    if (!dbuf_reserve(c, len + 1))
        return false;
    if (len)
        memcpy(c->buf, body, len);
    c->buf[len] = '\n';
    c->len = len + 1;
    d->base = c->buf;
    d->end = c->buf + len + 1;
    return true;
}

/* Line and column (from 1) of offset off in the body. */
static void line_col(const char *base, size_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = 1;
    size_t last = 0;

    for (size_t i = 0; i < off; i++) {
        if (base[i] == '\n') {
            l++;
            last = i + 1;
        }
    }
    *line = l;
    *col = (uint32_t)(off - last + 1);
}

enum st_status decode_batch(const struct schema *s, const char *body, size_t len,
                            const struct decode_opts *opts, struct decode_result *res,
                            struct err *err)
{
    struct dec d;
    enum st_status rc;

    res->rows_len = 0;
    res->nrows = 0;
    res->nrecords = 0;
    res->rejected = 0;
    res->ndetails = 0;
    res->err_offset = 0;
    res->err_line = 0;
    res->err_column = 0;

    if (!body) {
        body = "";
        len = 0;
    }
    memset(&d, 0, sizeof(d));
    d.s = s;
    d.o = opts;
    d.res = res;
    d.sc = scratch_prepare(res, s);
    if (!set_region(&d, body, len, opts->nul_terminated))
        return err_set(err, ST_ENOMEM, "cannot copy a body of %zu bytes", len);
    if (opts->format == DECODE_NDJSON) {
        d.ws = ws_line;
        d.depth0 = 1;
        rc = run_ndjson(&d);
    } else {
        d.ws = ws_json;
        d.depth0 = 2;
        rc = run_array(&d);
    }
    if (rc == ST_OK)
        return ST_OK;
    res->rows_len = 0;
    res->nrows = 0;
    switch (rc) {
    case ST_EINVAL:
        /* The decoder may read a copy with a '\n' appended: an error found
         * there is at the end of the body, not past it. */
        res->err_offset = ST_MIN((size_t)(d.err_at - d.base), len);
        line_col(d.base, res->err_offset, &res->err_line, &res->err_column);
        return err_set(err, ST_EINVAL, "invalid JSON at line %u column %u (byte %zu): %s",
                       res->err_line, res->err_column, res->err_offset, d.err_msg);
    case ST_ETOOLARGE:
        return err_set(err, rc, "decoded rows exceed %zu bytes", opts->max_rows_bytes);
    default:
        return err_set(err, rc, "out of memory decoding a body of %zu bytes", len);
    }
}

enum st_status decode_json_text(const char *text, size_t len, struct strbuf *out, struct err *err)
{
    struct decode_scratch sc;
    struct decode_opts o;
    struct decode_result res;
    struct dbuf val = {0};
    struct dec d;
    enum vkind kind;
    enum st_status rc = ST_OK;
    const char *p;

    memset(&sc, 0, sizeof(sc));
    decode_opts_init(&o);
    decode_result_init(&res);
    memset(&d, 0, sizeof(d));
    d.o = &o;
    d.res = &res;
    d.sc = &sc;
    d.ws = ws_json;
    d.want_detail = true;
    if (!set_region(&d, text, len, false)) {
        rc = err_set(err, ST_ENOMEM, "out of memory");
        goto out_free;
    }
    p = walk_value(&d, skip_ws(&d, d.base), 1, &val, -1, &kind);
    if (p && skip_ws(&d, p) != d.end)
        p = syntax(&d, skip_ws(&d, p), "unexpected data after the value");
    if (d.fatal)
        rc = err_set(err, d.fatal, "out of memory");
    else if (!p)
        rc = err_set(err, ST_EINVAL, "invalid JSON at byte %zu: %s", (size_t)(d.err_at - d.base),
                     d.err_msg);
    else if (d.failed)
        rc = err_set(err, ST_EINVAL, "%s", d.reason);
    else
        strbuf_add(out, val.buf, val.len);
out_free:
    dbuf_release(&val);
    dbuf_release(&sc.tmp);
    dbuf_release(&sc.key);
    dbuf_release(&sc.copy);
    free(sc.keys);
    return rc;
}

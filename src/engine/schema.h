/*
 * Table schemas: the typed fields records are checked against, and the
 * binary row format records take once they are decoded.
 *
 * A schema is immutable once built; evolution makes a new version. Field
 * order is the declaration order of the table definition, and rows store
 * their values in that order.
 *
 * Row format (in memory, in WAL batches; do not change: on-disk format,
 * version 1). All integers little-endian.
 *
 *   u32 len          bytes of the whole row, this field included
 *   u8  nulls[(nfields + 7) / 8]   bit i set: field i is null
 *   then, for each field i that is not null, in field order:
 *     int64, timestamp  8 bytes (timestamp: ms since the Unix epoch, UTC)
 *     float64           8 bytes (IEEE 754 bits)
 *     bool              1 byte (0 or 1)
 *     string, json      u32 length, then the bytes (json: the value's
 *                       minimal JSON text; string: valid UTF-8)
 *
 * Values missing from a record are filled from the field's default, or
 * null when it is nullable, before the row is built: a row is always
 * complete for the schema version it names.
 */
#ifndef ST_ENGINE_SCHEMA_H
#define ST_ENGINE_SCHEMA_H

#include "util/status.h"

#define SCHEMA_NAME_MAX   64 /* names are at most 63 bytes */
#define SCHEMA_MAX_FIELDS 1024
#define SCHEMA_MAX_PK     16

enum field_type {
    FIELD_INT64 = 0, /* do not change: on-disk values */
    FIELD_FLOAT64 = 1,
    FIELD_BOOL = 2,
    FIELD_STRING = 3,
    FIELD_TIMESTAMP = 4,
    FIELD_JSON = 5,
};

/* A decoded value. For strings and json, ptr/len borrow the row's bytes. */
struct value {
    enum field_type type; /* the field's type */
    bool is_null;         /* SQL null */
    union {
        int64_t i; /* int64; timestamp in ms since the epoch */
        double f;  /* float64 */
        bool b;    /* bool */
        struct {
            const char *ptr; /* string (UTF-8) or json text, not NUL-terminated */
            uint32_t len;    /* bytes */
        } s;
    } u;
};

struct field {
    char name[SCHEMA_NAME_MAX]; /* [A-Za-z_][A-Za-z0-9_]{0,62} */
    enum field_type type;       /* its type */
    bool nullable;              /* null allowed, and the value when missing */
    bool has_default;           /* def is used when the record lacks it */
    struct value def;           /* the default; strings owned by the schema */
    bool is_pk;                 /* part of the primary key */
};

struct schema {
    uint32_t version;           /* schema version number, from 1 */
    uint32_t nfields;           /* fields in row order */
    struct field *fields;       /* nfields entries */
    uint32_t npk;               /* fields in the primary key */
    uint32_t pk[SCHEMA_MAX_PK]; /* field indexes of the key, in key order */
    int32_t time_field;         /* index of the time field, or -1 */
    /*
     * Added for fast name lookup: an open-addressing table of field
     * indexes (-1 marks an empty slot) with name_mask + 1 slots, built by
     * schema_new(). A schema built by hand may leave it NULL; then
     * schema_find_field() scans the fields.
     */
    int32_t *name_index; /* name_mask + 1 slots, or NULL */
    uint32_t name_mask;  /* slots - 1; slots is a power of two */
};

/* "int64", "float64", ... for t; "unknown" otherwise. */
const char *field_type_name(enum field_type t);
/* Parses a type name; false if unknown. */
bool field_type_parse(const char *name, enum field_type *out);
/* True when name is a valid field name: [A-Za-z_][A-Za-z0-9_]{0,62}. */
bool schema_field_name_is_valid(const char *name, size_t len);
/* True when name is a valid tenant or table name: [a-z0-9][a-z0-9_-]{0,62}. */
bool schema_entity_name_is_valid(const char *name, size_t len);

/*
 * Builds a schema from nfields field definitions (copied, string defaults
 * too) and the primary-key field names. Checks names, duplicates, that
 * key fields exist, are not nullable and are not json, and that the time
 * field (may be NULL) is a timestamp. Caller frees with schema_free().
 *
 * Also checked (the API's rules): 1 <= npk <= SCHEMA_MAX_PK, key fields
 * have no default (they are required), a default has the field's type
 * (def.type == type) and a null default only on a nullable field. String
 * defaults must be valid UTF-8 without NUL; json defaults must be minimal
 * JSON text (decode_json_text() makes it; they are stored as given).
 */
enum st_status schema_new(uint32_t version, const struct field *fields, uint32_t nfields,
                          const char *const *pk, uint32_t npk, const char *time_field,
                          struct schema **out, struct err *err);
void schema_free(struct schema *s);

/* The index of the field called name (len bytes), or -1. */
int schema_find_field(const struct schema *s, const char *name, size_t len);

/*
 * Reads field i of the row at row (len bytes, as above) into *out. The
 * row must be well formed for s (rows from the decoder are); string
 * values borrow the row's bytes.
 */
void schema_row_get(const struct schema *s, const void *row, uint32_t i, struct value *out);

/* The u32 length prefix of a row: its size in bytes, prefix included. */
uint32_t schema_row_len(const void *row);

/*
 * Primary keys as bytes (added for the memtable and point lookups).
 *
 * A key is encoded so that memcmp() order is key order and equal keys
 * have equal bytes; composite keys concatenate their fields in key order:
 *   int64, timestamp  8 bytes big-endian, sign bit flipped
 *   float64           8 bytes big-endian of the IEEE bits, all bits
 *                     flipped when negative, else the sign bit set;
 *                     -0.0 encodes as 0.0
 *   bool              1 byte, 0 or 1
 *   string            the bytes with 0x00 written as 0x00 0xff, then the
 *                     terminator 0x00 0x01
 * Do not change: on-disk format (WAL delete and transaction records and
 * segment indexes store encoded keys). The hash below is in memory only.
 */

/*
 * Encodes the n key values vals (not null; in key order) into buf (cap
 * bytes). Returns the full encoded length; when it exceeds cap, buf holds
 * only the first cap bytes (call again with a bigger buffer).
 */
size_t schema_key_encode(const struct value *vals, uint32_t n, uint8_t *buf, size_t cap);

/*
 * Encodes the primary key of row (well formed for s) as above. Returns
 * the full length; buf holds the first min(cap, length) bytes.
 */
size_t schema_row_key(const struct schema *s, const void *row, uint8_t *buf, size_t cap);

/*
 * A 64-bit hash of encoded key bytes (a murmur3-style mix, fixed seed;
 * in-memory only, may change between versions). The decoder stores it per
 * row (struct decode_row.key_hash).
 */
uint64_t schema_key_hash(const void *key, size_t len);

#endif

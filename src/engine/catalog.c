/*
 * The catalog: tenants, API keys, quotas and tables with versioned
 * schemas (see catalog.h for the life of a change).
 *
 * DESIGN
 *
 * The catalog is a chain of immutable versions (struct catalog_snap). A
 * change never touches a published snapshot: catalog_apply() copies the
 * current snapshot's array of tenant pointers, replaces the one tenant
 * the op concerns by a modified copy (whose table array is again a copy
 * of pointers), and publishes the result by swapping cat->cur. Tenants,
 * tables and schema versions are reference-counted and shared between
 * the snapshots that contain them, so a change costs O(tenants + tables
 * of one tenant + keys), which is nothing for a catalog: changes are
 * rare, lookups are constant traffic. A reader that acquired an older
 * snapshot keeps seeing exactly that catalog until it releases it.
 *
 * Each snapshot keeps sorted arrays for the hot path: tenants by name,
 * every tenant's tables by name (binary search on (tenant, table)), every
 * key of every tenant by key id (authentication), and every table by id
 * (replay, flush and compaction resolve data by table id).
 *
 * Tenants and tables get internal ids from counters in the snapshot
 * (next_tenant_id, next_table_id) that only grow and are checkpointed,
 * so a name reused after a delete never gets the old id, and data of a
 * deleted table can never show up under a new table of the same name.
 *
 * LOCKS
 *
 * See struct catalog. Snapshots and everything they point to are
 * immutable once published; all reference counts are atomic, so
 * catalog_release() may drop the last reference on any thread.
 *
 * API KEYS
 *
 * A token is "sk_" + key id (16 lowercase hex digits, 64 random bits) +
 * "_" + secret (64 lowercase hex digits, 32 random bytes). The catalog
 * stores only BLAKE2b-256 of the whole token, unkeyed and unsalted. A
 * slow password hash (argon2) would be wrong here: it exists to make
 * guessing low-entropy human passwords expensive, while a token carries
 * 256 random bits that no amount of hashing speed lets anyone guess, and
 * authentication runs on every request. The id in the token finds the
 * key in O(log n); the hashes are compared with sodium_memcmp() so the
 * time taken does not depend on where they differ.
 *
 * OP FORMAT (do not change: on-disk format, WAL_REC_CATALOG payloads)
 *
 * One JSON object, compact, keys sorted, UTF-8, no trailing newline:
 *
 *   {"v":1,"op":"create_tenant","tenant":T}
 *   {"v":1,"op":"delete_tenant","tenant":T}
 *   {"v":1,"op":"create_key","tenant":T,"id":ID,"hash":H,"scopes":[S...]}
 *   {"v":1,"op":"revoke_key","tenant":T,"id":ID}
 *   {"v":1,"op":"set_quotas","tenant":T,"max_records_per_sec":N,
 *    "max_storage_bytes":N}
 *   {"v":1,"op":"create_table","tenant":T,"def":{"name":N,"fields":[F...],
 *    "primary_key":[N...],"time_field":N,"retention":R}}
 *   {"v":1,"op":"delete_table","tenant":T,"table":N}
 *   {"v":1,"op":"add_schema_version","tenant":T,"table":N,"fields":[F...]}
 *
 * ID is 16 lowercase hex digits, H 64 lowercase hex digits (the token's
 * BLAKE2b-256), S one of "read", "write", "manage" in that order, N
 * integers 0 .. 2^63-1. time_field and retention are left out when the
 * table has none. A field F is {"name":N,"type":TYPE,"nullable":B} plus
 * "default":D when it has one, D being: int64 an integer; float64 a real
 * (17 significant digits, so it reads back bit for bit); bool true or
 * false; string a string; timestamp an integer (ms since the epoch, UTC);
 * json a string holding the value's minimal JSON text (decode.h), so the
 * text survives exactly. add_schema_version carries the full field list
 * of the next version (newest + 1); the primary key and the time field
 * are the table's. A reader refuses "v" other than 1.
 *
 * CHECKPOINT FORMAT (do not change: on-disk format)
 *
 *   {"format":"strata-catalog","v":1,"version":V,"next_tenant_id":N,
 *    "next_table_id":N,"tenants":[{"name":T,"id":N,"created_version":V,
 *      "quotas":{"max_records_per_sec":N,"max_storage_bytes":N},
 *      "keys":[{"id":ID,"hash":H,"scopes":[S...],"created_version":V}],
 *      "tables":[{"name":N,"id":N,"created_version":V,"primary_key":[N...],
 *        "time_field":N,"retention":R,
 *        "versions":[{"version":1,"commit_version":V,"fields":[F...]}, ...]
 *      }]}]}
 *
 * with the same conventions, compact, keys sorted, tenants, tables and
 * keys in name or id order, and a final newline. V is the commit version
 * of the last op the file reflects: replay applies only later ops.
 * catalog_save() writes "path.tmp", fsyncs it, renames it over path and
 * fsyncs the directory, so a crash leaves the old or the new file whole.
 */
#include "engine/catalog.h"
#include "engine/timestamp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "engine/decode.h"
#include "engine/fs.h"
#include "util/config.h"

#define OP_FORMAT_VERSION   1 /* do not change: on-disk format */
#define CKPT_FORMAT_VERSION 1 /* do not change: on-disk format */
#define CKPT_FORMAT_NAME    "strata-catalog"
#define JSON_INT_MAX        ((uint64_t)INT64_MAX)

/* One schema version of a table; shared by the table copies that hold it. */
struct sver {
    atomic_uint refs;        /* references from tables */
    uint64_t commit_version; /* commit version of the op that added it */
    struct schema *schema;   /* owned */
};

struct catalog_table {
    atomic_uint refs;                      /* references from tenants */
    uint64_t id;                           /* never reused */
    uint64_t tenant_id;                    /* the owner's id */
    uint64_t created_version;              /* commit version of create_table */
    char tenant[SCHEMA_NAME_MAX];          /* the owner's name */
    char name[SCHEMA_NAME_MAX];            /* table name */
    char retention[CATALOG_RETENTION_MAX]; /* as written, "" for none */
    uint64_t retention_ms;                 /* 0 for none */
    uint32_t nversions;                    /* schema versions, >= 1 */
    struct sver **versions;                /* versions[i] is version i + 1 */
};

/* A key inside a tenant. */
struct tkey {
    uint64_t id;                      /* the 16 hex digits as a number */
    unsigned scopes;                  /* enum catalog_scope_flags */
    uint64_t created_version;         /* commit version of create_key */
    uint8_t hash[CATALOG_HASH_BYTES]; /* BLAKE2b-256 of the token */
};

struct catalog_tenant {
    atomic_uint refs;              /* references from snapshots */
    uint64_t id;                   /* never reused */
    uint64_t created_version;      /* commit version of create_tenant */
    char name[SCHEMA_NAME_MAX];    /* tenant name */
    struct catalog_quotas quotas;  /* stored limits */
    uint32_t nkeys;                /* entries in keys */
    struct tkey *keys;             /* sorted by id; owned */
    uint32_t ntables;              /* entries in tables */
    struct catalog_table **tables; /* sorted by name; one reference each */
};

/* The snapshot's index of every key by id. */
struct kent {
    uint64_t id;                         /* key id */
    const struct catalog_tenant *tenant; /* its tenant, in this snapshot */
    const struct tkey *key;              /* the key inside tenant */
};

struct catalog_snap {
    atomic_uint refs;                /* the catalog's and readers' */
    uint64_t version;                /* commit version of the last op */
    uint64_t next_tenant_id;         /* id of the next tenant, from 1 */
    uint64_t next_table_id;          /* id of the next table, from 1 */
    uint32_t ntenants;               /* entries in tenants */
    struct catalog_tenant **tenants; /* sorted by name; one reference each */
    uint32_t nkeys;                  /* entries in keys */
    struct kent *keys;               /* every key, sorted by id */
    uint32_t ntables;                /* entries in by_id */
    struct catalog_table **by_id;    /* every table, sorted by id; borrowed */
};

/*
 * The live catalog.
 *
 * Lock rules: lock guards cur and nothing else. It is held only to read
 * cur and take a reference (catalog_acquire()) or to swap cur for a new
 * snapshot (publish); no allocation, I/O or other lock happens under it.
 * wlock serialises writers (catalog_apply()): only a holder of wlock
 * changes cur, so a writer reads cur without lock, builds the next
 * snapshot outside lock, and takes lock just to swap. Order: wlock, then
 * lock; never the reverse. The old snapshot's reference is dropped after
 * lock is released.
 */
struct catalog {
    pthread_mutex_t lock;     /* guards cur */
    pthread_mutex_t wlock;    /* serialises catalog_apply() */
    struct catalog_snap *cur; /* the current snapshot; one reference */
};

/* ------------------------------------------------------------------ */
/* Small helpers. */

static const char *const scope_names[] = {"read", "write", "manage"};

bool catalog_scope_parse(const char *name, unsigned *flag)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(scope_names); i++) {
        if (!strcmp(name, scope_names[i])) {
            *flag = 1u << i;
            return true;
        }
    }
    return false;
}

const char *catalog_scope_name(unsigned flag)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(scope_names); i++)
        if (flag == 1u << i)
            return scope_names[i];
    return NULL;
}

/* Compares a stored NUL-terminated name with (name, len). */
static int name_cmp(const char *stored, const char *name, size_t len)
{
    size_t sl = strlen(stored);
    int c = len ? memcmp(stored, name, ST_MIN(sl, len)) : 0;

    if (c)
        return c;
    return sl < len ? -1 : sl > len;
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Parses exactly CATALOG_KEY_ID_LEN lowercase hex digits (n bytes). */
static bool key_id_parse(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || n != CATALOG_KEY_ID_LEN || !is_lower_hex(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        v = v << 4 | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    *out = v;
    return true;
}

static void key_id_format(uint64_t id, char out[CATALOG_KEY_ID_LEN + 1])
{
    snprintf(out, CATALOG_KEY_ID_LEN + 1, "%016" PRIx64, id);
}

static const char *type_with_article(enum field_type t)
{
    switch (t) {
    case FIELD_INT64:
        return "an int64";
    case FIELD_FLOAT64:
        return "a float64";
    case FIELD_BOOL:
        return "a bool";
    case FIELD_STRING:
        return "a string";
    case FIELD_TIMESTAMP:
        return "a timestamp (RFC 3339 string or epoch milliseconds)";
    case FIELD_JSON:
        return "a JSON value";
    }
    return "a value";
}

/* A new json string that must succeed: the text was validated before. */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);

    st_assert(v);
    return v;
}

static json_t *jstrn(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);

    st_assert(v);
    return v;
}

static json_t *juint(uint64_t v)
{
    st_assert(v <= JSON_INT_MAX);
    return json_integer((json_int_t)v);
}

/* A non-negative integer member; false when missing or of another type. */
static bool get_u64(const json_t *o, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* A string member without NUL, or NULL. */
static const char *get_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

/* ------------------------------------------------------------------ */
/* Fields: parsing and printing. */

/*
 * Appends v as compact JSON: object members in their order, strings
 * escaped as strbuf_add_json_str() does, reals in the fewest digits that
 * read back to the same double (with ".0" when that looks like an
 * integer). decode_json_text() then makes it the canonical minimal text.
 */
void catalog_json_compact(const json_t *v, struct strbuf *sb)
{
    char num[40];

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *m;
        bool first = true;

        strbuf_addch(sb, '{');
        json_object_foreach((json_t *)v, key, m)
        {
            if (!first)
                strbuf_addch(sb, ',');
            first = false;
            strbuf_add_json_str(sb, key, strlen(key));
            strbuf_addch(sb, ':');
            catalog_json_compact(m, sb);
        }
        strbuf_addch(sb, '}');
        break;
    }
    case JSON_ARRAY:
        strbuf_addch(sb, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                strbuf_addch(sb, ',');
            catalog_json_compact(json_array_get(v, i), sb);
        }
        strbuf_addch(sb, ']');
        break;
    case JSON_STRING:
        strbuf_add_json_str(sb, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        strbuf_addf(sb, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);

        for (int p = 1; p <= 17; p++) {
            snprintf(num, sizeof(num), "%.*g", p, d);
            if (strtod(num, NULL) == d)
                break;
        }
        strbuf_addstr(sb, num);
        if (!strpbrk(num, ".eE"))
            strbuf_addstr(sb, ".0");
        break;
    }
    case JSON_TRUE:
        strbuf_addstr(sb, "true");
        break;
    case JSON_FALSE:
        strbuf_addstr(sb, "false");
        break;
    case JSON_NULL:
        strbuf_addstr(sb, "null");
        break;
    }
}

/* A json field's default: canonical form is a string of minimal text. */
static enum st_status parse_json_default(const json_t *v, bool canon, struct field *f,
                                         struct err *err)
{
    struct strbuf raw = STRBUF_INIT;
    struct strbuf text = STRBUF_INIT;
    struct err e2;
    enum st_status rc;
    size_t n;

    err_clear(&e2);
    if (canon) {
        if (!json_is_string(v)) {
            rc = err_set(err, ST_EINVAL, "field '%s': default must be JSON text", f->name);
            goto out_release;
        }
        strbuf_add(&raw, json_string_value(v), json_string_length(v));
    } else {
        catalog_json_compact(v, &raw);
    }
    rc = decode_json_text(raw.buf, raw.len, &text, &e2);
    if (rc) {
        rc = err_set(err, ST_EINVAL, "field '%s': default is not a valid json value: %s", f->name,
                     e2.msg);
        goto out_release;
    }
    f->def.u.s.ptr = strbuf_detach(&text, &n);
    f->def.u.s.len = (uint32_t)n;
    f->has_default = true;

out_release:
    strbuf_release(&raw);
    strbuf_release(&text);
    return rc;
}

static enum st_status parse_default(const json_t *v, bool canon, struct field *f, struct err *err)
{
    struct value *d = &f->def;

    d->type = f->type;
    if (json_is_null(v) && !(f->type == FIELD_JSON && !f->nullable && !canon)) {
        if (!f->nullable)
            return err_set(err, ST_EINVAL,
                           "field '%s': default is null but the field is not nullable", f->name);
        f->has_default = false; /* a nullable field's missing value is null anyway */
        return ST_OK;
    }
    switch (f->type) {
    case FIELD_INT64:
        if (!json_is_integer(v))
            goto bad;
        d->u.i = json_integer_value(v);
        break;
    case FIELD_FLOAT64:
        if (!json_is_number(v))
            goto bad;
        d->u.f = json_number_value(v);
        break;
    case FIELD_BOOL:
        if (!json_is_boolean(v))
            goto bad;
        d->u.b = json_is_true(v);
        break;
    case FIELD_STRING: {
        size_t n;
        char *copy;

        if (!json_is_string(v))
            goto bad;
        n = json_string_length(v);
        if (memchr(json_string_value(v), '\0', n) || n > UINT32_MAX)
            return err_set(err, ST_EINVAL, "field '%s': default must not contain NUL", f->name);
        copy = xmalloc(n + 1);
        memcpy(copy, json_string_value(v), n + 1);
        d->u.s.ptr = copy;
        d->u.s.len = (uint32_t)n;
        break;
    }
    case FIELD_TIMESTAMP:
        if (json_is_integer(v))
            d->u.i = json_integer_value(v);
        else if (!json_is_string(v) ||
                 !timestamp_parse_rfc3339(json_string_value(v), json_string_length(v), &d->u.i))
            goto bad;
        break;
    case FIELD_JSON:
        return parse_json_default(v, canon, f, err);
    }
    f->has_default = true;
    return ST_OK;

bad:
    return err_set(err, ST_EINVAL, "field '%s': default must be %s", f->name,
                   type_with_article(f->type));
}

static bool key_allowed(const char *key, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(key, keys[i]))
            return true;
    return false;
}

static enum st_status parse_field(const json_t *o, size_t i, bool canon, struct field *f,
                                  struct err *err)
{
    static const char *const keys[] = {"name", "type", "nullable", "default"};
    const json_t *jn, *jt, *jnull, *jd;
    const char *key;
    json_t *m;
    size_t n;

    memset(f, 0, sizeof(*f));
    if (!json_is_object(o))
        return err_set(err, ST_EINVAL, "field %zu: must be an object", i);
    jn = json_object_get(o, "name");
    if (!json_is_string(jn))
        return err_set(err, ST_EINVAL, "field %zu: 'name' must be a string", i);
    n = json_string_length(jn);
    if (!schema_field_name_is_valid(json_string_value(jn), n))
        return err_set(err, ST_EINVAL,
                       "field %zu: invalid name '%s' (expected [A-Za-z_][A-Za-z0-9_]{0,62})", i,
                       json_string_value(jn));
    memcpy(f->name, json_string_value(jn), n);
    f->name[n] = '\0';
    json_object_foreach((json_t *)o, key, m)
    {
        if (!key_allowed(key, keys, ST_ARRAY_SIZE(keys)))
            return err_set(err, ST_EINVAL, "field '%s': unknown key '%s'", f->name, key);
    }
    jt = json_object_get(o, "type");
    if (!json_is_string(jt))
        return err_set(err, ST_EINVAL, "field '%s': 'type' must be a string", f->name);
    if (!field_type_parse(json_string_value(jt), &f->type))
        return err_set(err, ST_EINVAL,
                       "field '%s': unknown type '%s' (expected int64, float64, bool, string, "
                       "timestamp or json)",
                       f->name, json_string_value(jt));
    jnull = json_object_get(o, "nullable");
    if (jnull && !json_is_boolean(jnull))
        return err_set(err, ST_EINVAL, "field '%s': 'nullable' must be true or false", f->name);
    f->nullable = json_is_true(jnull);
    f->def.type = f->type;
    jd = json_object_get(o, "default");
    return jd ? parse_default(jd, canon, f, err) : ST_OK;
}

void catalog_fields_free(struct field *fields, uint32_t n)
{
    if (!fields)
        return;
    for (uint32_t i = 0; i < n; i++) {
        struct field *f = &fields[i];

        if ((f->type == FIELD_STRING || f->type == FIELD_JSON) && f->has_default && !f->def.is_null)
            free((char *)f->def.u.s.ptr);
    }
    free(fields);
}

static enum st_status parse_fields(const json_t *arr, bool canon, struct field **out, uint32_t *n,
                                   struct err *err)
{
    struct field *fields;
    size_t size = json_array_size(arr);

    *out = NULL;
    *n = 0;
    if (!json_is_array(arr) || size == 0)
        return err_set(err, ST_EINVAL, "'fields' must be a non-empty array of field objects");
    if (size > SCHEMA_MAX_FIELDS)
        return err_set(err, ST_EINVAL, "a table has at most %d fields, not %zu", SCHEMA_MAX_FIELDS,
                       size);
    fields = calloc_array(size, sizeof(*fields));
    for (size_t i = 0; i < size; i++) {
        enum st_status rc = parse_field(json_array_get(arr, i), i, canon, &fields[i], err);

        if (rc) {
            catalog_fields_free(fields, (uint32_t)i + 1);
            return rc;
        }
    }
    *out = fields;
    *n = (uint32_t)size;
    return ST_OK;
}

enum st_status catalog_fields_parse(const struct json_t *fields, struct field **out, uint32_t *n,
                                    struct err *err)
{
    return parse_fields(fields, false, out, n, err);
}

/* The default of f as JSON: canonical (ops, checkpoint) or the API's form. */
static json_t *default_to_json(const struct field *f, bool canon)
{
    const struct value *d = &f->def;
    char ts[40];
    json_t *v;

    switch (f->type) {
    case FIELD_INT64:
        return json_integer(d->u.i);
    case FIELD_FLOAT64:
        v = json_real(d->u.f);
        st_assert(v);
        return v;
    case FIELD_BOOL:
        return json_boolean(d->u.b);
    case FIELD_STRING:
        return jstrn(d->u.s.ptr, d->u.s.len);
    case FIELD_TIMESTAMP:
        /* RFC 3339 has years 0000-9999 only; others stay epoch ms so the
         * answer parses back as a definition. */
        if (canon || d->u.i < TIMESTAMP_RFC3339_MIN || d->u.i > TIMESTAMP_RFC3339_MAX)
            return json_integer(d->u.i);
        timestamp_format(d->u.i, ts);
        return jstr(ts);
    case FIELD_JSON:
        if (canon)
            return jstrn(d->u.s.ptr, d->u.s.len);
        v = json_loadb(d->u.s.ptr, d->u.s.len, JSON_DECODE_ANY, NULL);
        return v ? v : jstrn(d->u.s.ptr, d->u.s.len);
    }
    ST_BUG("field '%s' has type %d", f->name, (int)f->type);
}

static json_t *field_to_json(const struct field *f, bool canon)
{
    json_t *o = json_object();

    json_object_set_new(o, "name", jstr(f->name));
    json_object_set_new(o, "type", jstr(field_type_name(f->type)));
    json_object_set_new(o, "nullable", json_boolean(f->nullable));
    if (f->has_default && !f->def.is_null)
        json_object_set_new(o, "default", default_to_json(f, canon));
    return o;
}

static json_t *fields_to_json(const struct field *fields, uint32_t n, bool canon)
{
    json_t *a = json_array();

    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(a, field_to_json(&fields[i], canon));
    return a;
}

static json_t *pk_to_json(const struct schema *s)
{
    json_t *a = json_array();

    for (uint32_t k = 0; k < s->npk; k++)
        json_array_append_new(a, jstr(s->fields[s->pk[k]].name));
    return a;
}

/* ------------------------------------------------------------------ */
/* Table definitions. */

static int find_parsed(const struct field *fields, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(fields[i].name, name))
            return (int)i;
    return -1;
}

static enum st_status parse_pk(const json_t *jpk, const struct field *fields, uint32_t n,
                               const char **pk, uint32_t *npk, struct err *err)
{
    size_t size = json_array_size(jpk);

    if (!json_is_array(jpk) || size == 0)
        return err_set(err, ST_EINVAL, "'primary_key' must be a non-empty array of field names");
    if (size > SCHEMA_MAX_PK)
        return err_set(err, ST_EINVAL, "'primary_key' has at most %d fields, not %zu",
                       SCHEMA_MAX_PK, size);
    for (size_t k = 0; k < size; k++) {
        const char *name = json_string_value(json_array_get(jpk, k));
        int idx;

        if (!name)
            return err_set(err, ST_EINVAL, "primary_key: entry %zu is not a string", k);
        idx = find_parsed(fields, n, name);
        if (idx < 0)
            return err_set(err, ST_EINVAL, "primary_key: no field named '%s'", name);
        for (size_t j = 0; j < k; j++)
            if (!strcmp(pk[j], name))
                return err_set(err, ST_EINVAL, "primary_key: field '%s' appears twice", name);
        if (fields[idx].nullable)
            return err_set(err, ST_EINVAL,
                           "primary_key: field '%s' is nullable; key fields are required", name);
        if (fields[idx].has_default)
            return err_set(err, ST_EINVAL,
                           "primary_key: field '%s' has a default; key fields are required", name);
        if (fields[idx].type == FIELD_JSON)
            return err_set(err, ST_EINVAL,
                           "primary_key: field '%s' is json, which cannot be part of a key", name);
        pk[k] = fields[idx].name;
    }
    *npk = (uint32_t)size;
    return ST_OK;
}

static enum st_status parse_time_field(const json_t *jt, const struct field *fields, uint32_t n,
                                       const char **tf, struct err *err)
{
    const char *name;
    int idx;

    *tf = NULL;
    if (!jt || json_is_null(jt))
        return ST_OK;
    name = json_string_value(jt);
    if (!name)
        return err_set(err, ST_EINVAL, "'time_field' must be a field name");
    idx = find_parsed(fields, n, name);
    if (idx < 0)
        return err_set(err, ST_EINVAL, "time_field: no field named '%s'", name);
    if (fields[idx].type != FIELD_TIMESTAMP)
        return err_set(err, ST_EINVAL, "time_field: field '%s' is %s, not a timestamp", name,
                       field_type_name(fields[idx].type));
    *tf = fields[idx].name;
    return ST_OK;
}

static enum st_status parse_retention(const json_t *jr, bool has_time_field,
                                      struct catalog_table_def *def, struct err *err)
{
    const char *text;

    if (!jr || json_is_null(jr))
        return ST_OK;
    text = json_string_value(jr);
    if (!text)
        return err_set(err, ST_EINVAL, "'retention' must be a duration string such as \"90d\"");
    if (!has_time_field)
        return err_set(err, ST_EINVAL, "retention needs a time_field");
    if (strlen(text) >= CATALOG_RETENTION_MAX ||
        !config_parse_duration_ms(text, &def->retention_ms))
        return err_set(err, ST_EINVAL,
                       "retention: invalid duration '%.40s' (expected a number with ms, s, m, h "
                       "or d, such as \"90d\")",
                       text);
    if (def->retention_ms == 0)
        return err_set(err, ST_EINVAL, "retention: '%s' is not longer than zero", text);
    st_strlcpy(def->retention, text, sizeof(def->retention));
    return ST_OK;
}

static enum st_status parse_def(const json_t *o, bool canon, struct catalog_table_def **out,
                                struct err *err)
{
    static const char *const keys[] = {"name", "fields", "primary_key", "time_field", "retention"};
    struct catalog_table_def *def;
    struct field *fields = NULL;
    uint32_t nfields = 0, npk = 0;
    const char *pk[SCHEMA_MAX_PK];
    const char *tf, *key;
    const json_t *jn;
    json_t *m;
    enum st_status rc;

    *out = NULL;
    if (!json_is_object(o))
        return err_set(err, ST_EINVAL, "a table definition must be a JSON object");
    json_object_foreach((json_t *)o, key, m)
    {
        if (!key_allowed(key, keys, ST_ARRAY_SIZE(keys)))
            return err_set(err, ST_EINVAL, "unknown key '%s' in the table definition", key);
    }
    jn = json_object_get(o, "name");
    if (!json_is_string(jn))
        return err_set(err, ST_EINVAL, "the table definition needs a 'name' string");
    if (!schema_entity_name_is_valid(json_string_value(jn), json_string_length(jn)))
        return err_set(err, ST_EINVAL,
                       "invalid table name '%s' (expected [a-z0-9][a-z0-9_-]{0,62})",
                       json_string_value(jn));
    if (!json_object_get(o, "fields"))
        return err_set(err, ST_EINVAL, "the table definition needs 'fields'");
    if (!json_object_get(o, "primary_key"))
        return err_set(err, ST_EINVAL, "the table definition needs 'primary_key'");

    def = xcalloc(1, sizeof(*def));
    st_strlcpy(def->name, json_string_value(jn), sizeof(def->name));
    rc = parse_fields(json_object_get(o, "fields"), canon, &fields, &nfields, err);
    if (rc)
        goto err_free_def;
    rc = parse_pk(json_object_get(o, "primary_key"), fields, nfields, pk, &npk, err);
    if (rc)
        goto err_free_fields;
    rc = parse_time_field(json_object_get(o, "time_field"), fields, nfields, &tf, err);
    if (rc)
        goto err_free_fields;
    rc = parse_retention(json_object_get(o, "retention"), tf != NULL, def, err);
    if (rc)
        goto err_free_fields;
    rc = schema_new(1, fields, nfields, pk, npk, tf, &def->schema, err);
    if (rc)
        goto err_free_fields;
    catalog_fields_free(fields, nfields);
    *out = def;
    return ST_OK;

err_free_fields:
    catalog_fields_free(fields, nfields);
err_free_def:
    free(def);
    return rc;
}

enum st_status catalog_table_def_parse(const struct json_t *def, struct catalog_table_def **out,
                                       struct err *err)
{
    return parse_def(def, false, out, err);
}

enum st_status catalog_table_def_parse_text(const char *text, size_t len,
                                            struct catalog_table_def **out, struct err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    enum st_status rc;

    *out = NULL;
    if (!root)
        return err_set(err, ST_EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                       jerr.column, jerr.text);
    rc = parse_def(root, false, out, err);
    json_decref(root);
    return rc;
}

void catalog_table_def_free(struct catalog_table_def *def)
{
    if (!def)
        return;
    schema_free(def->schema);
    free(def);
}

/* The canonical definition (create_table ops). */
static json_t *def_to_json(const struct catalog_table_def *def)
{
    const struct schema *s = def->schema;
    json_t *o = json_object();

    json_object_set_new(o, "name", jstr(def->name));
    json_object_set_new(o, "fields", fields_to_json(s->fields, s->nfields, true));
    json_object_set_new(o, "primary_key", pk_to_json(s));
    if (s->time_field >= 0)
        json_object_set_new(o, "time_field", jstr(s->fields[s->time_field].name));
    if (def->retention[0])
        json_object_set_new(o, "retention", jstr(def->retention));
    return o;
}

/* ------------------------------------------------------------------ */
/* Reference-counted pieces of a snapshot. */

static struct sver *sver_new(struct schema *schema, uint64_t commit_version)
{
    struct sver *v = xcalloc(1, sizeof(*v));

    atomic_init(&v->refs, 1);
    v->schema = schema;
    v->commit_version = commit_version;
    return v;
}

static struct sver *sver_ref(struct sver *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

static void sver_unref(struct sver *v)
{
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    schema_free(v->schema);
    free(v);
}

static struct catalog_table *table_ref(struct catalog_table *tb)
{
    atomic_fetch_add_explicit(&tb->refs, 1, memory_order_relaxed);
    return tb;
}

static void table_unref(struct catalog_table *tb)
{
    if (atomic_fetch_sub_explicit(&tb->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < tb->nversions; i++)
        sver_unref(tb->versions[i]);
    free(tb->versions);
    free(tb);
}

/* A copy of tb with room for one more schema version; shares the versions. */
static struct catalog_table *table_clone(const struct catalog_table *o)
{
    struct catalog_table *tb = xmalloc(sizeof(*tb));

    *tb = *o;
    atomic_init(&tb->refs, 1);
    tb->versions = calloc_array((size_t)o->nversions + 1, sizeof(*tb->versions));
    for (uint32_t i = 0; i < o->nversions; i++)
        tb->versions[i] = sver_ref(o->versions[i]);
    return tb;
}

static struct catalog_tenant *tenant_ref(struct catalog_tenant *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

static void tenant_unref(struct catalog_tenant *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (uint32_t i = 0; i < t->ntables; i++)
        table_unref(t->tables[i]);
    free(t->tables);
    if (t->keys)
        sodium_memzero(t->keys, (size_t)t->nkeys * sizeof(*t->keys));
    free(t->keys);
    free(t);
}

/* A copy of t with room for one more key and one more table. */
static struct catalog_tenant *tenant_clone(const struct catalog_tenant *o)
{
    struct catalog_tenant *t = xmalloc(sizeof(*t));

    *t = *o;
    atomic_init(&t->refs, 1);
    t->keys = calloc_array((size_t)o->nkeys + 1, sizeof(*t->keys));
    if (o->nkeys)
        memcpy(t->keys, o->keys, o->nkeys * sizeof(*t->keys));
    t->tables = calloc_array((size_t)o->ntables + 1, sizeof(*t->tables));
    for (uint32_t i = 0; i < o->ntables; i++)
        t->tables[i] = table_ref(o->tables[i]);
    return t;
}

static void snap_free(struct catalog_snap *s)
{
    for (uint32_t i = 0; i < s->ntenants; i++)
        tenant_unref(s->tenants[i]);
    free(s->tenants);
    free(s->keys);
    free(s->by_id);
    free(s);
}

static struct catalog_snap *snap_new(void)
{
    struct catalog_snap *s = xcalloc(1, sizeof(*s));

    atomic_init(&s->refs, 1);
    s->next_tenant_id = 1;
    s->next_table_id = 1;
    return s;
}

/* A copy of o with room for one more tenant; indexes are left empty. */
static struct catalog_snap *snap_clone(const struct catalog_snap *o)
{
    struct catalog_snap *s = snap_new();

    s->version = o->version;
    s->next_tenant_id = o->next_tenant_id;
    s->next_table_id = o->next_table_id;
    s->ntenants = o->ntenants;
    s->tenants = calloc_array((size_t)o->ntenants + 1, sizeof(*s->tenants));
    for (uint32_t i = 0; i < o->ntenants; i++)
        s->tenants[i] = tenant_ref(o->tenants[i]);
    return s;
}

static int kent_cmp(const void *a, const void *b)
{
    const struct kent *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static int table_id_cmp(const void *a, const void *b)
{
    const struct catalog_table *x = *(const struct catalog_table *const *)a;
    const struct catalog_table *y = *(const struct catalog_table *const *)b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/* Builds the key and table-id indexes of a snapshot about to be published. */
static void snap_index(struct catalog_snap *s)
{
    size_t nk = 0, nt = 0;

    free(s->keys);
    free(s->by_id);
    for (uint32_t i = 0; i < s->ntenants; i++) {
        nk += s->tenants[i]->nkeys;
        nt += s->tenants[i]->ntables;
    }
    s->keys = calloc_array(nk + 1, sizeof(*s->keys));
    s->by_id = calloc_array(nt + 1, sizeof(*s->by_id));
    s->nkeys = 0;
    s->ntables = 0;
    for (uint32_t i = 0; i < s->ntenants; i++) {
        const struct catalog_tenant *t = s->tenants[i];

        for (uint32_t k = 0; k < t->nkeys; k++)
            s->keys[s->nkeys++] = (struct kent){t->keys[k].id, t, &t->keys[k]};
        for (uint32_t k = 0; k < t->ntables; k++)
            s->by_id[s->ntables++] = t->tables[k];
    }
    qsort(s->keys, s->nkeys, sizeof(*s->keys), kent_cmp);
    qsort(s->by_id, s->ntables, sizeof(*s->by_id), table_id_cmp);
}

/* ------------------------------------------------------------------ */
/* Lookups. */

/* Binary search of tenants by name: true when found at *pos, else insert at *pos. */
static bool tenant_search(const struct catalog_snap *s, const char *name, size_t len, uint32_t *pos)
{
    uint32_t lo = 0, hi = s->ntenants;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(s->tenants[mid]->name, name, len);

        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return false;
}

static bool table_search(const struct catalog_tenant *t, const char *name, size_t len,
                         uint32_t *pos)
{
    uint32_t lo = 0, hi = t->ntables;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(t->tables[mid]->name, name, len);

        if (c == 0) {
            *pos = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return false;
}

static bool tkey_search(const struct catalog_tenant *t, uint64_t id, uint32_t *pos)
{
    uint32_t lo = 0, hi = t->nkeys;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (t->keys[mid].id == id) {
            *pos = mid;
            return true;
        }
        if (t->keys[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return false;
}

static const struct kent *key_find(const struct catalog_snap *s, uint64_t id)
{
    struct kent k = {.id = id};

    return bsearch(&k, s->keys, s->nkeys, sizeof(*s->keys), kent_cmp);
}

const struct catalog_tenant *catalog_find_tenant(const struct catalog_snap *snap, const char *name,
                                                 size_t len)
{
    uint32_t pos;

    return tenant_search(snap, name, len, &pos) ? snap->tenants[pos] : NULL;
}

const struct catalog_table *catalog_tenant_find_table(const struct catalog_tenant *t,
                                                      const char *name, size_t len)
{
    uint32_t pos;

    return table_search(t, name, len, &pos) ? t->tables[pos] : NULL;
}

const struct catalog_table *catalog_find_table(const struct catalog_snap *snap, const char *tenant,
                                               size_t tlen, const char *table, size_t len)
{
    const struct catalog_tenant *t = catalog_find_tenant(snap, tenant, tlen);

    return t ? catalog_tenant_find_table(t, table, len) : NULL;
}

const struct catalog_table *catalog_find_table_by_id(const struct catalog_snap *snap, uint64_t id)
{
    uint32_t lo = 0, hi = snap->ntables;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (snap->by_id[mid]->id == id)
            return snap->by_id[mid];
        if (snap->by_id[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t catalog_snap_version(const struct catalog_snap *snap)
{
    return snap->version;
}

uint32_t catalog_ntenants(const struct catalog_snap *snap)
{
    return snap->ntenants;
}

const struct catalog_tenant *catalog_tenant_at(const struct catalog_snap *snap, uint32_t i)
{
    st_assert(i < snap->ntenants);
    return snap->tenants[i];
}

const char *catalog_tenant_name(const struct catalog_tenant *t)
{
    return t->name;
}

uint64_t catalog_tenant_id(const struct catalog_tenant *t)
{
    return t->id;
}

struct catalog_quotas catalog_tenant_quotas(const struct catalog_tenant *t)
{
    return t->quotas;
}

uint32_t catalog_tenant_nkeys(const struct catalog_tenant *t)
{
    return t->nkeys;
}

void catalog_tenant_key(const struct catalog_tenant *t, uint32_t i, struct catalog_key_info *out)
{
    st_assert(i < t->nkeys);
    key_id_format(t->keys[i].id, out->id);
    out->scopes = t->keys[i].scopes;
    out->created_version = t->keys[i].created_version;
}

uint32_t catalog_tenant_ntables(const struct catalog_tenant *t)
{
    return t->ntables;
}

const struct catalog_table *catalog_tenant_table(const struct catalog_tenant *t, uint32_t i)
{
    st_assert(i < t->ntables);
    return t->tables[i];
}

const char *catalog_table_name(const struct catalog_table *tb)
{
    return tb->name;
}

uint64_t catalog_table_id(const struct catalog_table *tb)
{
    return tb->id;
}

const char *catalog_table_tenant(const struct catalog_table *tb)
{
    return tb->tenant;
}

uint64_t catalog_table_tenant_id(const struct catalog_table *tb)
{
    return tb->tenant_id;
}

uint64_t catalog_table_created_version(const struct catalog_table *tb)
{
    return tb->created_version;
}

uint64_t catalog_table_retention_ms(const struct catalog_table *tb)
{
    return tb->retention_ms;
}

const char *catalog_table_retention(const struct catalog_table *tb)
{
    return tb->retention;
}

const struct schema *catalog_table_schema(const struct catalog_table *tb)
{
    return tb->versions[tb->nversions - 1]->schema;
}

const struct schema *catalog_table_schema_version(const struct catalog_table *tb, uint32_t v)
{
    return v >= 1 && v <= tb->nversions ? tb->versions[v - 1]->schema : NULL;
}

uint64_t catalog_table_schema_commit(const struct catalog_table *tb, uint32_t v)
{
    return v >= 1 && v <= tb->nversions ? tb->versions[v - 1]->commit_version : 0;
}

struct json_t *catalog_table_to_json(const struct catalog_table *tb)
{
    const struct schema *s = catalog_table_schema(tb);
    json_t *o = json_object();
    json_t *versions = json_array();

    json_object_set_new(o, "name", jstr(tb->name));
    json_object_set_new(o, "fields", fields_to_json(s->fields, s->nfields, false));
    json_object_set_new(o, "primary_key", pk_to_json(s));
    if (s->time_field >= 0)
        json_object_set_new(o, "time_field", jstr(s->fields[s->time_field].name));
    if (tb->retention[0])
        json_object_set_new(o, "retention", jstr(tb->retention));
    json_object_set_new(o, "schema_version", json_integer(s->version));
    for (uint32_t i = 0; i < tb->nversions; i++) {
        const struct schema *vs = tb->versions[i]->schema;
        json_t *v = json_object();

        json_object_set_new(v, "version", json_integer(vs->version));
        json_object_set_new(v, "fields", fields_to_json(vs->fields, vs->nfields, false));
        json_array_append_new(versions, v);
    }
    json_object_set_new(o, "schema_versions", versions);
    return o;
}

/* ------------------------------------------------------------------ */
/* API keys. */

void catalog_token_hash(const char *token, size_t len, uint8_t hash[CATALOG_HASH_BYTES])
{
    crypto_generichash(hash, CATALOG_HASH_BYTES, (const unsigned char *)token, len, NULL, 0);
}

void catalog_key_generate(char token[CATALOG_TOKEN_LEN + 1], char id[CATALOG_KEY_ID_LEN + 1],
                          uint8_t hash[CATALOG_HASH_BYTES])
{
    uint8_t raw_id[CATALOG_KEY_ID_LEN / 2];
    uint8_t secret[CATALOG_SECRET_BYTES];

    if (sodium_init() < 0)
        ST_BUG("libsodium cannot be initialised");
    randombytes_buf(raw_id, sizeof(raw_id));
    randombytes_buf(secret, sizeof(secret));
    sodium_bin2hex(id, CATALOG_KEY_ID_LEN + 1, raw_id, sizeof(raw_id));
    memcpy(token, "sk_", 3);
    memcpy(token + 3, id, CATALOG_KEY_ID_LEN);
    token[3 + CATALOG_KEY_ID_LEN] = '_';
    sodium_bin2hex(token + 4 + CATALOG_KEY_ID_LEN, 2 * CATALOG_SECRET_BYTES + 1, secret,
                   sizeof(secret));
    st_assert(strlen(token) == CATALOG_TOKEN_LEN);
    catalog_token_hash(token, CATALOG_TOKEN_LEN, hash);
    sodium_memzero(secret, sizeof(secret));
}

enum st_status catalog_key_authenticate(const struct catalog_snap *snap, const char *token,
                                        size_t len, const struct catalog_tenant **tenant,
                                        unsigned *scopes, struct err *err)
{
    uint8_t hash[CATALOG_HASH_BYTES];
    const struct kent *k;
    uint64_t id;

    *tenant = NULL;
    *scopes = 0;
    if (len != CATALOG_TOKEN_LEN || memcmp(token, "sk_", 3) ||
        token[3 + CATALOG_KEY_ID_LEN] != '_' || !key_id_parse(token + 3, CATALOG_KEY_ID_LEN, &id) ||
        !is_lower_hex(token + 4 + CATALOG_KEY_ID_LEN, 2 * CATALOG_SECRET_BYTES))
        return err_set(err, ST_EPERM, "malformed token");
    k = key_find(snap, id);
    if (!k)
        return err_set(err, ST_EPERM, "unknown or revoked key '%.16s'", token + 3);
    catalog_token_hash(token, len, hash);
    if (sodium_memcmp(hash, k->key->hash, CATALOG_HASH_BYTES) != 0)
        return err_set(err, ST_EPERM, "wrong secret for key '%.16s'", token + 3);
    *tenant = k->tenant;
    *scopes = k->key->scopes;
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Ops: building, checking, encoding, decoding. */

static const char *const op_names[] = {
    [CATALOG_OP_CREATE_TENANT] = "create_tenant",
    [CATALOG_OP_DELETE_TENANT] = "delete_tenant",
    [CATALOG_OP_CREATE_KEY] = "create_key",
    [CATALOG_OP_REVOKE_KEY] = "revoke_key",
    [CATALOG_OP_SET_QUOTAS] = "set_quotas",
    [CATALOG_OP_CREATE_TABLE] = "create_table",
    [CATALOG_OP_DELETE_TABLE] = "delete_table",
    [CATALOG_OP_ADD_SCHEMA_VERSION] = "add_schema_version",
};

void catalog_op_init(struct catalog_op *op)
{
    memset(op, 0, sizeof(*op));
}

void catalog_op_release(struct catalog_op *op)
{
    free(op->tenant);
    free(op->table);
    free(op->key_id);
    catalog_table_def_free(op->def);
    catalog_fields_free(op->fields, op->nfields);
    catalog_op_init(op);
}

static void op_start(struct catalog_op *op, enum catalog_op_type type, const char *tenant)
{
    catalog_op_init(op);
    op->type = type;
    op->tenant = xstrdup(tenant);
}

void catalog_op_create_tenant(struct catalog_op *op, const char *tenant)
{
    op_start(op, CATALOG_OP_CREATE_TENANT, tenant);
}

void catalog_op_delete_tenant(struct catalog_op *op, const char *tenant)
{
    op_start(op, CATALOG_OP_DELETE_TENANT, tenant);
}

void catalog_op_create_key(struct catalog_op *op, const char *tenant, const char *key_id,
                           const uint8_t hash[CATALOG_HASH_BYTES], unsigned scopes)
{
    op_start(op, CATALOG_OP_CREATE_KEY, tenant);
    op->key_id = xstrdup(key_id);
    memcpy(op->key_hash, hash, CATALOG_HASH_BYTES);
    op->scopes = scopes;
}

void catalog_op_revoke_key(struct catalog_op *op, const char *tenant, const char *key_id)
{
    op_start(op, CATALOG_OP_REVOKE_KEY, tenant);
    op->key_id = xstrdup(key_id);
}

void catalog_op_set_quotas(struct catalog_op *op, const char *tenant,
                           const struct catalog_quotas *q)
{
    op_start(op, CATALOG_OP_SET_QUOTAS, tenant);
    op->quotas = *q;
}

void catalog_op_create_table(struct catalog_op *op, const char *tenant,
                             struct catalog_table_def *def)
{
    op_start(op, CATALOG_OP_CREATE_TABLE, tenant);
    op->def = def;
}

void catalog_op_delete_table(struct catalog_op *op, const char *tenant, const char *table)
{
    op_start(op, CATALOG_OP_DELETE_TABLE, tenant);
    op->table = xstrdup(table);
}

void catalog_op_add_schema_version(struct catalog_op *op, const char *tenant, const char *table,
                                   struct field *fields, uint32_t n)
{
    op_start(op, CATALOG_OP_ADD_SCHEMA_VERSION, tenant);
    op->table = xstrdup(table);
    op->fields = fields;
    op->nfields = n;
}

/* Builds the next schema version of tb from fields: the table's key and time field. */
static enum st_status next_schema(const struct catalog_table *tb, const struct field *fields,
                                  uint32_t n, struct schema **out, struct err *err)
{
    const struct schema *cur = catalog_table_schema(tb);
    const char *pk[SCHEMA_MAX_PK];
    const char *tf = cur->time_field >= 0 ? cur->fields[cur->time_field].name : NULL;

    if (!fields || n == 0)
        return err_set(err, ST_EINVAL, "a schema version needs at least one field");
    if (cur->version == UINT32_MAX)
        return err_set(err, ST_EINVAL, "table '%s' has too many schema versions", tb->name);
    for (uint32_t k = 0; k < cur->npk; k++)
        pk[k] = cur->fields[cur->pk[k]].name;
    return schema_new(cur->version + 1, fields, n, pk, cur->npk, tf, out, err);
}

/* ------------------------------------------------------------------ */
/* Schema evolution. */

static const struct field *find_new(const struct field *fields, uint32_t n, const char *name)
{
    int i = find_parsed(fields, n, name);

    return i < 0 ? NULL : &fields[i];
}

/* Why changing old field o into f (same name) is refused, or NULL. */
static const char *field_change_reason(const struct field *o, const struct field *f, char *buf,
                                       size_t n)
{
    if (o->is_pk) {
        if (f->type != o->type) {
            snprintf(buf, n, "primary-key field cannot change type from %s to %s",
                     field_type_name(o->type), field_type_name(f->type));
            return buf;
        }
        if (f->nullable)
            return "primary-key field cannot become nullable";
        if (f->has_default)
            return "primary-key field cannot have a default";
        return NULL;
    }
    if (f->type != o->type && !(o->type == FIELD_INT64 && f->type == FIELD_FLOAT64)) {
        snprintf(buf, n, "type cannot change from %s to %s (only int64 to float64)",
                 field_type_name(o->type), field_type_name(f->type));
        return buf;
    }
    if (o->nullable && !f->nullable)
        return "a nullable field cannot become required (non-nullable)";
    if (!o->nullable && o->has_default && !f->nullable && !f->has_default)
        return "removing the default would make the field required";
    return NULL;
}

uint32_t catalog_schema_compat(const struct schema *old, const struct field *fields, uint32_t n,
                               catalog_compat_fn fn, void *arg)
{
    uint32_t bad = 0;
    char buf[128];

    for (uint32_t i = 0; i < old->nfields; i++) {
        const struct field *o = &old->fields[i];
        const struct field *f = find_new(fields, n, o->name);
        const char *reason;

        if (!f)
            reason = o->is_pk                        ? "primary-key field cannot be removed"
                     : (int32_t)i == old->time_field ? "the time field cannot be removed"
                                                     : NULL;
        else
            reason = field_change_reason(o, f, buf, sizeof(buf));
        if (reason) {
            bad++;
            if (fn)
                fn(arg, o->name, reason);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct field *f = &fields[i];

        /* A duplicate name is schema_new()'s to refuse: look at the first only. */
        if (schema_find_field(old, f->name, strlen(f->name)) >= 0 ||
            find_new(fields, n, f->name) != f)
            continue;
        if (!f->nullable && !f->has_default) {
            bad++;
            if (fn)
                fn(arg, f->name, "a new field must be nullable or have a default");
        }
    }
    return bad;
}

/* Collects the first reason of catalog_schema_compat() into an err. */
struct compat_first {
    char field[SCHEMA_NAME_MAX]; /* the first offending field */
    char reason[160];            /* its reason */
    uint32_t n;                  /* reasons seen */
};

static void compat_first_cb(void *arg, const char *field, const char *reason)
{
    struct compat_first *c = arg;

    if (c->n++ == 0) {
        st_strlcpy(c->field, field, sizeof(c->field));
        st_strlcpy(c->reason, reason, sizeof(c->reason));
    }
}

static enum st_status check_compat(const struct catalog_table *tb, const struct catalog_op *op,
                                   struct err *err)
{
    struct compat_first c;

    memset(&c, 0, sizeof(c));
    if (!catalog_schema_compat(catalog_table_schema(tb), op->fields, op->nfields, compat_first_cb,
                               &c))
        return ST_OK;
    if (c.n == 1)
        return err_set(err, ST_EINVAL, "incompatible schema change: field '%s': %s", c.field,
                       c.reason);
    return err_set(err, ST_EINVAL, "incompatible schema change: field '%s': %s (and %u more)",
                   c.field, c.reason, c.n - 1);
}

static enum st_status check_table(const struct catalog_tenant *t, const char *name,
                                  const struct catalog_table **out, struct err *err)
{
    if (!name || !schema_entity_name_is_valid(name, strlen(name)))
        return err_set(err, ST_EINVAL,
                       "invalid table name '%.64s' (expected [a-z0-9][a-z0-9_-]{0,62})",
                       name ? name : "");
    *out = catalog_tenant_find_table(t, name, strlen(name));
    if (!*out)
        return err_set(err, ST_ENOTFOUND, "table '%s' does not exist in tenant '%s'", name,
                       t->name);
    return ST_OK;
}

/*
 * catalog_check_op(); for add_schema_version, *built (when not NULL)
 * receives the new schema, which the caller then owns.
 */
static enum st_status check(const struct catalog_snap *s, const struct catalog_op *op,
                            struct schema **built, struct err *err)
{
    const struct catalog_tenant *t;
    const struct catalog_table *tb;
    struct schema *schema;
    enum st_status rc;
    uint64_t id;
    uint32_t pos;

    if (built)
        *built = NULL;
    if (op->type <= CATALOG_OP_NONE || op->type > CATALOG_OP_ADD_SCHEMA_VERSION)
        return err_set(err, ST_EINVAL, "unknown catalog op %d", (int)op->type);
    if (!op->tenant || !schema_entity_name_is_valid(op->tenant, strlen(op->tenant)))
        return err_set(err, ST_EINVAL,
                       "invalid tenant name '%.64s' (expected [a-z0-9][a-z0-9_-]{0,62})",
                       op->tenant ? op->tenant : "");
    t = catalog_find_tenant(s, op->tenant, strlen(op->tenant));
    if (op->type == CATALOG_OP_CREATE_TENANT)
        return t ? err_set(err, ST_EEXIST, "tenant '%s' already exists", op->tenant) : ST_OK;
    if (!t)
        return err_set(err, ST_ENOTFOUND, "tenant '%s' does not exist", op->tenant);

    switch (op->type) {
    case CATALOG_OP_DELETE_TENANT:
        return ST_OK;
    case CATALOG_OP_CREATE_KEY:
        if (!op->key_id || !key_id_parse(op->key_id, strlen(op->key_id), &id))
            return err_set(err, ST_EINVAL, "invalid key id '%.64s' (expected 16 hex digits)",
                           op->key_id ? op->key_id : "");
        if (op->scopes == 0 || (op->scopes & ~(unsigned)CATALOG_SCOPE_ALL))
            return err_set(err, ST_EINVAL, "a key needs one or more scopes of read, write, manage");
        if (key_find(s, id))
            return err_set(err, ST_EEXIST, "key '%s' already exists", op->key_id);
        return ST_OK;
    case CATALOG_OP_REVOKE_KEY:
        if (!op->key_id || !key_id_parse(op->key_id, strlen(op->key_id), &id) ||
            !tkey_search(t, id, &pos))
            return err_set(err, ST_ENOTFOUND, "key '%.64s' does not exist in tenant '%s'",
                           op->key_id ? op->key_id : "", t->name);
        return ST_OK;
    case CATALOG_OP_SET_QUOTAS:
        if (op->quotas.max_records_per_sec > JSON_INT_MAX ||
            op->quotas.max_storage_bytes > JSON_INT_MAX)
            return err_set(err, ST_EINVAL, "quotas must be at most %" PRId64, INT64_MAX);
        return ST_OK;
    case CATALOG_OP_CREATE_TABLE:
        if (!op->def || !op->def->schema)
            return err_set(err, ST_EINVAL, "create_table needs a table definition");
        if (!schema_entity_name_is_valid(op->def->name, strlen(op->def->name)))
            return err_set(err, ST_EINVAL, "invalid table name '%s'", op->def->name);
        if (catalog_tenant_find_table(t, op->def->name, strlen(op->def->name)))
            return err_set(err, ST_EEXIST, "table '%s' already exists in tenant '%s'",
                           op->def->name, t->name);
        return ST_OK;
    case CATALOG_OP_DELETE_TABLE:
        return check_table(t, op->table, &tb, err);
    case CATALOG_OP_ADD_SCHEMA_VERSION:
        rc = check_table(t, op->table, &tb, err);
        if (rc)
            return rc;
        rc = next_schema(tb, op->fields, op->nfields, &schema, err);
        if (rc)
            return rc;
        rc = check_compat(tb, op, err);
        if (rc) {
            schema_free(schema);
            return rc;
        }
        if (built)
            *built = schema;
        else
            schema_free(schema);
        return ST_OK;
    case CATALOG_OP_NONE:
    case CATALOG_OP_CREATE_TENANT:
        break;
    }
    ST_BUG("unhandled catalog op %d", (int)op->type);
}

enum st_status catalog_check_op(const struct catalog_snap *snap, const struct catalog_op *op,
                                struct err *err)
{
    return check(snap, op, NULL, err);
}

static json_t *scopes_to_json(unsigned scopes)
{
    json_t *a = json_array();

    for (size_t i = 0; i < ST_ARRAY_SIZE(scope_names); i++)
        if (scopes & (1u << i))
            json_array_append_new(a, jstr(scope_names[i]));
    return a;
}

static bool scopes_from_json(const json_t *a, unsigned *out)
{
    unsigned scopes = 0, flag;

    if (!json_is_array(a))
        return false;
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *name = json_string_value(json_array_get(a, i));

        if (!name || !catalog_scope_parse(name, &flag) || (scopes & flag))
            return false;
        scopes |= flag;
    }
    *out = scopes;
    return scopes != 0;
}

static json_t *hash_to_json(const uint8_t hash[CATALOG_HASH_BYTES])
{
    char hex[2 * CATALOG_HASH_BYTES + 1];

    sodium_bin2hex(hex, sizeof(hex), hash, CATALOG_HASH_BYTES);
    return jstr(hex);
}

static bool hash_from_json(const json_t *v, uint8_t hash[CATALOG_HASH_BYTES])
{
    const char *hex = json_string_value(v);
    size_t n;

    if (!hex || strlen(hex) != 2 * CATALOG_HASH_BYTES || !is_lower_hex(hex, strlen(hex)))
        return false;
    return sodium_hex2bin(hash, CATALOG_HASH_BYTES, hex, strlen(hex), NULL, &n, NULL) == 0 &&
           n == CATALOG_HASH_BYTES;
}

void catalog_op_encode(const struct catalog_op *op, struct strbuf *out)
{
    json_t *o = json_object();
    char *text;

    st_assert(op->type > CATALOG_OP_NONE && op->type <= CATALOG_OP_ADD_SCHEMA_VERSION);
    json_object_set_new(o, "v", json_integer(OP_FORMAT_VERSION));
    json_object_set_new(o, "op", jstr(op_names[op->type]));
    json_object_set_new(o, "tenant", jstr(op->tenant));
    switch (op->type) {
    case CATALOG_OP_CREATE_KEY:
        json_object_set_new(o, "hash", hash_to_json(op->key_hash));
        json_object_set_new(o, "scopes", scopes_to_json(op->scopes));
        /* fall through */
    case CATALOG_OP_REVOKE_KEY:
        json_object_set_new(o, "id", jstr(op->key_id));
        break;
    case CATALOG_OP_SET_QUOTAS:
        json_object_set_new(o, "max_records_per_sec", juint(op->quotas.max_records_per_sec));
        json_object_set_new(o, "max_storage_bytes", juint(op->quotas.max_storage_bytes));
        break;
    case CATALOG_OP_CREATE_TABLE:
        json_object_set_new(o, "def", def_to_json(op->def));
        break;
    case CATALOG_OP_ADD_SCHEMA_VERSION:
        json_object_set_new(o, "fields", fields_to_json(op->fields, op->nfields, true));
        /* fall through */
    case CATALOG_OP_DELETE_TABLE:
        json_object_set_new(o, "table", jstr(op->table));
        break;
    case CATALOG_OP_NONE:
    case CATALOG_OP_CREATE_TENANT:
    case CATALOG_OP_DELETE_TENANT:
        break;
    }
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    st_assert(text);
    strbuf_addstr(out, text);
    free(text);
    json_decref(o);
}

/* The body of catalog_op_decode() once the JSON parsed; op is initialised. */
static enum st_status decode_op(const json_t *o, struct catalog_op *op, struct err *err)
{
    const char *name = get_str(o, "op"), *s;
    struct err e2;
    uint64_t v;
    enum st_status rc;

    if (!get_u64(o, "v", &v) || v != OP_FORMAT_VERSION)
        return err_set(err, ST_ECORRUPT, "catalog op has no supported format version");
    for (size_t i = 1; name && i < ST_ARRAY_SIZE(op_names); i++)
        if (!strcmp(name, op_names[i]))
            op->type = (enum catalog_op_type)i;
    if (op->type == CATALOG_OP_NONE)
        return err_set(err, ST_ECORRUPT, "catalog op of unknown type");
    if (!(s = get_str(o, "tenant")))
        return err_set(err, ST_ECORRUPT, "catalog op without a tenant");
    op->tenant = xstrdup(s);
    switch (op->type) {
    case CATALOG_OP_CREATE_KEY:
        if (!hash_from_json(json_object_get(o, "hash"), op->key_hash) ||
            !scopes_from_json(json_object_get(o, "scopes"), &op->scopes))
            return err_set(err, ST_ECORRUPT, "create_key op with a bad hash or scopes");
        /* fall through */
    case CATALOG_OP_REVOKE_KEY:
        if (!(s = get_str(o, "id")))
            return err_set(err, ST_ECORRUPT, "%s op without a key id", name);
        op->key_id = xstrdup(s);
        return ST_OK;
    case CATALOG_OP_SET_QUOTAS:
        if (!get_u64(o, "max_records_per_sec", &op->quotas.max_records_per_sec) ||
            !get_u64(o, "max_storage_bytes", &op->quotas.max_storage_bytes))
            return err_set(err, ST_ECORRUPT, "set_quotas op with bad quotas");
        return ST_OK;
    case CATALOG_OP_CREATE_TABLE:
        rc = parse_def(json_object_get(o, "def"), true, &op->def, &e2);
        return rc ? err_set(err, ST_ECORRUPT, "create_table op with a bad definition: %s", e2.msg)
                  : ST_OK;
    case CATALOG_OP_ADD_SCHEMA_VERSION:
        rc = parse_fields(json_object_get(o, "fields"), true, &op->fields, &op->nfields, &e2);
        if (rc)
            return err_set(err, ST_ECORRUPT, "add_schema_version op with bad fields: %s", e2.msg);
        /* fall through */
    case CATALOG_OP_DELETE_TABLE:
        if (!(s = get_str(o, "table")))
            return err_set(err, ST_ECORRUPT, "%s op without a table", name);
        op->table = xstrdup(s);
        return ST_OK;
    case CATALOG_OP_NONE:
    case CATALOG_OP_CREATE_TENANT:
    case CATALOG_OP_DELETE_TENANT:
        break;
    }
    return ST_OK;
}

enum st_status catalog_op_decode(const void *bytes, size_t len, struct catalog_op *op,
                                 struct err *err)
{
    json_error_t jerr;
    json_t *o;
    enum st_status rc;

    catalog_op_init(op);
    o = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        return err_set(err, ST_ECORRUPT, "catalog op is not valid JSON: %s", jerr.text);
    if (!json_is_object(o)) {
        rc = err_set(err, ST_ECORRUPT, "catalog op is not a JSON object");
    } else {
        rc = decode_op(o, op, err);
    }
    json_decref(o);
    if (rc)
        catalog_op_release(op);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Applying ops. */

/* Replaces the tenant at pos in s by t (the snapshot's reference moves to t). */
static void snap_put_tenant(struct catalog_snap *s, uint32_t pos, struct catalog_tenant *t)
{
    tenant_unref(s->tenants[pos]);
    s->tenants[pos] = t;
}

/*
 * Applies a checked op to s, a fresh copy of the current snapshot. Takes
 * ownership of built (the new schema of add_schema_version).
 */
static void mutate(struct catalog_snap *s, struct catalog_op *op, struct schema *built, uint64_t cv)
{
    struct catalog_tenant *t = NULL;
    struct catalog_table *tb;
    uint32_t pos, tpos;
    uint64_t id;
    bool found = tenant_search(s, op->tenant, strlen(op->tenant), &pos);

    st_assert(found == (op->type != CATALOG_OP_CREATE_TENANT));
    if (op->type == CATALOG_OP_CREATE_TENANT) {
        t = xcalloc(1, sizeof(*t));
        atomic_init(&t->refs, 1);
        t->id = s->next_tenant_id++;
        t->created_version = cv;
        st_strlcpy(t->name, op->tenant, sizeof(t->name));
        memmove(&s->tenants[pos + 1], &s->tenants[pos], (s->ntenants - pos) * sizeof(*s->tenants));
        s->tenants[pos] = t;
        s->ntenants++;
        return;
    }
    if (op->type == CATALOG_OP_DELETE_TENANT) {
        tenant_unref(s->tenants[pos]);
        memmove(&s->tenants[pos], &s->tenants[pos + 1],
                (s->ntenants - pos - 1) * sizeof(*s->tenants));
        s->ntenants--;
        return;
    }

    t = tenant_clone(s->tenants[pos]);
    switch (op->type) {
    case CATALOG_OP_CREATE_KEY:
        st_assert(key_id_parse(op->key_id, strlen(op->key_id), &id));
        st_assert(!tkey_search(t, id, &tpos));
        memmove(&t->keys[tpos + 1], &t->keys[tpos], (t->nkeys - tpos) * sizeof(*t->keys));
        t->keys[tpos] = (struct tkey){.id = id, .scopes = op->scopes, .created_version = cv};
        memcpy(t->keys[tpos].hash, op->key_hash, CATALOG_HASH_BYTES);
        t->nkeys++;
        break;
    case CATALOG_OP_REVOKE_KEY:
        st_assert(key_id_parse(op->key_id, strlen(op->key_id), &id));
        st_assert(tkey_search(t, id, &tpos));
        memmove(&t->keys[tpos], &t->keys[tpos + 1], (t->nkeys - tpos - 1) * sizeof(*t->keys));
        t->nkeys--;
        sodium_memzero(&t->keys[t->nkeys], sizeof(t->keys[t->nkeys]));
        break;
    case CATALOG_OP_SET_QUOTAS:
        t->quotas = op->quotas;
        break;
    case CATALOG_OP_CREATE_TABLE:
        st_assert(!table_search(t, op->def->name, strlen(op->def->name), &tpos));
        tb = xcalloc(1, sizeof(*tb));
        atomic_init(&tb->refs, 1);
        tb->id = s->next_table_id++;
        tb->tenant_id = t->id;
        tb->created_version = cv;
        st_strlcpy(tb->tenant, t->name, sizeof(tb->tenant));
        st_strlcpy(tb->name, op->def->name, sizeof(tb->name));
        st_strlcpy(tb->retention, op->def->retention, sizeof(tb->retention));
        tb->retention_ms = op->def->retention_ms;
        tb->nversions = 1;
        tb->versions = calloc_array(1, sizeof(*tb->versions));
        tb->versions[0] = sver_new(op->def->schema, cv);
        op->def->schema = NULL; /* the table owns it now */
        memmove(&t->tables[tpos + 1], &t->tables[tpos], (t->ntables - tpos) * sizeof(*t->tables));
        t->tables[tpos] = tb;
        t->ntables++;
        break;
    case CATALOG_OP_DELETE_TABLE:
        st_assert(table_search(t, op->table, strlen(op->table), &tpos));
        table_unref(t->tables[tpos]);
        memmove(&t->tables[tpos], &t->tables[tpos + 1],
                (t->ntables - tpos - 1) * sizeof(*t->tables));
        t->ntables--;
        break;
    case CATALOG_OP_ADD_SCHEMA_VERSION:
        st_assert(built && table_search(t, op->table, strlen(op->table), &tpos));
        tb = table_clone(t->tables[tpos]);
        tb->versions[tb->nversions++] = sver_new(built, cv);
        built = NULL;
        table_unref(t->tables[tpos]);
        t->tables[tpos] = tb;
        break;
    case CATALOG_OP_NONE:
    case CATALOG_OP_CREATE_TENANT:
    case CATALOG_OP_DELETE_TENANT:
        ST_BUG("unhandled catalog op %d", (int)op->type);
    }
    st_assert(!built);
    snap_put_tenant(s, pos, t);
}

/* Makes next the current snapshot (takes the caller's reference). */
static void publish(struct catalog *cat, struct catalog_snap *next)
{
    struct catalog_snap *old;

    pthread_mutex_lock(&cat->lock);
    old = cat->cur;
    cat->cur = next;
    pthread_mutex_unlock(&cat->lock);
    catalog_release(old);
}

enum st_status catalog_apply(struct catalog *cat, const void *bytes, size_t len,
                             uint64_t commit_version, struct err *err)
{
    struct catalog_op op;
    struct catalog_snap *cur, *next;
    struct schema *built;
    enum st_status rc;

    if (commit_version > JSON_INT_MAX)
        return err_set(err, ST_EINVAL, "commit version %" PRIu64 " is out of range",
                       commit_version);
    rc = catalog_op_decode(bytes, len, &op, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&cat->wlock);
    cur = cat->cur; /* only wlock holders change cur */
    if (commit_version <= cur->version)
        goto out_unlock; /* already reflected (replay over a checkpoint) */
    rc = check(cur, &op, &built, err);
    if (rc)
        goto out_unlock;
    next = snap_clone(cur);
    mutate(next, &op, built, commit_version);
    next->version = commit_version;
    snap_index(next);
    publish(cat, next);

out_unlock:
    pthread_mutex_unlock(&cat->wlock);
    catalog_op_release(&op);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The catalog. */

static struct catalog *catalog_wrap(struct catalog_snap *snap)
{
    struct catalog *cat = xcalloc(1, sizeof(*cat));

    if (sodium_init() < 0)
        ST_BUG("libsodium cannot be initialised");
    pthread_mutex_init(&cat->lock, NULL);
    pthread_mutex_init(&cat->wlock, NULL);
    cat->cur = snap;
    return cat;
}

struct catalog *catalog_new(void)
{
    struct catalog_snap *s = snap_new();

    snap_index(s);
    return catalog_wrap(s);
}

void catalog_free(struct catalog *cat)
{
    if (!cat)
        return;
    catalog_release(cat->cur);
    pthread_mutex_destroy(&cat->lock);
    pthread_mutex_destroy(&cat->wlock);
    free(cat);
}

struct catalog_snap *catalog_acquire(struct catalog *cat)
{
    struct catalog_snap *s;

    pthread_mutex_lock(&cat->lock);
    s = cat->cur;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&cat->lock);
    return s;
}

void catalog_release(struct catalog_snap *snap)
{
    if (snap && atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) == 1)
        snap_free(snap);
}

/* ------------------------------------------------------------------ */
/* Checkpoint: JSON form. */

static json_t *table_to_ckpt(const struct catalog_table *tb)
{
    const struct schema *s = catalog_table_schema(tb);
    json_t *o = json_object();
    json_t *versions = json_array();

    json_object_set_new(o, "name", jstr(tb->name));
    json_object_set_new(o, "id", juint(tb->id));
    json_object_set_new(o, "created_version", juint(tb->created_version));
    json_object_set_new(o, "primary_key", pk_to_json(s));
    if (s->time_field >= 0)
        json_object_set_new(o, "time_field", jstr(s->fields[s->time_field].name));
    if (tb->retention[0])
        json_object_set_new(o, "retention", jstr(tb->retention));
    for (uint32_t i = 0; i < tb->nversions; i++) {
        const struct sver *sv = tb->versions[i];
        json_t *v = json_object();

        json_object_set_new(v, "version", json_integer(sv->schema->version));
        json_object_set_new(v, "commit_version", juint(sv->commit_version));
        json_object_set_new(v, "fields",
                            fields_to_json(sv->schema->fields, sv->schema->nfields, true));
        json_array_append_new(versions, v);
    }
    json_object_set_new(o, "versions", versions);
    return o;
}

static json_t *tenant_to_ckpt(const struct catalog_tenant *t)
{
    json_t *o = json_object();
    json_t *q = json_object();
    json_t *keys = json_array();
    json_t *tables = json_array();
    char id[CATALOG_KEY_ID_LEN + 1];

    json_object_set_new(o, "name", jstr(t->name));
    json_object_set_new(o, "id", juint(t->id));
    json_object_set_new(o, "created_version", juint(t->created_version));
    json_object_set_new(q, "max_records_per_sec", juint(t->quotas.max_records_per_sec));
    json_object_set_new(q, "max_storage_bytes", juint(t->quotas.max_storage_bytes));
    json_object_set_new(o, "quotas", q);
    for (uint32_t i = 0; i < t->nkeys; i++) {
        json_t *k = json_object();

        key_id_format(t->keys[i].id, id);
        json_object_set_new(k, "id", jstr(id));
        json_object_set_new(k, "hash", hash_to_json(t->keys[i].hash));
        json_object_set_new(k, "scopes", scopes_to_json(t->keys[i].scopes));
        json_object_set_new(k, "created_version", juint(t->keys[i].created_version));
        json_array_append_new(keys, k);
    }
    json_object_set_new(o, "keys", keys);
    for (uint32_t i = 0; i < t->ntables; i++)
        json_array_append_new(tables, table_to_ckpt(t->tables[i]));
    json_object_set_new(o, "tables", tables);
    return o;
}

struct json_t *catalog_snap_to_json(const struct catalog_snap *snap)
{
    json_t *o = json_object();
    json_t *tenants = json_array();

    json_object_set_new(o, "format", jstr(CKPT_FORMAT_NAME));
    json_object_set_new(o, "v", json_integer(CKPT_FORMAT_VERSION));
    json_object_set_new(o, "version", juint(snap->version));
    json_object_set_new(o, "next_tenant_id", juint(snap->next_tenant_id));
    json_object_set_new(o, "next_table_id", juint(snap->next_table_id));
    for (uint32_t i = 0; i < snap->ntenants; i++)
        json_array_append_new(tenants, tenant_to_ckpt(snap->tenants[i]));
    json_object_set_new(o, "tenants", tenants);
    return o;
}

#define corrupt(err, ...) err_set(err, ST_ECORRUPT, "catalog checkpoint: " __VA_ARGS__)

static enum st_status table_from_ckpt(const json_t *o, const struct catalog_tenant *t,
                                      const struct catalog_snap *s, struct catalog_table **out,
                                      struct err *err)
{
    const char *name = get_str(o, "name"), *tf = NULL, *ret;
    const json_t *jpk = json_object_get(o, "primary_key");
    const json_t *versions = json_object_get(o, "versions");
    const char *pk[SCHEMA_MAX_PK];
    struct catalog_table *tb;
    size_t npk = json_array_size(jpk), nv = json_array_size(versions);
    struct err e2;

    *out = NULL;
    if (!name || !schema_entity_name_is_valid(name, strlen(name)))
        return corrupt(err, "bad table name in tenant '%s'", t->name);
    if (!json_is_array(jpk) || npk == 0 || npk > SCHEMA_MAX_PK)
        return corrupt(err, "table '%s' has a bad primary key", name);
    for (size_t k = 0; k < npk; k++)
        if (!(pk[k] = json_string_value(json_array_get(jpk, k))))
            return corrupt(err, "table '%s' has a bad primary key", name);
    if (json_object_get(o, "time_field") && !(tf = get_str(o, "time_field")))
        return corrupt(err, "table '%s' has a bad time field", name);
    if (!json_is_array(versions) || nv == 0 || nv > UINT32_MAX)
        return corrupt(err, "table '%s' has no schema versions", name);

    tb = xcalloc(1, sizeof(*tb));
    atomic_init(&tb->refs, 1);
    tb->tenant_id = t->id;
    st_strlcpy(tb->tenant, t->name, sizeof(tb->tenant));
    st_strlcpy(tb->name, name, sizeof(tb->name));
    tb->versions = calloc_array(nv, sizeof(*tb->versions));
    if (!get_u64(o, "id", &tb->id) || tb->id == 0 || tb->id >= s->next_table_id ||
        !get_u64(o, "created_version", &tb->created_version)) {
        corrupt(err, "table '%s' has a bad id or created_version", name);
        goto err_free;
    }
    if ((ret = get_str(o, "retention"))) {
        if (strlen(ret) >= CATALOG_RETENTION_MAX ||
            !config_parse_duration_ms(ret, &tb->retention_ms) || tb->retention_ms == 0 || !tf) {
            corrupt(err, "table '%s' has a bad retention", name);
            goto err_free;
        }
        st_strlcpy(tb->retention, ret, sizeof(tb->retention));
    } else if (json_object_get(o, "retention")) {
        corrupt(err, "table '%s' has a bad retention", name);
        goto err_free;
    }
    for (size_t i = 0; i < nv; i++) {
        const json_t *v = json_array_get(versions, i);
        struct field *fields;
        struct schema *schema;
        uint32_t n;
        uint64_t ver, cv;

        if (!get_u64(v, "version", &ver) || ver != i + 1 || !get_u64(v, "commit_version", &cv) ||
            parse_fields(json_object_get(v, "fields"), true, &fields, &n, &e2)) {
            corrupt(err, "table '%s' has a bad schema version %zu", name, i + 1);
            goto err_free;
        }
        if (schema_new((uint32_t)ver, fields, n, pk, (uint32_t)npk, tf, &schema, &e2)) {
            catalog_fields_free(fields, n);
            corrupt(err, "table '%s' schema version %zu: %s", name, i + 1, e2.msg);
            goto err_free;
        }
        catalog_fields_free(fields, n);
        tb->versions[tb->nversions++] = sver_new(schema, cv);
    }
    *out = tb;
    return ST_OK;

err_free:
    table_unref(tb);
    return ST_ECORRUPT;
}

static int tenant_name_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct catalog_tenant *const *)a)->name,
                  (*(const struct catalog_tenant *const *)b)->name);
}

static int table_name_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct catalog_table *const *)a)->name,
                  (*(const struct catalog_table *const *)b)->name);
}

static int tkey_cmp(const void *a, const void *b)
{
    const struct tkey *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

static enum st_status keys_from_ckpt(const json_t *keys, struct catalog_tenant *t, struct err *err)
{
    size_t n = json_array_size(keys);

    if (!json_is_array(keys) || n > UINT32_MAX)
        return corrupt(err, "tenant '%s' has no key list", t->name);
    t->keys = calloc_array(n + 1, sizeof(*t->keys));
    for (size_t i = 0; i < n; i++) {
        const json_t *k = json_array_get(keys, i);
        const char *id = get_str(k, "id");
        struct tkey *key = &t->keys[t->nkeys];

        if (!id || !key_id_parse(id, strlen(id), &key->id) ||
            !hash_from_json(json_object_get(k, "hash"), key->hash) ||
            !scopes_from_json(json_object_get(k, "scopes"), &key->scopes) ||
            !get_u64(k, "created_version", &key->created_version))
            return corrupt(err, "tenant '%s' has a bad key", t->name);
        t->nkeys++;
    }
    qsort(t->keys, t->nkeys, sizeof(*t->keys), tkey_cmp);
    return ST_OK;
}

static enum st_status tenant_from_ckpt(const json_t *o, const struct catalog_snap *s,
                                       struct catalog_tenant **out, struct err *err)
{
    const char *name = get_str(o, "name");
    const json_t *q = json_object_get(o, "quotas");
    const json_t *tables = json_object_get(o, "tables");
    struct catalog_tenant *t;
    size_t nt = json_array_size(tables);
    enum st_status rc;

    *out = NULL;
    if (!name || !schema_entity_name_is_valid(name, strlen(name)))
        return corrupt(err, "bad tenant name");
    t = xcalloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    st_strlcpy(t->name, name, sizeof(t->name));
    if (!get_u64(o, "id", &t->id) || t->id == 0 || t->id >= s->next_tenant_id ||
        !get_u64(o, "created_version", &t->created_version) ||
        !get_u64(q, "max_records_per_sec", &t->quotas.max_records_per_sec) ||
        !get_u64(q, "max_storage_bytes", &t->quotas.max_storage_bytes)) {
        rc = corrupt(err, "tenant '%s' has a bad id, created_version or quotas", name);
        goto err_free;
    }
    rc = keys_from_ckpt(json_object_get(o, "keys"), t, err);
    if (rc)
        goto err_free;
    if (!json_is_array(tables) || nt > UINT32_MAX) {
        rc = corrupt(err, "tenant '%s' has no table list", name);
        goto err_free;
    }
    t->tables = calloc_array(nt + 1, sizeof(*t->tables));
    for (size_t i = 0; i < nt; i++) {
        rc = table_from_ckpt(json_array_get(tables, i), t, s, &t->tables[t->ntables], err);
        if (rc)
            goto err_free;
        t->ntables++;
    }
    qsort(t->tables, t->ntables, sizeof(*t->tables), table_name_cmp);
    for (uint32_t i = 1; i < t->ntables; i++) {
        if (!strcmp(t->tables[i - 1]->name, t->tables[i]->name)) {
            rc = corrupt(err, "tenant '%s' has table '%s' twice", name, t->tables[i]->name);
            goto err_free;
        }
    }
    *out = t;
    return ST_OK;

err_free:
    tenant_unref(t);
    return rc;
}

/* Duplicate names and ids anywhere in a loaded snapshot. */
static enum st_status snap_check_unique(const struct catalog_snap *s, struct err *err)
{
    for (uint32_t i = 1; i < s->ntenants; i++)
        if (!strcmp(s->tenants[i - 1]->name, s->tenants[i]->name))
            return corrupt(err, "tenant '%s' appears twice", s->tenants[i]->name);
    for (uint32_t i = 0; i < s->ntenants; i++)
        for (uint32_t j = i + 1; j < s->ntenants; j++)
            if (s->tenants[i]->id == s->tenants[j]->id)
                return corrupt(err, "tenant id %" PRIu64 " appears twice", s->tenants[i]->id);
    for (uint32_t i = 1; i < s->nkeys; i++)
        if (s->keys[i - 1].id == s->keys[i].id)
            return corrupt(err, "key id %016" PRIx64 " appears twice", s->keys[i].id);
    for (uint32_t i = 1; i < s->ntables; i++)
        if (s->by_id[i - 1]->id == s->by_id[i]->id)
            return corrupt(err, "table id %" PRIu64 " appears twice", s->by_id[i]->id);
    return ST_OK;
}

static enum st_status snap_from_json(const json_t *o, struct catalog_snap **out, struct err *err)
{
    const json_t *tenants = json_object_get(o, "tenants");
    const char *format = get_str(o, "format");
    struct catalog_snap *s;
    size_t n = json_array_size(tenants);
    uint64_t v;
    enum st_status rc;

    *out = NULL;
    if (!format || strcmp(format, CKPT_FORMAT_NAME) || !get_u64(o, "v", &v) ||
        v != CKPT_FORMAT_VERSION)
        return corrupt(err, "not a catalog checkpoint of a supported format version");
    if (!json_is_array(tenants) || n > UINT32_MAX)
        return corrupt(err, "no tenant list");
    s = snap_new();
    if (!get_u64(o, "version", &s->version) || !get_u64(o, "next_tenant_id", &s->next_tenant_id) ||
        !get_u64(o, "next_table_id", &s->next_table_id) || s->next_tenant_id == 0 ||
        s->next_table_id == 0) {
        rc = corrupt(err, "bad version or id counters");
        goto err_free;
    }
    s->tenants = calloc_array(n + 1, sizeof(*s->tenants));
    for (size_t i = 0; i < n; i++) {
        rc = tenant_from_ckpt(json_array_get(tenants, i), s, &s->tenants[s->ntenants], err);
        if (rc)
            goto err_free;
        s->ntenants++;
    }
    qsort(s->tenants, s->ntenants, sizeof(*s->tenants), tenant_name_cmp);
    snap_index(s);
    rc = snap_check_unique(s, err);
    if (rc)
        goto err_free;
    *out = s;
    return ST_OK;

err_free:
    snap_free(s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Checkpoint: files. */

enum st_status catalog_save(const struct catalog_snap *snap, struct fs *fs, const char *path,
                            struct err *err)
{
    json_t *o = catalog_snap_to_json(snap);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    enum st_status rc;
    size_t len;

    json_decref(o);
    st_assert(text);
    len = strlen(text);
    text[len] = '\n'; /* the NUL is no longer needed: write len + 1 bytes */
    rc = fs_write_atomic(fs ? fs : fs_posix(), path, text, len + 1, 0644, err);
    free(text);
    return rc;
}

enum st_status catalog_load(struct fs *fs, const char *path, struct catalog **out, struct err *err)
{
    struct catalog_snap *s;
    json_error_t jerr;
    json_t *o;
    char *text = NULL;
    size_t len = 0;
    enum st_status rc;

    *out = NULL;
    if (!fs)
        fs = fs_posix();
    rc = fs_read_all(fs, path, &text, &len, err);
    if (rc == ST_ENOTFOUND)
        return err_set(err, ST_ENOTFOUND, "no catalog checkpoint at '%s'", path);
    if (rc)
        return rc;
    o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return err_set(err, ST_ECORRUPT, "catalog checkpoint '%s' is not a JSON object: %s", path,
                       o ? "" : jerr.text);
    }
    rc = snap_from_json(o, &s, err);
    json_decref(o);
    if (rc)
        return rc;
    *out = catalog_wrap(s);
    return ST_OK;
}

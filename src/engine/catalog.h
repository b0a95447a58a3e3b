/*
 * The catalog: tenants, their API keys and quotas, and their tables with
 * versioned schemas.
 *
 * Readers see immutable, reference-counted versions of the catalog
 * (struct catalog_snap): catalog_acquire() takes the current one,
 * catalog_release() drops it. Every pointer obtained from a snapshot
 * (tenants, tables, schemas, names) is borrowed until that snapshot is
 * released, and never changes meanwhile.
 *
 * Changes are ops (struct catalog_op). The life of one change:
 *
 *   1. build the op (catalog_op_create_tenant(), ...);
 *   2. catalog_check_op() against a current snapshot: names, existence,
 *      duplicates, the schema (ST_EINVAL, ST_ENOTFOUND, ST_EEXIST);
 *   3. catalog_op_encode() to bytes, and make them durable in the WAL
 *      (WAL_REC_CATALOG, with a fresh commit version);
 *   4. catalog_apply() of those bytes, which publishes a new snapshot.
 *
 * Replay after a restart runs only step 4, with the bytes and commit
 * versions read back from the WAL, on the catalog loaded from the last
 * checkpoint (catalog_load()), and so reproduces the state exactly.
 *
 * Commit versions of catalog ops must strictly increase in WAL order, and
 * ops must be applied in WAL order. catalog_apply() ignores an op whose
 * commit version is not above the catalog's version (the checkpoint
 * already holds it), so replaying a WAL that overlaps the checkpoint is
 * safe. An op that was checked against an older snapshot may no longer
 * apply when its turn comes (another op created the same table first):
 * catalog_apply() then changes nothing and returns the check's status,
 * and replay does the same, so the state stays deterministic. Callers
 * should still serialise check, log and apply so that clients get the
 * precise answer before anything is logged.
 *
 * Formats (ops, checkpoint) are JSON; see catalog.c and
 * docs/storage-format.md, section "Catalog".
 */
#ifndef ST_ENGINE_CATALOG_H
#define ST_ENGINE_CATALOG_H

#include "engine/schema.h"
#include "util/strbuf.h"

struct fs;
struct json_t;

struct catalog;
struct catalog_snap;
struct catalog_tenant;
struct catalog_table;

#define CATALOG_KEY_ID_LEN    16 /* hex digits in a key id */
#define CATALOG_SECRET_BYTES  32 /* random bytes in a token's secret */
#define CATALOG_TOKEN_LEN     84 /* "sk_" + 16 hex + "_" + 64 hex */
#define CATALOG_HASH_BYTES    32 /* BLAKE2b-256 of the whole token */
#define CATALOG_RETENTION_MAX 32 /* retention text, NUL included */

/* Scopes of a tenant key. */
enum catalog_scope_flags {
    CATALOG_SCOPE_READ = 1 << 0,   /* reads, queries, snapshots, table listing */
    CATALOG_SCOPE_WRITE = 1 << 1,  /* ingest, deletes, transactions */
    CATALOG_SCOPE_MANAGE = 1 << 2, /* create, change and delete tables */
    CATALOG_SCOPE_ALL = (1 << 3) - 1,
};

/* "read", "write", "manage" to its flag; false when unknown. */
bool catalog_scope_parse(const char *name, unsigned *flag);
/* The name of one flag, or NULL when flag is not exactly one scope. */
const char *catalog_scope_name(unsigned flag);

/* Per-tenant limits; 0 is unlimited. Stored only: enforced elsewhere. */
struct catalog_quotas {
    uint64_t max_records_per_sec; /* ingest rate, records per second */
    uint64_t max_storage_bytes;   /* bytes on disk */
};

/* What a key listing shows: never the hash. */
struct catalog_key_info {
    char id[CATALOG_KEY_ID_LEN + 1]; /* 16 lowercase hex digits */
    unsigned scopes;                 /* enum catalog_scope_flags */
    uint64_t created_version;        /* commit version of its create_key */
};

/* ------------------------------------------------------------------ */
/* The catalog and its snapshots. */

/* An empty catalog at version 0. Caller frees with catalog_free(). */
struct catalog *catalog_new(void);
/*
 * Frees the catalog and drops its reference to the current snapshot;
 * snapshots still acquired stay valid until released.
 */
void catalog_free(struct catalog *cat);

/* The current snapshot, with a reference; any thread. Never NULL. */
struct catalog_snap *catalog_acquire(struct catalog *cat);
/* Drops a reference taken by catalog_acquire(); any thread; NULL is fine. */
void catalog_release(struct catalog_snap *snap);

/* The commit version of the last op the snapshot reflects (0: none). */
uint64_t catalog_snap_version(const struct catalog_snap *snap);

/* Tenants in name order: i < catalog_ntenants(). */
uint32_t catalog_ntenants(const struct catalog_snap *snap);
const struct catalog_tenant *catalog_tenant_at(const struct catalog_snap *snap, uint32_t i);

/* Lookups for the hot path, O(log n); NULL when absent. */
const struct catalog_tenant *catalog_find_tenant(const struct catalog_snap *snap, const char *name,
                                                 size_t len);
const struct catalog_table *catalog_find_table(const struct catalog_snap *snap, const char *tenant,
                                               size_t tlen, const char *table, size_t len);
const struct catalog_table *catalog_tenant_find_table(const struct catalog_tenant *t,
                                                      const char *name, size_t len);
/* A table by its internal id (replay, flush, compaction). */
const struct catalog_table *catalog_find_table_by_id(const struct catalog_snap *snap, uint64_t id);

/* Tenants. */
const char *catalog_tenant_name(const struct catalog_tenant *t);
/* Internal id: unique for the life of the data directory, never reused. */
uint64_t catalog_tenant_id(const struct catalog_tenant *t);
struct catalog_quotas catalog_tenant_quotas(const struct catalog_tenant *t);
/* Keys in id order: i < catalog_tenant_nkeys(). */
uint32_t catalog_tenant_nkeys(const struct catalog_tenant *t);
void catalog_tenant_key(const struct catalog_tenant *t, uint32_t i,
                        struct catalog_key_info *out /* OUT */);
/* Tables in name order: i < catalog_tenant_ntables(). */
uint32_t catalog_tenant_ntables(const struct catalog_tenant *t);
const struct catalog_table *catalog_tenant_table(const struct catalog_tenant *t, uint32_t i);

/* Tables. */
const char *catalog_table_name(const struct catalog_table *tb);
/*
 * Internal id: unique for the life of the data directory and never
 * reused, so data of a deleted table can never show up under a new table
 * of the same name. Data on disk is keyed by it, not by names.
 */
uint64_t catalog_table_id(const struct catalog_table *tb);
/* The owning tenant's name and id. */
const char *catalog_table_tenant(const struct catalog_table *tb);
uint64_t catalog_table_tenant_id(const struct catalog_table *tb);
/* Commit version of the create_table op. */
uint64_t catalog_table_created_version(const struct catalog_table *tb);
/* Retention in ms (0: none) and as written ("" when none). */
uint64_t catalog_table_retention_ms(const struct catalog_table *tb);
const char *catalog_table_retention(const struct catalog_table *tb);
/* The newest schema; its version is the table's schema version. */
const struct schema *catalog_table_schema(const struct catalog_table *tb);
/* Schema version v (1 .. newest), or NULL. */
const struct schema *catalog_table_schema_version(const struct catalog_table *tb, uint32_t v);
/* Commit version of the op that added schema version v, or 0 if none. */
uint64_t catalog_table_schema_commit(const struct catalog_table *tb, uint32_t v);

/*
 * The table for GET answers, in the table-definition form of the API:
 * {"name", "fields" (newest version), "primary_key", "time_field",
 * "retention", "schema_version", "schema_versions": [{"version",
 * "fields"}, ...]}; timestamp defaults as RFC 3339 with ms (UTC), json
 * defaults as JSON values. Caller frees with json_decref().
 */
struct json_t *catalog_table_to_json(const struct catalog_table *tb);

/*
 * Appends v as compact JSON text: object members in their order, strings
 * escaped as strbuf_add_json_str() does, reals in the fewest digits that
 * read back to the same double ("0.1", not json_dumps()'s
 * "0.10000000000000001"; ".0" added when it would look like an integer).
 * Used for json defaults and by the API for records inside requests.
 */
void catalog_json_compact(const struct json_t *v, struct strbuf *out);

/* ------------------------------------------------------------------ */
/* Table definitions (POST /v1/tenants/{tenant}/tables). */

struct catalog_table_def {
    char name[SCHEMA_NAME_MAX];            /* table name */
    struct schema *schema;                 /* version 1; owned */
    char retention[CATALOG_RETENTION_MAX]; /* as written, "" when none */
    uint64_t retention_ms;                 /* 0 when none */
};

/*
 * Parses and validates a table definition (a JSON object, see API.md):
 * name, fields (name, type, nullable, default matching the type;
 * timestamps as RFC 3339 or epoch ms), primary_key (1 to SCHEMA_MAX_PK
 * required, non-json fields, in key order), time_field (optional, a
 * timestamp field) and retention (optional duration such as "90d"; needs
 * a time_field). Unknown keys are refused. On ST_EINVAL err names the
 * offending part, e.g. "field 'delay': default must be an int64". On
 * ST_OK the caller frees *out with catalog_table_def_free().
 */
enum st_status catalog_table_def_parse(const struct json_t *def,
                                       struct catalog_table_def **out /* OUT */, struct err *err);
/* The same from JSON text (len bytes); invalid JSON is ST_EINVAL too. */
enum st_status catalog_table_def_parse_text(const char *text, size_t len,
                                            struct catalog_table_def **out /* OUT */,
                                            struct err *err);
void catalog_table_def_free(struct catalog_table_def *def);

/*
 * Parses a field list (the body of PUT .../schema is {"fields": [...]})
 * into *fields, *n: syntax, names, types and defaults are checked here;
 * the rest (duplicates, key fields) by catalog_check_op(). The caller
 * frees with catalog_fields_free(), or hands the list to
 * catalog_op_add_schema_version().
 */
enum st_status catalog_fields_parse(const struct json_t *fields, struct field **out /* OUT */,
                                    uint32_t *n /* OUT */, struct err *err);
void catalog_fields_free(struct field *fields, uint32_t n);

/* ------------------------------------------------------------------ */
/* API keys. */

/*
 * Makes a new key: token (NUL-terminated) is "sk_" + id + "_" + 64 hex
 * digits of CATALOG_SECRET_BYTES random bytes (libsodium randombytes_buf),
 * id its 16 hex digits, hash what the catalog stores. The token is shown
 * to the client once and kept nowhere.
 */
void catalog_key_generate(char token[CATALOG_TOKEN_LEN + 1] /* OUT */,
                          char id[CATALOG_KEY_ID_LEN + 1] /* OUT */,
                          uint8_t hash[CATALOG_HASH_BYTES] /* OUT */);
/* The stored hash of a token (len bytes): unkeyed BLAKE2b-256. */
void catalog_token_hash(const char *token, size_t len, uint8_t hash[CATALOG_HASH_BYTES] /* OUT */);

/*
 * Authenticates a tenant token (len bytes): finds its key by the id in
 * the token and compares hashes in constant time. On ST_OK *tenant is the
 * key's tenant (borrowed from snap) and *scopes its scopes; the caller
 * still checks that the tenant is the one in the path. Every failure
 * (malformed token, unknown or revoked key, wrong secret) is ST_EPERM,
 * with the reason in err for the log, not for the client (answer 401).
 */
enum st_status catalog_key_authenticate(const struct catalog_snap *snap, const char *token,
                                        size_t len, const struct catalog_tenant **tenant /* OUT */,
                                        unsigned *scopes /* OUT */, struct err *err);

/* ------------------------------------------------------------------ */
/* Ops: changes to the catalog. */

enum catalog_op_type {
    CATALOG_OP_NONE = 0,
    CATALOG_OP_CREATE_TENANT,
    CATALOG_OP_DELETE_TENANT, /* also deletes its keys and tables */
    CATALOG_OP_CREATE_KEY,
    CATALOG_OP_REVOKE_KEY, /* removes the key at once */
    CATALOG_OP_SET_QUOTAS,
    CATALOG_OP_CREATE_TABLE,
    CATALOG_OP_DELETE_TABLE,
    CATALOG_OP_ADD_SCHEMA_VERSION, /* the next version: newest + 1 */
};

/*
 * One change. Initialise with catalog_op_init() or a builder below,
 * release with catalog_op_release(). The op owns everything it points to.
 */
struct catalog_op {
    enum catalog_op_type type;            /* what to do */
    char *tenant;                         /* every op */
    char *table;                          /* delete_table, add_schema_version */
    char *key_id;                         /* create_key, revoke_key */
    uint8_t key_hash[CATALOG_HASH_BYTES]; /* create_key */
    unsigned scopes;                      /* create_key: enum catalog_scope_flags */
    struct catalog_quotas quotas;         /* set_quotas */
    struct catalog_table_def *def;        /* create_table */
    struct field *fields;                 /* add_schema_version: the full new list */
    uint32_t nfields;                     /* entries in fields */
};

void catalog_op_init(struct catalog_op *op);
/* Frees what the op owns and leaves it as after catalog_op_init(). */
void catalog_op_release(struct catalog_op *op);

/* Builders: each initialises op (names are copied). */
void catalog_op_create_tenant(struct catalog_op *op, const char *tenant);
void catalog_op_delete_tenant(struct catalog_op *op, const char *tenant);
void catalog_op_create_key(struct catalog_op *op, const char *tenant, const char *key_id,
                           const uint8_t hash[CATALOG_HASH_BYTES], unsigned scopes);
void catalog_op_revoke_key(struct catalog_op *op, const char *tenant, const char *key_id);
void catalog_op_set_quotas(struct catalog_op *op, const char *tenant,
                           const struct catalog_quotas *q);
/* Takes ownership of def (from catalog_table_def_parse()). */
void catalog_op_create_table(struct catalog_op *op, const char *tenant,
                             struct catalog_table_def *def);
void catalog_op_delete_table(struct catalog_op *op, const char *tenant, const char *table);
/* Takes ownership of fields (n entries, from catalog_fields_parse()). */
void catalog_op_add_schema_version(struct catalog_op *op, const char *tenant, const char *table,
                                   struct field *fields, uint32_t n);

/*
 * Schema evolution (added for PUT .../schema): whether fields (n entries,
 * the full new field list) is a backward-compatible successor of old,
 * the table's newest schema: every record stored under old must read back
 * under the new list. Accepted: adding a field that is nullable or has a
 * default, making a field nullable, adding, changing or (on a nullable
 * field) dropping a default, widening int64 to float64, reordering, and
 * removing a field that is neither in the primary key nor the time field
 * (old rows keep it; reads under the new version no longer show it).
 * Refused, one reason per offending field: removing, retyping, making
 * nullable or giving a default to a primary-key field; removing the time
 * field; any other type change; making a nullable field non-nullable;
 * dropping the default of a non-nullable field (it would become
 * required); adding a field that is neither nullable nor has a default.
 * Calls fn(arg, field name, reason) for each, old fields first in their
 * order, then new ones; returns how many. Pass fn NULL just to count.
 * Reasons are lower-case phrases without the field name, e.g. "type
 * cannot change from string to int64".
 */
typedef void (*catalog_compat_fn)(void *arg, const char *field, const char *reason);
uint32_t catalog_schema_compat(const struct schema *old, const struct field *fields, uint32_t n,
                               catalog_compat_fn fn, void *arg);

/*
 * Checks that op applies to snap: tenant and table names match the API's
 * patterns and key ids are 16 lowercase hex digits (ST_EINVAL), the
 * tenant, table or key exists (ST_ENOTFOUND; a key of another tenant is
 * not found), the name or key id is not taken (ST_EEXIST), scopes are
 * known and not empty, quotas fit in int64, a new schema version builds
 * with the table's primary key and time field and is a backward-compatible
 * successor of the newest (catalog_schema_compat(); ST_EINVAL with
 * "incompatible schema change: field 'x': reason", the first reason).
 */
enum st_status catalog_check_op(const struct catalog_snap *snap, const struct catalog_op *op,
                                struct err *err);

/*
 * Appends the op's bytes (canonical JSON, one line without the newline;
 * do not change: on-disk format) to out. The op must have passed
 * catalog_check_op().
 */
void catalog_op_encode(const struct catalog_op *op, struct strbuf *out);

/*
 * Decodes bytes made by catalog_op_encode() into op (initialised here;
 * caller releases it). ST_ECORRUPT when the bytes are not such an op.
 */
enum st_status catalog_op_decode(const void *bytes, size_t len, struct catalog_op *op /* OUT */,
                                 struct err *err);

/*
 * Applies an encoded op at commit_version and publishes the new
 * snapshot; the same call serves the live path (after the WAL made the op
 * durable) and replay. Returns ST_OK when applied, or when commit_version
 * is not above the catalog's version (already reflected: nothing done);
 * ST_ECORRUPT when the bytes do not decode; the status of
 * catalog_check_op() when the op no longer applies (nothing changed,
 * deterministically: replay does the same). Applies are serialised
 * internally; call them in WAL order.
 */
enum st_status catalog_apply(struct catalog *cat, const void *op, size_t len,
                             uint64_t commit_version, struct err *err);

/* ------------------------------------------------------------------ */
/* Checkpoint. */

/*
 * The whole snapshot in the checkpoint form (canonical JSON, see
 * catalog.c). Equal catalogs give equal text with JSON_SORT_KEYS, which
 * the tests use to compare states. Caller frees with json_decref().
 */
struct json_t *catalog_snap_to_json(const struct catalog_snap *snap);

/*
 * Writes snap to path through fs (NULL: fs_posix()): a temporary file
 * "path.tmp", fsync, rename over path, fsync of the directory. A crash
 * leaves either the old or the new file. ST_EIO on failure.
 */
enum st_status catalog_save(const struct catalog_snap *snap, struct fs *fs, const char *path,
                            struct err *err);

/*
 * Reads a checkpoint written by catalog_save() into a new catalog
 * (caller frees with catalog_free()). ST_ENOTFOUND when path does not
 * exist, ST_EIO when it cannot be read, ST_ECORRUPT when it is not a
 * valid checkpoint.
 */
enum st_status catalog_load(struct fs *fs, const char *path, struct catalog **out /* OUT */,
                            struct err *err);

#endif

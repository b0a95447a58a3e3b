/*
 * The server's configuration: one struct config, filled from defaults, then
 * the YAML file, then STRATA_SECTION_KEY environment variables, then
 * command-line flags. It is validated once and read-only afterwards; SIGHUP
 * builds a fresh one the same way and copies over only the reloadable keys.
 *
 * Every option is declared once, in the table in config.c (name, type,
 * default, bounds, reloadable), as Redis's static_configs[] does; the
 * commented default file is etc/strata.yaml.
 *
 * Sizes take KB/MB/GB (powers of 1000) or KiB/MiB/GiB (powers of 1024) and
 * plain bytes; durations take ms/s/m/h/d. A bad value or unknown key is an
 * ST_EINVAL whose message names the key and, for the file, its line:
 *   "strata.yaml:12: unknown key 'server.ingest_lisen'"
 *   "strata.yaml:14: bad value for 'storage.memtable_size': 'lots' is not a size"
 */
#ifndef ST_UTIL_CONFIG_H
#define ST_UTIL_CONFIG_H

#include <limits.h>
#include <stdint.h>

#include "util/status.h"

#define CONFIG_ADDR_MAX  256
#define CONFIG_PATH_MAX  1024
#define CONFIG_TOKEN_MAX 256

enum config_sync {
    CONFIG_SYNC_ALWAYS = 0,
    CONFIG_SYNC_INTERVAL,
    CONFIG_SYNC_NEVER,
};

struct config {
    struct {
        char ingest_listen[CONFIG_ADDR_MAX]; /* host:port, "0.0.0.0:8080" */
        char query_listen[CONFIG_ADDR_MAX];  /* host:port, "0.0.0.0:8081" */
        uint32_t max_connections;            /* per process, both listeners */
        uint64_t header_timeout_ms;          /* whole header deadline, 10s */
        uint64_t body_timeout_ms;            /* whole body deadline, 60s */
        uint64_t idle_timeout_ms;            /* keep-alive idle, 60s */
        uint64_t write_timeout_ms;           /* client not reading, 60s */
        uint64_t shutdown_timeout_ms;        /* drain deadline, 10s */
    } server;
    struct {
        char data_dir[CONFIG_PATH_MAX]; /* "./data" */
        uint64_t memtable_size;         /* bytes, 64MB */
        enum config_sync sync;          /* always */
        uint64_t sync_interval_ms;      /* 10ms */
        uint32_t max_frozen_memtables;  /* 4; then writes get 503 */
        bool truncate_corrupt_wal;      /* false: refuse to start */
        uint64_t wal_file_size;         /* WAL files rotate (and are pre-allocated) at this, 64MiB */
    } storage;
    struct {
        bool enabled;                       /* true */
        char admin_token[CONFIG_TOKEN_MAX]; /* "" = generate/load */
    } auth;
    struct {
        uint64_t max_inflight_body_bytes; /* 1GiB over all connections */
        uint64_t max_body_bytes;          /* 64MB */
        uint64_t max_header_bytes;        /* 16KB */
        uint64_t max_query_rows;          /* 100000 */
        uint64_t query_timeout_ms;        /* 30s; then 504 query_timeout */
        uint64_t query_memory;            /* 64MiB of state per query; 413 beyond */
        uint32_t max_tenants;             /* 10000 */
        uint32_t max_tables_per_tenant;   /* 1000 */
        uint32_t max_keys_per_tenant;     /* 100 */
        uint32_t max_schema_versions;     /* 1000 per table */
    } limits;
    struct {
        uint64_t history_retention_ms; /* 1h */
        uint64_t max_snapshot_ttl_ms;  /* 24h; longer ttls are cut to it */
    } mvcc;
    struct {
        uint32_t threads;                /* background workers, 2 */
        uint64_t flush_interval_ms;      /* flush check, 1s */
        uint64_t compaction_interval_ms; /* compaction check, 10s */
        uint64_t checkpoint_interval_ms; /* checkpoint + WAL trim, 60s */
    } jobs;
    struct {
        uint32_t fanout;       /* segments of one tier merged at once, 4 */
        uint64_t base_size;    /* tier 0 size, 4MiB */
        uint32_t max_segments; /* per table before a forced merge, 24 */
    } compaction;
    struct {
        uint64_t idempotency_window_ms; /* 24h */
        uint64_t idempotency_max_keys;  /* 1000000; the oldest go first */
    } ingest;
    struct {
        bool require_auth; /* false */
    } metrics;
    struct {
        int level;                        /* enum log_level, info */
        char access_log[CONFIG_PATH_MAX]; /* "" off, "-" stderr, or a path */
    } log;
};

/* Fills cfg with the defaults of the option table. */
void config_init(struct config *cfg);

/*
 * Reads the YAML file at path into cfg (which holds defaults or earlier
 * values). The file is a mapping of sections to mappings of keys to
 * scalars. Returns ST_EINVAL (unknown key, bad value, not a mapping),
 * ST_ENOTFOUND or ST_EIO with a message naming the file, key and line.
 */
enum st_status config_load_file(struct config *cfg, const char *path, struct err *err);

/*
 * Applies STRATA_SECTION_KEY variables from envp (NULL-terminated, like
 * environ) to cfg. STRATA_ADMIN_TOKEN sets auth.admin_token. A bad value
 * is ST_EINVAL naming the variable; STRATA_* names that match no key are
 * ignored (other tools share the prefix) and reported through warn_unknown
 * when it is not NULL.
 */
enum st_status config_apply_env(struct config *cfg, char *const *envp,
                                void (*warn_unknown)(const char *name), struct err *err);

/* Sets one key ("storage.data_dir") from its text form, as flags do. */
enum st_status config_set(struct config *cfg, const char *key, const char *value, struct err *err);

/* True when key exists and may change at run time (SIGHUP). */
bool config_key_is_reloadable(const char *key);

/*
 * Copies the reloadable keys of fresh into live and returns how many
 * changed values it copied. Used on SIGHUP.
 */
int config_apply_reloadable(struct config *live, const struct config *fresh);

/*
 * Parses a size ("64MB", "16KiB", "1048576") into bytes, or a duration
 * ("10ms", "1h", "90d"; a bare number is milliseconds) into milliseconds.
 * False on syntax errors and overflow.
 */
bool config_parse_size(const char *s, uint64_t *out);
bool config_parse_duration_ms(const char *s, uint64_t *out);

/*
 * Appends every key with its current value, one "section.key: value" line
 * each, to the file-style YAML text in out (for `strata help config` and
 * the admin status). Secrets (auth.admin_token) print as "<set>" or "".
 */
struct strbuf;
void config_dump(const struct config *cfg, struct strbuf *out);

#endif

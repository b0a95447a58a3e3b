/*
 * Unit tests for util/config: size and duration syntax, every option type
 * through config_set(), the YAML loader and each of its errors with the
 * line it reports, environment overrides, SIGHUP's reloadable copy, the
 * dump, and that the shipped etc/strata.yaml equals the built-in defaults.
 *
 * The shipped file is found through STRATA_SOURCE_ROOT, which
 * tests/unit/meson.build sets to the source tree.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/config.h"
#include "util/log.h"
#include "util/strbuf.h"

/* Environment strings are char * (as environ is); literals are not. */
#define S(lit) ((char *)(lit))

/* A value other than the default for every key, in config_set() form. */
static const struct {
    const char *key;
    const char *value;
    const char *dumped; /* how config_dump() prints it back */
} others[] = {
    {"server.ingest_listen", "127.0.0.1:9000", "127.0.0.1:9000"},
    {"server.query_listen", "[::1]:9001", "[::1]:9001"},
    {"server.max_connections", "77", "77"},
    {"server.header_timeout", "1500ms", "1500ms"},
    {"server.body_timeout", "2m", "2m"},
    {"server.idle_timeout", "3s", "3s"},
    {"server.write_timeout", "4h", "4h"},
    {"server.shutdown_timeout", "0.5m", "30s"},
    {"storage.data_dir", "/var/lib/strata", "/var/lib/strata"},
    {"storage.memtable_size", "1.5GiB", "1536MiB"},
    {"storage.sync", "interval", "interval"},
    {"storage.sync_interval", "250ms", "250ms"},
    {"storage.max_frozen_memtables", "9", "9"},
    {"storage.truncate_corrupt_wal", "on", "true"},
    {"storage.wal_file_size", "8MiB", "8MiB"},
    {"auth.enabled", "off", "false"},
    {"auth.admin_token", "s3cret", "<set>"},
    {"limits.max_body_bytes", "1000KiB", "1000KiB"},
    {"limits.max_inflight_body_bytes", "3GB", "3GB"},
    {"limits.max_header_bytes", "2KB", "2KB"},
    {"limits.max_query_rows", "5", "5"},
    {"limits.query_timeout", "90s", "90s"},
    {"limits.query_memory", "2MiB", "2MiB"},
    {"limits.max_tenants", "7", "7"},
    {"limits.max_tables_per_tenant", "8", "8"},
    {"limits.max_keys_per_tenant", "9", "9"},
    {"limits.max_schema_versions", "10", "10"},
    {"mvcc.history_retention", "0", "0ms"},
    {"mvcc.max_snapshot_ttl", "2h", "2h"},
    {"jobs.threads", "3", "3"},
    {"jobs.flush_interval", "250ms", "250ms"},
    {"jobs.compaction_interval", "2m", "2m"},
    {"jobs.checkpoint_interval", "5m", "5m"},
    {"compaction.fanout", "6", "6"},
    {"compaction.base_size", "8MiB", "8MiB"},
    {"compaction.max_segments", "40", "40"},
    {"ingest.idempotency_window", "90s", "90s"},
    {"ingest.idempotency_max_keys", "12", "12"},
    {"metrics.require_auth", "yes", "true"},
    {"log.level", "debug", "debug"},
    {"log.access_log", "-", "-"},
};

#define N_OTHERS (sizeof(others) / sizeof(others[0]))

static void set_others(struct config *cfg)
{
    struct err err;

    config_init(cfg);
    for (size_t i = 0; i < N_OTHERS; i++)
        ck_assert_msg(config_set(cfg, others[i].key, others[i].value, &err) == ST_OK, "%s: %s",
                      others[i].key, err.msg);
}

/* The dump of cfg; caller frees. */
static char *dump(const struct config *cfg)
{
    struct strbuf sb = STRBUF_INIT;

    config_dump(cfg, &sb);
    return strbuf_detach(&sb, NULL);
}

static void assert_same(const struct config *a, const struct config *b)
{
    char *da = dump(a);
    char *db = dump(b);

    ck_assert_str_eq(da, db);
    /* The dump hides the token, so compare it directly. */
    ck_assert_str_eq(a->auth.admin_token, b->auth.admin_token);
    free(da);
    free(db);
}

static void assert_defaults(const struct config *cfg)
{
    struct config def;

    config_init(&def);
    assert_same(cfg, &def);
}

/* ------------------------------------------------------------------ */

static uint64_t size_of(const char *s)
{
    uint64_t v = 0xdead;

    ck_assert_msg(config_parse_size(s, &v), "'%s' should parse as a size", s);
    return v;
}

static uint64_t ms_of(const char *s)
{
    uint64_t v = 0xdead;

    ck_assert_msg(config_parse_duration_ms(s, &v), "'%s' should parse as a duration", s);
    return v;
}

START_TEST(test_size_units)
{
    ck_assert_uint_eq(size_of("0"), 0);
    ck_assert_uint_eq(size_of("4096"), 4096);
    ck_assert_uint_eq(size_of("7B"), 7);
    ck_assert_uint_eq(size_of("1KB"), 1000);
    ck_assert_uint_eq(size_of("1KiB"), 1024);
    ck_assert_uint_eq(size_of("64MB"), 64000000);
    ck_assert_uint_eq(size_of("64MiB"), 64ULL << 20);
    ck_assert_uint_eq(size_of("2GB"), 2000000000ULL);
    ck_assert_uint_eq(size_of("2GiB"), 2ULL << 30);
    ck_assert_uint_eq(size_of("3TB"), 3000000000000ULL);
    ck_assert_uint_eq(size_of("3TiB"), 3ULL << 40);
    ck_assert_uint_eq(size_of("16 KiB"), 16384);
    ck_assert_uint_eq(size_of("16\tKB"), 16000);
    ck_assert_uint_eq(size_of("16kib"), 16384);
    ck_assert_uint_eq(size_of("16kb"), 16000);
    ck_assert_uint_eq(size_of("16b"), 16);
    ck_assert_uint_eq(size_of("1.5GiB"), 3ULL << 29);
    ck_assert_uint_eq(size_of("0.5KB"), 500);
    ck_assert_uint_eq(size_of("1.000KB"), 1000);
    ck_assert_uint_eq(size_of("0.25KiB"), 256);
    ck_assert_uint_eq(size_of("007"), 7);
    ck_assert_uint_eq(size_of("18446744073709551615"), UINT64_MAX);
    ck_assert_uint_eq(size_of("16777215TiB"), UINT64_MAX - (1ULL << 40) + 1);
}
END_TEST

START_TEST(test_size_rejects)
{
    static const char *const bad[] = {
        "",
        " 1",
        "1 ",
        "-1",
        "+1",
        "1.5B",
        "1.",
        ".5KB",
        "1KBx",
        "1 K",
        "1XB",
        "0x10",
        "1e3",
        "1,000",
        "KB",
        "1K",
        "1.0001B",
        "1 KB ",
        "1..5KB",
        "0.0000000000000000001KB",
        "18446744073709551616",
        "16777216TiB",
        "99999999999999999999999",
        "18446744073709551615KB",
        "1kIbx",
    };
    uint64_t v = 42;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!config_parse_size(bad[i], &v), "'%s' should not parse", bad[i]);
    ck_assert_uint_eq(v, 42);
}
END_TEST

START_TEST(test_duration_units)
{
    ck_assert_uint_eq(ms_of("0"), 0);
    ck_assert_uint_eq(ms_of("10"), 10);
    ck_assert_uint_eq(ms_of("10ms"), 10);
    ck_assert_uint_eq(ms_of("1s"), 1000);
    ck_assert_uint_eq(ms_of("1m"), 60000);
    ck_assert_uint_eq(ms_of("1h"), 3600000);
    ck_assert_uint_eq(ms_of("90d"), 90ULL * 86400000);
    ck_assert_uint_eq(ms_of("1.5s"), 1500);
    ck_assert_uint_eq(ms_of("0.5m"), 30000);
    ck_assert_uint_eq(ms_of("1 s"), 1000);
    ck_assert_uint_eq(ms_of("213503982334d"), 213503982334ULL * 86400000);
}
END_TEST

START_TEST(test_duration_rejects)
{
    static const char *const bad[] = {
        "",
        "1S",
        "1M",
        "1MS",
        "1.5ms",
        "1.5",
        "1 ",
        "1sec",
        "1w",
        "-1s",
        "s",
        "1s2",
        "1.s",
        "1e3",
        " 1s",
        "1 m s",
        "213503982335d",
        "18446744073709551616ms",
    };
    uint64_t v = 42;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!config_parse_duration_ms(bad[i], &v), "'%s' should not parse", bad[i]);
    ck_assert_uint_eq(v, 42);
}
END_TEST

/* ------------------------------------------------------------------ */

START_TEST(test_defaults)
{
    struct config cfg;

    config_init(&cfg);
    ck_assert_str_eq(cfg.server.ingest_listen, "0.0.0.0:8080");
    ck_assert_str_eq(cfg.server.query_listen, "0.0.0.0:8081");
    ck_assert_uint_eq(cfg.server.max_connections, 1000);
    ck_assert_uint_eq(cfg.server.header_timeout_ms, 10000);
    ck_assert_uint_eq(cfg.server.body_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.server.idle_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.server.write_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.server.shutdown_timeout_ms, 10000);
    ck_assert_str_eq(cfg.storage.data_dir, "./data");
    ck_assert_uint_eq(cfg.storage.memtable_size, 64000000);
    ck_assert_int_eq(cfg.storage.sync, CONFIG_SYNC_ALWAYS);
    ck_assert_uint_eq(cfg.storage.sync_interval_ms, 10);
    ck_assert(cfg.auth.enabled);
    ck_assert_str_eq(cfg.auth.admin_token, "");
    ck_assert_uint_eq(cfg.limits.max_body_bytes, 64000000);
    ck_assert_uint_eq(cfg.limits.max_header_bytes, 16000);
    ck_assert_uint_eq(cfg.limits.max_query_rows, 100000);
    ck_assert_uint_eq(cfg.mvcc.history_retention_ms, 3600000);
    ck_assert_uint_eq(cfg.ingest.idempotency_window_ms, 86400000);
    ck_assert(!cfg.metrics.require_auth);
    ck_assert_int_eq(cfg.log.level, ST_LOG_INFO);
    ck_assert_str_eq(cfg.log.access_log, "");
}
END_TEST

/* config_set(key, value) must fail with exactly msg and change nothing. */
static void expect_set_error(const char *key, const char *value, const char *msg)
{
    struct config cfg;
    struct err err;

    config_init(&cfg);
    ck_assert_int_eq(config_set(&cfg, key, value, &err), ST_EINVAL);
    ck_assert_int_eq(err.code, ST_EINVAL);
    ck_assert_str_eq(err.msg, msg);
    assert_defaults(&cfg);
}

START_TEST(test_set_every_type)
{
    struct config cfg;
    struct err err;
    char long_value[400];

    set_others(&cfg);
    ck_assert_str_eq(cfg.server.query_listen, "[::1]:9001");
    ck_assert_uint_eq(cfg.server.max_connections, 77);
    ck_assert_uint_eq(cfg.server.shutdown_timeout_ms, 30000);
    ck_assert_uint_eq(cfg.storage.memtable_size, 3ULL << 29);
    ck_assert_int_eq(cfg.storage.sync, CONFIG_SYNC_INTERVAL);
    ck_assert(!cfg.auth.enabled);
    ck_assert_str_eq(cfg.auth.admin_token, "s3cret");
    ck_assert_uint_eq(cfg.limits.max_body_bytes, 1024000);
    ck_assert_uint_eq(cfg.limits.max_query_rows, 5);
    ck_assert_uint_eq(cfg.mvcc.history_retention_ms, 0);
    ck_assert(cfg.metrics.require_auth);
    ck_assert_int_eq(cfg.log.level, ST_LOG_DEBUG);
    ck_assert_str_eq(cfg.log.access_log, "-");

    /* Booleans, enums and levels in other spellings. */
    ck_assert_int_eq(config_set(&cfg, "auth.enabled", "TRUE", &err), ST_OK);
    ck_assert(cfg.auth.enabled);
    ck_assert_int_eq(config_set(&cfg, "auth.enabled", "No", &err), ST_OK);
    ck_assert(!cfg.auth.enabled);
    ck_assert_int_eq(config_set(&cfg, "auth.enabled", "on", &err), ST_OK);
    ck_assert(cfg.auth.enabled);
    ck_assert_int_eq(config_set(&cfg, "storage.sync", "Never", &err), ST_OK);
    ck_assert_int_eq(cfg.storage.sync, CONFIG_SYNC_NEVER);
    ck_assert_int_eq(config_set(&cfg, "log.level", "WARN", &err), ST_OK);
    ck_assert_int_eq(cfg.log.level, ST_LOG_WARN);
    ck_assert_int_eq(config_set(&cfg, "log.level", "notice", &err), ST_OK);
    ck_assert_int_eq(cfg.log.level, ST_LOG_NOTICE);
    ck_assert_int_eq(config_set(&cfg, "server.max_connections", "1000000", &err), ST_OK);
    ck_assert_uint_eq(cfg.server.max_connections, 1000000);
    ck_assert_int_eq(config_set(&cfg, "limits.max_header_bytes", "1MiB", &err), ST_OK);
    ck_assert_uint_eq(cfg.limits.max_header_bytes, 1 << 20);

    /* The longest string that fits, and one byte more. */
    memset(long_value, 'a', sizeof(long_value));
    long_value[CONFIG_TOKEN_MAX - 1] = '\0';
    ck_assert_int_eq(config_set(&cfg, "auth.admin_token", long_value, &err), ST_OK);
    ck_assert_str_eq(cfg.auth.admin_token, long_value);
    long_value[CONFIG_TOKEN_MAX - 1] = 'a';
    long_value[CONFIG_TOKEN_MAX] = '\0';
    ck_assert_int_eq(config_set(&cfg, "auth.admin_token", long_value, &err), ST_EINVAL);
    ck_assert_str_eq(err.msg, "bad value for 'auth.admin_token': "
                              "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is longer than 255 bytes");
}
END_TEST

START_TEST(test_set_errors)
{
    expect_set_error("server.nope", "1", "unknown key 'server.nope'");
    expect_set_error("server", "1", "unknown key 'server'");
    expect_set_error("server.ingest_listen", "nohost",
                     "bad value for 'server.ingest_listen': 'nohost' is not host:port");
    expect_set_error("server.ingest_listen", "host:99999",
                     "bad value for 'server.ingest_listen': 'host:99999' has no valid port "
                     "(0-65535)");
    expect_set_error("server.query_listen", "[::1:80",
                     "bad value for 'server.query_listen': '[::1:80' is not [ipv6]:port");
    expect_set_error("storage.data_dir", "",
                     "bad value for 'storage.data_dir': '' must not be empty");
    expect_set_error("auth.admin_token", "a b",
                     "bad value for 'auth.admin_token': 'a b' may hold only printable ASCII "
                     "without blanks");
    expect_set_error("server.max_connections", "0",
                     "bad value for 'server.max_connections': '0' is below the minimum 1");
    expect_set_error("server.max_connections", "1000001",
                     "bad value for 'server.max_connections': '1000001' is above the maximum "
                     "1000000");
    expect_set_error("server.max_connections", "1k",
                     "bad value for 'server.max_connections': '1k' is not a whole number");
    expect_set_error("limits.max_query_rows", "1.0",
                     "bad value for 'limits.max_query_rows': '1.0' is not a whole number");
    expect_set_error("limits.max_query_rows", "99999999999999999999",
                     "bad value for 'limits.max_query_rows': '99999999999999999999' is not a "
                     "whole number");
    expect_set_error("storage.memtable_size", "lots",
                     "bad value for 'storage.memtable_size': 'lots' is not a size (e.g. 64MB, "
                     "16KiB, 4096)");
    expect_set_error("limits.max_header_bytes", "512",
                     "bad value for 'limits.max_header_bytes': '512' is below the minimum 1KiB");
    expect_set_error("limits.max_header_bytes", "2MiB",
                     "bad value for 'limits.max_header_bytes': '2MiB' is above the maximum 1MiB");
    expect_set_error("limits.max_body_bytes", "17GiB",
                     "bad value for 'limits.max_body_bytes': '17GiB' is above the maximum 16GiB");
    expect_set_error("server.header_timeout", "soon",
                     "bad value for 'server.header_timeout': 'soon' is not a duration (e.g. "
                     "10ms, 30s, 5m, 1h, 7d)");
    expect_set_error("server.header_timeout", "0",
                     "bad value for 'server.header_timeout': '0' is below the minimum 1ms");
    expect_set_error("server.header_timeout", "25h",
                     "bad value for 'server.header_timeout': '25h' is above the maximum 1d");
    expect_set_error("ingest.idempotency_window", "999ms",
                     "bad value for 'ingest.idempotency_window': '999ms' is below the minimum 1s");
    expect_set_error("auth.enabled", "maybe",
                     "bad value for 'auth.enabled': 'maybe' is not a boolean (true/false, "
                     "yes/no, on/off)");
    expect_set_error("storage.sync", "sometimes",
                     "bad value for 'storage.sync': 'sometimes' is not one of always, interval, "
                     "never");
    expect_set_error("log.level", "loud",
                     "bad value for 'log.level': 'loud' is not one of debug, info, notice, "
                     "warn, error");
}
END_TEST

START_TEST(test_set_err_may_be_null)
{
    struct config cfg;

    config_init(&cfg);
    ck_assert_int_eq(config_set(&cfg, "nope.nope", "1", NULL), ST_EINVAL);
    ck_assert_int_eq(config_set(&cfg, "storage.sync", "x", NULL), ST_EINVAL);
    assert_defaults(&cfg);
}
END_TEST

/* ------------------------------------------------------------------ */

/* Writes text to a fresh temporary file and loads it into cfg. */
static enum st_status load_text(struct config *cfg, const char *text, char *path, size_t len,
                                struct err *err)
{
    char tmpl[] = "/tmp/strata-config-XXXXXX";
    int fd = mkstemp(tmpl);
    size_t n = strlen(text);
    enum st_status rc;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    snprintf(path, len, "%s", tmpl);
    rc = config_load_file(cfg, tmpl, err);
    unlink(tmpl);
    return rc;
}

/* Loading text must fail with "PATH:line: msg" and leave cfg as it was. */
static void expect_file_error(const char *text, int line, const char *msg)
{
    struct config cfg;
    struct err err;
    char path[64];
    char want[ST_ERR_MSG_MAX];

    config_init(&cfg);
    ck_assert_int_eq(load_text(&cfg, text, path, sizeof(path), &err), ST_EINVAL);
    snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
    ck_assert_str_eq(err.msg, want);
    assert_defaults(&cfg);
}

START_TEST(test_file_values)
{
    static const char text[] = "# a comment\n"
                               "server:\n"
                               "  ingest_listen: 127.0.0.1:0\n"
                               "  query_listen: '127.0.0.1:0'\n"
                               "  max_connections: 10\n"
                               "  header_timeout: 2s   # trailing comment\n"
                               "storage:\n"
                               "  memtable_size: \"16 MiB\"\n"
                               "  sync: interval\n"
                               "auth: {enabled: no, admin_token: \"tok\"}\n"
                               "metrics:\n"
                               "  require_auth: on\n"
                               "log:\n"
                               "  level: warn\n"
                               "  access_log: ~\n"
                               "mvcc:\n"
                               "ingest:\n"
                               "  idempotency_window: !!str 1h\n";
    struct config cfg;
    struct err err;
    char path[64];

    config_init(&cfg);
    ck_assert_str_eq(cfg.log.access_log, "");
    ck_assert_int_eq(config_set(&cfg, "log.access_log", "/x", &err), ST_OK);
    ck_assert_int_eq(load_text(&cfg, text, path, sizeof(path), &err), ST_OK);
    ck_assert_str_eq(cfg.server.ingest_listen, "127.0.0.1:0");
    ck_assert_str_eq(cfg.server.query_listen, "127.0.0.1:0");
    ck_assert_uint_eq(cfg.server.max_connections, 10);
    ck_assert_uint_eq(cfg.server.header_timeout_ms, 2000);
    ck_assert_uint_eq(cfg.server.body_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.storage.memtable_size, 16 << 20);
    ck_assert_int_eq(cfg.storage.sync, CONFIG_SYNC_INTERVAL);
    ck_assert(!cfg.auth.enabled);
    ck_assert_str_eq(cfg.auth.admin_token, "tok");
    ck_assert(cfg.metrics.require_auth);
    ck_assert_int_eq(cfg.log.level, ST_LOG_WARN);
    ck_assert_str_eq(cfg.log.access_log, "");
    ck_assert_uint_eq(cfg.ingest.idempotency_window_ms, 3600000);
}
END_TEST

START_TEST(test_file_empty)
{
    static const char *const texts[] = {
        "", "\n\n", "# only a comment\n  # and another\n", "---\n", "---\n# c\n...\n", "~\n",
    };
    struct config cfg;
    struct err err;
    char path[64];

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        config_init(&cfg);
        ck_assert_msg(load_text(&cfg, texts[i], path, sizeof(path), &err) == ST_OK, "%zu: %s", i,
                      err.msg);
        assert_defaults(&cfg);
    }
}
END_TEST

START_TEST(test_file_errors)
{
    expect_file_error("server:\n  ingest_lisen: x\n", 2, "unknown key 'server.ingest_lisen'");
    expect_file_error("# c\n\nserer:\n  ingest_listen: x\n", 3, "unknown section 'serer'");
    expect_file_error("server:\n  max_connections: 5\n\nstorage:\n  memtable_size: lots\n", 5,
                      "bad value for 'storage.memtable_size': 'lots' is not a size (e.g. 64MB, "
                      "16KiB, 4096)");
    expect_file_error("storage:\n  memtable_size:\n", 2,
                      "bad value for 'storage.memtable_size': '' is not a size (e.g. 64MB, "
                      "16KiB, 4096)");
    expect_file_error("server:\n  max_connections:\n    - 1\n", 3,
                      "value of 'server.max_connections' must be a scalar");
    expect_file_error("server:\n  max_connections: {a: 1}\n", 2,
                      "value of 'server.max_connections' must be a scalar");
    expect_file_error("server:\n  max_connections: 5\n  max_connections: 6\n", 3,
                      "duplicate key 'server.max_connections'");
    expect_file_error("log:\n  level: info\nserver: {}\nlog:\n  level: debug\n", 4,
                      "duplicate section 'log'");
    expect_file_error("- server\n- log\n", 1, "the top level must be a mapping of sections");
    expect_file_error("just words\n", 1, "the top level must be a mapping of sections");
    expect_file_error("server: 5\n", 1, "section 'server' must be a mapping of keys");
    expect_file_error("server:\n  - a\n", 2, "section 'server' must be a mapping of keys");
    expect_file_error("[a]: 1\n", 1, "section names must be scalars");
    expect_file_error("log:\n  [a]: 1\n", 2, "key names must be scalars");
    expect_file_error("log:\n  \"level\\0x\": info\n", 2, "unknown key 'log.level'");
    expect_file_error("log: {}\n---\nlog: {}\n", 2, "only one yaml document is allowed");
    expect_file_error("a: &x 1\nlog:\n  level: *x\n", 1, "unknown section 'a'");
    expect_file_error("server:\n  max_connections: &n 5\nlimits:\n  max_query_rows: *n\n", 4,
                      "value of 'limits.max_query_rows' is an alias; aliases are not supported");
    expect_file_error("server:\n  ingest_listen: \"a\n", 3,
                      "yaml syntax error: found unexpected end of stream while scanning a "
                      "quoted scalar");
    expect_file_error("server:\n  max_connections: 5\n bad: 1\n", 3,
                      "yaml syntax error: did not find expected key while parsing a block "
                      "mapping");
    expect_file_error("log:\n  level: info\n  access_log: \"\xff\"\n", 3,
                      "yaml syntax error: invalid leading UTF-8 octet");
    expect_file_error("log:\n  access_log: \"a\\0b\"\n", 2,
                      "value of 'log.access_log' holds a NUL byte");
}
END_TEST

START_TEST(test_file_missing)
{
    struct config cfg;
    struct err err;

    config_init(&cfg);
    ck_assert_int_eq(config_load_file(&cfg, "/nonexistent/strata.yaml", &err), ST_ENOTFOUND);
    ck_assert_str_eq(err.msg, "cannot open config '/nonexistent/strata.yaml': No such file or "
                              "directory");
    ck_assert_int_eq(config_load_file(&cfg, "/", &err), ST_EIO);
    assert_defaults(&cfg);
}
END_TEST

/* etc/strata.yaml must name every key and give it its default. */
START_TEST(test_shipped_file_is_defaults)
{
    const char *root = getenv("STRATA_SOURCE_ROOT");
    struct config cfg;
    struct err err;
    char path[1024];

    ck_assert_msg(root != NULL, "STRATA_SOURCE_ROOT is not set");
    snprintf(path, sizeof(path), "%s/etc/strata.yaml", root);
    /* Starting from a non-default value everywhere proves each key is set. */
    set_others(&cfg);
    ck_assert_msg(config_load_file(&cfg, path, &err) == ST_OK, "%s", err.msg);
    assert_defaults(&cfg);
}
END_TEST

/* ------------------------------------------------------------------ */

static char warned[8][64];
static int n_warned;

static void warn_unknown(const char *name)
{
    ck_assert_int_lt(n_warned, 8);
    snprintf(warned[n_warned++], sizeof(warned[0]), "%s", name);
}

START_TEST(test_env)
{
    char *envp[] = {
        S("PATH=/bin"),
        S("STRATA_SERVER_INGEST_LISTEN=127.0.0.1:0"),
        S("STRATA_STORAGE_MEMTABLE_SIZE=1MiB"),
        S("STRATA_NOPE=1"),
        S("STRATA_ADMIN_TOKEN=abc"),
        S("strata_log_level=debug"),
        S("STRATA_LOG_LEVEL=error"),
        S("STRATA_SERVER=x"),
        S("STRATA_LOG_ACCESS_LOG="),
        S("STRATA_SERVER_MAX_CONNECTIONSX=1"),
        S("STRATA_NO_EQUALS"),
        NULL,
    };
    struct config cfg;
    struct err err;

    config_init(&cfg);
    ck_assert_int_eq(config_set(&cfg, "log.access_log", "/x", &err), ST_OK);
    ck_assert_int_eq(config_apply_env(&cfg, envp, warn_unknown, &err), ST_OK);
    ck_assert_str_eq(cfg.server.ingest_listen, "127.0.0.1:0");
    ck_assert_uint_eq(cfg.storage.memtable_size, 1 << 20);
    ck_assert_str_eq(cfg.auth.admin_token, "abc");
    ck_assert_int_eq(cfg.log.level, ST_LOG_ERROR);
    ck_assert_str_eq(cfg.log.access_log, "");
    ck_assert_int_eq(n_warned, 3);
    ck_assert_str_eq(warned[0], "STRATA_NOPE");
    ck_assert_str_eq(warned[1], "STRATA_SERVER");
    ck_assert_str_eq(warned[2], "STRATA_SERVER_MAX_CONNECTIONSX");

    /* No callback: unknown names are still ignored. */
    config_init(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, envp, NULL, &err), ST_OK);
    ck_assert_str_eq(cfg.auth.admin_token, "abc");
}
END_TEST

START_TEST(test_env_admin_token_alias)
{
    char *first[] = {S("STRATA_AUTH_ADMIN_TOKEN=long"), S("STRATA_ADMIN_TOKEN=short"), NULL};
    char *second[] = {S("STRATA_ADMIN_TOKEN=short"), S("STRATA_AUTH_ADMIN_TOKEN=long"), NULL};
    char *alone[] = {S("STRATA_AUTH_ADMIN_TOKEN=long"), NULL};
    struct config cfg;
    struct err err;

    /* The full name wins over the alias, in either order. */
    config_init(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, first, NULL, &err), ST_OK);
    ck_assert_str_eq(cfg.auth.admin_token, "long");
    config_init(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, second, NULL, &err), ST_OK);
    ck_assert_str_eq(cfg.auth.admin_token, "long");
    config_init(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, alone, NULL, &err), ST_OK);
    ck_assert_str_eq(cfg.auth.admin_token, "long");
}
END_TEST

START_TEST(test_env_bad_value)
{
    char *envp[] = {S("STRATA_LOG_LEVEL=debug"), S("STRATA_STORAGE_MEMTABLE_SIZE=lots"), NULL};
    char *token[] = {S("STRATA_ADMIN_TOKEN=a b"), NULL};
    struct config cfg;
    struct err err;

    config_init(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, envp, NULL, &err), ST_EINVAL);
    ck_assert_str_eq(err.msg, "environment STRATA_STORAGE_MEMTABLE_SIZE: bad value for "
                              "'storage.memtable_size': 'lots' is not a size (e.g. 64MB, "
                              "16KiB, 4096)");
    /* Nothing applied, not even the good variable before the bad one. */
    assert_defaults(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, token, NULL, &err), ST_EINVAL);
    ck_assert_str_eq(err.msg, "environment STRATA_ADMIN_TOKEN: bad value for 'auth.admin_token': "
                              "'a b' may hold only printable ASCII without blanks");
}
END_TEST

/* Every key has its STRATA_SECTION_KEY variable. */
START_TEST(test_env_every_key)
{
    char vars[N_OTHERS][128];
    char *envp[N_OTHERS + 1];
    struct config want;
    struct config cfg;
    struct err err;

    for (size_t i = 0; i < N_OTHERS; i++) {
        int n = snprintf(vars[i], sizeof(vars[i]), "STRATA_");

        for (const char *p = others[i].key; *p; p++)
            vars[i][n++] = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        snprintf(vars[i] + n, sizeof(vars[i]) - (size_t)n, "=%s", others[i].value);
        envp[i] = vars[i];
    }
    envp[N_OTHERS] = NULL;
    ck_assert_str_eq(envp[0], "STRATA_SERVER_INGEST_LISTEN=127.0.0.1:9000");
    set_others(&want);
    config_init(&cfg);
    ck_assert_int_eq(config_apply_env(&cfg, envp, NULL, &err), ST_OK);
    assert_same(&cfg, &want);
}
END_TEST

/* ------------------------------------------------------------------ */

START_TEST(test_reloadable_keys)
{
    static const char *const yes[] = {
        "server.max_connections",
        "server.header_timeout",
        "server.body_timeout",
        "server.idle_timeout",
        "server.write_timeout",
        "server.shutdown_timeout",
        "limits.max_body_bytes",
        "limits.max_header_bytes",
        "limits.max_inflight_body_bytes",
        "limits.max_query_rows",
        "limits.query_timeout",
        "limits.query_memory",
        "mvcc.max_snapshot_ttl",
        "log.level",
        "log.access_log",
        "metrics.require_auth",
    };
    int n_yes = 0;

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        ck_assert_msg(config_key_is_reloadable(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < N_OTHERS; i++)
        n_yes += config_key_is_reloadable(others[i].key);
    ck_assert_int_eq(n_yes, (int)(sizeof(yes) / sizeof(yes[0])));
    ck_assert(!config_key_is_reloadable("server.ingest_listen"));
    ck_assert(!config_key_is_reloadable("storage.data_dir"));
    ck_assert(!config_key_is_reloadable("storage.sync"));
    ck_assert(!config_key_is_reloadable("auth.admin_token"));
    ck_assert(!config_key_is_reloadable("mvcc.history_retention"));
    ck_assert(!config_key_is_reloadable("ingest.idempotency_window"));
    ck_assert(!config_key_is_reloadable("limits.nope"));
    ck_assert(!config_key_is_reloadable(""));
}
END_TEST

START_TEST(test_apply_reloadable)
{
    struct config live;
    struct config fresh;
    struct config want;
    struct err err;
    int n_reloadable = 0;

    config_init(&live);
    set_others(&fresh);
    config_init(&want);
    for (size_t i = 0; i < N_OTHERS; i++) {
        if (!config_key_is_reloadable(others[i].key))
            continue;
        n_reloadable++;
        ck_assert_int_eq(config_set(&want, others[i].key, others[i].value, &err), ST_OK);
    }
    ck_assert_int_eq(config_apply_reloadable(&live, &fresh), n_reloadable);
    assert_same(&live, &want);
    ck_assert_int_eq(config_apply_reloadable(&live, &fresh), 0);

    /* A shorter string replaces a longer one completely. */
    ck_assert_int_eq(config_set(&live, "log.access_log", "/var/log/strata/access.log", &err),
                     ST_OK);
    ck_assert_int_eq(config_apply_reloadable(&live, &fresh), 1);
    ck_assert_str_eq(live.log.access_log, "-");
}
END_TEST

/* ------------------------------------------------------------------ */

START_TEST(test_dump_defaults)
{
    static const char want[] = "server.ingest_listen: 0.0.0.0:8080\n"
                               "server.query_listen: 0.0.0.0:8081\n"
                               "server.max_connections: 1000\n"
                               "server.header_timeout: 10s\n"
                               "server.body_timeout: 1m\n"
                               "server.idle_timeout: 1m\n"
                               "server.write_timeout: 1m\n"
                               "server.shutdown_timeout: 10s\n"
                               "storage.data_dir: ./data\n"
                               "storage.memtable_size: 64MB\n"
                               "storage.sync: always\n"
                               "storage.sync_interval: 10ms\n"
                               "storage.max_frozen_memtables: 4\n"
                               "storage.truncate_corrupt_wal: false\n"
                               "storage.wal_file_size: 64MiB\n"
                               "auth.enabled: true\n"
                               "auth.admin_token: \n"
                               "limits.max_body_bytes: 64MB\n"
                               "limits.max_inflight_body_bytes: 1GiB\n"
                               "limits.max_header_bytes: 16KB\n"
                               "limits.max_query_rows: 100000\n"
                               "limits.query_timeout: 30s\n"
                               "limits.query_memory: 64MiB\n"
                               "limits.max_tenants: 10000\n"
                               "limits.max_tables_per_tenant: 1000\n"
                               "limits.max_schema_versions: 1000\n"
                               "limits.max_keys_per_tenant: 100\n"
                               "mvcc.history_retention: 1h\n"
                               "mvcc.max_snapshot_ttl: 1d\n"
                               "jobs.threads: 2\n"
                               "jobs.flush_interval: 1s\n"
                               "jobs.compaction_interval: 10s\n"
                               "jobs.checkpoint_interval: 1m\n"
                               "compaction.fanout: 4\n"
                               "compaction.base_size: 4MiB\n"
                               "compaction.max_segments: 24\n"
                               "ingest.idempotency_window: 1d\n"
                               "ingest.idempotency_max_keys: 1000000\n"
                               "metrics.require_auth: false\n"
                               "log.level: info\n"
                               "log.access_log: \n";
    struct config cfg;
    char *text;

    config_init(&cfg);
    text = dump(&cfg);
    ck_assert_str_eq(text, want);
    free(text);
}
END_TEST

/* Feeds each "key: value" line of text to config_set() on cfg. */
static void apply_dump(struct config *cfg, char *text)
{
    char *save = NULL;
    int lines = 0;
    struct err err;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sep = strstr(line, ": ");

        ck_assert_ptr_nonnull(sep);
        *sep = '\0';
        lines++;
        if (!strcmp(line, "auth.admin_token"))
            continue;
        ck_assert_msg(config_set(cfg, line, sep + 2, &err) == ST_OK, "%s", err.msg);
    }
    ck_assert_int_eq(lines, (int)N_OTHERS);
}

START_TEST(test_dump_round_trip)
{
    struct config src;
    struct config dst;
    char *text;
    char want[64];

    set_others(&src);
    text = dump(&src);
    for (size_t i = 0; i < N_OTHERS; i++) {
        snprintf(want, sizeof(want), "%s: %s\n", others[i].key, others[i].dumped);
        ck_assert_msg(strstr(text, want) != NULL, "missing '%s' in:\n%s", want, text);
    }
    config_init(&dst);
    apply_dump(&dst, text);
    free(text);
    ck_assert_int_eq(config_set(&dst, "auth.admin_token", src.auth.admin_token, NULL), ST_OK);
    assert_same(&dst, &src);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");

    tcase_add_test(tc, test_size_units);
    tcase_add_test(tc, test_size_rejects);
    tcase_add_test(tc, test_duration_units);
    tcase_add_test(tc, test_duration_rejects);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_set_every_type);
    tcase_add_test(tc, test_set_errors);
    tcase_add_test(tc, test_set_err_may_be_null);
    tcase_add_test(tc, test_file_values);
    tcase_add_test(tc, test_file_empty);
    tcase_add_test(tc, test_file_errors);
    tcase_add_test(tc, test_file_missing);
    tcase_add_test(tc, test_shipped_file_is_defaults);
    tcase_add_test(tc, test_env);
    tcase_add_test(tc, test_env_admin_token_alias);
    tcase_add_test(tc, test_env_bad_value);
    tcase_add_test(tc, test_env_every_key);
    tcase_add_test(tc, test_reloadable_keys);
    tcase_add_test(tc, test_apply_reloadable);
    tcase_add_test(tc, test_dump_defaults);
    tcase_add_test(tc, test_dump_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

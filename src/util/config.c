/*
 * The server's configuration (see config.h).
 *
 * DESIGN
 *
 * Every option is one row of options[] below, as in Redis's
 * static_configs[]: its name "section.key", its type, where it lives in
 * struct config (offsetof and sizeof), its default in text form, its
 * bounds, and whether SIGHUP may change it. Everything else is generic
 * code driven by that table:
 *
 *   - config_init() parses each default text through set_value(), the same
 *     path user values take, so a default can never bypass validation (a
 *     bad default is a bug and panics at start-up);
 *   - the YAML loader walks libyaml's event stream, which must be a mapping
 *     of sections to mappings of keys to scalars, and hands each scalar to
 *     set_value() with "FILE:LINE: " as the message prefix;
 *   - the environment maps STRATA_<SECTION>_<KEY> (upper case, '.' -> '_')
 *     to the row, plus the alias STRATA_ADMIN_TOKEN for auth.admin_token;
 *   - config_dump() prints each row back in a form set_value() accepts.
 *
 * Loading a file or the environment works on a copy of the struct and
 * commits it only on success, so a failed load leaves the caller's config
 * untouched.
 *
 * VALUE SYNTAX
 *
 * Sizes: a number with an optional unit, B, KB, MB, GB, TB (powers of 1000)
 * or KiB, MiB, GiB, TiB (powers of 1024); no unit means bytes. Durations:
 * ms, s, m, h, d; no unit means milliseconds. Blanks may separate number
 * and unit. Size units match case-insensitively ("16kib"); duration units
 * only in lower case, since "M" could be read as months. A decimal point is
 * allowed ("1.5GiB", "0.5s") when the result is a whole number of bytes or
 * milliseconds: "1.5B" and "0.1ms" are rejected, nothing is rounded. Signs,
 * empty strings, overflow and trailing junk are rejected. Whole numbers are
 * plain decimal digits. Booleans are true/false/yes/no/on/off in any case.
 * In the file, an empty, "~" or "null" plain scalar is the empty string.
 */
#include "util/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "util/log.h"
#include "util/strbuf.h"

#define KIB  (UINT64_C(1) << 10)
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)
#define SEC  UINT64_C(1000)
#define HOUR (3600 * SEC)
#define DAY  (24 * HOUR)

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

#define CONFIG_FILE_MAX (1024 * 1024) /* bytes; a config file is small */
#define CONFIG_WHY_MAX  200           /* room for the reason a value is bad */
#define ENV_PREFIX      "STRATA_"
#define ENV_ADMIN_TOKEN "STRATA_ADMIN_TOKEN"

enum opt_type {
    OPT_STRING,    /* char[width], with an optional check */
    OPT_SIZE,      /* uint64_t bytes */
    OPT_DURATION,  /* uint64_t milliseconds */
    OPT_UINT,      /* uint32_t or uint64_t, plain digits */
    OPT_BOOL,      /* bool */
    OPT_ENUM,      /* int, index into names */
    OPT_LOG_LEVEL, /* int holding enum log_level, via log_level_parse() */
};

struct option {
    const char *name;                   /* "section.key" */
    enum opt_type type;                 /* how the text is parsed */
    size_t offset;                      /* offsetof the field in struct config */
    size_t width;                       /* sizeof the field */
    const char *def;                    /* default, in text form */
    uint64_t min;                       /* bounds for sizes, durations, uints */
    uint64_t max;                       /* inclusive */
    const char *const *names;           /* OPT_ENUM: allowed values by index */
    const char *(*check)(const char *); /* OPT_STRING: reason it is bad, or NULL */
    bool secret;                        /* OPT_STRING: dumped as "<set>" or "" */
    bool reloadable;                    /* SIGHUP may change it */
};

/* ------------------------------------------------------------------ */
/* Numbers with units                                                  */

struct unit {
    const char *name; /* suffix as written */
    uint64_t mult;    /* bytes or milliseconds per unit */
};

/* Both tables ascending by mult; the first row is also the bare unit. */
/* clang-format off */
static const struct unit size_units[] = {
    {"B", 1},
    {"KB", UINT64_C(1000)},          {"KiB", KIB},
    {"MB", UINT64_C(1000000)},       {"MiB", MIB},
    {"GB", UINT64_C(1000000000)},    {"GiB", GIB},
    {"TB", UINT64_C(1000000000000)}, {"TiB", UINT64_C(1) << 40},
};
/* clang-format on */

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", SEC}, {"m", 60 * SEC}, {"h", HOUR}, {"d", DAY},
};

/* Reads one or more decimal digits at *sp; false on none or overflow. */
static bool parse_digits(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;

    if (!IS_DIGIT(*s))
        return false;
    for (; IS_DIGIT(*s); s++) {
        unsigned d = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *sp = s;
    *out = v;
    return true;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;

        a = b;
        b = t;
    }
    return a;
}

/*
 * Parses "<digits>[.<digits>][blanks]<unit>" exactly. The fraction is
 * frac / scale (trailing zeros dropped); frac * mult / scale must be whole.
 * Dividing mult and scale by their gcd first keeps every product below
 * mult, so nothing overflows before the final checked addition.
 */
static bool parse_scaled(const char *s, const struct unit *units, size_t n, bool icase,
                         uint64_t *out)
{
    uint64_t whole, frac = 0, scale = 1, mult = 0, v;
    const char *blank;

    if (!parse_digits(&s, &whole))
        return false;
    if (*s == '.') {
        const char *f = ++s;
        const char *end;

        while (IS_DIGIT(*s))
            s++;
        if (s == f)
            return false;
        for (end = s; end > f && end[-1] == '0'; end--)
            ;
        if (end - f > 18)
            return false;
        for (; f < end; f++) {
            frac = frac * 10 + (uint64_t)(*f - '0');
            scale *= 10;
        }
    }
    for (blank = s; *s == ' ' || *s == '\t'; s++)
        ;
    if (*s == '\0') {
        if (s != blank)
            return false;
        mult = units[0].mult;
    }
    for (size_t i = 0; i < n && !mult; i++) {
        if (icase ? !strcasecmp(s, units[i].name) : !strcmp(s, units[i].name))
            mult = units[i].mult;
    }
    if (!mult || whole > UINT64_MAX / mult)
        return false;
    v = whole * mult;
    if (frac) {
        uint64_t g = gcd(mult, scale);
        uint64_t part;

        if (frac % (scale / g))
            return false;
        part = frac / (scale / g) * (mult / g);
        if (v > UINT64_MAX - part)
            return false;
        v += part;
    }
    *out = v;
    return true;
}

bool config_parse_size(const char *s, uint64_t *out)
{
    return parse_scaled(s, size_units, ST_ARRAY_SIZE(size_units), true, out);
}

bool config_parse_duration_ms(const char *s, uint64_t *out)
{
    return parse_scaled(s, duration_units, ST_ARRAY_SIZE(duration_units), false, out);
}

/* Formats v in the largest unit that divides it exactly ("64MB", "10s"). */
static void format_scaled(uint64_t v, const struct unit *units, size_t n, char *buf, size_t len)
{
    size_t i = n - 1;

    if (v == 0)
        i = 0;
    while (i > 0 && v % units[i].mult)
        i--;
    snprintf(buf, len, "%llu%s", (unsigned long long)(v / units[i].mult), units[i].name);
}

/* ------------------------------------------------------------------ */
/* The option table                                                     */

/* Indexed by enum log_level; parsed with log_level_parse(). */
static const char *const level_names[] = {
    [ST_LOG_DEBUG] = "debug", [ST_LOG_INFO] = "info",   [ST_LOG_NOTICE] = "notice",
    [ST_LOG_WARN] = "warn",   [ST_LOG_ERROR] = "error", NULL,
};

static const char *const sync_names[] = {
    [CONFIG_SYNC_ALWAYS] = "always",
    [CONFIG_SYNC_INTERVAL] = "interval",
    [CONFIG_SYNC_NEVER] = "never",
    NULL,
};

_Static_assert(sizeof(enum config_sync) == sizeof(int), "enum options are stored as int");

#define FIELD(f) .offset = offsetof(struct config, f), .width = sizeof(((struct config *)0)->f)
#define OPT(n, t, f, d, ...)                                                                       \
    {                                                                                              \
        .name = n, .type = OPT_##t, FIELD(f), .def = d, __VA_ARGS__                                \
    }
#define RELOAD        .reloadable = true
#define FIXED         .reloadable = false
#define RANGE(lo, hi) .min = (lo), .max = (hi)

static const char *check_addr(const char *v)
{
    const char *colon = strrchr(v, ':');
    const char *p;
    uint64_t port;

    if (!colon || colon == v)
        return "is not host:port";
    p = colon + 1;
    if (!parse_digits(&p, &port) || *p || port > 65535)
        return "has no valid port (0-65535)";
    if (v[0] == '[' && colon[-1] != ']')
        return "is not [ipv6]:port";
    return NULL;
}

static const char *check_nonempty(const char *v)
{
    return *v ? NULL : "must not be empty";
}

static const char *check_token(const char *v)
{
    for (; *v; v++) {
        if (*v < 0x21 || *v > 0x7e)
            return "may hold only printable ASCII without blanks";
    }
    return NULL;
}

/* The options; etc/strata.yaml documents each one and must match. */
static const struct option options[] = {
    OPT("server.ingest_listen", STRING, server.ingest_listen, "0.0.0.0:8080", FIXED,
        .check = check_addr),
    OPT("server.query_listen", STRING, server.query_listen, "0.0.0.0:8081", FIXED,
        .check = check_addr),
    OPT("server.max_connections", UINT, server.max_connections, "1000", RELOAD, RANGE(1, 1000000)),
    OPT("server.header_timeout", DURATION, server.header_timeout_ms, "10s", RELOAD, RANGE(1, DAY)),
    OPT("server.body_timeout", DURATION, server.body_timeout_ms, "60s", RELOAD, RANGE(1, DAY)),
    OPT("server.idle_timeout", DURATION, server.idle_timeout_ms, "60s", RELOAD, RANGE(1, DAY)),
    OPT("server.write_timeout", DURATION, server.write_timeout_ms, "60s", RELOAD, RANGE(1, DAY)),
    OPT("server.shutdown_timeout", DURATION, server.shutdown_timeout_ms, "10s", RELOAD,
        RANGE(1, DAY)),
    OPT("storage.data_dir", STRING, storage.data_dir, "./data", FIXED, .check = check_nonempty),
    OPT("storage.memtable_size", SIZE, storage.memtable_size, "64MB", FIXED, RANGE(MIB, 64 * GIB)),
    OPT("storage.sync", ENUM, storage.sync, "always", FIXED, .names = sync_names),
    OPT("storage.sync_interval", DURATION, storage.sync_interval_ms, "10ms", FIXED, RANGE(1, HOUR)),
    OPT("storage.max_frozen_memtables", UINT, storage.max_frozen_memtables, "4", FIXED,
        RANGE(1, 64)),
    OPT("storage.truncate_corrupt_wal", BOOL, storage.truncate_corrupt_wal, "false", FIXED),
    OPT("storage.wal_file_size", SIZE, storage.wal_file_size, "64MiB", FIXED, RANGE(MIB, 4 * GIB)),
    OPT("auth.enabled", BOOL, auth.enabled, "true", FIXED),
    OPT("auth.admin_token", STRING, auth.admin_token, "", FIXED, .check = check_token,
        .secret = true),
    OPT("limits.max_body_bytes", SIZE, limits.max_body_bytes, "64MB", RELOAD, RANGE(KIB, 16 * GIB)),
    OPT("limits.max_inflight_body_bytes", SIZE, limits.max_inflight_body_bytes, "1GiB", RELOAD,
        RANGE(MIB, 1024 * GIB)),
    OPT("limits.max_header_bytes", SIZE, limits.max_header_bytes, "16KB", RELOAD, RANGE(KIB, MIB)),
    OPT("limits.max_query_rows", UINT, limits.max_query_rows, "100000", RELOAD,
        RANGE(1, 1000000000)),
    OPT("limits.query_timeout", DURATION, limits.query_timeout_ms, "30s", RELOAD, RANGE(1, DAY)),
    OPT("limits.query_memory", SIZE, limits.query_memory, "64MiB", RELOAD, RANGE(MIB, 64 * GIB)),
    OPT("limits.max_tenants", UINT, limits.max_tenants, "10000", FIXED, RANGE(1, 10000000)),
    OPT("limits.max_tables_per_tenant", UINT, limits.max_tables_per_tenant, "1000", FIXED,
        RANGE(1, 1000000)),
    OPT("limits.max_schema_versions", UINT, limits.max_schema_versions, "1000", FIXED,
        RANGE(1, 1000000)),
    OPT("limits.max_keys_per_tenant", UINT, limits.max_keys_per_tenant, "100", FIXED,
        RANGE(1, 1000000)),
    OPT("mvcc.history_retention", DURATION, mvcc.history_retention_ms, "1h", FIXED,
        RANGE(0, 365 * DAY)),
    OPT("mvcc.max_snapshot_ttl", DURATION, mvcc.max_snapshot_ttl_ms, "24h", RELOAD,
        RANGE(SEC, 365 * DAY)),
    OPT("jobs.threads", UINT, jobs.threads, "2", FIXED, RANGE(1, 64)),
    OPT("jobs.flush_interval", DURATION, jobs.flush_interval_ms, "1s", FIXED, RANGE(10, HOUR)),
    OPT("jobs.compaction_interval", DURATION, jobs.compaction_interval_ms, "10s", FIXED,
        RANGE(10, DAY)),
    OPT("jobs.checkpoint_interval", DURATION, jobs.checkpoint_interval_ms, "60s", FIXED,
        RANGE(10, DAY)),
    OPT("compaction.fanout", UINT, compaction.fanout, "4", FIXED, RANGE(2, 64)),
    OPT("compaction.base_size", SIZE, compaction.base_size, "4MiB", FIXED, RANGE(KIB, 64 * GIB)),
    OPT("compaction.max_segments", UINT, compaction.max_segments, "24", FIXED, RANGE(2, 100000)),
    OPT("ingest.idempotency_window", DURATION, ingest.idempotency_window_ms, "24h", FIXED,
        RANGE(SEC, 30 * DAY)),
    OPT("ingest.idempotency_max_keys", UINT, ingest.idempotency_max_keys, "1000000", FIXED,
        RANGE(1, 100000000)),
    OPT("metrics.require_auth", BOOL, metrics.require_auth, "false", RELOAD),
    OPT("log.level", LOG_LEVEL, log.level, "info", RELOAD, .names = level_names),
    OPT("log.access_log", STRING, log.access_log, "", RELOAD),
};

#define N_OPTIONS ST_ARRAY_SIZE(options)

/* ------------------------------------------------------------------ */
/* The table's generic code                                            */

static const struct option *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (!strcmp(options[i].name, name))
            return &options[i];
    }
    return NULL;
}

static void *field(struct config *cfg, const struct option *o)
{
    return (char *)cfg + o->offset;
}

static const void *cfield(const struct config *cfg, const struct option *o)
{
    return (const char *)cfg + o->offset;
}

/* Formats a number of o's type, as its text form spells it. */
static void format_number(const struct option *o, uint64_t v, char *buf, size_t len)
{
    if (o->type == OPT_SIZE)
        format_scaled(v, size_units, ST_ARRAY_SIZE(size_units), buf, len);
    else if (o->type == OPT_DURATION)
        format_scaled(v, duration_units, ST_ARRAY_SIZE(duration_units), buf, len);
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

static void list_names(const struct option *o, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; o->names[i] && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", o->names[i]);
}

/* Parses a number of o's type into *v and checks it against o's bounds. */
static bool parse_number(const struct option *o, const char *v, uint64_t *u, char *why, size_t n)
{
    static const char *const what[] = {
        [OPT_SIZE] = "is not a size (e.g. 64MB, 16KiB, 4096)",
        [OPT_DURATION] = "is not a duration (e.g. 10ms, 30s, 5m, 1h, 7d)",
        [OPT_UINT] = "is not a whole number",
    };
    char bound[32];
    const char *p = v;
    bool ok;

    if (o->type == OPT_SIZE)
        ok = config_parse_size(v, u);
    else if (o->type == OPT_DURATION)
        ok = config_parse_duration_ms(v, u);
    else
        ok = parse_digits(&p, u) && *p == '\0';
    if (!ok) {
        snprintf(why, n, "'%.64s' %s", v, what[o->type]);
        return false;
    }
    if (*u < o->min || *u > o->max) {
        format_number(o, *u < o->min ? o->min : o->max, bound, sizeof(bound));
        snprintf(why, n, "'%.64s' is %s the %s %s", v, *u < o->min ? "below" : "above",
                 *u < o->min ? "minimum" : "maximum", bound);
        return false;
    }
    return true;
}

/* Even entries are false, odd ones true. */
static const char *const bool_names[] = {"false", "true", "no", "yes", "off", "on"};

/* Parses v as o's type into cfg, or explains in why and leaves cfg alone. */
static bool parse_value(struct config *cfg, const struct option *o, const char *v, char *why,
                        size_t n)
{
    enum log_level level;
    const char *reason;
    char names[96];
    uint64_t u;
    int i;

    switch (o->type) {
    case OPT_STRING:
        if (strlen(v) >= o->width) {
            snprintf(why, n, "'%.32s...' is longer than %zu bytes", v, o->width - 1);
            return false;
        }
        if (o->check && (reason = o->check(v))) {
            snprintf(why, n, "'%.64s' %s", v, reason);
            return false;
        }
        st_strlcpy(field(cfg, o), v, o->width);
        return true;
    case OPT_SIZE:
    case OPT_DURATION:
    case OPT_UINT:
        if (!parse_number(o, v, &u, why, n))
            return false;
        if (o->width == sizeof(uint32_t))
            *(uint32_t *)field(cfg, o) = (uint32_t)u;
        else
            *(uint64_t *)field(cfg, o) = u;
        return true;
    case OPT_BOOL:
        for (i = 0; i < (int)ST_ARRAY_SIZE(bool_names); i++) {
            if (!strcasecmp(v, bool_names[i])) {
                *(bool *)field(cfg, o) = i % 2;
                return true;
            }
        }
        snprintf(why, n, "'%.64s' is not a boolean (true/false, yes/no, on/off)", v);
        return false;
    case OPT_ENUM:
    case OPT_LOG_LEVEL:
        for (i = 0; o->names[i] && strcasecmp(v, o->names[i]); i++)
            ;
        if (!o->names[i] && o->type == OPT_LOG_LEVEL && log_level_parse(v, &level))
            i = (int)level; /* an alias such as "warning" */
        if (o->names[i]) {
            *(int *)field(cfg, o) = i;
            return true;
        }
        list_names(o, names, sizeof(names));
        snprintf(why, n, "'%.64s' is not one of %s", v, names);
        return false;
    }
    ST_BUG("option '%s' has a bad type", o->name);
}

/* Sets o from v; where ("file:3: ", "") starts the message on failure. */
static enum st_status set_value(struct config *cfg, const struct option *o, const char *v,
                                const char *where, struct err *err)
{
    char why[CONFIG_WHY_MAX];

    if (!parse_value(cfg, o, v, why, sizeof(why)))
        return err_set(err, ST_EINVAL, "%sbad value for '%s': %s", where, o->name, why);
    return ST_OK;
}

/* Writes o's current value of cfg in the form set_value() accepts. */
static void format_value(const struct config *cfg, const struct option *o, char *buf, size_t len)
{
    const char *s;

    switch (o->type) {
    case OPT_STRING:
        s = cfield(cfg, o);
        snprintf(buf, len, "%s", !o->secret ? s : *s ? "<set>" : "");
        return;
    case OPT_SIZE:
    case OPT_DURATION:
    case OPT_UINT:
        format_number(o,
                      o->width == sizeof(uint32_t) ? *(const uint32_t *)cfield(cfg, o)
                                                   : *(const uint64_t *)cfield(cfg, o),
                      buf, len);
        return;
    case OPT_BOOL:
        snprintf(buf, len, "%s", *(const bool *)cfield(cfg, o) ? "true" : "false");
        return;
    case OPT_ENUM:
    case OPT_LOG_LEVEL:
        snprintf(buf, len, "%s", o->names[*(const int *)cfield(cfg, o)]);
        return;
    }
    ST_BUG("option '%s' has a bad type", o->name);
}

void config_init(struct config *cfg)
{
    struct err err;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (set_value(cfg, &options[i], options[i].def, "", &err))
            ST_BUG("default of '%s': %s", options[i].name, err.msg);
    }
}

enum st_status config_set(struct config *cfg, const char *key, const char *value, struct err *err)
{
    const struct option *o = find_option(key);

    if (!o)
        return err_set(err, ST_EINVAL, "unknown key '%.100s'", key);
    return set_value(cfg, o, value, "", err);
}

bool config_key_is_reloadable(const char *key)
{
    const struct option *o = find_option(key);

    return o && o->reloadable;
}

static bool same_value(const struct config *a, const struct config *b, const struct option *o)
{
    if (o->type == OPT_STRING)
        return !strcmp(cfield(a, o), cfield(b, o));
    return !memcmp(cfield(a, o), cfield(b, o), o->width);
}

int config_apply_reloadable(struct config *live, const struct config *fresh)
{
    int changed = 0;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];

        if (!o->reloadable || same_value(live, fresh, o))
            continue;
        if (o->type == OPT_STRING)
            st_strlcpy(field(live, o), cfield(fresh, o), o->width);
        else
            memcpy(field(live, o), cfield(fresh, o), o->width);
        changed++;
    }
    return changed;
}

void config_dump(const struct config *cfg, struct strbuf *out)
{
    char buf[CONFIG_PATH_MAX];

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];

        format_value(cfg, o, buf, sizeof(buf));
        strbuf_addf(out, "%s: %s\n", o->name, buf);
    }
}

/* ------------------------------------------------------------------ */
/* Environment                                                          */

/* Finds the option whose STRATA_SECTION_KEY name is the len bytes at name. */
static const struct option *find_env_option(const char *name, size_t len)
{
    size_t plen = strlen(ENV_PREFIX);

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *p = options[i].name;
        size_t j = plen;

        for (; j < len && *p; j++, p++) {
            char want = *p == '.' ? '_' : (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;

            if (name[j] != want)
                break;
        }
        if (j == len && !*p)
            return &options[i];
    }
    return NULL;
}

enum st_status config_apply_env(struct config *cfg, char *const *envp,
                                void (*warn_unknown)(const char *name), struct err *err)
{
    struct config tmp = *cfg;
    char where[128];

    /* The alias goes first, so STRATA_AUTH_ADMIN_TOKEN wins over it. */
    for (int pass = 0; pass < 2; pass++) {
        for (char *const *e = envp; *e; e++) {
            const char *eq = strchr(*e, '=');
            const struct option *o;
            size_t len;
            bool alias;

            if (!eq || strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)))
                continue;
            len = (size_t)(eq - *e);
            alias = len == strlen(ENV_ADMIN_TOKEN) && !memcmp(*e, ENV_ADMIN_TOKEN, len);
            if (alias != (pass == 0))
                continue;
            o = alias ? find_option("auth.admin_token") : find_env_option(*e, len);
            if (!o) {
                if (warn_unknown) {
                    char *name = xstrndup(*e, len);

                    warn_unknown(name);
                    free(name);
                }
                continue;
            }
            snprintf(where, sizeof(where), "environment %.*s: ", (int)len, *e);
            if (set_value(&tmp, o, eq + 1, where, err))
                return ST_EINVAL;
        }
    }
    *cfg = tmp;
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* YAML file                                                            */

struct loader {
    yaml_parser_t parser;          /* libyaml's event parser */
    const char *path;              /* for messages */
    const char *text;              /* the whole file */
    size_t text_len;               /* its length */
    struct config *cfg;            /* the copy being filled */
    struct err *err;               /* where messages go */
    unsigned char seen[N_OPTIONS]; /* see load_mapping() */
};

ST_PRINTF(3, 4)
static enum st_status load_error(struct loader *ld, const yaml_mark_t *mark, const char *fmt, ...)
{
    char msg[ST_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return err_set(ld->err, ST_EINVAL, "%s:%zu: %s", ld->path, mark->line + 1, msg);
}

static enum st_status next_event(struct loader *ld, yaml_event_t *ev)
{
    yaml_parser_t *p = &ld->parser;
    yaml_mark_t mark;

    if (yaml_parser_parse(p, ev))
        return ST_OK;
    if (p->error == YAML_MEMORY_ERROR)
        ST_BUG("libyaml is out of memory");
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        mark = (yaml_mark_t){0};
        for (size_t i = 0; i < p->problem_offset && i < ld->text_len; i++)
            mark.line += ld->text[i] == '\n';
    } else {
        mark = p->problem_mark;
    }
    return load_error(ld, &mark, "yaml syntax error: %s%s%s", p->problem ? p->problem : "unknown",
                      p->context ? " " : "", p->context ? p->context : "");
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static bool is_null(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;

    return ev->type == YAML_SCALAR_EVENT && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*v || !strcmp(v, "~") || !strcasecmp(v, "null"));
}

static enum st_status load_value(struct loader *ld, const struct option *o, yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    char where[CONFIG_PATH_MAX + 32];

    if (ev->type == YAML_ALIAS_EVENT)
        return load_error(ld, &ev->start_mark,
                          "value of '%s' is an alias; aliases are not supported", o->name);
    if (ev->type != YAML_SCALAR_EVENT)
        return load_error(ld, &ev->start_mark, "value of '%s' must be a scalar", o->name);
    if (strlen(v) != ev->data.scalar.length)
        return load_error(ld, &ev->start_mark, "value of '%s' holds a NUL byte", o->name);
    snprintf(where, sizeof(where), "%s:%zu: ", ld->path, ev->start_mark.line + 1);
    return set_value(ld->cfg, o, is_null(ev) ? "" : v, where, ld->err);
}

/* The first option of section name, or NULL if there is no such section. */
static const struct option *find_section(const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (!strncmp(options[i].name, name, len) && options[i].name[len] == '.')
            return &options[i];
    }
    return NULL;
}

/*
 * Reads the pairs of a mapping up to its MAPPING-END: "section: mapping"
 * pairs at the top level (section is NULL), "key: scalar" pairs inside a
 * section. seen[] marks keys with 1 and sections (by their first option)
 * with 2, to catch duplicates.
 */
static enum st_status load_mapping(struct loader *ld, const char *section)
{
    const char *what = section ? "key" : "section";
    unsigned char bit = section ? 1 : 2;
    const struct option *o;
    yaml_event_t ev;
    enum st_status rc;
    char name[128];

    for (;;) {
        if ((rc = next_event(ld, &ev)))
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = load_error(ld, &ev.start_mark, "%s names must be scalars", what);
            goto out_event;
        }
        snprintf(name, sizeof(name), "%s%s%s", section ? section : "", section ? "." : "",
                 (const char *)ev.data.scalar.value);
        o = NULL;
        if (strlen(name) == ev.data.scalar.length + (section ? strlen(section) + 1 : 0))
            o = section ? find_option(name) : find_section(name); /* else a NUL in the name */
        if (!o)
            rc = load_error(ld, &ev.start_mark, "unknown %s '%.100s'", what, name);
        else if (ld->seen[o - options] & bit)
            rc = load_error(ld, &ev.start_mark, "duplicate %s '%s'", what, name);
        if (rc)
            goto out_event;
        ld->seen[o - options] |= bit;
        yaml_event_delete(&ev);

        if ((rc = next_event(ld, &ev)))
            return rc;
        if (section)
            rc = load_value(ld, o, &ev);
        else if (ev.type == YAML_MAPPING_START_EVENT)
            rc = load_mapping(ld, name);
        else if (!is_null(&ev))
            rc = load_error(ld, &ev.start_mark, "section '%s' must be a mapping of keys", name);
        if (rc)
            goto out_event;
        yaml_event_delete(&ev);
    }
out_event:
    yaml_event_delete(&ev);
    return rc;
}

/* Reads the stream: nothing at all, or one document holding a mapping. */
static enum st_status load_stream(struct loader *ld)
{
    yaml_event_t ev;
    enum st_status rc;
    int docs = 0;

    for (;;) {
        if ((rc = next_event(ld, &ev)))
            return rc;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            return ST_OK;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++)
                rc = load_error(ld, &ev.start_mark, "only one yaml document is allowed");
            break;
        case YAML_MAPPING_START_EVENT:
            rc = load_mapping(ld, NULL);
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        default:
            if (!is_null(&ev))
                rc = load_error(ld, &ev.start_mark, "the top level must be a mapping of sections");
            break;
        }
        yaml_event_delete(&ev);
        if (rc)
            return rc;
    }
}

/* Reads the whole file at path into text (caller frees with strbuf_release). */
static enum st_status read_file(const char *path, struct strbuf *text, struct err *err)
{
    FILE *f = fopen(path, "r");
    char chunk[4096];
    size_t got;
    bool failed;
    int errnum;

    if (!f) {
        errnum = errno;
        return err_set_errno(err, errnum == ENOENT ? ST_ENOTFOUND : ST_EIO, errnum,
                             "cannot open config '%s'", path);
    }
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0 && text->len <= CONFIG_FILE_MAX)
        strbuf_add(text, chunk, got);
    failed = ferror(f);
    errnum = errno;
    fclose(f);
    if (failed)
        return err_set_errno(err, ST_EIO, errnum, "cannot read config '%s'", path);
    if (text->len > CONFIG_FILE_MAX)
        return err_set(err, ST_EINVAL, "config '%s' is larger than 1MiB", path);
    return ST_OK;
}

enum st_status config_load_file(struct config *cfg, const char *path, struct err *err)
{
    struct strbuf text = STRBUF_INIT;
    struct config tmp = *cfg;
    struct loader ld;
    enum st_status rc;

    if ((rc = read_file(path, &text, err)))
        goto out_text;
    memset(&ld, 0, sizeof(ld));
    ld.path = path;
    ld.text = text.buf;
    ld.text_len = text.len;
    ld.cfg = &tmp;
    ld.err = err;
    if (!yaml_parser_initialize(&ld.parser))
        ST_BUG("libyaml is out of memory");
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text.buf, text.len);
    rc = load_stream(&ld);
    yaml_parser_delete(&ld.parser);
    if (rc == ST_OK)
        *cfg = tmp;
out_text:
    strbuf_release(&text);
    return rc;
}

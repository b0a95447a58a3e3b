/*
 * Persistence across restarts on the real binary: the catalog (tenants,
 * keys and their revocations, tables, schema versions, deleted tables)
 * and the data (upserts, updates, deletes, history for as_of reads,
 * Idempotency-Key answers) come back the same after a graceful stop
 * (SIGTERM) and after kill -9, and again after several restarts in a
 * row with writes in between. New writes after a restart get versions
 * above every old one, and a table re-created under a deleted table's
 * name does not bring the old rows back.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static const char flights[] = "{\"name\": \"flights\", \"fields\": ["
                              "{\"name\": \"id\", \"type\": \"int64\"},"
                              "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                              "{\"name\": \"origin\", \"type\": \"string\"}"
                              "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";
static const char gone[] = "{\"name\": \"gone\", \"fields\": [{\"name\": \"id\", \"type\": "
                           "\"int64\"}, {\"name\": \"v\", \"type\": \"string\"}], "
                           "\"primary_key\": [\"id\"]}";

/* What populate() wrote and verify() expects back. */
struct state {
    char *rw;          /* acme read/write/manage key */
    char *revoked;     /* acme key revoked before the restart */
    char *g;           /* globex key */
    char rw_id[17];    /* its id */
    long long v_first; /* version of the first acme batch */
    long long v_idem;  /* version answered to Idempotency-Key "idem-1" */
    long long v_last;  /* the version after populate() */
    int restarts;      /* how many verify() rounds wrote their own row */
};

static void state_free(struct state *st)
{
    free(st->rw);
    free(st->revoked);
    free(st->g);
}

static void expect_origin(const struct srv *s, const char *tenant, const char *key,
                          const char *token, long long as_of, const char *want)
{
    struct hresp r;
    int code = api_get_record(s, tenant, "flights", key, token, as_of, &r);

    if (want) {
        ck_assert_msg(code == 200, "%s/%s at %lld: %d %s", tenant, key, as_of, code, r.body);
        ck_assert_str_eq(json_string_value(api_get(&r, "record.origin")), want);
    } else {
        ck_assert_msg(code == 404, "%s/%s at %lld: %d %s, want 404", tenant, key, as_of, code,
                      r.body);
    }
    hresp_free(&r);
}

static void populate(struct srv *s, struct state *st)
{
    char body[8192];
    char path[128];
    char revoked_id[17];
    struct hresp r;
    size_t n = 0;

    memset(st, 0, sizeof(*st));
    api_create_tenant(s, "acme");
    api_create_tenant(s, "globex");
    api_create_tenant(s, "doomed");
    st->rw = api_make_key(s, "acme", "[\"read\", \"write\", \"manage\"]", st->rw_id);
    st->revoked = api_make_key(s, "acme", "[\"read\"]", revoked_id);
    st->g = api_make_key(s, "globex", "[\"read\", \"write\"]", NULL);
    api_create_table(s, "acme", st->rw, flights);
    api_create_table(s, "acme", st->rw, gone);
    api_create_table(s, "globex", NULL, flights);

    for (int i = 1; i <= 50; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "{\"id\": %d, \"ts\": %d, \"origin\": \"o%d\"}\n", i, i, i);
    st->v_first = api_ingest(s, "acme", "flights", st->rw, body);
    api_ingest(s, "acme", "gone", st->rw, "{\"id\": 1, \"v\": \"ghost\"}\n");
    api_ingest(s, "globex", "flights", st->g, "{\"id\": 1, \"ts\": 0, \"origin\": \"globex\"}\n");
    api_req(s->ingest_port, "POST", "/v1/tenants/acme/tables/flights/records", st->rw,
            API_NDJSON "Idempotency-Key: idem-1\r\n",
            "{\"id\": 100, \"ts\": 0, \"origin\": \"idem\"}\n", &r);
    api_expect(&r, 200);
    st->v_idem = api_int(&r, "version");
    hresp_free(&r);
    api_ingest(s, "acme", "flights", st->rw, "{\"id\": 1, \"ts\": 0, \"origin\": \"updated\"}\n");
    api_req(s->ingest_port, "DELETE", "/v1/tenants/acme/tables/flights/records/2", st->rw, NULL,
            NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);

    /* Catalog changes after the data: a schema version, deletions, a revocation. */
    api_req(s->query_port, "PUT", "/v1/tenants/acme/tables/flights/schema", st->rw, NULL,
            "{\"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": \"ts\", \"type\": "
            "\"timestamp\"}, {\"name\": \"origin\", \"type\": \"string\"}, {\"name\": \"gate\", "
            "\"type\": \"string\", \"default\": \"G0\"}]}",
            &r);
    api_expect(&r, 200);
    hresp_free(&r);
    api_req(s->query_port, "DELETE", "/v1/tenants/acme/tables/gone", st->rw, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    api_req(s->query_port, "DELETE", "/v1/tenants/doomed", s->token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    snprintf(path, sizeof(path), "/v1/tenants/acme/keys/%s", revoked_id);
    api_req(s->query_port, "DELETE", path, s->token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    api_req(s->query_port, "PUT", "/v1/tenants/globex/quotas", s->token, NULL,
            "{\"max_records_per_sec\": 777}", &r);
    api_expect(&r, 200);
    hresp_free(&r);
    st->v_last = api_version(s, "acme", NULL);
}

/* Checks everything populate() and earlier verify() rounds left. */
static void verify(struct srv *s, struct state *st)
{
    struct hresp r;
    json_t *t;
    char key[32], want[32];

    /* The catalog. */
    api_req(s->query_port, "GET", "/v1/tenants", s->token, NULL, NULL, &r);
    api_expect(&r, 200);
    t = api_get(&r, "tenants");
    ck_assert_uint_eq(json_array_size(t), 2);
    ck_assert_ptr_null(strstr(r.body, "doomed"));
    ck_assert_ptr_nonnull(strstr(r.body, "777"));
    hresp_free(&r);
    api_req(s->query_port, "GET", "/v1/tenants/acme/keys", s->token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "keys")), 1);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(api_get(&r, "keys"), 0), "id")),
        st->rw_id);
    hresp_free(&r);
    api_req(s->query_port, "GET", "/v1/tenants/acme/tables", st->revoked, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    api_req(s->query_port, "GET", "/v1/tenants/acme/tables/flights", st->rw, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "schema_version"), 2);
    ck_assert_uint_eq(json_array_size(api_get(&r, "schema_versions")), 2);
    hresp_free(&r);
    api_req(s->query_port, "GET", "/v1/tenants/acme/tables/gone", st->rw, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_req(s->query_port, "GET", "/v1/tenants/globex/tables", st->g, NULL, NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);

    /* The data, under the newest schema, and its history. */
    ck_assert_int_ge(api_version(s, "acme", st->rw), st->v_last);
    expect_origin(s, "acme", "1", st->rw, 0, "updated");
    expect_origin(s, "acme", "1", st->rw, st->v_first, "o1");
    expect_origin(s, "acme", "2", st->rw, 0, NULL);
    expect_origin(s, "acme", "2", st->rw, st->v_first, "o2");
    for (int i = 3; i <= 50; i++) {
        snprintf(key, sizeof(key), "%d", i);
        snprintf(want, sizeof(want), "o%d", i);
        expect_origin(s, "acme", key, st->rw, 0, want);
    }
    ck_assert_int_eq(api_get_record(s, "acme", "flights", "3", st->rw, 0, &r), 200);
    ck_assert_str_eq(json_string_value(api_get(&r, "record.gate")), "G0");
    ck_assert_int_eq(api_int(&r, "record_version"), st->v_first);
    hresp_free(&r);
    expect_origin(s, "acme", "100", st->rw, 0, "idem");
    expect_origin(s, "globex", "1", st->g, 0, "globex");
    for (int i = 1; i <= st->restarts; i++) {
        snprintf(key, sizeof(key), "%d", 1000 + i);
        snprintf(want, sizeof(want), "after-%d", i);
        expect_origin(s, "acme", key, st->rw, 0, want);
    }

    /* The Idempotency-Key answer survived: replayed, nothing written. */
    {
        long long before = api_version(s, "acme", NULL);

        api_req(s->ingest_port, "POST", "/v1/tenants/acme/tables/flights/records", st->rw,
                API_NDJSON "Idempotency-Key: idem-1\r\n",
                "{\"id\": 100, \"ts\": 0, \"origin\": \"again\"}\n", &r);
        api_expect(&r, 200);
        ck_assert(hresp_header_has(&r, "Idempotent-Replayed", "true"));
        ck_assert_int_eq(api_int(&r, "version"), st->v_idem);
        hresp_free(&r);
        ck_assert_int_eq(api_version(s, "acme", NULL), before);
        expect_origin(s, "acme", "100", st->rw, 0, "idem");
    }

    /* New writes go on above every old version. */
    {
        char body[128];
        long long v;

        st->restarts++;
        snprintf(body, sizeof(body), "{\"id\": %d, \"ts\": 0, \"origin\": \"after-%d\"}\n",
                 1000 + st->restarts, st->restarts);
        v = api_ingest(s, "acme", "flights", st->rw, body);
        ck_assert_int_gt(v, st->v_last);
        st->v_last = v;
    }

    /* "gone" re-created: empty, whatever its old rows were. */
    api_create_table(s, "acme", st->rw, gone);
    ck_assert_int_eq(api_get_record(s, "acme", "gone", "1", st->rw, 0, &r), 404);
    hresp_free(&r);
    api_req(s->query_port, "DELETE", "/v1/tenants/acme/tables/gone", st->rw, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    st->v_last = api_version(s, "acme", NULL);
}

/* Stops s with sig (SIGTERM: graceful, must exit 0) and starts next on its data. */
static void restart(struct srv *s, struct srv *next, int sig)
{
    char data_dir[HARNESS_PATH_MAX];
    struct srv_opts o = {.data_dir = data_dir};

    snprintf(data_dir, sizeof(data_dir), "%s", s->data_dir);
    if (sig == SIGKILL)
        srv_kill(s);
    else
        srv_stop(s, 10000);
    srv_start(next, &o);
}

START_TEST(test_sigterm_restart)
{
    struct srv s1, s2;
    struct state st;

    srv_start(&s1, NULL);
    populate(&s1, &st);
    restart(&s1, &s2, SIGTERM);
    verify(&s2, &st);
    srv_stop(&s2, 5000);
    state_free(&st);
}
END_TEST

START_TEST(test_sigkill_restart)
{
    struct srv s1, s2;
    struct state st;

    srv_start(&s1, NULL);
    populate(&s1, &st);
    restart(&s1, &s2, SIGKILL);
    verify(&s2, &st);
    srv_stop(&s2, 5000);
    state_free(&st);
}
END_TEST

START_TEST(test_repeated_restarts)
{
    static const int sigs[] = {SIGKILL, SIGKILL, SIGTERM, SIGKILL, SIGTERM};
    struct srv s[2];
    struct state st;
    int cur = 0;

    srv_start(&s[0], NULL);
    populate(&s[0], &st);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        restart(&s[cur], &s[1 - cur], sigs[i]);
        cur = 1 - cur;
        verify(&s[cur], &st);
    }
    ck_assert_int_eq(st.restarts, 5);
    srv_stop(&s[cur], 5000);
    state_free(&st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("restart");
    TCase *tc = harness_tcase("restart", 30);

    harness_init();
    tcase_add_test(tc, test_sigterm_restart);
    tcase_add_test(tc, test_sigkill_restart);
    tcase_add_test(tc, test_repeated_restarts);
    suite_add_tcase(s, tc);
    return harness_run(s);
}

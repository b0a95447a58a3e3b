/*
 * Integration tests of the strata process's life: start-up, the ready
 * file and log lines, the version and help commands, configuration errors
 * (exit code 2 naming the key and line), graceful stop on SIGTERM/SIGINT,
 * config reload on SIGHUP, admin-token bootstrap and persistence, restart
 * after kill -9, the access log, and metrics authentication. Each test
 * starts its own server (harness.h) and most stop it expecting exit 0.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "harness.h"

#ifndef STRATA_EXPECTED_VERSION
#error "meson passes -DSTRATA_EXPECTED_VERSION"
#endif

/* GET /health on both listeners answers 200 {"status":"ok"}. */
static void assert_both_healthy(const struct srv *s)
{
    struct hresp r;

    http_get(s->ingest_port, "/health", NULL, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    http_get(s->query_port, "/health", NULL, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
}

static int post_2000(const struct srv *s);

static void assert_exit_code(const struct run_result *r, int want, const char *what)
{
    ck_assert_msg(r->code == want, "%s: exit code %d, want %d\nstdout: %s\nstderr: %s", what,
                  r->code, want, r->out, r->err);
}

/* ---- start-up ----------------------------------------------------------- */

/* Recovery runs with the listeners open: live says 200, ready says 503. */
/* strata admin: the catalog's admin endpoints from the command line. */
/*
 * Online backup: a copy made while the server runs starts as a server of
 * its own with everything written before the backup (in segments and in
 * the WAL), and nothing written after.
 */
START_TEST(test_backup_restores)
{
    static const char def[] =
        "{\"name\":\"t\",\"fields\":[{\"name\":\"id\",\"type\":\"int64\"},"
        "{\"name\":\"v\",\"type\":\"string\"}],\"primary_key\":[\"id\"]}";
    struct srv s, b;
    struct srv_opts o;
    struct hresp r;
    char body[HARNESS_PATH_MAX + 64], path[HARNESS_PATH_MAX + 32];

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    api_create_table(&s, "acme", NULL, def);
    api_ingest(&s, "acme", "t", s.token, "{\"id\":1,\"v\":\"in a segment\"}\n");
    api_req(s.query_port, "POST", "/v1/admin/checkpoint", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    api_ingest(&s, "acme", "t", s.token, "{\"id\":2,\"v\":\"only in the WAL\"}\n");

    snprintf(path, sizeof(path), "%s/backup", s.dir);
    snprintf(body, sizeof(body), "{\"path\":\"%s\"}", path);
    api_req(s.query_port, "POST", "/v1/admin/backup", s.token, NULL, body, &r);
    api_expect(&r, 200);
    ck_assert_int_ge(api_int(&r, "files_copied"), 4);
    hresp_free(&r);
    /* The same path again: it exists. A relative path and a bad body: 400. */
    api_req(s.query_port, "POST", "/v1/admin/backup", s.token, NULL, body, &r);
    api_expect(&r, 409);
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/admin/backup", s.token, NULL, "{\"path\":\"rel/dir\"}", &r);
    api_expect(&r, 400);
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/admin/backup", s.token, NULL, "{\"dir\":\"/x\"}", &r);
    api_expect(&r, 400);
    hresp_free(&r);
    api_ingest(&s, "acme", "t", s.token, "{\"id\":3,\"v\":\"after the backup\"}\n");

    memset(&o, 0, sizeof(o));
    o.data_dir = path;
    srv_start(&b, &o);
    ck_assert_int_eq(api_get_record(&b, "acme", "t", "1", b.token, 0, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "in a segment"));
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&b, "acme", "t", "2", b.token, 0, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "only in the WAL"));
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&b, "acme", "t", "3", b.token, 0, &r), 404);
    hresp_free(&r);
    srv_stop(&b, 5000);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_admin_cli)
{
    struct srv s;
    struct run_result r;
    char url[64];

    srv_start(&s, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.query_port);
    {
        const char *argv[] = {"admin", "tenant-create", "acme",  "--url",
                              url,     "--token",       s.token, NULL};

        run_strata(argv, NULL, 5000, &r);
        assert_exit_code(&r, 0, "admin tenant-create");
        ck_assert_msg(strstr(r.out, "\"name\":\"acme\""), "%s", r.out);
        run_free(&r);
        /* A second create is refused by the server: exit 1, the error on stderr. */
        run_strata(argv, NULL, 5000, &r);
        assert_exit_code(&r, 1, "admin tenant-create again");
        ck_assert_msg(strstr(r.err, "already_exists"), "%s", r.err);
        run_free(&r);
    }
    {
        const char *argv[] = {"admin", "key-create", "acme",  "read,write", "--url",
                              url,     "--token",    s.token, NULL};

        run_strata(argv, NULL, 5000, &r);
        assert_exit_code(&r, 0, "admin key-create");
        ck_assert_msg(strstr(r.out, "\"token\":\"sk_"), "%s", r.out);
        ck_assert_msg(strstr(r.out, "[\"read\",\"write\"]"), "%s", r.out);
        run_free(&r);
    }
    {
        const char *argv[] = {"admin", "quotas", "acme",    "500",   "0",
                              "--url", url,      "--token", s.token, NULL};

        run_strata(argv, NULL, 5000, &r);
        assert_exit_code(&r, 0, "admin quotas");
        ck_assert_msg(strstr(r.out, "\"max_records_per_sec\":500"), "%s", r.out);
        run_free(&r);
    }
    {
        const char *compact[] = {"admin", "compact-tenant", "acme", "--url", url, "--token",
                                 s.token, NULL};
        const char *ckpt[] = {"admin", "checkpoint", "--url", url, "--token", s.token, NULL};
        const char *missing[] = {"admin", "compact-table", "acme", "nope", "--url", url,
                                 "--token", s.token, NULL};

        run_strata(compact, NULL, 10000, &r);
        assert_exit_code(&r, 0, "admin compact-tenant");
        ck_assert_msg(strstr(r.out, "\"status\":\"done\""), "%s", r.out);
        run_free(&r);
        run_strata(ckpt, NULL, 10000, &r);
        assert_exit_code(&r, 0, "admin checkpoint");
        ck_assert_msg(strstr(r.out, "\"wal_files_removed\""), "%s", r.out);
        run_free(&r);
        run_strata(missing, NULL, 10000, &r);
        assert_exit_code(&r, 1, "admin compact-table of a missing table");
        ck_assert_msg(strstr(r.err, "not_found"), "%s", r.err);
        run_free(&r);
    }
    {
        /* Without the token: 401, exit 1. A bad name never reaches the server: exit 2. */
        const char *noauth[] = {"admin", "tenants", "--url", url, "--token", "wrong", NULL};
        const char *badname[] = {"admin", "tenant-delete", "a/b", "--url", url, NULL};

        run_strata(noauth, NULL, 5000, &r);
        assert_exit_code(&r, 1, "admin tenants with a wrong token");
        ck_assert_msg(strstr(r.err, "unauthenticated"), "%s", r.err);
        run_free(&r);
        run_strata(badname, NULL, 5000, &r);
        assert_exit_code(&r, 2, "admin tenant-delete a/b");
        run_free(&r);
    }
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_ready_probe_503_while_recovering)
{
    static const char *const env[] = {"STRATA_TEST_RECOVERY_DELAY_MS=1500", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    char *retry_after;
    char *log;
    char *p;
    int qport, iport;
    long long deadline;

    srv_spawn(&s, &o);
    ck_assert(srv_log_wait(&s, "listening query=", 5000));
    log = srv_log(&s);
    p = strstr(log, "listening ingest=127.0.0.1:");
    ck_assert_ptr_nonnull(p);
    iport = atoi(p + strlen("listening ingest=127.0.0.1:"));
    p = strstr(log, "listening query=127.0.0.1:");
    ck_assert_ptr_nonnull(p);
    qport = atoi(p + strlen("listening query=127.0.0.1:"));
    free(log);

    http_get(qport, "/health/ready", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_msg(strstr(r.body, "recovering"), "%s", r.body);
    retry_after = hresp_header(&r, "Retry-After");
    ck_assert_ptr_nonnull(retry_after);
    free(retry_after);
    hresp_free(&r);
    http_get(iport, "/health/live", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    hresp_free(&r);
    http_request(iport, "POST", "/v1/tenants/acme/tables/t/records", s.token, "{}", &r);
    ck_assert_int_eq(r.status, 503);
    hresp_free(&r);
    /* No ready file until recovery is done. */
    ck_assert_ptr_null(harness_read_file(s.ready_file, NULL));

    deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        char *ready = harness_read_file(s.ready_file, NULL);

        if (ready) {
            free(ready);
            break;
        }
        harness_sleep_ms(20);
    }
    http_get(qport, "/health/ready", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_ready_file_and_log_lines)
{
    struct srv s;
    char want[128];
    char *ready;

    srv_start(&s, NULL);
    ck_assert_int_ne(s.ingest_port, s.query_port);
    ck_assert_int_eq(s.ready_pid, (int)s.pid);

    /* The ready file is complete JSON naming both listeners on 127.0.0.1. */
    ready = harness_read_file(s.ready_file, NULL);
    ck_assert_ptr_nonnull(ready);
    snprintf(want, sizeof(want), "127.0.0.1:%d", s.ingest_port);
    ck_assert_msg(strstr(ready, want), "ready file %s lacks %s", ready, want);
    snprintf(want, sizeof(want), "127.0.0.1:%d", s.query_port);
    ck_assert_msg(strstr(ready, want), "ready file %s lacks %s", ready, want);
    free(ready);

    /* The temp file it was renamed from is gone: DIR holds only what we expect. */
    {
        DIR *d = opendir(s.dir);
        struct dirent *e;

        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d)) != NULL) {
            const char *n = e->d_name;

            ck_assert_msg(!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "data") ||
                              !strcmp(n, "ready.json") || !strcmp(n, "server.log"),
                          "unexpected file '%s' next to the ready file", n);
        }
        closedir(d);
    }

    snprintf(want, sizeof(want), "listening ingest=127.0.0.1:%d", s.ingest_port);
    ck_assert_msg(srv_log_has(&s, want), "log lacks '%s'", want);
    snprintf(want, sizeof(want), "listening query=127.0.0.1:%d", s.query_port);
    ck_assert_msg(srv_log_has(&s, want), "log lacks '%s'", want);
    ck_assert_msg(srv_log_has(&s, "level=info"), "log lines lack level=info");

    assert_both_healthy(&s);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_data_dir_from_env_and_flag_precedence)
{
    struct srv s;
    char env_dir[HARNESS_PATH_MAX];
    char env_entry[HARNESS_PATH_MAX + 32];
    char path[HARNESS_PATH_MAX + 32];
    const char *env[] = {env_entry, NULL};
    struct srv_opts o = {.env = env, .no_admin_token = true};
    struct stat st;

    /* --data-dir beats STRATA_STORAGE_DATA_DIR: the token lands in the flag's dir. */
    harness_tmpdir(env_dir);
    snprintf(env_entry, sizeof(env_entry), "STRATA_STORAGE_DATA_DIR=%s", env_dir);
    srv_start(&s, &o);
    snprintf(path, sizeof(path), "%s/admin_token", s.data_dir);
    ck_assert_msg(stat(path, &st) == 0, "no admin_token in the --data-dir %s", s.data_dir);
    snprintf(path, sizeof(path), "%s/admin_token", env_dir);
    ck_assert_msg(stat(path, &st) != 0, "admin_token written to the env data dir");
    srv_stop(&s, 5000);

    /* Without the flag the environment decides. */
    o.no_data_dir_flag = true;
    srv_start(&s, &o);
    ck_assert_msg(stat(path, &st) == 0, "no admin_token in STRATA_STORAGE_DATA_DIR %s", env_dir);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_listen_address_in_use)
{
    struct srv a;
    struct srv b;
    char env_entry[64];
    const char *env[] = {env_entry, NULL};
    struct srv_opts o = {.env = env};
    int st;

    srv_start(&a, NULL);
    snprintf(env_entry, sizeof(env_entry), "STRATA_SERVER_INGEST_LISTEN=127.0.0.1:%d",
             a.ingest_port);
    srv_spawn(&b, &o);
    st = srv_wait(&b, 5000);
    if (st == -1) {
        srv_dump_log(&b, "second server did not fail");
        srv_kill(&b);
        ck_abort_msg("a server whose port is taken kept running");
    }
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "bind failure did not exit non-zero");
    ck_assert_msg(srv_log_has(&b, env_entry + strlen("STRATA_SERVER_INGEST_LISTEN=")),
                  "the error does not name the address");
    srv_stop(&a, 5000);
}
END_TEST

/* A server killed with -9 starts again on the same data dir, token intact. */
START_TEST(test_restart_after_kill9)
{
    struct srv_opts o = {.no_admin_token = true};
    struct srv s;
    char data_dir[HARNESS_PATH_MAX];
    char path[HARNESS_PATH_MAX + 32];
    char *before;
    char *after;

    srv_start(&s, &o);
    snprintf(path, sizeof(path), "%s/admin_token", s.data_dir);
    before = harness_read_file(path, NULL);
    ck_assert_ptr_nonnull(before);
    srv_kill(&s);

    snprintf(data_dir, sizeof(data_dir), "%s", s.data_dir);
    o.data_dir = data_dir;
    srv_start(&s, &o);
    assert_both_healthy(&s);
    after = harness_read_file(path, NULL);
    ck_assert_ptr_nonnull(after);
    ck_assert_str_eq(before, after);
    srv_stop(&s, 5000);
    free(before);
    free(after);
}
END_TEST

/* STRATA_* variables that name no key are not configuration errors. */
START_TEST(test_unknown_env_ignored)
{
    const char *env[] = {"STRATA_NO_SUCH_KEY=1", "STRATA_BIN=/bin/false", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;

    srv_start(&s, &o);
    assert_both_healthy(&s);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_access_log)
{
    char access_env[HARNESS_PATH_MAX + 32];
    char access_path[HARNESS_PATH_MAX];
    const char *env[] = {access_env, NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    long long deadline;
    char *log = NULL;

    harness_tmpdir(access_path);
    strcat(access_path, "/access.log");
    snprintf(access_env, sizeof(access_env), "STRATA_LOG_ACCESS_LOG=%s", access_path);
    srv_start(&s, &o);
    http_get(s.query_port, "/health/live", NULL, &r);
    hresp_free(&r);
    http_get(s.ingest_port, "/no-such-path", NULL, &r);
    hresp_free(&r);
    deadline = harness_now_ms() + 2000;
    for (;;) {
        free(log);
        log = harness_read_file(access_path, NULL);
        if ((log && strstr(log, "/no-such-path")) || harness_now_ms() > deadline)
            break;
        harness_sleep_ms(20);
    }
    ck_assert_msg(log != NULL, "no access log at %s", access_path);
    ck_assert_msg(strstr(log, "/health/live") && strstr(log, "200"), "access log: %s", log);
    ck_assert_msg(strstr(log, "/no-such-path") && strstr(log, "404"), "access log: %s", log);
    ck_assert_msg(!srv_log_has(&s, "/no-such-path"), "access lines went to the diagnostics log");
    free(log);
    srv_stop(&s, 5000);
}
END_TEST

/* A data dir that cannot be used stops start-up with an error naming it. */
START_TEST(test_data_dir_unusable)
{
    char dir[HARNESS_PATH_MAX];
    char file[HARNESS_PATH_MAX + 16];
    const char *argv[] = {"serve", "--data-dir", file, NULL};
    struct run_result r;

    harness_tmpdir(dir);
    snprintf(file, sizeof(file), "%s/plain-file", dir);
    harness_write_file(file, "not a directory\n");
    run_strata(argv, NULL, 5000, &r);
    ck_assert_msg(r.code > 0, "data dir is a file: exit code %d\n%s", r.code, r.err);
    ck_assert_msg(strstr(r.err, "plain-file"), "error does not name the data dir: %s", r.err);
    run_free(&r);
}
END_TEST

/* ---- commands ----------------------------------------------------------- */

START_TEST(test_version)
{
    const char *argv[] = {"version", NULL};
    struct run_result r;

    run_strata(argv, NULL, 5000, &r);
    assert_exit_code(&r, 0, "strata version");
    ck_assert_msg(strstr(r.out, STRATA_EXPECTED_VERSION), "version output '%s' lacks %s", r.out,
                  STRATA_EXPECTED_VERSION);
    run_free(&r);
}
END_TEST

START_TEST(test_help)
{
    const char *argv[] = {"help", NULL};
    struct run_result r;

    run_strata(argv, NULL, 5000, &r);
    assert_exit_code(&r, 0, "strata help");
    ck_assert_msg(strstr(r.out, "serve") && strstr(r.out, "version"),
                  "help does not list serve and version: %s", r.out);
    run_free(&r);
}
END_TEST

START_TEST(test_unknown_command_and_flag)
{
    const char *cmd[] = {"frobnicate", NULL};
    const char *flag[] = {"serve", "--no-such-flag", NULL};
    struct run_result r;

    run_strata(cmd, NULL, 5000, &r);
    assert_exit_code(&r, 2, "strata frobnicate");
    ck_assert_msg(strstr(r.err, "frobnicate"), "error does not name the command: %s", r.err);
    run_free(&r);

    run_strata(flag, NULL, 5000, &r);
    assert_exit_code(&r, 2, "strata serve --no-such-flag");
    ck_assert_msg(strstr(r.err, "no-such-flag"), "error does not name the flag: %s", r.err);
    run_free(&r);
}
END_TEST

/* ---- configuration errors ----------------------------------------------- */

/* Runs `strata serve --config FILE` on yaml; expects exit 2 naming key and line. */
static void expect_config_error(const char *yaml, const char *key, int line)
{
    char dir[HARNESS_PATH_MAX];
    char path[HARNESS_PATH_MAX + 16];
    char colon_line[32];
    char word_line[32];
    const char *argv[] = {"serve", "--config", path, "--data-dir", dir, NULL};
    struct run_result r;

    harness_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/strata.yaml", dir);
    harness_write_file(path, yaml);
    run_strata(argv, NULL, 5000, &r);
    assert_exit_code(&r, 2, key);
    ck_assert_msg(strstr(r.err, key), "message does not name '%s': %s", key, r.err);
    snprintf(colon_line, sizeof(colon_line), "strata.yaml:%d", line);
    snprintf(word_line, sizeof(word_line), "line %d", line);
    ck_assert_msg(strstr(r.err, colon_line) || strstr(r.err, word_line),
                  "message does not name line %d: %s", line, r.err);
    run_free(&r);
}

START_TEST(test_config_unknown_key)
{
    expect_config_error("server:\n"
                        "  max_connections: 10\n"
                        "  ingest_lisen: \"127.0.0.1:0\"\n",
                        "ingest_lisen", 3);
}
END_TEST

START_TEST(test_config_bad_values)
{
    expect_config_error("log:\n"
                        "  level: info\n"
                        "limits:\n"
                        "  max_header_bytes: 8KB\n"
                        "  max_body_bytes: lots\n",
                        "max_body_bytes", 5);
    expect_config_error("server:\n"
                        "  idle_timeout: soon\n",
                        "idle_timeout", 2);
    expect_config_error("storage:\n"
                        "  sync: sometimes\n",
                        "sync", 2);
    expect_config_error("log:\n"
                        "  level: loud\n",
                        "level", 2);
    expect_config_error("nosuchsection:\n"
                        "  key: 1\n",
                        "nosuchsection", 1);
}
END_TEST

START_TEST(test_config_bad_env_value)
{
    const char *argv[] = {"serve", "--data-dir", NULL, NULL};
    const char *env[] = {"STRATA_LIMITS_MAX_BODY_BYTES=lots", NULL};
    char dir[HARNESS_PATH_MAX];
    struct run_result r;

    harness_tmpdir(dir);
    argv[2] = dir;
    run_strata(argv, env, 5000, &r);
    assert_exit_code(&r, 2, "bad STRATA_LIMITS_MAX_BODY_BYTES");
    ck_assert_msg(strstr(r.err, "STRATA_LIMITS_MAX_BODY_BYTES") ||
                      strstr(r.err, "limits.max_body_bytes"),
                  "message does not name the variable: %s", r.err);
    run_free(&r);
}
END_TEST

START_TEST(test_config_missing_file)
{
    char dir[HARNESS_PATH_MAX];
    char path[HARNESS_PATH_MAX + 16];
    const char *argv[] = {"serve", "--config", path, "--data-dir", dir, NULL};
    struct run_result r;

    harness_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/missing.yaml", dir);
    run_strata(argv, NULL, 5000, &r);
    ck_assert_msg(r.code > 0, "missing config file: exit code %d", r.code);
    ck_assert_msg(strstr(r.err, "missing.yaml"), "message does not name the file: %s", r.err);
    run_free(&r);
}
END_TEST

/* Environment variables override the file. */
START_TEST(test_env_overrides_file)
{
    const char *env[] = {"STRATA_LIMITS_MAX_BODY_BYTES=1MB", NULL};
    struct srv_opts o = {.config_yaml = "limits:\n  max_body_bytes: 1KiB\n", .env = env};
    struct srv s;

    srv_start(&s, &o);
    ck_assert_int_eq(post_2000(&s), 405);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- signals ------------------------------------------------------------ */

/*
 * The ready file promises a server that handles signals: SIGTERM at once
 * after it appears is still a graceful stop with exit code 0.
 */
START_TEST(test_sigterm_right_after_ready)
{
    struct srv s;

    for (int i = 0; i < 20; i++) {
        srv_start(&s, NULL);
        srv_stop(&s, 5000);
    }
}
END_TEST

/* An idle keep-alive connection must not hold up a graceful stop. */
static void stop_with_idle_connection(int sig)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;
    int st;

    srv_start(&s, NULL);
    c = hc_open(s.query_port);
    ck_assert(hc_sendstr(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
    ck_assert_int_eq(hc_read(c, &r, 3000, false), HREAD_OK);
    ck_assert_health_ok(&r);
    hresp_free(&r);

    srv_signal(&s, sig);
    ck_assert_msg(hc_wait_closed(c, 3000), "the idle connection was not closed on stop");
    st = srv_wait(&s, 3000);
    if (st == -1)
        srv_dump_log(&s, "still running 3 s after the signal");
    ck_assert_msg(st != -1, "server still running 3 s after signal %d", sig);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "signal %d: not a clean exit 0", sig);
    hc_close(c);
}

START_TEST(test_sigterm_with_idle_keepalive)
{
    stop_with_idle_connection(SIGTERM);
}
END_TEST

START_TEST(test_sigint_with_idle_keepalive)
{
    stop_with_idle_connection(SIGINT);
}
END_TEST

/*
 * A request whose headers are in but whose body is pending is given until
 * server.shutdown_timeout; the listeners stop accepting at once.
 */
START_TEST(test_sigterm_waits_for_pending_body_until_deadline)
{
    const char *env[] = {"STRATA_SERVER_SHUTDOWN_TIMEOUT=600ms", "STRATA_SERVER_BODY_TIMEOUT=10s",
                         NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hconn *c;
    struct hconn *late;
    long long t0;
    long elapsed;
    int st;

    srv_start(&s, &o);
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"));
    harness_sleep_ms(100); /* let the server read the headers */

    t0 = harness_now_ms();
    srv_signal(&s, SIGTERM);
    harness_sleep_ms(150);

    /* Stopped accepting: a new connection is refused or closed unanswered. */
    late = hc_try_open(s.ingest_port);
    if (late) {
        struct hresp r;
        enum hread rc;

        hc_sendstr(late, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        rc = hc_read(late, &r, 1000, false);
        ck_assert_msg(rc != HREAD_OK || r.status == 503,
                      "a connection accepted after SIGTERM got %d", r.status);
        if (rc == HREAD_OK)
            hresp_free(&r);
        hc_close(late);
    }

    st = srv_wait(&s, 5000);
    elapsed = (long)(harness_now_ms() - t0);
    if (st == -1)
        srv_dump_log(&s, "still running 5 s after SIGTERM");
    ck_assert_msg(st != -1, "server did not exit within 5 s of SIGTERM");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "not a clean exit 0");
    ck_assert_msg(elapsed >= 450, "exited after %ld ms, before the 600 ms shutdown timeout",
                  elapsed);
    ck_assert_msg(elapsed < 3000, "exited after %ld ms, long after the 600 ms timeout", elapsed);
    hc_close(c);
}
END_TEST

/* A request in flight when SIGTERM arrives is finished, with Connection: close. */
START_TEST(test_sigterm_finishes_in_flight_request)
{
    const char *env[] = {"STRATA_SERVER_SHUTDOWN_TIMEOUT=3s", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hconn *c;
    struct hresp r;
    int st;

    srv_start(&s, &o);
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab"));
    harness_sleep_ms(100);
    srv_signal(&s, SIGTERM);
    harness_sleep_ms(100);
    ck_assert(hc_sendstr(c, "cde"));
    ck_assert_int_eq(hc_read(c, &r, 3000, false), HREAD_OK);
    ck_assert_msg(r.status == 405, "status %d, want 405\n%s", r.status, r.head);
    ck_assert_msg(hresp_header_has(&r, "Connection", "close"),
                  "response during shutdown lacks Connection: close\n%s", r.head);
    hresp_free(&r);
    ck_assert(hc_wait_closed(c, 2000));
    st = srv_wait(&s, 3000);
    ck_assert_msg(st != -1, "server did not exit after its last request");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "not a clean exit 0");
    hc_close(c);
}
END_TEST

/* A client that stopped reading does not hold the stop past the deadline. */
START_TEST(test_sigterm_with_stalled_reader)
{
    const char *env[] = {"STRATA_SERVER_SHUTDOWN_TIMEOUT=500ms", "STRATA_SERVER_WRITE_TIMEOUT=30s",
                         NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hconn *c;
    long long t0;
    int st;

    srv_start(&s, &o);
    c = hc_open(s.query_port);
    for (int i = 0; i < 500; i++)
        ck_assert(hc_sendstr(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    harness_sleep_ms(200);
    t0 = harness_now_ms();
    srv_signal(&s, SIGTERM);
    st = srv_wait(&s, 5000);
    if (st == -1)
        srv_dump_log(&s, "still running 5 s after SIGTERM");
    ck_assert_msg(st != -1, "a stalled reader kept the server running");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "not a clean exit 0");
    ck_assert_int_lt(harness_now_ms() - t0, 3000);
    hc_close(c);
}
END_TEST

/*
 * POST /health with Content-Length 2000; returns the status. The body is
 * sent only if no answer came within 200 ms of the headers: a 413 must
 * come from the Content-Length alone (and a client that sent a body the
 * server never read could lose the answer to a reset).
 */
static int post_2000(const struct srv *s)
{
    struct hconn *c = hc_open(s->ingest_port);
    static char body[2000];
    struct hresp r;
    enum hread rc;
    int status;

    memset(body, 'x', sizeof(body));
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"));
    rc = hc_read(c, &r, 200, false);
    if (rc == HREAD_TIMEOUT) {
        ck_assert(hc_send(c, body, sizeof(body)));
        rc = hc_read(c, &r, 3000, false);
    }
    ck_assert_msg(rc == HREAD_OK, "POST /health with 2000 bytes: no response (%d)", (int)rc);
    status = r.status;
    if (status == 413)
        ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    hc_close(c);
    return status;
}

/* Polls post_2000() until it stops answering old_status, for up to 3 s. */
static int post_2000_until_changed(const struct srv *s, int old_status)
{
    long long deadline = harness_now_ms() + 3000;
    int status;

    do {
        harness_sleep_ms(50);
        status = post_2000(s);
    } while (status == old_status && harness_now_ms() < deadline);
    return status;
}

START_TEST(test_sighup_reloads_limits)
{
    struct srv_opts o = {.config_yaml = "limits:\n  max_body_bytes: 1KiB\n"};
    struct srv s;

    srv_start(&s, &o);
    ck_assert_int_eq(post_2000(&s), 413);

    srv_write_config(&s, "limits:\n  max_body_bytes: 1MB\n");
    srv_signal(&s, SIGHUP);
    ck_assert_int_eq(post_2000_until_changed(&s, 413), 405);

    /* And back down again. */
    srv_write_config(&s, "limits:\n  max_body_bytes: 1024\n");
    srv_signal(&s, SIGHUP);
    ck_assert_int_eq(post_2000_until_changed(&s, 405), 413);
    assert_both_healthy(&s);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_sighup_invalid_config_keeps_old)
{
    struct srv_opts o = {.config_yaml = "limits:\n  max_body_bytes: 1KiB\n"};
    struct srv s;

    srv_start(&s, &o);
    ck_assert_int_eq(post_2000(&s), 413);
    ck_assert(!srv_log_has(&s, "level=error"));

    /* A bad value and a raised limit: nothing of the file may apply. */
    srv_write_config(&s, "limits:\n  max_body_bytes: 1MB\n  max_header_bytes: huge\n");
    srv_signal(&s, SIGHUP);
    ck_assert_msg(srv_log_wait(&s, "level=error", 3000), "no error logged for a bad reload");
    ck_assert_msg(srv_log_has(&s, "max_header_bytes"), "reload error does not name the key");
    assert_both_healthy(&s);
    ck_assert_int_eq(post_2000(&s), 413);

    /* A later good file still applies. */
    srv_write_config(&s, "limits:\n  max_body_bytes: 1MB\n");
    srv_signal(&s, SIGHUP);
    ck_assert_int_eq(post_2000_until_changed(&s, 413), 405);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_sighup_metrics_require_auth)
{
    struct srv_opts o = {.config_yaml = "metrics:\n  require_auth: false\n"};
    struct srv s;
    struct hresp r;
    long long deadline;

    srv_start(&s, &o);
    http_get(s.query_port, "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    hresp_free(&r);

    srv_write_config(&s, "metrics:\n  require_auth: true\n");
    srv_signal(&s, SIGHUP);
    deadline = harness_now_ms() + 3000;
    for (;;) {
        harness_sleep_ms(50);
        http_get(s.query_port, "/metrics", NULL, &r);
        if (r.status != 200 || harness_now_ms() > deadline)
            break;
        hresp_free(&r);
    }
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- admin token -------------------------------------------------------- */

static int admin_status(const struct srv *s, const char *token)
{
    struct hresp r;
    int status;

    http_get(s->query_port, "/v1/admin/status", token, &r);
    status = r.status;
    if (status == 401)
        ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    return status;
}

START_TEST(test_admin_token_bootstrap_and_persistence)
{
    struct srv_opts o = {.no_admin_token = true};
    struct srv s;
    char path[HARNESS_PATH_MAX + 32];
    char data_dir[HARNESS_PATH_MAX];
    struct stat st;
    char *token;
    char *again;
    size_t len;

    srv_start(&s, &o);
    snprintf(path, sizeof(path), "%s/admin_token", s.data_dir);
    ck_assert_msg(stat(path, &st) == 0, "no %s after first start", path);
    ck_assert_msg((st.st_mode & 0777) == 0600, "admin_token mode %o, want 600",
                  (unsigned)(st.st_mode & 0777));
    token = harness_read_file(path, &len);
    ck_assert_ptr_nonnull(token);
    while (len > 0 && (token[len - 1] == '\n' || token[len - 1] == '\r'))
        token[--len] = '\0';
    ck_assert_msg(len >= 16, "generated token '%s' is short", token);
    ck_assert_msg(srv_log_has(&s, "admin_token"), "the log does not say where the token is");

    ck_assert_int_eq(admin_status(&s, token), 200);
    ck_assert_int_eq(admin_status(&s, NULL), 401);
    ck_assert_int_eq(admin_status(&s, HARNESS_ADMIN_TOKEN), 401);
    srv_stop(&s, 5000);

    /* The second start on the same data dir reuses the token. */
    snprintf(data_dir, sizeof(data_dir), "%s", s.data_dir);
    o.data_dir = data_dir;
    srv_start(&s, &o);
    again = harness_read_file(path, NULL);
    ck_assert_ptr_nonnull(again);
    ck_assert_msg(strncmp(again, token, len) == 0, "token changed across restarts");
    ck_assert_int_eq(admin_status(&s, token), 200);
    srv_stop(&s, 5000);
    free(again);
    free(token);
}
END_TEST

START_TEST(test_admin_token_from_env_beats_config)
{
    const char *env[] = {"STRATA_ADMIN_TOKEN=env-token-abcdefghijklmnop", NULL};
    struct srv_opts o = {
        .config_yaml = "auth:\n  admin_token: config-token-abcdefghijklmnop\n",
        .env = env,
        .no_admin_token = true,
    };
    struct srv s;
    char path[HARNESS_PATH_MAX + 32];
    struct stat st;

    srv_start(&s, &o);
    ck_assert_int_eq(admin_status(&s, "env-token-abcdefghijklmnop"), 200);
    ck_assert_int_eq(admin_status(&s, "config-token-abcdefghijklmnop"), 401);
    snprintf(path, sizeof(path), "%s/admin_token", s.data_dir);
    ck_assert_msg(stat(path, &st) != 0, "a token was generated although one was configured");
    srv_stop(&s, 5000);

    o.env = NULL;
    srv_start(&s, &o);
    ck_assert_int_eq(admin_status(&s, "config-token-abcdefghijklmnop"), 200);
    ck_assert_int_eq(admin_status(&s, "env-token-abcdefghijklmnop"), 401);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_metrics_require_auth)
{
    struct srv_opts o = {.config_yaml = "metrics:\n  require_auth: true\n"};
    struct srv s;
    struct hresp r;

    srv_start(&s, &o);
    http_get(s.query_port, "/metrics", NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    http_get(s.ingest_port, "/metrics", "wrong-token", &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    http_get(s.query_port, "/metrics", s.token, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "strata_http_requests_total"), "metrics body: %.200s", r.body);
    hresp_free(&r);
    /* Health stays open for load balancers. */
    assert_both_healthy(&s);
    srv_stop(&s, 5000);
}
END_TEST

static Suite *lifecycle_suite(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc;

    tc = harness_tcase("startup", 30);
    tcase_add_test(tc, test_ready_file_and_log_lines);
    tcase_add_test(tc, test_ready_probe_503_while_recovering);
    tcase_add_test(tc, test_admin_cli);
    tcase_add_test(tc, test_backup_restores);
    tcase_add_test(tc, test_data_dir_from_env_and_flag_precedence);
    tcase_add_test(tc, test_listen_address_in_use);
    tcase_add_test(tc, test_restart_after_kill9);
    tcase_add_test(tc, test_unknown_env_ignored);
    tcase_add_test(tc, test_access_log);
    tcase_add_test(tc, test_env_overrides_file);
    tcase_add_test(tc, test_data_dir_unusable);
    suite_add_tcase(s, tc);

    tc = harness_tcase("commands", 30);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_unknown_command_and_flag);
    tcase_add_test(tc, test_config_unknown_key);
    tcase_add_test(tc, test_config_bad_values);
    tcase_add_test(tc, test_config_bad_env_value);
    tcase_add_test(tc, test_config_missing_file);
    suite_add_tcase(s, tc);

    tc = harness_tcase("signals", 30);
    tcase_add_test(tc, test_sigterm_right_after_ready);
    tcase_add_test(tc, test_sigterm_with_idle_keepalive);
    tcase_add_test(tc, test_sigint_with_idle_keepalive);
    tcase_add_test(tc, test_sigterm_waits_for_pending_body_until_deadline);
    tcase_add_test(tc, test_sigterm_finishes_in_flight_request);
    tcase_add_test(tc, test_sigterm_with_stalled_reader);
    tcase_add_test(tc, test_sighup_reloads_limits);
    tcase_add_test(tc, test_sighup_invalid_config_keeps_old);
    tcase_add_test(tc, test_sighup_metrics_require_auth);
    suite_add_tcase(s, tc);

    tc = harness_tcase("auth", 30);
    tcase_add_test(tc, test_admin_token_bootstrap_and_persistence);
    tcase_add_test(tc, test_admin_token_from_env_beats_config);
    tcase_add_test(tc, test_metrics_require_auth);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    harness_init();
    return harness_run(lifecycle_suite());
}

/*
 * Integration-test harness: starts the real strata binary and speaks raw
 * HTTP/1.1 to it over real sockets.
 *
 * A suite calls harness_init() once in main() (it makes one temporary base
 * directory that harness_fini() removes, whatever happened in the forked
 * tests). A test starts a server with srv_start(): the binary named by the
 * environment variable STRATA_BIN runs in a fresh directory under the base,
 * with both listeners on 127.0.0.1:0, its own data dir and --ready-file;
 * the harness waits for the ready file and reads the ports from it. The
 * server's stdout and stderr go to DIR/server.log, which the tests grep
 * and which is printed when a test fails.
 *
 * No test can hang or leak a server: Check times out each test and kills
 * its process group; the server dies with the test process
 * (PR_SET_PDEATHSIG); an atexit handler kills any server still running
 * when a failed assertion exits the test; sockets read with deadlines.
 */
#ifndef ST_TESTS_INTEGRATION_HARNESS_H
#define ST_TESTS_INTEGRATION_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <check.h>
#include <jansson.h>

#define HARNESS_PATH_MAX 1024

/* The admin token the harness hands to servers unless told otherwise. */
#define HARNESS_ADMIN_TOKEN "integration-admin-token-0123456789"

/* ---- process helpers ---------------------------------------------------- */

/* Creates the suite's base temporary directory and ignores SIGPIPE. */
void harness_init(void);
/* Removes the base directory recursively (call after srunner_run_all). */
void harness_fini(void);

/* Makes a fresh directory under the base; path gets HARNESS_PATH_MAX bytes. */
void harness_tmpdir(char *path);

/* Writes text to path (creating or truncating it); asserts on failure. */
void harness_write_file(const char *path, const char *text);
/*
 * Reads the whole file at path into a NUL-terminated buffer the caller
 * frees with free(); NULL if it cannot be read.
 */
char *harness_read_file(const char *path, size_t *len);

/* Milliseconds on the monotonic clock. */
long long harness_now_ms(void);
void harness_sleep_ms(long ms);

struct srv_opts {
    const char *config_yaml; /* written to DIR/strata.yaml and passed with --config */
    const char *const *env;  /* extra "NAME=value" entries, NULL-terminated */
    const char *const *args; /* extra arguments after "serve", NULL-terminated */
    bool no_admin_token;     /* do not set STRATA_ADMIN_TOKEN */
    bool no_data_dir_flag;   /* do not pass --data-dir */
    const char *data_dir;    /* reuse this data dir instead of DIR/data */
};

struct srv {
    pid_t pid;                          /* 0 once reaped */
    char dir[HARNESS_PATH_MAX];         /* per-server temporary directory */
    char data_dir[HARNESS_PATH_MAX];    /* DIR/data unless opts->data_dir */
    char ready_file[HARNESS_PATH_MAX];  /* DIR/ready.json */
    char config_path[HARNESS_PATH_MAX]; /* DIR/strata.yaml */
    char log_path[HARNESS_PATH_MAX];    /* DIR/server.log: stdout + stderr */
    int ingest_port;                    /* from the ready file */
    int query_port;                     /* from the ready file */
    int ready_pid;                      /* "pid" from the ready file */
    const char *token;                  /* admin token given to the server */
};

/*
 * Starts a server and waits (up to 10 s) for its ready file. Fails the
 * test (printing the server log) if it exits or never becomes ready.
 * opts may be NULL.
 */
void srv_start(struct srv *s, const struct srv_opts *opts);

/*
 * Starts the server without waiting for readiness; for start-up failures.
 * Returns the pid; the caller waits with srv_wait().
 */
pid_t srv_spawn(struct srv *s, const struct srv_opts *opts);

/*
 * Waits up to timeout_ms for the server to exit. Returns the raw wait
 * status, or -1 on timeout (the server is then still running).
 */
int srv_wait(struct srv *s, long timeout_ms);

/* Sends sig to the server. */
void srv_signal(struct srv *s, int sig);

/*
 * SIGTERM, then waits up to timeout_ms; asserts a clean exit with code 0
 * (printing the log otherwise; a server that does not exit is killed).
 */
void srv_stop(struct srv *s, long timeout_ms);

/* kill -9 and reap. */
void srv_kill(struct srv *s);

/* The server log so far; caller frees. Never NULL. */
char *srv_log(const struct srv *s);
/* True if the log contains needle. */
bool srv_log_has(const struct srv *s, const char *needle);
/* Polls the log for needle for up to timeout_ms. */
bool srv_log_wait(const struct srv *s, const char *needle, long timeout_ms);
/* Prints the server log to stderr, framed, for failed tests. */
void srv_dump_log(const struct srv *s, const char *why);

/* Replaces the config file (for SIGHUP tests). */
void srv_write_config(struct srv *s, const char *yaml);

/*
 * Runs STRATA_BIN with argv (argv[0] is supplied by the harness) and extra
 * env entries to completion (up to timeout_ms), capturing its output.
 * Returns the exit code, or -1 if it was killed or timed out.
 */
struct run_result {
    int code;     /* exit code, -1 if killed by a signal or timed out */
    char *out;    /* stdout, NUL-terminated, caller frees via run_free */
    char *err;    /* stderr, likewise */
    long elapsed; /* milliseconds */
};
void run_strata(const char *const *argv, const char *const *env, long timeout_ms,
                struct run_result *r);
void run_free(struct run_result *r);

/* ---- HTTP client -------------------------------------------------------- */

struct hconn {
    int fd;     /* -1 once closed */
    char *buf;  /* received bytes not yet consumed */
    size_t len; /* bytes in buf */
    size_t cap; /* allocated bytes */
    bool eof;   /* the peer closed (or reset) the connection */
};

struct hresp {
    int status;      /* e.g. 200 */
    char *head;      /* status line and headers, NUL-terminated */
    char *body;      /* decoded body, NUL-terminated */
    size_t body_len; /* bytes in body */
    bool chunked;    /* the body came with Transfer-Encoding: chunked */
    json_t *json;    /* body parsed as JSON, or NULL */
};

/* Connects to 127.0.0.1:port (2 s timeout). Fails the test on error. */
struct hconn *hc_open(int port);
/* Connects; returns NULL instead of failing (for refused connections). */
struct hconn *hc_try_open(int port);
void hc_close(struct hconn *c);

/*
 * Sends bytes; false if the peer has gone (EPIPE/ECONNRESET), which some
 * tests expect. Never raises SIGPIPE.
 */
bool hc_send(struct hconn *c, const void *data, size_t len);
bool hc_sendstr(struct hconn *c, const char *s);

/* Outcome of hc_read(). */
enum hread {
    HREAD_OK = 0,    /* one complete response in *r */
    HREAD_CLOSED,    /* connection closed before any byte of a response */
    HREAD_TIMEOUT,   /* nothing complete within the deadline */
    HREAD_MALFORMED, /* bytes that are not an HTTP/1.1 response, or a truncated one */
};

/*
 * Reads one response within timeout_ms. head_request says the response is
 * to a HEAD (no body). 1xx responses are returned on their own. On
 * HREAD_OK the caller frees *r with hresp_free().
 */
enum hread hc_read(struct hconn *c, struct hresp *r, long timeout_ms, bool head_request);

/*
 * Waits up to timeout_ms for the peer to close the connection with nothing
 * more sent. True on EOF or reset; false on timeout or if bytes arrive.
 */
bool hc_wait_closed(struct hconn *c, long timeout_ms);

void hresp_free(struct hresp *r);

/* The value of header name (case-insensitive) in a malloc'd string, or NULL. */
char *hresp_header(const struct hresp *r, const char *name);
/* True if header name is present and contains token (case-insensitive). */
bool hresp_header_has(const struct hresp *r, const char *name, const char *token);

/*
 * One request on a fresh connection: "METHOD path", optional bearer token
 * (NULL for none), optional body (sent with Content-Length when not
 * NULL). Fails the test if no response arrives within 3 s.
 */
void http_request(int port, const char *method, const char *path, const char *token,
                  const char *body, struct hresp *r);
#define http_get(port, path, token, r) http_request((port), "GET", (path), (token), NULL, (r))

/*
 * Asserts that r is an error response with the given status and JSON
 * {"error": {"code": code, "message": "..."}} (message non-empty).
 */
#define ck_assert_error(r, status, code)                                                           \
    hresp_assert_error((r), (status), (code), __FILE__, __LINE__)
void hresp_assert_error(const struct hresp *r, int status, const char *code, const char *file,
                        int line);

/* Asserts a 200 JSON response whose "status" is "ok". */
#define ck_assert_health_ok(r) hresp_assert_health_ok((r), __FILE__, __LINE__)
void hresp_assert_health_ok(const struct hresp *r, const char *file, int line);

/* Check suites: a test case with the harness's timeout and teardown. */
TCase *harness_tcase(const char *name, double timeout_s);
/* Runs a suite; returns the process exit code. */
int harness_run(Suite *s);

#endif

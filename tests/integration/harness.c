/*
 * Integration-test harness: process control for the real strata binary and
 * a small raw HTTP/1.1 client. See harness.h for how the pieces fit.
 *
 * Processes. srv_spawn() forks and execs $STRATA_BIN with a scrubbed
 * environment (the caller's STRATA_* variables are dropped so the test
 * decides the whole configuration), stdout and stderr appended to
 * DIR/server.log, stdin from /dev/null, signal dispositions reset and
 * PR_SET_PDEATHSIG so the server cannot outlive the test process. Every
 * running server is kept in a small registry; an atexit handler and the
 * test-case teardown kill and reap what is left and print its log, so a
 * failed assertion (which exits the forked test) leaves nothing behind.
 *
 * Client. struct hconn keeps the bytes received and not yet consumed, so
 * pipelined responses that arrive in one read are returned one by one.
 * hc_read() parses a status line and headers, then a body framed by
 * Content-Length, chunked encoding or the connection's end, using poll()
 * with a deadline so that no read can block a test forever.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_LIVE 8

static char base_dir[HARNESS_PATH_MAX];
static struct srv *live[MAX_LIVE];
static int tmp_seq;

/* ---- small utilities ---------------------------------------------------- */

long long harness_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static void *xalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fprintf(stderr, "harness: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup_n(const char *s, size_t n)
{
    char *p = xalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void harness_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_msg(f != NULL, "cannot create '%s': %s", path, strerror(errno));
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

char *harness_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t n = 0;
    size_t cap = 4096;
    char *buf;

    if (fd < 0)
        return NULL;
    buf = xalloc(cap);
    for (;;) {
        ssize_t got;

        if (cap - n < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        got = read(fd, buf + n, cap - n - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* dst = dir/name; asserts that it fits in HARNESS_PATH_MAX. */
static void path_join(char *dst, const char *dir, const char *name)
{
    int n = snprintf(dst, HARNESS_PATH_MAX, "%s/%s", dir, name);

    ck_assert_msg(n > 0 && n < HARNESS_PATH_MAX, "path too long: %s/%s", dir, name);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- registry of running servers ---------------------------------------- */

static void live_add(struct srv *s)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (!live[i]) {
            live[i] = s;
            return;
        }
    }
    ck_abort_msg("harness: more than %d servers at once", MAX_LIVE);
}

static void live_del(const struct srv *s)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == s)
            live[i] = NULL;
}

/* Kills and reaps every server still running; prints their logs. */
static void kill_leftovers(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        struct srv *s = live[i];

        if (!s || s->pid <= 0)
            continue;
        srv_dump_log(s, "test ended with the server still running");
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
        live[i] = NULL;
    }
}

void harness_init(void)
{
    const char *tmp = getenv("TMPDIR");

    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(base_dir, sizeof(base_dir), "%s/strata-integ-XXXXXX", tmp);
    if (!mkdtemp(base_dir)) {
        fprintf(stderr, "harness: mkdtemp '%s': %s\n", base_dir, strerror(errno));
        exit(1);
    }
    if (!getenv("STRATA_BIN")) {
        fprintf(stderr, "harness: STRATA_BIN is not set (run through meson test)\n");
        exit(1);
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_leftovers);
}

void harness_fini(void)
{
    const char *keep = getenv("HARNESS_KEEP");

    if (keep && *keep && strcmp(keep, "0") != 0) {
        fprintf(stderr, "harness: kept %s\n", base_dir);
        return;
    }
    rm_rf(base_dir);
}

void harness_tmpdir(char *path)
{
    int n =
        snprintf(path, HARNESS_PATH_MAX, "%s/t%d-%d-XXXXXX", base_dir, (int)getpid(), tmp_seq++);

    ck_assert_int_lt(n, HARNESS_PATH_MAX);
    ck_assert_msg(mkdtemp(path) != NULL, "mkdtemp: %s", strerror(errno));
}

/* ---- spawning ----------------------------------------------------------- */

/* Index of the entry for the same variable name in env[0..n), or -1. */
static int env_find(char **env, int n, const char *entry)
{
    size_t namelen = strcspn(entry, "=");

    for (int i = 0; i < n; i++)
        if (strncmp(env[i], entry, namelen) == 0 && env[i][namelen] == '=')
            return i;
    return -1;
}

static void env_put(char **env, int *n, const char *entry)
{
    int i = env_find(env, *n, entry);

    if (i >= 0)
        env[i] = (char *)entry;
    else
        env[(*n)++] = (char *)entry;
}

/*
 * The server's environment: ours without STRATA_* (so a developer's shell
 * cannot change a test), then defaults, then extra. Entries are borrowed.
 */
static char **build_env(const char *const *defaults, const char *const *extra)
{
    int cap = 16;
    int n = 0;
    char **env;

    for (char **e = environ; *e; e++)
        cap++;
    for (const char *const *e = defaults; e && *e; e++)
        cap++;
    for (const char *const *e = extra; e && *e; e++)
        cap++;
    env = xalloc((size_t)cap * sizeof(*env));
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "STRATA_", 7) != 0)
            env[n++] = *e;
    for (const char *const *e = defaults; e && *e; e++)
        env_put(env, &n, *e);
    for (const char *const *e = extra; e && *e; e++)
        env_put(env, &n, *e);
    env[n] = NULL;
    return env;
}

/*
 * Forks and execs the binary. out_path and err_path receive stdout and
 * stderr (the same path for both is fine: both are opened O_APPEND).
 */
static pid_t spawn(char *const *argv, char *const *envp, const char *out_path, const char *err_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        sigset_t all;
        int in, out, err;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        in = open("/dev/null", O_RDONLY);
        out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        err = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0 || err < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execve(argv[0], argv, envp);
        dprintf(2, "harness: exec '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

pid_t srv_spawn(struct srv *s, const struct srv_opts *opts)
{
    static const struct srv_opts none;
    char token_env[256];
    const char *defaults[4];
    const char *argv[32];
    int argc = 0;
    int nd = 0;
    char **envp;

    if (!opts)
        opts = &none;
    memset(s, 0, sizeof(*s));
    harness_tmpdir(s->dir);
    path_join(s->data_dir, s->dir, "data");
    if (opts->data_dir)
        ck_assert(snprintf(s->data_dir, sizeof(s->data_dir), "%s", opts->data_dir) <
                  HARNESS_PATH_MAX);
    path_join(s->ready_file, s->dir, "ready.json");
    path_join(s->config_path, s->dir, "strata.yaml");
    path_join(s->log_path, s->dir, "server.log");

    defaults[nd++] = "STRATA_SERVER_INGEST_LISTEN=127.0.0.1:0";
    defaults[nd++] = "STRATA_SERVER_QUERY_LISTEN=127.0.0.1:0";
    if (!opts->no_admin_token) {
        snprintf(token_env, sizeof(token_env), "STRATA_ADMIN_TOKEN=%s", HARNESS_ADMIN_TOKEN);
        defaults[nd++] = token_env;
        s->token = HARNESS_ADMIN_TOKEN;
    }
    defaults[nd] = NULL;

    argv[argc++] = getenv("STRATA_BIN");
    argv[argc++] = "serve";
    if (opts->config_yaml) {
        harness_write_file(s->config_path, opts->config_yaml);
        argv[argc++] = "--config";
        argv[argc++] = s->config_path;
    }
    if (!opts->no_data_dir_flag) {
        argv[argc++] = "--data-dir";
        argv[argc++] = s->data_dir;
    }
    argv[argc++] = "--ready-file";
    argv[argc++] = s->ready_file;
    for (const char *const *a = opts->args; a && *a; a++) {
        ck_assert_int_lt(argc, 30);
        argv[argc++] = *a;
    }
    argv[argc] = NULL;

    envp = build_env(defaults, opts->env);
    s->pid = spawn((char *const *)argv, envp, s->log_path, s->log_path);
    free(envp);
    live_add(s);
    return s->pid;
}

/* "host:port" -> port, or -1. */
static int parse_port(const char *hostport)
{
    const char *colon = hostport ? strrchr(hostport, ':') : NULL;
    char *end;
    long port;

    if (!colon)
        return -1;
    port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -1;
    return (int)port;
}

/* Reads the ready file if complete; true once both ports are known. */
static bool read_ready(struct srv *s)
{
    json_error_t jerr;
    json_t *j = json_load_file(s->ready_file, 0, &jerr);
    json_t *pid;

    if (!j)
        return false;
    s->ingest_port = parse_port(json_string_value(json_object_get(j, "ingest")));
    s->query_port = parse_port(json_string_value(json_object_get(j, "query")));
    pid = json_object_get(j, "pid");
    s->ready_pid = json_is_integer(pid) ? (int)json_integer_value(pid) : -1;
    json_decref(j);
    return s->ingest_port > 0 && s->query_port > 0;
}

void srv_start(struct srv *s, const struct srv_opts *opts)
{
    long long deadline;
    int in_fd;

    srv_spawn(s, opts);
    /*
     * inotify wakes us the moment the ready file is renamed into place, so
     * the tests act on readiness at once (and would catch a server that
     * announces it before it can handle signals); the 5 ms poll is the
     * fallback for an event that came before the watch.
     */
    in_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (in_fd >= 0 && inotify_add_watch(in_fd, s->dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        close(in_fd);
        in_fd = -1;
    }
    deadline = harness_now_ms() + 10000;
    for (;;) {
        char events[4096];
        int st;

        if (read_ready(s))
            break;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            live_del(s);
            srv_dump_log(s, "server exited before it was ready");
            ck_abort_msg("server exited before ready (status %s %d)",
                         WIFEXITED(st) ? "exit" : "signal",
                         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
        if (harness_now_ms() > deadline) {
            srv_dump_log(s, "no ready file after 10 s");
            srv_kill(s);
            ck_abort_msg("server not ready within 10 s");
        }
        if (in_fd >= 0) {
            struct pollfd pfd = {.fd = in_fd, .events = POLLIN};

            if (poll(&pfd, 1, 5) > 0)
                while (read(in_fd, events, sizeof(events)) > 0)
                    ;
        } else {
            harness_sleep_ms(5);
        }
    }
    if (in_fd >= 0)
        close(in_fd);
}

int srv_wait(struct srv *s, long timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    ck_assert_int_gt(s->pid, 0);
    for (;;) {
        int st;
        pid_t got = waitpid(s->pid, &st, WNOHANG);

        if (got == s->pid) {
            s->pid = 0;
            live_del(s);
            return st;
        }
        ck_assert_msg(got == 0, "waitpid: %s", strerror(errno));
        if (harness_now_ms() >= deadline)
            return -1;
        harness_sleep_ms(5);
    }
}

void srv_signal(struct srv *s, int sig)
{
    ck_assert_int_gt(s->pid, 0);
    ck_assert_int_eq(kill(s->pid, sig), 0);
}

void srv_kill(struct srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    live_del(s);
}

void srv_stop(struct srv *s, long timeout_ms)
{
    int st;

    srv_signal(s, SIGTERM);
    st = srv_wait(s, timeout_ms);
    if (st == -1) {
        srv_dump_log(s, "server did not exit after SIGTERM");
        srv_kill(s);
        ck_abort_msg("server still running %ld ms after SIGTERM", timeout_ms);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        srv_dump_log(s, "server did not exit cleanly");
        ck_abort_msg("server stopped with %s %d, want exit 0",
                     WIFEXITED(st) ? "exit code" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
}

char *srv_log(const struct srv *s)
{
    char *log = harness_read_file(s->log_path, NULL);

    return log ? log : xstrdup_n("", 0);
}

bool srv_log_has(const struct srv *s, const char *needle)
{
    char *log = srv_log(s);
    bool has = strstr(log, needle) != NULL;

    free(log);
    return has;
}

bool srv_log_wait(const struct srv *s, const char *needle, long timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        if (srv_log_has(s, needle))
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        harness_sleep_ms(10);
    }
}

void srv_dump_log(const struct srv *s, const char *why)
{
    char *log = srv_log(s);

    fprintf(stderr, "---- server log (%s): %s ----\n%s---- end of server log ----\n", s->log_path,
            why, log);
    free(log);
}

void srv_write_config(struct srv *s, const char *yaml)
{
    char tmp[HARNESS_PATH_MAX + 8];

    /* Replace atomically so the server never reads half a file. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->config_path);
    harness_write_file(tmp, yaml);
    ck_assert_int_eq(rename(tmp, s->config_path), 0);
}

void run_strata(const char *const *argv, const char *const *env, long timeout_ms,
                struct run_result *r)
{
    char dir[HARNESS_PATH_MAX];
    char out_path[HARNESS_PATH_MAX];
    char err_path[HARNESS_PATH_MAX];
    const char *full[32];
    const char *defaults[] = {"STRATA_SERVER_INGEST_LISTEN=127.0.0.1:0",
                              "STRATA_SERVER_QUERY_LISTEN=127.0.0.1:0", NULL};
    long long start = harness_now_ms();
    char **envp;
    pid_t pid;
    int n = 0;
    int st = 0;
    bool done = false;

    harness_tmpdir(dir);
    path_join(out_path, dir, "stdout");
    path_join(err_path, dir, "stderr");
    full[n++] = getenv("STRATA_BIN");
    for (const char *const *a = argv; a && *a; a++) {
        ck_assert_int_lt(n, 30);
        full[n++] = *a;
    }
    full[n] = NULL;
    envp = build_env(defaults, env);
    pid = spawn((char *const *)full, envp, out_path, err_path);
    free(envp);

    while (harness_now_ms() - start < timeout_ms) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            done = true;
            break;
        }
        harness_sleep_ms(5);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    r->elapsed = (long)(harness_now_ms() - start);
    r->code = done && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->out = harness_read_file(out_path, NULL);
    r->err = harness_read_file(err_path, NULL);
    if (!r->out)
        r->out = xstrdup_n("", 0);
    if (!r->err)
        r->err = xstrdup_n("", 0);
}

void run_free(struct run_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* ---- HTTP client -------------------------------------------------------- */

struct hconn *hc_try_open(int port)
{
    struct sockaddr_in sa;
    struct timeval tv = {2, 0};
    struct hconn *c;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return NULL;
    }
    c = xalloc(sizeof(*c));
    c->fd = fd;
    c->cap = 16384;
    c->buf = xalloc(c->cap);
    c->len = 0;
    c->eof = false;
    return c;
}

struct hconn *hc_open(int port)
{
    struct hconn *c = hc_try_open(port);

    ck_assert_msg(c != NULL, "connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return c;
}

void hc_close(struct hconn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

bool hc_send(struct hconn *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool hc_sendstr(struct hconn *c, const char *s)
{
    return hc_send(c, s, strlen(s));
}

/*
 * Waits up to timeout_ms for bytes and appends what arrives. Returns 1 if
 * bytes were read, 0 on EOF or reset (sets c->eof), -1 on timeout.
 */
static int fill(struct hconn *c, long timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    ssize_t n;
    int rc;

    if (c->eof)
        return 0;
    if (timeout_ms < 0)
        timeout_ms = 0;
    do {
        rc = poll(&pfd, 1, (int)timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return -1;
    if (c->cap - c->len < 4096) {
        c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf)
            abort();
    }
    do {
        n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        c->eof = true;
        return 0;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return 1;
}

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

static char *header_in(const char *head, const char *name)
{
    size_t namelen = strlen(name);
    const char *line = strstr(head, "\r\n");

    while (line) {
        const char *next;
        const char *v;
        const char *vend;

        line += 2;
        next = strstr(line, "\r\n");
        if (!next)
            next = line + strlen(line);
        if (strncasecmp(line, name, namelen) == 0 && line[namelen] == ':') {
            v = line + namelen + 1;
            while (v < next && (*v == ' ' || *v == '\t'))
                v++;
            vend = next;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            return xstrdup_n(v, (size_t)(vend - v));
        }
        line = *next ? next : NULL;
    }
    return NULL;
}

/*
 * Decodes a chunked body starting at p. Returns the number of bytes the
 * encoding used (body appended to out), 0 if incomplete, -1 if malformed.
 */
static long parse_chunked(const char *p, const char *end, char **out, size_t *outlen)
{
    const char *start = p;
    size_t cap = 256;
    size_t n = 0;
    char *body = xalloc(cap);

    for (;;) {
        const char *eol = find_crlf(p, end);
        unsigned long size;
        char *hex_end;

        if (!eol)
            goto incomplete;
        size = strtoul(p, &hex_end, 16);
        if (hex_end == p || (hex_end != eol && *hex_end != ';')) {
            free(body);
            return -1;
        }
        p = eol + 2;
        if (size == 0) {
            /* Trailer fields, then an empty line. */
            for (;;) {
                eol = find_crlf(p, end);
                if (!eol)
                    goto incomplete;
                if (eol == p) {
                    body[n] = '\0';
                    *out = body;
                    *outlen = n;
                    return (long)(eol + 2 - start);
                }
                p = eol + 2;
            }
        }
        if ((size_t)(end - p) < size + 2)
            goto incomplete;
        if (p[size] != '\r' || p[size + 1] != '\n') {
            free(body);
            return -1;
        }
        while (cap < n + size + 1)
            cap *= 2;
        body = realloc(body, cap);
        if (!body)
            abort();
        memcpy(body + n, p, size);
        n += size;
        p += size + 2;
    }
incomplete:
    free(body);
    return 0;
}

/* Removes the first n bytes of the buffer. */
static void consume(struct hconn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

enum framing {
    FRAME_NONE,    /* no body: HEAD, 1xx, 204, 304 */
    FRAME_CHUNKED, /* Transfer-Encoding: chunked */
    FRAME_LENGTH,  /* Content-Length */
    FRAME_CLOSE,   /* until the connection ends */
    FRAME_BAD,     /* unusable Content-Length */
};

/* How the body of a response with this head is delimited (RFC 9112 6.3). */
static enum framing response_framing(const char *head, int status, bool head_request,
                                     size_t *length)
{
    char *te;
    char *cl;
    enum framing f;

    if (head_request || status < 200 || status == 204 || status == 304)
        return FRAME_NONE;
    te = header_in(head, "Transfer-Encoding");
    cl = header_in(head, "Content-Length");
    if (te && strcasestr(te, "chunked")) {
        f = FRAME_CHUNKED;
    } else if (cl) {
        char *cl_end;
        unsigned long long n = strtoull(cl, &cl_end, 10);

        f = (*cl_end || cl_end == cl || n > (1ull << 30)) ? FRAME_BAD : FRAME_LENGTH;
        *length = (size_t)n;
    } else {
        f = FRAME_CLOSE;
    }
    free(te);
    free(cl);
    return f;
}

/*
 * Tries to parse one response from the buffer. Returns 1 when complete
 * (consumed and stored in *r), 0 when more bytes are needed, -1 when
 * malformed. *r is only written on 1.
 */
static int try_parse(struct hconn *c, struct hresp *r, bool head_request)
{
    const char *hend;
    const char *body;
    size_t head_len;
    size_t avail;
    size_t length = 0;
    size_t used = 0;
    char *decoded = NULL;
    size_t decoded_len = 0;
    char *head;
    enum framing f;
    long n;
    int status;

    if (c->len == 0)
        return 0;
    hend = strstr(c->buf, "\r\n\r\n");
    if (!hend)
        return c->len > 1024 * 1024 ? -1 : 0;
    if (strncmp(c->buf, "HTTP/1.", 7) != 0 || c->len < 12 || c->buf[8] != ' ')
        return -1;
    status = atoi(c->buf + 9);
    if (status < 100 || status > 599)
        return -1;
    head_len = (size_t)(hend - c->buf) + 4;
    body = c->buf + head_len;
    avail = c->len - head_len;

    /* The copied head keeps the last header's CRLF. */
    head = xstrdup_n(c->buf, head_len - 2);
    f = response_framing(head, status, head_request, &length);

    switch (f) {
    case FRAME_NONE:
        break;
    case FRAME_CHUNKED:
        n = parse_chunked(body, body + avail, &decoded, &decoded_len);
        if (n <= 0) {
            free(head);
            return n < 0 || c->eof ? -1 : 0;
        }
        used = (size_t)n;
        break;
    case FRAME_LENGTH:
        if (avail < length) {
            free(head);
            return c->eof ? -1 : 0;
        }
        used = length;
        break;
    case FRAME_CLOSE:
        if (!c->eof) {
            free(head);
            return 0;
        }
        used = avail;
        break;
    case FRAME_BAD:
        free(head);
        return -1;
    }

    memset(r, 0, sizeof(*r));
    r->status = status;
    r->head = head;
    r->chunked = f == FRAME_CHUNKED;
    if (decoded) {
        r->body = decoded;
        r->body_len = decoded_len;
    } else {
        r->body = xstrdup_n(body, used);
        r->body_len = used;
    }
    consume(c, head_len + used);
    if (r->body_len > 0)
        r->json = json_loadb(r->body, r->body_len, 0, NULL);
    return 1;
}

enum hread hc_read(struct hconn *c, struct hresp *r, long timeout_ms, bool head_request)
{
    long long deadline = harness_now_ms() + timeout_ms;

    memset(r, 0, sizeof(*r));
    for (;;) {
        int rc = try_parse(c, r, head_request);
        int got;

        if (rc == 1)
            return HREAD_OK;
        if (rc < 0)
            return HREAD_MALFORMED;
        if (c->eof)
            return c->len == 0 ? HREAD_CLOSED : HREAD_MALFORMED;
        got = fill(c, (long)(deadline - harness_now_ms()));
        if (got < 0)
            return HREAD_TIMEOUT;
    }
}

bool hc_wait_closed(struct hconn *c, long timeout_ms)
{
    size_t before = c->len;
    int got = fill(c, timeout_ms);

    return got == 0 && c->len == before;
}

void hresp_free(struct hresp *r)
{
    free(r->head);
    free(r->body);
    if (r->json)
        json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

char *hresp_header(const struct hresp *r, const char *name)
{
    return r->head ? header_in(r->head, name) : NULL;
}

bool hresp_header_has(const struct hresp *r, const char *name, const char *token)
{
    char *v = hresp_header(r, name);
    bool has = v && strcasestr(v, token) != NULL;

    free(v);
    return has;
}

static const char *hread_str(enum hread rc)
{
    switch (rc) {
    case HREAD_OK:
        return "ok";
    case HREAD_CLOSED:
        return "connection closed";
    case HREAD_TIMEOUT:
        return "timed out";
    case HREAD_MALFORMED:
        return "malformed response";
    }
    return "?";
}

void http_request(int port, const char *method, const char *path, const char *token,
                  const char *body, struct hresp *r)
{
    struct hconn *c = hc_open(port);
    char req[8192];
    int n;
    enum hread rc;

    n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", method, path, port);
    if (token)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Authorization: Bearer %s\r\n", token);
    if (body)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: %zu\r\n", strlen(body));
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    ck_assert_int_lt(n, (int)sizeof(req));
    ck_assert(hc_send(c, req, (size_t)n));
    if (body)
        ck_assert(hc_sendstr(c, body));
    rc = hc_read(c, r, 3000, strcmp(method, "HEAD") == 0);
    ck_assert_msg(rc == HREAD_OK, "%s %s on port %d: %s", method, path, port, hread_str(rc));
    hc_close(c);
}

void hresp_assert_error(const struct hresp *r, int status, const char *code, const char *file,
                        int line)
{
    json_t *err = json_object_get(r->json, "error");
    const char *got_code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));

    ck_assert_msg(r->status == status, "%s:%d: status %d, want %d\n%s\n%s", file, line, r->status,
                  status, r->head, r->body);
    ck_assert_msg(hresp_header_has(r, "Content-Type", "application/json"),
                  "%s:%d: error response is not application/json\n%s", file, line, r->head);
    ck_assert_msg(r->json != NULL, "%s:%d: error body is not JSON: %s", file, line, r->body);
    ck_assert_msg(got_code && strcmp(got_code, code) == 0, "%s:%d: error code '%s', want '%s': %s",
                  file, line, got_code ? got_code : "(none)", code, r->body);
    ck_assert_msg(msg && *msg, "%s:%d: error without a message: %s", file, line, r->body);
}

void hresp_assert_health_ok(const struct hresp *r, const char *file, int line)
{
    const char *st = json_string_value(json_object_get(r->json, "status"));

    ck_assert_msg(r->status == 200, "%s:%d: status %d, want 200\n%s\n%s", file, line, r->status,
                  r->head, r->body);
    ck_assert_msg(hresp_header_has(r, "Content-Type", "application/json"),
                  "%s:%d: health is not application/json\n%s", file, line, r->head);
    ck_assert_msg(st && strcmp(st, "ok") == 0, "%s:%d: health body %s", file, line, r->body);
}

/* ---- Check glue --------------------------------------------------------- */

static void teardown(void)
{
    kill_leftovers();
}

TCase *harness_tcase(const char *name, double timeout_s)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, timeout_s);
    tcase_add_checked_fixture(tc, NULL, teardown);
    return tc;
}

int harness_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    harness_fini();
    return failed ? 1 : 0;
}

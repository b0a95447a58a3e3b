/*
 * `strata admin <command>`: sends one request to the query listener's
 * admin API and prints the JSON answer on stdout.
 *
 * The URL comes from --url, else STRATA_URL, else http://127.0.0.1:8081;
 * the token from --token, else STRATA_ADMIN_TOKEN, else the file
 * DATA_DIR/admin_token (--data-dir, default ./data). The exit code is 0
 * for a 2xx answer, 1 for any other answer or a connection failure, 2 for
 * a usage error. The client is blocking and uses plain sockets: it runs
 * once per command and needs no event loop.
 */
#include "admin_cli.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "util/common.h"
#include "util/strbuf.h"

const char admin_cli_usage[] =
    "usage: strata admin <command> [arguments] [--url URL] [--token T] [--data-dir DIR]\n"
    "\n"
    "commands:\n"
    "  status                          version, uptime, listeners, connections\n"
    "  tenants                         list the tenants\n"
    "  tenant-create NAME              create a tenant\n"
    "  tenant-delete NAME              delete a tenant with its keys and tables\n"
    "  keys TENANT                     list a tenant's keys (ids and scopes)\n"
    "  key-create TENANT SCOPES        create a key; SCOPES is read,write,manage or\n"
    "                                  a part of it; prints the token (shown once)\n"
    "  key-revoke TENANT ID            revoke a key at once\n"
    "  quotas TENANT RECORDS_PER_SEC STORAGE_BYTES\n"
    "                                  set a tenant's quotas (0: unlimited)\n"
    "  compact                         merge every table into one segment each,\n"
    "                                  dropping history no reader can see\n"
    "  compact-tenant TENANT           the same for one tenant's tables\n"
    "  compact-table TENANT TABLE      the same for one table\n"
    "  checkpoint                      flush memtables, save checkpoints, trim the WAL\n"
    "\n"
    "  --url URL        the query listener, default $STRATA_URL or http://127.0.0.1:8081\n"
    "  --token T        the admin token, default $STRATA_ADMIN_TOKEN or DATA_DIR/admin_token\n"
    "  --data-dir DIR   where to find admin_token, default ./data\n"
    "\n"
    "The answer's JSON goes to stdout (to stderr for an error); the exit code\n"
    "is 0 for a 2xx answer, 1 otherwise, 2 for a usage error.\n";

/*
 * A command: path and body are templates where {1}, {2}, {3} stand for
 * the command's arguments, checked first (names and ids are plain words,
 * numbers are digits; scopes become a JSON list).
 */
struct admin_cmd {
    const char *name;   /* on the command line */
    int nargs;          /* positional arguments it takes */
    const char *method; /* HTTP method */
    const char *path;   /* path format */
    const char *body;   /* JSON body format, or NULL */
};

static const struct admin_cmd commands[] = {
    {"status", 0, "GET", "/v1/admin/status", NULL},
    {"tenants", 0, "GET", "/v1/tenants", NULL},
    {"tenant-create", 1, "POST", "/v1/tenants", "{\"name\": \"{1}\"}"},
    {"tenant-delete", 1, "DELETE", "/v1/tenants/{1}", NULL},
    {"keys", 1, "GET", "/v1/tenants/{1}/keys", NULL},
    {"key-create", 2, "POST", "/v1/tenants/{1}/keys", "{\"scopes\": [{2}]}"},
    {"key-revoke", 2, "DELETE", "/v1/tenants/{1}/keys/{2}", NULL},
    {"quotas", 3, "PUT", "/v1/tenants/{1}/quotas",
     "{\"max_records_per_sec\": {2}, \"max_storage_bytes\": {3}}"},
    {"compact", 0, "POST", "/v1/admin/compact", "{}"},
    {"compact-tenant", 1, "POST", "/v1/admin/compact", "{\"tenant\": \"{1}\"}"},
    {"compact-table", 2, "POST", "/v1/admin/compact", "{\"tenant\": \"{1}\", \"table\": \"{2}\"}"},
    {"checkpoint", 0, "POST", "/v1/admin/checkpoint", NULL},
};

#define ADMIN_MAX_ARGS 3

struct target {
    char host[256];
    char port[16];
};

static int parse_url(const char *url, struct target *t)
{
    const char *p = url;
    const char *colon;
    const char *end;
    size_t hlen;

    if (!strncmp(p, "http://", 7))
        p += 7;
    end = p + strcspn(p, "/");
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));

        if (!rb)
            return -1;
        hlen = (size_t)(rb - p - 1);
        if (hlen >= sizeof(t->host))
            return -1;
        memcpy(t->host, p + 1, hlen);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        hlen = (size_t)((colon ? colon : end) - p);
        if (!hlen || hlen >= sizeof(t->host))
            return -1;
        memcpy(t->host, p, hlen);
    }
    t->host[hlen] = '\0';
    if (colon) {
        size_t plen = (size_t)(end - colon - 1);

        if (!plen || plen >= sizeof(t->port))
            return -1;
        memcpy(t->port, colon + 1, plen);
        t->port[plen] = '\0';
    } else {
        strcpy(t->port, "80");
    }
    return 0;
}

static int connect_to(const struct target *t)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    struct timeval tv = {.tv_sec = 30};
    int fd = -1;
    int rc = getaddrinfo(t->host, t->port, &hints, &res);

    if (rc) {
        fprintf(stderr, "strata admin: cannot resolve '%s': %s\n", t->host, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (!connect(fd, ai->ai_addr, ai->ai_addrlen))
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "strata admin: cannot connect to %s:%s: %s\n", t->host, t->port,
                strerror(errno));
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends the request and prints the body; returns the HTTP status or -1. */
static int do_request(const struct target *t, const char *method, const char *path,
                      const char *token, const char *body)
{
    struct strbuf req = STRBUF_INIT;
    struct strbuf resp = STRBUF_INIT;
    char chunk[16384];
    const char *hdr_end;
    int status = -1;
    ssize_t n;
    int fd = connect_to(t);

    if (fd < 0)
        return -1;
    strbuf_addf(&req, "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n", method, path,
                t->host, t->port);
    if (token && *token)
        strbuf_addf(&req, "Authorization: Bearer %s\r\n", token);
    if (body)
        strbuf_addf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                    strlen(body));
    strbuf_addstr(&req, "\r\n");
    if (body)
        strbuf_addstr(&req, body);
    if (send_all(fd, req.buf, req.len) < 0) {
        fprintf(stderr, "strata admin: cannot send request: %s\n", strerror(errno));
        goto out;
    }
    while ((n = read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            strbuf_add(&resp, chunk, (size_t)n);
    if (sscanf(resp.buf, "HTTP/1.%*d %d", &status) != 1) {
        fprintf(stderr, "strata admin: malformed answer from %s:%s\n", t->host, t->port);
        status = -1;
        goto out;
    }
    hdr_end = strstr(resp.buf, "\r\n\r\n");
    if (hdr_end)
        fputs(hdr_end + 4, status / 100 == 2 ? stdout : stderr);
    if (hdr_end && resp.len && resp.buf[resp.len - 1] != '\n')
        fputc('\n', status / 100 == 2 ? stdout : stderr);
out:
    close(fd);
    strbuf_release(&req);
    strbuf_release(&resp);
    return status;
}

static void read_token_file(const char *dir, char *out, size_t n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/admin_token", dir);
    f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(out, (int)n, f))
        out[strcspn(out, "\r\n")] = '\0';
    fclose(f);
}

/* Appends tmpl to out with {N} replaced by args[N - 1]. */
static void expand(const char *tmpl, const char *const *args, struct strbuf *out)
{
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '{' && p[1] >= '1' && p[1] <= '0' + ADMIN_MAX_ARGS && p[2] == '}') {
            strbuf_addstr(out, args[p[1] - '1']);
            p += 2;
        } else {
            strbuf_addch(out, *p);
        }
    }
}

static bool is_word(const char *s)
{
    if (!*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool is_number(const char *s)
{
    if (!*s || strlen(s) > 20)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/*
 * Checks the arguments of cmd and rewrites scopes ("read,write") into
 * JSON list items in scopes_json. Returns false after printing why.
 */
static bool check_args(const struct admin_cmd *cmd, const char **args, struct strbuf *scopes_json)
{
    for (int i = 0; i < cmd->nargs; i++) {
        bool number = !strcmp(cmd->name, "quotas") && i > 0;
        bool scopes = !strcmp(cmd->name, "key-create") && i == 1;

        if (scopes) {
            char *copy = xstrdup(args[i]);
            char *save = NULL;
            int n = 0;

            for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                if (!is_word(w)) {
                    fprintf(stderr, "strata admin: bad scope '%s'\n", w);
                    free(copy);
                    return false;
                }
                strbuf_addf(scopes_json, "%s\"%s\"", n++ ? ", " : "", w);
            }
            free(copy);
            args[i] = scopes_json->buf;
        } else if (number ? !is_number(args[i]) : !is_word(args[i])) {
            fprintf(stderr, "strata admin: %s: bad argument '%s' (expected %s)\n", cmd->name,
                    args[i], number ? "a whole number" : "a name");
            return false;
        }
    }
    return true;
}

int admin_cli_main(int argc, char **argv)
{
    const char *url = getenv("STRATA_URL");
    const char *token = getenv("STRATA_ADMIN_TOKEN");
    const char *data_dir = "./data";
    const struct admin_cmd *cmd = NULL;
    const char *args[ADMIN_MAX_ARGS] = {NULL, NULL, NULL};
    struct strbuf scopes = STRBUF_INIT;
    struct strbuf path = STRBUF_INIT;
    struct strbuf body = STRBUF_INIT;
    char file_token[512] = "";
    struct target t;
    int nargs = 0;
    int status;
    int code = 2;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if ((!strcmp(a, "--url") || !strcmp(a, "--token") || !strcmp(a, "--data-dir")) &&
            i + 1 >= argc) {
            fprintf(stderr, "strata admin: option '%s' needs a value\n", a);
            goto out;
        }
        if (!strcmp(a, "--url")) {
            url = argv[++i];
        } else if (!strcmp(a, "--token")) {
            token = argv[++i];
        } else if (!strcmp(a, "--data-dir")) {
            data_dir = argv[++i];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(admin_cli_usage, stdout);
            code = 0;
            goto out;
        } else if (!cmd) {
            for (size_t k = 0; k < ST_ARRAY_SIZE(commands); k++)
                if (!strcmp(a, commands[k].name))
                    cmd = &commands[k];
            if (!cmd) {
                fprintf(stderr, "strata admin: unknown command '%s'\n%s", a, admin_cli_usage);
                goto out;
            }
        } else if (nargs < cmd->nargs) {
            args[nargs++] = a;
        } else {
            fprintf(stderr, "strata admin: unexpected argument '%s'\n", a);
            goto out;
        }
    }
    if (!cmd) {
        fputs(admin_cli_usage, stderr);
        goto out;
    }
    if (nargs != cmd->nargs) {
        fprintf(stderr, "strata admin: %s takes %d argument%s; see 'strata help admin'\n",
                cmd->name, cmd->nargs, cmd->nargs == 1 ? "" : "s");
        goto out;
    }
    if (!check_args(cmd, args, &scopes))
        goto out;
    if (parse_url(url && *url ? url : "http://127.0.0.1:8081", &t) < 0) {
        fprintf(stderr, "strata admin: bad url '%s'\n", url);
        goto out;
    }
    if (!token || !*token) {
        read_token_file(data_dir, file_token, sizeof(file_token));
        token = file_token;
    }
    expand(cmd->path, args, &path);
    if (cmd->body)
        expand(cmd->body, args, &body);
    status = do_request(&t, cmd->method, path.buf, token, cmd->body ? body.buf : NULL);
    code = status >= 200 && status < 300 ? 0 : 1;
out:
    strbuf_release(&scopes);
    strbuf_release(&path);
    strbuf_release(&body);
    return code;
}

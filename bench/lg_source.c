/*
 * Request sources for strata-loadgen (see lg_source.h), plus the pieces
 * the command line needs to build them: URL parsing and body loading.
 *
 * The template source renders every request head once, at start: one head
 * per body, because Content-Length differs. emit() then only appends the
 * head (copied: it is small, and copying into the output buffer's last
 * chain avoids an allocation) and the body (by reference when large, so a
 * 1 MiB batch is never copied; the kernel reads it straight from the one
 * loaded copy that all threads share). Nothing is written after creation,
 * which is what makes concurrent emit() safe. A list of request targets
 * (--path-list) multiplies the rendered heads the same way: one per
 * target, so that point reads of many keys cost no formatting at run time.
 */
#include "lg_source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "util/common.h"
#include "util/strbuf.h"

/* Bodies up to this size are copied into the output buffer. */
#define COPY_BODY_MAX 4096

void lg_source_free(struct lg_source *src)
{
    if (src)
        src->ops->free(src);
}

/* ---------------------------------------------------------------- targets */

static enum st_status check_port(const char *port, struct err *err)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(port, &end, 10);
    if (errno || end == port || *end || v < 1 || v > 65535)
        return err_set(err, ST_EINVAL, "bad port '%s'", port);
    return ST_OK;
}

enum st_status lg_target_set(struct lg_target *t, const char *host, const char *port,
                             const char *path, struct err *err)
{
    enum st_status rc;

    memset(t, 0, sizeof(*t));
    if (!host || !*host)
        host = "127.0.0.1";
    if (!port || !*port)
        port = "8080";
    if (!path || !*path)
        path = "/";
    if (path[0] != '/')
        return err_set(err, ST_EINVAL, "path '%s' does not start with '/'", path);
    if (strpbrk(path, " \r\n") || strpbrk(host, " \r\n/"))
        return err_set(err, ST_EINVAL, "space or newline in host or path");
    rc = check_port(port, err);
    if (rc)
        return rc;
    t->host = xstrdup(host);
    t->port = xstrdup(port);
    t->path = xstrdup(path);
    return ST_OK;
}

enum st_status lg_target_parse_url(struct lg_target *t, const char *url, struct err *err)
{
    const char *p = url;
    const char *auth_end;
    const char *host_end;
    const char *port = NULL;
    char *host;
    char *port_s = NULL;
    enum st_status rc;

    memset(t, 0, sizeof(*t));
    if (strncasecmp(p, "https://", 8) == 0)
        return err_set(err, ST_EINVAL, "https is not supported in '%s'", url);
    if (strncasecmp(p, "http://", 7) != 0)
        return err_set(err, ST_EINVAL, "url '%s' does not start with http://", url);
    p += 7;
    auth_end = p + strcspn(p, "/?#");
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(auth_end - p));
        if (!host_end)
            return err_set(err, ST_EINVAL, "unclosed '[' in url '%s'", url);
        host = xstrndup(p + 1, (size_t)(host_end - p - 1));
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':') {
                free(host);
                return err_set(err, ST_EINVAL, "bad address in url '%s'", url);
            }
            port = host_end + 2;
        }
    } else {
        host_end = memchr(p, ':', (size_t)(auth_end - p));
        if (host_end)
            port = host_end + 1;
        else
            host_end = auth_end;
        host = xstrndup(p, (size_t)(host_end - p));
    }
    if (!*host) {
        free(host);
        return err_set(err, ST_EINVAL, "no host in url '%s'", url);
    }
    if (port)
        port_s = xstrndup(port, (size_t)(auth_end - port));
    if (*auth_end == '/' || *auth_end == 0) {
        rc = lg_target_set(t, host, port_s ? port_s : "80", auth_end, err);
    } else {
        /* "http://host?x" has a query but no path. */
        struct strbuf sb = STRBUF_INIT;

        strbuf_addch(&sb, '/');
        strbuf_addstr(&sb, auth_end);
        rc = lg_target_set(t, host, port_s ? port_s : "80", sb.buf, err);
        strbuf_release(&sb);
    }
    free(port_s);
    free(host);
    return rc;
}

void lg_target_release(struct lg_target *t)
{
    free(t->host);
    free(t->port);
    free(t->path);
    memset(t, 0, sizeof(*t));
}

/* ----------------------------------------------------------------- bodies */

static uint32_t count_lines(const char *s, size_t len)
{
    uint32_t n = 0;
    size_t i;
    bool blank = true;

    for (i = 0; i < len; i++) {
        if (s[i] == '\n') {
            if (!blank)
                n++;
            blank = true;
        } else if (s[i] != '\r' && s[i] != ' ' && s[i] != '\t') {
            blank = false;
        }
    }
    return blank ? n : n + 1;
}

static enum st_status read_file(const char *path, char **data, size_t *len, struct err *err)
{
    struct stat st;
    size_t got = 0;
    char *buf;
    int fd;
    int e;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot open '%s'", path);
    if (fstat(fd, &st) < 0) {
        e = errno;
        close(fd);
        return err_set_errno(err, ST_EIO, e, "cannot stat '%s'", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, ST_EINVAL, "'%s' is not a regular file", path);
    }
    buf = xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return err_set_errno(err, ST_EIO, e, "cannot read '%s'", path);
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    *data = buf;
    *len = got;
    return ST_OK;
}

enum st_status lg_bodies_add_file(struct lg_bodies *b, const char *path, uint32_t records_per_body,
                                  struct err *err)
{
    struct lg_body body;
    enum st_status rc;

    rc = read_file(path, &body.data, &body.len, err);
    if (rc)
        return rc;
    body.records =
        records_per_body == LG_RECORDS_LINES ? count_lines(body.data, body.len) : records_per_body;
    if (b->n == b->alloc) {
        b->alloc = b->alloc ? 2 * b->alloc : 16;
        b->v = realloc_array(b->v, b->alloc, sizeof(*b->v));
    }
    b->v[b->n++] = body;
    return ST_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum st_status lg_bodies_add_dir(struct lg_bodies *b, const char *dir, uint32_t records_per_body,
                                 struct err *err)
{
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    size_t alloc = 0;
    size_t i;
    enum st_status rc = ST_OK;
    DIR *d;

    d = opendir(dir);
    if (!d)
        return err_set_errno(err, ST_EIO, errno, "cannot open directory '%s'", dir);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == alloc) {
            alloc = alloc ? 2 * alloc : 64;
            names = realloc_array(names, alloc, sizeof(*names));
        }
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n == 0) {
        rc = err_set(err, ST_EINVAL, "no files in directory '%s'", dir);
        goto out_free_names;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; i < n && rc == ST_OK; i++) {
        struct strbuf path = STRBUF_INIT;
        struct stat st;

        strbuf_addf(&path, "%s/%s", dir, names[i]);
        if (stat(path.buf, &st) == 0 && S_ISREG(st.st_mode))
            rc = lg_bodies_add_file(b, path.buf, records_per_body, err);
        strbuf_release(&path);
    }
out_free_names:
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

enum st_status lg_bodies_add_list(struct lg_bodies *b, const char *list, uint32_t records_per_body,
                                  struct err *err)
{
    struct strbuf base = STRBUF_INIT;
    const char *slash;
    char *data;
    char *line;
    char *next;
    size_t len;
    size_t before = b->n;
    enum st_status rc;

    rc = read_file(list, &data, &len, err);
    if (rc)
        return rc;
    slash = strrchr(list, '/');
    if (slash)
        strbuf_add(&base, list, (size_t)(slash - list + 1));
    for (line = data; line && *line && rc == ST_OK; line = next) {
        struct strbuf path = STRBUF_INIT;
        size_t l;

        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        l = strlen(line);
        while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
            line[--l] = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '#')
            continue;
        if (*line != '/')
            strbuf_add(&path, base.buf, base.len);
        strbuf_addstr(&path, line);
        rc = lg_bodies_add_file(b, path.buf, records_per_body, err);
        strbuf_release(&path);
    }
    if (rc == ST_OK && b->n == before)
        rc = err_set(err, ST_EINVAL, "no files listed in '%s'", list);
    strbuf_release(&base);
    free(data);
    return rc;
}

size_t lg_bodies_total(const struct lg_bodies *b)
{
    size_t total = 0;
    size_t i;

    for (i = 0; i < b->n; i++)
        total += b->v[i].len;
    return total;
}

void lg_bodies_release(struct lg_bodies *b)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        free(b->v[i].data);
    free(b->v);
    memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- targets */

static enum st_status check_path(const char *path, struct err *err)
{
    if (path[0] != '/')
        return err_set(err, ST_EINVAL, "path '%s' does not start with '/'", path);
    if (strpbrk(path, " \t\r\n"))
        return err_set(err, ST_EINVAL, "space or newline in path '%s'", path);
    return ST_OK;
}

enum st_status lg_paths_add_list(struct lg_paths *p, const char *list, struct err *err)
{
    char *data;
    char *line;
    char *next;
    size_t len;
    size_t before = p->n;
    enum st_status rc;

    rc = read_file(list, &data, &len, err);
    if (rc)
        return rc;
    for (line = data; line && *line && rc == ST_OK; line = next) {
        size_t l;

        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        l = strlen(line);
        while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
            line[--l] = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line || *line == '#')
            continue;
        rc = check_path(line, err);
        if (rc)
            break;
        if (p->n == p->alloc) {
            p->alloc = p->alloc ? 2 * p->alloc : 64;
            p->v = realloc_array(p->v, p->alloc, sizeof(*p->v));
        }
        p->v[p->n++] = xstrdup(line);
    }
    if (rc == ST_OK && p->n == before)
        rc = err_set(err, ST_EINVAL, "no paths listed in '%s'", list);
    free(data);
    return rc;
}

void lg_paths_release(struct lg_paths *p)
{
    size_t i;

    for (i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
    memset(p, 0, sizeof(*p));
}

/* -------------------------------------------------------- template source */

struct tmpl_item {
    char *head;       /* rendered request line and headers, with the blank line */
    size_t head_len;  /* its length */
    const char *body; /* body bytes (owned by the bodies), or NULL */
    size_t body_len;  /* their length */
    uint32_t records; /* records in the body */
};

struct tmpl_source {
    struct lg_source base;   /* must be first */
    struct lg_bodies bodies; /* owned bodies */
    struct lg_paths paths;   /* owned targets, or none: the URL's path */
    struct tmpl_item *items; /* max(bodies, targets, 1) requests */
    size_t nitems;           /* how many items */
    bool head_only;          /* method is HEAD */
};

static void tmpl_emit(struct lg_source *src, uint64_t seq, struct evbuffer *out,
                      struct lg_req_info *info)
{
    struct tmpl_source *ts = (struct tmpl_source *)src;
    const struct tmpl_item *it = &ts->items[seq % ts->nitems];

    evbuffer_add(out, it->head, it->head_len);
    if (it->body_len > COPY_BODY_MAX)
        evbuffer_add_reference(out, it->body, it->body_len, NULL, NULL);
    else if (it->body_len)
        evbuffer_add(out, it->body, it->body_len);
    info->body_len = it->body_len;
    info->records = it->records;
    info->head_only = ts->head_only;
}

static void tmpl_free(struct lg_source *src)
{
    struct tmpl_source *ts = (struct tmpl_source *)src;
    size_t i;

    for (i = 0; i < ts->nitems; i++)
        free(ts->items[i].head);
    free(ts->items);
    lg_bodies_release(&ts->bodies);
    lg_paths_release(&ts->paths);
    free(ts->base.method);
    free(ts->base.url);
    free(ts);
}

static const struct lg_source_ops tmpl_ops = {
    .emit = tmpl_emit,
    .free = tmpl_free,
};

static bool header_is(const char *h, const char *name)
{
    size_t n = strlen(name);

    return strncasecmp(h, name, n) == 0 && (h[n] == ':' || h[n] == ' ' || h[n] == '\t');
}

static enum st_status check_header(const char *h, struct err *err)
{
    const char *colon = strchr(h, ':');

    if (!colon || colon == h || strpbrk(h, "\r\n"))
        return err_set(err, ST_EINVAL, "bad header '%s' (want 'Name: value')", h);
    if (header_is(h, "Content-Length") || header_is(h, "Transfer-Encoding"))
        return err_set(err, ST_EINVAL, "header '%s' is set by strata-loadgen itself", h);
    return ST_OK;
}

static void render_head(struct strbuf *sb, const char *method, const struct lg_target *t,
                        const char *path, const char *const *headers, size_t nheaders,
                        bool has_host, size_t body_len, bool send_length)
{
    size_t i;

    strbuf_addf(sb, "%s %s HTTP/1.1\r\n", method, path);
    if (!has_host) {
        bool v6 = strchr(t->host, ':') != NULL;

        strbuf_addf(sb, "Host: %s%s%s", v6 ? "[" : "", t->host, v6 ? "]" : "");
        if (strcmp(t->port, "80") != 0)
            strbuf_addf(sb, ":%s", t->port);
        strbuf_addstr(sb, "\r\n");
    }
    for (i = 0; i < nheaders; i++)
        strbuf_addf(sb, "%s\r\n", headers[i]);
    if (send_length)
        strbuf_addf(sb, "Content-Length: %zu\r\n", body_len);
    strbuf_addstr(sb, "\r\n");
}

enum st_status lg_source_new_template(struct lg_source **out, const char *method,
                                      const struct lg_target *t, const char *const *headers,
                                      size_t nheaders, struct lg_bodies *b, struct lg_paths *paths,
                                      struct err *err)
{
    struct tmpl_source *ts;
    struct strbuf sb = STRBUF_INIT;
    bool has_host = false;
    bool wants_length;
    size_t i;
    enum st_status rc;

    if (!*method || strpbrk(method, " \r\n"))
        return err_set(err, ST_EINVAL, "bad method '%s'", method);
    for (i = 0; i < nheaders; i++) {
        rc = check_header(headers[i], err);
        if (rc)
            return rc;
        if (header_is(headers[i], "Host"))
            has_host = true;
    }
    wants_length = strcasecmp(method, "POST") == 0 || strcasecmp(method, "PUT") == 0 ||
                   strcasecmp(method, "PATCH") == 0;

    ts = xcalloc(1, sizeof(*ts));
    ts->base.ops = &tmpl_ops;
    ts->base.method = xstrdup(method);
    ts->head_only = strcasecmp(method, "HEAD") == 0;
    ts->bodies = *b;
    memset(b, 0, sizeof(*b));
    if (paths) {
        ts->paths = *paths;
        memset(paths, 0, sizeof(*paths));
    }
    strbuf_addf(&sb, "http://%s%s%s:%s%s", strchr(t->host, ':') ? "[" : "", t->host,
                strchr(t->host, ':') ? "]" : "", t->port, ts->paths.n ? ts->paths.v[0] : t->path);
    if (ts->paths.n > 1)
        strbuf_addf(&sb, " (+%zu more paths)", ts->paths.n - 1);
    ts->base.url = strbuf_detach(&sb, NULL);

    ts->nitems = ts->bodies.n > ts->paths.n ? ts->bodies.n : ts->paths.n;
    if (ts->nitems == 0)
        ts->nitems = 1;
    ts->items = calloc_array(ts->nitems, sizeof(*ts->items));
    for (i = 0; i < ts->nitems; i++) {
        struct tmpl_item *it = &ts->items[i];

        if (ts->bodies.n) {
            const struct lg_body *body = &ts->bodies.v[i % ts->bodies.n];

            it->body = body->data;
            it->body_len = body->len;
            it->records = body->records;
        }
        strbuf_init(&sb, 256);
        render_head(&sb, method, t, ts->paths.n ? ts->paths.v[i % ts->paths.n] : t->path, headers,
                    nheaders, has_host, it->body_len, ts->bodies.n > 0 || wants_length);
        it->head = strbuf_detach(&sb, &it->head_len);
    }
    *out = &ts->base;
    return ST_OK;
}

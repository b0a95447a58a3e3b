/*
 * Authentication: the admin token and tenant keys.
 *
 * The admin token may do anything. It comes from the configuration
 * (auth.admin_token, or STRATA_ADMIN_TOKEN) or, when neither is set, from
 * DATA_DIR/admin_token, which the first start creates with 48 hex digits
 * from libsodium's random source and mode 0600. Requests carry it as
 * "Authorization: Bearer <token>"; the comparison is constant-time
 * (sodium_memcmp) so response timing does not leak the token.
 *
 * Tenant keys (hashed, scoped) belong to the catalog: a bearer token that
 * is not the admin token is looked up with catalog_key_authenticate() in
 * the engine's current catalog. The answers, in this order:
 *
 *   no bearer token, or one that is neither    401 unauthenticated
 *   (WWW-Authenticate: Bearer ...)
 *   a key on an admin-only endpoint             403 forbidden
 *   a key on another tenant's path              403 forbidden
 *   a key without the endpoint's scope          403 forbidden
 *
 * The tenant check compares names only and happens before any lookup of
 * the path's tenant, so a key gets the same 403 whether that tenant
 * exists or not and cannot probe for tenants. Handlers authenticate first
 * and only then validate names or look anything up (400, 404).
 */
#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "engine/engine.h"
#include "http/httpd.h"
#include "server.h"
#include "util/log.h"

#define ADMIN_TOKEN_FILE  "admin_token"
#define ADMIN_TOKEN_BYTES 24

static enum st_status read_token_file(const char *path, char *out, size_t n, struct err *err)
{
    ssize_t len;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return errno == ENOENT ? ST_ENOTFOUND
                               : err_set_errno(err, ST_EIO, errno, "cannot open '%s'", path);
    len = read(fd, out, n - 1);
    close(fd);
    if (len < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot read '%s'", path);
    out[len] = '\0';
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' '))
        out[--len] = '\0';
    if (len < 16)
        return err_set(err, ST_ECORRUPT, "admin token file '%s' holds no usable token", path);
    return ST_OK;
}

static enum st_status create_token_file(const char *path, char *out, size_t n, struct err *err)
{
    unsigned char raw[ADMIN_TOKEN_BYTES];
    char tmp[CONFIG_PATH_MAX + 64];
    int fd;

    st_assert(n > 2 * ADMIN_TOKEN_BYTES);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(out, n, raw, sizeof(raw));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot create '%s'", tmp);
    if (write(fd, out, strlen(out)) != (ssize_t)strlen(out) || write(fd, "\n", 1) != 1 ||
        fsync(fd) < 0) {
        int e = errno;

        close(fd);
        unlink(tmp);
        return err_set_errno(err, ST_EIO, e, "cannot write '%s'", tmp);
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;

        unlink(tmp);
        return err_set_errno(err, ST_EIO, e, "cannot rename '%s'", tmp);
    }
    return ST_OK;
}

enum st_status api_auth_init(struct server *srv, struct err *err)
{
    char path[CONFIG_PATH_MAX + 32];
    enum st_status rc;

    if (sodium_init() < 0)
        return err_set(err, ST_EIO, "cannot initialise libsodium");
    if (!srv->cfg.auth.enabled) {
        log_warn("auth disabled: every request is allowed; use this for local development only");
        return ST_OK;
    }
    if (srv->cfg.auth.admin_token[0]) {
        st_strlcpy(srv->admin_token, srv->cfg.auth.admin_token, sizeof(srv->admin_token));
        log_info("auth admin token from configuration");
        return ST_OK;
    }
    snprintf(path, sizeof(path), "%s/%s", srv->cfg.storage.data_dir, ADMIN_TOKEN_FILE);
    rc = read_token_file(path, srv->admin_token, sizeof(srv->admin_token), err);
    if (rc == ST_OK) {
        log_info("auth admin token from file path='%s'", path);
        return ST_OK;
    }
    if (rc != ST_ENOTFOUND)
        return rc;
    rc = create_token_file(path, srv->admin_token, sizeof(srv->admin_token), err);
    if (rc)
        return rc;
    log_notice("auth generated a new admin token path='%s' mode=0600", path);
    return ST_OK;
}

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *bearer_token(struct httpd_req *req)
{
    const char *h = httpd_req_header(req, "Authorization");

    if (!h || strncasecmp(h, "Bearer ", 7))
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}

static bool token_equal(const char *given, const char *want)
{
    size_t glen = strlen(given);
    size_t wlen = strlen(want);

    /* The length of the real token is not a secret worth hiding. */
    if (glen != wlen || !wlen)
        return false;
    return sodium_memcmp(given, want, wlen) == 0;
}

static void reply_401(struct httpd_req *req, const char *msg)
{
    httpd_resp_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    httpd_reply_error(req, 401, "unauthenticated", "%s", msg);
}

/*
 * The common check. tenant NULL means the endpoint is for the admin token
 * only. Answers and returns false when the request may not proceed.
 */
static bool check_auth(struct httpd_req *req, const struct server *srv, const char *tenant,
                       unsigned scope)
{
    const struct catalog_tenant *t;
    struct catalog_snap *snap;
    const char *tok;
    unsigned scopes;
    struct err err;
    bool ok = false;

    if (!srv->cfg.auth.enabled)
        return true;
    tok = bearer_token(req);
    if (!tok) {
        httpd_resp_header(req, "WWW-Authenticate", "Bearer");
        httpd_reply_error(req, 401, "unauthenticated", "missing bearer token");
        return false;
    }
    if (token_equal(tok, srv->admin_token))
        return true;
    if (!srv->engine) {
        reply_401(req, "unknown token");
        return false;
    }
    err_clear(&err);
    snap = engine_catalog(srv->engine);
    if (catalog_key_authenticate(snap, tok, strlen(tok), &t, &scopes, &err) != ST_OK) {
        log_debug("auth refused peer=%s reason='%s'", httpd_req_peer(req), err.msg);
        reply_401(req, "unknown token");
    } else if (!tenant) {
        httpd_reply_error(req, 403, "forbidden", "this endpoint needs the admin token");
    } else if (strcmp(catalog_tenant_name(t), tenant) != 0) {
        httpd_reply_error(req, 403, "forbidden", "the key gives no access to tenant '%.64s'",
                          tenant);
    } else if (!(scopes & scope)) {
        httpd_resp_header(req, "WWW-Authenticate", "Bearer error=\"insufficient_scope\"");
        httpd_reply_error(req, 403, "forbidden", "the key lacks the '%s' scope",
                          catalog_scope_name(scope) ? catalog_scope_name(scope) : "required");
    } else {
        ok = true;
    }
    catalog_release(snap);
    return ok;
}

bool api_require_admin(struct httpd_req *req, const struct server *srv)
{
    return check_auth(req, srv, NULL, 0);
}

bool api_auth_tenant(struct httpd_req *req, const struct server *srv, const char *tenant,
                     unsigned scope)
{
    st_assert(tenant && scope);
    return check_auth(req, srv, tenant, scope);
}

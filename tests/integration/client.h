/*
 * Data-API helpers for the integration suites, on top of harness.h:
 * requests with arbitrary headers and bodies, the catalog steps most
 * tests start with (tenant, key, table), ingest, point reads and the
 * version, JSON member lookups and gzip.
 *
 * Two kinds of calls. api_req()/api_request() and the api_* steps run
 * on the test's main thread and fail the test on any surprise (no
 * answer, an unexpected status), printing the answer. api_send() never
 * asserts: it is for the crash test's client threads and for requests
 * that may legitimately find no server.
 */
#ifndef ST_TESTS_INTEGRATION_CLIENT_H
#define ST_TESTS_INTEGRATION_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

/* Content-Type header line for NDJSON ingest bodies. */
#define API_NDJSON "Content-Type: application/x-ndjson\r\n"

/*
 * Sends one request on c and reads its answer within timeout_ms. headers
 * holds extra header lines, each ending in CRLF (NULL for none); token
 * NULL sends no Authorization; body NULL sends no Content-Length. Never
 * asserts: HREAD_OK with *r filled (free with hresp_free()), or why not.
 */
enum hread api_send(struct hconn *c, const char *method, const char *path, const char *token,
                    const char *headers, const void *body, size_t body_len, long timeout_ms,
                    struct hresp *r);

/* The same on a fresh connection; fails the test without an answer in 5 s. */
void api_request(int port, const char *method, const char *path, const char *token,
                 const char *headers, const void *body, size_t body_len, struct hresp *r);

/* api_request() with a NUL-terminated body (or NULL). */
void api_req(int port, const char *method, const char *path, const char *token, const char *headers,
             const char *body, struct hresp *r);

/* Asserts the status, printing the answer otherwise. */
#define api_expect(r, status) api__expect((r), (status), __FILE__, __LINE__)
void api__expect(const struct hresp *r, int status, const char *file, int line);

/*
 * The integer at a dotted path of members in the JSON answer
 * ("error.rejected"); fails the test when it is missing or not an integer.
 */
long long api_int(const struct hresp *r, const char *path);
/* The JSON value at a dotted path, or NULL (borrowed from r). */
json_t *api_get(const struct hresp *r, const char *path);

/* POST /v1/tenants as admin; expects 201. */
void api_create_tenant(const struct srv *s, const char *name);
/*
 * Creates a key for tenant with scopes (JSON array text, e.g.
 * "[\"read\"]") as admin, expects 201, returns the token (caller frees)
 * and, when id is not NULL, copies the key id there (17 bytes).
 */
char *api_make_key(const struct srv *s, const char *tenant, const char *scopes_json, char *id);
/* POST .../tables with def (JSON text) using token (admin when NULL); expects 201. */
void api_create_table(const struct srv *s, const char *tenant, const char *token, const char *def);

/*
 * Ingests NDJSON body into tenant/table with token; expects 200 and
 * returns the commit version.
 */
long long api_ingest(const struct srv *s, const char *tenant, const char *table, const char *token,
                     const char *body);

/*
 * GET .../tables/{table}/records/{key} (key as in the URL), at as_of
 * when > 0. Returns the status; *r holds the answer (caller frees).
 */
int api_get_record(const struct srv *s, const char *tenant, const char *table, const char *key,
                   const char *token, long long as_of, struct hresp *r);

/* GET .../version with token; expects 200 and returns it. */
long long api_version(const struct srv *s, const char *tenant, const char *token);

/*
 * gzip of in[0..len) (one gzip member); caller frees. *outlen gets its
 * size.
 */
unsigned char *api_gzip(const void *in, size_t len, size_t *outlen);

#endif

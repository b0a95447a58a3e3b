/*
 * cursor: the opaque "next_cursor" of query answers (API.md, "Reads >
 * Query").
 *
 * A cursor says where the next page of one query starts, on the same
 * snapshot: after a primary key (plain queries without order_by: the next
 * scan starts strictly after the last row sent) and/or after a number of
 * result rows (everything else: the next page runs the query again on the
 * same snapshot and leaves out the rows already sent). Paging on one
 * snapshot version never skips or repeats a row, whatever is written
 * meanwhile.
 *
 * Cursors are tamper-proof and bound to their query: they carry the
 * tenant's and the table's ids and a fingerprint of the query body, and a
 * MAC (HMAC-SHA512-256, libsodium crypto_auth) under a key derived from
 * the data directory's secret (engine_secret()). A cursor from another
 * tenant, table or query, altered in any bit, cut short or made up fails
 * to decode, with one message whatever failed ("cursor: invalid cursor"),
 * so that it cannot be used as an oracle.
 */
#ifndef ST_API_CURSOR_H
#define ST_API_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

struct json_t;
struct strbuf;

#define CURSOR_SECRET_LEN 32   /* bytes of the secret (ENGINE_SECRET_LEN) */
#define CURSOR_KEY_MAX    2048 /* longest encoded key a cursor carries */
#define CURSOR_TEXT_MAX   4096 /* longest cursor text decoded */

/* The message of every decoding failure (ST_EINVAL; answer 400 invalid_query). */
#define CURSOR_INVALID "cursor: invalid cursor"

struct cursor {
    uint64_t tenant_id;          /* the tenant's id */
    uint64_t table_id;           /* the table's id */
    uint64_t version;            /* the snapshot the pages read */
    uint64_t fingerprint;        /* cursor_fingerprint() of the query */
    uint64_t skip;               /* result rows to leave out (after key, if any) */
    size_t key_len;              /* 0: no key; else 1 to CURSOR_KEY_MAX */
    uint8_t key[CURSOR_KEY_MAX]; /* resume strictly after this encoded key */
};

/*
 * 64 bits of a BLAKE2b hash of the query body (a JSON object) in a
 * canonical form: compact JSON with sorted keys, without the members
 * cursor, as_of and limit (a cursor works for any page size) and without
 * null members (null means absent). Equal queries give equal
 * fingerprints however their JSON is laid out.
 */
uint64_t cursor_fingerprint(const struct json_t *body);

/*
 * Appends c as cursor text (base64url without padding, at most
 * CURSOR_TEXT_MAX bytes) MACed under secret to out.
 */
void cursor_encode(const struct cursor *c, const uint8_t secret[CURSOR_SECRET_LEN],
                   struct strbuf *out);

/*
 * Decodes len bytes of cursor text into *out, checking its MAC under
 * secret (in constant time), its format, and that it belongs to
 * tenant_id, table_id and a query with fingerprint. ST_EINVAL with
 * CURSOR_INVALID on any failure; then *out holds nothing useful.
 */
enum st_status cursor_decode(const char *text, size_t len, const uint8_t secret[CURSOR_SECRET_LEN],
                             uint64_t tenant_id, uint64_t table_id, uint64_t fingerprint,
                             struct cursor *out /* OUT */, struct err *err);

#endif

/*
 * cursor: query cursors as MACed, base64url-encoded binary.
 *
 * FORMAT. A cursor is, before base64url (RFC 4648 section 5, no padding;
 * integers little-endian):
 *
 *   offset  size  field
 *   0       1     format: 1
 *   1       1     kind: 0 offset only, 1 after a key (then skip applies
 *                 after that key)
 *   2       8     tenant id
 *   10      8     table id
 *   18      8     snapshot version
 *   26      8     query fingerprint (cursor_fingerprint())
 *   34      8     skip: result rows to leave out
 *   42      2     key length k: 0 for kind 0, 1 to CURSOR_KEY_MAX for kind 1
 *   44      k     the encoded primary key (schema.h key encoding)
 *   44+k    32    crypto_auth (HMAC-SHA512-256) of bytes 0 to 44+k
 *
 * Clients keep cursors between requests and across server restarts, so
 * the layout is versioned by its first byte: do not change it without a
 * new format number.
 *
 * KEYS. The MAC key is not the data directory's secret itself but a key
 * derived from it for cursors alone (crypto_kdf, context "qcursor1",
 * subkey 1), so that other uses of the secret can never produce a valid
 * cursor.
 *
 * DECODING checks, in order, the text's length, its base64url (only the
 * 64 characters of the alphabet; libsodium also refuses non-zero bits
 * left over in the last character, so no two texts decode to the same
 * bytes), the MAC (crypto_auth_verify, constant
 * time), the format, the kind and key length, and then the tenant, table
 * and fingerprint. Every failure gives the same message.
 */
#include "api/cursor.h"

#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "util/strbuf.h"

#define CURSOR_FORMAT 1
#define HEAD_LEN      44 /* bytes before the key */
#define MAC_LEN       crypto_auth_BYTES
#define BIN_MAX       (HEAD_LEN + CURSOR_KEY_MAX + MAC_LEN)

_Static_assert(CURSOR_SECRET_LEN == crypto_kdf_KEYBYTES, "the secret is a crypto_kdf key");
_Static_assert(crypto_auth_KEYBYTES <= crypto_kdf_BYTES_MAX, "a MAC key can be derived");
_Static_assert(MAC_LEN == 32, "crypto_auth is HMAC-SHA512-256");
_Static_assert(CURSOR_KEY_MAX <= UINT16_MAX, "key lengths fit in 16 bits");

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Whether c is in the base64url alphabet. Checked before libsodium's
 * decoder, which maps some bytes above 0x7f (as signed chars) to digits,
 * so that two texts could decode to the same cursor.
 */
static bool is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* The MAC key for cursors, derived from the secret. */
static void mac_key(const uint8_t secret[CURSOR_SECRET_LEN], uint8_t key[crypto_auth_KEYBYTES])
{
    static const char ctx[crypto_kdf_CONTEXTBYTES] = {'q', 'c', 'u', 'r', 's', 'o', 'r', '1'};

    if (crypto_kdf_derive_from_key(key, crypto_auth_KEYBYTES, 1, ctx, secret) != 0)
        ST_BUG("crypto_kdf_derive_from_key failed");
}

uint64_t cursor_fingerprint(const json_t *body)
{
    unsigned char h[crypto_generichash_BYTES_MIN];
    json_t *copy = json_copy((json_t *)body);
    const char *name;
    void *tmp;
    json_t *v;
    char *text;

    if (!copy)
        ST_BUG("cannot copy a query body");
    json_object_del(copy, "cursor");
    json_object_del(copy, "as_of");
    json_object_del(copy, "limit");
    json_object_foreach_safe(copy, tmp, name, v)
    {
        if (json_is_null(v))
            json_object_del(copy, name);
    }
    text = json_dumps(copy, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        ST_BUG("cannot encode a query body");
    crypto_generichash(h, sizeof(h), (const unsigned char *)text, strlen(text), NULL, 0);
    free(text);
    json_decref(copy);
    return get64(h);
}

void cursor_encode(const struct cursor *c, const uint8_t secret[CURSOR_SECRET_LEN],
                   struct strbuf *out)
{
    uint8_t bin[BIN_MAX], key[crypto_auth_KEYBYTES];
    char text[sodium_base64_ENCODED_LEN(BIN_MAX, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    size_t n = HEAD_LEN + c->key_len;

    st_assert(c->key_len <= CURSOR_KEY_MAX);
    bin[0] = CURSOR_FORMAT;
    bin[1] = c->key_len ? 1 : 0;
    put64(bin + 2, c->tenant_id);
    put64(bin + 10, c->table_id);
    put64(bin + 18, c->version);
    put64(bin + 26, c->fingerprint);
    put64(bin + 34, c->skip);
    bin[42] = (uint8_t)c->key_len;
    bin[43] = (uint8_t)(c->key_len >> 8);
    memcpy(bin + HEAD_LEN, c->key, c->key_len);
    mac_key(secret, key);
    crypto_auth(bin + n, bin, n, key);
    sodium_memzero(key, sizeof(key));
    n += MAC_LEN;
    sodium_bin2base64(text, sizeof(text), bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    strbuf_addstr(out, text);
}

enum st_status cursor_decode(const char *text, size_t len, const uint8_t secret[CURSOR_SECRET_LEN],
                             uint64_t tenant_id, uint64_t table_id, uint64_t fingerprint,
                             struct cursor *out, struct err *err)
{
    uint8_t bin[BIN_MAX], key[crypto_auth_KEYBYTES];
    const char *end = NULL;
    size_t n = 0, klen;
    int bad;

    memset(out, 0, sizeof(*out));
    if (len > CURSOR_TEXT_MAX || len < 4)
        goto invalid;
    for (size_t i = 0; i < len; i++)
        if (!is_b64url(text[i]))
            goto invalid;
    if (sodium_base642bin(bin, sizeof(bin), text, len, NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != text + len || n < HEAD_LEN + MAC_LEN)
        goto invalid;
    mac_key(secret, key);
    bad = crypto_auth_verify(bin + n - MAC_LEN, bin, n - MAC_LEN, key);
    sodium_memzero(key, sizeof(key));
    if (bad)
        goto invalid;
    klen = (size_t)bin[42] | (size_t)bin[43] << 8;
    if (bin[0] != CURSOR_FORMAT || bin[1] > 1 || (bin[1] == 1) != (klen > 0) ||
        klen > CURSOR_KEY_MAX || n != HEAD_LEN + klen + MAC_LEN)
        goto invalid;
    out->tenant_id = get64(bin + 2);
    out->table_id = get64(bin + 10);
    out->version = get64(bin + 18);
    out->fingerprint = get64(bin + 26);
    out->skip = get64(bin + 34);
    out->key_len = klen;
    memcpy(out->key, bin + HEAD_LEN, klen);
    if (out->tenant_id != tenant_id || out->table_id != table_id || out->fingerprint != fingerprint)
        goto invalid;
    return ST_OK;

invalid:
    memset(out, 0, sizeof(*out));
    return err_set(err, ST_EINVAL, CURSOR_INVALID);
}

/*
 * Request sources for strata-loadgen: what to send, kept apart from the
 * engine (lg_engine.h) that decides when and over which connection.
 *
 * A source turns a sequence number into the bytes of one complete HTTP/1.1
 * request. The engine numbers the requests of a workload 0, 1, 2, ... in
 * the order it sends them, across all threads, and calls emit() from
 * several threads at once, so emit() must only read shared state. A new
 * scenario (say, point reads with random keys, or a query mix) is a new
 * struct lg_source_ops; the engine does not change.
 */
#ifndef ST_BENCH_LG_SOURCE_H
#define ST_BENCH_LG_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

struct evbuffer;

/* What the engine needs to know about one request it sends. */
struct lg_req_info {
    size_t body_len;  /* request body bytes, for the sent-bytes figure */
    uint32_t records; /* records carried by the body, for records/s */
    bool head_only;   /* the response carries no body (HEAD) */
};

struct lg_source;

struct lg_source_ops {
    /*
     * Appends request number seq to out and describes it in *info (OUT).
     * Bytes added by reference must stay valid until lg_source_free().
     * Called concurrently from every engine thread.
     */
    void (*emit)(struct lg_source *src, uint64_t seq, struct evbuffer *out,
                 struct lg_req_info *info);
    /* Frees src and everything it owns. */
    void (*free)(struct lg_source *src);
};

/* The base of every source; implementations embed it first. */
struct lg_source {
    const struct lg_source_ops *ops; /* the implementation */
    char *method;                    /* for reports, e.g. "POST" */
    char *url;                       /* for reports, e.g. "http://127.0.0.1:8080/health" */
};

/* Frees src (NULL is fine) with its ops->free. */
void lg_source_free(struct lg_source *src);

/*
 * Where requests go, as parsed from a URL or --host/--port/--path. Strings
 * are owned; release with lg_target_release().
 */
struct lg_target {
    char *host; /* host name or address, without brackets */
    char *port; /* decimal port */
    char *path; /* request target, starting with '/' */
};

/* Parses "http://host[:port][/path]" (IPv6 as [addr]) into t (OUT). */
enum st_status lg_target_parse_url(struct lg_target *t, const char *url, struct err *err);
/* Fills t (OUT) from separate parts; NULL parts take 127.0.0.1, 8080 and /. */
enum st_status lg_target_set(struct lg_target *t, const char *host, const char *port,
                             const char *path, struct err *err);
void lg_target_release(struct lg_target *t);

/*
 * Request bodies, each loaded whole into memory. records_per_body gives
 * the record count of each body; LG_RECORDS_LINES counts its non-empty
 * lines instead (NDJSON batches of varying size).
 */
#define LG_RECORDS_LINES UINT32_MAX

struct lg_body {
    char *data;       /* the bytes (owned) */
    size_t len;       /* their length */
    uint32_t records; /* records in this body */
};

struct lg_bodies {
    struct lg_body *v; /* the bodies, in sending order */
    size_t n;          /* how many */
    size_t alloc;      /* allocated slots */
};

/* Adds the file at path as one body. */
enum st_status lg_bodies_add_file(struct lg_bodies *b, const char *path, uint32_t records_per_body,
                                  struct err *err);
/* Adds every regular file of dir not starting with '.', sorted by name. */
enum st_status lg_bodies_add_dir(struct lg_bodies *b, const char *dir, uint32_t records_per_body,
                                 struct err *err);
/*
 * Adds the files named in list, one path a line; blank lines and lines
 * starting with '#' are skipped, relative paths are taken from the list
 * file's directory.
 */
enum st_status lg_bodies_add_list(struct lg_bodies *b, const char *list, uint32_t records_per_body,
                                  struct err *err);
/* Total bytes of all bodies. */
size_t lg_bodies_total(const struct lg_bodies *b);
void lg_bodies_release(struct lg_bodies *b);

/*
 * Request targets ("/path?query"), e.g. point reads of many keys: each
 * starts with '/' and has no space, CR or LF.
 */
struct lg_paths {
    char **v;     /* the targets (owned), in sending order */
    size_t n;     /* how many */
    size_t alloc; /* allocated slots */
};

/*
 * Adds the targets listed in list, one a line; blank lines and lines
 * starting with '#' are skipped, surrounding blanks trimmed.
 */
enum st_status lg_paths_add_list(struct lg_paths *p, const char *list, struct err *err);
void lg_paths_release(struct lg_paths *p);

/*
 * The fixed-template source: every request is method + target + headers,
 * with bodies taken round-robin (body seq % n); with no bodies, requests
 * have none (POST, PUT and PATCH then send Content-Length: 0). headers are
 * "Name: value" lines; Host is added unless given, Content-Length is always
 * computed, and Transfer-Encoding is refused. With P targets in paths
 * (NULL or empty: t->path for all) and B bodies, the source renders
 * max(P, B, 1) requests, the i-th with target i % P and body i % B, and
 * sends them round-robin. Takes ownership of the bodies and targets (b
 * and paths are left empty). Caller frees with lg_source_free().
 */
enum st_status lg_source_new_template(struct lg_source **out, const char *method,
                                      const struct lg_target *t, const char *const *headers,
                                      size_t nheaders, struct lg_bodies *b, struct lg_paths *paths,
                                      struct err *err);

#endif

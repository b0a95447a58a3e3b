/*
 * Unit tests for src/engine/mvcc.c: visibility when commits become
 * durable out of order (by hand and against a model over thousands of
 * random completions), aborts, failed commits and the sticky failure,
 * reads against the floor, the snapshot registry with owners and expiry,
 * and first-committer-wins conflict checks over memtables (including
 * commits applied but not yet durable) and a stand-in for segments.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "engine/key.h"
#include "engine/memtable.h"
#include "engine/mvcc.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t begin(struct mvcc *m)
{
    uint64_t v = 0;

    ck_assert_int_eq(mvcc_commit_begin(m, &v, NULL), ST_OK);
    return v;
}

START_TEST(test_out_of_order_durability)
{
    struct mvcc *m = mvcc_new(10, NULL);
    uint64_t a, b, c, d;

    ck_assert_uint_eq(mvcc_visible(m), 10);
    ck_assert_uint_eq(mvcc_last_assigned(m), 10);
    a = begin(m);
    b = begin(m);
    c = begin(m);
    d = begin(m);
    ck_assert_uint_eq(a, 11);
    ck_assert_uint_eq(d, 14);
    ck_assert_uint_eq(mvcc_last_assigned(m), 14);
    ck_assert_uint_eq(mvcc_in_flight(m), 4);

    /* c and b are durable, a is not: nothing new is visible (no gap). */
    ck_assert_uint_eq(mvcc_commit_done(m, c, ST_OK), 10);
    ck_assert_uint_eq(mvcc_commit_done(m, b, ST_OK), 10);
    ck_assert_uint_eq(mvcc_visible(m), 10);
    /* a durable: a, b, c at once; d still pending. */
    ck_assert_uint_eq(mvcc_commit_done(m, a, ST_OK), 13);
    ck_assert_uint_eq(mvcc_in_flight(m), 1);
    ck_assert_uint_eq(mvcc_commit_done(m, d, ST_OK), 14);
    ck_assert_uint_eq(mvcc_in_flight(m), 0);
    ck_assert_int_eq(mvcc_error(m, NULL), ST_OK);
    mvcc_free(m);
    mvcc_free(NULL);
}
END_TEST

START_TEST(test_abort_is_skipped)
{
    struct mvcc *m = mvcc_new(0, NULL);
    uint64_t a = begin(m), b = begin(m), c = begin(m);

    ck_assert_uint_eq(mvcc_commit_done(m, c, ST_OK), 0);
    ck_assert_uint_eq(mvcc_commit_abort(m, a), 1);
    ck_assert_uint_eq(mvcc_commit_abort(m, b), 3);
    /* An abort is not a failure. */
    ck_assert_uint_eq(begin(m), 4);
    mvcc_free(m);
}
END_TEST

START_TEST(test_failed_commit_blocks_visibility)
{
    struct mvcc *m = mvcc_new(0, NULL);
    uint64_t a = begin(m), b = begin(m), c = begin(m), d = begin(m);
    uint64_t v;
    struct err err;

    ck_assert_uint_eq(mvcc_commit_done(m, a, ST_OK), 1);
    ck_assert_uint_eq(mvcc_commit_done(m, b, ST_EIO), 1);
    /* Commits after the failed one never show, durable or not. */
    ck_assert_uint_eq(mvcc_commit_done(m, d, ST_OK), 1);
    ck_assert_uint_eq(mvcc_commit_abort(m, c), 1);
    ck_assert_uint_eq(mvcc_visible(m), 1);
    ck_assert_int_eq(mvcc_commit_begin(m, &v, &err), ST_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "commit 2 failed"));
    ck_assert_int_eq(mvcc_error(m, &err), ST_EIO);
    mvcc_free(m);
}
END_TEST

START_TEST(test_fail_is_sticky_but_in_flight_ends)
{
    struct mvcc *m = mvcc_new(5, NULL);
    uint64_t a = begin(m), b = begin(m), v;
    struct err cause, err;

    err_set(&cause, ST_EIO, "cannot sync wal file '%s'", "000001.wal");
    mvcc_fail(m, &cause);
    ck_assert_int_eq(mvcc_commit_begin(m, &v, &err), ST_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "000001.wal"));
    /* Commits that were written before the failure still become visible. */
    ck_assert_uint_eq(mvcc_commit_done(m, b, ST_OK), 5);
    ck_assert_uint_eq(mvcc_commit_done(m, a, ST_OK), 7);
    mvcc_fail(m, NULL); /* a second failure keeps the first cause */
    ck_assert_int_eq(mvcc_error(m, &err), ST_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "000001.wal"));
    mvcc_free(m);
}
END_TEST

START_TEST(test_random_completion_model)
{
    /* Up to 3000 commits in flight (the ring grows), ended in random order. */
    struct mvcc *m = mvcc_new(100, NULL);
    enum { N = 6000 };
    uint8_t *state = calloc(N + 1, 1); /* 0 pending, 1 durable, 2 aborted */
    uint64_t *open = calloc(N, sizeof(*open));
    size_t nopen = 0, begun = 0;

    rng_state = 5;
    while (begun < N || nopen) {
        if (begun < N && (nopen == 0 || rnd() % 2)) {
            uint64_t v = begin(m);

            ck_assert_uint_eq(v, 101 + begun);
            open[nopen++] = v;
            begun++;
        } else {
            size_t i = rnd() % nopen;
            uint64_t v = open[i], vis, want = 100;
            bool ab = rnd() % 10 == 0;

            open[i] = open[--nopen];
            state[v - 100] = ab ? 2 : 1;
            vis = ab ? mvcc_commit_abort(m, v) : mvcc_commit_done(m, v, ST_OK);
            while (want - 100 < begun && state[want + 1 - 100])
                want++;
            ck_assert_uint_eq(vis, want);
        }
    }
    ck_assert_uint_eq(mvcc_visible(m), 100 + N);
    free(state);
    free(open);
    mvcc_free(m);
}
END_TEST

START_TEST(test_floor_and_read_checks)
{
    struct mvcc *m = mvcc_new(50, NULL);
    struct err err;

    ck_assert_int_eq(mvcc_check_read(m, 50, &err), ST_OK);
    ck_assert_int_eq(mvcc_check_read(m, 0, &err), ST_OK);
    ck_assert_int_eq(mvcc_check_read(m, 51, &err), ST_EINVAL);
    mvcc_set_floor(m, 20);
    mvcc_set_floor(m, 10); /* never lowers */
    ck_assert_uint_eq(mvcc_floor(m), 20);
    ck_assert_int_eq(mvcc_check_read(m, 19, &err), ST_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(err.msg, "snapshot too old"));
    ck_assert_int_eq(mvcc_check_read(m, 20, &err), ST_OK);
    mvcc_free(m);
}
END_TEST

START_TEST(test_snapshot_registry)
{
    struct mvcc_opts o = {.max_snapshots = 3};
    struct mvcc *m = mvcc_new(40, &o);
    struct mvcc_snapshot a, b, c, x;
    struct err err;
    uint64_t v;

    ck_assert_uint_eq(mvcc_oldest_held(m, 0), 40);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 1, 0, 1000, 600000, &a, &err), ST_OK);
    ck_assert_uint_eq(a.version, 40);
    ck_assert_uint_ne(a.id, 0);
    ck_assert_int_eq(a.expires_ms, 601000);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 2, 30, 1000, 1000, &b, &err), ST_OK);
    ck_assert_uint_ne(b.id, a.id);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 1, 41, 1000, 1000, &x, &err), ST_EINVAL);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 1, 0, 1000, 0, &x, &err), ST_EINVAL);

    /* Visibility moves on; the held versions stay the oldest. */
    v = begin(m);
    mvcc_commit_done(m, v, ST_OK);
    ck_assert_uint_eq(mvcc_oldest_held(m, 1500), 30);

    /* Owners see only their own snapshots. */
    ck_assert_int_eq(mvcc_snapshot_get(m, 2, a.id, 1500, &x), ST_ENOTFOUND);
    ck_assert_int_eq(mvcc_snapshot_release(m, 2, a.id), ST_ENOTFOUND);
    ck_assert_int_eq(mvcc_snapshot_get(m, 1, a.id, 1500, &x), ST_OK);
    ck_assert_uint_eq(x.version, 40);

    ck_assert_int_eq(mvcc_snapshot_hold(m, 3, 35, 1000, 5000, &c, &err), ST_OK);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 3, 0, 1000, 5000, &x, &err), ST_EBUSY);
    ck_assert_uint_eq(mvcc_snapshot_count(m), 3);

    /* b expires at 2000: gone for reads and for the oldest version. */
    ck_assert_int_eq(mvcc_snapshot_get(m, 2, b.id, 1999, &x), ST_OK);
    ck_assert_uint_eq(mvcc_oldest_held(m, 2000), 35);
    ck_assert_int_eq(mvcc_snapshot_get(m, 2, b.id, 2000, &x), ST_ENOTFOUND);
    ck_assert_uint_eq(mvcc_snapshot_count(m), 2);

    /* c expires at 6000; expire() drops it, a stays. */
    ck_assert_uint_eq(mvcc_snapshot_expire(m, 5999), 0);
    ck_assert_uint_eq(mvcc_snapshot_expire(m, 6000), 1);
    ck_assert_uint_eq(mvcc_snapshot_count(m), 1);
    ck_assert_uint_eq(mvcc_oldest_held(m, 6000), 40);

    ck_assert_int_eq(mvcc_snapshot_release(m, 1, a.id), ST_OK);
    ck_assert_int_eq(mvcc_snapshot_release(m, 1, a.id), ST_ENOTFOUND);
    ck_assert_uint_eq(mvcc_oldest_held(m, 6000), 41);

    /* Below the floor a snapshot cannot be held. */
    mvcc_set_floor(m, 41);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 1, 40, 7000, 10, &x, &err), ST_ECONFLICT);
    ck_assert_int_eq(mvcc_snapshot_hold(m, 1, 41, 7000, INT64_MAX, &x, &err), ST_OK);
    ck_assert_int_eq(x.expires_ms, INT64_MAX);
    mvcc_free(m);
}
END_TEST

/* ---- conflicts ---- */

static void mt_put(struct memtable *mt, uint32_t table, const char *key, uint64_t version,
                   bool tomb)
{
    static const uint8_t row[8] = {8, 0, 0, 0, 1, 2, 3, 4};
    struct memtable_write w;

    memset(&w, 0, sizeof(w));
    w.table = table;
    w.key = key;
    w.key_len = (uint32_t)strlen(key);
    w.hash = key_hash(key, w.key_len);
    w.schema_version = 1;
    if (!tomb) {
        w.row = row;
        w.row_len = sizeof(row);
    }
    memtable_put(mt, version, &w);
}

static struct mvcc_key mk(uint32_t table, const char *key)
{
    struct mvcc_key k;

    k.table = table;
    k.key = key;
    k.key_len = (uint32_t)strlen(key);
    k.hash = key_hash(key, k.key_len);
    return k;
}

/* Segments stand-in: "old" was last written at version 3, "seg" at 12. */
static uint64_t stored_version(void *arg, const struct mvcc_key *k)
{
    int *calls = arg;

    (*calls)++;
    if (k->key_len == 3 && !memcmp(k->key, "old", 3))
        return 3;
    if (k->key_len == 3 && !memcmp(k->key, "seg", 3))
        return 12;
    return 0;
}

START_TEST(test_conflicts)
{
    struct mvcc *m = mvcc_new(0, NULL);
    struct memtable *frozen = memtable_new(NULL);
    struct memtable *active = memtable_new(NULL);
    struct memtable *mts[2] = {active, frozen};
    struct mvcc_key keys[6];
    size_t conf[6], nconf = 99;
    struct err err;
    uint64_t v[12];
    int calls = 0;

    for (int i = 0; i < 12; i++)
        v[i] = begin(m);
    /* Versions 1-5 in the frozen memtable, 6-12 in the active one. */
    mt_put(frozen, 1, "a", v[0], false); /* a@1 */
    mt_put(frozen, 1, "b", v[2], false); /* b@3 */
    mt_put(frozen, 1, "x", v[4], false); /* x@5, rewritten at 9 below */
    mt_put(active, 1, "b", v[5], true);  /* b deleted @6 */
    mt_put(active, 2, "a", v[6], false); /* another table's a @7 */
    mt_put(active, 1, "x", v[8], false); /* x@9 */
    for (int i = 0; i < 10; i++)
        mvcc_commit_done(m, v[i], ST_OK);
    ck_assert_uint_eq(mvcc_visible(m), 10);
    /* Version 11 is applied (in the memtable) but not durable yet. */
    mt_put(active, 1, "c", v[10], false);

    keys[0] = mk(1, "a");
    keys[1] = mk(1, "b");
    keys[2] = mk(1, "x");
    keys[3] = mk(1, "c");
    keys[4] = mk(1, "old");
    keys[5] = mk(1, "seg");

    /* Read at 10: c (11, not durable: it committed first) and seg (12) conflict. */
    ck_assert_int_eq(
        mvcc_check_conflicts(m, mts, 2, 10, keys, 6, stored_version, &calls, conf, &nconf, &err),
        ST_ECONFLICT);
    ck_assert_uint_eq(nconf, 2);
    ck_assert_uint_eq(conf[0], 3);
    ck_assert_uint_eq(conf[1], 5);
    /* Only the keys no memtable holds went to the segments. */
    ck_assert_int_eq(calls, 2);

    /* Read at 5: b (deleted at 6) and x (9) too; a@1 and table 2's a do not count. */
    ck_assert_int_eq(
        mvcc_check_conflicts(m, mts, 2, 5, keys, 6, stored_version, &calls, conf, &nconf, &err),
        ST_ECONFLICT);
    ck_assert_uint_eq(nconf, 4);
    ck_assert_uint_eq(conf[0], 1);
    ck_assert_uint_eq(conf[1], 2);
    ck_assert_uint_eq(conf[2], 3);
    ck_assert_uint_eq(conf[3], 5);

    /* x@5 is in the frozen memtable too: the newer memtable decides. */
    ck_assert_int_eq(
        mvcc_check_conflicts(m, mts, 2, 8, &keys[2], 1, NULL, NULL, conf, &nconf, &err),
        ST_ECONFLICT);
    ck_assert_int_eq(
        mvcc_check_conflicts(m, mts, 2, 9, &keys[2], 1, NULL, NULL, conf, &nconf, &err), ST_OK);
    ck_assert_uint_eq(nconf, 0);

    /* No conflict: keys older than read_version, unknown keys, no segment callback. */
    ck_assert_int_eq(mvcc_check_conflicts(m, mts, 2, 3, keys, 1, NULL, NULL, conf, &nconf, &err),
                     ST_OK);
    ck_assert_int_eq(
        mvcc_check_conflicts(m, mts, 2, 10, &keys[4], 2, NULL, NULL, conf, &nconf, &err), ST_OK);
    ck_assert_int_eq(mvcc_check_conflicts(m, mts, 2, 0, keys, 0, NULL, NULL, conf, &nconf, &err),
                     ST_OK);

    /* A read_version nobody was given yet is refused. */
    ck_assert_int_eq(mvcc_check_conflicts(m, mts, 2, 11, keys, 1, NULL, NULL, conf, &nconf, &err),
                     ST_EINVAL);
    /* After a failure nothing is checked. */
    mvcc_commit_done(m, v[10], ST_EIO);
    ck_assert_int_eq(mvcc_check_conflicts(m, mts, 2, 10, keys, 1, NULL, NULL, conf, &nconf, &err),
                     ST_EIO);
    mvcc_commit_abort(m, v[11]);
    memtable_unref(active);
    memtable_unref(frozen);
    mvcc_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mvcc");
    TCase *tc = tcase_create("mvcc");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_out_of_order_durability);
    tcase_add_test(tc, test_abort_is_skipped);
    tcase_add_test(tc, test_failed_commit_blocks_visibility);
    tcase_add_test(tc, test_fail_is_sticky_but_in_flight_ends);
    tcase_add_test(tc, test_random_completion_model);
    tcase_add_test(tc, test_floor_and_read_checks);
    tcase_add_test(tc, test_snapshot_registry);
    tcase_add_test(tc, test_conflicts);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

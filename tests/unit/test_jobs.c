/*
 * Unit tests for src/jobs: timed runs, demand runs and their coalescing,
 * one task never on two threads, different tasks in parallel,
 * jobs_kick_notify()/jobs_kick_wait() only settled by a run that began
 * after the call, pause/resume (nesting), drain, and jobs_free() with
 * queued and running tasks.
 *
 * Tasks that must be caught mid-run block on a "gate" the test controls,
 * so most checks are on counters, not on timing. The few sleeps (tens of
 * ms) only give a wrong implementation the chance to do what it must not;
 * waits for something to happen are bounded polls of a few seconds.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jobs/jobs.h"
#include "util/timeutil.h"

#define WAIT_MS 5000 /* bound on any wait for something that must happen */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* Polls until t has completed at least n runs; false after WAIT_MS. */
static bool wait_runs(struct jobs_task *t, uint64_t n)
{
    uint64_t end = time_mono_ns() + WAIT_MS * 1000000ull;

    while (jobs_task_runs(t) < n) {
        if (time_mono_ns() > end)
            return false;
        sleep_ms(1);
    }
    return true;
}

/* ---- a task that blocks until the test lets it through ---- */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int permits; /* runs allowed to finish; -1: all */
    int entered; /* runs begun */
    int exited;  /* runs ended */
    int in_fn;   /* runs in progress */
    int max_in;  /* highest in_fn seen */
};

static void gate_init(struct gate *g, int permits)
{
    pthread_condattr_t ca;

    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    g->permits = permits;
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void gate_fn(void *arg)
{
    struct gate *g = arg;

    pthread_mutex_lock(&g->mu);
    g->entered++;
    g->in_fn++;
    if (g->in_fn > g->max_in)
        g->max_in = g->in_fn;
    pthread_cond_broadcast(&g->cv);
    while (g->permits == 0)
        pthread_cond_wait(&g->cv, &g->mu);
    if (g->permits > 0)
        g->permits--;
    g->in_fn--;
    g->exited++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Lets n more runs finish (-1: all from now on). */
static void gate_open(struct gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    g->permits = n < 0 ? -1 : g->permits + n;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gate_get(struct gate *g, const int *field)
{
    int v;

    pthread_mutex_lock(&g->mu);
    v = *field;
    pthread_mutex_unlock(&g->mu);
    return v;
}

/* Waits until *field >= n; false after WAIT_MS. */
static bool gate_wait(struct gate *g, const int *field, int n)
{
    struct timespec ts;
    bool ok = true;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g->mu);
    while (*field < n && ok)
        ok = pthread_cond_timedwait(&g->cv, &g->mu, &ts) != ETIMEDOUT || *field >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

/* ---- a plain counting task and a counting callback ---- */

struct counter {
    atomic_int n;        /* calls */
    atomic_int in_fn;    /* calls in progress */
    atomic_int max_in;   /* highest in_fn seen */
    atomic_bool on_main; /* a call came from the main thread */
    pthread_t main;      /* the test's thread */
    struct jobs_task *t; /* task whose runs the callback records */
    atomic_long runs_at; /* jobs_task_runs(t) at the last call */
};

static void counter_init(struct counter *c)
{
    memset(c, 0, sizeof(*c));
    c->main = pthread_self();
}

static void count_fn(void *arg)
{
    struct counter *c = arg;
    int in = atomic_fetch_add(&c->in_fn, 1) + 1;
    int max = atomic_load(&c->max_in);

    while (in > max && !atomic_compare_exchange_weak(&c->max_in, &max, in))
        ;
    if (pthread_equal(pthread_self(), c->main))
        atomic_store(&c->on_main, true);
    if (c->t)
        atomic_store(&c->runs_at, (long)jobs_task_runs(c->t));
    atomic_fetch_add(&c->n, 1);
    atomic_fetch_sub(&c->in_fn, 1);
}

/* A task that takes a little while, to give overlapping runs a chance. */
static void slow_count_fn(void *arg)
{
    struct counter *c = arg;
    int in = atomic_fetch_add(&c->in_fn, 1) + 1;
    int max = atomic_load(&c->max_in);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000};

    while (in > max && !atomic_compare_exchange_weak(&c->max_in, &max, in))
        ;
    nanosleep(&ts, NULL);
    atomic_fetch_add(&c->n, 1);
    atomic_fetch_sub(&c->in_fn, 1);
}

/* ---- timers ---- */

START_TEST(test_timer_runs)
{
    struct jobs *j = jobs_new(NULL);
    struct counter c;
    struct counter never;
    struct counter later;
    struct jobs_task *t;
    struct jobs_task *tn;
    struct jobs_task *tl;

    counter_init(&c);
    counter_init(&never);
    counter_init(&later);
    t = jobs_add(j, "tick", count_fn, &c, 5);
    tn = jobs_add(j, "never", count_fn, &never, 0);
    tl = jobs_add(j, "hourly", count_fn, &later, 3600 * 1000);
    ck_assert_str_eq(jobs_task_name(t), "tick");
    ck_assert_str_eq(jobs_task_name(tl), "hourly");
    ck_assert(wait_runs(t, 3));
    ck_assert_int_ge(atomic_load(&c.n), 3);
    ck_assert(!atomic_load(&c.on_main));
    ck_assert_uint_eq(jobs_task_runs(tn), 0);
    ck_assert_uint_eq(jobs_task_runs(tl), 0);
    ck_assert_int_eq(atomic_load(&never.n), 0);
    ck_assert_int_eq(atomic_load(&later.n), 0);
    jobs_free(j);
}
END_TEST

static atomic_ullong first_run_ns;

static void stamp_fn(void *arg)
{
    unsigned long long zero = 0;

    ST_UNUSED(arg);
    atomic_compare_exchange_strong(&first_run_ns, &zero, time_mono_ns());
}

START_TEST(test_first_timed_run_after_interval)
{
    struct jobs *j = jobs_new(NULL);
    uint64_t added = time_mono_ns();
    struct jobs_task *t = jobs_add(j, "stamp", stamp_fn, NULL, 30);

    ck_assert(wait_runs(t, 1));
    ck_assert_uint_ge(atomic_load(&first_run_ns) - added, 30 * 1000000ull);
    jobs_free(j);
}
END_TEST

START_TEST(test_set_interval)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct counter c;
    struct jobs_task *t;
    uint64_t runs;

    counter_init(&c);
    t = jobs_add(j, "reload", count_fn, &c, 3600 * 1000);
    /* The workers sleep towards the hour: the change must wake them. */
    jobs_set_interval(t, 5);
    ck_assert(wait_runs(t, 3));

    jobs_set_interval(t, 0);
    jobs_drain(j);
    runs = jobs_task_runs(t);
    sleep_ms(30);
    ck_assert_uint_eq(jobs_task_runs(t), runs);

    jobs_set_interval(t, 2);
    ck_assert(wait_runs(t, runs + 3));
    jobs_set_interval(t, 3600 * 1000);
    jobs_drain(j);
    runs = jobs_task_runs(t);
    sleep_ms(30);
    ck_assert_uint_eq(jobs_task_runs(t), runs);

    /* Kicks still work with no interval. */
    jobs_kick_wait(t);
    ck_assert_uint_ge(jobs_task_runs(t), runs + 1);
    jobs_free(j);
}
END_TEST

START_TEST(test_timers_run_while_a_task_blocks)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct gate g;
    struct counter c;
    struct jobs_task *slow;
    struct jobs_task *tick;

    gate_init(&g, 0);
    counter_init(&c);
    slow = jobs_add(j, "compact", gate_fn, &g, 0);
    tick = jobs_add(j, "tick", count_fn, &c, 2);
    /*
     * Whichever worker knew the next deadline may be the one that takes
     * the blocking task: the other must go on firing the timer.
     */
    for (int i = 1; i <= 10; i++) {
        uint64_t runs;

        ck_assert(wait_runs(tick, jobs_task_runs(tick) + 1));
        jobs_kick(slow);
        ck_assert(gate_wait(&g, &g.entered, i));
        runs = jobs_task_runs(tick);
        ck_assert(wait_runs(tick, runs + 2));
        gate_open(&g, 1);
        ck_assert(wait_runs(slow, (uint64_t)i));
    }
    ck_assert_uint_eq(jobs_task_runs(slow), 10);
    jobs_free(j);
    gate_destroy(&g);
}
END_TEST

/* ---- demand and coalescing ---- */

START_TEST(test_kick_wait_runs)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 0});
    struct counter c;
    struct jobs_task *t;

    counter_init(&c);
    t = jobs_add(j, "demand", count_fn, &c, 0);
    jobs_kick_wait(t);
    ck_assert_uint_eq(jobs_task_runs(t), 1);
    ck_assert_int_eq(atomic_load(&c.n), 1);
    jobs_kick_wait(t);
    ck_assert_uint_eq(jobs_task_runs(t), 2);
    jobs_kick(t);
    ck_assert(wait_runs(t, 3));
    jobs_drain(j);
    ck_assert_uint_eq(jobs_task_runs(t), 3);
    ck_assert(!atomic_load(&c.on_main));
    jobs_free(j);
}
END_TEST

START_TEST(test_coalesce_while_running)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct gate g;
    struct jobs_task *t;

    gate_init(&g, 0);
    t = jobs_add(j, "compact", gate_fn, &g, 0);
    jobs_kick(t);
    ck_assert(gate_wait(&g, &g.entered, 1));
    for (int i = 0; i < 100; i++)
        jobs_kick(t);
    gate_open(&g, -1);
    ck_assert(wait_runs(t, 2));
    jobs_drain(j);
    ck_assert_uint_eq(jobs_task_runs(t), 2);
    ck_assert_int_eq(gate_get(&g, &g.entered), 2);
    ck_assert_int_eq(gate_get(&g, &g.max_in), 1);
    jobs_free(j);
    gate_destroy(&g);
}
END_TEST

START_TEST(test_coalesce_while_queued)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 1});
    struct gate g;
    struct counter c;
    struct jobs_task *ta;
    struct jobs_task *tb;

    gate_init(&g, 0);
    counter_init(&c);
    ta = jobs_add(j, "busy", gate_fn, &g, 0);
    tb = jobs_add(j, "queued", count_fn, &c, 0);
    jobs_kick(ta);
    ck_assert(gate_wait(&g, &g.entered, 1));
    /* The only thread is busy: tb stays queued through all these kicks. */
    for (int i = 0; i < 100; i++)
        jobs_kick(tb);
    ck_assert_int_eq(atomic_load(&c.n), 0);
    gate_open(&g, -1);
    ck_assert(wait_runs(tb, 1));
    jobs_drain(j);
    ck_assert_uint_eq(jobs_task_runs(ta), 1);
    ck_assert_uint_eq(jobs_task_runs(tb), 1);
    ck_assert_int_eq(atomic_load(&c.n), 1);
    jobs_free(j);
    gate_destroy(&g);
}
END_TEST

struct kicker {
    struct jobs_task **tasks;
    int ntasks;
    int rounds;
};

static void *kicker_main(void *arg)
{
    struct kicker *k = arg;

    for (int r = 0; r < k->rounds; r++) {
        for (int i = 0; i < k->ntasks; i++) {
            if (r % 50 == 0)
                jobs_kick_wait(k->tasks[i]);
            else
                jobs_kick(k->tasks[i]);
        }
        if (r % 8 == 0)
            sched_yield();
    }
    return NULL;
}

START_TEST(test_never_on_two_threads)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 4});
    struct counter c[3];
    struct jobs_task *t[3];
    struct kicker k = {.tasks = t, .ntasks = 3, .rounds = 1500};
    pthread_t th[3];

    for (int i = 0; i < 3; i++) {
        counter_init(&c[i]);
        t[i] = jobs_add(j, "busy", slow_count_fn, &c[i], i == 0 ? 1 : 0);
    }
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, kicker_main, &k), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    jobs_set_interval(t[0], 0);
    jobs_drain(j);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(atomic_load(&c[i].max_in), 1);
        ck_assert_int_ge(atomic_load(&c[i].n), 1500 / 50);
        ck_assert_uint_eq(jobs_task_runs(t[i]), (uint64_t)atomic_load(&c[i].n));
    }
    jobs_free(j);
}
END_TEST

/* Two tasks that each wait for the other to be inside its function. */
struct rendezvous {
    struct gate g;  /* entered counts arrivals */
    atomic_int met; /* runs that saw both inside */
};

static void rendezvous_fn(void *arg)
{
    struct rendezvous *r = arg;

    pthread_mutex_lock(&r->g.mu);
    r->g.entered++;
    pthread_cond_broadcast(&r->g.cv);
    pthread_mutex_unlock(&r->g.mu);
    if (gate_wait(&r->g, &r->g.entered, 2))
        atomic_fetch_add(&r->met, 1);
}

START_TEST(test_two_tasks_in_parallel)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct rendezvous r;
    struct jobs_task *ta;
    struct jobs_task *tb;

    gate_init(&r.g, 0);
    atomic_init(&r.met, 0);
    ta = jobs_add(j, "flush", rendezvous_fn, &r, 0);
    tb = jobs_add(j, "compact", rendezvous_fn, &r, 0);
    jobs_kick(ta);
    jobs_kick(tb);
    ck_assert(wait_runs(ta, 1));
    ck_assert(wait_runs(tb, 1));
    ck_assert_int_eq(atomic_load(&r.met), 2);
    jobs_free(j);
    gate_destroy(&r.g);
}
END_TEST

/* ---- waiting for a run ---- */

static void count_cb(void *arg)
{
    count_fn(arg);
}

START_TEST(test_kick_notify_idle)
{
    struct jobs *j = jobs_new(NULL);
    struct counter task;
    struct counter cb;
    struct jobs_task *t;

    counter_init(&task);
    counter_init(&cb);
    t = jobs_add(j, "checkpoint", count_fn, &task, 0);
    cb.t = t;
    jobs_kick_notify(t, count_cb, &cb);
    ck_assert(wait_runs(t, 1));
    jobs_drain(j);
    ck_assert_int_eq(atomic_load(&cb.n), 1);
    ck_assert_int_eq(atomic_load(&cb.runs_at), 1); /* after the run ended */
    ck_assert(!atomic_load(&cb.on_main));
    jobs_kick_wait(t);
    jobs_drain(j);
    ck_assert_int_eq(atomic_load(&cb.n), 1);
    jobs_free(j);
}
END_TEST

START_TEST(test_kick_notify_needs_a_later_run)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 1});
    struct gate g;
    struct counter cb;
    struct jobs_task *t;

    gate_init(&g, 0);
    counter_init(&cb);
    t = jobs_add(j, "compact", gate_fn, &g, 0);
    cb.t = t;
    jobs_kick(t);
    ck_assert(gate_wait(&g, &g.entered, 1));
    /* This run began before the call: it must not settle it. */
    jobs_kick_notify(t, count_cb, &cb);
    gate_open(&g, 1);
    ck_assert(gate_wait(&g, &g.entered, 2));
    /* One thread: run 1 and its callbacks are over once run 2 begins. */
    ck_assert_int_eq(atomic_load(&cb.n), 0);
    gate_open(&g, -1);
    ck_assert(wait_runs(t, 2));
    jobs_drain(j);
    ck_assert_int_eq(atomic_load(&cb.n), 1);
    ck_assert_int_eq(atomic_load(&cb.runs_at), 2);
    ck_assert_uint_eq(jobs_task_runs(t), 2);
    jobs_kick_wait(t);
    jobs_drain(j);
    ck_assert_int_eq(atomic_load(&cb.n), 1);
    jobs_free(j);
    gate_destroy(&g);
}
END_TEST

struct waiting {
    struct jobs_task *t;
    struct gate *g;
    atomic_bool returned;
    atomic_int exited_at; /* g->exited when jobs_kick_wait() returned */
};

static void *kick_wait_main(void *arg)
{
    struct waiting *w = arg;

    jobs_kick_wait(w->t);
    atomic_store(&w->exited_at, gate_get(w->g, &w->g->exited));
    atomic_store(&w->returned, true);
    return NULL;
}

START_TEST(test_kick_wait_needs_a_later_run)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct gate g;
    struct waiting w = {.g = &g};
    pthread_t th;

    gate_init(&g, 0);
    w.t = jobs_add(j, "compact", gate_fn, &g, 0);
    jobs_kick(w.t);
    ck_assert(gate_wait(&g, &g.entered, 1));
    ck_assert_int_eq(pthread_create(&th, NULL, kick_wait_main, &w), 0);
    sleep_ms(10);
    gate_open(&g, 1);
    ck_assert(gate_wait(&g, &g.entered, 2));
    sleep_ms(10);
    ck_assert(!atomic_load(&w.returned));
    gate_open(&g, 1);
    pthread_join(th, NULL);
    ck_assert(atomic_load(&w.returned));
    ck_assert_int_eq(atomic_load(&w.exited_at), 2);
    ck_assert_int_eq(gate_get(&g, &g.max_in), 1);
    jobs_free(j);
    gate_destroy(&g);
}
END_TEST

/* ---- pause and resume ---- */

struct pauser {
    struct jobs *j;
    atomic_bool returned;
};

static void *pause_main(void *arg)
{
    struct pauser *p = arg;

    jobs_pause(p->j);
    atomic_store(&p->returned, true);
    return NULL;
}

START_TEST(test_pause_resume)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct gate g;
    struct counter c;
    struct pauser p = {.j = j};
    struct jobs_task *t;
    struct jobs_task *tick;
    pthread_t th;
    uint64_t ticks;

    gate_init(&g, 0);
    counter_init(&c);
    t = jobs_add(j, "compact", gate_fn, &g, 0);
    tick = jobs_add(j, "tick", count_fn, &c, 1);
    jobs_kick(t);
    ck_assert(gate_wait(&g, &g.entered, 1));

    /* Pause waits for the running task. */
    ck_assert_int_eq(pthread_create(&th, NULL, pause_main, &p), 0);
    sleep_ms(20);
    ck_assert(!atomic_load(&p.returned));
    gate_open(&g, -1);
    pthread_join(th, NULL);
    ck_assert(atomic_load(&p.returned));
    ck_assert_int_eq(gate_get(&g, &g.exited), 1);

    /* Nothing starts while paused: neither kicks nor timers. */
    ticks = jobs_task_runs(tick);
    jobs_kick(t);
    sleep_ms(20);
    ck_assert_int_eq(gate_get(&g, &g.entered), 1);
    ck_assert_uint_eq(jobs_task_runs(tick), ticks);

    /* Nesting: two pauses need two resumes. */
    jobs_pause(j);
    jobs_resume(j);
    sleep_ms(20);
    ck_assert_int_eq(gate_get(&g, &g.entered), 1);
    ck_assert_uint_eq(jobs_task_runs(tick), ticks);

    jobs_resume(j);
    ck_assert(wait_runs(t, 2));
    ck_assert(wait_runs(tick, ticks + 2));
    jobs_drain(j);
    ck_assert_int_eq(gate_get(&g, &g.entered), 2);
    jobs_free(j);
    gate_destroy(&g);
}
END_TEST

START_TEST(test_drain_while_paused)
{
    struct jobs *j = jobs_new(NULL);
    struct counter c;
    struct jobs_task *t;

    counter_init(&c);
    t = jobs_add(j, "flush", count_fn, &c, 0);
    jobs_pause(j);
    jobs_kick(t);
    jobs_drain(j); /* the queued run does not count while paused */
    ck_assert_uint_eq(jobs_task_runs(t), 0);
    jobs_resume(j);
    jobs_drain(j);
    ck_assert_uint_eq(jobs_task_runs(t), 1);
    jobs_free(j);
}
END_TEST

/* ---- free ---- */

struct freer {
    struct jobs *j;
    atomic_bool returned;
};

static void *free_main(void *arg)
{
    struct freer *f = arg;

    jobs_free(f->j);
    atomic_store(&f->returned, true);
    return NULL;
}

START_TEST(test_free_with_running_and_queued)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 1});
    struct gate g;
    struct counter other;
    struct counter cb_a1;
    struct counter cb_a2;
    struct counter cb_b;
    struct freer f = {.j = j};
    struct jobs_task *ta;
    struct jobs_task *tb;
    pthread_t th;

    gate_init(&g, 0);
    counter_init(&other);
    counter_init(&cb_a1);
    counter_init(&cb_a2);
    counter_init(&cb_b);
    ta = jobs_add(j, "compact", gate_fn, &g, 0);
    tb = jobs_add(j, "flush", count_fn, &other, 2);
    jobs_kick_notify(ta, count_cb, &cb_a1);
    ck_assert(gate_wait(&g, &g.entered, 1));
    jobs_kick_notify(ta, count_cb, &cb_a2); /* for a run after this one */
    jobs_kick_notify(tb, count_cb, &cb_b);  /* queued behind the only thread */

    ck_assert_int_eq(pthread_create(&th, NULL, free_main, &f), 0);
    sleep_ms(20);
    ck_assert(!atomic_load(&f.returned)); /* waits for the running task */
    gate_open(&g, -1);
    pthread_join(th, NULL);
    ck_assert(atomic_load(&f.returned));
    ck_assert_int_eq(gate_get(&g, &g.in_fn), 0);
    ck_assert_int_ge(gate_get(&g, &g.exited), 1);
    ck_assert_int_eq(atomic_load(&cb_a1.n), 1);
    ck_assert_int_eq(atomic_load(&cb_a2.n), 1);
    ck_assert_int_eq(atomic_load(&cb_b.n), 1);
    ck_assert(!atomic_load(&cb_a1.on_main));
    gate_destroy(&g);
}
END_TEST

struct rekick {
    struct jobs_task *t; /* task to kick_notify from the callback */
    struct counter *cb;  /* its callback's counter */
    atomic_int n;
};

static void rekick_cb(void *arg)
{
    struct rekick *r = arg;

    atomic_fetch_add(&r->n, 1);
    jobs_kick_notify(r->t, count_cb, r->cb);
}

START_TEST(test_free_never_runs_queued)
{
    struct jobs *j = jobs_new(&(struct jobs_opts){.threads = 2});
    struct counter ca;
    struct counter cb;
    struct counter cc;
    struct counter notified;
    struct rekick rk = {.cb = &notified};
    struct jobs_task *ta;
    struct jobs_task *tb;

    counter_init(&ca);
    counter_init(&cb);
    counter_init(&cc);
    counter_init(&notified);
    atomic_init(&rk.n, 0);
    jobs_pause(j);
    /* Added first, ta is settled after tb by jobs_free(). */
    ta = jobs_add(j, "queued", count_fn, &ca, 0);
    tb = jobs_add(j, "other", count_fn, &cb, 0);
    jobs_add(j, "timer", count_fn, &cc, 1);
    rk.t = tb;
    jobs_kick_notify(ta, rekick_cb, &rk);
    sleep_ms(5); /* the timer becomes due */
    jobs_free(j);
    ck_assert_int_eq(atomic_load(&ca.n), 0);
    ck_assert_int_eq(atomic_load(&cb.n), 0);
    ck_assert_int_eq(atomic_load(&cc.n), 0);
    /* Settled by jobs_free() on this thread, including the one it added. */
    ck_assert_int_eq(atomic_load(&rk.n), 1);
    ck_assert_int_eq(atomic_load(&notified.n), 1);
    ck_assert(atomic_load(&notified.on_main));
}
END_TEST

START_TEST(test_free_null_and_idle)
{
    jobs_free(NULL);
    jobs_free(jobs_new(&(struct jobs_opts){.threads = 3}));
}
END_TEST

/* ---- misuse is a bug ---- */

static struct jobs_task *self_task;

static void kick_wait_self_fn(void *arg)
{
    ST_UNUSED(arg);
    jobs_kick_wait(self_task);
}

START_TEST(test_bug_kick_wait_from_task)
{
    struct jobs *j = jobs_new(NULL);

    self_task = jobs_add(j, "self", kick_wait_self_fn, NULL, 0);
    jobs_kick(self_task);
    sleep_ms(WAIT_MS);
}
END_TEST

START_TEST(test_bug_resume_unpaused)
{
    struct jobs *j = jobs_new(NULL);

    jobs_resume(j);
}
END_TEST

static Suite *jobs_suite(void)
{
    Suite *s = suite_create("jobs");
    TCase *timers = tcase_create("timers");
    TCase *demand = tcase_create("demand");
    TCase *wait = tcase_create("wait");
    TCase *pause = tcase_create("pause");
    TCase *stop = tcase_create("free");
    TCase *bugs = tcase_create("bugs");

    tcase_add_test(timers, test_timer_runs);
    tcase_add_test(timers, test_first_timed_run_after_interval);
    tcase_add_test(timers, test_set_interval);
    tcase_add_test(timers, test_timers_run_while_a_task_blocks);
    suite_add_tcase(s, timers);

    tcase_add_test(demand, test_kick_wait_runs);
    tcase_add_test(demand, test_coalesce_while_running);
    tcase_add_test(demand, test_coalesce_while_queued);
    tcase_add_test(demand, test_never_on_two_threads);
    tcase_add_test(demand, test_two_tasks_in_parallel);
    tcase_set_timeout(demand, 30);
    suite_add_tcase(s, demand);

    tcase_add_test(wait, test_kick_notify_idle);
    tcase_add_test(wait, test_kick_notify_needs_a_later_run);
    tcase_add_test(wait, test_kick_wait_needs_a_later_run);
    suite_add_tcase(s, wait);

    tcase_add_test(pause, test_pause_resume);
    tcase_add_test(pause, test_drain_while_paused);
    suite_add_tcase(s, pause);

    tcase_add_test(stop, test_free_with_running_and_queued);
    tcase_add_test(stop, test_free_never_runs_queued);
    tcase_add_test(stop, test_free_null_and_idle);
    suite_add_tcase(s, stop);

    tcase_add_test_raise_signal(bugs, test_bug_kick_wait_from_task, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_resume_unpaused, SIGABRT);
    suite_add_tcase(s, bugs);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jobs_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

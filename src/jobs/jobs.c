/*
 * jobs: a pool of worker threads running background tasks, woken by
 * timers and by demand (see jobs.h for the contract).
 *
 * DESIGN
 *
 * One mutex (jobs.mu) guards everything below it in struct jobs and the
 * scheduling fields of every task. Two condition variables hang off it:
 *   - work_cv: idle workers sleep on it, with a deadline when some task
 *     has a timed run pending. It is signalled when a task is queued and
 *     broadcast when deadlines change (jobs_add, jobs_set_interval), on
 *     jobs_resume() and on jobs_free().
 *   - idle_cv: broadcast whenever a run ends (and when a worker has
 *     finished calling the run's callbacks). jobs_pause(), jobs_drain()
 *     and jobs_kick_wait() sleep on it.
 * Both use CLOCK_MONOTONIC (pthread_condattr_setclock), so a change of the
 * wall clock neither fires nor delays timers.
 *
 * A task is in at most one of three states: idle, queued (on the ready
 * FIFO) or running (a worker is inside its function). A kick queues an
 * idle task, does nothing to a queued one (coalescing), and sets the
 * rerun flag of a running one; the worker that ends the run queues it
 * again. Since only a worker popping the FIFO makes a task running, and a
 * running task is never on the FIFO, a task never runs on two threads.
 *
 * Timers: each task with an interval has a due time (0: none), set when
 * it is added, when its interval changes and when a run ends. An idle
 * worker scans the task list (a handful of tasks: flush, compaction,
 * checkpoint), queues those that are due and sleeps until the earliest
 * due time of the others. Queued and running tasks have no due time: it
 * is set again when their run ends ("interval after the previous run
 * ended"). A worker that takes a task off the FIFO signals work_cv, so
 * that if another worker is idle, it takes over watching the timers.
 *
 * Waiters (jobs_kick_notify, jobs_kick_wait) are kept per task in two
 * lists: wait_next for the next run to start, wait_cur for the run in
 * progress. A run moves wait_next to wait_cur when it starts and settles
 * wait_cur when it ends, so a waiter is only ever settled by a run that
 * began after it was registered. Callbacks run on the worker with the
 * mutex released (they may kick tasks); jobs_kick_wait() uses a waiter on
 * its own stack with a flag instead of a callback, set under the mutex.
 * jobs_free() joins the workers, then settles every waiter left.
 *
 * Workers block every asynchronous signal: only the main thread handles
 * signals.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs/jobs.h"
#include "util/log.h"
#include "util/timeutil.h"

#define JOBS_MAX_THREADS 256
/* Intervals are capped at about 100 years so that due times never wrap. */
#define JOBS_MAX_INTERVAL_NS (100ull * 365 * 24 * 3600 * 1000000000ull)

/* A registered interest in the end of a run. */
struct waiter {
    jobs_done_fn done;   /* callback; NULL for jobs_kick_wait() */
    void *arg;           /* done's argument, or the bool to set when done is NULL */
    struct waiter *next; /* registration order */
};

struct waiter_list {
    struct waiter *head;  /* first registered */
    struct waiter **tail; /* &last->next, or &head when empty */
};

struct jobs_task {
    struct jobs *j;         /* owning pool; constant */
    char *name;             /* constant; owned */
    jobs_fn fn;             /* constant */
    void *arg;              /* constant */
    struct jobs_task *next; /* all tasks of the pool; constant once linked */
    /* The fields below are guarded by j->mu. */
    struct jobs_task *next_ready; /* ready FIFO link when queued */
    uint64_t interval_ns;         /* 0: never by timer */
    uint64_t due_ns;              /* next timed run on CLOCK_MONOTONIC; 0: none */
    bool queued;                  /* on the ready FIFO */
    bool running;                 /* a worker is in fn */
    bool rerun;                   /* kicked while running: queue again at the end */
    uint64_t runs;                /* completed runs */
    struct waiter_list wait_next; /* settled by the end of the next run to start */
    struct waiter_list wait_cur;  /* settled by the end of the run in progress */
};

/*
 * Lock rules: mu guards every non-constant field here and the fields of
 * tasks marked so. It is never held while a task function or a done
 * callback runs, and no other lock is taken under it.
 */
struct jobs {
    pthread_mutex_t mu;            /* see the lock rules above */
    pthread_cond_t work_cv;        /* idle workers wait here (see the top) */
    pthread_cond_t idle_cv;        /* runs ended: pause, drain, kick_wait */
    struct jobs_task *tasks;       /* every task, newest first */
    struct jobs_task *ready_head;  /* ready FIFO: next to run */
    struct jobs_task **ready_tail; /* &last->next_ready, or &ready_head */
    uint32_t running;              /* workers inside a task function */
    uint32_t busy;                 /* workers in a run or its callbacks */
    uint32_t paused;               /* jobs_pause() nesting depth */
    bool stopping;                 /* jobs_free() has begun */
    uint32_t nthreads;             /* started workers */
    pthread_t *threads;            /* nthreads of them */
};

/* The pool whose worker this thread is, to catch waits that would deadlock. */
static _Thread_local const struct jobs *self_pool;

static void waiters_init(struct waiter_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void waiters_append(struct waiter_list *l, struct waiter *w)
{
    w->next = NULL;
    *l->tail = w;
    l->tail = &w->next;
}

/* Moves all of src to the end of dst. */
static void waiters_splice(struct waiter_list *dst, struct waiter_list *src)
{
    if (!src->head)
        return;
    *dst->tail = src->head;
    dst->tail = src->tail;
    waiters_init(src);
}

/*
 * Settles a list under j->mu: sets the flag of each jobs_kick_wait()
 * waiter (whose stack may vanish as soon as mu is released, so it is not
 * touched after) and returns the callback waiters, to be called with
 * call_waiters() once mu is released.
 */
static struct waiter *settle_waiters(struct jobs *j, struct waiter_list *l)
{
    struct waiter *w = l->head;
    struct waiter *cbs = NULL;
    struct waiter **cbs_tail = &cbs;
    bool woke = false;

    while (w) {
        struct waiter *next = w->next;

        if (w->done) {
            w->next = NULL;
            *cbs_tail = w;
            cbs_tail = &w->next;
        } else {
            *(bool *)w->arg = true;
            woke = true;
        }
        w = next;
    }
    waiters_init(l);
    if (woke)
        pthread_cond_broadcast(&j->idle_cv);
    return cbs;
}

/* Calls and frees the callback waiters returned by settle_waiters(). */
static void call_waiters(struct waiter *w)
{
    while (w) {
        struct waiter *next = w->next;

        w->done(w->arg);
        free(w);
        w = next;
    }
}

static uint64_t interval_ns(uint64_t interval_ms)
{
    if (interval_ms > JOBS_MAX_INTERVAL_NS / 1000000u)
        return JOBS_MAX_INTERVAL_NS;
    return interval_ms * 1000000u;
}

/* Puts an idle task on the ready FIFO. Called with j->mu held. */
static void enqueue(struct jobs *j, struct jobs_task *t)
{
    st_assert(!t->queued && !t->running);
    t->queued = true;
    t->due_ns = 0;
    t->next_ready = NULL;
    *j->ready_tail = t;
    j->ready_tail = &t->next_ready;
    pthread_cond_signal(&j->work_cv);
}

static struct jobs_task *dequeue(struct jobs *j)
{
    struct jobs_task *t = j->ready_head;

    j->ready_head = t->next_ready;
    if (!j->ready_head)
        j->ready_tail = &j->ready_head;
    t->next_ready = NULL;
    t->queued = false;
    return t;
}

/* jobs_kick() with j->mu held. */
static void kick_locked(struct jobs *j, struct jobs_task *t)
{
    if (t->running)
        t->rerun = true;
    else if (!t->queued && !j->stopping)
        enqueue(j, t);
}

/*
 * Queues the tasks whose timed run is due and returns the earliest due
 * time of the others (0: none). Called with j->mu held.
 */
static uint64_t fire_timers(struct jobs *j, uint64_t now)
{
    uint64_t next = 0;

    for (struct jobs_task *t = j->tasks; t; t = t->next) {
        if (!t->due_ns || t->queued || t->running)
            continue;
        if (t->due_ns <= now)
            enqueue(j, t);
        else if (!next || t->due_ns < next)
            next = t->due_ns;
    }
    return next;
}

/*
 * Runs t, which the caller has just taken off the FIFO, then settles its
 * waiters. Called with j->mu held; returns with it held.
 */
static void run_task(struct jobs *j, struct jobs_task *t)
{
    struct waiter *cbs;
    uint64_t start;
    uint64_t end;

    t->running = true;
    j->running++;
    j->busy++;
    waiters_splice(&t->wait_cur, &t->wait_next);
    /* Another idle worker, if any, takes over watching the timers. */
    pthread_cond_signal(&j->work_cv);
    pthread_mutex_unlock(&j->mu);

    start = time_mono_ns();
    t->fn(t->arg);
    end = time_mono_ns();
    log_debug("job done task=%s ms=%.3f", t->name, (double)(end - start) / 1e6);

    pthread_mutex_lock(&j->mu);
    t->running = false;
    j->running--;
    t->runs++;
    t->due_ns = t->interval_ns ? end + t->interval_ns : 0;
    if (t->rerun) {
        t->rerun = false;
        if (!j->stopping)
            enqueue(j, t);
    }
    cbs = settle_waiters(j, &t->wait_cur);
    pthread_cond_broadcast(&j->idle_cv);
    if (cbs) {
        pthread_mutex_unlock(&j->mu);
        call_waiters(cbs);
        pthread_mutex_lock(&j->mu);
    }
    j->busy--;
    if (!j->busy)
        pthread_cond_broadcast(&j->idle_cv);
}

/* Waits on work_cv until woken or until deadline (0: none). */
static void wait_work(struct jobs *j, uint64_t deadline)
{
    struct timespec ts;
    int rc;

    if (!deadline) {
        pthread_cond_wait(&j->work_cv, &j->mu);
        return;
    }
    ts.tv_sec = (time_t)(deadline / 1000000000u);
    ts.tv_nsec = (long)(deadline % 1000000000u);
    rc = pthread_cond_timedwait(&j->work_cv, &j->mu, &ts);
    if (rc && rc != ETIMEDOUT)
        ST_BUG("pthread_cond_timedwait: %s", strerror(rc));
}

static void *worker_main(void *arg)
{
    struct jobs *j = arg;

    self_pool = j;
    pthread_mutex_lock(&j->mu);
    while (!j->stopping) {
        uint64_t next = fire_timers(j, time_mono_ns());

        if (!j->paused && j->ready_head) {
            run_task(j, dequeue(j));
            continue;
        }
        wait_work(j, next);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Blocks the asynchronous signals, so that new threads inherit that mask. */
static void block_signals(sigset_t *old)
{
    sigset_t set;

    sigfillset(&set);
    /* Faults are delivered to the faulting thread whatever the mask. */
    sigdelset(&set, SIGSEGV);
    sigdelset(&set, SIGBUS);
    sigdelset(&set, SIGFPE);
    sigdelset(&set, SIGILL);
    sigdelset(&set, SIGABRT);
    sigdelset(&set, SIGTRAP);
    pthread_sigmask(SIG_SETMASK, &set, old);
}

struct jobs *jobs_new(const struct jobs_opts *opts)
{
    struct jobs *j = xcalloc(1, sizeof(*j));
    uint32_t want = opts && opts->threads ? opts->threads : 1;
    pthread_condattr_t ca;
    sigset_t old;

    st_assert(want <= JOBS_MAX_THREADS);
    if (pthread_mutex_init(&j->mu, NULL) || pthread_condattr_init(&ca) ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) || pthread_cond_init(&j->work_cv, &ca) ||
        pthread_cond_init(&j->idle_cv, &ca))
        ST_BUG("cannot initialise the jobs pool's mutex and condition variables");
    pthread_condattr_destroy(&ca);
    j->ready_tail = &j->ready_head;
    j->threads = calloc_array(want, sizeof(*j->threads));

    block_signals(&old);
    for (uint32_t i = 0; i < want; i++) {
        int rc = pthread_create(&j->threads[j->nthreads], NULL, worker_main, j);
        char name[16];

        if (rc) {
            log_warn("cannot start job thread n=%u: %s", (unsigned)i, strerror(rc));
            continue;
        }
        snprintf(name, sizeof(name), "st-jobs-%u", (unsigned)(i % 1000)); /* <= 15 chars */
        pthread_setname_np(j->threads[j->nthreads], name);
        j->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!j->nthreads)
        ST_BUG("cannot start any job thread");
    return j;
}

struct jobs_task *jobs_add(struct jobs *j, const char *name, jobs_fn fn, void *arg,
                           uint64_t interval_ms)
{
    struct jobs_task *t = xcalloc(1, sizeof(*t));

    st_assert(fn);
    t->j = j;
    t->name = xstrdup(name ? name : "");
    t->fn = fn;
    t->arg = arg;
    waiters_init(&t->wait_next);
    waiters_init(&t->wait_cur);

    pthread_mutex_lock(&j->mu);
    t->interval_ns = interval_ns(interval_ms);
    t->due_ns = t->interval_ns ? time_mono_ns() + t->interval_ns : 0;
    t->next = j->tasks;
    j->tasks = t;
    pthread_cond_broadcast(&j->work_cv);
    pthread_mutex_unlock(&j->mu);
    return t;
}

void jobs_set_interval(struct jobs_task *t, uint64_t interval_ms)
{
    struct jobs *j = t->j;

    pthread_mutex_lock(&j->mu);
    t->interval_ns = interval_ns(interval_ms);
    /* A queued or running task gets its due time when its run ends. */
    if (!t->queued && !t->running)
        t->due_ns = t->interval_ns ? time_mono_ns() + t->interval_ns : 0;
    pthread_cond_broadcast(&j->work_cv);
    pthread_mutex_unlock(&j->mu);
}

void jobs_kick(struct jobs_task *t)
{
    struct jobs *j = t->j;

    pthread_mutex_lock(&j->mu);
    kick_locked(j, t);
    pthread_mutex_unlock(&j->mu);
}

void jobs_kick_notify(struct jobs_task *t, jobs_done_fn done, void *arg)
{
    struct jobs *j = t->j;
    struct waiter *w = xmalloc(sizeof(*w));

    st_assert(done);
    w->done = done;
    w->arg = arg;
    pthread_mutex_lock(&j->mu);
    waiters_append(&t->wait_next, w);
    kick_locked(j, t);
    pthread_mutex_unlock(&j->mu);
}

void jobs_kick_wait(struct jobs_task *t)
{
    struct jobs *j = t->j;
    bool done = false;
    struct waiter w = {.done = NULL, .arg = &done};

    st_assert(self_pool != j);
    pthread_mutex_lock(&j->mu);
    waiters_append(&t->wait_next, &w);
    kick_locked(j, t);
    while (!done)
        pthread_cond_wait(&j->idle_cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

void jobs_pause(struct jobs *j)
{
    st_assert(self_pool != j);
    pthread_mutex_lock(&j->mu);
    j->paused++;
    while (j->running)
        pthread_cond_wait(&j->idle_cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

void jobs_resume(struct jobs *j)
{
    pthread_mutex_lock(&j->mu);
    st_assert(j->paused > 0);
    if (!--j->paused)
        pthread_cond_broadcast(&j->work_cv);
    pthread_mutex_unlock(&j->mu);
}

void jobs_drain(struct jobs *j)
{
    st_assert(self_pool != j);
    pthread_mutex_lock(&j->mu);
    while (j->busy || (j->ready_head && !j->paused))
        pthread_cond_wait(&j->idle_cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

uint64_t jobs_task_runs(const struct jobs_task *t)
{
    struct jobs *j = t->j;
    uint64_t runs;

    pthread_mutex_lock(&j->mu);
    runs = t->runs;
    pthread_mutex_unlock(&j->mu);
    return runs;
}

const char *jobs_task_name(const struct jobs_task *t)
{
    return t->name;
}

void jobs_free(struct jobs *j)
{
    struct jobs_task *t;

    if (!j)
        return;
    st_assert(self_pool != j);
    pthread_mutex_lock(&j->mu);
    j->stopping = true;
    pthread_cond_broadcast(&j->work_cv);
    pthread_mutex_unlock(&j->mu);
    for (uint32_t i = 0; i < j->nthreads; i++) {
        int rc = pthread_join(j->threads[i], NULL);

        if (rc)
            ST_BUG("pthread_join: %s", strerror(rc));
    }

    /*
     * No worker is left: settle what waits for runs that never happen. A
     * callback may call jobs_kick_notify() again, on any task: repeat
     * until a whole pass finds nothing.
     */
    for (bool again = true; again;) {
        again = false;
        for (t = j->tasks; t; t = t->next) {
            struct waiter *cbs;

            pthread_mutex_lock(&j->mu);
            st_assert(!t->running && !t->wait_cur.head);
            cbs = settle_waiters(j, &t->wait_next);
            pthread_mutex_unlock(&j->mu);
            if (cbs) {
                call_waiters(cbs);
                again = true;
            }
        }
    }

    while ((t = j->tasks)) {
        j->tasks = t->next;
        free(t->name);
        free(t);
    }
    free(j->threads);
    pthread_cond_destroy(&j->idle_cv);
    pthread_cond_destroy(&j->work_cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

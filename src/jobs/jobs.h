/*
 * jobs: a small pool of worker threads that run background tasks (flush,
 * compaction, checkpoint, expiry), woken by timers and by demand.
 *
 * A task is a function registered once with a name and an interval. It
 * runs on one of the pool's threads:
 *   - every interval_ms after its previous run ended (0: never by timer),
 *   - soon after jobs_kick() (demand), coalesced: kicks that arrive while
 *     the task is already queued are one run; a kick that arrives while
 *     it runs makes it run once more after it ends.
 * A task never runs on two threads at once; different tasks run in
 * parallel up to the number of threads. A task function must return in
 * bounded time (it may do a bounded slice of work and call jobs_kick()
 * on itself to continue).
 *
 * Callers that must wait for a run (an admin endpoint: "compact now, and
 * answer when done") use jobs_kick_wait(), or jobs_kick_notify() with a
 * callback that runs on the worker thread when a run that started after
 * the kick has ended.
 *
 * jobs_pause() lets running tasks end and stops starting new ones until
 * jobs_resume() (tests, backup); jobs_free() stops the threads after the
 * running tasks end. Thread-safe except jobs_add() (before the first
 * kick or timer matters, typically at start-up) and jobs_free().
 *
 * The pool has no libevent: timers are a condition variable wait with a
 * deadline on CLOCK_MONOTONIC.
 */
#ifndef ST_JOBS_JOBS_H
#define ST_JOBS_JOBS_H

#include "util/common.h"

struct jobs;
struct jobs_task;

struct jobs_opts {
    uint32_t threads; /* worker threads; 0: 1 */
};

/* Runs one task; arg is jobs_add()'s. */
typedef void (*jobs_fn)(void *arg);

/* Called once on a worker thread when a waited-for run has ended. */
typedef void (*jobs_done_fn)(void *arg);

/* Starts the pool. opts may be NULL. */
struct jobs *jobs_new(const struct jobs_opts *opts);

/*
 * Registers a task (name is copied, for logs and jobs_task_name()) that
 * runs fn(arg) every interval_ms (0: only when kicked). The first timed
 * run is interval_ms after registration. The task lives until jobs_free().
 */
struct jobs_task *jobs_add(struct jobs *j, const char *name, jobs_fn fn, void *arg,
                           uint64_t interval_ms);

/* Changes a task's interval (config reload); the next timed run is rescheduled. */
void jobs_set_interval(struct jobs_task *t, uint64_t interval_ms);

/* Asks for a run soon (see the top of this file). */
void jobs_kick(struct jobs_task *t);

/*
 * Asks for a run and calls done(arg) on the worker thread once a run
 * that began after this call has ended. If the pool is being freed the
 * run may not happen; done is then called from jobs_free().
 */
void jobs_kick_notify(struct jobs_task *t, jobs_done_fn done, void *arg);

/* jobs_kick() and wait for such a run to end. Not from a task of the same pool. */
void jobs_kick_wait(struct jobs_task *t);

/* Waits for running tasks to end and starts no more until jobs_resume(). Nests. */
void jobs_pause(struct jobs *j);
void jobs_resume(struct jobs *j);

/*
 * Waits until no task is queued or running and no done callback is being
 * called (timed runs not yet due do not count; while paused, queued tasks
 * do not count either). Not from a task of the same pool; a task that
 * kicks itself on every run keeps it waiting.
 */
void jobs_drain(struct jobs *j);

/* Runs completed so far, for tests and metrics. */
uint64_t jobs_task_runs(const struct jobs_task *t);
const char *jobs_task_name(const struct jobs_task *t);

/* Stops the pool: running tasks end, queued and timed ones never run. j may be NULL. */
void jobs_free(struct jobs *j);

#endif

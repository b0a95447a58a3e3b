/*
 * Clocks. Monotonic time for deadlines and latencies, wall time for
 * timestamps shown to people.
 */
#ifndef ST_UTIL_TIMEUTIL_H
#define ST_UTIL_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
static inline uint64_t time_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds since the Unix epoch on CLOCK_REALTIME. */
static inline int64_t time_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif

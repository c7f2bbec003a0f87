/*
 * The runtime's clock: CLOCK_MONOTONIC in nanoseconds. Deadlines of waits,
 * timers and the scheduler's periodic work are all on it.
 */
#ifndef WEFT_RUNTIME_CLOCK_H
#define WEFT_RUNTIME_CLOCK_H

#include <stdint.h>
#include <time.h>

#define WF__NO_DEADLINE UINT64_MAX

static inline uint64_t wf__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A deadline ms from now, saturating; WF_FOREVER (UINT64_MAX) and
 * anything too far to represent give WF__NO_DEADLINE. */
static inline uint64_t wf__deadline_after_ms(uint64_t ms)
{
	if (ms == UINT64_MAX || ms > UINT64_MAX / 2000000u)
		return WF__NO_DEADLINE;
	return wf__now_ns() + ms * 1000000u;
}

#endif

/*
 * Barrier: asyncio.Barrier for tasks on many workers and plain threads,
 * with threading.Barrier's answer to a party that gives up.
 *
 * State under a spinlock: the arrivals of the current generation, their
 * wait queue, and a broken flag. The arrival that completes a generation
 * fires every queued party and starts the next generation (count back to
 * zero) in the same critical section, so a party of the next generation
 * can never be counted in, or woken with, the one before: generations
 * never mix. Each party learns its index when it arrives, not from the
 * fire.
 *
 * A party whose deadline or cancellation wins the race with the fire:
 *   - still queued: the generation cannot complete without it, so it
 *     breaks the barrier (everybody else waiting gets WF_EBROKEN) rather
 *     than leave them waiting for a party that has gone;
 *   - no longer queued: the generation completed (or broke) as it gave up;
 *     the others went on, the barrier is left as it is, and the party
 *     reports its own WF_ETIMEDOUT / WF_ECANCELED.
 */
#include <limits.h>
#include <stdlib.h>

#include "internal.h"

#define BARRIER_MAGIC 0x77666272u /* "wfbr" */

enum { /* codes a waiter is fired with */
	PASSED = 0,
	BROKEN = WF_EBROKEN,
};

struct wf_barrier {
	uint32_t magic;
	unsigned parties;
	unsigned count; /* arrivals in this generation; atomic reads outside sl */
	bool broken;    /* atomic reads outside sl */
	wf__spinlock sl;
	wf__waitq q;
};

static bool barrier_ok(const wf_barrier *b)
{
	return b != NULL && __atomic_load_n(&b->magic, __ATOMIC_RELAXED) == BARRIER_MAGIC;
}

int wf_barrier_new(unsigned parties, wf_barrier **out)
{
	if (out == NULL || parties == 0 || parties > INT_MAX)
		return WF_EINVAL;
	wf_barrier *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return WF_ENOMEM;
	b->parties = parties;
	b->magic = BARRIER_MAGIC;
	*out = b;
	return 0;
}

int wf_barrier_free(wf_barrier *b)
{
	if (!barrier_ok(b))
		return WF_EINVAL;
	wf__spin_lock(&b->sl);
	bool busy = b->q.len != 0;
	wf__spin_unlock(&b->sl);
	if (busy)
		return WF_EBUSY;
	__atomic_store_n(&b->magic, 0, __ATOMIC_RELAXED);
	free(b);
	return 0;
}

/* Under sl. */
static void set_count(wf_barrier *b, unsigned n)
{
	__atomic_store_n(&b->count, n, __ATOMIC_RELAXED);
}

/* Under sl: every waiter of the generation gets WF_EBROKEN. */
static void break_locked(wf_barrier *b)
{
	__atomic_store_n(&b->broken, true, __ATOMIC_RELAXED);
	wf__waitq_fire_all(&b->q, BROKEN, NULL);
	set_count(b, 0);
}

int wf_barrier_wait(wf_barrier *b, uint64_t timeout_ms)
{
	if (!barrier_ok(b))
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf__thread_waiter tw;
	wf__waiter *w;
	wf__spin_lock(&b->sl);
	if (b->broken) {
		wf__spin_unlock(&b->sl);
		return WF_EBROKEN;
	}
	unsigned index = b->count;
	if (index + 1 == b->parties) {
		/* The last party: release the generation, start the next. */
		wf__waitq_fire_all(&b->q, PASSED, NULL);
		set_count(b, 0);
		wf__spin_unlock(&b->sl);
		return (int)index;
	}
	int rc = timeout_ms == 0 ? WF_ETIMEDOUT : wf__wait_prepare(&w, &tw);
	if (rc != 0) {
		/* Giving up before waiting breaks the barrier all the same: the
		 * party was expected and will not come. */
		break_locked(b);
		wf__spin_unlock(&b->sl);
		return rc;
	}
	set_count(b, index + 1);
	wf__waitq_push(&b->q, w);
	wf__spin_unlock(&b->sl);

	rc = wf__wait(w, deadline);
	if (rc == PASSED)
		return (int)index;
	if (rc == BROKEN)
		return WF_EBROKEN;
	wf__spin_lock(&b->sl);
	if (wf__waiter_linked(w)) {
		wf__waitq_remove(&b->q, w);
		break_locked(b);
	}
	wf__spin_unlock(&b->sl);
	return rc;
}

int wf_barrier_abort(wf_barrier *b)
{
	if (!barrier_ok(b))
		return WF_EINVAL;
	wf__spin_lock(&b->sl);
	break_locked(b);
	wf__spin_unlock(&b->sl);
	return 0;
}

int wf_barrier_reset(wf_barrier *b)
{
	if (!barrier_ok(b))
		return WF_EINVAL;
	wf__spin_lock(&b->sl);
	wf__waitq_fire_all(&b->q, BROKEN, NULL);
	set_count(b, 0);
	__atomic_store_n(&b->broken, false, __ATOMIC_RELAXED);
	wf__spin_unlock(&b->sl);
	return 0;
}

unsigned wf_barrier_parties(const wf_barrier *b)
{
	return barrier_ok(b) ? b->parties : 0;
}

unsigned wf_barrier_n_waiting(const wf_barrier *b)
{
	return barrier_ok(b) ? __atomic_load_n(&b->count, __ATOMIC_RELAXED) : 0;
}

bool wf_barrier_broken(const wf_barrier *b)
{
	return barrier_ok(b) && __atomic_load_n(&b->broken, __ATOMIC_RELAXED);
}

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

#include "sync/sync_internal.h"

enum { /* codes a waiter is fired with */
	PASSED = 0,
	BROKEN = WF_EBROKEN,
};

struct wf_barrier {
	wf__sync s;
	unsigned parties;
	unsigned count; /* arrivals in this generation; atomic reads outside sl */
	bool broken;    /* atomic reads outside sl */
};

static wf__htype barrier_type = WF__HTYPE_INIT(WF__K_BARRIER, struct wf_barrier);

static wf_barrier *barrier_get(const wf_barrier *h)
{
	return wf__sync_get(h, WF__K_BARRIER);
}

int wf_barrier_new(unsigned parties, wf_barrier **out)
{
	if (out == NULL || parties == 0 || parties > INT_MAX)
		return WF_EINVAL;
	wf_barrier *b = wf__sync_alloc(&barrier_type);
	if (b == NULL)
		return WF_ENOMEM;
	b->parties = parties;
	*out = wf__sync_handle(b);
	return 0;
}

int wf_barrier_free(wf_barrier *h)
{
	wf_barrier *b = barrier_get(h);
	if (b == NULL)
		return WF_EINVAL;
	return wf__sync_free(&barrier_type, &b->s, NULL, NULL);
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
	wf__waitq_fire_all(&b->s.q, BROKEN, NULL);
	set_count(b, 0);
}

int wf_barrier_wait(wf_barrier *h, uint64_t timeout_ms)
{
	wf_barrier *b = barrier_get(h);
	if (b == NULL)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf__spin_lock(&b->s.sl);
	if (b->broken) {
		wf__spin_unlock(&b->s.sl);
		return WF_EBROKEN;
	}
	unsigned index = b->count;
	if (index + 1 == b->parties) {
		/* The last party: release the generation, start the next. */
		wf__waitq_fire_all(&b->s.q, PASSED, NULL);
		set_count(b, 0);
		wf__spin_unlock(&b->s.sl);
		return (int)index;
	}
	set_count(b, index + 1);
	wf__waiting wg = {.lock = &b->s.sl, .q = &b->s.q, .what = "barrier", .obj = b,
			  .deadline = deadline, .no_wait = timeout_ms == 0, .keep_lock = true};
	int rc = wf__wait_on(&wg);
	if (rc == PASSED)
		return (int)index;
	if (rc == BROKEN)
		return WF_EBROKEN;
	if (wg.gave_up) {
		/* Still expected (or never waited): the generation cannot
		 * complete without this party, so it breaks rather than leave
		 * the others waiting for a party that has gone. */
		break_locked(b);
		wf__spin_unlock(&b->s.sl);
	}
	return rc;
}

int wf_barrier_abort(wf_barrier *h)
{
	wf_barrier *b = barrier_get(h);
	if (b == NULL)
		return WF_EINVAL;
	wf__spin_lock(&b->s.sl);
	break_locked(b);
	wf__spin_unlock(&b->s.sl);
	return 0;
}

int wf_barrier_reset(wf_barrier *h)
{
	wf_barrier *b = barrier_get(h);
	if (b == NULL)
		return WF_EINVAL;
	wf__spin_lock(&b->s.sl);
	wf__waitq_fire_all(&b->s.q, BROKEN, NULL);
	set_count(b, 0);
	__atomic_store_n(&b->broken, false, __ATOMIC_RELAXED);
	wf__spin_unlock(&b->s.sl);
	return 0;
}

unsigned wf_barrier_parties(const wf_barrier *h)
{
	const wf_barrier *b = barrier_get(h);
	return b != NULL ? b->parties : 0;
}

/* The relaxed loads below are snapshots for the caller: every decision is
 * made under sl. */
unsigned wf_barrier_n_waiting(const wf_barrier *h)
{
	const wf_barrier *b = barrier_get(h);
	return b != NULL ? __atomic_load_n(&b->count, __ATOMIC_RELAXED) : 0;
}

bool wf_barrier_broken(const wf_barrier *h)
{
	const wf_barrier *b = barrier_get(h);
	return b != NULL && __atomic_load_n(&b->broken, __ATOMIC_RELAXED);
}

/*
 * Semaphore and BoundedSemaphore for tasks on many workers and plain
 * threads.
 *
 * One atomic word: the free permits shifted left by one, and WAITERS in
 * bit 0 (the wait queue is not empty). Taking a free permit with nobody
 * waiting, and giving one back with nobody waiting, are single CASes. With
 * waiters, a release hands its permit to the first waiter through the
 * waiter's fire (the count does not move), so a running task can never
 * take a permit ahead of one that waits, and a waiter whose deadline or
 * cancellation won the race never swallows a permit: the release moves on
 * to the next waiter, or puts the permit back in the count.
 *
 * Invariants (the queue and WAITERS change only under sl):
 *   - WAITERS is set iff the queue is non-empty, at every release of sl;
 *   - WAITERS set implies no free permit: an acquirer sets it only with a
 *     CAS that sees a count of zero, and a release with WAITERS set goes to
 *     the slow path, which hands the permit on or, finding the queue
 *     empty, clears WAITERS and adds the permit in one CAS.
 */
#include "sync/sync_internal.h"

enum { WAITERS = 1u, ONE = 2u };

struct wf_sem {
	wf__sync s;
	uint64_t word;  /* atomic: permits * ONE | WAITERS */
	uint32_t bound; /* the most permits there may be free */
};

static wf__htype sem_type = WF__HTYPE_INIT(WF__K_SEM, struct wf_sem);

static wf_sem *sem_get(const wf_sem *h)
{
	return wf__sync_get(h, WF__K_SEM);
}

static int sem_create(unsigned value, unsigned bound, wf_sem **out)
{
	if (out == NULL || value > WF_SEM_VALUE_MAX)
		return WF_EINVAL;
	wf_sem *s = wf__sync_alloc(&sem_type);
	if (s == NULL)
		return WF_ENOMEM;
	s->word = (uint64_t)value * ONE;
	s->bound = bound;
	*out = wf__sync_handle(s);
	return 0;
}

int wf_sem_new(unsigned value, wf_sem **out)
{
	return sem_create(value, WF_SEM_VALUE_MAX, out);
}

int wf_sem_new_bounded(unsigned value, wf_sem **out)
{
	return sem_create(value, value, out);
}

int wf_sem_free(wf_sem *h)
{
	wf_sem *s = sem_get(h);
	if (s == NULL)
		return WF_EINVAL;
	return wf__sync_free(&sem_type, &s->s, NULL, NULL);
}

/* Takes a free permit if nobody waits. */
static bool take_free(wf_sem *s)
{
	uint64_t v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
	while (!(v & WAITERS) && v >= ONE)
		if (__atomic_compare_exchange_n(&s->word, &v, v - ONE, true, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return true;
	return false;
}

/* Under sl: takes a permit, or commits to waiting by setting WAITERS while
 * the count is seen at zero (pairs with the CAS of the lock-free release). */
static bool take_or_mark(wf_sem *s)
{
	uint64_t v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
	for (;;) {
		if (v >= ONE && !(v & WAITERS)) {
			if (__atomic_compare_exchange_n(&s->word, &v, v - ONE, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				return true;
		} else if (v & WAITERS) {
			return false;
		} else if (__atomic_compare_exchange_n(&s->word, &v, v | WAITERS, false,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			return false;
		}
	}
}

static void sync_waiters_bit(wf_sem *s)
{
	if (s->s.q.len == 0)
		__atomic_and_fetch(&s->word, ~(uint64_t)WAITERS, __ATOMIC_RELAXED);
}

int wf_sem_acquire(wf_sem *h, uint64_t timeout_ms)
{
	wf_sem *s = sem_get(h);
	if (s == NULL)
		return WF_EINVAL;
	if (take_free(s))
		return 0;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf__spin_lock(&s->s.sl);
	if (take_or_mark(s)) {
		wf__spin_unlock(&s->s.sl);
		return 0;
	}
	/* A permit is handed over by the fire (code 0), the count untouched. */
	wf__waiting wg = {.lock = &s->s.sl, .q = &s->s.q, .what = "semaphore", .obj = s,
			  .deadline = deadline, .no_wait = timeout_ms == 0, .keep_lock = true};
	int rc = wf__wait_on(&wg);
	if (wg.gave_up) {
		sync_waiters_bit(s);
		wf__spin_unlock(&s->s.sl);
	}
	return rc;
}

int wf_sem_try_acquire(wf_sem *h)
{
	wf_sem *s = sem_get(h);
	if (s == NULL)
		return WF_EINVAL;
	return take_free(s) ? 0 : WF_EAGAIN;
}

static int release_slow(wf_sem *s)
{
	wf__spin_lock(&s->s.sl);
	if (wf__waitq_fire_one(&s->s.q, 0, NULL)) {
		sync_waiters_bit(s);
		wf__spin_unlock(&s->s.sl);
		return 0;
	}
	/* Nobody took it: the queue is empty now. */
	int rc = 0;
	uint64_t v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
	for (;;) {
		if (v / ONE >= s->bound) {
			__atomic_and_fetch(&s->word, ~(uint64_t)WAITERS, __ATOMIC_RELAXED);
			rc = WF_EOVERFLOW;
			break;
		}
		/* Release: pairs with the acquire CAS that takes the permit. */
		if (__atomic_compare_exchange_n(&s->word, &v, (v + ONE) & ~(uint64_t)WAITERS,
						false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
			break;
	}
	wf__spin_unlock(&s->s.sl);
	return rc;
}

int wf_sem_release(wf_sem *h)
{
	wf_sem *s = sem_get(h);
	if (s == NULL)
		return WF_EINVAL;
	if (s->bound == 0) /* bounded at zero: nothing can be held */
		return WF_EOVERFLOW;
	uint64_t v = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
	while (!(v & WAITERS)) {
		if (v / ONE >= s->bound)
			return WF_EOVERFLOW;
		/* Pairs with the acquire CAS that takes the permit. */
		if (__atomic_compare_exchange_n(&s->word, &v, v + ONE, true, __ATOMIC_RELEASE,
						__ATOMIC_RELAXED))
			return 0;
	}
	return release_slow(s);
}

unsigned wf_sem_value(const wf_sem *h)
{
	const wf_sem *s = sem_get(h);
	if (s == NULL)
		return 0;
	return (unsigned)(__atomic_load_n(&s->word, __ATOMIC_RELAXED) / ONE);
}

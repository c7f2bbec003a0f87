/*
 * Lock: asyncio.Lock for tasks on many workers and plain threads.
 *
 * Idea. One atomic word carries the lock: HELD, WAITERS (the wait queue
 * is not empty) and WOKEN (a waiter was woken to retry and has not run
 * yet). Taking a free lock, and releasing one that nobody waits for or
 * whose woken waiter is on its way, are single CASes: no allocation, no
 * system call, no spinlock. Only a release that must wake somebody (WAITERS
 * without WOKEN) takes the slow path.
 *
 * Contention. A lock convoy is what makes strictly handed-off locks slow:
 * if every release hands the lock to a suspended waiter, the lock stays
 * idle until that waiter's worker gets round to running it, and the
 * releaser, trying again, must suspend in turn. So, as Go's sync.Mutex and
 * parking_lot do, a release normally frees the lock and wakes the first
 * waiter to retry (WOKEN keeps it to one woken waiter at a time); a task
 * that is running may take the freed lock first. Fairness is restored by
 * age: when the first waiter has waited FAIR_NS or more, the release hands
 * it the lock directly (HELD never drops, nobody can barge) through the
 * waiter's fire, so a waiter never waits much longer than FAIR_NS behind
 * running tasks. A retrying waiter that loses goes back to the head of the
 * queue, keeping its age. Before queueing, an acquirer spins briefly: the
 * critical sections behind a contended lock are usually short.
 *
 * Invariants (all changes to the queue and to WAITERS/WOKEN are made under
 * sl; HELD also changes in the lock-free fast paths, hence CAS everywhere):
 *   - WAITERS is set iff the queue is non-empty, at every release of sl;
 *   - the lock is never left free with WAITERS set and WOKEN clear: a
 *     release in that state takes the slow path and wakes a waiter, and a
 *     woken waiter clears WOKEN under sl just before it takes the lock or
 *     requeues (then the lock is held, and its release will wake);
 *   - a queued waiter is only ever fired by a release (hand-off, code
 *     GRANTED, or retry, code RETRY), and only after being popped, so a
 *     waiter that finds itself still linked after wf__wait was not fired;
 *   - an acquirer sets WAITERS with a CAS that sees HELD, so a lock-free
 *     release either sees WAITERS (and takes the slow path, which waits for
 *     sl and so for the push) or made the lock free before the acquirer
 *     looked (and the acquirer takes it instead of queueing).
 * A woken waiter that retries and finds the lock free takes it, else it
 * requeues; if it is cancelled on the way it leaves without the lock, which
 * is still held by somebody whose release will wake the next waiter.
 */
#include "sync/sync_internal.h"

enum {
	HELD = 1u,
	WAITERS = 2u,
	WOKEN = 4u,
};

enum { /* codes a release fires a waiter with */
	GRANTED = 0,
	RETRY = 1,
};

/* How long the first waiter may be passed over by running tasks. */
#define FAIR_NS 1000000u
/* Spins before queueing: a few hundred ns to a couple of us. */
#define SPINS 64

struct wf_lock {
	wf__sync s;
	uint32_t state;  /* atomic: HELD | WAITERS | WOKEN */
	uint64_t holder; /* atomic, relaxed: the id of the task that took it
			  * last (0: a plain thread), for task dumps */
};

/* Records the new holder; the dump reads it without synchronising. */
static inline int took(wf_lock *l)
{
	__atomic_store_n(&l->holder, wf__current_id(), __ATOMIC_RELAXED);
	return 0;
}

uint64_t wf__lock_holder(const void *obj)
{
	const wf_lock *l = obj;
	if (!(__atomic_load_n(&l->state, __ATOMIC_RELAXED) & HELD))
		return 0;
	return __atomic_load_n(&l->holder, __ATOMIC_RELAXED);
}

static wf__htype lock_type = WF__HTYPE_INIT(WF__K_LOCK, struct wf_lock);

/* A queued acquirer's record, on its stack; w->data points to it. */
struct lock_wait {
	uint64_t since; /* when it first queued: its age for FAIR_NS */
};

static wf_lock *lock_get(const wf_lock *h)
{
	return wf__sync_get(h, WF__K_LOCK);
}

bool wf__lock_ok(const wf_lock *h)
{
	return lock_get(h) != NULL;
}

int wf_lock_new(wf_lock **out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_lock *l = wf__sync_alloc(&lock_type);
	if (l == NULL)
		return WF_ENOMEM;
	*out = wf__sync_handle(l);
	return 0;
}

/* A woken waiter is no longer queued but still inside acquire. */
static bool lock_busy(wf__sync *s)
{
	return __atomic_load_n(&((wf_lock *)s)->state, __ATOMIC_RELAXED) & WOKEN;
}

int wf_lock_free(wf_lock *h)
{
	wf_lock *l = lock_get(h);
	if (l == NULL)
		return WF_EINVAL;
	return wf__sync_free(&lock_type, &l->s, lock_busy, NULL);
}

/* Takes the lock if HELD is clear, whatever the other bits say. Acquire:
 * pairs with the release that cleared HELD (wf_lock_release, unlock_slow),
 * so the previous holder's critical section happens before ours. */
static bool take_if_free(wf_lock *l)
{
	uint32_t s = __atomic_load_n(&l->state, __ATOMIC_RELAXED);
	while (!(s & HELD))
		if (__atomic_compare_exchange_n(&l->state, &s, s | HELD, true, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return true;
	return false;
}

/* Under sl: takes the lock (acquire, as take_if_free), or commits to
 * waiting by setting WAITERS while HELD is seen set. The WAITERS CAS needs
 * no ordering of its own: it and the lock-free release's CAS are
 * read-modify-writes of one word, so one of them sees the other (a release
 * that sees WAITERS takes the slow path, whose spinlock acquire then
 * orders the push made under sl before it; a release that came first left
 * HELD clear, and this CAS fails and retries). */
static bool take_or_mark(wf_lock *l)
{
	uint32_t s = __atomic_load_n(&l->state, __ATOMIC_RELAXED);
	for (;;) {
		if (!(s & HELD)) {
			if (__atomic_compare_exchange_n(&l->state, &s, s | HELD, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				return true;
		} else if (__atomic_compare_exchange_n(&l->state, &s, s | WAITERS, false,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			return false;
		}
	}
}

/* Under sl, after the queue lost a waiter. */
static void sync_waiters_bit(wf_lock *l)
{
	if (l->s.q.len == 0)
		__atomic_and_fetch(&l->state, ~(uint32_t)WAITERS, __ATOMIC_RELAXED);
}

static int lock_slow(wf_lock *l, uint64_t timeout_ms)
{
	/* Spinning can only help if the holder may be running elsewhere: not
	 * in a one-worker runtime, nor while more of its workers are awake
	 * than there are CPUs (the holder's worker may be waiting for the very
	 * CPU the spin holds). */
	int spins = wf__spin_may_help() ? SPINS : 0;
	for (int i = 0; i < spins; i++) {
		if (take_if_free(l))
			return 0;
		wf__cpu_relax();
	}
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	struct lock_wait rec = {0};
	bool front = false; /* requeue after a lost retry: keep the place */
	for (;;) {
		if (!front)
			rec.since = wf__now_ns();
		wf__spin_lock(&l->s.sl);
		if (front)
			__atomic_and_fetch(&l->state, ~(uint32_t)WOKEN, __ATOMIC_RELAXED);
		if (take_or_mark(l)) {
			wf__spin_unlock(&l->s.sl);
			return 0;
		}
		wf__waiting wg = {.lock = &l->s.sl, .q = &l->s.q, .what = "lock", .obj = l,
				  .data = &rec, .deadline = deadline, .no_wait = timeout_ms == 0,
				  .front = front, .keep_lock = true};
		int rc = wf__wait_on(&wg);
		if (rc == GRANTED)
			return 0;
		if (rc == RETRY) {
			front = true;
			continue;
		}
		/* Not queued any more, or never: a retrying waiter leaves the
		 * lock held by somebody whose release wakes the next one. */
		if (wg.gave_up) {
			sync_waiters_bit(l);
			wf__spin_unlock(&l->s.sl);
		}
		return rc;
	}
}

int wf_lock_acquire(wf_lock *h, uint64_t timeout_ms)
{
	wf_lock *l = lock_get(h);
	if (l == NULL)
		return WF_EINVAL;
	uint32_t s = 0;
	if (__atomic_compare_exchange_n(&l->state, &s, HELD, false, __ATOMIC_ACQUIRE,
					__ATOMIC_RELAXED))
		return took(l);
	int rc = lock_slow(l, timeout_ms);
	return rc == 0 ? took(l) : rc;
}

int wf_lock_try_acquire(wf_lock *h)
{
	wf_lock *l = lock_get(h);
	if (l == NULL)
		return WF_EINVAL;
	uint32_t s = 0;
	if (__atomic_compare_exchange_n(&l->state, &s, HELD, false, __ATOMIC_ACQUIRE,
					__ATOMIC_RELAXED))
		return took(l);
	return WF_EBUSY;
}

/* Under sl, lock held, queue non-empty: hands the lock to the first waiter
 * that can still take it. false if none could (the queue is then empty).
 * HELD never drops: the releaser's critical section happens before the
 * new owner's through the fire (an acq_rel CAS on the waiter word) and the
 * wake-up that resumes it. */
static bool hand_off(wf_lock *l)
{
	wf__waiter *w;
	while ((w = wf__waitq_pop(&l->s.q)) != NULL)
		if (wf__waiter_fire(w, GRANTED, NULL))
			return true;
	return false;
}

static int unlock_slow(wf_lock *l)
{
	wf__spin_lock(&l->s.sl);
	uint32_t s = __atomic_load_n(&l->state, __ATOMIC_RELAXED);
	if (!(s & HELD)) {
		wf__spin_unlock(&l->s.sl);
		return WF_EOVERFLOW;
	}
	if (l->s.q.len != 0) {
		const struct lock_wait *head = l->s.q.head->data;
		if (wf__now_ns() - head->since >= FAIR_NS && hand_off(l)) {
			sync_waiters_bit(l);
			wf__spin_unlock(&l->s.sl);
			return 0;
		}
	}
	/* Pairs with the acquire CAS of the next owner. */
	s = __atomic_and_fetch(&l->state, ~(uint32_t)HELD, __ATOMIC_RELEASE);
	if (!(s & WOKEN) && l->s.q.len != 0 && wf__waitq_fire_one(&l->s.q, RETRY, NULL))
		__atomic_or_fetch(&l->state, WOKEN, __ATOMIC_RELAXED);
	sync_waiters_bit(l);
	wf__spin_unlock(&l->s.sl);
	return 0;
}

int wf_lock_release(wf_lock *h)
{
	wf_lock *l = lock_get(h);
	if (l == NULL)
		return WF_EINVAL;
	uint32_t s = __atomic_load_n(&l->state, __ATOMIC_RELAXED);
	for (;;) {
		if (!(s & HELD))
			return WF_EOVERFLOW;
		/* Waiters with none woken: the slow path wakes (or hands to)
		 * one. Otherwise nobody needs waking: nobody waits, or the
		 * woken waiter will find the lock free or requeue. */
		if ((s & (WAITERS | WOKEN)) == WAITERS)
			return unlock_slow(l);
		/* Pairs with the acquire CAS of the next owner. */
		if (__atomic_compare_exchange_n(&l->state, &s, s & ~(uint32_t)HELD, true,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return 0;
	}
}

bool wf_lock_locked(const wf_lock *h)
{
	const wf_lock *l = lock_get(h);
	return l != NULL && (__atomic_load_n(&l->state, __ATOMIC_RELAXED) & HELD);
}

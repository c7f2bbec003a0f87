/*
 * Condition: asyncio.Condition for tasks on many workers and plain threads.
 *
 * A wait queue under a spinlock, bound to a wf_lock. wait() arms and queues
 * its waiter before it releases the lock, and notify() needs the lock, so a
 * notification sent after the waiter released the lock always finds it in
 * the queue: none is missed. A notification is given by the waiter's fire:
 * if the waiter's deadline or cancellation fired it first, notify() moves
 * on to the next waiter and does not count it, so notify(n) wakes n
 * waiters that will see the notification, or all there are.
 *
 * Taking the lock back cannot be given up (the caller expects to hold it
 * whatever wait returns): a cancellation that arrives meanwhile is noted,
 * and the lock taken anyway. If that cancellation cost a notification
 * already received, the notification is passed to another waiter, as
 * asyncio does.
 *
 * A waiter counts as waiting (`inside`) from before it queues until it
 * holds the lock again: a notify_all leaves the queue empty while the
 * woken still read c->lock and may pass a notification on, so freeing
 * the condition then (what a program used to pthread_cond_destroy after
 * a broadcast would do) gets WF_EBUSY instead of freeing it under them.
 */
#include "sync/sync_internal.h"

struct wf_cond {
	wf__sync s;
	uint32_t inside; /* atomic (raised under s.sl): waits in progress */
	bool owns_lock;
	wf_lock *lock; /* the lock's handle */
};

static wf__htype cond_type = WF__HTYPE_INIT(WF__K_COND, struct wf_cond);

static wf_cond *cond_get(const wf_cond *h)
{
	return wf__sync_get(h, WF__K_COND);
}

int wf_cond_new(wf_lock *lock, wf_cond **out)
{
	if (out == NULL)
		return WF_EINVAL;
	if (lock != NULL && !wf__lock_ok(lock))
		return WF_EINVAL; /* a freed lock's handle */
	wf_cond *c = wf__sync_alloc(&cond_type);
	if (c == NULL)
		return WF_ENOMEM;
	if (lock == NULL) {
		int rc = wf_lock_new(&lock);
		if (rc != 0) {
			wf__hobj_free(&cond_type, c);
			return rc;
		}
		c->owns_lock = true;
	}
	c->lock = lock;
	*out = wf__sync_handle(c);
	return 0;
}

static bool cond_busy(wf__sync *s)
{
	const wf_cond *c = (const wf_cond *)(void *)s;
	return __atomic_load_n(&c->inside, __ATOMIC_ACQUIRE) != 0;
}

int wf_cond_free(wf_cond *h)
{
	wf_cond *c = cond_get(h);
	if (c == NULL)
		return WF_EINVAL;
	wf_lock *lock = c->owns_lock ? c->lock : NULL;
	int rc = wf__sync_free(&cond_type, &c->s, cond_busy, NULL);
	if (rc == 0 && lock != NULL)
		wf_lock_free(lock); /* only the condition had it */
	return rc;
}

wf_lock *wf_cond_lock(const wf_cond *h)
{
	const wf_cond *c = cond_get(h);
	return c != NULL ? c->lock : NULL;
}

static int notify_locked(wf_cond *c, size_t n)
{
	size_t woken = 0;
	wf__spin_lock(&c->s.sl);
	while (woken < n && wf__waitq_fire_one(&c->s.q, 0, NULL))
		woken++;
	wf__spin_unlock(&c->s.sl);
	return woken > INT32_MAX ? INT32_MAX : (int)woken;
}

/* Takes the lock back, whatever it takes: 0, WF_ECANCELED if a
 * cancellation was delivered meanwhile (the lock is held all the same), or
 * WF_EINVAL if the lock was freed under the waiter (it is not held then). */
static int relock(wf_cond *c)
{
	int result = 0;
	for (;;) {
		int rc = wf_lock_acquire(c->lock, WF_FOREVER);
		if (rc == 0)
			return result;
		if (rc != WF_ECANCELED)
			return rc;
		result = WF_ECANCELED;
	}
}

static void release_user_lock(void *lock)
{
	wf_lock_release(lock);
}

static int cond_wait_until(wf_cond *c, uint64_t deadline, bool no_wait)
{
	if (no_wait)
		return WF_ETIMEDOUT;
	/* Queued before the user lock is released (in `linked`), so a notify,
	 * which needs that lock, always finds the waiter. A cancellation
	 * pending at the start returns at once with the lock still held. */
	wf__spin_lock(&c->s.sl);
	__atomic_add_fetch(&c->inside, 1, __ATOMIC_RELAXED);
	wf__waiting wg = {.lock = &c->s.sl, .q = &c->s.q, .what = "condition", .obj = c,
			  .deadline = deadline, .linked = release_user_lock,
			  .linked_arg = c->lock};
	int rc = wf__wait_on(&wg);
	if (wg.waited) {
		int relocked = relock(c);
		if (relocked == WF_ECANCELED && rc == 0)
			notify_locked(c, 1);
		if (relocked != 0)
			rc = relocked;
	}
	/* The last touch of c: a free may go on from here. */
	__atomic_sub_fetch(&c->inside, 1, __ATOMIC_RELEASE);
	return rc;
}

int wf_cond_wait(wf_cond *h, uint64_t timeout_ms)
{
	wf_cond *c = cond_get(h);
	if (c == NULL || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	return cond_wait_until(c, wf__deadline_after_ms(timeout_ms), timeout_ms == 0);
}

int wf_cond_wait_for(wf_cond *h, wf_cond_pred pred, void *arg, uint64_t timeout_ms)
{
	wf_cond *c = cond_get(h);
	if (c == NULL || pred == NULL || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	while (!pred(arg)) {
		bool expired = timeout_ms == 0 ||
			       (deadline != WF__NO_DEADLINE && wf__now_ns() >= deadline);
		int rc = cond_wait_until(c, deadline, expired);
		if (rc == WF_ETIMEDOUT)
			return pred(arg) ? 0 : WF_ETIMEDOUT;
		if (rc != 0)
			return rc;
	}
	return 0;
}

int wf_cond_notify(wf_cond *h, unsigned n)
{
	wf_cond *c = cond_get(h);
	if (c == NULL || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	return notify_locked(c, n);
}

int wf_cond_notify_all(wf_cond *h)
{
	wf_cond *c = cond_get(h);
	if (c == NULL || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	return notify_locked(c, SIZE_MAX);
}

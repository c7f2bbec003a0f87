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
 */
#include <stdlib.h>

#include "internal.h"

#define COND_MAGIC 0x77666376u /* "wfcv" */

struct wf_cond {
	uint32_t magic;
	bool owns_lock;
	wf_lock *lock;
	wf__spinlock sl;
	wf__waitq q;
};

static bool cond_ok(const wf_cond *c)
{
	return c != NULL && __atomic_load_n(&c->magic, __ATOMIC_RELAXED) == COND_MAGIC;
}

int wf_cond_new(wf_lock *lock, wf_cond **out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_cond *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return WF_ENOMEM;
	if (lock == NULL) {
		int rc = wf_lock_new(&lock);
		if (rc != 0) {
			free(c);
			return rc;
		}
		c->owns_lock = true;
	}
	c->lock = lock;
	c->magic = COND_MAGIC;
	*out = c;
	return 0;
}

int wf_cond_free(wf_cond *c)
{
	if (!cond_ok(c))
		return WF_EINVAL;
	wf__spin_lock(&c->sl);
	bool busy = c->q.len != 0;
	wf__spin_unlock(&c->sl);
	if (busy)
		return WF_EBUSY;
	if (c->owns_lock && wf_lock_free(c->lock) != 0)
		return WF_EBUSY;
	__atomic_store_n(&c->magic, 0, __ATOMIC_RELAXED);
	free(c);
	return 0;
}

wf_lock *wf_cond_lock(const wf_cond *c)
{
	return cond_ok(c) ? c->lock : NULL;
}

static int notify_locked(wf_cond *c, size_t n)
{
	size_t woken = 0;
	wf__spin_lock(&c->sl);
	while (woken < n && wf__waitq_fire_one(&c->q, 0, NULL))
		woken++;
	wf__spin_unlock(&c->sl);
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

static int cond_wait_until(wf_cond *c, uint64_t deadline, bool no_wait)
{
	if (no_wait)
		return WF_ETIMEDOUT;
	wf__thread_waiter tw;
	wf__waiter *w;
	wf__spin_lock(&c->sl);
	int rc = wf__wait_prepare(&w, &tw);
	if (rc != 0) {
		wf__spin_unlock(&c->sl);
		return rc; /* cancelled before waiting: the lock is still held */
	}
	wf__waitq_push(&c->q, w);
	wf__spin_unlock(&c->sl);
	wf_lock_release(c->lock);

	rc = wf__wait(w, deadline);
	if (rc != 0) {
		wf__spin_lock(&c->sl);
		wf__waitq_remove(&c->q, w);
		wf__spin_unlock(&c->sl);
	}
	int relocked = relock(c);
	if (relocked == WF_ECANCELED && rc == 0)
		notify_locked(c, 1);
	return relocked != 0 ? relocked : rc;
}

int wf_cond_wait(wf_cond *c, uint64_t timeout_ms)
{
	if (!cond_ok(c) || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	return cond_wait_until(c, wf__deadline_after_ms(timeout_ms), timeout_ms == 0);
}

int wf_cond_wait_for(wf_cond *c, wf_cond_pred pred, void *arg, uint64_t timeout_ms)
{
	if (!cond_ok(c) || pred == NULL || !wf_lock_locked(c->lock))
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

int wf_cond_notify(wf_cond *c, unsigned n)
{
	if (!cond_ok(c) || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	return notify_locked(c, n);
}

int wf_cond_notify_all(wf_cond *c)
{
	if (!cond_ok(c) || !wf_lock_locked(c->lock))
		return WF_EINVAL;
	return notify_locked(c, SIZE_MAX);
}

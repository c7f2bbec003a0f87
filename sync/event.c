/*
 * Event: asyncio.Event for tasks on many workers and plain threads.
 *
 * A flag and a wait queue under a spinlock. set() fires every waiter under
 * the lock, so a waiter queued before the set is woken even if the flag is
 * cleared again before it runs (asyncio's behaviour). The flag is also
 * readable without the lock, for wait's fast path and is_set: it is
 * written with release and read with acquire, so a task that sees it set
 * also sees what the setter wrote before setting it.
 */
#include <stdlib.h>

#include "internal.h"

#define EVENT_MAGIC 0x77666576u /* "wfev" */

struct wf_event {
	int flag; /* atomic */
	uint32_t magic;
	wf__spinlock sl;
	wf__waitq q;
};

static bool event_ok(const wf_event *e)
{
	return e != NULL && __atomic_load_n(&e->magic, __ATOMIC_RELAXED) == EVENT_MAGIC;
}

int wf_event_new(wf_event **out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_event *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return WF_ENOMEM;
	e->magic = EVENT_MAGIC;
	*out = e;
	return 0;
}

int wf_event_free(wf_event *e)
{
	if (!event_ok(e))
		return WF_EINVAL;
	wf__spin_lock(&e->sl);
	bool busy = e->q.len != 0;
	wf__spin_unlock(&e->sl);
	if (busy)
		return WF_EBUSY;
	__atomic_store_n(&e->magic, 0, __ATOMIC_RELAXED);
	free(e);
	return 0;
}

int wf_event_set(wf_event *e)
{
	if (!event_ok(e))
		return WF_EINVAL;
	wf__spin_lock(&e->sl);
	__atomic_store_n(&e->flag, 1, __ATOMIC_RELEASE);
	wf__waitq_fire_all(&e->q, 0, NULL);
	wf__spin_unlock(&e->sl);
	return 0;
}

int wf_event_clear(wf_event *e)
{
	if (!event_ok(e))
		return WF_EINVAL;
	wf__spin_lock(&e->sl);
	__atomic_store_n(&e->flag, 0, __ATOMIC_RELAXED);
	wf__spin_unlock(&e->sl);
	return 0;
}

int wf_event_wait(wf_event *e, uint64_t timeout_ms)
{
	if (!event_ok(e))
		return WF_EINVAL;
	if (__atomic_load_n(&e->flag, __ATOMIC_ACQUIRE))
		return 0;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf__thread_waiter tw;
	wf__waiter *w;
	wf__spin_lock(&e->sl);
	if (__atomic_load_n(&e->flag, __ATOMIC_RELAXED)) {
		wf__spin_unlock(&e->sl);
		return 0;
	}
	int rc = timeout_ms == 0 ? WF_ETIMEDOUT : wf__wait_prepare(&w, &tw);
	if (rc != 0) {
		wf__spin_unlock(&e->sl);
		return rc;
	}
	wf__waitq_push(&e->q, w);
	wf__spin_unlock(&e->sl);
	rc = wf__wait(w, deadline);
	if (rc != 0) {
		wf__spin_lock(&e->sl);
		wf__waitq_remove(&e->q, w);
		wf__spin_unlock(&e->sl);
	}
	return rc;
}

bool wf_event_is_set(const wf_event *e)
{
	return event_ok(e) && __atomic_load_n(&e->flag, __ATOMIC_ACQUIRE);
}

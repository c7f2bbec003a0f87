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
#include "sync/sync_internal.h"

struct wf_event {
	wf__sync s;
	int flag; /* atomic */
};

static wf__htype event_type = WF__HTYPE_INIT(WF__K_EVENT, struct wf_event);

static wf_event *event_get(const wf_event *h)
{
	return wf__sync_get(h, WF__K_EVENT);
}

int wf_event_new(wf_event **out)
{
	if (out == NULL)
		return WF_EINVAL;
	wf_event *e = wf__sync_alloc(&event_type);
	if (e == NULL)
		return WF_ENOMEM;
	*out = wf__sync_handle(e);
	return 0;
}

int wf_event_free(wf_event *h)
{
	wf_event *e = event_get(h);
	if (e == NULL)
		return WF_EINVAL;
	return wf__sync_free(&event_type, &e->s, NULL, NULL);
}

int wf_event_set(wf_event *h)
{
	wf_event *e = event_get(h);
	if (e == NULL)
		return WF_EINVAL;
	wf__spin_lock(&e->s.sl);
	/* Release: pairs with the acquire loads of wait's fast path and
	 * is_set (what the setter wrote before is seen with the flag). */
	__atomic_store_n(&e->flag, 1, __ATOMIC_RELEASE);
	wf__waitq_fire_all(&e->s.q, 0, NULL);
	wf__spin_unlock(&e->s.sl);
	return 0;
}

int wf_event_clear(wf_event *h)
{
	wf_event *e = event_get(h);
	if (e == NULL)
		return WF_EINVAL;
	wf__spin_lock(&e->s.sl);
	__atomic_store_n(&e->flag, 0, __ATOMIC_RELAXED);
	wf__spin_unlock(&e->s.sl);
	return 0;
}

int wf_event_wait(wf_event *h, uint64_t timeout_ms)
{
	wf_event *e = event_get(h);
	if (e == NULL)
		return WF_EINVAL;
	/* Acquire: pairs with the set's release store. */
	if (__atomic_load_n(&e->flag, __ATOMIC_ACQUIRE))
		return 0;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf__spin_lock(&e->s.sl);
	/* Under the lock the set's store is ordered by the lock itself. */
	if (__atomic_load_n(&e->flag, __ATOMIC_RELAXED)) {
		wf__spin_unlock(&e->s.sl);
		return 0;
	}
	wf__waiting wg = {.lock = &e->s.sl, .q = &e->s.q, .what = "event", .obj = e,
			  .deadline = deadline, .no_wait = timeout_ms == 0};
	return wf__wait_on(&wg);
}

bool wf_event_is_set(const wf_event *h)
{
	wf_event *e = event_get(h);
	return e != NULL && __atomic_load_n(&e->flag, __ATOMIC_ACQUIRE);
}

/*
 * What every sync object shares: a handle header (runtime/handle.h), a
 * spinlock that guards its state and wait queues, a wait queue, and one
 * lifecycle.
 *
 * Lifecycle. An object comes from its kind's type-stable slabs
 * (wf__sync_alloc, zeroed) and its handle is what the user holds; every
 * public call decodes the handle first (wf__sync_get), so a handle of a
 * freed object gets WF_EINVAL (or the call's documented "nothing" value)
 * even once its memory holds a new object of the same kind. Freeing
 * (wf__sync_free) refuses with WF_EBUSY while anybody waits, and is
 * decided under the object's lock, so a waiter that is about to link
 * itself either is seen or finds the handle stale.
 *
 * Waiting goes through wf__wait_on (runtime/waiting.h).
 */
#ifndef WEFT_SYNC_INTERNAL_H
#define WEFT_SYNC_INTERNAL_H

#include <stdbool.h>

#include "runtime/handle.h"
#include "runtime/internal.h"
#include "runtime/waiting.h"

typedef struct wf__sync {
	wf__hdr hdr;     /* first: the object's handle header */
	void *free_link; /* the slab's free list (handle.h) uses this word,
			  * not the lock: a call racing with the free may
			  * still take the lock of a freed object */
	wf__spinlock sl; /* guards the object's state and wait queues */
	wf__waitq q;     /* its waiters (a queue's getters) */
} wf__sync;

/* A new object of ty, zeroed but for its header, or NULL. */
static inline void *wf__sync_alloc(wf__htype *ty)
{
	return wf__hobj_alloc(ty);
}

/* The handle the user gets for a new object. */
static inline void *wf__sync_handle(void *obj)
{
	return wf__handle_of(obj);
}

/* The object behind a handle of kind `kind`, or NULL. */
static inline void *wf__sync_get(const void *handle, unsigned kind)
{
	return wf__handle_get(handle, kind);
}

/* Frees s if nobody waits on its queue and busy is false (both read under
 * its lock, which the caller must not hold): 0, or WF_EBUSY. before_free,
 * if not NULL, runs under the lock once the object is known to be idle
 * (a queue drops its items there). */
int wf__sync_free(wf__htype *ty, wf__sync *s, bool (*busy)(wf__sync *s),
		  void (*before_free)(wf__sync *s));

/* lock.c: true if h is a live lock's handle (a condition checks the lock
 * it is given). */
bool wf__lock_ok(const wf_lock *h);

#endif

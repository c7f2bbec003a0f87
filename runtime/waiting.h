/*
 * The waiter ritual of internal.h, written once: arm the caller's waiter,
 * link it into the object's wait queue (or its one waiter slot) under the
 * object's lock, drop the lock, wait, and, if the wait ended some other
 * way than by the object's fire (a deadline, a cancellation), unlink the
 * waiter under the lock before anything else.
 *
 *	wf__spin_lock(&obj->sl);
 *	if (ready(obj)) { ...; unlock; return 0; }
 *	wf__waiting wg = {.lock = &obj->sl, .q = &obj->q, .what = "event",
 *			  .obj = obj, .deadline = deadline};
 *	return wf__wait_on(&wg);
 *
 * The waiter says what it waits on (w->what, w->obj) for shutdown reports
 * and task dumps.
 *
 * Codes. wf__wait_on returns the code the object fired the waiter with,
 * or WF_ETIMEDOUT, WF_ECANCELED (a cancellation, delivered) or WF_ENOMEM
 * (no timer) when the wait ended another way; objects never fire with
 * those three. In the second case (and when the caller was not made to
 * wait at all: no_wait, or a cancellation was pending) `gave_up` is set:
 * the object did not take the waiter off its queue, so it still counts on
 * it until the caller has set things right, which it does with the lock
 * still held if it asked for keep_lock.
 */
#ifndef WEFT_RUNTIME_WAITING_H
#define WEFT_RUNTIME_WAITING_H

#include "internal.h"

typedef struct wf__waiting {
	/* In. */
	wf__spinlock *lock; /* the object's lock: held at the call */
	wf__waitq *q;       /* link here, or, */
	wf__waiter **slot;  /* when q is NULL: the object's one waiter slot */
	const char *what;   /* what it waits on: "lock", "queue get", ... */
	const void *obj;    /* the object (a handle's target), for reports */
	void *data;         /* w->data while linked, for the object */
	uint64_t deadline;  /* absolute (wf__now_ns), or WF__NO_DEADLINE */
	bool no_wait;       /* a zero timeout: give up at once, WF_ETIMEDOUT */
	bool front;         /* link at the head of q (a requeue keeps its place) */
	bool keep_lock;     /* gave_up: return with the lock held */
	/* Called after the lock is dropped, before the wait (the waiter is
	 * linked by then): a condition variable releases its user lock here. */
	void (*linked)(void *arg);
	void *linked_arg;
	/* Out. */
	void *value;  /* the fire's value */
	bool gave_up; /* not fired by the object (above) */
	bool waited;  /* the waiter was linked and the lock dropped (and
		       * `linked` called): false when it returned at once */
} wf__waiting;

/* The caller holds *wg->lock. Returns as above; the lock is released on
 * return unless gave_up and keep_lock. */
int wf__wait_on(wf__waiting *wg);

/* Links w at the head of q, as wf__waitq_push links at the tail. */
void wf__waitq_push_front(wf__waitq *q, wf__waiter *w);

#endif

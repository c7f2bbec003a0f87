/*
 * wf__wait_on: the waiter ritual (waiting.h) in one place.
 */
#include "waiting.h"

void wf__waitq_push_front(wf__waitq *q, wf__waiter *w)
{
	if (q->head == NULL) {
		wf__waitq_push(q, w);
		return;
	}
	w->prev = NULL;
	w->next = q->head;
	q->head->prev = w;
	q->head = w;
	w->linked = true;
	q->len++;
}

static void unlink_locked(wf__waiting *wg, wf__waiter *w)
{
	if (wg->q != NULL) {
		/* Still linked: no fire took it off, the object counts on it. */
		if (wf__waiter_linked(w))
			wg->gave_up = true;
		wf__waitq_remove(wg->q, w);
	} else if (*wg->slot == w) {
		wg->gave_up = true;
		*wg->slot = NULL;
	}
}

int wf__wait_on(wf__waiting *wg)
{
	wf__thread_waiter tw; /* a plain thread's, alive until we return */
	wf__waiter *w;
	wg->value = NULL;
	wg->gave_up = false;
	wg->waited = false;
	int rc = wg->no_wait ? WF_ETIMEDOUT : wf__wait_prepare(&w, &tw);
	if (rc != 0) {
		wg->gave_up = true;
		if (!wg->keep_lock)
			wf__spin_unlock(wg->lock);
		return rc;
	}
	w->what = wg->what;
	w->obj = wg->obj;
	w->data = wg->data;
	if (wg->q == NULL)
		*wg->slot = w;
	else if (wg->front)
		wf__waitq_push_front(wg->q, w);
	else
		wf__waitq_push(wg->q, w);
	wg->waited = true;
	wf__spin_unlock(wg->lock);
	if (wg->linked != NULL)
		wg->linked(wg->linked_arg);

	rc = wf__wait(w, wg->deadline);
	if (rc != WF_ETIMEDOUT && rc != WF_ECANCELED && rc != WF_ENOMEM) {
		wg->value = w->value;
		return rc;
	}
	/* A deadline or a cancellation won: leave the queue (internal.h's
	 * rule), unless the object's fire took the waiter off it first and
	 * then lost the race, in which case the object has moved on. */
	wf__spin_lock(wg->lock);
	unlink_locked(wg, w);
	if (!(wg->gave_up && wg->keep_lock))
		wf__spin_unlock(wg->lock);
	return rc;
}

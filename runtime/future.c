/*
 * Futures: an outcome (a value, or an error code and message) that is set
 * once, from any thread, and awaited by any number of tasks and threads.
 *
 * The completion core (wf__fcore) is shared with tasks, whose outcome is a
 * completion too. Invariant: `done` is published (release) only after the
 * outcome fields are written, so a reader that sees done == 1 (acquire)
 * reads the outcome without the lock; waiters are fired under the lock
 * (internal.h's rule), done-callbacks run after it is dropped, since they
 * may do anything short of blocking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define FUTURE_MAGIC 0x77667574u /* "wfut" */

static bool debug_tracked(void);
static void future_report_unseen(wf_future *f);

void wf__fcore_init(wf__fcore *c)
{
	memset(c, 0, sizeof(*c));
}

void wf__fcore_destroy(wf__fcore *c)
{
	free(c->msg);
	c->msg = NULL;
	wf__cb_node *n = c->cbs;
	while (n != NULL) {
		wf__cb_node *next = n->next;
		if (!n->owned)
			free(n);
		n = next;
	}
	c->cbs = NULL;
}

int wf__fcore_complete(wf__fcore *c, int err, void *value, char *msg, wf_future *owner)
{
	wf__spin_lock(&c->lock);
	if (c->done) {
		wf__spin_unlock(&c->lock);
		free(msg);
		return WF_EALREADY;
	}
	c->err = err;
	c->value = value;
	c->msg = msg;
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	wf__waitq_fire_all(&c->waiters, 0, NULL);
	wf__cb_node *cbs = c->cbs;
	c->cbs = c->cbs_tail = NULL;
	wf__spin_unlock(&c->lock);
	while (cbs != NULL) {
		/* A watcher's callback may free its node: read it first. */
		wf__cb_node *next = cbs->next;
		bool owned = cbs->owned;
		cbs->cb(owner, cbs->arg);
		if (!owned)
			free(cbs);
		cbs = next;
	}
	return 0;
}

int wf__fcore_wait(wf__fcore *c, uint64_t deadline)
{
	if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
		return 0;
	wf__thread_waiter tw;
	wf__waiter *w;
	int rc = wf__wait_prepare(&w, &tw);
	if (rc != 0)
		return rc;
	wf__spin_lock(&c->lock);
	if (c->done) {
		wf__spin_unlock(&c->lock);
		wf__wait_abandon(w);
		return 0;
	}
	wf__waitq_push(&c->waiters, w);
	wf__spin_unlock(&c->lock);
	rc = wf__wait(w, deadline);
	if (rc != 0) {
		wf__spin_lock(&c->lock);
		wf__waitq_remove(&c->waiters, w);
		wf__spin_unlock(&c->lock);
	}
	return rc;
}

int wf__fcore_add_cb(wf__fcore *c, wf_done_cb cb, void *arg, wf_future *owner)
{
	wf__cb_node *n = malloc(sizeof(*n));
	if (n == NULL)
		return WF_ENOMEM;
	n->cb = cb;
	n->arg = arg;
	n->next = NULL;
	n->owned = false;
	wf__spin_lock(&c->lock);
	if (c->done) {
		wf__spin_unlock(&c->lock);
		free(n);
		cb(owner, arg);
		return 0;
	}
	if (c->cbs_tail != NULL)
		c->cbs_tail->next = n;
	else
		c->cbs = n;
	c->cbs_tail = n;
	wf__spin_unlock(&c->lock);
	return 0;
}

/* ---- public futures --------------------------------------------------- */

static bool future_ok(const wf_future *f)
{
	return f != NULL && f->magic == FUTURE_MAGIC;
}

wf_future *wf_future_new(void)
{
	wf_future *f = malloc(sizeof(*f));
	if (f == NULL)
		return NULL;
	wf__fcore_init(&f->core);
	f->refs = 1;
	f->magic = FUTURE_MAGIC;
	f->debug = debug_tracked() ? WF__FD_TRACKED : 0;
	return f;
}

wf_future *wf_future_retain(wf_future *f)
{
	if (future_ok(f))
		__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
	return f;
}

void wf_future_release(wf_future *f)
{
	if (!future_ok(f))
		return;
	if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (WF__UNLIKELY(f->debug != 0))
		future_report_unseen(f);
	f->magic = 0;
	wf__fcore_destroy(&f->core);
	free(f);
}

int wf_future_set(wf_future *f, void *value)
{
	if (!future_ok(f))
		return WF_EINVAL;
	return wf__fcore_complete(&f->core, 0, value, NULL, f);
}

int wf_future_fail(wf_future *f, int err, const char *msg)
{
	if (!future_ok(f) || err >= 0)
		return WF_EINVAL;
	char *copy = NULL;
	if (msg != NULL && (copy = strdup(msg)) == NULL)
		return WF_ENOMEM;
	return wf__fcore_complete(&f->core, err, NULL, copy, f);
}

int wf_future_cancel(wf_future *f)
{
	return wf_future_fail(f, WF_ECANCELED, NULL);
}

int wf_future_result(const wf_future *f, void **value)
{
	if (!future_ok(f))
		return WF_EINVAL;
	if (!__atomic_load_n(&f->core.done, __ATOMIC_ACQUIRE))
		return WF_EAGAIN;
	if (WF__UNLIKELY(f->debug != 0)) /* bookkeeping, not the outcome */
		__atomic_or_fetch(&((wf_future *)f)->debug, WF__FD_SEEN, __ATOMIC_RELAXED);
	if (value != NULL)
		*value = f->core.err == 0 ? f->core.value : NULL;
	return f->core.err;
}

int wf_await_timeout(wf_future *f, void **value, uint64_t ms)
{
	if (!future_ok(f))
		return WF_EINVAL;
	int rc = wf__fcore_wait(&f->core, wf__deadline_after_ms(ms));
	if (rc != 0)
		return rc;
	return wf_future_result(f, value);
}

int wf_await(wf_future *f, void **value)
{
	return wf_await_timeout(f, value, WF_FOREVER);
}

bool wf_future_done(const wf_future *f)
{
	return future_ok(f) && __atomic_load_n(&f->core.done, __ATOMIC_ACQUIRE);
}

const char *wf_future_errmsg(const wf_future *f)
{
	if (!wf_future_done(f))
		return NULL;
	return f->core.msg;
}

int wf_future_add_done_callback(wf_future *f, wf_done_cb cb, void *arg)
{
	if (!future_ok(f) || cb == NULL)
		return WF_EINVAL;
	return wf__fcore_add_cb(&f->core, cb, arg, f);
}

/* ---- watching (compose.c) --------------------------------------------- */

bool wf__fcore_watch(wf__fcore *c, wf__cb_node *n, wf_future *owner)
{
	n->next = NULL;
	n->owned = true;
	wf__spin_lock(&c->lock);
	if (c->done) {
		wf__spin_unlock(&c->lock);
		n->cb(owner, n->arg);
		return false;
	}
	if (c->cbs_tail != NULL)
		c->cbs_tail->next = n;
	else
		c->cbs = n;
	c->cbs_tail = n;
	wf__spin_unlock(&c->lock);
	return true;
}

bool wf__fcore_unwatch(wf__fcore *c, wf__cb_node *n)
{
	bool found = false;
	wf__spin_lock(&c->lock);
	wf__cb_node *prev = NULL;
	for (wf__cb_node *x = c->cbs; x != NULL; prev = x, x = x->next) {
		if (x != n)
			continue;
		if (prev != NULL)
			prev->next = x->next;
		else
			c->cbs = x->next;
		if (c->cbs_tail == x)
			c->cbs_tail = prev;
		found = true;
		break;
	}
	wf__spin_unlock(&c->lock);
	return found;
}

/* ---- debug report: futures whose outcome nobody will see --------------- */

/* Only futures made by a task of a WF_DEBUG_CHECKS runtime are tracked, so
 * the common case pays one flag test on release and on wf_future_result. */
static bool debug_tracked(void)
{
	wf__worker *w = wf__self();
	return w != NULL && (w->rt->cfg.debug & WF_DEBUG_CHECKS) != 0;
}

/* asyncio's "Future exception was never retrieved", plus the future that
 * was dropped before anyone completed it (its awaiters could only hang). */
static void future_report_unseen(wf_future *f)
{
	uint32_t d = __atomic_load_n(&f->debug, __ATOMIC_ACQUIRE);
	if (!(d & WF__FD_TRACKED))
		return;
	if (!__atomic_load_n(&f->core.done, __ATOMIC_ACQUIRE)) {
		fprintf(stderr, "weft: future %p released while pending: never completed\n",
			(void *)f);
		return;
	}
	int err = f->core.err;
	if (err == 0 || err == WF_ECANCELED || (d & WF__FD_SEEN))
		return;
	const char *msg = f->core.msg ? f->core.msg : wf_strerror(f->core.err);
	fprintf(stderr, "weft: future %p failed: %s, never awaited\n", (void *)f, msg);
}

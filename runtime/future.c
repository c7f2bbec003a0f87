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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asym.h"
#include "handle.h"
#include "rt.h"
#include "waiting.h"

static bool debug_tracked(void);
static void future_report_unseen(wf_future *f);
static wf_future *future_handle(wf_future *f);

void wf__fcore_init(wf__fcore *c)
{
	memset(c, 0, sizeof(*c));
}

void wf__fcore_destroy(wf__fcore *c)
{
	if (c->msg != NULL) {
		free(c->msg);
		c->msg = NULL;
	}
	wf__cb_node *n = c->cbs;
	while (n != NULL) {
		wf__cb_node *next = n->next;
		if (!n->owned)
			free(n);
		n = next;
	}
	c->cbs = NULL;
}

/* With c's lock held and c done: fires its waiters under the lock
 * (internal.h's rule), takes its done-callbacks, drops the lock and runs
 * them outside it. */
static void fire_and_unlock(wf__fcore *c, wf_future *owner)
{
	if (c->waiters.head != NULL)
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
}

int wf__fcore_complete(wf__fcore *c, int err, void *value, char *msg, wf_future *owner)
{
	wf__spin_lock(&c->lock);
	if (__atomic_load_n(&c->done, __ATOMIC_RELAXED)) { /* stores are under the lock */
		wf__spin_unlock(&c->lock);
		free(msg);
		return WF_EALREADY;
	}
	c->err = err;
	c->value = value;
	c->msg = msg;
	/* Release: the outcome above is published with done; pairs with the
	 * acquire loads of readers that take no lock (wf__fcore_wait's fast
	 * path, wf_future_result, wf_future_done, the combinators). */
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	/* Fired under the lock (internal.h's rule); a woken waiter's wake-up
	 * orders the outcome before its return. */
	fire_and_unlock(c, owner);
	return 0;
}

void wf__fcore_complete_lockless(wf__fcore *c, int err, void *value, char *msg,
				 const uint32_t *watched, uint32_t bit)
{
	c->err = err;
	c->value = value;
	c->msg = msg;
	/* Release: as in wf__fcore_complete. Then the hot side of the pair
	 * (asym.h): a registrant either is seen here, or sees done. */
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	wf__asym_light();
	if (WF__LIKELY(!(__atomic_load_n(watched, __ATOMIC_RELAXED) & bit)))
		return;
	wf__spin_lock(&c->lock);
	fire_and_unlock(c, NULL);
}

int wf__fcore_wait(wf__fcore *c, uint64_t deadline)
{
	return wf__fcore_wait_what(c, deadline, "future");
}

int wf__fcore_wait_what(wf__fcore *c, uint64_t deadline, const char *what)
{
	/* Acquire: pairs with the completion's release store of done. */
	if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
		return 0;
	if (c->gated)
		wf__task_watch_gate(c);
	wf__spin_lock(&c->lock);
	/* Acquire, not only the lock: a lockless completion publishes done
	 * without it. */
	if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
		wf__spin_unlock(&c->lock);
		return 0;
	}
	wf__waiting wg = {.lock = &c->lock, .q = &c->waiters, .what = what, .obj = c,
			  .deadline = deadline};
	return wf__wait_on(&wg);
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
	if (c->gated)
		wf__task_watch_gate(c);
	wf__spin_lock(&c->lock);
	if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
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

/* ---- public futures --------------------------------------------------- *
 *
 * Every public call decodes its handle first (wf__future_get) and refuses
 * a stale one with WF_EINVAL (or false / NULL where it returns no code);
 * the runtime keeps the object itself (wf_task.submit) and hands the
 * handle to done-callbacks. */

/* A future's memory: its handle header, then the future the runtime
 * sees (struct wf_future, rt.h). */
typedef struct future_obj {
	wf__hdr hdr;
	struct wf_future f;
} future_obj;

static wf__htype future_type = WF__HTYPE_INIT(WF__K_FUTURE, future_obj);

static future_obj *obj_of(wf_future *f)
{
	return (future_obj *)(void *)((char *)f - offsetof(future_obj, f));
}

wf_future *wf__future_get(const wf_future *h)
{
	future_obj *o = wf__handle_get(h, WF__K_FUTURE);
	return o != NULL ? &o->f : NULL;
}

static wf_future *future_handle(wf_future *f)
{
	return wf__handle_of(obj_of(f));
}

static void future_free(wf_future *f)
{
	wf__fcore_destroy(&f->core);
	wf__hobj_free(&future_type, obj_of(f)); /* every handle of it is stale */
}

wf_future *wf_future_new(void)
{
	future_obj *o = wf__hobj_alloc(&future_type);
	if (o == NULL)
		return NULL;
	wf_future *f = &o->f;
	wf__fcore_init(&f->core);
	/* Atomic: future_hold may reach it through a stale handle. */
	__atomic_store_n(&f->refs, 1, __ATOMIC_RELAXED);
	f->debug = debug_tracked() ? WF__FD_TRACKED : 0;
	return future_handle(f);
}

wf_future *wf_future_retain(wf_future *h)
{
	wf_future *f = wf__future_get(h);
	if (f == NULL)
		return NULL;
	/* Relaxed: the caller holds a reference already, so the count cannot
	 * reach zero meanwhile; nothing is published by taking one. */
	__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
	return h;
}

void wf__future_put(wf_future *f)
{
	/* Release: this owner's uses of f happen before the free; acquire
	 * (for the last one): every other owner's do too. */
	if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (WF__UNLIKELY(f->debug != 0))
		future_report_unseen(f);
	future_free(f);
}

void wf_future_release(wf_future *h)
{
	wf_future *f = wf__future_get(h);
	if (f != NULL)
		wf__future_put(f);
}

int wf__future_settle(wf_future *f, int err, void *value, char *msg)
{
	int rc = wf__fcore_complete(&f->core, err, value, msg, future_handle(f));
	wf__future_put(f);
	return rc;
}

/* A reference for the duration of a completion, taken from a handle: the
 * waiter a completion wakes may run at once on another worker and release
 * the future (its last reference) while the completion still fires other
 * waiters and runs callbacks, so the completion holds its own (a released
 * future stays released: wf__ref_unless_zero), then the handle is checked
 * again. */
static wf_future *future_hold(const wf_future *h)
{
	wf_future *f = wf__future_get(h);
	if (f == NULL)
		return NULL;
	if (!wf__ref_unless_zero(&f->refs))
		return NULL;
	if (wf__future_get(h) != f) {
		wf__future_put(f);
		return NULL;
	}
	return f;
}

int wf_future_set(wf_future *h, void *value)
{
	wf_future *f = future_hold(h);
	if (f == NULL)
		return WF_EINVAL;
	int rc = wf__fcore_complete(&f->core, 0, value, NULL, h);
	wf__future_put(f);
	return rc;
}

int wf_future_fail(wf_future *h, int err, const char *msg)
{
	if (err >= 0)
		return WF_EINVAL;
	wf_future *f = future_hold(h);
	if (f == NULL)
		return WF_EINVAL;
	/* No memory for the message: the future fails without it, since a
	 * future left pending would hang its awaiters. */
	char *copy = msg != NULL ? strdup(msg) : NULL;
	int rc = wf__fcore_complete(&f->core, err, NULL, copy, h);
	wf__future_put(f);
	return rc;
}

int wf_future_cancel(wf_future *h)
{
	return wf_future_fail(h, WF_ECANCELED, NULL);
}

/* The outcome of a future seen done (acquire: its fields are published). */
static int future_outcome(wf_future *f, void **value)
{
	if (WF__UNLIKELY(f->debug != 0)) /* bookkeeping, not the outcome */
		__atomic_or_fetch(&f->debug, WF__FD_SEEN, __ATOMIC_RELAXED);
	if (value != NULL)
		*value = f->core.err == 0 ? f->core.value : NULL;
	return f->core.err;
}

int wf_future_result(const wf_future *h, void **value)
{
	wf_future *f = wf__future_get(h);
	if (f == NULL)
		return WF_EINVAL;
	/* Acquire: pairs with the completion's release store of done. */
	if (!__atomic_load_n(&f->core.done, __ATOMIC_ACQUIRE))
		return WF_EAGAIN;
	return future_outcome(f, value);
}

int wf_await_timeout(wf_future *h, void **value, uint64_t ms)
{
	wf_future *f = wf__future_get(h);
	if (f == NULL)
		return WF_EINVAL;
	int rc = wf__fcore_wait(&f->core, wf__deadline_after_ms(ms));
	if (rc != 0)
		return rc;
	return future_outcome(f, value);
}

int wf_await(wf_future *h, void **value)
{
	return wf_await_timeout(h, value, WF_FOREVER);
}

bool wf_future_done(const wf_future *h)
{
	wf_future *f = wf__future_get(h);
	return f != NULL && __atomic_load_n(&f->core.done, __ATOMIC_ACQUIRE);
}

const char *wf_future_errmsg(const wf_future *h)
{
	wf_future *f = wf__future_get(h);
	if (f == NULL || !__atomic_load_n(&f->core.done, __ATOMIC_ACQUIRE))
		return NULL;
	return f->core.msg;
}

int wf_future_add_done_callback(wf_future *h, wf_done_cb cb, void *arg)
{
	wf_future *f = wf__future_get(h);
	if (f == NULL || cb == NULL)
		return WF_EINVAL;
	return wf__fcore_add_cb(&f->core, cb, arg, h);
}

/* ---- watching (compose.c) --------------------------------------------- */

bool wf__fcore_watch(wf__fcore *c, wf__cb_node *n, wf_future *owner)
{
	n->next = NULL;
	n->owned = true;
	if (c->gated)
		wf__task_watch_gate(c);
	wf__spin_lock(&c->lock);
	if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
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
		wf__log(WF_LOG_WARN, "future %p released while pending: never completed",
			(void *)future_handle(f));
		return;
	}
	int err = f->core.err;
	if (err == 0 || err == WF_ECANCELED || (d & WF__FD_SEEN))
		return;
	const char *msg = f->core.msg ? f->core.msg : wf_strerror(f->core.err);
	wf__log(WF_LOG_WARN, "future %p failed: %s, never awaited", (void *)future_handle(f), msg);
}

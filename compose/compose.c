/*
 * Combinators over many tasks or futures: gather, wait, wait_for,
 * as_completed, shield; and what group.c and compose_timeout.c share
 * (cancel scopes, running an unstarted task on the caller's stack).
 *
 * Waiting for many. A watch set (mwatch) hangs one done-callback node on
 * each task's or future's completion core (wf__fcore_watch: the nodes live
 * in the set, nothing is allocated per item). A callback records its item
 * in completion order and, when the set's wake condition holds, fires the
 * waiter of the task (or thread) waiting on the set. The set is refcounted:
 * its waiter holds one reference and every linked node one, dropped by the
 * node's callback or by a successful unwatch, so a callback already running
 * on another thread when the waiter returns never touches freed memory.
 * Rule: the set is only torn down (unwatch) while the watched items are
 * alive, i.e. before the handles of unfinished tasks are given back.
 *
 * No task runs on the caller's stack here (wf_join's inline path): a
 * task suspended there would hold the caller, which could then neither
 * return the first failure at once nor pass a cancellation on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compose/compose_internal.h"
#include "runtime/handle.h"
#include "runtime/waiting.h"

/* ------------------------------------------------------------------------
 * Running unstarted tasks here
 * ---------------------------------------------------------------------- */

/* t was claimed (NEW -> RUNNING) with one reference standing for "running":
 * run it and publish its outcome, which drops that reference. */
static void run_claimed(wf__worker *w, wf_task *t)
{
	wf__run_inline(w, t);
	wf__task_finish(t);
}

bool wf__task_run_here(wf_task *t)
{
	wf__worker *w = wf__self();
	if (w == NULL || w->current == NULL || w->rt != t->rt ||
	    __atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != WF__T_NEW)
		return false;
	void *x = wf__deque_take(&w->deque);
	if (x == wf__start_entry(t)) {
		/* Nobody else saw it: the start entry's reference becomes the
		 * running one. */
		__atomic_store_n(&t->state, WF__T_RUNNING, __ATOMIC_RELAXED);
		run_claimed(w, t);
		return true;
	}
	if (x != WF__DQ_EMPTY)
		wf__deque_push(&w->deque, x); /* cannot grow: a slot was freed */
	if (!wf__task_claim(t))
		return false;
	/* The start entry left in some deque keeps its reference (whoever
	 * pops it drops it); take one for running. */
	__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	run_claimed(w, t);
	return true;
}

/* ------------------------------------------------------------------------
 * Cancel scopes (see compose_internal.h)
 * ---------------------------------------------------------------------- */

void wf__cscope_push(wf__cscope *cs, wf_task *me, int kind, const char *file, int line)
{
	cs->lock = (wf__spinlock)WF__SPINLOCK_INIT;
	cs->file = file;
	cs->line = line;
	cs->task = me;
	cs->kind = kind;
	cs->requested = 0;
	cs->credits = 0;
	cs->base = me->cancelling;
	cs->outer = me->cscope;
	me->cscope = cs;
}

void wf__cscope_request_locked(wf__cscope *cs)
{
	if (__atomic_load_n(&cs->requested, __ATOMIC_RELAXED))
		return;
	/* Release: pairs with the acquire loads of requested outside the
	 * lock (wf_timeout_expired, the leave's settling). */
	__atomic_store_n(&cs->requested, 1, __ATOMIC_RELEASE);
	wf__task_cancel_request(cs->task);
}

/* Takes back one cancellation of the calling task: a delivered one if
 * there is one above base, else a pending one. */
static void take_back_one(wf_task *me, int base)
{
	if (me->cancelling > base) {
		me->cancelling--;
		return;
	}
	uint32_t word = __atomic_load_n(&me->waiter.word, __ATOMIC_ACQUIRE);
	while (word & WF__W_CANCEL_PENDING)
		if (__atomic_compare_exchange_n(&me->waiter.word, &word,
						word & ~(uint32_t)WF__W_CANCEL_PENDING, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
}

bool wf__cscope_pop(wf__cscope *cs)
{
	wf_task *me = cs->task;
	me->cscope = cs->outer;
	int credits = cs->credits + (__atomic_load_n(&cs->requested, __ATOMIC_ACQUIRE) ? 1 : 0);
	if (credits == 0)
		return false;
	/* Lock the enclosing scopes, inner to outer (the only place that
	 * holds more than one scope lock), and look for one that asked too. */
	wf__cscope *heir = NULL;
	for (wf__cscope *o = cs->outer; o != NULL; o = o->outer) {
		wf__spin_lock(&o->lock);
		if (heir == NULL && __atomic_load_n(&o->requested, __ATOMIC_ACQUIRE))
			heir = o;
	}
	if (heir != NULL)
		heir->credits += credits;
	else
		while (credits-- > 0)
			take_back_one(me, cs->base);
	for (wf__cscope *o = cs->outer; o != NULL; o = o->outer)
		wf__spin_unlock(&o->lock);
	return heir == NULL;
}

/* ------------------------------------------------------------------------
 * Scopes left open at a task's exit
 * ---------------------------------------------------------------------- */

static const char *cscope_kind_name(const wf__cscope *cs)
{
	return cs->kind == WF__CS_GROUP ? "task group" : "timeout scope";
}

/* t returned with scopes still open (an early return that skipped a leave).
 * Runs on t's own stack (t is the current task), before its outcome is
 * published: each scope is reported, then closed, innermost first (a
 * group's children are cancelled and awaited, so none outlives t; a
 * timeout's helper is stopped). The scopes' state lives off the stack, so
 * nothing here reads the frames that returned. t then fails with
 * WF_EINVAL, saying which scope it returned inside. */
void wf__task_exit_scopes(wf_task *t)
{
	char msg[200];
	msg[0] = '\0';
	unsigned n = 0;
	while (t->cscope != NULL) {
		wf__cscope *cs = t->cscope;
		const char *file = cs->file != NULL ? cs->file : "an unknown place";
		int line = cs->file != NULL ? cs->line : 0;
		char where[128];
		if (line > 0)
			snprintf(where, sizeof(where), "%s:%d", file, line);
		else
			snprintf(where, sizeof(where), "%s", file);
		wf__log(WF_LOG_WARN,
			"task \"%s\" returned inside an open %s (opened at %s): closing it%s",
			wf__task_name(t), cscope_kind_name(cs), where,
			cs->kind == WF__CS_GROUP ? ", its children cancelled" : "");
		if (n++ == 0)
			snprintf(msg, sizeof(msg), "returned inside an open %s opened at %s",
				 cscope_kind_name(cs), where);
		if (cs->kind == WF__CS_GROUP)
			wf__group_close(cs);
		else
			wf__timeout_close(cs);
	}
	if (n > 1) {
		size_t len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, " (and %u more)", n - 1);
	}
	/* The task's own failure, if it had one, is replaced: a scope left
	 * open is a bug in the task, and must not pass for its outcome. */
	char *copy = strdup(msg);
	free(t->fail_msg);
	t->fail_msg = copy;
	t->fail_err = WF_EINVAL;
}

/* ------------------------------------------------------------------------
 * Outcomes
 * ---------------------------------------------------------------------- */

void wf_outcomes_clear(wf_outcome *out, size_t n)
{
	if (out == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(out[i].msg);
		out[i].msg = NULL;
	}
}

/* ------------------------------------------------------------------------
 * Items: a set of tasks or of futures, seen through their cores.
 * ---------------------------------------------------------------------- */
typedef struct items {
	wf_task *const *tasks;
	wf_future *const *futures;
	size_t n;
} items;

/* What a handle that went stale during a call (the caller gave it back
 * meanwhile: a bug in the program) reads as: done, failed WF_EINVAL. */
static wf__fcore stale_core = {.done = 1, .err = WF_EINVAL};

static int items_check(const items *it)
{
	if (it->n == 0)
		return 0;
	if (it->tasks == NULL && it->futures == NULL)
		return WF_EINVAL;
	for (size_t i = 0; i < it->n; i++)
		if (it->tasks != NULL ? wf__task_get(it->tasks[i]) == NULL
				      : wf__future_get(it->futures[i]) == NULL)
			return WF_EINVAL;
	return 0;
}

/* The completion core of item i, whose handle the caller has not given
 * back yet. */
static wf__fcore *item_core(const items *it, size_t i)
{
	if (it->tasks != NULL) {
		wf_task *t = wf__task_get(it->tasks[i]);
		return t != NULL ? &t->core : &stale_core;
	}
	wf_future *f = wf__future_get(it->futures[i]);
	return f != NULL ? &f->core : &stale_core;
}

static wf_future *item_owner(const items *it, size_t i)
{
	return it->tasks != NULL ? NULL : it->futures[i];
}

static bool item_done(const items *it, size_t i)
{
	return __atomic_load_n(&item_core(it, i)->done, __ATOMIC_ACQUIRE) != 0;
}

/* The error of a finished item. */
static int item_err(const items *it, size_t i)
{
	return item_core(it, i)->err;
}

static void item_cancel(const items *it, size_t i)
{
	if (it->tasks != NULL)
		wf_cancel(it->tasks[i]);
	else
		wf_future_cancel(it->futures[i]);
}

/* ------------------------------------------------------------------------
 * Watch sets
 * ---------------------------------------------------------------------- */
enum {
	WAKE_ON_FAIL = 1,   /* wake when a failure (ECANCELED included) is seen */
	WAKE_ON_ERROR = 2,  /* wake when an error other than ECANCELED is seen */
};

typedef struct mwatch mwatch;

typedef struct mw_node {
	wf__cb_node cb;
	mwatch *mw;
	const wf__fcore *core;
	size_t index;
	bool linked; /* owner only: wf__fcore_watch linked it */
	bool fired;  /* under mw->lock: its callback ran */
} mw_node;

struct mwatch {
	wf__spinlock lock;
	uint32_t refs; /* atomic */
	unsigned wake; /* WAKE_* */
	size_t want;   /* wake once ndone reaches it */
	size_t ndone;
	size_t first_fail; /* index of the first failure seen, or SIZE_MAX */
	wf__waiter *waiter;
	size_t *order; /* indices in completion order, ndone of them */
	mw_node nodes[];
};

static void mw_unref(mwatch *mw)
{
	/* Release: this holder's uses of the set happen before the free;
	 * acquire (for the last one): every other holder's do too. */
	if (__atomic_sub_fetch(&mw->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(mw);
}

static bool mw_ready_locked(const mwatch *mw)
{
	return mw->ndone >= mw->want || (mw->wake != 0 && mw->first_fail != SIZE_MAX);
}

static void mw_fire_locked(mwatch *mw)
{
	if (mw->waiter != NULL && mw_ready_locked(mw)) {
		wf__waiter_fire(mw->waiter, 0, NULL);
		mw->waiter = NULL;
	}
}

static void mw_on_done(wf_future *owner, void *arg)
{
	(void)owner;
	mw_node *nd = arg;
	mwatch *mw = nd->mw;
	int err = nd->core->err;
	wf__spin_lock(&mw->lock);
	nd->fired = true;
	mw->order[mw->ndone++] = nd->index;
	bool counts = (mw->wake & WAKE_ON_FAIL) ? err != 0
						  : err != 0 && err != WF_ECANCELED;
	if (counts && mw->first_fail == SIZE_MAX)
		mw->first_fail = nd->index;
	mw_fire_locked(mw);
	wf__spin_unlock(&mw->lock);
	mw_unref(mw);
}

static mwatch *mw_new(size_t n, unsigned wake, size_t want)
{
	if (n > (SIZE_MAX - sizeof(mwatch)) / (sizeof(mw_node) + sizeof(size_t)))
		return NULL;
	mwatch *mw = malloc(sizeof(*mw) + n * sizeof(mw_node) + n * sizeof(size_t));
	if (mw == NULL)
		return NULL;
	mw->lock = (wf__spinlock)WF__SPINLOCK_INIT;
	mw->refs = 1;
	mw->wake = wake;
	mw->want = want;
	mw->ndone = 0;
	mw->first_fail = SIZE_MAX;
	mw->waiter = NULL;
	mw->order = (size_t *)(mw->nodes + n);
	return mw;
}

/* Watches item i of it (a finished item is recorded at once). */
static void mw_watch(mwatch *mw, const items *it, size_t i)
{
	mw_node *nd = &mw->nodes[i];
	nd->cb.cb = mw_on_done;
	nd->cb.arg = nd;
	nd->mw = mw;
	nd->core = item_core(it, i);
	nd->index = i;
	nd->fired = false;
	/* Relaxed: the waiter's reference keeps the set alive meanwhile. */
	__atomic_add_fetch(&mw->refs, 1, __ATOMIC_RELAXED);
	nd->linked = wf__fcore_watch(item_core(it, i), &nd->cb, item_owner(it, i));
}

/* Waits until the set is ready: 0, WF_ETIMEDOUT or WF_ECANCELED. */
static int mw_wait(mwatch *mw, uint64_t deadline)
{
	wf__spin_lock(&mw->lock);
	if (mw_ready_locked(mw)) {
		wf__spin_unlock(&mw->lock);
		return 0;
	}
	wf__waiting wg = {.lock = &mw->lock, .slot = &mw->waiter, .what = "tasks or futures",
			  .obj = mw, .deadline = deadline};
	return wf__wait_on(&wg);
}

/* Unlinks every node whose callback has not run, and drops the waiter's
 * reference. The items must still be alive. */
static void mw_free(mwatch *mw, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mw_node *nd = &mw->nodes[i];
		if (!nd->linked)
			continue;
		wf__spin_lock(&mw->lock);
		bool fired = nd->fired;
		wf__spin_unlock(&mw->lock);
		/* A fired node is off the core's list; its item may be gone. */
		if (!fired && wf__fcore_unwatch((wf__fcore *)nd->core, &nd->cb))
			mw_unref(mw);
	}
	mw_unref(mw);
}

/* ------------------------------------------------------------------------
 * gather
 * ---------------------------------------------------------------------- */

/* Stores item i's outcome in out (if any) and gives its handle back. */
static void take_outcome(const items *it, size_t i, wf_outcome *out)
{
	void *value = NULL;
	char *msg = NULL;
	int err;
	if (it->tasks != NULL) {
		err = wf_join_ex(it->tasks[i], &value, out != NULL ? &msg : NULL);
	} else {
		err = wf_future_result(it->futures[i], &value);
		const char *m = wf_future_errmsg(it->futures[i]);
		if (out != NULL && m != NULL)
			msg = strdup(m);
	}
	if (out != NULL) {
		out->err = err;
		out->value = value;
		out->msg = msg;
	}
}

/* Without a watch set (out of memory): waits in argument order, which is
 * exact for WF_GATHER_ALL and sees a failure late otherwise. */
static int gather_in_order(const items *it, bool all, bool *cancelled, size_t *first_fail)
{
	for (size_t i = 0; i < it->n; i++) {
		int rc;
		while ((rc = wf__fcore_wait(item_core(it, i), WF__NO_DEADLINE)) != 0) {
			if (rc != WF_ECANCELED)
				return rc;
			if (!*cancelled)
				for (size_t j = 0; j < it->n; j++)
					if (!item_done(it, j))
						item_cancel(it, j);
			*cancelled = true;
		}
		if (!all && !*cancelled && item_err(it, i) != 0) {
			*first_fail = i;
			return 0;
		}
	}
	return 0;
}

static int gather(const items *it, wf_outcome *out, unsigned flags)
{
	if ((flags & ~(unsigned)WF_GATHER_ALL) != 0)
		return WF_EINVAL;
	int rc = items_check(it);
	if (rc != 0 || it->n == 0)
		return rc;
	bool all = (flags & WF_GATHER_ALL) != 0;
	size_t n = it->n;
	size_t first_fail = SIZE_MAX;
	bool cancelled = false;

	mwatch *mw = mw_new(n, all ? 0 : WAKE_ON_FAIL, n);
	if (mw == NULL) {
		rc = gather_in_order(it, all, &cancelled, &first_fail);
	} else {
		for (size_t i = 0; i < n; i++)
			mw_watch(mw, it, i);
		while ((rc = mw_wait(mw, WF__NO_DEADLINE)) == WF_ECANCELED) {
			/* Cancelling the gather cancels every child; then
			 * it waits for all of them. */
			wf__spin_lock(&mw->lock);
			mw->wake = 0;
			wf__spin_unlock(&mw->lock);
			cancelled = true;
			for (size_t i = 0; i < n; i++)
				if (!item_done(it, i))
					item_cancel(it, i);
		}
		if (!cancelled && !all) {
			wf__spin_lock(&mw->lock);
			first_fail = mw->first_fail;
			wf__spin_unlock(&mw->lock);
		}
		mw_free(mw, n);
	}

	int first_err = first_fail != SIZE_MAX ? item_err(it, first_fail) : 0;
	for (size_t i = 0; i < n; i++) {
		wf_outcome *o = out != NULL ? &out[i] : NULL;
		if (item_done(it, i)) {
			take_outcome(it, i, o);
			continue;
		}
		/* Returned early on a failure: the others go on, on their own. */
		if (o != NULL)
			*o = (wf_outcome){.err = WF_EAGAIN};
		if (it->tasks != NULL)
			wf_detach(it->tasks[i]);
	}
	if (rc != 0)
		return rc;
	if (cancelled)
		return WF_ECANCELED;
	return first_err;
}

int wf_gather(wf_task *const *tasks, size_t n, wf_outcome *out, unsigned flags)
{
	items it = {.tasks = tasks, .n = n};
	if (n > 0 && tasks == NULL)
		return WF_EINVAL;
	return gather(&it, out, flags);
}

int wf_gather_futures(wf_future *const *futures, size_t n, wf_outcome *out, unsigned flags)
{
	items it = {.futures = futures, .n = n};
	if (n > 0 && futures == NULL)
		return WF_EINVAL;
	return gather(&it, out, flags);
}

/* ------------------------------------------------------------------------
 * wait
 * ---------------------------------------------------------------------- */

static int wait_items(const items *it, int when, uint64_t timeout_ms, bool *done)
{
	if (done == NULL && it->n > 0)
		return WF_EINVAL;
	if (when != WF_FIRST_COMPLETED && when != WF_FIRST_EXCEPTION && when != WF_ALL_COMPLETED)
		return WF_EINVAL;
	int rc = items_check(it);
	if (rc != 0)
		return rc;
	size_t n = it->n;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	mwatch *mw = n > 0 ? mw_new(n, when == WF_FIRST_EXCEPTION ? WAKE_ON_ERROR : 0,
				    when == WF_FIRST_COMPLETED ? 1 : n)
			   : NULL;
	if (n > 0 && mw == NULL) {
		/* Out of memory: a coarser wait, still exact for ALL. */
		for (size_t i = 0; i < n && rc == 0; i++) {
			if (when == WF_FIRST_COMPLETED && i > 0)
				break;
			rc = wf__fcore_wait(item_core(it, i), deadline);
		}
	} else if (n > 0) {
		for (size_t i = 0; i < n; i++)
			mw_watch(mw, it, i);
		rc = mw_wait(mw, deadline);
		mw_free(mw, n);
	}
	if (rc == WF_ECANCELED)
		return rc;
	if (rc != 0 && rc != WF_ETIMEDOUT)
		return rc;
	int ndone = 0;
	for (size_t i = 0; i < n; i++) {
		done[i] = item_done(it, i);
		ndone += done[i];
	}
	return ndone;
}

int wf_wait(wf_task *const *tasks, size_t n, int when, uint64_t timeout_ms, bool *done)
{
	items it = {.tasks = tasks, .n = n};
	if (n > 0 && tasks == NULL)
		return WF_EINVAL;
	return wait_items(&it, when, timeout_ms, done);
}

int wf_wait_futures(wf_future *const *futures, size_t n, int when, uint64_t timeout_ms,
		    bool *done)
{
	items it = {.futures = futures, .n = n};
	if (n > 0 && futures == NULL)
		return WF_EINVAL;
	return wait_items(&it, when, timeout_ms, done);
}

/* ------------------------------------------------------------------------
 * wait_for
 * ---------------------------------------------------------------------- */

int wf_wait_for(wf_task *h, void **result, uint64_t timeout_ms)
{
	if (result != NULL)
		*result = NULL;
	wf_task *t = wf__task_get(h);
	if (t == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (t == me)
		return WF_EDEADLK;
	int rc = wf__fcore_wait_what(&t->core, wf__deadline_after_ms(timeout_ms), "join");
	if (rc == 0)
		return wf_join(h, result);
	if (rc == WF_ECANCELED && me != NULL) {
		/* As wf_join: the caller's cancellation goes on to t, and
		 * stays the caller's only if t ends cancelled. */
		me->cancelling--;
		wf__task_cancel_request(t);
		rc = wf_join(h, result);
		if (rc == WF_ECANCELED)
			me->cancelling++;
		return rc;
	}
	if (rc != WF_ETIMEDOUT)
		return rc;
	int before = me != NULL ? me->cancelling : 0;
	wf_cancel(h);
	rc = wf_join(h, result);
	if (rc != WF_ECANCELED)
		return rc; /* t finished anyway */
	if (me != NULL && me->cancelling > before)
		return WF_ECANCELED; /* the caller was cancelled meanwhile */
	return WF_ETIMEDOUT;
}

int wf_wait_for_future(wf_future *f, void **value, uint64_t timeout_ms)
{
	if (value != NULL)
		*value = NULL;
	if (f == NULL)
		return WF_EINVAL;
	int rc = wf_await_timeout(f, value, timeout_ms);
	if (rc != WF_ETIMEDOUT && !(rc == WF_ECANCELED && !wf_future_done(f)))
		return rc;
	/* Timed out, or the caller was cancelled while f is pending: f is
	 * cancelled, unless it completed in between. */
	if (wf_future_cancel(f) == WF_EALREADY && rc == WF_ETIMEDOUT)
		return wf_future_result(f, value);
	return rc;
}

/* ------------------------------------------------------------------------
 * as_completed
 * ---------------------------------------------------------------------- */

struct wf_as_completed {
	wf__hdr hdr; /* handed out as a handle */
	items it;
	size_t next; /* how many were handed out */
	mwatch *mw;
	void *array; /* the copy of the caller's array */
};

static wf__htype ac_type = WF__HTYPE_INIT(WF__K_AS_COMPLETED, struct wf_as_completed);

static int as_completed_new(items it, wf_as_completed **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	int rc = items_check(&it);
	if (rc != 0)
		return rc;
	wf_as_completed *ac = wf__hobj_alloc(&ac_type);
	size_t bytes = it.n * sizeof(void *);
	void *array = it.n > 0 ? malloc(bytes) : NULL;
	mwatch *mw = it.n > 0 ? mw_new(it.n, 0, 1) : NULL;
	if (ac == NULL || (it.n > 0 && (array == NULL || mw == NULL))) {
		if (ac != NULL)
			wf__hobj_free(&ac_type, ac);
		free(array);
		free(mw);
		return WF_ENOMEM;
	}
	/* The caller's array may be reused: keep a copy. */
	if (it.n > 0)
		memcpy(array, it.tasks != NULL ? (const void *)it.tasks : (const void *)it.futures,
		       bytes);
	if (it.tasks != NULL)
		it.tasks = array;
	else
		it.futures = array;
	ac->it = it;
	ac->mw = mw;
	ac->array = array;
	for (size_t i = 0; i < it.n; i++)
		mw_watch(mw, &ac->it, i);
	*out = wf__handle_of(ac);
	return 0;
}

int wf_as_completed_new(wf_task *const *tasks, size_t n, wf_as_completed **out)
{
	if (n > 0 && tasks == NULL)
		return WF_EINVAL;
	return as_completed_new((items){.tasks = tasks, .n = n}, out);
}

int wf_as_completed_new_futures(wf_future *const *futures, size_t n, wf_as_completed **out)
{
	if (n > 0 && futures == NULL)
		return WF_EINVAL;
	return as_completed_new((items){.futures = futures, .n = n}, out);
}

int wf_as_completed_next(wf_as_completed *h, uint64_t timeout_ms, size_t *index)
{
	wf_as_completed *ac = wf__handle_get(h, WF__K_AS_COMPLETED);
	if (ac == NULL || index == NULL)
		return WF_EINVAL;
	if (ac->next == ac->it.n)
		return WF_EOF;
	mwatch *mw = ac->mw;
	wf__spin_lock(&mw->lock);
	mw->want = ac->next + 1;
	wf__spin_unlock(&mw->lock);
	int rc = mw_wait(mw, wf__deadline_after_ms(timeout_ms));
	if (rc != 0)
		return rc;
	wf__spin_lock(&mw->lock);
	*index = mw->order[ac->next++];
	wf__spin_unlock(&mw->lock);
	return 0;
}

void wf_as_completed_free(wf_as_completed *h)
{
	wf_as_completed *ac = wf__handle_get(h, WF__K_AS_COMPLETED);
	if (ac == NULL)
		return;
	if (ac->mw != NULL)
		mw_free(ac->mw, ac->it.n);
	free(ac->array);
	wf__hobj_free(&ac_type, ac);
}

/* ------------------------------------------------------------------------
 * shield
 * ---------------------------------------------------------------------- */

typedef struct shield {
	wf__cb_node cb;
	wf_task *task;     /* its handle, joined by the callback */
	wf_future *future; /* the object (wf__future_get): the callback's reference */
} shield;

/* Runs once the task finished (on the thread that finished it): the
 * handle is joined there (the task is done, so this never waits) and the
 * outcome moves to the future. */
static void shield_on_done(wf_future *owner, void *arg)
{
	(void)owner;
	shield *s = arg;
	void *value = NULL;
	char *msg = NULL;
	int err = wf_join_ex(s->task, &value, &msg);
	wf__future_settle(s->future, err, value, msg);
	free(s);
}

int wf_shield(wf_task *h, wf_future **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	wf_task *t = wf__task_get(h);
	if (t == NULL)
		return WF_EINVAL;
	shield *s = malloc(sizeof(*s));
	wf_future *f = wf_future_new();
	if (s == NULL || f == NULL) {
		free(s);
		wf_future_release(f);
		return WF_ENOMEM;
	}
	s->cb.cb = shield_on_done;
	s->cb.arg = s;
	s->task = h;
	s->future = wf__future_get(wf_future_retain(f));
	*out = f;
	wf__fcore_watch(&t->core, &s->cb, NULL);
	return 0;
}

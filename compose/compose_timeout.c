/*
 * Timeout scopes (asyncio.timeout) on top of cancellation.
 *
 * A scope is a cancel scope (compose_internal.h) with a deadline. What
 * watches the deadline is a small helper task, spawned at the enter only
 * when there is a deadline, so a task that uses no scope pays nothing and
 * the scheduler's timers need no new kind of entry: the helper sleeps on
 * its own waiter until the deadline (one per-worker timer entry), then,
 * under the scope's lock and only if the task is still inside, marks the
 * scope expired and cancels the task. While it sleeps, its waiter is linked
 * in the scope (under the lock): moving the deadline rewrites it and fires
 * that waiter, so the helper reads it again. Leaving marks the scope left
 * under the same lock, so the helper never cancels a task that has gone
 * on, fires the helper's waiter and waits for the helper. A helper that has
 * not started by then is cancelled first, so it never starts: a short
 * scope costs a spawn and an inline join, no fiber and no switch.
 *
 * The scope's state is not in the caller's wf_timeout (which lives on the
 * task's stack) but in a small object of its own, from type-stable slabs;
 * the wf_timeout holds its handle. So the helper never reads a stack: a
 * task that returns without leaving its scope (its frame, and the
 * wf_timeout, are gone) has the scope closed for it at its exit
 * (wf__task_exit_scopes), and a wf_timeout left twice gets WF_EINVAL.
 *
 * Waiting for the helper at the leave must not eat the task's own
 * cancellations: it waits on the helper's completion core directly, and a
 * cancellation delivered meanwhile stays counted (the settling of the scope
 * sees it). Only then is the handle joined, which no longer waits.
 */
#include <stddef.h>
#include <string.h>

#include "compose/compose_internal.h"
#include "runtime/handle.h"
#include "runtime/waiting.h"

typedef struct tscope {
	wf__hdr hdr;
	wf__cscope cs; /* the chain links these */
	wf_task *helper; /* its handle */
	wf__waiter *sleeping; /* cs.lock: the helper's, while it sleeps */
	uint64_t deadline;    /* cs.lock; WF__NO_DEADLINE: none */
	int left;             /* cs.lock */
} tscope;

static wf__htype tscope_type = WF__HTYPE_INIT(WF__K_TIMEOUT, tscope);

/* What the caller's wf_timeout holds. */
typedef struct tview {
	void *scope;    /* the tscope's handle; stale once left */
	uint64_t flags; /* TV_* */
} tview;
enum { TV_EXPIRED = 1 }; /* it expired (recorded at the leave) */

_Static_assert(sizeof(tview) <= sizeof(wf_timeout), "wf_timeout too small");
_Static_assert(_Alignof(tview) <= _Alignof(wf_timeout), "wf_timeout misaligned");

static tview *tv_of(const wf_timeout *to)
{
	return (tview *)(void *)to;
}

static tscope *ts_get(const wf_timeout *to)
{
	return wf__handle_get(tv_of(to)->scope, WF__K_TIMEOUT);
}

static tscope *ts_of_cs(wf__cscope *cs)
{
	return (tscope *)(void *)((char *)cs - offsetof(tscope, cs));
}

/* Fires the helper's waiter if it sleeps: it reads the scope again. */
static void poke_locked(tscope *ts)
{
	if (ts->sleeping != NULL) {
		wf__waiter_fire(ts->sleeping, 0, NULL);
		ts->sleeping = NULL;
	}
}

static void *deadline_helper(void *arg)
{
	tscope *ts = arg;
	for (;;) {
		wf__spin_lock(&ts->cs.lock);
		uint64_t deadline = ts->deadline;
		if (ts->left) {
			wf__spin_unlock(&ts->cs.lock);
			break;
		}
		if (deadline != WF__NO_DEADLINE && wf__now_ns() >= deadline) {
			wf__cscope_request_locked(&ts->cs);
			wf__spin_unlock(&ts->cs.lock);
			break;
		}
		/* Woken by a poke (code 0: read the scope again), the deadline,
		 * or the leave's cancellation; each time it reads the scope. */
		wf__waiting wg = {.lock = &ts->cs.lock, .slot = &ts->sleeping, .what = "timeout",
				  .obj = ts, .deadline = deadline};
		wf__wait_on(&wg);
	}
	return NULL;
}

static int spawn_helper(tscope *ts)
{
	wf_spawn_opts opts = {.name = "timeout"};
	return wf_spawn_ex(deadline_helper, ts, &opts, &ts->helper);
}

int wf_timeout_enter_at(wf_timeout *to, uint64_t timeout_ms, const char *file, int line)
{
	if (to == NULL)
		return WF_EINVAL;
	memset(to, 0, sizeof(*to));
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	tscope *ts = wf__hobj_alloc(&tscope_type);
	if (ts == NULL)
		return WF_ENOMEM;
	ts->deadline = wf__deadline_after_ms(timeout_ms);
	wf__cscope_push(&ts->cs, me, WF__CS_TIMEOUT, file, line);
	if (timeout_ms == 0) {
		wf__spin_lock(&ts->cs.lock);
		wf__cscope_request_locked(&ts->cs);
		wf__spin_unlock(&ts->cs.lock);
	} else if (ts->deadline != WF__NO_DEADLINE) {
		int rc = spawn_helper(ts);
		if (rc != 0) {
			wf__cscope_pop(&ts->cs);
			wf__hobj_free(&tscope_type, ts);
			return rc;
		}
	}
	tv_of(to)->scope = wf__handle_of(ts);
	return 0;
}

int(wf_timeout_enter)(wf_timeout *to, uint64_t timeout_ms)
{
	return wf_timeout_enter_at(to, timeout_ms, NULL, 0);
}

int wf_timeout_reschedule(wf_timeout *to, uint64_t timeout_ms)
{
	if (to == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	tscope *ts = ts_get(to);
	if (ts == NULL || ts->cs.task != me || ts->left)
		return WF_EINVAL;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf__spin_lock(&ts->cs.lock);
	if (__atomic_load_n(&ts->cs.requested, __ATOMIC_RELAXED)) {
		wf__spin_unlock(&ts->cs.lock);
		return WF_EALREADY;
	}
	ts->deadline = deadline;
	if (timeout_ms == 0)
		wf__cscope_request_locked(&ts->cs);
	poke_locked(ts);
	wf__spin_unlock(&ts->cs.lock);
	if (ts->helper != NULL || timeout_ms == 0 || deadline == WF__NO_DEADLINE)
		return 0;
	int rc = spawn_helper(ts);
	if (rc != 0) { /* nobody would watch it: back to no deadline */
		wf__spin_lock(&ts->cs.lock);
		ts->deadline = WF__NO_DEADLINE;
		wf__spin_unlock(&ts->cs.lock);
	}
	return rc;
}

bool wf_timeout_expired(const wf_timeout *to)
{
	if (to == NULL)
		return false;
	const tscope *ts = ts_get(to);
	if (ts == NULL) /* left: what the leave saw */
		return (tv_of(to)->flags & TV_EXPIRED) != 0;
	/* Acquire: pairs with wf__cscope_request_locked's release store. */
	return __atomic_load_n(&ts->cs.requested, __ATOMIC_ACQUIRE) != 0;
}

/* Stops the helper (the scope is marked left) and waits for its end
 * without consuming the caller's cancellations (see the top comment). */
static void stop_helper(tscope *ts)
{
	wf_task *h = ts->helper;
	wf_task *t = wf__task_get(h); /* live: the scope holds its handle */
	wf__task_cancel_request(t); /* if it has not started, it never will */
	wf__task_run_here(t);
	while (wf__fcore_wait_what(&t->core, WF__NO_DEADLINE, "timeout helper") != 0)
		; /* a cancellation of ours: it stays counted */
	wf_join(h, NULL);
	ts->helper = NULL;
}

/* Closes ts, the caller's innermost scope: the helper is stopped, the
 * scope settled and freed. *expired: its deadline passed; returns whether
 * it took its cancellations back itself (wf__cscope_pop). */
static bool close_scope(tscope *ts, bool *expired)
{
	wf__spin_lock(&ts->cs.lock);
	ts->left = 1;
	poke_locked(ts);
	wf__spin_unlock(&ts->cs.lock);
	if (ts->helper != NULL)
		stop_helper(ts);
	*expired = __atomic_load_n(&ts->cs.requested, __ATOMIC_ACQUIRE) != 0;
	bool took_back = wf__cscope_pop(&ts->cs);
	wf__hobj_free(&tscope_type, ts);
	return took_back;
}

int wf_timeout_leave(wf_timeout *to, int rc)
{
	if (to == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	tscope *ts = ts_get(to);
	if (ts == NULL || ts->cs.task != me || me->cscope != &ts->cs)
		return WF_EINVAL;
	int base = ts->cs.base;
	bool expired;
	bool took_back = close_scope(ts, &expired);
	tv_of(to)->flags = expired ? TV_EXPIRED : 0;
	if (expired && took_back && rc == WF_ECANCELED && me->cancelling == base)
		return WF_ETIMEDOUT;
	return rc;
}

void wf__timeout_close(wf__cscope *cs)
{
	bool expired;
	close_scope(ts_of_cs(cs), &expired);
}

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
 * Waiting for the helper at the leave must not eat the task's own
 * cancellations: it waits on the helper's completion core directly, and a
 * cancellation delivered meanwhile stays counted (the settling of the scope
 * sees it). Only then is the handle joined, which no longer waits.
 */
#include <string.h>

#include "compose/compose_internal.h"

typedef struct tscope {
	wf__cscope cs; /* first: the chain links these */
	wf_task *helper;
	wf__waiter *sleeping; /* cs.lock: the helper's, while it sleeps */
	uint64_t deadline;    /* cs.lock; WF__NO_DEADLINE: none */
	int left;             /* cs.lock */
} tscope;

_Static_assert(sizeof(tscope) <= sizeof(wf_timeout), "wf_timeout too small");
_Static_assert(_Alignof(tscope) <= _Alignof(wf_timeout), "wf_timeout misaligned");

static tscope *ts_of(wf_timeout *to)
{
	return (tscope *)(void *)to;
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
		wf__waiter *w;
		if (wf__wait_prepare(&w, NULL) != 0) {
			/* Cancelled by the leave: read the scope again. */
			wf__spin_unlock(&ts->cs.lock);
			continue;
		}
		ts->sleeping = w;
		wf__spin_unlock(&ts->cs.lock);
		if (wf__wait(w, deadline) != 0) {
			wf__spin_lock(&ts->cs.lock);
			if (ts->sleeping == w)
				ts->sleeping = NULL;
			wf__spin_unlock(&ts->cs.lock);
		}
	}
	return NULL;
}

static int spawn_helper(tscope *ts)
{
	wf_spawn_opts opts = {.name = "timeout"};
	return wf_spawn_ex(deadline_helper, ts, &opts, &ts->helper);
}

int wf_timeout_enter(wf_timeout *to, uint64_t timeout_ms)
{
	if (to == NULL)
		return WF_EINVAL;
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	tscope *ts = ts_of(to);
	memset(to, 0, sizeof(*to));
	ts->deadline = wf__deadline_after_ms(timeout_ms);
	wf__cscope_push(&ts->cs, me, WF__CS_TIMEOUT);
	if (timeout_ms == 0) {
		wf__spin_lock(&ts->cs.lock);
		wf__cscope_request_locked(&ts->cs);
		wf__spin_unlock(&ts->cs.lock);
		return 0;
	}
	if (ts->deadline == WF__NO_DEADLINE)
		return 0;
	int rc = spawn_helper(ts);
	if (rc != 0)
		wf__cscope_pop(&ts->cs);
	return rc;
}

int wf_timeout_reschedule(wf_timeout *to, uint64_t timeout_ms)
{
	if (to == NULL)
		return WF_EINVAL;
	tscope *ts = ts_of(to);
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	if (ts->cs.task != me || ts->left)
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
	return to != NULL &&
	       __atomic_load_n(&((const tscope *)(const void *)to)->cs.requested, __ATOMIC_ACQUIRE);
}

/* Stops the helper (the scope is marked left) and waits for its end
 * without consuming the caller's cancellations (see the top comment). */
static void stop_helper(tscope *ts)
{
	wf_task *h = ts->helper;
	wf__task_cancel_request(h); /* if it has not started, it never will */
	wf__task_run_here(h);
	while (wf__fcore_wait(&h->core, WF__NO_DEADLINE) != 0)
		; /* a cancellation of ours: it stays counted */
	wf_join(h, NULL);
	ts->helper = NULL;
}

int wf_timeout_leave(wf_timeout *to, int rc)
{
	if (to == NULL)
		return WF_EINVAL;
	tscope *ts = ts_of(to);
	wf_task *me = wf__current();
	if (me == NULL)
		return WF_ENOTTASK;
	if (ts->cs.task != me || me->cscope != &ts->cs)
		return WF_EINVAL;
	wf__spin_lock(&ts->cs.lock);
	ts->left = 1;
	poke_locked(ts);
	wf__spin_unlock(&ts->cs.lock);
	if (ts->helper != NULL)
		stop_helper(ts);
	bool expired = __atomic_load_n(&ts->cs.requested, __ATOMIC_ACQUIRE) != 0;
	bool took_back = wf__cscope_pop(&ts->cs);
	if (expired && took_back && rc == WF_ECANCELED && me->cancelling == ts->cs.base)
		return WF_ETIMEDOUT;
	return rc;
}

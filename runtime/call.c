/*
 * Callbacks on the loop and intervals (include/weft/timer.h).
 *
 * A scheduled callback is a detached task that waits on its timer object
 * until the deadline, then runs the callback on its own stack. Running it
 * as a task, not inside the worker's timer pass, is what lets a callback
 * call anything weft has, suspend included, and keeps a slow callback
 * from delaying every other timer of its worker. Waiting with the
 * object's one waiter slot (waiting.h) makes cancel a fire of that slot:
 * the task wakes at once and ends without running the callback, so a
 * cancelled far-off call holds nothing for long.
 *
 * Lifetime. The object has up to two references, the task's and the
 * handle's, counted under its lock. The handle goes stale when the
 * program frees it (or at once when it asked for none); the slot is
 * reused only after the task is done with it too (wf__hobj_recycle).
 */
#include "rt.h"
#include "waiting.h"
#include "weft.h"

enum { TM_PENDING, TM_RUNNING, TM_DONE, TM_CANCELLED };

struct wf_timer {
	wf__hdr hdr;
	void *free_link; /* the slab's free list uses this word */
	wf__spinlock sl;
	int state;           /* TM_*; sl */
	unsigned refs;       /* sl */
	bool handle_gone;    /* sl: the handle is stale */
	bool keep;           /* sl: what the stale-making bump said */
	wf__waiter *sleeping; /* sl: the task, while it waits */
	uint64_t when;
	wf_callback fn;
	void *arg;
};

static wf__htype timer_type = WF__HTYPE_INIT(WF__K_TIMER, struct wf_timer);

static struct wf_timer *timer_get(const wf_timer *h)
{
	return wf__handle_get(h, WF__K_TIMER);
}

uint64_t wf_time_ns(void)
{
	return wf__now_ns();
}

/* Drops one reference; handle: the program's, whose handle goes stale. */
static void timer_drop(struct wf_timer *tm, bool handle)
{
	wf__spin_lock(&tm->sl);
	if (handle) {
		tm->keep = wf__hdr_bump(&tm->hdr);
		tm->handle_gone = true;
	}
	bool last = --tm->refs == 0;
	bool keep = tm->keep;
	wf__spin_unlock(&tm->sl);
	if (last)
		wf__hobj_recycle(&timer_type, tm, keep);
}

static void *timer_main(void *arg)
{
	struct wf_timer *tm = arg;
	wf__spin_lock(&tm->sl);
	while (tm->state == TM_PENDING && wf__now_ns() < tm->when) {
		wf__waiting wg = {.lock = &tm->sl, .slot = &tm->sleeping, .what = "call_later",
				  .obj = tm, .deadline = tm->when};
		int rc = wf__wait_on(&wg);
		wf__spin_lock(&tm->sl);
		/* The task itself cancelled (its runtime shuts down) or no
		 * timer to wait with: the callback will not run. */
		if ((rc == WF_ECANCELED || rc == WF_ENOMEM) && tm->state == TM_PENDING)
			tm->state = TM_CANCELLED;
	}
	bool run = tm->state == TM_PENDING;
	if (run)
		tm->state = TM_RUNNING;
	wf__spin_unlock(&tm->sl);
	if (run) {
		tm->fn(tm->arg);
		wf__spin_lock(&tm->sl);
		tm->state = TM_DONE;
		wf__spin_unlock(&tm->sl);
	}
	timer_drop(tm, false);
	return NULL;
}

/* The task was cancelled before it started (its runtime shuts down). */
static void timer_unstarted(void *arg)
{
	struct wf_timer *tm = arg;
	wf__spin_lock(&tm->sl);
	if (tm->state == TM_PENDING)
		tm->state = TM_CANCELLED;
	wf__spin_unlock(&tm->sl);
	timer_drop(tm, false);
}

static int schedule(wf_runtime *rt, uint64_t when, wf_callback fn, void *arg, wf_timer **out)
{
	if (out != NULL)
		*out = NULL;
	if (fn == NULL)
		return WF_EINVAL;
	wf__worker *w = wf__self();
	bool in_task = w != NULL && w->current != NULL;
	if (rt == NULL) {
		if (!in_task)
			return WF_ENOTTASK;
		rt = w->rt;
	}
	struct wf_timer *tm = wf__hobj_alloc(&timer_type);
	if (tm == NULL)
		return WF_ENOMEM;
	tm->state = TM_PENDING;
	tm->when = when;
	tm->fn = fn;
	tm->arg = arg;
	tm->refs = out != NULL ? 2 : 1;
	if (out == NULL) {
		tm->keep = wf__hdr_bump(&tm->hdr);
		tm->handle_gone = true;
	} else {
		*out = wf__handle_of(tm);
	}
	int rc = wf__runtime_spawn(rt, timer_main, tm, timer_unstarted);
	if (rc != 0) {
		if (out != NULL) {
			*out = NULL;
			timer_drop(tm, true);
		} else {
			timer_drop(tm, false);
		}
	}
	return rc;
}

int wf_call_soon(wf_runtime *rt, wf_callback fn, void *arg, wf_timer **out)
{
	return schedule(rt, wf__now_ns(), fn, arg, out);
}

int wf_call_later(wf_runtime *rt, uint64_t delay_ms, wf_callback fn, void *arg, wf_timer **out)
{
	return schedule(rt, wf__deadline_after_ms(delay_ms), fn, arg, out);
}

int wf_call_at(wf_runtime *rt, uint64_t when_ns, wf_callback fn, void *arg, wf_timer **out)
{
	return schedule(rt, when_ns, fn, arg, out);
}

int wf_timer_cancel(wf_timer *h)
{
	struct wf_timer *tm = timer_get(h);
	if (tm == NULL)
		return WF_EINVAL;
	int rc = WF_EALREADY;
	wf__spin_lock(&tm->sl);
	if (!tm->handle_gone && tm->state == TM_PENDING) {
		tm->state = TM_CANCELLED;
		if (tm->sleeping != NULL) {
			wf__waiter_fire(tm->sleeping, 0, NULL);
			tm->sleeping = NULL;
		}
		rc = 0;
	} else if (tm->handle_gone) {
		rc = WF_EINVAL;
	}
	wf__spin_unlock(&tm->sl);
	return rc;
}

uint64_t wf_timer_when(const wf_timer *h)
{
	struct wf_timer *tm = timer_get(h);
	return tm != NULL ? tm->when : 0;
}

bool wf_timer_done(const wf_timer *h)
{
	struct wf_timer *tm = timer_get(h);
	if (tm == NULL)
		return false;
	wf__spin_lock(&tm->sl);
	bool done = tm->state == TM_DONE;
	wf__spin_unlock(&tm->sl);
	return done;
}

int wf_timer_free(wf_timer *h)
{
	struct wf_timer *tm = timer_get(h);
	if (tm == NULL)
		return WF_EINVAL;
	wf__spin_lock(&tm->sl);
	bool gone = tm->handle_gone;
	wf__spin_unlock(&tm->sl);
	if (gone) /* a racing free got there first */
		return WF_EINVAL;
	timer_drop(tm, true);
	return 0;
}

/* ---- intervals ------------------------------------------------------------ */

struct wf_interval {
	wf__hdr hdr;
	void *free_link;
	wf__spinlock sl;
	uint64_t period; /* ns */
	uint64_t next;   /* sl: the next tick's deadline */
	int missed;      /* WF_TICK_* */
	bool closed;     /* sl: freed while a tick waited */
	bool keep;       /* sl: what the free's bump said */
	unsigned users;  /* sl: ticks in progress (0 or 1) */
	wf__waiter *sleeping; /* sl */
};

static wf__htype interval_type = WF__HTYPE_INIT(WF__K_INTERVAL, struct wf_interval);

static struct wf_interval *interval_get(const wf_interval *h)
{
	return wf__handle_get(h, WF__K_INTERVAL);
}

int wf_interval_new(uint64_t period_ms, int missed, wf_interval **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (period_ms == 0 || period_ms > UINT64_MAX / 4000000u ||
	    (missed != WF_TICK_BURST && missed != WF_TICK_DELAY && missed != WF_TICK_SKIP))
		return WF_EINVAL;
	struct wf_interval *iv = wf__hobj_alloc(&interval_type);
	if (iv == NULL)
		return WF_ENOMEM;
	iv->period = period_ms * 1000000u;
	iv->next = wf__now_ns(); /* the first tick completes at once */
	iv->missed = missed;
	*out = wf__handle_of(iv);
	return 0;
}

/* Under iv->sl, with the tick at iv->next due at now: schedules the one
 * after it; returns the ticks dropped. */
static int interval_advance(struct wf_interval *iv, uint64_t now)
{
	uint64_t due = iv->next;
	switch (iv->missed) {
	case WF_TICK_DELAY:
		iv->next = now + iv->period;
		return 0;
	case WF_TICK_SKIP: {
		uint64_t late = now - due;
		uint64_t skipped = late / iv->period;
		iv->next = due + (skipped + 1) * iv->period;
		return skipped > INT32_MAX ? INT32_MAX : (int)skipped;
	}
	default:
		iv->next = due + iv->period;
		return 0;
	}
}

int wf_interval_tick(wf_interval *h)
{
	struct wf_interval *iv = interval_get(h);
	if (iv == NULL)
		return WF_EINVAL;
	wf__spin_lock(&iv->sl);
	if (wf__handle_of(iv) != (void *)h) { /* freed since the decode */
		wf__spin_unlock(&iv->sl);
		return WF_EINVAL;
	}
	if (iv->users != 0) {
		wf__spin_unlock(&iv->sl);
		return WF_EBUSY;
	}
	iv->users = 1;
	int rc = 0;
	for (;;) {
		if (iv->closed) {
			rc = WF_ECLOSED;
			break;
		}
		uint64_t now = wf__now_ns();
		if (now >= iv->next) {
			rc = interval_advance(iv, now);
			break;
		}
		wf__waiting wg = {.lock = &iv->sl, .slot = &iv->sleeping, .what = "interval",
				  .obj = iv, .deadline = iv->next};
		int w = wf__wait_on(&wg);
		wf__spin_lock(&iv->sl);
		if (w == WF_ECANCELED || w == WF_ENOMEM) {
			rc = w;
			break;
		}
	}
	iv->users = 0;
	bool closed = iv->closed, keep = iv->keep;
	wf__spin_unlock(&iv->sl);
	/* The free left the object to this call, its last user. */
	if (closed)
		wf__hobj_recycle(&interval_type, iv, keep);
	return rc;
}

int wf_interval_reset(wf_interval *h)
{
	struct wf_interval *iv = interval_get(h);
	if (iv == NULL)
		return WF_EINVAL;
	wf__spin_lock(&iv->sl);
	if (wf__handle_of(iv) != (void *)h) {
		wf__spin_unlock(&iv->sl);
		return WF_EINVAL;
	}
	iv->next = wf__now_ns() + iv->period;
	if (iv->sleeping != NULL) { /* it reads the new deadline */
		wf__waiter_fire(iv->sleeping, 0, NULL);
		iv->sleeping = NULL;
	}
	wf__spin_unlock(&iv->sl);
	return 0;
}

int wf_interval_free(wf_interval *h)
{
	struct wf_interval *iv = interval_get(h);
	if (iv == NULL)
		return WF_EINVAL;
	wf__spin_lock(&iv->sl);
	if (wf__handle_of(iv) != (void *)h) { /* a racing free got there first */
		wf__spin_unlock(&iv->sl);
		return WF_EINVAL;
	}
	bool keep = wf__hdr_bump(&iv->hdr); /* every handle is stale from here */
	if (iv->users == 0) {
		wf__spin_unlock(&iv->sl);
		wf__hobj_recycle(&interval_type, iv, keep);
		return 0;
	}
	iv->keep = keep;
	iv->closed = true;
	if (iv->sleeping != NULL) {
		wf__waiter_fire(iv->sleeping, 0, NULL);
		iv->sleeping = NULL;
	}
	wf__spin_unlock(&iv->sl);
	return 0;
}

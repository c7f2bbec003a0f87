/*
 * Waiters: the one suspension primitive that futures, joins, sleeps and the
 * sync/ and io/ objects are built on (protocol in internal.h).
 *
 * A task's waiter is embedded in the task (it waits on one thing at a time),
 * so a cancellation can reach it from any thread: the waiter word holds both
 * the waiter's state and a pending-cancellation bit, and one CAS on it
 * decides between "fire the armed wait with a cancellation" and "leave the
 * cancellation pending for the next wait". A cancellation is therefore
 * delivered exactly once, to the current suspension or the next.
 */
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "rt.h"
#include "waiting.h"

/* The code a cancellation fires with; wf__wait turns it into WF_ECANCELED
 * and counts the delivery on the task. */
#define WF__CODE_CANCEL INT_MIN

/* ---- wait queues ------------------------------------------------------ */

void wf__waitq_push(wf__waitq *q, wf__waiter *w)
{
	w->next = NULL;
	w->prev = q->tail;
	if (q->tail != NULL)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	w->linked = true;
	q->len++;
}

void wf__waitq_remove(wf__waitq *q, wf__waiter *w)
{
	if (!w->linked)
		return;
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->prev = w->next = NULL;
	w->linked = false;
	q->len--;
}

wf__waiter *wf__waitq_pop(wf__waitq *q)
{
	wf__waiter *w = q->head;
	if (w != NULL)
		wf__waitq_remove(q, w);
	return w;
}

bool wf__waitq_fire_one(wf__waitq *q, int code, void *value)
{
	wf__waiter *w;
	while ((w = wf__waitq_pop(q)) != NULL)
		if (wf__waiter_fire(w, code, value))
			return true;
	return false;
}

size_t wf__waitq_fire_all(wf__waitq *q, int code, void *value)
{
	size_t n = 0;
	wf__waiter *w;
	while ((w = wf__waitq_pop(q)) != NULL)
		n += wf__waiter_fire(w, code, value);
	return n;
}

/* ---- arming and firing ------------------------------------------------ *
 *
 * Orderings (the word's transitions are tabled in internal.h). Every CAS
 * on the waiter word is acq_rel, its failure acquire: the owner's plain
 * writes before arming (code, value, what) are released by the arming CAS
 * and acquired by the firer's; the firer's writes of code and value after
 * its winning CAS are published by the wake-up that follows it (the park
 * word's CAS, then a queue push: release; the resumed owner's pop:
 * acquire), never by the word itself, which is why the owner reads them
 * only after it has been switched back in. A plain thread's waiter
 * publishes them with its mutex instead. */

static void thread_waiter_init(wf__thread_waiter *tw)
{
	tw->w.word = WF__W_ARMED;
	tw->w.task = NULL;
	tw->w.thread = tw;
	tw->w.linked = false;
	tw->w.what = NULL;
	tw->w.obj = NULL;
	tw->w.prev = tw->w.next = NULL;
	tw->w.code = 0;
	tw->w.value = NULL;
	tw->woken = 0;
	pthread_mutex_init(&tw->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tw->cv, &ca);
	pthread_condattr_destroy(&ca);
}

static void thread_waiter_destroy(wf__thread_waiter *tw)
{
	pthread_mutex_destroy(&tw->mu);
	pthread_cond_destroy(&tw->cv);
}

/* Forced inline into wf__wait_on, the path of every sync/ and io/ wait;
 * the exported names below are the same code for the other callers. */
#define HOT_INLINE static inline __attribute__((always_inline))

/* wf__current without the call (wf__self is inline on x86-64). */
HOT_INLINE wf_task *current_task(void)
{
	wf__worker *w = wf__self();
	return w != NULL ? w->current : NULL;
}

/* t: the calling task, or NULL on a plain thread (whose waiter is tw). */
HOT_INLINE int wait_prepare(wf__waiter **out, wf_task *t, wf__thread_waiter *tw)
{
	if (t == NULL) {
		thread_waiter_init(tw);
		*out = &tw->w;
		return 0;
	}
	wf__waiter *w = &t->waiter;
	/* Reset before arming: once armed, a firer may write them. */
	w->code = 0;
	w->value = NULL;
	w->linked = false;
	w->what = NULL;
	w->obj = NULL;
	uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
	for (;;) {
		uint32_t next = (word & WF__W_CANCEL_PENDING) ? WF__W_IDLE : WF__W_ARMED;
		if (__atomic_compare_exchange_n(&w->word, &word, next, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
	}
	if (word & WF__W_CANCEL_PENDING) {
		t->cancelling++;
		return WF_ECANCELED;
	}
	*out = w;
	return 0;
}

int wf__wait_prepare(wf__waiter **out, wf__thread_waiter *tw)
{
	return wait_prepare(out, current_task(), tw);
}

void wf__wait_abandon(wf__waiter *w)
{
	if (w->task == NULL) {
		thread_waiter_destroy(w->thread);
		return;
	}
	/* Back to idle unless something fired it meanwhile (a cancellation):
	 * then its wake-up is on its way and must be consumed by a switch. */
	uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
	for (;;) {
		if ((word & WF__W_STATE) != WF__W_ARMED)
			break;
		uint32_t next = (word & ~(uint32_t)WF__W_STATE) | WF__W_IDLE;
		if (__atomic_compare_exchange_n(&w->word, &word, next, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return;
	}
	/* Fired: only a cancellation can fire an unlinked waiter. Consume its
	 * wake-up, and keep the cancellation for the next wait. */
	wf__sched_switch_out(wf__self(), WF__SW_PARK);
	__atomic_or_fetch(&w->word, WF__W_CANCEL_PENDING, __ATOMIC_ACQ_REL);
	__atomic_and_fetch(&w->word, ~(uint32_t)(WF__W_STATE | WF__W_BY_CANCEL), __ATOMIC_ACQ_REL);
}

bool wf__waiter_fire(wf__waiter *w, int code, void *value)
{
	uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
	for (;;) {
		if ((word & WF__W_STATE) != WF__W_ARMED)
			return false;
		uint32_t next = (word & ~(uint32_t)WF__W_STATE) | WF__W_FIRED;
		if (__atomic_compare_exchange_n(&w->word, &word, next, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			break;
	}
	w->code = code;
	w->value = value;
	if (w->task != NULL) {
		wf__task_wake(w->task);
		return true;
	}
	wf__thread_waiter *tw = w->thread;
	pthread_mutex_lock(&tw->mu);
	tw->woken = 1;
	pthread_cond_signal(&tw->cv);
	pthread_mutex_unlock(&tw->mu);
	return true;
}

/* ---- cancelling a task that waits through an inline child ------------- *
 *
 * A task joined before it started runs inline on its joiner's fiber; when
 * it waits, the whole chain of joiners waits with it, and cancelling one of
 * them must reach the wait (asyncio passes a cancellation on to the awaited
 * task). So while an inline child waits, each of its joiners has its own
 * waiter armed as a proxy that names the child: a cancellation that fires a
 * proxy passes itself on to the child and then marks the proxy forwarded.
 * The child disarms the proxies when it resumes, waiting for a forward in
 * progress to finish, so the child is never freed under a canceller.
 *
 * Every joiner between the child and the cancelled task is marked
 * (cancel_forwarded): when the child lets the cancellation through, each
 * inline join on the way up counts it as its own task's (join_inline in
 * task.c), as a chain of awaits does in asyncio. Marking only the task
 * that was cancelled would lose it at the first joiner in between. */

/* Marks the joiners from child's up to and including a. Release: pairs
 * with the exchange in join_inline. The chain is stable: every task on it
 * is suspended with the child, or is the child itself. */
static void mark_forwarded(wf_task *child, wf_task *a)
{
	for (wf_task *j = child->inline_parent; j != NULL; j = j->inline_parent) {
		__atomic_store_n(&j->cancel_forwarded, 1, __ATOMIC_RELEASE);
		if (j == a)
			break;
	}
}

static void forward_cancel(wf_task *joiner, wf_task *child)
{
	mark_forwarded(child, joiner);
	wf__task_cancel_request(child);
	__atomic_or_fetch(&joiner->waiter.word, WF__W_FORWARDED, __ATOMIC_ACQ_REL);
}

static void proxies_arm(wf_task *child)
{
	for (wf_task *a = child->inline_parent; a != NULL; a = a->inline_parent) {
		wf__waiter *w = &a->waiter;
		w->data = child;
		uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
		for (;;) {
			if (word & WF__W_CANCEL_PENDING) {
				/* Cancelled before the child waited: pass it on. */
				if (!__atomic_compare_exchange_n(&w->word, &word,
								 word & ~(uint32_t)WF__W_CANCEL_PENDING,
								 false, __ATOMIC_ACQ_REL,
								 __ATOMIC_ACQUIRE))
					continue;
				mark_forwarded(child, a);
				wf__task_cancel_request(child);
				word &= ~(uint32_t)WF__W_CANCEL_PENDING;
			}
			uint32_t next = (word & ~(uint32_t)WF__W_STATE) | WF__W_ARMED | WF__W_PROXY;
			if (__atomic_compare_exchange_n(&w->word, &word, next, false, __ATOMIC_ACQ_REL,
							__ATOMIC_ACQUIRE))
				break;
		}
	}
}

/* A cancellation left pending on a joiner of the running inline child t
 * (it arrived while t ran or yielded, with no proxy armed) is passed on to
 * t, which is what the joiner waits for. Called where t would otherwise
 * look only at its own pending cancellations (wf_yield). */
void wf__inline_pull_cancel(wf_task *t)
{
	for (wf_task *a = t->inline_parent; a != NULL; a = a->inline_parent) {
		wf__waiter *w = &a->waiter;
		uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
		while (word & WF__W_CANCEL_PENDING) {
			if (__atomic_compare_exchange_n(&w->word, &word,
							word & ~(uint32_t)WF__W_CANCEL_PENDING, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				mark_forwarded(t, a);
				wf__task_cancel_request(t);
				break;
			}
		}
	}
}

static void proxies_disarm(wf_task *child)
{
	const uint32_t keep = WF__W_CANCEL_PENDING;
	for (wf_task *a = child->inline_parent; a != NULL; a = a->inline_parent) {
		wf__waiter *w = &a->waiter;
		uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
		for (;;) {
			if ((word & WF__W_STATE) == WF__W_FIRED && !(word & WF__W_FORWARDED)) {
				word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
				continue; /* a forward is under way */
			}
			if (__atomic_compare_exchange_n(&w->word, &word, word & keep, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				break;
		}
	}
}

bool wf__task_cancel_request(wf_task *t)
{
	wf__waiter *w = &t->waiter;
	uint32_t word = __atomic_load_n(&w->word, __ATOMIC_ACQUIRE);
	for (;;) {
		if (word & WF__W_BY_CANCEL)
			return true; /* one is on its way: deliver once */
		if ((word & WF__W_STATE) == WF__W_ARMED && (word & WF__W_PROXY)) {
			uint32_t next = (word & ~(uint32_t)WF__W_STATE) | WF__W_FIRED | WF__W_BY_CANCEL;
			if (!__atomic_compare_exchange_n(&w->word, &word, next, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			forward_cancel(t, w->data);
			return true;
		}
		if ((word & WF__W_STATE) == WF__W_ARMED) {
			uint32_t next = (word & ~(uint32_t)WF__W_STATE) | WF__W_FIRED | WF__W_BY_CANCEL;
			if (!__atomic_compare_exchange_n(&w->word, &word, next, false,
							 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
				continue;
			w->code = WF__CODE_CANCEL;
			w->value = NULL;
			wf__task_wake(t);
			return true;
		}
		if (word & WF__W_CANCEL_PENDING)
			return true;
		if (__atomic_compare_exchange_n(&w->word, &word, word | WF__W_CANCEL_PENDING, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return true;
	}
}

/* ---- waiting ---------------------------------------------------------- */

static int thread_wait(wf__thread_waiter *tw, uint64_t deadline)
{
	struct timespec ts;
	if (deadline != WF__NO_DEADLINE) {
		ts.tv_sec = (time_t)(deadline / 1000000000u);
		ts.tv_nsec = (long)(deadline % 1000000000u);
	}
	pthread_mutex_lock(&tw->mu);
	while (!tw->woken) {
		if (deadline == WF__NO_DEADLINE) {
			pthread_cond_wait(&tw->cv, &tw->mu);
			continue;
		}
		if (pthread_cond_timedwait(&tw->cv, &tw->mu, &ts) != ETIMEDOUT)
			continue;
		/* Claim our own waiter; if a firer beat us, its signal is
		 * coming: wait for it. */
		uint32_t armed = WF__W_ARMED;
		if (__atomic_compare_exchange_n(&tw->w.word, &armed, WF__W_FIRED, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			tw->w.code = WF_ETIMEDOUT;
			break;
		}
		deadline = WF__NO_DEADLINE;
	}
	pthread_mutex_unlock(&tw->mu);
	int code = tw->w.code;
	thread_waiter_destroy(tw);
	return code;
}

HOT_INLINE int wait_on_waiter(wf__waiter *w, uint64_t deadline)
{
	if (w->task == NULL)
		return thread_wait(w->thread, deadline);
	wf_task *t = w->task;
	wf__timer *tm = NULL;
	bool proxied = t->inline_parent != NULL;
	if (proxied)
		proxies_arm(t);
	if (deadline != WF__NO_DEADLINE) {
		if (deadline <= wf__now_ns()) {
			if (wf__waiter_fire(w, WF_ETIMEDOUT, NULL))
				deadline = WF__NO_DEADLINE; /* wake is queued */
		} else {
			tm = wf__timer_add(wf__self(), deadline, w);
			if (tm == NULL) /* out of memory: fail the wait */
				wf__waiter_fire(w, WF_ENOMEM, NULL);
		}
	}
	t->wait_since = wf__coarse_ns();
	if (WF__UNLIKELY(t->rt->hooks != NULL))
		wf__hook_task(t, WF__HOOK_SUSPEND);
	wf__sched_switch_out(wf__self(), WF__SW_PARK);
	if (WF__UNLIKELY(t->rt->hooks != NULL))
		wf__hook_task(t, WF__HOOK_RESUME);
	if (proxied)
		proxies_disarm(t);
	if (tm != NULL)
		wf__timer_cancel(tm);
	int code = w->code;
	if (code == WF__CODE_CANCEL) {
		t->cancelling++;
		code = WF_ECANCELED;
	}
	/* Back to idle, keeping a cancellation that arrived after the fire. */
	__atomic_and_fetch(&w->word, ~(uint32_t)(WF__W_STATE | WF__W_BY_CANCEL), __ATOMIC_ACQ_REL);
	return code;
}

int wf__wait(wf__waiter *w, uint64_t deadline) { return wait_on_waiter(w, deadline); }

/* ---- the waiter ritual (waiting.h) -------------------------------------- *
 *
 * Here rather than in a file of its own so that the waiter's arming and
 * waiting inline into it: every wait of sync/ and io/ goes through it. */

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

/* t: the calling task; or NULL, and tw: a plain thread's waiter storage. */
HOT_INLINE int wait_on(wf__waiting *wg, wf_task *t, wf__thread_waiter *tw)
{
	wf__waiter *w;
	wg->value = NULL;
	wg->gave_up = false;
	wg->waited = false;
	int rc = wg->no_wait ? WF_ETIMEDOUT : wait_prepare(&w, t, tw);
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

	rc = wait_on_waiter(w, wg->deadline);
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

/* A plain thread's waiter (a mutex and a condition variable) lives in
 * this frame, not in a task's: the frames a task reads back when it
 * resumes stay few cache lines. */
static __attribute__((noinline)) int wait_on_thread(wf__waiting *wg)
{
	wf__thread_waiter tw;
	return wait_on(wg, NULL, &tw);
}

int wf__wait_on(wf__waiting *wg)
{
	wf_task *t = current_task();
	if (t == NULL)
		return wait_on_thread(wg);
	return wait_on(wg, t, NULL);
}

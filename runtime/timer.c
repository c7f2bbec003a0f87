/*
 * Timers: one binary min-heap of deadlines per worker, driven by the
 * worker's scheduler loop (which bounds its sleep in epoll by the earliest
 * deadline). A timer entry fires a waiter with WF_ETIMEDOUT.
 *
 * Only the owning worker touches its heap. A wait that ends some other way
 * cancels its entry from whichever thread it resumed on: one CAS (armed ->
 * cancelled) decides against the worker's (armed -> firing), and the loser
 * of a firing race waits the few instructions until the fire is finished,
 * so a fire never reaches a waiter that has moved on. Entries are shared by
 * the heap and the waiting task, so they carry two references. A cancelled
 * entry is taken out of the heap at once on its own worker; one cancelled
 * from another thread (the task was woken and resumed elsewhere) is pushed
 * on its worker's list of remote cancels, with a third reference, and taken
 * out of the heap the next time that worker runs its timers. Leaving it in
 * the heap until its deadline would let long timeouts woken early at a high
 * rate grow the heap without bound. A worker asleep in epoll adds no
 * timers, so what waits on its list is bounded by its heap.
 */
#include <stdlib.h>

#include "rt.h"

enum { TM_ARMED, TM_FIRING, TM_FIRED, TM_CANCELLED };

static void tm_unref(wf__timer *tm)
{
	if (__atomic_sub_fetch(&tm->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(tm);
}

static void heap_set(wf__timer_heap *h, size_t i, wf__timer *tm)
{
	h->items[i] = tm;
	tm->index = i;
}

static void sift_up(wf__timer_heap *h, size_t i)
{
	wf__timer *tm = h->items[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->items[p]->deadline <= tm->deadline)
			break;
		heap_set(h, i, h->items[p]);
		i = p;
	}
	heap_set(h, i, tm);
}

static void sift_down(wf__timer_heap *h, size_t i)
{
	wf__timer *tm = h->items[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->len)
			break;
		if (c + 1 < h->len && h->items[c + 1]->deadline < h->items[c]->deadline)
			c++;
		if (tm->deadline <= h->items[c]->deadline)
			break;
		heap_set(h, i, h->items[c]);
		i = c;
	}
	heap_set(h, i, tm);
}

static void heap_remove(wf__timer_heap *h, size_t i)
{
	h->items[i]->index = SIZE_MAX;
	h->len--;
	if (i == h->len)
		return;
	heap_set(h, i, h->items[h->len]);
	sift_down(h, i);
	sift_up(h, h->items[i]->index);
}

wf__timer *wf__timer_add(wf__worker *w, uint64_t deadline, wf__waiter *wt)
{
	wf__timer_heap *h = &w->timers;
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		wf__timer **items = realloc(h->items, cap * sizeof(*items));
		if (items == NULL)
			return NULL;
		h->items = items;
		h->cap = cap;
	}
	wf__timer *tm = malloc(sizeof(*tm));
	if (tm == NULL)
		return NULL;
	tm->deadline = deadline;
	tm->state = TM_ARMED;
	tm->refs = 2;
	tm->waiter = wt;
	tm->worker = w;
	tm->cnext = NULL;
	heap_set(h, h->len++, tm);
	sift_up(h, h->len - 1);
	return tm;
}

void wf__timer_cancel(wf__timer *tm)
{
	uint32_t s = TM_ARMED;
	if (__atomic_compare_exchange_n(&tm->state, &s, TM_CANCELLED, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		wf__worker *w = tm->worker;
		if (w == wf__self()) {
			heap_remove(&w->timers, tm->index);
			tm_unref(tm); /* the heap's reference */
		} else {
			/* The list's reference. Release: pairs with the owner's
			 * acquire exchange in drain_remote_cancels. */
			__atomic_add_fetch(&tm->refs, 1, __ATOMIC_RELAXED);
			wf__timer *h = __atomic_load_n(&w->timer_cancels, __ATOMIC_RELAXED);
			do {
				tm->cnext = h;
			} while (!__atomic_compare_exchange_n(&w->timer_cancels, &h, tm, true,
							      __ATOMIC_RELEASE, __ATOMIC_RELAXED));
		}
	} else {
		while (__atomic_load_n(&tm->state, __ATOMIC_ACQUIRE) == TM_FIRING)
			;
	}
	tm_unref(tm);
}

/* Owner: takes the entries other threads cancelled out of the heap (unless
 * their deadline already did). */
static void drain_remote_cancels(wf__worker *w)
{
	if (__atomic_load_n(&w->timer_cancels, __ATOMIC_RELAXED) == NULL)
		return;
	wf__timer *tm = __atomic_exchange_n(&w->timer_cancels, NULL, __ATOMIC_ACQUIRE);
	while (tm != NULL) {
		wf__timer *next = tm->cnext;
		if (tm->index != SIZE_MAX) {
			heap_remove(&w->timers, tm->index);
			tm_unref(tm); /* the heap's */
		}
		tm_unref(tm); /* the list's */
		tm = next;
	}
}

uint64_t wf__timers_run(wf__worker *w, uint64_t now)
{
	wf__timer_heap *h = &w->timers;
	drain_remote_cancels(w);
	while (h->len > 0) {
		wf__timer *tm = h->items[0];
		if (tm->deadline > now)
			return tm->deadline;
		heap_remove(h, 0);
		uint32_t s = TM_ARMED;
		if (__atomic_compare_exchange_n(&tm->state, &s, TM_FIRING, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			wf__waiter_fire(tm->waiter, WF_ETIMEDOUT, NULL);
			__atomic_store_n(&tm->state, TM_FIRED, __ATOMIC_RELEASE);
			WF__COUNT(w->st.timers_fired, 1);
		}
		tm_unref(tm);
	}
	return WF__NO_DEADLINE;
}

void wf__timers_destroy(wf__worker *w)
{
	wf__timer_heap *h = &w->timers;
	drain_remote_cancels(w);
	for (size_t i = 0; i < h->len; i++)
		tm_unref(h->items[i]);
	free(h->items);
	h->items = NULL;
	h->len = h->cap = 0;
}

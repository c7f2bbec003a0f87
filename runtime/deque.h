/*
 * Chase-Lev work-stealing deque, following Lê, Pop, Cohen and Zappa
 * Nardelli, "Correct and efficient work-stealing for weak memory models"
 * (PPoPP 2013), figure 1, written on Concurrency Kit's ck_pr.
 *
 * The owner pushes and takes at the bottom (LIFO: the task it spawned last
 * is the hottest in its cache); thieves steal at the top (FIFO: the oldest,
 * usually largest, piece of work). Items are pointers; NULL is never
 * stored. The array grows (doubling) when full; old arrays are kept on a
 * list until the deque is destroyed, since a thief may still be reading one
 * (the paper's simplest safe reclamation; at most log2(max size) arrays).
 *
 * Orderings (paper's names -> ck_pr):
 *   push:  store item (relaxed); fence(release) = ck_pr_fence_store;
 *          store bottom (relaxed).
 *   take:  store bottom-1 (relaxed); fence(seq_cst), both as one
 *          ck_pr_fas_64 (a locked exchange is a full barrier);
 *          load top; if last item: CAS top (seq_cst).
 *   steal: load top (acquire); fence(seq_cst); load bottom (acquire);
 *          load item; CAS top (seq_cst).
 * The take fence pairs with the steal fence: either the thief sees the
 * decremented bottom or the owner sees the advanced top, never neither.
 *
 * Under ThreadSanitizer (WF_TSAN) stand-alone fences are not modelled, so the
 * same algorithm is written with __atomic builtins whose own orderings carry
 * the argument: the take's store-then-fence becomes a seq_cst exchange, the
 * steal's loads become seq_cst loads, and the push's release store of bottom
 * publishes the item (and the task it points to) to the thief's acquire load.
 */
#ifndef WEFT_RUNTIME_DEQUE_H
#define WEFT_RUNTIME_DEQUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef WF_TSAN
#include <ck_pr.h>
#endif

typedef struct wf__dq_array {
	int64_t mask; /* size - 1; size is a power of two */
	struct wf__dq_array *older;
	void *items[];
} wf__dq_array;

typedef struct wf__deque {
	int64_t top;    /* thieves' end; only ever increases */
	char pad0[64 - sizeof(int64_t)];
	int64_t bottom; /* owner's end */
	wf__dq_array *array;
	int64_t top_seen; /* owner's last read of top: a lower bound */
	char pad1[64 - 2 * sizeof(int64_t) - sizeof(void *)];
} wf__deque;

#define WF__DQ_EMPTY ((void *)0)
#define WF__DQ_ABORT ((void *)1) /* lost a race with another thief: retry */

int wf__deque_init(wf__deque *d, int64_t log2_size);
void wf__deque_destroy(wf__deque *d);
/* Owner only. Returns false if the array could not grow (out of memory). */
bool wf__deque_grow(wf__deque *d);

#ifdef WF_TSAN
#define DQ_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define DQ_LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define DQ_STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define DQ_STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define DQ_LOAD_PTR(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define DQ_STORE_PTR(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define DQ_STORE_PTR_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
static inline bool dq_cas(int64_t *p, int64_t old, int64_t new_)
{
	return __atomic_compare_exchange_n(p, &old, new_, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_RELAXED);
}
#else
#define DQ_LOAD(p) ((int64_t)ck_pr_load_64((uint64_t *)(p)))
#define DQ_LOAD_RELAXED(p) DQ_LOAD(p)
#define DQ_STORE_RELAXED(p, v) ck_pr_store_64((uint64_t *)(p), (uint64_t)(v))
#define DQ_STORE_RELEASE(p, v)                                                 \
	do {                                                                   \
		ck_pr_fence_store();                                           \
		DQ_STORE_RELAXED(p, v);                                        \
	} while (0)
#define DQ_LOAD_PTR(p) ck_pr_load_ptr(p)
#define DQ_STORE_PTR(p, v) ck_pr_store_ptr((p), (v))
#define DQ_STORE_PTR_RELEASE(p, v)                                             \
	do {                                                                   \
		ck_pr_fence_store();                                           \
		ck_pr_store_ptr((p), (v));                                     \
	} while (0)
static inline bool dq_cas(int64_t *p, int64_t old, int64_t new_)
{
	return ck_pr_cas_64((uint64_t *)p, (uint64_t)old, (uint64_t)new_);
}
#endif

/* Owner only. */
static inline bool wf__deque_push(wf__deque *d, void *item)
{
	int64_t b = DQ_LOAD_RELAXED(&d->bottom);
	wf__dq_array *a = d->array;
	/* top only grows, so a stale read is a safe bound for "full": read
	 * the thieves' cache line only when the stale bound says so. */
	if (__builtin_expect(b - d->top_seen > a->mask, 0)) {
		d->top_seen = DQ_LOAD(&d->top); /* acquire in the paper */
		if (b - d->top_seen > a->mask) {
			if (!wf__deque_grow(d))
				return false;
			a = d->array;
		}
	}
	DQ_STORE_PTR(&a->items[b & a->mask], item);
	/* Release: the item (and what it points to) before the new bottom;
	 * pairs with the thief's load of bottom in wf__deque_steal. */
	DQ_STORE_RELEASE(&d->bottom, b + 1);
	return true;
}

/* Owner only: the most recently pushed item, or WF__DQ_EMPTY. */
static inline void *wf__deque_take(wf__deque *d)
{
	int64_t b = DQ_LOAD_RELAXED(&d->bottom) - 1;
	/* Empty for sure (top only grows): skip the fence. An empty take is
	 * the common case of an idle or yielding worker. */
	if (DQ_LOAD_RELAXED(&d->top) > b)
		return WF__DQ_EMPTY;
	wf__dq_array *a = d->array;
#ifdef WF_TSAN
	__atomic_exchange_n(&d->bottom, b, __ATOMIC_SEQ_CST);
#else
	/* The paper's relaxed store followed by a seq_cst fence, as one
	 * locked exchange: a full barrier on x86-64 and AArch64 alike, and
	 * cheaper than store + mfence. Pairs with the fence in
	 * wf__deque_steal (see the top comment). */
	ck_pr_fas_64((uint64_t *)&d->bottom, (uint64_t)b);
#endif
	int64_t t = DQ_LOAD(&d->top);
	if (t > b) { /* empty */
		DQ_STORE_RELAXED(&d->bottom, b + 1);
		return WF__DQ_EMPTY;
	}
	void *x = DQ_LOAD_PTR(&a->items[b & a->mask]);
	if (t == b) { /* last item: race the thieves for it */
		if (!dq_cas(&d->top, t, t + 1))
			x = WF__DQ_EMPTY;
		DQ_STORE_RELAXED(&d->bottom, b + 1);
	}
	return x;
}

/* Any thread: the oldest item, WF__DQ_EMPTY, or WF__DQ_ABORT. */
static inline void *wf__deque_steal(wf__deque *d)
{
	int64_t t = DQ_LOAD(&d->top);
#ifndef WF_TSAN
	/* Pairs with the fence in wf__deque_take. */
	ck_pr_fence_memory();
#endif
	int64_t b = DQ_LOAD(&d->bottom);
	if (t >= b)
		return WF__DQ_EMPTY;
	wf__dq_array *a = DQ_LOAD_PTR(&d->array);
	void *x = DQ_LOAD_PTR(&a->items[t & a->mask]);
	if (!dq_cas(&d->top, t, t + 1))
		return WF__DQ_ABORT;
	return x;
}

/* Any thread; a snapshot, for heuristics only. */
static inline int64_t wf__deque_size(wf__deque *d)
{
	int64_t b = DQ_LOAD(&d->bottom);
	int64_t t = DQ_LOAD(&d->top);
	return b > t ? b - t : 0;
}

#endif

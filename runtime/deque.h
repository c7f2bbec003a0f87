/*
 * Chase-Lev work-stealing deque, following Lê, Pop, Cohen and Zappa
 * Nardelli, "Correct and efficient work-stealing for weak memory models"
 * (PPoPP 2013), figure 1, in C11 atomics (GCC's __atomic builtins).
 *
 * The owner pushes and takes at the bottom (LIFO: the task it spawned last
 * is the hottest in its cache); thieves steal at the top (FIFO: the oldest,
 * usually largest, piece of work). Items are pointers; NULL is never
 * stored. The array grows (doubling) when full; old arrays are kept on a
 * list until the deque is destroyed, since a thief may still be reading one
 * (the paper's simplest safe reclamation; at most log2(max size) arrays).
 *
 * One implementation for every build and target. The paper's stand-alone
 * fences are folded into the operations next to them, because
 * ThreadSanitizer does not model stand-alone fences and the code it checks
 * must be the code that ships:
 *   push:  store item (relaxed); store bottom (release) — the paper's
 *          release fence + relaxed store. Pairs with the thief's acquire
 *          load of bottom: a thief that sees the new bottom sees the item
 *          and everything the spawner wrote into the task before it.
 *          The "full?" check loads top with acquire: pairs with a thief's
 *          CAS of top (release), so the thief's item load happens before
 *          the owner reuses that slot.
 *   take:  exchange bottom-1 (seq_cst); load top (seq_cst) — the paper's
 *          relaxed store + seq_cst fence + load.
 *   steal: load top (seq_cst); load bottom (seq_cst) — the paper's acquire
 *          load, seq_cst fence, acquire load; load array (acquire); load
 *          item (relaxed); CAS top (seq_cst, which is also a release: the
 *          item load cannot drift past it into a slot the owner reuses).
 * The take's two operations and the steal's two loads are a Dekker pair in
 * C11's single total order of seq_cst operations: either the thief sees the
 * decremented bottom or the owner sees the advanced top, never neither. On
 * x86-64 the exchange is one locked XCHG and the seq_cst loads are plain
 * loads (what the fence-based code compiled to); on AArch64 they are
 * SWPAL/LDAXR-STLXR and LDAR, which order as required (a seq_cst load is
 * never reordered before an earlier store-release).
 *
 * One exception, x86-64 only and never under TSan (WF__DQ_SPLIT_TAKE):
 * a join that pops its own child's start entry already runs a locked
 * instruction (the CAS on the task's joined word), and on x86 every locked
 * instruction is a full barrier: no load after it passes a store before
 * it. wf__deque_take_begin / _end put that CAS between the store of bottom
 * and the load of top, so it serves as the take's barrier and the fork-join
 * path pays one locked instruction instead of two. Everywhere else the take
 * is the C11 code above.
 */
#ifndef WEFT_RUNTIME_DEQUE_H
#define WEFT_RUNTIME_DEQUE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

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

static inline bool dq_cas(int64_t *p, int64_t old, int64_t new_)
{
	return __atomic_compare_exchange_n(p, &old, new_, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_RELAXED);
}

#define DQ_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* Owner only. */
static inline bool wf__deque_push(wf__deque *d, void *item)
{
	int64_t b = DQ_RELAXED(&d->bottom); /* only the owner writes it */
	wf__dq_array *a = d->array;
	/* top only grows, so a stale read is a safe bound for "full": read
	 * the thieves' cache line only when the stale bound says so. */
	if (__builtin_expect(b - d->top_seen > a->mask, 0)) {
		/* Acquire: pairs with the CAS (release) of the thief that
		 * advanced top, whose item load then happens before this
		 * owner's reuse of the slot. */
		d->top_seen = __atomic_load_n(&d->top, __ATOMIC_ACQUIRE);
		if (b - d->top_seen > a->mask) {
			if (!wf__deque_grow(d))
				return false;
			a = d->array;
		}
	}
	__atomic_store_n(&a->items[b & a->mask], item, __ATOMIC_RELAXED);
	/* Release: the item (and what it points to) before the new bottom;
	 * pairs with the thief's load of bottom in wf__deque_steal. */
	__atomic_store_n(&d->bottom, b + 1, __ATOMIC_RELEASE);
	return true;
}

/* Owner only: the most recently pushed item, or WF__DQ_EMPTY. */
static inline void *wf__deque_take(wf__deque *d)
{
	int64_t b = DQ_RELAXED(&d->bottom) - 1;
	/* Empty for sure (top only grows): skip the barrier. An empty take
	 * is the common case of an idle or yielding worker. */
	if (DQ_RELAXED(&d->top) > b)
		return WF__DQ_EMPTY;
	wf__dq_array *a = d->array;
	/* seq_cst exchange then seq_cst load of top: the owner's half of the
	 * Dekker pair with wf__deque_steal's two seq_cst loads. */
	__atomic_exchange_n(&d->bottom, b, __ATOMIC_SEQ_CST);
	int64_t t = __atomic_load_n(&d->top, __ATOMIC_SEQ_CST);
	if (t > b) { /* empty */
		__atomic_store_n(&d->bottom, b + 1, __ATOMIC_RELAXED);
		return WF__DQ_EMPTY;
	}
	void *x = __atomic_load_n(&a->items[b & a->mask], __ATOMIC_RELAXED);
	if (t == b) { /* last item: race the thieves for it */
		if (!dq_cas(&d->top, t, t + 1))
			x = WF__DQ_EMPTY;
		__atomic_store_n(&d->bottom, b + 1, __ATOMIC_RELAXED);
	}
	return x;
}

/* Owner only: the bottom item, not taken, or WF__DQ_EMPTY (plain reads of
 * the owner's own slot, a hint: a thief may take it meanwhile). */
static inline void *wf__deque_peek(wf__deque *d)
{
	int64_t b = DQ_RELAXED(&d->bottom) - 1;
	if (DQ_RELAXED(&d->top) > b)
		return WF__DQ_EMPTY;
	return DQ_RELAXED(&d->array->items[b & d->array->mask]);
}

#if defined(__x86_64__) && !defined(WF_TSAN)
#define WF__DQ_SPLIT_TAKE 1

/* Owner only: the first half of a take whose barrier is the caller's next
 * locked instruction (top comment). Returns the slot to pass to _end or
 * _undo; the deque must not be empty (wf__deque_peek said so). */
static inline int64_t wf__deque_take_begin(wf__deque *d)
{
	int64_t b = DQ_RELAXED(&d->bottom) - 1;
	__atomic_store_n(&d->bottom, b, __ATOMIC_RELAXED);
	return b;
}

/* After the locked instruction: the item of slot b, or WF__DQ_EMPTY if a
 * thief took it. The loads cannot be hoisted above the caller's seq_cst
 * RMW (it is an acquire), nor the store of bottom sunk below it (a
 * release): the compiler keeps the order the CPU then keeps. */
static inline void *wf__deque_take_end(wf__deque *d, int64_t b)
{
	int64_t t = DQ_RELAXED(&d->top);
	if (t > b) {
		__atomic_store_n(&d->bottom, b + 1, __ATOMIC_RELAXED);
		return WF__DQ_EMPTY;
	}
	void *x = DQ_RELAXED(&d->array->items[b & d->array->mask]);
	if (t == b) {
		if (!dq_cas(&d->top, t, t + 1))
			x = WF__DQ_EMPTY;
		__atomic_store_n(&d->bottom, b + 1, __ATOMIC_RELAXED);
	}
	return x;
}

/* Gives slot b back untaken (the caller's locked instruction failed its
 * purpose): as if the take never began. A thief may still steal it. */
static inline void wf__deque_take_undo(wf__deque *d, int64_t b)
{
	__atomic_store_n(&d->bottom, b + 1, __ATOMIC_RELAXED);
}
#endif

/* Any thread: the oldest item, WF__DQ_EMPTY, or WF__DQ_ABORT. */
static inline void *wf__deque_steal(wf__deque *d)
{
	/* The thief's half of the Dekker pair (see the top comment). The
	 * load of bottom is also an acquire: pairs with the push's release
	 * store, so the item and the task behind it are visible. */
	int64_t t = __atomic_load_n(&d->top, __ATOMIC_SEQ_CST);
	int64_t b = __atomic_load_n(&d->bottom, __ATOMIC_SEQ_CST);
	if (t >= b)
		return WF__DQ_EMPTY;
	/* Acquire: pairs with the release store of a grown array, whose
	 * copied items are then visible. */
	wf__dq_array *a = __atomic_load_n(&d->array, __ATOMIC_ACQUIRE);
	void *x = __atomic_load_n(&a->items[t & a->mask], __ATOMIC_RELAXED);
	/* seq_cst includes release: the item load above stays before it. A
	 * failed CAS means another thief (or the owner's take of the last
	 * item) got slot t; x may be stale and is dropped. */
	if (!dq_cas(&d->top, t, t + 1))
		return WF__DQ_ABORT;
	return x;
}

/* Owner only, a hint: how deep below the bottom item x sits (0: it is the
 * bottom item), looking at most max items down, or -1. Plain reads of the
 * owner's own slots: a thief may take the item meanwhile (a take then
 * finds the deque shorter), but no slot in [top, bottom) is rewritten
 * while the owner is here. */
static inline int wf__deque_depth_of(wf__deque *d, const void *x, int max)
{
	int64_t b = __atomic_load_n(&d->bottom, __ATOMIC_RELAXED);
	int64_t t = __atomic_load_n(&d->top, __ATOMIC_RELAXED);
	wf__dq_array *a = d->array;
	for (int k = 0; k < max && b - 1 - k >= t; k++)
		if (__atomic_load_n(&a->items[(b - 1 - k) & a->mask], __ATOMIC_RELAXED) == x)
			return k;
	return -1;
}

/* Any thread; a snapshot, for heuristics only. */
static inline int64_t wf__deque_size(wf__deque *d)
{
	int64_t b = __atomic_load_n(&d->bottom, __ATOMIC_ACQUIRE);
	int64_t t = __atomic_load_n(&d->top, __ATOMIC_ACQUIRE);
	return b > t ? b - t : 0;
}

#endif

/*
 * Queues: asyncio.Queue, LifoQueue and PriorityQueue for tasks on many
 * workers and plain threads, with Python 3.13's shutdown.
 *
 * One spinlock guards the storage (a power-of-two ring for FIFO, an array
 * used as a stack for LIFO, a binary heap for priority), the count of
 * unfinished items, the shutdown flag and three wait queues: getters,
 * putters, joiners. Storage grows by doubling and never shrinks, so a
 * queue in steady use allocates nothing; a bounded queue starts with room
 * for min(maxsize, 1024) items.
 *
 * Hand-offs go through the waiters' fires, decided under the lock:
 *   - getters wait only while the queue is empty; a put then gives its item
 *     to the first getter whose fire succeeds (the item travels as the
 *     fire's value), or stores it if every getter had given up;
 *   - putters wait only while a bounded queue is full, each with its item
 *     in w->data; a get that frees a slot moves the first putter's item in,
 *     but only if that putter's fire succeeds: a putter that timed out or
 *     was cancelled keeps its item, and the slot goes to the next one.
 * So an item is never lost or delivered twice, and both kinds of waiter
 * are served in arrival order. The unfinished count (task_done / join)
 * grows when an item is accepted, whether stored or handed over.
 *
 * Invariants at every release of the lock: getters waiting implies the
 * queue is empty; putters waiting implies it is full; once shut down, only
 * joiners wait (shutdown fires every putter, and every getter if the queue
 * is empty; nobody queues as a getter or putter on a shut-down queue).
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/abi.h"
#include "sync/sync_internal.h"

#define FIRST_CAP_BOUNDED 1024u
#define FIRST_CAP_UNBOUNDED 16u

struct pent { /* a priority queue's entry: ties go in arrival order */
	void *item;
	uint64_t seq;
};

struct wf_queue {
	wf__sync s; /* s.q: the getters */
	wf_queue_kind kind;
	size_t maxsize;
	wf_queue_cmp cmp;
	void *cmp_arg;
	void (*drop)(void *item);
	size_t len; /* atomic reads outside sl */
	size_t cap;
	size_t head;   /* FIFO ring start */
	void **items;  /* FIFO ring, LIFO stack */
	struct pent *heap;
	uint64_t seq;
	size_t unfinished;
	bool shutdown; /* atomic reads outside sl */
	wf__waitq putters, joiners;
};

static wf__htype queue_type = WF__HTYPE_INIT(WF__K_QUEUE, struct wf_queue);

static wf_queue *queue_get(const wf_queue *h)
{
	return wf__sync_get(h, WF__K_QUEUE);
}

/* ---- storage (under sl) ----------------------------------------------- */

static size_t elem_size(const wf_queue *q)
{
	return q->kind == WF_QUEUE_PRIORITY ? sizeof(struct pent) : sizeof(void *);
}

static int store_alloc(wf_queue *q, size_t cap)
{
	if (cap > SIZE_MAX / elem_size(q))
		return WF_ENOMEM;
	void *mem = malloc(cap * elem_size(q));
	if (mem == NULL)
		return WF_ENOMEM;
	if (q->kind == WF_QUEUE_PRIORITY) {
		if (q->len != 0)
			memcpy(mem, q->heap, q->len * sizeof(struct pent));
		free(q->heap);
		q->heap = mem;
	} else if (q->kind == WF_QUEUE_FIFO) {
		void **ring = mem;
		for (size_t i = 0; i < q->len; i++)
			ring[i] = q->items[(q->head + i) & (q->cap - 1)];
		free(q->items);
		q->items = ring;
		q->head = 0;
	} else {
		if (q->len != 0)
			memcpy(mem, q->items, q->len * sizeof(void *));
		free(q->items);
		q->items = mem;
	}
	q->cap = cap;
	return 0;
}

static void set_len(wf_queue *q, size_t len)
{
	__atomic_store_n(&q->len, len, __ATOMIC_RELAXED);
}

static bool pent_before(const wf_queue *q, const struct pent *a, const struct pent *b)
{
	int c = q->cmp(a->item, b->item, q->cmp_arg);
	return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_push(wf_queue *q, void *item)
{
	struct pent e = {item, q->seq++};
	size_t i = q->len;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!pent_before(q, &e, &q->heap[parent]))
			break;
		q->heap[i] = q->heap[parent];
		i = parent;
	}
	q->heap[i] = e;
}

static void *heap_pop(wf_queue *q)
{
	void *top = q->heap[0].item;
	size_t n = q->len - 1; /* entries left */
	struct pent last = q->heap[n];
	size_t i = 0;
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= n)
			break;
		if (child + 1 < n && pent_before(q, &q->heap[child + 1], &q->heap[child]))
			child++;
		if (!pent_before(q, &q->heap[child], &last))
			break;
		q->heap[i] = q->heap[child];
		i = child;
	}
	if (n != 0)
		q->heap[i] = last;
	return top;
}

/* Stores item; room must have been made. */
static void store_put(wf_queue *q, void *item)
{
	switch (q->kind) {
	case WF_QUEUE_FIFO:
		q->items[(q->head + q->len) & (q->cap - 1)] = item;
		break;
	case WF_QUEUE_LIFO:
		q->items[q->len] = item;
		break;
	case WF_QUEUE_PRIORITY:
		heap_push(q, item);
		break;
	}
	set_len(q, q->len + 1);
}

/* Stores item, growing the storage if need be: 0 or WF_ENOMEM. */
static int store_push(wf_queue *q, void *item)
{
	if (q->len == q->cap) {
		if (q->cap > SIZE_MAX / 2)
			return WF_ENOMEM;
		int rc = store_alloc(q, q->cap * 2);
		if (rc != 0)
			return rc;
	}
	store_put(q, item);
	return 0;
}

/* Takes the next item; the queue must not be empty. */
static void *store_pop(wf_queue *q)
{
	void *item = NULL;
	switch (q->kind) {
	case WF_QUEUE_FIFO:
		item = q->items[q->head];
		q->head = (q->head + 1) & (q->cap - 1);
		break;
	case WF_QUEUE_LIFO:
		item = q->items[q->len - 1];
		break;
	case WF_QUEUE_PRIORITY:
		item = heap_pop(q);
		break;
	}
	set_len(q, q->len - 1);
	return item;
}

static bool is_full(const wf_queue *q)
{
	return q->maxsize != 0 && q->len >= q->maxsize;
}

/* ---- lifecycle -------------------------------------------------------- */

static size_t first_cap(size_t maxsize)
{
	if (maxsize == 0)
		return FIRST_CAP_UNBOUNDED;
	size_t cap = 1;
	while (cap < maxsize && cap < FIRST_CAP_BOUNDED)
		cap *= 2;
	return cap;
}

int wf_queue_new(const wf_queue_opts *opts, wf_queue **out)
{
	wf_queue_opts def = {0};
	if (opts == NULL)
		opts = &def;
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (!WF__RESERVED_ZERO(opts))
		return WF_EINVAL;
	if (opts->kind != WF_QUEUE_FIFO && opts->kind != WF_QUEUE_LIFO &&
	    opts->kind != WF_QUEUE_PRIORITY)
		return WF_EINVAL;
	if (opts->kind == WF_QUEUE_PRIORITY && opts->cmp == NULL)
		return WF_EINVAL;
	wf_queue *q = wf__sync_alloc(&queue_type);
	if (q == NULL)
		return WF_ENOMEM;
	q->kind = opts->kind;
	q->maxsize = opts->maxsize;
	q->cmp = opts->cmp;
	q->cmp_arg = opts->cmp_arg;
	q->drop = opts->drop;
	if (store_alloc(q, first_cap(q->maxsize)) != 0) {
		wf__hobj_free(&queue_type, q);
		return WF_ENOMEM;
	}
	*out = wf__sync_handle(q);
	return 0;
}

/* Under sl: empties the storage through drop; returns how many items. */
static size_t drop_all(wf_queue *q)
{
	size_t n = 0;
	while (q->len != 0) {
		void *item = store_pop(q);
		if (q->drop != NULL)
			q->drop(item);
		n++;
	}
	return n;
}

static bool queue_busy(wf__sync *s)
{
	wf_queue *q = (wf_queue *)s;
	return q->putters.len != 0 || q->joiners.len != 0;
}

static void queue_destroy(wf__sync *s)
{
	wf_queue *q = (wf_queue *)s;
	drop_all(q);
	free(q->items);
	free(q->heap);
}

int wf_queue_free(wf_queue *h)
{
	wf_queue *q = queue_get(h);
	if (q == NULL)
		return WF_EINVAL;
	return wf__sync_free(&queue_type, &q->s, queue_busy, queue_destroy);
}

/* ---- put -------------------------------------------------------------- */

/* Under sl: accepts item without waiting, or says why it cannot: 0,
 * WF_ESHUTDOWN, WF_EFULL, WF_ENOMEM. */
static int put_locked(wf_queue *q, void *item)
{
	if (q->shutdown)
		return WF_ESHUTDOWN;
	if (q->s.q.len != 0 && wf__waitq_fire_one(&q->s.q, 0, item)) {
		q->unfinished++;
		return 0;
	}
	if (is_full(q))
		return WF_EFULL;
	int rc = store_push(q, item);
	if (rc == 0)
		q->unfinished++;
	return rc;
}

int wf_queue_put_nowait(wf_queue *h, void *item)
{
	wf_queue *q = queue_get(h);
	if (q == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	int rc = put_locked(q, item);
	wf__spin_unlock(&q->s.sl);
	return rc;
}

int wf_queue_put(wf_queue *h, void *item, uint64_t timeout_ms)
{
	wf_queue *q = queue_get(h);
	if (q == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	int rc = put_locked(q, item);
	if (rc != WF_EFULL) {
		wf__spin_unlock(&q->s.sl);
		return rc;
	}
	/* The item waits with the putter (w->data); a get moves it in only if
	 * this waiter's fire succeeds (code 0), a shutdown fires WF_ESHUTDOWN. */
	wf__waiting wg = {.lock = &q->s.sl, .q = &q->putters, .what = "queue put", .obj = q,
			  .data = item, .deadline = wf__deadline_after_ms(timeout_ms),
			  .no_wait = timeout_ms == 0};
	return wf__wait_on(&wg);
}

/* ---- get -------------------------------------------------------------- */

/* Under sl, after a get: moves waiting putters' items into the freed room.
 * A putter's item is stored only if its fire succeeds. */
static void refill(wf_queue *q)
{
	wf__waiter *w;
	while (q->putters.len != 0 && !is_full(q) && q->len < q->cap) {
		w = wf__waitq_pop(&q->putters);
		void *item = w->data; /* read before the fire lets its owner go */
		if (wf__waiter_fire(w, 0, NULL)) {
			store_put(q, item);
			q->unfinished++;
		}
	}
}

/* Under sl: 0 with *item, WF_ESHUTDOWN, WF_EEMPTY. */
static int get_locked(wf_queue *q, void **item)
{
	if (q->len != 0) {
		*item = store_pop(q);
		refill(q);
		return 0;
	}
	return q->shutdown ? WF_ESHUTDOWN : WF_EEMPTY;
}

int wf_queue_get_nowait(wf_queue *h, void **item)
{
	wf_queue *q = queue_get(h);
	if (q == NULL || item == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	int rc = get_locked(q, item);
	wf__spin_unlock(&q->s.sl);
	return rc;
}

int wf_queue_get(wf_queue *h, void **item, uint64_t timeout_ms)
{
	wf_queue *q = queue_get(h);
	if (q == NULL || item == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	int rc = get_locked(q, item);
	if (rc != WF_EEMPTY) {
		wf__spin_unlock(&q->s.sl);
		return rc;
	}
	/* A put hands its item over as the fire's value (code 0). */
	wf__waiting wg = {.lock = &q->s.sl, .q = &q->s.q, .what = "queue get", .obj = q,
			  .deadline = wf__deadline_after_ms(timeout_ms), .no_wait = timeout_ms == 0};
	rc = wf__wait_on(&wg);
	if (rc == 0)
		*item = wg.value;
	return rc;
}

/* ---- sizes ------------------------------------------------------------ */

/* The relaxed loads of len and shutdown outside sl are snapshots for the
 * caller: every decision is made under sl. */
size_t wf_queue_qsize(const wf_queue *h)
{
	const wf_queue *q = queue_get(h);
	return q != NULL ? __atomic_load_n(&q->len, __ATOMIC_RELAXED) : 0;
}

size_t wf_queue_maxsize(const wf_queue *h)
{
	const wf_queue *q = queue_get(h);
	return q != NULL ? q->maxsize : 0;
}

bool wf_queue_empty(const wf_queue *q)
{
	return wf_queue_qsize(q) == 0;
}

bool wf_queue_full(const wf_queue *h)
{
	const wf_queue *q = queue_get(h);
	return q != NULL && q->maxsize != 0 &&
	       __atomic_load_n(&q->len, __ATOMIC_RELAXED) >= q->maxsize;
}

/* ---- task_done, join, shutdown ---------------------------------------- */

int wf_queue_task_done(wf_queue *h)
{
	wf_queue *q = queue_get(h);
	if (q == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	int rc = 0;
	if (q->unfinished == 0)
		rc = WF_EOVERFLOW;
	else if (--q->unfinished == 0)
		wf__waitq_fire_all(&q->joiners, 0, NULL);
	wf__spin_unlock(&q->s.sl);
	return rc;
}

int wf_queue_join(wf_queue *h, uint64_t timeout_ms)
{
	wf_queue *q = queue_get(h);
	if (q == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	if (q->unfinished == 0) {
		wf__spin_unlock(&q->s.sl);
		return 0;
	}
	wf__waiting wg = {.lock = &q->s.sl, .q = &q->joiners, .what = "queue join", .obj = q,
			  .deadline = wf__deadline_after_ms(timeout_ms), .no_wait = timeout_ms == 0};
	return wf__wait_on(&wg);
}

int wf_queue_shutdown(wf_queue *h, bool immediate)
{
	wf_queue *q = queue_get(h);
	if (q == NULL)
		return WF_EINVAL;
	wf__spin_lock(&q->s.sl);
	__atomic_store_n(&q->shutdown, true, __ATOMIC_RELAXED);
	if (immediate && q->len != 0) {
		size_t n = drop_all(q);
		q->unfinished = q->unfinished > n ? q->unfinished - n : 0;
		if (q->unfinished == 0)
			wf__waitq_fire_all(&q->joiners, 0, NULL);
	}
	wf__waitq_fire_all(&q->putters, WF_ESHUTDOWN, NULL);
	if (q->len == 0)
		wf__waitq_fire_all(&q->s.q, WF_ESHUTDOWN, NULL);
	wf__spin_unlock(&q->s.sl);
	return 0;
}

bool wf_queue_is_shutdown(const wf_queue *h)
{
	const wf_queue *q = queue_get(h);
	return q != NULL && __atomic_load_n(&q->shutdown, __ATOMIC_RELAXED);
}

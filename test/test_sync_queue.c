/*
 * wf_queue: error codes, FIFO / LIFO / priority order (ties in arrival
 * order), bounded put/get and the nowait variants, getters and putters
 * served in arrival order, items handed past waiters that gave up,
 * task_done / join, shutdown (graceful and immediate, Python 3.13
 * semantics), free with items left, and an MPMC stress model (many workers,
 * plain threads, random timeouts and cancellations) in which every item put
 * is taken exactly once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

#define I2P(i) ((void *)(intptr_t)(i))
#define P2I(p) ((int)(intptr_t)(p))

struct prio_item {
	int key;
	int seq; /* arrival rank among equal keys */
};

static int cmp_calls;

static int cmp_key(const void *a, const void *b, void *arg)
{
	const struct prio_item *x = a, *y = b;
	++*(int *)arg;
	return (x->key > y->key) - (x->key < y->key);
}

static int cmp_int_items(const void *a, const void *b, void *arg)
{
	int x = P2I(a), y = P2I(b);
	return (x > y) - (x < y);
}

static void *bad_input_main(void *arg)
{
	wf_queue *q;
	void *item;
	wf_queue_opts bad_kind = {.kind = (wf_queue_kind)7};
	wf_queue_opts prio_no_cmp = {.kind = WF_QUEUE_PRIORITY};
	CHECK_RC(wf_queue_new(NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_queue_new(&bad_kind, &q), WF_EINVAL);
	CHECK_RC(wf_queue_new(&prio_no_cmp, &q), WF_EINVAL);
	wf_queue_opts dirty = WF_QUEUE_OPTS_INIT;
	dirty.reserved[5] = 1;
	CHECK_RC(wf_queue_new(&dirty, &q), WF_EINVAL);
	CHECK_RC(wf_queue_put(NULL, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_queue_get(NULL, &item, 0), WF_EINVAL);
	CHECK_RC(wf_queue_put_nowait(NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_queue_get_nowait(NULL, &item), WF_EINVAL);
	CHECK_RC(wf_queue_task_done(NULL), WF_EINVAL);
	CHECK_RC(wf_queue_join(NULL, 0), WF_EINVAL);
	CHECK_RC(wf_queue_shutdown(NULL, false), WF_EINVAL);
	CHECK_RC(wf_queue_free(NULL), WF_EINVAL);
	CHECK_EQ(wf_queue_qsize(NULL), 0);
	CHECK_EQ(wf_queue_maxsize(NULL), 0);
	CHECK(wf_queue_empty(NULL));
	CHECK(!wf_queue_full(NULL));
	CHECK(!wf_queue_is_shutdown(NULL));

	wf_queue_opts bounded = {.kind = WF_QUEUE_FIFO, .maxsize = 2};
	CHECK_RC(wf_queue_new(&bounded, &q), 0);
	CHECK_RC(wf_queue_get(q, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_queue_get_nowait(q, NULL), WF_EINVAL);
	CHECK_EQ(wf_queue_maxsize(q), 2);
	CHECK(wf_queue_empty(q));
	CHECK_RC(wf_queue_get_nowait(q, &item), WF_EEMPTY);
	CHECK_RC(wf_queue_get(q, &item, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_queue_get(q, &item, 2), WF_ETIMEDOUT);
	CHECK_RC(wf_queue_put_nowait(q, I2P(1)), 0);
	CHECK_RC(wf_queue_put(q, NULL, WF_FOREVER), 0); /* NULL is an item */
	CHECK(wf_queue_full(q));
	CHECK_EQ(wf_queue_qsize(q), 2);
	CHECK_RC(wf_queue_put_nowait(q, I2P(3)), WF_EFULL);
	CHECK_RC(wf_queue_put(q, I2P(3), 0), WF_ETIMEDOUT);
	CHECK_RC(wf_queue_put(q, I2P(3), 2), WF_ETIMEDOUT);
	CHECK_RC(wf_queue_get(q, &item, WF_FOREVER), 0);
	CHECK_EQ(P2I(item), 1);
	item = I2P(99);
	CHECK_RC(wf_queue_get_nowait(q, &item), 0);
	CHECK(item == NULL);
	CHECK_RC(wf_queue_task_done(q), 0);
	CHECK_RC(wf_queue_task_done(q), 0);
	CHECK_RC(wf_queue_task_done(q), WF_EOVERFLOW);
	CHECK_RC(wf_queue_join(q, 0), 0);
	CHECK_RC(wf_queue_free(q), 0);
	return NULL;
}

Test(sync_queue, bad_input_and_basics)
{
	run_weft(2, bad_input_main, NULL);
}

/* From a plain thread with no runtime: nowait calls and timeouts work. */
Test(sync_queue, plain_thread_without_runtime)
{
	wf_queue *q;
	void *item;
	cr_assert_eq(wf_queue_new(NULL, &q), 0);
	cr_assert_eq(wf_queue_get(q, &item, 1), WF_ETIMEDOUT);
	for (intptr_t i = 0; i < 1000; i++) /* grows past the first storage */
		cr_assert_eq(wf_queue_put_nowait(q, I2P(i)), 0);
	for (intptr_t i = 0; i < 1000; i++) {
		cr_assert_eq(wf_queue_get(q, &item, WF_FOREVER), 0);
		cr_assert_eq(P2I(item), i);
	}
	cr_assert_eq(wf_queue_free(q), 0);
}

/* ---- order ------------------------------------------------------------ */

static void *order_main(void *arg)
{
	wf_queue *q;
	void *item;
	/* FIFO through wrap-around and growth. */
	CHECK_RC(wf_queue_new(NULL, &q), 0);
	int next_in = 0, next_out = 0;
	for (int round = 0; round < 50; round++) {
		for (int k = 0; k < round % 37; k++)
			CHECK_RC(wf_queue_put_nowait(q, I2P(next_in++)), 0);
		for (int k = 0; k < round % 23 && next_out < next_in; k++) {
			CHECK_RC(wf_queue_get_nowait(q, &item), 0);
			CHECK_EQ(P2I(item), next_out++);
		}
	}
	while (next_out < next_in) {
		CHECK_RC(wf_queue_get_nowait(q, &item), 0);
		CHECK_EQ(P2I(item), next_out++);
	}
	CHECK_RC(wf_queue_free(q), 0);

	/* LIFO. */
	wf_queue_opts lifo = {.kind = WF_QUEUE_LIFO};
	CHECK_RC(wf_queue_new(&lifo, &q), 0);
	for (int i = 0; i < 100; i++)
		CHECK_RC(wf_queue_put_nowait(q, I2P(i)), 0);
	for (int i = 99; i >= 0; i--) {
		CHECK_RC(wf_queue_get_nowait(q, &item), 0);
		CHECK_EQ(P2I(item), i);
	}
	CHECK_RC(wf_queue_free(q), 0);

	/* Priority: smallest key first, equal keys in arrival order. */
	enum { NP = 300 };
	static struct prio_item items[NP];
	wf_queue_opts prio = {.kind = WF_QUEUE_PRIORITY, .cmp = cmp_key, .cmp_arg = &cmp_calls};
	CHECK_RC(wf_queue_new(&prio, &q), 0);
	uint64_t seed = 5;
	int next_seq = 0;
	for (int i = 0; i < NP; i++) {
		items[i] = (struct prio_item){(int)(rng_next(&seed) % 9), next_seq++};
		CHECK_RC(wf_queue_put_nowait(q, &items[i]), 0);
		/* Interleave gets, to mix pushes and pops in the heap; an item
		 * put back arrives anew. */
		if (i % 7 == 6) {
			struct prio_item *a;
			CHECK_RC(wf_queue_get_nowait(q, (void **)&a), 0);
			a->seq = next_seq++;
			CHECK_RC(wf_queue_put_nowait(q, a), 0);
		}
	}
	CHECK(cmp_calls > 0);
	struct prio_item *prev = NULL, *cur;
	for (int i = 0; i < NP; i++) {
		CHECK_RC(wf_queue_get_nowait(q, (void **)&cur), 0);
		if (prev != NULL) {
			CHECK(prev->key <= cur->key);
			if (prev->key == cur->key && prev->seq > cur->seq)
				check_fail(__FILE__, __LINE__, "equal keys out of arrival order");
		}
		prev = cur;
	}
	CHECK_RC(wf_queue_get_nowait(q, (void **)&cur), WF_EEMPTY);
	CHECK_RC(wf_queue_free(q), 0);
	return NULL;
}

Test(sync_queue, fifo_lifo_priority_order)
{
	run_weft(1, order_main, NULL);
}

/* ---- waiters: arrival order, hand-off past quitters --------------------- */

struct getter_arg {
	wf_queue *q;
	uint64_t timeout;
	void *item;
};

static void *getter(void *arg)
{
	struct getter_arg *g = arg;
	return (void *)(intptr_t)wf_queue_get(g->q, &g->item, g->timeout);
}

struct putter_arg {
	wf_queue *q;
	uint64_t timeout;
	int value;
};

static void *putter(void *arg)
{
	struct putter_arg *p = arg;
	return (void *)(intptr_t)wf_queue_put(p->q, I2P(p->value), p->timeout);
}

static int join_rc(wf_task *t)
{
	void *res = NULL;
	int rc = wf_join(t, &res);
	return rc != 0 ? rc : P2I(res);
}

/* One worker: waiters queue in spawn order. */
static void *waiters_main(void *arg)
{
	enum { N = 6 };
	wf_queue *q;
	void *item;
	wf_task *ts[N];

	/* Getters: 1 is cancelled, 3 times out; items go to 0, 2, 4, 5. */
	struct getter_arg gs[N];
	CHECK_RC(wf_queue_new(NULL, &q), 0);
	for (int i = 0; i < N; i++) {
		gs[i] = (struct getter_arg){q, i == 3 ? 3 : WF_FOREVER, NULL};
		ts[i] = wf_spawn(getter, &gs[i]);
		CHECK_RC(wf_yield(), 0);
	}
	CHECK_RC(wf_queue_free(q), WF_EBUSY);
	CHECK_RC(wf_cancel(ts[1]), 0);
	CHECK_RC(wf_sleep(15), 0);
	for (int i = 0; i < 4; i++)
		CHECK_RC(wf_queue_put_nowait(q, I2P(100 + i)), 0);
	CHECK_EQ(wf_queue_qsize(q), 0); /* all handed over */
	int want[N] = {100, -1, 101, -1, 102, 103};
	for (int i = 0; i < N; i++) {
		int rc = join_rc(ts[i]);
		CHECK_RC(rc, i == 1 ? WF_ECANCELED : i == 3 ? WF_ETIMEDOUT : 0);
		if (rc == 0)
			CHECK_EQ(P2I(gs[i].item), want[i]);
	}
	CHECK_RC(wf_queue_free(q), 0);

	/* Putters on a full bounded queue: 1 is cancelled, 3 times out;
	 * their items never enter, the others' do, in order. */
	struct putter_arg ps[N];
	wf_queue_opts one = {.maxsize = 1};
	CHECK_RC(wf_queue_new(&one, &q), 0);
	CHECK_RC(wf_queue_put_nowait(q, I2P(-5)), 0);
	for (int i = 0; i < N; i++) {
		ps[i] = (struct putter_arg){q, i == 3 ? 3 : WF_FOREVER, i};
		ts[i] = wf_spawn(putter, &ps[i]);
		CHECK_RC(wf_yield(), 0);
	}
	CHECK_RC(wf_cancel(ts[1]), 0);
	CHECK_RC(wf_sleep(15), 0);
	int expect[] = {-5, 0, 2, 4, 5};
	for (int k = 0; k < 5; k++) {
		CHECK_RC(wf_queue_get(q, &item, WF_FOREVER), 0);
		CHECK_EQ(P2I(item), expect[k]);
		/* The freed slot went to the next putter at once. */
		CHECK_EQ(wf_queue_qsize(q), k < 4 ? 1 : 0);
	}
	for (int i = 0; i < N; i++)
		CHECK_RC(join_rc(ts[i]), i == 1 ? WF_ECANCELED : i == 3 ? WF_ETIMEDOUT : 0);
	CHECK_RC(wf_queue_get_nowait(q, &item), WF_EEMPTY);
	CHECK_RC(wf_queue_free(q), 0);
	return NULL;
}

Test(sync_queue, waiters_in_order_and_items_passed_past_quitters)
{
	run_weft(1, waiters_main, NULL);
}

/* ---- task_done / join ------------------------------------------------- */

struct worker_pool {
	wf_queue *q;
	long sum; /* atomic */
};

static void *pool_worker(void *arg)
{
	struct worker_pool *p = arg;
	void *item;
	for (;;) {
		int rc = wf_queue_get(p->q, &item, WF_FOREVER);
		if (rc == WF_ESHUTDOWN)
			return NULL;
		if (!CHECK_RC(rc, 0))
			return NULL;
		if (P2I(item) % 5 == 0)
			wf_sleep(1);
		__atomic_fetch_add(&p->sum, P2I(item), __ATOMIC_RELAXED);
		CHECK_RC(wf_queue_task_done(p->q), 0);
	}
}

static void *join_main(void *arg)
{
	enum { W = 4, N = 200 };
	struct worker_pool p = {0};
	wf_task *ts[W];
	CHECK_RC(wf_queue_new(NULL, &p.q), 0);
	CHECK_RC(wf_queue_join(p.q, 0), 0); /* nothing outstanding */
	for (int i = 0; i < W; i++)
		ts[i] = wf_spawn(pool_worker, &p);
	for (int i = 1; i <= N; i++)
		CHECK_RC(wf_queue_put(p.q, I2P(i), WF_FOREVER), 0);
	CHECK_RC(wf_queue_join(p.q, WF_FOREVER), 0);
	/* join returned: every item was taken and marked done. */
	CHECK_EQ(p.sum, N * (N + 1) / 2);
	CHECK_EQ(wf_queue_qsize(p.q), 0);
	CHECK_RC(wf_queue_shutdown(p.q, false), 0);
	for (int i = 0; i < W; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	CHECK_RC(wf_queue_free(p.q), 0);
	return NULL;
}

Test(sync_queue, join_returns_when_every_item_is_done)
{
	run_weft(1, join_main, NULL);
	run_weft(4, join_main, NULL);
}

/* ---- shutdown --------------------------------------------------------- */

static int dropped;
static void count_drop(void *item)
{
	dropped += P2I(item);
}

static void *joiner(void *arg)
{
	return (void *)(intptr_t)wf_queue_join(arg, WF_FOREVER);
}

static void *shutdown_main(void *arg)
{
	wf_queue *q;
	void *item;
	wf_queue_opts two = {.maxsize = 2, .drop = count_drop};

	/* Graceful: putters fail at once (waiting ones too), getters drain
	 * what is left, then fail. */
	CHECK_RC(wf_queue_new(&two, &q), 0);
	CHECK_RC(wf_queue_put_nowait(q, I2P(1)), 0);
	CHECK_RC(wf_queue_put_nowait(q, I2P(2)), 0);
	struct putter_arg pa = {q, WF_FOREVER, 3};
	wf_task *pt = wf_spawn(putter, &pa);
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_queue_shutdown(q, false), 0);
	CHECK(wf_queue_is_shutdown(q));
	CHECK_RC(join_rc(pt), WF_ESHUTDOWN);
	CHECK_RC(wf_queue_put_nowait(q, I2P(4)), WF_ESHUTDOWN);
	CHECK_RC(wf_queue_put(q, I2P(4), WF_FOREVER), WF_ESHUTDOWN);
	CHECK_RC(wf_queue_get(q, &item, WF_FOREVER), 0);
	CHECK_EQ(P2I(item), 1);
	CHECK_RC(wf_queue_get_nowait(q, &item), 0);
	CHECK_EQ(P2I(item), 2);
	CHECK_RC(wf_queue_get(q, &item, WF_FOREVER), WF_ESHUTDOWN);
	CHECK_RC(wf_queue_get_nowait(q, &item), WF_ESHUTDOWN);
	/* join waits for the two items taken to be marked done. */
	CHECK_RC(wf_queue_join(q, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_queue_task_done(q), 0);
	CHECK_RC(wf_queue_task_done(q), 0);
	CHECK_RC(wf_queue_join(q, 0), 0);
	CHECK_RC(wf_queue_free(q), 0);

	/* Waiting getters fail once the queue is shut down empty. */
	CHECK_RC(wf_queue_new(NULL, &q), 0);
	struct getter_arg ga[3];
	wf_task *gt[3];
	for (int i = 0; i < 3; i++) {
		ga[i] = (struct getter_arg){q, WF_FOREVER, NULL};
		gt[i] = wf_spawn(getter, &ga[i]);
	}
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_queue_shutdown(q, false), 0);
	for (int i = 0; i < 3; i++)
		CHECK_RC(join_rc(gt[i]), WF_ESHUTDOWN);
	CHECK_RC(wf_queue_free(q), 0);

	/* Immediate: what is left is dropped (to drop), counted as done, and
	 * a waiting join returns. */
	dropped = 0;
	wf_queue_opts unb = {.drop = count_drop};
	CHECK_RC(wf_queue_new(&unb, &q), 0);
	for (int i = 1; i <= 10; i++)
		CHECK_RC(wf_queue_put_nowait(q, I2P(i)), 0);
	CHECK_RC(wf_queue_get_nowait(q, &item), 0); /* taken, never done */
	CHECK_RC(wf_queue_task_done(q), 0);
	wf_task *jt = wf_spawn(joiner, q);
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_queue_shutdown(q, true), 0);
	CHECK_EQ(dropped, 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10);
	CHECK_EQ(wf_queue_qsize(q), 0);
	CHECK_RC(wf_queue_join(q, WF_FOREVER), 0);
	CHECK_RC(wf_queue_get_nowait(q, &item), WF_ESHUTDOWN);
	CHECK_RC(join_rc(jt), 0);
	CHECK_RC(wf_queue_free(q), 0);

	/* free drops what is left. */
	dropped = 0;
	CHECK_RC(wf_queue_new(&unb, &q), 0);
	CHECK_RC(wf_queue_put_nowait(q, I2P(40)), 0);
	CHECK_RC(wf_queue_put_nowait(q, I2P(2)), 0);
	CHECK_RC(wf_queue_free(q), 0);
	CHECK_EQ(dropped, 42);
	return NULL;
}

Test(sync_queue, shutdown_graceful_and_immediate)
{
	run_weft(1, shutdown_main, NULL);
	run_weft(3, shutdown_main, NULL);
}

/* ---- stress: MPMC, nothing lost or taken twice ------------------------ */

#define NPROD 4
#define NCONS 4
#define PER_PROD 1500

/* Producers put the integers of their own range (1 + id*PER_PROD ...),
 * consumers take; both with random deadlines, and a chaos task cancels
 * them at random (every task handles its cancellations and goes on). An
 * item whose put failed is retried, so every item is put exactly once; at
 * the end, after a graceful shutdown, every item must have been taken
 * exactly once. Two of the producers and one consumer are plain threads. */
struct mpmc {
	wf_queue *q;
	unsigned char taken[NPROD * PER_PROD + 1]; /* atomic */
	int dupes;       /* atomic */
	long timeouts;   /* atomic */
	long cancels;    /* atomic */
	wf_task *tasks[NPROD + NCONS];
	size_t ntasks;
	int stop;        /* atomic */
	int started;     /* atomic: producers and consumers that began */
};

struct mpmc_arg {
	struct mpmc *m;
	int id;
};

static uint64_t short_timeout(uint64_t *seed)
{
	uint32_t r = rng_next(seed) % 6;
	return r < 3 ? WF_FOREVER : r - 3;
}

static void note_rc(struct mpmc *m, int rc)
{
	if (rc == WF_ETIMEDOUT) {
		__atomic_fetch_add(&m->timeouts, 1, __ATOMIC_RELAXED);
	} else if (rc == WF_ECANCELED) {
		__atomic_fetch_add(&m->cancels, 1, __ATOMIC_RELAXED);
		wf_uncancel();
	} else {
		CHECK_RC(rc, 0);
	}
}

static void mpmc_produce(struct mpmc_arg *a)
{
	__atomic_fetch_add(&a->m->started, 1, __ATOMIC_RELEASE);
	uint64_t seed = (uint64_t)a->id * 0x9e3779b9u + 1;
	for (int i = 0; i < PER_PROD && !check_any_failed();) {
		int v = 1 + a->id * PER_PROD + i;
		int rc = rng_next(&seed) % 5 == 0 ? wf_queue_put_nowait(a->m->q, I2P(v))
						  : wf_queue_put(a->m->q, I2P(v),
								 short_timeout(&seed));
		if (rc == 0)
			i++;
		else if (rc == WF_EFULL)
			wf_current() != NULL ? (void)wf_yield() : (void)sched_yield();
		else
			note_rc(a->m, rc);
	}
}

static void mpmc_consume(struct mpmc_arg *a)
{
	struct mpmc *m = a->m;
	__atomic_fetch_add(&m->started, 1, __ATOMIC_RELEASE);
	uint64_t seed = (uint64_t)a->id * 7919 + 3;
	for (;;) {
		void *item = NULL;
		int rc = rng_next(&seed) % 5 == 0 ? wf_queue_get_nowait(m->q, &item)
						  : wf_queue_get(m->q, &item, short_timeout(&seed));
		if (rc == WF_ESHUTDOWN)
			return;
		if (rc == WF_EEMPTY) {
			wf_current() != NULL ? (void)wf_yield() : (void)sched_yield();
			continue;
		}
		if (rc != 0) {
			note_rc(m, rc);
			continue;
		}
		int v = P2I(item);
		if (!CHECK(v >= 1 && v <= NPROD * PER_PROD))
			return;
		if (__atomic_fetch_add(&m->taken[v], 1, __ATOMIC_RELAXED) != 0)
			__atomic_fetch_add(&m->dupes, 1, __ATOMIC_RELAXED);
		CHECK_RC(wf_queue_task_done(m->q), 0);
	}
}

static void *producer_task(void *arg)
{
	mpmc_produce(arg);
	return NULL;
}

static void *consumer_task(void *arg)
{
	mpmc_consume(arg);
	return NULL;
}

static void *producer_thread(void *arg)
{
	mpmc_produce(arg);
	return NULL;
}

static void *consumer_thread(void *arg)
{
	mpmc_consume(arg);
	return NULL;
}

static void *mpmc_chaos(void *arg)
{
	struct mpmc *m = arg;
	uint64_t seed = 1234;
	for (unsigned i = 0; !__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE); i++) {
		wf_cancel(m->tasks[rng_next(&seed) % m->ntasks]);
		if (i % 4 == 0)
			wf_sleep(1);
		else
			wf_yield();
	}
	return NULL;
}

static void *mpmc_main(void *arg)
{
	static struct mpmc m;
	memset(&m, 0, sizeof(m));
	wf_queue_opts opts = {.kind = (wf_queue_kind)(uintptr_t)arg, .maxsize = 8,
			      .cmp = cmp_int_items};
	struct mpmc_arg pa[NPROD], ca[NCONS];
	pthread_t pth[2], cth;
	wf_task *prods[NPROD];
	CHECK_RC(wf_queue_new(&opts, &m.q), 0);
	for (int i = 0; i < NCONS; i++) {
		ca[i] = (struct mpmc_arg){&m, i};
		if (i == 0)
			CHECK_EQ(pthread_create(&cth, NULL, consumer_thread, &ca[i]), 0);
		else
			m.tasks[m.ntasks++] = wf_spawn(consumer_task, &ca[i]);
	}
	size_t first_producer = m.ntasks;
	for (int i = 0; i < NPROD; i++) {
		pa[i] = (struct mpmc_arg){&m, i};
		if (i < 2)
			CHECK_EQ(pthread_create(&pth[i], NULL, producer_thread, &pa[i]), 0);
		else
			m.tasks[m.ntasks++] = prods[i] = wf_spawn(producer_task, &pa[i]);
	}
	(void)prods;
	/* A task cancelled before it starts never runs (its items would be
	 * missing): the cancellations begin once every one has begun. */
	while (__atomic_load_n(&m.started, __ATOMIC_ACQUIRE) < NPROD + NCONS)
		wf_sleep(1);
	wf_task *chaos = wf_spawn(mpmc_chaos, &m);
	for (int i = 0; i < 2; i++)
		pthread_join(pth[i], NULL);
	for (size_t i = first_producer; i < m.ntasks; i++)
		while (!wf_task_done(m.tasks[i]))
			wf_sleep(1);
	/* Every item is in: join, then shut down; consumers drain and stop. */
	int rc;
	while ((rc = wf_queue_join(m.q, WF_FOREVER)) == WF_ECANCELED)
		wf_uncancel();
	CHECK_RC(rc, 0);
	CHECK_RC(wf_queue_shutdown(m.q, false), 0);
	for (size_t i = 0; i < first_producer; i++)
		while (!wf_task_done(m.tasks[i]))
			wf_sleep(1);
	pthread_join(cth, NULL);
	__atomic_store_n(&m.stop, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_join(chaos, NULL), 0);
	for (size_t i = 0; i < m.ntasks; i++) {
		rc = wf_join(m.tasks[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	CHECK_EQ(m.dupes, 0);
	for (int v = 1; v <= NPROD * PER_PROD; v++)
		if (!CHECK_EQ(m.taken[v], 1))
			break;
	CHECK(m.timeouts + m.cancels > 0);
	CHECK_EQ(wf_queue_qsize(m.q), 0);
	CHECK_RC(wf_queue_free(m.q), 0);
	return NULL;
}

Test(sync_queue, stress_mpmc_nothing_lost_or_duplicated)
{
	run_weft(2, mpmc_main, (void *)(uintptr_t)WF_QUEUE_FIFO);
	run_weft(4, mpmc_main, (void *)(uintptr_t)WF_QUEUE_LIFO);
	run_weft(8, mpmc_main, (void *)(uintptr_t)WF_QUEUE_PRIORITY);
}

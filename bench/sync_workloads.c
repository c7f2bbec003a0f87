/*
 * The spec's workloads for the sync module: ping_pong (queues of capacity 1
 * between pairs of tasks), queue_mpmc (one bounded queue, 4 producers, 4
 * consumers) and lock_contended (8 tasks on one lock). Each does the same
 * work as the Tokio and Go peers, the way a weft program would write it:
 * where a Go peer closes a channel to end its readers, this one shuts the
 * queue down (the readers drain it, then get WF_ESHUTDOWN).
 *
 * Every workload runs as the root task, and frees what it made even when a
 * spawn fails, after joining what it did spawn.
 */
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"

/* Joins n tasks; the sum of their results (counts), and the last error. */
static uint64_t join_all(wf_task **tasks, size_t n, int *err)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		void *r = NULL;
		int e = wf_join(tasks[i], &r);
		if (e != 0)
			*err = e;
		else
			sum += (uintptr_t)r;
	}
	return sum;
}

/* ------------------------------------------------------------------------
 * ping_pong: 1000 pairs; in each, one task sends an integer on a queue of
 * capacity 1 and the other sends it back on a second one, N/1000 round
 * trips per pair. Check: round trips whose value came back intact.
 * ---------------------------------------------------------------------- */
#define PAIRS 1000

struct pair {
	wf_queue *ping, *pong;
	uint64_t rounds;
};

/* Sends back whatever comes, until the ping queue is shut down. */
static void *pong_task(void *arg)
{
	struct pair *p = arg;
	void *v;
	while (wf_queue_get(p->ping, &v, WF_FOREVER) == 0)
		if (wf_queue_put(p->pong, v, WF_FOREVER) != 0)
			break;
	return NULL;
}

static void *ping_task(void *arg)
{
	struct pair *p = arg;
	uintptr_t ok = 0;
	for (uintptr_t r = 0; r < p->rounds; r++) {
		void *v;
		if (wf_queue_put(p->ping, (void *)r, WF_FOREVER) != 0 ||
		    wf_queue_get(p->pong, &v, WF_FOREVER) != 0)
			break;
		ok += (uintptr_t)v == r;
	}
	wf_queue_shutdown(p->ping, false); /* ends pong_task */
	return (void *)ok;
}

static int run_ping_pong(wf_bench_run *run)
{
	struct pair *pairs = calloc(PAIRS, sizeof(*pairs));
	wf_task **pings = calloc(PAIRS, sizeof(*pings));
	wf_task **pongs = calloc(PAIRS, sizeof(*pongs));
	int err = pairs && pings && pongs ? 0 : WF_ENOMEM;
	size_t made = 0, spawned = 0;
	wf_queue_opts one = {.kind = WF_QUEUE_FIFO, .maxsize = 1};
	for (; err == 0 && made < PAIRS; made++) {
		pairs[made].rounds = wf_bench_share(run->n, PAIRS, made);
		if ((err = wf_queue_new(&one, &pairs[made].ping)) != 0)
			break;
		if ((err = wf_queue_new(&one, &pairs[made].pong)) != 0) {
			wf_queue_free(pairs[made].ping);
			break;
		}
	}
	wf_bench_clock_start(run); /* queues made: the exchanges are timed */
	for (; err == 0 && spawned < made; spawned++) {
		pongs[spawned] = wf_spawn(pong_task, &pairs[spawned]);
		pings[spawned] = pongs[spawned] ? wf_spawn(ping_task, &pairs[spawned]) : NULL;
		if (pings[spawned] == NULL) {
			if (pongs[spawned] != NULL) {
				wf_queue_shutdown(pairs[spawned].ping, false);
				wf_join(pongs[spawned], NULL);
			}
			err = WF_ENOMEM;
			break;
		}
	}
	int jerr = 0;
	run->check = join_all(pings, spawned, &jerr);
	join_all(pongs, spawned, &jerr);
	wf_bench_clock_stop(run);
	for (size_t i = 0; i < made; i++) {
		wf_queue_free(pairs[i].ping);
		wf_queue_free(pairs[i].pong);
	}
	free(pairs);
	free(pings);
	free(pongs);
	return err != 0 ? err : jerr;
}

WF_BENCH_DEFINE(ping_pong, .name = "ping_pong", .default_n = 1000000, .fn = run_ping_pong)

/* ------------------------------------------------------------------------
 * queue_mpmc: 4 producers and 4 consumers on one queue of capacity 1024;
 * each producer puts 1..N/4; consumers add up what they take. Check:
 * 4 * (N/4)(N/4+1)/2.
 * ---------------------------------------------------------------------- */
#define MPMC_SIDE 4

struct mpmc {
	wf_queue *q;
	uint64_t per;
};

static void *mpmc_producer(void *arg)
{
	struct mpmc *m = arg;
	for (uintptr_t v = 1; v <= m->per; v++)
		if (wf_queue_put(m->q, (void *)v, WF_FOREVER) != 0)
			break;
	return NULL;
}

static void *mpmc_consumer(void *arg)
{
	struct mpmc *m = arg;
	uintptr_t sum = 0;
	void *v;
	while (wf_queue_get(m->q, &v, WF_FOREVER) == 0)
		sum += (uintptr_t)v;
	return (void *)sum;
}

static uint64_t mpmc_expected(uint64_t n)
{
	uint64_t per = n / MPMC_SIDE;
	return MPMC_SIDE * (per * (per + 1) / 2);
}

static uint64_t mpmc_ops(uint64_t n)
{
	return n / MPMC_SIDE * MPMC_SIDE;
}

static int run_queue_mpmc(wf_bench_run *run)
{
	struct mpmc m = {.per = run->n / MPMC_SIDE};
	wf_queue_opts opts = {.kind = WF_QUEUE_FIFO, .maxsize = 1024};
	int err = wf_queue_new(&opts, &m.q);
	if (err != 0)
		return err;
	wf_bench_clock_start(run);
	wf_task *cons[MPMC_SIDE], *prods[MPMC_SIDE];
	size_t nc = 0, np = 0;
	for (; nc < MPMC_SIDE; nc++)
		if ((cons[nc] = wf_spawn(mpmc_consumer, &m)) == NULL)
			break;
	for (; nc == MPMC_SIDE && np < MPMC_SIDE; np++)
		if ((prods[np] = wf_spawn(mpmc_producer, &m)) == NULL)
			break;
	if (np < MPMC_SIDE)
		err = WF_ENOMEM;
	join_all(prods, np, &err);
	/* Every item is in: the consumers drain the queue, then stop. */
	wf_queue_shutdown(m.q, false);
	run->check = join_all(cons, nc, &err);
	wf_bench_clock_stop(run);
	wf_queue_free(m.q);
	return err;
}

WF_BENCH_DEFINE(queue_mpmc, .name = "queue_mpmc", .default_n = 1000000, .fn = run_queue_mpmc,
		.expected = mpmc_expected, .ops = mpmc_ops)

/* ------------------------------------------------------------------------
 * lock_contended: 8 tasks each take the lock, increment a plain counter,
 * release, N/8 times (shares adding up to N). Check: the counter, N.
 * ---------------------------------------------------------------------- */
#define LOCK_TASKS 8

struct contended {
	wf_lock *lock;
	uint64_t counter; /* plain: guarded by lock */
};

struct contender {
	struct contended *c;
	uint64_t k;
};

static void *lock_task(void *arg)
{
	struct contender *t = arg;
	for (uint64_t j = 0; j < t->k; j++) {
		if (wf_lock_acquire(t->c->lock, WF_FOREVER) != 0)
			return wf_fail(WF_ECANCELED, "lock_contended: acquire failed");
		t->c->counter++;
		wf_lock_release(t->c->lock);
	}
	return NULL;
}

static int run_lock_contended(wf_bench_run *run)
{
	struct contended c = {0};
	struct contender ts[LOCK_TASKS];
	wf_task *tasks[LOCK_TASKS];
	int err = wf_lock_new(&c.lock);
	if (err != 0)
		return err;
	wf_bench_clock_start(run);
	size_t n = 0;
	for (; n < LOCK_TASKS; n++) {
		ts[n] = (struct contender){&c, wf_bench_share(run->n, LOCK_TASKS, n)};
		if ((tasks[n] = wf_spawn(lock_task, &ts[n])) == NULL) {
			err = WF_ENOMEM;
			break;
		}
	}
	join_all(tasks, n, &err);
	wf_bench_clock_stop(run);
	run->check = c.counter;
	wf_lock_free(c.lock);
	return err;
}

WF_BENCH_DEFINE(lock_contended, .name = "lock_contended", .default_n = 1000000,
		.fn = run_lock_contended)

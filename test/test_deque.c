/*
 * The Chase-Lev deque (runtime/deque.h) on its own, with plain threads.
 *
 * Linearizability as a work-stealing deque needs: every pushed item is
 * taken exactly once (by the owner or by one thief), nothing is invented,
 * the owner's end is LIFO and the thieves' end FIFO. The concurrent tests
 * count, per item, how many times it came out, under an owner that mixes
 * bursts of pushes with takes (so the array grows while thieves read it,
 * and the owner races thieves for the last item) and 1..7 thieves.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "deque.h"
#include "rt_check.h"

/* Items are index + 2: 0 is WF__DQ_EMPTY and 1 is WF__DQ_ABORT. */
#define ITEM(i) ((void *)(uintptr_t)((i) + 2))
#define INDEX(p) ((size_t)(uintptr_t)(p) - 2)

Test(deque, sequential_lifo_fifo_and_growth)
{
	wf__deque d;
	cr_assert_eq(wf__deque_init(&d, 1), 0);
	cr_assert_eq(wf__deque_take(&d), WF__DQ_EMPTY);
	cr_assert_eq(wf__deque_steal(&d), WF__DQ_EMPTY);
	cr_assert_eq(wf__deque_size(&d), 0);

	/* 2 slots to start with: 100 pushes grow it several times. */
	for (size_t i = 0; i < 100; i++)
		cr_assert(wf__deque_push(&d, ITEM(i)));
	cr_assert_eq(wf__deque_size(&d), 100);
	/* Thieves take the oldest, the owner the newest. */
	cr_assert_eq(wf__deque_steal(&d), ITEM(0));
	cr_assert_eq(wf__deque_steal(&d), ITEM(1));
	cr_assert_eq(wf__deque_take(&d), ITEM(99));
	cr_assert_eq(wf__deque_take(&d), ITEM(98));
	cr_assert_eq(wf__deque_size(&d), 96);
	for (size_t i = 97; i >= 50; i--)
		cr_assert_eq(wf__deque_take(&d), ITEM(i));
	for (size_t i = 2; i < 50; i++)
		cr_assert_eq(wf__deque_steal(&d), ITEM(i));
	cr_assert_eq(wf__deque_take(&d), WF__DQ_EMPTY);
	cr_assert_eq(wf__deque_steal(&d), WF__DQ_EMPTY);
	cr_assert_eq(wf__deque_size(&d), 0);

	/* Reused after emptying, across the wrap of the ring. */
	for (size_t round = 0; round < 1000; round++) {
		cr_assert(wf__deque_push(&d, ITEM(round)));
		cr_assert(wf__deque_push(&d, ITEM(round + 1)));
		cr_assert_eq(wf__deque_steal(&d), ITEM(round));
		cr_assert_eq(wf__deque_take(&d), ITEM(round + 1));
		cr_assert_eq(wf__deque_take(&d), WF__DQ_EMPTY);
	}
	wf__deque_destroy(&d);
}

/* ---- concurrent ------------------------------------------------------- */

typedef struct race {
	wf__deque dq;
	size_t n;           /* items pushed in this round */
	uint8_t *counts;    /* atomic: times each item came out */
	int done;           /* atomic: the owner has emptied the deque */
	size_t stolen;      /* atomic */
	size_t invalid;     /* atomic: items that were never pushed */
	unsigned running;   /* atomic: thieves in their loop */
	pthread_barrier_t start;
} race;

static void count_item(race *r, void *x)
{
	size_t i = INDEX(x);
	if (x == WF__DQ_ABORT || i >= r->n) {
		__atomic_add_fetch(&r->invalid, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_add_fetch(&r->counts[i], 1, __ATOMIC_RELAXED);
}

static void *thief(void *arg)
{
	race *r = arg;
	pthread_barrier_wait(&r->start);
	__atomic_add_fetch(&r->running, 1, __ATOMIC_RELEASE);
	size_t n = 0;
	unsigned idle = 0;
	for (;;) {
		void *x = wf__deque_steal(&r->dq);
		if (x == WF__DQ_ABORT)
			continue;
		if (x != WF__DQ_EMPTY) {
			count_item(r, x);
			n++;
			idle = 0;
			continue;
		}
		/* Empty: only the owner's done flag ends the round (the owner
		 * may push again). Give the owner the CPU now and then: the
		 * machine may have fewer cores than threads. */
		if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE))
			break;
		if (++idle % 16 == 0)
			sched_yield();
	}
	__atomic_add_fetch(&r->stolen, n, __ATOMIC_RELAXED);
	return NULL;
}

/* The owner: bursts of pushes, each followed by some takes, then takes
 * until empty. last_item_only: push one, take one, which makes every take
 * race the thieves for the last item. */
static size_t owner_run(race *r, uint64_t *seed, bool last_item_only)
{
	size_t pushed = 0, taken = 0;
	while (pushed < r->n) {
		size_t burst = last_item_only ? 1 : 1 + rng_next(seed) % 64;
		if (burst > r->n - pushed)
			burst = r->n - pushed;
		for (size_t i = 0; i < burst; i++)
			cr_assert(wf__deque_push(&r->dq, ITEM(pushed++)));
		/* Leave the thieves a window on a non-empty deque. */
		spin(rng_next(seed) % 64);
		size_t takes = last_item_only ? 1 : rng_next(seed) % (burst + 1);
		for (size_t i = 0; i < takes; i++) {
			void *x = wf__deque_take(&r->dq);
			if (x == WF__DQ_EMPTY)
				break;
			count_item(r, x);
			taken++;
		}
	}
	void *x;
	while ((x = wf__deque_take(&r->dq)) != WF__DQ_EMPTY) {
		count_item(r, x);
		taken++;
	}
	return taken;
}

static void run_rounds(unsigned thieves, unsigned rounds, size_t n, bool last_item_only)
{
	race r;
	r.n = n;
	r.counts = malloc(n);
	cr_assert_not_null(r.counts);
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ thieves;
	pthread_t th[8];
	for (unsigned round = 0; round < rounds; round++) {
		/* A 2-slot array: the owner grows it while thieves read it. */
		cr_assert_eq(wf__deque_init(&r.dq, 1), 0);
		memset(r.counts, 0, n);
		r.done = 0;
		r.stolen = 0;
		r.invalid = 0;
		r.running = 0;
		pthread_barrier_init(&r.start, NULL, thieves + 1);
		for (unsigned i = 0; i < thieves; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, thief, &r), 0);
		pthread_barrier_wait(&r.start);
		/* Start once every thief is stealing: with fewer cores than
		 * threads, a late thief would see an empty round. */
		while (__atomic_load_n(&r.running, __ATOMIC_ACQUIRE) < thieves)
			sched_yield();
		size_t taken = owner_run(&r, &seed, last_item_only);
		__atomic_store_n(&r.done, 1, __ATOMIC_RELEASE);
		for (unsigned i = 0; i < thieves; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&r.start);

		cr_assert_eq(r.invalid, 0, "%zu invented items (thieves %u, round %u)", r.invalid,
			     thieves, round);
		cr_assert_eq(taken + r.stolen, n, "taken %zu + stolen %zu != pushed %zu", taken,
			     r.stolen, n);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(r.counts[i], 1,
				     "item %zu came out %u times (thieves %u, round %u)", i,
				     r.counts[i], thieves, round);
		wf__deque_destroy(&r.dq);
	}
	free(r.counts);
}

/* 2..8 threads: the owner and 1..7 thieves. */
Test(deque, every_item_taken_once_under_concurrent_steal)
{
	for (unsigned thieves = 1; thieves <= 7; thieves++)
		run_rounds(thieves, 10, 100000, false);
}

Test(deque, owner_races_thieves_for_the_last_item)
{
	for (unsigned thieves = 1; thieves <= 7; thieves += 2)
		run_rounds(thieves, 6, 50000, true);
}

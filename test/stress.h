/*
 * The stress harness the sync tests share: many tasks and two plain threads
 * hammer one object with random timeouts while a chaos task cancels random
 * tasks, and every attempt is accounted for (entered, or gave up with
 * WF_ETIMEDOUT / WF_ECANCELED; nothing else).
 *
 * A model says how to enter the object, what must hold inside it and how
 * to leave (stress_ops); the harness runs the attempts, the random work
 * inside (a sleep, a yield or a spin, so that waiters time out and
 * cancellations land at every point), the chaos and the bookkeeping.
 * Include after rt_check.h; every helper is static.
 */
#ifndef WEFT_TEST_STRESS_H
#define WEFT_TEST_STRESS_H

#include <pthread.h>
#include <stdint.h>

#include "rt_check.h"
#include "weft.h"

#define STRESS_MAX_TASKS 32
#define STRESS_THREADS 2

typedef struct stress stress;

typedef struct stress_ops {
	/* One attempt, told by r what to do: 0 (entered), WF_ETIMEDOUT or
	 * WF_ECANCELED. */
	int (*enter)(stress *st, uint32_t r, uint64_t timeout_ms);
	/* Inside: checks the object's invariant (CHECK / check_fail). */
	void (*inside)(stress *st, uint32_t r);
	/* Inside, after the work: undoes what inside did. */
	void (*before_leave)(stress *st, uint32_t r);
	/* Leaves: must return 0. */
	int (*leave)(stress *st, uint32_t r);
} stress_ops;

struct stress {
	const stress_ops *ops;
	void *model;       /* the test's own state */
	unsigned iters;    /* attempts per task or thread */
	size_t ntasks;     /* tasks (plus STRESS_THREADS plain threads) */
	/* The work inside: a 1 ms sleep once in sleep_mod attempts, a yield
	 * once in yield_mod (tasks only), else a spin below spin_max. */
	unsigned sleep_mod, yield_mod, spin_max;
	/* Counted by the harness (atomic). */
	long tries, entered, gave_up;
	int stop;
	wf_task *tasks[STRESS_MAX_TASKS];
};

typedef struct stress_worker {
	stress *st;
	uint64_t seed;
} stress_worker;

/* Half the time no timeout, else 0 to 3 ms. */
__attribute__((unused)) static uint64_t stress_timeout(uint32_t r)
{
	return (r >> 8) % 2 ? WF_FOREVER : (r >> 9) % 4;
}

__attribute__((unused)) static void stress_attempts(stress_worker *wk)
{
	stress *st = wk->st;
	const stress_ops *ops = st->ops;
	for (unsigned i = 0; i < st->iters && !check_any_failed(); i++) {
		uint32_t r = rng_next(&wk->seed);
		__atomic_fetch_add(&st->tries, 1, __ATOMIC_RELAXED);
		int rc = ops->enter(st, r, stress_timeout(r));
		if (rc == WF_ETIMEDOUT || rc == WF_ECANCELED) {
			if (rc == WF_ECANCELED)
				wf_uncancel();
			__atomic_fetch_add(&st->gave_up, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (!CHECK_RC(rc, 0))
			return;
		__atomic_fetch_add(&st->entered, 1, __ATOMIC_RELAXED);
		if (ops->inside != NULL)
			ops->inside(st, r);
		uint32_t w = rng_next(&wk->seed);
		rc = 0;
		if (w % st->sleep_mod == 0)
			rc = wf_sleep(1);
		else if (w % st->yield_mod == 0 && wf_current() != NULL)
			rc = wf_yield();
		else
			spin(w % st->spin_max);
		if (rc == WF_ECANCELED) /* handled: the hold goes on */
			wf_uncancel();
		if (ops->before_leave != NULL)
			ops->before_leave(st, r);
		CHECK_RC(ops->leave(st, r), 0);
	}
}

__attribute__((unused)) static void *stress_task(void *arg)
{
	stress_attempts(arg);
	return NULL;
}

__attribute__((unused)) static void *stress_thread(void *arg)
{
	stress_attempts(arg);
	return NULL;
}

/* Cancels random tasks of the model until told to stop. */
__attribute__((unused)) static void *stress_chaos(void *arg)
{
	stress *st = arg;
	uint64_t seed = 0x9e3779b97f4a7c15u;
	for (unsigned i = 0; !__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE); i++) {
		wf_cancel(st->tasks[rng_next(&seed) % st->ntasks]);
		if (i % 8 == 0)
			wf_sleep(1);
		else
			wf_yield();
	}
	return NULL;
}

/* From a task: runs the whole stress and checks the harness's own
 * accounting; the caller then checks its model. */
__attribute__((unused)) static void stress_run(stress *st)
{
	stress_worker wk[STRESS_MAX_TASKS + STRESS_THREADS];
	pthread_t threads[STRESS_THREADS];
	if (!CHECK(st->ntasks > 0 && st->ntasks <= STRESS_MAX_TASKS))
		return;
	for (size_t i = 0; i < st->ntasks; i++) {
		wk[i] = (stress_worker){st, 0x1234567u + i * 7919};
		st->tasks[i] = wf_spawn(stress_task, &wk[i]);
		CHECK(st->tasks[i] != NULL);
	}
	for (size_t i = 0; i < STRESS_THREADS; i++) {
		wk[st->ntasks + i] = (stress_worker){st, 0xabcdefu + i};
		CHECK_EQ(pthread_create(&threads[i], NULL, stress_thread, &wk[st->ntasks + i]), 0);
	}
	wf_sleep(1); /* a task cancelled before it starts never runs */
	wf_task *chaos = wf_spawn(stress_chaos, st);
	for (size_t i = 0; i < st->ntasks; i++)
		while (!wf_task_done(st->tasks[i]))
			wf_sleep(1);
	__atomic_store_n(&st->stop, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_join(chaos, NULL), 0);
	for (size_t i = 0; i < st->ntasks; i++) {
		/* A cancellation requested after its last suspension is the
		 * task's outcome. */
		int rc = wf_join(st->tasks[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	for (size_t i = 0; i < STRESS_THREADS; i++)
		pthread_join(threads[i], NULL);
	CHECK(st->tries > (long)st->iters * STRESS_THREADS);
	CHECK_EQ(st->entered + st->gave_up, st->tries);
	CHECK(st->entered > 0);
}

#endif

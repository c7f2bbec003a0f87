/*
 * wf_sem: error codes, bounded release, FIFO service of waiters, a permit
 * handed past a waiter that timed out or was cancelled, and a stress model
 * (many workers, plain threads, random timeouts and cancellations) that
 * checks that at most `value` holders are ever inside and that every
 * permit comes back.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt_check.h"
#include "weft.h"

static void *bad_input_main(void *arg)
{
	wf_sem *s;
	CHECK_RC(wf_sem_new(1, NULL), WF_EINVAL);
	CHECK_RC(wf_sem_new(WF_SEM_VALUE_MAX + 1u, &s), WF_EINVAL);
	CHECK_RC(wf_sem_new_bounded(1, NULL), WF_EINVAL);
	CHECK_RC(wf_sem_acquire(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_sem_try_acquire(NULL), WF_EINVAL);
	CHECK_RC(wf_sem_release(NULL), WF_EINVAL);
	CHECK_RC(wf_sem_free(NULL), WF_EINVAL);
	CHECK_EQ(wf_sem_value(NULL), 0);

	CHECK_RC(wf_sem_new(2, &s), 0);
	CHECK_EQ(wf_sem_value(s), 2);
	CHECK_RC(wf_sem_acquire(s, WF_FOREVER), 0);
	CHECK_RC(wf_sem_try_acquire(s), 0);
	CHECK_EQ(wf_sem_value(s), 0);
	CHECK_RC(wf_sem_try_acquire(s), WF_EAGAIN);
	CHECK_RC(wf_sem_acquire(s, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_sem_acquire(s, 2), WF_ETIMEDOUT);
	/* An unbounded semaphore may be released beyond its start. */
	for (int i = 0; i < 5; i++)
		CHECK_RC(wf_sem_release(s), 0);
	CHECK_EQ(wf_sem_value(s), 5);
	CHECK_RC(wf_sem_free(s), 0);

	CHECK_RC(wf_sem_new(WF_SEM_VALUE_MAX, &s), 0);
	CHECK_RC(wf_sem_release(s), WF_EOVERFLOW);
	CHECK_EQ(wf_sem_value(s), WF_SEM_VALUE_MAX);
	CHECK_RC(wf_sem_free(s), 0);

	/* Bounded: never more than the start value. */
	CHECK_RC(wf_sem_new_bounded(2, &s), 0);
	CHECK_RC(wf_sem_release(s), WF_EOVERFLOW);
	CHECK_RC(wf_sem_acquire(s, WF_FOREVER), 0);
	CHECK_RC(wf_sem_release(s), 0);
	CHECK_RC(wf_sem_release(s), WF_EOVERFLOW);
	CHECK_EQ(wf_sem_value(s), 2);
	CHECK_RC(wf_sem_free(s), 0);

	CHECK_RC(wf_sem_new_bounded(0, &s), 0);
	CHECK_RC(wf_sem_release(s), WF_EOVERFLOW);
	CHECK_RC(wf_sem_try_acquire(s), WF_EAGAIN);
	CHECK_RC(wf_sem_free(s), 0);
	return NULL;
}

Test(sync_sem, bad_input_and_basics)
{
	run_weft(2, bad_input_main, NULL);
}

/* ---- FIFO, hand-off past quitters --------------------------------------- */

struct order {
	wf_sem *s;
	int seq[16];
	int n; /* atomic */
};

struct order_arg {
	struct order *o;
	int id;
	uint64_t timeout;
};

static void *order_waiter(void *arg)
{
	struct order_arg *a = arg;
	int rc = wf_sem_acquire(a->o->s, a->timeout);
	if (rc == 0)
		a->o->seq[__atomic_fetch_add(&a->o->n, 1, __ATOMIC_RELAXED)] = a->id;
	return (void *)(intptr_t)rc;
}

/* One worker: waiters queue in spawn order. Waiter 2 is cancelled and
 * waiter 5 times out while queued; the 6 permits released one by one (a
 * permit is never stored while somebody waits) go to the other waiters in
 * order, and a task arriving meanwhile does not jump the queue. */
static void *order_main(void *arg)
{
	enum { N = 8 };
	struct order o = {.n = 0};
	struct order_arg args[N];
	wf_task *ts[N];
	CHECK_RC(wf_sem_new_bounded(0, &o.s), 0);
	CHECK_RC(wf_sem_free(o.s), 0);
	CHECK_RC(wf_sem_new(0, &o.s), 0);
	for (int i = 0; i < N; i++) {
		args[i] = (struct order_arg){&o, i, i == 5 ? 3 : WF_FOREVER};
		ts[i] = wf_spawn(order_waiter, &args[i]);
		CHECK_RC(wf_yield(), 0);
	}
	CHECK_RC(wf_sem_free(o.s), WF_EBUSY);
	CHECK_RC(wf_cancel(ts[2]), 0);
	CHECK_RC(wf_sleep(15), 0);
	/* Each release wakes one waiter, which records itself when main
	 * yields. */
	for (int i = 0; i < 6; i++) {
		CHECK_RC(wf_sem_release(o.s), 0);
		CHECK_EQ(wf_sem_value(o.s), 0);
		if (i < 5)
			CHECK_RC(wf_sem_try_acquire(o.s), WF_EAGAIN);
		CHECK_RC(wf_yield(), 0);
	}
	for (int i = 0; i < N; i++) {
		void *res;
		int rc = wf_join(ts[i], &res);
		CHECK_RC(rc, i == 2 ? WF_ECANCELED : 0);
		if (i != 2)
			CHECK_RC((int)(intptr_t)res, i == 5 ? WF_ETIMEDOUT : 0);
	}
	int want[] = {0, 1, 3, 4, 6, 7};
	CHECK_EQ(o.n, 6);
	for (int i = 0; i < 6 && i < o.n; i++)
		CHECK_EQ(o.seq[i], want[i]);
	CHECK_EQ(wf_sem_value(o.s), 0);
	CHECK_RC(wf_sem_free(o.s), 0);
	return NULL;
}

Test(sync_sem, fifo_and_permits_passed_past_quitters)
{
	run_weft(1, order_main, NULL);
}

/* ---- stress: permits conserved ------------------------------------------ */

#define PERMITS 3

struct model {
	wf_sem *s;
	int inside;    /* atomic */
	int max_inside; /* atomic */
	long got;      /* atomic */
	long gave_up;  /* atomic */
	long tries;    /* atomic */
	int stop;      /* atomic */
	wf_task *tasks[16];
	size_t ntasks;
};

static void note_max(int *max, int v)
{
	int m = __atomic_load_n(max, __ATOMIC_RELAXED);
	while (v > m && !__atomic_compare_exchange_n(max, &m, v, true, __ATOMIC_RELAXED,
						     __ATOMIC_RELAXED))
		;
}

static void model_run(struct model *m, uint64_t seed, int iters)
{
	for (int i = 0; i < iters && !check_any_failed(); i++) {
		__atomic_fetch_add(&m->tries, 1, __ATOMIC_RELAXED);
		uint32_t r = rng_next(&seed);
		uint64_t t = r % 2 ? WF_FOREVER : r % 3;
		int rc = wf_sem_acquire(m->s, t);
		if (rc == WF_ECANCELED || rc == WF_ETIMEDOUT) {
			if (rc == WF_ECANCELED)
				wf_uncancel();
			__atomic_fetch_add(&m->gave_up, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (!CHECK_RC(rc, 0))
			return;
		__atomic_fetch_add(&m->got, 1, __ATOMIC_RELAXED);
		int now = __atomic_add_fetch(&m->inside, 1, __ATOMIC_RELAXED);
		note_max(&m->max_inside, now);
		if (now > PERMITS)
			check_fail(__FILE__, __LINE__, "more holders than permits");
		rc = 0;
		if (r % 37 == 0)
			rc = wf_sleep(1);
		else if (r % 5 == 0 && wf_current() != NULL)
			rc = wf_yield();
		else
			spin(r % 128);
		if (rc == WF_ECANCELED)
			wf_uncancel();
		__atomic_fetch_sub(&m->inside, 1, __ATOMIC_RELAXED);
		CHECK_RC(wf_sem_release(m->s), 0);
	}
}

static void *model_task(void *arg)
{
	model_run(arg, (uintptr_t)wf_current() | 1, 400);
	return NULL;
}

static void *model_thread(void *arg)
{
	model_run(arg, (uintptr_t)&arg | 1, 400);
	return NULL;
}

static void *chaos_task(void *arg)
{
	struct model *m = arg;
	uint64_t seed = 99;
	for (unsigned i = 0; !__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE); i++) {
		wf_cancel(m->tasks[rng_next(&seed) % m->ntasks]);
		if (i % 8 == 0)
			wf_sleep(1);
		else
			wf_yield();
	}
	return NULL;
}

static void *model_main(void *arg)
{
	struct model m = {.ntasks = 12};
	pthread_t th[2];
	/* Bounded, so that an extra release would be caught. */
	CHECK_RC(wf_sem_new_bounded(PERMITS, &m.s), 0);
	for (size_t i = 0; i < m.ntasks; i++)
		m.tasks[i] = wf_spawn(model_task, &m);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, model_thread, &m), 0);
	wf_sleep(1);
	wf_task *chaos = wf_spawn(chaos_task, &m);
	for (size_t i = 0; i < m.ntasks; i++)
		while (!wf_task_done(m.tasks[i]))
			wf_sleep(1);
	__atomic_store_n(&m.stop, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_join(chaos, NULL), 0);
	for (size_t i = 0; i < m.ntasks; i++) {
		int rc = wf_join(m.tasks[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(m.got + m.gave_up, m.tries);
	CHECK(m.got > 0);
	CHECK(m.max_inside <= PERMITS);
	/* Every permit came back: exactly PERMITS can be taken now. */
	CHECK_EQ(wf_sem_value(m.s), PERMITS);
	for (int i = 0; i < PERMITS; i++)
		CHECK_RC(wf_sem_try_acquire(m.s), 0);
	CHECK_RC(wf_sem_try_acquire(m.s), WF_EAGAIN);
	for (int i = 0; i < PERMITS; i++)
		CHECK_RC(wf_sem_release(m.s), 0);
	CHECK_RC(wf_sem_free(m.s), 0);
	return NULL;
}

Test(sync_sem, stress_permits_conserved_with_timeouts_and_cancels)
{
	run_weft(2, model_main, NULL);
	run_weft(4, model_main, NULL);
	run_weft(8, model_main, NULL);
}

/* From a plain thread: permits counted, the bound enforced, bad input. */
Test(sync_sem, plain_thread_and_bad_input)
{
	wf_sem *s = NULL;
	cr_assert_eq(wf_sem_new_bounded(1, &s), 0);
	cr_assert_eq(wf_sem_release(s), WF_EOVERFLOW);
	cr_assert_eq(wf_sem_acquire(s, 0), 0);
	cr_assert_eq(wf_sem_acquire(s, 0), WF_ETIMEDOUT);
	cr_assert_eq(wf_sem_release(s), 0);
	cr_assert_eq(wf_sem_acquire(NULL, 0), WF_EINVAL);
	cr_assert_eq(wf_sem_new(1, NULL), WF_EINVAL);
	cr_assert_eq(wf_sem_free(s), 0);
}

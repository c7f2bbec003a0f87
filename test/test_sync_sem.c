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
#include "stress.h"
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
	/* Until waiter 5 has timed out: a fixed sleep may end first on a
	 * loaded machine, and then waiter 5 takes a permit meant for
	 * another, which then waits for ever. */
	uint64_t limit = mono_ns() + 20000000000ull;
	do
		CHECK_RC(wf_sleep(5), 0);
	while (!wf_task_done(ts[5]) && mono_ns() < limit);
	CHECK(wf_task_done(ts[5]));
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
	int inside;     /* atomic */
	int max_inside; /* atomic */
};

static void note_max(int *max, int v)
{
	int m = __atomic_load_n(max, __ATOMIC_RELAXED);
	while (v > m && !__atomic_compare_exchange_n(max, &m, v, true, __ATOMIC_RELAXED,
						     __ATOMIC_RELAXED))
		;
}

static int sem_enter(stress *st, uint32_t r, uint64_t timeout_ms)
{
	struct model *m = st->model;
	return wf_sem_acquire(m->s, timeout_ms);
}

static void sem_inside(stress *st, uint32_t r)
{
	struct model *m = st->model;
	int now = __atomic_add_fetch(&m->inside, 1, __ATOMIC_RELAXED);
	note_max(&m->max_inside, now);
	if (now > PERMITS)
		check_fail(__FILE__, __LINE__, "more holders than permits");
}

static void sem_before_leave(stress *st, uint32_t r)
{
	struct model *m = st->model;
	__atomic_fetch_sub(&m->inside, 1, __ATOMIC_RELAXED);
}

static int sem_leave(stress *st, uint32_t r)
{
	struct model *m = st->model;
	return wf_sem_release(m->s);
}

static const stress_ops sem_ops = {sem_enter, sem_inside, sem_before_leave, sem_leave};

static void *model_main(void *arg)
{
	struct model m = {0};
	stress st = {.ops = &sem_ops, .model = &m, .iters = 400, .ntasks = 12,
		     .sleep_mod = 37, .yield_mod = 5, .spin_max = 128};
	/* Bounded, so that an extra release would be caught. */
	CHECK_RC(wf_sem_new_bounded(PERMITS, &m.s), 0);
	stress_run(&st);
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

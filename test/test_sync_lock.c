/*
 * wf_lock: error codes, FIFO service of waiters, hand-off past a waiter
 * that timed out or was cancelled, fairness against running tasks, and a
 * stress model (many workers, random timeouts and cancellations, plain
 * threads mixed in) that checks mutual exclusion and that every successful
 * acquisition is counted exactly once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt_check.h"
#include "stress.h"
#include "weft.h"

/* ---- error codes -------------------------------------------------------- */

static void *bad_input_main(void *arg)
{
	wf_lock *l = NULL;
	CHECK_RC(wf_lock_new(NULL), WF_EINVAL);
	CHECK_RC(wf_lock_acquire(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_lock_try_acquire(NULL), WF_EINVAL);
	CHECK_RC(wf_lock_release(NULL), WF_EINVAL);
	CHECK_RC(wf_lock_free(NULL), WF_EINVAL);
	CHECK(!wf_lock_locked(NULL));

	CHECK_RC(wf_lock_new(&l), 0);
	CHECK(!wf_lock_locked(l));
	CHECK_RC(wf_lock_release(l), WF_EOVERFLOW);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	CHECK(wf_lock_locked(l));
	CHECK_RC(wf_lock_try_acquire(l), WF_EBUSY);
	CHECK_RC(wf_lock_acquire(l, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_lock_acquire(l, 1), WF_ETIMEDOUT);
	CHECK_RC(wf_lock_release(l), 0);
	CHECK_RC(wf_lock_release(l), WF_EOVERFLOW);
	CHECK_RC(wf_lock_try_acquire(l), 0);
	CHECK_RC(wf_lock_release(l), 0);
	CHECK_RC(wf_lock_free(l), 0);
	return NULL;
}

Test(sync_lock, bad_input_and_basic_codes)
{
	run_weft(2, bad_input_main, NULL);
}

/* From a plain thread, with no runtime at all: blocking calls block. */
Test(sync_lock, plain_thread_without_runtime)
{
	wf_lock *l;
	cr_assert_eq(wf_lock_new(&l), 0);
	cr_assert_eq(wf_lock_acquire(l, WF_FOREVER), 0);
	cr_assert_eq(wf_lock_acquire(l, 2), WF_ETIMEDOUT);
	cr_assert_eq(wf_lock_release(l), 0);
	cr_assert_eq(wf_lock_free(l), 0);
}

/* ---- FIFO order, and hand-off past waiters that gave up ---------------- */

struct fifo {
	wf_lock *l;
	int order[16];
	int n; /* guarded by l */
};

struct fifo_arg {
	struct fifo *f;
	int id;
	uint64_t timeout;
};

static void *fifo_waiter(void *arg)
{
	struct fifo_arg *a = arg;
	int rc = wf_lock_acquire(a->f->l, a->timeout);
	if (rc != 0)
		return (void *)(intptr_t)rc;
	a->f->order[a->f->n++] = a->id;
	CHECK_RC(wf_lock_release(a->f->l), 0);
	return NULL;
}

/* One worker: each spawned waiter runs up to its wait before main goes on,
 * so the queue order is the spawn order. Waiters 3 and 7 give up (one is
 * cancelled, one times out) while queued; the others get the lock in
 * order. */
static void *fifo_main(void *arg)
{
	enum { N = 10 };
	struct fifo f = {.n = 0};
	struct fifo_arg args[N];
	wf_task *ts[N];
	CHECK_RC(wf_lock_new(&f.l), 0);
	CHECK_RC(wf_lock_acquire(f.l, WF_FOREVER), 0);
	for (int i = 0; i < N; i++) {
		args[i] = (struct fifo_arg){&f, i, i == 7 ? 5 : WF_FOREVER};
		ts[i] = wf_spawn(fifo_waiter, &args[i]);
		CHECK(ts[i] != NULL);
		CHECK_RC(wf_yield(), 0);
	}
	CHECK_RC(wf_cancel(ts[3]), 0);
	CHECK_RC(wf_sleep(20), 0); /* waiter 7's deadline passes */
	CHECK_RC(wf_lock_release(f.l), 0);
	for (int i = 0; i < N; i++) {
		void *res = NULL;
		int rc = wf_join(ts[i], &res);
		if (i == 3) {
			CHECK_RC(rc, WF_ECANCELED);
		} else {
			CHECK_RC(rc, 0);
			CHECK_RC((int)(intptr_t)res, i == 7 ? WF_ETIMEDOUT : 0);
		}
	}
	int want[] = {0, 1, 2, 4, 5, 6, 8, 9};
	CHECK_EQ(f.n, 8);
	for (int i = 0; i < 8 && i < f.n; i++)
		CHECK_EQ(f.order[i], want[i]);
	CHECK(!wf_lock_locked(f.l));
	CHECK_RC(wf_lock_free(f.l), 0);
	return NULL;
}

Test(sync_lock, fifo_and_hand_off_past_quitters)
{
	run_weft(1, fifo_main, NULL);
}

/* A lock cannot be freed while somebody waits for it. */
static void *free_busy_waiter(void *arg)
{
	return (void *)(intptr_t)wf_lock_acquire(arg, WF_FOREVER);
}

static void *free_busy_main(void *arg)
{
	wf_lock *l;
	CHECK_RC(wf_lock_new(&l), 0);
	CHECK_RC(wf_lock_acquire(l, WF_FOREVER), 0);
	wf_task *t = wf_spawn(free_busy_waiter, l);
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_lock_free(l), WF_EBUSY);
	CHECK_RC(wf_lock_release(l), 0);
	void *res = (void *)1;
	CHECK_RC(wf_join(t, &res), 0);
	CHECK(res == NULL);
	CHECK_RC(wf_lock_release(l), 0);
	CHECK_RC(wf_lock_free(l), 0);
	return NULL;
}

Test(sync_lock, free_while_waited_on_is_refused)
{
	run_weft(1, free_busy_main, NULL);
}

/* ---- fairness ----------------------------------------------------------- */

/* Two hammering tasks take and release the lock as fast as they can
 * (yielding now and then, as cooperative tasks do); a third task must
 * still get it. The hammers stop once it has, or after a cap that only a
 * starved waiter would reach. */
struct fair {
	wf_lock *l;
	int got;  /* atomic */
	int capped; /* atomic */
};

static void *fair_hammer(void *arg)
{
	struct fair *f = arg;
	for (long i = 0; !__atomic_load_n(&f->got, __ATOMIC_ACQUIRE); i++) {
		if (i == 20000000) {
			__atomic_store_n(&f->capped, 1, __ATOMIC_RELAXED);
			break;
		}
		CHECK_RC(wf_lock_acquire(f->l, WF_FOREVER), 0);
		if (i % 64 == 0)
			CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_lock_release(f->l), 0);
	}
	return NULL;
}

static void *fair_waiter(void *arg)
{
	struct fair *f = arg;
	CHECK_RC(wf_lock_acquire(f->l, WF_FOREVER), 0);
	__atomic_store_n(&f->got, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_lock_release(f->l), 0);
	return NULL;
}

static void *fair_main(void *arg)
{
	struct fair f = {0};
	CHECK_RC(wf_lock_new(&f.l), 0);
	wf_task *h1 = wf_spawn(fair_hammer, &f);
	wf_task *h2 = wf_spawn(fair_hammer, &f);
	CHECK_RC(wf_sleep(2), 0);
	wf_task *w = wf_spawn(fair_waiter, &f);
	CHECK_RC(wf_join(w, NULL), 0);
	CHECK_RC(wf_join(h1, NULL), 0);
	CHECK_RC(wf_join(h2, NULL), 0);
	CHECK_EQ(f.capped, 0);
	CHECK_RC(wf_lock_free(f.l), 0);
	return NULL;
}

Test(sync_lock, a_waiter_is_not_starved_by_running_tasks)
{
	run_weft(2, fair_main, NULL);
	run_weft(4, fair_main, NULL);
}

/* ---- stress model ------------------------------------------------------- */

struct model {
	wf_lock *l;
	int inside;   /* atomic: holders right now; must stay <= 1 */
	long counter; /* plain, guarded by l */
};

static int lock_enter(stress *st, uint32_t r, uint64_t timeout_ms)
{
	struct model *m = st->model;
	return wf_lock_acquire(m->l, timeout_ms);
}

static void lock_inside(stress *st, uint32_t r)
{
	struct model *m = st->model;
	if (__atomic_fetch_add(&m->inside, 1, __ATOMIC_RELAXED) != 0)
		check_fail(__FILE__, __LINE__, "two holders at once");
	m->counter++;
}

static void lock_before_leave(stress *st, uint32_t r)
{
	struct model *m = st->model;
	__atomic_fetch_sub(&m->inside, 1, __ATOMIC_RELAXED);
}

static int lock_leave(stress *st, uint32_t r)
{
	struct model *m = st->model;
	return wf_lock_release(m->l);
}

static const stress_ops lock_ops = {lock_enter, lock_inside, lock_before_leave, lock_leave};

static void *model_main(void *arg)
{
	struct model m = {0};
	stress st = {.ops = &lock_ops, .model = &m, .iters = 500, .ntasks = 12,
		     .sleep_mod = 40, .yield_mod = 8, .spin_max = 64};
	CHECK_RC(wf_lock_new(&m.l), 0);
	stress_run(&st);
	CHECK_EQ(m.counter, st.entered);
	CHECK(!wf_lock_locked(m.l));
	CHECK_RC(wf_lock_free(m.l), 0);
	return NULL;
}

Test(sync_lock, stress_mutual_exclusion_with_timeouts_and_cancels)
{
	run_weft(2, model_main, NULL);
	run_weft(4, model_main, NULL);
	run_weft(8, model_main, NULL);
}

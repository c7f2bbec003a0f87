/*
 * Cancellation at every kind of suspension: a sleep, an await (with and
 * without a deadline), a join (passed on to the joined task, whether it
 * runs on its own fiber or inline on the joiner's stack), a yield; before
 * the task starts and after it finished; twice before delivery; and
 * wf_uncancel. Each over many iterations and worker counts, with the
 * cancel coming from a task or from a plain thread. Iteration counts
 * scale with WEFT_TEST_SCALE (test_iters), never below what it takes to
 * run every variant a loop takes turns at.
 *
 * Waits that a lost cancellation would leave hanging carry a long deadline
 * (LONG_MS) instead: a lost cancellation then shows as a wrong return code,
 * and the loops stop at the first failed check.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

#define LONG_MS 10000
#define BATCH 16

static const unsigned worker_counts[] = {1, 2, 4, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

typedef struct victim {
	wf_future *started; /* set by the victim just before it suspends */
	wf_future *never;   /* nobody completes it (until the test does) */
	int rc;             /* what the suspension returned */
	int rc2;
	int cancelling;     /* wf_cancelling() after it */
	int ran;            /* atomic */
	wf_task *child;
	struct victim *inner;
} victim;

static void victim_init(victim *v)
{
	memset(v, 0, sizeof(*v));
	v->started = wf_future_new();
	v->never = wf_future_new();
	v->rc = 1;
	v->rc2 = 1;
}

static void victim_fini(victim *v)
{
	wf_future_release(v->started);
	wf_future_release(v->never);
}

/* Cancels from a plain thread: wf_cancel works from any thread. */
static void *cancel_thread(void *arg)
{
	CHECK_RC(wf_cancel(arg), 0);
	return NULL;
}

static void cancel_from(wf_task *t, int how)
{
	if (how == 0) {
		CHECK_RC(wf_cancel(t), 0);
		return;
	}
	if (how == 2)
		CHECK_RC(wf_sleep(1), 0); /* most likely lands mid-suspension */
	pthread_t th;
	if (CHECK(pthread_create(&th, NULL, cancel_thread, t) == 0))
		pthread_join(th, NULL);
}

/* Runs BATCH victims of body, cancels each once it said it started, joins
 * each and checks the outcome and what the suspension returned. */
static void cancel_batch(wf_fn body, int how, int want_rc)
{
	victim v[BATCH];
	wf_task *t[BATCH];
	for (int i = 0; i < BATCH; i++) {
		victim_init(&v[i]);
		t[i] = wf_spawn(body, &v[i]);
	}
	for (int i = 0; i < BATCH; i++) {
		CHECK_RC(wf_await_timeout(v[i].started, NULL, LONG_MS), 0);
		cancel_from(t[i], (how + i) % 3);
	}
	for (int i = 0; i < BATCH; i++) {
		CHECK_RC(wf_join(t[i], NULL), WF_ECANCELED);
		CHECK_RC(v[i].rc, want_rc);
		CHECK_EQ(v[i].cancelling, 1);
		victim_fini(&v[i]);
	}
}

/* ---- sleeping ------------------------------------------------------------ */

static void *sleeper(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_sleep(LONG_MS);
	v->cancelling = wf_cancelling();
	return NULL;
}

static void *sleep_main(void *arg)
{
	long its = test_iters_min(12, 3);
	for (int it = 0; it < its && !check_any_failed(); it++)
		cancel_batch(sleeper, it, WF_ECANCELED);
	return NULL;
}

Test(cancel, while_sleeping)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], sleep_main, NULL);
}

/* ---- awaiting a future -------------------------------------------------- */

static void *awaiter(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_await(v->never, NULL);
	v->cancelling = wf_cancelling();
	return NULL;
}

static void *awaiter_timeout(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_await_timeout(v->never, NULL, LONG_MS);
	v->cancelling = wf_cancelling();
	return NULL;
}

static void *await_main(void *arg)
{
	long its = test_iters_min(12, 4);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		cancel_batch(it % 2 ? awaiter_timeout : awaiter, it, WF_ECANCELED);
		/* The future is left pending and works afterwards. */
		victim v;
		victim_init(&v);
		wf_task *t = wf_spawn(awaiter, &v);
		CHECK_RC(wf_await_timeout(v.started, NULL, LONG_MS), 0);
		CHECK_RC(wf_cancel(t), 0);
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		CHECK(!wf_future_done(v.never));
		CHECK_RC(wf_future_result(v.never, NULL), WF_EAGAIN);
		CHECK_RC(wf_future_set(v.never, &v), 0);
		void *x = NULL;
		CHECK_RC(wf_await(v.never, &x), 0);
		CHECK(x == &v);
		victim_fini(&v);
	}
	return NULL;
}

Test(cancel, while_awaiting_a_future)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], await_main, NULL);
}

/* ---- joining ------------------------------------------------------------- */

/* The joined task: waits on a future nobody completes. */
static void *inner_waiter(void *arg)
{
	victim *v = arg;
	__atomic_store_n(&v->ran, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_await_timeout(v->never, NULL, LONG_MS);
	v->cancelling = wf_cancelling();
	return NULL;
}

/* The joiner: spawns the inner task and joins it. With `inline_join`, it
 * joins at once (so the inner task usually runs inline on its stack);
 * otherwise it waits until the inner task started on its own fiber. */
static void *joiner_body(victim *v, bool inline_join)
{
	v->child = wf_spawn(inner_waiter, v->inner);
	if (!inline_join)
		CHECK_RC(wf_await_timeout(v->inner->started, NULL, LONG_MS), 0);
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_join(v->child, NULL);
	v->cancelling = wf_cancelling();
	return NULL;
}

static void *joiner_inline(void *arg) { return joiner_body(arg, true); }
static void *joiner_fiber(void *arg) { return joiner_body(arg, false); }

static void join_round(bool inline_join, int how)
{
	victim outer[BATCH], inner[BATCH];
	wf_task *t[BATCH];
	for (int i = 0; i < BATCH; i++) {
		victim_init(&outer[i]);
		victim_init(&inner[i]);
		outer[i].inner = &inner[i];
		t[i] = wf_spawn(inline_join ? joiner_inline : joiner_fiber, &outer[i]);
	}
	for (int i = 0; i < BATCH; i++) {
		/* The joiner is about to join; when inline, its inner task
		 * then runs on its stack and suspends there. */
		CHECK_RC(wf_await_timeout(outer[i].started, NULL, LONG_MS), 0);
		if (inline_join && (how + i) % 2)
			CHECK_RC(wf_await_timeout(inner[i].started, NULL, LONG_MS), 0);
		cancel_from(t[i], (how + i) % 3);
	}
	for (int i = 0; i < BATCH; i++) {
		CHECK_RC(wf_join(t[i], NULL), WF_ECANCELED);
		/* The join returned the joined task's outcome. */
		CHECK_RC(outer[i].rc, WF_ECANCELED);
		/* The cancellation reached the joined task, if it ever ran. */
		if (__atomic_load_n(&inner[i].ran, __ATOMIC_ACQUIRE)) {
			CHECK_RC(inner[i].rc, WF_ECANCELED);
			CHECK_EQ(inner[i].cancelling, 1);
		}
		victim_fini(&outer[i]);
		victim_fini(&inner[i]);
	}
}

static void *join_fiber_main(void *arg)
{
	long its = test_iters_min(12, 3);
	for (int it = 0; it < its && !check_any_failed(); it++)
		join_round(false, it);
	return NULL;
}

static void *join_inline_main(void *arg)
{
	long its = test_iters_min(12, 3);
	for (int it = 0; it < its && !check_any_failed(); it++)
		join_round(true, it);
	return NULL;
}

Test(cancel, while_joining_passes_on_to_the_joined_task)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], join_fiber_main, NULL);
}

/* One worker makes the inner task run inline on the joiner's stack, and be
 * suspended there (on a future) when the joiner is cancelled. */
Test(cancel, while_joining_an_inline_task)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], join_inline_main, NULL);
}

/* ---- yielding ------------------------------------------------------------ */

#define YIELD_LIMIT 5000000

static void *yielder(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	int rc = 0;
	long n = 0;
	while (n < YIELD_LIMIT && (rc = wf_yield()) == 0)
		n++;
	v->rc = rc;
	v->cancelling = wf_cancelling();
	return NULL;
}

static void *yield_main(void *arg)
{
	long its = test_iters_min(4, 3);
	for (int it = 0; it < its && !check_any_failed(); it++)
		cancel_batch(yielder, it, WF_ECANCELED);
	return NULL;
}

Test(cancel, at_yield)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], yield_main, NULL);
}

/* ---- before the start, after the finish --------------------------------- */

static void *mark_ran(void *arg)
{
	victim *v = arg;
	__atomic_store_n(&v->ran, 1, __ATOMIC_RELEASE);
	v->rc = wf_yield();
	return (void *)0x42;
}

static void *before_start_main(void *arg)
{
	bool one_worker = wf_runtime_workers(wf_runtime_current()) == 1;
	long its = test_iters_min(200, 2);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		victim v;
		victim_init(&v);
		wf_task *t = wf_spawn(mark_ran, &v);
		int rc = wf_cancel(t);
		if (it % 2 && rc == 0) {
			/* Twice: still one delivery. On more than one worker the
			 * task may have finished in between. */
			int rc2 = wf_cancel(t);
			CHECK(rc2 == 0 || (!one_worker && rc2 == WF_EALREADY));
		}
		void *res = (void *)1;
		if (one_worker) {
			/* Nobody could start it: it never runs. */
			CHECK_RC(rc, 0);
			CHECK_RC(wf_join(t, &res), WF_ECANCELED);
			CHECK(res == NULL);
			CHECK_EQ(__atomic_load_n(&v.ran, __ATOMIC_ACQUIRE), 0);
		} else if (rc == 0) {
			/* Another worker may have started it already: then
			 * its suspension got the cancellation, unless it was
			 * past it (the header leaves the outcome of a task
			 * that never suspends again open). */
			int jrc = wf_join(t, &res);
			if (!__atomic_load_n(&v.ran, __ATOMIC_ACQUIRE) || v.rc != 0) {
				CHECK_RC(jrc, WF_ECANCELED);
				CHECK_RC(v.rc, __atomic_load_n(&v.ran, __ATOMIC_ACQUIRE)
						       ? WF_ECANCELED
						       : 1);
			} else if (jrc == 0) {
				CHECK(res == (void *)0x42);
			} else {
				CHECK_RC(jrc, WF_ECANCELED);
			}
		} else {
			CHECK_RC(rc, WF_EALREADY);
			CHECK_RC(wf_join(t, &res), 0);
			CHECK(res == (void *)0x42);
		}
		victim_fini(&v);
	}
	return NULL;
}

Test(cancel, before_start_never_runs)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], before_start_main, NULL);
}

static void *quick(void *arg) { return (void *)0x42; }

static void *after_finish_main(void *arg)
{
	long its = test_iters_min(100, 2);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		wf_task *t = wf_spawn(quick, NULL);
		/* Bounded by time, not by a count of yields: with more
		 * workers than cores, the worker that took t may wait long
		 * for a core while this one yields. */
		uint64_t limit = mono_ns() + 20000000000ull;
		while (!wf_task_done(t) && mono_ns() < limit)
			CHECK_RC(it % 2 ? wf_yield() : wf_sleep(0), 0);
		if (!CHECK(wf_task_done(t)))
			return NULL;
		CHECK_RC(wf_cancel(t), WF_EALREADY);
		void *res = NULL;
		CHECK_RC(wf_join(t, &res), 0);
		CHECK(res == (void *)0x42);
	}
	CHECK_RC(wf_cancel(NULL), WF_EINVAL);
	return NULL;
}

Test(cancel, after_finish_is_ealready)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], after_finish_main, NULL);
}

/* ---- twice before delivery ----------------------------------------------- */

static void *cancelled_once(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_await_timeout(v->never, NULL, LONG_MS);
	v->cancelling = wf_cancelling();
	CHECK_RC(wf_uncancel(), 0);
	/* No second delivery: the next suspensions go through. */
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_sleep(1), 0);
	v->rc2 = wf_await_timeout(v->never, NULL, 1);
	return (void *)7;
}

/* One worker: the victim is suspended on its future and cannot run
 * between the two cancels, so both come before the delivery. */
static void *twice_main(void *arg)
{
	long its = test_iters(200);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		victim v;
		victim_init(&v);
		wf_task *t = wf_spawn(cancelled_once, &v);
		CHECK_RC(wf_await(v.started, NULL), 0);
		CHECK_RC(wf_cancel(t), 0);
		CHECK_RC(wf_cancel(t), 0);
		void *res = NULL;
		CHECK_RC(wf_join(t, &res), 0);
		CHECK(res == (void *)7);
		CHECK_RC(v.rc, WF_ECANCELED);
		CHECK_EQ(v.cancelling, 1);
		CHECK_RC(v.rc2, WF_ETIMEDOUT);
		victim_fini(&v);
	}
	return NULL;
}

Test(cancel, twice_before_delivery_delivers_once)
{
	run_weft(1, twice_main, NULL);
}

/* ---- uncancel ---------------------------------------------------------------- */

static void *catches_one(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_sleep(LONG_MS);
	v->cancelling = wf_cancelling();
	CHECK_RC(wf_uncancel(), 0);
	CHECK_RC(wf_cancelling(), 0);
	CHECK_RC(wf_uncancel(), 0); /* nothing left to handle */
	v->rc2 = wf_sleep(1);
	return (void *)77;
}

/* Two separate cancellations, one handled: still cancelled. */
static void *catches_one_of_two(void *arg)
{
	victim *v = arg;
	CHECK_RC(wf_future_set(v->started, NULL), 0);
	v->rc = wf_sleep(LONG_MS);
	CHECK_RC(wf_future_set(v->never, NULL), 0); /* tell the canceller */
	v->rc2 = wf_sleep(LONG_MS);
	v->cancelling = wf_cancelling();
	CHECK_RC(wf_uncancel(), 1);
	return (void *)78;
}

static void *uncancel_main(void *arg)
{
	long its = test_iters_min(12, 3);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		victim v[BATCH];
		wf_task *t[BATCH];
		for (int i = 0; i < BATCH; i++) {
			victim_init(&v[i]);
			t[i] = wf_spawn(catches_one, &v[i]);
		}
		for (int i = 0; i < BATCH; i++) {
			CHECK_RC(wf_await_timeout(v[i].started, NULL, LONG_MS), 0);
			cancel_from(t[i], (it + i) % 3);
		}
		for (int i = 0; i < BATCH; i++) {
			void *res = NULL;
			CHECK_RC(wf_join(t[i], &res), 0);
			CHECK(res == (void *)77);
			CHECK_RC(v[i].rc, WF_ECANCELED);
			CHECK_EQ(v[i].cancelling, 1);
			CHECK_RC(v[i].rc2, 0);
			victim_fini(&v[i]);
		}

		victim w;
		victim_init(&w);
		wf_task *u = wf_spawn(catches_one_of_two, &w);
		CHECK_RC(wf_await_timeout(w.started, NULL, LONG_MS), 0);
		CHECK_RC(wf_cancel(u), 0);
		CHECK_RC(wf_await_timeout(w.never, NULL, LONG_MS), 0);
		CHECK_RC(wf_cancel(u), 0);
		void *res = (void *)1;
		CHECK_RC(wf_join(u, &res), WF_ECANCELED);
		CHECK(res == NULL);
		CHECK_RC(w.rc, WF_ECANCELED);
		CHECK_RC(w.rc2, WF_ECANCELED);
		CHECK_EQ(w.cancelling, 2);
		victim_fini(&w);
	}
	return NULL;
}

Test(cancel, uncancel_lets_the_task_go_on)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], uncancel_main, NULL);
}

/* From a plain thread: bad handles and calls that need a task. */
Test(cancel, outside_a_task)
{
	cr_assert_eq(wf_cancel(NULL), WF_EINVAL);
	cr_assert_eq(wf_uncancel(), WF_ENOTTASK);
	cr_assert_eq(wf_cancelling(), WF_ENOTTASK);
}

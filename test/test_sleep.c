/*
 * wf_sleep: wakes in deadline order, never early, from tasks and plain
 * threads; cancelled sleeps end at once and leave no timer behind that
 * could fire a later wait.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_check.h"
#include "weft.h"

#define LONG_MS 10000

/* ---- ordering ---------------------------------------------------------------- */

/* Three tasks sleep 30, 10 and 20 ms and log the order they wake in. What
 * is checked is the order of their actual deadlines (the time each went
 * to sleep plus its delay): on an idle machine that is 10, 20, 30, but a
 * worker the OS holds off the CPU between two of the starts shifts the
 * deadlines, not the rule. One worker: all three timers are in one heap,
 * so the order is exact whatever the scheduling of the thread. */
typedef struct wake_log {
	int order[8];
	int n; /* atomic */
} wake_log;

typedef struct sleeper_arg {
	wake_log *log;
	int ms;
	uint64_t deadline_ns;
} sleeper_arg;

static void *log_after_sleep(void *arg)
{
	sleeper_arg *a = arg;
	a->deadline_ns = mono_ns() + (uint64_t)a->ms * 1000000u;
	CHECK_RC(wf_sleep((uint64_t)a->ms), 0);
	int i = __atomic_fetch_add(&a->log->n, 1, __ATOMIC_ACQ_REL);
	if (i < 8)
		a->log->order[i] = a->ms;
	return NULL;
}

static void *order_main(void *arg)
{
	bool block_worker = arg != NULL;
	static const int ms[3] = {30, 10, 20};
	wake_log log = {{0}, 0};
	sleeper_arg a[3];
	wf_task *t[3];
	for (int i = 0; i < 3; i++) {
		a[i] = (sleeper_arg){&log, ms[i], 0};
		t[i] = wf_spawn(log_after_sleep, &a[i]);
	}
	if (block_worker) {
		/* Let all three start sleeping, then hold the (only) worker
		 * past every deadline: the three timers are then due at once
		 * and must still wake in deadline order. */
		CHECK_RC(wf_yield(), 0);
		struct timespec ts = {0, 60 * 1000000};
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < 3; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	CHECK_EQ(log.n, 3);
	/* The sleeps by actual deadline. */
	sleeper_arg *by_deadline[3] = {&a[0], &a[1], &a[2]};
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			if (by_deadline[j]->deadline_ns < by_deadline[i]->deadline_ns) {
				sleeper_arg *x = by_deadline[i];
				by_deadline[i] = by_deadline[j];
				by_deadline[j] = x;
			}
	for (int i = 0; i < 3; i++)
		CHECK_EQ(log.order[i], by_deadline[i]->ms);
	return NULL;
}

Test(sleep, wakes_in_deadline_order)
{
	for (int round = 0; round < 5; round++)
		run_weft(1, order_main, NULL);
}

Test(sleep, due_together_wake_in_deadline_order)
{
	for (int round = 0; round < 3; round++)
		run_weft(1, order_main, (void *)1);
}

/* ---- never early ------------------------------------------------------------- */

static void *measured_sleep(void *arg)
{
	uint64_t ms = (uint64_t)(uintptr_t)arg;
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_sleep(ms), 0);
	uint64_t slept = mono_ns() - t0;
	if (!CHECK(slept >= ms * 1000000u))
		fprintf(stderr, "wf_sleep(%llu) returned after %llu ns\n", (unsigned long long)ms,
			(unsigned long long)slept);
	return NULL;
}

static void *never_early_main(void *arg)
{
	enum { N = 200 };
	wf_task *t[N];
	uint64_t seed = 42;
	for (int i = 0; i < N; i++)
		t[i] = wf_spawn(measured_sleep, (void *)(uintptr_t)(1 + rng_next(&seed) % 25));
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	/* Zero: a yield, not an error. */
	CHECK_RC(wf_sleep(0), 0);
	return NULL;
}

static void *plain_sleeps(void *arg)
{
	for (uint64_t ms = 1; ms <= 5; ms++) {
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_sleep(ms), 0);
		CHECK(mono_ns() - t0 >= ms * 1000000u);
	}
	return NULL;
}

Test(sleep, never_early)
{
	run_weft(1, never_early_main, NULL);
	run_weft(4, never_early_main, NULL);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, plain_sleeps, NULL), 0);
	pthread_join(th, NULL);
	check_none_failed();
}

/* ---- cancellation -------------------------------------------------------------- */

typedef struct long_sleeper {
	wf_future *started;
	int rc;
	int rc_after;
	wf_future *later; /* awaited after the cancelled sleep */
} long_sleeper;

static void *sleep_long(void *arg)
{
	long_sleeper *s = arg;
	CHECK_RC(wf_future_set(s->started, NULL), 0);
	s->rc = wf_sleep(LONG_MS);
	CHECK_RC(wf_uncancel(), 0);
	/* A short sleep after it works and is not cut short by the old
	 * timer. */
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_sleep(2), 0);
	CHECK(mono_ns() - t0 >= 2000000u);
	return (void *)9;
}

static void *cancel_sleep_main(void *arg)
{
	enum { N = 64 };
	long_sleeper s[N];
	wf_task *t[N];
	for (int i = 0; i < N; i++) {
		s[i] = (long_sleeper){.started = wf_future_new(), .rc = 1};
		t[i] = wf_spawn(sleep_long, &s[i]);
	}
	for (int i = 0; i < N; i++) {
		CHECK_RC(wf_await_timeout(s[i].started, NULL, LONG_MS), 0);
		if (i % 4 == 0)
			CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_cancel(t[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		void *res = NULL;
		CHECK_RC(wf_join(t[i], &res), 0);
		CHECK(res == (void *)9);
		CHECK_RC(s[i].rc, WF_ECANCELED);
		wf_future_release(s[i].started);
	}
	return NULL;
}

Test(sleep, cancelled_sleeps_end)
{
	run_weft(1, cancel_sleep_main, NULL);
	run_weft(4, cancel_sleep_main, NULL);
}

/* A cancelled sleep's timer entry may stay in its worker's heap until its
 * deadline (when cancelled from another thread). When it comes due it
 * must not fire whatever the task waits on by then. The sleep is long
 * enough for the cancellation to land in it even in a slow build; a
 * victim whose sleep ended first is counted out. */
#define STALE_MS 150

static void *stale_timer_victim(void *arg)
{
	long_sleeper *s = arg;
	CHECK_RC(wf_future_set(s->started, NULL), 0);
	s->rc = wf_sleep(STALE_MS);
	CHECK_RC(wf_uncancel(), 0);
	/* Still waiting when the old deadline passes. */
	s->rc_after = wf_await_timeout(s->later, NULL, LONG_MS);
	return NULL;
}

static void *stale_timer_main(void *arg)
{
	enum { N = 16 };
	long_sleeper s[N];
	wf_task *t[N];
	for (int i = 0; i < N; i++) {
		s[i] = (long_sleeper){.started = wf_future_new(), .later = wf_future_new(), .rc = 1,
				      .rc_after = 1};
		t[i] = wf_spawn(stale_timer_victim, &s[i]);
	}
	for (int i = 0; i < N; i++) {
		CHECK_RC(wf_await_timeout(s[i].started, NULL, LONG_MS), 0);
		CHECK_RC(wf_cancel(t[i]), 0);
	}
	/* Past every old deadline. */
	CHECK_RC(wf_sleep(STALE_MS + 100), 0);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_future_set(s[i].later, NULL), 0);
	int exercised = 0;
	for (int i = 0; i < N; i++) {
		int rc = wf_join(t[i], NULL);
		if (s[i].rc == WF_ECANCELED) {
			exercised++;
			CHECK_RC(rc, 0);
			CHECK_RC(s[i].rc_after, 0);
		} else {
			/* The sleep ended before the cancellation came: the
			 * await got it instead. */
			CHECK_RC(s[i].rc, 0);
			CHECK_RC(s[i].rc_after, WF_ECANCELED);
			CHECK_RC(rc, WF_ECANCELED);
		}
		wf_future_release(s[i].started);
		wf_future_release(s[i].later);
	}
	CHECK(exercised > 0);
	return NULL;
}

Test(sleep, stale_timer_never_fires_a_later_wait)
{
	run_weft(1, stale_timer_main, NULL);
	run_weft(4, stale_timer_main, NULL);
}

/*
 * wf_wait (the three conditions, with and without a timeout), wf_wait_for
 * (tasks and futures: timeouts cancel and wait, never early, never much
 * late), as_completed (completion order), shield (a cancelled awaiter does
 * not cancel the inner task). Many rounds on 1 to 8 workers.
 *
 * Deadlines are checked "not early" exactly and "not late" loosely
 * (LATE_MS), since the machines that run the suite are loaded.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

#define LONG_MS 10000
/* How late a deadline may fire: sanitizer builds on a loaded 2-core machine
 * stall for longer than a release build ever does. */
#if defined(WF_TSAN) || defined(WF_ASAN)
#define LATE_MS 3000
#else
#define LATE_MS 500
#endif

static const unsigned worker_counts[] = {1, 2, 4, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

static int running;

typedef struct job {
	wf_future *gate; /* await it first, if set */
	int fail;
	uintptr_t value;
	int saw; /* what the gate's await returned */
} job;

static void *job_main(void *arg)
{
	job *j = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	void *res = (void *)j->value;
	if (j->gate != NULL)
		__atomic_store_n(&j->saw, wf_await(j->gate, NULL), __ATOMIC_SEQ_CST);
	if (j->fail != 0)
		res = wf_fail(j->fail, "job failed");
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return res;
}

static int count_true(const bool *b, size_t n)
{
	int k = 0;
	for (size_t i = 0; i < n; i++)
		k += b[i];
	return k;
}

/* ---- wait ------------------------------------------------------------------ */

static void *wait_main(void *arg)
{
	long rounds = test_iters_min(30, 6);
	for (int round = 0; round < rounds; round++) {
		enum { N = 6 };
		wf_future *gates[N];
		job jobs[N];
		wf_task *tasks[N];
		bool done[N];
		for (int i = 0; i < N; i++) {
			gates[i] = wf_future_new();
			jobs[i] = (job){.gate = gates[i], .value = i};
			tasks[i] = wf_spawn(job_main, &jobs[i]);
		}
		/* Nothing finished: a timeout is no error, the sets say so. */
		CHECK_EQ(wf_wait(tasks, N, WF_FIRST_COMPLETED, 1, done), 0);
		CHECK_EQ(count_true(done, N), 0);
		CHECK_EQ(wf_wait(tasks, N, WF_ALL_COMPLETED, 0, done), 0);

		/* FIRST_COMPLETED: one finishes. */
		int k = round % N;
		wf_future_set(gates[k], NULL);
		int nd = wf_wait(tasks, N, WF_FIRST_COMPLETED, WF_FOREVER, done);
		CHECK(nd >= 1);
		CHECK(done[k]);
		CHECK_EQ(count_true(done, N), nd);

		/* FIRST_EXCEPTION: a success does not end it, a failure does. */
		int f = (k + 1) % N;
		jobs[f].fail = WF_EIO;
		wf_future_set(gates[f], NULL);
		nd = wf_wait(tasks, N, WF_FIRST_EXCEPTION, WF_FOREVER, done);
		CHECK(done[f] && done[k]);
		CHECK_EQ(nd, 2);
		/* A cancelled task is no exception: with only it done, the
		 * wait runs into its timeout. */
		int c = (k + 2) % N;
		wf_cancel(tasks[c]);
		CHECK_EQ(wf_wait(&tasks[c], 1, WF_ALL_COMPLETED, WF_FOREVER, done), 1);
		int p = (k + 3) % N;
		wf_task *pair[2] = {tasks[c], tasks[p]};
		uint64_t t0 = mono_ns();
		CHECK_EQ(wf_wait(pair, 2, WF_FIRST_EXCEPTION, 2, done), 1);
		CHECK(mono_ns() - t0 >= 2000000);
		CHECK(done[0] && !done[1]);
		CHECK_EQ(wf_wait(tasks, N, WF_FIRST_EXCEPTION, WF_FOREVER, done), 3);

		/* ALL_COMPLETED: wait cancels nothing; everything finishes. */
		for (int i = 0; i < N; i++)
			wf_future_set(gates[i], NULL);
		CHECK_EQ(wf_wait(tasks, N, WF_ALL_COMPLETED, WF_FOREVER, done), N);
		for (int i = 0; i < N; i++) {
			void *r;
			int rc = wf_join(tasks[i], &r);
			if (i == f)
				CHECK_RC(rc, WF_EIO);
			else if (i == c)
				CHECK(rc == WF_ECANCELED);
			else
				CHECK_EQ((uintptr_t)r, i);
			wf_future_release(gates[i]);
		}
	}
	return NULL;
}

Test(wait, conditions_and_sets)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], wait_main, NULL);
}

typedef struct waiter_arg {
	wf_task *tasks[2];
	wf_future *started;
	int rc;
} waiter_arg;

static void *waiting_task(void *arg)
{
	waiter_arg *w = arg;
	bool done[2];
	wf_future_set(w->started, NULL);
	w->rc = wf_wait(w->tasks, 2, WF_ALL_COMPLETED, LONG_MS, done);
	return NULL;
}

static void *wait_cancel_main(void *arg)
{
	long rounds = test_iters(20);
	for (int round = 0; round < rounds; round++) {
		wf_future *gate = wf_future_new();
		job j1 = {.gate = gate, .value = 1}, j2 = {.gate = gate, .value = 2};
		waiter_arg w = {.tasks = {wf_spawn(job_main, &j1), wf_spawn(job_main, &j2)},
				.started = wf_future_new()};
		wf_task *t = wf_spawn(waiting_task, &w);
		wf_await(w.started, NULL);
		wf_cancel(t);
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		CHECK_RC(w.rc, WF_ECANCELED);
		/* The waited-for tasks were not cancelled. */
		CHECK(!wf_task_done(w.tasks[0]) || j1.saw == 0);
		wf_future_set(gate, NULL);
		void *r;
		CHECK_RC(wf_join(w.tasks[0], &r), 0);
		CHECK_RC(wf_join(w.tasks[1], &r), 0);
		CHECK_RC(j1.saw, 0);
		CHECK_RC(j2.saw, 0);
		wf_future_release(gate);
		wf_future_release(w.started);
	}
	return NULL;
}

Test(wait, a_cancelled_wait_cancels_nothing)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], wait_cancel_main, NULL);
}

static void *wait_futures_main(void *arg)
{
	wf_future *fs[3] = {wf_future_new(), wf_future_new(), wf_future_new()};
	bool done[3];
	CHECK_EQ(wf_wait_futures(fs, 3, WF_FIRST_COMPLETED, 0, done), 0);
	wf_future_fail(fs[2], WF_EPIPE, NULL);
	CHECK_EQ(wf_wait_futures(fs, 3, WF_FIRST_EXCEPTION, WF_FOREVER, done), 1);
	CHECK(done[2] && !done[0] && !done[1]);
	wf_future_set(fs[0], NULL);
	wf_future_set(fs[1], NULL);
	CHECK_EQ(wf_wait_futures(fs, 3, WF_ALL_COMPLETED, WF_FOREVER, done), 3);
	CHECK_RC(wf_wait_futures(fs, 3, 0, 0, done), WF_EINVAL);
	CHECK_RC(wf_wait_futures(fs, 3, WF_ALL_COMPLETED, 0, NULL), WF_EINVAL);
	CHECK_RC(wf_wait(NULL, 1, WF_ALL_COMPLETED, 0, done), WF_EINVAL);
	CHECK_EQ(wf_wait(NULL, 0, WF_ALL_COMPLETED, 0, NULL), 0);
	for (int i = 0; i < 3; i++)
		wf_future_release(fs[i]);
	return NULL;
}

Test(wait, futures_and_bad_input)
{
	run_weft(2, wait_futures_main, NULL);
}

/* ---- wait_for ---------------------------------------------------------------- */

typedef struct slow_arg {
	uint64_t ms;
	int handle; /* 1: handles its cancellation and returns a value */
	int saw;
} slow_arg;

static void *slow_task(void *arg)
{
	slow_arg *s = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	s->saw = wf_sleep(s->ms);
	void *res = (void *)(uintptr_t)77;
	if (s->saw == WF_ECANCELED && s->handle) {
		wf_uncancel();
		res = (void *)(uintptr_t)88;
	}
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return res;
}

static void *wait_for_main(void *arg)
{
	long rounds = test_iters_min(12, 5);
	for (int round = 0; round < rounds; round++) {
		uint64_t ms = 2 + round % 5;
		/* In time. */
		slow_arg quick = {.ms = 0};
		void *r = NULL;
		CHECK_RC(wf_wait_for(wf_spawn(slow_task, &quick), &r, LONG_MS), 0);
		CHECK_EQ((uintptr_t)r, 77);
		/* Too slow: cancelled, waited for, WF_ETIMEDOUT, on time. */
		slow_arg slow = {.ms = LONG_MS};
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_wait_for(wf_spawn(slow_task, &slow), &r, ms), WF_ETIMEDOUT);
		uint64_t took = mono_ns() - t0;
		CHECK(took >= ms * 1000000);
		CHECK(took < (ms + LATE_MS) * 1000000);
		CHECK_RC(slow.saw, WF_ECANCELED);
		CHECK(r == NULL);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		/* Handles the cancellation and returns anyway: its outcome. */
		slow_arg stubborn = {.ms = LONG_MS, .handle = 1};
		CHECK_RC(wf_wait_for(wf_spawn(slow_task, &stubborn), &r, ms), 0);
		CHECK_EQ((uintptr_t)r, 88);
		CHECK_EQ(wf_cancelling(), 0);
	}
	return NULL;
}

Test(wait_for, timeouts_cancel_and_wait)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], wait_for_main, NULL);
}

typedef struct wf_for_arg {
	slow_arg inner;
	wf_future *started;
	int rc;
} wf_for_arg;

static void *wait_for_caller(void *arg)
{
	wf_for_arg *a = arg;
	wf_task *t = wf_spawn(slow_task, &a->inner);
	wf_future_set(a->started, NULL);
	a->rc = wf_wait_for(t, NULL, LONG_MS);
	return NULL;
}

static void *wait_for_cancel_main(void *arg)
{
	long rounds = test_iters_min(20, 2);
	for (int round = 0; round < rounds; round++) {
		wf_for_arg a = {.inner = {.ms = LONG_MS}, .started = wf_future_new()};
		wf_task *t = wf_spawn(wait_for_caller, &a);
		wf_await(a.started, NULL);
		if (round % 2)
			wf_sleep(1);
		wf_cancel(t);
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		/* The cancellation went on to the awaited task. */
		CHECK_RC(a.rc, WF_ECANCELED);
		CHECK(a.inner.saw == WF_ECANCELED || a.inner.saw == 0);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		wf_future_release(a.started);
	}
	/* Bad input. */
	CHECK_RC(wf_wait_for(NULL, NULL, 1), WF_EINVAL);
	CHECK_RC(wf_wait_for(wf_current(), NULL, 1), WF_EDEADLK);
	CHECK_RC(wf_wait_for_future(NULL, NULL, 1), WF_EINVAL);
	return NULL;
}

Test(wait_for, cancelling_the_caller_cancels_the_task)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], wait_for_cancel_main, NULL);
}

static void *late_setter(void *arg)
{
	wf_sleep(3);
	wf_future_set(arg, (void *)(uintptr_t)5); /* may find it cancelled */
	return NULL;
}

static void *wait_for_future_main(void *arg)
{
	long rounds = test_iters(20);
	for (int round = 0; round < rounds; round++) {
		wf_future *f = wf_future_new();
		void *v;
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_wait_for_future(f, &v, 2), WF_ETIMEDOUT);
		CHECK(mono_ns() - t0 >= 2000000);
		/* The future was cancelled. */
		CHECK_RC(wf_future_result(f, &v), WF_ECANCELED);
		wf_future_release(f);

		f = wf_future_new();
		wf_task *t = wf_spawn(late_setter, f);
		CHECK_RC(wf_wait_for_future(f, &v, LONG_MS), 0);
		CHECK_EQ((uintptr_t)v, 5);
		wf_join(t, NULL);
		wf_future_release(f);
	}
	return NULL;
}

Test(wait_for, futures)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], wait_for_future_main, NULL);
}

/* ---- as_completed --------------------------------------------------------------- */

static void *as_completed_main(void *arg)
{
	long rounds = test_iters_min(20, 8);
	for (int round = 0; round < rounds; round++) {
		enum { N = 8 };
		wf_future *gates[N];
		job jobs[N];
		wf_task *tasks[N];
		for (int i = 0; i < N; i++) {
			gates[i] = wf_future_new();
			jobs[i] = (job){.gate = gates[i], .value = 100 + i};
			tasks[i] = wf_spawn(job_main, &jobs[i]);
		}
		wf_as_completed *ac;
		CHECK_RC(wf_as_completed_new(tasks, N, &ac), 0);
		size_t idx;
		CHECK_RC(wf_as_completed_next(ac, 1, &idx), WF_ETIMEDOUT);
		/* Released in a shuffled order: handed out in that order. */
		int order[N];
		for (int i = 0; i < N; i++)
			order[i] = (i * 5 + round) % N;
		for (int i = 0; i < N; i++) {
			wf_future_set(gates[order[i]], NULL);
			CHECK_RC(wf_as_completed_next(ac, WF_FOREVER, &idx), 0);
			CHECK_EQ(idx, order[i]);
			void *r;
			CHECK_RC(wf_join(tasks[idx], &r), 0);
			CHECK_EQ((uintptr_t)r, 100 + idx);
		}
		CHECK_RC(wf_as_completed_next(ac, WF_FOREVER, &idx), WF_EOF);
		wf_as_completed_free(ac);
		for (int i = 0; i < N; i++)
			wf_future_release(gates[i]);
	}
	return NULL;
}

Test(as_completed, completion_order)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], as_completed_main, NULL);
}

static void *as_completed_many_main(void *arg)
{
	long rounds = test_iters(20);
	for (int round = 0; round < rounds; round++) {
		enum { N = 40 };
		job jobs[N];
		wf_task *tasks[N];
		for (int i = 0; i < N; i++) {
			jobs[i] = (job){.value = i};
			tasks[i] = wf_spawn(job_main, &jobs[i]);
		}
		wf_as_completed *ac;
		CHECK_RC(wf_as_completed_new(tasks, N, &ac), 0);
		uint64_t seen = 0;
		size_t idx;
		int k = 0;
		while (wf_as_completed_next(ac, WF_FOREVER, &idx) == 0) {
			CHECK(!(seen & (1ull << idx)));
			seen |= 1ull << idx;
			CHECK_RC(wf_join(tasks[idx], NULL), 0);
			k++;
		}
		CHECK_EQ(k, N);
		wf_as_completed_free(ac);
	}
	/* An iterator left early leaves the rest to the caller. */
	wf_future *gate = wf_future_new();
	job j[2] = {{.gate = gate}, {.value = 1}};
	wf_task *ts[2] = {wf_spawn(job_main, &j[0]), wf_spawn(job_main, &j[1])};
	wf_as_completed *ac;
	CHECK_RC(wf_as_completed_new(ts, 2, &ac), 0);
	size_t idx;
	CHECK_RC(wf_as_completed_next(ac, WF_FOREVER, &idx), 0);
	CHECK_EQ(idx, 1);
	wf_as_completed_free(ac);
	wf_future_set(gate, NULL);
	CHECK_RC(wf_join(ts[0], NULL), 0);
	CHECK_RC(wf_join(ts[1], NULL), 0);
	wf_future_release(gate);
	/* Futures, and bad input. */
	wf_future *fs[2] = {wf_future_new(), wf_future_new()};
	CHECK_RC(wf_as_completed_new_futures(fs, 2, &ac), 0);
	wf_future_fail(fs[1], WF_EIO, NULL);
	CHECK_RC(wf_as_completed_next(ac, WF_FOREVER, &idx), 0);
	CHECK_EQ(idx, 1);
	wf_future_set(fs[0], NULL);
	CHECK_RC(wf_as_completed_next(ac, WF_FOREVER, &idx), 0);
	CHECK_EQ(idx, 0);
	CHECK_RC(wf_as_completed_next(ac, WF_FOREVER, &idx), WF_EOF);
	wf_as_completed_free(ac);
	wf_future_release(fs[0]);
	wf_future_release(fs[1]);
	CHECK_RC(wf_as_completed_new(NULL, 1, &ac), WF_EINVAL);
	CHECK_RC(wf_as_completed_new(ts, 1, NULL), WF_EINVAL);
	CHECK_RC(wf_as_completed_next(NULL, 0, &idx), WF_EINVAL);
	wf_as_completed_free(NULL);
	return NULL;
}

Test(as_completed, every_task_once)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], as_completed_many_main, NULL);
}

/* ---- shield ------------------------------------------------------------------------ */

typedef struct shield_arg {
	wf_future *inner_gate;
	wf_future *started;
	job inner;
	wf_future *shielded;
	int rc;
} shield_arg;

static void *shielding_task(void *arg)
{
	shield_arg *s = arg;
	wf_task *t = wf_spawn(job_main, &s->inner);
	CHECK_RC(wf_shield(t, &s->shielded), 0);
	wf_future_set(s->started, NULL);
	s->rc = wf_await(s->shielded, NULL);
	return NULL;
}

static void *shield_main(void *arg)
{
	long rounds = test_iters(30);
	for (int round = 0; round < rounds; round++) {
		shield_arg s = {.inner_gate = wf_future_new(), .started = wf_future_new()};
		s.inner = (job){.gate = s.inner_gate, .value = 9, .saw = 1};
		wf_task *t = wf_spawn(shielding_task, &s);
		wf_await(s.started, NULL);
		wf_cancel(t);
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		CHECK_RC(s.rc, WF_ECANCELED);
		/* The inner task goes on: not cancelled. */
		CHECK(!wf_future_done(s.shielded));
		wf_future_set(s.inner_gate, NULL);
		void *v;
		CHECK_RC(wf_await(s.shielded, &v), 0);
		CHECK_EQ((uintptr_t)v, 9);
		CHECK_RC(s.inner.saw, 0);
		wf_future_release(s.shielded);
		wf_future_release(s.inner_gate);
		wf_future_release(s.started);
	}
	/* A failure goes to the future, message included; cancelling the
	 * future leaves the task alone. */
	job bad = {.fail = WF_EIO};
	wf_future *f;
	CHECK_RC(wf_shield(wf_spawn(job_main, &bad), &f), 0);
	CHECK_RC(wf_await(f, NULL), WF_EIO);
	CHECK(wf_future_errmsg(f) != NULL && strcmp(wf_future_errmsg(f), "job failed") == 0);
	wf_future_release(f);
	wf_future *gate = wf_future_new();
	job held = {.gate = gate, .saw = 1};
	CHECK_RC(wf_shield(wf_spawn(job_main, &held), &f), 0);
	CHECK_RC(wf_future_cancel(f), 0);
	wf_future_release(f);
	wf_sleep(1);
	/* Still waiting (or not started yet): not cancelled. */
	CHECK_EQ(__atomic_load_n(&held.saw, __ATOMIC_SEQ_CST), 1);
	wf_future_set(gate, NULL);
	/* Until the job has been through its wait (it may not even have
	 * started on a loaded machine). */
	uint64_t limit = mono_ns() + 20000000000ull;
	while (__atomic_load_n(&held.saw, __ATOMIC_SEQ_CST) == 1 && mono_ns() < limit)
		wf_sleep(1);
	CHECK_RC(__atomic_load_n(&held.saw, __ATOMIC_SEQ_CST), 0);
	while (__atomic_load_n(&running, __ATOMIC_SEQ_CST) != 0)
		wf_sleep(1);
	wf_future_release(gate);
	CHECK_RC(wf_shield(NULL, &f), WF_EINVAL);
	CHECK_RC(wf_shield(wf_current(), NULL), WF_EINVAL);
	return NULL;
}

Test(shield, the_inner_task_goes_on)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], shield_main, NULL);
}

/* From a plain thread: NULL sets are refused before anything waits. */
Test(wait, null_sets_outside_a_task)
{
	bool done[1];
	cr_assert_eq(wf_wait(NULL, 1, WF_ALL_COMPLETED, 0, done), WF_EINVAL);
	cr_assert_eq(wf_wait_futures(NULL, 1, WF_ALL_COMPLETED, 0, done), WF_EINVAL);
	cr_assert_eq(wf_wait_for(NULL, NULL, 0), WF_EINVAL);
}

/* ---- a freed iterator's handle -------------------------------------------
 * Used after a new iterator took its memory: WF_EINVAL, and the new one is
 * untouched. */
Test(as_completed, stale_handle)
{
	wf_future *f[2] = {wf_future_new(), wf_future_new()};
	cr_assert(f[0] != NULL && f[1] != NULL);
	wf_as_completed *old, *ac;
	size_t index = 99;
	cr_assert_eq(wf_as_completed_new_futures(f, 2, &old), 0);
	wf_as_completed_free(old);
	cr_assert_eq(wf_as_completed_new_futures(f, 2, &ac), 0);
	cr_assert_eq(wf_future_set(f[1], NULL), 0);
	cr_assert_eq(wf_as_completed_next(old, 0, &index), WF_EINVAL);
	cr_assert_eq(index, 99);
	wf_as_completed_free(old); /* nothing: ac is untouched */
	cr_assert_eq(wf_as_completed_next(ac, 0, &index), 0, "the stale calls took its item");
	cr_assert_eq(index, 1);
	cr_assert_eq(wf_as_completed_next(ac, 0, &index), WF_ETIMEDOUT);
	wf_as_completed_free(ac);
	cr_assert_eq(wf_as_completed_next(ac, 0, &index), WF_EINVAL);
	wf_future_release(f[0]);
	wf_future_release(f[1]);
}

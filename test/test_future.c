/*
 * Futures: completed exactly once from any thread; no lost wake-up between
 * a completion and an await, whoever they run on; awaits from plain threads
 * block; timeouts; done-callbacks; failures with a message; bad arguments.
 *
 * Awaits that a lost wake-up would leave hanging carry a long deadline
 * (LONG_MS): a lost wake-up then shows as WF_ETIMEDOUT, and the loops stop
 * at the first failed check.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

#define LONG_MS 10000

/* ---- no runtime needed ----------------------------------------------------- */

Test(future, bad_arguments)
{
	cr_assert_eq(wf_future_set(NULL, NULL), WF_EINVAL);
	cr_assert_eq(wf_future_fail(NULL, WF_EIO, "x"), WF_EINVAL);
	cr_assert_eq(wf_future_cancel(NULL), WF_EINVAL);
	cr_assert_eq(wf_await(NULL, NULL), WF_EINVAL);
	cr_assert_eq(wf_await_timeout(NULL, NULL, 1), WF_EINVAL);
	cr_assert_eq(wf_future_result(NULL, NULL), WF_EINVAL);
	cr_assert_not(wf_future_done(NULL));
	cr_assert_null(wf_future_errmsg(NULL));
	cr_assert_eq(wf_future_add_done_callback(NULL, NULL, NULL), WF_EINVAL);
	wf_future_release(NULL); /* no crash */
	cr_assert_null(wf_future_retain(NULL));

	wf_future *f = wf_future_new();
	cr_assert_not_null(f);
	cr_assert_eq(wf_future_fail(f, 0, "not an error"), WF_EINVAL);
	cr_assert_eq(wf_future_fail(f, 3, NULL), WF_EINVAL);
	cr_assert_eq(wf_future_add_done_callback(f, NULL, NULL), WF_EINVAL);
	cr_assert_not(wf_future_done(f), "a refused completion must leave it pending");
	void *v = (void *)1;
	cr_assert_eq(wf_future_result(f, &v), WF_EAGAIN);
	cr_assert_null(wf_future_errmsg(f));
	wf_future_release(f);
	check_no_leaks();
}

Test(future, set_once_without_a_runtime)
{
	wf_future *f = wf_future_new();
	int x, y;
	cr_assert_eq(wf_future_set(f, &x), 0);
	cr_assert(wf_future_done(f));
	cr_assert_eq(wf_future_set(f, &y), WF_EALREADY);
	cr_assert_eq(wf_future_fail(f, WF_EIO, "late"), WF_EALREADY);
	cr_assert_eq(wf_future_cancel(f), WF_EALREADY);
	void *v = NULL;
	cr_assert_eq(wf_future_result(f, &v), 0);
	cr_assert_eq(v, &x);
	cr_assert_eq(wf_await(f, &v), 0);
	cr_assert_eq(v, &x);
	cr_assert_null(wf_future_errmsg(f));

	/* A second owner keeps it alive. */
	cr_assert_eq(wf_future_retain(f), f);
	wf_future_release(f);
	cr_assert_eq(wf_await_timeout(f, &v, 0), 0);
	cr_assert_eq(v, &x);
	wf_future_release(f);
	check_no_leaks();
}

Test(future, fail_with_a_message)
{
	wf_future *f = wf_future_new();
	char msg[32] = "disk gone";
	cr_assert_eq(wf_future_fail(f, WF_EIO, msg), 0);
	strcpy(msg, "overwritten"); /* the message was copied */
	cr_assert_str_eq(wf_future_errmsg(f), "disk gone");
	void *v = (void *)1;
	cr_assert_eq(wf_await(f, &v), WF_EIO);
	cr_assert_null(v);
	cr_assert_eq(wf_future_result(f, &v), WF_EIO);
	cr_assert_eq(wf_future_set(f, NULL), WF_EALREADY);
	cr_assert_eq(wf_future_fail(f, WF_EPIPE, "second"), WF_EALREADY);
	cr_assert_str_eq(wf_future_errmsg(f), "disk gone");
	cr_assert_eq(wf_await(f, NULL), WF_EIO);
	wf_future_release(f);

	f = wf_future_new();
	cr_assert_eq(wf_future_fail(f, WF_EPIPE, NULL), 0);
	cr_assert_null(wf_future_errmsg(f));
	cr_assert_eq(wf_await(f, NULL), WF_EPIPE);
	wf_future_release(f);

	/* OS errors pass through as -errno. */
	f = wf_future_new();
	cr_assert_eq(wf_future_fail(f, -ENOENT, "no such file"), 0);
	cr_assert_eq(wf_await(f, NULL), -ENOENT);
	wf_future_release(f);

	f = wf_future_new();
	cr_assert_eq(wf_future_cancel(f), 0);
	cr_assert_eq(wf_await(f, NULL), WF_ECANCELED);
	cr_assert_null(wf_future_errmsg(f));
	wf_future_release(f);
	check_no_leaks();
}

/* ---- done-callbacks ------------------------------------------------------------ */

typedef struct cb_log {
	int order[16];
	int n; /* atomic */
	wf_future *f;
	pthread_t thread[16];
	int bad_future; /* atomic */
} cb_log;

typedef struct cb_arg {
	cb_log *log;
	int id;
} cb_arg;

static void record_cb(wf_future *f, void *arg)
{
	cb_arg *a = arg;
	if (f != a->log->f)
		__atomic_add_fetch(&a->log->bad_future, 1, __ATOMIC_RELAXED);
	int i = __atomic_fetch_add(&a->log->n, 1, __ATOMIC_ACQ_REL);
	if (i < 16) {
		a->log->order[i] = a->id;
		a->log->thread[i] = pthread_self();
	}
}

static void *complete_in_thread(void *arg)
{
	cb_log *log = arg;
	CHECK_RC(wf_future_set(log->f, log), 0);
	return NULL;
}

Test(future, done_callbacks_run_once_in_order)
{
	cb_log log = {.f = wf_future_new()};
	cb_arg a[6];
	for (int i = 0; i < 6; i++)
		a[i] = (cb_arg){&log, i};
	for (int i = 0; i < 4; i++)
		cr_assert_eq(wf_future_add_done_callback(log.f, record_cb, &a[i]), 0);
	cr_assert_eq(log.n, 0, "a callback ran before completion");

	/* Completed on another thread: the callbacks run there, in order. */
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, complete_in_thread, &log), 0);
	pthread_join(th, NULL);
	check_none_failed();
	cr_assert_eq(log.n, 4);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(log.order[i], i);
		cr_assert(pthread_equal(log.thread[i], th));
	}

	/* Already complete: at once, on the caller's thread. */
	cr_assert_eq(wf_future_add_done_callback(log.f, record_cb, &a[4]), 0);
	cr_assert_eq(log.n, 5);
	cr_assert_eq(log.order[4], 4);
	cr_assert(pthread_equal(log.thread[4], pthread_self()));

	/* A refused second completion runs nothing again. */
	cr_assert_eq(wf_future_set(log.f, NULL), WF_EALREADY);
	cr_assert_eq(wf_future_fail(log.f, WF_EIO, NULL), WF_EALREADY);
	cr_assert_eq(log.n, 5);
	cr_assert_eq(log.bad_future, 0);
	wf_future_release(log.f);
	check_no_leaks();
}

/* Callbacks added while another thread completes: each runs exactly once. */
typedef struct cb_race {
	wf_future *f;
	int counts[64];
	pthread_barrier_t go;
} cb_race;

static void count_cb(wf_future *f, void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
}

static void *race_completer(void *arg)
{
	cb_race *r = arg;
	pthread_barrier_wait(&r->go);
	CHECK_RC(wf_future_set(r->f, NULL), 0);
	return NULL;
}

Test(future, done_callbacks_race_completion)
{
	long its = test_iters(300);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		cb_race r = {.f = wf_future_new()};
		pthread_barrier_init(&r.go, NULL, 2);
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, race_completer, &r), 0);
		pthread_barrier_wait(&r.go);
		for (int i = 0; i < 64; i++)
			cr_assert_eq(wf_future_add_done_callback(r.f, count_cb, &r.counts[i]), 0);
		pthread_join(th, NULL);
		for (int i = 0; i < 64; i++)
			cr_assert_eq(r.counts[i], 1, "callback %d ran %d times (iteration %d)", i,
				     r.counts[i], it);
		pthread_barrier_destroy(&r.go);
		wf_future_release(r.f);
	}
	check_none_failed();
	check_no_leaks();
}

/* ---- exactly once from any thread ------------------------------------------------ */

enum { SETTERS_THREADS = 3, SETTERS_TASKS = 5 };

typedef struct once_race {
	wf_future *f;
	int wins;     /* atomic */
	int already;  /* atomic */
	int go;       /* atomic: start line */
	int ready;    /* atomic */
	intptr_t winner;
} once_race;

static void try_complete(once_race *r, intptr_t id)
{
	int rc = id % 3 == 0 ? wf_future_fail(r->f, WF_EIO, "failed by a racer")
			     : wf_future_set(r->f, (void *)id);
	if (rc == 0) {
		__atomic_add_fetch(&r->wins, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&r->winner, id, __ATOMIC_RELEASE);
	} else {
		CHECK_RC(rc, WF_EALREADY);
		__atomic_add_fetch(&r->already, 1, __ATOMIC_RELAXED);
	}
}

typedef struct racer {
	once_race *r;
	intptr_t id;
} racer;

static void *racer_task(void *arg)
{
	racer *x = arg;
	__atomic_add_fetch(&x->r->ready, 1, __ATOMIC_RELEASE);
	int n = 0;
	while (!__atomic_load_n(&x->r->go, __ATOMIC_ACQUIRE) && n++ < 1000000)
		if (n % 64 == 0)
			wf_yield();
	try_complete(x->r, x->id);
	return NULL;
}

static void *racer_thread(void *arg)
{
	racer *x = arg;
	__atomic_add_fetch(&x->r->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&x->r->go, __ATOMIC_ACQUIRE))
		;
	try_complete(x->r, x->id);
	return NULL;
}

static void *once_main(void *arg)
{
	long its = test_iters(120);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		once_race r = {.f = wf_future_new()};
		racer xs[SETTERS_THREADS + SETTERS_TASKS];
		pthread_t th[SETTERS_THREADS];
		wf_task *ts[SETTERS_TASKS];
		for (int i = 0; i < SETTERS_THREADS + SETTERS_TASKS; i++)
			xs[i] = (racer){&r, i + 1};
		for (int i = 0; i < SETTERS_THREADS; i++)
			CHECK(pthread_create(&th[i], NULL, racer_thread, &xs[i]) == 0);
		for (int i = 0; i < SETTERS_TASKS; i++)
			ts[i] = wf_spawn(racer_task, &xs[SETTERS_THREADS + i]);
		/* Let the racers reach the line (the tasks need a worker). */
		for (int n = 0; __atomic_load_n(&r.ready, __ATOMIC_ACQUIRE) < SETTERS_THREADS &&
				n < 1000000;
		     n++)
			wf_yield();
		__atomic_store_n(&r.go, 1, __ATOMIC_RELEASE);
		void *v = NULL;
		int rc = wf_await_timeout(r.f, &v, LONG_MS);
		for (int i = 0; i < SETTERS_TASKS; i++)
			CHECK_RC(wf_join(ts[i], NULL), 0);
		for (int i = 0; i < SETTERS_THREADS; i++)
			pthread_join(th[i], NULL);
		CHECK_EQ(r.wins, 1);
		CHECK_EQ(r.already, SETTERS_THREADS + SETTERS_TASKS - 1);
		/* The outcome is the winner's, and stays so. */
		intptr_t w = r.winner;
		if (w % 3 == 0) {
			CHECK_RC(rc, WF_EIO);
			CHECK(wf_future_errmsg(r.f) != NULL &&
			      strcmp(wf_future_errmsg(r.f), "failed by a racer") == 0);
		} else {
			CHECK_RC(rc, 0);
			CHECK_EQ((intptr_t)v, w);
			CHECK(wf_future_errmsg(r.f) == NULL);
		}
		wf_future_release(r.f);
	}
	return NULL;
}

Test(future, completes_exactly_once_from_any_thread)
{
	run_weft(2, once_main, NULL);
	run_weft(4, once_main, NULL);
}

/* ---- no lost wake-up ---------------------------------------------------------------- */

/* A completer (a plain thread or a task) that completes each future it is
 * handed after a random delay, while the awaiter (a task or a plain thread)
 * awaits it: the completion lands before, during and after the awaiter's
 * suspension. */
typedef struct handoff {
	wf_future *slot; /* atomic: the future to complete next */
	int stop;        /* atomic */
	uint64_t seed;
	int iterations;
	int completer_is_task;
	int awaiter_is_task;
	wf_future *completer_done;
} handoff;

static void completer_loop(handoff *h)
{
	for (;;) {
		wf_future *f;
		unsigned idle = 0;
		while ((f = __atomic_exchange_n(&h->slot, NULL, __ATOMIC_ACQ_REL)) == NULL) {
			if (__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE))
				return;
			if (++idle % 128 == 0) {
				if (h->completer_is_task)
					wf_yield();
				else
					sched_yield();
			}
		}
		spin(rng_next(&h->seed) % 2000);
		CHECK_RC(wf_future_set(f, f), 0);
		wf_future_release(f);
	}
}

static void *completer_thread(void *arg)
{
	completer_loop(arg);
	return NULL;
}

static void *completer_task(void *arg)
{
	completer_loop(arg);
	return NULL;
}

static void awaiter_loop(handoff *h)
{
	uint64_t seed = 0x1234567u + (uint64_t)h->iterations;
	for (int i = 0; i < h->iterations && !check_any_failed(); i++) {
		wf_future *f = wf_future_new();
		__atomic_store_n(&h->slot, wf_future_retain(f), __ATOMIC_RELEASE);
		spin(rng_next(&seed) % 2000);
		void *v = NULL;
		int rc = wf_await_timeout(f, &v, LONG_MS);
		if (!CHECK_RC(rc, 0)) {
			fprintf(stderr, "lost wake-up at iteration %d (awaiter %s, completer %s)\n", i,
				h->awaiter_is_task ? "task" : "thread",
				h->completer_is_task ? "task" : "thread");
			/* The completer still holds a reference. */
		}
		CHECK(rc != 0 || v == f);
		wf_future_release(f);
	}
	__atomic_store_n(&h->stop, 1, __ATOMIC_RELEASE);
}

static void *awaiter_thread(void *arg)
{
	awaiter_loop(arg);
	return NULL;
}

static void *lost_wakeup_main(void *arg)
{
	handoff *h = arg;
	pthread_t ct, at;
	wf_task *ctask = NULL;
	if (h->completer_is_task)
		ctask = wf_spawn(completer_task, h);
	else
		CHECK(pthread_create(&ct, NULL, completer_thread, h) == 0);
	if (h->awaiter_is_task) {
		awaiter_loop(h);
	} else {
		CHECK(pthread_create(&at, NULL, awaiter_thread, h) == 0);
		/* Wait without holding the worker (the completer task may need
		 * it): poll the stop flag. */
		while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE))
			wf_sleep(1);
		pthread_join(at, NULL);
	}
	if (ctask != NULL)
		CHECK_RC(wf_join(ctask, NULL), 0);
	else
		pthread_join(ct, NULL);
	return NULL;
}

static void lost_wakeup(unsigned workers, int awaiter_is_task, int completer_is_task)
{
	handoff h = {.seed = 0x2545F4914F6CDD1Dull + workers,
		     .iterations = (int)test_iters(1500),
		     .awaiter_is_task = awaiter_is_task,
		     .completer_is_task = completer_is_task};
	run_weft(workers, lost_wakeup_main, &h);
}

Test(future, no_lost_wakeup_task_awaits_thread_completes)
{
	lost_wakeup(1, 1, 0);
	lost_wakeup(4, 1, 0);
}

Test(future, no_lost_wakeup_task_awaits_task_completes)
{
	/* Two workers at least: the completer spins on one of them. */
	lost_wakeup(2, 1, 1);
	lost_wakeup(4, 1, 1);
}

Test(future, no_lost_wakeup_thread_awaits_task_completes)
{
	lost_wakeup(2, 0, 1);
}

Test(future, no_lost_wakeup_thread_awaits_thread_completes)
{
	lost_wakeup(1, 0, 0);
}

/* Many awaiters on one future, tasks and threads: all of them wake. */
typedef struct crowd {
	wf_future *f;
	int woke;    /* atomic */
	int arrived; /* atomic */
} crowd;

static void crowd_await(crowd *c)
{
	__atomic_add_fetch(&c->arrived, 1, __ATOMIC_RELEASE);
	void *v = NULL;
	if (CHECK_RC(wf_await_timeout(c->f, &v, LONG_MS), 0) && CHECK(v == c))
		__atomic_add_fetch(&c->woke, 1, __ATOMIC_RELAXED);
}

static void *crowd_task(void *arg)
{
	crowd_await(arg);
	return NULL;
}

static void *crowd_thread(void *arg)
{
	crowd_await(arg);
	return NULL;
}

static void *crowd_main(void *arg)
{
	enum { TASKS = 24, THREADS = 3 };
	long its = test_iters(50);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		crowd c = {.f = wf_future_new()};
		wf_task *ts[TASKS];
		pthread_t th[THREADS];
		for (int i = 0; i < TASKS; i++)
			ts[i] = wf_spawn(crowd_task, &c);
		for (int i = 0; i < THREADS; i++)
			CHECK(pthread_create(&th[i], NULL, crowd_thread, &c) == 0);
		for (int n = 0; __atomic_load_n(&c.arrived, __ATOMIC_ACQUIRE) < TASKS + THREADS / 2 &&
				n < 100000;
		     n++)
			wf_yield();
		CHECK_RC(wf_future_set(c.f, &c), 0);
		for (int i = 0; i < TASKS; i++)
			CHECK_RC(wf_join(ts[i], NULL), 0);
		for (int i = 0; i < THREADS; i++)
			pthread_join(th[i], NULL);
		CHECK_EQ(c.woke, TASKS + THREADS);
		wf_future_release(c.f);
	}
	return NULL;
}

Test(future, many_awaiters_all_wake)
{
	run_weft(1, crowd_main, NULL);
	run_weft(4, crowd_main, NULL);
}

/* ---- plain threads block ---------------------------------------------------------- */

typedef struct blocker {
	wf_future *f;
	int set_started; /* atomic: the completer is about to complete */
	int rc;
	void *v;
	int saw_set_started;
} blocker;

static void *blocking_awaiter(void *arg)
{
	blocker *b = arg;
	b->rc = wf_await_timeout(b->f, &b->v, LONG_MS);
	b->saw_set_started = __atomic_load_n(&b->set_started, __ATOMIC_ACQUIRE);
	return NULL;
}

static void *blocking_main(void *arg)
{
	long its = test_iters(20);
	for (int it = 0; it < its; it++) {
		blocker b = {.f = wf_future_new(), .rc = 1};
		pthread_t th;
		if (!CHECK(pthread_create(&th, NULL, blocking_awaiter, &b) == 0))
			return NULL;
		/* Give the thread time to block, then complete. */
		CHECK_RC(wf_sleep(2), 0);
		__atomic_store_n(&b.set_started, 1, __ATOMIC_RELEASE);
		CHECK_RC(wf_future_set(b.f, &b), 0);
		pthread_join(th, NULL);
		CHECK_RC(b.rc, 0);
		CHECK(b.v == &b);
		/* It could only have returned after the completion began. */
		CHECK_EQ(b.saw_set_started, 1);
		wf_future_release(b.f);
	}
	return NULL;
}

Test(future, await_from_a_plain_thread_blocks)
{
	run_weft(2, blocking_main, NULL);
}

/* ---- timeouts ------------------------------------------------------------------------ */

static void check_timeout_then_complete(void)
{
	wf_future *f = wf_future_new();
	void *v = (void *)1;
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_await_timeout(f, &v, 20), WF_ETIMEDOUT);
	/* Never early. */
	CHECK(mono_ns() - t0 >= 20 * 1000000ull);
	CHECK(!wf_future_done(f));
	CHECK_RC(wf_future_result(f, NULL), WF_EAGAIN);
	CHECK_RC(wf_await_timeout(f, NULL, 0), WF_ETIMEDOUT);
	/* Still usable: it completes later, and awaits see it. */
	int x;
	CHECK_RC(wf_future_set(f, &x), 0);
	CHECK_RC(wf_await_timeout(f, &v, 0), 0);
	CHECK(v == &x);
	CHECK_RC(wf_await_timeout(f, &v, 20), 0);
	CHECK_RC(wf_await(f, &v), 0);
	CHECK(v == &x);
	wf_future_release(f);
}

static void *timeout_thread(void *arg)
{
	check_timeout_then_complete();
	return NULL;
}

/* A completion racing the deadline: either outcome, never both, never a
 * stale timer firing a later wait. */
static void *late_setter(void *arg)
{
	CHECK_RC(wf_sleep(1), 0);
	CHECK_RC(wf_future_set(arg, arg), 0);
	wf_future_release(arg);
	return NULL;
}

static void *timeout_main(void *arg)
{
	check_timeout_then_complete();
	pthread_t th;
	if (CHECK(pthread_create(&th, NULL, timeout_thread, NULL) == 0))
		pthread_join(th, NULL);

	long its = test_iters(100);
	for (int it = 0; it < its && !check_any_failed(); it++) {
		wf_future *f = wf_future_new();
		wf_task *t = wf_spawn(late_setter, wf_future_retain(f));
		void *v = NULL;
		int rc = wf_await_timeout(f, &v, 1);
		if (rc == 0)
			CHECK(v == f);
		else
			CHECK_RC(rc, WF_ETIMEDOUT);
		/* The next wait must not see the old deadline. */
		CHECK_RC(wf_await_timeout(f, &v, LONG_MS), 0);
		CHECK(v == f);
		CHECK_RC(wf_join(t, NULL), 0);
		wf_future_release(f);
	}
	return NULL;
}

Test(future, await_timeout)
{
	run_weft(1, timeout_main, NULL);
	run_weft(3, timeout_main, NULL);
}

/* ---- stale handles -------------------------------------------------------
 * A released future's handle, used after a new future took its memory:
 * WF_EINVAL (or false / NULL), and the new future is untouched. */

static int stale_cb_runs;

static void stale_cb(wf_future *f, void *arg)
{
	(void)f;
	(void)arg;
	__atomic_add_fetch(&stale_cb_runs, 1, __ATOMIC_RELAXED);
}

Test(future, stale_handle)
{
	wf_future *old = wf_future_new();
	cr_assert_not_null(old);
	cr_assert_eq(wf_future_fail(old, WF_EIO, "old"), 0);
	wf_future_release(old);
	wf_future *f = wf_future_new();
	cr_assert_not_null(f);
	cr_assert_neq(f, old);
	void *v = (void *)1;
	cr_assert_eq(wf_future_set(old, (void *)7), WF_EINVAL);
	cr_assert_eq(wf_future_fail(old, WF_EIO, NULL), WF_EINVAL);
	cr_assert_eq(wf_future_cancel(old), WF_EINVAL);
	cr_assert(!wf_future_done(f), "a stale completion reached the new future");
	cr_assert(!wf_future_done(old));
	cr_assert_eq(wf_future_result(old, &v), WF_EINVAL);
	cr_assert_eq(wf_await(old, &v), WF_EINVAL);
	cr_assert_eq(wf_await_timeout(old, &v, 0), WF_EINVAL);
	cr_assert_null(wf_future_errmsg(old));
	cr_assert_eq(wf_future_add_done_callback(old, stale_cb, NULL), WF_EINVAL);
	cr_assert_null(wf_future_retain(old));
	wf_future_release(old); /* does nothing: f keeps its one reference */
	cr_assert_eq(wf_future_set(f, (void *)9), 0);
	cr_assert_eq(wf_future_result(f, &v), 0);
	cr_assert_eq(v, (void *)9);
	cr_assert_eq(stale_cb_runs, 0);
	wf_future_release(f);
	cr_assert_eq(wf_future_set(f, NULL), WF_EINVAL, "released twice over");
	cr_assert_eq(wf_future_result(f, &v), WF_EINVAL);
}

/*
 * wf_gather and wf_gather_futures: results in argument order, the first
 * failure returned at once while the others go on, WF_GATHER_ALL collecting
 * every outcome, cancelling the gather cancelling every child (and no child
 * left running when it returns), argument errors. Many rounds on 1 to 8
 * workers, children that finish at once, yield, sleep or get stolen.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

static const unsigned worker_counts[] = {1, 2, 4, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* Children that are running right now, and that have finished. */
static int running;
static int finished;

typedef struct child_arg {
	uintptr_t value;
	int how;      /* 0 return at once, 1 yield, 2 sleep 1 ms, 3 spin */
	int fail;     /* fail with this code (0: none) */
	wf_future *gate; /* if set: await it first */
} child_arg;

static void *child(void *arg)
{
	child_arg *a = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	void *res = (void *)a->value;
	int rc = 0;
	if (a->gate != NULL)
		rc = wf_await(a->gate, NULL);
	if (rc == 0) {
		switch (a->how) {
		case 1: rc = wf_yield(); break;
		case 2: rc = wf_sleep(1); break;
		case 3: spin(2000); break;
		default: break;
		}
	}
	if (rc == 0 && a->fail != 0)
		res = wf_fail(a->fail, "child failed on purpose");
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&finished, 1, __ATOMIC_SEQ_CST);
	return res;
}

/* ---- results in order -------------------------------------------------- */

#define NCHILD 64

static void *results_main(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 7919 + 1;
	long rounds = test_iters_min(60, 6);
	for (int round = 0; round < rounds; round++) {
		size_t n = 1 + rng_next(&seed) % NCHILD;
		child_arg args[NCHILD];
		wf_task *tasks[NCHILD];
		wf_outcome out[NCHILD];
		for (size_t i = 0; i < n; i++) {
			args[i] = (child_arg){.value = 1000 * round + i, .how = rng_next(&seed) % 4};
			tasks[i] = wf_spawn(child, &args[i]);
			if (!CHECK(tasks[i] != NULL))
				return NULL;
		}
		if (round % 3 == 1)
			wf_yield(); /* let thieves take some */
		unsigned flags = round % 2 ? WF_GATHER_ALL : 0;
		if (!CHECK_RC(wf_gather(tasks, n, out, flags), 0))
			return NULL;
		for (size_t i = 0; i < n; i++) {
			CHECK_RC(out[i].err, 0);
			CHECK_EQ((uintptr_t)out[i].value, 1000 * round + i);
			CHECK(out[i].msg == NULL);
		}
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
	}
	/* Without an out array, and with no task at all. */
	child_arg a = {.value = 5};
	wf_task *t = wf_spawn(child, &a);
	CHECK_RC(wf_gather(&t, 1, NULL, 0), 0);
	CHECK_RC(wf_gather(NULL, 0, NULL, 0), 0);
	return NULL;
}

Test(gather, results_in_argument_order)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], results_main, (void *)(uintptr_t)i);
}

/* ---- the first failure -------------------------------------------------- */

static void *first_failure_main(void *arg)
{
	long rounds = test_iters_min(40, 8);
	for (int round = 0; round < rounds; round++) {
		enum { N = 8 };
		__atomic_store_n(&finished, 0, __ATOMIC_SEQ_CST);
		wf_future *gate = wf_future_new();
		child_arg args[N];
		wf_task *tasks[N];
		wf_outcome out[N];
		size_t bad = (size_t)round % N;
		for (size_t i = 0; i < N; i++) {
			args[i] = (child_arg){.value = i};
			if (i == bad)
				args[i].fail = WF_EIO;
			else if (i % 2 == 0)
				args[i].gate = gate; /* still running when gather returns */
			tasks[i] = wf_spawn(child, &args[i]);
		}
		int rc = wf_gather(tasks, N, out, 0);
		CHECK_RC(rc, WF_EIO);
		CHECK_RC(out[bad].err, WF_EIO);
		CHECK(out[bad].msg != NULL && strcmp(out[bad].msg, "child failed on purpose") == 0);
		for (size_t i = 0; i < N; i++) {
			if (i == bad)
				continue;
			if (args[i].gate != NULL)
				CHECK_RC(out[i].err, WF_EAGAIN); /* detached, going on */
			else if (out[i].err == 0)
				CHECK_EQ((uintptr_t)out[i].value, i);
			else
				CHECK_RC(out[i].err, WF_EAGAIN);
		}
		wf_outcomes_clear(out, N);
		CHECK(out[bad].msg == NULL);
		/* The detached ones finish once the gate opens. */
		wf_future_set(gate, NULL);
		while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) != N)
			wf_sleep(1);
		wf_future_release(gate);
	}
	return NULL;
}

Test(gather, first_failure_returns_at_once_and_the_others_go_on)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], first_failure_main, NULL);
}

/* A child cancelled by someone else counts as a failure (asyncio). */
static void *cancelled_child_main(void *arg)
{
	/* b may still run after this returns (detached): static storage. */
	wf_future *never = wf_future_new();
	static child_arg a, b;
	a = (child_arg){.value = 1, .gate = never};
	b = (child_arg){.value = 2};
	wf_task *tasks[2] = {wf_spawn(child, &a), wf_spawn(child, &b)};
	wf_cancel(tasks[0]);
	wf_outcome out[2];
	CHECK_RC(wf_gather(tasks, 2, out, 0), WF_ECANCELED);
	CHECK_RC(out[0].err, WF_ECANCELED);
	CHECK_EQ(wf_cancelling(), 0); /* the caller was not cancelled */
	wf_outcomes_clear(out, 2);
	wf_future_release(never);
	return NULL;
}

Test(gather, a_cancelled_child_is_a_failure)
{
	run_weft(2, cancelled_child_main, NULL);
}

/* ---- every outcome ------------------------------------------------------ */

static void *all_main(void *arg)
{
	uint64_t seed = 99;
	long rounds = test_iters(40);
	for (int round = 0; round < rounds; round++) {
		enum { N = 16 };
		child_arg args[N];
		wf_task *tasks[N];
		wf_outcome out[N];
		for (size_t i = 0; i < N; i++) {
			args[i] = (child_arg){.value = i, .how = rng_next(&seed) % 4};
			if (i % 3 == 0)
				args[i].fail = i % 2 ? WF_EIO : WF_EPIPE;
			tasks[i] = wf_spawn(child, &args[i]);
		}
		CHECK_RC(wf_gather(tasks, N, out, WF_GATHER_ALL), 0);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		for (size_t i = 0; i < N; i++) {
			if (i % 3 == 0) {
				CHECK_RC(out[i].err, i % 2 ? WF_EIO : WF_EPIPE);
				CHECK(out[i].value == NULL);
				CHECK(out[i].msg != NULL);
			} else {
				CHECK_RC(out[i].err, 0);
				CHECK_EQ((uintptr_t)out[i].value, i);
			}
		}
		wf_outcomes_clear(out, N);
	}
	return NULL;
}

Test(gather, all_collects_every_outcome)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], all_main, NULL);
}

/* ---- cancelling the gather ---------------------------------------------- */

typedef struct gatherer_arg {
	wf_future *started;
	int rc;
	int cancelling;
	int running_after;
	int caught; /* children that saw their cancellation */
	unsigned flags;
} gatherer_arg;

static void *stubborn_child(void *arg)
{
	gatherer_arg *g = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	int rc = wf_sleep(10000);
	if (rc == WF_ECANCELED)
		__atomic_add_fetch(&g->caught, 1, __ATOMIC_SEQ_CST);
	wf_sleep(1); /* still not done when the cancellation arrives */
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *gatherer(void *arg)
{
	gatherer_arg *g = arg;
	enum { N = 6 };
	wf_task *tasks[N];
	for (size_t i = 0; i < N; i++)
		tasks[i] = wf_spawn(stubborn_child, g);
	wf_future_set(g->started, NULL);
	g->rc = wf_gather(tasks, N, NULL, g->flags);
	g->cancelling = wf_cancelling();
	g->running_after = __atomic_load_n(&running, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *cancel_gather_main(void *arg)
{
	long rounds = test_iters_min(30, 6);
	for (int round = 0; round < rounds; round++) {
		gatherer_arg g = {.started = wf_future_new(), .flags = round % 2 ? WF_GATHER_ALL : 0};
		wf_task *t = wf_spawn(gatherer, &g);
		wf_await(g.started, NULL);
		wf_sleep(round % 3); /* before or after the children started */
		CHECK_RC(wf_cancel(t), 0);
		/* It returned with the cancellation unhandled: its outcome. */
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		CHECK_RC(g.rc, WF_ECANCELED);
		CHECK_EQ(g.cancelling, 1);
		CHECK_EQ(g.running_after, 0);
		wf_future_release(g.started);
	}
	return NULL;
}

Test(gather, cancelling_the_gather_cancels_every_child)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], cancel_gather_main, NULL);
}

/* ---- futures ------------------------------------------------------------ */

typedef struct setter_arg {
	wf_future **fs;
	size_t n;
} setter_arg;

static void *setter(void *arg)
{
	setter_arg *s = arg;
	for (size_t i = s->n; i-- > 0;) {
		wf_yield();
		if (i == 3)
			wf_future_fail(s->fs[i], WF_EPIPE, "pipe");
		else
			wf_future_set(s->fs[i], (void *)(uintptr_t)(i * 10));
	}
	return NULL;
}

static void *futures_main(void *arg)
{
	enum { N = 8 };
	long rounds = test_iters(40);
	for (int round = 0; round < rounds; round++) {
		wf_future *fs[N];
		wf_outcome out[N];
		for (size_t i = 0; i < N; i++)
			fs[i] = wf_future_new();
		setter_arg s = {fs, N};
		wf_task *t = wf_spawn(setter, &s);
		CHECK_RC(wf_gather_futures(fs, N, out, WF_GATHER_ALL), 0);
		for (size_t i = 0; i < N; i++) {
			if (i == 3) {
				CHECK_RC(out[i].err, WF_EPIPE);
				CHECK(out[i].msg != NULL && strcmp(out[i].msg, "pipe") == 0);
			} else {
				CHECK_RC(out[i].err, 0);
				CHECK_EQ((uintptr_t)out[i].value, i * 10);
			}
		}
		wf_outcomes_clear(out, N);
		CHECK_RC(wf_join(t, NULL), 0);
		/* Default mode: the failure. */
		CHECK_RC(wf_gather_futures(fs, N, out, 0), WF_EPIPE);
		wf_outcomes_clear(out, N);
		for (size_t i = 0; i < N; i++)
			wf_future_release(fs[i]);
	}
	/* Cancelling the caller cancels the pending futures. */
	return NULL;
}

Test(gather, futures)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], futures_main, NULL);
}

typedef struct fut_gatherer_arg {
	wf_future *fs[3];
	wf_future *started;
	int rc;
} fut_gatherer_arg;

static void *fut_gatherer(void *arg)
{
	fut_gatherer_arg *g = arg;
	wf_future_set(g->started, NULL);
	g->rc = wf_gather_futures(g->fs, 3, NULL, 0);
	return NULL;
}

static void *cancel_futures_main(void *arg)
{
	fut_gatherer_arg g = {.started = wf_future_new()};
	for (int i = 0; i < 3; i++)
		g.fs[i] = wf_future_new();
	wf_future_set(g.fs[1], NULL);
	wf_task *t = wf_spawn(fut_gatherer, &g);
	wf_await(g.started, NULL);
	wf_cancel(t);
	wf_join(t, NULL);
	CHECK_RC(g.rc, WF_ECANCELED);
	void *v;
	CHECK_RC(wf_future_result(g.fs[0], &v), WF_ECANCELED);
	CHECK_RC(wf_future_result(g.fs[1], &v), 0);
	CHECK_RC(wf_future_result(g.fs[2], &v), WF_ECANCELED);
	for (int i = 0; i < 3; i++)
		wf_future_release(g.fs[i]);
	wf_future_release(g.started);
	return NULL;
}

Test(gather, cancelling_a_futures_gather_cancels_the_futures)
{
	run_weft(2, cancel_futures_main, NULL);
}

/* ---- bad input and plain threads --------------------------------------- */

static void *errors_main(void *arg)
{
	wf_outcome out[2];
	CHECK_RC(wf_gather(NULL, 2, out, 0), WF_EINVAL);
	CHECK_RC(wf_gather_futures(NULL, 1, out, 0), WF_EINVAL);
	child_arg a = {.value = 1};
	wf_task *tasks[2] = {wf_spawn(child, &a), NULL};
	CHECK_RC(wf_gather(tasks, 2, out, 0), WF_EINVAL);
	CHECK_RC(wf_gather(tasks, 1, out, 1u << 7), WF_EINVAL);
	/* Nothing was given back: the handle still works. */
	CHECK_RC(wf_gather(tasks, 1, out, 0), 0);
	CHECK_EQ((uintptr_t)out[0].value, 1);
	return NULL;
}

Test(gather, bad_input)
{
	run_weft(2, errors_main, NULL);
}

static void *spawner(void *arg)
{
	static child_arg args[4] = {{.value = 0, .how = 2}, {.value = 1}, {.value = 2, .how = 1},
				    {.value = 3, .how = 2}};
	wf_task **tasks = arg;
	for (int i = 0; i < 4; i++)
		tasks[i] = wf_spawn(child, &args[i]);
	return NULL;
}

Test(gather, from_a_plain_thread)
{
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(NULL, &rt), 0);
	wf_task *tasks[4];
	wf_future *f;
	cr_assert_eq(wf_runtime_submit(rt, spawner, tasks, &f), 0);
	cr_assert_eq(wf_await(f, NULL), 0);
	wf_future_release(f);
	wf_outcome out[4];
	cr_assert_eq(wf_gather(tasks, 4, out, 0), 0);
	for (uintptr_t i = 0; i < 4; i++)
		cr_assert_eq((uintptr_t)out[i].value, i);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
}

/*
 * Executor pools: run_in_executor, to_thread, user pools, the default
 * pool's growth, retirement and bound, cancellation before and during a
 * call, both shutdowns, calls from plain threads, failures, bad input.
 *
 * Calls that must stay in flight block on a gate (a plain mutex and
 * condition variable) that the test opens, so every ordering a test relies
 * on is forced, never timed. Waits for something that happens on another
 * thread poll with a bound (wait_until), so a test stops by itself.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "executor/executor_internal.h"
#include "rt_check.h"
#include "weft.h"

#if defined(WF_TSAN) || defined(WF_ASAN)
#define SLOW 1
#else
#define SLOW 0
#endif

/* ---- helpers ---------------------------------------------------------- */

typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;
	unsigned inside; /* calls that reached the gate */
	unsigned max_inside;
	unsigned passed;
} gate;

static gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0, 0};

static void gate_open(void)
{
	pthread_mutex_lock(&g.mu);
	g.open = true;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static unsigned gate_inside(void)
{
	pthread_mutex_lock(&g.mu);
	unsigned n = g.inside;
	pthread_mutex_unlock(&g.mu);
	return n;
}

static unsigned gate_passed(void)
{
	pthread_mutex_lock(&g.mu);
	unsigned n = g.passed;
	pthread_mutex_unlock(&g.mu);
	return n;
}

/* A blocking call: waits at the gate, returns arg + 1. */
static void *gated(void *arg)
{
	pthread_mutex_lock(&g.mu);
	g.inside++;
	if (g.inside > g.max_inside)
		g.max_inside = g.inside;
	while (!g.open)
		pthread_cond_wait(&g.cv, &g.mu);
	g.inside--;
	g.passed++;
	pthread_mutex_unlock(&g.mu);
	return (void *)((uintptr_t)arg + 1);
}

/* Polls cond (a task sleeps, a thread naps) up to about 20 s. */
#define WAIT_ROUNDS 20000
#define wait_until(cond)                                                       \
	__extension__({                                                        \
		int wu_i_ = 0;                                                 \
		while (!(cond) && wu_i_++ < WAIT_ROUNDS)                       \
			wf_sleep(1);                                           \
		CHECK(cond);                                                   \
	})

static void *twice(void *arg)
{
	return (void *)((uintptr_t)arg * 2);
}

static unsigned ran, drops_unrun, drops_ran;

static void *counted(void *arg)
{
	__atomic_fetch_add(&ran, 1, __ATOMIC_RELAXED);
	return gated(arg);
}

static void count_drop(void *arg, void *value)
{
	(void)arg;
	if (value == NULL)
		__atomic_fetch_add(&drops_unrun, 1, __ATOMIC_RELAXED);
	else
		__atomic_fetch_add(&drops_ran, 1, __ATOMIC_RELAXED);
}

static wf_pool_stats stats_of(wf_pool *p)
{
	wf_pool_stats st;
	memset(&st, 0, sizeof(st));
	CHECK_RC(wf_pool_get_stats(p, &st), 0);
	return st;
}

/* ---- basics ----------------------------------------------------------- */

static void *basic_main(void *arg)
{
	void *v = NULL;
	CHECK_RC(wf_to_thread(twice, (void *)21, &v), 0);
	CHECK_EQ((uintptr_t)v, 42);
	wf_future *f;
	CHECK_RC(wf_run_in_executor(NULL, twice, (void *)5, &f), 0);
	CHECK_RC(wf_await(f, &v), 0);
	CHECK_EQ((uintptr_t)v, 10);
	wf_future_release(f);
	CHECK_RC(wf_to_thread(twice, (void *)1, NULL), 0);
	return NULL;
}

Test(executor, to_thread_and_run_in_executor)
{
	run_weft(2, basic_main, NULL);
	/* wf_run shut the default pool down: no thread is left. */
	wf_pool_stats st;
	cr_assert_eq(wf_pool_get_stats(NULL, &st), 0);
	cr_assert_eq(st.threads, 0);
	cr_assert_geq(st.started, 1);
	cr_assert_eq(st.queued, 0);
}

/* ---- workers keep running while calls block --------------------------- */

#define BLOCKED_CALLS 64
static unsigned worker_mask;
static unsigned all_workers_mask;

static void *probe(void *arg)
{
	(void)arg;
	for (int i = 0; i < WAIT_ROUNDS; i++) {
		__atomic_fetch_or(&worker_mask, 1u << wf_worker_id(), __ATOMIC_RELAXED);
		if (__atomic_load_n(&worker_mask, __ATOMIC_RELAXED) == all_workers_mask)
			return NULL;
		wf_sleep(1);
	}
	return NULL;
}

static void *blocked_main(void *arg)
{
	unsigned workers = wf_runtime_workers(wf_runtime_current());
	all_workers_mask = (1u << workers) - 1;
	wf_future *fs[BLOCKED_CALLS];
	for (uintptr_t i = 0; i < BLOCKED_CALLS; i++)
		CHECK_RC(wf_run_in_executor(NULL, gated, (void *)i, &fs[i]), 0);
	/* Every call is running on a pool thread, blocked. */
	wait_until(gate_inside() == BLOCKED_CALLS);
	wf_task *probes[16];
	for (int i = 0; i < 16; i++)
		probes[i] = wf_spawn(probe, NULL);
	for (int i = 0; i < 16; i++)
		CHECK_RC(wf_join(probes[i], NULL), 0);
	/* Tasks ran on every worker while all the calls were blocked. */
	CHECK_EQ(__atomic_load_n(&worker_mask, __ATOMIC_RELAXED), all_workers_mask);
	CHECK_EQ(gate_passed(), 0);
	gate_open();
	for (uintptr_t i = 0; i < BLOCKED_CALLS; i++) {
		void *v = NULL;
		CHECK_RC(wf_await(fs[i], &v), 0);
		CHECK_EQ((uintptr_t)v, i + 1);
		wf_future_release(fs[i]);
	}
	return NULL;
}

Test(executor, workers_run_tasks_while_calls_block)
{
	run_weft(4, blocked_main, NULL);
	cr_assert_eq(gate_passed(), BLOCKED_CALLS);
}

/* The default bound lets a thousand blocking calls be in flight at once. */
#define THOUSAND 1000

static void *thousand_main(void *arg)
{
	static wf_future *fs[THOUSAND];
	for (uintptr_t i = 0; i < THOUSAND; i++)
		CHECK_RC(wf_run_in_executor(NULL, gated, (void *)i, &fs[i]), 0);
	wait_until(gate_inside() == THOUSAND);
	CHECK_EQ(wf_pool_queued(NULL), 0);
	CHECK_EQ(stats_of(NULL).threads, THOUSAND);
	gate_open();
	uintptr_t sum = 0;
	for (uintptr_t i = 0; i < THOUSAND; i++) {
		void *v = NULL;
		CHECK_RC(wf_await(fs[i], &v), 0);
		sum += (uintptr_t)v;
		wf_future_release(fs[i]);
	}
	CHECK_EQ(sum, (uintptr_t)THOUSAND * (THOUSAND + 1) / 2);
	return NULL;
}

Test(executor, thousand_calls_in_flight_with_default_bound)
{
	run_weft(2, thousand_main, NULL);
	cr_assert_eq(g.max_inside, THOUSAND);
	cr_assert_eq(stats_of(NULL).threads, 0);
}

/* ---- bound and queue -------------------------------------------------- */

static void *bound_main(void *arg)
{
	CHECK_RC(wf_default_pool_configure(4, 10000), 0);
	wf_future *fs[20];
	for (uintptr_t i = 0; i < 20; i++)
		CHECK_RC(wf_run_in_executor(NULL, gated, (void *)i, &fs[i]), 0);
	wait_until(gate_inside() == 4);
	/* At the bound, calls queue; none fails. */
	CHECK_EQ(wf_pool_queued(NULL), 16);
	wf_pool_stats st = stats_of(NULL);
	CHECK_EQ(st.threads, 4);
	CHECK_EQ(st.max_threads, 4);
	CHECK_EQ(st.queued, 16);
	gate_open();
	for (uintptr_t i = 0; i < 20; i++) {
		void *v = NULL;
		CHECK_RC(wf_await(fs[i], &v), 0);
		CHECK_EQ((uintptr_t)v, i + 1);
		wf_future_release(fs[i]);
	}
	CHECK_EQ(wf_pool_queued(NULL), 0);
	return NULL;
}

Test(executor, bound_queues_calls)
{
	run_weft(2, bound_main, NULL);
	cr_assert_eq(g.max_inside, 4);
	cr_assert_eq(g.passed, 20);
}

/* ---- keep-alive: retire and regrow ------------------------------------ */

static void *regrow_main(void *arg)
{
	CHECK_RC(wf_default_pool_configure(0, 1), 0);
	for (int round = 0; round < 3 && !check_any_failed(); round++) {
		wf_pool_stats before = stats_of(NULL);
		wf_future *fs[8];
		pthread_mutex_lock(&g.mu);
		g.open = false;
		pthread_mutex_unlock(&g.mu);
		for (uintptr_t i = 0; i < 8; i++)
			CHECK_RC(wf_run_in_executor(NULL, gated, (void *)i, &fs[i]), 0);
		wait_until(gate_inside() == 8);
		wf_pool_stats busy = stats_of(NULL);
		CHECK_EQ(busy.threads, 8);
		CHECK(busy.started >= before.started + 8);
		gate_open();
		for (int i = 0; i < 8; i++) {
			CHECK_RC(wf_await(fs[i], NULL), 0);
			wf_future_release(fs[i]);
		}
		/* Idle for the keep-alive, every thread retires. */
		wait_until(stats_of(NULL).threads == 0);
		wf_pool_stats after = stats_of(NULL);
		CHECK(after.retired >= busy.retired + 8);
		CHECK_EQ(after.idle, 0);
	}
	CHECK_RC(wf_default_pool_configure(0, 10000), 0);
	return NULL;
}

Test(executor, idle_threads_retire_and_pool_regrows)
{
	run_weft(2, regrow_main, NULL);
}

/* A longer keep-alive set while threads are parked applies to them. */
static void *reconfigure_main(void *arg)
{
	CHECK_RC(wf_default_pool_configure(0, WF_FOREVER), 0);
	gate_open();
	wf_future *fs[4];
	for (uintptr_t i = 0; i < 4; i++)
		CHECK_RC(wf_run_in_executor(NULL, gated, (void *)i, &fs[i]), 0);
	for (int i = 0; i < 4; i++) {
		CHECK_RC(wf_await(fs[i], NULL), 0);
		wf_future_release(fs[i]);
	}
	CHECK(stats_of(NULL).threads >= 1);
	CHECK_RC(wf_default_pool_configure(0, 0), 0);
	wait_until(stats_of(NULL).threads == 0);
	CHECK_RC(wf_default_pool_configure(0, 10000), 0);
	return NULL;
}

Test(executor, keepalive_change_reaches_parked_threads)
{
	run_weft(2, reconfigure_main, NULL);
}

/* ---- failures --------------------------------------------------------- */

static void *failing(void *arg)
{
	wf_blocking_fail(WF_EIO, "first");
	return wf_blocking_fail(-ENOENT, "no such thing");
}

static void *failing_positive(void *arg)
{
	return wf_blocking_fail(5, NULL);
}

static void *failures_main(void *arg)
{
	wf_future *f;
	CHECK_RC(wf_run_in_executor(NULL, failing, NULL, &f), 0);
	void *v = (void *)1;
	CHECK_RC(wf_await(f, &v), -ENOENT);
	CHECK(v == NULL);
	CHECK(wf_future_errmsg(f) != NULL && strcmp(wf_future_errmsg(f), "no such thing") == 0);
	wf_future_release(f);

	char *msg = NULL;
	CHECK_RC(wf_to_thread_ex(failing, NULL, NULL, &v, &msg), -ENOENT);
	CHECK(msg != NULL && strcmp(msg, "no such thing") == 0);
	free(msg);

	CHECK_RC(wf_to_thread_ex(failing_positive, NULL, NULL, NULL, &msg), WF_EINVAL);
	CHECK(msg == NULL);
	/* Success leaves no message. */
	msg = (char *)"x";
	CHECK_RC(wf_to_thread_ex(twice, (void *)2, NULL, &v, &msg), 0);
	CHECK(msg == NULL);
	return NULL;
}

Test(executor, failure_code_and_message_reach_the_caller)
{
	run_weft(2, failures_main, NULL);
	/* Outside a call and outside a task it does nothing. */
	cr_assert_null(wf_blocking_fail(WF_EIO, "ignored"));
}

/* wf_blocking_fail from a task is wf_fail. */
static void *task_blocking_fail(void *arg)
{
	return wf_blocking_fail(WF_EIO, "from a task");
}

static void *task_fail_main(void *arg)
{
	wf_task *t = wf_spawn(task_blocking_fail, NULL);
	char *msg = NULL;
	CHECK_RC(wf_join_ex(t, NULL, &msg), WF_EIO);
	CHECK(msg != NULL && strcmp(msg, "from a task") == 0);
	free(msg);
	return NULL;
}

Test(executor, blocking_fail_in_a_task_fails_the_task)
{
	run_weft(2, task_fail_main, NULL);
}

/* ---- bad input -------------------------------------------------------- */

Test(executor, bad_input)
{
	wf_future *f = (wf_future *)1;
	cr_assert_eq(wf_run_in_executor(NULL, NULL, NULL, &f), WF_EINVAL);
	cr_assert_null(f);
	cr_assert_eq(wf_run_in_executor(NULL, twice, NULL, NULL), WF_EINVAL);
	cr_assert_eq(wf_run_in_executor_ex(NULL, NULL, NULL, &f), WF_EINVAL);
	void *v = (void *)1;
	cr_assert_eq(wf_to_thread(NULL, NULL, &v), WF_EINVAL);
	cr_assert_null(v);
	cr_assert_eq(wf_to_thread_ex(NULL, NULL, NULL, NULL, NULL), WF_EINVAL);

	wf_pool *p = (wf_pool *)1;
	cr_assert_eq(wf_pool_new("x", 0, &p), WF_EINVAL);
	cr_assert_null(p);
	cr_assert_eq(wf_pool_new("x", WF_POOL_MAX_THREADS + 1, &p), WF_EINVAL);
	cr_assert_eq(wf_pool_new("x", 1, NULL), WF_EINVAL);
	cr_assert_eq(wf_pool_shutdown(NULL, WF_POOL_WAIT), WF_EINVAL);

	cr_assert_eq(wf_pool_new(NULL, 1, &p), 0);
	cr_assert_eq(wf_pool_shutdown(p, 0), WF_EINVAL);
	cr_assert_eq(wf_pool_shutdown(p, 3), WF_EINVAL);
	cr_assert_eq(wf_pool_get_stats(p, NULL), WF_EINVAL);
	cr_assert_eq(wf_pool_queued(p), 0);
	cr_assert_eq(wf_pool_shutdown(p, WF_POOL_WAIT), 0);

	cr_assert_eq(wf_default_pool_configure(WF_POOL_MAX_THREADS + 1, 10), WF_EINVAL);
	cr_assert_eq(wf_pool_get_stats(NULL, NULL), WF_EINVAL);
	cr_assert_eq(wf_pool_queued(NULL), 0);
	wf_pool_stats st;
	cr_assert_eq(wf_pool_get_stats(NULL, &st), 0);
	cr_assert_eq(st.max_threads, 1024);
	cr_assert_eq(st.threads, 0);
}

/* ---- calls from plain threads ----------------------------------------- */

#define PLAIN_THREADS 4
#define PLAIN_CALLS (SLOW ? 50 : 200)

static void *plain_thread(void *arg)
{
	uintptr_t base = (uintptr_t)arg * 100000;
	for (uintptr_t i = 0; i < PLAIN_CALLS; i++) {
		void *v = NULL;
		if (i % 2 == 0) {
			CHECK_RC(wf_to_thread(twice, (void *)(base + i), &v), 0);
		} else {
			wf_future *f;
			CHECK_RC(wf_run_in_executor(NULL, twice, (void *)(base + i), &f), 0);
			CHECK_RC(wf_await(f, &v), 0);
			wf_future_release(f);
		}
		CHECK_EQ((uintptr_t)v, 2 * (base + i));
	}
	return NULL;
}

Test(executor, calls_from_plain_threads)
{
	pthread_t t[PLAIN_THREADS];
	for (uintptr_t i = 0; i < PLAIN_THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, plain_thread, (void *)i), 0);
	for (int i = 0; i < PLAIN_THREADS; i++)
		pthread_join(t[i], NULL);
	check_none_failed();
	wf_pool_stats st;
	cr_assert_eq(wf_pool_get_stats(NULL, &st), 0);
	cr_assert_geq(st.threads, 1);
	/* Without wf_run, the hook is what stops the pool. */
	wf__default_pool_shutdown();
	cr_assert_eq(wf_pool_get_stats(NULL, &st), 0);
	cr_assert_eq(st.threads, 0);
	cr_assert_eq(st.idle, 0);
	/* And the pool serves calls again afterwards. */
	void *v;
	cr_assert_eq(wf_to_thread(twice, (void *)4, &v), 0);
	cr_assert_eq((uintptr_t)v, 8);
	wf__default_pool_shutdown();
}

/* ---- user pools ------------------------------------------------------- */

static void *thread_name_of(void *arg)
{
	char *name = calloc(1, 16);
	if (name != NULL)
		pthread_getname_np(pthread_self(), name, 16);
	return name;
}

static void *user_pool_main(void *arg)
{
	wf_pool *p;
	CHECK_RC(wf_pool_new("cruncher", 2, &p), 0);
	wf_future *fs[50];
	for (uintptr_t i = 0; i < 50; i++)
		CHECK_RC(wf_run_in_executor(p, twice, (void *)i, &fs[i]), 0);
	for (uintptr_t i = 0; i < 50; i++) {
		void *v = NULL;
		CHECK_RC(wf_await(fs[i], &v), 0);
		CHECK_EQ((uintptr_t)v, 2 * i);
		wf_future_release(fs[i]);
	}
	CHECK(stats_of(p).threads <= 2);
	CHECK_EQ(stats_of(p).max_threads, 2);
	/* Its threads carry its name. */
	wf_call_opts opts = {.pool = p};
	char *name = NULL;
	CHECK_RC(wf_to_thread_ex(thread_name_of, NULL, &opts, (void **)&name, NULL), 0);
	CHECK(name != NULL && strncmp(name, "cruncher-", 9) == 0);
	free(name);
	/* A long name is cut so that the index still fits. */
	wf_pool *q;
	CHECK_RC(wf_pool_new("a-very-long-pool-name", 1, &q), 0);
	opts.pool = q;
	CHECK_RC(wf_to_thread_ex(thread_name_of, NULL, &opts, (void **)&name, NULL), 0);
	CHECK(name != NULL && strcmp(name, "a-very-long-p-0") == 0);
	free(name);
	CHECK_RC(wf_pool_shutdown(q, WF_POOL_WAIT), 0);
	/* Shut down from a task: the task suspends while threads leave. */
	CHECK_RC(wf_pool_shutdown(p, WF_POOL_WAIT), 0);
	return NULL;
}

Test(executor, user_pool_runs_calls_on_named_threads)
{
	run_weft(2, user_pool_main, NULL);
}

/* The default pool's threads are named too. */
static void *default_name_main(void *arg)
{
	char *name = NULL;
	CHECK_RC(wf_to_thread(thread_name_of, NULL, (void **)&name), 0);
	CHECK(name != NULL && strncmp(name, "wf-blocking-", 12) == 0);
	free(name);
	return NULL;
}

Test(executor, default_pool_threads_are_named)
{
	run_weft(2, default_name_main, NULL);
}

/* ---- shutdown --------------------------------------------------------- */

static void *shutdown_wait_main(void *arg)
{
	wf_pool *p;
	CHECK_RC(wf_pool_new("drain", 2, &p), 0);
	wf_call_opts opts = {.pool = p, .drop = count_drop};
	wf_future *fs[40];
	gate_open();
	for (uintptr_t i = 0; i < 40; i++)
		CHECK_RC(wf_run_in_executor_ex(counted, (void *)i, &opts, &fs[i]), 0);
	CHECK_RC(wf_pool_shutdown(p, WF_POOL_WAIT), 0);
	/* Every queued call ran before the shutdown returned. */
	CHECK_EQ(__atomic_load_n(&ran, __ATOMIC_RELAXED), 40);
	for (uintptr_t i = 0; i < 40; i++) {
		CHECK(wf_future_done(fs[i]));
		void *v = NULL;
		CHECK_RC(wf_future_result(fs[i], &v), 0);
		CHECK_EQ((uintptr_t)v, i + 1);
		wf_future_release(fs[i]);
	}
	CHECK_EQ(drops_unrun + drops_ran, 0);
	return NULL;
}

Test(executor, shutdown_wait_runs_queued_calls)
{
	run_weft(2, shutdown_wait_main, NULL);
}

typedef struct shutdown_arg {
	wf_pool *p;
	int mode;
	int rc;
	bool done;
} shutdown_arg;

static void *shutdown_thread(void *arg)
{
	shutdown_arg *s = arg;
	s->rc = wf_pool_shutdown(s->p, s->mode);
	__atomic_store_n(&s->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void *shutdown_cancel_main(void *arg)
{
	wf_pool *p;
	CHECK_RC(wf_pool_new("cancel", 1, &p), 0);
	wf_call_opts opts = {.pool = p, .drop = count_drop};
	wf_future *first, *fs[10];
	CHECK_RC(wf_run_in_executor_ex(counted, (void *)7, &opts, &first), 0);
	wait_until(gate_inside() == 1);
	for (uintptr_t i = 0; i < 10; i++)
		CHECK_RC(wf_run_in_executor_ex(counted, (void *)i, &opts, &fs[i]), 0);
	CHECK_EQ(wf_pool_queued(p), 10);
	/* The shutdown waits for the running call, on a thread of its own. */
	shutdown_arg s = {.p = p, .mode = WF_POOL_CANCEL};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, shutdown_thread, &s), 0);
	/* Queued calls fail at once, with their drop run; none runs. */
	for (int i = 0; i < 10; i++) {
		CHECK_RC(wf_await(fs[i], NULL), WF_ECANCELED);
		wf_future_release(fs[i]);
	}
	CHECK_EQ(__atomic_load_n(&drops_unrun, __ATOMIC_RELAXED), 10);
	/* Still waiting for the running call; new work is refused. */
	CHECK(!__atomic_load_n(&s.done, __ATOMIC_ACQUIRE));
	wf_future *late = (wf_future *)1;
	CHECK_RC(wf_run_in_executor(p, twice, NULL, &late), WF_ESHUTDOWN);
	CHECK(late == NULL);
	CHECK_RC(wf_to_thread_ex(twice, NULL, &opts, NULL, NULL), WF_ESHUTDOWN);
	CHECK_RC(wf_pool_shutdown(p, WF_POOL_WAIT), WF_EINVAL); /* already */
	gate_open();
	void *v = NULL;
	CHECK_RC(wf_await(first, &v), 0);
	CHECK_EQ((uintptr_t)v, 8);
	wf_future_release(first);
	wait_until(__atomic_load_n(&s.done, __ATOMIC_ACQUIRE));
	pthread_join(t, NULL);
	CHECK_RC(s.rc, 0);
	CHECK_EQ(__atomic_load_n(&ran, __ATOMIC_RELAXED), 1);
	CHECK_EQ(__atomic_load_n(&drops_ran, __ATOMIC_RELAXED), 0);
	return NULL;
}

Test(executor, shutdown_cancel_fails_queued_calls)
{
	run_weft(2, shutdown_cancel_main, NULL);
}

/* A pool's own call cannot wait for the pool to stop. */
static void *shutdown_self(void *arg)
{
	return (void *)(intptr_t)wf_pool_shutdown(arg, WF_POOL_WAIT);
}

static void *shutdown_self_main(void *arg)
{
	wf_pool *p;
	CHECK_RC(wf_pool_new("self", 1, &p), 0);
	wf_call_opts opts = {.pool = p};
	void *v = NULL;
	CHECK_RC(wf_to_thread_ex(shutdown_self, p, &opts, &v, NULL), 0);
	CHECK_RC((int)(intptr_t)v, WF_EDEADLK);
	CHECK_RC(wf_pool_shutdown(p, WF_POOL_CANCEL), 0);
	return NULL;
}

Test(executor, shutdown_from_own_call_is_edeadlk)
{
	run_weft(2, shutdown_self_main, NULL);
}

/* An unused pool and a pool whose threads are all idle shut down alike. */
Test(executor, shutdown_idle_and_unused_pools)
{
	for (int i = 0; i < 20; i++) {
		wf_pool *p;
		cr_assert_eq(wf_pool_new("idle", 3, &p), 0);
		if (i % 2 == 1) {
			void *v;
			wf_call_opts opts = {.pool = p};
			cr_assert_eq(wf_to_thread_ex(twice, (void *)3, &opts, &v, NULL), 0);
			cr_assert_eq((uintptr_t)v, 6);
		}
		cr_assert_eq(wf_pool_shutdown(p, i % 4 < 2 ? WF_POOL_WAIT : WF_POOL_CANCEL), 0);
	}
}

/* ---- cancellation ----------------------------------------------------- */

typedef struct call_task_arg {
	wf_pool *pool;
	wf_fn fn;
	uintptr_t arg;
	int rc;
	bool returned;
} call_task_arg;

static void *call_task(void *arg)
{
	call_task_arg *c = arg;
	wf_call_opts opts = {.pool = c->pool, .drop = count_drop};
	c->rc = wf_to_thread_ex(c->fn, (void *)c->arg, &opts, NULL, NULL);
	__atomic_store_n(&c->returned, true, __ATOMIC_RELEASE);
	return NULL;
}

static void *cancel_before_main(void *arg)
{
	wf_pool *p;
	CHECK_RC(wf_pool_new("one", 1, &p), 0);
	wf_future *busy;
	CHECK_RC(wf_run_in_executor(p, gated, NULL, &busy), 0);
	wait_until(gate_inside() == 1);
	call_task_arg c = {.pool = p, .fn = counted, .arg = 1};
	wf_task *t = wf_spawn(call_task, &c);
	wait_until(wf_pool_queued(p) == 1);
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(c.rc, WF_ECANCELED);
	/* The call left the queue at once and its drop ran, without a value. */
	CHECK_EQ(wf_pool_queued(p), 0);
	CHECK_EQ(__atomic_load_n(&drops_unrun, __ATOMIC_RELAXED), 1);
	gate_open();
	CHECK_RC(wf_await(busy, NULL), 0);
	wf_future_release(busy);
	CHECK_RC(wf_pool_shutdown(p, WF_POOL_WAIT), 0);
	/* It never ran. */
	CHECK_EQ(__atomic_load_n(&ran, __ATOMIC_RELAXED), 0);
	CHECK_EQ(__atomic_load_n(&drops_ran, __ATOMIC_RELAXED), 0);
	return NULL;
}

Test(executor, cancel_before_the_call_starts)
{
	run_weft(2, cancel_before_main, NULL);
}

/* A running call is not interrupted; the task returns at once and the
 * value, malloc'd, reaches the drop function, which frees it. */
static unsigned freed_values;

static void *gated_malloc(void *arg)
{
	gated(arg);
	int *v = malloc(sizeof(int));
	if (v != NULL)
		*v = 99;
	return v;
}

static void free_drop(void *arg, void *value)
{
	if (value != NULL && *(int *)value == 99)
		__atomic_fetch_add(&freed_values, 1, __ATOMIC_RELAXED);
	free(value);
}

static void *malloc_call_task(void *arg)
{
	call_task_arg *c = arg;
	wf_call_opts opts = {.pool = c->pool, .drop = free_drop};
	void *v = NULL;
	c->rc = wf_to_thread_ex(c->fn, (void *)c->arg, &opts, &v, NULL);
	__atomic_store_n(&c->returned, true, __ATOMIC_RELEASE);
	free(v);
	return NULL;
}

static void *cancel_during_main(void *arg)
{
	call_task_arg c = {.fn = gated_malloc};
	wf_task *t = wf_spawn(malloc_call_task, &c);
	wait_until(gate_inside() == 1);
	CHECK_RC(wf_cancel(t), 0);
	/* The join returns while the call is still blocked at the gate. */
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(c.rc, WF_ECANCELED);
	CHECK_EQ(gate_passed(), 0);
	gate_open();
	wait_until(__atomic_load_n(&freed_values, __ATOMIC_RELAXED) == 1);
	return NULL;
}

Test(executor, cancel_while_the_call_runs)
{
	run_weft(2, cancel_during_main, NULL);
	cr_assert_eq(freed_values, 1);
}

/* run_in_executor: cancelling the future before the call starts. */
static void *cancel_future_main(void *arg)
{
	wf_pool *p;
	CHECK_RC(wf_pool_new("one", 1, &p), 0);
	wf_future *busy, *f;
	CHECK_RC(wf_run_in_executor(p, gated, NULL, &busy), 0);
	wait_until(gate_inside() == 1);
	wf_call_opts opts = {.pool = p, .drop = count_drop};
	CHECK_RC(wf_run_in_executor_ex(counted, NULL, &opts, &f), 0);
	CHECK_RC(wf_future_cancel(f), 0);
	gate_open();
	CHECK_RC(wf_await(busy, NULL), 0);
	CHECK_RC(wf_pool_shutdown(p, WF_POOL_WAIT), 0);
	CHECK_RC(wf_future_result(f, NULL), WF_ECANCELED);
	CHECK_EQ(__atomic_load_n(&ran, __ATOMIC_RELAXED), 0);
	CHECK_EQ(__atomic_load_n(&drops_unrun, __ATOMIC_RELAXED), 1);
	wf_future_release(busy);
	wf_future_release(f);
	return NULL;
}

Test(executor, cancelled_future_call_never_runs)
{
	run_weft(2, cancel_future_main, NULL);
}

/* A call still running when wf_run ends (its task was cancelled by the
 * shutdown) is waited for, its value dropped, its thread joined. */
static call_task_arg end_call = {.fn = gated_malloc};

static void *gate_opener(void *arg)
{
	/* Opens the gate once the cancelled task has returned, which happens
	 * inside wf_run's shutdown, before the pool's. */
	for (int i = 0; i < WAIT_ROUNDS && !__atomic_load_n(&end_call.returned, __ATOMIC_ACQUIRE);
	     i++)
		wf_sleep(1);
	gate_open();
	return NULL;
}

static void *run_end_main(void *arg)
{
	wf_task *t = wf_spawn(malloc_call_task, &end_call);
	CHECK_RC(wf_detach(t), 0);
	wait_until(gate_inside() == 1);
	return NULL;
}

Test(executor, wf_run_waits_for_running_calls_and_stops_the_pool)
{
	pthread_t opener;
	cr_assert_eq(pthread_create(&opener, NULL, gate_opener, NULL), 0);
	run_weft(2, run_end_main, NULL);
	pthread_join(opener, NULL);
	cr_assert_eq(end_call.rc, WF_ECANCELED);
	cr_assert_eq(freed_values, 1);
	wf_pool_stats st;
	cr_assert_eq(wf_pool_get_stats(NULL, &st), 0);
	cr_assert_eq(st.threads, 0);
	cr_assert_eq(st.queued, 0);
}

/* ---- many iterations with random cancellations ------------------------ */

#define STRESS_TASKS (SLOW ? 60 : 300)
#define STRESS_CALLS 5
static unsigned delivered, submitted;

static void *value_call(void *arg)
{
	__atomic_fetch_add(&ran, 1, __ATOMIC_RELAXED);
	uint64_t s = (uintptr_t)arg;
	spin(rng_next(&s) % 2000);
	int *v = malloc(sizeof(int));
	if (v != NULL)
		*v = 99;
	return v;
}

static void stress_drop(void *arg, void *value)
{
	if (value == NULL) {
		__atomic_fetch_add(&drops_unrun, 1, __ATOMIC_RELAXED);
		return;
	}
	free(value);
	__atomic_fetch_add(&drops_ran, 1, __ATOMIC_RELAXED);
}

static void *stress_task(void *arg)
{
	wf_call_opts opts = {.pool = arg, .drop = stress_drop};
	for (uintptr_t i = 0; i < STRESS_CALLS; i++) {
		__atomic_fetch_add(&submitted, 1, __ATOMIC_RELAXED);
		void *v = NULL;
		int rc = wf_to_thread_ex(value_call, (void *)(i + 1), &opts, &v, NULL);
		if (rc == WF_ECANCELED) {
			wf_uncancel();
			continue;
		}
		CHECK_RC(rc, 0);
		CHECK(v != NULL && *(int *)v == 99);
		free(v);
		__atomic_fetch_add(&delivered, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *stress_main(void *arg)
{
	/* A small user pool makes calls queue; the default one makes them
	 * run at once: cancellations hit both states. */
	wf_pool *small;
	CHECK_RC(wf_pool_new("stress", 2, &small), 0);
	wf_task *ts[STRESS_TASKS];
	uint64_t seed = 12345;
	for (int i = 0; i < STRESS_TASKS; i++)
		ts[i] = wf_spawn(stress_task, i % 2 ? small : NULL);
	for (int i = 0; i < STRESS_TASKS; i++) {
		if (rng_next(&seed) % 3 == 0)
			wf_cancel(ts[rng_next(&seed) % STRESS_TASKS]);
		if (rng_next(&seed) % 4 == 0)
			wf_yield();
	}
	for (int i = 0; i < STRESS_TASKS; i++)
		wf_join(ts[i], NULL);
	CHECK_RC(wf_pool_shutdown(small, WF_POOL_WAIT), 0);
	return NULL;
}

Test(executor, many_calls_with_random_cancellations)
{
	long iters = test_iters(SLOW ? 2 : 5);
	for (int iter = 0; iter < iters; iter++) {
		ran = drops_unrun = drops_ran = delivered = submitted = 0;
		run_weft(4, stress_main, NULL);
		/* After wf_run every call has ended: each one either reached
		 * its caller or its drop, exactly once. */
		/* A task cancelled before it started submitted nothing. */
		cr_assert_leq(submitted, (unsigned)STRESS_TASKS * STRESS_CALLS);
		cr_assert_geq(submitted, 1);
		cr_assert_eq(delivered + drops_ran + drops_unrun, submitted,
			     "delivered %u + dropped %u + never ran %u != %u", delivered,
			     drops_ran, drops_unrun, submitted);
		cr_assert_eq(ran, delivered + drops_ran,
			     "ran %u, delivered %u, dropped after running %u", ran, delivered,
			     drops_ran);
	}
}

/* Cancellations racing with a WF_POOL_CANCEL shutdown of the pool the
 * calls are on: every call still ends exactly once (delivered, dropped
 * after running, or dropped unrun), and a cancelled wf_to_thread never
 * touches the pool's memory after the shutdown freed it (ASan). */
#define RACE_TASKS 40

static void *gated_value_call(void *arg)
{
	__atomic_fetch_add(&ran, 1, __ATOMIC_RELAXED);
	return gated_malloc(arg);
}

static void *race_task(void *arg)
{
	wf_call_opts opts = {.pool = arg, .drop = stress_drop};
	void *v = NULL;
	__atomic_fetch_add(&submitted, 1, __ATOMIC_RELAXED);
	int rc = wf_to_thread_ex(gated_value_call, (void *)7, &opts, &v, NULL);
	if (rc == 0) {
		free(v);
		__atomic_fetch_add(&delivered, 1, __ATOMIC_RELAXED);
	} else {
		CHECK_RC(rc, WF_ECANCELED);
	}
	return NULL;
}

static void *race_main(void *arg)
{
	long iters = test_iters_min(SLOW ? 10 : 40, 2);
	for (int iter = 0; iter < iters && !check_any_failed(); iter++) {
		shutdown_arg s = {.mode = WF_POOL_CANCEL};
		CHECK_RC(wf_pool_new("race", 2, &s.p), 0);
		pthread_mutex_lock(&g.mu);
		g.open = false;
		pthread_mutex_unlock(&g.mu);
		wf_task *ts[RACE_TASKS];
		for (int i = 0; i < RACE_TASKS; i++)
			ts[i] = wf_spawn(race_task, s.p);
		/* Every call is submitted (two at the gate, the rest queued)
		 * before the pool can go. */
		wait_until(gate_inside() == 2 && wf_pool_queued(s.p) == RACE_TASKS - 2);
		pthread_t t;
		CHECK_EQ(pthread_create(&t, NULL, shutdown_thread, &s), 0);
		/* Cancel every other task, opening the gate half-way. */
		for (int i = iter % 2; i < RACE_TASKS; i += 2) {
			wf_cancel(ts[i]);
			if (i / 2 == RACE_TASKS / 4)
				gate_open();
		}
		CHECK(g.open);
		for (int i = 0; i < RACE_TASKS; i++)
			wf_join(ts[i], NULL);
		pthread_join(t, NULL);
		CHECK_RC(s.rc, 0);
	}
	return NULL;
}

Test(executor, cancellations_race_with_shutdown_cancel)
{
	ran = drops_unrun = drops_ran = delivered = submitted = 0;
	run_weft(2, race_main, NULL);
	cr_assert_eq(delivered + drops_ran + drops_unrun, submitted,
		     "delivered %u + dropped %u + never ran %u != %u", delivered, drops_ran,
		     drops_unrun, submitted);
	cr_assert_eq(ran, delivered + drops_ran);
}

/* A cancelled wf_to_thread that resumes only after its pool was shut down
 * and released still finds the pool's memory valid. One worker, held by
 * the main task while the shutdown runs, forces that order. */
static void *late_main(void *arg)
{
	shutdown_arg s = {.mode = WF_POOL_CANCEL};
	CHECK_RC(wf_pool_new("late", 1, &s.p), 0);
	wf_future *busy;
	CHECK_RC(wf_run_in_executor(s.p, gated, NULL, &busy), 0);
	wait_until(gate_inside() == 1);
	call_task_arg c[4];
	wf_task *ts[4];
	for (int i = 0; i < 4; i++) {
		c[i] = (call_task_arg){.pool = s.p, .fn = counted};
		ts[i] = wf_spawn(call_task, &c[i]);
	}
	wait_until(wf_pool_queued(s.p) == 4);
	for (int i = 0; i < 4; i++)
		CHECK_RC(wf_cancel(ts[i]), 0);
	/* From here on the worker is not given back until the pool is gone:
	 * the cancelled tasks resume after that. */
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, shutdown_thread, &s), 0);
	/* The shutdown discards the queued calls, then waits for the busy
	 * one. (usleep, not wf_sleep: this task keeps the worker.) */
	for (int i = 0; i < WAIT_ROUNDS && __atomic_load_n(&drops_unrun, __ATOMIC_RELAXED) < 4; i++)
		usleep(1000);
	gate_open();
	for (int i = 0; i < WAIT_ROUNDS && !__atomic_load_n(&s.done, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	CHECK(__atomic_load_n(&s.done, __ATOMIC_ACQUIRE));
	pthread_join(t, NULL);
	CHECK_RC(s.rc, 0);
	for (int i = 0; i < 4; i++)
		CHECK(!__atomic_load_n(&c[i].returned, __ATOMIC_ACQUIRE));
	CHECK_EQ(__atomic_load_n(&drops_unrun, __ATOMIC_RELAXED), 4);
	for (int i = 0; i < 4; i++) {
		CHECK_RC(wf_join(ts[i], NULL), WF_ECANCELED);
		CHECK_RC(c[i].rc, WF_ECANCELED);
	}
	CHECK_RC(wf_await(busy, NULL), 0);
	wf_future_release(busy);
	CHECK_EQ(__atomic_load_n(&drops_unrun, __ATOMIC_RELAXED), 4);
	CHECK_EQ(__atomic_load_n(&ran, __ATOMIC_RELAXED), 0);
	return NULL;
}

Test(executor, cancelled_call_resuming_after_pool_shutdown)
{
	run_weft(1, late_main, NULL);
}

/* ---- submissions racing a pool's shutdown ------------------------------ */

/*
 * Plain threads submit to a user pool in a loop while another thread shuts
 * it down, WF_POOL_WAIT or WF_POOL_CANCEL. Every call accepted is complete
 * once wf_pool_shutdown has returned (its value, or WF_ECANCELED for a call
 * a WF_POOL_CANCEL took off the queue); every refusal is WF_ESHUTDOWN, also
 * for calls made after the shutdown returned while the pool's memory is
 * still held (here by a wf_to_thread that has not returned yet).
 *
 * That holder is a task of a one-worker runtime: its call ends, but it
 * cannot return (and give the pool back) while another task keeps the
 * worker busy until every submitter has been refused.
 */

enum { RACERS = 3, RACER_KEEP = 512 };

typedef struct racer {
	pthread_t thread;
	unsigned index, kept, made; /* made: atomic */
	wf_future *futures[RACER_KEEP];
} racer;

static struct {
	wf_pool *pool;
	racer racers[RACERS];
	int stopped;  /* atomic: racers refused (or done) */
	int spinning; /* atomic */
	int in_call;  /* atomic: the holder's call runs */
	int go_on;    /* atomic: the holder's call may return */
} race;

static void *holder_call(void *arg)
{
	__atomic_store_n(&race.in_call, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&race.go_on, __ATOMIC_ACQUIRE))
		usleep(100);
	return arg;
}

static void *holder(void *arg)
{
	wf_call_opts o = WF_CALL_OPTS_INIT;
	o.pool = race.pool;
	void *v = NULL;
	CHECK_RC(wf_to_thread_ex(holder_call, (void *)7, &o, &v, NULL), 0);
	CHECK_EQ((uintptr_t)v, 7);
	return NULL;
}

static void *busy_until_refused(void *arg)
{
	__atomic_store_n(&race.spinning, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&race.stopped, __ATOMIC_ACQUIRE) < RACERS)
		spin(1000);
	return NULL;
}

static void *racer_loop(void *arg)
{
	racer *r = arg;
	r->kept = 0;
	while (r->kept < RACER_KEEP) {
		wf_future *f = NULL;
		uintptr_t v = ((uintptr_t)r->index << 16) | r->kept;
		int rc = wf_run_in_executor(race.pool, twice, (void *)v, &f);
		if (rc != 0) {
			CHECK_RC(rc, WF_ESHUTDOWN);
			CHECK(f == NULL);
			break;
		}
		r->futures[r->kept++] = f;
		__atomic_store_n(&r->made, r->kept, __ATOMIC_RELEASE);
	}
	__atomic_add_fetch(&race.stopped, 1, __ATOMIC_ACQ_REL);
	return NULL;
}

static void wait_flag(int *flag)
{
	for (int i = 0; i < 200000 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
		usleep(100);
	cr_assert(__atomic_load_n(flag, __ATOMIC_ACQUIRE));
}

static void pool_race_round(wf_runtime *rt, int mode, uint64_t *rng)
{
	cr_assert_eq(wf_pool_new("race", 1 + rng_next(rng) % 4, &race.pool), 0);
	race.stopped = race.spinning = race.in_call = race.go_on = 0;
	wf_future *fh, *fb;
	cr_assert_eq(wf_runtime_submit(rt, holder, NULL, &fh), 0);
	wait_flag(&race.in_call);
	cr_assert_eq(wf_runtime_submit(rt, busy_until_refused, NULL, &fb), 0);
	wait_flag(&race.spinning);
	__atomic_store_n(&race.go_on, 1, __ATOMIC_RELEASE);

	for (unsigned i = 0; i < RACERS; i++) {
		race.racers[i].index = i;
		__atomic_store_n(&race.racers[i].made, 0, __ATOMIC_RELAXED);
		cr_assert_eq(pthread_create(&race.racers[i].thread, NULL, racer_loop,
					    &race.racers[i]), 0);
	}
	unsigned want = 1 + rng_next(rng) % 16;
	for (unsigned i = 0; i < RACERS; i++)
		while (__atomic_load_n(&race.racers[i].made, __ATOMIC_ACQUIRE) < want &&
		       __atomic_load_n(&race.stopped, __ATOMIC_ACQUIRE) == 0)
			sched_yield();
	spin(rng_next(rng) % 20000);
	cr_assert_eq(wf_pool_shutdown(race.pool, mode), 0);

	for (unsigned i = 0; i < RACERS; i++) {
		racer *r = &race.racers[i];
		pthread_join(r->thread, NULL);
		for (unsigned k = 0; k < r->kept; k++) {
			void *v = NULL;
			if (!check_any_failed() && CHECK(wf_future_done(r->futures[k]))) {
				int rc = wf_future_result(r->futures[k], &v);
				if (rc == 0)
					CHECK_EQ((uintptr_t)v, (((uintptr_t)i << 16) | k) * 2);
				else if (CHECK_RC(rc, WF_ECANCELED))
					CHECK_EQ(mode, WF_POOL_CANCEL);
			}
			wf_future_release(r->futures[k]);
		}
	}
	cr_assert_eq(wf_await(fb, NULL), 0);
	cr_assert_eq(wf_await(fh, NULL), 0);
	wf_future_release(fb);
	wf_future_release(fh);
}

Test(executor, submissions_racing_pool_shutdown, .timeout = 600)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 1;
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(&cfg, &rt), 0);
	uint64_t rng = 0xfeedull;
	unsigned rounds = (unsigned)test_iters(SLOW ? 100 : 400);
	for (unsigned i = 0; i < rounds && !check_any_failed(); i++)
		pool_race_round(rt, i % 2 ? WF_POOL_CANCEL : WF_POOL_WAIT, &rng);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	check_none_failed();
	check_no_leaks();
}

/* A pool the program shut down is refused through every copy of its
 * handle, even once a new pool took its memory, and the new pool is
 * untouched by the stale calls. */
static void *twice_fn(void *arg)
{
	return (void *)((uintptr_t)arg * 2);
}

Test(executor, stale_pool_handles_are_refused)
{
	for (int round = 0; round < 50; round++) {
		wf_pool *a = NULL, *b = NULL;
		cr_assert_eq(wf_pool_new("a", 1, &a), 0);
		cr_assert_eq(wf_pool_shutdown(a, WF_POOL_WAIT), 0);
		cr_assert_eq(wf_pool_new("b", 1, &b), 0);
		cr_assert_neq(a, b);
		wf_future *f = NULL;
		cr_assert_eq(wf_run_in_executor(a, twice_fn, (void *)1, &f), WF_EINVAL);
		cr_assert_null(f);
		cr_assert_eq(wf_pool_shutdown(a, WF_POOL_WAIT), WF_EINVAL);
		wf_pool_stats st;
		cr_assert_eq(wf_pool_get_stats(a, &st), WF_EINVAL);
		cr_assert_eq(wf_pool_queued(a), 0);
		/* b still works. */
		cr_assert_eq(wf_run_in_executor(b, twice_fn, (void *)21, &f), 0);
		void *v = NULL;
		cr_assert_eq(wf_await(f, &v), 0);
		cr_assert_eq((uintptr_t)v, 42);
		wf_future_release(f);
		cr_assert_eq(wf_pool_get_stats(b, &st), 0);
		cr_assert_eq(wf_pool_shutdown(b, WF_POOL_WAIT), 0);
	}
}

/* Calls through a pool's handle from plain threads while the pool is shut
 * down and a new pool is made at once (often in the old one's memory):
 * every call is accepted by the old pool and runs on its threads, or is
 * refused (WF_ESHUTDOWN while it closes or once its last reference went,
 * WF_EINVAL once the handle is stale); none runs on the new pool. Drives
 * a call's reference racing the shutdown's last one. */
#define HANDOFF_CALLERS 3

static struct {
	wf_pool *old;
	int stop;  /* atomic */
	long runs; /* atomic: calls that ran on the old pool's threads */
	long wrong; /* atomic: calls that ran anywhere else */
} handoff;

static void *handoff_call(void *arg)
{
	(void)arg;
	char name[16] = "";
	pthread_getname_np(pthread_self(), name, sizeof(name));
	if (strncmp(name, "old", 3) == 0)
		__atomic_add_fetch(&handoff.runs, 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&handoff.wrong, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *handoff_caller(void *arg)
{
	(void)arg;
	wf_pool *p = __atomic_load_n(&handoff.old, __ATOMIC_ACQUIRE);
	while (!__atomic_load_n(&handoff.stop, __ATOMIC_ACQUIRE)) {
		wf_future *f = NULL;
		int rc = wf_run_in_executor(p, handoff_call, NULL, &f);
		if (rc == 0) {
			rc = wf_await(f, NULL); /* a WF_POOL_CANCEL shutdown fails it */
			CHECK(rc == 0 || rc == WF_ECANCELED);
			wf_future_release(f);
		} else if (!CHECK(rc == WF_ESHUTDOWN || rc == WF_EINVAL)) {
			break;
		}
	}
	return NULL;
}

Test(executor, calls_racing_a_shutdown_never_reach_the_next_pool)
{
	long rounds = test_iters_min(200, 10);
	for (long round = 0; round < rounds && !check_any_failed(); round++) {
		wf_pool *old = NULL, *next = NULL;
		cr_assert_eq(wf_pool_new("old", 2, &old), 0);
		__atomic_store_n(&handoff.old, old, __ATOMIC_RELEASE);
		__atomic_store_n(&handoff.stop, 0, __ATOMIC_RELEASE);
		pthread_t th[HANDOFF_CALLERS];
		for (int i = 0; i < HANDOFF_CALLERS; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, handoff_caller, NULL), 0);
		usleep(200 + round % 7 * 150);
		cr_assert_eq(wf_pool_shutdown(old, round % 2 ? WF_POOL_CANCEL : WF_POOL_WAIT), 0);
		cr_assert_eq(wf_pool_new("next", 1, &next), 0);
		usleep(300);
		__atomic_store_n(&handoff.stop, 1, __ATOMIC_RELEASE);
		for (int i = 0; i < HANDOFF_CALLERS; i++)
			pthread_join(th[i], NULL);
		cr_assert_eq(wf_pool_shutdown(next, WF_POOL_WAIT), 0);
	}
	check_none_failed();
	cr_assert_eq(__atomic_load_n(&handoff.wrong, __ATOMIC_RELAXED), 0,
		     "%ld calls through the old pool's handle ran on another pool's threads",
		     handoff.wrong);
	cr_assert_gt(__atomic_load_n(&handoff.runs, __ATOMIC_RELAXED), 0);
}

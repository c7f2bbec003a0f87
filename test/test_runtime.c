/*
 * The runtime's lifecycle: wf_run and its result, the configuration and
 * its environment overrides, embedding (start, submit from any thread,
 * shutdown), shutdown with tasks still running (cancelled, awaited, freed:
 * the ASan build's LeakSanitizer checks the "freed"), and the error names.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

/* ---- wf_run ------------------------------------------------------------------ */

static void *return_arg(void *arg) { return arg; }

static void *fail_main(void *arg) { return wf_fail(WF_EIO, "main failed"); }

static void *count_workers(void *arg)
{
	wf_runtime *rt = wf_runtime_current();
	CHECK(rt != NULL);
	int id = wf_worker_id();
	CHECK(id >= 0 && id < (int)wf_runtime_workers(rt));
	return (void *)(uintptr_t)wf_runtime_workers(rt);
}

Test(runtime, run_returns_mains_result)
{
	int x;
	void *res = NULL;
	cr_assert_eq(wf_run(NULL, return_arg, &x, &res), 0);
	cr_assert_eq(res, &x);
	cr_assert_eq(wf_run(NULL, return_arg, &x, NULL), 0);

	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 3;
	cr_assert_eq(wf_run(&cfg, count_workers, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 3);

	res = &x;
	cr_assert_eq(wf_run(&cfg, fail_main, NULL, &res), WF_EIO);
	cr_assert_null(res);

	res = &x;
	cr_assert_eq(wf_run(&cfg, NULL, NULL, &res), WF_EINVAL);
	cr_assert_null(res);
	check_none_failed();
	check_no_leaks();
}

Test(runtime, bad_configurations)
{
	/* Absurd sizes get an error code, not a crash or a hang. */
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = UINT_MAX;
	wf_runtime *rt = (wf_runtime *)1;
	int rc = wf_runtime_start(&cfg, &rt);
	cr_assert_lt(rc, 0, "wf_runtime_start with UINT_MAX workers: %d", rc);
	cr_assert_null(rt);

	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.stack_size = 100; /* smaller than any frame */
	rc = wf_runtime_start(&cfg, &rt);
	cr_assert_lt(rc, 0, "wf_runtime_start with a 100-byte stack: %d", rc);

	cr_assert_eq(wf_runtime_start(NULL, NULL), WF_EINVAL);
	cr_assert_eq(wf_runtime_shutdown(NULL), WF_EINVAL);
	cr_assert_eq(wf_runtime_workers(NULL), 0);
	wf_config_init(NULL); /* no crash */
	check_no_leaks();
}

/* ---- configuration and environment ------------------------------------------- */

Test(runtime, environment_overrides)
{
	/* Criterion runs each test in its own process: the environment
	 * changes stay here. */
	setenv("WEFT_WORKERS", "3", 1);
	setenv("WEFT_STACK_KIB", "128", 1);
	wf_config cfg;
	wf_config_init(&cfg);
	cr_assert_eq(cfg.workers, 3);
	cr_assert_eq(cfg.stack_size, 128 * 1024);

	void *res = NULL;
	cr_assert_eq(wf_run(&cfg, count_workers, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 3);
	/* A NULL config means wf_config_init's: the environment too. */
	cr_assert_eq(wf_run(NULL, count_workers, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 3);

	/* The program's own settings, made after wf_config_init, win. */
	wf_config_init(&cfg);
	cfg.workers = 2;
	cr_assert_eq(wf_run(&cfg, count_workers, NULL, &res), 0);
	cr_assert_eq((uintptr_t)res, 2);

	setenv("WEFT_WORKERS", "5", 1);
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(NULL, &rt), 0);
	cr_assert_eq(wf_runtime_workers(rt), 5);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);

	unsetenv("WEFT_WORKERS");
	unsetenv("WEFT_STACK_KIB");
	wf_config_init(&cfg);
	cr_assert_eq(cfg.workers, 0);
	cr_assert_eq(cfg.stack_size, 0);
	check_none_failed();
	check_no_leaks();
}

/* ---- embedding: start, submit, shutdown ---------------------------------------- */

static void *double_it(void *arg)
{
	if ((uintptr_t)arg % 5 == 0)
		CHECK_RC(wf_yield(), 0);
	return (void *)((uintptr_t)arg * 2);
}

static void *submit_fails(void *arg) { return wf_fail(WF_EPIPE, "submitted and failed"); }

typedef struct submitter {
	wf_runtime *rt;
	uintptr_t base;
} submitter;

static void *submit_from_thread(void *arg)
{
	submitter *s = arg;
	enum { N = 150 };
	wf_future *f[N];
	for (uintptr_t i = 0; i < N; i++) {
		f[i] = NULL;
		CHECK_RC(wf_runtime_submit(s->rt, double_it, (void *)(s->base + i), &f[i]), 0);
	}
	for (uintptr_t i = 0; i < N; i++) {
		if (f[i] == NULL)
			continue;
		void *v = NULL;
		CHECK_RC(wf_await_timeout(f[i], &v, 10000), 0);
		CHECK_EQ((uintptr_t)v, (s->base + i) * 2);
		wf_future_release(f[i]);
	}
	return NULL;
}

static void *shutdown_from_inside(void *arg)
{
	CHECK_RC(wf_runtime_shutdown(wf_runtime_current()), WF_EDEADLK);
	return wf_runtime_current();
}

/* A task of one runtime submits to another and awaits the result. */
static void *submit_across(void *arg)
{
	wf_runtime *other = arg;
	wf_future *f = NULL;
	CHECK_RC(wf_runtime_submit(other, count_workers, NULL, &f), 0);
	void *v = NULL;
	CHECK_RC(wf_await_timeout(f, &v, 10000), 0);
	wf_future_release(f);
	/* And to its own runtime. */
	CHECK_RC(wf_runtime_submit(wf_runtime_current(), double_it, (void *)21, &f), 0);
	void *w = NULL;
	CHECK_RC(wf_await_timeout(f, &w, 10000), 0);
	CHECK_EQ((uintptr_t)w, 42);
	wf_future_release(f);
	return v;
}

Test(runtime, start_submit_shutdown)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 4;
	wf_runtime *rt = NULL;
	cr_assert_eq(wf_runtime_start(&cfg, &rt), 0);
	cr_assert_not_null(rt);
	cr_assert_eq(wf_runtime_workers(rt), 4);

	enum { THREADS = 4 };
	pthread_t th[THREADS];
	submitter s[THREADS];
	for (int i = 0; i < THREADS; i++) {
		s[i] = (submitter){rt, (uintptr_t)i * 1000};
		cr_assert_eq(pthread_create(&th[i], NULL, submit_from_thread, &s[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	check_none_failed();

	/* Failures travel with their message. */
	wf_future *f = NULL;
	cr_assert_eq(wf_runtime_submit(rt, submit_fails, NULL, &f), 0);
	cr_assert_eq(wf_await(f, NULL), WF_EPIPE);
	cr_assert_str_eq(wf_future_errmsg(f), "submitted and failed");
	wf_future_release(f);

	/* Shutting down from one of its own tasks would wait for itself. */
	cr_assert_eq(wf_runtime_submit(rt, shutdown_from_inside, NULL, &f), 0);
	void *v = NULL;
	cr_assert_eq(wf_await(f, &v), 0);
	cr_assert_eq(v, rt);
	wf_future_release(f);

	/* Bad arguments. */
	f = (wf_future *)1;
	cr_assert_eq(wf_runtime_submit(NULL, double_it, NULL, &f), WF_EINVAL);
	cr_assert_null(f);
	cr_assert_eq(wf_runtime_submit(rt, NULL, NULL, &f), WF_EINVAL);
	cr_assert_eq(wf_runtime_submit(rt, double_it, NULL, NULL), WF_EINVAL);

	/* A task of another runtime submits here. */
	v = NULL;
	cfg.workers = 2;
	cr_assert_eq(wf_run(&cfg, submit_across, rt, &v), 0);
	cr_assert_eq((uintptr_t)v, 4);

	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	check_none_failed();
	check_no_leaks();
}

/* ---- shutdown with tasks still running --------------------------------------------- */

static int cancelled_seen; /* atomic: suspensions that returned WF_ECANCELED */
static int started;        /* atomic */

static void saw_at(int rc, int line)
{
	if (rc == WF_ECANCELED)
		__atomic_add_fetch(&cancelled_seen, 1, __ATOMIC_RELAXED);
	else
		check_fail(__FILE__, line, "a suspension ended by shutdown returned %s, not WF_ECANCELED",
			   wf_err_name(rc));
}
#define saw(rc) saw_at((rc), __LINE__)

static void *sleep_forever(void *arg)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	saw(wf_sleep(WF_FOREVER));
	return NULL;
}

/* A future nobody completes. It belongs to the test, not to the tasks: a
 * task cancelled before it starts never runs, so it could not give back a
 * reference handed to it. */
static wf_future *never;

static void *await_forever(void *arg)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	saw(wf_await(never, NULL));
	return NULL;
}

static void *join_forever(void *arg)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	wf_task *t = wf_spawn(sleep_forever, NULL);
	if (!CHECK(t != NULL))
		return NULL;
	/* Let it start first (its own cancellation is counted apart); a
	 * cancellation that arrives here already is carried to the join. */
	if (wf_yield() != 0)
		wf_cancel(t);
	saw(wf_join(t, NULL)); /* the joined one's outcome */
	return NULL;
}

static void *yield_forever(void *arg)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	int rc;
	/* Bounded, in case the cancellation never comes. */
	for (long n = 0; n < 100000000L; n++)
		if ((rc = wf_yield()) != 0)
			break;
	saw(rc);
	return NULL;
}

/* Handles a first cancellation and goes on: shutdown must cancel again. */
static void *stubborn(void *arg)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	saw(wf_sleep(WF_FOREVER));
	wf_uncancel();
	saw(wf_sleep(WF_FOREVER));
	return NULL;
}

enum { EACH = 8 };
/* Suspensions that shutdown must end: sleep, await, join (the joiner and
 * the joined sleeper), yield, and the stubborn one twice. */
#define EXPECTED_CANCELS (EACH * (1 + 1 + 2 + 1 + 2))
#define EXPECTED_STARTS (EACH * 6) /* the joined sleepers too */

static void *leave_tasks_running(void *arg)
{
	for (int i = 0; i < EACH; i++) {
		/* Some detached, some handles never given back. */
		wf_task *t = wf_spawn(sleep_forever, NULL);
		if (i % 2)
			CHECK_RC(wf_detach(t), 0);
		wf_spawn_opts o = {.detached = true};
		CHECK_RC(wf_spawn_ex(await_forever, NULL, &o, NULL), 0);
		t = wf_spawn(join_forever, NULL);
		if (i % 2)
			CHECK_RC(wf_detach(t), 0);
		CHECK_RC(wf_spawn_ex(yield_forever, NULL, &o, NULL), 0);
		CHECK_RC(wf_spawn_ex(stubborn, NULL, &o, NULL), 0);
	}
	/* Let them all start, so each is cancelled in a suspension. */
	for (int n = 0; __atomic_load_n(&started, __ATOMIC_RELAXED) < EXPECTED_STARTS && n < 100000;
	     n++)
		if (wf_sleep(n % 2) != 0)
			break; /* shut down meanwhile (when submitted) */
	return (void *)0xd0e;
}

Test(runtime, shutdown_with_tasks_still_running)
{
	never = wf_future_new();
	for (unsigned workers = 1; workers <= 4; workers *= 2) {
		__atomic_store_n(&cancelled_seen, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&started, 0, __ATOMIC_RELAXED);
		cr_assert_eq(run_weft(workers, leave_tasks_running, NULL), (void *)0xd0e);
		cr_assert_eq(__atomic_load_n(&started, __ATOMIC_RELAXED), EXPECTED_STARTS);
		cr_assert_eq(__atomic_load_n(&cancelled_seen, __ATOMIC_RELAXED), EXPECTED_CANCELS,
			     "workers %u: %d cancellations seen", workers, cancelled_seen);
	}
	cr_assert(!wf_future_done(never));
	wf_future_release(never);
	check_no_leaks();
}

static void *submitted_sleeper(void *arg)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
	saw(wf_sleep(WF_FOREVER));
	return NULL;
}

Test(runtime, shutdown_of_a_started_runtime_with_work_in_flight)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	wf_runtime *rt;
	never = wf_future_new();
	cr_assert_eq(wf_runtime_start(&cfg, &rt), 0);
	enum { N = 32 };
	wf_future *f[N];
	for (int i = 0; i < N; i++)
		cr_assert_eq(wf_runtime_submit(rt, i % 2 ? submitted_sleeper : leave_tasks_running,
					       NULL, &f[i]),
			     0);
	/* Some of them are surely suspended by now; others may not have
	 * started: both must end. */
	wf_sleep(20);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	/* The caller's futures outlive the runtime and hold the outcome. */
	for (int i = 0; i < N; i++) {
		cr_assert(wf_future_done(f[i]), "future %d still pending after shutdown", i);
		int rc = wf_future_result(f[i], NULL);
		if (i % 2)
			cr_assert_eq(rc, WF_ECANCELED, "future %d: %s", i, wf_err_name(rc));
		else
			cr_assert(rc == 0 || rc == WF_ECANCELED, "future %d: %s", i, wf_err_name(rc));
		wf_future_release(f[i]);
	}
	wf_future_release(never);
	check_none_failed();
	check_no_leaks();
}

/* ---- error names ------------------------------------------------------------------------ */

Test(runtime, every_error_code_has_a_name_and_text)
{
	struct {
		int code;
		const char *name, *text;
	} table[] = {
#define ROW(name, value, text) {WF_##name, "WF_" #name, text},
		WF_ERRNO_MAP(ROW)
#undef ROW
	};
	size_t n = sizeof(table) / sizeof(table[0]);
	for (size_t i = 0; i < n; i++) {
		cr_assert_lt(table[i].code, 0, "%s is not negative", table[i].name);
		cr_assert_str_eq(wf_err_name(table[i].code), table[i].name);
		cr_assert_str_eq(wf_strerror(table[i].code), table[i].text);
		for (size_t j = 0; j < i; j++)
			cr_assert_neq(table[i].code, table[j].code, "%s and %s share a value",
				      table[i].name, table[j].name);
	}
	/* OS errors as -errno, and values nobody defined. */
	cr_assert_str_eq(wf_err_name(-ENOENT), "ENOENT");
	cr_assert_str_eq(wf_strerror(-ENOENT), strerror(ENOENT));
	cr_assert_str_eq(wf_err_name(-ECONNREFUSED), "ECONNREFUSED");
	cr_assert_not_null(wf_strerror(0));
	cr_assert_not_null(wf_err_name(0));
	cr_assert_not_null(wf_strerror(12345));
	cr_assert_not_null(wf_err_name(12345));
	cr_assert_not_null(wf_strerror(INT_MIN));
	cr_assert_not_null(wf_err_name(INT_MIN));
	cr_assert_not_null(wf_strerror(-4000));
	cr_assert_not_null(wf_err_name(-4000));
}

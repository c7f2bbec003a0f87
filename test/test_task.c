/*
 * Tasks: spawn and join results, failures and their messages, detach,
 * names, wf_current, inline await, many tasks over many workers, and the
 * error codes of every misuse the API promises to catch.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_check.h"
#include "weft.h"

static const unsigned worker_counts[] = {1, 2, 4, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* ---- spawn and join ----------------------------------------------------- */

static void *triple_after_yield(void *arg)
{
	intptr_t n = (intptr_t)arg;
	CHECK_RC(wf_yield(), 0);
	return (void *)(n * 3);
}

static void *triple(void *arg)
{
	return (void *)((intptr_t)arg * 3);
}

static void *spawn_join_main(void *arg)
{
	enum { N = 300 };
	wf_task *ts[N];
	for (intptr_t round = 0; round < 5; round++) {
		/* Half of them yield, so some are joined before they start
		 * (inline) and some after they suspended. */
		for (intptr_t i = 0; i < N; i++) {
			ts[i] = wf_spawn(i % 2 ? triple_after_yield : triple, (void *)(i + round));
			if (!CHECK(ts[i] != NULL))
				return NULL;
		}
		for (intptr_t i = 0; i < N; i++) {
			void *res = (void *)-1;
			CHECK_RC(wf_join(ts[i], &res), 0);
			CHECK_EQ((intptr_t)res, (i + round) * 3);
		}
	}
	return (void *)0x5eed;
}

Test(task, spawn_join_results)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		cr_assert_eq(run_weft(worker_counts[i], spawn_join_main, NULL), (void *)0x5eed);
}

/* ---- failures ----------------------------------------------------------- */

static void *fail_eio(void *arg)
{
	if (arg != NULL)
		CHECK_RC(wf_yield(), 0);
	return wf_fail(WF_EIO, "disk gone");
}

static void *fail_twice(void *arg)
{
	wf_fail(WF_EIO, "first");
	if (arg != NULL)
		CHECK_RC(wf_sleep(1), 0);
	return wf_fail(WF_EPIPE, "second wins");
}

static void *fail_no_message(void *arg)
{
	if (arg != NULL)
		CHECK_RC(wf_yield(), 0);
	wf_fail(WF_ENOSYS, NULL);
	return (void *)0x1234; /* ignored: the task failed */
}

static void *fail_not_an_error(void *arg)
{
	CHECK(wf_fail(0, "not an error") == NULL);
	CHECK(wf_fail(5, "not an error") == NULL);
	return (void *)0x77;
}

static void *join_failed_main(void *arg)
{
	for (intptr_t i = 0; i < 200; i++) {
		/* Odd rounds: the child suspends before failing, so it is
		 * joined on its own fiber; even rounds: usually inline. */
		void *suspend = (void *)(i & 1);
		void *res = (void *)-1;
		char *msg = (char *)-1;
		CHECK_RC(wf_join_ex(wf_spawn(fail_eio, suspend), &res, &msg), WF_EIO);
		CHECK(res == NULL);
		if (CHECK(msg != NULL && msg != (char *)-1))
			CHECK(strcmp(msg, "disk gone") == 0);
		if (msg != (char *)-1)
			free(msg);

		/* wf_join gives the code too. */
		res = (void *)-1;
		CHECK_RC(wf_join(wf_spawn(fail_eio, suspend), &res), WF_EIO);
		CHECK(res == NULL);

		msg = (char *)-1;
		CHECK_RC(wf_join_ex(wf_spawn(fail_twice, suspend), NULL, &msg), WF_EPIPE);
		if (CHECK(msg != NULL && msg != (char *)-1))
			CHECK(strcmp(msg, "second wins") == 0);
		if (msg != (char *)-1)
			free(msg);

		msg = (char *)-1;
		res = (void *)-1;
		CHECK_RC(wf_join_ex(wf_spawn(fail_no_message, suspend), &res, &msg), WF_ENOSYS);
		CHECK(msg == NULL);
		CHECK(res == NULL);

		res = NULL;
		/* A code >= 0 is a mistake (a forgotten minus): the task
		 * fails with WF_EINVAL and a message saying so. */
		char *why = NULL;
		CHECK_RC(wf_join_ex(wf_spawn(fail_not_an_error, NULL), &res, &why), WF_EINVAL);
		CHECK(res == NULL);
		CHECK(why != NULL && strstr(why, "codes are negative") != NULL);
		free(why);
	}
	return NULL;
}

Test(task, join_of_a_failed_task)
{
	run_weft(1, join_failed_main, NULL);
	run_weft(4, join_failed_main, NULL);
}

/* ---- detach ------------------------------------------------------------- */

typedef struct detach_ctx {
	int remaining; /* atomic */
	int started;   /* atomic */
	wf_future *all_done;
	wf_future *gate;
} detach_ctx;

static void *detached_body(void *arg)
{
	detach_ctx *c = arg;
	if (__atomic_fetch_add(&c->started, 1, __ATOMIC_RELAXED) % 3 == 0)
		CHECK_RC(wf_yield(), 0);
	if (__atomic_sub_fetch(&c->remaining, 1, __ATOMIC_ACQ_REL) == 0)
		CHECK_RC(wf_future_set(c->all_done, c), 0);
	return NULL;
}

static void *gated_body(void *arg)
{
	wf_future *gate = arg; /* a reference of its own */
	CHECK_RC(wf_await(gate, NULL), 0);
	wf_future_release(gate);
	return NULL;
}

static void *detach_main(void *arg)
{
	enum { N = 500 };
	detach_ctx c = {.remaining = N, .all_done = wf_future_new(), .gate = wf_future_new()};
	for (int i = 0; i < N; i++) {
		if (i % 2) {
			wf_task *t = wf_spawn(detached_body, &c);
			if (!CHECK(t != NULL))
				return NULL;
			CHECK_RC(wf_detach(t), 0);
		} else {
			wf_spawn_opts o = {.detached = true};
			CHECK_RC(wf_spawn_ex(detached_body, &c, &o, NULL), 0);
		}
	}
	void *v = NULL;
	CHECK_RC(wf_await(c.all_done, &v), 0);
	CHECK(v == &c);

	/* Misuse of a handle whose task is known to be alive (it waits on
	 * the gate): a second detach, or a join after the detach. */
	wf_task *t = wf_spawn(gated_body, wf_future_retain(c.gate));
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_detach(t), 0);
	CHECK_RC(wf_detach(t), WF_EINVAL);
	CHECK_RC(wf_join(t, NULL), WF_EINVAL);
	CHECK_RC(wf_future_set(c.gate, NULL), 0);

	CHECK_RC(wf_detach(NULL), WF_EINVAL);
	wf_future_release(c.all_done);
	wf_future_release(c.gate);
	return NULL;
}

Test(task, detach)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], detach_main, NULL);
}

static void *fail_detached(void *arg)
{
	wf_future *gate = arg; /* a reference of its own */
	CHECK_RC(wf_await(gate, NULL), 0);
	wf_future_release(gate);
	return wf_fail(WF_EIO, "nobody listens");
}

static void *detach_failed_main(void *arg)
{
	wf_future *gate = wf_future_new();
	wf_task *t;
	wf_spawn_opts o = {.name = "orphan"};
	CHECK_RC(wf_spawn_ex(fail_detached, wf_future_retain(gate), &o, &t), 0);
	CHECK_RC(wf_detach(t), 0);
	CHECK_RC(wf_future_set(gate, NULL), 0);
	wf_future_release(gate);
	return NULL;
}

Test(task, detached_failure_is_reported)
{
	stderr_capture cap;
	stderr_capture_begin(&cap);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	int rc = wf_run(&cfg, detach_failed_main, NULL, NULL);
	char *err = stderr_capture_end(&cap);
	cr_assert_eq(rc, 0);
	check_none_failed();
	cr_assert(strstr(err, "weft: task \"orphan\" failed: nobody listens, never joined") != NULL,
		  "stderr was: %s", err);
	free(err);
	check_no_leaks();
}

/* ---- names and wf_current ------------------------------------------------ */

typedef struct seen {
	wf_task *current;
	char name[64];
	int worker;
	uintptr_t stack_addr;
} seen;

static void *record_self(void *arg)
{
	seen *s = arg;
	volatile char marker = 0;
	s->current = wf_current();
	const char *n = wf_task_name(wf_current());
	snprintf(s->name, sizeof(s->name), "%s", n != NULL ? n : "(null)");
	s->worker = wf_worker_id();
	s->stack_addr = (uintptr_t)&marker;
	return (void *)(uintptr_t)marker;
}

static void *names_main(void *arg)
{
	seen s1 = {0}, s2 = {0}, s3 = {0};
	wf_task *t;
	wf_spawn_opts o = {.name = "fetcher"};
	CHECK_RC(wf_spawn_ex(record_self, &s1, &o, &t), 0);
	CHECK(strcmp(wf_task_name(t), "fetcher") == 0);
	wf_task *h1 = t;
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK(strcmp(s1.name, "fetcher") == 0);
	CHECK(s1.current == h1);

	/* Names are copied and cut at 31 bytes. */
	char longname[64];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[63] = '\0';
	o.name = longname;
	CHECK_RC(wf_spawn_ex(record_self, &s2, &o, &t), 0);
	memset(longname, 'x', 10);
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK_EQ(strlen(s2.name), 31);
	CHECK(strspn(s2.name, "n") == 31);

	/* Default names: "task-<id>", distinct. */
	wf_task *a = wf_spawn(record_self, &s3);
	wf_task *b = wf_spawn(triple, NULL);
	char an[64], bn[64];
	snprintf(an, sizeof(an), "%s", wf_task_name(a));
	snprintf(bn, sizeof(bn), "%s", wf_task_name(b));
	CHECK(strncmp(an, "task-", 5) == 0);
	CHECK(strncmp(bn, "task-", 5) == 0);
	CHECK(strcmp(an, bn) != 0);
	CHECK_RC(wf_join(a, NULL), 0);
	CHECK_RC(wf_join(b, NULL), 0);
	CHECK(strcmp(s3.name, an) == 0);
	CHECK(s3.current == a);

	CHECK(wf_task_name(NULL) == NULL);

	/* The current task is the same across suspensions, wherever it
	 * resumes. */
	wf_task *me = wf_current();
	CHECK(me != NULL);
	for (int i = 0; i < 50; i++) {
		CHECK_RC(i % 2 ? wf_yield() : wf_sleep(1), 0);
		CHECK(wf_current() == me);
		int id = wf_worker_id();
		CHECK(id >= 0 && id < (int)wf_runtime_workers(wf_runtime_current()));
	}
	return NULL;
}

Test(task, names_and_current)
{
	run_weft(1, names_main, NULL);
	run_weft(4, names_main, NULL);
}

/* ---- inline await -------------------------------------------------------- */

static void *started_then_wait(void *arg)
{
	seen *s = arg;
	record_self(s);
	CHECK_RC(wf_yield(), 0);
	return NULL;
}

/* One worker: between the spawn and the join the joiner does not suspend,
 * so nobody can have started the child: it must run inline, on the
 * joiner's stack (just below the joiner's frame) and on its worker. */
static void *inline_main(void *arg)
{
	for (int i = 0; i < 200; i++) {
		volatile char here = 0;
		uintptr_t my_addr = (uintptr_t)&here;
		int my_worker = wf_worker_id();
		wf_task *me = wf_current();
		seen s = {0};
		wf_task *t = wf_spawn(record_self, &s);
		CHECK(!wf_task_done(t));
		CHECK_RC(wf_join(t, NULL), 0);
		CHECK(s.current == t);
		CHECK_EQ(s.worker, my_worker);
		CHECK(s.stack_addr < my_addr);
		CHECK(my_addr - s.stack_addr < 16 * 1024);
		CHECK(wf_current() == me);

		/* Contrast: a child that started (we yielded to it) ran on a
		 * fiber of its own, not just below our frame. */
		seen s2 = {0};
		t = wf_spawn(started_then_wait, &s2);
		CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_join(t, NULL), 0);
		CHECK(s2.current == t);
		CHECK(s2.stack_addr > my_addr || my_addr - s2.stack_addr >= 16 * 1024);
		(void)here;
	}
	return NULL;
}

Test(task, inline_await_runs_on_the_joiners_stack)
{
	run_weft(1, inline_main, NULL);
}

/* Fork-join with many workers: thieves race the joiner for unstarted
 * children (stolen, or claimed inline), results must add up. */
static void *fib(void *arg)
{
	intptr_t n = (intptr_t)arg;
	if (n < 2)
		return (void *)n;
	wf_task *t = wf_spawn(fib, (void *)(n - 1));
	if (!CHECK(t != NULL))
		return NULL;
	intptr_t b = (intptr_t)fib((void *)(n - 2));
	void *a = NULL;
	CHECK_RC(wf_join(t, &a), 0);
	return (void *)((intptr_t)a + b);
}

Test(task, fork_join_across_workers)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		cr_assert_eq((intptr_t)run_weft(worker_counts[i], fib, (void *)18), 2584);
}

/* ---- many tasks across workers ------------------------------------------ */

typedef struct spread {
	int workers_seen[8]; /* atomic flags */
	int sum;             /* atomic */
} spread;

static void *blocking_piece(void *arg)
{
	spread *sp = arg;
	/* Holds its worker (a plain blocking call): the other workers must
	 * steal the rest. */
	struct timespec ts = {0, 2000000};
	nanosleep(&ts, NULL);
	int id = wf_worker_id();
	if (CHECK(id >= 0 && id < 8))
		__atomic_store_n(&sp->workers_seen[id], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&sp->sum, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *spread_main(void *arg)
{
	enum { N = 64 };
	spread sp = {{0}, 0};
	wf_task *ts[N];
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(blocking_piece, &sp);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	CHECK_EQ(sp.sum, N);
	int seen = 0;
	for (int i = 0; i < 8; i++)
		seen += sp.workers_seen[i];
	return (void *)(intptr_t)seen;
}

Test(task, work_spreads_over_workers)
{
	intptr_t seen = (intptr_t)run_weft(4, spread_main, NULL);
	cr_assert_geq(seen, 2, "all 64 blocking tasks ran on %ld worker(s)", (long)seen);
}

static void *tree(void *arg)
{
	intptr_t depth = (intptr_t)arg;
	if (depth == 0) {
		CHECK_RC(wf_yield(), 0);
		return (void *)1;
	}
	wf_task *kids[4];
	for (int i = 0; i < 4; i++)
		kids[i] = wf_spawn(tree, (void *)(depth - 1));
	intptr_t sum = 0;
	for (int i = 3; i >= 0; i--) {
		void *r = NULL;
		CHECK_RC(wf_join(kids[i], &r), 0);
		sum += (intptr_t)r;
	}
	return (void *)sum;
}

Test(task, many_tasks_tree)
{
	/* 4^6 = 4096 leaves, 5461 tasks, over 8 workers; 4^5 when the
	 * stress loops are scaled down (under TSan every new stack is slow
	 * to map, and this tree holds them all at once). */
	intptr_t depth = test_iters(100) < 50 ? 5 : 6;
	cr_assert_eq((intptr_t)run_weft(8, tree, (void *)depth), (intptr_t)1 << (2 * depth));
}

/* ---- join errors ---------------------------------------------------------- */

typedef struct joiners {
	wf_task *target;
	wf_future *busy_seen;
	int rcs[2];
} joiners;

static void *wait_gate(void *arg)
{
	CHECK_RC(wf_await(arg, NULL), 0);
	return (void *)0xabc;
}

static void *join_target(void *arg)
{
	joiners *j = arg;
	int slot = wf_task_name(wf_current())[0] == 'A' ? 0 : 1;
	void *res = NULL;
	int rc = wf_join(j->target, &res);
	j->rcs[slot] = rc;
	if (rc == WF_EBUSY)
		CHECK_RC(wf_future_set(j->busy_seen, NULL), 0);
	else
		CHECK(res == (void *)0xabc);
	return NULL;
}

static void *join_errors_main(void *arg)
{
	CHECK_RC(wf_join(NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_join_ex(NULL, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_join(wf_current(), NULL), WF_EDEADLK);

	for (int i = 0; i < 50; i++) {
		/* Two joiners of one task: the second gets WF_EBUSY and the
		 * first still gets the result. */
		wf_future *gate = wf_future_new();
		joiners j = {.target = wf_spawn(wait_gate, gate), .busy_seen = wf_future_new()};
		if (i % 2)
			CHECK_RC(wf_yield(), 0);
		wf_task *a, *b;
		wf_spawn_opts oa = {.name = "A"}, ob = {.name = "B"};
		CHECK_RC(wf_spawn_ex(join_target, &j, &oa, &a), 0);
		CHECK_RC(wf_spawn_ex(join_target, &j, &ob, &b), 0);
		/* Only the loser returns before the gate opens. */
		CHECK_RC(wf_await_timeout(j.busy_seen, NULL, 10000), 0);
		CHECK_RC(wf_future_set(gate, NULL), 0);
		CHECK_RC(wf_join(a, NULL), 0);
		CHECK_RC(wf_join(b, NULL), 0);
		CHECK((j.rcs[0] == 0 && j.rcs[1] == WF_EBUSY) ||
		      (j.rcs[0] == WF_EBUSY && j.rcs[1] == 0));
		wf_future_release(gate);
		wf_future_release(j.busy_seen);
	}
	return NULL;
}

Test(task, join_errors)
{
	run_weft(1, join_errors_main, NULL);
	run_weft(4, join_errors_main, NULL);
}

/* ---- spawn options and errors -------------------------------------------- */

static void *deep_frames(void *arg)
{
	/* Needs far more than a default stack (64 KiB; 512 KiB in sanitizer
	 * builds): only the requested size makes room for it. */
	volatile char big[1536 * 1024];
	big[0] = 1;
	big[sizeof(big) - 1] = 2;
	return (void *)(intptr_t)(big[0] + big[sizeof(big) - 1]);
}

static void *spawn_ex_main(void *arg)
{
	wf_task *t = (wf_task *)-1;
	CHECK_RC(wf_spawn_ex(NULL, NULL, NULL, &t), WF_EINVAL);
	CHECK(t == NULL);
	CHECK_RC(wf_spawn_ex(triple, NULL, NULL, NULL), WF_EINVAL);
	CHECK(wf_spawn(NULL, NULL) == NULL);

	wf_spawn_opts o = {.name = "big", .stack_size = 4 << 20};
	CHECK_RC(wf_spawn_ex(deep_frames, NULL, &o, &t), 0);
	void *res = NULL;
	CHECK_RC(wf_join(t, &res), 0);
	CHECK_EQ((intptr_t)res, 3);

	/* Same, but started on its own fiber before the join. */
	CHECK_RC(wf_spawn_ex(deep_frames, NULL, &o, &t), 0);
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_join(t, &res), 0);
	CHECK_EQ((intptr_t)res, 3);
	return NULL;
}

Test(task, spawn_options)
{
	run_weft(1, spawn_ex_main, NULL);
	run_weft(2, spawn_ex_main, NULL);
}

/* ---- plain threads --------------------------------------------------------- */

static void check_plain_thread_calls(void)
{
	CHECK(wf_spawn(triple, NULL) == NULL);
	wf_task *t = (wf_task *)-1;
	CHECK_RC(wf_spawn_ex(triple, NULL, NULL, &t), WF_ENOTTASK);
	CHECK(t == NULL);
	CHECK_RC(wf_yield(), WF_ENOTTASK);
	CHECK_RC(wf_uncancel(), WF_ENOTTASK);
	CHECK_RC(wf_cancelling(), WF_ENOTTASK);
	CHECK(wf_fail(WF_EIO, "x") == NULL);
	CHECK(wf_current() == NULL);
	CHECK_EQ(wf_worker_id(), -1);
	CHECK(wf_runtime_current() == NULL);
	CHECK_RC(wf_join(NULL, NULL), WF_EINVAL);
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_sleep(2), 0); /* a plain thread sleeps */
	CHECK(mono_ns() - t0 >= 2000000);
}

static void *plain_thread_body(void *arg)
{
	check_plain_thread_calls();
	return NULL;
}

Test(task, calls_from_a_plain_thread)
{
	/* No runtime at all, then a plain thread while one runs. */
	check_plain_thread_calls();
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(NULL, &rt), 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, plain_thread_body, NULL), 0);
	pthread_join(th, NULL);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	check_none_failed();
	check_no_leaks();
}

typedef struct plain_join {
	wf_task *t;
	wf_future *gate, *joined;
	int rc;
	void *res;
} plain_join;

static void *plain_joiner(void *arg)
{
	plain_join *pj = arg;
	pj->rc = wf_join(pj->t, &pj->res);
	CHECK_RC(wf_future_set(pj->joined, NULL), 0);
	return NULL;
}

static void *plain_join_main(void *arg)
{
	for (int i = 0; i < 20; i++) {
		plain_join pj = {.gate = wf_future_new(), .joined = wf_future_new(), .rc = 1};
		pj.t = wf_spawn(wait_gate, pj.gate);
		pthread_t th;
		if (!CHECK(pthread_create(&th, NULL, plain_joiner, &pj) == 0))
			return NULL;
		if (i % 2)
			CHECK_RC(wf_sleep(1), 0);
		CHECK_RC(wf_future_set(pj.gate, NULL), 0);
		CHECK_RC(wf_await_timeout(pj.joined, NULL, 10000), 0);
		pthread_join(th, NULL); /* it has finished: does not block */
		CHECK_RC(pj.rc, 0);
		CHECK(pj.res == (void *)0xabc);
		wf_future_release(pj.gate);
		wf_future_release(pj.joined);
	}
	return NULL;
}

Test(task, join_from_a_plain_thread)
{
	run_weft(1, plain_join_main, NULL);
	run_weft(3, plain_join_main, NULL);
}

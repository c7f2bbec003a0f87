/*
 * The cancellation rules of docs/cancellation.md that the other suites do
 * not already cover: a cancel requested while the task runs (delivered at
 * its next suspension), a task that handles its cancellation inside a
 * timeout scope and goes on, and every resource of cancelled tasks given
 * back (their own, through their cleanup path, and the runtime's: every
 * task started has finished, and the sanitizer builds check the memory).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt_check.h"
#include "runtime/rt.h" /* live_tasks() reads the workers' counters */
#include "weft.h"

/* Longer than any test could take to get to its cancellations: under
 * ThreadSanitizer on a busy machine, starting 600 tasks (each a new TSan
 * fiber) before a yielding main task runs again has taken over 10 s, and a
 * sleep that ends first is not cancelled. Cancelled sleeps end at once. */
#define LONG_MS 120000

static const unsigned worker_counts[] = {1, 2, 4, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* ---- while running ------------------------------------------------------------ */

typedef struct runner {
	int go;        /* atomic: the canceller did its part */
	int started;   /* atomic */
	int rc, cancelling;
	wf_task *task;
} runner;

static void *busy_task(void *arg)
{
	runner *r = arg;
	__atomic_store_n(&r->started, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&r->go, __ATOMIC_SEQ_CST))
		spin(100); /* running: nothing can be delivered here */
	CHECK_EQ(wf_cancelling(), 0);
	r->rc = wf_sleep(LONG_MS); /* the next suspension gets it */
	r->cancelling = wf_cancelling();
	return NULL;
}

/* A plain thread: the spinning task may hold the only worker. */
static void *canceller(void *arg)
{
	runner *r = arg;
	while (!__atomic_load_n(&r->started, __ATOMIC_SEQ_CST))
		spin(100);
	CHECK_RC(wf_cancel(r->task), 0);
	CHECK_RC(wf_cancel(r->task), 0); /* twice before delivery: once */
	__atomic_store_n(&r->go, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *while_running_main(void *arg)
{
	long rounds = test_iters_min(40, 2);
	for (int round = 0; round < rounds; round++) {
		runner r = {0};
		wf_task *t = wf_spawn(busy_task, &r);
		r.task = t;
		pthread_t th;
		pthread_create(&th, NULL, canceller, &r);
		if (round % 2)
			wf_sleep(1); /* let it start on a fiber, or join it inline */
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		pthread_join(th, NULL);
		CHECK_RC(r.rc, WF_ECANCELED);
		CHECK_EQ(r.cancelling, 1);
	}
	return NULL;
}

Test(cancel_rules, while_running_at_the_next_suspension)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], while_running_main, NULL);
}

/* ---- handled inside a scope ------------------------------------------------------ */

static void *handled_in_scope_main(void *arg)
{
	long rounds = test_iters(20);
	for (int round = 0; round < rounds; round++) {
		wf_timeout to;
		CHECK_RC(wf_timeout_enter(&to, 1), 0);
		int rc = wf_sleep(LONG_MS);
		CHECK_RC(rc, WF_ECANCELED);
		/* Handled: the task goes on inside the scope, which is expired
		 * and does not cancel again. */
		CHECK_EQ(wf_uncancel(), 0);
		CHECK_RC(wf_sleep(1), 0);
		CHECK(wf_timeout_expired(&to));
		CHECK_RC(wf_timeout_leave(&to, 0), 0);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

Test(cancel_rules, handled_inside_a_timeout_scope)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], handled_in_scope_main, NULL);
}

/* ---- resources ------------------------------------------------------------------------ */

static int freed;

static void *holder(void *arg)
{
	char *buf = malloc(4096);
	buf[0] = 1;
	int rc = wf_sleep(LONG_MS);
	free(buf); /* the cleanup path runs on cancellation too */
	__atomic_add_fetch(&freed, 1, __ATOMIC_SEQ_CST);
	return rc == WF_ECANCELED ? NULL : (void *)1;
}

static uint64_t live_tasks(void)
{
	wf_runtime *rt = wf_runtime_current();
	uint64_t started = 0, finished = 0;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		started += __atomic_load_n(&rt->workers[i].n_started, __ATOMIC_ACQUIRE);
		finished += __atomic_load_n(&rt->workers[i].n_finished, __ATOMIC_ACQUIRE);
	}
	return started - finished;
}

static void *resources_main(void *arg)
{
	enum { N = 300 };
	wf_task **ts = malloc(N * sizeof(*ts));
	for (int round = 0; round < 4; round++) {
		__atomic_store_n(&freed, 0, __ATOMIC_SEQ_CST);
		uint64_t before = live_tasks();
		wf_group *g;
		CHECK_RC(wf_group_enter(&g), 0);
		for (int i = 0; i < N; i++) {
			ts[i] = wf_spawn(holder, NULL);
			CHECK_RC(wf_group_spawn(g, holder, NULL, NULL, NULL), 0);
		}
		wf_sleep(round); /* some started, some not */
		for (int i = 0; i < N; i++)
			wf_cancel(ts[i]);
		wf_group_cancel(g);
		for (int i = 0; i < N; i++)
			CHECK_RC(wf_join(ts[i], NULL), WF_ECANCELED);
		CHECK_RC(wf_group_leave(g, NULL, NULL), 0);
		/* Those that started freed their buffer; none is left. */
		CHECK(__atomic_load_n(&freed, __ATOMIC_SEQ_CST) <= 2 * N);
		CHECK_EQ(live_tasks(), before);
	}
	free(ts);
	return NULL;
}

Test(cancel_rules, cancelled_tasks_give_everything_back)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], resources_main, NULL);
}

/* From a plain thread: scopes and groups belong to tasks. */
Test(cancel_rules, scopes_need_a_task)
{
	wf_group *g = NULL;
	cr_assert_eq(wf_group_enter(&g), WF_ENOTTASK);
	cr_assert_null(g);
	cr_assert_eq(wf_group_enter(NULL), WF_EINVAL);
}

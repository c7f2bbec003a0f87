/*
 * wf_event: error codes, set/clear/is_set, every waiter woken by one set
 * (even if the flag is cleared at once), timeouts and cancellations of
 * waiters, set from a plain thread, and waiting from a plain thread.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>

#include "rt_check.h"
#include "weft.h"

static void *bad_input_main(void *arg)
{
	wf_event *e;
	CHECK_RC(wf_event_new(NULL), WF_EINVAL);
	CHECK_RC(wf_event_set(NULL), WF_EINVAL);
	CHECK_RC(wf_event_clear(NULL), WF_EINVAL);
	CHECK_RC(wf_event_wait(NULL, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_event_free(NULL), WF_EINVAL);
	CHECK(!wf_event_is_set(NULL));

	CHECK_RC(wf_event_new(&e), 0);
	CHECK(!wf_event_is_set(e));
	CHECK_RC(wf_event_wait(e, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_event_wait(e, 2), WF_ETIMEDOUT);
	CHECK_RC(wf_event_set(e), 0);
	CHECK(wf_event_is_set(e));
	CHECK_RC(wf_event_wait(e, 0), 0);
	CHECK_RC(wf_event_wait(e, WF_FOREVER), 0);
	CHECK_RC(wf_event_set(e), 0);
	CHECK_RC(wf_event_clear(e), 0);
	CHECK(!wf_event_is_set(e));
	CHECK_RC(wf_event_free(e), 0);
	return NULL;
}

Test(sync_event, bad_input_and_basics)
{
	run_weft(2, bad_input_main, NULL);
}

/* ---- broadcast ---------------------------------------------------------- */

struct bcast {
	wf_event *e;
	int woken; /* atomic */
};

static void *bcast_waiter(void *arg)
{
	struct bcast *b = arg;
	int rc = wf_event_wait(b->e, WF_FOREVER);
	if (rc == 0)
		__atomic_fetch_add(&b->woken, 1, __ATOMIC_RELAXED);
	return (void *)(intptr_t)rc;
}

/* Waiters queued before a set are all woken, even though the flag is
 * cleared right after; one cancelled waiter does not change that. */
static void *bcast_main(void *arg)
{
	enum { N = 50 };
	struct bcast b = {0};
	wf_task *ts[N];
	CHECK_RC(wf_event_new(&b.e), 0);
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(bcast_waiter, &b);
	/* Let them all queue (one worker: they run in turn up to the wait). */
	CHECK_RC(wf_yield(), 0);
	CHECK_RC(wf_event_free(b.e), WF_EBUSY);
	CHECK_RC(wf_cancel(ts[7]), 0);
	CHECK_RC(wf_event_set(b.e), 0);
	CHECK_RC(wf_event_clear(b.e), 0);
	for (int i = 0; i < N; i++) {
		void *res = NULL;
		int rc = wf_join(ts[i], &res);
		CHECK_RC(rc, i == 7 ? WF_ECANCELED : 0);
		if (i != 7)
			CHECK_RC((int)(intptr_t)res, 0);
	}
	CHECK_EQ(b.woken, N - 1);
	CHECK(!wf_event_is_set(b.e));
	CHECK_RC(wf_event_free(b.e), 0);
	return NULL;
}

Test(sync_event, one_set_wakes_every_waiter)
{
	run_weft(1, bcast_main, NULL);
}

/* ---- many workers, plain threads --------------------------------------- */

struct gate {
	wf_event *go;
	wf_event *done;
	int passed;  /* atomic */
	int timeouts; /* atomic */
	int n;
};

static void *gate_task(void *arg)
{
	struct gate *g = arg;
	/* A short wait first: it must time out, the gate is not open yet. */
	int rc = wf_event_wait(g->go, 1);
	if (CHECK_RC(rc, WF_ETIMEDOUT))
		__atomic_fetch_add(&g->timeouts, 1, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&g->timeouts, g->n, __ATOMIC_RELEASE); /* unblock */
	rc = wf_event_wait(g->go, WF_FOREVER);
	CHECK_RC(rc, 0);
	if (__atomic_add_fetch(&g->passed, 1, __ATOMIC_ACQ_REL) == g->n)
		CHECK_RC(wf_event_set(g->done), 0);
	return NULL;
}

static void *opener_thread(void *arg)
{
	struct gate *g = arg;
	/* Open only once every task's first, short wait has timed out. */
	while (__atomic_load_n(&g->timeouts, __ATOMIC_ACQUIRE) < g->n)
		usleep(1000);
	CHECK_RC(wf_event_set(g->go), 0);
	/* And a plain thread can wait as well. */
	CHECK_RC(wf_event_wait(g->done, WF_FOREVER), 0);
	return NULL;
}

static void *gate_main(void *arg)
{
	enum { N = 200 };
	struct gate g = {.n = N};
	wf_task *ts[N];
	pthread_t th;
	CHECK_RC(wf_event_new(&g.go), 0);
	CHECK_RC(wf_event_new(&g.done), 0);
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(gate_task, &g);
	CHECK_EQ(pthread_create(&th, NULL, opener_thread, &g), 0);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	pthread_join(th, NULL);
	CHECK_EQ(g.passed, N);
	CHECK_EQ(g.timeouts, N);
	CHECK_RC(wf_event_free(g.go), 0);
	CHECK_RC(wf_event_free(g.done), 0);
	return NULL;
}

Test(sync_event, set_from_a_plain_thread_wakes_tasks_on_every_worker)
{
	run_weft(2, gate_main, NULL);
	run_weft(8, gate_main, NULL);
}

/* ---- stress: set/clear racing with waits ------------------------------- */

/* Waiters wait with random timeouts (and get cancelled) while the main task
 * sets and clears. Invariant: a wait returns 0 only if the flag was set at
 * some moment during it. sets is counted before each set and clears after
 * each clear, so at any moment the flag is set, sets > clears; a wait that
 * saw the flag set therefore ends with sets above the clears it started
 * with. The final set (no clear after) releases everybody. */
struct race {
	wf_event *e;
	long sets;   /* atomic */
	long clears; /* atomic */
	int spurious; /* atomic */
	int ok;       /* atomic */
};

static void *race_waiter(void *arg)
{
	struct race *r = arg;
	uint64_t seed = (uintptr_t)wf_current() | 1;
	for (int i = 0; i < 40; i++) {
		long c0 = __atomic_load_n(&r->clears, __ATOMIC_ACQUIRE);
		int rc = wf_event_wait(r->e, rng_next(&seed) % 3);
		long s1 = __atomic_load_n(&r->sets, __ATOMIC_ACQUIRE);
		if (rc == 0) {
			__atomic_fetch_add(&r->ok, 1, __ATOMIC_RELAXED);
			if (s1 <= c0)
				__atomic_fetch_add(&r->spurious, 1, __ATOMIC_RELAXED);
		} else if (rc == WF_ECANCELED) {
			wf_uncancel();
		} else {
			CHECK_RC(rc, WF_ETIMEDOUT);
		}
	}
	/* The last wait has no deadline: only the final set ends it. */
	while (wf_event_wait(r->e, WF_FOREVER) == WF_ECANCELED)
		wf_uncancel();
	return NULL;
}

static void *race_main(void *arg)
{
	enum { N = 16 };
	struct race r = {0};
	wf_task *ts[N];
	CHECK_RC(wf_event_new(&r.e), 0);
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(race_waiter, &r);
	uint64_t seed = 42;
	for (int k = 0; k < 60; k++) {
		wf_sleep(rng_next(&seed) % 2);
		__atomic_fetch_add(&r.sets, 1, __ATOMIC_RELEASE);
		wf_event_set(r.e);
		if (rng_next(&seed) % 2)
			wf_yield();
		wf_cancel(ts[rng_next(&seed) % N]);
		wf_event_clear(r.e);
		__atomic_fetch_add(&r.clears, 1, __ATOMIC_RELEASE);
	}
	__atomic_fetch_add(&r.sets, 1, __ATOMIC_RELEASE);
	wf_event_set(r.e);
	for (int i = 0; i < N; i++) {
		int rc = wf_join(ts[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	CHECK_EQ(r.spurious, 0);
	CHECK(r.ok > 0);
	CHECK_RC(wf_event_free(r.e), 0);
	return NULL;
}

Test(sync_event, stress_set_clear_wait)
{
	run_weft(2, race_main, NULL);
	run_weft(4, race_main, NULL);
}

/* From a plain thread: a zero timeout never blocks; bad input. */
Test(sync_event, plain_thread_and_bad_input)
{
	wf_event *e = NULL;
	cr_assert_eq(wf_event_new(&e), 0);
	cr_assert_eq(wf_event_wait(e, 0), WF_ETIMEDOUT);
	cr_assert_eq(wf_event_set(e), 0);
	cr_assert_eq(wf_event_wait(e, 0), 0);
	cr_assert_eq(wf_event_wait(NULL, 0), WF_EINVAL);
	cr_assert_eq(wf_event_new(NULL), WF_EINVAL);
	cr_assert_eq(wf_event_free(e), 0);
}

/*
 * Fairness on one worker: a task that yields in a loop must not starve a
 * sleeping task's timer, a task woken from a plain thread, nor work
 * submitted from outside the runtime; and yielding tasks take turns.
 *
 * Each case is bounded by an iteration count, not by time: the yielder
 * gives up after YIELD_LIMIT yields, and the test fails if the other side
 * had not got through by then. The limit is far above what the wait costs
 * in yields when the scheduler is fair (a few milliseconds' worth).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_check.h"
#include "weft.h"

#define YIELD_LIMIT 20000000L

/* Yields until *flag is set; returns the number of yields, or -1 if the
 * limit was reached first. */
static long yield_until(const int *flag)
{
	for (long n = 0; n < YIELD_LIMIT; n++) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
			return n;
		if (!CHECK_RC(wf_yield(), 0))
			return -1;
	}
	return -1;
}

/* ---- timers ------------------------------------------------------------------ */

static void *short_sleeper(void *arg)
{
	CHECK_RC(wf_sleep(5), 0);
	__atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *timer_main(void *arg)
{
	for (int it = 0; it < 5 && !check_any_failed(); it++) {
		int woke = 0;
		wf_task *t = wf_spawn(short_sleeper, &woke);
		long n = yield_until(&woke);
		CHECK(n >= 0);
		CHECK_RC(wf_join(t, NULL), 0);
	}
	return NULL;
}

Test(fairness, yielder_does_not_starve_a_timer)
{
	run_weft(1, timer_main, NULL);
}

/* ---- wake-ups from plain threads ------------------------------------------------ */

typedef struct remote_wake {
	wf_future *f;
	int waiting; /* atomic: the awaiter is about to await */
	int woke;    /* atomic */
} remote_wake;

static void *awaiter(void *arg)
{
	remote_wake *r = arg;
	__atomic_store_n(&r->waiting, 1, __ATOMIC_RELEASE);
	CHECK_RC(wf_await_timeout(r->f, NULL, 10000), 0);
	__atomic_store_n(&r->woke, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *completer(void *arg)
{
	remote_wake *r = arg;
	while (!__atomic_load_n(&r->waiting, __ATOMIC_ACQUIRE))
		sched_yield();
	struct timespec ts = {0, 1000000}; /* let it suspend */
	nanosleep(&ts, NULL);
	CHECK_RC(wf_future_set(r->f, NULL), 0);
	return NULL;
}

static void *remote_wake_main(void *arg)
{
	for (int it = 0; it < 5 && !check_any_failed(); it++) {
		remote_wake r = {.f = wf_future_new()};
		wf_task *t = wf_spawn(awaiter, &r);
		pthread_t th;
		if (!CHECK(pthread_create(&th, NULL, completer, &r) == 0))
			return NULL;
		CHECK(yield_until(&r.woke) >= 0);
		pthread_join(th, NULL);
		CHECK_RC(wf_join(t, NULL), 0);
		wf_future_release(r.f);
	}
	return NULL;
}

Test(fairness, yielder_does_not_starve_a_wake_from_a_plain_thread)
{
	run_weft(1, remote_wake_main, NULL);
}

/* ---- submissions from outside ----------------------------------------------------- */

typedef struct outside {
	wf_runtime *rt;
	int ran; /* atomic */
	wf_future *f;
} outside;

static void *submitted(void *arg)
{
	__atomic_store_n(&((outside *)arg)->ran, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *submit_thread(void *arg)
{
	outside *o = arg;
	CHECK_RC(wf_runtime_submit(o->rt, submitted, o, &o->f), 0);
	return NULL;
}

static void *injection_main(void *arg)
{
	for (int it = 0; it < 5 && !check_any_failed(); it++) {
		outside o = {.rt = wf_runtime_current()};
		pthread_t th;
		if (!CHECK(pthread_create(&th, NULL, submit_thread, &o) == 0))
			return NULL;
		CHECK(yield_until(&o.ran) >= 0);
		pthread_join(th, NULL);
		if (o.f != NULL) {
			CHECK_RC(wf_await_timeout(o.f, NULL, 10000), 0);
			wf_future_release(o.f);
		}
	}
	return NULL;
}

Test(fairness, yielder_does_not_starve_submitted_work)
{
	run_weft(1, injection_main, NULL);
}

/* ---- yielders take turns ------------------------------------------------------------ */

enum { TURNS = 500 };

typedef struct turns {
	char log[2 * TURNS + 8];
	int n;
} turns;

typedef struct turner {
	turns *t;
	char id;
} turner;

static void *take_turns(void *arg)
{
	turner *me = arg;
	for (int i = 0; i < TURNS; i++) {
		/* One worker: no other thread touches the log meanwhile. */
		me->t->log[me->t->n++] = me->id;
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

static void *turns_main(void *arg)
{
	for (int it = 0; it < 5 && !check_any_failed(); it++) {
		turns log = {.n = 0};
		turner a = {&log, 'a'}, b = {&log, 'b'};
		wf_task *ta = wf_spawn(take_turns, &a);
		wf_task *tb = wf_spawn(take_turns, &b);
		CHECK_RC(wf_yield(), 0); /* both start on their own fibers */
		CHECK_RC(wf_join(ta, NULL), 0);
		CHECK_RC(wf_join(tb, NULL), 0);
		CHECK_EQ(log.n, 2 * TURNS);
		/* From the moment both ran until one of them is done, each
		 * yield let the other one run: they alternate. */
		int seen_a = 0, seen_b = 0;
		for (int i = 0; i < log.n; i++) {
			seen_a += log.log[i] == 'a';
			seen_b += log.log[i] == 'b';
			if (seen_a == TURNS || seen_b == TURNS)
				break;
			if (i > 0 && seen_a > 0 && seen_b > 0 && log.log[i] == log.log[i - 1]) {
				check_fail(__FILE__, __LINE__,
					   "'%c' ran twice in a row at turn %d while the other "
					   "task was runnable",
					   log.log[i], i);
				break;
			}
		}
	}
	return NULL;
}

Test(fairness, yielders_take_turns)
{
	run_weft(1, turns_main, NULL);
}

/* From a plain thread: yielding needs a task; a zero sleep returns. */
Test(fairness, yield_outside_a_task)
{
	cr_assert_eq(wf_yield(), WF_ENOTTASK);
	cr_assert_eq(wf_sleep(0), 0);
}

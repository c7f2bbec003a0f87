/*
 * Callbacks on the loop (wf_call_soon/later/at), their handles, the loop
 * clock, and intervals: bad input, deadlines kept and ordered, cancel
 * before and after the run, calls from plain threads (call_soon_threadsafe),
 * callbacks that suspend and see the scheduler's context, a shutdown with
 * far-off calls pending, a stress of calls and cancels from tasks and
 * plain threads, and every missed-tick policy.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>

#include "rt_check.h"
#include "weft.h"

#define MS 1000000ull

struct rec {
	uint64_t when;  /* the deadline asked for */
	uint64_t ran;   /* wf_time_ns at the run */
	int order;      /* the place it ran in */
	int *counter;   /* shared: atomic */
	wf_event *done; /* set by the run, if any */
};

static void record(void *arg)
{
	struct rec *r = arg;
	r->ran = wf_time_ns();
	r->order = __atomic_add_fetch(r->counter, 1, __ATOMIC_ACQ_REL);
	if (r->done != NULL)
		wf_event_set(r->done);
}

/* ---- bad input ---------------------------------------------------------- */

static void nothing(void *arg)
{
	(void)arg;
}

static void *bad_input_main(void *arg)
{
	(void)arg;
	wf_timer *t = (wf_timer *)1;
	CHECK_RC(wf_call_soon(NULL, NULL, NULL, &t), WF_EINVAL);
	CHECK(t == NULL);
	CHECK_RC(wf_call_later(NULL, 1, NULL, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_timer_cancel(NULL), WF_EINVAL);
	CHECK_RC(wf_timer_free(NULL), WF_EINVAL);
	CHECK(wf_timer_when(NULL) == 0);
	CHECK(!wf_timer_done(NULL));

	wf_interval *iv = (wf_interval *)1;
	CHECK_RC(wf_interval_new(0, WF_TICK_BURST, &iv), WF_EINVAL);
	CHECK_RC(wf_interval_new(10, 7, &iv), WF_EINVAL);
	CHECK_RC(wf_interval_new(10, WF_TICK_BURST, NULL), WF_EINVAL);
	CHECK_RC(wf_interval_tick(NULL), WF_EINVAL);
	CHECK_RC(wf_interval_reset(NULL), WF_EINVAL);
	CHECK_RC(wf_interval_free(NULL), WF_EINVAL);

	/* A freed handle is refused from then on. */
	CHECK_RC(wf_call_later(NULL, 60000, nothing, NULL, &t), 0);
	CHECK(wf_timer_when(t) > wf_time_ns());
	CHECK_RC(wf_timer_cancel(t), 0);
	CHECK_RC(wf_timer_cancel(t), WF_EALREADY);
	CHECK_RC(wf_timer_free(t), 0);
	CHECK_RC(wf_timer_free(t), WF_EINVAL);
	CHECK_RC(wf_timer_cancel(t), WF_EINVAL);
	CHECK_RC(wf_interval_new(10, WF_TICK_SKIP, &iv), 0);
	CHECK_RC(wf_interval_free(iv), 0);
	CHECK_RC(wf_interval_tick(iv), WF_EINVAL);
	CHECK_RC(wf_interval_free(iv), WF_EINVAL);
	return NULL;
}

Test(timer, bad_input)
{
	cr_assert_eq(wf_call_soon(NULL, nothing, NULL, NULL), WF_ENOTTASK);
	uint64_t a = wf_time_ns(), b = wf_time_ns();
	cr_assert_leq(a, b);
	run_weft(2, bad_input_main, NULL);
}

/* ---- deadlines, order, cancel ------------------------------------------- */

static void *order_main(void *arg)
{
	(void)arg;
	int counter = 0;
	wf_event *done;
	CHECK_RC(wf_event_new(&done), 0);
	static const int delays[] = {300, 100, 200, 0};
	struct rec r[4] = {0};
	wf_timer *t[4];
	uint64_t now = wf_time_ns();
	for (int i = 0; i < 4; i++) {
		r[i].counter = &counter;
		r[i].when = now + (uint64_t)delays[i] * MS;
		if (i == 3)
			CHECK_RC(wf_call_soon(NULL, record, &r[i], &t[i]), 0);
		else
			CHECK_RC(wf_call_at(NULL, r[i].when, record, &r[i], &t[i]), 0);
	}
	r[0].done = done; /* the last one to run */
	/* A call cancelled before its deadline never runs. */
	struct rec never = {.counter = &counter};
	wf_timer *tn;
	CHECK_RC(wf_call_later(NULL, 250, record, &never, &tn), 0);
	CHECK_RC(wf_sleep(5), 0);
	CHECK_RC(wf_timer_cancel(tn), 0);
	CHECK_RC(wf_event_wait(done, 10000), 0);
	CHECK_RC(wf_sleep(50), 0); /* past the cancelled one's deadline */
	CHECK(never.order == 0);
	CHECK(!wf_timer_done(tn));
	CHECK_RC(wf_timer_free(tn), 0);
	/* In deadline order, never before the deadline. */
	CHECK_EQ(r[3].order, 1);
	CHECK_EQ(r[1].order, 2);
	CHECK_EQ(r[2].order, 3);
	CHECK_EQ(r[0].order, 4);
	for (int i = 0; i < 4; i++) {
		CHECK(r[i].ran >= r[i].when);
		CHECK(wf_timer_done(t[i]));
		CHECK_RC(wf_timer_cancel(t[i]), WF_EALREADY);
		CHECK_RC(wf_timer_free(t[i]), 0);
	}
	CHECK_EQ(counter, 4);
	/* A deadline already past: runs at once. */
	struct rec past = {.counter = &counter, .done = done};
	CHECK_RC(wf_event_clear(done), 0);
	CHECK_RC(wf_call_at(NULL, wf_time_ns() - 1000 * MS, record, &past, NULL), 0);
	CHECK_RC(wf_event_wait(done, 10000), 0);
	CHECK_EQ(past.order, 5);
	CHECK_RC(wf_event_free(done), 0);
	return NULL;
}

Test(timer, deadlines_order_and_cancel)
{
	run_weft(2, order_main, NULL);
}

/* ---- callbacks that suspend and see the context ---------------------------- */

static wf_ctxvar *cv;

struct susp {
	wf_future *f;
};

static void suspending(void *arg)
{
	struct susp *s = arg;
	int rc = wf_sleep(5);
	intptr_t v = (intptr_t)wf_ctxvar_get(cv);
	wf_future_set(s->f, (void *)(rc == 0 ? v : -1));
}

static void *suspend_main(void *arg)
{
	(void)arg;
	CHECK_RC(wf_ctxvar_new("cv", NULL, &cv), 0);
	CHECK_RC(wf_ctxvar_set(cv, (void *)(intptr_t)31, NULL), 0);
	struct susp s = {.f = wf_future_new()};
	CHECK_RC(wf_call_later(NULL, 1, suspending, &s, NULL), 0);
	CHECK_RC(wf_ctxvar_set(cv, (void *)(intptr_t)32, NULL), 0); /* after: unseen */
	void *v = NULL;
	CHECK_RC(wf_await(s.f, &v), 0);
	CHECK(v == (void *)(intptr_t)31);
	wf_future_release(s.f);
	CHECK_RC(wf_ctxvar_free(cv), 0);
	return NULL;
}

Test(timer, callbacks_suspend_and_see_the_context)
{
	run_weft(2, suspend_main, NULL);
}

/* ---- plain threads and shutdown --------------------------------------------- */

static void set_future(void *arg)
{
	wf_future_set(arg, (void *)(intptr_t)wf_worker_id());
}

Test(timer, from_plain_threads_and_shutdown_with_calls_pending)
{
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(NULL, &rt), 0);
	wf_future *f = wf_future_new();
	cr_assert_not_null(f);
	wf_timer *t;
	cr_assert_eq(wf_call_soon(rt, set_future, f, &t), 0);
	void *v = NULL;
	cr_assert_eq(wf_await(f, &v), 0);
	cr_assert_geq((intptr_t)v, 0); /* it ran on a worker */
	cr_assert_eq(wf_timer_free(t), 0);
	wf_future_release(f);

	/* Far-off calls, with and without handles: the shutdown does not
	 * wait for them, and they never run. */
	int counter = 0;
	struct rec r = {.counter = &counter};
	wf_timer *far;
	cr_assert_eq(wf_call_later(rt, 3600 * 1000, record, &r, &far), 0);
	cr_assert_eq(wf_call_later(rt, 3600 * 1000, record, &r, NULL), 0);
	cr_assert_eq(wf_call_at(rt, wf_time_ns() + 3600 * 1000 * MS, record, &r, NULL), 0);
	uint64_t t0 = wf_time_ns();
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	cr_assert_lt(wf_time_ns() - t0, 60000 * MS);
	cr_assert_eq(counter, 0);
	cr_assert_eq(wf_timer_cancel(far), WF_EALREADY);
	cr_assert_eq(wf_timer_free(far), 0);
	check_no_leaks();
}

/* ---- stress ------------------------------------------------------------------- */

#define STRESS_CALLS 64

struct stress {
	int ran;       /* atomic */
	int cancelled; /* atomic: cancels that returned 0 */
	int flags[4 * STRESS_CALLS * 2]; /* atomic: 1 ran, 2 cancelled */
};

struct stress_call {
	struct stress *s;
	int idx;
};

static struct stress_call calls[4 * STRESS_CALLS * 2];

static void stress_cb(void *arg)
{
	struct stress_call *c = arg;
	if (__atomic_fetch_or(&c->s->flags[c->idx], 1, __ATOMIC_ACQ_REL) & 2)
		check_fail(__FILE__, __LINE__, "call %d ran after a successful cancel", c->idx);
	__atomic_add_fetch(&c->s->ran, 1, __ATOMIC_ACQ_REL);
}

static void stress_round(wf_runtime *rt, struct stress *s, int base, uint64_t seed)
{
	wf_timer *t[STRESS_CALLS];
	for (int i = 0; i < STRESS_CALLS; i++) {
		struct stress_call *c = &calls[base + i];
		c->s = s;
		c->idx = base + i;
		int rc = wf_call_later(rt, rng_next(&seed) % 4, stress_cb, c, &t[i]);
		if (!CHECK_RC(rc, 0))
			t[i] = NULL;
	}
	for (int i = 0; i < STRESS_CALLS; i++) {
		if (t[i] == NULL)
			continue;
		if (rng_next(&seed) & 1) {
			spin(rng_next(&seed) % 2000);
			int rc = wf_timer_cancel(t[i]);
			if (rc == 0) {
				if (__atomic_fetch_or(&s->flags[base + i], 2, __ATOMIC_ACQ_REL) & 1)
					check_fail(__FILE__, __LINE__, "cancel of a call that ran");
				__atomic_add_fetch(&s->cancelled, 1, __ATOMIC_ACQ_REL);
			} else {
				CHECK_RC(rc, WF_EALREADY);
			}
		}
		CHECK_RC(wf_timer_free(t[i]), 0);
	}
}

struct stress_arg {
	wf_runtime *rt;
	struct stress *s;
	int base;
};

static void *stress_task(void *arg)
{
	struct stress_arg *a = arg;
	stress_round(NULL, a->s, a->base, 0x9e3779b97f4a7c15ull ^ (uint64_t)a->base);
	return NULL;
}

static void *stress_thread(void *arg)
{
	struct stress_arg *a = arg;
	stress_round(a->rt, a->s, a->base, 0x51afd7ed558ccdull ^ (uint64_t)a->base);
	return NULL;
}

Test(timer, stress_calls_and_cancels_from_tasks_and_threads)
{
	long rounds = test_iters(30);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 4;
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(&cfg, &rt), 0);
	for (long r = 0; r < rounds && !check_any_failed(); r++) {
		struct stress s = {0};
		struct stress_arg a[8];
		wf_future *f[4];
		pthread_t th[4];
		for (int i = 0; i < 8; i++)
			a[i] = (struct stress_arg){.rt = rt, .s = &s, .base = i * STRESS_CALLS};
		for (int i = 0; i < 4; i++)
			cr_assert_eq(wf_runtime_submit(rt, stress_task, &a[i], &f[i]), 0);
		for (int i = 0; i < 4; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, stress_thread, &a[4 + i]), 0);
		for (int i = 0; i < 4; i++) {
			cr_assert_eq(wf_await(f[i], NULL), 0);
			wf_future_release(f[i]);
			pthread_join(th[i], NULL);
		}
		/* Every call either ran or was cancelled, exactly once. */
		uint64_t deadline = wf_time_ns() + 30000 * MS;
		while (__atomic_load_n(&s.ran, __ATOMIC_ACQUIRE) + s.cancelled < 8 * STRESS_CALLS &&
		       wf_time_ns() < deadline)
			wf_sleep(1);
		cr_assert_eq(s.ran + s.cancelled, 8 * STRESS_CALLS, "ran %d cancelled %d", s.ran,
			     s.cancelled);
		for (int i = 0; i < 8 * STRESS_CALLS; i++)
			cr_assert(s.flags[i] == 1 || s.flags[i] == 2, "call %d: %d", i, s.flags[i]);
	}
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	check_none_failed();
	check_no_leaks();
}

/* ---- intervals ---------------------------------------------------------------- */

static void *interval_main(void *arg)
{
	(void)arg;
	const uint64_t P = 150; /* ms */
	wf_interval *iv;

	/* Burst: the missed ticks come at once, then the schedule resumes. */
	CHECK_RC(wf_interval_new(P, WF_TICK_BURST, &iv), 0);
	uint64_t t0 = wf_time_ns();
	CHECK_RC(wf_interval_tick(iv), 0); /* the first: at once */
	CHECK_RC(wf_sleep(3 * P + P / 2), 0);
	for (int i = 0; i < 3; i++) { /* due at P, 2P, 3P: at once */
		uint64_t before = wf_time_ns();
		CHECK_RC(wf_interval_tick(iv), 0);
		CHECK(wf_time_ns() - before < P * MS / 2);
	}
	CHECK_RC(wf_interval_tick(iv), 0);
	CHECK(wf_time_ns() >= t0 + 4 * P * MS);
	CHECK_RC(wf_interval_free(iv), 0);

	/* Delay: the late tick comes at once, the next a period after it. */
	CHECK_RC(wf_interval_new(P, WF_TICK_DELAY, &iv), 0);
	CHECK_RC(wf_interval_tick(iv), 0);
	CHECK_RC(wf_sleep(2 * P + P / 2), 0);
	CHECK_RC(wf_interval_tick(iv), 0);
	uint64_t late = wf_time_ns();
	CHECK_RC(wf_interval_tick(iv), 0);
	CHECK(wf_time_ns() >= late + P * MS - MS);
	CHECK_RC(wf_interval_free(iv), 0);

	/* Skip: the missed ticks are dropped and counted; the schedule stays
	 * on multiples of the period. */
	CHECK_RC(wf_interval_new(P, WF_TICK_SKIP, &iv), 0);
	t0 = wf_time_ns();
	CHECK_RC(wf_interval_tick(iv), 0);
	CHECK_RC(wf_sleep(2 * P + P / 2), 0);
	int skipped = wf_interval_tick(iv);
	CHECK(skipped >= 1);
	CHECK_RC(wf_interval_tick(iv), 0);
	uint64_t at = wf_time_ns() - t0;
	CHECK(at >= (uint64_t)(skipped + 2) * P * MS);
	/* Reset: the next tick is a period from the reset. */
	CHECK_RC(wf_interval_reset(iv), 0);
	uint64_t r0 = wf_time_ns();
	CHECK_RC(wf_interval_tick(iv), 0);
	CHECK(wf_time_ns() >= r0 + P * MS);
	CHECK_RC(wf_interval_free(iv), 0);
	return NULL;
}

Test(timer, interval_missed_tick_policies)
{
	run_weft(2, interval_main, NULL);
}

static void *ticker(void *arg)
{
	wf_interval *iv = arg;
	int rc = wf_interval_tick(iv);
	return (void *)(intptr_t)rc;
}

/* Waits (10 s at most) until the task named `name` waits on an interval. */
static bool until_ticking(const char *name)
{
	for (int i = 0; i < 2000; i++) {
		wf_task_info info[8];
		size_t count;
		int n = wf_task_list(wf_runtime_current(), info, 8, &count);
		for (int k = 0; k < n; k++)
			if (strcmp(info[k].name, name) == 0 && info[k].state == WF_TASK_WAITING &&
			    strcmp(info[k].waits_on, "interval") == 0)
				return true;
		wf_sleep(5);
	}
	return false;
}

static void *interval_edges_main(void *arg)
{
	(void)arg;
	wf_interval *iv;
	CHECK_RC(wf_interval_new(60000, WF_TICK_BURST, &iv), 0);
	CHECK_RC(wf_interval_tick(iv), 0);
	/* One waiter at a time; a cancelled one returns WF_ECANCELED. */
	wf_spawn_opts oa = {.name = "ticker-a"}, ob = {.name = "ticker-b"};
	wf_task *a, *b;
	CHECK_RC(wf_spawn_ex(ticker, iv, &oa, &a), 0);
	CHECK(until_ticking("ticker-a"));
	CHECK_RC(wf_interval_tick(iv), WF_EBUSY);
	CHECK_RC(wf_cancel(a), 0);
	void *r = NULL;
	CHECK_RC(wf_join(a, &r), WF_ECANCELED);
	/* Freed while a tick waits: that tick returns WF_ECLOSED. */
	CHECK_RC(wf_spawn_ex(ticker, iv, &ob, &b), 0);
	CHECK(until_ticking("ticker-b"));
	CHECK_RC(wf_interval_free(iv), 0);
	CHECK_RC(wf_join(b, &r), 0);
	CHECK_RC((int)(intptr_t)r, WF_ECLOSED);
	CHECK_RC(wf_interval_tick(iv), WF_EINVAL);
	return NULL;
}

Test(timer, interval_busy_cancel_and_free_while_waiting)
{
	run_weft(2, interval_edges_main, NULL);
}

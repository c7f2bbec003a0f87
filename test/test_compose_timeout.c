/*
 * Timeout scopes: expiry cancels the suspension in progress and the scope
 * turns it into WF_ETIMEDOUT, never early and not much late; no expiry
 * leaves everything as it was; a deadline moved while inside; an expiry
 * while the task runs (no suspension after it) leaves nothing pending;
 * nested scopes (the inner never takes the outer's expiry); a scope around
 * a group and a gather; a cancellation from outside stays one; misuse.
 *
 * Deadlines are checked "not early" exactly and "not late" loosely
 * (LATE_MS): the machines that run the suite are loaded.
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

static bool elapsed_ok(uint64_t t0, uint64_t ms)
{
	uint64_t took = mono_ns() - t0;
	return CHECK(took >= ms * 1000000) && CHECK(took < (ms + LATE_MS) * 1000000);
}

/* ---- expiry ------------------------------------------------------------------- */

static void *expiry_main(void *arg)
{
	long rounds = test_iters_min(15, 4);
	for (int round = 0; round < rounds; round++) {
		uint64_t ms = 1 + round % 4;
		wf_timeout to;
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_timeout_enter(&to, ms), 0);
		int rc = wf_sleep(LONG_MS);
		CHECK_RC(rc, WF_ECANCELED);
		CHECK(wf_timeout_expired(&to));
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		elapsed_ok(t0, ms);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_RC(wf_yield(), 0); /* nothing left pending */

		/* In time: the code's own result goes through. */
		CHECK_RC(wf_timeout_enter(&to, LONG_MS), 0);
		rc = wf_sleep(1);
		CHECK(!wf_timeout_expired(&to));
		CHECK_RC(wf_timeout_leave(&to, rc), 0);
		CHECK_RC(wf_timeout_enter(&to, LONG_MS), 0);
		CHECK_RC(wf_timeout_leave(&to, WF_EIO), WF_EIO);
		CHECK_EQ(wf_cancelling(), 0);

		/* No deadline, and an already expired one. */
		CHECK_RC(wf_timeout_enter(&to, WF_FOREVER), 0);
		CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_timeout_leave(&to, 0), 0);
		CHECK_RC(wf_timeout_enter(&to, 0), 0);
		rc = wf_yield();
		CHECK_RC(rc, WF_ECANCELED);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

Test(timeout, expiry_cancels_and_turns_into_etimedout)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], expiry_main, NULL);
}

/* Every kind of suspension inside the scope is what the expiry reaches. */
static void *kinds_main(void *arg)
{
	wf_future *never = wf_future_new();
	wf_event *ev;
	CHECK_RC(wf_event_new(&ev), 0);
	long rounds = test_iters(10);
	for (int round = 0; round < rounds; round++) {
		wf_timeout to;
		int rc;
		CHECK_RC(wf_timeout_enter(&to, 2), 0);
		rc = wf_await(never, NULL);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		CHECK_RC(wf_timeout_enter(&to, 2), 0);
		rc = wf_event_wait(ev, WF_FOREVER);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		CHECK_RC(wf_timeout_enter(&to, 2), 0);
		while ((rc = wf_yield()) == 0)
			;
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		CHECK_EQ(wf_cancelling(), 0);
	}
	wf_event_free(ev);
	wf_future_release(never);
	return NULL;
}

Test(timeout, reaches_every_kind_of_suspension)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], kinds_main, NULL);
}

/* The deadline passes while the task runs and it never suspends again
 * inside: the scope's cancellation must not outlive the scope. */
static void *expiry_while_running_main(void *arg)
{
	long rounds = test_iters(10);
	for (int round = 0; round < rounds; round++) {
		wf_timeout to;
		CHECK_RC(wf_timeout_enter(&to, 1), 0);
		uint64_t t0 = mono_ns();
		while (mono_ns() - t0 < 3000000)
			spin(100);
		/* Give the helper time to fire on another worker. */
		while (!wf_timeout_expired(&to))
			spin(100);
		CHECK_RC(wf_timeout_leave(&to, 0), 0);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

Test(timeout, expiry_while_running_leaves_nothing_pending)
{
	for (size_t i = 1; i < NCOUNTS; i++) /* the helper needs a second worker */
		run_weft(worker_counts[i], expiry_while_running_main, NULL);
}

/* ---- moving the deadline ----------------------------------------------------------- */

static void *reschedule_main(void *arg)
{
	long rounds = test_iters(8);
	for (int round = 0; round < rounds; round++) {
		wf_timeout to;
		/* Later: it does not fire at the first deadline. (That one
		 * is far enough for a loaded machine to reach the reschedule
		 * before it.) */
		CHECK_RC(wf_timeout_enter(&to, 100), 0);
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_timeout_reschedule(&to, 150), 0);
		int rc = wf_sleep(LONG_MS);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		elapsed_ok(t0, 150);
		/* Earlier. */
		CHECK_RC(wf_timeout_enter(&to, LONG_MS), 0);
		t0 = mono_ns();
		CHECK_RC(wf_yield(), 0);
		CHECK_RC(wf_timeout_reschedule(&to, 3), 0);
		rc = wf_sleep(LONG_MS);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		elapsed_ok(t0, 3);
		/* From none to one, and from one to none. */
		CHECK_RC(wf_timeout_enter(&to, WF_FOREVER), 0);
		t0 = mono_ns();
		CHECK_RC(wf_timeout_reschedule(&to, 2), 0);
		rc = wf_sleep(LONG_MS);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		elapsed_ok(t0, 2);
		CHECK_RC(wf_timeout_enter(&to, 100), 0);
		CHECK_RC(wf_timeout_reschedule(&to, WF_FOREVER), 0);
		CHECK_RC(wf_sleep(110), 0);
		CHECK_RC(wf_timeout_leave(&to, 0), 0);
		/* Too late to move it. */
		CHECK_RC(wf_timeout_enter(&to, 1), 0);
		rc = wf_sleep(LONG_MS);
		CHECK_RC(wf_timeout_reschedule(&to, LONG_MS), WF_EALREADY);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		CHECK_EQ(wf_cancelling(), 0);
	}
	return NULL;
}

Test(timeout, reschedule)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], reschedule_main, NULL);
}

/* ---- nesting -------------------------------------------------------------------- */

static void *nested_main(void *arg)
{
	long rounds = test_iters_min(10, 3);
	for (int round = 0; round < rounds; round++) {
		wf_timeout outer, inner;
		int rc;
		/* The inner one expires: the outer one never sees it. */
		CHECK_RC(wf_timeout_enter(&outer, LONG_MS), 0);
		CHECK_RC(wf_timeout_enter(&inner, 2), 0);
		rc = wf_sleep(LONG_MS);
		CHECK_RC(wf_timeout_leave(&inner, rc), WF_ETIMEDOUT);
		CHECK(!wf_timeout_expired(&outer));
		CHECK_RC(wf_sleep(1), 0);
		CHECK_RC(wf_timeout_leave(&outer, 0), 0);

		/* The outer one expires inside the inner one: the inner one
		 * lets the cancellation through, the outer one reports it. */
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_timeout_enter(&outer, 3), 0);
		CHECK_RC(wf_timeout_enter(&inner, LONG_MS), 0);
		rc = wf_sleep(LONG_MS);
		CHECK_RC(rc, WF_ECANCELED);
		rc = wf_timeout_leave(&inner, rc);
		CHECK_RC(rc, WF_ECANCELED);
		CHECK_RC(wf_timeout_leave(&outer, rc), WF_ETIMEDOUT);
		elapsed_ok(t0, 3);
		CHECK_EQ(wf_cancelling(), 0);

		/* Both expire (the outer first, or at once): one cancellation
		 * or two, the inner one never swallows the outer's. */
		CHECK_RC(wf_timeout_enter(&outer, 2), 0);
		CHECK_RC(wf_timeout_enter(&inner, 2 + round % 3), 0);
		rc = wf_sleep(LONG_MS);
		while (!(wf_timeout_expired(&inner) && wf_timeout_expired(&outer)))
			wf_sleep(1); /* may be cancelled again: the second delivery */
		rc = wf_timeout_leave(&inner, WF_ECANCELED);
		CHECK_RC(rc, WF_ECANCELED);
		CHECK_RC(wf_timeout_leave(&outer, rc), WF_ETIMEDOUT);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_RC(wf_yield(), 0);

		/* Leaving out of order is refused. */
		CHECK_RC(wf_timeout_enter(&outer, LONG_MS), 0);
		CHECK_RC(wf_timeout_enter(&inner, LONG_MS), 0);
		CHECK_RC(wf_timeout_leave(&outer, 0), WF_EINVAL);
		CHECK_RC(wf_timeout_leave(&inner, 0), 0);
		CHECK_RC(wf_timeout_leave(&outer, 0), 0);
	}
	return NULL;
}

Test(timeout, nested_scopes)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], nested_main, NULL);
}

/* ---- with groups, gather, and cancellations from outside ------------------------------- */

static int running;

static void *forever_child(void *arg)
{
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	wf_sleep(LONG_MS);
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *with_group_main(void *arg)
{
	long rounds = test_iters_min(10, 2);
	for (int round = 0; round < rounds; round++) {
		wf_timeout to;
		wf_group *g;
		uint64_t t0 = mono_ns();
		CHECK_RC(wf_timeout_enter(&to, 3), 0);
		CHECK_RC(wf_group_enter(&g), 0);
		for (int i = 0; i < 4; i++)
			CHECK_RC(wf_group_spawn(g, forever_child, NULL, NULL, NULL), 0);
		if (round % 2)
			wf_sleep(LONG_MS); /* cancelled in the body */
		int rc = wf_group_leave(g, NULL, NULL);
		CHECK_RC(rc, WF_ECANCELED);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		elapsed_ok(t0, 3);
		CHECK_EQ(wf_cancelling(), 0);

		/* A gather inside a scope: its children are cancelled too. */
		wf_task *ts[3];
		for (int i = 0; i < 3; i++)
			ts[i] = wf_spawn(forever_child, NULL);
		CHECK_RC(wf_timeout_enter(&to, 2), 0);
		rc = wf_gather(ts, 3, NULL, 0);
		CHECK_RC(wf_timeout_leave(&to, rc), WF_ETIMEDOUT);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		CHECK_EQ(wf_cancelling(), 0);
	}
	return NULL;
}

Test(timeout, around_a_group_and_a_gather)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], with_group_main, NULL);
}

typedef struct victim_arg {
	wf_future *inside;
	int rc, leave_rc, cancelling;
} victim_arg;

static void *scoped_victim(void *arg)
{
	victim_arg *v = arg;
	wf_timeout to;
	CHECK_RC(wf_timeout_enter(&to, LONG_MS), 0);
	wf_future_set(v->inside, NULL);
	v->rc = wf_sleep(LONG_MS);
	v->leave_rc = wf_timeout_leave(&to, v->rc);
	v->cancelling = wf_cancelling();
	return NULL;
}

static void *outside_cancel_main(void *arg)
{
	long rounds = test_iters(30);
	for (int round = 0; round < rounds; round++) {
		victim_arg v = {.inside = wf_future_new()};
		wf_task *t = wf_spawn(scoped_victim, &v);
		wf_await(v.inside, NULL);
		wf_cancel(t);
		CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
		/* Not the scope's: it stays a cancellation. */
		CHECK_RC(v.rc, WF_ECANCELED);
		CHECK_RC(v.leave_rc, WF_ECANCELED);
		CHECK_EQ(v.cancelling, 1);
		wf_future_release(v.inside);
	}
	return NULL;
}

Test(timeout, a_cancellation_from_outside_stays_one)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], outside_cancel_main, NULL);
}

/* ---- misuse -------------------------------------------------------------------------- */

static void *other_leaver(void *arg)
{
	CHECK_RC(wf_timeout_leave(arg, 0), WF_EINVAL);
	CHECK_RC(wf_timeout_reschedule(arg, 1), WF_EINVAL);
	return NULL;
}

static void *misuse_main(void *arg)
{
	wf_timeout to;
	CHECK_RC(wf_timeout_enter(NULL, 1), WF_EINVAL);
	CHECK_RC(wf_timeout_leave(NULL, 0), WF_EINVAL);
	CHECK_RC(wf_timeout_reschedule(NULL, 1), WF_EINVAL);
	CHECK(!wf_timeout_expired(NULL));
	CHECK_RC(wf_timeout_enter(&to, LONG_MS), 0);
	CHECK_RC(wf_join(wf_spawn(other_leaver, &to), NULL), 0);
	CHECK_RC(wf_timeout_leave(&to, 0), 0);
	return NULL;
}

Test(timeout, misuse)
{
	run_weft(2, misuse_main, NULL);
	wf_timeout to;
	cr_assert_eq(wf_timeout_enter(&to, 1), WF_ENOTTASK);
	cr_assert_eq(wf_timeout_leave(&to, 0), WF_ENOTTASK);
}

/* ---- a scope left twice, and expired() after the leave ----------------- */

static void *leave_twice_main(void *arg)
{
	(void)arg;
	wf_timeout to;
	CHECK_RC(wf_timeout_enter(&to, 0), 0); /* expired at once */
	CHECK(wf_timeout_expired(&to));
	CHECK_RC(wf_timeout_leave(&to, WF_ECANCELED), WF_ETIMEDOUT);
	CHECK(wf_timeout_expired(&to)); /* still readable after the leave */
	CHECK_RC(wf_timeout_leave(&to, 0), WF_EINVAL);
	CHECK_RC(wf_timeout_reschedule(&to, 5), WF_EINVAL);
	CHECK_EQ(wf_cancelling(), 0);
	/* A new scope in the same storage is a new scope. */
	CHECK_RC(wf_timeout_enter(&to, LONG_MS), 0);
	CHECK(!wf_timeout_expired(&to));
	CHECK_RC(wf_timeout_leave(&to, 0), 0);
	CHECK(!wf_timeout_expired(&to));
	CHECK_RC(wf_timeout_leave(&to, 0), WF_EINVAL);
	return NULL;
}

Test(timeout, leave_twice)
{
	run_weft(2, leave_twice_main, NULL);
}

/* ---- a scope left open by a task that returns ----------------------------
 * The task returns without wf_timeout_leave (an early return on an error
 * path): its exit reports the scope (with the place it was entered) and
 * closes it (the deadline helper stopped: nothing cancels anybody later,
 * nothing reads the returned frame), and the task fails with WF_EINVAL
 * saying so. Its joiner never hangs. Inline-joined (one worker, joined
 * before it starts) and on its own fiber (a stack size of its own). */

static int open_scope_line;
static int open_nested_line;

typedef struct open_arg {
	uint64_t ms;  /* the scope's timeout */
	bool nested;  /* inside a group also left open */
	bool suspend; /* sleeps once inside */
} open_arg;

static void *open_scope_task(void *arg)
{
	open_arg *a = arg;
	wf_group *g = NULL;
	wf_timeout to; /* gone with this frame */
	if (a->nested) {
		open_nested_line = __LINE__ + 1;
		if (!CHECK_RC(wf_group_enter(&g), 0))
			return NULL;
	}
	open_scope_line = __LINE__ + 1;
	if (!CHECK_RC(wf_timeout_enter(&to, a->ms), 0))
		return NULL;
	if (a->suspend)
		wf_sleep(1);
	return (void *)1; /* the early return */
}

static void *open_scope_main(void *arg)
{
	bool own_fiber = arg != NULL;
	static const uint64_t ms[] = {0, 5, 30, LONG_MS};
	for (int round = 0; round < 24 && !check_any_failed(); round++) {
		open_arg a = {.ms = ms[round % 4], .nested = (round / 4) % 3 == 2,
			      .suspend = (round / 4) % 2 == 1};
		wf_spawn_opts o = {.name = "leaves-scope-open", .stack_size = own_fiber ? 65536 : 0};
		wf_task *t;
		if (!CHECK_RC(wf_spawn_ex(open_scope_task, &a, &o, &t), 0))
			break;
		if (own_fiber)
			wf_sleep(1); /* it starts on its own fiber */
		uint64_t t0 = mono_ns();
		void *res = (void *)2;
		char *msg = NULL;
		CHECK_RC(wf_join_ex(t, &res, &msg), WF_EINVAL);
		CHECK(mono_ns() - t0 < (uint64_t)LONG_MS / 2 * 1000000u); /* never the scope's deadline */
		CHECK(res == NULL);
		char want[160];
		snprintf(want, sizeof(want),
			 "returned inside an open timeout scope opened at %s:%d%s", __FILE__,
			 open_scope_line, a.nested ? " (and 1 more)" : "");
		if (CHECK(msg != NULL))
			CHECK(strstr(msg, want) != NULL);
		free(msg);
		/* Nothing cancels anybody later: not the joiner (which may have
		 * run the task on its own stack), not a task that reuses it. */
		CHECK_RC(wf_sleep(40), 0);
		CHECK_EQ(wf_cancelling(), 0);
	}
	return NULL;
}

static void check_open_scope_report(const char *err)
{
	char want[200];
	snprintf(want, sizeof(want),
		 "weft: task \"leaves-scope-open\" returned inside an open timeout scope "
		 "(opened at %s:%d)",
		 __FILE__, open_scope_line);
	cr_assert(strstr(err, want) != NULL, "stderr: %s", err);
	snprintf(want, sizeof(want),
		 "weft: task \"leaves-scope-open\" returned inside an open task group "
		 "(opened at %s:%d)",
		 __FILE__, open_nested_line);
	cr_assert(strstr(err, want) != NULL, "stderr: %s", err);
}

Test(timeout, returned_inside_open_scope_inline)
{
	stderr_capture c;
	stderr_capture_begin(&c);
	run_weft(1, open_scope_main, NULL);
	char *err = stderr_capture_end(&c);
	check_open_scope_report(err);
	free(err);
}

Test(timeout, returned_inside_open_scope_own_fiber)
{
	stderr_capture c;
	for (size_t i = 0; i < NCOUNTS; i++) {
		stderr_capture_begin(&c);
		run_weft(worker_counts[i], open_scope_main, (void *)1);
		char *err = stderr_capture_end(&c);
		check_open_scope_report(err);
		free(err);
	}
}

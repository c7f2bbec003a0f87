/*
 * Task groups: leaving waits for every child (none left running), the
 * first failure cancels the siblings and the owner's body, every failure is
 * returned, children spawn into their own group, groups nest, cancelling
 * the group or its owner, and misuse caught by its code. Many rounds on 1
 * to 8 workers.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

#define LONG_MS 10000

static const unsigned worker_counts[] = {1, 2, 4, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

static int running; /* children running now */

/* ---- results, and children that spawn siblings --------------------------- */

typedef struct slot_arg {
	wf_group *g;
	uint64_t *slot;
	uint64_t value;
	int how;             /* 0 at once, 1 yield, 2 sleep 1 ms */
	struct slot_arg *more; /* spawned into the group by this child */
} slot_arg;

static void *slot_child(void *arg)
{
	slot_arg *a = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	if (a->how == 1)
		wf_yield();
	else if (a->how == 2)
		wf_sleep(1);
	if (a->more != NULL)
		CHECK_RC(wf_group_spawn(a->g, slot_child, a->more, NULL, NULL), 0);
	__atomic_store_n(a->slot, a->value, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

#define NSLOTS 96

static void *results_main(void *arg)
{
	uint64_t seed = 12345;
	long rounds = test_iters_min(60, 2);
	for (int round = 0; round < rounds; round++) {
		uint64_t slots[2 * NSLOTS] = {0};
		slot_arg args[2 * NSLOTS];
		size_t n = 1 + rng_next(&seed) % NSLOTS;
		wf_group *g;
		if (!CHECK_RC(wf_group_enter(&g), 0))
			return NULL;
		for (size_t i = 0; i < n; i++) {
			slot_arg *more = NULL;
			if (i % 4 == 0) {
				more = &args[NSLOTS + i];
				*more = (slot_arg){g, &slots[NSLOTS + i], 2000 + i, rng_next(&seed) % 3, NULL};
			}
			args[i] = (slot_arg){g, &slots[i], 1000 + i, rng_next(&seed) % 3, more};
			wf_task *child;
			CHECK_RC(wf_group_spawn(g, slot_child, &args[i], NULL, &child), 0);
			CHECK(child != NULL);
		}
		if (round % 2)
			wf_yield();
		CHECK_RC(wf_group_leave(g, NULL, NULL), 0);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		for (size_t i = 0; i < n; i++) {
			CHECK_EQ(slots[i], 1000 + i);
			if (i % 4 == 0)
				CHECK_EQ(slots[NSLOTS + i], 2000 + i);
		}
		CHECK_EQ(wf_cancelling(), 0);
	}
	return NULL;
}

Test(group, leave_waits_for_every_child)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], results_main, NULL);
}

/* ---- the first failure ---------------------------------------------------- */

typedef struct fail_arg {
	int fail;     /* this child fails with it after a yield */
	int saw;      /* what its long sleep returned */
} fail_arg;

static void *sleeper_or_failer(void *arg)
{
	fail_arg *a = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	void *res = NULL;
	if (a->fail != 0) {
		wf_yield();
		res = wf_fail(a->fail, "broken");
	} else {
		a->saw = wf_sleep(LONG_MS);
	}
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return res;
}

static void *first_failure_main(void *arg)
{
	long rounds = test_iters_min(30, 8);
	for (int round = 0; round < rounds; round++) {
		enum { N = 8 };
		fail_arg args[N];
		wf_group *g;
		CHECK_RC(wf_group_enter(&g), 0);
		for (int i = 0; i < N; i++) {
			args[i] = (fail_arg){.fail = i == round % N ? WF_EIO : 0, .saw = 1};
			/* Once the failer failed, the group takes no more. */
			int rc = wf_group_spawn(g, sleeper_or_failer, &args[i], NULL, NULL);
			CHECK(rc == 0 || (rc == WF_ESHUTDOWN && i > round % N));
		}
		/* The owner's body is cancelled by the failure. */
		int body = wf_sleep(LONG_MS);
		CHECK_RC(body, WF_ECANCELED);
		CHECK_EQ(wf_cancelling(), 1);
		/* A group winding down takes no new child. */
		fail_arg late = {0};
		CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &late, NULL, NULL), WF_ESHUTDOWN);
		wf_failure *fails;
		size_t nfails;
		CHECK_RC(wf_group_leave(g, &fails, &nfails), WF_EIO);
		CHECK_EQ(wf_cancelling(), 0); /* the group took it back */
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		if (CHECK_EQ(nfails, 1)) {
			CHECK_RC(fails[0].err, WF_EIO);
			CHECK(fails[0].msg != NULL && strcmp(fails[0].msg, "broken") == 0);
		}
		wf_failures_free(fails, nfails);
		for (int i = 0; i < N; i++)
			if (args[i].fail == 0 && args[i].saw != 1) /* 1: never started */
				CHECK_RC(args[i].saw, WF_ECANCELED);
	}
	return NULL;
}

Test(group, first_failure_cancels_siblings_and_the_body)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], first_failure_main, NULL);
}

/* A failure while the owner already waits in its leave: the siblings are
 * cancelled, the owner is not. */
static void *failure_at_leave_main(void *arg)
{
	long rounds = test_iters(30);
	for (int round = 0; round < rounds; round++) {
		fail_arg a = {.fail = WF_EPIPE}, b = {.saw = 1}, c = {.saw = 1};
		wf_group *g;
		CHECK_RC(wf_group_enter(&g), 0);
		CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &b, NULL, NULL), 0);
		CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &c, NULL, NULL), 0);
		CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &a, NULL, NULL), 0);
		CHECK_RC(wf_group_leave(g, NULL, NULL), WF_EPIPE);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		CHECK(b.saw == 1 || b.saw == WF_ECANCELED);
		CHECK(c.saw == 1 || c.saw == WF_ECANCELED);
		/* The owner's next suspension is not cancelled. */
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

Test(group, failure_while_leaving)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], failure_at_leave_main, NULL);
}

/* ---- every failure is returned ------------------------------------------ */

typedef struct gate_fail_arg {
	wf_future *gate;
	int code;
} gate_fail_arg;

/* Fails with its own code whatever happens (even when cancelled). */
static void *stubborn_failer(void *arg)
{
	gate_fail_arg *a = arg;
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	wf_await(a->gate, NULL);
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return wf_fail(a->code, "own failure");
}

static void *every_failure_main(void *arg)
{
	long rounds = test_iters(30);
	for (int round = 0; round < rounds; round++) {
		enum { N = 6 };
		gate_fail_arg args[N];
		wf_future *gate = wf_future_new();
		wf_group *g;
		CHECK_RC(wf_group_enter(&g), 0);
		for (int i = 0; i < N; i++) {
			args[i] = (gate_fail_arg){gate, -5000 - i};
			CHECK_RC(wf_group_spawn(g, stubborn_failer, &args[i], NULL, NULL), 0);
		}
		wf_yield();
		wf_future_set(gate, NULL);
		wf_failure *fails;
		size_t nfails;
		int rc = wf_group_leave(g, &fails, &nfails);
		CHECK(rc <= -5000 && rc > -5000 - N);
		/* Every child failed: cancelled or not, each one's own code,
		 * the first one first. A child cancelled before it started
		 * never ran and did not fail. */
		CHECK(nfails >= 1 && nfails <= N);
		if (nfails >= 1)
			CHECK_RC(fails[0].err, rc);
		int seen = 0;
		for (size_t i = 0; i < nfails; i++) {
			int k = -5000 - fails[i].err;
			CHECK(k >= 0 && k < N && !(seen & (1 << k)));
			seen |= 1 << k;
			CHECK(strncmp(fails[i].name, "task-", 5) == 0);
		}
		wf_failures_free(fails, nfails);
		CHECK_EQ(wf_cancelling(), 0);
		wf_future_release(gate);
	}
	return NULL;
}

Test(group, every_failure_is_returned)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], every_failure_main, NULL);
}

/* With one worker the children all start (each awaits the gate) before the
 * owner opens it: every one of them fails, and all are listed. */
static void *all_listed_main(void *arg)
{
	enum { N = 5 };
	gate_fail_arg args[N];
	wf_future *gate = wf_future_new();
	wf_group *g;
	CHECK_RC(wf_group_enter(&g), 0);
	for (int i = 0; i < N; i++) {
		args[i] = (gate_fail_arg){gate, -5000 - i};
		wf_spawn_opts o = {.name = "failer"};
		CHECK_RC(wf_group_spawn(g, stubborn_failer, &args[i], &o, NULL), 0);
	}
	while (__atomic_load_n(&running, __ATOMIC_SEQ_CST) != N)
		wf_yield();
	wf_future_set(gate, NULL);
	wf_failure *fails;
	size_t nfails;
	int rc = wf_group_leave(g, &fails, &nfails);
	CHECK_EQ(nfails, N);
	if (nfails > 0)
		CHECK_RC(rc, fails[0].err);
	for (size_t i = 0; i < nfails; i++)
		CHECK(strcmp(fails[i].name, "failer") == 0);
	wf_failures_free(fails, nfails);
	wf_future_release(gate);
	return NULL;
}

Test(group, all_failures_listed)
{
	run_weft(1, all_listed_main, NULL);
}

/* ---- nesting ---------------------------------------------------------------- */

static void *nested_main(void *arg)
{
	long rounds = test_iters(20);
	for (int round = 0; round < rounds; round++) {
		uint64_t s1 = 0, s2 = 0;
		slot_arg ok1 = {.slot = &s1, .value = 1, .how = 2};
		wf_group *outer, *inner;
		CHECK_RC(wf_group_enter(&outer), 0);
		CHECK_RC(wf_group_spawn(outer, slot_child, &ok1, NULL, NULL), 0);
		/* Let it finish first: on a loaded machine it might not even
		 * have started when the outer group is cancelled below, and a
		 * child cancelled before it starts never runs. */
		uint64_t limit = mono_ns() + 20000000000ull;
		while (__atomic_load_n(&s1, __ATOMIC_RELAXED) != 1 && mono_ns() < limit)
			wf_sleep(1);

		/* An inner group whose child fails: the inner body is cancelled,
		 * the inner leave returns the failure and takes the cancellation
		 * back; the outer group goes on untouched. */
		CHECK_RC(wf_group_enter(&inner), 0);
		/* Leaving the outer one first is an error. */
		CHECK_RC(wf_group_leave(outer, NULL, NULL), WF_EINVAL);
		fail_arg bad = {.fail = WF_EIO};
		CHECK_RC(wf_group_spawn(inner, sleeper_or_failer, &bad, NULL, NULL), 0);
		CHECK_RC(wf_sleep(LONG_MS), WF_ECANCELED);
		CHECK_RC(wf_group_leave(inner, NULL, NULL), WF_EIO);
		CHECK_EQ(wf_cancelling(), 0);

		/* The outer group's child fails while the owner is in an inner
		 * group: the inner one sees a cancellation from outside (its
		 * children are cancelled, it returns WF_ECANCELED), the outer
		 * leave returns the failure and takes the cancellation back. */
		fail_arg bad2 = {.fail = WF_EPIPE}, sleepy = {.saw = 1};
		CHECK_RC(wf_group_enter(&inner), 0);
		slot_arg ok2 = {.slot = &s2, .value = 2};
		CHECK_RC(wf_group_spawn(inner, slot_child, &ok2, NULL, NULL), 0);
		CHECK_RC(wf_group_spawn(inner, sleeper_or_failer, &sleepy, NULL, NULL), 0);
		CHECK_RC(wf_group_spawn(outer, sleeper_or_failer, &bad2, NULL, NULL), 0);
		CHECK_RC(wf_sleep(LONG_MS), WF_ECANCELED);
		CHECK_RC(wf_group_leave(inner, NULL, NULL), WF_ECANCELED);
		CHECK_EQ(wf_cancelling(), 1);
		CHECK(sleepy.saw == 1 || sleepy.saw == WF_ECANCELED);
		CHECK_RC(wf_group_leave(outer, NULL, NULL), WF_EPIPE);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_EQ(s1, 1);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

Test(group, groups_nest)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], nested_main, NULL);
}

/* Both groups' children fail at once: one cancellation of the owner may
 * stand for both requests; the inner group hands it to the outer one. */
static void *nested_both_main(void *arg)
{
	long rounds = test_iters_min(30, 3);
	for (int round = 0; round < rounds; round++) {
		wf_group *outer, *inner;
		fail_arg b1 = {.fail = WF_EIO}, b2 = {.fail = WF_EPIPE};
		CHECK_RC(wf_group_enter(&outer), 0);
		CHECK_RC(wf_group_enter(&inner), 0);
		CHECK_RC(wf_group_spawn(outer, sleeper_or_failer, &b1, NULL, NULL), 0);
		CHECK_RC(wf_group_spawn(inner, sleeper_or_failer, &b2, NULL, NULL), 0);
		int rc = wf_sleep(LONG_MS);
		CHECK_RC(rc, WF_ECANCELED);
		/* Let both fail (a second request may be a second delivery). */
		while (!(wf_sleep(1) == 0 && __atomic_load_n(&running, __ATOMIC_SEQ_CST) == 0))
			;
		wf_sleep(round % 3);
		CHECK_RC(wf_group_leave(inner, NULL, NULL), WF_EPIPE);
		CHECK_RC(wf_group_leave(outer, NULL, NULL), WF_EIO);
		/* Both taken back, nothing left pending. */
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

Test(group, nested_failures_at_once)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], nested_both_main, NULL);
}

/* ---- cancelling ----------------------------------------------------------- */

static void *group_cancel_main(void *arg)
{
	long rounds = test_iters_min(30, 2);
	for (int round = 0; round < rounds; round++) {
		enum { N = 5 };
		fail_arg args[N];
		wf_group *g;
		CHECK_RC(wf_group_enter(&g), 0);
		for (int i = 0; i < N; i++) {
			args[i] = (fail_arg){.saw = 1};
			CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &args[i], NULL, NULL), 0);
		}
		if (round % 2)
			wf_sleep(1);
		CHECK_RC(wf_group_cancel(g), 0);
		CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &args[0], NULL, NULL), WF_ESHUTDOWN);
		wf_failure *fails;
		size_t nfails;
		CHECK_RC(wf_group_leave(g, &fails, &nfails), 0);
		CHECK_EQ(nfails, 0);
		CHECK(fails == NULL);
		CHECK_EQ(wf_cancelling(), 0);
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		for (int i = 0; i < N; i++)
			CHECK(args[i].saw == 1 || args[i].saw == WF_ECANCELED);
	}
	return NULL;
}

Test(group, cancel_cancels_every_child)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], group_cancel_main, NULL);
}

typedef struct owner_arg {
	wf_future *in_body;
	int where;  /* 0: cancelled in the body, 1: while leaving */
	int body_rc, leave_rc, cancelling;
	fail_arg kids[4];
} owner_arg;

static void *owner_task(void *arg)
{
	owner_arg *o = arg;
	wf_group *g;
	CHECK_RC(wf_group_enter(&g), 0);
	for (int i = 0; i < 4; i++) {
		o->kids[i] = (fail_arg){.saw = 1};
		CHECK_RC(wf_group_spawn(g, sleeper_or_failer, &o->kids[i], NULL, NULL), 0);
	}
	wf_future_set(o->in_body, NULL);
	o->body_rc = o->where == 0 ? wf_sleep(LONG_MS) : 0;
	o->leave_rc = wf_group_leave(g, NULL, NULL);
	o->cancelling = wf_cancelling();
	wf_uncancel();
	return NULL;
}

static void *owner_cancel_main(void *arg)
{
	long rounds = test_iters_min(40, 4);
	for (int round = 0; round < rounds; round++) {
		owner_arg o = {.in_body = wf_future_new(), .where = round % 2};
		wf_task *t = wf_spawn(owner_task, &o);
		wf_await(o.in_body, NULL);
		if (round % 4 >= 2)
			wf_sleep(1);
		wf_cancel(t);
		CHECK_RC(wf_join(t, NULL), 0);
		if (o.where == 0)
			CHECK_RC(o.body_rc, WF_ECANCELED);
		CHECK_RC(o.leave_rc, WF_ECANCELED);
		CHECK_EQ(o.cancelling, 1); /* not the group's to take back */
		CHECK_EQ(__atomic_load_n(&running, __ATOMIC_SEQ_CST), 0);
		for (int i = 0; i < 4; i++)
			CHECK(o.kids[i].saw == 1 || o.kids[i].saw == WF_ECANCELED);
		wf_future_release(o.in_body);
	}
	return NULL;
}

Test(group, cancelling_the_owner_cancels_the_children)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], owner_cancel_main, NULL);
}

/* ---- misuse ------------------------------------------------------------------ */

static wf_group *shared_group;

static void *foreign_leaver(void *arg)
{
	CHECK_RC(wf_group_leave(shared_group, NULL, NULL), WF_EINVAL);
	return NULL;
}

static void *misuse_main(void *arg)
{
	CHECK_RC(wf_group_enter(NULL), WF_EINVAL);
	CHECK_RC(wf_group_leave(NULL, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_group_cancel(NULL), WF_EINVAL);
	wf_group *g;
	CHECK_RC(wf_group_enter(&g), 0);
	CHECK_RC(wf_group_spawn(g, NULL, NULL, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_group_spawn(NULL, slot_child, NULL, NULL, NULL), WF_EINVAL);
	wf_spawn_opts bad = {.stack_size = 1};
	uint64_t s = 0;
	slot_arg a = {.slot = &s, .value = 7};
	CHECK_RC(wf_group_spawn(g, slot_child, &a, &bad, NULL), WF_EINVAL);
	shared_group = g;
	CHECK_RC(wf_join(wf_spawn(foreign_leaver, NULL), NULL), 0);
	CHECK_RC(wf_group_spawn(g, slot_child, &a, NULL, NULL), 0);
	CHECK_RC(wf_group_leave(g, NULL, NULL), 0);
	CHECK_EQ(s, 7);
	return NULL;
}

Test(group, misuse)
{
	run_weft(2, misuse_main, NULL);
	wf_group *g;
	cr_assert_eq(wf_group_enter(&g), WF_ENOTTASK);
}

/* ---- a group left open by a task that returns ----------------------------
 * The owner returns without leaving: its exit reports the group (with the
 * place it was entered), cancels and awaits the children, and the owner
 * fails with WF_EINVAL saying so. Inline-joined (one worker, joined before
 * it starts) and on its own fiber (a stack size of its own). */

static int open_children_started;   /* grandchildren that started */
static int open_children_done;      /* ... and finished */
static int open_children_cancelled; /* ... and saw WF_ECANCELED */
static int open_group_line;         /* where the owner entered its group */

static void *sleeper_child(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&open_children_started, 1, __ATOMIC_SEQ_CST);
	int rc = wf_sleep(LONG_MS);
	if (rc == WF_ECANCELED)
		__atomic_add_fetch(&open_children_cancelled, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&open_children_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *open_group_owner(void *arg)
{
	wf_group *g;
	open_group_line = __LINE__ + 1;
	if (!CHECK_RC(wf_group_enter(&g), 0))
		return NULL;
	for (int i = 0; i < 3; i++)
		CHECK_RC(wf_group_spawn(g, sleeper_child, NULL, NULL, NULL), 0);
	if (arg != NULL) /* let them start */
		for (int i = 0; i < 2000 && __atomic_load_n(&open_children_started,
							     __ATOMIC_SEQ_CST) < 3; i++)
			wf_sleep(1);
	return (void *)1; /* the early return: no wf_group_leave */
}

static void *open_group_main(void *arg)
{
	bool own_fiber = arg != NULL;
	long rounds = test_iters_min(20, 2);
	for (int round = 0; round < rounds && !check_any_failed(); round++) {
		__atomic_store_n(&open_children_started, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&open_children_done, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&open_children_cancelled, 0, __ATOMIC_SEQ_CST);
		wf_spawn_opts o = {.name = "leaves-group-open", .stack_size = own_fiber ? 65536 : 0};
		wf_task *t;
		if (!CHECK_RC(wf_spawn_ex(open_group_owner, (void *)(uintptr_t)(round & 1), &o, &t), 0))
			break;
		if (own_fiber)
			wf_sleep(1); /* it starts on its own fiber */
		uint64_t t0 = mono_ns();
		void *res = (void *)2;
		char *msg = NULL;
		CHECK_RC(wf_join_ex(t, &res, &msg), WF_EINVAL);
		CHECK(mono_ns() - t0 < (uint64_t)LONG_MS / 2 * 1000000u); /* not the children's sleep */
		CHECK(res == NULL);
		char want[128];
		snprintf(want, sizeof(want), "returned inside an open task group opened at %s:%d",
			 __FILE__, open_group_line);
		if (CHECK(msg != NULL))
			CHECK(strstr(msg, want) != NULL);
		free(msg);
		/* Awaited before the owner's outcome was published: none runs on
		 * (one cancelled before it started never runs at all). */
		int started = __atomic_load_n(&open_children_started, __ATOMIC_SEQ_CST);
		CHECK_EQ(__atomic_load_n(&open_children_done, __ATOMIC_SEQ_CST), started);
		CHECK_EQ(__atomic_load_n(&open_children_cancelled, __ATOMIC_SEQ_CST), started);
		if (round & 1) /* they ran before the owner returned */
			CHECK_EQ(started, 3);
		CHECK_EQ(wf_cancelling(), 0);
	}
	return NULL;
}

static void check_open_group_report(const char *err)
{
	char want[200];
	snprintf(want, sizeof(want),
		 "weft: task \"leaves-group-open\" returned inside an open task group (opened at %s:%d)",
		 __FILE__, open_group_line);
	cr_assert(strstr(err, want) != NULL, "stderr: %s", err);
}

Test(group, returned_inside_open_group_inline)
{
	stderr_capture c;
	stderr_capture_begin(&c);
	run_weft(1, open_group_main, NULL);
	char *err = stderr_capture_end(&c);
	check_open_group_report(err);
	free(err);
}

Test(group, returned_inside_open_group_own_fiber)
{
	stderr_capture c;
	for (size_t i = 0; i < NCOUNTS; i++) {
		stderr_capture_begin(&c);
		run_weft(worker_counts[i], open_group_main, (void *)1);
		char *err = stderr_capture_end(&c);
		check_open_group_report(err);
		free(err);
	}
}

/* A group left, and its handle used again after a new group took its
 * memory: WF_EINVAL, and the new group is untouched. */
static void *stale_group_main(void *arg)
{
	(void)arg;
	wf_group *old, *g;
	CHECK_RC(wf_group_enter(&old), 0);
	CHECK_RC(wf_group_leave(old, NULL, NULL), 0);
	CHECK_RC(wf_group_enter(&g), 0);
	uint64_t s = 0;
	slot_arg a = {.slot = &s, .value = 3};
	CHECK_RC(wf_group_spawn(old, slot_child, &a, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_group_cancel(old), WF_EINVAL);
	CHECK_RC(wf_group_leave(old, NULL, NULL), WF_EINVAL);
	CHECK_RC(wf_group_spawn(g, slot_child, &a, NULL, NULL), 0); /* not cancelled */
	CHECK_RC(wf_group_leave(g, NULL, NULL), 0);
	CHECK_EQ(s, 3);
	return NULL;
}

Test(group, stale_handle)
{
	run_weft(2, stale_group_main, NULL);
}

/* ---- spawns by other tasks racing the owner's leave ---------------------- *
 *
 * Tasks that are not the group's children spawn into it while its owner
 * leaves. Each spawn is accepted (0) and its child then finishes before
 * the leave returns, or refused: WF_ESHUTDOWN once the group is ending,
 * WF_EINVAL once it is freed. No child runs after the leave returned, and
 * every accepted one ran exactly once. Drives the outsider's count of its
 * child against the last child's callback bringing the count to zero. */

#define OUTSIDERS 3
#define OUTSIDER_SPAWNS 48

static struct {
	wf_group *g;   /* atomic: the round's group */
	int left;      /* atomic: the owner's leave returned */
	long accepted; /* atomic */
	long finished; /* atomic */
	long late;     /* atomic: children that ran after the leave returned */
} og;

static void *outsider_child(void *arg)
{
	if ((uintptr_t)arg & 1)
		wf_yield();
	if (__atomic_load_n(&og.left, __ATOMIC_SEQ_CST))
		__atomic_add_fetch(&og.late, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&og.finished, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *outsider(void *arg)
{
	uint64_t seed = (uintptr_t)arg;
	wf_group *g = __atomic_load_n(&og.g, __ATOMIC_ACQUIRE);
	for (int i = 0; i < OUTSIDER_SPAWNS; i++) {
		int rc = wf_group_spawn(g, outsider_child, (void *)(uintptr_t)rng_next(&seed), NULL,
					NULL);
		if (rc != 0) {
			CHECK(rc == WF_ESHUTDOWN || rc == WF_EINVAL);
			break;
		}
		__atomic_add_fetch(&og.accepted, 1, __ATOMIC_SEQ_CST);
		if (rng_next(&seed) % 4 == 0)
			wf_yield();
	}
	return NULL;
}

static void *outsider_race_main(void *arg)
{
	(void)arg;
	uint64_t seed = 777;
	long rounds = test_iters_min(300, 10);
	for (long round = 0; round < rounds && !check_any_failed(); round++) {
		wf_group *g;
		if (!CHECK_RC(wf_group_enter(&g), 0))
			return NULL;
		__atomic_store_n(&og.left, 0, __ATOMIC_SEQ_CST);
		og.accepted = og.finished = og.late = 0;
		__atomic_store_n(&og.g, g, __ATOMIC_RELEASE);
		wf_task *out[OUTSIDERS];
		for (int i = 0; i < OUTSIDERS; i++)
			CHECK((out[i] = wf_spawn(outsider, (void *)(uintptr_t)(round * 8 + i + 1))) !=
			      NULL);
		CHECK_RC(wf_group_spawn(g, outsider_child, (void *)1, NULL, NULL), 0);
		__atomic_add_fetch(&og.accepted, 1, __ATOMIC_SEQ_CST);
		for (unsigned y = rng_next(&seed) % 4; y > 0; y--)
			wf_yield();
		CHECK_RC(wf_group_leave(g, NULL, NULL), 0);
		__atomic_store_n(&og.left, 1, __ATOMIC_SEQ_CST);
		for (int i = 0; i < OUTSIDERS; i++)
			if (out[i] != NULL)
				CHECK_RC(wf_join(out[i], NULL), 0);
		long acc = __atomic_load_n(&og.accepted, __ATOMIC_SEQ_CST);
		long fin = __atomic_load_n(&og.finished, __ATOMIC_SEQ_CST);
		long late = __atomic_load_n(&og.late, __ATOMIC_SEQ_CST);
		if (fin != acc || late != 0)
			check_fail(__FILE__, __LINE__,
				   "round %ld: %ld spawns accepted, %ld children finished, %ld of "
				   "them after the leave returned",
				   round, acc, fin, late);
	}
	return NULL;
}

Test(group, spawns_by_other_tasks_racing_the_leave)
{
	for (size_t i = 1; i < NCOUNTS; i++)
		run_weft(worker_counts[i], outsider_race_main, NULL);
	check_none_failed();
}

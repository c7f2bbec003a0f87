/*
 * Context variables: bad input, set/get/reset with tokens, the copy at
 * spawn (children see the spawner's values at the spawn, never later
 * ones, and their own sets stay theirs), inline joins, pool calls, plain
 * threads and wf_runtime_submit, freed variables, and a stress of many
 * tasks setting, spawning, yielding and being stolen on four workers.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>

#include "rt_check.h"
#include "weft.h"

#define V(n) ((void *)(intptr_t)(n))

static wf_ctxvar *var_a, *var_b;

static void make_vars(void)
{
	cr_assert_eq(wf_ctxvar_new("a", V(-1), &var_a), 0);
	cr_assert_eq(wf_ctxvar_new(NULL, NULL, &var_b), 0);
}

static void free_vars(void)
{
	cr_assert_eq(wf_ctxvar_free(var_a), 0);
	cr_assert_eq(wf_ctxvar_free(var_b), 0);
}

/* ---- bad input and one context -------------------------------------------- */

static void *basics_main(void *arg)
{
	(void)arg;
	wf_ctx_token tok, tok2, blank = {0};
	CHECK_RC(wf_ctxvar_new("x", NULL, NULL), WF_EINVAL);
	CHECK(wf_ctxvar_get(NULL) == NULL);
	CHECK(!wf_ctxvar_isset(NULL));
	CHECK(wf_ctxvar_name(NULL) == NULL);
	CHECK_RC(wf_ctxvar_set(NULL, V(1), &tok), WF_EINVAL);
	CHECK_RC(wf_ctxvar_reset(NULL), WF_EINVAL);
	CHECK_RC(wf_ctxvar_reset(&blank), WF_EINVAL);
	CHECK_RC(wf_ctxvar_free(NULL), WF_EINVAL);

	CHECK(strcmp(wf_ctxvar_name(var_a), "a") == 0);
	CHECK(strcmp(wf_ctxvar_name(var_b), "ctxvar") == 0);
	CHECK(wf_ctxvar_get(var_a) == V(-1)); /* the default */
	CHECK(!wf_ctxvar_isset(var_a));
	CHECK_RC(wf_ctxvar_set(var_a, V(1), &tok), 0);
	CHECK(wf_ctxvar_isset(var_a));
	CHECK(wf_ctxvar_get(var_a) == V(1));
	CHECK(wf_ctxvar_get(var_b) == NULL);
	CHECK_RC(wf_ctxvar_set(var_a, V(2), &tok2), 0);
	CHECK_RC(wf_ctxvar_set(var_b, V(20), NULL), 0);
	CHECK(wf_ctxvar_get(var_a) == V(2));
	CHECK_RC(wf_ctxvar_reset(&tok2), 0); /* back to 1 */
	CHECK(wf_ctxvar_get(var_a) == V(1));
	CHECK_RC(wf_ctxvar_reset(&tok2), WF_EALREADY);
	CHECK_RC(wf_ctxvar_reset(&tok), 0); /* back to unset */
	CHECK(!wf_ctxvar_isset(var_a));
	CHECK(wf_ctxvar_get(var_a) == V(-1));
	CHECK(wf_ctxvar_get(var_b) == V(20)); /* untouched by a's resets */

	/* A freed variable: refused, and a new one never sees its values. */
	wf_ctxvar *tmp, *tmp2;
	CHECK_RC(wf_ctxvar_new("tmp", V(5), &tmp), 0);
	CHECK_RC(wf_ctxvar_set(tmp, V(6), &tok), 0);
	CHECK_RC(wf_ctxvar_free(tmp), 0);
	CHECK_RC(wf_ctxvar_free(tmp), WF_EINVAL);
	CHECK(wf_ctxvar_get(tmp) == NULL);
	CHECK_RC(wf_ctxvar_set(tmp, V(7), NULL), WF_EINVAL);
	CHECK_RC(wf_ctxvar_reset(&tok), WF_EINVAL);
	CHECK_RC(wf_ctxvar_new("tmp2", V(8), &tmp2), 0);
	CHECK(wf_ctxvar_get(tmp2) == V(8));
	CHECK(!wf_ctxvar_isset(tmp2));
	CHECK_RC(wf_ctxvar_free(tmp2), 0);
	return NULL;
}

Test(context, bad_input_and_one_context)
{
	make_vars();
	run_weft(2, basics_main, NULL);
	free_vars();
}

/* ---- the copy at spawn --------------------------------------------------- */

struct sib {
	wf_event *go;
	wf_ctx_token tok; /* made by the parent */
	int reset_rc;
};

static void *child_sets(void *arg)
{
	(void)arg;
	if (!CHECK(wf_ctxvar_get(var_a) == V(1)))
		return NULL;
	CHECK_RC(wf_ctxvar_set(var_a, V(2), NULL), 0);
	CHECK_RC(wf_yield(), 0);
	CHECK(wf_ctxvar_get(var_a) == V(2));
	return wf_ctxvar_get(var_a);
}

static void *child_waits(void *arg)
{
	struct sib *s = arg;
	CHECK_RC(wf_event_wait(s->go, WF_FOREVER), 0);
	/* The parent set 3 after spawning this task: not seen here. */
	CHECK(wf_ctxvar_get(var_a) == V(1));
	/* A token made in another context is refused. */
	s->reset_rc = wf_ctxvar_reset(&s->tok);
	return NULL;
}

static void *inline_child(void *arg)
{
	(void)arg;
	CHECK(wf_ctxvar_get(var_a) == V(1));
	CHECK_RC(wf_ctxvar_set(var_a, V(9), NULL), 0);
	return wf_ctxvar_get(var_a);
}

static void *spawn_main(void *arg)
{
	(void)arg;
	CHECK_RC(wf_ctxvar_set(var_a, V(1), NULL), 0);
	struct sib s = {0};
	CHECK_RC(wf_event_new(&s.go), 0);
	wf_task *c1 = wf_spawn(child_sets, NULL);
	wf_task *c2 = wf_spawn(child_waits, &s);
	void *r = NULL;
	CHECK_RC(wf_join(c1, &r), 0);
	CHECK(r == V(2));
	CHECK(wf_ctxvar_get(var_a) == V(1)); /* the child's set stayed its own */
	CHECK_RC(wf_ctxvar_set(var_a, V(3), &s.tok), 0);
	CHECK_RC(wf_event_set(s.go), 0);
	CHECK_RC(wf_join(c2, NULL), 0);
	CHECK_RC(s.reset_rc, WF_EINVAL);
	CHECK(wf_ctxvar_get(var_a) == V(3));
	/* A child its joiner runs inline (never started before the join). */
	CHECK_RC(wf_ctxvar_reset(&s.tok), 0);
	wf_task *c3 = wf_spawn(inline_child, NULL);
	CHECK_RC(wf_join(c3, &r), 0);
	CHECK(r == V(9));
	CHECK(wf_ctxvar_get(var_a) == V(1));
	CHECK_RC(wf_event_free(s.go), 0);
	return NULL;
}

Test(context, copied_at_spawn)
{
	make_vars();
	run_weft(4, spawn_main, NULL);
	free_vars();
}

/* ---- pool calls ----------------------------------------------------------- */

static void *pool_call(void *arg)
{
	intptr_t want = (intptr_t)arg;
	void *got = wf_ctxvar_get(var_a);
	/* A set inside the call is the call's own. */
	if (wf_ctxvar_set(var_a, V(100), NULL) != 0 || wf_ctxvar_get(var_a) != V(100))
		return V(-100);
	return got == V(want) ? V(1) : V(0);
}

static void *pool_main(void *arg)
{
	(void)arg;
	void *r = NULL;
	/* Nothing set: the call sees the default. */
	CHECK_RC(wf_to_thread(pool_call, V(-1), &r), 0);
	CHECK(r == V(1));
	CHECK_RC(wf_ctxvar_set(var_a, V(42), NULL), 0);
	for (int i = 0; i < 20; i++) {
		CHECK_RC(wf_to_thread(pool_call, V(42), &r), 0);
		CHECK(r == V(1));
	}
	CHECK(wf_ctxvar_get(var_a) == V(42));
	wf_future *f;
	CHECK_RC(wf_run_in_executor(NULL, pool_call, V(42), &f), 0);
	CHECK_RC(wf_await(f, &r), 0);
	CHECK(r == V(1));
	wf_future_release(f);
	return NULL;
}

Test(context, pool_calls_run_in_the_callers_context)
{
	make_vars();
	run_weft(2, pool_main, NULL);
	free_vars();
}

/* ---- plain threads --------------------------------------------------------- */

static void *submitted(void *arg)
{
	(void)arg;
	return wf_ctxvar_get(var_a);
}

Test(context, plain_thread_context_reaches_submitted_tasks)
{
	make_vars();
	wf_runtime *rt;
	cr_assert_eq(wf_runtime_start(NULL, &rt), 0);
	cr_assert_eq(wf_ctxvar_get(var_a), V(-1));
	wf_ctx_token tok;
	cr_assert_eq(wf_ctxvar_set(var_a, V(77), &tok), 0);
	wf_future *f;
	void *r = NULL;
	cr_assert_eq(wf_runtime_submit(rt, submitted, NULL, &f), 0);
	cr_assert_eq(wf_await(f, &r), 0);
	cr_assert_eq(r, V(77));
	wf_future_release(f);
	cr_assert_eq(wf_ctxvar_reset(&tok), 0);
	cr_assert_eq(wf_runtime_submit(rt, submitted, NULL, &f), 0);
	cr_assert_eq(wf_await(f, &r), 0);
	cr_assert_eq(r, V(-1));
	wf_future_release(f);
	cr_assert_eq(wf_runtime_shutdown(rt), 0);
	free_vars();
	check_no_leaks();
}

/* ---- stress ------------------------------------------------------------------ */

#define FAN 6

static void *stress_leaf(void *arg)
{
	intptr_t mine = (intptr_t)arg;
	/* Inherited from the parent, which set mine before spawning. */
	if (wf_ctxvar_get(var_a) != V(mine))
		return V(0);
	for (int i = 0; i < 3; i++) {
		wf_ctx_token tok;
		if (wf_ctxvar_set(var_b, V(mine * 10 + i), &tok) != 0)
			return V(0);
		if (wf_yield() != 0 || wf_ctxvar_get(var_b) != V(mine * 10 + i) ||
		    wf_ctxvar_get(var_a) != V(mine))
			return V(0);
		if (wf_ctxvar_reset(&tok) != 0)
			return V(0);
	}
	return V(1);
}

static void *stress_node(void *arg)
{
	intptr_t mine = (intptr_t)arg;
	if (wf_ctxvar_set(var_a, V(mine), NULL) != 0)
		return V(0);
	wf_task *kids[FAN];
	for (int i = 0; i < FAN; i++)
		kids[i] = wf_spawn(stress_leaf, V(mine));
	/* Sets after the spawns reach none of the children. */
	if (wf_ctxvar_set(var_b, V(-mine), NULL) != 0)
		return V(0);
	intptr_t ok = 1;
	for (int i = 0; i < FAN; i++) {
		void *r = NULL;
		if (kids[i] == NULL || wf_join(kids[i], &r) != 0 || r != V(1))
			ok = 0;
	}
	if (wf_ctxvar_get(var_a) != V(mine) || wf_ctxvar_get(var_b) != V(-mine))
		ok = 0;
	return V(ok);
}

static void *stress_main(void *arg)
{
	(void)arg;
	long rounds = test_iters(200);
	for (long r = 0; r < rounds; r++) {
		wf_task *t[8];
		for (int i = 0; i < 8; i++)
			t[i] = wf_spawn(stress_node, V(r * 8 + i + 1));
		for (int i = 0; i < 8; i++) {
			void *res = NULL;
			CHECK(t[i] != NULL && wf_join(t[i], &res) == 0 && res == V(1));
		}
		if (check_any_failed())
			break;
	}
	CHECK(!wf_ctxvar_isset(var_a));
	return NULL;
}

Test(context, stress_set_spawn_yield_steal)
{
	make_vars();
	run_weft(4, stress_main, NULL);
	free_vars();
}

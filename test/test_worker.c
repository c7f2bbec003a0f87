/*
 * Workers as places: moving a task to a worker, pinning it there (never
 * stolen, always woken there), and running functions on a worker's own
 * thread. These are the seams io/ builds on (a socket's readiness is
 * watched by one worker's loop, so the task that waits on it must be woken
 * there).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"
#include "rt_check.h"
#include "weft.h"

static const unsigned worker_counts[] = {1, 2, 3, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

/* ---- moving ------------------------------------------------------------ */

static void *mover(void *arg)
{
	unsigned n = wf_runtime_workers(wf_runtime_current());
	for (int round = 0; round < 200; round++) {
		unsigned target = (unsigned)round % n;
		CHECK_RC(wf_move_to_worker(target), 0);
		CHECK_EQ(wf_worker_id(), (int)target);
		CHECK_EQ(wf__current_worker(), (int)target);
		CHECK(wf__current_loop() != NULL);
		CHECK_RC(wf_yield(), 0);
	}
	return NULL;
}

static void *move_main(void *arg)
{
	CHECK_RC(wf_move_to_worker(4096), WF_EINVAL);
	enum { N = 8 };
	wf_task *ts[N];
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(mover, NULL);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	return NULL;
}

Test(worker, a_task_moves_where_it_is_told)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], move_main, NULL);
}

/* ---- pinning ------------------------------------------------------------ */

enum { PIN_ROUNDS = 300 };

/* Every round has its own pair of futures, made and released by pin_main
 * (the side that completes a future holds it while it does). */
typedef struct pin_ctx {
	wf_future *ping[4][PIN_ROUNDS];
	wf_future *pong[4][PIN_ROUNDS];
	wf_future *pinger_done;
} pin_ctx;

/* A pinned task on worker (i % n) is woken many times: by a task on
 * another worker, by a plain thread; it also yields while idle workers
 * look for work. It must always resume at home. */
static void *pinned_task(void *arg)
{
	pin_ctx *c = arg;
	int i = wf_task_name(wf_current())[0] - 'a';
	unsigned n = wf_runtime_workers(wf_runtime_current());
	CHECK_RC(wf_move_to_worker((unsigned)i % n), 0);
	CHECK_RC(wf_pin(true), 0);
	int home = wf_worker_id();
	for (int r = 0; r < PIN_ROUNDS; r++) {
		CHECK_RC(wf_await(c->ping[i][r], NULL), 0);
		CHECK_EQ(wf_worker_id(), home);
		CHECK_RC(wf_yield(), 0);
		CHECK_EQ(wf_worker_id(), home);
		CHECK_RC(wf_sleep(0), 0);
		CHECK_EQ(wf_worker_id(), home);
		CHECK_RC(wf_future_set(c->pong[i][r], (void *)(intptr_t)r), 0);
	}
	CHECK_RC(wf_pin(false), 0);
	return NULL;
}

static void *plain_pinger(void *arg)
{
	pin_ctx *c = arg;
	/* Index 3 is driven from a plain thread. */
	for (int r = 0; r < PIN_ROUNDS; r++) {
		CHECK_RC(wf_future_set(c->ping[3][r], NULL), 0);
		void *v;
		CHECK_RC(wf_await(c->pong[3][r], &v), 0);
		CHECK_EQ((intptr_t)v, r);
	}
	wf_future_set(c->pinger_done, NULL);
	return NULL;
}

static void *pin_main(void *arg)
{
	pin_ctx *c = calloc(1, sizeof(*c));
	c->pinger_done = wf_future_new();
	for (int i = 0; i < 4; i++)
		for (int r = 0; r < PIN_ROUNDS; r++) {
			c->ping[i][r] = wf_future_new();
			c->pong[i][r] = wf_future_new();
		}
	wf_task *ts[4];
	const char *names[4] = {"a", "b", "c", "d"};
	for (int i = 0; i < 4; i++) {
		wf_spawn_opts o = {.name = names[i]};
		CHECK_RC(wf_spawn_ex(pinned_task, c, &o, &ts[i]), 0);
	}
	pthread_t th;
	pthread_create(&th, NULL, plain_pinger, c);
	/* Tasks 0-2 are driven from here, whatever worker this is on. */
	for (int r = 0; r < PIN_ROUNDS; r++) {
		for (int i = 0; i < 3; i++)
			CHECK_RC(wf_future_set(c->ping[i][r], NULL), 0);
		for (int i = 0; i < 3; i++) {
			void *v;
			CHECK_RC(wf_await(c->pong[i][r], &v), 0);
			CHECK_EQ((intptr_t)v, r);
		}
	}
	/* Not pthread_join at once: that would block this worker, which may
	 * be the home of the task the plain thread drives. */
	CHECK_RC(wf_await(c->pinger_done, NULL), 0);
	pthread_join(th, NULL);
	for (int i = 0; i < 4; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	for (int i = 0; i < 4; i++)
		for (int r = 0; r < PIN_ROUNDS; r++) {
			wf_future_release(c->ping[i][r]);
			wf_future_release(c->pong[i][r]);
		}
	wf_future_release(c->pinger_done);
	free(c);
	return NULL;
}

Test(worker, a_pinned_task_is_never_stolen_and_always_woken_at_home)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		run_weft(worker_counts[i], pin_main, NULL);
}

/* A pinned task joins a child that moves itself to another worker. Run
 * inline (the common case: the child is still in the joiner's deque), the
 * child moves the joiner's fiber, and the joiner with it; stolen, it moves
 * alone. Either way the joiner is back home when its join returns, also
 * with the child's yields and moves back and forth in between. */
static void *move_away(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;
	CHECK_RC(wf_move_to_worker(n - 1), 0);
	int where = wf_worker_id();
	if (where % 2)
		CHECK_RC(wf_yield(), 0);
	return (void *)(intptr_t)where;
}

static void *pinned_joiner_main(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;
	CHECK_RC(wf_move_to_worker(0), 0);
	CHECK_RC(wf_pin(true), 0);
	long rounds = test_iters(300);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		void *where = NULL;
		CHECK_RC(wf_join(wf_spawn(move_away, arg), &where), 0);
		CHECK_EQ((intptr_t)where, (intptr_t)n - 1);
		CHECK_EQ(wf_worker_id(), 0);
		if (i % 8 == 0)
			CHECK_RC(wf_yield(), 0);
		CHECK_EQ(wf_worker_id(), 0);
	}
	CHECK_RC(wf_pin(false), 0);
	return NULL;
}

Test(worker, a_pinned_joiner_is_home_when_a_child_that_moved_returns)
{
	for (size_t i = 0; i < NCOUNTS; i++)
		if (worker_counts[i] > 1)
			run_weft(worker_counts[i], pinned_joiner_main,
				 (void *)(uintptr_t)worker_counts[i]);
}

Test(worker, bad_input_from_a_plain_thread)
{
	cr_assert_eq(wf_move_to_worker(0), WF_ENOTTASK);
	cr_assert_eq(wf_pin(true), WF_ENOTTASK);
	cr_assert_eq(wf__task_move(0), WF_ENOTTASK);
	cr_assert_eq(wf__current_worker(), -1);
	cr_assert_null(wf__current_loop());
	cr_assert_eq(wf__call_on_worker(NULL, 0, NULL, NULL), WF_EINVAL);
}

/* ---- calls on a worker -------------------------------------------------- */

enum { CALLS = 2000 };

typedef struct call_log {
	int worker;
	int expected_worker;
	int seq;
	int *last_seq; /* per poster and worker: calls run in order */
	int *ran;
} call_log;

static void on_worker(void *arg)
{
	call_log *l = arg;
	CHECK_EQ(wf__current_worker(), l->expected_worker);
	CHECK(wf_current() == NULL); /* outside any task */
	CHECK(*l->last_seq < l->seq);
	*l->last_seq = l->seq;
	__atomic_add_fetch(l->ran, 1, __ATOMIC_RELAXED);
	free(l);
}

typedef struct poster_ctx {
	wf_runtime *rt;
	int ran;
	int last_seq[2][8]; /* [poster][worker] */
} poster_ctx;

static void post_all(poster_ctx *c, int poster)
{
	unsigned n = wf_runtime_workers(c->rt);
	for (int i = 0; i < CALLS; i++) {
		call_log *l = malloc(sizeof(*l));
		unsigned w = (unsigned)i % n;
		l->expected_worker = (int)w;
		l->seq = i;
		l->last_seq = &c->last_seq[poster][w];
		l->ran = &c->ran;
		CHECK_RC(wf__call_on_worker(c->rt, w, on_worker, l), 0);
	}
	CHECK_RC(wf__call_on_worker(c->rt, n, on_worker, NULL), WF_EINVAL);
	CHECK_RC(wf__call_on_worker(c->rt, 0, NULL, NULL), WF_EINVAL);
}

static void *plain_poster(void *arg)
{
	post_all(arg, 1);
	return NULL;
}

static void *calls_main(void *arg)
{
	poster_ctx *c = arg;
	c->rt = wf_runtime_current();
	for (int w = 0; w < 8; w++)
		c->last_seq[0][w] = c->last_seq[1][w] = -1;
	pthread_t th;
	pthread_create(&th, NULL, plain_poster, c);
	post_all(c, 0);
	pthread_join(th, NULL);
	/* Every call runs, soon, also on workers that sleep. */
	for (int k = 0; k < 20000 && __atomic_load_n(&c->ran, __ATOMIC_RELAXED) < 2 * CALLS; k++)
		wf_sleep(1);
	CHECK_EQ(__atomic_load_n(&c->ran, __ATOMIC_RELAXED), 2 * CALLS);
	return NULL;
}

Test(worker, calls_run_on_their_worker_in_order)
{
	for (size_t i = 0; i < NCOUNTS; i++) {
		poster_ctx c = {0};
		run_weft(worker_counts[i], calls_main, &c);
	}
}

/*
 * The spec's workloads that need only tasks, futures and (idle_tasks) an
 * event: fib, spawn_many, yield_many, chained_spawn, idle_tasks,
 * gather_many and switch. Each does the same work as the Tokio and Go
 * peers, in the way a weft program would write it: a task returns its
 * result and is joined, or is detached and signals a wf_future when the
 * last one is done.
 *
 * Every workload runs as the root task. A workload that cannot spawn (out
 * of memory) still waits for what it did spawn, since those tasks point
 * into its frame, and then reports the error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * fib: each call with n >= 2 spawns fib(n-1) as a task, computes fib(n-2)
 * itself, then joins the task. No cut-off.
 * ---------------------------------------------------------------------- */
#define FIB_ERR UINTPTR_MAX

static uintptr_t fib(uintptr_t n);

static void *fib_task(void *arg)
{
	return (void *)fib((uintptr_t)arg);
}

static uintptr_t fib(uintptr_t n)
{
	if (n < 2)
		return n;
	wf_task *t = wf_spawn(fib_task, (void *)(n - 1));
	if (t == NULL)
		return FIB_ERR;
	uintptr_t y = fib(n - 2);
	void *x;
	if (wf_join(t, &x) != 0 || (uintptr_t)x == FIB_ERR || y == FIB_ERR)
		return FIB_ERR;
	return (uintptr_t)x + y;
}

static int run_fib(wf_bench_run *run)
{
	uintptr_t r = fib((uintptr_t)run->n);
	if (r == FIB_ERR)
		return WF_ENOMEM;
	run->check = r;
	return 0;
}

/* fib(n+1) - 1: one spawn per call with n >= 2. */
static uint64_t fib_ops(uint64_t n)
{
	return wf_bench_fib_serial(n + 1) - 1;
}

WF_BENCH_DEFINE(fib, .name = "fib", .default_n = 30, .fn = run_fib,
		.expected = wf_bench_fib_serial, .ops = fib_ops)

/* Tasks nobody joins are spawned without a handle: what wf_detach right
 * after wf_spawn does, in one step. */
static const wf_spawn_opts detached = {.detached = true};

/* ------------------------------------------------------------------------
 * spawn_many: N detached tasks each add 1 to a counter; the one that brings
 * it to N completes the future the root awaits.
 * ---------------------------------------------------------------------- */
/* A line of its own: every task writes the count, and a counter that
 * shared a line with the spawner's stack frame (where each spawn call
 * pushes its return address) would take that line from the spawner at
 * every task. Go's and Tokio's counters are heap objects of their own. */
struct countdown {
	uint64_t count; /* atomic */
	uint64_t n;
	wf_future *done;
} __attribute__((aligned(64)));

static void countdown_add(struct countdown *c, uint64_t k)
{
	if (__atomic_add_fetch(&c->count, k, __ATOMIC_ACQ_REL) == c->n)
		wf_future_set(c->done, NULL);
}

static void *count_task(void *arg)
{
	countdown_add(arg, 1);
	return NULL;
}

static int run_spawn_many(wf_bench_run *run)
{
	struct countdown c = {.count = 0, .n = run->n, .done = wf_future_new()};
	if (c.done == NULL)
		return WF_ENOMEM;
	int err = 0;
	for (uint64_t i = 0; i < c.n; i++) {
		int rc = wf_spawn_ex(count_task, &c, &detached, NULL);
		if (rc != 0) {
			/* Count the tasks never spawned, so the last one that
			 * was still signals (or this call does). */
			err = rc;
			countdown_add(&c, c.n - i);
			break;
		}
	}
	if (c.n > 0)
		wf_await(c.done, NULL);
	run->check = __atomic_load_n(&c.count, __ATOMIC_ACQUIRE);
	wf_future_release(c.done);
	return err;
}

WF_BENCH_DEFINE(spawn_many, .name = "spawn_many", .default_n = 1000000, .fn = run_spawn_many)

/* ------------------------------------------------------------------------
 * Helpers for the workloads that join a batch of tasks in order and add up
 * their results (each task returns a count).
 * ---------------------------------------------------------------------- */
static uint64_t join_sum(wf_task **tasks, size_t n, int *err)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		void *r;
		int e = wf_join(tasks[i], &r);
		if (e != 0)
			*err = e;
		else
			sum += (uintptr_t)r;
	}
	return sum;
}

/* Spawns fn(share of total) for parts tasks; how many were spawned. */
static size_t spawn_shares(wf_task **tasks, size_t parts, uint64_t total, wf_fn fn)
{
	for (size_t i = 0; i < parts; i++) {
		uintptr_t k = (uintptr_t)wf_bench_share(total, parts, i);
		tasks[i] = wf_spawn(fn, (void *)k);
		if (tasks[i] == NULL)
			return i;
	}
	return parts;
}

/* Yields k times; returns how many yields went through. */
static void *yield_task(void *arg)
{
	uintptr_t k = (uintptr_t)arg, done = 0;
	for (uintptr_t i = 0; i < k; i++)
		done += wf_yield() == 0;
	return (void *)done;
}

/* ------------------------------------------------------------------------
 * yield_many: 1000 tasks each yield N/1000 times; the root joins them all.
 * ---------------------------------------------------------------------- */
#define YIELD_TASKS 1000

static int run_yield_many(wf_bench_run *run)
{
	wf_task **tasks = malloc(YIELD_TASKS * sizeof(*tasks));
	if (tasks == NULL)
		return WF_ENOMEM;
	size_t spawned = spawn_shares(tasks, YIELD_TASKS, run->n, yield_task);
	int err = spawned < YIELD_TASKS ? WF_ENOMEM : 0;
	run->check = join_sum(tasks, spawned, &err);
	free(tasks);
	return err;
}

WF_BENCH_DEFINE(yield_many, .name = "yield_many", .default_n = 1000000, .fn = run_yield_many)

/* ------------------------------------------------------------------------
 * chained_spawn: task i spawns task i+1 (detached) and exits; task N
 * completes the future the root awaits, with N as its value.
 * ---------------------------------------------------------------------- */
struct chain {
	/* Plain, not atomic: only the one live link of the chain touches it,
	 * and each link's write happens before the spawn of the next. */
	uint64_t i;
	uint64_t n;
	wf_future *done;
};

static void *chain_task(void *arg)
{
	struct chain *c = arg;
	if (++c->i >= c->n) {
		wf_future_set(c->done, (void *)(uintptr_t)c->i);
		return NULL;
	}
	if (wf_spawn_ex(chain_task, c, &detached, NULL) != 0)
		wf_future_fail(c->done, WF_ENOMEM, "chained_spawn: spawn failed");
	return NULL;
}

static int run_chained_spawn(wf_bench_run *run)
{
	run->check = 0;
	if (run->n == 0)
		return 0;
	struct chain c = {.i = 0, .n = run->n, .done = wf_future_new()};
	if (c.done == NULL)
		return WF_ENOMEM;
	int err = wf_spawn_ex(chain_task, &c, &detached, NULL);
	if (err != 0) {
		wf_future_release(c.done);
		return err;
	}
	void *v = NULL;
	err = wf_await(c.done, &v);
	run->check = (uintptr_t)v;
	wf_future_release(c.done);
	return err;
}

WF_BENCH_DEFINE(chained_spawn, .name = "chained_spawn", .default_n = 100000,
		.fn = run_chained_spawn)

/* ------------------------------------------------------------------------
 * idle_tasks: N tasks each wait on one shared event (asyncio.Event). Each
 * counts itself just before it suspends; the last to count wakes the root,
 * which reads VmRSS and subtracts the figure read just before spawning
 * (the clock and the memory figure both start there), then sets the event
 * and joins them all.
 * ---------------------------------------------------------------------- */
struct idle {
	struct countdown waiting;
	wf_event *event;
};

static void *idle_task(void *arg)
{
	struct idle *s = arg;
	countdown_add(&s->waiting, 1);
	return (void *)(uintptr_t)(wf_event_wait(s->event, WF_FOREVER) == 0);
}

static int run_idle_tasks(wf_bench_run *run)
{
	uint64_t n = run->n;
	/* The handles are the harness's, not the tasks': written once here
	 * (a non-zero fill, which the compiler cannot turn into calloc) so
	 * that their pages are resident before the first VmRSS reading. */
	wf_task **tasks = malloc((n ? n : 1) * sizeof(*tasks));
	if (tasks == NULL)
		return WF_ENOMEM;
	memset(tasks, 0xa5, n * sizeof(*tasks));
	struct idle s = {.waiting = {.count = 0, .n = n, .done = wf_future_new()}};
	int err = s.waiting.done != NULL ? wf_event_new(&s.event) : WF_ENOMEM;
	if (err != 0)
		goto out;

	int64_t before = wf_bench_rss_kib();
	wf_bench_clock_start(run);
	uint64_t spawned = 0;
	for (; spawned < n; spawned++) {
		tasks[spawned] = wf_spawn(idle_task, &s);
		if (tasks[spawned] == NULL) {
			err = WF_ENOMEM;
			countdown_add(&s.waiting, n - spawned);
			break;
		}
	}
	if (n > 0)
		wf_await(s.waiting.done, NULL);
	int64_t after = wf_bench_rss_kib();
	wf_event_set(s.event);
	run->check = join_sum(tasks, spawned, &err);
	wf_bench_clock_stop(run);

	if (before < 0 || after < 0)
		err = WF_EIO;
	double per_task = n > 0 ? (double)(after - before) / (double)n : 0.0;
	wf_bench_extra(run, " kib_per_task=%.2f", per_task);
out:
	if (s.event != NULL)
		wf_event_free(s.event);
	if (s.waiting.done != NULL)
		wf_future_release(s.waiting.done);
	free(tasks);
	return err;
}

WF_BENCH_DEFINE(idle_tasks, .name = "idle_tasks", .default_n = 100000, .fn = run_idle_tasks)

/* ------------------------------------------------------------------------
 * gather_many: rounds of 1000 tasks (the last takes any remainder of N),
 * each returning 1; the root joins a round's tasks in order and adds their
 * results before it starts the next round.
 * ---------------------------------------------------------------------- */
#define GATHER_BATCH 1000

static void *one_task(void *arg)
{
	return (void *)(uintptr_t)1;
}

static int run_gather_many(wf_bench_run *run)
{
	wf_task **tasks = malloc(GATHER_BATCH * sizeof(*tasks));
	if (tasks == NULL)
		return WF_ENOMEM;
	int err = 0;
	uint64_t total = 0;
	for (uint64_t left = run->n; left > 0 && err == 0;) {
		size_t size = left < GATHER_BATCH ? (size_t)left : GATHER_BATCH;
		size_t spawned = 0;
		for (; spawned < size; spawned++) {
			tasks[spawned] = wf_spawn(one_task, NULL);
			if (tasks[spawned] == NULL) {
				err = WF_ENOMEM;
				break;
			}
		}
		total += join_sum(tasks, spawned, &err);
		left -= size;
	}
	run->check = total;
	free(tasks);
	return err;
}

WF_BENCH_DEFINE(gather_many, .name = "gather_many", .default_n = 1000000, .fn = run_gather_many)

/* ------------------------------------------------------------------------
 * switch: on one worker, two tasks yield to each other N times in all; the
 * line ends with the cost of one switch.
 * ---------------------------------------------------------------------- */
static int run_switch(wf_bench_run *run)
{
	wf_task *tasks[2];
	size_t spawned = spawn_shares(tasks, 2, run->n, yield_task);
	int err = spawned < 2 ? WF_ENOMEM : 0;
	run->check = join_sum(tasks, spawned, &err);
	wf_bench_clock_stop(run);
	double wall_s = (double)(run->t1_ns - run->t0_ns) / 1e9;
	wf_bench_extra(run, " ns_per_switch=%.2f", run->n ? wall_s * 1e9 / (double)run->n : 0.0);
	return err;
}

WF_BENCH_DEFINE(switch, .name = "switch", .default_n = 10000000, .fn = run_switch, .threads = 1)

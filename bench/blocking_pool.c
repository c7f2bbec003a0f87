/*
 * blocking_pool: N calls that each sleep 1 ms with nanosleep, handed to the
 * default blocking pool all at once (wf_run_in_executor, as Tokio's peer
 * does with spawn_blocking); the root awaits every future. The pool starts
 * with no thread (each run is a fresh wf_run, which shuts the pool down at
 * its end), so the figure includes growing it to N threads.
 *
 * cpu_pool: the tutorial's CPU-bound call, the sum of i*i for i < 10^6, run
 * N times on a user pool of 2 threads; check: the calls that returned
 * 333332833333500000, N.
 * It shows what a call costs when the pool's threads are busy computing
 * rather than sleeping: the hand-off and completion on top of the work.
 */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

static void *sleep_1ms(void *arg)
{
	struct timespec ts = {0, 1000000};
	while (nanosleep(&ts, &ts) != 0)
		;
	return (void *)(uintptr_t)1;
}

/* Awaits the first n futures of fs, releasing each; adds their values. */
static int await_all(wf_future **fs, uint64_t n, uint64_t *sum)
{
	int rc = 0;
	for (uint64_t i = 0; i < n; i++) {
		void *v = NULL;
		int r = wf_await(fs[i], &v);
		if (r == 0)
			*sum += (uintptr_t)v;
		else if (rc == 0)
			rc = r;
		wf_future_release(fs[i]);
	}
	return rc;
}

static int run_blocking_pool(wf_bench_run *run)
{
	wf_future **fs = calloc(run->n ? run->n : 1, sizeof(*fs));
	if (fs == NULL)
		return WF_ENOMEM;
	wf_bench_clock_start(run);
	uint64_t n = 0;
	int rc = 0;
	for (; n < run->n; n++) {
		rc = wf_run_in_executor(NULL, sleep_1ms, NULL, &fs[n]);
		if (rc != 0)
			break;
	}
	uint64_t sum = 0;
	int rc2 = await_all(fs, n, &sum);
	wf_bench_clock_stop(run);
	free(fs);
	run->check = sum;
	/* How many threads the pool grew to: N if every call found its own. */
	wf_pool_stats st;
	if (wf_pool_get_stats(NULL, &st) == 0)
		wf_bench_extra(run, " pool_threads=%llu", (unsigned long long)st.started);
	return rc != 0 ? rc : rc2;
}

WF_BENCH_DEFINE(blocking_pool, .name = "blocking_pool", .default_n = 1000,
		.fn = run_blocking_pool)

#define CPU_LIMIT 1000000u

static void *sum_squares(void *arg)
{
	uint64_t s = 0;
	for (uint64_t i = 0; i < CPU_LIMIT; i++) {
		s += i * i;
		/* Keeps the compiler from replacing the loop by its closed
		 * form: the work is the point. */
		__asm__ __volatile__("" : "+r"(s));
	}
	return (void *)(uintptr_t)s;
}

/* Awaits the first n futures of fs, releasing each; counts the values equal
 * to want. */
static int await_count(wf_future **fs, uint64_t n, uintptr_t want, uint64_t *count)
{
	int rc = 0;
	for (uint64_t i = 0; i < n; i++) {
		void *v = NULL;
		int r = wf_await(fs[i], &v);
		if (r == 0)
			*count += (uintptr_t)v == want;
		else if (rc == 0)
			rc = r;
		wf_future_release(fs[i]);
	}
	return rc;
}

static int run_cpu_pool(wf_bench_run *run)
{
	wf_pool *pool;
	int rc = wf_pool_new("bench-cpu", 2, &pool);
	if (rc != 0)
		return rc;
	wf_future **fs = calloc(run->n ? run->n : 1, sizeof(*fs));
	if (fs == NULL) {
		wf_pool_shutdown(pool, WF_POOL_CANCEL);
		return WF_ENOMEM;
	}
	wf_bench_clock_start(run);
	uint64_t n = 0;
	for (; n < run->n; n++) {
		rc = wf_run_in_executor(pool, sum_squares, NULL, &fs[n]);
		if (rc != 0)
			break;
	}
	uint64_t good = 0;
	int rc2 = await_count(fs, n, (uintptr_t)UINT64_C(333332833333500000), &good);
	wf_bench_clock_stop(run);
	free(fs);
	wf_pool_shutdown(pool, WF_POOL_WAIT);
	run->check = good;
	return rc != 0 ? rc : rc2;
}

/* check: the calls that returned the right sum, N. */
WF_BENCH_DEFINE(cpu_pool, .name = "cpu_pool", .default_n = 200, .fn = run_cpu_pool)

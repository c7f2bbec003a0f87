/*
 * switch_bare: the context switch alone, without the scheduler (see
 * core_workloads.c's switch for the whole yield).
 */
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"

/* ------------------------------------------------------------------------
 * switch_bare: the context switch alone, without the scheduler: the root
 * task and a bare context on a stack of its own switch to each other N
 * times in all with the switch the scheduler uses. switch minus
 * switch_bare is the scheduler's part of a yield. Not under the
 * sanitizers: their fiber bookkeeping is the scheduler's to do.
 * ---------------------------------------------------------------------- */
#if !defined(WF_ASAN) && !defined(WF_TSAN)
#include "ctx.h"

enum { BARE_STACK = 64 * 1024 };
static wf__ctx bare_root, bare_peer;

/* Both sides switch from this one loop, as two tasks that yield to each
 * other both switch from the scheduler's one call site: every return after
 * a switch goes where the CPU's return predictor expects. */
static __attribute__((noinline)) void bare_loop(wf__ctx *self, wf__ctx *other, uint64_t rounds)
{
	for (uint64_t i = 0; i < rounds; i++)
		wf__ctx_switch(self, other);
}

static void bare_entry(void)
{
	bare_loop(&bare_peer, &bare_root, UINT64_MAX);
	abort(); /* never resumed past the end */
}

static int run_switch_bare(wf_bench_run *run)
{
	void *stack = malloc(BARE_STACK);
	if (stack == NULL)
		return WF_ENOMEM;
	wf__ctx_make(&bare_peer, stack, BARE_STACK, bare_entry);
	uint64_t rounds = run->n / 2;
	bare_loop(&bare_root, &bare_peer, rounds);
	wf_bench_clock_stop(run);
	/* The peer stays suspended on its stack, which is simply dropped. */
	free(stack);
	run->check = rounds * 2;
	double wall_s = (double)(run->t1_ns - run->t0_ns) / 1e9;
	wf_bench_extra(run, " ns_per_switch=%.2f", rounds ? wall_s * 1e9 / (double)(rounds * 2) : 0.0);
	return 0;
}

WF_BENCH_DEFINE(switch_bare, .name = "switch_bare", .default_n = 10000000, .fn = run_switch_bare,
		.threads = 1)
#endif
